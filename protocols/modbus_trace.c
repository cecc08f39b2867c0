// SPDX-License-Identifier: MIT
#include "modbus_trace.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "log.h"

/* An RTU ADU: unit, PDU (at most 253 bytes), CRC. */
#define ADU_MAX 256

/* Modbus CRC-16 (polynomial 0xA001 reflected, from 0xFFFF). */
static uint16_t crc16(const uint8_t *p, size_t n)
{
	uint16_t crc = 0xFFFF;

	while (n--) {
		crc ^= *p++;
		for (int bit = 0; bit < 8; bit++)
			crc = crc & 1 ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
	}
	return crc;
}

/* Close @adu of @n bytes with its CRC, low byte first as on the wire; returns the length. */
static size_t seal(uint8_t *adu, size_t n)
{
	uint16_t crc = crc16(adu, n);

	adu[n++] = (uint8_t)(crc & 0xFF);
	adu[n++] = (uint8_t)(crc >> 8);
	return n;
}

static int read_function(enum mh_modbus_table table)
{
	switch (table) {
	case MH_MODBUS_COIL:
		return 0x01;
	case MH_MODBUS_DISCRETE:
		return 0x02;
	case MH_MODBUS_HOLDING:
		return 0x03;
	case MH_MODBUS_INPUT:
		return 0x04;
	default:
		return -EINVAL;
	}
}

static int write_function(enum mh_modbus_table table)
{
	return table == MH_MODBUS_COIL ? 0x05 : table == MH_MODBUS_HOLDING ? 0x06 : -EINVAL;
}

/* unit, function, two 16-bit fields: every request and a write's echo. */
static size_t four_fields(uint8_t *adu, int unit, int fc, uint16_t a, uint16_t b)
{
	adu[0] = (uint8_t)unit;
	adu[1] = (uint8_t)fc;
	adu[2] = (uint8_t)(a >> 8);
	adu[3] = (uint8_t)a;
	adu[4] = (uint8_t)(b >> 8);
	adu[5] = (uint8_t)b;
	return seal(adu, 6);
}

/*
 * A reply that carries no bytes to show, or an exception, which libmodbus
 * takes only when whole: whether it was one (and logged).
 */
static bool trace_failure(const char *device, int unit, int fc, int rc, uint8_t exception)
{
	uint8_t adu[5] = { 0 };

	switch (rc) {
	case 0:
		return false;
	case -EREMOTEIO:
		adu[0] = (uint8_t)unit;
		adu[1] = (uint8_t)(fc | 0x80);
		adu[2] = exception;
		mh_log_frame(MH_LOG_MODBUS, device, "rx", adu, seal(adu, 3), NULL);
		break;
	case -ETIMEDOUT:
		mh_log_frame(MH_LOG_MODBUS, device, "rx", adu, 0, "no reply");
		break;
	case -EBADMSG:
		mh_log_frame(MH_LOG_MODBUS, device, "rx", NULL, 0,
			"garbled reply: bad CRC, cut short, or another unit or function");
		break;
	default:
		mh_log_frame(MH_LOG_MODBUS, device, "rx", NULL, 0, strerror(-rc));
		break;
	}
	return true;
}

void mh_modbus_trace_read(const char *device, int unit, const struct mh_modbus_request *req)
{
	uint8_t adu[8];
	int fc = read_function(req->table);

	if (fc > 0)
		mh_log_frame(MH_LOG_MODBUS, device, "tx", adu,
			four_fields(adu, unit, fc, req->address, req->count), NULL);
}

void mh_modbus_trace_read_reply(const char *device, int unit, const struct mh_modbus_request *req,
	int rc, const uint16_t *values, uint8_t exception)
{
	uint8_t adu[ADU_MAX];
	int fc = read_function(req->table);
	size_t n = 3;

	if (fc < 0 || trace_failure(device, unit, fc, rc, exception))
		return;
	adu[0] = (uint8_t)unit;
	adu[1] = (uint8_t)fc;
	if (mh_modbus_table_is_bits(req->table)) {
		size_t bytes = (req->count + 7u) / 8u;

		if (bytes > ADU_MAX - 5)
			return;
		memset(adu + 3, 0, bytes);
		for (size_t i = 0; i < req->count; i++)
			if (values[i])
				adu[3 + i / 8] |= (uint8_t)(1u << (i % 8));
		n += bytes;
	} else {
		if (2u * req->count > ADU_MAX - 5)
			return;
		for (size_t i = 0; i < req->count; i++) {
			adu[n++] = (uint8_t)(values[i] >> 8);
			adu[n++] = (uint8_t)values[i];
		}
	}
	adu[2] = (uint8_t)(n - 3);
	mh_log_frame(MH_LOG_MODBUS, device, "rx", adu, seal(adu, n), NULL);
}

void mh_modbus_trace_write(const char *device, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value)
{
	uint8_t adu[8];
	int fc = write_function(table);

	/* libmodbus sends a coil's ON as FF00, OFF as 0000. */
	if (fc == 0x05)
		value = value ? 0xFF00 : 0x0000;
	if (fc > 0)
		mh_log_frame(MH_LOG_MODBUS, device, "tx", adu,
			four_fields(adu, unit, fc, address, value), NULL);
}

void mh_modbus_trace_write_reply(const char *device, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value, int rc, uint8_t exception)
{
	uint8_t adu[8];
	int fc = write_function(table);

	if (fc < 0 || trace_failure(device, unit, fc, rc, exception))
		return;
	if (fc == 0x05)
		value = value ? 0xFF00 : 0x0000;
	mh_log_frame(MH_LOG_MODBUS, device, "rx", adu, four_fields(adu, unit, fc, address, value),
		"echo");
}
