/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The interval builder: turns one meter's cumulative energy registers, read
 * at schedule boundaries, into interval records (energy per window, with its
 * metering period), a daily freeze and a monthly freeze. Pure: it is given
 * observations and local time (the process time zone) and hands back what
 * to publish; the caller stores the records and the state in one unit of
 * work, so a restart continues the tables without a gap or a double count.
 *
 * The rule it keeps: the energies of all interval records of a meter add up
 * to its last cumulative minus its first (across a wrap of the register);
 * a missing boundary never invents a split, it makes one complete:false
 * interval over the whole span. A register that drops without wrapping
 * (a meter replaced or reset) starts a new baseline and says so.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tariff.h"

#define MH_IVAL_MAX_POINTS 12  /* cumulative registers per meter */
#define MH_IVAL_MAX_PERIODS 8  /* distinct period names per tariff */

struct mh_ival_config {
	unsigned interval_ms;
	unsigned freeze_min;            /* daily freeze, minutes after local midnight */
	const struct mh_tariff *tariff; /* NULL: no periods */
	size_t n_periods;               /* the tariff's distinct period names */
	const char *const *period_names;
	size_t n_points;                /* cumulative registers, e.g. energy_import_kwh */
	const char *const *names;
	const double *wrap;             /* per register: where it wraps to 0; 0 if never */
	size_t import_point;            /* index of energy_import_kwh, or SIZE_MAX */
};

/* What survives a restart: plain data, stored as it is. */
struct mh_ival_bucket {
	int64_t start_ms;    /* the freeze that opened it; 0 until known */
	double energy[MH_IVAL_MAX_POINTS];
	double periods[MH_IVAL_MAX_PERIODS];
	double unattributed; /* import energy of intervals not in one period */
	double cumulative[MH_IVAL_MAX_POINTS]; /* read at the opening freeze */
	bool has_cumulative;
	bool complete;       /* every interval complete, both freezes read */
	bool any;            /* an interval was counted in it */
};

struct mh_ival_state {
	uint32_t layout; /* a hash of the register names: another profile starts afresh */
	bool has_base;
	bool base_exact; /* base_ms is a boundary read on time */
	int64_t base_ms;
	double base[MH_IVAL_MAX_POINTS];
	struct mh_ival_bucket day, month;
};

/* One scheduled read of the meter, good or not. */
struct mh_ival_obs {
	int64_t due_ms;     /* the boundary */
	int64_t read_at_ms; /* when it was read */
	bool late;          /* a retry after the boundary's first read failed */
	bool good;          /* every cumulative register was read */
	const double *values;
};

enum mh_ival_kind {
	MH_IVAL_INTERVAL,
	MH_IVAL_DAILY,
	MH_IVAL_MONTHLY,
	MH_IVAL_RESET, /* a register dropped: new baseline */
};

struct mh_ival_out {
	enum mh_ival_kind kind;
	int64_t start_ms, end_ms; /* the window, day or month */
	const char *period;       /* interval: NULL unless the span lies in one period */
	bool complete;
	bool late; /* interval: it ends at a late read, not at the boundary */
	const double *energy;     /* n_points */
	/* daily and monthly */
	const struct mh_ival_bucket *bucket;
	const double *cumulative; /* at the closing freeze, or NULL */
	/* reset */
	size_t point;
	double before, after;
};

typedef void (*mh_ival_emit_fn)(void *ud, const struct mh_ival_out *out);

/* A fresh state for @cfg (nothing known yet). */
void mh_intervals_init(const struct mh_ival_config *cfg, struct mh_ival_state *st);

/*
 * Whether @st belongs to @cfg's registers; a state of another layout (the
 * meter got another profile) must be started afresh.
 */
bool mh_intervals_fits(const struct mh_ival_config *cfg, const struct mh_ival_state *st);

/*
 * Feed one observation. Calls @emit for every record it completes, in time
 * order (the interval ending at a freeze before that day's freeze, the day
 * before the month), and updates @st.
 */
void mh_intervals_observe(const struct mh_ival_config *cfg, struct mh_ival_state *st,
	const struct mh_ival_obs *obs, mh_ival_emit_fn emit, void *ud);

/*
 * The wall clock stepped by @step_ms: the baseline moves with it, so the
 * next interval covers the real time since the baseline (and says it is not
 * complete), never a negative or doubled span.
 */
void mh_intervals_clock_step(struct mh_ival_state *st, int64_t step_ms);

/* The daily freeze at or before @t_ms, local time. */
int64_t mh_intervals_freeze_before(const struct mh_ival_config *cfg, int64_t t_ms);

/* The daily freeze strictly after @t_ms, local time. */
int64_t mh_intervals_freeze_after(const struct mh_ival_config *cfg, int64_t t_ms);
