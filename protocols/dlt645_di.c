// SPDX-License-Identifier: MIT
#include "dlt645_di.h"

#include <errno.h>
#include <string.h>

#include "hex.h"

static const char *const n_combined[] = {
	"energy_combined_kwh",
	"energy_combined_t1_kwh",
	"energy_combined_t2_kwh",
	"energy_combined_t3_kwh",
	"energy_combined_t4_kwh",
};
static const char *const n_import[] = {
	"energy_import_kwh",
	"energy_import_t1_kwh",
	"energy_import_t2_kwh",
	"energy_import_t3_kwh",
	"energy_import_t4_kwh",
};
static const char *const n_export[] = {
	"energy_export_kwh",
	"energy_export_t1_kwh",
	"energy_export_t2_kwh",
	"energy_export_t3_kwh",
	"energy_export_t4_kwh",
};
static const char *const n_voltage[] = {"voltage_a_v", "voltage_b_v", "voltage_c_v"};
static const char *const n_current[] = {"current_a_a", "current_b_a", "current_c_a"};
static const char *const n_power[] = {"power_kw", "power_a_kw", "power_b_kw", "power_c_kw"};
static const char *const n_reactive[] = {
	"reactive_power_kvar",
	"reactive_power_a_kvar",
	"reactive_power_b_kvar",
	"reactive_power_c_kvar",
};
static const char *const n_apparent[] = {
	"apparent_power_kva",
	"apparent_power_a_kva",
	"apparent_power_b_kva",
	"apparent_power_c_kva",
};
static const char *const n_pf[] = {
	"power_factor",
	"power_factor_a",
	"power_factor_b",
	"power_factor_c",
};
static const char *const n_frequency[] = {"frequency_hz"};
static const char *const n_power_down_count[] = {"power_down_count"};
static const char *const n_status[] = {
	"status_word_1",
	"status_word_2",
	"status_word_3",
	"status_word_4",
	"status_word_5",
	"status_word_6",
	"status_word_7",
};

/* The table reads best as one identifier per line; keep clang-format from reflowing it. */
// clang-format off

/* One element of FF block @blk at position @idx. */
#define NUM(d, bytes, dec, sgn, blk, idx, u, nm, desc)                                           \
	{                                                                                        \
		.di = (d), .kind = MH_DLT645_DI_NUMBER, .elements = 1, .element_bytes = (bytes), \
		.decimals = (dec), .is_signed = (sgn), .block = (blk), .index = (idx),           \
		.unit = (u), .names = (nm), .description = (desc)                                \
	}

#define BLOCK(d, n, bytes, dec, sgn, tariff, u, nm, desc)                                        \
	{                                                                                        \
		.di = (d), .kind = MH_DLT645_DI_NUMBER, .elements = (n), .element_bytes = (bytes), \
		.decimals = (dec), .is_signed = (sgn), .is_block = true, .tariff_block = (tariff), \
		.unit = (u), .names = (nm), .description = (desc)                                \
	}

/* Total and tariffs 1..4 of an energy register (DI2 = @kind), and its FF block. */
#define ENERGY(kind, sgn, nm, what)                                                              \
	NUM(0x00000000u | (kind) << 16, 4, 2, sgn, 0x0000FF00u | (kind) << 16, 0, "kWh", &nm[0], \
		what " total"),                                                                  \
	NUM(0x00000100u | (kind) << 16, 4, 2, sgn, 0x0000FF00u | (kind) << 16, 1, "kWh", &nm[1], \
		what " tariff 1"),                                                               \
	NUM(0x00000200u | (kind) << 16, 4, 2, sgn, 0x0000FF00u | (kind) << 16, 2, "kWh", &nm[2], \
		what " tariff 2"),                                                               \
	NUM(0x00000300u | (kind) << 16, 4, 2, sgn, 0x0000FF00u | (kind) << 16, 3, "kWh", &nm[3], \
		what " tariff 3"),                                                               \
	NUM(0x00000400u | (kind) << 16, 4, 2, sgn, 0x0000FF00u | (kind) << 16, 4, "kWh", &nm[4], \
		what " tariff 4"),                                                               \
	BLOCK(0x0000FF00u | (kind) << 16, 5, 4, 2, sgn, true, "kWh", nm, what " block")

/* Total (DI1 = 00) and phases A..C of a power-like quantity (DI2 = @kind), and its FF block. */
#define POWER(kind, bytes, dec, u, nm, what)                                                     \
	NUM(0x02000000u | (kind) << 16, bytes, dec, true, 0x0200FF00u | (kind) << 16, 0, u,      \
		&nm[0], what " total"),                                                          \
	NUM(0x02000100u | (kind) << 16, bytes, dec, true, 0x0200FF00u | (kind) << 16, 1, u,      \
		&nm[1], what " phase A"),                                                        \
	NUM(0x02000200u | (kind) << 16, bytes, dec, true, 0x0200FF00u | (kind) << 16, 2, u,      \
		&nm[2], what " phase B"),                                                        \
	NUM(0x02000300u | (kind) << 16, bytes, dec, true, 0x0200FF00u | (kind) << 16, 3, u,      \
		&nm[3], what " phase C"),                                                        \
	BLOCK(0x0200FF00u | (kind) << 16, 4, bytes, dec, true, false, u, nm, what " block")

/* Phases A..C (DI1 = 01..03) of voltage or current (DI2 = @kind), and its FF block. */
#define PHASES(kind, bytes, dec, sgn, u, nm, what)                                               \
	NUM(0x02000100u | (kind) << 16, bytes, dec, sgn, 0x0200FF00u | (kind) << 16, 0, u,       \
		&nm[0], what " phase A"),                                                        \
	NUM(0x02000200u | (kind) << 16, bytes, dec, sgn, 0x0200FF00u | (kind) << 16, 1, u,       \
		&nm[1], what " phase B"),                                                        \
	NUM(0x02000300u | (kind) << 16, bytes, dec, sgn, 0x0200FF00u | (kind) << 16, 2, u,       \
		&nm[2], what " phase C"),                                                        \
	BLOCK(0x0200FF00u | (kind) << 16, 3, bytes, dec, sgn, false, u, nm, what " block")

#define OTHER(d, last, k, bytes, desc)                                                           \
	{                                                                                        \
		.di = (d), .di0_last = (last), .kind = (k), .elements = 1,                       \
		.element_bytes = (bytes), .description = (desc)                                  \
	}

#define STATUS(n)                                                                                \
	{                                                                                        \
		.di = 0x04000500u + (n), .kind = MH_DLT645_DI_STATUS, .elements = 1,             \
		.element_bytes = 2, .block = 0x040005FFu, .index = (n) - 1,                      \
		.names = &n_status[(n) - 1], .description = "status word " #n                    \
	}

/* From DL/T 645-2007 appendix A (tables A.1 energy, A.3 variables, A.4 events, A.5 parameters, A.6 freezes). */
static const struct mh_dlt645_di_info table[] = {
	/* The standard signs combined energy: it is forward minus reverse when so configured. */
	ENERGY(0x00, true, n_combined, "combined active energy"),
	ENERGY(0x01, false, n_import, "forward active energy"),
	ENERGY(0x02, false, n_export, "reverse active energy"),

	PHASES(0x01, 2, 1, false, "V", n_voltage, "voltage"),
	PHASES(0x02, 3, 3, true, "A", n_current, "current"),
	POWER(0x03, 3, 4, "kW", n_power, "active power"),
	POWER(0x04, 3, 4, "kvar", n_reactive, "reactive power"),
	POWER(0x05, 3, 4, "kVA", n_apparent, "apparent power"),
	POWER(0x06, 2, 3, NULL, n_pf, "power factor"),
	NUM(0x02800002u, 2, 2, false, 0, 0, "Hz", n_frequency, "grid frequency"),

	NUM(0x03110000u, 3, 0, false, 0, 0, NULL, n_power_down_count, "power-down count"),
	OTHER(0x03110001u, 0x0A, MH_DLT645_DI_POWER_DOWN, 12, "power-down record, n-th last"),

	OTHER(0x04000101u, 0, MH_DLT645_DI_DATE, 4, "date and weekday"),
	OTHER(0x04000102u, 0, MH_DLT645_DI_TIME, 3, "time of day"),
	OTHER(0x04000401u, 0, MH_DLT645_DI_DIGITS, 6, "communication address"),
	OTHER(0x04000402u, 0, MH_DLT645_DI_DIGITS, 6, "meter number"),
	STATUS(1), STATUS(2), STATUS(3), STATUS(4), STATUS(5), STATUS(6), STATUS(7),
	{
		.di = 0x040005FFu, .kind = MH_DLT645_DI_STATUS, .elements = 7, .element_bytes = 2,
		.is_block = true, .names = n_status, .description = "status words 1-7",
	},

	OTHER(0x05060001u, 0x3E, MH_DLT645_DI_FREEZE_TIME, 5, "daily freeze time, n days back"),
	{
		.di = 0x05060101u, .di0_last = 0x3E, .kind = MH_DLT645_DI_NUMBER, .elements = 5,
		.element_bytes = 4, .decimals = 2, .is_block = true, .tariff_block = true,
		.unit = "kWh", .names = n_import,
		.description = "daily frozen forward active energy, n days back",
	},
	{
		.di = 0x05060201u, .di0_last = 0x3E, .kind = MH_DLT645_DI_NUMBER, .elements = 5,
		.element_bytes = 4, .decimals = 2, .is_block = true, .tariff_block = true,
		.unit = "kWh", .names = n_export,
		.description = "daily frozen reverse active energy, n days back",
	},
};

// clang-format on

const struct mh_dlt645_di_info *mh_dlt645_di_lookup(uint32_t di)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct mh_dlt645_di_info *e = &table[i];

		if (e->di == di)
			return e;
		if (e->di0_last && (di & ~0xFFu) == (e->di & ~0xFFu) &&
			(di & 0xFFu) >= (e->di & 0xFFu) && (di & 0xFFu) <= e->di0_last)
			return e;
	}
	return NULL;
}

size_t mh_dlt645_di_block_members(uint32_t block, uint32_t *out, size_t max)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(block);
	size_t n = 0;

	/*
	 * Only a block has members. Without this check 00000000, which the
	 * table knows as combined energy, would match every identifier that
	 * belongs to no block (their .block is 0).
	 */
	if (!info || !info->is_block)
		return 0;

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct mh_dlt645_di_info *e = &table[i];

		if (e->block != block || e->is_block)
			continue;
		if (e->index < max)
			out[e->index] = e->di;
		if ((size_t)e->index + 1 > n)
			n = (size_t)e->index + 1;
	}
	return n < max ? n : max;
}

int mh_dlt645_di_parse(const char *hex8, uint32_t *di)
{
	uint32_t v = 0;

	if (!hex8 || strlen(hex8) != 8)
		return -EINVAL;
	for (int i = 0; i < 8; i++) {
		int h = mh_hex_value(hex8[i]);

		if (h < 0)
			return -EINVAL;
		v = v << 4 | (uint32_t)h;
	}
	*di = v;
	return 0;
}

void mh_dlt645_di_format(uint32_t di, char out[9])
{
	static const char hex[] = "0123456789ABCDEF";

	for (int i = 0; i < 8; i++)
		out[i] = hex[(di >> (28 - 4 * i)) & 0x0F];
	out[8] = '\0';
}

static bool is_bcd(uint8_t b)
{
	return (b >> 4) <= 9 && (b & 0x0F) <= 9;
}

static unsigned from_bcd(uint8_t b)
{
	return (b >> 4) * 10 + (b & 0x0F);
}

/* One BCD number of @nbytes, least significant byte first. */
static int bcd_number(
	const uint8_t *p, unsigned nbytes, bool is_signed, unsigned decimals, double *v)
{
	/* Exact powers of ten, so that the one division rounds correctly. */
	static const double scale[] = {1, 10, 100, 1000, 10000, 100000};
	uint64_t mag = 0;
	bool neg = false;

	for (unsigned i = nbytes; i-- > 0;) {
		uint8_t b = p[i];

		if (is_signed && i == nbytes - 1) {
			neg = b & 0x80;
			b &= 0x7F;
		}
		if (!is_bcd(b))
			return -EBADMSG;
		mag = mag * 100 + from_bcd(b);
	}
	*v = (double)mag / scale[decimals];
	if (neg && mag)
		*v = -*v;
	return 0;
}

int mh_dlt645_di_decode(uint32_t di, const uint8_t *data, size_t len,
	struct mh_dlt645_di_value *out, size_t max, size_t *n)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(di);
	size_t count, emit;

	*n = 0;
	if (!info)
		return -ENOENT;
	if (info->kind != MH_DLT645_DI_NUMBER && info->kind != MH_DLT645_DI_STATUS)
		return -ENOTSUP;
	if (info->tariff_block) {
		count = len / info->element_bytes;
		if (len % info->element_bytes || count < 1 ||
			count > MH_DLT645_DI_MAX_TARIFF_ELEMENTS)
			return -EBADMSG;
	} else {
		count = info->elements;
		if (len != count * info->element_bytes)
			return -EBADMSG;
	}
	emit = count < info->elements ? count : info->elements;
	if (max < emit)
		return -ENOSPC;

	for (size_t i = 0; i < count; i++) {
		const uint8_t *p = data + i * info->element_bytes;
		double v;

		if (info->kind == MH_DLT645_DI_STATUS) {
			v = (double)(p[0] | p[1] << 8);
		} else if (bcd_number(
				   p, info->element_bytes, info->is_signed, info->decimals, &v)) {
			*n = 0;
			return -EBADMSG;
		}
		if (i < emit) {
			out[i].name = info->names[i];
			out[i].value = v;
		}
	}
	*n = emit;
	return 0;
}

/* Fields of a date-time, least significant byte first as they travel. */
enum field { SEC, MIN, HOUR, DAY, MON, YEAR, WDAY };

static int put_field(struct tm *t, enum field f, uint8_t b)
{
	unsigned v;

	if (!is_bcd(b))
		return -EBADMSG;
	v = from_bcd(b);
	switch (f) {
	case SEC:
		t->tm_sec = (int)v;
		return v <= 59 ? 0 : -EBADMSG;
	case MIN:
		t->tm_min = (int)v;
		return v <= 59 ? 0 : -EBADMSG;
	case HOUR:
		t->tm_hour = (int)v;
		return v <= 23 ? 0 : -EBADMSG;
	case DAY:
		t->tm_mday = (int)v;
		return v >= 1 && v <= 31 ? 0 : -EBADMSG;
	case MON:
		t->tm_mon = (int)v - 1;
		return v >= 1 && v <= 12 ? 0 : -EBADMSG;
	case YEAR:
		t->tm_year = (int)v + 100;
		return 0;
	case WDAY:
		t->tm_wday = (int)v;
		return v <= 6 ? 0 : -EBADMSG;
	}
	return -EBADMSG;
}

static int put_fields(struct tm *t, const enum field *fields, size_t n, const uint8_t *data)
{
	memset(t, 0, sizeof(*t));
	t->tm_isdst = -1;
	for (size_t i = 0; i < n; i++)
		if (put_field(t, fields[i], data[i]))
			return -EBADMSG;
	return 0;
}

int mh_dlt645_di_decode_time(uint32_t di, const uint8_t *data, size_t len, struct tm *out)
{
	static const enum field date[] = {WDAY, DAY, MON, YEAR};
	static const enum field tod[] = {SEC, MIN, HOUR};
	static const enum field freeze[] = {MIN, HOUR, DAY, MON, YEAR};
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(di);
	const enum field *fields;
	size_t n;

	if (!info)
		return -ENOENT;
	switch (info->kind) {
	case MH_DLT645_DI_DATE:
		fields = date;
		n = 4;
		break;
	case MH_DLT645_DI_TIME:
		fields = tod;
		n = 3;
		break;
	case MH_DLT645_DI_FREEZE_TIME:
		fields = freeze;
		n = 5;
		break;
	default:
		return -ENOTSUP;
	}
	if (len != n)
		return -EBADMSG;
	return put_fields(out, fields, n, data);
}

int mh_dlt645_di_decode_digits(uint32_t di, const uint8_t *data, size_t len, char *out, size_t cap)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(di);

	if (!info)
		return -ENOENT;
	if (info->kind != MH_DLT645_DI_DIGITS)
		return -ENOTSUP;
	if (len != info->element_bytes)
		return -EBADMSG;
	if (cap < 2 * len + 1)
		return -ENOSPC;
	for (size_t i = 0; i < len; i++) {
		uint8_t b = data[len - 1 - i];

		if (!is_bcd(b))
			return -EBADMSG;
		out[2 * i] = (char)('0' + (b >> 4));
		out[2 * i + 1] = (char)('0' + (b & 0x0F));
	}
	out[2 * len] = '\0';
	return 0;
}

int mh_dlt645_di_status3_decode(const uint8_t *data, size_t len, struct mh_dlt645_di_status3 *out)
{
	uint16_t w;

	if (len != 2)
		return -EBADMSG;
	w = (uint16_t)(data[0] | data[1] << 8);
	out->raw = w;
	out->relay_open = w & (1u << 4);
	out->relay_cmd_open = w & (1u << 6);
	out->pretrip_alarm = w & (1u << 7);
	out->keep_power = w & (1u << 12);
	out->meter_type = (enum mh_dlt645_di_meter_type)((w >> 8) & 0x3);
	return 0;
}

int mh_dlt645_di_power_down_decode(
	const uint8_t *data, size_t len, struct mh_dlt645_di_power_down *out)
{
	static const enum field stamp[] = {SEC, MIN, HOUR, DAY, MON, YEAR};
	static const uint8_t zero[6];

	if (len != 12)
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	if (put_fields(&out->start, stamp, 6, data))
		return -EBADMSG;
	if (memcmp(data + 6, zero, sizeof(zero)) == 0)
		return 0;
	out->ended = true;
	return put_fields(&out->end, stamp, 6, data + 6);
}

/* The FF block @w would be read through, or 0 if it is read on its own. */
static uint32_t block_of(uint32_t w, bool use_blocks)
{
	const struct mh_dlt645_di_info *info;

	if (!use_blocks)
		return 0;
	info = mh_dlt645_di_lookup(w);
	return info ? info->block : 0;
}

int mh_dlt645_di_plan(const uint32_t *wanted, size_t n_wanted, bool use_blocks, uint32_t *reads,
	size_t max_reads, size_t *n_reads, struct mh_dlt645_di_slot *slots)
{
	*n_reads = 0;
	if (n_wanted && (!wanted || !reads || !slots))
		return -EINVAL;
	for (size_t i = 0; i < n_wanted; i++) {
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(wanted[i]);
		uint32_t blk = block_of(wanted[i], use_blocks);
		uint32_t read = wanted[i];
		uint16_t element = info && info->is_block ? MH_DLT645_DI_ALL : 0;
		size_t r;

		/* The block pays off when another distinct identifier, or the block itself, is
		 * wanted. */
		for (size_t j = 0; blk && j < n_wanted; j++) {
			if (wanted[j] == blk || (wanted[j] != wanted[i] &&
							block_of(wanted[j], use_blocks) == blk)) {
				read = blk;
				element = info->index;
				break;
			}
		}
		for (r = 0; r < *n_reads && reads[r] != read; r++)
			;
		if (r == *n_reads) {
			if (r >= max_reads)
				return -ENOSPC;
			reads[r] = read;
			(*n_reads)++;
		}
		slots[i].read = (uint16_t)r;
		slots[i].element = element;
	}
	return 0;
}
