/*
 * fuzz_json.c - libFuzzer over the monitor's JSON string writer
 * (vmm/monitor/reply.c json__append_string): whatever bytes a string holds,
 * the output is one JSON string literal in valid UTF-8. The check here is
 * its own strict decoder (RFC 8259 string grammar, RFC 3629 UTF-8), not
 * the writer's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/monitor/monitor_internal.h"

/* Bytes of the UTF-8 sequence at p[0..n), or 0 if it is not well formed. */
static size_t seq(const uint8_t *p, size_t n)
{
	uint32_t cp;
	size_t len;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void check_literal(const uint8_t *p, size_t n)
{
	if (n < 2 || p[0] != '"' || p[n - 1] != '"')
		abort();
	for (size_t i = 1; i < n - 1;) {
		if (p[i] == '"' || p[i] < 0x20)
			abort();	/* an unescaped quote or control character */
		if (p[i] == '\\') {
			if (i + 1 >= n - 1)
				abort();
			uint8_t e = p[i + 1];
			if (e == 'u') {
				if (i + 6 > n - 1)
					abort();
				for (int k = 2; k < 6; k++)
					if (!strchr("0123456789abcdefABCDEF", p[i + k]) || !p[i + k])
						abort();
				i += 6;
			} else if (strchr("\"\\/bfnrt", e) && e) {
				i += 2;
			} else {
				abort();
			}
			continue;
		}
		size_t l = seq(p + i, n - 1 - i);
		if (!l)
			abort();	/* not UTF-8 */
		i += l;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		return 0;
	memcpy(s, in, n);
	s[n] = '\0';
	struct sbuf out;
	sbuf__init(&out);
	json__append_string(&out, s);
	check_literal(out.data, out.len);
	/* Well-formed text passes unchanged (no quote, backslash, control). */
	bool plain = true;
	for (size_t i = 0; i < strlen(s) && plain;) {
		size_t l = seq((const uint8_t *)s + i, strlen(s) - i);
		plain = l && s[i] != '"' && s[i] != '\\' && (uint8_t)s[i] >= 0x20 && s[i] != 0x7f;
		i += l ? l : 1;
	}
	if (plain && (out.len != strlen(s) + 2 || memcmp(out.data + 1, s, strlen(s))))
		abort();
	sbuf__free(&out);
	free(s);
	return 0;
}
