/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/*
 * Write a message into @buf (@cap bytes) for a caller that asked why
 * something was refused; a NULL @buf or a zero @cap asks for nothing.
 */
__attribute__((format(printf, 3, 4))) void mh_explain(char *buf, size_t cap, const char *fmt,
	...);

/* Set the most verbose syslog level that is printed (default LOG_INFO). */
void mh_log_set_level(int level);

/*
 * Print every line of @sub, debug included, whatever the level says;
 * MH_LOG_SUB_COUNT does so for every subsystem (as level LOG_DEBUG does).
 * Set before the threads start; safe to call from any thread.
 */
void mh_log_set_debug(enum mh_log_sub sub);

/*
 * The subsystem named @name, in lower case as the -v option takes it ("bus",
 * "dlt645", ...), MH_LOG_SUB_COUNT for "all", or -EINVAL for any other name.
 */
int mh_log_sub_parse(const char *name);

/* The names mh_log_sub_parse() takes, for messages: "main, bus, ... or all". */
extern const char mh_log_sub_names[];

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

/* Whether debug lines of @sub are printed: one atomic load, for hot paths. */
bool mh_log_debug_on(enum mh_log_sub sub);

/*
 * Whether the frames a link of protocol @proto (MH_LOG_DLT645, MH_LOG_MODBUS)
 * sends and receives are logged: debug is on for @proto or for MH_LOG_BUS.
 * As cheap as mh_log_debug_on(); a link asks before it formats anything.
 */
bool mh_log_frames_on(enum mh_log_sub proto);

/*
 * Log the bytes of one frame at debug under @proto, whenever
 * mh_log_frames_on(@proto): "DEVICE: DIR N bytes: 68 01 ... 16 (NOTE)".
 * @dir is "tx" or "rx"; @note (may be NULL) says what became of an
 * exchange that failed. @p NULL: bytes came, but which is not known; the
 * line gives only @note. Very long frames are cut after 300 bytes, and the
 * line says how many more there were.
 */
void mh_log_frame(enum mh_log_sub proto, const char *device, const char *dir, const uint8_t *p,
	size_t n, const char *note);

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
		if (mh_log_debug_on(MH_LOG_##sub))                                                 \
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
