/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Collection: the jobs the schedule gives the buses and what becomes of
 * them. At each boundary a read of every meter not still being read (a bus
 * that cannot keep up says so once per boundary); a failed boundary read of
 * a meter with interval tables is retried within its window (补抄); once a
 * day, the daily freezes the tables lack are read back from DL/T 645
 * meters. A finished job becomes a reading record, feeds the interval
 * tables and the health counters. Loop thread only; the caller commits the
 * database's turn.
 */

#include <stdint.h>

#include "config.h"
#include "health.h"
#include "meter.h"
#include "outbox.h"
#include "tables.h"

struct mh_collect;

/* For the meters of @meters (their buses set); all must outlive it. Returns 0 or -ENOMEM. */
int mh_collect_new(const struct mh_config *cfg, struct mh_meter_set *meters,
	struct mh_outbox *outbox, struct mh_tables *tables, struct mh_health *health,
	struct mh_collect **out);

/* Free; NULL is a no-op. */
void mh_collect_free(struct mh_collect *c);

/* A reload: go on with @cfg (the meter set has been rebound). */
void mh_collect_rebind(struct mh_collect *c, const struct mh_config *cfg);

/*
 * Feed every bus its due reads: after a reload, the reads a restarted bus
 * held back are made for the boundary they belong to. Meters new to the
 * set wait for the next boundary.
 */
void mh_collect_catch_up(struct mh_collect *c);

/* The buses are stopping: submit nothing more (completions are still taken). */
void mh_collect_stop(struct mh_collect *c);

/* Read every meter for @boundary; the next boundary is at @next_ms. */
void mh_collect_boundary(struct mh_collect *c, int64_t boundary, int64_t next_ms);

/*
 * Submit what is due at @now_ms (retries, the day's backfill). Returns the
 * wall time of the next retry, or 0 when none is waiting.
 */
int64_t mh_collect_tick(struct mh_collect *c, int64_t now_ms);
