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
	uv_signal_t sigint, sigterm, sighup;
	int64_t next_boundary;
	int64_t started_ms;
	bool stopping;
	int exit_code;
};

void mh_format_time(int64_t ms, bool with_ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	if (with_ms)
		snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			(int)(ms % 1000));
	else
		strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- results: reading -> record -> store ---------------------------- */

static char *reading_json(const struct mh_daemon *d, const struct mh_reading *r, uint64_t seq)
{
	const struct mh_meter *m = &d->cfg->buses[r->bus].meters[r->meter];
	cJSON *obj = cJSON_CreateObject(), *values;
	char ts[40], read_at[40];
	char *text = NULL;

	if (!obj)
		return NULL;
	mh_format_time(r->boundary_ms, false, ts, sizeof(ts));
	mh_format_time(r->read_at_ms, true, read_at, sizeof(read_at));
	cJSON_AddNumberToObject(obj, "seq", (double)seq);
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
	if (values)
		text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return text;
}

static void store_reading(struct mh_daemon *d, const struct mh_reading *r)
{
	const struct mh_meter *m = &d->cfg->buses[r->bus].meters[r->meter];
	uint64_t seq = mh_store_next_seq(d->store);
	char subtopic[96];
	char *json = reading_json(d, r, seq);
	int rc;

	if (!json) {
		mh_log_err(STORE, "out of memory: reading of %s not stored", m->id);
		return;
	}
	snprintf(subtopic, sizeof(subtopic), "reading/%s", m->id);
	rc = mh_store_append(d->store, MH_RECORD_READING, r->read_at_ms, subtopic, json,
		strlen(json));
	if (rc < 0)
		mh_log_err(STORE, "reading of %s not stored: %s", m->id, strerror(-rc));
	else if (r->quality != MH_QUALITY_GOOD)
		mh_log_warn(BUS, "%s: meter %s: %s: %s", d->cfg->buses[r->bus].name, m->id,
			mh_quality_name(r->quality), r->error);
	free(json);
}

static void drain_results(struct mh_daemon *d)
{
	struct mh_queue_node *node = mh_queue_take_all(&d->results);
	int rc;

	if (!node)
		return;
	while (node) {
		struct mh_queue_node *next = node->next;
		struct mh_reading *r = (struct mh_reading *)node;
		store_reading(d, r);
		d->pending[r->bus][r->meter] = false;
		mh_reading_free(r);
		node = next;
	}
	/* One synced commit for everything that arrived in this loop turn. */
	rc = mh_store_commit(d->store);
	if (rc < 0)
		mh_log_err(STORE, "commit failed: %s", strerror(-rc));
	if (d->uplink)
		mh_uplink_pump(d->uplink);
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
	if (!d->buses || !d->pending) {
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
		mh_format_time(d->next_boundary, false, when, sizeof(when));
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
