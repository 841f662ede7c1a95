/*
 * ft.c - the ft object: roles, threads, failover, and the monitor commands
 * operators use (`migrate -d -k`, `migrate_cancel`, `info migrate`, `cont`).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ft/ft_internal.h"

int ft__create(const struct ft_config *cfg, struct ft **out, char *err)
{
	struct ft *ft = calloc(1, sizeof(*ft));
	if (!ft)
		return -ENOMEM;
	ft->cfg = *cfg;
	if (!ft->cfg.heartbeat_ms)
		ft->cfg.heartbeat_ms = 100;
	if (!ft->cfg.heartbeat_timeout_ms)
		ft->cfg.heartbeat_timeout_ms = 500;
	if (ft->cfg.event_hook)
		snprintf(ft->pri.event_hook, sizeof(ft->pri.event_hook), "%s", ft->cfg.event_hook);
	ft->cfg.event_hook = NULL;	/* the copy above is the one in use */
	ft->pri.hook_timeout_ms = ft->cfg.hook_timeout_ms ? ft->cfg.hook_timeout_ms : 10000;
	ft->pri.held_bound = FT_HELD_BOUND;
	ft->pri.delta_cache_mib = FT_DELTA_CACHE_MIB;
	ft->pri.hot_pages = FT_HOT_PAGES;
	atomic_store(&ft->pri.async_release, FT_ASYNC_OFF);
	ft->audit_fd = -1;
	ft->pri.outputs_chunk = FT_OUTPUTS_CHUNK;
	pthread_mutex_init(&ft->lock, NULL);
	pthread_cond_init(&ft->cond, NULL);
	sbuf__init(&ft->sec.committed_state);
	sbuf__init(&ft->sec.committed_outputs);
	ft->primary_role = true;
	ft->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ft->wake_fd < 0) {
		snprintf(err, VMM_ERR_LEN, "eventfd: %s", strerror(errno));
		free(ft);
		return -errno;
	}
	if (ft->cfg.audit_log) {
		int ret = ft_audit__open(ft, ft->cfg.audit_log, err);
		if (ret) {
			close(ft->wake_fd);
			free(ft);
			return ret;
		}
		ft->cfg.audit_log = NULL;
	}
	*out = ft;
	return 0;
}

static void wake(struct ft *ft)
{
	uint64_t one = 1;
	(void)!write(ft->wake_fd, &one, sizeof(one));
}

/* Stops the role thread and waits for it. Safe from any other thread. */
static void ft__stop_thread(struct ft *ft)
{
	pthread_mutex_lock(&ft->lock);
	bool running = ft->thread_running;
	if (running) {
		atomic_store(&ft->stop, true);
		if (ft->x)
			xport__shutdown(ft->x);
	}
	pthread_mutex_unlock(&ft->lock);
	if (!running)
		return;
	wake(ft);
	pthread_join(ft->thread, NULL);
	pthread_mutex_lock(&ft->lock);
	ft->thread_running = false;
	atomic_store(&ft->stop, false);
	atomic_store(&ft->pri.cancel_req, false);
	atomic_store(&ft->pri.cancel_cut, false);
	pthread_mutex_unlock(&ft->lock);
}

void ft__destroy(struct ft *ft)
{
	if (!ft)
		return;
	pthread_mutex_lock(&ft->lock);
	ft->pri.quitting = true;
	pthread_mutex_unlock(&ft->lock);
	ft__stop_thread(ft);
	ft_announce__stop(ft);
	/* A background event report uses ft: let it end (its hook is bounded). */
	while (atomic_load(&ft->pri.event_busy)) {
		struct timespec ts = { 0, 10 * 1000000 };
		nanosleep(&ts, NULL);
	}
	xport__close(ft->x);
	xport__listener_close(ft->listener);
	sbuf__free(&ft->sec.committed_state);
	sbuf__free(&ft->sec.committed_outputs);
	close(ft->wake_fd);
	if (ft->audit_fd >= 0)
		close(ft->audit_fd);
	free(ft);
}

static void *primary_thread(void *arg)
{
	struct ft *ft = arg;
	pthread_setname_np(pthread_self(), "ft-primary");
	ft_primary__run(ft);
	ft_link__stop(ft);
	pthread_mutex_lock(&ft->lock);
	struct xport *x = ft->x;
	ft->x = NULL;
	pthread_mutex_unlock(&ft->lock);
	xport__close(x);
	return NULL;
}

static void *secondary_thread(void *arg)
{
	struct ft *ft = arg;
	pthread_setname_np(pthread_self(), "ft-secondary");
	ft_secondary__run(ft);
	return NULL;
}

/* A protection run's id: random, never 0 (0 = none). */
static uint64_t new_session(void)
{
	uint64_t v = 0;
	while (!v)
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = ft__now_ns() ^ ((uint64_t)getpid() << 32);
	return v;
}

int ft__protect(struct ft *ft, const char *uri, char *err)
{
	pthread_mutex_lock(&ft->lock);
	enum ft_state st = ft->state;
	bool busy = ft->thread_running;
	pthread_mutex_unlock(&ft->lock);

	if (!ft->primary_role) {
		snprintf(err, VMM_ERR_LEN, "this is a secondary (--incoming): it cannot protect");
		return -EINVAL;
	}
	if (busy && st == FT_REVOKING) {
		snprintf(err, VMM_ERR_LEN, "the lost secondary %s is being revoked (event hook); output "
			 "is held until that is done (migrate_cancel releases it now)", ft->peer);
		return -EBUSY;
	}
	if (st == FT_STOPPED || st == FT_HANDED_OVER || st == FT_HANDING_OVER) {
		snprintf(err, VMM_ERR_LEN, "the guest is handed over or stopped for good here (%s): %s",
			 ft_state__name(st), ft->last_error);
		return -EINVAL;
	}
	if (busy && (st == FT_SETUP || st == FT_SYNCING || st == FT_PROTECTED)) {
		snprintf(err, VMM_ERR_LEN, "protection is already %s (migrate_cancel first)",
			 ft_state__name(st));
		return -EBUSY;
	}
	if (strncmp(uri, "tcp:", 4) != 0 && strncmp(uri, "rdma:", 5) != 0) {
		snprintf(err, VMM_ERR_LEN, "'%s': expected tcp:HOST:PORT (or rdma:HOST:PORT)", uri);
		return -EINVAL;
	}
	if (!vm__is_started(ft->cfg.vm)) {
		snprintf(err, VMM_ERR_LEN, "the VM is not running");
		return -EINVAL;
	}
	ft__stop_thread(ft);	/* a finished earlier attempt */
	if (ft__set_state(ft, FT_SETUP) < 0) {
		snprintf(err, VMM_ERR_LEN, "protection cannot start from state %s",
			 ft_state__name(st));
		return -EINVAL;
	}
	pthread_mutex_lock(&ft->lock);
	snprintf(ft->uri, sizeof(ft->uri), "%s", uri);
	ft->last_error[0] = '\0';
	ft->pri.sync_percent = 0;
	ft->epochs = 0;
	ft->pri.epoch = ft->pri.acked_epoch = 0;	/* a new secondary starts at checkpoint 1 */
	ft->acked_capture_ns = 0;
	ft->pri.commit_sent = false;
	ft->pri.trigger = false;
	ft->pri.held_full = false;
	ft->pri.forced_checkpoints = 0;
	memset(&ft->pri.pause_us, 0, sizeof(ft->pri.pause_us));
	memset(&ft->pri.ckpt_bytes, 0, sizeof(ft->pri.ckpt_bytes));
	memset(&ft->ckpt_pages, 0, sizeof(ft->ckpt_pages));
	memset(&ft->pri.ckpt_ship_us, 0, sizeof(ft->pri.ckpt_ship_us));
	ft->pri.bytes_raw = ft->pri.bytes_wire = 0;
	memset(&ft->pri.pages_sent, 0, sizeof(ft->pri.pages_sent));
	ft->pri.pipelined = 0;
	ft->pri.sync_ram_pages = ft->pri.sync_disk_blocks = ft->pri.sync_rounds = 0;
	ft->pri.sync_throttle = 0;
	ft->session = new_session();
	ft->thread_running = true;
	pthread_mutex_unlock(&ft->lock);
	int ret = pthread_create(&ft->thread, NULL, primary_thread, ft);
	if (ret) {
		pthread_mutex_lock(&ft->lock);
		ft->thread_running = false;
		pthread_mutex_unlock(&ft->lock);
		ft__set_state(ft, FT_UNPROTECTED);
		snprintf(err, VMM_ERR_LEN, "cannot start the ft thread");
		return -ret;
	}
	return 0;
}

/* pthread_timedjoin_np on the role thread, ms from now: 0 or ETIMEDOUT. */
static int join_within(struct ft *ft, uint32_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)(ms % 1000) * 1000000u;
	until.tv_sec += (time_t)(ms / 1000 + ns / 1000000000u);
	until.tv_nsec = (long)(ns % 1000000000u);
	return pthread_timedjoin_np(ft->thread, NULL, &until);
}

int ft__cancel(struct ft *ft, char *err)
{
	pthread_mutex_lock(&ft->lock);
	bool run = ft->thread_running && ft->primary_role;
	pthread_mutex_unlock(&ft->lock);
	if (!run) {
		snprintf(err, VMM_ERR_LEN, "no protection to cancel");
		return -EINVAL;
	}
	/* In revoking-peer the operator ends the wait (and asserts the lost
	 * secondary will not be promoted); otherwise a CANCEL handshake ends
	 * protection, and an unconfirmed one revokes the secondary first. */
	pthread_mutex_lock(&ft->lock);
	bool revoking = ft->state == FT_REVOKING;
	pthread_mutex_unlock(&ft->lock);
	atomic_store(revoking ? &ft->stop : &ft->pri.cancel_req, true);
	wake(ft);
	/* First the CANCEL handshake's own time: the thread's next look at
	 * the link, CANCEL, and CANCEL_OK within the heartbeat timeout. */
	uint32_t budget_ms = ft__hb_ms(ft) + ft__hb_timeout_ms(ft) + 1000;
	int r = join_within(ft, budget_ms);
	bool cut = false;
	if (r == ETIMEDOUT) {
		/* Still on the link after that: a send blocked on a secondary
		 * that reads nothing (its heartbeats may well still come, so
		 * it never looks lost). Shut the link: the send fails and the
		 * thread ends protection as with an unconfirmed CANCEL.
		 * Revoking-peer does not use the link: left alone. */
		pthread_mutex_lock(&ft->lock);
		if (ft->state != FT_REVOKING && ft->x) {
			atomic_store(&ft->pri.cancel_cut, true);
			xport__shutdown(ft->x);
			cut = true;
		}
		pthread_mutex_unlock(&ft->lock);
		if (cut)
			r = join_within(ft, 1000);
	}
	/* A revocation may take long: it goes on in the thread (state
	 * revoking-peer; cancel again ends it). */
	if (r == ETIMEDOUT) {
		snprintf(err, VMM_ERR_LEN, "%sthe secondary did not confirm the cancel; it is being "
			 "revoked (revoking-peer; migrate_cancel again abandons that)",
			 cut ? "the link was shut down (the secondary read nothing); " : "");
		return 0;
	}
	pthread_mutex_lock(&ft->lock);
	/* How it ended (confirmed, unconfirmed, the link shut): the reply says. */
	snprintf(err, VMM_ERR_LEN, "%s", ft->last_error);
	ft->thread_running = false;
	atomic_store(&ft->stop, false);
	atomic_store(&ft->pri.cancel_req, false);
	atomic_store(&ft->pri.cancel_cut, false);
	pthread_mutex_unlock(&ft->lock);
	return 0;
}

int ft__listen(struct ft *ft, const char *uri, char *err)
{
	int ret = xport__listen(uri, &ft->listener, err, VMM_ERR_LEN);
	if (ret)
		return ret;
	ft->primary_role = false;
	ft__set_state(ft, FT_WAITING);
	ft->thread_running = true;
	ret = pthread_create(&ft->thread, NULL, secondary_thread, ft);
	if (ret) {
		ft->thread_running = false;
		snprintf(err, VMM_ERR_LEN, "cannot start the ft thread");
		return -ret;
	}
	return 0;
}

bool ft__is_secondary(struct ft *ft)
{
	pthread_mutex_lock(&ft->lock);
	bool s = !ft->primary_role;
	pthread_mutex_unlock(&ft->lock);
	return s;
}

int ft__incoming_reset(struct ft *ft, char *err)
{
	pthread_mutex_lock(&ft->lock);
	int ret = 0;
	if (ft->primary_role) {
		snprintf(err, VMM_ERR_LEN, "not a secondary");
		ret = -EINVAL;
	} else if (ft->state == FT_RECEIVING) {
		snprintf(err, VMM_ERR_LEN, "receiving from %s: its stream is the live one", ft->peer);
		ret = -EBUSY;
	} else {
		ft->sec.rearmed = true;
	}
	pthread_mutex_unlock(&ft->lock);
	if (!ret)
		fprintf(stderr, "ftvm: ft: re-armed: the next primary replaces checkpoint %llu\n",
			(unsigned long long)ft->sec.committed_epoch);
	return ret;
}

int ft__failover(struct ft *ft, char *err)
{
	if (!ft__is_secondary(ft)) {
		snprintf(err, VMM_ERR_LEN, "not a secondary");
		return -EINVAL;
	}
	pthread_mutex_lock(&ft->lock);
	bool have = ft->sec.committed_epoch > 0;
	if (ft->sec.unusable[0]) {
		snprintf(err, VMM_ERR_LEN, "this secondary cannot fail over: %s", ft->sec.unusable);
		pthread_mutex_unlock(&ft->lock);
		return -EIO;
	}
	pthread_mutex_unlock(&ft->lock);
	if (!have) {
		snprintf(err, VMM_ERR_LEN, "no committed checkpoint to fail over to");
		return -ENOENT;
	}
	ft__stop_thread(ft);
	return ft__do_failover(ft, "cont", err);
}

int ft__handover(struct ft *ft, uint64_t *us, char *err)
{
	struct timespec deadline;

	pthread_mutex_lock(&ft->lock);
	if (!ft->primary_role || ft->state != FT_PROTECTED) {
		pthread_mutex_unlock(&ft->lock);
		snprintf(err, VMM_ERR_LEN, "handover needs a protected primary (state %s)",
			 ft_state__name(ft->state));
		return -EINVAL;
	}
	ft->pri.handover_done = false;
	atomic_store(&ft->pri.handover_req, true);
	pthread_mutex_unlock(&ft->lock);
	wake(ft);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&ft->lock);
	while (!ft->pri.handover_done)
		if (pthread_cond_timedwait(&ft->cond, &ft->lock, &deadline) == ETIMEDOUT)
			break;
	int ret = ft->pri.handover_done ? ft->pri.handover_result : -ETIMEDOUT;
	*us = ft->pri.handover_us;
	pthread_mutex_unlock(&ft->lock);
	if (ret)
		snprintf(err, VMM_ERR_LEN, "handover failed: %s (%s)", strerror(-ret), ft->last_error);
	return ret;
}
