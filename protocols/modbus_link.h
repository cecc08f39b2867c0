/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Modbus RTU over a serial line (libmodbus). One link per port, used by one
 * thread at a time. Every libmodbus error code is translated here.
 */

#include <stdint.h>

#include "modbus_regs.h"
#include "serial.h"

struct mh_modbus_link;

/*
 * Open @params->device as an RTU master. The port is claimed for this link
 * alone (see mh_serial_lock()) before libmodbus touches its settings. RS485
 * mode is switched on where the port supports it; ports that do not (USB
 * adapters with automatic direction control, ptys) are used as they are.
 * Returns 0 and *@out, or a negative errno:
 *  -EBUSY      another process, or another link in this one, has the port
 *  -ENOENT, -ENODEV, -ENXIO  no such device (a USB adapter not plugged in)
 *  -EACCES     no permission to open it
 *  -EINVAL     a baud rate or parity the line cannot do
 *  -ENOMEM, or what open() and libmodbus said otherwise
 */
int mh_modbus_link_open(const struct mh_serial_params *params, struct mh_modbus_link **out);

/* Close the port and free the link; NULL is a no-op. */
void mh_modbus_link_free(struct mh_modbus_link *link);

/*
 * Read @req from slave @unit into @dst (one element per register, or per bit
 * for coil/discrete tables). Returns 0, or:
 *  -ETIMEDOUT  no reply within the response timeout
 *  -EBADMSG    a reply was garbled (CRC, wrong length, wrong slave or function)
 *  -EREMOTEIO  the slave answered with an exception; *@exception holds its code
 *  -ENODEV     the port is gone (hung up: the far end of a pty closed, a
 *              USB adapter unplugged). The link never works again: free it
 *              and open the device anew.
 *  -EIO        the port failed otherwise
 *  -EINVAL     @unit or @req->table out of range
 */
int mh_modbus_link_read(struct mh_modbus_link *link, int unit, const struct mh_modbus_request *req,
	uint16_t *dst, uint8_t *exception);

/*
 * Write @value to one coil (function 05: non-zero is ON) or one holding
 * register (function 06) of slave @unit. Returns 0 once the slave echoed
 * the write, or the errors of mh_modbus_link_read(); -EINVAL for another
 * table.
 */
int mh_modbus_link_write(struct mh_modbus_link *link, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value, uint8_t *exception);

/* Text for a Modbus exception code ("illegal data address"). */
const char *mh_modbus_exception_str(uint8_t code);
