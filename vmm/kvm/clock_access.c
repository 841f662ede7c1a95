/*
 * clock_access.c - reading and setting guest time through KVM: the clock
 * record each checkpoint and snapshot carries, kvmclock, and the two ways
 * KVM offers to move a vCPU's TSC. The policy (when to move it, by how
 * much, and which way holds on this host) lives in clock/.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "vmm/state/state.h"
#include "vmm/vm_internal.h"

#define MSR_IA32_TSC 0x10

int vm__get_tsc(struct vm *vm, unsigned idx, uint64_t *tsc)
{
	KVM_MSRS_N(1) m = { .hdr.nmsrs = 1 };
	m.hdr.entries[0].index = MSR_IA32_TSC;

	if (idx >= vm->nr_vcpus)
		return -EINVAL;
	if (ioctl(vm->vcpus[idx].fd, KVM_GET_MSRS, &m) != 1)
		return -EIO;
	*tsc = m.hdr.entries[0].data;
	return 0;
}

int vm__set_tsc_msr(struct vm *vm, unsigned idx, uint64_t tsc)
{
	KVM_MSRS_N(1) m = { .hdr.nmsrs = 1 };
	m.hdr.entries[0] = (struct kvm_msr_entry){ .index = MSR_IA32_TSC, .data = tsc };

	if (idx >= vm->nr_vcpus)
		return -EINVAL;
	return ioctl(vm->vcpus[idx].fd, KVM_SET_MSRS, &m) == 1 ? 0 : -EIO;
}

static int tsc_offset_attr(struct vm *vm, unsigned idx, int64_t *offset, bool set)
{
	struct kvm_device_attr a = {
		.group = KVM_VCPU_TSC_CTRL, .attr = KVM_VCPU_TSC_OFFSET,
		.addr = (uint64_t)(uintptr_t)offset,
	};
	if (idx >= vm->nr_vcpus)
		return -EINVAL;
	if (ioctl(vm->vcpus[idx].fd, KVM_HAS_DEVICE_ATTR, &a) < 0)
		return -ENOTSUP;
	return ioctl(vm->vcpus[idx].fd, set ? KVM_SET_DEVICE_ATTR : KVM_GET_DEVICE_ATTR, &a) < 0
		       ? -errno : 0;
}

int vm__get_tsc_offset(struct vm *vm, unsigned idx, int64_t *offset)
{
	return tsc_offset_attr(vm, idx, offset, false);
}

int vm__set_tsc_offset(struct vm *vm, unsigned idx, int64_t offset)
{
	return tsc_offset_attr(vm, idx, &offset, true);
}

int vm__set_kvmclock(struct vm *vm, uint64_t ns)
{
	struct kvm_clock_data c = { .clock = ns };
	return ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0 ? -errno : 0;
}

int vm__clock_read(struct vm *vm, struct vm_clock *c)
{
	struct kvm_clock_data kc = { 0 };
	struct timespec rt;

	memset(c, 0, sizeof(*c));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &kc) < 0)
		return -errno;
	clock_gettime(CLOCK_REALTIME, &rt);
	c->realtime_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
	c->kvmclock_ns = kc.clock;
	c->tsc_khz = vm->tsc_khz;
	c->nr_vcpus = vm->nr_vcpus;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		int ret = vm__get_tsc(vm, i, &c->tsc[i]);
		if (ret)
			return ret;
	}
	return 0;
}
