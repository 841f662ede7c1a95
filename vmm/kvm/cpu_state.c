/*
 * cpu_state.c - one vCPU's complete architectural state, captured and
 * restored through KVM: registers, segment/control registers, FPU/SSE/AVX
 * (XSAVE), XCRs, MSRs (TSC included), the local APIC, pending events,
 * MP state and debug registers. Saved through a vmstate table, so the
 * format is versioned like every device's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/state/state.h"
#include "vmm/vm_internal.h"

#define CPU_XSAVE_SIZE 4096
#define CPU_MAX_MSRS 32

/*
 * The MSRs a guest's execution depends on. Only those KVM reports in
 * KVM_GET_MSR_INDEX_LIST are saved (the list differs between hosts).
 * MSR_IA32_TSC is restored last so it is not disturbed by the others.
 */
static const uint32_t cpu_msr_candidates[] = {
	0x00000174, 0x00000175, 0x00000176,	/* SYSENTER_CS/ESP/EIP */
	0xc0000081, 0xc0000082, 0xc0000083,	/* STAR, LSTAR, CSTAR */
	0xc0000084, 0xc0000102, 0xc0000103,	/* SFMASK, KERNEL_GS_BASE, TSC_AUX */
	0x00000277, 0x000001a0, 0x000002ff,	/* PAT, MISC_ENABLE, MTRR_DEF_TYPE */
	0x0000003b,				/* TSC_ADJUST */
	0x4b564d00, 0x4b564d01, 0x4b564d02,	/* kvmclock wall/system, async PF */
	0x4b564d03, 0x4b564d04,			/* steal time, PV EOI */
	0x00000010,				/* TSC: keep last */
};

struct cpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t xsave[CPU_XSAVE_SIZE];
	struct kvm_xcrs xcrs;
	uint32_t nr_msrs;
	uint32_t msr_index[CPU_MAX_MSRS];
	uint64_t msr_data[CPU_MAX_MSRS];
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
};

static const struct vmstate_field cpu_state_fields[] = {
	VMSTATE_FIELD(struct cpu_state, regs),
	VMSTATE_FIELD(struct cpu_state, sregs),
	VMSTATE_FIELD(struct cpu_state, xsave),
	VMSTATE_FIELD(struct cpu_state, xcrs),
	VMSTATE_FIELD(struct cpu_state, nr_msrs),
	VMSTATE_FIELD(struct cpu_state, msr_index),
	VMSTATE_FIELD(struct cpu_state, msr_data),
	VMSTATE_FIELD(struct cpu_state, lapic),
	VMSTATE_FIELD(struct cpu_state, events),
	VMSTATE_FIELD(struct cpu_state, mp_state),
	VMSTATE_FIELD(struct cpu_state, debugregs),
};
static const struct vmstate_desc cpu_state_desc =
	VMSTATE_DESC("cpu", struct cpu_state, 1, 1, cpu_state_fields);

/* The candidates this host's KVM knows, in candidate order. */
static unsigned cpu__msr_list(struct vcpu *c, uint32_t *out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	unsigned n = 0;

	ioctl(c->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);	/* E2BIG, fills nmsrs */
	list = calloc(1, sizeof(*list) + (probe.nmsrs + 1) * sizeof(uint32_t));
	if (!list)
		return 0;
	list->nmsrs = probe.nmsrs;
	if (ioctl(c->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) == 0) {
		for (size_t i = 0; i < sizeof(cpu_msr_candidates) / sizeof(uint32_t); i++)
			for (uint32_t j = 0; j < list->nmsrs; j++)
				if (list->indices[j] == cpu_msr_candidates[i] && n < CPU_MAX_MSRS) {
					out[n++] = cpu_msr_candidates[i];
					break;
				}
	}
	free(list);
	return n;
}

/*
 * The XSAVE area this host's KVM hands out must fit the saved state's
 * buffer. It does on every host we know of either vendor (Intel with
 * AVX-512 0xa88 bytes, AMD Zen 4 0x988): only AMX (whose permission ftvm
 * never asks for) needs more. Checked at creation, not at the first
 * checkpoint.
 */
int cpu_state__check_host(struct vm *vm, char *err)
{
	int size = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	vm->xsave2_size = size > 0 ? size : 0;
	if (size > CPU_XSAVE_SIZE) {
		snprintf(err, VMM_ERR_LEN, "KVM's XSAVE area is %d bytes; ftvm saves at most %d",
			 size, CPU_XSAVE_SIZE);
		return -EOVERFLOW;
	}
	return 0;
}

/* The size was checked when the VM was created (cpu_state__check_host):
 * no ioctl here beyond the one that reads the state. */
static int cpu__xsave_get(struct vcpu *c, void *buf)
{
	unsigned long req = c->vm->xsave2_size ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	return ioctl(c->fd, req, buf) < 0 ? -errno : 0;
}

int cpu_state__save(struct vcpu *c, struct sbuf *out, uint64_t *tsc, char *err)
{
	if (atomic_load(&c->parked_state_valid)) {
		/* Saved by the vCPU itself as it parked (vm.c). */
		*tsc = c->parked_tsc;
		return sbuf__append(out, c->parked_state.data, c->parked_state.len);
	}
	struct cpu_state *s = calloc(1, sizeof(*s));
	const char *what = NULL;
	int ret = 0;

	if (!s)
		return -ENOMEM;
	if (atomic_load(&c->parked_regs)) {
		/* Parked: its last exit left them in kvm_run (vm.c). */
		s->regs = c->run->s.regs.regs;
		s->sregs = c->run->s.regs.sregs;
		s->events = c->run->s.regs.events;
	} else if (ioctl(c->fd, KVM_GET_REGS, &s->regs) < 0) what = "KVM_GET_REGS";
	else if (ioctl(c->fd, KVM_GET_SREGS, &s->sregs) < 0) what = "KVM_GET_SREGS";
	else if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0) what = "KVM_GET_VCPU_EVENTS";
	if (what)
		;	/* reported below */
	else if ((ret = cpu__xsave_get(c, s->xsave)) < 0) what = "KVM_GET_XSAVE";
	else if (ioctl(c->fd, KVM_GET_XCRS, &s->xcrs) < 0) what = "KVM_GET_XCRS";
	else if (ioctl(c->fd, KVM_GET_LAPIC, &s->lapic) < 0) what = "KVM_GET_LAPIC";
	else if (ioctl(c->fd, KVM_GET_MP_STATE, &s->mp_state) < 0) what = "KVM_GET_MP_STATE";
	else if (ioctl(c->fd, KVM_GET_DEBUGREGS, &s->debugregs) < 0) what = "KVM_GET_DEBUGREGS";
	if (!what) {
		KVM_MSRS_N(CPU_MAX_MSRS) m = { 0 };
		/* Every checkpoint saves state: look the list up once. */
		if (c->nr_msr_list < 0)
			c->nr_msr_list = (int)cpu__msr_list(c, c->msr_list);
		s->nr_msrs = (uint32_t)c->nr_msr_list;
		memcpy(s->msr_index, c->msr_list, sizeof(uint32_t) * s->nr_msrs);
		m.hdr.nmsrs = s->nr_msrs;
		for (unsigned i = 0; i < s->nr_msrs; i++)
			m.hdr.entries[i].index = s->msr_index[i];
		int got = ioctl(c->fd, KVM_GET_MSRS, &m);
		if (got != (int)s->nr_msrs) {
			what = "KVM_GET_MSRS";
			errno = got < 0 ? errno : EIO;
		} else {
			bool have_tsc = false;
			for (unsigned i = 0; i < s->nr_msrs; i++) {
				s->msr_data[i] = m.hdr.entries[i].data;
				if (s->msr_index[i] == 0x10) {	/* MSR_IA32_TSC */
					*tsc = m.hdr.entries[i].data;
					have_tsc = true;
				}
			}
			/* A KVM that does not list the TSC MSR still reads it. */
			if (!have_tsc && vm__get_tsc(c->vm, c->idx, tsc) < 0)
				*tsc = 0;
		}
	}
	if (what) {
		ret = ret ? ret : -errno;
		snprintf(err, VMM_ERR_LEN, "vCPU %u: %s: %s", c->idx, what, strerror(-ret));
	} else {
		ret = vmstate__save(&cpu_state_desc, s, out);
	}
	free(s);
	return ret;
}

int cpu_state__load(struct vcpu *c, const void *data, size_t len, bool check_only, char *err)
{
	struct cpu_state *s = calloc(1, sizeof(*s));
	const char *what = NULL;
	int ret;

	if (!s)
		return -ENOMEM;
	ret = vmstate__load(&cpu_state_desc, s, data, len, err, VMM_ERR_LEN);
	if (ret)
		goto out;
	if (s->nr_msrs > CPU_MAX_MSRS) {
		snprintf(err, VMM_ERR_LEN, "vCPU %u: saved state has %u MSRs (max %d)", c->idx,
			 s->nr_msrs, CPU_MAX_MSRS);
		ret = -EBADMSG;
		goto out;
	}
	if (check_only)
		goto out;
	atomic_store(&c->parked_regs, false);	/* kvm_run's copy is the old state now */
	atomic_store(&c->parked_state_valid, false);
	/* Order as KVM wants it: sregs (mode) before regs, XSAVE after XCRs
	 * are known, MSRs before the APIC, events and MP state last. */
	if (ioctl(c->fd, KVM_SET_SREGS, &s->sregs) < 0) what = "KVM_SET_SREGS";
	else if (ioctl(c->fd, KVM_SET_REGS, &s->regs) < 0) what = "KVM_SET_REGS";
	else if (ioctl(c->fd, KVM_SET_XCRS, &s->xcrs) < 0) what = "KVM_SET_XCRS";
	else if (ioctl(c->fd, KVM_SET_XSAVE, s->xsave) < 0) what = "KVM_SET_XSAVE";
	if (!what && s->nr_msrs) {
		KVM_MSRS_N(CPU_MAX_MSRS) m = { 0 };
		m.hdr.nmsrs = s->nr_msrs;
		for (unsigned i = 0; i < s->nr_msrs; i++) {
			m.hdr.entries[i].index = s->msr_index[i];
			m.hdr.entries[i].data = s->msr_data[i];
		}
		int put = ioctl(c->fd, KVM_SET_MSRS, &m);
		if (put != (int)s->nr_msrs) {
			what = "KVM_SET_MSRS";
			if (put >= 0) {
				errno = EINVAL;
				snprintf(err, VMM_ERR_LEN, "vCPU %u: KVM_SET_MSRS refused MSR 0x%x",
					 c->idx, s->msr_index[put]);
				ret = -EINVAL;
				goto out;
			}
		}
	}
	if (!what) {
		if (ioctl(c->fd, KVM_SET_LAPIC, &s->lapic) < 0) what = "KVM_SET_LAPIC";
		else if (ioctl(c->fd, KVM_SET_VCPU_EVENTS, &s->events) < 0) what = "KVM_SET_VCPU_EVENTS";
		else if (ioctl(c->fd, KVM_SET_DEBUGREGS, &s->debugregs) < 0) what = "KVM_SET_DEBUGREGS";
		else if (ioctl(c->fd, KVM_SET_MP_STATE, &s->mp_state) < 0) what = "KVM_SET_MP_STATE";
	}
	if (what) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "vCPU %u: %s: %s", c->idx, what, strerror(errno));
	}
out:
	free(s);
	return ret;
}
