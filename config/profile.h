/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The rules of a profile's points, once its keys are parsed: a profile is
 * either DL/T 645 (points named by data identifier) or Modbus (points by
 * table, address and type), Modbus points get their defaults and may not
 * overlap, names are unique, and a DL/T 645 block identifier is replaced by
 * the identifiers it carries so the planner can regroup them.
 */

#include "arena.h"
#include "config.h"
#include "yamldoc.h"

/*
 * Check @profile and complete it in place (new point arrays come from
 * *@arena). Errors go to @doc, naming "profiles.NAME.points[i]". Returns 0,
 * or -ENOMEM when the block expansion could not be allocated.
 */
int mh_profile_validate(struct mh_yamldoc *doc, struct mh_arena **arena,
	struct mh_profile *profile);
