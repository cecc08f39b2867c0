// SPDX-License-Identifier: MIT
#include "events.h"

#include <string.h>

#include "log.h"
#include "records.h"
#include "schedule.h"

void mh_event_store_dropped(struct mh_outbox *ob, const struct mh_outbox_drops *drops, int64_t now)
{
	cJSON *obj = mh_records_event(ob, "store_dropped", now), *counts;
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
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}

void mh_event_clock_step(struct mh_outbox *ob, int64_t step_ms, bool was_set, int64_t now)
{
	cJSON *obj = mh_records_event(ob, "clock_step", now);
	char from[40];

	/* A clock that was not set has no time worth publishing. */
	if (was_set) {
		mh_schedule_format(now - step_ms, false, from, sizeof(from));
		cJSON_AddStringToObject(obj, "from", from);
	}
	cJSON_AddBoolToObject(obj, "was_set", was_set);
	cJSON_AddNumberToObject(obj, "step_s", (double)step_ms / 1000.0);
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}

void mh_event_started(struct mh_outbox *ob, enum mh_db_last_stop last, int64_t uptime_ms,
	int64_t now)
{
	static const char *const names[] = {
		[MH_DB_NEW] = "new_store",
		[MH_DB_CLEAN] = "clean",
		[MH_DB_UNCLEAN] = "unclean",
	};
	cJSON *obj = mh_records_event(ob, "gateway_started", now);

	cJSON_AddStringToObject(obj, "version", MH_VERSION);
	/* unclean: killed, crashed or a power cut; the head-end sees it. */
	cJSON_AddStringToObject(obj, "last_stop", names[last]);
	cJSON_AddNumberToObject(obj, "uptime_s", (double)(uptime_ms / 1000));
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}

void mh_event_broker(struct mh_outbox *ob, bool up, int64_t outage_ms, int64_t now)
{
	cJSON *obj = mh_records_event(ob, up ? "broker_back" : "broker_lost", now);
	struct mh_outbox_stats st;

	if (up)
		cJSON_AddNumberToObject(obj, "outage_s", (double)outage_ms / 1000.0);
	cJSON_AddNumberToObject(obj, "backlog",
		mh_outbox_stats(ob, &st) == 0 ? (double)st.records : 0);
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}

void mh_event_port(struct mh_outbox *ob, const struct mh_bus_config *bus, bool lost,
	const struct mh_bus_port *port, int64_t down_ms, int64_t now)
{
	cJSON *obj = mh_records_event(ob, lost ? "bus_port_lost" : "bus_port_back", now);

	cJSON_AddStringToObject(obj, "bus", bus->name);
	cJSON_AddStringToObject(obj, "device", bus->device);
	if (lost)
		cJSON_AddStringToObject(obj, "error",
			port->last_error ? strerror(-port->last_error) : "port failed");
	else
		cJSON_AddNumberToObject(obj, "down_s", (double)down_ms / 1000.0);
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}

void mh_event_config_rejected(struct mh_outbox *ob, const char *file, const char *reason,
	cJSON *errors, int64_t now)
{
	cJSON *obj = mh_records_event(ob, "config_rejected", now);

	cJSON_AddStringToObject(obj, "file", file);
	cJSON_AddStringToObject(obj, "reason", reason);
	if (errors)
		cJSON_AddItemToObject(obj, "errors", errors);
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}

void mh_event_config_reloaded(struct mh_outbox *ob, const char *file, const cJSON *changes,
	int64_t now)
{
	cJSON *obj = mh_records_event(ob, "config_reloaded", now);

	cJSON_AddStringToObject(obj, "file", file);
	cJSON_AddItemToObject(obj, "changes", cJSON_Duplicate(changes, true));
	mh_records_store(ob, MH_RECORD_EVENT, "event", obj, now);
}
