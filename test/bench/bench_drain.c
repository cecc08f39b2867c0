// SPDX-License-Identifier: MIT
/*
 * Drain benchmark: how fast the outbox empties into a broker once the link
 * is back, against a minimal paho async QoS 1 publisher sending the same
 * payloads with the same window, measured in the same run.
 *
 *   bench_drain URI RECORDS WINDOW STORE_DIR
 *
 * Prints records/s of both and the ratio meterhub / baseline.
 */
#include <MQTTAsync.h>
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config.h"
#include "db.h"
#include "outbox.h"
#include "uplink.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A reading as the daemon stores it: same size and shape. */
static size_t payload(uint64_t seq, char *buf, size_t cap)
{
	return (size_t)snprintf(buf, cap,
		"{\"seq\":%llu,\"meter\":\"m-%04llu\",\"ts\":\"2026-11-22T03:45:00Z\","
		"\"quality\":\"good\",\"values\":{\"energy_import_kwh\":12345.67,"
		"\"energy_export_kwh\":12.5,\"voltage_a_v\":230.1,\"current_a_a\":5.123,"
		"\"power_kw\":3.5,\"power_factor\":0.985,\"frequency_hz\":50.01},"
		"\"read_at\":\"2026-11-22T03:45:00.021Z\",\"bus\":\"rs485-1\",\"duration_ms\":21}",
		(unsigned long long)seq, (unsigned long long)(seq % 64));
}

/* ---- meterhub: fill the store, then let the uplink drain it ---------- */

struct drain {
	struct mh_db *db;
	struct mh_outbox *store;
	struct mh_uplink *up;
	uv_timer_t poll;
	double done_at;
};

static void closed(void *ud)
{
	struct drain *d = ud;
	uv_close((uv_handle_t *)&d->poll, NULL);
}

static void on_poll(uv_timer_t *t)
{
	struct drain *d = t->data;
	struct mh_outbox_stats st;

	if (mh_outbox_stats(d->store, &st) == 0 && st.records == 0) {
		d->done_at = now_s();
		uv_timer_stop(t);
		mh_uplink_stop(d->up, 1000, closed, d);
	}
}

static double run_meterhub(const char *uri, uint64_t n, unsigned window, const char *dir)
{
	struct mh_config cfg = { 0 };
	struct drain d = { 0 };
	uv_loop_t loop;
	char buf[512];
	double start;

	cfg.mqtt.uri = uri;
	cfg.mqtt.client_id = "bench-meterhub";
	cfg.mqtt.topic_prefix = "bench/meterhub";
	cfg.mqtt.keepalive_s = 30;
	cfg.mqtt.window = window;
	if (mh_db_open(dir, 1ull << 30, &d.db) < 0 || mh_outbox_open(d.db, 1ull << 30, &d.store) < 0)
		exit(1);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = payload(mh_outbox_next_seq(d.store), buf, sizeof(buf));
		if (mh_outbox_append(d.store, MH_RECORD_READING, 0, "reading/m-0001", buf, len) < 0)
			exit(1);
		if (i % 10000 == 9999)
			mh_db_commit(d.db);
	}
	mh_db_commit(d.db);

	uv_loop_init(&loop);
	uv_timer_init(&loop, &d.poll);
	d.poll.data = &d;
	start = now_s();
	if (mh_uplink_start(&loop, &cfg, d.store, 0, NULL, NULL, &d.up) < 0)
		exit(1);
	uv_timer_start(&d.poll, on_poll, 10, 10);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	mh_outbox_free(d.store);
	mh_db_close(d.db);
	return (double)n / (d.done_at - start);
}

/* ---- baseline: the least a QoS 1 publisher can do -------------------- */

static sem_t window_sem, connected_sem;
static volatile uint64_t acked;

static void on_ok(void *ctx, MQTTAsync_successData *r)
{
	__atomic_add_fetch(&acked, 1, __ATOMIC_RELAXED);
	sem_post(&window_sem);
}

static void on_fail(void *ctx, MQTTAsync_failureData *r)
{
	fprintf(stderr, "baseline publish failed\n");
	exit(1);
}

static void on_connect(void *ctx, MQTTAsync_successData *r)
{
	sem_post(&connected_sem);
}

static void on_connect_fail(void *ctx, MQTTAsync_failureData *r)
{
	fprintf(stderr, "baseline cannot connect\n");
	exit(1);
}

static int on_msg(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static double run_baseline(const char *uri, uint64_t n, unsigned window)
{
	MQTTAsync client;
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	char buf[512];
	double start;

	sem_init(&window_sem, 0, window);
	sem_init(&connected_sem, 0, 0);
	/* paho's tracing off, as the uplink has it: the same library cost on both sides. */
	MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
	MQTTAsync_create(&client, uri, "bench-baseline", MQTTCLIENT_PERSISTENCE_NONE, NULL);
	MQTTAsync_setCallbacks(client, NULL, NULL, on_msg, NULL);
	co.cleansession = 1;
	co.maxInflight = (int)window;
	co.onSuccess = on_connect;
	co.onFailure = on_connect_fail;
	MQTTAsync_connect(client, &co);
	sem_wait(&connected_sem);

	start = now_s();
	for (uint64_t i = 1; i <= n; i++) {
		MQTTAsync_message msg = MQTTAsync_message_initializer;
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		size_t len = payload(i, buf, sizeof(buf));

		sem_wait(&window_sem);
		msg.payload = buf;
		msg.payloadlen = (int)len;
		msg.qos = 1;
		ro.onSuccess = on_ok;
		ro.onFailure = on_fail;
		while (MQTTAsync_sendMessage(client, "bench/baseline/reading/m-0001", &msg, &ro) !=
			MQTTASYNC_SUCCESS)
			;
	}
	while (__atomic_load_n(&acked, __ATOMIC_RELAXED) < n) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	double rate = (double)n / (now_s() - start);
	MQTTAsync_disconnect(client, NULL);
	MQTTAsync_destroy(&client);
	return rate;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: bench_drain URI RECORDS WINDOW STORE_DIR\n");
		return 2;
	}
	const char *uri = argv[1];
	uint64_t n = strtoull(argv[2], NULL, 10);
	unsigned window = (unsigned)strtoul(argv[3], NULL, 10);

	double base = run_baseline(uri, n, window);
	double ours = run_meterhub(uri, n, window, argv[4]);
	printf("drain: %llu records, window %u\n", (unsigned long long)n, window);
	printf("  baseline paho QoS 1 publisher: %10.0f records/s\n", base);
	printf("  meterhub store -> uplink:      %10.0f records/s\n", ours);
	printf("  ratio meterhub/baseline: %.2f (target >= 0.95)\n", ours / base);
	return 0;
}
