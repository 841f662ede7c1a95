/*
 * monitor.c - the monitor server: a unix socket (several clients) or
 * stdio, one command per line, answered in text or, after `json`, one JSON
 * object per line (docs/monitor.md). Commands run in the monitor thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vmm/monitor/monitor_internal.h"

#define MON_MAX_CLIENTS 16
#define MON_MAX_COMMANDS 64
#define MON_LINE_MAX 4096
#define MON_MAX_ARGS 32
#define MON_GREETING "ftvm monitor 1\n"
#define MON_PROMPT "(ftvm) "
/* A client that does not take its answer within this long is dropped: one
 * that never reads must not stall the monitor (and the cluster agent). */
#define MON_WRITE_MS 2000
/* Event lines waiting for the monitor thread; more than this and the
 * oldest goes (a burst of state changes is a few lines). */
#define MON_EV_QUEUE 256

struct mon_command {
	char name[48];
	char args[64];
	char help[128];
	mon_cmd_fn fn;
	void *opaque;
};

struct mon_client {
	int in_fd, out_fd;	/* equal for sockets */
	bool json;
	bool discarding;	/* inside an over-long line */
	bool dead;		/* did not take an answer in time: closed */
	bool events;		/* sent `events`: gets the event lines */
	char buf[MON_LINE_MAX];
	size_t len;
};

struct monitor {
	struct vm *vm;
	char path[108];
	int listen_fd;
	gid_t gid;		/* ,group=: this group may use the socket too */
	bool has_gid;
	bool stdio;
	int stop_pipe[2];
	pthread_t thread;
	bool started;
	struct mon_command cmds[MON_MAX_COMMANDS];
	unsigned nr_cmds;
	struct mon_client *clients[MON_MAX_CLIENTS + 1];
	/* The event queue. W: any thread (monitor__event), R: the monitor
	 * thread; all of it under ev_lock. ev_pipe wakes the monitor thread. */
	pthread_mutex_t ev_lock;
	int ev_pipe[2];
	char *ev_q[MON_EV_QUEUE];
	unsigned ev_head, ev_count;
	uint64_t ev_dropped;
};

struct vm *monitor__vm(struct monitor *m)
{
	return m->vm;
}

int monitor__add_command(struct monitor *m, const char *name, const char *args,
			 const char *help, mon_cmd_fn fn, void *opaque)
{
	if (m->nr_cmds >= MON_MAX_COMMANDS)
		return -ENOSPC;
	struct mon_command *c = &m->cmds[m->nr_cmds++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->args, sizeof(c->args), "%s", args ? args : "");
	snprintf(c->help, sizeof(c->help), "%s", help);
	c->fn = fn;
	c->opaque = opaque;
	return 0;
}

static void cmd_help(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	struct monitor *m = opaque;
	char line[256];
	(void)argc;
	(void)argv;
	mon_reply__array_begin(r, "commands");
	for (unsigned i = 0; i < m->nr_cmds; i++) {
		struct mon_command *c = &m->cmds[i];
		snprintf(line, sizeof(line), "%s%s%s -- %s", c->name, c->args[0] ? " " : "",
			 c->args, c->help);
		mon_reply__array_str(r, line);
	}
	mon_reply__array_end(r);
}

static void cmd_json(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	(void)r; (void)argc; (void)argv; (void)opaque;	/* handled in execute() */
}

static void cmd_events(struct mon_reply *r, int argc, char **argv, void *opaque)
{
	(void)r; (void)argc; (void)argv; (void)opaque;	/* handled in execute() */
}

/* `events [on|off]` for this client (execute() knows the client). */
static void client_events(struct monitor *m, struct mon_client *cl, struct mon_reply *r, int argc,
			  char **argv)
{
	bool on = true;
	if (argc > 1 || (argc == 1 && strcmp(argv[0], "on") && strcmp(argv[0], "off"))) {
		mon_reply__error(r, MON_ERR_INVALID_PARAMETER, "usage: events [on|off]");
		return;
	}
	if (argc == 1)
		on = !strcmp(argv[0], "on");
	if (on && !cl->json) {
		mon_reply__error(r, MON_ERR_INVALID_STATE,
				 "events are JSON lines: send 'json' first (or use ftvmctl --events)");
		return;
	}
	cl->events = on;
	pthread_mutex_lock(&m->ev_lock);
	uint64_t dropped = m->ev_dropped;
	pthread_mutex_unlock(&m->ev_lock);
	mon_reply__bool(r, "events", on);
	mon_reply__u64(r, "dropped", dropped);
}

/* Splits a line into words; returns the count, or -1 if too many. */
static int split_words(char *line, char **argv)
{
	int n = 0;
	for (char *p = line; *p;) {
		while (*p == ' ' || *p == '\t' || *p == '\r')
			*p++ = '\0';
		if (!*p)
			break;
		if (n == MON_MAX_ARGS)
			return -1;
		argv[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\r')
			p++;
	}
	return n;
}

/* How many leading words of argv spell the command's name (0 = no match). */
static int match_words(const char *name, int argc, char **argv)
{
	int used = 0;
	const char *p = name;
	while (*p) {
		size_t wl = strcspn(p, " ");
		if (used >= argc || strlen(argv[used]) != wl || strncmp(argv[used], p, wl) != 0)
			return 0;
		used++;
		p += wl;
		while (*p == ' ')
			p++;
	}
	return used;
}

static void execute(struct monitor *m, struct mon_client *cl, char *line, struct sbuf *out)
{
	char *argv[MON_MAX_ARGS];
	struct mon_reply r;
	int argc = split_words(line, argv);

	mon_reply__init(&r);
	if (argc < 0) {
		mon_reply__error(&r, MON_ERR_INVALID_PARAMETER, "too many words (max %d)", MON_MAX_ARGS);
	} else if (argc == 0) {
		if (cl->json)
			mon_reply__error(&r, MON_ERR_INVALID_PARAMETER, "empty command");
	} else {
		struct mon_command *best = NULL;
		int best_len = 0;
		for (unsigned i = 0; i < m->nr_cmds; i++) {
			int n = match_words(m->cmds[i].name, argc, argv);
			if (n >= best_len && n > 0) {	/* a later registration overrides */
				best = &m->cmds[i];
				best_len = n;
			}
		}
		if (!best) {
			mon_reply__error(&r, MON_ERR_COMMAND_NOT_FOUND,
					 "unknown command '%s' (try 'help')", argv[0]);
		} else {
			if (best->fn == cmd_events)
				client_events(m, cl, &r, argc - best_len, argv + best_len);
			else
				best->fn(&r, argc - best_len, argv + best_len, best->opaque);
			if (best->fn == cmd_json && !r.error) {
				if (argc - best_len)
					mon_reply__error(&r, MON_ERR_INVALID_PARAMETER,
							 "json takes no arguments");
				else
					cl->json = true;
			}
		}
	}
	mon_reply__render(&r, cl->json, out);
	mon_reply__free(&r);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Writes the whole answer within MON_WRITE_MS, or marks the client dead. */
static void client_write(struct mon_client *cl, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t deadline = now_ms() + MON_WRITE_MS;
	while (len && !cl->dead) {
		ssize_t w = cl->in_fd == cl->out_fd ? send(cl->out_fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL)
						    : write(cl->out_fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			uint64_t now = now_ms();
			struct pollfd pfd = { .fd = cl->out_fd, .events = POLLOUT };
			if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) == 0) {
				fprintf(stderr, "ftvm: monitor: a client did not read its answer within %d ms: "
					"closed\n", MON_WRITE_MS);
				cl->dead = true;
			}
			continue;
		}
		if (w <= 0) {
			cl->dead = true;	/* the client went away */
			return;
		}
		p += w;
		len -= (size_t)w;
	}
}

static struct mon_client *client_new(int in_fd, int out_fd)
{
	struct mon_client *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->in_fd = in_fd;
	cl->out_fd = out_fd;
	client_write(cl, MON_GREETING MON_PROMPT, strlen(MON_GREETING MON_PROMPT));
	return cl;
}

static void client_free(struct monitor *m, struct mon_client *cl)
{
	if (!m->stdio || cl->in_fd != STDIN_FILENO)
		close(cl->in_fd);
	free(cl);
}

/* Reads what is there; runs every complete line. false: close the client. */
static bool client_input(struct monitor *m, struct mon_client *cl)
{
	ssize_t n = read(cl->in_fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len);
	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	cl->len += (size_t)n;
	for (;;) {
		char *nl = memchr(cl->buf, '\n', cl->len);
		struct sbuf out;
		if (!nl) {
			if (cl->len == sizeof(cl->buf)) {
				cl->discarding = true;	/* keep reading until the newline */
				cl->len = 0;
			}
			return true;
		}
		*nl = '\0';
		sbuf__init(&out);
		if (cl->discarding) {
			struct mon_reply r;
			mon_reply__init(&r);
			mon_reply__error(&r, MON_ERR_INVALID_PARAMETER,
					 "command line longer than %d bytes", MON_LINE_MAX - 1);
			mon_reply__render(&r, cl->json, &out);
			mon_reply__free(&r);
			cl->discarding = false;
		} else if (strlen(cl->buf) != (size_t)(nl - cl->buf)) {
			struct mon_reply r;
			mon_reply__init(&r);
			mon_reply__error(&r, MON_ERR_INVALID_PARAMETER, "NUL byte in command");
			mon_reply__render(&r, cl->json, &out);
			mon_reply__free(&r);
		} else {
			execute(m, cl, cl->buf, &out);
		}
		if (!cl->json)
			sbuf__append(&out, MON_PROMPT, strlen(MON_PROMPT));
		client_write(cl, out.data, out.len);
		sbuf__free(&out);
		if (cl->dead)
			return false;
		size_t rest = cl->len - (size_t)(nl + 1 - cl->buf);
		memmove(cl->buf, nl + 1, rest);
		cl->len = rest;
	}
}

/*
 * Whoever connects must be root, the VMM's own user, or (with ,group=) of
 * that group: the socket's mode says so too, but a mode can be changed and
 * a directory can be too open.
 */
static bool peer_allowed(struct monitor *m, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		fprintf(stderr, "ftvm: monitor: SO_PEERCRED: %s: client refused\n", strerror(errno));
		return false;
	}
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	if (m->has_gid) {
		if (cred.gid == m->gid)
			return true;
		struct passwd *pw = getpwuid(cred.uid);
		gid_t groups[256];
		int n = 256;
		if (pw && getgrouplist(pw->pw_name, cred.gid, groups, &n) >= 0)
			for (int i = 0; i < n; i++)
				if (groups[i] == m->gid)
					return true;
	}
	static const char no[] = "error: this monitor is not yours\n";
	(void)!send(fd, no, sizeof(no) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	fprintf(stderr, "ftvm: monitor: refused a client of uid %u (pid %d): only uid %u%s may use it\n",
		(unsigned)cred.uid, (int)cred.pid, (unsigned)geteuid(), m->has_gid ? " and its group" : "");
	return false;
}

static void drop_client(struct monitor *m, struct mon_client *cl)
{
	for (unsigned j = 0; j < MON_MAX_CLIENTS + 1; j++)
		if (m->clients[j] == cl)
			m->clients[j] = NULL;
	client_free(m, cl);
}

void monitor__event(struct monitor *m, const char *name, struct mon_reply *data)
{
	struct sbuf line;
	struct timespec ts;

	if (!m)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	sbuf__init(&line);
	sbuf__append(&line, "{\"event\":", 9);
	json__append_string(&line, name);
	sbuf__append(&line, ",\"data\":{", 9);
	if (data && !data->error && data->json.len)
		sbuf__append(&line, data->json.data, data->json.len);
	char tail[96];
	int tn = snprintf(tail, sizeof(tail), "},\"timestamp\":{\"seconds\":%lld,\"microseconds\":%ld}}\n",
			  (long long)ts.tv_sec, ts.tv_nsec / 1000);
	sbuf__append(&line, tail, (size_t)tn);
	char *copy = malloc(line.len + 1);
	if (copy) {
		memcpy(copy, line.data, line.len);
		copy[line.len] = '\0';
	}
	sbuf__free(&line);
	pthread_mutex_lock(&m->ev_lock);
	if (!copy) {
		m->ev_dropped++;
	} else {
		if (m->ev_count == MON_EV_QUEUE) {
			free(m->ev_q[m->ev_head]);
			m->ev_head = (m->ev_head + 1) % MON_EV_QUEUE;
			m->ev_count--;
			m->ev_dropped++;
		}
		m->ev_q[(m->ev_head + m->ev_count) % MON_EV_QUEUE] = copy;
		m->ev_count++;
	}
	pthread_mutex_unlock(&m->ev_lock);
	(void)!write(m->ev_pipe[1], "e", 1);	/* non-blocking: a full pipe is awake already */
}

/* The monitor thread: every queued event line to every client that asked. */
static void deliver_events(struct monitor *m)
{
	char drain[64];
	while (read(m->ev_pipe[0], drain, sizeof(drain)) > 0)
		;
	for (;;) {
		pthread_mutex_lock(&m->ev_lock);
		char *line = NULL;
		if (m->ev_count) {
			line = m->ev_q[m->ev_head];
			m->ev_q[m->ev_head] = NULL;
			m->ev_head = (m->ev_head + 1) % MON_EV_QUEUE;
			m->ev_count--;
		}
		pthread_mutex_unlock(&m->ev_lock);
		if (!line)
			return;
		for (unsigned i = 0; i < MON_MAX_CLIENTS + 1; i++) {
			struct mon_client *cl = m->clients[i];
			if (!cl || !cl->events)
				continue;
			client_write(cl, line, strlen(line));
			if (cl->dead)
				drop_client(m, cl);
		}
		free(line);
	}
}

static void *monitor__thread(void *arg)
{
	struct monitor *m = arg;

	pthread_setname_np(pthread_self(), "ftvm-monitor");
	for (;;) {
		struct pollfd pfd[MON_MAX_CLIENTS + 4];
		struct mon_client *who[MON_MAX_CLIENTS + 4] = { 0 };
		nfds_t n = 0;

		pfd[n++] = (struct pollfd){ .fd = m->stop_pipe[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = m->ev_pipe[0], .events = POLLIN };
		if (m->listen_fd >= 0)
			pfd[n++] = (struct pollfd){ .fd = m->listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < MON_MAX_CLIENTS + 1; i++) {
			if (!m->clients[i])
				continue;
			who[n] = m->clients[i];
			pfd[n++] = (struct pollfd){ .fd = m->clients[i]->in_fd, .events = POLLIN };
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents)
			deliver_events(m);
		for (nfds_t i = 2; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (!who[i]) {	/* the listening socket */
				int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				if (!peer_allowed(m, fd)) {
					close(fd);
					continue;
				}
				unsigned slot = 0;
				while (slot < MON_MAX_CLIENTS && m->clients[slot])
					slot++;
				struct mon_client *cl = slot < MON_MAX_CLIENTS ? client_new(fd, fd) : NULL;
				if (!cl) {
					static const char busy[] = "error: too many monitor clients\n";
					(void)!write(fd, busy, sizeof(busy) - 1);
					close(fd);
					continue;
				}
				m->clients[slot] = cl;
				continue;
			}
			/* (a client dropped by deliver_events above is no longer in
			 * m->clients: skip its stale poll slot) */
			bool live = false;
			for (unsigned j = 0; j < MON_MAX_CLIENTS + 1; j++)
				live |= m->clients[j] == who[i];
			if (live && !client_input(m, who[i]))
				drop_client(m, who[i]);
		}
	}
	return NULL;
}

int monitor__create(struct vm *vm, const char *spec, struct monitor **out, char *err)
{
	struct monitor *m = calloc(1, sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	m->vm = vm;
	m->listen_fd = -1;
	m->stop_pipe[0] = m->stop_pipe[1] = -1;
	m->ev_pipe[0] = m->ev_pipe[1] = -1;
	pthread_mutex_init(&m->ev_lock, NULL);
	if (pipe2(m->stop_pipe, O_CLOEXEC) < 0 || pipe2(m->ev_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		ret = -errno;
		goto fail;
	}
	if (strcmp(spec, "stdio") == 0) {
		m->stdio = true;
		m->clients[MON_MAX_CLIENTS] = client_new(STDIN_FILENO, STDOUT_FILENO);
	} else if (strncmp(spec, "unix:", 5) == 0 && spec[5]) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		char pathbuf[sizeof(sa.sun_path) + 64];
		snprintf(pathbuf, sizeof(pathbuf), "%s", spec + 5);
		char *opt = strstr(pathbuf, ",group=");
		if (opt) {
			*opt = '\0';
			struct group *g = getgrnam(opt + 7);
			if (!g) {
				snprintf(err, VMM_ERR_LEN, "--monitor: no group '%s'", opt + 7);
				ret = -EINVAL;
				goto fail;
			}
			m->gid = g->gr_gid;
			m->has_gid = true;
		}
		if (strlen(pathbuf) >= sizeof(sa.sun_path)) {
			snprintf(err, VMM_ERR_LEN, "--monitor: socket path too long (max %zu)",
				 sizeof(sa.sun_path) - 1);
			ret = -ENAMETOOLONG;
			goto fail;
		}
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", pathbuf);
		snprintf(m->path, sizeof(m->path), "%s", pathbuf);
		m->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (m->listen_fd < 0) {
			ret = -errno;
			goto fail;
		}
		unlink(m->path);	/* a stale socket from a dead ftvm */
		if (bind(m->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			ret = -errno;
			snprintf(err, VMM_ERR_LEN, "--monitor: cannot listen on %s: %s", m->path,
				 strerror(errno));
			m->path[0] = '\0';
			goto fail;
		}
		/* The owner only (and ,group=), whatever the umask; before listen,
		 * so no one connects through a wider mode. */
		if ((m->has_gid && chown(m->path, (uid_t)-1, m->gid) < 0) ||
		    chmod(m->path, m->has_gid ? 0660 : 0600) < 0 || listen(m->listen_fd, 8) < 0) {
			ret = -errno;
			snprintf(err, VMM_ERR_LEN, "--monitor: %s: %s", m->path, strerror(errno));
			goto fail;
		}
	} else {
		snprintf(err, VMM_ERR_LEN, "--monitor %s: expected unix:PATH or stdio", spec);
		ret = -EINVAL;
		goto fail;
	}
	monitor__add_command(m, "help", NULL, "list commands", cmd_help, m);
	monitor__add_command(m, "json", NULL, "answer in JSON from now on", cmd_json, m);
	monitor__add_command(m, "events", "[on|off]",
			     "JSON mode: send asynchronous event lines (STATE, PEER_LOST, FAILOVER, "
			     "REVOKED, STOP, RESUME)", cmd_events, m);
	vm_commands__register(m, vm);
	*out = m;
	return 0;
fail:
	if (!err[0])
		snprintf(err, VMM_ERR_LEN, "--monitor: %s", strerror(-ret));
	monitor__destroy(m);
	return ret;
}

int monitor__start(struct monitor *m)
{
	int ret = pthread_create(&m->thread, NULL, monitor__thread, m);
	if (ret)
		return -ret;
	m->started = true;
	return 0;
}

void monitor__destroy(struct monitor *m)
{
	if (!m)
		return;
	if (m->started) {
		(void)!write(m->stop_pipe[1], "x", 1);
		pthread_join(m->thread, NULL);
	}
	for (unsigned i = 0; i < MON_MAX_CLIENTS + 1; i++)
		if (m->clients[i])
			client_free(m, m->clients[i]);
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	if (m->path[0])
		unlink(m->path);
	for (int i = 0; i < 2; i++) {
		if (m->stop_pipe[i] >= 0)
			close(m->stop_pipe[i]);
		if (m->ev_pipe[i] >= 0)
			close(m->ev_pipe[i]);
	}
	for (unsigned i = 0; i < m->ev_count; i++)
		free(m->ev_q[(m->ev_head + i) % MON_EV_QUEUE]);
	pthread_mutex_destroy(&m->ev_lock);
	free(m);
}
