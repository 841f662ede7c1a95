/*
 * guest_kvstore_shim.c - guest/virtio/blk.h over an in-memory disk with
 * injected faults (guest_kvstore_shim.h), for test_guest_kvstore.
 */
#include "tests/unit/guest_kvstore_shim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/lib/errno.h"
#include "guest/virtio/blk.h"

static uint8_t *disk;
static uint64_t disk_sectors;
static int crashed;

/* The volatile cache: for each sector written since the last flush that
 * succeeded, what it held then (dirty[s]: its index + 1 in preimage). */
static int cache_on;
static uint32_t *dirty;
static uint8_t (*preimage)[BLK_SECTOR];
static uint64_t *dirty_sector;
static uint32_t ndirty;
static struct shim_stats st;
static unsigned wlog_next;

struct scripted {
	enum shim_req req;
	unsigned nth; /* 0: unused */
	enum shim_fault f;
	uint32_t land;
};
static struct scripted script[16];

static struct shim_rates rates;
static uint64_t rng = 1;
static char note[512];
static size_t note_len;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void __attribute__((format(printf, 1, 2))) add_note(const char *fmt, ...)
{
	va_list ap;

	if (note_len >= sizeof(note) - 1)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(note + note_len, sizeof(note) - note_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		note_len += (size_t)n;
	if (note_len > sizeof(note) - 1)
		note_len = sizeof(note) - 1;
}

void shim_disk_new(uint64_t sectors)
{
	free(disk);
	free(dirty);
	free(preimage);
	free(dirty_sector);
	disk = calloc(sectors, BLK_SECTOR);
	dirty = calloc(sectors, sizeof(*dirty));
	preimage = malloc(sectors * sizeof(*preimage));
	dirty_sector = malloc(sectors * sizeof(*dirty_sector));
	if (!disk || !dirty || !preimage || !dirty_sector)
		abort();
	disk_sectors = sectors;
	cache_on = 0;
	ndirty = 0;
	memset(&st, 0, sizeof(st));
	shim_boot();
}

uint8_t *shim_disk_bytes(void)
{
	return disk;
}

void shim_volatile_cache(int on)
{
	cache_on = on;
}

static void cache_clean(void)
{
	for (uint32_t i = 0; i < ndirty; i++)
		dirty[dirty_sector[i]] = 0;
	ndirty = 0;
}

/* The machine stops: what the cache held is kept or lost, sector by sector
 * (all of it lost: lose_all). */
static void crash_lose(int lose_all)
{
	crashed = 1;
	for (uint32_t i = 0; i < ndirty; i++) {
		if (lose_all || (rnd() & 1)) {
			memcpy(disk + dirty_sector[i] * BLK_SECTOR, preimage[i], BLK_SECTOR);
			st.lost_sectors++;
		}
	}
	cache_clean();
}

static void crash(void)
{
	crash_lose(0);
}

void shim_power_cut(void)
{
	crash_lose(1);
}

void shim_boot(void)
{
	crashed = 0;
	memset(script, 0, sizeof(script));
	memset(&rates, 0, sizeof(rates));
	st.requests = st.reads = st.writes = st.flushes = 0;
	memset(st.wlog, 0, sizeof(st.wlog));
	wlog_next = 0;
	note_len = 0;
	note[0] = 0;
}

int shim_crashed(void)
{
	return crashed;
}

void shim_script(enum shim_req req, unsigned nth, enum shim_fault f, uint32_t land)
{
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		if (script[i].nth == 0) {
			script[i] = (struct scripted){ req, nth, f, land };
			return;
		}
	}
	abort(); /* the test scripted too much */
}

void shim_random(const struct shim_rates *r, uint64_t seed)
{
	rates = *r;
	rng = seed ? seed : 1;
}

const struct shim_stats *shim_stats(void)
{
	return &st;
}

const struct shim_write *shim_last_write(unsigned i)
{
	if (i >= SHIM_WRITE_LOG || i >= st.writes)
		return NULL;
	return &st.wlog[(wlog_next + SHIM_WRITE_LOG - 1 - i) % SHIM_WRITE_LOG];
}

const char *shim_fault_note(void)
{
	static char out[sizeof(note)];
	memcpy(out, note, note_len + 1);
	note_len = 0;
	note[0] = 0;
	return out;
}

/* The fault for this request: scripted first, else random. *land: for a
 * torn or crashing write, how many of its n sectors land. */
static enum shim_fault pick(enum shim_req req, uint32_t n, uint32_t *land)
{
	enum shim_fault f = SHIM_NONE;
	*land = 0;

	st.requests++;
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		if (script[i].nth == 0 || script[i].req != req)
			continue;
		if (--script[i].nth == 0) {
			f = script[i].f;
			*land = script[i].land == SHIM_LAND_RANDOM ? (uint32_t)(rnd() % (n + 1))
				: script[i].land < n ? script[i].land : n;
		}
	}
	if (f == SHIM_NONE && rates.crash_at && st.requests == rates.crash_at) {
		f = SHIM_CRASH;
		*land = (uint32_t)(rnd() % (n + 1));
	}
	if (f == SHIM_NONE) {
		unsigned x = (unsigned)(rnd() % 1000);
		switch (req) {
		case SHIM_REQ_WRITE:
			if (x < rates.write_fail)
				f = SHIM_WRITE_FAIL;
			else if (x < rates.write_fail + rates.write_torn) {
				f = SHIM_WRITE_TORN;
				*land = (uint32_t)(rnd() % (n + 1));
			}
			break;
		case SHIM_REQ_FLUSH:
			if (x < rates.flush_fail)
				f = SHIM_FLUSH_FAIL;
			break;
		case SHIM_REQ_READ:
			if (x < rates.read_fail)
				f = SHIM_READ_FAIL;
			break;
		}
	}
	if (f != SHIM_NONE)
		st.faults++;
	return f;
}

static int check_range(uint64_t sector, uint32_t n)
{
	if (n == 0 || n > BLK_MAX_SECTORS || sector >= disk_sectors || n > disk_sectors - sector) {
		st.bad_requests++;
		return -EINVAL;
	}
	return 0;
}

uint64_t blk_capacity(void)
{
	return disk_sectors;
}

int blk_read(uint64_t sector, void *buf, uint32_t nsectors)
{
	int r = check_range(sector, nsectors);
	if (r)
		return r;
	if (crashed)
		return -EIO;
	st.reads++;
	uint32_t land;
	enum shim_fault f = pick(SHIM_REQ_READ, nsectors, &land);
	if (f == SHIM_CRASH || f == SHIM_CRASH_TAIL)
		crash();
	if (f != SHIM_NONE) {
		add_note("[read %llu+%u fails] ", (unsigned long long)sector, nsectors);
		return -EIO;
	}
	memcpy(buf, disk + sector * BLK_SECTOR, (size_t)nsectors * BLK_SECTOR);
	return 0;
}

int blk_write(uint64_t sector, const void *buf, uint32_t nsectors)
{
	int r = check_range(sector, nsectors);
	if (r)
		return r;
	if (crashed)
		return -EIO;
	st.writes++;
	uint32_t land = nsectors;
	enum shim_fault f = pick(SHIM_REQ_WRITE, nsectors, &land);
	switch (f) {
	case SHIM_NONE:
		land = nsectors;
		break;
	case SHIM_WRITE_TORN:
		add_note("[write %llu+%u torn: %u landed] ", (unsigned long long)sector, nsectors, land);
		break;
	case SHIM_CRASH:
		add_note("[crash in write %llu+%u: %u landed] ", (unsigned long long)sector, nsectors, land);
		break;
	case SHIM_CRASH_TAIL:
		add_note("[crash in write %llu+%u: its last %u landed] ", (unsigned long long)sector,
			 nsectors, land);
		break;
	default:
		add_note("[write %llu+%u fails] ", (unsigned long long)sector, nsectors);
		land = 0;
		break;
	}
	uint32_t skip = f == SHIM_CRASH_TAIL ? nsectors - land : 0;
	for (uint32_t i = skip; cache_on && i < skip + land; i++) {
		uint64_t s = sector + i;
		if (!dirty[s]) {
			memcpy(preimage[ndirty], disk + s * BLK_SECTOR, BLK_SECTOR);
			dirty_sector[ndirty] = s;
			dirty[s] = ++ndirty;
		}
	}
	memcpy(disk + (sector + skip) * BLK_SECTOR, (const uint8_t *)buf + (size_t)skip * BLK_SECTOR,
	       (size_t)land * BLK_SECTOR);
	st.landed_sectors += land;
	if (f == SHIM_CRASH || f == SHIM_CRASH_TAIL)
		crash();
	r = f == SHIM_NONE ? 0 : -EIO;
	st.wlog[wlog_next] = (struct shim_write){ sector, nsectors, land, r };
	wlog_next = (wlog_next + 1) % SHIM_WRITE_LOG;
	return r;
}

int blk_flush(void)
{
	if (crashed)
		return -EIO;
	st.flushes++;
	uint32_t land;
	enum shim_fault f = pick(SHIM_REQ_FLUSH, 0, &land);
	if (f == SHIM_CRASH || f == SHIM_CRASH_TAIL) {
		add_note("[crash at flush] ");
		crash();
	} else if (f != SHIM_NONE) {
		add_note("[flush fails] ");
	} else {
		cache_clean(); /* durable now */
	}
	return f == SHIM_NONE ? 0 : -EIO;
}
