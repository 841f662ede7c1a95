/* kvlog: the ack log written by `ftvm-kv load` and checked by
 * `ftvm-kv verify`.
 *
 * A text file with one line per event, in the order they happened:
 *   SENT <key> <value>   written before the PUT's first attempt leaves:
 *                        from now on the store may hold this value
 *   PUT <key> <value>    written after the server acknowledged the PUT
 *                        (OK): the key must hold this value (or a later one)
 * A PUT line is written only after its OK arrived, so the log never claims
 * a write the server did not acknowledge. A SENT line with no PUT after it
 * is a write that may or may not have been applied (the client gave up, got
 * ERR, or was killed before it could log the OK): until the key's next PUT
 * line, the key may hold the last acknowledged value or any of those.
 * Writing the intent first is what keeps verify honest when the client
 * itself dies between the server's OK and its own log write.
 * Lines starting with '#' and empty lines are ignored. A last line without
 * its '\n' is a torn write (the host crashed mid-append) and is ignored by
 * the reader and cut off by the writer before it appends, because its
 * content cannot be trusted.
 *
 * Durability: each line is written with one write(2) on an O_APPEND fd when
 * the event happens, so it survives the client being killed; the file is
 * fdatasync'd every KVLOG_SYNC_LINES lines or KVLOG_SYNC_MS, and on close.
 * Only a crash of the client's own host can lose the last unsynced lines,
 * which makes a later verify check less, never wrongly. */
#ifndef FTVM_TOOLS_KVLOG_H
#define FTVM_TOOLS_KVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/kvclient/kvproto.h"

#define KVLOG_SYNC_LINES 256
#define KVLOG_SYNC_MS 1000

/* Parse one line (without its '\n'). Returns 1 for a record (acked: PUT
 * rather than SENT; key and
 * value filled; key/value need KVPROTO_TOKEN_MAX + 1 bytes), 0 for a line
 * to skip (empty or comment), -EPROTO for anything else. */
int kvlog__parse_line(const char *line, size_t len, bool *acked, char *key,
		      char *value);

/* What the log says about one key. */
struct kvlog_key {
	char key[KVPROTO_TOKEN_MAX + 1];
	bool has_acked;                       /* any PUT line */
	char acked[KVPROTO_TOKEN_MAX + 1];    /* value of the last PUT line */
	/* SENT values after the last PUT line: each may be what the key
	 * holds now. */
	char (*pending)[KVPROTO_TOKEN_MAX + 1];
	size_t n_pending, cap_pending;
	/* Hash of every value logged for this key (PUT or SENT), to tell a
	 * stale read (an older value of this key) from a wrong one. */
	uint64_t *seen;
	size_t n_seen, cap_seen;
};

struct kvlog {
	struct kvlog_key *keys; /* in order of first appearance */
	size_t n, cap;
	size_t *slots;          /* open addressing: index + 1 into keys, 0 empty */
	size_t n_slots;
	size_t lines, puts, sent, torn;
};

void kvlog__init(struct kvlog *l);
/* Read a log. -ENOENT if it does not exist; -EPROTO for a malformed line,
 * with *bad_line set to its 1-based number (if bad_line is non-NULL). */
int kvlog__load(struct kvlog *l, const char *path, size_t *bad_line);
/* Add one record, as the loader does for each line. */
int kvlog__add(struct kvlog *l, bool acked, const char *key, const char *value);
const struct kvlog_key *kvlog__find(const struct kvlog *l, const char *key);
bool kvlog__key_seen(const struct kvlog_key *k, const char *value);
void kvlog__free(struct kvlog *l);

uint64_t kvlog__hash(const char *s);

struct kvlog_writer {
	int fd;
	unsigned pending;       /* lines written since the last sync */
	uint64_t last_sync_us;
	uint64_t lines, syncs;
};

int kvlog__open_writer(struct kvlog_writer *w, const char *path);
int kvlog__append(struct kvlog_writer *w, bool acked, const char *key,
		  const char *value);
int kvlog__sync(struct kvlog_writer *w);
/* Syncs and closes; returns the first error seen. */
int kvlog__close_writer(struct kvlog_writer *w);

#endif
