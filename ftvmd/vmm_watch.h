/*
 * vmm_watch.h - ftvmd's view of the local VMM, from the VMM's own monitor
 * events (docs/monitor.md, "Events"), not from polling: one monitor
 * connection with `events` on; the VMM's pid from the connection's
 * credentials, watched through a pidfd; a new VMM found through inotify on
 * its socket's directory.
 */
#ifndef FTVM_FTVMD_VMM_WATCH_H
#define FTVM_FTVMD_VMM_WATCH_H

#include <qb/qbloop.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct vmm_status {
	bool up;		/* connected to a VMM that answers */
	pid_t pid;		/* its process */
	bool primary;
	char state[24];		/* ft/ft_states.h's names */
	uint64_t session;	/* 0: none */
	uint64_t epoch;		/* primary: acknowledged; secondary: committed */
	char peer[128];
};

struct vmm_watch;

/* Called on every change of the status (and when the connection ends:
 * up false) and, with exited, once the VMM process pid is gone. */
struct vmm_watch_ops {
	void (*changed)(void *opaque, const struct vmm_status *st, const char *event);
	void (*exited)(void *opaque, pid_t pid);
};

int vmm_watch__create(qb_loop_t *loop, const char *sock, const struct vmm_watch_ops *ops, void *opaque,
		      struct vmm_watch **out);
void vmm_watch__destroy(struct vmm_watch *w);
const struct vmm_status *vmm_watch__status(const struct vmm_watch *w);
/* Asks the VMM now (info migrate): the figures no event carries, such as
 * a secondary's committed checkpoint since its last change of state. */
int vmm_watch__refresh(struct vmm_watch *w);

/* One monitor command on a connection of its own (JSON mode); the answer
 * line into out. 0, or a negative errno (-ETIMEDOUT after timeout_ms). */
int vmm_watch__command(const char *sock, const char *cmd, char *out, size_t outlen, int timeout_ms);

#endif
