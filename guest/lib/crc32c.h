/* CRC-32C (Castagnoli), as used by the kv log records. */
#ifndef FTVM_GUEST_CRC32C_H
#define FTVM_GUEST_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Builds the tables; crc32c() must not be called before. */
void crc32c_init(void);
/* The standard CRC-32C of buf (init and final xor 0xffffffff):
 * crc32c("123456789", 9) == 0xe3069283. */
uint32_t crc32c(const void *buf, size_t len);

#endif
