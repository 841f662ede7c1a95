/*
 * crc32c: every implementation against a bit-at-a-time reference written
 * straight from the definition, on the standard check value, the iSCSI
 * (RFC 3720) vectors, and random data of many lengths and alignments,
 * including lengths that straddle the three-stream block boundaries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/state/state.h"

#include "tests/unit/check.h"

static const enum crc32c_impl impls[] = { CRC32C_IMPL_SW, CRC32C_IMPL_SSE42,
					  CRC32C_IMPL_SSE42_3WAY };
static const char *const impl_names[] = { "sw", "sse4.2", "sse4.2-3way" };

/* The definition: reflected, polynomial 0x82F63B78, ~0 in and out. */
static uint32_t ref_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

/* xorshift64: deterministic test data without global state. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill(uint8_t *p, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(s);
}

static void test_check_values(void)
{
	static const char check[] = "123456789";
	uint8_t v[32];

	for (size_t i = 0; i < 3; i++) {
		uint32_t c;

		if (!crc32c_impl_supported(impls[i])) {
			printf("note: %s not supported on this CPU, skipped\n",
			       impl_names[i]);
			continue;
		}
		c = crc32c_with(impls[i], 0, check, 9);
		CHECK(c == 0xE3069283u, "%s: crc32c(\"123456789\") = 0x%08X",
		      impl_names[i], c);
		CHECK(crc32c_with(impls[i], 0x12345678u, check, 0) ==
			      0x12345678u,
		      "%s: empty input must return crc unchanged",
		      impl_names[i]);

		/* RFC 3720 B.4 */
		memset(v, 0, sizeof(v));
		c = crc32c_with(impls[i], 0, v, 32);
		CHECK(c == 0x8A9136AAu, "%s: 32 x 0x00 -> 0x%08X",
		      impl_names[i], c);
		memset(v, 0xff, sizeof(v));
		c = crc32c_with(impls[i], 0, v, 32);
		CHECK(c == 0x62A8AB43u, "%s: 32 x 0xFF -> 0x%08X",
		      impl_names[i], c);
		for (int k = 0; k < 32; k++)
			v[k] = (uint8_t)k;
		c = crc32c_with(impls[i], 0, v, 32);
		CHECK(c == 0x46DD794Eu, "%s: 0..31 -> 0x%08X", impl_names[i],
		      c);
		for (int k = 0; k < 32; k++)
			v[k] = (uint8_t)(31 - k);
		c = crc32c_with(impls[i], 0, v, 32);
		CHECK(c == 0x113FDB5Cu, "%s: 31..0 -> 0x%08X", impl_names[i],
		      c);
	}
	CHECK(crc32c(0, check, 9) == 0xE3069283u, "dispatching crc32c()");
	CHECK(ref_crc32c(0, (const uint8_t *)check, 9) == 0xE3069283u,
	      "the reference itself");
}

static void compare_all(const uint8_t *p, size_t len, uint32_t seed_crc)
{
	uint32_t want = ref_crc32c(seed_crc, p, len);
	uint32_t got = crc32c(seed_crc, p, len);

	CHECK(got == want, "crc32c len %zu align %u: 0x%08X, want 0x%08X",
	      len, (unsigned)((uintptr_t)p & 7), got, want);
	for (size_t i = 0; i < 3; i++) {
		if (!crc32c_impl_supported(impls[i]))
			continue;
		got = crc32c_with(impls[i], seed_crc, p, len);
		CHECK(got == want,
		      "%s len %zu align %u: 0x%08X, want 0x%08X",
		      impl_names[i], len, (unsigned)((uintptr_t)p & 7), got,
		      want);
	}
}

static void test_random(void)
{
	/* Lengths around the 3-way blocks (3 x 256, 3 x 8192) and beyond. */
	static const size_t big[] = { 767, 768, 769, 1535, 1536, 2303, 4096,
				      4097, 24575, 24576, 24577, 49152 + 771,
				      65536, 100003, (1u << 20) + 5 };
	size_t max = (1u << 20) + 5 + 8;
	uint8_t *buf = malloc(max);
	uint64_t s = 0x9E3779B97F4A7C15ull;

	if (!buf) {
		CHECK(0, "out of memory");
		return;
	}
	fill(buf, max, &s);
	for (size_t len = 0; len <= 1100; len++)
		compare_all(buf + (len % 8), len, (uint32_t)rnd(&s));
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		for (size_t a = 0; a < 8; a += 3)
			compare_all(buf + a, big[i], (uint32_t)rnd(&s));
	free(buf);
}

static void test_chaining(void)
{
	uint8_t buf[30000];
	uint64_t s = 42;

	fill(buf, sizeof(buf), &s);
	for (int round = 0; round < 200; round++) {
		size_t len = (size_t)(rnd(&s) % sizeof(buf));
		size_t cut = len ? (size_t)(rnd(&s) % len) : 0;
		uint32_t whole = crc32c(0, buf, len);
		uint32_t parts = crc32c(crc32c(0, buf, cut), buf + cut,
					len - cut);

		CHECK(whole == parts, "split %zu/%zu: 0x%08X != 0x%08X", cut,
		      len, whole, parts);
	}
}

int main(void)
{
	test_check_values();
	test_random();
	test_chaining();
	if (failures) {
		fprintf(stderr, "test_crc32c: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_crc32c: all checks passed\n");
	return 0;
}
