/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The two clocks the gateway lives by. Timeouts, gaps and uptime use the
 * monotonic clock; record times come from the wall clock, which on a board
 * without an RTC reads 1970 until NTP or the modem sets it, and which NTP or
 * an operator may step at any moment. This module says whether the wall
 * clock can be trusted and notices when it jumps.
 *
 * "Set" means: not before a floor, a month before the build date
 * (MH_BUILD_EPOCH). A board that boots without an RTC starts near 1970 (or
 * at a default such as its init system's build date), which no build can
 * predate by less; a clock set by anyone afterwards is later than the
 * software it runs.
 */

#include <stdbool.h>
#include <stdint.h>

/* Wall-clock (CLOCK_REALTIME) milliseconds since the epoch. */
int64_t mh_clock_wall_ms(void);

/* Monotonic milliseconds (CLOCK_MONOTONIC): never jumps, stops nowhere. */
int64_t mh_clock_mono_ms(void);

/* The same in microseconds: for the silences on a line. */
int64_t mh_clock_mono_us(void);

/* The earliest wall time (ms) this build believes: a month before it was built. */
int64_t mh_clock_floor_ms(void);

/* A wall-clock watcher: pairs of (wall, monotonic) readings taken by the loop. */
struct mh_clock {
	int64_t floor_ms;     /* wall times before this are "not set" */
	int64_t tolerance_ms; /* a disagreement smaller than this is drift, not a step */
	int64_t wall_ms, mono_ms; /* the last observation */
	bool observed;
	bool set;
};

/* Start watching; nothing observed yet. */
void mh_clock_init(struct mh_clock *c, int64_t floor_ms, int64_t tolerance_ms);

/* Whether @wall_ms is a time the clock can plausibly read once set. */
bool mh_clock_plausible(const struct mh_clock *c, int64_t wall_ms);

/*
 * Record an observation. Returns the step the wall clock took since the
 * previous one, beyond what the monotonic clock elapsed (positive: forward),
 * or 0 when it kept pace within the tolerance. The first observation, and
 * the moment the clock becomes set, count as steps from what the clock read
 * before only when there was a previous observation.
 */
int64_t mh_clock_observe(struct mh_clock *c, int64_t wall_ms, int64_t mono_ms);
