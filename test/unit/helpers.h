/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What several unit suites need: a pty standing in for a serial line, a
 * fresh directory per test, a sleep. Include after <cmocka.h>.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A pty pair: the test holds the master, the code under test opens the slave. */
struct pty {
	int master;
	char slave[64];
};

static inline void pty_open(struct pty *p)
{
	p->master = posix_openpt(O_RDWR | O_NOCTTY);
	assert_true(p->master >= 0);
	assert_int_equal(grantpt(p->master), 0);
	assert_int_equal(unlockpt(p->master), 0);
	assert_int_equal(ptsname_r(p->master, p->slave, sizeof(p->slave)), 0);
}

static inline void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A directory from mkdtemp() and a path inside it that the code creates itself. */
struct tmpdir {
	char dir[64];
	char path[128]; /* dir/store */
};

/* cmocka setup: a fresh struct tmpdir in *@state, named after @prefix. */
static inline int tmpdir_setup(void **state, const char *prefix)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/%s-XXXXXX", prefix);
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	snprintf(t->path, sizeof(t->path), "%s/store", t->dir);
	*state = t;
	return 0;
}

static inline int tmpdir_remove_one(const char *path, const struct stat *st, int flag,
	struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

/* cmocka teardown: the directory and everything in it go. */
static inline int tmpdir_teardown(void **state)
{
	struct tmpdir *t = *state;

	nftw(t->dir, tmpdir_remove_one, 8, FTW_DEPTH | FTW_PHYS);
	free(t);
	return 0;
}
