/* kvlog: reading and appending the ack log. See kvlog.h for the format
 * and the durability rules. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include "tools/kvclient/kvlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t kvlog__hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static int kvlog__word(const char **p, const char *end, char *out)
{
	const char *s = *p;
	size_t n = 0;

	while (s + n < end && s[n] != ' ')
		n++;
	if (n == 0 || n > KVPROTO_TOKEN_MAX)
		return -EPROTO;
	memcpy(out, s, n);
	out[n] = '\0';
	if (!kvproto__valid_token(out))
		return -EPROTO;
	*p = s + n;
	return 0;
}

int kvlog__parse_line(const char *line, size_t len, bool *acked, char *key,
		      char *value)
{
	const char *p = line, *end = line + len;

	if (len == 0 || line[0] == '#')
		return 0;
	if (len > 4 && memcmp(line, "PUT ", 4) == 0) {
		*acked = true;
		p += 4;
	} else if (len > 5 && memcmp(line, "SENT ", 5) == 0) {
		*acked = false;
		p += 5;
	} else {
		return -EPROTO;
	}
	if (kvlog__word(&p, end, key) < 0 || p == end || *p++ != ' ' ||
	    kvlog__word(&p, end, value) < 0 || p != end)
		return -EPROTO;
	return 1;
}

void kvlog__init(struct kvlog *l)
{
	memset(l, 0, sizeof(*l));
}

static void *kvlog__grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	size_t nc = *cap ? *cap : 4;
	void *na;

	if (need <= *cap)
		return arr;
	while (nc < need)
		nc *= 2;
	na = realloc(arr, nc * elem);
	if (na)
		*cap = nc;
	return na;
}

static size_t kvlog__slot(const struct kvlog *l, const char *key)
{
	size_t i = (size_t)kvlog__hash(key) & (l->n_slots - 1);

	while (l->slots[i] && strcmp(l->keys[l->slots[i] - 1].key, key) != 0)
		i = (i + 1) & (l->n_slots - 1);
	return i;
}

/* Keep the table at most half full so probes stay short. */
static int kvlog__rehash(struct kvlog *l)
{
	size_t ns = l->n_slots ? l->n_slots * 2 : 64, *old = l->slots;
	size_t on = l->n_slots;

	l->slots = calloc(ns, sizeof(*l->slots));
	if (!l->slots) {
		l->slots = old;
		return -ENOMEM;
	}
	l->n_slots = ns;
	for (size_t i = 0; i < on; i++)
		if (old[i])
			l->slots[kvlog__slot(l, l->keys[old[i] - 1].key)] = old[i];
	free(old);
	return 0;
}

const struct kvlog_key *kvlog__find(const struct kvlog *l, const char *key)
{
	size_t i;

	if (!l->n_slots)
		return NULL;
	i = kvlog__slot(l, key);
	return l->slots[i] ? &l->keys[l->slots[i] - 1] : NULL;
}

bool kvlog__key_seen(const struct kvlog_key *k, const char *value)
{
	uint64_t h = kvlog__hash(value);

	for (size_t i = 0; i < k->n_seen; i++)
		if (k->seen[i] == h)
			return true;
	return false;
}

int kvlog__add(struct kvlog *l, bool acked, const char *key, const char *value)
{
	struct kvlog_key *k;
	size_t i;
	void *p;

	if (!kvproto__valid_token(key) || !kvproto__valid_token(value))
		return -EINVAL;
	if ((l->n + 1) * 2 > l->n_slots && kvlog__rehash(l) < 0)
		return -ENOMEM;
	i = kvlog__slot(l, key);
	if (!l->slots[i]) {
		p = kvlog__grow(l->keys, &l->cap, l->n + 1, sizeof(*l->keys));
		if (!p)
			return -ENOMEM;
		l->keys = p;
		k = &l->keys[l->n];
		memset(k, 0, sizeof(*k));
		strcpy(k->key, key);
		l->slots[i] = ++l->n;
	}
	k = &l->keys[l->slots[i] - 1];

	if (acked) {
		/* A later acknowledged PUT settles every earlier doubt. */
		k->has_acked = true;
		strcpy(k->acked, value);
		k->n_pending = 0;
		l->puts++;
	} else {
		p = kvlog__grow(k->pending, &k->cap_pending, k->n_pending + 1,
				sizeof(*k->pending));
		if (!p)
			return -ENOMEM;
		k->pending = p;
		strcpy(k->pending[k->n_pending++], value);
		l->sent++;
	}
	if (!kvlog__key_seen(k, value)) {
		p = kvlog__grow(k->seen, &k->cap_seen, k->n_seen + 1,
				sizeof(*k->seen));
		if (!p)
			return -ENOMEM;
		k->seen = p;
		k->seen[k->n_seen++] = kvlog__hash(value);
	}
	return 0;
}

int kvlog__load(struct kvlog *l, const char *path, size_t *bad_line)
{
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	while ((n = getline(&line, &cap, f)) > 0) {
		char key[KVPROTO_TOKEN_MAX + 1], value[KVPROTO_TOKEN_MAX + 1];
		bool acked;
		int pr;

		lineno++;
		if (line[n - 1] != '\n') {
			l->torn++; /* see kvlog.h: an unterminated tail */
			break;
		}
		l->lines++;
		pr = kvlog__parse_line(line, (size_t)n - 1, &acked, key, value);
		if (pr < 0) {
			if (bad_line)
				*bad_line = lineno;
			r = pr;
			break;
		}
		if (pr == 0)
			continue;
		r = kvlog__add(l, acked, key, value);
		if (r < 0)
			break;
	}
	if (!r && ferror(f))
		r = -EIO;
	free(line);
	fclose(f);
	return r;
}

void kvlog__free(struct kvlog *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->keys[i].pending);
		free(l->keys[i].seen);
	}
	free(l->keys);
	free(l->slots);
	kvlog__init(l);
}

static uint64_t kvlog__now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Cut a torn last line so the next append starts on a line of its own. */
static int kvlog__cut_torn_tail(int fd)
{
	struct stat st;
	off_t end;
	char c;

	if (fstat(fd, &st) < 0)
		return -errno;
	end = st.st_size;
	while (end > 0) {
		if (pread(fd, &c, 1, end - 1) != 1)
			return -EIO;
		if (c == '\n')
			break;
		end--;
	}
	if (end != st.st_size && ftruncate(fd, end) < 0)
		return -errno;
	return 0;
}

int kvlog__open_writer(struct kvlog_writer *w, const char *path)
{
	int r;

	memset(w, 0, sizeof(*w));
	/* Append, never truncate: successive load runs of one drill (before
	 * and after a failover) build one log that verify checks at the end. */
	w->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (w->fd < 0)
		return -errno;
	r = kvlog__cut_torn_tail(w->fd);
	if (r < 0) {
		close(w->fd);
		w->fd = -1;
		return r;
	}
	w->last_sync_us = kvlog__now_us();
	return 0;
}

int kvlog__sync(struct kvlog_writer *w)
{
	if (w->fd < 0 || w->pending == 0)
		return 0;
	if (fdatasync(w->fd) < 0)
		return -errno;
	w->pending = 0;
	w->syncs++;
	w->last_sync_us = kvlog__now_us();
	return 0;
}

int kvlog__append(struct kvlog_writer *w, bool acked, const char *key,
		  const char *value)
{
	char line[2 * KVPROTO_TOKEN_MAX + 16];
	int n;
	ssize_t wr;

	if (!kvproto__valid_token(key) || !kvproto__valid_token(value))
		return -EINVAL;
	n = snprintf(line, sizeof(line), "%s %s %s\n", acked ? "PUT" : "SENT",
		     key, value);
	/* One write per line: with O_APPEND the kernel places it whole at the
	 * end, so a line is either fully in the file or not at all unless the
	 * host itself crashes (the torn-tail case). */
	wr = write(w->fd, line, (size_t)n);
	if (wr < 0)
		return -errno;
	if (wr != n)
		return -EIO;
	w->lines++;
	w->pending++;
	if (w->pending >= KVLOG_SYNC_LINES ||
	    kvlog__now_us() - w->last_sync_us >= KVLOG_SYNC_MS * 1000ull)
		return kvlog__sync(w);
	return 0;
}

int kvlog__close_writer(struct kvlog_writer *w)
{
	int r;

	if (w->fd < 0)
		return 0;
	r = kvlog__sync(w);
	if (close(w->fd) < 0 && !r)
		r = -errno;
	w->fd = -1;
	return r;
}
