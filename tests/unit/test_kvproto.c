/* Unit test: kv protocol formatting and strict answer parsing
 * (tools/kvclient/kvproto.c, docs/kv-protocol.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tools/kvclient/kvproto.h"

static int failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			failures++;                                          \
		}                                                            \
	} while (0)

static int parse(const char *s, struct kvproto_answer *a)
{
	return kvproto__parse_answer(s, strlen(s), a);
}

static void test_format(void)
{
	char buf[KVPROTO_DGRAM_MAX], small[8];
	char k64[65], k65[66], id32[33], id33[34];
	size_t len = 0;

	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r1",
				      "key", "val") == 0);
	CHECK(!strcmp(buf, "PUT r1 key val") && len == strlen(buf));
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_GET, "a.b-c_D",
				      "k", NULL) == 0);
	CHECK(!strcmp(buf, "GET a.b-c_D k"));
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_TIME, "9",
				      NULL, NULL) == 0);
	CHECK(!strcmp(buf, "TIME 9"));
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_STAT, "x",
				      NULL, NULL) == 0);
	CHECK(!strcmp(buf, "STAT x"));

	/* Lengths at and past the limits. */
	memset(k64, 'k', 64);
	k64[64] = '\0';
	memset(k65, 'k', 65);
	k65[65] = '\0';
	memset(id32, '1', 32);
	id32[32] = '\0';
	memset(id33, '1', 33);
	id33[33] = '\0';
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, id32,
				      k64, k64) == 0);
	CHECK(len == 4 + 32 + 1 + 64 + 1 + 64);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, id33,
				      "k", "v") == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r",
				      k65, "v") == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r",
				      "k", k65) == -EINVAL);

	/* Charset, emptiness, missing fields. */
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r",
				      "a b", "v") == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r",
				      "k", "v\n") == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r",
				      "k", "") == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_PUT, "r",
				      "k", NULL) == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_GET, "r",
				      "k/", NULL) == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_GET, "",
				      "k", NULL) == -EINVAL);
	CHECK(kvproto__format_request(buf, sizeof(buf), &len, KVPROTO_GET, "r\xc3\xa9",
				      "k", NULL) == -EINVAL);
	CHECK(kvproto__format_request(small, sizeof(small), &len, KVPROTO_PUT, "r",
				      "key", "value") == -ENOSPC);

	CHECK(kvproto__valid_token("A-z_0.9"));
	CHECK(!kvproto__valid_token(""));
	CHECK(!kvproto__valid_token("a+b"));
	CHECK(!kvproto__valid_token(NULL));
	CHECK(kvproto__valid_reqid(id32));
	CHECK(!kvproto__valid_reqid(id33));
}

static void test_parse_good(void)
{
	struct kvproto_answer a;

	CHECK(parse("OK r1", &a) == 0);
	CHECK(a.kind == KVPROTO_ANS_OK && !strcmp(a.reqid, "r1"));
	CHECK(parse("OK r1\n", &a) == 0); /* one trailing newline tolerated */

	CHECK(parse("VAL id.7-x some_value.1", &a) == 0);
	CHECK(a.kind == KVPROTO_ANS_VAL && !strcmp(a.reqid, "id.7-x") &&
	      !strcmp(a.value, "some_value.1"));

	CHECK(parse("NONE q", &a) == 0);
	CHECK(a.kind == KVPROTO_ANS_NONE && !strcmp(a.reqid, "q"));

	CHECK(parse("TIME t 18446744073709551615 0", &a) == 0);
	CHECK(a.kind == KVPROTO_ANS_TIME && a.tsc == UINT64_MAX && a.ns == 0);
	CHECK(parse("TIME t 007 12", &a) == 0 && a.tsc == 7 && a.ns == 12);

	CHECK(parse("STAT s entries=1 puts=2 gets=3 dirtied=4 tsc=5 ns=6 ap_tsc=7 ap_iterations=8 "
		    "tsc_order_errors=9\n", &a) == 0);
	CHECK(a.stat.ap_tsc == 7 && a.stat.ap_iterations == 8 && a.stat.tsc_order_errors == 9);
	CHECK(a.kind == KVPROTO_ANS_STAT && a.stat.entries == 1 &&
	      a.stat.puts == 2 && a.stat.gets == 3 && a.stat.dirtied == 4 &&
	      a.stat.tsc == 5 && a.stat.ns == 6);

	CHECK(parse("ERR r disk_full", &a) == 0);
	CHECK(a.kind == KVPROTO_ANS_ERR && !strcmp(a.reqid, "r") &&
	      !strcmp(a.reason, "disk_full"));
	CHECK(parse("ERR - bad_command", &a) == 0);
	CHECK(!strcmp(a.reqid, "-") && !strcmp(a.reason, "bad_command"));
}

static void test_parse_bad(void)
{
	static const char *const bad[] = {
		"",
		"\n",
		"OK",
		"OK ",
		" OK r",
		"OK  r",
		"OK r ",
		"OK r\n\n",
		"OK r\r\n",
		"ok r",
		"OK r extra",
		"OKAY r",
		"OK r/1",
		"OK 123456789012345678901234567890123", /* 33-char reqid */
		"VAL r",
		"VAL r a b",
		"VAL r bad/val",
		"VAL r 12345678901234567890123456789012345678901234567890123456789012345",
		"NONE r x",
		"TIME r 1",
		"TIME r 1 2 3",
		"TIME r -1 2",
		"TIME r +1 2",
		"TIME r 1 0x2",
		"TIME r 18446744073709551616 1", /* 2^64 */
		"TIME r 1 2a",
		"TIME r 1 ",
		"STAT s entries=1 puts=2 gets=3 dirtied=4 tsc=5",
		"STAT s entries=1 puts=2 gets=3 dirtied=4 tsc=5 ns=6 x=7",
		"STAT s puts=2 entries=1 gets=3 dirtied=4 tsc=5 ns=6",
		"STAT s entries= puts=2 gets=3 dirtied=4 tsc=5 ns=6",
		"STAT s entries=1 puts=2 gets=3 dirtied=4 tsc=5 ns",
		"STAT s entries:1 puts=2 gets=3 dirtied=4 tsc=5 ns=6",
		"ERR r",
		"ERR r Bad",
		"ERR r bad-thing",
		"ERR r two words",
		"ERR r 123",
		"ERR r abcdefghijklmnopqrstuvwxyzabcdefg", /* 33-char reason */
		"PUT r k v", /* a request is not an answer */
	};
	struct kvproto_answer a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &a) != -EPROTO) {
			fprintf(stderr, "accepted bad answer '%s'\n", bad[i]);
			failures++;
		}
	}
	/* An embedded NUL must not cut the datagram short into something
	 * valid. */
	CHECK(kvproto__parse_answer("OK r\0junk", 9, &a) == -EPROTO);
	CHECK(kvproto__parse_answer("VAL r v\0", 8, &a) == -EPROTO);
	/* Not NUL-terminated: the length is what counts. */
	CHECK(kvproto__parse_answer("OK rXYZ", 4, &a) == 0 && !strcmp(a.reqid, "r"));
}

static void test_fits(void)
{
	CHECK(kvproto__answer_fits(KVPROTO_PUT, KVPROTO_ANS_OK));
	CHECK(!kvproto__answer_fits(KVPROTO_PUT, KVPROTO_ANS_VAL));
	CHECK(kvproto__answer_fits(KVPROTO_GET, KVPROTO_ANS_VAL));
	CHECK(kvproto__answer_fits(KVPROTO_GET, KVPROTO_ANS_NONE));
	CHECK(!kvproto__answer_fits(KVPROTO_GET, KVPROTO_ANS_OK));
	CHECK(kvproto__answer_fits(KVPROTO_TIME, KVPROTO_ANS_TIME));
	CHECK(!kvproto__answer_fits(KVPROTO_TIME, KVPROTO_ANS_STAT));
	CHECK(kvproto__answer_fits(KVPROTO_STAT, KVPROTO_ANS_STAT));
	for (int op = KVPROTO_PUT; op <= KVPROTO_STAT; op++)
		CHECK(kvproto__answer_fits((enum kvproto_op)op, KVPROTO_ANS_ERR));
}

int main(void)
{
	test_format();
	test_parse_good();
	test_parse_bad();
	test_fits();
	if (failures) {
		fprintf(stderr, "test_kvproto: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_kvproto: ok\n");
	return 0;
}
