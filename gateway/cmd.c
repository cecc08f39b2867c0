// SPDX-License-Identifier: MIT
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "dlt645.h"
#include "hex.h"
#include "log.h"
#include "window.h"

_Static_assert(MH_CMD_BLOCK_MAX <= MH_DLT645_MAX_DATA, "a block must fit one 0x1C frame");

/* Bytes of a key file read at most: a 512-byte key in hex and a newline. */
#define KEY_FILE_MAX 1024
/* Bytes of input a detail message quotes at most. */
#define SHOWN_MAX 40

static const char *const reason_names[MH_CMD_REASONS] = {
	[MH_CMD_OK] = "ok",
	[MH_CMD_TOO_LARGE] = "too_large",
	[MH_CMD_MALFORMED] = "malformed",
	[MH_CMD_RETAINED] = "retained",
	[MH_CMD_BAD_SIGNATURE] = "bad_signature",
	[MH_CMD_UNKNOWN_ACTION] = "unknown_action",
	[MH_CMD_UNKNOWN_METER] = "unknown_meter",
	[MH_CMD_STALE] = "stale",
	[MH_CMD_EXPIRED] = "expired",
	[MH_CMD_REPLAYED] = "replayed",
	[MH_CMD_PROTECT_WINDOW] = "protect_window",
	[MH_CMD_UNSUPPORTED] = "unsupported",
	[MH_CMD_QUEUE_FULL] = "queue_full",
};

static const char *const action_names[MH_CMD_ACTIONS] = {
	[MH_CMD_TRIP] = "trip",
	[MH_CMD_RESTORE] = "restore",
	[MH_CMD_KEEP_POWER] = "keep_power",
	[MH_CMD_CANCEL_KEEP_POWER] = "cancel_keep_power",
	[MH_CMD_ALARM_ON] = "alarm_on",
	[MH_CMD_ALARM_OFF] = "alarm_off",
	[MH_CMD_RECALL] = "recall",
};

const char *mh_cmd_reason_name(enum mh_cmd_reason r)
{
	return (unsigned)r < MH_CMD_REASONS ? reason_names[r] : NULL;
}

const char *mh_cmd_action_name(enum mh_cmd_action a)
{
	return (unsigned)a < MH_CMD_ACTIONS ? action_names[a] : NULL;
}

/* ---- HMAC ------------------------------------------------------------------ */

struct piece {
	const void *p;
	size_t n;
};

/* HMAC-SHA256 under @key of the concatenation of @n pieces. */
static int hmac_pieces(
	const uint8_t *key, size_t key_len, const struct piece *pieces, size_t n, uint8_t mac[32])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *hmac;
	EVP_MAC_CTX *ctx = NULL;
	size_t out_len = 0;
	bool ok;

	if (!key || key_len == 0)
		return -EINVAL;
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (hmac)
		ctx = EVP_MAC_CTX_new(hmac);
	ok = ctx && EVP_MAC_init(ctx, key, key_len, params);
	for (size_t i = 0; ok && i < n; i++)
		ok = EVP_MAC_update(ctx, pieces[i].p, pieces[i].n);
	ok = ok && EVP_MAC_final(ctx, mac, &out_len, 32) && out_len == 32;
	/* Freeing the context wipes the padded key it holds. */
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(hmac);
	return ok ? 0 : -EIO;
}

int mh_cmd_hmac(const uint8_t *key, size_t key_len, const void *msg, size_t len, uint8_t mac[32])
{
	struct piece p = {msg, len};

	if (!msg && len)
		return -EINVAL;
	return hmac_pieces(key, key_len, &p, 1, mac);
}

/* The MAC of "id\nmeter\naction\nts\nexpires[\nblock]". */
static int signed_string_mac(const uint8_t *key, size_t key_len, const char *id, const char *meter,
	const char *action, const char *ts, const char *expires, const char *block_hex,
	uint8_t mac[32])
{
	const char *fields[] = {id, meter, action, ts, expires, block_hex};
	size_t n_fields = block_hex ? 6 : 5;
	struct piece pieces[2 * 6 - 1];
	size_t n = 0;

	for (size_t i = 0; i < n_fields; i++) {
		if (!fields[i])
			return -EINVAL;
		if (i > 0)
			pieces[n++] = (struct piece){"\n", 1};
		pieces[n++] = (struct piece){fields[i], strlen(fields[i])};
	}
	return hmac_pieces(key, key_len, pieces, n, mac);
}

int mh_cmd_sign(const uint8_t *key, size_t key_len, const char *id, const char *meter,
	const char *action, const char *ts, const char *expires, const char *block_hex,
	char out[65])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t mac[32];
	int rc = signed_string_mac(key, key_len, id, meter, action, ts, expires, block_hex, mac);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < sizeof(mac); i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 0x0F];
	}
	out[64] = '\0';
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

bool mh_cmd_sig_ok(const struct mh_cmd *c, const uint8_t *key, size_t key_len)
{
	uint8_t mac[32];
	bool ok;

	/*
	 * An empty action_name stands for an action it could not hold, whose
	 * signed string is lost: never verified (no valid action is empty).
	 */
	if (!c->has_sig || !c->action_name[0])
		return false;
	if (signed_string_mac(key, key_len, c->id, c->meter, c->action_name, c->ts, c->expires,
		    c->has_block ? c->block_hex : NULL, mac) < 0)
		return false;
	ok = CRYPTO_memcmp(mac, c->sig, sizeof(mac)) == 0;
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok;
}

/* ---- time ------------------------------------------------------------------ */

/* Exactly @n decimal digits at @s into *@v; a NUL ends the digits, so a short string fails. */
int mh_cmd_time_parse(const char *s, int64_t *ms)
{
	struct mh_rfc3339 t;

	if (!s || mh_rfc3339_parse(s, &t) < 0)
		return -EINVAL;
	*ms = t.ms;
	return 0;
}

enum mh_cmd_reason mh_cmd_check_time(const struct mh_cmd *c, int64_t now_ms, int64_t max_skew_ms)
{
	int64_t skew;

	if (max_skew_ms < 0 || __builtin_sub_overflow(c->ts_ms, now_ms, &skew) ||
		skew > max_skew_ms || skew < -max_skew_ms)
		return MH_CMD_STALE;
	if (c->expires_ms <= now_ms || c->expires_ms <= c->ts_ms)
		return MH_CMD_EXPIRED;
	return MH_CMD_OK;
}

/* ---- parsing ---------------------------------------------------------------- */

/* The state of one parse: the first failure is the one reported. */
struct parse {
	char *detail;
	size_t cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void fail(struct parse *st, const char *fmt, ...)
{
	va_list ap;

	if (st->failed)
		return;
	st->failed = true;
	if (!st->detail || !st->cap)
		return;
	va_start(ap, fmt);
	vsnprintf(st->detail, st->cap, fmt, ap);
	va_end(ap);
}

/* @s for a message: at most SHOWN_MAX bytes, each byte that is not printable ASCII as '?'. */
static const char *shown(const char *s, char buf[SHOWN_MAX + 4])
{
	size_t i;

	for (i = 0; s[i] && i < SHOWN_MAX; i++)
		buf[i] = s[i] >= 0x20 && s[i] < 0x7F ? s[i] : '?';
	strcpy(buf + i, s[i] ? "..." : "");
	return buf;
}

/*
 * Offset of the first byte of @p that does not start a well-formed UTF-8
 * sequence (RFC 3629 table 3: no overlong forms, no surrogates, nothing
 * beyond U+10FFFF), or @len when there is none.
 */
static size_t utf8_invalid_at(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i], lo = 0x80, hi = 0xBF;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			if (c == 0xE0)
				lo = 0xA0; /* below is overlong */
			else if (c == 0xED)
				hi = 0x9F; /* above are the surrogates U+D800..DFFF */
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			if (c == 0xF0)
				lo = 0x90; /* below is overlong */
			else if (c == 0xF4)
				hi = 0x8F; /* above is beyond U+10FFFF */
		} else {
			return i; /* a continuation byte, C0, C1 or F5..FF */
		}
		if (len - i <= n || p[i + 1] < lo || p[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= n; k++)
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
		i += n + 1;
	}
	return len;
}

/*
 * What cJSON does not check, or checks only after recursing: the nesting
 * depth (cJSON allows 1000 levels of C stack), NUL bytes and \u0000 (either
 * would cut a string short of what was signed), control characters inside
 * strings and outside them anything but JSON's four whitespace bytes
 * (cJSON skips every byte up to space). Returns whether the text passed.
 */
static bool scan_json(struct parse *st, const char *p, size_t len)
{
	unsigned depth = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == 0) {
			fail(st, "a NUL byte at byte %zu", i);
			return false;
		}
		if (in_string) {
			bool escaped = c == '\\' && i + 1 < len;

			if (escaped) {
				/* cJSON judges the escape, unless it hides a NUL. */
				c = (unsigned char)p[++i];
				if (c == 'u' && len - i > 4 && !memcmp(p + i + 1, "0000", 4)) {
					fail(st, "\\u0000 in a string at byte %zu", i - 1);
					return false;
				}
			}
			if (c < 0x20) {
				fail(st, "a control character in a string at byte %zu", i);
				return false;
			}
			if (c == '"' && !escaped)
				in_string = false;
			continue;
		}
		if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > MH_CMD_MAX_DEPTH) {
				fail(st, "nested deeper than %d levels at byte %zu",
					MH_CMD_MAX_DEPTH, i);
				return false;
			}
		} else if (c == ']' || c == '}') {
			if (depth)
				depth--;
		} else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
			fail(st, "a control character at byte %zu", i);
			return false;
		}
	}
	return true;
}

static bool is_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == ':' || c == '-';
}

/* @n (even) hex digits of @s, either case, into @n / 2 bytes. */
static bool hex_decode(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i += 2) {
		int hi = mh_hex_value(s[i]), lo = mh_hex_value(s[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* id and meter: 1..MH_CMD_NAME_MAX characters of [A-Za-z0-9._:-]. */
static void read_name(struct parse *st, const char *key, const char *value, char *dst)
{
	size_t n = strlen(value);
	char buf[SHOWN_MAX + 4];
	bool ok = n >= 1 && n <= MH_CMD_NAME_MAX;

	for (size_t i = 0; ok && i < n; i++)
		ok = is_name_char(value[i]);
	if (ok)
		memcpy(dst, value, n + 1);
	else
		fail(st, "%s: \"%s\" is not 1..%d characters of [A-Za-z0-9._:-]", key,
			shown(value, buf), MH_CMD_NAME_MAX);
}

static void read_id(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	read_name(st, key, value, c->id);
}

static void read_meter(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	read_name(st, key, value, c->meter);
}

/* Any string is an action here; an unknown one is rejected later, after the signature. */
static void read_action(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	size_t n = strlen(value);
	bool printable = n < sizeof(c->action_name);

	(void)st, (void)key;
	for (size_t i = 0; printable && i < n; i++)
		printable = value[i] >= 0x20 && value[i] < 0x7F;
	if (!printable)
		return;
	memcpy(c->action_name, value, n + 1);
	for (size_t a = 0; a < MH_CMD_ACTIONS; a++) {
		if (!strcmp(value, action_names[a])) {
			c->action = (enum mh_cmd_action)a;
			c->action_known = true;
		}
	}
}

static void read_time(
	struct parse *st, const char *key, const char *value, char dst[48], int64_t *ms)
{
	char buf[SHOWN_MAX + 4];

	if (strlen(value) >= 48) {
		fail(st, "%s: \"%s\" is longer than 47 characters", key, shown(value, buf));
		return;
	}
	strcpy(dst, value);
	if (mh_cmd_time_parse(value, ms) < 0)
		fail(st, "%s: \"%s\" is not an RFC 3339 time (2026-11-22T03:45:00Z)", key,
			shown(value, buf));
}

static void read_ts(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	read_time(st, key, value, c->ts, &c->ts_ms);
}

static void read_expires(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	read_time(st, key, value, c->expires, &c->expires_ms);
}

static void read_sig(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	if (strlen(value) == 2 * sizeof(c->sig) && hex_decode(value, 2 * sizeof(c->sig), c->sig))
		c->has_sig = true;
	else
		fail(st, "%s: not 64 hex digits", key);
}

static void read_block(struct parse *st, const char *key, const char *value, struct mh_cmd *c)
{
	size_t n = strlen(value);

	if (n >= 2 && n <= 2 * MH_CMD_BLOCK_MAX && n % 2 == 0 && hex_decode(value, n, c->block)) {
		memcpy(c->block_hex, value, n + 1);
		c->block_len = n / 2;
		c->has_block = true;
	} else {
		fail(st, "%s: not 2..%d hex digits of whole bytes", key, 2 * MH_CMD_BLOCK_MAX);
	}
}

/* The keys of a command, in the order their failures are reported. */
static const struct field {
	const char *key;
	bool required;
	void (*read)(struct parse *st, const char *key, const char *value, struct mh_cmd *c);
} fields[] = {
	{"id", true, read_id},
	{"meter", true, read_meter},
	{"action", true, read_action},
	{"ts", true, read_ts},
	{"expires", true, read_expires},
	{"sig", false, read_sig},
	{"block", false, read_block},
};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

static void read_fields(struct parse *st, const cJSON *root, struct mh_cmd *c)
{
	const cJSON *found[N_FIELDS] = {0}, *item;

	/* cJSON keeps every member of a duplicate; the first of each is read. */
	cJSON_ArrayForEach(item, root)
	{
		for (size_t f = 0; item->string && f < N_FIELDS; f++) {
			if (strcmp(item->string, fields[f].key))
				continue;
			if (found[f])
				fail(st, "duplicate key \"%s\"", fields[f].key);
			else
				found[f] = item;
		}
	}
	for (size_t f = 0; f < N_FIELDS; f++) {
		if (!found[f]) {
			if (fields[f].required)
				fail(st, "%s missing", fields[f].key);
		} else if (!cJSON_IsString(found[f]) || !found[f]->valuestring) {
			fail(st, "%s is not a string", fields[f].key);
		} else {
			fields[f].read(st, fields[f].key, found[f]->valuestring, c);
		}
	}
}

static bool is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

enum mh_cmd_reason mh_cmd_parse(
	const char *payload, size_t len, struct mh_cmd *out, char *detail, size_t cap)
{
	struct parse st = {.detail = detail, .cap = cap};
	char text[MH_CMD_MAX_PAYLOAD + 1];
	const char *end = NULL;
	cJSON *root;
	size_t at;

	memset(out, 0, sizeof(*out));
	if (detail && cap)
		detail[0] = '\0';
	if (len > MH_CMD_MAX_PAYLOAD) {
		fail(&st, "%zu bytes, more than %d", len, MH_CMD_MAX_PAYLOAD);
		return MH_CMD_TOO_LARGE;
	}
	if (!payload || len == 0) {
		fail(&st, "empty payload");
		return MH_CMD_MALFORMED;
	}
	at = utf8_invalid_at((const uint8_t *)payload, len);
	if (at < len) {
		fail(&st, "invalid UTF-8 at byte %zu", at);
		return MH_CMD_MALFORMED;
	}
	if (!scan_json(&st, payload, len))
		return MH_CMD_MALFORMED;

	/* A NUL-terminated copy, so that cJSON stops at the end whatever it reads ahead. */
	memcpy(text, payload, len);
	text[len] = '\0';
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (!root) {
		fail(&st, "invalid JSON at byte %zu", end ? (size_t)(end - text) : (size_t)0);
		return MH_CMD_MALFORMED;
	}
	for (at = (size_t)(end - text); at < len && is_json_space(text[at]); at++)
		;
	if (at < len)
		fail(&st, "text after the JSON value at byte %zu", at);
	else if (!cJSON_IsObject(root))
		fail(&st, "not a JSON object");
	else
		read_fields(&st, root, out);
	cJSON_Delete(root);
	return st.failed ? MH_CMD_MALFORMED : MH_CMD_OK;
}

/* ---- the key ---------------------------------------------------------------- */

/* Decode the @n bytes of a key file into @key (@cap bytes). */
static int key_decode(const uint8_t *buf, size_t n, uint8_t *key, size_t cap, size_t *len)
{
	size_t digits = n > 0 && buf[n - 1] == '\n' ? n - 1 : n;
	bool is_hex = digits >= 64 && digits % 2 == 0;

	for (size_t i = 0; is_hex && i < digits; i++)
		is_hex = mh_hex_value((char)buf[i]) >= 0;
	if (is_hex) {
		if (digits / 2 > cap)
			return -EINVAL;
		hex_decode((const char *)buf, digits, key);
		*len = digits / 2;
	} else {
		if (n > cap)
			return -EINVAL;
		memcpy(key, buf, n);
		*len = n;
	}
	return 0;
}

int mh_cmd_key_load(
	const char *file, uint8_t *key, size_t cap, size_t *len, char *err, size_t errcap)
{
	uint8_t buf[KEY_FILE_MAX + 1];
	size_t n = 0;
	struct stat st;
	int fd, rc = 0;

	if (err && errcap)
		err[0] = '\0';
	/* O_NONBLOCK: a FIFO put in the key's place must not hang the open. */
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		mh_explain(err, errcap, "%s: %s", file, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		mh_explain(err, errcap, "%s: %s", file, strerror(-rc));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EPERM;
		mh_explain(err, errcap, "%s: not a regular file (mode %06o)", file,
			(unsigned)st.st_mode);
	} else if (st.st_mode & 077) {
		rc = -EPERM;
		mh_explain(err, errcap,
			"%s: mode %04o lets group or others at the key; chmod 600 it (and make a "
			"new key if others could read it)",
			file, (unsigned)(st.st_mode & 07777));
	}
	while (rc == 0 && n < sizeof(buf)) {
		ssize_t got = read(fd, buf + n, sizeof(buf) - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			mh_explain(err, errcap, "%s: %s", file, strerror(-rc));
		} else if (got == 0) {
			break;
		} else {
			n += (size_t)got;
		}
	}
	close(fd);
	if (rc == 0 && n > KEY_FILE_MAX) {
		rc = -EINVAL;
		mh_explain(err, errcap, "%s: longer than %d bytes; not a key file", file,
			KEY_FILE_MAX);
	}
	if (rc == 0 && key_decode(buf, n, key, cap, len) < 0) {
		rc = -EINVAL;
		mh_explain(err, errcap, "%s: a key longer than %zu bytes", file, cap);
	}
	if (rc == 0 && *len < MH_CMD_KEY_MIN) {
		rc = -EINVAL;
		mh_explain(err, errcap, "%s: a key of %zu bytes; at least %d are needed", file, *len,
			MH_CMD_KEY_MIN);
	}
	if (rc < 0)
		OPENSSL_cleanse(key, cap);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}
