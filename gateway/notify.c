// SPDX-License-Identifier: MIT
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#ifdef MH_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

/* Send @state; a failure to tell the service manager never stops the daemon. */
static void send_state(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		mh_log_debug(MAIN, "sd_notify(%s): %s", state, strerror(-rc));
}

static uint64_t watchdog_interval_ms(void)
{
	uint64_t usec = 0;

	/* > 0 only when $WATCHDOG_USEC is set (and $WATCHDOG_PID, if set, is us). */
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	/* Half the interval, as sd_watchdog_enabled(3) advises; never a busy loop. */
	usec /= 2000;
	return usec ? usec : 1;
}
#else
static void send_state(const char *state)
{
	(void)state;
}

static uint64_t watchdog_interval_ms(void)
{
	return 0;
}
#endif

static void send_with_status(const char *state, const char *status)
{
	char buf[512];

	if (status)
		snprintf(buf, sizeof(buf), "%s\nSTATUS=%s", state, status);
	else
		snprintf(buf, sizeof(buf), "%s", state);
	send_state(buf);
}

static void on_keepalive(uv_timer_t *t)
{
	(void)t;
	send_state("WATCHDOG=1");
}

int mh_notify_watchdog_start(struct mh_notify *n, uv_loop_t *loop)
{
	int rc;

	memset(n, 0, sizeof(*n));
	n->interval_ms = watchdog_interval_ms();
	if (!n->interval_ms)
		return 0;
	rc = uv_timer_init(loop, &n->timer);
	if (rc < 0)
		return rc;
	n->started = true;
	mh_log_info(MAIN, "watchdog keep-alives every %llu ms", (unsigned long long)n->interval_ms);
	return uv_timer_start(&n->timer, on_keepalive, 0, n->interval_ms);
}

void mh_notify_watchdog_stop(struct mh_notify *n)
{
	if (!n->started)
		return;
	n->started = false;
	uv_timer_stop(&n->timer);
	uv_close((uv_handle_t *)&n->timer, NULL);
}

void mh_notify_ready(const char *status)
{
	send_with_status("READY=1", status);
}

void mh_notify_status(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	memcpy(buf, "STATUS=", 7);
	va_start(ap, fmt);
	vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	send_state(buf);
}

void mh_notify_stopping(const char *status)
{
	send_with_status("STOPPING=1", status);
}
