/*
 * Ring-0 boot stub: PVH entry (32-bit protected mode, paging off) to
 * 64-bit long mode, then iretq to ring 3 where everything else runs.
 *
 * On PVM hosts ring-0 code is emulated at ~1 us per instruction, so this
 * path is kept to well under a hundred instructions per vCPU: the page
 * tables, GDT and IDT are initialised data built by the assembler, and
 * the only thing computed at run time is the vCPU's own TSS and its
 * descriptor (the base address has to be scattered over bit fields, which
 * the assembler cannot do with a relocatable symbol).
 *
 * Every vCPU enters here (ftvm starts all of them at the PVH entry). The
 * vCPU index is the initial APIC ID, CPUID.1:EBX[31:24].
 */
#include "boot/layout.h"

#define CR0_MP         (1 << 1)
#define CR0_EM         (1 << 2)
#define CR0_TS         (1 << 3)
#define CR0_NE         (1 << 5)
#define CR0_NW         (1 << 29)
#define CR0_CD         (1 << 30)
#define CR0_PG         (1 << 31)
#define CR4_PAE        (1 << 5)
#define CR4_OSFXSR     (1 << 9)
#define CR4_OSXMMEXCPT (1 << 10)
#define MSR_EFER       0xc0000080
#define EFER_LME       (1 << 8)
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1 << 3)

/* Page-table entry bits. A and D are preset so the CPU never has to write
 * the tables back (fewer dirty pages to replicate). */
#define PTE_P          0x001
#define PTE_RW         0x002
#define PTE_US         0x004
#define PTE_PWT        0x008
#define PTE_PCD        0x010
#define PTE_A          0x020
#define PTE_D          0x040
#define PTE_PS         0x080
#define PTE_TABLE      (PTE_P | PTE_RW | PTE_US | PTE_A)
#define PTE_2M         (PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_PS)
#define UNCACHED_FROM  0xc0000000   /* top GiB: virtio-mmio, LAPIC */

/* RFLAGS for ring 3: IOPL=3 (port I/O allowed), IF=0, bit 1 reserved.
 * PVM hosts clear IOPL on the switch to ring 3; the TSS I/O bitmap below
 * is what lets ring 3 reach the ports there. */
#define USER_RFLAGS    0x3002

/* ------------------------------------------------------------------ */
/* PVH note: XEN_ELFNOTE_PHYS32_ENTRY (type 18), name "Xen". The value is
 * 8 bytes like Linux's (QEMU reads a pointer-sized value from 64-bit
 * ELFs); a reader taking the low 4 bytes gets the same address. */
	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 8                 /* descsz */
	.long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry

/* ------------------------------------------------------------------ */
/* Exception stubs: first in the image (linker script asserts it), one
 * every 16 bytes, so the IDT below can name them with constants. Vectors
 * where the CPU pushes no error code push a 0 to keep one frame layout. */
	.section .text.boot, "ax"
	.code64
	.balign IDT_STUB_SIZE
	.globl idt_stubs
idt_stubs:
	.set vec, 0
	.rept IDT_VECTORS
	.balign IDT_STUB_SIZE
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq $0
	.endif
	pushq $vec
	jmp trap_common
	.set vec, vec + 1
	.endr

/* Stack: vector, error, rip, cs, rflags, rsp, ss. Never returns: the C
 * handler reports the fault and stops the VM. */
trap_common:
	movq %rsp, %rdi
	andq $-16, %rsp
	call trap_panic
1:	cli
	hlt
	jmp 1b

/* ------------------------------------------------------------------ */
	.code32
	.globl pvh_entry
pvh_entry:
	/* EBX = hvm_start_info; keep it in EDI (cpuid clobbers EBX). */
	movl %ebx, %edi
	/* The first thing: the boot timestamp (guest_ns counts from here). */
	rdtsc
	movl %eax, %esi
	movl %edx, %ebp
	movl $1, %eax
	cpuid
	shrl $24, %ebx                  /* EBX = vCPU index (initial APIC ID) */

	lgdt gdt_desc
	movl $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	/* Paging on (-> long mode); SSE usable (MP set, EM/TS clear); caches
	 * on (CD/NW clear), whatever the VMM's reset value of CR0 was. */
	movl %cr0, %eax
	andl $~(CR0_EM | CR0_TS | CR0_CD | CR0_NW), %eax
	orl $(CR0_PG | CR0_MP | CR0_NE), %eax
	movl %eax, %cr0
	ljmp $SEL_KERNEL_CS, $long_mode

	.code64
long_mode:
	movl $SEL_KERNEL_DS, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	/* Upper halves are undefined after the mode switch: zero-extend. */
	movl %ebx, %ebx
	movl %edi, %edi
	movl %esi, %esi
	movl %ebp, %ebp

	cmpl $MAX_CPUS, %ebx
	jae too_many_cpus

	/* boot_tsc[cpu] = EBP:ESI */
	shlq $32, %rbp
	orq %rsi, %rbp
	movq %rbp, boot_tsc(, %rbx, 8)

	/* vCPU 0 reads the hypervisor's CPUID leaves here, in ring 0, for
	 * time_init() (lib/time.c). Not in ring 3: a host without CPUID
	 * faulting (seen: PVM on AMD) runs a ring-3 CPUID natively, so
	 * ring 3 sees the host's leaves, not the ones the VMM set. Where
	 * there is no TSC-rate leaf but kvmclock is offered, kvmclock is
	 * turned on so ring 3 can derive the rate from its pvclock data. */
	testl %ebx, %ebx
	jnz 3f
	movl $0x40000000, %eax
	xorl %ecx, %ecx
	cpuid
	movl %eax, %r12d                /* R12 = max hypervisor leaf */
	movl %eax, boot_hv + HV_MAX
	movl %ebx, boot_hv + HV_SIG
	movl %ecx, boot_hv + HV_SIG + 4
	movl %edx, boot_hv + HV_SIG + 8
	movl $0x40000001, %eax
	xorl %ecx, %ecx
	cpuid
	movl %eax, boot_hv + HV_FEATURES
	movl $0x40000010, %eax
	xorl %ecx, %ecx
	cpuid
	movl %eax, boot_hv + HV_TSC_KHZ
	movl %ebx, boot_hv + HV_APIC_KHZ
	cmpl $0x40000010, %r12d
	jb 1f
	testl %eax, %eax
	jnz 2f                          /* the timing leaf has the rate */
1:	cmpl $0x4b4d564b, boot_hv + HV_SIG      /* "KVMKVMKVM\0\0\0" */
	jne 2f
	cmpl $0x564b4d56, boot_hv + HV_SIG + 4
	jne 2f
	cmpl $0x0000004d, boot_hv + HV_SIG + 8
	jne 2f
	cmpl $0x40000001, %r12d
	jb 2f
	testl $KVM_FEATURE_CLOCKSOURCE2, boot_hv + HV_FEATURES
	jz 2f
	movl $MSR_KVM_SYSTEM_TIME_NEW, %ecx
	movl $(boot_pvclock + 1), %eax  /* bit 0: enable */
	xorl %edx, %edx
	wrmsr
	movl $1, boot_hv + HV_KVMCLOCK_ON
2:	xorl %ebx, %ebx                 /* vCPU index 0 again */
3:
	/* Kernel stack top for this vCPU. */
	leal 1(%ebx), %eax
	imull $KSTACK_SIZE, %eax
	leaq kstacks(%rax), %rsp

	/* TSS for this vCPU: RSP0 = kernel stack top, and an I/O bitmap
	 * right after the TSS (all zero = allowed, from .bss) ending in 0xff. */
	movl %ebx, %ecx
	shll $TSS_STRIDE_SHIFT, %ecx
	leaq tss_array(%rcx), %rcx
	movq %rsp, 4(%rcx)
	movw $TSS_SIZE, 102(%rcx)
	movb $0xff, TSS_LIMIT(%rcx)

	/* Its 16-byte GDT descriptor: limit, type 9 (64-bit TSS), P. */
	movl %ecx, %eax
	andl $0xffffff, %eax
	shlq $16, %rax                  /* base[23:0] -> bits 16..39 */
	movl %ecx, %edx
	shrl $24, %edx
	shlq $56, %rdx                  /* base[31:24] -> bits 56..63 */
	orq %rdx, %rax
	movabsq $(0x0000890000000000 | TSS_LIMIT), %rdx
	orq %rdx, %rax
	movl %ebx, %edx
	shll $4, %edx
	movq %rax, gdt + SEL_TSS0(%rdx)
	addl $SEL_TSS0, %edx
	ltr %dx

	lidt idt_desc

	/* iretq to ring 3: SS, RSP, RFLAGS, CS, RIP. RDI/RSI are the
	 * arguments of guest_entry(start_info, cpu). */
	leal 1(%ebx), %eax
	imull $USTACK_SIZE, %eax
	leaq ustacks(%rax), %rax
	pushq $(SEL_USER_DS | 3)
	pushq %rax
	pushq $USER_RFLAGS
	pushq $(SEL_USER_CS | 3)
	pushq $user_entry
	movl %ebx, %esi
	iretq

too_many_cpus:
	movw $PORT_EXIT, %dx
	movl $EXIT_TOO_MANY_CPUS, %eax
	outl %eax, %dx
1:	cli
	hlt
	jmp 1b

/* Ring 3 from here on. The stack is 16-byte aligned, so `call` gives the C
 * function the ABI's alignment. */
user_entry:
	xorl %ebp, %ebp
	call guest_entry
	ud2

/* ------------------------------------------------------------------ */
	.section .data.boot, "aw"
	.balign 16
gdt:
	.quad 0
	.quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff        /* 0x10 kernel data */
	.quad 0x00cff2000000ffff        /* 0x18 user data, DPL 3 */
	.quad 0x00affa000000ffff        /* 0x20 user code, 64-bit, DPL 3 */
	.fill MAX_CPUS * 2, 8, 0        /* 0x28 + 16*cpu: TSS descriptors */
gdt_end:

	.balign 8
	.word 0
gdt_desc:                               /* lgdt in 32-bit mode reads 6 bytes */
	.word gdt_end - gdt - 1
	.quad gdt

	.balign 16
idt:
	.set vec, 0
	.rept IDT_VECTORS
	.word (IDT_STUBS_ADDR + vec * IDT_STUB_SIZE) & 0xffff
	.word SEL_KERNEL_CS
	.byte 0                         /* no IST */
	.byte 0x8e                      /* present, DPL 0, interrupt gate */
	.word (IDT_STUBS_ADDR + vec * IDT_STUB_SIZE) >> 16
	.long 0
	.long 0
	.set vec, vec + 1
	.endr
idt_end:

	.balign 8
	.word 0
idt_desc:
	.word idt_end - idt - 1
	.quad idt

/* Identity map of the first 4 GiB with 2 MiB pages, all user-accessible
 * (ring 3 drives the virtio-mmio registers itself). */
	.section .data.pagetables, "aw"
	.balign 4096
pml4:
	.quad pdpt + PTE_TABLE
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x0000 + PTE_TABLE
	.quad pd + 0x1000 + PTE_TABLE
	.quad pd + 0x2000 + PTE_TABLE
	.quad pd + 0x3000 + PTE_TABLE
	.fill 508, 8, 0
pd:
	.set addr, 0
	.rept 2048
	.if addr >= UNCACHED_FROM
	.quad addr + PTE_2M + PTE_PCD + PTE_PWT
	.else
	.quad addr + PTE_2M
	.endif
	.set addr, addr + 0x200000
	.endr

/* ------------------------------------------------------------------ */
	.section .bss.boot, "aw", @nobits
	.balign 4096
	.globl kstacks, ustacks, tss_array, boot_tsc, boot_hv, boot_pvclock
kstacks:
	.skip KSTACK_SIZE * MAX_CPUS
ustacks:
	.skip USTACK_SIZE * MAX_CPUS
	.balign TSS_STRIDE
tss_array:
	.skip TSS_STRIDE * MAX_CPUS
	.balign 8
boot_tsc:
	.skip 8 * MAX_CPUS
	.balign 8
boot_hv:
	.skip HV_SIZE
	.balign 64                      /* never crosses a page */
boot_pvclock:
	.skip 32
