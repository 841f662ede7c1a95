/*
 * seeds_snapshot.c - seeds for fuzz_snapshot, written by the real writer
 * (vmm/state/snapshot.c) and the real serial device: snapshots holding a
 * serial section (as savevm writes it), plus other sections around it.
 *   usage: seeds_snapshot DIR
 */
#include <stdio.h>
#include <string.h>

#include "vmm/vm_internal.h"

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
	if (extra > 1)
		snapw__section(&w, SNAP_SECTION_DEVICE, "other", "\x01\x02\x03\x04", 4);
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
