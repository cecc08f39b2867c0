// SPDX-License-Identifier: MIT
#include "reading.h"

#include <stdlib.h>

struct mh_reading *mh_reading_new(size_t n_values)
{
	/* One block: the struct, then the values, then the flags. */
	struct mh_reading *r = calloc(1, sizeof(*r) + n_values * (sizeof(double) + sizeof(bool)));

	if (!r)
		return NULL;
	r->n_values = n_values;
	r->values = (double *)(r + 1);
	r->valid = (bool *)(r->values + n_values);
	return r;
}

void mh_reading_free(struct mh_reading *r)
{
	free(r);
}

const char *mh_quality_name(enum mh_quality q)
{
	switch (q) {
	case MH_QUALITY_GOOD:
		return "good";
	case MH_QUALITY_TIMEOUT:
		return "timeout";
	default:
		return "error";
	}
}
