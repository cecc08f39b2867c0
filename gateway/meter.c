// SPDX-License-Identifier: MIT
#include "meter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void meter_free(struct mh_meter *m)
{
	if (m)
		free(m->table);
	free(m);
}

static size_t count_meters(const struct mh_config *cfg)
{
	size_t n = 0;

	for (size_t b = 0; b < cfg->n_buses; b++)
		n += cfg->buses[b].n_meters;
	return n;
}

/* Point @m at meter @i of bus @b of @cfg. */
static void place(struct mh_meter *m, const struct mh_config *cfg, size_t b, size_t i)
{
	m->cfg = &cfg->buses[b].meters[i];
	m->bus_cfg = &cfg->buses[b];
	m->bus_index = b;
	m->slot = i;
}

int mh_meter_set_init(struct mh_meter_set *set, const struct mh_config *cfg)
{
	size_t n = count_meters(cfg), k = 0;

	set->n = 0;
	set->meters = calloc(n + 1, sizeof(*set->meters));
	if (!set->meters)
		return -ENOMEM;
	for (size_t b = 0; b < cfg->n_buses; b++) {
		for (size_t i = 0; i < cfg->buses[b].n_meters; i++, k++) {
			struct mh_meter *m = calloc(1, sizeof(*m));
			if (!m) {
				mh_meter_set_deinit(set);
				return -ENOMEM;
			}
			place(m, cfg, b, i);
			set->meters[set->n++] = m;
		}
	}
	return 0;
}

struct mh_meter *mh_meter_find(const struct mh_meter_set *set, const char *id)
{
	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(set->meters[i]->cfg->id, id))
			return set->meters[i];
	return NULL;
}

int mh_meter_set_rebind(struct mh_meter_set *set, const struct mh_config *fresh,
	void (*gone)(void *ud, struct mh_meter *m), void *ud)
{
	size_t n = count_meters(fresh), k = 0;
	struct mh_meter **next = calloc(n + 1, sizeof(*next));
	bool *kept = calloc(set->n + 1, sizeof(*kept));

	if (!next || !kept)
		goto nomem;
	/* First every object, so that running out of memory changes nothing. */
	for (size_t b = 0; b < fresh->n_buses; b++) {
		for (size_t i = 0; i < fresh->buses[b].n_meters; i++, k++) {
			const char *id = fresh->buses[b].meters[i].id;
			for (size_t j = 0; j < set->n && !next[k]; j++)
				if (!kept[j] && !strcmp(set->meters[j]->cfg->id, id)) {
					kept[j] = true;
					next[k] = set->meters[j];
				}
			if (!next[k] && !(next[k] = calloc(1, sizeof(*next[k])))) {
				for (size_t j = 0; j < k; j++) {
					bool old = false;
					for (size_t o = 0; o < set->n; o++)
						old |= set->meters[o] == next[j];
					if (!old)
						free(next[j]);
				}
				goto nomem;
			}
		}
	}
	k = 0;
	for (size_t b = 0; b < fresh->n_buses; b++)
		for (size_t i = 0; i < fresh->buses[b].n_meters; i++)
			place(next[k++], fresh, b, i);
	for (size_t j = 0; j < set->n; j++) {
		if (kept[j])
			continue;
		if (gone)
			gone(ud, set->meters[j]);
		meter_free(set->meters[j]);
	}
	free(kept);
	free(set->meters);
	set->meters = next;
	set->n = n;
	return 0;
nomem:
	free(next);
	free(kept);
	return -ENOMEM;
}

bool mh_meter_set_reading(const struct mh_meter_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->meters[i]->busy)
			return true;
	return false;
}

void mh_meter_set_deinit(struct mh_meter_set *set)
{
	for (size_t i = 0; set->meters && i < set->n; i++)
		meter_free(set->meters[i]);
	free(set->meters);
	set->meters = NULL;
	set->n = 0;
}
