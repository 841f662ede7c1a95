/* kvhist: see kvhist.h. */
#include "tools/kvclient/kvhist.h"

#include <string.h>

void kvhist__init(struct kvhist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/* Bucket of v: below 2*SUB linear; else with m = index of the top bit,
 * shift = m - 6 keeps the top 7 bits (64..127), and each shift step adds
 * SUB buckets, so the index grows monotonically with v. */
static unsigned kvhist__index(uint64_t v)
{
	unsigned m, shift;

	if (v < 2 * KVHIST_SUB)
		return (unsigned)v;
	m = 63u - (unsigned)__builtin_clzll(v);
	shift = m - 6;
	return KVHIST_SUB * shift + (unsigned)(v >> shift);
}

/* Largest value that falls in bucket i. */
static uint64_t kvhist__upper(unsigned i)
{
	unsigned shift, top;

	if (i < 2 * KVHIST_SUB)
		return i;
	shift = i / KVHIST_SUB - 1;
	top = i - KVHIST_SUB * shift;
	return (((uint64_t)top + 1) << shift) - 1;
}

void kvhist__add(struct kvhist *h, uint64_t v)
{
	h->buckets[kvhist__index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

uint64_t kvhist__quantile(const struct kvhist *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;
	/* The smallest value with at least ceil(q * count) samples at or
	 * below it. */
	rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < KVHIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t u = kvhist__upper(i);

			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}
