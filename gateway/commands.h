/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Remote relay commands (远程费控): trip, restore, keep-power and its
 * cancel, the pre-trip alarm, and recall (召测). Loop thread only.
 *
 * A command arrives from the uplink, is verified (see cmd.h) and, when
 * accepted, journaled in the database's "commands" table together with its
 * "accepted" result, and committed before the handler returns: the broker
 * gets its PUBACK only after that. An accepted command waits in its
 * meter's queue (one at a time per meter, in arrival order) and runs as
 * urgent bus jobs: a control frame, then read-backs of the relay every
 * `settle` until it matches or `confirm_within` ran out, then a retry with
 * doubling backoff, up to max_attempts. Every state change is a cmd/result
 * record in the same unit of work as the journal row that says so. After a
 * restart the unfinished ones resume (or expire). Ids stay in the journal
 * well past the time a replay could pass the ts check, so a replay is
 * caught across restarts too.
 */

#include <stdint.h>
#include <uv.h>

#include "clock.h"
#include "cmd.h"
#include "config.h"
#include "db.h"
#include "meter.h"
#include "outbox.h"
#include "uplink.h"

struct mh_commands;

/* Counters for health. */
struct mh_commands_stats {
	uint64_t received;
	uint64_t accepted, succeeded, failed, expired;
	uint64_t rejected[MH_CMD_REASONS]; /* by reason */
	uint64_t unpublished; /* rejections not published (unauthenticated, over the rate) */
	uint64_t redelivered; /* broker redeliveries of a journaled command, ignored */
	uint64_t journal_errors; /* commands the store could not journal: not carried out */
	size_t active;           /* accepted and not finished */
};

/*
 * Commands for @cfg (commands.enabled) on @meters, journaled in @db, results
 * into @outbox; @clock says whether the wall clock can be trusted; @commit
 * makes the database's turn durable (and hands it to the uplink),
 * returning 0 or a negative errno. Loads the
 * HMAC key and the journal. Returns 0 and *@out, or a negative errno
 * (logged): the key file refused, the journal unreadable.
 */
int mh_commands_open(uv_loop_t *loop, const struct mh_config *cfg, struct mh_meter_set *meters,
	struct mh_db *db, struct mh_outbox *outbox, const struct mh_clock *clock,
	int (*commit)(void *ud), void *commit_ud, struct mh_commands **out);

/*
 * Start what the journal holds (the buses run, the wall clock is set):
 * expired ones end "expired", the others resume. Called again when the
 * clock gets set, it does nothing the second time.
 */
/* A reload's new key and protect windows, loaded before anything changes. */
struct mh_commands_settings;

/*
 * Load @fresh's commands settings. Returns 0 and *@out, or a negative
 * errno with the reason in @err (also logged).
 */
int mh_commands_prepare(const struct mh_config *fresh, char *err, size_t err_len,
	struct mh_commands_settings **out);

/* Free settings not given to mh_commands_rebind(); NULL is a no-op. */
void mh_commands_settings_free(struct mh_commands_settings *st);

/* A reload: go on with @fresh and its settings @st (taken over). */
void mh_commands_rebind(struct mh_commands *c, const struct mh_config *fresh,
	struct mh_commands_settings *st);

/* Whether a command of @m is under way or waits (a reload then leaves its bus be). */
bool mh_commands_hold(const struct mh_commands *c, const struct mh_meter *m);

void mh_commands_resume(struct mh_commands *c);

/* The uplink's handler for the command topic (@ud is the struct mh_commands). */
void mh_commands_inbound(void *ud, const struct mh_inbound *in);

/* Stop: no new bus job; what runs stays journaled and resumes at the next start. */
void mh_commands_stop(struct mh_commands *c);

/* Free (after the loop ran its close callbacks); NULL is a no-op. */
void mh_commands_free(struct mh_commands *c);

/* The counters. */
void mh_commands_stats(const struct mh_commands *c, struct mh_commands_stats *out);
