// SPDX-License-Identifier: MIT
/*
 * Modbus register decoding and request planning (protocols/modbus_regs.h),
 * and the link's hold on its port (protocols/modbus_link.h), which needs no
 * slave to answer: the link opens the slave end of a pty, the test holds or
 * closes the master end. They share this executable, the Modbus one the
 * build registers, rather than a test_modbus_link of their own.
 *
 * Every register array is written out by hand. The expected bit patterns
 * come from IEEE 754 and two's complement, worked by hand:
 *   float32 1234.5  = 1.00110100101b x 2^10  -> 0x449A5000
 *   float32 -1.0                              -> 0xBF800000
 *   float32 230.1   (nearest float)           -> 0x4366199A
 *   float32 2301.0  = 1.00011111101b x 2^11  -> 0x450FD000
 *   float64 230.1                             -> 0x406CC33333333333
 *   float64 1234.5                            -> 0x40934A0000000000
 *   s32 -2          = ~1                      -> 0xFFFFFFFE
 *   u64 0x0001000200030004 = 2^48 + 2*2^32 + 3*2^16 + 4 = 281483566841860
 *   float64 1e308   (nearest double)          -> 0x7FE1CCF385EBC8A0
 *   float64 DBL_MAX = (2 - 2^-52) x 2^1023    -> 0x7FEFFFFFFFFFFFFF
 *   float32 FLT_MAX = (2 - 2^-23) x 2^127     -> 0x7F7FFFFF
 * "Big" word order puts the most significant register first (the Modbus
 * norm); "little" puts the least significant register first. Bytes inside a
 * register are big-endian either way, so a uint16_t array models the wire.
 *
 * The plans are checked against request ranges worked out by hand from the
 * 125-register / 2000-bit limits of the Modbus application protocol V1.1b3
 * (6.1-6.4). The order of requests within a plan is not part of the
 * contract, so requests are matched as a set and slots are followed to them.
 */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

#include "dlt645_link.h"
#include "modbus_link.h"
#include "modbus_regs.h"

#define BIG MH_MODBUS_WORDS_BIG
#define LITTLE MH_MODBUS_WORDS_LITTLE

/* Decode @regs as @type in @order with @scale; returns the decoder's result code. */
static int decode(enum mh_modbus_type type, enum mh_modbus_word_order order, double scale,
	const uint16_t *regs, double *value)
{
	const struct mh_modbus_point p = {
		.table = type == MH_MODBUS_BIT ? MH_MODBUS_COIL : MH_MODBUS_HOLDING,
		.address = 0,
		.type = type,
		.word_order = order,
		.scale = scale,
	};

	*value = -12345.678; /* a sentinel no case below expects */
	return mh_modbus_decode(&p, regs, value);
}

/* Decode and require exactly @want (bit-for-bit equality of the doubles). */
static void check_decode(enum mh_modbus_type type, enum mh_modbus_word_order order, double scale,
	const uint16_t *regs, double want)
{
	double v;
	int rc = decode(type, order, scale, regs, &v);

	if (rc != 0 || v != want)
		print_message("%s %s scale %.17g: rc %d, got %.17g, want %.17g\n",
			mh_modbus_type_name(type), order == BIG ? "big" : "little", scale, rc, v,
			want);
	assert_int_equal(rc, 0);
	assert_true(v == want);
}

/* Decode and require the error @want, with the value left alone. */
static void check_fails(enum mh_modbus_type type, enum mh_modbus_word_order order, double scale,
	const uint16_t *regs, int want)
{
	double v;
	int rc = decode(type, order, scale, regs, &v);

	if (rc != want)
		print_message("%s %s scale %.17g: rc %d (value %.17g), want %d\n",
			mh_modbus_type_name(type), order == BIG ? "big" : "little", scale, rc, v,
			want);
	assert_int_equal(rc, want);
	assert_true(v == -12345.678);
}

/* The meter's own "no value": a float register holding NaN or infinity. */
static void check_no_value(
	enum mh_modbus_type type, enum mh_modbus_word_order order, const uint16_t *regs)
{
	check_fails(type, order, 1.0, regs, -ENODATA);
}

/* ---- names and widths ------------------------------------------------ */

static void test_names_and_widths(void **state)
{
	assert_string_equal(mh_modbus_table_name(MH_MODBUS_COIL), "coil");
	assert_string_equal(mh_modbus_table_name(MH_MODBUS_DISCRETE), "discrete");
	assert_string_equal(mh_modbus_table_name(MH_MODBUS_HOLDING), "holding");
	assert_string_equal(mh_modbus_table_name(MH_MODBUS_INPUT), "input");
	assert_null(mh_modbus_table_name((enum mh_modbus_table)4));
	assert_null(mh_modbus_table_name((enum mh_modbus_table) - 1));

	assert_string_equal(mh_modbus_type_name(MH_MODBUS_U16), "u16");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_S16), "s16");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_U32), "u32");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_S32), "s32");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_U64), "u64");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_S64), "s64");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_FLOAT32), "float32");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_FLOAT64), "float64");
	assert_string_equal(mh_modbus_type_name(MH_MODBUS_BIT), "bit");
	assert_null(mh_modbus_type_name((enum mh_modbus_type)9));

	assert_int_equal(mh_modbus_type_width(MH_MODBUS_U16), 1);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_S16), 1);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_BIT), 1);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_U32), 2);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_S32), 2);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_FLOAT32), 2);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_U64), 4);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_S64), 4);
	assert_int_equal(mh_modbus_type_width(MH_MODBUS_FLOAT64), 4);

	assert_true(mh_modbus_table_is_bits(MH_MODBUS_COIL));
	assert_true(mh_modbus_table_is_bits(MH_MODBUS_DISCRETE));
	assert_false(mh_modbus_table_is_bits(MH_MODBUS_HOLDING));
	assert_false(mh_modbus_table_is_bits(MH_MODBUS_INPUT));
}

/* ---- decoding, every type in both word orders ------------------------ */

static void test_decode_u16(void **state)
{
	/* One register: word order cannot matter. */
	for (int o = BIG; o <= LITTLE; o++) {
		check_decode(MH_MODBUS_U16, o, 1, (const uint16_t[]){0x1234}, 4660);
		check_decode(MH_MODBUS_U16, o, 1, (const uint16_t[]){0xFFFF}, 65535);
		check_decode(MH_MODBUS_U16, o, 1, (const uint16_t[]){0x0000}, 0);
		check_decode(MH_MODBUS_U16, o, 1, (const uint16_t[]){0x8000}, 32768);
	}
}

static void test_decode_s16(void **state)
{
	for (int o = BIG; o <= LITTLE; o++) {
		check_decode(MH_MODBUS_S16, o, 1, (const uint16_t[]){0xFFFF}, -1);
		check_decode(MH_MODBUS_S16, o, 1, (const uint16_t[]){0x8000}, -32768);
		check_decode(MH_MODBUS_S16, o, 1, (const uint16_t[]){0x7FFF}, 32767);
		check_decode(MH_MODBUS_S16, o, 1, (const uint16_t[]){0xFFFE}, -2);
	}
}

static void test_decode_u32(void **state)
{
	check_decode(MH_MODBUS_U32, BIG, 1, (const uint16_t[]){0x1234, 0x5678}, 305419896);
	check_decode(MH_MODBUS_U32, LITTLE, 1, (const uint16_t[]){0x5678, 0x1234}, 305419896);
	/* The same registers in the other order are another number: 0x56781234. */
	check_decode(MH_MODBUS_U32, BIG, 1, (const uint16_t[]){0x5678, 0x1234}, 1450709556);
	check_decode(MH_MODBUS_U32, BIG, 1, (const uint16_t[]){0xFFFF, 0xFFFF}, 4294967295.0);
	check_decode(MH_MODBUS_U32, LITTLE, 1, (const uint16_t[]){0x0001, 0x0000}, 1);
	check_decode(MH_MODBUS_U32, BIG, 1, (const uint16_t[]){0x0001, 0x0000}, 65536);
}

static void test_decode_s32(void **state)
{
	check_decode(MH_MODBUS_S32, BIG, 1, (const uint16_t[]){0xFFFF, 0xFFFE}, -2);
	check_decode(MH_MODBUS_S32, LITTLE, 1, (const uint16_t[]){0xFFFE, 0xFFFF}, -2);
	check_decode(MH_MODBUS_S32, BIG, 1, (const uint16_t[]){0x8000, 0x0000}, -2147483648.0);
	check_decode(MH_MODBUS_S32, LITTLE, 1, (const uint16_t[]){0x0000, 0x8000}, -2147483648.0);
	check_decode(MH_MODBUS_S32, BIG, 1, (const uint16_t[]){0x7FFF, 0xFFFF}, 2147483647.0);
	check_decode(MH_MODBUS_S32, LITTLE, 1, (const uint16_t[]){0xFFFF, 0x7FFF}, 2147483647.0);
}

static void test_decode_u64(void **state)
{
	check_decode(MH_MODBUS_U64, BIG, 1, (const uint16_t[]){0x0001, 0x0002, 0x0003, 0x0004},
		281483566841860.0);
	check_decode(MH_MODBUS_U64, LITTLE, 1, (const uint16_t[]){0x0004, 0x0003, 0x0002, 0x0001},
		281483566841860.0);
	/* 2^64 - 1 has no double; the nearest one is 2^64. */
	check_decode(MH_MODBUS_U64, BIG, 1, (const uint16_t[]){0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF},
		18446744073709551616.0);
	check_decode(
		MH_MODBUS_U64, LITTLE, 1, (const uint16_t[]){0x0001, 0x0000, 0x0000, 0x0000}, 1);
	check_decode(MH_MODBUS_U64, BIG, 1, (const uint16_t[]){0x0001, 0x0000, 0x0000, 0x0000},
		281474976710656.0); /* 2^48 */
}

static void test_decode_s64(void **state)
{
	check_decode(MH_MODBUS_S64, BIG, 1, (const uint16_t[]){0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE}, -2);
	check_decode(
		MH_MODBUS_S64, LITTLE, 1, (const uint16_t[]){0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF}, -2);
	/* -0x0001000200030004 = 0xFFFEFFFDFFFCFFFC */
	check_decode(MH_MODBUS_S64, BIG, 1, (const uint16_t[]){0xFFFE, 0xFFFD, 0xFFFC, 0xFFFC},
		-281483566841860.0);
	check_decode(MH_MODBUS_S64, LITTLE, 1, (const uint16_t[]){0xFFFC, 0xFFFC, 0xFFFD, 0xFFFE},
		-281483566841860.0);
	check_decode(MH_MODBUS_S64, BIG, 1, (const uint16_t[]){0x8000, 0x0000, 0x0000, 0x0000},
		-9223372036854775808.0);
}

static void test_decode_float32(void **state)
{
	check_decode(MH_MODBUS_FLOAT32, BIG, 1, (const uint16_t[]){0x449A, 0x5000}, 1234.5);
	check_decode(MH_MODBUS_FLOAT32, LITTLE, 1, (const uint16_t[]){0x5000, 0x449A}, 1234.5);
	check_decode(MH_MODBUS_FLOAT32, BIG, 1, (const uint16_t[]){0xBF80, 0x0000}, -1.0);
	check_decode(MH_MODBUS_FLOAT32, LITTLE, 1, (const uint16_t[]){0x0000, 0xBF80}, -1.0);
	check_decode(MH_MODBUS_FLOAT32, BIG, 1, (const uint16_t[]){0x0000, 0x0000}, 0.0);
	/*
	 * 230.1f is 230.100006103515625; a float carries about seven
	 * significant digits, so the meter meant 230.1 and that is what the
	 * head-end must see.
	 */
	check_decode(MH_MODBUS_FLOAT32, BIG, 1, (const uint16_t[]){0x4366, 0x199A}, 230.1);
	check_decode(MH_MODBUS_FLOAT32, LITTLE, 1, (const uint16_t[]){0x199A, 0x4366}, 230.1);
}

static void test_decode_float64(void **state)
{
	check_decode(MH_MODBUS_FLOAT64, BIG, 1, (const uint16_t[]){0x406C, 0xC333, 0x3333, 0x3333},
		230.1);
	check_decode(MH_MODBUS_FLOAT64, LITTLE, 1,
		(const uint16_t[]){0x3333, 0x3333, 0xC333, 0x406C}, 230.1);
	check_decode(MH_MODBUS_FLOAT64, BIG, 1, (const uint16_t[]){0x4093, 0x4A00, 0x0000, 0x0000},
		1234.5);
	check_decode(MH_MODBUS_FLOAT64, LITTLE, 1,
		(const uint16_t[]){0x0000, 0x0000, 0x4A00, 0x4093}, 1234.5);
	check_decode(MH_MODBUS_FLOAT64, BIG, 1, (const uint16_t[]){0xBFF0, 0x0000, 0x0000, 0x0000},
		-1.0);
}

static void test_decode_bit(void **state)
{
	for (int o = BIG; o <= LITTLE; o++) {
		check_decode(MH_MODBUS_BIT, o, 1, (const uint16_t[]){1}, 1);
		check_decode(MH_MODBUS_BIT, o, 1, (const uint16_t[]){0}, 0);
	}
}

/* ---- scaling and its rounding ---------------------------------------- */

static void test_decode_scaled(void **state)
{
	/* 2301 x 0.1 is 230.10000000000002 in plain double arithmetic. */
	check_decode(MH_MODBUS_U16, BIG, 0.1, (const uint16_t[]){2301}, 230.1);
	/* -2301 = 0x10000 - 2301 = 0xF703 */
	check_decode(MH_MODBUS_S16, BIG, 0.1, (const uint16_t[]){0xF703}, -230.1);
	/* 230100 = 0x000382D4, in thousandths */
	check_decode(MH_MODBUS_U32, BIG, 0.001, (const uint16_t[]){0x0003, 0x82D4}, 230.1);
	check_decode(MH_MODBUS_U32, LITTLE, 0.001, (const uint16_t[]){0x82D4, 0x0003}, 230.1);
	/* 123456789 = 0x075BCD15, in hundredths */
	check_decode(MH_MODBUS_U32, BIG, 0.01, (const uint16_t[]){0x075B, 0xCD15}, 1234567.89);
	check_decode(MH_MODBUS_U16, BIG, 0.001, (const uint16_t[]){1}, 0.001);
	check_decode(MH_MODBUS_U16, BIG, 0.001, (const uint16_t[]){0xFFFF}, 65.535);
	check_decode(MH_MODBUS_U16, BIG, 10, (const uint16_t[]){5}, 50);
	check_decode(MH_MODBUS_S32, BIG, 0.5, (const uint16_t[]){0xFFFF, 0xFFFE}, -1);
	/* A CHINT DTSU666 sends volts as a float in 0.1 V: 2301.0f x 0.1. */
	check_decode(MH_MODBUS_FLOAT32, BIG, 0.1, (const uint16_t[]){0x450F, 0xD000}, 230.1);
	check_decode(MH_MODBUS_FLOAT32, LITTLE, 0.1, (const uint16_t[]){0xD000, 0x450F}, 230.1);
	/* 1234.5 kWh read as float64 and reported in MWh. */
	check_decode(MH_MODBUS_FLOAT64, BIG, 0.001,
		(const uint16_t[]){0x4093, 0x4A00, 0x0000, 0x0000}, 1.2345);
}

/* ---- not-a-number and infinity --------------------------------------- */

static void test_decode_nan_inf(void **state)
{
	double v;

	check_no_value(MH_MODBUS_FLOAT32, BIG, (const uint16_t[]){0x7FC0, 0x0000}); /* NaN */
	check_no_value(MH_MODBUS_FLOAT32, LITTLE, (const uint16_t[]){0x0000, 0x7FC0});
	check_no_value(MH_MODBUS_FLOAT32, BIG, (const uint16_t[]){0xFFFF, 0xFFFF});    /* NaN */
	check_no_value(MH_MODBUS_FLOAT32, BIG, (const uint16_t[]){0x7F80, 0x0000});    /* +inf */
	check_no_value(MH_MODBUS_FLOAT32, LITTLE, (const uint16_t[]){0x0000, 0xFF80}); /* -inf */
	check_no_value(MH_MODBUS_FLOAT64, BIG, (const uint16_t[]){0x7FF8, 0, 0, 0});   /* NaN */
	check_no_value(MH_MODBUS_FLOAT64, LITTLE, (const uint16_t[]){0, 0, 0, 0x7FF8});
	check_no_value(MH_MODBUS_FLOAT64, BIG, (const uint16_t[]){0x7FF0, 0, 0, 0});	/* +inf */
	check_no_value(MH_MODBUS_FLOAT64, LITTLE, (const uint16_t[]){0, 0, 0, 0xFFF0}); /* -inf */

	/* The NaN pattern in the wrong word order is a tiny denormal, not NaN. */
	assert_int_equal(
		decode(MH_MODBUS_FLOAT32, BIG, 1, (const uint16_t[]){0x0000, 0x7FC0}, &v), 0);
	assert_true(v > 0 && v < 1e-38);
	/* Integers have no NaN: 0x7FC00000 as s32 is 32704 x 65536. */
	assert_int_equal(decode(MH_MODBUS_S32, BIG, 1, (const uint16_t[]){0x7FC0, 0x0000}, &v), 0);
	assert_true(v == 2143289344.0);
}

/* ---- values that scaling takes out of range ---------------------------- */

static void test_decode_not_finite_after_scaling(void **state)
{
	const uint16_t e308[] = {0x7FE1, 0xCCF3, 0x85EB, 0xC8A0};
	const uint16_t e308_little[] = {0xC8A0, 0x85EB, 0xCCF3, 0x7FE1};
	const uint16_t minus_e308[] = {0xFFE1, 0xCCF3, 0x85EB, 0xC8A0};
	const uint16_t dbl_max[] = {0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF};
	const uint16_t u64_max[] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF};
	const uint16_t s64_min[] = {0x8000, 0x0000, 0x0000, 0x0000};
	double v;

	(void)state;
	/* A number on the wire, infinity once scaled: an error, never a value. */
	check_fails(MH_MODBUS_FLOAT64, BIG, 10, e308, -ERANGE);
	check_fails(MH_MODBUS_FLOAT64, LITTLE, 10, e308_little, -ERANGE);
	check_fails(MH_MODBUS_FLOAT64, BIG, -10, e308, -ERANGE);
	check_fails(MH_MODBUS_FLOAT64, BIG, 10, minus_e308, -ERANGE);
	check_fails(MH_MODBUS_FLOAT64, BIG, 1.0000001, dbl_max, -ERANGE);
	check_fails(MH_MODBUS_FLOAT32, BIG, 1e300, (const uint16_t[]){0x7F7F, 0xFFFF}, -ERANGE);
	check_fails(MH_MODBUS_U64, BIG, 1e300, u64_max, -ERANGE);
	check_fails(MH_MODBUS_S64, BIG, 1e300, s64_min, -ERANGE);
	/* A scale that is not a number makes no number of any register. */
	check_fails(MH_MODBUS_U16, BIG, NAN, (const uint16_t[]){5}, -ERANGE);
	check_fails(MH_MODBUS_U16, BIG, INFINITY, (const uint16_t[]){5}, -ERANGE);
	check_fails(MH_MODBUS_U16, BIG, INFINITY, (const uint16_t[]){0}, -ERANGE);
	/* The meter's NaN stays "no value" whatever the scale. */
	check_fails(
		MH_MODBUS_FLOAT64, BIG, INFINITY, (const uint16_t[]){0x7FF8, 0, 0, 0}, -ENODATA);

	/* Right at the edge it is still a value. */
	check_decode(MH_MODBUS_FLOAT64, BIG, 1, dbl_max, DBL_MAX);
	check_decode(MH_MODBUS_FLOAT64, BIG, -1, dbl_max, -DBL_MAX);
	assert_int_equal(decode(MH_MODBUS_FLOAT64, BIG, 0.1, e308, &v), 0);
	assert_true(isfinite(v) && v > 9.99e306 && v < 1.001e307);
	check_decode(MH_MODBUS_FLOAT32, BIG, 1, (const uint16_t[]){0x7F7F, 0xFFFF}, FLT_MAX);
}

/* ---- planning -------------------------------------------------------- */

struct req {
	enum mh_modbus_table table;
	unsigned address, count;
};

static struct mh_modbus_point pt(
	enum mh_modbus_table table, unsigned address, enum mh_modbus_type type)
{
	return (struct mh_modbus_point){
		.table = table,
		.address = (uint16_t)address,
		.type = type,
		.word_order = BIG,
		.scale = 1,
	};
}

#define H(a, t) pt(MH_MODBUS_HOLDING, a, MH_MODBUS_##t)
#define I(a, t) pt(MH_MODBUS_INPUT, a, MH_MODBUS_##t)
#define C(a) pt(MH_MODBUS_COIL, a, MH_MODBUS_BIT)
#define D(a) pt(MH_MODBUS_DISCRETE, a, MH_MODBUS_BIT)

static void dump_plan(const struct mh_modbus_plan *plan)
{
	for (size_t i = 0; i < plan->n_requests; i++)
		print_message("  request %zu: %s 0x%04X count %u\n", i,
			mh_modbus_table_name(plan->requests[i].table), plan->requests[i].address,
			plan->requests[i].count);
}

/* The plan holds exactly the requests @want, in any order. */
static void assert_requests(const struct mh_modbus_plan *plan, const struct req *want, size_t n)
{
	bool used[64] = {false};

	if (plan->n_requests != n)
		dump_plan(plan);
	assert_int_equal(plan->n_requests, n);
	for (size_t i = 0; i < n; i++) {
		size_t j;
		for (j = 0; j < plan->n_requests; j++) {
			const struct mh_modbus_request *r = &plan->requests[j];
			if (!used[j] && r->table == want[i].table &&
				r->address == want[i].address && r->count == want[i].count)
				break;
		}
		if (j == plan->n_requests) {
			print_message("missing request %s 0x%04X count %u\n",
				mh_modbus_table_name(want[i].table), want[i].address,
				want[i].count);
			dump_plan(plan);
			fail();
		}
		used[j] = true;
	}
}

/* Point @i lands in the request @want at register (or bit) @offset. */
static void assert_slot(
	const struct mh_modbus_plan *plan, size_t i, struct req want, unsigned offset)
{
	assert_true(i < plan->n_slots);
	assert_true(plan->slots[i].request < plan->n_requests);
	const struct mh_modbus_request *r = &plan->requests[plan->slots[i].request];
	assert_int_equal(r->table, want.table);
	assert_int_equal(r->address, want.address);
	assert_int_equal(r->count, want.count);
	assert_int_equal(plan->slots[i].offset, offset);
}

#define REQ(tab, a, c) ((struct req){MH_MODBUS_##tab, a, c})

static void test_plan_adjacent_share_a_request(void **state)
{
	const struct mh_modbus_point p[] = {H(0, U16), H(1, U16), H(2, FLOAT32), H(4, FLOAT64)};
	struct mh_modbus_plan plan;

	assert_int_equal(mh_modbus_plan_build(p, 4, 0, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 8)}, 1);
	assert_int_equal(plan.n_slots, 4);
	assert_slot(&plan, 0, REQ(HOLDING, 0, 8), 0);
	assert_slot(&plan, 1, REQ(HOLDING, 0, 8), 1);
	assert_slot(&plan, 2, REQ(HOLDING, 0, 8), 2);
	assert_slot(&plan, 3, REQ(HOLDING, 0, 8), 4);
	mh_modbus_plan_deinit(&plan);
	assert_null(plan.requests);
	assert_null(plan.slots);
}

static void test_plan_tables_never_share(void **state)
{
	/* The same address in all four tables, with room to bridge anything. */
	const struct mh_modbus_point p[] = {
		H(0, U16), I(0, U16), C(0), D(0), H(1, U16), I(1, U16), C(1), D(1)};
	struct mh_modbus_plan plan;

	assert_int_equal(mh_modbus_plan_build(p, 8, 100, &plan), 0);
	assert_requests(&plan,
		(const struct req[]){
			REQ(HOLDING, 0, 2), REQ(INPUT, 0, 2), REQ(COIL, 0, 2), REQ(DISCRETE, 0, 2)},
		4);
	assert_slot(&plan, 0, REQ(HOLDING, 0, 2), 0);
	assert_slot(&plan, 1, REQ(INPUT, 0, 2), 0);
	assert_slot(&plan, 2, REQ(COIL, 0, 2), 0);
	assert_slot(&plan, 3, REQ(DISCRETE, 0, 2), 0);
	assert_slot(&plan, 4, REQ(HOLDING, 0, 2), 1);
	assert_slot(&plan, 5, REQ(INPUT, 0, 2), 1);
	assert_slot(&plan, 6, REQ(COIL, 0, 2), 1);
	assert_slot(&plan, 7, REQ(DISCRETE, 0, 2), 1);
	mh_modbus_plan_deinit(&plan);
}

static void test_plan_gap_bridged_up_to_max_gap(void **state)
{
	struct mh_modbus_plan plan;

	/* Registers 1..8 unused: a gap of exactly 8 is bridged with max_gap 8. */
	const struct mh_modbus_point a[] = {H(0, U16), H(9, U16)};
	assert_int_equal(mh_modbus_plan_build(a, 2, 8, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 10)}, 1);
	assert_slot(&plan, 1, REQ(HOLDING, 0, 10), 9);
	mh_modbus_plan_deinit(&plan);

	/* Registers 1..9 unused: a gap of 9 is one too many. */
	const struct mh_modbus_point b[] = {H(0, U16), H(10, U16)};
	assert_int_equal(mh_modbus_plan_build(b, 2, 8, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 1), REQ(HOLDING, 10, 1)}, 2);
	assert_slot(&plan, 0, REQ(HOLDING, 0, 1), 0);
	assert_slot(&plan, 1, REQ(HOLDING, 10, 1), 0);
	mh_modbus_plan_deinit(&plan);

	/* The gap is counted from the end of a wide point: float32 at 0 ends at 1. */
	const struct mh_modbus_point c[] = {H(0, FLOAT32), H(10, U16)};
	assert_int_equal(mh_modbus_plan_build(c, 2, 8, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 11)}, 1);
	mh_modbus_plan_deinit(&plan);

	const struct mh_modbus_point d[] = {H(0, FLOAT32), H(11, U16)};
	assert_int_equal(mh_modbus_plan_build(d, 2, 8, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 2), REQ(HOLDING, 11, 1)}, 2);
	mh_modbus_plan_deinit(&plan);
}

static void test_plan_max_gap_zero(void **state)
{
	struct mh_modbus_plan plan;

	/* One unused register between two points is never read with max_gap 0. */
	const struct mh_modbus_point a[] = {H(0, U16), H(2, U16)};
	assert_int_equal(mh_modbus_plan_build(a, 2, 0, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 1), REQ(HOLDING, 2, 1)}, 2);
	mh_modbus_plan_deinit(&plan);

	const struct mh_modbus_point b[] = {
		I(3, U16), I(0, FLOAT32), I(2, U16), I(7, U64), I(5, U16)};
	assert_int_equal(mh_modbus_plan_build(b, 5, 0, &plan), 0);
	/* 0-1 float32, 2, 3 adjacent; 4 unused; 5; 6 unused; 7-10. */
	assert_requests(&plan,
		(const struct req[]){REQ(INPUT, 0, 4), REQ(INPUT, 5, 1), REQ(INPUT, 7, 4)}, 3);
	assert_slot(&plan, 0, REQ(INPUT, 0, 4), 3);
	assert_slot(&plan, 1, REQ(INPUT, 0, 4), 0);
	assert_slot(&plan, 2, REQ(INPUT, 0, 4), 2);
	assert_slot(&plan, 3, REQ(INPUT, 7, 4), 0);
	assert_slot(&plan, 4, REQ(INPUT, 5, 1), 0);
	mh_modbus_plan_deinit(&plan);
}

static void test_plan_register_limit(void **state)
{
	struct mh_modbus_point p[126];
	struct mh_modbus_plan plan;

	/* 125 adjacent registers 0..124 fit one request... */
	for (unsigned i = 0; i < 126; i++)
		p[i] = H(i, U16);
	assert_int_equal(mh_modbus_plan_build(p, 125, 0, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 125)}, 1);
	assert_slot(&plan, 124, REQ(HOLDING, 0, 125), 124);
	mh_modbus_plan_deinit(&plan);

	/* ...the 126th does not. */
	assert_int_equal(mh_modbus_plan_build(p, 126, 0, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 125), REQ(HOLDING, 125, 1)}, 2);
	assert_slot(&plan, 125, REQ(HOLDING, 125, 1), 0);
	mh_modbus_plan_deinit(&plan);

	/* A float32 at 123 ends at 124: one request of 125. At 124 it would end at 125. */
	const struct mh_modbus_point a[] = {I(0, U16), I(123, FLOAT32)};
	assert_int_equal(mh_modbus_plan_build(a, 2, 125, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(INPUT, 0, 125)}, 1);
	mh_modbus_plan_deinit(&plan);

	const struct mh_modbus_point b[] = {I(0, U16), I(124, FLOAT32)};
	assert_int_equal(mh_modbus_plan_build(b, 2, 125, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(INPUT, 0, 1), REQ(INPUT, 124, 2)}, 2);
	mh_modbus_plan_deinit(&plan);

	/* Registers are limited to 125 even where bits would allow 2000. */
	const struct mh_modbus_point c[] = {H(0, U16), H(200, U16)};
	assert_int_equal(mh_modbus_plan_build(c, 2, 300, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(HOLDING, 0, 1), REQ(HOLDING, 200, 1)}, 2);
	mh_modbus_plan_deinit(&plan);
}

static void test_plan_bit_limit(void **state)
{
	struct mh_modbus_plan plan;
	struct mh_modbus_point *many;

	/* Bits are not held to the 125-register limit. */
	const struct mh_modbus_point a[] = {C(0), C(200)};
	assert_int_equal(mh_modbus_plan_build(a, 2, 300, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(COIL, 0, 201)}, 1);
	assert_slot(&plan, 1, REQ(COIL, 0, 201), 200);
	mh_modbus_plan_deinit(&plan);

	/* Bits 0..1999 are 2000 bits: one request. Bit 2000 makes 2001: two. */
	const struct mh_modbus_point b[] = {D(0), D(1999)};
	assert_int_equal(mh_modbus_plan_build(b, 2, 5000, &plan), 0);
	assert_requests(&plan, (const struct req[]){REQ(DISCRETE, 0, 2000)}, 1);
	mh_modbus_plan_deinit(&plan);

	const struct mh_modbus_point c[] = {D(0), D(2000)};
	assert_int_equal(mh_modbus_plan_build(c, 2, 5000, &plan), 0);
	assert_requests(
		&plan, (const struct req[]){REQ(DISCRETE, 0, 1), REQ(DISCRETE, 2000, 1)}, 2);
	mh_modbus_plan_deinit(&plan);

	/* 2001 adjacent coils. */
	many = calloc(2001, sizeof(*many));
	assert_non_null(many);
	for (unsigned i = 0; i < 2001; i++)
		many[i] = C(i);
	assert_int_equal(mh_modbus_plan_build(many, 2001, 0, &plan), 0);
	free(many);
	assert_requests(&plan, (const struct req[]){REQ(COIL, 0, 2000), REQ(COIL, 2000, 1)}, 2);
	assert_slot(&plan, 1999, REQ(COIL, 0, 2000), 1999);
	assert_slot(&plan, 2000, REQ(COIL, 2000, 1), 0);
	mh_modbus_plan_deinit(&plan);
}

static void test_plan_slots_follow_caller_order(void **state)
{
	/*
	 * Unsorted, mixed tables, max_gap 8:
	 *   holding: float32 3-4, u16 5            -> 3..5   (3 registers)
	 *   input:   u16 0; float32 16-17, u16 18  -> 0..0 and 16..18 (gap 1..15 is 15 > 8)
	 *   coil:    7                             -> 7
	 */
	const struct mh_modbus_point p[] = {
		I(0x10, FLOAT32), /* 0 */
		H(0x05, U16),	  /* 1 */
		I(0x00, U16),	  /* 2 */
		H(0x03, FLOAT32), /* 3 */
		C(7),		  /* 4 */
		I(0x12, U16),	  /* 5 */
	};
	struct mh_modbus_plan plan;

	assert_int_equal(mh_modbus_plan_build(p, 6, 8, &plan), 0);
	assert_requests(&plan,
		(const struct req[]){
			REQ(HOLDING, 3, 3), REQ(INPUT, 0, 1), REQ(INPUT, 16, 3), REQ(COIL, 7, 1)},
		4);
	assert_int_equal(plan.n_slots, 6);
	assert_slot(&plan, 0, REQ(INPUT, 16, 3), 0);
	assert_slot(&plan, 1, REQ(HOLDING, 3, 3), 2);
	assert_slot(&plan, 2, REQ(INPUT, 0, 1), 0);
	assert_slot(&plan, 3, REQ(HOLDING, 3, 3), 0);
	assert_slot(&plan, 4, REQ(COIL, 7, 1), 0);
	assert_slot(&plan, 5, REQ(INPUT, 16, 3), 2);
	mh_modbus_plan_deinit(&plan);
}

static void test_plan_empty(void **state)
{
	struct mh_modbus_plan plan;

	memset(&plan, 0xA5, sizeof(plan));
	assert_int_equal(mh_modbus_plan_build(NULL, 0, 8, &plan), 0);
	assert_int_equal(plan.n_requests, 0);
	assert_int_equal(plan.n_slots, 0);
	mh_modbus_plan_deinit(&plan);

	/* Releasing a zeroed plan is safe. */
	struct mh_modbus_plan zero = {0};
	mh_modbus_plan_deinit(&zero);
}

static void test_plan_end_of_address_space(void **state)
{
	struct mh_modbus_plan plan;

	/* A u16 at 0xFFFF and a float64 at 0xFFFC end exactly at the last register. */
	const struct mh_modbus_point a[] = {H(0xFFFF, U16), I(0xFFFC, FLOAT64)};
	assert_int_equal(mh_modbus_plan_build(a, 2, 0, &plan), 0);
	assert_requests(
		&plan, (const struct req[]){REQ(HOLDING, 0xFFFF, 1), REQ(INPUT, 0xFFFC, 4)}, 2);
	mh_modbus_plan_deinit(&plan);

	/* A float32 at 0xFFFF would need register 0x10000. */
	const struct mh_modbus_point b[] = {H(0, U16), H(0xFFFF, FLOAT32)};
	memset(&plan, 0xA5, sizeof(plan));
	assert_int_equal(mh_modbus_plan_build(b, 2, 0, &plan), -EINVAL);
	assert_null(plan.requests);
	assert_null(plan.slots);
	assert_int_equal(plan.n_requests, 0);
	assert_int_equal(plan.n_slots, 0);

	const struct mh_modbus_point c[] = {I(0xFFFD, FLOAT64)};
	assert_int_equal(mh_modbus_plan_build(c, 1, 0, &plan), -EINVAL);
	assert_null(plan.requests);
}

/*
 * The header promises that points separated by at most @max_gap unused
 * registers share a request. A caller that means "bridge any gap" passes
 * UINT_MAX; adjacent points (gap 0) must still share one request.
 */
static void test_plan_huge_max_gap(void **state)
{
	const struct mh_modbus_point p[] = {H(0, U16), H(1, U16), H(3, U16)};
	struct mh_modbus_plan plan;

	assert_int_equal(mh_modbus_plan_build(p, 3, UINT_MAX, &plan), 0);
	size_t n = plan.n_requests;
	struct mh_modbus_request first = plan.requests[0];
	if (n != 1)
		dump_plan(&plan);
	mh_modbus_plan_deinit(&plan);
	assert_int_equal(n, 1);
	assert_int_equal(first.table, MH_MODBUS_HOLDING);
	assert_int_equal(first.address, 0);
	assert_int_equal(first.count, 4);
}

/* ---- the link's port: exclusive, and reported gone --------------------- */

static struct mh_serial_params pty_params(const struct pty *p, unsigned response_ms)
{
	return (struct mh_serial_params){
		.device = p->slave,
		.baud = 9600,
		.parity = MH_PARITY_NONE,
		.response_timeout_ms = response_ms,
		.byte_timeout_ms = 20,
	};
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct mh_modbus_request two_holding = {
	.table = MH_MODBUS_HOLDING,
	.address = 0,
	.count = 2,
};

static void test_link_port_is_exclusive(void **state)
{
	struct pty p;
	struct mh_serial_params params;
	struct mh_modbus_link *a = NULL, *b = NULL;
	struct mh_dlt645_link *d = NULL;

	(void)state;
	pty_open(&p);
	params = pty_params(&p, 100);
	assert_int_equal(mh_modbus_link_open(&params, &a), 0);
	assert_int_equal(mh_modbus_link_open(&params, &b), -EBUSY);
	assert_null(b);
	/* One lock for both protocols: a DL/T 645 bus on the same port is refused too. */
	assert_int_equal(mh_dlt645_link_open(&params, &d), -EBUSY);
	mh_modbus_link_free(a);
	assert_int_equal(mh_modbus_link_open(&params, &b), 0);
	mh_modbus_link_free(b);
	close(p.master);
}

/* A line with nobody on it is a timeout: the port is there. */
static void test_link_silent_line_is_a_timeout(void **state)
{
	struct pty p;
	struct mh_serial_params params;
	struct mh_modbus_link *link;
	uint16_t regs[2];
	uint8_t exc;

	(void)state;
	pty_open(&p);
	params = pty_params(&p, 200);
	assert_int_equal(mh_modbus_link_open(&params, &link), 0);
	assert_int_equal(mh_modbus_link_read(link, 1, &two_holding, regs, &exc), -ETIMEDOUT);
	mh_modbus_link_free(link);
	close(p.master);
}

/* The far end gone before the request (libmodbus fails the write with EIO). */
static void test_link_port_gone_before_request(void **state)
{
	struct pty p;
	struct mh_serial_params params;
	struct mh_modbus_link *link;
	uint16_t regs[2];
	uint8_t exc;

	(void)state;
	pty_open(&p);
	params = pty_params(&p, 300);
	assert_int_equal(mh_modbus_link_open(&params, &link), 0);
	close(p.master);
	assert_int_equal(mh_modbus_link_read(link, 1, &two_holding, regs, &exc), -ENODEV);
	mh_modbus_link_free(link);
}

/*
 * The far end gone while the link waits for the reply: libmodbus reads end
 * of file and says ECONNRESET. -ENODEV at once, not at the timeout.
 */
static void test_link_port_gone_while_waiting(void **state)
{
	struct pty p;
	struct mh_serial_params params;
	struct mh_modbus_link *link;
	uint16_t regs[2];
	uint8_t exc;
	int64_t t0;
	int status;
	pid_t pid;

	(void)state;
	pty_open(&p);
	params = pty_params(&p, 2000);
	assert_int_equal(mh_modbus_link_open(&params, &link), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Take the 8-byte request, then exit, closing the last descriptor of the master. */
		uint8_t buf[8];
		size_t got = 0;
		while (got < sizeof(buf)) {
			struct pollfd pfd = {.fd = p.master, .events = POLLIN};
			ssize_t r;
			if (poll(&pfd, 1, 3000) <= 0)
				_exit(2);
			r = read(p.master, buf + got, sizeof(buf) - got);
			if (r <= 0)
				_exit(2);
			got += (size_t)r;
		}
		_exit(0);
	}
	close(p.master);
	t0 = mono_ms();
	assert_int_equal(mh_modbus_link_read(link, 1, &two_holding, regs, &exc), -ENODEV);
	assert_true(mono_ms() - t0 < 1000);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	mh_modbus_link_free(link);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_widths),
		cmocka_unit_test(test_decode_u16),
		cmocka_unit_test(test_decode_s16),
		cmocka_unit_test(test_decode_u32),
		cmocka_unit_test(test_decode_s32),
		cmocka_unit_test(test_decode_u64),
		cmocka_unit_test(test_decode_s64),
		cmocka_unit_test(test_decode_float32),
		cmocka_unit_test(test_decode_float64),
		cmocka_unit_test(test_decode_bit),
		cmocka_unit_test(test_decode_scaled),
		cmocka_unit_test(test_decode_nan_inf),
		cmocka_unit_test(test_decode_not_finite_after_scaling),
		cmocka_unit_test(test_plan_adjacent_share_a_request),
		cmocka_unit_test(test_plan_tables_never_share),
		cmocka_unit_test(test_plan_gap_bridged_up_to_max_gap),
		cmocka_unit_test(test_plan_max_gap_zero),
		cmocka_unit_test(test_plan_register_limit),
		cmocka_unit_test(test_plan_bit_limit),
		cmocka_unit_test(test_plan_slots_follow_caller_order),
		cmocka_unit_test(test_plan_empty),
		cmocka_unit_test(test_plan_end_of_address_space),
		cmocka_unit_test(test_plan_huge_max_gap),
		cmocka_unit_test(test_link_port_is_exclusive),
		cmocka_unit_test(test_link_silent_line_is_a_timeout),
		cmocka_unit_test(test_link_port_gone_before_request),
		cmocka_unit_test(test_link_port_gone_while_waiting),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
