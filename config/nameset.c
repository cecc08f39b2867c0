// SPDX-License-Identifier: MIT
#include "nameset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int mh_nameset_init(struct mh_nameset *set, size_t max)
{
	size_t cap = 8;

	/* At most half full, so a probe ends soon at an empty slot. */
	while (cap < 2 * max) {
		if (cap > SIZE_MAX / 4 / sizeof(*set->slots))
			return -ENOMEM;
		cap *= 2;
	}
	set->slots = calloc(cap, sizeof(*set->slots));
	if (!set->slots)
		return -ENOMEM;
	set->cap = cap;
	set->n = 0;
	set->max = max;
	return 0;
}

/* FNV-1a: short keys, no adversary to speak of beyond a long file. */
static size_t hash(const char *name)
{
	uint64_t h = 14695981039346656037ull;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)h;
}

const void *mh_nameset_add(struct mh_nameset *set, const char *name, const void *first)
{
	size_t mask = set->cap - 1;

	for (size_t i = hash(name) & mask;; i = (i + 1) & mask) {
		struct mh_nameset_slot *slot = &set->slots[i];

		if (!slot->name) {
			mh_require(set->n < set->max);
			slot->name = name;
			slot->first = first;
			set->n++;
			return NULL;
		}
		if (!strcmp(slot->name, name))
			return slot->first;
	}
}

void mh_nameset_deinit(struct mh_nameset *set)
{
	free(set->slots);
	set->slots = NULL;
	set->cap = set->n = set->max = 0;
}
