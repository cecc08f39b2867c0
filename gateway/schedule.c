// SPDX-License-Identifier: MIT
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Local midnight starting the day that @t (seconds) falls in, @days_ahead days later. */
static time_t compute_midnight(time_t t, int days_ahead)
{
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_mday += days_ahead;
	tm.tm_hour = 0;
	tm.tm_min = 0;
	tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

/*
 * The same, for today or tomorrow (@days_ahead 0 or 1), remembered: every
 * read asks, from its bus thread, and mktime() parses the zone's rules
 * again on each call. A time inside the day remembered has the same local
 * date, so the same midnights, as long as TZ names the same zone.
 */
static int64_t local_midnight(time_t t, int days_ahead)
{
	static __thread time_t start, end;
	static __thread bool zone_set; /* TZ was set, to zone */
	static __thread char zone[64];
	const char *tz = getenv("TZ");
	bool set = tz != NULL;

	if (!set)
		tz = "";
	/* A zone name too long to remember is worked out every time. */
	if (strlen(tz) >= sizeof(zone))
		return (int64_t)compute_midnight(t, days_ahead) * 1000;
	if (!(t >= start && t < end) || set != zone_set || strcmp(tz, zone)) {
		start = compute_midnight(t, 0);
		end = compute_midnight(t, 1);
		zone_set = set;
		strcpy(zone, tz);
	}
	return (int64_t)(days_ahead ? end : start) * 1000;
}

static time_t to_seconds(int64_t ms)
{
	/* Floor, so times before 1970 would still land in the right second. */
	return (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
}

int64_t mh_schedule_current(int64_t now_ms, unsigned interval_ms)
{
	int64_t midnight = local_midnight(to_seconds(now_ms), 0);

	return midnight + (now_ms - midnight) / interval_ms * interval_ms;
}

int64_t mh_schedule_next(int64_t now_ms, unsigned interval_ms)
{
	time_t t = to_seconds(now_ms);
	int64_t midnight = local_midnight(t, 0);
	int64_t next = midnight + ((now_ms - midnight) / interval_ms + 1) * interval_ms;
	int64_t tomorrow = local_midnight(t, 1);

	/* A day shortened by a DST change ends early: midnight is always a boundary. */
	return next < tomorrow ? next : tomorrow;
}

int64_t mh_schedule_retry_at(int64_t now_ms, int64_t next_ms, unsigned interval_ms,
	unsigned attempt, unsigned read_ms)
{
	int64_t at = now_ms + interval_ms / 4;

	if (attempt >= MH_SCHEDULE_MAX_RETRIES)
		return 0;
	/* Room for the read and an eighth of the interval to spare before the next boundary. */
	if (at + read_ms + interval_ms / 8 > next_ms)
		return 0;
	return at;
}

void mh_schedule_format(int64_t ms, bool with_ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	if (with_ms)
		snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			(int)(ms % 1000));
	else
		strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void mh_schedule_format_boundary(int64_t ms, unsigned interval_ms, char *out, size_t len)
{
	mh_schedule_format(ms, interval_ms % 1000 != 0, out, len);
}
