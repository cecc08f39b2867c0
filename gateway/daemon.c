// SPDX-License-Identifier: MIT
#include "daemon.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "bus.h"
#include "health.h"
#include "log.h"
#include "schedule.h"
#include "store.h"
#include "uplink.h"

/* How long shutdown waits for the broker to acknowledge what is in flight. */
#define STOP_FLUSH_MS 3000

struct mh_daemon {
	uv_loop_t loop;
	const struct mh_config *cfg;
	struct mh_store *store;
	struct mh_uplink *uplink;
	struct mh_bus **buses;
	bool **pending; /* [bus][meter]: a read is queued or running */
	struct mh_queue results;
	uv_async_t results_wake;
	uv_timer_t tick;
	uv_timer_t health_timer;
	struct mh_health *health;
	uv_signal_t sigint, sigterm, sighup;
	int64_t next_boundary;
	int64_t started_ms;
	bool stopping;
	int exit_code;
};

/* ---- records: built here, stored, published by the uplink ------------ */

/* A record object that starts with the seq the store will give it. */
static cJSON *record_begin(struct mh_daemon *d)
{
	cJSON *obj = cJSON_CreateObject();

	if (obj)
		cJSON_AddNumberToObject(obj, "seq", (double)mh_store_next_seq(d->store));
	return obj;
}

/* Store @obj (consumed) as a record of @type under @subtopic. Returns 0 or -errno. */
static int record_store(struct mh_daemon *d, enum mh_record_type type, const char *subtopic,
	cJSON *obj, int64_t created_ms)
{
	char *json = obj ? cJSON_PrintUnformatted(obj) : NULL;
	int rc = -ENOMEM;

	cJSON_Delete(obj);
	if (json)
		rc = mh_store_append(d->store, type, created_ms, subtopic, json, strlen(json));
	if (rc < 0)
		mh_log_err(STORE, "%s record not stored: %s", subtopic, strerror(-rc));
	free(json);
	return rc;
}

static void store_reading(struct mh_daemon *d, const struct mh_reading *r)
{
	const struct mh_meter_config *m = &d->cfg->buses[r->bus].meters[r->meter];
	cJSON *obj = record_begin(d), *values;
	char ts[40], read_at[40], subtopic[96];

	mh_schedule_format(r->boundary_ms, false, ts, sizeof(ts));
	mh_schedule_format(r->read_at_ms, true, read_at, sizeof(read_at));
	cJSON_AddStringToObject(obj, "meter", m->id);
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "quality", mh_quality_name(r->quality));
	values = cJSON_AddObjectToObject(obj, "values");
	for (size_t i = 0; values && i < r->n_values; i++)
		if (r->valid[i])
			cJSON_AddNumberToObject(values, m->profile->points[i].name, r->values[i]);
	cJSON_AddStringToObject(obj, "read_at", read_at);
	if (r->quality != MH_QUALITY_GOOD)
		cJSON_AddStringToObject(obj, "error", r->error);
	cJSON_AddStringToObject(obj, "bus", d->cfg->buses[r->bus].name);
	cJSON_AddNumberToObject(obj, "duration_ms", r->duration_ms);
	snprintf(subtopic, sizeof(subtopic), "reading/%s", m->id);
	if (record_store(d, MH_RECORD_READING, subtopic, obj, r->read_at_ms) == 0 &&
		r->quality != MH_QUALITY_GOOD)
		mh_log_warn(BUS, "%s: meter %s: %s: %s", d->cfg->buses[r->bus].name, m->id,
			mh_quality_name(r->quality), r->error);
}

/* Say what the store gave up: a drop is never silent. */
static void store_drop_event(struct mh_daemon *d, const struct mh_store_drops *drops)
{
	static const char *const names[] = {
		[MH_RECORD_READING] = "reading",
		[MH_RECORD_INTERVAL] = "interval",
		[MH_RECORD_DAILY] = "daily",
		[MH_RECORD_EVENT] = "event",
		[MH_RECORD_CMD_RESULT] = "cmd/result",
	};
	int64_t now = mh_schedule_now_ms();
	cJSON *obj = record_begin(d), *counts;
	uint64_t total = 0;
	char ts[40];

	mh_schedule_format(now, false, ts, sizeof(ts));
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "type", "store_dropped");
	counts = cJSON_AddObjectToObject(obj, "dropped");
	for (size_t t = MH_RECORD_READING; counts && t <= MH_RECORD_CMD_RESULT; t++) {
		if (drops->by_type[t])
			cJSON_AddNumberToObject(counts, names[t], (double)drops->by_type[t]);
		total += drops->by_type[t];
	}
	if (total) {
		cJSON_AddNumberToObject(obj, "first_seq", (double)drops->first_seq);
		cJSON_AddNumberToObject(obj, "last_seq", (double)drops->last_seq);
	}
	cJSON_AddNumberToObject(obj, "lost", (double)drops->lost);
	mh_log_warn(STORE, "store full: dropped %llu records (seq %llu-%llu), %llu lost",
		(unsigned long long)total, (unsigned long long)drops->first_seq,
		(unsigned long long)drops->last_seq, (unsigned long long)drops->lost);
	mh_health_note_drops(d->health, drops);
	record_store(d, MH_RECORD_EVENT, "event", obj, now);
}

/* One synced commit for everything of this loop turn, then hand it to the uplink. */
static void commit(struct mh_daemon *d)
{
	struct mh_store_drops drops;
	int rc = mh_store_commit(d->store);

	if (rc < 0)
		mh_log_err(STORE, "commit failed: %s", strerror(-rc));
	if (mh_store_take_drops(d->store, &drops)) {
		store_drop_event(d, &drops);
		rc = mh_store_commit(d->store);
		if (rc < 0)
			mh_log_err(STORE, "commit failed: %s", strerror(-rc));
	}
	if (d->uplink)
		mh_uplink_pump(d->uplink);
}

static void drain_results(struct mh_daemon *d)
{
	struct mh_queue_node *node = mh_queue_take_all(&d->results);

	if (!node)
		return;
	while (node) {
		struct mh_queue_node *next = node->next;
		struct mh_reading *r = (struct mh_reading *)node;
		store_reading(d, r);
		mh_health_note(d->health, r);
		d->pending[r->bus][r->meter] = false;
		mh_reading_free(r);
		node = next;
	}
	commit(d);
}

static void on_results(uv_async_t *a)
{
	drain_results(a->data);
}

/* ---- the schedule ---------------------------------------------------- */

static void submit_all(struct mh_daemon *d, int64_t boundary)
{
	for (size_t b = 0; b < d->cfg->n_buses; b++) {
		const struct mh_bus_config *bus = &d->cfg->buses[b];
		for (size_t i = 0; i < bus->n_meters; i++) {
			struct mh_reading *r;
			if (d->pending[b][i]) {
				/* The bus is behind: do not pile up reads of the same meter. */
				mh_log_warn(SCHED, "%s: meter %s still being read; skipping this boundary",
					bus->name, bus->meters[i].id);
				continue;
			}
			r = mh_reading_new(bus->meters[i].profile->n_points);
			if (!r) {
				mh_log_err(SCHED, "out of memory: meter %s not read",
					bus->meters[i].id);
				continue;
			}
			r->bus = b;
			r->meter = i;
			r->boundary_ms = boundary;
			d->pending[b][i] = true;
			mh_bus_submit(d->buses[b], r);
		}
	}
}

static void on_tick(uv_timer_t *t)
{
	struct mh_daemon *d = t->data;
	int64_t now = mh_schedule_now_ms();

	if (now >= d->next_boundary) {
		submit_all(d, d->next_boundary);
		if (now - d->next_boundary > (int64_t)d->cfg->schedule.interval_ms)
			mh_log_warn(SCHED, "clock jumped or loop stalled: %lld ms late",
				(long long)(now - d->next_boundary));
		d->next_boundary = mh_schedule_next(now, d->cfg->schedule.interval_ms);
	}
	/* Re-armed from the wall clock each time, so timer drift never accumulates. */
	uv_timer_start(&d->tick, on_tick, (uint64_t)(d->next_boundary - mh_schedule_now_ms() + 1),
		0);
}

static void on_health(uv_timer_t *t)
{
	struct mh_daemon *d = t->data;
	size_t backlog[d->cfg->n_buses + 1];
	struct mh_store_stats st;
	char *json;

	for (size_t b = 0; b < d->cfg->n_buses; b++)
		backlog[b] = mh_bus_backlog(d->buses[b]);
	if (mh_store_stats(d->store, &st) < 0)
		memset(&st, 0, sizeof(st));
	struct mh_health_snapshot snap = {
		.now_ms = mh_schedule_now_ms(),
		.started_ms = d->started_ms,
		.backlog = backlog,
		.store = &st,
		.connected = mh_uplink_connected(d->uplink),
		.in_flight = mh_uplink_in_flight(d->uplink),
	};
	json = mh_health_report(d->health, &snap);
	if (json && mh_uplink_publish_volatile(d->uplink, "health", json, true) < 0)
		mh_log_debug(MAIN, "health not published (broker not connected)");
	free(json);
}

/* ---- shutdown -------------------------------------------------------- */

static void on_uplink_closed(void *ud)
{
	struct mh_daemon *d = ud;

	d->uplink = NULL;
	uv_close((uv_handle_t *)&d->results_wake, NULL);
}

static void stop(struct mh_daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	uv_timer_stop(&d->tick);
	uv_close((uv_handle_t *)&d->tick, NULL);
	uv_close((uv_handle_t *)&d->health_timer, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	/* Each bus finishes its frame in progress; what it finished is stored. */
	for (size_t b = 0; b < d->cfg->n_buses; b++) {
		mh_bus_stop(d->buses[b]);
		d->buses[b] = NULL;
	}
	drain_results(d);
	mh_uplink_stop(d->uplink, STOP_FLUSH_MS, on_uplink_closed, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct mh_daemon *d = s->data;

	if (signum == SIGHUP) {
		struct mh_config *fresh = NULL;
		/* Reload is not implemented yet; at least say whether the new file would load. */
		if (mh_config_load(d->cfg->file, NULL, NULL, &fresh) == 0)
			mh_log_warn(CONFIG, "SIGHUP: %s is valid, but reloading is not supported yet; "
					    "restart meterhub to apply it",
				d->cfg->file);
		else
			mh_log_err(CONFIG, "SIGHUP: %s has errors (above); keeping the running configuration",
				d->cfg->file);
		mh_config_free(fresh);
		return;
	}
	mh_log_notice(MAIN, "%s: shutting down", strsignal(signum));
	stop(d);
}

/* ---- setup ----------------------------------------------------------- */

static void free_daemon(struct mh_daemon *d)
{
	mh_health_free(d->health);
	if (d->pending)
		for (size_t b = 0; b < d->cfg->n_buses; b++)
			free(d->pending[b]);
	free(d->pending);
	free(d->buses);
}

int mh_daemon_run(const struct mh_config *cfg)
{
	struct mh_daemon daemon = { .cfg = cfg }, *d = &daemon;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	d->started_ms = mh_schedule_now_ms();
	d->buses = calloc(cfg->n_buses, sizeof(*d->buses));
	d->pending = calloc(cfg->n_buses, sizeof(*d->pending));
	d->health = mh_health_new(cfg);
	if (!d->buses || !d->pending || !d->health) {
		free_daemon(d);
		return -ENOMEM;
	}
	for (size_t b = 0; b < cfg->n_buses; b++) {
		d->pending[b] = calloc(cfg->buses[b].n_meters, sizeof(bool));
		if (!d->pending[b]) {
			free_daemon(d);
			return -ENOMEM;
		}
	}

	rc = mh_store_open(cfg->store.path, cfg->store.max_bytes, &d->store);
	if (rc < 0) {
		mh_log_err(STORE, "cannot open the store at %s: %s", cfg->store.path,
			strerror(-rc));
		free_daemon(d);
		return rc;
	}
	mh_require(uv_loop_init(&d->loop) == 0);
	mh_require(mh_queue_init(&d->results, &d->results_wake) == 0);
	uv_async_init(&d->loop, &d->results_wake, on_results);
	d->results_wake.data = d;

	rc = mh_uplink_start(&d->loop, cfg, d->store, d->started_ms, &d->uplink);
	if (rc < 0) {
		uv_close((uv_handle_t *)&d->results_wake, NULL);
		goto out;
	}
	for (size_t b = 0; b < cfg->n_buses; b++) {
		rc = mh_bus_start(&cfg->buses[b], &d->results, &d->buses[b]);
		mh_require(rc == 0);
	}

	uv_timer_init(&d->loop, &d->tick);
	d->tick.data = d;
	uv_timer_init(&d->loop, &d->health_timer);
	d->health_timer.data = d;
	uv_timer_start(&d->health_timer, on_health, cfg->health.interval_ms,
		cfg->health.interval_ms);
	uv_signal_init(&d->loop, &d->sigint);
	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sighup);
	d->sigint.data = d->sigterm.data = d->sighup.data = d;
	uv_signal_start(&d->sigint, on_signal, SIGINT);
	uv_signal_start(&d->sigterm, on_signal, SIGTERM);
	uv_signal_start(&d->sighup, on_signal, SIGHUP);

	d->next_boundary = mh_schedule_next(mh_schedule_now_ms(), cfg->schedule.interval_ms);
	{
		char when[40];
		mh_schedule_format(d->next_boundary, false, when, sizeof(when));
		mh_log_notice(MAIN, "meterhub %s started: %zu buses, first reads at %s", MH_VERSION,
			cfg->n_buses, when);
	}
	on_tick(&d->tick);

	uv_run(&d->loop, UV_RUN_DEFAULT);
	rc = d->exit_code;
out:
	/* Every handle is closed by now; a non-zero result here is a leak. */
	uv_run(&d->loop, UV_RUN_DEFAULT);
	mh_require(uv_loop_close(&d->loop) == 0);
	mh_queue_deinit(&d->results);
	mh_store_close(d->store);
	free_daemon(d);
	return rc;
}
