// SPDX-License-Identifier: MIT
#include "meter.h"

#include <errno.h>
#include <stdlib.h>

int mh_meter_set_init(struct mh_meter_set *set, const struct mh_config *cfg)
{
	size_t n = 0, k = 0;

	for (size_t b = 0; b < cfg->n_buses; b++)
		n += cfg->buses[b].n_meters;
	set->meters = calloc(n ? n : 1, sizeof(*set->meters));
	set->n = n;
	if (!set->meters)
		return -ENOMEM;
	for (size_t b = 0; b < cfg->n_buses; b++) {
		for (size_t i = 0; i < cfg->buses[b].n_meters; i++, k++) {
			struct mh_meter *m = &set->meters[k];
			m->cfg = &cfg->buses[b].meters[i];
			m->bus_cfg = &cfg->buses[b];
			m->bus_index = b;
			m->slot = i;
		}
	}
	return 0;
}

bool mh_meter_set_reading(const struct mh_meter_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->meters[i].busy)
			return true;
	return false;
}

void mh_meter_set_deinit(struct mh_meter_set *set)
{
	free(set->meters);
	set->meters = NULL;
	set->n = 0;
}
