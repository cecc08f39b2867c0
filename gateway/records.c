// SPDX-License-Identifier: MIT
#include "records.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
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

char *mh_records_print(cJSON *obj)
{
	preformat(obj);
	return cJSON_PrintUnformatted(obj);
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
	json = obj ? mh_records_print(obj) : NULL;
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

/*
 * A reading is the record made most often, so it is written straight into
 * a buffer, with the characters cJSON would print for the same object
 * (test_records.c holds the two side by side): its keys in their order,
 * strings escaped as cJSON escapes them, numbers as it prints them.
 */
struct jbuf {
	char *p;
	size_t len, cap;
	char *heap; /* p once it outgrew the caller's buffer */
	bool oom;
};

static bool jb_room(struct jbuf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more < b->cap)
		return true;
	size_t cap = (b->len + more) * 2;
	char *n = realloc(b->heap, cap);
	if (!n) {
		b->oom = true;
		return false;
	}
	if (!b->heap)
		memcpy(n, b->p, b->len);
	b->p = b->heap = n;
	b->cap = cap;
	return true;
}

static void jb_raw(struct jbuf *b, const char *s, size_t n)
{
	if (!jb_room(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void jb_string(struct jbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	/* At most six characters for one byte (\u00XX), and the quotes. */
	if (!jb_room(b, strlen(s) * 6 + 2))
		return;
	char *o = b->p + b->len;
	*o++ = '"';
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c >= 32 && *c != '"' && *c != '\\') {
			*o++ = (char)*c;
			continue;
		}
		*o++ = '\\';
		switch (*c) {
		case '"':
		case '\\':
			*o++ = (char)*c;
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[*c >> 4];
			*o++ = hex[*c & 15];
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
}

/* ,"key": (the comma unless first) */
static void jb_key(struct jbuf *b, const char *key, bool first)
{
	if (!first)
		jb_raw(b, ",", 1);
	jb_string(b, key);
	jb_raw(b, ":", 1);
}

static void jb_number(struct jbuf *b, double v)
{
	char text[64];
	size_t n = mh_records_format_number(v, text);

	if (!n) {
		/* The rare number the fast way leaves to cJSON. */
		cJSON *num = cJSON_CreateNumber(v);
		if (!num || !cJSON_PrintPreallocated(num, text, sizeof(text), false)) {
			cJSON_Delete(num);
			b->oom = true;
			return;
		}
		cJSON_Delete(num);
		n = strlen(text);
	}
	jb_raw(b, text, n);
}

int mh_records_reading(struct mh_outbox *outbox, struct mh_job *job)
{
	const struct mh_meter *m = job->meter;
	const struct mh_reading *r = &job->reading;
	const struct mh_profile *profile = m->cfg->profile;
	char ts[40], read_at[40], subtopic[96], stack[1024];
	struct jbuf b = { .p = stack, .cap = sizeof(stack) };
	bool first = true;
	int rc;

	/* No codec gives a value JSON cannot carry; should one ever, it is caught here. */
	if (mh_records_guard(&job->reading, profile))
		mh_log_err(BUS, "%s: meter %s: %s", m->bus_cfg->name, m->cfg->id, r->error);
	mh_schedule_format_boundary(job->due_ms, job->interval_ms, ts, sizeof(ts));
	mh_schedule_format(r->read_at_ms, true, read_at, sizeof(read_at));
	jb_raw(&b, "{", 1);
	jb_key(&b, "seq", true);
	jb_number(&b, (double)mh_outbox_next_seq(outbox));
	jb_key(&b, "meter", false);
	jb_string(&b, m->cfg->id);
	jb_key(&b, "ts", false);
	jb_string(&b, ts);
	jb_key(&b, "quality", false);
	jb_string(&b, mh_quality_name(r->quality));
	jb_key(&b, "values", false);
	jb_raw(&b, "{", 1);
	for (size_t i = 0; i < r->n_values; i++) {
		if (!r->valid[i])
			continue;
		jb_key(&b, profile->points[i].name, first);
		jb_number(&b, r->values[i]);
		first = false;
	}
	jb_raw(&b, "}", 1);
	jb_key(&b, "read_at", false);
	jb_string(&b, read_at);
	if (job->late) {
		jb_key(&b, "late", false);
		jb_raw(&b, "true", 4);
	}
	if (r->quality != MH_QUALITY_GOOD) {
		jb_key(&b, "error", false);
		jb_string(&b, r->error);
	}
	jb_key(&b, "bus", false);
	jb_string(&b, m->bus_cfg->name);
	jb_key(&b, "duration_ms", false);
	jb_number(&b, r->duration_ms);
	jb_raw(&b, "}", 1);
	snprintf(subtopic, sizeof(subtopic), "reading/%s", m->cfg->id);
	rc = b.oom ? -ENOMEM
		   : mh_outbox_append(outbox, MH_RECORD_READING, r->read_at_ms, subtopic, b.p, b.len);
	if (rc < 0)
		mh_log_err(STORE, "%s record not stored: %s", subtopic, strerror(-rc));
	free(b.heap);
	return rc;
}
