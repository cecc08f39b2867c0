// SPDX-License-Identifier: MIT
/*
 * The DL/T 645 stream decoder on a hostile line: the bytes after the first
 * two arrive in chunks whose sizes a generator seeded by those two picks,
 * and frames are popped with mh_dlt645_stream_next() or, per the seed, with
 * mh_dlt645_stream_next_reply() (which must pass over echoes of requests).
 *
 * Properties: the buffer never overflows; once drained to -EAGAIN it has
 * room for a whole frame, so feeding always makes progress; every popped
 * frame is valid, encodes back to bytes that decode to the same frame, and
 * (for next_reply) is a reply; the counters only grow.
 */
#include <errno.h>

#include "dlt645.h"
#include "fuzz.h"

static uint32_t rng_next(uint32_t *s)
{
	/* xorshift32: any non-zero state works. */
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

static void check_frame(const struct mh_dlt645_frame *f)
{
	uint8_t wire[MH_DLT645_MAX_FRAME];
	struct mh_dlt645_frame again;
	size_t used = 0;
	int n;

	FUZZ_CHECK(f->len <= MH_DLT645_MAX_DATA);
	n = mh_dlt645_encode(f, f->len % (MH_DLT645_MAX_PREAMBLE + 1), wire, sizeof(wire));
	FUZZ_CHECK(n > 0);
	FUZZ_CHECK(mh_dlt645_decode(wire, (size_t)n, &again, &used) == 0);
	FUZZ_CHECK(used == (size_t)n);
	FUZZ_CHECK(memcmp(again.addr, f->addr, sizeof(f->addr)) == 0);
	FUZZ_CHECK(again.control == f->control && again.len == f->len);
	FUZZ_CHECK(memcmp(again.data, f->data, f->len) == 0);
}

/* Pop until -EAGAIN; returns the frames popped. */
static size_t drain(struct mh_dlt645_stream *s, bool replies_only)
{
	struct mh_dlt645_frame f;
	size_t frames = 0;
	int r;

	for (;;) {
		uint64_t garbage = s->garbage, skipped = s->skipped;

		/* The question a link asks before popping; it must not read past the bytes. */
		(void)mh_dlt645_stream_reply_begun(s);
		r = replies_only ? mh_dlt645_stream_next_reply(s, &f) : mh_dlt645_stream_next(s, &f);
		FUZZ_CHECK(s->len <= sizeof(s->buf));
		FUZZ_CHECK(s->garbage >= garbage && s->skipped >= skipped);
		if (!replies_only)
			FUZZ_CHECK(s->skipped == skipped);
		if (r == -EAGAIN)
			break;
		FUZZ_CHECK(r == 0);
		check_frame(&f);
		if (replies_only)
			FUZZ_CHECK(mh_dlt645_is_reply(&f));
		frames++;
		/* At most one frame per 12 bytes fed: a bound on a runaway loop. */
		FUZZ_CHECK(frames <= sizeof(s->buf) / MH_DLT645_OVERHEAD + 1);
	}
	/* What is left is at most one incomplete frame: a whole one fits after it. */
	FUZZ_CHECK(sizeof(s->buf) - s->len >= MH_DLT645_MAX_FRAME);
	return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_input in = {data, size};
	struct mh_dlt645_stream s;
	uint32_t seed = (uint32_t)fuzz_u16(&in) << 8 | 1;
	bool replies_only = seed & 0x100;
	bool reset_sometimes = seed & 0x200;

	mh_dlt645_stream_init(&s);
	while (!fuzz_empty(&in)) {
		uint32_t r = rng_next(&seed);
		/* Mostly small chunks, as a UART delivers them; now and then a large one. */
		size_t want = r & 0x80 ? (r >> 8) % (2 * MH_DLT645_MAX_FRAME + 8) : (r >> 8) % 17;
		size_t got, used = 0;
		const uint8_t *chunk = fuzz_bytes(&in, want, &got);

		while (got) {
			int rc = mh_dlt645_stream_feed(&s, chunk, got, &used);

			FUZZ_CHECK(used <= got);
			FUZZ_CHECK(s.len <= sizeof(s.buf));
			/* The buffer was drained, so it has room: feeding must make progress. */
			FUZZ_CHECK(rc == 0 && used > 0);
			chunk += used;
			got -= used;
			drain(&s, replies_only);
		}
		if (reset_sometimes && (r & 0x3F000000) == 0) {
			mh_dlt645_stream_reset(&s);
			FUZZ_CHECK(s.len == 0);
		}
	}
	drain(&s, replies_only);
	return 0;
}
