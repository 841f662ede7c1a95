/*
 * Entries live in an append-only array; the hash index holds 32-bit entry
 * numbers (0 = empty) and is twice as large as the entry capacity, so
 * linear probing stays short even when full. Only the index needs zeroing
 * (2 MiB at full size): the entry array is written before it is read,
 * which keeps start-up fast and untouched memory clean (no dirty pages to
 * replicate).
 */
#include "workload/kvstore.h"

#include "lib/errno.h"
#include "lib/string.h"

struct kv_entry {
	uint32_t hash;
	uint8_t klen;
	uint8_t vlen;
	char key[KV_MAX_LEN];
	char val[KV_MAX_LEN];
	uint8_t pad[2];
}; /* 136 bytes */

static struct kv_entry *entries;
static uint32_t *index_;
static uint32_t cap;       /* entries */
static uint32_t index_mask;
static uint32_t count;

/* FNV-1a: simple, and good enough for short ASCII keys. */
static uint32_t hash(const char *k, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)k[i];
		h *= 16777619u;
	}
	return h;
}

size_t kvs_bytes_for_max(void)
{
	return (size_t)KVS_MAX_ENTRIES * 2 * sizeof(uint32_t) +
	       (size_t)KVS_MAX_ENTRIES * sizeof(struct kv_entry);
}

long kvs_init(void *mem, size_t bytes)
{
	/* Largest power-of-two capacity that fits (index = 2 x capacity). */
	uint32_t c = KVS_MAX_ENTRIES;
	while (c >= 1024 &&
	       (size_t)c * 2 * sizeof(uint32_t) + (size_t)c * sizeof(struct kv_entry) > bytes)
		c >>= 1;
	if (c < 1024)
		return -ENOMEM;
	cap = c;
	index_mask = 2 * c - 1;
	index_ = mem;
	entries = (struct kv_entry *)((char *)mem + (size_t)c * 2 * sizeof(uint32_t));
	memset(index_, 0, (size_t)c * 2 * sizeof(uint32_t));
	count = 0;
	return (long)c;
}

/* Index slot holding key, or the empty slot where it would go. */
static uint32_t *find(const char *key, size_t klen, uint32_t h)
{
	for (uint32_t i = h & index_mask;; i = (i + 1) & index_mask) {
		uint32_t e = index_[i];
		if (e == 0)
			return &index_[i];
		const struct kv_entry *en = &entries[e - 1];
		if (en->hash == h && en->klen == klen && memcmp(en->key, key, klen) == 0)
			return &index_[i];
	}
}

int kvs_can_put(const char *key, size_t klen)
{
	return count < cap || *find(key, klen, hash(key, klen)) != 0;
}

int kvs_put(const char *key, size_t klen, const char *val, size_t vlen)
{
	if (klen == 0 || klen > KV_MAX_LEN || vlen == 0 || vlen > KV_MAX_LEN)
		return -EINVAL;
	uint32_t h = hash(key, klen);
	uint32_t *slot = find(key, klen, h);
	struct kv_entry *en;

	if (*slot) {
		en = &entries[*slot - 1];
	} else {
		if (count >= cap)
			return -ENOSPC;
		en = &entries[count];
		en->hash = h;
		en->klen = (uint8_t)klen;
		memcpy(en->key, key, klen);
		count++;
		*slot = count;
	}
	en->vlen = (uint8_t)vlen;
	memcpy(en->val, val, vlen);
	return 0;
}

int kvs_get(const char *key, size_t klen, const char **val, size_t *vlen)
{
	if (klen == 0 || klen > KV_MAX_LEN)
		return -ENOENT;
	uint32_t *slot = find(key, klen, hash(key, klen));
	if (!*slot)
		return -ENOENT;
	const struct kv_entry *en = &entries[*slot - 1];
	*val = en->val;
	*vlen = en->vlen;
	return 0;
}

uint64_t kvs_count(void)
{
	return count;
}

uint64_t kvs_capacity(void)
{
	return cap;
}
