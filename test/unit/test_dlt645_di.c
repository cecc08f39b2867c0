// SPDX-License-Identifier: MIT
/*
 * DL/T 645-2007 data identifiers. Expected values are read off the bytes by
 * hand (BCD digits, least significant byte first, implied decimals) or
 * taken from public vectors that name their source (shared/vectors/dlt645.md).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dlt645.h"
#include "dlt645_di.h"

#define assert_value(v, want_name, want)                                                           \
	do {                                                                                       \
		assert_string_equal((v).name, (want_name));                                        \
		assert_true(fabs((v).value - (want)) < 1e-9);                                      \
	} while (0)

static size_t unhex(const char *s, uint8_t *out)
{
	size_t n = 0;
	unsigned v;
	int used;

	while (sscanf(s, " %2x%n", &v, &used) == 1) {
		out[n++] = (uint8_t)v;
		s += used;
	}
	return n;
}

/* Decode @di from the hex bytes @hex, expecting success; returns the value count. */
static size_t decode(uint32_t di, const char *hex, struct mh_dlt645_di_value *out, size_t max)
{
	uint8_t buf[300];
	size_t len = unhex(hex, buf), n = 99;

	assert_int_equal(mh_dlt645_di_decode(di, buf, len, out, max, &n), 0);
	return n;
}

static int decode_err(uint32_t di, const char *hex)
{
	uint8_t buf[300];
	struct mh_dlt645_di_value v[80];
	size_t len = unhex(hex, buf), n = 99;
	int r = mh_dlt645_di_decode(di, buf, len, v, 80, &n);

	assert_int_equal(n, 0);
	return r;
}

/* Take the payload of a reply frame given as wire hex. */
static void reply_payload(
	const char *wire, uint32_t *di, const uint8_t **p, size_t *len, struct mh_dlt645_frame *f)
{
	uint8_t buf[300];
	size_t n = unhex(wire, buf), used;

	assert_int_equal(mh_dlt645_decode(buf, n, f, &used), 0);
	assert_int_equal(mh_dlt645_read_payload(f, di, p, len, NULL), 0);
}

/* ---- vectors, end to end ---- */

/* Vector 1, source: blog post 553668.com/manong/786292.html (1206.42 kWh). */
static void test_vector1_energy(void **state)
{
	struct mh_dlt645_frame f;
	struct mh_dlt645_di_value v[4];
	const uint8_t *p;
	size_t len, n;
	uint32_t di;

	(void)state;
	reply_payload(
		"68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 16", &di, &p, &len, &f);
	assert_int_equal(mh_dlt645_di_decode(di, p, len, v, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_value(v[0], "energy_import_kwh", 1206.42);
}

/* Vector 3, source: mbb.eet-china.com/forum/topic/114707_1_1.html (0.0, 0.0, 239.4 V). */
static void test_vector3_voltage_block(void **state)
{
	struct mh_dlt645_frame f;
	struct mh_dlt645_di_value v[4];
	const uint8_t *p;
	size_t len, n;
	uint32_t di;

	(void)state;
	reply_payload(
		"FE FE FE FE 68 18 20 12 22 20 65 68 91 0A 33 32 34 35 33 33 33 33 C7 56 13 16",
		&di, &p, &len, &f);
	assert_int_equal(di, 0x0201FF00);
	assert_int_equal(mh_dlt645_di_decode(di, p, len, v, 4, &n), 0);
	assert_int_equal(n, 3);
	assert_value(v[0], "voltage_a_v", 0.0);
	assert_value(v[1], "voltage_b_v", 0.0);
	assert_value(v[2], "voltage_c_v", 239.4);
}

/* Vector 5, source: github.com/dwdcth/go645 dlt_test.go (meter number 002241020208). */
static void test_vector5_meter_number(void **state)
{
	struct mh_dlt645_frame f;
	const uint8_t *p;
	size_t len;
	uint32_t di;
	char text[13];

	(void)state;
	reply_payload("68 08 02 02 41 22 00 68 91 0A 35 37 33 37 3B 35 35 74 55 33 51 16", &di, &p,
		&len, &f);
	assert_int_equal(di, 0x04000402);
	assert_int_equal(mh_dlt645_di_decode_digits(di, p, len, text, sizeof(text)), 0);
	assert_string_equal(text, "002241020208");
}

/* ---- identifiers ---- */

static void test_parse_format(void **state)
{
	uint32_t di = 7;
	char text[9];

	(void)state;
	assert_int_equal(mh_dlt645_di_parse("00010000", &di), 0);
	assert_int_equal(di, 0x00010000);
	assert_int_equal(mh_dlt645_di_parse("0201ff00", &di), 0);
	assert_int_equal(di, 0x0201FF00);
	assert_int_equal(mh_dlt645_di_parse("0506013E", &di), 0);
	assert_int_equal(di, 0x0506013E);
	di = 7;
	assert_int_equal(mh_dlt645_di_parse("0001000", &di), -EINVAL);
	assert_int_equal(mh_dlt645_di_parse("000100000", &di), -EINVAL);
	assert_int_equal(mh_dlt645_di_parse("0001000g", &di), -EINVAL);
	assert_int_equal(mh_dlt645_di_parse("0x010000", &di), -EINVAL);
	assert_int_equal(mh_dlt645_di_parse(NULL, &di), -EINVAL);
	assert_int_equal(di, 7);
	mh_dlt645_di_format(0x0201FF00, text);
	assert_string_equal(text, "0201FF00");
	mh_dlt645_di_format(0x00000000, text);
	assert_string_equal(text, "00000000");
}

/*
 * The members of a block, in the order the block sends them (table A.1:
 * 0001FF00 is the total then tariffs 1-4), and none for what is not a
 * block. 00000000 is combined energy, a single identifier: it used to get
 * one made-up member, the last identifier of the table that belongs to no
 * block (found by test/fuzz, regressions/dlt645_di/block-members-of-00000000).
 */
static void test_block_members(void **state)
{
	uint32_t m[8];

	(void)state;
	assert_int_equal(mh_dlt645_di_block_members(0x0001FF00, m, 8), 5);
	assert_int_equal(m[0], 0x00010000);
	assert_int_equal(m[4], 0x00010400);
	assert_int_equal(mh_dlt645_di_block_members(0x0201FF00, m, 8), 3);
	assert_int_equal(m[2], 0x02010300);
	assert_int_equal(mh_dlt645_di_block_members(0x0001FF00, m, 2), 2);

	assert_int_equal(mh_dlt645_di_block_members(0x00000000, m, 8), 0);
	assert_int_equal(mh_dlt645_di_block_members(0x00010000, m, 8), 0);
	assert_int_equal(mh_dlt645_di_block_members(0x02800002, m, 8), 0);
	assert_int_equal(mh_dlt645_di_block_members(0x12345678, m, 8), 0);
	/* A daily freeze is a block of tariffs, not of identifiers. */
	assert_int_equal(mh_dlt645_di_block_members(0x05060101, m, 8), 0);
}

static void test_lookup(void **state)
{
	const struct mh_dlt645_di_info *i;

	(void)state;
	i = mh_dlt645_di_lookup(0x00010000);
	assert_non_null(i);
	assert_int_equal(i->kind, MH_DLT645_DI_NUMBER);
	assert_int_equal(i->element_bytes, 4);
	assert_int_equal(i->decimals, 2);
	assert_false(i->is_signed);
	assert_false(i->is_block);
	assert_int_equal(i->block, 0x0001FF00);
	assert_int_equal(i->index, 0);
	assert_string_equal(i->unit, "kWh");
	assert_string_equal(i->names[0], "energy_import_kwh");

	i = mh_dlt645_di_lookup(0x00010300);
	assert_non_null(i);
	assert_int_equal(i->index, 3);
	assert_string_equal(i->names[0], "energy_import_t3_kwh");

	i = mh_dlt645_di_lookup(0x0001FF00);
	assert_non_null(i);
	assert_true(i->is_block);
	assert_true(i->tariff_block);
	assert_int_equal(i->elements, 5);

	i = mh_dlt645_di_lookup(0x00000000);
	assert_non_null(i);
	assert_true(i->is_signed); /* combined energy carries a sign */
	assert_string_equal(i->names[0], "energy_combined_kwh");

	i = mh_dlt645_di_lookup(0x02020100);
	assert_non_null(i);
	assert_true(i->is_signed);
	assert_int_equal(i->element_bytes, 3);
	assert_int_equal(i->decimals, 3);
	assert_int_equal(i->block, 0x0202FF00);

	i = mh_dlt645_di_lookup(0x02010300);
	assert_non_null(i);
	assert_false(i->is_signed);
	assert_int_equal(i->index, 2);

	i = mh_dlt645_di_lookup(0x02060000);
	assert_non_null(i);
	assert_true(i->is_signed);
	assert_int_equal(i->element_bytes, 2);
	assert_int_equal(i->decimals, 3);

	assert_int_equal(mh_dlt645_di_lookup(0x04000101)->kind, MH_DLT645_DI_DATE);
	assert_int_equal(mh_dlt645_di_lookup(0x04000102)->kind, MH_DLT645_DI_TIME);
	assert_int_equal(mh_dlt645_di_lookup(0x04000401)->kind, MH_DLT645_DI_DIGITS);
	assert_int_equal(mh_dlt645_di_lookup(0x04000503)->kind, MH_DLT645_DI_STATUS);
	assert_int_equal(mh_dlt645_di_lookup(0x03110001)->kind, MH_DLT645_DI_POWER_DOWN);
	assert_int_equal(mh_dlt645_di_lookup(0x0311000A)->kind, MH_DLT645_DI_POWER_DOWN);
	assert_null(mh_dlt645_di_lookup(0x0311000B));

	/* Daily freezes: DI0 counts days back, 01..3E. */
	assert_int_equal(mh_dlt645_di_lookup(0x05060001)->kind, MH_DLT645_DI_FREEZE_TIME);
	assert_int_equal(mh_dlt645_di_lookup(0x0506003E)->kind, MH_DLT645_DI_FREEZE_TIME);
	assert_non_null(mh_dlt645_di_lookup(0x05060101));
	assert_non_null(mh_dlt645_di_lookup(0x0506023E));
	assert_null(mh_dlt645_di_lookup(0x05060100));
	assert_null(mh_dlt645_di_lookup(0x0506013F));
	assert_null(mh_dlt645_di_lookup(0x05060000));

	assert_null(mh_dlt645_di_lookup(0x00010500));
	assert_null(mh_dlt645_di_lookup(0x12345678));
}

/* ---- numbers ---- */

static void test_energy(void **state)
{
	struct mh_dlt645_di_value v[8];

	(void)state;
	/* 00 00 00 00 -> 0.00; 99 99 99 99 -> 999999.99 (forward energy is unsigned). */
	assert_int_equal(decode(0x00010000, "00 00 00 00", v, 8), 1);
	assert_value(v[0], "energy_import_kwh", 0.0);
	assert_int_equal(decode(0x00010000, "99 99 99 99", v, 8), 1);
	assert_value(v[0], "energy_import_kwh", 999999.99);
	/* 80 00 00 00 most significant first: 800000.00, the top bit is a digit here. */
	assert_int_equal(decode(0x00020000, "00 00 00 80", v, 8), 1);
	assert_value(v[0], "energy_export_kwh", 800000.00);
	assert_int_equal(decode(0x00010400, "01 00 00 00", v, 8), 1);
	assert_value(v[0], "energy_import_t4_kwh", 0.01);
	assert_int_equal(decode(0x00020100, "34 12 00 00", v, 8), 1);
	assert_value(v[0], "energy_export_t1_kwh", 12.34);

	/* Combined energy is signed: 80 12 34 56 -> -1234.56; 00 12 34 56 -> +1234.56. */
	assert_int_equal(decode(0x00000000, "56 34 12 80", v, 8), 1);
	assert_value(v[0], "energy_combined_kwh", -1234.56);
	assert_int_equal(decode(0x00000000, "56 34 12 00", v, 8), 1);
	assert_value(v[0], "energy_combined_kwh", 1234.56);
	assert_int_equal(decode(0x00000200, "00 00 00 80", v, 8), 1);
	assert_value(v[0], "energy_combined_t2_kwh", 0.0);
	assert_false(signbit(v[0].value)); /* no negative zero */

	assert_int_equal(decode_err(0x00010000, "42 06 12"), -EBADMSG);
	assert_int_equal(decode_err(0x00010000, "42 06 12 00 00"), -EBADMSG);
	assert_int_equal(decode_err(0x00010000, "4A 06 12 00"), -EBADMSG);
	assert_int_equal(decode_err(0x00010000, "42 06 12 A0"), -EBADMSG);
	assert_int_equal(decode_err(0x00010000, "FF FF FF FF"), -EBADMSG);
	/* The sign bit stripped, the rest must still be BCD: 8A -> 0A. */
	assert_int_equal(decode_err(0x00000000, "00 00 00 8A"), -EBADMSG);
}

static void test_energy_blocks(void **state)
{
	struct mh_dlt645_di_value v[8];

	(void)state;
	/* Total 1206.42, T1 100.01, T2 200.02, T3 300.03, T4 606.36. */
	assert_int_equal(
		decode(0x0001FF00,
			"42 06 12 00  01 00 01 00  02 00 02 00  03 00 03 00  36 06 06 00", v, 8),
		5);
	assert_value(v[0], "energy_import_kwh", 1206.42);
	assert_value(v[1], "energy_import_t1_kwh", 100.01);
	assert_value(v[2], "energy_import_t2_kwh", 200.02);
	assert_value(v[3], "energy_import_t3_kwh", 300.03);
	assert_value(v[4], "energy_import_t4_kwh", 606.36);

	/* A two-tariff meter answers with total, T1, T2. */
	assert_int_equal(decode(0x0002FF00, "00 50 00 00  00 20 00 00  00 30 00 00", v, 8), 3);
	assert_value(v[0], "energy_export_kwh", 50.00);
	assert_value(v[2], "energy_export_t2_kwh", 30.00);

	/* An eight-tariff meter: the five named elements come out, the rest are still checked. */
	assert_int_equal(decode(0x0000FF00,
				 "00 00 00 80  01 00 00 00  02 00 00 00  03 00 00 00  04 00 00 80"
				 " 05 00 00 00  06 00 00 00  07 00 00 00  08 00 00 00",
				 v, 8),
		5);
	assert_value(v[0], "energy_combined_kwh", 0.0);
	assert_value(v[3], "energy_combined_t3_kwh", 0.03);
	assert_value(v[4], "energy_combined_t4_kwh", -0.04);
	assert_int_equal(decode_err(0x0000FF00,
				 "00 00 00 00  01 00 00 00  02 00 00 00  03 00 00 00  04 00 00 00"
				 " 05 00 00 00  06 00 00 00  07 00 00 00  0F 00 00 00"),
		-EBADMSG);

	assert_int_equal(decode_err(0x0001FF00, ""), -EBADMSG);
	assert_int_equal(decode_err(0x0001FF00, "00 00 00 00 00 00"), -EBADMSG);
}

static void test_voltage_current(void **state)
{
	struct mh_dlt645_di_value v[4];

	(void)state;
	/* XXX.X: 20 22 -> 0x2220 -> 222.0 V. */
	assert_int_equal(decode(0x02010100, "20 22", v, 4), 1);
	assert_value(v[0], "voltage_a_v", 222.0);
	assert_int_equal(decode(0x02010200, "05 23", v, 4), 1);
	assert_value(v[0], "voltage_b_v", 230.5);
	assert_int_equal(decode_err(0x02010300, "05 23 00"), -EBADMSG);
	assert_int_equal(decode_err(0x02010300, "0F 23"), -EBADMSG);
	assert_int_equal(decode_err(0x0201FF00, "00 22 00 22"), -EBADMSG);

	/* XXX.XXX signed: 56 34 12 -> 123.456 A; 00 05 80 -> -000.500 A. */
	assert_int_equal(decode(0x02020100, "56 34 12", v, 4), 1);
	assert_value(v[0], "current_a_a", 123.456);
	assert_int_equal(decode(0x02020300, "00 05 80", v, 4), 1);
	assert_value(v[0], "current_c_a", -0.5);
	assert_int_equal(decode(0x0202FF00, "00 10 00  00 05 80  99 99 79", v, 4), 3);
	assert_value(v[0], "current_a_a", 1.0);
	assert_value(v[1], "current_b_a", -0.5);
	assert_value(v[2], "current_c_a", 799.999);
	assert_int_equal(decode(0x02020200, "99 99 F9", v, 4), 1);
	assert_value(v[0], "current_b_a", -799.999);
	assert_int_equal(decode_err(0x02020100, "00 00 8A"), -EBADMSG);
	assert_int_equal(decode_err(0x0202FF00, "00 10 00  00 05 80"), -EBADMSG);
}

static void test_power(void **state)
{
	struct mh_dlt645_di_value v[4];

	(void)state;
	/* XX.XXXX signed: 34 12 81 -> -(01 12 34) -> -1.1234 kW. */
	assert_int_equal(decode(0x02030000, "34 12 81", v, 4), 1);
	assert_value(v[0], "power_kw", -1.1234);
	assert_int_equal(decode(0x02030100, "00 50 02", v, 4), 1);
	assert_value(v[0], "power_a_kw", 2.5);
	/* Total 2.5, A 1.5, B -1.0 (exporting), C 0. */
	assert_int_equal(decode(0x0203FF00, "00 50 02  00 50 01  00 00 81  00 00 00", v, 4), 4);
	assert_value(v[0], "power_kw", 2.5);
	assert_value(v[1], "power_a_kw", 1.5);
	assert_value(v[2], "power_b_kw", -1.0);
	assert_value(v[3], "power_c_kw", 0.0);

	assert_int_equal(decode(0x02040000, "01 00 80", v, 4), 1);
	assert_value(v[0], "reactive_power_kvar", -0.0001);
	assert_int_equal(decode(0x0204FF00, "00 00 01  00 00 02  00 00 03  00 00 84", v, 4), 4);
	assert_value(v[3], "reactive_power_c_kvar", -4.0);
	assert_int_equal(decode(0x02050000, "99 99 79", v, 4), 1);
	assert_value(v[0], "apparent_power_kva", 79.9999);
	assert_int_equal(decode(0x0205FF00, "00 00 01  00 00 02  00 00 03  00 00 04", v, 4), 4);
	assert_value(v[2], "apparent_power_b_kva", 3.0);

	/* X.XXX signed: 00 10 -> 1.000; 50 89 -> -0.950. */
	assert_int_equal(decode(0x02060000, "00 10", v, 4), 1);
	assert_value(v[0], "power_factor", 1.0);
	assert_int_equal(decode(0x02060200, "50 89", v, 4), 1);
	assert_value(v[0], "power_factor_b", -0.95);
	assert_int_equal(decode(0x0206FF00, "99 09  00 10  50 89  01 80", v, 4), 4);
	assert_value(v[0], "power_factor", 0.999);
	assert_value(v[3], "power_factor_c", -0.001);

	assert_int_equal(decode_err(0x02030000, "00 50"), -EBADMSG);
	assert_int_equal(decode_err(0x0203FF00, "00 50 02  00 50 01  00 00 81"), -EBADMSG);
	assert_int_equal(decode_err(0x02060000, "B0 09"), -EBADMSG);
}

static void test_frequency_and_counts(void **state)
{
	struct mh_dlt645_di_value v[8];

	(void)state;
	/* XX.XX: 00 50 -> 50.00 Hz; 98 49 -> 49.98 Hz. */
	assert_int_equal(decode(0x02800002, "00 50", v, 8), 1);
	assert_value(v[0], "frequency_hz", 50.0);
	assert_int_equal(decode(0x02800002, "98 49", v, 8), 1);
	assert_value(v[0], "frequency_hz", 49.98);
	assert_int_equal(decode_err(0x02800002, "98 C9"), -EBADMSG);

	/* XXXXXX: 27 01 00 -> 127 power-downs. */
	assert_int_equal(decode(0x03110000, "27 01 00", v, 8), 1);
	assert_value(v[0], "power_down_count", 127);

	/* Status words come out raw: 10 01 -> 0x0110 = 272. */
	assert_int_equal(decode(0x04000503, "10 01", v, 8), 1);
	assert_value(v[0], "status_word_3", 272);
	assert_int_equal(decode(0x040005FF, "01 00 02 00 10 01 04 00 05 00 06 00 07 FF", v, 8), 7);
	assert_value(v[0], "status_word_1", 1);
	assert_value(v[2], "status_word_3", 272);
	assert_value(v[6], "status_word_7", 0xFF07);
}

static void test_decode_errors(void **state)
{
	uint8_t b[4] = {0}, six[6] = {0};
	struct mh_dlt645_di_value v[8];
	size_t n = 99;

	(void)state;
	assert_int_equal(mh_dlt645_di_decode(0x12345678, b, 4, v, 8, &n), -ENOENT);
	assert_int_equal(n, 0);
	n = 99;
	assert_int_equal(mh_dlt645_di_decode(0x04000101, b, 4, v, 8, &n), -ENOTSUP);
	assert_int_equal(n, 0);
	assert_int_equal(mh_dlt645_di_decode(0x04000402, b, 4, v, 8, &n), -ENOTSUP);
	assert_int_equal(mh_dlt645_di_decode(0x0201FF00, b, 4, v, 2, &n), -EBADMSG);
	assert_int_equal(mh_dlt645_di_decode(0x0201FF00, six, 6, v, 2, &n), -ENOSPC);
	assert_int_equal(mh_dlt645_di_decode(0x0201FF00, six, 6, v, 3, &n), 0);
	assert_int_equal(n, 3);
}

static void test_daily_frozen(void **state)
{
	struct mh_dlt645_di_value v[8];
	uint8_t b[5];
	struct tm t;

	(void)state;
	/* Yesterday's freeze (DI0 = 01): total 1200.00, T1..T4 100.00 200.00 300.00 600.00. */
	assert_int_equal(
		decode(0x05060101,
			"00 00 12 00  00 00 01 00  00 00 02 00  00 00 03 00  00 00 06 00", v, 8),
		5);
	assert_value(v[0], "energy_import_kwh", 1200.0);
	assert_value(v[4], "energy_import_t4_kwh", 600.0);
	/* 62 days back, reverse energy, a one-tariff meter: total and T1. */
	assert_int_equal(decode(0x0506023E, "00 00 12 00  00 00 12 00", v, 8), 2);
	assert_value(v[0], "energy_export_kwh", 1200.0);
	assert_value(v[1], "energy_export_t1_kwh", 1200.0);

	/* Freeze time YYMMDDhhmm, sent mm hh DD MM YY: 00 00 22 11 26 = 2026-11-22 00:00. */
	unhex("00 00 22 11 26", b);
	assert_int_equal(mh_dlt645_di_decode_time(0x05060001, b, 5, &t), 0);
	assert_int_equal(t.tm_year, 126);
	assert_int_equal(t.tm_mon, 10);
	assert_int_equal(t.tm_mday, 22);
	assert_int_equal(t.tm_hour, 0);
	assert_int_equal(t.tm_min, 0);
	assert_int_equal(t.tm_isdst, -1);
	unhex("00 24 22 11 26", b);
	assert_int_equal(mh_dlt645_di_decode_time(0x05060001, b, 5, &t), -EBADMSG);
	assert_int_equal(mh_dlt645_di_decode_time(0x05060001, b, 4, &t), -EBADMSG);
}

/* ---- dates, digits, status, events ---- */

static void test_date_time(void **state)
{
	uint8_t b[8];
	struct tm t;

	(void)state;
	/* YYMMDDWW sent WW DD MM YY: 00 22 11 26 = 2026-11-22, a Sunday (WW 00). */
	unhex("00 22 11 26", b);
	assert_int_equal(mh_dlt645_di_decode_time(0x04000101, b, 4, &t), 0);
	assert_int_equal(t.tm_year, 126);
	assert_int_equal(t.tm_mon, 10);
	assert_int_equal(t.tm_mday, 22);
	assert_int_equal(t.tm_wday, 0);
	assert_int_equal(t.tm_hour, 0);

	/* hhmmss sent ss mm hh: 06 45 03 = 03:45:06. */
	unhex("06 45 03", b);
	assert_int_equal(mh_dlt645_di_decode_time(0x04000102, b, 3, &t), 0);
	assert_int_equal(t.tm_hour, 3);
	assert_int_equal(t.tm_min, 45);
	assert_int_equal(t.tm_sec, 6);
	assert_int_equal(t.tm_year, 0);

	unhex("07 22 11 26", b); /* weekday 7 */
	assert_int_equal(mh_dlt645_di_decode_time(0x04000101, b, 4, &t), -EBADMSG);
	unhex("00 22 13 26", b); /* month 13 */
	assert_int_equal(mh_dlt645_di_decode_time(0x04000101, b, 4, &t), -EBADMSG);
	unhex("00 00 11 26", b); /* day 0 */
	assert_int_equal(mh_dlt645_di_decode_time(0x04000101, b, 4, &t), -EBADMSG);
	unhex("00 22 11 2A", b); /* year not BCD */
	assert_int_equal(mh_dlt645_di_decode_time(0x04000101, b, 4, &t), -EBADMSG);
	unhex("60 00 00", b);
	assert_int_equal(mh_dlt645_di_decode_time(0x04000102, b, 3, &t), -EBADMSG);
	assert_int_equal(mh_dlt645_di_decode_time(0x04000102, b, 4, &t), -EBADMSG);
	assert_int_equal(mh_dlt645_di_decode_time(0x00010000, b, 4, &t), -ENOTSUP);
	assert_int_equal(mh_dlt645_di_decode_time(0x12345678, b, 4, &t), -ENOENT);
}

static void test_digits(void **state)
{
	uint8_t b[6];
	char text[13];

	(void)state;
	unhex("25 04 03 02 01 00", b);
	assert_int_equal(mh_dlt645_di_decode_digits(0x04000401, b, 6, text, sizeof(text)), 0);
	assert_string_equal(text, "000102030425");
	assert_int_equal(mh_dlt645_di_decode_digits(0x04000401, b, 6, text, 12), -ENOSPC);
	assert_int_equal(mh_dlt645_di_decode_digits(0x04000401, b, 5, text, 13), -EBADMSG);
	b[5] = 0xAA;
	assert_int_equal(mh_dlt645_di_decode_digits(0x04000401, b, 6, text, 13), -EBADMSG);
	assert_int_equal(mh_dlt645_di_decode_digits(0x00010000, b, 6, text, 13), -ENOTSUP);
	assert_int_equal(mh_dlt645_di_decode_digits(0x12345678, b, 6, text, 13), -ENOENT);
}

static void test_status3(void **state)
{
	struct mh_dlt645_di_status3 s;
	uint8_t b[3];

	(void)state;
	/* Status word 3 arrives low byte first. 10 00: bit 4, relay open. */
	unhex("10 00", b);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 2, &s), 0);
	assert_int_equal(s.raw, 0x0010);
	assert_true(s.relay_open);
	assert_false(s.relay_cmd_open);
	assert_false(s.pretrip_alarm);
	assert_int_equal(s.meter_type, MH_DLT645_DI_NON_PREPAID);

	/* 40 00: trip commanded (bit 6), relay still closed during the trip delay. */
	unhex("40 00", b);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 2, &s), 0);
	assert_false(s.relay_open);
	assert_true(s.relay_cmd_open);

	/* 90 01: open, pre-trip alarm (bit 7), energy-prepaid (bits 8-9 = 01). */
	unhex("90 01", b);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 2, &s), 0);
	assert_true(s.relay_open);
	assert_false(s.relay_cmd_open);
	assert_true(s.pretrip_alarm);
	assert_int_equal(s.meter_type, MH_DLT645_DI_ENERGY_PREPAID);

	/* 00 FE: money-prepaid (bits 8-9 = 10); bits 10-15 (but 12) stay out.
	 */
	unhex("00 FE", b);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 2, &s), 0);
	assert_int_equal(s.meter_type, MH_DLT645_DI_MONEY_PREPAID);
	assert_false(s.relay_open);
	assert_int_equal(s.raw, 0xFE00);
	unhex("00 03", b);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 2, &s), 0);
	assert_int_equal(s.meter_type, MH_DLT645_DI_TYPE_RESERVED);
	assert_false(s.keep_power);

	/* 00 10: keep-power (bit 12) on, relay closed. */
	unhex("00 10", b);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 2, &s), 0);
	assert_true(s.keep_power);
	assert_false(s.relay_open);
	assert_int_equal(s.meter_type, MH_DLT645_DI_NON_PREPAID);

	assert_int_equal(mh_dlt645_di_status3_decode(b, 1, &s), -EBADMSG);
	assert_int_equal(mh_dlt645_di_status3_decode(b, 3, &s), -EBADMSG);
}

static void test_status3_from_reply(void **state)
{
	struct mh_dlt645_frame f;
	struct mh_dlt645_di_status3 s;
	const uint8_t *p;
	size_t len;
	uint32_t di;

	(void)state;
	/* Reply to 04000503 with 10 00, checksum summed by hand (0x3B6). */
	reply_payload("68 01 00 00 00 00 00 68 91 06 36 38 33 37 43 33 B6 16", &di, &p, &len, &f);
	assert_int_equal(di, 0x04000503);
	assert_int_equal(mh_dlt645_di_status3_decode(p, len, &s), 0);
	assert_true(s.relay_open);
}

static void test_power_down(void **state)
{
	struct mh_dlt645_di_power_down pd;
	uint8_t b[12];

	(void)state;
	/* Start 2026-11-21 23:10:05, end 2026-11-22 06:30:00; each ss mm hh DD MM YY. */
	unhex("05 10 23 21 11 26  00 30 06 22 11 26", b);
	assert_int_equal(mh_dlt645_di_power_down_decode(b, 12, &pd), 0);
	assert_true(pd.ended);
	assert_int_equal(pd.start.tm_year, 126);
	assert_int_equal(pd.start.tm_mon, 10);
	assert_int_equal(pd.start.tm_mday, 21);
	assert_int_equal(pd.start.tm_hour, 23);
	assert_int_equal(pd.start.tm_min, 10);
	assert_int_equal(pd.start.tm_sec, 5);
	assert_int_equal(pd.end.tm_mday, 22);
	assert_int_equal(pd.end.tm_hour, 6);
	assert_int_equal(pd.end.tm_min, 30);

	/* No end recorded. */
	unhex("05 10 23 21 11 26  00 00 00 00 00 00", b);
	assert_int_equal(mh_dlt645_di_power_down_decode(b, 12, &pd), 0);
	assert_false(pd.ended);
	assert_int_equal(pd.start.tm_hour, 23);

	unhex("05 10 23 21 1A 26  00 00 00 00 00 00", b);
	assert_int_equal(mh_dlt645_di_power_down_decode(b, 12, &pd), -EBADMSG);
	unhex("05 10 23 21 11 26  00 00 00 32 11 26", b);
	assert_int_equal(mh_dlt645_di_power_down_decode(b, 12, &pd), -EBADMSG);
	assert_int_equal(mh_dlt645_di_power_down_decode(b, 11, &pd), -EBADMSG);
}

/* ---- block planning ---- */

static void test_plan_energy_block(void **state)
{
	const uint32_t wanted[] = {0x00010000, 0x00010100, 0x00010200};
	uint32_t reads[4];
	struct mh_dlt645_di_slot slots[3];
	size_t n;

	(void)state;
	assert_int_equal(mh_dlt645_di_plan(wanted, 3, true, reads, 4, &n, slots), 0);
	assert_int_equal(n, 1);
	assert_int_equal(reads[0], 0x0001FF00);
	assert_int_equal(slots[0].read, 0);
	assert_int_equal(slots[0].element, 0);
	assert_int_equal(slots[1].element, 1);
	assert_int_equal(slots[2].element, 2);

	/* The same without blocks: three reads. */
	assert_int_equal(mh_dlt645_di_plan(wanted, 3, false, reads, 4, &n, slots), 0);
	assert_int_equal(n, 3);
	assert_int_equal(reads[0], 0x00010000);
	assert_int_equal(reads[1], 0x00010100);
	assert_int_equal(reads[2], 0x00010200);
	assert_int_equal(slots[2].read, 2);
	assert_int_equal(slots[2].element, 0);
}

static void test_plan_mixed(void **state)
{
	const uint32_t wanted[] = {
		0x02010100, /* voltage A   -> block 0201FF00 (with C) */
		0x00010000, /* import      -> alone */
		0x02010300, /* voltage C   -> block 0201FF00 */
		0x02800002, /* frequency   -> no block */
		0x00010000, /* duplicate   -> same read */
		0x02030000, /* power total -> alone */
		0x04000503, /* status 3    -> alone */
		0x12345678, /* unknown     -> alone */
	};
	uint32_t reads[8];
	struct mh_dlt645_di_slot slots[8];
	size_t n;

	(void)state;
	assert_int_equal(mh_dlt645_di_plan(wanted, 8, true, reads, 8, &n, slots), 0);
	assert_int_equal(n, 6);
	assert_int_equal(reads[0], 0x0201FF00);
	assert_int_equal(reads[1], 0x00010000);
	assert_int_equal(reads[2], 0x02800002);
	assert_int_equal(reads[3], 0x02030000);
	assert_int_equal(reads[4], 0x04000503);
	assert_int_equal(reads[5], 0x12345678);
	assert_int_equal(slots[0].read, 0);
	assert_int_equal(slots[0].element, 0);
	assert_int_equal(slots[1].read, 1);
	assert_int_equal(slots[1].element, 0);
	assert_int_equal(slots[2].read, 0);
	assert_int_equal(slots[2].element, 2);
	assert_int_equal(slots[3].read, 2);
	assert_int_equal(slots[4].read, 1);
	assert_int_equal(slots[5].read, 3);
	assert_int_equal(slots[6].read, 4);
	assert_int_equal(slots[7].read, 5);

	/* Too little room for the reads. */
	assert_int_equal(mh_dlt645_di_plan(wanted, 8, true, reads, 5, &n, slots), -ENOSPC);
}

static void test_plan_blocks_and_duplicates(void **state)
{
	const uint32_t dup[] = {0x00010000, 0x00010000};
	const uint32_t with_block[] = {0x00010300, 0x0001FF00};
	const uint32_t power[] = {0x02030300, 0x02030000, 0x02060000};
	const uint32_t status[] = {0x04000503, 0x04000501};
	uint32_t reads[4];
	struct mh_dlt645_di_slot slots[3];
	size_t n;

	(void)state;
	/* One identifier twice is still one identifier: no block. */
	assert_int_equal(mh_dlt645_di_plan(dup, 2, true, reads, 4, &n, slots), 0);
	assert_int_equal(n, 1);
	assert_int_equal(reads[0], 0x00010000);
	assert_int_equal(slots[1].read, 0);

	/* The block itself is wanted: its members ride along. */
	assert_int_equal(mh_dlt645_di_plan(with_block, 2, true, reads, 4, &n, slots), 0);
	assert_int_equal(n, 1);
	assert_int_equal(reads[0], 0x0001FF00);
	assert_int_equal(slots[0].element, 3);
	assert_int_equal(slots[1].element, MH_DLT645_DI_ALL);

	/* Power C and total share 0203FF00 (C is element 3); power factor stays alone. */
	assert_int_equal(mh_dlt645_di_plan(power, 3, true, reads, 4, &n, slots), 0);
	assert_int_equal(n, 2);
	assert_int_equal(reads[0], 0x0203FF00);
	assert_int_equal(reads[1], 0x02060000);
	assert_int_equal(slots[0].element, 3);
	assert_int_equal(slots[1].element, 0);
	assert_int_equal(slots[2].read, 1);

	/* Status words 3 and 1 through 040005FF. */
	assert_int_equal(mh_dlt645_di_plan(status, 2, true, reads, 4, &n, slots), 0);
	assert_int_equal(n, 1);
	assert_int_equal(reads[0], 0x040005FF);
	assert_int_equal(slots[0].element, 2);
	assert_int_equal(slots[1].element, 0);

	assert_int_equal(mh_dlt645_di_plan(NULL, 0, true, NULL, 0, &n, NULL), 0);
	assert_int_equal(n, 0);
	assert_int_equal(mh_dlt645_di_plan(NULL, 1, true, reads, 4, &n, slots), -EINVAL);
}

/* The plan's slot finds the right value in the decoded block. */
static void test_plan_then_decode(void **state)
{
	const uint32_t wanted[] = {0x02010300, 0x02010100};
	uint32_t reads[2];
	struct mh_dlt645_di_slot slots[2];
	struct mh_dlt645_di_value v[4];
	size_t n;

	(void)state;
	assert_int_equal(mh_dlt645_di_plan(wanted, 2, true, reads, 2, &n, slots), 0);
	assert_int_equal(n, 1);
	/* Vector 3's payload, source: mbb.eet-china.com/forum/topic/114707_1_1.html */
	assert_int_equal(decode(reads[0], "00 00 00 00 94 23", v, 4), 3);
	assert_value(v[slots[0].element], "voltage_c_v", 239.4);
	assert_value(v[slots[1].element], "voltage_a_v", 0.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector1_energy),
		cmocka_unit_test(test_vector3_voltage_block),
		cmocka_unit_test(test_vector5_meter_number),
		cmocka_unit_test(test_parse_format),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_block_members),
		cmocka_unit_test(test_energy),
		cmocka_unit_test(test_energy_blocks),
		cmocka_unit_test(test_voltage_current),
		cmocka_unit_test(test_power),
		cmocka_unit_test(test_frequency_and_counts),
		cmocka_unit_test(test_decode_errors),
		cmocka_unit_test(test_daily_frozen),
		cmocka_unit_test(test_date_time),
		cmocka_unit_test(test_digits),
		cmocka_unit_test(test_status3),
		cmocka_unit_test(test_status3_from_reply),
		cmocka_unit_test(test_power_down),
		cmocka_unit_test(test_plan_energy_block),
		cmocka_unit_test(test_plan_mixed),
		cmocka_unit_test(test_plan_blocks_and_duplicates),
		cmocka_unit_test(test_plan_then_decode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
