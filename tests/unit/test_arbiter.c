/*
 * test_arbiter.c - ftvmd's decisions on protection sessions (ftvmd/arbiter.c)
 * in every 3-node partition shape a takeover can meet, with CPG's guarantees
 * played by a small bus: a view change reaches every member of the new view,
 * then messages are delivered to every member of the view in one order.
 *   - all together: the first of REVOKE/CLAIM wins, the other is superseded;
 *   - {P} | {S,T}: the secondary's claim counts, the isolated primary's
 *     revoke does not; healed, the primary learns it was superseded;
 *   - {S} | {P,T}: the isolated secondary's claim does not count (the
 *     must-not-take-over shape); the primary's revoke does;
 *   - {P},{S},{T}: nothing counts anywhere;
 *   - a flap, {S,T} then {P,T}: T carries the takeover into the primary's
 *     view, so its revoke is superseded; also when T's ftvmd restarted in
 *     between (its state file);
 *   - a request sent before every SYNC of its view is invalid;
 *   - malformed and truncated messages are refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftvmd/arbiter.h"

#include "tests/unit/check.h"

#define X 0x1234abcdull	/* the protection session */
enum { P = 1, S = 2, T = 3 };

static struct arbiter *node[4];
static char files[4][256];
static uint32_t pid;

struct result {
	uint32_t req;
	enum arb_outcome o;
	char why[256];
};

/* The view `members` (node ids, 0-terminated) forms; every member sends
 * its SYNC, delivered to all of them in member order. */
static void view(const int *members)
{
	struct arb_member m[3];
	size_t n = 0;
	static uint8_t sync[4][ARB_MSG_MAX];
	size_t len[4];
	for (const int *p = members; *p; p++)
		m[n++] = (struct arb_member){ .nodeid = (uint32_t)*p, .pid = pid };
	for (size_t i = 0; i < n; i++)
		len[i] = arbiter__view(node[m[i].nodeid], m, n, sync[i]);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			uint32_t req;
			enum arb_outcome o;
			char why[256];
			CHECK(arbiter__deliver(node[m[j].nodeid], m[i].nodeid, pid, sync[i], len[i], &req, &o, why,
					       sizeof(why)) == 0, "SYNC from %u to %u", m[i].nodeid, m[j].nodeid);
		}
	for (size_t i = 0; i < n; i++)
		CHECK(arbiter__synced(node[m[i].nodeid]), "node %u synced", m[i].nodeid);
}

/* Node `from` asks; the request is delivered to every member of `members`. */
static struct result ask(int from, enum arb_act act, const int *members)
{
	uint8_t msg[ARB_MSG_MAX];
	struct result r = { 0 };
	uint32_t id;
	size_t len = arbiter__request(node[from], act, X, 41, 3, msg, &id);
	for (const int *p = members; *p; p++) {
		uint32_t req;
		enum arb_outcome o;
		char why[256];
		CHECK(arbiter__deliver(node[*p], (uint32_t)from, pid, msg, len, &req, &o, why, sizeof(why)) == 0,
		      "request delivered");
		if (*p == from) {
			CHECK(req == id, "own request recognised");
			r.req = req;
			r.o = o;
			snprintf(r.why, sizeof(r.why), "%s", why);
		} else {
			CHECK(req == 0, "another's request is not ours");
		}
	}
	return r;
}

static void fresh(void)
{
	for (int i = 1; i <= 3; i++) {
		arbiter__destroy(node[i]);
		unlink(files[i]);
		CHECK(arbiter__create((uint32_t)i, files[i], &node[i]) == 0, "create %d", i);
	}
}

static const int ALL[] = { P, S, T, 0 }, ST[] = { S, T, 0 }, PT[] = { P, T, 0 };
static const int ONLY_P[] = { P, 0 }, ONLY_S[] = { S, 0 }, ONLY_T[] = { T, 0 };

static void test_together(void)
{
	fresh();
	view(ALL);
	struct result r = ask(P, ARB_REVOKED, ALL);
	CHECK(r.o == ARB_GRANTED, "revoke granted: %s", r.why);
	r = ask(S, ARB_TAKEN, ALL);
	CHECK(r.o == ARB_SUPERSEDED && strstr(r.why, "revoked"), "claim after revoke: %d %s", r.o, r.why);
	for (int i = 1; i <= 3; i++)
		CHECK(arbiter__decided(node[i], X, NULL) == ARB_REVOKED, "node %d agrees", i);
	r = ask(P, ARB_REVOKED, ALL);
	CHECK(r.o == ARB_GRANTED, "a repeated revoke is granted again");
}

static void test_primary_isolated(void)
{
	fresh();
	view(ALL);
	view(ST);
	view(ONLY_P);
	struct result c = ask(S, ARB_TAKEN, ST);
	CHECK(c.o == ARB_GRANTED, "the majority's takeover: %s", c.why);
	struct result r = ask(P, ARB_REVOKED, ONLY_P);
	CHECK(r.o == ARB_INVALID, "the isolated primary's revoke counts: %d %s", r.o, r.why);
	CHECK(arbiter__decided(node[P], X, NULL) == ARB_NONE, "nothing decided on the isolated primary");
	view(ALL);	/* healed */
	CHECK(arbiter__decided(node[P], X, NULL) == ARB_TAKEN, "the primary learns of the takeover at sync");
	r = ask(P, ARB_REVOKED, ALL);
	CHECK(r.o == ARB_SUPERSEDED, "the old primary's revoke after the heal: %d %s", r.o, r.why);
}

static void test_secondary_isolated(void)
{
	fresh();
	view(ALL);
	view(PT);
	view(ONLY_S);
	struct result c = ask(S, ARB_TAKEN, ONLY_S);
	CHECK(c.o == ARB_INVALID, "the isolated secondary's claim counts: %d %s", c.o, c.why);
	struct result r = ask(P, ARB_REVOKED, PT);
	CHECK(r.o == ARB_GRANTED, "the primary's revoke with the third node: %s", r.why);
	view(ALL);
	c = ask(S, ARB_TAKEN, ALL);
	CHECK(c.o == ARB_SUPERSEDED, "the revoked secondary's claim after the heal: %d", c.o);
}

static void test_all_apart(void)
{
	fresh();
	view(ALL);
	view(ONLY_P);
	view(ONLY_S);
	view(ONLY_T);
	CHECK(ask(S, ARB_TAKEN, ONLY_S).o == ARB_INVALID, "claim alone");
	CHECK(ask(P, ARB_REVOKED, ONLY_P).o == ARB_INVALID, "revoke alone");
}

static void test_flap(bool restart_t)
{
	fresh();
	view(ALL);
	view(ST);	/* the primary's node left */
	view(ONLY_P);
	CHECK(ask(S, ARB_TAKEN, ST).o == ARB_GRANTED, "takeover in {S,T}");
	if (restart_t) {
		arbiter__destroy(node[T]);
		CHECK(arbiter__create(T, files[T], &node[T]) == 0, "T restarted");
		CHECK(arbiter__decided(node[T], X, NULL) == ARB_TAKEN, "T's state file kept the takeover");
	}
	view(PT);	/* the flap: the primary back with T, S cut off */
	view(ONLY_S);
	struct result r = ask(P, ARB_REVOKED, PT);
	CHECK(r.o == ARB_SUPERSEDED, "revoke in {P,T} after a takeover in {S,T}%s: %d %s",
	      restart_t ? " (T restarted)" : "", r.o, r.why);
}

static void test_unsynced(void)
{
	fresh();
	struct arb_member m[3] = { { P, pid }, { S, pid }, { T, pid } };
	uint8_t sync[ARB_MSG_MAX];
	for (int i = 1; i <= 3; i++)
		arbiter__view(node[i], m, 3, sync);	/* no SYNC delivered yet */
	struct result r = ask(S, ARB_TAKEN, ALL);
	CHECK(r.o == ARB_INVALID && strstr(r.why, "not synced"), "a claim before the SYNCs: %d %s", r.o, r.why);
	CHECK(arbiter__decided(node[T], X, NULL) == ARB_NONE, "nothing decided");
}

static void test_bad_messages(void)
{
	fresh();
	view(ALL);
	uint8_t msg[ARB_MSG_MAX];
	uint32_t id, req;
	enum arb_outcome o;
	char why[256];
	size_t len = arbiter__request(node[P], ARB_REVOKED, X, 1, 3, msg, &id);
	for (size_t cut = 0; cut < len; cut++)
		CHECK(arbiter__deliver(node[S], P, pid, msg, cut, &req, &o, why, sizeof(why)) == -EBADMSG,
		      "a request cut at %zu bytes", cut);
	msg[0] ^= 1;
	CHECK(arbiter__deliver(node[S], P, pid, msg, len, &req, &o, why, sizeof(why)) == -EBADMSG, "bad magic");
	msg[0] ^= 1;
	msg[8] = 7;	/* act */
	CHECK(arbiter__deliver(node[S], P, pid, msg, len, &req, &o, why, sizeof(why)) == -EBADMSG, "bad act");
	struct arb_member m[3] = { { P, pid }, { S, pid }, { T, pid } };
	len = arbiter__view(node[P], m, 3, msg);
	for (size_t cut = 0; cut < len; cut += 3)
		CHECK(arbiter__deliver(node[S], P, pid, msg, cut, &req, &o, why, sizeof(why)) == -EBADMSG,
		      "a SYNC cut at %zu bytes", cut);
	CHECK(arbiter__decided(node[S], X, NULL) == ARB_NONE, "nothing decided by bad input");
}

static void test_announce(void)
{
	fresh();
	view(ALL);
	uint8_t msg[ARB_MSG_MAX];
	struct arb_vmm v = { .known = true, .primary = true, .session = X, .epoch = 9 };
	snprintf(v.state, sizeof(v.state), "protected");
	size_t len = arbiter__announce(node[P], &v, msg);
	uint32_t req;
	enum arb_outcome o;
	char why[64];
	CHECK(arbiter__deliver(node[S], P, pid, msg, len, &req, &o, why, sizeof(why)) == 0, "announce");
	const struct arb_vmm *got = arbiter__vmm_of(node[S], P);
	CHECK(got && got->primary && got->session == X && !strcmp(got->state, "protected"), "announced VMM");
	view(ALL);	/* it also rides on every SYNC */
	got = arbiter__vmm_of(node[T], P);
	CHECK(got && got->session == X, "the SYNC carries the announcement");
	CHECK(arbiter__primary_session_of(node[S], P) == X, "the primary's session");
	struct arb_vmm gone = { .known = false };
	len = arbiter__announce(node[P], &gone, msg);
	CHECK(arbiter__deliver(node[S], P, pid, msg, len, &req, &o, why, sizeof(why)) == 0, "announce gone");
	CHECK(!arbiter__vmm_of(node[S], P)->known && arbiter__primary_session_of(node[S], P) == X,
	      "a primary whose VMM died (then its node) is still known as that session's primary");
	arbiter__forget_node(node[S], P);
	CHECK(!arbiter__vmm_of(node[S], P), "forgotten");
}

int main(void)
{
	pid = (uint32_t)getpid();
	for (int i = 1; i <= 3; i++)
		snprintf(files[i], sizeof(files[i]), "/tmp/test_arbiter.%u.%d", pid, i);
	test_together();
	test_primary_isolated();
	test_secondary_isolated();
	test_all_apart();
	test_flap(false);
	test_flap(true);
	test_unsynced();
	test_bad_messages();
	test_announce();
	for (int i = 1; i <= 3; i++) {
		arbiter__destroy(node[i]);
		unlink(files[i]);
	}
	if (failures) {
		printf("test_arbiter: %d checks failed\n", failures);
		return 1;
	}
	printf("test_arbiter: all checks passed\n");
	return 0;
}
