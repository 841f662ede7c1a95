/* kvdb.c - see kvdb.h. */
#include "workload/kvdb.h"

#include <stdbool.h>

#include "lib/string.h"
#include "workload/kvstore.h"

/* Can the table take all n pairs, whatever order they go in? Counted
 * without the free lists, so it may refuse what would just fit. */
static bool fits_all(size_t n, const struct kvlog_entry *e)
{
	if (n == 1)
		return kvs_can_put(e[0].key, e[0].klen, e[0].vlen);
	uint64_t fresh = 0, bytes = 0;
	for (size_t i = 0; i < n; i++) {
		bool is_new;
		bytes += kvs_need(e[i].key, e[i].klen, e[i].vlen, &is_new);
		fresh += is_new;
	}
	return kvs_count() + fresh <= kvs_capacity() && bytes <= kvs_data_free();
}

const char *kvdb_put(size_t n, const struct kvlog_entry *e)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].op != KVLOG_PUT || e[i].klen > KV_MAX_LEN || e[i].vlen > KV_MAX_LEN)
			return "too_long";
	if (!fits_all(n, e))
		return KVDB_STORE_FULL;
	const char *why = kvlog_append_batch(e, n);
	if (why)
		return why;
	for (size_t i = 0; i < n; i++)
		kvs_put(e[i].key, e[i].klen, e[i].val, e[i].vlen);
	return NULL;
}

const char *kvdb_del(size_t n, const struct kvlog_entry *keys, uint64_t *removed)
{
	struct kvlog_entry e[KVLOG_BATCH_MAX];
	size_t m = 0;
	const char *v;
	size_t vl;

	*removed = 0;
	for (size_t i = 0; i < n && i < KVLOG_BATCH_MAX; i++) {
		if (kvs_get(keys[i].key, keys[i].klen, &v, &vl))
			continue;
		bool dup = false;
		for (size_t j = 0; j < m && !dup; j++)
			dup = e[j].klen == keys[i].klen && !memcmp(e[j].key, keys[i].key, keys[i].klen);
		if (!dup)
			e[m++] = (struct kvlog_entry){ keys[i].key, keys[i].klen, "", 0, KVLOG_DEL };
	}
	if (!m)
		return NULL;
	const char *why = kvlog_append_batch(e, m);
	if (why)
		return why;
	for (size_t i = 0; i < m; i++)
		kvs_del(e[i].key, e[i].klen);
	*removed = m;
	return NULL;
}

const char *kvdb_flushall(void)
{
	const char *why = kvlog_flushall();
	if (!why)
		kvs_clear();
	return why;
}

static uint64_t replay_dropped;

static void replay_apply(const struct kvlog_entry *e)
{
	switch (e->op) {
	case KVLOG_PUT:
		if (kvs_put(e->key, e->klen, e->val, e->vlen))
			replay_dropped++;
		break;
	case KVLOG_DEL:
		kvs_del(e->key, e->klen);
		break;
	case KVLOG_FLUSHALL:
		kvs_clear();
		replay_dropped = 0;
		break;
	}
}

long kvdb_replay(uint64_t *dropped)
{
	replay_dropped = 0;
	long r = kvlog_replay(replay_apply);
	*dropped = replay_dropped;
	return r;
}
