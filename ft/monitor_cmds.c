/*
 * monitor_cmds.c - the monitor commands of protection and failover. Their
 * JSON members are stable: the resource agent and the tests parse them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft/ft_internal.h"

static void cmd_migrate(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	char err[VMM_ERR_LEN] = "";
	bool kemari = false;
	const char *uri = NULL;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-d"))
			continue;	/* detached: always */
		else if (!strcmp(argv[i], "-k"))
			kemari = true;
		else if (argv[i][0] != '-' && !uri)
			uri = argv[i];
		else {
			mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "migrate: unexpected '%s' "
					 "(usage: migrate -d -k tcp:HOST:PORT)", argv[i]);
			return;
		}
	}
	if (!uri) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "usage: migrate -d -k tcp:HOST:PORT");
		return;
	}
	if (!kemari) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER,
				 "only fault-tolerant migration is supported: migrate -d -k %s", uri);
		return;
	}
	if (ft__protect(ft, uri, err) < 0) {
		mon_reply__error(r, MON_ERR_INVALID_STATE, "migrate: %s", err);
		return;
	}
	mon_reply__str(r, "state", "setup");
	mon_reply__str(r, "peer", uri);
}

static void cmd_migrate_cancel(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	char err[VMM_ERR_LEN] = "";
	(void)argv;
	if (argc) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "migrate_cancel takes no arguments");
		return;
	}
	if (ft__cancel(opaque, err) < 0)
		mon_reply__error(r, MON_ERR_INVALID_STATE, "migrate_cancel: %s", err);
	else if (err[0])
		mon_reply__str(r, "note", err);	/* done, but not cleanly: say how */
}

static void cmd_set_policy(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	struct et_policy_cfg p;
	char err[256], buf[64];

	if (argc != 1) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER,
				 "usage: migrate_set_policy event|epoch[:MS]|hybrid[:WINDOW_US[:MAX_MS]]");
		return;
	}
	if (et_policy__parse(argv[0], &p, err, sizeof(err)) < 0) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "%s", err);
		return;
	}
	pthread_mutex_lock(&ft->lock);
	ft->cfg.policy = p;
	pthread_mutex_unlock(&ft->lock);
	uint64_t one = 1;
	(void)!write(ft->wake_fd, &one, sizeof(one));
	et_policy__format(&p, buf, sizeof(buf));
	mon_reply__str(r, "policy", buf);
}

static bool parse_ms(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static void cmd_set_parameter(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	static const struct { const char *name; enum ft_inject v; } injects[] = {
		{ "none", FT_INJECT_NONE },
		{ "die-after-begin", FT_INJECT_DIE_AFTER_BEGIN },
		{ "die-mid-pages", FT_INJECT_DIE_MID_PAGES },
		{ "die-before-commit", FT_INJECT_DIE_BEFORE_COMMIT },
		{ "die-after-commit", FT_INJECT_DIE_AFTER_COMMIT },
		{ "corrupt-pages", FT_INJECT_CORRUPT_PAGES },
		{ "truncate-pages", FT_INJECT_TRUNCATE_PAGES },
		{ "hello-version", FT_INJECT_HELLO_VERSION },
		{ "handover-no-ok", FT_INJECT_HANDOVER_NO_OK },
		{ "cut-after-commit", FT_INJECT_CUT_AFTER_COMMIT },
		{ "repeat-page", FT_INJECT_REPEAT_PAGE },
		{ "slow-capture", FT_INJECT_SLOW_CAPTURE },
		{ "slow-commit", FT_INJECT_SLOW_COMMIT },
		{ "stall-receive", FT_INJECT_STALL_RECEIVE },
	};
	uint32_t v;

	if (argc != 2) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER,
				 "usage: migrate_set_parameter compress on|off | async-release off|due|always | delta-cache-mib N | hot-pages N | heartbeat-ms N | "
				 "heartbeat-timeout-ms N | event-hook-timeout-ms N | "
				 "held-output-limit BYTES | x-inject KIND | x-outputs-chunk BYTES");
		return;
	}
	if (!strncmp(argv[0], "x-", 2) && !ft->cfg.test_mode) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER,
				 "%s is test only: this ftvm was not started with --test-mode", argv[0]);
		return;
	}

	pthread_mutex_lock(&ft->lock);
	if (!strcmp(argv[0], "compress") && (!strcmp(argv[1], "on") || !strcmp(argv[1], "off"))) {
		ft->cfg.compress = !strcmp(argv[1], "on");
	} else if (!strcmp(argv[0], "async-release") &&
		   (!strcmp(argv[1], "off") || !strcmp(argv[1], "due") || !strcmp(argv[1], "always"))) {
		atomic_store(&ft->pri.async_release, !strcmp(argv[1], "off") ? FT_ASYNC_OFF
						     : !strcmp(argv[1], "due") ? FT_ASYNC_DUE : FT_ASYNC_ALWAYS);
	} else if (!strcmp(argv[0], "heartbeat-ms") && parse_ms(argv[1], 10, 10000, &v)) {
		__atomic_store_n(&ft->cfg.heartbeat_ms, v, __ATOMIC_RELAXED);
	} else if (!strcmp(argv[0], "heartbeat-timeout-ms") && parse_ms(argv[1], 50, 600000, &v)) {
		__atomic_store_n(&ft->cfg.heartbeat_timeout_ms, v, __ATOMIC_RELAXED);
	} else if (!strcmp(argv[0], "delta-cache-mib") && parse_ms(argv[1], 0, 65536, &v)) {
		ft->pri.delta_cache_mib = v;
	} else if (!strcmp(argv[0], "hot-pages") && parse_ms(argv[1], 0, FT_HOT_PAGES_MAX, &v)) {
		ft->pri.hot_pages = v;	/* the primary thread hands it to the VM at its next checkpoint */
	} else if (!strcmp(argv[0], "held-output-limit") && parse_ms(argv[1], 4096, 1u << 30, &v)) {
		ft->pri.held_bound = v;
	} else if (!strcmp(argv[0], "x-outputs-chunk") && parse_ms(argv[1], 64, FT_OUTPUTS_CHUNK, &v)) {
		ft->pri.outputs_chunk = v;
	} else if (!strcmp(argv[0], "event-hook-timeout-ms") && parse_ms(argv[1], 100, 600000, &v)) {
		ft->pri.hook_timeout_ms = v;
	} else if (!strcmp(argv[0], "event-hook")) {
		/* A command run as the VMM's user: set where the VMM is started
		 * (--event-hook), never by whoever reaches the monitor. */
		pthread_mutex_unlock(&ft->lock);
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER,
				 "event-hook is set only with --event-hook when ftvm starts");
		return;
	} else if (!strcmp(argv[0], "x-inject")) {
		size_t i;
		for (i = 0; i < sizeof(injects) / sizeof(injects[0]); i++)
			if (!strcmp(argv[1], injects[i].name))
				break;
		if (i == sizeof(injects) / sizeof(injects[0])) {
			pthread_mutex_unlock(&ft->lock);
			mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "x-inject: unknown fault '%s'",
					 argv[1]);
			return;
		}
		ft->inject = injects[i].v;
	} else {
		pthread_mutex_unlock(&ft->lock);
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER,
				 "migrate_set_parameter: bad parameter or value '%s %s'", argv[0], argv[1]);
		return;
	}
	pthread_mutex_unlock(&ft->lock);
	mon_reply__str(r, argv[0], argv[1]);
}

/* The sync's size, speed and what is left (under ft->lock). */
static void sync_figures(struct mon_reply *r, struct ft *ft)
{
	const struct ft_primary *p = &ft->pri;
	bool syncing = ft->state == FT_SYNCING;
	uint64_t elapsed_ns = p->sync_start_ns ? (syncing ? ft__now_ns() - p->sync_start_ns
							  : p->sync_ms * 1000000u) : 0;
	double gib_s = elapsed_ns ? (double)p->sync_done_bytes / (double)elapsed_ns * 1e9 / (1u << 30) : 0;
	uint64_t left = p->sync_total_bytes - p->sync_done_bytes;
	mon_reply__u64(r, "sync_total_bytes", p->sync_total_bytes);
	mon_reply__u64(r, "sync_remaining_bytes", left);
	mon_reply__double(r, "sync_gib_per_s", gib_s);
	/* At the rate so far; 0 once done (or before anything was looked at). */
	mon_reply__u64(r, "sync_eta_ms", syncing && p->sync_done_bytes
			       ? (uint64_t)((double)left * (double)elapsed_ns / (double)p->sync_done_bytes / 1e6) : 0);
	mon_reply__u64(r, "sync_ram_pages_unread", p->sync_ram_unread);
	mon_reply__u64(r, "sync_disk_bytes_unread", p->sync_disk_unread);
}

static void samples(struct mon_reply *r, const char *key, const struct ft_samples *s)
{
	mon_reply__object_begin(r, key);
	mon_reply__u64(r, "last", s->last);
	mon_reply__u64(r, "p50", ft_samples__pct(s, 50));
	mon_reply__u64(r, "p99", ft_samples__pct(s, 99));
	mon_reply__u64(r, "max", s->max);
	mon_reply__object_end(r);
}

/* A step's distribution: percentiles, and how many of the kept samples
 * fall in each bucket (upper bounds in µs; the last is open). */
static const uint64_t step_edges[] = { 10, 25, 50, 100, 200, 500, 1000, 5000 };

static void steps(struct mon_reply *r, const char *key, const struct ft_samples *s)
{
	uint64_t counts[sizeof(step_edges) / sizeof(step_edges[0]) + 1] = { 0 };
	size_t n = s->n < FT_STAT_RING ? (size_t)s->n : FT_STAT_RING;
	for (size_t i = 0; i < n; i++) {
		size_t b = 0;
		while (b < sizeof(step_edges) / sizeof(step_edges[0]) && s->v[i] >= step_edges[b])
			b++;
		counts[b]++;
	}
	mon_reply__object_begin(r, key);
	mon_reply__u64(r, "p50", ft_samples__pct(s, 50));
	mon_reply__u64(r, "p90", ft_samples__pct(s, 90));
	mon_reply__u64(r, "p99", ft_samples__pct(s, 99));
	mon_reply__u64(r, "max", s->max);
	mon_reply__object_begin(r, "histogram");
	for (size_t b = 0; b < sizeof(counts) / sizeof(counts[0]); b++) {
		char name[24];
		if (b < sizeof(step_edges) / sizeof(step_edges[0]))
			snprintf(name, sizeof(name), "lt_%llu", (unsigned long long)step_edges[b]);
		else
			snprintf(name, sizeof(name), "ge_%llu", (unsigned long long)step_edges[b - 1]);
		mon_reply__u64(r, name, counts[b]);
	}
	mon_reply__object_end(r);
	mon_reply__object_end(r);
}

static void cmd_info_migrate(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	struct et_stats es;
	char pol[64];
	(void)argv;

	if (argc) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "info migrate takes no arguments");
		return;
	}
	eventtap__stats(ft->cfg.et, &es);
	uint64_t lat[4096];
	size_t nlat = eventtap__latencies(ft->cfg.et, lat, 4096);
	struct ft_samples *ls = calloc(1, sizeof(*ls));

	pthread_mutex_lock(&ft->lock);
	mon_reply__str(r, "state", ft_state__name(ft->state));
	mon_reply__str(r, "role", ft->primary_role ? "primary" : "secondary");
	et_policy__format(&ft->cfg.policy, pol, sizeof(pol));
	mon_reply__str(r, "policy", pol);
	mon_reply__str(r, "peer", ft->peer);
	mon_reply__str(r, "storage", ft->cfg.drive_mode == VM_DRIVE_REPLICATED ? "replicated" : "shared");
	mon_reply__str(r, "last_error", ft->last_error);
	char session[20];
	snprintf(session, sizeof(session), "%016llx", (unsigned long long)ft->session);
	mon_reply__str(r, "session", ft->session ? session : "");
	mon_reply__str(r, "event_hook", ft->pri.event_hook);
	/* The link's protection: the credentials' kind, and the cipher of the
	 * connection there is (none without one, or plaintext). */
	mon_reply__str(r, "tls", xport_tls__describe(ft->cfg.tls));
	mon_reply__str(r, "tls_offload", xport_tls__offload(ft->cfg.tls));
	char cipher[64] = "none";
	if (ft->x)
		xport__cipher(ft->x, cipher, sizeof(cipher));
	mon_reply__str(r, "cipher", cipher);
	mon_reply__u64(r, "tls_key_updates", ft->x ? xport__rekeys(ft->x) : 0);
	if (ft->primary_role && ft->state != FT_FAILED_OVER) {
		mon_reply__u64(r, "sync_percent", ft->pri.sync_percent);
		mon_reply__u64(r, "sync_ms", ft->pri.sync_ms);
		mon_reply__u64(r, "sync_ram_pages", ft->pri.sync_ram_pages);
		mon_reply__u64(r, "sync_disk_blocks", ft->pri.sync_disk_blocks);
		mon_reply__u64(r, "sync_rounds", ft->pri.sync_rounds);
		mon_reply__u64(r, "sync_throttle_percent", ft->pri.sync_throttle);
		sync_figures(r, ft);
		mon_reply__str(r, "dirty_log", vm__dirty_mode(ft->cfg.vm));
		mon_reply__u64(r, "dirty_ring_full_exits", vm__dirty_ring_full_exits(ft->cfg.vm));
		mon_reply__u64(r, "hot_pages", vm__dirty_hot_pages(ft->cfg.vm));
		mon_reply__u64(r, "hot_pages_max", ft->pri.hot_pages);
		mon_reply__u64(r, "epoch", ft->pri.epoch);
		mon_reply__u64(r, "acked_epoch", ft->pri.acked_epoch);
		mon_reply__u64(r, "epochs", ft->epochs);
		samples(r, "pause_us", &ft->pri.pause_us);
		samples(r, "ship_us", &ft->pri.ckpt_ship_us);
		mon_reply__object_begin(r, "steps_us");
		steps(r, "wake", &ft->pri.wake_us);
		steps(r, "pause", &ft->pri.pause_us);
		steps(r, "send", &ft->pri.send_us);
		steps(r, "ack", &ft->pri.ack_us);
		steps(r, "peer_receive", &ft->pri.peer_receive_us);
		steps(r, "peer_commit", &ft->pri.peer_commit_us);
		steps(r, "release", &ft->pri.release_us);
		mon_reply__object_end(r);
		samples(r, "pages_per_checkpoint", &ft->ckpt_pages);
		samples(r, "bytes_per_checkpoint", &ft->pri.ckpt_bytes);
		if (ls) {
			for (size_t i = 0; i < nlat; i++)
				ft_samples__add(ls, lat[i] / 1000);
			samples(r, "output_latency_us", ls);
		}
		mon_reply__bool(r, "compress", ft->cfg.compress);
		static const char *const async_names[] = { "off", "due", "always" };
		mon_reply__str(r, "async_release", async_names[atomic_load(&ft->pri.async_release)]);
		mon_reply__u64(r, "async_releases", ft->pri.async_releases);
		mon_reply__u64(r, "delta_cache_mib", ft->pri.delta_cache_mib);
		mon_reply__u64(r, "pipelined_checkpoints", ft->pri.pipelined);
		mon_reply__u64(r, "pages_delta", ft->pri.pages_sent.delta);
		mon_reply__u64(r, "pages_whole", ft->pri.pages_sent.whole);
		mon_reply__u64(r, "pages_zero", ft->pri.pages_sent.zero);
		mon_reply__u64(r, "page_bytes_raw", ft->pri.bytes_raw);
		mon_reply__u64(r, "page_bytes_sent", ft->pri.bytes_wire);
		mon_reply__double(r, "compression_ratio",
				  ft->pri.bytes_wire ? (double)ft->pri.bytes_raw / (double)ft->pri.bytes_wire : 1.0);
		uint64_t lag = ft->acked_capture_ns && ft->state == FT_PROTECTED
				       ? (ft__now_ns() - ft->acked_capture_ns) / 1000000 : 0;
		mon_reply__u64(r, "peer_lag_ms", lag);
		mon_reply__u64(r, "revoke_ms", ft->pri.revoke_ms);
		mon_reply__u64(r, "held_output_limit", ft->pri.held_bound);
		mon_reply__u64(r, "heartbeat_ms", ft->cfg.heartbeat_ms);
		mon_reply__u64(r, "heartbeat_timeout_ms", ft->cfg.heartbeat_timeout_ms);
		mon_reply__u64(r, "forced_checkpoints", ft->pri.forced_checkpoints);
	} else {
		mon_reply__u64(r, "committed_epoch", ft->sec.committed_epoch);
		/* how old the state a failover here would resume is (0: none) */
		mon_reply__u64(r, "committed_age_ms",
			       ft->sec.committed_epoch ? (ft__now_ns() - ft->sec.committed_ns) / 1000000 : 0);
		mon_reply__u64(r, "epochs", ft->epochs);
		mon_reply__u64(r, "discarded_epochs", ft->sec.discarded_epochs);
		mon_reply__u64(r, "last_discarded_epoch", ft->sec.last_discarded);
		mon_reply__u64(r, "failover_ms", ft->sec.failover_ms);
		mon_reply__u64(r, "reissued_frames", ft->sec.reissued_frames);
		mon_reply__u64(r, "reissued_writes", ft->sec.reissued_writes);
		mon_reply__str(r, "clock_method", ft->sec.clock_method);
		mon_reply__i64(r, "clock_elapsed_us", ft->sec.clock_elapsed_ns / 1000);
		mon_reply__i64(r, "clock_step_us", ft->sec.clock_step_ns / 1000);
		mon_reply__i64(r, "clock_vcpu_skew_us", ft->sec.clock_skew_ns / 1000);
		/* connections that were not its primary: they changed nothing */
		mon_reply__u64(r, "stray_connections", ft->sec.stray_connections);
		mon_reply__str(r, "last_stray", ft->sec.last_stray);
		/* why a failover here is impossible ("": it is possible) */
		mon_reply__str(r, "unusable", ft->sec.unusable);
		mon_reply__bool(r, "rearmed", ft->sec.rearmed);
	}
	mon_reply__u64(r, "held_outputs", es.held_items);
	mon_reply__u64(r, "held_bytes", es.held_bytes);
	mon_reply__u64(r, "oldest_held_us", es.oldest_held_ns / 1000);
	mon_reply__u64(r, "released_outputs", es.released_items);
	pthread_mutex_unlock(&ft->lock);
	free(ls);
}

static void cmd_handover(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	char err[VMM_ERR_LEN] = "";
	uint64_t us = 0;
	(void)argv;

	if (argc) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "migrate_handover takes no arguments");
		return;
	}
	if (ft__handover(ft, &us, err) < 0) {
		mon_reply__error(r, MON_ERR_INVALID_STATE, "%s", err);
		return;
	}
	mon_reply__str(r, "state", "handed-over");
	mon_reply__u64(r, "handover_us", us);
	/* The guest runs on the secondary now: this VMM ends. */
	vm__request_quit(ft->cfg.vm, 0);
}

static void cmd_incoming_reset(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	char err[VMM_ERR_LEN] = "";
	(void)argv;

	if (argc) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "migrate_incoming_reset takes no arguments");
		return;
	}
	if (ft__incoming_reset(ft, err) < 0)
		mon_reply__error(r, MON_ERR_INVALID_STATE, "%s", err);
	else
		mon_reply__bool(r, "rearmed", true);
}

static void cmd_cont(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct ft *ft = opaque;
	char err[VMM_ERR_LEN] = "";
	(void)argv;

	if (argc) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "cont takes no arguments");
		return;
	}
	if (ft__is_secondary(ft)) {
		if (ft__failover(ft, err) < 0)
			mon_reply__error(r, MON_ERR_INVALID_STATE, "failover: %s", err);
		else
			mon_reply__str(r, "failover", "done");
		return;
	}
	if (!ft__may_run_guest(ft, err)) {
		mon_reply__error(r, MON_ERR_INVALID_STATE, "%s", err);
		return;
	}
	if (vm__resume(ft->cfg.vm) < 0)
		mon_reply__error(r, MON_ERR_INVALID_STATE, "the VM is shut down");
	else
		monitor__event(ft->mon, "RESUME", NULL);	/* the monitor thread: ft->mon is set */
}

void ft__unregister_monitor(struct ft *ft)
{
	if (!ft)
		return;
	pthread_mutex_lock(&ft->lock);
	ft->mon = NULL;
	pthread_mutex_unlock(&ft->lock);
}

int ft__register_monitor(struct ft *ft, struct monitor *m)
{
	ft->mon = m;	/* before any thread runs */
	monitor__add_command(m, "migrate", "-d -k tcp:HOST:PORT",
			     "start fault-tolerant protection towards a secondary", cmd_migrate, ft);
	monitor__add_command(m, "migrate_cancel", NULL, "stop protection", cmd_migrate_cancel, ft);
	monitor__add_command(m, "migrate_set_policy", "event|epoch[:MS]|hybrid[:US[:MS]]",
			     "when to checkpoint", cmd_set_policy, ft);
	monitor__add_command(m, "migrate_set_parameter", "NAME VALUE",
			     "compress on|off, async-release off|due|always, delta-cache-mib, hot-pages, heartbeat-ms, heartbeat-timeout-ms, event-hook, "
			     "event-hook-timeout-ms, held-output-limit, x-inject and x-outputs-chunk (tests)",
			     cmd_set_parameter, ft);
	monitor__add_command(m, "migrate_handover", NULL,
			     "proactive failover: last checkpoint, the secondary takes over, exit",
			     cmd_handover, ft);
	monitor__add_command(m, "info migrate", NULL, "protection state and figures",
			     cmd_info_migrate, ft);
	monitor__add_command(m, "cont", NULL, "resume; on a secondary: fail over now", cmd_cont, ft);
	monitor__add_command(m, "migrate_incoming_reset", NULL,
			     "secondary: drop the committed checkpoint when the next primary connects "
			     "(without it, a secondary holding one refuses every new primary)",
			     cmd_incoming_reset, ft);
	return 0;
}
