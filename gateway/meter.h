/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The loop's runtime object for one meter: its piece of the configuration,
 * the bus that reads it, whether a scheduled read is under way, its
 * interval state and its command queue. Jobs point here, never at
 * indexes into a configuration that a reload may replace. Loop thread only.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "intervals.h"
#include "job.h"

struct mh_bus;
struct mh_command;

/* The meter's interval builder (see tables.h): set up from its profile and tariff. */
struct mh_meter_table {
	bool enabled; /* the profile has cumulative energy registers */
	bool dirty;   /* state changed in the database's turn, not yet committed */
	struct mh_ival_config cfg;
	struct mh_ival_state state, committed;
	size_t point[MH_IVAL_MAX_POINTS]; /* the profile point of each register */
	const char *names[MH_IVAL_MAX_POINTS];
	double wrap[MH_IVAL_MAX_POINTS];
	const char *period_names[MH_IVAL_MAX_PERIODS];
};

/* The meter's clock checks (DL/T 645, see clocksync.h). */
struct mh_meter_clock {
	int64_t next_check; /* wall ms */
	bool busy;	    /* a clock read is on the bus */
	bool verifying;	    /* broadcast sent for it; the next read says whether it took */
	int64_t drift_before;
};

struct mh_meter {
	const struct mh_meter_config *cfg;
	const struct mh_bus_config *bus_cfg;
	struct mh_bus *bus; /* set once the bus runs */
	size_t bus_index;   /* the bus among the gateway's, for health */
	size_t slot;        /* the meter's place on its bus */
	bool busy;          /* a scheduled read is queued or running */
	bool held;          /* its bus is to restart for a reload: no new reads until then */
	bool due;           /* a boundary came and its read is not made yet */
	int64_t due_ms;     /* that boundary */
	int64_t last_due_ms; /* the boundary of the last scheduled read made or under way */
	uint64_t turn;      /* when that read was submitted, in submissions: the bus's round robin */
	uint64_t skipped;   /* boundaries passed over because the last read was not done */
	int64_t last_good_ms;
	/* A failed boundary read waiting for its retry (补抄): when, and for which boundary. */
	int64_t retry_at, retry_due;
	unsigned retries; /* made for the current boundary */
	struct mh_meter_table *table; /* NULL: its profile has no energy registers */
	/* Remote commands (see commands.h): the running one first, then in arrival order. */
	struct mh_command *cmd_head, *cmd_tail;
	unsigned cmd_waiting;
	struct mh_meter_clock clock;
	/* The relay as last read (a command's read-back or the watch after a read). */
	struct mh_relay relay_seen;
	bool relay_watching; /* a watch read is on the bus */
};

/*
 * The gateway's meters, bus by bus, in configuration order. Each object is
 * allocated on its own, so a reload can keep it (and everything pointing
 * at it) while the set around it changes.
 */
struct mh_meter_set {
	struct mh_meter **meters;
	size_t n;
};

/* Make the runtime objects for every meter of @cfg (which must outlive them). Returns 0 or -ENOMEM. */
int mh_meter_set_init(struct mh_meter_set *set, const struct mh_config *cfg);

/* The meter with id @id, or NULL. */
struct mh_meter *mh_meter_find(const struct mh_meter_set *set, const char *id);

/*
 * A reload: make @set the meters of @fresh. A meter whose id both configs
 * have keeps its object (its state, commands and interval builder), now
 * pointing at its piece of @fresh; the others are new. The objects of
 * meters @fresh does not have are passed to @gone (which must not keep
 * them: they are freed after it returns). Returns 0, or -ENOMEM with @set
 * unchanged.
 */
int mh_meter_set_rebind(struct mh_meter_set *set, const struct mh_config *fresh,
	void (*gone)(void *ud, struct mh_meter *m), void *ud);

/* Free the objects. */
void mh_meter_set_deinit(struct mh_meter_set *set);

/* Whether a scheduled read of some meter is queued or running (its reading is yet to come). */
bool mh_meter_set_reading(const struct mh_meter_set *set);
