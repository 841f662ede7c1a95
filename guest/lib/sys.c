#include "lib/sys.h"

#include <stdarg.h>

#include "boot/layout.h"
#include "lib/printf.h"
#include "lib/x86.h"

void guest_exit(uint32_t code)
{
	outl(PORT_EXIT, code);
	for (;;)
		guest_idle(1000000);
}

void guest_fatal(const char *fmt, ...)
{
	va_list ap;

	printf("ftvm-guest: error: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	guest_exit(EXIT_CONFIG);
}

void guest_idle(uint32_t us)
{
	outl(PORT_IDLE, us ? us : 1);
}

void guest_testsync(uint32_t v)
{
	outl(PORT_TESTSYNC, v);
}
