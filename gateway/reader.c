// SPDX-License-Identifier: MIT
#include "reader.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "modbus_link.h"

struct meter_plan {
	struct mh_modbus_plan plan;
	/* Set once the meter refused a request that spans unused registers. */
	bool exact;
};

struct mh_reader {
	const struct mh_bus_config *bus;
	struct mh_modbus_link *link;
	struct meter_plan *plans;
	int64_t last_frame_ms; /* monotonic time the last reply ended */
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keep the bus quiet for the frame gap since the last reply. */
static void keep_gap(struct mh_reader *reader)
{
	int64_t wait = reader->last_frame_ms + reader->bus->frame_gap_ms - mono_ms();

	if (wait > 0) {
		struct timespec ts = { .tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

static int plan_meter(const struct mh_meter *m, unsigned max_gap, struct mh_modbus_plan *plan)
{
	struct mh_modbus_point *points = calloc(m->profile->n_points + 1, sizeof(*points));
	int rc;

	if (!points)
		return -ENOMEM;
	for (size_t i = 0; i < m->profile->n_points; i++)
		points[i] = m->profile->points[i].modbus;
	rc = mh_modbus_plan_build(points, m->profile->n_points, max_gap, plan);
	free(points);
	return rc;
}

int mh_reader_open(const struct mh_bus_config *bus, struct mh_reader **out)
{
	struct mh_reader *reader = calloc(1, sizeof(*reader));
	struct mh_serial_params params = {
		.device = bus->device,
		.baud = bus->baud,
		.parity = bus->parity,
		.response_timeout_ms = bus->timeout_ms,
		/* A reply ends after a few characters of silence; keep a floor for USB adapters. */
		.byte_timeout_ms = 20,
	};
	int rc;

	if (!reader)
		return -ENOMEM;
	reader->bus = bus;
	reader->plans = calloc(bus->n_meters, sizeof(*reader->plans));
	if (!reader->plans) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < bus->n_meters; i++) {
		rc = plan_meter(&bus->meters[i], bus->meters[i].profile->max_gap,
			&reader->plans[i].plan);
		if (rc < 0)
			goto fail;
	}
	rc = mh_modbus_link_open(&params, &reader->link);
	if (rc < 0)
		goto fail;
	*out = reader;
	return 0;

fail:
	mh_reader_free(reader);
	return rc;
}

void mh_reader_free(struct mh_reader *reader)
{
	if (!reader)
		return;
	if (reader->plans)
		for (size_t i = 0; i < reader->bus->n_meters; i++)
			mh_modbus_plan_deinit(&reader->plans[i].plan);
	free(reader->plans);
	mh_modbus_link_free(reader->link);
	free(reader);
}

/* Record the first problem of a reading; later ones only add to the log. */
__attribute__((format(printf, 3, 4))) static void fail(struct mh_reading *r,
	enum mh_quality q, const char *fmt, ...)
{
	va_list ap;

	if (r->quality != MH_QUALITY_GOOD)
		return;
	r->quality = q;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

static int read_modbus(struct mh_reader *reader, struct mh_reading *r, const volatile bool *stop)
{
	const struct mh_meter *m = &reader->bus->meters[r->meter];
	struct meter_plan *mp = &reader->plans[r->meter];
	uint16_t regs[MH_MODBUS_MAX_BITS];
	int64_t start = mono_ms();

again:
	for (size_t i = 0; i < mp->plan.n_requests; i++) {
		const struct mh_modbus_request *req = &mp->plan.requests[i];
		uint8_t exc = 0;
		int rc;

		for (int attempt = 0; attempt < 2; attempt++) {
			if (*stop)
				return -ECANCELED;
			keep_gap(reader);
			if (!r->frames++)
				r->read_at_ms = wall_ms();
			rc = mh_modbus_link_read(reader->link, (int)m->unit, req, regs, &exc);
			reader->last_frame_ms = mono_ms();
			/* Line noise garbles one reply; it rarely garbles two in a row. */
			if (rc != -EBADMSG)
				break;
		}
		if (rc == -EREMOTEIO && exc == 2 && !mp->exact && m->profile->max_gap > 0) {
			struct mh_modbus_plan exact;
			/* Some meters refuse reads that span unmapped registers: ask exactly. */
			if (plan_meter(m, 0, &exact) == 0) {
				mh_log_notice(MODBUS,
					"%s: meter %s refused a batched read; reading only mapped registers from now on",
					reader->bus->name, m->id);
				mh_modbus_plan_deinit(&mp->plan);
				mp->plan = exact;
				mp->exact = true;
				memset(r->valid, 0, r->n_values * sizeof(bool));
				goto again;
			}
		}
		switch (rc) {
		case 0:
			break;
		case -ETIMEDOUT:
			/* A silent meter costs one timeout, never one per request. */
			fail(r, MH_QUALITY_TIMEOUT, "no reply within %u ms", reader->bus->timeout_ms);
			goto done;
		case -EREMOTEIO:
			fail(r, MH_QUALITY_ERROR, "exception %u (%s) reading %s 0x%04X+%u", exc,
				mh_modbus_exception_str(exc), mh_modbus_table_name(req->table),
				req->address, req->count);
			continue;
		case -EBADMSG:
			fail(r, MH_QUALITY_ERROR, "garbled reply reading %s 0x%04X+%u (twice)",
				mh_modbus_table_name(req->table), req->address, req->count);
			continue;
		default:
			fail(r, MH_QUALITY_ERROR, "port error: %s", strerror(-rc));
			goto done;
		}
		for (size_t p = 0; p < m->profile->n_points; p++) {
			const struct mh_modbus_slot *slot = &mp->plan.slots[p];
			if (slot->request != i)
				continue;
			if (mh_modbus_decode(&m->profile->points[p].modbus, regs + slot->offset,
				    &r->values[p]) == 0)
				r->valid[p] = true;
		}
	}
done:
	r->duration_ms = (unsigned)(mono_ms() - start);
	return 0;
}

int mh_reader_read(struct mh_reader *reader, struct mh_reading *r, const volatile bool *stop)
{
	r->quality = MH_QUALITY_GOOD;
	r->error[0] = '\0';
	return read_modbus(reader, r, stop);
}
