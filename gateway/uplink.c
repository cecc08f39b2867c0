// SPDX-License-Identifier: MIT
#include "uplink.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "queue.h"
#include "outbox.h"
#include "schedule.h"

#define RECONNECT_MIN_MS 1000
#define RECONNECT_MAX_MS 30000
/*
 * Deleting acknowledged records is batched: a lost deletion only means a
 * duplicate after a crash, and one commit per PUBACK would cap the drain.
 */
#define ACK_COMMIT_MS 100
#define ACK_COMMIT_BATCH 1024

enum event_kind {
	EV_CONNECTED,
	EV_CONNECT_FAILED,
	EV_LOST,
	EV_PUBACK,
	EV_PUB_FAILED,
	EV_STATUS_DONE,
	EV_DISCONNECTED,
};

/* What paho's threads tell the loop. */
struct event {
	struct mh_queue_node node;
	enum event_kind kind;
	unsigned gen;
	uint64_t seq;
	int code;
};

/* The context of one publish, handed back by paho's callbacks. */
struct pub_ctx {
	struct mh_uplink *up;
	unsigned gen;
	uint64_t seq; /* 0 for the status message */
};

enum state {
	ST_DISCONNECTED,
	ST_CONNECTING,
	ST_CONNECTED,
	ST_STOPPING,
	ST_DISCONNECTING,
	ST_CLOSED,
};

struct mh_uplink {
	uv_loop_t *loop;
	const struct mh_config *cfg;
	struct mh_outbox *outbox;
	MQTTAsync client;
	struct mh_queue events;
	uv_async_t wake;
	uv_timer_t retry;
	uv_timer_t stop_timer;
	uv_timer_t ack_timer;
	unsigned acks_uncommitted;
	int open_handles;

	enum state state;
	/* Bumped on every new connection; callbacks of older ones only acknowledge. */
	unsigned gen;
	unsigned backoff_ms;
	unsigned in_flight;
	uint64_t cursor; /* highest seq published on this connection */
	bool status_pending;
	bool stop_requested;
	bool client_used; /* the client was connected once: it may hold stale commands */
	/* The context of the connect in progress (one at a time: connect_now runs only when none is). */
	struct pub_ctx connecting;

	char *uri;
	char *password;
	char status_topic[256];
	char online[256];
	char offline[256];
	void (*done)(void *ud);
	void *done_ud;
};

/* ---- paho threads: queue and wake, nothing else --------------------- */

static void post(struct mh_uplink *up, enum event_kind kind, unsigned gen, uint64_t seq, int code)
{
	struct event *ev = calloc(1, sizeof(*ev));

	/* Without memory the event is lost; a lost PUBACK only means a duplicate later. */
	if (!ev)
		return;
	ev->kind = kind;
	ev->gen = gen;
	ev->seq = seq;
	ev->code = code;
	mh_queue_push(&up->events, &ev->node);
}

/*
 * The connect context lives in the uplink: paho never calls back for a
 * connect whose client was destroyed, so a context of its own would leak.
 */
static void on_connect_ok(void *ctx, MQTTAsync_successData *resp)
{
	struct pub_ctx *c = ctx;
	post(c->up, EV_CONNECTED, c->gen, 0, 0);
}

static void on_connect_fail(void *ctx, MQTTAsync_failureData *resp)
{
	struct pub_ctx *c = ctx;
	post(c->up, EV_CONNECT_FAILED, c->gen, 0, resp ? resp->code : MQTTASYNC_FAILURE);
}

static void on_connection_lost(void *ctx, char *cause)
{
	struct mh_uplink *up = ctx;
	/* The gen is read on the loop thread when the event is handled. */
	post(up, EV_LOST, 0, 0, 0);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	return 1;
}

static void on_publish_ok(void *ctx, MQTTAsync_successData *resp)
{
	struct pub_ctx *c = ctx;
	post(c->up, c->seq ? EV_PUBACK : EV_STATUS_DONE, c->gen, c->seq, 0);
	free(c);
}

static void on_publish_fail(void *ctx, MQTTAsync_failureData *resp)
{
	struct pub_ctx *c = ctx;
	post(c->up, c->seq ? EV_PUB_FAILED : EV_STATUS_DONE, c->gen, c->seq,
		resp ? resp->code : MQTTASYNC_FAILURE);
	free(c);
}

static void on_disconnect_ok(void *ctx, MQTTAsync_successData *resp)
{
	post(ctx, EV_DISCONNECTED, 0, 0, 0);
}

static void on_disconnect_fail(void *ctx, MQTTAsync_failureData *resp)
{
	post(ctx, EV_DISCONNECTED, 0, 0, resp ? resp->code : MQTTASYNC_FAILURE);
}

/* ---- loop thread ----------------------------------------------------- */

/* paho's return codes, translated once. */
static int paho_error(int rc)
{
	switch (rc) {
	case MQTTASYNC_SUCCESS:
		return 0;
	case MQTTASYNC_DISCONNECTED:
		return -ENOTCONN;
	case MQTTASYNC_MAX_MESSAGES_INFLIGHT:
	case MQTTASYNC_MAX_BUFFERED_MESSAGES:
		return -EAGAIN;
	case MQTTASYNC_BAD_UTF8_STRING:
	case MQTTASYNC_NULL_PARAMETER:
	case MQTTASYNC_TOPICNAME_TRUNCATED:
	case MQTTASYNC_BAD_STRUCTURE:
	case MQTTASYNC_BAD_QOS:
	case MQTTASYNC_BAD_PROTOCOL:
		return -EINVAL;
	case MQTTASYNC_NO_MORE_MSGIDS:
		return -EBUSY;
	default:
		return -EIO;
	}
}

static void on_retry(uv_timer_t *t);

static void schedule_reconnect(struct mh_uplink *up)
{
	if (up->stop_requested)
		return;
	up->state = ST_DISCONNECTED;
	uv_timer_start(&up->retry, on_retry, up->backoff_ms, 0);
}

static void on_connection_lost(void *ctx, char *cause);
static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg);

/* A paho client for the broker, its callbacks set. Returns 0 or a negative errno. */
static int create_client(struct mh_uplink *up)
{
	MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
	int rc;

	copts.sendWhileDisconnected = 0;
	copts.MQTTVersion = MQTTVERSION_3_1_1;
	rc = MQTTAsync_createWithOptions(&up->client, up->uri, up->cfg->mqtt.client_id,
		MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts);
	if (rc != MQTTASYNC_SUCCESS) {
		mh_log_err(MQTT, "cannot create a client for %s: paho code %d", up->uri, rc);
		up->client = NULL;
		return paho_error(rc);
	}
	MQTTAsync_setCallbacks(up->client, up, on_connection_lost, on_message, NULL);
	up->client_used = false;
	return 0;
}

static void connect_now(struct mh_uplink *up)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	const struct mh_config *cfg = up->cfg;
	int rc;

	/*
	 * paho keeps publishes it had queued when a connection died and sends
	 * them first on the next one, ahead of our rewind: that would reorder
	 * the stream. A fresh client starts with nothing queued.
	 */
	if (up->client_used) {
		MQTTAsync_destroy(&up->client);
		if (create_client(up) < 0) {
			schedule_reconnect(up);
			return;
		}
	}
	up->gen++;
	up->connecting = (struct pub_ctx){ .up = up, .gen = up->gen };
	will.topicName = up->status_topic;
	will.message = up->offline;
	will.retained = 1;
	will.qos = 1;
	opts.keepAliveInterval = (int)cfg->mqtt.keepalive_s;
	opts.cleansession = 1;
	opts.connectTimeout = 10;
	opts.maxInflight = (int)cfg->mqtt.window;
	opts.will = &will;
	opts.username = cfg->mqtt.username;
	opts.password = up->password;
	opts.onSuccess = on_connect_ok;
	opts.onFailure = on_connect_fail;
	opts.context = &up->connecting;
	if (!strncmp(up->uri, "ssl://", 6)) {
		ssl.trustStore = cfg->mqtt.tls.ca;
		ssl.keyStore = cfg->mqtt.tls.cert;
		ssl.privateKey = cfg->mqtt.tls.key;
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1;
		opts.ssl = &ssl;
	}
	up->state = ST_CONNECTING;
	rc = MQTTAsync_connect(up->client, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		mh_log_err(MQTT, "cannot start connecting to %s: paho code %d", up->uri, rc);
		schedule_reconnect(up);
	}
}

static void on_retry(uv_timer_t *t)
{
	struct mh_uplink *up = t->data;

	if (up->state == ST_DISCONNECTED || up->state == ST_DISCONNECTING)
		connect_now(up);
}

static int publish(struct mh_uplink *up, const char *topic, const void *payload, size_t len,
	int retained, uint64_t seq)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	struct pub_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc;

	if (!ctx)
		return -ENOMEM;
	*ctx = (struct pub_ctx){ .up = up, .gen = up->gen, .seq = seq };
	msg.payload = (void *)payload;
	msg.payloadlen = (int)len;
	msg.qos = 1;
	msg.retained = retained;
	opts.onSuccess = on_publish_ok;
	opts.onFailure = on_publish_fail;
	opts.context = ctx;
	rc = MQTTAsync_sendMessage(up->client, topic, &msg, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		free(ctx);
		return paho_error(rc);
	}
	return 0;
}

static int publish_record(void *ud, const struct mh_record *rec)
{
	struct mh_uplink *up = ud;
	char topic[512];
	int rc;

	snprintf(topic, sizeof(topic), "%s/%.*s", up->cfg->mqtt.topic_prefix,
		(int)rec->subtopic_len, rec->subtopic);
	rc = publish(up, topic, rec->payload, rec->payload_len, 0, rec->seq);
	if (rc < 0) {
		/* Nothing was sent; the record stays and goes out after the reconnect. */
		mh_log_warn(MQTT, "publish of seq %llu failed: %s",
			(unsigned long long)rec->seq, strerror(-rc));
		return 1;
	}
	up->cursor = rec->seq;
	up->in_flight++;
	return 0;
}

void mh_uplink_pump(struct mh_uplink *up)
{
	if (up->state != ST_CONNECTED || up->in_flight >= up->cfg->mqtt.window)
		return;
	int n = mh_outbox_scan(up->outbox, up->cursor, up->cfg->mqtt.window - up->in_flight,
		publish_record, up);
	if (n < 0)
		mh_log_err(MQTT, "cannot read the store: %s", strerror(-n));
}

static void publish_status(struct mh_uplink *up, const char *payload)
{
	int rc = publish(up, up->status_topic, payload, strlen(payload), 1, 0);

	up->status_pending = rc == 0;
	if (rc < 0)
		mh_log_warn(MQTT, "cannot publish status: %s", strerror(-rc));
}

static void finish_close(uv_handle_t *h)
{
	struct mh_uplink *up = h->data;

	if (--up->open_handles)
		return;
	void (*done)(void *) = up->done;
	void *ud = up->done_ud;
	mh_queue_deinit(&up->events);
	free(up->uri);
	free(up->password);
	free(up);
	if (done)
		done(ud);
}

static void free_events(struct mh_queue_node *node)
{
	while (node) {
		struct mh_queue_node *next = node->next;
		free(node);
		node = next;
	}
}

static void commit_acks(struct mh_uplink *up)
{
	if (!up->acks_uncommitted)
		return;
	up->acks_uncommitted = 0;
	uv_timer_stop(&up->ack_timer);
	/* A deletion that fails stays pending in the outbox and is written next time. */
	mh_outbox_flush_acks(up->outbox);
}

static void on_ack_timer(uv_timer_t *t)
{
	commit_acks(t->data);
}

static void close_all(struct mh_uplink *up)
{
	up->state = ST_CLOSED;
	/* paho joins its threads here; no callback runs after it returns. */
	MQTTAsync_destroy(&up->client);
	free_events(mh_queue_take_all(&up->events));
	commit_acks(up);
	up->open_handles = 4;
	uv_close((uv_handle_t *)&up->wake, finish_close);
	uv_close((uv_handle_t *)&up->retry, finish_close);
	uv_close((uv_handle_t *)&up->stop_timer, finish_close);
	uv_close((uv_handle_t *)&up->ack_timer, finish_close);
}

static void disconnect(struct mh_uplink *up)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;

	if (up->state == ST_DISCONNECTING || up->state == ST_CLOSED)
		return;
	up->state = ST_DISCONNECTING;
	opts.timeout = 1000;
	opts.onSuccess = on_disconnect_ok;
	opts.onFailure = on_disconnect_fail;
	opts.context = up;
	if (MQTTAsync_disconnect(up->client, &opts) == MQTTASYNC_SUCCESS) {
		/* Should paho never confirm the disconnect, connect again all the same. */
		if (!up->stop_requested)
			uv_timer_start(&up->retry, on_retry, 5000, 0);
		return;
	}
	/* Already down (the usual reason this fails): go on as if it had worked. */
	if (up->stop_requested)
		close_all(up);
	else
		schedule_reconnect(up);
}

/* While stopping: disconnect once the offline status and the window are acknowledged. */
static void maybe_finish_stop(struct mh_uplink *up)
{
	if (up->state == ST_STOPPING && !up->status_pending && up->in_flight == 0)
		disconnect(up);
}

static void on_stop_timeout(uv_timer_t *t)
{
	struct mh_uplink *up = t->data;

	if (up->state == ST_STOPPING) {
		mh_log_warn(MQTT, "%u publishes not acknowledged at shutdown; they stay stored",
			up->in_flight);
		disconnect(up);
	} else if (up->state == ST_DISCONNECTING) {
		close_all(up);
	}
}

static void handle_event(struct mh_uplink *up, struct event *ev)
{
	switch (ev->kind) {
	case EV_CONNECTED:
		if (ev->gen != up->gen || up->state != ST_CONNECTING)
			break;
		mh_log_notice(MQTT, "connected to %s", up->uri);
		up->state = ST_CONNECTED;
		up->client_used = true;
		up->backoff_ms = RECONNECT_MIN_MS;
		up->in_flight = 0;
		/* Rewind: everything not acknowledged goes out again, oldest first. */
		commit_acks(up);
		up->cursor = 0;
		publish_status(up, up->online);
		break;
	case EV_CONNECT_FAILED:
		if (ev->gen != up->gen || up->state != ST_CONNECTING)
			break;
		mh_log_warn(MQTT, "cannot connect to %s (code %d); retrying in %u s", up->uri,
			ev->code, up->backoff_ms / 1000);
		schedule_reconnect(up);
		up->backoff_ms = up->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
								   : up->backoff_ms * 2;
		break;
	case EV_LOST:
		if (up->state != ST_CONNECTED && up->state != ST_STOPPING)
			break;
		mh_log_warn(MQTT, "connection to %s lost; %u publishes will be sent again",
			up->uri, up->in_flight);
		up->in_flight = 0;
		up->status_pending = false;
		if (up->state == ST_STOPPING) {
			close_all(up);
			return;
		}
		up->gen++; /* late callbacks of this connection no longer count */
		schedule_reconnect(up);
		break;
	case EV_PUBACK:
		/* Acknowledged is acknowledged, whichever connection it came on. */
		mh_outbox_ack(up->outbox, ev->seq);
		up->acks_uncommitted++;
		if (ev->gen == up->gen && up->in_flight)
			up->in_flight--;
		break;
	case EV_PUB_FAILED:
		if (ev->gen != up->gen || up->state != ST_CONNECTED)
			break;
		/*
		 * A later record may already be through, so resending this one alone
		 * would reorder the stream: start the connection over instead.
		 */
		mh_log_warn(MQTT, "publish of seq %llu failed (code %d); reconnecting",
			(unsigned long long)ev->seq, ev->code);
		up->gen++;
		up->in_flight = 0;
		disconnect(up);
		break;
	case EV_STATUS_DONE:
		if (ev->gen == up->gen)
			up->status_pending = false;
		break;
	case EV_DISCONNECTED:
		if (up->state != ST_DISCONNECTING)
			break;
		if (up->stop_requested) {
			close_all(up);
			return;
		}
		schedule_reconnect(up);
		break;
	}
}

static void on_wake(uv_async_t *a)
{
	struct mh_uplink *up = a->data;
	struct mh_queue_node *node = mh_queue_take_all(&up->events);

	while (node) {
		struct mh_queue_node *next = node->next;
		if (up->state != ST_CLOSED)
			handle_event(up, (struct event *)node);
		free(node);
		node = next;
	}
	if (up->state == ST_CLOSED)
		return;
	if (up->acks_uncommitted >= ACK_COMMIT_BATCH)
		commit_acks(up);
	else if (up->acks_uncommitted && !uv_is_active((uv_handle_t *)&up->ack_timer))
		uv_timer_start(&up->ack_timer, on_ack_timer, ACK_COMMIT_MS, 0);
	if (up->state == ST_STOPPING)
		maybe_finish_stop(up);
	else
		mh_uplink_pump(up);
}

static char *read_password(const char *file)
{
	char buf[512];
	FILE *f = fopen(file, "r");

	if (!f)
		return NULL;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

/* The status payloads: "started" only from a clock that was set. */
static void make_status(struct mh_uplink *up, int64_t started_ms)
{
	char started[64] = "";

	if (started_ms) {
		strcpy(started, ",\"started\":\"");
		mh_schedule_format(started_ms, false, started + strlen(started),
			sizeof(started) - strlen(started) - 2);
		strcat(started, "\"");
	}
	snprintf(up->online, sizeof(up->online), "{\"state\":\"online\",\"version\":\"%s\"%s}",
		MH_VERSION, started);
	snprintf(up->offline, sizeof(up->offline),
		"{\"state\":\"offline\",\"version\":\"%s\"%s}", MH_VERSION, started);
}

void mh_uplink_set_started(struct mh_uplink *up, int64_t started_ms)
{
	make_status(up, started_ms);
	/* The retained status is replaced now; the will follows at the next connect. */
	if (up->state == ST_CONNECTED && !up->status_pending)
		publish_status(up, up->online);
}

int mh_uplink_start(uv_loop_t *loop, const struct mh_config *cfg, struct mh_outbox *outbox,
	int64_t started_ms, struct mh_uplink **out)
{
	struct mh_uplink *up = calloc(1, sizeof(*up));
	const char *uri = cfg->mqtt.uri;
	int rc;

	if (!up)
		return -ENOMEM;
	up->loop = loop;
	up->cfg = cfg;
	up->outbox = outbox;
	up->backoff_ms = RECONNECT_MIN_MS;
	/* paho knows tcp:// and ssl://; mqtt:// and mqtts:// are their common aliases. */
	if (!strncmp(uri, "mqtt://", 7) && asprintf(&up->uri, "tcp://%s", uri + 7) < 0)
		up->uri = NULL;
	else if (!strncmp(uri, "mqtts://", 8) && asprintf(&up->uri, "ssl://%s", uri + 8) < 0)
		up->uri = NULL;
	else if (strncmp(uri, "mqtt://", 7) && strncmp(uri, "mqtts://", 8))
		up->uri = strdup(uri);
	if (!up->uri) {
		free(up);
		return -ENOMEM;
	}
	if (cfg->mqtt.password_file && !(up->password = read_password(cfg->mqtt.password_file))) {
		rc = -errno;
		mh_log_err(MQTT, "cannot read %s: %s", cfg->mqtt.password_file, strerror(errno));
		free(up->uri);
		free(up);
		return rc;
	}
	snprintf(up->status_topic, sizeof(up->status_topic), "%s/status", cfg->mqtt.topic_prefix);
	make_status(up, started_ms);

	rc = create_client(up);
	if (rc < 0) {
		free(up->password);
		free(up->uri);
		free(up);
		return rc;
	}

	mh_require(mh_queue_init(&up->events, &up->wake) == 0);
	uv_async_init(loop, &up->wake, on_wake);
	uv_timer_init(loop, &up->retry);
	uv_timer_init(loop, &up->stop_timer);
	uv_timer_init(loop, &up->ack_timer);
	up->wake.data = up->retry.data = up->stop_timer.data = up->ack_timer.data = up;
	connect_now(up);
	*out = up;
	return 0;
}

int mh_uplink_publish_volatile(struct mh_uplink *up, const char *subtopic, const char *payload,
	bool retained)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	char topic[512];

	if (up->state != ST_CONNECTED)
		return -ENOTCONN;
	snprintf(topic, sizeof(topic), "%s/%s", up->cfg->mqtt.topic_prefix, subtopic);
	msg.payload = (void *)payload;
	msg.payloadlen = (int)strlen(payload);
	msg.qos = 0;
	msg.retained = retained;
	return paho_error(MQTTAsync_sendMessage(up->client, topic, &msg, NULL));
}

bool mh_uplink_connected(const struct mh_uplink *up)
{
	return up->state == ST_CONNECTED;
}

unsigned mh_uplink_in_flight(const struct mh_uplink *up)
{
	return up->in_flight;
}

void mh_uplink_stop(struct mh_uplink *up, unsigned timeout_ms, void (*done)(void *ud), void *ud)
{
	up->done = done;
	up->done_ud = ud;
	up->stop_requested = true;
	uv_timer_stop(&up->retry);
	if (up->state != ST_CONNECTED) {
		close_all(up);
		return;
	}
	up->state = ST_STOPPING;
	publish_status(up, up->offline);
	uv_timer_start(&up->stop_timer, on_stop_timeout, timeout_ms, timeout_ms);
	maybe_finish_stop(up);
}
