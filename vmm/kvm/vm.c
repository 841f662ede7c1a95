/*
 * vm.c - the VM object: KVM setup, device wiring, run state (start, pause,
 * resume, quit) and the idle port.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmm/vm_internal.h"
#include "vmm/virtio/virtio.h"

int io_bus__register(struct io_bus *bus, const struct io_handler *h)
{
	if (bus->n >= IO_MAX_HANDLERS)
		return -ENOSPC;
	bus->h[bus->n++] = *h;
	return 0;
}

const struct io_handler *io_bus__find(const struct io_bus *bus, uint64_t addr, unsigned size)
{
	for (unsigned i = 0; i < bus->n; i++) {
		const struct io_handler *h = &bus->h[i];
		if (addr >= h->base && addr + size <= h->base + h->len)
			return h;
	}
	return NULL;
}

static int vm__check_config(const struct vm_config *cfg, char *err)
{
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VMM_MAX_VCPUS) {
		snprintf(err, VMM_ERR_LEN, "--smp %u: must be between 1 and %d", cfg->nr_vcpus,
			 VMM_MAX_VCPUS);
		return -EINVAL;
	}
	if (cfg->mem_size < (16ull << 20) || cfg->mem_size % (2ull << 20)) {
		snprintf(err, VMM_ERR_LEN,
			 "--memory: %llu bytes; need at least 16M and a multiple of 2M",
			 (unsigned long long)cfg->mem_size);
		return -EINVAL;
	}
	return 0;
}

/* KVM, memory, vCPUs and devices; no kernel loaded, no vCPU state set. */
static int vm__create_machine(const struct vm_config *cfg, struct vm **out, char *err)
{
	struct vm *vm;
	int ret;

	ret = vm__check_config(cfg, err);
	if (ret)
		return ret;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->cfg = *cfg;
	snprintf(vm->name, sizeof(vm->name), "%s", cfg->name ? cfg->name : "ftvm");
	vm->cfg.name = vm->name;
	vm->kvm_fd = vm->vm_fd = vm->wake_fd = -1;
	vm->nr_vcpus = cfg->nr_vcpus;
	vm->state = VM_STATE_PAUSED;
	pthread_mutex_init(&vm->dev_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_mutex_init(&vm->throttle_lock, NULL);
	/* vm__idle's deadlines are CLOCK_MONOTONIC: so must the condvar's
	 * clock be (with the default, CLOCK_REALTIME, every idle deadline lay
	 * decades in the past and an idle guest spun a host CPU). */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->run_cond, &ca);
	pthread_condattr_destroy(&ca);
	*out = vm;

	vm->check_sync_regs = getenv("FTVM_CHECK_SYNC_REGS") != NULL;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "cannot open /dev/kvm: %s", strerror(errno));
		return ret;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(err, VMM_ERR_LEN, "unsupported KVM API version");
		return -ENOTSUP;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "KVM_CREATE_VM: %s", strerror(errno));
		return ret;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return ret;
	}
	ret = mem__init(&vm->mem, vm->vm_fd, cfg, err);
	if (ret)
		return ret;

	/* CPUID carries the TSC rate: ask the VM (KVM_CAP_VM_TSC_CONTROL),
	 * else vCPU 0, before any vCPU gets its table. */
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu__create(vm, i, err);
		if (!ret)
			ret = dirty_log__map_ring(&vm->mem, i, vm->vcpus[i].fd, err);
		if (ret)
			return ret;
	}
	ret = ioctl(vm->vm_fd, KVM_GET_TSC_KHZ, 0);
	if (ret <= 0)
		ret = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	vm->tsc_khz = ret > 0 ? (uint32_t)ret : 0;
	if (!vm->tsc_khz)
		fprintf(stderr, "ftvm: warning: KVM_GET_TSC_KHZ: %s; the guest is offered no "
			"TSC-rate leaf\n", ret < 0 ? strerror(errno) : "no rate");
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu__setup_cpuid(&vm->vcpus[i], err);
		if (ret)
			return ret;
	}
	ret = cpu_state__check_host(vm, err);
	if (ret)
		return ret;

	vm->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vm->wake_fd < 0)
		return -errno;

	vm->serial = serial__create(cfg->serial_fd);
	if (!vm->serial)
		return -ENOMEM;
	io_bus__register(&vm->pio, &(struct io_handler){
		.base = PORT_COM1, .len = 8, .read = serial__io_read,
		.write = serial__io_write, .dev = vm->serial });

	if (cfg->disk) {
		ret = virtio_blk__create(vm, 0, cfg->disk, &vm->blk, err);
		if (ret)
			return ret;
	}
	if (cfg->net) {
		ret = virtio_net__create(vm, 1, cfg->net, cfg->mac, &vm->net, err);
		if (ret)
			return ret;
	}
	return 0;
}

int vm__create(const struct vm_config *cfg, struct vm **out, char *err)
{
	uint32_t entry;
	int ret;

	*out = NULL;
	ret = vm__create_machine(cfg, out, err);
	if (ret)
		goto fail;
	ret = pvh__load(*out, cfg->kernel, cfg->cmdline ? cfg->cmdline : "", &entry, err);
	if (ret)
		goto fail;
	for (unsigned i = 0; i < (*out)->nr_vcpus; i++) {
		ret = vcpu__set_pvh_entry(&(*out)->vcpus[i], entry, PVH_START_INFO_GPA);
		if (ret) {
			snprintf(err, VMM_ERR_LEN, "setting up vCPU %u: %s", i, strerror(-ret));
			goto fail;
		}
	}
	return 0;
fail:
	vm__destroy(*out);
	*out = NULL;
	return ret;
}

int vm__create_from_snapshot(const struct vm_config *cfg, const char *path,
			     struct vm **out, char *err)
{
	int ret;

	*out = NULL;
	ret = vm__create_machine(cfg, out, err);
	if (ret)
		goto fail;
	ret = vm_snapshot__load(*out, path, err);
	if (ret)
		goto fail;
	return 0;
fail:
	vm__destroy(*out);
	*out = NULL;
	return ret;
}

void vm__destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm__set_throttle(vm, 0);
	vm__request_quit(vm, vm->exit_code);
	if (vm->io_started)
		io_thread__stop(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	if (vm->blk)
		virtio_mmio__destroy(vm->blk);
	if (vm->net)
		virtio_mmio__destroy(vm->net);
	if (vm->serial)
		serial__destroy(vm->serial);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu__destroy(&vm->vcpus[i]);
	mem__free(&vm->mem);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm);
}

int vm__start(struct vm *vm)
{
	sigset_t set, old;
	int ret;

	if (vm->started)
		return -EALREADY;
	/* vCPU threads unblock SIGUSR1 themselves; every other thread keeps it blocked. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	ret = io_thread__start(vm);
	if (ret)
		return ret;
	pthread_mutex_lock(&vm->run_lock);
	vm->state = vm->user_stopped ? VM_STATE_PAUSED : VM_STATE_RUNNING;
	vm->started = true;
	pthread_mutex_unlock(&vm->run_lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = pthread_create(&vm->vcpus[i].thread, NULL, vcpu__thread, &vm->vcpus[i]);
		if (ret) {
			vm__request_quit(vm, 1);
			return -ret;
		}
		vm->vcpus[i].thread_started = true;
	}
	return 0;
}

int vm__wait(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	/* Done when quit was asked and every started vCPU thread has left. */
	while (!(atomic_load(&vm->quit_req) &&
		 vm->exited == (vm->started ? vm->nr_vcpus : 0)))
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	vm->state = VM_STATE_SHUTDOWN;
	int code = vm->exit_code;
	pthread_mutex_unlock(&vm->run_lock);
	return code;
}

static void vm__kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->thread_started)
			continue;
		pthread_kill(c->thread, SIGUSR1);
	}
}

void vm__request_quit(struct vm *vm, int code)
{
	pthread_mutex_lock(&vm->run_lock);
	if (!atomic_load(&vm->quit_req)) {
		vm->exit_code = code;
		atomic_store(&vm->quit_req, true);
	}
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	vm__kick_vcpus(vm);
}

#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
void vm__racy_reads_begin(void) { AnnotateIgnoreReadsBegin(__FILE__, __LINE__); }
void vm__racy_reads_end(void) { AnnotateIgnoreReadsEnd(__FILE__, __LINE__); }
#else
void vm__racy_reads_begin(void) {}
void vm__racy_reads_end(void) {}
#endif

bool vm__quit_requested(struct vm *vm)
{
	return atomic_load(&vm->quit_req);
}

void vm__guest_exit(struct vm *vm, int code)
{
	vm__request_quit(vm, code);
}

/*
 * Pauses nest: the user's `stop` holds one level, and every internal
 * pause (a checkpoint capture, savevm, info registers) takes another. The
 * vCPUs run only when no level is held. All callers return once every
 * vCPU is parked at a completed exit.
 */
/* Takes a pause level; waits until every vCPU has stopped (stopped_only)
 * or is parked with its state saved. */
static int vm__pause_until(struct vm *vm, bool stopped_only)
{
	pthread_mutex_lock(&vm->run_lock);
	if (atomic_load(&vm->quit_req)) {
		pthread_mutex_unlock(&vm->run_lock);
		return -ESHUTDOWN;
	}
	int first = vm->pause_depth++ == 0;
	if (first) {
		vm->pause_req_ns = vm__now_ns();
		atomic_store(&vm->pause_req, true);
		pthread_cond_broadcast(&vm->run_cond);	/* wakes idling vCPUs */
		pthread_mutex_unlock(&vm->run_lock);
		vm__kick_vcpus(vm);
		pthread_mutex_lock(&vm->run_lock);
	}
	unsigned running = vm->started ? vm->nr_vcpus : 0;
	while ((stopped_only ? vm->stopped : vm->parked) + vm->exited < running)
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	pthread_mutex_unlock(&vm->run_lock);
	return first;
}

int vm__pause_internal(struct vm *vm)
{
	int r = vm__pause_until(vm, false);
	return r < 0 ? r : 0;
}

int vm__pause_stopped(struct vm *vm)
{
	return vm__pause_until(vm, true);
}

void vm__pause_wait_parked(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	unsigned running = vm->started ? vm->nr_vcpus : 0;
	while (vm->pause_depth && vm->parked + vm->exited < running)
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	pthread_mutex_unlock(&vm->run_lock);
}

uint64_t vm__paused_since_ns(struct vm *vm)
{
	uint64_t since = 0;

	pthread_mutex_lock(&vm->run_lock);
	for (unsigned i = 0; vm->pause_depth && vm->stopped && i < vm->nr_vcpus; i++) {
		uint64_t t = vm->vcpus[i].stopped_ns;
		/* One that stayed parked since an earlier pause (it had not
		 * woken when this one began) stands still since this request. */
		if (t && t < vm->pause_req_ns)
			t = vm->pause_req_ns;
		if (vm->vcpus[i].thread_started && t && (!since || t < since))
			since = t;
	}
	pthread_mutex_unlock(&vm->run_lock);
	return since;
}

int vm__pause_request(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	if (atomic_load(&vm->quit_req)) {
		pthread_mutex_unlock(&vm->run_lock);
		return -ESHUTDOWN;
	}
	bool first = vm->pause_depth++ == 0;
	if (first) {
		/* Asked from a vCPU's exit handler: that vCPU stopped at the exit. */
		uint64_t now = vm__now_ns();
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			if (vm->vcpus[i].thread_started && pthread_equal(vm->vcpus[i].thread, pthread_self()) &&
			    vm->vcpus[i].last_exit_ns && vm->vcpus[i].last_exit_ns <= now)
				now = vm->vcpus[i].last_exit_ns;
		vm->pause_req_ns = now;
		atomic_store(&vm->pause_req, true);
		pthread_cond_broadcast(&vm->run_cond);	/* wakes idling vCPUs */
	}
	pthread_mutex_unlock(&vm->run_lock);
	/* The caller's own vCPU (if it is one) parks as its exit completes:
	 * no signal for it. */
	for (unsigned i = 0; first && i < vm->nr_vcpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (c->thread_started && !pthread_equal(c->thread, pthread_self()))
			pthread_kill(c->thread, SIGUSR1);
	}
	return first ? 1 : 0;
}

void vm__resume_internal(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	if (vm->pause_depth > 0 && --vm->pause_depth == 0) {
		/*
		 * No waiting for the vCPUs to leave: one that has not woken
		 * yet when the next pause comes simply stays parked, and it
		 * is rightly counted as parked, since it ran no guest code.
		 */
		atomic_store(&vm->pause_req, false);
		pthread_cond_broadcast(&vm->run_cond);
	}
	pthread_mutex_unlock(&vm->run_lock);
	io_thread__kick(vm);
}

int vm__pause(struct vm *vm)
{
	bool take;

	pthread_mutex_lock(&vm->run_lock);
	take = !vm->user_stopped;
	vm->user_stopped = true;
	vm->state = VM_STATE_PAUSED;
	pthread_mutex_unlock(&vm->run_lock);
	if (!take)
		return atomic_load(&vm->quit_req) ? -ESHUTDOWN : 0;
	int ret = vm__pause_internal(vm);
	if (ret) {
		pthread_mutex_lock(&vm->run_lock);
		vm->user_stopped = false;
		pthread_mutex_unlock(&vm->run_lock);
	}
	return ret;
}

int vm__resume(struct vm *vm)
{
	bool release;

	pthread_mutex_lock(&vm->run_lock);
	if (atomic_load(&vm->quit_req)) {
		pthread_mutex_unlock(&vm->run_lock);
		return -ESHUTDOWN;
	}
	release = vm->user_stopped;
	vm->user_stopped = false;
	vm->state = VM_STATE_RUNNING;
	bool start = !vm->started;
	pthread_mutex_unlock(&vm->run_lock);
	if (release)
		vm__resume_internal(vm);
	return start ? vm__start(vm) : 0;
}

void vm__park_if_requested(struct vm *vm, struct vcpu *c)
{
	if (!atomic_load(&vm->pause_req))
		return;
	/*
	 * Complete any pending I/O exit so the saved state is consistent:
	 * KVM_RUN with immediate_exit finishes it and returns -EINTR. It may
	 * instead return a new exit (the next round of a string I/O, an MMIO
	 * the completion ran into): service it and go again, until -EINTR
	 * says the vCPU stands at a completed instruction (design.md:
	 * capture only from a completed exit).
	 */
	c->run->immediate_exit = 1;
	/* A vCPU the kick took out of KVM_RUN (-EINTR) has no exit to
	 * complete: it parks as it stands. */
	bool synced = !c->exit_pending && c->run_synced;
	for (; c->exit_pending;) {
		vcpu__ask_sync_regs(c);
		int r = ioctl(c->fd, KVM_RUN, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
			c->exit_pending = false;
			synced = c->sync_regs;
			break;
		}
		if (r < 0) {
			fprintf(stderr, "ftvm: vCPU %u: KVM_RUN (completing an exit): %s\n", c->idx,
				strerror(errno));
			vm__request_quit(vm, 1);
			break;
		}
		vcpu__handle_exit(c);
		if (atomic_load(&vm->quit_req))
			break;
	}
	c->run->immediate_exit = 0;
	c->run->kvm_valid_regs = 0;
	vcpu__eat_kicks();
	if (synced && vm->check_sync_regs)
		vcpu__check_sync_regs(c);
	atomic_store(&c->parked_regs, synced);
	/* Stopped: no more guest code, no more guest memory writes from this
	 * vCPU; the capture may collect and copy while it saves its state. */
	pthread_mutex_lock(&vm->run_lock);
	c->stopped_ns = c->last_exit_ns > vm->pause_req_ns ? c->last_exit_ns : vm->pause_req_ns;
	vm->stopped++;
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	if (atomic_load(&vm->sync_every_run) && !atomic_load(&vm->quit_req)) {
		char err[VMM_ERR_LEN];
		sbuf__reset(&c->parked_state);
		if (cpu_state__save(c, &c->parked_state, &c->parked_tsc, err) == 0)
			atomic_store(&c->parked_state_valid, true);
	}

	pthread_mutex_lock(&vm->run_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->run_cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->quit_req))
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	atomic_store(&c->parked_state_valid, false);
	atomic_store(&c->parked_regs, false);
	c->stopped_ns = 0;
	vm->parked--;
	vm->stopped--;
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
}

enum vm_run_state vm__run_state(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	enum vm_run_state s = atomic_load(&vm->quit_req) ? VM_STATE_SHUTDOWN : vm->state;
	pthread_mutex_unlock(&vm->run_lock);
	return s;
}

const char *vm__run_state_name(enum vm_run_state s)
{
	switch (s) {
	case VM_STATE_RUNNING: return "running";
	case VM_STATE_PAUSED: return "paused";
	case VM_STATE_SHUTDOWN: return "shutdown";
	}
	return "unknown";
}

const char *vm__name(struct vm *vm) { return vm->name; }
unsigned vm__nr_vcpus(struct vm *vm) { return vm->nr_vcpus; }
uint64_t vm__mem_size(struct vm *vm) { return vm->cfg.mem_size; }

void vm__signal_event(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	vm->events++;
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
}

/*
 * The idle port. A device event that arrived since this vCPU's previous
 * idle returned may not have been seen by the guest yet (it checked its
 * rings before idling), so such an event ends the idle at once: no lost
 * wake-ups, at the price of an occasional spurious return.
 */
void vm__idle(struct vm *vm, struct vcpu *c, uint32_t timeout_us)
{
	struct timespec deadline;
	uint64_t us = timeout_us ? timeout_us : 1000000;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += us / 1000000;
	deadline.tv_nsec += (long)(us % 1000000) * 1000;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&vm->run_lock);
	while (vm->events == c->events_seen && !atomic_load(&vm->pause_req) &&
	       !atomic_load(&vm->quit_req)) {
		if (pthread_cond_timedwait(&vm->run_cond, &vm->run_lock, &deadline) == ETIMEDOUT)
			break;
	}
	c->events_seen = vm->events;
	pthread_mutex_unlock(&vm->run_lock);
}

void *vm__guest_ptr(struct vm *vm, uint64_t gpa, size_t len)
{
	return mem__ptr(&vm->mem, gpa, len);
}

uint64_t vm__nr_pages(struct vm *vm) { return vm->mem.nr_pages; }

uint64_t vm__page_gpa(struct vm *vm, uint64_t page)
{
	for (unsigned i = vm->mem.nr_slots; i-- > 0;) {
		const struct mem_slot *s = &vm->mem.slots[i];
		if (page >= s->first_page)
			return s->gpa + (page - s->first_page) * VMM_PAGE_SIZE;
	}
	return 0;
}

int vm__dirty_log_enable(struct vm *vm, bool on)
{
	int ret = mem__set_dirty_log(&vm->mem, vm->vm_fd, on);
	if (!ret)
		atomic_store(&vm->sync_every_run, on);
	return ret;
}

int vm__dirty_log_collect(struct vm *vm, uint64_t *bitmap)
{
	struct vm_dirty_pages d = { .seen = bitmap };
	return dirty_log__collect(&vm->mem, vm->vm_fd, &d);
}

int vm__dirty_log_collect_list(struct vm *vm, uint64_t *seen, struct vm_page_list *list)
{
	struct vm_dirty_pages d = { .seen = seen, .list = list };
	return dirty_log__collect(&vm->mem, vm->vm_fd, &d);
}

const char *vm__dirty_mode(struct vm *vm)
{
	return vm__dirty_mode_name(vm->mem.dirty_mode);
}

uint64_t vm__dirty_ring_full_exits(struct vm *vm)
{
	return atomic_load(&vm->mem.ring_full_exits);
}

void vm__dirty_log_set_hot(struct vm *vm, uint32_t max)
{
	atomic_store(&vm->mem.hot_max, max);
}

uint32_t vm__dirty_hot_pages(struct vm *vm)
{
	return atomic_load(&vm->mem.hot_now);
}


int vm__vcpu_regs(struct vm *vm, unsigned idx, struct vm_vcpu_regs *out)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (idx >= vm->nr_vcpus)
		return -EINVAL;
	pthread_mutex_lock(&vm->run_lock);
	bool still = vm->pause_depth > 0 || !vm->started;
	pthread_mutex_unlock(&vm->run_lock);
	if (!still)
		return -EBUSY;
	if (ioctl(vm->vcpus[idx].fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(vm->vcpus[idx].fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	*out = (struct vm_vcpu_regs){
		.rax = r.rax, .rbx = r.rbx, .rcx = r.rcx, .rdx = r.rdx, .rsi = r.rsi,
		.rdi = r.rdi, .rsp = r.rsp, .rbp = r.rbp, .r8 = r.r8, .r9 = r.r9,
		.r10 = r.r10, .r11 = r.r11, .r12 = r.r12, .r13 = r.r13, .r14 = r.r14,
		.r15 = r.r15, .rip = r.rip, .rflags = r.rflags, .cr0 = s.cr0,
		.cr3 = s.cr3, .cr4 = s.cr4, .efer = s.efer, .cs = s.cs.selector,
		.ss = s.ss.selector,
	};
	return 0;
}

/*
 * The snapshot is written to PATH.tmp (created new: never through a link
 * someone left there), synced, then moved to PATH: a crash mid-save never
 * leaves a half-written file under the real name. An existing PATH is
 * replaced only with overwrite (rename), else refused (link fails).
 */
int vm__save(struct vm *vm, const char *path, bool overwrite, uint64_t *bytes, uint64_t *pause_us,
	     char *err)
{
	struct timespec t0, t1;
	char tmp[4096];
	int fd, ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, VMM_ERR_LEN, "savevm: file name too long");
		return -ENAMETOOLONG;
	}
	struct stat st;
	if (!overwrite && lstat(path, &st) == 0) {
		snprintf(err, VMM_ERR_LEN, "%s exists (savevm -f %s replaces it)", path, path);
		return -EEXIST;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "cannot create %s: %s%s", tmp, strerror(errno),
			 errno == EEXIST ? " (left by an earlier save? remove it)" : "");
		return ret;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = vm__pause_internal(vm);
	if (ret) {
		snprintf(err, VMM_ERR_LEN, "the VM is shut down");
		close(fd);
		unlink(tmp);
		return ret;
	}
	pthread_mutex_lock(&vm->dev_lock);
	ret = vm_snapshot__save(vm, fd, bytes, err);
	pthread_mutex_unlock(&vm->dev_lock);
	vm__resume_internal(vm);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (pause_us)
		*pause_us = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000u +
			    (uint64_t)((t1.tv_nsec - t0.tv_nsec) / 1000);
	if (!ret && fsync(fd) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "fsync %s: %s", tmp, strerror(errno));
	}
	if (close(fd) < 0 && !ret) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "close %s: %s", tmp, strerror(errno));
	}
	if (!ret && (overwrite ? rename(tmp, path) : link(tmp, path)) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "%s: %s", path, strerror(errno));
	}
	if (ret || !overwrite)
		unlink(tmp);
	return ret;
}

int vm__save_state(struct vm *vm, struct sbuf *out, char *err)
{
	pthread_mutex_lock(&vm->dev_lock);
	int ret = vm_snapshot__save_state(vm, out, err);
	pthread_mutex_unlock(&vm->dev_lock);
	return ret;
}

bool vm__page_is_zero(struct vm *vm, uint64_t p)
{
	const uint64_t *w = vm__guest_ptr(vm, vm__page_gpa(vm, p), VMM_PAGE_SIZE);
	uint64_t acc = 0;
	for (unsigned i = 0; i < VMM_PAGE_SIZE / 8; i++)
		acc |= w[i];
	return acc == 0;
}

int vm__save_state_locked(struct vm *vm, struct sbuf *out, char *err)
{
	return vm_snapshot__save_state(vm, out, err);
}

int vm__check_state(struct vm *vm, const void *blob, size_t len, char *err)
{
	return vm_snapshot__load_state(vm, blob, len, true, err);
}

int vm__load_state(struct vm *vm, const void *blob, size_t len, char *err)
{
	pthread_mutex_lock(&vm->dev_lock);
	int ret = vm_snapshot__load_state(vm, blob, len, false, err);
	pthread_mutex_unlock(&vm->dev_lock);
	return ret;
}

bool vm__is_started(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	bool s = vm->started;
	pthread_mutex_unlock(&vm->run_lock);
	return s;
}

void vm__devices_lock(struct vm *vm) { pthread_mutex_lock(&vm->dev_lock); }
void vm__devices_unlock(struct vm *vm) { pthread_mutex_unlock(&vm->dev_lock); }
uint32_t vm__tsc_khz(struct vm *vm) { return vm->tsc_khz; }

int64_t vm__populated_pages(struct vm *vm, uint64_t *bitmap)
{
	return mem__populated(&vm->mem, bitmap);
}

int vm__zero_ram(struct vm *vm)
{
	return mem__zero(&vm->mem);
}
