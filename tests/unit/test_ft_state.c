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

int main(void)
{
	test_table();
	test_moves();
	if (failures) {
		printf("test_ft_state: %d checks failed\n", failures);
		return 1;
	}
	printf("test_ft_state: all checks passed\n");
	return 0;
}
