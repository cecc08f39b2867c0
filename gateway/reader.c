// SPDX-License-Identifier: MIT
#include "reader.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
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

/* What the last frame brought back. */
struct reply {
	uint16_t regs[MH_MODBUS_MAX_BITS]; /* Modbus */
	uint8_t exception;
	uint8_t data[1024]; /* DL/T 645 */
	size_t len;
	uint8_t err;
};

struct mh_reader;

/*
 * One protocol's part of a read. The loop that retries, falls back and
 * classifies failures is shared (read_meter()); these say what differs.
 */
struct protocol {
	/* Frames the meter's current plan takes. */
	size_t (*steps)(const struct meter_plan *mp);
	/* Exchange frame @step with the meter; 0 or a negative errno. */
	int (*frame)(struct mh_reader *rd, const struct mh_meter_config *m, struct meter_plan *mp,
		size_t step, struct reply *out);
	/* Whether @rc says the meter refuses batched requests (a block, a gap). */
	bool (*refused_batch)(const struct meter_plan *mp, size_t step, int rc,
		const struct reply *rep);
	/* Replace @mp by a plan that asks exactly for the profile's points. */
	int (*plan_exact)(const struct mh_meter_config *m, struct meter_plan *mp);
	/* Name what frame @step asks for, for messages. */
	void (*describe)(const struct meter_plan *mp, size_t step, char *buf, size_t len);
	/* Explain a refusal (a negative errno that is the meter's answer). */
	void (*refusal)(int rc, const struct reply *rep, char *buf, size_t len);
	/* Decode a good reply into @r; may fail() the reading. */
	void (*decode)(const struct mh_meter_config *m, const struct meter_plan *mp, size_t step,
		const struct reply *rep, struct mh_reading *r);
	/* Log subsystem and what a fallback is called. */
	enum mh_log_sub sub;
	const char *fallback_msg;
};

struct mh_reader {
	const struct mh_bus_config *bus;
	const struct protocol *proto;
	struct mh_modbus_link *modbus;
	struct mh_dlt645_link *dlt645;
	struct meter_plan *plans;
	struct reply reply;
	int64_t last_frame_us; /* monotonic time the last reply ended (us) */
	/* Urgent jobs run between two frames of a read (see mh_reader_set_yield()). */
	mh_reader_yield_fn yield;
	void *yield_ud;
	bool urgent; /* the job in progress is one: it never yields */
};

/*
 * Before every frame: let urgent jobs in, keep the bus quiet for the frame
 * gap since the last reply, and count the frame.
 */
static void before_frame(struct mh_reader *reader, struct mh_reading *r)
{
	if (reader->yield && !reader->urgent) {
		reader->urgent = true;
		reader->yield(reader->yield_ud, reader);
		reader->urgent = false;
	}
	int64_t wait = reader->last_frame_us + reader->bus->frame_gap_us - mh_clock_mono_us();

	if (wait > 0) {
		struct timespec ts = { .tv_sec = wait / 1000000, .tv_nsec = (wait % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	if (!r->frames++)
		r->read_at_ms = mh_clock_wall_ms();
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
		mh_log_debug(BUS, "also %s", msg);
		return;
	}
	r->quality = q;
	memcpy(r->error, msg, sizeof(msg));
}

/* The port itself failed: the device went away or stopped working. */
static bool port_failed(int rc)
{
	return rc == -ENODEV || rc == -EIO || rc == -ENXIO || rc == -EBADF || rc == -EPIPE;
}

/* ---- Modbus ---------------------------------------------------------- */

static int plan_modbus(const struct mh_meter_config *m, unsigned max_gap,
	struct mh_modbus_plan *plan)
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

static size_t modbus_steps(const struct meter_plan *mp)
{
	return mp->modbus.n_requests;
}

static int modbus_frame(struct mh_reader *rd, const struct mh_meter_config *m,
	struct meter_plan *mp, size_t step, struct reply *out)
{
	out->exception = 0;
	return mh_modbus_link_read(rd->modbus, (int)m->unit, &mp->modbus.requests[step], out->regs,
		&out->exception);
}

static bool modbus_refused_batch(const struct meter_plan *mp, size_t step, int rc,
	const struct reply *rep)
{
	/* Some meters refuse reads that span unmapped registers (exception 02). */
	return rc == -EREMOTEIO && rep->exception == 2;
}

static int modbus_plan_exact(const struct mh_meter_config *m, struct meter_plan *mp)
{
	struct mh_modbus_plan exact;
	int rc;

	if (m->profile->max_gap == 0)
		return -ENOENT; /* already exact: the refusal is real */
	rc = plan_modbus(m, 0, &exact);
	if (rc)
		return rc;
	mh_modbus_plan_deinit(&mp->modbus);
	mp->modbus = exact;
	return 0;
}

static void modbus_describe(const struct meter_plan *mp, size_t step, char *buf, size_t len)
{
	const struct mh_modbus_request *req = &mp->modbus.requests[step];

	snprintf(buf, len, "%s 0x%04X+%u", mh_modbus_table_name(req->table), req->address,
		req->count);
}

static void modbus_refusal(int rc, const struct reply *rep, char *buf, size_t len)
{
	if (rc == -EREMOTEIO)
		snprintf(buf, len, "exception %u (%s)", rep->exception,
			mh_modbus_exception_str(rep->exception));
	else
		snprintf(buf, len, "%s", strerror(-rc));
}

static void modbus_decode(const struct mh_meter_config *m, const struct meter_plan *mp,
	size_t step, const struct reply *rep, struct mh_reading *r)
{
	for (size_t p = 0; p < m->profile->n_points; p++) {
		const struct mh_modbus_slot *slot = &mp->modbus.slots[p];
		int rc;

		if (slot->request != step)
			continue;
		rc = mh_modbus_decode(&m->profile->points[p].modbus, rep->regs + slot->offset,
			&r->values[p]);
		if (rc == 0)
			r->valid[p] = true;
		else if (rc == -ERANGE)
			fail(r, MH_QUALITY_ERROR, "%s: the value is out of range after scaling",
				m->profile->points[p].name);
		else
			fail(r, MH_QUALITY_ERROR, "%s: the meter reports no value (NaN)",
				m->profile->points[p].name);
	}
}

static const struct protocol modbus_protocol = {
	.steps = modbus_steps,
	.frame = modbus_frame,
	.refused_batch = modbus_refused_batch,
	.plan_exact = modbus_plan_exact,
	.describe = modbus_describe,
	.refusal = modbus_refusal,
	.decode = modbus_decode,
	.sub = MH_LOG_MODBUS,
	.fallback_msg = "refused a batched read; reading only mapped registers from now on",
};

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

static size_t dlt645_steps(const struct meter_plan *mp)
{
	return mp->n_reads;
}

static int dlt645_frame(struct mh_reader *rd, const struct mh_meter_config *m,
	struct meter_plan *mp, size_t step, struct reply *out)
{
	return mh_dlt645_link_read(rd->dlt645, m->dlt645_addr, mp->reads[step], out->data,
		sizeof(out->data), &out->len, &out->err);
}

static bool dlt645_refused_batch(const struct meter_plan *mp, size_t step, int rc,
	const struct reply *rep)
{
	const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(mp->reads[step]);

	/* Some meters do not serve blocks: "no requested data" to a block identifier. */
	return rc == -ENODATA && info && info->is_block;
}

static int dlt645_plan_exact(const struct mh_meter_config *m, struct meter_plan *mp)
{
	struct meter_plan exact = { 0 };
	int rc = plan_dlt645(m, false, &exact);

	if (rc)
		return rc;
	free_dlt645_plan(mp);
	mp->reads = exact.reads;
	mp->slots = exact.slots;
	mp->n_reads = exact.n_reads;
	return 0;
}

static void dlt645_describe(const struct meter_plan *mp, size_t step, char *buf, size_t len)
{
	snprintf(buf, len, "%08X", mp->reads[step]);
}

static void dlt645_refusal(int rc, const struct reply *rep, char *buf, size_t len)
{
	if (rc == -ENOSPC)
		snprintf(buf, len, "reply longer than %zu bytes", sizeof(rep->data));
	else if (rc == -ENODATA || rc == -EACCES || rc == -EPROTO)
		mh_dlt645_err_str(rep->err, buf, len);
	else
		snprintf(buf, len, "%s", strerror(-rc));
}

static void dlt645_decode(const struct mh_meter_config *m, const struct meter_plan *mp,
	size_t step, const struct reply *rep, struct mh_reading *r)
{
	struct mh_dlt645_di_value values[MH_DLT645_DI_MAX_TARIFF_ELEMENTS];
	uint32_t di = mp->reads[step];
	size_t n = 0;
	int rc = mh_dlt645_di_decode(di, rep->data, rep->len, values,
		MH_DLT645_DI_MAX_TARIFF_ELEMENTS, &n);

	if (rc < 0) {
		/* Never publish a number from a reply that does not parse. */
		fail(r, MH_QUALITY_ERROR, "undecodable reply to %08X (%zu bytes): %s", di, rep->len,
			strerror(-rc));
		return;
	}
	for (size_t p = 0; p < m->profile->n_points; p++) {
		const struct mh_dlt645_di_slot *slot = &mp->slots[p];
		size_t e = slot->element == MH_DLT645_DI_ALL ? 0 : slot->element;

		if (slot->read != step)
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

static const struct protocol dlt645_protocol = {
	.steps = dlt645_steps,
	.frame = dlt645_frame,
	.refused_batch = dlt645_refused_batch,
	.plan_exact = dlt645_plan_exact,
	.describe = dlt645_describe,
	.refusal = dlt645_refusal,
	.decode = dlt645_decode,
	.sub = MH_LOG_DLT645,
	.fallback_msg = "has no block identifiers; reading identifiers one by one from now on",
};

/* ---- the shared read loop ------------------------------------------- */

/*
 * Read one meter: every frame of its plan, each retried once when garbled
 * (line noise garbles one reply; it rarely garbles two in a row); a meter
 * that refuses batched requests is replanned exactly and read again from
 * the start; a silent meter costs one timeout, never one per frame.
 */
static int read_meter(struct mh_reader *rd, struct mh_job *job, const atomic_bool *stop)
{
	const struct protocol *proto = rd->proto;
	const struct mh_meter_config *m = &rd->bus->meters[job->slot];
	struct meter_plan *mp = &rd->plans[job->slot];
	struct mh_reading *r = &job->reading;
	struct reply *rep = &rd->reply;
	char what[64], why[96];

again:
	for (size_t step = 0; step < proto->steps(mp); step++) {
		int rc = 0;

		for (int attempt = 0; attempt < 2; attempt++) {
			if (atomic_load(stop))
				return -ECANCELED;
			before_frame(rd, r);
			rc = proto->frame(rd, m, mp, step, rep);
			rd->last_frame_us = mh_clock_mono_us();
			if (rc != -EBADMSG)
				break;
		}
		if (rc && !mp->exact && proto->refused_batch(mp, step, rc, rep) &&
			proto->plan_exact(m, mp) == 0) {
			mh_log(LOG_NOTICE, proto->sub, "%s: meter %s %s", rd->bus->name, m->id,
				proto->fallback_msg);
			mp->exact = true;
			mh_reading_clear(r);
			goto again;
		}
		if (rc == 0) {
			proto->decode(m, mp, step, rep, r);
			continue;
		}
		proto->describe(mp, step, what, sizeof(what));
		if (rc == -ETIMEDOUT) {
			fail(r, MH_QUALITY_TIMEOUT, "no reply within %u ms", rd->bus->timeout_ms);
			return 0;
		}
		if (port_failed(rc)) {
			fail(r, MH_QUALITY_ERROR, "port error: %s", strerror(-rc));
			return -ENODEV;
		}
		if (rc == -EBADMSG) {
			fail(r, MH_QUALITY_ERROR, "garbled reply reading %s (twice)", what);
			continue;
		}
		proto->refusal(rc, rep, why, sizeof(why));
		fail(r, MH_QUALITY_ERROR, "meter refused %s: %s", what, why);
	}
	return 0;
}

/* ---- the reader ------------------------------------------------------ */

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
	reader->proto = bus->protocol == MH_PROTO_MODBUS ? &modbus_protocol : &dlt645_protocol;
	reader->plans = calloc(bus->n_meters + 1, sizeof(*reader->plans));
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

/* ---- frozen data (DL/T 645) ------------------------------------------ */

/* One identifier, retried once when garbled; fails @r with the reason otherwise. */
static int read_di(struct mh_reader *rd, const struct mh_meter_config *m, uint32_t di,
	struct mh_reading *r, const atomic_bool *stop)
{
	struct reply *rep = &rd->reply;
	char why[96];
	int rc = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (atomic_load(stop))
			return -ECANCELED;
		before_frame(rd, r);
		rc = mh_dlt645_link_read(rd->dlt645, m->dlt645_addr, di, rep->data,
			sizeof(rep->data), &rep->len, &rep->err);
		rd->last_frame_us = mh_clock_mono_us();
		if (rc != -EBADMSG)
			break;
	}
	if (rc == -ETIMEDOUT)
		fail(r, MH_QUALITY_TIMEOUT, "no reply within %u ms", rd->bus->timeout_ms);
	else if (port_failed(rc))
		fail(r, MH_QUALITY_ERROR, "port error: %s", strerror(-rc));
	else if (rc == -EBADMSG)
		fail(r, MH_QUALITY_ERROR, "garbled reply reading %08X (twice)", di);
	else if (rc) {
		dlt645_refusal(rc, rep, why, sizeof(why));
		fail(r, MH_QUALITY_ERROR, "meter refused %08X: %s", di, why);
	}
	return port_failed(rc) ? -ENODEV : rc;
}

static int read_freeze_time(struct mh_reader *rd, const struct mh_meter_config *m, unsigned n,
	struct mh_reading *r, const atomic_bool *stop, int64_t *at)
{
	uint32_t di = 0x05060000u | n;
	struct tm tm;
	int rc = read_di(rd, m, di, r, stop);

	if (rc)
		return rc;
	rc = mh_dlt645_di_decode_time(di, rd->reply.data, rd->reply.len, &tm);
	if (rc) {
		fail(r, MH_QUALITY_ERROR, "undecodable freeze time %08X: %s", di, strerror(-rc));
		return rc;
	}
	*at = (int64_t)mktime(&tm) * 1000;
	return 0;
}

static int read_frozen_energy(struct mh_reader *rd, const struct mh_meter_config *m, uint32_t di,
	struct mh_reading *r, const atomic_bool *stop, double *out, size_t *n_out)
{
	struct mh_dlt645_di_value values[MH_DLT645_DI_MAX_TARIFF_ELEMENTS];
	size_t n = 0;
	int rc = read_di(rd, m, di, r, stop);

	if (rc)
		return rc;
	rc = mh_dlt645_di_decode(di, rd->reply.data, rd->reply.len, values,
		MH_DLT645_DI_MAX_TARIFF_ELEMENTS, &n);
	if (rc) {
		fail(r, MH_QUALITY_ERROR, "undecodable frozen energy %08X: %s", di, strerror(-rc));
		return rc;
	}
	*n_out = n < 5 ? n : 5;
	for (size_t i = 0; i < *n_out; i++)
		out[i] = values[i].value;
	return 0;
}

/*
 * The meter's daily freezes job->back and job->back + 1 days back: time,
 * forward and (if the meter keeps it) reverse active energy, then the time
 * again: a freeze that happened during the read shifts every record by one,
 * and the read is made again.
 */
static int read_frozen(struct mh_reader *rd, struct mh_job *job, const atomic_bool *stop)
{
	const struct mh_meter_config *m = &rd->bus->meters[job->slot];
	struct mh_reading *r = &job->reading;

	if (!rd->dlt645 || job->back < 1 || job->back + 1 > 0x3E) {
		fail(r, MH_QUALITY_ERROR, "frozen data is read from DL/T 645 meters only, 1 to 61 days back");
		return 0;
	}
	for (int k = 0; k < 2; k++) {
		struct mh_frozen *f = &job->frozen[k];
		unsigned n = job->back + (unsigned)k;
		int64_t again = 0;
		int rc = 0;

		for (int attempt = 0; attempt < 2; attempt++) {
			rc = read_freeze_time(rd, m, n, r, stop, &f->at_ms);
			if (!rc)
				rc = read_frozen_energy(rd, m, 0x05060100u | n, r, stop, f->import,
					&f->n_import);
			if (!rc) {
				/* Reverse energy is optional: a meter without it says so, and that is all. */
				struct mh_reading quiet = *r;
				if (read_frozen_energy(rd, m, 0x05060200u | n, &quiet, stop, f->export,
					    &f->n_export))
					f->n_export = 0;
			}
			if (!rc)
				rc = read_freeze_time(rd, m, n, r, stop, &again);
			if (rc || again == f->at_ms)
				break;
			mh_log_notice(DLT645, "%s: meter %s froze while its record %u was read; reading it again",
				rd->bus->name, m->id, n);
			rc = -EAGAIN;
		}
		if (rc == -EAGAIN)
			fail(r, MH_QUALITY_ERROR, "frozen record %u kept shifting while read", n);
		if (rc)
			return rc == -ENODEV || rc == -ECANCELED ? rc : 0;
	}
	return 0;
}

/* ---- relay control and recall ----------------------------------------- */

/* Classify the outcome @rc of a control or recall frame into the job. */
static int settle_result(struct mh_reader *rd, struct mh_job *job, int rc, const char *what)
{
	struct mh_reading *r = &job->reading;
	char why[96];

	job->result = rc;
	if (rc == 0)
		return 0;
	if (rc == -ETIMEDOUT) {
		fail(r, MH_QUALITY_TIMEOUT, "no reply to %s within %u ms", what, rd->bus->timeout_ms);
	} else if (port_failed(rc)) {
		job->result = -ENODEV;
		fail(r, MH_QUALITY_ERROR, "port error: %s", strerror(-rc));
		return -ENODEV;
	} else if (rc == -EBADMSG) {
		fail(r, MH_QUALITY_ERROR, "garbled reply to %s (twice)", what);
	} else {
		rd->proto->refusal(rc, &rd->reply, why, sizeof(why));
		fail(r, MH_QUALITY_ERROR, "meter refused %s: %s", what, why);
	}
	return 0;
}

static int dlt645_control(struct mh_reader *rd, const struct mh_meter_config *m,
	const struct mh_control *c, struct mh_job *job)
{
	struct mh_dlt645_frame req, rsp;
	int rc = c->how == MH_CONTROL_DLT645_BLOCK
		? mh_dlt645_build_control_passthrough(&req, m->dlt645_addr, c->block, c->block_len)
		: mh_dlt645_build_control(&req, m->dlt645_addr, &c->dlt645);

	if (rc < 0) {
		fail(&job->reading, MH_QUALITY_ERROR, "cannot build the control frame: %s",
			strerror(-rc));
		job->result = -EINVAL;
		return 0;
	}
	/* A control frame is idempotent: a garbled answer is worth one more. */
	for (int attempt = 0; attempt < 2; attempt++) {
		before_frame(rd, &job->reading);
		rc = mh_dlt645_link_transact(rd->dlt645, &req, &rsp);
		rd->last_frame_us = mh_clock_mono_us();
		if (rc != -EBADMSG)
			break;
	}
	if (rc == 0) {
		rc = mh_dlt645_reply_error(&rsp, &rd->reply.err);
		job->err = rd->reply.err;
	}
	return settle_result(rd, job, rc, "the control command");
}

static int modbus_control(struct mh_reader *rd, const struct mh_meter_config *m,
	const struct mh_control *c, struct mh_job *job)
{
	int rc = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		before_frame(rd, &job->reading);
		rc = mh_modbus_link_write(rd->modbus, (int)m->unit, c->write.table, c->write.address,
			c->write.value, &rd->reply.exception);
		rd->last_frame_us = mh_clock_mono_us();
		if (rc != -EBADMSG)
			break;
	}
	job->err = rd->reply.exception;
	return settle_result(rd, job, rc, "the relay write");
}

static int run_control(struct mh_reader *rd, struct mh_job *job)
{
	const struct mh_meter_config *m = &rd->bus->meters[job->slot];

	if ((job->control.how == MH_CONTROL_MODBUS) != (rd->modbus != NULL)) {
		fail(&job->reading, MH_QUALITY_ERROR, "control of another protocol than the bus's");
		job->result = -EINVAL;
		return 0;
	}
	return rd->modbus ? modbus_control(rd, m, &job->control, job)
			  : dlt645_control(rd, m, &job->control, job);
}

static int run_recall(struct mh_reader *rd, struct mh_job *job, const atomic_bool *stop)
{
	const struct mh_meter_config *m = &rd->bus->meters[job->slot];
	struct mh_relay *relay = &job->relay;
	int rc;

	memset(relay, 0, sizeof(*relay));
	if (rd->modbus) {
		const struct mh_relay_point *p = &job->relay_point;
		struct mh_modbus_request req = { .table = p->table, .address = p->address, .count = 1 };

		for (int attempt = 0; attempt < 2; attempt++) {
			before_frame(rd, &job->reading);
			rc = mh_modbus_link_read(rd->modbus, (int)m->unit, &req, rd->reply.regs,
				&rd->reply.exception);
			rd->last_frame_us = mh_clock_mono_us();
			if (rc != -EBADMSG)
				break;
		}
		job->err = rd->reply.exception;
		if (rc == 0) {
			relay->known = true;
			relay->raw = rd->reply.regs[0];
			relay->open = rd->reply.regs[0] == p->open_when;
		}
		return settle_result(rd, job, rc, "the relay read");
	}

	struct mh_dlt645_di_status3 st;
	rc = read_di(rd, m, 0x04000503u, &job->reading, stop);
	job->err = rd->reply.err;
	if (rc == 0 && mh_dlt645_di_status3_decode(rd->reply.data, rd->reply.len, &st) < 0) {
		fail(&job->reading, MH_QUALITY_ERROR, "undecodable status word 3 (%zu bytes)",
			rd->reply.len);
		rc = -EBADMSG;
	}
	job->result = rc == -ENODEV ? -ENODEV : rc;
	if (rc == 0)
		*relay = (struct mh_relay){
			.known = true,
			.open = st.relay_open,
			.has_commanded = true,
			.commanded_open = st.relay_cmd_open,
			.keep_power = st.keep_power,
			.alarm = st.pretrip_alarm,
			.raw = st.raw,
		};
	return rc == -ENODEV || rc == -ECANCELED ? rc : 0;
}

/* ---- meter clocks (DL/T 645) ------------------------------------------------ */

/*
 * The meter's date (04000101) and time (04000102). The time is read last
 * and stamped with the middle of its exchange; a date that changed in
 * between (midnight) makes the read start over once.
 */
static int read_clock(struct mh_reader *rd, struct mh_job *job, const atomic_bool *stop)
{
	const struct mh_meter_config *m = &rd->bus->meters[job->slot];
	struct mh_reading *r = &job->reading;
	struct tm date, tod, again;
	int rc = 0;

	if (!rd->dlt645) {
		fail(r, MH_QUALITY_ERROR, "meter clocks are read from DL/T 645 meters only");
		return 0;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		int64_t sent;
		rc = read_di(rd, m, 0x04000101u, r, stop);
		if (!rc && (rc = mh_dlt645_di_decode_time(0x04000101u, rd->reply.data, rd->reply.len,
				    &date)) < 0)
			fail(r, MH_QUALITY_ERROR, "undecodable meter date: %s", strerror(-rc));
		if (rc)
			break;
		sent = mh_clock_wall_ms();
		rc = read_di(rd, m, 0x04000102u, r, stop);
		job->clock_read_at_ms = (sent + mh_clock_wall_ms()) / 2;
		if (!rc && (rc = mh_dlt645_di_decode_time(0x04000102u, rd->reply.data, rd->reply.len,
				    &tod)) < 0)
			fail(r, MH_QUALITY_ERROR, "undecodable meter time: %s", strerror(-rc));
		if (rc)
			break;
		/* Just after the meter's midnight the date read is a day old: read it again. */
		if (tod.tm_hour == 0 && tod.tm_min == 0 && tod.tm_sec < 10 && attempt == 0)
			continue;
		again = date;
		again.tm_hour = tod.tm_hour;
		again.tm_min = tod.tm_min;
		again.tm_sec = tod.tm_sec;
		again.tm_isdst = -1;
		/* Meters keep local time. */
		job->meter_clock_ms = (int64_t)mktime(&again) * 1000;
		break;
	}
	job->result = rc;
	return rc == -ENODEV || rc == -ECANCELED ? rc : 0;
}

/* Broadcast time: the gateway's local time as the frame goes out. No meter answers. */
static int broadcast_time(struct mh_reader *rd, struct mh_job *job)
{
	struct mh_dlt645_frame f;
	struct tm local;
	time_t now;
	int rc;

	if (!rd->dlt645) {
		fail(&job->reading, MH_QUALITY_ERROR, "broadcast time is for DL/T 645 buses");
		job->result = -EINVAL;
		return 0;
	}
	before_frame(rd, &job->reading);
	now = (time_t)((mh_clock_wall_ms() + 500) / 1000);
	localtime_r(&now, &local);
	rc = mh_dlt645_build_broadcast_time(&f, &local);
	if (rc == 0)
		rc = mh_dlt645_link_send(rd->dlt645, &f);
	rd->last_frame_us = mh_clock_mono_us();
	job->clock_read_at_ms = (int64_t)now * 1000;
	return settle_result(rd, job, rc, "the broadcast time");
}

void mh_reader_set_yield(struct mh_reader *reader, mh_reader_yield_fn fn, void *ud)
{
	reader->yield = fn;
	reader->yield_ud = ud;
}

/*
 * A scheduled read that waited in the queue past the next boundary (the bus
 * cannot read every meter each interval) is a read of the boundary it was
 * made in: a reading's boundary is never more than one interval older than
 * its first frame. Retries keep theirs.
 */
static void relabel(struct mh_job *job)
{
	int64_t made = job->reading.read_at_ms ? job->reading.read_at_ms : mh_clock_wall_ms();
	int64_t boundary;

	if (!job->interval_ms || job->late)
		return;
	boundary = mh_schedule_current(made, job->interval_ms);
	if (boundary > job->due_ms)
		job->due_ms = boundary;
}

int mh_reader_run(struct mh_reader *reader, struct mh_job *job, const atomic_bool *stop)
{
	struct mh_reading *r = &job->reading;
	int64_t start = mh_clock_mono_ms();
	bool urgent = reader->urgent;
	int rc = -EINVAL;

	mh_reading_clear(r);
	job->result = 0;
	job->err = 0;
	/* Nothing overtakes an urgent job: urgent jobs keep their order. */
	if (job->urgent)
		reader->urgent = true;
	switch (job->kind) {
	case MH_JOB_READ:
		rc = read_meter(reader, job, stop);
		relabel(job);
		break;
	case MH_JOB_FROZEN:
		rc = read_frozen(reader, job, stop);
		break;
	case MH_JOB_CONTROL:
		rc = run_control(reader, job);
		break;
	case MH_JOB_RECALL:
		rc = run_recall(reader, job, stop);
		break;
	case MH_JOB_CLOCK:
		rc = read_clock(reader, job, stop);
		break;
	case MH_JOB_TIME_BROADCAST:
		rc = broadcast_time(reader, job);
		break;
	}
	reader->urgent = urgent;
	r->duration_ms = (unsigned)(mh_clock_mono_ms() - start);
	return rc;
}

void mh_reader_counters(const struct mh_reader *reader, struct mh_link_counters *out)
{
	if (reader->modbus)
		mh_modbus_link_counters(reader->modbus, out);
	else
		mh_dlt645_link_counters(reader->dlt645, out);
}
