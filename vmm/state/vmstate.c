/*
 * The generic vmstate engine: walks a device's field table to save its
 * state as a self-describing stream, and to load such a stream back,
 * refusing anything it cannot account for.  Encoding: see state.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

/* Fields are copied as raw host bytes; the stream is defined as
 * little-endian, so the host must be. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "vmstate copies fields as little-endian host bytes");

/* Scratch copies up to this size live on the stack: a load of a typical
 * device then costs no allocation. */
#define VMSTATE_STACK_SCRATCH 1024

/* Room for nested error messages while they are being prefixed. */
#define VMSTATE_ERR_MAX 512

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

/* Copy a name taken from the stream into something safe to print. */
static void printable(char *out, size_t outlen, const uint8_t *p, size_t n)
{
	size_t i;

	if (n > outlen - 1)
		n = outlen - 1;
	for (i = 0; i < n; i++)
		out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
	out[i] = '\0';
}

static bool name_eq(const char *name, const uint8_t *p, size_t n)
{
	return strlen(name) == n && memcmp(name, p, n) == 0;
}

/*
 * Check that a table can be trusted before we let it address memory:
 * every field inside struct_size, nested strides matching the nested
 * struct, names encodable, no nesting loops.  Also computes the encoded
 * size, so save can reserve once.  Messages are for the developer who
 * wrote the table.
 */
static int check_desc(const struct vmstate_desc *d, unsigned depth,
		      uint64_t *enc_size, char *err, size_t errlen)
{
	uint64_t total;
	size_t nlen;

	if (!d || !d->name)
		return fail(err, errlen, -EINVAL, "vmstate: desc without a name");
	if (depth >= VMSTATE_MAX_DEPTH)
		return fail(err, errlen, -EINVAL,
			    "%s: nested more than %d levels deep", d->name,
			    VMSTATE_MAX_DEPTH);
	nlen = strlen(d->name);
	if (nlen == 0 || nlen > VMSTATE_NAME_MAX)
		return fail(err, errlen, -EINVAL, "%s: bad desc name length",
			    d->name);
	if (d->min_version > d->version)
		return fail(err, errlen, -EINVAL,
			    "%s: min_version %u > version %u", d->name,
			    d->min_version, d->version);
	if (d->nfields > VMSTATE_MAX_FIELDS || (d->nfields && !d->fields))
		return fail(err, errlen, -EINVAL, "%s: bad field list (%u)",
			    d->name, d->nfields);

	total = 1 + nlen + 4 + 4;
	for (uint32_t i = 0; i < d->nfields; i++) {
		const struct vmstate_field *f = &d->fields[i];
		uint64_t payload;
		size_t flen = f->name ? strlen(f->name) : 0;

		if (flen == 0 || flen > VMSTATE_NAME_MAX)
			return fail(err, errlen, -EINVAL,
				    "%s: field %u has a bad name", d->name, i);
		if (f->version_added > d->version)
			return fail(err, errlen, -EINVAL,
				    "%s: field '%s' added in version %u > %u",
				    d->name, f->name, f->version_added,
				    d->version);
		if (f->sub) {
			uint64_t sub_size = 0;
			int rc;

			if (f->count == 0 || f->stride != f->sub->struct_size ||
			    (uint64_t)f->offset +
					    (uint64_t)f->count * f->stride >
				    d->struct_size)
				return fail(err, errlen, -EINVAL,
					    "%s: field '%s': bad struct array "
					    "(offset %u, %u x %u bytes, struct "
					    "%u bytes)",
					    d->name, f->name, f->offset,
					    f->count, f->stride,
					    d->struct_size);
			rc = check_desc(f->sub, depth + 1, &sub_size, err,
					errlen);
			if (rc)
				return rc;
			payload = 4 + (uint64_t)f->count * sub_size;
		} else {
			if (f->size == 0 ||
			    (uint64_t)f->offset + f->size > d->struct_size)
				return fail(err, errlen, -EINVAL,
					    "%s: field '%s' (offset %u, %u "
					    "bytes) outside the %u-byte struct",
					    d->name, f->name, f->offset,
					    f->size, d->struct_size);
			payload = f->size;
		}
		if (payload > UINT32_MAX)
			return fail(err, errlen, -EINVAL,
				    "%s: field '%s' too large to encode",
				    d->name, f->name);
		total += 1 + flen + 4 + payload;
	}
	*enc_size = total;
	return 0;
}

/* ---------------------------------------------------------------- save */

static inline uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
	return p + 4;
}

static inline uint8_t *put_name(uint8_t *p, const char *name)
{
	size_t n = strlen(name);

	*p++ = (uint8_t)n;
	memcpy(p, name, n);
	return p + n;
}

/* Writes into memory check_desc() sized, so no bounds checks here. */
static uint8_t *save_desc(const struct vmstate_desc *d, const uint8_t *obj,
			  uint8_t *p)
{
	p = put_name(p, d->name);
	p = put_u32(p, d->version);
	p = put_u32(p, d->nfields);
	for (uint32_t i = 0; i < d->nfields; i++) {
		const struct vmstate_field *f = &d->fields[i];
		uint8_t *size_at;

		p = put_name(p, f->name);
		size_at = p;
		p += 4;
		if (f->sub) {
			p = put_u32(p, f->count);
			for (uint32_t k = 0; k < f->count; k++)
				p = save_desc(f->sub,
					      obj + f->offset +
						      (size_t)k * f->stride,
					      p);
		} else {
			memcpy(p, obj + f->offset, f->size);
			p += f->size;
		}
		put_u32(size_at, (uint32_t)(p - size_at - 4));
	}
	return p;
}

int vmstate__save(const struct vmstate_desc *d, const void *obj,
		  struct sbuf *out)
{
	uint64_t size;
	uint8_t *end;
	int rc;

	rc = check_desc(d, 0, &size, NULL, 0);
	if (rc)
		return rc;
	if (size > SIZE_MAX)
		return -ENOMEM;
	rc = sbuf__reserve(out, (size_t)size);
	if (rc)
		return rc;
	end = save_desc(d, obj, out->data + out->len);
	out->len = (size_t)(end - out->data);
	return 0;
}

/* ---------------------------------------------------------------- load */

static int truncated(const struct vmstate_desc *d, const char *where,
		     char *err, size_t errlen)
{
	return fail(err, errlen, -EBADMSG, "%s: stream is truncated (%s)",
		    d->name, where);
}

/* Index of the field called name[0..n), or -1.  Streams written by the
 * same table list fields in table order, so try `hint` first. */
static int find_field(const struct vmstate_desc *d, uint32_t hint,
		      const uint8_t *name, size_t n)
{
	if (hint < d->nfields && name_eq(d->fields[hint].name, name, n))
		return (int)hint;
	for (uint32_t i = 0; i < d->nfields; i++)
		if (name_eq(d->fields[i].name, name, n))
			return (int)i;
	return -1;
}

static int load_desc(const struct vmstate_desc *d, uint8_t *obj,
		     struct sreader *r, char *err, size_t errlen);

/* A struct-array field's payload: u32 count, then count nested streams. */
static int load_array(const struct vmstate_desc *d,
		      const struct vmstate_field *f, uint8_t *obj,
		      const uint8_t *payload, uint32_t size, char *err,
		      size_t errlen)
{
	struct sreader sub;
	uint32_t count;

	sreader__init(&sub, payload, size);
	if (sreader__u32(&sub, &count))
		return fail(err, errlen, -EBADMSG,
			    "%s: field '%s' is too short for an element count",
			    d->name, f->name);
	if (count != f->count)
		return fail(err, errlen, -EBADMSG,
			    "%s: field '%s' has %u elements in the stream, "
			    "%u expected",
			    d->name, f->name, count, f->count);
	for (uint32_t k = 0; k < count; k++) {
		uint8_t *elem = obj + f->offset + (size_t)k * f->stride;
		int rc = load_desc(f->sub, elem, &sub, err, errlen);

		if (rc) {
			/* Prefix the nested message with where it happened. */
			char inner[VMSTATE_ERR_MAX];

			if (err && errlen) {
				snprintf(inner, sizeof(inner), "%s", err);
				fail(err, errlen, rc, "%s: field '%s'[%u]: %s",
				     d->name, f->name, k, inner);
			}
			return rc;
		}
	}
	if (sreader__remaining(&sub))
		return fail(err, errlen, -EBADMSG,
			    "%s: field '%s' has %zu unexpected bytes after its "
			    "last element",
			    d->name, f->name, sreader__remaining(&sub));
	return 0;
}

/*
 * Decode one desc stream from r into obj (which is scratch memory: it may
 * be left half-written on error, the caller throws it away).
 */
static int load_desc(const struct vmstate_desc *d, uint8_t *obj,
		     struct sreader *r, char *err, size_t errlen)
{
	uint64_t seen[(VMSTATE_MAX_FIELDS + 63) / 64] = { 0 };
	uint32_t version, nfields, hint = 0;
	const void *name;
	uint8_t nlen;

	if (sreader__u8(r, &nlen) || sreader__view(r, &name, nlen))
		return truncated(d, "header", err, errlen);
	if (!name_eq(d->name, name, nlen)) {
		char shown[64];

		printable(shown, sizeof(shown), name, nlen);
		return fail(err, errlen, -EBADMSG,
			    "%s: the stream holds '%s' state instead", d->name,
			    shown);
	}
	if (sreader__u32(r, &version) || sreader__u32(r, &nfields))
		return truncated(d, "header", err, errlen);
	if (version > d->version)
		return fail(err, errlen, -EPROTO,
			    "%s: stream version %u is newer than this ftvm "
			    "supports (%u)",
			    d->name, version, d->version);
	if (version < d->min_version)
		return fail(err, errlen, -EPROTO,
			    "%s: stream version %u is older than this ftvm "
			    "supports (%u..%u)",
			    d->name, version, d->min_version, d->version);

	for (uint32_t i = 0; i < nfields; i++) {
		const struct vmstate_field *f;
		const void *fname, *payload;
		uint8_t flen;
		uint32_t size;
		int j, rc;

		if (sreader__u8(r, &flen) || sreader__view(r, &fname, flen) ||
		    sreader__u32(r, &size))
			return truncated(d, "field header", err, errlen);
		j = find_field(d, hint, fname, flen);
		if (j < 0) {
			char shown[64];

			printable(shown, sizeof(shown), fname, flen);
			return fail(err, errlen, -EBADMSG,
				    "%s: unknown field '%s' in the stream",
				    d->name, shown);
		}
		f = &d->fields[j];
		if (seen[j / 64] & (1ull << (j % 64)))
			return fail(err, errlen, -EBADMSG,
				    "%s: field '%s' appears twice in the stream",
				    d->name, f->name);
		seen[j / 64] |= 1ull << (j % 64);
		hint = (uint32_t)j + 1;

		if (f->version_added > version)
			return fail(err, errlen, -EBADMSG,
				    "%s: field '%s' (added in version %u) is in "
				    "a version %u stream",
				    d->name, f->name, f->version_added,
				    version);
		if (!f->sub && size != f->size)
			return fail(err, errlen, -EBADMSG,
				    "%s: field '%s' has %u bytes in the stream, "
				    "%u expected",
				    d->name, f->name, size, f->size);
		if (sreader__view(r, &payload, size)) {
			char where[VMSTATE_NAME_MAX + 16];

			snprintf(where, sizeof(where), "in field '%s'",
				 f->name);
			return truncated(d, where, err, errlen);
		}
		if (f->sub) {
			rc = load_array(d, f, obj, payload, size, err, errlen);
			if (rc)
				return rc;
		} else {
			memcpy(obj + f->offset, payload, size);
		}
	}

	for (uint32_t j = 0; j < d->nfields; j++) {
		const struct vmstate_field *f = &d->fields[j];

		if (!(seen[j / 64] & (1ull << (j % 64))) &&
		    f->version_added <= version)
			return fail(err, errlen, -EBADMSG,
				    "%s: field '%s' is missing from the version "
				    "%u stream",
				    d->name, f->name, version);
	}
	return 0;
}

int vmstate__load(const struct vmstate_desc *d, void *obj, const uint8_t *in,
		  size_t len, char *err, size_t errlen)
{
	_Alignas(max_align_t) uint8_t stack[VMSTATE_STACK_SCRATCH];
	struct sreader r;
	uint64_t size;
	uint8_t *scratch;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	rc = check_desc(d, 0, &size, err, errlen);
	if (rc)
		return rc;
	if (!in && len)
		return fail(err, errlen, -EINVAL, "%s: no input", d->name);

	/* Decode into a copy so a stream that fails halfway leaves obj
	 * exactly as it was: members the table does not list, and fields
	 * the stream predates, come along from the copy unchanged. */
	if (d->struct_size <= sizeof(stack)) {
		scratch = stack;
	} else {
		scratch = malloc(d->struct_size);
		if (!scratch)
			return fail(err, errlen, -ENOMEM,
				    "%s: out of memory", d->name);
	}
	memcpy(scratch, obj, d->struct_size);

	sreader__init(&r, in, len);
	rc = load_desc(d, scratch, &r, err, errlen);
	if (!rc && sreader__remaining(&r))
		rc = fail(err, errlen, -EBADMSG,
			  "%s: %zu unexpected bytes after the last field",
			  d->name, sreader__remaining(&r));
	if (!rc && d->validate) {
		rc = d->validate(scratch, err, errlen);
		if (rc > 0)	/* a hook that forgot the sign still refuses */
			rc = -rc;
	}
	if (!rc)
		memcpy(obj, scratch, d->struct_size);

	if (scratch != stack)
		free(scratch);
	return rc;
}
