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
	unsigned baud;
	unsigned response_timeout_ms;
	unsigned byte_timeout_ms;
	struct mh_dlt645_stream stream;
	/* The last request as it went out, to recognise its echo. */
	uint8_t sent[MH_DLT645_MAX_FRAME];
	size_t sent_len;
	/* What came back in the exchange, when frames are logged (-v bus or -v dlt645). */
	bool trace;
	uint8_t heard[2 * MH_DLT645_MAX_FRAME];
	size_t heard_len;
	char device[128];
	/* What the line did; the stream keeps the garbage bytes and bad checksums. */
	struct mh_link_counters counters;
	/* The last request that got no reply, to know that reply if it comes late. */
	struct mh_dlt645_frame unanswered;
	bool has_unanswered;
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
	link->baud = params->baud;
	link->response_timeout_ms = params->response_timeout_ms;
	link->byte_timeout_ms = params->byte_timeout_ms;
	mh_dlt645_stream_init(&link->stream);
	link->fd = open(params->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (link->fd < 0) {
		rc = -errno;
		free(link);
		return rc;
	}
	/* Claim the port before touching its settings: they may be another process's. */
	rc = mh_serial_lock(link->fd);
	if (rc == -EBUSY) {
		close(link->fd);
		free(link);
		return rc;
	}
	if (rc < 0)
		mh_log_warn(DLT645,
			"%s: cannot lock the port (%s); other processes are not kept off it",
			link->device, strerror(-rc));
	rc = mh_serial_exclude(link->fd);
	if (rc < 0)
		mh_log_debug(DLT645, "%s: TIOCEXCL refused (%s); relying on the lock alone",
			link->device, strerror(-rc));
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

/* Milliseconds @bytes take on the line: 11 bits a character (start, 8 data, parity, stop). */
static unsigned line_ms(const struct mh_dlt645_link *link, size_t bytes)
{
	return (unsigned)((bytes * 11 * 1000 + link->baud - 1) / link->baud);
}

/*
 * Write all of @n bytes. A port that has not taken them within @timeout_ms
 * is stuck (a pty nobody reads) and must not hold the bus thread for ever.
 */
static int write_all(int fd, const uint8_t *p, size_t n, unsigned timeout_ms)
{
	int64_t deadline = mh_serial_mono_ms() + timeout_ms;

	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return mh_serial_errno_is_gone(errno) ? -ENODEV : -EIO;

			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int64_t wait = deadline - mh_serial_mono_ms();
			if (wait <= 0)
				return -EIO;
			if (poll(&pfd, 1, (int)wait) > 0 && (pfd.revents & POLLHUP))
				return -ENODEV;
			continue;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Whether @addr is one that @req was sent to (AA digits are wildcards, 99.. is everyone). */
static bool addressed_to(const struct mh_dlt645_frame *req, const uint8_t *addr)
{
	if (memcmp(req->addr, mh_dlt645_addr_broadcast, MH_DLT645_ADDR_LEN) == 0)
		return true;
	for (int i = 0; i < MH_DLT645_ADDR_LEN; i++)
		if (req->addr[i] != 0xAA && req->addr[i] != addr[i])
			return false;
	return true;
}

/*
 * A meter's frame @f that does not answer @req: the late reply to the
 * request that went unanswered before, a reply from another meter (an
 * address set twice, a meter that answers for every address), or one
 * from ours about something else.
 */
static void count_stray(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	const struct mh_dlt645_frame *f)
{
	if (link->has_unanswered && mh_dlt645_is_reply_to(&link->unanswered, f)) {
		link->counters.late_replies++;
		link->has_unanswered = false;
	} else if (!addressed_to(req, f->addr)) {
		link->counters.wrong_address++;
	} else {
		link->counters.garbled++;
	}
}

/*
 * Before a request: what the line holds now came after the last exchange
 * was over. A meter's frame in it is a late reply (the meter was slower
 * than the response timeout); the rest is noise that the stream counts as
 * garbage. None of it may be taken for the answer to the next request.
 */
static void drain_stale(struct mh_dlt645_link *link)
{
	struct mh_dlt645_frame f;
	uint8_t chunk[256];
	size_t off = 0, len = 0, used;

	for (;;) {
		/* What the stream holds first: what came behind the last reply. */
		while (mh_dlt645_stream_next(&link->stream, &f) == 0) {
			if (!mh_dlt645_is_reply(&f))
				continue;
			link->counters.late_replies++;
			if (link->has_unanswered && mh_dlt645_is_reply_to(&link->unanswered, &f))
				link->has_unanswered = false;
		}
		if (off == len) {
			ssize_t n = read(link->fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			/* Nothing there (EAGAIN), or a port gone, which the write will say. */
			if (n <= 0)
				break;
			len = (size_t)n;
			off = 0;
		}
		mh_dlt645_stream_feed(&link->stream, chunk + off, len - off, &used);
		off += used;
	}
	/* A frame cut short stays incomplete for ever: it goes without a count. */
	mh_dlt645_stream_reset(&link->stream);
}

int mh_dlt645_link_send(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req)
{
	int n = mh_dlt645_encode(req, PREAMBLE, link->sent, sizeof(link->sent));
	int rc;

	link->sent_len = 0;
	if (n < 0)
		return n;
	link->sent_len = (size_t)n;
	/* What is left of an earlier reply must not be taken for the next one. */
	drain_stale(link);
	tcflush(link->fd, TCIFLUSH);
	mh_log_frame(MH_LOG_DLT645, link->device, "tx", link->sent, link->sent_len, NULL);
	rc = write_all(link->fd, link->sent, link->sent_len,
		link->response_timeout_ms + line_ms(link, link->sent_len));
	if (rc < 0)
		return rc;
	link->counters.frames++;
	tcdrain(link->fd);
	return 0;
}

/*
 * Follows the echo of our request through the bytes that come back. A
 * half-duplex adapter hears its own transmission, so those bytes come first,
 * whole or in pieces, often short of some leading FE bytes that were lost
 * while the transceiver turned round. They say nothing about the meter,
 * which may answer only hundreds of milliseconds later.
 */
struct echo {
	const uint8_t *sent;
	size_t len;
	size_t start; /* where the frame begins in @sent, after the preamble */
	size_t pos;   /* how much of @sent has come back */
	bool over;
};

static void echo_init(struct echo *e, const uint8_t *sent, size_t len)
{
	*e = (struct echo){ .sent = sent, .len = len };
	while (e->start < len && sent[e->start] != 0x68)
		e->start++;
	e->over = e->start == len;
}

/*
 * Whether the echo went past the control byte: a meter's reply begins like
 * our request (FE, 68, the same address, 68) but its control byte differs.
 */
static bool echo_seen(const struct echo *e)
{
	return e->pos >= e->start + 9;
}

/* Whether @b continues the echo. Once the frame has begun, a byte that does not ends it. */
static bool echo_continues(struct echo *e, uint8_t b)
{
	if (e->over)
		return false;
	if (e->pos <= e->start) {
		if (b == e->sent[e->start]) {
			e->pos = e->start + 1;
			return true;
		}
		if (b == 0xFE) {
			if (e->pos < e->start)
				e->pos++;
			return true;
		}
		/* Noise before the frame, as the line turns round: the echo may still come. */
		return false;
	}
	if (e->pos < e->len && b == e->sent[e->pos]) {
		e->over = ++e->pos == e->len;
		return true;
	}
	e->over = true;
	return false;
}

/* Keep what the line brought in this exchange for the frame log (echo, noise, reply). */
static void hear(struct mh_dlt645_link *link, const uint8_t *p, size_t n)
{
	size_t room = sizeof(link->heard) - link->heard_len;

	if (n > room)
		n = room;
	memcpy(link->heard + link->heard_len, p, n);
	link->heard_len += n;
}

/* Feed @n bytes to the stream; 0 once they complete the reply to @req, else -EAGAIN. */
static int take(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	struct mh_dlt645_frame *rsp, const uint8_t *p, size_t n, bool *begun)
{
	size_t off = 0;

	while (off < n) {
		size_t used = 0;
		bool stray = false;

		mh_dlt645_stream_feed(&link->stream, p + off, n - off, &used);
		off += used;
		if (mh_dlt645_stream_reply_begun(&link->stream))
			*begun = true;
		while (mh_dlt645_stream_next_reply(&link->stream, rsp) == 0) {
			if (mh_dlt645_is_reply_to(req, rsp)) {
				/* What came behind it is judged before the next request. */
				mh_dlt645_stream_feed(&link->stream, p + off, n - off, &used);
				link->counters.garbage_bytes += n - off - used;
				return 0;
			}
			link->stream.skipped++;
			count_stray(link, req, rsp);
			stray = true;
		}
		/*
		 * A whole frame that was not ours began nothing: the wait for our
		 * reply goes on to the response timeout, not to the next pause.
		 */
		if (stray)
			*begun = mh_dlt645_stream_reply_begun(&link->stream);
	}
	return -EAGAIN;
}

/*
 * What the counters that explain a failed exchange add up to: a garbled
 * exchange is one that failed with none of them growing.
 */
static uint64_t explained(const struct mh_dlt645_link *link)
{
	return link->stream.bad_checksum + link->counters.wrong_address +
	       link->counters.late_replies + link->counters.garbled;
}

/*
 * Send @req and wait for its reply (see mh_dlt645_link_transact()).
 * *@echoed: it came back; *@before: explained() once it was sent.
 */
static int exchange(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	struct mh_dlt645_frame *rsp, bool *echoed, uint64_t *before)
{
	struct echo echo;
	int64_t now, deadline, limit, end, last_byte = 0;
	/* begun: a meter's frame has started; foreign: a byte came that was not our echo. */
	bool begun = false, foreign = false;
	int rc = mh_dlt645_link_send(link, req);

	*echoed = false;
	*before = explained(link);
	if (rc < 0)
		return rc;
	echo_init(&echo, link->sent, link->sent_len);
	deadline = mh_serial_mono_ms() + link->response_timeout_ms;
	/* However long a line keeps babbling, a whole frame's time past the deadline ends it. */
	limit = deadline + line_ms(link, MH_DLT645_MAX_FRAME) + link->byte_timeout_ms;
	for (;;) {
		/*
		 * The response timeout bounds the wait for a reply to begin;
		 * neither the echo nor noise begins one, and a byte that comes
		 * at the very deadline gets a pause's worth of time to show that
		 * it does. Once a reply has begun, only a pause ends it.
		 */
		end = last_byte + link->byte_timeout_ms;
		if (!begun && end < deadline)
			end = deadline;
		if (end > limit)
			end = limit;
		now = mh_serial_mono_ms();
		if (end <= now)
			return foreign ? -EBADMSG : -ETIMEDOUT;

		struct pollfd pfd = { .fd = link->fd, .events = POLLIN };
		int p = poll(&pfd, 1, (int)(end - now));
		if (p < 0 && errno != EINTR)
			return -EIO;
		if (p <= 0)
			continue;
		if (pfd.revents & POLLNVAL)
			return -EIO;

		uint8_t chunk[256];
		ssize_t n = read(link->fd, chunk, sizeof(chunk));
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return mh_serial_errno_is_gone(errno) ? -ENODEV : -EIO;
		if (n <= 0) {
			/*
			 * Readable, yet nothing to read: the tty was hung up (the
			 * other end of a pty closed, a USB adapter unplugged).
			 */
			if (pfd.revents & (POLLHUP | POLLERR))
				return -ENODEV;
			continue;
		}
		last_byte = mh_serial_mono_ms();
		if (link->trace)
			hear(link, chunk, (size_t)n);
		for (ssize_t i = 0; i < n; i++)
			if (!echo_continues(&echo, chunk[i]))
				foreign = true;
		*echoed = echo_seen(&echo);
		rc = take(link, req, rsp, chunk, (size_t)n, &begun);
		if (rc != -EAGAIN)
			return rc;
	}
}

/* What the frame log says of an exchange that brought no reply; NULL when one came. */
static const char *outcome(int rc)
{
	if (rc == 0)
		return NULL;
	if (rc == -ETIMEDOUT)
		return "no reply";
	return rc == -EBADMSG ? "no valid reply" : strerror(-rc);
}

/* What the exchange showed of the line; link->counters has what it saw on the way. */
static void count_exchange(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	const struct mh_dlt645_frame *rsp, int rc, bool echoed, uint64_t before)
{
	if (echoed)
		link->counters.echo++;
	if (rc == -ETIMEDOUT || rc == -EBADMSG) {
		link->unanswered = *req;
		link->has_unanswered = true;
	}
	if (rc == 0 && mh_dlt645_is_abnormal(rsp))
		link->counters.refusals++;
	else if (rc == -ETIMEDOUT)
		link->counters.timeouts++;
	/* No reply, and nothing more telling on the way: noise, or a frame cut short. */
	else if (rc == -EBADMSG && explained(link) == before)
		link->counters.garbled++;
}

int mh_dlt645_link_transact(struct mh_dlt645_link *link, const struct mh_dlt645_frame *req,
	struct mh_dlt645_frame *rsp)
{
	uint64_t before;
	bool echoed;
	int rc;

	link->trace = mh_log_frames_on(MH_LOG_DLT645);
	link->heard_len = 0;
	rc = exchange(link, req, rsp, &echoed, &before);
	if (link->trace)
		mh_log_frame(MH_LOG_DLT645, link->device, "rx", link->heard, link->heard_len,
			outcome(rc));
	count_exchange(link, req, rsp, rc, echoed, before);
	return rc;
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

		if (frames > MAX_FOLLOWUPS) {
			link->counters.garbled++;
			return -EBADMSG;
		}
		rc = mh_dlt645_link_transact(link, &req, &rsp);
		if (rc < 0)
			return rc;
		rc = mh_dlt645_reply_error(&rsp, err);
		if (rc < 0)
			return rc;
		rc = mh_dlt645_read_payload(&rsp, &got_di, &payload, &n, &got_seq);
		if (rc < 0 || got_di != di || (frames > 0 && got_seq != seq)) {
			/* A reply with our checksum but not the shape it must have. */
			link->counters.garbled++;
			return -EBADMSG;
		}
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

void mh_dlt645_link_counters(const struct mh_dlt645_link *link, struct mh_link_counters *out)
{
	*out = link->counters;
	out->garbage_bytes += link->stream.garbage;
	out->checksum_errors = link->stream.bad_checksum;
}
