/* In-memory key-value table: open addressing, no deletes. */
#ifndef FTVM_GUEST_KVSTORE_H
#define FTVM_GUEST_KVSTORE_H

#include <stddef.h>
#include <stdint.h>

#define KV_MAX_LEN 64

/* Sizes the table to the memory given (at most KVS_MAX_ENTRIES entries);
 * returns the capacity in entries, or -ENOMEM if it is unusably small. */
#define KVS_MAX_ENTRIES (1u << 18) /* 262144 */
long kvs_init(void *mem, size_t bytes);
/* Bytes needed for KVS_MAX_ENTRIES. */
size_t kvs_bytes_for_max(void);

/* 0, or -ENOSPC when the key is new and the table is full. */
int kvs_put(const char *key, size_t klen, const char *val, size_t vlen);
/* Would kvs_put() of this key succeed? */
int kvs_can_put(const char *key, size_t klen);
/* 0 with *val (not NUL-terminated) / *vlen, or -ENOENT. */
int kvs_get(const char *key, size_t klen, const char **val, size_t *vlen);
uint64_t kvs_count(void);
uint64_t kvs_capacity(void);

#endif
