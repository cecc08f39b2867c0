// SPDX-License-Identifier: MIT
/*
 * Modbus register decoding: each 14-byte record of the input is a point
 * (type, word order, table, a scale that is either one of those meters use
 * or any 64 bits) and four registers.
 *
 * Properties: 0 means a finite value; an error leaves the value alone and
 * is one of those documented; a type that is not a type is -EINVAL; the
 * word order only changes which register is which; an integer at scale 1
 * is exact; a float register that is NaN or infinite is -ENODATA.
 */
#include <errno.h>
#include <math.h>

#include "fuzz.h"
#include "modbus_regs.h"

static const double scales[] = {
	1, 0.1, 0.01, 0.001, 0.0001, 10, 100, 1000, -1, -0.1, 0, 1e-300, 1e300, 0.5, 3.0 / 7,
};

static double take_scale(struct fuzz_input *in, uint8_t sel)
{
	uint64_t bits;
	double s;

	if (sel < 0xC0)
		return scales[sel % (sizeof(scales) / sizeof(scales[0]))];
	bits = fuzz_u64(in);
	memcpy(&s, &bits, sizeof(s));
	return s;
}

static int decode(const struct mh_modbus_point *p, const uint16_t *regs, double *v)
{
	static const double sentinel = -12345.678;
	int r;

	*v = sentinel;
	r = mh_modbus_decode(p, regs, v);
	if (r == 0) {
		FUZZ_CHECK(isfinite(*v));
	} else {
		FUZZ_CHECK(r == -ENODATA || r == -ERANGE || r == -EINVAL);
		FUZZ_CHECK(*v == sentinel);
	}
	return r;
}

static void check_point(struct fuzz_input *in)
{
	uint8_t t = fuzz_u8(in), o = fuzz_u8(in), sel = fuzz_u8(in);
	struct mh_modbus_point p = {
		.table = (enum mh_modbus_table)(t >> 4 & 3),
		.address = 0,
		/* Mostly real types, sometimes one past the end or a wild value. */
		.type = (enum mh_modbus_type)(t & 0x0F),
		.word_order = (enum mh_modbus_word_order)(o % 3),
	};
	uint16_t regs[4], rev[4];
	unsigned width = mh_modbus_type_width(p.type);
	double v, w;
	int r;

	p.scale = take_scale(in, sel);
	for (int i = 0; i < 4; i++)
		regs[i] = fuzz_u16(in);
	r = decode(&p, regs, &v);
	if (mh_modbus_type_name(p.type) == NULL) {
		FUZZ_CHECK(r == -EINVAL);
		return;
	}
	FUZZ_CHECK(r != -EINVAL);
	FUZZ_CHECK(width == 1 || width == 2 || width == 4);

	/* Little word order on reversed registers is big word order on the originals. */
	if (p.word_order == MH_MODBUS_WORDS_BIG || p.word_order == MH_MODBUS_WORDS_LITTLE) {
		struct mh_modbus_point q = p;

		for (unsigned i = 0; i < width; i++)
			rev[i] = regs[width - 1 - i];
		q.word_order = p.word_order == MH_MODBUS_WORDS_BIG ? MH_MODBUS_WORDS_LITTLE
								    : MH_MODBUS_WORDS_BIG;
		FUZZ_CHECK(decode(&q, rev, &w) == r);
		if (r == 0)
			FUZZ_CHECK(memcmp(&v, &w, sizeof(v)) == 0);
	}

	/* Integers at scale 1 are exact (u64 within what a double rounds to). */
	if (p.scale == 1 && p.word_order == MH_MODBUS_WORDS_BIG) {
		uint64_t raw = 0;

		for (unsigned i = 0; i < width; i++)
			raw = raw << 16 | regs[i];
		switch (p.type) {
		case MH_MODBUS_U16:
		case MH_MODBUS_U32:
		case MH_MODBUS_U64:
			FUZZ_CHECK(r == 0 && v == (double)raw);
			break;
		case MH_MODBUS_S16:
			FUZZ_CHECK(r == 0 && v == (double)(int16_t)raw);
			break;
		case MH_MODBUS_S32:
			FUZZ_CHECK(r == 0 && v == (double)(int32_t)raw);
			break;
		case MH_MODBUS_S64:
			FUZZ_CHECK(r == 0 && v == (double)(int64_t)raw);
			break;
		case MH_MODBUS_BIT:
			FUZZ_CHECK(r == 0 && v == (regs[0] ? 1 : 0));
			break;
		case MH_MODBUS_FLOAT32: {
			uint32_t b32 = (uint32_t)raw;
			float f;

			memcpy(&f, &b32, sizeof(f));
			FUZZ_CHECK(isfinite(f) ? r == 0 : r == -ENODATA);
			/* Rounded to the seven digits a float carries, never further off. */
			if (r == 0)
				FUZZ_CHECK(fabs(v - f) <= 1e-6 * fabs((double)f));
			break;
		}
		case MH_MODBUS_FLOAT64: {
			double d;

			memcpy(&d, &raw, sizeof(d));
			FUZZ_CHECK(isfinite(d) ? r == 0 : r == -ENODATA);
			if (r == 0)
				FUZZ_CHECK(fabs(v - d) <= 1e-14 * fabs(d));
			break;
		}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};

	while (!fuzz_empty(&in))
		check_point(&in);
	return 0;
}
