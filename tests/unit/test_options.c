/*
 * test_options.c - the ftvm command line: what operators type is accepted,
 * and every malformed flag is refused with a message naming it.
 */
#include <errno.h>
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

/* The test-only CPU switches: a word by its leaf, or a clear refusal. */
static void test_cpu_switches(void)
{
	struct ftvm_options o;
	char err[256] = "";
	int r;

	memset(&o, 0, sizeof(o));
	r = PARSE(&o, err, "--kernel", "k", "--x-cpuid", "0x7.0.ebx=0x1");
	CHECK(r < 0 && strstr(err, "--x-cpuid is test only") && strstr(err, "--test-mode"),
	      "--x-cpuid without --test-mode: %d %s", r, err);
	r = PARSE(&o, err, "--kernel", "k", "--x-tsc-khz=1000");
	CHECK(r < 0 && strstr(err, "--x-tsc-khz is test only"), "--x-tsc-khz=1000 without --test-mode: %s", err);
	memset(&o, 0, sizeof(o));
	r = PARSE(&o, err, "--test-mode", "--kernel", "k", "--x-cpuid", "0x7.0.ebx=0x1", "--x-cpu-vendor",
		  "AuthenticAMD", "--x-no-tsc-leaf", "--x-no-kvmclock");
	CHECK(r == 0, "test-only CPU switches refused: %s", err);
	CHECK(o.x_cpuid_word == 4 && o.x_cpuid_value == 1, "--x-cpuid word %u value %u", o.x_cpuid_word,
	      o.x_cpuid_value);
	CHECK(strcmp(o.x_cpu_vendor, "AuthenticAMD") == 0, "--x-cpu-vendor");
	CHECK(o.x_no_tsc_leaf && o.x_no_kvmclock, "--x-no-tsc-leaf / --x-no-kvmclock");
	r = PARSE(&o, err, "--test-mode", "--kernel", "k", "--x-cpuid", "0X80000001.0.EDX=ffffffff");
	CHECK(r == 0 && o.x_cpuid_word == 12 && o.x_cpuid_value == 0xffffffffu,
	      "upper case, no 0x on the value: %s", err);

	static const char *const bad[] = {
		"0x7.0.ebx", "0x7.0.ebx=", "0x7.0.ebx=xyz", "0x7.0.ebx=1ffffffff", "0x7.0.ebq=1",
		"0x7.9.ebx=1", "0x2.0.eax=1", "7.0.ebx.1=0", "=1", "0x7.0.ebx=1 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		r = PARSE(&o, err, "--test-mode", "--kernel", "k", "--x-cpuid", bad[i]);
		refused(bad[i], "--x-cpuid", r, err);
	}
	err[0] = '\0';
	r = PARSE(&o, err, "--test-mode", "--kernel", "k", "--x-cpu-vendor", "ThirteenChars");
	refused("13-character vendor", "--x-cpu-vendor", r, err);
}

/* Two CPU models: equal passes; the first difference is named with both values. */
static void test_cpu_model_check(void)
{
	struct vm_cpu_model a, b;
	char err[256];

	memset(&a, 0, sizeof(a));
	memcpy(a.vendor, "GenuineIntel", 12);
	for (unsigned i = 0; i < VM_CPU_WORDS; i++)
		a.word[i] = 0x1000 + i;
	b = a;
	CHECK(vm_cpu_model__check(&a, "mine", &b, "theirs", err, sizeof(err)) == 0, "equal: %s", err);
	memcpy(b.vendor, "AuthenticAMD", 12);
	b.word[3] = 0;
	CHECK(vm_cpu_model__check(&a, "mine", &b, "theirs", err, sizeof(err)) == -EPROTO, "vendor");
	CHECK_ERR_HAS(err, "CPU vendor differs: theirs AuthenticAMD, mine GenuineIntel");
	b = a;
	b.word[VM_CPU_WORDS - 1] = 0xdeadbeef;
	CHECK(vm_cpu_model__check(&a, "mine", &b, "theirs", err, sizeof(err)) == -EPROTO, "word");
	CHECK_ERR_HAS(err, "leaf 0x40000001.0 EAX");
	CHECK_ERR_HAS(err, "theirs 0xdeadbeef, mine 0x0000100d");
	memset(b.vendor, 0, sizeof(b.vendor));
	CHECK(vm_cpu_model__check(&a, "mine", &b, "theirs", err, sizeof(err)) == -EPROTO, "none");
	CHECK_ERR_HAS(err, "names no CPU");
}

int main(void)
{
	test_good();
	test_bad();
	test_cpu_switches();
	test_cpu_model_check();
	if (failures) {
		printf("test_options: %d checks failed\n", failures);
		return 1;
	}
	printf("test_options: all checks passed\n");
	return 0;
}
