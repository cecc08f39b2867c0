/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What a reload (SIGHUP) changes: a pure comparison of the running
 * configuration with the one just loaded. A bus whose thread sees the
 * same thing (its line settings, and the same meters with the same
 * profiles in the same order) keeps running; any other is restarted. A
 * meter keeps its runtime object by id (see meter.h). The daemon carries
 * the plan out (daemon.c) and reports it in a config_reloaded event.
 */

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

struct mh_reload_plan {
	size_t n_buses;	 /* of the fresh config */
	size_t *from;	 /* per fresh bus: the old bus of that name, or SIZE_MAX */
	bool *keep;	 /* per fresh bus: the old bus's thread goes on with it */
	bool *old_stops; /* per old bus: its thread stops (changed or gone) */
	bool mqtt;	 /* the broker connection is to be made again */
	cJSON *changes;	 /* what changed, as config_reloaded says it */
	size_t n_changes;
};

/* The files the broker connection reads (password, CA, certificate, key), as last seen. */
struct mh_file_stamps {
	struct {
		dev_t dev;
		ino_t ino;
		off_t size;
		long long mtime_ns;
		bool present;
	} f[4];
};

/* Stamp the broker connection's files of @cfg. */
void mh_reload_stamp_mqtt(const struct mh_config *cfg, struct mh_file_stamps *out);

/*
 * Compare @old (running, with the connection files @stamps) with @fresh.
 * Returns 0 and *@out (mh_reload_plan_free() it), or -ENOMEM.
 */
int mh_reload_plan(const struct mh_config *old, const struct mh_file_stamps *stamps,
	const struct mh_config *fresh, struct mh_reload_plan *out);

void mh_reload_plan_free(struct mh_reload_plan *p);
