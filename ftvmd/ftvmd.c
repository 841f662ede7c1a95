/*
 * ftvmd - the per-node watcher of one ftvm VM: it turns fast failure
 * signals into failover before any polling would, and it is where the
 * nodes agree on who may act on a protection session (arbiter.h).
 *
 *  - local takeover: the node of a protected primary leaves the corosync
 *    membership (CPG NODEDOWN) while this node holds that primary's in-sync
 *    secondary, in a quorate partition: CLAIM the session through the
 *    arbiter and, once granted, fail over at once (`cont` on the local VMM),
 *    then tell Pacemaker (this node's promotion score, the lost node's
 *    instance failed). An isolated old primary cannot release any output
 *    meanwhile: every output waits for its secondary's ACK, and without it
 *    for a revocation, which the arbiter refuses once the session is taken
 *    (docs/operations.md, "Local takeover: the safety argument");
 *  - revocation and promotion requests from the agent on a control socket
 *    (`ftvmd --request revoke|claim`): the same arbiter decides;
 *  - a machine check on this node while it runs the protected primary:
 *    `migrate_handover` on the local VMM, then fail the local instance.
 *    Sources on real hosts: rasdaemon or an mcelog trigger (ra/install.sh
 *    installs one) writing to the FIFO (`--mce-fifo`); this kernel has none;
 *  - a fatal block I/O error reported for the local VMM (an `io-error ...`
 *    line on the same FIFO): handled exactly as a machine check;
 *  - the local VMM dies without ending cleanly (its pid file still names
 *    it): fail its instance now, instead of waiting for the next monitor.
 * The local VMM is followed through its monitor events (vmm_watch.h), not
 * polled. No failover is ever started without quorum.
 *
 * Runs on libqb's main loop; logs through qb_log to stderr and, with
 * --log FILE, to that file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <qb/qblog.h>
#include <qb/qbloop.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ftvmd/arbiter.h"
#include "ftvmd/vmm_watch.h"

#define MAX_PENDING 16
#define REQUEST_TIMEOUT_MS 10000

/* A request waiting for its delivery: the agent's (a control client) or
 * this ftvmd's own takeover (fd -1). */
struct pending {
	bool used;
	bool sent;
	uint32_t req;		/* the arbiter's id, once sent */
	enum arb_act act;
	uint64_t session, epoch;
	int fd;			/* the control client, -1: a local takeover */
	uint32_t lost_node;	/* a local takeover: the primary's node */
	uint64_t t0_ns;
};

/* A Pacemaker command ftvmd started and does not wait for. */
struct child {
	pid_t pid;
	char what[96];
};
#define MAX_CHILDREN 16

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
	const char *control;	/* the control socket */
	const char *state_file;	/* the arbiter's decisions */
	bool no_takeover;	/* --no-local-takeover: leave failover to Pacemaker */
	int fifo_fd;
	char fifo_buf[512];
	size_t fifo_len;
	char pidfile[256];	/* the local VMM's (ftvm --pidfile) */
	struct vmm_watch *vmm;
	struct arbiter *arb;
	int control_fd;
	struct pending pending[MAX_PENDING];
	struct arb_vmm announced;
	struct child children[MAX_CHILDREN];	/* Pacemaker commands still running */
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
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

/* ---- corosync ------------------------------------------------------------ */

/* Multicast in agreed order (delivered to every member, this one too). */
static int mcast(struct ftvmd *d, const void *msg, size_t len)
{
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
	for (int i = 0; i < 200; i++) {
		cs_error_t e = cpg_mcast_joined(d->cpg, CPG_TYPE_AGREED, &iov, 1);
		if (e == CS_OK)
			return 0;
		if (e != CS_ERR_TRY_AGAIN) {
			qb_log(LOG_ERR, "cpg_mcast_joined: error %d", e);
			return -EIO;
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	qb_log(LOG_ERR, "cpg_mcast_joined: still busy after 200 ms");
	return -EAGAIN;
}

static uint32_t expected_votes(struct ftvmd *d)
{
	struct votequorum_info info;
	if (votequorum_getinfo(d->vq, 0, &info) != CS_OK)
		return 0;
	return info.highest_expected;
}

/* ---- requests: this node's takeovers and the agent's ------------------------- */

static void fail_node(struct ftvmd *d, uint32_t nodeid, const char *why);
static void spawn(struct ftvmd *d, const char *what, const char *script, const char *arg1, const char *arg2);
static void reap(struct ftvmd *d);

static struct pending *new_pending(struct ftvmd *d)
{
	for (int i = 0; i < MAX_PENDING; i++)
		if (!d->pending[i].used) {
			memset(&d->pending[i], 0, sizeof(d->pending[i]));
			d->pending[i].used = true;
			d->pending[i].fd = -1;
			d->pending[i].t0_ns = now_ns();
			return &d->pending[i];
		}
	return NULL;
}

/* Sends every request not yet sent, once this view is synced (so that it
 * is delivered after every member's SYNC: valid if the view is a majority). */
static void send_pending(struct ftvmd *d)
{
	if (!arbiter__synced(d->arb))
		return;
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &d->pending[i];
		if (!p->used || p->sent)
			continue;
		uint8_t msg[ARB_MSG_MAX];
		size_t len = arbiter__request(d->arb, p->act, p->session, p->epoch, expected_votes(d), msg, &p->req);
		if (mcast(d, msg, len) == 0)
			p->sent = true;
	}
}

static void reply(struct pending *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct pending *p, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (p->fd >= 0) {
		(void)!write(p->fd, buf, (size_t)n);
		close(p->fd);
		p->fd = -1;
	}
}

static void done(struct pending *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->used = false;
}

/* The arbiter granted this node's claim: fail over now, then tell Pacemaker. */
static void take_over(struct ftvmd *d, struct pending *p, const char *why)
{
	const struct vmm_status *st = vmm_watch__status(d->vmm);
	char ans[4096];
	if (!st->up || st->primary || st->session != p->session) {
		qb_log(LOG_WARNING, "session %016" PRIx64 " granted, but the local VMM is no longer its secondary "
		       "(%s): nothing to take over", p->session, st->up ? st->state : "gone");
		return;
	}
	int ret = vmm_watch__command(d->sock, "cont", ans, sizeof(ans), 10000);
	double ms = (double)(now_ns() - p->t0_ns) / 1e6;
	if (ret < 0 || !strstr(ans, "\"failover\":\"done\"")) {
		qb_log(LOG_ERR, "local takeover of session %016" PRIx64 ": cont failed (%s): %s", p->session,
		       strerror(ret < 0 ? -ret : EIO), ans);
		return;
	}
	qb_log(LOG_NOTICE, "took over session %016" PRIx64 " from checkpoint %" PRIu64 " %.1f ms after the "
	       "primary's node %u left (%s)", p->session, p->epoch, ms, p->lost_node, why);
	/* Pacemaker: this instance is the primary now (its monitor says so
	 * too); the lost node's instance failed. Neither is waited for. */
	spawn(d, "promotion score 1000 here", "exec timeout 60 crm_attribute --promotion=\"$1\" -v 1000",
	      d->resource, NULL);
	fail_node(d, p->lost_node, "its primary was taken over here");
}

/* A request of this node's was delivered. */
static void delivered(struct ftvmd *d, uint32_t req, enum arb_outcome o, const char *why)
{
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &d->pending[i];
		if (!p->used || !p->sent || p->req != req)
			continue;
		if (o == ARB_INVALID && !arbiter__synced(d->arb) &&
		    arbiter__view_nodes(d->arb) * 2 > expected_votes(d)) {
			/* delivered into a view that formed meanwhile: again, once it is synced */
			p->sent = false;
			send_pending(d);
			return;
		}
		const char *act = p->act == ARB_TAKEN ? "claim" : "revoke";
		qb_log(o == ARB_GRANTED ? LOG_NOTICE : LOG_WARNING, "%s of session %016" PRIx64 ": %s: %s", act,
		       p->session, o == ARB_GRANTED ? "granted" : o == ARB_SUPERSEDED ? "superseded" : "not valid",
		       why);
		if (p->fd >= 0)
			reply(p, "%s %s", o == ARB_GRANTED ? "granted" : o == ARB_SUPERSEDED ? "superseded" : "unavailable",
			      why);
		else if (o == ARB_GRANTED)
			take_over(d, p, why);
		done(p);
		return;
	}
}

static void expire_pending(void *data);

static void expire_pending(void *data)
{
	struct ftvmd *d = data;
	qb_loop_timer_handle h;
	uint64_t now = now_ns();
	reap(d);
	for (int i = 0; i < MAX_PENDING; i++) {
		struct pending *p = &d->pending[i];
		if (p->used && now - p->t0_ns > (uint64_t)REQUEST_TIMEOUT_MS * 1000000u) {
			qb_log(LOG_WARNING, "%s of session %016" PRIx64 ": no decision in %d ms (view of %u nodes%s)",
			       p->act == ARB_TAKEN ? "claim" : "revoke", p->session, REQUEST_TIMEOUT_MS,
			       arbiter__view_nodes(d->arb), arbiter__synced(d->arb) ? "" : ", not synced");
			reply(p, "unavailable no decision within %d ms", REQUEST_TIMEOUT_MS);
			done(p);
		}
	}
	qb_loop_timer_add(d->loop, QB_LOOP_LOW, 1000 * QB_TIME_NS_IN_MSEC, d, expire_pending, &h);
}

/* ---- peer loss ------------------------------------------------------------------ */

static void on_peer_lost(struct ftvmd *d, uint32_t nodeid)
{
	vmm_watch__refresh(d->vmm);	/* its committed checkpoint now */
	const struct vmm_status *st = vmm_watch__status(d->vmm);
	bool in_sync = st->up && !st->primary && st->epoch > 0 &&
		       (!strcmp(st->state, "receiving") || !strcmp(st->state, "peer-lost"));

	if (!in_sync) {
		qb_log(LOG_INFO, "node %u left; the local VMM is not an in-sync secondary (%s)", nodeid,
		       st->up ? st->state : "no VMM");
		return;
	}
	if (!quorate_now(d)) {
		qb_log(LOG_WARNING, "node %u left, but this partition has no quorum: no takeover", nodeid);
		return;
	}
	if (arbiter__primary_session_of(d->arb, nodeid) == st->session && st->session && !d->no_takeover) {
		struct pending *p = new_pending(d);
		if (!p) {
			qb_log(LOG_ERR, "node %u left: too many requests in flight; no local takeover", nodeid);
			return;
		}
		p->act = ARB_TAKEN;
		p->session = st->session;
		p->epoch = st->epoch;
		p->lost_node = nodeid;
		qb_log(LOG_NOTICE, "node %u left: it ran the primary of session %016" PRIx64 ", this node holds "
		       "its checkpoint %" PRIu64 " (%s): claiming it", nodeid, st->session, st->epoch, st->state);
		send_pending(d);	/* or once this view is synced */
		return;
	}
	/* Not known to be this secondary's primary (its ftvmd never said),
	 * or local takeover is off: Pacemaker promotes, sooner for this. */
	fail_node(d, nodeid, "it left while this node holds the in-sync secondary");
}

static void cpg_confchg(cpg_handle_t h, const struct cpg_name *group,
			const struct cpg_address *members, size_t n_members,
			const struct cpg_address *left, size_t n_left,
			const struct cpg_address *joined, size_t n_joined)
{
	struct ftvmd *d;
	(void)group; (void)joined;
	if (cpg_context_get(h, (void **)&d) != CS_OK)
		return;
	struct arb_member m[ARB_MAX_MEMBERS];
	size_t n = 0;
	for (size_t i = 0; i < n_members && n < ARB_MAX_MEMBERS; i++)
		m[n++] = (struct arb_member){ .nodeid = members[i].nodeid, .pid = members[i].pid };
	uint8_t msg[ARB_MSG_MAX];
	size_t len = arbiter__view(d->arb, m, n, msg);
	qb_log(LOG_INFO, "group: %zu members (%u nodes), %zu left, %zu joined", n_members,
	       arbiter__view_nodes(d->arb), n_left, n_joined);
	mcast(d, msg, len);
	/* Only a node that left the membership counts: an ftvmd that exits
	 * (PROCDOWN, e.g. restarted) or leaves says nothing about the VM there. */
	for (size_t i = 0; i < n_left; i++) {
		if (left[i].nodeid == d->my_nodeid)
			continue;
		if (left[i].reason == CPG_REASON_NODEDOWN)
			on_peer_lost(d, left[i].nodeid);
		arbiter__forget_node(d->arb, left[i].nodeid);
	}
}

static void cpg_deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid, uint32_t pid,
			void *msg, size_t len)
{
	struct ftvmd *d;
	uint32_t req = 0;
	enum arb_outcome o = ARB_PENDING;
	char why[256] = "";
	(void)g;
	if (cpg_context_get(h, (void **)&d) != CS_OK)
		return;
	bool was = arbiter__synced(d->arb);
	if (arbiter__deliver(d->arb, nodeid, pid, msg, len, &req, &o, why, sizeof(why)) < 0) {
		qb_log(LOG_WARNING, "ignoring a malformed message from node %u", nodeid);
		return;
	}
	if (!was && arbiter__synced(d->arb)) {
		qb_log(LOG_INFO, "view of %u nodes synced", arbiter__view_nodes(d->arb));
		send_pending(d);
	}
	if (req)
		delivered(d, req, o, why);
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

/* ---- the control socket: the agent's requests ---------------------------------- */

static int control_ready(int fd, int revents, void *data)
{
	struct ftvmd *d = data;
	char line[256];
	(void)revents;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return 0;
	struct pollfd pfd = { .fd = c, .events = POLLIN };
	ssize_t r = poll(&pfd, 1, 1000) > 0 ? read(c, line, sizeof(line) - 1) : -1;
	if (r <= 0) {
		close(c);
		return 0;
	}
	line[r] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	char act[16] = "";
	char session[32] = "";
	unsigned long long epoch = 0;
	int got = sscanf(line, "%15s %31s %llu", act, session, &epoch);
	if (got >= 1 && !strcmp(act, "status")) {
		char out[256];
		int n = snprintf(out, sizeof(out), "status view_nodes=%u synced=%d quorate=%d\n",
				 arbiter__view_nodes(d->arb), arbiter__synced(d->arb), d->quorate);
		(void)!write(c, out, (size_t)n);
		close(c);
		return 0;
	}
	char *end = NULL;
	uint64_t sid = got >= 2 ? strtoull(session, &end, 16) : 0;
	if (got < 2 || (strcmp(act, "claim") && strcmp(act, "revoke")) || !sid || !end || *end) {
		static const char bad[] = "error usage: claim|revoke SESSION [EPOCH] | status\n";
		(void)!write(c, bad, sizeof(bad) - 1);
		close(c);
		return 0;
	}
	struct pending *p = new_pending(d);
	if (!p) {
		static const char busy[] = "unavailable too many requests in flight\n";
		(void)!write(c, busy, sizeof(busy) - 1);
		close(c);
		return 0;
	}
	p->act = !strcmp(act, "claim") ? ARB_TAKEN : ARB_REVOKED;
	p->session = sid;
	p->epoch = epoch;
	p->fd = c;
	qb_log(LOG_INFO, "request: %s session %016" PRIx64 " at checkpoint %llu", act, sid, epoch);
	send_pending(d);
	return 0;
}

static int control_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	mode_t old = umask(0077);	/* root's agent only */
	int ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (ret < 0 || listen(fd, 8) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* ftvmd --request: one request to the local ftvmd; its answer on stdout.
 * Exit 0 granted, 3 superseded, 1 not decided (no majority, no answer),
 * 2 usage or no ftvmd. */
static int client(const char *control, const char *act, const char *session, unsigned long long epoch,
		  int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", control);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "ftvmd: cannot reach ftvmd at %s: %s\n", control, strerror(errno));
		return 2;
	}
	char line[256], ans[512];
	int n = !strcmp(act, "status") ? snprintf(line, sizeof(line), "status\n")
				       : snprintf(line, sizeof(line), "%s %s %llu\n", act, session, epoch);
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return 2;
	}
	size_t len = 0;
	while (len < sizeof(ans) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) <= 0) {
			fprintf(stderr, "ftvmd: no answer from %s within %d ms\n", control, timeout_ms);
			close(fd);
			return 1;
		}
		ssize_t r = read(fd, ans + len, sizeof(ans) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		if (memchr(ans, '\n', len))
			break;
	}
	close(fd);
	ans[len] = '\0';
	fputs(ans, stdout);
	if (!strncmp(ans, "granted", 7) || !strncmp(ans, "status", 6))
		return 0;
	if (!strncmp(ans, "superseded", 10))
		return 3;
	return !strncmp(ans, "error", 5) ? 2 : 1;
}

/* ---- machine checks ------------------------------------------------------------ */

static void fail_local(struct ftvmd *d, const char *why);

static bool has(const char *json, const char *needle)
{
	return strstr(json, needle) != NULL;
}

static void on_mce(struct ftvmd *d, const char *what)
{
	char ans[4096];

	qb_log(LOG_CRIT, "fatal hardware event on this node: %s", what);
	if (!quorate_now(d)) {
		qb_log(LOG_WARNING, "no quorum: not moving the VM");
		return;
	}
	const struct vmm_status *st = vmm_watch__status(d->vmm);
	if (!st->up || !st->primary || strcmp(st->state, "protected")) {
		qb_log(LOG_NOTICE, "the local VMM is not a protected primary (%s): nothing to move",
		       st->up ? st->state : "no VMM");
		return;
	}
	int ret = vmm_watch__command(d->sock, "migrate_handover", ans, sizeof(ans), 10000);
	if (ret < 0 || !has(ans, "handed-over")) {
		qb_log(LOG_ERR, "handover failed: %s", ans);
		return;
	}
	qb_log(LOG_NOTICE, "handed the VM over: %s", ans);
	fail_local(d, "handed over");
}

/* ---- Pacemaker ------------------------------------------------------------------ */

/*
 * Pacemaker's tools can block for seconds (the DC was the node that just
 * left, an election is on): ftvmd never waits for them. Each runs in a
 * child of its own, bounded by timeout(1); the children are reaped by the
 * 1 s timer, which logs how they ended. Arguments go as $1 $2, unquoted
 * by nobody.
 */
static void spawn(struct ftvmd *d, const char *what, const char *script, const char *arg1, const char *arg2)
{
	int slot = -1;
	for (int i = 0; i < MAX_CHILDREN && slot < 0; i++)
		if (!d->children[i].pid)
			slot = i;
	pid_t pid = fork();
	if (pid < 0) {
		qb_log(LOG_ERR, "%s: fork: %s", what, strerror(errno));
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		execl("/bin/sh", "sh", "-c", script, "sh", arg1 ? arg1 : "", arg2 ? arg2 : "", (char *)NULL);
		_exit(127);
	}
	if (slot >= 0) {
		d->children[slot].pid = pid;
		snprintf(d->children[slot].what, sizeof(d->children[slot].what), "%s", what);
	}
}

static void reap(struct ftvmd *d)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		const char *what = "a command";
		for (int i = 0; i < MAX_CHILDREN; i++)
			if (d->children[i].pid == pid) {
				what = d->children[i].what;
				d->children[i].pid = 0;
			}
		int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		qb_log(rc ? LOG_WARNING : LOG_INFO, "%s: exit %d", what, rc);
	}
}

/* Fails the resource's instance on node nodeid (Pacemaker recovers it now). */
static void fail_node(struct ftvmd *d, uint32_t nodeid, const char *why)
{
	char id[16], what[96];
	snprintf(id, sizeof(id), "%u", nodeid);
	snprintf(what, sizeof(what), "crm_resource --fail on node %u", nodeid);
	qb_log(LOG_NOTICE, "failing the instance of %s on node %u now: %s", d->resource, nodeid, why);
	spawn(d, what, "n=$(timeout 30 crm_node -l 2>/dev/null | awk -v id=\"$1\" '$1 == id { print $2 }'); "
	      "[ -n \"$n\" ] || exit 3; exec timeout 60 crm_resource --fail --resource \"$2\" --node \"$n\"",
	      id, d->resource);
}

static void fail_local(struct ftvmd *d, const char *why)
{
	qb_log(LOG_NOTICE, "failing the instance of %s on this node now: %s", d->resource, why);
	spawn(d, "crm_resource --fail on this node",
	      "n=$(timeout 30 crm_node -n) || exit 3; exec timeout 60 crm_resource --fail --resource \"$1\" --node \"$n\"",
	      d->resource, NULL);
}

/* ---- the local VMM ------------------------------------------------------------- */

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

/* The VMM's state changed (its events): the other nodes learn what it is. */
static void vmm_changed(void *opaque, const struct vmm_status *st, const char *event)
{
	struct ftvmd *d = opaque;
	struct arb_vmm v = { .known = st->up, .primary = st->primary, .session = st->session, .epoch = st->epoch };
	snprintf(v.state, sizeof(v.state), "%s", st->up ? st->state : "");
	if (v.known != d->announced.known || v.primary != d->announced.primary ||
	    v.session != d->announced.session || strcmp(v.state, d->announced.state)) {
		qb_log(LOG_INFO, "VMM: %s %s session %016" PRIx64 " checkpoint %" PRIu64 " (%s)",
		       st->up ? (st->primary ? "primary" : "secondary") : "gone", st->state, st->session,
		       st->epoch, event);
		uint8_t msg[ARB_MSG_MAX];
		size_t len = arbiter__announce(d->arb, &v, msg);
		mcast(d, msg, len);
	}
	d->announced = v;
}

static void vmm_exited(void *opaque, pid_t pid)
{
	struct ftvmd *d = opaque;
	/* A VMM that ends cleanly (quit, handover, guest shutdown, SIGTERM)
	 * removes its pid file before it exits. */
	if (read_pidfile(d->pidfile) != pid) {
		qb_log(LOG_INFO, "VMM pid %d ended cleanly", (int)pid);
		return;
	}
	qb_log(LOG_ERR, "VMM pid %d died without ending cleanly (killed or crashed)", (int)pid);
	if (!quorate_now(d)) {
		qb_log(LOG_WARNING, "no quorum: leaving it to Pacemaker's monitor");
		return;
	}
	fail_local(d, "the local VMM died");
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
	fputs("usage: ftvmd --resource ID --socket PATH [--pidfile PATH] [--mce-fifo PATH] [--control PATH]\n"
	      "             [--state-file PATH] [--no-local-takeover] [--log FILE]\n"
	      "       ftvmd --request claim|revoke|status [--session HEX [--epoch N]] --control PATH\n"
	      "             [--timeout SECONDS]\n"
	      "  --resource ID        the promotable clone's resource id (e.g. vm1)\n"
	      "  --socket PATH        the local ftvm monitor socket\n"
	      "  --pidfile PATH       the local ftvm's pid file (default: the socket's\n"
	      "                       path with .pid for .sock, as the agent names them)\n"
	      "  --mce-fifo PATH      fatal hardware events, one line each: 'mce ...' (machine\n"
	      "                       check) or 'io-error ...' (fatal block I/O error)\n"
	      "  --control PATH       the agent's requests (default /run/ftvmd-ID.sock)\n"
	      "  --state-file PATH    the decisions on protection sessions, kept across\n"
	      "                       restarts (default /var/lib/ftvm/ftvmd-ID.state)\n"
	      "  --no-local-takeover  on losing the primary's node, only tell Pacemaker\n"
	      "  --log FILE           log there too (default: stderr only)\n"
	      "  --request ACT        ask the running ftvmd (exit 0 granted, 3 superseded,\n"
	      "                       1 undecided: no majority or no answer, 2 no ftvmd)\n", f);
}

int main(int argc, char **argv)
{
	static struct ftvmd d = { .fifo_fd = -1, .control_fd = -1 };
	static const struct option opts[] = {
		{ "resource", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 's' },
		{ "mce-fifo", required_argument, NULL, 'm' },
		{ "log", required_argument, NULL, 'l' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "control", required_argument, NULL, 'c' },
		{ "state-file", required_argument, NULL, 'f' },
		{ "no-local-takeover", no_argument, NULL, 'n' },
		{ "request", required_argument, NULL, 'q' },
		{ "session", required_argument, NULL, 'S' },
		{ "epoch", required_argument, NULL, 'E' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *request = NULL, *session = NULL;
	unsigned long long epoch = 0;
	double timeout = 15;
	char control[256] = "", state_file[256] = "";
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': d.resource = optarg; break;
		case 's': d.sock = optarg; break;
		case 'm': d.fifo = optarg; break;
		case 'l': d.logfile = optarg; break;
		case 'p': snprintf(d.pidfile, sizeof(d.pidfile), "%s", optarg); break;
		case 'c': snprintf(control, sizeof(control), "%s", optarg); break;
		case 'f': snprintf(state_file, sizeof(state_file), "%s", optarg); break;
		case 'n': d.no_takeover = true; break;
		case 'q': request = optarg; break;
		case 'S': session = optarg; break;
		case 'E': epoch = strtoull(optarg, NULL, 10); break;
		case 't': timeout = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (request) {
		if (optind != argc || !control[0] || (strcmp(request, "status") && !session) ||
		    (strcmp(request, "claim") && strcmp(request, "revoke") && strcmp(request, "status")) ||
		    !(timeout > 0)) {
			usage(stderr);
			return 2;
		}
		return client(control, request, session, epoch, (int)(timeout * 1000));
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
	if (!control[0])
		snprintf(control, sizeof(control), "/run/ftvmd-%s.sock", d.resource);
	if (!state_file[0]) {
		mkdir("/var/lib/ftvm", 0700);
		snprintf(state_file, sizeof(state_file), "/var/lib/ftvm/ftvmd-%s.state", d.resource);
	}
	d.control = control;
	d.state_file = state_file;
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
		/* every line on disk as it is logged: a node that loses power
		 * (or a drill that reads the log) must not lose the last ones */
		qb_log_ctl(t, QB_LOG_CONF_FILE_SYNC, QB_TRUE);
		qb_log_filter_ctl(t, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", LOG_INFO);
		qb_log_format_set(t, "%t %N[%P] %p: %b");
	}
	/* a control client or the VMM may go away while we write to it */
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
	    cpg_local_get(d.cpg, &d.my_nodeid) != CS_OK) {
		qb_log(LOG_ERR, "cannot use corosync CPG (is corosync running?)");
		return 1;
	}
	if (arbiter__create(d.my_nodeid, d.state_file, &d.arb) < 0) {
		qb_log(LOG_ERR, "cannot set up the arbiter");
		return 1;
	}
	if (cpg_join(d.cpg, &group) != CS_OK) {
		qb_log(LOG_ERR, "cannot join corosync CPG group 'ftvm'");
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
	d.control_fd = control_listen(d.control);
	if (d.control_fd < 0) {
		qb_log(LOG_ERR, "control socket %s: %s", d.control, strerror(-d.control_fd));
		return 1;
	}
	qb_loop_poll_add(d.loop, QB_LOOP_HIGH, d.control_fd, POLLIN, &d, control_ready);
	static const struct vmm_watch_ops ops = { .changed = vmm_changed, .exited = vmm_exited };
	if (vmm_watch__create(d.loop, d.sock, &ops, &d, &d.vmm) < 0) {
		qb_log(LOG_ERR, "cannot watch %s", d.sock);
		return 1;
	}
	expire_pending(&d);
	qb_loop_signal_add(d.loop, QB_LOOP_HIGH, SIGTERM, &d, on_signal, NULL);
	qb_loop_signal_add(d.loop, QB_LOOP_HIGH, SIGINT, &d, on_signal, NULL);
	qb_log(LOG_NOTICE, "watching: node %u, resource %s, VMM %s (pid file %s), control %s, decisions %s%s%s%s",
	       d.my_nodeid, d.resource, d.sock, d.pidfile, d.control, d.state_file,
	       d.fifo ? ", machine checks from " : "", d.fifo ? d.fifo : "",
	       d.no_takeover ? ", no local takeover" : "");
	qb_loop_run(d.loop);
	cpg_finalize(d.cpg);
	votequorum_finalize(d.vq);
	vmm_watch__destroy(d.vmm);
	arbiter__destroy(d.arb);
	unlink(d.control);
	qb_log_fini();
	return 0;
}
