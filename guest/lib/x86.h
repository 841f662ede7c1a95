/* Inline x86 helpers: port I/O, TSC, CPUID, barriers, unaligned access. */
#ifndef FTVM_GUEST_X86_H
#define FTVM_GUEST_X86_H

#include <stdint.h>
#include <stddef.h>

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/*
 * rdtsc is not ordered with earlier loads: the CPU may read the TSC before
 * a preceding load completes. "read the other vCPU's published TSC, then
 * our own" needs a fence that holds on both vendors: LFENCE is dispatch
 * serializing on Intel, but on AMD only where the host set
 * DE_CFG[1] (a guest cannot); MFENCE orders on AMD. Both, as Linux picks
 * per vendor (rdtsc_ordered). RDTSCP would do too, but KVM does not offer
 * it on every host (not in KVM_GET_SUPPORTED_CPUID on PVM).
 */
static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;
	__asm__ volatile("mfence; lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b,
			 uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid"
			 : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(sub));
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* Compiler-only barrier: x86 keeps stores ordered with stores and loads
 * with loads, so this is enough between ring writes that the device reads
 * in order (descriptors, then the avail index). */
static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

/* Full fence: before an MMIO doorbell, so every ring store is visible
 * before the device is told to look. */
static inline void mb(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

/* Big-endian (network order) access to possibly unaligned bytes. */
static inline uint16_t get_be16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)((b[0] << 8) | b[1]);
}

static inline uint32_t get_be32(const void *p)
{
	const uint8_t *b = p;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
	       ((uint32_t)b[2] << 8) | b[3];
}

static inline void put_be16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static inline void put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}

static inline uint16_t get_le16(const void *p)
{
	uint16_t v;
	__builtin_memcpy(&v, p, 2);
	return v;
}

static inline uint32_t get_le32(const void *p)
{
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

static inline uint64_t get_le64(const void *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}

static inline void put_le16(void *p, uint16_t v)
{
	__builtin_memcpy(p, &v, 2);
}

static inline void put_le32(void *p, uint32_t v)
{
	__builtin_memcpy(p, &v, 4);
}

static inline void put_le64(void *p, uint64_t v)
{
	__builtin_memcpy(p, &v, 8);
}

#endif
