/*
 * cpuid.c - the CPUID table every vCPU gets, and the CPU model it implies.
 *
 * The table is KVM_GET_SUPPORTED_CPUID (what this host's KVM can offer,
 * on either vendor) with three things of ours:
 *   - leaf 1 EBX and leaves 0xB/0x1F EDX carry this vCPU's APIC ID;
 *   - the hypervisor range 0x40000000 has the KVM signature and a max leaf
 *     of at least 0x40000010, added if KVM left it out;
 *   - leaf 0x40000010 (the timing leaf of VMware, KVM and QEMU's
 *     vmware-cpuid-freq) has EAX = TSC kHz from KVM_GET_TSC_KHZ and
 *     EBX = APIC bus kHz.
 * Nothing is added that KVM_SET_CPUID2 could refuse on one vendor: every
 * leaf but the timing leaf comes from KVM itself, and the timing leaf is
 * in the hypervisor range, which KVM leaves to the VMM on both vendors.
 *
 * The CPU model (vendor and feature words, cpu_model.c) is read from
 * vCPU 0's table here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/vm_internal.h"

#define CPUID_MAX_ENTRIES 256
#define CPUID_HV_BASE 0x40000000u
#define CPUID_HV_FEATURES 0x40000001u
#define CPUID_HV_TIMING 0x40000010u
/* KVM's local APIC timer runs at 1 GHz (APIC_BUS_CYCLE_NS = 1). */
#define KVM_APIC_BUS_KHZ 1000000u
/* 0x40000001 EAX: KVM_FEATURE_CLOCKSOURCE (0) and CLOCKSOURCE2 (3). */
#define KVM_FEATURE_CLOCK_BITS ((1u << 0) | (1u << 3))

static uint32_t *entry_reg(struct kvm_cpuid_entry2 *e, unsigned reg)
{
	switch (reg) {
	case 0: return &e->eax;
	case 1: return &e->ebx;
	case 2: return &e->ecx;
	default: return &e->edx;
	}
}

static struct kvm_cpuid_entry2 *find(struct kvm_cpuid2 *t, uint32_t leaf, uint32_t sub)
{
	for (unsigned i = 0; i < t->nent; i++) {
		struct kvm_cpuid_entry2 *e = &t->entries[i];
		if (e->function == leaf &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == sub))
			return e;
	}
	return NULL;
}

static struct kvm_cpuid_entry2 *add(struct kvm_cpuid2 *t, uint32_t leaf)
{
	struct kvm_cpuid_entry2 *e = find(t, leaf, 0);
	if (e)
		return e;
	if (t->nent >= CPUID_MAX_ENTRIES)
		return NULL;
	e = &t->entries[t->nent++];
	*e = (struct kvm_cpuid_entry2){ .function = leaf };
	return e;
}

static void model_from_table(struct vm *vm, struct kvm_cpuid2 *t)
{
	struct vm_cpu_model *m = &vm->cpu_model;
	struct kvm_cpuid_entry2 *e;

	memset(m, 0, sizeof(*m));
	if ((e = find(t, 0, 0))) {
		memcpy(m->vendor, &e->ebx, 4);
		memcpy(m->vendor + 4, &e->edx, 4);
		memcpy(m->vendor + 8, &e->ecx, 4);
	}
	for (unsigned i = 0; i < VM_CPU_WORDS; i++) {
		const struct cpu_model_word *w = &cpu_model_words[i];
		if ((e = find(t, w->leaf, w->sub)))
			m->word[i] = *entry_reg(e, w->reg) & w->mask;
	}
	/* Test only: announce another CPU than this one. */
	if (vm->cfg.x_cpu_vendor) {
		memset(m->vendor, 0, sizeof(m->vendor));
		memcpy(m->vendor, vm->cfg.x_cpu_vendor,
		       strnlen(vm->cfg.x_cpu_vendor, sizeof(m->vendor)));
	}
	if (vm->cfg.x_cpuid_word > 0 && vm->cfg.x_cpuid_word <= VM_CPU_WORDS)
		m->word[vm->cfg.x_cpuid_word - 1] = vm->cfg.x_cpuid_value;
}

/* The hypervisor leaves: KVM signature, max leaf, the timing leaf. */
static int hypervisor_leaves(struct vm *vm, struct kvm_cpuid2 *t, char *err)
{
	struct kvm_cpuid_entry2 *base = add(t, CPUID_HV_BASE);
	if (!base)
		goto full;
	if (!base->ebx && !base->ecx && !base->edx) {
		/* "KVMKVMKVM\0\0\0", as KVM itself announces. */
		base->ebx = 0x4b4d564b;
		base->ecx = 0x564b4d56;
		base->edx = 0x0000004d;
	}
	if (vm->cfg.x_no_kvmclock) {
		struct kvm_cpuid_entry2 *f = find(t, CPUID_HV_FEATURES, 0);
		if (f)
			f->eax &= ~KVM_FEATURE_CLOCK_BITS;
	}
	if (vm->cfg.x_no_tsc_leaf || !vm->tsc_khz) {
		struct kvm_cpuid_entry2 *tm = find(t, CPUID_HV_TIMING, 0);
		if (tm)
			tm->eax = tm->ebx = 0;
		/* Leave the range's max leaf as KVM had it (or the features leaf). */
		if (base->eax < CPUID_HV_FEATURES)
			base->eax = find(t, CPUID_HV_FEATURES, 0) ? CPUID_HV_FEATURES : CPUID_HV_BASE;
		return 0;
	}
	if (base->eax < CPUID_HV_TIMING)
		base->eax = CPUID_HV_TIMING;
	struct kvm_cpuid_entry2 *tm = add(t, CPUID_HV_TIMING);
	if (!tm)
		goto full;
	tm->flags = 0;
	tm->index = 0;
	tm->eax = vm->tsc_khz;
	tm->ebx = KVM_APIC_BUS_KHZ;
	tm->ecx = tm->edx = 0;
	return 0;
full:
	snprintf(err, VMM_ERR_LEN, "KVM_GET_SUPPORTED_CPUID: more than %d entries",
		 CPUID_MAX_ENTRIES - 2);
	return -E2BIG;
}

int vcpu__setup_cpuid(struct vcpu *c, char *err)
{
	struct vm *vm = c->vm;
	struct kvm_cpuid2 *t;
	int ret;

	t = calloc(1, sizeof(*t) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (!t)
		return -ENOMEM;
	t->nent = CPUID_MAX_ENTRIES;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, t) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		goto out;
	}
	ret = hypervisor_leaves(vm, t, err);
	if (ret)
		goto out;
	for (unsigned i = 0; i < t->nent; i++) {
		struct kvm_cpuid_entry2 *e = &t->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffu) | (c->idx << 24) |
				 ((vm->nr_vcpus & 0xff) << 16);
			break;
		case 0xb:
		case 0x1f:
			e->edx = c->idx;
			break;
		}
	}
	if (c->idx == 0)
		model_from_table(vm, t);
	if (ioctl(c->fd, KVM_SET_CPUID2, t) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "vCPU %u: KVM_SET_CPUID2: %s", c->idx, strerror(errno));
	}
out:
	free(t);
	return ret;
}

void vm__cpu_model(struct vm *vm, struct vm_cpu_model *out)
{
	*out = vm->cpu_model;
}
