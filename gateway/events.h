/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The gateway's own events (README "MQTT contract", topic event): each a
 * record stored through the outbox like a reading, so it survives an
 * outage and reaches the head-end in seq order. These are the daemon's;
 * the modules that see the others (meter_offline, relay_changed,
 * clock_drift, backfill_failed) build theirs where they happen.
 */

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "db.h"
#include "outbox.h"

/* store_dropped: what a full store gave up (also logged: a drop is never silent). */
void mh_event_store_dropped(struct mh_outbox *ob, const struct mh_outbox_drops *drops, int64_t now);

/* clock_step: the wall clock moved by @step_ms; @was_set: it was set before. */
void mh_event_clock_step(struct mh_outbox *ob, int64_t step_ms, bool was_set, int64_t now);

/* gateway_started: how the last run ended, and how long this one waited for the clock. */
void mh_event_started(struct mh_outbox *ob, enum mh_db_last_stop last, int64_t uptime_ms,
	int64_t now);

/* broker_lost / broker_back: how long the link was down, what waits in the store. */
void mh_event_broker(struct mh_outbox *ob, bool up, int64_t outage_ms, int64_t now);

/* bus_port_lost (@port says why) or bus_port_back after @down_ms. */
void mh_event_port(struct mh_outbox *ob, const struct mh_bus_config *bus, bool lost,
	const struct mh_bus_port *port, int64_t down_ms, int64_t now);

/* config_rejected: @errors (an array, taken over; may be NULL) say why. */
void mh_event_config_rejected(struct mh_outbox *ob, const char *file, const char *reason,
	cJSON *errors, int64_t now);

/* config_reloaded: @changes (copied) say what changed. */
void mh_event_config_reloaded(struct mh_outbox *ob, const char *file, const cJSON *changes,
	int64_t now);
