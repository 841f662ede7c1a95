/*
 * fuzz_snapshot.c - libFuzzer over the snapshot container reader
 * (vmm/state/snapshot.c: what `--restore FILE` and every checkpoint's STATE
 * are parsed with) and the vmstate engine on the real device tables: the
 * serial port, virtio-mmio with virtio-blk and virtio-net behind it, with
 * no KVM (fuzz/fake_vm.c).
 *
 * The input is opened as a snapshot buffer; every section it yields is
 * walked (its name and data must lie inside the input), and each "serial",
 * "virtio-blk" and "virtio-net" device section is loaded into that device:
 * checked first, then applied. Rule, besides the
 * sanitizers: a section the check accepted is applied without error, and
 * the device then saves a state that loads again (a round trip).
 *
 * Then the whole input as a VM state (a checkpoint's STATE, or what
 * --restore reads besides RAM) on a machine of one vCPU with those devices:
 * vm__check_state's decode and checks (vm_snapshot__load_state with
 * check_only: the machine, platform, vCPU, serial and virtio sections), no
 * KVM needed. What the check accepted must then apply without error, the
 * KVM half through fuzz/fake_kvm.c (the target is linked with
 * --wrap=ioctl), and the VM must save a state that the check accepts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fake_vm.h"
#include "fuzz/snapshot_frame.h"
#include "vmm/virtio/virtio.h"

static void inside(const void *p, size_t len, const uint8_t *in, size_t n)
{
	const uint8_t *b = p;
	if (len && (b < in || b > in + n || len > (size_t)(in + n - b)))
		abort();	/* a section that points outside the snapshot */
}

static int no_io(void *be, uint64_t off, const struct iovec *iov, int n)
{
	(void)be;
	(void)off;
	(void)iov;
	(void)n;
	return -EIO;
}

static int no_flush(void *be)
{
	(void)be;
	return -EIO;
}

static int no_tx(void *be, const struct iovec *iov, int n)
{
	(void)be;
	(void)iov;
	(void)n;
	return 0;
}

static ssize_t no_rx(void *be, void *buf, size_t len)
{
	(void)be;
	(void)buf;
	(void)len;
	return -EAGAIN;
}

static int no_fd(void *be)
{
	(void)be;
	return -1;
}

/* Checked, then applied: an accepted state must apply, and save back. */
static void load_virtio(struct virtio_mmio *t, const struct snap_section *sec, char *err)
{
	if (virtio_mmio__load(t, sec->data, sec->len, true, err) != 0)
		return;
	if (virtio_mmio__load(t, sec->data, sec->len, false, err) != 0)
		abort();
	struct sbuf out;
	sbuf__init(&out);
	if (virtio_mmio__save(t, &out) != 0 || virtio_mmio__load(t, out.data, out.len, true, err) != 0)
		abort();
	sbuf__free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	static const struct disk_ops d_ops = { .read = no_io, .write = no_io, .flush = no_flush };
	static const struct net_ops n_ops = { .tx = no_tx, .rx = no_rx, .rx_fd = no_fd };
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	struct snap_reader r;
	char err[VMM_ERR_LEN];
	uint8_t *ram;

	struct sbuf sealed;
	sbuf__init(&sealed);
	if (snapshot_frame__is(in, n)) {
		if (snapshot_frame__seal(in, n, &sealed)) {
			sbuf__free(&sealed);
			return 0;
		}
		in = sealed.data;
		n = sealed.len;
	}
	if (snapr__open_buffer(&r, in, n, err, sizeof(err))) {
		sbuf__free(&sealed);
		return 0;
	}
	struct vm *vm = fake_vm(&ram);
	struct disk d = { .ops = &d_ops, .size = 1 << 20 };
	struct net nic = { .ops = &n_ops };
	struct virtio_mmio *blk = NULL, *net = NULL;
	struct serial *s = serial__create(-1);
	if (!s || virtio_blk__create(vm, 0, &d, &blk, err) || virtio_net__create(vm, 1, &nic, mac, &net, err))
		abort();
	struct snap_section sec = SNAP_SECTION_ITER_INIT;
	while (snapr__next(&r, &sec) == 0) {
		inside(sec.data, sec.len, in, n);
		if (sec.type != SNAP_SECTION_DEVICE)
			continue;
		if (!strcmp(sec.name, "virtio-blk")) {
			load_virtio(blk, &sec, err);
			continue;
		}
		if (!strcmp(sec.name, "virtio-net")) {
			load_virtio(net, &sec, err);
			continue;
		}
		if (strcmp(sec.name, "serial"))
			continue;
		if (serial__load(s, sec.data, sec.len, true, err) != 0)
			continue;
		if (serial__load(s, sec.data, sec.len, false, err) != 0)
			abort();	/* checked, then refused */
		struct sbuf out;
		sbuf__init(&out);
		if (serial__save(s, &out) != 0 || serial__load(s, out.data, out.len, true, err) != 0)
			abort();	/* its own state does not load back */
		sbuf__free(&out);
	}
	snapr__close(&r);

	fake_vm_machine(vm, s, blk, net, &d);
	fake_kvm_reset();
	if (vm_snapshot__load_state(vm, in, n, true, err) == 0) {
		if (vm_snapshot__load_state(vm, in, n, false, err) != 0)
			abort();	/* checked, then refused */
		struct sbuf out;
		sbuf__init(&out);
		if (vm_snapshot__save_state(vm, &out, err) != 0 ||
		    vm_snapshot__load_state(vm, out.data, out.len, true, err) != 0)
			abort();	/* the state it now holds does not check */
		sbuf__free(&out);
	}
	fake_vm_machine(vm, NULL, NULL, NULL, NULL);
	virtio_mmio__destroy(blk);
	virtio_mmio__destroy(net);
	serial__destroy(s);
	sbuf__free(&sealed);
	return 0;
}
