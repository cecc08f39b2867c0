/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Commissioning (meterhub --probe): read every configured meter once, now,
 * with the reader the daemon uses, and print what each said. No bus thread,
 * broker or store: the store directory is never opened or made. Each port
 * is taken with the same lock as the daemon's, so a port a running daemon
 * holds is reported for its meters (naming the holder) while the other
 * buses are still probed.
 */

#include "config.h"

/*
 * Probe the meter @meter_id, or every meter when NULL: the buses in
 * parallel, the meters of a bus one after the other. Prints one line per
 * point read (or per failure) and a summary line on stdout, in
 * configuration order:
 *
 *   METER  BUS  ADDRESS  QUALITY  MS  POINT  VALUE
 *   METER  BUS  ADDRESS  QUALITY  MS  -      ERROR
 *   N meters: N good, N timeout, N error
 *
 * Returns how many of the meters probed did not read good (0: all did),
 * -ENOENT when no meter is called @meter_id (nothing printed), or
 * -ENOMEM.
 */
int mh_probe_run(const struct mh_config *cfg, const char *meter_id);
