#include "lib/heap.h"

#include "lib/startinfo.h"

extern char __kernel_end[]; /* linker script */

static uintptr_t cur, end;

void heap_init(void)
{
	cur = (uintptr_t)__kernel_end;
	end = (uintptr_t)ram_end_from(cur);
	if (end < cur)
		end = cur;
}

static uintptr_t align_up(uintptr_t v, size_t a)
{
	return (v + a - 1) & ~(uintptr_t)(a - 1);
}

size_t heap_available(size_t align)
{
	uintptr_t p = align_up(cur, align);
	return p < end ? end - p : 0;
}

void *heap_alloc(size_t size, size_t align)
{
	uintptr_t p = align_up(cur, align);

	if (p > end || end - p < size)
		return NULL;
	cur = p + size;
	return (void *)p;
}

uintptr_t heap_top(void)
{
	return cur;
}
