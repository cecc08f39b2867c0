// SPDX-License-Identifier: MIT
/*
 * The wall-clock watcher (gateway/clock.h), fed pairs of (wall, monotonic)
 * readings: a clock before the build floor is not set (a board without RTC
 * boots in 1970); a wall clock that keeps pace with the monotonic one is no
 * step, nor is drift within the tolerance; a jump either way is reported
 * with its size, once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clock.h"

#define FLOOR 1764547200000 /* 2025-12-01T00:00:00Z */
#define NOW 1795316400000   /* 2026-11-22T03:40:00Z */

static void test_floor(void **state)
{
	struct mh_clock c;

	mh_clock_init(&c, FLOOR, 1000);
	assert_false(c.set);
	assert_false(mh_clock_plausible(&c, 86402000));
	assert_false(mh_clock_plausible(&c, FLOOR - 1));
	assert_true(mh_clock_plausible(&c, FLOOR));
	/* The compiled-in floor is a real date, after the first release was written. */
	assert_true(mh_clock_floor_ms() >= 1735689600000 - 30 * 86400000ll);
	assert_true(mh_clock_floor_ms() <= mh_clock_wall_ms());
}

static void test_boot_in_1970_then_set(void **state)
{
	struct mh_clock c;

	mh_clock_init(&c, FLOOR, 1000);
	assert_int_equal(mh_clock_observe(&c, 86402000, 5000), 0);
	assert_false(c.set);
	assert_int_equal(mh_clock_observe(&c, 86403000, 6000), 0);
	assert_false(c.set);
	/* NTP sets it: one big step forward, and from now on it is set. */
	assert_int_equal(mh_clock_observe(&c, NOW, 7000), NOW - 86404000);
	assert_true(c.set);
	assert_int_equal(mh_clock_observe(&c, NOW + 1000, 8000), 0);
	assert_true(c.set);
}

static void test_steps_and_drift(void **state)
{
	struct mh_clock c;

	mh_clock_init(&c, FLOOR, 1000);
	assert_int_equal(mh_clock_observe(&c, NOW, 100000), 0);
	assert_true(c.set);
	/* Keeping pace, however long the loop slept. */
	assert_int_equal(mh_clock_observe(&c, NOW + 60000, 160000), 0);
	/* Slewed by NTP: 999 ms off is drift, not a step. */
	assert_int_equal(mh_clock_observe(&c, NOW + 61999, 161000), 0);
	/* Stepped back an hour. */
	assert_int_equal(mh_clock_observe(&c, NOW + 62999 - 3600000, 162000), -3600000);
	/* Reported once: from there it keeps pace again. */
	assert_int_equal(mh_clock_observe(&c, NOW + 63999 - 3600000, 163000), 0);
	/* Stepped forward two hours. */
	assert_int_equal(mh_clock_observe(&c, NOW + 64999 + 3600000, 164000), 7200000);
	/* Stepped back before the floor: unset again. */
	mh_clock_observe(&c, 1000, 165000);
	assert_false(c.set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_floor),
		cmocka_unit_test(test_boot_in_1970_then_set),
		cmocka_unit_test(test_steps_and_drift),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
