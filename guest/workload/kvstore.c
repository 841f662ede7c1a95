/*
 * The table: a hash index of 32-bit entry numbers (0 = empty), twice as
 * large as the entry capacity so that linear probing stays short even
 * when full; a dense entry array (entry i is number i + 1); and a data
 * area where each entry's key and value lie together in one block.
 *
 * Blocks come in seven sizes, 16 << c bytes for c = 0..6 (16 to 1024,
 * enough for a 512-byte key and a 512-byte value), cut from the data
 * area in order, and kept on a free list per size once given back (the
 * list's link is the block's first 4 bytes). A value that still fits its
 * block is rewritten in place. A delete moves the last entry into the
 * freed slot, so the array stays dense, and closes the gap in the index
 * by shifting back the entries after it (no tombstones).
 *
 * Only the index needs zeroing (2 MiB at full size): the entries and the
 * data are written before they are read, which keeps start-up fast and
 * untouched memory clean (no dirty pages to replicate).
 */
#include "workload/kvstore.h"

#include "lib/errno.h"
#include "lib/string.h"

#define N_CLASSES 7
#define MIN_BLOCK 16u

struct kv_entry {
	uint32_t hash;
	uint16_t klen;
	uint16_t vlen;
	uint32_t off;	/* of its block in data[] */
	uint8_t cls;	/* the block is MIN_BLOCK << cls bytes */
	uint8_t pad[3];
};
_Static_assert(sizeof(struct kv_entry) + 2 * sizeof(uint32_t) == KVS_BYTES_PER_ENTRY,
	       "KVS_BYTES_PER_ENTRY");
_Static_assert((MIN_BLOCK << (N_CLASSES - 1)) >= 2 * KV_MAX_LEN, "the largest block");

static struct kv_entry *entries;
static uint32_t *index_;
static uint32_t cap;       /* entries */
static uint32_t index_mask;
static uint32_t count;
static uint8_t *data;
static uint64_t data_size, data_used;
static uint32_t free_head[N_CLASSES]; /* offset + 1 of the first free block, 0: none */

/* FNV-1a: simple, and good enough for short keys. */
static uint32_t hash(const char *k, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)k[i];
		h *= 16777619u;
	}
	return h;
}

static unsigned class_for(size_t n)
{
	unsigned c = 0;
	while ((MIN_BLOCK << c) < n)
		c++;
	return c;
}

void kvs_clear(void)
{
	memset(index_, 0, (size_t)cap * 2 * sizeof(uint32_t));
	count = 0;
	data_used = 0;
	memset(free_head, 0, sizeof(free_head));
}

long kvs_init(void *mem, size_t bytes)
{
	/* Largest power-of-two capacity that fits with its share of data. */
	uint32_t c = KVS_MAX_ENTRIES;
	while (c >= KVS_MIN_ENTRIES &&
	       (size_t)c * (KVS_BYTES_PER_ENTRY + KVS_MIN_DATA_PER_ENTRY) > bytes)
		c >>= 1;
	if (c < KVS_MIN_ENTRIES)
		return -ENOMEM;
	cap = c;
	index_mask = 2 * c - 1;
	index_ = mem;
	entries = (struct kv_entry *)((char *)mem + (size_t)c * 2 * sizeof(uint32_t));
	data = (uint8_t *)(entries + c);
	data_size = bytes - (size_t)c * KVS_BYTES_PER_ENTRY;
	if (data_size > UINT32_MAX)
		data_size = UINT32_MAX & ~(uint64_t)(MIN_BLOCK - 1);	/* offsets are 32-bit */
	kvs_clear();
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
		if (en->hash == h && en->klen == klen &&
		    memcmp(data + en->off, key, klen) == 0)
			return &index_[i];
	}
}

/* Can a block of class c be had? */
static int block_available(unsigned c)
{
	return free_head[c] != 0 || data_size - data_used >= (MIN_BLOCK << c);
}

static uint32_t block_take(unsigned c)
{
	uint32_t off;
	if (free_head[c]) {
		off = free_head[c] - 1;
		memcpy(&free_head[c], data + off, sizeof(uint32_t));
	} else {
		off = (uint32_t)data_used;
		data_used += MIN_BLOCK << c;
	}
	return off;
}

static void block_give(uint32_t off, unsigned c)
{
	memcpy(data + off, &free_head[c], sizeof(uint32_t));
	free_head[c] = off + 1;
}

int kvs_can_put(const char *key, size_t klen, size_t vlen)
{
	if (klen > KV_MAX_LEN || vlen > KV_MAX_LEN)
		return 0;
	unsigned c = class_for(klen + vlen);
	uint32_t *slot = find(key, klen, hash(key, klen));
	if (*slot)
		return entries[*slot - 1].cls >= c || block_available(c);
	return count < cap && block_available(c);
}

uint64_t kvs_need(const char *key, size_t klen, size_t vlen, bool *is_new)
{
	*is_new = false;
	if (klen > KV_MAX_LEN || vlen > KV_MAX_LEN)
		return UINT64_MAX;
	unsigned c = class_for(klen + vlen);
	uint32_t *slot = find(key, klen, hash(key, klen));
	*is_new = *slot == 0;
	if (*slot && entries[*slot - 1].cls >= c)
		return 0;
	return MIN_BLOCK << c;
}

int kvs_put(const char *key, size_t klen, const char *val, size_t vlen)
{
	if (klen > KV_MAX_LEN || vlen > KV_MAX_LEN)
		return -EINVAL;
	uint32_t h = hash(key, klen);
	uint32_t *slot = find(key, klen, h);
	unsigned c = class_for(klen + vlen);
	struct kv_entry *en;

	if (*slot) {
		en = &entries[*slot - 1];
		if (en->cls < c) {
			/* Outgrew its block: key and value move to a larger one. */
			if (!block_available(c))
				return -ENOSPC;
			uint32_t off = block_take(c);
			memcpy(data + off, data + en->off, klen);
			block_give(en->off, en->cls);
			en->off = off;
			en->cls = (uint8_t)c;
		}
	} else {
		if (count >= cap || !block_available(c))
			return -ENOSPC;
		en = &entries[count];
		en->hash = h;
		en->klen = (uint16_t)klen;
		en->off = block_take(c);
		en->cls = (uint8_t)c;
		memcpy(data + en->off, key, klen);
		count++;
		*slot = count;
	}
	en->vlen = (uint16_t)vlen;
	memcpy(data + en->off + klen, val, vlen);
	return 0;
}

int kvs_get(const char *key, size_t klen, const char **val, size_t *vlen)
{
	if (klen > KV_MAX_LEN)
		return -ENOENT;
	uint32_t *slot = find(key, klen, hash(key, klen));
	if (!*slot)
		return -ENOENT;
	const struct kv_entry *en = &entries[*slot - 1];
	*val = (const char *)data + en->off + en->klen;
	*vlen = en->vlen;
	return 0;
}

/* Empties index slot i and shifts back the run after it, so that every
 * entry stays reachable from its home slot (linear probing's delete). */
static void index_remove(uint32_t i)
{
	for (uint32_t j = i;;) {
		j = (j + 1) & index_mask;
		uint32_t e = index_[j];
		if (e == 0)
			break;
		uint32_t home = entries[e - 1].hash & index_mask;
		/* Stays if its home lies cyclically in (i, j]. */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		index_[i] = e;
		i = j;
	}
	index_[i] = 0;
}

int kvs_del(const char *key, size_t klen)
{
	if (klen > KV_MAX_LEN)
		return -ENOENT;
	uint32_t *slot = find(key, klen, hash(key, klen));
	if (!*slot)
		return -ENOENT;
	uint32_t n = *slot;
	struct kv_entry *en = &entries[n - 1];
	block_give(en->off, en->cls);
	index_remove((uint32_t)(slot - index_));
	if (n != count) {
		/* The last entry takes the freed place in the array. */
		struct kv_entry *last = &entries[count - 1];
		uint32_t *ls = find((const char *)data + last->off, last->klen, last->hash);
		*en = *last;
		*ls = n;
	}
	count--;
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

uint64_t kvs_data_free(void)
{
	return data_size - data_used;
}
