/*
 * vm_internal.h - what the files inside vmm/ share. Nothing outside vmm/
 * includes this; they use vmm.h.
 */
#ifndef FTVM_VM_INTERNAL_H
#define FTVM_VM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "vmm/vmm.h"

/* CLOCK_MONOTONIC in ns: the clock of the pause's and the vCPUs' stop times. */
static inline uint64_t vm__now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#define KVM_MAX_SLOTS 2
#define VM_LOW_MEM_END 0xC0000000ull	/* RAM below the 32-bit MMIO hole */
#define VM_HIGH_MEM_BASE 0x100000000ull

/* Fixed guest-physical layout (docs/guest-abi.md). */
#define VIRTIO_MMIO_BASE 0xfeb00000ull
#define VIRTIO_MMIO_SIZE 0x200ull
#define VIRTIO_MMIO_SLOTS 24
#define PVH_START_INFO_GPA 0x6000ull

/* Paravirtual ports. */
#define PORT_EXIT 0x00f4
#define PORT_IDLE 0x0f00
#define PORT_TEST_SYNC 0x0f04
#define PORT_COM1 0x03f8

/* ---- guest memory --------------------------------------------------------- */

struct mem_slot {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	uint64_t first_page;	/* index of this slot's first page in the flat page space */
};

/*
 * A set of pages that any thread may add to and one thread drains: a bit
 * a page, and a summary bit for each word of 64 pages, so a drain costs
 * what was set, not the RAM size.
 */
struct page_set {
	_Atomic uint64_t *words;
	_Atomic uint64_t *sum;
	uint64_t nr_words;
};

int page_set__init(struct page_set *s, uint64_t nr_pages);
void page_set__free(struct page_set *s);
void page_set__add(struct page_set *s, uint64_t page);
void page_set__clear(struct page_set *s);

/* One vCPU's dirty ring (KVM_CAP_DIRTY_LOG_RING), mapped from its fd. */
struct dirty_ring {
	struct kvm_dirty_gfn *gfns;	/* NULL unless the mode is ring */
	uint32_t nr;			/* entries, a power of two */
	int fd;
	/* Next entry to harvest. Written by whoever holds lock: the
	 * collector (the checkpoint or sync thread) or the vCPU's own thread
	 * on KVM_EXIT_DIRTY_RING_FULL. */
	uint32_t fetch;
	pthread_mutex_t lock;
};

struct guest_mem {
	struct mem_slot slots[KVM_MAX_SLOTS];
	unsigned nr_slots;
	uint64_t nr_pages;
	bool dirty_log;
	/* Set once at creation (dirty_log.c). */
	enum vm_dirty_mode dirty_mode;
	uint32_t ring_bytes;
	unsigned nr_rings;
	struct dirty_ring rings[VMM_MAX_VCPUS];
	/* bitmap and clear modes: KVM_GET_DIRTY_LOG's buffer for each slot;
	 * only the collecting thread uses them (under the devices lock or
	 * with the VM's sync serialised by ft). */
	uint64_t *slot_log[KVM_MAX_SLOTS];
	/*
	 * clear mode's hot pages (dirty_log.c, clear_all_but_hot): per slot,
	 * the pages left writable (hot), those dirty in the last round (prev),
	 * and the scratch mask handed to KVM_CLEAR_DIRTY_LOG. Same rule as
	 * slot_log: the collecting thread only. hot_max is written by
	 * vm__dirty_log_set_hot (the ft primary thread) and read once per
	 * collection by the collector, both atomically; hot_now is written by
	 * the collector and read by the monitor, atomically.
	 */
	uint64_t *slot_hot[KVM_MAX_SLOTS], *slot_prev[KVM_MAX_SLOTS], *slot_clear[KVM_MAX_SLOTS];
	_Atomic uint32_t hot_max;
	_Atomic uint32_t hot_now;
	uint32_t hot_rounds;
	/* Ring entries moved out by a vCPU thread whose ring filled. */
	struct page_set spill;
	/* Counts KVM_EXIT_DIRTY_RING_FULL; written by vCPU threads
	 * (atomically), read by the monitor. */
	_Atomic uint64_t ring_full_exits;
	/*
	 * Pages the VMM itself wrote (device DMA: RX frames, disk reads, used
	 * rings). KVM's dirty log only sees guest stores, so device writes
	 * are recorded here, atomically, from any thread.
	 */
	struct page_set vmm_dirty;
};

int mem__init(struct guest_mem *m, int vm_fd, const struct vm_config *cfg, char *err);
void mem__free(struct guest_mem *m);
void *mem__ptr(struct guest_mem *m, uint64_t gpa, size_t len);
void mem__mark_dirty(struct guest_mem *m, uint64_t gpa, size_t len);
int mem__set_dirty_log(struct guest_mem *m, int vm_fd, bool on);
int mem__zero(struct guest_mem *m);

/* dirty_log.c */
int dirty_log__setup(struct guest_mem *m, int vm_fd, enum vm_dirty_mode want, uint32_t ring_bytes,
		     char *err);
int dirty_log__map_ring(struct guest_mem *m, unsigned idx, int vcpu_fd, char *err);
void dirty_log__free(struct guest_mem *m);
void dirty_log__reset_hot(struct guest_mem *m);
int dirty_log__collect(struct guest_mem *m, int vm_fd, struct vm_dirty_pages *d);
int dirty_log__ring_full(struct guest_mem *m, int vm_fd, unsigned idx);
int64_t mem__populated(struct guest_mem *m, uint64_t *bitmap);

/* ---- I/O dispatch ------------------------------------------------------------- */

struct vm;

struct io_handler {
	uint64_t base, len;
	/* data is guest byte order (little-endian), size 1/2/4/8 */
	void (*read)(void *dev, uint64_t off, void *data, unsigned size);
	void (*write)(void *dev, uint64_t off, const void *data, unsigned size);
	void *dev;
};

#define IO_MAX_HANDLERS 32

struct io_bus {
	struct io_handler h[IO_MAX_HANDLERS];
	unsigned n;
};

int io_bus__register(struct io_bus *bus, const struct io_handler *h);
const struct io_handler *io_bus__find(const struct io_bus *bus, uint64_t addr, unsigned size);

/* ---- devices ---------------------------------------------------------------------- */

struct serial;
struct virtio_mmio;
struct sbuf;

struct serial *serial__create(int out_fd);
void serial__destroy(struct serial *s);
void serial__io_read(void *dev, uint64_t off, void *data, unsigned size);
void serial__io_write(void *dev, uint64_t off, const void *data, unsigned size);
int serial__save(struct serial *s, struct sbuf *out);
int serial__load(struct serial *s, const void *data, size_t len, bool check_only, char *err);

/* ---- vCPUs ---------------------------------------------------------------------------- */

/* struct kvm_msrs with room for n entries, in standard C (its entries[]
 * is a flexible array member, which may not be a struct's inner field). */
#define KVM_MSRS_N(n)                                                                      \
	union {                                                                            \
		struct kvm_msrs hdr;                                                       \
		uint8_t bytes[sizeof(struct kvm_msrs) + (n) * sizeof(struct kvm_msr_entry)]; \
	}

struct vcpu {
	struct vm *vm;
	unsigned idx;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	uint64_t events_seen;	/* vm->events value at this vCPU's last idle return */
	/* MSRs saved with this vCPU's state: looked up once (cpu_state.c). */
	uint32_t msr_list[32];
	int nr_msr_list;	/* -1 until looked up */
	/*
	 * KVM_CAP_SYNC_REGS: the exit that parks this vCPU also leaves its
	 * regs, sregs and events in run->s.regs, so a capture needs three
	 * vCPU ioctls fewer (each costs ~3 us on a nested host). parked_regs:
	 * run->s.regs is this vCPU's state now. W: the vCPU thread (set before
	 * parked++, cleared as it leaves the park, both under run_lock),
	 * cpu_state__load (clears it; the vCPU is parked); R: cpu_state__save,
	 * while the vCPU is parked (the park's run_lock orders run->s.regs).
	 * Atomic: a vCPU that leaves its park for good (quit) clears it with
	 * no later run_lock handoff to whoever read it last. sync_regs is set
	 * at creation.
	 */
	bool sync_regs;
	atomic_bool parked_regs;
	/* Under dirty logging (protection) a parking vCPU saves its own state
	 * (cpu_state__save, on its own CPU: no vCPU migration for the
	 * capture's ioctls, and with the trigger's own pause while the ft
	 * thread is still waking); the capture takes it from here.
	 * parked_state_valid as parked_regs (W: the vCPU thread before
	 * parked++ and as it leaves; cpu_state__load clears it); the blob and
	 * TSC are written before it is set. */
	struct sbuf parked_state;
	uint64_t parked_tsc;
	atomic_bool parked_state_valid;
	/* The vCPU thread's own: the last KVM_RUN returned an exit that the
	 * next KVM_RUN must complete (exit_pending), or returned -EINTR with
	 * run->s.regs filled (run_synced): then a park needs no KVM_RUN. */
	bool exit_pending, run_synced;
	/* The vCPU thread's own: when its last KVM_RUN returned (CLOCK_MONOTONIC
	 * ns), i.e. when the guest last stopped running on it. */
	uint64_t last_exit_ns;
	/* When this vCPU stopped running guest code for the pause it is parked
	 * in: the later of its last exit and the pause request (an idle vCPU
	 * was not running anyway). W: the vCPU thread under run_lock with
	 * stopped++; R: vm__paused_since_ns under run_lock. */
	uint64_t stopped_ns;
};

int vcpu__create(struct vm *vm, unsigned idx, char *err);
void vcpu__check_sync_regs(struct vcpu *c);	/* aborts on a difference (tests) */
void vcpu__ask_sync_regs(struct vcpu *c);	/* the next KVM_RUN leaves regs, sregs, events in kvm_run */
void vcpu__destroy(struct vcpu *c);
int vcpu__setup_cpuid(struct vcpu *c, char *err);

/* The CPUID words of the CPU model (cpu_model.c); reg: 0..3 = EAX..EDX. */
struct cpu_model_word {
	uint32_t leaf, sub;
	uint8_t reg;
	uint32_t mask;		/* bits compared */
	const char *what;
};
extern const struct cpu_model_word cpu_model_words[VM_CPU_WORDS];
int vcpu__set_pvh_entry(struct vcpu *c, uint32_t entry, uint32_t start_info);
void *vcpu__thread(void *arg);
void vcpu__handle_exit(struct vcpu *c);
void vcpu__eat_kicks(void);

/* vCPU state capture (vmm/kvm/cpu_state.c); only on a parked vCPU. */
/* *tsc: the guest TSC read with the state (for the clock record). */
int cpu_state__save(struct vcpu *c, struct sbuf *out, uint64_t *tsc, char *err);
int cpu_state__load(struct vcpu *c, const void *data, size_t len, bool check_only, char *err);
/* 0 if this host's vCPU state fits what cpu_state saves. */
int cpu_state__check_host(struct vm *vm, char *err);

/* ---- the VM ------------------------------------------------------------------------------ */

struct vm {
	struct vm_config cfg;
	char name[64];
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	uint32_t tsc_khz;
	struct vm_cpu_model cpu_model;	/* from vCPU 0's CPUID table, set at creation */
	int xsave2_size;		/* KVM_CAP_XSAVE2 (0: KVM_GET_XSAVE), checked at creation */

	struct vcpu vcpus[VMM_MAX_VCPUS];
	unsigned nr_vcpus;

	struct io_bus pio, mmio;
	struct serial *serial;
	struct virtio_mmio *blk;	/* slot 0 */
	struct virtio_mmio *net;	/* slot 1 */

	/*
	 * dev_lock serialises device emulation: MMIO/PIO exits from every vCPU
	 * and the I/O thread's RX delivery. Capture takes it so device state
	 * and guest memory written by devices are consistent.
	 */
	pthread_mutex_t dev_lock;

	/*
	 * run_lock protects the run state below; run_cond signals changes to
	 * it (parked counts, pause requests, quit) and wakes idling vCPUs.
	 */
	pthread_mutex_t run_lock;
	pthread_cond_t run_cond;
	enum vm_run_state state;
	atomic_bool pause_req;
	atomic_bool quit_req;
	bool check_sync_regs;	/* FTVM_CHECK_SYNC_REGS (tests): vcpu__check_sync_regs at each park; set at creation */
	/* Dirty logging is on (protection): every KVM_RUN asks for the sync
	 * regs, so a vCPU stopped by a kick parks with no further KVM_RUN.
	 * W: vm__dirty_log_enable; R: vCPU threads. */
	atomic_bool sync_every_run;
	unsigned pause_depth;		/* pause levels held (see vm__pause_internal) */
	uint64_t pause_req_ns;		/* when pause_depth last went 0 -> 1 (under run_lock) */
	bool user_stopped;		/* the monitor's `stop` holds one level */
	unsigned parked;		/* vCPUs parked for a pause (state saved) */
	unsigned stopped;		/* of those in a pause, vCPUs past their last exit (parked or saving) */
	unsigned exited;		/* vCPU threads that have left their loop */
	int exit_code;
	bool started;
	/* Bumped (under run_lock) by the I/O thread on every delivered frame. */
	uint64_t events;

	/* Auto-converge throttle (throttle.c). throttle_lock serialises
	 * vm__set_throttle (the ft sync thread, vm__destroy); the thread reads
	 * the atomics. */
	pthread_mutex_t throttle_lock;
	pthread_t throttle_thread;
	bool throttle_started;		/* under throttle_lock */
	atomic_uint throttle_pct;
	atomic_bool throttle_stop;

	/* I/O thread: polls backends and a wake eventfd. */
	pthread_t io_thread;
	bool io_started;
	int wake_fd;
	atomic_bool io_stop;
};

/* I/O thread (vmm/kvm/io_thread.c). */
int io_thread__start(struct vm *vm);
void io_thread__stop(struct vm *vm);
void io_thread__kick(struct vm *vm);

/* Device events for idling vCPUs. */
void vm__signal_event(struct vm *vm);
/* The idle port: blocks a vCPU until an event, a run-state request, or the timeout. */
void vm__idle(struct vm *vm, struct vcpu *c, uint32_t timeout_us);
void vm__guest_exit(struct vm *vm, int code);
/* Called from a vCPU thread at each loop turn: parks it while a pause is requested. */
void vm__park_if_requested(struct vm *vm, struct vcpu *c);

/* PVH loader (vmm/boot/pvh.c). */
int pvh__load(struct vm *vm, const char *kernel, const char *cmdline, uint32_t *entry, char *err);

/* Snapshot save/load of the whole machine (vmm/snapshot/vm_snapshot.c). */
int vm_snapshot__save(struct vm *vm, int fd, uint64_t *bytes, char *err);
int vm_snapshot__load(struct vm *vm, const char *path, char *err);
/* Device, vCPU and platform state without RAM, as a snapshot in memory. */
int vm_snapshot__save_state(struct vm *vm, struct sbuf *out, char *err);
/* check_only: verify and decode everything, change nothing. */
int vm_snapshot__load_state(struct vm *vm, const void *blob, size_t len, bool check_only, char *err);

#endif
