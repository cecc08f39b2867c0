/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One loaded configuration's memory: many small allocations that all go at
 * once, when the configuration is freed. Nothing in it is freed alone.
 */

#include <stddef.h>

struct mh_arena;

/*
 * @size zeroed bytes from *@arena (NULL starts a new one), aligned for any
 * type. Returns NULL when memory runs out; the arena stays usable.
 */
void *mh_arena_alloc(struct mh_arena **arena, size_t size);

/* A copy of @s in *@arena, or NULL when memory runs out. */
char *mh_arena_strdup(struct mh_arena **arena, const char *s);

/* Release every allocation of @arena; NULL is a no-op. */
void mh_arena_free(struct mh_arena *arena);
