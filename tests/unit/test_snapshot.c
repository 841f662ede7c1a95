/*
 * Snapshot container: round trips through a file, a buffer and a pipe;
 * short writes and EINTR; and the refusals - every single-byte flip, every
 * truncation, appended bytes, reordered or dropped sections, another format
 * version - each with the message it should carry.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dlsym(RTLD_NEXT) */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/state/state.h"

#include "tests/unit/check.h"

/*
 * writev() interposer: in chaos mode every third call fails with EINTR and
 * the others write a pseudo-random number of bytes (often stopping inside
 * an iovec), which is what a signal-interrupted socket write looks like.
 * The library is linked into this executable, so its writev() calls land
 * here.  Test-only global state.
 */
static int chaos;
static unsigned long chaos_calls, chaos_eintr;

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	static ssize_t (*real)(int, const struct iovec *, int);
	struct iovec cut[8];
	size_t budget, left;
	int n = 0;

	if (!real)
		real = (ssize_t(*)(int, const struct iovec *, int))dlsym(
			RTLD_NEXT, "writev");
	if (!chaos)
		return real(fd, iov, cnt);

	chaos_calls++;
	if (chaos_calls % 3 == 0) {
		chaos_eintr++;
		errno = EINTR;
		return -1;
	}
	budget = 1 + (chaos_calls * 2654435761u) % 9000;
	left = budget;
	for (int i = 0; i < cnt && n < 8 && left; i++) {
		cut[n] = iov[i];
		if (cut[n].iov_len > left)
			cut[n].iov_len = left;
		left -= cut[n].iov_len;
		n++;
	}
	return real(fd, cut, n);
}

/* ------------------------------------------------------------ helpers */

static char tmpdir[] = "/tmp/ftvm-test-snapshot-XXXXXX";

static void path_for(char *out, size_t n, const char *leaf)
{
	snprintf(out, n, "%s/%s", tmpdir, leaf);
}

static int write_file(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, p, len);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

static int read_file(const char *path, struct sbuf *out)
{
	uint8_t chunk[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	sbuf__reset(out);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		sbuf__append(out, chunk, (size_t)n);
	close(fd);
	return n < 0 ? -EIO : 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the file header crc after editing the header. */
static void fix_header_crc(uint8_t *h)
{
	uint8_t copy[SNAP_HEADER_SIZE];

	memcpy(copy, h, sizeof(copy));
	memset(copy + 16, 0, 4);
	put32(h + 16, crc32c(0, copy, sizeof(copy)));
}

/* A small snapshot with a mix of sections, written to a buffer. */
static const char meta_text[] = "guest=demo mem=64M vcpus=1";

static void build_small(struct sbuf *out)
{
	static uint8_t cpu[100], pages[3][40];
	struct iovec iov[3];
	struct snap_writer w;
	int rc;

	for (size_t i = 0; i < sizeof(cpu); i++)
		cpu[i] = (uint8_t)(i * 7 + 1);
	for (int p = 0; p < 3; p++) {
		memset(pages[p], 0xA0 + p, sizeof(pages[p]));
		iov[p].iov_base = pages[p];
		iov[p].iov_len = sizeof(pages[p]);
	}
	rc = snapw__open_buffer(&w, out);
	rc = rc ?: snapw__section(&w, SNAP_SECTION_META, "meta", meta_text,
				  sizeof(meta_text) - 1);
	rc = rc ?: snapw__section(&w, SNAP_SECTION_CPU, "cpu0", cpu,
				  sizeof(cpu));
	rc = rc ?: snapw__section(&w, SNAP_SECTION_DEVICE, "empty", NULL, 0);
	rc = rc ?: snapw__sectionv(&w, SNAP_SECTION_RAM, "ram", iov, 3);
	rc = rc ?: snapw__close(&w);
	if (rc) {
		fprintf(stderr, "building the small snapshot failed: %d\n", rc);
		exit(1);
	}
}

static void check_small_contents(const struct snap_reader *r)
{
	struct snap_section s = SNAP_SECTION_ITER_INIT;
	static const char *const names[] = { "meta", "cpu0", "empty", "ram" };
	const void *data;
	size_t len;
	int n = 0;

	CHECK(r->nsections == 4, "nsections %u", r->nsections);
	CHECK(r->format_version == 1, "format_version %u", r->format_version);
	CHECK(strcmp(r->creator, "ftvm") == 0, "creator '%s'", r->creator);
	while (snapr__next(r, &s) == 0) {
		CHECK(n < 4 && strcmp(s.name, names[n]) == 0,
		      "section %d is '%s'", n, s.name);
		CHECK(((uintptr_t)s.data - (uintptr_t)r->base) % 8 == 0,
		      "payload of '%s' not 8-byte aligned", s.name);
		n++;
	}
	CHECK(n == 4, "iterated %d sections", n);

	CHECK(snapr__find(r, SNAP_SECTION_META, "meta", &data, &len) == 0 &&
		      len == sizeof(meta_text) - 1 &&
		      memcmp(data, meta_text, len) == 0,
	      "meta section");
	CHECK(snapr__find(r, SNAP_SECTION_CPU, "cpu0", &data, &len) == 0 &&
		      len == 100 && ((const uint8_t *)data)[99] == (uint8_t)(99 * 7 + 1),
	      "cpu0 section");
	CHECK(snapr__find(r, SNAP_SECTION_DEVICE, "empty", &data, &len) == 0 &&
		      len == 0,
	      "empty section");
	CHECK(snapr__find(r, SNAP_SECTION_RAM, NULL, &data, &len) == 0 &&
		      len == 120 && ((const uint8_t *)data)[0] == 0xA0 &&
		      ((const uint8_t *)data)[119] == 0xA2,
	      "ram section (gathered)");
	CHECK(snapr__find(r, SNAP_SECTION_RAM, "cpu0", &data, &len) == -ENOENT,
	      "type and name must both match");
	CHECK(snapr__find(r, 999, NULL, NULL, NULL) == -ENOENT,
	      "missing type");
}

/* Expect a buffer to be refused; returns the message for closer checks. */
static int refuse_buffer(const uint8_t *p, size_t len, char *err,
			 size_t errlen)
{
	struct snap_reader r;
	int rc = snapr__open_buffer(&r, p, len, err, errlen);

	if (rc == 0)
		snapr__close(&r);
	CHECK(r.base == NULL && r.nsections == 0,
	      "a refused reader must be left closed");
	return rc;
}

/* ---------------------------------------------------------------- tests */

static void test_round_trip_buffer_and_file(void)
{
	struct snap_reader r;
	struct sbuf sb, fb;
	char path[256], err[256];
	int rc;

	sbuf__init(&sb);
	sbuf__init(&fb);
	build_small(&sb);
	rc = snapr__open_buffer(&r, sb.data, sb.len, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	if (!rc) {
		check_small_contents(&r);
		snapr__close(&r);
	}

	path_for(path, sizeof(path), "small.snap");
	CHECK(write_file(path, sb.data, sb.len) == 0, "write %s", path);
	rc = snapr__open_file(&r, path, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	if (!rc) {
		CHECK(r.map_len == sb.len, "map_len %zu", r.map_len);
		check_small_contents(&r);
		snapr__close(&r);
	}
	snapr__close(&r); /* closing twice is harmless */

	/* The fd writer produces the same bytes as the buffer writer. */
	{
		struct snap_writer w;
		int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		static uint8_t cpu[100], pages[3][40];
		struct iovec iov[3];

		for (size_t i = 0; i < sizeof(cpu); i++)
			cpu[i] = (uint8_t)(i * 7 + 1);
		for (int p = 0; p < 3; p++) {
			memset(pages[p], 0xA0 + p, sizeof(pages[p]));
			iov[p].iov_base = pages[p];
			iov[p].iov_len = sizeof(pages[p]);
		}
		rc = snapw__open(&w, fd);
		rc = rc ?: snapw__section(&w, SNAP_SECTION_META, "meta",
					  meta_text, sizeof(meta_text) - 1);
		rc = rc ?: snapw__section(&w, SNAP_SECTION_CPU, "cpu0", cpu,
					  sizeof(cpu));
		rc = rc ?: snapw__section(&w, SNAP_SECTION_DEVICE, "empty",
					  NULL, 0);
		rc = rc ?: snapw__sectionv(&w, SNAP_SECTION_RAM, "ram", iov, 3);
		rc = rc ?: snapw__close(&w);
		close(fd);
		CHECK_RC(rc, 0, "");
		CHECK(read_file(path, &fb) == 0 && fb.len == sb.len &&
			      memcmp(fb.data, sb.data, sb.len) == 0,
		      "fd writer output differs from buffer writer output");
	}

	/* No sections at all is a valid snapshot. */
	{
		struct snap_writer w;

		sbuf__reset(&fb);
		rc = snapw__open_buffer(&w, &fb);
		rc = rc ?: snapw__close(&w);
		CHECK_RC(rc, 0, "");
		rc = snapr__open_buffer(&r, fb.data, fb.len, err, sizeof(err));
		CHECK_RC(rc, 0, err);
		CHECK(r.nsections == 0 && fb.len == 64 + 56 + 16,
		      "empty snapshot: %u sections, %zu bytes", r.nsections,
		      fb.len);
		snapr__close(&r);
	}
	sbuf__free(&sb);
	sbuf__free(&fb);
}

/* Big gathered sections through the fd path, with and without chaos. */
struct big_set {
	uint8_t *pages; /* npages x 4096 */
	int npages;
	struct iovec *iov;
	uint8_t small[300];
};

static int write_big(struct snap_writer *w, const struct big_set *b)
{
	int rc = 0;

	/* Small sections before and after, so pending bytes get flushed
	 * together with a large write and again at close. */
	for (int i = 0; i < 5 && !rc; i++) {
		char name[16];

		snprintf(name, sizeof(name), "dev%d", i);
		rc = snapw__section(w, SNAP_SECTION_DEVICE, name, b->small,
				    sizeof(b->small) - (size_t)i);
	}
	rc = rc ?: snapw__sectionv(w, SNAP_SECTION_RAM, "ram", b->iov,
				   b->npages);
	rc = rc ?: snapw__section(w, SNAP_SECTION_RAM, "ram-contig", b->pages,
				  (size_t)b->npages * 4096 / 3);
	for (int i = 0; i < 100 && !rc; i++) {
		char name[16];

		snprintf(name, sizeof(name), "cpu%d", i);
		rc = snapw__section(w, SNAP_SECTION_CPU, name, b->small,
				    (size_t)(i * 3) % sizeof(b->small));
	}
	return rc ?: snapw__close(w);
}

static void big_init(struct big_set *b)
{
	uint64_t s = 12345;

	b->npages = 300; /* > one writev batch, > SNAP_COPY_MAX */
	b->pages = malloc((size_t)b->npages * 4096);
	b->iov = malloc(sizeof(*b->iov) * (size_t)b->npages);
	for (size_t i = 0; i < (size_t)b->npages * 4096; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		b->pages[i] = (uint8_t)s;
	}
	/* Gather the pages out of order, as a dirty-page list would. */
	for (int i = 0; i < b->npages; i++) {
		b->iov[i].iov_base = b->pages + (size_t)((i * 7) % b->npages) * 4096;
		b->iov[i].iov_len = 4096;
	}
	for (size_t i = 0; i < sizeof(b->small); i++)
		b->small[i] = (uint8_t)i;
}

static void big_check(const struct snap_reader *r, const struct big_set *b)
{
	const void *data;
	size_t len;
	int ok = 1;

	CHECK(r->nsections == 5 + 2 + 100, "nsections %u", r->nsections);
	CHECK(snapr__find(r, SNAP_SECTION_RAM, "ram", &data, &len) == 0 &&
		      len == (size_t)b->npages * 4096,
	      "ram section");
	for (int i = 0; ok && i < b->npages; i++)
		ok = memcmp((const uint8_t *)data + (size_t)i * 4096,
			    b->iov[i].iov_base, 4096) == 0;
	CHECK(ok, "gathered ram pages differ");
	CHECK(snapr__find(r, SNAP_SECTION_RAM, "ram-contig", &data, &len) ==
			      0 &&
		      len == (size_t)b->npages * 4096 / 3 &&
		      memcmp(data, b->pages, len) == 0,
	      "contiguous ram section");
	CHECK(snapr__find(r, SNAP_SECTION_CPU, "cpu99", &data, &len) == 0 &&
		      len == (99 * 3) % sizeof(b->small),
	      "cpu99");
}

static void test_big_and_short_writes(void)
{
	struct big_set b;
	struct snap_writer w;
	struct snap_reader r;
	struct sbuf ref, got;
	char path[256], err[256];
	int fd, rc;

	big_init(&b);
	sbuf__init(&ref);
	sbuf__init(&got);
	rc = snapw__open_buffer(&w, &ref);
	rc = rc ?: write_big(&w, &b);
	CHECK_RC(rc, 0, "");

	path_for(path, sizeof(path), "big.snap");
	for (int mode = 0; mode < 2; mode++) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			  0600);
		chaos = mode;
		chaos_calls = chaos_eintr = 0;
		rc = snapw__open(&w, fd);
		rc = rc ?: write_big(&w, &b);
		chaos = 0;
		close(fd);
		CHECK_RC(rc, 0, mode ? "chaos" : "plain");
		if (mode)
			CHECK(chaos_calls > 100 && chaos_eintr > 30,
			      "chaos mode barely used (%lu calls)",
			      chaos_calls);
		CHECK(read_file(path, &got) == 0 && got.len == ref.len &&
			      memcmp(got.data, ref.data, ref.len) == 0,
		      "%s fd output differs from buffer output",
		      mode ? "chaos" : "plain");

		rc = snapr__open_file(&r, path, err, sizeof(err));
		CHECK_RC(rc, 0, err);
		if (!rc) {
			big_check(&r, &b);
			snapr__close(&r);
		}
	}
	printf("big snapshot: %zu bytes; chaos run used %lu writev calls "
	       "(%lu EINTR)\n",
	       ref.len, chaos_calls, chaos_eintr);
	sbuf__free(&ref);
	sbuf__free(&got);
	free(b.pages);
	free(b.iov);
}

/* Writing to a pipe: the socket-like case, read by another thread. */
struct drain {
	int fd;
	struct sbuf out;
};

static void *drain_thread(void *arg)
{
	struct drain *d = arg;
	uint8_t chunk[8192];
	ssize_t n;

	while ((n = read(d->fd, chunk, sizeof(chunk))) > 0)
		sbuf__append(&d->out, chunk, (size_t)n);
	return NULL;
}

static void test_pipe(void)
{
	struct big_set b;
	struct snap_writer w;
	struct snap_reader r;
	struct drain d;
	pthread_t t;
	char err[256];
	int p[2], rc;

	big_init(&b);
	if (pipe(p) < 0) {
		CHECK(0, "pipe: %s", strerror(errno));
		return;
	}
	d.fd = p[0];
	sbuf__init(&d.out);
	pthread_create(&t, NULL, drain_thread, &d);
	rc = snapw__open(&w, p[1]);
	rc = rc ?: write_big(&w, &b);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	CHECK_RC(rc, 0, "");
	rc = snapr__open_buffer(&r, d.out.data, d.out.len, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	if (!rc) {
		big_check(&r, &b);
		snapr__close(&r);
	}
	sbuf__free(&d.out);
	free(b.pages);
	free(b.iov);
}

/* Every single-byte change anywhere in the file must be refused. */
static void test_every_byte_flip(void)
{
	static const uint8_t xors[] = { 0x01, 0x02, 0x04, 0x08, 0x10,
					0x20, 0x40, 0x80, 0xff };
	struct sbuf sb;
	char path[256], err[256];
	int accepted = 0, tried = 0;

	sbuf__init(&sb);
	build_small(&sb);
	for (size_t off = 0; off < sb.len; off++) {
		for (size_t x = 0; x < sizeof(xors); x++) {
			uint8_t *copy = malloc(sb.len);
			int rc;

			memcpy(copy, sb.data, sb.len);
			copy[off] ^= xors[x];
			rc = refuse_buffer(copy, sb.len, err, sizeof(err));
			tried++;
			if (rc == 0) {
				accepted++;
				CHECK(0, "flip 0x%02x at offset %zu accepted",
				      xors[x], off);
			} else {
				CHECK(rc == -EBADMSG || rc == -EPROTO,
				      "flip at %zu: rc %d", off, rc);
				CHECK(err[0] != '\0', "flip at %zu: no message",
				      off);
			}
			free(copy);
		}
	}

	/* And through real files and mmap, one flip per offset. */
	path_for(path, sizeof(path), "flip.snap");
	for (size_t off = 0; off < sb.len; off++) {
		struct snap_reader r;
		int rc;

		sb.data[off] ^= 0xff;
		write_file(path, sb.data, sb.len);
		sb.data[off] ^= 0xff;
		rc = snapr__open_file(&r, path, err, sizeof(err));
		tried++;
		CHECK(rc == -EBADMSG || rc == -EPROTO,
		      "file flip at %zu: rc %d (%s)", off, rc, err);
		if (rc == 0)
			snapr__close(&r);
	}
	printf("byte flips: %d tried over %zu bytes, %d accepted\n", tried,
	       sb.len, accepted);
	sbuf__free(&sb);
}

/* Every proper prefix must be refused as truncated. */
static void test_every_truncation(void)
{
	struct sbuf sb;
	char path[256], err[256];

	sbuf__init(&sb);
	build_small(&sb);
	path_for(path, sizeof(path), "trunc.snap");
	for (size_t len = 0; len < sb.len; len++) {
		/* exact-size heap copy, so ASan catches any overread */
		uint8_t *copy = malloc(len ? len : 1);
		struct snap_reader r;
		int rc;

		memcpy(copy, sb.data, len);
		rc = refuse_buffer(copy, len, err, sizeof(err));
		CHECK(rc == -EBADMSG, "prefix %zu: rc %d (%s)", len, rc, err);
		CHECK(strstr(err, "truncated") != NULL,
		      "prefix %zu: message \"%s\" should say truncated", len,
		      err);
		free(copy);

		write_file(path, sb.data, len);
		rc = snapr__open_file(&r, path, err, sizeof(err));
		CHECK(rc == -EBADMSG && strstr(err, "truncated"),
		      "file prefix %zu: rc %d (%s)", len, rc, err);
		if (rc == 0)
			snapr__close(&r);
	}
	sbuf__free(&sb);
}

static void test_messages(void)
{
	struct sbuf sb;
	char err[256], want[256];
	uint8_t *c;
	int rc;

	sbuf__init(&sb);
	build_small(&sb);
	c = malloc(sb.len + 16);

	/* Not a snapshot at all. */
	rc = refuse_buffer((const uint8_t *)"#!/bin/sh\necho hi\n", 18, err,
			   sizeof(err));
	CHECK(rc == -EBADMSG && !strcmp(err, "not an ftvm snapshot (bad magic)"),
	      "rc %d \"%s\"", rc, err);

	/* Another format version, with a valid header crc: -EPROTO. */
	memcpy(c, sb.data, sb.len);
	put32(c + 8, 7);
	fix_header_crc(c);
	rc = refuse_buffer(c, sb.len, err, sizeof(err));
	CHECK(rc == -EPROTO && !strcmp(err, "snapshot format version 7 is not "
					    "supported (this ftvm reads "
					    "version 1)"),
	      "rc %d \"%s\"", rc, err);
	/* ... and the same edit without fixing the crc is corruption. */
	memcpy(c, sb.data, sb.len);
	put32(c + 8, 7);
	rc = refuse_buffer(c, sb.len, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "header is corrupt"),
	      "rc %d \"%s\"", rc, err);
	/* Unknown flags with a valid crc: -EPROTO. */
	memcpy(c, sb.data, sb.len);
	put32(c + 20, 1);
	fix_header_crc(c);
	rc = refuse_buffer(c, sb.len, err, sizeof(err));
	CHECK(rc == -EPROTO && strstr(err, "flags 0x1"), "rc %d \"%s\"", rc,
	      err);

	/* Payload corruption names the section.  'ram' is the last
	 * section: its payload ends 72 bytes (the END section) before the
	 * end, and it is 120 bytes long. */
	memcpy(c, sb.data, sb.len);
	c[sb.len - 72 - 60] ^= 0x10;
	rc = refuse_buffer(c, sb.len, err, sizeof(err));
	CHECK(rc == -EBADMSG &&
		      !strcmp(err, "section 'ram' is corrupt (checksum mismatch)"),
	      "rc %d \"%s\"", rc, err);

	/* Truncated inside the ram payload. */
	{
		size_t ram_payload = sb.len - 72 - 120;
		size_t cut = ram_payload + 50;

		rc = refuse_buffer(sb.data, cut, err, sizeof(err));
		snprintf(want, sizeof(want),
			 "snapshot is truncated: section 'ram' needs 120 bytes "
			 "at offset %zu but the file ends at %zu",
			 ram_payload, cut);
		CHECK(rc == -EBADMSG && !strcmp(err, want),
		      "rc %d \"%s\", want \"%s\"", rc, err, want);
	}

	/* Cut exactly before END. */
	rc = refuse_buffer(sb.data, sb.len - 72, err, sizeof(err));
	CHECK(rc == -EBADMSG &&
		      !strcmp(err, "snapshot is truncated: no END section"),
	      "rc %d \"%s\"", rc, err);

	/* Empty. */
	rc = refuse_buffer(sb.data, 0, err, sizeof(err));
	CHECK(rc == -EBADMSG &&
		      !strcmp(err, "snapshot is truncated: the file is empty"),
	      "rc %d \"%s\"", rc, err);

	/* Bytes after END, even zeros. */
	memcpy(c, sb.data, sb.len);
	memset(c + sb.len, 0, 16);
	rc = refuse_buffer(c, sb.len + 8, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "8 unexpected bytes after the END"),
	      "rc %d \"%s\"", rc, err);

	free(c);
	sbuf__free(&sb);
}

/* Sections that are each intact but reordered or missing. */
static void test_reorder_and_drop(void)
{
	struct snap_writer w;
	struct sbuf sb;
	uint8_t a[16], b[16];
	char err[256];
	int rc;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	sbuf__init(&sb);
	rc = snapw__open_buffer(&w, &sb);
	rc = rc ?: snapw__section(&w, SNAP_SECTION_DEVICE, "a", a, sizeof(a));
	rc = rc ?: snapw__section(&w, SNAP_SECTION_DEVICE, "b", b, sizeof(b));
	rc = rc ?: snapw__close(&w);
	CHECK_RC(rc, 0, "");

	/* Each section is 56 + 16 = 72 bytes, at offsets 64 and 136. */
	{
		uint8_t *c = malloc(sb.len), tmp[72];

		memcpy(c, sb.data, sb.len);
		memcpy(tmp, c + 64, 72);
		memmove(c + 64, c + 136, 72);
		memcpy(c + 136, tmp, 72);
		rc = refuse_buffer(c, sb.len, err, sizeof(err));
		CHECK(rc == -EBADMSG && strstr(err, "chain checksum"),
		      "swapped: rc %d \"%s\"", rc, err);

		/* Drop section 'b'. */
		memcpy(c, sb.data, sb.len);
		memmove(c + 136, c + 208, sb.len - 208);
		rc = refuse_buffer(c, sb.len - 72, err, sizeof(err));
		CHECK(rc == -EBADMSG && strstr(err, "END says 2 sections"),
		      "dropped: rc %d \"%s\"", rc, err);
		free(c);
	}
	sbuf__free(&sb);
}

static void test_writer_errors(void)
{
	struct snap_writer w;
	struct sbuf sb;
	char path[256], err[256];
	static uint8_t big[200000];
	int fd, rc;

	sbuf__init(&sb);
	snapw__open_buffer(&w, &sb);
	CHECK(snapw__section(&w, SNAP_SECTION_END, "x", "", 0) == -EINVAL,
	      "type END must be refused");
	CHECK(snapw__section(&w, 5, "", "", 0) == -EINVAL, "empty name");
	CHECK(snapw__section(&w, 5, "0123456789012345678901234567890123",
			     "", 0) == -EINVAL,
	      "name too long");
	CHECK(snapw__section(&w, 5, "bad\nname", "", 0) == -EINVAL,
	      "unprintable name");
	CHECK(snapw__section(&w, 5, "0123456789012345678901234567890", "x",
			     1) == 0,
	      "31-char name is fine; caller errors do not poison the writer");
	CHECK(snapw__close(&w) == 0, "close after caller errors");
	CHECK(snapr__open_buffer(&(struct snap_reader){ 0 }, sb.data, sb.len,
				 err, sizeof(err)) == 0,
	      "result still valid: %s", err);
	CHECK(snapw__section(&w, 5, "late", "x", 1) == -EBADF,
	      "use after close");

	/* I/O errors are sticky.  A read-only fd fails every write. */
	path_for(path, sizeof(path), "ro.snap");
	write_file(path, "", 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	rc = snapw__open(&w, fd);
	CHECK_RC(rc, 0, "header is only buffered");
	rc = snapw__section(&w, 5, "small", "x", 1);
	CHECK_RC(rc, 0, "small sections are only buffered");
	rc = snapw__section(&w, 5, "big", big, sizeof(big));
	CHECK_RC(rc, -EBADF, "large section writes");
	rc = snapw__section(&w, 5, "after", "x", 1);
	CHECK_RC(rc, -EBADF, "sticky");
	rc = snapw__close(&w);
	CHECK_RC(rc, -EBADF, "close reports it");
	close(fd);

	fd = open(path, O_RDONLY | O_CLOEXEC);
	snapw__open(&w, fd);
	snapw__section(&w, 5, "small", "x", 1);
	rc = snapw__close(&w);
	CHECK_RC(rc, -EBADF, "error found only when close flushes");
	close(fd);

	rc = snapw__open(&w, -1);
	CHECK_RC(rc, -EBADF, "negative fd");
	CHECK(snapw__close(&w) == -EBADF, "close of a failed open");
	sbuf__free(&sb);
}

static void test_open_errors(void)
{
	struct snap_reader r;
	char path[256], err[256];
	int rc;

	path_for(path, sizeof(path), "does-not-exist.snap");
	rc = snapr__open_file(&r, path, err, sizeof(err));
	CHECK(rc == -ENOENT && strstr(err, "cannot open") &&
		      strstr(err, "does-not-exist.snap"),
	      "rc %d \"%s\"", rc, err);
	rc = snapr__open_file(&r, tmpdir, err, sizeof(err));
	CHECK(rc == -EINVAL && strstr(err, "not a regular file"),
	      "rc %d \"%s\"", rc, err);
	path_for(path, sizeof(path), "empty.snap");
	write_file(path, "", 0);
	rc = snapr__open_file(&r, path, err, sizeof(err));
	CHECK(rc == -EBADMSG && strstr(err, "empty"), "rc %d \"%s\"", rc,
	      err);
	snapr__close(&r);
}

static void cleanup(void)
{
	static const char *const leaves[] = { "small.snap", "big.snap",
					      "flip.snap",  "trunc.snap",
					      "ro.snap",    "empty.snap" };
	char path[256];

	for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		path_for(path, sizeof(path), leaves[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_round_trip_buffer_and_file();
	test_big_and_short_writes();
	test_pipe();
	test_every_byte_flip();
	test_every_truncation();
	test_messages();
	test_reorder_and_drop();
	test_writer_errors();
	test_open_errors();
	cleanup();
	if (failures) {
		fprintf(stderr, "test_snapshot: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_snapshot: all checks passed\n");
	return 0;
}
