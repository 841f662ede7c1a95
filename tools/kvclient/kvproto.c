/* kvproto: formatting and strict parsing of the kv protocol. See kvproto.h
 * and docs/kv-protocol.md. */
#include "tools/kvclient/kvproto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The charset shared by reqids, keys and values: [A-Za-z0-9_.-]. Written out
 * instead of isalnum() because the locale must not widen it. */
static bool kvproto__token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static bool kvproto__valid_span(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!kvproto__token_char(s[i]))
			return false;
	return true;
}

bool kvproto__valid_reqid(const char *s)
{
	return s && kvproto__valid_span(s, strnlen(s, KVPROTO_REQID_MAX + 1),
					KVPROTO_REQID_MAX) &&
	       s[strnlen(s, KVPROTO_REQID_MAX + 1)] == '\0';
}

bool kvproto__valid_token(const char *s)
{
	return s && kvproto__valid_span(s, strnlen(s, KVPROTO_TOKEN_MAX + 1),
					KVPROTO_TOKEN_MAX) &&
	       s[strnlen(s, KVPROTO_TOKEN_MAX + 1)] == '\0';
}

const char *kvproto__op_name(enum kvproto_op op)
{
	switch (op) {
	case KVPROTO_PUT: return "PUT";
	case KVPROTO_GET: return "GET";
	case KVPROTO_TIME: return "TIME";
	case KVPROTO_STAT: return "STAT";
	}
	return "?";
}

const char *kvproto__kind_name(enum kvproto_kind kind)
{
	switch (kind) {
	case KVPROTO_ANS_OK: return "OK";
	case KVPROTO_ANS_VAL: return "VAL";
	case KVPROTO_ANS_NONE: return "NONE";
	case KVPROTO_ANS_TIME: return "TIME";
	case KVPROTO_ANS_STAT: return "STAT";
	case KVPROTO_ANS_ERR: return "ERR";
	}
	return "?";
}

int kvproto__format_request(char *buf, size_t size, size_t *len,
			    enum kvproto_op op, const char *reqid,
			    const char *key, const char *value)
{
	int n;

	if (!kvproto__valid_reqid(reqid))
		return -EINVAL;
	switch (op) {
	case KVPROTO_PUT:
		if (!kvproto__valid_token(key) || !kvproto__valid_token(value))
			return -EINVAL;
		n = snprintf(buf, size, "PUT %s %s %s", reqid, key, value);
		break;
	case KVPROTO_GET:
		if (!kvproto__valid_token(key))
			return -EINVAL;
		n = snprintf(buf, size, "GET %s %s", reqid, key);
		break;
	case KVPROTO_TIME:
		n = snprintf(buf, size, "TIME %s", reqid);
		break;
	case KVPROTO_STAT:
		n = snprintf(buf, size, "STAT %s", reqid);
		break;
	default:
		return -EINVAL;
	}
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size)
		return -ENOSPC;
	*len = (size_t)n;
	return 0;
}

bool kvproto__answer_fits(enum kvproto_op op, enum kvproto_kind kind)
{
	if (kind == KVPROTO_ANS_ERR)
		return true;
	switch (op) {
	case KVPROTO_PUT: return kind == KVPROTO_ANS_OK;
	case KVPROTO_GET: return kind == KVPROTO_ANS_VAL || kind == KVPROTO_ANS_NONE;
	case KVPROTO_TIME: return kind == KVPROTO_ANS_TIME;
	case KVPROTO_STAT: return kind == KVPROTO_ANS_STAT;
	}
	return false;
}

/* A field of the answer: pointer into the datagram plus length. */
struct kvproto_span {
	const char *p;
	size_t len;
};

#define KVPROTO_MAX_FIELDS 11 /* STAT <reqid> + nine name=value fields */

/* Split on single spaces. An empty field (leading, trailing or doubled
 * space) is a protocol error rather than something to skip: the protocol
 * says "separated by single spaces", and a lenient reader would hide a
 * server that drifts from it. */
static int kvproto__split(const char *buf, size_t len,
			  struct kvproto_span *f, size_t *nf)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && buf[i] != ' ')
			continue;
		if (i == start || n == KVPROTO_MAX_FIELDS)
			return -EPROTO;
		f[n].p = buf + start;
		f[n].len = i - start;
		n++;
		start = i + 1;
	}
	*nf = n;
	return 0;
}

static bool kvproto__span_is(const struct kvproto_span *s, const char *word)
{
	size_t wl = strlen(word);

	return s->len == wl && memcmp(s->p, word, wl) == 0;
}

/* Decimal u64: digits only (no sign, no spaces, no 0x), at most 20 digits,
 * no overflow. A leading zero is allowed ("0" and "007" parse), because
 * nothing in the protocol forbids it and it is unambiguous. */
static int kvproto__parse_u64(const char *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -EPROTO;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (p[i] < '0' || p[i] > '9')
			return -EPROTO;
		d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EPROTO;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int kvproto__copy_token(char *dst, const struct kvproto_span *s,
			       size_t max)
{
	if (!kvproto__valid_span(s->p, s->len, max))
		return -EPROTO;
	memcpy(dst, s->p, s->len);
	dst[s->len] = '\0';
	return 0;
}

/* "name=<u64>" with the exact expected name. */
static int kvproto__parse_named(const struct kvproto_span *s,
				const char *name, uint64_t *out)
{
	size_t nl = strlen(name);

	if (s->len <= nl + 1 || memcmp(s->p, name, nl) != 0 || s->p[nl] != '=')
		return -EPROTO;
	return kvproto__parse_u64(s->p + nl + 1, s->len - nl - 1, out);
}

int kvproto__parse_answer(const char *buf, size_t len,
			  struct kvproto_answer *ans)
{
	struct kvproto_span f[KVPROTO_MAX_FIELDS];
	size_t nf;
	int r;

	memset(ans, 0, sizeof(*ans));
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	/* Anything outside printable ASCII (a NUL, a second newline, a CR)
	 * fails the per-field charset checks below, except inside the
	 * keyword field, which is compared exactly. */
	r = kvproto__split(buf, len, f, &nf);
	if (r < 0)
		return r;
	if (nf < 2)
		return -EPROTO;

	if (kvproto__span_is(&f[0], "ERR")) {
		size_t i;

		if (nf != 3)
			return -EPROTO;
		ans->kind = KVPROTO_ANS_ERR;
		if (kvproto__span_is(&f[1], "-"))
			strcpy(ans->reqid, "-");
		else if (kvproto__copy_token(ans->reqid, &f[1],
					     KVPROTO_REQID_MAX) < 0)
			return -EPROTO;
		if (f[2].len == 0 || f[2].len > KVPROTO_REASON_MAX)
			return -EPROTO;
		for (i = 0; i < f[2].len; i++)
			if (!((f[2].p[i] >= 'a' && f[2].p[i] <= 'z') ||
			      f[2].p[i] == '_'))
				return -EPROTO;
		memcpy(ans->reason, f[2].p, f[2].len);
		ans->reason[f[2].len] = '\0';
		return 0;
	}

	/* Every other answer carries a real reqid in field 1. */
	if (kvproto__copy_token(ans->reqid, &f[1], KVPROTO_REQID_MAX) < 0)
		return -EPROTO;

	if (kvproto__span_is(&f[0], "OK")) {
		ans->kind = KVPROTO_ANS_OK;
		return nf == 2 ? 0 : -EPROTO;
	}
	if (kvproto__span_is(&f[0], "NONE")) {
		ans->kind = KVPROTO_ANS_NONE;
		return nf == 2 ? 0 : -EPROTO;
	}
	if (kvproto__span_is(&f[0], "VAL")) {
		ans->kind = KVPROTO_ANS_VAL;
		if (nf != 3)
			return -EPROTO;
		return kvproto__copy_token(ans->value, &f[2], KVPROTO_TOKEN_MAX);
	}
	if (kvproto__span_is(&f[0], "TIME")) {
		ans->kind = KVPROTO_ANS_TIME;
		if (nf != 4)
			return -EPROTO;
		if (kvproto__parse_u64(f[2].p, f[2].len, &ans->tsc) < 0 ||
		    kvproto__parse_u64(f[3].p, f[3].len, &ans->ns) < 0)
			return -EPROTO;
		return 0;
	}
	if (kvproto__span_is(&f[0], "STAT")) {
		struct kvproto_stat *st = &ans->stat;

		ans->kind = KVPROTO_ANS_STAT;
		/* Fixed order, as documented: a reordered or extended STAT
		 * means the guest and this client disagree on the protocol,
		 * which a test should notice rather than paper over. */
		if (nf != 11)
			return -EPROTO;
		if (kvproto__parse_named(&f[2], "entries", &st->entries) < 0 ||
		    kvproto__parse_named(&f[3], "puts", &st->puts) < 0 ||
		    kvproto__parse_named(&f[4], "gets", &st->gets) < 0 ||
		    kvproto__parse_named(&f[5], "dirtied", &st->dirtied) < 0 ||
		    kvproto__parse_named(&f[6], "tsc", &st->tsc) < 0 ||
		    kvproto__parse_named(&f[7], "ns", &st->ns) < 0 ||
		    kvproto__parse_named(&f[8], "ap_tsc", &st->ap_tsc) < 0 ||
		    kvproto__parse_named(&f[9], "ap_iterations", &st->ap_iterations) < 0 ||
		    kvproto__parse_named(&f[10], "tsc_order_errors", &st->tsc_order_errors) < 0)
			return -EPROTO;
		return 0;
	}
	return -EPROTO;
}
