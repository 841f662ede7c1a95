/*
 * seeds_snapshot.c - seeds for fuzz_snapshot, written by the real writer
 * (vmm/state/snapshot.c) and the real devices: snapshots holding serial,
 * virtio-blk and virtio-net sections as savevm writes them, plus others;
 * and whole VM states (machine, cpu0, platform, clock and the devices) as
 * vm_snapshot.c writes them for a checkpoint, over fuzz/fake_kvm.c: one
 * as at boot, one with vCPU, irqchip and TSC state set.
 *   usage: seeds_snapshot DIR
 */
#include <stdio.h>
#include <string.h>

#include <linux/kvm.h>

#include "fuzz/fake_vm.h"
#include "fuzz/snapshot_frame.h"
#include "vmm/virtio/virtio.h"

/* A fresh VM with virtio-blk (on a disk of no I/O) and virtio-net, as at boot. */
static struct vm *fresh_vm(struct virtio_mmio **blk, struct virtio_mmio **net)
{
	static const struct disk_ops none;
	static struct disk d = { .ops = &none, .size = 1 << 20 };
	static struct net nic;
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	char err[VMM_ERR_LEN];
	uint8_t *ram;
	struct vm *vm = fake_vm(&ram);
	if (virtio_blk__create(vm, 0, &d, blk, err) || virtio_net__create(vm, 1, &nic, mac, net, err))
		return NULL;
	vm->cfg.disk = &d;
	return vm;
}

static int put(const char *dir, const char *name, int extra)
{
	struct sbuf out, dev;
	struct snap_writer w;
	char path[4096];
	sbuf__init(&out);
	sbuf__init(&dev);
	struct serial *s = serial__create(-1);
	if (!s || serial__save(s, &dev) || snapw__open_buffer(&w, &out))
		return 1;
	if (extra)
		snapw__section(&w, SNAP_SECTION_META, "meta", "ftvm seed", 9);
	snapw__section(&w, SNAP_SECTION_DEVICE, "serial", dev.data, dev.len);
	if (extra > 1) {
		snapw__section(&w, SNAP_SECTION_DEVICE, "other", "\x01\x02\x03\x04", 4);
		/* The virtio devices' state, fresh (as at boot). */
		struct virtio_mmio *blk, *net;
		struct sbuf b, nb;
		sbuf__init(&b);
		sbuf__init(&nb);
		if (!fresh_vm(&blk, &net) || virtio_mmio__save(blk, &b) || virtio_mmio__save(net, &nb))
			return 1;
		snapw__section(&w, SNAP_SECTION_DEVICE, "virtio-blk", b.data, b.len);
		snapw__section(&w, SNAP_SECTION_DEVICE, "virtio-net", nb.data, nb.len);
		sbuf__free(&b);
		sbuf__free(&nb);
	}
	if (snapw__close(&w))
		return 1;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(out.data, 1, out.len, f) != out.len || fclose(f))
		return 1;
	serial__destroy(s);
	sbuf__free(&out);
	sbuf__free(&dev);
	return 0;
}

/* A whole state; busy: with KVM state that is not all zeroes. */
static int put_state(const char *dir, const char *name, bool busy)
{
	struct virtio_mmio *blk, *net;
	struct vm *vm = fresh_vm(&blk, &net);
	struct serial *s = serial__create(-1);
	char err[VMM_ERR_LEN], path[4096];
	struct sbuf out;
	sbuf__init(&out);
	if (!vm || !s)
		return 1;
	fake_vm_machine(vm, s, blk, net, vm->cfg.disk);
	fake_kvm_reset();
	if (busy) {
		struct kvm_regs regs = { .rip = 0x100000, .rsp = 0x8000, .rflags = 2 };
		struct kvm_irqchip ioapic = { .chip_id = KVM_IRQCHIP_IOAPIC };
		ioapic.chip.ioapic.base_address = 0xfec00000;
		KVM_MSRS_N(1) tsc = { .hdr.nmsrs = 1 };
		tsc.hdr.entries[0] = (struct kvm_msr_entry){ .index = 0x10, .data = 123456789 };
		if (__wrap_ioctl(-1, KVM_SET_REGS, &regs) || __wrap_ioctl(-1, KVM_SET_IRQCHIP, &ioapic) ||
		    __wrap_ioctl(-1, KVM_SET_MSRS, &tsc.hdr) != 1)
			return 1;
	}
	if (vm_snapshot__save_state(vm, &out, err)) {
		fprintf(stderr, "seeds_snapshot: %s\n", err);
		return 1;
	}
	/* As written, and as frames (fuzz/snapshot_frame.h) for the sealing mode. */
	struct sbuf fr;
	sbuf__init(&fr);
	if (snapshot_frame__from(out.data, out.len, &fr))
		return 1;
	for (int k = 0; k < 2; k++) {
		const struct sbuf *b = k ? &fr : &out;
		snprintf(path, sizeof(path), "%s/%s%s", dir, name, k ? ".frames" : "");
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f))
			return 1;
	}
	sbuf__free(&fr);
	fake_vm_machine(vm, NULL, NULL, NULL, NULL);
	virtio_mmio__destroy(blk);
	virtio_mmio__destroy(net);
	serial__destroy(s);
	sbuf__free(&out);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	return put(argv[1], "serial", 0) || put(argv[1], "meta-serial", 1) || put(argv[1], "three", 2) ||
	       put_state(argv[1], "state-boot", false) || put_state(argv[1], "state-busy", true);
}
