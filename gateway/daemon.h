/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * Run the gateway on @cfg until SIGINT or SIGTERM: buses, schedule, store and
 * uplink. The process time zone must already be gateway.timezone. Returns 0
 * after a clean shutdown, or a negative errno when start-up failed.
 */
int mh_daemon_run(const struct mh_config *cfg);
