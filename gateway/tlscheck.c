// SPDX-License-Identifier: MIT
#include "tlscheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

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

/* One diagnosis: the broker, the files, and the caller's say in when it stops. */
struct tls_check {
	const struct mh_config *cfg;
	const char *uri;
	mh_tlscheck_cancel_fn cancel;
	void *ud;
};

const char *mh_tlscheck_ciphers(void)
{
	return TLS_CIPHERS;
}

/*
 * paho's ssl_error_cb, called on paho's thread with OpenSSL's error queue
 * when a TLS call of paho's fails, one "tid:error:code:library:function:
 * reason:file:line:data" line per error. It only logs: the reason and its
 * data, which is what an operator can act on.
 */
int mh_tlscheck_log_error(const char *str, size_t len, void *ctx)
{
	const char *uri = ctx;
	const char *field[9] = { str };
	const char *end = str + len;
	size_t n = 1;

	while (end > str && (end[-1] == '\n' || end[-1] == ':'))
		end--;
	for (const char *p = str; p < end && n < 9; p++)
		if (*p == ':')
			field[n++] = p + 1;
	if (n < 7)
		mh_log_warn(MQTT, "TLS to %s: %.*s", uri, (int)(end - str), str);
	else if (n < 9)
		mh_log_warn(MQTT, "TLS to %s: %.*s", uri, (int)(field[6] - 1 - field[5]),
			field[5]);
	else
		mh_log_warn(MQTT, "TLS to %s: %.*s (%.*s)", uri,
			(int)(field[6] - 1 - field[5]), field[5], (int)(end - field[8]), field[8]);
	return 1;
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
 * when the caller cancels (a stop: the diagnosis gives way).
 */
static int tls_probe_wait(const struct tls_check *c, int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		uint64_t now = now_ms();
		int rc;

		if (c->cancel(c->ud))
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
static int tls_probe_connect(const struct tls_check *c, const char *host, const char *port,
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
			int w = tls_probe_wait(c, fd, POLLOUT, deadline);
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
static void tls_explain_verify(const struct tls_check *c, struct tls_probe *p)
{
	const char *ca = c->cfg->mqtt.tls.ca;
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
static void tls_explain_failure(const struct tls_check *c, struct tls_probe *p, int ssl_err,
	const char *port)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	const char *what = e ? ERR_reason_error_string(e) : NULL;
	const char *cert = c->cfg->mqtt.tls.cert;

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
static int tls_probe_context(const struct tls_check *c, SSL_CTX *ctx, struct tls_probe *p)
{
	const char *ca = c->cfg->mqtt.tls.ca, *cert = c->cfg->mqtt.tls.cert;
	const char *key = c->cfg->mqtt.tls.key ? c->cfg->mqtt.tls.key : cert;
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
static int tls_probe_verdict(const struct tls_check *c, SSL *ssl, int fd, uint64_t deadline,
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
			w = tls_probe_wait(c, fd, POLLIN, until);
			if (w <= 0)
				return w < 0 ? -2 : 0;
			continue;
		}
		if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) > SSL_AD_REASON_OFFSET)
			tls_explain_failure(c, p, err, port);
		else if (!c->cfg->mqtt.tls.cert)
			snprintf(p->why, sizeof(p->why),
				"the broker wants a client certificate (it closed the connection): "
				"set mqtt.tls.cert and mqtt.tls.key");
		else
			snprintf(p->why, sizeof(p->why),
				"the broker closed the connection on this gateway's certificate %s "
				"(mqtt.tls.cert)",
				c->cfg->mqtt.tls.cert);
		return -1;
	}
	return 0;
}

void mh_tlscheck_explain(const struct mh_config *cfg, const char *uri, mh_tlscheck_cancel_fn cancel,
	void *ud)
{
	const struct tls_check check = { .cfg = cfg, .uri = uri, .cancel = cancel, .ud = ud };
	const struct tls_check *c = &check;
	struct tls_probe p = { 0 };
	uint64_t deadline = now_ms() + TLS_DIAGNOSIS_MS;
	char host[256], port[16];
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	X509 *cert = NULL;
	int fd, rc, w;

	if (tls_host_port(c->uri, host, sizeof(host), port, sizeof(port)) < 0)
		return;
	ERR_clear_error();
	fd = tls_probe_connect(c, host, port, deadline, &p);
	if (fd < 0)
		goto out;
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(p.why, sizeof(p.why), "out of memory");
		goto out;
	}
	if (tls_probe_context(c, ctx, &p) < 0)
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
				tls_explain_verify(c, &p);
			else
				tls_explain_failure(c, &p, err, port);
			goto out;
		}
		w = tls_probe_wait(c, fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
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
		tls_probe_verdict(c, ssl, fd, deadline, port, &p) < 0)
		goto out;
	tls_name(X509_get_subject_name(cert), p.subject, sizeof(p.subject));
	tls_validity(cert, p.validity, sizeof(p.validity));
	mh_log_info(MQTT, "TLS to %s checked: %s, %s, broker certificate %s, %s", c->uri,
		SSL_get_version(ssl), SSL_get_cipher_name(ssl), p.subject, p.validity);
	SSL_shutdown(ssl);
out:
	if (p.why[0])
		mh_log(p.unreachable ? LOG_WARNING : LOG_ERR, MH_LOG_MQTT, "TLS to %s: %s",
			c->uri, p.why);
	X509_free(cert);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
}
