// SPDX-License-Identifier: MIT
/*
 * DL/T 645 frames one at a time: mh_dlt645_decode() on the input as it
 * came off the wire, then the reply parsers on what it decoded, then the
 * encode/decode round trip of a frame built field by field from the input
 * (which need not be a valid reply), and the request builders fed from it.
 *
 * Properties: *consumed never exceeds the input; a decoded frame is the
 * bytes it came from (encoding it gives them back); every frame survives
 * encode then decode unchanged; the reply parsers stay inside the frame and
 * agree with each other; the inverse parsers (control, broadcast time) give
 * back what the builders were given.
 */
#include <errno.h>

#include "dlt645.h"
#include "fuzz.h"

static void check_round_trip(const struct mh_dlt645_frame *f, unsigned preamble)
{
	uint8_t wire[MH_DLT645_MAX_FRAME + 8];
	struct mh_dlt645_frame again;
	size_t used = 0;
	int n = mh_dlt645_encode(f, preamble, wire, sizeof(wire));

	if (preamble > MH_DLT645_MAX_PREAMBLE || f->len > MH_DLT645_MAX_DATA) {
		FUZZ_CHECK(n == -EINVAL);
		return;
	}
	FUZZ_CHECK(n == (int)(preamble + MH_DLT645_OVERHEAD + f->len));
	/* One byte short of room is refused, never written past. */
	FUZZ_CHECK(mh_dlt645_encode(f, preamble, wire, (size_t)n - 1) == -ENOSPC);
	/* FF fill after the frame, as some meters send, changes nothing. */
	wire[n] = 0xFF;
	FUZZ_CHECK(mh_dlt645_decode(wire, (size_t)n + 1, &again, &used) == 0);
	FUZZ_CHECK(used == (size_t)n);
	FUZZ_CHECK(memcmp(again.addr, f->addr, sizeof(f->addr)) == 0);
	FUZZ_CHECK(again.control == f->control && again.len == f->len);
	FUZZ_CHECK(memcmp(again.data, f->data, f->len) == 0);
	/*
	 * A prefix is incomplete, or, when a whole valid frame hides in its data,
	 * given up as noise up to that frame: never taken as a frame itself.
	 */
	int r = mh_dlt645_decode(wire, (size_t)n - 1, &again, &used);
	if (r == -EAGAIN)
		FUZZ_CHECK(used == preamble);
	else
		FUZZ_CHECK(r == -EBADMSG && used > preamble && used < (size_t)n - 1);
}

static void check_reply_parsers(const struct mh_dlt645_frame *f)
{
	const uint8_t *payload = NULL;
	uint32_t di = 0;
	size_t len = 0;
	uint8_t seq = 0xEE, err = 0xEE;
	int r;
	char text[160];

	r = mh_dlt645_reply_error(f, &err);
	if (!mh_dlt645_is_reply(f)) {
		FUZZ_CHECK(r == -EINVAL && err == 0);
	} else if (!mh_dlt645_is_abnormal(f)) {
		FUZZ_CHECK(r == 0 && err == 0);
	} else {
		FUZZ_CHECK(r == -EACCES || r == -ENODATA || r == -EPROTO);
		FUZZ_CHECK(err == (f->len ? f->data[0] : 0));
	}

	r = mh_dlt645_read_payload(f, &di, &payload, &len, &seq);
	if (r == 0) {
		size_t tail = (f->control & MH_DLT645_C_FUNCTION) == MH_DLT645_READ_FOLLOWUP;

		FUZZ_CHECK(mh_dlt645_is_reply(f) && !mh_dlt645_is_abnormal(f));
		FUZZ_CHECK(payload == f->data + 4);
		FUZZ_CHECK(4 + len + tail == f->len);
		FUZZ_CHECK(seq == (tail ? f->data[f->len - 1] : 0));
		FUZZ_CHECK(di == ((uint32_t)f->data[0] | (uint32_t)f->data[1] << 8 |
					 (uint32_t)f->data[2] << 16 | (uint32_t)f->data[3] << 24));
		/* A read reply answers the read of its own identifier from its own meter. */
		if (!tail) {
			struct mh_dlt645_frame req;

			FUZZ_CHECK(mh_dlt645_build_read(&req, f->addr, di) == 0);
			FUZZ_CHECK(mh_dlt645_is_reply_to(&req, f));
			FUZZ_CHECK(mh_dlt645_build_read(&req, f->addr, di ^ 1) == 0);
			FUZZ_CHECK(!mh_dlt645_is_reply_to(&req, f));
		}
	} else {
		FUZZ_CHECK(r == -EINVAL || r == -EBADMSG);
	}
	/* A frame never answers itself: a request is not a reply, and a reply asks nothing. */
	FUZZ_CHECK(!mh_dlt645_is_reply_to(f, f));

	/* Every buffer size, including 0 and 1, stays terminated and inside. */
	for (size_t cap = 0; cap <= sizeof(text); cap += cap < 8 ? 1 : 37) {
		memset(text, 'x', sizeof(text));
		FUZZ_CHECK(mh_dlt645_err_str(err, text, cap) == text);
		if (cap)
			FUZZ_CHECK(memchr(text, '\0', cap) != NULL);
		else
			FUZZ_CHECK(text[0] == 'x');
	}
}

static void check_inverse_parsers(const struct mh_dlt645_frame *f)
{
	struct mh_dlt645_control c;
	struct mh_dlt645_frame again;
	struct tm t;

	if (mh_dlt645_control_parse(f, &c) == 0) {
		FUZZ_CHECK(mh_dlt645_build_control(&again, f->addr, &c) == 0);
		/* N2 is sent as 00 whatever it was. */
		FUZZ_CHECK(again.len == 16 && memcmp(again.data, f->data, 9) == 0);
		FUZZ_CHECK(memcmp(again.data + 10, f->data + 10, 6) == 0);
	}
	if (mh_dlt645_broadcast_time_parse(f, &t) == 0) {
		/* The parser takes day 31 of any month; the builder must take what it gives. */
		FUZZ_CHECK(mh_dlt645_build_broadcast_time(&again, &t) == 0);
		FUZZ_CHECK(again.len == 6 && memcmp(again.data, f->data, 6) == 0);
	}
}

static void check_builders(struct fuzz_input *in)
{
	struct mh_dlt645_frame f;
	struct mh_dlt645_auth auth = {0};
	uint8_t addr[MH_DLT645_ADDR_LEN];
	char digits[2 * MH_DLT645_ADDR_LEN + 1], text[13];
	size_t got;
	const uint8_t *p;
	uint32_t di;

	/* An address from text: parse then format gives the text back (AA stays AA). */
	p = fuzz_bytes(in, 12, &got);
	memcpy(digits, p, got);
	digits[got] = '\0';
	if (mh_dlt645_addr_parse(digits, addr) == 0) {
		mh_dlt645_addr_format(addr, text);
		for (size_t i = 0; i < 12; i++)
			FUZZ_CHECK(text[i] == (digits[i] == 'a' ? 'A' : digits[i]));
	} else {
		memset(addr, 0x11, sizeof(addr));
	}

	di = fuzz_u32(in);
	FUZZ_CHECK(mh_dlt645_build_read(&f, addr, di) == 0);
	check_round_trip(&f, 4);
	FUZZ_CHECK(mh_dlt645_build_read_followup(&f, addr, di, fuzz_u8(in)) == 0);
	check_round_trip(&f, 0);

	auth.level = fuzz_u8(in);
	p = fuzz_bytes(in, fuzz_u8(in), &got);
	if (mh_dlt645_build_write(&f, addr, di, &auth, p, got) == 0) {
		FUZZ_CHECK(got <= MH_DLT645_MAX_DATA - 12 && f.len == 12 + got);
		check_round_trip(&f, 2);
	} else {
		FUZZ_CHECK(got > MH_DLT645_MAX_DATA - 12);
	}
	p = fuzz_bytes(in, fuzz_u8(in), &got);
	if (mh_dlt645_build_control_passthrough(&f, addr, got ? p : NULL, got) == 0) {
		FUZZ_CHECK(got >= 1 && got <= MH_DLT645_MAX_DATA);
		check_round_trip(&f, 1);
	} else {
		FUZZ_CHECK(got == 0 || got > MH_DLT645_MAX_DATA);
	}
	if (mh_dlt645_build_freeze(&f, addr, (int8_t)fuzz_u8(in), (int8_t)fuzz_u8(in),
		    (int8_t)fuzz_u8(in), (int8_t)fuzz_u8(in)) == 0)
		check_round_trip(&f, 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	struct mh_dlt645_frame f;
	size_t used = (size_t)-1;
	int r;

	/* The input as a wire buffer. */
	r = mh_dlt645_decode(data, size, &f, &used);
	FUZZ_CHECK(used <= size);
	if (r == 0) {
		uint8_t wire[MH_DLT645_MAX_FRAME];
		size_t start = used - (size_t)MH_DLT645_OVERHEAD - f.len;

		FUZZ_CHECK(used >= (size_t)MH_DLT645_OVERHEAD + f.len);
		/* Decoding took exactly these bytes: encoding them again gives them back. */
		FUZZ_CHECK(mh_dlt645_encode(&f, 0, wire, sizeof(wire)) ==
			   (int)(MH_DLT645_OVERHEAD + f.len));
		FUZZ_CHECK(memcmp(wire, data + start, MH_DLT645_OVERHEAD + f.len) == 0);
		for (size_t i = 0; i < start; i++)
			FUZZ_CHECK(data[i] == 0xFE || data[i] == 0xFF);
		check_reply_parsers(&f);
		check_inverse_parsers(&f);
	} else if (r == -EAGAIN) {
		for (size_t i = 0; i < used; i++)
			FUZZ_CHECK(data[i] == 0xFE || data[i] == 0xFF);
	} else {
		FUZZ_CHECK(r == -EBADMSG);
		/* Garbage is dropped, at least one byte of it, so the caller progresses. */
		FUZZ_CHECK(used >= 1);
	}

	/* The input as frame fields, valid or not. */
	memset(&f, 0, sizeof(f));
	{
		size_t got;
		const uint8_t *p = fuzz_bytes(&in, MH_DLT645_ADDR_LEN, &got);

		memcpy(f.addr, p, got);
	}
	f.control = fuzz_u8(&in);
	{
		size_t want = fuzz_u8(&in), got;
		const uint8_t *p = fuzz_bytes(&in, want < MH_DLT645_MAX_DATA ? want : MH_DLT645_MAX_DATA, &got);

		memcpy(f.data, p, got);
		/* Keep the L the input asked for, up to 255: encode must refuse > 200. */
		f.len = (uint8_t)want;
	}
	check_round_trip(&f, fuzz_u8(&in) % 6);
	if (f.len <= MH_DLT645_MAX_DATA) {
		check_reply_parsers(&f);
		check_inverse_parsers(&f);
	} else {
		f.len = MH_DLT645_MAX_DATA;
	}
	check_builders(&in);
	return 0;
}
