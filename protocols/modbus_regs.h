/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Modbus register decoding and request planning. Pure: no I/O; the only
 * allocation is the plan, which is handed back to the caller.
 */

#include <stddef.h>
#include <stdint.h>

/* The largest read the Modbus application protocol allows (V1.1b3, 6.3/6.4 and 6.1/6.2). */
#define MH_MODBUS_MAX_REGS 125
#define MH_MODBUS_MAX_BITS 2000

enum mh_modbus_table {
	MH_MODBUS_COIL,
	MH_MODBUS_DISCRETE,
	MH_MODBUS_HOLDING,
	MH_MODBUS_INPUT,
};

enum mh_modbus_type {
	MH_MODBUS_U16,
	MH_MODBUS_S16,
	MH_MODBUS_U32,
	MH_MODBUS_S32,
	MH_MODBUS_U64,
	MH_MODBUS_S64,
	MH_MODBUS_FLOAT32,
	MH_MODBUS_FLOAT64,
	MH_MODBUS_BIT, /* the only type of the coil and discrete tables */
};

/* Word order of multi-register values; bytes within a register are always big-endian. */
enum mh_modbus_word_order {
	MH_MODBUS_WORDS_BIG,    /* most significant register first (the Modbus norm) */
	MH_MODBUS_WORDS_LITTLE, /* least significant register first */
};

struct mh_modbus_point {
	enum mh_modbus_table table;
	uint16_t address; /* zero-based PDU address */
	enum mh_modbus_type type;
	enum mh_modbus_word_order word_order;
	double scale;
};

/* One read request: a contiguous range of one table. */
struct mh_modbus_request {
	enum mh_modbus_table table;
	uint16_t address;
	uint16_t count; /* registers, or bits for coil/discrete */
};

/* Where each point's first register lands among the requests' answers. */
struct mh_modbus_slot {
	uint16_t request;
	uint16_t offset;
};

struct mh_modbus_plan {
	struct mh_modbus_request *requests;
	size_t n_requests;
	struct mh_modbus_slot *slots; /* one per point, in the caller's point order */
	size_t n_slots;
};

/* Table name as written in config ("holding", ...), or NULL. */
const char *mh_modbus_table_name(enum mh_modbus_table table);

/* Type name as written in config ("float32", ...), or NULL. */
const char *mh_modbus_type_name(enum mh_modbus_type type);

/* Registers (or bits) a value of @type occupies: 1, 2 or 4. */
unsigned mh_modbus_type_width(enum mh_modbus_type type);

/* Whether @table holds bits (coil, discrete) rather than 16-bit registers. */
int mh_modbus_table_is_bits(enum mh_modbus_table table);

/*
 * Decode one point from @regs, which starts at the point's first register
 * (for bit tables: one bit per element, 0 or 1). Stores raw value × scale,
 * always a finite number. Returns 0, or, leaving *@value alone:
 *  -ENODATA  a float register holds NaN or infinity: the meter's own "no
 *            value" (not available, not measured)
 *  -ERANGE   the register is a number, but not once scaled: the product
 *            overflows a double (1e308 × 10) or the scale is not finite
 *  -EINVAL   @point->type is not a type
 */
int mh_modbus_decode(const struct mh_modbus_point *point, const uint16_t *regs, double *value);

/*
 * Group @points into the fewest read requests: points of one table whose
 * ranges are adjacent, or separated by at most @max_gap unused registers,
 * share a request of at most 125 registers (2000 bits). @max_gap 0 reads
 * each run of adjacent points in one request and never asks for a register
 * that no point names. Fills @plan, which the caller releases with
 * mh_modbus_plan_deinit(). Returns 0 or -ENOMEM; -EINVAL if a point does
 * not fit the address space.
 */
int mh_modbus_plan_build(const struct mh_modbus_point *points, size_t n_points,
	unsigned max_gap, struct mh_modbus_plan *plan);

/* Release what mh_modbus_plan_build() allocated; safe on a zeroed plan. */
void mh_modbus_plan_deinit(struct mh_modbus_plan *plan);
