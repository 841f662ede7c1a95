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
