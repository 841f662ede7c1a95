/*
 * test_guest_kvstore: the guest's kv store, compiled for the host: the
 * table (guest/workload/kvstore.c), the on-disk log (kvlog.c) and kvdb.c,
 * which keeps the two in step (what guest/workload/kv.c calls), the log on
 * an in-memory disk with injected faults (guest_kvstore_shim.c).
 *
 *  1. The table alone against a model: random PUT/DEL/GET/clear, keys and
 *     values of 0..512 bytes (often at the block-size boundaries), many
 *     keys on the same index slot (also around the index's wrap) and some
 *     with the same 32-bit hash. Every answer, the count and the free data
 *     memory agree with the model (which keeps the allocator's accounting
 *     as kvstore.c's header describes it: seven block sizes, a free list
 *     each); after a delete every other key is still there; the table
 *     fills (-ENOSPC) at capacity and when the data memory is used up,
 *     unchanged, and takes entries again after deletes and a clear.
 *  2. The store through kvdb_put / kvdb_del / kvdb_flushall, and
 *     kvdb_replay into a fresh table at each boot, against the test's own
 *     model of what was acknowledged (a DEL's records: the keys the model
 *     holds, each once, which kvdb_del must say it removed): random MSET
 *     batches of 1..64 records (up to 80, past KVLOG_BATCH_BYTES, for
 *     too_long; record sizes derived from KVLOG_REC_HEADER), DEL batches,
 *     FLUSHALL, with random faults (a write that fails with nothing
 *     written, a torn write, a failed flush, a crash at any request; on
 *     half the disks a volatile cache as well, which a crash empties at
 *     random) and a reboot after each round. The replayed table must be
 *     what was acknowledged, plus at most one batch that was not, whole
 *     (MSET is all or nothing; an acknowledged write never comes back
 *     older; a batch a replay served stays). The live table is what was
 *     acknowledged, exactly. The log's free space moves by exactly the
 *     batch; disk_full only when the batch does not fit, and never on a
 *     log that holds only a FLUSHALL (also one a replay found in the last
 *     sector); FLUSHALL never disk_full; store_full and too_long write
 *     nothing. Then case by case, every outcome exact:
 *       - kvlog_record_bytes as kvlog.h gives it; the batch limits (128
 *         records, KVLOG_BATCH_BYTES to the byte); replay's -EIO for a
 *         failed read and for a failed flush at its end;
 *       - kvdb's answers: too_long (a key or value of 513, a non-PUT
 *         record, 129 pairs), store_full at the table's capacity (nothing
 *         written, nothing changed), DEL of keys twice, not there (no
 *         write) or more than KVLOG_BATCH_MAX of them (the first 128 go),
 *         a failed DEL or FLUSHALL (nothing changed);
 *       - disk_full to the sector, FLUSHALL on a full log;
 *       - FLUSHALL on a full log whose restart (sector 1 written and
 *         flushed alone, then sector 2 zeroed and flushed: the writes
 *         checked) fails at each of its four requests: acknowledged, the
 *         log's end kept, the restart retried before the next write (by a
 *         SET, by a SET that fails again, by a FLUSHALL); or the machine
 *         stops at each of them (or at the FLUSHALL record's flush): the
 *         store comes back empty and takes a SET at once, the FLUSHALL in
 *         the last sector not keeping the log full; all of it without and
 *         with the cache (then a power cut before each final reboot, and
 *         each crash with 16 seeds for what the cache loses);
 *       - torn writes over a failed batch: a record from inside a batch,
 *         or records of two batches, never pass for a batch (the batch
 *         tag);
 *       - the cache: acknowledged writes survive a power cut, a failed
 *         flush's do not; a replay whose flush fails serves nothing; what
 *         a replay served survives the power going.
 *  3. A disk holding the old format (KVR1) at sector 1: -EPROTO.
 *
 * The random log test stops at its first failure and prints its last
 * steps. test_guest_kvstore [seed]: another seed for the random parts (the
 * default is fixed, so CI runs the same sequence each time).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest/lib/crc32c.h"
#include "guest/lib/errno.h"
#include "guest/virtio/blk.h"
#include "guest/workload/kvdb.h"
#include "guest/workload/kvlog.h"
#include "guest/workload/kvstore.h"
#include "tests/unit/check.h"
#include "tests/unit/guest_kvstore_shim.h"

/* How much of it a run does (CI: well under 20 s for the _asan build). */
#define KVS_OPS        6000 /* table ops per table size and key pool */
#define LOG_LIVES      48   /* fresh disks */
#define LOG_ROUNDS     40   /* reboots per disk */
#define LOG_OPS_MAX    40   /* ops per round */

#define DEFAULT_SEED 0x6b7673746f726532ull

static uint64_t rs = DEFAULT_SEED;

static uint64_t rnd(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 0x2545f4914f6cdd1dull;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static bool chance(unsigned pct)
{
	return below(100) < pct;
}

static void fill_random(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)rnd();
}

/* ---- keys ------------------------------------------------------------------ */

#define FNV_PRIME 16777619u
#define FNV_BASIS 2166136261u

static uint32_t fnv_step(uint32_t h, uint8_t c)
{
	return (h ^ c) * FNV_PRIME;
}

static uint32_t fnv(const char *k, size_t n)
{
	uint32_t h = FNV_BASIS;
	for (size_t i = 0; i < n; i++)
		h = fnv_step(h, (uint8_t)k[i]);
	return h;
}

struct key {
	uint16_t len;
	char b[KV_MAX_LEN];
};

static struct key *keys;
static size_t nkeys, keys_room;

static bool key_known(const char *k, size_t len)
{
	for (size_t i = 0; i < nkeys; i++)
		if (keys[i].len == len && memcmp(keys[i].b, k, len) == 0)
			return true;
	return false;
}

static bool key_add(const char *k, size_t len)
{
	if (key_known(k, len))
		return false;
	if (nkeys == keys_room) {
		keys_room = keys_room ? 2 * keys_room : 256;
		keys = realloc(keys, keys_room * sizeof(*keys));
		if (!keys)
			abort();
	}
	keys[nkeys].len = (uint16_t)len;
	memcpy(keys[nkeys].b, k, len);
	nkeys++;
	return true;
}

/* The key + value bytes of a record of 256 or 512 bytes (kvlog.h: a record
 * is KVLOG_REC_HEADER + key + value, rounded up to 8). */
#define REC256_KV (BLK_SECTOR / 2 - KVLOG_REC_HEADER)
#define REC512_KV (BLK_SECTOR - KVLOG_REC_HEADER)

/* Lengths where something changes: 0, the block sizes (16 << c) around
 * them, the largest, and the lengths that make a 256- or 512-byte record
 * (with an empty key) or one just over. */
static const uint16_t edge_lens[] = { 0,   1,   2,   3,   4,   7,   8,   9,   15,  16,  17,
				      31,  32,  33,  63,  64,  65,  127, 128, 129,
				      REC256_KV, REC256_KV + 1, 255, 256, 257,
				      REC512_KV - 1, REC512_KV, REC512_KV + 1,
				      495, 496, 497, 511, 512 };
#define N_EDGE_LENS (sizeof(edge_lens) / sizeof(edge_lens[0]))

static size_t some_len(void)
{
	return chance(35) ? edge_lens[below(N_EDGE_LENS)] : (size_t)below(KV_MAX_LEN + 1);
}

/* A value length for a key of klen bytes: often one that puts klen + vlen
 * on (or next to) a block size. */
static size_t some_vlen(size_t klen)
{
	if (chance(30)) {
		long t = (long)(16u << below(7)) + (long)below(3) - 1;
		long v = t - (long)klen;
		if (v >= 0 && v <= KV_MAX_LEN)
			return (size_t)v;
	}
	return some_len();
}

static void add_random_keys(unsigned n, size_t minlen, size_t maxlen)
{
	char b[KV_MAX_LEN];
	for (unsigned made = 0, tries = 0; made < n && tries < 50 * n; tries++) {
		size_t len = minlen == 0 && maxlen == KV_MAX_LEN ? some_len()
								  : minlen + below(maxlen - minlen + 1);
		fill_random(b, len);
		made += key_add(b, len);
	}
}

/* n keys whose index home slot (hash & mask) is home: a random prefix,
 * then the last two bytes searched. */
static void add_colliding_keys(uint32_t mask, uint32_t home, unsigned n)
{
	char b[KV_MAX_LEN];
	for (unsigned made = 0, tries = 0; made < n && tries < 100 * n; tries++) {
		size_t len = chance(50) ? 2 + below(30) : 2 + below(KV_MAX_LEN - 1);
		fill_random(b, len - 2);
		uint32_t h = fnv(b, len - 2);
		for (uint32_t x = 0; x < 65536; x++) {
			uint32_t h2 = fnv_step(fnv_step(h, (uint8_t)x), (uint8_t)(x >> 8));
			if ((h2 & mask) == home) {
				b[len - 2] = (char)x;
				b[len - 1] = (char)(x >> 8);
				made += key_add(b, len);
				break;
			}
		}
	}
}

/* Pairs with the same FNV-1a hash (32 bits): the table must tell them
 * apart by their bytes. */
static const char *const same_hash[] = { "costarring", "liquid",    "declinate", "macallums",
					 "altarage",   "zinke",     "altarages", "zinkes" };

/* Five bytes that take FNV-1a from its start back to its start (found by
 * meeting in the middle; its steps can be inverted): "", s, ss, sss all
 * have the same hash, and each is a prefix of the next, which only the
 * key length tells apart. */
static const char fnv_loop[5] = { 0x44, (char)0xfe, 0x01, 0x49, (char)0xb6 };

static void add_key_groups(uint32_t mask)
{
	/* Runs that wrap around the index's end, and some that do not. */
	const uint32_t homes[] = { mask, mask - 1, 0, 1, mask / 2 };
	for (size_t i = 0; i < sizeof(homes) / sizeof(homes[0]); i++)
		add_colliding_keys(mask, homes[i], 9);
	for (size_t i = 0; i < sizeof(same_hash) / sizeof(same_hash[0]); i++) {
		if (i % 2)
			CHECK(fnv(same_hash[i], strlen(same_hash[i])) ==
				      fnv(same_hash[i - 1], strlen(same_hash[i - 1])),
			      "%s and %s should share a hash", same_hash[i], same_hash[i - 1]);
		key_add(same_hash[i], strlen(same_hash[i]));
	}
	char loop[4 * sizeof(fnv_loop)];
	for (size_t n = 0; n < 4; n++) {
		memcpy(loop + n * sizeof(fnv_loop), fnv_loop, sizeof(fnv_loop));
		CHECK(fnv(loop, n * sizeof(fnv_loop)) == FNV_BASIS, "fnv_loop x %zu", n);
		key_add(loop, n * sizeof(fnv_loop));
	}
}

static void keys_reset(void)
{
	nkeys = 0;
}

/* ---- 1. the table against a model ------------------------------------------ */

#define N_CLASSES 7

static unsigned class_of(size_t n)
{
	unsigned c = 0;
	while ((16u << c) < n)
		c++;
	return c;
}

struct slot {
	bool present;
	uint8_t cls;
	uint16_t vlen;
	char v[KV_MAX_LEN];
};

/* The allocator as kvstore.c describes it. */
static struct {
	uint64_t cap, count, data_size, used;
	uint64_t nfree[N_CLASSES];
} am;
static struct slot *slots;

static bool am_avail(unsigned c)
{
	return am.nfree[c] > 0 || am.data_size - am.used >= (16u << c);
}

static void am_take(unsigned c)
{
	if (am.nfree[c])
		am.nfree[c]--;
	else
		am.used += 16u << c;
}

static void am_clear(void)
{
	am.count = am.used = 0;
	memset(am.nfree, 0, sizeof(am.nfree));
	for (size_t i = 0; i < nkeys; i++)
		slots[i].present = false;
}

static long expected_cap(size_t bytes)
{
	uint64_t c = KVS_MAX_ENTRIES;
	while (c >= KVS_MIN_ENTRIES && c * (KVS_BYTES_PER_ENTRY + KVS_MIN_DATA_PER_ENTRY) > bytes)
		c >>= 1;
	return c < KVS_MIN_ENTRIES ? -ENOMEM : (long)c;
}

static bool check_key(size_t i)
{
	const char *v = NULL;
	size_t vl = 9999;
	int rc = kvs_get(keys[i].b, keys[i].len, &v, &vl);
	if (!slots[i].present) {
		CHECK(rc == -ENOENT, "key #%zu (%u bytes) should be gone: rc %d", i, keys[i].len, rc);
		return rc == -ENOENT;
	}
	bool ok = rc == 0 && vl == slots[i].vlen && memcmp(v, slots[i].v, vl) == 0;
	CHECK(ok, "key #%zu (%u bytes): rc %d, %zu bytes, want %u bytes%s", i, keys[i].len, rc,
	      vl, slots[i].vlen, rc == 0 && vl == slots[i].vlen ? " (other bytes)" : "");
	return ok;
}

static bool check_all(void)
{
	bool ok = true;
	for (size_t i = 0; i < nkeys && ok; i++)
		ok = check_key(i);
	CHECK(kvs_count() == am.count, "count %llu, want %llu", (unsigned long long)kvs_count(),
	      (unsigned long long)am.count);
	return ok && kvs_count() == am.count;
}

static struct {
	unsigned enospc_full, enospc_data, recovered, moved, in_place, deletes;
} ks;
static bool had_enospc;

static void model_put(size_t i, size_t vlen)
{
	struct key *k = &keys[i];
	struct slot *s = &slots[i];
	char v[KV_MAX_LEN];
	fill_random(v, vlen);

	unsigned c = class_of(k->len + vlen);
	bool fresh = !s->present, fits = s->present && s->cls >= c;
	int want = fits || (am_avail(c) && (!fresh || am.count < am.cap)) ? 0 : -ENOSPC;

	bool is_new = !fresh;
	uint64_t need = kvs_need(k->b, k->len, vlen, &is_new);
	CHECK(need == (fits ? 0 : 16u << c) && is_new == fresh,
	      "kvs_need(key #%zu, %zu) = %llu new %d, want %u new %d", i, vlen,
	      (unsigned long long)need, is_new, fits ? 0 : 16u << c, fresh);
	CHECK(kvs_can_put(k->b, k->len, vlen) == (want == 0), "kvs_can_put(key #%zu, %zu) = %d",
	      i, vlen, kvs_can_put(k->b, k->len, vlen));
	int rc = kvs_put(k->b, k->len, v, vlen);
	CHECK(rc == want, "kvs_put(key #%zu of %u bytes, %zu bytes) = %d, want %d", i, k->len,
	      vlen, rc, want);
	if (rc == 0 && want == 0) {
		if (!fits) {
			am_take(c);
			if (s->present)
				am.nfree[s->cls]++;
			s->cls = (uint8_t)c;
			ks.moved += !fresh;
		} else {
			ks.in_place++;
		}
		if (fresh) {
			am.count++;
			ks.recovered += had_enospc;
			had_enospc = false;
		}
		s->present = true;
		s->vlen = (uint16_t)vlen;
		memcpy(s->v, v, vlen);
	} else if (want) {
		had_enospc = true;
		if (fresh && am.count == am.cap)
			ks.enospc_full++;
		else
			ks.enospc_data++;
	}
	CHECK(kvs_data_free() == am.data_size - am.used, "data free %llu, want %llu",
	      (unsigned long long)kvs_data_free(), (unsigned long long)(am.data_size - am.used));
	check_key(i);
}

static void model_del(size_t i)
{
	struct slot *s = &slots[i];
	int want = s->present ? 0 : -ENOENT;
	int rc = kvs_del(keys[i].b, keys[i].len);
	CHECK(rc == want, "kvs_del(key #%zu) = %d, want %d", i, rc, want);
	if (want == 0) {
		am.nfree[s->cls]++;
		am.count--;
		s->present = false;
		ks.deletes++;
	}
	/* Every other key still found where the delete shifted it. */
	check_all();
}

static void model_invalid(void)
{
	char big[KV_MAX_LEN + 1];
	fill_random(big, sizeof(big));
	size_t klen = chance(50) ? KV_MAX_LEN + 1 : some_len();
	size_t vlen = klen > KV_MAX_LEN ? some_len() : KV_MAX_LEN + 1;
	bool is_new = true;
	CHECK(kvs_put(big, klen, big, vlen) == -EINVAL, "kvs_put of %zu + %zu bytes", klen, vlen);
	CHECK(!kvs_can_put(big, klen, vlen), "kvs_can_put of %zu + %zu bytes", klen, vlen);
	CHECK(kvs_need(big, klen, vlen, &is_new) > kvs_data_free() && !is_new,
	      "kvs_need of %zu + %zu bytes", klen, vlen);
	if (klen > KV_MAX_LEN) {
		const char *v;
		size_t vl;
		CHECK(kvs_get(big, klen, &v, &vl) == -ENOENT, "kvs_get of a %zu-byte key", klen);
		CHECK(kvs_del(big, klen) == -ENOENT, "kvs_del of a %zu-byte key", klen);
	}
	CHECK(kvs_count() == am.count, "an invalid put changed the count");
}

enum pool { POOL_BIG, POOL_SMALL, POOL_MIXED };
static const char *const pool_names[] = { "big", "small", "mixed" };

/* One table of `bytes` bytes, KVS_OPS random operations on a pool of keys:
 * big keys and values (the data memory runs out first), tiny ones (the
 * entry capacity runs out first), or both. */
static void kvs_model_run(size_t bytes, enum pool pool, bool expect_full, bool expect_data)
{
	int failed_before = failures;
	uint64_t seed_here = rs;
	void *mem = malloc(bytes); /* exactly: ASan sees a write past it */
	long cap = kvs_init(mem, bytes);
	CHECK(cap == expected_cap(bytes), "kvs_init(%zu) = %ld, want %ld", bytes, cap,
	      expected_cap(bytes));
	if (cap <= 0) {
		free(mem);
		return;
	}
	CHECK(kvs_capacity() == (uint64_t)cap && kvs_count() == 0, "fresh table");
	CHECK(kvs_data_free() == bytes - (size_t)cap * KVS_BYTES_PER_ENTRY,
	      "data free %llu of %zu bytes", (unsigned long long)kvs_data_free(), bytes);

	keys_reset();
	add_key_groups(2 * (uint32_t)cap - 1);
	switch (pool) {
	case POOL_BIG:
		add_random_keys(300, 0, KV_MAX_LEN);
		break;
	case POOL_SMALL:
		add_random_keys((unsigned)cap * 16 / 10, 1, 6);
		break;
	case POOL_MIXED:
		add_random_keys(500, 0, KV_MAX_LEN);
		add_random_keys(300, 1, 6);
		break;
	}
	slots = calloc(nkeys, sizeof(*slots));
	memset(&am, 0, sizeof(am));
	am.cap = (uint64_t)cap;
	am.data_size = bytes - (size_t)cap * KVS_BYTES_PER_ENTRY;
	memset(&ks, 0, sizeof(ks));
	had_enospc = false;

	/* Phases of growing (long enough to fill it) and of shrinking. */
	unsigned phase = 3 * (unsigned)cap, ops = KVS_OPS * (unsigned)cap / KVS_MIN_ENTRIES;
	for (unsigned op = 0; op < ops && failures == failed_before; op++) {
		bool grow = op % (phase + phase / 3) < phase;
		unsigned p_put = grow ? 90 : 25, p_del = grow ? 5 : 63;
		unsigned r = (unsigned)below(10000);
		size_t i = below(nkeys);
		if (r < p_put * 100) {
			/* Tiny keys mostly get tiny values: 16-byte blocks. */
			size_t vlen = pool != POOL_BIG && keys[i].len <= 6 &&
						      chance(pool == POOL_SMALL ? 98 : 90)
					      ? below(17 - keys[i].len)
					      : some_vlen(keys[i].len);
			model_put(i, vlen);
		} else if (r < (p_put + p_del) * 100) {
			model_del(i);
		} else if (r < 9990) {
			check_key(i);
		} else if (r < 9992 && !grow) { /* now and then, not while filling it */
			kvs_clear();
			am_clear();
			CHECK(kvs_data_free() == am.data_size, "clear frees the data memory");
			check_all();
		} else {
			model_invalid();
		}
		if (op % 64 == 0)
			check_all();
		if (failures != failed_before)
			fprintf(stderr, "  table of %zu bytes, %s keys: op %u (seed at the start of "
				"this run %#llx)\n", bytes, pool_names[pool], op,
				(unsigned long long)seed_here);
	}
	check_all();
	/* What the run went through: both ways to fill it, and back. */
	if (expect_full)
		CHECK(ks.enospc_full > 0, "%s: never full at capacity", pool_names[pool]);
	if (expect_data)
		CHECK(ks.enospc_data > 0, "%s: data memory never ran out", pool_names[pool]);
	CHECK((ks.recovered > 0 || !(expect_full || expect_data)) && ks.moved > 0 &&
		      ks.in_place > 0 && ks.deletes > 0,
	      "%s: recovered %u moved %u in place %u deletes %u", pool_names[pool], ks.recovered,
	      ks.moved, ks.in_place, ks.deletes);
	printf("kvstore %7zu bytes cap %5ld %-5s keys %5zu: full %u, data out %u, recovered "
	       "%u, moved %u, deletes %u\n", bytes, cap, pool_names[pool], nkeys, ks.enospc_full,
	       ks.enospc_data, ks.recovered, ks.moved, ks.deletes);

	/* Clear: everything gone and all of it usable again. */
	kvs_clear();
	am_clear();
	CHECK(kvs_count() == 0 && kvs_data_free() == am.data_size, "after clear");
	check_all();
	for (size_t i = 0; i < nkeys && i < 200; i++)
		model_put(i, some_vlen(keys[i].len));
	free(slots);
	slots = NULL;
	free(mem);
}

/* The edges, one by one. */
static void test_kvs_edges(void)
{
	size_t bytes = KVS_MIN_BYTES;
	void *mem = malloc(2 * KVS_MIN_BYTES);
	CHECK(kvs_init(mem, KVS_MIN_BYTES - 1) == -ENOMEM, "below KVS_MIN_BYTES");
	CHECK(kvs_init(mem, 2 * KVS_MIN_BYTES - 1) == KVS_MIN_ENTRIES, "just below twice");
	CHECK(kvs_init(mem, 2 * KVS_MIN_BYTES) == 2 * KVS_MIN_ENTRIES, "twice");
	CHECK(kvs_init(mem, bytes) == KVS_MIN_ENTRIES, "the least");
	uint64_t data = bytes - KVS_MIN_ENTRIES * KVS_BYTES_PER_ENTRY;
	CHECK(kvs_data_free() == data, "data free %llu", (unsigned long long)kvs_data_free());

	/* Empty key, empty value, the largest of both. */
	char k[KV_MAX_LEN], v[KV_MAX_LEN], k2[KV_MAX_LEN];
	const char *got;
	size_t gl;
	memset(k, 'k', sizeof(k));
	memset(v, 'v', sizeof(v));
	CHECK(kvs_put("", 0, "", 0) == 0, "empty key and value");
	CHECK(kvs_get("", 0, &got, &gl) == 0 && gl == 0, "empty key");
	CHECK(kvs_put(k, KV_MAX_LEN, v, KV_MAX_LEN) == 0, "512 + 512");
	CHECK(kvs_get(k, KV_MAX_LEN, &got, &gl) == 0 && gl == KV_MAX_LEN && !memcmp(got, v, gl),
	      "512 + 512 back");
	CHECK(kvs_get(k, KV_MAX_LEN - 1, &got, &gl) == -ENOENT, "a prefix is another key");
	CHECK(kvs_put(k, KV_MAX_LEN + 1, v, 1) == -EINVAL && kvs_put(k, 1, v, KV_MAX_LEN + 1) == -EINVAL,
	      "513 bytes");
	CHECK(kvs_count() == 2, "count %llu", (unsigned long long)kvs_count());
	/* Shrinking stays in place, growing moves: the value is right either way. */
	CHECK(kvs_put(k, KV_MAX_LEN, "x", 1) == 0 && kvs_get(k, KV_MAX_LEN, &got, &gl) == 0 &&
		      gl == 1 && got[0] == 'x', "shrink");
	CHECK(kvs_put("", 0, v, KV_MAX_LEN) == 0 && kvs_get("", 0, &got, &gl) == 0 &&
		      gl == KV_MAX_LEN && !memcmp(got, v, gl), "grow");
	CHECK(kvs_del("", 0) == 0 && kvs_del("", 0) == -ENOENT && kvs_count() == 1, "del");

	/* Full at capacity: 1024 two-byte keys, then no new one, but updates
	 * and, after a delete, one more. */
	kvs_clear();
	for (unsigned i = 0; i < KVS_MIN_ENTRIES; i++) {
		k2[0] = (char)i;
		k2[1] = (char)(i >> 8);
		CHECK(kvs_put(k2, 2, v, 8) == 0, "key %u of %u", i, KVS_MIN_ENTRIES);
	}
	k2[0] = k2[1] = (char)0xff;
	CHECK(!kvs_can_put(k2, 2, 0) && kvs_put(k2, 2, v, 0) == -ENOSPC, "a new key past capacity");
	CHECK(kvs_count() == KVS_MIN_ENTRIES && kvs_get(k2, 2, &got, &gl) == -ENOENT,
	      "unchanged after ENOSPC");
	k2[0] = 7;
	k2[1] = 0;
	CHECK(kvs_put(k2, 2, "new", 3) == 0 && kvs_get(k2, 2, &got, &gl) == 0 && gl == 3 &&
		      !memcmp(got, "new", 3), "update when full");
	CHECK(kvs_del(k2, 2) == 0, "del when full");
	k2[0] = k2[1] = (char)0xff;
	CHECK(kvs_put(k2, 2, "x", 1) == 0, "a new key after a delete");

	/* Out of data memory: 1024-byte blocks until none is left. */
	kvs_clear();
	unsigned n = 0;
	for (;; n++) {
		memcpy(k, &n, sizeof(n));
		if (!kvs_can_put(k, KV_MAX_LEN, KV_MAX_LEN))
			break;
		CHECK(kvs_put(k, KV_MAX_LEN, v, KV_MAX_LEN) == 0, "block %u", n);
	}
	CHECK(n == data / 1024, "%u blocks of 1024 in %llu bytes", n, (unsigned long long)data);
	CHECK(kvs_put(k, KV_MAX_LEN, v, KV_MAX_LEN) == -ENOSPC && kvs_count() == n, "data full");
	unsigned gone = 3;
	memcpy(k, &gone, sizeof(gone));
	CHECK(kvs_del(k, KV_MAX_LEN) == 0, "del");
	memcpy(k, &n, sizeof(n));
	CHECK(kvs_put(k, KV_MAX_LEN, v, KV_MAX_LEN) == 0, "its block again");
	kvs_clear();
	CHECK(kvs_count() == 0 && kvs_data_free() == data && kvs_get(k, KV_MAX_LEN, &got, &gl) == -ENOENT,
	      "clear");
	CHECK(kvs_put(k, KV_MAX_LEN, v, KV_MAX_LEN) == 0, "after clear");
	free(mem);
}

static void test_kvs_model(void)
{
	const struct {
		size_t bytes;
		enum pool pool;
		bool full, data; /* the run must fill it at capacity / its data memory */
	} runs[] = {
		{ KVS_MIN_BYTES, POOL_BIG, false, true },
		{ KVS_MIN_BYTES, POOL_SMALL, true, false },
		{ KVS_MIN_BYTES, POOL_MIXED, false, true },
		{ KVS_MIN_BYTES + 20003, POOL_MIXED, false, true }, /* not a multiple of 16 */
		{ 2 * KVS_MIN_BYTES, POOL_SMALL, true, false },
		{ 2 * KVS_MIN_BYTES + 1, POOL_BIG, false, true },
		{ 4 * KVS_MIN_BYTES - 1, POOL_MIXED, false, false },
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		kvs_model_run(runs[i].bytes, runs[i].pool, runs[i].full, runs[i].data);
}

/* ---- 2. the store: kvdb over the table and the log ---------------------------- */

/* The table for the log tests: room for the largest batches, or the
 * least (for some disks of the random test: it fills, store_full). */
#define LOG_TABLE_BYTES (2 * KVS_MIN_BYTES - 1)
#define LOG_POOL        96 /* random keys, plus the colliding ones */
#define MAXK            160

static void *tmem;
static size_t tbytes = LOG_TABLE_BYTES;

/* What the store holds, as the test knows it: per pool key, whether it is
 * there and which write (wid: its value is gen_value(wid, vlen)). */
struct lstate {
	uint32_t count;
	uint8_t present[MAXK];
	uint16_t vlen[MAXK];
	uint32_t wid[MAXK];
};

struct lrec {
	uint16_t key, vlen;
	uint32_t wid;
};
/* A batch as the log holds it: PUT or DEL records, or one FLUSHALL. */
struct lbatch {
	int op; /* KVLOG_PUT, KVLOG_DEL, KVLOG_FLUSHALL */
	unsigned n;
	struct lrec r[KVLOG_BATCH_MAX];
};

static void gen_value(uint32_t wid, size_t vlen, char *out)
{
	uint64_t x = (wid + 1) * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < vlen; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out[i] = (char)x;
	}
	if (vlen >= 4)
		memcpy(out, &wid, 4);
}

static void lapply(struct lstate *s, const struct lbatch *b)
{
	if (b->op == KVLOG_FLUSHALL) {
		memset(s, 0, sizeof(*s));
		return;
	}
	for (unsigned i = 0; i < b->n; i++) {
		const struct lrec *r = &b->r[i];
		if (b->op == KVLOG_PUT) {
			s->count += !s->present[r->key];
			s->present[r->key] = 1;
			s->vlen[r->key] = r->vlen;
			s->wid[r->key] = r->wid;
		} else if (s->present[r->key]) {
			s->present[r->key] = 0;
			s->count--;
		}
	}
}

static size_t lbatch_bytes(const struct lbatch *b)
{
	size_t bytes = 0;
	for (unsigned i = 0; i < b->n; i++)
		bytes += kvlog_record_bytes(keys[b->r[i].key].len, b->op == KVLOG_PUT ? b->r[i].vlen : 0);
	return bytes;
}

static bool key_is(const struct lstate *s, unsigned k, bool report)
{
	const char *v;
	size_t vl;
	int rc = kvs_get(keys[k].b, keys[k].len, &v, &vl);
	if (!s->present[k]) {
		if (rc != -ENOENT && report) {
			uint32_t w = 0;
			if (vl >= 4)
				memcpy(&w, v, 4);
			fprintf(stderr, "  key #%u: there (%zu bytes, wid %u), should be gone\n", k, vl, w);
		}
		return rc == -ENOENT;
	}
	char want[KV_MAX_LEN];
	gen_value(s->wid[k], s->vlen[k], want);
	bool ok = rc == 0 && vl == s->vlen[k] && memcmp(v, want, vl) == 0;
	if (!ok && report) {
		uint32_t w = 0;
		if (rc == 0 && vl >= 4)
			memcpy(&w, v, 4);
		fprintf(stderr, "  key #%u: %s (%zu bytes, wid %u), want wid %u (%u bytes)\n", k,
			rc ? "gone" : "other value", rc ? 0 : vl, w, s->wid[k], s->vlen[k]);
	}
	return ok;
}

static bool table_is(const struct lstate *s, bool report)
{
	bool ok = kvs_count() == s->count;
	if (!ok && report)
		fprintf(stderr, "  count %llu, want %u\n", (unsigned long long)kvs_count(), s->count);
	for (unsigned k = 0; k < nkeys && (ok || report); k++)
		ok &= key_is(s, k, report);
	return ok;
}

static char vbuf[KVLOG_BATCH_MAX][KV_MAX_LEN];
static struct kvlog_entry ents[KVLOG_BATCH_MAX];

/* MSET: kvdb_put of the batch's pairs. */
static const char *t_mset(const struct lbatch *b)
{
	for (unsigned i = 0; i < b->n; i++) {
		gen_value(b->r[i].wid, b->r[i].vlen, vbuf[i]);
		ents[i] = (struct kvlog_entry){ keys[b->r[i].key].b, keys[b->r[i].key].len, vbuf[i],
						b->r[i].vlen, KVLOG_PUT };
	}
	return kvdb_put(b->n, ents);
}

/* DEL: kvdb_del of the keys *b holds. On return *b holds the records the
 * store logs for them by the model s (what was acknowledged): the keys
 * there, each once; kvdb_del must say it removed that many. */
static const char *t_del(const struct lstate *s, struct lbatch *b)
{
	struct lbatch want = { .op = KVLOG_DEL, .n = 0 };
	for (unsigned i = 0; i < b->n; i++) {
		unsigned k = b->r[i].key;
		ents[i] = (struct kvlog_entry){ keys[k].b, keys[k].len, "", 0, KVLOG_DEL };
		bool dup = false;
		for (unsigned j = 0; j < want.n && !dup; j++)
			dup = want.r[j].key == k;
		if (s->present[k] && !dup)
			want.r[want.n++] = (struct lrec){ (uint16_t)k, 0, 0 };
	}
	uint64_t removed = 12345;
	const char *why = kvdb_del(b->n, ents, &removed);
	CHECK(why ? removed == 0 : removed == want.n, "kvdb_del of %u keys (%u there): %s, "
	      "removed %llu", b->n, want.n, why ? why : "OK", (unsigned long long)removed);
	*b = want;
	return why;
}

static const char *t_run(const struct lstate *s, struct lbatch *b)
{
	return b->op == KVLOG_PUT ? t_mset(b) : b->op == KVLOG_DEL ? t_del(s, b) : kvdb_flushall();
}

/* Power on: a fresh table and the log replayed into it (kvdb_replay). */
static long boot(void)
{
	shim_boot();
	free(tmem);
	tmem = malloc(tbytes); /* exactly: ASan sees a write past it */
	CHECK(kvs_init(tmem, tbytes) == expected_cap(tbytes), "kvs_init");
	uint64_t dropped = 12345;
	long r = kvdb_replay(&dropped);
	if (r >= 0) {
		CHECK((uint64_t)r == kvlog_records(), "replay returned %ld, kvlog_records %llu", r,
		      (unsigned long long)kvlog_records());
		CHECK(dropped == 0, "%llu replayed records did not fit the table",
		      (unsigned long long)dropped);
	}
	return r;
}

/* The last lines of what the random test did, for a failure's report. */
#define TRACE_N 40
static char trace[TRACE_N][320];
static unsigned trace_n;

static void __attribute__((format(printf, 1, 2))) tracef(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(trace[trace_n % TRACE_N], sizeof(trace[0]), fmt, ap);
	va_end(ap);
	trace_n++;
}

static void trace_dump(void)
{
	unsigned from = trace_n > TRACE_N ? trace_n - TRACE_N : 0;
	fprintf(stderr, "  the last %u steps:\n", trace_n - from);
	for (unsigned i = from; i < trace_n; i++)
		fprintf(stderr, "    %s\n", trace[i % TRACE_N]);
}

static const char *op_name(int op)
{
	return op == KVLOG_PUT ? "MSET" : op == KVLOG_DEL ? "DEL" : "FLUSHALL";
}

static void describe(char *out, size_t size, const struct lbatch *b)
{
	size_t at = (size_t)snprintf(out, size, "%s n=%u", op_name(b->op), b->n);
	for (unsigned i = 0; i < b->n && i < 6 && at < size; i++)
		at += (size_t)snprintf(out + at, size - at, i ? ",#%u" : " [#%u", b->r[i].key);
	if (b->n && at < size)
		snprintf(out + at, size - at, "%s] %zu bytes", b->n > 6 ? ",.." : "", lbatch_bytes(b));
}

/* Unacknowledged batches since the last acknowledged one, that wrote to
 * the disk: any one of them may come back at a replay, whole. */
#define MAX_CAND 64
static struct lbatch cand[MAX_CAND];
static unsigned ncand;

static struct {
	unsigned reboots, crashes, came_back, acked, io_errors, disk_full, too_long, store_full;
	unsigned flushall_full, restart_pending, restart_retried;
} ls;

struct life {
	struct lstate acked;
	uint64_t cap;
	bool pending;   /* a FLUSHALL acknowledged, its restart of sector 1 not yet done */
	/* The log's last batch that counts is a FLUSHALL (acknowledged, or one
	 * that came back): the log holds nothing else, so it starts over at
	 * sector 1 (now or at the next write) and takes any batch of up to
	 * cap - 3 sectors, across reboots as well. */
	bool emptied;
	bool was_full;  /* the last append answered disk_full */
	struct lbatch last_failed;
	bool retry;
	/* 0: any sizes; 1: 512-byte records; 2: 256-byte records (where the
	 * key is short enough); 3: large records, batches up to 80 (past
	 * KVLOG_BATCH_BYTES) */
	unsigned mode;
	uint32_t wid;
	bool cache;     /* the disk has a volatile cache */
	uint64_t lost;  /* sectors it lost at crashes */
};

static void make_put(struct life *L, struct lbatch *b)
{
	b->op = KVLOG_PUT;
	if (L->retry && chance(50)) {
		/* The client again, with the same keys and sizes: new values, or
		 * the very same. */
		*b = L->last_failed;
		if (chance(60))
			for (unsigned i = 0; i < b->n; i++)
				b->r[i].wid = ++L->wid;
		return;
	}
	unsigned r = (unsigned)below(100);
	b->n = r < 35 ? 1 : r < 70 ? 2 + (unsigned)below(7) : 9 + (unsigned)below(L->mode == 3 ? 72 : 56);
	for (unsigned i = 0; i < b->n; i++) {
		unsigned k = (unsigned)below(nkeys);
		for (unsigned t = 0; L->mode == 3 && keys[k].len < 400 && t < 20; t++)
			k = (unsigned)below(nkeys);
		size_t kl = keys[k].len, vl;
		if (L->mode == 3)
			vl = KV_MAX_LEN - below(4);
		else if (L->mode == 1 && kl <= REC512_KV)
			vl = REC512_KV - kl;
		else if (L->mode == 2 && kl <= REC256_KV)
			vl = REC256_KV - kl;
		else
			vl = some_vlen(kl);
		b->r[i] = (struct lrec){ (uint16_t)k, (uint16_t)vl, ++L->wid };
	}
}

/* One operation against the live store, checked; false once the machine
 * crashed. */
static bool log_step(struct life *L, unsigned step)
{
	struct lbatch b;
	unsigned r = (unsigned)below(100);
	if (L->was_full ? chance(50) : r < 4) {
		b.op = KVLOG_FLUSHALL;
		b.n = 0;
	} else if (r < 75) {
		make_put(L, &b);
	} else {
		b.op = KVLOG_DEL;
		b.n = 1 + (unsigned)below(chance(50) ? 4 : 64);
		for (unsigned i = 0; i < b.n; i++)
			b.r[i].key = (uint16_t)below(nkeys);
	}

	uint64_t free0 = kvlog_free(), landed0 = shim_stats()->landed_sectors;
	/* The log may start over at sector 1 (free: cap - 2) when the store
	 * is empty: after a FLUSHALL whose restart is still to be done, or
	 * one a replay found. */
	bool pending0 = L->pending || L->acked.count == 0;
	const char *why = t_run(&L->acked, &b);
	uint64_t free1 = kvlog_free();
	bool landed = shim_stats()->landed_sectors != landed0;
	size_t bytes = lbatch_bytes(&b), sectors = (bytes + BLK_SECTOR - 1) / BLK_SECTOR;
	uint64_t cap = L->cap;

	char d[200];
	describe(d, sizeof(d), &b);
	tracef("step %u: %s (log free %llu%s) -> %s %s", step, d, (unsigned long long)free0,
	       L->pending ? ", restart pending" : "", why ? why : "OK", shim_fault_note());

	if (L->pending && (free1 == cap - 2 || (!why && b.op != KVLOG_FLUSHALL && free1 == cap - 2 - sectors))) {
		L->pending = false;
		ls.restart_retried++;
	}
	if (!why) {
		ls.acked++;
		lapply(&L->acked, &b);
		/* Written over the unacknowledged ones (a DEL of keys not there
		 * writes nothing and leaves them where they are). */
		if (b.op == KVLOG_FLUSHALL || b.n)
			ncand = 0;
		L->was_full = L->retry = false;
		if (b.op == KVLOG_FLUSHALL || b.n)
			L->emptied = b.op == KVLOG_FLUSHALL;
		if (b.op == KVLOG_FLUSHALL) {
			ls.flushall_full += free0 <= 1;
			CHECK(free1 == cap - 2 || free1 == free0 - 1 || (pending0 && free1 == cap - 3),
			      "FLUSHALL: log free %llu -> %llu of %llu", (unsigned long long)free0,
			      (unsigned long long)free1, (unsigned long long)cap);
			L->pending = free1 != cap - 2;
			ls.restart_pending += L->pending;
		} else if (b.n) {
			CHECK(free1 == free0 - sectors || (pending0 && free1 == cap - 2 - sectors),
			      "%s of %zu sectors: log free %llu -> %llu", op_name(b.op), sectors,
			      (unsigned long long)free0, (unsigned long long)free1);
			CHECK(free1 >= 1, "the last sector is kept for FLUSHALL");
		}
	} else if (!strcmp(why, "disk_full")) {
		ls.disk_full++;
		L->was_full = true;
		/* Only when it does not fit: all but the last sector. */
		CHECK(b.op != KVLOG_FLUSHALL, "FLUSHALL answered disk_full (log free %llu of %llu)",
		      (unsigned long long)free1, (unsigned long long)cap);
		CHECK(free1 <= sectors, "disk_full for %zu sectors with %llu free",
		      sectors, (unsigned long long)free1);
		/* Not on a log that holds only a FLUSHALL (one at the log's end
		 * that a replay found included). */
		CHECK(!L->emptied || sectors + 2 >= cap, "disk_full for %zu sectors of %llu after "
		      "FLUSHALL: the log stays full", sectors, (unsigned long long)cap);
	} else if (!strcmp(why, "too_long")) {
		ls.too_long++;
		CHECK(bytes > KVLOG_BATCH_BYTES && !landed, "too_long for %zu bytes", bytes);
	} else if (!strcmp(why, "store_full")) {
		ls.store_full++;
		CHECK(!landed, "store_full wrote");
	} else if (!strcmp(why, "io_error")) {
		ls.io_errors++;
		if (landed && ncand < MAX_CAND)
			cand[ncand++] = b;
		/* Faults come in bursts: now and then the machine stops in the
		 * next write, over what this one left. */
		if (landed && chance(20))
			shim_script(SHIM_REQ_WRITE, 1, SHIM_CRASH, SHIM_LAND_RANDOM);
		if (b.op == KVLOG_PUT) {
			L->last_failed = b;
			L->retry = true;
		}
		CHECK(free1 == free0 || (pending0 && free1 == cap - 2), "io_error moved the log end %llu -> %llu",
		      (unsigned long long)free0, (unsigned long long)free1);
	} else {
		CHECK(0, "answer \"%s\"", why);
	}
	/* The live table: what was acknowledged, exactly. */
	for (unsigned i = 0; i < b.n; i++)
		if (!key_is(&L->acked, b.r[i].key, false))
			CHECK(key_is(&L->acked, b.r[i].key, true), "live key #%u after step %u",
			      b.r[i].key, step);
	if (step % 8 == 0)
		CHECK(table_is(&L->acked, true), "live table after step %u", step);
	return !shim_crashed();
}

/* A reboot: the replayed table must be what was acknowledged, or that and
 * one of the unacknowledged batches since, whole. */
static bool log_reboot(struct life *L, uint64_t seed, unsigned life, unsigned round)
{
	uint64_t free_before = kvlog_free();
	bool crashed = shim_crashed();
	ls.reboots++;
	ls.crashes += crashed;
	long r = boot();
	tracef("reboot%s: %llu unflushed sectors lost, replayed %ld records, log free %llu",
	       crashed ? " after a crash" : "",
	       (unsigned long long)(shim_stats()->lost_sectors - L->lost), r,
	       (unsigned long long)kvlog_free());
	L->lost = shim_stats()->lost_sectors;
	CHECK(r >= 0, "replay: %ld", r);
	CHECK(shim_stats()->bad_requests == 0, "requests out of range");
	bool ok = table_is(&L->acked, false);
	for (unsigned i = 0; i < ncand && !ok; i++) {
		struct lstate s = L->acked;
		lapply(&s, &cand[i]);
		if (table_is(&s, false)) {
			ok = true;
			/* A FLUSHALL came back, unless a later DEL would have
			 * emptied the table too. */
			L->emptied = cand[i].op == KVLOG_FLUSHALL;
			for (unsigned j = i + 1; j < ncand && L->emptied; j++) {
				struct lstate s2 = L->acked;
				lapply(&s2, &cand[j]);
				L->emptied = cand[j].op == KVLOG_FLUSHALL || s2.count;
			}
			L->acked = s;
			ls.came_back++;
			char d[200];
			describe(d, sizeof(d), &cand[i]);
			tracef("  (came back whole: %s)", d);
		}
	}
	CHECK(ok, "seed %#llx, disk %u (%llu sectors), reboot %u: the replayed table is not what "
	      "was acknowledged (nor that and one of the %u unacknowledged batches since, whole)",
	      (unsigned long long)seed, life, (unsigned long long)L->cap, round, ncand);
	if (!ok) {
		trace_dump();
		fprintf(stderr, "  the table against what was acknowledged:\n");
		table_is(&L->acked, true);
		return false;
	}
	if (ncand == 0 && !L->pending)
		CHECK(kvlog_free() == free_before, "log free %llu before the reboot, %llu after",
		      (unsigned long long)free_before, (unsigned long long)kvlog_free());
	ncand = 0;
	L->pending = false;
	L->retry = false;
	return true;
}

static void test_log_model(uint64_t seed)
{
	int failed_before = failures;
	uint32_t mask = 2 * (uint32_t)expected_cap(LOG_TABLE_BYTES) - 1;
	keys_reset();
	add_colliding_keys(mask, 5, 6);
	add_colliding_keys(mask, mask, 6);
	add_random_keys(LOG_POOL, 0, KV_MAX_LEN);
	add_random_keys(16, 400, KV_MAX_LEN); /* for the large records */
	add_key_groups(mask); /* and the same-hash pairs, the empty key */
	if (nkeys > MAXK)
		nkeys = MAXK;
	memset(&ls, 0, sizeof(ls));
	/* kvlog's printf (hundreds of "starting the log over ... failed")
	 * goes nowhere, unless KVTEST_VERBOSE is set; failures go to stderr. */
	fflush(stdout);
	int saved_stdout = -1;
	FILE *null = getenv("KVTEST_VERBOSE") ? NULL : fopen("/dev/null", "w");
	if (null) {
		saved_stdout = dup(1);
		dup2(fileno(null), 1);
	}

	for (unsigned life = 0; life < LOG_LIVES && failures == failed_before; life++) {
		static struct life L;
		memset(&L, 0, sizeof(L));
		/* Small disks fill at once (FLUSHALL on a full log), larger ones
		 * take whole batches of big records. */
		L.cap = chance(50) ? 6 + below(100) : 100 + below(1500);
		tbytes = chance(25) ? KVS_MIN_BYTES : LOG_TABLE_BYTES;
		shim_disk_new(L.cap);
		L.cache = chance(50);
		shim_volatile_cache(L.cache);
		ncand = 0;
		CHECK(boot() == 0, "an empty disk");
		for (unsigned round = 0; round < LOG_ROUNDS && failures == failed_before; round++) {
			struct shim_rates rt = { 0 };
			if (chance(50)) {
				unsigned per_mille = chance(50) ? 40 : 120;
				rt.write_fail = rt.write_torn = rt.flush_fail = per_mille;
			}
			unsigned ops = 1 + (unsigned)below(LOG_OPS_MAX);
			if (chance(70))
				rt.crash_at = 1 + below(2 * ops + 2);
			shim_random(&rt, rnd());
			L.mode = chance(55) ? 0 : 1 + (unsigned)below(3);
			tracef("disk %u round %u: %llu sectors%s, table %zu bytes, faults %u/1000, crash "
			       "at request %llu, record sizes %s", life, round, (unsigned long long)L.cap,
			       L.cache ? " (volatile cache)" : "", tbytes, rt.write_fail,
			       (unsigned long long)rt.crash_at,
			       L.mode == 0 ? "any" : L.mode == 1 ? "512" : L.mode == 2 ? "256" : "large");
			for (unsigned op = 0; op < ops && failures == failed_before; op++)
				if (!log_step(&L, op))
					break;
			if (failures != failed_before) {
				fprintf(stderr, "  seed %#llx, disk %u, round %u\n", (unsigned long long)seed,
					life, round);
				trace_dump();
				break;
			}
			if (!log_reboot(&L, seed, life, round))
				break;
		}
	}
	tbytes = LOG_TABLE_BYTES;
	fflush(stdout);
	if (null) {
		dup2(saved_stdout, 1);
		close(saved_stdout);
		fclose(null);
	}
	printf("kvlog: %u reboots (%u crashes), %u acknowledged, %u io_error, %u disk_full, %u "
	       "too_long, %u store_full; %u unacknowledged batches came back whole; FLUSHALL on a "
	       "full log %u; restarts left pending %u, retried %u\n", ls.reboots, ls.crashes,
	       ls.acked, ls.io_errors, ls.disk_full, ls.too_long, ls.store_full, ls.came_back,
	       ls.flushall_full, ls.restart_pending, ls.restart_retried);
	if (failures == failed_before)
		CHECK(ls.crashes && ls.came_back && ls.disk_full && ls.flushall_full &&
			      ls.restart_pending && ls.restart_retried && ls.store_full && ls.too_long,
		      "the random log test missed a case");
}

/* ---- 2b. the log, case by case ---------------------------------------------- */

/* Keys "a".."p"; a PUT of vlen SECTOR_VLEN is one 512-byte record: a sector. */
#define SECTOR_VLEN (REC512_KV - 1)

static void d_keys(void)
{
	keys_reset();
	for (char c = 'a'; c <= 'p'; c++)
		key_add(&c, 1);
	CHECK(kvlog_record_bytes(1, SECTOR_VLEN) == BLK_SECTOR &&
		      kvlog_record_bytes(1, SECTOR_VLEN + 1) > BLK_SECTOR,
	      "a record of a 1-byte key and %d bytes: %zu bytes", SECTOR_VLEN,
	      kvlog_record_bytes(1, SECTOR_VLEN));
}

static struct lbatch d_batch(int op, unsigned n, const unsigned *k, uint32_t wid0)
{
	struct lbatch b = { .op = op, .n = n };
	for (unsigned i = 0; i < n; i++)
		b.r[i] = (struct lrec){ (uint16_t)k[i], op == KVLOG_PUT ? SECTOR_VLEN : 0, wid0 + i };
	return b;
}

/* Runs b through kvdb: the answer must be want (NULL: OK). */
static void d_run(struct lstate *acked, struct lbatch b, const char *want, const char *what)
{
	const char *why = t_run(acked, &b);
	CHECK(why == want || (why && want && !strcmp(why, want)), "%s: \"%s\", want \"%s\"", what,
	      why ? why : "OK", want ? want : "OK");
	if (!why)
		lapply(acked, &b);
}

/* After a reboot: the acknowledged state, or that and one of maybe[]. */
static void d_expect(struct lstate *acked, const struct lbatch *maybe, unsigned nmaybe,
		     const char *what)
{
	long r = boot();
	CHECK(r >= 0, "%s: replay %ld", what, r);
	if (table_is(acked, false))
		return;
	for (unsigned i = 0; i < nmaybe; i++) {
		struct lstate s = *acked;
		lapply(&s, &maybe[i]);
		if (table_is(&s, false)) {
			*acked = s;
			return;
		}
	}
	CHECK(0, "%s: the replayed table is not what was acknowledged (nor that and one of "
	      "the %u unacknowledged batches, whole):", what, nmaybe);
	table_is(acked, true);
}

static bool is(const char *why, const char *want)
{
	return why == want || (why && want && !strcmp(why, want));
}

static void test_log_basics(void)
{
	struct lstate acked = { 0 };
	static const unsigned ka[] = { 0 }, kabc[] = { 0, 1, 2 };
	d_keys();
	tbytes = 4 * KVS_MIN_BYTES; /* room for the largest batches below */
	shim_disk_new(400);
	CHECK(boot() == 0 && kvlog_free() == 399 && kvlog_records() == 0, "an empty disk");
	d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), NULL, "SET a");
	CHECK(kvlog_free() == 398, "one sector: free %llu", (unsigned long long)kvlog_free());
	d_run(&acked, d_batch(KVLOG_PUT, 3, kabc, 2), NULL, "MSET a b c");
	d_run(&acked, d_batch(KVLOG_DEL, 1, kabc + 1, 0), NULL, "DEL b");
	d_expect(&acked, NULL, 0, "after SET, MSET, DEL");
	CHECK(kvlog_records() == 5, "records %llu", (unsigned long long)kvlog_records());

	/* A record's size as kvlog.h gives it. */
	for (size_t kl = 0; kl <= KV_MAX_LEN; kl += 73)
		for (size_t vl = 0; vl <= KV_MAX_LEN; vl += 31)
			CHECK(kvlog_record_bytes(kl, vl) == (KVLOG_REC_HEADER + kl + vl + 7) / 8 * 8,
			      "kvlog_record_bytes(%zu, %zu) = %zu", kl, vl, kvlog_record_bytes(kl, vl));

	/* The batch limits: records and bytes. */
	static char kb[KVLOG_BATCH_MAX + 1][KV_MAX_LEN];
	static struct kvlog_entry e[KVLOG_BATCH_MAX + 1];
	for (unsigned i = 0; i <= KVLOG_BATCH_MAX; i++) {
		memset(kb[i], 'x', KV_MAX_LEN);
		memcpy(kb[i], &i, sizeof(i));
		e[i] = (struct kvlog_entry){ kb[i], 8, "v", 1, KVLOG_PUT };
	}
	CHECK(kvlog_append_batch(e, 0) && !strcmp(kvlog_append_batch(e, 0), "too_long"), "0 records");
	const char *why = kvlog_append_batch(e, KVLOG_BATCH_MAX + 1);
	CHECK(why && !strcmp(why, "too_long"), "129 records: %s", why ? why : "OK");
	uint64_t free0 = kvlog_free();
	size_t small = kvlog_record_bytes(8, 1);
	uint64_t small_sectors = (KVLOG_BATCH_MAX * small + BLK_SECTOR - 1) / BLK_SECTOR;
	CHECK(kvlog_append_batch(e, KVLOG_BATCH_MAX) == NULL && kvlog_free() == free0 - small_sectors,
	      "128 records of %zu bytes: %llu sectors", small, (unsigned long long)small_sectors);
	/* 63 records of 1024 bytes and one of 512: KVLOG_BATCH_BYTES exactly. */
	const size_t half = (2 * BLK_SECTOR - KVLOG_REC_HEADER) / 2;
	for (unsigned i = 0; i < 63; i++) {
		e[i].klen = half;
		e[i].vlen = half;
		e[i].val = kb[i];
	}
	e[63].klen = 8;
	e[63].vlen = REC512_KV - 8;
	e[63].val = kb[63];
	CHECK(kvlog_record_bytes(half, half) == 2 * BLK_SECTOR &&
		      kvlog_record_bytes(8, REC512_KV - 8) == BLK_SECTOR &&
		      63 * 2 * BLK_SECTOR + BLK_SECTOR == KVLOG_BATCH_BYTES, "sizes");
	uint64_t free1 = kvlog_free();
	CHECK(kvlog_append_batch(e, 64) == NULL && kvlog_free() == free1 - 127,
	      "a batch of KVLOG_BATCH_BYTES");
	e[63].vlen = REC512_KV - 8 + 8;
	why = kvlog_append_batch(e, 64);
	CHECK(why && !strcmp(why, "too_long"), "8 bytes over KVLOG_BATCH_BYTES: %s", why ? why : "OK");
	e[63].vlen = REC512_KV - 8;
	struct kvlog_entry bad[3] = {
		{ "k", 1, "", 0, KVLOG_FLUSHALL },
		{ "k", 1, kb[0], KV_MAX_LEN + 1, KVLOG_PUT },
		{ "k", 1, "v", 1, KVLOG_DEL },
	};
	for (unsigned i = 0; i < 3; i++) {
		why = kvlog_append_batch(&bad[i], 1);
		CHECK(why && !strcmp(why, "too_long"), "bad record %u: %s", i, why ? why : "OK");
	}
	CHECK(kvlog_free() == free0 - small_sectors - 127, "refused batches take no space");
	CHECK(shim_stats()->bad_requests == 0, "requests out of range");
	long want = 5 + KVLOG_BATCH_MAX + 64;
	long r = boot();
	CHECK(r == want, "replayed %ld records", r);
	/* a, c; 128 keys; 63 more (the 64th is one of the 128). */
	CHECK(kvs_count() == 2 + KVLOG_BATCH_MAX + 63, "count %llu", (unsigned long long)kvs_count());
	const char *v;
	size_t vl;
	CHECK(kvs_get(kb[5], half, &v, &vl) == 0 && vl == half && !memcmp(v, kb[5], half),
	      "a record of the largest batch");

	/* A read error: -EIO. The flush replay ends with fails: -EIO too
	 * (it must not serve what may not last). */
	uint64_t dropped;
	shim_boot();
	shim_script(SHIM_REQ_READ, 1, SHIM_READ_FAIL, 0);
	CHECK(kvdb_replay(&dropped) == -EIO, "a failed read");
	shim_boot();
	shim_script(SHIM_REQ_FLUSH, 1, SHIM_FLUSH_FAIL, 0);
	CHECK(kvdb_replay(&dropped) == -EIO && shim_stats()->flushes == 1, "replay's flush fails");
	r = boot();
	CHECK(r == want && shim_stats()->flushes == 1 && shim_stats()->writes == 0,
	      "replay: %ld records, then one flush and no write", r);
	tbytes = LOG_TABLE_BYTES;
}

/* kvdb's own answers: too_long, store_full (nothing written), DEL of keys
 * not there, twice, or more than KVLOG_BATCH_MAX of them; a failed batch
 * changes nothing. */
static void test_kvdb(void)
{
	static char big[KV_MAX_LEN + 1];
	static uint32_t kn[KVS_MIN_ENTRIES + KVLOG_BATCH_MAX];
	static struct kvlog_entry e[KVLOG_BATCH_MAX + 2];
	const char *v, *why;
	size_t vl;
	uint64_t removed;
	memset(big, 'B', sizeof(big));
	for (uint32_t i = 0; i < sizeof(kn) / sizeof(kn[0]); i++)
		kn[i] = i * 2654435761u;
	tbytes = KVS_MIN_BYTES;
	shim_disk_new(4000);
	CHECK(boot() == 0 && kvs_capacity() == KVS_MIN_ENTRIES, "boot");
	uint64_t w0 = shim_stats()->writes;

	e[0] = (struct kvlog_entry){ big, KV_MAX_LEN + 1, "v", 1, KVLOG_PUT };
	CHECK(is(kvdb_put(1, e), "too_long"), "a 513-byte key");
	e[0] = (struct kvlog_entry){ "k", 1, big, KV_MAX_LEN + 1, KVLOG_PUT };
	e[1] = (struct kvlog_entry){ "k", 1, "v", 1, KVLOG_PUT };
	CHECK(is(kvdb_put(2, e), "too_long"), "a 513-byte value");
	e[0] = (struct kvlog_entry){ "k", 1, "", 0, KVLOG_DEL };
	CHECK(is(kvdb_put(1, e), "too_long"), "a DEL record through kvdb_put");
	for (unsigned i = 0; i <= KVLOG_BATCH_MAX; i++)
		e[i] = (struct kvlog_entry){ (const char *)&kn[i], 4, "", 0, KVLOG_PUT };
	CHECK(is(kvdb_put(KVLOG_BATCH_MAX + 1, e), "too_long"), "129 pairs");
	CHECK(shim_stats()->writes == w0 && kvs_count() == 0, "too_long writes nothing");
	e[0] = (struct kvlog_entry){ big, KV_MAX_LEN, big, KV_MAX_LEN, KVLOG_PUT };
	CHECK(kvdb_put(1, e) == NULL && kvs_get(big, KV_MAX_LEN, &v, &vl) == 0 && vl == KV_MAX_LEN,
	      "512 + 512");

	/* The table takes 1024 entries: batches of 128 new keys until one
	 * does not fit. */
	uint32_t next = 0;
	while (kvs_count() + KVLOG_BATCH_MAX <= KVS_MIN_ENTRIES) {
		for (unsigned i = 0; i < KVLOG_BATCH_MAX; i++, next++)
			e[i] = (struct kvlog_entry){ (const char *)&kn[next], 4, "v", 1, KVLOG_PUT };
		CHECK(kvdb_put(KVLOG_BATCH_MAX, e) == NULL, "batch up to key %u", next);
	}
	uint64_t count = kvs_count(), records = kvlog_records();
	w0 = shim_stats()->writes;
	for (unsigned i = 0; i < KVLOG_BATCH_MAX; i++)
		e[i] = (struct kvlog_entry){ (const char *)&kn[next + i], 4, "v", 1, KVLOG_PUT };
	CHECK(is(kvdb_put(KVLOG_BATCH_MAX, e), KVDB_STORE_FULL), "a batch past the capacity");
	CHECK(shim_stats()->writes == w0 && kvs_count() == count && kvlog_records() == records &&
		      kvs_get(e[0].key, 4, &v, &vl) == -ENOENT, "store_full changes nothing");
	unsigned room = (unsigned)(KVS_MIN_ENTRIES - count);
	CHECK(kvdb_put(room, e) == NULL && kvs_count() == KVS_MIN_ENTRIES, "the last %u", room);
	next += room;
	e[0] = (struct kvlog_entry){ (const char *)&kn[next], 4, "v", 1, KVLOG_PUT };
	CHECK(is(kvdb_put(1, e), KVDB_STORE_FULL), "one new key in a full table");
	e[0] = (struct kvlog_entry){ (const char *)&kn[0], 4, "new", 3, KVLOG_PUT };
	e[1] = (struct kvlog_entry){ (const char *)&kn[1], 4, "new", 3, KVLOG_PUT };
	CHECK(kvdb_put(2, e) == NULL && kvs_get(e[0].key, 4, &v, &vl) == 0 && vl == 3, "updates");

	/* DEL: key 0 twice, one not there, key 1: two records. */
	w0 = shim_stats()->writes;
	records = kvlog_records();
	e[0] = (struct kvlog_entry){ (const char *)&kn[0], 4, "", 0, KVLOG_DEL };
	e[1] = e[0];
	e[2] = (struct kvlog_entry){ (const char *)&kn[next], 4, "", 0, KVLOG_DEL };
	e[3] = (struct kvlog_entry){ (const char *)&kn[1], 4, "", 0, KVLOG_DEL };
	CHECK(kvdb_del(4, e, &removed) == NULL && removed == 2 && kvlog_records() == records + 2 &&
		      shim_stats()->writes == w0 + 1 && kvs_count() == KVS_MIN_ENTRIES - 2,
	      "DEL k0 k0 absent k1: removed %llu", (unsigned long long)removed);
	CHECK(kvdb_del(3, e, &removed) == NULL && removed == 0 && shim_stats()->writes == w0 + 1,
	      "DEL of keys not there writes nothing");
	/* 130 keys there: the first 128 go. */
	for (unsigned i = 0; i < KVLOG_BATCH_MAX + 2; i++)
		e[i] = (struct kvlog_entry){ (const char *)&kn[2 + i], 4, "", 0, KVLOG_DEL };
	count = kvs_count();
	shim_script(SHIM_REQ_WRITE, 1, SHIM_WRITE_FAIL, 0);
	removed = 99;
	why = kvdb_del(KVLOG_BATCH_MAX + 2, e, &removed);
	CHECK(is(why, "io_error") && removed == 0 && kvs_count() == count, "a DEL that fails");
	CHECK(kvdb_del(KVLOG_BATCH_MAX + 2, e, &removed) == NULL && removed == KVLOG_BATCH_MAX &&
		      kvs_count() == count - KVLOG_BATCH_MAX &&
		      kvs_get(e[KVLOG_BATCH_MAX].key, 4, &v, &vl) == 0 &&
		      kvs_get(e[KVLOG_BATCH_MAX + 1].key, 4, &v, &vl) == 0 &&
		      kvs_get(e[KVLOG_BATCH_MAX - 1].key, 4, &v, &vl) == -ENOENT,
	      "DEL of 130 keys: removed %llu", (unsigned long long)removed);
	count = kvs_count();
	CHECK(boot() > 0 && kvs_count() == count && kvs_get(big, KV_MAX_LEN, &v, &vl) == 0,
	      "after a reboot: %llu, want %llu", (unsigned long long)kvs_count(),
	      (unsigned long long)count);

	/* FLUSHALL: a failed one changes nothing. */
	shim_script(SHIM_REQ_WRITE, 1, SHIM_WRITE_FAIL, 0);
	CHECK(is(kvdb_flushall(), "io_error") && kvs_count() == count, "a FLUSHALL that fails");
	CHECK(kvdb_flushall() == NULL && kvs_count() == 0, "FLUSHALL");
	CHECK(boot() >= 0 && kvs_count() == 0, "after FLUSHALL and a reboot");
	CHECK(shim_stats()->bad_requests == 0, "requests out of range");
	tbytes = LOG_TABLE_BYTES;
}

static void fill_log(struct lstate *acked, uint64_t sectors)
{
	unsigned k = 0;
	for (uint64_t i = 0; i + 2 < sectors; i++, k = (k + 1) % 16)
		d_run(acked, d_batch(KVLOG_PUT, 1, &k, 100 + (uint32_t)i), NULL, "filling");
	CHECK(kvlog_free() == 1, "full: free %llu", (unsigned long long)kvlog_free());
}

static void test_log_disk_full(void)
{
	struct lstate acked = { 0 };
	static const unsigned ks10[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	d_keys();
	shim_disk_new(12);
	CHECK(boot() == 0, "boot");
	fill_log(&acked, 12); /* sectors 1..10 */
	d_run(&acked, d_batch(KVLOG_PUT, 1, ks10, 1), "disk_full", "the last sector is FLUSHALL's");
	d_run(&acked, d_batch(KVLOG_DEL, 1, ks10, 0), "disk_full", "a DEL too");
	d_expect(&acked, NULL, 0, "a full log");
	d_run(&acked, d_batch(KVLOG_PUT, 1, ks10, 1), "disk_full", "full after a reboot");
	d_run(&acked, d_batch(KVLOG_FLUSHALL, 0, NULL, 0), NULL, "FLUSHALL on a full log");
	CHECK(kvs_count() == 0 && kvlog_free() == 10, "emptied: free %llu",
	      (unsigned long long)kvlog_free());
	d_expect(&acked, NULL, 0, "after FLUSHALL");
	CHECK(kvlog_free() == 10, "the log starts over at sector 1: free %llu",
	      (unsigned long long)kvlog_free());
	/* 10 free: a batch of 10 sectors does not fit, one of 9 does. */
	d_run(&acked, d_batch(KVLOG_PUT, 10, ks10, 10), "disk_full", "10 sectors of 10");
	d_run(&acked, d_batch(KVLOG_PUT, 9, ks10, 20), NULL, "9 sectors of 10");
	d_expect(&acked, NULL, 0, "9 keys after FLUSHALL");
	CHECK(kvs_count() == 9, "count %llu", (unsigned long long)kvs_count());
	d_run(&acked, d_batch(KVLOG_FLUSHALL, 0, NULL, 0), NULL, "FLUSHALL again");
	d_run(&acked, d_batch(KVLOG_PUT, 2, ks10, 40), NULL, "after it");
	d_expect(&acked, NULL, 0, "after two FLUSHALLs");
}

/* Is the i-th last write (0: the last) of sector s, n sectors? */
static bool wrote(unsigned i, uint64_t s, uint32_t n)
{
	const struct shim_write *w = shim_last_write(i);
	return w && w->sector == s && w->n == n && w->rc == 0;
}

/*
 * A FLUSHALL on a full log of 12 sectors (records in sectors 1..10), its
 * requests: write 1, the FLUSHALL record in sector 11 (the last), and
 * flush 1; then the restart: write 2, a FLUSHALL record in sector 1 alone,
 * flush 2, write 3, zeros in sector 2, flush 3. The FLUSHALL is durable
 * after flush 1 and acknowledged whatever the restart does.
 */
struct restart_fault {
	const char *what;
	enum shim_req req;
	unsigned nth;
	enum shim_fault f;
	uint32_t land;
};

static const struct restart_fault restart_fails[] = {
	{ "sector 1's write fails", SHIM_REQ_WRITE, 2, SHIM_WRITE_FAIL, 0 },
	{ "sector 1's flush fails", SHIM_REQ_FLUSH, 2, SHIM_FLUSH_FAIL, 0 },
	{ "sector 2's write fails", SHIM_REQ_WRITE, 3, SHIM_WRITE_FAIL, 0 },
	{ "sector 2's flush fails", SHIM_REQ_FLUSH, 3, SHIM_FLUSH_FAIL, 0 },
};

/* The machine stops in the restart (or, with the last, just after the
 * FLUSHALL record, before the restart begins). */
static const struct restart_fault restart_crashes[] = {
	{ "crash at sector 1's write, nothing of it lands", SHIM_REQ_WRITE, 2, SHIM_CRASH, 0 },
	{ "crash at sector 1's write, it lands", SHIM_REQ_WRITE, 2, SHIM_CRASH, 1 },
	/* Were sector 1 written together with sector 2, only sector 2. */
	{ "crash at sector 1's write, only its last sector lands", SHIM_REQ_WRITE, 2,
	  SHIM_CRASH_TAIL, 1 },
	{ "crash at sector 1's flush", SHIM_REQ_FLUSH, 2, SHIM_CRASH, 0 },
	{ "crash at sector 2's write, nothing of it lands", SHIM_REQ_WRITE, 3, SHIM_CRASH, 0 },
	{ "crash at sector 2's write, it lands", SHIM_REQ_WRITE, 3, SHIM_CRASH, 1 },
	{ "crash at sector 2's flush", SHIM_REQ_FLUSH, 3, SHIM_CRASH, 0 },
	{ "crash at the FLUSHALL record's flush", SHIM_REQ_FLUSH, 1, SHIM_CRASH, 0 },
};

/* A fresh 12-sector disk (with a volatile cache: cache, its losses from
 * seed), filled, then a FLUSHALL with fault rf. */
static void restart_setup(struct lstate *acked, bool cache, uint64_t seed,
			  const struct restart_fault *rf, const char *want, const char *what)
{
	static const struct shim_rates none = { 0 };
	memset(acked, 0, sizeof(*acked));
	shim_disk_new(12);
	shim_volatile_cache(cache);
	CHECK(boot() == 0, "%s: boot", what);
	shim_random(&none, seed);
	fill_log(acked, 12);
	if (rf)
		shim_script(rf->req, rf->nth, rf->f, rf->land);
	d_run(acked, d_batch(KVLOG_FLUSHALL, 0, NULL, 0), want, what);
	CHECK(kvs_count() == 0 || want, "%s: FLUSHALL acknowledged, the table empty", what);
}

/* The end of a case: after a reboot (with the cache: a power cut, which
 * loses what was not flushed, then a reboot) the acknowledged state, and
 * the log's end where it was (free sectors). */
static void restart_end(struct lstate *acked, bool cache, uint64_t free, const char *what)
{
	if (cache)
		shim_power_cut();
	d_expect(acked, NULL, 0, what);
	CHECK(kvlog_free() == free, "%s: free %llu after the reboot, want %llu", what,
	      (unsigned long long)kvlog_free(), (unsigned long long)free);
	CHECK(shim_stats()->bad_requests == 0, "%s: requests out of range", what);
}

static void test_log_restart(void)
{
	static const unsigned ka[] = { 0 }, kb[] = { 1 };
	struct lstate acked;
	char what[160];
	d_keys();

	for (int cache = 0; cache < 2; cache++) {
		const char *cw = cache ? " (volatile cache)" : "";

		/* No fault: the three writes, then the log starts at sector 1. */
		snprintf(what, sizeof(what), "FLUSHALL on a full log%s", cw);
		restart_setup(&acked, cache, 1, NULL, NULL, what);
		/* Flushes: the replay's, the 10 SETs', the FLUSHALL's 3. */
		CHECK(wrote(2, 11, 1) && wrote(1, 1, 1) && wrote(0, 2, 1) && kvlog_free() == 10 &&
			      shim_stats()->flushes == 1 + 10 + 3,
		      "%s: writes of sector 11, 1, 2, each flushed; free %llu", what,
		      (unsigned long long)kvlog_free());
		d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), NULL, what);
		restart_end(&acked, cache, 9, what);

		/* The restart fails: the FLUSHALL stands, the log keeps its end
		 * (nothing free) until the restart is retried, before the next
		 * write: by a SET; by a SET, failing again; by a FLUSHALL. */
		for (size_t v = 0; v < sizeof(restart_fails) / sizeof(restart_fails[0]); v++) {
			const struct restart_fault *rf = &restart_fails[v];
			for (int retry = 0; retry < 3; retry++) {
				snprintf(what, sizeof(what), "%s%s, retried by %s", rf->what, cw,
					 retry == 0 ? "SET" : retry == 1 ? "SET (failing), SET" : "FLUSHALL");
				restart_setup(&acked, cache, 1, rf, NULL, what);
				CHECK(kvlog_free() == 0, "%s: free %llu, want 0 (the log's end kept)", what,
				      (unsigned long long)kvlog_free());
				uint64_t free = 9;
				if (retry == 0) {
					d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), NULL, what);
					CHECK(wrote(2, 1, 1) && wrote(1, 2, 1) && wrote(0, 2, 2),
					      "%s: sector 1, then sector 2, then the record at sector 2", what);
				} else if (retry == 1) {
					shim_script(SHIM_REQ_WRITE, 1, SHIM_WRITE_FAIL, 0);
					d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), "io_error", what);
					CHECK(kvlog_free() == 0, "%s: free %llu after the retry failed", what,
					      (unsigned long long)kvlog_free());
					d_run(&acked, d_batch(KVLOG_PUT, 1, kb, 2), NULL, what);
				} else {
					/* restart, FLUSHALL at sector 2, restart */
					d_run(&acked, d_batch(KVLOG_FLUSHALL, 0, NULL, 0), NULL, what);
					CHECK(kvlog_free() == 10, "%s: free %llu", what,
					      (unsigned long long)kvlog_free());
					d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), NULL, what);
				}
				CHECK(kvlog_free() == free, "%s: free %llu, want %llu", what,
				      (unsigned long long)kvlog_free(), (unsigned long long)free);
				restart_end(&acked, cache, free, what);
			}
		}

		/* The machine stops in the restart: after the reboot the store
		 * is empty and takes writes at once (the log starts over before
		 * the first, if the restart did not last); the FLUSHALL left in
		 * the last sector must not keep the log full. With the cache,
		 * what it loses differs from seed to seed. */
		for (size_t v = 0; v < sizeof(restart_crashes) / sizeof(restart_crashes[0]); v++) {
			const struct restart_fault *rf = &restart_crashes[v];
			for (uint64_t seed = 1; seed <= (cache ? 16u : 1u); seed++) {
				snprintf(what, sizeof(what), "%s%s, seed %llu", rf->what, cw,
					 (unsigned long long)seed);
				bool acks = rf->nth > 1;
				restart_setup(&acked, cache, seed, rf, acks ? NULL : "io_error", what);
				CHECK(shim_crashed(), "%s: crashed", what);
				struct lbatch flushall = { .op = KVLOG_FLUSHALL };
				/* The FLUSHALL whose flush crashed: there or not. */
				d_expect(&acked, &flushall, acks ? 0 : 1, what);
				bool empty = kvs_count() == 0;
				/* Without the cache the FLUSHALL record landed whole:
				 * the replay finds it in the log's last sector. */
				CHECK(empty || (!acks && cache), "%s: empty after the reboot", what);
				/* The log: the new start (sector 1) or the old one with
				 * the FLUSHALL at its end, its restart to do. */
				uint64_t free0 = kvlog_free(), w0 = shim_stats()->writes;
				CHECK(!empty || free0 == 10 || free0 == 0, "%s: free %llu after the reboot",
				      what, (unsigned long long)free0);
				d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), empty ? NULL : "disk_full", what);
				uint64_t w = shim_stats()->writes - w0;
				CHECK(!empty || w == (free0 ? 1 : 3), "%s: %llu writes for the SET (free %llu "
				      "before it)", what, (unsigned long long)w, (unsigned long long)free0);
				/* Empty: sector 1 a FLUSHALL, sector 2 the SET; else
				 * still the full log. */
				restart_end(&acked, cache, empty ? 9 : 1, what);
			}
		}
	}
}

/* A write that fails part way, over what an earlier failed write left
 * beyond the log's end: the batch comes back whole or not at all, and
 * never completed by records of another batch (the batch tag). */
static void test_log_torn(void)
{
	static const unsigned kab[] = { 0, 1 }, kabc[] = { 0, 1, 2 }, kc[] = { 2 }, kd[] = { 3 };
	d_keys();

	/* No torn write: MSET a b c fails (written, its flush fails), SET d
	 * goes over its start: what is left of a b c must not come back (the
	 * zeroed sector after every batch). */
	struct lstate acked = { 0 };
	struct lbatch abc = d_batch(KVLOG_PUT, 3, kabc, 1);
	shim_disk_new(64);
	CHECK(boot() == 0, "boot");
	shim_script(SHIM_REQ_FLUSH, 1, SHIM_FLUSH_FAIL, 0);
	d_run(&acked, abc, "io_error", "MSET a b c, flush fails");
	d_run(&acked, d_batch(KVLOG_PUT, 1, kd, 4), NULL, "SET d over it");
	d_expect(&acked, NULL, 0, "MSET a b c (flush failed), SET d, reboot");

	for (int variant = 0; variant < 3; variant++) {
		struct lstate acked = { 0 };
		struct lbatch a, c;
		char what[160];
		shim_disk_new(64);
		CHECK(boot() == 0, "boot");
		if (variant == 0) {
			/* A: MSET a b, written, its flush fails; C: SET c over
			 * it, only its record lands, not the zeroed sector after
			 * it: c comes back, and b (a record from inside A, with
			 * the very number after c's) must not, as a batch of its
			 * own. */
			snprintf(what, sizeof(what), "MSET a b (flush fails), SET c (torn: 1 of 2 sectors), "
				 "crash: c back, not b");
			a = d_batch(KVLOG_PUT, 2, kab, 1);
			c = d_batch(KVLOG_PUT, 1, kc, 3);
		} else if (variant == 1) {
			/* A: MSET a b c, flush fails; C: MSET a b c again with
			 * new values, only its first record lands: the new a
			 * and the old b c make no batch. */
			snprintf(what, sizeof(what), "MSET a b c (flush fails), MSET a b c (torn: 1 of 4 "
				 "sectors), crash: neither back");
			a = d_batch(KVLOG_PUT, 3, kabc, 1);
			c = d_batch(KVLOG_PUT, 3, kabc, 4);
		} else {
			/* A: MSET a b c, flush fails; B: SET d, acknowledged;
			 * C: MSET a b, only its first record lands: the new a
			 * and A's c (the numbers after d's) make no batch. */
			snprintf(what, sizeof(what), "MSET a b c (flush fails), SET d (OK), MSET a b (torn: "
				 "1 of 3 sectors), crash: only d");
			a = d_batch(KVLOG_PUT, 3, kabc, 1);
			c = d_batch(KVLOG_PUT, 2, kab, 5);
		}
		shim_script(SHIM_REQ_FLUSH, 1, SHIM_FLUSH_FAIL, 0);
		d_run(&acked, a, "io_error", what);
		if (variant == 2)
			d_run(&acked, d_batch(KVLOG_PUT, 1, kd, 4), NULL, what);
		shim_script(SHIM_REQ_WRITE, 1, SHIM_CRASH, 1);
		d_run(&acked, c, "io_error", what);
		if (variant == 0)
			lapply(&acked, &c); /* its record is whole: replay serves it */
		d_expect(&acked, NULL, 0, what);
	}
}

/* A disk with a volatile cache: what was acknowledged survives the power
 * going, and so does what a replay served. */
static void test_log_cache(void)
{
	static const unsigned ka[] = { 0 }, kb[] = { 1 }, kcd[] = { 2, 3 };
	struct lstate acked = { 0 };
	d_keys();
	shim_disk_new(64);
	shim_volatile_cache(1);
	CHECK(boot() == 0, "boot");
	d_run(&acked, d_batch(KVLOG_PUT, 1, ka, 1), NULL, "SET a");
	shim_power_cut();
	d_expect(&acked, NULL, 0, "SET a, power cut");
	CHECK(kvs_count() == 1, "a is durable once acknowledged");

	/* SET b: its flush fails, the power goes: b was never durable. */
	shim_script(SHIM_REQ_FLUSH, 1, SHIM_FLUSH_FAIL, 0);
	d_run(&acked, d_batch(KVLOG_PUT, 1, kb, 2), "io_error", "SET b, its flush fails");
	shim_power_cut();
	d_expect(&acked, NULL, 0, "SET b (flush failed), power cut: b lost with the cache");

	/* MSET c d: all of it written, but the write answered an error. A
	 * reboot whose flush fails serves nothing (-EIO), and the power going
	 * then loses c d. */
	struct lbatch cd = d_batch(KVLOG_PUT, 2, kcd, 3);
	shim_script(SHIM_REQ_WRITE, 1, SHIM_WRITE_TORN, 3);
	d_run(&acked, cd, "io_error", "MSET c d, the write fails after landing");
	uint64_t dropped;
	shim_boot();
	shim_script(SHIM_REQ_FLUSH, 1, SHIM_FLUSH_FAIL, 0);
	CHECK(kvdb_replay(&dropped) == -EIO, "MSET c d (failed), a replay whose flush fails");
	shim_power_cut();
	d_expect(&acked, NULL, 0, "MSET c d (failed), replay's flush failed, power cut");

	/* Again, and a reboot finds c d whole and serves them: its flush
	 * made them durable, and the power going must not take back what
	 * was served. */
	shim_script(SHIM_REQ_WRITE, 1, SHIM_WRITE_TORN, 3);
	d_run(&acked, cd, "io_error", "MSET c d again, the write fails after landing");
	lapply(&acked, &cd);
	d_expect(&acked, NULL, 0, "MSET c d (failed), reboot: served whole");
	shim_power_cut();
	d_expect(&acked, NULL, 0, "MSET c d came back at a reboot and was served, then a power "
		 "cut: served values must not go back");
	CHECK(kvs_count() == 3, "a c d: count %llu", (unsigned long long)kvs_count());
}

/* ---- 3. the old format ------------------------------------------------------ */

static void put_kvr1(uint8_t *s, uint64_t seq, const char *k, const char *v)
{
	memset(s, 0, BLK_SECTOR);
	uint32_t magic = KVLOG_MAGIC_V1;
	memcpy(s, &magic, 4);
	memcpy(s + 8, &seq, 8);
	s[16] = (uint8_t)strlen(k);
	s[17] = (uint8_t)strlen(v);
	memcpy(s + 18, k, strlen(k));
	memcpy(s + 82, v, strlen(v));
	uint32_t crc = crc32c(s + 8, BLK_SECTOR - 8);
	memcpy(s + 4, &crc, 4);
}

static void test_log_kvr1(void)
{
	shim_disk_new(16);
	put_kvr1(shim_disk_bytes() + BLK_SECTOR, 1, "key", "value");
	put_kvr1(shim_disk_bytes() + 2 * BLK_SECTOR, 2, "key2", "value2");
	long r = boot();
	CHECK(r == -EPROTO && kvs_count() == 0, "a KVR1 log: %ld, %llu keys", r,
	      (unsigned long long)kvs_count());
	CHECK(shim_stats()->writes == 0, "the old log is left alone");

	/* Not for a KVR1 record elsewhere, after the KVR2 log's end. */
	shim_disk_new(16);
	CHECK(boot() == 0, "boot");
	struct kvlog_entry e = { "key", 3, "value", 5, KVLOG_PUT };
	CHECK(kvlog_append(&e) == NULL, "append");
	put_kvr1(shim_disk_bytes() + 2 * BLK_SECTOR, 2, "key2", "value2");
	r = boot();
	CHECK(r == 1 && kvs_count() == 1, "KVR2 with KVR1 behind its end: %ld", r);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : DEFAULT_SEED;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	setvbuf(stdout, NULL, _IOLBF, 0); /* kvlog's messages in order with ours */
	printf("test_guest_kvstore: seed %#llx\n", (unsigned long long)seed);
	rs = seed ? seed : 1;
	crc32c_init();

	test_kvs_edges();
	test_kvs_model();
	test_log_basics();
	test_kvdb();
	test_log_disk_full();
	test_log_restart();
	test_log_torn();
	test_log_cache();
	test_log_kvr1();
	test_log_model(seed);

	free(tmem);
	free(keys);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("test_guest_kvstore: %d failures, %.2f s\n", failures,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return failures ? 1 : 0;
}
