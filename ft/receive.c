/*
 * receive.c - the secondary's per-message step (receive.h): stage each
 * checkpoint, verify it against its COMMIT, apply it all or nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ft/ft_internal.h"
#include "ft/receive.h"

static void stage__reset(struct ft_rx_stage *s)
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

void ft_rx__init(struct ft_rx *rx, const struct ft_rx_target *t)
{
	memset(rx, 0, sizeof(*rx));
	rx->t = *t;
	sbuf__init(&rx->s.idx);
	sbuf__init(&rx->s.data);
	sbuf__init(&rx->s.state);
	sbuf__init(&rx->s.outputs);
	sbuf__init(&rx->state);
	sbuf__init(&rx->outputs);
}

void ft_rx__free(struct ft_rx *rx)
{
	free(rx->s.seen);
	rx->s.seen = NULL;
	sbuf__free(&rx->s.idx);
	sbuf__free(&rx->s.data);
	sbuf__free(&rx->s.state);
	sbuf__free(&rx->s.outputs);
	sbuf__free(&rx->state);
	sbuf__free(&rx->outputs);
}

uint64_t ft_rx__open_epoch(const struct ft_rx *rx)
{
	return rx->s.open ? rx->s.epoch : 0;
}

void ft_rx__take_committed(struct ft_rx *rx, struct sbuf *state, struct sbuf *outputs)
{
	struct sbuf t = *state;
	*state = rx->state;
	rx->state = t;
	t = *outputs;
	*outputs = rx->outputs;
	rx->outputs = t;
}

/*
 * Decodes a page message (u32 count, u64 idx[count], data) into idx/data,
 * checking every index against the guest's memory and, with seen, that no
 * page comes twice in one checkpoint.
 */
/*
 * A delta-coded PAGES message's data (page_cache.c has the layout) into
 * out (count pages): a delta rebuilds its page from this host's copy, the
 * committed one (a page is staged once per checkpoint, and nothing else
 * writes RAM here), and must match the primary's CRC of it.
 */
static int decode_delta(const struct ft_rx *rx, const struct xport_msg *m, const uint64_t *in, uint32_t count,
			const uint8_t *rest, size_t rest_len, uint8_t *out, char *err, size_t errlen)
{
	const char *name = ft_msg_names[m->type];
	char why[160];
	if (rest_len < (size_t)count * 2) {
		snprintf(err, errlen, "%s: page codes cut short", name);
		return -EBADMSG;
	}
	const uint8_t *codes = rest, *d = rest + (size_t)count * 2;
	size_t left = rest_len - (size_t)count * 2;
	uint32_t whole = 0;
	for (uint32_t i = 0; i < count; i++) {
		uint16_t code = (uint16_t)(codes[2 * i] | codes[2 * i + 1] << 8);
		uint8_t *page = out + (size_t)i * FT_PAGE;
		uint64_t p;
		memcpy(&p, &in[i], 8);
		if (code == FT_PAGE_WHOLE) {
			whole++;
		} else if (code == FT_PAGE_ZERO) {
			memset(page, 0, FT_PAGE);
		} else if (ft_page_cache__rebuild(code, &d, &left, rx->t.page(rx->t.opaque, p), page, why,
						  sizeof(why))) {
			snprintf(err, errlen, "%s: page %llu: %s", name, (unsigned long long)p, why);
			return -EBADMSG;
		}
	}
	/* The whole pages, in order, raw or LZ4-coded, go where they belong. */
	size_t wlen = (size_t)whole * FT_PAGE;
	if (!whole) {
		if (left) {
			snprintf(err, errlen, "%s: %zu bytes after the last page", name, left);
			return -EBADMSG;
		}
		return 0;
	}
	uint8_t *tmp = NULL;
	int ret = 0;
	if (m->flags & FT_FLAG_LZ4) {
		if (!(tmp = malloc(wlen)))
			return -ENOMEM;
		ret = page_codec__decode(d, left, tmp, wlen, err, errlen);
		d = tmp;
	} else if (left != wlen) {
		snprintf(err, errlen, "%s: %zu bytes for %u whole pages", name, left, whole);
		ret = -EBADMSG;
	}
	for (uint32_t i = 0, w = 0; !ret && i < count; i++)
		if ((uint16_t)(codes[2 * i] | codes[2 * i + 1] << 8) == FT_PAGE_WHOLE)
			memcpy(out + (size_t)i * FT_PAGE, d + (size_t)w++ * FT_PAGE, FT_PAGE);
	free(tmp);
	return ret;
}

static int decode_pages(const struct ft_rx *rx, const struct xport_msg *m, struct sbuf *idx,
			struct sbuf *data, uint64_t *seen, char *err, size_t errlen)
{
	uint64_t nr = rx->t.nr_pages;
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
		bool bad = p >= nr;
		/* A checkpoint sends each dirty page once: a repeat is a lie,
		 * and would let staging grow past the guest's RAM. */
		bool twice = !bad && seen && (seen[p / 64] & (1ull << (p % 64)));
		if (bad || twice) {
			for (uint32_t j = 0; seen && j < i; j++) {	/* undo this message's marks */
				uint64_t q;
				memcpy(&q, &in[j], 8);
				seen[q / 64] &= ~(1ull << (q % 64));
			}
			if (bad)
				snprintf(err, errlen, "%s: page %llu beyond this VM's %llu pages",
					 ft_msg_names[m->type], (unsigned long long)p, (unsigned long long)nr);
			else
				snprintf(err, errlen, "%s: page %llu sent twice in one checkpoint",
					 ft_msg_names[m->type], (unsigned long long)p);
			return -EBADMSG;
		}
		if (seen)
			seen[p / 64] |= 1ull << (p % 64);
	}
	size_t at = data->len, bytes = (size_t)count * FT_PAGE;
	const void *rest;
	size_t rest_len = sreader__remaining(&r);
	sreader__view(&r, &rest, rest_len);
	if (!count) {
		if (!rest_len)
			return 0;
		snprintf(err, errlen, "%s: %zu bytes of page data for no page", ft_msg_names[m->type],
			 rest_len);
		return -EBADMSG;
	}
	int ret = sbuf__reserve(data, bytes);
	if (ret)
		return ret;
	if (m->flags & FT_FLAG_DELTA) {
		if (m->type != FT_MSG_PAGES) {
			snprintf(err, errlen, "%s: delta-coded pages outside a checkpoint", ft_msg_names[m->type]);
			return -EBADMSG;
		}
		ret = decode_delta(rx, m, in, count, rest, rest_len, data->data + at, err, errlen);
		if (ret)
			return ret;
	} else if (m->flags & FT_FLAG_LZ4) {
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

static void write_pages(struct ft_rx *rx, const struct sbuf *idx, const struct sbuf *data)
{
	size_t n = idx->len / 8;
	for (size_t i = 0; i < n; i++) {
		uint64_t p;
		memcpy(&p, idx->data + i * 8, 8);
		memcpy(rx->t.page(rx->t.opaque, p), data->data + i * FT_PAGE, FT_PAGE);
	}
}

/* Verifies the staged checkpoint against COMMIT and applies it. */
static enum ft_rx_verdict commit(struct ft_rx *rx, const struct xport_msg *m, char *err, size_t errlen)
{
	struct ft_rx_stage *s = &rx->s;
	struct ft_commit cm;
	char verr[VMM_ERR_LEN] = "";

	if (m->payload.len != sizeof(cm)) {
		snprintf(err, errlen, "COMMIT %llu: malformed", (unsigned long long)m->epoch);
		return FT_RX_REFUSE;
	}
	memcpy(&cm, m->payload.data, sizeof(cm));
	if (!s->open || m->epoch != s->epoch) {
		snprintf(err, errlen, "COMMIT %llu without its BEGIN", (unsigned long long)m->epoch);
		return FT_RX_REFUSE;
	}
	if (cm.pages != s->idx.len / 8 || cm.page_msgs != s->page_msgs || !s->have_state ||
	    !s->have_outputs || cm.outputs != s->output_msgs) {
		snprintf(err, errlen,
			 "checkpoint %llu incomplete: %zu of %u pages, %u of %u page messages, state %s, "
			 "outputs %s (%u of %u messages)", (unsigned long long)s->epoch, s->idx.len / 8,
			 cm.pages, s->page_msgs, cm.page_msgs, s->have_state ? "yes" : "missing",
			 s->have_outputs ? "yes" : "missing", s->output_msgs, cm.outputs);
		return FT_RX_REFUSE;
	}
	if (rx->t.check_state(rx->t.opaque, s->state.data, s->state.len, verr)) {
		snprintf(err, errlen, "checkpoint %llu: state refused: %s", (unsigned long long)s->epoch, verr);
		return FT_RX_REFUSE;
	}
	if (et_list__check(s->outputs.data, s->outputs.len, s->epoch, rx->t.disk_size, err, errlen))
		return FT_RX_REFUSE;
	bool replicated = rx->t.disk && rx->t.et;
	if (replicated) {
		char rerr[200];
		if (et_list__reserve_disk(rx->t.et, s->outputs.data, s->outputs.len, s->epoch, rerr,
					  sizeof(rerr))) {
			snprintf(err, errlen, "checkpoint %llu: %s", (unsigned long long)s->epoch, rerr);
			return FT_RX_REFUSE;
		}
	}

	/*
	 * Verified, and its disk space reserved: apply, all of it. An error
	 * from here on leaves disk and memory between two checkpoints: this
	 * host is no failover target any more, and says why.
	 */
	if (replicated) {
		int ret = et_list__apply_disk(rx->t.et, s->outputs.data, s->outputs.len, s->epoch);
		/* The initial sync's blocks are durable before the first ACK. */
		if (!ret && !rx->committed)
			ret = rx->t.disk->ops->flush(rx->t.disk->be);
		if (ret) {
			snprintf(err, errlen, "checkpoint %llu: writing its disk blocks: %s; this "
				 "secondary's disk is no longer a checkpoint's, it cannot fail over",
				 (unsigned long long)s->epoch, strerror(-ret));
			return FT_RX_UNUSABLE;
		}
	}
	write_pages(rx, &s->idx, &s->data);
	struct sbuf t = rx->state;
	rx->state = s->state;
	s->state = t;
	t = rx->outputs;
	rx->outputs = s->outputs;
	s->outputs = t;
	rx->committed = s->epoch;
	rx->committed_pages = cm.pages;
	rx->committed_capture_ns = s->capture_ns;
	stage__reset(s);
	return FT_RX_COMMITTED;
}

/* PAGES, STATE, OUTPUTS of the open checkpoint: staged. 0 or -errno. */
static int stage_part(struct ft_rx *rx, const struct xport_msg *m, char *err, size_t errlen)
{
	struct ft_rx_stage *s = &rx->s;
	if (!s->open || m->epoch != s->epoch) {
		snprintf(err, errlen, "%s %llu outside its checkpoint", ft_msg_names[m->type],
			 (unsigned long long)m->epoch);
		return -EPROTO;
	}
	if (m->type == FT_MSG_PAGES) {
		if (!s->seen && !(s->seen = calloc((rx->t.nr_pages + 63) / 64, 8))) {
			snprintf(err, errlen, "no memory to stage checkpoint %llu", (unsigned long long)s->epoch);
			return -ENOMEM;
		}
		s->page_msgs++;
		return decode_pages(rx, m, &s->idx, &s->data, s->seen, err, errlen);
	}
	if (m->type == FT_MSG_STATE) {
		sbuf__reset(&s->state);
		s->have_state = true;
		return sbuf__append(&s->state, m->payload.data, m->payload.len);
	}
	if (s->have_outputs) {
		snprintf(err, errlen, "OUTPUTS %llu after its last piece", (unsigned long long)m->epoch);
		return -EPROTO;
	}
	if (s->outputs.len + m->payload.len > rx->t.mem_size + (64u << 20)) {
		/* Held output grows with what the guest wrote; more than its
		 * RAM and a message's worth is no checkpoint of ours. */
		snprintf(err, errlen, "OUTPUTS %llu: over %llu MiB", (unsigned long long)m->epoch,
			 (unsigned long long)((rx->t.mem_size >> 20) + 64));
		return -EBADMSG;
	}
	/* Pieces join (FT_FLAG_MORE on all but the last). */
	s->output_msgs++;
	s->have_outputs = !(m->flags & FT_FLAG_MORE);
	return sbuf__append(&s->outputs, m->payload.data, m->payload.len);
}

/* The initial sync: pages and (replicated) disk blocks, written directly. */
static int sync_part(struct ft_rx *rx, const struct xport_msg *m, char *err, size_t errlen)
{
	if (m->type == FT_MSG_SYNC_RAM) {
		if (rx->committed || rx->s.open) {
			snprintf(err, errlen, "SYNC_RAM after the first checkpoint");
			return -EPROTO;
		}
		struct sbuf idx, data;
		sbuf__init(&idx);
		sbuf__init(&data);
		int ret = decode_pages(rx, m, &idx, &data, NULL, err, errlen);
		if (!ret)
			write_pages(rx, &idx, &data);
		sbuf__free(&idx);
		sbuf__free(&data);
		return ret;
	}
	struct disk *d = rx->t.disk;
	uint64_t off;
	if (!d || rx->committed || rx->s.open || m->payload.len < 8 || m->payload.len > 8 + FT_DISK_BLOCK) {
		snprintf(err, errlen, "unexpected or malformed SYNC_DISK");
		return -EPROTO;
	}
	memcpy(&off, m->payload.data, 8);
	size_t len = m->payload.len - 8;
	if (off > d->size || len > d->size - off) {
		snprintf(err, errlen, "SYNC_DISK beyond the disk");
		return -EBADMSG;
	}
	struct iovec v = { m->payload.data + 8, len };
	int ret = d->ops->write(d->be, off, &v, 1);
	if (ret)
		snprintf(err, errlen, "writing the disk: %s", strerror(-ret));
	return ret;
}

enum ft_rx_verdict ft_rx__step(struct ft_rx *rx, const struct xport_msg *m, struct ft_rx_reply *reply,
			       char *err, size_t errlen)
{
	struct ft_rx_stage *s = &rx->s;
	enum ft_rx_verdict v;

	reply->type = 0;
	reply->epoch = 0;
	switch (m->type) {
	case FT_MSG_HEARTBEAT:
		return FT_RX_NEXT;
	case FT_MSG_SYNC_RAM:
	case FT_MSG_SYNC_DISK:
		return sync_part(rx, m, err, errlen) ? FT_RX_REFUSE : FT_RX_NEXT;
	case FT_MSG_BEGIN:
		if (s->open || m->epoch != rx->committed + 1 || m->payload.len != 8) {
			snprintf(err, errlen, "BEGIN %llu out of sequence (last committed %llu)",
				 (unsigned long long)m->epoch, (unsigned long long)rx->committed);
			return FT_RX_REFUSE;
		}
		stage__reset(s);
		s->open = true;
		s->epoch = m->epoch;
		memcpy(&s->capture_ns, m->payload.data, 8);
		return FT_RX_NEXT;
	case FT_MSG_PAGES:
	case FT_MSG_STATE:
	case FT_MSG_OUTPUTS:
		return stage_part(rx, m, err, errlen) ? FT_RX_REFUSE : FT_RX_NEXT;
	case FT_MSG_COMMIT:
		v = commit(rx, m, err, errlen);
		if (v == FT_RX_COMMITTED) {
			reply->type = FT_MSG_ACK;
			reply->epoch = rx->committed;
		}
		return v;
	case FT_MSG_HANDOVER:
		if (s->open || m->epoch != rx->committed || !rx->committed) {
			snprintf(err, errlen, "HANDOVER at %llu, last committed %llu",
				 (unsigned long long)m->epoch, (unsigned long long)rx->committed);
			return FT_RX_REFUSE;
		}
		reply->type = FT_MSG_HANDOVER_OK;
		reply->epoch = m->epoch;
		return FT_RX_HANDOVER;
	case FT_MSG_CANCEL:
		reply->type = FT_MSG_CANCEL_OK;
		reply->epoch = m->epoch;
		return FT_RX_CANCELLED;
	case FT_MSG_ERROR:
		snprintf(err, errlen, "primary reported: %.*s", (int)(m->payload.len > 400 ? 400 : m->payload.len),
			 (const char *)m->payload.data);
		return FT_RX_PEER_ERROR;
	default:
		snprintf(err, errlen, "unexpected message type %u", m->type);
		return FT_RX_REFUSE;
	}
}
