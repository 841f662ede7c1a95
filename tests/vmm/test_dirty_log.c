/*
 * test_dirty_log.c - the dirty-tracking contract the ft issue builds on.
 *
 * The guest (workload=dirtytest) writes a known value into pseudo-random
 * pages of a region each round, then reports on the test-sync port. At each
 * report this test collects the dirty set through vm__dirty_log_collect()
 * and checks, page by page of the region, that the set is exactly the pages
 * the guest wrote this round, and that guest memory holds the values.
 * (The pattern of Linux's KVM selftest dirty_log_test.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/vmm.h"

#define REGION_GPA 0x04000000ull
#define REGION_PAGES 4096u
#define PAGES_PER_ROUND 300u
#define ROUNDS 25u
#define SEED 12345ull

#define LATE_ROUND 5u	/* "late": logging is turned on before this round */

struct dirty_test {
	bool late;		/* the guest ran unlogged first (a primary before migrate) */
	uint64_t *bitmap;
	size_t words;
	unsigned rounds_checked;
	unsigned failures;
	uint64_t total_expected;
};

static void expected_set(unsigned round, uint8_t *want)
{
	uint64_t x = SEED + round;
	memset(want, 0, REGION_PAGES);
	for (unsigned k = 0; k < PAGES_PER_ROUND; k++) {
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
	memset(t->bitmap, 0, t->words * 8);
	if (vm__dirty_log_collect(vm, t->bitmap) < 0) {
		fprintf(stderr, "FAIL: round %u: vm__dirty_log_collect failed\n", round);
		t->failures++;
		return -1;
	}
	expected_set(round, want);
	for (unsigned i = 0; i < REGION_PAGES; i++) {
		uint64_t p = region_first + i;
		bool dirty = t->bitmap[p / 64] & (1ull << (p % 64));
		n_want += want[i];
		if (dirty && !want[i])
			extra++;
		if (!dirty && want[i])
			missing++;
		if (want[i]) {
			uint64_t *v = vm__guest_ptr(vm, REGION_GPA + (uint64_t)i * VMM_PAGE_SIZE, 8);
			if (!v || *v != (((uint64_t)round << 32) | i))
				wrong_value++;
		}
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

	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "late"))) {
		fprintf(stderr, "usage: %s GUEST_ELF [late]\n", argv[0]);
		return 2;
	}
	t.late = argc == 3;
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("SKIP: /dev/kvm is not available: %s\n", strerror(errno));
		return 77;
	}
	snprintf(cmdline, sizeof(cmdline),
		 "workload=dirtytest seed=%llu pages=%u region=%u rounds=%u",
		 (unsigned long long)SEED, PAGES_PER_ROUND, REGION_PAGES, ROUNDS);
	struct vm_config cfg = {
		.name = "dirtytest",
		.mem_size = 256ull << 20,
		.nr_vcpus = 1,
		.kernel = argv[1],
		.cmdline = cmdline,
		.serial_fd = STDOUT_FILENO,
		.dirty_log = !t.late,
		.test_hook = on_sync,
		.test_hook_opaque = &t,
	};
	if (vm__create(&cfg, &vm, err) < 0) {
		fprintf(stderr, "FAIL: vm__create: %s\n", err);
		return 1;
	}
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
	vm__destroy(vm);
	free(t.bitmap);

	if (code != 0)
		fprintf(stderr, "FAIL: guest exited with %d\n", code);
	unsigned want_rounds = t.late ? ROUNDS - LATE_ROUND + 1 : ROUNDS;	/* rounds count from 1 */
	if (t.rounds_checked != want_rounds)
		fprintf(stderr, "FAIL: %u of %u rounds reported\n", t.rounds_checked, want_rounds);
	bool ok = code == 0 && t.rounds_checked == want_rounds && t.failures == 0;
	printf("%s: %u rounds, %llu written pages checked, %u rounds failed\n",
	       ok ? "PASS" : "FAIL", t.rounds_checked, (unsigned long long)t.total_expected,
	       t.failures);
	return ok ? 0 : 1;
}
