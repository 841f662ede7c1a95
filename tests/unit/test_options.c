/*
 * test_options.c - the ftvm command line: what operators type is accepted,
 * and every malformed flag is refused with a message naming it.
 */
#include <stdio.h>
#include <string.h>

#include "vmm/cli/options.h"

#include "tests/unit/check.h"

static int parse(struct ftvm_options *o, char *err, int argc, const char **argv)
{
	return options__parse(o, argc, (char **)argv, err, 256);
}

#define ARGV(...) ((const char *[]){ "ftvm", __VA_ARGS__ })
#define NARGS(...) (int)(sizeof((const char *[]){ "ftvm", __VA_ARGS__ }) / sizeof(char *))
#define PARSE(o, err, ...) parse(o, err, NARGS(__VA_ARGS__), ARGV(__VA_ARGS__))

static void test_good(void)
{
	struct ftvm_options o;
	char err[256] = "";
	int r = PARSE(&o, err, "--memory", "512M", "--smp", "2", "--kernel", "k.elf", "--append",
		      "workload=kv ip=10.0.0.10/24", "--drive", "file=/tmp/a.img,mode=replicated",
		      "--netdev", "tap,ifname=tap0,mac=52:54:00:ab:cd:ef", "--serial", "file:/tmp/s",
		      "--monitor", "unix:/tmp/m.sock", "--name", "vm1", "--incoming", "tcp:0:4444");
	CHECK(r == 0, "good command line refused: %s", err);
	CHECK(o.mem_size == 512ull << 20, "memory %llu", (unsigned long long)o.mem_size);
	CHECK(o.smp == 2, "smp");
	CHECK(strcmp(o.drive_file, "/tmp/a.img") == 0 && o.drive_mode == VM_DRIVE_REPLICATED, "drive");
	CHECK(strcmp(o.tap_ifname, "tap0") == 0 && o.mac[3] == 0xab && o.mac[5] == 0xef, "netdev");
	CHECK(o.incoming_port == 4444 && strcmp(o.incoming_host, "0") == 0, "incoming");
	CHECK(strcmp(o.name, "vm1") == 0, "name");

	r = PARSE(&o, err, "--kernel=k.elf", "--memory=1G");
	CHECK(r == 0 && o.mem_size == 1ull << 30, "--flag=value form: %s", err);
	r = PARSE(&o, err, "--kernel", "k", "--memory", "256");
	CHECK(r == 0 && o.mem_size == 256ull << 20, "plain number is MiB");
	r = PARSE(&o, err, "--restore", "x.snap");
	CHECK(r == 0 && o.restore && !o.kernel, "--restore without --kernel");
	r = PARSE(&o, err, "--help");
	CHECK(r == 0 && o.help, "--help");
}

static void refused(const char *what, const char *needle, int r, const char *err)
{
	CHECK(r < 0, "%s: accepted", what);
	CHECK(strstr(err, needle) != NULL, "%s: error '%s' does not mention '%s'", what, err, needle);
}

static void test_bad(void)
{
	struct ftvm_options o;
	char err[256];

#define BAD(needle, ...)                                              \
	do {                                                          \
		err[0] = '\0';                                        \
		int r_ = PARSE(&o, err, __VA_ARGS__);                 \
		refused(#__VA_ARGS__, needle, r_, err);               \
	} while (0)

	BAD("--bogus", "--kernel", "k", "--bogus", "1");
	BAD("needs a value", "--kernel");
	BAD("--kernel", "--memory", "64M");
	BAD("--memory", "--kernel", "k", "--memory", "");
	BAD("--memory", "--kernel", "k", "--memory", "12X");
	BAD("--memory", "--kernel", "k", "--memory", "-5M");
	BAD("--memory", "--kernel", "k", "--memory", "99999999999999999999");
	BAD("--memory", "--kernel", "k", "--memory", "1M");
	BAD("--smp", "--kernel", "k", "--smp", "0");
	BAD("--smp", "--kernel", "k", "--smp", "1000");
	BAD("--smp", "--kernel", "k", "--smp", "1x");
	BAD("file=PATH is required", "--kernel", "k", "--drive", "mode=shared");
	BAD("mode=x", "--kernel", "k", "--drive", "file=a,mode=x");
	BAD("only 'tap'", "--kernel", "k", "--netdev", "bridge,ifname=a");
	BAD("ifname", "--kernel", "k", "--netdev", "tap,mac=52:54:00:00:00:01");
	BAD("ifname", "--kernel", "k", "--netdev", "tap,ifname=averyveryverylongname");
	BAD("bad MAC", "--kernel", "k", "--netdev", "tap,ifname=t,mac=52:54:00:00:00");
	BAD("bad MAC", "--kernel", "k", "--netdev", "tap,ifname=t,mac=52:54:00:00:00:0g");
	BAD("bad MAC", "--kernel", "k", "--netdev", "tap,ifname=t,mac=52:54:00:00:00:001");
	BAD("--serial", "--kernel", "k", "--serial", "file:");
	BAD("--monitor", "--kernel", "k", "--monitor", "unix:");
	BAD("--incoming", "--kernel", "k", "--incoming", "tcp:host");
	BAD("--incoming", "--kernel", "k", "--incoming", "tcp:host:0");
	BAD("--incoming", "--kernel", "k", "--incoming", "tcp:host:-1");
	BAD("cannot be combined", "--restore", "f", "--incoming", "tcp:0:1");
	BAD("unexpected argument", "--kernel", "k", "extra");
	BAD("--name", "--kernel", "k", "--name", "");
	BAD("--monitor stdio", "--kernel", "k", "--monitor", "stdio");
#undef BAD
}

int main(void)
{
	test_good();
	test_bad();
	if (failures) {
		printf("test_options: %d checks failed\n", failures);
		return 1;
	}
	printf("test_options: all checks passed\n");
	return 0;
}
