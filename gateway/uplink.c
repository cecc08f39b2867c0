// SPDX-License-Identifier: MIT
#include "uplink.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "queue.h"
#include "outbox.h"
#include "schedule.h"
#include "secret.h"
#include "tlscheck.h"

/*
 * Reconnect delays double from the minimum to a cap short enough that
 * publishing resumes within 2 s of the broker coming back; each is drawn
 * from the upper half of its step, so a fleet that lost the same broker
 * does not come back in lockstep.
 */
#define RECONNECT_MIN_MS 250
#define RECONNECT_MAX_MS 2000
/* While the broker stays away, the failure is logged this often (with a count). */
#define CONNECT_FAIL_LOG_MS 60000
/*
 * Deleting acknowledged records is batched: a lost deletion only means a
 * duplicate after a crash, and one commit per PUBACK would cap the drain.
 * The deletions ride along with the store's next commit, whatever makes it
 * (the next sweep's records, an event); without one for ACK_LINGER_MS, or
 * once ACK_COMMIT_BATCH are waiting, they are committed on their own. A
 * commit rewrites a handful of pages however little it carries: one a
 * sweep instead of two halves the flash written per reading.
 */
#define ACK_LINGER_MS 2000
#define ACK_COMMIT_BATCH 1024
/* Room for the broker password, in secret memory (see secret.h). */
#define PASSWORD_CAP 512

/*
 * Threads. paho runs its callbacks on its own threads holding its global
 * mutex, and sends the PUBACK of an incoming message only once the
 * message-arrived callback returns. That callback must wait until the loop
 * has journaled the command, so the loop may never block on paho's mutex:
 * every paho call is made by the uplink's worker thread, fed by a request
 * FIFO. The loop keeps all state and only posts requests; the worker and
 * paho's callbacks only post events back.
 */

enum event_kind {
	EV_CONNECTED,
	EV_CONNECT_FAILED,
	EV_LOST,
	EV_PUBACK,
	EV_PUB_FAILED,
	EV_STATUS_DONE,
	EV_DISCONNECTED,
	EV_SUBSCRIBED,
	EV_MESSAGE, /* lives on the stack of paho's thread, which waits for it */
	EV_CLOSED,  /* the worker destroyed the client and is ending */
};

/* What paho's threads and the worker tell the loop. */
struct event {
	struct mh_queue_node node;
	enum event_kind kind;
	unsigned gen;
	uint64_t seq;
	int code;
	/* EV_MESSAGE */
	const struct mh_inbound *in;
	bool done;
};

/* The context of one publish, handed back by paho's callbacks. */
struct pub_ctx {
	struct mh_uplink *up;
	unsigned gen;
	uint64_t seq; /* 0 for the status message */
};

enum request_kind {
	RQ_CONNECT,    /* a fresh client, then connect */
	RQ_SEND,       /* publish */
	RQ_SUBSCRIBE,  /* the command topic, QoS 1 */
	RQ_DISCONNECT,
	RQ_DESTROY,    /* destroy the client and end the worker */
};

/* What the loop asks the worker to do; one allocation with its strings. */
struct request {
	struct mh_queue_node node;
	enum request_kind kind;
	unsigned gen;
	uint64_t seq;        /* RQ_SEND: the record, 0 for the status */
	int qos, retained;   /* RQ_SEND */
	bool track;          /* RQ_SEND: report the outcome (QoS 1) */
	size_t len;          /* RQ_SEND: payload bytes */
	char *topic;         /* RQ_SEND */
	char *payload;       /* RQ_SEND; RQ_CONNECT: the will */
	char data[];
};

enum state {
	ST_DISCONNECTED,
	ST_CONNECTING,
	ST_CONNECTED,
	ST_STOPPING,
	ST_DISCONNECTING,
	ST_CLOSING, /* the worker is destroying the client */
	ST_CLOSED,
};

struct mh_uplink {
	uv_loop_t *loop;
	const struct mh_config *cfg;
	struct mh_outbox *outbox;
	struct mh_queue events;
	uv_async_t wake;
	uv_timer_t retry;
	uv_timer_t stop_timer;
	uv_timer_t ack_timer;
	int open_handles;

	/* The worker and what only it touches. */
	uv_thread_t worker;
	uv_mutex_t rq_lock;
	uv_cond_t rq_cond;
	struct mh_fifo requests;
	MQTTAsync client;
	bool client_fresh; /* created and never connected */
	/*
	 * The context of the connect in progress (one at a time: a connect is
	 * requested only when none is).
	 */
	struct pub_ctx connecting;

	/* Incoming messages on the command topic. */
	mh_uplink_inbound_fn on_inbound;
	void *inbound_ud;
	uv_mutex_t in_lock; /* with in_cond: paho's thread waits for the loop */
	uv_cond_t in_cond;
	bool die_before_puback; /* test failpoint MH_FAILPOINT=before_puback */
	/* The owner hears when the broker is lost and back (mh_uplink_watch()). */
	void (*on_link)(void *ud, bool up, int64_t outage_ms);
	void *link_ud;
	int64_t down_since; /* monotonic ms; 0 while connected (or before the first try failed) */

	enum state state;
	/* Bumped on every new connection; callbacks of older ones only acknowledge. */
	unsigned gen;
	unsigned backoff_ms;
	uint32_t jitter;          /* xorshift state for the reconnect delays */
	unsigned failed_connects; /* since the last successful connection */
	int64_t fail_logged;      /* monotonic ms of the last such log line */
	unsigned in_flight;
	uint64_t cursor; /* highest seq published on this connection */
	bool status_pending;
	bool stop_requested;

	char *uri;
	char *password;
	char status_topic[256];
	char cmd_topic[256];
	char online[256];
	char offline[256];
	void (*done)(void *ud);
	void *done_ud;
};

/* ---- paho threads and the worker: queue and wake, nothing else ------- */

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

/*
 * A message arrived (paho's thread, holding paho's mutex). paho sends its
 * PUBACK when this returns, so wait until the loop has dealt with it: an
 * accepted command is journaled by then, and a crash at any moment either
 * leaves it unacknowledged (the broker sends it again) or journaled.
 */
static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
	struct mh_uplink *up = ctx;
	size_t tlen = topic_len ? (size_t)topic_len : strlen(topic);

	if (up->on_inbound && tlen == strlen(up->cmd_topic) && !memcmp(topic, up->cmd_topic, tlen)) {
		struct mh_inbound in = {
			.payload = msg->payload,
			.len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0,
			.retained = msg->retained != 0,
			.dup = msg->dup != 0,
		};
		struct event ev = { .kind = EV_MESSAGE, .in = &in };

		mh_queue_push(&up->events, &ev.node);
		uv_mutex_lock(&up->in_lock);
		while (!ev.done)
			uv_cond_wait(&up->in_cond, &up->in_lock);
		uv_mutex_unlock(&up->in_lock);
		if (up->die_before_puback)
			raise(SIGKILL);
	}
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

static void on_subscribe_ok(void *ctx, MQTTAsync_successData *resp)
{
	struct pub_ctx *c = ctx;
	/* A refusal comes as QoS 0x80 in a successful SUBACK. */
	post(c->up, EV_SUBSCRIBED, c->gen, 0, resp ? resp->alt.qos : 0);
	free(c);
}

static void on_subscribe_fail(void *ctx, MQTTAsync_failureData *resp)
{
	struct pub_ctx *c = ctx;
	post(c->up, EV_SUBSCRIBED, c->gen, 0, 0x80);
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

/* ---- the worker: every paho call ------------------------------------ */

static void submit(struct mh_uplink *up, struct request *rq)
{
	uv_mutex_lock(&up->rq_lock);
	mh_fifo_push(&up->requests, &rq->node);
	uv_cond_signal(&up->rq_cond);
	uv_mutex_unlock(&up->rq_lock);
}

/* A request carrying copies of @topic and @len bytes of @payload (either may be NULL). */
static struct request *request_new(enum request_kind kind, unsigned gen, const char *topic,
	const void *payload, size_t len)
{
	size_t tlen = topic ? strlen(topic) + 1 : 0;
	struct request *rq = calloc(1, sizeof(*rq) + tlen + len + 1);

	if (!rq)
		return NULL;
	rq->kind = kind;
	rq->gen = gen;
	rq->len = len;
	if (topic)
		rq->topic = memcpy(rq->data, topic, tlen);
	rq->payload = rq->data + tlen;
	if (len)
		memcpy(rq->payload, payload, len);
	rq->payload[len] = '\0';
	return rq;
}

/* A paho client for the broker, its callbacks set. Returns 0 or a negative errno. */
static int create_client(struct mh_uplink *up)
{
	MQTTAsync_createOptions copts = MQTTAsync_createOptions_initializer;
	int rc;

	copts.sendWhileDisconnected = 0;
	copts.MQTTVersion = MQTTVERSION_3_1_1;
	/*
	 * paho built without HIGH_PERFORMANCE (as Debian builds it) starts at
	 * trace level "minimum", at which every function entry and exit, and
	 * every packet, is formatted into an in-memory trace ring that nothing
	 * reads here: more than half of the instructions a publish cost. Its
	 * errors are what we would want of it; they come back through the API.
	 * MQTT_C_CLIENT_TRACE and MQTT_C_CLIENT_TRACE_LEVEL, read when the
	 * first client is created, still turn tracing on for a debugging
	 * session.
	 */
	if (!getenv("MQTT_C_CLIENT_TRACE_LEVEL") && !getenv("MQTT_C_CLIENT_TRACE"))
		MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
	rc = MQTTAsync_createWithOptions(&up->client, up->uri, up->cfg->mqtt.client_id,
		MQTTCLIENT_PERSISTENCE_NONE, NULL, &copts);
	if (rc != MQTTASYNC_SUCCESS) {
		mh_log_err(MQTT, "cannot create a client for %s: paho code %d", up->uri, rc);
		up->client = NULL;
		return paho_error(rc);
	}
	MQTTAsync_setCallbacks(up->client, up, on_connection_lost, on_message, NULL);
	up->client_fresh = true;
	return 0;
}

/* ---- the worker: TLS (the policy and the diagnosis are tlscheck's) ---- */

/*
 * Whether the next connect starts with a diagnosis: the first one, so that
 * a broken TLS setup is named at start, and each one after a failure. Set
 * on paho's thread, taken by the worker. The daemon runs one uplink; were
 * there more, one's failure would only make another diagnose once more.
 */
static atomic_bool tls_diagnose_next = true;

/* paho's connect failed: the next attempt finds out why first. */
static void tls_on_connect_fail(void *ctx, MQTTAsync_failureData *resp)
{
	atomic_store(&tls_diagnose_next, true);
	on_connect_fail(ctx, resp);
}

/* The diagnosis gives way when a request waits for the worker (a stop). */
static bool tls_give_way(void *ud)
{
	struct mh_uplink *up = ud;
	bool waiting;

	uv_mutex_lock(&up->rq_lock);
	waiting = up->requests.len > 0;
	uv_mutex_unlock(&up->rq_lock);
	return waiting;
}

static void worker_connect(struct mh_uplink *up, struct request *rq)
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
	if (!up->client_fresh) {
		MQTTAsync_destroy(&up->client);
		rc = create_client(up);
		if (rc < 0) {
			post(up, EV_CONNECT_FAILED, rq->gen, 0, rc);
			return;
		}
	}
	up->client_fresh = false;
	up->connecting = (struct pub_ctx){ .up = up, .gen = rq->gen };
	will.topicName = up->status_topic;
	will.message = rq->payload;
	will.retained = 1;
	will.qos = 1;
	opts.keepAliveInterval = (int)cfg->mqtt.keepalive_s;
	/* Commands wait in the broker while the link is down: a persistent session. */
	opts.cleansession = up->on_inbound ? 0 : 1;
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
		/* The chain, against trustStore (or the system's CAs without one). */
		ssl.enableServerCertAuth = 1;
		/* The host name after the handshake: X509_check_host, then X509_check_ip_asc. */
		ssl.verify = 1;
		ssl.enabledCipherSuites = mh_tlscheck_ciphers();
		ssl.ssl_error_cb = mh_tlscheck_log_error;
		ssl.ssl_error_context = up->uri;
		opts.ssl = &ssl;
		opts.onFailure = tls_on_connect_fail;
		if (atomic_exchange(&tls_diagnose_next, false))
			mh_tlscheck_explain(cfg, up->uri, tls_give_way, up);
	}
	rc = MQTTAsync_connect(up->client, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		mh_log_err(MQTT, "cannot start connecting to %s: paho code %d", up->uri, rc);
		post(up, EV_CONNECT_FAILED, rq->gen, 0, rc);
	}
}

static void worker_send(struct mh_uplink *up, struct request *rq)
{
	MQTTAsync_message msg = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	struct pub_ctx *ctx = NULL;
	int rc;

	if (rq->track) {
		ctx = calloc(1, sizeof(*ctx));
		if (!ctx) {
			post(up, rq->seq ? EV_PUB_FAILED : EV_STATUS_DONE, rq->gen, rq->seq, -ENOMEM);
			return;
		}
		*ctx = (struct pub_ctx){ .up = up, .gen = rq->gen, .seq = rq->seq };
		opts.onSuccess = on_publish_ok;
		opts.onFailure = on_publish_fail;
		opts.context = ctx;
	}
	msg.payload = rq->payload;
	msg.payloadlen = (int)rq->len;
	msg.qos = rq->qos;
	msg.retained = rq->retained;
	rc = MQTTAsync_sendMessage(up->client, rq->topic, &msg, ctx ? &opts : NULL);
	if (rc != MQTTASYNC_SUCCESS && ctx) {
		free(ctx);
		/* Nothing was sent; the loop starts the connection over. */
		post(up, rq->seq ? EV_PUB_FAILED : EV_STATUS_DONE, rq->gen, rq->seq, rc);
	}
}

static void worker_subscribe(struct mh_uplink *up, struct request *rq)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	struct pub_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc;

	if (!ctx) {
		post(up, EV_SUBSCRIBED, rq->gen, 0, 0x80);
		return;
	}
	*ctx = (struct pub_ctx){ .up = up, .gen = rq->gen };
	opts.onSuccess = on_subscribe_ok;
	opts.onFailure = on_subscribe_fail;
	opts.context = ctx;
	rc = MQTTAsync_subscribe(up->client, up->cmd_topic, 1, &opts);
	if (rc != MQTTASYNC_SUCCESS) {
		free(ctx);
		post(up, EV_SUBSCRIBED, rq->gen, 0, 0x80);
	}
}

static void worker_disconnect(struct mh_uplink *up)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;

	opts.timeout = 1000;
	opts.onSuccess = on_disconnect_ok;
	opts.onFailure = on_disconnect_fail;
	opts.context = up;
	/* Already down (the usual reason this fails): go on as if it had worked. */
	if (MQTTAsync_disconnect(up->client, &opts) != MQTTASYNC_SUCCESS)
		post(up, EV_DISCONNECTED, 0, 0, 0);
}

static void worker_thread(void *arg)
{
	struct mh_uplink *up = arg;

	for (;;) {
		uv_mutex_lock(&up->rq_lock);
		while (!up->requests.len)
			uv_cond_wait(&up->rq_cond, &up->rq_lock);
		struct request *rq = (struct request *)mh_fifo_pop(&up->requests);
		uv_mutex_unlock(&up->rq_lock);

		enum request_kind kind = rq->kind;
		switch (kind) {
		case RQ_CONNECT:
			worker_connect(up, rq);
			break;
		case RQ_SEND:
			worker_send(up, rq);
			break;
		case RQ_SUBSCRIBE:
			worker_subscribe(up, rq);
			break;
		case RQ_DISCONNECT:
			worker_disconnect(up);
			break;
		case RQ_DESTROY:
			/* paho joins its threads here; no callback runs after it returns. */
			MQTTAsync_destroy(&up->client);
			break;
		}
		free(rq);
		if (kind == RQ_DESTROY)
			break;
	}
	post(up, EV_CLOSED, 0, 0, 0);
}

/* ---- loop thread ----------------------------------------------------- */

static void on_retry(uv_timer_t *t);

/* This attempt's delay: half the step, plus up to another half at random. */
static unsigned reconnect_delay(struct mh_uplink *up)
{
	uint32_t x = up->jitter;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	up->jitter = x;
	return up->backoff_ms / 2 + x % (up->backoff_ms / 2 + 1);
}

static void schedule_reconnect(struct mh_uplink *up)
{
	if (up->stop_requested)
		return;
	up->state = ST_DISCONNECTED;
	uv_timer_start(&up->retry, on_retry, reconnect_delay(up), 0);
}

static void connect_now(struct mh_uplink *up)
{
	struct request *rq;

	up->gen++;
	rq = request_new(RQ_CONNECT, up->gen, NULL, up->offline, strlen(up->offline));
	if (!rq) {
		schedule_reconnect(up);
		return;
	}
	up->state = ST_CONNECTING;
	submit(up, rq);
}

static void on_retry(uv_timer_t *t)
{
	struct mh_uplink *up = t->data;

	if (up->state == ST_DISCONNECTED || up->state == ST_DISCONNECTING)
		connect_now(up);
}

/* Ask the worker to publish; a QoS 1 publish is tracked (its outcome comes back as an event). */
static int publish(struct mh_uplink *up, const char *topic, const void *payload, size_t len,
	int qos, int retained, uint64_t seq)
{
	struct request *rq = request_new(RQ_SEND, up->gen, topic, payload, len);

	if (!rq)
		return -ENOMEM;
	rq->seq = seq;
	rq->qos = qos;
	rq->retained = retained;
	rq->track = qos > 0;
	submit(up, rq);
	return 0;
}

static int publish_record(void *ud, const struct mh_record *rec)
{
	struct mh_uplink *up = ud;
	char topic[512];
	int rc;

	snprintf(topic, sizeof(topic), "%s/%.*s", up->cfg->mqtt.topic_prefix,
		(int)rec->subtopic_len, rec->subtopic);
	rc = publish(up, topic, rec->payload, rec->payload_len, 1, 0, rec->seq);
	if (rc < 0) {
		/* Nothing was sent; the record stays and goes out with the next pump. */
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
	if (up->state != ST_CONNECTED)
		return;
	/* The store's commit took the deletions along: the next ones wait afresh. */
	if (!mh_outbox_acks_pending(up->outbox))
		uv_timer_stop(&up->ack_timer);
	if (up->in_flight >= up->cfg->mqtt.window)
		return;
	int n = mh_outbox_scan(up->outbox, up->cursor, up->cfg->mqtt.window - up->in_flight,
		publish_record, up);
	if (n < 0)
		mh_log_err(MQTT, "cannot read the store: %s", strerror(-n));
}

static void publish_status(struct mh_uplink *up, const char *payload)
{
	int rc = publish(up, up->status_topic, payload, strlen(payload), 1, 1, 0);

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
	uv_mutex_destroy(&up->rq_lock);
	uv_cond_destroy(&up->rq_cond);
	uv_mutex_destroy(&up->in_lock);
	uv_cond_destroy(&up->in_cond);
	free(up->uri);
	mh_secret_free(up->password, PASSWORD_CAP);
	free(up);
	if (done)
		done(ud);
}

static void commit_acks(struct mh_uplink *up)
{
	uv_timer_stop(&up->ack_timer);
	if (!mh_outbox_acks_pending(up->outbox))
		return;
	/* A deletion that fails stays pending in the outbox and is written next time. */
	mh_outbox_flush_acks(up->outbox);
}

static void on_ack_timer(uv_timer_t *t)
{
	commit_acks(t->data);
}

/* Have the worker destroy the client; EV_CLOSED finishes the job. */
static void close_all(struct mh_uplink *up)
{
	struct request *rq;

	if (up->state == ST_CLOSING || up->state == ST_CLOSED)
		return;
	up->state = ST_CLOSING;
	uv_timer_stop(&up->retry);
	uv_timer_stop(&up->stop_timer);
	/* Without memory for a request, reuse nothing: wait and try again. */
	while (!(rq = request_new(RQ_DESTROY, up->gen, NULL, NULL, 0)))
		uv_sleep(10);
	submit(up, rq);
}

/* The worker is gone: nothing can call back any more. */
static void finish_closed(struct mh_uplink *up)
{
	uv_thread_join(&up->worker);
	up->state = ST_CLOSED;
	commit_acks(up);
	up->open_handles = 4;
	uv_close((uv_handle_t *)&up->wake, finish_close);
	uv_close((uv_handle_t *)&up->retry, finish_close);
	uv_close((uv_handle_t *)&up->stop_timer, finish_close);
	uv_close((uv_handle_t *)&up->ack_timer, finish_close);
}

static void disconnect(struct mh_uplink *up)
{
	struct request *rq;

	if (up->state == ST_DISCONNECTING || up->state >= ST_CLOSING)
		return;
	rq = request_new(RQ_DISCONNECT, up->gen, NULL, NULL, 0);
	if (!rq) {
		if (up->stop_requested)
			close_all(up);
		else
			schedule_reconnect(up);
		return;
	}
	up->state = ST_DISCONNECTING;
	submit(up, rq);
	/* Should paho never confirm the disconnect, connect again all the same. */
	if (!up->stop_requested)
		uv_timer_start(&up->retry, on_retry, 5000, 0);
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

static void link_lost(struct mh_uplink *up)
{
	up->down_since = mh_clock_mono_ms();
	if (!up->down_since)
		up->down_since = 1;
	if (up->on_link)
		up->on_link(up->link_ud, false, 0);
}

/* A message on the command topic: the owner deals with it, then paho may acknowledge it. */
static void handle_message(struct mh_uplink *up, struct event *ev)
{
	up->on_inbound(up->inbound_ud, ev->in);
	uv_mutex_lock(&up->in_lock);
	ev->done = true;
	uv_cond_broadcast(&up->in_cond);
	uv_mutex_unlock(&up->in_lock);
}

static void handle_event(struct mh_uplink *up, struct event *ev)
{
	switch (ev->kind) {
	case EV_CONNECTED:
		if (ev->gen != up->gen || up->state != ST_CONNECTING)
			break;
		mh_log_notice(MQTT, "connected to %s", up->uri);
		up->state = ST_CONNECTED;
		up->backoff_ms = RECONNECT_MIN_MS;
		up->failed_connects = 0;
		up->in_flight = 0;
		/* Rewind: everything not acknowledged goes out again, oldest first. */
		commit_acks(up);
		up->cursor = 0;
		publish_status(up, up->online);
		/* Told only now: what the owner stores then goes out after the rewind. */
		if (up->down_since) {
			int64_t outage = mh_clock_mono_ms() - up->down_since;
			up->down_since = 0;
			if (up->on_link)
				up->on_link(up->link_ud, true, outage);
		}
		/* The session keeps the subscription; ask again all the same, it costs nothing. */
		if (up->on_inbound) {
			struct request *rq = request_new(RQ_SUBSCRIBE, up->gen, NULL, NULL, 0);
			if (rq)
				submit(up, rq);
			else
				mh_log_err(MQTT, "cannot subscribe to %s: out of memory", up->cmd_topic);
		}
		break;
	case EV_CONNECT_FAILED:
		if (ev->gen != up->gen || up->state != ST_CONNECTING)
			break;
		if (!up->failed_connects++ ||
			mh_clock_mono_ms() - up->fail_logged >= CONNECT_FAIL_LOG_MS) {
			mh_log_warn(MQTT, "cannot connect to %s (code %d, %u tries); trying again every "
					  "%u ms or less",
				up->uri, ev->code, up->failed_connects, RECONNECT_MAX_MS);
			up->fail_logged = mh_clock_mono_ms();
		}
		if (!up->down_since)
			link_lost(up);
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
		link_lost(up);
		schedule_reconnect(up);
		break;
	case EV_PUBACK:
		/* Acknowledged is acknowledged, whichever connection it came on. */
		mh_outbox_ack(up->outbox, ev->seq);
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
	case EV_SUBSCRIBED:
		if (ev->gen != up->gen)
			break;
		if (ev->code == 0x80)
			mh_log_err(MQTT, "the broker refused the subscription to %s: no commands "
					 "can arrive; trying again at the next connection",
				up->cmd_topic);
		else
			mh_log_info(MQTT, "subscribed to %s", up->cmd_topic);
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
	case EV_MESSAGE:
		handle_message(up, ev);
		break;
	case EV_CLOSED:
		finish_closed(up);
		break;
	}
}

static void on_wake(uv_async_t *a)
{
	struct mh_uplink *up = a->data;
	struct mh_queue_node *node = mh_queue_take_all(&up->events);

	while (node) {
		struct mh_queue_node *next = node->next;
		struct event *ev = (struct event *)node;
		bool owned = ev->kind != EV_MESSAGE; /* a message event is paho's, on its stack */
		if (up->state != ST_CLOSED)
			handle_event(up, ev);
		if (owned)
			free(node);
		node = next;
	}
	if (up->state >= ST_CLOSING)
		return;
	size_t acks = mh_outbox_acks_pending(up->outbox);
	if (acks >= ACK_COMMIT_BATCH)
		commit_acks(up);
	else if (acks && !uv_is_active((uv_handle_t *)&up->ack_timer))
		uv_timer_start(&up->ack_timer, on_ack_timer, ACK_LINGER_MS, 0);
	if (up->state == ST_STOPPING)
		maybe_finish_stop(up);
	else
		mh_uplink_pump(up);
}

/* The first line of @file, in secret memory; NULL with errno set. */
static char *read_password(const char *file)
{
	char *pw = mh_secret_alloc(PASSWORD_CAP);
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	ssize_t n = -1;
	int err;

	/* read(2), not stdio: no buffer of its own keeps a copy. */
	if (pw && fd >= 0)
		n = read(fd, pw, PASSWORD_CAP - 1);
	err = !pw ? ENOMEM : errno;
	if (fd >= 0)
		close(fd);
	if (n < 0) {
		mh_secret_free(pw, PASSWORD_CAP);
		errno = err;
		return NULL;
	}
	pw[strcspn(pw, "\r\n")] = '\0';
	return pw;
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
	int64_t started_ms, mh_uplink_inbound_fn on_command, void *ud, struct mh_uplink **out)
{
	struct mh_uplink *up = calloc(1, sizeof(*up));
	const char *uri = cfg->mqtt.uri;
	const char *failpoint = getenv("MH_FAILPOINT");
	int rc;

	if (!up)
		return -ENOMEM;
	up->loop = loop;
	up->cfg = cfg;
	up->outbox = outbox;
	up->backoff_ms = RECONNECT_MIN_MS;
	up->jitter = (uint32_t)(uv_hrtime() ^ ((uint64_t)getpid() << 16)) | 1;
	up->on_inbound = on_command;
	up->inbound_ud = ud;
	up->die_before_puback = failpoint && !strcmp(failpoint, "before_puback");
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
	snprintf(up->cmd_topic, sizeof(up->cmd_topic), "%s/cmd", cfg->mqtt.topic_prefix);
	make_status(up, started_ms);

	/* Made here, before any thread, so a URI paho refuses fails the start. */
	rc = create_client(up);
	if (rc < 0) {
		mh_secret_free(up->password, PASSWORD_CAP);
		free(up->uri);
		free(up);
		return rc;
	}

	mh_require(mh_queue_init(&up->events, &up->wake) == 0);
	mh_require(uv_mutex_init(&up->rq_lock) == 0);
	mh_require(uv_cond_init(&up->rq_cond) == 0);
	mh_require(uv_mutex_init(&up->in_lock) == 0);
	mh_require(uv_cond_init(&up->in_cond) == 0);
	mh_require(uv_thread_create(&up->worker, worker_thread, up) == 0);
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
	char topic[512];

	if (up->state != ST_CONNECTED)
		return -ENOTCONN;
	snprintf(topic, sizeof(topic), "%s/%s", up->cfg->mqtt.topic_prefix, subtopic);
	return publish(up, topic, payload, strlen(payload), 0, retained, 0);
}

void mh_uplink_watch(struct mh_uplink *up, void (*fn)(void *ud, bool up, int64_t outage_ms),
	void *ud)
{
	up->on_link = fn;
	up->link_ud = ud;
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
