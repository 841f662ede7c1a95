/*
 * audit.c - the audit log (--audit-log FILE): one line for every step of
 * the output-commit protocol that decides what the outside may see, with
 * the protection session and the checkpoint it concerns, so a failing run
 * names the step where it went wrong:
 *
 *   <CLOCK_MONOTONIC ns> <vm> <role> session=<16 hex> epoch=<n> <event> [detail]
 *
 * Events: primary: commit-sent, ack, released, release-failed, revoking,
 * revoked, cancel-confirmed, cancel-unconfirmed, handover-sent,
 * handed-over, stopped, unprotected; secondary: committed, refused,
 * stray, unusable, failover. Each line is one write(2) to a file opened
 * O_APPEND: it is there even if the process is killed the next instant,
 * and lines of several threads never interleave. Off (fd -1) unless asked
 * for; the descriptor is set once, before any thread runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ft/ft_internal.h"

int ft_audit__open(struct ft *ft, const char *path, char *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		int e = errno;
		snprintf(err, VMM_ERR_LEN, "--audit-log %s: %s", path, strerror(e));
		return -e;
	}
	ft->audit_fd = fd;
	return 0;
}

void ft_audit(struct ft *ft, const char *event, uint64_t epoch, const char *fmt, ...)
{
	char line[512];
	int n;

	if (ft->audit_fd < 0)
		return;
	pthread_mutex_lock(&ft->lock);
	uint64_t session = ft->session;
	bool primary = ft->primary_role;
	pthread_mutex_unlock(&ft->lock);
	n = snprintf(line, sizeof(line), "%llu %s %s session=%016llx epoch=%llu %s",
		     (unsigned long long)ft__now_ns(), vm__name(ft->cfg.vm),
		     primary ? "primary" : "secondary", (unsigned long long)session,
		     (unsigned long long)epoch, event);
	if (fmt && n > 0 && (size_t)n < sizeof(line) - 2) {
		va_list ap;
		line[n++] = ' ';
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += m < (int)(sizeof(line) - (size_t)n - 1) ? m : (int)(sizeof(line) - (size_t)n - 2);
	}
	if (n <= 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(ft->audit_fd, line, (size_t)n);
}
