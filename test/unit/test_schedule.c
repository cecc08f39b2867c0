// SPDX-License-Identifier: MIT
/*
 * Clock-aligned boundaries (gateway/schedule.h): mh_schedule_next() and
 * mh_schedule_current() in Asia/Shanghai (UTC+8), Asia/Kolkata (UTC+5:30,
 * so hourly boundaries fall at :30 UTC), across local midnight, and on the
 * two DST days of Europe/Berlin in 2026 (29 March: 23 hours, 25 October:
 * 25 hours). Every instant is an epoch constant worked out from the calendar
 * (20454 days from 1970-01-01 to 2026-01-01), with the UTC time and the local
 * time beside it; none comes from the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"
#include "schedule.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

/* Asia/Shanghai, 2026-11-22 */
#define T_0307_12 (1795316832 * SEC) /* 2026-11-22T03:07:12Z = 11:07:12 CST */
#define T_0300 (1795316400 * SEC)    /* 2026-11-22T03:00:00Z = 11:00 CST */
#define T_0315 (1795317300 * SEC)    /* 2026-11-22T03:15:00Z = 11:15 CST */
#define T_0330 (1795318200 * SEC)    /* 2026-11-22T03:30:00Z = 11:30 CST, 09:00 IST */
#define T_0230 (1795314600 * SEC)    /* 2026-11-22T02:30:00Z = 08:00 IST */
#define T_0400 (1795320000 * SEC)    /* 2026-11-22T04:00:00Z = 12:00 CST */
#define T_1500 (1795359600 * SEC)    /* 2026-11-22T15:00:00Z = 23:00 CST */
#define T_1545 (1795362300 * SEC)    /* 2026-11-22T15:45:00Z = 23:45 CST */
#define T_1550 (1795362600 * SEC)    /* 2026-11-22T15:50:00Z = 23:50 CST */
#define T_1600 (1795363200 * SEC)    /* 2026-11-22T16:00:00Z = 2026-11-23 00:00 CST */
#define T_1615 (1795364100 * SEC)    /* 2026-11-22T16:15:00Z = 2026-11-23 00:15 CST */
#define T_21_1600 (1795276800 * SEC) /* 2026-11-21T16:00:00Z = 2026-11-22 00:00 CST */
/* Asia/Kolkata, 2026-11-22 */
#define T_1730 (1795368600 * SEC) /* 2026-11-22T17:30:00Z = 23:00 IST */
#define T_1807 (1795370820 * SEC) /* 2026-11-22T18:07:00Z = 23:37 IST */
#define T_1830 (1795372200 * SEC) /* 2026-11-22T18:30:00Z = 2026-11-23 00:00 IST */
/* Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z. */
#define S_MIDNIGHT (1774738800 * SEC) /* 2026-03-28T23:00:00Z = 03-29 00:00 CET */
#define S_0045 (1774745100 * SEC)     /* 2026-03-29T00:45:00Z = 01:45 CET */
#define S_0050 (1774745400 * SEC)     /* 2026-03-29T00:50:00Z = 01:50 CET */
#define S_0100 (1774746000 * SEC)     /* 2026-03-29T01:00:00Z = 03:00 CEST */
#define S_0115 (1774746900 * SEC)     /* 2026-03-29T01:15:00Z = 03:15 CEST */
#define S_1200 (1774785600 * SEC)     /* 2026-03-29T12:00:00Z = 14:00 CEST */
#define S_2130 (1774819800 * SEC)     /* 2026-03-29T21:30:00Z = 23:30 CEST */
#define S_NEXT (1774821600 * SEC)     /* 2026-03-29T22:00:00Z = 03-30 00:00 CEST */
#define S_2230 (1774823400 * SEC)     /* 2026-03-29T22:30:00Z = 03-30 00:30 CEST */
/* Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z. */
#define F_MIDNIGHT (1792879200 * SEC) /* 2026-10-24T22:00:00Z = 10-25 00:00 CEST */
#define F_0000 (1792886400 * SEC)     /* 2026-10-25T00:00:00Z = 02:00 CEST */
#define F_0030 (1792888200 * SEC)     /* 2026-10-25T00:30:00Z = 02:30 CEST */
#define F_0045 (1792889100 * SEC)     /* 2026-10-25T00:45:00Z = 02:45 CEST */
#define F_0050 (1792889400 * SEC)     /* 2026-10-25T00:50:00Z = 02:50 CEST */
#define F_0100 (1792890000 * SEC)     /* 2026-10-25T01:00:00Z = 02:00 CET */
#define F_0107 (1792890420 * SEC)     /* 2026-10-25T01:07:00Z = 02:07 CET */
#define F_0115 (1792890900 * SEC)     /* 2026-10-25T01:15:00Z = 02:15 CET */
#define F_0130 (1792891800 * SEC)     /* 2026-10-25T01:30:00Z = 02:30 CET */
#define F_2245 (1792968300 * SEC)     /* 2026-10-25T22:45:00Z = 23:45 CET */
#define F_2230 (1792967400 * SEC)     /* 2026-10-25T22:30:00Z = 23:30 CET */
#define F_2250 (1792968600 * SEC)     /* 2026-10-25T22:50:00Z = 23:50 CET */
#define F_NEXT (1792969200 * SEC)     /* 2026-10-25T23:00:00Z = 10-26 00:00 CET */
#define F_2330 (1792971000 * SEC)     /* 2026-10-25T23:30:00Z = 10-26 00:30 CET */

static void use_zone(const char *zone)
{
	assert_int_equal(setenv("TZ", zone, 1), 0);
	tzset();
}

static void test_shanghai_15m(void **state)
{
	use_zone("Asia/Shanghai");
	assert_int_equal(mh_schedule_next(T_0307_12, 15 * MIN), T_0315);
	assert_int_equal(mh_schedule_current(T_0307_12, 15 * MIN), T_0300);
	/* Milliseconds inside the interval change nothing. */
	assert_int_equal(mh_schedule_next(T_0307_12 + 345, 15 * MIN), T_0315);
	assert_int_equal(mh_schedule_current(T_0307_12 + 345, 15 * MIN), T_0300);
	/* Hourly: 11:07 CST belongs to 11:00, the next boundary is 12:00. */
	assert_int_equal(mh_schedule_next(T_0307_12, 60 * MIN), T_0400);
	assert_int_equal(mh_schedule_current(T_0307_12, 60 * MIN), T_0300);
}

static void test_exactly_on_boundary(void **state)
{
	use_zone("Asia/Shanghai");
	/* A boundary belongs to the interval it starts; "next" is strictly after. */
	assert_int_equal(mh_schedule_next(T_0315, 15 * MIN), T_0330);
	assert_int_equal(mh_schedule_current(T_0315, 15 * MIN), T_0315);
	/* One millisecond earlier is still the previous interval. */
	assert_int_equal(mh_schedule_next(T_0315 - 1, 15 * MIN), T_0315);
	assert_int_equal(mh_schedule_current(T_0315 - 1, 15 * MIN), T_0300);
	assert_int_equal(mh_schedule_next(T_0300, 15 * MIN), T_0315);
	assert_int_equal(mh_schedule_current(T_0300, 15 * MIN), T_0300);
}

static void test_one_second(void **state)
{
	use_zone("Asia/Shanghai");
	assert_int_equal(mh_schedule_next(T_0307_12 + 345, 1000), T_0307_12 + SEC);
	assert_int_equal(mh_schedule_current(T_0307_12 + 345, 1000), T_0307_12);
	assert_int_equal(mh_schedule_next(T_0307_12, 1000), T_0307_12 + SEC);
	assert_int_equal(mh_schedule_current(T_0307_12, 1000), T_0307_12);
	assert_int_equal(mh_schedule_next(T_0307_12 - 1, 1000), T_0307_12);
	assert_int_equal(mh_schedule_current(T_0307_12 - 1, 1000), T_0307_12 - SEC);
	/* 23:59:59.5 CST: the next second is local midnight. */
	assert_int_equal(mh_schedule_next(T_1600 - 500, 1000), T_1600);
	assert_int_equal(mh_schedule_current(T_1600 - 500, 1000), T_1600 - SEC);
}

/* Lab intervals: boundaries on tenths of a second, which their labels show. */
static void test_sub_second(void **state)
{
	char ts[40];

	(void)state;
	use_zone("Asia/Shanghai");
	assert_int_equal(mh_schedule_next(T_0307_12 + 345, 100), T_0307_12 + 400);
	assert_int_equal(mh_schedule_current(T_0307_12 + 345, 100), T_0307_12 + 300);
	assert_int_equal(mh_schedule_current(T_0307_12 + 345, 250), T_0307_12 + 250);
	mh_schedule_format_boundary(T_0307_12 + 300, 100, ts, sizeof(ts));
	assert_string_equal(ts + 19, ".300Z");
	/* All of a lab interval's boundaries carry them, whole seconds too. */
	mh_schedule_format_boundary(T_0307_12, 100, ts, sizeof(ts));
	assert_string_equal(ts + 19, ".000Z");
	/* Whole-second intervals keep the contract's format. */
	mh_schedule_format_boundary(T_0307_12, 1000, ts, sizeof(ts));
	assert_int_equal(strlen(ts), 20);
	assert_int_equal(ts[19], 'Z');
}

static void test_half_hour_zone(void **state)
{
	use_zone("Asia/Kolkata");
	/* 03:07:12Z is 08:37:12 IST: hourly boundaries are 08:00 and 09:00 IST, at :30 UTC. */
	assert_int_equal(mh_schedule_next(T_0307_12, 60 * MIN), T_0330);
	assert_int_equal(mh_schedule_current(T_0307_12, 60 * MIN), T_0230);
	assert_int_equal(mh_schedule_next(T_0330, 60 * MIN), T_0330 + HOUR);
	assert_int_equal(mh_schedule_current(T_0330, 60 * MIN), T_0330);
	/* Quarter hours line up with UTC quarters here: 08:30 and 08:45 IST. */
	assert_int_equal(mh_schedule_next(T_0307_12, 15 * MIN), T_0315);
	assert_int_equal(mh_schedule_current(T_0307_12, 15 * MIN), T_0300);
	/* Local midnight is 18:30Z; at 23:37 IST the next hour is midnight. */
	assert_int_equal(mh_schedule_next(T_1807, 60 * MIN), T_1830);
	assert_int_equal(mh_schedule_current(T_1807, 60 * MIN), T_1730);
	/* A day interval starts at 18:30Z, not at 00:00Z. */
	assert_int_equal(mh_schedule_current(T_0307_12, 24 * HOUR), T_1830 - DAY);
	assert_int_equal(mh_schedule_next(T_0307_12, 24 * HOUR), T_1830);
}

static void test_midnight_crossing(void **state)
{
	use_zone("Asia/Shanghai");
	assert_int_equal(mh_schedule_next(T_1550, 15 * MIN), T_1600);
	assert_int_equal(mh_schedule_current(T_1550, 15 * MIN), T_1545);
	assert_int_equal(mh_schedule_next(T_1600 - 1, 15 * MIN), T_1600);
	assert_int_equal(mh_schedule_current(T_1600 - 1, 15 * MIN), T_1545);
	assert_int_equal(mh_schedule_next(T_1600, 15 * MIN), T_1615);
	assert_int_equal(mh_schedule_current(T_1600, 15 * MIN), T_1600);
	assert_int_equal(mh_schedule_next(T_1550, 60 * MIN), T_1600);
	assert_int_equal(mh_schedule_current(T_1550, 60 * MIN), T_1500);
	/* Daily: the day of 2026-11-22 CST runs from 11-21T16:00Z to 11-22T16:00Z. */
	assert_int_equal(mh_schedule_current(T_1550, 24 * HOUR), T_21_1600);
	assert_int_equal(mh_schedule_next(T_1550, 24 * HOUR), T_1600);
	assert_int_equal(mh_schedule_current(T_1600, 24 * HOUR), T_1600);
	assert_int_equal(mh_schedule_next(T_1600, 24 * HOUR), T_1600 + DAY);
}

/*
 * Walk mh_schedule_next() from one local midnight to the next; every step
 * must be exactly @interval and land on @end. Returns the number of steps.
 */
static unsigned walk_day(int64_t start, int64_t end, unsigned interval)
{
	int64_t t = start;
	unsigned n = 0;

	assert_int_equal(mh_schedule_current(start, interval), start);
	while (t < end && n < 1000) {
		int64_t next = mh_schedule_next(t, interval);
		assert_int_equal(next - t, interval);
		assert_int_equal(mh_schedule_current(next, interval), next);
		assert_int_equal(mh_schedule_current(next - 1, interval), t);
		t = next;
		n++;
	}
	assert_int_equal(t, end);
	return n;
}

static void test_dst_spring_berlin(void **state)
{
	use_zone("Europe/Berlin");
	/* 01:50 CET: the next quarter hour is 03:00 CEST, one UTC instant later than 02:00 would
	 * be. */
	assert_int_equal(mh_schedule_next(S_0050, 15 * MIN), S_0100);
	assert_int_equal(mh_schedule_current(S_0050, 15 * MIN), S_0045);
	assert_int_equal(mh_schedule_current(S_0100, 15 * MIN), S_0100);
	assert_int_equal(mh_schedule_next(S_0100, 15 * MIN), S_0115);
	/* The day is 23 hours: 92 quarter hours, 23 hours, midnight to midnight. */
	assert_int_equal(S_NEXT - S_MIDNIGHT, 23 * HOUR);
	assert_int_equal(walk_day(S_MIDNIGHT, S_NEXT, 15 * MIN), 92);
	assert_int_equal(walk_day(S_MIDNIGHT, S_NEXT, 60 * MIN), 23);
	/* A daily interval is 23 hours long on this day and ends at the next midnight. */
	assert_int_equal(mh_schedule_current(S_1200, 24 * HOUR), S_MIDNIGHT);
	assert_int_equal(mh_schedule_next(S_1200, 24 * HOUR), S_NEXT);
	assert_int_equal(mh_schedule_current(S_2230, 24 * HOUR), S_NEXT);
	/* 23:30 CEST with 2-hour intervals: the next boundary is midnight, not 01:00. */
	assert_int_equal(mh_schedule_next(S_2130, 2 * HOUR), S_NEXT);
	assert_int_equal(mh_schedule_next(S_NEXT, 2 * HOUR), S_NEXT + 2 * HOUR);
}

static void test_dst_autumn_berlin(void **state)
{
	use_zone("Europe/Berlin");
	/* 02:50 CEST: the next quarter hour is the second 02:00, in CET. */
	assert_int_equal(mh_schedule_next(F_0050, 15 * MIN), F_0100);
	assert_int_equal(mh_schedule_current(F_0050, 15 * MIN), F_0045);
	assert_int_equal(mh_schedule_current(F_0107, 15 * MIN), F_0100);
	assert_int_equal(mh_schedule_next(F_0107, 15 * MIN), F_0115);
	/* 02:30 happens twice, and each belongs to its own hour. */
	assert_int_equal(mh_schedule_current(F_0030, 60 * MIN), F_0000);
	assert_int_equal(mh_schedule_next(F_0030, 60 * MIN), F_0100);
	assert_int_equal(mh_schedule_current(F_0130, 60 * MIN), F_0100);
	assert_int_equal(mh_schedule_next(F_0130, 60 * MIN), F_0100 + HOUR);
	/* The day is 25 hours: 100 quarter hours, 25 hours, midnight to midnight. */
	assert_int_equal(F_NEXT - F_MIDNIGHT, 25 * HOUR);
	assert_int_equal(walk_day(F_MIDNIGHT, F_NEXT, 15 * MIN), 100);
	assert_int_equal(walk_day(F_MIDNIGHT, F_NEXT, 60 * MIN), 25);
	/* The end of the long day: 23:45 CET, then midnight. */
	assert_int_equal(mh_schedule_current(F_2250, 15 * MIN), F_2245);
	assert_int_equal(mh_schedule_next(F_2250, 15 * MIN), F_NEXT);
	/* 23:30 CET with 2-hour intervals: the next boundary is midnight. */
	assert_int_equal(mh_schedule_next(F_2230, 2 * HOUR), F_NEXT);
	/* After midnight the next day counts from its own midnight. */
	assert_int_equal(mh_schedule_current(F_2330, 24 * HOUR), F_NEXT);
	assert_int_equal(mh_schedule_current(F_2330, 60 * MIN), F_NEXT);
	assert_int_equal(mh_schedule_next(F_2330, 60 * MIN), F_NEXT + HOUR);
}

static void test_before_1970(void **state)
{
	/* 1969-12-31T23:59:59.999Z: flooring must not round toward zero. */
	use_zone("UTC");
	assert_int_equal(mh_schedule_current(-1, 1000), -1000);
	assert_int_equal(mh_schedule_next(-1, 1000), 0);
	assert_int_equal(mh_schedule_current(-1, 15 * MIN), -15 * MIN);
	assert_int_equal(mh_schedule_next(-1, 15 * MIN), 0);
}

static void test_now(void **state)
{
	struct timespec ts;
	int64_t before, now, after;

	clock_gettime(CLOCK_REALTIME, &ts);
	before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	now = mh_clock_wall_ms();
	clock_gettime(CLOCK_REALTIME, &ts);
	after = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	assert_true(before <= now && now <= after);
}

/* Retries of a failed boundary read fit in its window, or do not happen. */
static void test_retries(void **state)
{
	const int64_t b = 1795316400000; /* a boundary */
	const unsigned q = 900000;       /* 15 minutes */

	/* Failed at once: retried a quarter later, twice, never a third time. */
	assert_int_equal(mh_schedule_retry_at(b + 2000, b + q, q, 0, 2000), b + 2000 + q / 4);
	assert_int_equal(mh_schedule_retry_at(b + 227000, b + q, q, 1, 2000), b + 452000);
	assert_int_equal(mh_schedule_retry_at(b + 452000, b + q, q, 2, 2000), 0);
	/* A read that failed late in the window gets no retry that would run into the next one. */
	assert_int_equal(mh_schedule_retry_at(b + 600000, b + q, q, 0, 2000), 0);
	/* At 1 s there is room for a 300 ms read, not for a 500 ms one. */
	assert_int_equal(mh_schedule_retry_at(b + 300, b + 1000, 1000, 0, 300), b + 550);
	assert_int_equal(mh_schedule_retry_at(b + 300, b + 1000, 1000, 0, 500), 0);
	/* At 10 s it has. */
	assert_int_equal(mh_schedule_retry_at(b + 300, b + 10000, 10000, 0, 300), b + 2800);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shanghai_15m),
		cmocka_unit_test(test_exactly_on_boundary),
		cmocka_unit_test(test_one_second),
		cmocka_unit_test(test_sub_second),
		cmocka_unit_test(test_half_hour_zone),
		cmocka_unit_test(test_midnight_crossing),
		cmocka_unit_test(test_dst_spring_berlin),
		cmocka_unit_test(test_dst_autumn_berlin),
		cmocka_unit_test(test_before_1970),
		cmocka_unit_test(test_now),
		cmocka_unit_test(test_retries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
