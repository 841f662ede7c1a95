/*
 * throttle.c - slowing the guest down so that a pre-copy converges (the
 * idea of QEMU's auto-converge): while a throttle of P % is set, a thread
 * parks the vCPUs for P % of the time, in turns of about 10 ms. Device emulation (the I/O
 * thread) keeps running, so the guest still receives what is sent to it;
 * it only runs, and dirties pages, more slowly.
 */
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "vmm/vm_internal.h"

#define SLICE_US 10000u

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/*
 * Each turn: let the vCPUs run (100 - P) % of a slice, then park them for
 * as long as makes their share (100 - P) % of the turn. They also run while
 * a pause takes hold (the signal, the exits), which a slow host stretches:
 * that time counts as running, so the pause that follows is longer.
 */
static void *throttle__thread(void *arg)
{
	struct vm *vm = arg;
	uint64_t resumed = now_us();

	for (;;) {
		unsigned pct = atomic_load(&vm->throttle_pct);
		if (!pct || atomic_load(&vm->throttle_stop))
			break;
		if (vm__pause_internal(vm) < 0)
			break;	/* shut down */
		uint64_t ran = now_us() - resumed;
		uint64_t park = ran * pct / (100 - pct);
		if (park > 1000000u)
			park = 1000000u;	/* a second at most: stop stays responsive */
		sleep_us((unsigned)park);
		vm__resume_internal(vm);
		resumed = now_us();
		sleep_us(SLICE_US / 100 * (100 - pct));
	}
	return NULL;
}

int vm__set_throttle(struct vm *vm, unsigned pct)
{
	if (pct > 99)
		return -EINVAL;
	pthread_mutex_lock(&vm->throttle_lock);
	atomic_store(&vm->throttle_pct, pct);
	int ret = 0;
	if (!pct && vm->throttle_started) {
		atomic_store(&vm->throttle_stop, true);
		pthread_join(vm->throttle_thread, NULL);
		vm->throttle_started = false;
	} else if (pct && !vm->throttle_started) {
		atomic_store(&vm->throttle_stop, false);
		ret = -pthread_create(&vm->throttle_thread, NULL, throttle__thread, vm);
		vm->throttle_started = ret == 0;
	}
	pthread_mutex_unlock(&vm->throttle_lock);
	return ret;
}

unsigned vm__throttle(struct vm *vm)
{
	return atomic_load(&vm->throttle_pct);
}
