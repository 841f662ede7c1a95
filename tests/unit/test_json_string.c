/*
 * test_json_string.c - the monitor's JSON strings are valid UTF-8 whatever
 * they carry (file names, a peer's error text, a guest's bytes): each byte
 * that is not part of a well-formed sequence becomes U+FFFD, well-formed
 * text passes unchanged, quotes, backslashes and controls are escaped.
 * (Before, bytes >= 0x80 went through raw: "\xff" made invalid JSON.)
 */
#include <stdio.h>
#include <string.h>

#include "vmm/monitor/monitor_internal.h"
#include "tests/unit/check.h"

static void expect(const char *in, const char *want)
{
	struct sbuf out;
	sbuf__init(&out);
	json__append_string(&out, in);
	sbuf__append_u8(&out, 0);
	CHECK(strcmp((const char *)out.data, want) == 0, "json(\"%s\") = %s, want %s", in,
	      (const char *)out.data, want);
	sbuf__free(&out);
}

int main(void)
{
	expect("plain", "\"plain\"");
	expect("q\"b\\", "\"q\\\"b\\\\\"");
	expect("tab\there\n\x7f", "\"tab\\u0009here\\u000a\\u007f\"");
	expect("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");	/* é € 😀 */
	expect("\xff", "\"\\ufffd\"");
	expect("a\xc0\xaf" "b", "\"a\\ufffd\\ufffdb\"");			/* overlong '/' */
	expect("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");			/* overlong, 3 bytes */
	expect("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");			/* a surrogate */
	expect("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");	/* past U+10FFFF */
	expect("\xe2\x82", "\"\\ufffd\\ufffd\"");				/* cut short */
	expect("\xe2\x82x", "\"\\ufffd\\ufffdx\"");
	expect("\x80\xbf", "\"\\ufffd\\ufffd\"");				/* lone continuations */
	expect("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");			/* U+10FFFF itself */
	printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
