// SPDX-License-Identifier: MIT
/*
 * The YAML config loader, through its public entry point: the input is the
 * whole file (at most 64 KiB; a config is a few KiB). It is passed in an
 * exact-size buffer without a terminating NUL, as a file's bytes are.
 *
 * Properties: no crash, no leak, no read outside the text (the sanitizers
 * watch); 0 hands back a config, an error hands back none and reports at
 * least one line, each naming the file; what a loaded config holds is
 * usable as is by the codecs: Modbus profiles plan, DL/T 645 points are
 * identifiers the codec knows, every meter resolves to a profile of its
 * bus's protocol, every protect window resolves, a meter's control is
 * within its ranges and only there when its profile or the meter gave one.
 */
#include <errno.h>

#include "config.h"
#include "dlt645_di.h"
#include "fuzz.h"
#include "modbus_regs.h"

#define MAX_INPUT (64 * 1024)
#define NAME "fuzz.yaml"

struct errors {
	size_t lines;
};

static void on_error(void *ud, const char *line)
{
	struct errors *e = ud;

	FUZZ_CHECK(line != NULL);
	FUZZ_CHECK(strncmp(line, NAME ":", strlen(NAME ":")) == 0 ||
		   strncmp(line, "<built-in>/", strlen("<built-in>/")) == 0);
	e->lines++;
}

static void touch(const char *s)
{
	/* strlen makes ASan check the whole string and its terminator. */
	if (s)
		FUZZ_CHECK(strlen(s) < MAX_INPUT + 4096);
}

static void check_profile(const struct mh_profile *p)
{
	struct mh_modbus_point *mp;
	struct mh_modbus_plan plan;

	touch(p->name);
	touch(p->description);
	if (p->protocol == MH_PROTO_DLT645) {
		for (size_t i = 0; i < p->n_points; i++) {
			FUZZ_CHECK(p->points[i].has_di);
			FUZZ_CHECK(mh_dlt645_di_lookup(p->points[i].di) != NULL);
			touch(p->points[i].name);
		}
		return;
	}
	mp = calloc(p->n_points ? p->n_points : 1, sizeof(*mp));
	if (!mp)
		return;
	for (size_t i = 0; i < p->n_points; i++) {
		touch(p->points[i].name);
		mp[i] = p->points[i].modbus;
		FUZZ_CHECK(mh_modbus_table_name(mp[i].table) != NULL);
		FUZZ_CHECK(mh_modbus_type_name(mp[i].type) != NULL);
	}
	FUZZ_CHECK(mh_modbus_plan_build(mp, p->n_points, p->max_gap, &plan) == 0);
	mh_modbus_plan_deinit(&plan);
	free(mp);
}

static void check_config(const struct mh_config *cfg)
{
	touch(cfg->file);
	touch(cfg->gateway.id);
	touch(cfg->gateway.timezone);
	touch(cfg->store.path);
	touch(cfg->mqtt.uri);
	touch(cfg->mqtt.client_id);
	touch(cfg->mqtt.topic_prefix);
	touch(cfg->mqtt.username);
	touch(cfg->mqtt.password_file);
	touch(cfg->mqtt.tls.ca);
	touch(cfg->mqtt.tls.cert);
	touch(cfg->mqtt.tls.key);
	touch(cfg->commands.hmac_key_file);
	FUZZ_CHECK(!cfg->commands.enabled || cfg->commands.hmac_key_file);
	FUZZ_CHECK(cfg->commands.settle_ms <= cfg->commands.confirm_within_ms);
	for (size_t i = 0; i < cfg->commands.n_windows; i++) {
		const struct mh_protect_window_config *w = &cfg->commands.windows[i];
		int64_t from, to;

		touch(w->from);
		touch(w->to);
		FUZZ_CHECK(mh_config_window_resolve(w, &from, &to) == 0);
	}
	for (size_t i = 0; i < cfg->n_profiles; i++)
		check_profile(&cfg->profiles[i]);
	for (size_t b = 0; b < cfg->n_buses; b++) {
		const struct mh_bus_config *bus = &cfg->buses[b];

		touch(bus->name);
		touch(bus->device);
		for (size_t m = 0; m < bus->n_meters; m++) {
			const struct mh_meter_config *mc = &bus->meters[m];

			touch(mc->id);
			touch(mc->address);
			touch(mc->profile_name);
			FUZZ_CHECK(mc->profile != NULL);
			FUZZ_CHECK(mc->profile->protocol == bus->protocol);
			FUZZ_CHECK(mh_config_profile(cfg, mc->profile_name) == mc->profile);
			FUZZ_CHECK(mc->control.level <= 99);
			if (mc->profile->protocol == MH_PROTO_MODBUS)
				FUZZ_CHECK(mc->has_control == mc->profile->control.present);
			else
				FUZZ_CHECK(mc->has_control || !mc->profile->control.present);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errors errors = {0};
	struct mh_config *cfg = NULL;
	char *text;
	int r;

	if (size > MAX_INPUT)
		return 0;
	text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	r = mh_config_load_string(NAME, text, size, on_error, &errors, &cfg);
	free(text);
	if (r == 0) {
		FUZZ_CHECK(cfg != NULL);
		check_config(cfg);
		mh_config_free(cfg);
	} else {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(cfg == NULL);
		if (r == -EINVAL)
			FUZZ_CHECK(errors.lines > 0);
	}
	return 0;
}
