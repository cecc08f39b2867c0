// SPDX-License-Identifier: MIT
#include "modbus_regs.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const table_names[] = {
	[MH_MODBUS_COIL] = "coil",
	[MH_MODBUS_DISCRETE] = "discrete",
	[MH_MODBUS_HOLDING] = "holding",
	[MH_MODBUS_INPUT] = "input",
};

static const char *const type_names[] = {
	[MH_MODBUS_U16] = "u16",
	[MH_MODBUS_S16] = "s16",
	[MH_MODBUS_U32] = "u32",
	[MH_MODBUS_S32] = "s32",
	[MH_MODBUS_U64] = "u64",
	[MH_MODBUS_S64] = "s64",
	[MH_MODBUS_FLOAT32] = "float32",
	[MH_MODBUS_FLOAT64] = "float64",
	[MH_MODBUS_BIT] = "bit",
};

const char *mh_modbus_table_name(enum mh_modbus_table table)
{
	if ((unsigned)table >= sizeof(table_names) / sizeof(table_names[0]))
		return NULL;
	return table_names[table];
}

const char *mh_modbus_type_name(enum mh_modbus_type type)
{
	if ((unsigned)type >= sizeof(type_names) / sizeof(type_names[0]))
		return NULL;
	return type_names[type];
}

unsigned mh_modbus_type_width(enum mh_modbus_type type)
{
	switch (type) {
	case MH_MODBUS_U32:
	case MH_MODBUS_S32:
	case MH_MODBUS_FLOAT32:
		return 2;
	case MH_MODBUS_U64:
	case MH_MODBUS_S64:
	case MH_MODBUS_FLOAT64:
		return 4;
	default:
		return 1;
	}
}

int mh_modbus_table_is_bits(enum mh_modbus_table table)
{
	return table == MH_MODBUS_COIL || table == MH_MODBUS_DISCRETE;
}

/* Assemble the registers into one unsigned integer, most significant word first. */
static uint64_t assemble(const uint16_t *regs, unsigned width, enum mh_modbus_word_order order)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < width; i++) {
		unsigned idx = order == MH_MODBUS_WORDS_BIG ? i : width - 1 - i;
		v = (v << 16) | regs[idx];
	}
	return v;
}

/*
 * Drop the binary noise scaling adds (2301 x 0.1 = 230.10000000000002): keep
 * the digits the register really carries. An integer times 0.001 has three
 * decimals; a float32 has about seven significant digits, a float64 fifteen.
 */
static double round_to_source(double v, const struct mh_modbus_point *point)
{
	int digits;

	if (v == 0)
		return 0;
	switch (point->type) {
	case MH_MODBUS_FLOAT32:
	case MH_MODBUS_FLOAT64: {
		int sig = point->type == MH_MODBUS_FLOAT32 ? 7 : 15;
		digits = sig - 1 - (int)floor(log10(fabs(v)));
		break;
	}
	default:
		for (digits = 0; digits < 10; digits++) {
			double s = point->scale * pow(10, digits);
			if (fabs(s - round(s)) < 1e-9 * fabs(s))
				break;
		}
	}
	if (digits <= 0 || digits > 15)
		return v;
	double p = pow(10, digits);
	return round(v * p) / p;
}

/*
 * Two's complement of the low @bits of @raw, by arithmetic: converting an
 * out-of-range unsigned value to a signed type is implementation-defined.
 */
static double signed_value(uint64_t raw, unsigned bits)
{
	uint64_t sign = (uint64_t)1 << (bits - 1);
	uint64_t mask = bits == 64 ? UINT64_MAX : (sign << 1) - 1;

	raw &= mask;
	if (!(raw & sign))
		return (double)raw;
	/* The magnitude of a negative value, 1 .. 2^(bits-1), fits in uint64_t. */
	return -(double)(((~raw) & mask) + 1);
}

int mh_modbus_decode(const struct mh_modbus_point *point, const uint16_t *regs, double *value)
{
	unsigned width = mh_modbus_type_width(point->type);
	uint64_t raw = assemble(regs, width, point->word_order);
	double v;

	switch (point->type) {
	case MH_MODBUS_BIT:
		v = regs[0] ? 1 : 0;
		break;
	case MH_MODBUS_U16:
	case MH_MODBUS_U32:
	case MH_MODBUS_U64:
		v = (double)raw;
		break;
	case MH_MODBUS_S16:
		v = signed_value(raw, 16);
		break;
	case MH_MODBUS_S32:
		v = signed_value(raw, 32);
		break;
	case MH_MODBUS_S64:
		v = signed_value(raw, 64);
		break;
	case MH_MODBUS_FLOAT32: {
		uint32_t bits = (uint32_t)raw;
		float f;
		memcpy(&f, &bits, sizeof(f));
		v = f;
		break;
	}
	case MH_MODBUS_FLOAT64:
		memcpy(&v, &raw, sizeof(v));
		break;
	default:
		return -EINVAL;
	}
	if (!isfinite(v))
		return -ENODATA;
	/*
	 * A finite register can still leave the range of a double once scaled
	 * (1e308 x 10), and a NaN scale poisons any value. Such a result is not
	 * a reading, and rounding it would convert infinity to int.
	 */
	v *= point->scale;
	if (!isfinite(v))
		return -ERANGE;
	v = round_to_source(v, point);
	if (!isfinite(v))
		return -ERANGE;
	*value = v;
	return 0;
}

struct sorted_point {
	size_t index;
	enum mh_modbus_table table;
	uint32_t first, end; /* [first, end) */
};

static int cmp_sorted(const void *a, const void *b)
{
	const struct sorted_point *x = a, *y = b;

	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

int mh_modbus_plan_build(const struct mh_modbus_point *points, size_t n_points,
	unsigned max_gap, struct mh_modbus_plan *plan)
{
	struct sorted_point *sorted = NULL;
	int rc = -ENOMEM;

	memset(plan, 0, sizeof(*plan));
	if (n_points == 0)
		return 0;
	sorted = calloc(n_points, sizeof(*sorted));
	plan->slots = calloc(n_points, sizeof(*plan->slots));
	/* At most one request per point. */
	plan->requests = calloc(n_points, sizeof(*plan->requests));
	if (!sorted || !plan->slots || !plan->requests)
		goto fail;
	plan->n_slots = n_points;

	for (size_t i = 0; i < n_points; i++) {
		uint32_t width = mh_modbus_table_is_bits(points[i].table)
					 ? 1
					 : mh_modbus_type_width(points[i].type);
		sorted[i] = (struct sorted_point){
			.index = i,
			.table = points[i].table,
			.first = points[i].address,
			.end = (uint32_t)points[i].address + width,
		};
		if (sorted[i].end > 0x10000) {
			rc = -EINVAL;
			goto fail;
		}
	}
	qsort(sorted, n_points, sizeof(*sorted), cmp_sorted);

	struct mh_modbus_request *cur = NULL;
	for (size_t i = 0; i < n_points; i++) {
		const struct sorted_point *sp = &sorted[i];
		uint32_t limit = mh_modbus_table_is_bits(sp->table) ? MH_MODBUS_MAX_BITS
								    : MH_MODBUS_MAX_REGS;

		if (cur && cur->table == sp->table) {
			uint32_t cur_end = (uint32_t)cur->address + cur->count;
			uint32_t new_end = sp->end > cur_end ? sp->end : cur_end;
			/* Overlapping points (config rejects them) still land in one request. */
			if ((uint64_t)sp->first <= (uint64_t)cur_end + max_gap &&
				new_end - cur->address <= limit) {
				cur->count = (uint16_t)(new_end - cur->address);
				goto place;
			}
		}
		cur = &plan->requests[plan->n_requests++];
		*cur = (struct mh_modbus_request){
			.table = sp->table,
			.address = (uint16_t)sp->first,
			.count = (uint16_t)(sp->end - sp->first),
		};
place:
		plan->slots[sp->index] = (struct mh_modbus_slot){
			.request = (uint16_t)(plan->n_requests - 1),
			.offset = (uint16_t)(sp->first - cur->address),
		};
	}
	free(sorted);
	return 0;

fail:
	free(sorted);
	mh_modbus_plan_deinit(plan);
	return rc;
}

void mh_modbus_plan_deinit(struct mh_modbus_plan *plan)
{
	free(plan->requests);
	free(plan->slots);
	memset(plan, 0, sizeof(*plan));
}
