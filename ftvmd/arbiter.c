/*
 * arbiter.c - the decisions on protection sessions (arbiter.h): views,
 * SYNC, requests, the state file. Pure logic: ftvmd.c feeds it CPG's
 * configuration changes and deliveries and multicasts what it returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftvmd/arbiter.h"

#define ARB_MAGIC 0x41565446u	/* "FTVA" */
#define ARB_VERSION 1
enum { MSG_SYNC = 1, MSG_REQUEST = 2, MSG_ANNOUNCE = 3 };

struct vmm_entry {
	uint32_t node;
	struct arb_vmm v;
	uint64_t primary_session;	/* the last session it announced the primary of */
};

struct arbiter {
	uint32_t me;
	uint32_t my_pid;
	char *state_file;
	struct arb_member view[ARB_MAX_MEMBERS];
	bool synced_from[ARB_MAX_MEMBERS];
	size_t n_view;
	uint64_t view_hash;
	struct arb_decision dec[ARB_MAX_DECISIONS];	/* oldest first */
	size_t n_dec;
	struct vmm_entry vmms[ARB_MAX_MEMBERS];
	size_t n_vmms;
	struct arb_vmm mine;		/* what this node's VMM is (sent in SYNC too) */
	uint32_t next_req;
};

/* ---- encoding: little-endian, a cursor over a buffer ---------------------- */

struct cur {
	uint8_t *p;
	const uint8_t *r;
	size_t len, off;
	bool bad;
};

static void put(struct cur *c, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		c->p[c->off++] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(struct cur *c, unsigned bytes)
{
	uint64_t v = 0;
	if (c->off + bytes > c->len) {
		c->bad = true;
		return 0;
	}
	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)c->r[c->off++] << (8 * i);
	return v;
}

static void put_header(struct cur *c, unsigned type)
{
	put(c, ARB_MAGIC, 4);
	put(c, ARB_VERSION, 1);
	put(c, type, 1);
	put(c, 0, 2);
}

static void put_vmm(struct cur *c, const struct arb_vmm *v)
{
	put(c, v->known, 1);
	put(c, v->primary, 1);
	put(c, v->session, 8);
	put(c, v->epoch, 8);
	memcpy(c->p + c->off, v->state, sizeof(v->state));
	c->off += sizeof(v->state);
}

static void get_vmm(struct cur *c, struct arb_vmm *v)
{
	v->known = get(c, 1) != 0;
	v->primary = get(c, 1) != 0;
	v->session = get(c, 8);
	v->epoch = get(c, 8);
	if (c->off + sizeof(v->state) > c->len) {
		c->bad = true;
		return;
	}
	memcpy(v->state, c->r + c->off, sizeof(v->state));
	v->state[sizeof(v->state) - 1] = '\0';
	c->off += sizeof(v->state);
}

/* ---- the state file ---------------------------------------------------------- */

static void save(struct arbiter *a)
{
	if (!a->state_file)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", a->state_file);
	FILE *f = fopen(tmp, "we");
	if (!f) {
		fprintf(stderr, "ftvmd: arbiter: cannot write %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f, "# ftvmd decisions: session act epoch node\n");
	for (size_t i = 0; i < a->n_dec; i++)
		fprintf(f, "%016" PRIx64 " %s %" PRIu64 " %" PRIu32 "\n", a->dec[i].session,
			a->dec[i].act == ARB_TAKEN ? "taken" : "revoked", a->dec[i].epoch, a->dec[i].node);
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, a->state_file) < 0)
		fprintf(stderr, "ftvmd: arbiter: cannot save %s: %s\n", a->state_file, strerror(errno));
}

static void add_decision(struct arbiter *a, const struct arb_decision *d)
{
	if (a->n_dec == ARB_MAX_DECISIONS) {
		memmove(a->dec, a->dec + 1, (ARB_MAX_DECISIONS - 1) * sizeof(a->dec[0]));
		a->n_dec--;
	}
	a->dec[a->n_dec++] = *d;
}

static void load(struct arbiter *a)
{
	FILE *f = fopen(a->state_file, "re");
	char line[256], act[16];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		struct arb_decision d = { 0 };
		if (line[0] == '#')
			continue;
		if (sscanf(line, "%" SCNx64 " %15s %" SCNu64 " %" SCNu32, &d.session, act, &d.epoch, &d.node) != 4 ||
		    (strcmp(act, "taken") && strcmp(act, "revoked"))) {
			fprintf(stderr, "ftvmd: arbiter: %s: ignoring a malformed line\n", a->state_file);
			continue;
		}
		d.act = !strcmp(act, "taken") ? ARB_TAKEN : ARB_REVOKED;
		add_decision(a, &d);
	}
	fclose(f);
}

int arbiter__create(uint32_t my_nodeid, const char *state_file, struct arbiter **out)
{
	struct arbiter *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->me = my_nodeid;
	a->my_pid = (uint32_t)getpid();
	a->next_req = 1;
	if (state_file) {
		a->state_file = strdup(state_file);
		if (!a->state_file) {
			free(a);
			return -ENOMEM;
		}
		load(a);
	}
	*out = a;
	return 0;
}

void arbiter__destroy(struct arbiter *a)
{
	if (!a)
		return;
	free(a->state_file);
	free(a);
}

/* ---- views and SYNC ---------------------------------------------------------- */

static int cmp_member(const void *x, const void *y)
{
	const struct arb_member *a = x, *b = y;
	if (a->nodeid != b->nodeid)
		return a->nodeid < b->nodeid ? -1 : 1;
	return a->pid < b->pid ? -1 : a->pid > b->pid;
}

static uint64_t hash_view(const struct arb_member *m, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		uint32_t w[2] = { m[i].nodeid, m[i].pid };
		const uint8_t *p = (const uint8_t *)w;
		for (size_t k = 0; k < sizeof(w); k++)
			h = (h ^ p[k]) * 1099511628211ull;
	}
	return h;
}

static size_t encode_sync(struct arbiter *a, uint8_t *msg)
{
	struct cur c = { .p = msg };
	put_header(&c, MSG_SYNC);
	put(&c, a->view_hash, 8);
	put_vmm(&c, &a->mine);
	put(&c, a->n_dec, 2);
	for (size_t i = 0; i < a->n_dec; i++) {
		put(&c, a->dec[i].session, 8);
		put(&c, a->dec[i].epoch, 8);
		put(&c, a->dec[i].node, 4);
		put(&c, a->dec[i].act, 1);
	}
	return c.off;
}

size_t arbiter__view(struct arbiter *a, const struct arb_member *m, size_t n, uint8_t *msg)
{
	if (n > ARB_MAX_MEMBERS)
		n = ARB_MAX_MEMBERS;
	memcpy(a->view, m, n * sizeof(*m));
	qsort(a->view, n, sizeof(*m), cmp_member);
	a->n_view = n;
	memset(a->synced_from, 0, sizeof(a->synced_from));
	a->view_hash = hash_view(a->view, n);
	return encode_sync(a, msg);
}

bool arbiter__synced(const struct arbiter *a)
{
	if (!a->n_view)
		return false;
	for (size_t i = 0; i < a->n_view; i++)
		if (!a->synced_from[i])
			return false;
	return true;
}

unsigned arbiter__view_nodes(const struct arbiter *a)
{
	unsigned n = 0;
	for (size_t i = 0; i < a->n_view; i++)
		n += i == 0 || a->view[i].nodeid != a->view[i - 1].nodeid;
	return n;
}

static long member_index(const struct arbiter *a, uint32_t nodeid, uint32_t pid)
{
	for (size_t i = 0; i < a->n_view; i++)
		if (a->view[i].nodeid == nodeid && a->view[i].pid == pid)
			return (long)i;
	return -1;
}

static struct arb_decision *find(struct arbiter *a, uint64_t session)
{
	for (size_t i = a->n_dec; i-- > 0;)
		if (a->dec[i].session == session)
			return &a->dec[i];
	return NULL;
}

enum arb_act arbiter__decided(const struct arbiter *a, uint64_t session, struct arb_decision *d)
{
	struct arb_decision *x = find((struct arbiter *)a, session);
	if (x && d)
		*d = *x;
	return x ? (enum arb_act)x->act : ARB_NONE;
}

static void set_vmm(struct arbiter *a, uint32_t node, const struct arb_vmm *v)
{
	if (node == a->me)
		return;
	struct vmm_entry *e = NULL;
	for (size_t i = 0; i < a->n_vmms; i++)
		if (a->vmms[i].node == node)
			e = &a->vmms[i];
	if (!e) {
		if (a->n_vmms == ARB_MAX_MEMBERS)
			return;
		e = &a->vmms[a->n_vmms++];
		*e = (struct vmm_entry){ .node = node };
	}
	e->v = *v;
	/* kept when its VMM is gone: a node whose primary VMM died just
	 * before the node itself still ran that session's primary */
	if (v->known && v->primary && v->session)
		e->primary_session = v->session;
}

uint64_t arbiter__primary_session_of(const struct arbiter *a, uint32_t nodeid)
{
	for (size_t i = 0; i < a->n_vmms; i++)
		if (a->vmms[i].node == nodeid)
			return a->vmms[i].primary_session;
	return 0;
}

const struct arb_vmm *arbiter__vmm_of(const struct arbiter *a, uint32_t nodeid)
{
	for (size_t i = 0; i < a->n_vmms; i++)
		if (a->vmms[i].node == nodeid)
			return &a->vmms[i].v;
	return NULL;
}

void arbiter__forget_node(struct arbiter *a, uint32_t nodeid)
{
	for (size_t i = 0; i < a->n_vmms; i++)
		if (a->vmms[i].node == nodeid) {
			a->vmms[i] = a->vmms[--a->n_vmms];
			return;
		}
}

static int deliver_sync(struct arbiter *a, uint32_t nodeid, uint32_t pid, struct cur *c)
{
	uint64_t hash = get(c, 8);
	struct arb_vmm v;
	get_vmm(c, &v);
	unsigned n = (unsigned)get(c, 2);
	if (c->bad || n > ARB_MAX_DECISIONS)
		return -EBADMSG;
	bool changed = false;
	for (unsigned i = 0; i < n; i++) {
		struct arb_decision d = { 0 };
		d.session = get(c, 8);
		d.epoch = get(c, 8);
		d.node = (uint32_t)get(c, 4);
		d.act = (uint8_t)get(c, 1);
		if (c->bad || (d.act != ARB_TAKEN && d.act != ARB_REVOKED))
			return -EBADMSG;
		struct arb_decision *have = find(a, d.session);
		if (!have) {
			add_decision(a, &d);
			changed = true;
		} else if (have->act != d.act) {
			/* Cannot happen while the rules hold (two valid views
			 * share a node); if it does, say it loudly and keep ours. */
			fprintf(stderr, "ftvmd: arbiter: CONFLICT: session %016" PRIx64 " is %s here and %s on "
				"node %" PRIu32 "\n", d.session, have->act == ARB_TAKEN ? "taken" : "revoked",
				d.act == ARB_TAKEN ? "taken" : "revoked", nodeid);
		}
	}
	if (changed)
		save(a);
	set_vmm(a, nodeid, &v);
	long i = member_index(a, nodeid, pid);
	if (hash == a->view_hash && i >= 0)
		a->synced_from[i] = true;
	return 0;
}

/* ---- requests ------------------------------------------------------------------ */

size_t arbiter__request(struct arbiter *a, enum arb_act act, uint64_t session, uint64_t epoch,
			uint32_t expected_votes, uint8_t *msg, uint32_t *req)
{
	struct cur c = { .p = msg };
	*req = a->next_req++;
	if (!a->next_req)
		a->next_req = 1;
	put_header(&c, MSG_REQUEST);
	put(&c, act, 1);
	put(&c, *req, 4);
	put(&c, session, 8);
	put(&c, epoch, 8);
	put(&c, expected_votes, 4);
	return c.off;
}

size_t arbiter__announce(struct arbiter *a, const struct arb_vmm *v, uint8_t *msg)
{
	struct cur c = { .p = msg };
	a->mine = *v;
	put_header(&c, MSG_ANNOUNCE);
	put_vmm(&c, v);
	return c.off;
}

static const char *act_name(unsigned act)
{
	return act == ARB_TAKEN ? "taken over" : act == ARB_REVOKED ? "revoked" : "nothing";
}

static int deliver_request(struct arbiter *a, uint32_t nodeid, uint32_t pid, struct cur *c, uint32_t *req,
			   enum arb_outcome *outcome, char *why, size_t whylen)
{
	unsigned act = (unsigned)get(c, 1);
	uint32_t id = (uint32_t)get(c, 4);
	uint64_t session = get(c, 8), epoch = get(c, 8);
	uint32_t expected = (uint32_t)get(c, 4);
	if (c->bad || (act != ARB_TAKEN && act != ARB_REVOKED))
		return -EBADMSG;
	bool mine = nodeid == a->me && pid == a->my_pid;
	enum arb_outcome o;
	unsigned nodes = arbiter__view_nodes(a);
	struct arb_decision *have = find(a, session);
	char w[256];

	if (!arbiter__synced(a) || (uint64_t)nodes * 2 <= expected) {
		o = ARB_INVALID;
		snprintf(w, sizeof(w), "%s: %u of %u nodes' ftvmd in this view%s", act_name(act), nodes, expected,
			 arbiter__synced(a) ? "" : ", not synced yet");
	} else if (!have) {
		struct arb_decision d = { .session = session, .epoch = epoch, .node = nodeid, .act = (uint8_t)act };
		add_decision(a, &d);
		save(a);
		o = ARB_GRANTED;
		snprintf(w, sizeof(w), "session %016" PRIx64 " %s by node %" PRIu32 " at checkpoint %" PRIu64,
			 session, act_name(act), nodeid, epoch);
	} else if (have->act == act) {
		o = ARB_GRANTED;
		snprintf(w, sizeof(w), "session %016" PRIx64 " was already %s by node %" PRIu32, session,
			 act_name(act), have->node);
	} else {
		o = ARB_SUPERSEDED;
		snprintf(w, sizeof(w), "session %016" PRIx64 " was %s first, by node %" PRIu32 " at checkpoint %"
			 PRIu64, session, act_name(have->act), have->node, have->epoch);
	}
	if (mine) {
		*req = id;
		*outcome = o;
		snprintf(why, whylen, "%s", w);
	}
	return 0;
}

int arbiter__deliver(struct arbiter *a, uint32_t nodeid, uint32_t pid, const void *msg, size_t len,
		     uint32_t *req, enum arb_outcome *outcome, char *why, size_t whylen)
{
	struct cur c = { .r = msg, .len = len };
	*req = 0;
	if (get(&c, 4) != ARB_MAGIC || get(&c, 1) != ARB_VERSION || c.bad)
		return -EBADMSG;
	unsigned type = (unsigned)get(&c, 1);
	get(&c, 2);
	switch (type) {
	case MSG_SYNC:
		return deliver_sync(a, nodeid, pid, &c);
	case MSG_REQUEST:
		return deliver_request(a, nodeid, pid, &c, req, outcome, why, whylen);
	case MSG_ANNOUNCE: {
		struct arb_vmm v;
		get_vmm(&c, &v);
		if (c.bad)
			return -EBADMSG;
		set_vmm(a, nodeid, &v);
		return 0;
	}
	}
	return -EBADMSG;
}
