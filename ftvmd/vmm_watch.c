/*
 * vmm_watch.c - the local VMM as its monitor events tell it (vmm_watch.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <qb/qblog.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "ftvmd/vmm_watch.h"

struct vmm_watch {
	qb_loop_t *loop;
	char sock[108];
	char dir[108], base[108];
	struct vmm_watch_ops ops;
	void *opaque;
	int fd;			/* the events connection, -1: none */
	int pidfd;		/* the VMM process, -1: none */
	pid_t pid;
	int ino;		/* inotify on the socket's directory */
	char buf[65536];
	size_t len;
	unsigned retries;	/* connect attempts left after a socket appeared */
	qb_loop_timer_handle retry_timer;
	struct vmm_status st;
};

static void try_connect(void *data);

/* The string after "KEY":" in one of the monitor's lines (our values have no quotes). */
static bool json_str(const char *line, const char *key, char *buf, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = strstr(line, pat);
	if (!p)
		return false;
	p += strlen(pat);
	size_t n = strcspn(p, "\"");
	if (n >= len)
		n = len - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

static bool json_u64(const char *line, const char *key, uint64_t *v)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(line, pat);
	if (!p)
		return false;
	*v = strtoull(p + strlen(pat), NULL, 10);
	return true;
}

const struct vmm_status *vmm_watch__status(const struct vmm_watch *w)
{
	return &w->st;
}

static void drop(struct vmm_watch *w)
{
	if (w->fd < 0)
		return;
	qb_loop_poll_del(w->loop, w->fd);
	close(w->fd);
	w->fd = -1;
	w->len = 0;
	bool was = w->st.up;
	memset(&w->st, 0, sizeof(w->st));
	w->st.pid = w->pid;
	if (was)
		w->ops.changed(w->opaque, &w->st, "gone");
}

/* A line from the VMM: the info migrate answer or an event. */
static void line(struct vmm_watch *w, char *l)
{
	char role[16] = "", ev[32] = "";
	bool snapshot = !strncmp(l, "{\"return\":{\"state\":", 19);
	bool event = !strncmp(l, "{\"event\":", 9);
	if (!snapshot && !event)
		return;
	if (event)
		json_str(l, "event", ev, sizeof(ev));
	struct vmm_status n = w->st;
	if (!json_str(l, "state", n.state, sizeof(n.state)))
		return;		/* STOP, RESUME: no protection state */
	if (json_str(l, "role", role, sizeof(role)))
		n.primary = !strcmp(role, "primary");
	char session[24] = "";
	if (json_str(l, "session", session, sizeof(session)))
		n.session = strtoull(session, NULL, 16);
	json_str(l, "peer", n.peer, sizeof(n.peer));
	if (snapshot) {
		if (!json_u64(l, n.primary ? "acked_epoch" : "committed_epoch", &n.epoch))
			n.epoch = 0;
	} else if (strcmp(ev, "FAILOVER")) {
		json_u64(l, "epoch", &n.epoch);
	}
	n.up = true;
	w->st = n;
	w->ops.changed(w->opaque, &w->st, snapshot ? "SNAPSHOT" : ev);
}

static int readable(int fd, int revents, void *data)
{
	struct vmm_watch *w = data;
	(void)revents;
	ssize_t r = read(fd, w->buf + w->len, sizeof(w->buf) - 1 - w->len);
	if (r <= 0) {
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		qb_log(LOG_INFO, "the VMM closed its monitor");
		drop(w);
		return 0;
	}
	w->len += (size_t)r;
	w->buf[w->len] = '\0';
	char *start = w->buf, *nl;
	while ((nl = strchr(start, '\n'))) {
		*nl = '\0';
		/* the text-mode prompt comes before the first JSON answer */
		char *l = start;
		if (!strncmp(l, "(ftvm) ", 7))
			l += 7;
		line(w, l);
		start = nl + 1;
	}
	size_t rest = w->len - (size_t)(start - w->buf);
	memmove(w->buf, start, rest);
	w->len = rest;
	if (w->len == sizeof(w->buf) - 1)
		w->len = 0;	/* a line longer than anything the monitor writes */
	return 0;
}

static int pid_exited(int fd, int revents, void *data)
{
	struct vmm_watch *w = data;
	(void)revents;
	qb_loop_poll_del(w->loop, fd);
	close(fd);
	w->pidfd = -1;
	pid_t pid = w->pid;
	w->pid = 0;
	drop(w);
	w->ops.exited(w->opaque, pid);
	return 0;
}

static void watch_pid(struct vmm_watch *w, pid_t pid)
{
	if (pid == w->pid && w->pidfd >= 0)
		return;
	if (w->pidfd >= 0) {
		qb_loop_poll_del(w->loop, w->pidfd);
		close(w->pidfd);
		w->pidfd = -1;
	}
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		qb_log(LOG_WARNING, "pidfd_open(%d): %s", (int)pid, strerror(errno));
		return;
	}
	w->pid = pid;
	w->pidfd = fd;
	qb_loop_poll_add(w->loop, QB_LOOP_HIGH, fd, POLLIN, w, pid_exited);
}

static int connect_sock(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void try_connect(void *data)
{
	struct vmm_watch *w = data;
	if (w->fd >= 0)
		return;
	int fd = connect_sock(w->sock);
	if (fd < 0) {
		/* bound but not listening yet (or gone again): a few more tries */
		if (w->retries) {
			w->retries--;
			qb_loop_timer_add(w->loop, QB_LOOP_LOW, 50 * QB_TIME_NS_IN_MSEC, w, try_connect,
					  &w->retry_timer);
		}
		return;
	}
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		close(fd);
		return;
	}
	static const char hello[] = "json\nevents\ninfo migrate\n";
	if (write(fd, hello, sizeof(hello) - 1) != (ssize_t)sizeof(hello) - 1) {
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	w->fd = fd;
	w->len = 0;
	qb_loop_poll_add(w->loop, QB_LOOP_HIGH, fd, POLLIN, w, readable);
	watch_pid(w, cred.pid);
	qb_log(LOG_INFO, "following the VMM's events (pid %d, %s)", (int)cred.pid, w->sock);
}

static int inotified(int fd, int revents, void *data)
{
	struct vmm_watch *w = data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	(void)revents;
	ssize_t r = read(fd, buf, sizeof(buf));
	for (char *p = buf; r > 0 && p < buf + r;) {
		struct inotify_event *e = (struct inotify_event *)p;
		if (e->len && !strcmp(e->name, w->base) && w->fd < 0) {
			w->retries = 40;
			try_connect(w);
		}
		p += sizeof(*e) + e->len;
	}
	return 0;
}

int vmm_watch__create(qb_loop_t *loop, const char *sock, const struct vmm_watch_ops *ops, void *opaque,
		      struct vmm_watch **out)
{
	struct vmm_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->loop = loop;
	w->ops = *ops;
	w->opaque = opaque;
	w->fd = w->pidfd = -1;
	snprintf(w->sock, sizeof(w->sock), "%s", sock);
	char tmp[108];
	snprintf(tmp, sizeof(tmp), "%s", sock);
	snprintf(w->dir, sizeof(w->dir), "%s", dirname(tmp));
	snprintf(tmp, sizeof(tmp), "%s", sock);
	snprintf(w->base, sizeof(w->base), "%s", basename(tmp));
	w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ino < 0) {
		free(w);
		return -errno;
	}
	/* The directory may not exist yet (the agent makes it at its first
	 * start, and /run is a tmpfs): make it, so that it can be watched. */
	for (char *p = w->dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(w->dir, 0755);
			*p = '/';
		}
	mkdir(w->dir, 0755);
	if (inotify_add_watch(w->ino, w->dir, IN_CREATE | IN_ATTRIB | IN_MOVED_TO) < 0)
		qb_log(LOG_WARNING, "inotify on %s: %s (a VMM started later is found only on restart)",
		       w->dir, strerror(errno));
	qb_loop_poll_add(loop, QB_LOOP_HIGH, w->ino, POLLIN, w, inotified);
	try_connect(w);
	*out = w;
	return 0;
}

int vmm_watch__refresh(struct vmm_watch *w)
{
	char ans[16384];
	if (w->fd < 0)
		return -ENOTCONN;
	int ret = vmm_watch__command(w->sock, "info migrate", ans, sizeof(ans), 2000);
	if (ret < 0)
		return ret;
	ans[strcspn(ans, "\n")] = '\0';
	line(w, ans);
	return 0;
}

void vmm_watch__destroy(struct vmm_watch *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->pidfd >= 0)
		close(w->pidfd);
	close(w->ino);
	free(w);
}

int vmm_watch__command(const char *sock, const char *cmd, char *out, size_t outlen, int timeout_ms)
{
	int fd = connect_sock(sock);
	char buf[8192];
	size_t len = 0;
	int lines = 0;

	if (fd < 0)
		return fd;
	char req[512];
	int n = snprintf(req, sizeof(req), "json\n%s\n", cmd);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -EIO;
	}
	/* greeting + prompt, {"return":{}} for json, then the answer line */
	while (len < sizeof(buf) - 1 && lines < 3) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) <= 0)
			break;
		ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			lines += buf[len + (size_t)i] == '\n';
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	char *last = strstr(buf, "{\"return\":{}}\n");
	last = last ? last + 14 : buf;
	snprintf(out, outlen, "%s", last);
	return lines >= 3 ? 0 : -ETIMEDOUT;
}
