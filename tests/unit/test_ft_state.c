/*
 * test_ft_state.c - the roles' state machine (ft/role_state.c): the
 * transitions the design needs are there, and the ones that would make two
 * primaries or lose the only good copy are not: nothing leaves
 * handing-over but handed-over or stopped, nothing leaves those two, a
 * secondary never fails over from waiting (no checkpoint), and no state of
 * one role leads into the other's, but failed-over (a secondary that took
 * over is a primary now).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ft/ft_internal.h"
#include "vmm/monitor/monitor_internal.h"

#include "tests/unit/check.h"

#define NSTATES (FT_HANDING_OVER + 1)

static const enum ft_state primary_states[] = {
	FT_SETUP, FT_SYNCING, FT_PROTECTED, FT_UNPROTECTED, FT_REVOKING, FT_HANDING_OVER,
	FT_HANDED_OVER, FT_STOPPED,
};
static const enum ft_state secondary_states[] = {
	FT_WAITING, FT_RECEIVING, FT_PEER_LOST, FT_REFUSED, FT_FAILED,
};

static void test_table(void)
{
	static const struct { enum ft_state from, to; } needed[] = {
		{ FT_NONE, FT_SETUP }, { FT_SETUP, FT_SYNCING }, { FT_SYNCING, FT_PROTECTED },
		{ FT_PROTECTED, FT_REVOKING }, { FT_REVOKING, FT_UNPROTECTED },
		{ FT_PROTECTED, FT_HANDING_OVER }, { FT_HANDING_OVER, FT_HANDED_OVER },
		{ FT_HANDING_OVER, FT_STOPPED }, { FT_PROTECTED, FT_STOPPED },
		{ FT_UNPROTECTED, FT_SETUP }, { FT_NONE, FT_WAITING }, { FT_WAITING, FT_RECEIVING },
		{ FT_RECEIVING, FT_PEER_LOST }, { FT_PEER_LOST, FT_FAILED_OVER },
		{ FT_RECEIVING, FT_FAILED_OVER }, { FT_RECEIVING, FT_REFUSED },
		{ FT_FAILED_OVER, FT_SETUP },
	};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		CHECK(ft_state__allowed(needed[i].from, needed[i].to), "%s -> %s is needed",
		      ft_state__name(needed[i].from), ft_state__name(needed[i].to));

	for (int to = 0; to < NSTATES; to++) {
		/* No way back once HANDOVER is on its way, and none out of the ends. */
		if (to != FT_HANDING_OVER && to != FT_HANDED_OVER && to != FT_STOPPED)
			CHECK(!ft_state__allowed(FT_HANDING_OVER, to), "handing-over -> %s",
			      ft_state__name(to));
		if (to != FT_HANDED_OVER)
			CHECK(!ft_state__allowed(FT_HANDED_OVER, to), "handed-over -> %s",
			      ft_state__name(to));
		if (to != FT_STOPPED)
			CHECK(!ft_state__allowed(FT_STOPPED, to), "stopped -> %s", ft_state__name(to));
	}
	CHECK(!ft_state__allowed(FT_WAITING, FT_FAILED_OVER), "fail over with no checkpoint");
	CHECK(!ft_state__allowed(FT_FAILED_OVER, FT_RECEIVING), "a primary again a secondary");

	/* The roles do not cross, but through failed-over. */
	for (size_t i = 0; i < sizeof(primary_states) / sizeof(primary_states[0]); i++)
		for (size_t j = 0; j < sizeof(secondary_states) / sizeof(secondary_states[0]); j++) {
			CHECK(!ft_state__allowed(primary_states[i], secondary_states[j]), "%s -> %s",
			      ft_state__name(primary_states[i]), ft_state__name(secondary_states[j]));
			CHECK(!ft_state__allowed(secondary_states[j], primary_states[i]), "%s -> %s",
			      ft_state__name(secondary_states[j]), ft_state__name(primary_states[i]));
		}
	for (int s = 0; s < NSTATES; s++)
		CHECK(strcmp(ft_state__name(s), "unknown") != 0, "state %d has no name", s);
	CHECK(!ft_state__allowed(NSTATES + 3, FT_SETUP), "a state out of range");
}

static void test_moves(void)
{
	struct ft *ft = calloc(1, sizeof(*ft));
	pthread_mutex_init(&ft->lock, NULL);
	pthread_cond_init(&ft->cond, NULL);
	ft->state = FT_PROTECTED;
	CHECK(ft__move(ft, FT_PROTECTED, FT_HANDING_OVER) == 0, "protected -> handing-over");
	CHECK(ft__move(ft, FT_PROTECTED, FT_UNPROTECTED) == -EAGAIN && ft->state == FT_HANDING_OVER,
	      "a move from a state it is not in");
	CHECK(ft__set_state(ft, FT_PROTECTED) == -EPERM && ft->state == FT_HANDING_OVER,
	      "back to protected after HANDOVER");
	char err[VMM_ERR_LEN];
	CHECK(!ft__may_run_guest(ft, err), "the guest may run while handing over");
	CHECK(ft__set_state(ft, FT_STOPPED) == 0 && !ft__may_run_guest(ft, err), "stopped");
	CHECK(strstr(err, "stopped") != NULL, "why not: %s", err);
	ft->state = FT_UNPROTECTED;
	CHECK(ft__may_run_guest(ft, err), "an unprotected primary runs its guest");
	pthread_mutex_destroy(&ft->lock);
	pthread_cond_destroy(&ft->cond);
	free(ft);
}

/*
 * The monitor's side of an event is its queue (tested end to end in
 * tests/integration/test_monitor_events.py); here each line is recorded as
 * monitor__event would render its data, to check what the state machine says.
 */
static char events[16][512];
static int nr_events;

void monitor__event(struct monitor *m, const char *name, struct mon_reply *data)
{
	struct sbuf out;
	(void)m;
	sbuf__init(&out);
	mon_reply__render(data, true, &out);
	if (nr_events < 16)
		snprintf(events[nr_events++], sizeof(events[0]), "%s %.*s", name, (int)out.len, out.data);
	sbuf__free(&out);
}

static void test_events(void)
{
	struct ft *ft = calloc(1, sizeof(*ft));
	pthread_mutex_init(&ft->lock, NULL);
	pthread_cond_init(&ft->cond, NULL);
	ft->mon = (struct monitor *)ft;	/* any non-NULL: events are on */
	ft->state = FT_RECEIVING;
	ft->session = 0xabc;
	ft->sec.committed_epoch = 7;
	snprintf(ft->peer, sizeof(ft->peer), "10.0.0.1:4444");
	CHECK(ft__set_state(ft, FT_PEER_LOST) == 0 && nr_events == 2, "peer-lost: %d events", nr_events);
	CHECK(strstr(events[0], "STATE ") == events[0] && strstr(events[0], "\"state\":\"peer-lost\"") &&
	      strstr(events[0], "\"from\":\"receiving\"") && strstr(events[0], "\"epoch\":7") &&
	      strstr(events[0], "\"session\":\"0000000000000abc\"") &&
	      strstr(events[0], "\"role\":\"secondary\""), "STATE event: %s", events[0]);
	CHECK(strstr(events[1], "PEER_LOST ") == events[1] && strstr(events[1], "\"peer\":\"10.0.0.1:4444\""),
	      "PEER_LOST event: %s", events[1]);
	CHECK(ft__set_state(ft, FT_PEER_LOST) == 0 && nr_events == 2, "no event without a change");
	CHECK(ft__set_state(ft, FT_PROTECTED) == -EPERM && nr_events == 2, "no event for a refused move");
	ft->mon = NULL;
	CHECK(ft__set_state(ft, FT_RECEIVING) == 0 && nr_events == 2, "no monitor, no event");
	pthread_mutex_destroy(&ft->lock);
	pthread_cond_destroy(&ft->cond);
	free(ft);
}

int main(void)
{
	test_table();
	test_moves();
	test_events();
	if (failures) {
		printf("test_ft_state: %d checks failed\n", failures);
		return 1;
	}
	printf("test_ft_state: all checks passed\n");
	return 0;
}
