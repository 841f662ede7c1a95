/*
 * Constants shared by the ring-0 boot stub (entry.S), the linker script
 * and the ring-3 C code. Only #defines: this header is included from
 * assembly too.
 */
#ifndef FTVM_GUEST_BOOT_LAYOUT_H
#define FTVM_GUEST_BOOT_LAYOUT_H

/* Where the linker puts the kernel (guest-physical == virtual). */
#define KERNEL_BASE        0x00100000

/*
 * The 32 exception stubs are the very first bytes of the image, 16 bytes
 * apart. Knowing their addresses at assembly time lets the IDT be
 * initialised data instead of a ring-0 loop (ring 0 is emulated on PVM
 * hosts, ~1 us per instruction). The linker script asserts this address.
 */
#define IDT_STUBS_ADDR     KERNEL_BASE
#define IDT_STUB_SIZE      16
#define IDT_VECTORS        32

/* Most vCPUs we support; each gets a TSS, a kernel and a user stack. */
#define MAX_CPUS           8

#define KSTACK_SIZE        8192        /* ring-0 stack (exceptions only) */
#define USTACK_SIZE        65536       /* ring-3 stack */
/*
 * Each vCPU's TSS is the 104-byte 64-bit TSS followed by an I/O permission
 * bitmap that allows ports 0..IO_PORTS-1 (COM1, 0xf4, 0x0f00, 0x0f04) to
 * ring 3, then the 0xff byte the CPU wants after a bitmap. Ring 3 also gets
 * RFLAGS.IOPL=3, but PVM hosts drop IOPL on the way to ring 3 and their
 * instruction emulator then consults this bitmap instead.
 */
#define TSS_SIZE           104
#define IO_PORTS           0x1000
#define TSS_LIMIT          (TSS_SIZE + IO_PORTS / 8)   /* includes the 0xff */
#define TSS_STRIDE         1024
#define TSS_STRIDE_SHIFT   10

/* GDT selectors. User data precedes user code (SYSRET order, by habit). */
#define SEL_KERNEL_CS      0x08
#define SEL_KERNEL_DS      0x10
#define SEL_USER_DS        0x18
#define SEL_USER_CS        0x20
#define SEL_TSS0           0x28        /* + 16 * cpu */

/*
 * boot_hv: the hypervisor CPUID leaves as vCPU 0 read them in ring 0
 * (u32 offsets), and whether it turned kvmclock on (pvclock data in
 * boot_pvclock). lib/time.c reads them in ring 3.
 */
#define HV_MAX             0           /* 0x40000000 EAX */
#define HV_SIG             4           /* 0x40000000 EBX ECX EDX */
#define HV_FEATURES        16          /* 0x40000001 EAX */
#define HV_TSC_KHZ         20          /* 0x40000010 EAX */
#define HV_APIC_KHZ        24          /* 0x40000010 EBX */
#define HV_KVMCLOCK_ON     28
#define HV_SIZE            32

/* Exit value used by the boot stub when the vCPU index is >= MAX_CPUS. */
#define EXIT_TOO_MANY_CPUS 3

/* Paravirtual ports (docs/guest-abi.md). */
#define PORT_EXIT          0x00f4
#define PORT_IDLE          0x0f00
#define PORT_TESTSYNC      0x0f04
#define PORT_COM1          0x03f8

#endif
