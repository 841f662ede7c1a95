/*
 * secondary.c - the receiving side's role thread: accept a primary, check
 * its HELLO, then feed its messages to the stream step (receive.c, which
 * stages, verifies and applies each checkpoint all or nothing), publish
 * each committed checkpoint under the lock and acknowledge it. A
 * checkpoint that is not complete and verified never touches the VM: the
 * last committed one is always intact, ready for failover.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft/ft_internal.h"
#include "ft/receive.h"

static int send_buf_ok(struct ft *ft)
{
	return xport__send_buf(ft->x, FT_MSG_HELLO_OK, 0, 0, NULL, 0);
}

static void send_error(struct ft *ft, const char *msg)
{
	xport__send_buf(ft->x, FT_MSG_ERROR, 0, 0, msg, strlen(msg));
}

static void *target_page(void *opaque, uint64_t idx)
{
	struct vm *vm = opaque;
	return vm__guest_ptr(vm, vm__page_gpa(vm, idx), FT_PAGE);
}

static int target_check_state(void *opaque, const void *blob, size_t len, char *err)
{
	return vm__check_state(opaque, blob, len, err);
}

/* This VM's RAM, and in replicated mode its disk, as the stream's target. */
static void target_of(struct ft *ft, struct ft_rx_target *t)
{
	bool replicated = ft->cfg.drive_mode == VM_DRIVE_REPLICATED && ft->cfg.disk;
	*t = (struct ft_rx_target){
		.nr_pages = vm__nr_pages(ft->cfg.vm),
		.mem_size = vm__mem_size(ft->cfg.vm),
		.page = target_page,
		.check_state = target_check_state,
		.opaque = ft->cfg.vm,
		.disk = replicated ? ft->cfg.disk : NULL,
		.et = replicated ? ft->cfg.et : NULL,
		.disk_size = ft->cfg.disk ? ft->cfg.disk->size : 0,
	};
}

/* A verified checkpoint was applied: it is the one to fail over to. */
static void publish_commit(struct ft *ft, struct ft_rx *rx)
{
	pthread_mutex_lock(&ft->lock);
	ft_rx__take_committed(rx, &ft->sec.committed_state, &ft->sec.committed_outputs);
	ft->sec.committed_epoch = rx->committed;
	ft->sec.committed_ns = ft__now_ns();
	ft->epochs++;
	ft->acked_capture_ns = rx->committed_capture_ns;
	ft_samples__add(&ft->ckpt_pages, rx->committed_pages);
	pthread_mutex_unlock(&ft->lock);
	ft_audit(ft, "committed", rx->committed, "pages=%u", rx->committed_pages);
}

/* Forgets the committed checkpoint (cancelled, or half applied: why). */
static void drop_committed(struct ft *ft, const char *unusable)
{
	pthread_mutex_lock(&ft->lock);
	if (unusable)
		snprintf(ft->sec.unusable, sizeof(ft->sec.unusable), "%s", unusable);
	ft->sec.committed_epoch = 0;
	sbuf__reset(&ft->sec.committed_state);
	sbuf__reset(&ft->sec.committed_outputs);
	pthread_mutex_unlock(&ft->lock);
}

#define SERVE_CANCELLED 0
#define SERVE_LOST 1		/* the primary or the link is gone */
#define SERVE_REFUSED 2		/* the primary is there but sent what we cannot trust */
#define SERVE_HANDOVER 3	/* the primary asked us to take over now */
#define SERVE_STRAY 4		/* not our primary (no valid HELLO): nothing changed */

#define HELLO_DEADLINE_MS 10000	/* all of a HELLO, however slowly it trickles */
#define HELLO_MAX_BYTES 65536

/* The first message, within a total deadline (not an inactivity one). */
static int recv_hello(struct ft *ft, struct xport_msg *m, char *err, size_t errlen)
{
	uint64_t deadline = ft__now_ns() + HELLO_DEADLINE_MS * 1000000ull;
	xport__set_max_payload(ft->x, HELLO_MAX_BYTES);
	for (;;) {
		int ret = xport__recv(ft->x, m, 100, err, errlen);
		if (ret != -ETIMEDOUT)
			return ret;
		if (atomic_load(&ft->stop))
			return -ECANCELED;
		if (ft__now_ns() >= deadline) {
			snprintf(err, errlen, "no complete HELLO within %d ms", HELLO_DEADLINE_MS);
			return -ETIMEDOUT;
		}
	}
}

/* One primary's stream, until it ends; says why. */
static int serve(struct ft *ft)
{
	struct xport_msg m;
	struct ft_rx rx;
	struct ft_rx_target target;
	struct ft_rx_reply reply;
	struct ft_hello mine, peer;
	char err[512] = "";
	uint64_t last_drain = 0, begin_ns = 0;	/* BEGIN of the open checkpoint read */
	int ret, why = SERVE_LOST;

	target_of(ft, &target);
	ft_rx__init(&rx, &target);
	xport_msg__init(&m);
	/* With credentials, the peer proves it holds them before one ftvm
	 * message is read; one that fails learns nothing but a TLS alert. */
	char from_host[128];
	ft__host_of(xport__peer(ft->x), from_host, sizeof(from_host));
	ret = ft->cfg.tls ? xport__start_tls(ft->x, ft->cfg.tls, true, from_host, FT_TLS_HANDSHAKE_MS, err,
					     sizeof(err))
			  : 0;
	bool authenticated = !ret;
	if (!ret)
		ret = recv_hello(ft, &m, err, sizeof(err));
	if (!ret && m.type != FT_MSG_HELLO) {
		snprintf(err, sizeof(err), "expected HELLO, got message type %u", m.type);
		ret = -EPROTO;
	}
	if (!ret)
		ret = ft_hello__decode(m.payload.data, m.payload.len, &peer, err, sizeof(err));
	ft_hello__describe(ft, &mine);
	if (!ret)
		ret = ft_hello__check(&mine, &peer, err, sizeof(err));
	pthread_mutex_lock(&ft->lock);
	bool holds = ft->sec.committed_epoch > 0 && !ft->sec.rearmed;
	uint64_t held = ft->sec.committed_epoch, held_session = ft->session;
	pthread_mutex_unlock(&ft->lock);
	if (!ret && holds) {
		/* The only copy of a guest whose primary may be gone: replaced
		 * only when the cluster or the operator says so. */
		snprintf(err, sizeof(err), "this secondary holds checkpoint %llu of session %016llx; "
			 "it takes a new primary only after migrate_incoming_reset",
			 (unsigned long long)held, (unsigned long long)held_session);
		ret = -EBUSY;
	}
	if (ret) {
		/* Not our primary (a scanner, a health check, a stranger, a
		 * mismatched host): it changes nothing here. */
		const char *from = xport__peer(ft->x);
		pthread_mutex_lock(&ft->lock);
		ft->sec.stray_connections++;
		snprintf(ft->sec.last_stray, sizeof(ft->sec.last_stray), "%s: %s", from, err);
		pthread_mutex_unlock(&ft->lock);
		fprintf(stderr, "ftvm: ft: refused connection from %s: %s\n", from, err);
		ft_audit(ft, "stray", held, "peer=%s %s", from, err);
		if (authenticated && ret != -ETIMEDOUT && ret != -EPIPE && ret != -ECANCELED)
			send_error(ft, err);
		why = SERVE_STRAY;
		goto out;
	}
	/* Only a connection that passed HELLO becomes the peer we report. */
	pthread_mutex_lock(&ft->lock);
	snprintf(ft->peer, sizeof(ft->peer), "%s", xport__peer(ft->x));
	pthread_mutex_unlock(&ft->lock);
	xport__set_max_payload(ft->x, 64u << 20);
	ret = send_buf_ok(ft);
	if (!ret && (ret = ft_link__start(ft)))
		snprintf(err, sizeof(err), "starting the link's heartbeat thread: %s", strerror(-ret));
	if (ret)
		goto out;

	/* A fresh stream: forget any earlier primary's state. */
	pthread_mutex_lock(&ft->lock);
	ft->sec.rearmed = false;
	ft->sec.unusable[0] = '\0';
	ft->sec.committed_epoch = 0;
	sbuf__reset(&ft->sec.committed_state);
	sbuf__reset(&ft->sec.committed_outputs);
	ft->last_error[0] = '\0';
	ft->session = peer.session;
	pthread_mutex_unlock(&ft->lock);
	vm__zero_ram(ft->cfg.vm);
	if (target.disk && target.disk->ops->discard)
		target.disk->ops->discard(target.disk->be, 0, target.disk->size);
	ft__set_state(ft, FT_RECEIVING);

	for (;;) {
		if (ft->inject == FT_INJECT_STALL_RECEIVE) {
			/* A secondary stuck in its role thread (a hung disk, a
			 * stalled process) while its link thread still sends
			 * heartbeats: the primary sees a live peer that reads
			 * nothing. Stays so until the VMM ends. */
			fprintf(stderr, "ftvm: ft: injected: the secondary reads nothing more\n");
			while (!atomic_load(&ft->stop))
				usleep(50000);
			goto out;
		}
		ret = xport__recv(ft->x, &m, (int)ft__hb_ms(ft), err, sizeof(err));
		uint64_t now = ft__now_ns();
		/* Keep this host's tap empty: what the LAN floods here is for
		 * the primary's guest (see ft__drain_rx). */
		if (now - last_drain > 100000000u) {
			ft__drain_rx(ft);
			last_drain = now;
		}
		if (ret == -ETIMEDOUT) {
			if (atomic_load(&ft->stop))
				goto out;
			if (ft_link__peer_silent(ft, err, sizeof(err)))
				goto lost;
		} else if (ret) {
			if (ret == -EPIPE)
				snprintf(err, sizeof(err), "primary %s closed the link", ft->peer);
			/* A stream cut mid-message is a lost peer; a message that
			 * arrived whole but wrong is refused. */
			if ((ret == -EBADMSG || ret == -EPROTO) && !xport__peer_closed(ft->x))
				goto refuse;
			goto lost;
		}
		if (ret == -ETIMEDOUT)
			continue;

		if (m.type == FT_MSG_BEGIN)
			begin_ns = now;
		switch (ft_rx__step(&rx, &m, &reply, err, sizeof(err))) {
		case FT_RX_NEXT:
			break;
		case FT_RX_COMMITTED:
			publish_commit(ft, &rx);
			if (ft->inject == FT_INJECT_SLOW_COMMIT) {
				/* As slow as applying a big checkpoint to a slow disk. */
				ft->inject = FT_INJECT_NONE;
				fprintf(stderr, "ftvm: ft: injected a slow commit of checkpoint %llu\n",
					(unsigned long long)rx.committed);
				usleep(3 * ft__hb_timeout_ms(ft) * 1000u);
			}
			struct ft_ack_times at = {
				.receive_us = (uint32_t)((now - begin_ns) / 1000),
				.commit_us = (uint32_t)((ft__now_ns() - now) / 1000),
			};
			ret = xport__send_buf(ft->x, reply.type, 0, reply.epoch, &at, sizeof(at));
			if (ret) {
				snprintf(err, sizeof(err), "sending ACK: %s", strerror(-ret));
				goto lost;
			}
			break;
		case FT_RX_REFUSE:
			goto refuse;
		case FT_RX_UNUSABLE:
			ft_audit(ft, "unusable", ft_rx__open_epoch(&rx), "%s", err);
			drop_committed(ft, err);
			goto refuse;
		case FT_RX_PEER_ERROR:
			goto lost;
		case FT_RX_HANDOVER:
			/* Take over whether or not the OK arrives: the primary
			 * never runs the guest again once it sent HANDOVER. */
			if (ft->inject == FT_INJECT_HANDOVER_NO_OK)
				fprintf(stderr, "ftvm: ft: injected: no HANDOVER_OK\n");
			else if (xport__send_buf(ft->x, reply.type, 0, reply.epoch, NULL, 0))
				fprintf(stderr, "ftvm: ft: HANDOVER_OK to %s not sent; taking over "
					"anyway\n", ft->peer);
			why = SERVE_HANDOVER;
			goto out;
		case FT_RX_CANCELLED:
			ft__error(ft, "primary %s cancelled protection; no failover target any more",
				  ft->peer);
			drop_committed(ft, NULL);
			/* Waiting before CANCEL_OK: a primary told "cancelled" finds
			 * a secondary that holds nothing and waits for a new one. */
			ft__set_state(ft, FT_WAITING);
			/* Only now may the primary release what it holds. */
			xport__send_buf(ft->x, reply.type, 0, reply.epoch, NULL, 0);
			why = SERVE_CANCELLED;
			goto out;
		}
	}

refuse:
	/* Bad input: say so, drop the link, keep the last committed state. */
	ft_audit(ft, "refused", ft->sec.committed_epoch, "%s", err);
	send_error(ft, err);
	why = SERVE_REFUSED;
lost:
	if (ft_rx__open_epoch(&rx)) {
		pthread_mutex_lock(&ft->lock);
		ft->sec.discarded_epochs++;
		ft->sec.last_discarded = ft_rx__open_epoch(&rx);
		pthread_mutex_unlock(&ft->lock);
		ft__error(ft, "%s; discarded incomplete checkpoint %llu, keeping committed checkpoint %llu",
			  err, (unsigned long long)ft_rx__open_epoch(&rx),
			  (unsigned long long)ft->sec.committed_epoch);
	} else {
		ft__error(ft, "%s; keeping committed checkpoint %llu", err,
			  (unsigned long long)ft->sec.committed_epoch);
	}
out:
	ft_link__stop(ft);
	xport_msg__free(&m);
	ft_rx__free(&rx);
	return why;
}

int ft_secondary__run(struct ft *ft)
{
	char err[256];

	ft__set_state(ft, FT_WAITING);
	while (!atomic_load(&ft->stop)) {
		struct xport *x = NULL;
		int ret = xport__accept(ft->listener, 200, &x, err, sizeof(err));
		ft__drain_rx(ft);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret) {
			ft__error(ft, "accept: %s", err);
			usleep(100000);
			continue;
		}
		xport__set_type_names(x, ft_msg_names, FT_MSG_MAX);
		xport__set_max_payload(x, 64u << 20);
		pthread_mutex_lock(&ft->lock);
		ft->x = x;
		pthread_mutex_unlock(&ft->lock);
		fprintf(stderr, "ftvm: ft: %s connected\n", xport__peer(x));

		int why = serve(ft);

		pthread_mutex_lock(&ft->lock);
		ft->x = NULL;
		bool have = ft->sec.committed_epoch > 0;
		bool unusable = ft->sec.unusable[0] != '\0';
		pthread_mutex_unlock(&ft->lock);
		xport__close(x);
		if (atomic_load(&ft->stop))
			break;
		if (why == SERVE_STRAY)
			continue;	/* state, checkpoint and peer exactly as they were */
		if (unusable) {
			ft__set_state(ft, FT_FAILED);
			continue;
		}
		if (why == SERVE_HANDOVER) {
			char ferr[256];
			if (ft__do_failover(ft, "handover", ferr))
				ft__error(ft, "handover: failover failed: %s", ferr);
			break;
		}
		if (why == SERVE_REFUSED) {
			/* The primary is alive: failing over would make two. */
			ft__set_state(ft, have ? FT_REFUSED : FT_WAITING);
			continue;
		}
		if (why == SERVE_CANCELLED || !have) {
			ft__set_state(ft, FT_WAITING);
			continue;
		}
		if (ft->cfg.failover_on_peer_loss) {
			char ferr[256];
			if (ft__do_failover(ft, "peer lost", ferr))
				ft__error(ft, "automatic failover failed: %s", ferr);
			break;
		}
		ft__set_state(ft, FT_PEER_LOST);
		/* Keep listening: `cont` fails over; a new primary starts afresh. */
	}
	return 0;
}
