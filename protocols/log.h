/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdlib.h>
#include <syslog.h>

/* Subsystems a log line can belong to; the names appear in every line. */
enum mh_log_sub {
	MH_LOG_MAIN,
	MH_LOG_BUS,
	MH_LOG_DLT645,
	MH_LOG_MODBUS,
	MH_LOG_MQTT,
	MH_LOG_STORE,
	MH_LOG_CMD,
	MH_LOG_CONFIG,
	MH_LOG_SCHED,
	MH_LOG_CLOCK,
	MH_LOG_SUB_COUNT,
};

/* Set the most verbose syslog level that is printed (default LOG_INFO). */
void mh_log_set_level(int level);

/*
 * The syslog level named @name: "err" (or "error", as lines print it),
 * "warning", "notice", "info" or "debug". Returns the LOG_* value, or
 * -EINVAL for any other name.
 */
int mh_log_level_parse(const char *name);

/* The names mh_log_level_parse() takes, for messages: "err, warning, ... or debug". */
extern const char mh_log_level_names[];

/* Whether a line of @level would be printed; lets callers skip expensive formatting. */
bool mh_log_enabled(int level);

/*
 * Print one line to stderr. Under journald (JOURNAL_STREAM set) the line
 * carries a "<N>" syslog prefix so the journal keeps the level; otherwise a
 * UTC timestamp and the level name. Safe to call from any thread.
 */
__attribute__((format(printf, 3, 4))) void mh_log(int level, enum mh_log_sub sub,
	const char *fmt, ...);

#define mh_log_err(sub, ...) mh_log(LOG_ERR, MH_LOG_##sub, __VA_ARGS__)
#define mh_log_warn(sub, ...) mh_log(LOG_WARNING, MH_LOG_##sub, __VA_ARGS__)
#define mh_log_notice(sub, ...) mh_log(LOG_NOTICE, MH_LOG_##sub, __VA_ARGS__)
#define mh_log_info(sub, ...) mh_log(LOG_INFO, MH_LOG_##sub, __VA_ARGS__)
#define mh_log_debug(sub, ...)                                                                     \
	do {                                                                                       \
		if (mh_log_enabled(LOG_DEBUG))                                                     \
			mh_log(LOG_DEBUG, MH_LOG_##sub, __VA_ARGS__);                              \
	} while (0)

/*
 * Fatal check for broken invariants (never for bad input): logs the
 * expression and location, then aborts.
 */
#define mh_require(expr)                                                                           \
	do {                                                                                       \
		if (__builtin_expect(!(expr), 0)) {                                                \
			mh_log(LOG_CRIT, MH_LOG_MAIN, "invariant failed: %s (%s:%d)", #expr,       \
				__FILE__, __LINE__);                                               \
			abort();                                                                   \
		}                                                                                  \
	} while (0)
