/*
 * vcpu.c - vCPU creation, the PVH entry state and the run loop (CPUID: cpuid.c).
 *
 * One thread per vCPU runs `while (!quit) { KVM_RUN; dispatch exit; }`.
 * Pausing: vm__pause() sets pause_req and sends SIGUSR1 to every vCPU
 * thread (unblocked only inside KVM_RUN, see below). A vCPU notices at the
 * top of its loop and parks in vm__park_if_requested(), which first enters
 * KVM_RUN once more with immediate_exit set: that completes a pending
 * KVM_EXIT_IO/MMIO (the instruction pointer moves past the I/O
 * instruction) so the state captured while parked is consistent. This is
 * the pitfall Kemari met: never capture state from an incomplete exit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/vm_internal.h"

/*
 * FTVM_CHECK_SYNC_REGS (tests): what a park left in kvm_run must be what
 * the GET ioctls return, field for field; the VMM aborts if not, so a test
 * that parks often (every checkpoint) fails loudly.
 */
void vcpu__check_sync_regs(struct vcpu *c)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_vcpu_events e;
	const char *bad = NULL;

	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0 || ioctl(c->fd, KVM_GET_SREGS, &s) < 0 ||
	    ioctl(c->fd, KVM_GET_VCPU_EVENTS, &e) < 0)
		bad = "a GET ioctl failed";
	else if (memcmp(&r, &c->run->s.regs.regs, sizeof(r)))
		bad = "regs";
	else if (memcmp(&s, &c->run->s.regs.sregs, sizeof(s)))
		bad = "sregs";
	else if (memcmp(&e, &c->run->s.regs.events, sizeof(e)))
		bad = "events";
	if (bad) {
		fprintf(stderr, "ftvm: vCPU %u: FTVM_CHECK_SYNC_REGS: the parked state in kvm_run differs "
			"from KVM's (%s)\n", c->idx, bad);
		abort();
	}
}

void vcpu__ask_sync_regs(struct vcpu *c)
{
	if (!c->sync_regs)
		return;
	/* KVM fills these without clearing them first (the interrupt
	 * bitmap, padding): start from zeros, as the GET ioctls do. */
	c->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
	memset(&c->run->s.regs.sregs, 0, sizeof(c->run->s.regs.sregs));
}

int vcpu__create(struct vm *vm, unsigned idx, char *err)
{
	struct vcpu *c = &vm->vcpus[idx];
	int size;

	c->vm = vm;
	c->idx = idx;
	c->nr_msr_list = -1;
	int sync = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	unsigned want = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
	c->sync_regs = sync > 0 && ((unsigned)sync & want) == want && !getenv("FTVM_NO_SYNC_REGS");
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, idx);
	if (c->fd < 0) {
		snprintf(err, VMM_ERR_LEN, "KVM_CREATE_VCPU %u: %s", idx, strerror(errno));
		return -errno;
	}
	size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(struct kvm_run)) {
		snprintf(err, VMM_ERR_LEN, "KVM_GET_VCPU_MMAP_SIZE failed");
		return -EIO;
	}
	c->run_size = size;
	c->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->run == MAP_FAILED) {
		c->run = NULL;
		snprintf(err, VMM_ERR_LEN, "mmap kvm_run: %s", strerror(errno));
		return -errno;
	}
	return 0;	/* CPUID: vcpu__setup_cpuid() once the TSC rate is known */
}

void vcpu__destroy(struct vcpu *c)
{
	if (c->run)
		munmap(c->run, c->run_size);
	if (c->fd > 0)
		close(c->fd);
	c->run = NULL;
	c->fd = -1;
	sbuf__free(&c->parked_state);
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	(void)code;
}

/* The PVH entry state: 32-bit protected mode, paging off, flat segments. */
int vcpu__set_pvh_entry(struct vcpu *c, uint32_t entry, uint32_t start_info)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	seg_flat(&sregs.cs, 0x10, 0xb, true);
	seg_flat(&sregs.ds, 0x18, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1,
	};
	sregs.ldt = (struct kvm_segment){ .type = 2, .present = 1, .unusable = 1 };
	sregs.cr0 = 0x11;	/* PE | ET */
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rbx = start_info;
	regs.rflags = 0x2;
	if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;

	/* Application processors start at the same entry (docs/guest-abi.md). */
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	if (ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	return 0;
}

static void vcpu__pio(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	struct vm *vm = c->vm;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint16_t port = run->io.port;
	unsigned size = run->io.size;

	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT && size == 4 &&
		    (port == PORT_IDLE || port == PORT_EXIT || port == PORT_TEST_SYNC)) {
			uint32_t v;
			memcpy(&v, data, 4);
			if (port == PORT_IDLE) {
				vm__idle(vm, c, v);
			} else if (port == PORT_EXIT) {
				vm__guest_exit(vm, (int)(v & 0xff));
			} else if (vm->cfg.test_hook) {
				if (vm->cfg.test_hook(vm, c->idx, v, vm->cfg.test_hook_opaque) < 0)
					vm__request_quit(vm, 1);
			}
			continue;
		}
		pthread_mutex_lock(&vm->dev_lock);
		const struct io_handler *h = io_bus__find(&vm->pio, port, size);
		if (!h) {
			if (run->io.direction == KVM_EXIT_IO_IN)
				memset(data, 0xff, size);
		} else if (run->io.direction == KVM_EXIT_IO_IN) {
			h->read(h->dev, port - h->base, data, size);
		} else {
			h->write(h->dev, port - h->base, data, size);
		}
		pthread_mutex_unlock(&vm->dev_lock);
	}
}

static void vcpu__mmio(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	struct vm *vm = c->vm;
	uint64_t addr = run->mmio.phys_addr;
	unsigned len = run->mmio.len;

	pthread_mutex_lock(&vm->dev_lock);
	const struct io_handler *h = io_bus__find(&vm->mmio, addr, len);
	if (!h) {
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, len);
	} else if (run->mmio.is_write) {
		h->write(h->dev, addr - h->base, run->mmio.data, len);
	} else {
		h->read(h->dev, addr - h->base, run->mmio.data, len);
	}
	pthread_mutex_unlock(&vm->dev_lock);
}

static void vcpu__report_fatal(struct vcpu *c, const char *what)
{
	struct kvm_regs regs;
	if (ioctl(c->fd, KVM_GET_REGS, &regs) == 0)
		fprintf(stderr, "ftvm: vCPU %u: %s at rip=0x%llx\n", c->idx, what,
			(unsigned long long)regs.rip);
	else
		fprintf(stderr, "ftvm: vCPU %u: %s\n", c->idx, what);
}

static void vcpu__sig_kick(int sig)
{
	(void)sig;	/* only interrupts KVM_RUN */
}

/*
 * A kick that interrupted KVM_RUN stays pending once KVM_RUN has restored
 * the thread's mask (SIGUSR1 blocked): consume it, or every later KVM_RUN
 * would return -EINTR at once.
 */
void vcpu__eat_kicks(void)
{
	static const struct timespec zero = { 0, 0 };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	while (sigtimedwait(&set, NULL, &zero) > 0)
		;
}

/* Services the exit KVM_RUN just returned with. */
void vcpu__handle_exit(struct vcpu *c)
{
	struct vm *vm = c->vm;

	switch (c->run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu__pio(c);
		break;
	case KVM_EXIT_MMIO:
		vcpu__mmio(c);
		break;
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_DIRTY_RING_FULL:
		/* KVM_RUN re-exits at once until the ring has room. */
		if (dirty_log__ring_full(&vm->mem, vm->vm_fd, c->idx) < 0) {
			vcpu__report_fatal(c, "cannot empty a full dirty ring");
			vm__request_quit(vm, 1);
		}
		break;
	case KVM_EXIT_HLT:
		vm__idle(vm, c, 1000);
		break;
	case KVM_EXIT_SHUTDOWN:
		vcpu__report_fatal(c, "guest triple fault (shutdown)");
		vm__guest_exit(vm, 0x7f);
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		vm__guest_exit(vm, 0);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu__report_fatal(c, "VM entry failed");
		vm__request_quit(vm, 1);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu__report_fatal(c, "KVM internal error");
		vm__request_quit(vm, 1);
		break;
	default: {
		char what[64];
		snprintf(what, sizeof(what), "unhandled exit reason %u", c->run->exit_reason);
		vcpu__report_fatal(c, what);
		vm__request_quit(vm, 1);
	}
	}
}

void *vcpu__thread(void *arg)
{
	struct vcpu *c = arg;
	struct vm *vm = c->vm;
	struct sigaction sa = { .sa_handler = vcpu__sig_kick };
	sigset_t set;
	char name[16];

	/*
	 * SIGUSR1 stays blocked in this thread except inside KVM_RUN
	 * (KVM_SET_SIGNAL_MASK): a kick sent just before KVM_RUN is then
	 * pending at entry and makes KVM_RUN return -EINTR at once, so no
	 * pause request is ever lost to that race.
	 */
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	{
		struct {
			struct kvm_signal_mask hdr;
			uint64_t bits;
		} km = { .hdr.len = 8 };
		sigset_t cur;
		pthread_sigmask(SIG_BLOCK, NULL, &cur);
		sigdelset(&cur, SIGUSR1);
		memcpy(&km.bits, &cur, 8);
		if (ioctl(c->fd, KVM_SET_SIGNAL_MASK, &km) < 0) {
			fprintf(stderr, "ftvm: vCPU %u: KVM_SET_SIGNAL_MASK: %s\n", c->idx,
				strerror(errno));
			vm__request_quit(vm, 1);
		}
	}
	snprintf(name, sizeof(name), "vcpu%u", c->idx);
	pthread_setname_np(pthread_self(), name);

	while (!atomic_load(&vm->quit_req)) {
		vm__park_if_requested(vm, c);
		if (atomic_load(&vm->quit_req))
			break;
		bool sync = atomic_load(&vm->sync_every_run);
		if (sync)
			vcpu__ask_sync_regs(c);
		int r = ioctl(c->fd, KVM_RUN, 0);
		c->last_exit_ns = vm__now_ns();
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				c->exit_pending = false;
				c->run_synced = sync && c->sync_regs;
				vcpu__eat_kicks();
				continue;
			}
			fprintf(stderr, "ftvm: vCPU %u: KVM_RUN: %s\n", c->idx, strerror(errno));
			vm__request_quit(vm, 1);
			break;
		}
		c->exit_pending = true;
		c->run_synced = false;
		c->run->kvm_valid_regs = 0;
		vcpu__handle_exit(c);
	}
	pthread_mutex_lock(&vm->run_lock);
	vm->exited++;
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	return NULL;
}
