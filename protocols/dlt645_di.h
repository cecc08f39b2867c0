/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * DL/T 645-2007 data identifiers (DI): what each one carries, how to turn
 * its bytes into numbers with canonical point names, and how to cover a
 * set of wanted identifiers with the fewest reads. Pure: no I/O and no
 * allocation.
 *
 * A DI is written DI3 DI2 DI1 DI0 ("00010000" = 0x00010000) and travels
 * DI0 first. The data passed to the decoders here is what follows the DI
 * in a read reply, already without the 0x33 offset (see
 * mh_dlt645_read_payload()). Numbers are BCD, least significant byte
 * first, with implied decimals; where the standard signs a quantity
 * (combined energy, current, power, power factor) the top bit of the most
 * significant byte is the sign and the other bits the magnitude.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* What the bytes of an identifier mean. */
enum mh_dlt645_di_kind {
	MH_DLT645_DI_NUMBER, /* BCD numbers; mh_dlt645_di_decode() */
	MH_DLT645_DI_STATUS, /* 16-bit status words; mh_dlt645_di_decode() gives the raw words */
	MH_DLT645_DI_DATE,   /* YYMMDDWW; mh_dlt645_di_decode_time() */
	MH_DLT645_DI_TIME,   /* hhmmss; mh_dlt645_di_decode_time() */
	MH_DLT645_DI_FREEZE_TIME, /* YYMMDDhhmm; mh_dlt645_di_decode_time() */
	MH_DLT645_DI_DIGITS,	  /* 12-digit number; mh_dlt645_di_decode_digits() */
	MH_DLT645_DI_POWER_DOWN,  /* two YYMMDDhhmmss; mh_dlt645_di_power_down_decode() */
};

/* Most elements a tariff block may carry: the total and tariffs 1..63. */
#define MH_DLT645_DI_MAX_TARIFF_ELEMENTS 64
/* Slot element meaning "all elements of the read": the wanted DI is itself a block. */
#define MH_DLT645_DI_ALL 0xFFFF

struct mh_dlt645_di_info {
	uint32_t di;	  /* the identifier, or the first of a DI0 range */
	uint8_t di0_last; /* last DI0 of a range (daily freezes: 01..3E days back), else 0 */
	enum mh_dlt645_di_kind kind;
	uint8_t elements; /* elements with a name; a tariff block may carry more */
	uint8_t element_bytes;
	uint8_t decimals;	  /* implied decimal places of each element */
	bool is_signed;		  /* sign-and-magnitude */
	bool is_block;		  /* more than one element in one reply */
	bool tariff_block;	  /* total then one element per tariff: the count is the meter's */
	uint32_t block;		  /* the FF block that carries this identifier too, 0 if none */
	uint8_t index;		  /* this identifier's element in @block */
	const char *unit;	  /* "kWh", "V", ...; NULL when not a physical quantity */
	const char *const *names; /* @elements point names; NULL for non-numeric kinds */
	const char *description;
};

/* One decoded number: @name is a static canonical point name. */
struct mh_dlt645_di_value {
	const char *name;
	double value;
};

enum mh_dlt645_di_meter_type {
	MH_DLT645_DI_NON_PREPAID = 0,
	MH_DLT645_DI_ENERGY_PREPAID = 1,
	MH_DLT645_DI_MONEY_PREPAID = 2,
	MH_DLT645_DI_TYPE_RESERVED = 3,
};

/* Status word 3 (04000503), the relay state the gateway recalls after a command. */
struct mh_dlt645_di_status3 {
	uint16_t raw;
	bool relay_open;			 /* bit 4: the relay is actually open (tripped) */
	bool relay_cmd_open;			 /* bit 6: the last relay command was a trip */
	bool pretrip_alarm;			 /* bit 7 */
	enum mh_dlt645_di_meter_type meter_type; /* bits 8-9 */
	bool keep_power;			 /* bit 12: keep-power (保电) is on; trips are refused */
};

/* A power-down event record (03110001..0311000A, n-th last). */
struct mh_dlt645_di_power_down {
	struct tm start;
	struct tm end; /* zero when !ended */
	bool ended;    /* false while the meter recorded no end (all-zero field) */
};

/* Where a wanted identifier's value lands among the planned reads. */
struct mh_dlt645_di_slot {
	uint16_t read;	  /* index into the plan's reads */
	uint16_t element; /* index into that read's decoded values, or MH_DLT645_DI_ALL */
};

/* What @di carries, or NULL for an identifier this table does not know. */
const struct mh_dlt645_di_info *mh_dlt645_di_lookup(uint32_t di);

/*
 * Parse 8 hex digits ("00010000", either case) into *@di. Returns 0 or
 * -EINVAL.
 */
int mh_dlt645_di_parse(const char *hex8, uint32_t *di);

/*
 * The identifiers that FF block @block carries, in the order the block
 * sends them (00010000 .. 00010400 for 0001FF00), up to @max into @out.
 * Returns their count, 0 if @block is not a block of single identifiers.
 */
size_t mh_dlt645_di_block_members(uint32_t block, uint32_t *out, size_t max);

/* Write @di as 8 uppercase hex digits plus NUL. */
void mh_dlt645_di_format(uint32_t di, char out[9]);

/*
 * Decode the numbers of a NUMBER or STATUS identifier: up to @max values
 * into @out, their count in *@n. A tariff block gives its named elements
 * (total, T1..T4) of however many the meter sent; every element is checked
 * all the same. Status words come out as their raw 16-bit value. Returns 0;
 * -ENOENT for an unknown @di; -ENOTSUP for a kind that is not numeric;
 * -EBADMSG for a wrong length or a nibble that is not BCD; -ENOSPC if @max
 * is too small. *@n is 0 on failure.
 */
int mh_dlt645_di_decode(uint32_t di, const uint8_t *data, size_t len,
	struct mh_dlt645_di_value *out, size_t max, size_t *n);

/*
 * Decode a DATE, TIME or FREEZE_TIME identifier into @out: the fields the
 * identifier carries are set (years as 2000 + YY, tm_wday for a date), the
 * others are 0, tm_isdst is -1. Returns 0, -ENOENT for an unknown @di,
 * -ENOTSUP for another kind, -EBADMSG for a wrong length, non-BCD or an
 * out-of-range field.
 */
int mh_dlt645_di_decode_time(uint32_t di, const uint8_t *data, size_t len, struct tm *out);

/*
 * Decode a DIGITS identifier (comm address, meter number) into 12 digits
 * and NUL, most significant first. Returns 0, -ENOENT, -ENOTSUP as above,
 * -EBADMSG for a wrong length or non-BCD, -ENOSPC if @cap < 13.
 */
int mh_dlt645_di_decode_digits(uint32_t di, const uint8_t *data, size_t len, char *out, size_t cap);

/* Decode status word 3 (2 bytes). Returns 0 or -EBADMSG for a wrong length. */
int mh_dlt645_di_status3_decode(const uint8_t *data, size_t len, struct mh_dlt645_di_status3 *out);

/*
 * Decode a power-down record (12 bytes: start then end, each ss mm hh DD
 * MM YY). Returns 0, or -EBADMSG for a wrong length, non-BCD or an
 * out-of-range field.
 */
int mh_dlt645_di_power_down_decode(
	const uint8_t *data, size_t len, struct mh_dlt645_di_power_down *out);

/*
 * Cover @wanted (any order, duplicates allowed) with the fewest reads.
 * Two or more distinct identifiers of one FF block are read as that block
 * (00010000 + 00010100 -> one 0001FF00), a lone one is read on its own,
 * and a wanted block is read as such. @use_blocks false reads every
 * identifier on its own, for meters that refuse blocks. Writes the
 * distinct identifiers to send to @reads (in order of first need) and
 * their count to *@n_reads, and for each wanted[i] its read and element to
 * @slots[i]. A block may arrive with fewer tariffs than an element asks
 * for; the caller then finds fewer decoded values. Returns 0, -ENOSPC if
 * @max_reads is too small, -EINVAL for NULL arrays with @n_wanted > 0.
 */
int mh_dlt645_di_plan(const uint32_t *wanted, size_t n_wanted, bool use_blocks, uint32_t *reads,
	size_t max_reads, size_t *n_reads, struct mh_dlt645_di_slot *slots);
