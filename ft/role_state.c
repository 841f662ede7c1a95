/*
 * role_state.c - the roles' lives as one state machine: a primary from
 * `migrate` to protected, revoking-peer, handing-over, handed-over or
 * stopped; a secondary from waiting to receiving, peer-lost, refused,
 * failed or failed-over. Every change of state goes through here, and only
 * the transitions in the table below happen; anything else is refused and
 * logged. Two rules the table makes structural rather than a condition
 * somewhere:
 *   - once HANDOVER is on its way (handing-over) the guest never runs here
 *     again: handing-over leads only to handed-over or stopped, both final;
 *   - a connection that fails its handshake makes no transition at all
 *     (secondary.c: SERVE_STRAY), so a secondary's checkpoint, session and
 *     state are what they were.
 * docs/ft.md draws the same machine.
 */
#include <errno.h>
#include <stdio.h>

#include "ft/ft_internal.h"

#define B(s) (1u << (s))

static const uint32_t next_states[] = {
	[FT_NONE] = B(FT_SETUP) | B(FT_WAITING),
	/* primary */
	[FT_SETUP] = B(FT_SYNCING) | B(FT_UNPROTECTED),
	[FT_SYNCING] = B(FT_PROTECTED) | B(FT_UNPROTECTED) | B(FT_REVOKING) | B(FT_STOPPED),
	[FT_PROTECTED] = B(FT_UNPROTECTED) | B(FT_REVOKING) | B(FT_HANDING_OVER) | B(FT_STOPPED),
	[FT_HANDING_OVER] = B(FT_HANDED_OVER) | B(FT_STOPPED),
	[FT_REVOKING] = B(FT_UNPROTECTED) | B(FT_STOPPED),
	[FT_UNPROTECTED] = B(FT_SETUP),
	[FT_HANDED_OVER] = 0,	/* final: the guest runs on the secondary */
	[FT_STOPPED] = 0,	/* final: the guest never runs here again */
	/* secondary */
	[FT_WAITING] = B(FT_RECEIVING),
	[FT_RECEIVING] = B(FT_WAITING) | B(FT_PEER_LOST) | B(FT_REFUSED) | B(FT_FAILED) |
			 B(FT_FAILED_OVER),
	[FT_PEER_LOST] = B(FT_RECEIVING) | B(FT_FAILED_OVER) | B(FT_FAILED),
	[FT_REFUSED] = B(FT_RECEIVING) | B(FT_FAILED_OVER) | B(FT_FAILED),
	[FT_FAILED] = B(FT_RECEIVING),
	/* a secondary that took over is a primary: it may be protected */
	[FT_FAILED_OVER] = B(FT_SETUP),
};

bool ft_state__allowed(enum ft_state from, enum ft_state to)
{
	if ((unsigned)from >= sizeof(next_states) / sizeof(next_states[0]) || (unsigned)to >= 32)
		return false;
	return from == to || (next_states[from] & B(to));
}

const char *ft_state__name(enum ft_state s)
{
	switch (s) {
	case FT_NONE: return "none";
	case FT_SETUP: return "setup";
	case FT_SYNCING: return "syncing";
	case FT_PROTECTED: return "protected";
	case FT_UNPROTECTED: return "unprotected";
	case FT_WAITING: return "waiting";
	case FT_RECEIVING: return "receiving";
	case FT_PEER_LOST: return "peer-lost";
	case FT_REFUSED: return "refused";
	case FT_FAILED_OVER: return "failed-over";
	case FT_FAILED: return "failed";
	case FT_HANDED_OVER: return "handed-over";
	case FT_REVOKING: return "revoking-peer";
	case FT_STOPPED: return "stopped";
	case FT_HANDING_OVER: return "handing-over";
	}
	return "unknown";
}

/* With ft->lock held. */
static int move_locked(struct ft *ft, enum ft_state to)
{
	if (!ft_state__allowed(ft->state, to)) {
		fprintf(stderr, "ftvm: ft: refused transition %s -> %s\n", ft_state__name(ft->state),
			ft_state__name(to));
		return -EPERM;
	}
	if (ft->state != to)
		fprintf(stderr, "ftvm: ft: %s -> %s\n", ft_state__name(ft->state), ft_state__name(to));
	ft->state = to;
	pthread_cond_broadcast(&ft->cond);
	return 0;
}

int ft__set_state(struct ft *ft, enum ft_state to)
{
	pthread_mutex_lock(&ft->lock);
	int ret = move_locked(ft, to);
	pthread_mutex_unlock(&ft->lock);
	return ret;
}

int ft__move(struct ft *ft, enum ft_state from, enum ft_state to)
{
	pthread_mutex_lock(&ft->lock);
	int ret = ft->state == from ? move_locked(ft, to) : -EAGAIN;
	pthread_mutex_unlock(&ft->lock);
	return ret;
}

bool ft__may_run_guest(struct ft *ft, char *err)
{
	pthread_mutex_lock(&ft->lock);
	enum ft_state st = ft->state;
	bool ok = st != FT_STOPPED && st != FT_HANDED_OVER && st != FT_HANDING_OVER;
	if (!ok)
		snprintf(err, VMM_ERR_LEN, "the guest must not run here (state %s): %s",
			 ft_state__name(st), ft->last_error);
	pthread_mutex_unlock(&ft->lock);
	return ok;
}
