/* errno-style codes: functions return 0 or one of these, negated. */
#ifndef FTVM_GUEST_ERRNO_H
#define FTVM_GUEST_ERRNO_H

#define EIO       5
#define E2BIG     7
#define EAGAIN   11
#define ENOMEM   12
#define EBUSY    16
#define ENODEV   19
#define EINVAL   22
#define ENOSPC   28
#define ERANGE   34
#define ENOENT    2
#define ETIMEDOUT 110
#define ENOTSUP  95
#define EPROTO   71

#endif
