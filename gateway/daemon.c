// SPDX-License-Identifier: MIT
#include "daemon.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bus.h"
#include "clock.h"
#include "db.h"
#include "health.h"
#include "job.h"
#include "log.h"
#include "meter.h"
#include "notify.h"
#include "outbox.h"
#include "schedule.h"
#include "tables.h"
#include "uplink.h"

/* How long shutdown waits for the broker to acknowledge what is in flight. */
#define STOP_FLUSH_MS 3000
/* The loop looks at the wall clock at least this often, to see it jump. */
#define CLOCK_CHECK_MS 1000
/* A wall clock that disagrees with the monotonic one by more than this has been stepped. */
#define CLOCK_STEP_MS 1000

struct mh_daemon {
	uv_loop_t loop;
	const struct mh_config *cfg;
	struct mh_db *db;
	struct mh_outbox *outbox;
	struct mh_tables *tables;
	struct mh_uplink *uplink;
	struct mh_meter_set meters;
	struct mh_bus **buses;
	struct mh_queue done;
	uv_async_t done_wake;
	uv_timer_t tick;
	uv_timer_t health_timer;
	struct mh_health *health;
	uv_signal_t sigint, sigterm, sighup;
	struct mh_clock clock;
	struct mh_notify notify;
	bool clock_waited; /* the clock was not set at some point since start */
	int64_t next_boundary;
	uint32_t backfill_day; /* local YYYYMMDD of the last look for missing daily freezes */
	int64_t started_mono;
	bool stopping;
};

/* ---- records: built here, stored, published by the uplink ------------ */

/* A record object that starts with the seq the outbox will give it. */
static cJSON *record_begin(struct mh_daemon *d)
{
	cJSON *obj = cJSON_CreateObject();

	if (obj)
		cJSON_AddNumberToObject(obj, "seq", (double)mh_outbox_next_seq(d->outbox));
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
		rc = mh_outbox_append(d->outbox, type, created_ms, subtopic, json, strlen(json));
	if (rc < 0)
		mh_log_err(STORE, "%s record not stored: %s", subtopic, strerror(-rc));
	free(json);
	return rc;
}

/* An event record of @type, "ts" now; the caller adds its fields. */
static cJSON *event_begin(struct mh_daemon *d, const char *type, int64_t now)
{
	cJSON *obj = record_begin(d);
	char ts[40];

	mh_schedule_format(now, false, ts, sizeof(ts));
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "type", type);
	return obj;
}

static void store_reading(struct mh_daemon *d, const struct mh_job *job)
{
	const struct mh_meter *m = job->meter;
	const struct mh_reading *r = &job->reading;
	cJSON *obj = record_begin(d), *values;
	char ts[40], read_at[40], subtopic[96];

	mh_schedule_format(job->due_ms, false, ts, sizeof(ts));
	mh_schedule_format(r->read_at_ms, true, read_at, sizeof(read_at));
	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "ts", ts);
	cJSON_AddStringToObject(obj, "quality", mh_quality_name(r->quality));
	values = cJSON_AddObjectToObject(obj, "values");
	for (size_t i = 0; values && i < r->n_values; i++)
		if (r->valid[i])
			cJSON_AddNumberToObject(values, m->cfg->profile->points[i].name, r->values[i]);
	cJSON_AddStringToObject(obj, "read_at", read_at);
	if (job->late)
		cJSON_AddBoolToObject(obj, "late", true);
	if (r->quality != MH_QUALITY_GOOD)
		cJSON_AddStringToObject(obj, "error", r->error);
	cJSON_AddStringToObject(obj, "bus", m->bus_cfg->name);
	cJSON_AddNumberToObject(obj, "duration_ms", r->duration_ms);
	snprintf(subtopic, sizeof(subtopic), "reading/%s", m->cfg->id);
	if (record_store(d, MH_RECORD_READING, subtopic, obj, r->read_at_ms) == 0 &&
		r->quality != MH_QUALITY_GOOD)
		mh_log_warn(BUS, "%s: meter %s: %s: %s", m->bus_cfg->name, m->cfg->id,
			mh_quality_name(r->quality), r->error);
}

/* Say what the store gave up: a drop is never silent. */
static void store_drop_event(struct mh_daemon *d, const struct mh_outbox_drops *drops)
{
	int64_t now = mh_clock_wall_ms();
	cJSON *obj = event_begin(d, "store_dropped", now), *counts;
	uint64_t total = 0;

	counts = cJSON_AddObjectToObject(obj, "dropped");
	for (size_t t = MH_RECORD_READING; counts && t < MH_RECORD_TYPES; t++) {
		if (drops->by_type[t])
			cJSON_AddNumberToObject(counts, mh_record_type_name(t),
				(double)drops->by_type[t]);
		total += drops->by_type[t];
	}
	if (total) {
		cJSON_AddNumberToObject(obj, "first_seq", (double)drops->first_seq);
		cJSON_AddNumberToObject(obj, "last_seq", (double)drops->last_seq);
	}
	cJSON_AddNumberToObject(obj, "lost", (double)drops->lost);
	if (total)
		mh_log_warn(STORE, "store full: dropped %llu records (seq %llu-%llu)",
			(unsigned long long)total, (unsigned long long)drops->first_seq,
			(unsigned long long)drops->last_seq);
	if (drops->lost)
		mh_log_err(STORE, "%llu records could not be stored",
			(unsigned long long)drops->lost);
	mh_health_note_drops(d->health, drops);
	record_store(d, MH_RECORD_EVENT, "event", obj, now);
}

/* One synced commit for everything of this loop turn, then hand it to the uplink. */
static void commit(struct mh_daemon *d)
{
	struct mh_outbox_drops drops;

	mh_db_commit(d->db);
	if (mh_outbox_take_drops(d->outbox, &drops)) {
		store_drop_event(d, &drops);
		mh_db_commit(d->db);
	}
	if (d->uplink)
		mh_uplink_pump(d->uplink);
}

/* ---- jobs ------------------------------------------------------------ */

/* A boundary read of a meter with interval tables failed: try again within the window. */
static void plan_retry(struct mh_daemon *d, struct mh_meter *m, const struct mh_job *job)
{
	int64_t at;

	if (!m->table.enabled || m->retries >= d->cfg->schedule.retries)
		return;
	at = mh_schedule_retry_at(mh_clock_wall_ms(), d->next_boundary,
		d->cfg->schedule.interval_ms, m->retries,
		job->reading.duration_ms + m->bus_cfg->timeout_ms);
	if (!at)
		return;
	m->retry_at = at;
	m->retry_due = job->due_ms;
	m->retries++;
}

static void read_done(struct mh_job *job)
{
	struct mh_daemon *d = job->ud;
	struct mh_meter *m = job->meter;

	m->busy = false;
	if (!job->canceled) {
		store_reading(d, job);
		mh_tables_observe(d->tables, job);
		mh_health_note(d->health, m->bus_index, &job->reading);
		if (job->reading.quality == MH_QUALITY_GOOD)
			m->last_good_ms = job->reading.read_at_ms;
		else
			plan_retry(d, m, job);
	}
	mh_job_free(job);
}

static void drain_done(struct mh_daemon *d)
{
	struct mh_queue_node *node = mh_queue_take_all(&d->done);

	if (!node)
		return;
	while (node) {
		struct mh_queue_node *next = node->next;
		struct mh_job *job = (struct mh_job *)node;
		job->done(job);
		node = next;
	}
	commit(d);
}

static void on_done(uv_async_t *a)
{
	drain_done(a->data);
}

/* ---- backfill from the meters' own frozen data ------------------------ */

/* A backfill is tried this often before it is given up with an event. */
#define BACKFILL_TRIES 3

static void frozen_done(struct mh_job *job);

static void submit_frozen(struct mh_daemon *d, struct mh_meter *m, unsigned back,
	unsigned attempt)
{
	struct mh_job *job = mh_job_new(MH_JOB_FROZEN, m, m->slot, frozen_done, d);

	if (!job)
		return;
	job->back = back;
	job->attempt = attempt;
	mh_bus_submit(m->bus, job, false);
}

static void want_frozen(void *ud, struct mh_meter *m, unsigned back)
{
	mh_log_info(SCHED, "meter %s: no complete daily record %u days back; reading the meter's own",
		m->cfg->id, back);
	submit_frozen(ud, m, back, 0);
}

static void frozen_done(struct mh_job *job)
{
	struct mh_daemon *d = job->ud;
	const struct mh_meter *m = job->meter;

	if (!job->canceled && mh_tables_frozen(d->tables, job) == -ENODATA) {
		if (job->attempt + 1 < BACKFILL_TRIES) {
			submit_frozen(d, job->meter, job->back, job->attempt + 1);
		} else {
			int64_t now = mh_clock_wall_ms();
			cJSON *obj = event_begin(d, "backfill_failed", now);
			cJSON_AddStringToObject(obj, "meter", m->cfg->id);
			cJSON_AddNumberToObject(obj, "days_back", job->back);
			cJSON_AddStringToObject(obj, "reason", job->reading.error[0]
								     ? job->reading.error
								     : "the meter gave no frozen energy");
			mh_log_warn(SCHED, "meter %s: daily freeze %u days back not read back: %s",
				m->cfg->id, job->back, job->reading.error);
			record_store(d, MH_RECORD_EVENT, "event", obj, now);
		}
	}
	mh_job_free(job);
}

/* Once a day, after the meters froze: the days the tables lack, from the meters. */
static void plan_backfill(struct mh_daemon *d, int64_t now)
{
	time_t s = (time_t)(now / 1000);
	struct tm tm;
	uint32_t today;

	if (!d->cfg->schedule.backfill_days)
		return;
	localtime_r(&s, &tm);
	today = (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
	if (today == d->backfill_day ||
		(unsigned)(tm.tm_hour * 60 + tm.tm_min) < d->cfg->schedule.backfill_at_min)
		return;
	d->backfill_day = today;
	for (size_t i = 0; i < d->meters.n; i++)
		mh_tables_backfill_plan(d->tables, &d->meters.meters[i], now,
			d->cfg->schedule.backfill_days, want_frozen, d);
}

/* ---- the schedule ---------------------------------------------------- */

static void submit_all(struct mh_daemon *d, int64_t boundary)
{
	size_t skipped[d->cfg->n_buses + 1];

	memset(skipped, 0, sizeof(skipped));
	for (size_t i = 0; i < d->meters.n; i++) {
		struct mh_meter *m = &d->meters.meters[i];
		struct mh_job *job;

		if (m->busy) {
			/* The bus is behind: do not pile up reads of the same meter. */
			m->skipped++;
			skipped[m->bus_index]++;
			continue;
		}
		job = mh_job_new_read(m, m->slot, m->cfg->profile->n_points, read_done, d);
		if (!job) {
			mh_log_err(SCHED, "out of memory: meter %s not read", m->cfg->id);
			continue;
		}
		job->due_ms = boundary;
		m->busy = true;
		/* A new boundary: a retry of the last one that did not happen is moot. */
		m->retry_at = 0;
		m->retries = 0;
		mh_bus_submit(m->bus, job, false);
	}
	/* Once per bus and boundary, however many meters it could not fit. */
	for (size_t b = 0; b < d->cfg->n_buses; b++)
		if (skipped[b])
			mh_log_warn(SCHED, "%s: %zu of %zu meters still being read; not read at this boundary",
				d->cfg->buses[b].name, skipped[b], d->cfg->buses[b].n_meters);
}

/* Submit the retries whose time has come; returns when the next one is due (0: none). */
static int64_t submit_retries(struct mh_daemon *d, int64_t now)
{
	int64_t next = 0;

	for (size_t i = 0; i < d->meters.n; i++) {
		struct mh_meter *m = &d->meters.meters[i];
		struct mh_job *job;

		if (!m->retry_at)
			continue;
		if (m->retry_at > now || m->busy) {
			if (!next || m->retry_at < next)
				next = m->retry_at;
			continue;
		}
		m->retry_at = 0;
		job = mh_job_new_read(m, m->slot, m->cfg->profile->n_points, read_done, d);
		if (!job)
			continue;
		job->due_ms = m->retry_due;
		job->late = true;
		m->busy = true;
		mh_bus_submit(m->bus, job, false);
	}
	return next;
}

static void clock_step_event(struct mh_daemon *d, int64_t step, int64_t now, bool was_set)
{
	cJSON *obj = event_begin(d, "clock_step", now);
	char from[40];

	/* A clock that was not set has no time worth publishing. */
	if (was_set) {
		mh_schedule_format(now - step, false, from, sizeof(from));
		cJSON_AddStringToObject(obj, "from", from);
	}
	cJSON_AddBoolToObject(obj, "was_set", was_set);
	cJSON_AddNumberToObject(obj, "step_s", (double)step / 1000.0);
	record_store(d, MH_RECORD_EVENT, "event", obj, now);
	commit(d);
}

/* What `systemctl status` shows while the gateway reads its meters. */
static void notify_running(struct mh_daemon *d)
{
	mh_notify_status("running: %zu buses, %zu meters", d->cfg->n_buses, d->meters.n);
}

/*
 * Look at the wall clock: not set yet (a board without RTC after boot),
 * just set, stepped by NTP or a person, or keeping pace. Returns whether
 * reading may go on.
 */
static bool watch_clock(struct mh_daemon *d, int64_t now)
{
	bool was_set = d->clock.set, first = !d->clock.observed;
	int64_t last = d->clock.wall_ms;
	int64_t step = mh_clock_observe(&d->clock, now, mh_clock_mono_ms());
	char at[40], floor[40];

	if (!d->clock.set) {
		if (was_set || first) {
			mh_schedule_format(now, false, at, sizeof(at));
			mh_schedule_format(d->clock.floor_ms, false, floor, sizeof(floor));
			mh_log_warn(CLOCK, "the wall clock reads %s, before this build (%s): it is not "
					   "set; waiting for it before reading any meter",
				at, floor);
			mh_notify_status("waiting for the wall clock to be set (it reads %s)", at);
		}
		d->clock_waited = true;
		return false;
	}
	if (!was_set) {
		int64_t started = now - (mh_clock_mono_ms() - d->started_mono);
		if (!first) {
			mh_log_notice(CLOCK, "the wall clock is set now (it moved %+.0f s); reading starts",
				(double)(now - last) / 1000.0);
			clock_step_event(d, now - last, now, false);
			notify_running(d);
		}
		if (d->uplink && d->clock_waited)
			mh_uplink_set_started(d->uplink, started);
		d->next_boundary = mh_schedule_next(now, d->cfg->schedule.interval_ms);
	} else if (step) {
		mh_schedule_format(now - step, false, floor, sizeof(floor));
		mh_schedule_format(now, false, at, sizeof(at));
		mh_log_warn(CLOCK, "the wall clock stepped %+.3f s (from %s to %s); the schedule "
				   "follows the new time",
			(double)step / 1000.0, floor, at);
		mh_tables_clock_step(d->tables, step);
		clock_step_event(d, step, now, true);
		d->next_boundary = mh_schedule_next(now, d->cfg->schedule.interval_ms);
	}
	return true;
}

static void on_tick(uv_timer_t *t)
{
	struct mh_daemon *d = t->data;
	unsigned interval = d->cfg->schedule.interval_ms;
	int64_t now = mh_clock_wall_ms(), wait = CLOCK_CHECK_MS;

	if (watch_clock(d, now)) {
		if (now >= d->next_boundary) {
			/* Label reads with the boundary they are made in, never an older one. */
			int64_t boundary = mh_schedule_current(now, interval);
			if (boundary > d->next_boundary)
				mh_log_warn(SCHED, "the loop was held up: %lld boundaries passed unread",
					(long long)((boundary - d->next_boundary) / interval));
			submit_all(d, boundary);
			d->next_boundary = mh_schedule_next(now, interval);
		}
		if (d->next_boundary - now + 1 < wait)
			wait = d->next_boundary - now + 1;
		plan_backfill(d, now);
		int64_t retry = submit_retries(d, now);
		if (retry && retry - now < wait)
			wait = retry - now;
	}
	/* Re-armed from the wall clock each time, so timer drift never accumulates. */
	uv_timer_start(&d->tick, on_tick, (uint64_t)(wait > 0 ? wait : 1), 0);
}

static void on_health(uv_timer_t *t)
{
	struct mh_daemon *d = t->data;
	size_t backlog[d->cfg->n_buses + 1];
	struct mh_bus_port ports[d->cfg->n_buses + 1];
	struct mh_outbox_stats st;
	char *json;

	for (size_t b = 0; b < d->cfg->n_buses; b++) {
		backlog[b] = mh_bus_backlog(d->buses[b]);
		mh_bus_port(d->buses[b], &ports[b]);
	}
	if (mh_outbox_stats(d->outbox, &st) < 0)
		memset(&st, 0, sizeof(st));
	struct mh_health_snapshot snap = {
		.now_ms = mh_clock_wall_ms(),
		.clock_set = d->clock.set,
		.uptime_ms = mh_clock_mono_ms() - d->started_mono,
		.backlog = backlog,
		.ports = ports,
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
	uv_close((uv_handle_t *)&d->done_wake, NULL);
}

static void stop(struct mh_daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	mh_notify_stopping("stopping: finishing the frames in progress and flushing to the broker");
	mh_notify_watchdog_stop(&d->notify);
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
	drain_done(d);
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

static int open_store(struct mh_daemon *d)
{
	int rc = mh_db_open(d->cfg->store.path, d->cfg->store.max_bytes, &d->db);

	if (!rc)
		rc = mh_outbox_open(d->db, d->cfg->store.max_bytes, &d->outbox);
	if (!rc)
		rc = mh_tables_open(d->db, d->outbox, d->cfg, &d->meters, &d->tables);
	if (rc < 0) {
		mh_log_err(STORE, "cannot open the store at %s: %s", d->cfg->store.path,
			strerror(-rc));
		return rc;
	}
	mh_log_info(STORE, "store %s open, next seq %llu", d->cfg->store.path,
		(unsigned long long)mh_outbox_next_seq(d->outbox));
	return 0;
}

static void free_daemon(struct mh_daemon *d)
{
	mh_tables_free(d->tables);
	mh_outbox_free(d->outbox);
	mh_db_close(d->db);
	mh_health_free(d->health);
	mh_meter_set_deinit(&d->meters);
	free(d->buses);
}

int mh_daemon_run(const struct mh_config *cfg)
{
	struct mh_daemon daemon = { .cfg = cfg }, *d = &daemon;
	int64_t now;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	d->started_mono = mh_clock_mono_ms();
	mh_clock_init(&d->clock, mh_clock_floor_ms(), CLOCK_STEP_MS);
	d->buses = calloc(cfg->n_buses + 1, sizeof(*d->buses));
	d->health = mh_health_new(cfg);
	rc = mh_meter_set_init(&d->meters, cfg);
	if (rc || !d->buses || !d->health) {
		free_daemon(d);
		return -ENOMEM;
	}
	mh_notify_status("opening the store at %s", cfg->store.path);
	rc = open_store(d);
	if (rc < 0) {
		free_daemon(d);
		return rc;
	}
	mh_require(uv_loop_init(&d->loop) == 0);
	mh_require(mh_queue_init(&d->done, &d->done_wake) == 0);
	uv_async_init(&d->loop, &d->done_wake, on_done);
	d->done_wake.data = d;

	now = mh_clock_wall_ms();
	rc = mh_uplink_start(&d->loop, cfg, d->outbox,
		mh_clock_plausible(&d->clock, now) ? now : 0, &d->uplink);
	if (rc < 0) {
		uv_close((uv_handle_t *)&d->done_wake, NULL);
		goto out;
	}
	for (size_t b = 0; b < cfg->n_buses; b++) {
		rc = mh_bus_start(&cfg->buses[b], &d->done, &d->buses[b]);
		mh_require(rc == 0);
	}
	for (size_t i = 0; i < d->meters.n; i++)
		d->meters.meters[i].bus = d->buses[d->meters.meters[i].bus_index];

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

	mh_log_notice(MAIN, "meterhub %s started: %zu buses, %zu meters, every %u ms", MH_VERSION,
		cfg->n_buses, d->meters.n, cfg->schedule.interval_ms);
	/* Config loaded, store open, buses started: ready, and alive from now on. */
	rc = mh_notify_watchdog_start(&d->notify, &d->loop);
	if (rc < 0)
		mh_log_err(MAIN, "watchdog keep-alives not started: %s", uv_strerror(rc));
	on_tick(&d->tick);
	/* While the clock is not set, on_tick() has said so in the status. */
	if (d->clock.set)
		notify_running(d);
	mh_notify_ready(NULL);

	uv_run(&d->loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	/* Every handle is closed by now; a non-zero result here is a leak. */
	uv_run(&d->loop, UV_RUN_DEFAULT);
	mh_require(uv_loop_close(&d->loop) == 0);
	mh_queue_deinit(&d->done);
	free_daemon(d);
	return rc;
}
