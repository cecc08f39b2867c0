/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * DL/T 645-2007 frames: building requests, encoding them for the wire,
 * decoding replies from a byte stream, and the data of the remote-control
 * (0x1C) command. Pure: no I/O and no allocation; every object lives in
 * caller storage.
 *
 * A frame on the wire is
 *	[FE x 0..4] 68 A0 A1 A2 A3 A4 A5 68 C L DATA[L] CS 16 [FF ...]
 * A0 is the least significant byte of the 12-digit BCD address, every DATA
 * byte travels as value + 0x33, and CS is the sum modulo 256 of every byte
 * from the first 68 through the last DATA byte. Multi-byte data fields
 * (data identifiers, numbers, dates) travel least significant byte first.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MH_DLT645_ADDR_LEN 6
/* The largest L the standard allows (a read reply carries at most 200 bytes). */
#define MH_DLT645_MAX_DATA 200
/* Preamble bytes (FE) a sender may put in front of a frame. */
#define MH_DLT645_MAX_PREAMBLE 4
/* 68 + address + 68 + C + L, then CS + 16: the bytes around DATA. */
#define MH_DLT645_OVERHEAD 12
/* Largest encoded frame, preamble included. */
#define MH_DLT645_MAX_FRAME (MH_DLT645_MAX_PREAMBLE + MH_DLT645_OVERHEAD + MH_DLT645_MAX_DATA)

/* Function codes: the low five bits of C in a request. */
enum mh_dlt645_code {
	MH_DLT645_BROADCAST_TIME = 0x08,
	MH_DLT645_READ = 0x11,
	MH_DLT645_READ_FOLLOWUP = 0x12,
	MH_DLT645_READ_ADDRESS = 0x13,
	MH_DLT645_WRITE = 0x14,
	MH_DLT645_FREEZE = 0x16,
	MH_DLT645_REMOTE_CONTROL = 0x1C,
};

/* Bits of C. */
#define MH_DLT645_C_REPLY 0x80	  /* D7: set in every frame a meter sends */
#define MH_DLT645_C_ABNORMAL 0x40 /* D6: the meter refused; DATA is the ERR byte */
#define MH_DLT645_C_FOLLOWUP 0x20 /* D5: more data follows, fetch it with 0x12 */
#define MH_DLT645_C_FUNCTION 0x1F

/* Bits of the ERR byte of an abnormal reply. */
enum mh_dlt645_err_bit {
	MH_DLT645_ERR_OTHER = 0x01,
	MH_DLT645_ERR_NO_DATA = 0x02,
	MH_DLT645_ERR_AUTH = 0x04, /* password error or unauthorised */
	MH_DLT645_ERR_BAUD = 0x08,
	MH_DLT645_ERR_YEAR_ZONES = 0x10,
	MH_DLT645_ERR_DAILY_PERIODS = 0x20,
	MH_DLT645_ERR_TARIFFS = 0x40,
};

/* N1 of a remote-control command. */
enum mh_dlt645_relay_action {
	MH_DLT645_RELAY_TRIP = 0x1A,
	MH_DLT645_RELAY_CLOSE_PERMIT = 0x1B, /* closes when the customer holds the button */
	MH_DLT645_RELAY_CLOSE = 0x1C,	     /* closes at once */
	MH_DLT645_ALARM_ON = 0x2A,
	MH_DLT645_ALARM_OFF = 0x2B,
	MH_DLT645_KEEP_POWER_ON = 0x3A,
	MH_DLT645_KEEP_POWER_OFF = 0x3B,
};

/* One decoded frame. */
struct mh_dlt645_frame {
	uint8_t addr[MH_DLT645_ADDR_LEN]; /* wire order: addr[0] holds the lowest two digits */
	uint8_t control;		  /* the full C byte */
	uint8_t len;			  /* L */
	uint8_t data[MH_DLT645_MAX_DATA]; /* without the 0x33 offset */
};

/* Password and operator of a write or remote-control command. */
struct mh_dlt645_auth {
	uint8_t level;		  /* PA: password level, e.g. 0x02 */
	uint8_t password[3];	  /* P0 P1 P2 as sent: P0 holds the lowest two digits */
	uint8_t operator_code[4]; /* C0..C3 as sent */
};

/* Plain (not ESAM-encrypted) remote-control command. */
struct mh_dlt645_control {
	struct mh_dlt645_auth auth;
	enum mh_dlt645_relay_action action; /* N1 */
	struct tm deadline; /* meter local time after which the meter ignores the command */
};

/*
 * Stream decoder on caller storage: feed it bytes as they arrive, then pop
 * frames. The counters are for diagnostics and only ever grow; read them,
 * do not write them.
 */
struct mh_dlt645_stream {
	uint8_t buf[2 * MH_DLT645_MAX_FRAME];
	size_t len;
	uint64_t garbage; /* bytes dropped that were neither a frame nor FE/FF fill */
	uint64_t skipped; /* valid frames mh_dlt645_stream_next_reply() passed over */
	uint64_t bad_checksum; /* whole frames (by L, ending in 16) dropped for a wrong CS */
};

/* Address 99 99 99 99 99 99, for broadcast time and broadcast freeze. */
extern const uint8_t mh_dlt645_addr_broadcast[MH_DLT645_ADDR_LEN];
/* Address AA AA AA AA AA AA, which every meter on the bus answers. */
extern const uint8_t mh_dlt645_addr_wildcard[MH_DLT645_ADDR_LEN];

/*
 * Convert @ndigits decimal digits, most significant first, into
 * @ndigits / 2 BCD bytes least significant first, as DL/T 645 sends
 * numbers: "123456" becomes 56 34 12. A pair "AA" (either case) becomes the
 * byte AA. Returns 0, or -EINVAL if @digits is not exactly @ndigits long,
 * @ndigits is odd or zero, or a pair is neither two decimal digits nor AA.
 */
int mh_dlt645_digits_parse(const char *digits, size_t ndigits, uint8_t *out);

/*
 * Parse a 12-character meter address ("000102030425") into wire order
 * (25 04 03 02 01 00). "AA" pairs are the wildcard, 99.. the broadcast
 * address. Returns 0 or -EINVAL.
 */
int mh_dlt645_addr_parse(const char *digits12, uint8_t addr[MH_DLT645_ADDR_LEN]);

/*
 * Write @addr as 12 characters plus NUL, most significant digit first.
 * Bytes that are not BCD are written as two uppercase hex digits ("AA").
 */
void mh_dlt645_addr_format(const uint8_t addr[MH_DLT645_ADDR_LEN], char out[13]);

/*
 * Fill @f with a frame of function or control byte @control to @addr
 * carrying @len bytes of @data (without the 0x33 offset). @data may be NULL
 * when @len is 0. Returns 0, or -EINVAL if @len exceeds MH_DLT645_MAX_DATA.
 */
int mh_dlt645_build(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint8_t control, const uint8_t *data, size_t len);

/* Read request (0x11) for data identifier @di. Returns 0. */
int mh_dlt645_build_read(
	struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN], uint32_t di);

/*
 * Follow-up read request (0x12) for @di, frame number @seq (1 for the first
 * follow-up after a reply with the D5 flag). Returns 0.
 */
int mh_dlt645_build_read_followup(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint32_t di, uint8_t seq);

/* Read-address request (0x13) to the wildcard address; the one meter on the bus answers. Returns 0.
 */
int mh_dlt645_build_read_address(struct mh_dlt645_frame *f);

/*
 * Write request (0x14): @di, the password and operator of @auth, then
 * @len bytes of @value as they go into the meter (least significant byte
 * first). Returns 0, or -EINVAL if the frame would exceed MH_DLT645_MAX_DATA.
 */
int mh_dlt645_build_write(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint32_t di, const struct mh_dlt645_auth *auth, const uint8_t *value, size_t len);

/*
 * Broadcast time (0x08) to the broadcast address, data ss mm hh DD MM YY
 * from @local (meter local time, years 2000..2099). Meters do not answer.
 * Returns 0, or -EINVAL for an out-of-range field.
 */
int mh_dlt645_build_broadcast_time(struct mh_dlt645_frame *f, const struct tm *local);

/*
 * Freeze command (0x16), data mm hh DD MM. A negative field is sent as 99,
 * "every": month < 0 freezes monthly on @day at @hour:@minute, month and
 * day < 0 daily, all but @minute < 0 hourly, all four < 0 at once.
 * Returns 0, or -EINVAL for an out-of-range field.
 */
int mh_dlt645_build_freeze(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	int month, int day, int hour, int minute);

/*
 * Plain remote-control command (0x1C), data
 * PA P0 P1 P2 C0 C1 C2 C3 N1 N2=00 ss mm hh DD MM YY.
 * Returns 0, or -EINVAL for an unknown action or a deadline out of range.
 */
int mh_dlt645_build_control(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	const struct mh_dlt645_control *c);

/*
 * Remote-control command (0x1C) whose whole data field @block (password
 * level, password, operator and the ESAM-encrypted command) was produced
 * by the head-end; it is sent unchanged. Returns 0, or -EINVAL if @len is
 * 0 or exceeds MH_DLT645_MAX_DATA.
 */
int mh_dlt645_build_control_passthrough(struct mh_dlt645_frame *f,
	const uint8_t addr[MH_DLT645_ADDR_LEN], const uint8_t *block, size_t len);

/*
 * Parse the data of a plain remote-control request back into @c (the
 * inverse of mh_dlt645_build_control(); simulators and tests use it).
 * Returns 0, -EINVAL if @f is not a 0x1C request, -EBADMSG if the data is
 * not 16 bytes, the action unknown or the deadline not BCD.
 */
int mh_dlt645_control_parse(const struct mh_dlt645_frame *f, struct mh_dlt645_control *c);

/*
 * Parse the data of a broadcast-time request into @local (fields down to
 * seconds; tm_wday, tm_yday are 0 and tm_isdst -1). Returns 0, -EINVAL if
 * @f is not a 0x08 frame, -EBADMSG if the data is malformed.
 */
int mh_dlt645_broadcast_time_parse(const struct mh_dlt645_frame *f, struct tm *local);

/*
 * Encode @f into @buf: @preamble FE bytes (0..4), the frame with +0x33
 * applied to DATA, checksum and 16. Returns the number of bytes written,
 * -ENOSPC if @cap is too small, -EINVAL if @preamble > 4 or f->len > 200.
 */
int mh_dlt645_encode(const struct mh_dlt645_frame *f, unsigned preamble, uint8_t *buf, size_t cap);

/*
 * Decode the first frame in @buf, which starts at or before a frame: FE
 * preamble and FF fill in front are skipped. Frames are delimited by L,
 * never by searching for 16. Always sets *@consumed to the bytes the caller
 * may drop. Returns
 *   0         a frame is in @out; *consumed ends after its 16;
 *   -EAGAIN   no complete frame yet; *consumed counts fill bytes only;
 *   -EBADMSG  garbage, a broken header or a bad checksum; drop *consumed
 *             bytes and call again.
 * A frame that is still incomplete is given up (-EBADMSG) when a complete,
 * valid frame starts later in @buf: that is a partial frame left by noise.
 */
int mh_dlt645_decode(const uint8_t *buf, size_t len, struct mh_dlt645_frame *out, size_t *consumed);

/* Start @s empty with zero counters. */
void mh_dlt645_stream_init(struct mh_dlt645_stream *s);

/* Drop buffered bytes (after a timeout, before a new request); keeps the counters. */
void mh_dlt645_stream_reset(struct mh_dlt645_stream *s);

/*
 * Append up to @n bytes of @p; *@used says how many were taken. Pop frames
 * with mh_dlt645_stream_next() until -EAGAIN, then feed the rest: after
 * that the buffer always has room for a whole frame. Returns 0, or
 * -ENOBUFS if @n > 0 and nothing fit.
 */
int mh_dlt645_stream_feed(struct mh_dlt645_stream *s, const uint8_t *p, size_t n, size_t *used);

/*
 * Pop the next complete, valid frame into @out, whatever its direction.
 * Garbage, broken and partial frames are dropped and counted. Returns 0,
 * or -EAGAIN when more bytes are needed.
 */
int mh_dlt645_stream_next(struct mh_dlt645_stream *s, struct mh_dlt645_frame *out);

/*
 * Like mh_dlt645_stream_next() but passes over frames that are not replies
 * (D7 clear), such as the echo of our own request on a half-duplex line.
 */
int mh_dlt645_stream_next_reply(struct mh_dlt645_stream *s, struct mh_dlt645_frame *out);

/*
 * Whether the bytes buffered in @s hold the beginning of a frame sent by a
 * meter (68, an address, 68, a control byte with D7 set), complete or not.
 * A link uses it to tell a reply that has begun from the echo of its own
 * request (D7 clear) and from line noise. Call it after feeding and before
 * popping, or a whole frame that came in one piece is gone before it looks.
 */
bool mh_dlt645_stream_reply_begun(const struct mh_dlt645_stream *s);

/* Whether @f was sent by a meter (D7). */
bool mh_dlt645_is_reply(const struct mh_dlt645_frame *f);

/* Whether @f is a meter's refusal (D7 and D6); its data[0] is ERR. */
bool mh_dlt645_is_abnormal(const struct mh_dlt645_frame *f);

/* Whether @f is a reply with more data to fetch by 0x12 (D7 and D5). */
bool mh_dlt645_has_followup(const struct mh_dlt645_frame *f);

/*
 * Whether @rsp answers @req: a reply (normal or abnormal) with the same
 * function, from the addressed meter (any meter for a wildcard request),
 * and for a normal read reply the same data identifier.
 */
bool mh_dlt645_is_reply_to(const struct mh_dlt645_frame *req, const struct mh_dlt645_frame *rsp);

/*
 * The outcome of reply @f as an errno, the one place ERR is translated:
 * 0 for a normal reply; for an abnormal one -EACCES (password or
 * unauthorised), else -ENODATA (no requested data), else -EPROTO, with the
 * ERR byte in *@err (0 if the reply carries none). Returns -EINVAL if @f is
 * not a reply.
 */
int mh_dlt645_reply_error(const struct mh_dlt645_frame *f, uint8_t *err);

/*
 * Find the data of a normal read (0x91, 0xB1) or follow-up (0x92, 0xB2)
 * reply: *@di its identifier, *@payload and *@len the bytes after it, and
 * for a follow-up *@seq its frame number (0 for a plain read; @seq may be
 * NULL). Returns 0, -EINVAL if @f is not a normal read reply, -EBADMSG if
 * it is too short to hold a data identifier.
 */
int mh_dlt645_read_payload(const struct mh_dlt645_frame *f, uint32_t *di, const uint8_t **payload,
	size_t *len, uint8_t *seq);

/*
 * Describe the set bits of @err in @buf, e.g. "no requested data, password
 * error/unauthorised"; always NUL-terminated, truncated to @len. Returns
 * @buf.
 */
const char *mh_dlt645_err_str(uint8_t err, char *buf, size_t len);
