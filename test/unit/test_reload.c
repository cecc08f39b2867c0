// SPDX-License-Identifier: MIT
/*
 * Reload (SIGHUP): the plan (gateway/reload.h) says which buses keep their
 * thread and what changed, from two configurations loaded as the daemon
 * loads them; the meter set (meter.h) keeps each meter's object by id; the
 * health counters (health.h) follow buses by name and meters by id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "health.h"
#include "meter.h"
#include "reload.h"

static const char BASE[] =
	"gateway: { id: gw-1, timezone: Asia/Shanghai }\n"
	"store: { path: /var/lib/meterhub }\n"
	"mqtt: { uri: \"tcp://127.0.0.1:1883\" }\n"
	"schedule: { interval: 15m }\n"
	"buses:\n"
	"  - name: a\n"
	"    device: /dev/ttyS1\n"
	"    protocol: modbus\n"
	"    meters:\n"
	"      - { id: m-1, address: 1, profile: p }\n"
	"      - { id: m-2, address: 2, profile: p }\n"
	"  - name: b\n"
	"    device: /dev/ttyS2\n"
	"    protocol: modbus\n"
	"    meters:\n"
	"      - { id: m-3, address: 3, profile: p }\n"
	"profiles:\n"
	"  p: { points: [ { name: power_kw, table: holding, address: 0, type: float32 } ] }\n"
	"  q: { points: [ { name: power_kw, table: holding, address: 0, type: float32 },\n"
	"                 { name: voltage_a_v, table: holding, address: 2, type: u16 } ] }\n";

static void no_errors(void *ud, const char *line)
{
	(void)ud;
	fail_msg("unexpected config error: %s", line);
}

/* BASE with @from replaced by @to (once; NULL @from: BASE itself). */
static struct mh_config *load(const char *from, const char *to)
{
	char text[4096];
	struct mh_config *cfg = NULL;
	const char *at = from ? strstr(BASE, from) : NULL;

	if (from)
		assert_non_null(at);
	if (at)
		snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - BASE), BASE, to, at + strlen(from));
	else
		snprintf(text, sizeof(text), "%s", BASE);
	assert_int_equal(mh_config_load_string("t.yaml", text, strlen(text), no_errors, NULL, &cfg),
		0);
	return cfg;
}

/* @p's changes, as the config_reloaded event carries them, are @expected. */
static void assert_changes(const struct mh_reload_plan *p, const char *expected)
{
	char *s = cJSON_PrintUnformatted(p->changes);

	assert_non_null(s);
	assert_string_equal(s, expected);
	free(s);
}

static void plan_done(struct mh_reload_plan *p, struct mh_config *old, struct mh_config *fresh)
{
	mh_reload_plan_free(p);
	mh_config_free(old);
	mh_config_free(fresh);
}

static void plan(const struct mh_config *old, const struct mh_config *fresh,
	struct mh_reload_plan *p)
{
	struct mh_file_stamps stamps;

	mh_reload_stamp_mqtt(old, &stamps);
	assert_int_equal(mh_reload_plan(old, &stamps, fresh, p), 0);
}

static void test_same_file_changes_nothing(void **state)
{
	(void)state;
	struct mh_config *old = load(NULL, NULL), *fresh = load(NULL, NULL);
	struct mh_reload_plan p;

	plan(old, fresh, &p);
	assert_true(p.keep[0] && p.keep[1]);
	assert_false(p.old_stops[0] || p.old_stops[1]);
	assert_false(p.mqtt);
	assert_int_equal(p.n_changes, 0);
	assert_changes(&p, "{\"buses\":{},\"meters\":{}}");
	plan_done(&p, old, fresh);
}

static void test_reprofiled_meter_restarts_only_its_bus(void **state)
{
	(void)state;
	struct mh_config *old = load(NULL, NULL);
	struct mh_config *fresh = load("{ id: m-1, address: 1, profile: p }",
		"{ id: m-1, address: 1, profile: q }");
	struct mh_reload_plan p;

	plan(old, fresh, &p);
	assert_false(p.keep[0]);
	assert_true(p.keep[1]);
	assert_true(p.old_stops[0]);
	assert_false(p.old_stops[1]);
	assert_int_equal(p.from[0], 0);
	assert_int_equal(p.from[1], 1);
	assert_changes(&p, "{\"buses\":{\"restarted\":[\"a\"]},\"meters\":{\"changed\":[\"m-1\"]}}");
	plan_done(&p, old, fresh);
}

static void test_meter_removed_and_bus_renamed(void **state)
{
	(void)state;
	struct mh_config *old = load(NULL, NULL);
	/* m-2 leaves bus a; bus b becomes c (a new bus, and b is gone). */
	struct mh_config *fresh = load("      - { id: m-2, address: 2, profile: p }\n"
				       "  - name: b\n",
		"  - name: c\n");
	struct mh_reload_plan p;

	plan(old, fresh, &p);
	assert_int_equal(p.n_buses, 2);
	assert_int_equal(p.from[1], SIZE_MAX);
	assert_true(p.old_stops[0] && p.old_stops[1]);
	assert_changes(&p, "{\"buses\":{\"restarted\":[\"a\"],\"added\":[\"c\"],\"removed\":[\"b\"]},"
			       "\"meters\":{\"removed\":[\"m-2\"]}}");
	plan_done(&p, old, fresh);
}

static void test_live_keys_are_named_and_mqtt_reconnects(void **state)
{
	(void)state;
	struct mh_config *old = load(NULL, NULL);
	struct mh_config *fresh = load("mqtt: { uri: \"tcp://127.0.0.1:1883\" }\n"
				       "schedule: { interval: 15m }\n",
		"mqtt: { uri: \"tcp://10.0.0.1:1883\" }\n"
		"schedule: { interval: 5m }\n");
	struct mh_reload_plan p;

	plan(old, fresh, &p);
	assert_true(p.mqtt);
	assert_true(p.keep[0] && p.keep[1]);
	assert_changes(&p, "{\"buses\":{},\"meters\":{},\"keys\":[\"mqtt.uri\",\"schedule.interval\"]}");
	plan_done(&p, old, fresh);
}

static void test_line_settings_restart_the_bus(void **state)
{
	(void)state;
	struct mh_config *old = load(NULL, NULL);
	struct mh_config *fresh = load("    device: /dev/ttyS2\n", "    device: /dev/ttyUSB0\n");
	struct mh_reload_plan p;

	plan(old, fresh, &p);
	assert_true(p.keep[0]);
	assert_false(p.keep[1]);
	assert_int_equal(p.n_changes, 1);
	plan_done(&p, old, fresh);
}

static void test_meter_set_keeps_objects_by_id(void **state)
{
	(void)state;
	struct mh_config *old = load(NULL, NULL);
	struct mh_config *fresh = load("      - { id: m-2, address: 2, profile: p }\n",
		"      - { id: m-4, address: 4, profile: p }\n");
	struct mh_meter_set set;
	struct mh_meter *m1, *m3;

	assert_int_equal(mh_meter_set_init(&set, old), 0);
	assert_int_equal(set.n, 3);
	m1 = set.meters[0];
	m3 = set.meters[2];
	m1->last_good_ms = 42;
	m3->skipped = 7;
	assert_int_equal(mh_meter_set_rebind(&set, fresh, NULL, NULL), 0);
	assert_int_equal(set.n, 3);
	assert_ptr_equal(set.meters[0], m1);
	assert_int_equal(set.meters[0]->last_good_ms, 42);
	assert_ptr_equal(set.meters[0]->cfg, &fresh->buses[0].meters[0]);
	assert_string_equal(set.meters[1]->cfg->id, "m-4");
	assert_int_equal(set.meters[1]->last_good_ms, 0);
	assert_int_equal(set.meters[1]->slot, 1);
	assert_ptr_equal(set.meters[2], m3);
	assert_int_equal(set.meters[2]->skipped, 7);
	assert_int_equal(set.meters[2]->bus_index, 1);
	assert_ptr_equal(mh_meter_find(&set, "m-4"), set.meters[1]);
	assert_null(mh_meter_find(&set, "m-2"));
	mh_meter_set_deinit(&set);
	mh_config_free(old);
	mh_config_free(fresh);
}

static cJSON *bus_report(cJSON *report, const char *name)
{
	cJSON *b;

	cJSON_ArrayForEach(b, cJSON_GetObjectItem(report, "buses"))
		if (!strcmp(cJSON_GetObjectItem(b, "name")->valuestring, name))
			return b;
	fail_msg("no bus %s in the report", name);
	return NULL;
}

static void test_health_follows_buses_and_meters(void **state)
{
	(void)state;
	/* Bus a loses m-1 (restarted); bus b keeps m-3 and its counters. */
	struct mh_config *old = load(NULL, NULL);
	struct mh_config *fresh = load("      - { id: m-1, address: 1, profile: p }\n", "");
	struct mh_health *h = mh_health_new(old);
	struct mh_reading bad = { .quality = MH_QUALITY_TIMEOUT }, good = { .quality = MH_QUALITY_GOOD };
	struct mh_bus_port ports[2] = { { .open = true }, { .open = true } };
	size_t backlog[2] = { 0, 0 };
	struct mh_outbox_stats st = { 0 };
	struct mh_health_snapshot snap = { .now_ms = 1795276800000LL + 60000, .clock_set = true,
		.backlog = backlog, .ports = ports, .store = &st };
	bool restarted[2] = { true, false };
	unsigned failed;
	char *json;
	cJSON *r;

	assert_non_null(h);
	ports[1].link.frames = 10;
	/* m-2 (slot 1 of a) fails three boundaries: offline; m-3 reads well. */
	for (int i = 0; i < 3; i++) {
		mh_health_note(h, 0, 1, 1795276800000LL + i * 1000, &bad, &failed);
		mh_health_note(h, 1, 0, 1795276800000LL + i * 1000, &good, &failed);
	}
	free(mh_health_report(h, &snap));
	assert_int_equal(mh_health_rebind(h, fresh, restarted), 0);
	ports[0].link.frames = 0; /* a new port object */
	ports[1].link.frames = 15;
	json = mh_health_report(h, &snap);
	r = cJSON_Parse(json);
	assert_int_equal(cJSON_GetObjectItem(bus_report(r, "a"), "meters_offline")->valueint, 1);
	assert_int_equal(cJSON_GetObjectItem(bus_report(r, "a"), "meters_online")->valueint, 0);
	assert_int_equal(cJSON_GetObjectItem(bus_report(r, "b"), "total_good")->valueint, 3);
	assert_int_equal(cJSON_GetObjectItem(
		cJSON_GetObjectItem(bus_report(r, "b"), "link_period"), "frames")->valueint, 5);
	assert_int_equal(cJSON_GetObjectItem(
		cJSON_GetObjectItem(bus_report(r, "a"), "link_period"), "frames")->valueint, 0);
	/* m-2 is slot 0 of bus a now, and still failing. */
	assert_int_equal(mh_health_note(h, 0, 0, 1795276800000LL + 3000, &good, &failed),
		MH_HEALTH_ONLINE);
	assert_int_equal(failed, 3);
	cJSON_Delete(r);
	free(json);
	mh_health_free(h);
	mh_config_free(old);
	mh_config_free(fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_file_changes_nothing),
		cmocka_unit_test(test_reprofiled_meter_restarts_only_its_bus),
		cmocka_unit_test(test_meter_removed_and_bus_renamed),
		cmocka_unit_test(test_live_keys_are_named_and_mqtt_reconnects),
		cmocka_unit_test(test_line_settings_restart_the_bus),
		cmocka_unit_test(test_meter_set_keeps_objects_by_id),
		cmocka_unit_test(test_health_follows_buses_and_meters),
	};

	setenv("TZ", "Asia/Shanghai", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
