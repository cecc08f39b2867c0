// SPDX-License-Identifier: MIT
/*
 * Loading a configuration: the built-in profiles, then the user's file, each
 * walked against the key tables (schema.c); then the checks that need the
 * whole file at once (profiles, meters against their buses, names that must
 * be unique, a meter's control over its profile's, the commands' timing and
 * protect windows). The value parsers shared with the command line live here too.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arena.h"
#include "dlt645.h"
#include "nameset.h"
#include "profile.h"
#include "profiles.h"
#include "schema.h"
#include "window.h"

/* ---- value parsers --------------------------------------------------- */

int mh_config_parse_uint(const char *text, uint64_t *out)
{
	const char *digits = text;
	char *end;
	int base = 10;

	if (!isdigit((unsigned char)text[0]))
		return -EINVAL;
	/* "0x" means hex; a leading zero does not mean octal. */
	if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
		base = 16;
		digits += 2;
	}
	/* strtoull would take a sign, spaces or a second "0x"; only digits are numbers here. */
	if (!*digits || strspn(digits, base == 16 ? "0123456789abcdefABCDEF" : "0123456789") !=
				strlen(digits))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(digits, &end, base);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
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

/* The rates the serial links can set (the termios B* constants both know). */
static const unsigned standard_bauds[] = {
	300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
};
const char mh_config_baud_names[] =
	"300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600 or 115200";

int mh_config_parse_baud(const char *text, unsigned *baud)
{
	uint64_t v;

	if (mh_config_parse_uint(text, &v) < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(standard_bauds) / sizeof(standard_bauds[0]); i++) {
		if (v == standard_bauds[i]) {
			*baud = standard_bauds[i];
			return 0;
		}
	}
	return -ERANGE;
}

uint64_t mh_config_store_limit(uint64_t size_max)
{
	/*
	 * The store maps max_bytes and a quarter more in one piece. A 32-bit
	 * process has 2 to 3 GiB of address space for everything, so past 1 GiB
	 * the map would fail at start, or leave too little for the rest.
	 */
	if (size_max <= UINT32_MAX)
		return 1ull << 30;
	return 1ull << 40;
}

/* ---- checks across keys ---------------------------------------------- */

/* Whether @m's address suits @bus; sets m->unit or m->dlt645_addr when it does. */
static bool validate_meter_address(struct mh_schema *s, const struct mh_bus_config *bus,
	struct mh_meter_config *m, const char *path)
{
	uint64_t unit;

	if (bus->protocol == MH_PROTO_MODBUS) {
		if (mh_config_parse_uint(m->address, &unit) < 0 || unit < 1 || unit > 247) {
			mh_yamldoc_error_at(&s->doc, &m->pos, path,
				"\"%s\" is not a Modbus slave address (1 to 247)",
				mh_yamldoc_show(&s->doc, m->address));
			return false;
		}
		m->unit = (unsigned)unit;
		return true;
	}
	/* Decimal digits only, so the AA wildcard bytes of the protocol cannot be written. */
	if (strlen(m->address) != 12 || strspn(m->address, "0123456789") != 12 ||
		mh_dlt645_addr_parse(m->address, m->dlt645_addr) < 0) {
		mh_yamldoc_error_at(&s->doc, &m->pos, path,
			"\"%s\" is not a DL/T 645 address (12 decimal digits, as on the nameplate; quote it)",
			mh_yamldoc_show(&s->doc, m->address));
		return false;
	}
	if (!strcmp(m->address, "999999999999")) {
		mh_yamldoc_error_at(&s->doc, &m->pos, path,
			"999999999999 is the DL/T 645 broadcast address, which every meter on the "
			"bus obeys and none answers; give this meter's own address");
		return false;
	}
	return true;
}

/* An encrypted-looking block on a plain URI would send the password in clear. */
static void validate_mqtt(struct mh_schema *s)
{
	const struct mh_config *cfg = s->cfg;
	const char *uri = cfg->mqtt.uri, *rest;

	if (!s->tls_pos.line || !uri)
		return;
	if (!strncmp(uri, "tcp://", 6))
		rest = uri + 6;
	else if (!strncmp(uri, "mqtt://", 7))
		rest = uri + 7;
	else
		return;
	mh_yamldoc_error_at(&s->doc, &s->tls_pos, "mqtt.tls",
		"TLS settings, but \"%s\" does not use TLS: the password and every reading would "
		"go in clear; write the URI as \"ssl://%s\" (with the broker's TLS port)",
		mh_yamldoc_show(&s->doc, uri), mh_yamldoc_show(&s->doc, rest));
}

/* The meters of bus @b: addresses, profiles, and ids unique across the gateway (@ids). */
static void validate_meters(struct mh_schema *s, struct mh_bus_config *bus, size_t b,
	struct mh_nameset *ids)
{
	const struct mh_config *cfg = s->cfg;
	/* Modbus units are few: the first meter at each, by number ("1" and "0x01" are one). */
	const struct mh_meter_config *by_unit[248] = { NULL };
	bool known = (int)bus->protocol >= 0;
	struct mh_nameset addresses;
	char path[128], path2[160];

	if (mh_nameset_init(&addresses, bus->n_meters) < 0) {
		s->oom = true;
		return;
	}
	for (size_t i = 0; i < bus->n_meters; i++) {
		struct mh_meter_config *m = &bus->meters[i];
		const struct mh_meter_config *twin = NULL, *first_id = NULL;
		bool valid;

		/* An incomplete meter (reported) still claims its id. */
		if (m->id)
			first_id = mh_nameset_add(ids, m->id, m);
		if (!m->id || !m->address || !m->profile_name)
			continue;
		snprintf(path, sizeof(path), "buses[%zu].meters[%zu]", b, i);
		valid = known && validate_meter_address(s, bus, m, path);
		m->profile = mh_config_profile(cfg, m->profile_name);
		snprintf(path2, sizeof(path2), "%s.profile", path);
		if (m->profile) {
			/* The profile's; a meter's own control keys are laid over it later. */
			m->has_control = m->profile->control.present;
			if (m->profile->protocol == MH_PROTO_DLT645)
				m->control = m->profile->control.present
						     ? m->profile->control.dlt645
						     : mh_schema_control_defaults;
		}
		if (!m->profile)
			mh_yamldoc_error_at(&s->doc, &m->pos, path2, "no profile named \"%s\"",
				mh_yamldoc_show(&s->doc, m->profile_name));
		else if (known && m->profile->protocol != bus->protocol)
			mh_yamldoc_error_at(&s->doc, &m->pos, path2,
				"profile \"%s\" is for %s meters, but this bus speaks %s",
				mh_yamldoc_show(&s->doc, m->profile_name),
				m->profile->protocol == MH_PROTO_MODBUS ? "modbus" : "dlt645",
				bus->protocol == MH_PROTO_MODBUS ? "modbus" : "dlt645");

		/* Meter ids are unique across the gateway: they name MQTT topics. */
		if (first_id)
			mh_yamldoc_error_at(&s->doc, &m->pos, path,
				"meter id \"%s\" is used twice (first at line %u)", m->id,
				first_id->pos.line);
		if (!valid)
			continue;
		if (bus->protocol == MH_PROTO_MODBUS) {
			twin = by_unit[m->unit];
			if (!twin)
				by_unit[m->unit] = m;
		} else {
			twin = mh_nameset_add(&addresses, m->address, m);
		}
		if (twin)
			mh_yamldoc_error_at(&s->doc, &m->pos, path,
				"address %s is used twice on bus %s (first at line %u)",
				mh_yamldoc_show(&s->doc, m->address), bus->name ? bus->name : "?",
				twin->pos.line);
	}
	mh_nameset_deinit(&addresses);
}

static void validate_buses(struct mh_schema *s)
{
	struct mh_config *cfg = s->cfg;
	struct mh_nameset ids = { 0 }, names = { 0 }, devices = { 0 };
	size_t n_meters = 0;
	char path[64];

	for (size_t b = 0; b < cfg->n_buses; b++)
		n_meters += cfg->buses[b].n_meters;
	if (mh_nameset_init(&ids, n_meters) < 0 || mh_nameset_init(&names, cfg->n_buses) < 0 ||
		mh_nameset_init(&devices, cfg->n_buses) < 0) {
		s->oom = true;
		goto out;
	}
	for (size_t b = 0; b < cfg->n_buses; b++) {
		struct mh_bus_config *bus = &cfg->buses[b];
		const struct mh_bus_config *twin;

		if (!bus->baud)
			/* The usual factory settings: DL/T 645 meters at 2400 8E1, Modbus at 9600. */
			bus->baud = bus->protocol == MH_PROTO_DLT645 ? 2400 : 9600;
		if ((int)bus->parity < 0)
			bus->parity = bus->protocol == MH_PROTO_DLT645 ? MH_PARITY_EVEN
								       : MH_PARITY_NONE;
		/*
		 * By default 3.5 characters of 11 bits, rounded up to the
		 * microsecond: the silence Modbus RTU asks for between frames
		 * (fixed at 1750 us above 19200 baud, as its serial line guide
		 * says). DL/T 645 asks for none of its own (a frame is delimited
		 * by 68H ... 16H); the same silence lets a meter's transceiver
		 * turn round.
		 */
		if (bus->frame_gap_ms != UINT_MAX)
			bus->frame_gap_us = bus->frame_gap_ms * 1000u;
		else if (bus->baud > 19200)
			bus->frame_gap_us = 1750;
		else
			bus->frame_gap_us = (38500000u + bus->baud - 1) / bus->baud;
		snprintf(path, sizeof(path), "buses[%zu]", b);
		if (bus->name && (twin = mh_nameset_add(&names, bus->name, bus)))
			mh_yamldoc_error_at(&s->doc, &bus->pos, path,
				"bus name \"%s\" is used twice (first at line %u)", bus->name,
				twin->pos.line);
		if (bus->device && (twin = mh_nameset_add(&devices, bus->device, bus)))
			mh_yamldoc_error_at(&s->doc, &bus->pos, path,
				"device %s is used by two buses (first at line %u)",
				mh_yamldoc_show(&s->doc, bus->device), twin->pos.line);
		/* A bus whose protocol is missing or wrong has been reported; its meters are still checked. */
		validate_meters(s, bus, b, &ids);
	}
out:
	mh_nameset_deinit(&ids);
	mh_nameset_deinit(&names);
	mh_nameset_deinit(&devices);
}

/*
 * The meters' own control keys over their profiles' (validate_meters() set
 * the profile's). A meter whose profile is unknown has been reported.
 */
static void validate_meter_controls(struct mh_schema *s)
{
	for (const struct mh_meter_control *mc = s->meter_controls; mc; mc = mc->next) {
		struct mh_meter_config *m = mc->meter;

		if (!m->profile)
			continue;
		if (m->profile->protocol != MH_PROTO_DLT645) {
			mh_yamldoc_error_at(&s->doc, &mc->pos, mc->path,
				"a meter's control gives DL/T 645 passwords, but profile \"%s\" "
				"reads Modbus: a Modbus meter is controlled by its profile's "
				"control (trip, restore, relay)",
				mh_yamldoc_show(&s->doc, m->profile->name));
			continue;
		}
		if (mc->fields & MH_METER_CONTROL_LEVEL)
			m->control.level = mc->given.level;
		if (mc->fields & MH_METER_CONTROL_PASSWORD)
			memcpy(m->control.password, mc->given.password, sizeof(m->control.password));
		if (mc->fields & MH_METER_CONTROL_OPERATOR)
			memcpy(m->control.operator_code, mc->given.operator_code,
				sizeof(m->control.operator_code));
		if (mc->fields & MH_METER_CONTROL_CLOSE)
			m->control.close = mc->given.close;
		if (mc->fields & MH_METER_CONTROL_ESAM)
			m->control.esam = mc->given.esam;
		m->has_control = true;
	}
}

/* ---- commands -------------------------------------------------------- */

/* @ms as the file would say it: "10s", "1500ms", "5m". */
static void format_duration(unsigned ms, char out[24])
{
	if (ms % 60000 == 0)
		snprintf(out, 24, "%um", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(out, 24, "%us", ms / 1000);
	else
		snprintf(out, 24, "%ums", ms);
}

static void validate_commands(struct mh_schema *s)
{
	const struct mh_commands_config *c = &s->cfg->commands;
	char settle[24], confirm[24];

	/* 0 is a wrong value, reported where it stands. */
	if (c->settle_ms && c->confirm_within_ms && c->confirm_within_ms < c->settle_ms) {
		format_duration(c->settle_ms, settle);
		format_duration(c->confirm_within_ms, confirm);
		if (s->confirm_pos.line)
			mh_yamldoc_error_at(&s->doc, &s->confirm_pos, "commands.confirm_within",
				"%s is shorter than settle (%s%s): an attempt would end before its "
				"first read-back of the relay",
				confirm, settle, s->settle_pos.line ? "" : ", the default");
		else
			mh_yamldoc_error_at(&s->doc, &s->settle_pos, "commands.settle",
				"%s is longer than confirm_within (%s, the default): an attempt "
				"would end before its first read-back of the relay; raise "
				"confirm_within",
				settle, confirm);
	}
	for (size_t i = 0; i < c->n_windows; i++) {
		const struct mh_protect_window_config *w = &c->windows[i];
		struct mh_window_edge from, to;
		int64_t from_ms, to_ms;
		char path[64];

		/* Edges that are missing or do not parse have been reported. */
		if (!w->from || !w->to || mh_window_edge_parse(w->from, &from) < 0 ||
			mh_window_edge_parse(w->to, &to) < 0)
			continue;
		snprintf(path, sizeof(path), "commands.protect_windows[%zu]", i);
		if (!mh_window_edge_ordered(&from, &to))
			mh_yamldoc_error_at(&s->doc, &w->pos, path,
				"from \"%s\" is after to \"%s\"", mh_yamldoc_show(&s->doc, w->from),
				mh_yamldoc_show(&s->doc, w->to));
		else if (mh_config_window_resolve(w, &from_ms, &to_ms) < 0)
			/* Only a date can fail: past 2038 where time_t has 32 bits. */
			mh_yamldoc_error_at(&s->doc, &w->pos, path,
				"\"%s\" to \"%s\" is past the last date this system's clock "
				"can hold",
				mh_yamldoc_show(&s->doc, w->from), mh_yamldoc_show(&s->doc, w->to));
	}
}

int mh_config_window_resolve(const struct mh_protect_window_config *w, int64_t *from_ms,
	int64_t *to_ms)
{
	struct mh_window_edge from, to;
	int64_t a, b;

	if (!w->from || !w->to || mh_window_edge_parse(w->from, &from) < 0 ||
		mh_window_edge_parse(w->to, &to) < 0 ||
		mh_window_edge_resolve(&from, false, &a) < 0 ||
		mh_window_edge_resolve(&to, true, &b) < 0)
		return -EINVAL;
	*from_ms = a;
	*to_ms = b;
	return 0;
}

/* ---- tariffs --------------------------------------------------------- */

static void format_hm(unsigned min, char out[6])
{
	snprintf(out, 6, "%02u:%02u", min / 60 % 100, min % 60);
}

/* Whether the interval boundaries counted from midnight include @min. */
static bool on_boundary(const struct mh_config *cfg, unsigned min)
{
	return !cfg->schedule.interval_ms || (uint64_t)min * 60000 % cfg->schedule.interval_ms == 0;
}

/*
 * The periods written at @path into a table: no two may overlap, and every
 * edge must fall on an interval boundary, so no interval straddles two
 * periods and none is split by guessing.
 */
static void build_table(struct mh_schema *s, const char *path, const struct mh_period_config *pc,
	size_t n, struct mh_tariff_table *out)
{
	const struct mh_config *cfg = s->cfg;
	struct mh_tariff_period *periods = mh_schema_alloc(s, (n ? n : 1) * sizeof(*periods));
	size_t *from = mh_schema_alloc(s, (n ? n : 1) * sizeof(*from));
	const struct mh_tariff_period *a, *b;
	char at[352], e1[6], e2[6], e3[6], e4[6];
	size_t k = 0;

	if (!periods || !from)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct mh_period_config *p = &pc[i];
		/* Incomplete periods were reported where they were written. */
		if (!p->name || p->from_min >= MH_TARIFF_DAY_MIN || p->to_min >= MH_TARIFF_DAY_MIN)
			continue;
		snprintf(at, sizeof(at), "%s[%zu]", path, i);
		unsigned edges[2] = { p->from_min, p->to_min };
		for (int e = 0; e < 2; e++) {
			if (on_boundary(cfg, edges[e]))
				continue;
			format_hm(edges[e], e1);
			mh_yamldoc_error_at(&s->doc, &p->pos, at,
				"%s is not a boundary of the %u s interval (counted from midnight), "
				"so an interval would straddle two periods",
				e1, cfg->schedule.interval_ms / 1000);
		}
		periods[k] = (struct mh_tariff_period){ p->name, (uint16_t)p->from_min,
			(uint16_t)p->to_min };
		from[k++] = i;
	}
	out->periods = periods;
	out->n = k;
	if (mh_tariff_check_overlap(out, &a, &b) == 0)
		return;
	const struct mh_period_config *pa = &pc[from[a - periods]], *pb = &pc[from[b - periods]];
	snprintf(at, sizeof(at), "%s[%zu]", path, from[b - periods]);
	format_hm(pb->from_min, e1);
	format_hm(pb->to_min, e2);
	format_hm(pa->from_min, e3);
	format_hm(pa->to_min, e4);
	mh_yamldoc_error_at(&s->doc, &pb->pos, at,
		"\"%s\" (%s-%s) overlaps \"%s\" (%s-%s, line %u): a moment belongs to one period",
		pb->name, e1, e2, pa->name, e3, e4, pa->pos.line);
}

static void build_tariff(struct mh_schema *s, struct mh_tariff_config *tc)
{
	struct mh_tariff_season *seasons =
		mh_schema_alloc(s, (tc->n_seasons ? tc->n_seasons : 1) * sizeof(*seasons));
	char path[320];

	if (!seasons)
		return;
	snprintf(path, sizeof(path), "%s.periods", tc->path);
	build_table(s, path, tc->periods, tc->n_periods, &tc->tariff.base);
	for (size_t i = 0; i < tc->n_seasons; i++) {
		const struct mh_season_config *sc = &tc->seasons[i];
		snprintf(path, sizeof(path), "%s.seasons[%zu]", tc->path, i);
		if (!sc->months && !sc->days)
			mh_yamldoc_error_at(&s->doc, &sc->pos, path,
				"a season says when it applies: give months, days or both");
		seasons[i].months = sc->months;
		seasons[i].days = sc->days;
		snprintf(path, sizeof(path), "%s.seasons[%zu].periods", tc->path, i);
		build_table(s, path, sc->periods, sc->n_periods, &seasons[i].table);
	}
	tc->tariff.name = tc->name;
	tc->tariff.default_period = tc->default_period;
	tc->tariff.seasons = seasons;
	tc->tariff.n_seasons = tc->n_seasons;
}

static void validate_tariffs(struct mh_schema *s)
{
	struct mh_config *cfg = s->cfg;
	char hm[6];

	if (s->freeze_pos.line && cfg->schedule.daily_freeze_min < MH_TARIFF_DAY_MIN &&
		!on_boundary(cfg, cfg->schedule.daily_freeze_min)) {
		format_hm(cfg->schedule.daily_freeze_min, hm);
		mh_yamldoc_error_at(&s->doc, &s->freeze_pos, "schedule.daily_freeze",
			"%s is not a boundary of the %u s interval (counted from midnight)", hm,
			cfg->schedule.interval_ms / 1000);
	}
	if (cfg->tariff_config) {
		build_tariff(s, cfg->tariff_config);
		cfg->tariff = &cfg->tariff_config->tariff;
	}
	for (size_t i = 0; i < cfg->n_tariffs; i++)
		build_tariff(s, &cfg->tariffs[i]);
	for (size_t b = 0; b < cfg->n_buses; b++) {
		for (size_t i = 0; i < cfg->buses[b].n_meters; i++) {
			struct mh_meter_config *m = &cfg->buses[b].meters[i];
			char path[96];
			if (!m->tariff_name)
				continue;
			m->tariff = mh_config_tariff(cfg, m->tariff_name);
			if (m->tariff)
				continue;
			snprintf(path, sizeof(path), "buses[%zu].meters[%zu].tariff", b, i);
			mh_yamldoc_error_at(&s->doc, &m->pos, path,
				"no tariff named \"%s\" (name it under tariffs:)",
				mh_yamldoc_show(&s->doc, m->tariff_name));
		}
	}
}

static void validate(struct mh_schema *s)
{
	struct mh_config *cfg = s->cfg;

	validate_mqtt(s);
	for (size_t p = 0; p < cfg->n_profiles; p++)
		if (!cfg->profiles[p].builtin &&
			mh_profile_validate(&s->doc, &cfg->arena, &cfg->profiles[p]) < 0)
			s->oom = true;
	validate_buses(s);
	validate_meter_controls(s);
	validate_commands(s);
	validate_tariffs(s);
}

static void apply_defaults(struct mh_schema *s)
{
	struct mh_config *cfg = s->cfg;
	char buf[256];

	if (!cfg->store.path)
		cfg->store.path = "/var/lib/meterhub";
	if (!cfg->store.max_bytes)
		cfg->store.max_bytes = 256ull << 20;
	if (cfg->store.commit_window_ms == UINT_MAX)
		cfg->store.commit_window_ms = 200;
	if (!cfg->health.interval_ms)
		cfg->health.interval_ms = 60000;
	if (!cfg->health.offline_after)
		cfg->health.offline_after = 3;
	if (!cfg->mqtt.keepalive_s)
		cfg->mqtt.keepalive_s = 30;
	if (!cfg->mqtt.window)
		cfg->mqtt.window = 32;
	if (cfg->schedule.retries == UINT_MAX)
		cfg->schedule.retries = 2;
	if (cfg->schedule.backfill_days == UINT_MAX)
		cfg->schedule.backfill_days = 3;
	if (cfg->schedule.backfill_at_min == UINT_MAX)
		cfg->schedule.backfill_at_min = 5; /* 00:05: the meters have frozen by then */
	if (cfg->gateway.id && !cfg->mqtt.client_id) {
		snprintf(buf, sizeof(buf), "meterhub-%s", cfg->gateway.id);
		cfg->mqtt.client_id = mh_schema_strdup(s, buf);
	}
	if (cfg->gateway.id && !cfg->mqtt.topic_prefix) {
		snprintf(buf, sizeof(buf), "meterhub/%s", cfg->gateway.id);
		cfg->mqtt.topic_prefix = mh_schema_strdup(s, buf);
	}
}

/* ---- loading --------------------------------------------------------- */

static int load_builtins(struct mh_schema *s)
{
	for (size_t i = 0; i < mh_builtin_profile_count; i++) {
		const struct mh_builtin_profile *bp = &mh_builtin_profiles[i];
		size_t first = s->cfg->n_profiles;
		char name[128];
		int rc;

		snprintf(name, sizeof(name), "<built-in>/%s", bp->file);
		rc = mh_schema_load(s, name, bp->text, strlen(bp->text), true);
		if (rc == -ENOMEM)
			return rc;
		for (size_t p = first; p < s->cfg->n_profiles; p++)
			if (mh_profile_validate(&s->doc, &s->cfg->arena, &s->cfg->profiles[p]) < 0)
				return -ENOMEM;
	}
	return 0;
}

int mh_config_load_string(const char *name, const char *text, size_t len,
	mh_config_error_fn on_error, void *ud, struct mh_config **out)
{
	struct mh_config *cfg = calloc(1, sizeof(*cfg));
	struct mh_schema s;
	int rc;

	if (!cfg)
		return -ENOMEM;
	/* Unset until the file says otherwise: 0 is a value here. */
	cfg->schedule.retries = UINT_MAX;
	cfg->store.commit_window_ms = UINT_MAX;
	cfg->schedule.backfill_days = UINT_MAX;
	cfg->schedule.backfill_at_min = UINT_MAX;
	cfg->clock.sync = true;
	cfg->clock.require_synced = true;
	cfg->clock.check_every_ms = 86400000;
	cfg->clock.max_drift_ms = 60000;
	cfg->clock.max_correction_ms = 300000;
	/* The commands' defaults stand also without the section; a wrong value replaces one. */
	cfg->commands = (struct mh_commands_config){
		.max_attempts = 3,
		.retry_backoff_ms = 5000,
		.max_skew_ms = 300000,
		.settle_ms = 1000,
		.confirm_within_ms = 10000,
		.queue = 8,
	};
	mh_schema_init(&s, cfg, on_error, ud);
	rc = load_builtins(&s);
	if (!rc)
		rc = mh_schema_load(&s, name, text, len, false);
	cfg->file = s.doc.file;
	/* Cross-key checks run even after errors in single keys, so one run shows them all. */
	if (!rc && !s.oom) {
		apply_defaults(&s);
		validate(&s);
	}
	if (s.oom)
		rc = -ENOMEM;
	else if (!rc && s.doc.errors)
		rc = -EINVAL;
	mh_yamldoc_finish(&s.doc);
	mh_schema_deinit(&s);
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
	struct stat st;
	char *text;
	size_t len = 0;
	int rc;

	if (!f)
		return -errno;
	/* fopen() opens a directory; reading it would fail as a bare "Input/output error". */
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return -EISDIR;
	}
	/*
	 * One byte more than a configuration may hold is enough to refuse it, and
	 * /dev/zero or a FIFO never gets to fill memory.
	 */
	text = malloc(MH_YAMLDOC_MAX_BYTES + 1);
	if (!text) {
		fclose(f);
		return -ENOMEM;
	}
	while (len <= MH_YAMLDOC_MAX_BYTES) {
		size_t n = fread(text + len, 1, MH_YAMLDOC_MAX_BYTES + 1 - len, f);

		if (n == 0)
			break;
		len += n;
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
	mh_arena_free(cfg->arena);
	free(cfg);
}

const struct mh_tariff *mh_config_tariff(const struct mh_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_tariffs; i++)
		if (!strcmp(cfg->tariffs[i].name, name))
			return &cfg->tariffs[i].tariff;
	return NULL;
}

const struct mh_profile *mh_config_profile(const struct mh_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_profiles; i++)
		if (cfg->profiles[i].name && !strcmp(cfg->profiles[i].name, name))
			return &cfg->profiles[i];
	return NULL;
}

int mh_config_restart_keys(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud)
{
	return mh_schema_restart_keys(old, fresh, fn, ud);
}

int mh_config_live_changes(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud)
{
	return mh_schema_live_changes(old, fresh, fn, ud);
}
