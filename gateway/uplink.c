// SPDX-License-Identifier: MIT
#include "uplink.h"

#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "queue.h"
#include "outbox.h"
#include "schedule.h"
#include "secret.h"

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
 */
#define ACK_COMMIT_MS 100
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
	unsigned acks_uncommitted;
	int open_handles;

	/* The worker and what only it touches. */
	uv_thread_t worker;
	uv_mutex_t rq_lock;
	uv_cond_t rq_cond;
	struct mh_fifo requests;
	MQTTAsync client;
	bool client_fresh; /* created and never connected */
	/* The context of the connect in progress (one at a time: a connect is requested only when none is). */
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

/* ---- the worker: TLS ------------------------------------------------ */

/*
 * The TLS policy of paho's connection, which the diagnosis below uses too.
 * paho 1.3.12 built with OpenSSL 1.1 or later ignores sslVersion and sets
 * its context's security level to 1, below Debian's 2; and OpenSSL 3.0 at
 * either level still completes a TLS 1.1 handshake with RSA key transport.
 * The cipher list is paho's only lever: Debian's defaults without the
 * ciphers defined before TLS 1.2, so that a broker offering only TLS 1.0 or
 * 1.1 has no cipher in common with the gateway (TLS 1.3's suites are set
 * apart and stay), and @SECLEVEL=2 to bring back Debian's floor of 112-bit
 * keys (RSA and DH of 2048 bits, ECC of 224).
 */
#define TLS_CIPHERS "DEFAULT:!SSLv3:!TLSv1:@SECLEVEL=2"
#define TLS_DIAGNOSIS_MS 10000 /* as paho's connectTimeout */
#define TLS_VERDICT_MS 3000    /* TLS 1.3: how long the broker may take to judge our certificate */

/*
 * Whether the next connect starts with a diagnosis: the first one, so that
 * a broken TLS setup is named at start, and each one after a failure. Set
 * on paho's thread, taken by the worker. The daemon runs one uplink; were
 * there more, one's failure would only make another diagnose once more.
 */
static atomic_bool tls_diagnose_next = true;

/*
 * paho's ssl_error_cb, called on paho's thread with OpenSSL's error queue
 * when a TLS call of paho's fails, one "tid:error:code:library:function:
 * reason:file:line:data" line per error. It only logs: the reason and its
 * data, which is what an operator can act on.
 */
static int tls_log_error(const char *str, size_t len, void *ctx)
{
	const struct mh_uplink *up = ctx;
	const char *field[9] = { str };
	const char *end = str + len;
	size_t n = 1;

	while (end > str && (end[-1] == '\n' || end[-1] == ':'))
		end--;
	for (const char *p = str; p < end && n < 9; p++)
		if (*p == ':')
			field[n++] = p + 1;
	if (n < 7)
		mh_log_warn(MQTT, "TLS to %s: %.*s", up->uri, (int)(end - str), str);
	else if (n < 9)
		mh_log_warn(MQTT, "TLS to %s: %.*s", up->uri, (int)(field[6] - 1 - field[5]),
			field[5]);
	else
		mh_log_warn(MQTT, "TLS to %s: %.*s (%.*s)", up->uri,
			(int)(field[6] - 1 - field[5]), field[5], (int)(end - field[8]), field[8]);
	return 1;
}

/* paho's connect failed: the next attempt finds out why first. */
static void tls_on_connect_fail(void *ctx, MQTTAsync_failureData *resp)
{
	atomic_store(&tls_diagnose_next, true);
	on_connect_fail(ctx, resp);
}

/* What a diagnostic handshake found out; OpenSSL's callbacks fill it in. */
struct tls_probe {
	int verify_err; /* the first certificate our verification refused, and why */
	int verify_depth;
	char subject[256];
	char issuer[256];
	char validity[96];
	bool cert_requested; /* the broker sent a CertificateRequest */
	bool ticket;         /* TLS 1.3: a session ticket came, so the broker accepted us */
	bool unreachable;    /* why is about the network, not TLS */
	char why[2048];
};

/* @name as RFC 2253 text; OpenSSL escapes what a peer could use to forge a log line. */
static void tls_name(X509_NAME *name, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = 0;

	if (bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
		n = BIO_read(bio, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
}

static void tls_validity(const X509 *cert, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = 0;

	if (bio && BIO_puts(bio, "valid from ") > 0 &&
		ASN1_TIME_print_ex(bio, X509_get0_notBefore(cert), ASN1_DTFLGS_ISO8601) &&
		BIO_puts(bio, " to ") > 0 &&
		ASN1_TIME_print_ex(bio, X509_get0_notAfter(cert), ASN1_DTFLGS_ISO8601))
		n = BIO_read(bio, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
}

/* The verification's verdict on each certificate of the chain: the first refusal is kept. */
static int tls_probe_on_verify(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_probe *p = SSL_get_app_data(ssl);
	X509 *cert = X509_STORE_CTX_get_current_cert(sctx);

	if (!ok && !p->verify_err) {
		p->verify_err = X509_STORE_CTX_get_error(sctx);
		p->verify_depth = X509_STORE_CTX_get_error_depth(sctx);
		if (cert) {
			tls_name(X509_get_subject_name(cert), p->subject, sizeof(p->subject));
			tls_name(X509_get_issuer_name(cert), p->issuer, sizeof(p->issuer));
			tls_validity(cert, p->validity, sizeof(p->validity));
		}
	}
	return ok;
}

static void tls_probe_on_message(int write_p, int version, int content_type, const void *buf,
	size_t len, SSL *ssl, void *arg)
{
	struct tls_probe *p = SSL_get_app_data(ssl);

	if (!write_p && content_type == SSL3_RT_HANDSHAKE && len &&
		((const unsigned char *)buf)[0] == SSL3_MT_CERTIFICATE_REQUEST)
		p->cert_requested = true;
}

static int tls_probe_on_ticket(SSL *ssl, SSL_SESSION *session)
{
	struct tls_probe *p = SSL_get_app_data(ssl);

	p->ticket = true;
	return 0; /* not kept */
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

/*
 * Wait until @fd is ready for @events: 1 when it is, 0 at @deadline, -1
 * when a request waits for the worker (a stop: the diagnosis gives way).
 */
static int tls_probe_wait(struct mh_uplink *up, int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		uint64_t now = now_ms();
		bool waiting;
		int rc;

		uv_mutex_lock(&up->rq_lock);
		waiting = up->requests.len > 0;
		uv_mutex_unlock(&up->rq_lock);
		if (waiting)
			return -1;
		if (now >= deadline)
			return 0;
		rc = poll(&pfd, 1, deadline - now < 100 ? (int)(deadline - now) : 100);
		if (rc > 0 || (rc < 0 && errno != EINTR))
			return 1; /* the next call on the socket says what is wrong, if anything */
	}
}

/* "ssl://host:port" into its host (an IPv6 address without brackets) and port (default 8883). */
static int tls_host_port(const char *uri, char *host, size_t hlen, char *port, size_t plen)
{
	const char *h = strstr(uri, "://");
	const char *end, *hend, *colon;

	h = h ? h + 3 : uri;
	end = h + strcspn(h, "/");
	if (*h == '[') {
		hend = memchr(h, ']', (size_t)(end - h));
		if (!hend)
			return -EINVAL;
		colon = hend + 1 < end && hend[1] == ':' ? hend + 1 : NULL;
		h++;
	} else {
		colon = memrchr(h, ':', (size_t)(end - h));
		hend = colon ? colon : end;
	}
	if ((size_t)(hend - h) >= hlen || (colon && (size_t)(end - colon - 1) >= plen))
		return -EINVAL;
	snprintf(host, hlen, "%.*s", (int)(hend - h), h);
	if (colon)
		snprintf(port, plen, "%.*s", (int)(end - colon - 1), colon + 1);
	else
		snprintf(port, plen, "8883");
	return 0;
}

/* A TCP connection to @host @port, or -1 with the reason in @p->why (none when it gave way). */
static int tls_probe_connect(struct mh_uplink *up, const char *host, const char *port,
	uint64_t deadline, struct tls_probe *p)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1, err = ETIMEDOUT;
	int rc = getaddrinfo(host, port, &hints, &res);

	p->unreachable = true;
	if (rc) {
		snprintf(p->why, sizeof(p->why), "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			socklen_t elen = sizeof(err);
			int w = tls_probe_wait(up, fd, POLLOUT, deadline);
			if (w < 0) {
				close(fd);
				freeaddrinfo(res);
				return -1;
			}
			if (w > 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) && !err)
				break;
			if (!w)
				err = ETIMEDOUT;
		} else {
			err = errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(p->why, sizeof(p->why), "cannot reach %s port %s: %s", host, port,
			strerror(err));
	else
		p->unreachable = false;
	return fd;
}

/* The names a certificate is for: its subjectAltName entries, else its subject. */
static void tls_cert_names(X509 *cert, char *buf, size_t len)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && used < len; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const unsigned char *data;
		char text[256];
		int n = 0, size;

		if (gn->type == GEN_DNS) {
			data = ASN1_STRING_get0_data(gn->d.dNSName);
			size = ASN1_STRING_length(gn->d.dNSName);
			/* What the name holds besides printable ASCII is shown as '?'. */
			for (n = 0; n < size && n < (int)sizeof(text) - 1; n++)
				text[n] = data[n] > 0x20 && data[n] < 0x7f ? (char)data[n] : '?';
			text[n] = '\0';
			n = snprintf(buf + used, len - used, "%sDNS:%s", used ? ", " : "", text);
		} else if (gn->type == GEN_IPADD &&
			inet_ntop(ASN1_STRING_length(gn->d.iPAddress) == 16 ? AF_INET6 : AF_INET,
				ASN1_STRING_get0_data(gn->d.iPAddress), text, sizeof(text))) {
			n = snprintf(buf + used, len - used, "%sIP:%s", used ? ", " : "", text);
		}
		used += n > 0 ? (size_t)n : 0;
	}
	GENERAL_NAMES_free(names);
	if (!buf[0]) {
		char subject[256];
		tls_name(X509_get_subject_name(cert), subject, sizeof(subject));
		snprintf(buf, len, "%s, without subjectAltName", subject);
	}
}

/* Why our verification refused the broker's certificate, in words. */
static void tls_explain_verify(const struct mh_uplink *up, struct tls_probe *p)
{
	const char *ca = up->cfg->mqtt.tls.ca;
	const char *hint = "";
	char trust[512];

	switch (p->verify_err) {
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		snprintf(trust, sizeof(trust), "; no CA in %s%s issued it",
			ca ? ca : "the system's CA store", ca ? " (mqtt.tls.ca)" : "");
		hint = trust;
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		hint = "; if it is not, this gateway's clock is wrong";
		break;
	}
	snprintf(p->why, sizeof(p->why),
		"refused the broker's certificate: %s "
		"(certificate %s, depth %d, issued by %s, %s)%s",
		X509_verify_cert_error_string(p->verify_err), p->subject, p->verify_depth,
		p->issuer, p->validity, hint);
}

/* Why the handshake failed, from OpenSSL's error queue, in words. */
static void tls_explain_failure(const struct mh_uplink *up, struct tls_probe *p, int ssl_err,
	const char *port)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	const char *what = e ? ERR_reason_error_string(e) : NULL;
	const char *cert = up->cfg->mqtt.tls.cert;

	if (!what)
		what = errno ? strerror(errno) : "connection closed";
	/*
	 * An alert from the broker. Its reason names it: OpenSSL 3.0's alert
	 * names lack TLS 1.3's ("certificate required").
	 */
	if (reason > SSL_AD_REASON_OFFSET) {
		int alert = reason - SSL_AD_REASON_OFFSET;

		if (p->cert_requested && !cert)
			snprintf(p->why, sizeof(p->why),
				"the broker wants a client certificate (it answered \"%s\"): "
				"set mqtt.tls.cert and mqtt.tls.key",
				what);
		else if (p->cert_requested)
			snprintf(p->why, sizeof(p->why),
				"the broker refused this gateway's certificate %s (mqtt.tls.cert): "
				"it answered \"%s\"",
				cert, what);
		else if (alert == SSL_AD_PROTOCOL_VERSION)
			snprintf(p->why, sizeof(p->why),
				"the broker offers only TLS versions before 1.2, which this "
				"gateway refuses (it answered \"%s\")",
				what);
		else if (alert == SSL_AD_HANDSHAKE_FAILURE || alert == SSL_AD_INSUFFICIENT_SECURITY)
			snprintf(p->why, sizeof(p->why),
				"the broker has no cipher in common with this gateway, which takes "
				"TLS 1.2 or later and 112-bit keys (it answered \"%s\")",
				what);
		else
			snprintf(p->why, sizeof(p->why), "the broker ended the handshake: \"%s\"",
				what);
	} else if (reason == SSL_R_UNSUPPORTED_PROTOCOL) {
		snprintf(p->why, sizeof(p->why),
			"the broker offers only TLS versions before 1.2, which this gateway "
			"refuses (%s)",
			what);
	} else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
		reason == SSL_R_UNEXPECTED_EOF_WHILE_READING || ssl_err == SSL_ERROR_SYSCALL ||
		ssl_err == SSL_ERROR_ZERO_RETURN) {
		snprintf(p->why, sizeof(p->why),
			"the broker does not speak TLS on port %s, or dropped the handshake (%s); "
			"a plain MQTT port takes a tcp:// URI, which sends everything in clear",
			port, what);
	} else {
		snprintf(p->why, sizeof(p->why), "TLS handshake failed: %s", what);
	}
}

/* Set up @ctx as paho sets up its own: the same files and policy. Returns 0, or -1 with @p->why. */
static int tls_probe_context(const struct mh_uplink *up, SSL_CTX *ctx, struct tls_probe *p)
{
	const char *ca = up->cfg->mqtt.tls.ca, *cert = up->cfg->mqtt.tls.cert;
	const char *key = up->cfg->mqtt.tls.key ? up->cfg->mqtt.tls.key : cert;
	const char *what = NULL, *file = NULL;
	unsigned long e;

	/* paho's cipher list refuses TLS before 1.2 too; this names the refusal. */
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
		!SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS))
		what = "the TLS policy";
	else if (ca && !SSL_CTX_load_verify_locations(ctx, ca, NULL))
		what = "mqtt.tls.ca", file = ca;
	else if (!ca && !SSL_CTX_set_default_verify_paths(ctx))
		what = "the system's CA store";
	else if (cert && !SSL_CTX_use_certificate_chain_file(ctx, cert))
		what = "mqtt.tls.cert", file = cert;
	else if (cert && !SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM))
		what = "mqtt.tls.key", file = key;
	if (what) {
		const char *reason;

		e = ERR_peek_last_error();
		reason = e ? ERR_reason_error_string(e) : NULL;
		snprintf(p->why, sizeof(p->why), "cannot use %s%s%s%s: %s", what,
			file ? " (" : "", file ? file : "", file ? ")" : "",
			reason ? reason : "unknown error");
		return -1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_probe_on_verify);
	SSL_CTX_set_msg_callback(ctx, tls_probe_on_message);
	SSL_CTX_set_session_cache_mode(ctx,
		SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, tls_probe_on_ticket);
	return 0;
}

/*
 * paho's host check: the host as a DNS name (or the subject's CN, without
 * DNS names), else as an address. Returns 0, or -1 with @p->why.
 */
static int tls_probe_check_host(X509 *cert, const char *host, struct tls_probe *p)
{
	unsigned char addr[16];
	char names[512] = "nothing: the broker sent no certificate";
	bool is_ip;

	if (cert && (X509_check_host(cert, host, 0, 0, NULL) == 1 ||
			    X509_check_ip_asc(cert, host, 0) == 1))
		return 0;
	is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	if (cert)
		tls_cert_names(cert, names, sizeof(names));
	snprintf(p->why, sizeof(p->why),
		"refused the broker's certificate: %s (it is for %s, not %s)",
		X509_verify_cert_error_string(is_ip ? X509_V_ERR_IP_ADDRESS_MISMATCH
						    : X509_V_ERR_HOSTNAME_MISMATCH),
		names, host);
	return -1;
}

/*
 * TLS 1.3: the broker judges our certificate (or its absence) after the
 * handshake, so its verdict comes next: a session ticket, or an alert.
 * Returns 0 when it accepted the gateway (or said nothing), -1 with
 * @p->why when it refused it, -2 when the diagnosis gave way.
 */
static int tls_probe_verdict(struct mh_uplink *up, SSL *ssl, int fd, uint64_t deadline,
	const char *port, struct tls_probe *p)
{
	uint64_t until = now_ms() + TLS_VERDICT_MS;
	char byte;
	int rc, w;

	if (!p->cert_requested || SSL_version(ssl) != TLS1_3_VERSION)
		return 0;
	if (until > deadline)
		until = deadline;
	while (!p->ticket && (rc = SSL_read(ssl, &byte, 1)) <= 0 && !p->ticket) {
		int err = SSL_get_error(ssl, rc);
		unsigned long e = ERR_peek_last_error();

		if (err == SSL_ERROR_WANT_READ) {
			w = tls_probe_wait(up, fd, POLLIN, until);
			if (w <= 0)
				return w < 0 ? -2 : 0;
			continue;
		}
		if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) > SSL_AD_REASON_OFFSET)
			tls_explain_failure(up, p, err, port);
		else if (!up->cfg->mqtt.tls.cert)
			snprintf(p->why, sizeof(p->why),
				"the broker wants a client certificate (it closed the connection): "
				"set mqtt.tls.cert and mqtt.tls.key");
		else
			snprintf(p->why, sizeof(p->why),
				"the broker closed the connection on this gateway's certificate %s "
				"(mqtt.tls.cert)",
				up->cfg->mqtt.tls.cert);
		return -1;
	}
	return 0;
}

/*
 * paho says "code -1" for every failed TLS connect, and OpenSSL's error
 * queue, all ssl_error_cb sees, holds "certificate verify failed" whatever
 * is wrong with the certificate; a host name that does not match, a client
 * certificate the broker refuses after a TLS 1.3 handshake and a plaintext
 * port leave nothing there at all. So the worker finds out itself: one
 * handshake of its own to the broker, with paho's files and policy,
 * checking the name as paho does. It decides nothing (paho then connects
 * and verifies as it would without it): it names what is wrong, or logs
 * that the TLS setup is sound.
 */
static void tls_diagnose(struct mh_uplink *up)
{
	struct tls_probe p = { 0 };
	uint64_t deadline = now_ms() + TLS_DIAGNOSIS_MS;
	char host[256], port[16];
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	X509 *cert = NULL;
	int fd, rc, w;

	if (tls_host_port(up->uri, host, sizeof(host), port, sizeof(port)) < 0)
		return;
	ERR_clear_error();
	fd = tls_probe_connect(up, host, port, deadline, &p);
	if (fd < 0)
		goto out;
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(p.why, sizeof(p.why), "out of memory");
		goto out;
	}
	if (tls_probe_context(up, ctx, &p) < 0)
		goto out;
	ssl = SSL_new(ctx);
	if (!ssl) {
		snprintf(p.why, sizeof(p.why), "out of memory");
		goto out;
	}
	SSL_set_app_data(ssl, &p);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, host); /* as paho does, an address too */
	while ((rc = SSL_connect(ssl)) != 1) {
		int err = SSL_get_error(ssl, rc);
		if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
			if (p.verify_err)
				tls_explain_verify(up, &p);
			else
				tls_explain_failure(up, &p, err, port);
			goto out;
		}
		w = tls_probe_wait(up, fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
		if (w < 0)
			goto out;
		if (!w) {
			snprintf(p.why, sizeof(p.why),
				"no TLS handshake within %d s: is port %s a TLS port?",
				TLS_DIAGNOSIS_MS / 1000, port);
			goto out;
		}
	}
	cert = SSL_get1_peer_certificate(ssl);
	if (tls_probe_check_host(cert, host, &p) < 0 ||
		tls_probe_verdict(up, ssl, fd, deadline, port, &p) < 0)
		goto out;
	tls_name(X509_get_subject_name(cert), p.subject, sizeof(p.subject));
	tls_validity(cert, p.validity, sizeof(p.validity));
	mh_log_info(MQTT, "TLS to %s checked: %s, %s, broker certificate %s, %s", up->uri,
		SSL_get_version(ssl), SSL_get_cipher_name(ssl), p.subject, p.validity);
	SSL_shutdown(ssl);
out:
	if (p.why[0])
		mh_log(p.unreachable ? LOG_WARNING : LOG_ERR, MH_LOG_MQTT, "TLS to %s: %s",
			up->uri, p.why);
	X509_free(cert);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
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
		ssl.enabledCipherSuites = TLS_CIPHERS;
		ssl.ssl_error_cb = tls_log_error;
		ssl.ssl_error_context = up;
		opts.ssl = &ssl;
		opts.onFailure = tls_on_connect_fail;
		if (atomic_exchange(&tls_diagnose_next, false))
			tls_diagnose(up);
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
	if (up->state != ST_CONNECTED || up->in_flight >= up->cfg->mqtt.window)
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
	if (up->acks_uncommitted >= ACK_COMMIT_BATCH)
		commit_acks(up);
	else if (up->acks_uncommitted && !uv_is_active((uv_handle_t *)&up->ack_timer))
		uv_timer_start(&up->ack_timer, on_ack_timer, ACK_COMMIT_MS, 0);
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
