// SPDX-License-Identifier: MIT
#include "dlt645_link.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/serial.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Meters wake their UART on FE bytes; four is what the standard's examples send. */
#define PREAMBLE 4
/* Follow-up frames a reply may span before we call it a runaway meter. */
#define MAX_FOLLOWUPS 32

struct mh_dlt645_link {
	int fd;
	unsigned response_timeout_ms;
	unsigned byte_timeout_ms;
	struct mh_dlt645_stream stream;
	char device[128];
};

static speed_t baud_constant(unsigned baud)
{
	switch (baud) {
	case 300: return B300;
	case 600: return B600;
	case 1200: return B1200;
	case 2400: return B2400;
	case 4800: return B4800;
	case 9600: return B9600;
	case 19200: return B19200;
	case 38400: return B38400;
	case 57600: return B57600;
	case 115200: return B115200;
	default: return 0;
	}
}

static int configure(int fd, const struct mh_serial_params *params, bool parity)
{
	struct termios tio;
	speed_t speed = baud_constant(params->baud);

	if (!speed)
		return -EINVAL;
	if (tcgetattr(fd, &tio) < 0)
		return -errno;
	cfmakeraw(&tio);
	tio.c_cflag |= CLOCAL | CREAD;
	tio.c_cflag &= ~(CSTOPB | CRTSCTS | PARENB | PARODD);
	if (parity && params->parity != MH_PARITY_NONE) {
		tio.c_cflag |= PARENB;
		if (params->parity == MH_PARITY_ODD)
			tio.c_cflag |= PARODD;
	}
	tio.c_cc[VMIN] = 0;
	tio.c_cc[VTIME] = 0;
	cfsetispeed(&tio, speed);
	cfsetospeed(&tio, speed);
	if (tcsetattr(fd, TCSANOW, &tio) < 0)
		return -errno;
	return 0;
}

int mh_dlt645_link_open(const struct mh_serial_params *params, struct mh_dlt645_link **out)
{
	struct mh_dlt645_link *link;
	struct serial_rs485 rs485 = { .flags = SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND };
	int rc;

	if (!baud_constant(params->baud))
		return -EINVAL;
	link = calloc(1, sizeof(*link));
	if (!link)
		return -ENOMEM;
	snprintf(link->device, sizeof(link->device), "%s", params->device);
	link->response_timeout_ms = params->response_timeout_ms;
	link->byte_timeout_ms = params->byte_timeout_ms;
	mh_dlt645_stream_init(&link->stream);
	link->fd = open(params->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (link->fd < 0) {
		rc = -errno;
		free(link);
		return rc;
	}
	rc = configure(link->fd, params, true);
	if (rc == -EINVAL && params->parity != MH_PARITY_NONE) {
		/* ptys reject parity on some kernels; a pty carries no parity bit anyway. */
		mh_log_debug(DLT645, "%s: parity refused; using the line without it", link->device);
		rc = configure(link->fd, params, false);
	}
	if (rc < 0) {
		close(link->fd);
		free(link);
		return rc;
	}
	/* Real RS485 ports need the mode; others (ptys, auto-direction adapters) refuse it. */
	if (ioctl(link->fd, TIOCSRS485, &rs485) < 0)
		mh_log_debug(DLT645, "%s: RS485 mode not available; using the port as it is",
			link->device);
	*out = link;
	return 0;
}

void mh_dlt645_link_free(struct mh_dlt645_link *link)
{
	if (!link)
		return;
	close(link->fd);
	free(link);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				poll(&pfd, 1, 100);
				continue;
			}
			return -EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int mh_dlt645_link_send(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req)
{
	uint8_t buf[MH_DLT645_MAX_FRAME];
	int n = mh_dlt645_encode(req, PREAMBLE, buf, sizeof(buf));

	if (n < 0)
		return n;
	/* What is left of an earlier reply must not be taken for the next one. */
	tcflush(link->fd, TCIFLUSH);
	mh_dlt645_stream_reset(&link->stream);
	if (write_all(link->fd, buf, (size_t)n) < 0)
		return -EIO;
	tcdrain(link->fd);
	return 0;
}

int mh_dlt645_link_transact(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	struct mh_dlt645_frame *rsp)
{
	int64_t deadline, last_byte = 0;
	bool got_bytes = false;
	int rc = mh_dlt645_link_send(link, req);

	if (rc < 0)
		return rc;
	deadline = mh_serial_mono_ms() + link->response_timeout_ms;
	for (;;) {
		/* Frames already complete in the buffer first. */
		while (mh_dlt645_stream_next_reply(&link->stream, rsp) == 0) {
			if (mh_dlt645_is_reply_to(req, rsp))
				return 0;
			link->stream.skipped++;
		}
		int64_t now = mh_serial_mono_ms();
		int64_t wait = deadline - now;
		/* Once a reply has started, a pause longer than the byte timeout ends it. */
		if (got_bytes && last_byte + link->byte_timeout_ms - now < wait)
			wait = last_byte + link->byte_timeout_ms - now;
		if (wait <= 0)
			return got_bytes ? -EBADMSG : -ETIMEDOUT;

		struct pollfd pfd = { .fd = link->fd, .events = POLLIN };
		int p = poll(&pfd, 1, (int)wait);
		if (p < 0 && errno != EINTR)
			return -EIO;
		if (p <= 0)
			continue;
		if (pfd.revents & (POLLERR | POLLNVAL))
			return -EIO;

		uint8_t chunk[256];
		ssize_t n = read(link->fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -EIO;
		}
		if (n == 0) {
			/* POLLHUP without data: the other end of a pty is gone. */
			if (pfd.revents & POLLHUP)
				return -EIO;
			continue;
		}
		got_bytes = true;
		last_byte = mh_serial_mono_ms();
		size_t off = 0;
		while (off < (size_t)n) {
			size_t used = 0;
			mh_dlt645_stream_feed(&link->stream, chunk + off, (size_t)n - off, &used);
			off += used;
			while (mh_dlt645_stream_next_reply(&link->stream, rsp) == 0) {
				if (mh_dlt645_is_reply_to(req, rsp))
					return 0;
				link->stream.skipped++;
			}
		}
	}
}

int mh_dlt645_link_read(struct mh_dlt645_link *link, const uint8_t addr[MH_DLT645_ADDR_LEN],
	uint32_t di, uint8_t *out, size_t cap, size_t *len, uint8_t *err)
{
	struct mh_dlt645_frame req, rsp;
	uint8_t seq = 0;
	int rc;

	*len = 0;
	*err = 0;
	rc = mh_dlt645_build_read(&req, addr, di);
	for (int frames = 0; rc == 0; frames++) {
		const uint8_t *payload;
		size_t n;
		uint32_t got_di;
		uint8_t got_seq;

		if (frames > MAX_FOLLOWUPS)
			return -EBADMSG;
		rc = mh_dlt645_link_transact(link, &req, &rsp);
		if (rc < 0)
			return rc;
		rc = mh_dlt645_reply_error(&rsp, err);
		if (rc < 0)
			return rc;
		rc = mh_dlt645_read_payload(&rsp, &got_di, &payload, &n, &got_seq);
		if (rc < 0 || got_di != di || (frames > 0 && got_seq != seq))
			return -EBADMSG;
		if (*len + n > cap)
			return -ENOSPC;
		memcpy(out + *len, payload, n);
		*len += n;
		if (!mh_dlt645_has_followup(&rsp))
			return 0;
		rc = mh_dlt645_build_read_followup(&req, addr, di, ++seq);
	}
	return rc;
}

int mh_dlt645_link_discover(struct mh_dlt645_link *link, uint8_t addr[MH_DLT645_ADDR_LEN])
{
	struct mh_dlt645_frame req, rsp;
	uint8_t err;
	int rc = mh_dlt645_build_read_address(&req);

	if (!rc)
		rc = mh_dlt645_link_transact(link, &req, &rsp);
	if (!rc)
		rc = mh_dlt645_reply_error(&rsp, &err);
	if (!rc)
		memcpy(addr, rsp.addr, MH_DLT645_ADDR_LEN);
	return rc;
}

void mh_dlt645_link_counters(const struct mh_dlt645_link *link, uint64_t *garbage,
	uint64_t *skipped)
{
	*garbage = link->stream.garbage;
	*skipped = link->stream.skipped;
}
