/*
 * disk_raw.c - a raw image file as a block backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/vmm.h"

struct disk_raw {
	int fd;
	/* fatal-error reporting and the test-only fault (disk_raw__inject_error) */
	disk_fatal_fn on_fatal;
	void *on_fatal_opaque;
	atomic_uint inject_count;
	int inject_err;
	atomic_bool inject_flush_only;	/* the fault skips writes; set before inject_count */
};

/* EIO and friends: the medium or the path to it failed; the guest's
 * data cannot be trusted to reach this disk any more. */
static bool fatal(int err)
{
	return err == -EIO || err == -ENXIO || err == -ENODEV;
}

/* Applies an injected fault, and reports a fatal error. */
static int raw__result(struct disk_raw *r, const char *op, uint64_t off, int ret)
{
	unsigned n = atomic_load(&r->inject_flush_only) && strcmp(op, "flush") ? 0 : atomic_load(&r->inject_count);
	while (n && !atomic_compare_exchange_weak(&r->inject_count, &n, n - 1))
		;
	if (n)
		ret = -r->inject_err;
	if (fatal(ret) && r->on_fatal) {
		char what[128];
		snprintf(what, sizeof(what), "%s at byte %llu: %s", op, (unsigned long long)off,
			 strerror(-ret));
		r->on_fatal(r->on_fatal_opaque, what);
	}
	return ret;
}

/* preadv/pwritev until done: they may transfer less than asked. */
static int raw__rw(int fd, uint64_t off, const struct iovec *iov_in, int iovcnt, bool write)
{
	struct iovec iov[IOV_MAX];
	int n = iovcnt < IOV_MAX ? iovcnt : IOV_MAX;

	if (iovcnt > IOV_MAX)
		return -EINVAL;
	memcpy(iov, iov_in, sizeof(*iov) * n);
	struct iovec *cur = iov;
	while (n > 0) {
		ssize_t r = write ? pwritev(fd, cur, n, (off_t)off) : preadv(fd, cur, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			if (write)
				return -EIO;
			/* reading past the end of a sparse tail: zero-fill */
			for (int i = 0; i < n; i++)
				memset(cur[i].iov_base, 0, cur[i].iov_len);
			return 0;
		}
		off += (uint64_t)r;
		while (n > 0 && (size_t)r >= cur->iov_len) {
			r -= (ssize_t)cur->iov_len;
			cur++;
			n--;
		}
		if (n > 0) {
			cur->iov_base = (uint8_t *)cur->iov_base + r;
			cur->iov_len -= (size_t)r;
		}
	}
	return 0;
}

static int raw__read(void *be, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return raw__rw(((struct disk_raw *)be)->fd, off, iov, iovcnt, false);
}

static int raw__write(void *be, uint64_t off, const struct iovec *iov, int iovcnt)
{
	struct disk_raw *r = be;
	return raw__result(r, "write", off, raw__rw(r->fd, off, iov, iovcnt, true));
}

static int raw__flush(void *be)
{
	struct disk_raw *r = be;
	return raw__result(r, "flush", 0, fdatasync(r->fd) < 0 ? -errno : 0);
}

/* Punches a hole where the file system can; writes zeros where not. */
static int raw__discard(void *be, uint64_t off, uint64_t len)
{
	int fd = ((struct disk_raw *)be)->fd;
	static const uint8_t zero[65536];

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	while (len) {
		size_t n = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		struct iovec v = { (void *)zero, n };
		int ret = raw__rw(fd, off, &v, 1, true);
		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Allocates the blocks under a write that is held (protection): a disk
 * that is full says so now, to the guest, as it would unprotected, not
 * at release when the guest believes the write done. fallocate mode 0
 * leaves data and holes reading as they did. On a copy-on-write file
 * system an overwrite needs new blocks anyway: there the release can
 * still fail (and the VM then stops, docs/ft.md).
 */
static int raw__reserve(void *be, uint64_t off, uint64_t len)
{
	struct disk_raw *r = be;
	if (!len || fallocate(r->fd, 0, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOSYS)
		return 0;	/* cannot reserve here: the release path copes */
	return -errno;
}

/* The image's next data extent (SEEK_DATA/SEEK_HOLE; a file system that
 * knows no holes reports all of the file as data). */
static int raw__seek_data(void *be, uint64_t off, uint64_t *start, uint64_t *end)
{
	int fd = ((struct disk_raw *)be)->fd;
	off_t s = lseek(fd, (off_t)off, SEEK_DATA);
	if (s < 0)
		return -errno;	/* ENXIO: holes only, to the end */
	off_t e = lseek(fd, s, SEEK_HOLE);
	if (e < 0)
		return -errno;
	*start = (uint64_t)s;
	*end = (uint64_t)e;
	return 0;
}

static const struct disk_ops disk_raw_ops = {
	.read = raw__read,
	.write = raw__write,
	.flush = raw__flush,
	.discard = raw__discard,
	.reserve = raw__reserve,
	.seek_data = raw__seek_data,
};

int disk_raw__open(struct disk *d, const char *path, bool readonly, char *err)
{
	struct disk_raw *r;
	struct stat st;
	int fd;

	fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, VMM_ERR_LEN, "--drive: cannot open image %s: %s", path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 512) {
		snprintf(err, VMM_ERR_LEN,
			 "--drive: %s is not a raw image of at least 512 bytes", path);
		close(fd);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		close(fd);
		return -ENOMEM;
	}
	r->fd = fd;
	memset(d, 0, sizeof(*d));
	d->ops = &disk_raw_ops;
	d->be = r;
	d->size = (uint64_t)st.st_size & ~511ull;
	const char *base = strrchr(path, '/');
	snprintf(d->serial, sizeof(d->serial), "%.20s", base ? base + 1 : path);
	return 0;
}

void disk_raw__on_fatal_error(struct disk *d, disk_fatal_fn fn, void *opaque)
{
	struct disk_raw *r = d->be;
	r->on_fatal = fn;
	r->on_fatal_opaque = opaque;
}

static int disk_raw__inject(struct disk *d, int err, unsigned count, bool flush_only)
{
	struct disk_raw *r = d->be;
	if (!r || err <= 0)
		return -EINVAL;
	atomic_store(&r->inject_count, 0);
	r->inject_err = err;
	atomic_store(&r->inject_flush_only, flush_only);
	atomic_store(&r->inject_count, count);
	return 0;
}

int disk_raw__inject_error(struct disk *d, int err, unsigned count)
{
	return disk_raw__inject(d, err, count, false);
}

int disk_raw__inject_flush_error(struct disk *d, int err, unsigned count)
{
	return disk_raw__inject(d, err, count, true);
}

void disk_raw__close(struct disk *d)
{
	struct disk_raw *r = d->be;
	if (r) {
		close(r->fd);
		free(r);
	}
	d->be = NULL;
}
