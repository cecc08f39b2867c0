/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The frames of a Modbus RTU exchange in the debug log (-v bus, -v modbus),
 * for the links. libmodbus writes and reads the port itself and hands back
 * values, not bytes, so the frames are built again here: a request exactly
 * as libmodbus sends it, a reply exactly as it came, since libmodbus took it
 * only after checking its unit, function, byte count and CRC (the padding
 * bits of a coil reply's last byte, which it does not check, show as 0). A
 * write's reply is shown as the echo of the request it must be (marked
 * "echo": older libmodbus releases check only its length). A reply
 * libmodbus refused (a bad CRC, cut short) cannot be shown; the line says
 * what became of it. The caller asks mh_log_frames_on(MH_LOG_MODBUS)
 * first: these format unconditionally.
 */

#include <stdint.h>

#include "modbus_regs.h"

/* A read of @req from slave @unit (function 01 to 04), as it goes out on @device. */
void mh_modbus_trace_read(const char *device, int unit, const struct mh_modbus_request *req);

/* Its reply: @rc as mh_modbus_link_read() returns it, with what it read into @values. */
void mh_modbus_trace_read_reply(const char *device, int unit, const struct mh_modbus_request *req,
	int rc, const uint16_t *values, uint8_t exception);

/* A write of one coil (function 05) or holding register (06), as it goes out. */
void mh_modbus_trace_write(const char *device, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value);

/* Its reply (the echo of the request): @rc as mh_modbus_link_write() returns it. */
void mh_modbus_trace_write_reply(const char *device, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value, int rc, uint8_t exception);
