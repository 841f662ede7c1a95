/*
 * fuzz/guest_host/lib/x86.h - guest/lib/x86.h for the host build of
 * fuzz_guest_net. The guest's own header is used (its byte-order helpers
 * are code under test); only what a host process cannot or must not do is
 * replaced: port I/O aborts, and the TSC is a deterministic
 * counter (fuzz/guest_host/host_guest.c), so answers that carry it (TIME,
 * STAT) are the same on every run of an input.
 */
#ifndef FTVM_FUZZ_GUEST_HOST_X86_H
#define FTVM_FUZZ_GUEST_HOST_X86_H

#define outb ftvm_guest_outb_unused
#define outl ftvm_guest_outl_unused
#define inb ftvm_guest_inb_unused
#define rdtsc ftvm_guest_rdtsc_unused
#define rdtsc_ordered ftvm_guest_rdtsc_ordered_unused
#include_next "lib/x86.h"
#undef outb
#undef outl
#undef inb
#undef rdtsc
#undef rdtsc_ordered

uint64_t host_guest_rdtsc(void);
void __attribute__((noreturn)) host_guest_no_port_io(uint16_t port);

static inline void outb(uint16_t port, uint8_t v)
{
	(void)v;
	host_guest_no_port_io(port);
}

static inline void outl(uint16_t port, uint32_t v)
{
	(void)v;
	host_guest_no_port_io(port);
}

static inline uint8_t inb(uint16_t port)
{
	host_guest_no_port_io(port);
}

static inline uint64_t rdtsc(void)
{
	return host_guest_rdtsc();
}

static inline uint64_t rdtsc_ordered(void)
{
	return host_guest_rdtsc();
}

#endif
