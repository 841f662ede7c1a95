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

#endif
