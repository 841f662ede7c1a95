/*
 * event_hook.c - the operator's command the ft runs on events that the
 * cluster must learn about before the VMM may go on.
 *
 * The one that gates output: "peer-lost". When the primary loses a
 * secondary that holds a committed checkpoint, that secondary could still
 * be promoted by the cluster (it cannot tell a dead primary from a cut
 * link). Releasing output now would tell clients about state the
 * secondary does not have. So output stays held until the hook has made
 * the lost secondary ineligible (the Pacemaker agent marks it stale in the
 * CIB, with quorum) and exited 0.
 *
 * Environment of the hook, on top of the VMM's own:
 *   FTVM_EVENT    the event ("peer-lost")
 *   FTVM_PEER     the lost secondary's address (host:port)
 *   FTVM_SESSION  the protection run's id (16 hex digits, as info migrate)
 *   FTVM_EPOCH    the last checkpoint the secondary acknowledged
 *   FTVM_VM       the VM's name
 *   FTVM_DETAIL   what happened, readable
 *
 * Its exit status: 0 the lost secondary can never be promoted (output is
 * released); FT_HOOK_EXIT_SUPERSEDED (3) it already took over (the
 * cluster says so): this guest never runs again; anything else: not yet
 * (output stays held; the hook runs again a second later).
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ft/ft_internal.h"

extern char **environ;

#define HOOK_ENV_EXTRA 6

/* environ without FTVM_* entries, plus ours; freed by the caller (not the strings). */
static char **hook_env(char extra[HOOK_ENV_EXTRA][320])
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + HOOK_ENV_EXTRA + 1, sizeof(*env));
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "FTVM_", 5) != 0)
			env[k++] = environ[i];
	for (int i = 0; i < HOOK_ENV_EXTRA; i++)
		env[k++] = extra[i];
	env[k] = NULL;
	return env;
}

int ft_hook__run(struct ft *ft, const char *event, const char *detail, char *why, size_t len)
{
	char extra[HOOK_ENV_EXTRA][320];
	char hook[sizeof(ft->pri.event_hook)];

	pthread_mutex_lock(&ft->lock);
	snprintf(hook, sizeof(hook), "%s", ft->pri.event_hook);
	snprintf(extra[0], sizeof(extra[0]), "FTVM_EVENT=%s", event);
	snprintf(extra[1], sizeof(extra[1]), "FTVM_PEER=%s", ft->peer);
	snprintf(extra[2], sizeof(extra[2]), "FTVM_SESSION=%016llx", (unsigned long long)ft->session);
	snprintf(extra[3], sizeof(extra[3]), "FTVM_EPOCH=%llu", (unsigned long long)ft->pri.acked_epoch);
	snprintf(extra[4], sizeof(extra[4]), "FTVM_VM=%s", vm__name(ft->cfg.vm));
	snprintf(extra[5], sizeof(extra[5]), "FTVM_DETAIL=%s", detail ? detail : "");
	uint32_t timeout_ms = ft->pri.hook_timeout_ms;
	pthread_mutex_unlock(&ft->lock);

	if (!hook[0]) {
		snprintf(why, len, "no event hook");
		return -ENOENT;
	}
	char **env = hook_env(extra);
	if (!env) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	/* Its own process group, so that a timeout ends all of it. */
	posix_spawnattr_setpgroup(&attr, 0);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
	char *argv[] = { "/bin/sh", "-c", hook, NULL };
	pid_t pid;
	int ret = posix_spawn(&pid, "/bin/sh", NULL, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
	free(env);
	if (ret) {
		snprintf(why, len, "cannot run the event hook: %s", strerror(ret));
		return -ret;
	}

	uint64_t deadline = ft__now_ns() + (uint64_t)timeout_ms * 1000000u;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			snprintf(why, len, "waiting for the event hook: %s", strerror(errno));
			return -errno;
		}
		bool stop = atomic_load(&ft->stop);
		if (stop || ft__now_ns() > deadline) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			if (stop) {
				snprintf(why, len, "event hook abandoned (protection stopped)");
				return -ECANCELED;
			}
			snprintf(why, len, "event hook did not finish in %u ms", timeout_ms);
			return -ETIMEDOUT;
		}
		struct timespec ts = { 0, 10 * 1000000 };
		nanosleep(&ts, NULL);
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == FT_HOOK_EXIT_SUPERSEDED) {
		snprintf(why, len, "event hook: the lost secondary has taken over");
		return -ESTALE;
	}
	if (WIFEXITED(st))
		snprintf(why, len, "event hook exited %d", WEXITSTATUS(st));
	else
		snprintf(why, len, "event hook killed by signal %d", WTERMSIG(st));
	return -EIO;
}

struct hook_event {
	struct ft *ft;
	char event[32];
	char detail[256];
};

static void *event_thread(void *arg)
{
	struct hook_event *e = arg;
	char why[256];
	pthread_setname_np(pthread_self(), "ft-event");
	if (ft_hook__run(e->ft, e->event, e->detail, why, sizeof(why)) == 0)
		fprintf(stderr, "ftvm: ft: event hook reported %s (%s)\n", e->event, e->detail);
	else
		fprintf(stderr, "ftvm: ft: event hook for %s: %s\n", e->event, why);
	atomic_store(&e->ft->pri.event_busy, false);
	free(e);
	return NULL;
}

int ft__report_event(struct ft *ft, const char *event, const char *detail)
{
	pthread_mutex_lock(&ft->lock);
	bool have = ft->pri.event_hook[0] != '\0';
	pthread_mutex_unlock(&ft->lock);
	if (!have)
		return -ENOENT;
	bool idle = false;
	/* One report at a time: a failing disk fails every write; the first
	 * report is the one that matters. */
	if (!atomic_compare_exchange_strong(&ft->pri.event_busy, &idle, true))
		return -EBUSY;
	struct hook_event *e = calloc(1, sizeof(*e));
	pthread_t t;
	pthread_attr_t attr;
	if (!e) {
		atomic_store(&ft->pri.event_busy, false);
		return -ENOMEM;
	}
	e->ft = ft;
	snprintf(e->event, sizeof(e->event), "%s", event);
	snprintf(e->detail, sizeof(e->detail), "%s", detail ? detail : "");
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int ret = pthread_create(&t, &attr, event_thread, e);
	pthread_attr_destroy(&attr);
	if (ret) {
		free(e);
		atomic_store(&ft->pri.event_busy, false);
		return -ret;
	}
	return 0;
}
