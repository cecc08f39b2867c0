// SPDX-License-Identifier: MIT
/*
 * The DL/T 645 data-identifier decoders and the read planner. The input
 * picks an identifier (mostly one the table knows, sometimes any 32 bits)
 * and the bytes of a reply payload, which go through every decoder; then it
 * picks a set of wanted identifiers for mh_dlt645_di_plan().
 *
 * Properties: unknown identifiers are -ENOENT and only they; on failure no
 * value is reported; every value is finite, named and within what its BCD
 * digits can hold; a block decodes to the same values as its members read
 * one by one; times are in range. The plan covers every wanted identifier
 * with a read that carries it, reads nothing twice and nothing unneeded.
 */
#include <errno.h>
#include <math.h>

#include "dlt645_di.h"
#include "fuzz.h"

/* Identifiers of the table, the ends of its DI0 ranges, and near misses. */
static const uint32_t known[] = {
	0x00000000, 0x00000100, 0x00000200, 0x00000300, 0x00000400, 0x0000FF00,
	0x00010000, 0x00010100, 0x00010200, 0x00010300, 0x00010400, 0x0001FF00,
	0x00020000, 0x00020100, 0x00020200, 0x00020300, 0x00020400, 0x0002FF00,
	0x02010100, 0x02010200, 0x02010300, 0x0201FF00,
	0x02020100, 0x02020200, 0x02020300, 0x0202FF00,
	0x02030000, 0x02030100, 0x02030200, 0x02030300, 0x0203FF00,
	0x02040000, 0x02040100, 0x02040200, 0x02040300, 0x0204FF00,
	0x02050000, 0x02050100, 0x02050200, 0x02050300, 0x0205FF00,
	0x02060000, 0x02060100, 0x02060200, 0x02060300, 0x0206FF00,
	0x02800002, 0x03110000, 0x03110001, 0x03110005, 0x0311000A, 0x0311000B,
	0x04000101, 0x04000102, 0x04000401, 0x04000402,
	0x04000501, 0x04000502, 0x04000503, 0x04000504, 0x04000505, 0x04000506, 0x04000507,
	0x040005FF, 0x05060000, 0x05060001, 0x0506003E, 0x0506003F,
	0x05060100, 0x05060101, 0x0506013E, 0x05060201, 0x0506023E, 0x0506023F,
	0x00000500, 0x02010000, 0x0000FFFF, 0xFFFFFFFF,
};
#define N_KNOWN (sizeof(known) / sizeof(known[0]))

static uint32_t take_di(struct fuzz_input *in)
{
	uint8_t b = fuzz_u8(in);

	return b < 0xF0 ? known[b % N_KNOWN] : fuzz_u32(in);
}

static bool all_bcd(const uint8_t *p, size_t n, bool is_signed)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t b = is_signed && i == n - 1 ? p[i] & 0x7F : p[i];

		if ((b >> 4) > 9 || (b & 0x0F) > 9)
			return false;
	}
	return true;
}

static void check_numbers(uint32_t di, const uint8_t *p, size_t len, unsigned max)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(di);
	struct mh_dlt645_di_value out[MH_DLT645_DI_MAX_TARIFF_ELEMENTS + 2];
	size_t n = 99;
	int r;

	FUZZ_CHECK(max <= sizeof(out) / sizeof(out[0]));
	r = mh_dlt645_di_decode(di, p, len, out, max, &n);
	FUZZ_CHECK(r == 0 || n == 0);
	FUZZ_CHECK((r == -ENOENT) == (info == NULL));
	if (r != 0) {
		FUZZ_CHECK(r == -ENOENT || r == -ENOTSUP || r == -EBADMSG || r == -ENOSPC);
		return;
	}
	FUZZ_CHECK(info->kind == MH_DLT645_DI_NUMBER || info->kind == MH_DLT645_DI_STATUS);
	FUZZ_CHECK(info->element_bytes > 0 && len % info->element_bytes == 0);
	FUZZ_CHECK(n <= max && n <= info->elements && n >= 1);
	FUZZ_CHECK(n == (info->tariff_block && len / info->element_bytes < info->elements
				 ? len / info->element_bytes
				 : info->elements));
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = p + i * info->element_bytes;

		FUZZ_CHECK(out[i].name && out[i].name == info->names[i]);
		FUZZ_CHECK(isfinite(out[i].value));
		if (info->kind == MH_DLT645_DI_STATUS) {
			FUZZ_CHECK(out[i].value == (double)(e[0] | e[1] << 8));
		} else {
			FUZZ_CHECK(all_bcd(e, info->element_bytes, info->is_signed));
			FUZZ_CHECK(fabs(out[i].value) <
				   pow(100, info->element_bytes) / pow(10, info->decimals));
			FUZZ_CHECK(info->is_signed || out[i].value >= 0);
		}
	}

	/* A block says what its members say, element by element. */
	uint32_t members[MH_DLT645_DI_MAX_TARIFF_ELEMENTS];
	size_t nm = mh_dlt645_di_block_members(di, members, sizeof(members) / sizeof(members[0]));

	FUZZ_CHECK(nm == 0 || info->is_block);
	for (size_t k = 0; k < nm && k < n; k++) {
		const struct mh_dlt645_di_info *mi = mh_dlt645_di_lookup(members[k]);
		struct mh_dlt645_di_value one;
		size_t n1 = 0;

		FUZZ_CHECK(mi && mi->block == di && mi->index == k);
		FUZZ_CHECK(mi->element_bytes == info->element_bytes);
		FUZZ_CHECK(mh_dlt645_di_decode(members[k], p + k * mi->element_bytes,
				   mi->element_bytes, &one, 1, &n1) == 0);
		FUZZ_CHECK(n1 == 1 && one.value == out[k].value);
		FUZZ_CHECK(strcmp(one.name, out[k].name) == 0);
	}
}

static void check_time(const struct tm *t)
{
	FUZZ_CHECK(t->tm_sec >= 0 && t->tm_sec <= 59);
	FUZZ_CHECK(t->tm_min >= 0 && t->tm_min <= 59);
	FUZZ_CHECK(t->tm_hour >= 0 && t->tm_hour <= 23);
	FUZZ_CHECK(t->tm_mon >= 0 && t->tm_mon <= 11);
	FUZZ_CHECK(t->tm_year >= 0 && t->tm_year <= 199);
	FUZZ_CHECK(t->tm_wday >= 0 && t->tm_wday <= 6);
	FUZZ_CHECK(t->tm_isdst == -1);
}

static void check_others(uint32_t di, const uint8_t *p, size_t len)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(di);
	struct mh_dlt645_di_status3 s3;
	struct mh_dlt645_di_power_down pd;
	struct tm t;
	char digits[16];
	int r;

	r = mh_dlt645_di_decode_time(di, p, len, &t);
	if (r == 0) {
		FUZZ_CHECK(info && (info->kind == MH_DLT645_DI_DATE ||
					   info->kind == MH_DLT645_DI_TIME ||
					   info->kind == MH_DLT645_DI_FREEZE_TIME));
		check_time(&t);
		/* A date or a freeze time names a day; a time of day does not. */
		if (info->kind == MH_DLT645_DI_TIME)
			FUZZ_CHECK(t.tm_mday == 0);
		else
			FUZZ_CHECK(t.tm_mday >= 1 && t.tm_mday <= 31);
	} else {
		FUZZ_CHECK(r == -ENOENT || r == -ENOTSUP || r == -EBADMSG);
	}

	memset(digits, 'x', sizeof(digits));
	r = mh_dlt645_di_decode_digits(di, p, len, digits, 13 + (len & 1));
	if (r == 0) {
		FUZZ_CHECK(strlen(digits) == 12);
		for (int i = 0; i < 12; i++)
			FUZZ_CHECK(digits[i] >= '0' && digits[i] <= '9');
		FUZZ_CHECK(mh_dlt645_di_decode_digits(di, p, len, digits, 12) == -ENOSPC);
	} else {
		FUZZ_CHECK(r == -ENOENT || r == -ENOTSUP || r == -EBADMSG);
	}

	if (mh_dlt645_di_status3_decode(p, len, &s3) == 0) {
		FUZZ_CHECK(len == 2 && s3.raw == (p[0] | p[1] << 8));
		FUZZ_CHECK(s3.relay_open == !!(s3.raw & 0x10));
		FUZZ_CHECK((unsigned)s3.meter_type <= MH_DLT645_DI_TYPE_RESERVED);
	} else {
		FUZZ_CHECK(len != 2);
	}

	if (mh_dlt645_di_power_down_decode(p, len, &pd) == 0) {
		FUZZ_CHECK(len == 12);
		check_time(&pd.start);
		FUZZ_CHECK(pd.start.tm_mday >= 1 && pd.start.tm_mday <= 31);
		if (pd.ended) {
			check_time(&pd.end);
			FUZZ_CHECK(pd.end.tm_mday >= 1 && pd.end.tm_mday <= 31);
		}
	}

	/* Text forms: format then parse is the identity. */
	char hex[9];
	uint32_t back = ~di;

	mh_dlt645_di_format(di, hex);
	FUZZ_CHECK(mh_dlt645_di_parse(hex, &back) == 0 && back == di);
}

#define MAX_WANTED 48

static void check_plan(struct fuzz_input *in)
{
	uint32_t wanted[MAX_WANTED], reads[MAX_WANTED];
	struct mh_dlt645_di_slot slots[MAX_WANTED];
	uint8_t flags = fuzz_u8(in);
	bool use_blocks = flags & 1;
	size_t n_wanted = 0, n_reads = 99, max_reads = (flags >> 1) % (MAX_WANTED + 1);
	int r;

	while (n_wanted < MAX_WANTED && !fuzz_empty(in))
		wanted[n_wanted++] = take_di(in);
	r = mh_dlt645_di_plan(wanted, n_wanted, use_blocks, reads, max_reads, &n_reads, slots);
	FUZZ_CHECK(n_reads <= max_reads);
	if (r == -ENOSPC) {
		/* Refused only when more room would have been needed: the full plan says so. */
		FUZZ_CHECK(mh_dlt645_di_plan(wanted, n_wanted, use_blocks, reads, MAX_WANTED,
				   &n_reads, slots) == 0);
		FUZZ_CHECK(n_reads > max_reads);
		return;
	}
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(n_reads <= n_wanted);
	for (size_t a = 0; a < n_reads; a++)
		for (size_t b = a + 1; b < n_reads; b++)
			FUZZ_CHECK(reads[a] != reads[b]);
	for (size_t i = 0; i < n_wanted; i++) {
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(wanted[i]);
		uint32_t read;

		FUZZ_CHECK(slots[i].read < n_reads);
		read = reads[slots[i].read];
		if (read == wanted[i]) {
			/* Read on its own: all of it if it is a block, else its one value. */
			FUZZ_CHECK(slots[i].element ==
				   (info && info->is_block ? MH_DLT645_DI_ALL : 0));
		} else {
			/* Read through the block that carries it, at its own position. */
			FUZZ_CHECK(use_blocks && info && info->block == read);
			FUZZ_CHECK(slots[i].element == info->index);
		}
	}
	/* Nothing is read that no wanted identifier needs. */
	for (size_t a = 0; a < n_reads; a++) {
		bool needed = false;

		for (size_t i = 0; i < n_wanted && !needed; i++)
			needed = slots[i].read == a;
		FUZZ_CHECK(needed);
	}
	/* Without blocks, every identifier is read as it was asked for. */
	if (!use_blocks)
		for (size_t i = 0; i < n_wanted; i++)
			FUZZ_CHECK(reads[slots[i].read] == wanted[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	uint32_t di = take_di(&in);
	unsigned max = fuzz_u8(&in) % (MH_DLT645_DI_MAX_TARIFF_ELEMENTS + 3);
	size_t len = fuzz_u8(&in), got;
	const uint8_t *p = fuzz_bytes(&in, len, &got);
	/* An exact-size copy, so that a read past the payload is an ASan report. */
	uint8_t *payload = malloc(got ? got : 1);

	if (!payload)
		return 0;
	memcpy(payload, p, got);
	check_numbers(di, payload, got, max);
	check_others(di, payload, got);
	free(payload);
	check_plan(&in);
	return 0;
}
