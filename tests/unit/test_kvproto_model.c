/* Unit test: what `ftvm-kv load` accepts as a read (kvmodel), the ack log
 * (kvlog) and the latency histogram (kvhist). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the root CMakeLists defines it too */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/kvclient/kvhist.h"
#include "tools/kvclient/kvlog.h"
#include "tools/kvclient/kvmodel.h"

static int failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			failures++;                                          \
		}                                                            \
	} while (0)

static const char *val(const struct kvmodel *m, uint64_t seq, size_t key)
{
	static char buf[4][KVPROTO_TOKEN_MAX + 1];
	static int i;
	char *b = buf[i++ % 4];

	if (kvmodel__format_value(m, seq, key, b, KVPROTO_TOKEN_MAX + 1) < 0)
		return "?";
	return b;
}

static enum kvmodel_verdict get(struct kvmodel *m, size_t key, const char *v)
{
	char why[256];

	return kvmodel__check_get(m, key, v, why, sizeof(why));
}

static void test_model_basic(void)
{
	struct kvmodel m;

	CHECK(kvmodel__init(&m, 4, "vX-", false) == 0);
	CHECK(!strcmp(val(&m, 12, 3), "vX-12.3"));

	/* Fresh key: NONE is right, anything else is wrong. */
	CHECK(get(&m, 0, NULL) == KVMODEL_OK);
	CHECK(get(&m, 0, "other") == KVMODEL_WRONG);
	CHECK(get(&m, 0, val(&m, 5, 0)) == KVMODEL_WRONG); /* never written */

	CHECK(kvmodel__put_done(&m, 0, 1, true) == 0);
	CHECK(get(&m, 0, val(&m, 1, 0)) == KVMODEL_OK);
	CHECK(get(&m, 0, NULL) == KVMODEL_STALE);
	CHECK(kvmodel__put_done(&m, 0, 2, true) == 0);
	CHECK(get(&m, 0, val(&m, 2, 0)) == KVMODEL_OK);
	CHECK(get(&m, 0, val(&m, 1, 0)) == KVMODEL_STALE); /* older PUT */
	CHECK(get(&m, 0, val(&m, 2, 1)) == KVMODEL_WRONG); /* other key's tag */
	CHECK(get(&m, 0, "vX-2") == KVMODEL_WRONG);        /* prefix, bad shape */
	CHECK(get(&m, 0, "vX-2.0x") == KVMODEL_WRONG);
	/* A PUT to key 1 (op 3) read back as key 0's value: wrong. */
	CHECK(kvmodel__put_done(&m, 1, 3, true) == 0);
	CHECK(get(&m, 0, val(&m, 3, 1)) == KVMODEL_WRONG);
	CHECK(get(&m, 1, val(&m, 3, 1)) == KVMODEL_OK);
	CHECK(!kvmodel__ambiguous(&m, 0));
	kvmodel__free(&m);
}

static void test_model_ambiguous(void)
{
	struct kvmodel m;

	CHECK(kvmodel__init(&m, 2, "p", false) == 0);
	CHECK(kvmodel__put_done(&m, 0, 1, true) == 0);
	/* Op 2 gave up: old or new are both fine until the next ack. */
	CHECK(kvmodel__put_done(&m, 0, 2, false) == 0);
	CHECK(kvmodel__ambiguous(&m, 0));
	CHECK(get(&m, 0, val(&m, 1, 0)) == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 0, val(&m, 1, 0)) == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 0, NULL) == KVMODEL_STALE);
	CHECK(kvmodel__put_done(&m, 0, 3, false) == 0);
	/* Once a gave-up value was seen, the old acked one is history... */
	CHECK(get(&m, 0, val(&m, 3, 0)) == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 0, val(&m, 1, 0)) == KVMODEL_STALE);
	/* ...but any gave-up value may still land, in any order. */
	CHECK(get(&m, 0, val(&m, 2, 0)) == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 0, val(&m, 3, 0)) == KVMODEL_OK_AMBIGUOUS);
	/* The next acknowledged PUT settles it. */
	CHECK(kvmodel__put_done(&m, 0, 4, true) == 0);
	CHECK(!kvmodel__ambiguous(&m, 0));
	CHECK(get(&m, 0, val(&m, 4, 0)) == KVMODEL_OK);
	CHECK(get(&m, 0, val(&m, 3, 0)) == KVMODEL_STALE);
	CHECK(get(&m, 0, val(&m, 2, 0)) == KVMODEL_STALE);

	/* Never-acked key with a gave-up PUT: NONE or the value. */
	CHECK(kvmodel__put_done(&m, 1, 5, false) == 0);
	CHECK(get(&m, 1, NULL) == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 1, val(&m, 5, 1)) == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 1, NULL) == KVMODEL_STALE);
	kvmodel__free(&m);
}

static void test_model_preexisting_and_seed(void)
{
	struct kvmodel m;
	struct kvlog log;
	const struct kvlog_key *k;

	CHECK(kvmodel__init(&m, 3, "new-", true) == 0);
	CHECK(get(&m, 0, "leftover") == KVMODEL_OK_UNVERIFIED);
	CHECK(get(&m, 0, NULL) == KVMODEL_OK);
	CHECK(kvmodel__put_done(&m, 0, 1, true) == 0);
	CHECK(get(&m, 0, "leftover") == KVMODEL_STALE);
	kvmodel__free(&m);

	/* Seeded from an earlier run's log: k1 acked a then b; k2 acked c
	 * then SENT d (never acknowledged). */
	kvlog__init(&log);
	CHECK(kvlog__add(&log, true, "k1", "a") == 0);
	CHECK(kvlog__add(&log, true, "k1", "b") == 0);
	CHECK(kvlog__add(&log, true, "k2", "c") == 0);
	CHECK(kvlog__add(&log, false, "k2", "d") == 0);
	CHECK(log.n == 2 && log.puts == 3 && log.sent == 1);
	k = kvlog__find(&log, "k1");
	CHECK(k && k->has_acked && !strcmp(k->acked, "b") && k->n_pending == 0);
	k = kvlog__find(&log, "k2");
	CHECK(k && !strcmp(k->acked, "c") && k->n_pending == 1);
	CHECK(kvlog__find(&log, "k3") == NULL);

	CHECK(kvmodel__init(&m, 3, "new-", false) == 0);
	kvmodel__seed(&m, 1, kvlog__find(&log, "k1"));
	kvmodel__seed(&m, 2, kvlog__find(&log, "k2"));
	CHECK(get(&m, 0, NULL) == KVMODEL_OK);
	CHECK(get(&m, 1, "b") == KVMODEL_OK);
	CHECK(get(&m, 1, "a") == KVMODEL_STALE);
	CHECK(get(&m, 1, NULL) == KVMODEL_STALE);
	CHECK(get(&m, 1, "zz") == KVMODEL_WRONG);
	CHECK(get(&m, 2, "c") == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 2, "d") == KVMODEL_OK_AMBIGUOUS);
	CHECK(get(&m, 2, "c") == KVMODEL_STALE); /* d superseded c */
	CHECK(kvmodel__put_done(&m, 1, 7, true) == 0);
	CHECK(get(&m, 1, "b") == KVMODEL_STALE);
	CHECK(get(&m, 1, val(&m, 7, 1)) == KVMODEL_OK);
	kvmodel__free(&m);
	kvlog__free(&log);
}

static void test_log_lines(void)
{
	char key[KVPROTO_TOKEN_MAX + 1], value[KVPROTO_TOKEN_MAX + 1];
	bool acked = false;

#define LINE(s) kvlog__parse_line(s, strlen(s), &acked, key, value)
	CHECK(LINE("PUT k v") == 1 && acked && !strcmp(key, "k") && !strcmp(value, "v"));
	CHECK(LINE("SENT k2 v2") == 1 && !acked && !strcmp(value, "v2"));
	CHECK(LINE("") == 0);
	CHECK(LINE("# comment") == 0);
	CHECK(LINE("PUT k") == -EPROTO);
	CHECK(LINE("PUT k v x") == -EPROTO);
	CHECK(LINE("PUT  k v") == -EPROTO);
	CHECK(LINE("PUT k v ") == -EPROTO);
	CHECK(LINE("GET k v") == -EPROTO);
	CHECK(LINE("PUT k v/") == -EPROTO);
#undef LINE
}

static void test_log_file(void)
{
	char path[] = "/tmp/test_kvproto_model.XXXXXX";
	struct kvlog_writer w;
	struct kvlog log;
	size_t bad = 0;
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	/* An existing torn tail is cut before appending. */
	CHECK(write(fd, "PUT a 1\nPUT b 2", 15) == 15);
	close(fd);

	kvlog__init(&log);
	CHECK(kvlog__load(&log, path, &bad) == 0);
	CHECK(log.n == 1 && log.torn == 1);
	kvlog__free(&log);

	CHECK(kvlog__open_writer(&w, path) == 0);
	CHECK(kvlog__append(&w, true, "c", "3") == 0);
	CHECK(kvlog__append(&w, false, "c", "4") == 0);
	CHECK(kvlog__append(&w, true, "bad key", "4") == -EINVAL);
	CHECK(kvlog__close_writer(&w) == 0);

	CHECK(kvlog__load(&log, path, &bad) == 0);
	CHECK(log.n == 2 && log.torn == 0 && log.puts == 2 && log.sent == 1);
	CHECK(kvlog__find(&log, "b") == NULL);
	CHECK(kvlog__find(&log, "c") && kvlog__find(&log, "c")->n_pending == 1);
	kvlog__free(&log);

	fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "bogus\n", 6) == 6);
	close(fd);
	CHECK(kvlog__load(&log, path, &bad) == -EPROTO && bad == 4);
	kvlog__free(&log);
	CHECK(kvlog__load(&log, "/nonexistent/x", &bad) == -ENOENT);
	kvlog__free(&log);
	unlink(path);

	/* Many keys: the hash table grows and still finds everything. */
	kvlog__init(&log);
	for (int i = 0; i < 5000; i++) {
		char k[16];

		snprintf(k, sizeof(k), "key%d", i);
		CHECK(kvlog__add(&log, true, k, "v") == 0);
	}
	CHECK(log.n == 5000);
	CHECK(kvlog__find(&log, "key4999") && kvlog__find(&log, "key0"));
	kvlog__free(&log);
}

static void test_hist(void)
{
	struct kvhist *h = malloc(sizeof(*h));

	if (!h)
		return;
	kvhist__init(h);
	CHECK(kvhist__quantile(h, 0.5) == 0);
	for (uint64_t v = 1; v <= 1000; v++)
		kvhist__add(h, v);
	CHECK(kvhist__quantile(h, 0.0) == 1);
	CHECK(kvhist__quantile(h, 1.0) == 1000);
	/* Within the 1/64 resolution, never below the truth. */
	CHECK(kvhist__quantile(h, 0.5) >= 500 && kvhist__quantile(h, 0.5) <= 508);
	CHECK(kvhist__quantile(h, 0.99) >= 990 && kvhist__quantile(h, 0.99) <= 1000);
	CHECK(kvhist__quantile(h, 0.999) >= 999 && kvhist__quantile(h, 0.999) <= 1000);
	kvhist__add(h, UINT64_MAX);
	CHECK(h->max == UINT64_MAX && kvhist__quantile(h, 1.0) == UINT64_MAX);
	kvhist__init(h);
	kvhist__add(h, 100);
	CHECK(kvhist__quantile(h, 0.5) == 100 && kvhist__quantile(h, 0.999) == 100);
	free(h);
}

int main(void)
{
	test_model_basic();
	test_model_ambiguous();
	test_model_preexisting_and_seed();
	test_log_lines();
	test_log_file();
	test_hist();
	if (failures) {
		fprintf(stderr, "test_kvproto_model: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_kvproto_model: ok\n");
	return 0;
}
