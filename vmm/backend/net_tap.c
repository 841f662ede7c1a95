/*
 * net_tap.c - a Linux tap device as a network backend (no packet info,
 * no vnet header: the device model adds and strips virtio_net_hdr).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/vmm.h"

struct net_tap {
	int fd;
	char ifname[IFNAMSIZ];
};

static int tap__tx(void *be, const struct iovec *iov, int iovcnt)
{
	struct net_tap *t = be;
	for (;;) {
		ssize_t r = writev(t->fd, iov, iovcnt);
		if (r >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		/* EAGAIN: the tap queue is full; like a busy wire, drop. */
		return -errno;
	}
}

static ssize_t tap__rx(void *be, void *buf, size_t len)
{
	struct net_tap *t = be;
	for (;;) {
		ssize_t r = read(t->fd, buf, len);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		return -errno;
	}
}

static int tap__rx_fd(void *be)
{
	return ((struct net_tap *)be)->fd;
}

static const struct net_ops net_tap_ops = {
	.tx = tap__tx,
	.rx = tap__rx,
	.rx_fd = tap__rx_fd,
};

int net_tap__open(struct net *n, const char *ifname, char *err)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	struct net_tap *t;
	int fd;

	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ) {
		snprintf(err, VMM_ERR_LEN, "--netdev: ifname must be 1-%d characters", IFNAMSIZ - 1);
		return -EINVAL;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, VMM_ERR_LEN, "--netdev: cannot open /dev/net/tun: %s", strerror(e));
		return -e;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		snprintf(err, VMM_ERR_LEN, "--netdev: cannot attach to tap %s: %s", ifname,
			 strerror(e));
		close(fd);
		return -e;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	t->fd = fd;
	snprintf(t->ifname, sizeof(t->ifname), "%s", ifr.ifr_name);
	n->ops = &net_tap_ops;
	n->be = t;
	return 0;
}

void net_tap__close(struct net *n)
{
	struct net_tap *t = n->be;
	if (t) {
		close(t->fd);
		free(t);
	}
	n->be = NULL;
}
