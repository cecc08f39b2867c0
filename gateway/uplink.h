/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The MQTT side: one paho async client. Publishes the store's records in seq
 * order with QoS 1, at most mqtt.window at a time, and deletes each record
 * only when its PUBACK arrives. On every (re)connect it starts again from the
 * oldest record not yet acknowledged, so a consumer may see a duplicate seq
 * but never a gap. Also keeps the retained status topic (online, with
 * offline as the last will). paho's threads only queue events; all state is
 * touched on the loop thread.
 *
 * With a command handler it also subscribes to topic_prefix/cmd (QoS 1, a
 * persistent session, again on every connection) and hands every message
 * there to the handler on the loop thread. paho acknowledges the message
 * only after the handler returns, so what the handler commits before
 * returning is durable before the broker forgets the message.
 */

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "outbox.h"

struct mh_uplink;

/* A message that arrived on the command topic; valid during the handler's call. */
struct mh_inbound {
	const char *payload; /* not NUL-terminated */
	size_t len;
	bool retained; /* the broker kept it as retained */
	bool dup;      /* the broker says it may have sent it before */
};

/* Called on the loop thread for each message on the command topic. */
typedef void (*mh_uplink_inbound_fn)(void *ud, const struct mh_inbound *in);

/*
 * Create the client for @cfg on @loop, publishing from @outbox (both must
 * outlive the uplink). @started_ms is when the gateway started, or 0 while
 * the wall clock is not set (the status then says no start time).
 * @on_command (may be NULL: no subscription) gets the command topic's
 * messages. Starts connecting at once and keeps reconnecting with backoff.
 * Returns 0 and *@out, or a negative errno.
 */
int mh_uplink_start(uv_loop_t *loop, const struct mh_config *cfg, struct mh_outbox *outbox,
	int64_t started_ms, mh_uplink_inbound_fn on_command, void *ud, struct mh_uplink **out);

/* The wall clock got set: the status now says when the gateway started. */
void mh_uplink_set_started(struct mh_uplink *up, int64_t started_ms);

/* Publish what the store holds beyond what is in flight, as the window allows. */
void mh_uplink_pump(struct mh_uplink *up);

/*
 * Publish @payload on topic_prefix/@subtopic now, QoS 0, bypassing the
 * store: for snapshots such as health, where only the latest matters.
 * Returns 0, -ENOTCONN while disconnected, or another negative errno.
 */
int mh_uplink_publish_volatile(struct mh_uplink *up, const char *subtopic, const char *payload,
	bool retained);

/*
 * Call @fn(@ud, false, 0) when the connection is lost (or the first
 * connect fails) and @fn(@ud, true, outage) when it is back, with how long
 * it was down (monotonic ms).
 */
void mh_uplink_watch(struct mh_uplink *up, void (*fn)(void *ud, bool up, int64_t outage_ms),
	void *ud);

/* Whether the broker connection is up. */
bool mh_uplink_connected(const struct mh_uplink *up);

/* Publishes in flight (sent, PUBACK not yet received). */
unsigned mh_uplink_in_flight(const struct mh_uplink *up);

/*
 * Shut down: publish the retained offline status, wait up to @timeout_ms for
 * in-flight acknowledgements, disconnect, close every handle, free the
 * uplink, then call @done (on the loop thread).
 */
void mh_uplink_stop(struct mh_uplink *up, unsigned timeout_ms, void (*done)(void *ud), void *ud);
