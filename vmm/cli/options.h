/* options.h - the ftvm command line, parsed (vmm/cli/). */
#ifndef FTVM_CLI_OPTIONS_H
#define FTVM_CLI_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/vmm.h"

struct ftvm_options {
	uint64_t mem_size;
	unsigned smp;
	const char *kernel;
	const char *append;
	const char *drive_file;
	enum vm_drive_mode drive_mode;
	const char *tap_ifname;
	uint8_t mac[6];
	const char *serial;		/* "stdio" or "file:PATH" */
	const char *monitor;		/* "unix:PATH" or "stdio" or NULL */
	const char *name;
	const char *restore;
	const char *incoming;		/* "tcp:ADDR:PORT" */
	char incoming_host[256];
	uint16_t incoming_port;
	const char *ft_policy;		/* event|epoch[:MS]|hybrid[...] */
	bool failover_on_peer_loss;
	uint32_t heartbeat_ms, heartbeat_timeout_ms;
	bool no_compress;
	const char *restore_clock;	/* continue | catch-up */
	enum vm_dirty_mode dirty_mode;	/* --dirty-log (default auto) */
	bool test_mode;			/* --test-mode: the --x-* flags and x-* commands exist */
	const char *x_flag;		/* the first --x-* flag given (refused without test_mode) */
	uint32_t x_tsc_khz;		/* test-only: TSC rate to advertise to a peer */
	bool x_no_tsc_leaf, x_no_kvmclock;	/* test-only: hide the guest's clock sources */
	const char *x_cpu_vendor;	/* test-only: CPU vendor to announce */
	unsigned x_cpuid_word;		/* test-only: model word to fake, + 1 (0: none) */
	uint32_t x_cpuid_value;
	const char *event_hook;		/* sh -c command run on peer loss (ft.h) */
	const char *pidfile;		/* written at start, removed at exit */
	const char *tls_creds;		/* --tls-creds psk:FILE | x509:DIR (NULL: plaintext link) */
	const char *audit_log;		/* ft's protocol steps, appended (ft/audit.c) */
	bool help, version;
	/* storage for option values split out of --drive / --netdev */
	char drive_buf[4096], netdev_buf[256];
};

/*
 * Parses argv into opts. Returns 0, or -EINVAL with err naming the flag
 * and what is wrong with it. Checks form only; files are opened later.
 */
int options__parse(struct ftvm_options *opts, int argc, char **argv, char *err, size_t errlen);
/* "256M", "1G", "1024" (MiB, as in QEMU), "2048k". */
int options__parse_size(const char *s, uint64_t *out);
int options__parse_mac(const char *s, uint8_t mac[6]);
void options__usage(FILE *f);

#endif
