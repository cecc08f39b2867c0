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
#include "clocksync.h"
#include "collect.h"
#include "commands.h"
#include "db.h"
#include "health.h"
#include "job.h"
#include "log.h"
#include "meter.h"
#include "notify.h"
#include "outbox.h"
#include "records.h"
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
	struct mh_collect *collect;
	struct mh_commands *commands; /* NULL without a commands section */
	struct mh_clocksync *clocksync;
	struct mh_uplink *uplink;
	struct mh_meter_set meters;
	struct mh_bus **buses;
	struct mh_queue done;
	uv_async_t done_wake;
	uv_timer_t commit_due; /* a group commit's window ends (db.h, mh_db_hold()) */
	uv_timer_t tick;
	uv_timer_t health_timer;
	struct mh_health *health;
	uv_signal_t sigint, sigterm, sighup;
	struct mh_clock clock;
	struct mh_notify notify;
	bool clock_waited; /* the clock was not set at some point since start */
	bool started_told; /* the gateway_started event is stored */
	struct mh_bus_port *ports_seen; /* per bus, as the last look found them */
	int64_t *port_down_since;       /* per bus, monotonic ms, 0 while open */
	int64_t next_boundary;
	int64_t started_mono;
	bool stopping;
};

/* Say what the store gave up: a drop is never silent. */
static void store_drop_event(struct mh_daemon *d, const struct mh_outbox_drops *drops)
{
	int64_t now = mh_clock_wall_ms();
	cJSON *obj = mh_records_event(d->outbox, "store_dropped", now), *counts;
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
		mh_log_warn(STORE, "store full: dropped %llu records (seq %llu-%llu), %llu lost",
			(unsigned long long)total, (unsigned long long)drops->first_seq,
			(unsigned long long)drops->last_seq, (unsigned long long)drops->lost);
	else if (drops->lost)
		mh_log_err(STORE, "%llu records could not be stored",
			(unsigned long long)drops->lost);
	mh_health_note_drops(d->health, drops);
	mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
}

/*
 * One synced commit for everything of this loop turn, then hand it to the
 * uplink. Returns the result of the turn's commit (0 or a negative errno).
 */
static int commit(struct mh_daemon *d)
{
	struct mh_outbox_drops drops;
	int rc = mh_db_commit(d->db);

	if (mh_outbox_take_drops(d->outbox, &drops)) {
		store_drop_event(d, &drops);
		mh_db_commit(d->db);
	}
	if (d->uplink)
		mh_uplink_pump(d->uplink);
	return rc;
}

static int commit_cb(void *ud)
{
	return commit(ud);
}

static void on_commit_due(uv_timer_t *t)
{
	commit(t->data);
}

/* ---- jobs ------------------------------------------------------------ */

static void drain_done(struct mh_daemon *d)
{
	struct mh_queue_node *node = mh_queue_take_all(&d->done);
	bool readings = true;
	int64_t wait = 0;

	if (!node)
		return;
	while (node) {
		struct mh_queue_node *next = node->next;
		struct mh_job *job = (struct mh_job *)node;
		readings &= job->kind == MH_JOB_READ;
		job->done(job);
		node = next;
	}
	/*
	 * Readings alone may wait for a group commit, until the window ends or
	 * no meter is being read any more: the sweep is over, nothing is coming
	 * to join them. Any other job (a command's, a clock's) commits now.
	 */
	if (readings && !d->stopping)
		wait = mh_db_hold(d->db, mh_clock_mono_ms(), mh_meter_set_reading(&d->meters));
	if (wait > 0)
		uv_timer_start(&d->commit_due, on_commit_due, (uint64_t)wait, 0);
	else
		commit(d);
}

static void on_done(uv_async_t *a)
{
	drain_done(a->data);
}

static void clock_step_event(struct mh_daemon *d, int64_t step, int64_t now, bool was_set)
{
	cJSON *obj = mh_records_event(d->outbox, "clock_step", now);
	char from[40];

	/* A clock that was not set has no time worth publishing. */
	if (was_set) {
		mh_schedule_format(now - step, false, from, sizeof(from));
		cJSON_AddStringToObject(obj, "from", from);
	}
	cJSON_AddBoolToObject(obj, "was_set", was_set);
	cJSON_AddNumberToObject(obj, "step_s", (double)step / 1000.0);
	mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
	commit(d);
}

/* Once the clock can be trusted: that the gateway started, and how the last run ended. */
static void started_event(struct mh_daemon *d, int64_t now)
{
	static const char *const last[] = {
		[MH_DB_NEW] = "new_store",
		[MH_DB_CLEAN] = "clean",
		[MH_DB_UNCLEAN] = "unclean",
	};
	cJSON *obj;

	if (d->started_told)
		return;
	d->started_told = true;
	obj = mh_records_event(d->outbox, "gateway_started", now);
	cJSON_AddStringToObject(obj, "version", MH_VERSION);
	/* unclean: killed, crashed or a power cut; the head-end sees it. */
	cJSON_AddStringToObject(obj, "last_stop", last[mh_db_last_stop(d->db)]);
	cJSON_AddNumberToObject(obj, "uptime_s",
		(double)((mh_clock_mono_ms() - d->started_mono) / 1000));
	mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
	commit(d);
}

static double backlog_records(struct mh_daemon *d)
{
	struct mh_outbox_stats st;

	return mh_outbox_stats(d->outbox, &st) == 0 ? (double)st.records : 0;
}

/* The broker went away or came back: stored like any record, so it reaches the head-end. */
static void on_link(void *ud, bool up, int64_t outage_ms)
{
	struct mh_daemon *d = ud;
	int64_t now = mh_clock_wall_ms();
	cJSON *obj;

	if (!d->clock.set)
		return;
	obj = mh_records_event(d->outbox, up ? "broker_back" : "broker_lost", now);
	if (up)
		cJSON_AddNumberToObject(obj, "outage_s", (double)outage_ms / 1000.0);
	cJSON_AddNumberToObject(obj, "backlog", backlog_records(d));
	mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
	commit(d);
}

/* A port that closed or opened since the last look gives an event. */
static void watch_ports(struct mh_daemon *d, int64_t now)
{
	for (size_t b = 0; b < d->cfg->n_buses; b++) {
		struct mh_bus_port port, *seen = &d->ports_seen[b];
		const struct mh_bus_config *bc = &d->cfg->buses[b];
		bool lost, back;
		cJSON *obj;

		if (!d->buses[b])
			continue;
		mh_bus_port(d->buses[b], &port);
		/*
		 * Down: closed with an error (also a port that never opened), or
		 * lost and reopened between two looks; back: open after that.
		 */
		lost = (!port.open && port.last_error && !d->port_down_since[b]) ||
			(port.open && port.losses > seen->losses);
		back = port.open && (lost || d->port_down_since[b]);
		if (lost) {
			d->port_down_since[b] = mh_clock_mono_ms();
			obj = mh_records_event(d->outbox, "bus_port_lost", now);
			cJSON_AddStringToObject(obj, "bus", bc->name);
			cJSON_AddStringToObject(obj, "device", bc->device);
			cJSON_AddStringToObject(obj, "error",
				port.last_error ? strerror(-port.last_error) : "port failed");
			mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
		}
		if (back) {
			obj = mh_records_event(d->outbox, "bus_port_back", now);
			cJSON_AddStringToObject(obj, "bus", bc->name);
			cJSON_AddStringToObject(obj, "device", bc->device);
			cJSON_AddNumberToObject(obj, "down_s",
				(double)(mh_clock_mono_ms() - d->port_down_since[b]) / 1000.0);
			mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
			d->port_down_since[b] = 0;
		}
		*seen = port;
		if (lost || back)
			commit(d);
	}
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
			mh_log_warn(CLOCK, "the wall clock reads %s, earlier than this build allows (%s): it is not "
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
		if (d->commands && !first)
			mh_commands_resume(d->commands);
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
		started_event(d, now);
		watch_ports(d, now);
		if (now >= d->next_boundary) {
			/* Label reads with the boundary they are made in, never an older one. */
			int64_t boundary = mh_schedule_current(now, interval);
			if (boundary > d->next_boundary)
				mh_log_warn(SCHED, "the loop was held up: %lld boundaries passed unread",
					(long long)((boundary - d->next_boundary) / interval));
			d->next_boundary = mh_schedule_next(now, interval);
			mh_collect_boundary(d->collect, boundary, d->next_boundary);
		}
		if (d->next_boundary - now + 1 < wait)
			wait = d->next_boundary - now + 1;
		int64_t retry = mh_collect_tick(d->collect, now);
		if (retry && retry - now < wait)
			wait = retry - now;
		int64_t clock_due = mh_clocksync_tick(d->clocksync, now);
		if (clock_due && clock_due - now < wait)
			wait = clock_due - now;
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
	struct mh_commands_stats cst;
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
		.commands = d->commands ? (mh_commands_stats(d->commands, &cst), &cst) : NULL,
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
	uv_close((uv_handle_t *)&d->commit_due, NULL);
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
	/* What a group commit holds goes out with the last publishes too. */
	commit(d);
	mh_clocksync_stop(d->clocksync);
	/* Commands still arriving are journaled and run at the next start. */
	mh_commands_stop(d->commands);
	mh_uplink_stop(d->uplink, STOP_FLUSH_MS, on_uplink_closed, d);
}

/* Each error line of a config file that did not load, for the config_rejected event. */
static void collect_error(void *ud, const char *line)
{
	cJSON *errors = ud;

	mh_log_err(CONFIG, "%s", line);
	if (cJSON_GetArraySize(errors) < 32)
		cJSON_AddItemToArray(errors, cJSON_CreateString(line));
}

/*
 * SIGHUP. Reloading in place is not implemented yet: the file is checked
 * and the running configuration kept either way, and a config_rejected
 * event says so (with the file's errors, or that a restart applies it).
 */
static void reload(struct mh_daemon *d)
{
	int64_t now = mh_clock_wall_ms();
	cJSON *errors = cJSON_CreateArray(), *obj;
	struct mh_config *fresh = NULL;
	int rc = errors ? mh_config_load(d->cfg->file, collect_error, errors, &fresh) : -ENOMEM;

	if (rc == 0)
		mh_log_warn(CONFIG, "SIGHUP: %s is valid, but reloading is not supported yet; "
				    "restart meterhub to apply it",
			d->cfg->file);
	else
		mh_log_err(CONFIG, "SIGHUP: %s has errors (above); keeping the running configuration",
			d->cfg->file);
	mh_config_free(fresh);
	if (!d->clock.set) {
		cJSON_Delete(errors);
		return;
	}
	obj = mh_records_event(d->outbox, "config_rejected", now);
	cJSON_AddStringToObject(obj, "file", d->cfg->file);
	if (rc == 0) {
		cJSON_AddStringToObject(obj, "reason",
			"reloading is not implemented yet: restart meterhub to apply the file");
		cJSON_Delete(errors);
	} else {
		cJSON_AddStringToObject(obj, "reason", rc == -EINVAL ? "the file has errors"
								     : strerror(-rc));
		cJSON_AddItemToObject(obj, "errors", errors);
	}
	mh_records_store(d->outbox, MH_RECORD_EVENT, "event", obj, now);
	commit(d);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct mh_daemon *d = s->data;

	if (signum == SIGHUP) {
		reload(d);
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
	if (!rc)
		rc = mh_collect_new(d->cfg, &d->meters, d->outbox, d->tables, d->health,
			&d->collect);
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
	mh_commands_free(d->commands);
	mh_clocksync_free(d->clocksync);
	mh_collect_free(d->collect);
	mh_tables_free(d->tables);
	mh_outbox_free(d->outbox);
	mh_db_close(d->db);
	mh_health_free(d->health);
	mh_meter_set_deinit(&d->meters);
	free(d->buses);
	free(d->ports_seen);
	free(d->port_down_since);
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
	d->ports_seen = calloc(cfg->n_buses + 1, sizeof(*d->ports_seen));
	d->port_down_since = calloc(cfg->n_buses + 1, sizeof(*d->port_down_since));
	d->health = mh_health_new(cfg);
	rc = mh_meter_set_init(&d->meters, cfg);
	if (rc || !d->buses || !d->ports_seen || !d->port_down_since || !d->health) {
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

	if (cfg->commands.enabled) {
		rc = mh_commands_open(&d->loop, cfg, &d->meters, d->db, d->outbox, &d->clock,
			commit_cb, d, &d->commands);
		if (rc < 0) {
			uv_close((uv_handle_t *)&d->done_wake, NULL);
			goto out;
		}
	}
	now = mh_clock_wall_ms();
	rc = mh_uplink_start(&d->loop, cfg, d->outbox,
		mh_clock_plausible(&d->clock, now) ? now : 0,
		d->commands ? mh_commands_inbound : NULL, d->commands, &d->uplink);
	if (rc < 0) {
		mh_commands_stop(d->commands);
		uv_close((uv_handle_t *)&d->done_wake, NULL);
		goto out;
	}
	mh_uplink_watch(d->uplink, on_link, d);
	for (size_t b = 0; b < cfg->n_buses; b++) {
		rc = mh_bus_start(&cfg->buses[b], &d->done, &d->buses[b]);
		mh_require(rc == 0);
	}
	for (size_t i = 0; i < d->meters.n; i++)
		d->meters.meters[i].bus = d->buses[d->meters.meters[i].bus_index];
	mh_require(mh_clocksync_new(cfg, &d->meters, d->outbox, &d->clocksync) == 0);

	uv_timer_init(&d->loop, &d->tick);
	d->tick.data = d;
	uv_timer_init(&d->loop, &d->commit_due);
	d->commit_due.data = d;
	mh_db_set_commit_window(d->db, cfg->store.commit_window_ms);
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
	/* Journaled commands go on once the buses run and the clock can be trusted. */
	if (d->commands)
		mh_commands_resume(d->commands);
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
