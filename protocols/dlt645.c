// SPDX-License-Identifier: MIT
#include "dlt645.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define START 0x68
#define END 0x16
#define PREAMBLE 0xFE
#define FILL 0xFF
#define OFFSET 0x33

const uint8_t mh_dlt645_addr_broadcast[MH_DLT645_ADDR_LEN] = {0x99, 0x99, 0x99, 0x99, 0x99, 0x99};
const uint8_t mh_dlt645_addr_wildcard[MH_DLT645_ADDR_LEN] = {0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA};

static int digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : -1;
}

static bool is_bcd(uint8_t b)
{
	return (b >> 4) <= 9 && (b & 0x0F) <= 9;
}

static uint8_t to_bcd(unsigned v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static unsigned from_bcd(uint8_t b)
{
	return (b >> 4) * 10 + (b & 0x0F);
}

int mh_dlt645_digits_parse(const char *digits, size_t ndigits, uint8_t *out)
{
	size_t nbytes = ndigits / 2;

	if (!digits || !out || ndigits == 0 || ndigits % 2 || strlen(digits) != ndigits)
		return -EINVAL;
	for (size_t i = 0; i < nbytes; i++) {
		/* Byte i (least significant first) comes from the pair counted from the end. */
		const char *pair = digits + ndigits - 2 * (i + 1);
		int hi = digit(pair[0]), lo = digit(pair[1]);

		if ((pair[0] == 'A' || pair[0] == 'a') && (pair[1] == 'A' || pair[1] == 'a'))
			out[i] = 0xAA;
		else if (hi >= 0 && lo >= 0)
			out[i] = (uint8_t)(hi << 4 | lo);
		else
			return -EINVAL;
	}
	return 0;
}

int mh_dlt645_addr_parse(const char *digits12, uint8_t addr[MH_DLT645_ADDR_LEN])
{
	uint8_t tmp[MH_DLT645_ADDR_LEN];
	int r = mh_dlt645_digits_parse(digits12, 2 * MH_DLT645_ADDR_LEN, tmp);

	/* Leave @addr untouched on failure. */
	if (r == 0)
		memcpy(addr, tmp, sizeof(tmp));
	return r;
}

void mh_dlt645_addr_format(const uint8_t addr[MH_DLT645_ADDR_LEN], char out[13])
{
	static const char hex[] = "0123456789ABCDEF";

	for (int i = 0; i < MH_DLT645_ADDR_LEN; i++) {
		uint8_t b = addr[MH_DLT645_ADDR_LEN - 1 - i];

		out[2 * i] = hex[b >> 4];
		out[2 * i + 1] = hex[b & 0x0F];
	}
	out[12] = '\0';
}

static void put_di(uint8_t *p, uint32_t di)
{
	p[0] = (uint8_t)di;
	p[1] = (uint8_t)(di >> 8);
	p[2] = (uint8_t)(di >> 16);
	p[3] = (uint8_t)(di >> 24);
}

static uint32_t get_di(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int mh_dlt645_build(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint8_t control, const uint8_t *data, size_t len)
{
	if (len > MH_DLT645_MAX_DATA || (len && !data))
		return -EINVAL;
	memcpy(f->addr, addr, MH_DLT645_ADDR_LEN);
	f->control = control;
	f->len = (uint8_t)len;
	if (len)
		memmove(f->data, data, len);
	return 0;
}

int mh_dlt645_build_read(
	struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN], uint32_t di)
{
	uint8_t d[4];

	put_di(d, di);
	return mh_dlt645_build(f, addr, MH_DLT645_READ, d, sizeof(d));
}

int mh_dlt645_build_read_followup(
	struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN], uint32_t di, uint8_t seq)
{
	uint8_t d[5];

	put_di(d, di);
	d[4] = seq;
	return mh_dlt645_build(f, addr, MH_DLT645_READ_FOLLOWUP, d, sizeof(d));
}

int mh_dlt645_build_read_address(struct mh_dlt645_frame *f)
{
	return mh_dlt645_build(f, mh_dlt645_addr_wildcard, MH_DLT645_READ_ADDRESS, NULL, 0);
}

int mh_dlt645_build_write(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint32_t di, const struct mh_dlt645_auth *auth, const uint8_t *value, size_t len)
{
	uint8_t d[MH_DLT645_MAX_DATA];

	if (!auth || len > sizeof(d) - 12 || (len && !value))
		return -EINVAL;
	put_di(d, di);
	d[4] = auth->level;
	memcpy(d + 5, auth->password, 3);
	memcpy(d + 8, auth->operator_code, 4);
	if (len)
		memcpy(d + 12, value, len);
	return mh_dlt645_build(f, addr, MH_DLT645_WRITE, d, 12 + len);
}

/* ss mm hh DD MM YY, the order of a broadcast time and a control deadline. */
static int put_datetime(uint8_t *p, const struct tm *t)
{
	int year = t->tm_year + 1900;

	if (year < 2000 || year > 2099 || t->tm_mon < 0 || t->tm_mon > 11 || t->tm_mday < 1 ||
		t->tm_mday > 31 || t->tm_hour < 0 || t->tm_hour > 23 || t->tm_min < 0 ||
		t->tm_min > 59 || t->tm_sec < 0 || t->tm_sec > 59)
		return -EINVAL;
	p[0] = to_bcd((unsigned)t->tm_sec);
	p[1] = to_bcd((unsigned)t->tm_min);
	p[2] = to_bcd((unsigned)t->tm_hour);
	p[3] = to_bcd((unsigned)t->tm_mday);
	p[4] = to_bcd((unsigned)t->tm_mon + 1);
	p[5] = to_bcd((unsigned)year - 2000);
	return 0;
}

static int get_datetime(const uint8_t *p, struct tm *t)
{
	for (int i = 0; i < 6; i++)
		if (!is_bcd(p[i]))
			return -EBADMSG;
	memset(t, 0, sizeof(*t));
	t->tm_sec = (int)from_bcd(p[0]);
	t->tm_min = (int)from_bcd(p[1]);
	t->tm_hour = (int)from_bcd(p[2]);
	t->tm_mday = (int)from_bcd(p[3]);
	t->tm_mon = (int)from_bcd(p[4]) - 1;
	t->tm_year = (int)from_bcd(p[5]) + 100;
	t->tm_isdst = -1;
	/* The ranges put_datetime() takes: what parses here must build again. */
	if (t->tm_sec > 59 || t->tm_min > 59 || t->tm_hour > 23 || t->tm_mday < 1 ||
		t->tm_mday > 31 || t->tm_mon < 0 || t->tm_mon > 11)
		return -EBADMSG;
	return 0;
}

int mh_dlt645_build_broadcast_time(struct mh_dlt645_frame *f, const struct tm *local)
{
	uint8_t d[6];
	int r = put_datetime(d, local);

	if (r)
		return r;
	return mh_dlt645_build(f, mh_dlt645_addr_broadcast, MH_DLT645_BROADCAST_TIME, d, sizeof(d));
}

int mh_dlt645_broadcast_time_parse(const struct mh_dlt645_frame *f, struct tm *local)
{
	if (f->control != MH_DLT645_BROADCAST_TIME)
		return -EINVAL;
	if (f->len != 6)
		return -EBADMSG;
	return get_datetime(f->data, local);
}

static int freeze_field(int v, int max, int min, uint8_t *out)
{
	if (v < 0) {
		*out = 0x99;
		return 0;
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = to_bcd((unsigned)v);
	return 0;
}

int mh_dlt645_build_freeze(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	int month, int day, int hour, int minute)
{
	uint8_t d[4];

	if (freeze_field(minute, 59, 0, &d[0]) || freeze_field(hour, 23, 0, &d[1]) ||
		freeze_field(day, 31, 1, &d[2]) || freeze_field(month, 12, 1, &d[3]))
		return -EINVAL;
	return mh_dlt645_build(f, addr, MH_DLT645_FREEZE, d, sizeof(d));
}

static bool action_known(int a)
{
	switch (a) {
	case MH_DLT645_RELAY_TRIP:
	case MH_DLT645_RELAY_CLOSE_PERMIT:
	case MH_DLT645_RELAY_CLOSE:
	case MH_DLT645_ALARM_ON:
	case MH_DLT645_ALARM_OFF:
	case MH_DLT645_KEEP_POWER_ON:
	case MH_DLT645_KEEP_POWER_OFF:
		return true;
	default:
		return false;
	}
}

int mh_dlt645_build_control(struct mh_dlt645_frame *f, const uint8_t addr[MH_DLT645_ADDR_LEN],
	const struct mh_dlt645_control *c)
{
	uint8_t d[16];

	if (!c || !action_known(c->action))
		return -EINVAL;
	d[0] = c->auth.level;
	memcpy(d + 1, c->auth.password, 3);
	memcpy(d + 4, c->auth.operator_code, 4);
	d[8] = (uint8_t)c->action;
	d[9] = 0x00; /* N2 is reserved */
	if (put_datetime(d + 10, &c->deadline))
		return -EINVAL;
	return mh_dlt645_build(f, addr, MH_DLT645_REMOTE_CONTROL, d, sizeof(d));
}

int mh_dlt645_build_control_passthrough(struct mh_dlt645_frame *f,
	const uint8_t addr[MH_DLT645_ADDR_LEN], const uint8_t *block, size_t len)
{
	if (!block || len == 0)
		return -EINVAL;
	return mh_dlt645_build(f, addr, MH_DLT645_REMOTE_CONTROL, block, len);
}

int mh_dlt645_control_parse(const struct mh_dlt645_frame *f, struct mh_dlt645_control *c)
{
	if (f->control != MH_DLT645_REMOTE_CONTROL)
		return -EINVAL;
	if (f->len != 16 || !action_known(f->data[8]))
		return -EBADMSG;
	memset(c, 0, sizeof(*c));
	c->auth.level = f->data[0];
	memcpy(c->auth.password, f->data + 1, 3);
	memcpy(c->auth.operator_code, f->data + 4, 4);
	c->action = (enum mh_dlt645_relay_action)f->data[8];
	return get_datetime(f->data + 10, &c->deadline);
}

int mh_dlt645_encode(const struct mh_dlt645_frame *f, unsigned preamble, uint8_t *buf, size_t cap)
{
	size_t n = preamble + MH_DLT645_OVERHEAD + f->len;
	uint8_t *p = buf, *start;
	uint8_t cs = 0;

	if (preamble > MH_DLT645_MAX_PREAMBLE || f->len > MH_DLT645_MAX_DATA)
		return -EINVAL;
	if (cap < n)
		return -ENOSPC;
	for (unsigned i = 0; i < preamble; i++)
		*p++ = PREAMBLE;
	start = p;
	*p++ = START;
	memcpy(p, f->addr, MH_DLT645_ADDR_LEN);
	p += MH_DLT645_ADDR_LEN;
	*p++ = START;
	*p++ = f->control;
	*p++ = f->len;
	for (unsigned i = 0; i < f->len; i++)
		*p++ = (uint8_t)(f->data[i] + OFFSET);
	for (const uint8_t *q = start; q < p; q++)
		cs = (uint8_t)(cs + *q);
	*p++ = cs;
	*p++ = END;
	return (int)n;
}

/* frame_check(): a whole frame, delimited by L and ending in 16, whose CS is wrong. */
#define BAD_CHECKSUM (-EILSEQ)

/*
 * Check the frame that starts with 68 at @b. Returns 0 when it is complete
 * and valid (it is MH_DLT645_OVERHEAD + b[9] bytes long), -EAGAIN when the
 * bytes so far are consistent with a frame, BAD_CHECKSUM when it is whole
 * but its CS is wrong, -EBADMSG when it is not a frame otherwise.
 */
static int frame_check(const uint8_t *b, size_t n)
{
	size_t L, total;
	uint8_t cs = 0;

	if (n < 8)
		return -EAGAIN;
	if (b[7] != START)
		return -EBADMSG;
	if (n < 10)
		return -EAGAIN;
	L = b[9];
	if (L > MH_DLT645_MAX_DATA)
		return -EBADMSG;
	total = MH_DLT645_OVERHEAD + L;
	if (n < total)
		return -EAGAIN;
	for (size_t i = 0; i < total - 2; i++)
		cs = (uint8_t)(cs + b[i]);
	if (b[total - 1] != END)
		return -EBADMSG;
	if (b[total - 2] != cs)
		return BAD_CHECKSUM;
	return 0;
}

/* Where the first complete, valid frame after @from starts in @b, or 0 if none does. */
static size_t later_frame(const uint8_t *b, size_t n, size_t from)
{
	for (size_t j = from + 1; j < n; j++)
		if (b[j] == START && frame_check(b + j, n - j) == 0)
			return j;
	return 0;
}

/* mh_dlt645_decode(), also saying whether what it gave up was a frame with a wrong CS. */
static int decode_frame(const uint8_t *buf, size_t len, struct mh_dlt645_frame *out,
	size_t *consumed, bool *bad_checksum)
{
	size_t i = 0, j;
	int r;

	*bad_checksum = false;
	while (i < len && (buf[i] == PREAMBLE || buf[i] == FILL))
		i++;
	if (i == len) {
		*consumed = i;
		return -EAGAIN;
	}
	if (buf[i] != START) {
		for (j = i + 1; j < len && buf[j] != START; j++)
			;
		*consumed = j;
		return -EBADMSG;
	}
	r = frame_check(buf + i, len - i);
	if (r == -EBADMSG || r == BAD_CHECKSUM) {
		/* Drop only this 68: a real frame may start inside what looked like one. */
		*bad_checksum = r == BAD_CHECKSUM;
		*consumed = i + 1;
		return -EBADMSG;
	}
	if (r == -EAGAIN) {
		j = later_frame(buf, len, i);
		if (j) {
			*consumed = j;
			return -EBADMSG;
		}
		*consumed = i;
		return -EAGAIN;
	}
	memcpy(out->addr, buf + i + 1, MH_DLT645_ADDR_LEN);
	out->control = buf[i + 8];
	out->len = buf[i + 9];
	for (size_t k = 0; k < out->len; k++)
		out->data[k] = (uint8_t)(buf[i + 10 + k] - OFFSET);
	*consumed = i + MH_DLT645_OVERHEAD + out->len;
	return 0;
}

int mh_dlt645_decode(const uint8_t *buf, size_t len, struct mh_dlt645_frame *out, size_t *consumed)
{
	bool bad_checksum;

	return decode_frame(buf, len, out, consumed, &bad_checksum);
}

void mh_dlt645_stream_init(struct mh_dlt645_stream *s)
{
	memset(s, 0, sizeof(*s));
}

void mh_dlt645_stream_reset(struct mh_dlt645_stream *s)
{
	s->len = 0;
}

int mh_dlt645_stream_feed(struct mh_dlt645_stream *s, const uint8_t *p, size_t n, size_t *used)
{
	size_t room = sizeof(s->buf) - s->len;
	size_t take = n < room ? n : room;

	*used = take;
	if (n > 0 && take == 0)
		return -ENOBUFS;
	memcpy(s->buf + s->len, p, take);
	s->len += take;
	return 0;
}

static void stream_drop(struct mh_dlt645_stream *s, size_t n, bool count)
{
	if (count)
		for (size_t i = 0; i < n; i++)
			if (s->buf[i] != PREAMBLE && s->buf[i] != FILL)
				s->garbage++;
	memmove(s->buf, s->buf + n, s->len - n);
	s->len -= n;
}

int mh_dlt645_stream_next(struct mh_dlt645_stream *s, struct mh_dlt645_frame *out)
{
	for (;;) {
		size_t used = 0;
		bool bad_checksum;
		int r = decode_frame(s->buf, s->len, out, &used, &bad_checksum);

		s->bad_checksum += bad_checksum;
		stream_drop(s, used, r == -EBADMSG);
		if (r != -EBADMSG)
			return r;
	}
}

int mh_dlt645_stream_next_reply(struct mh_dlt645_stream *s, struct mh_dlt645_frame *out)
{
	int r;

	while ((r = mh_dlt645_stream_next(s, out)) == 0) {
		if (mh_dlt645_is_reply(out))
			return 0;
		s->skipped++;
	}
	return r;
}

bool mh_dlt645_stream_reply_begun(const struct mh_dlt645_stream *s)
{
	for (size_t i = 0; i + 9 <= s->len; i++)
		if (s->buf[i] == START && s->buf[i + 7] == START &&
			(s->buf[i + 8] & MH_DLT645_C_REPLY))
			return true;
	return false;
}

bool mh_dlt645_is_reply(const struct mh_dlt645_frame *f)
{
	return f->control & MH_DLT645_C_REPLY;
}

bool mh_dlt645_is_abnormal(const struct mh_dlt645_frame *f)
{
	return (f->control & (MH_DLT645_C_REPLY | MH_DLT645_C_ABNORMAL)) ==
	       (MH_DLT645_C_REPLY | MH_DLT645_C_ABNORMAL);
}

bool mh_dlt645_has_followup(const struct mh_dlt645_frame *f)
{
	return (f->control & (MH_DLT645_C_REPLY | MH_DLT645_C_FOLLOWUP)) ==
	       (MH_DLT645_C_REPLY | MH_DLT645_C_FOLLOWUP);
}

static bool addr_matches(const uint8_t *req, const uint8_t *rsp)
{
	if (memcmp(req, mh_dlt645_addr_broadcast, MH_DLT645_ADDR_LEN) == 0)
		return true;
	for (int i = 0; i < MH_DLT645_ADDR_LEN; i++)
		if (req[i] != 0xAA && req[i] != rsp[i])
			return false;
	return true;
}

bool mh_dlt645_is_reply_to(const struct mh_dlt645_frame *req, const struct mh_dlt645_frame *rsp)
{
	uint8_t fn = req->control & MH_DLT645_C_FUNCTION;

	if (!mh_dlt645_is_reply(rsp) || mh_dlt645_is_reply(req) ||
		(rsp->control & MH_DLT645_C_FUNCTION) != fn || !addr_matches(req->addr, rsp->addr))
		return false;
	if (mh_dlt645_is_abnormal(rsp))
		return true;
	if (fn == MH_DLT645_READ || fn == MH_DLT645_READ_FOLLOWUP)
		return req->len >= 4 && rsp->len >= 4 && get_di(req->data) == get_di(rsp->data);
	return true;
}

int mh_dlt645_reply_error(const struct mh_dlt645_frame *f, uint8_t *err)
{
	uint8_t e;

	*err = 0;
	if (!mh_dlt645_is_reply(f))
		return -EINVAL;
	if (!mh_dlt645_is_abnormal(f))
		return 0;
	e = f->len ? f->data[0] : 0;
	*err = e;
	if (e & MH_DLT645_ERR_AUTH)
		return -EACCES;
	if (e & MH_DLT645_ERR_NO_DATA)
		return -ENODATA;
	return -EPROTO;
}

int mh_dlt645_read_payload(const struct mh_dlt645_frame *f, uint32_t *di, const uint8_t **payload,
	size_t *len, uint8_t *seq)
{
	uint8_t fn = f->control & MH_DLT645_C_FUNCTION;
	size_t tail = fn == MH_DLT645_READ_FOLLOWUP ? 1 : 0;

	if (!mh_dlt645_is_reply(f) || mh_dlt645_is_abnormal(f) ||
		(fn != MH_DLT645_READ && fn != MH_DLT645_READ_FOLLOWUP))
		return -EINVAL;
	if (f->len < 4 + tail)
		return -EBADMSG;
	*di = get_di(f->data);
	*payload = f->data + 4;
	*len = f->len - 4 - tail;
	if (seq)
		*seq = tail ? f->data[f->len - 1] : 0;
	return 0;
}

const char *mh_dlt645_err_str(uint8_t err, char *buf, size_t len)
{
	static const char *const names[8] = {
		"other error",
		"no requested data",
		"password error/unauthorised",
		"baud rate cannot be changed",
		"year time zones exceeded",
		"daily periods exceeded",
		"tariffs exceeded",
		"reserved bit 7",
	};
	size_t used = 0;

	if (!len)
		return buf;
	buf[0] = '\0';
	for (int b = 0; b < 8; b++) {
		int n;

		if (!(err & (1u << b)))
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", names[b]);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	if (!err)
		snprintf(buf, len, "no error bits set");
	return buf;
}
