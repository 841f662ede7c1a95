/*
 * link.c - the replication link's liveness, for both roles: a side that
 * has sent nothing for heartbeat_ms sends a HEARTBEAT, and a peer from
 * which nothing has arrived for heartbeat_timeout_ms is lost. Every wait
 * and every long phase (the primary's wait for a trigger or an ACK, the
 * initial sync's scans, the secondary's receive loop) asks these two.
 */
#include <stdio.h>

#include "ft/ft_internal.h"

int ft_link__keepalive(struct ft *ft)
{
	uint64_t now = ft__now_ns();
	if (now - xport__last_tx_ns(ft->x) < (uint64_t)ft->cfg.heartbeat_ms * 1000000u)
		return 0;
	return xport__send_buf(ft->x, FT_MSG_HEARTBEAT, 0, 0, NULL, 0);
}

bool ft_link__peer_silent(struct ft *ft, char *err, size_t errlen)
{
	uint64_t now = ft__now_ns();
	if (now - xport__last_rx_ns(ft->x) <= (uint64_t)ft->cfg.heartbeat_timeout_ms * 1000000u)
		return false;
	snprintf(err, errlen, "%s %s silent for %u ms (heartbeat timeout)",
		 ft->primary_role ? "secondary" : "primary", ft->peer, ft->cfg.heartbeat_timeout_ms);
	return true;
}
