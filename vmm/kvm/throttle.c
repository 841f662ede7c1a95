/*
 * throttle.c - slowing the guest down so that a pre-copy converges (the
 * idea of QEMU's auto-converge): while a throttle of P % is set, a thread
 * parks the vCPUs for P % of every 10 ms slice. Device emulation (the I/O
 * thread) keeps running, so the guest still receives what is sent to it;
 * it only runs, and dirties pages, more slowly.
 */
#include <errno.h>
#include <time.h>

#include "vmm/vm_internal.h"

#define SLICE_US 10000u

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *throttle__thread(void *arg)
{
	struct vm *vm = arg;

	for (;;) {
		unsigned pct = atomic_load(&vm->throttle_pct);
		if (!pct || atomic_load(&vm->throttle_stop))
			break;
		if (vm__pause_internal(vm) < 0)
			break;	/* shut down */
		sleep_us(SLICE_US / 100 * pct);
		vm__resume_internal(vm);
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
