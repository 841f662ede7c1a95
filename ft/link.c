/*
 * link.c - the replication link's liveness, for both roles. A heartbeat
 * thread ("ft-link") sends a HEARTBEAT whenever nothing was sent for
 * heartbeat_ms, whatever the role thread is busy with: a long capture, a
 * slow disk read, a big commit being applied, the initial sync. A peer
 * from which nothing (not a byte) has arrived for heartbeat_timeout_ms is
 * lost; the role thread asks that after every receive that timed out.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "ft/ft_internal.h"

static void *link_thread(void *arg)
{
	struct ft_link *l = arg;
	uint64_t period_ns = (uint64_t)l->heartbeat_ms * 1000000u;
	uint64_t tick_ns = period_ns / 4 ? period_ns / 4 : 1000000u;

	pthread_setname_np(pthread_self(), "ft-link");
	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t due = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + tick_ns;
		ts.tv_sec = (time_t)(due / 1000000000u);
		ts.tv_nsec = (long)(due % 1000000000u);
		pthread_cond_timedwait(&l->cond, &l->lock, &ts);
		if (l->stop)
			break;
		pthread_mutex_unlock(&l->lock);
		/* The transport serialises whole messages (its send lock): a
		 * heartbeat goes between two of the role thread's, never into one. */
		int ret = 0;
		if (ft__now_ns() - xport__last_tx_ns(l->x) >= period_ns)
			ret = xport__send_buf(l->x, FT_MSG_HEARTBEAT, 0, 0, NULL, 0);
		pthread_mutex_lock(&l->lock);
		if (ret)
			break;	/* the link is broken: the role thread finds out itself */
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int ft_link__start(struct ft *ft)
{
	struct ft_link *l = &ft->link;
	if (l->running)
		return -EALREADY;
	l->x = ft->x;
	l->heartbeat_ms = ft__hb_ms(ft);
	l->stop = false;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	int ret = -pthread_create(&l->thread, NULL, link_thread, l);
	if (ret) {
		pthread_cond_destroy(&l->cond);
		pthread_mutex_destroy(&l->lock);
		return ret;
	}
	l->running = true;
	return 0;
}

void ft_link__stop(struct ft *ft)
{
	struct ft_link *l = &ft->link;
	if (!l->running)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	/* A heartbeat blocked on a peer that reads nothing: wake it. The
	 * link is being closed anyway. */
	xport__shutdown(l->x);
	pthread_join(l->thread, NULL);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	l->running = false;
}

bool ft_link__peer_silent(struct ft *ft, char *err, size_t errlen)
{
	uint64_t now = ft__now_ns();
	if (now - xport__last_rx_ns(ft->x) <= (uint64_t)ft__hb_timeout_ms(ft) * 1000000u)
		return false;
	snprintf(err, errlen, "%s %s silent for %u ms (heartbeat timeout)",
		 ft->primary_role ? "secondary" : "primary", ft->peer, ft__hb_timeout_ms(ft));
	return true;
}
