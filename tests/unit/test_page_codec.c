/*
 * Page codec: round trips of zero, text-like and random pages at many sizes
 * and alignments; the chosen method per block; and refusal of anything
 * inconsistent - every header corruption, every truncation, trailing bytes,
 * wrong expected length, hand-made malicious LZ4 - without ever writing
 * outside the output buffer (a canary here; ASan in the _asan build, where
 * the output buffers are allocated at their exact size).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "transport/transport.h"

#include "tests/unit/check.h"

#define REQUIRE(cond, msg)                                                   \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,   \
				msg);                                        \
			exit(1);                                             \
		}                                                            \
	} while (0)

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t s = seed | 1;

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rnd(&s) >> 24);
}

/* Log-file-like text: words, numbers, newlines. */
static void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
	static const char *const words[] = {
		"the", "kernel", "page", "dirty", "epoch", "checkpoint",
		"secondary", "primary", "commit", "virtio", "queue", "error",
		"INFO", "WARN", "request", "completed", "in", "ms", "for",
		"client", "192.168.0.20", "GET", "/index.html", "HTTP/1.1",
	};
	uint64_t s = seed | 1;
	size_t i = 0;

	while (i < n) {
		char w[32];
		uint64_t r = rnd(&s);
		int k;

		if (r % 11 == 0)
			k = snprintf(w, sizeof(w), "%u ", (unsigned)(r >> 40));
		else if (r % 13 == 0)
			k = snprintf(w, sizeof(w), "\n");
		else
			k = snprintf(w, sizeof(w), "%s ",
				     words[(r >> 8) %
					   (sizeof(words) / sizeof(words[0]))]);
		for (int j = 0; j < k && i < n; j++)
			p[i++] = (uint8_t)w[j];
	}
}

/* Decode into a buffer of exactly out_len bytes followed by a canary. */
#define CANARY 64
static int decode_guarded(const struct sbuf *enc, size_t out_len,
			  uint8_t **res, char *err, size_t errlen)
{
	uint8_t *out = malloc(out_len + CANARY);
	int rc;

	REQUIRE(out, "oom");
	memset(out + out_len, 0xA5, CANARY);
	rc = page_codec__decode(enc->data, enc->len, out, out_len, err,
				errlen);
	for (size_t i = 0; i < CANARY; i++)
		if (out[out_len + i] != 0xA5) {
			CHECK(0, "decode wrote past out_len (byte %zu)", i);
			break;
		}
	*res = out;
	return rc;
}

static void roundtrip(const uint8_t *data, size_t len, const char *what)
{
	struct sbuf enc;
	uint8_t *out;
	char err[256] = "";
	size_t raw = 0;
	int rc;

	sbuf__init(&enc);
	REQUIRE(page_codec__encode(data, len, &enc) == 0, "encode");
	CHECK(page_codec__raw_len(enc.data, enc.len, &raw) == 0 && raw == len,
	      "%s: raw_len %zu want %zu", what, raw, len);
	/* Exact-size output buffer (no canary): ASan's redzone guards it. */
	out = malloc(len ? len : 1);
	REQUIRE(out, "oom");
	rc = page_codec__decode(enc.data, enc.len, out, len, err, sizeof(err));
	CHECK(rc == 0, "%s: decode %d \"%s\"", what, rc, err);
	CHECK(!len || !memcmp(out, data, len), "%s: output differs", what);
	free(out);
	/* Expected length off by one either way. */
	if (len) {
		rc = decode_guarded(&enc, len - 1, &out, err, sizeof(err));
		CHECK(rc == -EBADMSG, "%s: shorter out_len accepted", what);
		free(out);
	}
	rc = decode_guarded(&enc, len + 1, &out, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "expected"),
	      "%s: longer out_len accepted (\"%s\")", what, err);
	free(out);
	sbuf__free(&enc);
}

static void test_roundtrips(void)
{
	static const size_t lens[] = {
		0, 1, 2, 3, 7, 100, 4095, 4096, 4097, 12345, 65535, 65536,
		65537, 131072, 200001, (1u << 20) + 3,
	};
	size_t max = (1u << 20) + 3 + 1;
	uint8_t *zero = calloc(1, max), *text = malloc(max),
		*random = malloc(max), *mixed = malloc(max);

	REQUIRE(zero && text && random && mixed, "oom");
	fill_text(text, max, 1);
	fill_random(random, max, 2);
	/* Mixed, page by page, as dirty guest memory looks. */
	for (size_t off = 0; off < max; off += 4096) {
		size_t n = max - off < 4096 ? max - off : 4096;
		const uint8_t *src = (off / 4096) % 3 == 0 ? zero :
				     (off / 4096) % 3 == 1 ? text : random;

		memcpy(mixed + off, src + off, n);
	}
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char what[64];

		snprintf(what, sizeof(what), "zero %zu", lens[i]);
		roundtrip(zero, lens[i], what);
		snprintf(what, sizeof(what), "text %zu", lens[i]);
		roundtrip(text, lens[i], what);
		snprintf(what, sizeof(what), "random %zu", lens[i]);
		roundtrip(random, lens[i], what);
		snprintf(what, sizeof(what), "mixed %zu", lens[i]);
		roundtrip(mixed, lens[i], what);
		/* Unaligned source. */
		snprintf(what, sizeof(what), "text+1 %zu", lens[i]);
		roundtrip(text + 1, lens[i], what);
	}
	free(zero);
	free(text);
	free(random);
	free(mixed);
}

/* Method choice: what lands on the wire. */
static void test_methods(void)
{
	size_t n = 3 * PAGE_CODEC_BLOCK + 100;
	uint8_t *buf = calloc(1, n);
	struct sbuf enc;
	size_t pos = 0;
	uint8_t methods[8];
	int nb = 0;

	REQUIRE(buf, "oom");
	/* block 0 zero, block 1 text, block 2 random, tail random */
	fill_text(buf + PAGE_CODEC_BLOCK, PAGE_CODEC_BLOCK, 3);
	fill_random(buf + 2 * PAGE_CODEC_BLOCK, PAGE_CODEC_BLOCK + 100, 4);
	sbuf__init(&enc);
	REQUIRE(page_codec__encode(buf, n, &enc) == 0, "encode");
	while (pos < enc.len && nb < 8) {
		uint32_t stored;

		memcpy(&stored, enc.data + pos + 4, 4);
		methods[nb++] = enc.data[pos + 8];
		pos += PAGE_CODEC_BLOCK_HDR + stored;
	}
	CHECK(nb == 4 && pos == enc.len, "%d blocks", nb);
	CHECK(methods[0] == PAGE_CODEC_ZERO && methods[1] == PAGE_CODEC_LZ4 &&
		      methods[2] == PAGE_CODEC_RAW &&
		      methods[3] == PAGE_CODEC_RAW,
	      "methods %u %u %u %u", methods[0], methods[1], methods[2],
	      methods[3]);
	/* Incompressible input costs exactly the block headers. */
	CHECK(enc.len < PAGE_CODEC_BLOCK + 100 + 4 * PAGE_CODEC_BLOCK_HDR +
				PAGE_CODEC_BLOCK / 2,
	      "encoded %zu bytes", enc.len);

	/* encode appends: existing contents are kept. */
	{
		struct sbuf two;
		uint8_t out[10];

		sbuf__init(&two);
		sbuf__append(&two, "PFX", 3);
		REQUIRE(page_codec__encode("abcdefghij", 10, &two) == 0, "enc");
		CHECK(!memcmp(two.data, "PFX", 3), "prefix clobbered");
		CHECK(page_codec__decode(two.data + 3, two.len - 3, out, 10,
					 NULL, 0) == 0 &&
			      !memcmp(out, "abcdefghij", 10),
		      "appended encoding wrong");
		sbuf__free(&two);
	}
	sbuf__free(&enc);
	free(buf);
}

/* The corruption corpus: zero, LZ4, raw and a short LZ4 tail block. */
static void corpus(uint8_t **data, size_t *len, struct sbuf *enc)
{
	size_t n = 2 * PAGE_CODEC_BLOCK + 3000 + 2000;
	uint8_t *d = calloc(1, n);

	REQUIRE(d, "oom");
	fill_text(d + PAGE_CODEC_BLOCK, PAGE_CODEC_BLOCK, 5);
	fill_random(d + 2 * PAGE_CODEC_BLOCK, 3000, 6);
	fill_text(d + 2 * PAGE_CODEC_BLOCK + 3000, 2000, 7);
	sbuf__init(enc);
	/* Blocks: [0,64K) zero, [64K,128K) text, then one block of 5000
	 * bytes (random + text) which LZ4 still shrinks a little. */
	REQUIRE(page_codec__encode(d, n, enc) == 0, "encode");
	*data = d;
	*len = n;
}

static void test_header_corruption(void)
{
	uint8_t *data, *out;
	size_t len, pos = 0;
	struct sbuf enc;
	int tried = 0;

	corpus(&data, &len, &enc);
	while (pos < enc.len) {
		uint32_t stored;

		memcpy(&stored, enc.data + pos + 4, 4);
		/* Every bit of every block header. */
		for (size_t b = 0; b < PAGE_CODEC_BLOCK_HDR; b++) {
			for (int bit = 0; bit < 8; bit++) {
				char err[256] = "";
				int rc;

				enc.data[pos + b] ^= (uint8_t)(1u << bit);
				rc = decode_guarded(&enc, len, &out, err,
						    sizeof(err));
				enc.data[pos + b] ^= (uint8_t)(1u << bit);
				CHECK(rc == -EBADMSG && err[0],
				      "header byte %zu bit %d at block %zu "
				      "accepted: %d \"%s\"", b, bit, pos, rc,
				      err);
				free(out);
				tried++;
			}
		}
		pos += PAGE_CODEC_BLOCK_HDR + stored;
	}
	printf("  header bit flips refused: %d\n", tried);
	sbuf__free(&enc);
	free(data);
}

/*
 * Flips inside LZ4 data: the format has no checksum of its own (the message
 * carrying it has one), so some flips decode to other bytes of the right
 * length.  What must hold: never a write outside the buffer, never a crash,
 * never an error other than -EBADMSG.
 */
static void test_body_corruption(void)
{
	uint8_t *data, *out;
	size_t len, pos = 0;
	struct sbuf enc;
	int refused = 0, differs = 0, same = 0, tried = 0;

	corpus(&data, &len, &enc);
	while (pos < enc.len) {
		uint32_t stored;
		uint8_t method = enc.data[pos + 8];

		memcpy(&stored, enc.data + pos + 4, 4);
		for (size_t b = 0; method == PAGE_CODEC_LZ4 && b < stored;
		     b += (stored > 4000 ? 7 : 1)) {
			size_t at = pos + PAGE_CODEC_BLOCK_HDR + b;
			char err[256];
			int rc;

			enc.data[at] ^= 0x41;
			rc = decode_guarded(&enc, len, &out, err, sizeof(err));
			enc.data[at] ^= 0x41;
			tried++;
			/* Accepted flips may even decode to the same bytes
			 * (a match offset moved to an identical run). */
			if (rc == -EBADMSG)
				refused++;
			else if (rc == 0 && memcmp(out, data, len))
				differs++;
			else if (rc == 0)
				same++;
			else
				CHECK(0, "flip at %zu: rc %d", at, rc);
			free(out);
		}
		pos += PAGE_CODEC_BLOCK_HDR + stored;
	}
	printf("  LZ4 data flips: %d tried, %d refused, %d decoded to other "
	       "bytes (the message checksum catches those), %d to the same "
	       "bytes\n", tried, refused, differs, same);
	CHECK(tried > 1000, "only %d flips tried", tried);
	CHECK(refused > tried / 4, "only %d of %d refused", refused, tried);
	sbuf__free(&enc);
	free(data);
}

static void test_truncation_and_trailing(void)
{
	uint8_t *data, *out;
	size_t len;
	struct sbuf enc;
	int rc;
	char err[256];

	corpus(&data, &len, &enc);
	for (size_t cut = 0; cut < enc.len; cut++) {
		size_t full = enc.len;

		enc.len = cut;
		err[0] = '\0';
		rc = decode_guarded(&enc, len, &out, err, sizeof(err));
		enc.len = full;
		CHECK(rc == -EBADMSG && err[0],
		      "truncated to %zu of %zu accepted: %d", cut, full, rc);
		CHECK(rc != -EBADMSG || strstr(err, "truncated") ||
			      strstr(err, "corrupt"),
		      "cut %zu: \"%s\"", cut, err);
		free(out);
		/* raw_len agrees about what is acceptable */
		{
			size_t raw = 0;

			if (cut < full &&
			    page_codec__raw_len(enc.data, cut, &raw) == 0)
				CHECK(raw != len, "raw_len took a cut stream");
		}
	}
	/* One byte too many. */
	sbuf__append_u8(&enc, 0);
	rc = decode_guarded(&enc, len, &out, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "truncated"),
	      "trailing byte accepted: %d \"%s\"", rc, err);
	free(out);
	sbuf__free(&enc);
	free(data);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);	/* little-endian host */
}

/* Hand-made blocks a malicious or buggy peer could send. */
static void test_crafted(void)
{
	uint8_t in[64], out[4096 + CANARY];
	char err[256];
	int rc;

	/* LZ4 sequence whose match reaches back before the output start:
	 * token 0x10 (1 literal, match len 4), literal 'A', offset 1000. */
	put32(in, 100);
	put32(in + 4, 12);
	in[8] = PAGE_CODEC_LZ4;
	memcpy(in + 9, "\x10" "A" "\xe8\x03" "\x50" "BBBBB\0\0\0", 12);
	memset(out, 0xA5, sizeof(out));
	rc = page_codec__decode(in, 9 + 12, out, 100, err, sizeof(err));
	CHECK(rc == -EBADMSG, "match before output start accepted: %d", rc);
	for (size_t i = 100; i < sizeof(out); i++)
		if (out[i] != 0xA5) {
			CHECK(0, "wrote past out_len at %zu", i);
			break;
		}

	/* raw_len above the block size, zero, and an unknown method. */
	put32(in, PAGE_CODEC_BLOCK + 1);
	put32(in + 4, 0);
	in[8] = PAGE_CODEC_ZERO;
	rc = page_codec__decode(in, 9, out, 4096, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "raw bytes"), "\"%s\"", err);
	put32(in, 0);
	rc = page_codec__decode(in, 9, out, 0, err, sizeof(err));
	CHECK(rc == -EBADMSG, "empty block accepted");
	put32(in, 16);
	in[8] = 3;
	rc = page_codec__decode(in, 9, out, 16, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "unknown method 3"), "\"%s\"",
	      err);

	/* A zero block promising more than the caller's buffer. */
	put32(in, 4096);
	put32(in + 4, 0);
	in[8] = PAGE_CODEC_ZERO;
	memset(out, 0xA5, sizeof(out));
	rc = page_codec__decode(in, 9, out, 100, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "past the expected"), "\"%s\"",
	      err);
	CHECK(out[0] == 0xA5, "wrote before refusing");

	/* An LZ4 block that decodes to fewer bytes than its header says,
	 * even when the caller expects that many. */
	{
		uint8_t text[5000], dec[5001], blk[9 + 6000];
		int n;

		fill_text(text, sizeof(text), 9);
		n = LZ4_compress_default((const char *)text, (char *)blk + 9,
					 5000, 6000);
		REQUIRE(n > 0 && n < 5000, "lz4");
		put32(blk, 5001);
		put32(blk + 4, (uint32_t)n);
		blk[8] = PAGE_CODEC_LZ4;
		rc = page_codec__decode(blk, 9 + (size_t)n, dec, 5001, err,
					sizeof(err));
		CHECK(rc == -EBADMSG && strstr(err, "wrong length"), "\"%s\"",
		      err);
		/* And an LZ4 block that did not shrink: never produced by the
		 * encoder (it stores raw), so refused. */
		fill_random(text, 100, 10);
		n = LZ4_compress_default((const char *)text, (char *)blk + 9,
					 100, 6000);
		REQUIRE(n >= 100, "random data shrank");
		put32(blk, 100);
		put32(blk + 4, (uint32_t)n);
		rc = page_codec__decode(blk, 9 + (size_t)n, dec, 100, err,
					sizeof(err));
		CHECK(rc == -EBADMSG && strstr(err, "stored bytes for 100 raw"),
		      "\"%s\"", err);
	}

	/* Empty input is the encoding of nothing. */
	CHECK(page_codec__decode(in, 0, out, 0, err, sizeof(err)) == 0,
	      "empty input refused");
	CHECK(page_codec__decode(in, 0, out, 1, err, sizeof(err)) == -EBADMSG,
	      "empty input for 1 byte accepted");
}

/* Page deltas: whatever changed between two versions of a page, the delta
 * rebuilds the new one from the old, within its bound or not at all. */
static void test_delta_roundtrips(void)
{
	static uint8_t old[PAGE_DELTA_PAGE], cur[PAGE_DELTA_PAGE], out[PAGE_DELTA_PAGE];
	struct sbuf d;
	char err[160];
	uint64_t s = 99;
	int sizes[5] = { 0 };

	sbuf__init(&d);
	for (int round = 0; round < 4000; round++) {
		fill_text(old, sizeof(old), (uint64_t)round);
		memcpy(cur, old, sizeof(cur));
		/* 0..40 changes: single bytes, word-sized, long runs, the edges. */
		int changes = (int)(rnd(&s) % 41);
		for (int c = 0; c < changes; c++) {
			size_t at = rnd(&s) % PAGE_DELTA_PAGE;
			size_t len = rnd(&s) % 4 == 0 ? rnd(&s) % 600 : rnd(&s) % 9;
			if (round % 7 == 0)
				at = rnd(&s) % 2 ? 0 : PAGE_DELTA_PAGE - 1;
			for (size_t i = at; i < at + len + 1 && i < PAGE_DELTA_PAGE; i++)
				cur[i] ^= (uint8_t)(1 + rnd(&s) % 255);
		}
		size_t max = round % 3 ? PAGE_DELTA_PAGE : 1 + rnd(&s) % 512;
		sbuf__reset(&d);
		REQUIRE(sbuf__append(&d, "PFX", 3) == 0, "append");
		int n = page_delta__encode(old, cur, max, &d);
		if (n == -E2BIG) {
			CHECK(d.len == 3, "round %d: a refused delta left %zu bytes", round, d.len - 3);
			sizes[4]++;
			continue;
		}
		CHECK(n >= 0 && (size_t)n <= max && d.len == 3 + (size_t)n, "round %d: n %d, max %zu", round, n,
		      max);
		CHECK(!memcmp(d.data, "PFX", 3), "prefix clobbered");
		CHECK(n != 0 || !memcmp(old, cur, sizeof(cur)), "round %d: an empty delta for changed pages", round);
		memcpy(out, old, sizeof(out));
		int rc = page_delta__apply(out, d.data + 3, (size_t)n, err, sizeof(err));
		CHECK(rc == 0, "round %d: apply: %s", round, err);
		CHECK(!memcmp(out, cur, sizeof(out)), "round %d: the delta did not rebuild the page", round);
		sizes[n == 0 ? 0 : n < 64 ? 1 : n < 1024 ? 2 : 3]++;
	}
	/* The bound is honoured and the encoder found small deltas. */
	CHECK(sizes[0] > 0 && sizes[1] > 0 && sizes[2] > 0 && sizes[4] > 0,
	      "delta sizes: %d empty, %d < 64, %d < 1024, %d larger, %d over the bound", sizes[0], sizes[1],
	      sizes[2], sizes[3], sizes[4]);
	/* One changed byte costs a run of one word. */
	fill_text(old, sizeof(old), 5);
	memcpy(cur, old, sizeof(cur));
	cur[1000] ^= 1;
	sbuf__reset(&d);
	CHECK(page_delta__encode(old, cur, PAGE_DELTA_PAGE, &d) == (int)PAGE_DELTA_RUN_HDR + 8,
	      "one byte: %zu bytes", d.len);
	sbuf__free(&d);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* A delta that would write outside the page, or does not say what it
 * writes, is refused. */
static void test_delta_crafted(void)
{
	static uint8_t page[PAGE_DELTA_PAGE];
	uint8_t d[64];
	char err[160];

	memset(d, 0xab, sizeof(d));
	put16(d, 4000);
	put16(d + 2, 96);	/* 4000 + 96 = 4096: ends at the page's end */
	uint8_t big[4 + 96];
	memcpy(big, d, 4);
	memset(big + 4, 7, 96);
	CHECK(page_delta__apply(page, big, sizeof(big), err, sizeof(err)) == 0 && page[4095] == 7,
	      "a run to the page's end refused: %s", err);
	put16(big + 2, 97);
	CHECK(page_delta__apply(page, big, sizeof(big), err, sizeof(err)) == -EBADMSG &&
	      strstr(err, "past the page"), "a run past the end: \"%s\"", err);
	put16(d, 0);
	put16(d + 2, 0);
	CHECK(page_delta__apply(page, d, 4, err, sizeof(err)) == -EBADMSG && strstr(err, "empty"),
	      "an empty run: \"%s\"", err);
	put16(d + 2, 10);
	CHECK(page_delta__apply(page, d, 4 + 9, err, sizeof(err)) == -EBADMSG && strstr(err, "left"),
	      "a run longer than its data: \"%s\"", err);
	CHECK(page_delta__apply(page, d, 3, err, sizeof(err)) == -EBADMSG && strstr(err, "header"),
	      "a cut header: \"%s\"", err);
	/* Two runs whose gaps add up past the page. */
	uint8_t two[4 + 8 + 4 + 8];
	put16(two, 4000);
	put16(two + 2, 8);
	put16(two + 12, 100);
	put16(two + 14, 8);
	CHECK(page_delta__apply(page, two, sizeof(two), err, sizeof(err)) == -EBADMSG,
	      "a second run past the end accepted");
	CHECK(page_delta__apply(page, two, 0, err, sizeof(err)) == 0, "an empty delta refused");
}

int main(void)
{
	printf("delta_roundtrips\n");
	test_delta_roundtrips();
	printf("delta_crafted\n");
	test_delta_crafted();
	printf("roundtrips\n");
	test_roundtrips();
	printf("methods\n");
	test_methods();
	printf("header_corruption\n");
	test_header_corruption();
	printf("body_corruption\n");
	test_body_corruption();
	printf("truncation_and_trailing\n");
	test_truncation_and_trailing();
	printf("crafted\n");
	test_crafted();
	if (failures) {
		printf("test_page_codec: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_page_codec: all passed\n");
	return 0;
}
