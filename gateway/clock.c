// SPDX-License-Identifier: MIT
#include "clock.h"

#include <time.h>

#ifndef MH_BUILD_EPOCH
#define MH_BUILD_EPOCH 1735689600 /* 2025-01-01 */
#endif

static int64_t read_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mh_clock_wall_ms(void)
{
	return read_ms(CLOCK_REALTIME);
}

int64_t mh_clock_mono_ms(void)
{
	return read_ms(CLOCK_MONOTONIC);
}

int64_t mh_clock_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * A month before the build: far above the 1970 (or 2000, or the init
 * system's build date) that unset boards read, and low enough that a build
 * machine's own clock, or a test that steps the clock back a few hours,
 * does not make a set clock look unset.
 */
#define FLOOR_MARGIN_S (30 * 86400)

int64_t mh_clock_floor_ms(void)
{
	return ((int64_t)MH_BUILD_EPOCH - FLOOR_MARGIN_S) * 1000;
}

void mh_clock_init(struct mh_clock *c, int64_t floor_ms, int64_t tolerance_ms)
{
	*c = (struct mh_clock){ .floor_ms = floor_ms, .tolerance_ms = tolerance_ms };
}

bool mh_clock_plausible(const struct mh_clock *c, int64_t wall_ms)
{
	return wall_ms >= c->floor_ms;
}

int64_t mh_clock_observe(struct mh_clock *c, int64_t wall_ms, int64_t mono_ms)
{
	int64_t step = 0;

	if (c->observed) {
		int64_t expected = c->wall_ms + (mono_ms - c->mono_ms);
		step = wall_ms - expected;
		if (step > -c->tolerance_ms && step < c->tolerance_ms)
			step = 0;
	}
	c->observed = true;
	c->wall_ms = wall_ms;
	c->mono_ms = mono_ms;
	c->set = mh_clock_plausible(c, wall_ms);
	return step;
}
