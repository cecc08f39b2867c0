/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Records as the head-end reads them: the JSON of readings and events, each
 * starting with the seq the outbox gives it, stored in the outbox as a unit
 * of work of its own. Loop thread only.
 */

#include <cjson/cJSON.h>
#include <stdint.h>

#include "config.h"
#include "job.h"
#include "outbox.h"

/* A record object that starts with the seq the outbox will give it; NULL without memory. */
cJSON *mh_records_begin(struct mh_outbox *outbox);

/* An event record of @type with "ts" @now_ms; the caller adds its fields. */
cJSON *mh_records_event(struct mh_outbox *outbox, const char *type, int64_t now_ms);

/*
 * The name of the first number in @obj (and its children) that is NaN or
 * infinite, which JSON cannot carry (cJSON would print null); NULL if none.
 */
const char *mh_records_nonfinite(const cJSON *obj);

/*
 * @obj printed as cJSON_PrintUnformatted() prints it, its common numbers
 * the fast way (mh_records_format_number()), which leaves them as raw
 * text in @obj. Free the result with free(); NULL without memory.
 */
char *mh_records_print(cJSON *obj);

/*
 * Store @obj (consumed; NULL counts as out of memory) as a record of @type
 * under @subtopic. Returns 0 or a negative errno (logged): -ERANGE for a
 * record with a number that is not finite, which is never published.
 */
int mh_records_store(struct mh_outbox *outbox, enum mh_record_type type, const char *subtopic,
	cJSON *obj, int64_t created_ms);

/*
 * The last check of reading @r of a meter with @profile before it is
 * published: a value that is not a finite number is no value, and the
 * reading is an error that names it (unless it was one already). Returns
 * how many values were dropped.
 */
size_t mh_records_guard(struct mh_reading *r, const struct mh_profile *profile);

/*
 * Store the reading a read job brought back (reading/<meter>), after
 * mh_records_guard(), which may turn @job's reading into an error. Returns
 * 0 or -errno.
 */
int mh_records_reading(struct mh_outbox *outbox, struct mh_job *job);

/*
 * Write @v as cJSON prints it, for the common case (a decimal of a few
 * places) without stdio: into @out (at least 32 bytes). Returns the length,
 * or 0 when it is not such a number (cJSON then prints it).
 */
size_t mh_records_format_number(double v, char *out);
