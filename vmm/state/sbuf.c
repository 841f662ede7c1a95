/*
 * sbuf: growable output buffer.  (Its input twin, sreader, is all inline in
 * state.h.)  Every encoder in vmm/state appends through these, so the
 * overflow and allocation checks live in exactly one place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

void sbuf__init(struct sbuf *sb)
{
	sb->data = NULL;
	sb->len = 0;
	sb->cap = 0;
}

void sbuf__free(struct sbuf *sb)
{
	free(sb->data);
	sbuf__init(sb);
}

void sbuf__reset(struct sbuf *sb)
{
	sb->len = 0;
}

int sbuf__reserve(struct sbuf *sb, size_t extra)
{
	size_t need, cap;
	uint8_t *p;

	if (extra > SIZE_MAX - sb->len)
		return -ENOMEM;
	need = sb->len + extra;
	if (need <= sb->cap)
		return 0;

	/* Doubling keeps appends amortised O(1); start at a size that holds
	 * a typical device state without regrowing. */
	cap = sb->cap ? sb->cap : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	p = realloc(sb->data, cap);
	if (!p)
		return -ENOMEM;
	sb->data = p;
	sb->cap = cap;
	return 0;
}

int sbuf__append(struct sbuf *sb, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	rc = sbuf__reserve(sb, n);
	if (rc)
		return rc;
	memcpy(sb->data + sb->len, p, n);
	sb->len += n;
	return 0;
}

int sbuf__append_u8(struct sbuf *sb, uint8_t v)
{
	return sbuf__append(sb, &v, 1);
}

int sbuf__append_u32(struct sbuf *sb, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };

	return sbuf__append(sb, b, sizeof(b));
}

int sbuf__append_u64(struct sbuf *sb, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return sbuf__append(sb, b, sizeof(b));
}
