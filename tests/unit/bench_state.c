/*
 * Microbenchmark for vmm/state (not a test: numbers, no pass/fail).
 *
 *   crc32c throughput per implementation and buffer size
 *   vmstate save / load of a ~200-byte virtio-like device struct
 *   snapshot build + verify of a checkpoint-sized set of pages
 *
 * Run a Release/RelWithDebInfo build: ./tests/unit/bench_state
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CLOCK_MONOTONIC */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/state/state.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile uint32_t sink;

static void bench_crc(void)
{
	static const size_t sizes[] = { 64, 4096, 65536, 1 << 20, 64 << 20 };
	static const char *const names[] = { "sw (slicing-by-8)",
					     "sse4.2 1-stream",
					     "sse4.2 3-stream+pclmul" };
	uint8_t *buf = malloc(64 << 20);

	for (size_t i = 0; i < (64 << 20); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	printf("crc32c throughput (GB/s = 1e9 bytes/s)\n");
	printf("  %-24s", "impl \\ size");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		printf(" %9zu", sizes[s]);
	printf("\n");
	for (int impl = 0; impl < 4; impl++) {
		if (impl < 3 && !crc32c_impl_supported((enum crc32c_impl)impl))
			continue;
		printf("  %-24s", impl < 3 ? names[impl] : "crc32c() dispatch");
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t len = sizes[s];
			double t0 = now(), t;
			uint64_t bytes = 0;
			uint32_t c = 0;

			do {
				for (int k = 0; k < 16; k++) {
					c = impl < 3 ? crc32c_with(
							       (enum crc32c_impl)impl,
							       c, buf, len)
						     : crc32c(c, buf, len);
					bytes += len;
				}
				t = now() - t0;
			} while (t < 0.2);
			sink = c;
			printf(" %9.2f", (double)bytes / t / 1e9);
		}
		printf("\n");
	}
	free(buf);
}

/* The device from test_vmstate.c. */
struct vq {
	uint16_t size, last_avail, used_idx;
	uint8_t ready;
	uint64_t desc_addr, avail_addr, used_addr;
	uint32_t event_idx;
};
struct dev {
	uint32_t status;
	uint64_t host_features, guest_features;
	uint32_t queue_sel;
	struct vq vqs[3];
	uint8_t config[40];
	uint32_t isr;
	uint64_t flush_gen;
	void *backend;
	int fd;
};
static const struct vmstate_field vq_fields[] = {
	VMSTATE_FIELD(struct vq, size),
	VMSTATE_FIELD(struct vq, last_avail),
	VMSTATE_FIELD(struct vq, used_idx),
	VMSTATE_FIELD(struct vq, ready),
	VMSTATE_FIELD(struct vq, desc_addr),
	VMSTATE_FIELD(struct vq, avail_addr),
	VMSTATE_FIELD(struct vq, used_addr),
	VMSTATE_FIELD_V(struct vq, event_idx, 2),
};
static const struct vmstate_desc vq_desc =
	VMSTATE_DESC("virtq", struct vq, 2, 1, vq_fields);
static const struct vmstate_field dev_fields[] = {
	VMSTATE_FIELD(struct dev, status),
	VMSTATE_FIELD(struct dev, host_features),
	VMSTATE_FIELD(struct dev, guest_features),
	VMSTATE_FIELD(struct dev, queue_sel),
	VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc),
	VMSTATE_FIELD(struct dev, config),
	VMSTATE_FIELD(struct dev, isr),
	VMSTATE_FIELD_V(struct dev, flush_gen, 2),
};
static const struct vmstate_desc dev_desc =
	VMSTATE_DESC("virtio-blk", struct dev, 2, 1, dev_fields);

static void bench_vmstate(void)
{
	struct dev d, e;
	struct sbuf sb;
	double t0, t;
	long n;
	int rc = 0;

	memset(&d, 0x5a, sizeof(d));
	sbuf__init(&sb);
	vmstate__save(&dev_desc, &d, &sb);
	printf("vmstate: struct %zu bytes (%u fields + 3 x %u nested), "
	       "stream %zu bytes\n",
	       sizeof(struct dev), dev_desc.nfields, vq_desc.nfields, sb.len);

	n = 0;
	t0 = now();
	do {
		for (int k = 0; k < 1000; k++) {
			sbuf__reset(&sb);
			rc |= vmstate__save(&dev_desc, &d, &sb);
		}
		n += 1000;
		t = now() - t0;
	} while (t < 0.3);
	printf("  save: %.0f ns per call\n", t / (double)n * 1e9);

	n = 0;
	t0 = now();
	do {
		for (int k = 0; k < 1000; k++)
			rc |= vmstate__load(&dev_desc, &e, sb.data, sb.len,
					    NULL, 0);
		n += 1000;
		t = now() - t0;
	} while (t < 0.3);
	printf("  load: %.0f ns per call\n", t / (double)n * 1e9);
	if (rc)
		printf("  (errors during the run: %d)\n", rc);
	sbuf__free(&sb);
}

static void bench_snapshot(void)
{
	const int npages = 16384; /* 64 MiB of dirty pages */
	uint8_t *pages = malloc((size_t)npages * 4096);
	struct iovec *iov = malloc(sizeof(*iov) * (size_t)npages);
	struct snap_writer w;
	struct snap_reader r;
	struct sbuf out;
	double t0, tw = 0, tv = 0;
	int rounds = 5, rc = 0;

	for (size_t i = 0; i < (size_t)npages * 4096; i++)
		pages[i] = (uint8_t)(i * 17);
	for (int i = 0; i < npages; i++) {
		iov[i].iov_base = pages + (size_t)i * 4096;
		iov[i].iov_len = 4096;
	}
	sbuf__init(&out);
	/* Round -1 warms up: it faults in the output buffer. */
	for (int k = -1; k < rounds; k++) {
		if (k == 0)
			tw = tv = 0;
		sbuf__reset(&out);
		t0 = now();
		rc |= snapw__open_buffer(&w, &out);
		rc |= snapw__sectionv(&w, SNAP_SECTION_RAM, "ram", iov, npages);
		rc |= snapw__close(&w);
		tw += now() - t0;
		t0 = now();
		rc |= snapr__open_buffer(&r, out.data, out.len, NULL, 0);
		tv += now() - t0;
		snapr__close(&r);
	}
	printf("snapshot of %d pages (%zu MiB), in memory:\n", npages,
	       (size_t)npages * 4096 >> 20);
	printf("  build (crc + copy): %.2f ms  (%.2f GB/s)\n",
	       tw / rounds * 1e3,
	       (double)npages * 4096 * rounds / tw / 1e9);
	printf("  verify (open):      %.2f ms  (%.2f GB/s)\n",
	       tv / rounds * 1e3,
	       (double)npages * 4096 * rounds / tv / 1e9);
	if (rc)
		printf("  (errors during the run: %d)\n", rc);
	sbuf__free(&out);
	free(pages);
	free(iov);
}

int main(void)
{
	bench_crc();
	bench_vmstate();
	bench_snapshot();
	return 0;
}
