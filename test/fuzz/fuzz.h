/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared by the fuzz targets: the libFuzzer entry point, a check that
 * aborts (so libFuzzer, the sanitizers and the replay driver all see a
 * broken property as a crash, in any build type), and a cursor that takes
 * bytes from the input and yields zeros once it runs dry.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                 \
		}                                                                                \
	} while (0)

struct fuzz_input {
	const uint8_t *p;
	size_t n;
};

static inline bool fuzz_empty(const struct fuzz_input *in)
{
	return in->n == 0;
}

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
	uint8_t b;

	if (!in->n)
		return 0;
	b = *in->p++;
	in->n--;
	return b;
}

static inline uint16_t fuzz_u16(struct fuzz_input *in)
{
	uint16_t hi = fuzz_u8(in);

	return (uint16_t)(hi << 8 | fuzz_u8(in));
}

static inline uint32_t fuzz_u32(struct fuzz_input *in)
{
	uint32_t hi = fuzz_u16(in);

	return hi << 16 | fuzz_u16(in);
}

static inline uint64_t fuzz_u64(struct fuzz_input *in)
{
	uint64_t hi = fuzz_u32(in);

	return hi << 32 | fuzz_u32(in);
}

/* Up to @want bytes in place; *@got says how many there were. */
static inline const uint8_t *fuzz_bytes(struct fuzz_input *in, size_t want, size_t *got)
{
	const uint8_t *p = in->p;

	*got = want < in->n ? want : in->n;
	in->p += *got;
	in->n -= *got;
	return p;
}
