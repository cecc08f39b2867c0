/* SPDX-License-Identifier: MIT */
#pragma once

/* Line settings shared by the serial links (Modbus RTU, DL/T 645). */

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
