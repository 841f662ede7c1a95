/*
 * wire.c - the names of the checkpoint protocol's messages
 * (docs/wire-format.md), for logs and errors on both sides, and the host of
 * a peer's address.
 */
#include <stdio.h>
#include <string.h>

#include "ft/ft_internal.h"

const char *const ft_msg_names[FT_MSG_MAX] = {
	[FT_MSG_HELLO] = "HELLO", [FT_MSG_HELLO_OK] = "HELLO_OK", [FT_MSG_ERROR] = "ERROR",
	[FT_MSG_SYNC_RAM] = "SYNC_RAM", [FT_MSG_SYNC_DISK] = "SYNC_DISK",
	[FT_MSG_BEGIN] = "BEGIN", [FT_MSG_PAGES] = "PAGES", [FT_MSG_STATE] = "STATE",
	[FT_MSG_OUTPUTS] = "OUTPUTS", [FT_MSG_COMMIT] = "COMMIT", [FT_MSG_ACK] = "ACK",
	[FT_MSG_HEARTBEAT] = "HEARTBEAT", [FT_MSG_CANCEL] = "CANCEL",
	[FT_MSG_HANDOVER] = "HANDOVER", [FT_MSG_HANDOVER_OK] = "HANDOVER_OK",
	[FT_MSG_CANCEL_OK] = "CANCEL_OK",
};

void ft__host_of(const char *hostport, char *host, size_t len)
{
	const char *a = hostport;
	const char *end = *a == '[' ? strchr(a, ']') : strrchr(a, ':');
	if (*a == '[')
		a++;
	size_t n = end && end >= a ? (size_t)(end - a) : strlen(a);
	snprintf(host, len, "%.*s", (int)(n < len ? n : len - 1), a);
}
