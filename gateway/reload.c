// SPDX-License-Identifier: MIT
#include "reload.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* ---- what a bus thread sees -------------------------------------------- */

static bool point_eq(const struct mh_point *a, const struct mh_point *b)
{
	return str_eq(a->name, b->name) && a->modbus.table == b->modbus.table &&
	       a->modbus.address == b->modbus.address && a->modbus.type == b->modbus.type &&
	       a->modbus.word_order == b->modbus.word_order && a->modbus.scale == b->modbus.scale &&
	       a->has_di == b->has_di && (!a->has_di || a->di == b->di);
}

static bool control_eq(const struct mh_control_config *a, const struct mh_control_config *b)
{
	if (a->present != b->present)
		return false;
	return !a->present ||
	       (!memcmp(&a->dlt645, &b->dlt645, sizeof(a->dlt645)) &&
		       !memcmp(&a->trip, &b->trip, sizeof(a->trip)) &&
		       !memcmp(&a->restore, &b->restore, sizeof(a->restore)) &&
		       !memcmp(&a->relay, &b->relay, sizeof(a->relay)));
}

/* The points and how they are read; control is carried by each job. */
static bool profile_reads_eq(const struct mh_profile *a, const struct mh_profile *b)
{
	if (a == b)
		return true;
	if (a->protocol != b->protocol || a->n_points != b->n_points || a->max_gap != b->max_gap)
		return false;
	for (size_t i = 0; i < a->n_points; i++)
		if (!point_eq(&a->points[i], &b->points[i]))
			return false;
	return true;
}

static bool profile_eq(const struct mh_profile *a, const struct mh_profile *b)
{
	return profile_reads_eq(a, b) && str_eq(a->name, b->name) &&
	       control_eq(&a->control, &b->control);
}

/* What the bus thread of a meter's bus reads of it: where it is and its points. */
static bool meter_reads_eq(const struct mh_meter_config *a, const struct mh_meter_config *b)
{
	return str_eq(a->id, b->id) && a->unit == b->unit &&
	       !memcmp(a->dlt645_addr, b->dlt645_addr, sizeof(a->dlt645_addr)) &&
	       profile_reads_eq(a->profile, b->profile);
}

static bool bus_eq(const struct mh_bus_config *a, const struct mh_bus_config *b)
{
	if (!str_eq(a->device, b->device) || a->baud != b->baud || a->parity != b->parity ||
		a->protocol != b->protocol || a->timeout_ms != b->timeout_ms ||
		a->frame_gap_us != b->frame_gap_us || a->n_meters != b->n_meters)
		return false;
	for (size_t i = 0; i < a->n_meters; i++)
		if (!meter_reads_eq(&a->meters[i], &b->meters[i]))
			return false;
	return true;
}

/* ---- what the loop sees ------------------------------------------------- */

static bool table_eq(const struct mh_tariff_table *a, const struct mh_tariff_table *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!str_eq(a->periods[i].name, b->periods[i].name) ||
			a->periods[i].from_min != b->periods[i].from_min ||
			a->periods[i].to_min != b->periods[i].to_min)
			return false;
	return true;
}

static bool tariff_eq(const struct mh_tariff *a, const struct mh_tariff *b)
{
	if (!a || !b)
		return a == b;
	if (!str_eq(a->default_period, b->default_period) || !table_eq(&a->base, &b->base) ||
		a->n_seasons != b->n_seasons)
		return false;
	for (size_t i = 0; i < a->n_seasons; i++)
		if (a->seasons[i].months != b->seasons[i].months ||
			a->seasons[i].days != b->seasons[i].days ||
			!table_eq(&a->seasons[i].table, &b->seasons[i].table))
			return false;
	return true;
}

static bool meter_eq(const struct mh_config *oc, const struct mh_meter_config *a,
	const struct mh_config *fc, const struct mh_meter_config *b)
{
	return meter_reads_eq(a, b) && str_eq(a->address, b->address) &&
	       profile_eq(a->profile, b->profile) && a->has_control == b->has_control &&
	       (!a->has_control || !memcmp(&a->control, &b->control, sizeof(a->control))) &&
	       tariff_eq(a->tariff ? a->tariff : oc->tariff, b->tariff ? b->tariff : fc->tariff);
}

static const struct mh_meter_config *find_meter(const struct mh_config *cfg, const char *id)
{
	for (size_t b = 0; b < cfg->n_buses; b++)
		for (size_t i = 0; i < cfg->buses[b].n_meters; i++)
			if (!strcmp(cfg->buses[b].meters[i].id, id))
				return &cfg->buses[b].meters[i];
	return NULL;
}

static bool windows_eq(const struct mh_commands_config *a, const struct mh_commands_config *b)
{
	if (a->n_windows != b->n_windows)
		return false;
	for (size_t i = 0; i < a->n_windows; i++)
		if (!str_eq(a->windows[i].from, b->windows[i].from) ||
			!str_eq(a->windows[i].to, b->windows[i].to))
			return false;
	return true;
}

/* ---- the broker connection's files -------------------------------------- */

static void stamp(const char *path, __typeof__(((struct mh_file_stamps *)0)->f[0]) *out)
{
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (!path || stat(path, &st) < 0)
		return;
	out->present = true;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	out->size = st.st_size;
	out->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
}

void mh_reload_stamp_mqtt(const struct mh_config *cfg, struct mh_file_stamps *out)
{
	stamp(cfg->mqtt.password_file, &out->f[0]);
	stamp(cfg->mqtt.tls.ca, &out->f[1]);
	stamp(cfg->mqtt.tls.cert, &out->f[2]);
	stamp(cfg->mqtt.tls.key, &out->f[3]);
}

/* ---- the plan ------------------------------------------------------------ */

static void add_string(struct mh_reload_plan *p, cJSON *obj, const char *key, const char *value)
{
	cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!arr)
		arr = cJSON_AddArrayToObject(obj, key);
	if (arr)
		cJSON_AddItemToArray(arr, cJSON_CreateString(value));
	p->n_changes++;
}

static void on_live_key(void *ud, const char *path)
{
	struct mh_reload_plan *p = ud;

	add_string(p, p->changes, "keys", path);
	if (!strncmp(path, "mqtt.", 5))
		p->mqtt = true;
}

int mh_reload_plan(const struct mh_config *old, const struct mh_file_stamps *stamps,
	const struct mh_config *fresh, struct mh_reload_plan *p)
{
	static const char *const files[] = { "mqtt.password_file", "mqtt.tls.ca", "mqtt.tls.cert",
		"mqtt.tls.key" };
	struct mh_file_stamps now;
	cJSON *buses, *meters;

	memset(p, 0, sizeof(*p));
	p->n_buses = fresh->n_buses;
	p->from = calloc(fresh->n_buses + 1, sizeof(*p->from));
	p->keep = calloc(fresh->n_buses + 1, sizeof(*p->keep));
	p->old_stops = calloc(old->n_buses + 1, sizeof(*p->old_stops));
	p->changes = cJSON_CreateObject();
	buses = cJSON_AddObjectToObject(p->changes, "buses");
	meters = cJSON_AddObjectToObject(p->changes, "meters");
	if (!p->from || !p->keep || !p->old_stops || !buses || !meters) {
		mh_reload_plan_free(p);
		return -ENOMEM;
	}
	mh_config_live_changes(old, fresh, on_live_key, p);
	/* Same paths, new contents: a rotated certificate or password is a change too. */
	mh_reload_stamp_mqtt(fresh, &now);
	for (size_t i = 0; i < 4; i++)
		if (memcmp(&now.f[i], &stamps->f[i], sizeof(now.f[i]))) {
			add_string(p, p->changes, "files", files[i]);
			p->mqtt = true;
		}
	if (!tariff_eq(old->tariff, fresh->tariff))
		add_string(p, p->changes, "sections", "tariff");
	if (!windows_eq(&old->commands, &fresh->commands))
		add_string(p, p->changes, "keys", "commands.protect_windows");

	for (size_t o = 0; o < old->n_buses; o++)
		p->old_stops[o] = true;
	for (size_t b = 0; b < fresh->n_buses; b++) {
		const struct mh_bus_config *bus = &fresh->buses[b];
		p->from[b] = SIZE_MAX;
		for (size_t o = 0; o < old->n_buses; o++)
			if (!strcmp(old->buses[o].name, bus->name))
				p->from[b] = o;
		if (p->from[b] == SIZE_MAX) {
			add_string(p, buses, "added", bus->name);
		} else if (bus_eq(&old->buses[p->from[b]], bus)) {
			p->keep[b] = true;
			p->old_stops[p->from[b]] = false;
		} else {
			add_string(p, buses, "restarted", bus->name);
		}
	}
	for (size_t o = 0; o < old->n_buses; o++) {
		bool named = false;
		for (size_t b = 0; b < fresh->n_buses; b++)
			named |= p->from[b] == o;
		if (!named)
			add_string(p, buses, "removed", old->buses[o].name);
	}
	for (size_t b = 0; b < fresh->n_buses; b++) {
		for (size_t i = 0; i < fresh->buses[b].n_meters; i++) {
			const struct mh_meter_config *m = &fresh->buses[b].meters[i];
			const struct mh_meter_config *was = find_meter(old, m->id);
			if (!was)
				add_string(p, meters, "added", m->id);
			else if (!meter_eq(old, was, fresh, m))
				add_string(p, meters, "changed", m->id);
		}
	}
	for (size_t b = 0; b < old->n_buses; b++)
		for (size_t i = 0; i < old->buses[b].n_meters; i++)
			if (!find_meter(fresh, old->buses[b].meters[i].id))
				add_string(p, meters, "removed", old->buses[b].meters[i].id);
	return 0;
}

void mh_reload_plan_free(struct mh_reload_plan *p)
{
	free(p->from);
	free(p->keep);
	free(p->old_stops);
	cJSON_Delete(p->changes);
	memset(p, 0, sizeof(*p));
}
