// SPDX-License-Identifier: MIT
/*
 * A remote command payload (gateway/cmd.h) as the broker hands it over:
 * the input is the whole payload, in an exact-size buffer without a
 * terminating NUL. It goes through mh_cmd_parse() and mh_cmd_sig_ok() under
 * a fixed key (test/fuzz/seeds.py signs the seeds with the same one).
 *
 * Properties: no crash, no leak, no read outside the payload (the
 * sanitizers watch); the result is one of ok, too_large, malformed; every
 * string of struct mh_cmd is NUL-terminated inside its array and the block
 * fits its array and matches its hex; the detail is one line of printable
 * ASCII, empty exactly on success, and the same parse with a tiny detail
 * buffer gives the same command; a parsed command has valid names and
 * times; mh_cmd_sig_ok() agrees with mh_cmd_sign(); and a command rebuilt
 * from the parsed fields with a fresh signature parses to the same fields
 * and verifies.
 */
#include <cjson/cJSON.h>

#include "cmd.h"
#include "fuzz.h"

static const uint8_t key[] = "meterhub-fuzz-key-0123456789abcdef";
#define KEY_LEN (sizeof(key) - 1)

static void check_string(const char *s, size_t size)
{
	FUZZ_CHECK(memchr(s, '\0', size) != NULL);
}

static void check_detail(const char *detail, size_t cap, enum mh_cmd_reason r)
{
	size_t n = strnlen(detail, cap);

	FUZZ_CHECK(n < cap);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(detail[i] >= 0x20 && detail[i] < 0x7F);
	FUZZ_CHECK((n == 0) == (r == MH_CMD_OK));
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > MH_CMD_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
			    s[i]))
			return false;
	return true;
}

static void check_fields(const struct mh_cmd *c)
{
	check_string(c->id, sizeof(c->id));
	check_string(c->meter, sizeof(c->meter));
	check_string(c->action_name, sizeof(c->action_name));
	check_string(c->ts, sizeof(c->ts));
	check_string(c->expires, sizeof(c->expires));
	check_string(c->block_hex, sizeof(c->block_hex));
	FUZZ_CHECK(c->block_len <= MH_CMD_BLOCK_MAX);
	FUZZ_CHECK(c->has_block == (c->block_len > 0));
	FUZZ_CHECK(strlen(c->block_hex) == 2 * c->block_len);
	for (size_t i = 0; i < c->block_len; i++) {
		unsigned v;

		FUZZ_CHECK(sscanf(c->block_hex + 2 * i, "%2x", &v) == 1 && v == c->block[i]);
	}
	if (c->action_known)
		FUZZ_CHECK(!strcmp(c->action_name, mh_cmd_action_name(c->action)));
}

/* The same fields, freshly signed, as the head-end would send them. */
static void check_rebuilt(const struct mh_cmd *c)
{
	cJSON *obj = cJSON_CreateObject();
	struct mh_cmd again;
	char sig[65], detail[128];
	char *json = NULL;

	FUZZ_CHECK(mh_cmd_sign(key, KEY_LEN, c->id, c->meter, c->action_name, c->ts, c->expires,
			   c->has_block ? c->block_hex : NULL, sig) == 0);
	if (obj && cJSON_AddStringToObject(obj, "id", c->id) &&
		cJSON_AddStringToObject(obj, "meter", c->meter) &&
		cJSON_AddStringToObject(obj, "action", c->action_name) &&
		cJSON_AddStringToObject(obj, "ts", c->ts) &&
		cJSON_AddStringToObject(obj, "expires", c->expires) &&
		(!c->has_block || cJSON_AddStringToObject(obj, "block", c->block_hex)) &&
		cJSON_AddStringToObject(obj, "sig", sig))
		json = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (!json)
		return; /* out of memory: nothing to check */
	FUZZ_CHECK(mh_cmd_parse(json, strlen(json), &again, detail, sizeof(detail)) == MH_CMD_OK);
	free(json);
	FUZZ_CHECK(!strcmp(again.id, c->id) && !strcmp(again.meter, c->meter));
	FUZZ_CHECK(!strcmp(again.action_name, c->action_name));
	FUZZ_CHECK(again.action_known == c->action_known);
	FUZZ_CHECK(again.ts_ms == c->ts_ms && again.expires_ms == c->expires_ms);
	FUZZ_CHECK(again.block_len == c->block_len && !memcmp(again.block, c->block, c->block_len));
	FUZZ_CHECK(mh_cmd_sig_ok(&again, key, KEY_LEN));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *payload = (const char *)data;
	struct mh_cmd c, small;
	char detail[128], tiny[5], sig[65], given[65];
	enum mh_cmd_reason r;
	bool ok;
	int64_t ms;

	r = mh_cmd_parse(payload, size, &c, detail, sizeof(detail));
	FUZZ_CHECK(r == MH_CMD_OK || r == MH_CMD_TOO_LARGE || r == MH_CMD_MALFORMED);
	FUZZ_CHECK((r == MH_CMD_TOO_LARGE) == (size > MH_CMD_MAX_PAYLOAD));
	check_detail(detail, sizeof(detail), r);
	check_fields(&c);

	/* The detail buffer's size changes nothing else. */
	FUZZ_CHECK(mh_cmd_parse(payload, size, &small, tiny, sizeof(tiny)) == r);
	check_detail(tiny, sizeof(tiny), r);
	FUZZ_CHECK(!memcmp(&c, &small, sizeof(c)));

	ok = mh_cmd_sig_ok(&c, key, KEY_LEN);
	if (r != MH_CMD_OK) {
		if (r == MH_CMD_TOO_LARGE)
			FUZZ_CHECK(!c.id[0] && !c.has_sig && !c.has_block);
		return 0;
	}

	FUZZ_CHECK(name_ok(c.id) && name_ok(c.meter));
	FUZZ_CHECK(mh_cmd_time_parse(c.ts, &ms) == 0 && ms == c.ts_ms);
	FUZZ_CHECK(mh_cmd_time_parse(c.expires, &ms) == 0 && ms == c.expires_ms);

	/* sig_ok is exactly "the sig given is the one mh_cmd_sign() makes". */
	if (c.has_sig && c.action_name[0]) {
		for (size_t i = 0; i < sizeof(c.sig); i++)
			snprintf(given + 2 * i, 3, "%02x", c.sig[i]);
		FUZZ_CHECK(mh_cmd_sign(key, KEY_LEN, c.id, c.meter, c.action_name, c.ts, c.expires,
				   c.has_block ? c.block_hex : NULL, sig) == 0);
		FUZZ_CHECK(ok == !strcmp(sig, given));
	} else {
		FUZZ_CHECK(!ok);
	}
	if (c.action_name[0])
		check_rebuilt(&c);
	return 0;
}
