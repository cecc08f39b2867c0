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

/*
 * What the link saw since it was opened, counted per exchange. libmodbus
 * (3.1.6 in Debian 12) reads a reply itself and says only how it failed,
 * so some classes cannot be told apart:
 *  frames           every request sent, retries included
 *  timeouts         no reply within the response timeout
 *  checksum_errors  EMBBADCRC: a reply from our slave with a wrong CRC; an
 *                   echo of the request (a half-duplex adapter) is read as
 *                   a reply and shows here too, or as success for a write
 *                   (a write's reply is its echo)
 *  garbled          a reply cut short (the byte timeout fired long before
 *                   the response timeout), a wrong function, length or
 *                   count, or bytes on the line before a request that no
 *                   timeout explains (noise after a reply)
 *  wrong_address    EMBBADSLAVE: the first byte of the reply was not our
 *                   slave's id. libmodbus compares it before the CRC, so
 *                   another slave's reply and a noise byte in front of ours
 *                   both land here, as does a late reply of another slave
 *                   that arrives once its successor's request is out
 *  late_replies     bytes on the line before a request, after a timeout
 *  refusals         exception replies
 * echo and garbage_bytes stay 0: libmodbus keeps the bytes to itself.
 */
void mh_modbus_link_counters(const struct mh_modbus_link *link, struct mh_link_counters *out);

/* Text for a Modbus exception code ("illegal data address"). */
const char *mh_modbus_exception_str(uint8_t code);
