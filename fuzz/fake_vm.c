/* fake_vm.c - see fake_vm.h. */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fake_vm.h"

const struct io_handler *fake_vm_handler;
static struct io_handler handler_copy;

int io_bus__register(struct io_bus *bus, const struct io_handler *h)
{
	(void)bus;
	handler_copy = *h;
	fake_vm_handler = &handler_copy;
	return 0;
}

void io_thread__kick(struct vm *vm)
{
	(void)vm;
}

/* vm.c's, for the fake's one memory slot at guest address 0. */
uint64_t vm__page_gpa(struct vm *vm, uint64_t page)
{
	(void)vm;
	return page * VMM_PAGE_SIZE;
}

struct vm *fake_vm(uint8_t **ram_out)
{
	static struct vm vm;
	static uint8_t *ram;
	if (!ram) {
		ram = aligned_alloc(4096, FAKE_VM_RAM);
		vm.mem.slots[0] = (struct mem_slot){ .gpa = 0, .size = FAKE_VM_RAM, .host = ram };
		vm.mem.nr_slots = 1;
		vm.mem.nr_pages = FAKE_VM_RAM / VMM_PAGE_SIZE;
		if (!ram || page_set__init(&vm.mem.vmm_dirty, vm.mem.nr_pages))
			abort();
		pthread_mutex_init(&vm.dev_lock, NULL);
	}
	memset(ram, 0, FAKE_VM_RAM);
	page_set__clear(&vm.mem.vmm_dirty);
	fake_vm_handler = NULL;
	*ram_out = ram;
	return &vm;
}

void fake_vm_machine(struct vm *vm, struct serial *s, struct virtio_mmio *blk, struct virtio_mmio *net,
		     struct disk *d)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	vm->cfg.mem_size = FAKE_VM_RAM;
	vm->cfg.disk = blk ? d : NULL;
	memcpy(vm->cfg.mac, mac, 6);
	vm->nr_vcpus = 1;
	vm->vcpus[0] = (struct vcpu){ .vm = vm, .idx = 0, .fd = -1, .nr_msr_list = -1 };
	vm->kvm_fd = vm->vm_fd = -1;
	vm->tsc_khz = 2000000;
	/* Some CPU: the check compares the model, whatever it is. */
	memcpy(vm->cpu_model.vendor, "GenuineIntel", 12);
	for (unsigned i = 0; i < VM_CPU_WORDS; i++)
		vm->cpu_model.word[i] = 0x01000101u * (i + 1);
	vm->serial = s;
	vm->blk = blk;
	vm->net = net;
}
