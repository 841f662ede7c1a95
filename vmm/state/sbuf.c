/*
 * sbuf (growable output buffer) and sreader (bounds-checked input cursor).
 *
 * Both are deliberately tiny: every encoder and decoder in vmm/state goes
 * through them, so a length check lives in exactly one place.
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

int sreader__view(struct sreader *r, const void **out, size_t n)
{
	if (n > r->len - r->pos)
		return -EBADMSG;
	*out = r->p + r->pos;
	r->pos += n;
	return 0;
}

int sreader__bytes(struct sreader *r, void *out, size_t n)
{
	const void *src;
	int rc = sreader__view(r, &src, n);

	if (rc)
		return rc;
	if (n)
		memcpy(out, src, n);
	return 0;
}

int sreader__u8(struct sreader *r, uint8_t *out)
{
	return sreader__bytes(r, out, 1);
}

int sreader__u32(struct sreader *r, uint32_t *out)
{
	const void *v;
	const uint8_t *b;
	int rc = sreader__view(r, &v, 4);

	if (rc)
		return rc;
	b = v;
	*out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
	return 0;
}

int sreader__u64(struct sreader *r, uint64_t *out)
{
	const void *src;
	const uint8_t *b;
	uint64_t v = 0;
	int rc = sreader__view(r, &src, 8);

	if (rc)
		return rc;
	b = src;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	*out = v;
	return 0;
}
