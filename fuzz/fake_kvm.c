/*
 * fake_kvm.c - KVM's state ioctls for the fuzz harnesses, in memory: the
 * targets are linked with -Wl,--wrap=ioctl, so what vmm/ code calls
 * ioctl() lands here. A KVM_SET_* keeps its argument; the matching
 * KVM_GET_* hands it back (the irqchips by chip id; MSRs by index), so a
 * state that was loaded saves back as it was, and one never loaded reads
 * as zeroes. The MSR index list is the TSC's alone. Any other request
 * fails with ENOTTY: the harnesses use no other.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "fuzz/fake_vm.h"

#define SLOT_BYTES 4096

static struct {
	unsigned long get, set;
	uint8_t data[SLOT_BYTES];
} slots[] = {
	{ KVM_GET_REGS, KVM_SET_REGS, { 0 } },
	{ KVM_GET_SREGS, KVM_SET_SREGS, { 0 } },
	{ KVM_GET_XSAVE, KVM_SET_XSAVE, { 0 } },
	{ KVM_GET_XCRS, KVM_SET_XCRS, { 0 } },
	{ KVM_GET_LAPIC, KVM_SET_LAPIC, { 0 } },
	{ KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, { 0 } },
	{ KVM_GET_MP_STATE, KVM_SET_MP_STATE, { 0 } },
	{ KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, { 0 } },
	{ KVM_GET_CLOCK, KVM_SET_CLOCK, { 0 } },
};
static struct kvm_irqchip chips[3];
static struct kvm_msr_entry msrs[64];
static unsigned nr_msrs;

void fake_kvm_reset(void)
{
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
		memset(slots[i].data, 0, sizeof(slots[i].data));
	memset(chips, 0, sizeof(chips));
	nr_msrs = 0;
}

static struct kvm_msr_entry *msr(uint32_t index, bool add)
{
	for (unsigned i = 0; i < nr_msrs; i++)
		if (msrs[i].index == index)
			return &msrs[i];
	if (!add || nr_msrs == sizeof(msrs) / sizeof(msrs[0]))
		return NULL;
	msrs[nr_msrs] = (struct kvm_msr_entry){ .index = index };
	return &msrs[nr_msrs++];
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	(void)fd;

	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
		size_t n = _IOC_SIZE(req);
		if (n > SLOT_BYTES)
			n = SLOT_BYTES;
		if (req == slots[i].set) {
			memcpy(slots[i].data, arg, n);
			return 0;
		}
		if (req == slots[i].get) {
			memcpy(arg, slots[i].data, n);
			return 0;
		}
	}
	switch (req) {
	case KVM_SET_IRQCHIP:
	case KVM_GET_IRQCHIP: {
		struct kvm_irqchip *c = arg;
		if (c->chip_id > 2) {
			errno = EINVAL;
			return -1;
		}
		uint32_t id = c->chip_id;
		if (req == KVM_SET_IRQCHIP) {
			chips[id] = *c;
		} else {
			*c = chips[id];
			c->chip_id = id;	/* as asked, also before any SET */
		}
		return 0;
	}
	case KVM_GET_MSR_INDEX_LIST: {
		struct kvm_msr_list *l = arg;
		if (l->nmsrs < 1) {
			l->nmsrs = 1;
			errno = E2BIG;
			return -1;
		}
		l->nmsrs = 1;
		l->indices[0] = 0x10;	/* MSR_IA32_TSC */
		return 0;
	}
	case KVM_SET_MSRS:
	case KVM_GET_MSRS: {
		struct kvm_msrs *m = arg;
		for (uint32_t i = 0; i < m->nmsrs; i++) {
			struct kvm_msr_entry *e = msr(m->entries[i].index, true);	/* one never set reads 0 */
			if (!e)
				return (int)i;	/* KVM stops at the first MSR it refuses */
			if (req == KVM_SET_MSRS)
				e->data = m->entries[i].data;
			else
				m->entries[i].data = e->data;
		}
		return (int)m->nmsrs;
	}
	default:
		errno = ENOTTY;
		return -1;
	}
}
