/*
 * page_cache.c - dirty pages sent as deltas against what the secondary holds.
 *
 * A checkpoint of a guest answering small requests dirties a few dozen pages
 * (its stack, the network buffers and rings, a table entry, the log's
 * buffer) and changes a few dozen bytes in most of them. Sent whole, those
 * pages are most of a checkpoint's bytes and of its time on the link, and
 * LZ4 spends longer finding the repeats than the link would carrying them.
 * The primary keeps a copy of each page as it last sent it, so it can send
 * the changed runs alone (transport.h, page deltas); the secondary applies
 * them to its own copy, which is the same page, and checks the CRC-32C of
 * the result, so a copy that is not the same can never go unnoticed.
 *
 * A delta-coded PAGES message (FT_FLAG_DELTA):
 *	u32 count, u64 index[count]
 *	u16 code[count]     FT_PAGE_WHOLE, FT_PAGE_ZERO, or 0..FT_DELTA_MAX
 *	per delta page, in order: u32 crc32c(page), then `code` bytes of delta
 *	the whole pages, in order: raw, or with FT_FLAG_LZ4 the page codec's
 *	encoding of them (a small checkpoint has few: LZ4 costs little then)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft_internal.h"
#include "vmm/state/state.h"

int ft_page_cache__init(struct ft_page_cache *c, size_t bytes)
{
	ft_page_cache__free(c);
	size_t slots = 1;
	unsigned bits = 0;
	while (slots * 2 * FT_PAGE <= bytes) {
		slots *= 2;
		bits++;
	}
	if (bytes < FT_PAGE)
		return 0;
	/* calloc: slots never used stay unbacked. */
	c->tag = calloc(slots, sizeof(*c->tag));
	c->data = calloc(slots, FT_PAGE);
	if (!c->tag || !c->data) {
		ft_page_cache__free(c);
		return -ENOMEM;
	}
	c->slots = slots;
	c->shift = 64 - bits;
	return 0;
}

void ft_page_cache__free(struct ft_page_cache *c)
{
	free(c->tag);
	free(c->data);
	memset(c, 0, sizeof(*c));
}

static int all_zero(const uint8_t *p)
{
	uint64_t acc = 0;
	for (size_t i = 0; i < FT_PAGE; i += 32) {
		uint64_t w[4];
		memcpy(w, p + i, sizeof(w));
		acc |= w[0] | w[1] | w[2] | w[3];
		if (acc)
			return 0;
	}
	return 1;
}

int ft_page_cache__encode(struct ft_page_cache *c, uint64_t idx, const uint8_t *page, struct sbuf *deltas,
			  uint16_t *code, struct ft_page_counts *n)
{
	uint8_t *slot = NULL;
	size_t s = 0;
	bool hit = false;

	if (c->slots) {
		/* Fibonacci hashing: neighbouring pages land far apart. */
		s = c->slots > 1 ? (size_t)((idx * 0x9e3779b97f4a7c15ull) >> c->shift) : 0;
		slot = c->data + s * FT_PAGE;
		hit = c->tag[s] == idx + 1;
		c->tag[s] = idx + 1;
	}
	if (hit) {
		size_t at = deltas->len;
		int ret = sbuf__reserve(deltas, 4);
		if (ret) {
			c->tag[s] = 0;	/* its copy is not this page's */
			return ret;
		}
		deltas->len += 4;
		int d = page_delta__encode(slot, page, FT_DELTA_MAX, deltas);
		if (d >= 0) {
			uint32_t crc = crc32c(0, page, FT_PAGE);
			memcpy(deltas->data + at, &crc, 4);
			memcpy(slot, page, FT_PAGE);
			*code = (uint16_t)d;
			n->delta++;
			return 0;
		}
		deltas->len = at;
		if (d != -E2BIG) {
			c->tag[s] = 0;
			return d;
		}
	}
	if (slot)
		memcpy(slot, page, FT_PAGE);
	if (all_zero(page)) {
		*code = FT_PAGE_ZERO;
		n->zero++;
	} else {
		*code = FT_PAGE_WHOLE;
		n->whole++;
	}
	return 0;
}

int ft_page_cache__rebuild(uint16_t code, const uint8_t **deltas, size_t *left, const uint8_t *base,
			   uint8_t *out, char *err, size_t errlen)
{
	uint32_t crc;

	if (code > FT_DELTA_MAX) {
		snprintf(err, errlen, "unknown page code 0x%04x", code);
		return -EBADMSG;
	}
	if (*left < 4 + (size_t)code) {
		snprintf(err, errlen, "a page delta of %u bytes cut short (%zu left)", code, *left);
		return -EBADMSG;
	}
	memcpy(&crc, *deltas, 4);
	memcpy(out, base, FT_PAGE);
	int ret = page_delta__apply(out, *deltas + 4, code, err, errlen);
	if (ret)
		return ret;
	if (crc32c(0, out, FT_PAGE) != crc) {
		snprintf(err, errlen, "a page delta rebuilt a page whose CRC-32C is not the primary's: "
			 "this secondary's copy of the page is not the one the primary sent");
		return -EBADMSG;
	}
	*deltas += 4 + code;
	*left -= 4 + (size_t)code;
	return 0;
}
