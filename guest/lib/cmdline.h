/* `key=value` words of the command line. */
#ifndef FTVM_GUEST_CMDLINE_H
#define FTVM_GUEST_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

#define CMDLINE_MAX_WORDS 32
#define CMDLINE_MAX_LEN   1024

/* Splits s into words; 0, or -E2BIG if it is too long / has too many words. */
int cmdline_parse(const char *s);
/* Value of key (the last occurrence), or NULL. Marks the key as used. */
const char *cmdline_get(const char *key);
/* Prints an error for every word no cmdline_get() asked for and returns how
 * many there were. Words whose key contains a '.' (Linux-style module
 * parameters such as QEMU's virtio_mmio.device=) are ignored. */
int cmdline_report_unused(void);

/* Value parsers: 0, or -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t *out);             /* decimal or 0x.. */
int parse_ipv4(const char *s, uint32_t *ip);              /* A.B.C.D */
int parse_ipv4_cidr(const char *s, uint32_t *ip, int *prefix); /* A.B.C.D[/N] */
void format_ipv4(char *buf, uint32_t ip);                 /* buf >= 16 bytes */

#endif
