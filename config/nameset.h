/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A set of names, each with the first thing that carried it: finds the
 * meter that first used an id or an address in one pass, so N meters that
 * share one give N - 1 errors against the first, in linear time.
 */

#include <stddef.h>

struct mh_nameset {
	struct mh_nameset_slot {
		const char *name;
		const void *first;
	} *slots;
	size_t cap, n, max;
};

/* An empty set for up to @max names (the caller knows how many it will add). Returns 0 or -ENOMEM. */
int mh_nameset_init(struct mh_nameset *set, size_t max);

/*
 * Add @name, which must outlive the set, carried by @first. Returns what
 * first carried @name when it is already in the set (and leaves the set
 * unchanged), else NULL.
 */
const void *mh_nameset_add(struct mh_nameset *set, const char *name, const void *first);

/* Release the set's memory; the names are the caller's. */
void mh_nameset_deinit(struct mh_nameset *set);
