// SPDX-License-Identifier: MIT
/*
 * The read-only view of a store (gateway/inspect.h) that meterhub-ctl
 * prints, on a store the real outbox wrote: a walk gives every record once,
 * in seq order, across many read transactions (more records and more bytes
 * than one chunk); the kind, meter and seq filters select what they say,
 * daily and monthly freezes apart, events and command results by the meter
 * in their payload; status counts the backlog by kind, finds each meter's
 * newest good reading (not a newer timeout), puts meters on their
 * configured buses and the others after them, and says no daemon holds the
 * store. Nothing here needs a daemon; the integration tests run one.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#include "config.h"
#include "db.h"
#include "inspect.h"
#include "outbox.h"

#define MAX_BYTES (64ull << 20)
/* More than one chunk of a walk (1024 records, 1 MiB) in both records and bytes. */
#define READINGS 3000
#define PAD 600

static int setup(void **state)
{
	return tmpdir_setup(state, "mh-test-inspect");
}

static int teardown(void **state)
{
	return tmpdir_teardown(state);
}

struct expected {
	uint64_t n;                 /* records written */
	uint64_t by_kind[MH_INSPECT_KINDS];
	int64_t good_ms[3];         /* newest good reading of m-1, m-2, m-9 */
	uint64_t m2_records;        /* records of m-2: its readings and its event */
	uint64_t monthly_seq;
};

static void put(struct mh_outbox *ob, struct expected *e, enum mh_record_type type,
	enum mh_inspect_kind kind, int64_t ms, const char *subtopic, const char *payload)
{
	assert_int_equal(mh_outbox_append(ob, type, ms, subtopic, payload, strlen(payload)), 0);
	e->n++;
	e->by_kind[kind]++;
}

/* A store as the daemon leaves it: readings of three meters and one record of each other kind. */
static void write_store(const char *path, struct expected *e)
{
	struct mh_db *db;
	struct mh_outbox *ob;
	char payload[PAD + 200], pad[PAD + 1];

	memset(e, 0, sizeof(*e));
	memset(pad, 'x', PAD);
	pad[PAD] = '\0';
	assert_int_equal(mh_db_open(path, MAX_BYTES, &db), 0);
	assert_int_equal(mh_outbox_open(db, MAX_BYTES, &ob), 0);
	for (int i = 0; i < READINGS; i++) {
		static const char *const meters[] = { "m-1", "m-2", "m-9" };
		static const char *const buses[] = { "rs485-1", "rs485-2", "rs485-old" };
		int m = i % 3;
		/* m-2's last readings time out: its newest good one is older. */
		bool good = !(m == 1 && i >= READINGS - 30);
		int64_t ms = 1796000000000 + i * 100;
		char sub[32];

		snprintf(sub, sizeof(sub), "reading/%s", meters[m]);
		snprintf(payload, sizeof(payload),
			"{\"seq\":%llu,\"meter\":\"%s\",\"quality\":\"%s\",\"bus\":\"%s\","
			"\"pad\":\"%s\"}",
			(unsigned long long)mh_outbox_next_seq(ob), meters[m],
			good ? "good" : "timeout", buses[m], pad);
		put(ob, e, MH_RECORD_READING, MH_INSPECT_READING, ms, sub, payload);
		if (good)
			e->good_ms[m] = ms;
		if (m == 1)
			e->m2_records++;
		if (i % 500 == 0)
			assert_int_equal(mh_outbox_flush_acks(ob), 0);
	}
	put(ob, e, MH_RECORD_INTERVAL, MH_INSPECT_INTERVAL, 1, "interval/m-1", "{\"seq\":0}");
	put(ob, e, MH_RECORD_DAILY, MH_INSPECT_DAILY, 1, "daily/m-1", "{\"seq\":0}");
	e->monthly_seq = mh_outbox_next_seq(ob);
	put(ob, e, MH_RECORD_DAILY, MH_INSPECT_MONTHLY, 1, "monthly/m-1", "{\"seq\":0}");
	put(ob, e, MH_RECORD_EVENT, MH_INSPECT_EVENT, 1, "event",
		"{\"type\":\"meter_reset\",\"meter\":\"m-2\"}");
	e->m2_records++;
	put(ob, e, MH_RECORD_EVENT, MH_INSPECT_EVENT, 1, "event", "{\"type\":\"clock_step\"}");
	put(ob, e, MH_RECORD_CMD_RESULT, MH_INSPECT_CMD_RESULT, 1, "cmd/result",
		"{\"id\":\"c-1\",\"meter\":\"m-1\"}");
	assert_int_equal(mh_outbox_flush_acks(ob), 0);
	mh_outbox_free(ob);
	mh_db_close(db);
}

struct seen {
	uint64_t n, last_seq;
	uint64_t by_kind[MH_INSPECT_KINDS];
	bool ordered, bad_payload;
	const char *meter; /* every record must be this meter's, when set */
};

static int visit(void *ud, const struct mh_inspect_record *r)
{
	struct seen *s = ud;

	s->ordered &= r->seq > s->last_seq;
	s->last_seq = r->seq;
	s->n++;
	s->by_kind[r->kind]++;
	s->bad_payload |= r->payload[0] != '{' || r->payload[r->payload_len - 1] != '}' ||
			  strlen(r->payload) != r->payload_len;
	if (s->meter && !strstr(r->payload, s->meter))
		s->bad_payload = true;
	return 0;
}

static struct seen walk(struct mh_inspect *in, struct mh_inspect_filter f)
{
	struct seen s = { .ordered = true, .meter = f.meter };

	assert_int_equal(mh_inspect_each(in, &f, visit, &s), 0);
	assert_true(s.ordered);
	assert_false(s.bad_payload);
	return s;
}

static struct mh_inspect *open_view(const char *path)
{
	struct mh_inspect *in = NULL;
	char why[256] = "";

	assert_int_equal(mh_inspect_open(path, MAX_BYTES, &in, why, sizeof(why)), 0);
	return in;
}

static void test_walk_and_filters(void **state)
{
	struct tmpdir *f = *state;
	struct expected e;
	struct mh_inspect *in;
	struct seen s;

	write_store(f->path, &e);
	in = open_view(f->path);

	s = walk(in, (struct mh_inspect_filter){ .kind = -1 });
	assert_int_equal(s.n, e.n);
	assert_int_equal(s.last_seq, e.n);
	for (int k = 0; k < MH_INSPECT_KINDS; k++)
		assert_int_equal(s.by_kind[k], e.by_kind[k]);

	s = walk(in, (struct mh_inspect_filter){ .kind = MH_INSPECT_MONTHLY });
	assert_int_equal(s.n, 1);
	assert_int_equal(s.last_seq, e.monthly_seq);
	s = walk(in, (struct mh_inspect_filter){ .kind = MH_INSPECT_DAILY });
	assert_int_equal(s.n, 1);

	/* A meter: its readings by their topic, its event by the payload, nothing else. */
	s = walk(in, (struct mh_inspect_filter){ .kind = -1, .meter = "m-2" });
	assert_int_equal(s.n, e.m2_records);
	assert_int_equal(s.by_kind[MH_INSPECT_EVENT], 1);
	s = walk(in, (struct mh_inspect_filter){ .kind = MH_INSPECT_CMD_RESULT, .meter = "m-1" });
	assert_int_equal(s.n, 1);
	s = walk(in, (struct mh_inspect_filter){ .kind = -1, .meter = "m-" });
	assert_int_equal(s.n, 0);

	/* Seqs, inclusive, across a chunk's edge. */
	s = walk(in, (struct mh_inspect_filter){ .kind = -1, .from = 1000, .to = 2100 });
	assert_int_equal(s.n, 1101);
	assert_int_equal(s.last_seq, 2100);
	s = walk(in, (struct mh_inspect_filter){ .kind = -1, .from = e.n, .to = e.n + 100 });
	assert_int_equal(s.n, 1);
	s = walk(in, (struct mh_inspect_filter){ .kind = -1, .from = e.n + 1 });
	assert_int_equal(s.n, 0);
	mh_inspect_free(in);
}

static const char CONFIG[] =
	"{\"gateway\": {\"id\": \"gw-1\", \"timezone\": \"Asia/Shanghai\"},\n"
	" \"store\": {\"path\": \"/nonexistent/store\"},\n"
	" \"mqtt\": {\"uri\": \"tcp://127.0.0.1:1883\"},\n"
	" \"schedule\": {\"interval\": \"15m\"},\n"
	" \"buses\": [\n"
	"  {\"name\": \"rs485-1\", \"device\": \"/dev/null\", \"protocol\": \"modbus\",\n"
	"   \"meters\": [{\"id\": \"m-1\", \"address\": 1, \"profile\": \"eastron-sdm120\"}]},\n"
	"  {\"name\": \"rs485-2\", \"device\": \"/dev/zero\", \"protocol\": \"modbus\",\n"
	"   \"meters\": [{\"id\": \"m-2\", \"address\": 2, \"profile\": \"eastron-sdm120\"},\n"
	"               {\"id\": \"m-3\", \"address\": 3, \"profile\": \"eastron-sdm120\"}]}]}\n";

static void test_status(void **state)
{
	struct tmpdir *f = *state;
	struct mh_inspect_status st;
	struct mh_config *cfg = NULL;
	struct expected e;
	struct mh_inspect *in;
	static const char *const ids[] = { "m-1", "m-2", "m-3", "m-9" };
	static const char *const buses[] = { "rs485-1", "rs485-2", "rs485-old" };

	assert_int_equal(
		mh_config_load_string("test.yaml", CONFIG, strlen(CONFIG), NULL, NULL, &cfg), 0);
	write_store(f->path, &e);
	in = open_view(f->path);
	assert_int_equal(mh_inspect_status(in, cfg, &st), 0);

	assert_int_equal(st.held, 0);
	assert_int_equal(st.backlog, e.n);
	for (int k = 0; k < MH_INSPECT_KINDS; k++)
		assert_int_equal(st.by_kind[k], e.by_kind[k]);
	assert_int_equal(st.oldest_seq, 1);
	assert_int_equal(st.oldest_ms, 1796000000000);
	assert_int_equal(st.newest_seq, e.n);
	assert_int_equal(st.next_seq, e.n + 1);
	assert_int_equal(st.max_bytes, MAX_BYTES);
	assert_true(st.used_bytes > (uint64_t)READINGS * PAD);
	assert_true(st.map_used_bytes >= st.used_bytes && st.map_bytes > st.map_used_bytes);

	/* Configured meters first in config order, then the one it no longer names. */
	assert_int_equal(st.n_meters, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(st.meters[i].id, ids[i]);
	assert_true(st.meters[0].configured && !st.meters[3].configured);
	assert_int_equal(st.meters[0].reading_ms, e.good_ms[0]);
	assert_int_equal(st.meters[1].reading_ms, e.good_ms[1]);
	assert_int_equal(st.meters[2].reading_ms, 0);
	assert_int_equal(st.meters[3].reading_ms, e.good_ms[2]);
	assert_string_equal(st.meters[3].bus, "rs485-old");

	assert_int_equal(st.n_buses, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(st.buses[i].name, buses[i]);
	assert_int_equal(st.buses[1].last_good_ms, e.good_ms[1]);
	assert_string_equal(st.buses[1].meter, "m-2");
	assert_false(st.buses[1].from_builder);
	assert_true(st.buses[1].configured && !st.buses[2].configured);
	mh_inspect_status_deinit(&st);

	/* Without a configuration: the buses the readings name. */
	assert_int_equal(mh_inspect_status(in, NULL, &st), 0);
	assert_int_equal(st.n_meters, 3);
	assert_int_equal(st.n_buses, 3);
	mh_inspect_status_deinit(&st);
	mh_inspect_free(in);
	mh_config_free(cfg);
}

static void test_kind_names(void **state)
{
	(void)state;
	for (int k = 0; k < MH_INSPECT_OTHER; k++)
		assert_int_equal(
			mh_inspect_kind_parse(mh_inspect_kind_name((enum mh_inspect_kind)k)), k);
	assert_string_equal(mh_inspect_kind_name(MH_INSPECT_CMD_RESULT), "cmd_result");
	assert_int_equal(mh_inspect_kind_parse("cmd/result"), -EINVAL);
	assert_int_equal(mh_inspect_kind_parse("other"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_walk_and_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test(test_kind_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
