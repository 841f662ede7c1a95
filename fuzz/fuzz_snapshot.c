/*
 * fuzz_snapshot.c - libFuzzer over the snapshot container reader
 * (vmm/state/snapshot.c: what `--restore FILE` and every checkpoint's STATE
 * are parsed with) and the vmstate engine on a real device table, the
 * serial port's (vmm/devices/serial.c), with no KVM.
 *
 * The input is opened as a snapshot buffer; every section it yields is
 * walked (its name and data must lie inside the input), and each "serial"
 * device section is loaded: checked first, then applied. Rule, besides the
 * sanitizers: a section the check accepted is applied without error, and
 * the device then saves a state that loads again (a round trip).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm_internal.h"

static void inside(const void *p, size_t len, const uint8_t *in, size_t n)
{
	const uint8_t *b = p;
	if (len && (b < in || b > in + n || len > (size_t)(in + n - b)))
		abort();	/* a section that points outside the snapshot */
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	struct snap_reader r;
	char err[VMM_ERR_LEN];

	if (snapr__open_buffer(&r, in, n, err, sizeof(err)))
		return 0;
	struct serial *s = serial__create(-1);
	struct snap_section sec = SNAP_SECTION_ITER_INIT;
	while (s && snapr__next(&r, &sec) == 0) {
		inside(sec.data, sec.len, in, n);
		if (sec.type != SNAP_SECTION_DEVICE || strcmp(sec.name, "serial"))
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
	serial__destroy(s);
	snapr__close(&r);
	return 0;
}
