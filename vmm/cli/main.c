/*
 * main.c - the ftvm command: parse flags, open backends, build the VM,
 * serve the monitor, run until the guest exits or `quit`.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock/clock.h"
#include "eventtap/eventtap.h"
#include "ft/ft.h"
#include "transport/transport.h"
#include "vmm/cli/options.h"
#include "vmm/vmm.h"

#define FTVM_VERSION "0.1.0"

/* SIGINT/SIGTERM/SIGHUP end the VM cleanly, like `quit`. */
/*
 * SIGINT/SIGTERM/SIGHUP end the VM. SIGUSR2 is main's own "done, exit":
 * main joins this thread before the VM is freed, so a signal that comes
 * as the VMM ends never reaches a freed VM.
 */
static void *signal_thread(void *arg)
{
	struct vm *vm = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	if (sigwait(&set, &sig) == 0 && sig != SIGUSR2) {
		fprintf(stderr, "ftvm: %s received, stopping the VM\n", strsignal(sig));
		vm__request_quit(vm, 128 + sig);
	}
	return NULL;
}

/* Writes "PID\n" to path (replacing an old file). */
static int pidfile_write(const char *path, char *err, size_t errlen)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, (size_t)n) != n) {
		snprintf(err, errlen, "--pidfile %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	close(fd);
	return 0;
}

/* Removes path if it still names this process (a successor may own it). */
static void pidfile_remove(const char *path)
{
	char buf[32] = "";
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	bool mine = fgets(buf, sizeof(buf), f) && strtol(buf, NULL, 10) == (long)getpid();
	fclose(f);
	if (mine)
		unlink(path);
}

/* A fatal disk error: the cluster moves the guest off this host (ftvmd
 * takes it as it takes a machine check), through the event hook. */
static void on_disk_fatal(void *opaque, const char *what)
{
	struct ft *ft = opaque;
	int ret = ft__report_event(ft, "io-error", what);
	if (ret != -EBUSY)
		fprintf(stderr, "ftvm: fatal disk error: %s%s\n", what,
			ret == -ENOENT ? " (no --event-hook to report it to)" : "");
}

/* x-disk-fault eio|enxio N: test only, the next N writes/flushes fail. */
static void cmd_disk_fault(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct disk *d = opaque;
	char *end;
	unsigned long n = argc == 2 ? strtoul(argv[1], &end, 10) : 0;
	bool flush_only = argc == 2 && !strcmp(argv[0], "eio-flush");
	int err = argc == 2 && (!strcmp(argv[0], "eio") || flush_only) ? EIO
		  : argc == 2 && !strcmp(argv[0], "enxio") ? ENXIO : 0;
	if (!err || !*argv[1] || *end || n > 1000000) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "usage: x-disk-fault eio|eio-flush|enxio COUNT");
		return;
	}
	if (flush_only)
		disk_raw__inject_flush_error(d, err, (unsigned)n);
	else
		disk_raw__inject_error(d, err, (unsigned)n);
	mon_reply__str(r, "disk_fault", argv[0]);
}

int main(int argc, char **argv)
{
	struct ftvm_options o;
	char err[VMM_ERR_LEN] = "";
	struct disk disk = { 0 };
	struct net net = { 0 };
	struct vm *vm = NULL;
	struct monitor *mon = NULL;
	struct eventtap *et = NULL;
	struct ft *ft = NULL;
	struct xport_tls *tls = NULL;
	struct et_policy_cfg policy = { .policy = ET_POLICY_EVENT };
	pthread_t sig_tid;
	bool sig_started = false;
	int serial_fd = STDOUT_FILENO, code = 1, ret;
	sigset_t set;

	if (options__parse(&o, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "ftvm: %s\n", err);
		return 2;
	}
	if (o.help) {
		options__usage(stdout);
		return 0;
	}
	if (o.version) {
		printf("ftvm %s\n", FTVM_VERSION);
		return 0;
	}

	/* Only the signal thread takes these; every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (o.pidfile && pidfile_write(o.pidfile, err, sizeof(err)) < 0) {
		fprintf(stderr, "ftvm: %s\n", err);
		return 1;
	}
	if (strncmp(o.serial, "file:", 5) == 0) {
		serial_fd = open(o.serial + 5, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (serial_fd < 0) {
			fprintf(stderr, "ftvm: --serial: cannot open %s: %s\n", o.serial + 5,
				strerror(errno));
			return 1;
		}
	}
	if (o.ft_policy && et_policy__parse(o.ft_policy, &policy, err, sizeof(err)) < 0) {
		fprintf(stderr, "ftvm: --ft-policy: %s\n", err);
		return 2;
	}
	if (o.drive_file && disk_raw__open(&disk, o.drive_file, false, err) < 0)
		goto out;
	if (o.tap_ifname && net_tap__open(&net, o.tap_ifname, err) < 0)
		goto out;
	/* Every guest output passes the event tap: it holds output while the
	 * VM is protected and lets it straight through otherwise. */
	if (eventtap__create(o.drive_file ? &disk : NULL, o.tap_ifname ? &net : NULL, &et) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}

	struct vm_config cfg = {
		.name = o.name,
		.mem_size = o.mem_size,
		.dirty_mode = o.dirty_mode,
		.nr_vcpus = o.smp,
		.kernel = o.kernel,
		.cmdline = o.append,
		.disk = eventtap__disk(et),
		.drive_mode = o.drive_mode,
		.net = eventtap__net(et),
		.serial_fd = serial_fd,
		.x_no_tsc_leaf = o.x_no_tsc_leaf,
		.x_no_kvmclock = o.x_no_kvmclock,
		.x_cpu_vendor = o.x_cpu_vendor,
		.x_cpuid_word = o.x_cpuid_word,
		.x_cpuid_value = o.x_cpuid_value,
	};
	memcpy(cfg.mac, o.mac, 6);
	if (o.restore)
		ret = vm__create_from_snapshot(&cfg, o.restore, &vm, err);
	else
		ret = vm__create(&cfg, &vm, err);
	if (ret == 0 && o.restore) {
		/* Guest time after a restore: the snapshot's, or plus the wall
		 * time since the save (--restore-clock). */
		enum clock_policy cp = CLOCK_CONTINUE;
		struct vm_clock rec;
		struct clock_result cr;
		if (o.restore_clock)
			clock_policy__parse(o.restore_clock, &cp);
		ret = vm__snapshot_clock(o.restore, &rec, err);
		if (!ret)
			ret = clock__resume(vm, &rec, cp, &cr, err);
		if (!ret)
			fprintf(stderr, "ftvm: guest clock: %s, %.3f s since the save, guest TSC "
				"moved %.3f s (%s)\n", clock_policy__name(cp),
				(double)(cp == CLOCK_CATCH_UP ? cr.elapsed_ns : 0) / 1e9,
				(double)cr.step_ns / 1e9, cr.method);
	}
	if (ret < 0) {
		if (o.restore) {
			char msg[VMM_ERR_LEN + 64];
			snprintf(msg, sizeof(msg), "--restore %s: %s", o.restore, err);
			snprintf(err, sizeof(err), "%s", msg);
		}
		goto out;
	}
	if (o.tls_creds) {
		char terr[512];
		if (xport_tls__load(o.tls_creds, &tls, terr, sizeof(terr)) < 0) {
			snprintf(err, sizeof(err), "%s", terr);
			ret = -EINVAL;
			goto out;
		}
		fprintf(stderr, "ftvm: tls: %s; records encrypted in %s\n", xport_tls__describe(tls),
			xport_tls__offload(tls));
	} else {
		fprintf(stderr, "ftvm: warning: no --tls-creds: the replication link is neither "
			"authenticated nor encrypted; anyone who reaches it can read or replace the "
			"guest (docs/security.md)\n");
	}
	struct ft_config fcfg = {
		.vm = vm,
		.tls = tls,
		.test_mode = o.test_mode,
		.et = et,
		.disk = o.drive_file ? &disk : NULL,
		.drive_mode = o.drive_mode,
		.policy = policy,
		.heartbeat_ms = o.heartbeat_ms,
		.heartbeat_timeout_ms = o.heartbeat_timeout_ms,
		.compress = !o.no_compress,
		.failover_on_peer_loss = o.failover_on_peer_loss,
		.advertise_tsc_khz = o.x_tsc_khz,
		.event_hook = o.event_hook,
		.audit_log = o.audit_log,
	};
	memcpy(fcfg.mac, o.mac, 6);
	if (ft__create(&fcfg, &ft, err) < 0)
		goto out;
	if (disk.be)
		disk_raw__on_fatal_error(&disk, on_disk_fatal, ft);
	if (o.monitor) {
		if (monitor__create(vm, o.monitor, &mon, err) < 0)
			goto out;
		ft__register_monitor(ft, mon);
		if (o.test_mode)
			monitor__add_test_commands(mon);
		if (disk.be && o.test_mode)
			monitor__add_command(mon, "x-disk-fault", "eio|eio-flush|enxio COUNT",
					     "test only: the next COUNT disk writes/flushes fail",
					     cmd_disk_fault, &disk);
	}
	/* The secondary listens before its monitor answers: whoever waits for
	 * the monitor (a test, the cluster agent) may protect towards it at once. */
	if (o.incoming && ft__listen(ft, o.incoming, err) < 0)
		goto out;
	if (mon && monitor__start(mon) < 0)
		goto out;
	pthread_create(&sig_tid, NULL, signal_thread, vm);
	sig_started = true;

	if (o.incoming) {
		/* The secondary: the guest does not run here until failover. */
		fprintf(stderr, "ftvm: secondary: waiting for a primary on %s\n", o.incoming);
	} else if (vm__start(vm) < 0) {
		snprintf(err, sizeof(err), "cannot start vCPU threads");
		goto out;
	}
	code = vm__wait(vm);
	err[0] = '\0';
out:
	if (err[0])
		fprintf(stderr, "ftvm: %s\n", err);
	if (sig_started) {
		pthread_kill(sig_tid, SIGUSR2);
		pthread_join(sig_tid, NULL);
	}
	ft__unregister_monitor(ft);	/* its threads still run: no events to a gone monitor */
	monitor__destroy(mon);
	if (disk.be)
		disk_raw__on_fatal_error(&disk, NULL, NULL);	/* ft goes next */
	ft__destroy(ft);
	xport_tls__free(tls);
	vm__destroy(vm);
	eventtap__destroy(et);
	if (net.be)
		net_tap__close(&net);
	if (disk.be)
		disk_raw__close(&disk);
	if (serial_fd != STDOUT_FILENO)
		close(serial_fd);
	if (o.pidfile)
		pidfile_remove(o.pidfile);
	return code;
}
