/*
 * ftvmd - the per-node watcher that turns fast failure signals into
 * failover before any polling would (ra issue):
 *
 *  - the peer node leaves the corosync CPG group "ftvm" while this node
 *    holds the in-sync secondary and the partition is quorate: ask
 *    Pacemaker to fail the peer's instance now (crm_resource --fail), so
 *    the in-sync secondary here is promoted at once instead of after the
 *    monitor interval and token timeout;
 *  - a machine-check event on this node while it runs the protected
 *    primary: proactive failover: `migrate_handover` on the local VMM (last
 *    checkpoint, the secondary takes over), then tell Pacemaker the local
 *    instance failed. Sources on real hosts are the mce:mce_record
 *    tracepoint, rasdaemon or an mcelog trigger; this kernel has none, so
 *    events arrive as lines on a FIFO (`--mce-fifo`), the same path an
 *    mcelog trigger script would use;
 *  - a fatal block I/O error reported for the local VMM (an `io-error ...`
 *    line on the same FIFO): handled exactly as a machine check;
 *  - the local VMM dies without ending cleanly (killed, crashed: its pid
 *    file still names it; a clean exit removes it): fail its instance now,
 *    instead of waiting for the next monitor;
 *  - no failover is ever started without quorum: the last votequorum
 *    notification and a fresh votequorum_getinfo() must both say quorate.
 *
 * Runs on libqb's main loop; logs through qb_log to stderr and, with
 * --log FILE, to that file.
 */
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <qb/qblog.h>
#include <qb/qbloop.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct ftvmd {
	qb_loop_t *loop;
	cpg_handle_t cpg;
	votequorum_handle_t vq;
	bool quorate;
	uint32_t my_nodeid;
	const char *resource;	/* the promotable clone's resource id */
	const char *sock;	/* the local VMM's monitor socket */
	const char *fifo;	/* machine-check / io-error events */
	const char *logfile;
	int fifo_fd;
	char fifo_buf[512];
	size_t fifo_len;
	char pidfile[256];	/* the local VMM's (ftvm --pidfile) */
	pid_t vmm_pid;		/* watched through vmm_pidfd */
	pid_t dead_pid;		/* already reported */
	int vmm_pidfd;
	qb_loop_timer_handle pid_timer;
	char my_name[128];	/* this node's Pacemaker name, once known */
};

/* Runs a command, waits for it; returns its exit status or -1. */
static int run(char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* One monitor command in JSON mode; the answer line into out. */
static int monitor_cmd(const char *sock, const char *cmd, char *out, size_t outlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[8192];
	size_t len = 0;
	int lines = 0;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -errno;
	}
	char req[512];
	int n = snprintf(req, sizeof(req), "json\n%s\n", cmd);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -EIO;
	}
	/* greeting + prompt, {"return":{}} for json, then the answer line */
	while (len < sizeof(buf) - 1 && lines < 3) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) <= 0)
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

static bool has(const char *json, const char *needle)
{
	return strstr(json, needle) != NULL;
}

/* Quorate now? The tracked state (notifications) and a fresh query must
 * agree: a notification still queued in corosync's socket must not let an
 * event be acted on in a partition that just lost quorum. */
static bool quorate_now(struct ftvmd *d)
{
	struct votequorum_info info;

	/* deliver what is queued first */
	if (votequorum_dispatch(d->vq, CS_DISPATCH_ALL) != CS_OK)
		return false;
	if (!d->quorate)
		return false;
	if (votequorum_getinfo(d->vq, 0, &info) != CS_OK) {
		qb_log(LOG_WARNING, "votequorum_getinfo failed: treating the partition as inquorate");
		return false;
	}
	return (info.flags & VOTEQUORUM_INFO_QUORATE) != 0;
}

/* ---- peer loss -------------------------------------------------------------- */

static void node_name(uint32_t nodeid, char *name, size_t len)
{
	/* crm_node -l prints "id name state" lines */
	FILE *f = popen("crm_node -l 2>/dev/null", "r");
	char line[256];
	snprintf(name, len, "%u", nodeid);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned id;
		char n[128];
		if (sscanf(line, "%u %127s", &id, n) == 2 && id == nodeid) {
			snprintf(name, len, "%s", n);
			break;
		}
	}
	pclose(f);
}

static void on_peer_lost(struct ftvmd *d, uint32_t nodeid)
{
	char ans[4096], name[128];

	if (!quorate_now(d)) {
		qb_log(LOG_WARNING, "node %u left, but this partition has no quorum: no failover", nodeid);
		return;
	}
	if (monitor_cmd(d->sock, "info migrate", ans, sizeof(ans)) < 0) {
		qb_log(LOG_INFO, "node %u left; no local VMM to take over", nodeid);
		return;
	}
	if (!has(ans, "\"role\":\"secondary\"") || has(ans, "\"committed_epoch\":0,")) {
		qb_log(LOG_INFO, "node %u left; the local VMM is not an in-sync secondary", nodeid);
		return;
	}
	node_name(nodeid, name, sizeof(name));
	qb_log(LOG_NOTICE, "node %s (%u) left while this node holds the in-sync secondary: "
	       "failing its instance of %s now", name, nodeid, d->resource);
	char *argv[] = { "crm_resource", "--fail", "--resource", (char *)d->resource,
			 "--node", name, NULL };
	int rc = run(argv);
	if (rc != 0)
		qb_log(LOG_ERR, "crm_resource --fail for %s on %s exited %d", d->resource, name, rc);
}

static void cpg_confchg(cpg_handle_t h, const struct cpg_name *group,
			const struct cpg_address *members, size_t n_members,
			const struct cpg_address *left, size_t n_left,
			const struct cpg_address *joined, size_t n_joined)
{
	struct ftvmd *d;
	(void)group; (void)members; (void)joined;
	if (cpg_context_get(h, (void **)&d) != CS_OK)
		return;
	qb_log(LOG_INFO, "group: %zu members, %zu left, %zu joined", n_members, n_left, n_joined);
	/* Only a node that left the membership counts: an ftvmd that exits
	 * (PROCDOWN, e.g. restarted) or leaves says nothing about the VM there. */
	for (size_t i = 0; i < n_left; i++)
		if (left[i].nodeid != d->my_nodeid && left[i].reason == CPG_REASON_NODEDOWN)
			on_peer_lost(d, left[i].nodeid);
}

static void cpg_deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid, uint32_t pid,
			void *msg, size_t len)
{
	(void)h; (void)g; (void)nodeid; (void)pid; (void)msg; (void)len;
}

static void vq_notify(votequorum_handle_t h, uint64_t ctx, uint32_t quorate, uint32_t n,
		      votequorum_node_t *nodes)
{
	struct ftvmd *d;
	(void)ctx; (void)n; (void)nodes;
	if (votequorum_context_get(h, (void **)&d) != CS_OK)
		return;
	if (d->quorate != (quorate != 0))
		qb_log(LOG_NOTICE, "partition is %squorate", quorate ? "" : "not ");
	d->quorate = quorate != 0;
}

/* ---- machine checks ------------------------------------------------------------ */

static void fail_local(struct ftvmd *d, const char *why);

static void on_mce(struct ftvmd *d, const char *what)
{
	char ans[4096];

	qb_log(LOG_CRIT, "fatal hardware event on this node: %s", what);
	if (!quorate_now(d)) {
		qb_log(LOG_WARNING, "no quorum: not moving the VM");
		return;
	}
	if (monitor_cmd(d->sock, "info migrate", ans, sizeof(ans)) < 0 ||
	    !has(ans, "\"role\":\"primary\"") || !has(ans, "\"state\":\"protected\"")) {
		qb_log(LOG_NOTICE, "the local VMM is not a protected primary: nothing to move");
		return;
	}
	int ret = monitor_cmd(d->sock, "migrate_handover", ans, sizeof(ans));
	if (ret < 0 || !has(ans, "handed-over")) {
		qb_log(LOG_ERR, "handover failed: %s", ans);
		return;
	}
	qb_log(LOG_NOTICE, "handed the VM over: %s", ans);
	fail_local(d, "handed over");
}

/* ---- the local VMM's process ------------------------------------------------- */

/* This node's Pacemaker name, looked up once (crm_node is slow on a busy
 * node, and failing the local instance is on the failover's critical
 * path). False while Pacemaker cannot tell it (node_name gives the id). */
static bool learn_my_name(struct ftvmd *d)
{
	if (!d->my_name[0]) {
		char me[128];
		node_name(d->my_nodeid, me, sizeof(me));
		if (strspn(me, "0123456789") == strlen(me))
			return false;
		snprintf(d->my_name, sizeof(d->my_name), "%s", me);
	}
	return true;
}

static void fail_local(struct ftvmd *d, const char *why)
{
	if (!learn_my_name(d)) {
		qb_log(LOG_ERR, "%s, but this node's name is unknown (crm_node -l)", why);
		return;
	}
	const char *me = d->my_name;
	qb_log(LOG_NOTICE, "%s: failing the instance of %s on %s now", why, d->resource, me);
	char *argv[] = { "crm_resource", "--fail", "--resource", (char *)d->resource,
			 "--node", (char *)me, NULL };
	int rc = run(argv);
	if (rc != 0)
		qb_log(LOG_ERR, "crm_resource --fail for %s on %s exited %d", d->resource, me, rc);
}

static pid_t read_pidfile(const char *path)
{
	char buf[32] = "";
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	long v = strtol(buf, NULL, 10);
	return v > 0 ? (pid_t)v : 0;
}

static void watch_vmm(void *data);

static int vmm_exited(int fd, int revents, void *data)
{
	struct ftvmd *d = data;
	pid_t pid = d->vmm_pid;
	(void)revents;
	qb_loop_poll_del(d->loop, fd);
	close(fd);
	d->vmm_pidfd = -1;
	d->vmm_pid = 0;
	/* A VMM that ends cleanly (quit, handover, guest shutdown, SIGTERM)
	 * removes its pid file before it exits. */
	if (read_pidfile(d->pidfile) != pid) {
		qb_log(LOG_INFO, "VMM pid %d ended cleanly", (int)pid);
		return 0;
	}
	d->dead_pid = pid;
	qb_log(LOG_ERR, "VMM pid %d died without ending cleanly (killed or crashed)", (int)pid);
	if (!quorate_now(d)) {
		qb_log(LOG_WARNING, "no quorum: leaving it to Pacemaker's monitor");
		return 0;
	}
	fail_local(d, "the local VMM died");
	return 0;
}

/* Every 100 ms: a new VMM process (a new pid in the pid file) is watched
 * through a pidfd, which polls readable the moment it exits. */
static void watch_vmm(void *data)
{
	struct ftvmd *d = data;
	pid_t pid = read_pidfile(d->pidfile);
	if (pid && pid != d->vmm_pid && pid != d->dead_pid) {
		int fd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (fd >= 0) {
			if (d->vmm_pidfd >= 0) {
				qb_loop_poll_del(d->loop, d->vmm_pidfd);
				close(d->vmm_pidfd);
			}
			d->vmm_pid = pid;
			d->vmm_pidfd = fd;
			qb_loop_poll_add(d->loop, QB_LOOP_HIGH, fd, POLLIN, d, vmm_exited);
			qb_log(LOG_INFO, "watching the VMM, pid %d", (int)pid);
		}
	}
	qb_loop_timer_add(d->loop, QB_LOOP_LOW, 100 * QB_TIME_NS_IN_MSEC, d, watch_vmm, &d->pid_timer);
}

static int fifo_ready(int fd, int revents, void *data)
{
	struct ftvmd *d = data;
	(void)revents;
	ssize_t r = read(fd, d->fifo_buf + d->fifo_len, sizeof(d->fifo_buf) - 1 - d->fifo_len);
	if (r <= 0)
		return 0;
	d->fifo_len += (size_t)r;
	d->fifo_buf[d->fifo_len] = '\0';
	char *nl;
	while ((nl = strchr(d->fifo_buf, '\n'))) {
		*nl = '\0';
		/* "mce ..." (machine check) and "io-error ..." (fatal block I/O
		 * error of the local VMM) are handled alike */
		if ((!strncmp(d->fifo_buf, "mce", 3) && (!d->fifo_buf[3] || d->fifo_buf[3] == ' ')) ||
		    (!strncmp(d->fifo_buf, "io-error", 8) && (!d->fifo_buf[8] || d->fifo_buf[8] == ' ')))
			on_mce(d, d->fifo_buf);
		else if (d->fifo_buf[0])
			qb_log(LOG_WARNING, "ignoring unknown event '%s'", d->fifo_buf);
		size_t rest = d->fifo_len - (size_t)(nl + 1 - d->fifo_buf);
		memmove(d->fifo_buf, nl + 1, rest + 1);
		d->fifo_len = rest;
	}
	if (d->fifo_len == sizeof(d->fifo_buf) - 1)
		d->fifo_len = 0;	/* an over-long line: drop it */
	return 0;
}

static int cpg_ready(int fd, int revents, void *data)
{
	struct ftvmd *d = data;
	(void)fd; (void)revents;
	if (cpg_dispatch(d->cpg, CS_DISPATCH_ALL) != CS_OK) {
		qb_log(LOG_ERR, "lost corosync (cpg)");
		qb_loop_stop(d->loop);
	}
	return 0;
}

static int vq_ready(int fd, int revents, void *data)
{
	struct ftvmd *d = data;
	(void)fd; (void)revents;
	if (votequorum_dispatch(d->vq, CS_DISPATCH_ALL) != CS_OK) {
		qb_log(LOG_ERR, "lost corosync (votequorum)");
		qb_loop_stop(d->loop);
	}
	return 0;
}

static int32_t on_signal(int32_t sig, void *data)
{
	struct ftvmd *d = data;
	qb_log(LOG_NOTICE, "signal %d: exiting", sig);
	qb_loop_stop(d->loop);
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: ftvmd --resource ID --socket PATH [--pidfile PATH] [--mce-fifo PATH] [--log FILE]\n"
	      "  --resource ID     the promotable clone's resource id (e.g. vm1)\n"
	      "  --socket PATH     the local ftvm monitor socket\n"
	      "  --pidfile PATH    the local ftvm's pid file (default: the socket's\n"
	      "                    path with .pid for .sock, as the agent names them)\n"
	      "  --mce-fifo PATH   fatal hardware events, one line each: 'mce ...' (machine\n"
	      "                    check) or 'io-error ...' (fatal block I/O error)\n"
	      "  --log FILE        log there too (default: stderr only)\n", f);
}

int main(int argc, char **argv)
{
	static struct ftvmd d = { .fifo_fd = -1, .vmm_pidfd = -1 };
	static const struct option opts[] = {
		{ "resource", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 's' },
		{ "mce-fifo", required_argument, NULL, 'm' },
		{ "log", required_argument, NULL, 'l' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': d.resource = optarg; break;
		case 's': d.sock = optarg; break;
		case 'm': d.fifo = optarg; break;
		case 'l': d.logfile = optarg; break;
		case 'p': snprintf(d.pidfile, sizeof(d.pidfile), "%s", optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!d.resource || !d.sock || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!d.pidfile[0]) {
		size_t n = strlen(d.sock);
		if (n > 5 && !strcmp(d.sock + n - 5, ".sock"))
			snprintf(d.pidfile, sizeof(d.pidfile), "%.*s.pid", (int)(n - 5), d.sock);
		else
			snprintf(d.pidfile, sizeof(d.pidfile), "%s.pid", d.sock);
	}
	qb_log_init("ftvmd", LOG_DAEMON, LOG_INFO);
	qb_log_ctl(QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);
	qb_log_filter_ctl(QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", LOG_INFO);
	qb_log_format_set(QB_LOG_STDERR, "%t %N[%P] %p: %b");
	if (d.logfile) {
		int t = qb_log_file_open(d.logfile);
		if (t < 0) {
			qb_log(LOG_ERR, "cannot open log file %s: %s", d.logfile, strerror(-t));
			return 1;
		}
		qb_log_ctl(t, QB_LOG_CONF_ENABLED, QB_TRUE);
		qb_log_filter_ctl(t, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", LOG_INFO);
		qb_log_format_set(t, "%t %N[%P] %p: %b");
	}
	/* the main loop waits for the commands it runs (crm_resource) */
	signal(SIGPIPE, SIG_IGN);
	d.loop = qb_loop_create();

	cpg_model_v1_data_t model = {
		.model = CPG_MODEL_V1, .cpg_deliver_fn = cpg_deliver, .cpg_confchg_fn = cpg_confchg,
	};
	struct cpg_name group;
	snprintf(group.value, sizeof(group.value), "ftvm");
	group.length = 4;
	votequorum_callbacks_t vcb = { .votequorum_quorum_notify_fn = vq_notify };
	int fd;
	if (cpg_model_initialize(&d.cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, &d) != CS_OK ||
	    cpg_local_get(d.cpg, &d.my_nodeid) != CS_OK || cpg_join(d.cpg, &group) != CS_OK) {
		qb_log(LOG_ERR, "cannot join corosync CPG group 'ftvm' (is corosync running?)");
		return 1;
	}
	if (votequorum_initialize(&d.vq, &vcb) != CS_OK ||
	    votequorum_context_set(d.vq, &d) != CS_OK ||
	    votequorum_trackstart(d.vq, 0, CS_TRACK_CURRENT | CS_TRACK_CHANGES) != CS_OK) {
		qb_log(LOG_ERR, "cannot use corosync votequorum");
		return 1;
	}
	cpg_fd_get(d.cpg, &fd);
	qb_loop_poll_add(d.loop, QB_LOOP_HIGH, fd, POLLIN, &d, cpg_ready);
	votequorum_fd_get(d.vq, &fd);
	qb_loop_poll_add(d.loop, QB_LOOP_HIGH, fd, POLLIN, &d, vq_ready);
	if (d.fifo) {
		if (mkfifo(d.fifo, 0600) < 0 && errno != EEXIST) {
			qb_log(LOG_ERR, "mkfifo %s: %s", d.fifo, strerror(errno));
			return 1;
		}
		/* O_RDWR: a writer closing does not give us EOF forever after. */
		d.fifo_fd = open(d.fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (d.fifo_fd < 0) {
			qb_log(LOG_ERR, "open %s: %s", d.fifo, strerror(errno));
			return 1;
		}
		qb_loop_poll_add(d.loop, QB_LOOP_HIGH, d.fifo_fd, POLLIN, &d, fifo_ready);
	}
	watch_vmm(&d);
	learn_my_name(&d);	/* now, not in the middle of a failover (else on first use) */
	qb_loop_signal_add(d.loop, QB_LOOP_HIGH, SIGTERM, &d, on_signal, NULL);
	qb_loop_signal_add(d.loop, QB_LOOP_HIGH, SIGINT, &d, on_signal, NULL);
	qb_log(LOG_NOTICE, "watching: node %u, resource %s, VMM %s (pid file %s)%s%s", d.my_nodeid,
	       d.resource, d.sock, d.pidfile, d.fifo ? ", machine checks from " : "",
	       d.fifo ? d.fifo : "");
	qb_loop_run(d.loop);
	cpg_finalize(d.cpg);
	votequorum_finalize(d.vq);
	qb_log_fini();
	return 0;
}
