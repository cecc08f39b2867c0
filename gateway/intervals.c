// SPDX-License-Identifier: MIT
#include "intervals.h"

#include <math.h>
#include <string.h>
#include <time.h>

/* Energies are published to a millionth of a kWh: no float dust such as 0.0599999999. */
#define RESOLUTION 1e6

static uint32_t layout_hash(const struct mh_ival_config *cfg)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < cfg->n_points; i++) {
		for (const char *p = cfg->names[i]; *p; p++)
			h = (h ^ (uint8_t)*p) * 16777619u;
		h = (h ^ 0xff) * 16777619u;
	}
	return h ? h : 1;
}

void mh_intervals_init(const struct mh_ival_config *cfg, struct mh_ival_state *st)
{
	memset(st, 0, sizeof(*st));
	st->layout = layout_hash(cfg);
}

bool mh_intervals_fits(const struct mh_ival_config *cfg, const struct mh_ival_state *st)
{
	return st->layout == layout_hash(cfg);
}

static int64_t freeze_on(const struct mh_ival_config *cfg, int64_t t_ms, int days)
{
	time_t t = (time_t)(t_ms >= 0 ? t_ms / 1000 : (t_ms - 999) / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_mday += days;
	tm.tm_hour = (int)(cfg->freeze_min / 60);
	tm.tm_min = (int)(cfg->freeze_min % 60);
	tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (int64_t)mktime(&tm) * 1000;
}

int64_t mh_intervals_freeze_before(const struct mh_ival_config *cfg, int64_t t_ms)
{
	int64_t f = freeze_on(cfg, t_ms, 0);

	return f <= t_ms ? f : freeze_on(cfg, t_ms, -1);
}

int64_t mh_intervals_freeze_after(const struct mh_ival_config *cfg, int64_t t_ms)
{
	int64_t f = freeze_on(cfg, t_ms, 0);

	return f > t_ms ? f : freeze_on(cfg, t_ms, 1);
}

static bool first_of_month(int64_t t_ms)
{
	time_t t = (time_t)(t_ms / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	return tm.tm_mday == 1;
}

static double tidy(double kwh)
{
	return round(kwh * RESOLUTION) / RESOLUTION;
}

/*
 * Energy between two readings of register @i: the difference, across a
 * wrap of the register at its maximum. Returns false when the register
 * dropped without wrapping (a meter replaced or reset).
 */
static bool delta(const struct mh_ival_config *cfg, size_t i, double before, double after,
	double *out)
{
	double wrap = cfg->wrap ? cfg->wrap[i] : 0;

	if (after >= before) {
		*out = tidy(after - before);
		return true;
	}
	/* Wrapped: it ran past its maximum, so it dropped by more than half its range. */
	if (wrap > 0 && before - after > wrap / 2) {
		*out = tidy(wrap - before + after);
		return true;
	}
	return false;
}

static void open_bucket(struct mh_ival_bucket *b, int64_t start_ms, const double *cumulative,
	size_t n)
{
	memset(b, 0, sizeof(*b));
	b->start_ms = start_ms;
	b->has_cumulative = cumulative != NULL;
	if (cumulative)
		memcpy(b->cumulative, cumulative, n * sizeof(*cumulative));
	/* Complete until an interval says otherwise, if it starts from a freeze that was read. */
	b->complete = cumulative != NULL;
}

static size_t period_index(const struct mh_ival_config *cfg, const char *name)
{
	for (size_t i = 0; name && i < cfg->n_periods && i < MH_IVAL_MAX_PERIODS; i++)
		if (!strcmp(cfg->period_names[i], name))
			return i;
	return SIZE_MAX;
}

static void count(const struct mh_ival_config *cfg, struct mh_ival_bucket *b,
	const double *energy, const char *period, bool complete)
{
	for (size_t i = 0; i < cfg->n_points; i++)
		b->energy[i] = tidy(b->energy[i] + energy[i]);
	if (cfg->import_point < cfg->n_points) {
		size_t p = period_index(cfg, period);
		double e = energy[cfg->import_point];
		if (p != SIZE_MAX)
			b->periods[p] = tidy(b->periods[p] + e);
		else
			b->unattributed = tidy(b->unattributed + e);
	}
	b->complete &= complete;
	b->any = true;
}

/* Add a closed day to its month. */
static void add_day(const struct mh_ival_config *cfg, struct mh_ival_bucket *month,
	const struct mh_ival_bucket *day, bool day_complete)
{
	for (size_t i = 0; i < cfg->n_points; i++)
		month->energy[i] = tidy(month->energy[i] + day->energy[i]);
	for (size_t p = 0; p < MH_IVAL_MAX_PERIODS; p++)
		month->periods[p] = tidy(month->periods[p] + day->periods[p]);
	month->unattributed = tidy(month->unattributed + day->unattributed);
	month->complete &= day_complete;
	month->any |= day->any;
}

/* The day ends at freeze @f, where the registers read @cumulative (NULL: not read). */
static void close_day(const struct mh_ival_config *cfg, struct mh_ival_state *st, int64_t f,
	const double *cumulative, mh_ival_emit_fn emit, void *ud)
{
	struct mh_ival_bucket *day = &st->day;
	bool complete = day->complete && cumulative;

	/* A day the gateway knew nothing of is left to the meter's own frozen data. */
	if (day->any || day->has_cumulative || cumulative) {
		struct mh_ival_out out = {
			.kind = MH_IVAL_DAILY,
			.start_ms = day->start_ms,
			.end_ms = f,
			.complete = complete,
			.energy = day->energy,
			.bucket = day,
			.cumulative = cumulative,
		};
		emit(ud, &out);
	}
	add_day(cfg, &st->month, day, complete);
	if (first_of_month(f)) {
		struct mh_ival_bucket *month = &st->month;
		if (month->any || month->has_cumulative || cumulative) {
			struct mh_ival_out out = {
				.kind = MH_IVAL_MONTHLY,
				.start_ms = month->start_ms,
				.end_ms = f,
				.complete = month->complete && cumulative,
				.energy = month->energy,
				.bucket = month,
				.cumulative = cumulative,
			};
			emit(ud, &out);
		}
		open_bucket(month, f, cumulative, cfg->n_points);
	}
	open_bucket(day, f, cumulative, cfg->n_points);
}

/* The interval from the baseline to a good reading at @end. */
static void interval_to(const struct mh_ival_config *cfg, struct mh_ival_state *st,
	const struct mh_ival_obs *obs, int64_t end, mh_ival_emit_fn emit, void *ud)
{
	double energy[MH_IVAL_MAX_POINTS];
	bool exact = !obs->late && end == obs->due_ms;

	for (size_t i = 0; i < cfg->n_points; i++) {
		if (delta(cfg, i, st->base[i], obs->values[i], &energy[i]))
			continue;
		struct mh_ival_out out = {
			.kind = MH_IVAL_RESET,
			.start_ms = st->base_ms,
			.end_ms = end,
			.point = i,
			.before = st->base[i],
			.after = obs->values[i],
		};
		emit(ud, &out);
		/* Nothing can be said of this span: a new baseline, and the day is not whole. */
		st->day.complete = false;
		st->month.complete = false;
		goto rebase;
	}
	if (end <= st->base_ms) {
		/*
		 * Time did not move forward (a clock stepped back unseen): keep the
		 * old values, so the energy goes into the next interval, never lost.
		 */
		st->base_ms = end;
		st->base_exact = false;
		return;
	}
	{
		bool complete = st->base_exact && exact && end - st->base_ms == cfg->interval_ms;
		const char *period =
			cfg->tariff ? mh_tariff_period_of(cfg->tariff, st->base_ms, end) : NULL;
		struct mh_ival_out out = {
			.kind = MH_IVAL_INTERVAL,
			.start_ms = st->base_ms,
			.end_ms = end,
			.period = period,
			.complete = complete,
			.late = obs->late,
			.energy = energy,
		};
		emit(ud, &out);
		count(cfg, &st->day, energy, period, complete);
	}
rebase:
	st->base_ms = end;
	st->base_exact = exact;
	memcpy(st->base, obs->values, cfg->n_points * sizeof(*st->base));
}

void mh_intervals_observe(const struct mh_ival_config *cfg, struct mh_ival_state *st,
	const struct mh_ival_obs *obs, mh_ival_emit_fn emit, void *ud)
{
	int64_t end = obs->late ? obs->read_at_ms : obs->due_ms;
	int64_t f;

	if (!st->day.start_ms) {
		/*
		 * First sight: the day (and month) began before anything was known
		 * of them, unless this is the freeze itself, read on time.
		 */
		int64_t start = mh_intervals_freeze_before(cfg, obs->due_ms);
		const double *cum = start == obs->due_ms && obs->good && !obs->late ? obs->values
										     : NULL;
		open_bucket(&st->day, start, cum, cfg->n_points);
		open_bucket(&st->month, start, first_of_month(start) ? cum : NULL, cfg->n_points);
	}
	/* Freezes that passed with no reading at them: those days end unread. */
	while ((f = mh_intervals_freeze_after(cfg, st->day.start_ms)) < obs->due_ms)
		close_day(cfg, st, f, NULL, emit, ud);

	if (!obs->good) {
		st->day.complete = false;
	} else if (st->has_base) {
		interval_to(cfg, st, obs, end, emit, ud);
	} else {
		st->has_base = true;
		st->base_ms = end;
		st->base_exact = !obs->late;
		memcpy(st->base, obs->values, cfg->n_points * sizeof(*st->base));
	}

	/* The freeze itself: the interval ending here belongs to the day it closes. */
	if (f == obs->due_ms)
		close_day(cfg, st, f, obs->good && !obs->late ? obs->values : NULL, emit, ud);
}

void mh_intervals_clock_step(struct mh_ival_state *st, int64_t step_ms)
{
	if (st->has_base) {
		st->base_ms += step_ms;
		st->base_exact = false;
	}
	if (st->day.start_ms)
		st->day.start_ms += step_ms;
	if (st->month.start_ms)
		st->month.start_ms += step_ms;
}
