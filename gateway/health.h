/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What the health topic reports: per bus, how reads went since the last
 * report (success rate, latency) and the jobs waiting, the day's share of
 * meters read whole at their boundaries, the meters online and offline,
 * the newest good reading, and what the line did (frames, timeouts,
 * checksum errors, garbage, ...) since start and since the last report;
 * the store's backlog (depth, age of the oldest record, bytes used); the
 * broker connection.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "bus.h"
#include "commands.h"
#include "job.h"
#include "outbox.h"

struct mh_health;

/* Counters for the buses of @cfg (which must outlive them); NULL without memory. */
struct mh_health *mh_health_new(const struct mh_config *cfg);

/* Free; NULL is a no-op. */
void mh_health_free(struct mh_health *h);

/*
 * A reload: go on with @fresh. Buses keep their counters by name and
 * meters their standing by id; @restarted[b] says bus b of @fresh runs on
 * a new port object (its link counters start again). The old config must
 * still be valid during the call. Returns 0 or -ENOMEM (nothing changed).
 */
int mh_health_rebind(struct mh_health *h, const struct mh_config *fresh, const bool *restarted);

/* What a reading changed in its meter's standing (health.offline_after boundaries). */
enum mh_health_change {
	MH_HEALTH_SAME,
	MH_HEALTH_FIRST_FAILURE, /* the first failed boundary after a good one */
	MH_HEALTH_OFFLINE,	 /* failed boundaries in a row reached health.offline_after */
	MH_HEALTH_ONLINE,	 /* read again after being offline */
};

/*
 * Count one finished reading of the meter at @slot on bus @bus, a try at
 * reading boundary @due_ms (the first, or a retry of it). Returns what it
 * changed; *@failed is the count of failed boundaries in a row (before a
 * success, for MH_HEALTH_ONLINE).
 */
enum mh_health_change mh_health_note(struct mh_health *h, size_t bus, size_t slot, int64_t due_ms,
	const struct mh_reading *r, unsigned *failed);

/* @n meters of @bus were passed over at a boundary: their reads had not started. */
void mh_health_note_skipped(struct mh_health *h, size_t bus, size_t n);

/* Count records the store dropped or lost. */
void mh_health_note_drops(struct mh_health *h, const struct mh_outbox_drops *d);

struct mh_health_snapshot {
	int64_t now_ms;    /* wall clock */
	bool clock_set;    /* whether now_ms can be trusted (else no "ts") */
	int64_t uptime_ms; /* from the monotonic clock */
	const size_t *backlog;             /* jobs waiting, per bus */
	const struct mh_bus_port *ports;   /* per bus */
	const struct mh_outbox_stats *store;
	bool connected;
	unsigned in_flight;
	const struct mh_commands_stats *commands; /* NULL without commands */
};

/*
 * The health payload (JSON, caller frees) for the period since the last
 * call, which starts a new period. NULL without memory.
 */
char *mh_health_report(struct mh_health *h, const struct mh_health_snapshot *snap);
