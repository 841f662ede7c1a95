/*
 * ft.h - Kemari-style fault tolerance: the checkpoint transaction between a
 * primary and a secondary, and failover.
 *
 * Primary: `migrate -d -k tcp:HOST:PORT` starts protection: a live initial
 * sync (disk in replicated mode, then iterative RAM pre-copy), then FT
 * mode: at each checkpoint the guest is paused only to capture (dirty
 * pages copied out, vCPU/platform/device state, the held-output list),
 * resumed, and the capture is shipped as BEGIN · PAGES · STATE · OUTPUTS ·
 * COMMIT; held output is released on ACK.
 *
 * Secondary (`--incoming tcp:ADDR:PORT`): stages what it receives,
 * verifies it, applies it atomically at COMMIT, ACKs. Failover (`cont`, or
 * on its own with --failover-on-peer-loss) resumes the guest from the last
 * committed checkpoint, re-issues its in-flight output, and announces the
 * guest's MAC.
 *
 * docs/ft.md and docs/wire-format.md describe the semantics and the bytes.
 */
#ifndef FTVM_FT_H
#define FTVM_FT_H

#include <stdbool.h>
#include <stdint.h>

#include "eventtap/eventtap.h"
#include "vmm/vmm.h"

struct xport_tls;

struct ft_config {
	struct vm *vm;
	struct eventtap *et;
	struct disk *disk;		/* the backend under the event tap (may be NULL) */
	enum vm_drive_mode drive_mode;
	uint8_t mac[6];
	struct et_policy_cfg policy;
	/* The two below may be changed by the monitor (migrate_set_parameter)
	 * while the ft runs: it stores them atomically, ft/ reads them with
	 * ft__hb_ms() / ft__hb_timeout_ms(). */
	uint32_t heartbeat_ms;		/* send a heartbeat this often when idle */
	uint32_t heartbeat_timeout_ms;	/* peer lost after this long without a byte */
	bool compress;			/* LZ4 on pages */
	bool failover_on_peer_loss;	/* secondary: fail over without being told */
	uint32_t advertise_tsc_khz;	/* test-only: claim this TSC rate in HELLO (0: the real one) */
	/*
	 * Primary: a command (sh -c) run when the secondary is lost after it
	 * committed a checkpoint. Held output stays held until it exits 0: it
	 * must make sure the lost secondary is never promoted (the cluster
	 * agent marks it stale). Retried every second while it fails; NULL:
	 * release at once (standalone use). Environment: docs/operations.md.
	 */
	const char *event_hook;
	uint32_t hook_timeout_ms;	/* one run of the hook at most this long (default 10000) */
	const char *audit_log;		/* append the protocol's steps to this file (NULL: none) */
	/* TLS credentials for the link (NULL: plaintext); read-only, outlive the ft. */
	const struct xport_tls *tls;
	bool test_mode;			/* x-inject and x-outputs-chunk exist (--test-mode) */
};

struct ft;

int ft__create(const struct ft_config *cfg, struct ft **out, char *err);
/* Ends the ft; held output is not released (the VMM is ending). */
void ft__destroy(struct ft *ft);

/* Primary: start protecting towards uri ("tcp:HOST:PORT"); returns at once. */
int ft__protect(struct ft *ft, const char *uri, char *err);
/* Primary: stop protection cleanly (held output is released; also ends a
 * peer-lost hook wait: the operator says the old secondary cannot take over). */
int ft__cancel(struct ft *ft, char *err);
/* Secondary: wait for a primary on uri. */
int ft__listen(struct ft *ft, const char *uri, char *err);
/* Secondary: fail over now (the monitor's `cont`). */
int ft__failover(struct ft *ft, char *err);
/*
 * Primary: proactive failover (machine check): stop the guest, last
 * checkpoint, the secondary takes over. On success the guest must not run
 * here again; the caller ends the VMM. *us: how long it took.
 */
int ft__handover(struct ft *ft, uint64_t *us, char *err);
/*
 * Runs the event hook for an event the cluster must act on (e.g.
 * "io-error": a fatal block I/O error), in the background: the caller does
 * not wait. -ENOENT without a hook; -EBUSY while an earlier report runs.
 */
int ft__report_event(struct ft *ft, const char *event, const char *detail);
/* True on a secondary that has not failed over (its `cont` means failover). */
bool ft__is_secondary(struct ft *ft);

/* Adds migrate, migrate_cancel, migrate_set_policy, migrate_set_parameter,
 * info migrate, and the secondary's cont to the monitor. */
int ft__register_monitor(struct ft *ft, struct monitor *m);
/* Before the monitor is destroyed: no more events go to it. */
void ft__unregister_monitor(struct ft *ft);

#endif
