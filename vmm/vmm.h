/*
 * vmm.h - the public contract of ftvm's virtual machine monitor.
 *
 * Everything outside vmm/ (the ftvm command line, eventtap/, ft/, tests)
 * talks to the VMM through this header only.
 *
 * Conventions: functions return 0 (or a count) on success and a negative
 * errno on failure; where a readable reason matters they also take an
 * `err` buffer that receives one line naming the problem.
 */
#ifndef FTVM_VMM_H
#define FTVM_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "vmm/state/state.h"

#define VMM_MAX_VCPUS 8
#define VMM_PAGE_SIZE 4096u
#define VMM_ERR_LEN 256

/* ---- host backends: the seam the event tap wraps ---------------------- */

/*
 * A block backend. Every call is synchronous and returns 0 or -errno.
 * `offset` is in bytes; writes are not durable until flush() returns 0.
 */
struct disk_ops {
	int (*read)(void *be, uint64_t offset, const struct iovec *iov, int iovcnt);
	int (*write)(void *be, uint64_t offset, const struct iovec *iov, int iovcnt);
	int (*flush)(void *be);
	/* Optional: make [offset, offset+len) read as zeros. */
	int (*discard)(void *be, uint64_t offset, uint64_t len);
	/*
	 * Optional: allocate [offset, offset+len) without changing what it
	 * reads as, so a later write there cannot fail for want of space
	 * (-ENOSPC now instead). 0 where the medium cannot tell.
	 */
	int (*reserve)(void *be, uint64_t offset, uint64_t len);
	/*
	 * Optional: the first extent at or after offset that may hold data,
	 * [*start, *end); -ENXIO when only holes follow. Everything outside
	 * such extents reads as zeros (a sparse image's holes). Without it,
	 * the whole disk may hold data.
	 */
	int (*seek_data)(void *be, uint64_t offset, uint64_t *start, uint64_t *end);
};

struct disk {
	const struct disk_ops *ops;
	void *be;
	uint64_t size;		/* bytes */
	char serial[21];	/* answered to VIRTIO_BLK_T_GET_ID */
};

/*
 * A network backend: tx() sends one whole Ethernet frame (no virtio
 * header); rx() copies one frame into buf and returns its length, or
 * -EAGAIN when none is waiting; rx_fd() is a descriptor that polls
 * readable when rx() would not return -EAGAIN.
 */
struct net_ops {
	int (*tx)(void *be, const struct iovec *iov, int iovcnt);
	ssize_t (*rx)(void *be, void *buf, size_t len);
	int (*rx_fd)(void *be);
};

struct net {
	const struct net_ops *ops;
	void *be;
};

/* Raw image file backend (vmm/backend/disk_raw.c). */
int disk_raw__open(struct disk *d, const char *path, bool readonly, char *err);
void disk_raw__close(struct disk *d);
/*
 * Called (from the writing thread) when a write or flush fails fatally
 * (EIO, ENXIO, ENODEV); what names the operation and error. Set before the
 * VM runs.
 */
typedef void (*disk_fatal_fn)(void *opaque, const char *what);
void disk_raw__on_fatal_error(struct disk *d, disk_fatal_fn fn, void *opaque);
/* Test only: the next count writes/flushes fail with -err (as the medium would). */
int disk_raw__inject_error(struct disk *d, int err, unsigned count);
/* Test only: the next count flushes fail with -err; writes succeed. */
int disk_raw__inject_flush_error(struct disk *d, int err, unsigned count);

/* Tap backend (vmm/backend/net_tap.c): attaches to an existing or new tap. */
int net_tap__open(struct net *n, const char *ifname, char *err);
void net_tap__close(struct net *n);

/* ---- the VM ----------------------------------------------------------- */

enum vm_drive_mode { VM_DRIVE_SHARED = 0, VM_DRIVE_REPLICATED = 1 };

struct vm;

/*
 * Called from a vCPU thread when the guest writes the test-sync port; the
 * vCPU waits until it returns. Tests use it to inspect a guest at a known
 * point (see tests/vmm). Return 0 to continue, negative to stop the VM.
 */
typedef int (*vm_test_hook_fn)(struct vm *vm, unsigned vcpu, uint32_t value, void *opaque);

/* How dirty pages are collected from KVM (vmm/kvm/dirty_log.c). */
enum vm_dirty_mode { VM_DIRTY_AUTO, VM_DIRTY_RING, VM_DIRTY_CLEAR, VM_DIRTY_BITMAP, VM_DIRTY_MODES };

static inline const char *vm__dirty_mode_name(enum vm_dirty_mode m)
{
	static const char *const names[VM_DIRTY_MODES] = { "auto", "ring", "clear", "bitmap" };
	return m < VM_DIRTY_MODES ? names[m] : "?";
}

/* Parses "auto", "ring", "clear", "bitmap"; -1 otherwise. */
static inline int vm__parse_dirty_mode(const char *s, enum vm_dirty_mode *out)
{
	for (int m = 0; m < VM_DIRTY_MODES; m++)
		if (strcmp(s, vm__dirty_mode_name((enum vm_dirty_mode)m)) == 0) {
			*out = (enum vm_dirty_mode)m;
			return 0;
		}
	return -1;
}

struct vm_config {
	const char *name;
	uint64_t mem_size;		/* bytes, multiple of 2 MiB */
	unsigned nr_vcpus;		/* 1..VMM_MAX_VCPUS */
	const char *kernel;		/* PVH ELF */
	const char *cmdline;
	struct disk *disk;		/* NULL: no virtio-blk */
	enum vm_drive_mode drive_mode;
	struct net *net;		/* NULL: no virtio-net */
	uint8_t mac[6];
	int serial_fd;			/* guest console output; -1 discards */
	bool dirty_log;			/* track dirty pages from the start */
	enum vm_dirty_mode dirty_mode;	/* how (auto: the best this KVM offers) */
	uint32_t x_dirty_ring_bytes;	/* test only: a smaller ring (0: up to 1 MiB) */
	vm_test_hook_fn test_hook;
	void *test_hook_opaque;
	/* Test only: offer the guest no TSC-rate leaf (0x40000010) / no kvmclock. */
	bool x_no_tsc_leaf, x_no_kvmclock;
	/* Test only: announce (HELLO, snapshots) another CPU vendor, or
	 * x_cpuid_value in model word x_cpuid_word - 1 (0: none). */
	const char *x_cpu_vendor;
	unsigned x_cpuid_word;
	uint32_t x_cpuid_value;
};

enum vm_run_state { VM_STATE_RUNNING, VM_STATE_PAUSED, VM_STATE_SHUTDOWN };

/* Creates the VM and loads the kernel; vCPUs do not run until vm__start(). */
int vm__create(const struct vm_config *cfg, struct vm **out, char *err);
/* Like vm__create but takes memory, vCPU and device state from a snapshot. */
int vm__create_from_snapshot(const struct vm_config *cfg, const char *path,
			     struct vm **out, char *err);
void vm__destroy(struct vm *vm);

int vm__start(struct vm *vm);
/* Blocks until the guest shuts down or vm__request_quit(); returns the exit code. */
int vm__wait(struct vm *vm);
void vm__request_quit(struct vm *vm, int code);
/* True once the VM is ending (quit, a signal, the guest's exit): from any thread. */
bool vm__quit_requested(struct vm *vm);

/*
 * The user's stop/cont (the monitor): pauses every vCPU at a completed exit
 * and stops RX delivery; vm__resume() also starts a VM never started.
 */
int vm__pause(struct vm *vm);
int vm__resume(struct vm *vm);
/*
 * Internal pauses (checkpoint capture, savevm) nest with the user's: the
 * VM runs again only when every level is released; the state the monitor
 * reports does not change.
 */
int vm__pause_internal(struct vm *vm);
void vm__resume_internal(struct vm *vm);
/*
 * The same pause, in two steps: vm__pause_stopped returns once every vCPU
 * has stopped at a completed exit (no guest code runs, guest memory holds
 * still: the dirty log may be collected and pages copied) while a vCPU
 * under protection may still be saving its own state;
 * vm__pause_wait_parked then waits for that (before the state is saved
 * into a checkpoint). Released with vm__resume_internal.
 */
int vm__pause_stopped(struct vm *vm);	/* 1: it took the first level (no other pause held) */
void vm__pause_wait_parked(struct vm *vm);
/*
 * An internal pause that does not wait: the vCPUs park as soon as they can
 * (a vCPU thread asking from an exit handler parks as that exit completes,
 * with no signal), and a later vm__pause_internal finds them parked. Each
 * request is released with vm__resume_internal. -ESHUTDOWN.
 */
int vm__pause_request(struct vm *vm);	/* 1: it took the first level */
/*
 * While paused (after vm__pause_stopped returned): when the guest began to
 * stand still (CLOCK_MONOTONIC ns): the first vCPU's stop, each vCPU's
 * being the later of its last exit and the request that took the first
 * pause level. A vCPU the kick took a while to reach ran guest code until
 * then; one that asked for the pause itself (from its exit handler)
 * stopped at that exit. Meaningful only for a pause that took the first
 * level (another, e.g. the user's `stop`, began earlier). 0 if not paused.
 */
uint64_t vm__paused_since_ns(struct vm *vm);
enum vm_run_state vm__run_state(struct vm *vm);
const char *vm__run_state_name(enum vm_run_state s);
const char *vm__name(struct vm *vm);
unsigned vm__nr_vcpus(struct vm *vm);
uint64_t vm__mem_size(struct vm *vm);

/* Writes the complete VM state to `path` (VM paused meanwhile). */
/* overwrite: replace an existing PATH (else -EEXIST). */
int vm__save(struct vm *vm, const char *path, bool overwrite, uint64_t *bytes, uint64_t *pause_us,
	     char *err);

/*
 * vCPU, platform and device state (everything but RAM) as a verified
 * snapshot in memory: what each checkpoint ships. Save needs the VM paused
 * (vm__pause_internal). Check verifies and decodes without applying; load
 * checks everything first, then applies.
 */
/*
 * Guest RAM is shared with the guest and with the device threads. A
 * reader that reads it while they run, knowing dirty tracking covers what
 * changes (the initial sync), brackets those reads so ThreadSanitizer does
 * not take them for races; no-ops in other builds.
 */
void vm__racy_reads_begin(void);
void vm__racy_reads_end(void);

/* True if guest page p (index, as vm__page_gpa) holds only zeros. */
bool vm__page_is_zero(struct vm *vm, uint64_t p);
/*
 * Sets in bitmap (vm__nr_pages bits, zeroed by the caller) the pages that
 * may hold data: those the host has backed since the RAM was mapped or
 * last zeroed (present or swapped out). The others read as zeros without
 * being read. Returns how many it set, or a negative errno.
 */
int64_t vm__populated_pages(struct vm *vm, uint64_t *bitmap);

int vm__save_state(struct vm *vm, struct sbuf *out, char *err);
/* The same, for a caller that holds vm__devices_lock (a checkpoint capture
 * reads dirty pages and device state as one snapshot). */
int vm__save_state_locked(struct vm *vm, struct sbuf *out, char *err);
int vm__check_state(struct vm *vm, const void *blob, size_t len, char *err);
int vm__load_state(struct vm *vm, const void *blob, size_t len, char *err);
bool vm__is_started(struct vm *vm);
/*
 * The VM's devices' lock. Device emulation outside the vCPUs (virtio-net RX
 * in the I/O thread) writes guest memory and device state under it; a
 * capture that holds it from collecting the dirty log through saving the
 * device state gets memory and devices as of one instant.
 */
void vm__devices_lock(struct vm *vm);
void vm__devices_unlock(struct vm *vm);
uint32_t vm__tsc_khz(struct vm *vm);

/* ---- the CPU the guest sees (vmm/kvm/cpuid.c) --------------------------- */

/*
 * What a running guest may depend on: the vendor and the feature words of
 * the CPUID table ftvm gives it. A guest moves (checkpoint, snapshot) only
 * between hosts whose models are equal.
 */
#define VM_CPU_WORDS 14
struct vm_cpu_model {
	char vendor[12];		/* CPUID.0 EBX EDX ECX, not NUL-terminated */
	uint32_t word[VM_CPU_WORDS];	/* see cpuid.c: leaf 1, 7, 0xd, 0x8000000x, 0x40000001 */
};
void vm__cpu_model(struct vm *vm, struct vm_cpu_model *out);
/*
 * 0 if peer equals mine; else -EPROTO and err names the first difference
 * with both values ("CPU vendor differs: snapshot AuthenticAMD, this host
 * GenuineIntel"). The names say whose model is whose.
 */
int vm_cpu_model__check(const struct vm_cpu_model *mine, const char *mine_name,
			const struct vm_cpu_model *peer, const char *peer_name, char *err,
			size_t errlen);
/* "0x7.0.ebx" -> the word's index; -ENOENT if that word is not compared. */
int vm_cpu_model__parse_word(const char *s, unsigned *word);
void vm_cpu_model__word_name(unsigned i, char *buf, size_t len);

/* ---- guest time: what the clock module builds its policy on ----------- */

struct vm_clock {
	uint64_t realtime_ns;		/* host CLOCK_REALTIME when read */
	uint64_t kvmclock_ns;		/* KVM_GET_CLOCK */
	uint32_t tsc_khz;
	uint32_t nr_vcpus;
	uint64_t tsc[VMM_MAX_VCPUS];	/* each vCPU's guest TSC (MSR_IA32_TSC) */
};

/* Reads the clock record (VM paused for a consistent one). */
int vm__clock_read(struct vm *vm, struct vm_clock *c);
/* The record a state blob (vm__save_state) or a snapshot file carries. */
int vm__state_clock(const void *blob, size_t len, struct vm_clock *c, char *err);
int vm__snapshot_clock(const char *path, struct vm_clock *c, char *err);
int vm__set_kvmclock(struct vm *vm, uint64_t ns);
int vm__get_tsc(struct vm *vm, unsigned idx, uint64_t *tsc);
/* KVM_VCPU_TSC_OFFSET (guest TSC = host TSC + offset), where KVM has it. */
int vm__get_tsc_offset(struct vm *vm, unsigned idx, int64_t *offset);
int vm__set_tsc_offset(struct vm *vm, unsigned idx, int64_t offset);
/* A host-initiated write of MSR_IA32_TSC. */
int vm__set_tsc_msr(struct vm *vm, unsigned idx, uint64_t tsc);

/* ---- guest memory and dirty tracking ---------------------------------- */

/* Host pointer for [gpa, gpa+len) if it lies inside guest RAM, else NULL. */
void *vm__guest_ptr(struct vm *vm, uint64_t gpa, size_t len);
/* Guest RAM is addressed as a flat array of pages: page n <-> gpa. */
uint64_t vm__nr_pages(struct vm *vm);
uint64_t vm__page_gpa(struct vm *vm, uint64_t page);

/*
 * ORs into `bitmap` (vm__nr_pages bits) every page written since the last
 * call, by the guest (KVM dirty log) or by the VMM's own device emulation,
 * and starts a new tracking round. Requires cfg.dirty_log or
 * vm__dirty_log_enable().
 */
int vm__dirty_log_collect(struct vm *vm, uint64_t *bitmap);
int vm__dirty_log_enable(struct vm *vm, bool on);

/* A growing list of page numbers (grows by realloc; reset nr to reuse). */
struct vm_page_list {
	uint64_t *pages;
	size_t nr, cap;
};
int vm_page_list__add(struct vm_page_list *l, uint64_t page);	/* 0 or -ENOMEM */
/* seen: the pages already taken (vm__nr_pages bits); list: where new ones
 * are appended (NULL: only seen is updated). */
struct vm_dirty_pages {
	uint64_t *seen;
	struct vm_page_list *list;
};
/*
 * Like vm__dirty_log_collect, but appends each page not yet in `seen` to
 * `list` and sets it in `seen`. Its cost follows the dirty pages (ring
 * mode), not the RAM size; the caller clears `seen` by walking the list.
 */
int vm__dirty_log_collect_list(struct vm *vm, uint64_t *seen, struct vm_page_list *list);
/* The mode in use ("ring", "clear", "bitmap") and KVM_EXIT_DIRTY_RING_FULL
 * exits so far. */
const char *vm__dirty_mode(struct vm *vm);
uint64_t vm__dirty_ring_full_exits(struct vm *vm);
/*
 * clear mode only (a no-op otherwise): up to max pages that the guest
 * writes round after round stay writable and are reported dirty every
 * round, so its writes to them take no write-protect fault; 0 turns it
 * off. Any thread. vm__dirty_hot_pages: how many were hot in the last
 * round.
 */
void vm__dirty_log_set_hot(struct vm *vm, uint32_t max);
uint32_t vm__dirty_hot_pages(struct vm *vm);

/* All guest RAM reads as zero again (a secondary before its first sync). */
int vm__zero_ram(struct vm *vm);

/*
 * Auto-converge: park the vCPUs for pct % (0..99) of the time, so the
 * guest dirties pages more slowly; 0 lets it run freely again.
 */
int vm__set_throttle(struct vm *vm, unsigned pct);
unsigned vm__throttle(struct vm *vm);

/* ---- vCPU inspection --------------------------------------------------- */

struct vm_vcpu_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags, cr0, cr3, cr4, efer;
	uint16_t cs, ss;
};
/* Only while paused. */
int vm__vcpu_regs(struct vm *vm, unsigned idx, struct vm_vcpu_regs *out);

/* ---- the monitor (vmm/monitor/) --------------------------------------- */

struct monitor;

/*
 * A reply is built once and rendered both as text (for people) and as one
 * JSON object (for tools): mon_reply__str(r, "status", "running") becomes
 * "status: running" and {"return":{"status":"running"}}.
 */
struct mon_reply;

enum mon_error_class {
	MON_ERR_COMMAND_NOT_FOUND,
	MON_ERR_INVALID_PARAMETER,
	MON_ERR_INVALID_STATE,
	MON_ERR_IO,
	MON_ERR_INTERNAL,
};

void mon_reply__str(struct mon_reply *r, const char *key, const char *value);
void mon_reply__u64(struct mon_reply *r, const char *key, uint64_t value);
void mon_reply__i64(struct mon_reply *r, const char *key, int64_t value);
void mon_reply__hex(struct mon_reply *r, const char *key, uint64_t value);
void mon_reply__double(struct mon_reply *r, const char *key, double value);
void mon_reply__bool(struct mon_reply *r, const char *key, bool value);
void mon_reply__array_begin(struct mon_reply *r, const char *key);
void mon_reply__array_end(struct mon_reply *r);
void mon_reply__object_begin(struct mon_reply *r, const char *key); /* key NULL in arrays */
void mon_reply__object_end(struct mon_reply *r);
void mon_reply__array_str(struct mon_reply *r, const char *value);
/* Sets the reply to an error; everything else added is discarded. */
void mon_reply__error(struct mon_reply *r, enum mon_error_class cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* argv[0] is the first word after the command name. */
typedef void (*mon_cmd_fn)(struct mon_reply *r, int argc, char **argv, void *opaque);

/* spec: "unix:PATH" or "stdio". Commands for the VM are registered here. */
int monitor__create(struct vm *vm, const char *spec, struct monitor **out, char *err);
/* name may have several words ("info status"); the longest match wins. */
/* The test-only commands of the VMM (x-ram-crc): only under --test-mode. */
void monitor__add_test_commands(struct monitor *m);
int monitor__add_command(struct monitor *m, const char *name, const char *args,
			 const char *help, mon_cmd_fn fn, void *opaque);
int monitor__start(struct monitor *m);
void monitor__destroy(struct monitor *m);

/*
 * Asynchronous events (docs/monitor.md, "Events"), in the spirit of QMP's
 * MIGRATION/STOP/RESUME: one line
 *   {"event":NAME,"data":{...},"timestamp":{"seconds":S,"microseconds":U}}
 * to every JSON-mode client that sent `events`. Any thread may call it,
 * with its own locks held (the monitor never takes another module's lock
 * while it holds its queue's): the line is queued and the monitor thread
 * writes it. The queue is bounded; when it is full the oldest line goes and
 * `events` counts it as dropped. data: members set with the mon_reply__
 * setters on a reply from mon_reply__new (NULL: none). m NULL: nothing.
 */
struct mon_reply *mon_reply__new(void);
void mon_reply__delete(struct mon_reply *r);
void monitor__event(struct monitor *m, const char *name, struct mon_reply *data);

#endif
