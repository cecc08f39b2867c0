// SPDX-License-Identifier: MIT
/*
 * Loading a configuration: the built-in profiles, then the user's file, each
 * walked against the key tables (schema.c); then the checks that need the
 * whole file at once (profiles, meters against their buses, names that must
 * be unique). The value parsers shared with the command line live here too.
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
#include "profile.h"
#include "profiles.h"
#include "schema.h"

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

/* ---- checks across keys ---------------------------------------------- */

static void validate_meter_address(struct mh_schema *s, const struct mh_bus_config *bus,
	struct mh_meter *m, const char *path)
{
	uint64_t unit;

	if (bus->protocol == MH_PROTO_MODBUS) {
		if (mh_config_parse_uint(m->address, &unit) < 0 || unit < 1 || unit > 247)
			mh_yamldoc_error_at(&s->doc, &m->pos, path,
				"\"%s\" is not a Modbus slave address (1 to 247)",
				mh_yamldoc_show(&s->doc, m->address));
		else
			m->unit = (unsigned)unit;
	} else if (strlen(m->address) != 12 || strspn(m->address, "0123456789") != 12 ||
		   mh_dlt645_addr_parse(m->address, m->dlt645_addr) < 0) {
		mh_yamldoc_error_at(&s->doc, &m->pos, path,
			"\"%s\" is not a DL/T 645 address (12 decimal digits, as on the nameplate; quote it)",
			mh_yamldoc_show(&s->doc, m->address));
	}
}

static void validate(struct mh_schema *s)
{
	struct mh_config *cfg = s->cfg;
	char path[128], path2[160];

	for (size_t p = 0; p < cfg->n_profiles; p++)
		if (!cfg->profiles[p].builtin &&
			mh_profile_validate(&s->doc, &cfg->arena, &cfg->profiles[p]) < 0)
			s->oom = true;

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
				mh_yamldoc_error_at(&s->doc, &bus->pos, path,
					"bus name \"%s\" is used twice (first at line %u)", bus->name,
					cfg->buses[o].pos.line);
			if (cfg->buses[o].device && bus->device &&
				!strcmp(cfg->buses[o].device, bus->device))
				mh_yamldoc_error_at(&s->doc, &bus->pos, path,
					"device %s is used by two buses (first at line %u)",
					mh_yamldoc_show(&s->doc, bus->device), cfg->buses[o].pos.line);
		}

		for (size_t i = 0; i < bus->n_meters; i++) {
			struct mh_meter *m = &bus->meters[i];

			snprintf(path, sizeof(path), "buses[%zu].meters[%zu]", b, i);
			if (!m->id || !m->address || !m->profile_name)
				continue;
			if (known)
				validate_meter_address(s, bus, m, path);
			m->profile = mh_config_profile(cfg, m->profile_name);
			snprintf(path2, sizeof(path2), "%s.profile", path);
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
			for (size_t ob = 0; ob <= b; ob++) {
				const struct mh_bus_config *other = &cfg->buses[ob];
				size_t end = ob == b ? i : other->n_meters;
				for (size_t j = 0; j < end; j++) {
					const struct mh_meter *q = &other->meters[j];
					if (q->id && !strcmp(q->id, m->id))
						mh_yamldoc_error_at(&s->doc, &m->pos, path,
							"meter id \"%s\" is used twice (first at line %u)",
							m->id, q->pos.line);
					if (ob == b && known && q->address &&
						((bus->protocol == MH_PROTO_MODBUS && q->unit &&
							 q->unit == m->unit) ||
							(bus->protocol != MH_PROTO_MODBUS &&
								!strcmp(q->address, m->address))))
						mh_yamldoc_error_at(&s->doc, &m->pos, path,
							"address %s is used twice on bus %s (first at line %u)",
							mh_yamldoc_show(&s->doc, m->address),
							bus->name ? bus->name : "?",
							q->pos.line);
				}
			}
		}
	}
}

static void apply_defaults(struct mh_schema *s)
{
	struct mh_config *cfg = s->cfg;
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
