/*
 * clock.h - guest time across checkpoints, failover and restore.
 *
 * Trapping every TSC read would be prohibitive, so time travels lazily:
 * every checkpoint (and every savevm file) carries a clock record, each
 * vCPU's guest TSC and kvmclock with the host wall time they were read at
 * (vm__clock_read). When a VM resumes somewhere else, clock__resume()
 * moves guest time forward by the wall time that passed since the record
 * (catch-up) or by nothing (continue), never backwards, and keeps all
 * vCPUs' TSCs in step.
 */
#ifndef FTVM_CLOCK_H
#define FTVM_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/vmm.h"

enum clock_policy {
	CLOCK_CONTINUE,		/* guest time resumes where the record left it */
	CLOCK_CATCH_UP,		/* ... plus the wall time that passed since */
};

/* "continue" | "catch-up" */
int clock_policy__parse(const char *s, enum clock_policy *out);
const char *clock_policy__name(enum clock_policy p);

struct clock_result {
	/* How the TSC was set: "tsc-offset" (KVM_VCPU_TSC_OFFSET), "tsc-msr"
	 * (host write of MSR_IA32_TSC), or "host-tsc" (this KVM offers no
	 * control that holds: the guest TSC is the host's, as on PVM). */
	char method[16];
	int64_t elapsed_ns;	/* wall time since the record (0 for continue) */
	int64_t step_ns;	/* guest TSC now minus the record, in ns */
	int64_t vcpu_skew_ns;	/* largest TSC difference between vCPUs after */
};

/*
 * Sets guest time after the VM's state was loaded and before it runs.
 * Refuses (-ERANGE, err says by how much) when the guest TSC would end up
 * behind the record and nothing here can move it forward.
 */
int clock__resume(struct vm *vm, const struct vm_clock *rec, enum clock_policy p,
		  struct clock_result *res, char *err);

/* Checked when two hosts pair: the TSC rate cannot be scaled here. */
int clock__check_rate(uint32_t mine_khz, uint32_t peer_khz, char *err, size_t errlen);

#endif
