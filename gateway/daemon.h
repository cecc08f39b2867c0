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

/* RFC 3339 UTC ("2026-11-22T03:45:00Z", or with ".123" milliseconds). */
void mh_format_time(int64_t ms, bool with_ms, char *out, size_t len);
