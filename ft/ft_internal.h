/* ft_internal.h - shared by the files of ft/. */
#ifndef FTVM_FT_INTERNAL_H
#define FTVM_FT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "ft/ft.h"
#include "ft/ft_states.h"
#include "transport/transport.h"

#define FT_PROTO_VERSION 4	/* 2: HELLO carries the protection session id; 3: the CPU model;
				 * 4: delta-coded PAGES, the secondary's step times in ACK */
#define FT_PAGE 4096u
#define FT_PAGES_PER_MSG 4096u		/* 16 MiB of pages per PAGES message at most */
#define FT_DISK_BLOCK (64u << 10)	/* replicated-disk sync granularity */
#define FT_TLS_HANDSHAKE_MS 10000	/* the whole TLS handshake, either side */
#define FT_BATCH_PAGES 256u		/* a checkpoint this small is sent as one batch */
#define FT_BATCH_BYTES (1u << 20)	/* ... with this much output at most */
#define FT_SYNC_MAX_ROUNDS 30u		/* pre-copy rounds at most before the first checkpoint */
#define FT_SYNC_FINAL_PAGES 1024u	/* a round that leaves fewer is the last */
#define FT_STAT_RING 4096

/* Message types (docs/wire-format.md). */
enum ft_msg {
	FT_MSG_HELLO = 1,	/* primary -> secondary: who I am (vmstate "hello") */
	FT_MSG_HELLO_OK = 2,	/* secondary -> primary */
	FT_MSG_ERROR = 3,	/* either way: text, then the sender closes */
	FT_MSG_SYNC_RAM = 4,	/* initial sync: pages, written directly */
	FT_MSG_SYNC_DISK = 5,	/* initial sync: u64 offset + data, written directly */
	FT_MSG_BEGIN = 6,	/* checkpoint epoch starts */
	FT_MSG_PAGES = 7,	/* dirty pages of the epoch (staged) */
	FT_MSG_STATE = 8,	/* vCPU/platform/device state (snapshot format, staged) */
	FT_MSG_OUTPUTS = 9,	/* held-output list (staged) */
	FT_MSG_COMMIT = 10,	/* end of the epoch: counts to verify */
	FT_MSG_ACK = 11,	/* secondary -> primary: epoch committed */
	FT_MSG_HEARTBEAT = 12,	/* either way */
	FT_MSG_CANCEL = 13,	/* primary -> secondary: protection stopped on purpose */
	FT_MSG_HANDOVER = 14,	/* primary -> secondary: take over now from checkpoint <epoch> */
	FT_MSG_HANDOVER_OK = 15, /* secondary -> primary: taking over */
	FT_MSG_CANCEL_OK = 16,	/* secondary -> primary: checkpoint dropped, no failover target */
	FT_MSG_MAX
};

/* Header flags. */
#define FT_FLAG_LZ4 1u		/* PAGES/SYNC_RAM data is page-codec encoded */
#define FT_FLAG_MORE 2u		/* OUTPUTS: more of this checkpoint's list follows */
#define FT_FLAG_DELTA 4u	/* PAGES: each page whole, zero, or a delta against the
				 * secondary's copy of it (ft/page_cache.c) */

/* A delta-coded PAGES message: after u32 count and u64 index[count], per
 * page a u16 code and what it says follows. */
#define FT_PAGE_WHOLE 0xffffu	/* 4,096 bytes */
#define FT_PAGE_ZERO 0xfffeu	/* nothing: the page is all zeros */
#define FT_DELTA_MAX 2048u	/* a code up to this: u32 CRC-32C of the page it
				 * rebuilds, then a page delta (transport.h) of
				 * that many bytes against the secondary's copy */
#define FT_DELTA_CACHE_MIB 16	/* default delta-cache-mib */
#define FT_HOT_PAGES 256	/* default hot-pages (vm__dirty_log_set_hot) */
#define FT_HOT_PAGES_MAX 4096
enum { FT_ASYNC_OFF, FT_ASYNC_DUE, FT_ASYNC_ALWAYS };	/* 16 MiB copied at every pause at most */

/*
 * The primary's copies of pages as the secondary holds them, to send a
 * dirty page as its delta. Direct-mapped: a slot keeps one page, the last
 * one sent of those that hash to it. The role thread's alone; a protection
 * run starts empty (the secondary's RAM then holds only what this run
 * sent), and a slot is written only with what a checkpoint sent.
 */
struct ft_page_cache {
	uint64_t *tag;		/* page index + 1 of each slot's copy (0: empty) */
	uint8_t *data;		/* slots x FT_PAGE */
	size_t slots;		/* a power of two; 0: no cache */
	unsigned shift;		/* 64 - log2(slots) */
};
struct ft_page_counts {
	uint64_t delta, whole, zero;	/* pages sent each way */
};
/* bytes rounded down to a power of two of pages; 0 frees it (no deltas). */
int ft_page_cache__init(struct ft_page_cache *c, size_t bytes);
void ft_page_cache__free(struct ft_page_cache *c);
/* Codes page idx (the message's layout is in page_cache.c): *code is
 * FT_PAGE_WHOLE (the caller sends the page), FT_PAGE_ZERO, or a delta's
 * length, its CRC and delta appended to deltas. Keeps the page as the
 * secondary will hold it. 0 or -ENOMEM. */
int ft_page_cache__encode(struct ft_page_cache *c, uint64_t idx, const uint8_t *page, struct sbuf *deltas,
			  uint16_t *code, struct ft_page_counts *n);
/* Rebuilds a delta-coded page (code <= FT_DELTA_MAX) into out from base,
 * the receiver's copy, taking its CRC and delta off *deltas (*left bytes
 * there). 0, or -EBADMSG with err (an unknown code, a short or bad delta,
 * a CRC that does not match). */
int ft_page_cache__rebuild(uint16_t code, const uint8_t **deltas, size_t *left, const uint8_t *base,
			   uint8_t *out, char *err, size_t errlen);
#define FT_OUTPUTS_CHUNK (32u << 20)	/* OUTPUTS message size at most (the secondary's limit is 64 MiB) */
#define FT_HELD_BOUND (16u << 20)	/* held bytes that force a checkpoint, whatever the policy */

extern const char *const ft_msg_names[FT_MSG_MAX];

/* What both sides must agree on (vmstate "hello"). */
struct ft_hello {
	uint32_t ft_version;
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t tsc_khz;
	uint8_t has_blk, has_net, drive_mode;
	uint64_t disk_size;
	uint32_t page_size;
	char name[64];
	uint64_t session;	/* v2: the primary's id for this protection run */
	char cpu_vendor[12];	/* v3: the CPU model the guest sees (vmm.h) */
	uint32_t cpu_word[VM_CPU_WORDS];
};

int ft_hello__encode(const struct ft_hello *h, struct sbuf *out);
int ft_hello__decode(const void *p, size_t len, struct ft_hello *h, char *err, size_t errlen);
void ft_hello__describe(struct ft *ft, struct ft_hello *h);
/* 0 if the peer's machine matches ours; else err names the difference. */
int ft_hello__check(const struct ft_hello *mine, const struct ft_hello *peer, char *err,
		    size_t errlen);

/* COMMIT payload. */
struct ft_commit {
	uint32_t pages;
	uint32_t page_msgs;
	uint32_t outputs;	/* OUTPUTS messages of this checkpoint */
	uint32_t reserved;
	uint64_t capture_ns;	/* primary's CLOCK_MONOTONIC at capture */
};

/* ACK's payload: the secondary's own share of a checkpoint's round trip
 * (its clock): BEGIN read -> COMMIT read, and COMMIT read -> ACK sent.
 * A primary takes an ACK without it too. */
struct ft_ack_times {
	uint32_t receive_us;
	uint32_t commit_us;
};

/* Faults a test can ask for (`migrate_set_parameter x-inject ...`). */
enum ft_inject {
	FT_INJECT_NONE,
	FT_INJECT_DIE_AFTER_BEGIN,
	FT_INJECT_DIE_MID_PAGES,
	FT_INJECT_DIE_BEFORE_COMMIT,
	FT_INJECT_DIE_AFTER_COMMIT,
	FT_INJECT_CORRUPT_PAGES,
	FT_INJECT_TRUNCATE_PAGES,
	FT_INJECT_HELLO_VERSION,	/* announce FT_PROTO_VERSION + 1 */
	FT_INJECT_HANDOVER_NO_OK,	/* secondary: take over without sending HANDOVER_OK */
	FT_INJECT_CUT_AFTER_COMMIT,	/* primary: cut the link once COMMIT is sent */
	FT_INJECT_REPEAT_PAGE,		/* primary: send a checkpoint's first page twice */
	FT_INJECT_SLOW_CAPTURE,		/* primary: the next capture keeps the guest paused 3 heartbeat timeouts */
	FT_INJECT_SLOW_COMMIT,		/* secondary: the next commit takes 3 heartbeat timeouts before its ACK */
	FT_INJECT_STALL_RECEIVE,	/* secondary: stop reading the link for good; its heartbeats go on */
};

/* The states, their names and meanings: ft_states.h (one table). */
#define FT_STATE_ENUM(e, name, role, what) e,
enum ft_state { FT_STATES(FT_STATE_ENUM) };
#undef FT_STATE_ENUM
const char *ft_state__name(enum ft_state s);

struct ft_samples {
	uint64_t v[FT_STAT_RING];
	uint64_t n;
	uint64_t max;
	uint64_t last;
};
void ft_samples__add(struct ft_samples *s, uint64_t v);
/* p in 0..100 over the samples kept; 0 if none. */
uint64_t ft_samples__pct(const struct ft_samples *s, double p);

/*
 * The rule for fields threads share. The role thread (ft-primary or
 * ft-secondary; the monitor thread for a failover by `cont`) writes a
 * shared field under lock; the monitor and other threads read it under
 * lock; the role thread may read its own fields without it. Notes beside
 * each field name the writer ("W:") and the readers ("R:") where that is
 * not the rule: set before any thread runs, atomic, or one thread only.
 * tests/tsan/run.sh checks it.
 */

/* The primary's side: the ft-primary thread's, shown by `info migrate`. */
struct ft_primary {
	bool trigger;			/* an output was held. W: vCPU threads (the event tap's trigger) */
	bool held_full;			/* held bytes passed held_bound: checkpoint now. W: as trigger */
	uint64_t held_bound;		/* FT_HELD_BOUND; W: monitor (held-output-limit) */
	uint32_t outputs_chunk;		/* FT_OUTPUTS_CHUNK; W: monitor (x-outputs-chunk, tests) */
	uint64_t forced_checkpoints;	/* checkpoints the held-output bound forced */
	uint64_t pipelined;		/* checkpoints sent while the one before was still in flight */
	uint64_t first_trigger_ns;	/* hybrid: first held output since last checkpoint. W: as trigger */
	/* Event policy: a held frame makes the next checkpoint due at once, so
	 * the trigger itself pauses the guest (vm__pause_request): the vCPU
	 * that sent the frame parks as its exit completes, without running on
	 * to idle and being signalled out again. The checkpoint takes over
	 * that pause. prepause_ok: the role thread waits for a trigger (not
	 * while a checkpoint is sent, acknowledged, released: the guest runs on
	 * then, and its output goes with the next checkpoint).
	 * W: the trigger (prepaused), ft-primary (both, and it drops a pause it
	 * did not take over); all under lock. */
	bool prepause_ok, prepaused;
	bool prepause_first;	/* that pause took the VM's first level (pause_us may count from it) */
	uint64_t epoch;			/* last checkpoint sent */
	uint64_t acked_epoch;		/* last checkpoint the secondary committed */
	unsigned sync_percent;
	uint64_t sync_ram_pages, sync_disk_blocks, sync_rounds;
	unsigned sync_throttle;		/* the highest throttle the sync used, % */
	/* The sync's progress: bytes to look at (the image's data extents, the
	 * RAM the host backs, and each round's dirty pages), bytes looked at,
	 * and what was skipped without a read (RAM pages never backed, the
	 * image's holes). */
	uint64_t sync_start_ns, sync_total_bytes, sync_done_bytes;
	uint64_t sync_ram_unread, sync_disk_unread;
	struct ft_samples pause_us, ckpt_bytes, ckpt_ship_us;
	/* One checkpoint's steps, in order (info migrate's "steps_us"): the
	 * frame held -> the pause begins (wake), the guest resumed -> COMMIT
	 * sent (send), COMMIT sent -> ACK read (ack), and of that the
	 * secondary's share as its ACK reports it (peer_receive, peer_commit),
	 * then ACK -> released (release). */
	struct ft_samples wake_us, send_us, ack_us, peer_receive_us, peer_commit_us, release_us;
	uint64_t bytes_raw, bytes_wire;	/* pages before/after compression */
	uint32_t delta_cache_mib;	/* FT_DELTA_CACHE_MIB; W: monitor (delta-cache-mib); R: ft-primary
					 * under lock, at the start of a protection run */
	uint64_t async_releases;	/* releases left to the flusher. W: ft-primary; R: monitor; under lock */
	/* shared storage: when the release's flush goes to the event tap's
	 * flusher (async-release): FT_ASYNC_OFF (default), FT_ASYNC_DUE (when
	 * the next checkpoint is already due), FT_ASYNC_ALWAYS. W: monitor;
	 * R: ft-primary at each release; atomic. */
	_Atomic int async_release;
	uint32_t hot_pages;	/* FT_HOT_PAGES; W: monitor (hot-pages) under lock; R: ft-primary
				 * under lock at each checkpoint, which hands it to the VM */
	struct ft_page_counts pages_sent;	/* checkpoint pages by how they were sent */
	uint64_t sync_ms;
	atomic_bool handover_req;	/* proactive failover requested. W: monitor; R: ft-primary */
	atomic_bool cancel_req;		/* migrate_cancel: end protection with a CANCEL handshake. W: monitor */
	int handover_result;		/* 0 done, <0 failed; valid once handover_done */
	bool handover_done;		/* W: ft-primary; R: the monitor waiting on cond */
	uint64_t handover_us;
	char event_hook[512];		/* run on peer loss before held output is released ("": none). W: monitor */
	uint32_t hook_timeout_ms;	/* W: monitor */
	uint64_t revoke_ms;		/* last peer-lost hook: loss -> release */
	bool quitting;			/* the VMM is ending: held output is never released. W: ft__destroy */
	bool commit_sent;		/* a COMMIT went out in this run: the secondary may hold a checkpoint */
	atomic_bool cancel_cut;		/* migrate_cancel shut the link: the CANCEL handshake had its
					 * time and the thread was still on the link. W: monitor (ft__cancel) */
	atomic_bool event_busy;		/* an ft__report_event hook runs. W: ft-event */
};

/* The secondary's side: the ft-secondary thread's, and failover's. */
struct ft_secondary {
	bool rearmed;			/* migrate_incoming_reset: the next primary may replace the checkpoint. W: monitor */
	char unusable[256];		/* why this secondary cannot fail over ("": it can) */
	uint64_t stray_connections;	/* connections refused before a HELLO passed */
	char last_stray[256];
	uint64_t committed_epoch;	/* the checkpoint to fail over to (0: none) */
	uint64_t committed_ns;		/* local CLOCK_MONOTONIC when it was committed */
	uint64_t discarded_epochs;
	uint64_t last_discarded;
	struct sbuf committed_state;	/* STATE of the last committed checkpoint */
	struct sbuf committed_outputs;	/* OUTPUTS of the last committed checkpoint */
	/* Failover's figures. W: the thread that fails over (ft-secondary, or
	 * the monitor's `cont`), under lock. */
	uint64_t failover_ms;		/* peer loss/cont -> guest running */
	uint32_t reissued_frames, reissued_writes;
	char clock_method[16];		/* how guest time was set at failover */
	int64_t clock_elapsed_ns, clock_step_ns, clock_skew_ns;
};

/* The link's heartbeat thread (link.c). Started and stopped by the role
 * thread, which alone touches running; x and heartbeat_ms are set before
 * the thread starts; stop is read and written under lock. */
struct ft_link {
	pthread_t thread;
	bool running;
	struct xport *x;
	uint32_t heartbeat_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

struct ft {
	/* Set before any thread runs, but for compress, heartbeat_ms and
	 * heartbeat_timeout_ms, which the monitor writes under lock
	 * (migrate_set_parameter) and a role thread reads as it goes. */
	struct ft_config cfg;

	/* lock protects every field of ft, pri and sec that is not atomic
	 * (the rule above); cond signals triggers, state changes, thread
	 * exits and the end of a handover. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum ft_state state;		/* W: ft__set_state/ft__move (role_state.c) only */
	bool primary_role;		/* this process runs the guest. W: ft__create, ft__listen, failover */
	char peer[128];
	char last_error[256];
	pthread_t thread;
	bool thread_running;
	atomic_bool stop;		/* end the role thread now (revocation abandoned too) */
	struct xport *x;		/* the link. W: the role thread; R: the monitor, under lock */
	struct xport_listener *listener;
	char uri[256];
	int wake_fd;			/* eventfd: an output was held, or stop. Set before threads run */
	int audit_fd;			/* --audit-log (audit.c), -1: off; set before any thread runs */
	_Atomic enum ft_inject inject;	/* x-inject (tests). W: monitor; R: role threads */
	uint64_t session;		/* this protection run (primary: drawn at migrate; secondary: from HELLO) */
	/* Where the monitor's events go (NULL: nowhere). W: ft__register_monitor,
	 * before any thread runs, and ft__unregister_monitor, under lock, before
	 * the monitor goes; R: under lock (ft__event_*_locked). */
	struct monitor *mon;
	/* After a failover, the MAC is announced again at growing intervals
	 * (ft_announce__start): the old primary's last released frames may
	 * reach a bridge after the first RARPs and teach it the old port.
	 * W: the failover's caller (start), ft__destroy (stop, join). */
	pthread_t announce_thread;
	bool announce_running;
	atomic_bool announce_stop;
	/* Both roles count checkpoints: the primary those the secondary
	 * acknowledged, the secondary those it committed. */
	uint64_t epochs;
	uint64_t acked_capture_ns;
	struct ft_samples ckpt_pages;

	struct ft_primary pri;
	struct ft_secondary sec;
	struct ft_link link;		/* the role thread's */
};

int ft_primary__run(struct ft *ft);	/* the primary thread's body */
/* False (err says why) once this primary stopped its guest for good. */
bool ft__may_run_guest(struct ft *ft, char *err);
int ft_secondary__run(struct ft *ft);	/* the secondary thread's body */
/*
 * The state machine (role_state.c): set_state moves to s if the table
 * allows it from the current state, move only from `from` (-EAGAIN if the
 * state is another); a transition the table does not have is refused
 * (-EPERM) and logged.
 */
int ft__set_state(struct ft *ft, enum ft_state s);
int ft__move(struct ft *ft, enum ft_state from, enum ft_state to);
bool ft_state__allowed(enum ft_state from, enum ft_state to);
void ft__error(struct ft *ft, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * A monitor event about this ft (docs/monitor.md, "Events"), with ft->lock
 * held: _begin fills role, state, session, epoch and peer (NULL when out
 * of memory or no monitor), the caller adds its members, _end sends it.
 */
struct mon_reply *ft__event_begin_locked(struct ft *ft);
/* The event hook's exit status for "the lost secondary took over". */
#define FT_HOOK_EXIT_SUPERSEDED 3
void ft__event_end_locked(struct ft *ft, const char *name, struct mon_reply *r);
uint64_t ft__now_ns(void);
/* Performs the failover (secondary thread or monitor). */
int ft__do_failover(struct ft *ft, const char *why, char *err);
/* Secondary: forget the committed checkpoint; the next primary that passes
 * HELLO is accepted (the agent's re-arm, migrate_incoming_reset). */
int ft__incoming_reset(struct ft *ft, char *err);
/* Secondary: drops every frame waiting on the guest's NIC backend; returns how many. */
unsigned ft__drain_rx(struct ft *ft);
/* Sends a RARP for mac from the guest's NIC (gratuitous announcement). */
int ft_announce__rarp(struct eventtap *et, const uint8_t mac[6]);
/* More RARPs after a failover, at +50, +150, +350, +750, +1550 ms (as
 * QEMU's announce rounds); ft_announce__stop ends and joins them. */
void ft_announce__start(struct ft *ft);
void ft_announce__stop(struct ft *ft);
/*
 * Runs the event hook (`sh -c HOOK`) with FTVM_EVENT=event and the ft's
 * identity in the environment, waits for it (timeout ft->hook_timeout_ms;
 * gives up early with -ECANCELED once ft->stop is set). 0 when it exited 0;
 * else a negative errno and why says what happened.
 */
int ft_hook__run(struct ft *ft, const char *event, const char *detail, char *why, size_t len);
/*
 * The link's liveness (link.c): start runs the heartbeat thread on ft->x
 * (a HEARTBEAT whenever nothing was sent for heartbeat_ms); stop shuts the
 * link down and joins it (the link is about to be closed). peer_silent is
 * true (err says so) once nothing came from the peer for
 * heartbeat_timeout_ms.
 */
int ft_link__start(struct ft *ft);
void ft_link__stop(struct ft *ft);
bool ft_link__peer_silent(struct ft *ft, char *err, size_t errlen);
/* The audit log (audit.c): one line per protocol step; no-op when off. */
int ft_audit__open(struct ft *ft, const char *path, char *err);
void ft_audit(struct ft *ft, const char *event, uint64_t epoch, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * The heartbeat settings: written by the monitor (migrate_set_parameter,
 * under ft->lock) while the role and link threads run, so everyone reads
 * them through these.
 */
static inline uint32_t ft__hb_ms(struct ft *ft)
{
	return __atomic_load_n(&ft->cfg.heartbeat_ms, __ATOMIC_RELAXED);
}

static inline uint32_t ft__hb_timeout_ms(struct ft *ft)
{
	return __atomic_load_n(&ft->cfg.heartbeat_timeout_ms, __ATOMIC_RELAXED);
}

/* HOST of "HOST:PORT" / "[V6]:PORT" (wire.c): the name a peer's
 * certificate must carry. */
void ft__host_of(const char *hostport, char *host, size_t len);

#endif
