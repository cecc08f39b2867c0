// SPDX-License-Identifier: MIT
#include "collect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "records.h"
#include "schedule.h"

struct mh_collect {
	const struct mh_config *cfg;
	struct mh_meter_set *meters;
	struct mh_outbox *outbox;
	struct mh_tables *tables;
	struct mh_health *health;
	int64_t boundary, next_boundary; /* the one read last, and the next */
	bool stopped; /* the buses are stopping: nothing more is submitted */
	uint64_t turns; /* scheduled reads submitted */
	uint32_t backfill_day; /* local YYYYMMDD of the last look for missing daily freezes */
};

int mh_collect_new(const struct mh_config *cfg, struct mh_meter_set *meters,
	struct mh_outbox *outbox, struct mh_tables *tables, struct mh_health *health,
	struct mh_collect **out)
{
	struct mh_collect *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	*c = (struct mh_collect){ .cfg = cfg, .meters = meters, .outbox = outbox,
		.tables = tables, .health = health };
	*out = c;
	return 0;
}

void mh_collect_rebind(struct mh_collect *c, const struct mh_config *cfg)
{
	c->cfg = cfg;
}

void mh_collect_free(struct mh_collect *c)
{
	free(c);
}

/* ---- reads and their retries ------------------------------------------ */

/* A boundary read of a meter with interval tables failed: try again within the window. */
static void plan_retry(struct mh_collect *c, struct mh_meter *m, const struct mh_job *job)
{
	int64_t at;

	if (!m->table || m->retries >= c->cfg->schedule.retries)
		return;
	at = mh_schedule_retry_at(mh_clock_wall_ms(), c->next_boundary,
		c->cfg->schedule.interval_ms, m->retries,
		job->reading.duration_ms + m->bus_cfg->timeout_ms);
	if (!at)
		return;
	m->retry_at = at;
	m->retry_due = job->due_ms;
	m->retries++;
}

/*
 * A meter's standing changed: the first failure of a streak is logged, the
 * ones after it only at debug level (a dead meter must not fill the log);
 * going offline and coming back are events the head-end sees.
 */
static void standing_changed(struct mh_collect *c, struct mh_meter *m, const struct mh_job *job,
	enum mh_health_change change, unsigned failed)
{
	const struct mh_reading *r = &job->reading;
	int64_t now = mh_clock_wall_ms();
	cJSON *obj;

	if (r->quality != MH_QUALITY_GOOD) {
		if (change == MH_HEALTH_FIRST_FAILURE || change == MH_HEALTH_OFFLINE)
			mh_log_warn(BUS, "%s: meter %s: %s: %s%s", m->bus_cfg->name, m->cfg->id,
				mh_quality_name(r->quality), r->error,
				change == MH_HEALTH_OFFLINE ? "; offline now" : "");
		else
			mh_log_debug(BUS, "%s: meter %s: %s: %s (%u boundaries in a row)",
				m->bus_cfg->name, m->cfg->id, mh_quality_name(r->quality), r->error,
				failed);
	}
	if (change != MH_HEALTH_OFFLINE && change != MH_HEALTH_ONLINE)
		return;
	if (change == MH_HEALTH_ONLINE)
		mh_log_notice(BUS, "%s: meter %s answers again after %u failed boundaries",
			m->bus_cfg->name, m->cfg->id, failed);
	obj = mh_records_event(c->outbox, change == MH_HEALTH_OFFLINE ? "meter_offline"
								     : "meter_online", now);
	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "bus", m->bus_cfg->name);
	cJSON_AddNumberToObject(obj, "failed_boundaries", failed);
	if (change == MH_HEALTH_OFFLINE) {
		cJSON_AddStringToObject(obj, "quality", mh_quality_name(r->quality));
		cJSON_AddStringToObject(obj, "error", r->error);
	}
	mh_records_store(c->outbox, MH_RECORD_EVENT, "event", obj, now);
}

/* ---- the relay, watched ------------------------------------------------ */

/* A meter the gateway can trip has its relay read after each good read. */
static bool watches_relay(const struct mh_meter *m)
{
	if (m->bus_cfg->protocol == MH_PROTO_DLT645)
		return m->cfg->has_control || m->cfg->profile->control.present;
	return m->cfg->profile->control.present;
}

static const char *relay_name(bool open)
{
	return open ? "open" : "closed";
}

/*
 * The relay moved and no command of the gateway moved it: a local
 * prepayment trip, the customer's button, a tamper, or another master.
 */
static void relay_changed(struct mh_collect *c, const struct mh_meter *m, const struct mh_relay *r)
{
	int64_t now = mh_clock_wall_ms();
	cJSON *obj = mh_records_event(c->outbox, "relay_changed", now);

	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "bus", m->bus_cfg->name);
	cJSON_AddStringToObject(obj, "relay", relay_name(r->open));
	cJSON_AddStringToObject(obj, "was", relay_name(m->relay_seen.open));
	if (r->has_commanded) {
		cJSON_AddStringToObject(obj, "commanded", relay_name(r->commanded_open));
		cJSON_AddBoolToObject(obj, "keep_power", r->keep_power);
	}
	mh_records_store(c->outbox, MH_RECORD_EVENT, "event", obj, now);
	mh_log_notice(BUS, "%s: meter %s: relay %s without a command of this gateway",
		m->bus_cfg->name, m->cfg->id, relay_name(r->open));
}

static void relay_done(struct mh_job *job)
{
	struct mh_collect *c = job->ud;
	struct mh_meter *m = job->meter;

	m->relay_watching = false;
	/* A command that started meanwhile reads the relay itself and explains what it sees. */
	if (!job->canceled && job->result == 0 && job->relay.known && !m->cmd_head) {
		if (m->relay_seen.known && m->relay_seen.open != job->relay.open)
			relay_changed(c, m, &job->relay);
		m->relay_seen = job->relay;
	}
	mh_job_free(job);
}

static void watch_relay(struct mh_collect *c, struct mh_meter *m)
{
	struct mh_job *job;

	if (c->stopped || !watches_relay(m) || m->cmd_head || m->relay_watching || m->held)
		return;
	job = mh_job_new(MH_JOB_RECALL, m, m->slot, relay_done, c);
	if (!job)
		return;
	if (m->bus_cfg->protocol == MH_PROTO_MODBUS) {
		const struct mh_modbus_relay_config *r = &m->cfg->profile->control.relay;
		job->relay_point = (struct mh_relay_point){ r->table, r->address, r->open_when };
	}
	m->relay_watching = true;
	mh_bus_submit(m->bus, job, false);
}

/* ---- reads and their results ------------------------------------------- */

static void feed(struct mh_collect *c, size_t b);

static void read_done(struct mh_job *job)
{
	struct mh_collect *c = job->ud;
	struct mh_meter *m = job->meter;

	m->busy = false;
	if (!job->late && job->due_ms > m->last_due_ms) {
		/* The bus made it a read of a later boundary (see reader.c): the one it was for is
		   passed over, that one is read. */
		m->skipped++;
		mh_health_note_skipped(c->health, m->bus_index, 1);
		m->last_due_ms = job->due_ms;
		if (m->due && job->due_ms >= m->due_ms)
			m->due = false;
	}
	if (!job->canceled) {
		unsigned failed;
		mh_records_reading(c->outbox, job);
		mh_tables_observe(c->tables, job);
		enum mh_health_change change = mh_health_note(c->health, m->bus_index, m->slot,
			job->due_ms, &job->reading, &failed);
		standing_changed(c, m, job, change, failed);
		if (job->reading.quality == MH_QUALITY_GOOD) {
			m->last_good_ms = job->reading.read_at_ms;
			watch_relay(c, m);
		} else {
			plan_retry(c, m, job);
		}
		feed(c, m->bus_index);
	}
	mh_job_free(job);
}

/* ---- backfill from the meters' own frozen data ------------------------ */

/* A backfill is tried this often before it is given up with an event. */
#define BACKFILL_TRIES 3

static void frozen_done(struct mh_job *job);

static void submit_frozen(struct mh_collect *c, struct mh_meter *m, unsigned back,
	unsigned attempt)
{
	struct mh_job *job = mh_job_new(MH_JOB_FROZEN, m, m->slot, frozen_done, c);

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
	struct mh_collect *c = job->ud;
	const struct mh_meter *m = job->meter;
	int rc = job->canceled ? 0 : mh_tables_frozen(c->tables, job);

	if (rc == -ENODATA || rc == -ERANGE) {
		if (rc == -ENODATA && job->attempt + 1 < BACKFILL_TRIES) {
			submit_frozen(c, job->meter, job->back, job->attempt + 1);
		} else {
			int64_t now = mh_clock_wall_ms();
			cJSON *obj = mh_records_event(c->outbox, "backfill_failed", now);
			cJSON_AddStringToObject(obj, "meter", m->cfg->id);
			cJSON_AddNumberToObject(obj, "days_back", job->back);
			cJSON_AddStringToObject(obj, "reason",
				rc == -ERANGE		 ? "the meter's freeze is dated after the gateway's clock"
				: job->reading.error[0] ? job->reading.error
							: "the meter gave no frozen energy");
			mh_log_warn(SCHED, "meter %s: daily freeze %u days back not read back: %s",
				m->cfg->id, job->back, job->reading.error);
			mh_records_store(c->outbox, MH_RECORD_EVENT, "event", obj, now);
		}
	}
	mh_job_free(job);
}

/* Once a day, after the meters froze: the days the tables lack, from the meters. */
static void plan_backfill(struct mh_collect *c, int64_t now)
{
	time_t s = (time_t)(now / 1000);
	struct tm tm;
	uint32_t today;

	if (!c->cfg->schedule.backfill_days)
		return;
	localtime_r(&s, &tm);
	today = (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
	if (today == c->backfill_day ||
		(unsigned)(tm.tm_hour * 60 + tm.tm_min) < c->cfg->schedule.backfill_at_min)
		return;
	c->backfill_day = today;
	for (size_t i = 0; i < c->meters->n; i++)
		mh_tables_backfill_plan(c->tables, c->meters->meters[i], now,
			c->cfg->schedule.backfill_days, want_frozen, c);
}

/* ---- boundaries ------------------------------------------------------ */

/*
 * Scheduled reads. A boundary makes every meter due; each bus is fed from
 * its due meters, least recently read first, keeping at most FEED_DEPTH
 * reads queued or running on it. A bus that can read every meter within
 * the interval reads them all at the boundary, in configuration order; one
 * that cannot takes turns: every meter is read equally often, and a read
 * made after the next boundary is labelled with that boundary (reader.c).
 */
#define FEED_DEPTH 2

/* The meters of bus @b are contiguous in the set: its first, and one past its last. */
static void bus_range(const struct mh_collect *c, size_t b, size_t *from, size_t *to)
{
	size_t i = 0;

	while (i < c->meters->n && c->meters->meters[i]->bus_index < b)
		i++;
	*from = i;
	while (i < c->meters->n && c->meters->meters[i]->bus_index == b)
		i++;
	*to = i;
}

static void submit_read(struct mh_collect *c, struct mh_meter *m, int64_t boundary)
{
	struct mh_job *job = mh_job_new_read(m, m->slot, m->cfg->profile->n_points, read_done, c);

	if (!job) {
		mh_log_err(SCHED, "out of memory: meter %s not read", m->cfg->id);
		return;
	}
	job->due_ms = boundary;
	job->interval_ms = c->cfg->schedule.interval_ms;
	m->busy = true;
	m->last_due_ms = boundary;
	m->turn = ++c->turns;
	/* A new boundary: a retry of the last one that did not happen is moot. */
	m->retry_at = 0;
	m->retries = 0;
	mh_bus_submit(m->bus, job, false);
}

/* Keep bus @b fed: its due meters that were read longest ago, first. */
static void feed(struct mh_collect *c, size_t b)
{
	size_t from, to, busy = 0;

	if (c->stopped)
		return;
	bus_range(c, b, &from, &to);
	for (size_t i = from; i < to; i++)
		busy += c->meters->meters[i]->busy;
	while (busy < FEED_DEPTH) {
		struct mh_meter *next = NULL;
		for (size_t i = from; i < to; i++) {
			struct mh_meter *m = c->meters->meters[i];
			if (m->due && !m->busy && !m->held && (!next || m->turn < next->turn))
				next = m;
		}
		if (!next)
			return;
		next->due = false;
		submit_read(c, next, next->due_ms);
		busy++;
	}
}

void mh_collect_boundary(struct mh_collect *c, int64_t boundary, int64_t next_ms)
{
	size_t skipped[c->cfg->n_buses + 1];

	c->boundary = boundary;
	c->next_boundary = next_ms;
	memset(skipped, 0, sizeof(skipped));
	for (size_t i = 0; i < c->meters->n; i++) {
		struct mh_meter *m = c->meters->meters[i];

		if (m->due) {
			/* Its read for the last boundary has not started: the bus is behind. */
			m->skipped++;
			skipped[m->bus_index]++;
		}
		m->due = true;
		m->due_ms = boundary;
	}
	for (size_t b = 0; b < c->cfg->n_buses; b++) {
		feed(c, b);
		/* Once per bus and boundary, however many meters it could not fit. */
		if (!skipped[b])
			continue;
		mh_health_note_skipped(c->health, b, skipped[b]);
		mh_log_warn(SCHED, "%s: %zu of %zu meters not reached since the last boundary; the "
				   "bus cannot read them all every interval (see health: sweep_ms)",
			c->cfg->buses[b].name, skipped[b], c->cfg->buses[b].n_meters);
	}
}

/* Submit the retries whose time has come; returns when the next one is due (0: none). */
static int64_t submit_retries(struct mh_collect *c, int64_t now)
{
	int64_t next = 0;

	for (size_t i = 0; i < c->meters->n; i++) {
		struct mh_meter *m = c->meters->meters[i];
		struct mh_job *job;

		if (!m->retry_at)
			continue;
		if (m->retry_at > now || m->busy || m->held) {
			if (!next || m->retry_at < next)
				next = m->retry_at;
			continue;
		}
		m->retry_at = 0;
		job = mh_job_new_read(m, m->slot, m->cfg->profile->n_points, read_done, c);
		if (!job)
			continue;
		job->due_ms = m->retry_due;
		job->interval_ms = c->cfg->schedule.interval_ms;
		job->late = true;
		m->busy = true;
		mh_bus_submit(m->bus, job, false);
	}
	return next;
}


void mh_collect_catch_up(struct mh_collect *c)
{
	for (size_t b = 0; b < c->cfg->n_buses; b++)
		feed(c, b);
}

void mh_collect_stop(struct mh_collect *c)
{
	c->stopped = true;
}

int64_t mh_collect_tick(struct mh_collect *c, int64_t now)
{
	plan_backfill(c, now);
	return submit_retries(c, now);
}
