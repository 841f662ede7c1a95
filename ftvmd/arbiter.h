/*
 * arbiter.h - who may act on a protection session when the cluster splits:
 * the decisions ftvmd takes with its peers over corosync CPG, kept apart
 * from corosync itself so that every partition shape can be tested.
 *
 * Two acts end a protection session X (docs/operations.md, "Local
 * takeover: the safety argument"):
 *   TAKEN    the secondary of X took over (local takeover, or Pacemaker's
 *            promote): the old primary must never release another output;
 *   REVOKED  the primary of X went on without its secondary (its event
 *            hook): that secondary must never run the guest.
 * The first of the two that is *valid* wins, for good, and every ftvmd
 * agrees on which it was:
 *   - requests (CLAIM for TAKEN, REVOKE for REVOKED) are multicast and
 *     delivered in one total order (CPG agreed order) to every member of
 *     the view they are delivered in;
 *   - a request is valid only in a view of more than half of the cluster's
 *     nodes (expected_votes, carried in the request, so every member judges
 *     alike) and only after every member of that view has sent its SYNC
 *     (the decisions it knows) in that view: two such views always share a
 *     node, which brings every earlier decision into the later view before
 *     any request there counts;
 *   - decisions are written to a state file as they are delivered, so a
 *     restarted ftvmd still knows them.
 * The arbiter itself sends nothing: it returns the bytes to multicast.
 */
#ifndef FTVM_FTVMD_ARBITER_H
#define FTVM_FTVMD_ARBITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARB_MAX_MEMBERS 32
#define ARB_MAX_DECISIONS 256
#define ARB_MSG_MAX (64 + ARB_MAX_DECISIONS * 32 + ARB_MAX_MEMBERS * 48)

enum arb_act { ARB_NONE, ARB_TAKEN, ARB_REVOKED };

struct arb_member {
	uint32_t nodeid, pid;
};

struct arb_decision {
	uint64_t session;
	uint64_t epoch;		/* the checkpoint it was decided at */
	uint32_t node;		/* who asked */
	uint8_t act;		/* enum arb_act */
};

/* What a node's VMM is, as its ftvmd announces it (role "primary" of
 * session X on node N is what a secondary's takeover needs to know). */
struct arb_vmm {
	bool known;
	bool primary;
	uint64_t session;
	uint64_t epoch;
	char state[16];
};

enum arb_outcome {
	ARB_PENDING,		/* not delivered yet */
	ARB_GRANTED,		/* decided for this request (or already so) */
	ARB_SUPERSEDED,		/* the other act was decided first */
	ARB_INVALID,		/* delivered in a view without a majority, or not synced */
};

struct arbiter;

/* state_file may be NULL (nothing kept across restarts). */
int arbiter__create(uint32_t my_nodeid, const char *state_file, struct arbiter **out);
void arbiter__destroy(struct arbiter *a);

/*
 * A new view (a CPG configuration change). Members in any order. Returns
 * the length of this ftvmd's SYNC for it in msg (to multicast at once).
 */
size_t arbiter__view(struct arbiter *a, const struct arb_member *m, size_t n, uint8_t *msg);

/* Every member's SYNC of the current view has been delivered. */
bool arbiter__synced(const struct arbiter *a);
/* Distinct nodes in the current view. */
unsigned arbiter__view_nodes(const struct arbiter *a);

/*
 * A request for this node: returns its length in msg, and its id in *req.
 * expected_votes: votequorum's expected votes here.
 */
size_t arbiter__request(struct arbiter *a, enum arb_act act, uint64_t session, uint64_t epoch,
			uint32_t expected_votes, uint8_t *msg, uint32_t *req);
/* This node's VMM as it is now: the announcement to multicast. */
size_t arbiter__announce(struct arbiter *a, const struct arb_vmm *v, uint8_t *msg);

/*
 * A message delivered in the current view. When it is one of this node's
 * requests, *req and *outcome say how it ended (else *req is 0). Returns 0,
 * or -EBADMSG for a message that is not one of ours (ignored).
 */
int arbiter__deliver(struct arbiter *a, uint32_t nodeid, uint32_t pid, const void *msg, size_t len,
		     uint32_t *req, enum arb_outcome *outcome, char *why, size_t whylen);

/* What is decided for session (ARB_NONE: nothing); *d filled if not NULL. */
enum arb_act arbiter__decided(const struct arbiter *a, uint64_t session, struct arb_decision *d);
/* What node's VMM was last announced as. */
const struct arb_vmm *arbiter__vmm_of(const struct arbiter *a, uint32_t nodeid);
/* The last session node announced itself the primary of (0: none), kept
 * after its VMM is gone (a node whose VMM died a moment before it). */
uint64_t arbiter__primary_session_of(const struct arbiter *a, uint32_t nodeid);
/* Drops what node announced (it left the view). */
void arbiter__forget_node(struct arbiter *a, uint32_t nodeid);

#endif
