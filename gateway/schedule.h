/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Clock-aligned boundaries: with interval 15m the boundaries are :00 :15 :30
 * :45 of local time in the process time zone (TZ, set from gateway.timezone),
 * counted from each local midnight. Pure functions of the time they are given,
 * so tests pass any clock they like.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the epoch of the first boundary strictly after @now_ms. */
int64_t mh_schedule_next(int64_t now_ms, unsigned interval_ms);

/* The boundary at or before @now_ms (the interval @now_ms belongs to). */
int64_t mh_schedule_current(int64_t now_ms, unsigned interval_ms);

/* A failed boundary read is retried at most this often within its window (补抄). */
#define MH_SCHEDULE_MAX_RETRIES 2

/*
 * When to retry a boundary's read that failed at @now_ms, after @attempt
 * retries, a read taking about @read_ms: a quarter interval later, so a
 * meter busy for a moment gets another chance, but only when the retry
 * ends well before @next_ms (the next boundary is never delayed). Returns
 * the wall time of the retry, or 0 when there is none.
 */
int64_t mh_schedule_retry_at(int64_t now_ms, int64_t next_ms, unsigned interval_ms,
	unsigned attempt, unsigned read_ms);

/* Write @ms as RFC 3339 UTC ("2026-11-22T03:45:00Z", or with ".123" milliseconds). */
void mh_schedule_format(int64_t ms, bool with_ms, char *out, size_t len);

/* A boundary of @interval_ms: with milliseconds only for lab intervals that have them. */
void mh_schedule_format_boundary(int64_t ms, unsigned interval_ms, char *out, size_t len);
