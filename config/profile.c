// SPDX-License-Identifier: MIT
#include "profile.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlt645_di.h"
#include "log.h"
#include "nameset.h"

/* A Modbus point: table, address and type make sense together. Returns false when unusable. */
static bool check_modbus_point(struct mh_yamldoc *doc, struct mh_point *p, const char *path)
{
	struct mh_modbus_point *mp = &p->modbus;
	bool ok = true;

	if (!p->name) {
		mh_yamldoc_error_at(doc, &p->pos, path, "missing required key \"name\"");
		ok = false;
	}
	if ((int)mp->table == -1)
		mh_yamldoc_error_at(doc, &p->pos, path, "missing required key \"table\"");
	if (p->raw_address == UINT_MAX && (int)mp->table >= 0)
		mh_yamldoc_error_at(doc, &p->pos, path, "missing required key \"address\"");
	if ((int)mp->table < 0 || p->raw_address > 0xffff)
		return false;
	mp->address = (uint16_t)p->raw_address;
	if ((int)mp->word_order == -1)
		mp->word_order = MH_MODBUS_WORDS_BIG;
	if (isnan(mp->scale))
		mp->scale = 1.0;
	if (mh_modbus_table_is_bits(mp->table)) {
		if ((int)mp->type >= 0 && mp->type != MH_MODBUS_BIT)
			mh_yamldoc_error_at(doc, &p->pos, path,
				"a %s point is one bit: leave \"type\" out or write bit",
				mh_modbus_table_name(mp->table));
		mp->type = MH_MODBUS_BIT;
	} else if ((int)mp->type < 0) {
		if ((int)mp->type == -1)
			mh_yamldoc_error_at(doc, &p->pos, path, "missing required key \"type\"");
		return false;
	} else if (mp->type == MH_MODBUS_BIT) {
		mh_yamldoc_error_at(doc, &p->pos, path,
			"type bit belongs to coil and discrete points; %s registers are 16 bits",
			mh_modbus_table_name(mp->table));
		return false;
	}
	if ((uint32_t)mp->address + mh_modbus_type_width(mp->type) > 0x10000) {
		mh_yamldoc_error_at(doc, &p->pos, path, "a %s at 0x%04X runs past register 0xFFFF",
			mh_modbus_type_name(mp->type), mp->address);
		return false;
	}
	return ok;
}

/* A DL/T 645 point: the identifier says everything; Modbus keys do not belong. */
static bool check_dlt645_point(struct mh_yamldoc *doc, struct mh_point *p, const char *path)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(p->di);

	if (!info || !info->names)
		return false; /* reported where the identifier was parsed */
	if ((int)p->modbus.table != -1 || p->raw_address != UINT_MAX ||
		(int)p->modbus.type != -1 || (int)p->modbus.word_order != -1 ||
		!isnan(p->modbus.scale)) {
		mh_yamldoc_error_at(doc, &p->pos, path,
			"a DL/T 645 point takes only di (and name): the identifier fixes its format and scale");
		return false;
	}
	if (info->is_block && p->name) {
		mh_yamldoc_error_at(doc, &p->pos, path,
			"block %08X gives several values, each under its standard name; leave out name",
			p->di);
		return false;
	}
	if (!p->name)
		p->name = info->names[0];
	return true;
}

/* Replace each FF block point by the identifiers it carries, so planning can regroup them. */
static int expand_blocks(struct mh_arena **arena, struct mh_profile *profile)
{
	uint32_t members[MH_DLT645_DI_MAX_TARIFF_ELEMENTS];
	size_t n = 0, k = 0;
	struct mh_point *points;

	for (size_t i = 0; i < profile->n_points; i++) {
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(profile->points[i].di);
		n += info && info->is_block ? mh_dlt645_di_block_members(profile->points[i].di,
							members, MH_DLT645_DI_MAX_TARIFF_ELEMENTS)
					    : 1;
	}
	if (n == profile->n_points)
		return 0;
	points = mh_arena_alloc(arena, n * sizeof(*points));
	if (!points)
		return -ENOMEM;
	for (size_t i = 0; i < profile->n_points; i++) {
		const struct mh_point *p = &profile->points[i];
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(p->di);
		size_t m;

		if (!info || !info->is_block) {
			points[k++] = *p;
			continue;
		}
		m = mh_dlt645_di_block_members(p->di, members, MH_DLT645_DI_MAX_TARIFF_ELEMENTS);
		for (size_t j = 0; j < m; j++) {
			points[k] = *p;
			points[k].di = members[j];
			points[k].name = mh_dlt645_di_lookup(members[j])->names[0];
			k++;
		}
	}
	profile->points = points;
	profile->n_points = k;
	return 0;
}

/*
 * Names are unique, and Modbus points own their registers alone. Each clash
 * is reported once, against the first point it clashes with, so N copies of
 * a line give N - 1 errors. Registers are looked up in a map of owners per
 * table, so a long profile costs no more than a short one per point.
 */
static int check_unique(struct mh_yamldoc *doc, const struct mh_profile *profile)
{
	/* Index + 1 of the first point on each register of each table; 0 is free. */
	uint32_t *owner[4] = { NULL };
	struct mh_nameset names;
	char path[128];
	int rc = 0;

	if (mh_nameset_init(&names, profile->n_points) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < profile->n_points; i++) {
		const struct mh_point *p = &profile->points[i];
		const struct mh_point *twin = mh_nameset_add(&names, p->name, p);
		uint32_t first = 0;
		unsigned a0, a1;
		uint32_t *regs;

		snprintf(path, sizeof(path), "profiles.%s.points[%zu]", profile->name, i);
		if (twin)
			mh_yamldoc_error_at(doc, &p->pos, path,
				"point \"%s\" is named twice (first at line %u)", p->name,
				twin->pos.line);
		if (profile->protocol != MH_PROTO_MODBUS)
			continue;
		mh_require((size_t)p->modbus.table < sizeof(owner) / sizeof(owner[0]));
		regs = owner[p->modbus.table];
		if (!regs) {
			regs = owner[p->modbus.table] = calloc(0x10000, sizeof(*regs));
			if (!regs) {
				rc = -ENOMEM;
				break;
			}
		}
		a0 = p->modbus.address;
		a1 = a0 + mh_modbus_type_width(p->modbus.type);
		for (unsigned r = a0; r < a1; r++) {
			if (regs[r] && (!first || regs[r] < first))
				first = regs[r];
			if (!regs[r])
				regs[r] = (uint32_t)i + 1;
		}
		if (first) {
			const struct mh_point *q = &profile->points[first - 1];
			unsigned b0 = q->modbus.address,
				 b1 = b0 + mh_modbus_type_width(q->modbus.type);

			mh_yamldoc_error_at(doc, &p->pos, path,
				"\"%s\" (%s 0x%04X-0x%04X) overlaps \"%s\" (0x%04X-0x%04X, line %u)",
				p->name, mh_modbus_table_name(p->modbus.table), a0, a1 - 1, q->name,
				b0, b1 - 1, q->pos.line);
		}
	}
	for (size_t t = 0; t < sizeof(owner) / sizeof(owner[0]); t++)
		free(owner[t]);
	mh_nameset_deinit(&names);
	return rc;
}

int mh_profile_validate(struct mh_yamldoc *doc, struct mh_arena **arena,
	struct mh_profile *profile)
{
	char path[128];
	bool usable = true;

	profile->protocol = MH_PROTO_MODBUS;
	for (size_t i = 0; i < profile->n_points; i++)
		if (profile->points[i].has_di)
			profile->protocol = MH_PROTO_DLT645;

	for (size_t i = 0; i < profile->n_points; i++) {
		struct mh_point *p = &profile->points[i];

		snprintf(path, sizeof(path), "profiles.%s.points[%zu]", profile->name, i);
		if (p->has_di != (profile->protocol == MH_PROTO_DLT645)) {
			mh_yamldoc_error_at(doc, &p->pos, path,
				"a profile is either DL/T 645 (points with di) or Modbus (points with table and address), not both");
			usable = false;
		} else if (profile->protocol == MH_PROTO_DLT645) {
			usable &= check_dlt645_point(doc, p, path);
		} else {
			usable &= check_modbus_point(doc, p, path);
		}
	}
	if (!usable)
		return 0;
	if (profile->protocol == MH_PROTO_DLT645 && expand_blocks(arena, profile) < 0)
		return -ENOMEM;

	return check_unique(doc, profile);
}
