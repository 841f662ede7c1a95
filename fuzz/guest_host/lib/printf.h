/*
 * fuzz/guest_host/lib/printf.h - guest/lib/printf.h for the host build of
 * fuzz_guest_net. The guest's own vsnprintf (guest/lib/printf.c) formats
 * every answer the kv service sends, so it is compiled in and fuzzed too;
 * its names are prefixed so that it does not replace the C library's
 * printf family (which the sanitizers and libFuzzer use) in the process.
 * The guest's printf() goes to serial_write(): the shim drops it, or
 * writes it to stderr with FUZZ_GUEST_NET_VERBOSE=1.
 */
#ifndef FTVM_FUZZ_GUEST_HOST_PRINTF_H
#define FTVM_FUZZ_GUEST_HOST_PRINTF_H

/* Function-like, so that the format(printf, ...) attributes keep their
 * archetype. */
#define vsnprintf(...) guest_vsnprintf(__VA_ARGS__)
#define snprintf(...) guest_snprintf(__VA_ARGS__)
#define printf(...) guest_printf(__VA_ARGS__)
#define vprintf(...) guest_vprintf(__VA_ARGS__)
#include_next "lib/printf.h"

#endif
