/*
 * vm_snapshot.c - the whole machine as one snapshot: machine description,
 * guest RAM, every vCPU, the in-kernel interrupt controllers and kvmclock,
 * and every device. Written with the snapshot container (state.h), which
 * checksums each section; loading verifies the entire file before a
 * single byte reaches the VM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "vmm/state/state.h"
#include "vmm/virtio/virtio.h"
#include "vmm/vm_internal.h"

/* What must match between the saved machine and the one restoring it. */
struct machine_desc {
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t tsc_khz;
	uint8_t has_blk, has_net;
	uint64_t disk_size;
	uint8_t mac[6];
	struct vm_cpu_model cpu;	/* v2 */
};

static const struct vmstate_field machine_fields[] = {
	VMSTATE_FIELD(struct machine_desc, mem_size),
	VMSTATE_FIELD(struct machine_desc, nr_vcpus),
	VMSTATE_FIELD(struct machine_desc, tsc_khz),
	VMSTATE_FIELD(struct machine_desc, has_blk),
	VMSTATE_FIELD(struct machine_desc, has_net),
	VMSTATE_FIELD(struct machine_desc, disk_size),
	VMSTATE_FIELD(struct machine_desc, mac),
	VMSTATE_FIELD_V(struct machine_desc, cpu, 2),
};
static const struct vmstate_desc machine_vmsd =
	VMSTATE_DESC("machine", struct machine_desc, 2, 1, machine_fields);

/* VM-wide KVM state: PIC, IOAPIC, kvmclock. */
struct platform_state {
	struct kvm_irqchip pic_master, pic_slave, ioapic;
	struct kvm_clock_data clock;
};

static const struct vmstate_field platform_fields[] = {
	VMSTATE_FIELD(struct platform_state, pic_master),
	VMSTATE_FIELD(struct platform_state, pic_slave),
	VMSTATE_FIELD(struct platform_state, ioapic),
	VMSTATE_FIELD(struct platform_state, clock),
};
static const struct vmstate_desc platform_vmsd =
	VMSTATE_DESC("platform", struct platform_state, 1, 1, platform_fields);

#define SECTION_PLATFORM (SNAP_SECTION_USER + 0)
#define SECTION_CLOCK (SNAP_SECTION_USER + 1)

/* The clock record: guest time and the host time it was read at. */
static const struct vmstate_field clock_fields[] = {
	VMSTATE_FIELD(struct vm_clock, realtime_ns),
	VMSTATE_FIELD(struct vm_clock, kvmclock_ns),
	VMSTATE_FIELD(struct vm_clock, tsc_khz),
	VMSTATE_FIELD(struct vm_clock, nr_vcpus),
	VMSTATE_FIELD(struct vm_clock, tsc),
};
static const struct vmstate_desc clock_vmsd =
	VMSTATE_DESC("clock", struct vm_clock, 1, 1, clock_fields);

static void machine__describe(struct vm *vm, struct machine_desc *d)
{
	memset(d, 0, sizeof(*d));
	d->mem_size = vm->cfg.mem_size;
	d->nr_vcpus = vm->nr_vcpus;
	d->tsc_khz = vm->tsc_khz;
	d->has_blk = vm->blk != NULL;
	d->has_net = vm->net != NULL;
	d->disk_size = vm->cfg.disk ? vm->cfg.disk->size : 0;
	if (vm->net)
		memcpy(d->mac, vm->cfg.mac, 6);
	d->cpu = vm->cpu_model;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	uint64_t acc = 0;
	for (unsigned i = 0; i < VMM_PAGE_SIZE / 8; i++)
		acc |= w[i];
	return acc == 0;
}

/*
 * RAM section: u64 page count, a bitmap of pages that are not all zero,
 * then those pages in order. Zero pages cost one bit: a fresh guest's
 * snapshot is small and restores fast.
 */
static int ram__save(struct vm *vm, struct snap_writer *w)
{
	struct guest_mem *m = &vm->mem;
	uint64_t words = (m->nr_pages + 63) / 64;
	uint64_t *bitmap = calloc(words, 8);
	struct iovec *iov = NULL;
	size_t niov = 0, cap = 0;
	int ret = -ENOMEM;

	if (!bitmap)
		return -ENOMEM;
	cap = 64;
	iov = malloc(cap * sizeof(*iov));
	if (!iov)
		goto out;
	iov[niov++] = (struct iovec){ &m->nr_pages, 8 };
	iov[niov++] = (struct iovec){ bitmap, words * 8 };
	for (unsigned s = 0; s < m->nr_slots; s++) {
		const struct mem_slot *sl = &m->slots[s];
		for (uint64_t p = 0; p < sl->size / VMM_PAGE_SIZE; p++) {
			uint8_t *page = sl->host + p * VMM_PAGE_SIZE;
			if (page_is_zero(page))
				continue;
			uint64_t flat = sl->first_page + p;
			bitmap[flat / 64] |= 1ull << (flat % 64);
			struct iovec *last = &iov[niov - 1];
			if ((uint8_t *)last->iov_base + last->iov_len == page) {
				last->iov_len += VMM_PAGE_SIZE;	/* extend a run */
				continue;
			}
			if (niov == cap) {
				struct iovec *n = realloc(iov, 2 * cap * sizeof(*iov));
				if (!n)
					goto out;
				iov = n;
				cap *= 2;
			}
			iov[niov++] = (struct iovec){ page, VMM_PAGE_SIZE };
		}
	}
	ret = snapw__sectionv(w, SNAP_SECTION_RAM, "ram", iov, (int)niov);
out:
	free(iov);
	free(bitmap);
	return ret;
}

static int ram__load(struct vm *vm, const uint8_t *data, size_t len, char *err)
{
	struct guest_mem *m = &vm->mem;
	uint64_t nr_pages, words = (m->nr_pages + 63) / 64;
	const uint64_t *bitmap;
	size_t off;

	if (len < 8 || (memcpy(&nr_pages, data, 8), nr_pages != m->nr_pages) ||
	    len < 8 + words * 8) {
		snprintf(err, VMM_ERR_LEN, "snapshot RAM section does not match this VM's memory");
		return -EBADMSG;
	}
	bitmap = (const uint64_t *)(const void *)(data + 8);
	uint64_t present = 0;
	for (uint64_t i = 0; i < words; i++)
		present += (uint64_t)__builtin_popcountll(bitmap[i]);
	if (len != 8 + words * 8 + present * VMM_PAGE_SIZE) {
		snprintf(err, VMM_ERR_LEN, "snapshot RAM section has %zu bytes, %llu pages expected",
			 len, (unsigned long long)present);
		return -EBADMSG;
	}
	off = 8 + words * 8;
	for (uint64_t p = 0; p < m->nr_pages; p++) {
		uint8_t *dst = mem__ptr(m, vm__page_gpa(vm, p), VMM_PAGE_SIZE);
		if (bitmap[p / 64] & (1ull << (p % 64))) {
			memcpy(dst, data + off, VMM_PAGE_SIZE);
			off += VMM_PAGE_SIZE;
		} else {
			memset(dst, 0, VMM_PAGE_SIZE);
		}
	}
	return 0;
}

static int platform__save(struct vm *vm, struct sbuf *out, uint64_t *kvmclock, char *err)
{
	struct platform_state *p = calloc(1, sizeof(*p));
	int ret = 0;

	if (!p)
		return -ENOMEM;
	p->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	p->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	p->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &p->pic_master) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &p->pic_slave) < 0 ||
	    ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &p->ioapic) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "KVM_GET_IRQCHIP: %s", strerror(errno));
	} else if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &p->clock) < 0) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "KVM_GET_CLOCK: %s", strerror(errno));
	} else {
		*kvmclock = p->clock.clock;
		ret = vmstate__save(&platform_vmsd, p, out);
	}
	free(p);
	return ret;
}

static int platform__load(struct vm *vm, const void *data, size_t len, bool check_only, char *err)
{
	struct platform_state *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	ret = vmstate__load(&platform_vmsd, p, data, len, err, VMM_ERR_LEN);
	if (!ret && (p->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
		     p->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
		     p->ioapic.chip_id != KVM_IRQCHIP_IOAPIC)) {
		snprintf(err, VMM_ERR_LEN, "snapshot platform state names the wrong irqchips");
		ret = -EBADMSG;
	}
	if (check_only) {
		free(p);
		return ret;
	}
	if (!ret && (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &p->pic_master) < 0 ||
		     ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &p->pic_slave) < 0 ||
		     ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &p->ioapic) < 0)) {
		ret = -errno;
		snprintf(err, VMM_ERR_LEN, "KVM_SET_IRQCHIP: %s", strerror(errno));
	}
	if (!ret) {
		/* Continue guest time from the saved value (the clock issue
		 * adds the catch-up policy). Only the value is meaningful. */
		struct kvm_clock_data c = { .clock = p->clock.clock };
		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0) {
			ret = -errno;
			snprintf(err, VMM_ERR_LEN, "KVM_SET_CLOCK: %s", strerror(errno));
		}
	}
	free(p);
	return ret;
}

static int section__put(struct snap_writer *w, uint32_t type, const char *name,
			struct sbuf *sb)
{
	int ret = snapw__section(w, type, name, sb->data, sb->len);
	sbuf__reset(sb);
	return ret;
}

/* Every section but RAM. */
static int state__write(struct vm *vm, struct snap_writer *w, char *err)
{
	struct machine_desc md;
	struct sbuf sb;
	char name[SNAP_NAME_LEN];
	int ret;

	sbuf__init(&sb);
	machine__describe(vm, &md);
	ret = vmstate__save(&machine_vmsd, &md, &sb);
	if (!ret)
		ret = section__put(w, SNAP_SECTION_META, "machine", &sb);
	/*
	 * The clock record is assembled from what the vCPU and platform state
	 * already read (TSC MSRs, KVM_GET_CLOCK): no second round of ioctls
	 * while the guest is paused for a checkpoint.
	 */
	struct vm_clock ck = { .tsc_khz = vm->tsc_khz, .nr_vcpus = vm->nr_vcpus };
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	ck.realtime_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
	for (unsigned i = 0; !ret && i < vm->nr_vcpus; i++) {
		ret = cpu_state__save(&vm->vcpus[i], &sb, &ck.tsc[i], err);
		snprintf(name, sizeof(name), "cpu%u", i);
		if (!ret)
			ret = section__put(w, SNAP_SECTION_CPU, name, &sb);
	}
	if (!ret)
		ret = platform__save(vm, &sb, &ck.kvmclock_ns, err);
	if (!ret)
		ret = section__put(w, SECTION_PLATFORM, "platform", &sb);
	if (!ret)
		ret = vmstate__save(&clock_vmsd, &ck, &sb);
	if (!ret)
		ret = section__put(w, SECTION_CLOCK, "clock", &sb);
	if (!ret)
		ret = serial__save(vm->serial, &sb);
	if (!ret)
		ret = section__put(w, SNAP_SECTION_DEVICE, "serial", &sb);
	if (!ret && vm->blk) {
		ret = virtio_mmio__save(vm->blk, &sb);
		if (!ret)
			ret = section__put(w, SNAP_SECTION_DEVICE, "virtio-blk", &sb);
	}
	if (!ret && vm->net) {
		ret = virtio_mmio__save(vm->net, &sb);
		if (!ret)
			ret = section__put(w, SNAP_SECTION_DEVICE, "virtio-net", &sb);
	}
	sbuf__free(&sb);
	return ret;
}

int vm_snapshot__save(struct vm *vm, int fd, uint64_t *bytes, char *err)
{
	struct snap_writer w;
	int ret;

	ret = snapw__open(&w, fd);
	if (ret) {
		snprintf(err, VMM_ERR_LEN, "cannot start snapshot: %s", strerror(-ret));
		return ret;
	}
	ret = state__write(vm, &w, err);
	if (!ret)
		ret = ram__save(vm, &w);
	uint64_t total = w.offset;
	int cret = snapw__close(&w);
	if (!ret)
		ret = cret;
	if (ret && !err[0])
		snprintf(err, VMM_ERR_LEN, "writing snapshot: %s", strerror(-ret));
	if (bytes)
		*bytes = total;
	return ret;
}

int vm_snapshot__save_state(struct vm *vm, struct sbuf *out, char *err)
{
	struct snap_writer w;
	int ret = snapw__open_buffer(&w, out);
	if (ret)
		return ret;
	ret = state__write(vm, &w, err);
	int cret = snapw__close(&w);
	return ret ? ret : cret;
}

static int need(const struct snap_reader *r, uint32_t type, const char *name,
		const void **data, size_t *len, char *err)
{
	if (snapr__find(r, type, name, data, len) == 0)
		return 0;
	snprintf(err, VMM_ERR_LEN, "snapshot has no '%s' section", name);
	return -EBADMSG;
}

static int machine__check(struct vm *vm, const struct machine_desc *s, char *err)
{
	struct machine_desc me;
	machine__describe(vm, &me);
	if (s->mem_size != me.mem_size)
		snprintf(err, VMM_ERR_LEN, "snapshot has %llu MiB of memory, this VM --memory %lluM",
			 (unsigned long long)(s->mem_size >> 20),
			 (unsigned long long)(me.mem_size >> 20));
	else if (s->nr_vcpus != me.nr_vcpus)
		snprintf(err, VMM_ERR_LEN, "snapshot has %u vCPUs, this VM --smp %u", s->nr_vcpus,
			 me.nr_vcpus);
	else if (s->has_blk != me.has_blk)
		snprintf(err, VMM_ERR_LEN, "snapshot %s a --drive, this VM %s", s->has_blk ? "has" : "has no",
			 me.has_blk ? "has one" : "has none");
	else if (s->has_net != me.has_net)
		snprintf(err, VMM_ERR_LEN, "snapshot %s a --netdev, this VM %s", s->has_net ? "has" : "has no",
			 me.has_net ? "has one" : "has none");
	else if (s->disk_size != me.disk_size)
		snprintf(err, VMM_ERR_LEN, "snapshot's disk has %llu bytes, this --drive %llu",
			 (unsigned long long)s->disk_size, (unsigned long long)me.disk_size);
	else if (s->tsc_khz != me.tsc_khz)
		snprintf(err, VMM_ERR_LEN,
			 "snapshot was taken at a TSC rate of %u kHz, this host runs at %u kHz",
			 s->tsc_khz, me.tsc_khz);
	else if (vm_cpu_model__check(&me.cpu, "this host", &s->cpu, "snapshot", err,
				     VMM_ERR_LEN) == 0)
		return 0;
	return -EINVAL;
}

/* Every section but RAM; with check_only, decodes and checks only. */
static int state__apply(struct vm *vm, const struct snap_reader *r, bool check_only, char *err)
{
	struct machine_desc md = { 0 };
	const void *data;
	size_t len;
	char name[SNAP_NAME_LEN];
	int ret;

	ret = need(r, SNAP_SECTION_META, "machine", &data, &len, err);
	if (!ret)
		ret = vmstate__load(&machine_vmsd, &md, data, len, err, VMM_ERR_LEN);
	if (!ret && vm->net)
		memcpy(md.mac, vm->cfg.mac, 6);	/* the MAC may be given anew */
	if (!ret)
		ret = machine__check(vm, &md, err);
	if (!ret)
		ret = need(r, SECTION_PLATFORM, "platform", &data, &len, err);
	if (!ret)
		ret = platform__load(vm, data, len, check_only, err);
	for (unsigned i = 0; !ret && i < vm->nr_vcpus; i++) {
		snprintf(name, sizeof(name), "cpu%u", i);
		ret = need(r, SNAP_SECTION_CPU, name, &data, &len, err);
		if (!ret)
			ret = cpu_state__load(&vm->vcpus[i], data, len, check_only, err);
	}
	if (!ret)
		ret = need(r, SNAP_SECTION_DEVICE, "serial", &data, &len, err);
	if (!ret)
		ret = serial__load(vm->serial, data, len, check_only, err);
	if (!ret && vm->blk) {
		ret = need(r, SNAP_SECTION_DEVICE, "virtio-blk", &data, &len, err);
		if (!ret)
			ret = virtio_mmio__load(vm->blk, data, len, check_only, err);
	}
	if (!ret && vm->net) {
		ret = need(r, SNAP_SECTION_DEVICE, "virtio-net", &data, &len, err);
		if (!ret)
			ret = virtio_mmio__load(vm->net, data, len, check_only, err);
	}
	return ret;
}

int vm_snapshot__load(struct vm *vm, const char *path, char *err)
{
	struct snap_reader r;
	const void *data;
	size_t len;
	int ret;

	/* Verifies every checksum, the version and the END trailer first,
	 * then decodes all state before any of it is applied. */
	ret = snapr__open_file(&r, path, err, VMM_ERR_LEN);
	if (ret)
		return ret;
	ret = state__apply(vm, &r, true, err);
	if (!ret)
		ret = need(&r, SNAP_SECTION_RAM, "ram", &data, &len, err);
	if (!ret)
		ret = ram__load(vm, data, len, err);
	if (!ret)
		ret = state__apply(vm, &r, false, err);
	snapr__close(&r);
	return ret;
}

int vm_snapshot__load_state(struct vm *vm, const void *blob, size_t len, bool check_only, char *err)
{
	struct snap_reader r;
	int ret = snapr__open_buffer(&r, blob, len, err, VMM_ERR_LEN);
	if (ret)
		return ret;
	ret = state__apply(vm, &r, true, err);
	if (!ret && !check_only)
		ret = state__apply(vm, &r, false, err);
	snapr__close(&r);
	return ret;
}

static int clock__from_reader(const struct snap_reader *r, struct vm_clock *c, char *err)
{
	const void *data;
	size_t len;
	int ret = need(r, SECTION_CLOCK, "clock", &data, &len, err);
	if (!ret)
		ret = vmstate__load(&clock_vmsd, c, data, len, err, VMM_ERR_LEN);
	if (!ret && (c->nr_vcpus == 0 || c->nr_vcpus > VMM_MAX_VCPUS)) {
		snprintf(err, VMM_ERR_LEN, "clock record names %u vCPUs", c->nr_vcpus);
		ret = -EBADMSG;
	}
	return ret;
}

int vm__state_clock(const void *blob, size_t len, struct vm_clock *c, char *err)
{
	struct snap_reader r;
	memset(c, 0, sizeof(*c));
	int ret = snapr__open_buffer(&r, blob, len, err, VMM_ERR_LEN);
	if (ret)
		return ret;
	ret = clock__from_reader(&r, c, err);
	snapr__close(&r);
	return ret;
}

int vm__snapshot_clock(const char *path, struct vm_clock *c, char *err)
{
	struct snap_reader r;
	memset(c, 0, sizeof(*c));
	int ret = snapr__open_file(&r, path, err, VMM_ERR_LEN);
	if (ret)
		return ret;
	ret = clock__from_reader(&r, c, err);
	snapr__close(&r);
	return ret;
}
