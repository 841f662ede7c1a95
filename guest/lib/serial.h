/* COM1 output (16550 THR at 0x3f8). */
#ifndef FTVM_GUEST_SERIAL_H
#define FTVM_GUEST_SERIAL_H

#include <stddef.h>

void serial_putc(char c);
void serial_write(const char *s, size_t n);

#endif
