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

/*
 * A reload, with the meter set rebound and the database's turn committed:
 * set every builder up from @cfg again. A meter whose registers, interval
 * and periods are as before goes on from its state; another starts its
 * tables afresh. Returns 0 or a negative errno.
 */
int mh_tables_rebind(struct mh_tables *t, const struct mh_config *cfg);

/* Free; NULL is a no-op. */
void mh_tables_free(struct mh_tables *t);

/*
 * A scheduled read of @job's meter finished (good or not): feed the builder,
 * and store its records with its state. Returns 0 or a negative errno (the
 * unit is then undone: the state stays as it was, nothing is lost but the
 * records of this read, which are counted as lost).
 */
int mh_tables_observe(struct mh_tables *t, const struct mh_job *job);

/*
 * Backfill (DL/T 645 meters): call @want(@ud, @m, back) for each of the last
 * @days daily freezes before @now_ms (back 1 = the last) that @m has no
 * complete daily record for, so they can be read back from the meter.
 */
void mh_tables_backfill_plan(struct mh_tables *t, struct mh_meter *m, int64_t now_ms,
	unsigned days, void (*want)(void *ud, struct mh_meter *m, unsigned back), void *ud);

/*
 * A frozen-data job (MH_JOB_FROZEN) read a day the meter kept: store its
 * daily record (source "meter") unless that day has a complete one by now.
 * Returns 0; -ENODATA when the job did not read it (try again); -ERANGE when
 * the meter's freeze lies after the gateway's time; another negative errno.
 */
int mh_tables_frozen(struct mh_tables *t, const struct mh_job *job);

/* The wall clock stepped by @step_ms: every baseline moves with it. */
void mh_tables_clock_step(struct mh_tables *t, int64_t step_ms);

/*
 * For readers beside the daemon (a database from mh_db_open_readonly()):
 * call @fn for each meter whose builder state the "intervals" table holds,
 * with its id and that state as last committed; rows of another version
 * are passed over. Runs inside one read transaction: @fn must be quick.
 * Stops when @fn returns non-zero. Returns the number of meters passed to
 * @fn, -ENOENT when the store has no such table, or a negative errno.
 */
int mh_tables_read_states(struct mh_db *db,
	int (*fn)(void *ud, const char *meter, const struct mh_ival_state *st), void *ud);
