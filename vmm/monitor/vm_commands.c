/*
 * vm_commands.c - the monitor commands that act on the VM itself.
 */
#include <stdio.h>
#include <string.h>

#include "vmm/monitor/monitor_internal.h"

static bool no_args(struct mon_reply *r, int argc, const char *cmd)
{
	if (argc == 0)
		return true;
	mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "%s takes no arguments", cmd);
	return false;
}

static void cmd_info_status(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct vm *vm = opaque;
	enum vm_run_state s = vm__run_state(vm);
	(void)argv;
	if (!no_args(r, argc, "info status"))
		return;
	mon_reply__str(r, "status", vm__run_state_name(s));
	mon_reply__bool(r, "running", s == VM_STATE_RUNNING);
	mon_reply__str(r, "name", vm__name(vm));
	mon_reply__u64(r, "vcpus", vm__nr_vcpus(vm));
	mon_reply__u64(r, "memory_mib", vm__mem_size(vm) >> 20);
}

static void cmd_info_registers(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct vm *vm = opaque;
	(void)argv;
	if (!no_args(r, argc, "info registers"))
		return;
	/* Registers are only meaningful at a completed exit: pause briefly. */
	if (vm__pause_internal(vm) < 0) {
		mon_reply__error(r, MON_ERR_INVALID_STATE, "the VM is shut down");
		return;
	}
	mon_reply__array_begin(r, "cpus");
	for (unsigned i = 0; i < vm__nr_vcpus(vm); i++) {
		struct vm_vcpu_regs g;
		if (vm__vcpu_regs(vm, i, &g) < 0) {
			mon_reply__error(r, MON_ERR_INTERNAL, "cannot read vCPU %u registers", i);
			break;
		}
		mon_reply__object_begin(r, NULL);
		mon_reply__u64(r, "index", i);
		mon_reply__hex(r, "rip", g.rip);
		mon_reply__hex(r, "rsp", g.rsp);
		mon_reply__hex(r, "rflags", g.rflags);
		const struct { const char *n; uint64_t v; } gp[] = {
			{ "rax", g.rax }, { "rbx", g.rbx }, { "rcx", g.rcx }, { "rdx", g.rdx },
			{ "rsi", g.rsi }, { "rdi", g.rdi }, { "rbp", g.rbp }, { "r8", g.r8 },
			{ "r9", g.r9 }, { "r10", g.r10 }, { "r11", g.r11 }, { "r12", g.r12 },
			{ "r13", g.r13 }, { "r14", g.r14 }, { "r15", g.r15 }, { "cr0", g.cr0 },
			{ "cr3", g.cr3 }, { "cr4", g.cr4 }, { "efer", g.efer },
		};
		for (size_t k = 0; k < sizeof(gp) / sizeof(gp[0]); k++)
			mon_reply__hex(r, gp[k].n, gp[k].v);
		mon_reply__hex(r, "cs", g.cs);
		mon_reply__hex(r, "ss", g.ss);
		mon_reply__object_end(r);
	}
	mon_reply__array_end(r);
	vm__resume_internal(vm);
}

/* stop and cont get the monitor (their events go to it); the VM is its. */
static void cmd_stop(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	(void)argv;
	if (!no_args(r, argc, "stop"))
		return;
	if (vm__pause(monitor__vm(opaque)) < 0)
		mon_reply__error(r, MON_ERR_INVALID_STATE, "the VM is shut down");
	else
		monitor__event(opaque, "STOP", NULL);
}

static void cmd_cont(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	(void)argv;
	if (!no_args(r, argc, "cont"))
		return;
	if (vm__resume(monitor__vm(opaque)) < 0)
		mon_reply__error(r, MON_ERR_INVALID_STATE, "the VM is shut down");
	else
		monitor__event(opaque, "RESUME", NULL);
}

static void cmd_quit(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	(void)argv;
	if (no_args(r, argc, "quit"))
		vm__request_quit(opaque, 0);
}

static void cmd_savevm(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	char err[VMM_ERR_LEN] = "";
	uint64_t bytes = 0, pause_us = 0;

	bool force = argc == 2 && strcmp(argv[0], "-f") == 0;
	if (argc != 1 && !force) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "usage: savevm [-f] FILE");
		return;
	}
	const char *path = argv[argc - 1];
	if (vm__save(opaque, path, force, &bytes, &pause_us, err) < 0) {
		mon_reply__error(r, MON_ERR_IO, "savevm failed: %s", err);
		return;
	}
	mon_reply__str(r, "file", path);
	mon_reply__u64(r, "bytes", bytes);
	mon_reply__u64(r, "pause_us", pause_us);
}

/*
 * x-ram-crc FILE: test only. Writes "PAGE CRC32C" for every nonzero guest
 * page (VM paused meanwhile): two VMs' memories compare page by page.
 */
static void cmd_ram_crc(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct vm *vm = opaque;
	if (argc != 1) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "usage: x-ram-crc FILE");
		return;
	}
	FILE *f = fopen(argv[0], "we");
	if (!f) {
		mon_reply__error(r, MON_ERR_IO, "%s: %s", argv[0], strerror(errno));
		return;
	}
	if (vm__pause_internal(vm) < 0) {
		fclose(f);
		mon_reply__error(r, MON_ERR_INVALID_STATE, "the VM is shut down");
		return;
	}
	uint64_t n = 0;
	for (uint64_t p = 0; p < vm__nr_pages(vm); p++) {
		if (vm__page_is_zero(vm, p))
			continue;
		fprintf(f, "%llu %08x\n", (unsigned long long)p,
			crc32c(0, vm__guest_ptr(vm, vm__page_gpa(vm, p), VMM_PAGE_SIZE), VMM_PAGE_SIZE));
		n++;
	}
	vm__resume_internal(vm);
	fclose(f);
	mon_reply__u64(r, "pages", n);
}

static void cmd_info_migrate(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	(void)argv;
	(void)opaque;
	if (no_args(r, argc, "info migrate"))
		mon_reply__str(r, "state", "none");
}

int vm_commands__register(struct monitor *m, struct vm *vm)
{
	monitor__add_command(m, "info status", NULL, "run state of the VM", cmd_info_status, vm);
	monitor__add_command(m, "info registers", NULL, "registers of every vCPU",
			     cmd_info_registers, vm);
	monitor__add_command(m, "info migrate", NULL, "protection state", cmd_info_migrate, vm);
	monitor__add_command(m, "stop", NULL, "pause the VM", cmd_stop, m);
	monitor__add_command(m, "cont", NULL, "resume the VM", cmd_cont, m);
	monitor__add_command(m, "quit", NULL, "stop the VM and exit ftvm", cmd_quit, vm);
	monitor__add_command(m, "savevm", "[-f] FILE",
			     "save the complete VM state to FILE (-f: replace it if it exists)",
			     cmd_savevm, vm);
	return 0;
}

void monitor__add_test_commands(struct monitor *m)
{
	monitor__add_command(m, "x-ram-crc", "FILE",
			     "test only: a CRC of every nonzero guest page into FILE", cmd_ram_crc,
			     monitor__vm(m));
}
