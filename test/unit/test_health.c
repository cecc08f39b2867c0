// SPDX-License-Identifier: MIT
/*
 * The health payload (gateway/health.h) as a head-end reads it: the day's
 * read success rate counts meter-boundaries, not tries, and starts again at
 * local midnight; a meter is offline after three failed boundaries in a row
 * and online again at its first good read; the newest good reading's time;
 * what the line did, since start and in the period, under the names of its
 * protocol.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "health.h"

/* 2026-11-22T00:00:00+08:00, a local midnight in Asia/Shanghai. */
#define MIDNIGHT_MS 1795276800000LL
#define MINUTE_MS 60000LL

/* health.offline_after in these tests. */
#define OFFLINE_AFTER 3

struct fixture {
	struct mh_meter_config meters[4];
	struct mh_bus_config buses[2];
	struct mh_config cfg;
	struct mh_bus_port ports[2];
	size_t backlog[2];
	struct mh_outbox_stats store;
	struct mh_health *h;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
	f->buses[0] = (struct mh_bus_config){ .name = "rs485-645", .protocol = MH_PROTO_DLT645,
		.meters = f->meters, .n_meters = 3 };
	f->buses[1] = (struct mh_bus_config){ .name = "rs485-mb", .protocol = MH_PROTO_MODBUS,
		.meters = f->meters + 3, .n_meters = 1 };
	f->cfg.buses = f->buses;
	f->cfg.n_buses = 2;
	f->cfg.health.offline_after = OFFLINE_AFTER;
	f->h = mh_health_new(&f->cfg);
	if (!f->h) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	mh_health_free(f->h);
	free(f);
	return 0;
}

/* One try at boundary @due of meter @slot on bus 0, good or a timeout; what it changed. */
static enum mh_health_change note(struct fixture *f, size_t slot, int64_t due, bool good)
{
	unsigned failed;
	struct mh_reading r = {
		.read_at_ms = due + 1234,
		.duration_ms = 40,
		.frames = 1,
		.quality = good ? MH_QUALITY_GOOD : MH_QUALITY_TIMEOUT,
	};

	return mh_health_note(f->h, 0, slot, due, &r, &failed);
}

/* The report at @now_ms, parsed; the caller deletes it. */
static cJSON *report(struct fixture *f, int64_t now_ms)
{
	struct mh_health_snapshot snap = {
		.now_ms = now_ms,
		.clock_set = true,
		.uptime_ms = 1000,
		.backlog = f->backlog,
		.ports = f->ports,
		.store = &f->store,
	};
	char *text = mh_health_report(f->h, &snap);
	cJSON *obj;

	assert_non_null(text);
	obj = cJSON_Parse(text);
	free(text);
	assert_non_null(obj);
	return obj;
}

static cJSON *bus(cJSON *obj, int i)
{
	cJSON *b = cJSON_GetArrayItem(cJSON_GetObjectItem(obj, "buses"), i);

	assert_non_null(b);
	return b;
}

static double number(cJSON *obj, const char *key)
{
	cJSON *item = cJSON_GetObjectItem(obj, key);

	assert_non_null(item);
	assert_true(cJSON_IsNumber(item));
	return item->valuedouble;
}

static void test_success_rate_counts_meter_boundaries(void **state)
{
	struct fixture *f = *state;
	int64_t b1 = MIDNIGHT_MS + 15 * MINUTE_MS, b2 = b1 + 15 * MINUTE_MS;
	cJSON *obj;

	/* No read yet today: no rate at all, rather than a rate of nothing. */
	obj = report(f, MIDNIGHT_MS + MINUTE_MS);
	assert_null(cJSON_GetObjectItem(bus(obj, 0), "read_success_rate_today"));
	assert_null(cJSON_GetObjectItem(bus(obj, 0), "last_good_reading"));
	cJSON_Delete(obj);

	/* Boundary 1: meter 0 read; meter 1 failed, then its retry read it; meter 2 failed twice. */
	note(f, 0, b1, true);
	note(f, 1, b1, false);
	note(f, 1, b1, true);
	note(f, 2, b1, false);
	note(f, 2, b1, false);
	/* Boundary 2: every meter read. */
	for (size_t m = 0; m < 3; m++)
		note(f, m, b2, true);
	obj = report(f, b2 + MINUTE_MS);
	/* 5 of 6 meter-boundaries, however many tries they took. */
	assert_float_equal(number(bus(obj, 0), "read_success_rate_today"), 5.0 / 6.0, 1e-12);
	assert_string_equal(cJSON_GetObjectItem(bus(obj, 0), "last_good_reading")->valuestring,
		"2026-11-21T16:30:01.234Z");
	/* A bus with no reads has neither. */
	assert_null(cJSON_GetObjectItem(bus(obj, 1), "read_success_rate_today"));
	cJSON_Delete(obj);
}

static void test_success_rate_starts_again_at_local_midnight(void **state)
{
	struct fixture *f = *state;
	int64_t late = MIDNIGHT_MS - 15 * MINUTE_MS; /* 23:45 the day before */
	cJSON *obj;

	note(f, 0, late, false);
	note(f, 1, late, true);
	obj = report(f, late + MINUTE_MS);
	assert_float_equal(number(bus(obj, 0), "read_success_rate_today"), 0.5, 1e-12);
	cJSON_Delete(obj);

	/* Past midnight, before the first boundary of the day is read: no rate yet. */
	obj = report(f, MIDNIGHT_MS + 1000);
	assert_null(cJSON_GetObjectItem(bus(obj, 0), "read_success_rate_today"));
	cJSON_Delete(obj);

	/* The retry of 23:45 that succeeds after midnight belongs to a day that is over. */
	note(f, 0, late, true);
	note(f, 0, MIDNIGHT_MS, true);
	obj = report(f, MIDNIGHT_MS + MINUTE_MS);
	assert_float_equal(number(bus(obj, 0), "read_success_rate_today"), 1.0, 1e-12);
	cJSON_Delete(obj);
}

static void test_meter_offline_after_three_failed_boundaries(void **state)
{
	struct fixture *f = *state;
	int64_t due = MIDNIGHT_MS;
	cJSON *obj;

	/* Meters start online: a meter not read yet has not failed. */
	obj = report(f, due);
	assert_int_equal(number(bus(obj, 0), "meters_online"), 3);
	assert_int_equal(number(bus(obj, 0), "meters_offline"), 0);
	assert_int_equal(number(bus(obj, 1), "meters_online"), 1);
	cJSON_Delete(obj);

	/* Meter 2 fails boundaries; its retries within a boundary count once. */
	for (int k = 0; k < OFFLINE_AFTER - 1; k++, due += MINUTE_MS) {
		note(f, 2, due, false);
		note(f, 2, due, false);
	}
	obj = report(f, due);
	assert_int_equal(number(bus(obj, 0), "meters_offline"), 0);
	cJSON_Delete(obj);
	assert_int_equal(note(f, 2, due, false), MH_HEALTH_OFFLINE);
	obj = report(f, due);
	assert_int_equal(number(bus(obj, 0), "meters_online"), 2);
	assert_int_equal(number(bus(obj, 0), "meters_offline"), 1);
	cJSON_Delete(obj);

	/* Its first good read brings it back, the retry of a failed boundary too. */
	assert_int_equal(note(f, 2, due, true), MH_HEALTH_ONLINE);
	obj = report(f, due);
	assert_int_equal(number(bus(obj, 0), "meters_online"), 3);
	assert_int_equal(number(bus(obj, 0), "meters_offline"), 0);
	cJSON_Delete(obj);

	/* A success in between starts the count again. */
	for (int k = 0; k < 2 * OFFLINE_AFTER - 1; k++) {
		due += MINUTE_MS;
		note(f, 1, due, k == OFFLINE_AFTER - 1);
	}
	obj = report(f, due);
	assert_int_equal(number(bus(obj, 0), "meters_offline"), 0);
	cJSON_Delete(obj);
}

static void test_link_counters_since_start_and_in_the_period(void **state)
{
	struct fixture *f = *state;
	cJSON *obj, *link, *period;

	f->ports[0].link = (struct mh_link_counters){ .frames = 100, .timeouts = 3,
		.checksum_errors = 2, .garbled = 4, .wrong_address = 5, .echo = 100,
		.late_replies = 1, .garbage_bytes = 57, .refusals = 6 };
	f->ports[1].link = (struct mh_link_counters){ .frames = 10, .checksum_errors = 1,
		.refusals = 2 };
	obj = report(f, MIDNIGHT_MS);
	cJSON_Delete(obj);
	f->ports[0].link.frames += 20;
	f->ports[0].link.checksum_errors += 1;
	f->ports[0].link.garbage_bytes += 9;
	obj = report(f, MIDNIGHT_MS + MINUTE_MS);

	link = cJSON_GetObjectItem(bus(obj, 0), "link");
	period = cJSON_GetObjectItem(bus(obj, 0), "link_period");
	assert_non_null(link);
	assert_non_null(period);
	assert_int_equal(number(link, "frames"), 120);
	assert_int_equal(number(link, "timeouts"), 3);
	assert_int_equal(number(link, "checksum_errors"), 3);
	assert_int_equal(number(link, "garbled"), 4);
	assert_int_equal(number(link, "wrong_address"), 5);
	assert_int_equal(number(link, "echo"), 100);
	assert_int_equal(number(link, "late_replies"), 1);
	assert_int_equal(number(link, "garbage_bytes"), 66);
	assert_int_equal(number(link, "refusals"), 6);
	assert_null(cJSON_GetObjectItem(link, "exceptions"));
	assert_int_equal(number(period, "frames"), 20);
	assert_int_equal(number(period, "checksum_errors"), 1);
	assert_int_equal(number(period, "garbage_bytes"), 9);
	assert_int_equal(number(period, "timeouts"), 0);

	/* Modbus: exceptions; no echo or garbage bytes, which libmodbus does not show. */
	link = cJSON_GetObjectItem(bus(obj, 1), "link");
	assert_non_null(link);
	assert_int_equal(number(link, "exceptions"), 2);
	assert_int_equal(number(link, "checksum_errors"), 1);
	assert_null(cJSON_GetObjectItem(link, "refusals"));
	assert_null(cJSON_GetObjectItem(link, "echo"));
	assert_null(cJSON_GetObjectItem(link, "garbage_bytes"));
	cJSON_Delete(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_success_rate_counts_meter_boundaries, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_success_rate_starts_again_at_local_midnight,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_meter_offline_after_three_failed_boundaries,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_counters_since_start_and_in_the_period,
			setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
