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

#define FT_STATE_NAME(e, name, role, what) [e] = name,
static const char *const state_names[] = { FT_STATES(FT_STATE_NAME) };
#undef FT_STATE_NAME

const char *ft_state__name(enum ft_state s)
{
	if ((unsigned)s < sizeof(state_names) / sizeof(state_names[0]) && state_names[s])
		return state_names[s];
	return "unknown";
}

struct mon_reply *ft__event_begin_locked(struct ft *ft)
{
	if (!ft->mon)
		return NULL;
	struct mon_reply *r = mon_reply__new();
	if (!r)
		return NULL;
	char session[20] = "";
	if (ft->session)
		snprintf(session, sizeof(session), "%016llx", (unsigned long long)ft->session);
	mon_reply__str(r, "role", ft->primary_role ? "primary" : "secondary");
	mon_reply__str(r, "state", ft_state__name(ft->state));
	mon_reply__str(r, "session", session);
	/* the primary: the last checkpoint its secondary acknowledged; the
	 * secondary: the one it would fail over to */
	mon_reply__u64(r, "epoch", ft->primary_role ? ft->pri.acked_epoch : ft->sec.committed_epoch);
	mon_reply__str(r, "peer", ft->peer);
	return r;
}

void ft__event_end_locked(struct ft *ft, const char *name, struct mon_reply *r)
{
	if (!r)
		return;
	monitor__event(ft->mon, name, r);
	mon_reply__delete(r);
}

/* With ft->lock held. Every change is a STATE event; losing the peer is a
 * PEER_LOST event too (the secondary's peer-lost, the primary's revoking). */
static int move_locked(struct ft *ft, enum ft_state to)
{
	enum ft_state from = ft->state;
	if (!ft_state__allowed(from, to)) {
		fprintf(stderr, "ftvm: ft: refused transition %s -> %s\n", ft_state__name(from),
			ft_state__name(to));
		return -EPERM;
	}
	if (from == to)
		return 0;
	fprintf(stderr, "ftvm: ft: %s -> %s\n", ft_state__name(from), ft_state__name(to));
	ft->state = to;
	pthread_cond_broadcast(&ft->cond);
	struct mon_reply *r = ft__event_begin_locked(ft);
	if (r) {
		mon_reply__str(r, "from", ft_state__name(from));
		mon_reply__str(r, "error", ft->last_error);
		ft__event_end_locked(ft, "STATE", r);
	}
	if (to == FT_PEER_LOST || to == FT_REVOKING) {
		r = ft__event_begin_locked(ft);
		if (r)
			mon_reply__str(r, "error", ft->last_error);
		ft__event_end_locked(ft, "PEER_LOST", r);
	}
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
