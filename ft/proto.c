/*
 * proto.c - what both sides of the checkpoint protocol share: the HELLO
 * that pairs a primary with a secondary, statistics.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>

#include "clock/clock.h"
#include "ft/ft_internal.h"

static const struct vmstate_field hello_fields[] = {
	VMSTATE_FIELD(struct ft_hello, ft_version),
	VMSTATE_FIELD(struct ft_hello, mem_size),
	VMSTATE_FIELD(struct ft_hello, nr_vcpus),
	VMSTATE_FIELD(struct ft_hello, tsc_khz),
	VMSTATE_FIELD(struct ft_hello, has_blk),
	VMSTATE_FIELD(struct ft_hello, has_net),
	VMSTATE_FIELD(struct ft_hello, drive_mode),
	VMSTATE_FIELD(struct ft_hello, disk_size),
	VMSTATE_FIELD(struct ft_hello, page_size),
	VMSTATE_FIELD(struct ft_hello, name),
	VMSTATE_FIELD_V(struct ft_hello, session, 2),
	VMSTATE_FIELD_V(struct ft_hello, cpu_vendor, 3),
	VMSTATE_FIELD_V(struct ft_hello, cpu_word, 3),
};
static const struct vmstate_desc hello_desc =
	VMSTATE_DESC("hello", struct ft_hello, 3, 1, hello_fields);

int ft_hello__encode(const struct ft_hello *h, struct sbuf *out)
{
	return vmstate__save(&hello_desc, h, out);
}

int ft_hello__decode(const void *p, size_t len, struct ft_hello *h, char *err, size_t errlen)
{
	memset(h, 0, sizeof(*h));
	int ret = vmstate__load(&hello_desc, h, p, len, err, errlen);
	h->name[sizeof(h->name) - 1] = '\0';
	return ret;
}

void ft_hello__describe(struct ft *ft, struct ft_hello *h)
{
	struct vm *vm = ft->cfg.vm;
	memset(h, 0, sizeof(*h));
	h->ft_version = FT_PROTO_VERSION;
	h->mem_size = vm__mem_size(vm);
	h->nr_vcpus = vm__nr_vcpus(vm);
	h->tsc_khz = ft->cfg.advertise_tsc_khz ? ft->cfg.advertise_tsc_khz : vm__tsc_khz(vm);
	h->has_blk = ft->cfg.disk != NULL;
	h->has_net = eventtap__net(ft->cfg.et) != NULL;
	h->drive_mode = (uint8_t)ft->cfg.drive_mode;
	h->disk_size = ft->cfg.disk ? ft->cfg.disk->size : 0;
	h->page_size = FT_PAGE;
	snprintf(h->name, sizeof(h->name), "%s", vm__name(vm));
	h->session = ft->session;
	struct vm_cpu_model cpu;
	vm__cpu_model(vm, &cpu);
	memcpy(h->cpu_vendor, cpu.vendor, sizeof(h->cpu_vendor));
	memcpy(h->cpu_word, cpu.word, sizeof(h->cpu_word));
}

static void hello_cpu(const struct ft_hello *h, struct vm_cpu_model *m)
{
	memcpy(m->vendor, h->cpu_vendor, sizeof(m->vendor));
	memcpy(m->word, h->cpu_word, sizeof(m->word));
}

static const char *mode_name(uint8_t m)
{
	return m == VM_DRIVE_REPLICATED ? "replicated" : "shared";
}

int ft_hello__check(const struct ft_hello *me, const struct ft_hello *p, char *err, size_t errlen)
{
	if (p->ft_version != me->ft_version)
		snprintf(err, errlen,
			 "peer speaks ftvm checkpoint protocol version %u, this ftvm speaks %u",
			 p->ft_version, me->ft_version);
	else if (p->page_size != me->page_size)
		snprintf(err, errlen, "peer uses %u-byte pages, this host %u", p->page_size,
			 me->page_size);
	else if (p->mem_size != me->mem_size)
		snprintf(err, errlen, "memory size differs: primary %" PRIu64 " MiB, secondary %" PRIu64
			 " MiB", p->mem_size >> 20, me->mem_size >> 20);
	else if (p->nr_vcpus != me->nr_vcpus)
		snprintf(err, errlen, "vCPU count differs: primary %u, secondary %u", p->nr_vcpus,
			 me->nr_vcpus);
	else if (p->has_blk != me->has_blk || p->has_net != me->has_net)
		snprintf(err, errlen,
			 "device set differs: primary has%s%s, secondary has%s%s",
			 p->has_blk ? " virtio-blk" : "", p->has_net ? " virtio-net" : "",
			 me->has_blk ? " virtio-blk" : "", me->has_net ? " virtio-net" : "");
	else if (p->has_blk && p->disk_size != me->disk_size)
		snprintf(err, errlen, "disk size differs: primary %" PRIu64 " bytes, secondary %" PRIu64,
			 p->disk_size, me->disk_size);
	else if (p->has_blk && p->drive_mode != me->drive_mode)
		snprintf(err, errlen, "storage mode differs: primary %s, secondary %s",
			 mode_name(p->drive_mode), mode_name(me->drive_mode));
	else {
		struct vm_cpu_model mc, pc;
		hello_cpu(me, &mc);
		hello_cpu(p, &pc);
		if (vm_cpu_model__check(&mc, "secondary", &pc, "primary", err, errlen) < 0)
			return -EPROTO;
		return clock__check_rate(me->tsc_khz, p->tsc_khz, err, errlen);
	}
	return -EPROTO;
}

void ft_samples__add(struct ft_samples *s, uint64_t v)
{
	s->v[s->n++ % FT_STAT_RING] = v;
	s->last = v;
	if (v > s->max)
		s->max = v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t ft_samples__pct(const struct ft_samples *s, double p)
{
	size_t n = s->n < FT_STAT_RING ? (size_t)s->n : FT_STAT_RING;
	if (!n)
		return 0;
	uint64_t *tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		return 0;
	memcpy(tmp, s->v, n * sizeof(*tmp));
	qsort(tmp, n, sizeof(*tmp), cmp_u64);
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	uint64_t v = tmp[i < n ? i : n - 1];
	free(tmp);
	return v;
}

uint64_t ft__now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void ft__error(struct ft *ft, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&ft->lock);
	va_start(ap, fmt);
	vsnprintf(ft->last_error, sizeof(ft->last_error), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ftvm: ft: %s\n", ft->last_error);
	pthread_mutex_unlock(&ft->lock);
}

/*
 * RARP "reverse request" with the guest's MAC as sender and target: the
 * same announcement QEMU sends after migration. Bridges and switches learn
 * the MAC's new port; no IP address is needed.
 */
int ft_announce__rarp(struct eventtap *et, const uint8_t mac[6])
{
	uint8_t f[60] = { 0 };
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x80; f[13] = 0x35;		/* ETH_P_RARP */
	f[14] = 0; f[15] = 1;			/* hardware: Ethernet */
	f[16] = 0x08; f[17] = 0x00;		/* protocol: IPv4 */
	f[18] = 6; f[19] = 4;
	f[20] = 0; f[21] = 3;			/* reverse request */
	memcpy(f + 22, mac, 6);
	memcpy(f + 32, mac, 6);
	return eventtap__send_frame(et, f, sizeof(f));
}

static void *announce_thread(void *arg)
{
	struct ft *ft = arg;
	pthread_setname_np(pthread_self(), "ft-announce");
	for (unsigned gap = 50; gap <= 800 && !atomic_load(&ft->announce_stop); gap *= 2) {
		for (unsigned t = 0; t < gap && !atomic_load(&ft->announce_stop); t += 10) {
			struct timespec ts = { 0, 10 * 1000000 };
			nanosleep(&ts, NULL);
		}
		if (!atomic_load(&ft->announce_stop))
			ft_announce__rarp(ft->cfg.et, ft->cfg.mac);
	}
	return NULL;
}

void ft_announce__start(struct ft *ft)
{
	ft_announce__stop(ft);
	atomic_store(&ft->announce_stop, false);
	ft->announce_running = pthread_create(&ft->announce_thread, NULL, announce_thread, ft) == 0;
}

void ft_announce__stop(struct ft *ft)
{
	if (!ft->announce_running)
		return;
	atomic_store(&ft->announce_stop, true);
	pthread_join(ft->announce_thread, NULL);
	ft->announce_running = false;
}

