/*
 * check.h - the assertions of the unit tests: a failed CHECK prints where
 * and why and counts, the test goes on and its main returns non-zero
 * (CHECK_EXIT) if anything failed.
 */
#ifndef FTVM_TESTS_CHECK_H
#define FTVM_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ",         \
				__FILE__, __LINE__, #cond);                  \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			failures++;                                          \
		}                                                            \
	} while (0)

#define CHECK_RC(rc, want, err)                                              \
	CHECK((rc) == (want), "rc %d (%s), want %d (%s); err \"%s\"", (rc),  \
	      strerror(-(rc)), (want), strerror(-(want)), (err))

#define CHECK_ERR_HAS(err, needle)                                           \
	CHECK(strstr((err), (needle)) != NULL,                               \
	      "error \"%s\" should mention \"%s\"", (err), (needle))

#endif
