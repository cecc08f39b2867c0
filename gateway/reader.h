/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Protocol operations over one bus: turns a job into frames (a read: the
 * meter's profile), keeps the inter-frame gap, decodes the answers into the
 * job and says what went wrong when a meter does not answer. Runs on the
 * bus thread, which owns the reader and its port.
 */

#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "job.h"
#include "serial.h"

struct mh_reader;

/*
 * Open the bus's port and plan the reads for each of its meters. Returns 0
 * and *@out, or a negative errno: the port could not be opened (-ENOENT,
 * -EACCES, -EBUSY when another process holds it, ...), -ENOMEM.
 */
int mh_reader_open(const struct mh_bus_config *bus, struct mh_reader **out);

/* Close the port and free the reader; NULL is a no-op. */
void mh_reader_free(struct mh_reader *reader);

/*
 * Called before each frame of a job that is not urgent (a read): run the
 * urgent jobs waiting, with mh_reader_run() on @reader, then return. A
 * command thus starts after at most the frame in progress, not after the
 * whole read of a meter. Urgent jobs (job->urgent) never yield, so they
 * keep their order.
 */
typedef void (*mh_reader_yield_fn)(void *ud, struct mh_reader *reader);
void mh_reader_set_yield(struct mh_reader *reader, mh_reader_yield_fn fn, void *ud);

/*
 * Run @job. A meter that does not answer costs one response timeout: a read
 * ends there with quality timeout. Returns 0 when the job is complete (its
 * result says how it went: a read's quality, a relay job's result too); -ECANCELED when *@stop became true between two
 * frames (the job is incomplete and must not be published); -ENODEV when
 * the port itself failed (the job says so; close the reader and reopen).
 */
int mh_reader_run(struct mh_reader *reader, struct mh_job *job, const atomic_bool *stop);

/*
 * What the port's link saw since the reader opened it (see
 * mh_dlt645_link_counters(), mh_modbus_link_counters()): frames, timeouts,
 * checksum errors, garbage, and so on, by class. Bus thread only.
 */
void mh_reader_counters(const struct mh_reader *reader, struct mh_link_counters *out);
