/* SPDX-License-Identifier: MIT */
#pragma once

/* Line settings, timing and port ownership shared by the serial links (Modbus RTU, DL/T 645). */

#include <errno.h>
#include <linux/major.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

enum mh_parity {
	MH_PARITY_NONE,
	MH_PARITY_EVEN,
	MH_PARITY_ODD,
};

struct mh_serial_params {
	const char *device;
	unsigned baud;
	enum mh_parity parity;
	unsigned response_timeout_ms; /* first byte of the reply */
	unsigned byte_timeout_ms;     /* silence that ends a reply */
};

/*
 * What a link saw on its line, counted per frame exchange since the link
 * was opened; they only ever grow. A link fills them in, knowing nothing
 * of who reads them: the bus thread copies them out after each job.
 * Classes a protocol cannot see stay 0 (see each link's header).
 */
struct mh_link_counters {
	uint64_t frames;          /* requests sent, retries and follow-ups included */
	uint64_t timeouts;        /* exchanges in which no reply began in time */
	uint64_t checksum_errors; /* replies whose checksum (DL/T 645 CS, Modbus CRC) was wrong */
	uint64_t garbled;         /* exchanges spoilt otherwise: noise only, cut short, malformed */
	uint64_t wrong_address;   /* replies from another meter or slave */
	uint64_t echo;            /* exchanges in which our own request came back */
	uint64_t late_replies;    /* replies that came after their exchange was over */
	uint64_t garbage_bytes;   /* bytes dropped that were neither a frame nor fill */
	uint64_t refusals;        /* Modbus exceptions, DL/T 645 abnormal replies */
};

/* @a += @b, field by field. */
static inline void mh_link_counters_add(struct mh_link_counters *a,
	const struct mh_link_counters *b)
{
	a->frames += b->frames;
	a->timeouts += b->timeouts;
	a->checksum_errors += b->checksum_errors;
	a->garbled += b->garbled;
	a->wrong_address += b->wrong_address;
	a->echo += b->echo;
	a->late_replies += b->late_replies;
	a->garbage_bytes += b->garbage_bytes;
	a->refusals += b->refusals;
}

/* 'N', 'E' or 'O'. */
static inline char mh_parity_letter(enum mh_parity parity)
{
	return parity == MH_PARITY_EVEN ? 'E' : parity == MH_PARITY_ODD ? 'O' : 'N';
}

/* Monotonic milliseconds, for timeouts and the gaps between frames. */
static inline int64_t mh_serial_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Take the advisory lock on the port open on @fd, so that two meterhub
 * processes never drive one RS485 line: their frames would collide and each
 * would read the other's replies. The lock binds root too, and the kernel
 * drops it when the descriptor closes, however the process ends. Returns 0,
 * -EBUSY if another open of the port (in any process) holds it, or another
 * negative errno if the port cannot be locked at all.
 */
static inline int mh_serial_lock(int fd)
{
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	}
	return 0;
}

/*
 * Also refuse the port to programs that take no lock (TIOCEXCL); the kernel
 * lets root open it all the same. A device that is not a tty (ENOTTY,
 * EINVAL) goes without. Pty slaves are left alone: there the flag stays on
 * the line after we close it for as long as the master is open, so a daemon
 * restarted after a crash would be refused its own test line. Returns 0 or
 * a negative errno.
 */
static inline int mh_serial_exclude(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISCHR(st.st_mode) && major(st.st_rdev) >= UNIX98_PTY_SLAVE_MAJOR &&
		major(st.st_rdev) < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT)
		return 0;
	if (ioctl(fd, TIOCEXCL) < 0 && errno != ENOTTY && errno != EINVAL)
		return -errno;
	return 0;
}

/*
 * Whether @err from read() or write() on a tty means the port itself is
 * gone: a USB adapter unplugged, the far end of a pty closed (the tty was
 * hung up). Such a descriptor never works again; the port must be reopened.
 */
static inline bool mh_serial_errno_is_gone(int err)
{
	return err == EIO || err == ENODEV || err == ENXIO;
}
