/*
 * fake_vm.h - a VM without KVM for the fuzz harnesses (fake_vm.c): guest
 * RAM is a malloc'd buffer behind the VMM's real memory-slot code, the
 * MMIO bus keeps the last handler registered, the I/O thread is absent
 * (the harness delivers frames itself). Enough for the virtio models.
 */
#ifndef FTVM_FUZZ_FAKE_VM_H
#define FTVM_FUZZ_FAKE_VM_H

#include "vmm/vm_internal.h"

#define FAKE_VM_RAM (64u * 4096u)

/* The VM (created on first use) with its RAM zeroed; its RAM in *ram. */
struct vm *fake_vm(uint8_t **ram);
/* The handler the last virtio_*__create registered (NULL before). */
extern const struct io_handler *fake_vm_handler;

/*
 * The machine around the devices, as vm_snapshot.c describes and checks
 * it: one vCPU, FAKE_VM_RAM of memory, a fixed TSC rate and CPU model, the given serial
 * port, virtio-blk on disk d and virtio-net (either may be NULL).
 */
void fake_vm_machine(struct vm *vm, struct serial *s, struct virtio_mmio *blk, struct virtio_mmio *net,
		     struct disk *d);

/* fake_kvm.c (targets linked with -Wl,--wrap=ioctl): forget every SET;
 * the ioctl that vmm/ code calls there. */
void fake_kvm_reset(void);
int __wrap_ioctl(int fd, unsigned long req, ...);

#endif
