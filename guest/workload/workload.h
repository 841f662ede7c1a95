/* The workloads selectable with workload=NAME (guest/README.md). Each
 * reads its own key=value words, and only returns to exit cleanly. */
#ifndef FTVM_GUEST_WORKLOAD_H
#define FTVM_GUEST_WORKLOAD_H

void workload_kv(void);
void workload_dirty(void);
void workload_dirtytest(void);
void workload_stringio(void);

#endif
