/* kvhist: a fixed-size log-linear latency histogram (HDR-like).
 *
 * Values below 128 get a bucket each; above, every power of two is split
 * into 64 buckets, so a percentile is reported within 1/64 (1.6 %) of the
 * truth, in constant memory however long a load runs. Percentiles report a
 * bucket's upper bound (never under-reporting), clamped to the exact
 * maximum seen. */
#ifndef FTVM_TOOLS_KVHIST_H
#define FTVM_TOOLS_KVHIST_H

#include <stdint.h>

#define KVHIST_SUB 64
#define KVHIST_BUCKETS (KVHIST_SUB * 59) /* covers the full uint64_t range */

struct kvhist {
	uint64_t count, min, max, sum;
	uint64_t buckets[KVHIST_BUCKETS];
};

void kvhist__init(struct kvhist *h);
void kvhist__add(struct kvhist *h, uint64_t v);
/* The value at quantile q in [0, 1] (0 for an empty histogram). */
uint64_t kvhist__quantile(const struct kvhist *h, double q);

#endif
