/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Built-in meter profiles: the YAML files in config/profiles/, compiled into
 * the binary so a gateway needs no data files besides its own config.
 */

#include <stddef.h>

struct mh_builtin_profile {
	const char *file; /* base name of the source file, for error messages */
	const char *text; /* the file's YAML, NUL-terminated */
};

extern const struct mh_builtin_profile mh_builtin_profiles[];
extern const size_t mh_builtin_profile_count;
