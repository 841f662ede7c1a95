#include "boot/percpu.h"
#include "workload/service.h"

#include <stdbool.h>

#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "lib/time.h"
#include "lib/x86.h"
#include "net/net.h"

#define MAX_FIELDS 5 /* one more than any command has, to spot extras */

static const struct svc_ops *ops;

/* [A-Za-z0-9_.-]{1,max} */
static bool valid_token(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

struct fields {
	const char *f[MAX_FIELDS];
	size_t len[MAX_FIELDS];
	int n; /* may exceed MAX_FIELDS: counts every field */
};

/* Splits on single spaces; "a  b" has an empty middle field. */
static void split(const char *s, size_t len, struct fields *fs)
{
	size_t start = 0;

	fs->n = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == ' ') {
			if (fs->n < MAX_FIELDS) {
				fs->f[fs->n] = s + start;
				fs->len[fs->n] = i - start;
			}
			fs->n++;
			start = i + 1;
		}
	}
}

static bool is(const struct fields *fs, int i, const char *word)
{
	size_t n = strlen(word);
	return fs->n > i && fs->len[i] == n && memcmp(fs->f[i], word, n) == 0;
}

static size_t err(char *ans, size_t anslen, const struct fields *fs, bool id_ok,
		  const char *why)
{
	if (id_ok)
		return (size_t)snprintf(ans, anslen, "ERR %.*s %s", (int)fs->len[1],
					fs->f[1], why);
	return (size_t)snprintf(ans, anslen, "ERR - %s", why);
}

size_t svc_answer(const char *req, size_t len, char *ans, size_t anslen)
{
	struct fields fs;

	if (len > 0 && req[len - 1] == '\n')
		len--;
	split(req, len, &fs);
	bool id_ok = fs.n >= 2 && valid_token(fs.f[1], fs.len[1], SVC_MAX_REQID);

	if (len > SVC_MAX_REQ)
		return err(ans, anslen, &fs, id_ok, "too_long");

	int arity;
	if (is(&fs, 0, "PUT") && ops->put)
		arity = 4;
	else if (is(&fs, 0, "GET") && ops->get)
		arity = 3;
	else if (is(&fs, 0, "TIME") || is(&fs, 0, "STAT"))
		arity = 2;
	else
		return err(ans, anslen, &fs, id_ok, "bad_command");
	if (fs.n < 2)
		return err(ans, anslen, &fs, false, "bad_arity");
	if (!id_ok)
		return err(ans, anslen, &fs, false, "bad_reqid");
	if (fs.n != arity)
		return err(ans, anslen, &fs, true, "bad_arity");

	const char *id = fs.f[1];
	int idl = (int)fs.len[1];

	if (arity >= 3 && !valid_token(fs.f[2], fs.len[2], SVC_MAX_KEY))
		return err(ans, anslen, &fs, true, "bad_key");
	if (arity == 4 && !valid_token(fs.f[3], fs.len[3], SVC_MAX_VALUE))
		return err(ans, anslen, &fs, true, "bad_value");

	if (arity == 4) {
		const char *why = ops->put(fs.f[2], fs.len[2], fs.f[3], fs.len[3]);
		if (why)
			return err(ans, anslen, &fs, true, why);
		return (size_t)snprintf(ans, anslen, "OK %.*s", idl, id);
	}
	if (arity == 3) {
		const char *val;
		size_t vl;
		if (ops->get(fs.f[2], fs.len[2], &val, &vl) == 0) {
			/* Set over RESP, a value may be empty, longer or of
			 * other bytes than VAL carries. */
			if (!valid_token(val, vl, SVC_MAX_VALUE))
				return err(ans, anslen, &fs, true, "unrepresentable");
			return (size_t)snprintf(ans, anslen, "VAL %.*s %.*s", idl, id,
						(int)vl, val);
		}
		return (size_t)snprintf(ans, anslen, "NONE %.*s", idl, id);
	}

	uint64_t tsc = rdtsc();
	unsigned long long ns = tsc_to_ns(tsc - tsc_at_boot());
	if (is(&fs, 0, "TIME"))
		return (size_t)snprintf(ans, anslen, "TIME %.*s %llu %llu", idl, id,
					(unsigned long long)tsc, ns);
	struct svc_stats st = { 0, 0, 0, 0 };
	if (ops->stats)
		ops->stats(&st);
	/*
	 * Cross-vCPU TSC order (--smp 2): vCPU 1 published its TSC before we
	 * read ours, so ours must not be smaller; vCPU 1 checks the same the
	 * other way round against the value published here.
	 */
	uint64_t ap_tsc = cpu_slots[1].tsc, ap_iter = cpu_slots[1].iterations;
	uint64_t now = rdtsc_ordered();
	if (ap_iter && now < ap_tsc)
		cpu_slots[0].order_errors++;
	cpu_slots[0].tsc = now;
	return (size_t)snprintf(ans, anslen,
				"STAT %.*s entries=%llu puts=%llu gets=%llu dirtied=%llu "
				"tsc=%llu ns=%llu ap_tsc=%llu ap_iterations=%llu tsc_order_errors=%llu",
				idl, id, (unsigned long long)st.entries,
				(unsigned long long)st.puts, (unsigned long long)st.gets,
				(unsigned long long)st.dirtied, (unsigned long long)tsc, ns,
				(unsigned long long)ap_tsc, (unsigned long long)ap_iter,
				(unsigned long long)(cpu_slots[0].order_errors + cpu_slots[1].order_errors));
}

static void on_datagram(const struct udp_peer *from, const uint8_t *data, size_t len)
{
	/* Copy out of the RX buffer: the store may do disk I/O before the
	 * answer goes out, and the answer is built in the shared TX frame. */
	static char req[SVC_MAX_REQ + 2];
	char ans[256];
	size_t n = len < sizeof(req) ? len : sizeof(req);

	memcpy(req, data, n);
	/* A truncated copy is still longer than SVC_MAX_REQ: too_long. */
	size_t alen = svc_answer(req, n, ans, sizeof(ans));
	if (alen >= sizeof(ans))
		alen = sizeof(ans) - 1;
	net_udp_reply(from, ans, alen);
}

int svc_start(uint16_t port, const struct svc_ops *o)
{
	ops = o;
	return net_udp_bind(port, on_datagram);
}
