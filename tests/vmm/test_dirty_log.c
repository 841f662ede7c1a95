/*
 * test_dirty_log.c - the dirty-tracking contract the ft issue builds on.
 *
 * The guest (workload=dirtytest) writes a known value into pseudo-random
 * pages of a region each round, then reports on the test-sync port. At each
 * report this test collects the dirty set through vm__dirty_log_collect()
 * and checks, page by page of the region, that the set is exactly the pages
 * the guest wrote this round, and that guest memory holds the values.
 * (The pattern of Linux's KVM selftest dirty_log_test.)
 *
 * hot=N (clear mode's hot pages, vm__dirty_log_set_hot): pages written in
 * two rounds running stay writable and are reported every round, so the
 * set may hold more than the round's pages, but only hot ones (at most
 * vm__dirty_hot_pages, at most N), and never fewer; the run is long enough
 * for every hot page to be re-protected (one in 64 a round) twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/vmm.h"

#define REGION_GPA 0x04000000ull
#define REGION_PAGES 4096u
#define PAGES_PER_ROUND 300u	/* unless pages=N */
#define ROUNDS 25u
#define SEED 12345ull

#define LATE_ROUND 5u	/* "late": logging is turned on before this round */

struct dirty_test {
	bool late;		/* the guest ran unlogged first (a primary before migrate) */
	unsigned pages;		/* written a round (pseudo-random, so some twice) */
	unsigned rounds;
	uint32_t hot;		/* hot=N: up to N hot pages */
	unsigned hot_seen;	/* the most hot pages in a round */
	uint32_t hot_last;	/* hot after the last round's collection */
	uint8_t reported[REGION_PAGES];	/* the region's pages the last round reported */
	uint64_t hot_extras;	/* pages reported though not written: left unprotected */
	struct vm_page_list list;
	uint64_t *bitmap;
	size_t words;
	unsigned rounds_checked;
	unsigned failures;
	uint64_t total_expected;
};

static void expected_set(unsigned round, unsigned pages, uint8_t *want)
{
	uint64_t x = SEED + round;
	memset(want, 0, REGION_PAGES);
	for (unsigned k = 0; k < pages; k++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		want[(x >> 33) % REGION_PAGES] = 1;
	}
}

static int on_sync(struct vm *vm, unsigned vcpu, uint32_t round, void *opaque)
{
	struct dirty_test *t = opaque;
	uint8_t want[REGION_PAGES];
	uint64_t region_first = REGION_GPA / VMM_PAGE_SIZE;
	unsigned extra = 0, missing = 0, wrong_value = 0, n_want = 0;

	(void)vcpu;
	if (t->late && round < LATE_ROUND) {
		/* Unlogged rounds: the guest maps its pages writable. Turn
		 * logging on at the end of the last one, as `migrate` does on a
		 * guest that has been running. */
		if (round == LATE_ROUND - 1 &&
		    (vm__dirty_log_enable(vm, true) < 0 || vm__dirty_log_collect(vm, t->bitmap) < 0)) {
			fprintf(stderr, "FAIL: turning dirty logging on\n");
			t->failures++;
			return -1;
		}
		return 0;
	}
	/* Odd rounds through the list API: each page once, the same set. */
	bool listed = round % 2;
	memset(t->bitmap, 0, t->words * 8);
	t->list.nr = 0;
	if ((listed ? vm__dirty_log_collect_list(vm, t->bitmap, &t->list)
		    : vm__dirty_log_collect(vm, t->bitmap)) < 0) {
		fprintf(stderr, "FAIL: round %u: collecting the dirty log failed\n", round);
		t->failures++;
		return -1;
	}
	if (listed) {
		size_t set = 0;
		for (size_t w = 0; w < t->words; w++)
			set += (size_t)__builtin_popcountll(t->bitmap[w]);
		if (set != t->list.nr) {
			fprintf(stderr, "FAIL: round %u: %zu pages listed, %zu in the set\n", round,
				t->list.nr, set);
			t->failures++;
		}
	}
	expected_set(round, t->pages, want);
	unsigned extra_not_hot = 0;
	for (unsigned i = 0; i < REGION_PAGES; i++) {
		uint64_t p = region_first + i;
		bool dirty = t->bitmap[p / 64] & (1ull << (p % 64));
		n_want += want[i];
		if (dirty && !want[i]) {
			extra++;
			/* Only a page hot in the last round can be: it was reported then too. */
			extra_not_hot += !t->reported[i];
		}
		t->reported[i] = dirty;
		if (!dirty && want[i])
			missing++;
		if (want[i]) {
			uint64_t *v = vm__guest_ptr(vm, REGION_GPA + (uint64_t)i * VMM_PAGE_SIZE, 8);
			if (!v || *v != (((uint64_t)round << 32) | i))
				wrong_value++;
		}
	}
	if (t->hot) {
		/* The last round's hot pages were left writable, so KVM
		 * reports them in this one though the guest did not write them. */
		uint32_t hot = vm__dirty_hot_pages(vm), extra_max = t->hot_last;
		t->hot_last = hot;
		if (hot > t->hot_seen)
			t->hot_seen = hot;
		if (hot > t->hot) {
			fprintf(stderr, "FAIL: round %u: %u hot pages, more than the %u allowed\n",
				round, hot, t->hot);
			t->failures++;
		}
		t->hot_extras += extra;
		extra = extra <= extra_max && !extra_not_hot ? 0 : extra;
	}
	if (extra || missing || wrong_value) {
		fprintf(stderr,
			"FAIL: round %u: %u pages dirty that the guest did not write, %u written "
			"pages not reported, %u pages with the wrong value (of %u written)\n",
			round, extra, missing, wrong_value, n_want);
		t->failures++;
	}
	t->rounds_checked++;
	t->total_expected += n_want;
	return 0;
}

int main(int argc, char **argv)
{
	struct dirty_test t = { 0 };
	char err[VMM_ERR_LEN] = "";
	char cmdline[256];
	struct vm *vm;

	enum vm_dirty_mode mode = VM_DIRTY_AUTO;
	uint32_t ring_bytes = 0;
	t.pages = PAGES_PER_ROUND;
	for (int i = 2; i < argc; i++) {
		unsigned long n;
		if (strcmp(argv[i], "late") == 0)
			t.late = true;
		else if (vm__parse_dirty_mode(argv[i], &mode) == 0)
			;
		else if (sscanf(argv[i], "ring-bytes=%lu", &n) == 1)
			ring_bytes = (uint32_t)n;
		else if (sscanf(argv[i], "pages=%lu", &n) == 1 && n > 0)
			t.pages = (unsigned)n;
		else if (sscanf(argv[i], "hot=%lu", &n) == 1 && n > 0)
			t.hot = (uint32_t)n;
		else {
			fprintf(stderr, "usage: %s GUEST_ELF [late] [auto|ring|clear|bitmap] "
				"[ring-bytes=N] [pages=N] [hot=N]\n", argv[0]);
			return 2;
		}
	}
	/* Every hot page re-protected twice (one in 64 a round, HOT_COOL_ROUNDS). */
	t.rounds = t.hot ? 140 : ROUNDS;
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("SKIP: /dev/kvm is not available: %s\n", strerror(errno));
		return 77;
	}
	snprintf(cmdline, sizeof(cmdline),
		 "workload=dirtytest seed=%llu pages=%u region=%u rounds=%u",
		 (unsigned long long)SEED, t.pages, REGION_PAGES, t.rounds);
	struct vm_config cfg = {
		.name = "dirtytest",
		.mem_size = 256ull << 20,
		.nr_vcpus = 1,
		.kernel = argv[1],
		.cmdline = cmdline,
		.serial_fd = STDOUT_FILENO,
		.dirty_log = !t.late,
		.dirty_mode = mode,
		.x_dirty_ring_bytes = ring_bytes,
		.test_hook = on_sync,
		.test_hook_opaque = &t,
	};
	int cr = vm__create(&cfg, &vm, err);
	if (cr == -ENOTSUP && mode != VM_DIRTY_AUTO) {
		/* A host whose KVM lacks this way of collecting (another
		 * vendor, another kernel): auto falls back; this test cannot run. */
		printf("SKIP: %s\n", err);
		return 77;
	}
	if (cr < 0) {
		fprintf(stderr, "FAIL: vm__create: %s\n", err);
		return 1;
	}
	if (t.hot && strcmp(vm__dirty_mode(vm), "clear") != 0) {
		printf("SKIP: hot pages need the clear mode; this KVM gave %s\n", vm__dirty_mode(vm));
		vm__destroy(vm);
		return 77;
	}
	vm__dirty_log_set_hot(vm, t.hot);
	t.words = (vm__nr_pages(vm) + 63) / 64;
	t.bitmap = calloc(t.words, 8);
	/* Loading the kernel is not a guest write: start from a clean log. */
	if (!t.late)
		vm__dirty_log_collect(vm, t.bitmap);
	if (vm__start(vm) < 0) {
		fprintf(stderr, "FAIL: vm__start\n");
		return 1;
	}
	int code = vm__wait(vm);
	const char *used = vm__dirty_mode(vm);
	uint64_t full = vm__dirty_ring_full_exits(vm);
	vm__destroy(vm);
	free(t.list.pages);
	free(t.bitmap);

	if (code != 0)
		fprintf(stderr, "FAIL: guest exited with %d\n", code);
	unsigned want_rounds = t.late ? t.rounds - LATE_ROUND + 1 : t.rounds;	/* rounds count from 1 */
	/* Pages written in two rounds running exist each round: some must have been hot. */
	if (t.hot && (!t.hot_seen || !t.hot_extras)) {
		/* Reported but not written: KVM kept its bit, so it was left writable. */
		fprintf(stderr, "FAIL: no page was ever hot (%u counted, %llu reported unwritten)\n",
			t.hot_seen, (unsigned long long)t.hot_extras);
		t.failures++;
	}
	if (t.rounds_checked != want_rounds)
		fprintf(stderr, "FAIL: %u of %u rounds reported\n", t.rounds_checked, want_rounds);
	/* A ring smaller than a round's pages must have filled: the spill
	 * path ran and lost nothing. */
	bool want_full = ring_bytes && strcmp(used, "ring") == 0 &&
			 t.total_expected / t.rounds_checked > ring_bytes / 16;
	if (want_full && !full)
		fprintf(stderr, "FAIL: a ring of %u entries never filled\n", ring_bytes / 16);
	bool ok = code == 0 && t.rounds_checked == want_rounds && t.failures == 0 &&
		  (!want_full || full);
	printf("%s: dirty log %s, %u rounds, %llu written pages checked, %u rounds failed, "
	       "%llu ring-full exits, at most %u hot pages\n",
	       ok ? "PASS" : "FAIL", used, t.rounds_checked, (unsigned long long)t.total_expected,
	       t.failures, (unsigned long long)full, t.hot_seen);
	return ok ? 0 : 1;
}
