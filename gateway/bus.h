/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One thread per RS485 port. The thread owns the port and talks to one meter
 * at a time; jobs (struct mh_reading) come in through a locked queue and go
 * back, filled in, through the results queue the loop drains.
 */

#include "config.h"
#include "queue.h"
#include "reading.h"

struct mh_bus;

/*
 * Start the thread for @cfg (which must outlive the bus). Finished readings
 * are pushed to @results. A port that cannot be opened is retried every few
 * seconds; until then every job comes back with quality error. Returns 0 and
 * *@out, or a negative errno.
 */
int mh_bus_start(const struct mh_bus_config *cfg, struct mh_queue *results, struct mh_bus **out);

/* Queue a read; the bus owns @r until it pushes it to the results queue. */
void mh_bus_submit(struct mh_bus *bus, struct mh_reading *r);

/* Jobs waiting (not counting the one in progress). */
size_t mh_bus_backlog(struct mh_bus *bus);

/*
 * Stop the thread after the frame in progress, wait for it, free queued jobs
 * and the bus. NULL is a no-op.
 */
void mh_bus_stop(struct mh_bus *bus);
