/*
 * reply.c - one answer, built once, rendered as text or JSON.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/monitor/monitor_internal.h"

void mon_reply__init(struct mon_reply *r)
{
	memset(r, 0, sizeof(*r));
	sbuf__init(&r->text);
	sbuf__init(&r->json);
}

void mon_reply__free(struct mon_reply *r)
{
	sbuf__free(&r->text);
	sbuf__free(&r->json);
}

struct mon_reply *mon_reply__new(void)
{
	struct mon_reply *r = malloc(sizeof(*r));
	if (r)
		mon_reply__init(r);
	return r;
}

void mon_reply__delete(struct mon_reply *r)
{
	if (!r)
		return;
	mon_reply__free(r);
	free(r);
}

static void sb_printf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		sbuf__append(sb, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0.
 */
static size_t utf8_len(const unsigned char *p)
{
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		unsigned char lo = p[0] == 0xe0 ? 0xa0 : 0x80, hi = p[0] == 0xed ? 0x9f : 0xbf;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		unsigned char lo = p[0] == 0xf0 ? 0x90 : 0x80, hi = p[0] == 0xf4 ? 0x8f : 0xbf;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

/*
 * A JSON string that is always valid UTF-8, whatever s holds (a file name,
 * a peer's error text): quotes, backslashes and control characters escaped,
 * each byte that is not part of a well-formed sequence replaced by U+FFFD.
 */
void json__append_string(struct sbuf *out, const char *s)
{
	sbuf__append_u8(out, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = utf8_len(p);
		if (*p == '"' || *p == '\\') {
			sbuf__append_u8(out, '\\');
			sbuf__append_u8(out, *p);
		} else if (*p < 0x20 || *p == 0x7f) {
			sb_printf(out, "\\u%04x", *p);
		} else if (!n) {
			sbuf__append(out, "\\ufffd", 6);
			n = 1;
		} else {
			sbuf__append(out, p, n);
		}
		p += n ? n : 1;
	}
	sbuf__append_u8(out, '"');
}

static void indent(struct mon_reply *r)
{
	for (unsigned i = 0; i < r->depth; i++)
		sbuf__append(&r->text, "  ", 2);
}

/* Starts a member: JSON comma and key; text indentation and label. */
static void member(struct mon_reply *r, const char *key)
{
	if (r->error)
		return;
	if (r->need_comma[r->depth])
		sbuf__append_u8(&r->json, ',');
	r->need_comma[r->depth] = true;
	if (key && !r->in_array[r->depth]) {
		json__append_string(&r->json, key);
		sbuf__append_u8(&r->json, ':');
	}
	indent(r);
	if (key && !r->in_array[r->depth])
		sb_printf(&r->text, "%s: ", key);
	else if (r->in_array[r->depth])
		sbuf__append(&r->text, "- ", 2);
}

static void scalar(struct mon_reply *r, const char *key, const char *json, const char *text)
{
	if (r->error)
		return;
	member(r, key);
	sbuf__append(&r->json, json, strlen(json));
	sb_printf(&r->text, "%s\n", text);
}

void mon_reply__str(struct mon_reply *r, const char *key, const char *value)
{
	if (r->error)
		return;
	member(r, key);
	json__append_string(&r->json, value);
	sb_printf(&r->text, "%s\n", value);
}

void mon_reply__array_str(struct mon_reply *r, const char *value)
{
	mon_reply__str(r, NULL, value);
}

void mon_reply__u64(struct mon_reply *r, const char *key, uint64_t v)
{
	char b[32];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	scalar(r, key, b, b);
}

void mon_reply__i64(struct mon_reply *r, const char *key, int64_t v)
{
	char b[32];
	snprintf(b, sizeof(b), "%" PRId64, v);
	scalar(r, key, b, b);
}

/* Hex values travel in JSON as numbers only up to 2^53; use strings. */
void mon_reply__hex(struct mon_reply *r, const char *key, uint64_t v)
{
	char t[32], j[40];
	snprintf(t, sizeof(t), "0x%016" PRIx64, v);
	snprintf(j, sizeof(j), "\"%s\"", t);
	scalar(r, key, j, t);
}

void mon_reply__double(struct mon_reply *r, const char *key, double v)
{
	char b[64];
	snprintf(b, sizeof(b), "%.3f", v);
	scalar(r, key, b, b);
}

void mon_reply__bool(struct mon_reply *r, const char *key, bool v)
{
	scalar(r, key, v ? "true" : "false", v ? "yes" : "no");
}

static void open_nested(struct mon_reply *r, const char *key, bool array)
{
	if (r->error)
		return;
	if (r->depth + 1 >= MON_MAX_DEPTH) {
		mon_reply__error(r, MON_ERR_INTERNAL, "reply nested too deeply");
		return;
	}
	member(r, key);
	sbuf__append_u8(&r->json, array ? '[' : '{');
	sbuf__append_u8(&r->text, '\n');
	r->depth++;
	r->need_comma[r->depth] = false;
	r->in_array[r->depth] = array;
}

static void close_nested(struct mon_reply *r, bool array)
{
	if (r->error || r->depth == 0)
		return;
	r->depth--;
	sbuf__append_u8(&r->json, array ? ']' : '}');
}

void mon_reply__array_begin(struct mon_reply *r, const char *key) { open_nested(r, key, true); }
void mon_reply__array_end(struct mon_reply *r) { close_nested(r, true); }
void mon_reply__object_begin(struct mon_reply *r, const char *key) { open_nested(r, key, false); }
void mon_reply__object_end(struct mon_reply *r) { close_nested(r, false); }

void mon_reply__error(struct mon_reply *r, enum mon_error_class cls, const char *fmt, ...)
{
	va_list ap;
	if (r->error)
		return;	/* the first error is the one that matters */
	r->error = true;
	r->err_class = cls;
	va_start(ap, fmt);
	vsnprintf(r->err_desc, sizeof(r->err_desc), fmt, ap);
	va_end(ap);
}

static const char *class_name(enum mon_error_class c)
{
	switch (c) {
	case MON_ERR_COMMAND_NOT_FOUND: return "CommandNotFound";
	case MON_ERR_INVALID_PARAMETER: return "InvalidParameter";
	case MON_ERR_INVALID_STATE: return "InvalidState";
	case MON_ERR_IO: return "IoError";
	case MON_ERR_INTERNAL: return "Internal";
	}
	return "Internal";
}

void mon_reply__render(struct mon_reply *r, bool json, struct sbuf *out)
{
	if (json) {
		if (r->error) {
			sbuf__append(out, "{\"error\":{\"class\":", 18);
			json__append_string(out, class_name(r->err_class));
			sbuf__append(out, ",\"desc\":", 8);
			json__append_string(out, r->err_desc);
			sbuf__append(out, "}}\n", 3);
		} else {
			sbuf__append(out, "{\"return\":{", 11);
			if (r->json.len)
				sbuf__append(out, r->json.data, r->json.len);
			sbuf__append(out, "}}\n", 3);
		}
	} else if (r->error) {
		sb_printf(out, "error: %s\n", r->err_desc);
	} else if (r->text.len) {
		sbuf__append(out, r->text.data, r->text.len);
	}
}
