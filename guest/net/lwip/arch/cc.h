/*
 * lwIP's platform header for the freestanding guest: integer types from
 * the compiler, no libc (lwIP's own ctype and inttypes stand-ins), console
 * diagnostics, and an assertion that stops the guest.
 */
#ifndef FTVM_GUEST_LWIP_ARCH_CC_H
#define FTVM_GUEST_LWIP_ARCH_CC_H

#include <stddef.h>
#include <stdint.h>

#include "lib/string.h"

#define LWIP_NO_INTTYPES_H 1
#define LWIP_NO_CTYPE_H    1
#define LWIP_NO_LIMITS_H   0	/* the compiler's <limits.h> is freestanding */
#define X8_F  "02x"
#define U16_F "u"
#define S16_F "d"
#define X16_F "x"
#define U32_F "u"
#define S32_F "d"
#define X32_F "x"
#define SZT_F "zu"

#define BYTE_ORDER LITTLE_ENDIAN

void ftvm_lwip_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ftvm_lwip_assert(const char *msg, const char *file, int line) __attribute__((noreturn));
uint32_t ftvm_lwip_rand(void);

#define LWIP_PLATFORM_DIAG(x) do { ftvm_lwip_diag x; } while (0)
#define LWIP_PLATFORM_ASSERT(x) ftvm_lwip_assert((x), __FILE__, __LINE__)

#endif
