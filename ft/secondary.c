/*
 * secondary.c - the receiving side: stage each checkpoint, verify it,
 * apply it atomically at COMMIT, acknowledge. A checkpoint that is not
 * complete and verified never touches the VM: the last committed one is
 * always intact, ready for failover.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft/ft_internal.h"

struct stage {
	bool open;
	uint64_t epoch;
	uint64_t capture_ns;
	struct sbuf idx;	/* u64 page indices */
	struct sbuf data;	/* their contents, decoded */
	uint32_t page_msgs, output_msgs;
	struct sbuf state, outputs;
	bool have_state, have_outputs;
	uint64_t *seen;		/* pages staged in this epoch (one bit a page) */
};

static void stage__reset(struct stage *s)
{
	/* Forget the pages this epoch staged (cheaper than the whole bitmap). */
	for (size_t i = 0; s->seen && i < s->idx.len / 8; i++) {
		uint64_t p;
		memcpy(&p, s->idx.data + i * 8, 8);
		s->seen[p / 64] &= ~(1ull << (p % 64));
	}
	s->open = false;
	s->page_msgs = s->output_msgs = 0;
	s->have_state = s->have_outputs = false;
	sbuf__reset(&s->idx);
	sbuf__reset(&s->data);
	sbuf__reset(&s->state);
	sbuf__reset(&s->outputs);
}

static void stage__free(struct stage *s)
{
	free(s->seen);
	s->seen = NULL;
	sbuf__free(&s->idx);
	sbuf__free(&s->data);
	sbuf__free(&s->state);
	sbuf__free(&s->outputs);
}

static int send_buf_ok(struct ft *ft)
{
	return xport__send_buf(ft->x, FT_MSG_HELLO_OK, 0, 0, NULL, 0);
}

static void send_error(struct ft *ft, const char *msg)
{
	xport__send_buf(ft->x, FT_MSG_ERROR, 0, 0, msg, strlen(msg));
}

/*
 * Decodes a page message (u32 count, u64 idx[count], data) into idx/data,
 * checking every index against this VM's memory.
 */
static int decode_pages(struct ft *ft, const struct xport_msg *m, struct sbuf *idx, struct sbuf *data,
			uint64_t *seen, char *err, size_t errlen)
{
	uint64_t nr = vm__nr_pages(ft->cfg.vm);
	struct sreader r;
	uint32_t count;
	const void *ip;

	sreader__init(&r, m->payload.data, m->payload.len);
	if (sreader__u32(&r, &count) || count > FT_PAGES_PER_MSG ||
	    sreader__view(&r, &ip, (size_t)count * 8)) {
		snprintf(err, errlen, "%s: malformed page list", ft_msg_names[m->type]);
		return -EBADMSG;
	}
	const uint64_t *in = ip;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t p;
		memcpy(&p, &in[i], 8);
		if (p >= nr) {
			snprintf(err, errlen, "%s: page %llu beyond this VM's %llu pages",
				 ft_msg_names[m->type], (unsigned long long)p, (unsigned long long)nr);
			return -EBADMSG;
		}
		/* A checkpoint sends each dirty page once: a repeat is a lie,
		 * and would let staging grow past the guest's RAM. */
		if (seen && (seen[p / 64] & (1ull << (p % 64)))) {
			for (uint32_t j = 0; j < i; j++) {	/* undo this message's marks */
				uint64_t q;
				memcpy(&q, &in[j], 8);
				seen[q / 64] &= ~(1ull << (q % 64));
			}
			snprintf(err, errlen, "%s: page %llu sent twice in one checkpoint",
				 ft_msg_names[m->type], (unsigned long long)p);
			return -EBADMSG;
		}
		if (seen)
			seen[p / 64] |= 1ull << (p % 64);
	}
	size_t at = data->len, bytes = (size_t)count * FT_PAGE;
	int ret = sbuf__reserve(data, bytes);
	if (ret)
		return ret;
	const void *rest;
	size_t rest_len = sreader__remaining(&r);
	sreader__view(&r, &rest, rest_len);
	if (m->flags & FT_FLAG_LZ4) {
		ret = page_codec__decode(rest, rest_len, data->data + at, bytes, err, errlen);
		if (ret)
			return ret;
	} else {
		if (rest_len != bytes) {
			snprintf(err, errlen, "%s: %zu bytes of page data for %u pages",
				 ft_msg_names[m->type], rest_len, count);
			return -EBADMSG;
		}
		memcpy(data->data + at, rest, bytes);
	}
	data->len = at + bytes;
	return sbuf__append(idx, in, (size_t)count * 8);
}

static void write_pages(struct ft *ft, const struct sbuf *idx, const struct sbuf *data)
{
	struct vm *vm = ft->cfg.vm;
	size_t n = idx->len / 8;
	for (size_t i = 0; i < n; i++) {
		uint64_t p;
		memcpy(&p, idx->data + i * 8, 8);
		memcpy(vm__guest_ptr(vm, vm__page_gpa(vm, p), FT_PAGE), data->data + i * FT_PAGE, FT_PAGE);
	}
}

/* Verifies the staged checkpoint against COMMIT and applies it. */
static int commit(struct ft *ft, struct stage *s, const struct xport_msg *m, char *err, size_t errlen)
{
	struct ft_commit cm;
	char verr[VMM_ERR_LEN] = "";
	int ret;

	if (m->payload.len != sizeof(cm)) {
		snprintf(err, errlen, "COMMIT %llu: malformed", (unsigned long long)m->epoch);
		return -EBADMSG;
	}
	memcpy(&cm, m->payload.data, sizeof(cm));
	if (!s->open || m->epoch != s->epoch) {
		snprintf(err, errlen, "COMMIT %llu without its BEGIN", (unsigned long long)m->epoch);
		return -EPROTO;
	}
	if (cm.pages != s->idx.len / 8 || cm.page_msgs != s->page_msgs || !s->have_state ||
	    !s->have_outputs || cm.outputs != s->output_msgs) {
		snprintf(err, errlen,
			 "checkpoint %llu incomplete: %zu of %u pages, %u of %u page messages, state %s, "
			 "outputs %s (%u of %u messages)", (unsigned long long)s->epoch, s->idx.len / 8,
			 cm.pages, s->page_msgs, cm.page_msgs, s->have_state ? "yes" : "missing",
			 s->have_outputs ? "yes" : "missing", s->output_msgs, cm.outputs);
		return -EBADMSG;
	}
	ret = vm__check_state(ft->cfg.vm, s->state.data, s->state.len, verr);
	if (ret) {
		snprintf(err, errlen, "checkpoint %llu: state refused: %s", (unsigned long long)s->epoch, verr);
		return -EBADMSG;
	}
	uint64_t disk_size = ft->cfg.disk ? ft->cfg.disk->size : 0;
	ret = et_list__check(s->outputs.data, s->outputs.len, s->epoch, disk_size, err, errlen);
	if (ret)
		return ret;
	bool replicated = ft->cfg.drive_mode == VM_DRIVE_REPLICATED && ft->cfg.disk;
	if (replicated) {
		char rerr[200];
		ret = et_list__reserve_disk(ft->cfg.et, s->outputs.data, s->outputs.len, s->epoch, rerr,
					    sizeof(rerr));
		if (ret) {
			snprintf(err, errlen, "checkpoint %llu: %s", (unsigned long long)s->epoch, rerr);
			return ret;
		}
	}

	/*
	 * Verified, and its disk space reserved: apply, all of it. An error
	 * from here on leaves disk and memory between two checkpoints: this
	 * host is no failover target any more, and says why.
	 */
	if (replicated) {
		ret = et_list__apply_disk(ft->cfg.et, s->outputs.data, s->outputs.len, s->epoch);
		/* The initial sync's blocks are durable before the first ACK. */
		if (!ret && !ft->committed_epoch)
			ret = ft->cfg.disk->ops->flush(ft->cfg.disk->be);
		if (ret) {
			snprintf(err, errlen, "checkpoint %llu: writing its disk blocks: %s; this "
				 "secondary's disk is no longer a checkpoint's, it cannot fail over",
				 (unsigned long long)s->epoch, strerror(-ret));
			ft_audit(ft, "unusable", s->epoch, "%s", err);
			pthread_mutex_lock(&ft->lock);
			snprintf(ft->unusable, sizeof(ft->unusable), "%s", err);
			ft->committed_epoch = 0;
			sbuf__reset(&ft->committed_state);
			sbuf__reset(&ft->committed_outputs);
			pthread_mutex_unlock(&ft->lock);
			return ret;
		}
	}
	write_pages(ft, &s->idx, &s->data);
	pthread_mutex_lock(&ft->lock);
	struct sbuf t = ft->committed_state;
	ft->committed_state = s->state;
	s->state = t;
	t = ft->committed_outputs;
	ft->committed_outputs = s->outputs;
	s->outputs = t;
	ft->committed_epoch = s->epoch;
	ft->committed_ns = ft__now_ns();
	ft->epochs++;
	ft->acked_capture_ns = s->capture_ns;
	ft_samples__add(&ft->ckpt_pages, cm.pages);
	pthread_mutex_unlock(&ft->lock);
	ft_audit(ft, "committed", s->epoch, "pages=%u", cm.pages);
	stage__reset(s);
	return 0;
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
	struct stage s = { 0 };
	struct ft_hello mine, peer;
	char err[512] = "";
	uint64_t last_drain = 0;
	int ret, why = SERVE_LOST;

	xport_msg__init(&m);
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
	bool holds = ft->committed_epoch > 0 && !ft->rearmed;
	uint64_t held = ft->committed_epoch, held_session = ft->session;
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
		ft->stray_connections++;
		snprintf(ft->last_stray, sizeof(ft->last_stray), "%s: %s", from, err);
		pthread_mutex_unlock(&ft->lock);
		fprintf(stderr, "ftvm: ft: refused connection from %s: %s\n", from, err);
		ft_audit(ft, "stray", held, "peer=%s %s", from, err);
		if (ret != -ETIMEDOUT && ret != -EPIPE && ret != -ECANCELED)
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
	if (ret)
		goto out;

	/* A fresh stream: forget any earlier primary's state. */
	pthread_mutex_lock(&ft->lock);
	ft->rearmed = false;
	ft->unusable[0] = '\0';
	ft->committed_epoch = 0;
	sbuf__reset(&ft->committed_state);
	sbuf__reset(&ft->committed_outputs);
	ft->last_error[0] = '\0';
	ft->session = peer.session;
	pthread_mutex_unlock(&ft->lock);
	vm__zero_ram(ft->cfg.vm);
	if (ft->cfg.disk && ft->cfg.drive_mode == VM_DRIVE_REPLICATED && ft->cfg.disk->ops->discard)
		ft->cfg.disk->ops->discard(ft->cfg.disk->be, 0, ft->cfg.disk->size);
	ft__set_state(ft, FT_RECEIVING);

	for (;;) {
		ret = xport__recv(ft->x, &m, (int)ft->cfg.heartbeat_ms, err, sizeof(err));
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
			if (ft_link__peer_silent(ft, err, sizeof(err))) {
				ret = -ETIMEDOUT;
				goto lost;
			}
		} else if (ret) {
			if (ret == -EPIPE)
				snprintf(err, sizeof(err), "primary %s closed the link", ft->peer);
			/* A stream cut mid-message is a lost peer; a message that
			 * arrived whole but wrong is refused. */
			if ((ret == -EBADMSG || ret == -EPROTO) && !xport__peer_closed(ft->x))
				goto refuse;
			goto lost;
		}
		ft_link__keepalive(ft);
		if (ret == -ETIMEDOUT)
			continue;

		switch (m.type) {
		case FT_MSG_HEARTBEAT:
			break;
		case FT_MSG_SYNC_RAM: {
			struct sbuf idx, data;
			sbuf__init(&idx);
			sbuf__init(&data);
			if (ft->committed_epoch || s.open) {
				snprintf(err, sizeof(err), "SYNC_RAM after the first checkpoint");
				ret = -EPROTO;
			} else {
				ret = decode_pages(ft, &m, &idx, &data, NULL, err, sizeof(err));
			}
			if (!ret)
				write_pages(ft, &idx, &data);
			sbuf__free(&idx);
			sbuf__free(&data);
			if (ret)
				goto refuse;
			break;
		}
		case FT_MSG_SYNC_DISK: {
			struct disk *d = ft->cfg.disk;
			uint64_t off;
			if (!d || ft->cfg.drive_mode != VM_DRIVE_REPLICATED || ft->committed_epoch ||
			    m.payload.len < 8 || m.payload.len > 8 + FT_DISK_BLOCK) {
				snprintf(err, sizeof(err), "unexpected or malformed SYNC_DISK");
				ret = -EPROTO;
				goto refuse;
			}
			memcpy(&off, m.payload.data, 8);
			size_t len = m.payload.len - 8;
			if (off > d->size || len > d->size - off) {
				snprintf(err, sizeof(err), "SYNC_DISK beyond the disk");
				ret = -EBADMSG;
				goto refuse;
			}
			struct iovec v = { m.payload.data + 8, len };
			ret = d->ops->write(d->be, off, &v, 1);
			if (ret) {
				snprintf(err, sizeof(err), "writing the disk: %s", strerror(-ret));
				goto refuse;
			}
			break;
		}
		case FT_MSG_BEGIN:
			if (s.open || m.epoch != ft->committed_epoch + 1 || m.payload.len != 8) {
				snprintf(err, sizeof(err), "BEGIN %llu out of sequence (last committed %llu)",
					 (unsigned long long)m.epoch, (unsigned long long)ft->committed_epoch);
				ret = -EPROTO;
				goto refuse;
			}
			stage__reset(&s);
			s.open = true;
			s.epoch = m.epoch;
			memcpy(&s.capture_ns, m.payload.data, 8);
			break;
		case FT_MSG_PAGES:
		case FT_MSG_STATE:
		case FT_MSG_OUTPUTS:
			if (!s.open || m.epoch != s.epoch) {
				snprintf(err, sizeof(err), "%s %llu outside its checkpoint",
					 ft_msg_names[m.type], (unsigned long long)m.epoch);
				ret = -EPROTO;
				goto refuse;
			}
			if (m.type == FT_MSG_PAGES) {
				if (!s.seen && !(s.seen = calloc((vm__nr_pages(ft->cfg.vm) + 63) / 64, 8)))
					ret = -ENOMEM;
				if (!ret)
					ret = decode_pages(ft, &m, &s.idx, &s.data, s.seen, err, sizeof(err));
				s.page_msgs++;
			} else if (m.type == FT_MSG_STATE) {
				sbuf__reset(&s.state);
				ret = sbuf__append(&s.state, m.payload.data, m.payload.len);
				s.have_state = true;
			} else if (s.have_outputs) {
				snprintf(err, sizeof(err), "OUTPUTS %llu after its last piece",
					 (unsigned long long)m.epoch);
				ret = -EPROTO;
			} else if (s.outputs.len + m.payload.len > vm__mem_size(ft->cfg.vm) + (64u << 20)) {
				/* Held output grows with what the guest wrote; more than
				 * its RAM and a message's worth is no checkpoint of ours. */
				snprintf(err, sizeof(err), "OUTPUTS %llu: over %llu MiB",
					 (unsigned long long)m.epoch,
					 (unsigned long long)((vm__mem_size(ft->cfg.vm) >> 20) + 64));
				ret = -EBADMSG;
			} else {
				/* Pieces join (FT_FLAG_MORE on all but the last). */
				ret = sbuf__append(&s.outputs, m.payload.data, m.payload.len);
				s.output_msgs++;
				s.have_outputs = !(m.flags & FT_FLAG_MORE);
			}
			if (ret)
				goto refuse;
			break;
		case FT_MSG_COMMIT:
			ret = commit(ft, &s, &m, err, sizeof(err));
			if (ret)
				goto refuse;
			ret = xport__send_buf(ft->x, FT_MSG_ACK, 0, ft->committed_epoch, NULL, 0);
			if (ret) {
				snprintf(err, sizeof(err), "sending ACK: %s", strerror(-ret));
				goto lost;
			}
			break;
		case FT_MSG_HANDOVER:
			if (s.open || m.epoch != ft->committed_epoch || !ft->committed_epoch) {
				snprintf(err, sizeof(err), "HANDOVER at %llu, last committed %llu",
					 (unsigned long long)m.epoch,
					 (unsigned long long)ft->committed_epoch);
				ret = -EPROTO;
				goto refuse;
			}
			/* Take over whether or not the OK arrives: the primary
			 * never runs the guest again once it sent HANDOVER. */
			if (ft->inject == FT_INJECT_HANDOVER_NO_OK)
				fprintf(stderr, "ftvm: ft: injected: no HANDOVER_OK\n");
			else if (xport__send_buf(ft->x, FT_MSG_HANDOVER_OK, 0, m.epoch, NULL, 0))
				fprintf(stderr, "ftvm: ft: HANDOVER_OK to %s not sent; taking over "
					"anyway\n", ft->peer);
			why = SERVE_HANDOVER;
			goto out;
		case FT_MSG_CANCEL:
			ft__error(ft, "primary %s cancelled protection; no failover target any more",
				  ft->peer);
			pthread_mutex_lock(&ft->lock);
			ft->committed_epoch = 0;
			sbuf__reset(&ft->committed_state);
			sbuf__reset(&ft->committed_outputs);
			pthread_mutex_unlock(&ft->lock);
			/* Only now may the primary release what it holds. */
			xport__send_buf(ft->x, FT_MSG_CANCEL_OK, 0, m.epoch, NULL, 0);
			why = SERVE_CANCELLED;
			goto out;
		case FT_MSG_ERROR:
			snprintf(err, sizeof(err), "primary reported: %.*s", (int)m.payload.len,
				 (const char *)m.payload.data);
			ret = -EPROTO;
			goto lost;
		default:
			snprintf(err, sizeof(err), "unexpected message type %u", m.type);
			ret = -EPROTO;
			goto refuse;
		}
	}

refuse:
	/* Bad input: say so, drop the link, keep the last committed state. */
	ft_audit(ft, "refused", ft->committed_epoch, "%s", err);
	send_error(ft, err);
	why = SERVE_REFUSED;
lost:
	if (s.open) {
		pthread_mutex_lock(&ft->lock);
		ft->discarded_epochs++;
		ft->last_discarded = s.epoch;
		pthread_mutex_unlock(&ft->lock);
		ft__error(ft, "%s; discarded incomplete checkpoint %llu, keeping committed checkpoint %llu",
			  err, (unsigned long long)s.epoch, (unsigned long long)ft->committed_epoch);
	} else {
		ft__error(ft, "%s; keeping committed checkpoint %llu", err,
			  (unsigned long long)ft->committed_epoch);
	}
out:
	xport_msg__free(&m);
	stage__free(&s);
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
		bool have = ft->committed_epoch > 0;
		bool unusable = ft->unusable[0] != '\0';
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
