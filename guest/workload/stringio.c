/*
 * workload=stringio blocks=N: writes N numbered 4 KiB blocks to the console
 * with one `rep outsb` each (string I/O: KVM splits it into several I/O
 * exits), then exits with 0. A host that pauses the vCPU meanwhile must
 * complete every exit it began (vm__park_if_requested): the console then
 * holds every block whole and in order (tests/integration/test_park_string_io.py).
 * Block b is "B<8 digits b>:" followed by 4086 bytes of 'a' + (b + i) % 26
 * and a newline.
 */
#include "boot/layout.h"
#include "lib/cmdline.h"
#include "lib/printf.h"
#include "lib/sys.h"
#include "workload/workload.h"

#define BLOCK 4096

static uint8_t block[BLOCK];

void workload_stringio(void)
{
	const char *s = cmdline_get("blocks");
	uint64_t n = 200;

	if (s && (parse_u64(s, &n) || n < 1 || n > 100000000))
		guest_fatal("workload=stringio: bad blocks='%s' (1..100000000)", s);
	if (cmdline_report_unused())
		guest_fatal("workload=stringio: unknown parameters (stringio takes blocks=)");
	printf("ftvm-guest: ready workload=stringio blocks=%llu\n", (unsigned long long)n);
	for (uint64_t b = 0; b < n; b++) {
		uint64_t v = b;
		block[0] = 'B';
		for (int d = 8; d >= 1; d--) {
			block[d] = (uint8_t)('0' + v % 10);
			v /= 10;
		}
		block[9] = ':';
		for (unsigned i = 10; i < BLOCK - 1; i++)
			block[i] = (uint8_t)('a' + (b + i) % 26);
		block[BLOCK - 1] = '\n';
		const uint8_t *p = block;
		uint64_t count = BLOCK;
		__asm__ volatile("rep outsb"
				 : "+S"(p), "+c"(count)
				 : "d"((uint16_t)PORT_COM1)
				 : "memory");
	}
	printf("ftvm-guest: stringio done\n");
}
