/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Preset metering periods (time of use, 分时): which named period (peak,
 * flat, valley, sharp, ...) a moment of local time belongs to. A tariff is a
 * base table of periods over the day, a default for the time no period
 * covers, and seasons: other tables that apply in some months and/or on some
 * weekdays, laid over the base one (a summer sharp peak in July and August,
 * other hours on weekends). Pure functions of the local time they are given.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MH_TARIFF_DAY_MIN 1440

/* From @from_min to @to_min minutes after local midnight; from > to crosses midnight. */
struct mh_tariff_period {
	const char *name;
	uint16_t from_min, to_min;
};

struct mh_tariff_table {
	const struct mh_tariff_period *periods;
	size_t n;
};

struct mh_tariff_season {
	uint16_t months; /* bit m for month m (1-12); 0: every month */
	uint8_t days;    /* bit d for weekday d (0 Sunday .. 6 Saturday); 0: every day */
	struct mh_tariff_table table;
};

struct mh_tariff {
	const char *name;
	struct mh_tariff_table base;
	const char *default_period; /* for time no period covers */
	const struct mh_tariff_season *seasons;
	size_t n_seasons; /* a later season wins over an earlier one */
};

/* Whether @p covers @minute (0-1439) of the day. */
bool mh_tariff_covers(const struct mh_tariff_period *p, unsigned minute);

/*
 * The period in force at @minute (0-1439) of a local day in @month (1-12)
 * on weekday @wday (0 Sunday): the last matching season's period covering
 * it, else the base table's, else the default.
 */
const char *mh_tariff_period(const struct mh_tariff *t, unsigned month, unsigned wday,
	unsigned minute);

/*
 * The period of the span from @start_ms to @end_ms (local time in the
 * process time zone), or NULL when it does not lie in one period (it
 * crosses an edge, or a day it spans is governed by another table).
 */
const char *mh_tariff_period_of(const struct mh_tariff *t, int64_t start_ms, int64_t end_ms);

/*
 * Check that every edge of @t's tables falls on a boundary of @interval_ms
 * counted from local midnight, so an interval never straddles two periods.
 * Returns 0, or -EINVAL with *@bad the offending period and *@bad_min its edge.
 */
int mh_tariff_check_edges(const struct mh_tariff *t, unsigned interval_ms,
	const struct mh_tariff_period **bad, unsigned *bad_min);

/*
 * Check that no two periods of @table overlap. Returns 0, or -EINVAL with
 * the two that do.
 */
int mh_tariff_check_overlap(const struct mh_tariff_table *table, const struct mh_tariff_period **a,
	const struct mh_tariff_period **b);
