/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * DL/T 645-2007 over a serial line (termios). One link per port, used by one
 * thread at a time: send a request, collect the reply that answers it,
 * passing over line noise, echoes of our own request and replies that are
 * not ours. Follow-up frames (0x12) are collected into one value.
 */

#include <stddef.h>
#include <stdint.h>

#include "dlt645.h"
#include "serial.h"

struct mh_dlt645_link;

/*
 * Open @params->device raw at the given baud rate and parity (8E1 is the
 * DL/T 645 norm). A line that refuses the parity (a pty) is used without
 * it. The port is claimed for this link alone (see mh_serial_lock()) before
 * its settings are touched. Returns 0 and *@out, or a negative errno:
 *  -EBUSY      another process, or another link in this one, has the port
 *  -ENOENT, -ENODEV, -ENXIO  no such device (a USB adapter not plugged in)
 *  -EACCES     no permission to open it
 *  -EINVAL     a baud rate the link cannot do
 *  -ENOMEM, or what open() and tcsetattr() said otherwise
 */
int mh_dlt645_link_open(const struct mh_serial_params *params, struct mh_dlt645_link **out);

/* Close the port and free the link; NULL is a no-op. */
void mh_dlt645_link_free(struct mh_dlt645_link *link);

/*
 * Send @req and wait for the frame that answers it (mh_dlt645_is_reply_to),
 * into @rsp. The response timeout bounds the wait for the reply to begin:
 * the echo of @req (from a half-duplex adapter) and line noise do not begin
 * it. Once a meter's frame has begun, a pause of the byte timeout ends it.
 * Returns 0 (@rsp may be an abnormal reply), or:
 *  -ETIMEDOUT  no reply began within the response timeout, and nothing but
 *              the echo of @req came back
 *  -EBADMSG    other bytes came, but no valid reply to @req (noise, bad
 *              checksum, a frame cut short, a reply from another address)
 *  -ENODEV     the port is gone (hung up: the far end of a pty closed, a
 *              USB adapter unplugged). The link never works again: free it
 *              and open the device anew.
 *  -EIO        the port failed otherwise (it took no bytes, poll failed)
 */
int mh_dlt645_link_transact(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	struct mh_dlt645_frame *rsp);

/*
 * Send @req and expect no reply (broadcast time). Returns 0, -ENODEV or -EIO
 * as above, or -EINVAL for a frame that cannot be encoded.
 */
int mh_dlt645_link_send(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req);

/*
 * Read @di from the meter at @addr, following up (0x12) until the meter has
 * sent everything, and put the data after the identifier into @out. Returns
 * 0 with *@len; the errors of mh_dlt645_link_transact(); -ENODATA, -EACCES
 * or -EPROTO for an abnormal reply, its ERR byte in *@err; -EBADMSG also for
 * a reply about another identifier; -ENOSPC if @cap is too small.
 */
int mh_dlt645_link_read(struct mh_dlt645_link *link, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint32_t di, uint8_t *out, size_t cap, size_t *len, uint8_t *err);

/*
 * Ask the one meter on the line for its address (read address, 0x13, to
 * the AA..AA wildcard): for commissioning, with a single meter connected,
 * since several meters would all answer at once. Returns 0 with @addr, or
 * the errors of mh_dlt645_link_transact().
 */
int mh_dlt645_link_discover(struct mh_dlt645_link *link, uint8_t addr[MH_DLT645_ADDR_LEN]);

/*
 * What the link saw since it was opened, counted per exchange:
 *  frames           every request written, follow-ups and broadcasts included
 *  timeouts         -ETIMEDOUT: no reply began (an echo alone is no reply)
 *  checksum_errors  whole frames, by L and ending in 16, with a wrong CS
 *  garbled          -EBADMSG that nothing below explains (noise alone, a
 *                   frame cut short, a bad end byte), a reply of the wrong
 *                   shape (no data identifier, a follow-up out of sequence),
 *                   or one from our meter about something we did not ask
 *  wrong_address    replies from an address the request was not sent to
 *  echo             exchanges in which our request came back past its C byte
 *  late_replies     replies to the request that last went unanswered, or
 *                   any reply still on the line when the next request goes
 *  garbage_bytes    bytes dropped that were neither a frame nor FE/FF fill
 *  refusals         abnormal replies (D6: the ERR byte of a refusal)
 * A reply passed over does not fail the exchange by itself: a request
 * still gets its own reply after a stray one.
 */
void mh_dlt645_link_counters(const struct mh_dlt645_link *link, struct mh_link_counters *out);
