// SPDX-License-Identifier: MIT
/*
 * meterhub-ctl: the operator's tool, `meterhub-ctl COMMAND [ARGS]`. Each
 * command is a row of the table in main() and parses its own options.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "cmd.h"
#include "config.h"

/* 10000-01-01T00:00:00Z: RFC 3339 has four digits of year. */
#define TIME_LIMIT_MS 253402300800000LL

static void usage(FILE *out)
{
	fprintf(out, "usage: meterhub-ctl COMMAND [ARGS]\n"
		     "\n"
		     "Commands:\n"
		     "  sign           print a signed remote command for the head-end to publish\n"
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

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{"sign", cmd_sign},
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
