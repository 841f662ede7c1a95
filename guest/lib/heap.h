/* Bump allocator over the RAM above the kernel image (no free). */
#ifndef FTVM_GUEST_HEAP_H
#define FTVM_GUEST_HEAP_H

#include <stddef.h>
#include <stdint.h>

/* Heap = [end of image, end of the RAM range holding the image). */
void heap_init(void);
/* Bytes still available (after aligning to `align`). */
size_t heap_available(size_t align);
/* Memory is NOT zeroed. NULL when it does not fit. */
void *heap_alloc(size_t size, size_t align);
/* First address not handed out yet. */
uintptr_t heap_top(void);

#endif
