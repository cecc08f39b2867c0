/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Reads whole meters over one bus: turns a meter's profile into frames,
 * keeps the inter-frame gap, decodes the answers into a struct mh_reading and
 * says what went wrong when a meter does not answer. Runs on the bus thread.
 */

#include <stdbool.h>

#include "config.h"
#include "reading.h"

struct mh_reader;

/*
 * Open the bus's port and plan the reads for each of its meters. Returns 0
 * and *@out, or a negative errno (the port could not be opened: -ENOENT,
 * -EACCES, ...; -ENOMEM).
 */
int mh_reader_open(const struct mh_bus_config *bus, struct mh_reader **out);

/* Close the port and free the reader; NULL is a no-op. */
void mh_reader_free(struct mh_reader *reader);

/*
 * Read meter @r->meter of the bus into @r. A meter that does not answer costs
 * one response timeout: its reading ends there with quality timeout. Returns
 * 0, or -ECANCELED when *@stop became true between two frames (then @r is
 * incomplete and must not be published).
 */
int mh_reader_read(struct mh_reader *reader, struct mh_reading *r, const volatile bool *stop);
