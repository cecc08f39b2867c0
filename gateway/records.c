// SPDX-License-Identifier: MIT
#include "records.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "meter.h"
#include "schedule.h"

cJSON *mh_records_begin(struct mh_outbox *outbox)
{
	cJSON *obj = cJSON_CreateObject();

	if (obj)
		cJSON_AddNumberToObject(obj, "seq", (double)mh_outbox_next_seq(outbox));
	return obj;
}

cJSON *mh_records_event(struct mh_outbox *outbox, const char *type, int64_t now_ms)
{
	cJSON *obj = mh_records_begin(outbox);
	char ts[40];

	mh_schedule_format(now_ms, false, ts, sizeof(ts));
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "type", type);
	return obj;
}

const char *mh_records_nonfinite(const cJSON *obj)
{
	for (const cJSON *item = obj; item; item = item->next) {
		const char *bad;

		if (cJSON_IsNumber(item) && !isfinite(item->valuedouble))
			return item->string ? item->string : "(a number)";
		if (item->child && (bad = mh_records_nonfinite(item->child)))
			return bad;
	}
	return NULL;
}

/*
 * cJSON prints a number with sprintf("%1.15g") and a sscanf to check it
 * (or "%d" for an int): most of a record's printing. A meter's values are
 * decimals of a few places, so the common case is written here without
 * stdio, as the same characters cJSON would print: a value that is
 * exactly the double nearest to N / 10^k, |N| < 10^15, k <= 6, and not
 * below 1e-4 in magnitude (where %g turns to exponents). Returns the
 * length, or 0 for cJSON to print it.
 */
size_t mh_records_format_number(double v, char *out)
{
	static const double pow10[] = { 1, 10, 100, 1e3, 1e4, 1e5, 1e6 };
	char digits[24];

	if (!isfinite(v) || (v != 0 && fabs(v) < 1e-4) || fabs(v) >= 1e15)
		return 0;
	for (int k = 0; k <= 6; k++) {
		double scaled = nearbyint(v * pow10[k]);
		if (fabs(scaled) >= 1e15 || scaled / pow10[k] != v)
			continue;
		long long n = (long long)scaled;
		unsigned long long u = n < 0 ? 0ull - (unsigned long long)n : (unsigned long long)n;
		size_t len = 0, at = 0;

		/* No trailing zeros: with one, a smaller k would have matched. */
		do {
			digits[len++] = (char)('0' + u % 10);
			u /= 10;
		} while (u || len <= (size_t)k);
		if (n < 0 || signbit(v))
			out[at++] = '-';
		while (len) {
			out[at++] = digits[--len];
			if (len == (size_t)k && k)
				out[at++] = '.';
		}
		out[at] = '\0';
		return at;
	}
	return 0;
}

/* The numbers of @item and below, as raw text where the fast way can write them. */
static void preformat(cJSON *item)
{
	for (; item; item = item->next) {
		char buf[32], *text;

		if (item->child)
			preformat(item->child);
		if (!cJSON_IsNumber(item) || !mh_records_format_number(item->valuedouble, buf))
			continue;
		text = strdup(buf);
		if (!text)
			continue; /* cJSON prints it */
		item->type = cJSON_Raw;
		item->valuestring = text;
	}
}

int mh_records_store(struct mh_outbox *outbox, enum mh_record_type type, const char *subtopic,
	cJSON *obj, int64_t created_ms)
{
	const char *bad = mh_records_nonfinite(obj);
	char *json;
	int rc = -ENOMEM;

	if (bad) {
		mh_log_err(STORE, "%s record not stored: its %s is not a finite number", subtopic,
			bad);
		cJSON_Delete(obj);
		return -ERANGE;
	}
	preformat(obj);
	json = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (json)
		rc = mh_outbox_append(outbox, type, created_ms, subtopic, json, strlen(json));
	if (rc < 0)
		mh_log_err(STORE, "%s record not stored: %s", subtopic, strerror(-rc));
	free(json);
	return rc;
}

size_t mh_records_guard(struct mh_reading *r, const struct mh_profile *profile)
{
	char msg[sizeof(r->error)];
	size_t dropped = 0;

	for (size_t i = 0; i < r->n_values && i < profile->n_points; i++) {
		if (!r->valid[i] || isfinite(r->values[i]))
			continue;
		r->valid[i] = false;
		/* The first problem of a reading is its error; a codec's own comes first. */
		if (!dropped++ && r->quality == MH_QUALITY_GOOD) {
			snprintf(msg, sizeof(msg), "%s: the value is %s; not published",
				profile->points[i].name, isnan(r->values[i]) ? "NaN" : "infinite");
			r->quality = MH_QUALITY_ERROR;
			memcpy(r->error, msg, sizeof(msg));
		}
	}
	return dropped;
}

int mh_records_reading(struct mh_outbox *outbox, struct mh_job *job)
{
	const struct mh_meter *m = job->meter;
	const struct mh_reading *r = &job->reading;
	cJSON *obj, *values;
	char ts[40], read_at[40], subtopic[96];

	/* No codec gives a value JSON cannot carry; should one ever, it is caught here. */
	if (mh_records_guard(&job->reading, m->cfg->profile))
		mh_log_err(BUS, "%s: meter %s: %s", m->bus_cfg->name, m->cfg->id, r->error);
	obj = mh_records_begin(outbox);
	if (!obj)
		return -ENOMEM;
	mh_schedule_format_boundary(job->due_ms, job->interval_ms, ts, sizeof(ts));
	mh_schedule_format(r->read_at_ms, true, read_at, sizeof(read_at));
	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "quality", mh_quality_name(r->quality));
	values = cJSON_AddObjectToObject(obj, "values");
	for (size_t i = 0; values && i < r->n_values; i++)
		if (r->valid[i])
			cJSON_AddNumberToObject(values, m->cfg->profile->points[i].name, r->values[i]);
	cJSON_AddStringToObject(obj, "read_at", read_at);
	if (job->late)
		cJSON_AddBoolToObject(obj, "late", true);
	if (r->quality != MH_QUALITY_GOOD)
		cJSON_AddStringToObject(obj, "error", r->error);
	cJSON_AddStringToObject(obj, "bus", m->bus_cfg->name);
	cJSON_AddNumberToObject(obj, "duration_ms", r->duration_ms);
	snprintf(subtopic, sizeof(subtopic), "reading/%s", m->cfg->id);
	return mh_records_store(outbox, MH_RECORD_READING, subtopic, obj, r->read_at_ms);
}
