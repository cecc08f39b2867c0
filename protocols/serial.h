/* SPDX-License-Identifier: MIT */
#pragma once

/* Line settings and timing shared by the serial links (Modbus RTU, DL/T 645). */

#include <stdint.h>
#include <time.h>

enum mh_parity {
	MH_PARITY_NONE,
	MH_PARITY_EVEN,
	MH_PARITY_ODD,
};

struct mh_serial_params {
	const char *device;
	unsigned baud;
	enum mh_parity parity;
	unsigned response_timeout_ms; /* first byte of the reply */
	unsigned byte_timeout_ms;     /* silence that ends a reply */
};

/* 'N', 'E' or 'O'. */
static inline char mh_parity_letter(enum mh_parity parity)
{
	return parity == MH_PARITY_EVEN ? 'E' : parity == MH_PARITY_ODD ? 'O' : 'N';
}

/* Monotonic milliseconds, for timeouts and the gaps between frames. */
static inline int64_t mh_serial_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
