/*
 * COM1 transmit. Every port access is a VM exit, and on PVM hosts an exit
 * from ring 3 costs tens of microseconds (the I/O instruction traps and
 * is emulated), so output is sent in 16-byte bursts: the FIFO is enabled
 * once, then each burst waits for LSR.THRE (FIFO empty; ftvm always
 * reports it) and goes out with one `rep outsb`, which KVM can hand to
 * the VMM as a single string-I/O exit.
 */
#include "lib/serial.h"

#include <stdbool.h>

#include "boot/layout.h"
#include "lib/x86.h"

#define UART_THR  0
#define UART_FCR  2
#define UART_LSR  5
#define LSR_THRE  0x20
#define FCR_ENABLE_CLEAR 0x07 /* FIFO on, clear RX and TX FIFOs */
#define FIFO_SIZE 16

static bool fifo_on;

static void wait_thre(void)
{
	/* Bounded: a broken UART must not hang the guest forever. */
	for (int i = 0; i < 100000; i++) {
		if (inb(PORT_COM1 + UART_LSR) & LSR_THRE)
			return;
		cpu_relax();
	}
}

void serial_write(const char *s, size_t n)
{
	if (!fifo_on) {
		outb(PORT_COM1 + UART_FCR, FCR_ENABLE_CLEAR);
		fifo_on = true;
	}
	while (n) {
		size_t chunk = n < FIFO_SIZE ? n : FIFO_SIZE;
		wait_thre();
		__asm__ volatile("rep outsb"
				 : "+S"(s), "+c"(chunk)
				 : "d"((uint16_t)(PORT_COM1 + UART_THR))
				 : "memory");
		n -= n < FIFO_SIZE ? n : FIFO_SIZE;
	}
}

void serial_putc(char c)
{
	serial_write(&c, 1);
}
