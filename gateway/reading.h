/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One scheduled read of one meter. The loop allocates it as a job for the
 * meter's bus; the bus thread fills it in and hands the same object back.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

enum mh_quality {
	MH_QUALITY_GOOD,
	MH_QUALITY_TIMEOUT,
	MH_QUALITY_ERROR,
};

struct mh_reading {
	struct mh_queue_node node;
	size_t bus, meter;       /* indexes into the configuration */
	int64_t boundary_ms;     /* the schedule boundary this read belongs to */
	int64_t read_at_ms;      /* when the first frame went out */
	unsigned duration_ms;    /* first frame out to last reply in */
	unsigned frames;         /* frames sent, retries included */
	enum mh_quality quality;
	char error[160];         /* why, when quality is not good */
	size_t n_values;         /* the profile's points, in profile order */
	double *values;
	bool *valid;
};

/* A reading with room for @n_values points, zeroed; NULL when out of memory. */
struct mh_reading *mh_reading_new(size_t n_values);

/* Free a reading; NULL is a no-op. */
void mh_reading_free(struct mh_reading *r);

/* "good", "timeout" or "error". */
const char *mh_quality_name(enum mh_quality q);
