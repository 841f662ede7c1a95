/*
 * The UDP request/answer protocol of docs/kv-protocol.md: parsing,
 * validation and the TIME/STAT commands, shared by the kv workload and
 * the dirty workload (which has no store and answers PUT/GET with
 * `ERR <id> bad_command`).
 */
#ifndef FTVM_GUEST_SERVICE_H
#define FTVM_GUEST_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#define SVC_MAX_REQID 32
#define SVC_MAX_KEY   64
#define SVC_MAX_VALUE 64
/* The longest valid request ("PUT <reqid> <key> <value>"); anything longer
 * is answered ERR too_long. */
#define SVC_MAX_REQ   (3 + 1 + SVC_MAX_REQID + 1 + SVC_MAX_KEY + 1 + SVC_MAX_VALUE)

struct svc_stats {
	uint64_t entries;
	uint64_t puts;
	uint64_t gets;
	uint64_t dirtied;
};

struct svc_ops {
	/* NULL answers bad_command. Returns NULL when the entry is durable
	 * (answer OK), else the error word (e.g. "disk_full"). */
	const char *(*put)(const char *key, size_t klen, const char *val, size_t vlen);
	/* NULL answers bad_command. 0 with *val and *vlen set, or -ENOENT. */
	int (*get)(const char *key, size_t klen, const char **val, size_t *vlen);
	void (*stats)(struct svc_stats *st);
};

/* Binds the UDP port; requests are served from within net_poll(). */
int svc_start(uint16_t port, const struct svc_ops *ops);

/* Exposed for checking the parser: answers `req` into ans (NUL-terminated)
 * and returns the answer's length. */
size_t svc_answer(const char *req, size_t len, char *ans, size_t anslen);

#endif
