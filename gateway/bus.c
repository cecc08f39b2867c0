// SPDX-License-Identifier: MIT
#include "bus.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "reader.h"

/* Reopen backoff: a replugged adapter is back within seconds; a dead one costs little. */
#define REOPEN_MIN_MS 1000
#define REOPEN_MAX_MS 8000
/* How long the thread sleeps at most with nothing to do (it also waits to reopen). */
#define IDLE_MS 1000

struct mh_bus {
	const struct mh_bus_config *cfg;
	struct mh_queue *done;
	uv_thread_t thread;
	uv_mutex_t lock; /* guards the FIFOs and the port state */
	uv_cond_t work;
	struct mh_fifo priority, scheduled;
	atomic_bool stop;
	atomic_uint active; /* jobs submitted and not yet handed back */
	struct mh_bus_port port;
	/* Bus thread only: what the links of ports closed before counted. */
	struct mh_link_counters closed;
};

/* The next job, priority first; waits up to @timeout_ms. NULL when none came. */
static struct mh_job *next_job(struct mh_bus *bus, unsigned timeout_ms)
{
	struct mh_queue_node *node;

	uv_mutex_lock(&bus->lock);
	if (!bus->priority.len && !bus->scheduled.len && timeout_ms && !atomic_load(&bus->stop))
		(void)uv_cond_timedwait(&bus->work, &bus->lock, (uint64_t)timeout_ms * 1000000u);
	node = mh_fifo_pop(&bus->priority);
	if (!node)
		node = mh_fifo_pop(&bus->scheduled);
	uv_mutex_unlock(&bus->lock);
	return (struct mh_job *)node;
}

/* An urgent job, if one waits; never blocks. */
static struct mh_job *next_urgent(struct mh_bus *bus)
{
	struct mh_queue_node *node;

	uv_mutex_lock(&bus->lock);
	node = mh_fifo_pop(&bus->priority);
	uv_mutex_unlock(&bus->lock);
	return (struct mh_job *)node;
}

/* Hand a job back to the loop. */
static void hand_back(struct mh_bus *bus, struct mh_job *job)
{
	mh_queue_push(bus->done, &job->node);
	atomic_fetch_sub(&bus->active, 1);
}

/* After a job: what the link counted so far is what health reports. */
static void publish_counters(struct mh_bus *bus, const struct mh_reader *reader)
{
	struct mh_link_counters now = bus->closed, link;

	mh_reader_counters(reader, &link);
	mh_link_counters_add(&now, &link);
	uv_mutex_lock(&bus->lock);
	bus->port.link = now;
	uv_mutex_unlock(&bus->lock);
}

/* The port is about to close: keep what its link counted. */
static void close_reader(struct mh_bus *bus, struct mh_reader *reader)
{
	struct mh_link_counters link;

	if (!reader)
		return;
	publish_counters(bus, reader);
	mh_reader_counters(reader, &link);
	mh_link_counters_add(&bus->closed, &link);
	mh_reader_free(reader);
}

/*
 * Between two frames of a read: the urgent jobs waiting run now. A port
 * that fails under one stops the others; the read it interrupted meets the
 * same failure at its next frame and the thread reopens the port.
 */
static void run_urgent(void *ud, struct mh_reader *reader)
{
	struct mh_bus *bus = ud;
	struct mh_job *job;

	while (!atomic_load(&bus->stop) && (job = next_urgent(bus))) {
		int rc = mh_reader_run(reader, job, &bus->stop);
		if (rc == -ECANCELED)
			job->canceled = true;
		publish_counters(bus, reader);
		hand_back(bus, job);
		if (rc == -ENODEV)
			break;
	}
}

static void set_port(struct mh_bus *bus, bool open, int err)
{
	uv_mutex_lock(&bus->lock);
	if (bus->port.open && !open)
		bus->port.losses++;
	bus->port.open = open;
	bus->port.last_error = err;
	uv_mutex_unlock(&bus->lock);
}

/* The port is closed: a job cannot run, and says why. */
static void refuse(struct mh_bus *bus, struct mh_job *job, int err)
{
	struct mh_reading *r = &job->reading;

	mh_reading_clear(r);
	r->read_at_ms = mh_clock_wall_ms();
	r->quality = MH_QUALITY_ERROR;
	job->result = -ENODEV;
	snprintf(r->error, sizeof(r->error), "port %s unavailable: %s", bus->cfg->device,
		err == -EBUSY ? "in use by another process" : strerror(-err));
}

static void bus_thread(void *arg)
{
	struct mh_bus *bus = arg;
	struct mh_reader *reader = NULL;
	int64_t next_open = 0;
	unsigned backoff = REOPEN_MIN_MS;
	int port_err = 0;
	bool was_open = false;

	while (!atomic_load(&bus->stop)) {
		if (!reader && mh_clock_mono_ms() >= next_open) {
			int rc = mh_reader_open(bus->cfg, &reader);
			if (rc < 0) {
				if (rc != port_err)
					mh_log_err(BUS, "%s: cannot open %s: %s; retrying",
						bus->cfg->name, bus->cfg->device,
						rc == -EBUSY ? "in use by another process"
							     : strerror(-rc));
				port_err = rc;
				set_port(bus, false, rc);
				next_open = mh_clock_mono_ms() + backoff;
				backoff = backoff * 2 > REOPEN_MAX_MS ? REOPEN_MAX_MS : backoff * 2;
			} else {
				if (was_open || port_err)
					mh_log_notice(BUS, "%s: %s is open again", bus->cfg->name,
						bus->cfg->device);
				mh_reader_set_yield(reader, run_urgent, bus);
				was_open = true;
				port_err = 0;
				backoff = REOPEN_MIN_MS;
				set_port(bus, true, 0);
			}
		}

		int64_t wait = reader ? IDLE_MS : next_open - mh_clock_mono_ms();
		struct mh_job *job = next_job(bus, wait <= 0 ? 1 : wait > IDLE_MS ? IDLE_MS : (unsigned)wait);
		if (!job)
			continue;
		if (!reader) {
			refuse(bus, job, port_err);
			hand_back(bus, job);
			continue;
		}
		int rc = mh_reader_run(reader, job, &bus->stop);
		publish_counters(bus, reader);
		if (rc == -ECANCELED) {
			job->canceled = true;
		} else if (rc == -ENODEV) {
			/* The adapter went away or broke: close it and open it afresh. */
			mh_log_err(BUS, "%s: port %s failed (%s); closing it and reopening",
				bus->cfg->name, bus->cfg->device, job->reading.error);
			close_reader(bus, reader);
			reader = NULL;
			port_err = -ENODEV;
			set_port(bus, false, -ENODEV);
			next_open = mh_clock_mono_ms() + REOPEN_MIN_MS;
			backoff = REOPEN_MIN_MS;
		}
		hand_back(bus, job);
	}
	close_reader(bus, reader);
}

int mh_bus_start(const struct mh_bus_config *cfg, struct mh_queue *done, struct mh_bus **out)
{
	struct mh_bus *bus = calloc(1, sizeof(*bus));
	int rc;

	if (!bus)
		return -ENOMEM;
	bus->cfg = cfg;
	bus->done = done;
	atomic_init(&bus->stop, false);
	atomic_init(&bus->active, 0);
	rc = uv_mutex_init(&bus->lock);
	if (rc) {
		free(bus);
		return rc;
	}
	rc = uv_cond_init(&bus->work);
	if (!rc) {
		rc = uv_thread_create(&bus->thread, bus_thread, bus);
		if (rc)
			uv_cond_destroy(&bus->work);
	}
	if (rc) {
		uv_mutex_destroy(&bus->lock);
		free(bus);
		return rc;
	}
	*out = bus;
	return 0;
}

void mh_bus_submit(struct mh_bus *bus, struct mh_job *job, bool priority)
{
	job->urgent = priority;
	atomic_fetch_add(&bus->active, 1);
	uv_mutex_lock(&bus->lock);
	mh_fifo_push(priority ? &bus->priority : &bus->scheduled, &job->node);
	uv_cond_signal(&bus->work);
	uv_mutex_unlock(&bus->lock);
}

size_t mh_bus_backlog(struct mh_bus *bus)
{
	size_t n;

	uv_mutex_lock(&bus->lock);
	n = bus->priority.len + bus->scheduled.len;
	uv_mutex_unlock(&bus->lock);
	return n;
}

bool mh_bus_idle(struct mh_bus *bus)
{
	return atomic_load(&bus->active) == 0;
}

void mh_bus_port(struct mh_bus *bus, struct mh_bus_port *out)
{
	uv_mutex_lock(&bus->lock);
	*out = bus->port;
	uv_mutex_unlock(&bus->lock);
}

static void cancel_all(struct mh_bus *bus, struct mh_queue_node *node)
{
	while (node) {
		struct mh_queue_node *next = node->next;
		((struct mh_job *)node)->canceled = true;
		hand_back(bus, (struct mh_job *)node);
		node = next;
	}
}

void mh_bus_stop(struct mh_bus *bus)
{
	if (!bus)
		return;
	atomic_store(&bus->stop, true);
	uv_mutex_lock(&bus->lock);
	uv_cond_broadcast(&bus->work);
	uv_mutex_unlock(&bus->lock);
	uv_thread_join(&bus->thread);
	cancel_all(bus, mh_fifo_take_all(&bus->priority));
	cancel_all(bus, mh_fifo_take_all(&bus->scheduled));
	uv_cond_destroy(&bus->work);
	uv_mutex_destroy(&bus->lock);
	free(bus);
}
