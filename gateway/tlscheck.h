/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The TLS policy of the uplink's paho connection, and a diagnosis of a
 * broker that TLS refuses. paho says "code -1" for every failed TLS
 * connect, and OpenSSL's error queue, all its ssl_error_cb sees, holds
 * "certificate verify failed" whatever is wrong with the certificate; a
 * host name that does not match, a client certificate the broker refuses
 * after a TLS 1.3 handshake and a plaintext port leave nothing there at
 * all. So the diagnosis makes one handshake of its own to the broker, with
 * paho's files and policy, checking the name as paho does, and logs what
 * is wrong or that the TLS setup is sound.
 */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Asked at least every 100 ms while the diagnosis waits on the network:
 * true makes it stop at once, logging nothing more.
 */
typedef bool (*mh_tlscheck_cancel_fn)(void *ud);

/*
 * The cipher list for paho's enabledCipherSuites: TLS 1.2 or later and
 * 112-bit keys. A static string.
 */
const char *mh_tlscheck_ciphers(void);

/*
 * paho's ssl_error_cb, called on paho's thread with @len bytes of
 * OpenSSL's error queue at @str; @ctx (ssl_error_context) is the URI, a
 * string that outlives the client. Logs the reason of each error as a
 * warning, nothing more; returns 1.
 */
int mh_tlscheck_log_error(const char *str, size_t len, void *ctx);

/*
 * One diagnostic handshake to the broker at @uri ("ssl://host[:port]")
 * with @cfg's mqtt.tls files and paho's policy: logs why the broker is
 * refused (an error; a warning when the network is the reason), or that
 * TLS to it is sound. It decides nothing: the caller connects as it
 * would without it. Blocks for up to 10 s (as paho's connectTimeout; name
 * resolution aside), or until @cancel(@ud) says true. Owns nothing after
 * it returns.
 */
void mh_tlscheck_explain(const struct mh_config *cfg, const char *uri, mh_tlscheck_cancel_fn cancel,
	void *ud);
