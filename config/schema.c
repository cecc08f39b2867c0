// SPDX-License-Identifier: MIT
#include "schema.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "dlt645.h"
#include "dlt645_di.h"
#include "log.h"
#include "window.h"

#define node_error(s, node, ...) mh_yamldoc_error(&(s)->doc, node, __VA_ARGS__)
/* A value from the file as a message quotes it. */
#define shown(s, text) mh_yamldoc_show(&(s)->doc, text)

void mh_schema_init(struct mh_schema *s, struct mh_config *cfg, mh_config_error_fn on_error,
	void *ud)
{
	memset(s, 0, sizeof(*s));
	mh_yamldoc_init(&s->doc, on_error, ud);
	s->cfg = cfg;
	s->meter_controls_tail = &s->meter_controls;
}

void mh_schema_deinit(struct mh_schema *s)
{
	mh_yamldoc_unload(&s->doc);
}

const struct mh_dlt645_control_config mh_schema_control_defaults = {
	.level = 2,
	.close = MH_CLOSE_DIRECT,
};

void *mh_schema_alloc(struct mh_schema *s, size_t size)
{
	void *p = mh_arena_alloc(&s->cfg->arena, size);

	if (!p)
		s->oom = true;
	return p;
}

const char *mh_schema_strdup(struct mh_schema *s, const char *text)
{
	const char *p = mh_arena_strdup(&s->cfg->arena, text);

	if (!p)
		s->oom = true;
	return p;
}

static const char *scalar(const yaml_node_t *node)
{
	return mh_yamldoc_scalar(node);
}

static bool expect_scalar(struct mh_schema *s, const yaml_node_t *node, const char *what)
{
	return mh_yamldoc_expect_scalar(&s->doc, node, what);
}

/* ---- what a table entry is ------------------------------------------- */

struct key_spec;
typedef void (*parse_fn)(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

/* How a parsed value is stored, so two configurations can be compared key by key. */
enum store_kind {
	STORE_NONE,   /* lists and keys parsed into several fields: not compared */
	STORE_STRING, /* const char * */
	STORE_UINT,   /* unsigned */
	STORE_U64,    /* uint64_t */
	STORE_INT,    /* an enum */
	STORE_DOUBLE, /* double */
	STORE_MAP,    /* a nested table (spec->arg), its offsets from the same base */
};

struct key_type {
	parse_fn parse;
	enum store_kind store;
};

enum {
	KEY_REQUIRED = 1 << 0,
	/* Part of the public contract, but this version does not implement it yet. */
	KEY_UNSUPPORTED = 1 << 1,
	/*
	 * Every entry says what a reload (SIGHUP) may do with it, as mosquitto's
	 * "if (reload) continue" says it in code: KEY_LIVE values can be taken
	 * by a running daemon; a KEY_RESTART value is fixed once the daemon runs
	 * (the store is mapped at its path and size, every record and topic
	 * carries the gateway's id, every boundary its time zone). A mapping is
	 * KEY_LIVE and its keys speak for themselves.
	 */
	KEY_LIVE = 1 << 2,
	KEY_RESTART = 1 << 3,
	/*
	 * A key of another shape of the same mapping (a Modbus key in a DL/T 645
	 * profile's control): an error that says so, spec->arg finishing the
	 * sentence "'KEY' is ...".
	 */
	KEY_FOREIGN = 1 << 4,
};

struct key_spec {
	const char *key;
	const struct key_type *type; /* NULL for KEY_UNSUPPORTED */
	size_t offset;
	unsigned flags;
	const void *arg; /* nested table, enum names, or limits */
};

struct enum_name {
	const char *name;
	int value;
};

struct uint_range {
	uint64_t min, max;
};

/* Keys in a mapping are tracked in a 64-bit mask. */
#define MAX_KEYS 64

static void check_table(const struct key_spec *specs, size_t n)
{
	mh_require(n <= MAX_KEYS);
	for (size_t i = 0; i < n; i++) {
		const struct key_spec *spec = &specs[i];
		bool live = spec->flags & KEY_LIVE, restart = spec->flags & KEY_RESTART;

		mh_require(live != restart);
		mh_require(spec->type || (spec->flags & (KEY_UNSUPPORTED | KEY_FOREIGN)));
		mh_require(!(spec->flags & KEY_FOREIGN) || spec->arg);
		/* A restart key must be comparable, or no reload could ever notice it changed. */
		mh_require(!restart || (spec->type->store != STORE_NONE &&
					       spec->type->store != STORE_MAP));
	}
}

/* Walk mapping @node against @specs into @obj. Returns the keys given, bit i for specs[i]. */
static uint64_t walk_map(struct mh_schema *s, yaml_node_t *node, const struct key_spec *specs,
	void *obj)
{
	const struct key_spec *spec;
	uint64_t seen = 0;
	size_t n_specs = 0;

	for (spec = specs; spec->key; spec++)
		n_specs++;
	check_table(specs, n_specs);

	if (node->type != YAML_MAPPING_NODE) {
		node_error(s, node, "expected a mapping, found %s", mh_yamldoc_kind(node));
		return 0;
	}
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
		pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = mh_yamldoc_node(&s->doc, pair->key);
		yaml_node_t *v = mh_yamldoc_node(&s->doc, pair->value);
		const char *key;

		if (k->type != YAML_SCALAR_NODE) {
			node_error(s, k, "a key must be a plain word, found %s", mh_yamldoc_kind(k));
			continue;
		}
		key = scalar(k);
		for (spec = specs; spec->key && strcmp(spec->key, key); spec++)
			;
		size_t saved = mh_yamldoc_path_push_key(&s->doc, key);
		if (!spec->key) {
			node_error(s, k, "unknown key");
		} else if (seen & (1ull << (spec - specs))) {
			node_error(s, k, "key given twice");
		} else if (spec->flags & KEY_UNSUPPORTED) {
			seen |= 1ull << (spec - specs);
			node_error(s, k, "not supported by this version of meterhub yet; remove it");
		} else if (spec->flags & KEY_FOREIGN) {
			seen |= 1ull << (spec - specs);
			node_error(s, k, "'%s' is %s", key, (const char *)spec->arg);
		} else {
			seen |= 1ull << (spec - specs);
			spec->type->parse(s, v, (char *)obj + spec->offset, spec);
		}
		mh_yamldoc_path_pop(&s->doc, saved);
	}
	for (spec = specs; spec->key; spec++) {
		if ((spec->flags & KEY_REQUIRED) && !(seen & (1ull << (spec - specs)))) {
			size_t saved = mh_yamldoc_path_push_key(&s->doc, spec->key);
			node_error(s, node, "missing required key");
			mh_yamldoc_path_pop(&s->doc, saved);
		}
	}
	return seen;
}

/* ---- values ---------------------------------------------------------- */

static void parse_string(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	if (!expect_scalar(s, node, "a string"))
		return;
	*(const char **)dst = mh_schema_strdup(s, scalar(node));
}

/* A name that can stand in an MQTT topic level and a log line. */
static void parse_name(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *text;

	if (!expect_scalar(s, node, "a name"))
		return;
	text = scalar(node);
	if (!*text) {
		node_error(s, node, "a name cannot be empty");
		return;
	}
	if (strlen(text) > 64) {
		node_error(s, node, "\"%s\" is longer than 64 characters", shown(s, text));
		return;
	}
	for (const char *p = text; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr("-_.:", *p)) {
			node_error(s, node,
				"\"%s\" may hold only letters, digits, '-', '_', '.' and ':'",
				shown(s, text));
			return;
		}
	}
	*(const char **)dst = mh_schema_strdup(s, text);
}

static void parse_file(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	if (!expect_scalar(s, node, "a file name"))
		return;
	if (access(scalar(node), R_OK) < 0) {
		node_error(s, node, "cannot read \"%s\": %s", shown(s, scalar(node)), strerror(errno));
		return;
	}
	*(const char **)dst = mh_schema_strdup(s, scalar(node));
}

/*
 * A file that holds a secret (the MQTT password, the TLS private key, the
 * command key): readable by meterhub and by nobody else, as ssh refuses a
 * private key others can read. Checked when the file is loaded, so
 * --check-config says it as a start would.
 */
static void parse_secret_file(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *path;
	struct stat st;

	if (!expect_scalar(s, node, "a file name"))
		return;
	path = scalar(node);
	if (access(path, R_OK) < 0 || stat(path, &st) < 0) {
		node_error(s, node, "cannot read \"%s\": %s", shown(s, path), strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		node_error(s, node, "%s is not a regular file", shown(s, path));
		return;
	}
	if (st.st_mode & 077) {
		node_error(s, node, "%s is %s by group or others (mode %04o); chmod 600 it",
			shown(s, path),
			st.st_mode & 044 ? "readable" : "writable or executable",
			(unsigned)(st.st_mode & 07777));
		return;
	}
	*(const char **)dst = mh_schema_strdup(s, path);
}

static void parse_uint(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct uint_range *r = spec->arg;
	uint64_t v;

	/* Marks the key as present but wrong, so validation does not call it missing. */
	*(unsigned *)dst = UINT_MAX - 1;
	if (!expect_scalar(s, node, "a whole number"))
		return;
	if (mh_config_parse_uint(scalar(node), &v) < 0) {
		node_error(s, node, "\"%s\" is not a whole number", shown(s, scalar(node)));
		return;
	}
	if (v < r->min || v > r->max) {
		node_error(s, node, "%s is out of range (%" PRIu64 " to %" PRIu64 ")",
			shown(s, scalar(node)),
			r->min, r->max);
		return;
	}
	*(unsigned *)dst = (unsigned)v;
}

/* Durations are stored in milliseconds; spec->arg gives the allowed range. */
static void parse_duration(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct uint_range *r = spec->arg;
	uint64_t ms;

	if (!expect_scalar(s, node, "a duration"))
		return;
	if (mh_config_parse_duration(scalar(node), &ms) < 0) {
		node_error(s, node,
			"\"%s\" is not a duration (a whole number with ms, s, m or h, e.g. 500ms, 15m)",
			shown(s, scalar(node)));
		return;
	}
	if (ms < r->min || ms > r->max) {
		node_error(s, node, "%s is out of range (%" PRIu64 "ms to %" PRIu64 "ms)",
			shown(s, scalar(node)), r->min, r->max);
		return;
	}
	*(unsigned *)dst = (unsigned)ms;
}

/* Whether @path is a compiled time zone (glibc falls back to UTC, silently, on anything else). */
static bool is_tzif(const char *path)
{
	char magic[4];
	FILE *f = fopen(path, "rb");
	bool ok;

	if (!f)
		return false;
	ok = fread(magic, 1, sizeof(magic), f) == sizeof(magic) && !memcmp(magic, "TZif", 4);
	fclose(f);
	return ok;
}

static void parse_timezone(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *dir = getenv("TZDIR");
	char zone[512];

	if (!expect_scalar(s, node, "a time zone name"))
		return;
	snprintf(zone, sizeof(zone), "%s/%s", dir ? dir : "/usr/share/zoneinfo", scalar(node));
	if (strstr(scalar(node), "..") || !is_tzif(zone)) {
		node_error(s, node,
			"unknown time zone \"%s\" (expected a tz database name such as Asia/Shanghai)",
			shown(s, scalar(node)));
		return;
	}
	*(const char **)dst = mh_schema_strdup(s, scalar(node));
}

static void parse_interval(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	unsigned ms = 0;

	parse_duration(s, node, &ms, spec);
	if (!ms)
		return;
	if (86400000u % ms) {
		node_error(s, node,
			"%s does not divide a day evenly, so boundaries could not be counted from midnight",
			shown(s, scalar(node)));
		return;
	}
	*(unsigned *)dst = ms;
}

static void parse_uri(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	static const char *const schemes[] = { "tcp://", "mqtt://", "ssl://", "mqtts://" };

	if (!expect_scalar(s, node, "a broker URI"))
		return;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (!strncmp(scalar(node), schemes[i], strlen(schemes[i]))) {
			*(const char **)dst = mh_schema_strdup(s, scalar(node));
			return;
		}
	}
	node_error(s, node, "\"%s\" must start with tcp://, mqtt://, ssl:// or mqtts://",
		shown(s, scalar(node)));
}

static void parse_di(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_point *point = (struct mh_point *)((char *)dst - offsetof(struct mh_point, di));
	const struct mh_dlt645_di_info *info;
	uint32_t di;

	/* Even a wrong identifier makes this a DL/T 645 point, for the checks that follow. */
	point->has_di = true;
	point->di = UINT32_MAX;
	if (!expect_scalar(s, node, "a data identifier"))
		return;
	if (mh_dlt645_di_parse(scalar(node), &di) < 0) {
		node_error(s, node, "\"%s\" is not a data identifier (8 hex digits, e.g. \"00010000\")",
			shown(s, scalar(node)));
		return;
	}
	info = mh_dlt645_di_lookup(di);
	if (!info) {
		node_error(s, node, "data identifier %s is not one meterhub knows", scalar(node));
		return;
	}
	if (!info->names) {
		node_error(s, node, "data identifier %s (%s) is not a number that can be published",
			scalar(node), info->description);
		return;
	}
	point->di = di;
}

static void parse_enum(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct enum_name *e;
	char choices[256] = "";
	size_t n = 0;

	if (!expect_scalar(s, node, "one of the listed words"))
		return;
	for (e = spec->arg; e->name; e++) {
		if (!strcmp(e->name, scalar(node))) {
			*(int *)dst = e->value;
			return;
		}
		n += (size_t)snprintf(choices + n, sizeof(choices) - n, "%s%s",
			e == spec->arg ? "" : (e[1].name ? ", " : " or "), e->name);
		if (n >= sizeof(choices))
			n = sizeof(choices) - 1;
	}
	node_error(s, node, "\"%s\" is not one of %s", shown(s, scalar(node)), choices);
	/* Marks the key as present but wrong, so validation does not call it missing. */
	*(int *)dst = -2;
}

static void parse_map(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	walk_map(s, node, spec->arg, dst);
}

static void parse_baud(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	unsigned baud;
	int rc;

	/* Marks the key as present but wrong, so validation does not call it missing. */
	*(unsigned *)dst = UINT_MAX - 1;
	if (!expect_scalar(s, node, "a whole number"))
		return;
	rc = mh_config_parse_baud(scalar(node), &baud);
	if (rc == -EINVAL) {
		node_error(s, node, "\"%s\" is not a whole number", shown(s, scalar(node)));
		return;
	}
	/* libmodbus takes any number and quietly runs the line at 9600 instead. */
	if (rc < 0) {
		node_error(s, node, "%s is not a standard baud rate; use one of %s",
			shown(s, scalar(node)), mh_config_baud_names);
		return;
	}
	*(unsigned *)dst = baud;
}

/*
 * Every topic is "PREFIX/kind/meter" (status, reading/m-0001, ...). The
 * uplink builds them in fixed buffers, the shortest of 256 bytes for the
 * status topic, so a longer prefix would be cut without a word.
 */
#define MAX_TOPIC_PREFIX 200

static void parse_topic_prefix(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *text, *bad;

	if (!expect_scalar(s, node, "a topic prefix"))
		return;
	text = scalar(node);
	for (bad = text; *bad && (unsigned char)*bad >= 0x20 && *bad != 0x7F; bad++)
		;
	if (!*text) {
		node_error(s, node, "a topic prefix cannot be empty: topics need a level of their own");
	} else if (strpbrk(text, "+#")) {
		/* A broker disconnects a client that publishes to a wildcard. */
		node_error(s, node,
			"\"%s\" holds '%c', an MQTT wildcard, which a topic to publish to may not hold",
			shown(s, text), *strpbrk(text, "+#"));
	} else if (*bad) {
		node_error(s, node, "\"%s\" holds a control character, which a topic may not hold",
			shown(s, text));
	} else if (text[0] == '/' || text[strlen(text) - 1] == '/' || strstr(text, "//")) {
		node_error(s, node,
			"\"%s\" has an empty topic level (a '/' at the start, at the end or twice); "
			"write it as levels joined by single '/', e.g. meterhub/gw-001",
			shown(s, text));
	} else if (strlen(text) > MAX_TOPIC_PREFIX) {
		node_error(s, node, "\"%s\" is longer than %d bytes", shown(s, text),
			MAX_TOPIC_PREFIX);
	} else {
		*(const char **)dst = mh_schema_strdup(s, text);
	}
}

static void parse_client_id(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *text;

	if (!expect_scalar(s, node, "a client id"))
		return;
	text = scalar(node);
	if (!*text) {
		/* An empty id asks the broker to make one up, and to forget the session. */
		node_error(s, node, "a client id cannot be empty: the broker keeps the session under it");
		return;
	}
	/* MQTT strings carry a 16-bit length. */
	if (strlen(text) > 65535) {
		node_error(s, node, "\"%s\" is longer than 65535 bytes, the most MQTT can carry",
			shown(s, text));
		return;
	}
	*(const char **)dst = mh_schema_strdup(s, text);
}

/* Remembers where the block stands: whether the URI uses TLS is checked once both are known. */
static void parse_tls(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	s->tls_pos = mh_yamldoc_pos(&s->doc, node);
	walk_map(s, node, spec->arg, dst);
}

/* YAML's own spellings of infinity and not-a-number, which strtod() does not read. */
static bool is_yaml_non_finite(const char *text)
{
	static const char *const words[] = { ".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN" };

	if (*text == '+' || *text == '-')
		text++;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(text, words[i]))
			return true;
	return false;
}

static void parse_scale(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	char *end;
	double v;

	if (!expect_scalar(s, node, "a number"))
		return;
	errno = 0;
	v = strtod(scalar(node), &end);
	if (is_yaml_non_finite(scalar(node)) ||
		(end != scalar(node) && !*end && !isfinite(v))) {
		node_error(s, node, "\"%s\" is not a finite number", shown(s, scalar(node)));
		return;
	}
	if (errno || *end || end == scalar(node)) {
		node_error(s, node, "\"%s\" is not a number", shown(s, scalar(node)));
		return;
	}
	if (v == 0) {
		node_error(s, node, "a scale of %s would publish every value of this point as 0",
			shown(s, scalar(node)));
		return;
	}
	*(double *)dst = v;
}

static void parse_absolute_path(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	if (!expect_scalar(s, node, "a directory"))
		return;
	/* systemd starts a service in /, a shell wherever it is: the store must not move with it. */
	if (scalar(node)[0] != '/') {
		node_error(s, node,
			"\"%s\" is not an absolute path; write the directory from /, e.g. "
			"/var/lib/meterhub",
			shown(s, scalar(node)));
		return;
	}
	*(const char **)dst = mh_schema_strdup(s, scalar(node));
}

static void parse_store_size(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct uint_range *r = spec->arg;
	uint64_t limit = mh_config_store_limit(SIZE_MAX);
	uint64_t v;

	if (!expect_scalar(s, node, "a size"))
		return;
	if (mh_config_parse_size(scalar(node), &v) < 0) {
		node_error(s, node,
			"\"%s\" is not a size (a whole number of bytes, or with KiB, MiB, GiB)",
			shown(s, scalar(node)));
		return;
	}
	if (v > limit && limit < r->max) {
		node_error(s, node,
			"%s is more than a 32-bit system can map; at most %" PRIu64 "MiB here",
			shown(s, scalar(node)), limit >> 20);
		return;
	}
	if (v < r->min || v > r->max) {
		node_error(s, node, "%s is out of range (%" PRIu64 " to %" PRIu64 " bytes)",
			shown(s, scalar(node)), r->min, r->max);
		return;
	}
	*(uint64_t *)dst = v;
}

/* ---- tariffs --------------------------------------------------------- */

/* "HH:MM" from 00:00 to 24:00 (which is midnight again), into minutes after midnight. */
static void parse_time_of_day(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *t;

	/* Marks the key as present but wrong, so validation does not call it missing. */
	*(unsigned *)dst = UINT_MAX - 1;
	if (!expect_scalar(s, node, "a time of day"))
		return;
	t = scalar(node);
	if (strlen(t) != 5 || !isdigit((unsigned char)t[0]) || !isdigit((unsigned char)t[1]) ||
		t[2] != ':' || !isdigit((unsigned char)t[3]) || !isdigit((unsigned char)t[4])) {
		node_error(s, node, "\"%s\" is not a time of day (HH:MM, quoted, e.g. \"08:00\")",
			shown(s, t));
		return;
	}
	unsigned h = (unsigned)(t[0] - '0') * 10 + (unsigned)(t[1] - '0');
	unsigned m = (unsigned)(t[3] - '0') * 10 + (unsigned)(t[4] - '0');
	if (h > 24 || m > 59 || (h == 24 && m)) {
		node_error(s, node, "\"%s\" is not a time of day (00:00 to 24:00)", t);
		return;
	}
	*(unsigned *)dst = (h * 60 + m) % MH_TARIFF_DAY_MIN;
}

static void parse_daily_freeze(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	parse_time_of_day(s, node, dst, spec);
	/* Whether it falls on a boundary is known only with the interval: checked later. */
	s->freeze_pos = mh_yamldoc_pos(&s->doc, node);
}

/* A list of whole numbers from 1 to 12, into a mask of months. */
static void parse_months(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	uint16_t mask = 0;

	if (node->type != YAML_SEQUENCE_NODE || !mh_yamldoc_seq_len(node)) {
		node_error(s, node, "expected a list of months (1 to 12), e.g. [7, 8]");
		return;
	}
	for (size_t i = 0; i < mh_yamldoc_seq_len(node); i++) {
		yaml_node_t *item = mh_yamldoc_node(&s->doc, node->data.sequence.items.start[i]);
		uint64_t v;
		if (!expect_scalar(s, item, "a month"))
			continue;
		if (mh_config_parse_uint(scalar(item), &v) < 0 || v < 1 || v > 12) {
			node_error(s, item, "\"%s\" is not a month (1 to 12)", shown(s, scalar(item)));
			continue;
		}
		mask |= (uint16_t)(1u << v);
	}
	/* Bit 0 (no month) says "given", so a wrong list is not also called missing. */
	*(uint16_t *)dst = mask | 1;
}

/* A list of weekdays (sun mon tue wed thu fri sat, or weekend, weekdays) into a mask. */
static void parse_days(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	static const struct {
		const char *name;
		uint8_t mask;
	} days[] = {
		{ "sun", 1 << 0 }, { "mon", 1 << 1 }, { "tue", 1 << 2 }, { "wed", 1 << 3 },
		{ "thu", 1 << 4 }, { "fri", 1 << 5 }, { "sat", 1 << 6 },
		{ "weekend", 1 << 0 | 1 << 6 }, { "weekdays", 0x3e },
	};
	uint8_t mask = 0;

	if (node->type != YAML_SEQUENCE_NODE || !mh_yamldoc_seq_len(node)) {
		node_error(s, node, "expected a list of days, e.g. [sat, sun] or [weekend]");
		return;
	}
	for (size_t i = 0; i < mh_yamldoc_seq_len(node); i++) {
		yaml_node_t *item = mh_yamldoc_node(&s->doc, node->data.sequence.items.start[i]);
		size_t d;
		if (!expect_scalar(s, item, "a day"))
			continue;
		for (d = 0; d < sizeof(days) / sizeof(days[0]); d++)
			if (!strcmp(days[d].name, scalar(item)))
				break;
		if (d == sizeof(days) / sizeof(days[0])) {
			node_error(s, item,
				"\"%s\" is not a day (sun, mon, tue, wed, thu, fri, sat, weekend or weekdays)",
				shown(s, scalar(item)));
			continue;
		}
		mask |= days[d].mask;
	}
	/* Bit 7 (no day) says "given", so a wrong list is not also called missing. */
	*(uint8_t *)dst = mask | 0x80;
}

static void parse_tariff_periods(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_season_periods(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_seasons(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_tariff(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_tariffs(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

static const struct key_type t_time_of_day = { parse_time_of_day, STORE_UINT };
static const struct key_type t_daily_freeze = { parse_daily_freeze, STORE_UINT };
static const struct key_type t_months = { parse_months, STORE_NONE };
static const struct key_type t_days = { parse_days, STORE_NONE };
static const struct key_type t_tariff_periods = { parse_tariff_periods, STORE_NONE };
static const struct key_type t_season_periods = { parse_season_periods, STORE_NONE };
static const struct key_type t_seasons = { parse_seasons, STORE_NONE };
static const struct key_type t_tariff = { parse_tariff, STORE_NONE };
static const struct key_type t_tariffs = { parse_tariffs, STORE_NONE };


static const struct key_type t_string = { parse_string, STORE_STRING };
static const struct key_type t_name = { parse_name, STORE_STRING };
static const struct key_type t_file = { parse_file, STORE_STRING };
static const struct key_type t_timezone = { parse_timezone, STORE_STRING };
static const struct key_type t_uri = { parse_uri, STORE_STRING };
static const struct key_type t_uint = { parse_uint, STORE_UINT };
static const struct key_type t_duration = { parse_duration, STORE_UINT };
static const struct key_type t_interval = { parse_interval, STORE_UINT };
static const struct key_type t_enum = { parse_enum, STORE_INT };
static const struct key_type t_scale = { parse_scale, STORE_DOUBLE };
static const struct key_type t_baud = { parse_baud, STORE_UINT };
static const struct key_type t_topic_prefix = { parse_topic_prefix, STORE_STRING };
static const struct key_type t_client_id = { parse_client_id, STORE_STRING };
static const struct key_type t_tls = { parse_tls, STORE_MAP };
static const struct key_type t_absolute_path = { parse_absolute_path, STORE_STRING };
static const struct key_type t_store_size = { parse_store_size, STORE_U64 };
static const struct key_type t_di = { parse_di, STORE_NONE };
static const struct key_type t_map = { parse_map, STORE_MAP };

/* ---- commands and control -------------------------------------------- */

/* A 16-bit field (a Modbus address or value): parse_uint's checks, stored in a uint16_t. */
static void parse_u16(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	unsigned v = UINT_MAX;

	parse_uint(s, node, &v, spec);
	if (v <= 0xffff)
		*(uint16_t *)dst = (uint16_t)v;
}

/* YAML 1.2's booleans (its core schema), which is what a reader of the file expects. */
static void parse_bool(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	static const char *const yes[] = { "true", "True", "TRUE" };
	static const char *const no[] = { "false", "False", "FALSE" };

	if (!expect_scalar(s, node, "true or false"))
		return;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(scalar(node), yes[i]) || !strcmp(scalar(node), no[i])) {
			*(bool *)dst = !strcmp(scalar(node), yes[i]);
			return;
		}
	}
	node_error(s, node, "\"%s\" is not true or false", shown(s, scalar(node)));
}

/* A DL/T 645 password: 6 decimal digits as the meter shows them, into P0 P1 P2. */
static void parse_password(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *text;

	if (!expect_scalar(s, node, "a password"))
		return;
	text = scalar(node);
	/* Decimal only: the codec would also take "AA" pairs, which are an address wildcard. */
	if (strlen(text) != 6 || strspn(text, "0123456789") != 6 ||
		mh_dlt645_digits_parse(text, 6, dst) < 0)
		node_error(s, node,
			"\"%s\" is not a password (6 decimal digits, quoted, e.g. \"000000\")",
			shown(s, text));
}

/* A DL/T 645 operator code: 8 hex digits, into C0..C3 (C0 the lowest two). */
static void parse_operator(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	uint8_t *code = dst;
	uint32_t v;

	if (!expect_scalar(s, node, "an operator code"))
		return;
	/* The codec's parser of 8 hex digits (a data identifier's) reads them MSB first. */
	if (mh_dlt645_di_parse(scalar(node), &v) < 0) {
		node_error(s, node,
			"\"%s\" is not an operator code (8 hex digits, quoted, e.g. \"00000000\")",
			shown(s, scalar(node)));
		return;
	}
	for (int i = 0; i < 4; i++)
		code[i] = (uint8_t)(v >> (8 * i));
}

/*
 * commands.settle and commands.confirm_within: a duration, 0 when it is
 * wrong (no valid one is 0), and where it was written, so validation can
 * hold one against the other.
 */
static void parse_commands_duration(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec, struct mh_pos *pos)
{
	unsigned ms = 0;

	parse_duration(s, node, &ms, spec);
	*(unsigned *)dst = ms;
	*pos = mh_yamldoc_pos(&s->doc, node);
}

static void parse_settle(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	parse_commands_duration(s, node, dst, spec, &s->settle_pos);
}

static void parse_confirm_within(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	parse_commands_duration(s, node, dst, spec, &s->confirm_pos);
}

static void parse_window_edge(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_window_edge e;

	if (!expect_scalar(s, node, "a date or a time"))
		return;
	if (mh_window_edge_parse(scalar(node), &e) < 0) {
		node_error(s, node,
			"\"%s\" is neither a date (\"YYYY-MM-DD\", quoted) nor an RFC 3339 time "
			"with its offset (\"2027-06-01T08:00:00+08:00\")",
			shown(s, scalar(node)));
		return;
	}
	*(const char **)dst = mh_schema_strdup(s, scalar(node));
}

static void parse_commands(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;

	cfg->commands.enabled = true;
	walk_map(s, node, spec->arg, dst);
}

/* A Modbus write of a control: a coil takes 0 or 1 (libmodbus sends 1 as FF00). */
static void parse_modbus_write(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_modbus_write_config *w = dst;
	yaml_node_t *value;

	/* A wrong value is reported where it stands and leaves these as they are. */
	w->table = (enum mh_modbus_table)-1;
	w->value = 0;
	walk_map(s, node, spec->arg, w);
	value = mh_yamldoc_map_value(&s->doc, node, "value");
	if (w->table == MH_MODBUS_COIL && value && w->value > 1) {
		size_t saved = mh_yamldoc_path_push_key(&s->doc, "value");
		node_error(s, value, "a coil is 0 or 1, not %u", w->value);
		mh_yamldoc_path_pop(&s->doc, saved);
	}
}

/* Where a Modbus meter shows its relay: a coil or discrete input reads 0 or 1. */
static void parse_modbus_relay(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_modbus_relay_config *r = dst;
	yaml_node_t *value;

	r->table = (enum mh_modbus_table)-1;
	r->open_when = 1;
	walk_map(s, node, spec->arg, r);
	value = mh_yamldoc_map_value(&s->doc, node, "open_when");
	if ((int)r->table >= 0 && mh_modbus_table_is_bits(r->table) && value && r->open_when > 1) {
		size_t saved = mh_yamldoc_path_push_key(&s->doc, "open_when");
		node_error(s, value, "a %s reads 0 or 1, not %u",
			r->table == MH_MODBUS_COIL ? "coil" : "discrete input", r->open_when);
		mh_yamldoc_path_pop(&s->doc, saved);
	}
}

/*
 * A profile's control: which keys belong depends on the profile's
 * protocol, which its points tell, and they may come after it. The node is
 * kept and walked once the whole profile is (walk_profile_control()).
 */
static void parse_profile_control(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_control_config *c = dst;

	c->present = true;
	c->pos = mh_yamldoc_pos(&s->doc, node);
	s->control_node = node;
}

static void parse_meter_control(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

static const struct key_type t_u16 = { parse_u16, STORE_NONE };
static const struct key_type t_bool = { parse_bool, STORE_NONE };
static const struct key_type t_password = { parse_password, STORE_NONE };
static const struct key_type t_operator = { parse_operator, STORE_NONE };
static const struct key_type t_secret_file = { parse_secret_file, STORE_STRING };
static const struct key_type t_settle = { parse_settle, STORE_UINT };
static const struct key_type t_confirm_within = { parse_confirm_within, STORE_UINT };
static const struct key_type t_window_edge = { parse_window_edge, STORE_STRING };
static const struct key_type t_commands = { parse_commands, STORE_MAP };
static const struct key_type t_modbus_write = { parse_modbus_write, STORE_NONE };
static const struct key_type t_modbus_relay = { parse_modbus_relay, STORE_NONE };
static const struct key_type t_profile_control = { parse_profile_control, STORE_NONE };
static const struct key_type t_meter_control = { parse_meter_control, STORE_NONE };

/* ---- lists ----------------------------------------------------------- */

static bool expect_list(struct mh_schema *s, const yaml_node_t *node)
{
	if (node->type == YAML_SEQUENCE_NODE && mh_yamldoc_seq_len(node) > 0)
		return true;
	node_error(s, node, "expected a list with at least one entry, found %s",
		node->type == YAML_SEQUENCE_NODE ? "an empty list" : mh_yamldoc_kind(node));
	return false;
}

/*
 * A list of mappings into a fresh array of @size-byte elements: each gets
 * its position (at @pos_offset), its defaults from @init, then its keys.
 * Returns the array with its length in *@count, or NULL.
 */
static void *parse_list(struct mh_schema *s, yaml_node_t *node, size_t size, size_t pos_offset,
	void (*init)(void *elem), const struct key_spec *keys, size_t *count)
{
	char *array;
	size_t n;

	if (!expect_list(s, node))
		return NULL;
	n = mh_yamldoc_seq_len(node);
	array = mh_schema_alloc(s, n * size);
	if (!array)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = mh_yamldoc_node(&s->doc, node->data.sequence.items.start[i]);
		char *elem = array + i * size;
		size_t saved = mh_yamldoc_path_push_index(&s->doc, i);

		*(struct mh_pos *)(elem + pos_offset) = mh_yamldoc_pos(&s->doc, item);
		if (init)
			init(elem);
		walk_map(s, item, keys, elem);
		mh_yamldoc_path_pop(&s->doc, saved);
	}
	*count = n;
	return array;
}

static void init_point(void *elem)
{
	struct mh_point *pt = elem;

	/* Unset until validation, which knows whether they were given. */
	pt->modbus.table = (enum mh_modbus_table)-1;
	pt->modbus.type = (enum mh_modbus_type)-1;
	pt->modbus.word_order = (enum mh_modbus_word_order)-1;
	pt->modbus.scale = NAN;
	pt->raw_address = UINT_MAX;
}

static void init_bus(void *elem)
{
	struct mh_bus_config *bus = elem;

	/* Protocol-dependent defaults are filled in by validation. */
	bus->parity = (enum mh_parity)-1;
	bus->protocol = (enum mh_protocol)-1;
	bus->timeout_ms = 500;
	bus->frame_gap_ms = UINT_MAX;
}

static void parse_points(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_meters(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_buses(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_profiles(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

static const struct key_type t_points = { parse_points, STORE_NONE };
static const struct key_type t_meters = { parse_meters, STORE_NONE };
static const struct key_type t_buses = { parse_buses, STORE_NONE };
static const struct key_type t_profiles = { parse_profiles, STORE_NONE };

/* ---- the tables ------------------------------------------------------ */

static const struct uint_range range_timeout = { 10, 60000 };
static const struct uint_range range_gap = { 0, 10000 };
/* Below 1 s only for lab and saturation measurements (README). */
static const struct uint_range range_interval = { 100, 86400000 };
static const struct uint_range range_health = { 1000, 86400000 };
static const struct uint_range range_offline_after = { 1, 1000 };
static const struct uint_range range_store = { 64ull << 10, 1ull << 40 };
static const struct uint_range range_commit_window = { 0, 2000 };
static const struct uint_range range_window = { 1, 65535 };
static const struct uint_range range_keepalive = { 5, 3600 };
static const struct uint_range range_max_gap = { 0, MH_MODBUS_MAX_REGS };
static const struct uint_range range_reg = { 0, 0xffff };
static const struct uint_range range_retries = { 0, 5 };
static const struct uint_range range_backfill = { 0, 61 };
static const struct uint_range range_attempts = { 1, 10 };
static const struct uint_range range_backoff = { 100, 600000 };
static const struct uint_range range_skew = { 1000, 86400000 };
static const struct uint_range range_settle = { 100, 60000 };
static const struct uint_range range_confirm = { 100, 600000 };
static const struct uint_range range_queue = { 1, 64 };
static const struct uint_range range_level = { 0, 99 };
static const struct uint_range range_u16 = { 0, 0xffff };

static const struct enum_name parity_names[] = {
	{ "none", MH_PARITY_NONE },
	{ "even", MH_PARITY_EVEN },
	{ "odd", MH_PARITY_ODD },
	{ NULL, 0 },
};

static const struct enum_name protocol_names[] = {
	{ "dlt645", MH_PROTO_DLT645 },
	{ "modbus", MH_PROTO_MODBUS },
	{ NULL, 0 },
};

static const struct enum_name table_names[] = {
	{ "holding", MH_MODBUS_HOLDING },
	{ "input", MH_MODBUS_INPUT },
	{ "coil", MH_MODBUS_COIL },
	{ "discrete", MH_MODBUS_DISCRETE },
	{ NULL, 0 },
};

/* What a control may write: a coil, or a holding register. */
static const struct enum_name write_table_names[] = {
	{ "coil", MH_MODBUS_COIL },
	{ "holding", MH_MODBUS_HOLDING },
	{ NULL, 0 },
};

static const struct enum_name close_names[] = {
	{ "direct", MH_CLOSE_DIRECT },
	{ "permit", MH_CLOSE_PERMIT },
	{ NULL, 0 },
};

static const struct enum_name type_names[] = {
	{ "u16", MH_MODBUS_U16 },
	{ "s16", MH_MODBUS_S16 },
	{ "u32", MH_MODBUS_U32 },
	{ "s32", MH_MODBUS_S32 },
	{ "u64", MH_MODBUS_U64 },
	{ "s64", MH_MODBUS_S64 },
	{ "float32", MH_MODBUS_FLOAT32 },
	{ "float64", MH_MODBUS_FLOAT64 },
	{ "bit", MH_MODBUS_BIT },
	{ NULL, 0 },
};

static const struct enum_name word_order_names[] = {
	{ "big", MH_MODBUS_WORDS_BIG },
	{ "little", MH_MODBUS_WORDS_LITTLE },
	{ NULL, 0 },
};

/* The mappings of struct mh_config store straight into it: every offset is from its start. */
#define CFG(field) offsetof(struct mh_config, field)

static const struct key_spec gateway_keys[] = {
	{ "id", &t_name, CFG(gateway.id), KEY_REQUIRED | KEY_RESTART, NULL },
	{ "timezone", &t_timezone, CFG(gateway.timezone), KEY_REQUIRED | KEY_RESTART, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec store_keys[] = {
	{ "path", &t_absolute_path, CFG(store.path), KEY_RESTART, NULL },
	{ "max_bytes", &t_store_size, CFG(store.max_bytes), KEY_RESTART, &range_store },
	{ "commit_window", &t_duration, CFG(store.commit_window_ms), KEY_LIVE,
		&range_commit_window },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec tls_keys[] = {
	{ "ca", &t_file, CFG(mqtt.tls.ca), KEY_LIVE, NULL },
	{ "cert", &t_file, CFG(mqtt.tls.cert), KEY_LIVE, NULL },
	{ "key", &t_secret_file, CFG(mqtt.tls.key), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec mqtt_keys[] = {
	{ "uri", &t_uri, CFG(mqtt.uri), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "client_id", &t_client_id, CFG(mqtt.client_id), KEY_LIVE, NULL },
	{ "topic_prefix", &t_topic_prefix, CFG(mqtt.topic_prefix), KEY_LIVE, NULL },
	{ "tls", &t_tls, 0, KEY_LIVE, tls_keys },
	{ "username", &t_string, CFG(mqtt.username), KEY_LIVE, NULL },
	{ "password_file", &t_secret_file, CFG(mqtt.password_file), KEY_LIVE, NULL },
	{ "keepalive", &t_uint, CFG(mqtt.keepalive_s), KEY_LIVE, &range_keepalive },
	{ "window", &t_uint, CFG(mqtt.window), KEY_LIVE, &range_window },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec schedule_keys[] = {
	{ "interval", &t_interval, CFG(schedule.interval_ms), KEY_REQUIRED | KEY_LIVE,
		&range_interval },
	{ "daily_freeze", &t_daily_freeze, CFG(schedule.daily_freeze_min), KEY_LIVE, NULL },
	{ "retries", &t_uint, CFG(schedule.retries), KEY_LIVE, &range_retries },
	{ "backfill_days", &t_uint, CFG(schedule.backfill_days), KEY_LIVE, &range_backfill },
	{ "backfill_at", &t_time_of_day, CFG(schedule.backfill_at_min), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define WINDOW(field) offsetof(struct mh_protect_window_config, field)
static const struct key_spec window_keys[] = {
	{ "from", &t_window_edge, WINDOW(from), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "to", &t_window_edge, WINDOW(to), KEY_REQUIRED | KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static void parse_protect_windows(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static const struct key_type t_protect_windows = { parse_protect_windows, STORE_NONE };

static const struct key_spec commands_keys[] = {
	{ "hmac_key_file", &t_secret_file, CFG(commands.hmac_key_file), KEY_REQUIRED | KEY_LIVE,
		NULL },
	{ "max_attempts", &t_uint, CFG(commands.max_attempts), KEY_LIVE, &range_attempts },
	{ "retry_backoff", &t_duration, CFG(commands.retry_backoff_ms), KEY_LIVE, &range_backoff },
	{ "max_skew", &t_duration, CFG(commands.max_skew_ms), KEY_LIVE, &range_skew },
	{ "settle", &t_settle, CFG(commands.settle_ms), KEY_LIVE, &range_settle },
	{ "confirm_within", &t_confirm_within, CFG(commands.confirm_within_ms), KEY_LIVE,
		&range_confirm },
	{ "queue", &t_uint, CFG(commands.queue), KEY_LIVE, &range_queue },
	{ "protect_windows", &t_protect_windows, CFG(commands), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec health_keys[] = {
	{ "interval", &t_duration, CFG(health.interval_ms), KEY_LIVE, &range_health },
	{ "offline_after", &t_uint, CFG(health.offline_after), KEY_LIVE, &range_offline_after },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct uint_range range_clock_check = { 10000, 7 * 86400000u };
static const struct uint_range range_clock_drift = { 1000, 3600000 };

static const struct key_spec clock_keys[] = {
	{ "sync", &t_bool, CFG(clock.sync), KEY_LIVE, NULL },
	{ "check_every", &t_duration, CFG(clock.check_every_ms), KEY_LIVE, &range_clock_check },
	{ "max_drift", &t_duration, CFG(clock.max_drift_ms), KEY_LIVE, &range_clock_drift },
	{ "max_correction", &t_duration, CFG(clock.max_correction_ms), KEY_LIVE,
		&range_clock_drift },
	{ "require_synced", &t_bool, CFG(clock.require_synced), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define POINT(field) offsetof(struct mh_point, field)
static const struct key_spec point_keys[] = {
	{ "name", &t_name, POINT(name), KEY_LIVE, NULL },
	{ "table", &t_enum, POINT(modbus.table), KEY_LIVE, table_names },
	{ "address", &t_uint, POINT(raw_address), KEY_LIVE, &range_reg },
	{ "type", &t_enum, POINT(modbus.type), KEY_LIVE, type_names },
	{ "word_order", &t_enum, POINT(modbus.word_order), KEY_LIVE, word_order_names },
	{ "scale", &t_scale, POINT(modbus.scale), KEY_LIVE, NULL },
	{ "di", &t_di, POINT(di), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define WRITE(field) offsetof(struct mh_modbus_write_config, field)
static const struct key_spec modbus_write_keys[] = {
	{ "table", &t_enum, WRITE(table), KEY_REQUIRED | KEY_LIVE, write_table_names },
	{ "address", &t_u16, WRITE(address), KEY_REQUIRED | KEY_LIVE, &range_reg },
	{ "value", &t_u16, WRITE(value), KEY_REQUIRED | KEY_LIVE, &range_u16 },
	{ NULL, NULL, 0, 0, NULL },
};

#define RELAY(field) offsetof(struct mh_modbus_relay_config, field)
static const struct key_spec modbus_relay_keys[] = {
	{ "table", &t_enum, RELAY(table), KEY_REQUIRED | KEY_LIVE, table_names },
	{ "address", &t_u16, RELAY(address), KEY_REQUIRED | KEY_LIVE, &range_reg },
	{ "open_when", &t_u16, RELAY(open_when), KEY_LIVE, &range_u16 },
	{ NULL, NULL, 0, 0, NULL },
};

#define MODBUS_KEY_IN_DLT645 "a Modbus control key; this profile reads DL/T 645"
#define DLT645_KEY_IN_MODBUS "a DL/T 645 control key; this profile reads Modbus"
#define MODBUS_KEY_IN_METER                                                                        \
	"a Modbus control key, which only a profile's control holds; a meter's control "          \
	"gives DL/T 645 passwords (password_level, password, operator, close, esam)"

/* The DL/T 645 keys of a control, in the order of the MH_METER_CONTROL_* bits. */
#define DLT645(field) offsetof(struct mh_dlt645_control_config, field)
#define DLT645_CONTROL_KEYS                                                                        \
	{ "password_level", &t_uint, DLT645(level), KEY_LIVE, &range_level },                      \
	{ "password", &t_password, DLT645(password), KEY_LIVE, NULL },                             \
	{ "operator", &t_operator, DLT645(operator_code), KEY_LIVE, NULL },                        \
	{ "close", &t_enum, DLT645(close), KEY_LIVE, close_names },                                \
	{ "esam", &t_bool, DLT645(esam), KEY_LIVE, NULL }

static const struct key_spec dlt645_control_keys[] = {
	DLT645_CONTROL_KEYS,
	{ "trip", NULL, 0, KEY_FOREIGN | KEY_LIVE, MODBUS_KEY_IN_DLT645 },
	{ "restore", NULL, 0, KEY_FOREIGN | KEY_LIVE, MODBUS_KEY_IN_DLT645 },
	{ "relay", NULL, 0, KEY_FOREIGN | KEY_LIVE, MODBUS_KEY_IN_DLT645 },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec meter_control_keys[] = {
	DLT645_CONTROL_KEYS,
	{ "trip", NULL, 0, KEY_FOREIGN | KEY_LIVE, MODBUS_KEY_IN_METER },
	{ "restore", NULL, 0, KEY_FOREIGN | KEY_LIVE, MODBUS_KEY_IN_METER },
	{ "relay", NULL, 0, KEY_FOREIGN | KEY_LIVE, MODBUS_KEY_IN_METER },
	{ NULL, NULL, 0, 0, NULL },
};

#define CONTROL(field) offsetof(struct mh_control_config, field)
static const struct key_spec modbus_control_keys[] = {
	{ "trip", &t_modbus_write, CONTROL(trip), KEY_REQUIRED | KEY_LIVE, modbus_write_keys },
	{ "restore", &t_modbus_write, CONTROL(restore), KEY_REQUIRED | KEY_LIVE,
		modbus_write_keys },
	{ "relay", &t_modbus_relay, CONTROL(relay), KEY_REQUIRED | KEY_LIVE, modbus_relay_keys },
	{ "password_level", NULL, 0, KEY_FOREIGN | KEY_LIVE, DLT645_KEY_IN_MODBUS },
	{ "password", NULL, 0, KEY_FOREIGN | KEY_LIVE, DLT645_KEY_IN_MODBUS },
	{ "operator", NULL, 0, KEY_FOREIGN | KEY_LIVE, DLT645_KEY_IN_MODBUS },
	{ "close", NULL, 0, KEY_FOREIGN | KEY_LIVE, DLT645_KEY_IN_MODBUS },
	{ "esam", NULL, 0, KEY_FOREIGN | KEY_LIVE, DLT645_KEY_IN_MODBUS },
	{ NULL, NULL, 0, 0, NULL },
};

#define PROFILE(field) offsetof(struct mh_profile, field)
static const struct key_spec profile_keys[] = {
	{ "description", &t_string, PROFILE(description), KEY_LIVE, NULL },
	{ "points", &t_points, 0, KEY_REQUIRED | KEY_LIVE, NULL },
	{ "max_gap", &t_uint, PROFILE(max_gap), KEY_LIVE, &range_max_gap },
	{ "control", &t_profile_control, PROFILE(control), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define PERIOD(field) offsetof(struct mh_period_config, field)
static const struct key_spec period_keys[] = {
	{ "name", &t_name, PERIOD(name), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "from", &t_time_of_day, PERIOD(from_min), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "to", &t_time_of_day, PERIOD(to_min), KEY_REQUIRED | KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define SEASON(field) offsetof(struct mh_season_config, field)
static const struct key_spec season_keys[] = {
	{ "months", &t_months, SEASON(months), KEY_LIVE, NULL },
	{ "days", &t_days, SEASON(days), KEY_LIVE, NULL },
	{ "periods", &t_season_periods, 0, KEY_REQUIRED | KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define TARIFF(field) offsetof(struct mh_tariff_config, field)
static const struct key_spec tariff_keys[] = {
	{ "periods", &t_tariff_periods, 0, KEY_REQUIRED | KEY_LIVE, NULL },
	{ "default", &t_name, TARIFF(default_period), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "seasons", &t_seasons, 0, KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define METER(field) offsetof(struct mh_meter_config, field)
static const struct key_spec meter_keys[] = {
	{ "id", &t_name, METER(id), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "address", &t_string, METER(address), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "profile", &t_string, METER(profile_name), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "tariff", &t_string, METER(tariff_name), KEY_LIVE, NULL },
	{ "control", &t_meter_control, METER(control), KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define BUS(field) offsetof(struct mh_bus_config, field)
static const struct key_spec bus_keys[] = {
	{ "name", &t_name, BUS(name), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "device", &t_string, BUS(device), KEY_REQUIRED | KEY_LIVE, NULL },
	{ "baud", &t_baud, BUS(baud), KEY_LIVE, NULL },
	{ "parity", &t_enum, BUS(parity), KEY_LIVE, parity_names },
	{ "protocol", &t_enum, BUS(protocol), KEY_REQUIRED | KEY_LIVE, protocol_names },
	{ "timeout", &t_duration, BUS(timeout_ms), KEY_LIVE, &range_timeout },
	{ "frame_gap", &t_duration, BUS(frame_gap_ms), KEY_LIVE, &range_gap },
	{ "meters", &t_meters, 0, KEY_REQUIRED | KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec root_keys[] = {
	{ "gateway", &t_map, 0, KEY_REQUIRED | KEY_LIVE, gateway_keys },
	{ "store", &t_map, 0, KEY_LIVE, store_keys },
	{ "mqtt", &t_map, 0, KEY_REQUIRED | KEY_LIVE, mqtt_keys },
	{ "schedule", &t_map, 0, KEY_REQUIRED | KEY_LIVE, schedule_keys },
	{ "health", &t_map, 0, KEY_LIVE, health_keys },
	{ "clock", &t_map, 0, KEY_LIVE, clock_keys },
	{ "tariff", &t_tariff, 0, KEY_LIVE, NULL },
	{ "tariffs", &t_tariffs, 0, KEY_LIVE, NULL },
	{ "commands", &t_commands, 0, KEY_LIVE, commands_keys },
	{ "buses", &t_buses, 0, KEY_REQUIRED | KEY_LIVE, NULL },
	{ "profiles", &t_profiles, 0, KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

/* Built-in profile files hold only profiles. */
static const struct key_spec builtin_root_keys[] = {
	{ "profiles", &t_profiles, 0, KEY_REQUIRED | KEY_LIVE, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

/* ---- the lists' parsers ---------------------------------------------- */

static void parse_points(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_profile *profile = dst;

	profile->points = parse_list(s, node, sizeof(struct mh_point),
		offsetof(struct mh_point, pos), init_point, point_keys, &profile->n_points);
}

static void parse_meters(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_bus_config *bus = dst;

	bus->meters = parse_list(s, node, sizeof(struct mh_meter_config), offsetof(struct mh_meter_config, pos),
		NULL, meter_keys, &bus->n_meters);
}

static void parse_meter_control(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_meter_control *mc = mh_schema_alloc(s, sizeof(*mc));

	if (!mc)
		return;
	mc->meter = (struct mh_meter_config *)((char *)dst -
					       offsetof(struct mh_meter_config, control));
	mc->pos = mh_yamldoc_pos(&s->doc, node);
	snprintf(mc->path, sizeof(mc->path), "%s", s->doc.path);
	/* The DL/T 645 keys lead the table in the order of the MH_METER_CONTROL_* bits. */
	mc->fields = (unsigned)(walk_map(s, node, meter_control_keys, &mc->given) & 0x1f);
	*s->meter_controls_tail = mc;
	s->meter_controls_tail = &mc->next;
}

static void parse_protect_windows(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_commands_config *c = dst;

	/* "protect_windows: []" says there are none, as leaving the key out does. */
	if (node->type == YAML_SEQUENCE_NODE && !mh_yamldoc_seq_len(node))
		return;
	c->windows = parse_list(s, node, sizeof(struct mh_protect_window_config),
		offsetof(struct mh_protect_window_config, pos), NULL, window_keys, &c->n_windows);
}

static void parse_buses(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;

	cfg->buses = parse_list(s, node, sizeof(struct mh_bus_config),
		offsetof(struct mh_bus_config, pos), init_bus, bus_keys, &cfg->n_buses);
}

/* The control mapping of @profile, once its points say which protocol it reads. */
static void walk_profile_control(struct mh_schema *s, yaml_node_t *node,
	struct mh_profile *profile)
{
	struct mh_control_config *c = &profile->control;
	bool dlt645 = false;
	size_t saved;

	c->dlt645 = mh_schema_control_defaults;
	/* Without points the protocol is unknown; the missing points are reported. */
	if (!profile->n_points)
		return;
	for (size_t i = 0; i < profile->n_points; i++)
		dlt645 |= profile->points[i].has_di;
	saved = mh_yamldoc_path_push_key(&s->doc, "control");
	if (dlt645)
		walk_map(s, node, dlt645_control_keys, &c->dlt645);
	else
		walk_map(s, node, modbus_control_keys, c);
	mh_yamldoc_path_pop(&s->doc, saved);
}

static void parse_profiles(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;
	struct mh_profile *grown;
	size_t n;

	if (node->type != YAML_MAPPING_NODE) {
		node_error(s, node, "expected a mapping of profile names, found %s",
			mh_yamldoc_kind(node));
		return;
	}
	n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
	/* Profiles arrive from several documents (built-ins, then the user's file). */
	grown = mh_schema_alloc(s, (cfg->n_profiles + n) * sizeof(*grown));
	if (!grown)
		return;
	if (cfg->n_profiles)
		memcpy(grown, cfg->profiles, cfg->n_profiles * sizeof(*grown));
	cfg->profiles = grown;

	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
		pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = mh_yamldoc_node(&s->doc, pair->key);
		yaml_node_t *v = mh_yamldoc_node(&s->doc, pair->value);
		struct mh_profile *profile = &cfg->profiles[cfg->n_profiles];
		const char *name = NULL;

		size_t saved = mh_yamldoc_path_push_key(&s->doc,
			k->type == YAML_SCALAR_NODE ? scalar(k) : "?");
		parse_name(s, k, &name, NULL);
		if (name) {
			const struct mh_profile *twin = mh_config_profile(cfg, name);
			if (twin && twin->builtin)
				node_error(s, k,
					"a built-in profile has this name; give your profile another one");
			else if (twin)
				node_error(s, k, "profile defined twice (first at line %u)",
					twin->pos.line);
			memset(profile, 0, sizeof(*profile));
			profile->name = name;
			profile->pos = mh_yamldoc_pos(&s->doc, k);
			profile->builtin = s->builtin;
			profile->max_gap = 8;
			s->control_node = NULL;
			walk_map(s, v, profile_keys, profile);
			if (s->control_node)
				walk_profile_control(s, s->control_node, profile);
			s->control_node = NULL;
			if (!twin)
				cfg->n_profiles++;
		}
		mh_yamldoc_path_pop(&s->doc, saved);
	}
}

static void init_period(void *elem)
{
	struct mh_period_config *p = elem;

	p->from_min = p->to_min = UINT_MAX;
}

static void parse_tariff_periods(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_tariff_config *t = dst;

	t->periods = parse_list(s, node, sizeof(struct mh_period_config),
		offsetof(struct mh_period_config, pos), init_period, period_keys, &t->n_periods);
}

static void parse_season_periods(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_season_config *season = dst;

	season->periods = parse_list(s, node, sizeof(struct mh_period_config),
		offsetof(struct mh_period_config, pos), init_period, period_keys,
		&season->n_periods);
}

static void parse_seasons(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_tariff_config *t = dst;

	t->seasons = parse_list(s, node, sizeof(struct mh_season_config),
		offsetof(struct mh_season_config, pos), NULL, season_keys, &t->n_seasons);
}

/* One tariff's mapping into @t, named @name, remembering where it was written. */
static void walk_tariff(struct mh_schema *s, yaml_node_t *node, const char *name,
	struct mh_tariff_config *t)
{
	t->name = name;
	t->pos = mh_yamldoc_pos(&s->doc, node);
	snprintf(t->path, sizeof(t->path), "%s", s->doc.path);
	walk_map(s, node, tariff_keys, t);
}

static void parse_tariff(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;
	struct mh_tariff_config *t = mh_schema_alloc(s, sizeof(*t));

	if (!t)
		return;
	walk_tariff(s, node, "tariff", t);
	cfg->tariff_config = t;
}

static void parse_tariffs(struct mh_schema *s, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;
	size_t n;

	if (node->type != YAML_MAPPING_NODE) {
		node_error(s, node, "expected a mapping of tariff names, found %s",
			mh_yamldoc_kind(node));
		return;
	}
	n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
	cfg->tariffs = mh_schema_alloc(s, n * sizeof(*cfg->tariffs));
	if (!cfg->tariffs)
		return;
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
		pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = mh_yamldoc_node(&s->doc, pair->key);
		yaml_node_t *v = mh_yamldoc_node(&s->doc, pair->value);
		const char *name = NULL;
		size_t saved = mh_yamldoc_path_push_key(&s->doc,
			k->type == YAML_SCALAR_NODE ? scalar(k) : "?");

		parse_name(s, k, &name, NULL);
		if (name) {
			const struct mh_tariff_config *twin = NULL;
			for (size_t i = 0; i < cfg->n_tariffs; i++)
				if (!strcmp(cfg->tariffs[i].name, name))
					twin = &cfg->tariffs[i];
			if (twin) {
				node_error(s, k, "tariff defined twice (first at line %u)",
					twin->pos.line);
			} else {
				walk_tariff(s, v, name, &cfg->tariffs[cfg->n_tariffs]);
				cfg->n_tariffs++;
			}
		}
		mh_yamldoc_path_pop(&s->doc, saved);
	}
}

/* ---- documents ------------------------------------------------------- */

int mh_schema_load(struct mh_schema *s, const char *name, const char *text, size_t len,
	bool builtin)
{
	/* Every position taken from the document points at this copy of its name. */
	const char *file = mh_schema_strdup(s, name);
	int rc;

	if (!file)
		return -ENOMEM;
	rc = mh_yamldoc_load(&s->doc, file, (const unsigned char *)text, len);
	if (rc)
		return rc;
	s->builtin = builtin;
	walk_map(s, mh_yamldoc_root(&s->doc), builtin ? builtin_root_keys : root_keys, s->cfg);
	s->builtin = false;
	mh_yamldoc_unload(&s->doc);
	return 0;
}

/* ---- reload ---------------------------------------------------------- */

struct restart_walk {
	const struct mh_config *old, *fresh;
	mh_config_error_fn fn;
	void *ud;
	unsigned flag; /* the keys looked at: KEY_RESTART or KEY_LIVE */
	int count;
	char path[64];
};

static void quote(char *buf, size_t size, const char *text)
{
	char shown[MH_YAMLDOC_EXCERPT_SIZE];

	if (text)
		snprintf(buf, size, "\"%s\"", mh_yamldoc_excerpt(shown, text));
	else
		snprintf(buf, size, "nothing");
}

/* Whether the values at @offset differ; writes both, as a message shows them, when they do. */
static bool value_differs(const struct key_spec *spec, const void *a, const void *b, char *was,
	char *now, size_t size)
{
	const char *sa, *sb;

	switch (spec->type->store) {
	case STORE_STRING:
		sa = *(const char *const *)a;
		sb = *(const char *const *)b;
		if ((!sa && !sb) || (sa && sb && !strcmp(sa, sb)))
			return false;
		quote(was, size, sa);
		quote(now, size, sb);
		return true;
	case STORE_UINT:
		if (*(const unsigned *)a == *(const unsigned *)b)
			return false;
		snprintf(was, size, "%u", *(const unsigned *)a);
		snprintf(now, size, "%u", *(const unsigned *)b);
		return true;
	case STORE_U64:
		if (*(const uint64_t *)a == *(const uint64_t *)b)
			return false;
		snprintf(was, size, "%" PRIu64, *(const uint64_t *)a);
		snprintf(now, size, "%" PRIu64, *(const uint64_t *)b);
		return true;
	case STORE_INT:
		if (*(const int *)a == *(const int *)b)
			return false;
		snprintf(was, size, "%d", *(const int *)a);
		snprintf(now, size, "%d", *(const int *)b);
		return true;
	case STORE_DOUBLE:
		if (*(const double *)a == *(const double *)b)
			return false;
		snprintf(was, size, "%g", *(const double *)a);
		snprintf(now, size, "%g", *(const double *)b);
		return true;
	default:
		return false;
	}
}

static void restart_walk_table(struct restart_walk *w, const struct key_spec *specs)
{
	for (const struct key_spec *spec = specs; spec->key; spec++) {
		size_t len = strlen(w->path);
		char was[MH_YAMLDOC_EXCERPT_SIZE + 2], now[MH_YAMLDOC_EXCERPT_SIZE + 2];
		char line[sizeof(was) + sizeof(now) + 128];

		if (!spec->type)
			continue;
		snprintf(w->path + len, sizeof(w->path) - len, "%s%s", len ? "." : "", spec->key);
		if (spec->type->store == STORE_MAP) {
			restart_walk_table(w, spec->arg);
		} else if ((spec->flags & w->flag) &&
			   value_differs(spec, (const char *)w->old + spec->offset,
				   (const char *)w->fresh + spec->offset, was, now, sizeof(was))) {
			w->count++;
			if (w->flag == KEY_RESTART)
				snprintf(line, sizeof(line),
					"%s: changed from %s to %s; this takes effect only after a restart",
					w->path, was, now);
			else
				snprintf(line, sizeof(line), "%s", w->path);
			if (w->fn)
				w->fn(w->ud, line);
		}
		w->path[len] = '\0';
	}
}

int mh_schema_restart_keys(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud)
{
	struct restart_walk w = { .old = old, .fresh = fresh, .fn = fn, .ud = ud,
		.flag = KEY_RESTART };

	restart_walk_table(&w, root_keys);
	return w.count;
}

int mh_schema_live_changes(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud)
{
	struct restart_walk w = { .old = old, .fresh = fresh, .fn = fn, .ud = ud,
		.flag = KEY_LIVE };

	restart_walk_table(&w, root_keys);
	return w.count;
}
