/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Meter clocks (DL/T 645). Each meter's clock is read every
 * clock.check_every (the first time 5 minutes after start, or
 * check_every if shorter). A meter off by more than
 * clock.max_drift is corrected by broadcast time on its bus (0x08, to
 * 999999999999, no reply) and read again to see that it took it; one off
 * by more than clock.max_correction is only reported, since meters refuse
 * such a broadcast. Either way a clock_drift event says what was found and
 * what became of it. A broadcast never goes out while a command runs on
 * the bus, between 23:55 and 00:05 or within 5 minutes of the daily
 * freeze (meters refuse it then, and a freeze must not be moved), nor from
 * a gateway clock that is not synchronised (clock.require_synced).
 * Loop thread only.
 */

#include <stdint.h>

#include "config.h"
#include "meter.h"
#include "outbox.h"

struct mh_clocksync;

/* For the DL/T 645 meters of @meters (their buses set). Returns 0 and *@out, or -ENOMEM. */
int mh_clocksync_new(const struct mh_config *cfg, struct mh_meter_set *meters,
	struct mh_outbox *outbox, struct mh_clocksync **out);

/* Free (its jobs done); NULL is a no-op. */
void mh_clocksync_free(struct mh_clocksync *c);

/*
 * Submit the clock reads and broadcasts due at @now_ms (the wall clock,
 * set). Returns the wall time something is due next, 0 when nothing is.
 */
int64_t mh_clocksync_tick(struct mh_clocksync *c, int64_t now_ms);

/* A reload: go on with @cfg (the meter set has been rebound). Returns 0 or -ENOMEM. */
int mh_clocksync_rebind(struct mh_clocksync *c, const struct mh_config *cfg);

/* Stop submitting (the buses are stopping). */
void mh_clocksync_stop(struct mh_clocksync *c);
