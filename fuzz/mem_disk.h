/*
 * mem_disk.h - an in-memory disk for the fuzz harnesses: reads and writes
 * of [offset, offset+len) inside size, anything else aborts (the code under
 * test let a request past the disk's end through).
 */
#ifndef FTVM_FUZZ_MEM_DISK_H
#define FTVM_FUZZ_MEM_DISK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

static inline int mem_disk_rw(uint8_t *mem, uint64_t size, uint64_t off, const struct iovec *iov, int n,
			      int write)
{
	for (int i = 0; i < n; i++) {
		if (off > size || iov[i].iov_len > size - off)
			abort();
		if (write)
			memcpy(mem + off, iov[i].iov_base, iov[i].iov_len);
		else
			memcpy(iov[i].iov_base, mem + off, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return 0;
}

#endif
