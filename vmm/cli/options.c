/*
 * options.c - parses ftvm's flags. They follow QEMU's where QEMU has one
 * (--memory/-m, --smp, --kernel, --append, --drive, --netdev, --serial,
 * --monitor, --name, --incoming), so operators feel at home.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/cli/options.h"

void options__usage(FILE *f)
{
	fputs("usage: ftvm --kernel FILE [options]\n"
	      "  --memory SIZE          guest RAM, e.g. 256M, 1G (plain number: MiB; default 128M)\n"
	      "  --smp N                number of vCPUs (default 1)\n"
	      "  --kernel FILE          ELF kernel with a PVH entry note\n"
	      "  --append STRING        guest command line\n"
	      "  --drive file=PATH[,mode=shared|replicated]\n"
	      "                         raw disk image as virtio-blk\n"
	      "  --netdev tap,ifname=NAME[,mac=MAC]\n"
	      "                         virtio-net on a tap device\n"
	      "  --serial stdio|file:PATH\n"
	      "                         guest console (default stdio)\n"
	      "  --monitor unix:PATH|stdio\n"
	      "                         the monitor (see docs/monitor.md)\n"
	      "  --name NAME            name of the VM\n"
	      "  --restore FILE         continue a VM saved with 'savevm FILE'\n"
	      "  --incoming tcp:ADDR:PORT\n"
	      "                         be a secondary: wait for a primary's checkpoints\n"
	      "  --ft-policy event|epoch[:MS]|hybrid[:WINDOW_US[:MAX_MS]]\n"
	      "                         when the primary checkpoints (default event)\n"
	      "  --failover-on-peer-loss\n"
	      "                         secondary: fail over on its own when the primary\n"
	      "                         is lost (setups without a cluster manager)\n"
	      "  --heartbeat-ms N       heartbeat interval on the replication link (100)\n"
	      "  --heartbeat-timeout-ms N\n"
	      "                         peer lost after N ms of silence (500)\n"
	      "  --event-hook CMD       primary: on losing a secondary that holds a\n"
	      "                         checkpoint, run CMD (sh -c) and hold all output\n"
	      "                         until it exits 0 (the cluster agent's revocation;\n"
	      "                         see docs/operations.md)\n"
	      "  --pidfile PATH         write the process id to PATH (removed at exit)\n"
	      "  --audit-log PATH       append every release, commit, ACK, revocation and\n"
	      "                         failover, with session and checkpoint, to PATH\n"
	      "  --tls-creds psk:FILE|x509:DIR[,peer=NAME]\n"
	      "                         TLS 1.3 on the replication link, mutually\n"
	      "                         authenticated; the same on both hosts\n"
	      "                         (docs/security.md). Without it the link is\n"
	      "                         plaintext and unauthenticated\n"
	      "  --no-compress          do not LZ4-compress pages\n"
	      "  --dirty-log auto|ring|clear|bitmap\n"
	      "                         how dirty pages are collected from KVM (auto: the\n"
	      "                         dirty ring if KVM offers it, see docs/scaling.md)\n"
	      "  --restore-clock continue|catch-up\n"
	      "                         guest time after --restore: resume where the\n"
	      "                         snapshot left it (default) or add the wall time\n"
	      "                         that passed since the save\n"
	      "  --test-mode            allow the test-only flags (--x-*) and monitor commands\n"
	      "                         (x-inject, x-disk-fault, x-ram-crc, ...); never in\n"
	      "                         production\n"
	      "  --x-tsc-khz N          test only: TSC rate to announce to a peer\n"
	      "  --x-cpu-vendor NAME    test only: CPU vendor to announce (HELLO, savevm)\n"
	      "  --x-cpuid LEAF.SUB.REG=HEX\n"
	      "                         test only: a CPUID word to announce, e.g. 0x7.0.ebx=0\n"
	      "  --x-no-tsc-leaf, --x-no-kvmclock\n"
	      "                         test only: offer the guest no CPUID leaf 0x40000010 /\n"
	      "                         no kvmclock\n"
	      "  --help, --version\n", f);
}

int options__parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	unsigned shift = 20;	/* no suffix: MiB, like QEMU's -m */
	if (*end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -EINVAL;
		}
		end++;
		if (*end == 'i' || *end == 'B')	/* "1GiB", "1GB" */
			end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
		if (*end)
			return -EINVAL;
	}
	if (v > (~0ull >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int options__parse_mac(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		char *end;
		if (!((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'f') ||
		      (s[0] >= 'A' && s[0] <= 'F')))
			return -EINVAL;
		unsigned long b = strtoul(s, &end, 16);
		if (end - s != 2 || b > 0xff || (i < 5 && *end != ':') || (i == 5 && *end))
			return -EINVAL;
		mac[i] = (uint8_t)b;
		s = end + (i < 5);
	}
	if (mac[0] & 1)
		return -EINVAL;	/* a multicast address cannot be a NIC's */
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* --drive file=PATH[,mode=shared|replicated] */
static int parse_drive(struct ftvm_options *o, const char *v, char *err, size_t errlen)
{
	char *save, *tok;

	if (strlen(v) >= sizeof(o->drive_buf)) {
		snprintf(err, errlen, "--drive: value too long");
		return -EINVAL;
	}
	snprintf(o->drive_buf, sizeof(o->drive_buf), "%s", v);
	o->drive_file = NULL;
	for (tok = strtok_r(o->drive_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "file=", 5) == 0 && tok[5]) {
			o->drive_file = tok + 5;
		} else if (strcmp(tok, "mode=shared") == 0) {
			o->drive_mode = VM_DRIVE_SHARED;
		} else if (strcmp(tok, "mode=replicated") == 0) {
			o->drive_mode = VM_DRIVE_REPLICATED;
		} else {
			snprintf(err, errlen,
				 "--drive: unknown or malformed option '%s' "
				 "(expected file=PATH[,mode=shared|replicated])", tok);
			return -EINVAL;
		}
	}
	if (!o->drive_file) {
		snprintf(err, errlen, "--drive: file=PATH is required");
		return -EINVAL;
	}
	return 0;
}

/* --netdev tap,ifname=NAME[,mac=MAC] */
static int parse_netdev(struct ftvm_options *o, const char *v, char *err, size_t errlen)
{
	char *save, *tok;

	if (strlen(v) >= sizeof(o->netdev_buf)) {
		snprintf(err, errlen, "--netdev: value too long");
		return -EINVAL;
	}
	snprintf(o->netdev_buf, sizeof(o->netdev_buf), "%s", v);
	tok = strtok_r(o->netdev_buf, ",", &save);
	if (!tok || strcmp(tok, "tap") != 0) {
		snprintf(err, errlen, "--netdev: only 'tap' is supported (tap,ifname=NAME[,mac=MAC])");
		return -EINVAL;
	}
	o->tap_ifname = NULL;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (strncmp(tok, "ifname=", 7) == 0 && tok[7] && strlen(tok + 7) < 16) {
			o->tap_ifname = tok + 7;
		} else if (strncmp(tok, "mac=", 4) == 0) {
			if (options__parse_mac(tok + 4, o->mac) < 0) {
				snprintf(err, errlen,
					 "--netdev: bad MAC '%s' (expected six hex bytes like "
					 "52:54:00:12:34:56, unicast)", tok + 4);
				return -EINVAL;
			}
		} else {
			snprintf(err, errlen, "--netdev: unknown or malformed option '%s'", tok);
			return -EINVAL;
		}
	}
	if (!o->tap_ifname) {
		snprintf(err, errlen, "--netdev: ifname=NAME (1-15 characters) is required");
		return -EINVAL;
	}
	return 0;
}

/* tcp:ADDR:PORT, ADDR may be empty or 0 (any) or [v6] */
static int parse_incoming(struct ftvm_options *o, const char *v, char *err, size_t errlen)
{
	const char *colon;
	unsigned long port;

	if (strncmp(v, "tcp:", 4) != 0 || !(colon = strrchr(v + 4, ':'))) {
		snprintf(err, errlen, "--incoming %s: expected tcp:ADDR:PORT", v);
		return -EINVAL;
	}
	size_t hl = (size_t)(colon - (v + 4));
	if (hl >= sizeof(o->incoming_host) || parse_uint(colon + 1, 65535, &port) < 0 || !port) {
		snprintf(err, errlen, "--incoming %s: bad address or port (1-65535)", v);
		return -EINVAL;
	}
	memcpy(o->incoming_host, v + 4, hl);
	o->incoming_host[hl] = '\0';
	o->incoming_port = (uint16_t)port;
	o->incoming = v;
	return 0;
}

int options__parse(struct ftvm_options *o, int argc, char **argv, char *err, size_t errlen)
{
	static const uint8_t default_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

	memset(o, 0, sizeof(*o));
	o->mem_size = 128ull << 20;
	o->smp = 1;
	o->serial = "stdio";
	memcpy(o->mac, default_mac, 6);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		char flag[32];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			o->help = true;
			continue;
		}
		if (strcmp(a, "--version") == 0) {
			o->version = true;
			continue;
		}
		if (strcmp(a, "--failover-on-peer-loss") == 0) {
			o->failover_on_peer_loss = true;
			continue;
		}
		if (strcmp(a, "--no-compress") == 0) {
			o->no_compress = true;
			continue;
		}
		if (strcmp(a, "--test-mode") == 0) {
			o->test_mode = true;
			continue;
		}
		if (strncmp(a, "--x-", 4) == 0 && !o->x_flag)
			o->x_flag = a;	/* allowed only with --test-mode (checked at the end) */
		if (strcmp(a, "--x-no-tsc-leaf") == 0 || strcmp(a, "--x-no-kvmclock") == 0) {
			*(a[7] == 't' ? &o->x_no_tsc_leaf : &o->x_no_kvmclock) = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument '%s' (flags start with --)", a);
			return -EINVAL;
		}
		/* --flag=value or --flag value */
		const char *eq = strchr(a, '=');
		size_t fl = eq ? (size_t)(eq - a) : strlen(a);
		if (fl >= sizeof(flag)) {
			snprintf(err, errlen, "unknown flag '%.40s'", a);
			return -EINVAL;
		}
		memcpy(flag, a, fl);
		flag[fl] = '\0';
		static const char *const known[] = {
			"--memory", "--smp", "--kernel", "--append", "--drive", "--netdev",
			"--serial", "--monitor", "--name", "--restore", "--incoming",
			"--ft-policy", "--heartbeat-ms", "--heartbeat-timeout-ms",
			"--restore-clock", "--x-tsc-khz", "--event-hook", "--pidfile",
			"--x-cpu-vendor", "--x-cpuid", "--audit-log", "--dirty-log", "--tls-creds",
		};
		bool ok = false;
		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			ok |= strcmp(flag, known[k]) == 0;
		if (!ok) {
			snprintf(err, errlen, "unknown flag '%s' (see --help)", flag);
			return -EINVAL;
		}
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			snprintf(err, errlen, "%s needs a value", flag);
			return -EINVAL;
		}

		if (strcmp(flag, "--memory") == 0) {
			if (options__parse_size(val, &o->mem_size) < 0 || o->mem_size < (16ull << 20) ||
			    o->mem_size % (2ull << 20) || o->mem_size > (64ull << 30)) {
				snprintf(err, errlen,
					 "--memory %s: expected a size like 256M or 1G, a multiple "
					 "of 2M between 16M and 64G", val);
				return -EINVAL;
			}
		} else if (strcmp(flag, "--smp") == 0) {
			unsigned long n;
			if (parse_uint(val, VMM_MAX_VCPUS, &n) < 0 || n < 1) {
				snprintf(err, errlen, "--smp %s: expected a number from 1 to %d", val,
					 VMM_MAX_VCPUS);
				return -EINVAL;
			}
			o->smp = (unsigned)n;
		} else if (strcmp(flag, "--kernel") == 0) {
			o->kernel = val;
		} else if (strcmp(flag, "--append") == 0) {
			o->append = val;
		} else if (strcmp(flag, "--drive") == 0) {
			if (parse_drive(o, val, err, errlen) < 0)
				return -EINVAL;
		} else if (strcmp(flag, "--netdev") == 0) {
			if (parse_netdev(o, val, err, errlen) < 0)
				return -EINVAL;
		} else if (strcmp(flag, "--serial") == 0) {
			if (strcmp(val, "stdio") != 0 && !(strncmp(val, "file:", 5) == 0 && val[5])) {
				snprintf(err, errlen, "--serial %s: expected stdio or file:PATH", val);
				return -EINVAL;
			}
			o->serial = val;
		} else if (strcmp(flag, "--monitor") == 0) {
			if (strcmp(val, "stdio") != 0 && !(strncmp(val, "unix:", 5) == 0 && val[5])) {
				snprintf(err, errlen, "--monitor %s: expected unix:PATH or stdio", val);
				return -EINVAL;
			}
			o->monitor = val;
		} else if (strcmp(flag, "--name") == 0) {
			if (!*val || strlen(val) > 63) {
				snprintf(err, errlen, "--name: 1-63 characters");
				return -EINVAL;
			}
			o->name = val;
		} else if (strcmp(flag, "--restore") == 0) {
			o->restore = val;
		} else if (strcmp(flag, "--restore-clock") == 0) {
			if (strcmp(val, "continue") != 0 && strcmp(val, "catch-up") != 0) {
				snprintf(err, errlen, "--restore-clock %s: expected continue or catch-up", val);
				return -EINVAL;
			}
			o->restore_clock = val;
		} else if (strcmp(flag, "--dirty-log") == 0) {
			if (vm__parse_dirty_mode(val, &o->dirty_mode) < 0) {
				snprintf(err, errlen, "--dirty-log %s: expected auto, ring, clear or bitmap", val);
				return -EINVAL;
			}
		} else if (strcmp(flag, "--x-tsc-khz") == 0) {
			unsigned long n;
			if (parse_uint(val, 100000000, &n) < 0 || !n) {
				snprintf(err, errlen, "--x-tsc-khz %s: expected kHz", val);
				return -EINVAL;
			}
			o->x_tsc_khz = (uint32_t)n;
		} else if (strcmp(flag, "--x-cpu-vendor") == 0) {
			if (!*val || strlen(val) > 12) {
				snprintf(err, errlen, "--x-cpu-vendor %s: 1-12 characters", val);
				return -EINVAL;
			}
			o->x_cpu_vendor = val;
		} else if (strcmp(flag, "--x-cpuid") == 0) {
			const char *v = strchr(val, '=');
			char word[32], *end;
			unsigned w;
			unsigned long n = 0;
			if (v && (size_t)(v - val) < sizeof(word)) {
				memcpy(word, val, (size_t)(v - val));
				word[v - val] = '\0';
				errno = 0;
				n = strtoul(v + 1, &end, 16);
			}
			if (!v || (size_t)(v - val) >= sizeof(word) || !v[1] || *end || errno ||
			    n > 0xffffffffu || vm_cpu_model__parse_word(word, &w) < 0) {
				snprintf(err, errlen, "--x-cpuid %s: expected LEAF.SUB.REG=HEX for a "
					 "compared word, e.g. 0x7.0.ebx=0", val);
				return -EINVAL;
			}
			o->x_cpuid_word = w + 1;
			o->x_cpuid_value = (uint32_t)n;
		} else if (strcmp(flag, "--event-hook") == 0) {
			if (!*val || strlen(val) >= 512) {
				snprintf(err, errlen, "--event-hook: a command of 1-511 characters");
				return -EINVAL;
			}
			o->event_hook = val;
		} else if (strcmp(flag, "--tls-creds") == 0) {
			if (strncmp(val, "psk:", 4) != 0 && strncmp(val, "x509:", 5) != 0) {
				snprintf(err, errlen, "--tls-creds %s: expected psk:FILE or x509:DIR", val);
				return -EINVAL;
			}
			o->tls_creds = val;
		} else if (strcmp(flag, "--audit-log") == 0) {
			if (!*val) {
				snprintf(err, errlen, "--audit-log: a path is needed");
				return -EINVAL;
			}
			o->audit_log = val;
		} else if (strcmp(flag, "--pidfile") == 0) {
			if (!*val) {
				snprintf(err, errlen, "--pidfile: a path is needed");
				return -EINVAL;
			}
			o->pidfile = val;
		} else if (strcmp(flag, "--ft-policy") == 0) {
			o->ft_policy = val;	/* checked by the event tap's parser */
		} else if (strcmp(flag, "--heartbeat-ms") == 0 ||
			   strcmp(flag, "--heartbeat-timeout-ms") == 0) {
			unsigned long n;
			bool timeout = strcmp(flag, "--heartbeat-timeout-ms") == 0;
			if (parse_uint(val, 600000, &n) < 0 || n < (timeout ? 50u : 10u)) {
				snprintf(err, errlen, "%s %s: expected milliseconds, at least %u", flag, val,
					 timeout ? 50u : 10u);
				return -EINVAL;
			}
			*(timeout ? &o->heartbeat_timeout_ms : &o->heartbeat_ms) = (uint32_t)n;
		} else if (strcmp(flag, "--incoming") == 0) {
			if (parse_incoming(o, val, err, errlen) < 0)
				return -EINVAL;
		}
	}
	if (o->help || o->version)
		return 0;
	if (o->x_flag && !o->test_mode) {
		char name[40];
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(o->x_flag, "="), o->x_flag);
		snprintf(err, errlen, "%s is test only: ftvm takes it only with --test-mode", name);
		return -EINVAL;
	}
	if (!o->kernel && !o->restore) {
		snprintf(err, errlen, "--kernel FILE is required (or --restore FILE)");
		return -EINVAL;
	}
	if (o->restore && o->incoming) {
		snprintf(err, errlen, "--restore and --incoming cannot be combined");
		return -EINVAL;
	}
	if (o->monitor && strcmp(o->monitor, "stdio") == 0 && strcmp(o->serial, "stdio") == 0) {
		snprintf(err, errlen, "--monitor stdio needs --serial file:PATH (stdio is taken)");
		return -EINVAL;
	}
	return 0;
}
