// SPDX-License-Identifier: MIT
#include "health.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

/* One meter's boundary reads: for the day's success rate and whether it is online. */
struct meter_state {
	int64_t due_ms;    /* the boundary last read (0: none yet) */
	bool good;         /* it was read whole, at some try */
	bool failed;       /* a try of it failed (the boundary is counted once) */
	unsigned failures; /* boundaries failed in a row */
	unsigned duration_ms; /* of its last read: its share of a sweep */
};

struct bus_counters {
	uint64_t reads, good, timeout, error;
	uint64_t latency_sum_ms;
	unsigned latency_max_ms;
	uint64_t total_reads, total_good;
	uint64_t skipped; /* meter-boundaries passed over: the bus was behind */
	struct mh_link_counters reported; /* the link counters at the last report */
	struct meter_state *meters;       /* by slot */
	uint32_t day;                     /* local YYYYMMDD that the two below count */
	uint64_t day_boundaries, day_read; /* meter-boundaries attempted, read whole */
	int64_t last_good_ms;             /* read_at of the newest good reading (0: none) */
};

struct mh_health {
	const struct mh_config *cfg;
	struct bus_counters *buses;
	uint64_t dropped, lost;
};

struct mh_health *mh_health_new(const struct mh_config *cfg)
{
	struct mh_health *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->cfg = cfg;
	h->buses = calloc(cfg->n_buses + 1, sizeof(*h->buses));
	if (!h->buses) {
		free(h);
		return NULL;
	}
	for (size_t b = 0; b < cfg->n_buses; b++) {
		h->buses[b].meters = calloc(cfg->buses[b].n_meters + 1, sizeof(struct meter_state));
		if (!h->buses[b].meters) {
			mh_health_free(h);
			return NULL;
		}
	}
	return h;
}

static void free_buses(struct bus_counters *buses, size_t n)
{
	for (size_t b = 0; buses && b < n; b++)
		free(buses[b].meters);
	free(buses);
}

void mh_health_free(struct mh_health *h)
{
	if (!h)
		return;
	free_buses(h->buses, h->cfg->n_buses);
	free(h);
}

int mh_health_rebind(struct mh_health *h, const struct mh_config *fresh, const bool *restarted)
{
	struct bus_counters *next = calloc(fresh->n_buses + 1, sizeof(*next));

	if (!next)
		return -ENOMEM;
	for (size_t b = 0; b < fresh->n_buses; b++) {
		const struct mh_bus_config *bus = &fresh->buses[b];
		next[b].meters = calloc(bus->n_meters + 1, sizeof(struct meter_state));
		if (!next[b].meters) {
			free_buses(next, fresh->n_buses);
			return -ENOMEM;
		}
		for (size_t o = 0; o < h->cfg->n_buses; o++) {
			const struct mh_bus_config *old = &h->cfg->buses[o];
			struct meter_state *states = next[b].meters;
			if (strcmp(old->name, bus->name))
				continue;
			/* The bus by its name, its meters by their ids: the day goes on. */
			next[b] = h->buses[o];
			next[b].meters = states;
			/* A new port object counts its link from 0. */
			if (restarted[b])
				memset(&next[b].reported, 0, sizeof(next[b].reported));
			for (size_t i = 0; i < bus->n_meters; i++)
				for (size_t j = 0; j < old->n_meters; j++)
					if (!strcmp(old->meters[j].id, bus->meters[i].id))
						states[i] = h->buses[o].meters[j];
		}
	}
	free_buses(h->buses, h->cfg->n_buses);
	h->buses = next;
	h->cfg = fresh;
	return 0;
}

/* The local date (YYYYMMDD) that @ms falls on. */
static uint32_t local_day(int64_t ms)
{
	time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	return (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
}

/*
 * A try at reading boundary @due_ms of a meter. The day's rate counts
 * meter-boundaries, not tries: a boundary is read when any of its tries
 * (the first read and its retries) read every point. A boundary whose try
 * failed counts towards going offline at once; a later success undoes it.
 */
static enum mh_health_change note_boundary(struct bus_counters *c, struct meter_state *st,
	int64_t due_ms, bool good, unsigned offline_after, unsigned *failed)
{
	enum mh_health_change change = MH_HEALTH_SAME;

	uint32_t day = local_day(due_ms);
	/* A boundary of a day already over (a retry after midnight) counts for none. */
	bool counted = day >= c->day;

	if (day > c->day) {
		c->day = day;
		c->day_boundaries = c->day_read = 0;
	}
	if (due_ms != st->due_ms) {
		st->due_ms = due_ms;
		st->good = st->failed = false;
		if (counted)
			c->day_boundaries++;
	}
	*failed = st->failures;
	if (good && !st->good) {
		if (st->failures >= offline_after)
			change = MH_HEALTH_ONLINE;
		st->good = true;
		st->failures = 0;
		if (counted)
			c->day_read++;
	} else if (!good && !st->good && !st->failed) {
		st->failed = true;
		*failed = ++st->failures;
		if (st->failures == offline_after)
			change = MH_HEALTH_OFFLINE;
		else if (st->failures == 1)
			change = MH_HEALTH_FIRST_FAILURE;
	}
	return change;
}

enum mh_health_change mh_health_note(struct mh_health *h, size_t bus, size_t slot, int64_t due_ms,
	const struct mh_reading *r, unsigned *failed)
{
	struct bus_counters *c = &h->buses[bus];
	bool good = r->quality == MH_QUALITY_GOOD;

	c->reads++;
	c->total_reads++;
	switch (r->quality) {
	case MH_QUALITY_GOOD:
		c->good++;
		c->total_good++;
		break;
	case MH_QUALITY_TIMEOUT:
		c->timeout++;
		break;
	default:
		c->error++;
	}
	c->latency_sum_ms += r->duration_ms;
	if (r->duration_ms > c->latency_max_ms)
		c->latency_max_ms = r->duration_ms;
	if (good && r->read_at_ms > c->last_good_ms)
		c->last_good_ms = r->read_at_ms;
	*failed = 0;
	if (slot >= h->cfg->buses[bus].n_meters)
		return MH_HEALTH_SAME;
	c->meters[slot].duration_ms = r->duration_ms;
	return note_boundary(c, &c->meters[slot], due_ms, good, h->cfg->health.offline_after,
		failed);
}

void mh_health_note_skipped(struct mh_health *h, size_t bus, size_t n)
{
	h->buses[bus].skipped += n;
}

void mh_health_note_drops(struct mh_health *h, const struct mh_outbox_drops *d)
{
	for (size_t i = 0; i < sizeof(d->by_type) / sizeof(d->by_type[0]); i++)
		h->dropped += d->by_type[i];
	h->lost += d->lost;
}

/* Remote commands since start: what came, how it ended, why it was refused. */
static void add_commands(cJSON *obj, const struct mh_commands_stats *st)
{
	cJSON *cmd = cJSON_AddObjectToObject(obj, "commands"), *rejected;

	if (!cmd)
		return;
	cJSON_AddNumberToObject(cmd, "received", (double)st->received);
	cJSON_AddNumberToObject(cmd, "accepted", (double)st->accepted);
	cJSON_AddNumberToObject(cmd, "succeeded", (double)st->succeeded);
	cJSON_AddNumberToObject(cmd, "failed", (double)st->failed);
	cJSON_AddNumberToObject(cmd, "expired", (double)st->expired);
	cJSON_AddNumberToObject(cmd, "active", (double)st->active);
	cJSON_AddNumberToObject(cmd, "redelivered", (double)st->redelivered);
	cJSON_AddNumberToObject(cmd, "unpublished", (double)st->unpublished);
	cJSON_AddNumberToObject(cmd, "journal_errors", (double)st->journal_errors);
	rejected = cJSON_AddObjectToObject(cmd, "rejected");
	for (int r = MH_CMD_OK + 1; rejected && r < MH_CMD_REASONS; r++)
		if (st->rejected[r])
			cJSON_AddNumberToObject(rejected, mh_cmd_reason_name(r),
				(double)st->rejected[r]);
}

/* @a - @b, field by field: what a period added. */
static struct mh_link_counters link_delta(const struct mh_link_counters *a,
	const struct mh_link_counters *b)
{
	return (struct mh_link_counters){
		.frames = a->frames - b->frames,
		.timeouts = a->timeouts - b->timeouts,
		.checksum_errors = a->checksum_errors - b->checksum_errors,
		.garbled = a->garbled - b->garbled,
		.wrong_address = a->wrong_address - b->wrong_address,
		.echo = a->echo - b->echo,
		.late_replies = a->late_replies - b->late_replies,
		.garbage_bytes = a->garbage_bytes - b->garbage_bytes,
		.refusals = a->refusals - b->refusals,
	};
}

/*
 * The line's counters under @key. A class the protocol's link cannot see
 * is left out rather than shown as a 0 that would mean "none seen":
 * libmodbus neither shows echoes nor the bytes it drops. A refusal is a
 * Modbus exception or a DL/T 645 abnormal reply, named so.
 */
static void add_link(cJSON *obj, const char *key, enum mh_protocol protocol,
	const struct mh_link_counters *l)
{
	cJSON *o = cJSON_AddObjectToObject(obj, key);
	bool dlt645 = protocol == MH_PROTO_DLT645;

	if (!o)
		return;
	cJSON_AddNumberToObject(o, "frames", (double)l->frames);
	cJSON_AddNumberToObject(o, "timeouts", (double)l->timeouts);
	cJSON_AddNumberToObject(o, "checksum_errors", (double)l->checksum_errors);
	cJSON_AddNumberToObject(o, "garbled", (double)l->garbled);
	cJSON_AddNumberToObject(o, "wrong_address", (double)l->wrong_address);
	if (dlt645)
		cJSON_AddNumberToObject(o, "echo", (double)l->echo);
	cJSON_AddNumberToObject(o, "late_replies", (double)l->late_replies);
	if (dlt645)
		cJSON_AddNumberToObject(o, "garbage_bytes", (double)l->garbage_bytes);
	cJSON_AddNumberToObject(o, dlt645 ? "refusals" : "exceptions", (double)l->refusals);
}

/* The day's success rate, the meters online and offline, the newest good reading. */
static void add_meters(cJSON *o, struct bus_counters *c, const struct mh_bus_config *bus,
	unsigned offline_after, unsigned interval_ms, const struct mh_health_snapshot *snap)
{
	size_t offline = 0;
	char at[40];

	/* The day ended with no read since: today has none yet. */
	if (snap->clock_set && local_day(snap->now_ms) != c->day) {
		c->day = local_day(snap->now_ms);
		c->day_boundaries = c->day_read = 0;
	}
	if (snap->clock_set && c->day_boundaries)
		cJSON_AddNumberToObject(o, "read_success_rate_today",
			(double)c->day_read / (double)c->day_boundaries);
	uint64_t sweep_ms = 0;

	for (size_t i = 0; i < bus->n_meters; i++) {
		offline += c->meters[i].failures >= offline_after;
		sweep_ms += c->meters[i].duration_ms;
	}
	/* Bus time for one read of every meter, against the time there is for it. */
	cJSON_AddNumberToObject(o, "sweep_ms", (double)sweep_ms);
	cJSON_AddNumberToObject(o, "interval_ms", (double)interval_ms);
	cJSON_AddNumberToObject(o, "skipped", (double)c->skipped);
	cJSON_AddNumberToObject(o, "meters_online", (double)(bus->n_meters - offline));
	cJSON_AddNumberToObject(o, "meters_offline", (double)offline);
	if (c->last_good_ms) {
		mh_schedule_format(c->last_good_ms, true, at, sizeof(at));
		cJSON_AddStringToObject(o, "last_good_reading", at);
	}
}

char *mh_health_report(struct mh_health *h, const struct mh_health_snapshot *snap)
{
	cJSON *obj = cJSON_CreateObject(), *buses, *store, *mqtt;
	const struct mh_outbox_stats *st = snap->store;
	char ts[40];
	char *text = NULL;

	if (!obj)
		return NULL;
	/* A clock that is not set yet gives no time at all, rather than 1970. */
	if (snap->clock_set) {
		mh_schedule_format(snap->now_ms, false, ts, sizeof(ts));
		cJSON_AddStringToObject(obj, "ts", ts);
	}
	cJSON_AddBoolToObject(obj, "clock_set", snap->clock_set);
	cJSON_AddNumberToObject(obj, "uptime_s", (double)(snap->uptime_ms / 1000));
	buses = cJSON_AddArrayToObject(obj, "buses");
	for (size_t b = 0; buses && b < h->cfg->n_buses; b++) {
		struct bus_counters *c = &h->buses[b];
		cJSON *o = cJSON_CreateObject();
		if (!o)
			break;
		cJSON_AddStringToObject(o, "name", h->cfg->buses[b].name);
		cJSON_AddNumberToObject(o, "reads", (double)c->reads);
		cJSON_AddNumberToObject(o, "good", (double)c->good);
		cJSON_AddNumberToObject(o, "timeout", (double)c->timeout);
		cJSON_AddNumberToObject(o, "error", (double)c->error);
		if (c->reads) {
			cJSON_AddNumberToObject(o, "success_rate", (double)c->good / (double)c->reads);
			cJSON_AddNumberToObject(o, "latency_ms_avg",
				(double)(c->latency_sum_ms / c->reads));
			cJSON_AddNumberToObject(o, "latency_ms_max", c->latency_max_ms);
		}
		cJSON_AddNumberToObject(o, "backlog", (double)snap->backlog[b]);
		cJSON_AddBoolToObject(o, "port_open", snap->ports[b].open);
		cJSON_AddNumberToObject(o, "port_losses", (double)snap->ports[b].losses);
		if (snap->ports[b].last_error)
			cJSON_AddStringToObject(o, "port_error", strerror(-snap->ports[b].last_error));
		cJSON_AddNumberToObject(o, "total_reads", (double)c->total_reads);
		cJSON_AddNumberToObject(o, "total_good", (double)c->total_good);
		add_meters(o, c, &h->cfg->buses[b], h->cfg->health.offline_after,
			h->cfg->schedule.interval_ms, snap);
		struct mh_link_counters period = link_delta(&snap->ports[b].link, &c->reported);
		add_link(o, "link", h->cfg->buses[b].protocol, &snap->ports[b].link);
		add_link(o, "link_period", h->cfg->buses[b].protocol, &period);
		c->reported = snap->ports[b].link;
		cJSON_AddItemToArray(buses, o);
		/* Rates cover one report period; the totals run since start. */
		c->reads = c->good = c->timeout = c->error = c->latency_sum_ms = 0;
		c->latency_max_ms = 0;
	}
	store = cJSON_AddObjectToObject(obj, "store");
	if (store) {
		cJSON_AddNumberToObject(store, "backlog", (double)st->records);
		if (st->oldest_seq) {
			cJSON_AddNumberToObject(store, "oldest_seq", (double)st->oldest_seq);
			if (snap->clock_set)
				cJSON_AddNumberToObject(store, "oldest_age_s",
				(double)((snap->now_ms - st->oldest_ms) / 1000));
		}
		cJSON_AddNumberToObject(store, "used_bytes", (double)st->used_bytes);
		cJSON_AddNumberToObject(store, "max_bytes", (double)st->max_bytes);
		cJSON_AddNumberToObject(store, "use",
			st->max_bytes ? (double)st->used_bytes / (double)st->max_bytes : 0);
		cJSON_AddNumberToObject(store, "dropped", (double)h->dropped);
		cJSON_AddNumberToObject(store, "lost", (double)h->lost);
	}
	mqtt = cJSON_AddObjectToObject(obj, "mqtt");
	if (mqtt) {
		cJSON_AddBoolToObject(mqtt, "connected", snap->connected);
		cJSON_AddNumberToObject(mqtt, "in_flight", snap->in_flight);
	}
	if (snap->commands)
		add_commands(obj, snap->commands);
	if (buses && store && mqtt)
		text = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	return text;
}
