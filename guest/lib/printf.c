/* A small vsnprintf; printf formats into a stack buffer, then writes it
 * to COM1 in one go. */
#include "lib/printf.h"

#include <stdbool.h>
#include <stdint.h>

#include "lib/serial.h"
#include "lib/string.h"

struct out {
	char *buf;
	size_t size;
	size_t len; /* would-be length, like C's snprintf */
};

static void emit(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

/* prefix ("-", "0x" or "") goes before zero padding, after space padding. */
static void emit_padded(struct out *o, const char *prefix, const char *s,
			size_t n, int width, bool left, char pad)
{
	size_t plen = strlen(prefix);
	int fill = width > (int)(n + plen) ? width - (int)(n + plen) : 0;

	if (!left && pad == ' ') {
		while (fill-- > 0)
			emit(o, ' ');
	}
	for (size_t i = 0; i < plen; i++)
		emit(o, prefix[i]);
	if (!left && pad == '0') {
		while (fill-- > 0)
			emit(o, '0');
	}
	for (size_t i = 0; i < n; i++)
		emit(o, s[i]);
	if (left) {
		while (fill-- > 0)
			emit(o, ' ');
	}
}

/* Formats v in base 10 or 16 into the end of tmp; returns the start. */
static char *utoa(char *end, uint64_t v, unsigned base, bool upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char *p = end;

	do {
		*--p = digits[v % base];
		v /= base;
	} while (v);
	return p;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (const char *f = fmt; *f; f++) {
		if (*f != '%') {
			emit(&o, *f);
			continue;
		}
		f++;
		bool left = false, alt = false;
		char pad = ' ';
		for (;; f++) {
			if (*f == '-')
				left = true;
			else if (*f == '#')
				alt = true;
			else if (*f == '0')
				pad = '0';
			else
				break;
		}
		int width = 0;
		if (*f == '*') {
			width = va_arg(ap, int);
			f++;
		} else {
			while (*f >= '0' && *f <= '9')
				width = width * 10 + (*f++ - '0');
		}
		int prec = -1;
		if (*f == '.') {
			f++;
			prec = 0;
			if (*f == '*') {
				prec = va_arg(ap, int);
				f++;
			} else {
				while (*f >= '0' && *f <= '9')
					prec = prec * 10 + (*f++ - '0');
			}
		}
		int lng = 0; /* 0 int, 1 long, 2 long long, -1 short, -2 char */
		for (;; f++) {
			if (*f == 'l')
				lng++;
			else if (*f == 'z')
				lng = 1;
			else if (*f == 'h')
				lng--;
			else
				break;
		}

		char tmp[24];
		char *end = tmp + sizeof(tmp);
		char *s;
		uint64_t u;
		int64_t d;

		switch (*f) {
		case 'd':
		case 'i':
			if (lng >= 1)
				d = lng == 1 ? va_arg(ap, long) : va_arg(ap, long long);
			else
				d = va_arg(ap, int);
			if (lng == -1)
				d = (short)d;
			else if (lng <= -2)
				d = (signed char)d;
			s = utoa(end, d < 0 ? (uint64_t)0 - (uint64_t)d : (uint64_t)d, 10, false);
			emit_padded(&o, d < 0 ? "-" : "", s, (size_t)(end - s), width, left, pad);
			break;
		case 'u':
		case 'x':
		case 'X':
			if (lng >= 1)
				u = lng == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned long long);
			else
				u = va_arg(ap, unsigned int);
			if (lng == -1)
				u = (unsigned short)u;
			else if (lng <= -2)
				u = (unsigned char)u;
			s = utoa(end, u, *f == 'u' ? 10 : 16, *f == 'X');
			emit_padded(&o, alt && *f != 'u' && u ? (*f == 'X' ? "0X" : "0x") : "",
				    s, (size_t)(end - s), width, left, pad);
			break;
		case 'p':
			u = (uintptr_t)va_arg(ap, void *);
			s = utoa(end, u, 16, false);
			emit_padded(&o, "0x", s, (size_t)(end - s), width, left, ' ');
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			if (!str)
				str = "(null)";
			size_t n = 0;
			/* With a precision the array need not be NUL-terminated:
			 * never look at str[prec]. */
			while ((prec < 0 || n < (size_t)prec) && str[n])
				n++;
			emit_padded(&o, "", str, n, width, left, ' ');
			break;
		}
		case 'c':
			tmp[0] = (char)va_arg(ap, int);
			emit_padded(&o, "", tmp, 1, width, left, ' ');
			break;
		case '%':
			emit(&o, '%');
			break;
		case '\0':
			f--; /* stray '%' at the end */
			break;
		default:
			emit(&o, '%');
			emit(&o, *f);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int vprintf(const char *fmt, va_list ap)
{
	char buf[512];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;

	serial_write(buf, len);
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}
