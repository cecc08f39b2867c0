// SPDX-License-Identifier: MIT
/*
 * Modbus request planning: the first two input bytes are @max_gap, then
 * each 4-byte record is a point (table, type, address).
 *
 * Properties: a point past the address space is -EINVAL and only then; a
 * plan has one slot per point, whose request is of the point's table and
 * holds all of the point; every request is within the protocol's limits
 * and the address space, and there are never more requests than points.
 * When no two points of a table overlap, each point lies in exactly one
 * request, and with @max_gap 0 no request asks for a register no point
 * names.
 */
#include <errno.h>

#include "fuzz.h"
#include "modbus_regs.h"

#define MAX_POINTS 512

static unsigned width_of(const struct mh_modbus_point *p)
{
	return mh_modbus_table_is_bits(p->table) ? 1 : mh_modbus_type_width(p->type);
}

static bool overlaps(uint32_t a0, uint32_t a1, uint32_t b0, uint32_t b1)
{
	return a0 < b1 && b0 < a1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mh_modbus_point points[MAX_POINTS];
	struct fuzz_input in = {data, size};
	struct mh_modbus_plan plan;
	unsigned max_gap;
	size_t n = 0;
	bool past_end = false, disjoint = true;
	int r;

	max_gap = fuzz_u16(&in);
	/* Mostly the small gaps a config would use. */
	if (max_gap & 0x8000)
		max_gap &= 0x7F;
	while (n < MAX_POINTS && !fuzz_empty(&in)) {
		uint8_t t = fuzz_u8(&in);
		struct mh_modbus_point *p = &points[n++];

		p->table = (enum mh_modbus_table)(t & 3);
		p->type = (enum mh_modbus_type)((t >> 2) % 9);
		p->word_order = MH_MODBUS_WORDS_BIG;
		p->scale = 1;
		/* Addresses cluster, as in a real register map, unless the flag asks for any. */
		p->address = t & 0x80 ? fuzz_u16(&in) : (uint16_t)(fuzz_u8(&in) * 2 + (t >> 6 & 1));
		if ((uint32_t)p->address + width_of(p) > 0x10000)
			past_end = true;
	}

	r = mh_modbus_plan_build(points, n, max_gap, &plan);
	if (past_end) {
		FUZZ_CHECK(r == -EINVAL);
		FUZZ_CHECK(plan.requests == NULL && plan.slots == NULL && plan.n_requests == 0);
		return 0;
	}
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(plan.n_slots == n && plan.n_requests <= n);

	for (size_t i = 0; i < plan.n_requests; i++) {
		const struct mh_modbus_request *q = &plan.requests[i];
		uint32_t limit = mh_modbus_table_is_bits(q->table) ? MH_MODBUS_MAX_BITS
								   : MH_MODBUS_MAX_REGS;

		FUZZ_CHECK(q->count >= 1 && q->count <= limit);
		FUZZ_CHECK((uint32_t)q->address + q->count <= 0x10000);
	}
	for (size_t i = 0; i < n && disjoint; i++)
		for (size_t j = i + 1; j < n && disjoint; j++)
			if (points[i].table == points[j].table &&
				overlaps(points[i].address, points[i].address + width_of(&points[i]),
					points[j].address, points[j].address + width_of(&points[j])))
				disjoint = false;

	for (size_t i = 0; i < n; i++) {
		const struct mh_modbus_point *p = &points[i];
		const struct mh_modbus_slot *s = &plan.slots[i];
		const struct mh_modbus_request *q;
		uint32_t first = p->address, end = first + width_of(p);

		FUZZ_CHECK(s->request < plan.n_requests);
		q = &plan.requests[s->request];
		FUZZ_CHECK(q->table == p->table);
		FUZZ_CHECK((uint32_t)q->address + s->offset == first);
		FUZZ_CHECK((uint32_t)s->offset + width_of(p) <= q->count);
		if (!disjoint)
			continue;
		for (size_t k = 0; k < plan.n_requests; k++) {
			const struct mh_modbus_request *o = &plan.requests[k];

			if (k == s->request || o->table != p->table)
				continue;
			FUZZ_CHECK(!overlaps(first, end, o->address, (uint32_t)o->address + o->count));
		}
	}
	if (max_gap == 0) {
		/* One bit per register of each table: which ones some point names. */
		static uint8_t named[4][0x10000 / 8];

		memset(named, 0, sizeof(named));
		for (size_t i = 0; i < n; i++)
			for (uint32_t a = points[i].address; a < points[i].address + width_of(&points[i]);
				a++)
				named[points[i].table][a / 8] |= (uint8_t)(1u << (a % 8));
		for (size_t k = 0; k < plan.n_requests; k++) {
			const struct mh_modbus_request *q = &plan.requests[k];

			for (uint32_t a = q->address; a < (uint32_t)q->address + q->count; a++)
				FUZZ_CHECK(named[q->table][a / 8] & (1u << (a % 8)));
		}
	}
	mh_modbus_plan_deinit(&plan);
	FUZZ_CHECK(plan.requests == NULL && plan.n_requests == 0);
	return 0;
}
