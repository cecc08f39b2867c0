/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The key tables: which keys each mapping of the file may hold, how each
 * value is parsed and checked, where it is stored in struct mh_config, and
 * whether a running daemon could take a new value on reload. A document is
 * walked against the tables into a configuration; checks that need several
 * keys at once run afterwards (config.c).
 */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "yamldoc.h"

/* The fields of a meter's key "control", as bits of mh_meter_control.fields. */
enum {
	MH_METER_CONTROL_LEVEL = 1 << 0,
	MH_METER_CONTROL_PASSWORD = 1 << 1,
	MH_METER_CONTROL_OPERATOR = 1 << 2,
	MH_METER_CONTROL_CLOSE = 1 << 3,
	MH_METER_CONTROL_ESAM = 1 << 4,
};

/*
 * A meter's key "control" as written, for validation to lay over its
 * profile's once the profile is known.
 */
struct mh_meter_control {
	struct mh_meter_config *meter;
	struct mh_dlt645_control_config given;
	unsigned fields; /* MH_METER_CONTROL_*: the keys given */
	struct mh_pos pos;
	char path[sizeof(((struct mh_yamldoc *)0)->path)]; /* "buses[0].meters[3].control" */
	struct mh_meter_control *next;
};

/* The state of loading documents into one configuration. */
struct mh_schema {
	struct mh_yamldoc doc;
	struct mh_config *cfg;
	bool builtin; /* the document is a built-in profile file */
	bool oom;     /* an allocation failed; the result is not to be trusted */
	struct mh_pos tls_pos; /* where mqtt.tls was given; line 0 when it was not */
	struct mh_pos freeze_pos; /* where schedule.daily_freeze was given; line 0 when not */
	/* Where commands.settle and commands.confirm_within were given; line 0 when not. */
	struct mh_pos settle_pos, confirm_pos;
	/* The profile being walked has this control mapping, walked once its points are known. */
	yaml_node_t *control_node;
	/* The meters' own control keys, in file order (in the configuration's arena). */
	struct mh_meter_control *meter_controls, **meter_controls_tail;
};

/* Prepare @s to fill @cfg (zeroed by the caller); errors go to @on_error. */
void mh_schema_init(struct mh_schema *s, struct mh_config *cfg, mh_config_error_fn on_error,
	void *ud);

/* Release what @s holds (not the configuration). */
void mh_schema_deinit(struct mh_schema *s);

/*
 * Walk the document in @len bytes of @text, named @name in messages, into
 * the configuration: a user's file when !@builtin, else a built-in profile
 * file (which holds only profiles). Errors are reported and counted in
 * s->doc.errors. Returns 0 when the document was walked (with or without
 * errors in it), -EINVAL when it could not be parsed, or -ENOMEM.
 */
int mh_schema_load(struct mh_schema *s, const char *name, const char *text, size_t len,
	bool builtin);

/* A DL/T 645 control's defaults: level 2, password 000000, operator 00000000, close direct. */
extern const struct mh_dlt645_control_config mh_schema_control_defaults;

/* Zeroed memory or a string copy in the configuration's arena; sets s->oom on failure. */
void *mh_schema_alloc(struct mh_schema *s, size_t size);
const char *mh_schema_strdup(struct mh_schema *s, const char *text);

/*
 * Call @fn (when not NULL) with one line for each key whose value differs
 * between @old and @fresh but that a running daemon cannot take without a
 * restart. Returns how many there were.
 */
int mh_schema_restart_keys(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud);

/* The same walk over the mappings' KEY_LIVE scalars: @fn gets each differing key's path. */
int mh_schema_live_changes(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud);
