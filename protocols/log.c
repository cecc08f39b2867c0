// SPDX-License-Identifier: MIT
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int max_level = LOG_INFO;
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

void mh_log_set_level(int level)
{
	max_level = level;
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

void mh_log(int level, enum mh_log_sub sub, const char *fmt, ...)
{
	char line[1024];
	int n;
	va_list ap;

	if (level > max_level)
		return;
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
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	/* One fprintf per line keeps lines from different threads whole. */
	fprintf(stderr, "%s\n", line);
}
