// SPDX-License-Identifier: MIT
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ALL_SUBS ((1u << MH_LOG_SUB_COUNT) - 1)
/* Bytes of a frame shown in one line: a whole Modbus ADU (256) fits. */
#define FRAME_SHOWN 300

static atomic_int max_level = LOG_INFO;
/*
 * Bit s: every line of subsystem s is printed, debug included: the ones
 * chosen with mh_log_set_debug(), or all of them at level LOG_DEBUG, so
 * that one load answers mh_log_debug_on().
 */
static atomic_uint chosen_subs, debug_subs;
static atomic_int journal = -1;

static const char *const sub_names[MH_LOG_SUB_COUNT] = {
	[MH_LOG_MAIN] = "MAIN",
	[MH_LOG_BUS] = "BUS",
	[MH_LOG_DLT645] = "DLT645",
	[MH_LOG_MODBUS] = "MODBUS",
	[MH_LOG_MQTT] = "MQTT",
	[MH_LOG_STORE] = "STORE",
	[MH_LOG_CMD] = "CMD",
	[MH_LOG_CONFIG] = "CONFIG",
	[MH_LOG_SCHED] = "SCHED",
	[MH_LOG_CLOCK] = "CLOCK",
};

static const char *const level_names[] = {
	"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void mh_explain(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (!buf || !cap)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
}

void mh_log_set_level(int level)
{
	max_level = level;
	debug_subs = chosen_subs | (level >= LOG_DEBUG ? ALL_SUBS : 0);
}

void mh_log_set_debug(enum mh_log_sub sub)
{
	chosen_subs |= sub >= MH_LOG_SUB_COUNT ? ALL_SUBS : 1u << sub;
	debug_subs = chosen_subs | (max_level >= LOG_DEBUG ? ALL_SUBS : 0);
}

const char mh_log_sub_names[] =
	"main, bus, dlt645, modbus, mqtt, store, cmd, config, sched, clock or all";

int mh_log_sub_parse(const char *name)
{
	if (!strcmp(name, "all"))
		return MH_LOG_SUB_COUNT;
	for (int s = 0; s < MH_LOG_SUB_COUNT; s++)
		if (!strcasecmp(name, sub_names[s]))
			return s;
	return -EINVAL;
}

const char mh_log_level_names[] = "err, warning, notice, info or debug";

int mh_log_level_parse(const char *name)
{
	/* The levels worth choosing; emerg, alert and crit would hide the errors too. */
	static const struct {
		const char *name;
		int level;
	} levels[] = {
		{ "err", LOG_ERR },
		{ "error", LOG_ERR },
		{ "warning", LOG_WARNING },
		{ "notice", LOG_NOTICE },
		{ "info", LOG_INFO },
		{ "debug", LOG_DEBUG },
	};

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (!strcmp(name, levels[i].name))
			return levels[i].level;
	return -EINVAL;
}

bool mh_log_enabled(int level)
{
	return level <= max_level;
}

bool mh_log_debug_on(enum mh_log_sub sub)
{
	return atomic_load_explicit(&debug_subs, memory_order_relaxed) & (1u << sub);
}

bool mh_log_frames_on(enum mh_log_sub proto)
{
	return atomic_load_explicit(&debug_subs, memory_order_relaxed) &
	       ((1u << proto) | (1u << MH_LOG_BUS));
}

/* Print one line, already chosen to be printed. */
__attribute__((format(printf, 3, 0))) static void emit(int level, enum mh_log_sub sub,
	const char *fmt, va_list ap)
{
	char line[1536];
	int n;

	if (journal < 0)
		journal = getenv("JOURNAL_STREAM") != NULL;
	if (level < 0 || level > LOG_DEBUG)
		level = LOG_ERR;

	if (journal) {
		n = snprintf(line, sizeof(line), "<%d>[%s] ", level, sub_names[sub]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], sub_names[sub]);
	}
	if (n >= 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* One fprintf per line keeps lines from different threads whole. */
	fprintf(stderr, "%s\n", line);
}

void mh_log(int level, enum mh_log_sub sub, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level && !mh_log_debug_on(sub))
		return;
	va_start(ap, fmt);
	emit(level, sub, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void emit_debug(enum mh_log_sub sub,
	const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOG_DEBUG, sub, fmt, ap);
	va_end(ap);
}

void mh_log_frame(enum mh_log_sub proto, const char *device, const char *dir, const uint8_t *p,
	size_t n, const char *note)
{
	static const char digits[] = "0123456789ABCDEF";
	char hex[3 * FRAME_SHOWN + 1], more[40] = "";
	size_t shown = n < FRAME_SHOWN ? n : FRAME_SHOWN, k = 0;

	if (!mh_log_frames_on(proto))
		return;
	if (!p) {
		emit_debug(proto, "%s: %s (%s)", device, dir, note ? note : "bytes not known");
		return;
	}
	for (size_t i = 0; i < shown; i++) {
		hex[k++] = ' ';
		hex[k++] = digits[p[i] >> 4];
		hex[k++] = digits[p[i] & 15];
	}
	hex[k] = '\0';
	if (shown < n)
		snprintf(more, sizeof(more), " ... (%zu more)", n - shown);
	/* Under -v bus the line is printed although its own subsystem may be quiet. */
	emit_debug(proto, "%s: %s %zu bytes%s%s%s%s%s%s", device, dir, n, shown ? ":" : "", hex,
		more, note ? " (" : "", note ? note : "", note ? ")" : "");
}
