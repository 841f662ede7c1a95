/* monitor_internal.h - shared by the files of vmm/monitor/. */
#ifndef FTVM_MONITOR_INTERNAL_H
#define FTVM_MONITOR_INTERNAL_H

#include "vmm/state/state.h"
#include "vmm/vmm.h"

#define MON_MAX_DEPTH 8

struct mon_reply {
	struct sbuf text;	/* rendered for people */
	struct sbuf json;	/* the members of the "return" object */
	bool error;
	enum mon_error_class err_class;
	char err_desc[512];
	unsigned depth;
	bool need_comma[MON_MAX_DEPTH];
	bool in_array[MON_MAX_DEPTH];
	unsigned array_index[MON_MAX_DEPTH];
};

void mon_reply__init(struct mon_reply *r);
void mon_reply__free(struct mon_reply *r);
/* Appends the finished answer: text (without prompt) or one JSON line. */
void mon_reply__render(struct mon_reply *r, bool json, struct sbuf *out);
void json__append_string(struct sbuf *out, const char *s);

/* Built-in VM commands (vm_commands.c). */
int vm_commands__register(struct monitor *m, struct vm *vm);
struct vm *monitor__vm(struct monitor *m);

#endif
