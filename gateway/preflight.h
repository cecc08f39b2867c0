/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What `--check-config` says besides the configuration's own errors: the
 * paths it names that this machine lacks right now. None of it is an
 * error: a USB adapter or a data partition may appear after the check (the
 * buses retry their device; the store is made at start if its parent
 * exists), so the check warns and still passes.
 */

#include "config.h"

/* Print one "warning: ..." line to stderr for each bus device and store path @cfg lacks. */
void mh_preflight_warn(const struct mh_config *cfg);
