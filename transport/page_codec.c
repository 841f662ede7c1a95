/*
 * Page codec: guest pages compressed with LZ4 in independent 64 KiB blocks.
 *
 * Why blocks: a decoder bounded by its output buffer and a corrupt block
 * that cannot spill into its neighbours; and 64 KiB is LZ4's own window, so
 * splitting costs almost no ratio.  Why a zero method: guest RAM is mostly
 * zero pages early in a VM's life, and recognising them with a word compare
 * is several times faster than letting LZ4 discover the run.  Why raw
 * fallback: random or already-compressed pages must cost no more than 9
 * bytes per block over the wire.
 *
 * The format is in transport.h.  Decoding trusts nothing: every size is
 * checked against the input left, the output left and the method's rule
 * before a byte is written.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lz4.h>

#include "transport.h"
#include "xport_internal.h"

_Static_assert(PAGE_CODEC_BLOCK <= LZ4_MAX_INPUT_SIZE, "block too big");


static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Word-at-a-time zero test; memcpy loads keep it alignment-agnostic. */
static int all_zero(const uint8_t *p, size_t n)
{
	uint64_t acc = 0;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		uint64_t w[4];

		memcpy(w, p + i, sizeof(w));
		acc |= w[0] | w[1] | w[2] | w[3];
		/* Stop early on data pages: usually within the first line. */
		if (acc)
			return 0;
	}
	for (; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int page_codec__encode(const void *data, size_t len, struct sbuf *out)
{
	const uint8_t *src = data;
	size_t start = out->len;
	int bound = LZ4_compressBound((int)PAGE_CODEC_BLOCK);

	for (size_t pos = 0; pos < len;) {
		size_t raw = len - pos < PAGE_CODEC_BLOCK ? len - pos :
							    PAGE_CODEC_BLOCK;
		uint8_t *hdr;
		uint32_t stored;
		uint8_t method;
		int n = 0;

		if (sbuf__reserve(out, PAGE_CODEC_BLOCK_HDR + (size_t)bound)) {
			out->len = start;
			return -ENOMEM;
		}
		hdr = out->data + out->len;
		if (all_zero(src + pos, raw)) {
			method = PAGE_CODEC_ZERO;
			stored = 0;
		} else {
			/* Capacity raw - 1: LZ4 gives up (returns 0) as soon
			 * as the block cannot shrink, which also saves time
			 * on incompressible pages. */
			if (raw > 1)
				n = LZ4_compress_default(
					(const char *)src + pos,
					(char *)hdr + PAGE_CODEC_BLOCK_HDR,
					(int)raw, (int)raw - 1);
			if (n > 0) {
				method = PAGE_CODEC_LZ4;
				stored = (uint32_t)n;
			} else {
				method = PAGE_CODEC_RAW;
				stored = (uint32_t)raw;
				memcpy(hdr + PAGE_CODEC_BLOCK_HDR, src + pos,
				       raw);
			}
		}
		put_le32(hdr, (uint32_t)raw);
		put_le32(hdr + 4, stored);
		hdr[8] = method;
		out->len += PAGE_CODEC_BLOCK_HDR + stored;
		pos += raw;
	}
	return 0;
}

/*
 * Check one block header at in[pos..]; on success raw, stored and method hold
 * it.  Shared by decode and raw_len so both refuse exactly the same input.
 */
static int check_block(const uint8_t *in, size_t len, size_t pos,
		       uint32_t *raw, uint32_t *stored, uint8_t *method,
		       char *err, size_t errlen)
{
	if (len - pos < PAGE_CODEC_BLOCK_HDR) {
		xport__seterr(err, errlen,
		       "page data truncated: %zu bytes left at offset %zu, a "
		       "block header needs %u", len - pos, pos,
		       PAGE_CODEC_BLOCK_HDR);
		return -EBADMSG;
	}
	*raw = get_le32(in + pos);
	*stored = get_le32(in + pos + 4);
	*method = in[pos + 8];
	if (*raw == 0 || *raw > PAGE_CODEC_BLOCK) {
		xport__seterr(err, errlen,
		       "page data corrupt: block at offset %zu claims %u raw "
		       "bytes (1..%u allowed)", pos, *raw, PAGE_CODEC_BLOCK);
		return -EBADMSG;
	}
	switch (*method) {
	case PAGE_CODEC_RAW:
		if (*stored != *raw)
			goto bad_size;
		break;
	case PAGE_CODEC_LZ4:
		/* The encoder stores LZ4 only when it shrank the block. */
		if (*stored == 0 || *stored >= *raw)
			goto bad_size;
		break;
	case PAGE_CODEC_ZERO:
		if (*stored != 0)
			goto bad_size;
		break;
	default:
		xport__seterr(err, errlen,
		       "page data corrupt: block at offset %zu has unknown "
		       "method %u", pos, *method);
		return -EBADMSG;
	}
	if (*stored > len - pos - PAGE_CODEC_BLOCK_HDR) {
		xport__seterr(err, errlen,
		       "page data truncated: block at offset %zu stores %u "
		       "bytes, %zu left", pos, *stored,
		       len - pos - PAGE_CODEC_BLOCK_HDR);
		return -EBADMSG;
	}
	return 0;

bad_size:
	xport__seterr(err, errlen,
	       "page data corrupt: block at offset %zu: method %u with %u "
	       "stored bytes for %u raw bytes", pos, *method, *stored, *raw);
	return -EBADMSG;
}

int page_codec__raw_len(const void *in, size_t len, size_t *raw_len)
{
	size_t pos = 0, total = 0;

	while (pos < len) {
		uint32_t raw, stored;
		uint8_t method;

		if (check_block(in, len, pos, &raw, &stored, &method, NULL, 0))
			return -EBADMSG;
		total += raw;
		pos += PAGE_CODEC_BLOCK_HDR + stored;
	}
	*raw_len = total;
	return 0;
}

int page_codec__decode(const void *in, size_t len, void *out, size_t out_len,
		       char *err, size_t errlen)
{
	const uint8_t *src = in;
	uint8_t *dst = out;
	size_t pos = 0, done = 0;

	while (pos < len) {
		uint32_t raw, stored;
		uint8_t method;
		const uint8_t *data;
		int rc, n;

		rc = check_block(src, len, pos, &raw, &stored, &method, err,
				 errlen);
		if (rc)
			return rc;
		if (raw > out_len - done) {
			xport__seterr(err, errlen,
			       "page data corrupt: block at offset %zu would "
			       "decode past the expected %zu bytes", pos,
			       out_len);
			return -EBADMSG;
		}
		data = src + pos + PAGE_CODEC_BLOCK_HDR;
		switch (method) {
		case PAGE_CODEC_RAW:
			memcpy(dst + done, data, raw);
			break;
		case PAGE_CODEC_ZERO:
			memset(dst + done, 0, raw);
			break;
		default: /* LZ4, checked above */
			/* The _safe decoder never writes beyond the capacity
			 * we give it (raw) and never reads beyond stored. */
			n = LZ4_decompress_safe((const char *)data,
						(char *)dst + done, (int)stored,
						(int)raw);
			if (n != (int)raw) {
				xport__seterr(err, errlen,
				       "page data corrupt: LZ4 block at offset "
				       "%zu %s", pos,
				       n < 0 ? "does not decode" :
					       "decodes to the wrong length");
				return -EBADMSG;
			}
			break;
		}
		done += raw;
		pos += PAGE_CODEC_BLOCK_HDR + stored;
	}
	if (done != out_len) {
		xport__seterr(err, errlen,
		       "page data truncated: decoded %zu bytes, expected %zu",
		       done, out_len);
		return -EBADMSG;
	}
	return 0;
}

/* ---- page deltas ---------------------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

int page_delta__encode(const void *old_page, const void *new_page, size_t max, struct sbuf *out)
{
	const uint8_t *a = old_page, *b = new_page;
	size_t start = out->len, end = 0;	/* end: where the previous run ended */
	size_t w = 0, words = PAGE_DELTA_PAGE / 8;

	while (w < words) {
		uint64_t x, y;
		/* Most of a page is unchanged: skip it a cache line at a time. */
		if (w % 8 == 0 && !memcmp(a + w * 8, b + w * 8, 64)) {
			w += 8;
			continue;
		}
		memcpy(&x, a + w * 8, 8);
		memcpy(&y, b + w * 8, 8);
		if (x == y) {
			w++;
			continue;
		}
		size_t first = w;
		/* The run goes on while words differ, and across a single equal
		 * word (its 8 bytes cost less than a new run's header + gap). */
		while (w < words) {
			memcpy(&x, a + w * 8, 8);
			memcpy(&y, b + w * 8, 8);
			if (x != y) {
				w++;
				continue;
			}
			if (w + 1 < words) {
				uint64_t x2, y2;
				memcpy(&x2, a + (w + 1) * 8, 8);
				memcpy(&y2, b + (w + 1) * 8, 8);
				if (x2 != y2) {
					w += 2;
					continue;
				}
			}
			break;
		}
		size_t off = first * 8, len = (w - first) * 8;
		if (out->len - start + PAGE_DELTA_RUN_HDR + len > max) {
			out->len = start;
			return -E2BIG;
		}
		int ret = sbuf__reserve(out, PAGE_DELTA_RUN_HDR + len);
		if (ret) {
			out->len = start;
			return ret;
		}
		uint8_t *h = out->data + out->len;
		put_le16(h, (uint16_t)(off - end));
		put_le16(h + 2, (uint16_t)len);
		memcpy(h + PAGE_DELTA_RUN_HDR, b + off, len);
		out->len += PAGE_DELTA_RUN_HDR + len;
		end = off + len;
	}
	return (int)(out->len - start);
}

int page_delta__apply(void *page, const void *delta, size_t len, char *err, size_t errlen)
{
	uint8_t *p = page;
	const uint8_t *d = delta;
	size_t at = 0, pos = 0;

	while (at < len) {
		if (len - at < PAGE_DELTA_RUN_HDR) {
			snprintf(err, errlen, "page delta: a run header cut after %zu bytes", len - at);
			return -EBADMSG;
		}
		size_t gap = get_le16(d + at), n = get_le16(d + at + 2);
		at += PAGE_DELTA_RUN_HDR;
		if (!n || gap > PAGE_DELTA_PAGE - pos || n > PAGE_DELTA_PAGE - pos - gap) {
			snprintf(err, errlen, "page delta: a run of %zu bytes at %zu %s", n, pos + gap,
				 n ? "past the page's end" : "(empty)");
			return -EBADMSG;
		}
		if (n > len - at) {
			snprintf(err, errlen, "page delta: a run of %zu bytes with %zu left", n, len - at);
			return -EBADMSG;
		}
		pos += gap;
		memcpy(p + pos, d + at, n);
		pos += n;
		at += n;
	}
	return 0;
}
