/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Telling the service manager how the daemon is doing (sd_notify(3)):
 * READY=1 once it serves, STATUS= lines a person reads in `systemctl
 * status`, STOPPING=1 on the way out, and WATCHDOG=1 keep-alives. The
 * keep-alives come from a timer on the event loop, so a loop that hangs
 * stops them and the service manager restarts the daemon.
 *
 * Without libsystemd at build time (meson -Dsystemd=disabled), or when the
 * daemon is not started by a service manager (no $NOTIFY_SOCKET), every call
 * is a no-op.
 */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The watchdog keep-alive timer. Lives inside its owner (the daemon). */
struct mh_notify {
	uv_timer_t timer;
	uint64_t interval_ms; /* 0: the service manager wants no keep-alives */
	bool started;
};

/*
 * Start sending WATCHDOG=1 every half of the interval the service manager
 * asked for ($WATCHDOG_USEC, see sd_watchdog_enabled(3)), the first one at
 * once. Does nothing (and needs no mh_notify_stop()) when no watchdog is
 * wanted. Returns 0 or a negative errno from libuv.
 */
int mh_notify_watchdog_start(struct mh_notify *n, uv_loop_t *loop);

/* Stop the keep-alives and close the timer handle; safe when never started. */
void mh_notify_watchdog_stop(struct mh_notify *n);

/* READY=1 together with STATUS=@status (may be NULL). */
void mh_notify_ready(const char *status);

/* STATUS= a line saying what the daemon is doing now. */
__attribute__((format(printf, 1, 2))) void mh_notify_status(const char *fmt, ...);

/* STOPPING=1 together with STATUS=@status (may be NULL). */
void mh_notify_stopping(const char *status);
