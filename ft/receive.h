/*
 * receive.h - the secondary's stream, one message at a time: stage each
 * checkpoint, verify it whole at COMMIT, apply it all or nothing.
 *
 * ft_rx__step takes one message that arrived whole and says what follows
 * from it: go on, a reply to send (ACK, HANDOVER_OK, CANCEL_OK), or the
 * end of the stream and why. It does no I/O of its own besides applying a
 * verified checkpoint to its target (guest RAM, the replicated disk), owns
 * no thread and takes no lock, so a test or a fuzzer drives it with any
 * sequence of messages, without KVM (tests/unit/test_ft_receive.c,
 * fuzz/fuzz_receive.c).
 *
 * The rule it keeps: guest RAM and the disk change only at a COMMIT whose
 * checkpoint was complete and verified (or, before the first checkpoint,
 * by the initial sync). Anything else is refused and changes nothing.
 */
#ifndef FTVM_FT_RECEIVE_H
#define FTVM_FT_RECEIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "eventtap/eventtap.h"
#include "transport/transport.h"

/* What checkpoints are applied to. */
struct ft_rx_target {
	uint64_t nr_pages;		/* guest RAM, in 4 KiB pages */
	uint64_t mem_size;		/* guest RAM bytes (bounds a checkpoint's held output) */
	/* Host address of guest page idx (< nr_pages). */
	void *(*page)(void *opaque, uint64_t idx);
	/* 0 if the device-state blob would load here; else err (VMM_ERR_LEN) says why. */
	int (*check_state)(void *opaque, const void *blob, size_t len, char *err);
	void *opaque;
	/* Replicated storage: the image (the initial sync writes it) and the
	 * event tap over it (a checkpoint's disk writes); NULL disk: shared
	 * storage or no disk, whose writes are the primary's to perform. */
	struct disk *disk;
	struct eventtap *et;
	uint64_t disk_size;		/* the guest's disk, for checking write ranges (0: none) */
};

/* What a message leads to. */
enum ft_rx_verdict {
	FT_RX_NEXT,		/* go on (send the reply, if any) */
	FT_RX_COMMITTED,	/* a checkpoint was applied: publish it, send the ACK */
	FT_RX_REFUSE,		/* not a stream we trust: nothing changed; err says why */
	FT_RX_UNUSABLE,		/* applying a verified checkpoint failed: RAM and disk are
				 * between two checkpoints, no failover from here */
	FT_RX_PEER_ERROR,	/* the primary reported an error and ends the stream */
	FT_RX_HANDOVER,		/* take over now from the committed checkpoint (reply HANDOVER_OK) */
	FT_RX_CANCELLED,	/* protection ended on purpose: drop the checkpoint (reply CANCEL_OK) */
};

struct ft_rx_reply {
	uint32_t type;		/* FT_MSG_*, 0: none */
	uint64_t epoch;
};

struct ft_rx_stage {
	bool open;
	uint64_t epoch;
	uint64_t capture_ns;
	struct sbuf idx;	/* u64 page indices */
	struct sbuf data;	/* their contents, decoded */
	uint32_t page_msgs, output_msgs;
	struct sbuf state, outputs;
	bool have_state, have_outputs;
	uint64_t *seen;		/* pages staged in this epoch (one bit a page) */
};

/* One primary's stream. Owned by one thread (the secondary's role thread). */
struct ft_rx {
	struct ft_rx_target t;
	uint64_t committed;	/* last checkpoint applied in this stream (0: initial sync) */
	uint32_t committed_pages;
	uint64_t committed_capture_ns;
	struct ft_rx_stage s;
	/* After FT_RX_COMMITTED: the checkpoint's state and outputs (take them
	 * with ft_rx__take_committed). */
	struct sbuf state, outputs;
};

void ft_rx__init(struct ft_rx *rx, const struct ft_rx_target *t);
void ft_rx__free(struct ft_rx *rx);
/*
 * One message. reply->type is set when something must be sent back (ACK
 * with FT_RX_COMMITTED, HANDOVER_OK, CANCEL_OK). err (errlen bytes) says
 * why a stream ends.
 */
enum ft_rx_verdict ft_rx__step(struct ft_rx *rx, const struct xport_msg *m, struct ft_rx_reply *reply,
			       char *err, size_t errlen);
/* An open, incomplete checkpoint's epoch (0: none open). */
uint64_t ft_rx__open_epoch(const struct ft_rx *rx);
/* Swaps the last committed checkpoint's state and outputs into state and
 * outputs (the caller's old buffers come back for reuse). */
void ft_rx__take_committed(struct ft_rx *rx, struct sbuf *state, struct sbuf *outputs);

#endif
