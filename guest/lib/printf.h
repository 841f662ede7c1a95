/* printf family: %d %i %u %x %X %p %s %c %% with flags '-' '0' '#',
 * width, precision (for %s), length modifiers hh h l ll z. */
#ifndef FTVM_GUEST_PRINTF_H
#define FTVM_GUEST_PRINTF_H

#include <stdarg.h>
#include <stddef.h>

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* To COM1; lines longer than 512 bytes are truncated. */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
