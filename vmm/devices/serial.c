/*
 * serial.c - a 16550A UART (COM1) for the guest console: transmit only,
 * the receiver never has data. Output is written line by line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/state/state.h"
#include "vmm/vm_internal.h"

#define LCR_DLAB 0x80
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IIR_NO_INT 0x01

struct serial_regs {
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
};

struct serial {
	struct serial_regs r;
	int out_fd;
	char line[256];
	size_t len;
};

static void serial__flush(struct serial *s)
{
	size_t off = 0;
	while (s->out_fd >= 0 && off < s->len) {
		ssize_t w = write(s->out_fd, s->line + off, s->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;	/* console gone: drop output rather than stall the guest */
		off += (size_t)w;
	}
	s->len = 0;
}

struct serial *serial__create(int out_fd)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (s)
		s->out_fd = out_fd;
	return s;
}

void serial__destroy(struct serial *s)
{
	serial__flush(s);
	free(s);
}

void serial__io_read(void *dev, uint64_t off, void *data, unsigned size)
{
	struct serial *s = dev;
	uint8_t v = 0;

	switch (off) {
	case 0: v = (s->r.lcr & LCR_DLAB) ? s->r.dll : 0; break;
	case 1: v = (s->r.lcr & LCR_DLAB) ? s->r.dlm : s->r.ier; break;
	case 2: v = IIR_NO_INT | ((s->r.fcr & 1) ? 0xc0 : 0); break;
	case 3: v = s->r.lcr; break;
	case 4: v = s->r.mcr; break;
	case 5: v = LSR_THRE | LSR_TEMT; break;
	case 6: v = 0xb0; break;	/* DCD, DSR, CTS */
	case 7: v = s->r.scr; break;
	}
	memset(data, 0, size);
	*(uint8_t *)data = v;
}

void serial__io_write(void *dev, uint64_t off, const void *data, unsigned size)
{
	struct serial *s = dev;
	uint8_t v = *(const uint8_t *)data;

	switch (off) {
	case 0:
		if (s->r.lcr & LCR_DLAB) {
			s->r.dll = v;
			break;
		}
		s->line[s->len++] = (char)v;
		if (v == '\n' || s->len == sizeof(s->line))
			serial__flush(s);
		break;
	case 1:
		if (s->r.lcr & LCR_DLAB)
			s->r.dlm = v;
		else
			s->r.ier = v & 0x0f;
		break;
	case 2: s->r.fcr = v; break;
	case 3: s->r.lcr = v; break;
	case 4: s->r.mcr = v & 0x1f; break;
	case 7: s->r.scr = v; break;
	}
}

static const struct vmstate_field serial_fields[] = {
	VMSTATE_FIELD(struct serial_regs, ier),
	VMSTATE_FIELD(struct serial_regs, lcr),
	VMSTATE_FIELD(struct serial_regs, mcr),
	VMSTATE_FIELD(struct serial_regs, scr),
	VMSTATE_FIELD(struct serial_regs, dll),
	VMSTATE_FIELD(struct serial_regs, dlm),
	VMSTATE_FIELD(struct serial_regs, fcr),
};
static const struct vmstate_desc serial_desc =
	VMSTATE_DESC("serial", struct serial_regs, 1, 1, serial_fields);

int serial__save(struct serial *s, struct sbuf *out)
{
	serial__flush(s);
	return vmstate__save(&serial_desc, &s->r, out);
}

int serial__load(struct serial *s, const void *data, size_t len, bool check_only, char *err)
{
	struct serial_regs r = s->r;
	int ret = vmstate__load(&serial_desc, &r, data, len, err, VMM_ERR_LEN);
	if (!ret && !check_only)
		s->r = r;
	return ret;
}
