// SPDX-License-Identifier: MIT
#include "reader.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlt645_di.h"
#include "dlt645_link.h"
#include "log.h"
#include "modbus_link.h"
#include "schedule.h"

/* How one meter is read: the frames its profile needs. */
struct meter_plan {
	/* Modbus */
	struct mh_modbus_plan modbus;
	/* DL/T 645 */
	uint32_t *reads;
	size_t n_reads;
	struct mh_dlt645_di_slot *slots;
	/*
	 * Set once the meter refused a request that spans unused registers
	 * (Modbus) or a block identifier (DL/T 645): from then on it is asked
	 * for exactly what the profile names.
	 */
	bool exact;
};

struct mh_reader {
	const struct mh_bus_config *bus;
	struct mh_modbus_link *modbus;
	struct mh_dlt645_link *dlt645;
	struct meter_plan *plans;
	int64_t last_frame_ms; /* monotonic time the last reply ended */
};

/* Keep the bus quiet for the frame gap since the last reply, and count the frame. */
static void before_frame(struct mh_reader *reader, struct mh_reading *r)
{
	int64_t wait = reader->last_frame_ms + reader->bus->frame_gap_ms - mh_serial_mono_ms();

	if (wait > 0) {
		struct timespec ts = { .tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (!r->frames++)
		r->read_at_ms = mh_schedule_now_ms();
}

/* Record the first problem of a reading; later ones only go to the log. */
__attribute__((format(printf, 3, 4))) static void fail(struct mh_reading *r,
	enum mh_quality q, const char *fmt, ...)
{
	char msg[sizeof(r->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->quality != MH_QUALITY_GOOD) {
		mh_log_debug(BUS, "meter #%zu: also %s", r->meter, msg);
		return;
	}
	r->quality = q;
	memcpy(r->error, msg, sizeof(msg));
}

/* Start a meter over with an exact plan: what was read with the old one is dropped. */
static void restart(struct mh_reading *r)
{
	memset(r->valid, 0, r->n_values * sizeof(bool));
	r->quality = MH_QUALITY_GOOD;
	r->error[0] = '\0';
}

/* ---- Modbus ---------------------------------------------------------- */

static int plan_modbus(const struct mh_meter_config *m, unsigned max_gap, struct mh_modbus_plan *plan)
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

static int read_modbus(struct mh_reader *reader, struct mh_reading *r, const volatile bool *stop)
{
	const struct mh_meter_config *m = &reader->bus->meters[r->meter];
	struct meter_plan *mp = &reader->plans[r->meter];
	uint16_t regs[MH_MODBUS_MAX_BITS];

again:
	for (size_t i = 0; i < mp->modbus.n_requests; i++) {
		const struct mh_modbus_request *req = &mp->modbus.requests[i];
		uint8_t exc = 0;
		int rc;

		for (int attempt = 0; attempt < 2; attempt++) {
			if (*stop)
				return -ECANCELED;
			before_frame(reader, r);
			rc = mh_modbus_link_read(reader->modbus, (int)m->unit, req, regs, &exc);
			reader->last_frame_ms = mh_serial_mono_ms();
			/* Line noise garbles one reply; it rarely garbles two in a row. */
			if (rc != -EBADMSG)
				break;
		}
		if (rc == -EREMOTEIO && exc == 2 && !mp->exact && m->profile->max_gap > 0) {
			struct mh_modbus_plan exact;
			/* Some meters refuse reads that span unmapped registers: ask exactly. */
			if (plan_modbus(m, 0, &exact) == 0) {
				mh_log_notice(MODBUS,
					"%s: meter %s refused a batched read; reading only mapped registers from now on",
					reader->bus->name, m->id);
				mh_modbus_plan_deinit(&mp->modbus);
				mp->modbus = exact;
				mp->exact = true;
				restart(r);
				goto again;
			}
		}
		switch (rc) {
		case 0:
			break;
		case -ETIMEDOUT:
			/* A silent meter costs one timeout, never one per request. */
			fail(r, MH_QUALITY_TIMEOUT, "no reply within %u ms", reader->bus->timeout_ms);
			return 0;
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
			return 0;
		}
		for (size_t p = 0; p < m->profile->n_points; p++) {
			const struct mh_modbus_slot *slot = &mp->modbus.slots[p];
			if (slot->request != i)
				continue;
			if (mh_modbus_decode(&m->profile->points[p].modbus, regs + slot->offset,
				    &r->values[p]) == 0)
				r->valid[p] = true;
			else
				fail(r, MH_QUALITY_ERROR, "%s: the meter reports no value (NaN)",
					m->profile->points[p].name);
		}
	}
	return 0;
}

/* ---- DL/T 645 -------------------------------------------------------- */

static void free_dlt645_plan(struct meter_plan *mp)
{
	free(mp->reads);
	free(mp->slots);
	mp->reads = NULL;
	mp->slots = NULL;
	mp->n_reads = 0;
}

static int plan_dlt645(const struct mh_meter_config *m, bool use_blocks, struct meter_plan *mp)
{
	size_t n = m->profile->n_points;
	uint32_t *wanted = calloc(n + 1, sizeof(*wanted));
	int rc = -ENOMEM;

	mp->reads = calloc(n + 1, sizeof(*mp->reads));
	mp->slots = calloc(n + 1, sizeof(*mp->slots));
	if (wanted && mp->reads && mp->slots) {
		for (size_t i = 0; i < n; i++)
			wanted[i] = m->profile->points[i].di;
		rc = mh_dlt645_di_plan(wanted, n, use_blocks, mp->reads, n, &mp->n_reads,
			mp->slots);
	}
	free(wanted);
	if (rc < 0)
		free_dlt645_plan(mp);
	return rc;
}

static int read_dlt645(struct mh_reader *reader, struct mh_reading *r, const volatile bool *stop)
{
	const struct mh_meter_config *m = &reader->bus->meters[r->meter];
	struct meter_plan *mp = &reader->plans[r->meter];
	struct mh_dlt645_di_value values[MH_DLT645_DI_MAX_TARIFF_ELEMENTS];
	uint8_t data[1024];
	char errtext[96];

again:
	for (size_t i = 0; i < mp->n_reads; i++) {
		uint32_t di = mp->reads[i];
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(di);
		size_t len = 0, n = 0;
		uint8_t err = 0;
		int rc;

		for (int attempt = 0; attempt < 2; attempt++) {
			if (*stop)
				return -ECANCELED;
			before_frame(reader, r);
			rc = mh_dlt645_link_read(reader->dlt645, m->dlt645_addr, di, data, sizeof(data),
				&len, &err);
			reader->last_frame_ms = mh_serial_mono_ms();
			if (rc != -EBADMSG)
				break;
		}
		if (rc == -ENODATA && info && info->is_block && !mp->exact) {
			struct meter_plan exact = { 0 };
			/* Some meters do not serve blocks: ask for each identifier. */
			if (plan_dlt645(m, false, &exact) == 0) {
				mh_log_notice(DLT645,
					"%s: meter %s has no block %08X; reading identifiers one by one from now on",
					reader->bus->name, m->id, di);
				free_dlt645_plan(mp);
				mp->reads = exact.reads;
				mp->slots = exact.slots;
				mp->n_reads = exact.n_reads;
				mp->exact = true;
				restart(r);
				goto again;
			}
		}
		switch (rc) {
		case 0:
			break;
		case -ETIMEDOUT:
			fail(r, MH_QUALITY_TIMEOUT, "no reply within %u ms", reader->bus->timeout_ms);
			return 0;
		case -ENODATA:
		case -EACCES:
		case -EPROTO:
			fail(r, MH_QUALITY_ERROR, "meter refused %08X: %s", di,
				mh_dlt645_err_str(err, errtext, sizeof(errtext)));
			continue;
		case -EBADMSG:
			fail(r, MH_QUALITY_ERROR, "garbled reply reading %08X (twice)", di);
			continue;
		case -ENOSPC:
			fail(r, MH_QUALITY_ERROR, "reply to %08X longer than %zu bytes", di,
				sizeof(data));
			continue;
		default:
			fail(r, MH_QUALITY_ERROR, "port error: %s", strerror(-rc));
			return 0;
		}
		rc = mh_dlt645_di_decode(di, data, len, values, MH_DLT645_DI_MAX_TARIFF_ELEMENTS, &n);
		if (rc < 0) {
			/* Never publish a number from a reply that does not parse. */
			fail(r, MH_QUALITY_ERROR, "undecodable reply to %08X (%zu bytes): %s", di, len,
				strerror(-rc));
			continue;
		}
		for (size_t p = 0; p < m->profile->n_points; p++) {
			const struct mh_dlt645_di_slot *slot = &mp->slots[p];
			size_t e = slot->element == MH_DLT645_DI_ALL ? 0 : slot->element;
			if (slot->read != i)
				continue;
			if (e < n) {
				r->values[p] = values[e].value;
				r->valid[p] = true;
			} else {
				fail(r, MH_QUALITY_ERROR, "block %08X has no %s", di,
					m->profile->points[p].name);
			}
		}
	}
	return 0;
}

/* ---- common ---------------------------------------------------------- */

int mh_reader_open(const struct mh_bus_config *bus, struct mh_reader **out)
{
	struct mh_reader *reader = calloc(1, sizeof(*reader));
	struct mh_serial_params params = {
		.device = bus->device,
		.baud = bus->baud,
		.parity = bus->parity,
		.response_timeout_ms = bus->timeout_ms,
		/* A reply ends after a pause; keep a floor for USB adapters' latency. */
		.byte_timeout_ms = 20 + 10 * 11000 / bus->baud,
	};
	int rc = 0;

	if (!reader)
		return -ENOMEM;
	reader->bus = bus;
	reader->plans = calloc(bus->n_meters, sizeof(*reader->plans));
	if (!reader->plans) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < bus->n_meters && rc == 0; i++) {
		const struct mh_meter_config *m = &bus->meters[i];
		if (bus->protocol == MH_PROTO_MODBUS)
			rc = plan_modbus(m, m->profile->max_gap, &reader->plans[i].modbus);
		else
			rc = plan_dlt645(m, true, &reader->plans[i]);
	}
	if (rc < 0)
		goto fail;
	if (bus->protocol == MH_PROTO_MODBUS)
		rc = mh_modbus_link_open(&params, &reader->modbus);
	else
		rc = mh_dlt645_link_open(&params, &reader->dlt645);
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
	if (reader->plans) {
		for (size_t i = 0; i < reader->bus->n_meters; i++) {
			mh_modbus_plan_deinit(&reader->plans[i].modbus);
			free_dlt645_plan(&reader->plans[i]);
		}
	}
	free(reader->plans);
	mh_modbus_link_free(reader->modbus);
	mh_dlt645_link_free(reader->dlt645);
	free(reader);
}

int mh_reader_read(struct mh_reader *reader, struct mh_reading *r, const volatile bool *stop)
{
	int64_t start = mh_serial_mono_ms();
	int rc;

	r->quality = MH_QUALITY_GOOD;
	r->error[0] = '\0';
	if (reader->bus->protocol == MH_PROTO_MODBUS)
		rc = read_modbus(reader, r, stop);
	else
		rc = read_dlt645(reader, r, stop);
	r->duration_ms = (unsigned)(mh_serial_mono_ms() - start);
	return rc;
}
