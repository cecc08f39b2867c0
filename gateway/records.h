/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Records as the head-end reads them: the JSON of readings and events, each
 * starting with the seq the outbox gives it, stored in the outbox as a unit
 * of work of its own. Loop thread only.
 */

#include <cjson/cJSON.h>
#include <stdint.h>

#include "job.h"
#include "outbox.h"

/* A record object that starts with the seq the outbox will give it; NULL without memory. */
cJSON *mh_records_begin(struct mh_outbox *outbox);

/* An event record of @type with "ts" @now_ms; the caller adds its fields. */
cJSON *mh_records_event(struct mh_outbox *outbox, const char *type, int64_t now_ms);

/*
 * Store @obj (consumed; NULL counts as out of memory) as a record of @type
 * under @subtopic. Returns 0 or a negative errno (logged).
 */
int mh_records_store(struct mh_outbox *outbox, enum mh_record_type type, const char *subtopic,
	cJSON *obj, int64_t created_ms);

/* Store the reading a read job brought back (reading/<meter>). Returns 0 or -errno. */
int mh_records_reading(struct mh_outbox *outbox, const struct mh_job *job);
