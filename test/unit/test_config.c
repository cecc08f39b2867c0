// SPDX-License-Identifier: MIT
/*
 * The YAML loader and validator (config/config.h), through
 * mh_config_load_string() with an error callback that collects every line.
 *
 * Each error class is checked for its exact "FILE:LINE:COL: key.path: what"
 * line. Lines and columns are counted by hand from the YAML text (1-based;
 * a block mapping starts at its first key, a flow mapping at its '{', a value
 * at its first character), and every test also checks that no other error
 * was reported. Covered: YAML syntax errors, empty and non-mapping files,
 * unknown keys, keys given twice, wrong node kinds, missing required keys,
 * durations and sizes, intervals that do or do not divide a day, time zones,
 * broker URIs, enums, numbers, meter ids and Modbus addresses, profiles
 * (missing, built-in names, overlapping, adjacent and duplicate points, bit
 * types), remote commands (every key of "commands" with its default, range
 * and position; confirm_within against settle; protect windows: dates,
 * RFC 3339 times with offsets, order, garbage, and
 * mh_config_window_resolve() in three time zones; the README's commands example),
 * secret files refused when group or others may open them (created with
 * explicit modes in a directory of the run), relay control (DL/T 645 and
 * Modbus shapes, each key's errors, the other protocol's keys named, a
 * meter's own DL/T 645 keys over its profile's), many errors in one
 * file, the DESIGN.md example (verbatim, its Modbus parts, and with its
 * DL/T 645 bus), defaults, number syntax (hex, decimal, leading zeros),
 * DL/T 645 meters and points, the built-in profiles, and
 * mh_config_parse_duration() / mh_config_parse_size() on their own.
 * Also: what the daemon could not run (non-standard baud rates, MQTT topic
 * prefixes and client ids, TLS on a plain URI, scale 0, the DL/T 645
 * broadcast address, relative store paths, the 32-bit store limit),
 * duplicates reported once, the keys a reload cannot change
 * (mh_config_restart_keys()), and text libyaml alone would mishandle: bad
 * bytes, NUL characters, huge values and files, deep nesting, a second
 * document, a thousand errors, a directory given as the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

/* ---- error collection ------------------------------------------------ */

#define MAX_ERRS 64

struct errs {
	char *line[MAX_ERRS];
	size_t n;
};

static void on_error(void *ud, const char *line)
{
	struct errs *e = ud;

	if (e->n < MAX_ERRS)
		e->line[e->n] = strdup(line);
	e->n++;
}

static void errs_free(struct errs *e)
{
	for (size_t i = 0; i < e->n && i < MAX_ERRS; i++)
		free(e->line[i]);
	e->n = 0;
}

static void errs_dump(const struct errs *e)
{
	for (size_t i = 0; i < e->n && i < MAX_ERRS; i++)
		print_message("  error %zu: %s\n", i, e->line[i]);
}

static int load(const char *text, struct errs *e, struct mh_config **cfg)
{
	*cfg = NULL;
	return mh_config_load_string("t.yaml", text, strlen(text), on_error, e, cfg);
}

/*
 * @text must fail to load with exactly the @n error lines that follow, in
 * order. Failures are reported at the caller's line.
 */
#define expect_errors(text, ...) expect_errors_at(__FILE__, __LINE__, text, __VA_ARGS__)

static void expect_errors_at(const char *file, int line, const char *text, size_t n, ...)
{
	struct errs e = {0};
	struct mh_config *cfg;
	int rc = load(text, &e, &cfg);
	bool loaded = cfg != NULL;
	size_t got_n = e.n;
	char got[1024] = "", want[1024] = "";
	va_list ap;

	/* Compare first and release everything, so a failure leaks nothing under valgrind. */
	mh_config_free(cfg);
	va_start(ap, n);
	for (size_t i = 0; i < n && i < e.n && i < MAX_ERRS; i++) {
		const char *w = va_arg(ap, const char *);
		if (strcmp(e.line[i], w)) {
			snprintf(got, sizeof(got), "%s", e.line[i]);
			snprintf(want, sizeof(want), "%s", w);
			break;
		}
	}
	va_end(ap);
	if (got_n != n || *want)
		errs_dump(&e);
	errs_free(&e);
	_assert_int_equal(cast_to_largest_integral_type(rc), cast_to_largest_integral_type(-EINVAL),
		file, line);
	_assert_true(!loaded, "the file did not load", file, line);
	_assert_int_equal(got_n, n, file, line);
	_assert_string_equal(got, want, file, line);
}

/* @text must load without a single error. */
#define expect_ok(text) expect_ok_at(__FILE__, __LINE__, text)

static struct mh_config *expect_ok_at(const char *file, int line, const char *text)
{
	struct errs e = {0};
	struct mh_config *cfg;
	int rc = load(text, &e, &cfg);
	size_t n = e.n;

	if (rc || e.n)
		errs_dump(&e);
	errs_free(&e);
	if (rc == 0 && n)
		mh_config_free(cfg);
	_assert_int_equal(n, 0, file, line);
	_assert_int_equal(cast_to_largest_integral_type(rc), 0, file, line);
	_assert_true(cast_to_largest_integral_type(cfg != NULL), "cfg != NULL", file, line);
	return cfg;
}

/* ---- documents ------------------------------------------------------- */

/* Lines 1-3 */
#define GATEWAY "gateway:\n  id: gw-001\n  timezone: Asia/Shanghai\n"
/* Lines 4-5 */
#define MQTT "mqtt:\n  uri: tcp://127.0.0.1:1883\n"
/* Lines 6-7 */
#define SCHEDULE "schedule:\n  interval: 15m\n"
#define HEAD GATEWAY MQTT SCHEDULE
/* Lines 8-12; the bus mapping starts at 9:5. */
#define BUS "buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: modbus\n    meters:\n"
/* One meter line; its flow mapping starts at column 9. */
#define M(id, addr, prof) "      - { id: " id ", address: " addr ", profile: " prof " }\n"
/* Line 13 */
#define METER1 M("m-0001", "1", "eastron-sdm120")
#define MINIMAL HEAD BUS METER1

/* Lines 8-14: line 12 is "    " @x (its value column is 5 + the key and ": "). */
#define BUS_WITH(x)                                                                                \
	"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: modbus\n    " x          \
	"\n    meters:\n" METER1
/* Lines 8-13: line 11 is "    protocol: " @p, the value at column 15. */
#define BUS_PROTO(p)                                                                               \
	"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: " p                      \
	"\n    meters:\n" METER1

/* Lines 1-16 with a meter on profile "my"; points follow from line 17. */
#define PROFILE_HEAD HEAD BUS M("m-0001", "1", "my") "profiles:\n  my:\n    points:\n"
/* One point line; its flow mapping starts at column 9, its first key at 11. */
#define P(body) "      - { " body " }\n"

/*
 * Whole documents, one YAML line per C line with its line number, kept out
 * of clang-format so the numbers stay beside their lines.
 */
// clang-format off

/* DESIGN.md's config, verbatim. */
static const char design_verbatim[] =
	"gateway:  { id: gw-001, timezone: Asia/Shanghai }\n"                           /*  1 */
	"store:    { path: /var/lib/meterhub, max_bytes: 256MiB }\n"                    /*  2 */
	"mqtt:\n"                                                                       /*  3 */
	"  uri: tcp://127.0.0.1:1883          # ssl://host:8883 for TLS\n"              /*  4 */
	"  client_id: meterhub-gw-001\n"                                                /*  5 */
	"  topic_prefix: meterhub/gw-001\n"                                             /*  6 */
	"  tls: { ca: FILE, cert: FILE, key: FILE }   # optional\n"                     /*  7 */
	"  username: u                       # optional; password_file: FILE\n"         /*  8 */
	"schedule: { interval: 15m, daily_freeze: \"00:00\" }\n"                        /*  9 */
	"tariff:                              # preset metering periods (TOU) "
	"of the gateway\n"                                                              /* 10 */
	"  periods:\n"                                                                  /* 11 */
	"    - { name: peak,   from: \"08:00\", to: \"11:00\" }\n"                      /* 12 */
	"    - { name: valley, from: \"23:00\", to: \"07:00\" }\n"                      /* 13 */
	"  default: flat\n"                                                             /* 14 */
	"  seasons:                           # optional: other periods in "
	"some months / days\n"                                                          /* 15 */
	"    - { months: [7, 8], periods: [ { name: sharp, from: \"19:00\", to: "
	"\"21:00\" } ] }\n"                                                             /* 16 */
	"tariffs:                             # optional: personalised period tables\n" /* 17 */
	"  night-shift: { periods: [ { name: valley, from: \"08:00\", to: "
	"\"16:00\" } ], default: flat }\n"                                              /* 18 */
	"commands: { hmac_key_file: FILE, max_attempts: 3, retry_backoff: 5s,\n"        /* 19 */
	"            max_skew: 300s, protect_windows: [ { from: \"2027-02-05\", "
	"to: \"2027-02-12\" } ] }\n"                                                    /* 20 */
	"buses:\n"                                                                      /* 21 */
	"  - name: rs485-1\n"                                                           /* 22 */
	"    device: /dev/ttyS1\n"                                                      /* 23 */
	"    baud: 9600\n"                                                              /* 24 */
	"    parity: even                       # none | even | odd\n"                  /* 25 */
	"    protocol: dlt645                   # dlt645 | modbus\n"                    /* 26 */
	"    timeout: 500ms\n"                                                          /* 27 */
	"    meters:\n"                                                                 /* 28 */
	"      - { id: m-0001, address: \"000000000001\", profile: "
	"dlt645-single-phase }\n"                                                       /* 29 */
	"      - { id: m-0002, address: \"000000000002\", profile: "
	"dlt645-single-phase, tariff: night-shift }\n"                                  /* 30 */
	"  - name: rs485-2\n"                                                           /* 31 */
	"    device: /dev/ttyS2\n"                                                      /* 32 */
	"    baud: 9600\n"                                                              /* 33 */
	"    parity: none\n"                                                            /* 34 */
	"    protocol: modbus\n"                                                        /* 35 */
	"    meters:\n"                                                                 /* 36 */
	"      - { id: m-0101, address: 1, profile: my-meter }\n"                       /* 37 */
	"profiles:                             # built-ins exist; users add their own\n" /* 38 */
	"  my-meter:\n"                                                                 /* 39 */
	"    points:\n"                                                                 /* 40 */
	"      - { name: energy_import_kwh, table: holding, address: 0x0000, "
	"type: float32, word_order: big }\n"                                            /* 41 */
	"      - { name: voltage_a_v,       table: input,   address: 0x0010, "
	"type: u16, scale: 0.1 }\n"                                                     /* 42 */
	"    control:                          # optional relay control for "
	"Modbus meters\n"                                                               /* 43 */
	"      trip:    { table: coil, address: 0x0000, value: 1 }\n"                   /* 44 */
	"      restore: { table: coil, address: 0x0000, value: 0 }\n"                   /* 45 */
	"      relay:   { table: discrete, address: 0x0000, open_when: 1 }\n";          /* 46 */

/* The Modbus parts of DESIGN.md's config, byte for byte where they apply. */
static const char design_modbus[] =
	"gateway:  { id: gw-001, timezone: Asia/Shanghai }\n"                              /*  1 */
	"store:    { path: /var/lib/meterhub, max_bytes: 256MiB }\n"                       /*  2 */
	"mqtt:\n"                                                                          /*  3 */
	"  uri: tcp://127.0.0.1:1883          # ssl://host:8883 for TLS\n"                 /*  4 */
	"  client_id: meterhub-gw-001\n"                                                   /*  5 */
	"  topic_prefix: meterhub/gw-001\n"                                                /*  6 */
	"  username: u                       # optional; password_file: FILE\n"           /*  7 */
	"schedule: { interval: 15m }\n"                                                    /*  8 */
	"buses:\n"                                                                         /*  9 */
	"  - name: rs485-2\n"                                                              /* 10 */
	"    device: /dev/ttyS2\n"                                                         /* 11 */
	"    baud: 9600\n"                                                                 /* 12 */
	"    parity: none\n"                                                               /* 13 */
	"    protocol: modbus\n"                                                           /* 14 */
	"    meters:\n"                                                                    /* 15 */
	"      - { id: m-0101, address: 1, profile: my-meter }\n"                          /* 16 */
	"profiles:                             # built-ins exist; users add their own\n"   /* 17 */
	"  my-meter:\n"                                                                    /* 18 */
	"    points:\n"                                                                    /* 19 */
	"      - { name: energy_import_kwh, table: holding, address: 0x0000, "
	"type: float32, word_order: big }\n"                                               /* 20 */
	"      - { name: voltage_a_v,       table: input,   address: 0x0010, "
	"type: u16, scale: 0.1 }\n";                                                       /* 21 */

/* DESIGN.md's config without the keys this version lacks: both buses. */
static const char design_both_buses[] =
	"gateway:  { id: gw-001, timezone: Asia/Shanghai }\n"                              /*  1 */
	"mqtt:\n"                                                                          /*  2 */
	"  uri: tcp://127.0.0.1:1883\n"                                                    /*  3 */
	"schedule: { interval: 15m }\n"                                                    /*  4 */
	"buses:\n"                                                                         /*  5 */
	"  - name: rs485-1\n"                                                              /*  6 */
	"    device: /dev/ttyS1\n"                                                         /*  7 */
	"    baud: 9600\n"                                                                 /*  8 */
	"    parity: even                       # none | even | odd\n"                     /*  9 */
	"    protocol: dlt645                   # dlt645 | modbus\n"                       /* 10 */
	"    timeout: 500ms\n"                                                             /* 11 */
	"    meters:\n"                                                                    /* 12 */
	"      - { id: m-0001, address: \"000000000001\", profile: dlt645-single-phase }\n" /* 13 */
	"  - name: rs485-2\n"                                                              /* 14 */
	"    device: /dev/ttyS2\n"                                                         /* 15 */
	"    baud: 9600\n"                                                                 /* 16 */
	"    parity: none\n"                                                               /* 17 */
	"    protocol: modbus\n"                                                           /* 18 */
	"    meters:\n"                                                                    /* 19 */
	"      - { id: m-0101, address: 1, profile: my-meter }\n"                          /* 20 */
	"profiles:\n"                                                                      /* 21 */
	"  my-meter:\n"                                                                    /* 22 */
	"    points:\n"                                                                    /* 23 */
	"      - { name: energy_import_kwh, table: holding, address: 0x0000, "
	"type: float32, word_order: big }\n"                                               /* 24 */
	"      - { name: voltage_a_v,       table: input,   address: 0x0010, "
	"type: u16, scale: 0.1 }\n";                                                       /* 25 */

/* Eight mistakes of seven kinds in one file. */
static const char many_errors[] =
	"gateway:\n"                                                                       /*  1 */
	"  id: gw-001\n"                                                                   /*  2 */
	"  timezone: Mars/Base\n"                                                          /*  3 */
	"  colour: red\n"                                                                  /*  4 */
	"mqtt:\n"                                                                          /*  5 */
	"  uri: http://broker\n"                                                           /*  6 */
	"schedule:\n"                                                                      /*  7 */
	"  interval: 7s\n"                                                                 /*  8 */
	"buses:\n"                                                                         /*  9 */
	"  - name: rs485-1\n"                                                              /* 10 */
	"    device: /dev/ttyS1\n"                                                         /* 11 */
	"    protocol: modbus\n"                                                           /* 12 */
	"    baud: fast\n"                                                                 /* 13 */
	"    meters:\n"                                                                    /* 14 */
	"      - { id: m-1, address: 248, profile: eastron-sdm120 }\n"                     /* 15 */
	"      - { id: m-1, address: 2, profile: nope }\n";                                /* 16 */

// clang-format on

/* ---- YAML and document shape ----------------------------------------- */

static void test_yaml_syntax_error(void **state)
{
	/* The second ':' of "id: gw-001: x" is at column 13. */
	expect_errors("gateway:\n  id: gw-001: x\n", 1,
		"t.yaml:2:13: YAML syntax error: mapping values are not allowed in this context");
	/* '@' is reserved and cannot start a plain scalar. */
	expect_errors("gateway:\n  id: @gw\n", 1,
		"t.yaml:2:7: YAML syntax error: found character that cannot start any token while "
		"scanning for the next token");
}

static void test_empty_and_non_mapping(void **state)
{
	expect_errors("", 1, "t.yaml:1:1: the file is empty");
	expect_errors("# only a comment\n", 1, "t.yaml:1:1: the file is empty");
	expect_errors("- gateway\n- mqtt\n", 1, "t.yaml:1:1: expected a mapping, found a list");
	expect_errors("gateway\n", 1, "t.yaml:1:1: expected a mapping, found a scalar");
}

static void test_unknown_key(void **state)
{
	expect_errors(MINIMAL "colour: red\n", 1, "t.yaml:14:1: colour: unknown key");
	expect_errors(
		"gateway:\n  id: gw-001\n  timezone: Asia/Shanghai\n  colour: red\n" MQTT SCHEDULE
			BUS METER1,
		1, "t.yaml:4:3: gateway.colour: unknown key");
	/* In a flow mapping, "colour" is the 60th character. */
	expect_errors(HEAD BUS
		"      - { id: m-0001, address: 1, profile: eastron-sdm120, colour: red }\n",
		1, "t.yaml:13:60: buses[0].meters[0].colour: unknown key");
	/* Three levels down, in a point. */
	expect_errors(PROFILE_HEAD P("name: x, table: holding, address: 0, type: u16, unit: V"), 1,
		"t.yaml:17:59: profiles.my.points[0].unit: unknown key");
}

static void test_key_given_twice(void **state)
{
	expect_errors(
		"gateway:\n  id: gw-001\n  timezone: Asia/Shanghai\n  id: gw-002\n" MQTT SCHEDULE
			BUS METER1,
		1, "t.yaml:4:3: gateway.id: key given twice");
	expect_errors(
		MINIMAL "schedule:\n  interval: 1h\n", 1, "t.yaml:14:1: schedule: key given twice");
	expect_errors(HEAD BUS_WITH("timeout: 1s\n    timeout: 2s"), 1,
		"t.yaml:13:5: buses[0].timeout: key given twice");
}

static void test_wrong_kind(void **state)
{
	/* A list where a mapping belongs: "mqtt: [" puts '[' at column 7. */
	expect_errors(GATEWAY "mqtt: [tcp://127.0.0.1:1883]\n" SCHEDULE BUS METER1, 1,
		"t.yaml:4:7: mqtt: expected a mapping, found a list");
	/* A mapping where a scalar belongs. */
	expect_errors(HEAD BUS_WITH("baud: { rate: 9600 }"), 1,
		"t.yaml:12:11: buses[0].baud: expected a whole number, found a mapping");
	/* A list where a scalar belongs. */
	expect_errors(
		"gateway:\n  id: [gw-001]\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE BUS METER1, 1,
		"t.yaml:2:7: gateway.id: expected a name, found a list");
	/* A mapping where a list belongs, and an empty list. */
	expect_errors(HEAD "buses: { name: rs485-1 }\n", 1,
		"t.yaml:8:8: buses: expected a list with at least one entry, found a mapping");
	expect_errors(HEAD "buses: []\n", 1,
		"t.yaml:8:8: buses: expected a list with at least one entry, found an empty list");
	expect_errors(HEAD
		"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: modbus\n"
		"    meters: m-0001\n",
		1,
		"t.yaml:12:13: buses[0].meters: expected a list with at least one entry, found a "
		"scalar");
}

static void test_missing_required(void **state)
{
	/* The error stands where the mapping that lacks the key starts. */
	expect_errors("gateway:\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE BUS METER1, 1,
		"t.yaml:2:3: gateway.id: missing required key");
	expect_errors("gateway:\n  id: gw-001\n" MQTT SCHEDULE BUS METER1, 1,
		"t.yaml:2:3: gateway.timezone: missing required key");
	expect_errors(GATEWAY "mqtt:\n  client_id: x\n" SCHEDULE BUS METER1, 1,
		"t.yaml:5:3: mqtt.uri: missing required key");
	expect_errors(GATEWAY MQTT "schedule: {}\n" BUS METER1, 1,
		"t.yaml:6:11: schedule.interval: missing required key");
	expect_errors(HEAD, 1, "t.yaml:1:1: buses: missing required key");
	expect_errors(HEAD BUS "      - { id: m-0001, address: 1 }\n", 1,
		"t.yaml:13:9: buses[0].meters[0].profile: missing required key");
	expect_errors(HEAD BUS "      - { id: m-0001, profile: eastron-sdm120 }\n", 1,
		"t.yaml:13:9: buses[0].meters[0].address: missing required key");
	expect_errors(HEAD BUS "      - { address: 1, profile: eastron-sdm120 }\n", 1,
		"t.yaml:13:9: buses[0].meters[0].id: missing required key");
	expect_errors(HEAD
		"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    meters:\n" METER1,
		1, "t.yaml:9:5: buses[0].protocol: missing required key");
	expect_errors(HEAD
		"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: modbus\n",
		1, "t.yaml:9:5: buses[0].meters: missing required key");
	expect_errors(PROFILE_HEAD P("table: holding, address: 0, type: u16"), 1,
		"t.yaml:17:9: profiles.my.points[0]: missing required key \"name\"");
	expect_errors(HEAD BUS M("m-0001", "1", "my") "profiles:\n  my:\n    description: x\n", 1,
		"t.yaml:16:5: profiles.my.points: missing required key");
	/* Everything missing at once: each top-level key, in the contract's order. */
	expect_errors("store: { path: /tmp/x }\n", 4, "t.yaml:1:1: gateway: missing required key",
		"t.yaml:1:1: mqtt: missing required key",
		"t.yaml:1:1: schedule: missing required key",
		"t.yaml:1:1: buses: missing required key");
}

/* Keys a point needs that the point table cannot mark required (they depend on the table). */
static void test_point_missing_keys(void **state)
{
	expect_errors(PROFILE_HEAD P("name: x, address: 0, type: u16"), 1,
		"t.yaml:17:9: profiles.my.points[0]: missing required key \"table\"");
	expect_errors(PROFILE_HEAD P("name: x, table: input, type: u16"), 1,
		"t.yaml:17:9: profiles.my.points[0]: missing required key \"address\"");
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0"), 1,
		"t.yaml:17:9: profiles.my.points[0]: missing required key \"type\"");
}

/* ---- values ---------------------------------------------------------- */

static void test_bad_durations(void **state)
{
	/* Line 12 "    timeout: " puts the value at column 14. */
	expect_errors(HEAD BUS_WITH("timeout: 15x"), 1,
		"t.yaml:12:14: buses[0].timeout: \"15x\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");
	expect_errors(HEAD BUS_WITH("timeout: -1s"), 1,
		"t.yaml:12:14: buses[0].timeout: \"-1s\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");
	expect_errors(HEAD BUS_WITH("timeout: 1.5s"), 1,
		"t.yaml:12:14: buses[0].timeout: \"1.5s\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");
	expect_errors(HEAD BUS_WITH("timeout: 500"), 1,
		"t.yaml:12:14: buses[0].timeout: \"500\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");
	expect_errors(HEAD BUS_WITH("timeout: 0s"), 1,
		"t.yaml:12:14: buses[0].timeout: 0s is out of range (10ms to 60000ms)");
	expect_errors(HEAD BUS_WITH("timeout: 61s"), 1,
		"t.yaml:12:14: buses[0].timeout: 61s is out of range (10ms to 60000ms)");
	/* "  interval: " puts the value at column 13. */
	expect_errors(GATEWAY MQTT "schedule:\n  interval: 0s\n" BUS METER1, 1,
		"t.yaml:7:13: schedule.interval: 0s is out of range (100ms to 86400000ms)");
	expect_errors(GATEWAY MQTT "schedule:\n  interval: 50ms\n" BUS METER1, 1,
		"t.yaml:7:13: schedule.interval: 50ms is out of range (100ms to 86400000ms)");
	expect_errors(GATEWAY MQTT "schedule:\n  interval: 15x\n" BUS METER1, 1,
		"t.yaml:7:13: schedule.interval: \"15x\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");

	struct mh_config *cfg = expect_ok(HEAD BUS_WITH("timeout: 10ms"));
	assert_int_equal(cfg->buses[0].timeout_ms, 10);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD BUS_WITH("timeout: 60s"));
	assert_int_equal(cfg->buses[0].timeout_ms, 60000);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD BUS_WITH("frame_gap: 0ms"));
	assert_int_equal(cfg->buses[0].frame_gap_us, 0);
	mh_config_free(cfg);
}

static void test_interval_divides_day(void **state)
{
	static const struct {
		const char *text;
		unsigned ms;
	} good[] = {
		{"100ms", 100}, /* lab and saturation measurements */
		{"250ms", 250},
		{"1s", 1000},
		{"15m", 900000},
		{"1h", 3600000},
		{"1500ms", 1500}, /* 86400000 / 1500 = 57600 */
		{"24h", 86400000},
	};
	char text[1024];

	expect_errors(GATEWAY MQTT "schedule:\n  interval: 7s\n" BUS METER1, 1,
		"t.yaml:7:13: schedule.interval: 7s does not divide a day evenly, so boundaries "
		"could not be counted from midnight");
	/* 1440 minutes / 7 is not whole either. */
	expect_errors(GATEWAY MQTT "schedule:\n  interval: 7m\n" BUS METER1, 1,
		"t.yaml:7:13: schedule.interval: 7m does not divide a day evenly, so boundaries "
		"could not be counted from midnight");
	expect_errors(GATEWAY MQTT "schedule:\n  interval: 25h\n" BUS METER1, 1,
		"t.yaml:7:13: schedule.interval: 25h is out of range (100ms to 86400000ms)");

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), GATEWAY MQTT "schedule:\n  interval: %s\n" BUS METER1,
			good[i].text);
		struct mh_config *cfg = expect_ok(text);
		assert_int_equal(cfg->schedule.interval_ms, good[i].ms);
		mh_config_free(cfg);
	}
}

static void test_bad_sizes(void **state)
{
	/* Store on lines 8-9, "  max_bytes: " puts the value at column 14. */
	expect_errors(HEAD "store:\n  max_bytes: 10MB\n" BUS METER1, 1,
		"t.yaml:9:14: store.max_bytes: \"10MB\" is not a size (a whole number of bytes, or "
		"with KiB, MiB, GiB)");
	expect_errors(HEAD "store:\n  max_bytes: 1KiB\n" BUS METER1, 1,
		"t.yaml:9:14: store.max_bytes: 1KiB is out of range (65536 to 1099511627776 "
		"bytes)");
	expect_errors(HEAD "store:\n  max_bytes: 65535\n" BUS METER1, 1,
		"t.yaml:9:14: store.max_bytes: 65535 is out of range (65536 to 1099511627776 "
		"bytes)");
	expect_errors(HEAD "store:\n  max_bytes: 1025GiB\n" BUS METER1, 1,
		"t.yaml:9:14: store.max_bytes: 1025GiB is out of range (65536 to 1099511627776 "
		"bytes)");

	struct mh_config *cfg = expect_ok(HEAD "store:\n  max_bytes: 64KiB\n" BUS METER1);
	assert_int_equal(cfg->store.max_bytes, 65536);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD "store:\n  max_bytes: 1MiB\n" BUS METER1);
	assert_int_equal(cfg->store.max_bytes, 1048576);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD "store:\n  max_bytes: 2048KiB\n" BUS METER1);
	assert_int_equal(cfg->store.max_bytes, 2097152);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD "store:\n  max_bytes: 4GiB\n" BUS METER1);
	assert_int_equal(cfg->store.max_bytes, 4294967296ull);
	mh_config_free(cfg);
}

/* store.commit_window: 200ms unless given; 0 (every turn) to 2s; a reload takes it. */
static void test_commit_window(void **state)
{
	struct mh_config *cfg = expect_ok(HEAD BUS METER1), *other;

	assert_int_equal(cfg->store.commit_window_ms, 200);
	other = expect_ok(HEAD "store:\n  commit_window: 0ms\n" BUS METER1);
	assert_int_equal(other->store.commit_window_ms, 0);
	assert_int_equal(mh_config_restart_keys(cfg, other, NULL, NULL), 0);
	assert_int_equal(mh_config_live_changes(cfg, other, NULL, NULL), 1);
	mh_config_free(other);
	other = expect_ok(HEAD "store:\n  commit_window: 2s\n" BUS METER1);
	assert_int_equal(other->store.commit_window_ms, 2000);
	mh_config_free(other);
	mh_config_free(cfg);
	/* "  commit_window: " puts the value at column 18. */
	expect_errors(HEAD "store:\n  commit_window: 2001ms\n" BUS METER1, 1,
		"t.yaml:9:18: store.commit_window: 2001ms is out of range (0ms to 2000ms)");
	expect_errors(HEAD "store:\n  commit_window: soon\n" BUS METER1, 1,
		"t.yaml:9:18: store.commit_window: \"soon\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");
}

static void test_time_zone(void **state)
{
	/* "  timezone: " puts the value at column 13. */
	expect_errors("gateway:\n  id: gw-001\n  timezone: Mars/Olympus\n" MQTT SCHEDULE BUS METER1,
		1,
		"t.yaml:3:13: gateway.timezone: unknown time zone \"Mars/Olympus\" (expected a tz "
		"database name such as Asia/Shanghai)");
	expect_errors(
		"gateway:\n  id: gw-001\n  timezone: ../zoneinfo/UTC\n" MQTT SCHEDULE BUS METER1, 1,
		"t.yaml:3:13: gateway.timezone: unknown time zone \"../zoneinfo/UTC\" (expected a "
		"tz database name such as Asia/Shanghai)");

	struct mh_config *cfg = expect_ok(
		"gateway:\n  id: gw-001\n  timezone: Europe/Berlin\n" MQTT SCHEDULE BUS METER1);
	assert_string_equal(cfg->gateway.timezone, "Europe/Berlin");
	mh_config_free(cfg);
	cfg = expect_ok("gateway:\n  id: gw-001\n  timezone: UTC\n" MQTT SCHEDULE BUS METER1);
	assert_string_equal(cfg->gateway.timezone, "UTC");
	mh_config_free(cfg);
}

/*
 * "Asia" is a directory of the tz database, not a zone. Accepting it would
 * leave the gateway on UTC without a word (glibc falls back silently), so
 * every boundary would be off by the zone's offset.
 */
static void test_time_zone_directory_rejected(void **state)
{
	expect_errors("gateway:\n  id: gw-001\n  timezone: Asia\n" MQTT SCHEDULE BUS METER1, 1,
		"t.yaml:3:13: gateway.timezone: unknown time zone \"Asia\" (expected a tz database "
		"name such as Asia/Shanghai)");
}

static void test_mqtt_uri(void **state)
{
	/* "  uri: " puts the value at column 8. */
	expect_errors(GATEWAY "mqtt:\n  uri: http://127.0.0.1:1883\n" SCHEDULE BUS METER1, 1,
		"t.yaml:5:8: mqtt.uri: \"http://127.0.0.1:1883\" must start with tcp://, mqtt://, "
		"ssl:// or mqtts://");
	expect_errors(GATEWAY "mqtt:\n  uri: 127.0.0.1:1883\n" SCHEDULE BUS METER1, 1,
		"t.yaml:5:8: mqtt.uri: \"127.0.0.1:1883\" must start with tcp://, mqtt://, ssl:// "
		"or mqtts://");

	static const char *const good[] = {
		"tcp://h:1883", "mqtt://h", "ssl://host:8883", "mqtts://h:8883"};
	char text[1024];
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), GATEWAY "mqtt:\n  uri: %s\n" SCHEDULE BUS METER1,
			good[i]);
		struct mh_config *cfg = expect_ok(text);
		assert_string_equal(cfg->mqtt.uri, good[i]);
		mh_config_free(cfg);
	}
}

static void test_files_must_be_readable(void **state)
{
	expect_errors(GATEWAY
		"mqtt:\n  uri: ssl://h:8883\n  password_file: /nonexistent/pw\n" SCHEDULE BUS
			METER1,
		1,
		"t.yaml:6:18: mqtt.password_file: cannot read \"/nonexistent/pw\": No such file or "
		"directory");
	expect_errors(GATEWAY
		"mqtt:\n  uri: ssl://h:8883\n  tls: { ca: /nonexistent/ca.pem }\n" SCHEDULE BUS
			METER1,
		1,
		"t.yaml:6:14: mqtt.tls.ca: cannot read \"/nonexistent/ca.pem\": No such file or "
		"directory");
}

static void test_bad_enums_and_numbers(void **state)
{
	/* "    parity: " puts the value at column 13. */
	expect_errors(HEAD BUS_WITH("parity: mark"), 1,
		"t.yaml:12:13: buses[0].parity: \"mark\" is not one of none, even or odd");
	expect_errors(HEAD BUS_WITH("parity: EVEN"), 1,
		"t.yaml:12:13: buses[0].parity: \"EVEN\" is not one of none, even or odd");
	/* "    baud: " puts the value at column 11. */
	expect_errors(HEAD BUS_WITH("baud: fast"), 1,
		"t.yaml:12:11: buses[0].baud: \"fast\" is not a whole number");
	expect_errors(HEAD BUS_WITH("baud: 9600.0"), 1,
		"t.yaml:12:11: buses[0].baud: \"9600.0\" is not a whole number");
	expect_errors(HEAD BUS_WITH("baud: -9600"), 1,
		"t.yaml:12:11: buses[0].baud: \"-9600\" is not a whole number");
	expect_errors(HEAD BUS_WITH("baud: 100"), 1,
		"t.yaml:12:11: buses[0].baud: 100 is not a standard baud rate; use one of 300, 600, "
		"1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200");
	/* Point enums: "      - { name: x, table: " is 26 characters. */
	expect_errors(PROFILE_HEAD P("name: x, table: register, address: 0, type: u16"), 1,
		"t.yaml:17:27: profiles.my.points[0].table: \"register\" is not one of holding, "
		"input, coil or discrete");
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0, type: int16"), 1,
		"t.yaml:17:52: profiles.my.points[0].type: \"int16\" is not one of u16, s16, u32, "
		"s32, u64, s64, float32, float64 or bit");
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0, type: u32, word_order: "
				     "swapped"),
		1,
		"t.yaml:17:69: profiles.my.points[0].word_order: \"swapped\" is not one of big or "
		"little");
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0, type: u16, scale: ten"), 1,
		"t.yaml:17:64: profiles.my.points[0].scale: \"ten\" is not a number");

	struct mh_config *cfg = expect_ok(HEAD BUS_WITH("parity: even"));
	assert_int_equal(cfg->buses[0].parity, MH_PARITY_EVEN);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD BUS_WITH("parity: odd"));
	assert_int_equal(cfg->buses[0].parity, MH_PARITY_ODD);
	mh_config_free(cfg);
	cfg = expect_ok(HEAD BUS_WITH("baud: 19200"));
	assert_int_equal(cfg->buses[0].baud, 19200);
	/* Modbus RTU wants 3.5 characters of silence: 3.5 x 11 bits / 19200 = 2006 us. */
	assert_int_equal(cfg->buses[0].frame_gap_us, 2006);
	mh_config_free(cfg);
	/* Above 19200 baud a fixed 1750 us. */
	cfg = expect_ok(HEAD BUS_WITH("baud: 115200"));
	assert_int_equal(cfg->buses[0].frame_gap_us, 1750);
	mh_config_free(cfg);
}

/*
 * A protocol the loader does not know must be reported once. The meters of
 * that bus must not collect further, false errors as if the bus spoke
 * dlt645 (their addresses and profiles are fine for the Modbus bus the user
 * almost certainly meant).
 */
static void test_bad_protocol(void **state)
{
	expect_errors(HEAD BUS_PROTO("bacnet"), 1,
		"t.yaml:11:15: buses[0].protocol: \"bacnet\" is not one of dlt645 or modbus");
}

/* ---- meters ---------------------------------------------------------- */

static void test_duplicate_meter_ids(void **state)
{
	expect_errors(HEAD BUS METER1 M("m-0001", "2", "eastron-sdm120"), 1,
		"t.yaml:14:9: buses[0].meters[1]: meter id \"m-0001\" is used twice (first at line "
		"13)");
	/*
	 * Across buses, ids clash too (they name MQTT topics); the same address
	 * on another bus is fine.
	 */
	expect_errors(HEAD BUS METER1
		"  - name: rs485-2\n    device: /dev/ttyS2\n    protocol: modbus\n    meters:\n" M(
			"m-0002", "1", "eastron-sdm120") M("m-0001", "2", "eastron-sdm120"),
		1,
		"t.yaml:19:9: buses[1].meters[1]: meter id \"m-0001\" is used twice (first at line "
		"13)");
}

static void test_modbus_addresses(void **state)
{
	expect_errors(HEAD BUS METER1 M("m-0002", "1", "eastron-sdm120"), 1,
		"t.yaml:14:9: buses[0].meters[1]: address 1 is used twice on bus rs485-1 (first at "
		"line 13)");
	/* The same unit written in hex is the same meter. */
	expect_errors(HEAD BUS METER1 M("m-0002", "0x01", "eastron-sdm120"), 1,
		"t.yaml:14:9: buses[0].meters[1]: address 0x01 is used twice on bus rs485-1 (first "
		"at line 13)");
	expect_errors(HEAD BUS M("m-0001", "0", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"0\" is not a Modbus slave address (1 to 247)");
	expect_errors(HEAD BUS M("m-0001", "248", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"248\" is not a Modbus slave address (1 to "
		"247)");
	expect_errors(HEAD BUS M("m-0001", "0xF8", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"0xF8\" is not a Modbus slave address (1 to "
		"247)");
	expect_errors(HEAD BUS M("m-0001", "one", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"one\" is not a Modbus slave address (1 to "
		"247)");

	/* 1 and 247 are the ends of the range; the same address on two buses is fine. */
	struct mh_config *cfg = expect_ok(HEAD BUS M("m-0001", "1", "eastron-sdm120") M("m-0002",
		"247", "eastron-sdm630") "  - name: rs485-2\n    device: /dev/ttyS2\n    protocol: "
					 "modbus\n    meters:\n" M("m-0003", "1", "chint-dtsu666")
						 M("m-0004", "0x00F7", "eastron-sdm120"));
	assert_int_equal(cfg->n_buses, 2);
	assert_int_equal(cfg->buses[0].n_meters, 2);
	assert_int_equal(cfg->buses[0].meters[0].unit, 1);
	assert_int_equal(cfg->buses[0].meters[1].unit, 247);
	assert_int_equal(cfg->buses[1].n_meters, 2);
	assert_int_equal(cfg->buses[1].meters[0].unit, 1);
	assert_int_equal(cfg->buses[1].meters[1].unit, 247);
	assert_string_equal(cfg->buses[1].meters[1].address, "0x00F7");
	mh_config_free(cfg);
}

static void test_two_buses_one_device(void **state)
{
	expect_errors(HEAD BUS METER1
		"  - name: rs485-2\n    device: /dev/ttyS1\n    protocol: modbus\n    meters:\n" M(
			"m-0002", "2", "eastron-sdm120"),
		1,
		"t.yaml:14:5: buses[1]: device /dev/ttyS1 is used by two buses (first at line 9)");
}

/* ---- profiles and points --------------------------------------------- */

static void test_unknown_profile(void **state)
{
	expect_errors(HEAD BUS M("m-0001", "1", "nope"), 1,
		"t.yaml:13:9: buses[0].meters[0].profile: no profile named \"nope\"");
}

static void test_profile_named_like_builtin(void **state)
{
	expect_errors(MINIMAL "profiles:\n  eastron-sdm120:\n    points:\n" P(
			      "name: x, table: holding, address: 0, type: u16"),
		1,
		"t.yaml:15:3: profiles.eastron-sdm120: a built-in profile has this name; give your "
		"profile another one");
}

static void test_overlapping_points(void **state)
{
	/* A float32 at 0x10 holds 0x10 and 0x11, so a u16 at 0x11 overlaps it. */
	expect_errors(
		PROFILE_HEAD P(
			"name: energy_import_kwh, table: holding, address: 0x10, type: float32")
			P("name: voltage_a_v, table: holding, address: 0x11, type: u16"),
		1,
		"t.yaml:18:9: profiles.my.points[1]: \"voltage_a_v\" (holding 0x0011-0x0011) "
		"overlaps \"energy_import_kwh\" (0x0010-0x0011, line 17)");
	/* At 0x12 it is adjacent, not overlapping. */
	struct mh_config *cfg = expect_ok(PROFILE_HEAD P(
		"name: energy_import_kwh, table: holding, address: 0x10, type: float32")
			P("name: voltage_a_v, table: holding, address: 0x12, type: u16"));
	const struct mh_profile *p = mh_config_profile(cfg, "my");
	assert_non_null(p);
	assert_int_equal(p->n_points, 2);
	assert_int_equal(p->points[0].modbus.address, 0x10);
	assert_int_equal(p->points[1].modbus.address, 0x12);
	mh_config_free(cfg);
	/* The same address in two tables is two registers. */
	cfg = expect_ok(PROFILE_HEAD P(
		"name: energy_import_kwh, table: holding, address: 0x10, type: float32")
			P("name: voltage_a_v, table: input, address: 0x11, type: u16"));
	mh_config_free(cfg);
}

static void test_duplicate_point_names(void **state)
{
	expect_errors(PROFILE_HEAD P("name: voltage_a_v, table: input, address: 0x10, type: u16")
			      P("name: voltage_a_v, table: input, address: 0x20, type: u16"),
		1,
		"t.yaml:18:9: profiles.my.points[1]: point \"voltage_a_v\" is named twice (first "
		"at line 17)");
}

static void test_bit_points(void **state)
{
	expect_errors(PROFILE_HEAD P("name: relay, table: holding, address: 0, type: bit"), 1,
		"t.yaml:17:9: profiles.my.points[0]: type bit belongs to coil and discrete points; "
		"holding registers are 16 bits");
	expect_errors(PROFILE_HEAD P("name: relay, table: coil, address: 0, type: u16"), 1,
		"t.yaml:17:9: profiles.my.points[0]: a coil point is one bit: leave \"type\" out "
		"or write bit");

	/* A coil or discrete point needs no type: it is a bit. */
	struct mh_config *cfg = expect_ok(PROFILE_HEAD P("name: relay, table: coil, address: 0")
			P("name: door, table: discrete, address: 0, type: bit"));
	const struct mh_profile *p = mh_config_profile(cfg, "my");
	assert_non_null(p);
	assert_int_equal(p->n_points, 2);
	assert_int_equal(p->points[0].modbus.table, MH_MODBUS_COIL);
	assert_int_equal(p->points[0].modbus.type, MH_MODBUS_BIT);
	assert_int_equal(p->points[0].modbus.address, 0);
	assert_int_equal(p->points[1].modbus.table, MH_MODBUS_DISCRETE);
	assert_int_equal(p->points[1].modbus.type, MH_MODBUS_BIT);
	mh_config_free(cfg);
}

static void test_point_past_last_register(void **state)
{
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0xFFFF, type: float32"), 1,
		"t.yaml:17:9: profiles.my.points[0]: a float32 at 0xFFFF runs past register "
		"0xFFFF");

	struct mh_config *cfg =
		expect_ok(PROFILE_HEAD P("name: x, table: input, address: 0xFFFF, type: u16"));
	assert_int_equal(mh_config_profile(cfg, "my")->points[0].modbus.address, 0xFFFF);
	mh_config_free(cfg);
}

/* ---- remote commands ------------------------------------------------- */

/*
 * Secret files for the commands and MQTT keys, in a directory made for the
 * run (cmocka group setup): one per mode, chmod-ed explicitly so the umask
 * does not matter.
 */
static char secret_dir[64];

static const struct {
	const char *name;
	mode_t mode;
} secret_files[] = {
	{"key", 0600},
	{"key-0400", 0400},
	{"key-0644", 0644},
	{"key-0640", 0640},
	{"key-0604", 0604},
	{"key-0620", 0620},
	{"key-0000", 0000},
};

/* dir/@name in one of four buffers, valid for the next three calls. */
static const char *secret(const char *name)
{
	static char buf[4][128];
	static unsigned next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", secret_dir, name);
	return p;
}

static int secrets_setup(void **state)
{
	snprintf(secret_dir, sizeof(secret_dir), "/tmp/mh-test-config-XXXXXX");
	if (!mkdtemp(secret_dir))
		return -1;
	for (size_t i = 0; i < sizeof(secret_files) / sizeof(secret_files[0]); i++) {
		int fd = open(secret(secret_files[i].name), O_WRONLY | O_CREAT | O_EXCL, 0600);

		if (fd < 0)
			return -1;
		if (write(fd, "0123456789abcdef0123456789abcdef\n", 33) != 33 ||
			fchmod(fd, secret_files[i].mode) < 0) {
			close(fd);
			return -1;
		}
		close(fd);
	}
	return mkdir(secret("dir"), 0700);
}

static int secrets_teardown(void **state)
{
	for (size_t i = 0; i < sizeof(secret_files) / sizeof(secret_files[0]); i++)
		unlink(secret(secret_files[i].name));
	rmdir(secret("dir"));
	rmdir(secret_dir);
	return 0;
}

/* MINIMAL, then "commands:" on line 14, the key file on 15 (its value at column 18), then @body. */
static const char *commands_doc(char *buf, size_t size, const char *key, const char *body)
{
	snprintf(buf, size, MINIMAL "commands:\n  hmac_key_file: %s\n%s", key, body);
	return buf;
}

static void test_commands_defaults(void **state)
{
	char text[2048];
	struct mh_config *cfg = expect_ok(MINIMAL);
	const struct mh_commands_config *c = &cfg->commands;

	/* No section: commands are off, and the defaults stand for whoever reads them. */
	assert_false(c->enabled);
	assert_null(c->hmac_key_file);
	assert_int_equal(c->max_attempts, 3);
	assert_int_equal(c->retry_backoff_ms, 5000);
	assert_int_equal(c->max_skew_ms, 300000);
	assert_int_equal(c->settle_ms, 1000);
	assert_int_equal(c->confirm_within_ms, 10000);
	assert_int_equal(c->queue, 8);
	assert_null(c->windows);
	assert_int_equal(c->n_windows, 0);
	mh_config_free(cfg);

	cfg = expect_ok(commands_doc(text, sizeof(text), secret("key"), ""));
	c = &cfg->commands;
	assert_true(c->enabled);
	assert_string_equal(c->hmac_key_file, secret("key"));
	assert_int_equal(c->max_attempts, 3);
	assert_int_equal(c->retry_backoff_ms, 5000);
	assert_int_equal(c->max_skew_ms, 300000);
	assert_int_equal(c->settle_ms, 1000);
	assert_int_equal(c->confirm_within_ms, 10000);
	assert_int_equal(c->queue, 8);
	assert_int_equal(c->n_windows, 0);
	mh_config_free(cfg);

	/* An empty list says there are no protect windows. */
	cfg = expect_ok(commands_doc(text, sizeof(text), secret("key"), "  protect_windows: []\n"));
	assert_null(cfg->commands.windows);
	assert_int_equal(cfg->commands.n_windows, 0);
	mh_config_free(cfg);
}

static void test_commands_values(void **state)
{
	char text[2048];
	struct mh_config *cfg;

	/* Each range's top. */
	cfg = expect_ok(commands_doc(text, sizeof(text), secret("key-0400"),
		"  max_attempts: 10\n  retry_backoff: 10m\n  max_skew: 24h\n  settle: 60s\n"
		"  confirm_within: 10m\n  queue: 64\n"));
	assert_string_equal(cfg->commands.hmac_key_file, secret("key-0400"));
	assert_int_equal(cfg->commands.max_attempts, 10);
	assert_int_equal(cfg->commands.retry_backoff_ms, 600000);
	assert_int_equal(cfg->commands.max_skew_ms, 86400000);
	assert_int_equal(cfg->commands.settle_ms, 60000);
	assert_int_equal(cfg->commands.confirm_within_ms, 600000);
	assert_int_equal(cfg->commands.queue, 64);
	mh_config_free(cfg);

	/* Each range's bottom; confirm_within may equal settle. */
	cfg = expect_ok(commands_doc(text, sizeof(text), secret("key"),
		"  max_attempts: 1\n  retry_backoff: 100ms\n  max_skew: 1s\n  settle: 100ms\n"
		"  confirm_within: 100ms\n  queue: 1\n"));
	assert_int_equal(cfg->commands.max_attempts, 1);
	assert_int_equal(cfg->commands.retry_backoff_ms, 100);
	assert_int_equal(cfg->commands.max_skew_ms, 1000);
	assert_int_equal(cfg->commands.settle_ms, 100);
	assert_int_equal(cfg->commands.confirm_within_ms, 100);
	assert_int_equal(cfg->commands.queue, 1);
	mh_config_free(cfg);
}

static void test_commands_ranges(void **state)
{
	static const struct {
		const char *body, *error;
	} bad[] = {
		/* "  max_attempts: " puts the value at column 17. */
		{"  max_attempts: 0\n",
			"t.yaml:16:17: commands.max_attempts: 0 is out of range (1 to 10)"},
		{"  max_attempts: 11\n",
			"t.yaml:16:17: commands.max_attempts: 11 is out of range (1 to 10)"},
		{"  max_attempts: three\n",
			"t.yaml:16:17: commands.max_attempts: \"three\" is not a whole number"},
		/* "  retry_backoff: ", column 18. */
		{"  retry_backoff: 99ms\n",
			"t.yaml:16:18: commands.retry_backoff: 99ms is out of range (100ms to "
			"600000ms)"},
		{"  retry_backoff: 11m\n",
			"t.yaml:16:18: commands.retry_backoff: 11m is out of range (100ms to "
			"600000ms)"},
		{"  retry_backoff: 5\n",
			"t.yaml:16:18: commands.retry_backoff: \"5\" is not a duration (a whole "
			"number with ms, s, m or h, e.g. 500ms, 15m)"},
		/* "  max_skew: ", column 13. */
		{"  max_skew: 999ms\n",
			"t.yaml:16:13: commands.max_skew: 999ms is out of range (1000ms to "
			"86400000ms)"},
		{"  max_skew: 25h\n",
			"t.yaml:16:13: commands.max_skew: 25h is out of range (1000ms to "
			"86400000ms)"},
		/* "  settle: ", column 11. */
		{"  settle: 99ms\n",
			"t.yaml:16:11: commands.settle: 99ms is out of range (100ms to 60000ms)"},
		{"  settle: 61s\n",
			"t.yaml:16:11: commands.settle: 61s is out of range (100ms to 60000ms)"},
		/* "  confirm_within: ", column 19. */
		{"  confirm_within: 99ms\n",
			"t.yaml:16:19: commands.confirm_within: 99ms is out of range (100ms to "
			"600000ms)"},
		{"  confirm_within: 11m\n",
			"t.yaml:16:19: commands.confirm_within: 11m is out of range (100ms to "
			"600000ms)"},
		/* "  queue: ", column 10. */
		{"  queue: 0\n", "t.yaml:16:10: commands.queue: 0 is out of range (1 to 64)"},
		{"  queue: 65\n", "t.yaml:16:10: commands.queue: 65 is out of range (1 to 64)"},
		{"  retries: 3\n", "t.yaml:16:3: commands.retries: unknown key"},
		{"  queue: 4\n  queue: 5\n", "t.yaml:17:3: commands.queue: key given twice"},
	};
	char text[2048];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_errors(commands_doc(text, sizeof(text), secret("key"), bad[i].body), 1,
			bad[i].error);

	/* The key file is what the section is for; a flow mapping starts at its '{'. */
	expect_errors(MINIMAL "commands: { max_attempts: 3 }\n", 1,
		"t.yaml:14:11: commands.hmac_key_file: missing required key");
	expect_errors(MINIMAL "commands: on\n", 1,
		"t.yaml:14:11: commands: expected a mapping, found a scalar");
}

/* An attempt reads the relay back every settle until confirm_within: it must get one read-back. */
static void test_commands_confirm_after_settle(void **state)
{
	char text[2048];
	struct mh_config *cfg;

	expect_errors(commands_doc(text, sizeof(text), secret("key"), "  confirm_within: 500ms\n"),
		1,
		"t.yaml:16:19: commands.confirm_within: 500ms is shorter than settle (1s, the "
		"default): an attempt would end before its first read-back of the relay");
	expect_errors(commands_doc(text, sizeof(text), secret("key"), "  settle: 20s\n"), 1,
		"t.yaml:16:11: commands.settle: 20s is longer than confirm_within (10s, the "
		"default): an attempt would end before its first read-back of the relay; raise "
		"confirm_within");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      "  settle: 5s\n  confirm_within: 2s\n"),
		1,
		"t.yaml:17:19: commands.confirm_within: 2s is shorter than settle (5s): an attempt "
		"would end before its first read-back of the relay");
	/* A wrong settle is reported once, not held against confirm_within as well. */
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      "  settle: soon\n  confirm_within: 500ms\n"),
		1,
		"t.yaml:16:11: commands.settle: \"soon\" is not a duration (a whole number with "
		"ms, s, m or h, e.g. 500ms, 15m)");

	cfg = expect_ok(commands_doc(
		text, sizeof(text), secret("key"), "  settle: 20s\n  confirm_within: 30s\n"));
	assert_int_equal(cfg->commands.settle_ms, 20000);
	assert_int_equal(cfg->commands.confirm_within_ms, 30000);
	mh_config_free(cfg);
	cfg = expect_ok(commands_doc(text, sizeof(text), secret("key"), "  settle: 10s\n"));
	assert_int_equal(cfg->commands.settle_ms, 10000);
	assert_int_equal(cfg->commands.confirm_within_ms, 10000);
	mh_config_free(cfg);
}

/* Secret files: the command key, the MQTT password, the TLS private key. */
static void test_secret_file_modes(void **state)
{
	static const struct {
		const char *name, *what;
	} open_to_others[] = {
		{"key-0644", "readable by group or others (mode 0644)"},
		{"key-0640", "readable by group or others (mode 0640)"},
		{"key-0604", "readable by group or others (mode 0604)"},
		{"key-0620", "writable or executable by group or others (mode 0620)"},
	};
	char text[2048], want[512];
	struct mh_config *cfg;

	for (size_t i = 0; i < sizeof(open_to_others) / sizeof(open_to_others[0]); i++) {
		snprintf(want, sizeof(want),
			"t.yaml:15:18: commands.hmac_key_file: %s is %s; chmod 600 it",
			secret(open_to_others[i].name), open_to_others[i].what);
		expect_errors(commands_doc(text, sizeof(text), secret(open_to_others[i].name), ""),
			1, want);
	}
	snprintf(want, sizeof(want),
		"t.yaml:15:18: commands.hmac_key_file: cannot read \"%s\": "
		"No such file or directory",
		secret("missing"));
	expect_errors(commands_doc(text, sizeof(text), secret("missing"), ""), 1, want);
	snprintf(want, sizeof(want),
		"t.yaml:15:18: commands.hmac_key_file: %s is not a regular file", secret("dir"));
	expect_errors(commands_doc(text, sizeof(text), secret("dir"), ""), 1, want);
	/* root reads any file, so "unreadable" exists only for other users. */
	if (geteuid() != 0) {
		snprintf(want, sizeof(want),
			"t.yaml:15:18: commands.hmac_key_file: cannot read \"%s\": "
			"Permission denied",
			secret("key-0000"));
		expect_errors(commands_doc(text, sizeof(text), secret("key-0000"), ""), 1, want);
	}

	/* "  password_file: " puts the value at column 18 of line 6. */
	snprintf(text, sizeof(text),
		GATEWAY "mqtt:\n  uri: tcp://h:1883\n  password_file: %s\n" SCHEDULE BUS METER1,
		secret("key-0644"));
	snprintf(want, sizeof(want),
		"t.yaml:6:18: mqtt.password_file: %s is readable by group or others (mode 0644); "
		"chmod 600 it",
		secret("key-0644"));
	expect_errors(text, 1, want);
	snprintf(text, sizeof(text),
		GATEWAY "mqtt:\n  uri: tcp://h:1883\n  password_file: %s\n" SCHEDULE BUS METER1,
		secret("key"));
	cfg = expect_ok(text);
	assert_string_equal(cfg->mqtt.password_file, secret("key"));
	mh_config_free(cfg);

	/* "    key: " puts the value at column 10 of line 7; a CA and a certificate are public. */
	snprintf(text, sizeof(text),
		GATEWAY "mqtt:\n  uri: ssl://h:8883\n  tls:\n    key: %s\n    ca: %s\n"
			"    cert: %s\n" SCHEDULE BUS METER1,
		secret("key-0640"), secret("key-0644"), secret("key-0644"));
	snprintf(want, sizeof(want),
		"t.yaml:7:10: mqtt.tls.key: %s is readable by group or others (mode 0640); chmod "
		"600 it",
		secret("key-0640"));
	expect_errors(text, 1, want);
	snprintf(text, sizeof(text),
		GATEWAY "mqtt:\n  uri: ssl://h:8883\n  tls:\n    key: %s\n    ca: %s\n"
			"    cert: %s\n" SCHEDULE BUS METER1,
		secret("key"), secret("key-0644"), secret("key-0644"));
	cfg = expect_ok(text);
	assert_string_equal(cfg->mqtt.tls.key, secret("key"));
	assert_string_equal(cfg->mqtt.tls.ca, secret("key-0644"));
	mh_config_free(cfg);
}

/* A window from @from to @to on line 17, the mapping at column 7, "from" at 15. */
#define WINDOW_DOC(from, to) "  protect_windows:\n    - { from: \"" from "\", to: \"" to "\" }\n"
#define NOT_AN_EDGE(text)                                                                          \
	"\"" text "\" is neither a date (\"YYYY-MM-DD\", quoted) nor an RFC 3339 time with its "   \
	"offset (\"2027-06-01T08:00:00+08:00\")"

static void test_protect_windows(void **state)
{
	static const char *const bad[] = {
		"soon",
		"2027-02-30",
		"2027-02-29", /* not a leap year */
		"2027-2-5",
		"27-02-05",
		"2027/02/05",
		"1969-12-31",
		"2027-02-05Z",
		"2027-02-05T08:00:00",	     /* no offset */
		"2027-02-05 08:00:00+08:00", /* a space, not T */
		"2027-02-05T08:00Z",	     /* no seconds */
		"2027-02-05T24:00:00Z",
		"2027-02-05T08:60:00Z",
		"2027-02-05T08:00:60Z", /* a leap second */
		"2027-02-05T08:00:00+08:60",
		"2027-02-05T08:00:00+0800",
		"2027-02-05T08:00:00.Z",
		"2027-02-05T08:00:00+08:00x",
	};
	char text[2048], body[512], want[512];
	struct mh_config *cfg;

	cfg = expect_ok(commands_doc(text, sizeof(text), secret("key"),
		"  protect_windows:\n"
		"    - { from: \"2027-02-05\", to: \"2027-02-12\" }\n"
		"    - { from: \"2027-06-01T08:00:00+08:00\", to: \"2027-06-01T18:00:00+08:00\" }\n"
		"    - { from: \"2027-06-01T00:00:00Z\", to: \"2027-06-01T00:00:00.250z\" }\n"
		"    - { from: \"2027-10-01t08:00:00-05:30\", to: \"2027-10-07\" }\n"
		"    - { from: \"2028-02-29\", to: \"2028-02-29\" }\n"
		"    - { from: \"2027-06-01\", to: \"2027-06-01T08:00:00+08:00\" }\n"
		/* Later as an instant, though it reads earlier. */
		"    - { from: \"2027-06-01T08:00:00+08:00\", to: \"2027-06-01T00:30:00Z\" }\n"
		"    - { from: 2027-07-01, to: 2027-07-02 }\n"));
	const struct mh_commands_config *c = &cfg->commands;
	assert_int_equal(c->n_windows, 8);
	assert_string_equal(c->windows[0].from, "2027-02-05");
	assert_string_equal(c->windows[0].to, "2027-02-12");
	assert_int_equal(c->windows[0].pos.line, 17);
	assert_int_equal(c->windows[0].pos.col, 7);
	assert_string_equal(c->windows[1].from, "2027-06-01T08:00:00+08:00");
	assert_string_equal(c->windows[3].to, "2027-10-07");
	assert_int_equal(c->windows[7].pos.line, 24);
	assert_string_equal(c->windows[7].from, "2027-07-01");
	mh_config_free(cfg);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body),
			"  protect_windows:\n    - { from: \"%s\", to: \"2027-12-31\" }\n", bad[i]);
		snprintf(want, sizeof(want),
			"t.yaml:17:15: commands.protect_windows[0].from: \"%s\" is neither a date "
			"(\"YYYY-MM-DD\", quoted) nor an RFC 3339 time with its offset "
			"(\"2027-06-01T08:00:00+08:00\")",
			bad[i]);
		expect_errors(commands_doc(text, sizeof(text), secret("key"), body), 1, want);
	}
	/* "to" stands 8 columns after the end of "from"'s value. */
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      WINDOW_DOC("2027-02-05", "next week")),
		1, "t.yaml:17:33: commands.protect_windows[0].to: " NOT_AN_EDGE("next week"));

	/* Out of order: dates, instants (whatever their offsets), and the two mixed. */
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      WINDOW_DOC("2027-02-12", "2027-02-05")),
		1,
		"t.yaml:17:7: commands.protect_windows[0]: from \"2027-02-12\" is after to "
		"\"2027-02-05\"");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      WINDOW_DOC("2027-06-01T18:00:00+08:00", "2027-06-01T08:00:00+08:00")),
		1,
		"t.yaml:17:7: commands.protect_windows[0]: from \"2027-06-01T18:00:00+08:00\" is "
		"after to \"2027-06-01T08:00:00+08:00\"");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      WINDOW_DOC("2027-06-01T08:00:00+08:00", "2027-06-01T01:00:00+02:00")),
		1,
		"t.yaml:17:7: commands.protect_windows[0]: from \"2027-06-01T08:00:00+08:00\" is "
		"after to \"2027-06-01T01:00:00+02:00\"");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      WINDOW_DOC("2027-06-02", "2027-06-01T23:00:00+08:00")),
		1,
		"t.yaml:17:7: commands.protect_windows[0]: from \"2027-06-02\" is after to "
		"\"2027-06-01T23:00:00+08:00\"");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      WINDOW_DOC("2027-06-02T08:00:00+08:00", "2027-06-01")),
		1,
		"t.yaml:17:7: commands.protect_windows[0]: from \"2027-06-02T08:00:00+08:00\" is "
		"after to \"2027-06-01\"");
	/* The second of two, on line 18. */
	expect_errors(
		commands_doc(text, sizeof(text), secret("key"),
			"  protect_windows:\n    - { from: \"2027-01-01\", to: \"2027-01-02\" }\n"
			"    - { from: \"2027-03-01\", to: \"2027-02-01\" }\n"),
		1,
		"t.yaml:18:7: commands.protect_windows[1]: from \"2027-03-01\" is after to "
		"\"2027-02-01\"");

	/* Shapes. */
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      "  protect_windows:\n    - { from: \"2027-02-05\" }\n"),
		1, "t.yaml:17:7: commands.protect_windows[0].to: missing required key");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      "  protect_windows:\n    - 2027-02-05\n"),
		1, "t.yaml:17:7: commands.protect_windows[0]: expected a mapping, found a scalar");
	expect_errors(commands_doc(text, sizeof(text), secret("key"),
			      "  protect_windows: { from: \"2027-02-05\", to: \"2027-02-06\" }\n"),
		1,
		"t.yaml:16:20: commands.protect_windows: expected a list with at least one entry, "
		"found a mapping");
	expect_errors(
		commands_doc(text, sizeof(text), secret("key"),
			"  protect_windows:\n    - { from: \"2027-02-05\", to: \"2027-02-06\", "
			"reason: spring festival }\n"),
		1, "t.yaml:17:47: commands.protect_windows[0].reason: unknown key");
}

/* Restore TZ as it was after a test that sets it. */
static void restore_tz(const char *saved)
{
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
}

static void expect_window(const char *from, const char *to, int64_t from_ms, int64_t to_ms)
{
	const struct mh_protect_window_config w = {from, to, {"t.yaml", 1, 1}};
	int64_t a = 0, b = 0;

	assert_int_equal(mh_config_window_resolve(&w, &a, &b), 0);
	assert_int_equal(a, from_ms);
	assert_int_equal(b, to_ms);
}

static void test_window_resolve(void **state)
{
	const char *tz = getenv("TZ");
	char *saved = tz ? strdup(tz) : NULL;
	const struct mh_protect_window_config bad[] = {
		{"soon", "2027-02-12", {"t.yaml", 1, 1}},
		{"2027-02-05", NULL, {"t.yaml", 1, 1}},
		{"2027-02-05", "2027-02-30", {"t.yaml", 1, 1}},
	};
	int64_t a, b;

	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
	/* From local midnight of the first day to local midnight after the last (UTC+8). */
	expect_window("2027-02-05", "2027-02-12", 1801756800000 /* 2027-02-04T16:00:00Z */,
		1802448000000 /* 2027-02-12T16:00:00Z */);
	expect_window("2027-06-01T08:00:00+08:00", "2027-06-01T18:00:00+08:00",
		1811808000000 /* 2027-06-01T00:00:00Z */, 1811844000000 /* 10:00:00Z */);
	/* A time ends where it says; a date "to" at the end of its day. */
	expect_window("2027-06-01T08:00:00.250Z", "2027-06-01", 1811836800250,
		1811865600000 /* 2027-06-01T16:00:00Z */);
	expect_window("2027-06-01", "2027-06-01T13:30:00Z", 1811779200000 /* 2027-05-31T16:00Z */,
		1811856600000);
	/* A leap day is one day. */
	expect_window("2028-02-29", "2028-02-29", 1835366400000 /* 2028-02-28T16:00:00Z */,
		1835452800000);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mh_config_window_resolve(&bad[i], &a, &b), -EINVAL);

	/* The same dates in another zone are other instants: the runtime sets TZ first. */
	setenv("TZ", "UTC", 1);
	tzset();
	expect_window("2027-02-05", "2027-02-12", 1801785600000 /* 2027-02-05T00:00:00Z */,
		1802476800000 /* 2027-02-13T00:00:00Z */);
	expect_window("2027-06-01T08:00:00+08:00", "2027-06-01T18:00:00+08:00", 1811808000000,
		1811844000000);
	/* The day summer time starts in Berlin has 23 hours. */
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	expect_window("2027-03-28", "2027-03-28", 1806188400000 /* 2027-03-27T23:00:00Z */,
		1806271200000 /* 2027-03-28T22:00:00Z */);

	restore_tz(saved);
	free(saved);
}

/* A loaded window resolves; reloads may change commands (no restart key among them). */
static void test_commands_loaded_and_live(void **state)
{
	const char *tz = getenv("TZ");
	char *saved = tz ? strdup(tz) : NULL;
	char text[2048];
	struct errs e = {0};
	struct mh_config *old = expect_ok(MINIMAL);
	struct mh_config *cfg = expect_ok(commands_doc(text, sizeof(text), secret("key"),
		"  max_attempts: 5\n" WINDOW_DOC("2027-02-05", "2027-02-12")));
	int64_t a, b;

	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
	assert_int_equal(mh_config_window_resolve(&cfg->commands.windows[0], &a, &b), 0);
	assert_int_equal(a, 1801756800000);
	assert_int_equal(b, 1802448000000);
	restore_tz(saved);
	free(saved);

	assert_int_equal(mh_config_restart_keys(old, cfg, on_error, &e), 0);
	assert_int_equal(e.n, 0);
	assert_int_equal(mh_config_restart_keys(cfg, old, on_error, &e), 0);
	assert_int_equal(e.n, 0);
	mh_config_free(old);
	mh_config_free(cfg);
}

/* ---- relay control --------------------------------------------------- */

/* A DL/T 645 bus (lines 8-12) whose meters start on line 13. */
#define DLT_BUS                                                                                    \
	"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: dlt645\n    meters:\n"
#define DLT_METER(id, addr, prof, extra)                                                           \
	"      - { id: " id ", address: \"" addr "\", profile: " prof extra " }\n"
/* One meter (line 13) on profile "d", which is on lines 14-16; its control follows on line 17. */
#define DLT_PROFILE_D "profiles:\n  d:\n    points: [ { di: \"00010000\" } ]\n"
#define DLT_PROFILE_HEAD HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "d", "") DLT_PROFILE_D
/* The control mapping on line 17, its keys from line 18, each at column 7. */
#define DLT_CONTROL(keys) DLT_PROFILE_HEAD "    control:\n" keys

/* Profile "d" with its control (line 16) before its points. */
#define DLT_CONTROL_FIRST                                                                          \
	"profiles:\n  d:\n    control: { trip: 1 }\n    points: [ { di: \"00010000\" } ]\n"

static const struct mh_dlt645_control_config *dlt645_control(
	const struct mh_config *cfg, const char *profile)
{
	const struct mh_profile *p = mh_config_profile(cfg, profile);

	assert_non_null(p);
	assert_true(p->control.present);
	return &p->control.dlt645;
}

static void test_dlt645_control(void **state)
{
	const struct mh_dlt645_control_config *c;
	const struct mh_meter_config *m;
	struct mh_config *cfg;

	/* Every default: level 2, password 000000, operator 00000000, close direct, no ESAM. */
	cfg = expect_ok(DLT_PROFILE_HEAD "    control: {}\n");
	c = dlt645_control(cfg, "d");
	assert_int_equal(c->level, 2);
	assert_memory_equal(c->password, ((const uint8_t[]){0, 0, 0}), 3);
	assert_memory_equal(c->operator_code, ((const uint8_t[]){0, 0, 0, 0}), 4);
	assert_int_equal(c->close, MH_CLOSE_DIRECT);
	assert_false(c->esam);
	assert_int_equal(mh_config_profile(cfg, "d")->control.pos.line, 17);
	assert_int_equal(mh_config_profile(cfg, "d")->control.pos.col, 14);
	m = &cfg->buses[0].meters[0];
	assert_true(m->has_control);
	assert_memory_equal(&m->control, c, sizeof(*c));
	mh_config_free(cfg);

	/* Every key, in wire order: P0 and C0 hold the lowest two digits. */
	cfg = expect_ok(DLT_CONTROL(
		"      password_level: 4\n      password: \"123456\"\n"
		"      operator: \"0a0B0c0D\"\n      close: permit\n      esam: true\n"));
	c = dlt645_control(cfg, "d");
	assert_int_equal(c->level, 4);
	assert_memory_equal(c->password, ((const uint8_t[]){0x56, 0x34, 0x12}), 3);
	assert_memory_equal(c->operator_code, ((const uint8_t[]){0x0D, 0x0C, 0x0B, 0x0A}), 4);
	assert_int_equal(c->close, MH_CLOSE_PERMIT);
	assert_true(c->esam);
	assert_memory_equal(&cfg->buses[0].meters[0].control, c, sizeof(*c));
	mh_config_free(cfg);

	/* Unquoted digits are the same text to this YAML parser; the ends of the level's range. */
	cfg = expect_ok(DLT_CONTROL("      password: 000123\n      password_level: 99\n"
				    "      esam: false\n"));
	c = dlt645_control(cfg, "d");
	assert_memory_equal(c->password, ((const uint8_t[]){0x23, 0x01, 0x00}), 3);
	assert_int_equal(c->level, 99);
	assert_false(c->esam);
	mh_config_free(cfg);
	cfg = expect_ok(DLT_CONTROL("      password_level: 0\n"));
	assert_int_equal(dlt645_control(cfg, "d")->level, 0);
	mh_config_free(cfg);

	/* No control: the meter cannot be controlled, and holds the defaults. */
	cfg = expect_ok(
		HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "dlt645-single-phase", ""));
	m = &cfg->buses[0].meters[0];
	assert_false(m->has_control);
	assert_int_equal(m->control.level, 2);
	assert_false(mh_config_profile(cfg, "dlt645-single-phase")->control.present);
	mh_config_free(cfg);
}

static void test_dlt645_control_errors(void **state)
{
	/* "      password_level: " puts the value at column 23. */
	expect_errors(DLT_CONTROL("      password_level: 100\n"), 1,
		"t.yaml:18:23: profiles.d.control.password_level: 100 is out of range (0 to 99)");
	/* "      password: " and "      operator: ", column 17. */
	expect_errors(DLT_CONTROL("      password: \"12345\"\n"), 1,
		"t.yaml:18:17: profiles.d.control.password: \"12345\" is not a password (6 decimal "
		"digits, quoted, e.g. \"000000\")");
	expect_errors(DLT_CONTROL("      password: \"1234567\"\n"), 1,
		"t.yaml:18:17: profiles.d.control.password: \"1234567\" is not a password "
		"(6 decimal digits, quoted, e.g. \"000000\")");
	expect_errors(DLT_CONTROL("      password: \"12345a\"\n"), 1,
		"t.yaml:18:17: profiles.d.control.password: \"12345a\" is not a password "
		"(6 decimal digits, quoted, e.g. \"000000\")");
	/* The codec's AA wildcard is not a password digit. */
	expect_errors(DLT_CONTROL("      password: \"AA0000\"\n"), 1,
		"t.yaml:18:17: profiles.d.control.password: \"AA0000\" is not a password "
		"(6 decimal digits, quoted, e.g. \"000000\")");
	expect_errors(DLT_CONTROL("      operator: \"0000000G\"\n"), 1,
		"t.yaml:18:17: profiles.d.control.operator: \"0000000G\" is not an operator code "
		"(8 hex digits, quoted, e.g. \"00000000\")");
	expect_errors(DLT_CONTROL("      operator: \"0000000\"\n"), 1,
		"t.yaml:18:17: profiles.d.control.operator: \"0000000\" is not an operator code (8 "
		"hex digits, quoted, e.g. \"00000000\")");
	/* "      close: ", column 14; "      esam: ", column 13. */
	expect_errors(DLT_CONTROL("      close: later\n"), 1,
		"t.yaml:18:14: profiles.d.control.close: \"later\" is not one of direct or permit");
	expect_errors(DLT_CONTROL("      esam: yes\n"), 1,
		"t.yaml:18:13: profiles.d.control.esam: \"yes\" is not true or false");
	/* The other protocol's keys, named. */
	expect_errors(DLT_CONTROL("      trip: { table: coil, address: 0, value: 1 }\n"
				  "      relay: { table: discrete, address: 0 }\n"),
		2,
		"t.yaml:18:7: profiles.d.control.trip: 'trip' is a Modbus control key; this "
		"profile reads DL/T 645",
		"t.yaml:19:7: profiles.d.control.relay: 'relay' is a Modbus control key; this "
		"profile reads DL/T 645");
	expect_errors(DLT_CONTROL("      pin: \"000000\"\n"), 1,
		"t.yaml:18:7: profiles.d.control.pin: unknown key");
	expect_errors(DLT_PROFILE_HEAD "    control: yes\n", 1,
		"t.yaml:17:14: profiles.d.control: expected a mapping, found a scalar");
	/* Where the control stands before the points, the points still decide. */
	expect_errors(HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "d", "") DLT_CONTROL_FIRST,
		1,
		"t.yaml:16:16: profiles.d.control.trip: 'trip' is a Modbus control key; this "
		"profile reads DL/T 645");
}

/* One relay point on line 17; the control mapping on line 18, its keys from line 19. */
#define MODBUS_CONTROL(keys)                                                                       \
	PROFILE_HEAD P("name: relay, table: discrete, address: 0") "    control:\n" keys
#define TRIP "      trip: { table: coil, address: 0x0000, value: 1 }\n"
#define RESTORE "      restore: { table: coil, address: 0x0000, value: 0 }\n"
#define RELAY "      relay: { table: discrete, address: 0x0000, open_when: 1 }\n"

static void test_modbus_control(void **state)
{
	const struct mh_control_config *c;
	struct mh_config *cfg;

	/* DESIGN.md's example. */
	cfg = expect_ok(MODBUS_CONTROL(TRIP RESTORE RELAY));
	c = &mh_config_profile(cfg, "my")->control;
	assert_true(c->present);
	assert_int_equal(c->pos.line, 19);
	assert_int_equal(c->pos.col, 7);
	assert_int_equal(c->trip.table, MH_MODBUS_COIL);
	assert_int_equal(c->trip.address, 0);
	assert_int_equal(c->trip.value, 1);
	assert_int_equal(c->restore.table, MH_MODBUS_COIL);
	assert_int_equal(c->restore.value, 0);
	assert_int_equal(c->relay.table, MH_MODBUS_DISCRETE);
	assert_int_equal(c->relay.open_when, 1);
	assert_true(cfg->buses[0].meters[0].has_control);
	mh_config_free(cfg);

	/* Holding registers, the widest values, and open_when's default. */
	cfg = expect_ok(
		MODBUS_CONTROL("      trip: { table: holding, address: 0x0100, value: 0xFF00 }\n"
			       "      restore: { table: holding, address: 0xFFFF, value: 65535 }\n"
			       "      relay: { table: input, address: 0x0010 }\n"));
	c = &mh_config_profile(cfg, "my")->control;
	assert_int_equal(c->trip.table, MH_MODBUS_HOLDING);
	assert_int_equal(c->trip.address, 0x0100);
	assert_int_equal(c->trip.value, 0xFF00);
	assert_int_equal(c->restore.address, 0xFFFF);
	assert_int_equal(c->restore.value, 0xFFFF);
	assert_int_equal(c->relay.table, MH_MODBUS_INPUT);
	assert_int_equal(c->relay.address, 0x0010);
	assert_int_equal(c->relay.open_when, 1);
	mh_config_free(cfg);
	cfg = expect_ok(MODBUS_CONTROL(
		TRIP RESTORE "      relay: { table: holding, address: 2, open_when: 0x8000 }\n"));
	c = &mh_config_profile(cfg, "my")->control;
	assert_int_equal(c->relay.table, MH_MODBUS_HOLDING);
	assert_int_equal(c->relay.open_when, 0x8000);
	mh_config_free(cfg);

	/* Without control, a Modbus meter cannot be controlled. */
	cfg = expect_ok(MINIMAL);
	assert_false(cfg->buses[0].meters[0].has_control);
	assert_false(mh_config_profile(cfg, "eastron-sdm120")->control.present);
	mh_config_free(cfg);
}

static void test_modbus_control_errors(void **state)
{
	/* Each of trip, restore and relay is required: the error stands at the mapping. */
	expect_errors(MODBUS_CONTROL(TRIP RESTORE), 1,
		"t.yaml:19:7: profiles.my.control.relay: missing required key");
	expect_errors(
		PROFILE_HEAD P("name: relay, table: discrete, address: 0") "    control: {}\n", 3,
		"t.yaml:18:14: profiles.my.control.trip: missing required key",
		"t.yaml:18:14: profiles.my.control.restore: missing required key",
		"t.yaml:18:14: profiles.my.control.relay: missing required key");
	/* "      trip: {" puts the mapping at column 13. */
	expect_errors(MODBUS_CONTROL("      trip: { table: coil, address: 0 }\n" RESTORE RELAY), 1,
		"t.yaml:19:13: profiles.my.control.trip.value: missing required key");
	expect_errors(MODBUS_CONTROL("      trip: { address: 0, value: 1 }\n" RESTORE RELAY), 1,
		"t.yaml:19:13: profiles.my.control.trip.table: missing required key");
	expect_errors(MODBUS_CONTROL(TRIP RESTORE "      relay: { table: coil }\n"), 1,
		"t.yaml:21:14: profiles.my.control.relay.address: missing required key");
	/* A relay is driven by a coil or a holding register, never by a read-only table. */
	expect_errors(MODBUS_CONTROL(
			      "      trip: { table: discrete, address: 0x0000, value: 1 }\n" RESTORE
				      RELAY),
		1,
		"t.yaml:19:22: profiles.my.control.trip.table: \"discrete\" is not one of coil or "
		"holding");
	expect_errors(
		MODBUS_CONTROL(
			"      trip: { table: coil, address: 0x0000, value: 2 }\n" RESTORE RELAY),
		1, "t.yaml:19:52: profiles.my.control.trip.value: a coil is 0 or 1, not 2");
	expect_errors(
		MODBUS_CONTROL(
			"      trip: { table: coil, address: 0x10000, value: 1 }\n" RESTORE RELAY),
		1,
		"t.yaml:19:37: profiles.my.control.trip.address: 0x10000 is out of range (0 to "
		"65535)");
	expect_errors(
		MODBUS_CONTROL(TRIP
			"      restore: { table: holding, address: 0x0010, value: 65536 }\n" RELAY),
		1,
		"t.yaml:20:58: profiles.my.control.restore.value: 65536 is out of range (0 to "
		"65535)");
	expect_errors(MODBUS_CONTROL(TRIP RESTORE
			      "      relay: { table: discrete, address: 0x0005, open_when: 2 }\n"),
		1,
		"t.yaml:21:61: profiles.my.control.relay.open_when: a discrete input reads 0 or "
		"1, not 2");
	expect_errors(MODBUS_CONTROL(TRIP RESTORE
			      "      relay: { table: coil, address: 0x0005, open_when: 2 }\n"),
		1, "t.yaml:21:57: profiles.my.control.relay.open_when: a coil reads 0 or 1, not 2");
	/* The other protocol's keys, named. */
	expect_errors(MODBUS_CONTROL(TRIP RESTORE RELAY "      password: \"000000\"\n"
							"      esam: true\n"),
		2,
		"t.yaml:22:7: profiles.my.control.password: 'password' is a DL/T 645 control key; "
		"this profile reads Modbus",
		"t.yaml:23:7: profiles.my.control.esam: 'esam' is a DL/T 645 control key; this "
		"profile reads Modbus");
}

/* A meter's own control keys over its profile's, field by field. */
static void test_meter_control_override(void **state)
{
	// clang-format off
	static const char text[] =
		HEAD DLT_BUS                                                                           /* 1-12 */
		DLT_METER("m-1", "000000000001", "d", "")                                              /* 13 */
		DLT_METER("m-2", "000000000002", "d", ", control: { password: \"222222\" }")          /* 14 */
		DLT_METER("m-3", "000000000003", "d", ", control: { password_level: 98, esam: true, "
			"close: direct, operator: \"FFFFFFFF\" }")                                     /* 15 */
		DLT_METER("m-4", "000000000004", "dlt645-single-phase", "")                            /* 16 */
		DLT_METER("m-5", "000000000005", "dlt645-single-phase",
			", control: { password: \"333333\" }")                                         /* 17 */
		DLT_METER("m-6", "000000000006", "dlt645-single-phase", ", control: {}")               /* 18 */
		"profiles:\n  d:\n    points: [ { di: \"00010000\" } ]\n"                               /* 19-21 */
		"    control: { password_level: 4, password: \"111111\", operator: \"0000000A\", "
		"close: permit }\n";                                                                    /* 22 */
	// clang-format on
	static const uint8_t pw1[3] = {0x11, 0x11, 0x11}, pw2[3] = {0x22, 0x22, 0x22},
			     pw3[3] = {0x33, 0x33, 0x33}, zero[4] = {0};
	static const uint8_t op_a[4] = {0x0A, 0, 0, 0}, op_f[4] = {0xFF, 0xFF, 0xFF, 0xFF};
	struct mh_config *cfg = expect_ok(text);
	const struct mh_meter_config *m = cfg->buses[0].meters;

	/* m-1: the profile's, as it is. */
	assert_true(m[0].has_control);
	assert_int_equal(m[0].control.level, 4);
	assert_memory_equal(m[0].control.password, pw1, 3);
	assert_memory_equal(m[0].control.operator_code, op_a, 4);
	assert_int_equal(m[0].control.close, MH_CLOSE_PERMIT);
	assert_false(m[0].control.esam);
	/* m-2: its own password, the rest the profile's. */
	assert_true(m[1].has_control);
	assert_int_equal(m[1].control.level, 4);
	assert_memory_equal(m[1].control.password, pw2, 3);
	assert_memory_equal(m[1].control.operator_code, op_a, 4);
	assert_int_equal(m[1].control.close, MH_CLOSE_PERMIT);
	/* m-3: four fields of its own, the profile's password. */
	assert_int_equal(m[2].control.level, 98);
	assert_memory_equal(m[2].control.password, pw1, 3);
	assert_memory_equal(m[2].control.operator_code, op_f, 4);
	assert_int_equal(m[2].control.close, MH_CLOSE_DIRECT);
	assert_true(m[2].control.esam);
	/* The profile itself is untouched by its meters. */
	assert_memory_equal(dlt645_control(cfg, "d")->password, pw1, 3);
	assert_false(dlt645_control(cfg, "d")->esam);
	/* m-4: a built-in profile without control, and no control of its own. */
	assert_false(m[3].has_control);
	/* m-5 and m-6: the meter's control alone makes it controllable, over the defaults. */
	assert_true(m[4].has_control);
	assert_int_equal(m[4].control.level, 2);
	assert_memory_equal(m[4].control.password, pw3, 3);
	assert_memory_equal(m[4].control.operator_code, zero, 4);
	assert_int_equal(m[4].control.close, MH_CLOSE_DIRECT);
	assert_true(m[5].has_control);
	assert_int_equal(m[5].control.level, 2);
	assert_memory_equal(m[5].control.password, zero, 3);
	mh_config_free(cfg);
}

static void test_meter_control_errors(void **state)
{
	/* On a Modbus meter, at the meter's control mapping ('{' at column 69). */
	expect_errors(HEAD BUS
		"      - { id: m-0001, address: 1, profile: eastron-sdm120, control: { password: "
		"\"123456\" } }\n",
		1,
		"t.yaml:13:69: buses[0].meters[0].control: a meter's control gives DL/T 645 "
		"passwords, but profile \"eastron-sdm120\" reads Modbus: a Modbus meter is "
		"controlled by its profile's control (trip, restore, relay)");
	/* Modbus keys belong to a profile. */
	expect_errors(HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "dlt645-single-phase",
			      ", control: { trip: 1 }"),
		1,
		"t.yaml:13:89: buses[0].meters[0].control.trip: 'trip' is a Modbus control key, "
		"which only a profile's control holds; a meter's control gives DL/T 645 passwords "
		"(password_level, password, operator, close, esam)");
	expect_errors(HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "dlt645-single-phase",
			      ", control: { password: \"12345\" }"),
		1,
		"t.yaml:13:99: buses[0].meters[0].control.password: \"12345\" is not a password (6 "
		"decimal digits, quoted, e.g. \"000000\")");
	expect_errors(HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "dlt645-single-phase",
			      ", control: { level: 4 }"),
		1, "t.yaml:13:89: buses[0].meters[0].control.level: unknown key");
	/* A meter whose profile does not exist has that one error. */
	expect_errors(HEAD DLT_BUS DLT_METER("m-0001", "000000000001", "nope",
			      ", control: { password: \"123456\" }"),
		1, "t.yaml:13:9: buses[0].meters[0].profile: no profile named \"nope\"");
}

/* The commands example's config: the key file and the meter's control are %s. */
// clang-format off
#define CONTRACT_EXAMPLE \
		GATEWAY MQTT SCHEDULE \
		"commands:\n" \
		"  hmac_key_file: %s   # required; refused if group/other can read it (mode & 077)\n" \
		"  max_attempts: 3          # 1..10, control attempts per command\n" \
		"  retry_backoff: 5s        # wait before attempt 2; doubles each attempt, capped at 60 s\n" \
		"  max_skew: 300s           # |ts - now| allowed\n" \
		"  settle: 1s               # wait after a control frame before the first read-back\n" \
		"  confirm_within: 10s      # read-backs of one attempt stop after this\n" \
		"  queue: 8                 # commands waiting per meter\n" \
		"  protect_windows:         # 保电期: no trip inside; gateway local time\n" \
		"    - { from: \"2027-02-05\", to: \"2027-02-12\" }\n" \
		"    - { from: \"2027-06-01T08:00:00+08:00\", to: \"2027-06-01T18:00:00+08:00\" }\n" \
		"buses:\n" \
		"  - { name: rs485-1, device: /dev/ttyS1, protocol: dlt645, meters: [\n" \
		"      { id: m-0001, address: \"000000000001\", profile: dlt645-x,\n" \
		"        control: %s } ] }\n" \
		"  - { name: rs485-2, device: /dev/ttyS2, protocol: modbus, meters: [\n" \
		"      { id: m-0101, address: 1, profile: my-modbus } ] }\n" \
		"profiles:\n" \
		"  dlt645-x:\n" \
		"    points: [ { di: \"00010000\" } ]\n" \
		"    control: { password_level: 2, password: \"000000\", operator: \"00000000\", close: direct }  # close: direct (N1 1C) | permit (N1 1B)\n" \
		"  my-modbus:\n" \
		"    points: [ { name: energy_import_kwh, table: holding, address: 0x0100, type: float32 } ]\n" \
		"    control:\n" \
		"      trip:    { table: coil, address: 0x0000, value: 1 }     # table coil | holding\n" \
		"      restore: { table: coil, address: 0x0000, value: 0 }\n" \
		"      relay:   { table: discrete, address: 0x0000, open_when: 1 }  # coil | discrete | holding | input\n"
// clang-format on

/* The commands contract's config (README), with a key file that exists and real points. */
static void test_commands_contract_example(void **state)
{
	/* The contract writes the meter's keys as a list of names; with values they load. */
	static const char *const meter_control[] = {
		"{ password_level, password, operator, close }",
		"{ password: \"000001\" }",
	};
	char text[4096];
	struct mh_config *cfg;
	const struct mh_profile *p;

	snprintf(text, sizeof(text), CONTRACT_EXAMPLE, secret("key"), meter_control[0]);
	expect_errors(text, 4,
		"t.yaml:22:34: buses[0].meters[0].control.password_level: expected a whole number, "
		"found nothing",
		"t.yaml:22:44: buses[0].meters[0].control.password: expected a password, found "
		"nothing",
		"t.yaml:22:54: buses[0].meters[0].control.operator: expected an operator code, "
		"found nothing",
		"t.yaml:22:62: buses[0].meters[0].control.close: expected one of the listed words, "
		"found nothing");

	snprintf(text, sizeof(text), CONTRACT_EXAMPLE, secret("key"), meter_control[1]);
	cfg = expect_ok(text);
	assert_true(cfg->commands.enabled);
	assert_int_equal(cfg->commands.n_windows, 2);
	assert_int_equal(cfg->commands.windows[1].pos.line, 18);
	assert_true(cfg->buses[0].meters[0].has_control);
	assert_memory_equal(
		cfg->buses[0].meters[0].control.password, ((const uint8_t[]){0x01, 0x00, 0x00}), 3);
	p = mh_config_profile(cfg, "my-modbus");
	assert_true(p->control.present);
	assert_int_equal(p->control.relay.table, MH_MODBUS_DISCRETE);
	assert_true(cfg->buses[1].meters[0].has_control);
	mh_config_free(cfg);
}

/* ---- tariffs ---------------------------------------------------------- */

/* Lines 14-.. after MINIMAL. */
#define TARIFF_HEAD "tariff:\n  default: flat\n  periods:\n"
#define PERIOD(name, from, to) "    - { name: " name ", from: \"" from "\", to: \"" to "\" }\n"

static void test_tariffs(void **state)
{
	struct mh_config *cfg = expect_ok(MINIMAL TARIFF_HEAD PERIOD("peak", "08:00", "11:00")
			PERIOD("valley", "23:00", "07:00")
		"  seasons:\n"
		"    - { months: [7, 8], periods: [ { name: sharp, from: \"19:00\", to: \"21:00\" } ] }\n"
		"    - { days: [weekend], periods: [ { name: valley, from: \"00:00\", to: \"24:00\" } ] }\n"
		"tariffs:\n"
		"  night-shift: { periods: [ { name: valley, from: \"08:00\", to: \"16:00\" } ], default: flat }\n");
	const struct mh_tariff *t = cfg->tariff;

	assert_non_null(t);
	assert_int_equal(t->base.n, 2);
	assert_string_equal(t->default_period, "flat");
	assert_string_equal(mh_tariff_period(t, 11, 3, 9 * 60), "peak");
	assert_string_equal(mh_tariff_period(t, 11, 3, 0), "valley");
	assert_string_equal(mh_tariff_period(t, 11, 3, 12 * 60), "flat");
	assert_string_equal(mh_tariff_period(t, 7, 3, 20 * 60), "sharp");
	assert_string_equal(mh_tariff_period(t, 11, 6, 9 * 60), "valley");
	assert_int_equal(cfg->n_tariffs, 1);
	assert_string_equal(mh_tariff_period(mh_config_tariff(cfg, "night-shift"), 11, 3, 9 * 60),
		"valley");
	assert_null(mh_config_tariff(cfg, "nope"));
	assert_int_equal(cfg->schedule.daily_freeze_min, 0);
	assert_int_equal(cfg->schedule.retries, 2);
	mh_config_free(cfg);

	/* An edge between two 15-minute boundaries would split an interval. */
	expect_errors(MINIMAL TARIFF_HEAD PERIOD("peak", "08:10", "11:00"), 1,
		"t.yaml:17:7: tariff.periods[0]: 08:10 is not a boundary of the 900 s interval "
		"(counted from midnight), so an interval would straddle two periods");
	expect_errors(MINIMAL TARIFF_HEAD PERIOD("peak", "08:00", "11:00")
			PERIOD("valley", "22:00", "08:30"), 1,
		"t.yaml:18:7: tariff.periods[1]: \"valley\" (22:00-08:30) overlaps \"peak\" "
		"(08:00-11:00, line 17): a moment belongs to one period");
	expect_errors(MINIMAL "tariff:\n  periods:\n" PERIOD("peak", "8:00", "25:00"), 3,
		"t.yaml:16:27: tariff.periods[0].from: \"8:00\" is not a time of day (HH:MM, quoted, "
		"e.g. \"08:00\")",
		"t.yaml:16:39: tariff.periods[0].to: \"25:00\" is not a time of day (00:00 to 24:00)",
		"t.yaml:15:3: tariff.default: missing required key");
	expect_errors(MINIMAL TARIFF_HEAD PERIOD("peak", "08:00", "11:00")
		"  seasons:\n    - { months: [13], days: [someday], periods: [] }\n    - { periods: [ { name: x, from: \"01:00\", to: \"02:00\" } ] }\n", 4,
		"t.yaml:19:18: tariff.seasons[0].months: \"13\" is not a month (1 to 12)",
		"t.yaml:19:30: tariff.seasons[0].days: \"someday\" is not a day (sun, mon, tue, "
		"wed, thu, fri, sat, weekend or weekdays)",
		"t.yaml:19:49: tariff.seasons[0].periods: expected a list with at least one entry, "
		"found an empty list",
		"t.yaml:20:7: tariff.seasons[1]: a season says when it applies: give months, days or "
		"both");
	/* A meter picks a named tariff; a name nobody defined is an error. */
	cfg = expect_ok(HEAD BUS
		"      - { id: m-0001, address: 1, profile: eastron-sdm120, tariff: night }\n"
		"tariffs:\n  night: { periods: [ { name: valley, from: \"22:00\", to: \"06:00\" } ], "
		"default: flat }\n");
	assert_ptr_equal(cfg->buses[0].meters[0].tariff, mh_config_tariff(cfg, "night"));
	assert_null(cfg->tariff);
	mh_config_free(cfg);
	expect_errors(HEAD BUS
		"      - { id: m-0001, address: 1, profile: eastron-sdm120, tariff: day }\n", 1,
		"t.yaml:13:9: buses[0].meters[0].tariff: no tariff named \"day\" (name it under "
		"tariffs:)");
}

static void test_daily_freeze(void **state)
{
	struct mh_config *cfg = expect_ok(GATEWAY MQTT
		"schedule:\n  interval: 15m\n  daily_freeze: \"01:30\"\n  retries: 0\n" BUS METER1);

	assert_int_equal(cfg->schedule.daily_freeze_min, 90);
	assert_int_equal(cfg->schedule.retries, 0);
	mh_config_free(cfg);
	expect_errors(GATEWAY MQTT "schedule:\n  interval: 1h\n  daily_freeze: \"00:30\"\n" BUS
			METER1, 1,
		"t.yaml:8:17: schedule.daily_freeze: 00:30 is not a boundary of the 3600 s interval "
		"(counted from midnight)");
}

/* ---- many errors at once --------------------------------------------- */

static void test_many_errors_in_one_file(void **state)
{
	expect_errors(many_errors, 8,
		"t.yaml:3:13: gateway.timezone: unknown time zone \"Mars/Base\" (expected a tz "
		"database name such as Asia/Shanghai)",
		"t.yaml:4:3: gateway.colour: unknown key",
		"t.yaml:6:8: mqtt.uri: \"http://broker\" must start with tcp://, mqtt://, ssl:// "
		"or mqtts://",
		"t.yaml:8:13: schedule.interval: 7s does not divide a day evenly, so boundaries "
		"could not be counted from midnight",
		"t.yaml:13:11: buses[0].baud: \"fast\" is not a whole number",
		"t.yaml:15:9: buses[0].meters[0]: \"248\" is not a Modbus slave address (1 to 247)",
		"t.yaml:16:9: buses[0].meters[1].profile: no profile named \"nope\"",
		"t.yaml:16:9: buses[0].meters[1]: meter id \"m-1\" is used twice (first at line "
		"15)");
}

/*
 * A bus that lacks its device still has meters worth checking: one run
 * should show the missing key and the meter's unknown profile together.
 */
static void test_errors_under_incomplete_bus(void **state)
{
	/* Lines 8-11: a bus without "device"; line 12: its meter. */
	static const char text[] = HEAD "buses:\n  - name: rs485-1\n    protocol: modbus\n"
					"    meters:\n" M("m-0001", "1", "nope");

	expect_errors(text, 2, "t.yaml:9:5: buses[0].device: missing required key",
		"t.yaml:12:9: buses[0].meters[0].profile: no profile named \"nope\"");
}

/* ---- names ----------------------------------------------------------- */

static void test_names(void **state)
{
	struct errs e = {0};
	struct mh_config *cfg;

	/* A meter id becomes an MQTT topic level: no '/', '+' or '#'. */
	expect_errors(HEAD BUS M("m/1", "1", "eastron-sdm120"), 1,
		"t.yaml:13:15: buses[0].meters[0].id: \"m/1\" may hold only letters, digits, '-', "
		"'_', '.' and ':'");
	expect_errors(HEAD BUS M("m+1", "1", "eastron-sdm120"), 1,
		"t.yaml:13:15: buses[0].meters[0].id: \"m+1\" may hold only letters, digits, '-', "
		"'_', '.' and ':'");
	/*
	 * An empty quoted name would make an empty topic level ("meterhub/");
	 * the wording of the error is free, its position and path are not.
	 */
	int rc = load("gateway:\n  id: \"\"\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE BUS METER1,
		&e, &cfg);
	if (cfg)
		print_message("an empty gateway.id was accepted: client_id \"%s\"\n",
			cfg->mqtt.client_id);
	mh_config_free(cfg);
	errs_dump(&e);
	size_t n = e.n;
	bool placed =
		n >= 1 &&
		!strncmp(e.line[0], "t.yaml:2:7: gateway.id: ", strlen("t.yaml:2:7: gateway.id: "));
	errs_free(&e);
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(n, 1);
	assert_true(placed);
}

/* ---- what a good file gives ------------------------------------------ */

static void test_design_example_loads(void **state)
{
	struct mh_config *cfg = expect_ok(design_modbus);

	assert_string_equal(cfg->file, "t.yaml");
	assert_string_equal(cfg->gateway.id, "gw-001");
	assert_string_equal(cfg->gateway.timezone, "Asia/Shanghai");
	assert_string_equal(cfg->store.path, "/var/lib/meterhub");
	assert_int_equal(cfg->store.max_bytes, 268435456);
	assert_string_equal(cfg->mqtt.uri, "tcp://127.0.0.1:1883");
	assert_string_equal(cfg->mqtt.client_id, "meterhub-gw-001");
	assert_string_equal(cfg->mqtt.topic_prefix, "meterhub/gw-001");
	assert_string_equal(cfg->mqtt.username, "u");
	assert_null(cfg->mqtt.password_file);
	assert_null(cfg->mqtt.tls.ca);
	assert_int_equal(cfg->schedule.interval_ms, 900000);

	assert_int_equal(cfg->n_buses, 1);
	const struct mh_bus_config *bus = &cfg->buses[0];
	assert_string_equal(bus->name, "rs485-2");
	assert_string_equal(bus->device, "/dev/ttyS2");
	assert_int_equal(bus->baud, 9600);
	assert_int_equal(bus->parity, MH_PARITY_NONE);
	assert_int_equal(bus->protocol, MH_PROTO_MODBUS);
	assert_int_equal(bus->timeout_ms, 500);
	assert_int_equal(bus->pos.line, 10);
	assert_int_equal(bus->pos.col, 5);

	assert_int_equal(bus->n_meters, 1);
	const struct mh_meter_config *m = &bus->meters[0];
	assert_string_equal(m->id, "m-0101");
	assert_string_equal(m->address, "1");
	assert_int_equal(m->unit, 1);
	assert_string_equal(m->profile_name, "my-meter");
	assert_int_equal(m->pos.line, 16);
	assert_int_equal(m->pos.col, 9);
	assert_string_equal(m->pos.file, "t.yaml");

	const struct mh_profile *p = m->profile;
	assert_non_null(p);
	assert_ptr_equal(p, mh_config_profile(cfg, "my-meter"));
	assert_string_equal(p->name, "my-meter");
	assert_false(p->builtin);
	assert_int_equal(p->protocol, MH_PROTO_MODBUS);
	assert_int_equal(p->pos.line, 18);
	assert_int_equal(p->pos.col, 3);
	assert_int_equal(p->n_points, 2);

	const struct mh_point *e = &p->points[0];
	assert_string_equal(e->name, "energy_import_kwh");
	assert_int_equal(e->modbus.table, MH_MODBUS_HOLDING);
	assert_int_equal(e->modbus.address, 0);
	assert_int_equal(e->modbus.type, MH_MODBUS_FLOAT32);
	assert_int_equal(e->modbus.word_order, MH_MODBUS_WORDS_BIG);
	assert_true(e->modbus.scale == 1.0);
	assert_int_equal(e->pos.line, 20);
	assert_int_equal(e->pos.col, 9);

	const struct mh_point *v = &p->points[1];
	assert_string_equal(v->name, "voltage_a_v");
	assert_int_equal(v->modbus.table, MH_MODBUS_INPUT);
	assert_int_equal(v->modbus.address, 0x10);
	assert_int_equal(v->modbus.type, MH_MODBUS_U16);
	assert_int_equal(v->modbus.word_order, MH_MODBUS_WORDS_BIG);
	assert_true(v->modbus.scale == 0.1);
	assert_int_equal(v->pos.line, 21);

	/* The five built-ins (the YAML files in config/profiles) come first, then the user's. */
	assert_int_equal(cfg->n_profiles, 6);
	for (size_t i = 0; i < 5; i++)
		assert_true(cfg->profiles[i].builtin);
	assert_ptr_equal(&cfg->profiles[5], p);
	mh_config_free(cfg);
	mh_config_free(NULL);
}

static void test_defaults(void **state)
{
	struct mh_config *cfg = expect_ok(MINIMAL);

	assert_string_equal(cfg->store.path, "/var/lib/meterhub");
	assert_int_equal(cfg->store.max_bytes, 256ull << 20);
	assert_string_equal(cfg->mqtt.client_id, "meterhub-gw-001");
	assert_string_equal(cfg->mqtt.topic_prefix, "meterhub/gw-001");
	assert_int_equal(cfg->mqtt.window, 32);
	assert_int_equal(cfg->mqtt.keepalive_s, 30);
	assert_null(cfg->mqtt.username);
	assert_null(cfg->mqtt.tls.ca);
	assert_null(cfg->mqtt.tls.cert);
	assert_null(cfg->mqtt.tls.key);
	assert_int_equal(cfg->buses[0].parity, MH_PARITY_NONE);
	assert_int_equal(cfg->buses[0].timeout_ms, 500);
	assert_int_equal(cfg->buses[0].baud, 9600);
	/* 3.5 characters of 11 bits at 9600 baud is 4011 us (rounded up). */
	assert_int_equal(cfg->buses[0].frame_gap_us, 4011);
	mh_config_free(cfg);

	/* The id drives both MQTT defaults. */
	cfg = expect_ok("gateway:\n  id: sub-7.north\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE BUS
			METER1);
	assert_string_equal(cfg->mqtt.client_id, "meterhub-sub-7.north");
	assert_string_equal(cfg->mqtt.topic_prefix, "meterhub/sub-7.north");
	mh_config_free(cfg);

	/* Given values win over the defaults. */
	cfg = expect_ok(GATEWAY "mqtt:\n  uri: tcp://h\n  client_id: c1\n  topic_prefix: a/b\n"
				"  window: 7\n  keepalive: 60\n" SCHEDULE
				"store: { path: /data/mh }\n" BUS METER1);
	assert_string_equal(cfg->mqtt.client_id, "c1");
	assert_string_equal(cfg->mqtt.topic_prefix, "a/b");
	assert_int_equal(cfg->mqtt.window, 7);
	assert_int_equal(cfg->mqtt.keepalive_s, 60);
	assert_string_equal(cfg->store.path, "/data/mh");
	assert_int_equal(cfg->store.max_bytes, 256ull << 20);
	mh_config_free(cfg);
}

static void test_number_syntax(void **state)
{
	/* Hex, decimal, and a leading zero that is decimal (ten), not octal (eight). */
	struct mh_config *cfg =
		expect_ok(HEAD BUS M("m-0001", "0010", "my") "profiles:\n  my:\n    points:\n" P(
			"name: a, table: holding, address: \"0x0010\", type: u16")
				P("name: b, table: input, address: 16, type: u16")
					P("name: c, table: coil, address: 0010")
						P("name: d, table: discrete, address: 0X1f"));
	const struct mh_profile *p = mh_config_profile(cfg, "my");

	assert_int_equal(cfg->buses[0].meters[0].unit, 10);
	assert_non_null(p);
	assert_int_equal(p->n_points, 4);
	assert_int_equal(p->points[0].modbus.address, 16);
	assert_int_equal(p->points[1].modbus.address, 16);
	assert_int_equal(p->points[2].modbus.address, 10);
	assert_int_equal(p->points[3].modbus.address, 31);
	mh_config_free(cfg);

	cfg = expect_ok(HEAD BUS M("m-0001", "0x0A", "eastron-sdm120"));
	assert_int_equal(cfg->buses[0].meters[0].unit, 10);
	mh_config_free(cfg);

	/* "0x" alone and "0x" followed by nothing hex are not numbers. */
	expect_errors(HEAD BUS M("m-0001", "0x", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"0x\" is not a Modbus slave address (1 to 247)");
	expect_errors(HEAD BUS M("m-0001", "0xZZ", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"0xZZ\" is not a Modbus slave address (1 to "
		"247)");
}

/*
 * An address that is present but wrong is one error. It must not come back
 * from validation as a second, false "missing required key" (parse_enum
 * marks its key as present-but-wrong for exactly this reason).
 */
static void test_bad_point_address_reported_once(void **state)
{
	/* "      - { name: x, table: input, address: " is 42 characters. */
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0x10000, type: u16"), 1,
		"t.yaml:17:43: profiles.my.points[0].address: 0x10000 is out of range (0 to "
		"65535)");
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 0x, type: u16"), 1,
		"t.yaml:17:43: profiles.my.points[0].address: \"0x\" is not a whole number");
	expect_errors(PROFILE_HEAD P("name: x, table: input, address: 16h, type: u16"), 1,
		"t.yaml:17:43: profiles.my.points[0].address: \"16h\" is not a whole number");
}

/* A "0x" prefix is allowed once; "0x0x01" is a typo, not unit 1. */
static void test_double_hex_prefix_rejected(void **state)
{
	expect_errors(HEAD BUS M("m-0001", "0x0x01", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"0x0x01\" is not a Modbus slave address (1 to "
		"247)");
}

/* ---- the whole contract example -------------------------------------- */

/*
 * DESIGN.md's config, verbatim: everything loads (tariffs, seasons, a
 * meter's tariff, the daily freeze, commands and the Modbus control among
 * them) but the placeholder "FILE" paths, which are named.
 */
static void test_design_example_verbatim(void **state)
{
	expect_errors(design_verbatim, 5,
		"t.yaml:7:14: mqtt.tls.ca: cannot read \"FILE\": No such file or directory",
		"t.yaml:7:26: mqtt.tls.cert: cannot read \"FILE\": No such file or directory",
		"t.yaml:7:37: mqtt.tls.key: cannot read \"FILE\": No such file or directory",
		"t.yaml:19:28: commands.hmac_key_file: cannot read \"FILE\": No such file or "
		"directory",
		/* The example's TLS block beside a tcp:// URI: it is the comment that says ssl://. */
		"t.yaml:7:8: mqtt.tls: TLS settings, but \"tcp://127.0.0.1:1883\" does not use TLS: "
		"the password and every reading would go in clear; write the URI as "
		"\"ssl://127.0.0.1:1883\" (with the broker's TLS port)");
}

/* DESIGN.md's config with the parts this version lacks taken out: both buses load. */
static void test_design_example_with_dlt645_bus(void **state)
{
	struct mh_config *cfg = expect_ok(design_both_buses);
	const struct mh_bus_config *b = &cfg->buses[0];

	assert_int_equal(cfg->n_buses, 2);
	assert_int_equal(b->protocol, MH_PROTO_DLT645);
	assert_int_equal(b->baud, 9600);
	assert_int_equal(b->parity, MH_PARITY_EVEN);
	assert_int_equal(b->timeout_ms, 500);
	assert_int_equal(b->n_meters, 1);
	assert_string_equal(b->meters[0].address, "000000000001");
	/* The address goes on the wire least significant byte first: 01 00 00 00 00 00. */
	assert_memory_equal(b->meters[0].dlt645_addr,
		((const uint8_t[]){0x01, 0x00, 0x00, 0x00, 0x00, 0x00}), 6);
	assert_ptr_equal(b->meters[0].profile, mh_config_profile(cfg, "dlt645-single-phase"));
	assert_int_equal(cfg->buses[1].protocol, MH_PROTO_MODBUS);
	assert_ptr_equal(cfg->buses[1].meters[0].profile, mh_config_profile(cfg, "my-meter"));
	mh_config_free(cfg);
}

/* ---- DL/T 645 buses and profiles -------------------------------------- */

/* Lines 8-12, a DL/T 645 bus; meters follow from line 13. */
#define BUS_DLT                                                                                    \
	"buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: dlt645\n    meters:\n"
/* Lines 1-16 with a DL/T 645 meter on profile "my"; points follow from line 17. */
#define PROFILE_HEAD_DLT                                                                           \
	HEAD BUS_DLT M("m-0001", "\"000000000001\"", "my") "profiles:\n  my:\n    points:\n"

static void test_dlt645_meters(void **state)
{
	/* DL/T 645-2007 meters leave the factory at 2400 baud, even parity. */
	struct mh_config *cfg = expect_ok(HEAD BUS_DLT M("m-0001", "\"123456789012\"",
		"dlt645-three-phase") M("m-0002", "000000000002", "dlt645-single-phase"));
	const struct mh_bus_config *b = &cfg->buses[0];

	assert_int_equal(b->baud, 2400);
	assert_int_equal(b->parity, MH_PARITY_EVEN);
	assert_int_equal(b->timeout_ms, 500);
	/* BCD, two digits a byte, least significant byte first on the wire. */
	assert_memory_equal(b->meters[0].dlt645_addr,
		((const uint8_t[]){0x12, 0x90, 0x78, 0x56, 0x34, 0x12}), 6);
	assert_memory_equal(b->meters[1].dlt645_addr,
		((const uint8_t[]){0x02, 0x00, 0x00, 0x00, 0x00, 0x00}), 6);
	mh_config_free(cfg);

	expect_errors(HEAD BUS_DLT M("m-0001", "1", "dlt645-single-phase"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"1\" is not a DL/T 645 address (12 decimal "
		"digits, as on the nameplate; quote it)");
	expect_errors(HEAD BUS_DLT M("m-0001", "\"12345678901A\"", "dlt645-single-phase"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"12345678901A\" is not a DL/T 645 address (12 "
		"decimal digits, as on the nameplate; quote it)");
	expect_errors(HEAD BUS_DLT M("m-0001", "\"000000000001\"", "dlt645-single-phase")
			      M("m-0002", "\"000000000001\"", "dlt645-three-phase"),
		1,
		"t.yaml:14:9: buses[0].meters[1]: address 000000000001 is used twice on bus "
		"rs485-1 (first at line 13)");
	/* The profile must speak the bus's protocol, both ways round. */
	expect_errors(HEAD BUS_DLT M("m-0001", "\"000000000001\"", "eastron-sdm120"), 1,
		"t.yaml:13:9: buses[0].meters[0].profile: profile \"eastron-sdm120\" is for modbus "
		"meters, but this bus speaks dlt645");
	expect_errors(HEAD BUS M("m-0001", "1", "dlt645-single-phase"), 1,
		"t.yaml:13:9: buses[0].meters[0].profile: profile \"dlt645-single-phase\" is for "
		"dlt645 meters, but this bus speaks modbus");
}

static void test_dlt645_points(void **state)
{
	/* A user profile by identifier: names come from the identifier unless given. */
	struct mh_config *cfg = expect_ok(
		PROFILE_HEAD_DLT P("di: \"00010000\"") P("di: \"02010100\", name: voltage_a_v"));
	const struct mh_profile *p = mh_config_profile(cfg, "my");

	assert_int_equal(p->protocol, MH_PROTO_DLT645);
	assert_int_equal(p->n_points, 2);
	assert_true(p->points[0].has_di);
	assert_int_equal(p->points[0].di, 0x00010000);
	assert_string_equal(p->points[0].name, "energy_import_kwh");
	assert_int_equal(p->points[1].di, 0x02010100);
	assert_string_equal(p->points[1].name, "voltage_a_v");
	mh_config_free(cfg);

	/* "      - { di: " is 14 characters. */
	expect_errors(PROFILE_HEAD_DLT P("di: \"0001000G\""), 1,
		"t.yaml:17:15: profiles.my.points[0].di: \"0001000G\" is not a data identifier (8 "
		"hex digits, e.g. \"00010000\")");
	expect_errors(PROFILE_HEAD_DLT P("di: \"00010000\", scale: 0.01"), 1,
		"t.yaml:17:9: profiles.my.points[0]: a DL/T 645 point takes only di (and name): "
		"the identifier fixes its format and scale");
	expect_errors(PROFILE_HEAD_DLT P("di: \"0001FF00\", name: energy"), 1,
		"t.yaml:17:9: profiles.my.points[0]: block 0001FF00 gives several values, each "
		"under its standard name; leave out name");
	expect_errors(PROFILE_HEAD_DLT P("di: \"00010000\"")
			      P("name: voltage_a_v, table: input, address: 0, type: u16"),
		1,
		"t.yaml:18:9: profiles.my.points[1]: a profile is either DL/T 645 (points with di) "
		"or Modbus (points with table and address), not both");
	expect_errors(PROFILE_HEAD_DLT P("di: \"00010000\"") P("di: \"00010000\""), 1,
		"t.yaml:18:9: profiles.my.points[1]: point \"energy_import_kwh\" is named twice "
		"(first at line 17)");
}

static void expect_dlt645_points(
	const struct mh_profile *p, size_t n, const uint32_t *di, const char *const *names)
{
	assert_non_null(p);
	assert_true(p->builtin);
	assert_int_equal(p->protocol, MH_PROTO_DLT645);
	assert_int_equal(p->n_points, n);
	for (size_t i = 0; i < n; i++) {
		assert_true(p->points[i].has_di);
		assert_int_equal(p->points[i].di, di[i]);
		assert_string_equal(p->points[i].name, names[i]);
	}
}

/*
 * Identifiers from DL/T 645-2007 appendix A: 0001xx00 forward active energy
 * (total, tariffs 1-4), 00020000 reverse active total, 0201xx00 voltage,
 * 0202xx00 current, 0203xx00 active power (total, A, B, C), 02060000 power
 * factor, 02800002 grid frequency. Blocks (xxxxFFxx) become their members.
 */
static void test_dlt645_builtin_profiles(void **state)
{
	static const uint32_t single_di[] = {0x00010000, 0x00010100, 0x00010200, 0x00010300,
		0x00010400, 0x00020000, 0x02010100, 0x02020100, 0x02030000, 0x02060000, 0x02800002};
	static const char *const single_names[] = {"energy_import_kwh", "energy_import_t1_kwh",
		"energy_import_t2_kwh", "energy_import_t3_kwh", "energy_import_t4_kwh",
		"energy_export_kwh", "voltage_a_v", "current_a_a", "power_kw", "power_factor",
		"frequency_hz"};
	static const uint32_t three_di[] = {0x00010000, 0x00010100, 0x00010200, 0x00010300,
		0x00010400, 0x00020000, 0x02010100, 0x02010200, 0x02010300, 0x02020100, 0x02020200,
		0x02020300, 0x02030000, 0x02030100, 0x02030200, 0x02030300, 0x02060000, 0x02800002};
	static const char *const three_names[] = {"energy_import_kwh", "energy_import_t1_kwh",
		"energy_import_t2_kwh", "energy_import_t3_kwh", "energy_import_t4_kwh",
		"energy_export_kwh", "voltage_a_v", "voltage_b_v", "voltage_c_v", "current_a_a",
		"current_b_a", "current_c_a", "power_kw", "power_a_kw", "power_b_kw", "power_c_kw",
		"power_factor", "frequency_hz"};
	struct mh_config *cfg = expect_ok(MINIMAL);

	expect_dlt645_points(
		mh_config_profile(cfg, "dlt645-single-phase"), 11, single_di, single_names);
	expect_dlt645_points(
		mh_config_profile(cfg, "dlt645-three-phase"), 18, three_di, three_names);
	mh_config_free(cfg);
}

/* ---- what the daemon could not run ----------------------------------- */

/* libmodbus takes any number and runs the line at 9600 instead: only real rates pass. */
static void test_standard_baud_rates(void **state)
{
	static const unsigned good[] = {300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600,
		115200};
	char text[1024];
	unsigned baud;

	expect_errors(HEAD BUS_WITH("baud: 14400"), 1,
		"t.yaml:12:11: buses[0].baud: 14400 is not a standard baud rate; use one of 300, "
		"600, 1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200");
	expect_errors(HEAD BUS_WITH("baud: 230400"), 1,
		"t.yaml:12:11: buses[0].baud: 230400 is not a standard baud rate; use one of 300, "
		"600, 1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), HEAD BUS_WITH("baud: %u"), good[i]);
		struct mh_config *cfg = expect_ok(text);
		assert_int_equal(cfg->buses[0].baud, good[i]);
		mh_config_free(cfg);
	}

	/* On its own, and the list in messages is exactly the list accepted. */
	assert_int_equal(mh_config_parse_baud("abc", &baud), -EINVAL);
	assert_int_equal(mh_config_parse_baud("", &baud), -EINVAL);
	assert_int_equal(mh_config_parse_baud("-9600", &baud), -EINVAL);
	assert_int_equal(mh_config_parse_baud("14400", &baud), -ERANGE);
	assert_int_equal(mh_config_parse_baud("0", &baud), -ERANGE);
	assert_int_equal(mh_config_parse_baud("0x2580", &baud), 0);
	assert_int_equal(baud, 9600);
	size_t listed = 0;
	for (const char *p = mh_config_baud_names; *p;) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);
		assert_true(end > p);
		assert_true(listed < sizeof(good) / sizeof(good[0]));
		assert_int_equal(v, good[listed]);
		listed++;
		p = end + strspn(end, ", or");
	}
	assert_int_equal(listed, sizeof(good) / sizeof(good[0]));
}

/* Lines 4-6: the prefix's value at 6:17. */
#define PREFIX(x) GATEWAY "mqtt:\n  uri: tcp://h\n  topic_prefix: " x "\n" SCHEDULE BUS METER1

static void test_topic_prefix(void **state)
{
	char *text = malloc(1024);
	char want[512];

	expect_errors(PREFIX("a/+/b"), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"a/+/b\" holds '+', an MQTT wildcard, which a "
		"topic to publish to may not hold");
	expect_errors(PREFIX("site/#"), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"site/#\" holds '#', an MQTT wildcard, which a "
		"topic to publish to may not hold");
	expect_errors(PREFIX("\"\""), 1,
		"t.yaml:6:17: mqtt.topic_prefix: a topic prefix cannot be empty: topics need a "
		"level of their own");
	expect_errors(PREFIX("/meterhub"), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"/meterhub\" has an empty topic level (a '/' at "
		"the start, at the end or twice); write it as levels joined by single '/', e.g. "
		"meterhub/gw-001");
	expect_errors(PREFIX("meterhub/"), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"meterhub/\" has an empty topic level (a '/' at "
		"the start, at the end or twice); write it as levels joined by single '/', e.g. "
		"meterhub/gw-001");
	expect_errors(PREFIX("a//b"), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"a//b\" has an empty topic level (a '/' at the "
		"start, at the end or twice); write it as levels joined by single '/', e.g. "
		"meterhub/gw-001");
	expect_errors(PREFIX("\"a\\tb\""), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"a\\tb\" holds a control character, which a topic "
		"may not hold");
	expect_errors(PREFIX("\"a\\x7fb\""), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"a\\x7Fb\" holds a control character, which a "
		"topic may not hold");
	expect_errors(PREFIX("\"a\\0b\""), 1,
		"t.yaml:6:17: mqtt.topic_prefix: \"a\" is followed by a NUL character (\\0), which "
		"no value may hold");

	/* 200 bytes fit the uplink's topic buffers with the longest topic under them; 201 do not. */
	char prefix[202];
	memset(prefix, 'p', 201);
	prefix[201] = '\0';
	snprintf(text, 1024, PREFIX("%s"), prefix);
	snprintf(want, sizeof(want),
		"t.yaml:6:17: mqtt.topic_prefix: \"%.60s...\" is longer than 200 bytes", prefix);
	expect_errors(text, 1, want);
	prefix[200] = '\0';
	snprintf(text, 1024, PREFIX("%s"), prefix);
	struct mh_config *cfg = expect_ok(text);
	assert_string_equal(cfg->mqtt.topic_prefix, prefix);
	mh_config_free(cfg);

	cfg = expect_ok(PREFIX("site-7/gateways/gw-001"));
	assert_string_equal(cfg->mqtt.topic_prefix, "site-7/gateways/gw-001");
	mh_config_free(cfg);
	free(text);
}

static void test_client_id(void **state)
{
	const size_t max = 65535;
	const char *head = GATEWAY "mqtt:\n  uri: tcp://h\n  client_id: ";
	const char *tail = "\n" SCHEDULE BUS METER1;
	char *text = malloc(strlen(head) + max + 1 + strlen(tail) + 1);
	char want[512];

	/* "  client_id: " puts the value at column 14. */
	expect_errors(GATEWAY "mqtt:\n  uri: tcp://h\n  client_id: \"\"\n" SCHEDULE BUS METER1, 1,
		"t.yaml:6:14: mqtt.client_id: a client id cannot be empty: the broker keeps the "
		"session under it");

	/* MQTT strings carry a 16-bit length. */
	char *p = text + sprintf(text, "%s", head);
	memset(p, 'c', max + 1);
	strcpy(p + max + 1, tail);
	snprintf(want, sizeof(want),
		"t.yaml:6:14: mqtt.client_id: \"%.60s...\" is longer than 65535 bytes, the most MQTT "
		"can carry",
		p);
	expect_errors(text, 1, want);
	strcpy(p + max, tail);
	struct mh_config *cfg = expect_ok(text);
	assert_int_equal(strlen(cfg->mqtt.client_id), max);
	mh_config_free(cfg);
	free(text);
}

/* TLS settings on a plain URI would send the password in clear while the user trusts TLS. */
static void test_tls_needs_a_tls_uri(void **state)
{
	/* "  tls: " puts the block at column 8. */
	expect_errors(GATEWAY "mqtt:\n  uri: tcp://broker:1883\n  tls: {}\n" SCHEDULE BUS METER1, 1,
		"t.yaml:6:8: mqtt.tls: TLS settings, but \"tcp://broker:1883\" does not use TLS: the "
		"password and every reading would go in clear; write the URI as "
		"\"ssl://broker:1883\" (with the broker's TLS port)");
	expect_errors(GATEWAY "mqtt:\n  tls: {}\n  uri: mqtt://broker\n" SCHEDULE BUS METER1, 1,
		"t.yaml:5:8: mqtt.tls: TLS settings, but \"mqtt://broker\" does not use TLS: the "
		"password and every reading would go in clear; write the URI as \"ssl://broker\" "
		"(with the broker's TLS port)");

	static const char *const good[] = {
		GATEWAY "mqtt:\n  uri: ssl://broker:8883\n  tls: {}\n" SCHEDULE BUS METER1,
		GATEWAY "mqtt:\n  uri: mqtts://broker:8883\n  tls: {}\n" SCHEDULE BUS METER1,
		GATEWAY "mqtt:\n  uri: tcp://broker:1883\n" SCHEDULE BUS METER1,
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		mh_config_free(expect_ok(good[i]));
}

/* "      - { name: x, table: input, address: 0, type: u16, scale: " is 63 characters. */
#define SCALE(x) PROFILE_HEAD P("name: x, table: input, address: 0, type: u16, scale: " x)

static void test_scale(void **state)
{
	static const char *const zeros[] = {"0", "0.0", "-0", "0e5"};
	static const char *const non_finite[] = {".inf", "-.inf", ".NaN", "inf", "nan", "1e999"};
	char text[1024], want[256];

	for (size_t i = 0; i < sizeof(zeros) / sizeof(zeros[0]); i++) {
		snprintf(text, sizeof(text), SCALE("%s"), zeros[i]);
		snprintf(want, sizeof(want),
			"t.yaml:17:64: profiles.my.points[0].scale: a scale of %s would publish "
			"every value of this point as 0",
			zeros[i]);
		expect_errors(text, 1, want);
	}
	for (size_t i = 0; i < sizeof(non_finite) / sizeof(non_finite[0]); i++) {
		snprintf(text, sizeof(text), SCALE("%s"), non_finite[i]);
		snprintf(want, sizeof(want),
			"t.yaml:17:64: profiles.my.points[0].scale: \"%s\" is not a finite number",
			non_finite[i]);
		expect_errors(text, 1, want);
	}
	/* A negative scale turns a sign around, which some meters need. */
	struct mh_config *cfg = expect_ok(SCALE("-0.001"));
	assert_true(mh_config_profile(cfg, "my")->points[0].modbus.scale == -0.001);
	mh_config_free(cfg);
}

static void test_dlt645_broadcast_address(void **state)
{
	expect_errors(HEAD BUS_DLT M("m-0001", "\"999999999999\"", "dlt645-single-phase"), 1,
		"t.yaml:13:9: buses[0].meters[0]: 999999999999 is the DL/T 645 broadcast address, "
		"which every meter on the bus obeys and none answers; give this meter's own "
		"address");
	/* The protocol's AA wildcard bytes cannot be written: addresses are decimal digits. */
	expect_errors(HEAD BUS_DLT M("m-0001", "\"AAAAAAAAAAAA\"", "dlt645-single-phase"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"AAAAAAAAAAAA\" is not a DL/T 645 address (12 "
		"decimal digits, as on the nameplate; quote it)");
	expect_errors(HEAD BUS_DLT M("m-0001", "\"0000000000AA\"", "dlt645-single-phase"), 1,
		"t.yaml:13:9: buses[0].meters[0]: \"0000000000AA\" is not a DL/T 645 address (12 "
		"decimal digits, as on the nameplate; quote it)");
	mh_config_free(
		expect_ok(HEAD BUS_DLT M("m-0001", "\"999999999998\"", "dlt645-single-phase")));
}

static void test_store_path_absolute(void **state)
{
	static const char *const relative[] = {"var/lib/meterhub", "./store", "~/store", "\"\""};
	char text[1024], want[256];

	for (size_t i = 0; i < sizeof(relative) / sizeof(relative[0]); i++) {
		/* Store on lines 8-9, "  path: " puts the value at column 9. */
		snprintf(text, sizeof(text), HEAD "store:\n  path: %s\n" BUS METER1, relative[i]);
		snprintf(want, sizeof(want),
			"t.yaml:9:9: store.path: \"%s\" is not an absolute path; write the directory "
			"from /, e.g. /var/lib/meterhub",
			relative[i][0] == '"' ? "" : relative[i]);
		expect_errors(text, 1, want);
	}
}

/*
 * A 32-bit process cannot map a store of several GiB. The rule takes the
 * end of size_t as a parameter, so it is checked here on any machine.
 */
static void test_store_limit(void **state)
{
	assert_int_equal(mh_config_store_limit(UINT32_MAX), 1ull << 30);
	assert_int_equal(mh_config_store_limit(UINT64_MAX), 1ull << 40);
	assert_int_equal(mh_config_store_limit((uint64_t)UINT32_MAX + 1), 1ull << 40);

	struct mh_config *cfg = expect_ok(HEAD "store:\n  max_bytes: 1GiB\n" BUS METER1);
	assert_int_equal(cfg->store.max_bytes, 1ull << 30);
	mh_config_free(cfg);
	if (SIZE_MAX <= UINT32_MAX)
		/* "  max_bytes: " puts the value at column 14. */
		expect_errors(HEAD "store:\n  max_bytes: 2GiB\n" BUS METER1, 1,
			"t.yaml:9:14: store.max_bytes: 2GiB is more than a 32-bit system can map; at "
			"most 1024MiB here");
	else
		mh_config_free(expect_ok(HEAD "store:\n  max_bytes: 2GiB\n" BUS METER1));
}

/* N meters sharing an id or an address are N - 1 errors, each against the first. */
static void test_duplicates_reported_once(void **state)
{
	expect_errors(HEAD BUS METER1 M("m-0001", "2", "eastron-sdm120")
			M("m-0001", "3", "eastron-sdm120") M("m-0001", "4", "eastron-sdm120"),
		3,
		"t.yaml:14:9: buses[0].meters[1]: meter id \"m-0001\" is used twice (first at line "
		"13)",
		"t.yaml:15:9: buses[0].meters[2]: meter id \"m-0001\" is used twice (first at line "
		"13)",
		"t.yaml:16:9: buses[0].meters[3]: meter id \"m-0001\" is used twice (first at line "
		"13)");
	expect_errors(HEAD BUS M("m-1", "5", "eastron-sdm120") M("m-2", "5", "eastron-sdm120")
			M("m-3", "0x05", "eastron-sdm120") M("m-4", "5", "eastron-sdm120"),
		3,
		"t.yaml:14:9: buses[0].meters[1]: address 5 is used twice on bus rs485-1 (first at "
		"line 13)",
		"t.yaml:15:9: buses[0].meters[2]: address 0x05 is used twice on bus rs485-1 (first "
		"at line 13)",
		"t.yaml:16:9: buses[0].meters[3]: address 5 is used twice on bus rs485-1 (first at "
		"line 13)");
	expect_errors(HEAD BUS_DLT M("m-1", "\"000000000007\"", "dlt645-single-phase")
			M("m-2", "\"000000000007\"", "dlt645-single-phase")
				M("m-3", "\"000000000007\"", "dlt645-single-phase"),
		2,
		"t.yaml:14:9: buses[0].meters[1]: address 000000000007 is used twice on bus "
		"rs485-1 (first at line 13)",
		"t.yaml:15:9: buses[0].meters[2]: address 000000000007 is used twice on bus "
		"rs485-1 (first at line 13)");
	/* Three buses of one name: lines 8-13, 14-18, 19-23. */
	expect_errors(HEAD BUS METER1
		"  - name: rs485-1\n    device: /dev/ttyS2\n    protocol: modbus\n    meters:\n" M(
			"m-2", "1", "eastron-sdm120")
		"  - name: rs485-1\n    device: /dev/ttyS3\n    protocol: modbus\n    meters:\n" M(
			"m-3", "1", "eastron-sdm120"),
		2,
		"t.yaml:14:5: buses[1]: bus name \"rs485-1\" is used twice (first at line 9)",
		"t.yaml:19:5: buses[2]: bus name \"rs485-1\" is used twice (first at line 9)");
	/* Points: a name three times, and a register claimed by three points. */
	expect_errors(PROFILE_HEAD P("name: v, table: input, address: 0x10, type: u16")
			P("name: v, table: input, address: 0x20, type: u16")
				P("name: v, table: input, address: 0x30, type: u16"),
		2,
		"t.yaml:18:9: profiles.my.points[1]: point \"v\" is named twice (first at line 17)",
		"t.yaml:19:9: profiles.my.points[2]: point \"v\" is named twice (first at line 17)");
	expect_errors(PROFILE_HEAD P("name: a, table: input, address: 0x10, type: u32")
			P("name: b, table: input, address: 0x11, type: u16")
				P("name: c, table: input, address: 0x11, type: u32"),
		2,
		"t.yaml:18:9: profiles.my.points[1]: \"b\" (input 0x0011-0x0011) overlaps \"a\" "
		"(0x0010-0x0011, line 17)",
		"t.yaml:19:9: profiles.my.points[2]: \"c\" (input 0x0011-0x0012) overlaps \"a\" "
		"(0x0010-0x0011, line 17)");
}

/* ---- built-in profiles ----------------------------------------------- */

static const char *const canonical[] = {
	"energy_import_kwh",
	"energy_import_t1_kwh",
	"energy_import_t2_kwh",
	"energy_import_t3_kwh",
	"energy_import_t4_kwh",
	"energy_export_kwh",
	"voltage_a_v",
	"voltage_b_v",
	"voltage_c_v",
	"current_a_a",
	"current_b_a",
	"current_c_a",
	"power_kw",
	"power_factor",
	"frequency_hz",
};

static const struct mh_point *point(const struct mh_profile *p, const char *name)
{
	for (size_t i = 0; i < p->n_points; i++)
		if (!strcmp(p->points[i].name, name))
			return &p->points[i];
	print_message("profile %s has no point %s\n", p->name, name);
	fail();
	return NULL;
}

static void expect_point(const struct mh_profile *p, const char *name, enum mh_modbus_table table,
	unsigned address, double scale)
{
	const struct mh_point *pt = point(p, name);

	assert_int_equal(pt->modbus.table, table);
	assert_int_equal(pt->modbus.address, address);
	assert_int_equal(pt->modbus.type, MH_MODBUS_FLOAT32);
	assert_int_equal(pt->modbus.word_order, MH_MODBUS_WORDS_BIG);
	if (pt->modbus.scale != scale)
		print_message(
			"%s.%s scale %.17g, want %.17g\n", p->name, name, pt->modbus.scale, scale);
	assert_true(pt->modbus.scale == scale);
}

/* Every point names a canonical quantity once and owns its registers alone. */
static void expect_well_formed(
	const struct mh_profile *p, size_t n_points, enum mh_modbus_table table)
{
	assert_true(p->builtin);
	assert_non_null(p->description);
	assert_int_equal(p->protocol, MH_PROTO_MODBUS);
	assert_int_equal(p->n_points, n_points);
	for (size_t i = 0; i < p->n_points; i++) {
		const struct mh_point *a = &p->points[i];
		bool known = false;

		assert_non_null(a->name);
		for (size_t c = 0; c < sizeof(canonical) / sizeof(canonical[0]); c++)
			known |= !strcmp(a->name, canonical[c]);
		if (!known)
			print_message("%s: %s is not a canonical point name\n", p->name, a->name);
		assert_true(known);
		assert_int_equal(a->modbus.table, table);
		assert_int_equal(a->modbus.type, MH_MODBUS_FLOAT32);
		assert_true(a->modbus.address + 2u <= 0x10000u);
		assert_true(isfinite(a->modbus.scale) && a->modbus.scale > 0);
		for (size_t j = 0; j < i; j++) {
			const struct mh_point *b = &p->points[j];
			assert_string_not_equal(a->name, b->name);
			/* Two float32s overlap when their first registers are less than 2 apart. */
			assert_true(a->modbus.address + 2u <= b->modbus.address ||
				    b->modbus.address + 2u <= a->modbus.address);
		}
	}
}

static void test_builtin_profiles(void **state)
{
	struct mh_config *cfg = expect_ok(MINIMAL);
	const struct mh_profile *dtsu = mh_config_profile(cfg, "chint-dtsu666");
	const struct mh_profile *sdm630 = mh_config_profile(cfg, "eastron-sdm630");
	const struct mh_profile *sdm120 = mh_config_profile(cfg, "eastron-sdm120");

	assert_non_null(dtsu);
	assert_non_null(sdm630);
	assert_non_null(sdm120);
	assert_null(mh_config_profile(cfg, "nope"));
	assert_ptr_equal(cfg->buses[0].meters[0].profile, sdm120);

	expect_well_formed(dtsu, 11, MH_MODBUS_HOLDING);
	expect_well_formed(sdm630, 11, MH_MODBUS_INPUT);
	expect_well_formed(sdm120, 7, MH_MODBUS_INPUT);

	/*
	 * Eastron lists input registers as 3xxxx numbers; the PDU address is the
	 * number minus 30001 (30073 -> 72 = 0x48). Power is in W, reported in kW.
	 */
	expect_point(sdm630, "energy_import_kwh", MH_MODBUS_INPUT, 30073 - 30001, 1);
	expect_point(sdm630, "energy_export_kwh", MH_MODBUS_INPUT, 30075 - 30001, 1);
	expect_point(sdm630, "voltage_a_v", MH_MODBUS_INPUT, 30001 - 30001, 1);
	expect_point(sdm630, "voltage_c_v", MH_MODBUS_INPUT, 30005 - 30001, 1);
	expect_point(sdm630, "current_b_a", MH_MODBUS_INPUT, 30009 - 30001, 1);
	expect_point(sdm630, "power_kw", MH_MODBUS_INPUT, 30053 - 30001, 0.001);
	expect_point(sdm630, "power_factor", MH_MODBUS_INPUT, 30063 - 30001, 1);
	expect_point(sdm630, "frequency_hz", MH_MODBUS_INPUT, 30071 - 30001, 1);

	expect_point(sdm120, "energy_import_kwh", MH_MODBUS_INPUT, 30073 - 30001, 1);
	expect_point(sdm120, "voltage_a_v", MH_MODBUS_INPUT, 30001 - 30001, 1);
	expect_point(sdm120, "current_a_a", MH_MODBUS_INPUT, 30007 - 30001, 1);
	expect_point(sdm120, "power_kw", MH_MODBUS_INPUT, 30013 - 30001, 0.001);
	expect_point(sdm120, "frequency_hz", MH_MODBUS_INPUT, 30071 - 30001, 1);

	/* CHINT lists PDU addresses in hex; volts in 0.1 V, amps in mA, power in 0.1 W. */
	expect_point(dtsu, "energy_import_kwh", MH_MODBUS_HOLDING, 0x101E, 1);
	expect_point(dtsu, "voltage_a_v", MH_MODBUS_HOLDING, 0x2006, 0.1);
	expect_point(dtsu, "current_a_a", MH_MODBUS_HOLDING, 0x200C, 0.001);
	expect_point(dtsu, "power_kw", MH_MODBUS_HOLDING, 0x2012, 0.0001);
	expect_point(dtsu, "frequency_hz", MH_MODBUS_HOLDING, 0x2044, 0.01);

	/* Built-in positions name their source file. */
	assert_string_equal(sdm630->pos.file, "<built-in>/eastron-sdm630.yaml");
	mh_config_free(cfg);
}

/* ---- reload ---------------------------------------------------------- */

/*
 * What a reload may change is a column of the key tables: a new store path
 * or size, gateway id or time zone needs a restart; buses, meters, MQTT and
 * the schedule do not.
 */
static void test_restart_keys(void **state)
{
	struct errs e = {0};
	struct mh_config *old = expect_ok(MINIMAL);
	struct mh_config *same = expect_ok(MINIMAL);
	struct mh_config *live = expect_ok(GATEWAY
		"mqtt:\n  uri: tcp://other:1883\n  topic_prefix: site/7\n  window: 8\n"
		"schedule:\n  interval: 1h\n"
		"health: { interval: 5s }\n" BUS_WITH("baud: 19200") M("m-0002", "2", "eastron-sdm630"));
	struct mh_config *moved = expect_ok("gateway:\n  id: gw-002\n  timezone: Europe/Berlin\n" MQTT
			SCHEDULE "store: { path: /data/mh, max_bytes: 1GiB }\n" BUS METER1);
	int same_n = mh_config_restart_keys(old, same, on_error, &e);
	size_t same_lines = e.n;
	int live_n = mh_config_restart_keys(old, live, on_error, &e);
	size_t live_lines = e.n;
	int moved_n = mh_config_restart_keys(old, moved, on_error, &e);
	int quiet_n = mh_config_restart_keys(old, moved, NULL, NULL);
	/* Back again is the same four keys, the other way round. */
	int back_n = mh_config_restart_keys(moved, old, NULL, NULL);

	if (e.n != 4)
		errs_dump(&e);
	assert_int_equal(same_n, 0);
	assert_int_equal(same_lines, 0);
	assert_int_equal(live_n, 0);
	assert_int_equal(live_lines, 0);
	assert_int_equal(moved_n, 4);
	assert_int_equal(quiet_n, 4);
	assert_int_equal(back_n, 4);
	assert_int_equal(e.n, 4);
	assert_string_equal(e.line[0], "gateway.id: changed from \"gw-001\" to \"gw-002\"; this takes "
				       "effect only after a restart");
	assert_string_equal(e.line[1], "gateway.timezone: changed from \"Asia/Shanghai\" to "
				       "\"Europe/Berlin\"; this takes effect only after a restart");
	assert_string_equal(e.line[2], "store.path: changed from \"/var/lib/meterhub\" to \"/data/mh\"; "
				       "this takes effect only after a restart");
	assert_string_equal(e.line[3], "store.max_bytes: changed from 268435456 to 1073741824; this "
				       "takes effect only after a restart");
	errs_free(&e);
	mh_config_free(old);
	mh_config_free(same);
	mh_config_free(live);
	mh_config_free(moved);
}

/* ---- files ----------------------------------------------------------- */

static void test_load_file(void **state)
{
	char path[] = "/tmp/mh-test-config-XXXXXX";
	struct errs e = {0};
	struct mh_config *cfg = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, MINIMAL, strlen(MINIMAL)), (ssize_t)strlen(MINIMAL));
	close(fd);
	assert_int_equal(mh_config_load(path, on_error, &e, &cfg), 0);
	assert_int_equal(e.n, 0);
	assert_string_equal(cfg->file, path);
	assert_string_equal(cfg->buses[0].meters[0].pos.file, path);
	mh_config_free(cfg);

	/* Errors name the file as given. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, MINIMAL "colour: red\n", strlen(MINIMAL "colour: red\n")),
		(ssize_t)strlen(MINIMAL "colour: red\n"));
	close(fd);
	cfg = NULL;
	assert_int_equal(mh_config_load(path, on_error, &e, &cfg), -EINVAL);
	assert_null(cfg);
	assert_int_equal(e.n, 1);
	char want[128];
	snprintf(want, sizeof(want), "%s:14:1: colour: unknown key", path);
	assert_string_equal(e.line[0], want);
	errs_free(&e);
	unlink(path);

	/* A file that cannot be read is -errno and no error line. */
	assert_int_equal(mh_config_load("/nonexistent/meterhub.yaml", on_error, &e, &cfg), -ENOENT);
	assert_int_equal(e.n, 0);
}

/* ---- text the parser must refuse, and how -------------------------- */

/* libyaml reports a bad byte by offset; the line and column must still be the byte's own. */
static void test_bad_bytes_positioned(void **state)
{
	/* "  id: gw" is 8 characters, so the byte after it is at column 9. */
	expect_errors("gateway:\n  id: gw\xff-001\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE BUS
			      METER1,
		1,
		"t.yaml:2:9: invalid character: invalid leading UTF-8 octet (0xFF); the file must "
		"be UTF-8");
	/* Columns count characters: "# " and two three-byte characters, then a space. */
	expect_errors(MINIMAL "# \xe7\x94\xb5\xe8\xa1\xa8 \xfe\n", 1,
		"t.yaml:14:6: invalid character: invalid leading UTF-8 octet (0xFE); the file must "
		"be UTF-8");
	/* CR LF is one line break. */
	expect_errors("gateway:\r\n  id: gw-001\r\n  timezone: Asia\x01\r\n", 1,
		"t.yaml:3:17: invalid character: control characters are not allowed (0x01)");

	/* A NUL byte in the file, given with its length as a file would be. */
	static const char nul[] = "gateway:\n  id: gw\0-001\n";
	struct errs e = {0};
	struct mh_config *cfg = NULL;
	int rc = mh_config_load_string("t.yaml", nul, sizeof(nul) - 1, on_error, &e, &cfg);
	bool placed = e.n == 1 && !strcmp(e.line[0], "t.yaml:2:9: invalid character: control "
						     "characters are not allowed (0x00)");

	if (!placed)
		errs_dump(&e);
	errs_free(&e);
	mh_config_free(cfg);
	assert_int_equal(rc, -EINVAL);
	assert_true(placed);
}

/* "\0" in a quoted scalar would silently cut the value short. */
static void test_nul_in_value(void **state)
{
	expect_errors("gateway:\n  id: \"gw\\0-001\"\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE
			      BUS METER1,
		1,
		"t.yaml:2:7: gateway.id: \"gw\" is followed by a NUL character (\\0), which no value "
		"may hold");
	/* A control character in a key is escaped: the error stays one line. */
	expect_errors(MINIMAL "\"col\\tour\\n\": red\n", 1, "t.yaml:14:1: col\\tour\\n: unknown key");
}

/*
 * A value is quoted up to 60 characters, so the reason after it survives a
 * value of any length.
 */
static void test_long_values_cut_short(void **state)
{
	const size_t n = 1 << 20;
	const char *tail = "\n  timezone: Asia/Shanghai\n" MQTT SCHEDULE BUS METER1;
	char *text = malloc(n + 1024);
	char want[256];

	assert_non_null(text);
	strcpy(text, "gateway:\n  id: ");
	memset(text + strlen(text), 'x', n);
	strcpy(text + strlen("gateway:\n  id: ") + n, tail);
	snprintf(want, sizeof(want),
		"t.yaml:2:7: gateway.id: \"%.60s...\" is longer than 64 characters",
		text + strlen("gateway:\n  id: "));
	expect_errors(text, 1, want);

	/* A megabyte of digits is not a number, and says so. */
	strcpy(text, HEAD "buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: "
			  "modbus\n    baud: ");
	size_t at = strlen(text);
	memset(text + at, '9', n);
	strcpy(text + at + n, "\n    meters:\n" METER1);
	snprintf(want, sizeof(want), "t.yaml:12:11: buses[0].baud: \"%.60s...\" is not a whole number",
		text + at);
	expect_errors(text, 1, want);

	/* Exactly 60 characters are quoted whole. */
	strcpy(text, HEAD "buses:\n  - name: rs485-1\n    device: /dev/ttyS1\n    protocol: "
			  "modbus\n    baud: ");
	at = strlen(text);
	memset(text + at, '9', 60);
	strcpy(text + at + 60, "\n    meters:\n" METER1);
	snprintf(want, sizeof(want), "t.yaml:12:11: buses[0].baud: \"%.60s\" is not a whole number",
		text + at);
	expect_errors(text, 1, want);
	free(text);
}

/* A file of more than 4 MiB is some other file; at 4 MiB it still loads. */
static void test_file_size_limit(void **state)
{
	const size_t limit = 4u << 20;
	char *text = malloc(limit + 2);
	size_t head = strlen(MINIMAL);
	struct errs e = {0};
	struct mh_config *cfg = NULL;

	assert_non_null(text);
	memcpy(text, MINIMAL, head);
	/* A comment to the limit: "#xxx...x\n". */
	text[head] = '#';
	memset(text + head + 1, 'x', limit - head - 2);
	text[limit - 1] = '\n';
	text[limit] = '\0';
	assert_int_equal(mh_config_load_string("t.yaml", text, limit, on_error, &e, &cfg), 0);
	assert_int_equal(e.n, 0);
	mh_config_free(cfg);

	text[limit - 1] = 'x';
	text[limit] = '\n';
	text[limit + 1] = '\0';
	expect_errors(text, 1,
		"t.yaml:1:1: the file is larger than 4 MiB, far more than a configuration needs; is "
		"it the right file?");

	/* From a file, without reading all of it: 50 MB of a comment. */
	char path[] = "/tmp/mh-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, MINIMAL "#", head + 1), (ssize_t)(head + 1));
	assert_int_equal(ftruncate(fd, 50 * 1000 * 1000), 0);
	close(fd);
	cfg = NULL;
	int rc = mh_config_load(path, on_error, &e, &cfg);
	char want[128];
	snprintf(want, sizeof(want),
		"%s:1:1: the file is larger than 4 MiB, far more than a configuration needs; is it "
		"the right file?",
		path);
	bool said = e.n == 1 && !strcmp(e.line[0], want);
	if (!said)
		errs_dump(&e);
	errs_free(&e);
	unlink(path);
	free(text);
	assert_int_equal(rc, -EINVAL);
	assert_null(cfg);
	assert_true(said);
}

/*
 * libyaml 0.2.5 has no depth limit and slows down more than linearly with
 * depth (100000 '[' took 46 s): more than 64 levels are refused at the
 * first level too deep, before the rest is scanned.
 */
static void test_deep_nesting(void **state)
{
	enum { n = 100000 };
	static char text[n + 64];
	char *p;

	/* The root mapping is level 1, so the 64th '[' (at column 9 + 64) is level 65. */
	p = text + sprintf(text, "gateway: ");
	memset(p, '[', n);
	p[n] = '\0';
	expect_errors(text, 1,
		"t.yaml:1:73: lists and mappings nested more than 64 deep; a configuration needs a "
		"handful");

	/* 64 levels are still YAML; the schema has its own say. */
	p = text + sprintf(text, "gateway: ");
	memset(p, '[', 63);
	memset(p + 63, ']', 63);
	strcpy(p + 126, "\n");
	expect_errors(text, 4, "t.yaml:1:10: gateway: expected a mapping, found a list",
		"t.yaml:1:1: mqtt: missing required key", "t.yaml:1:1: schedule: missing required key",
		"t.yaml:1:1: buses: missing required key");

	/* Block mappings count the same: line N opens level N, two columns further in. */
	p = text;
	for (int level = 1; level <= 70; level++)
		p += sprintf(p, "%*sk:\n", 2 * (level - 1), "");
	expect_errors(text, 1,
		"t.yaml:65:129: lists and mappings nested more than 64 deep; a configuration needs "
		"a handful");
}

/* libyaml loads the first document of a stream; a second one would vanish without a word. */
static void test_second_document(void **state)
{
	expect_errors(MINIMAL "---\nstore: { path: /data/mh }\n", 1,
		"t.yaml:14:1: a second YAML document; a configuration is one document (remove the "
		"\"---\" or what follows it)");
	/* One document, marked, is fine. */
	struct mh_config *cfg = expect_ok("---\n" MINIMAL "...\n");
	mh_config_free(cfg);
}

/* A file with a thousand mistakes prints fifty, then one line for the rest. */
static void test_error_cap(void **state)
{
	char *text = malloc(8192);
	char *p = text;
	struct errs e = {0};
	struct mh_config *cfg;

	assert_non_null(text);
	p += sprintf(p, "gateway:\n  id: gw-001\n  timezone: Asia/Shanghai\n");
	/* Lines 4-63: sixty unknown keys. */
	for (int i = 0; i < 60; i++)
		p += sprintf(p, "  k%d: 1\n", i);
	strcpy(p, MQTT SCHEDULE BUS METER1);
	int rc = load(text, &e, &cfg);
	size_t n = e.n;
	bool first = n > 0 && !strcmp(e.line[0], "t.yaml:4:3: gateway.k0: unknown key");
	bool last = n > 49 && !strcmp(e.line[49], "t.yaml:53:3: gateway.k49: unknown key");
	bool trailer = n > 50 && !strcmp(e.line[50], "t.yaml: ... 10 more errors not shown");

	if (n != 51 || !first || !last || !trailer)
		errs_dump(&e);
	errs_free(&e);
	free(text);
	assert_int_equal(rc, -EINVAL);
	assert_null(cfg);
	assert_int_equal(n, 51);
	assert_true(first);
	assert_true(last);
	assert_true(trailer);
}

/* fopen() opens a directory, so without a check the error was "Input/output error". */
static void test_directory_as_file(void **state)
{
	char dir[] = "/tmp/mh-test-config-dir-XXXXXX";
	struct errs e = {0};
	struct mh_config *cfg = NULL;

	assert_non_null(mkdtemp(dir));
	int rc = mh_config_load(dir, on_error, &e, &cfg);
	rmdir(dir);
	assert_int_equal(rc, -EISDIR);
	assert_int_equal(e.n, 0);
	assert_null(cfg);
}

/* ---- the parsers on their own ---------------------------------------- */

static void test_parse_duration(void **state)
{
	static const struct {
		const char *text;
		uint64_t ms;
	} good[] = {
		{"500ms", 500},
		{"0ms", 0},
		{"1s", 1000},
		{"0s", 0},
		{"15m", 900000},
		{"2h", 7200000},
		{"24h", 86400000},
		{"0010s", 10000},
		{"18446744073709551615ms", UINT64_MAX},
		/* floor((2^64 - 1) / 1000) = 18446744073709551 */
		{"18446744073709551s", 18446744073709551000ull},
	};
	static const char *const bad[] = {
		"15x",
		"-1s",
		"",
		"ms",
		"15",
		"1.5s",
		" 5s",
		"5s ",
		"5 s",
		"5S",
		"5M",
		"1h30m",
		"+5s",
		"0x10s",
		"18446744073709551616ms",
		"18446744073709552s",
	};
	uint64_t ms;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = 12345;
		if (mh_config_parse_duration(good[i].text, &ms) != 0 || ms != good[i].ms)
			print_message("\"%s\" gave %llu\n", good[i].text, (unsigned long long)ms);
		assert_int_equal(mh_config_parse_duration(good[i].text, &ms), 0);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mh_config_parse_duration(bad[i], &ms) != -EINVAL)
			print_message("\"%s\" was accepted\n", bad[i]);
		assert_int_equal(mh_config_parse_duration(bad[i], &ms), -EINVAL);
	}
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} good[] = {
		{"4096", 4096},
		{"0", 0},
		{"10B", 10},
		{"1KiB", 1024},
		{"256MiB", 268435456},
		{"1GiB", 1073741824},
		{"3GiB", 3221225472ull},
		/* (2^64 - 1) / 2^30 = 17179869183.99...: the largest count of GiB that fits. */
		{"17179869183GiB", 18446744072635809792ull},
	};
	static const char *const bad[] = {
		"10MB",
		"1kib",
		"1KB",
		"1K",
		"",
		"-1",
		"1.5MiB",
		"MiB",
		" 1MiB",
		"1MiB ",
		"1 MiB",
		"1TiB",
		"17179869184GiB",
		"18446744073709551616",
	};
	uint64_t b;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		b = 12345;
		if (mh_config_parse_size(good[i].text, &b) != 0 || b != good[i].bytes)
			print_message("\"%s\" gave %llu\n", good[i].text, (unsigned long long)b);
		assert_int_equal(mh_config_parse_size(good[i].text, &b), 0);
		assert_int_equal(b, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mh_config_parse_size(bad[i], &b) != -EINVAL)
			print_message("\"%s\" was accepted\n", bad[i]);
		assert_int_equal(mh_config_parse_size(bad[i], &b), -EINVAL);
	}
}

/* Errors still reach stderr without a callback; the result is the same. */
static void test_no_callback(void **state)
{
	struct mh_config *cfg = NULL;
	const char *text = MINIMAL "colour: red\n";

	assert_int_equal(
		mh_config_load_string("t.yaml", text, strlen(text), NULL, NULL, &cfg), -EINVAL);
	assert_null(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yaml_syntax_error),
		cmocka_unit_test(test_empty_and_non_mapping),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_key_given_twice),
		cmocka_unit_test(test_wrong_kind),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_point_missing_keys),
		cmocka_unit_test(test_bad_durations),
		cmocka_unit_test(test_interval_divides_day),
		cmocka_unit_test(test_bad_sizes),
		cmocka_unit_test(test_commit_window),
		cmocka_unit_test(test_time_zone),
		cmocka_unit_test(test_time_zone_directory_rejected),
		cmocka_unit_test(test_mqtt_uri),
		cmocka_unit_test(test_files_must_be_readable),
		cmocka_unit_test(test_bad_enums_and_numbers),
		cmocka_unit_test(test_bad_protocol),
		cmocka_unit_test(test_duplicate_meter_ids),
		cmocka_unit_test(test_modbus_addresses),
		cmocka_unit_test(test_two_buses_one_device),
		cmocka_unit_test(test_unknown_profile),
		cmocka_unit_test(test_profile_named_like_builtin),
		cmocka_unit_test(test_overlapping_points),
		cmocka_unit_test(test_duplicate_point_names),
		cmocka_unit_test(test_bit_points),
		cmocka_unit_test(test_point_past_last_register),
		cmocka_unit_test(test_commands_defaults),
		cmocka_unit_test(test_commands_values),
		cmocka_unit_test(test_commands_ranges),
		cmocka_unit_test(test_commands_confirm_after_settle),
		cmocka_unit_test(test_secret_file_modes),
		cmocka_unit_test(test_protect_windows),
		cmocka_unit_test(test_window_resolve),
		cmocka_unit_test(test_commands_loaded_and_live),
		cmocka_unit_test(test_commands_contract_example),
		cmocka_unit_test(test_dlt645_control),
		cmocka_unit_test(test_dlt645_control_errors),
		cmocka_unit_test(test_modbus_control),
		cmocka_unit_test(test_modbus_control_errors),
		cmocka_unit_test(test_meter_control_override),
		cmocka_unit_test(test_meter_control_errors),
		cmocka_unit_test(test_tariffs),
		cmocka_unit_test(test_daily_freeze),
		cmocka_unit_test(test_many_errors_in_one_file),
		cmocka_unit_test(test_errors_under_incomplete_bus),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_design_example_loads),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_number_syntax),
		cmocka_unit_test(test_double_hex_prefix_rejected),
		cmocka_unit_test(test_bad_point_address_reported_once),
		cmocka_unit_test(test_standard_baud_rates),
		cmocka_unit_test(test_topic_prefix),
		cmocka_unit_test(test_client_id),
		cmocka_unit_test(test_tls_needs_a_tls_uri),
		cmocka_unit_test(test_scale),
		cmocka_unit_test(test_dlt645_broadcast_address),
		cmocka_unit_test(test_store_path_absolute),
		cmocka_unit_test(test_store_limit),
		cmocka_unit_test(test_duplicates_reported_once),
		cmocka_unit_test(test_design_example_verbatim),
		cmocka_unit_test(test_design_example_with_dlt645_bus),
		cmocka_unit_test(test_dlt645_meters),
		cmocka_unit_test(test_dlt645_points),
		cmocka_unit_test(test_dlt645_builtin_profiles),
		cmocka_unit_test(test_builtin_profiles),
		cmocka_unit_test(test_restart_keys),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_bad_bytes_positioned),
		cmocka_unit_test(test_nul_in_value),
		cmocka_unit_test(test_long_values_cut_short),
		cmocka_unit_test(test_file_size_limit),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_second_document),
		cmocka_unit_test(test_error_cap),
		cmocka_unit_test(test_directory_as_file),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_no_callback),
	};

	return cmocka_run_group_tests(tests, secrets_setup, secrets_teardown);
}
