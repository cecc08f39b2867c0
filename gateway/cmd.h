/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Remote commands (topic <topic_prefix>/cmd): parsing a payload into
 * struct mh_cmd, checking its HMAC-SHA256 signature and its times, and
 * loading the HMAC key. The checks are steps 1, 2, 4, 7 and 8 of the
 * order the command contract fixes; the caller runs the others (retained,
 * unknown action and meter, replay, protect windows, support, queue) in
 * between, so the first failure wins. Pure apart from mh_cmd_key_load():
 * no I/O, no globals; every object lives in caller storage.
 *
 * The signed string is "id\nmeter\naction\nts\nexpires", or with
 * "\nblock" appended when the command has a block: each field exactly as
 * the JSON gives it (after unescaping), no trailing newline.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MH_CMD_MAX_PAYLOAD 4096
#define MH_CMD_NAME_MAX 64   /* id and meter: 1..64 chars of [A-Za-z0-9._:-] */
#define MH_CMD_BLOCK_MAX 200 /* bytes of a pass-through 0x1C data field */
#define MH_CMD_MAX_DEPTH 4   /* JSON nesting: the command object is depth 1 */
#define MH_CMD_KEY_MIN 16    /* bytes of HMAC key, after decoding */

enum mh_cmd_action {
	MH_CMD_TRIP,
	MH_CMD_RESTORE,
	MH_CMD_KEEP_POWER,
	MH_CMD_CANCEL_KEEP_POWER,
	MH_CMD_ALARM_ON,
	MH_CMD_ALARM_OFF,
	MH_CMD_RECALL,
	MH_CMD_ACTIONS,
};

/* The reason of a rejected result, in the order the checks run. */
enum mh_cmd_reason {
	MH_CMD_OK,
	MH_CMD_TOO_LARGE,
	MH_CMD_MALFORMED,
	MH_CMD_RETAINED,
	MH_CMD_BAD_SIGNATURE,
	MH_CMD_UNKNOWN_ACTION,
	MH_CMD_UNKNOWN_METER,
	MH_CMD_STALE,
	MH_CMD_EXPIRED,
	MH_CMD_REPLAYED,
	MH_CMD_PROTECT_WINDOW,
	MH_CMD_UNSUPPORTED,
	MH_CMD_QUEUE_FULL,
	MH_CMD_REASONS,
};

/* "ok", "too_large", "malformed", ... "queue_full"; NULL outside the enum. */
const char *mh_cmd_reason_name(enum mh_cmd_reason r);

/* "trip", "restore", ... "recall"; NULL outside the enum. */
const char *mh_cmd_action_name(enum mh_cmd_action a);

/* One command as parsed. Strings are always NUL-terminated. */
struct mh_cmd {
	char id[MH_CMD_NAME_MAX + 1], meter[MH_CMD_NAME_MAX + 1]; /* "" when not given/invalid */
	/*
	 * As given when it is a printable ASCII string of at most 23
	 * characters, else "" (no known action is longer than 17).
	 */
	char action_name[24];
	enum mh_cmd_action action; /* valid only when action_known */
	bool action_known;
	char ts[48], expires[48];  /* as given; "" when not given or longer than 47 */
	int64_t ts_ms, expires_ms; /* Unix ms; 0 unless the string parsed */
	uint8_t sig[32];
	bool has_sig;
	uint8_t block[MH_CMD_BLOCK_MAX];
	size_t block_len;
	bool has_block;
	char block_hex[2 * MH_CMD_BLOCK_MAX + 1]; /* as given (either case), "" without a block */
};

/*
 * Steps 1 and 2 of the check order: @len bytes of @payload (need not be
 * NUL-terminated) into @out, which is cleared first. Fills every field it
 * could read even when it then fails, so a rejection can name the id,
 * meter and action. Returns MH_CMD_OK, MH_CMD_TOO_LARGE (more than
 * MH_CMD_MAX_PAYLOAD bytes; nothing is read) or MH_CMD_MALFORMED; in @detail
 * (@cap bytes, may be NULL/0) a one-line reason for the first failure, ""
 * on success, quoting at most 40 bytes of input with anything but
 * printable ASCII shown as '?'.
 *
 * Malformed: invalid UTF-8 (overlong forms, surrogates, beyond U+10FFFF),
 * a NUL or control character, invalid JSON or text after it, not an object,
 * nested deeper than MH_CMD_MAX_DEPTH, a known key twice, a missing
 * required field (id, meter, action, ts, expires), a known field that is
 * not a string (null included), bad id/meter syntax, ts/expires longer than
 * 47 characters or not RFC 3339, a sig that is not 64 hex digits, a block
 * that is not 2..400 hex digits of even length. Not malformed: an unknown
 * action string (action_known false), a missing sig (has_sig false),
 * unknown keys (ignored).
 */
enum mh_cmd_reason mh_cmd_parse(
	const char *payload, size_t len, struct mh_cmd *out, char *detail, size_t cap);

/*
 * Step 4: whether @c carries a sig and it is the HMAC-SHA256 under @key of
 * its signed string, compared in constant time. An action too long or too
 * odd to keep in action_name cannot be verified, so such a command is a
 * bad signature rather than an unknown action.
 */
bool mh_cmd_sig_ok(const struct mh_cmd *c, const uint8_t *key, size_t key_len);

/*
 * The lowercase hex HMAC-SHA256 under @key of the signed string of these
 * fields (@block_hex NULL: no block) into @out. Returns 0, -EINVAL for a
 * NULL field or an empty key, -EIO when libcrypto fails.
 */
int mh_cmd_sign(const uint8_t *key, size_t key_len, const char *id, const char *meter,
	const char *action, const char *ts, const char *expires, const char *block_hex,
	char out[65]);

/*
 * HMAC-SHA256 under @key of @len bytes at @msg into @mac: the primitive
 * under mh_cmd_sign(), public so it can be checked against RFC 4231.
 * Returns 0, -EINVAL for an empty key, -EIO when libcrypto fails.
 */
int mh_cmd_hmac(const uint8_t *key, size_t key_len, const void *msg, size_t len, uint8_t mac[32]);

/*
 * Steps 7 and 8 at wall time @now_ms: MH_CMD_STALE when |ts - now| >
 * @max_skew_ms, else MH_CMD_EXPIRED when expires <= now or expires <= ts,
 * else MH_CMD_OK. @c must have parsed.
 */
enum mh_cmd_reason mh_cmd_check_time(const struct mh_cmd *c, int64_t now_ms, int64_t max_skew_ms);

/*
 * Read the HMAC key from @file into @key (@cap bytes, at least 256) and
 * its length into *@len. The file holds the raw key bytes, all of them; or,
 * when its content without one trailing newline is at least 64 hex digits
 * of even length, the key in hex. Returns 0; -EPERM for a file that is not
 * regular or whose mode lets group or others in (mode & 077); an open() or
 * read() error (-ENOENT, -EACCES, ...); -EINVAL for a key shorter than
 * MH_CMD_KEY_MIN bytes, a file over 1024 bytes or a key over @cap. Every
 * failure puts a message naming @file in @err (@errcap bytes, may be
 * NULL/0). No copy of the key is left behind but the one in @key.
 */
int mh_cmd_key_load(
	const char *file, uint8_t *key, size_t cap, size_t *len, char *err, size_t errcap);

/*
 * Parse an RFC 3339 date-time ("2026-11-22T03:45:00Z", "...+08:00",
 * "...T03:45:00.250Z"; T and Z in either case) into Unix milliseconds
 * (fractional digits beyond the third are dropped). Every field is range
 * checked (a leap second, :60, is refused: Unix time has no place for
 * it); nothing may follow. Returns 0 or -EINVAL.
 */
int mh_cmd_time_parse(const char *s, int64_t *ms);
