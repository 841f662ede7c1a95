/*
 * seeds_snapshot.c - seeds for fuzz_snapshot, written by the real writer
 * (vmm/state/snapshot.c) and the real devices: snapshots holding serial,
 * virtio-blk and virtio-net sections as savevm writes them, plus others.
 *   usage: seeds_snapshot DIR
 */
#include <stdio.h>
#include <string.h>

#include "fuzz/fake_vm.h"
#include "vmm/virtio/virtio.h"

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
		uint8_t *ram;
		struct vm *vm = fake_vm(&ram);
		static const struct disk_ops none;
		struct disk d = { .ops = &none, .size = 1 << 20 };
		struct net nic = { 0 };
		static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
		struct virtio_mmio *blk, *net;
		char err[VMM_ERR_LEN];
		struct sbuf b, nb;
		sbuf__init(&b);
		sbuf__init(&nb);
		if (virtio_blk__create(vm, 0, &d, &blk, err) || virtio_net__create(vm, 1, &nic, mac, &net, err) ||
		    virtio_mmio__save(blk, &b) || virtio_mmio__save(net, &nb))
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

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	return put(argv[1], "serial", 0) || put(argv[1], "meta-serial", 1) || put(argv[1], "three", 2);
}
