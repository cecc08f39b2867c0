// SPDX-License-Identifier: MIT
/*
 * The last look at a record before it is published (gateway/records.h):
 * JSON has no NaN or infinity, and cJSON would print null for them, so a
 * reading whose value is not a finite number is published as an error
 * that names the point, with the value left out; and any other record
 * carrying such a number is refused. The values are forced here: no codec
 * produces them (see test_modbus_regs.c for the decoder's own checks).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#include <cjson/cJSON.h>

#include "db.h"
#include "meter.h"
#include "outbox.h"
#include "records.h"
#include "schedule.h"

struct fixture {
	struct tmpdir *dir;
	struct mh_db *db;
	struct mh_outbox *ob;
	struct mh_point points[2];
	struct mh_profile profile;
	struct mh_meter_config meter_cfg;
	struct mh_bus_config bus_cfg;
	struct mh_meter meter;
	char payload[8192]; /* the last record stored */
	size_t records;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || tmpdir_setup((void **)&f->dir, "mh-records") != 0)
		return -1;
	if (mh_db_open(f->dir->path, 4 << 20, &f->db) || mh_outbox_open(f->db, 4 << 20, &f->ob))
		return -1;
	f->points[0] = (struct mh_point){ .name = "energy_import_kwh" };
	f->points[1] = (struct mh_point){ .name = "voltage_a_v" };
	f->profile = (struct mh_profile){ .name = "p", .points = f->points, .n_points = 2 };
	f->meter_cfg = (struct mh_meter_config){ .id = "m-1", .profile = &f->profile };
	f->bus_cfg = (struct mh_bus_config){ .name = "rs485-1" };
	f->meter = (struct mh_meter){ .cfg = &f->meter_cfg, .bus_cfg = &f->bus_cfg };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	void *dir = f->dir;

	mh_outbox_free(f->ob);
	mh_db_close(f->db);
	tmpdir_teardown(&dir);
	free(f);
	return 0;
}

static int keep_last(void *ud, const struct mh_record *rec)
{
	struct fixture *f = ud;

	assert_true(rec->payload_len < sizeof(f->payload));
	memcpy(f->payload, rec->payload, rec->payload_len);
	f->payload[rec->payload_len] = '\0';
	f->records++;
	return 0;
}

/* Commit, then the records stored so far; the last one's payload in f->payload. */
static size_t stored(struct fixture *f)
{
	assert_int_equal(mh_db_commit(f->db), 0);
	f->records = 0;
	assert_true(mh_outbox_scan(f->ob, 0, 100, keep_last, f) >= 0);
	return f->records;
}

/* A good reading of energy @kwh and 230.1 V, as a bus would bring it back. */
static struct mh_job *reading(struct fixture *f, double kwh)
{
	struct mh_job *job = mh_job_new_read(&f->meter, 0, 2, NULL, NULL);

	assert_non_null(job);
	job->due_ms = 1795276800000LL;
	job->reading.read_at_ms = job->due_ms + 120;
	job->reading.frames = 2;
	job->reading.values[0] = kwh;
	job->reading.values[1] = 230.1;
	job->reading.valid[0] = job->reading.valid[1] = true;
	return job;
}

static void test_nan_reading_is_an_error_not_a_null(void **state)
{
	struct fixture *f = *state;
	struct mh_job *job = reading(f, NAN);
	cJSON *obj, *values;

	assert_int_equal(mh_records_reading(f->ob, job), 0);
	/* What the tables and health see next is the error too. */
	assert_int_equal(job->reading.quality, MH_QUALITY_ERROR);
	assert_false(job->reading.valid[0]);
	assert_true(job->reading.valid[1]);
	assert_int_equal(stored(f), 1);
	assert_null(strstr(f->payload, "null"));
	obj = cJSON_Parse(f->payload);
	assert_non_null(obj);
	assert_string_equal(cJSON_GetObjectItem(obj, "quality")->valuestring, "error");
	assert_non_null(strstr(cJSON_GetObjectItem(obj, "error")->valuestring,
		"energy_import_kwh: the value is NaN"));
	values = cJSON_GetObjectItem(obj, "values");
	assert_null(cJSON_GetObjectItem(values, "energy_import_kwh"));
	assert_float_equal(cJSON_GetObjectItem(values, "voltage_a_v")->valuedouble, 230.1, 1e-9);
	cJSON_Delete(obj);
	mh_job_free(job);
}

static void test_infinite_reading_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct mh_job *job = reading(f, -INFINITY);

	assert_int_equal(mh_records_reading(f->ob, job), 0);
	assert_int_equal(stored(f), 1);
	assert_null(strstr(f->payload, "null"));
	assert_non_null(strstr(f->payload, "\"quality\":\"error\""));
	assert_non_null(strstr(f->payload, "energy_import_kwh: the value is infinite"));
	assert_null(strstr(f->payload, "\"energy_import_kwh\":"));
	mh_job_free(job);
}

/* A reading that failed already keeps its first reason; the value goes all the same. */
static void test_failed_reading_keeps_its_reason(void **state)
{
	struct fixture *f = *state;
	struct mh_job *job = reading(f, NAN);

	job->reading.quality = MH_QUALITY_TIMEOUT;
	strcpy(job->reading.error, "no reply within 500 ms");
	assert_int_equal(mh_records_guard(&job->reading, &f->profile), 1);
	assert_int_equal(job->reading.quality, MH_QUALITY_TIMEOUT);
	assert_string_equal(job->reading.error, "no reply within 500 ms");
	assert_false(job->reading.valid[0]);
	mh_job_free(job);
}

static void test_finite_reading_is_untouched(void **state)
{
	struct fixture *f = *state;
	struct mh_job *job = reading(f, 1206.42);

	assert_int_equal(mh_records_guard(&job->reading, &f->profile), 0);
	assert_int_equal(mh_records_reading(f->ob, job), 0);
	assert_int_equal(job->reading.quality, MH_QUALITY_GOOD);
	assert_int_equal(stored(f), 1);
	assert_non_null(strstr(f->payload, "\"energy_import_kwh\":1206.42"));
	assert_non_null(strstr(f->payload, "\"quality\":\"good\""));
	mh_job_free(job);
}

/* Any other record with such a number, however deep, is refused and takes no seq. */
static void test_record_with_nonfinite_number_is_refused(void **state)
{
	struct fixture *f = *state;
	uint64_t seq = mh_outbox_next_seq(f->ob);
	cJSON *obj = mh_records_event(f->ob, "test", 1795276800000LL);
	cJSON *inner = cJSON_AddObjectToObject(obj, "dropped");

	cJSON_AddNumberToObject(inner, "reading", INFINITY);
	assert_string_equal(mh_records_nonfinite(obj), "reading");
	assert_int_equal(mh_records_store(f->ob, MH_RECORD_EVENT, "event", obj, 1795276800000LL),
		-ERANGE);
	assert_int_equal(mh_outbox_next_seq(f->ob), seq);
	assert_int_equal(stored(f), 0);

	obj = mh_records_event(f->ob, "test", 1795276800000LL);
	cJSON_AddNumberToObject(obj, "step_s", 1.5);
	assert_null(mh_records_nonfinite(obj));
	assert_int_equal(mh_records_store(f->ob, MH_RECORD_EVENT, "event", obj, 1795276800000LL), 0);
	assert_int_equal(stored(f), 1);
}

/* What cJSON itself prints for @v. */
static void cjson_number(double v, char *out, size_t cap)
{
	cJSON *n = cJSON_CreateNumber(v);
	char *text = cJSON_PrintUnformatted(n);

	assert_non_null(text);
	snprintf(out, cap, "%s", text);
	free(text);
	cJSON_Delete(n);
}

/* The fast number writer prints exactly what cJSON prints, or leaves it to cJSON. */
static void check_number(double v, unsigned *fast)
{
	char ours[32], theirs[64];
	size_t len = mh_records_format_number(v, ours);

	if (!len)
		return;
	(*fast)++;
	cjson_number(v, theirs, sizeof(theirs));
	if (strcmp(ours, theirs))
		fail_msg("%.17g: wrote \"%s\", cJSON \"%s\"", v, ours, theirs);
	assert_int_equal(len, strlen(ours));
}

static void test_numbers_print_as_cjson_prints_them(void **state)
{
	static const double edge[] = { 0.0, -0.0, 1, -1, 0.1, 0.2, 0.1 + 0.2, 230.1, 1234.5,
		2147483647.0, 2147483648.0, -2147483649.0, 1e14, 999999999999999.0, 1e15, 1e16,
		0.0001, 0.00001, 0.000123, 1.5e-4, 9.99e-5, 123456.789012, 1.0 / 3, 2.0 / 3,
		49.98, 0.955, -3.0, 4503599627370496.0, 1e300, 5e-324, 0.5, 100, 2301 };
	unsigned fast = 0, tried = 0;
	uint64_t x = 0x9E3779B97F4A7C15ull;

	(void)state;
	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++, tried++)
		check_number(edge[i], &fast);
	/* Decimals of 0 to 7 places, as meters give them, and arbitrary doubles. */
	for (int i = 0; i < 200000; i++, tried += 2) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		long long n = (long long)(x % 2000000000000ull) - 1000000000000ll;
		double scale = 1;
		for (unsigned k = (unsigned)(x >> 40) % 8; k; k--)
			scale *= 10;
		check_number((double)(n >> ((x >> 50) % 30)) / scale, &fast);
		double raw;
		memcpy(&raw, &x, sizeof(raw));
		check_number(raw, &fast);
	}
	/* Most meter values take the fast way. */
	assert_true(fast > tried / 4);
}

/* The reading as the cJSON object the writer stands for, printed by cJSON. */
static char *cjson_reading(const struct mh_job *job, uint64_t seq, const char *ts,
	const char *read_at)
{
	const struct mh_reading *r = &job->reading;
	const struct mh_meter *m = job->meter;
	cJSON *obj = cJSON_CreateObject();
	cJSON *values;
	char *text;

	cJSON_AddNumberToObject(obj, "seq", (double)seq);
	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "quality", mh_quality_name(r->quality));
	values = cJSON_AddObjectToObject(obj, "values");
	for (size_t i = 0; i < r->n_values; i++)
		if (r->valid[i])
			cJSON_AddNumberToObject(values, m->cfg->profile->points[i].name,
				r->values[i]);
	cJSON_AddStringToObject(obj, "read_at", read_at);
	if (job->late)
		cJSON_AddBoolToObject(obj, "late", true);
	if (r->quality != MH_QUALITY_GOOD)
		cJSON_AddStringToObject(obj, "error", r->error);
	cJSON_AddStringToObject(obj, "bus", m->bus_cfg->name);
	cJSON_AddNumberToObject(obj, "duration_ms", r->duration_ms);
	text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	assert_non_null(text);
	return text;
}

/*
 * A reading's record is written without cJSON, character for character as
 * cJSON prints it: escapes in names and texts, numbers of every kind, the
 * optional keys, a record longer than the writer's first buffer.
 */
static void test_reading_json_is_what_cjson_prints(void **state)
{
	struct fixture *f = *state;
	static const double nums[] = { 1206.42, -0.0, 1e300, 5e-324, 2147483648.0, 1.0 / 3,
		0.000012, 123456789012345678.0, 230.1, 0 };
	static char names[40][80];
	struct mh_point points[40];
	struct mh_profile profile = { .name = "p", .points = points };
	struct mh_meter_config meter_cfg = { .id = "m-\"1\"\\\x01\t\xe7\x94\xb5",
		.profile = &profile };
	struct mh_bus_config bus_cfg = { .name = "rs485\n\x1f/1" };
	struct mh_meter meter = { .cfg = &meter_cfg, .bus_cfg = &bus_cfg };

	for (size_t i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "point_%zu%s_with_a_long_name_\"q\"_\\b\b",
			i, i % 3 ? "" : "\x7f\r\f");
		points[i] = (struct mh_point){ .name = names[i] };
	}
	for (size_t n = 0; n <= 40; n += 5) {
		for (int variant = 0; variant < 3; variant++) {
			profile.n_points = n;
			struct mh_job *job = mh_job_new_read(&meter, 0, n, NULL, NULL);
			assert_non_null(job);
			job->due_ms = 1795276800000LL + (int64_t)n * 1000;
			job->interval_ms = 900000;
			job->reading.read_at_ms = job->due_ms + 1234;
			job->reading.duration_ms = 87u * (unsigned)n;
			for (size_t i = 0; i < n; i++) {
				job->reading.values[i] = nums[i % 10] * (double)(i + 1);
				job->reading.valid[i] = (i + (size_t)variant) % 4 != 0;
			}
			job->late = variant == 1;
			if (variant == 2) {
				job->reading.quality = MH_QUALITY_ERROR;
				strcpy(job->reading.error, "meter refused \"0001FF00\": \\ \x02 code 4");
			}
			uint64_t seq = mh_outbox_next_seq(f->ob);
			char ts[40], read_at[40];
			mh_schedule_format_boundary(job->due_ms, job->interval_ms, ts, sizeof(ts));
			mh_schedule_format(job->reading.read_at_ms, true, read_at, sizeof(read_at));
			char *want = cjson_reading(job, seq, ts, read_at);
			assert_int_equal(mh_records_reading(f->ob, job), 0);
			f->records = 0;
			assert_int_equal(mh_db_commit(f->db), 0);
			assert_true(mh_outbox_scan(f->ob, seq - 1, 1, keep_last, f) == 1);
			assert_string_equal(f->payload, want);
			free(want);
			mh_job_free(job);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nan_reading_is_an_error_not_a_null, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_infinite_reading_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_reading_keeps_its_reason, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_finite_reading_is_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_with_nonfinite_number_is_refused, setup,
			teardown),
		cmocka_unit_test(test_numbers_print_as_cjson_prints_them),
		cmocka_unit_test_setup_teardown(test_reading_json_is_what_cjson_prints, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
