/* In-memory key-value table: open addressing, keys and values of 0 to
 * KV_MAX_LEN bytes, deletes. */
#ifndef FTVM_GUEST_KVSTORE_H
#define FTVM_GUEST_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_LEN 512

/* At most this many entries; kvs_init sizes the table to the memory given. */
#define KVS_MAX_ENTRIES (1u << 18) /* 262144 */
/* The least memory kvs_init takes: 1024 entries with 64 bytes of key and
 * value each on average. */
#define KVS_MIN_ENTRIES 1024u
#define KVS_BYTES_PER_ENTRY 24u	/* index (2 slots of 4 bytes) + entry (16) */
#define KVS_MIN_DATA_PER_ENTRY 64u
#define KVS_MIN_BYTES ((size_t)KVS_MIN_ENTRIES * (KVS_BYTES_PER_ENTRY + KVS_MIN_DATA_PER_ENTRY))

/* Lays the table out in mem[0..bytes): the index and entry array for the
 * largest power-of-two capacity (at most KVS_MAX_ENTRIES) that leaves
 * KVS_MIN_DATA_PER_ENTRY bytes an entry for keys and values, which get
 * the rest. Returns the capacity in entries, or -ENOMEM if bytes is below
 * KVS_MIN_BYTES. */
long kvs_init(void *mem, size_t bytes);

/* 0; -EINVAL for a key or value over KV_MAX_LEN; -ENOSPC when the table
 * or the memory for keys and values is full (the table is unchanged). */
int kvs_put(const char *key, size_t klen, const char *val, size_t vlen);
/* Would kvs_put() of this key and a value of vlen bytes succeed? */
int kvs_can_put(const char *key, size_t klen, size_t vlen);
/* What kvs_put() of this key and a value of vlen bytes would take from
 * the data memory (0 if it fits where the entry is), and whether the key
 * is new (*is_new). For a value over KV_MAX_LEN: more than there is. */
uint64_t kvs_need(const char *key, size_t klen, size_t vlen, bool *is_new);
/* 0 with *val (not NUL-terminated) / *vlen, or -ENOENT. The pointer is
 * good until the next put, delete or clear. */
int kvs_get(const char *key, size_t klen, const char **val, size_t *vlen);
/* 0, or -ENOENT if the key is not there. */
int kvs_del(const char *key, size_t klen);
/* Every entry gone, all memory free again. */
void kvs_clear(void);
uint64_t kvs_count(void);
uint64_t kvs_capacity(void);
/* Bytes of key and value memory not yet handed out (free blocks of
 * deleted or moved entries are not counted). */
uint64_t kvs_data_free(void);

#endif
