// SPDX-License-Identifier: MIT
#include "clocksync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

#include "bus.h"
#include "clock.h"
#include "job.h"
#include "log.h"
#include "records.h"

/* The first reads after start (or after check_every, if shorter), spread per meter of a bus. */
#define FIRST_CHECK_MS (5 * 60 * 1000)
#define SPREAD_MS 200
/* A meter is read again this long after a broadcast meant for it. */
#define VERIFY_MS 3000
/* No broadcast this close to midnight or to the daily freeze (minutes). */
#define QUIET_MIN 5

struct mh_clocksync {
	const struct mh_config *cfg;
	struct mh_meter_set *meters;
	struct mh_outbox *outbox;
	bool *broadcast_due;	/* per bus */
	bool stopped;
};

static bool is_dlt645(const struct mh_meter *m)
{
	return m->bus_cfg->protocol == MH_PROTO_DLT645;
}

/* Whether the kernel says the system clock is synchronised (NTP, PTP, ...). */
static bool system_clock_synced(void)
{
	struct timex tx = { 0 };
	int state = adjtimex(&tx);

	return state >= 0 && state != TIME_ERROR && !(tx.status & STA_UNSYNC);
}

/* Minutes of local time @now_ms lies within QUIET_MIN of @at_min, the day wrapping. */
static bool near(int now_min, int at_min)
{
	int d = abs(now_min - at_min);

	return d < QUIET_MIN || 1440 - d < QUIET_MIN;
}

/* Meters refuse a time set around midnight and the freeze; and a freeze must not move. */
static bool quiet_time(const struct mh_clocksync *c, int64_t now_ms)
{
	time_t t = (time_t)(now_ms / 1000);
	struct tm local;
	int min;

	localtime_r(&t, &local);
	min = local.tm_hour * 60 + local.tm_min;
	return near(min, 0) || near(min, (int)c->cfg->schedule.daily_freeze_min);
}

static void drift_event(struct mh_clocksync *c, const struct mh_meter *m, int64_t drift,
	const int64_t *after, bool corrected, const char *reason, int64_t now)
{
	cJSON *obj = mh_records_event(c->outbox, "clock_drift", now);

	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "bus", m->bus_cfg->name);
	/* Positive: the meter is ahead of the gateway. */
	cJSON_AddNumberToObject(obj, "drift_s", (double)drift / 1000.0);
	if (after)
		cJSON_AddNumberToObject(obj, "after_s", (double)*after / 1000.0);
	cJSON_AddBoolToObject(obj, "corrected", corrected);
	if (reason)
		cJSON_AddStringToObject(obj, "reason", reason);
	mh_records_store(c->outbox, MH_RECORD_EVENT, "event", obj, now);
	mh_log(corrected ? LOG_NOTICE : LOG_WARNING, MH_LOG_CLOCK,
		"meter %s: clock %+.1f s off%s%s", m->cfg->id, (double)drift / 1000.0,
		corrected ? ", corrected by broadcast time" : ": ", corrected ? "" : reason);
}

static void on_clock_read(struct mh_job *job)
{
	struct mh_clocksync *c = job->ud;
	struct mh_meter *m = job->meter;
	struct mh_meter_clock *mc = &m->clock;
	int64_t now = mh_clock_wall_ms(), drift, mag;
	__typeof__(c->cfg->clock) const *cc = &c->cfg->clock;

	if (job->canceled || c->stopped) {
		mh_job_free(job);
		return;
	}
	mc->busy = false;
	if (job->result != 0) {
		/* A meter that does not answer is the reading's business; try again next time. */
		mh_log_debug(CLOCK, "meter %s: clock not read: %s", m->cfg->id, job->reading.error);
		mc->verifying = false;
		mh_job_free(job);
		return;
	}
	drift = job->meter_clock_ms - job->clock_read_at_ms;
	mag = drift < 0 ? -drift : drift;
	if (mc->verifying) {
		mc->verifying = false;
		if (mag <= (int64_t)cc->max_drift_ms)
			drift_event(c, m, mc->drift_before, &drift, true, NULL, now);
		else
			drift_event(c, m, mc->drift_before, &drift, false,
				"the meter did not take the broadcast time", now);
	} else if (mag > (int64_t)cc->max_correction_ms) {
		drift_event(c, m, drift, NULL, false,
			"more than meters take by broadcast (clock.max_correction): set it on site", now);
	} else if (mag > (int64_t)cc->max_drift_ms) {
		if (!cc->sync)
			drift_event(c, m, drift, NULL, false, "clock.sync is off", now);
		else if (cc->require_synced && !system_clock_synced())
			drift_event(c, m, drift, NULL, false,
				"the gateway's own clock is not synchronised", now);
		else {
			mc->verifying = true;
			mc->drift_before = drift;
			c->broadcast_due[m->bus_index] = true;
		}
	}
	mh_job_free(job);
}

static void on_broadcast(struct mh_job *job)
{
	if (!job->canceled && job->result != 0)
		mh_log_warn(CLOCK, "%s: broadcast time failed: %s", job->meter->bus_cfg->name,
			job->reading.error);
	mh_job_free(job);
}

/* Whether a command is under way on @bus (no time set may cross it). */
static bool commands_on_bus(const struct mh_clocksync *c, size_t bus)
{
	for (size_t i = 0; i < c->meters->n; i++)
		if (c->meters->meters[i]->bus_index == bus &&
			(c->meters->meters[i]->cmd_head || c->meters->meters[i]->held))
			return true;
	return false;
}

static void broadcast(struct mh_clocksync *c, size_t bus, int64_t now)
{
	struct mh_meter *first = NULL;
	struct mh_job *job;

	for (size_t i = 0; i < c->meters->n && !first; i++)
		if (c->meters->meters[i]->bus_index == bus)
			first = c->meters->meters[i];
	job = first ? mh_job_new(MH_JOB_TIME_BROADCAST, first, first->slot, on_broadcast, c) : NULL;
	if (!job)
		return;
	c->broadcast_due[bus] = false;
	mh_log_notice(CLOCK, "%s: broadcasting the time to correct its meters' clocks",
		first->bus_cfg->name);
	mh_bus_submit(first->bus, job, false);
	/* Read back the meters it was for, once it has gone out. */
	for (size_t i = 0; i < c->meters->n; i++) {
		struct mh_meter_clock *mc = &c->meters->meters[i]->clock;
		if (c->meters->meters[i]->bus_index == bus && mc->verifying)
			mc->next_check = now + VERIFY_MS;
	}
}

int64_t mh_clocksync_tick(struct mh_clocksync *c, int64_t now_ms)
{
	int64_t next = 0;

	if (c->stopped)
		return 0;
	for (size_t b = 0; b < c->cfg->n_buses; b++)
		if (c->broadcast_due[b] && !commands_on_bus(c, b) && !quiet_time(c, now_ms))
			broadcast(c, b, now_ms);
	for (size_t i = 0; i < c->meters->n; i++) {
		struct mh_meter *m = c->meters->meters[i];
		struct mh_meter_clock *mc = &m->clock;

		if (!is_dlt645(m) || !m->bus || m->held)
			continue;
		if (!mc->next_check)
			mc->next_check = now_ms + (int64_t)m->slot * SPREAD_MS +
				(c->cfg->clock.check_every_ms < FIRST_CHECK_MS
						? c->cfg->clock.check_every_ms
						: FIRST_CHECK_MS);
		if (!mc->busy && now_ms >= mc->next_check && !c->broadcast_due[m->bus_index]) {
			struct mh_job *job = mh_job_new(MH_JOB_CLOCK, m, m->slot, on_clock_read, c);
			if (job) {
				mc->busy = true;
				mc->next_check = now_ms + c->cfg->clock.check_every_ms;
				mh_bus_submit(m->bus, job, false);
			}
		}
		if (!mc->busy && (!next || mc->next_check < next))
			next = mc->next_check;
	}
	return next;
}

int mh_clocksync_new(const struct mh_config *cfg, struct mh_meter_set *meters,
	struct mh_outbox *outbox, struct mh_clocksync **out)
{
	struct mh_clocksync *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->cfg = cfg;
	c->meters = meters;
	c->outbox = outbox;
	c->broadcast_due = calloc(cfg->n_buses + 1, sizeof(*c->broadcast_due));
	if (!c->broadcast_due) {
		mh_clocksync_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

int mh_clocksync_rebind(struct mh_clocksync *c, const struct mh_config *cfg)
{
	bool *due = calloc(cfg->n_buses + 1, sizeof(*due));

	if (!due)
		return -ENOMEM;
	/* A broadcast owed to a bus is found owed again by the next clock reads. */
	free(c->broadcast_due);
	c->broadcast_due = due;
	c->cfg = cfg;
	return 0;
}

void mh_clocksync_stop(struct mh_clocksync *c)
{
	if (c)
		c->stopped = true;
}

void mh_clocksync_free(struct mh_clocksync *c)
{
	if (!c)
		return;
	free(c->broadcast_due);
	free(c);
}
