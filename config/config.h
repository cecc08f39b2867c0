/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The YAML configuration: loaded into a fresh struct, validated as a whole,
 * then handed to the caller (at start, and later on SIGHUP). Every error names
 * FILE:LINE:COL and the key path.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modbus_regs.h"
#include "serial.h"
#include "tariff.h"

enum mh_protocol {
	MH_PROTO_MODBUS,
	MH_PROTO_DLT645,
};

/* Where something was written, for errors found after parsing. */
struct mh_pos {
	const char *file;
	unsigned line, col; /* 1-based */
};

struct mh_point {
	const char *name; /* canonical point name, e.g. "energy_import_kwh" */
	struct mh_modbus_point modbus;
	uint32_t di; /* DL/T 645 data identifier, when has_di */
	bool has_di;
	unsigned raw_address; /* as parsed; UINT_MAX when the key is missing */
	struct mh_pos pos;
};

/* What a profile's control sends to a DL/T 645 meter (0x1C remote control). */
enum mh_close_mode {
	MH_CLOSE_DIRECT, /* key "close: direct": N1 1C, the relay closes at once */
	MH_CLOSE_PERMIT, /* key "close: permit": N1 1B, the customer closes it with the button */
};

struct mh_dlt645_control_config {
	/* Key "password_level", 0 to 99 as written; PA on the wire is its BCD (98 is 0x98). */
	unsigned level;
	/*
	 * Keys "password" and "operator" in wire order, as protocols/dlt645.h
	 * struct mh_dlt645_auth wants: P0 holds the lowest two digits, C0 the
	 * lowest two hex digits.
	 */
	uint8_t password[3];
	uint8_t operator_code[4];
	enum mh_close_mode close;
	/* The meter takes only ESAM-encrypted commands: trip and restore need a head-end block. */
	bool esam;
};

/* One Modbus write: a coil (value 0 or 1) or a holding register. */
struct mh_modbus_write_config {
	enum mh_modbus_table table; /* MH_MODBUS_COIL or MH_MODBUS_HOLDING */
	uint16_t address;
	uint16_t value;
};

/* Where a Modbus meter shows its relay: the relay is open when the value reads open_when. */
struct mh_modbus_relay_config {
	enum mh_modbus_table table;
	uint16_t address;
	uint16_t open_when;
};

/*
 * A profile's key "control". Only the half of the profile's protocol is
 * filled: dlt645 (with its defaults) for a DL/T 645 profile, trip, restore
 * and relay for a Modbus one.
 */
struct mh_control_config {
	bool present; /* the key was given: the meters of this profile can be controlled */
	struct mh_dlt645_control_config dlt645;
	struct mh_modbus_write_config trip, restore;
	struct mh_modbus_relay_config relay;
	struct mh_pos pos;
};

struct mh_profile {
	const char *name;
	const char *description;
	enum mh_protocol protocol; /* inferred from the points */
	struct mh_point *points;
	size_t n_points;
	/*
	 * Modbus: unused registers a batched request may span to save a frame
	 * (key "max_gap"). A meter that refuses such a request is re-read with
	 * gap 0 from then on.
	 */
	unsigned max_gap;
	struct mh_control_config control;
	bool builtin;
	struct mh_pos pos;
};

struct mh_meter_config {
	const char *id;
	const char *address; /* as written */
	unsigned unit;       /* Modbus slave id */
	uint8_t dlt645_addr[6]; /* DL/T 645 address, wire order */
	const char *profile_name;
	const struct mh_profile *profile; /* resolved by validation */
	const char *tariff_name;          /* key "tariff": one of the config's tariffs */
	const struct mh_tariff *tariff;   /* resolved by validation; NULL: the gateway's */
	/*
	 * Resolved by validation. has_control: the meter can be controlled, as
	 * its profile has a control or (DL/T 645) the meter has its own key
	 * "control". control, DL/T 645 only: the profile's control (or the
	 * defaults) with the fields of the meter's own on top.
	 */
	struct mh_dlt645_control_config control;
	bool has_control;
	struct mh_pos pos;
};

/* One period as written: a name and "HH:MM" edges. */
struct mh_period_config {
	const char *name;
	unsigned from_min, to_min; /* UINT_MAX until given */
	struct mh_pos pos;
};

/* Periods that apply in some months and/or on some weekdays instead. */
struct mh_season_config {
	uint16_t months; /* bit m for month m */
	uint8_t days;    /* bit d for weekday d, 0 Sunday */
	struct mh_period_config *periods;
	size_t n_periods;
	struct mh_pos pos;
};

/* A tariff as written (key "tariff", or one of "tariffs"), and what it became. */
struct mh_tariff_config {
	const char *name;
	struct mh_period_config *periods;
	size_t n_periods;
	const char *default_period;
	struct mh_season_config *seasons;
	size_t n_seasons;
	struct mh_pos pos;
	char path[256];          /* key path, for errors found by validation */
	struct mh_tariff tariff; /* built by validation */
};

/* A protect window (保电期) as written: no trip from "from" until "to". */
struct mh_protect_window_config {
	const char *from, *to; /* a date "YYYY-MM-DD" (local, inclusive) or an RFC 3339 time */
	struct mh_pos pos;
};

/* Key "commands": remote commands from the head-end. */
struct mh_commands_config {
	bool enabled; /* the section is present */
	const char *hmac_key_file;
	unsigned max_attempts, retry_backoff_ms, max_skew_ms, settle_ms, confirm_within_ms, queue;
	struct mh_protect_window_config *windows;
	size_t n_windows;
};

struct mh_bus_config {
	const char *name;
	const char *device;
	unsigned baud;
	enum mh_parity parity;
	enum mh_protocol protocol;
	unsigned timeout_ms;   /* reply timeout per frame (key "timeout") */
	unsigned frame_gap_ms; /* key "frame_gap" as given; UINT_MAX while not given */
	unsigned frame_gap_us; /* the silence kept between two frames: frame_gap, or t3.5 */
	struct mh_meter_config *meters;
	size_t n_meters;
	struct mh_pos pos;
};

struct mh_config {
	const char *file;
	struct {
		const char *id;
		const char *timezone;
	} gateway;
	struct {
		const char *path;
		uint64_t max_bytes;
		unsigned commit_window_ms; /* how long readings' records may wait for a group commit */
	} store;
	struct {
		const char *uri;
		const char *client_id;
		const char *topic_prefix;
		const char *username;
		const char *password_file;
		struct {
			const char *ca, *cert, *key;
		} tls;
		unsigned keepalive_s;
		unsigned window; /* QoS 1 publishes in flight (key "window") */
	} mqtt;
	struct {
		unsigned interval_ms;
		unsigned daily_freeze_min; /* key "daily_freeze", minutes after local midnight */
		unsigned retries;          /* of a failed boundary read within its window */
		unsigned backfill_days;    /* daily freezes read back from DL/T 645 meters */
		unsigned backfill_at_min;  /* not before this local time of day */
	} schedule;
	struct mh_tariff_config *tariff_config; /* key "tariff"; NULL when not given */
	const struct mh_tariff *tariff;         /* the gateway's periods; NULL: none */
	struct mh_tariff_config *tariffs;       /* key "tariffs": named, for meters to pick */
	size_t n_tariffs;
	struct {
		unsigned interval_ms; /* how often health is published (key "health.interval") */
		unsigned offline_after; /* failed boundaries in a row: offline (key "health.offline_after") */
	} health;
	/* Meter clocks (DL/T 645): read, reported when off, set by broadcast time. */
	struct {
		bool sync;                  /* key "clock.sync": broadcast time when a meter drifts */
		unsigned check_every_ms;    /* key "clock.check_every": each meter's clock read */
		unsigned max_drift_ms;      /* key "clock.max_drift": beyond it, clock_drift */
		unsigned max_correction_ms; /* key "clock.max_correction": meters refuse more */
		bool require_synced;        /* key "clock.require_synced": only from an NTP-synced clock */
	} clock;
	/* Filled with the defaults also when the section is absent (enabled false). */
	struct mh_commands_config commands;
	struct mh_bus_config *buses;
	size_t n_buses;
	struct mh_profile *profiles; /* built-in first, then the user's */
	size_t n_profiles;
	struct mh_arena *arena; /* owns every pointer above */
};

/* Receives one formatted error line ("FILE:LINE:COL: key.path: what is wrong"). */
typedef void (*mh_config_error_fn)(void *ud, const char *line);

/*
 * Load and validate @file. Errors go to @on_error (stderr when NULL), as many
 * as are found. Returns 0 and *@out (release with mh_config_free()), -EINVAL
 * when the file has errors, or -errno when it cannot be read.
 */
int mh_config_load(const char *file, mh_config_error_fn on_error, void *ud,
	struct mh_config **out);

/* As mh_config_load(), from @len bytes of @text named @name in messages. */
int mh_config_load_string(const char *name, const char *text, size_t len,
	mh_config_error_fn on_error, void *ud, struct mh_config **out);

/* Release a loaded configuration; NULL is a no-op. */
void mh_config_free(struct mh_config *cfg);

/*
 * Resolve @w into [*from_ms, *to_ms) (milliseconds since the epoch) with
 * the process's current TZ: a date "from" starts at its local midnight, a
 * date "to" ends at the next local midnight, an RFC 3339 time is the
 * instant it names. Returns 0, or -EINVAL when an edge does not parse or
 * a date is past what this system's time_t holds.
 */
int mh_config_window_resolve(const struct mh_protect_window_config *w, int64_t *from_ms,
	int64_t *to_ms);

/* Find a named tariff (key "tariffs"), or NULL. */
const struct mh_tariff *mh_config_tariff(const struct mh_config *cfg, const char *name);

/* Find a profile by name, or NULL. */
const struct mh_profile *mh_config_profile(const struct mh_config *cfg, const char *name);

/*
 * Call @fn (when not NULL) with one line ("store.path: changed from ... to
 * ...") for each key that differs between @old and @fresh but that a
 * running daemon cannot take on reload: store.path, store.max_bytes,
 * store.commit_window, gateway.id and gateway.timezone. Returns how many keys there were, so a
 * reload can refuse @fresh (or keep those keys) when it is not 0.
 */
int mh_config_restart_keys(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud);

/*
 * Call @fn(@ud, path) for each scalar key of the config's mappings that a
 * running daemon takes on reload and that differs between @old and
 * @fresh ("mqtt.uri", "schedule.interval", "mqtt.tls.ca"). Sequences
 * (buses, profiles, tariffs, protect windows) are the caller's to compare.
 * Returns how many there were.
 */
int mh_config_live_changes(const struct mh_config *old, const struct mh_config *fresh,
	mh_config_error_fn fn, void *ud);

/* Parse a whole number as the config writes one ("247", "0x00F7"). Returns 0 or -EINVAL. */
int mh_config_parse_uint(const char *text, uint64_t *out);

/*
 * Parse a bus's baud rate. Returns 0, -EINVAL when @text is not a whole
 * number, or -ERANGE when it is not one of mh_config_baud_names (a serial
 * line set to another rate runs at some other speed without a word).
 */
int mh_config_parse_baud(const char *text, unsigned *baud);

/* The standard baud rates, for messages: "300, 600, ... or 115200". */
extern const char mh_config_baud_names[];

/*
 * The largest store.max_bytes a process can map when its size_t ends at
 * @size_max (SIZE_MAX for this one): 1 GiB on a 32-bit system, else 1 TiB.
 */
uint64_t mh_config_store_limit(uint64_t size_max);

/* Parse "500ms", "15m", "2h" into milliseconds. Returns 0 or -EINVAL. */
int mh_config_parse_duration(const char *text, uint64_t *ms);

/* Parse "256MiB", "4096" into bytes. Returns 0 or -EINVAL. */
int mh_config_parse_size(const char *text, uint64_t *bytes);
