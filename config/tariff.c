// SPDX-License-Identifier: MIT
#include "tariff.h"

#include <errno.h>
#include <string.h>
#include <time.h>

bool mh_tariff_covers(const struct mh_tariff_period *p, unsigned minute)
{
	if (p->from_min == p->to_min)
		return true; /* the whole day */
	if (p->from_min < p->to_min)
		return minute >= p->from_min && minute < p->to_min;
	return minute >= p->from_min || minute < p->to_min;
}

static const char *table_period(const struct mh_tariff_table *t, unsigned minute)
{
	for (size_t i = 0; i < t->n; i++)
		if (mh_tariff_covers(&t->periods[i], minute))
			return t->periods[i].name;
	return NULL;
}

static bool season_applies(const struct mh_tariff_season *s, unsigned month, unsigned wday)
{
	return (!s->months || (s->months & (1u << month))) && (!s->days || (s->days & (1u << wday)));
}

const char *mh_tariff_period(const struct mh_tariff *t, unsigned month, unsigned wday,
	unsigned minute)
{
	const char *name;

	for (size_t i = t->n_seasons; i-- > 0;) {
		if (!season_applies(&t->seasons[i], month, wday))
			continue;
		name = table_period(&t->seasons[i].table, minute);
		if (name)
			return name;
	}
	name = table_period(&t->base, minute);
	return name ? name : t->default_period;
}

static void local_parts(int64_t ms, unsigned *month, unsigned *wday, unsigned *minute)
{
	time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	*month = (unsigned)tm.tm_mon + 1;
	*wday = (unsigned)tm.tm_wday;
	*minute = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
}

const char *mh_tariff_period_of(const struct mh_tariff *t, int64_t start_ms, int64_t end_ms)
{
	const char *name = NULL;

	/*
	 * Edges lie on whole minutes, so looking at every minute the span
	 * touches is exact; a span of more than a day is never one period
	 * worth naming, whatever the tables say.
	 */
	if (end_ms <= start_ms || end_ms - start_ms > 86400000)
		return NULL;
	for (int64_t ms = start_ms; ms < end_ms; ms += 60000) {
		unsigned month, wday, minute;
		const char *here;

		local_parts(ms, &month, &wday, &minute);
		here = mh_tariff_period(t, month, wday, minute);
		if (!here || (name && strcmp(name, here)))
			return NULL;
		name = here;
		/* Step to the next whole minute of this span. */
		ms -= ms % 60000;
	}
	return name;
}

static int check_table(const struct mh_tariff_table *t, unsigned interval_ms,
	const struct mh_tariff_period **bad, unsigned *bad_min)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct mh_tariff_period *p = &t->periods[i];
		unsigned edges[2] = { p->from_min, p->to_min };
		for (int e = 0; e < 2; e++) {
			if ((uint64_t)edges[e] * 60000 % interval_ms) {
				*bad = p;
				*bad_min = edges[e];
				return -EINVAL;
			}
		}
	}
	return 0;
}

int mh_tariff_check_edges(const struct mh_tariff *t, unsigned interval_ms,
	const struct mh_tariff_period **bad, unsigned *bad_min)
{
	int rc = check_table(&t->base, interval_ms, bad, bad_min);

	for (size_t i = 0; !rc && i < t->n_seasons; i++)
		rc = check_table(&t->seasons[i].table, interval_ms, bad, bad_min);
	return rc;
}

int mh_tariff_check_overlap(const struct mh_tariff_table *table, const struct mh_tariff_period **a,
	const struct mh_tariff_period **b)
{
	for (size_t i = 0; i < table->n; i++) {
		for (size_t j = i + 1; j < table->n; j++) {
			const struct mh_tariff_period *p = &table->periods[i], *q = &table->periods[j];
			/* Edges lie on whole minutes: overlapping periods share a minute. */
			for (unsigned m = 0; m < MH_TARIFF_DAY_MIN; m++) {
				if (mh_tariff_covers(p, m) && mh_tariff_covers(q, m)) {
					*a = p;
					*b = q;
					return -EINVAL;
				}
			}
		}
	}
	return 0;
}
