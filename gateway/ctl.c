// SPDX-License-Identifier: MIT
/*
 * meterhub-ctl: the operator's tool, `meterhub-ctl COMMAND [ARGS]`. Each
 * command is a row of the table in main() and parses its own options.
 *
 * status, dump and intervals read the store beside a running daemon and
 * never write it (gateway/inspect.h); they work with the broker down.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cmd.h"
#include "config.h"
#include "inspect.h"
#include "preflight.h"

/* 10000-01-01T00:00:00Z: RFC 3339 has four digits of year. */
#define TIME_LIMIT_MS 253402300800000LL

static void usage(FILE *out)
{
	fprintf(out, "usage: meterhub-ctl COMMAND [ARGS]\n"
		     "\n"
		     "Commands:\n"
		     "  sign           print a signed remote command for the head-end to publish\n"
		     "  status         what the store holds: backlog, use, seq, each bus's last\n"
		     "                 good reading, whether a daemon runs on it\n"
		     "  dump           the records waiting in the store, as JSON lines\n"
		     "  intervals      a meter's interval records over local dates, as a table\n"
		     "                 or CSV\n"
		     "  check-config   validate a configuration, as meterhub --check-config does\n"
		     "\n"
		     "  -h, --help     this text\n"
		     "  -V, --version  print the version and exit\n"
		     "\n"
		     "'meterhub-ctl COMMAND --help' describes the options of COMMAND.\n"
		     "Exit status: 0 on success, 1 when the command failed, 2 on a usage error.\n");
}

/* A usage error of @command (NULL: of meterhub-ctl itself). Returns the exit status, 2. */
__attribute__((format(printf, 2, 3))) static int usage_error(
	const char *command, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "meterhub-ctl%s%s: ", command ? " " : "", command ? command : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'meterhub-ctl %s%s--help' for more information.\n",
		command ? command : "", command ? " " : "");
	return 2;
}

/*
 * The date of day @z counted from 1970-01-01 (H. Hinnant, "chrono-Compatible
 * Low-Level Date Algorithms"), the inverse of the one in cmd.c; no time_t,
 * so an expiry after 2038 is right where time_t has 32 bits.
 */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, yoe, doe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* Unix ms as RFC 3339 UTC, with milliseconds only when there are some. */
static void format_utc(int64_t ms, char out[48])
{
	int64_t days = (ms >= 0 ? ms : ms - 86399999) / 86400000, year;
	int64_t in_day = ms - days * 86400000;
	unsigned month, day, sec = (unsigned)(in_day / 1000);
	int n;

	civil_from_days(days, &year, &month, &day);
	n = snprintf(out, 48, "%04lld-%02u-%02uT%02u:%02u:%02u", (long long)year, month, day,
		sec / 3600, sec / 60 % 60, sec % 60);
	if (in_day % 1000)
		snprintf(out + n, (size_t)(48 - n), ".%03uZ", (unsigned)(in_day % 1000));
	else
		snprintf(out + n, (size_t)(48 - n), "Z");
}

/* The command as one line of JSON; @sig NULL leaves it out. NULL when out of memory. */
static char *command_json(const char *id, const char *meter, const char *action, const char *ts,
	const char *expires, const char *block, const char *sig)
{
	cJSON *obj = cJSON_CreateObject();
	char *json = NULL;

	if (obj && cJSON_AddStringToObject(obj, "id", id) &&
		cJSON_AddStringToObject(obj, "meter", meter) &&
		cJSON_AddStringToObject(obj, "action", action) &&
		cJSON_AddStringToObject(obj, "ts", ts) &&
		cJSON_AddStringToObject(obj, "expires", expires) &&
		(!block || cJSON_AddStringToObject(obj, "block", block)) &&
		(!sig || cJSON_AddStringToObject(obj, "sig", sig)))
		json = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return json;
}

static void sign_usage(FILE *out)
{
	fprintf(out,
		"usage: meterhub-ctl sign --key FILE --id ID --meter METER --action ACTION\n"
		"                         [--ts TIME] [--expires TIME | --ttl DURATION] [--block "
		"HEX]\n"
		"\n"
		"Print a remote command signed with the gateway's HMAC key, as one line of\n"
		"JSON for the head-end to publish on <topic_prefix>/cmd.\n"
		"\n"
		"  --key FILE         the HMAC key (commands.hmac_key_file); refused when\n"
		"                     group or others may read it\n"
		"  --id ID            the command's id, 1..64 of [A-Za-z0-9._:-], never reused\n"
		"  --meter METER      the meter's id in the gateway's configuration\n"
		"  --action ACTION    trip, restore, keep_power, cancel_keep_power, alarm_on,\n"
		"                     alarm_off or recall\n"
		"  --ts TIME          when the command was made, RFC 3339 (default: now, UTC)\n"
		"  --expires TIME     when it lapses, RFC 3339 (default: --ttl after --ts)\n"
		"  --ttl DURATION     how long it stays valid: 30s, 5m, 1h (default 1h)\n"
		"  --block HEX        the whole 0x1C data field for an ESAM meter, 2..400 hex\n"
		"                     digits, sent to the meter unchanged\n"
		"  -h, --help         this text\n");
}

enum sign_option {
	O_KEY = 0x100,
	O_ID,
	O_METER,
	O_ACTION,
	O_TS,
	O_EXPIRES,
	O_TTL,
	O_BLOCK,
	O_END,
};

static int cmd_sign(int argc, char **argv)
{
	static const struct option options[] = {
		{"key", required_argument, NULL, O_KEY},
		{"id", required_argument, NULL, O_ID},
		{"meter", required_argument, NULL, O_METER},
		{"action", required_argument, NULL, O_ACTION},
		{"ts", required_argument, NULL, O_TS},
		{"expires", required_argument, NULL, O_EXPIRES},
		{"ttl", required_argument, NULL, O_TTL},
		{"block", required_argument, NULL, O_BLOCK},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const enum sign_option required[] = {O_KEY, O_ID, O_METER, O_ACTION};
	const char *arg[O_END - O_KEY] = {0};
	char ts[48], expires[48], sig[65], detail[160], err[512];
	uint64_t ttl_ms;
	int64_t ts_ms, expires_ms;
	uint8_t key[512];
	size_t key_len, a;
	struct timespec now;
	struct mh_cmd parsed;
	enum mh_cmd_reason reason;
	char *json;
	int opt, rc;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			sign_usage(stdout);
			return 0;
		case ':':
			return usage_error("sign", "option '%s' needs a value", argv[optind - 1]);
		case '?':
			if (optopt)
				return usage_error("sign", "unknown option '-%c'", optopt);
			return usage_error("sign", "unknown option '%s'", argv[optind - 1]);
		default:
			if (arg[opt - O_KEY])
				return usage_error(
					"sign", "--%s given twice", options[opt - O_KEY].name);
			arg[opt - O_KEY] = optarg;
		}
	}
	if (optind < argc)
		return usage_error("sign", "unexpected argument '%s'", argv[optind]);
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!arg[required[i] - O_KEY])
			return usage_error(
				"sign", "--%s is required", options[required[i] - O_KEY].name);
	if (arg[O_EXPIRES - O_KEY] && arg[O_TTL - O_KEY])
		return usage_error("sign", "give --expires or --ttl, not both");

	/* The gateway would take any action string and reject all but these, unexecuted. */
	for (a = 0; a < MH_CMD_ACTIONS; a++)
		if (!strcmp(arg[O_ACTION - O_KEY], mh_cmd_action_name((enum mh_cmd_action)a)))
			break;
	if (a == MH_CMD_ACTIONS)
		return usage_error("sign",
			"--action: \"%s\" is not one of trip, restore, keep_power, "
			"cancel_keep_power, alarm_on, alarm_off or recall",
			arg[O_ACTION - O_KEY]);

	if (arg[O_TS - O_KEY]) {
		if (mh_cmd_time_parse(arg[O_TS - O_KEY], &ts_ms) < 0)
			return usage_error("sign",
				"--ts: \"%s\" is not an RFC 3339 time (2026-11-22T03:45:00Z, "
				"2026-11-22T11:45:00+08:00)",
				arg[O_TS - O_KEY]);
		snprintf(ts, sizeof(ts), "%s", arg[O_TS - O_KEY]);
	} else {
		clock_gettime(CLOCK_REALTIME, &now);
		ts_ms = (int64_t)now.tv_sec * 1000;
		format_utc(ts_ms, ts);
	}
	if (arg[O_EXPIRES - O_KEY]) {
		if (mh_cmd_time_parse(arg[O_EXPIRES - O_KEY], &expires_ms) < 0)
			return usage_error("sign", "--expires: \"%s\" is not an RFC 3339 time",
				arg[O_EXPIRES - O_KEY]);
		snprintf(expires, sizeof(expires), "%s", arg[O_EXPIRES - O_KEY]);
	} else {
		const char *ttl = arg[O_TTL - O_KEY] ? arg[O_TTL - O_KEY] : "1h";

		if (mh_config_parse_duration(ttl, &ttl_ms) < 0)
			return usage_error("sign",
				"--ttl: \"%s\" is not a duration (a whole number with ms, s, m or "
				"h, e.g. 30s, 5m, 1h)",
				ttl);
		if (ttl_ms == 0 || ttl_ms >= (uint64_t)(TIME_LIMIT_MS - ts_ms))
			return usage_error("sign", "--ttl: %s is not a validity after %s", ttl, ts);
		expires_ms = ts_ms + (int64_t)ttl_ms;
		format_utc(expires_ms, expires);
	}
	if (expires_ms <= ts_ms)
		return usage_error("sign",
			"--expires: %s is not after %s; the gateway would reject the command as "
			"expired",
			expires, ts);

	/* Checked as the gateway checks it, before the key is touched. */
	json = command_json(arg[O_ID - O_KEY], arg[O_METER - O_KEY], arg[O_ACTION - O_KEY], ts,
		expires, arg[O_BLOCK - O_KEY], NULL);
	if (!json) {
		fprintf(stderr, "meterhub-ctl sign: out of memory\n");
		return 1;
	}
	reason = mh_cmd_parse(json, strlen(json), &parsed, detail, sizeof(detail));
	free(json);
	if (reason != MH_CMD_OK)
		return usage_error("sign", "the gateway would reject the command as %s: %s",
			mh_cmd_reason_name(reason), detail);

	rc = mh_cmd_key_load(arg[O_KEY - O_KEY], key, sizeof(key), &key_len, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "meterhub-ctl sign: %s\n", err);
		return 1;
	}
	rc = mh_cmd_sign(key, key_len, arg[O_ID - O_KEY], arg[O_METER - O_KEY],
		arg[O_ACTION - O_KEY], ts, expires, arg[O_BLOCK - O_KEY], sig);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc < 0) {
		fprintf(stderr, "meterhub-ctl sign: HMAC failed: %s\n", strerror(-rc));
		return 1;
	}
	json = command_json(arg[O_ID - O_KEY], arg[O_METER - O_KEY], arg[O_ACTION - O_KEY], ts,
		expires, arg[O_BLOCK - O_KEY], sig);
	if (!json) {
		fprintf(stderr, "meterhub-ctl sign: out of memory\n");
		return 1;
	}
	printf("%s\n", json);
	free(json);
	/* A command that did not reach stdout in full must not look signed. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "meterhub-ctl sign: writing the command: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

/* ---- reading the store ---------------------------------------------------- */

/* Options of the commands below; -c is the one short option they share. */
enum store_option {
	S_CONFIG = 'c',
	S_STORE = 0x200,
	S_JSON,
	S_FROM,
	S_TO,
	S_TYPE,
	S_METER,
	S_CSV,
};

/* getopt_long's verdict on an option it did not take, as a usage error of @command. */
static int option_error(const char *command, int opt, char **argv)
{
	if (opt == ':')
		return usage_error(command, "option '%s' needs a value", argv[optind - 1]);
	if (optopt)
		return usage_error(command, "unknown option '-%c'", optopt);
	return usage_error(command, "unknown option '%s'", argv[optind - 1]);
}

/* Take an option's value once: a second one is a usage error. Returns 0, or the exit status 2. */
static int take_once(const char *command, const char *name, const char **slot)
{
	if (*slot)
		return usage_error(command, "%s given twice", name);
	*slot = optarg;
	return 0;
}

/*
 * Load @file as the daemon does, saying what is wrong as `meterhub
 * --check-config` says it. Returns 0 and *@cfg, or the exit status, 1.
 */
static int load_config(const char *file, struct mh_config **cfg)
{
	int rc = mh_config_load(file, NULL, NULL, cfg);

	if (rc == -EINVAL) {
		fprintf(stderr, "%s: configuration not valid\n", file);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: cannot read the configuration: %s\n", file, strerror(-rc));
		return 1;
	}
	return 0;
}

/* Open the store in @path for @command. Returns 0 and *@in, or the exit status, 1. */
static int open_store(const char *command, const char *path, uint64_t max_bytes,
	struct mh_inspect **in)
{
	char why[1024] = "";
	int rc = mh_inspect_open(path, max_bytes, in, why, sizeof(why));

	if (rc < 0) {
		fprintf(stderr, "meterhub-ctl %s: %s\n", command, *why ? why : strerror(-rc));
		return 1;
	}
	return 0;
}

/* Output that did not reach stdout in full is a failure, not a short answer. */
static int flush_output(const char *command)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "meterhub-ctl %s: writing the output: %s\n", command,
			strerror(errno));
		return 1;
	}
	return 0;
}

static int64_t wall_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Whole seconds from @then_ms to @now_ms; a time ahead of this clock is 0 s old. */
static int64_t age_s(int64_t now_ms, int64_t then_ms)
{
	return now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;
}

/* "45s", "3m12s", "2h05m", "3d04h". */
static void format_age(int64_t s, char *out, size_t len)
{
	if (s < 60)
		snprintf(out, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(out, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
	else
		snprintf(out, len, "%lldd%02lldh", (long long)(s / 86400),
			(long long)(s / 3600 % 24));
}

/* "512 B", "1.2 MiB". */
static void format_bytes(uint64_t b, char *out, size_t len)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	size_t u = 0;

	if (b < 1024) {
		snprintf(out, len, "%llu B", (unsigned long long)b);
		return;
	}
	for (v /= 1024; v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0]); v /= 1024)
		u++;
	snprintf(out, len, "%.1f %s", v, units[u]);
}

/* A string as a JSON string, quotes included. */
static void put_json_string(const char *s, FILE *out)
{
	putc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			putc(c, out);
	}
	putc('"', out);
}

/* ---- status --------------------------------------------------------------- */

static void status_usage(FILE *out)
{
	fprintf(out,
		"usage: meterhub-ctl status (-c FILE | --store DIR) [--json]\n"
		"\n"
		"What the gateway's store holds, read beside the running daemon without\n"
		"disturbing it: the records waiting for the broker and the oldest one's age,\n"
		"records by type, store use, the last and next seq, each bus's last good\n"
		"reading, and whether a daemon holds the store. Works with the broker down.\n"
		"Records the broker acknowledged are deleted and not counted.\n"
		"\n"
		"  -c, --config FILE  the gateway's configuration (store.path and the buses)\n"
		"      --store DIR    the store directory, without a configuration\n"
		"      --json         one JSON object, for machines\n"
		"  -h, --help         this text\n");
}

/* A meter's last good reading: the newer of its newest good reading record and its builder. */
static int64_t meter_last_good(const struct mh_inspect_meter *m, bool *from_builder)
{
	*from_builder = m->builder_ms > m->reading_ms;
	return *from_builder ? m->builder_ms : m->reading_ms;
}

static void add_time_or_null(cJSON *obj, const char *key, int64_t ms)
{
	char t[48];

	if (!ms) {
		cJSON_AddNullToObject(obj, key);
		return;
	}
	format_utc(ms, t);
	cJSON_AddStringToObject(obj, key, t);
}

/* "configured": whether the configuration names it, or null without one. */
static void add_configured(cJSON *obj, bool configured, bool have_config)
{
	if (have_config)
		cJSON_AddBoolToObject(obj, "configured", configured);
	else
		cJSON_AddNullToObject(obj, "configured");
}

static char *status_json(const char *path, const struct mh_inspect_status *st, bool have_config,
	int64_t now)
{
	cJSON *obj = cJSON_CreateObject(), *o, *list;
	char t[48];
	char *json;

	if (!obj)
		return NULL;
	format_utc(now, t);
	cJSON_AddStringToObject(obj, "ts", t);
	cJSON_AddStringToObject(obj, "path", path);
	o = cJSON_AddObjectToObject(obj, "daemon");
	if (o) {
		if (st->held < 0)
			cJSON_AddNullToObject(o, "running");
		else
			cJSON_AddBoolToObject(o, "running", st->held == 1);
		if (st->pid)
			cJSON_AddNumberToObject(o, "pid", (double)st->pid);
		else
			cJSON_AddNullToObject(o, "pid");
	}
	/* The names of health's "store", so one parser reads both. */
	o = cJSON_AddObjectToObject(obj, "store");
	if (o) {
		cJSON_AddNumberToObject(o, "backlog", (double)st->backlog);
		if (st->oldest_seq) {
			cJSON_AddNumberToObject(o, "oldest_seq", (double)st->oldest_seq);
			add_time_or_null(o, "oldest_ts", st->oldest_ms);
			cJSON_AddNumberToObject(o, "oldest_age_s",
				(double)age_s(now, st->oldest_ms));
		} else {
			cJSON_AddNullToObject(o, "oldest_seq");
			cJSON_AddNullToObject(o, "oldest_ts");
			cJSON_AddNullToObject(o, "oldest_age_s");
		}
		cJSON_AddNumberToObject(o, "used_bytes", (double)st->used_bytes);
		if (st->max_bytes) {
			cJSON_AddNumberToObject(o, "max_bytes", (double)st->max_bytes);
			cJSON_AddNumberToObject(o, "use",
				(double)st->used_bytes / (double)st->max_bytes);
		} else {
			cJSON_AddNullToObject(o, "max_bytes");
			cJSON_AddNullToObject(o, "use");
		}
		cJSON_AddNumberToObject(o, "map_bytes", (double)st->map_bytes);
		cJSON_AddNumberToObject(o, "map_used_bytes", (double)st->map_used_bytes);
	}
	o = cJSON_AddObjectToObject(obj, "records");
	for (int k = 0; o && k < MH_INSPECT_KINDS; k++)
		if (k != MH_INSPECT_OTHER || st->by_kind[k])
			cJSON_AddNumberToObject(o, mh_inspect_kind_name((enum mh_inspect_kind)k),
				(double)st->by_kind[k]);
	o = cJSON_AddObjectToObject(obj, "seq");
	if (o) {
		if (st->next_seq > 1)
			cJSON_AddNumberToObject(o, "last", (double)(st->next_seq - 1));
		else
			cJSON_AddNullToObject(o, "last");
		cJSON_AddNumberToObject(o, "next", (double)st->next_seq);
	}
	list = cJSON_AddArrayToObject(obj, "buses");
	for (size_t i = 0; list && i < st->n_buses; i++) {
		const struct mh_inspect_bus *b = &st->buses[i];
		cJSON *e = cJSON_CreateObject();
		if (!e)
			break;
		cJSON_AddStringToObject(e, "name", b->name);
		add_configured(e, b->configured, have_config);
		add_time_or_null(e, "last_good", b->last_good_ms);
		if (b->last_good_ms) {
			cJSON_AddNumberToObject(e, "last_good_age_s",
				(double)age_s(now, b->last_good_ms));
			cJSON_AddStringToObject(e, "meter", b->meter);
			cJSON_AddStringToObject(e, "source",
				b->from_builder ? "intervals" : "outbox");
		}
		cJSON_AddItemToArray(list, e);
	}
	list = cJSON_AddArrayToObject(obj, "meters");
	for (size_t i = 0; list && i < st->n_meters; i++) {
		const struct mh_inspect_meter *m = &st->meters[i];
		cJSON *e = cJSON_CreateObject();
		bool from_builder;
		int64_t last = meter_last_good(m, &from_builder);
		if (!e)
			break;
		cJSON_AddStringToObject(e, "id", m->id);
		if (m->bus)
			cJSON_AddStringToObject(e, "bus", m->bus);
		else
			cJSON_AddNullToObject(e, "bus");
		add_configured(e, m->configured, have_config);
		add_time_or_null(e, "last_good", last);
		if (last)
			cJSON_AddStringToObject(e, "source", from_builder ? "intervals" : "outbox");
		add_time_or_null(e, "outbox_good", m->reading_ms);
		add_time_or_null(e, "intervals_good", m->builder_ms);
		cJSON_AddItemToArray(list, e);
	}
	json = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return json;
}

/* "rs485-1  last good reading 2026-11-24T01:15:00Z, 12s ago (m-0003)" */
static void print_last_good(int width, const char *label, int64_t last, const char *meter,
	bool from_builder, bool configured, int64_t now)
{
	char t[48], age[32];

	printf("%-*s  ", width, label);
	if (!last) {
		printf("no good reading known%s\n",
			configured ? "" : " (not in the configuration)");
		return;
	}
	format_utc(last - last % 1000, t);
	format_age(age_s(now, last), age, sizeof(age));
	printf("last good reading %s, %s ago (%s%s)%s\n", t, age, meter,
		from_builder ? ", from its interval builder" : "",
		configured ? "" : " (not in the configuration)");
}

static void status_text(const char *path, const struct mh_inspect_status *st, bool have_config,
	int64_t now)
{
	char a[32], b[32], t[48], label[160];
	int width = 9;
	bool first = true;

	for (size_t i = 0; i < st->n_buses; i++) {
		int w = (int)strlen(st->buses[i].name) + 4;
		if (w > width)
			width = w;
	}
	for (size_t i = 0; i < st->n_meters; i++) {
		int w = (int)strlen(st->meters[i].id) + 6;
		if (!st->meters[i].bus && w > width)
			width = w;
	}
	printf("%-*s  %s\n", width, "store", path);
	printf("%-*s  ", width, "daemon");
	if (st->held == 1 && st->pid)
		printf("running, pid %ld\n", st->pid);
	else if (st->held == 1)
		printf("running\n");
	else if (st->held == 0)
		printf("not running\n");
	else
		printf("cannot tell: %s\n", strerror(-st->held));
	printf("%-*s  %" PRIu64 " record%s waiting for the broker\n", width, "backlog",
		st->backlog, st->backlog == 1 ? "" : "s");
	if (st->oldest_seq) {
		format_utc(st->oldest_ms - st->oldest_ms % 1000, t);
		format_age(age_s(now, st->oldest_ms), a, sizeof(a));
		printf("%-*s  seq %" PRIu64 ", stored %s, %s ago\n", width, "oldest",
			st->oldest_seq, t, a);
	}
	printf("%-*s  ", width, "records");
	for (int k = 0; k < MH_INSPECT_KINDS; k++) {
		if (k == MH_INSPECT_OTHER && !st->by_kind[k])
			continue;
		printf("%s%s %" PRIu64, first ? "" : ", ",
			mh_inspect_kind_name((enum mh_inspect_kind)k), st->by_kind[k]);
		first = false;
	}
	printf("\n");
	format_bytes(st->used_bytes, a, sizeof(a));
	if (st->max_bytes) {
		format_bytes(st->max_bytes, b, sizeof(b));
		printf("%-*s  %s of %s (%.1f%%)\n", width, "store use", a, b,
			100.0 * (double)st->used_bytes / (double)st->max_bytes);
	} else {
		printf("%-*s  %s (store.max_bytes is in the configuration: -c FILE)\n", width,
			"store use", a);
	}
	format_bytes(st->map_used_bytes, a, sizeof(a));
	format_bytes(st->map_bytes, b, sizeof(b));
	printf("%-*s  %s of %s used\n", width, "LMDB map", a, b);
	if (st->next_seq > 1)
		printf("%-*s  last written %" PRIu64 ", next %" PRIu64 "\n", width, "seq",
			st->next_seq - 1, st->next_seq);
	else
		printf("%-*s  none written yet, next 1\n", width, "seq");
	for (size_t i = 0; i < st->n_buses; i++) {
		const struct mh_inspect_bus *bus = &st->buses[i];
		snprintf(label, sizeof(label), "bus %s", bus->name);
		print_last_good(width, label, bus->last_good_ms, bus->meter, bus->from_builder,
			bus->configured || !have_config, now);
	}
	/* Without a configuration, a meter known only from its builder has no bus to go under. */
	for (size_t i = 0; i < st->n_meters; i++) {
		const struct mh_inspect_meter *m = &st->meters[i];
		bool from_builder;
		int64_t last = meter_last_good(m, &from_builder);
		if (m->bus || !last)
			continue;
		snprintf(label, sizeof(label), "meter %s", m->id);
		print_last_good(width, label, last, m->id, from_builder, true, now);
	}
}

static int cmd_status(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, S_CONFIG},
		{"store", required_argument, NULL, S_STORE},
		{"json", no_argument, NULL, S_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *file = NULL, *dir = NULL;
	struct mh_config *cfg = NULL;
	struct mh_inspect *in = NULL;
	struct mh_inspect_status st;
	bool json = false;
	int opt, rc;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			status_usage(stdout);
			return 0;
		case S_CONFIG:
			if (take_once("status", "-c/--config", &file))
				return 2;
			break;
		case S_STORE:
			if (take_once("status", "--store", &dir))
				return 2;
			break;
		case S_JSON:
			json = true;
			break;
		default:
			return option_error("status", opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("status", "unexpected argument '%s'", argv[optind]);
	if (!file == !dir)
		return usage_error("status", "give -c FILE or --store DIR");
	if (file && (rc = load_config(file, &cfg)) != 0)
		return rc;
	rc = open_store("status", cfg ? cfg->store.path : dir, cfg ? cfg->store.max_bytes : 0, &in);
	if (!rc) {
		int64_t now = wall_ms();
		int err = mh_inspect_status(in, cfg, &st);

		if (err < 0) {
			fprintf(stderr, "meterhub-ctl status: reading %s: %s\n",
				cfg ? cfg->store.path : dir, strerror(-err));
			rc = 1;
		} else if (json) {
			char *text =
				status_json(cfg ? cfg->store.path : dir, &st, cfg != NULL, now);
			if (text)
				printf("%s\n", text);
			else
				fprintf(stderr, "meterhub-ctl status: out of memory\n");
			rc = text ? flush_output("status") : 1;
			free(text);
		} else {
			status_text(cfg ? cfg->store.path : dir, &st, cfg != NULL, now);
			rc = flush_output("status");
		}
		mh_inspect_status_deinit(&st);
	}
	mh_inspect_free(in);
	mh_config_free(cfg);
	return rc;
}

/* ---- dump ----------------------------------------------------------------- */

static void dump_usage(FILE *out)
{
	fprintf(out,
		"usage: meterhub-ctl dump -c FILE [--from SEQ] [--to SEQ] [--type TYPE]\n"
		"                         [--meter ID]\n"
		"\n"
		"Print the records waiting in the store, sent or not, as JSON lines in seq\n"
		"order: each is the payload as published, with its topic as one more member,\n"
		"\"topic\", at the end. Read beside the running daemon without disturbing it.\n"
		"\n"
		"  -c, --config FILE  the gateway's configuration (store.path, topic_prefix)\n"
		"      --from SEQ     from this seq on (inclusive)\n"
		"      --to SEQ       up to this seq (inclusive)\n"
		"      --type TYPE    only reading, interval, daily, monthly, event or\n"
		"                     cmd_result records\n"
		"      --meter ID     only the records of this meter\n"
		"  -h, --help         this text\n");
}

struct dump_ctx {
	const char *prefix;
	uint64_t malformed;
};

/* Whether the JSON object @p (@n bytes) has a member "topic" of its own. */
static bool has_topic(const char *p, size_t n)
{
	cJSON *obj;
	bool has;

	if (!memmem(p, n, "\"topic\"", 7))
		return false;
	obj = cJSON_ParseWithLength(p, n);
	has = cJSON_GetObjectItemCaseSensitive(obj, "topic") != NULL;
	cJSON_Delete(obj);
	return has;
}

static int dump_record(void *ud, const struct mh_inspect_record *r)
{
	struct dump_ctx *c = ud;
	const char *p = r->payload;
	size_t n = r->payload_len, inner;
	char topic[1024];

	while (n && (p[n - 1] == ' ' || p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == '\t'))
		n--;
	if (n < 2 || p[0] != '{' || p[n - 1] != '}') {
		fprintf(stderr, "meterhub-ctl dump: seq %" PRIu64 ": the stored payload is not a "
				"JSON object; not shown\n",
			r->seq);
		c->malformed++;
		return 0;
	}
	/* The payload byte for byte, and the topic as its last member. */
	if (has_topic(p, n)) {
		fwrite(p, 1, n, stdout);
		putchar('\n');
	} else {
		for (inner = 1; inner < n - 1 && strchr(" \t\r\n", p[inner]); inner++)
			;
		snprintf(topic, sizeof(topic), "%s/%s", c->prefix, r->subtopic);
		fwrite(p, 1, n - 1, stdout);
		fputs(inner < n - 1 ? ",\"topic\":" : "\"topic\":", stdout);
		put_json_string(topic, stdout);
		fputs("}\n", stdout);
	}
	/* Positive: the walk stops, and the caller tells a write error from a read error. */
	return ferror(stdout) ? 1 : 0;
}

/* A seq as --from/--to take it: a whole number, at least 1. */
static int parse_seq(const char *text, uint64_t *seq)
{
	return mh_config_parse_uint(text, seq) < 0 || *seq == 0 ? -EINVAL : 0;
}

static int cmd_dump(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, S_CONFIG},
		{"from", required_argument, NULL, S_FROM},
		{"to", required_argument, NULL, S_TO},
		{"type", required_argument, NULL, S_TYPE},
		{"meter", required_argument, NULL, S_METER},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct mh_inspect_filter f = { .kind = -1 };
	struct dump_ctx ctx = { 0 };
	const char *file = NULL;
	struct mh_config *cfg = NULL;
	struct mh_inspect *in = NULL;
	int opt, rc;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			dump_usage(stdout);
			return 0;
		case S_CONFIG:
			if (take_once("dump", "-c/--config", &file))
				return 2;
			break;
		case S_FROM:
			if (f.from)
				return usage_error("dump", "--from given twice");
			if (parse_seq(optarg, &f.from) < 0)
				return usage_error(
					"dump", "--from: \"%s\" is not a seq (1 or more)", optarg);
			break;
		case S_TO:
			if (f.to)
				return usage_error("dump", "--to given twice");
			if (parse_seq(optarg, &f.to) < 0)
				return usage_error("dump", "--to: \"%s\" is not a seq (1 or more)",
					optarg);
			break;
		case S_TYPE:
			if (f.kind >= 0)
				return usage_error("dump", "--type given twice");
			f.kind = mh_inspect_kind_parse(optarg);
			if (f.kind < 0)
				return usage_error("dump",
					"--type: \"%s\" is not one of reading, interval, daily, "
					"monthly, event or cmd_result",
					optarg);
			break;
		case S_METER:
			if (take_once("dump", "--meter", &f.meter))
				return 2;
			break;
		default:
			return option_error("dump", opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("dump", "unexpected argument '%s'", argv[optind]);
	if (!file)
		return usage_error("dump", "-c FILE is required");
	if (f.from && f.to && f.from > f.to)
		return usage_error("dump", "--from %" PRIu64 " is after --to %" PRIu64, f.from,
			f.to);
	if ((rc = load_config(file, &cfg)) != 0)
		return rc;
	ctx.prefix = cfg->mqtt.topic_prefix;
	rc = open_store("dump", cfg->store.path, cfg->store.max_bytes, &in);
	if (!rc) {
		int err = mh_inspect_each(in, &f, dump_record, &ctx);

		if (err > 0 || ferror(stdout)) {
			rc = flush_output("dump");
		} else if (err < 0) {
			fprintf(stderr, "meterhub-ctl dump: reading %s: %s\n", cfg->store.path,
				strerror(-err));
			rc = 1;
		} else {
			rc = flush_output("dump");
		}
		if (!rc && ctx.malformed)
			rc = 1;
	}
	mh_inspect_free(in);
	mh_config_free(cfg);
	return rc;
}

/* ---- intervals ------------------------------------------------------------ */

static void intervals_usage(FILE *out)
{
	fprintf(out,
		"usage: meterhub-ctl intervals -c FILE --meter ID --from DATE --to DATE [--csv]\n"
		"\n"
		"Print a meter's interval records over local dates (gateway.timezone), from\n"
		"the store: the ones not yet acknowledged by the broker; the head-end keeps\n"
		"the rest. An interval belongs to the day its end lies in, one that ends at\n"
		"midnight to the day before.\n"
		"\n"
		"  -c, --config FILE  the gateway's configuration (store.path, timezone)\n"
		"      --meter ID     the meter\n"
		"      --from DATE    the first local date, YYYY-MM-DD\n"
		"      --to DATE      the last local date, YYYY-MM-DD (inclusive)\n"
		"      --csv          CSV (start,end,period,energy_import_kwh,...,complete)\n"
		"                     instead of a table\n"
		"  -h, --help         this text\n");
}

struct interval_rows {
	int64_t from_ms, to_ms; /* ends in (from_ms, to_ms] */
	cJSON **v;
	size_t n, cap;
	char **names; /* the energy_*_kwh columns, in the order met */
	size_t n_names;
	uint64_t malformed;
	int rc;
};

static bool is_energy(const char *name)
{
	size_t n = strlen(name);

	return n > 11 && !strncmp(name, "energy_", 7) && !strcmp(name + n - 4, "_kwh");
}

static int add_name(struct interval_rows *rows, const char *name)
{
	char **v;

	for (size_t i = 0; i < rows->n_names; i++)
		if (!strcmp(rows->names[i], name))
			return 0;
	v = realloc(rows->names, (rows->n_names + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	rows->names = v;
	v[rows->n_names] = strdup(name);
	if (!v[rows->n_names])
		return -ENOMEM;
	rows->n_names++;
	return 0;
}

static int collect_interval(void *ud, const struct mh_inspect_record *r)
{
	struct interval_rows *rows = ud;
	cJSON *obj = cJSON_ParseWithLength(r->payload, r->payload_len), *item;
	const cJSON *end = cJSON_GetObjectItemCaseSensitive(obj, "end");
	int64_t end_ms;

	if (!cJSON_IsObject(obj) || !cJSON_IsString(end) ||
		mh_cmd_time_parse(end->valuestring, &end_ms) < 0) {
		fprintf(stderr, "meterhub-ctl intervals: seq %" PRIu64 ": not an interval record; "
				"not shown\n",
			r->seq);
		rows->malformed++;
		cJSON_Delete(obj);
		return 0;
	}
	if (end_ms <= rows->from_ms || end_ms > rows->to_ms) {
		cJSON_Delete(obj);
		return 0;
	}
	cJSON_ArrayForEach(item, obj)
	{
		if (item->string && is_energy(item->string) && add_name(rows, item->string) < 0)
			goto nomem;
	}
	if (rows->n == rows->cap) {
		size_t cap = rows->cap ? rows->cap * 2 : 256;
		cJSON **v = realloc(rows->v, cap * sizeof(*v));
		if (!v)
			goto nomem;
		rows->v = v;
		rows->cap = cap;
	}
	rows->v[rows->n++] = obj;
	return 0;

nomem:
	cJSON_Delete(obj);
	return -ENOMEM;
}

/*
 * The text of member @key of @row: a string as it is, null as "", a
 * number or bool as its JSON (the digits the record was published with).
 * Returns a string to free(), or NULL when out of memory.
 */
static char *cell(const cJSON *row, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(row, key);

	if (!item || cJSON_IsNull(item))
		return strdup("");
	if (cJSON_IsString(item))
		return strdup(item->valuestring);
	return cJSON_PrintUnformatted(item);
}

/* One CSV field, quoted when it must be (RFC 4180). */
static void put_csv_field(const char *s, bool first)
{
	if (!first)
		putchar(',');
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (; *s; s++) {
		if (*s == '"')
			putchar('"');
		putchar(*s);
	}
	putchar('"');
}

/* The columns: start, end, period, the energies, complete. */
static size_t columns(const struct interval_rows *rows, const char **out, size_t cap)
{
	size_t n = 0;

	out[n++] = "start";
	out[n++] = "end";
	out[n++] = "period";
	for (size_t i = 0; i < rows->n_names && n + 1 < cap; i++)
		out[n++] = rows->names[i];
	out[n++] = "complete";
	return n;
}

static int print_intervals(const struct interval_rows *rows, bool csv)
{
	const char *cols[64];
	size_t n_cols = columns(rows, cols, sizeof(cols) / sizeof(cols[0]));
	size_t width[64];
	char **cells = calloc((rows->n + 1) * n_cols, sizeof(*cells));
	int rc = 0;

	if (!cells)
		return -ENOMEM;
	for (size_t c = 0; c < n_cols; c++) {
		cells[c] = strdup(cols[c]);
		if (!cells[c])
			rc = -ENOMEM;
	}
	for (size_t r = 0; !rc && r < rows->n; r++)
		for (size_t c = 0; !rc && c < n_cols; c++) {
			char **at = &cells[(r + 1) * n_cols + c];
			*at = cell(rows->v[r], cols[c]);
			if (!*at)
				rc = -ENOMEM;
			/* A table shows a missing period as "-", so the columns stay readable. */
			else if (!csv && !**at && c == 2) {
				free(*at);
				*at = strdup("-");
				rc = *at ? 0 : -ENOMEM;
			}
		}
	for (size_t c = 0; !rc && c < n_cols; c++) {
		width[c] = 0;
		for (size_t r = 0; r <= rows->n; r++)
			if (strlen(cells[r * n_cols + c]) > width[c])
				width[c] = strlen(cells[r * n_cols + c]);
	}
	for (size_t r = 0; !rc && r <= rows->n; r++) {
		for (size_t c = 0; c < n_cols; c++) {
			const char *s = cells[r * n_cols + c];
			if (csv)
				put_csv_field(s, c == 0);
			else if (c + 1 < n_cols)
				printf("%-*s  ", (int)width[c], s);
			else
				printf("%s", s);
		}
		putchar('\n');
	}
	for (size_t i = 0; i < (rows->n + 1) * n_cols; i++)
		free(cells[i]);
	free(cells);
	return rc;
}

/* A local date "YYYY-MM-DD" as year, month and day; only real dates. */
static int parse_date(const char *s, int *y, int *m, int *d)
{
	static const int days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -EINVAL;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -EINVAL;
	*y = atoi(s);
	*m = atoi(s + 5);
	*d = atoi(s + 8);
	if (*y < 1970 || *m < 1 || *m > 12 || *d < 1 || *d > days[*m - 1])
		return -EINVAL;
	if (*m == 2 && *d == 29 && !(*y % 4 == 0 && (*y % 100 != 0 || *y % 400 == 0)))
		return -EINVAL;
	return 0;
}

/* Local midnight starting day @d (may be one past the month's end) in the process's TZ. */
static int64_t local_midnight_ms(int y, int m, int d)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_isdst = -1 };

	return (int64_t)mktime(&tm) * 1000;
}

static int cmd_intervals(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, S_CONFIG},
		{"meter", required_argument, NULL, S_METER},
		{"from", required_argument, NULL, S_FROM},
		{"to", required_argument, NULL, S_TO},
		{"csv", no_argument, NULL, S_CSV},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *file = NULL, *meter = NULL, *from = NULL, *to = NULL;
	struct mh_inspect_filter f = { .kind = MH_INSPECT_INTERVAL };
	struct interval_rows rows = { 0 };
	struct mh_config *cfg = NULL;
	struct mh_inspect *in = NULL;
	int fy, fm, fd, ty, tm, td, opt, rc, err;
	bool csv = false, known = false;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			intervals_usage(stdout);
			return 0;
		case S_CONFIG:
			if (take_once("intervals", "-c/--config", &file))
				return 2;
			break;
		case S_METER:
			if (take_once("intervals", "--meter", &meter))
				return 2;
			break;
		case S_FROM:
			if (take_once("intervals", "--from", &from))
				return 2;
			break;
		case S_TO:
			if (take_once("intervals", "--to", &to))
				return 2;
			break;
		case S_CSV:
			csv = true;
			break;
		default:
			return option_error("intervals", opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("intervals", "unexpected argument '%s'", argv[optind]);
	if (!file || !meter || !from || !to)
		return usage_error("intervals", "-c FILE, --meter ID, --from DATE and --to DATE "
						"are required");
	if (parse_date(from, &fy, &fm, &fd) < 0)
		return usage_error("intervals", "--from: \"%s\" is not a date (YYYY-MM-DD)", from);
	if (parse_date(to, &ty, &tm, &td) < 0)
		return usage_error("intervals", "--to: \"%s\" is not a date (YYYY-MM-DD)", to);
	if (strcmp(from, to) > 0)
		return usage_error("intervals", "--from %s is after --to %s", from, to);
	if ((rc = load_config(file, &cfg)) != 0)
		return rc;
	for (size_t b = 0; b < cfg->n_buses; b++)
		for (size_t i = 0; i < cfg->buses[b].n_meters; i++)
			known |= !strcmp(cfg->buses[b].meters[i].id, meter);
	if (!known)
		fprintf(stderr, "meterhub-ctl intervals: %s is not a meter of %s; showing what the "
				"store holds for it\n",
			meter, file);
	/* Local dates are the gateway's, as its daily freeze counts them. */
	setenv("TZ", cfg->gateway.timezone, 1);
	tzset();
	rows.from_ms = local_midnight_ms(fy, fm, fd);
	rows.to_ms = local_midnight_ms(ty, tm, td + 1);
	f.meter = meter;
	rc = open_store("intervals", cfg->store.path, cfg->store.max_bytes, &in);
	if (!rc) {
		err = mh_inspect_each(in, &f, collect_interval, &rows);
		if (!err)
			err = print_intervals(&rows, csv);
		if (err < 0) {
			fprintf(stderr, "meterhub-ctl intervals: reading %s: %s\n", cfg->store.path,
				strerror(-err));
			rc = 1;
		} else {
			if (!csv)
				printf("%zu interval%s of %s ending from %s 00:00 to %s 24:00 %s, "
				       "not yet acknowledged by the broker\n",
					rows.n, rows.n == 1 ? "" : "s", meter, from, to,
					cfg->gateway.timezone);
			rc = flush_output("intervals");
		}
		if (!rc && rows.malformed)
			rc = 1;
	}
	for (size_t i = 0; i < rows.n; i++)
		cJSON_Delete(rows.v[i]);
	free(rows.v);
	for (size_t i = 0; i < rows.n_names; i++)
		free(rows.names[i]);
	free(rows.names);
	mh_inspect_free(in);
	mh_config_free(cfg);
	return rc;
}

/* ---- check-config --------------------------------------------------------- */

static void check_config_usage(FILE *out)
{
	fprintf(out,
		"usage: meterhub-ctl check-config -c FILE\n"
		"\n"
		"Validate a configuration as meterhub --check-config does, with the same\n"
		"lines and exit status: 0 when it is valid (a warning for each device or\n"
		"store directory that does not exist yet), 1 with every error otherwise.\n"
		"\n"
		"  -c, --config FILE  the configuration\n"
		"  -h, --help         this text\n");
}

static int cmd_check_config(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, S_CONFIG},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *file = NULL;
	struct mh_config *cfg;
	size_t meters = 0;
	int opt, rc;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			check_config_usage(stdout);
			return 0;
		case S_CONFIG:
			if (take_once("check-config", "-c/--config", &file))
				return 2;
			break;
		default:
			return option_error("check-config", opt, argv);
		}
	}
	if (optind < argc)
		return usage_error("check-config", "unexpected argument '%s'", argv[optind]);
	if (!file)
		return usage_error("check-config", "-c FILE is required");
	if ((rc = load_config(file, &cfg)) != 0)
		return rc;
	for (size_t b = 0; b < cfg->n_buses; b++)
		meters += cfg->buses[b].n_meters;
	mh_preflight_warn(cfg);
	printf("%s: configuration is valid: %zu buses, %zu meters, %zu profiles\n", file,
		cfg->n_buses, meters, cfg->n_profiles);
	mh_config_free(cfg);
	return flush_output("check-config");
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{"sign", cmd_sign},
		{"status", cmd_status},
		{"dump", cmd_dump},
		{"intervals", cmd_intervals},
		{"check-config", cmd_check_config},
	};

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf("meterhub-ctl %s\n", MH_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	if (argv[1][0] == '-')
		return usage_error(NULL, "unknown option '%s'", argv[1]);
	return usage_error(NULL, "unknown command '%s'", argv[1]);
}
