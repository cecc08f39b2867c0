/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One thread per RS485 port. The thread owns the port and talks to one meter
 * at a time. Jobs wait in two FIFOs: priority jobs (commands) start after at
 * most the frame in progress, before any scheduled one; jobs of one kind
 * never reorder. A finished job goes back through the completion queue the
 * loop drains. A port that fails or vanishes (a replugged USB adapter) is
 * closed and reopened with backoff; meanwhile jobs come back at once, saying
 * the port is unavailable.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "job.h"
#include "queue.h"
#include "serial.h"

struct mh_bus;

/*
 * Start the thread for @cfg (which must outlive the bus). Finished jobs are
 * pushed to @done. Returns 0 and *@out, or a negative errno.
 */
int mh_bus_start(const struct mh_bus_config *cfg, struct mh_queue *done, struct mh_bus **out);

/* Queue @job (the bus owns it until it pushes it to the completion queue). */
void mh_bus_submit(struct mh_bus *bus, struct mh_job *job, bool priority);

/* Jobs waiting (not counting the one in progress). */
size_t mh_bus_backlog(struct mh_bus *bus);

/* Whether every job submitted has been handed back (none waits or runs). */
bool mh_bus_idle(struct mh_bus *bus);

/* What the bus can say about its port. */
struct mh_bus_port {
	bool open;
	uint64_t losses;  /* times it failed or vanished after being open */
	int last_error;   /* negative errno of the last open or port failure, 0 if none */
	/*
	 * What the line did since the bus started, by class (see serial.h),
	 * over every time the port was opened; as of the last job finished.
	 */
	struct mh_link_counters link;
};
void mh_bus_port(struct mh_bus *bus, struct mh_bus_port *out);

/*
 * Stop the thread after the frame in progress and wait for it. Jobs it did
 * not run are pushed to the completion queue with canceled set. Frees the
 * bus; NULL is a no-op.
 */
void mh_bus_stop(struct mh_bus *bus);
