/*
 * vmm/state: VM-state serialisation.
 *
 * Four layers, each usable on its own:
 *
 *   sbuf / sreader   growable output buffer and bounds-checked input cursor
 *   crc32c           CRC-32C (Castagnoli), hardware accelerated where possible
 *   vmstate          declarative per-device field tables and one generic
 *                    save/load engine (QEMU VMState-like, self-describing)
 *   snap_writer/     a checksummed, versioned container of named sections,
 *   snap_reader      used for `savevm FILE` / `--restore FILE` and reusable
 *                    for fault-tolerance checkpoint messages
 *
 * Trust rule: nothing read from a stream reaches the caller's objects until
 * it has been checked.  vmstate__load() decodes into a scratch copy and only
 * copies it back when the whole stream was accepted; snapr__open_*() verifies
 * every header, every checksum and the END record before it returns success.
 * On failure the caller's state is exactly what it was before the call.
 *
 * All functions return 0 or a negative errno unless documented otherwise:
 *   -EBADMSG  malformed, corrupt or truncated input
 *   -EPROTO   input written by another (unsupported) version
 *   -ENOMEM   out of memory
 *   -EINVAL   caller error (bad argument, broken field table)
 *
 * Byte order: every integer this module writes is little-endian.  vmstate
 * fields are copied as raw host bytes, which is little-endian on x86-64 (the
 * only host KVM ftvm runs on); vmstate.c asserts this at compile time.
 *
 * Thread safety: there is no global mutable state.  Objects (sbuf, writer,
 * reader) are not internally locked; one thread uses one object at a time.
 * A snap_reader may be read (find/next) from several threads at once.
 */
#ifndef FTVM_VMM_STATE_STATE_H
#define FTVM_VMM_STATE_STATE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

/* ------------------------------------------------------------------------
 * sbuf: growable byte buffer
 * ------------------------------------------------------------------------ */

struct sbuf {
	uint8_t *data;
	size_t len, cap;
};

void sbuf__init(struct sbuf *sb);		/* empty, no allocation */
void sbuf__free(struct sbuf *sb);		/* frees and re-inits */
void sbuf__reset(struct sbuf *sb);		/* len = 0, keeps the memory */
/* Make room for at least `extra` more bytes beyond len: 0 or -ENOMEM. */
int sbuf__reserve(struct sbuf *sb, size_t extra);
int sbuf__append(struct sbuf *sb, const void *p, size_t n);
int sbuf__append_u8(struct sbuf *sb, uint8_t v);
int sbuf__append_u32(struct sbuf *sb, uint32_t v);	/* little-endian */
int sbuf__append_u64(struct sbuf *sb, uint64_t v);	/* little-endian */

/* ------------------------------------------------------------------------
 * sreader: bounds-checked little-endian reader over a borrowed buffer
 * ------------------------------------------------------------------------ */

struct sreader {
	const uint8_t *p;
	size_t len, pos;
};

static inline void sreader__init(struct sreader *r, const void *p, size_t len)
{
	r->p = (const uint8_t *)p;
	r->len = len;
	r->pos = 0;
}

static inline size_t sreader__remaining(const struct sreader *r)
{
	return r->len - r->pos;
}

/*
 * Each returns 0, or -EBADMSG without moving when fewer bytes remain.
 * Inline because every decoder calls them several times per field.
 */
static inline int sreader__view(struct sreader *r, const void **out, size_t n)
{
	if (n > r->len - r->pos)
		return -EBADMSG;
	*out = r->p + r->pos;	/* zero-copy: points into the buffer */
	r->pos += n;
	return 0;
}

static inline int sreader__bytes(struct sreader *r, void *out, size_t n)
{
	const void *src;

	if (sreader__view(r, &src, n))
		return -EBADMSG;
	if (n)
		memcpy(out, src, n);
	return 0;
}

static inline int sreader__u8(struct sreader *r, uint8_t *out)
{
	return sreader__bytes(r, out, 1);
}

static inline int sreader__u32(struct sreader *r, uint32_t *out)
{
	const void *src;
	const uint8_t *b;

	if (sreader__view(r, &src, 4))
		return -EBADMSG;
	b = (const uint8_t *)src;
	*out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
	return 0;
}

static inline int sreader__u64(struct sreader *r, uint64_t *out)
{
	const void *src;
	const uint8_t *b;
	uint64_t v = 0;

	if (sreader__view(r, &src, 8))
		return -EBADMSG;
	b = (const uint8_t *)src;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------------
 * crc32c: CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78)
 * ------------------------------------------------------------------------
 *
 * Convention (the one zlib's crc32() uses): pass 0 to start, pass the
 * previous result to continue.  The initial ~0 and the final ~0 are applied
 * inside, so
 *	crc32c(0, "123456789", 9) == 0xE3069283		(the standard check value)
 *	crc32c(crc32c(0, a, n), b, m) == crc32c(0, a || b, n + m)
 *
 * Uses the SSE4.2 crc32 instruction (three interleaved streams combined
 * with PCLMULQDQ when available) after a runtime CPU check, else a portable
 * slicing-by-8 table.  All paths give identical results.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* For tests and benchmarks: force one implementation. */
enum crc32c_impl {
	CRC32C_IMPL_SW,		/* portable slicing-by-8 */
	CRC32C_IMPL_SSE42,	/* crc32 instruction, one stream */
	CRC32C_IMPL_SSE42_3WAY,	/* crc32 x 3 streams + pclmulqdq combine */
};
bool crc32c_impl_supported(enum crc32c_impl impl);
/* Same convention as crc32c(); an unsupported impl falls back to SW. */
uint32_t crc32c_with(enum crc32c_impl impl, uint32_t crc, const void *buf,
		     size_t len);

/* ------------------------------------------------------------------------
 * vmstate: declarative field tables and the generic save/load engine
 * ------------------------------------------------------------------------
 *
 * A device describes the part of its struct that is guest-visible state:
 *
 *	static const struct vmstate_field vq_fields[] = {
 *		VMSTATE_FIELD(struct virtq, size),
 *		VMSTATE_FIELD(struct virtq, desc_addr),
 *		VMSTATE_FIELD_V(struct virtq, event_idx, 2),	// added in v2
 *	};
 *	static const struct vmstate_desc vq_desc =
 *		VMSTATE_DESC("virtq", struct virtq, 2, 1, vq_fields);
 *
 *	static const struct vmstate_field blk_fields[] = {
 *		VMSTATE_FIELD(struct vblk, status),
 *		VMSTATE_STRUCT_ARRAY(struct vblk, vqs, vq_desc),
 *	};
 *
 * Members not listed (host fds, pointers, locks) are never touched by load.
 *
 * Versions: a desc has a current `version` (what save writes) and accepts
 * streams from `min_version` up to `version`.  A field's `version_added` is
 * the first desc version that saved it (0 or 1: always present).  Loading
 * an older stream leaves fields it predates at whatever the object already
 * holds, so initialise the object to its defaults before loading.
 *
 * Stream encoding (all integers little-endian), recursively:
 *	desc   := u8 name_len, name, u32 version, u32 field_count, field*
 *	field  := u8 name_len, name, u32 size, payload[size]
 *	payload:= raw member bytes                       (plain field)
 *	        | u32 count, desc[count]                 (struct array)
 * The stream carries no checksum of its own: it travels inside a
 * checksummed snapshot section or checkpoint message.
 *
 * Loading is strict: the desc name must match; a stream version outside
 * [min_version, version] is refused (-EPROTO); an unknown field, a repeated
 * field, a size or element-count mismatch, a field the stream's version
 * should not have, a missing field the stream's version should have, and
 * trailing bytes are all refused (-EBADMSG).  Bool members: a raw byte other
 * than 0/1 is UB to read, so prefer uint8_t or check it in validate().
 */

#define VMSTATE_MAX_FIELDS 256	/* per desc (load tracks them in a bitmap) */
#define VMSTATE_MAX_DEPTH 8	/* struct-array nesting */
#define VMSTATE_NAME_MAX 255	/* desc and field names, bytes */

struct vmstate_desc;

struct vmstate_field {
	const char *name;
	uint32_t offset;	/* offsetof() in the parent struct */
	uint32_t size;		/* bytes (for arrays: whole array) */
	uint32_t version_added;
	const struct vmstate_desc *sub; /* non-NULL: array of nested structs */
	uint32_t count;		/* sub only: number of elements */
	uint32_t stride;	/* sub only: sizeof one element */
};

struct vmstate_desc {
	const char *name;
	uint32_t version;
	uint32_t min_version;
	uint32_t struct_size;
	const struct vmstate_field *fields;
	uint32_t nfields;
	/*
	 * Optional semantic check run on the fully decoded scratch copy before
	 * it is committed (e.g. "queue size is a power of two <= 256").
	 * Return 0 to accept, or a negative errno (-EBADMSG suggested) after
	 * writing a message to err.  Only the top-level desc's hook runs; a
	 * parent checks its nested arrays.
	 */
	int (*validate)(const void *obj, char *err, size_t errlen);
};

#define VMSTATE__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VMSTATE__MEMBER_SIZE(type, member) sizeof(((type *)0)->member)

/* A plain member (scalar, fixed array of scalars, or nested POD struct). */
#define VMSTATE_FIELD_V(type, member, version)                               \
	{                                                                    \
		.name = #member,                                             \
		.offset = (uint32_t)offsetof(type, member),                  \
		.size = (uint32_t)VMSTATE__MEMBER_SIZE(type, member),        \
		.version_added = (version),                                  \
	}
#define VMSTATE_FIELD(type, member) VMSTATE_FIELD_V(type, member, 0)

/* A fixed array of structs, each described by `subdesc` (an object). */
#define VMSTATE_STRUCT_ARRAY_V(type, member, subdesc, version)               \
	{                                                                    \
		.name = #member,                                             \
		.offset = (uint32_t)offsetof(type, member),                  \
		.size = (uint32_t)VMSTATE__MEMBER_SIZE(type, member),        \
		.version_added = (version),                                  \
		.sub = &(subdesc),                                           \
		.count = (uint32_t)VMSTATE__ARRAY_SIZE(((type *)0)->member), \
		.stride = (uint32_t)VMSTATE__MEMBER_SIZE(type, member[0]),   \
	}
#define VMSTATE_STRUCT_ARRAY(type, member, subdesc)                          \
	VMSTATE_STRUCT_ARRAY_V(type, member, subdesc, 0)

/* One nested struct described by `subdesc` (an array of one). */
#define VMSTATE_STRUCT_V(type, member, subdesc, version)                     \
	{                                                                    \
		.name = #member,                                             \
		.offset = (uint32_t)offsetof(type, member),                  \
		.size = (uint32_t)VMSTATE__MEMBER_SIZE(type, member),        \
		.version_added = (version),                                  \
		.sub = &(subdesc),                                           \
		.count = 1,                                                  \
		.stride = (uint32_t)VMSTATE__MEMBER_SIZE(type, member),      \
	}
#define VMSTATE_STRUCT(type, member, subdesc)                                \
	VMSTATE_STRUCT_V(type, member, subdesc, 0)

#define VMSTATE_DESC_VALIDATED(desc_name, type, ver, min_ver, fields_array,  \
			       validate_fn)                                  \
	{                                                                    \
		.name = (desc_name),                                         \
		.version = (ver),                                            \
		.min_version = (min_ver),                                    \
		.struct_size = (uint32_t)sizeof(type),                       \
		.fields = (fields_array),                                    \
		.nfields = (uint32_t)VMSTATE__ARRAY_SIZE(fields_array),      \
		.validate = (validate_fn),                                   \
	}
#define VMSTATE_DESC(desc_name, type, ver, min_ver, fields_array)            \
	VMSTATE_DESC_VALIDATED(desc_name, type, ver, min_ver, fields_array,  \
			       NULL)

/*
 * Append obj's state, as described by d at d->version, to out.
 * -EINVAL if the table is inconsistent (field outside struct_size, stride
 * != sub->struct_size, name too long, ...), -ENOMEM.  On error out->len is
 * restored to its value on entry.
 */
int vmstate__save(const struct vmstate_desc *d, const void *obj,
		  struct sbuf *out);

/*
 * Load exactly `len` bytes of stream into obj.  All-or-nothing: decoding
 * happens in a scratch copy of obj and is copied back only on success, so
 * on any error obj is unchanged.  err (may be NULL) receives a message
 * naming the desc and field, e.g.
 *   "virtio-blk: field 'queue_size' has 4 bytes in the stream, 2 expected"
 * obj must not change concurrently (the whole struct is copied back).
 */
int vmstate__load(const struct vmstate_desc *d, void *obj, const uint8_t *in,
		  size_t len, char *err, size_t errlen);

/* ------------------------------------------------------------------------
 * Snapshot container
 * ------------------------------------------------------------------------
 *
 * Format version 1 (little-endian):
 *
 *   file header, 64 bytes
 *	 0  char magic[8]       "FTVMSNAP"
 *	 8  u32  format_version 1
 *	12  u32  header_size    64 (lets a reader check a newer header's crc)
 *	16  u32  header_crc     crc32c of header_size bytes, this field as 0
 *	20  u32  flags          0 (no flags defined; unknown flags refused)
 *	24  char creator[32]    NUL-padded, informational
 *	56  u8   reserved[8]    0
 *
 *   section, repeated: 56-byte header, payload, zero padding to 8 bytes
 *	 0  u32  magic          'SECT' (0x54434553)
 *	 4  u32  type           enum snap_section_type or a caller value
 *	 8  char name[32]       NUL-terminated, NUL-padded, printable ASCII
 *	40  u64  payload_len
 *	48  u32  payload_crc    crc32c of the payload
 *	52  u32  header_crc     crc32c of bytes 0..51 of this header
 *
 *   END section: type SNAP_SECTION_END, name "END", 16-byte payload
 *	 0  u32  section_count  sections before END
 *	 4  u32  chain_crc      crc32c over the header_crc of each of them, in
 *	                        order (detects dropped/reordered sections)
 *	 8  u64  total_len      file length including END; nothing may follow
 *
 * Payloads start 8-byte aligned relative to the start of the snapshot.
 * Section (type, name) pairs are not required to be unique; snapr__find()
 * returns the first.
 */

#define SNAP_MAGIC "FTVMSNAP"
#define SNAP_FORMAT_VERSION 1
#define SNAP_HEADER_SIZE 64
#define SNAP_SECTION_HEADER_SIZE 56
#define SNAP_SECTION_MAGIC 0x54434553u /* "SECT" in file byte order */
#define SNAP_NAME_LEN 32	/* including the terminating NUL */

enum snap_section_type {
	SNAP_SECTION_END = 0,	/* reserved for the trailer */
	SNAP_SECTION_META = 1,	/* free-form description of the VM */
	SNAP_SECTION_RAM = 2,	/* guest memory */
	SNAP_SECTION_CPU = 3,	/* one vCPU, vmstate-encoded */
	SNAP_SECTION_DEVICE = 4, /* one device, vmstate-encoded */
	SNAP_SECTION_USER = 0x1000, /* first value free for other users */
};

/*
 * Writer.  Small sections are gathered in an internal buffer and written in
 * large chunks; a large section is written straight from the caller's
 * memory with writev(), together with whatever was gathered before it.
 * Short writes and EINTR are retried; the fd must be blocking.  The first
 * error is sticky: every later call returns it.  The writer never closes or
 * fsyncs the fd; for an atomic `savevm`, write a temporary file, fsync it
 * and rename() it over the target.
 */
struct snap_writer {
	int fd;			/* -1 when writing to a buffer */
	struct sbuf *buf;	/* where bytes gather: &own or the caller's */
	struct sbuf own;	/* fd mode: pending bytes not yet written */
	uint64_t offset;	/* bytes of snapshot produced so far */
	uint32_t nsections;
	uint32_t chain_crc;	/* running crc32c over section header crcs */
	int error;		/* first error, 0 if none */
};

int snapw__open(struct snap_writer *w, int fd);
/* Build the snapshot in memory, appended to out (e.g. a checkpoint). */
int snapw__open_buffer(struct snap_writer *w, struct sbuf *out);
/* name: 1..31 printable ASCII chars; type != SNAP_SECTION_END. */
int snapw__section(struct snap_writer *w, uint32_t type, const char *name,
		   const void *data, size_t len);
/* Gather variant: the payload is the concatenation of iov[0..iovcnt). */
int snapw__sectionv(struct snap_writer *w, uint32_t type, const char *name,
		    const struct iovec *iov, int iovcnt);
/*
 * Write END and flush.  Always releases the writer's memory; returns the
 * sticky error if there was one (the output is then incomplete and will be
 * refused by any reader).
 */
int snapw__close(struct snap_writer *w);

/*
 * Reader.  open_* verifies the whole snapshot before returning 0; after
 * that, find/next only hand out verified data, pointing into the mapping or
 * buffer (valid until snapr__close; for open_buffer, while the caller's
 * buffer lives and is unchanged).  On failure *r is left closed and err
 * says what is wrong, e.g.
 *   "not an ftvm snapshot (bad magic)"
 *   "snapshot format version 7 is not supported (this ftvm reads version 1)"
 *   "section 'ram' is corrupt (checksum mismatch)"
 *   "snapshot is truncated: section 'cpu0' needs 1234 bytes at offset 5678
 *    but the file ends at 6000"
 *   "snapshot is truncated: no END section"
 * The file must not be modified while it is open (the mapping would change
 * under the verified view); savevm's write-then-rename guarantees this.
 */
struct snap_reader {
	const uint8_t *base;	/* the snapshot */
	size_t size;
	size_t map_len;		/* non-zero: base is our mmap of this length */
	uint32_t format_version;
	uint32_t flags;
	uint32_t nsections;	/* not counting END */
	char creator[SNAP_NAME_LEN + 1];
};

/* One section, as returned by snapr__next(). */
struct snap_section {
	uint32_t type;
	const char *name;	/* NUL-terminated, inside the snapshot */
	const void *data;
	size_t len;
	size_t next_off;	/* iteration cursor; 0 = start */
};
#define SNAP_SECTION_ITER_INIT { .next_off = 0 }

int snapr__open_file(struct snap_reader *r, const char *path, char *err,
		     size_t errlen);
int snapr__open_buffer(struct snap_reader *r, const void *data, size_t len,
		       char *err, size_t errlen);
/* name NULL matches any name.  0, or -ENOENT. */
int snapr__find(const struct snap_reader *r, uint32_t type, const char *name,
		const void **data, size_t *len);
/*
 * Iterate in file order, END excluded:
 *	struct snap_section s = SNAP_SECTION_ITER_INIT;
 *	while (snapr__next(r, &s) == 0) ...
 * Returns 0 with *s filled, or -ENOENT after the last section.
 */
int snapr__next(const struct snap_reader *r, struct snap_section *s);
void snapr__close(struct snap_reader *r);

#endif /* FTVM_VMM_STATE_STATE_H */
