/*
 * vmstate engine: round trips (nested struct arrays, single nested struct,
 * large structs), version rules, and the refusals.  Every refusal must also
 * leave the destination object byte-for-byte unchanged.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/state/state.h"

#include "tests/unit/check.h"

/* ------------------------------------------------- a virtio-ish device */

struct vq {
	uint16_t size;
	uint16_t last_avail;
	uint16_t used_idx;
	uint8_t ready;
	uint64_t desc_addr, avail_addr, used_addr;
	uint32_t event_idx; /* added in virtq v2 */
};

struct dev {
	uint32_t status;
	uint64_t host_features, guest_features;
	uint32_t queue_sel;
	struct vq vqs[3];
	uint8_t config[40];
	uint32_t isr;
	uint64_t flush_gen; /* added in virtio-blk v2 */
	void *backend;	    /* host resources: never saved */
	int fd;
};

static const struct vmstate_field vq_fields_v1[] = {
	VMSTATE_FIELD(struct vq, size),
	VMSTATE_FIELD(struct vq, last_avail),
	VMSTATE_FIELD(struct vq, used_idx),
	VMSTATE_FIELD(struct vq, ready),
	VMSTATE_FIELD(struct vq, desc_addr),
	VMSTATE_FIELD(struct vq, avail_addr),
	VMSTATE_FIELD(struct vq, used_addr),
};
static const struct vmstate_field vq_fields_v2[] = {
	VMSTATE_FIELD(struct vq, size),
	VMSTATE_FIELD(struct vq, last_avail),
	VMSTATE_FIELD(struct vq, used_idx),
	VMSTATE_FIELD(struct vq, ready),
	VMSTATE_FIELD(struct vq, desc_addr),
	VMSTATE_FIELD(struct vq, avail_addr),
	VMSTATE_FIELD(struct vq, used_addr),
	VMSTATE_FIELD_V(struct vq, event_idx, 2),
};
static const struct vmstate_desc vq_desc_v1 =
	VMSTATE_DESC("virtq", struct vq, 1, 1, vq_fields_v1);
static const struct vmstate_desc vq_desc_v2 =
	VMSTATE_DESC("virtq", struct vq, 2, 1, vq_fields_v2);

static const struct vmstate_field dev_fields_v1[] = {
	VMSTATE_FIELD(struct dev, status),
	VMSTATE_FIELD(struct dev, host_features),
	VMSTATE_FIELD(struct dev, guest_features),
	VMSTATE_FIELD(struct dev, queue_sel),
	VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc_v1),
	VMSTATE_FIELD(struct dev, config),
	VMSTATE_FIELD(struct dev, isr),
};
static const struct vmstate_field dev_fields_v2[] = {
	VMSTATE_FIELD(struct dev, status),
	VMSTATE_FIELD(struct dev, host_features),
	VMSTATE_FIELD(struct dev, guest_features),
	VMSTATE_FIELD(struct dev, queue_sel),
	VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc_v2),
	VMSTATE_FIELD(struct dev, config),
	VMSTATE_FIELD(struct dev, isr),
	VMSTATE_FIELD_V(struct dev, flush_gen, 2),
};
/* v2 plus a field the loader's table does not know. */
static const struct vmstate_field dev_fields_extra[] = {
	VMSTATE_FIELD(struct dev, status),
	VMSTATE_FIELD(struct dev, host_features),
	VMSTATE_FIELD(struct dev, guest_features),
	VMSTATE_FIELD(struct dev, queue_sel),
	VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc_v2),
	VMSTATE_FIELD(struct dev, config),
	VMSTATE_FIELD(struct dev, isr),
	VMSTATE_FIELD_V(struct dev, flush_gen, 2),
	VMSTATE_FIELD(struct dev, fd),
};
/* v2 without 'isr'. */
static const struct vmstate_field dev_fields_noisr[] = {
	VMSTATE_FIELD(struct dev, status),
	VMSTATE_FIELD(struct dev, host_features),
	VMSTATE_FIELD(struct dev, guest_features),
	VMSTATE_FIELD(struct dev, queue_sel),
	VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc_v2),
	VMSTATE_FIELD(struct dev, config),
	VMSTATE_FIELD_V(struct dev, flush_gen, 2),
};
/* 'status' twice. */
static const struct vmstate_field dev_fields_dup[] = {
	VMSTATE_FIELD(struct dev, status),
	VMSTATE_FIELD(struct dev, status),
};

static const struct vmstate_desc dev_desc_v1 =
	VMSTATE_DESC("virtio-blk", struct dev, 1, 1, dev_fields_v1);
static const struct vmstate_desc dev_desc_v2 =
	VMSTATE_DESC("virtio-blk", struct dev, 2, 1, dev_fields_v2);
static const struct vmstate_desc dev_desc_v3_min2 =
	VMSTATE_DESC("virtio-blk", struct dev, 3, 2, dev_fields_v2);
static const struct vmstate_desc dev_desc_extra =
	VMSTATE_DESC("virtio-blk", struct dev, 2, 1, dev_fields_extra);
static const struct vmstate_desc dev_desc_noisr =
	VMSTATE_DESC("virtio-blk", struct dev, 2, 1, dev_fields_noisr);
static const struct vmstate_desc dev_desc_dup =
	VMSTATE_DESC("virtio-blk", struct dev, 2, 1, dev_fields_dup);
static const struct vmstate_desc net_desc_v2 =
	VMSTATE_DESC("virtio-net", struct dev, 2, 1, dev_fields_v2);

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void dev_fill(struct dev *d, uint64_t seed)
{
	uint64_t s = seed | 1;

	memset(d, 0, sizeof(*d));
	d->status = (uint32_t)rnd(&s);
	d->host_features = rnd(&s);
	d->guest_features = rnd(&s);
	d->queue_sel = (uint32_t)rnd(&s);
	for (int i = 0; i < 3; i++) {
		struct vq *q = &d->vqs[i];

		q->size = (uint16_t)rnd(&s);
		q->last_avail = (uint16_t)rnd(&s);
		q->used_idx = (uint16_t)rnd(&s);
		q->ready = (uint8_t)rnd(&s);
		q->desc_addr = rnd(&s);
		q->avail_addr = rnd(&s);
		q->used_addr = rnd(&s);
		q->event_idx = (uint32_t)rnd(&s);
	}
	for (size_t i = 0; i < sizeof(d->config); i++)
		d->config[i] = (uint8_t)rnd(&s);
	d->isr = (uint32_t)rnd(&s);
	d->flush_gen = rnd(&s);
	d->backend = (void *)(uintptr_t)rnd(&s);
	d->fd = (int)(rnd(&s) & 0xffff);
}

/* Field-by-field equality of the saved state (padding ignored). */
static bool vq_eq(const struct vq *a, const struct vq *b, bool with_v2)
{
	return a->size == b->size && a->last_avail == b->last_avail &&
	       a->used_idx == b->used_idx && a->ready == b->ready &&
	       a->desc_addr == b->desc_addr && a->avail_addr == b->avail_addr &&
	       a->used_addr == b->used_addr &&
	       (!with_v2 || a->event_idx == b->event_idx);
}

static bool dev_state_eq(const struct dev *a, const struct dev *b,
			 bool with_v2)
{
	for (int i = 0; i < 3; i++)
		if (!vq_eq(&a->vqs[i], &b->vqs[i], with_v2))
			return false;
	return a->status == b->status && a->host_features == b->host_features &&
	       a->guest_features == b->guest_features &&
	       a->queue_sel == b->queue_sel &&
	       memcmp(a->config, b->config, sizeof(a->config)) == 0 &&
	       a->isr == b->isr && (!with_v2 || a->flush_gen == b->flush_gen);
}

/* Load `in` into a fresh object and require refusal with rc and a message
 * containing `needle`; the object must not change. */
static void expect_refused(const struct vmstate_desc *d, const uint8_t *in,
			   size_t len, int rc_want, const char *needle)
{
	struct dev obj, before;
	char err[256] = "";
	int rc;

	dev_fill(&obj, 777);
	before = obj;
	rc = vmstate__load(d, &obj, in, len, err, sizeof(err));
	CHECK_RC(rc, rc_want, err);
	if (needle)
		CHECK_ERR_HAS(err, needle);
	CHECK(memcmp(&obj, &before, sizeof(obj)) == 0,
	      "object changed by a refused load (%s)", err);
}

static void save_or_die(const struct vmstate_desc *d, const void *obj,
			struct sbuf *sb)
{
	int rc = vmstate__save(d, obj, sb);

	if (rc) {
		fprintf(stderr, "vmstate__save(%s) failed: %d\n", d->name, rc);
		exit(1);
	}
}

/* ---------------------------------------------------------------- tests */

/* The buffer primitives everything above is built on. */
static void test_sbuf_sreader(void)
{
	struct sbuf sb;
	struct sreader r;
	const void *view;
	uint8_t u8, bytes[8];
	uint32_t u32;
	uint64_t u64;
	static const uint8_t want[] = { 0x7f, 0x78, 0x56, 0x34, 0x12, 0x08,
					0x07, 0x06, 0x05, 0x04, 0x03, 0x02,
					0x01, 'a',  'b',  'c' };

	sbuf__init(&sb);
	CHECK(sb.data == NULL && sb.len == 0 && sb.cap == 0, "init");
	CHECK(sbuf__append_u8(&sb, 0x7f) == 0, "u8");
	CHECK(sbuf__append_u32(&sb, 0x12345678u) == 0, "u32");
	CHECK(sbuf__append_u64(&sb, 0x0102030405060708ull) == 0, "u64");
	CHECK(sbuf__append(&sb, "abc", 3) == 0, "bytes");
	CHECK(sbuf__append(&sb, NULL, 0) == 0, "empty append");
	CHECK(sb.len == sizeof(want) && memcmp(sb.data, want, sb.len) == 0,
	      "little-endian layout");
	CHECK(sbuf__reserve(&sb, SIZE_MAX) == -ENOMEM, "overflowing reserve");
	CHECK(sbuf__reserve(&sb, 100000) == 0 && sb.cap >= sb.len + 100000,
	      "reserve");

	sreader__init(&r, sb.data, sb.len);
	CHECK(sreader__u8(&r, &u8) == 0 && u8 == 0x7f, "read u8");
	CHECK(sreader__u32(&r, &u32) == 0 && u32 == 0x12345678u, "read u32");
	CHECK(sreader__u64(&r, &u64) == 0 && u64 == 0x0102030405060708ull,
	      "read u64");
	CHECK(sreader__u32(&r, &u32) == -EBADMSG && r.pos == 13,
	      "underrun must fail without moving");
	CHECK(sreader__bytes(&r, bytes, 4) == -EBADMSG && r.pos == 13,
	      "bytes underrun");
	CHECK(sreader__view(&r, &view, 2) == 0 &&
		      memcmp(view, "ab", 2) == 0 && sreader__remaining(&r) == 1,
	      "view");
	CHECK(sreader__u64(&r, &u64) == -EBADMSG, "u64 underrun");
	CHECK(sreader__bytes(&r, bytes, 1) == 0 && bytes[0] == 'c' &&
		      sreader__remaining(&r) == 0,
	      "last byte");
	CHECK(sreader__u8(&r, &u8) == -EBADMSG, "empty");

	sbuf__reset(&sb);
	CHECK(sb.len == 0 && sb.data != NULL, "reset keeps memory");
	sbuf__free(&sb);
	CHECK(sb.data == NULL && sb.cap == 0, "free");
}

static void test_round_trip(void)
{
	struct dev src, dst;
	struct sbuf sb;
	char err[256];
	int rc;

	dev_fill(&src, 1);
	dev_fill(&dst, 2);
	void *backend = dst.backend;
	int fd = dst.fd;

	sbuf__init(&sb);
	save_or_die(&dev_desc_v2, &src, &sb);
	rc = vmstate__load(&dev_desc_v2, &dst, sb.data, sb.len, err,
			   sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(dev_state_eq(&src, &dst, true), "state differs after round trip");
	CHECK(dst.backend == backend && dst.fd == fd,
	      "members outside the table must be left alone");

	/* Saving appends: two streams back to back each load on their own. */
	size_t first = sb.len;
	dev_fill(&src, 3);
	save_or_die(&dev_desc_v2, &src, &sb);
	CHECK(sb.len == 2 * first, "second save appended %zu bytes, want %zu",
	      sb.len - first, first);
	rc = vmstate__load(&dev_desc_v2, &dst, sb.data + first,
			   sb.len - first, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(dev_state_eq(&src, &dst, true), "second stream differs");
	sbuf__free(&sb);
}

static void test_old_stream_keeps_defaults(void)
{
	struct dev src, dst;
	struct sbuf sb;
	char err[256];
	int rc;

	dev_fill(&src, 10);
	memset(&dst, 0, sizeof(dst));
	/* Defaults for the fields v1 streams do not carry. */
	dst.flush_gen = 0xF0F0F0F0u;
	for (int i = 0; i < 3; i++)
		dst.vqs[i].event_idx = 0xE1 + (uint32_t)i;

	sbuf__init(&sb);
	save_or_die(&dev_desc_v1, &src, &sb);
	rc = vmstate__load(&dev_desc_v2, &dst, sb.data, sb.len, err,
			   sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(dev_state_eq(&src, &dst, false), "v1 fields not loaded");
	CHECK(dst.flush_gen == 0xF0F0F0F0u, "default flush_gen overwritten");
	for (int i = 0; i < 3; i++)
		CHECK(dst.vqs[i].event_idx == 0xE1 + (uint32_t)i,
		      "default vqs[%d].event_idx overwritten", i);
	sbuf__free(&sb);
}

static void test_versions_refused(void)
{
	struct dev src;
	struct sbuf sb;

	dev_fill(&src, 20);
	sbuf__init(&sb);

	/* A newer stream than this table knows. */
	save_or_die(&dev_desc_v2, &src, &sb);
	expect_refused(&dev_desc_v1, sb.data, sb.len, -EPROTO,
		       "virtio-blk: stream version 2 is newer than this ftvm "
		       "supports (1)");

	/* An older stream than this table still accepts. */
	sbuf__reset(&sb);
	save_or_die(&dev_desc_v1, &src, &sb);
	expect_refused(&dev_desc_v3_min2, sb.data, sb.len, -EPROTO,
		       "stream version 1 is older than this ftvm supports "
		       "(2..3)");

	/* A nested element newer than its table: message says where. */
	sbuf__reset(&sb);
	{
		static const struct vmstate_desc vq_desc_v2_only =
			VMSTATE_DESC("virtq", struct vq, 2, 1, vq_fields_v2);
		static const struct vmstate_field f[] = {
			VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc_v2_only),
		};
		static const struct vmstate_field g[] = {
			VMSTATE_STRUCT_ARRAY(struct dev, vqs, vq_desc_v1),
		};
		static const struct vmstate_desc w =
			VMSTATE_DESC("virtio-blk", struct dev, 1, 1, f);
		static const struct vmstate_desc r =
			VMSTATE_DESC("virtio-blk", struct dev, 1, 1, g);

		save_or_die(&w, &src, &sb);
		expect_refused(&r, sb.data, sb.len, -EPROTO,
			       "virtio-blk: field 'vqs'[0]: virtq: stream "
			       "version 2 is newer");
	}

	/* A field the stream's own version should not contain: take a v2
	 * stream and claim it is v1 (the version follows the 10-byte name). */
	sbuf__reset(&sb);
	save_or_die(&dev_desc_v2, &src, &sb);
	sb.data[1 + 10] = 1;
	expect_refused(&dev_desc_v2, sb.data, sb.len, -EBADMSG,
		       "field 'flush_gen' (added in version 2) is in a "
		       "version 1 stream");
	sbuf__free(&sb);
}

static void test_structure_refused(void)
{
	struct dev src;
	struct sbuf sb;

	dev_fill(&src, 30);
	sbuf__init(&sb);

	save_or_die(&dev_desc_extra, &src, &sb);
	expect_refused(&dev_desc_v2, sb.data, sb.len, -EBADMSG,
		       "virtio-blk: unknown field 'fd' in the stream");

	sbuf__reset(&sb);
	save_or_die(&dev_desc_noisr, &src, &sb);
	expect_refused(&dev_desc_v2, sb.data, sb.len, -EBADMSG,
		       "virtio-blk: field 'isr' is missing from the version 2 "
		       "stream");

	sbuf__reset(&sb);
	save_or_die(&dev_desc_dup, &src, &sb);
	expect_refused(&dev_desc_v2, sb.data, sb.len, -EBADMSG,
		       "virtio-blk: field 'status' appears twice");

	sbuf__reset(&sb);
	save_or_die(&net_desc_v2, &src, &sb);
	expect_refused(&dev_desc_v2, sb.data, sb.len, -EBADMSG,
		       "virtio-blk: the stream holds 'virtio-net' state");

	/* Trailing bytes. */
	sbuf__reset(&sb);
	save_or_die(&dev_desc_v2, &src, &sb);
	sbuf__append_u8(&sb, 0);
	expect_refused(&dev_desc_v2, sb.data, sb.len, -EBADMSG,
		       "virtio-blk: 1 unexpected bytes after the last field");
	sbuf__free(&sb);
}

/* The exact message the brief asks for, and the nested variant. */
struct blk_a {
	uint32_t queue_size;
};
struct blk_b {
	uint16_t queue_size;
};
struct vq_wide {
	uint32_t size;
};
struct vq_narrow {
	uint16_t size;
};
struct dev_wide {
	struct vq_wide vqs[2];
};
struct dev_narrow {
	struct vq_narrow vqs[2];
};
struct dev_narrow3 {
	struct vq_narrow vqs[3];
};

static void test_size_mismatch(void)
{
	static const struct vmstate_field fa[] = {
		VMSTATE_FIELD(struct blk_a, queue_size),
	};
	static const struct vmstate_field fb[] = {
		VMSTATE_FIELD(struct blk_b, queue_size),
	};
	static const struct vmstate_desc da =
		VMSTATE_DESC("virtio-blk", struct blk_a, 1, 1, fa);
	static const struct vmstate_desc db =
		VMSTATE_DESC("virtio-blk", struct blk_b, 1, 1, fb);
	static const struct vmstate_field vwf[] = {
		VMSTATE_FIELD(struct vq_wide, size),
	};
	static const struct vmstate_field vnf[] = {
		VMSTATE_FIELD(struct vq_narrow, size),
	};
	static const struct vmstate_desc vw =
		VMSTATE_DESC("virtq", struct vq_wide, 1, 1, vwf);
	static const struct vmstate_desc vn =
		VMSTATE_DESC("virtq", struct vq_narrow, 1, 1, vnf);
	static const struct vmstate_field dwf[] = {
		VMSTATE_STRUCT_ARRAY(struct dev_wide, vqs, vw),
	};
	static const struct vmstate_field dnf[] = {
		VMSTATE_STRUCT_ARRAY(struct dev_narrow, vqs, vn),
	};
	static const struct vmstate_field dn3f[] = {
		VMSTATE_STRUCT_ARRAY(struct dev_narrow3, vqs, vn),
	};
	static const struct vmstate_desc dw =
		VMSTATE_DESC("virtio-blk", struct dev_wide, 1, 1, dwf);
	static const struct vmstate_desc dn =
		VMSTATE_DESC("virtio-blk", struct dev_narrow, 1, 1, dnf);
	static const struct vmstate_desc dn3 =
		VMSTATE_DESC("virtio-blk", struct dev_narrow3, 1, 1, dn3f);

	struct blk_a a = { .queue_size = 256 };
	struct blk_b b = { .queue_size = 7 };
	struct dev_wide w = { .vqs = { { 1 }, { 2 } } };
	struct dev_narrow n = { .vqs = { { 5 }, { 6 } } };
	struct dev_narrow3 n3 = { .vqs = { { 5 }, { 6 }, { 7 } } };
	struct sbuf sb;
	char err[256];
	int rc;

	sbuf__init(&sb);
	save_or_die(&da, &a, &sb);
	rc = vmstate__load(&db, &b, sb.data, sb.len, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(strcmp(err, "virtio-blk: field 'queue_size' has 4 bytes in the "
			  "stream, 2 expected") == 0,
	      "message \"%s\"", err);
	CHECK(b.queue_size == 7, "object changed");

	sbuf__reset(&sb);
	save_or_die(&dw, &w, &sb);
	rc = vmstate__load(&dn, &n, sb.data, sb.len, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK(strcmp(err, "virtio-blk: field 'vqs'[0]: virtq: field 'size' "
			  "has 4 bytes in the stream, 2 expected") == 0,
	      "message \"%s\"", err);
	CHECK(n.vqs[0].size == 5 && n.vqs[1].size == 6, "object changed");

	/* Element count mismatch. */
	sbuf__reset(&sb);
	save_or_die(&dn, &n, &sb);
	rc = vmstate__load(&dn3, &n3, sb.data, sb.len, err, sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK_ERR_HAS(err, "field 'vqs' has 2 elements in the stream, 3 "
			   "expected");
	CHECK(n3.vqs[2].size == 7, "object changed");
	sbuf__free(&sb);
}

/* Every prefix of a valid stream is refused and changes nothing. */
static void test_truncation(void)
{
	struct dev src;
	struct sbuf sb;

	dev_fill(&src, 40);
	sbuf__init(&sb);
	save_or_die(&dev_desc_v2, &src, &sb);
	for (size_t len = 0; len < sb.len; len++)
		expect_refused(&dev_desc_v2, sb.data, len, -EBADMSG, NULL);
	/* Through a separate exact-size heap copy, so ASan sees overreads. */
	for (size_t len = 0; len < sb.len; len += 7) {
		uint8_t *copy = malloc(len ? len : 1);

		memcpy(copy, sb.data, len);
		expect_refused(&dev_desc_v2, copy, len, -EBADMSG, NULL);
		free(copy);
	}
	sbuf__free(&sb);
}

/*
 * The stream has no checksum (the container provides it), so a flipped
 * byte may well decode.  What must hold: no crash or overread, and a
 * refused load leaves the object untouched.
 */
static void test_corruption_is_safe(void)
{
	static const uint8_t xors[] = { 0x01, 0x80, 0xff };
	struct dev src, obj, before;
	struct sbuf sb;
	uint64_t s = 99;
	int refused = 0, total = 0;

	dev_fill(&src, 50);
	sbuf__init(&sb);
	save_or_die(&dev_desc_v2, &src, &sb);
	for (size_t off = 0; off < sb.len; off++) {
		for (size_t x = 0; x < sizeof(xors); x++) {
			uint8_t *copy = malloc(sb.len);
			int rc;

			memcpy(copy, sb.data, sb.len);
			copy[off] ^= xors[x];
			dev_fill(&obj, 5);
			before = obj;
			rc = vmstate__load(&dev_desc_v2, &obj, copy, sb.len,
					   NULL, 0);
			total++;
			if (rc) {
				refused++;
				CHECK(memcmp(&obj, &before, sizeof(obj)) == 0,
				      "object changed by refused load (flip "
				      "at %zu)",
				      off);
			}
			free(copy);
		}
	}
	/* Random garbage of random lengths. */
	for (int i = 0; i < 2000; i++) {
		size_t len = (size_t)(rnd(&s) % 600);
		uint8_t *g = malloc(len ? len : 1);

		for (size_t k = 0; k < len; k++)
			g[k] = (uint8_t)rnd(&s);
		if (len > 11 && (i & 1))
			memcpy(g, sb.data, 11); /* valid name, random rest */
		dev_fill(&obj, 6);
		before = obj;
		if (vmstate__load(&dev_desc_v2, &obj, g, len, NULL, 0))
			CHECK(memcmp(&obj, &before, sizeof(obj)) == 0,
			      "object changed by refused garbage");
		free(g);
	}
	printf("corruption: %d of %d single-byte flips refused by vmstate "
	       "alone (the rest are value bytes; the container's checksum "
	       "catches those)\n",
	       refused, total);
	sbuf__free(&sb);
}

/* validate() runs on the decoded copy; refusing leaves obj unchanged. */
static int check_queues(const void *p, char *err, size_t errlen)
{
	const struct dev *d = p;

	for (int i = 0; i < 3; i++) {
		uint16_t n = d->vqs[i].size;

		if (n == 0 || (n & (n - 1)) || n > 1024) {
			snprintf(err, errlen,
				 "virtio-blk: queue %d size %u is not a power "
				 "of two <= 1024",
				 i, n);
			return -EBADMSG;
		}
	}
	return 0;
}

static void test_validate_hook(void)
{
	static const struct vmstate_desc checked = VMSTATE_DESC_VALIDATED(
		"virtio-blk", struct dev, 2, 1, dev_fields_v2, check_queues);
	struct dev src, dst;
	struct sbuf sb;
	char err[256];
	int rc;

	dev_fill(&src, 60);
	for (int i = 0; i < 3; i++)
		src.vqs[i].size = 256;
	sbuf__init(&sb);
	save_or_die(&checked, &src, &sb);
	dev_fill(&dst, 61);
	rc = vmstate__load(&checked, &dst, sb.data, sb.len, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(dev_state_eq(&src, &dst, true), "validated load differs");

	src.vqs[1].size = 3;
	sbuf__reset(&sb);
	save_or_die(&checked, &src, &sb);
	expect_refused(&checked, sb.data, sb.len, -EBADMSG,
		       "queue 1 size 3 is not a power of two");
	sbuf__free(&sb);
}

/* Tables that would let the engine address memory outside the object. */
struct small {
	uint32_t a;
	struct vq q[2];
};

static void test_bad_tables(void)
{
	static const struct vmstate_field out_of_range[] = {
		{ .name = "a", .offset = 4, .size = 200 },
	};
	static const struct vmstate_field bad_stride[] = {
		{ .name = "q", .offset = 8, .size = 80, .sub = &vq_desc_v2,
		  .count = 2, .stride = 32 },
	};
	static const struct vmstate_field too_many[] = {
		{ .name = "q", .offset = 8, .size = 120, .sub = &vq_desc_v2,
		  .count = 3, .stride = sizeof(struct vq) },
	};
	static const struct vmstate_field future[] = {
		VMSTATE_FIELD_V(struct small, a, 5),
	};
	static const struct vmstate_desc d1 =
		VMSTATE_DESC("t", struct small, 1, 1, out_of_range);
	static const struct vmstate_desc d2 =
		VMSTATE_DESC("t", struct small, 1, 1, bad_stride);
	static const struct vmstate_desc d3 =
		VMSTATE_DESC("t", struct small, 1, 1, too_many);
	static const struct vmstate_desc d4 =
		VMSTATE_DESC("t", struct small, 1, 1, future);
	static const struct vmstate_desc d5 =
		VMSTATE_DESC("t", struct small, 1, 2, future);
	static const struct vmstate_desc *bad[] = { &d1, &d2, &d3, &d4, &d5 };
	struct small obj = { 0 };
	uint8_t stream[4] = { 0 };
	struct sbuf sb;
	char err[256];

	sbuf__init(&sb);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = vmstate__save(bad[i], &obj, &sb);

		CHECK(rc == -EINVAL, "bad table %zu saved: %d", i, rc);
		CHECK(sb.len == 0, "bad table %zu wrote output", i);
		rc = vmstate__load(bad[i], &obj, stream, sizeof(stream), err,
				   sizeof(err));
		CHECK(rc == -EINVAL, "bad table %zu loaded: %d (%s)", i, rc,
		      err);
	}
	sbuf__free(&sb);
}

/* A single nested struct, and a struct too big for the stack scratch. */
struct regs {
	uint64_t rip, rsp, rflags;
};
struct big {
	uint32_t id;
	struct regs regs;
	uint8_t blob[3000];
	uint64_t tail;
	void *host;
};

static void test_nested_and_big(void)
{
	static const struct vmstate_field regs_fields[] = {
		VMSTATE_FIELD(struct regs, rip),
		VMSTATE_FIELD(struct regs, rsp),
		VMSTATE_FIELD(struct regs, rflags),
	};
	static const struct vmstate_desc regs_desc =
		VMSTATE_DESC("regs", struct regs, 1, 1, regs_fields);
	static const struct vmstate_field big_fields[] = {
		VMSTATE_FIELD(struct big, id),
		VMSTATE_STRUCT(struct big, regs, regs_desc),
		VMSTATE_FIELD(struct big, blob),
		VMSTATE_FIELD(struct big, tail),
	};
	static const struct vmstate_desc big_desc =
		VMSTATE_DESC("big", struct big, 1, 1, big_fields);
	struct big *src = calloc(1, sizeof(*src));
	struct big *dst = calloc(1, sizeof(*dst));
	struct big *before = calloc(1, sizeof(*before));
	struct sbuf sb;
	char err[256];
	int rc;

	src->id = 7;
	src->regs.rip = 0xfff0;
	src->regs.rsp = 0x7000;
	src->regs.rflags = 2;
	for (size_t i = 0; i < sizeof(src->blob); i++)
		src->blob[i] = (uint8_t)(i * 31);
	src->tail = 0x1122334455667788ull;
	dst->host = (void *)dst;

	sbuf__init(&sb);
	save_or_die(&big_desc, src, &sb);
	rc = vmstate__load(&big_desc, dst, sb.data, sb.len, err, sizeof(err));
	CHECK_RC(rc, 0, err);
	CHECK(dst->id == 7 && dst->regs.rip == 0xfff0 &&
		      dst->regs.rsp == 0x7000 && dst->regs.rflags == 2 &&
		      dst->tail == src->tail &&
		      memcmp(dst->blob, src->blob, sizeof(src->blob)) == 0,
	      "big round trip differs");
	CHECK(dst->host == (void *)dst, "host pointer touched");

	*before = *dst;
	rc = vmstate__load(&big_desc, dst, sb.data, sb.len - 1, err,
			   sizeof(err));
	CHECK_RC(rc, -EBADMSG, err);
	CHECK_ERR_HAS(err, "big: stream is truncated (in field 'tail')");
	CHECK(memcmp(dst, before, sizeof(*dst)) == 0, "big object changed");
	sbuf__free(&sb);
	free(src);
	free(dst);
	free(before);
}

int main(void)
{
	printf("sizeof(struct dev) = %zu bytes\n", sizeof(struct dev));
	test_sbuf_sreader();
	test_round_trip();
	test_old_stream_keeps_defaults();
	test_versions_refused();
	test_structure_refused();
	test_size_mismatch();
	test_truncation();
	test_corruption_is_safe();
	test_validate_hook();
	test_bad_tables();
	test_nested_and_big();
	if (failures) {
		fprintf(stderr, "test_vmstate: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_vmstate: all checks passed\n");
	return 0;
}
