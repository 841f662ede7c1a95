/*
 * fuzz_page_codec.c - libFuzzer over the LZ4 page codec
 * (transport/page_codec.c), the bytes a secondary decodes from every
 * PAGES message:
 *   - decode of any input into a buffer of 0..16 pages never writes
 *     outside it (ASan) and either succeeds with exactly out_len bytes or
 *     refuses; raw_len agrees with a successful decode;
 *   - the input taken as page contents round-trips: encode, then decode,
 *     gives the same bytes back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"

#define MAX_OUT (16u * 4096u)

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	static uint8_t out[MAX_OUT + 64];
	char err[256];

	if (!n)
		return 0;
	/* Byte 0: how many pages the receiver expects. */
	size_t out_len = (size_t)(in[0] % 17) * 4096u;
	memset(out + out_len, 0xa5, 64);	/* a canary past the end */
	int r = page_codec__decode(in + 1, n - 1, out, out_len, err, sizeof(err));
	for (size_t i = 0; i < 64; i++)
		if (out[out_len + i] != 0xa5)
			abort();
	size_t raw = 0;
	if (r == 0 && (page_codec__raw_len(in + 1, n - 1, &raw) != 0 || raw != out_len))
		abort();

	/* Round trip of the input as contents (whole pages of it). */
	size_t len = (n - 1) / 4096u * 4096u;
	if (len > MAX_OUT)
		len = MAX_OUT;
	if (len) {
		struct sbuf enc;
		sbuf__init(&enc);
		if (page_codec__encode(in + 1, len, &enc) == 0) {
			if (page_codec__decode(enc.data, enc.len, out, len, err, sizeof(err)) != 0 ||
			    memcmp(out, in + 1, len) != 0)
				abort();
		}
		sbuf__free(&enc);
	}
	return 0;
}
