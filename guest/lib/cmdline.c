#include "lib/cmdline.h"

#include <stddef.h>

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

static char buf[CMDLINE_MAX_LEN];
static struct {
	const char *key;
	const char *val; /* NULL for a word without '=' */
	bool used;
} words[CMDLINE_MAX_WORDS];
static int nwords;

int cmdline_parse(const char *s)
{
	size_t len = strlen(s);

	if (len >= sizeof(buf))
		return -E2BIG;
	memcpy(buf, s, len + 1);
	nwords = 0;
	for (char *p = buf; *p;) {
		while (*p == ' ' || *p == '\t' || *p == '\n')
			*p++ = '\0';
		if (!*p)
			break;
		if (nwords == CMDLINE_MAX_WORDS)
			return -E2BIG;
		words[nwords].key = p;
		words[nwords].val = NULL;
		words[nwords].used = false;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
			if (*p == '=' && !words[nwords].val) {
				*p = '\0';
				words[nwords].val = p + 1;
			}
			p++;
		}
		nwords++;
	}
	return 0;
}

const char *cmdline_get(const char *key)
{
	const char *v = NULL;

	for (int i = 0; i < nwords; i++) {
		if (strcmp(words[i].key, key) == 0) {
			words[i].used = true;
			v = words[i].val ? words[i].val : "";
		}
	}
	return v;
}

int cmdline_report_unused(void)
{
	int n = 0;

	for (int i = 0; i < nwords; i++) {
		if (words[i].used || strchr(words[i].key, '.'))
			continue;
		printf("ftvm-guest: error: unknown parameter '%s'\n", words[i].key);
		n++;
	}
	return n;
}

int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		if (!*s)
			return -EINVAL;
	}
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -EINVAL;
		if (v > (UINT64_MAX - d) / base)
			return -ERANGE;
		v = v * base + d;
	}
	*out = v;
	return 0;
}

/* Parses A.B.C.D at *sp and advances *sp past it. */
static int parse_dotted(const char **sp, uint32_t *ip)
{
	const char *s = *sp;
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned part = 0;
		int digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4) {
			part = part * 10 + (unsigned)(*s++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || part > 255)
			return -EINVAL;
		v = (v << 8) | part;
		if (i < 3 && *s++ != '.')
			return -EINVAL;
	}
	*ip = v;
	*sp = s;
	return 0;
}

int parse_ipv4(const char *s, uint32_t *ip)
{
	if (!s || parse_dotted(&s, ip) || *s)
		return -EINVAL;
	return 0;
}

int parse_ipv4_cidr(const char *s, uint32_t *ip, int *prefix)
{
	uint64_t n = 24;

	if (!s || parse_dotted(&s, ip))
		return -EINVAL;
	if (*s == '/') {
		if (parse_u64(s + 1, &n) || n < 1 || n > 32)
			return -EINVAL;
	} else if (*s) {
		return -EINVAL;
	}
	*prefix = (int)n;
	return 0;
}

void format_ipv4(char *b, uint32_t ip)
{
	snprintf(b, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff,
		 (ip >> 8) & 0xff, ip & 0xff);
}
