/*
 * io_thread.c - the VM's I/O thread: waits for frames on the network
 * backend and delivers them into the guest's RX queue, so a guest that is
 * busy computing still receives without exiting. It is woken through
 * vm->wake_fd (RX buffers posted, shutdown).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include "vmm/vm_internal.h"
#include "vmm/virtio/virtio.h"

static void *io_thread__main(void *arg)
{
	struct vm *vm = arg;

	pthread_setname_np(pthread_self(), "ftvm-io");
	while (!atomic_load(&vm->io_stop)) {
		struct pollfd pfd[2] = { { .fd = vm->wake_fd, .events = POLLIN } };
		nfds_t n = 1;
		bool want_rx = false;

		/* No delivery while paused: a paused guest's memory stays still. */
		if (vm->net && !atomic_load(&vm->pause_req)) {
			pthread_mutex_lock(&vm->dev_lock);
			want_rx = virtio_net__rx_has_buffers(vm->net);
			pthread_mutex_unlock(&vm->dev_lock);
		}
		if (want_rx) {
			pfd[1] = (struct pollfd){ .fd = virtio_net__rx_fd(vm->net), .events = POLLIN };
			n = 2;
		}
		if (poll(pfd, n, 1000) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN) {
			uint64_t v;
			(void)!read(vm->wake_fd, &v, sizeof(v));
		}
		if (n == 2 && (pfd[1].revents & POLLIN)) {
			int delivered;
			pthread_mutex_lock(&vm->dev_lock);
			delivered = virtio_net__rx_pump(vm->net);
			pthread_mutex_unlock(&vm->dev_lock);
			if (delivered > 0)
				vm__signal_event(vm);
		}
	}
	return NULL;
}

int io_thread__start(struct vm *vm)
{
	int ret = pthread_create(&vm->io_thread, NULL, io_thread__main, vm);
	if (ret)
		return -ret;
	vm->io_started = true;
	return 0;
}

void io_thread__kick(struct vm *vm)
{
	uint64_t one = 1;
	(void)!write(vm->wake_fd, &one, sizeof(one));
}

void io_thread__stop(struct vm *vm)
{
	atomic_store(&vm->io_stop, true);
	io_thread__kick(vm);
	pthread_join(vm->io_thread, NULL);
	vm->io_started = false;
}
