// SPDX-License-Identifier: MIT
/*
 * The bus thread (gateway/bus.h) on a real pty with no meter behind it, so
 * every read costs exactly one response timeout: a priority job starts
 * after at most the job in progress and before every scheduled one; jobs of
 * one kind never swap; a port whose far end goes away (an adapter pulled
 * out) is reported closed, counted as lost, and jobs come back at once
 * saying the port is unavailable; stopping cancels what did not run.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

#include "bus.h"
#include "clock.h"

struct line {
	struct pty pty;
	struct mh_point point;
	struct mh_profile profile;
	struct mh_meter_config meter;
	struct mh_bus_config bus;
	struct mh_queue done;
};

static void line_open(struct line *l, unsigned timeout_ms)
{
	memset(l, 0, sizeof(*l));
	pty_open(&l->pty);
	l->point = (struct mh_point){ .name = "energy_import_kwh", .di = 0x00010000, .has_di = true };
	l->profile = (struct mh_profile){ .name = "p", .protocol = MH_PROTO_DLT645,
		.points = &l->point, .n_points = 1 };
	l->meter = (struct mh_meter_config){ .id = "m-1", .address = "000000000001",
		.dlt645_addr = { 1, 0, 0, 0, 0, 0 }, .profile = &l->profile };
	l->bus = (struct mh_bus_config){ .name = "rs485-test", .device = l->pty.slave, .baud = 9600,
		.parity = MH_PARITY_NONE, .protocol = MH_PROTO_DLT645, .timeout_ms = timeout_ms,
		.meters = &l->meter, .n_meters = 1 };
	assert_int_equal(mh_queue_init(&l->done, NULL), 0);
}

static void done_noop(struct mh_job *job)
{
}

static struct mh_job *job(int64_t id)
{
	struct mh_job *j = mh_job_new_read(NULL, 0, 1, done_noop, NULL);

	assert_non_null(j);
	j->due_ms = id;
	return j;
}

/* Collect @n finished jobs (waiting up to 10 s), their ids in order into @ids. */
static size_t collect(struct line *l, size_t n, int64_t *ids, struct mh_job **keep)
{
	size_t got = 0;
	int64_t deadline = mh_clock_mono_ms() + 10000;

	while (got < n && mh_clock_mono_ms() < deadline) {
		struct mh_queue_node *node = mh_queue_take_all(&l->done);
		while (node) {
			struct mh_queue_node *next = node->next;
			struct mh_job *j = (struct mh_job *)node;
			if (got < n) {
				ids[got] = j->due_ms;
				if (keep)
					keep[got] = j;
				else
					mh_job_free(j);
				got++;
			} else {
				mh_job_free(j);
			}
			node = next;
		}
		sleep_ms(5);
	}
	return got;
}

static void wait_port_open(struct mh_bus *bus)
{
	struct mh_bus_port port = { 0 };

	for (int i = 0; i < 400 && !port.open; i++) {
		mh_bus_port(bus, &port);
		sleep_ms(5);
	}
	assert_true(port.open);
}

static void test_priority_jobs_overtake_scheduled_ones(void **state)
{
	struct line l;
	struct mh_bus *bus;
	int64_t ids[7];
	const int64_t want[7] = { 1, 101, 102, 2, 3, 4, 5 };

	line_open(&l, 300);
	assert_int_equal(mh_bus_start(&l.bus, &l.done, &bus), 0);
	wait_port_open(bus);
	mh_bus_submit(bus, job(1), false);
	/* Wait until job 1 is on the wire, then queue behind it. */
	for (int i = 0; i < 200 && mh_bus_backlog(bus) > 0; i++)
		sleep_ms(1);
	sleep_ms(20);
	for (int64_t id = 2; id <= 5; id++)
		mh_bus_submit(bus, job(id), false);
	mh_bus_submit(bus, job(101), true);
	mh_bus_submit(bus, job(102), true);
	assert_int_equal(mh_bus_backlog(bus), 6);
	assert_int_equal(collect(&l, 7, ids, NULL), 7);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(ids[i], want[i]);
	mh_bus_stop(bus);
	mh_queue_deinit(&l.done);
	close(l.pty.master);
}

static void test_vanished_port_is_reported(void **state)
{
	struct line l;
	struct mh_bus *bus;
	struct mh_bus_port port;
	struct mh_job *got[2];
	int64_t ids[2];

	line_open(&l, 50);
	assert_int_equal(mh_bus_start(&l.bus, &l.done, &bus), 0);
	wait_port_open(bus);
	/* The adapter is pulled out: the far end of the line is gone. */
	close(l.pty.master);
	mh_bus_submit(bus, job(1), false);
	assert_int_equal(collect(&l, 1, ids, got), 1);
	assert_int_equal(got[0]->reading.quality, MH_QUALITY_ERROR);
	assert_non_null(strstr(got[0]->reading.error, "port"));
	mh_job_free(got[0]);
	mh_bus_port(bus, &port);
	assert_false(port.open);
	assert_int_equal(port.losses, 1);
	assert_true(port.last_error < 0);
	/* While it is gone, a job comes back at once, saying why. */
	int64_t t0 = mh_clock_mono_ms();
	mh_bus_submit(bus, job(2), false);
	assert_int_equal(collect(&l, 1, ids, got), 1);
	assert_true(mh_clock_mono_ms() - t0 < 1500);
	assert_non_null(strstr(got[0]->reading.error, "unavailable"));
	mh_job_free(got[0]);
	mh_bus_stop(bus);
	mh_queue_deinit(&l.done);
}

/*
 * What the line did is counted by class on the bus thread and shown with
 * the port: a silent meter's timeouts, noise found before a request; and
 * it is kept when the port fails and is closed.
 */
static void test_line_counters_survive_the_port(void **state)
{
	static const uint8_t noise[] = { 0x00, 0x12, 0x34 };
	struct line l;
	struct mh_bus *bus;
	struct mh_bus_port port;
	int64_t ids[1];

	line_open(&l, 50);
	assert_int_equal(mh_bus_start(&l.bus, &l.done, &bus), 0);
	wait_port_open(bus);
	mh_bus_submit(bus, job(1), false);
	assert_int_equal(collect(&l, 1, ids, NULL), 1);
	mh_bus_port(bus, &port);
	assert_int_equal(port.link.frames, 1);
	assert_int_equal(port.link.timeouts, 1);
	assert_int_equal(port.link.garbage_bytes, 0);

	/* Noise on the line between two reads: found, counted, never taken for a reply. */
	assert_int_equal(write(l.pty.master, noise, sizeof(noise)), (ssize_t)sizeof(noise));
	sleep_ms(20);
	mh_bus_submit(bus, job(2), false);
	assert_int_equal(collect(&l, 1, ids, NULL), 1);
	mh_bus_port(bus, &port);
	assert_int_equal(port.link.frames, 2);
	assert_int_equal(port.link.timeouts, 2);
	assert_int_equal(port.link.garbage_bytes, 3);

	/* The adapter is pulled out: the port closes, what it counted stays. */
	close(l.pty.master);
	mh_bus_submit(bus, job(3), false);
	assert_int_equal(collect(&l, 1, ids, NULL), 1);
	mh_bus_port(bus, &port);
	assert_false(port.open);
	assert_int_equal(port.link.frames, 2);
	assert_int_equal(port.link.timeouts, 2);
	assert_int_equal(port.link.garbage_bytes, 3);
	mh_bus_stop(bus);
	mh_queue_deinit(&l.done);
}

static void test_stop_cancels_what_did_not_run(void **state)
{
	struct line l;
	struct mh_bus *bus;
	struct mh_job *got[4];
	int64_t ids[4];
	size_t canceled = 0;

	line_open(&l, 300);
	assert_int_equal(mh_bus_start(&l.bus, &l.done, &bus), 0);
	wait_port_open(bus);
	for (int64_t id = 1; id <= 4; id++)
		mh_bus_submit(bus, job(id), id == 4);
	sleep_ms(50);
	mh_bus_stop(bus);
	assert_int_equal(collect(&l, 4, ids, got), 4);
	for (size_t i = 0; i < 4; i++) {
		canceled += got[i]->canceled;
		mh_job_free(got[i]);
	}
	/* The one in progress ran out its frame; the others never went out. */
	assert_true(canceled >= 3);
	mh_queue_deinit(&l.done);
	close(l.pty.master);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_priority_jobs_overtake_scheduled_ones),
		cmocka_unit_test(test_vanished_port_is_reported),
		cmocka_unit_test(test_line_counters_survive_the_port),
		cmocka_unit_test(test_stop_cancels_what_did_not_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
