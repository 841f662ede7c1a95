/*
 * snapshot_frame.h - sections framed for fuzz_snapshot: "FTSF", then per
 * section u16 little-endian type, u8 name length, the name, u32 little-endian data
 * length, the data. snapshot_frame__seal writes them as a snapshot with
 * the real writer (vmm/state/snapshot.c), checksums and all; a frame that
 * runs past the input ends the list. seeds_snapshot writes frames with
 * snapshot_frame__from, from snapshots the real writer made.
 */
#ifndef FTVM_FUZZ_SNAPSHOT_FRAME_H
#define FTVM_FUZZ_SNAPSHOT_FRAME_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vmm/state/state.h"

#define SNAPSHOT_FRAME_MAGIC "FTSF"

static inline bool snapshot_frame__is(const uint8_t *in, size_t n)
{
	return n >= 4 && !memcmp(in, SNAPSHOT_FRAME_MAGIC, 4);
}

/* 0, or -1 when the writer refused (a bad name: the input is dropped). */
static inline int snapshot_frame__seal(const uint8_t *in, size_t n, struct sbuf *out)
{
	struct snap_writer w;
	size_t at = 4;
	if (snapw__open_buffer(&w, out))
		return -1;
	while (at + 3 <= n) {
		uint32_t type = (uint32_t)in[at] | (uint32_t)in[at + 1] << 8;
		uint8_t nl = in[at + 2];
		char name[256];
		if (at + 3 + nl + 4 > n)
			break;
		memcpy(name, in + at + 3, nl);
		name[nl] = '\0';
		at += 3u + nl;
		uint32_t len = (uint32_t)in[at] | (uint32_t)in[at + 1] << 8 | (uint32_t)in[at + 2] << 16 |
			       (uint32_t)in[at + 3] << 24;
		at += 4;
		if (len > n - at)
			len = (uint32_t)(n - at);
		if (type == SNAP_SECTION_END || snapw__section(&w, type, name, in + at, len)) {
			snapw__close(&w);
			return -1;
		}
		at += len;
	}
	return snapw__close(&w) ? -1 : 0;
}

/* The frames of snapshot (len bytes) into out; 0 or -1. */
static inline int snapshot_frame__from(const void *snapshot, size_t len, struct sbuf *out)
{
	struct snap_reader r;
	char err[256];
	if (snapr__open_buffer(&r, snapshot, len, err, sizeof(err)))
		return -1;
	int ret = sbuf__append(out, SNAPSHOT_FRAME_MAGIC, 4);
	struct snap_section sec = SNAP_SECTION_ITER_INIT;
	while (!ret && snapr__next(&r, &sec) == 0) {
		uint8_t h[3] = { (uint8_t)sec.type, (uint8_t)(sec.type >> 8), (uint8_t)strlen(sec.name) };
		uint8_t l[4] = { (uint8_t)sec.len, (uint8_t)(sec.len >> 8), (uint8_t)(sec.len >> 16),
				 (uint8_t)(sec.len >> 24) };
		ret = sbuf__append(out, h, 3) || sbuf__append(out, sec.name, h[2]) || sbuf__append(out, l, 4) ||
		      sbuf__append(out, sec.data, sec.len);
	}
	snapr__close(&r);
	return ret ? -1 : 0;
}

#endif
