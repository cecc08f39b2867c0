// SPDX-License-Identifier: MIT
/*
 * Time-of-use periods (gateway/tariff.h): periods that cross midnight,
 * uncovered time falling to the default, a summer season laid over the base
 * table, other hours on weekends, a span named only when it lies in one
 * period, and edges that must fall on interval boundaries.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "tariff.h"

#define HM(h, m) ((h) * 60 + (m))

static const struct mh_tariff_period base[] = {
	{ "peak", HM(8, 0), HM(11, 0) },
	{ "peak", HM(18, 0), HM(21, 0) },
	{ "valley", HM(23, 0), HM(7, 0) },
};
static const struct mh_tariff_period summer[] = {
	{ "sharp", HM(19, 0), HM(21, 0) },
};
static const struct mh_tariff_period weekend[] = {
	{ "valley", HM(0, 0), HM(0, 0) }, /* the whole day */
};
static const struct mh_tariff_season seasons[] = {
	{ .months = 1u << 7 | 1u << 8, .table = { summer, 1 } },
	{ .days = 1u << 0 | 1u << 6, .table = { weekend, 1 } },
};
static const struct mh_tariff tariff = {
	.name = "gateway",
	.base = { base, 3 },
	.default_period = "flat",
	.seasons = seasons,
	.n_seasons = 2,
};

static void test_base_table(void **state)
{
	/* A Wednesday in November. */
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(8, 0)), "peak");
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(10, 59)), "peak");
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(11, 0)), "flat");
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(7, 0)), "flat");
	/* Valley crosses midnight. */
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(23, 0)), "valley");
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(0, 0)), "valley");
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(6, 59)), "valley");
	assert_string_equal(mh_tariff_period(&tariff, 11, 3, HM(22, 59)), "flat");
}

static void test_seasons_and_weekends(void **state)
{
	/* July, a Wednesday: the summer sharp peak inside the evening peak. */
	assert_string_equal(mh_tariff_period(&tariff, 7, 3, HM(18, 30)), "peak");
	assert_string_equal(mh_tariff_period(&tariff, 7, 3, HM(19, 0)), "sharp");
	assert_string_equal(mh_tariff_period(&tariff, 7, 3, HM(20, 59)), "sharp");
	assert_string_equal(mh_tariff_period(&tariff, 7, 3, HM(21, 0)), "flat");
	assert_string_equal(mh_tariff_period(&tariff, 9, 3, HM(19, 0)), "peak");
	/* Weekends are valley all day, in summer too (the later season wins). */
	assert_string_equal(mh_tariff_period(&tariff, 11, 6, HM(9, 0)), "valley");
	assert_string_equal(mh_tariff_period(&tariff, 7, 0, HM(19, 30)), "valley");
}

static int64_t local_ms(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
		.tm_min = mi, .tm_isdst = -1 };
	return (int64_t)mktime(&tm) * 1000;
}

static void test_span_periods(void **state)
{
	/* 2026-11-25 is a Wednesday. */
	int64_t t8 = local_ms(2026, 11, 25, 8, 0);

	assert_string_equal(mh_tariff_period_of(&tariff, t8, t8 + 900000), "peak");
	assert_string_equal(mh_tariff_period_of(&tariff, t8, t8 + 3 * 3600000), "peak");
	/* 10:45 to 11:15 crosses the peak's end: no single period. */
	assert_null(mh_tariff_period_of(&tariff, t8 + 9900000, t8 + 11700000));
	/* Across midnight inside the valley. */
	int64_t t23 = local_ms(2026, 11, 25, 23, 0);
	assert_string_equal(mh_tariff_period_of(&tariff, t23, t23 + 4 * 3600000), "valley");
	/* Friday night into the weekend's all-day valley, but Friday 22:00 is flat. */
	int64_t fri22 = local_ms(2026, 11, 27, 22, 0);
	assert_null(mh_tariff_period_of(&tariff, fri22, fri22 + 2 * 3600000));
	assert_null(mh_tariff_period_of(&tariff, t8, t8));
	assert_null(mh_tariff_period_of(&tariff, t8, t8 + 2 * 86400000ll));
}

static void test_edges_on_boundaries(void **state)
{
	static const struct mh_tariff_period odd[] = { { "peak", HM(8, 10), HM(11, 0) } };
	const struct mh_tariff t = { .base = { odd, 1 }, .default_period = "flat" };
	const struct mh_tariff_period *bad = NULL;
	unsigned bad_min = 0;

	assert_int_equal(mh_tariff_check_edges(&tariff, 15 * 60000, &bad, &bad_min), 0);
	assert_int_equal(mh_tariff_check_edges(&tariff, 3600000, &bad, &bad_min), 0);
	assert_int_equal(mh_tariff_check_edges(&t, 15 * 60000, &bad, &bad_min), -EINVAL);
	assert_ptr_equal(bad, &odd[0]);
	assert_int_equal(bad_min, HM(8, 10));
	assert_int_equal(mh_tariff_check_edges(&t, 5 * 60000, &bad, &bad_min), 0);
	/* Seasons are checked too: 19:00 is not on a 2 h boundary counted from midnight. */
	assert_int_equal(mh_tariff_check_edges(&tariff, 2 * 3600000, &bad, &bad_min), -EINVAL);
}

static void test_overlap(void **state)
{
	static const struct mh_tariff_period clash[] = {
		{ "peak", HM(8, 0), HM(11, 0) },
		{ "valley", HM(22, 0), HM(8, 30) },
	};
	const struct mh_tariff_table t = { clash, 2 };
	const struct mh_tariff_period *a = NULL, *b = NULL;

	assert_int_equal(mh_tariff_check_overlap(&tariff.base, &a, &b), 0);
	assert_int_equal(mh_tariff_check_overlap(&t, &a, &b), -EINVAL);
	assert_ptr_equal(a, &clash[0]);
	assert_ptr_equal(b, &clash[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_table),
		cmocka_unit_test(test_seasons_and_weekends),
		cmocka_unit_test(test_span_periods),
		cmocka_unit_test(test_edges_on_boundaries),
		cmocka_unit_test(test_overlap),
	};

	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
