/*
 * failover.c - a secondary becomes the primary: from its last committed
 * checkpoint (load the state, move guest time on, re-issue its held
 * output, announce the MAC, run). Called by the secondary thread (peer
 * lost with --failover-on-peer-loss, HANDOVER) and by the monitor's `cont`
 * (ft.c); the state machine (role_state.c) says when it may run.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock/clock.h"
#include "ft/ft_internal.h"

/*
 * Frames queued on this host's tap while it was a secondary: the LAN may
 * have flooded the guest's traffic here too (a bridge that has not learnt,
 * or has forgotten, where the guest's MAC lives), and the primary's guest
 * has already processed those requests. Delivered to the guest after a
 * failover they would run a second time, late: an old PUT would undo newer
 * acknowledged ones. Dropping them is what the network does to frames sent
 * to a host that is not running the guest; clients retry. Returns how many.
 */
unsigned ft__drain_rx(struct ft *ft)
{
	struct net *n = eventtap__net(ft->cfg.et);
	static uint8_t buf[65536];	/* one caller at a time: the secondary thread or failover */
	unsigned dropped = 0;

	if (!n)
		return 0;
	while (n->ops->rx(n->be, buf, sizeof(buf)) >= 0)
		dropped++;
	return dropped;
}

/*
 * Resume the guest from the last committed checkpoint: load its state,
 * re-issue its in-flight output (shared storage: disk writes too; in
 * replicated mode they were applied at commit), announce the MAC, run.
 */
int ft__do_failover(struct ft *ft, const char *why, char *err)
{
	char verr[VMM_ERR_LEN] = "";
	uint64_t t0 = ft__now_ns();
	int ret;

	pthread_mutex_lock(&ft->lock);
	uint64_t epoch = ft->sec.committed_epoch;
	if (ft->primary_role) {
		pthread_mutex_unlock(&ft->lock);
		snprintf(err, VMM_ERR_LEN, "not a secondary");
		return -EINVAL;
	}
	if (ft->sec.unusable[0]) {
		snprintf(err, VMM_ERR_LEN, "this secondary cannot fail over: %s", ft->sec.unusable);
		pthread_mutex_unlock(&ft->lock);
		return -EIO;
	}
	pthread_mutex_unlock(&ft->lock);
	if (!epoch) {
		snprintf(err, VMM_ERR_LEN, "no committed checkpoint to fail over to");
		return -ENOENT;
	}
	fprintf(stderr, "ftvm: ft: failover (%s) from checkpoint %llu\n", why, (unsigned long long)epoch);
	/* Before the device state is loaded: from then on the I/O thread
	 * delivers into the guest's RX queue. */
	unsigned stale = ft__drain_rx(ft);
	if (stale)
		fprintf(stderr, "ftvm: ft: dropped %u frames that reached this host's tap before the "
			"failover\n", stale);
	ret = vm__load_state(ft->cfg.vm, ft->sec.committed_state.data, ft->sec.committed_state.len, verr);
	if (ret) {
		snprintf(err, VMM_ERR_LEN, "loading checkpoint %llu: %s", (unsigned long long)epoch, verr);
		ft__set_state(ft, FT_FAILED);
		return ret;
	}
	/* Guest time: forward by the wall time since the capture, never back. */
	struct vm_clock rec;
	struct clock_result cr = { .method = "" };
	ret = vm__state_clock(ft->sec.committed_state.data, ft->sec.committed_state.len, &rec, verr);
	if (!ret)
		ret = clock__resume(ft->cfg.vm, &rec, CLOCK_CATCH_UP, &cr, verr);
	if (ret)
		ft__error(ft, "failover: guest clock: %s", verr);	/* run anyway: availability first */
	pthread_mutex_lock(&ft->lock);
	snprintf(ft->sec.clock_method, sizeof(ft->sec.clock_method), "%s", cr.method);
	ft->sec.clock_elapsed_ns = cr.elapsed_ns;
	ft->sec.clock_step_ns = cr.step_ns;
	ft->sec.clock_skew_ns = cr.vcpu_skew_ns;
	pthread_mutex_unlock(&ft->lock);
	uint32_t frames = 0, writes = 0;
	ret = et_list__reissue(ft->cfg.et, ft->sec.committed_outputs.data, ft->sec.committed_outputs.len,
			       ft->cfg.drive_mode == VM_DRIVE_SHARED, &frames, &writes);
	if (ret) {
		/* The guest was told those writes were done; without them it
		 * must not run (and nothing it sent after them went out). */
		snprintf(err, VMM_ERR_LEN, "failover from checkpoint %llu: re-issuing its disk "
			 "writes: %s (%u written); the guest is not resumed",
			 (unsigned long long)epoch, strerror(-ret), writes);
		ft__error(ft, "%s", err);
		pthread_mutex_lock(&ft->lock);
		snprintf(ft->sec.unusable, sizeof(ft->sec.unusable), "%s", err);
		pthread_mutex_unlock(&ft->lock);
		ft_audit(ft, "failover-failed", epoch, "%s", err);
		ft__set_state(ft, FT_FAILED);
		return ret;
	}
	ft_audit(ft, "failover", epoch, "why=%s reissued_frames=%u reissued_writes=%u", why, frames,
		 writes);
	for (int i = 0; i < 3; i++)
		ft_announce__rarp(ft->cfg.et, ft->cfg.mac);
	pthread_mutex_lock(&ft->lock);
	ft->primary_role = true;
	ft->sec.reissued_frames = frames;
	ft->sec.reissued_writes = writes;
	pthread_mutex_unlock(&ft->lock);
	ret = vm__resume(ft->cfg.vm);
	ft_announce__start(ft);	/* and again, for a bridge the old primary's last frames taught */
	ft__set_state(ft, FT_FAILED_OVER);
	pthread_mutex_lock(&ft->lock);
	ft->sec.failover_ms = (ft__now_ns() - t0) / 1000000;
	struct mon_reply *ev = ft__event_begin_locked(ft);
	if (ev) {
		mon_reply__str(ev, "why", why);
		mon_reply__u64(ev, "checkpoint", epoch);	/* resumed from */
		mon_reply__u64(ev, "reissued_frames", frames);
		mon_reply__u64(ev, "reissued_writes", writes);
		mon_reply__u64(ev, "failover_ms", ft->sec.failover_ms);
		mon_reply__bool(ev, "running", ret == 0);
	}
	ft__event_end_locked(ft, "FAILOVER", ev);
	pthread_mutex_unlock(&ft->lock);
	fprintf(stderr, "ftvm: ft: running as primary (unprotected) from checkpoint %llu; "
		"re-issued %u frames, %u disk writes\n", (unsigned long long)epoch, frames, writes);
	return ret;
}

