/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Interval tables: each meter's interval builder (intervals.h), its state
 * kept in the database's "intervals" table, and the interval, daily and
 * monthly records it produces, stored in the outbox in the same unit of
 * work as the state that produced them. A restart or a SIGKILL continues
 * the tables without a gap or a double count. Loop thread only.
 */

#include "config.h"
#include "db.h"
#include "job.h"
#include "meter.h"
#include "outbox.h"

struct mh_tables;

/*
 * Set up the builder of every meter in @meters that has cumulative energy
 * registers, and load its state. Returns 0 and *@out, or a negative errno.
 */
int mh_tables_open(struct mh_db *db, struct mh_outbox *outbox, const struct mh_config *cfg,
	struct mh_meter_set *meters, struct mh_tables **out);

/* Free; NULL is a no-op. */
void mh_tables_free(struct mh_tables *t);

/*
 * A scheduled read of @job's meter finished (good or not): feed the builder,
 * and store its records with its state. Returns 0 or a negative errno (the
 * unit is then undone: the state stays as it was, nothing is lost but the
 * records of this read, which are counted as lost).
 */
int mh_tables_observe(struct mh_tables *t, const struct mh_job *job);

/* The wall clock stepped by @step_ms: every baseline moves with it. */
void mh_tables_clock_step(struct mh_tables *t, int64_t step_ms);
