// SPDX-License-Identifier: MIT
#include "health.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"

struct bus_counters {
	uint64_t reads, good, timeout, error;
	uint64_t latency_sum_ms;
	unsigned latency_max_ms;
	uint64_t total_reads, total_good;
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
	return h;
}

void mh_health_free(struct mh_health *h)
{
	if (!h)
		return;
	free(h->buses);
	free(h);
}

void mh_health_note(struct mh_health *h, size_t bus, const struct mh_reading *r)
{
	struct bus_counters *c = &h->buses[bus];

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
