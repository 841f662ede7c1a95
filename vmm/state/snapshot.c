/*
 * Snapshot container: a versioned file header, checksummed named sections
 * and an END record that pins down the section list and the total length.
 * Layout: see state.h.
 *
 * The reader verifies everything before it reports success, so code that
 * restores a VM (or applies a checkpoint) never sees a byte that was not
 * covered by a checksum that matched.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"

#define SNAP_END_NAME "END"
#define SNAP_END_PAYLOAD 16
#define SNAP_ALIGN 8
#define SNAP_CREATOR "ftvm"

/* Sections smaller than this are copied into the pending buffer; larger
 * ones are written from the caller's memory.  The buffer is flushed once
 * it holds this much, so the fd sees few, large writes. */
#define SNAP_COPY_MAX (64 * 1024)
#define SNAP_FLUSH_AT (256 * 1024)

/* iovecs handed to one writev() call (well under IOV_MAX). */
#define SNAP_IOV_BATCH 64

_Static_assert(SNAP_HEADER_SIZE % SNAP_ALIGN == 0, "header keeps alignment");
_Static_assert(SNAP_SECTION_HEADER_SIZE % SNAP_ALIGN == 0,
	       "section header keeps alignment");

static const uint8_t zero_pad[SNAP_ALIGN];

/* ------------------------------------------------------------ helpers */

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline size_t pad_len(uint64_t len)
{
	return (size_t)((SNAP_ALIGN - len % SNAP_ALIGN) % SNAP_ALIGN);
}

/* crc32c of the file header with its header_crc field taken as zero. */
static uint32_t header_crc(const uint8_t *h, size_t header_size)
{
	static const uint8_t zero[4];
	uint32_t crc;

	crc = crc32c(0, h, 16);
	crc = crc32c(crc, zero, 4);
	return crc32c(crc, h + 20, header_size - 20);
}

static bool valid_name(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strnlen(name, SNAP_NAME_LEN);
	if (n == 0 || n >= SNAP_NAME_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] < 0x20 || name[i] > 0x7e)
			return false;
	return true;
}

/* ------------------------------------------------------------- writer */

/*
 * Write every byte of iov[0..cnt) to fd.  Retries EINTR and short writes;
 * a short write can stop in the middle of an iovec, so the array (our own
 * copy) is advanced in place.
 */
static int write_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = writev(fd, iov, cnt);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/*
 * Gathers iovecs into batches for write_all().  Lets the section writer
 * describe [pending bytes][header][caller's iovecs...][padding] without
 * copying the caller's array or allocating.
 */
struct iov_batch {
	int fd;
	int cnt;
	int rc;
	struct iovec v[SNAP_IOV_BATCH];
};

static void batch_add(struct iov_batch *b, const void *p, size_t len)
{
	if (b->rc || len == 0)
		return;
	if (b->cnt == SNAP_IOV_BATCH) {
		b->rc = write_all(b->fd, b->v, b->cnt);
		b->cnt = 0;
		if (b->rc)
			return;
	}
	b->v[b->cnt].iov_base = (void *)p;
	b->v[b->cnt].iov_len = len;
	b->cnt++;
}

static int batch_flush(struct iov_batch *b)
{
	if (!b->rc && b->cnt)
		b->rc = write_all(b->fd, b->v, b->cnt);
	b->cnt = 0;
	return b->rc;
}

static int flush_pending(struct snap_writer *w)
{
	struct iovec v;
	int rc;

	if (w->fd < 0 || w->buf->len == 0)
		return 0;
	v.iov_base = w->buf->data;
	v.iov_len = w->buf->len;
	rc = write_all(w->fd, &v, 1);
	sbuf__reset(w->buf);
	return rc;
}

static void build_section_header(uint8_t *h, uint32_t type, const char *name,
				 uint64_t len, uint32_t payload_crc)
{
	memset(h, 0, SNAP_SECTION_HEADER_SIZE);
	put32(h + 0, SNAP_SECTION_MAGIC);
	put32(h + 4, type);
	memcpy(h + 8, name, strlen(name)); /* rest stays NUL */
	put64(h + 40, len);
	put32(h + 48, payload_crc);
	put32(h + 52, crc32c(0, h, 52));
}

/*
 * Append a section to the buffer.  The payload is copied and then
 * checksummed in chunks that are still in cache, so the source is read
 * once; the header, which needs the crc, is filled in last.  Reserving
 * first means nothing below can fail: the buffer never holds half a
 * section.
 */
#define SNAP_CRC_CHUNK (64 * 1024)

static int buffer_section(struct snap_writer *w, uint32_t type,
			  const char *name, const struct iovec *iov,
			  int iovcnt, uint64_t len, uint8_t h_out[4])
{
	size_t pad = pad_len(len), start = w->buf->len;
	uint32_t crc = 0;
	uint8_t *dst;
	int rc;

	if (len > SIZE_MAX - SNAP_SECTION_HEADER_SIZE - SNAP_ALIGN)
		return -ENOMEM;
	rc = sbuf__reserve(w->buf, SNAP_SECTION_HEADER_SIZE + (size_t)len +
					   pad);
	if (rc)
		return rc;
	dst = w->buf->data + start + SNAP_SECTION_HEADER_SIZE;
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *src = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left) {
			size_t n = left < SNAP_CRC_CHUNK ? left : SNAP_CRC_CHUNK;

			memcpy(dst, src, n);
			crc = crc32c(crc, dst, n);
			dst += n;
			src += n;
			left -= n;
		}
	}
	memset(dst, 0, pad);
	build_section_header(w->buf->data + start, type, name, len, crc);
	memcpy(h_out, w->buf->data + start + 52, 4);
	w->buf->len = start + SNAP_SECTION_HEADER_SIZE + (size_t)len + pad;
	return 0;
}

/* Write a large section straight from the caller's memory, together with
 * the pending bytes before it, in as few writev() calls as possible. */
static int direct_section(struct snap_writer *w, uint32_t type,
			  const char *name, const struct iovec *iov,
			  int iovcnt, uint64_t len, uint8_t h_out[4])
{
	uint8_t h[SNAP_SECTION_HEADER_SIZE];
	struct iov_batch b = { .fd = w->fd };
	uint32_t crc = 0;
	int rc;

	/* The header goes first on the wire and carries the crc, so this
	 * path reads the payload twice (crc, then the kernel's copy). */
	for (int i = 0; i < iovcnt; i++)
		crc = crc32c(crc, iov[i].iov_base, iov[i].iov_len);
	build_section_header(h, type, name, len, crc);
	memcpy(h_out, h + 52, 4);

	batch_add(&b, w->buf->data, w->buf->len);
	batch_add(&b, h, sizeof(h));
	for (int i = 0; i < iovcnt; i++)
		batch_add(&b, iov[i].iov_base, iov[i].iov_len);
	batch_add(&b, zero_pad, pad_len(len));
	rc = batch_flush(&b);
	sbuf__reset(w->buf);
	return rc;
}

/* Common tail of section writing, for both user sections and END. */
static int emit_section(struct snap_writer *w, uint32_t type,
			const char *name, const struct iovec *iov, int iovcnt)
{
	uint8_t hcrc[4];
	uint64_t len = 0;
	int rc;

	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > UINT64_MAX - len)
			return -EINVAL;
		len += iov[i].iov_len;
	}

	if (w->fd < 0 || len < SNAP_COPY_MAX) {
		rc = buffer_section(w, type, name, iov, iovcnt, len, hcrc);
		if (!rc && w->fd >= 0 && w->buf->len >= SNAP_FLUSH_AT)
			rc = flush_pending(w);
	} else {
		rc = direct_section(w, type, name, iov, iovcnt, len, hcrc);
	}
	if (rc)
		return rc;

	w->offset += SNAP_SECTION_HEADER_SIZE + len + pad_len(len);
	if (type != SNAP_SECTION_END) {
		/* END will pin down which sections came, in which order. */
		w->chain_crc = crc32c(w->chain_crc, hcrc, 4);
		w->nsections++;
	}
	return 0;
}

static int writer_start(struct snap_writer *w, int fd, struct sbuf *out)
{
	uint8_t h[SNAP_HEADER_SIZE] = { 0 };

	memset(w, 0, sizeof(*w));
	w->fd = fd;
	sbuf__init(&w->own);
	w->buf = out ? out : &w->own;

	memcpy(h, SNAP_MAGIC, 8);
	put32(h + 8, SNAP_FORMAT_VERSION);
	put32(h + 12, SNAP_HEADER_SIZE);
	put32(h + 20, 0); /* flags */
	memcpy(h + 24, SNAP_CREATOR, sizeof(SNAP_CREATOR) - 1);
	put32(h + 16, header_crc(h, SNAP_HEADER_SIZE));

	w->error = sbuf__append(w->buf, h, sizeof(h));
	if (!w->error)
		w->offset = SNAP_HEADER_SIZE;
	return w->error;
}

int snapw__open(struct snap_writer *w, int fd)
{
	if (fd < 0) {
		memset(w, 0, sizeof(*w));
		w->fd = -1;
		w->buf = &w->own;
		w->error = -EBADF;
		return -EBADF;
	}
	return writer_start(w, fd, NULL);
}

int snapw__open_buffer(struct snap_writer *w, struct sbuf *out)
{
	return writer_start(w, -1, out);
}

int snapw__sectionv(struct snap_writer *w, uint32_t type, const char *name,
		    const struct iovec *iov, int iovcnt)
{
	if (w->error)
		return w->error;
	/* Caller mistakes are reported but do not poison the writer:
	 * nothing has been written yet. */
	if (type == SNAP_SECTION_END || !valid_name(name) || iovcnt < 0 ||
	    (iovcnt > 0 && !iov))
		return -EINVAL;
	if (w->nsections == UINT32_MAX)
		return -EOVERFLOW;
	w->error = emit_section(w, type, name, iov, iovcnt);
	return w->error;
}

int snapw__section(struct snap_writer *w, uint32_t type, const char *name,
		   const void *data, size_t len)
{
	struct iovec v = { .iov_base = (void *)data, .iov_len = len };

	if (len && !data)
		return -EINVAL;
	return snapw__sectionv(w, type, name, &v, len ? 1 : 0);
}

int snapw__close(struct snap_writer *w)
{
	uint8_t end[SNAP_END_PAYLOAD];
	struct iovec v = { .iov_base = end, .iov_len = sizeof(end) };
	int rc = w->error;

	if (!rc) {
		put32(end + 0, w->nsections);
		put32(end + 4, w->chain_crc);
		put64(end + 8, w->offset + SNAP_SECTION_HEADER_SIZE +
				       SNAP_END_PAYLOAD);
		rc = emit_section(w, SNAP_SECTION_END, SNAP_END_NAME, &v, 1);
	}
	if (!rc)
		rc = flush_pending(w);
	sbuf__free(&w->own);
	w->buf = &w->own;
	w->error = rc ? rc : -EBADF; /* closed: further use is an error */
	return rc;
}

/* ------------------------------------------------------------- reader */

__attribute__((format(printf, 4, 5))) static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Checks the 32-byte name field of a section whose header crc matched. */
static bool valid_name_field(const uint8_t *f)
{
	size_t n = strnlen((const char *)f, SNAP_NAME_LEN);

	if (n == 0 || n >= SNAP_NAME_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (f[i] < 0x20 || f[i] > 0x7e)
			return false;
	for (size_t i = n; i < SNAP_NAME_LEN; i++)
		if (f[i])
			return false;
	return true;
}

static int check_file_header(struct snap_reader *r, char *err, size_t errlen)
{
	const uint8_t *h = r->base;
	size_t size = r->size;
	uint32_t version, hsize;
	size_t magic_len = size < 8 ? size : 8;

	if (memcmp(h, SNAP_MAGIC, magic_len) != 0)
		return fail(err, errlen, -EBADMSG,
			    "not an ftvm snapshot (bad magic)");
	if (size < 20)
		return fail(err, errlen, -EBADMSG,
			    "snapshot is truncated: the file header needs %d "
			    "bytes but the file has %zu",
			    SNAP_HEADER_SIZE, size);
	version = get32(h + 8);
	hsize = get32(h + 12);

	/* Versions keep magic, version, header_size and header_crc where
	 * they are, so the crc can be checked before the version: a valid
	 * crc with another version means "newer ftvm", not "corrupt". */
	if (hsize < SNAP_HEADER_SIZE || hsize > 4096 || hsize % SNAP_ALIGN)
		return fail(err, errlen, -EBADMSG,
			    "snapshot file header is corrupt (header size %u)",
			    hsize);
	if (size < hsize)
		return fail(err, errlen, -EBADMSG,
			    "snapshot is truncated: the file header needs %u "
			    "bytes but the file has %zu",
			    hsize, size);
	if (header_crc(h, hsize) != get32(h + 16))
		return fail(err, errlen, -EBADMSG,
			    "snapshot file header is corrupt (checksum "
			    "mismatch)");
	if (version != SNAP_FORMAT_VERSION)
		return fail(err, errlen, -EPROTO,
			    "snapshot format version %u is not supported (this "
			    "ftvm reads version %d)",
			    version, SNAP_FORMAT_VERSION);
	if (hsize != SNAP_HEADER_SIZE)
		return fail(err, errlen, -EBADMSG,
			    "snapshot file header is corrupt (header size %u "
			    "in a version %u file)",
			    hsize, version);
	r->flags = get32(h + 20);
	if (r->flags)
		return fail(err, errlen, -EPROTO,
			    "snapshot uses flags 0x%x this ftvm does not know",
			    r->flags);
	for (int i = 56; i < 64; i++)
		if (h[i])
			return fail(err, errlen, -EBADMSG,
				    "snapshot file header is corrupt (reserved "
				    "bytes set)");
	r->format_version = version;
	memcpy(r->creator, h + 24, 32);
	r->creator[32] = '\0';
	return 0;
}

/*
 * Walk and verify every section.  Each step checks, in this order, that
 * the header is there, that it is a section header, that its own crc
 * matches (only then are its name and length believed), that the payload
 * is there, and that the payload crc matches.
 */
static int check_sections(struct snap_reader *r, char *err, size_t errlen)
{
	const uint8_t *base = r->base;
	size_t size = r->size, off = SNAP_HEADER_SIZE;
	uint32_t count = 0, chain = 0;

	for (;;) {
		const uint8_t *h = base + off;
		const char *name = (const char *)h + 8;
		uint64_t len;
		size_t pad, room;
		uint32_t type;

		if (off == size)
			return fail(err, errlen, -EBADMSG,
				    "snapshot is truncated: no END section");
		if (size - off < SNAP_SECTION_HEADER_SIZE)
			return fail(err, errlen, -EBADMSG,
				    "snapshot is truncated: a section header "
				    "needs %d bytes at offset %zu but the file "
				    "ends at %zu",
				    SNAP_SECTION_HEADER_SIZE, off, size);
		if (get32(h) != SNAP_SECTION_MAGIC)
			return fail(err, errlen, -EBADMSG,
				    "snapshot is corrupt: no section header at "
				    "offset %zu (bad magic)",
				    off);
		if (crc32c(0, h, 52) != get32(h + 52))
			return fail(err, errlen, -EBADMSG,
				    "snapshot is corrupt: section header at "
				    "offset %zu fails its checksum",
				    off);
		if (!valid_name_field(h + 8))
			return fail(err, errlen, -EBADMSG,
				    "snapshot is corrupt: section header at "
				    "offset %zu has an invalid name",
				    off);
		type = get32(h + 4);
		len = get64(h + 40);
		pad = pad_len(len);
		off += SNAP_SECTION_HEADER_SIZE;
		room = size - off;
		if (len > room || pad > room - len)
			return fail(err, errlen, -EBADMSG,
				    "snapshot is truncated: section '%s' needs "
				    "%llu bytes at offset %zu but the file ends "
				    "at %zu",
				    name, (unsigned long long)(len + pad), off,
				    size);
		if (crc32c(0, base + off, (size_t)len) != get32(h + 48))
			return fail(err, errlen, -EBADMSG,
				    "section '%s' is corrupt (checksum mismatch)",
				    name);
		for (size_t i = 0; i < pad; i++)
			if (base[off + len + i])
				return fail(err, errlen, -EBADMSG,
					    "section '%s' is corrupt (padding "
					    "not zero)",
					    name);

		if (type == SNAP_SECTION_END) {
			const uint8_t *e = base + off;

			if (len != SNAP_END_PAYLOAD ||
			    strcmp(name, SNAP_END_NAME) != 0)
				return fail(err, errlen, -EBADMSG,
					    "snapshot is corrupt: malformed END "
					    "section at offset %zu",
					    off - SNAP_SECTION_HEADER_SIZE);
			off += (size_t)len + pad;
			if (get32(e) != count)
				return fail(err, errlen, -EBADMSG,
					    "snapshot is corrupt: END says %u "
					    "sections, the file has %u",
					    get32(e), count);
			if (get32(e + 4) != chain)
				return fail(err, errlen, -EBADMSG,
					    "snapshot is corrupt: sections are "
					    "not the ones END lists (chain "
					    "checksum mismatch)");
			if (get64(e + 8) != off)
				return fail(err, errlen, -EBADMSG,
					    "snapshot is corrupt: END says the "
					    "snapshot is %llu bytes, it ends at "
					    "%zu",
					    (unsigned long long)get64(e + 8),
					    off);
			if (off != size)
				return fail(err, errlen, -EBADMSG,
					    "snapshot is corrupt: %zu unexpected "
					    "bytes after the END section",
					    size - off);
			r->nsections = count;
			return 0;
		}

		off += (size_t)len + pad;
		chain = crc32c(chain, h + 52, 4);
		if (++count == UINT32_MAX)
			return fail(err, errlen, -EBADMSG,
				    "snapshot is corrupt: too many sections");
	}
}

static int reader_verify(struct snap_reader *r, char *err, size_t errlen)
{
	int rc;

	if (r->size == 0)
		return fail(err, errlen, -EBADMSG,
			    "snapshot is truncated: the file is empty");
	rc = check_file_header(r, err, errlen);
	if (rc)
		return rc;
	return check_sections(r, err, errlen);
}

int snapr__open_buffer(struct snap_reader *r, const void *data, size_t len,
		       char *err, size_t errlen)
{
	int rc;

	memset(r, 0, sizeof(*r));
	if (err && errlen)
		err[0] = '\0';
	if (!data && len)
		return fail(err, errlen, -EINVAL, "no snapshot data");
	r->base = data;
	r->size = len;
	rc = reader_verify(r, err, errlen);
	if (rc)
		memset(r, 0, sizeof(*r));
	return rc;
}

int snapr__open_file(struct snap_reader *r, const char *path, char *err,
		     size_t errlen)
{
	struct stat st;
	void *map;
	int fd, rc;

	memset(r, 0, sizeof(*r));
	if (err && errlen)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return fail(err, errlen, rc, "cannot open '%s': %s", path,
			    strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return fail(err, errlen, rc, "cannot stat '%s': %s", path,
			    strerror(-rc));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(err, errlen, -EINVAL, "'%s' is not a regular file",
			    path);
	}
	if (st.st_size == 0) {
		close(fd);
		return fail(err, errlen, -EBADMSG,
			    "snapshot is truncated: the file is empty");
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		close(fd);
		return fail(err, errlen, -EFBIG, "'%s' is too large", path);
	}
	/* MAP_POPULATE: verification reads every byte anyway, so fault it
	 * all in with one call instead of page by page. */
	map = mmap(NULL, (size_t)st.st_size, PROT_READ,
		   MAP_PRIVATE | MAP_POPULATE, fd, 0);
	rc = map == MAP_FAILED ? -errno : 0;
	close(fd); /* the mapping keeps the file */
	if (rc)
		return fail(err, errlen, rc, "cannot map '%s': %s", path,
			    strerror(-rc));

	r->base = map;
	r->size = (size_t)st.st_size;
	r->map_len = (size_t)st.st_size;
	rc = reader_verify(r, err, errlen);
	if (rc)
		snapr__close(r);
	return rc;
}

int snapr__next(const struct snap_reader *r, struct snap_section *s)
{
	size_t off = s->next_off ? s->next_off : SNAP_HEADER_SIZE;
	const uint8_t *h;
	uint64_t len;

	/* Everything below was verified at open, so no checks beyond
	 * "is this the END". */
	if (!r->base || off + SNAP_SECTION_HEADER_SIZE > r->size)
		return -ENOENT;
	h = r->base + off;
	if (get32(h + 4) == SNAP_SECTION_END)
		return -ENOENT;
	len = get64(h + 40);
	s->type = get32(h + 4);
	s->name = (const char *)h + 8;
	s->data = h + SNAP_SECTION_HEADER_SIZE;
	s->len = (size_t)len;
	s->next_off = off + SNAP_SECTION_HEADER_SIZE + (size_t)len + pad_len(len);
	return 0;
}

int snapr__find(const struct snap_reader *r, uint32_t type, const char *name,
		const void **data, size_t *len)
{
	struct snap_section s = SNAP_SECTION_ITER_INIT;

	while (snapr__next(r, &s) == 0) {
		if (s.type != type || (name && strcmp(s.name, name) != 0))
			continue;
		if (data)
			*data = s.data;
		if (len)
			*len = s.len;
		return 0;
	}
	return -ENOENT;
}

void snapr__close(struct snap_reader *r)
{
	if (r->map_len)
		munmap((void *)r->base, r->map_len);
	memset(r, 0, sizeof(*r));
}
