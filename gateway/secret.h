/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Memory for secrets (the command key, the broker password): pages of
 * their own, left out of core dumps (MADV_DONTDUMP) and kept out of swap
 * when the system allows (mlock), wiped when freed.
 */

#include <stddef.h>

/* @len zeroed bytes of secret memory; NULL without memory. */
void *mh_secret_alloc(size_t len);

/* Wipe and release what mh_secret_alloc(@len) gave; NULL is a no-op. */
void mh_secret_free(void *p, size_t len);
