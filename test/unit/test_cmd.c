// SPDX-License-Identifier: MIT
/*
 * Remote commands (gateway/cmd.h): parsing, signatures, times, the key
 * file. Expected values come from outside the code under test: HMAC-SHA256
 * from RFC 4231 section 4 and from Python's hmac module (each one-liner is
 * beside its value), Unix times from Python's datetime, the UTF-8 cases
 * from RFC 3629 table 3.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

#include "cmd.h"

#define KEY "meterhub-test-key-0123456789"
#define KEY_LEN (sizeof(KEY) - 1)

/*
 * /usr/bin/python3 -c "import hmac,hashlib;print(hmac.new(b'meterhub-test-key-0123456789',
 *   b'c-42\nm-0001\ntrip\n2026-11-22T03:45:00Z\n2026-11-22T04:45:00Z',
 * hashlib.sha256).hexdigest())"
 */
#define SIG42 "e5339f4eeaaf255fee8ae899df2538abd891dc0f20acc6b74fa5d3775234436d"
/*
 * /usr/bin/python3 -c "import hmac,hashlib;print(hmac.new(b'meterhub-test-key-0123456789',
 *   b'c-43\nm-0002\nrestore\n2026-11-22T11:45:00+08:00\n2026-11-22T12:45:00.5+08:00\n0233333334',
 *   hashlib.sha256).hexdigest())"
 */
#define SIG43 "c03f694f2ae71ccfc1989400de711c047e1bcb4e78cf4d16d661a5479764d04d"

#define C42                                                                                        \
	"{\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\",\"ts\":\"2026-11-22T03:45:"     \
	"00Z\","                                                                                   \
	"\"expires\":\"2026-11-22T04:45:00Z\",\"sig\":\"" SIG42 "\"}"
#define C43                                                                                        \
	"{\"id\":\"c-43\",\"meter\":\"m-0002\",\"action\":\"restore\","                            \
	"\"ts\":\"2026-11-22T11:45:00+08:00\",\"expires\":\"2026-11-22T12:45:00.5+08:00\","        \
	"\"block\":\"0233333334\",\"sig\":\"" SIG43 "\"}"

/* datetime.fromisoformat('2026-11-22T03:45:00+00:00').timestamp() * 1000 */
#define T42 1795319100000LL

static const uint8_t key[] = KEY;

/* A detail must be one line of printable ASCII. */
static void assert_detail_clean(const char *detail, size_t cap)
{
	size_t n = strnlen(detail, cap);

	assert_true(n < cap);
	for (size_t i = 0; i < n; i++)
		assert_true(detail[i] >= 0x20 && detail[i] < 0x7F);
}

static enum mh_cmd_reason parse_n(
	const char *payload, size_t len, struct mh_cmd *c, char *detail, size_t cap)
{
	enum mh_cmd_reason r = mh_cmd_parse(payload, len, c, detail, cap);

	assert_detail_clean(detail, cap);
	if (r == MH_CMD_OK)
		assert_string_equal(detail, "");
	else
		assert_true(detail[0] != '\0');
	return r;
}

static enum mh_cmd_reason parse(const char *payload, struct mh_cmd *c, char detail[160])
{
	return parse_n(payload, strlen(payload), c, detail, 160);
}

/* ---- HMAC ------------------------------------------------------------------ */

static size_t unhex(const char *s, uint8_t *out)
{
	size_t n = 0;
	unsigned v;

	for (; s[0] && s[1] && sscanf(s, "%2x", &v) == 1; s += 2)
		out[n++] = (uint8_t)v;
	return n;
}

/* RFC 4231 section 4, test cases 1-7 (case 5 compares the 128 bits it gives). */
static void test_hmac_rfc4231(void **state)
{
	static const struct {
		uint8_t key_byte; /* 0: the key is 01 02 .. 19 */
		size_t key_len;
		const char *data; /* NULL: 50 bytes of data_byte */
		uint8_t data_byte;
		const char *mac;
	} cases[] = {
		{0x0b, 20, "Hi There", 0,
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{0, 0, "what do ya want for nothing?", 0,
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{0xaa, 20, NULL, 0xdd,
			"773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
		{0, 25, NULL, 0xcd,
			"82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
		{0x0c, 20, "Test With Truncation", 0, "a3b6167473100ee06e0c796c2955552b"},
		{0xaa, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 0,
			"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{0xaa, 131,
			"This is a test using a larger than block-size key and a larger than "
			"block-size data. The key needs to be hashed before being used by the HMAC "
			"algorithm.",
			0, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t k[131], data[50], want[32], mac[32];
		size_t klen = cases[i].key_len, dlen, wlen;
		const void *msg = data;

		if (i == 1) {
			memcpy(k, "Jefe", 4);
			klen = 4;
		} else if (cases[i].key_byte) {
			memset(k, cases[i].key_byte, klen);
		} else {
			for (size_t j = 0; j < klen; j++)
				k[j] = (uint8_t)(j + 1);
		}
		if (cases[i].data) {
			msg = cases[i].data;
			dlen = strlen(cases[i].data);
		} else {
			memset(data, cases[i].data_byte, sizeof(data));
			dlen = sizeof(data);
		}
		wlen = unhex(cases[i].mac, want);
		assert_int_equal(mh_cmd_hmac(k, klen, msg, dlen, mac), 0);
		assert_memory_equal(mac, want, wlen);
	}
}

static void test_sign_matches_python(void **state)
{
	char hex[65];

	(void)state;
	assert_int_equal(mh_cmd_sign(key, KEY_LEN, "c-42", "m-0001", "trip", "2026-11-22T03:45:00Z",
				 "2026-11-22T04:45:00Z", NULL, hex),
		0);
	assert_string_equal(hex, SIG42);
	assert_int_equal(
		mh_cmd_sign(key, KEY_LEN, "c-43", "m-0002", "restore", "2026-11-22T11:45:00+08:00",
			"2026-11-22T12:45:00.5+08:00", "0233333334", hex),
		0);
	assert_string_equal(hex, SIG43);
}

static void test_sign_errors(void **state)
{
	char hex[65];
	uint8_t mac[32];

	(void)state;
	assert_int_equal(
		mh_cmd_sign(key, KEY_LEN, NULL, "m", "trip", "t", "e", NULL, hex), -EINVAL);
	assert_int_equal(
		mh_cmd_sign(key, KEY_LEN, "i", "m", "trip", "t", NULL, NULL, hex), -EINVAL);
	assert_int_equal(mh_cmd_sign(key, 0, "i", "m", "trip", "t", "e", NULL, hex), -EINVAL);
	assert_int_equal(mh_cmd_sign(NULL, 16, "i", "m", "trip", "t", "e", NULL, hex), -EINVAL);
	assert_int_equal(mh_cmd_hmac(key, KEY_LEN, NULL, 1, mac), -EINVAL);
	assert_int_equal(mh_cmd_hmac(key, KEY_LEN, NULL, 0, mac), 0);
}

/* ---- a valid command, its signature --------------------------------------- */

static void test_parse_valid(void **state)
{
	struct mh_cmd c;
	char detail[160];

	(void)state;
	assert_int_equal(parse(C42, &c, detail), MH_CMD_OK);
	assert_string_equal(c.id, "c-42");
	assert_string_equal(c.meter, "m-0001");
	assert_string_equal(c.action_name, "trip");
	assert_true(c.action_known);
	assert_int_equal(c.action, MH_CMD_TRIP);
	assert_string_equal(c.ts, "2026-11-22T03:45:00Z");
	assert_string_equal(c.expires, "2026-11-22T04:45:00Z");
	assert_int_equal(c.ts_ms, T42);
	assert_int_equal(c.expires_ms, T42 + 3600000);
	assert_true(c.has_sig);
	assert_int_equal(c.sig[0], 0xe5);
	assert_int_equal(c.sig[31], 0x6d);
	assert_false(c.has_block);
	assert_int_equal(c.block_len, 0);
	assert_string_equal(c.block_hex, "");
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* Whitespace around, unknown keys of any type and nesting up to 4 are fine. */
	assert_int_equal(
		parse(" \r\n\t{\"v\":2,\"note\":\"[[[[[[[[\",\"x\":[[[1]]],\"id\":\"c-42\","
		      "\"meter\":\"m-0001\",\"action\":\"trip\",\"ts\":\"2026-11-22T03:45:00Z\","
		      "\"expires\":\"2026-11-22T04:45:00Z\",\"y\":{\"z\":{\"w\":null}},"
		      "\"中文\":\"电表\",\"sig\":\"" SIG42 "\"}\n",
			&c, detail),
		MH_CMD_OK);
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* JSON escapes are undone before the signature is checked. */
	assert_int_equal(
		parse("{\"id\":\"c\\u002d42\",\"meter\":\"m-0001\",\"action\":\"tr\\u0069p\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00\\u005a\","
		      "\"sig\":\"" SIG42 "\"}",
			&c, detail),
		MH_CMD_OK);
	assert_string_equal(c.id, "c-42");
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));
}

static void test_parse_block(void **state)
{
	static const uint8_t block[] = {0x02, 0x33, 0x33, 0x33, 0x34};
	struct mh_cmd c;
	char detail[160], payload[600], hex[65];

	(void)state;
	assert_int_equal(parse(C43, &c, detail), MH_CMD_OK);
	assert_true(c.has_block);
	assert_int_equal(c.block_len, sizeof(block));
	assert_memory_equal(c.block, block, sizeof(block));
	assert_string_equal(c.block_hex, "0233333334");
	assert_int_equal(c.action, MH_CMD_RESTORE);
	assert_int_equal(c.ts_ms, T42);
	assert_int_equal(c.expires_ms, T42 + 3600500);
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* The signature covers the block: without it, or with another one, it fails. */
	assert_int_equal(parse("{\"id\":\"c-43\",\"meter\":\"m-0002\",\"action\":\"restore\","
			       "\"ts\":\"2026-11-22T11:45:00+08:00\",\"expires\":\"2026-11-22T12:"
			       "45:00.5+08:00\","
			       "\"sig\":\"" SIG43 "\"}",
				 &c, detail),
		MH_CMD_OK);
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN));
	assert_int_equal(parse("{\"id\":\"c-43\",\"meter\":\"m-0002\",\"action\":\"restore\","
			       "\"ts\":\"2026-11-22T11:45:00+08:00\",\"expires\":\"2026-11-22T12:"
			       "45:00.5+08:00\","
			       "\"block\":\"0233333335\",\"sig\":\"" SIG43 "\"}",
				 &c, detail),
		MH_CMD_OK);
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* The block is signed as given: the same bytes in the other case are another string. */
	assert_int_equal(mh_cmd_sign(key, KEY_LEN, "c-44", "m-1", "trip", "2026-11-22T03:45:00Z",
				 "2026-11-22T04:45:00Z", "0a0b", hex),
		0);
	snprintf(payload, sizeof(payload),
		"{\"id\":\"c-44\",\"meter\":\"m-1\",\"action\":\"trip\",\"ts\":\"2026-11-22T03:45:"
		"00Z\","
		"\"expires\":\"2026-11-22T04:45:00Z\",\"block\":\"%s\",\"sig\":\"%s\"}",
		"0A0B", hex);
	assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
	assert_int_equal(c.block[0], 0x0a);
	assert_string_equal(c.block_hex, "0A0B");
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* The longest block, 200 bytes. */
	{
		char digits[401];

		for (size_t i = 0; i < 400; i++)
			digits[i] = "0123456789abcdef"[i % 16];
		digits[400] = '\0';
		snprintf(payload, sizeof(payload),
			"{\"id\":\"c\",\"meter\":\"m\",\"action\":\"trip\",\"ts\":\"2026-11-22T03:"
			"45:00Z\","
			"\"expires\":\"2026-11-22T04:45:00Z\",\"block\":\"%s\"}",
			digits);
		assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
		assert_int_equal(c.block_len, MH_CMD_BLOCK_MAX);
		assert_int_equal(c.block[199], 0xef);
	}
}

static void test_sig_wrong_by_one_bit(void **state)
{
	struct mh_cmd c;
	char detail[160];
	uint8_t other[sizeof(key)];

	(void)state;
	assert_int_equal(parse(C42, &c, detail), MH_CMD_OK);
	for (size_t bit = 0; bit < 256; bit++) {
		struct mh_cmd flipped = c;

		flipped.sig[bit / 8] ^= (uint8_t)(1u << bit % 8);
		assert_false(mh_cmd_sig_ok(&flipped, key, KEY_LEN));
	}
	/* A key one bit off. */
	memcpy(other, key, sizeof(key));
	other[KEY_LEN - 1] ^= 1;
	assert_false(mh_cmd_sig_ok(&c, other, KEY_LEN));
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN - 1));
	assert_false(mh_cmd_sig_ok(&c, key, 0));
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* The same sig on another meter, in one hex digit of the payload. */
	assert_int_equal(
		parse("{\"id\":\"c-42\",\"meter\":\"m-0002\",\"action\":\"trip\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\","
		      "\"sig\":\"" SIG42 "\"}",
			&c, detail),
		MH_CMD_OK);
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN));
}

static void test_sig_case_and_absence(void **state)
{
	struct mh_cmd c;
	char detail[160];

	(void)state;
	/* Uppercase hex is the same signature. */
	assert_int_equal(
		parse("{\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\","
		      "\"sig\":"
		      "\"E5339F4EEAAF255FEE8AE899DF2538ABD891DC0F20ACC6B74FA5D3775234436D\"}",
			&c, detail),
		MH_CMD_OK);
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* No sig is not malformed; it is a bad signature, later. */
	assert_int_equal(
		parse("{\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\"}",
			&c, detail),
		MH_CMD_OK);
	assert_false(c.has_sig);
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN));
}

static void test_actions(void **state)
{
	static const char *const names[] = {"trip", "restore", "keep_power", "cancel_keep_power",
		"alarm_on", "alarm_off", "recall"};
	struct mh_cmd c;
	char detail[160], payload[512], hex[65];

	(void)state;
	for (size_t a = 0; a < MH_CMD_ACTIONS; a++) {
		snprintf(payload, sizeof(payload),
			"{\"id\":\"c\",\"meter\":\"m\",\"action\":\"%s\",\"ts\":\"2026-11-22T03:45:"
			"00Z\","
			"\"expires\":\"2026-11-22T04:45:00Z\"}",
			names[a]);
		assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
		assert_true(c.action_known);
		assert_int_equal(c.action, a);
	}

	/* Unknown: not malformed; signed like any other, reported after the signature. */
	assert_int_equal(mh_cmd_sign(key, KEY_LEN, "c", "m", "explode", "2026-11-22T03:45:00Z",
				 "2026-11-22T04:45:00Z", NULL, hex),
		0);
	snprintf(payload, sizeof(payload),
		"{\"id\":\"c\",\"meter\":\"m\",\"action\":\"explode\",\"ts\":\"2026-11-22T03:45:"
		"00Z\","
		"\"expires\":\"2026-11-22T04:45:00Z\",\"sig\":\"%s\"}",
		hex);
	assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
	assert_false(c.action_known);
	assert_string_equal(c.action_name, "explode");
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));

	/* Case matters. */
	snprintf(payload, sizeof(payload),
		"{\"id\":\"c\",\"meter\":\"m\",\"action\":\"TRIP\",\"ts\":\"2026-11-22T03:45:00Z\","
		"\"expires\":\"2026-11-22T04:45:00Z\"}");
	assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
	assert_false(c.action_known);
	assert_string_equal(c.action_name, "TRIP");

	/* Too long or not ASCII for action_name: kept out, and never verified. */
	assert_int_equal(mh_cmd_sign(key, KEY_LEN, "c", "m", "trip-the-relay-right-now",
				 "2026-11-22T03:45:00Z", "2026-11-22T04:45:00Z", NULL, hex),
		0);
	snprintf(payload, sizeof(payload),
		"{\"id\":\"c\",\"meter\":\"m\",\"action\":\"trip-the-relay-right-now\","
		"\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\",\"sig\":\"%"
		"s\"}",
		hex);
	assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
	assert_false(c.action_known);
	assert_string_equal(c.action_name, "");
	assert_false(mh_cmd_sig_ok(&c, key, KEY_LEN));
	assert_int_equal(
		parse("{\"id\":\"c\",\"meter\":\"m\",\"action\":\"trip\\u00e9\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\"}",
			&c, detail),
		MH_CMD_OK);
	assert_false(c.action_known);
	assert_string_equal(c.action_name, "");
}

/* ---- malformed -------------------------------------------------------------- */

enum { F_ID, F_METER, F_ACTION, F_TS, F_EXPIRES, F_SIG, F_BLOCK, F_COUNT };

static const char *const field_keys[F_COUNT] = {
	"id", "meter", "action", "ts", "expires", "sig", "block"};

/* C42 with field @f given as the JSON text @raw (NULL: left out). */
static void with_field(char *out, size_t cap, int f, const char *raw)
{
	static const char *const valid[F_COUNT] = {"\"c-42\"", "\"m-0001\"", "\"trip\"",
		"\"2026-11-22T03:45:00Z\"", "\"2026-11-22T04:45:00Z\"", "\"" SIG42 "\"", NULL};
	size_t n = (size_t)snprintf(out, cap, "{");

	for (int i = 0; i < F_COUNT; i++) {
		const char *v = i == f ? raw : valid[i];

		if (v)
			n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":%s", n > 1 ? "," : "",
				field_keys[i], v);
	}
	snprintf(out + n, cap - n, "}");
}

static void test_malformed_fields(void **state)
{
	static const struct {
		int field;
		const char *raw;
		const char *detail;
	} cases[] = {
		{F_ID, NULL, "id missing"},
		{F_METER, NULL, "meter missing"},
		{F_ACTION, NULL, "action missing"},
		{F_TS, NULL, "ts missing"},
		{F_EXPIRES, NULL, "expires missing"},
		{F_ID, "42", "id is not a string"},
		{F_METER, "null", "meter is not a string"},
		{F_ACTION, "[\"trip\"]", "action is not a string"},
		{F_TS, "1795319100", "ts is not a string"},
		{F_EXPIRES, "{}", "expires is not a string"},
		{F_SIG, "true", "sig is not a string"},
		{F_SIG, "null", "sig is not a string"},
		{F_BLOCK, "2", "block is not a string"},
		{F_ID, "\"\"", "id: \"\" is not 1..64 characters"},
		{F_ID, "\"c 42\"", "id: \"c 42\" is not"},
		{F_ID, "\"c/42\"", "id: \"c/42\" is not"},
		{F_ID, "\"c-42\\u00e9\"", "id: \"c-42??\" is not"},
		{F_ID, "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
			"id: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is not"},
		{F_METER, "\"m#1\"", "meter: \"m#1\" is not"},
		{F_TS, "\"2026-11-22\"", "ts: \"2026-11-22\" is not an RFC 3339 time"},
		{F_TS, "\"2026-13-01T00:00:00Z\"", "ts: \"2026-13-01T00:00:00Z\" is not an RFC"},
		{F_TS, "\"2026-11-22T03:45:00.000000000000000000000000000000Z\"",
			"ts: \"2026-11-22T03:45:00.00000000000000000000...\" is longer than 47"},
		{F_EXPIRES, "\"tomorrow\"", "expires: \"tomorrow\" is not an RFC 3339 time"},
		{F_SIG, "\"e5339f4eeaaf255fee8ae899df2538abd891dc0f20acc6b74fa5d3775234436\"",
			"sig: not 64 hex digits"},
		{F_SIG, "\"" SIG42 "0\"", "sig: not 64 hex digits"},
		{F_SIG, "\"g5339f4eeaaf255fee8ae899df2538abd891dc0f20acc6b74fa5d3775234436d\"",
			"sig: not 64 hex digits"},
		{F_SIG, "\"\"", "sig: not 64 hex digits"},
		{F_BLOCK, "\"0\"", "block: not 2..400 hex digits"},
		{F_BLOCK, "\"\"", "block: not 2..400 hex digits"},
		{F_BLOCK, "\"zz\"", "block: not 2..400 hex digits"},
		{F_BLOCK, "\"0x12\"", "block: not 2..400 hex digits"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char payload[1024], detail[160];
		struct mh_cmd c;

		with_field(payload, sizeof(payload), cases[i].field, cases[i].raw);
		assert_int_equal(parse(payload, &c, detail), MH_CMD_MALFORMED);
		if (!strstr(detail, cases[i].detail))
			fail_msg("%s: detail \"%s\", wanted \"%s\"", payload, detail,
				cases[i].detail);
		/* The fields that were fine are there for the rejection. */
		if (cases[i].field != F_ID)
			assert_string_equal(c.id, "c-42");
		else
			assert_string_equal(c.id, "");
		if (cases[i].field != F_METER)
			assert_string_equal(c.meter, "m-0001");
		if (cases[i].field != F_ACTION)
			assert_string_equal(c.action_name, "trip");
	}

	/* The block at one over its limit: 201 bytes. */
	{
		char raw[410], payload[1024], detail[160];
		struct mh_cmd c;

		raw[0] = '"';
		memset(raw + 1, 'a', 402);
		strcpy(raw + 403, "\"");
		with_field(payload, sizeof(payload), F_BLOCK, raw);
		assert_int_equal(parse(payload, &c, detail), MH_CMD_MALFORMED);
		assert_non_null(strstr(detail, "block: not 2..400 hex digits"));
		assert_false(c.has_block);
	}
}

static void test_malformed_documents(void **state)
{
	static const struct {
		const char *payload;
		size_t len; /* 0: strlen */
		const char *detail;
	} cases[] = {
		{"", 0, "empty payload"},
		{"not json", 0, "invalid JSON at byte 0"},
		{"{\"id\":", 0, "invalid JSON"},
		{"{\"id\":\"c-42\"", 0, "invalid JSON"},
		{"{\"id\":\"c\\x42\"}", 0, "invalid JSON"},
		{"{\"x\":\"\\ud800\"}", 0, "invalid JSON"},
		{"{\"x\":1}}", 0, "text after the JSON value at byte 7"},
		{"{\"x\":1} {}", 0, "text after the JSON value at byte 8"},
		{"[1,2]", 0, "not a JSON object"},
		{"\"c-42\"", 0, "not a JSON object"},
		{"42", 0, "not a JSON object"},
		{"null", 0, "not a JSON object"},
		{"{\"id\":\"c\x01\"}", 0, "a control character in a string at byte 8"},
		{"{\"id\":\"c\n\"}", 0, "a control character in a string"},
		{"{\"id\":\"c\\\x01\"}", 0, "a control character in a string"},
		{"{\x0c\"id\":1}", 0, "a control character at byte 1"},
		{"{\"id\":\"c-42\\u0000x\"}", 0, "\\u0000 in a string at byte 11"},
		{"{\"id\":\"c\0\"}", 10, "a NUL byte at byte 8"},
		{"{\"x\":1}\0", 8, "a NUL byte at byte 7"},
		{"{\"x\":[[[[1]]]]}", 0, "nested deeper than 4 levels at byte 8"},
		{"{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", 0, "nested deeper than 4 levels"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].payload);
		char detail[160];
		struct mh_cmd c;

		assert_int_equal(parse_n(cases[i].payload, len, &c, detail, sizeof(detail)),
			MH_CMD_MALFORMED);
		if (!strstr(detail, cases[i].detail))
			fail_msg("case %zu: detail \"%s\", wanted \"%s\"", i, detail,
				cases[i].detail);
	}
}

static void test_duplicate_keys(void **state)
{
	struct mh_cmd c;
	char detail[160];

	(void)state;
	assert_int_equal(
		parse("{\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\",\"id\":\"c-43\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\"}",
			&c, detail),
		MH_CMD_MALFORMED);
	assert_string_equal(detail, "duplicate key \"id\"");
	assert_string_equal(c.id, "c-42");
	assert_string_equal(c.meter, "m-0001");

	/* Two signatures: which one counts would be the attacker's choice. */
	assert_int_equal(
		parse("{\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\","
		      "\"sig\":\"" SIG42 "\",\"sig\":\"" SIG43 "\"}",
			&c, detail),
		MH_CMD_MALFORMED);
	assert_string_equal(detail, "duplicate key \"sig\"");
	assert_int_equal(
		parse("{\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\","
		      "\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\","
		      "\"block\":\"00\",\"block\":\"00\"}",
			&c, detail),
		MH_CMD_MALFORMED);
	assert_string_equal(detail, "duplicate key \"block\"");

	/* An unknown key twice is ignored like any unknown key; other case is another key. */
	assert_int_equal(
		parse("{\"x\":1,\"x\":2,\"ID\":\"other\",\"id\":\"c-42\",\"meter\":\"m-0001\","
		      "\"action\":\"trip\",\"ts\":\"2026-11-22T03:45:00Z\","
		      "\"expires\":\"2026-11-22T04:45:00Z\",\"sig\":\"" SIG42 "\"}",
			&c, detail),
		MH_CMD_OK);
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));
}

static void test_too_large(void **state)
{
	char *payload = malloc(MH_CMD_MAX_PAYLOAD + 2), detail[160];
	size_t n = strlen(C42);
	struct mh_cmd c;

	(void)state;
	assert_non_null(payload);
	memcpy(payload, C42, n);
	memset(payload + n, ' ', MH_CMD_MAX_PAYLOAD + 1 - n);
	assert_int_equal(
		parse_n(payload, MH_CMD_MAX_PAYLOAD, &c, detail, sizeof(detail)), MH_CMD_OK);
	assert_true(mh_cmd_sig_ok(&c, key, KEY_LEN));
	assert_int_equal(parse_n(payload, MH_CMD_MAX_PAYLOAD + 1, &c, detail, sizeof(detail)),
		MH_CMD_TOO_LARGE);
	assert_string_equal(detail, "4097 bytes, more than 4096");
	/* Not parsed at all. */
	assert_string_equal(c.id, "");
	assert_false(c.has_sig);
	free(payload);
}

/*
 * cJSON recurses once per level, up to 1000: the depth is checked before it
 * runs. 10000 '[' are too large before they are too deep; the most that
 * fits, 4096, is malformed at the fifth.
 */
static void test_deep_nesting(void **state)
{
	char *payload = malloc(10000), detail[160];
	struct mh_cmd c;

	(void)state;
	assert_non_null(payload);
	memset(payload, '[', 10000);
	assert_int_equal(parse_n(payload, 10000, &c, detail, sizeof(detail)), MH_CMD_TOO_LARGE);
	assert_int_equal(
		parse_n(payload, MH_CMD_MAX_PAYLOAD, &c, detail, sizeof(detail)), MH_CMD_MALFORMED);
	assert_string_equal(detail, "nested deeper than 4 levels at byte 4");
	/* Closed, and as objects, it is the same. */
	memset(payload + MH_CMD_MAX_PAYLOAD / 2, ']', MH_CMD_MAX_PAYLOAD / 2);
	assert_int_equal(
		parse_n(payload, MH_CMD_MAX_PAYLOAD, &c, detail, sizeof(detail)), MH_CMD_MALFORMED);
	assert_string_equal(detail, "nested deeper than 4 levels at byte 4");
	for (size_t i = 0; i < MH_CMD_MAX_PAYLOAD / 5; i++)
		memcpy(payload + 5 * i, "{\"a\":", 5);
	assert_int_equal(
		parse_n(payload, MH_CMD_MAX_PAYLOAD, &c, detail, sizeof(detail)), MH_CMD_MALFORMED);
	assert_string_equal(detail, "nested deeper than 4 levels at byte 20");
	free(payload);
}

/* RFC 3629 table 3: each sequence in a string of an unknown key. */
static void test_utf8(void **state)
{
	static const char *const bad[] = {
		"\xc0\xaf",		    /* overlong '/' */
		"\xc1\xbf",		    /* overlong U+007F */
		"\xe0\x80\xaf",		    /* overlong '/' */
		"\xe0\x9f\xbf",		    /* overlong U+07FF */
		"\xf0\x80\x80\xaf",	    /* overlong '/' */
		"\xf0\x8f\xbf\xbf",	    /* overlong U+FFFF */
		"\xed\xa0\x80",		    /* U+D800, a surrogate */
		"\xed\xbf\xbf",		    /* U+DFFF */
		"\xed\xa0\xbd\xed\xb2\xa9", /* a surrogate pair in CESU-8 */
		"\xf4\x90\x80\x80",	    /* U+110000 */
		"\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
		"\x80",		    /* a lone continuation byte */
		"\xbf", "\xe2\x82", /* cut short by the closing quote */
		"\xe2\x28\xa1",	    /* second byte not a continuation */
		"\xf0\x90\x28\xbc", /* third byte not a continuation */
	};
	static const char *const good[] = {
		"\xc2\x80",
		"\xdf\xbf",
		"\xe0\xa0\x80",
		"\xed\x9f\xbf",
		"\xee\x80\x80",
		"\xef\xbf\xbf",
		"\xf0\x90\x80\x80",
		"\xf4\x8f\xbf\xbf",
		"中文 电表",
	};
	char payload[512], detail[160];
	struct mh_cmd c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(payload, sizeof(payload), "{\"x\":\"%s\",\"id\":\"c-42\"}", bad[i]);
		assert_int_equal(parse(payload, &c, detail), MH_CMD_MALFORMED);
		if (strcmp(detail, "invalid UTF-8 at byte 6"))
			fail_msg("case %zu: \"%s\"", i, detail);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(payload, sizeof(payload),
			"{\"x\":\"%s\",\"id\":\"c-42\",\"meter\":\"m-0001\",\"action\":\"trip\","
			"\"ts\":\"2026-11-22T03:45:00Z\",\"expires\":\"2026-11-22T04:45:00Z\"}",
			good[i]);
		assert_int_equal(parse(payload, &c, detail), MH_CMD_OK);
	}
	/* A sequence cut short by the end of the payload. */
	assert_int_equal(parse("{\"x\":1}\xe2\x82", &c, detail), MH_CMD_MALFORMED);
	assert_string_equal(detail, "invalid UTF-8 at byte 7");
}

/* Details quote at most 40 bytes of input, as printable ASCII, and fit any buffer. */
static void test_detail_bounds(void **state)
{
	char payload[1024], raw[700], detail[160], tiny[8];
	struct mh_cmd c;
	size_t n = 0;

	(void)state;
	raw[n++] = '"';
	for (int i = 0; i < 200; i++) {
		memcpy(raw + n, "\xc3\xa9", 2); /* é */
		n += 2;
	}
	strcpy(raw + n, "\"");
	with_field(payload, sizeof(payload), F_ID, raw);
	assert_int_equal(parse(payload, &c, detail), MH_CMD_MALFORMED);
	assert_string_equal(detail,
		"id: \"????????????????????????????????????????...\" is not 1..64 characters of "
		"[A-Za-z0-9._:-]");
	assert_int_equal(
		parse_n(payload, strlen(payload), &c, tiny, sizeof(tiny)), MH_CMD_MALFORMED);
	assert_string_equal(tiny, "id: \"??");
	/* No buffer at all. */
	assert_int_equal(mh_cmd_parse(payload, strlen(payload), &c, NULL, 0), MH_CMD_MALFORMED);
	assert_int_equal(mh_cmd_parse(C42, strlen(C42), &c, NULL, 0), MH_CMD_OK);
}

/* ---- times ------------------------------------------------------------------ */

static void test_time_parse(void **state)
{
	/* Values: int(datetime.fromisoformat(S).timestamp() * 1000) with Z as +00:00. */
	static const struct {
		const char *text;
		int64_t ms;
	} good[] = {
		{"2026-11-22T03:45:00Z", T42},
		{"2026-11-22T11:45:00+08:00", T42},
		{"2026-11-21T22:15:00-05:30", T42},
		{"2026-11-22T03:45:00+00:00", T42},
		{"2026-11-22T03:45:00-00:00", T42},
		{"2026-11-22t03:45:00z", T42},
		{"2026-11-22T03:45:00.5Z", T42 + 500},
		{"2026-11-22T03:45:00.050Z", T42 + 50},
		{"2026-11-22T03:45:00.123456789Z", T42 + 123},
		{"2026-11-22T03:45:00.9999Z", T42 + 999},
		{"2026-11-22T11:45:00.25+08:00", T42 + 250},
		{"2028-02-29T00:00:00Z", 1835395200000LL},
		{"2000-02-29T12:00:00Z", 951825600000LL},
		{"1970-01-01T00:00:00Z", 0},
		{"1970-01-01T08:00:00+08:00", 0},
		{"0001-01-01T00:00:00Z", -62135596800000LL},
		{"0000-01-01T00:00:00Z", -62167219200000LL}, /* year 0, a leap year */
		{"9999-12-31T23:59:59Z", 253402300799000LL},
		{"2026-12-31T23:59:59+23:59", 1798675259000LL},
	};
	static const char *const bad[] = {
		"",
		"2026",
		"2026-11-22",
		"2026-11-22T03:45Z",
		"2026-11-22T03:45:00",
		"2026-11-22 03:45:00Z",
		"2026-11-22T03:45:00ZZ",
		"2026-11-22T03:45:00Z ",
		" 2026-11-22T03:45:00Z",
		"2026-11-22T03:45:00.Z",
		"2026-11-22T03:45:00,5Z",
		"2026-11-22T03:45:00+0800",
		"2026-11-22T03:45:00+08",
		"2026-11-22T03:45:00+8:00",
		"2026-11-22T03:45:00+08:00:00",
		"2026-11-22T03:45:00 +08:00",
		"20260-11-22T03:45:00Z",
		"026-11-22T03:45:00Z",
		"2026-1-22T03:45:00Z",
		"+2026-11-22T03:45:00Z",
		"2026-00-22T03:45:00Z",
		"2026-13-22T03:45:00Z",
		"2026-11-00T03:45:00Z",
		"2026-11-31T03:45:00Z",
		"2026-04-31T03:45:00Z",
		"2026-01-32T03:45:00Z",
		"2026-02-29T03:45:00Z",
		"1900-02-29T03:45:00Z",
		"2100-02-29T03:45:00Z",
		"2028-02-30T03:45:00Z",
		"2026-11-22T24:00:00Z",
		"2026-11-22T03:60:00Z",
		"2026-11-22T03:45:60Z",
		"2026-12-31T23:59:60Z",
		"2026-11-22T03:45:00+24:00",
		"2026-11-22T03:45:00+08:60",
		"2026-11-22T03:45:00-99:00",
		"2026-11-22T03:45:00UTC",
		"2026-11-22T03:45:00.5",
		"2026-11-22T03:4a:00Z",
		"2026-11-22T0x:45:00Z",
		"2026-11-22X03:45:00Z",
		"2026/11/22T03:45:00Z",
	};
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = 42;
		if (mh_cmd_time_parse(good[i].text, &ms) != 0)
			fail_msg("\"%s\" refused", good[i].text);
		if (ms != good[i].ms)
			fail_msg("\"%s\": %lld, wanted %lld", good[i].text, (long long)ms,
				(long long)good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (mh_cmd_time_parse(bad[i], &ms) != -EINVAL)
			fail_msg("\"%s\" taken", bad[i]);
	assert_int_equal(mh_cmd_time_parse(NULL, &ms), -EINVAL);
}

static void test_check_time(void **state)
{
	struct mh_cmd c = {.ts_ms = T42, .expires_ms = T42 + 3600000};
	const int64_t skew = 300000;

	(void)state;
	assert_int_equal(mh_cmd_check_time(&c, T42, skew), MH_CMD_OK);
	/* |ts - now| up to max_skew, inclusive, either way. */
	assert_int_equal(mh_cmd_check_time(&c, T42 + skew, skew), MH_CMD_OK);
	assert_int_equal(mh_cmd_check_time(&c, T42 - skew, skew), MH_CMD_OK);
	assert_int_equal(mh_cmd_check_time(&c, T42 + skew + 1, skew), MH_CMD_STALE);
	assert_int_equal(mh_cmd_check_time(&c, T42 - skew - 1, skew), MH_CMD_STALE);
	assert_int_equal(mh_cmd_check_time(&c, T42, 0), MH_CMD_OK);
	assert_int_equal(mh_cmd_check_time(&c, T42 + 1, 0), MH_CMD_STALE);
	assert_int_equal(mh_cmd_check_time(&c, T42, -1), MH_CMD_STALE);

	/* Expired when expires <= now: stale wins when both hold (it is checked first). */
	c.expires_ms = T42 + 1000;
	assert_int_equal(mh_cmd_check_time(&c, T42 + 999, skew), MH_CMD_OK);
	assert_int_equal(mh_cmd_check_time(&c, T42 + 1000, skew), MH_CMD_EXPIRED);
	assert_int_equal(mh_cmd_check_time(&c, T42 + 1001, skew), MH_CMD_EXPIRED);
	c.expires_ms = T42 - 1;
	assert_int_equal(mh_cmd_check_time(&c, T42 + skew + 1, skew), MH_CMD_STALE);

	/* Or when expires <= ts, even while it lies ahead of now. */
	c.ts_ms = T42 + 10000;
	c.expires_ms = T42 + 10000;
	assert_int_equal(mh_cmd_check_time(&c, T42, skew), MH_CMD_EXPIRED);
	c.expires_ms = T42 + 9999;
	assert_int_equal(mh_cmd_check_time(&c, T42, skew), MH_CMD_EXPIRED);
	c.expires_ms = T42 + 10001;
	assert_int_equal(mh_cmd_check_time(&c, T42, skew), MH_CMD_OK);

	/* A difference int64_t cannot hold is stale, not undefined. */
	c.ts_ms = INT64_MIN;
	assert_int_equal(mh_cmd_check_time(&c, 1, INT64_MAX), MH_CMD_STALE);
	c.ts_ms = INT64_MAX;
	c.expires_ms = INT64_MAX;
	assert_int_equal(mh_cmd_check_time(&c, -1, INT64_MAX), MH_CMD_STALE);
}

/* ---- the key file ----------------------------------------------------------- */

static int setup(void **state)
{
	return tmpdir_setup(state, "mh-test-cmd");
}

static int teardown(void **state)
{
	return tmpdir_teardown(state);
}

static const char *key_file(
	const struct tmpdir *t, const char *name, const void *data, size_t len, mode_t mode)
{
	static char path[192];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static void test_key_load(void **state)
{
	static const char hex_key[] =
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
	const struct tmpdir *t = *state;
	uint8_t k[256];
	char err[512];
	size_t len = 0;
	const char *path;

	/* Raw: every byte, a trailing newline too. */
	path = key_file(t, "raw", KEY "\n", KEY_LEN + 1, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, KEY_LEN + 1);
	assert_memory_equal(k, KEY "\n", KEY_LEN + 1);
	assert_string_equal(err, "");

	/* 0400 is as private as 0600. */
	path = key_file(t, "raw-0400", KEY, KEY_LEN, 0400);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, KEY_LEN);

	/* Hex: 64 digits or more, with or without the newline, either case. */
	path = key_file(t, "hex", hex_key, sizeof(hex_key) - 1, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 32);
	for (size_t i = 0; i < 32; i++)
		assert_int_equal(k[i], i);
	path = key_file(t, "hex-upper",
		"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", 64, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 32);
	assert_int_equal(k[31], 0x1f);

	/* 62 hex digits are not enough to be read as hex: the raw 62 bytes. */
	path = key_file(t, "hex-short", hex_key + 2, 62, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 62);
	assert_int_equal(k[0], '0');
	/* Nor 65 (odd), nor hex with two newlines. */
	path = key_file(t, "hex-odd",
		"0000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 65, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 65);
	path = key_file(t, "hex-2nl",
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n", 66, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	assert_int_equal(len, 66);
}

static void test_key_refused(void **state)
{
	static const mode_t open_modes[] = {0644, 0640, 0604, 0660, 0610, 0601, 0700 | 0070};
	const struct tmpdir *t = *state;
	uint8_t k[256];
	char err[512], want[256], big[2000];
	size_t len;
	const char *path;

	for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
		path = key_file(t, "open", KEY, KEY_LEN, open_modes[i]);
		memset(k, 0x55, sizeof(k));
		assert_int_equal(
			mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), -EPERM);
		snprintf(want, sizeof(want), "%s: mode %04o lets group or others at the key", path,
			(unsigned)open_modes[i]);
		if (strncmp(err, want, strlen(want)))
			fail_msg("\"%s\", wanted \"%s...\"", err, want);
		assert_int_equal(k[0], 0); /* nothing of it left */
	}

	/* Short: 15 bytes; 16 is the least. */
	path = key_file(t, "short", "0123456789abcde", 15, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a key of 15 bytes; at least 16 are needed"));
	path = key_file(t, "sixteen", "0123456789abcdef", 16, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), 0);
	path = key_file(t, "empty", "", 0, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), -EINVAL);

	/* Longer than a key file, or than the caller's buffer. */
	memset(big, 'k', sizeof(big));
	path = key_file(t, "big", big, sizeof(big), 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "longer than 1024 bytes"));
	path = key_file(t, "257", big, 257, 0600);
	assert_int_equal(mh_cmd_key_load(path, k, sizeof(k), &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a key longer than 256 bytes"));

	/* Missing, a directory, a FIFO (which must not hang the open). */
	snprintf(want, sizeof(want), "%s/none", t->dir);
	assert_int_equal(mh_cmd_key_load(want, k, sizeof(k), &len, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "none: No such file or directory"));
	assert_int_equal(mh_cmd_key_load(t->dir, k, sizeof(k), &len, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "not a regular file"));
	snprintf(want, sizeof(want), "%s/fifo", t->dir);
	assert_int_equal(mkfifo(want, 0600), 0);
	assert_int_equal(mh_cmd_key_load(want, k, sizeof(k), &len, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "not a regular file"));
	/* No message buffer. */
	assert_int_equal(mh_cmd_key_load(want, k, sizeof(k), &len, NULL, 0), -EPERM);
}

/* ---- names ------------------------------------------------------------------ */

static void test_names(void **state)
{
	static const char *const reasons[MH_CMD_REASONS] = {"ok", "too_large", "malformed",
		"retained", "bad_signature", "unknown_action", "unknown_meter", "stale", "expired",
		"replayed", "protect_window", "unsupported", "queue_full"};
	static const char *const actions[MH_CMD_ACTIONS] = {"trip", "restore", "keep_power",
		"cancel_keep_power", "alarm_on", "alarm_off", "recall"};

	(void)state;
	for (int r = 0; r < MH_CMD_REASONS; r++)
		assert_string_equal(mh_cmd_reason_name((enum mh_cmd_reason)r), reasons[r]);
	for (int a = 0; a < MH_CMD_ACTIONS; a++)
		assert_string_equal(mh_cmd_action_name((enum mh_cmd_action)a), actions[a]);
	assert_null(mh_cmd_reason_name(MH_CMD_REASONS));
	assert_null(mh_cmd_reason_name((enum mh_cmd_reason) - 1));
	assert_null(mh_cmd_action_name(MH_CMD_ACTIONS));
	assert_null(mh_cmd_action_name((enum mh_cmd_action) - 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmac_rfc4231),
		cmocka_unit_test(test_sign_matches_python),
		cmocka_unit_test(test_sign_errors),
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_block),
		cmocka_unit_test(test_sig_wrong_by_one_bit),
		cmocka_unit_test(test_sig_case_and_absence),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_malformed_fields),
		cmocka_unit_test(test_malformed_documents),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_detail_bounds),
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_check_time),
		cmocka_unit_test_setup_teardown(test_key_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_refused, setup, teardown),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
