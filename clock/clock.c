/*
 * clock.c - moving guest time forward lazily (see clock.h).
 *
 * The target for vCPU 0 is record.tsc[0] + elapsed * rate. Every vCPU gets
 * the same offset from the host TSC, so TSCs that were in step stay in
 * step. Which control holds differs between hosts, so each is tried and
 * verified by reading the TSC back:
 *   1. KVM_VCPU_TSC_OFFSET: exact, the same offset on every vCPU;
 *   2. a host write of MSR_IA32_TSC, done for all vCPUs back to back;
 *   3. neither holds (PVM, where the guest runs on the host TSC): the
 *      guest TSC simply is the host TSC; refuse only if that is behind.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "clock/clock.h"

#define VERIFY_SLACK_NS 2000000	/* 2 ms: what reading back may drift */

int clock_policy__parse(const char *s, enum clock_policy *out)
{
	if (!strcmp(s, "continue"))
		*out = CLOCK_CONTINUE;
	else if (!strcmp(s, "catch-up"))
		*out = CLOCK_CATCH_UP;
	else
		return -EINVAL;
	return 0;
}

const char *clock_policy__name(enum clock_policy p)
{
	return p == CLOCK_CATCH_UP ? "catch-up" : "continue";
}

int clock__check_rate(uint32_t mine, uint32_t peer, char *err, size_t errlen)
{
	if (mine == peer)
		return 0;
	snprintf(err, errlen,
		 "TSC rate differs: primary %u kHz, secondary %u kHz (this KVM cannot scale it)",
		 peer, mine);
	return -EPROTO;
}

static uint64_t realtime_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int64_t cycles_to_ns(int64_t cycles, uint32_t khz)
{
	return khz ? (int64_t)((__int128)cycles * 1000000 / khz) : 0;
}

static uint64_t ns_to_cycles(uint64_t ns, uint32_t khz)
{
	return (uint64_t)((unsigned __int128)ns * khz / 1000000);
}

/* Reads every vCPU's TSC; the largest difference between them in cycles. */
static int read_all(struct vm *vm, uint64_t *tsc, int64_t *skew)
{
	unsigned n = vm__nr_vcpus(vm);
	uint64_t lo = UINT64_MAX, hi = 0;
	for (unsigned i = 0; i < n; i++) {
		int ret = vm__get_tsc(vm, i, &tsc[i]);
		if (ret)
			return ret;
		lo = tsc[i] < lo ? tsc[i] : lo;
		hi = tsc[i] > hi ? tsc[i] : hi;
	}
	*skew = (int64_t)(hi - lo);
	return 0;
}

/*
 * Does a control really move the TSC here? Probed on vCPU 0 by moving it
 * one second ahead and reading back (the VM is not running: harmless, and
 * the real setting follows). On the same host the target is close to the
 * host TSC, so checking only the result could not tell a control that
 * holds from one that is ignored.
 */
static bool probe_moves(struct vm *vm, uint32_t khz, bool use_offset)
{
	uint64_t before, after, jump = (uint64_t)khz * 1000;	/* one second */
	int64_t off = 0;
	int ret;

	if (vm__get_tsc(vm, 0, &before))
		return false;
	if (use_offset) {
		if (vm__get_tsc_offset(vm, 0, &off))
			return false;
		ret = vm__set_tsc_offset(vm, 0, off + (int64_t)jump);
	} else {
		ret = vm__set_tsc_msr(vm, 0, before + jump);
	}
	if (ret || vm__get_tsc(vm, 0, &after))
		return false;
	return after > before && after - before >= jump / 2;
}

/* Did vCPU 0 land within the slack of where the target has moved to? */
static bool landed(struct vm *vm, uint64_t target, uint64_t host_at_target, uint32_t khz)
{
	uint64_t now;
	if (vm__get_tsc(vm, 0, &now))
		return false;
	int64_t want = (int64_t)(target + (__rdtsc() - host_at_target));
	int64_t d = (int64_t)now - want;
	return cycles_to_ns(d < 0 ? -d : d, khz) <= VERIFY_SLACK_NS;
}

int clock__resume(struct vm *vm, const struct vm_clock *rec, enum clock_policy p,
		  struct clock_result *res, char *err)
{
	unsigned n = vm__nr_vcpus(vm);
	uint32_t khz = rec->tsc_khz;
	uint64_t tsc[VMM_MAX_VCPUS];
	int64_t skew;
	int ret;

	memset(res, 0, sizeof(*res));
	if (rec->nr_vcpus != n) {
		snprintf(err, VMM_ERR_LEN, "clock record has %u vCPUs, this VM %u", rec->nr_vcpus, n);
		return -EINVAL;
	}
	uint64_t now_rt = realtime_ns();
	/* Never backwards, even if the two hosts' wall clocks disagree. */
	uint64_t elapsed = p == CLOCK_CATCH_UP && now_rt > rec->realtime_ns ? now_rt - rec->realtime_ns : 0;
	res->elapsed_ns = (int64_t)elapsed;
	uint64_t target = rec->tsc[0] + ns_to_cycles(elapsed, khz);

	/* 1. One offset for every vCPU (guest TSC = host TSC + offset). */
	uint64_t host;
	bool done = false;
	if (probe_moves(vm, khz, true)) {
		host = __rdtsc();
		int64_t off = (int64_t)(target - host);
		ret = 0;
		for (unsigned i = 0; i < n && !ret; i++)
			ret = vm__set_tsc_offset(vm, i, off);
		if (!ret && landed(vm, target, host, khz)) {
			snprintf(res->method, sizeof(res->method), "tsc-offset");
			done = true;
		}
	}
	/* 2. MSR writes, back to back (KVM matches writes this close). */
	if (!done && probe_moves(vm, khz, false)) {
		host = __rdtsc();
		ret = 0;
		for (unsigned i = 0; i < n && !ret; i++)
			ret = vm__set_tsc_msr(vm, i, target + (__rdtsc() - host));
		if (!ret && landed(vm, target, host, khz)) {
			snprintf(res->method, sizeof(res->method), "tsc-msr");
			done = true;
		}
	}
	/* 3. Nothing holds: the guest TSC is the host TSC. */
	if (!done)
		snprintf(res->method, sizeof(res->method), "host-tsc");
	ret = read_all(vm, tsc, &skew);
	if (ret) {
		snprintf(err, VMM_ERR_LEN, "reading the guest TSC back: %s", strerror(-ret));
		return ret;
	}
	res->step_ns = cycles_to_ns((int64_t)(tsc[0] - rec->tsc[0]), khz);
	res->vcpu_skew_ns = cycles_to_ns(skew, khz);
	for (unsigned i = 0; i < n; i++) {
		if (tsc[i] < rec->tsc[i]) {
			snprintf(err, VMM_ERR_LEN,
				 "guest time would go backwards: vCPU %u's TSC is %.3f ms behind the "
				 "checkpoint and this KVM cannot move it (%s)", i,
				 (double)cycles_to_ns((int64_t)(rec->tsc[i] - tsc[i]), khz) / 1e6,
				 res->method);
			return -ERANGE;
		}
	}
	ret = vm__set_kvmclock(vm, rec->kvmclock_ns + elapsed);
	if (ret) {
		snprintf(err, VMM_ERR_LEN, "KVM_SET_CLOCK: %s", strerror(-ret));
		return ret;
	}
	return 0;
}
