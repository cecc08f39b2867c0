// SPDX-License-Identifier: MIT
/*
 * The interval builder (gateway/intervals.h), driven by an injected clock
 * through weeks of schedule in milliseconds: aligned windows carry their
 * period, a missed boundary gives one complete:false interval over the
 * whole span, a late read is used at its real time and says so, a register
 * that wraps continues and one that drops starts a new baseline with an
 * event, a restart from the stored state continues exactly, 23 and 25 hour
 * days are whole days, a clock step never makes a negative span, the daily
 * and monthly freezes add up their intervals, and over random fault
 * sequences the energies published always add up to the last cumulative
 * minus the first.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "intervals.h"

#define MIN 60000ll
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define HM(h, m) ((h) * 60 + (m))

static const struct mh_tariff_period base_periods[] = {
	{ "peak", HM(8, 0), HM(14, 0) },
	{ "valley", HM(22, 0), HM(6, 0) },
};
static const struct mh_tariff tariff = {
	.base = { base_periods, 2 },
	.default_period = "flat",
};
static const char *const period_names[] = { "peak", "valley", "flat" };
static const char *const names[] = { "energy_import_kwh", "energy_export_kwh" };
static const double wraps[] = { 1000000, 1000000 };

static const struct mh_ival_config cfg15 = {
	.interval_ms = 15 * MIN,
	.freeze_min = 0,
	.tariff = &tariff,
	.n_periods = 3,
	.period_names = period_names,
	.n_points = 2,
	.names = names,
	.wrap = wraps,
	.import_point = 0,
};

struct rec {
	enum mh_ival_kind kind;
	int64_t start, end;
	const char *period;
	bool complete, late, has_cum;
	double energy[2];
	double periods[3];
	double unattributed, cum0;
	double before, after;
};

struct sink {
	struct rec recs[8192];
	size_t n;
};

static void emit(void *ud, const struct mh_ival_out *out)
{
	struct sink *s = ud;
	struct rec *r;

	assert_true(s->n < sizeof(s->recs) / sizeof(s->recs[0]));
	r = &s->recs[s->n++];
	memset(r, 0, sizeof(*r));
	r->kind = out->kind;
	r->start = out->start_ms;
	r->end = out->end_ms;
	r->period = out->period;
	r->complete = out->complete;
	r->late = out->late;
	if (out->energy)
		memcpy(r->energy, out->energy, sizeof(r->energy));
	if (out->bucket) {
		memcpy(r->periods, out->bucket->periods, sizeof(r->periods));
		r->unattributed = out->bucket->unattributed;
	}
	r->has_cum = out->cumulative != NULL;
	if (out->cumulative)
		r->cum0 = out->cumulative[0];
	r->before = out->before;
	r->after = out->after;
}

static int64_t local_ms(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
		.tm_min = mi, .tm_isdst = -1 };
	return (int64_t)mktime(&tm) * 1000;
}

/* A meter drawing 1 kWh an hour and exporting 0.1. */
static void values_at(int64_t t, int64_t t0, double *v)
{
	v[0] = 5000.0 + (double)(t - t0) / HOUR;
	v[1] = 20.0 + (double)(t - t0) / HOUR / 10;
}

static void observe(struct mh_ival_state *st, struct sink *s, int64_t due, int64_t read_at,
	bool good, bool late, const double *v)
{
	struct mh_ival_obs obs = { .due_ms = due, .read_at_ms = read_at, .late = late,
		.good = good, .values = v };
	mh_intervals_observe(&cfg15, st, &obs, emit, s);
}

static size_t count_kind(const struct sink *s, enum mh_ival_kind kind)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		n += s->recs[i].kind == kind;
	return n;
}

static const struct rec *nth(const struct sink *s, enum mh_ival_kind kind, size_t k)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->recs[i].kind == kind && k-- == 0)
			return &s->recs[i];
	return NULL;
}

static void test_a_steady_day(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 0, 0), t;
	double v[2];

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	/* From the freeze of the 24th through the freeze of the 26th. */
	for (t = t0; t <= t0 + 2 * DAY; t += 15 * MIN) {
		values_at(t, t0, v);
		observe(&st, &s, t, t + 50, true, false, v);
	}
	assert_int_equal(count_kind(&s, MH_IVAL_INTERVAL), 2 * 96);
	for (size_t k = 0; k < 2 * 96; k++) {
		const struct rec *r = nth(&s, MH_IVAL_INTERVAL, k);
		assert_true(r->complete);
		assert_false(r->late);
		assert_int_equal(r->end - r->start, 15 * MIN);
		assert_true(fabs(r->energy[0] - 0.25) < 1e-9);
		assert_true(fabs(r->energy[1] - 0.025) < 1e-9);
		assert_non_null(r->period);
	}
	/* 08:00 to 08:15 is peak, 23:45 valley, 14:00 flat. */
	assert_string_equal(nth(&s, MH_IVAL_INTERVAL, 32)->period, "peak");
	assert_string_equal(nth(&s, MH_IVAL_INTERVAL, 95)->period, "valley");
	assert_string_equal(nth(&s, MH_IVAL_INTERVAL, 56)->period, "flat");

	/* The days of the 24th and the 25th began at a read freeze: both complete. */
	assert_int_equal(count_kind(&s, MH_IVAL_DAILY), 2);
	assert_true(nth(&s, MH_IVAL_DAILY, 0)->complete);
	const struct rec *d = nth(&s, MH_IVAL_DAILY, 1);
	assert_true(d->complete);
	assert_int_equal(d->start, t0 + DAY);
	assert_int_equal(d->end, t0 + 2 * DAY);
	assert_true(fabs(d->energy[0] - 24.0) < 1e-6);
	assert_true(fabs(d->periods[0] - 6.0) < 1e-6);  /* peak 08-14 */
	assert_true(fabs(d->periods[1] - 8.0) < 1e-6);  /* valley 22-06 */
	assert_true(fabs(d->periods[2] - 10.0) < 1e-6); /* flat */
	assert_true(d->unattributed == 0);
	assert_true(d->has_cum && fabs(d->cum0 - 5048.0) < 1e-9);
	/* The interval ending at the freeze comes before the day it closes. */
	assert_int_equal(s.recs[s.n - 1].kind, MH_IVAL_DAILY);
	assert_int_equal(s.recs[s.n - 2].kind, MH_IVAL_INTERVAL);
	assert_int_equal(s.recs[s.n - 2].end, t0 + 2 * DAY);
}

static void test_first_day_is_incomplete(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 9, 0), t;
	double v[2];

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	for (t = t0; t <= local_ms(2026, 11, 25, 0, 0); t += 15 * MIN) {
		values_at(t, t0, v);
		observe(&st, &s, t, t, true, false, v);
	}
	assert_int_equal(count_kind(&s, MH_IVAL_DAILY), 1);
	const struct rec *d = nth(&s, MH_IVAL_DAILY, 0);
	assert_false(d->complete);
	assert_true(fabs(d->energy[0] - 15.0) < 1e-6);
}

static void test_missed_boundaries_make_one_span(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 10, 0), t;
	double v[2];

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	for (t = t0; t <= t0 + 2 * HOUR; t += 15 * MIN) {
		values_at(t, t0, v);
		/* The meter is silent at 10:30 and 10:45. */
		bool good = t != t0 + 30 * MIN && t != t0 + 45 * MIN;
		observe(&st, &s, t, t, good, false, v);
	}
	assert_int_equal(count_kind(&s, MH_IVAL_INTERVAL), 6);
	const struct rec *gap = nth(&s, MH_IVAL_INTERVAL, 1);
	assert_false(gap->complete);
	assert_int_equal(gap->start, t0 + 15 * MIN);
	assert_int_equal(gap->end, t0 + 60 * MIN);
	assert_true(fabs(gap->energy[0] - 0.75) < 1e-9);
	/* The whole span lies in the peak, so it may say so. */
	assert_string_equal(gap->period, "peak");
	assert_true(nth(&s, MH_IVAL_INTERVAL, 2)->complete);

	/* A span across the end of the peak names no period. */
	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	t0 = local_ms(2026, 11, 24, 13, 30);
	for (t = t0; t <= t0 + HOUR; t += 15 * MIN) {
		values_at(t, t0, v);
		observe(&st, &s, t, t, t != t0 + 30 * MIN, false, v);
	}
	gap = nth(&s, MH_IVAL_INTERVAL, 1);
	assert_false(gap->complete);
	assert_null(gap->period);
}

static void test_late_read_says_so(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 10, 0);
	double v[2];

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	values_at(t0, t0, v);
	observe(&st, &s, t0, t0, true, false, v);
	/* 10:15 failed, its retry read at 10:19. */
	observe(&st, &s, t0 + 15 * MIN, t0 + 15 * MIN, false, false, v);
	values_at(t0 + 19 * MIN, t0, v);
	observe(&st, &s, t0 + 15 * MIN, t0 + 19 * MIN, true, true, v);
	values_at(t0 + 30 * MIN, t0, v);
	observe(&st, &s, t0 + 30 * MIN, t0 + 30 * MIN, true, false, v);
	assert_int_equal(count_kind(&s, MH_IVAL_INTERVAL), 2);
	const struct rec *a = nth(&s, MH_IVAL_INTERVAL, 0), *b = nth(&s, MH_IVAL_INTERVAL, 1);
	assert_true(a->late && !a->complete);
	assert_int_equal(a->end, t0 + 19 * MIN);
	assert_true(fabs(a->energy[0] - 19.0 / 60) < 1e-6);
	assert_false(b->late || b->complete);
	assert_int_equal(b->start, t0 + 19 * MIN);
	assert_true(fabs(a->energy[0] + b->energy[0] - 0.5) < 1e-6);
}

static void test_wrap_and_reset(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 10, 0);
	double v[2] = { 999999.50, 10 };

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	observe(&st, &s, t0, t0, true, false, v);
	v[0] = 0.25;
	v[1] = 10.5;
	observe(&st, &s, t0 + 15 * MIN, t0 + 15 * MIN, true, false, v);
	const struct rec *r = nth(&s, MH_IVAL_INTERVAL, 0);
	assert_non_null(r);
	assert_true(fabs(r->energy[0] - 0.75) < 1e-6);
	/* Replaced by a new meter reading 0.1 kWh: a reset, never a negative interval. */
	v[0] = 0.1;
	observe(&st, &s, t0 + 30 * MIN, t0 + 30 * MIN, true, false, v);
	assert_int_equal(count_kind(&s, MH_IVAL_INTERVAL), 1);
	assert_int_equal(count_kind(&s, MH_IVAL_RESET), 1);
	r = nth(&s, MH_IVAL_RESET, 0);
	assert_true(r->before == 0.25 && r->after == 0.1);
	v[0] = 0.6;
	v[1] = 11;
	observe(&st, &s, t0 + 45 * MIN, t0 + 45 * MIN, true, false, v);
	r = nth(&s, MH_IVAL_INTERVAL, 1);
	assert_true(fabs(r->energy[0] - 0.5) < 1e-9);
	assert_true(r->complete);
}

static void test_restart_continues_exactly(void **state)
{
	static struct sink whole, split;
	struct mh_ival_state a, b, stored;
	int64_t t0 = local_ms(2026, 11, 24, 20, 0), t;
	double v[2];

	whole.n = split.n = 0;
	mh_intervals_init(&cfg15, &a);
	mh_intervals_init(&cfg15, &b);
	for (t = t0; t <= t0 + 8 * HOUR; t += 15 * MIN) {
		values_at(t, t0, v);
		observe(&a, &whole, t, t, true, false, v);
		observe(&b, &split, t, t, true, false, v);
		if (t == t0 + 3 * HOUR) {
			/* Stored, the process dies, a new one loads the bytes. */
			memcpy(&stored, &b, sizeof(stored));
			memset(&b, 0xA5, sizeof(b));
			memcpy(&b, &stored, sizeof(b));
			assert_true(mh_intervals_fits(&cfg15, &b));
		}
	}
	assert_int_equal(whole.n, split.n);
	assert_memory_equal(whole.recs, split.recs, whole.n * sizeof(whole.recs[0]));
}

static void test_dst_days(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	const struct mh_ival_config hourly = { .interval_ms = HOUR, .n_points = 2, .names = names,
		.wrap = wraps, .import_point = 0 };
	int64_t t0, t;
	double v[2];

	setenv("TZ", "America/New_York", 1);
	tzset();
	/* 8 March 2026 has 23 hours there, 1 November 25. */
	for (int k = 0; k < 2; k++) {
		int64_t day = k == 0 ? local_ms(2026, 3, 8, 0, 0) : local_ms(2026, 11, 1, 0, 0);
		int64_t next = k == 0 ? local_ms(2026, 3, 9, 0, 0) : local_ms(2026, 11, 2, 0, 0);
		s.n = 0;
		mh_intervals_init(&hourly, &st);
		t0 = day - DAY;
		for (t = t0; t <= next; t += HOUR) {
			struct mh_ival_obs obs = { .due_ms = t, .read_at_ms = t, .good = true,
				.values = v };
			values_at(t, t0, v);
			mh_intervals_observe(&hourly, &st, &obs, emit, &s);
		}
		const struct rec *d = nth(&s, MH_IVAL_DAILY, 1);
		assert_non_null(d);
		assert_int_equal(d->start, day);
		assert_int_equal(d->end, next);
		assert_true(d->complete);
		assert_true(fabs(d->energy[0] - (k == 0 ? 23.0 : 25.0)) < 1e-6);
	}
	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
}

static void test_clock_step_back(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 10, 0);
	double v[2];

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	values_at(t0, t0, v);
	observe(&st, &s, t0, t0, true, false, v);
	/* 5 real minutes later the clock is set back an hour. */
	mh_intervals_clock_step(&st, -HOUR);
	values_at(t0 + 15 * MIN, t0, v);
	observe(&st, &s, t0 - 45 * MIN, t0 - 45 * MIN, true, false, v);
	const struct rec *r = nth(&s, MH_IVAL_INTERVAL, 0);
	assert_non_null(r);
	assert_true(r->end > r->start);
	assert_false(r->complete);
	assert_true(fabs(r->energy[0] - 0.25) < 1e-9);
	/* Unseen (no step reported): the energy waits for the next interval. */
	values_at(t0 + 30 * MIN, t0, v);
	observe(&st, &s, t0 - 2 * HOUR, t0 - 2 * HOUR, true, false, v);
	assert_int_equal(count_kind(&s, MH_IVAL_INTERVAL), 1);
	values_at(t0 + 45 * MIN, t0, v);
	observe(&st, &s, t0 - 105 * MIN, t0 - 105 * MIN, true, false, v);
	r = nth(&s, MH_IVAL_INTERVAL, 1);
	assert_true(r->end > r->start);
	assert_true(fabs(r->energy[0] - 0.5) < 1e-9);
}

static void test_gateway_off_over_midnight(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	int64_t t0 = local_ms(2026, 11, 24, 22, 0), t;
	double v[2];

	s.n = 0;
	mh_intervals_init(&cfg15, &st);
	for (t = t0; t <= t0 + 6 * HOUR; t += 15 * MIN) {
		/* Off from 23:00 to 01:00: no observation at all. */
		if (t > t0 + HOUR && t < t0 + 3 * HOUR)
			continue;
		values_at(t, t0, v);
		observe(&st, &s, t, t, true, false, v);
	}
	const struct rec *d = nth(&s, MH_IVAL_DAILY, 0);
	assert_non_null(d);
	assert_false(d->complete);
	assert_false(d->has_cum);
	assert_true(fabs(d->energy[0] - 1.0) < 1e-6);
	const struct rec *gap = nth(&s, MH_IVAL_INTERVAL, 4);
	assert_int_equal(gap->start, t0 + HOUR);
	assert_int_equal(gap->end, t0 + 3 * HOUR + 0);
	assert_false(gap->complete);
	/* 23:00 to 01:00 lies wholly in the valley, so the span may say so. */
	assert_string_equal(gap->period, "valley");
	/* The daily record came before the span that ends after the freeze. */
	assert_true(d < gap);
}

static void test_month(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	const struct mh_ival_config hourly = { .interval_ms = HOUR, .n_points = 2, .names = names,
		.wrap = wraps, .import_point = 0 };
	int64_t t0 = local_ms(2026, 11, 1, 0, 0), end = local_ms(2026, 12, 1, 0, 0), t;
	double v[2];

	s.n = 0;
	mh_intervals_init(&hourly, &st);
	for (t = t0; t <= end; t += HOUR) {
		struct mh_ival_obs obs = { .due_ms = t, .read_at_ms = t, .good = true, .values = v };
		values_at(t, t0, v);
		mh_intervals_observe(&hourly, &st, &obs, emit, &s);
	}
	assert_int_equal(count_kind(&s, MH_IVAL_DAILY), 30);
	/* October was never seen: no record for it, only November's. */
	assert_int_equal(count_kind(&s, MH_IVAL_MONTHLY), 1);
	const struct rec *m = nth(&s, MH_IVAL_MONTHLY, 0);
	assert_int_equal(m->start, t0);
	assert_int_equal(m->end, end);
	assert_true(m->complete);
	assert_true(fabs(m->energy[0] - 720.0) < 1e-6);
	assert_true(fabs(m->unattributed - 720.0) < 1e-6); /* no tariff: nothing attributed */
	/* The month closes after its last day. */
	assert_int_equal(s.recs[s.n - 1].kind, MH_IVAL_MONTHLY);
	assert_int_equal(s.recs[s.n - 2].kind, MH_IVAL_DAILY);
}

/*
 * Random faults: silent boundaries, late retries, the gateway off for hours,
 * a wrap of the register. Whatever happens, the intervals add up to the last
 * cumulative minus the first, and the days (with the one still open) to the
 * intervals.
 */
static void test_conservation_over_random_faults(void **state)
{
	static struct sink s;
	struct mh_ival_state st;
	unsigned seed = 645;

	for (int run = 0; run < 40; run++) {
		int64_t t0 = local_ms(2026, 11, 20, 0, 0) + (int64_t)(rand_r(&seed) % 96) * 15 * MIN;
		double first = NAN, last = NAN, v[2], wrapped = 0, total = 0, days = 0;

		s.n = 0;
		mh_intervals_init(&cfg15, &st);
		for (int64_t t = t0; t < t0 + 7 * DAY; t += 15 * MIN) {
			unsigned r = (unsigned)rand_r(&seed) % 100;
			if (r < 2) {
				t += (int64_t)(rand_r(&seed) % 40) * 15 * MIN; /* off for a while */
				continue;
			}
			values_at(t, t0, v);
			v[0] = fmod(v[0] + 999000.0, 1000000.0); /* wraps during the week */
			bool good = r >= 12;
			observe(&st, &s, t, t, good, false, v);
			if (!good && r >= 7) {
				/* Retried within the window, and this time it answers. */
				int64_t at = t + (int64_t)(1 + rand_r(&seed) % 13) * MIN;
				values_at(at, t0, v);
				v[0] = fmod(v[0] + 999000.0, 1000000.0);
				observe(&st, &s, t, at, true, true, v);
				good = true;
			}
			if (good) {
				if (isnan(first))
					first = v[0];
				if (!isnan(last) && v[0] < last)
					wrapped += 1000000.0;
				last = v[0];
			}
		}
		for (size_t i = 0; i < s.n; i++) {
			assert_true(s.recs[i].kind != MH_IVAL_RESET);
			if (s.recs[i].kind == MH_IVAL_INTERVAL) {
				assert_true(s.recs[i].end > s.recs[i].start);
				assert_true(s.recs[i].energy[0] >= 0);
				total += s.recs[i].energy[0];
			} else if (s.recs[i].kind == MH_IVAL_DAILY) {
				days += s.recs[i].energy[0];
			}
		}
		assert_true(fabs(total - (last + wrapped - first)) < 1e-3);
		assert_true(fabs(days + st.day.energy[0] - total) < 1e-3);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_steady_day),
		cmocka_unit_test(test_first_day_is_incomplete),
		cmocka_unit_test(test_missed_boundaries_make_one_span),
		cmocka_unit_test(test_late_read_says_so),
		cmocka_unit_test(test_wrap_and_reset),
		cmocka_unit_test(test_restart_continues_exactly),
		cmocka_unit_test(test_dst_days),
		cmocka_unit_test(test_clock_step_back),
		cmocka_unit_test(test_gateway_off_over_midnight),
		cmocka_unit_test(test_month),
		cmocka_unit_test(test_conservation_over_random_faults),
	};

	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
