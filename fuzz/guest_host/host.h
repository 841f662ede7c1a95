/*
 * fuzz/guest_host/host.h - between fuzz_guest_net.c (the harness: plain
 * host C, no guest headers) and the guest compiled for the host (the
 * shims in this directory, built with the guest's include path).
 */
#ifndef FTVM_FUZZ_GUEST_HOST_H
#define FTVM_FUZZ_GUEST_HOST_H

#include <stddef.h>
#include <stdint.h>

/* The guest's address and services, as the shim's command line gives them. */
#define HOST_GUEST_IP        0x0a000002u /* 10.0.0.2 */
#define HOST_GUEST_PREFIX    24
#define HOST_GUEST_CMDLINE   "workload=kv ip=10.0.0.2/24"
#define HOST_GUEST_PORT      7777        /* the kv default (no port= given) */
#define HOST_GUEST_RESP_PORT 6379        /* RESP on TCP (no resp_port= given) */

/* --- the harness, called by the shim --- */

/* The MAC the virtio-net shim reports from its config space. */
extern const uint8_t host_mac[6];
/* The next frame the NIC received, valid until host_rx_done(); 0 when the
 * NIC has nothing now: the input has no frame left, or the input made time
 * pass (then the guest's next poll goes on with it). */
int host_rx_next(const uint8_t **frame, size_t *len);
/* The guest handled that frame (lwIP's ethernet_input returned). */
void host_rx_done(void);
/* The driver's poll returns (its budget used up or nothing now): lwIP's
 * timers run next. */
void host_rx_batch_end(void);
/* Non-zero while the NIC will have something for the guest (the input is
 * not done): guest_idle() returns at once then, as on an interrupt. */
int host_rx_pending(void);
/* Every frame the guest hands its virtio-net driver, before the driver's
 * own length check. */
void host_tx(const uint8_t *frame, size_t len);
/* The virtio-blk disk: capacity, and requests the driver's range check
 * let through (0 or -EIO; flush: 0 or -EIO). */
uint64_t host_disk_sectors(void);
int host_disk_read(uint64_t sector, void *buf, uint32_t nsectors);
int host_disk_write(uint64_t sector, const void *buf, uint32_t nsectors);
int host_disk_flush(void);

/* --- the shim, called by the harness --- */

/* Boots workload=kv as guest/main.c would (command line, heap, then
 * workload_kv(): the log replayed from the disk, virtio-net and lwIP up,
 * the kv service bound, RESP listening) and serves until the input is
 * done, i.e. until the guest would idle with nothing to come. Every
 * guest-side variable is reset first (guest_state.h), so each call starts
 * from a fresh boot. */
void host_kv_run(void);
/* The ops of a log record (guest/workload/kvlog.h's enum kvlog_op). */
#define HOST_KV_PUT      1 /* key = value */
#define HOST_KV_DEL      2 /* key gone (no value) */
#define HOST_KV_FLUSHALL 3 /* every key gone (no key, no value) */
/* The guest's own log replay (kvlog_replay) over the disk as it is now:
 * apply sees every record in order. The number of records, -EIO, or
 * -EPROTO (the disk holds a KVR1 log). */
long host_kv_replay(void (*apply)(int op, const char *key, size_t klen, const char *val,
				  size_t vlen));
/* One PUT record appended to the log as the guest's next write would be
 * (kvlog_append): NULL once it is durable, else the error word. */
const char *host_kv_probe(const char *key, size_t klen, const char *val, size_t vlen);
/* The kv table as kvs_init laid it out at boot: its entries and the bytes
 * for keys and values (kvstore.c's data area). Valid after boot, before
 * the first put. */
void host_kv_table(uint64_t *entries, uint64_t *data_bytes);
/* The guest's clock: a deterministic TSC (it moves 1 us per read, and on
 * when the harness lets time pass); ns since boot of a TSC value, as the
 * guest's tsc_to_ns(tsc - tsc_at_boot()) gives it. */
uint64_t host_clock_tsc(void);
void host_clock_advance_ms(uint32_t ms);
uint64_t host_clock_ns(uint64_t tsc);

/* The guest NIC's MAC (the shim's virtio-net: host_guest.c). */
const uint8_t *vnet_mac(void);

#endif
