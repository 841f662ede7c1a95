/*
 * fuzz/guest_host/host_guest.c - what the guest's network and kv code gets
 * from the rest of the guest, for the host build of fuzz_guest_net:
 * virtio-net and virtio-blk (over the harness's frames and in-memory disk,
 * fuzz/guest_host/host.h), the heap (a malloc'd arena), time (a
 * deterministic TSC at 2.6 GHz), the console (dropped), the stop paths
 * (abort: the harness never makes the guest stop) and cpu_slots; and the
 * reset of every guest variable before a boot (guest_state.h). Compiled
 * with the guest's include path (fuzz/guest_host first), but not with
 * guest_state.h: its own state outlives a boot.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/guest_host/host.h"

/* <>, not "": from this directory "lib/x86.h" would be found next to this
 * file, and its #include_next could not reach the guest's header. */
#include <boot/percpu.h>
#include <lib/errno.h>
#include <lib/heap.h>
#include <lib/printf.h>
#include <lib/serial.h>
#include <lib/sys.h>
#include <lib/time.h>
#include <lib/x86.h>
#include <virtio/blk.h>
#include <virtio/net.h>
#include <workload/kvstore.h>

void host_guest_reset(void);

struct cpu_slot cpu_slots[MAX_CPUS];

/* --- the guest's variables: back to the ELF's before each boot --- */

/* The linker's bounds of the sections guest_state.h puts them in (weak:
 * a section nothing went into has none). */
extern char __start_ftvm_guest_data[] __attribute__((weak));
extern char __stop_ftvm_guest_data[] __attribute__((weak));
extern char __start_ftvm_guest_bss[] __attribute__((weak));
extern char __stop_ftvm_guest_bss[] __attribute__((weak));

/* ASan's redzones lie between the variables, so memcpy()/memset() (which
 * ASan intercepts and checks) cannot be used over a whole section: .data
 * (small) is copied with plain stores that are not instrumented, .bss
 * (megabytes: lwIP's heap and pools, the RESP buffers) zeroed by the C
 * library's own memset, found past ASan's interceptor. Neither touches
 * the shadow, so the redzones stay poisoned. */
__attribute__((no_sanitize("address", "undefined"))) static void raw_copy(char *dst, const char *src,
									   size_t n)
{
	for (size_t i = 0; i < n; i++)
		((volatile char *)dst)[i] = src[i];
}

static void raw_zero(char *dst, size_t n)
{
	static void *(*libc_memset)(void *, int, size_t);

	if (!libc_memset && !(libc_memset = (void *(*)(void *, int, size_t))dlsym(RTLD_NEXT, "memset"))) {
		fprintf(stderr, "fuzz_guest_net: no memset in the C library: %s\n", dlerror());
		abort();
	}
	libc_memset(dst, 0, n);
}

static void guest_state_reset(void)
{
	static char *data0; /* .data as loaded, taken before the first boot */
	size_t nd = (size_t)(__stop_ftvm_guest_data - __start_ftvm_guest_data);

	if (!__start_ftvm_guest_bss) {
		fprintf(stderr, "fuzz_guest_net: no guest state sections (guest_state.h not included?)\n");
		abort();
	}
	if (!data0 && nd) {
		if (!(data0 = malloc(nd)))
			abort();
		raw_copy(data0, __start_ftvm_guest_data, nd);
	}
	if (nd)
		raw_copy(__start_ftvm_guest_data, data0, nd);
	raw_zero(__start_ftvm_guest_bss, (size_t)(__stop_ftvm_guest_bss - __start_ftvm_guest_bss));
}

/* --- time: the TSC advances 1 us per read, from a realistic value --- */

#define TSC_KHZ  2600000u
#define TSC_BOOT 1000000000000ull /* ~6 minutes after power-on */

static uint64_t tsc_now, tsc_boot;

uint64_t host_guest_rdtsc(void)
{
	tsc_now += TSC_KHZ / 1000;
	return tsc_now;
}

uint64_t host_clock_tsc(void)
{
	return tsc_now;
}

void host_clock_advance_ms(uint32_t ms)
{
	tsc_now += (uint64_t)ms * TSC_KHZ;
}

uint64_t host_clock_ns(uint64_t tsc)
{
	return tsc_to_ns(tsc - tsc_boot);
}

void host_guest_no_port_io(uint16_t port)
{
	fprintf(stderr, "fuzz_guest_net: the guest did port I/O (0x%x) on the host\n", port);
	abort();
}

void time_init(unsigned cpu)
{
	(void)cpu;
}

void time_require(const char *workload)
{
	(void)workload;
}

uint32_t tsc_khz(void)
{
	return TSC_KHZ;
}

const char *tsc_khz_source(void)
{
	return "fuzz";
}

bool time_ring3_cpuid_native(void)
{
	return false;
}

uint64_t tsc_at_boot(void)
{
	return tsc_boot;
}

/* Same arithmetic as guest/lib/time.c. */
uint64_t tsc_to_ns(uint64_t ticks)
{
	return ticks / TSC_KHZ * 1000000ull + ticks % TSC_KHZ * 1000000ull / TSC_KHZ;
}

uint64_t tsc_to_us(uint64_t ticks)
{
	return ticks / TSC_KHZ * 1000ull + ticks % TSC_KHZ * 1000ull / TSC_KHZ;
}

uint64_t us_to_tsc(uint64_t us)
{
	return us / 1000 * TSC_KHZ + us % 1000 * TSC_KHZ / 1000;
}

uint64_t guest_ns(void)
{
	return tsc_to_ns(rdtsc() - tsc_boot);
}

/* --- heap: the smallest kv table kvs_init takes (KVS_MIN_BYTES: 1024
 * entries and 64 KiB for keys and values), in whole pages. workload_kv
 * hands kvs_init all of it, and the table's data area runs to the end of
 * the arena, an allocation of exactly this size: ASan sees past its end --- */

#define ARENA_BYTES ((KVS_MIN_BYTES + 4095u) & ~(size_t)4095u) /* 22 pages */
_Static_assert(ARENA_BYTES < 2 * KVS_MIN_BYTES, "kvs_init lays out 1024 entries, no more");

static uint8_t *arena;
static size_t arena_used;

void heap_init(void)
{
	if (!arena && !(arena = aligned_alloc(4096, ARENA_BYTES)))
		abort();
	/* Not zeroed in the guest either (heap.h); a fixed pattern keeps runs
	 * reproducible. */
	memset(arena, 0xa5, ARENA_BYTES);
	arena_used = 0;
}

size_t heap_available(size_t align)
{
	size_t p = (arena_used + align - 1) & ~(align - 1);
	return p < ARENA_BYTES ? ARENA_BYTES - p : 0;
}

void *heap_alloc(size_t size, size_t align)
{
	size_t p = (arena_used + align - 1) & ~(align - 1);

	if (p > ARENA_BYTES || ARENA_BYTES - p < size)
		return NULL;
	arena_used = p + size;
	return arena + p;
}

uintptr_t heap_top(void)
{
	return (uintptr_t)(arena + arena_used);
}

/* --- console and stop paths --- */

void serial_write(const char *s, size_t n)
{
	static int verbose = -1;

	if (verbose < 0)
		verbose = getenv("FUZZ_GUEST_NET_VERBOSE") != NULL;
	if (verbose)
		fwrite(s, 1, n, stderr);
}

void serial_putc(char c)
{
	serial_write(&c, 1);
}

void guest_exit(uint32_t code)
{
	fprintf(stderr, "fuzz_guest_net: the guest stopped (exit %u)\n", code);
	abort();
}

void guest_fatal(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "fuzz_guest_net: ftvm-guest: error: %s\n", buf);
	abort();
}

void guest_testsync(uint32_t v)
{
	(void)v;
}

/* --- virtio-net: the harness's frames in, every frame sent to it --- */

static int have_net, have_blk;
static uint64_t blk_cap;

int vnet_init(void)
{
	have_net = 1;
	return 0;
}

int vnet_slot(void)
{
	return have_net ? 22 : -1;
}

const uint8_t *vnet_mac(void)
{
	return host_mac;
}

int vnet_link_up(void)
{
	return 1;
}

int vnet_send(const void *frame, size_t len)
{
	host_tx(frame, len);
	if (!have_net)
		return -ENODEV;
	if (len > NET_MTU_FRAME)
		return -EINVAL;
	return 0;
}

/* As guest/virtio/net.c: at most budget frames, each handed to fn. */
int vnet_poll(vnet_rx_fn fn, int budget)
{
	const uint8_t *f;
	size_t len;
	int n = 0;

	if (!have_net)
		return 0;
	while (n < budget && host_rx_next(&f, &len)) {
		n++;
		fn(f, len);
		host_rx_done();
	}
	host_rx_batch_end();
	return n;
}

/* --- virtio-blk: the harness's disk, behind the driver's range check --- */

int blk_init(void)
{
	have_blk = 1;
	blk_cap = host_disk_sectors();
	return 0;
}

int blk_slot(void)
{
	return have_blk ? 23 : -1;
}

uint64_t blk_capacity(void)
{
	return blk_cap;
}

static int check_range(uint64_t sector, uint32_t n)
{
	if (n == 0 || n > BLK_MAX_SECTORS || sector >= blk_cap || n > blk_cap - sector)
		return -EINVAL;
	return 0;
}

int blk_read(uint64_t sector, void *buf, uint32_t nsectors)
{
	int r = check_range(sector, nsectors);

	return r ? r : host_disk_read(sector, buf, nsectors);
}

int blk_write(uint64_t sector, const void *buf, uint32_t nsectors)
{
	int r = check_range(sector, nsectors);

	return r ? r : host_disk_write(sector, buf, nsectors);
}

int blk_flush(void)
{
	return have_blk ? host_disk_flush() : -ENODEV;
}

int blk_get_id(char buf[21])
{
	memcpy(buf, "fuzz_guest_net", 15);
	return 0;
}

void host_guest_reset(void)
{
	guest_state_reset();
	memset(cpu_slots, 0, sizeof(cpu_slots));
	tsc_now = tsc_boot = TSC_BOOT;
	have_net = have_blk = 0;
	blk_cap = 0;
}
