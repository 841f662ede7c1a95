/* The ftvm paravirtual ports (docs/guest-abi.md) and how the guest stops. */
#ifndef FTVM_GUEST_SYS_H
#define FTVM_GUEST_SYS_H

#include <stdint.h>

/* Exit values written to port 0xf4 (ftvm exits with value & 0xff; QEMU's
 * isa-debug-exit with (v << 1) | 1). */
#define EXIT_OK            0
#define EXIT_CONFIG        2   /* bad command line / missing device */
/* 3: too many vCPUs (boot stub); 0x80 | vector: CPU exception */

/* Stops the VM. If nobody listens on the exit port (plain QEMU without
 * isa-debug-exit) the vCPU idles forever instead. */
void __attribute__((noreturn)) guest_exit(uint32_t code);

/* Prints "ftvm-guest: error: <msg>" and exits with EXIT_CONFIG. */
void __attribute__((noreturn, format(printf, 1, 2))) guest_fatal(const char *fmt, ...);

/* Blocks this vCPU until a device event or `us` microseconds pass (ftvm);
 * returns at once under QEMU. 0 means 1 s to ftvm, so never pass 0. */
void guest_idle(uint32_t us);

/* Test-sync port: ftvm calls a host test's hook with v. */
void guest_testsync(uint32_t v);

#endif
