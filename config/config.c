// SPDX-License-Identifier: MIT
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "dlt645.h"
#include "dlt645_di.h"
#include "log.h"
#include "profiles.h"

/* All of a configuration's memory comes from one arena and goes at once. */
struct mh_config_arena {
	struct mh_config_arena *next;
	size_t used, cap;
	max_align_t data[];
};

static void *arena_alloc(struct mh_config_arena **arena, size_t size)
{
	struct mh_config_arena *a = *arena;

	size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!a || a->cap - a->used < size) {
		size_t cap = size > 16384 ? size : 16384;
		a = calloc(1, sizeof(*a) + cap);
		if (!a)
			return NULL;
		a->cap = cap;
		a->next = *arena;
		*arena = a;
	}
	void *p = (char *)a->data + a->used;
	a->used += size;
	return p;
}

static void arena_free(struct mh_config_arena *a)
{
	while (a) {
		struct mh_config_arena *next = a->next;
		free(a);
		a = next;
	}
}

/* ---- loader state ---------------------------------------------------- */

struct loader {
	struct mh_config *cfg;
	yaml_document_t *doc;
	const char *file; /* arena copy, shared by every mh_pos */
	bool builtin;
	char path[256];
	size_t path_len;
	unsigned errors;
	bool oom;
	mh_config_error_fn on_error;
	void *ud;
};

static void report(struct loader *ld, const char *file, unsigned line, unsigned col,
	const char *path, const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static void report(struct loader *ld, const char *file, unsigned line, unsigned col,
	const char *path, const char *fmt, va_list ap)
{
	char msg[512], out[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (path && *path)
		snprintf(out, sizeof(out), "%s:%u:%u: %s: %s", file, line, col, path, msg);
	else
		snprintf(out, sizeof(out), "%s:%u:%u: %s", file, line, col, msg);
	ld->errors++;
	if (ld->on_error)
		ld->on_error(ld->ud, out);
	else
		fprintf(stderr, "%s\n", out);
}

/* An error at @node, under the key path being walked. */
__attribute__((format(printf, 3, 4))) static void node_error(struct loader *ld,
	const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(ld, ld->file, (unsigned)node->start_mark.line + 1,
		(unsigned)node->start_mark.column + 1, ld->path, fmt, ap);
	va_end(ap);
}

/* An error found after parsing, at a remembered position and path. */
__attribute__((format(printf, 4, 5))) static void pos_error(struct loader *ld,
	const struct mh_pos *pos, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(ld, pos->file, pos->line, pos->col, path, fmt, ap);
	va_end(ap);
}

static size_t path_push_key(struct loader *ld, const char *key)
{
	size_t saved = ld->path_len;
	int n = snprintf(ld->path + saved, sizeof(ld->path) - saved, "%s%s", saved ? "." : "",
		key);
	if (n > 0)
		ld->path_len = saved + (size_t)n < sizeof(ld->path) ? saved + (size_t)n
								     : sizeof(ld->path) - 1;
	return saved;
}

static size_t path_push_index(struct loader *ld, size_t i)
{
	size_t saved = ld->path_len;
	int n = snprintf(ld->path + saved, sizeof(ld->path) - saved, "[%zu]", i);
	if (n > 0)
		ld->path_len = saved + (size_t)n < sizeof(ld->path) ? saved + (size_t)n
								     : sizeof(ld->path) - 1;
	return saved;
}

static void path_pop(struct loader *ld, size_t saved)
{
	ld->path_len = saved;
	ld->path[saved] = '\0';
}

static void *ld_alloc(struct loader *ld, size_t size)
{
	void *p = arena_alloc(&ld->cfg->arena, size ? size : 1);
	if (!p)
		ld->oom = true;
	else
		memset(p, 0, size);
	return p;
}

static const char *ld_strdup(struct loader *ld, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = ld_alloc(ld, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

static struct mh_pos node_pos(const struct loader *ld, const yaml_node_t *node)
{
	return (struct mh_pos){
		.file = ld->file,
		.line = (unsigned)node->start_mark.line + 1,
		.col = (unsigned)node->start_mark.column + 1,
	};
}

static const char *scalar(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

static bool is_null_scalar(const yaml_node_t *node)
{
	const char *s = scalar(node);
	return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
		       !strcmp(s, "NULL"));
}

static const char *kind_name(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

static bool expect_scalar(struct loader *ld, const yaml_node_t *node, const char *what)
{
	if (node->type == YAML_SCALAR_NODE && !is_null_scalar(node))
		return true;
	node_error(ld, node, "expected %s, found %s", what,
		node->type == YAML_SCALAR_NODE ? "nothing" : kind_name(node));
	return false;
}

/* ---- key tables ------------------------------------------------------ */

struct key_spec;
typedef void (*parse_fn)(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

enum {
	KEY_REQUIRED = 1 << 0,
	/* Part of the public contract, but this version does not implement it yet. */
	KEY_UNSUPPORTED = 1 << 1,
};

struct key_spec {
	const char *key;
	parse_fn parse;
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

static void walk_map(struct loader *ld, yaml_node_t *node, const struct key_spec *specs,
	void *obj)
{
	const struct key_spec *spec;
	uint64_t seen = 0;
	size_t n_specs = 0;

	for (spec = specs; spec->key; spec++)
		n_specs++;
	mh_require(n_specs <= 64);

	if (node->type != YAML_MAPPING_NODE) {
		node_error(ld, node, "expected a mapping, found %s", kind_name(node));
		return;
	}
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
		pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(ld->doc, pair->value);
		const char *key;

		if (k->type != YAML_SCALAR_NODE) {
			node_error(ld, k, "a key must be a plain word, found %s", kind_name(k));
			continue;
		}
		key = scalar(k);
		for (spec = specs; spec->key && strcmp(spec->key, key); spec++)
			;
		size_t saved = path_push_key(ld, key);
		if (!spec->key) {
			node_error(ld, k, "unknown key");
		} else if (seen & (1ull << (spec - specs))) {
			node_error(ld, k, "key given twice");
		} else if (spec->flags & KEY_UNSUPPORTED) {
			seen |= 1ull << (spec - specs);
			node_error(ld, k,
				"not supported by this version of meterhub yet; remove it");
		} else {
			seen |= 1ull << (spec - specs);
			spec->parse(ld, v, (char *)obj + spec->offset, spec);
		}
		path_pop(ld, saved);
	}
	for (spec = specs; spec->key; spec++) {
		if ((spec->flags & KEY_REQUIRED) && !(seen & (1ull << (spec - specs)))) {
			size_t saved = path_push_key(ld, spec->key);
			node_error(ld, node, "missing required key");
			path_pop(ld, saved);
		}
	}
}

static void parse_string(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	if (!expect_scalar(ld, node, "a string"))
		return;
	*(const char **)dst = ld_strdup(ld, scalar(node));
}

/* A name that can stand in an MQTT topic level and a log line. */
static void parse_name(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *s;

	if (!expect_scalar(ld, node, "a name"))
		return;
	s = scalar(node);
	if (!*s) {
		node_error(ld, node, "a name cannot be empty");
		return;
	}
	if (strlen(s) > 64) {
		node_error(ld, node, "\"%s\" is longer than 64 characters", s);
		return;
	}
	for (const char *p = s; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr("-_.:", *p)) {
			node_error(ld, node,
				"\"%s\" may hold only letters, digits, '-', '_', '.' and ':'", s);
			return;
		}
	}
	*(const char **)dst = ld_strdup(ld, s);
}

static void parse_file(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	if (!expect_scalar(ld, node, "a file name"))
		return;
	if (access(scalar(node), R_OK) < 0) {
		node_error(ld, node, "cannot read \"%s\": %s", scalar(node), strerror(errno));
		return;
	}
	*(const char **)dst = ld_strdup(ld, scalar(node));
}

static bool parse_u64_text(const char *s, uint64_t *out)
{
	char *end;
	int base = 10;

	if (!isdigit((unsigned char)s[0]))
		return false;
	/* "0x" means hex; a leading zero does not mean octal. */
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	/* strtoull would take a sign, spaces or a second "0x"; only digits are numbers here. */
	if (!*s || strspn(s, base == 16 ? "0123456789abcdefABCDEF" : "0123456789") != strlen(s))
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static void parse_uint(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct uint_range *r = spec->arg;
	uint64_t v;

	/* Marks the key as present but wrong, so validation does not call it missing. */
	*(unsigned *)dst = UINT_MAX - 1;
	if (!expect_scalar(ld, node, "a whole number"))
		return;
	if (!parse_u64_text(scalar(node), &v)) {
		node_error(ld, node, "\"%s\" is not a whole number", scalar(node));
		return;
	}
	if (v < r->min || v > r->max) {
		node_error(ld, node, "%s is out of range (%" PRIu64 " to %" PRIu64 ")",
			scalar(node), r->min, r->max);
		return;
	}
	*(unsigned *)dst = (unsigned)v;
}

static void parse_double(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	char *end;
	double v;

	if (!expect_scalar(ld, node, "a number"))
		return;
	errno = 0;
	v = strtod(scalar(node), &end);
	if (errno || *end || !isfinite(v) || end == scalar(node)) {
		node_error(ld, node, "\"%s\" is not a number", scalar(node));
		return;
	}
	*(double *)dst = v;
}

struct unit {
	const char *suffix;
	uint64_t factor;
};

/* A whole number followed by exactly one of @units' suffixes, scaled by its factor. */
static int parse_with_unit(const char *text, const struct unit *units, size_t n_units,
	uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno)
		return -EINVAL;
	for (size_t i = 0; i < n_units; i++) {
		if (!strcmp(end, units[i].suffix)) {
			if (v > UINT64_MAX / units[i].factor)
				return -EINVAL;
			*out = v * units[i].factor;
			return 0;
		}
	}
	return -EINVAL;
}

int mh_config_parse_duration(const char *text, uint64_t *ms)
{
	static const struct unit units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
	};

	return parse_with_unit(text, units, sizeof(units) / sizeof(units[0]), ms);
}

int mh_config_parse_size(const char *text, uint64_t *bytes)
{
	static const struct unit units[] = {
		{ "", 1 }, { "B", 1 }, { "KiB", 1ull << 10 }, { "MiB", 1ull << 20 }, { "GiB", 1ull << 30 },
	};

	return parse_with_unit(text, units, sizeof(units) / sizeof(units[0]), bytes);
}

/* Durations are stored in milliseconds; spec->arg gives the allowed range. */
static void parse_duration(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct uint_range *r = spec->arg;
	uint64_t ms;

	if (!expect_scalar(ld, node, "a duration"))
		return;
	if (mh_config_parse_duration(scalar(node), &ms) < 0) {
		node_error(ld, node,
			"\"%s\" is not a duration (a whole number with ms, s, m or h, e.g. 500ms, 15m)",
			scalar(node));
		return;
	}
	if (ms < r->min || ms > r->max) {
		node_error(ld, node, "%s is out of range (%" PRIu64 "ms to %" PRIu64 "ms)",
			scalar(node), r->min, r->max);
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

static void parse_timezone(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const char *dir = getenv("TZDIR");
	char zone[512];

	if (!expect_scalar(ld, node, "a time zone name"))
		return;
	snprintf(zone, sizeof(zone), "%s/%s", dir ? dir : "/usr/share/zoneinfo", scalar(node));
	if (strstr(scalar(node), "..") || !is_tzif(zone)) {
		node_error(ld, node,
			"unknown time zone \"%s\" (expected a tz database name such as Asia/Shanghai)",
			scalar(node));
		return;
	}
	*(const char **)dst = ld_strdup(ld, scalar(node));
}

static void parse_interval(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	unsigned ms = 0;

	parse_duration(ld, node, &ms, spec);
	if (!ms)
		return;
	if (86400000u % ms) {
		node_error(ld, node,
			"%s does not divide a day evenly, so boundaries could not be counted from midnight",
			scalar(node));
		return;
	}
	*(unsigned *)dst = ms;
}

static void parse_uri(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	static const char *const schemes[] = { "tcp://", "mqtt://", "ssl://", "mqtts://" };

	if (!expect_scalar(ld, node, "a broker URI"))
		return;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (!strncmp(scalar(node), schemes[i], strlen(schemes[i]))) {
			*(const char **)dst = ld_strdup(ld, scalar(node));
			return;
		}
	}
	node_error(ld, node, "\"%s\" must start with tcp://, mqtt://, ssl:// or mqtts://",
		scalar(node));
}

static void parse_di(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_point *point = (struct mh_point *)((char *)dst - offsetof(struct mh_point, di));
	const struct mh_dlt645_di_info *info;
	uint32_t di;

	/* Even a wrong identifier makes this a DL/T 645 point, for the checks that follow. */
	point->has_di = true;
	point->di = UINT32_MAX;
	if (!expect_scalar(ld, node, "a data identifier"))
		return;
	if (mh_dlt645_di_parse(scalar(node), &di) < 0) {
		node_error(ld, node, "\"%s\" is not a data identifier (8 hex digits, e.g. \"00010000\")",
			scalar(node));
		return;
	}
	info = mh_dlt645_di_lookup(di);
	if (!info) {
		node_error(ld, node, "data identifier %s is not one meterhub knows", scalar(node));
		return;
	}
	if (!info->names) {
		node_error(ld, node, "data identifier %s (%s) is not a number that can be published",
			scalar(node), info->description);
		return;
	}
	point->di = di;
}

static void parse_size(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct uint_range *r = spec->arg;
	uint64_t v;

	if (!expect_scalar(ld, node, "a size"))
		return;
	if (mh_config_parse_size(scalar(node), &v) < 0) {
		node_error(ld, node,
			"\"%s\" is not a size (a whole number of bytes, or with KiB, MiB, GiB)",
			scalar(node));
		return;
	}
	if (v < r->min || v > r->max) {
		node_error(ld, node, "%s is out of range (%" PRIu64 " to %" PRIu64 " bytes)",
			scalar(node), r->min, r->max);
		return;
	}
	*(uint64_t *)dst = v;
}

static void parse_enum(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	const struct enum_name *e;
	char choices[256] = "";
	size_t n = 0;

	if (!expect_scalar(ld, node, "one of the listed words"))
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
	node_error(ld, node, "\"%s\" is not one of %s", scalar(node), choices);
	/* Marks the key as present but wrong, so validation does not call it missing. */
	*(int *)dst = -2;
}

static void parse_map(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	walk_map(ld, node, spec->arg, dst);
}

/* ---- the schema ------------------------------------------------------ */

static const struct uint_range range_timeout = { 10, 60000 };
static const struct uint_range range_gap = { 0, 10000 };
static const struct uint_range range_interval = { 1000, 86400000 };
static const struct uint_range range_store = { 64ull << 10, 1ull << 40 };
static const struct uint_range range_baud = { 300, 4000000 };
static const struct uint_range range_window = { 1, 65535 };
static const struct uint_range range_keepalive = { 5, 3600 };
static const struct uint_range range_max_gap = { 0, MH_MODBUS_MAX_REGS };
static const struct uint_range range_reg = { 0, 0xffff };

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

#define CFG(field) offsetof(struct mh_config, field)

static const struct key_spec gateway_keys[] = {
	{ "id", parse_name, CFG(gateway.id) - CFG(gateway), KEY_REQUIRED, NULL },
	{ "timezone", parse_timezone, CFG(gateway.timezone) - CFG(gateway), KEY_REQUIRED, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec store_keys[] = {
	{ "path", parse_string, CFG(store.path) - CFG(store), 0, NULL },
	{ "max_bytes", parse_size, CFG(store.max_bytes) - CFG(store), 0, &range_store },
	{ NULL, NULL, 0, 0, NULL },
};

#define TLS(field) (offsetof(struct mh_config, mqtt.tls.field) - offsetof(struct mh_config, mqtt.tls))
static const struct key_spec tls_keys[] = {
	{ "ca", parse_file, TLS(ca), 0, NULL },
	{ "cert", parse_file, TLS(cert), 0, NULL },
	{ "key", parse_file, TLS(key), 0, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define MQTT(field) (CFG(mqtt.field) - CFG(mqtt))
static const struct key_spec mqtt_keys[] = {
	{ "uri", parse_uri, MQTT(uri), KEY_REQUIRED, NULL },
	{ "client_id", parse_string, MQTT(client_id), 0, NULL },
	{ "topic_prefix", parse_string, MQTT(topic_prefix), 0, NULL },
	{ "tls", parse_map, MQTT(tls), 0, tls_keys },
	{ "username", parse_string, MQTT(username), 0, NULL },
	{ "password_file", parse_file, MQTT(password_file), 0, NULL },
	{ "keepalive", parse_uint, MQTT(keepalive_s), 0, &range_keepalive },
	{ "window", parse_uint, MQTT(window), 0, &range_window },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct key_spec schedule_keys[] = {
	{ "interval", parse_interval, CFG(schedule.interval_ms), KEY_REQUIRED, &range_interval },
	{ "daily_freeze", parse_string, 0, KEY_UNSUPPORTED, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static const struct uint_range range_health = { 1000, 86400000 };
static const struct key_spec health_keys[] = {
	{ "interval", parse_duration, CFG(health.interval_ms), 0, &range_health },
	{ NULL, NULL, 0, 0, NULL },
};

#define POINT(field) offsetof(struct mh_point, field)
static const struct key_spec point_keys[] = {
	{ "name", parse_name, POINT(name), 0, NULL },
	{ "table", parse_enum, POINT(modbus.table), 0, table_names },
	{ "address", parse_uint, POINT(raw_address), 0, &range_reg },
	{ "type", parse_enum, POINT(modbus.type), 0, type_names },
	{ "word_order", parse_enum, POINT(modbus.word_order), 0, word_order_names },
	{ "scale", parse_double, POINT(modbus.scale), 0, NULL },
	{ "di", parse_di, POINT(di), 0, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static void parse_points(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

#define PROFILE(field) offsetof(struct mh_profile, field)
static const struct key_spec profile_keys[] = {
	{ "description", parse_string, PROFILE(description), 0, NULL },
	{ "points", parse_points, 0, KEY_REQUIRED, NULL },
	{ "max_gap", parse_uint, PROFILE(max_gap), 0, &range_max_gap },
	{ "control", parse_map, 0, KEY_UNSUPPORTED, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

#define METER(field) offsetof(struct mh_meter_config, field)
static const struct key_spec meter_keys[] = {
	{ "id", parse_name, METER(id), KEY_REQUIRED, NULL },
	{ "address", parse_string, METER(address), KEY_REQUIRED, NULL },
	{ "profile", parse_string, METER(profile_name), KEY_REQUIRED, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static void parse_meters(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

#define BUS(field) offsetof(struct mh_bus_config, field)
static const struct key_spec bus_keys[] = {
	{ "name", parse_name, BUS(name), KEY_REQUIRED, NULL },
	{ "device", parse_string, BUS(device), KEY_REQUIRED, NULL },
	{ "baud", parse_uint, BUS(baud), 0, &range_baud },
	{ "parity", parse_enum, BUS(parity), 0, parity_names },
	{ "protocol", parse_enum, BUS(protocol), KEY_REQUIRED, protocol_names },
	{ "timeout", parse_duration, BUS(timeout_ms), 0, &range_timeout },
	{ "frame_gap", parse_duration, BUS(frame_gap_ms), 0, &range_gap },
	{ "meters", parse_meters, 0, KEY_REQUIRED, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

static void parse_buses(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec);
static void parse_profiles(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec);

static const struct key_spec root_keys[] = {
	{ "gateway", parse_map, CFG(gateway), KEY_REQUIRED, gateway_keys },
	{ "store", parse_map, CFG(store), 0, store_keys },
	{ "mqtt", parse_map, CFG(mqtt), KEY_REQUIRED, mqtt_keys },
	{ "schedule", parse_map, 0, KEY_REQUIRED, schedule_keys },
	{ "health", parse_map, 0, 0, health_keys },
	{ "tariff", parse_map, 0, KEY_UNSUPPORTED, NULL },
	{ "commands", parse_map, 0, KEY_UNSUPPORTED, NULL },
	{ "buses", parse_buses, 0, KEY_REQUIRED, NULL },
	{ "profiles", parse_profiles, 0, 0, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

/* Built-in profile files hold only profiles. */
static const struct key_spec builtin_root_keys[] = {
	{ "profiles", parse_profiles, 0, KEY_REQUIRED, NULL },
	{ NULL, NULL, 0, 0, NULL },
};

/* ---- lists ----------------------------------------------------------- */

static size_t seq_len(const yaml_node_t *node)
{
	return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

static bool expect_list(struct loader *ld, const yaml_node_t *node)
{
	if (node->type == YAML_SEQUENCE_NODE && seq_len(node) > 0)
		return true;
	node_error(ld, node, "expected a list with at least one entry, found %s",
		node->type == YAML_SEQUENCE_NODE ? "an empty list" : kind_name(node));
	return false;
}

/*
 * A list of mappings into a fresh array of @size-byte elements: each gets
 * its position (at @pos_offset), its defaults from @init, then its keys.
 * Returns the array with its length in *@count, or NULL.
 */
static void *parse_list(struct loader *ld, yaml_node_t *node, size_t size, size_t pos_offset,
	void (*init)(void *elem), const struct key_spec *keys, size_t *count)
{
	char *array;
	size_t n;

	if (!expect_list(ld, node))
		return NULL;
	n = seq_len(node);
	array = ld_alloc(ld, n * size);
	if (!array)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item =
			yaml_document_get_node(ld->doc, node->data.sequence.items.start[i]);
		char *elem = array + i * size;
		size_t saved = path_push_index(ld, i);

		*(struct mh_pos *)(elem + pos_offset) = node_pos(ld, item);
		if (init)
			init(elem);
		walk_map(ld, item, keys, elem);
		path_pop(ld, saved);
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

static void parse_points(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_profile *profile = dst;

	profile->points = parse_list(ld, node, sizeof(struct mh_point),
		offsetof(struct mh_point, pos), init_point, point_keys, &profile->n_points);
}

static void parse_meters(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_bus_config *bus = dst;

	bus->meters = parse_list(ld, node, sizeof(struct mh_meter_config),
		offsetof(struct mh_meter_config, pos), NULL, meter_keys, &bus->n_meters);
}

static void parse_buses(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;

	cfg->buses = parse_list(ld, node, sizeof(struct mh_bus_config),
		offsetof(struct mh_bus_config, pos), init_bus, bus_keys, &cfg->n_buses);
}

static void parse_profiles(struct loader *ld, yaml_node_t *node, void *dst,
	const struct key_spec *spec)
{
	struct mh_config *cfg = dst;
	struct mh_profile *grown;
	size_t n;

	if (node->type != YAML_MAPPING_NODE) {
		node_error(ld, node, "expected a mapping of profile names, found %s",
			kind_name(node));
		return;
	}
	n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
	/* Profiles arrive from several documents (built-ins, then the user's file). */
	grown = ld_alloc(ld, (cfg->n_profiles + n) * sizeof(*grown));
	if (!grown)
		return;
	if (cfg->n_profiles)
		memcpy(grown, cfg->profiles, cfg->n_profiles * sizeof(*grown));
	cfg->profiles = grown;

	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
		pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(ld->doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(ld->doc, pair->value);
		struct mh_profile *profile = &cfg->profiles[cfg->n_profiles];
		const char *name = NULL;

		size_t saved = path_push_key(ld, k->type == YAML_SCALAR_NODE ? scalar(k) : "?");
		parse_name(ld, k, &name, NULL);
		if (name) {
			const struct mh_profile *twin = mh_config_profile(cfg, name);
			if (twin && twin->builtin)
				node_error(ld, k,
					"a built-in profile has this name; give your profile another one");
			else if (twin)
				node_error(ld, k, "profile defined twice (first at line %u)",
					twin->pos.line);
			memset(profile, 0, sizeof(*profile));
			profile->name = name;
			profile->pos = node_pos(ld, k);
			profile->builtin = ld->builtin;
			profile->max_gap = 8;
			walk_map(ld, v, profile_keys, profile);
			if (!twin)
				cfg->n_profiles++;
		}
		path_pop(ld, saved);
	}
}

/* ---- validation across keys ----------------------------------------- */

/* A Modbus point: table, address and type make sense together. Returns false when unusable. */
static bool check_modbus_point(struct loader *ld, struct mh_point *p, const char *path)
{
	struct mh_modbus_point *mp = &p->modbus;
	bool ok = true;

	if (!p->name) {
		pos_error(ld, &p->pos, path, "missing required key \"name\"");
		ok = false;
	}
	if ((int)mp->table == -1)
		pos_error(ld, &p->pos, path, "missing required key \"table\"");
	if (p->raw_address == UINT_MAX && (int)mp->table >= 0)
		pos_error(ld, &p->pos, path, "missing required key \"address\"");
	if ((int)mp->table < 0 || p->raw_address > 0xffff)
		return false;
	mp->address = (uint16_t)p->raw_address;
	if ((int)mp->word_order == -1)
		mp->word_order = MH_MODBUS_WORDS_BIG;
	if (isnan(mp->scale))
		mp->scale = 1.0;
	if (mh_modbus_table_is_bits(mp->table)) {
		if ((int)mp->type >= 0 && mp->type != MH_MODBUS_BIT)
			pos_error(ld, &p->pos, path,
				"a %s point is one bit: leave \"type\" out or write bit",
				mh_modbus_table_name(mp->table));
		mp->type = MH_MODBUS_BIT;
	} else if ((int)mp->type < 0) {
		if ((int)mp->type == -1)
			pos_error(ld, &p->pos, path, "missing required key \"type\"");
		return false;
	} else if (mp->type == MH_MODBUS_BIT) {
		pos_error(ld, &p->pos, path,
			"type bit belongs to coil and discrete points; %s registers are 16 bits",
			mh_modbus_table_name(mp->table));
		return false;
	}
	if ((uint32_t)mp->address + mh_modbus_type_width(mp->type) > 0x10000) {
		pos_error(ld, &p->pos, path, "a %s at 0x%04X runs past register 0xFFFF",
			mh_modbus_type_name(mp->type), mp->address);
		return false;
	}
	return ok;
}

/* A DL/T 645 point: the identifier says everything; Modbus keys do not belong. */
static bool check_dlt645_point(struct loader *ld, struct mh_point *p, const char *path)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(p->di);

	if (!info || !info->names)
		return false; /* reported where the identifier was parsed */
	if ((int)p->modbus.table != -1 || p->raw_address != UINT_MAX ||
		(int)p->modbus.type != -1 || (int)p->modbus.word_order != -1 ||
		!isnan(p->modbus.scale)) {
		pos_error(ld, &p->pos, path,
			"a DL/T 645 point takes only di (and name): the identifier fixes its format and scale");
		return false;
	}
	if (info->is_block && p->name) {
		pos_error(ld, &p->pos, path,
			"block %08X gives several values, each under its standard name; leave out name",
			p->di);
		return false;
	}
	if (!p->name)
		p->name = info->names[0];
	return true;
}

/* Replace each FF block point by the identifiers it carries, so planning can regroup them. */
static void expand_blocks(struct loader *ld, struct mh_profile *profile)
{
	uint32_t members[MH_DLT645_DI_MAX_TARIFF_ELEMENTS];
	size_t n = 0, k = 0;
	struct mh_point *points;

	for (size_t i = 0; i < profile->n_points; i++) {
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(profile->points[i].di);
		n += info && info->is_block ? mh_dlt645_di_block_members(profile->points[i].di,
							members, MH_DLT645_DI_MAX_TARIFF_ELEMENTS)
					    : 1;
	}
	if (n == profile->n_points)
		return;
	points = ld_alloc(ld, n * sizeof(*points));
	if (!points)
		return;
	for (size_t i = 0; i < profile->n_points; i++) {
		const struct mh_point *p = &profile->points[i];
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(p->di);
		size_t m;

		if (!info || !info->is_block) {
			points[k++] = *p;
			continue;
		}
		m = mh_dlt645_di_block_members(p->di, members, MH_DLT645_DI_MAX_TARIFF_ELEMENTS);
		for (size_t j = 0; j < m; j++) {
			points[k] = *p;
			points[k].di = members[j];
			points[k].name = mh_dlt645_di_lookup(members[j])->names[0];
			k++;
		}
	}
	profile->points = points;
	profile->n_points = k;
}

static void validate_points(struct loader *ld, struct mh_profile *profile)
{
	char path[128];
	bool usable = true;

	profile->protocol = MH_PROTO_MODBUS;
	for (size_t i = 0; i < profile->n_points; i++)
		if (profile->points[i].has_di)
			profile->protocol = MH_PROTO_DLT645;

	for (size_t i = 0; i < profile->n_points; i++) {
		struct mh_point *p = &profile->points[i];

		snprintf(path, sizeof(path), "profiles.%s.points[%zu]", profile->name, i);
		if (p->has_di != (profile->protocol == MH_PROTO_DLT645)) {
			pos_error(ld, &p->pos, path,
				"a profile is either DL/T 645 (points with di) or Modbus (points with table and address), not both");
			usable = false;
		} else if (profile->protocol == MH_PROTO_DLT645) {
			usable &= check_dlt645_point(ld, p, path);
		} else {
			usable &= check_modbus_point(ld, p, path);
		}
	}
	if (!usable)
		return;
	if (profile->protocol == MH_PROTO_DLT645)
		expand_blocks(ld, profile);

	for (size_t i = 0; i < profile->n_points; i++) {
		const struct mh_point *p = &profile->points[i];

		snprintf(path, sizeof(path), "profiles.%s.points[%zu]", profile->name, i);
		for (size_t j = 0; j < i; j++) {
			const struct mh_point *q = &profile->points[j];
			if (!strcmp(q->name, p->name))
				pos_error(ld, &p->pos, path,
					"point \"%s\" is named twice (first at line %u)", p->name,
					q->pos.line);
			if (profile->protocol != MH_PROTO_MODBUS || q->modbus.table != p->modbus.table)
				continue;
			unsigned a0 = p->modbus.address, a1 = a0 + mh_modbus_type_width(p->modbus.type);
			unsigned b0 = q->modbus.address,
				 b1 = b0 + mh_modbus_type_width(q->modbus.type);
			if (a0 < b1 && b0 < a1)
				pos_error(ld, &p->pos, path,
					"\"%s\" (%s 0x%04X-0x%04X) overlaps \"%s\" (0x%04X-0x%04X, line %u)",
					p->name, mh_modbus_table_name(p->modbus.table), a0, a1 - 1,
					q->name, b0, b1 - 1, q->pos.line);
		}
	}
}

static void validate_meter_address(struct loader *ld, const struct mh_bus_config *bus,
	struct mh_meter_config *m, const char *path)
{
	uint64_t unit;

	if (bus->protocol == MH_PROTO_MODBUS) {
		if (!parse_u64_text(m->address, &unit) || unit < 1 || unit > 247)
			pos_error(ld, &m->pos, path,
				"\"%s\" is not a Modbus slave address (1 to 247)", m->address);
		else
			m->unit = (unsigned)unit;
	} else if (strlen(m->address) != 12 || strspn(m->address, "0123456789") != 12 ||
		   mh_dlt645_addr_parse(m->address, m->dlt645_addr) < 0) {
		pos_error(ld, &m->pos, path,
			"\"%s\" is not a DL/T 645 address (12 decimal digits, as on the nameplate; quote it)",
			m->address);
	}
}

static void validate(struct loader *ld)
{
	struct mh_config *cfg = ld->cfg;
	char path[128], path2[160];

	for (size_t p = 0; p < cfg->n_profiles; p++)
		if (!cfg->profiles[p].builtin)
			validate_points(ld, &cfg->profiles[p]);

	for (size_t b = 0; b < cfg->n_buses; b++) {
		struct mh_bus_config *bus = &cfg->buses[b];

		/* A bus whose protocol is missing or wrong has been reported; its meters are still checked. */
		bool known = (int)bus->protocol >= 0;

		if (!bus->baud)
			/* The usual factory settings: DL/T 645 meters at 2400 8E1, Modbus at 9600. */
			bus->baud = bus->protocol == MH_PROTO_DLT645 ? 2400 : 9600;
		if ((int)bus->parity < 0)
			bus->parity = bus->protocol == MH_PROTO_DLT645 ? MH_PARITY_EVEN
								       : MH_PARITY_NONE;
		if (bus->frame_gap_ms == UINT_MAX) {
			/* Modbus asks for 3.5 characters of silence; DL/T 645 meters want more. */
			unsigned t35 = (unsigned)(38500u / bus->baud) + 1;
			bus->frame_gap_ms = bus->protocol == MH_PROTO_DLT645 ? 20
						: t35 < 2       ? 2
								: t35;
		}
		snprintf(path, sizeof(path), "buses[%zu]", b);
		for (size_t o = 0; o < b; o++) {
			if (cfg->buses[o].name && bus->name && !strcmp(cfg->buses[o].name, bus->name))
				pos_error(ld, &bus->pos, path,
					"bus name \"%s\" is used twice (first at line %u)", bus->name,
					cfg->buses[o].pos.line);
			if (cfg->buses[o].device && bus->device &&
				!strcmp(cfg->buses[o].device, bus->device))
				pos_error(ld, &bus->pos, path,
					"device %s is used by two buses (first at line %u)",
					bus->device, cfg->buses[o].pos.line);
		}

		for (size_t i = 0; i < bus->n_meters; i++) {
			struct mh_meter_config *m = &bus->meters[i];

			snprintf(path, sizeof(path), "buses[%zu].meters[%zu]", b, i);
			if (!m->id || !m->address || !m->profile_name)
				continue;
			if (known)
				validate_meter_address(ld, bus, m, path);
			m->profile = mh_config_profile(cfg, m->profile_name);
			snprintf(path2, sizeof(path2), "%s.profile", path);
			if (!m->profile)
				pos_error(ld, &m->pos, path2, "no profile named \"%s\"",
					m->profile_name);
			else if (known && m->profile->protocol != bus->protocol)
				pos_error(ld, &m->pos, path2,
					"profile \"%s\" is for %s meters, but this bus speaks %s",
					m->profile_name,
					m->profile->protocol == MH_PROTO_MODBUS ? "modbus" : "dlt645",
					bus->protocol == MH_PROTO_MODBUS ? "modbus" : "dlt645");

			/* Meter ids are unique across the gateway: they name MQTT topics. */
			for (size_t ob = 0; ob <= b; ob++) {
				const struct mh_bus_config *other = &cfg->buses[ob];
				size_t end = ob == b ? i : other->n_meters;
				for (size_t j = 0; j < end; j++) {
					const struct mh_meter_config *q = &other->meters[j];
					if (q->id && !strcmp(q->id, m->id))
						pos_error(ld, &m->pos, path,
							"meter id \"%s\" is used twice (first at line %u)",
							m->id, q->pos.line);
					if (ob == b && known && q->address &&
						((bus->protocol == MH_PROTO_MODBUS && q->unit &&
							 q->unit == m->unit) ||
							(bus->protocol != MH_PROTO_MODBUS &&
								!strcmp(q->address, m->address))))
						pos_error(ld, &m->pos, path,
							"address %s is used twice on bus %s (first at line %u)",
							m->address, bus->name ? bus->name : "?",
							q->pos.line);
				}
			}
		}
	}
}

static void apply_defaults(struct loader *ld)
{
	struct mh_config *cfg = ld->cfg;
	char buf[256];

	if (!cfg->store.path)
		cfg->store.path = "/var/lib/meterhub";
	if (!cfg->store.max_bytes)
		cfg->store.max_bytes = 256ull << 20;
	if (!cfg->health.interval_ms)
		cfg->health.interval_ms = 60000;
	if (!cfg->mqtt.keepalive_s)
		cfg->mqtt.keepalive_s = 30;
	if (!cfg->mqtt.window)
		cfg->mqtt.window = 32;
	if (cfg->gateway.id && !cfg->mqtt.client_id) {
		snprintf(buf, sizeof(buf), "meterhub-%s", cfg->gateway.id);
		cfg->mqtt.client_id = ld_strdup(ld, buf);
	}
	if (cfg->gateway.id && !cfg->mqtt.topic_prefix) {
		snprintf(buf, sizeof(buf), "meterhub/%s", cfg->gateway.id);
		cfg->mqtt.topic_prefix = ld_strdup(ld, buf);
	}
}

/* ---- documents ------------------------------------------------------- */

static int load_document(struct loader *ld, const char *name, const unsigned char *text,
	size_t len, const struct key_spec *root)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *top;
	int rc = 0;

	ld->file = ld_strdup(ld, name);
	if (!ld->file)
		return -ENOMEM;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		struct mh_pos pos = { ld->file, (unsigned)parser.problem_mark.line + 1,
			(unsigned)parser.problem_mark.column + 1 };
		pos_error(ld, &pos, NULL, "YAML syntax error: %s%s%s",
			parser.problem ? parser.problem : "malformed document",
			parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	top = yaml_document_get_root_node(&doc);
	if (!top) {
		struct mh_pos pos = { ld->file, 1, 1 };
		pos_error(ld, &pos, NULL, "the file is empty");
		rc = -EINVAL;
	} else {
		ld->doc = &doc;
		walk_map(ld, top, root, ld->cfg);
		ld->doc = NULL;
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

static int load_builtins(struct loader *ld)
{
	ld->builtin = true;
	for (size_t i = 0; i < mh_builtin_profile_count; i++) {
		const struct mh_builtin_profile *bp = &mh_builtin_profiles[i];
		char name[128];
		size_t first = ld->cfg->n_profiles;

		snprintf(name, sizeof(name), "<built-in>/%s", bp->file);
		load_document(ld, name, (const unsigned char *)bp->text, strlen(bp->text),
			builtin_root_keys);
		for (size_t p = first; p < ld->cfg->n_profiles; p++)
			validate_points(ld, &ld->cfg->profiles[p]);
	}
	ld->builtin = false;
	return 0;
}

int mh_config_load_string(const char *name, const char *text, size_t len,
	mh_config_error_fn on_error, void *ud, struct mh_config **out)
{
	struct mh_config *cfg = calloc(1, sizeof(*cfg));
	struct loader ld = { .on_error = on_error, .ud = ud };
	int rc;

	if (!cfg)
		return -ENOMEM;
	ld.cfg = cfg;
	load_builtins(&ld);
	rc = load_document(&ld, name, (const unsigned char *)text, len, root_keys);
	cfg->file = ld.file;
	/* Cross-key checks run even after syntax-level errors, so one run shows them all. */
	if (!rc && !ld.oom) {
		apply_defaults(&ld);
		validate(&ld);
	}
	if (ld.oom)
		rc = -ENOMEM;
	else if (ld.errors)
		rc = -EINVAL;
	if (rc) {
		mh_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return 0;
}

int mh_config_load(const char *file, mh_config_error_fn on_error, void *ud,
	struct mh_config **out)
{
	FILE *f = fopen(file, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (!f)
		return -errno;
	for (;;) {
		if (cap - len < 4096) {
			char *grown = realloc(text, cap += 65536);
			if (!grown) {
				free(text);
				fclose(f);
				return -ENOMEM;
			}
			text = grown;
		}
		size_t n = fread(text + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	rc = ferror(f) ? -EIO : 0;
	fclose(f);
	if (!rc)
		rc = mh_config_load_string(file, text, len, on_error, ud, out);
	free(text);
	return rc;
}

void mh_config_free(struct mh_config *cfg)
{
	if (!cfg)
		return;
	arena_free(cfg->arena);
	free(cfg);
}

const struct mh_profile *mh_config_profile(const struct mh_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_profiles; i++)
		if (cfg->profiles[i].name && !strcmp(cfg->profiles[i].name, name))
			return &cfg->profiles[i];
	return NULL;
}
