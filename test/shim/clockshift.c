// SPDX-License-Identifier: MIT
/*
 * clockshift: an LD_PRELOAD shim that moves the wall clock of a process
 * while it runs, so the integration tests can boot the daemon in 1970 and
 * step its clock back and forth like NTP or an RTC battery would.
 *
 * Only CLOCK_REALTIME (and CLOCK_REALTIME_COARSE, gettimeofday, time) is
 * shifted; CLOCK_MONOTONIC and every other clock are passed through
 * untouched, because a real clock step never moves them either.
 *
 * The file named by $CLOCKSHIFT_FILE holds one line:
 *   "<seconds>"      a relative offset (float, may be negative) added to
 *                    the real time;
 *   "abs <epoch>"    the clock reads <epoch> at the moment the line is first
 *                    seen and runs on from there (the offset that gives is
 *                    kept until the file changes).
 * The file is re-read at most every 20 ms, paced by the real monotonic
 * clock. A missing or unreadable file leaves the current offset in place
 * (zero at start).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define RELOAD_NS (20 * 1000 * 1000LL)
#define NS_PER_S (1000 * 1000 * 1000LL)

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Protected by lock. */
static int64_t offset_ns;
static int64_t next_reload_ns;
static char last_line[128];

static void resolve(void)
{
	void *sym = dlsym(RTLD_NEXT, "clock_gettime");

	/* POSIX's way round ISO C's ban on object-to-function pointer casts. */
	memcpy(&real_clock_gettime, &sym, sizeof(sym));
}

static int real_gettime(clockid_t id, struct timespec *ts)
{
	pthread_once(&resolve_once, resolve);
	if (!real_clock_gettime) {
		errno = ENOSYS;
		return -1;
	}
	return real_clock_gettime(id, ts);
}

static int64_t to_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * NS_PER_S + ts->tv_nsec;
}

/* Parses the offset file's line; real_ns is the unshifted wall time now. */
static void apply_line(const char *line, int64_t real_ns)
{
	char *end;

	while (*line == ' ' || *line == '\t')
		line++;
	if (strncmp(line, "abs", 3) == 0) {
		double at = strtod(line + 3, &end);

		if (end == line + 3)
			return;
		offset_ns = (int64_t)(at * NS_PER_S) - real_ns;
		return;
	}
	double off = strtod(line, &end);

	if (end == line)
		return;
	offset_ns = (int64_t)(off * NS_PER_S);
}

/* Re-reads the offset file when it is due; called with lock held. */
static void maybe_reload(int64_t real_ns)
{
	struct timespec mono;
	const char *path = getenv("CLOCKSHIFT_FILE");
	char line[sizeof(last_line)];
	FILE *f;
	int saved_errno = errno;

	if (!path || real_gettime(CLOCK_MONOTONIC, &mono) != 0)
		goto out;
	if (to_ns(&mono) < next_reload_ns)
		goto out;
	next_reload_ns = to_ns(&mono) + RELOAD_NS;
	f = fopen(path, "re");
	if (!f)
		goto out;
	if (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		/*
		 * An unchanged "abs" line must keep the offset it gave when first
		 * seen, or the clock would stand still at that epoch second.
		 */
		if (strcmp(line, last_line) != 0) {
			apply_line(line, real_ns);
			memcpy(last_line, line, sizeof(line));
		}
	}
	fclose(f);
out:
	errno = saved_errno;
}

static void shift(struct timespec *ts)
{
	int64_t ns;

	pthread_mutex_lock(&lock);
	maybe_reload(to_ns(ts));
	ns = to_ns(ts) + offset_ns;
	pthread_mutex_unlock(&lock);
	/* Floor division, so times before the epoch stay well formed. */
	ts->tv_sec = ns / NS_PER_S;
	ts->tv_nsec = ns % NS_PER_S;
	if (ts->tv_nsec < 0) {
		ts->tv_nsec += NS_PER_S;
		ts->tv_sec--;
	}
}

__attribute__((visibility("default"))) int clock_gettime(clockid_t id, struct timespec *ts)
{
	int rc = real_gettime(id, ts);

	if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
		shift(ts);
	return rc;
}

__attribute__((visibility("default"))) int gettimeofday(struct timeval *restrict tv,
							 void *restrict tz)
{
	struct timespec ts;
	/* glibc declares tv nonnull, yet callers passing NULL exist. */
	void *volatile tv_any = tv;

	if (tz)
		memset(tz, 0, sizeof(struct timezone));
	if (!tv_any)
		return 0;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return -1;
	tv->tv_sec = ts.tv_sec;
	tv->tv_usec = ts.tv_nsec / 1000;
	return 0;
}

__attribute__((visibility("default"))) time_t time(time_t *out)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return (time_t)-1;
	if (out)
		*out = ts.tv_sec;
	return ts.tv_sec;
}
