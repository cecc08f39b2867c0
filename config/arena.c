// SPDX-License-Identifier: MIT
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A chain of blocks, the newest first; a block is filled front to back. */
struct mh_arena {
	struct mh_arena *next;
	size_t used, cap;
	max_align_t data[];
};

/* Most configurations fit in a block or two; larger requests get a block of their own. */
#define BLOCK_SIZE 16384

void *mh_arena_alloc(struct mh_arena **arena, size_t size)
{
	struct mh_arena *a = *arena;
	void *p;

	if (!size)
		size = 1;
	if (size > SIZE_MAX - sizeof(max_align_t) - sizeof(*a))
		return NULL;
	size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!a || a->cap - a->used < size) {
		size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;

		a = malloc(sizeof(*a) + cap);
		if (!a)
			return NULL;
		a->used = 0;
		a->cap = cap;
		if (cap > BLOCK_SIZE && *arena) {
			/* Behind the current block, which still has room for small requests. */
			a->next = (*arena)->next;
			(*arena)->next = a;
			a->used = size;
			return memset(a->data, 0, size);
		}
		a->next = *arena;
		*arena = a;
	}
	p = (char *)a->data + a->used;
	a->used += size;
	return memset(p, 0, size);
}

char *mh_arena_strdup(struct mh_arena **arena, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = mh_arena_alloc(arena, n);

	if (p)
		memcpy(p, s, n);
	return p;
}

void mh_arena_free(struct mh_arena *arena)
{
	while (arena) {
		struct mh_arena *next = arena->next;

		free(arena);
		arena = next;
	}
}
