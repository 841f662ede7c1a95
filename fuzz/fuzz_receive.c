/*
 * fuzz_receive.c - libFuzzer over the secondary's stream step
 * (ft/receive.c): any sequence of whole messages, as a primary or a
 * stranger could send them after HELLO.
 *
 * Input: byte 0 chooses the storage (bit 0: replicated, a raw image under
 * the event tap; else shared), then records of
 *   u8 type, u8 flags, u8 epoch, u16 length (little endian), payload
 * fed to ft_rx__step one by one, as serve() does, until a verdict ends the
 * stream. Besides the sanitizers, it checks the rule the step keeps:
 * guest RAM changes only at a COMMIT that says COMMITTED or a SYNC_RAM the
 * step took; every COMMITTED is the next checkpoint and is ACKed; a
 * refusal sends no reply.
 *
 *   scripts/fuzz.sh [SECONDS]     (builds with clang; seeds from fuzz/seeds_receive.py)
 * Built with -DFTVM_FUZZ_STANDALONE it is a plain program that replays
 * the inputs named on its command line (a crash found elsewhere, with gcc).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ft/ft_internal.h"
#include "ft/receive.h"

#define PAGES 32

static uint8_t ram[PAGES][FT_PAGE];
static uint8_t shadow[PAGES][FT_PAGE];

static void *page_of(void *opaque, uint64_t idx)
{
	(void)opaque;
	if (idx >= PAGES)
		abort();	/* the step must have checked it */
	return ram[idx];
}

/* Stands in for vm__check_state (not under test here): "S" first. */
static int check_state(void *opaque, const void *blob, size_t len, char *err)
{
	(void)opaque;
	if (len && ((const char *)blob)[0] == 'S')
		return 0;
	snprintf(err, VMM_ERR_LEN, "not a state blob");
	return -EINVAL;
}

static struct disk disk;
static struct eventtap *et;

/* A 256 KiB raw image under an event tap, once per process. */
static int replicated_setup(void)
{
	static int done;
	char path[64], err[256];
	if (done)
		return done > 0 ? 0 : -1;
	snprintf(path, sizeof(path), "/tmp/ftvm-fuzz-receive-%d.img", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f || ftruncate(fileno(f), 256 << 10) < 0) {
		done = -1;
		return -1;
	}
	fclose(f);
	if (disk_raw__open(&disk, path, false, err) || eventtap__create(&disk, NULL, &et)) {
		fprintf(stderr, "fuzz_receive: %s\n", err);
		done = -1;
		return -1;
	}
	unlink(path);
	done = 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
	struct ft_rx_target t = {
		.nr_pages = PAGES, .mem_size = sizeof(ram), .page = page_of, .check_state = check_state,
	};
	if (!n)
		return 0;
	if ((in[0] & 1) && !replicated_setup()) {
		t.disk = &disk;
		t.et = et;
		t.disk_size = disk.size;
	} else {
		t.disk_size = in[0] & 2 ? 256 << 10 : 0;	/* shared storage, or no disk */
	}
	memset(ram, 0, sizeof(ram));
	memset(shadow, 0, sizeof(shadow));

	struct ft_rx rx;
	struct xport_msg m;
	struct ft_rx_reply r;
	char err[512];
	ft_rx__init(&rx, &t);
	xport_msg__init(&m);
	size_t at = 1;
	while (at + 5 <= n) {
		size_t len = (size_t)in[at + 3] | (size_t)in[at + 4] << 8;
		if (len > n - at - 5)
			len = n - at - 5;
		m.type = in[at];
		m.flags = in[at + 1];
		m.epoch = in[at + 2];
		sbuf__reset(&m.payload);
		if (len && sbuf__append(&m.payload, in + at + 5, len))
			break;
		at += 5 + len;

		uint64_t before = rx.committed;
		err[0] = '\0';
		enum ft_rx_verdict v = ft_rx__step(&rx, &m, &r, err, sizeof(err));
		bool took_sync = v == FT_RX_NEXT && m.type == FT_MSG_SYNC_RAM;
		if (v == FT_RX_COMMITTED) {
			if (rx.committed != before + 1 || r.type != FT_MSG_ACK || r.epoch != rx.committed)
				abort();
		} else if (rx.committed != before) {
			abort();
		}
		if (v == FT_RX_COMMITTED || took_sync)
			memcpy(shadow, ram, sizeof(ram));
		else if (memcmp(shadow, ram, sizeof(ram)))
			abort();	/* RAM changed without a commit */
		if ((v == FT_RX_REFUSE || v == FT_RX_UNUSABLE || v == FT_RX_PEER_ERROR) && r.type)
			abort();	/* nothing is acknowledged on a refusal */
		if (v != FT_RX_NEXT && v != FT_RX_COMMITTED) {
			if (!err[0] && v != FT_RX_HANDOVER && v != FT_RX_CANCELLED)
				abort();	/* every ending says why */
			break;
		}
	}
	xport_msg__free(&m);
	ft_rx__free(&rx);
	return 0;
}

#ifdef FTVM_FUZZ_STANDALONE
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		static uint8_t buf[1 << 20];
		size_t n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
		printf("%s: %zu bytes, ok\n", argv[i], n);
	}
	return 0;
}
#endif
