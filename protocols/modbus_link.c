// SPDX-License-Identifier: MIT
#include "modbus_link.h"

#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "modbus_trace.h"

struct mh_modbus_link {
	modbus_t *ctx;
	/*
	 * A descriptor of our own that holds the port's lock: libmodbus opens
	 * and configures the port in one call, and the lock must be ours before
	 * it touches the settings of a line another process may be using.
	 */
	int lock_fd;
	unsigned response_timeout_ms;
	char device[128];
	struct mh_link_counters counters;
	bool timed_out; /* the last exchange did: bytes that come now are its late reply */
	/*
	 * The last exchange ended on a bad frame, and the meter may still be
	 * answering it until then (monotonic ms; 0: nothing to wait for).
	 */
	int64_t window_end_ms;
};

const char *mh_modbus_exception_str(uint8_t code)
{
	switch (code) {
	case 1:
		return "illegal function";
	case 2:
		return "illegal data address";
	case 3:
		return "illegal data value";
	case 4:
		return "server device failure";
	case 5:
		return "acknowledge";
	case 6:
		return "server device busy";
	case 8:
		return "memory parity error";
	case 10:
		return "gateway path unavailable";
	case 11:
		return "gateway target failed to respond";
	default:
		return "unknown exception";
	}
}

/* The one place libmodbus's errno values become ours. */
static int translate(int err, uint8_t *exception)
{
	if (err > MODBUS_ENOBASE && err < MODBUS_ENOBASE + 64) {
		int code = err - MODBUS_ENOBASE;
		/* EMBXILFUN .. EMBXGTAR are the exception codes 1 .. 11. */
		if (code >= MODBUS_EXCEPTION_ILLEGAL_FUNCTION &&
			code < MODBUS_EXCEPTION_MAX) {
			*exception = (uint8_t)code;
			return -EREMOTEIO;
		}
		/* EMBBADCRC, EMBBADDATA, EMBBADEXC, EMBMDATA, EMBBADSLAVE. */
		return -EBADMSG;
	}
	if (err == ETIMEDOUT)
		return -ETIMEDOUT;
	/*
	 * A hung-up tty fails write() and read() with EIO, or reads as end of
	 * file, which libmodbus reports as ECONNRESET; an unplugged adapter may
	 * also say ENODEV or ENXIO. The port is gone either way.
	 */
	if (err == ECONNRESET || mh_serial_errno_is_gone(err))
		return -ENODEV;
	return -EIO;
}

int mh_modbus_link_open(const struct mh_serial_params *params, struct mh_modbus_link **out)
{
	struct mh_modbus_link *link;
	unsigned t = params->response_timeout_ms, b = params->byte_timeout_ms;
	int rc;

	link = calloc(1, sizeof(*link));
	if (!link)
		return -ENOMEM;
	snprintf(link->device, sizeof(link->device), "%s", params->device);
	link->response_timeout_ms = params->response_timeout_ms;
	link->lock_fd = open(params->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (link->lock_fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = mh_serial_lock(link->lock_fd);
	if (rc == -EBUSY)
		goto fail;
	if (rc < 0)
		mh_log_warn(MODBUS,
			"%s: cannot lock the port (%s); other processes are not kept off it",
			params->device, strerror(-rc));
	link->ctx = modbus_new_rtu(params->device, (int)params->baud,
		mh_parity_letter(params->parity), 8, 1);
	if (!link->ctx) {
		rc = errno ? -errno : -EINVAL;
		goto fail;
	}
	if (modbus_connect(link->ctx) < 0) {
		rc = errno ? -errno : -EIO;
		mh_log_err(MODBUS, "%s: cannot open: %s", params->device, modbus_strerror(errno));
		modbus_free(link->ctx);
		link->ctx = NULL;
		goto fail;
	}
	rc = mh_serial_exclude(modbus_get_socket(link->ctx));
	if (rc < 0)
		mh_log_debug(MODBUS, "%s: TIOCEXCL refused (%s); relying on the lock alone",
			params->device, strerror(-rc));
	/* Real RS485 ports need the mode; ptys and auto-direction adapters answer ENOTTY. */
	if (modbus_rtu_set_serial_mode(link->ctx, MODBUS_RTU_RS485) < 0)
		mh_log_debug(MODBUS, "%s: RS485 mode not available (%s); using the port as it is",
			params->device, modbus_strerror(errno));
	modbus_set_response_timeout(link->ctx, t / 1000, (t % 1000) * 1000);
	modbus_set_byte_timeout(link->ctx, b / 1000, (b % 1000) * 1000);
	/*
	 * Protocol recovery makes libmodbus wait out and flush a garbled reply, so
	 * the next meter's answer does not start with the last one's tail.
	 */
	modbus_set_error_recovery(link->ctx, MODBUS_ERROR_RECOVERY_PROTOCOL);
	*out = link;
	return 0;

fail:
	if (link->lock_fd >= 0)
		close(link->lock_fd);
	free(link);
	return rc;
}

void mh_modbus_link_free(struct mh_modbus_link *link)
{
	if (!link)
		return;
	modbus_close(link->ctx);
	modbus_free(link->ctx);
	close(link->lock_fd);
	free(link);
}

/*
 * A libmodbus call failed (errno says how) after it started at @start:
 * translate, and count what it says of the line. libmodbus 3.1 compares
 * the slave id of a reply before its CRC, so a noise byte in front of a
 * reply is EMBBADSLAVE as much as another slave's reply is.
 */
static int call_error(struct mh_modbus_link *link, int64_t start, uint8_t *exception)
{
	int err = errno;
	int rc;

	/*
	 * libmodbus reports a reply cut short as a timeout too, but then the
	 * byte timeout fired long before the response timeout: bytes came.
	 */
	if (err == ETIMEDOUT && mh_serial_mono_ms() - start < link->response_timeout_ms * 9 / 10) {
		link->counters.garbled++;
		link->window_end_ms = start + link->response_timeout_ms;
		return -EBADMSG;
	}
	rc = translate(err, exception);
	if (rc == -ETIMEDOUT) {
		link->counters.timeouts++;
		link->timed_out = true;
	} else if (rc == -EREMOTEIO) {
		link->counters.refusals++;
	} else if (err == EMBBADCRC) {
		link->counters.checksum_errors++;
		/* libmodbus waits out the reply window itself after any other bad frame. */
		link->window_end_ms = start + link->response_timeout_ms;
	} else if (err == EMBBADSLAVE) {
		link->counters.wrong_address++;
	} else if (rc == -EBADMSG) {
		link->counters.garbled++;
	}
	return rc;
}

/*
 * A bad frame may be only the start of what the meter's answer brings: an
 * adapter that echoes the request puts the echo first, which reads as a
 * frame with a wrong CRC, and the meter's reply follows. Taken as the reply
 * to the next request of the same meter, that reply would put one request's
 * registers under another's names. So nothing goes out until the response
 * timeout since the failed request is over, and what comes until then is
 * that exchange's, already counted.
 */
static void close_window(struct mh_modbus_link *link, struct pollfd *pfd)
{
	uint8_t chunk[256];
	int64_t left;

	while (link->window_end_ms && (left = link->window_end_ms - mh_serial_mono_ms()) > 0) {
		int n = poll(pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || !(pfd->revents & POLLIN))
			break;
		ssize_t got = read(pfd->fd, chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
	}
	link->window_end_ms = 0;
}

/*
 * Before a request, which it counts: libmodbus takes the first bytes that
 * come after it for the reply, so bytes still on the line must go. After a
 * timeout they are the late reply of that exchange; otherwise, noise after
 * a reply or the tail of a garbled one. The port, if it is gone, fails the
 * request itself. Returns when the request may go (monotonic ms).
 */
static int64_t start_exchange(struct mh_modbus_link *link)
{
	struct pollfd pfd = { .fd = modbus_get_socket(link->ctx), .events = POLLIN };
	uint8_t chunk[256];
	bool stale = false;

	close_window(link, &pfd);
	while (poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN)) {
		ssize_t n = read(pfd.fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		stale = true;
	}
	if (stale && link->timed_out)
		link->counters.late_replies++;
	else if (stale)
		link->counters.garbled++;
	link->timed_out = false;
	link->counters.frames++;
	return mh_serial_mono_ms();
}

static int read_table(struct mh_modbus_link *link, int unit, const struct mh_modbus_request *req,
	uint16_t *dst, uint8_t *exception)
{
	uint8_t bits[MH_MODBUS_MAX_BITS];
	int64_t start;
	int n;

	*exception = 0;
	if (modbus_set_slave(link->ctx, unit) < 0 || (unsigned)req->table > MH_MODBUS_INPUT)
		return -EINVAL;
	start = start_exchange(link);
	switch (req->table) {
	case MH_MODBUS_HOLDING:
		n = modbus_read_registers(link->ctx, req->address, req->count, dst);
		break;
	case MH_MODBUS_INPUT:
		n = modbus_read_input_registers(link->ctx, req->address, req->count, dst);
		break;
	case MH_MODBUS_COIL:
		n = modbus_read_bits(link->ctx, req->address, req->count, bits);
		break;
	case MH_MODBUS_DISCRETE:
		n = modbus_read_input_bits(link->ctx, req->address, req->count, bits);
		break;
	default:
		return -EINVAL;
	}
	if (n < 0)
		return call_error(link, start, exception);
	if (n != req->count) {
		link->counters.garbled++;
		return -EBADMSG;
	}
	if (mh_modbus_table_is_bits(req->table))
		for (int i = 0; i < n; i++)
			dst[i] = bits[i];
	return 0;
}

int mh_modbus_link_read(struct mh_modbus_link *link, int unit, const struct mh_modbus_request *req,
	uint16_t *dst, uint8_t *exception)
{
	/* Frames are logged (-v bus, -v modbus) from what libmodbus sent and accepted. */
	bool trace = mh_log_frames_on(MH_LOG_MODBUS);
	int rc;

	if (trace)
		mh_modbus_trace_read(link->device, unit, req);
	rc = read_table(link, unit, req, dst, exception);
	if (trace)
		mh_modbus_trace_read_reply(link->device, unit, req, rc, dst, *exception);
	return rc;
}

static int write_one(struct mh_modbus_link *link, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value, uint8_t *exception)
{
	int64_t start;
	int n;

	*exception = 0;
	if (modbus_set_slave(link->ctx, unit) < 0)
		return -EINVAL;
	if (table != MH_MODBUS_COIL && table != MH_MODBUS_HOLDING)
		return -EINVAL;
	start = start_exchange(link);
	switch (table) {
	case MH_MODBUS_COIL:
		n = modbus_write_bit(link->ctx, address, value ? 1 : 0);
		break;
	case MH_MODBUS_HOLDING:
		n = modbus_write_register(link->ctx, address, value);
		break;
	default:
		return -EINVAL;
	}
	return n < 0 ? call_error(link, start, exception) : 0;
}

int mh_modbus_link_write(struct mh_modbus_link *link, int unit, enum mh_modbus_table table,
	uint16_t address, uint16_t value, uint8_t *exception)
{
	bool trace = mh_log_frames_on(MH_LOG_MODBUS);
	int rc;

	if (trace)
		mh_modbus_trace_write(link->device, unit, table, address, value);
	rc = write_one(link, unit, table, address, value, exception);
	if (trace)
		mh_modbus_trace_write_reply(link->device, unit, table, address, value, rc,
			*exception);
	return rc;
}

void mh_modbus_link_counters(const struct mh_modbus_link *link, struct mh_link_counters *out)
{
	*out = link->counters;
}
