/* SPDX-License-Identifier: MIT */
#pragma once

/* The value of hex digit @c, either case, or -1 when it is not one. */
static inline int mh_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
