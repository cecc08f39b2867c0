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
#include "events.h"
#include "health.h"
#include "job.h"
#include "log.h"
#include "meter.h"
#include "notify.h"
#include "outbox.h"
#include "reload.h"
#include "schedule.h"
#include "tables.h"
#include "uplink.h"

/* How long shutdown waits for the broker to acknowledge what is in flight. */
#define STOP_FLUSH_MS 3000
/* The loop looks at the wall clock at least this often, to see it jump. */
#define CLOCK_CHECK_MS 1000
/* A wall clock that disagrees with the monotonic one by more than this has been stepped. */
#define CLOCK_STEP_MS 1000

/*
 * A configuration that some running part still reads: the current one, and
 * older ones while a bus thread started from them runs on (it reads its
 * bus's settings and meters) or the uplink does. Freed when none does.
 */
struct generation {
	const struct mh_config *cfg;
	struct mh_config *owned; /* NULL: the caller's (the first) */
	unsigned users;
	struct generation *next;
};

/* A reload that waits for the buses it restarts to finish what they were given. */
struct pending_reload {
	struct mh_config *cfg;
	struct mh_reload_plan plan;
	struct mh_commands_settings *settings;
	int64_t since_mono;
	bool told; /* the wait was logged */
};

struct mh_daemon {
	uv_loop_t loop;
	const struct mh_config *cfg;
	struct generation *gen, *gens; /* the current one; all alive */
	struct generation **bus_gen;   /* per bus: what its thread reads */
	struct generation *uplink_gen;
	struct mh_file_stamps mqtt_stamps; /* the broker connection's files, at its start */
	struct pending_reload *pending;
	bool replacing_uplink; /* the old one is closing; the new one starts after */
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

static void gen_release(struct mh_daemon *d, struct generation *g);
static void pending_free(struct pending_reload *p);

/* Say what the store gave up: a drop is never silent. */
static void store_drop_event(struct mh_daemon *d, const struct mh_outbox_drops *drops)
{
	mh_health_note_drops(d->health, drops);
	mh_event_store_dropped(d->outbox, drops, mh_clock_wall_ms());
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

static void try_reload(struct mh_daemon *d);

/*
 * Hand every job the buses are done with to its module. Returns whether
 * there were any; *@scheduled says whether all were scheduled work (reads,
 * relay watches, clock reads), none a command's.
 */
static bool run_done(struct mh_daemon *d, bool *scheduled)
{
	struct mh_queue_node *node = mh_queue_take_all(&d->done);
	bool any = node != NULL;

	*scheduled = true;
	while (node) {
		struct mh_queue_node *next = node->next;
		struct mh_job *job = (struct mh_job *)node;
		*scheduled &= !job->urgent;
		job->done(job);
		node = next;
	}
	return any;
}

static void drain_done(struct mh_daemon *d)
{
	bool scheduled;
	int64_t wait = 0;

	if (!run_done(d, &scheduled))
		return;
	/*
	 * Scheduled work alone may wait for a group commit, until the window
	 * ends or no meter is being read any more: the sweep is over, nothing
	 * is coming to join it. A command's job commits now.
	 */
	if (scheduled && !d->stopping)
		wait = mh_db_hold(d->db, mh_clock_mono_ms(), mh_meter_set_reading(&d->meters));
	if (wait > 0)
		uv_timer_start(&d->commit_due, on_commit_due, (uint64_t)wait, 0);
	else
		commit(d);
	try_reload(d);
}

static void on_done(uv_async_t *a)
{
	drain_done(a->data);
}

static void clock_step_event(struct mh_daemon *d, int64_t step, int64_t now, bool was_set)
{
	mh_event_clock_step(d->outbox, step, was_set, now);
	commit(d);
}

/* Once the clock can be trusted: that the gateway started, and how the last run ended. */
static void started_event(struct mh_daemon *d, int64_t now)
{
	if (d->started_told)
		return;
	d->started_told = true;
	mh_event_started(d->outbox, mh_db_last_stop(d->db), mh_clock_mono_ms() - d->started_mono,
		now);
	commit(d);
}

/* The broker went away or came back: stored like any record, so it reaches the head-end. */
static void on_link(void *ud, bool up, int64_t outage_ms)
{
	struct mh_daemon *d = ud;

	if (!d->clock.set)
		return;
	mh_event_broker(d->outbox, up, outage_ms, mh_clock_wall_ms());
	commit(d);
}

/* A port that closed or opened since the last look gives an event. */
static void watch_ports(struct mh_daemon *d, int64_t now)
{
	for (size_t b = 0; b < d->cfg->n_buses; b++) {
		struct mh_bus_port port, *seen = &d->ports_seen[b];
		const struct mh_bus_config *bc = &d->cfg->buses[b];
		bool lost, back;

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
			mh_event_port(d->outbox, bc, true, &port, 0, now);
		}
		if (back) {
			mh_event_port(d->outbox, bc, false, &port,
				mh_clock_mono_ms() - d->port_down_since[b], now);
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

	try_reload(d);
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
		.connected = d->uplink && mh_uplink_connected(d->uplink),
		.in_flight = d->uplink ? mh_uplink_in_flight(d->uplink) : 0,
		.commands = d->commands ? (mh_commands_stats(d->commands, &cst), &cst) : NULL,
	};
	json = mh_health_report(d->health, &snap);
	if (json && (!d->uplink || mh_uplink_publish_volatile(d->uplink, "health", json, true) < 0))
		mh_log_debug(MAIN, "health not published (broker not connected)");
	free(json);
}

/* ---- shutdown -------------------------------------------------------- */

static void on_uplink_closed(void *ud)
{
	struct mh_daemon *d = ud;

	d->uplink = NULL;
	gen_release(d, d->uplink_gen);
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
	mh_collect_stop(d->collect);
	for (size_t b = 0; b < d->cfg->n_buses; b++) {
		mh_bus_stop(d->buses[b]);
		d->buses[b] = NULL;
		gen_release(d, d->bus_gen[b]);
		d->bus_gen[b] = NULL;
	}
	drain_done(d);
	/* What a group commit holds goes out with the last publishes too. */
	commit(d);
	pending_free(d->pending);
	d->pending = NULL;
	mh_clocksync_stop(d->clocksync);
	/* Commands still arriving are journaled and run at the next start. */
	mh_commands_stop(d->commands);
	/* A connection being replaced closes the loop's last handle when it is gone. */
	if (!d->replacing_uplink)
		mh_uplink_stop(d->uplink, STOP_FLUSH_MS, on_uplink_closed, d);
}

/* ---- configuration generations ----------------------------------------- */

static struct generation *gen_new(struct mh_daemon *d, const struct mh_config *cfg,
	struct mh_config *owned)
{
	struct generation *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->cfg = cfg;
	g->owned = owned;
	g->next = d->gens;
	d->gens = g;
	return g;
}

static struct generation *gen_use(struct generation *g)
{
	g->users++;
	return g;
}

static void gen_release(struct mh_daemon *d, struct generation *g)
{
	mh_require(g && g->users);
	if (--g->users)
		return;
	for (struct generation **p = &d->gens; *p; p = &(*p)->next) {
		if (*p == g) {
			*p = g->next;
			break;
		}
	}
	mh_config_free(g->owned);
	free(g);
}

/* ---- the uplink ------------------------------------------------------- */

/* Connect with the mqtt settings of @g, which the uplink then reads. */
static int start_uplink(struct mh_daemon *d, struct generation *g)
{
	int64_t now = mh_clock_wall_ms();
	int rc = mh_uplink_start(&d->loop, g->cfg, d->outbox,
		mh_clock_plausible(&d->clock, now) ? now - (mh_clock_mono_ms() - d->started_mono) : 0,
		d->commands ? mh_commands_inbound : NULL, d->commands, &d->uplink);

	if (rc < 0)
		return rc;
	mh_uplink_watch(d->uplink, on_link, d);
	d->uplink_gen = gen_use(g);
	mh_reload_stamp_mqtt(g->cfg, &d->mqtt_stamps);
	return 0;
}

/* The old connection is closed: what it had in flight is sent again by the new one. */
static void on_uplink_replaced(void *ud)
{
	struct mh_daemon *d = ud;
	struct generation *was = d->uplink_gen;
	int rc;

	d->replacing_uplink = false;
	if (d->stopping) {
		gen_release(d, was);
		uv_close((uv_handle_t *)&d->done_wake, NULL);
		return;
	}
	rc = start_uplink(d, d->gen);
	if (rc < 0) {
		/* The running settings worked a moment ago: go back to them. */
		mh_log_err(MQTT, "cannot connect with the reloaded mqtt settings (%s); keeping the "
				 "previous ones until the next reload",
			strerror(-rc));
		mh_require(start_uplink(d, was) == 0);
	}
	gen_release(d, was);
	mh_uplink_pump(d->uplink);
}

static void replace_uplink(struct mh_daemon *d)
{
	struct mh_uplink *old = d->uplink;

	mh_log_notice(MQTT, "mqtt settings changed: reconnecting; the store keeps every record "
			    "not yet acknowledged");
	d->uplink = NULL;
	d->replacing_uplink = true;
	mh_uplink_stop(old, STOP_FLUSH_MS, on_uplink_replaced, d);
}

/* ---- reload ----------------------------------------------------------- */

/* Each error line of a config file that did not load, for the config_rejected event. */
static void collect_error(void *ud, const char *line)
{
	cJSON *errors = ud;

	mh_log_err(CONFIG, "%s", line);
	if (cJSON_GetArraySize(errors) < 32)
		cJSON_AddItemToArray(errors, cJSON_CreateString(line));
}

static void rejected_event(struct mh_daemon *d, const char *reason, cJSON *errors)
{
	if (!d->clock.set) {
		cJSON_Delete(errors);
		return;
	}
	mh_event_config_rejected(d->outbox, d->cfg->file, reason, errors, mh_clock_wall_ms());
	commit(d);
}

static void pending_free(struct pending_reload *p)
{
	if (!p)
		return;
	mh_reload_plan_free(&p->plan);
	mh_commands_settings_free(p->settings);
	mh_config_free(p->cfg);
	free(p);
}

/* Whether the buses the pending reload restarts have finished what they were given. */
static bool reload_ready(struct mh_daemon *d)
{
	const struct mh_reload_plan *plan = &d->pending->plan;

	for (size_t b = 0; b < d->cfg->n_buses; b++)
		if (plan->old_stops[b] && !mh_bus_idle(d->buses[b]))
			return false;
	for (size_t i = 0; i < d->meters.n; i++) {
		struct mh_meter *m = d->meters.meters[i];
		if (plan->old_stops[m->bus_index] && mh_commands_hold(d->commands, m))
			return false;
	}
	return true;
}

/*
 * Carry the pending reload out: the buses it restarts are idle, so no job
 * points at a meter about to go and no read is cut short. Everything that
 * can fail for memory is allocated before anything changes.
 */
static void apply_reload(struct mh_daemon *d)
{
	struct pending_reload *p = d->pending;
	const struct mh_reload_plan *plan = &p->plan;
	struct mh_config *fresh = p->cfg;
	const struct mh_config *old = d->cfg;
	size_t n = fresh->n_buses;
	struct mh_bus **buses = calloc(n + 1, sizeof(*buses));
	struct generation **bus_gen = calloc(n + 1, sizeof(*bus_gen));
	struct mh_bus_port *seen = calloc(n + 1, sizeof(*seen));
	int64_t *down = calloc(n + 1, sizeof(*down));
	bool *restarted = calloc(n + 1, sizeof(*restarted));
	struct generation *g = gen_new(d, fresh, fresh);
	int64_t now = mh_clock_wall_ms();

	if (!buses || !bus_gen || !seen || !down || !restarted || !g ||
		mh_meter_set_rebind(&d->meters, fresh, NULL, NULL) < 0) {
		mh_log_err(CONFIG, "out of memory: the reload waits and is tried again");
		if (g) {
			g->owned = NULL;
			g->users = 1;
			gen_release(d, g);
		}
		free(buses);
		free(bus_gen);
		free(seen);
		free(down);
		free(restarted);
		return;
	}
	d->pending = NULL;
	p->cfg = NULL; /* the generation owns it now */
	gen_use(g);
	/* Every builder's state on disk: the tables are set up again from it. */
	commit(d);
	/* The old threads first: a restarted bus opens the same device. */
	for (size_t o = 0; o < old->n_buses; o++) {
		if (!plan->old_stops[o])
			continue;
		mh_bus_stop(d->buses[o]);
		gen_release(d, d->bus_gen[o]);
	}
	for (size_t b = 0; b < n; b++) {
		size_t o = plan->from[b];
		if (plan->keep[b]) {
			buses[b] = d->buses[o];
			bus_gen[b] = d->bus_gen[o];
		} else {
			mh_require(mh_bus_start(&fresh->buses[b], &d->done, &buses[b]) == 0);
			bus_gen[b] = gen_use(g);
			restarted[b] = true;
		}
		if (o != SIZE_MAX) {
			seen[b] = d->ports_seen[o];
			down[b] = d->port_down_since[o];
		}
	}
	for (size_t i = 0; i < d->meters.n; i++) {
		struct mh_meter *m = d->meters.meters[i];
		m->bus = buses[m->bus_index];
		m->held = false;
	}
	mh_require(mh_health_rebind(d->health, fresh, restarted) == 0);
	if (mh_tables_rebind(d->tables, fresh) < 0)
		mh_log_err(STORE, "interval states not read back after the reload; the tables of "
				  "some meters start afresh");
	mh_require(mh_clocksync_rebind(d->clocksync, fresh) == 0);
	mh_collect_rebind(d->collect, fresh);
	if (d->commands) {
		mh_commands_rebind(d->commands, fresh, p->settings);
		p->settings = NULL;
	}
	free(d->buses);
	free(d->bus_gen);
	free(d->ports_seen);
	free(d->port_down_since);
	d->buses = buses;
	d->bus_gen = bus_gen;
	d->ports_seen = seen;
	d->port_down_since = down;
	free(restarted);

	struct generation *was = d->gen;
	d->gen = g;
	d->cfg = fresh;
	if (fresh->schedule.interval_ms != old->schedule.interval_ms && d->clock.set)
		d->next_boundary = mh_schedule_next(now, fresh->schedule.interval_ms);
	mh_db_set_commit_window(d->db, fresh->store.commit_window_ms);
	if (fresh->health.interval_ms != old->health.interval_ms && !d->stopping)
		uv_timer_start(&d->health_timer, on_health, fresh->health.interval_ms,
			fresh->health.interval_ms);
	/* The reads the restarted buses held back, for the boundary they belong to. */
	mh_collect_catch_up(d->collect);
	if (plan->mqtt && d->uplink)
		replace_uplink(d);

	mh_log_notice(CONFIG, "reloaded %s: %zu buses, %zu meters (%zu changes)", fresh->file,
		fresh->n_buses, d->meters.n, plan->n_changes);
	if (d->clock.set)
		mh_event_config_reloaded(d->outbox, fresh->file, plan->changes, now);
	commit(d);
	if (d->clock.set)
		notify_running(d);
	gen_release(d, was);
	pending_free(p);
}

/* Apply the pending reload once its buses are idle (called after every turn's jobs). */
static void try_reload(struct mh_daemon *d)
{
	if (!d->pending || d->stopping || d->replacing_uplink)
		return;
	/* Jobs handed back but not yet seen still point at their meters. */
	bool scheduled;
	if (run_done(d, &scheduled))
		commit(d);
	if (!reload_ready(d)) {
		if (!d->pending->told && mh_clock_mono_ms() - d->pending->since_mono >
						 (int64_t)d->cfg->schedule.interval_ms) {
			d->pending->told = true;
			mh_log_notice(CONFIG, "the reload waits for the buses it restarts to finish "
					      "their reads and commands");
		}
		return;
	}
	apply_reload(d);
}

/*
 * SIGHUP (mosquitto's model): parse and check the file into a fresh
 * configuration, and swap only when all of it is good. Keys a running
 * daemon cannot take are refused by name and the old configuration runs
 * on. Buses whose thread would see the same thing keep running untouched;
 * the others restart once idle (mh_collect_catch_up() reads what they
 * held back), meters keep their state by id.
 */
static void reload(struct mh_daemon *d)
{
	cJSON *errors = cJSON_CreateArray();
	struct pending_reload *p = calloc(1, sizeof(*p));
	char err[256];
	int rc = errors && p ? mh_config_load(d->cfg->file, collect_error, errors, &p->cfg) : -ENOMEM;

	if (rc < 0) {
		mh_log_err(CONFIG, "SIGHUP: %s has errors (above); keeping the running configuration",
			d->cfg->file);
		rejected_event(d, rc == -EINVAL ? "the file has errors" : strerror(-rc), errors);
		pending_free(p);
		return;
	}
	if (mh_config_restart_keys(d->cfg, p->cfg, collect_error, errors) ||
		d->cfg->commands.enabled != p->cfg->commands.enabled) {
		if (d->cfg->commands.enabled != p->cfg->commands.enabled)
			collect_error(errors, "commands: adding or removing the section takes effect "
					      "only after a restart");
		mh_log_err(CONFIG, "SIGHUP: %s changes keys that take effect only after a restart; "
				   "keeping the running configuration",
			d->cfg->file);
		rejected_event(d, "keys that take effect only after a restart changed", errors);
		pending_free(p);
		return;
	}
	if (p->cfg->commands.enabled &&
		mh_commands_prepare(p->cfg, err, sizeof(err), &p->settings) < 0) {
		cJSON_AddItemToArray(errors, cJSON_CreateString(err));
		rejected_event(d, "the commands key or protect windows cannot be loaded", errors);
		pending_free(p);
		return;
	}
	cJSON_Delete(errors);
	if (mh_reload_plan(d->cfg, &d->mqtt_stamps, p->cfg, &p->plan) < 0) {
		mh_log_err(CONFIG, "SIGHUP: out of memory; keeping the running configuration");
		pending_free(p);
		return;
	}
	if (d->pending)
		mh_log_notice(CONFIG, "SIGHUP: this file replaces the reload still waiting");
	pending_free(d->pending);
	p->since_mono = mh_clock_mono_ms();
	d->pending = p;
	for (size_t i = 0; i < d->meters.n; i++) {
		struct mh_meter *m = d->meters.meters[i];
		m->held = p->plan.old_stops[m->bus_index];
	}
	try_reload(d);
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
	free(d->bus_gen);
	free(d->ports_seen);
	free(d->port_down_since);
	pending_free(d->pending);
	while (d->gens) {
		struct generation *g = d->gens;
		d->gens = g->next;
		mh_config_free(g->owned);
		free(g);
	}
}

int mh_daemon_run(const struct mh_config *cfg)
{
	struct mh_daemon daemon = { .cfg = cfg }, *d = &daemon;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	d->started_mono = mh_clock_mono_ms();
	mh_clock_init(&d->clock, mh_clock_floor_ms(), CLOCK_STEP_MS);
	d->buses = calloc(cfg->n_buses + 1, sizeof(*d->buses));
	d->bus_gen = calloc(cfg->n_buses + 1, sizeof(*d->bus_gen));
	d->gen = gen_new(d, cfg, NULL);
	d->ports_seen = calloc(cfg->n_buses + 1, sizeof(*d->ports_seen));
	d->port_down_since = calloc(cfg->n_buses + 1, sizeof(*d->port_down_since));
	d->health = mh_health_new(cfg);
	rc = mh_meter_set_init(&d->meters, cfg);
	if (rc || !d->buses || !d->bus_gen || !d->gen || !d->ports_seen || !d->port_down_since ||
		!d->health) {
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
	gen_use(d->gen);
	rc = start_uplink(d, d->gen);
	if (rc < 0) {
		mh_commands_stop(d->commands);
		uv_close((uv_handle_t *)&d->done_wake, NULL);
		goto out;
	}
	for (size_t b = 0; b < cfg->n_buses; b++) {
		rc = mh_bus_start(&cfg->buses[b], &d->done, &d->buses[b]);
		mh_require(rc == 0);
		d->bus_gen[b] = gen_use(d->gen);
	}
	for (size_t i = 0; i < d->meters.n; i++)
		d->meters.meters[i]->bus = d->buses[d->meters.meters[i]->bus_index];
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
