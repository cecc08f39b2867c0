// SPDX-License-Identifier: MIT
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reader.h"
#include "schedule.h"

#define REOPEN_MS 5000

struct mh_bus {
	const struct mh_bus_config *cfg;
	struct mh_queue jobs;
	struct mh_queue *results;
	uv_thread_t thread;
	volatile bool stop;
};

static void bus_thread(void *arg)
{
	struct mh_bus *bus = arg;
	struct mh_reader *reader = NULL;
	int64_t next_open = 0;
	int open_err = 0;

	while (!bus->stop) {
		if (!reader && mh_schedule_now_ms() >= next_open) {
			int rc = mh_reader_open(bus->cfg, &reader);
			if (rc < 0) {
				if (rc != open_err)
					mh_log_err(BUS, "%s: cannot open %s: %s; retrying every %d s",
						bus->cfg->name, bus->cfg->device, strerror(-rc),
						REOPEN_MS / 1000);
				open_err = rc;
				next_open = mh_schedule_now_ms() + REOPEN_MS;
			} else {
				if (open_err)
					mh_log_notice(BUS, "%s: %s is open again", bus->cfg->name,
						bus->cfg->device);
				open_err = 0;
			}
		}

		struct mh_queue_node *node = mh_queue_pop_wait(&bus->jobs, 1000, &bus->stop);
		if (!node)
			continue;
		struct mh_reading *r = (struct mh_reading *)node;
		if (reader) {
			if (mh_reader_read(reader, r, &bus->stop) == -ECANCELED) {
				mh_reading_free(r);
				break;
			}
		} else {
			r->read_at_ms = mh_schedule_now_ms();
			r->quality = MH_QUALITY_ERROR;
			snprintf(r->error, sizeof(r->error), "port %s unavailable: %s",
				bus->cfg->device, strerror(-open_err));
		}
		mh_queue_push(bus->results, &r->node);
	}
	mh_reader_free(reader);
}

int mh_bus_start(const struct mh_bus_config *cfg, struct mh_queue *results, struct mh_bus **out)
{
	struct mh_bus *bus = calloc(1, sizeof(*bus));
	int rc;

	if (!bus)
		return -ENOMEM;
	bus->cfg = cfg;
	bus->results = results;
	rc = mh_queue_init(&bus->jobs, NULL);
	if (rc) {
		free(bus);
		return rc;
	}
	rc = uv_thread_create(&bus->thread, bus_thread, bus);
	if (rc) {
		mh_queue_deinit(&bus->jobs);
		free(bus);
		return rc;
	}
	*out = bus;
	return 0;
}

void mh_bus_submit(struct mh_bus *bus, struct mh_reading *r)
{
	mh_queue_push(&bus->jobs, &r->node);
}

size_t mh_bus_backlog(struct mh_bus *bus)
{
	return mh_queue_len(&bus->jobs);
}

void mh_bus_stop(struct mh_bus *bus)
{
	struct mh_queue_node *node;

	if (!bus)
		return;
	bus->stop = true;
	mh_queue_interrupt(&bus->jobs);
	uv_thread_join(&bus->thread);
	node = mh_queue_take_all(&bus->jobs);
	while (node) {
		struct mh_queue_node *next = node->next;
		mh_reading_free((struct mh_reading *)node);
		node = next;
	}
	mh_queue_deinit(&bus->jobs);
	free(bus);
}
