/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The edges of a protect window (保电期, key commands.protect_windows): a
 * date "YYYY-MM-DD" of the gateway's local calendar, or an RFC 3339 time
 * with its offset ("2027-06-01T08:00:00+08:00", fractional seconds and Z
 * allowed). Parsing and ordering are pure; only resolving a date into an
 * instant needs the time zone, and takes the process's current TZ.
 */

#include <stdbool.h>
#include <stdint.h>

struct mh_window_edge {
	bool is_date;
	int year, month, day; /* the date as written (a time's date at its own offset) */
	int64_t ms;           /* a time: milliseconds since the epoch */
	int offset_min;       /* a time: the offset it was written with */
};

/* An RFC 3339 time: the instant, and the date and offset it was written with. */
struct mh_rfc3339 {
	int64_t ms;     /* milliseconds since the epoch (fractions past them dropped) */
	int offset_min; /* "+08:00" is 480 */
	int year, month, day;
};

/*
 * Parse a strict RFC 3339 date-time (section 5.6: "2027-06-01T08:00:00Z",
 * "...T08:00:00.5+08:00"; "t" and "z" too; no leap second) into @t.
 * Returns 0 or -EINVAL.
 */
int mh_rfc3339_parse(const char *text, struct mh_rfc3339 *t);

/*
 * Parse @text into @e: a date from 1970-01-01 to 9999-12-31, or an RFC 3339
 * time in those years with "Z" or "+HH:MM" / "-HH:MM". Returns 0 or -EINVAL.
 */
int mh_window_edge_parse(const char *text, struct mh_window_edge *e);

/*
 * Whether a window from @from to @to is in order (from <= to; equal dates
 * are one whole day). A date against a time is compared with the time's
 * date at its own offset, which is the gateway's local date when the time
 * was written in the gateway's zone, as times in a configuration are.
 */
bool mh_window_edge_ordered(const struct mh_window_edge *from, const struct mh_window_edge *to);

/*
 * The instant of @e in milliseconds since the epoch, a date resolved with
 * the current TZ: its local midnight, or when @end the next local midnight
 * (a date "to" includes its whole day). Returns 0, or -EINVAL when the
 * date is past what time_t holds.
 */
int mh_window_edge_resolve(const struct mh_window_edge *e, bool end, int64_t *ms);
