// SPDX-License-Identifier: MIT
#include "tables.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlt645_di.h"
#include "log.h"
#include "records.h"
#include "schedule.h"

/* A state row: the builder's state as it is in memory (1), or packed (2, see db.h). */
#define STATE_VERSION 1
#define STATE_VERSION_PACKED 2
/* How far a meter's freeze may lie after the gateway's time (clocks disagree by minutes). */
#define FROZEN_AHEAD_MS (10 * 60000)

struct mh_tables {
	struct mh_db *db;
	struct mh_outbox *outbox;
	const struct mh_config *cfg;
	struct mh_meter_set *meters;
	MDB_dbi dbi;
	MDB_dbi freezes; /* meter id, NUL, local date YYYYMMDD (be32): a complete daily record exists */
};

enum day_source {
	DAY_GATEWAY = 1,
	DAY_METER = 2,
};

/* What is stored per meter: a version and the state's size, then the state. */
struct stored_state {
	uint32_t version;
	uint32_t size;
	struct mh_ival_state state;
};

/*
 * A state row is rewritten with every reading of its meter, and most of
 * its bytes are zeros (room for registers and periods the meter does not
 * have): packed, the rows of a sweep of meters lie on a few pages rather
 * than one or two a meter's worth, and each commit rewrites that many.
 */
struct packed_state {
	uint32_t version;
	uint32_t size;
	uint8_t bytes[mh_db_packed_max(sizeof(struct mh_ival_state))];
};

/* The state in row @v, of either version. Returns whether it is one. */
static bool decode_state(const MDB_val *v, struct mh_ival_state *out)
{
	const uint8_t *p = v->mv_data;
	uint32_t head[2];

	if (v->mv_size < sizeof(head))
		return false;
	memcpy(head, p, sizeof(head));
	if (head[1] != sizeof(*out))
		return false;
	if (head[0] == STATE_VERSION && v->mv_size == sizeof(struct stored_state)) {
		memcpy(out, p + offsetof(struct stored_state, state), sizeof(*out));
		return true;
	}
	return head[0] == STATE_VERSION_PACKED &&
	       mh_db_unpack_zeros(p + sizeof(head), v->mv_size - sizeof(head), out, sizeof(*out));
}

/* Interval tables are built from the cumulative registers: energy_*_kwh. */
static bool is_cumulative(const char *name)
{
	size_t n = strlen(name);

	return n > 11 && !strncmp(name, "energy_", 7) && !strcmp(name + n - 4, "_kwh");
}

/* Where a register wraps back to 0: what its format can hold. 0 when it never does. */
static double register_wrap(const struct mh_profile *profile, const struct mh_point *pt)
{
	if (profile->protocol == MH_PROTO_DLT645) {
		const struct mh_dlt645_di_info *info = mh_dlt645_di_lookup(pt->di);
		/* XXXXXX.XX kWh: 8 BCD digits, 2 of them decimals, wraps at 1 000 000. */
		if (info && !info->is_signed)
			return pow(10, info->element_bytes * 2 - info->decimals);
		return 0;
	}
	switch (pt->modbus.type) {
	case MH_MODBUS_U16:
		return 65536.0 * fabs(pt->modbus.scale);
	case MH_MODBUS_U32:
		return 4294967296.0 * fabs(pt->modbus.scale);
	default:
		return 0; /* 64-bit counters and floats do not wrap in a meter's life */
	}
}

static void add_period_name(struct mh_meter_table *mt, const char *name)
{
	if (!name)
		return;
	for (size_t i = 0; i < mt->cfg.n_periods; i++)
		if (!strcmp(mt->period_names[i], name))
			return;
	if (mt->cfg.n_periods < MH_IVAL_MAX_PERIODS)
		mt->period_names[mt->cfg.n_periods++] = name;
}

static void add_table_names(struct mh_meter_table *mt, const struct mh_tariff_table *table)
{
	for (size_t i = 0; i < table->n; i++)
		add_period_name(mt, table->periods[i].name);
}

static int load_state(struct mh_tables *t, struct mh_meter *m)
{
	struct mh_meter_table *mt = m->table;
	MDB_val k = { strlen(m->cfg->id), (void *)m->cfg->id }, v;
	MDB_txn *txn;
	int rc = mh_db_read(t->db, &txn);

	if (rc)
		return rc;
	rc = mdb_get(txn, t->dbi, &k, &v);
	if (rc == 0) {
		struct mh_ival_state s;
		if (decode_state(&v, &s) && mh_intervals_fits(&mt->cfg, &s)) {
			mt->state = mt->committed = s;
			mh_db_read_end(txn);
			return 0;
		}
		mh_log_notice(STORE, "meter %s: its interval state is of another profile or version; "
				     "starting its tables afresh",
			m->cfg->id);
	} else if (rc != MDB_NOTFOUND) {
		mh_db_read_end(txn);
		return mh_db_error(rc);
	}
	mh_db_read_end(txn);
	mh_intervals_init(&mt->cfg, &mt->state);
	mt->committed = mt->state;
	return 0;
}

/*
 * Set @m's builder up from @cfg: a table of its own only when its profile
 * has cumulative energy registers (most memory of a meter is here).
 * Returns 0 or -ENOMEM.
 */
static int setup_meter(const struct mh_config *cfg, struct mh_meter *m)
{
	const struct mh_profile *profile = m->cfg->profile;
	struct mh_meter_table built, *mt = &built;
	const struct mh_tariff *tariff = m->cfg->tariff ? m->cfg->tariff : cfg->tariff;
	size_t n = 0;

	memset(mt, 0, sizeof(*mt));
	mt->cfg.import_point = SIZE_MAX;
	for (size_t i = 0; i < profile->n_points && n < MH_IVAL_MAX_POINTS; i++) {
		const struct mh_point *pt = &profile->points[i];
		if (!is_cumulative(pt->name))
			continue;
		if (!strcmp(pt->name, "energy_import_kwh"))
			mt->cfg.import_point = n;
		mt->point[n] = i;
		mt->names[n] = pt->name;
		mt->wrap[n] = register_wrap(profile, pt);
		n++;
	}
	if (!n) {
		free(m->table);
		m->table = NULL;
		return 0;
	}
	mt->enabled = true;
	mt->cfg.interval_ms = cfg->schedule.interval_ms;
	mt->cfg.freeze_min = cfg->schedule.daily_freeze_min;
	mt->cfg.tariff = tariff;
	mt->cfg.n_points = n;
	if (tariff) {
		add_table_names(mt, &tariff->base);
		for (size_t s = 0; s < tariff->n_seasons; s++)
			add_table_names(mt, &tariff->seasons[s].table);
		add_period_name(mt, tariff->default_period);
	}
	if (!m->table && !(m->table = malloc(sizeof(*m->table))))
		return -ENOMEM;
	*m->table = built;
	/* The names point into the table itself. */
	m->table->cfg.names = m->table->names;
	m->table->cfg.wrap = m->table->wrap;
	m->table->cfg.period_names = m->table->period_names;
	return 0;
}

/* The database's turn ended: the states it held are now on disk, or undone with it. */
static void on_commit(void *ud, int rc)
{
	struct mh_tables *t = ud;

	for (size_t i = 0; i < t->meters->n; i++) {
		struct mh_meter_table *mt = t->meters->meters[i]->table;
		if (!mt || !mt->dirty)
			continue;
		if (rc == 0)
			mt->committed = mt->state;
		else
			mt->state = mt->committed;
		mt->dirty = false;
	}
}

int mh_tables_open(struct mh_db *db, struct mh_outbox *outbox, const struct mh_config *cfg,
	struct mh_meter_set *meters, struct mh_tables **out)
{
	struct mh_tables *t = calloc(1, sizeof(*t));
	int rc;

	if (!t)
		return -ENOMEM;
	*t = (struct mh_tables){ .db = db, .outbox = outbox, .cfg = cfg, .meters = meters };
	rc = mh_db_table(db, "intervals", &t->dbi);
	if (!rc)
		rc = mh_db_table(db, "freezes", &t->freezes);
	if (!rc)
		rc = mh_db_watch(db, on_commit, t);
	for (size_t i = 0; !rc && i < meters->n; i++) {
		rc = setup_meter(cfg, meters->meters[i]);
		if (!rc && meters->meters[i]->table)
			rc = load_state(t, meters->meters[i]);
	}
	if (rc) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int mh_tables_rebind(struct mh_tables *t, const struct mh_config *cfg)
{
	int rc = 0;

	t->cfg = cfg;
	/* The committed state is the state: each builder is set up anew and takes it back. */
	for (size_t i = 0; !rc && i < t->meters->n; i++) {
		struct mh_meter *m = t->meters->meters[i];
		mh_require(!m->table || !m->table->dirty);
		rc = setup_meter(cfg, m);
		if (!rc && m->table)
			rc = load_state(t, m);
	}
	return rc;
}

void mh_tables_free(struct mh_tables *t)
{
	free(t);
}

/* ---- days with a complete daily record -------------------------------- */

/* The local date @ms falls on, as YYYYMMDD. */
static uint32_t local_yyyymmdd(int64_t ms)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	return (uint32_t)((tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
}

static size_t day_key(const struct mh_meter *m, uint32_t date, uint8_t *key, size_t cap)
{
	size_t n = strlen(m->cfg->id);

	if (n + 5 > cap)
		n = cap - 5;
	memcpy(key, m->cfg->id, n);
	key[n] = 0;
	for (int i = 0; i < 4; i++)
		key[n + 1 + (size_t)i] = (uint8_t)(date >> (24 - 8 * i));
	return n + 5;
}

static int mark_day(struct mh_tables *t, MDB_txn *txn, const struct mh_meter *m, uint32_t date,
	enum day_source source)
{
	uint8_t key[80], v = (uint8_t)source;
	MDB_val k = { day_key(m, date, key, sizeof(key)), key }, val = { 1, &v };

	return mh_db_error(mdb_put(txn, t->freezes, &k, &val, 0));
}

static bool day_done(struct mh_tables *t, const struct mh_meter *m, uint32_t date)
{
	uint8_t key[80];
	MDB_val k = { day_key(m, date, key, sizeof(key)), key }, v;
	MDB_txn *txn;
	bool done;

	if (mh_db_read(t->db, &txn))
		return false;
	done = mdb_get(txn, t->freezes, &k, &v) == 0;
	mh_db_read_end(txn);
	return done;
}

/* ---- records --------------------------------------------------------- */

struct emit_ctx {
	struct mh_tables *t;
	const struct mh_meter *m;
	MDB_txn *txn;
	int rc;
};

static void local_date(int64_t ms, bool month_only, char *out, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	strftime(out, len, month_only ? "%Y-%m" : "%Y-%m-%d", &tm);
}

static void add_time(cJSON *obj, const char *key, int64_t ms, const struct mh_meter_table *mt)
{
	char ts[40];

	mh_schedule_format_boundary(ms, mt->cfg.interval_ms, ts, sizeof(ts));
	cJSON_AddStringToObject(obj, key, ts);
}

static void add_energies(cJSON *obj, const struct mh_meter_table *mt, const double *energy)
{
	for (size_t i = 0; i < mt->cfg.n_points; i++)
		cJSON_AddNumberToObject(obj, mt->names[i], energy[i]);
}

/* A daily or monthly record: the bucket of the day or month that ended. */
static void add_freeze(cJSON *obj, const struct mh_meter_table *mt, const struct mh_ival_out *out)
{
	const struct mh_ival_bucket *b = out->bucket;
	char date[16];
	cJSON *periods, *cum;

	local_date(b->start_ms, out->kind == MH_IVAL_MONTHLY, date, sizeof(date));
	cJSON_AddStringToObject(obj, out->kind == MH_IVAL_MONTHLY ? "month" : "date", date);
	add_time(obj, "start", out->start_ms, mt);
	add_time(obj, "end", out->end_ms, mt);
	add_energies(obj, mt, out->energy);
	periods = cJSON_AddObjectToObject(obj, "periods");
	for (size_t p = 0; periods && p < mt->cfg.n_periods; p++)
		cJSON_AddNumberToObject(periods, mt->period_names[p], b->periods[p]);
	if (mt->cfg.import_point < mt->cfg.n_points)
		cJSON_AddNumberToObject(obj, "unattributed_kwh", b->unattributed);
	if (out->cumulative) {
		cum = cJSON_AddObjectToObject(obj, "cumulative");
		for (size_t i = 0; cum && i < mt->cfg.n_points; i++)
			cJSON_AddNumberToObject(cum, mt->names[i], out->cumulative[i]);
	}
	cJSON_AddBoolToObject(obj, "complete", out->complete);
	cJSON_AddStringToObject(obj, "source", "gateway");
}

static void emit(void *ud, const struct mh_ival_out *out)
{
	struct emit_ctx *c = ud;
	const struct mh_meter_table *mt = c->m->table;
	enum mh_record_type type;
	cJSON *obj;
	char subtopic[96], *json;
	int64_t created = out->end_ms;

	if (c->rc)
		return;
	obj = cJSON_CreateObject();
	if (!obj) {
		c->rc = -ENOMEM;
		return;
	}
	cJSON_AddNumberToObject(obj, "seq", (double)mh_outbox_next_seq(c->t->outbox));
	switch (out->kind) {
	case MH_IVAL_INTERVAL:
		type = MH_RECORD_INTERVAL;
		snprintf(subtopic, sizeof(subtopic), "interval/%s", c->m->cfg->id);
		cJSON_AddStringToObject(obj, "meter", c->m->cfg->id);
		add_time(obj, "start", out->start_ms, mt);
		add_time(obj, "end", out->end_ms, mt);
		if (out->period)
			cJSON_AddStringToObject(obj, "period", out->period);
		else
			cJSON_AddNullToObject(obj, "period");
		add_energies(obj, mt, out->energy);
		cJSON_AddBoolToObject(obj, "complete", out->complete);
		if (out->late)
			cJSON_AddBoolToObject(obj, "late", true);
		break;
	case MH_IVAL_DAILY:
	case MH_IVAL_MONTHLY:
		type = MH_RECORD_DAILY;
		/* A whole day the gateway saw needs nothing from the meter's own frozen data. */
		if (out->kind == MH_IVAL_DAILY && out->complete)
			c->rc = mark_day(c->t, c->txn, c->m, local_yyyymmdd(out->start_ms),
				DAY_GATEWAY);
		snprintf(subtopic, sizeof(subtopic), "%s/%s",
			out->kind == MH_IVAL_DAILY ? "daily" : "monthly", c->m->cfg->id);
		cJSON_AddStringToObject(obj, "meter", c->m->cfg->id);
		add_freeze(obj, mt, out);
		break;
	case MH_IVAL_RESET:
	default:
		type = MH_RECORD_EVENT;
		snprintf(subtopic, sizeof(subtopic), "event");
		add_time(obj, "ts", out->end_ms, mt);
		cJSON_AddStringToObject(obj, "type", "meter_reset");
		cJSON_AddStringToObject(obj, "meter", c->m->cfg->id);
		cJSON_AddStringToObject(obj, "point", mt->names[out->point]);
		cJSON_AddNumberToObject(obj, "before", out->before);
		cJSON_AddNumberToObject(obj, "after", out->after);
		mh_log_warn(BUS, "meter %s: %s dropped from %.2f to %.2f without wrapping; "
				 "a new baseline (meter replaced or reset?)",
			c->m->cfg->id, mt->names[out->point], out->before, out->after);
		break;
	}
	/* JSON has no NaN or infinity: such a record is refused, never published with a null. */
	if (!c->rc && mh_records_nonfinite(obj)) {
		mh_log_err(STORE, "%s record not stored: its %s is not a finite number", subtopic,
			mh_records_nonfinite(obj));
		c->rc = -ERANGE;
	}
	json = c->rc ? NULL : mh_records_print(obj);
	cJSON_Delete(obj);
	if (!json) {
		c->rc = c->rc ? c->rc : -ENOMEM;
		return;
	}
	c->rc = mh_outbox_put(c->t->outbox, c->txn, type, created, subtopic, json, strlen(json));
	free(json);
}

int mh_tables_observe(struct mh_tables *t, const struct mh_job *job)
{
	struct mh_meter *m = job->meter;
	struct mh_meter_table *mt = m->table;
	const struct mh_reading *r = &job->reading;
	double values[MH_IVAL_MAX_POINTS];
	struct packed_state row = { .version = STATE_VERSION_PACKED, .size = sizeof(mt->state) };
	struct mh_ival_state state;
	struct emit_ctx ctx = { .t = t, .m = m };
	bool good = r->frames > 0;
	int rc;

	if (!mt)
		return 0;
	for (size_t i = 0; i < mt->cfg.n_points; i++) {
		good &= r->valid[mt->point[i]];
		values[i] = r->values[mt->point[i]];
	}
	struct mh_ival_obs obs = {
		.due_ms = job->due_ms,
		.read_at_ms = r->read_at_ms ? r->read_at_ms : job->due_ms,
		.late = job->late,
		.good = good,
		.values = values,
	};
	rc = mh_db_begin(t->db, &ctx.txn);
	if (rc)
		return rc;
	/* The builder works on a copy: its state changes only with the unit that stores it. */
	state = mt->state;
	mh_intervals_observe(&mt->cfg, &state, &obs, emit, &ctx);
	rc = ctx.rc;
	if (!rc) {
		size_t len = mh_db_pack_zeros(&state, sizeof(state), row.bytes);
		MDB_val k = { strlen(m->cfg->id), (void *)m->cfg->id },
			v = { offsetof(struct packed_state, bytes) + len, &row };
		rc = mh_db_error(mdb_put(ctx.txn, t->dbi, &k, &v, 0));
	}
	int end = mh_db_end(t->db, ctx.txn, rc == 0);
	if (!rc)
		rc = end;
	if (rc) {
		mh_log_err(STORE, "meter %s: interval tables not updated: %s", m->cfg->id,
			strerror(-rc));
		return rc;
	}
	mt->state = state;
	mt->dirty = true;
	return 0;
}

/* ---- backfill --------------------------------------------------------- */

void mh_tables_backfill_plan(struct mh_tables *t, struct mh_meter *m, int64_t now_ms,
	unsigned days, void (*want)(void *ud, struct mh_meter *m, unsigned back), void *ud)
{
	int64_t freeze;

	if (!m->table || m->bus_cfg->protocol != MH_PROTO_DLT645)
		return;
	freeze = mh_intervals_freeze_before(&m->table->cfg, now_ms);
	for (unsigned back = 1; back <= days; back++) {
		/* The day that ended at the freeze @back days back started a day earlier. */
		int64_t start = mh_intervals_freeze_before(&m->table->cfg, freeze - 1);
		if (!day_done(t, m, local_yyyymmdd(start)))
			want(ud, m, back);
		freeze = start;
	}
}

static double frozen_delta(double after, double before)
{
	/* DL/T 645 energy is XXXXXX.XX kWh: it wraps at 1 000 000. */
	double d = after >= before ? after - before : after + 1000000.0 - before;
	return round(d * 100) / 100;
}

static void add_frozen(cJSON *energy, cJSON *cum, const char *kind, const double *now,
	const double *before, size_t n)
{
	char name[40];

	for (size_t i = 0; i < n; i++) {
		if (i == 0)
			snprintf(name, sizeof(name), "energy_%s_kwh", kind);
		else
			snprintf(name, sizeof(name), "energy_%s_t%zu_kwh", kind, i);
		if (before)
			cJSON_AddNumberToObject(energy, name, frozen_delta(now[i], before[i]));
		cJSON_AddNumberToObject(cum, name, now[i]);
	}
}

int mh_tables_frozen(struct mh_tables *t, const struct mh_job *job)
{
	const struct mh_meter *m = job->meter;
	const struct mh_frozen *day = &job->frozen[0], *before = &job->frozen[1];
	uint32_t date = local_yyyymmdd(day->at_ms - 1);
	char subtopic[96], datestr[16], *json;
	cJSON *obj, *cum;
	MDB_txn *txn;
	int rc;

	if (job->reading.quality != MH_QUALITY_GOOD || !day->n_import || !before->n_import)
		return -ENODATA;
	/* A freeze later than the gateway's own time is a meter clock that runs ahead. */
	if (day->at_ms > job->reading.read_at_ms + FROZEN_AHEAD_MS) {
		mh_log_warn(STORE, "meter %s: its last daily freeze is dated after the gateway's "
				   "clock; not using it (is the meter's clock ahead?)",
			m->cfg->id);
		return -ERANGE;
	}
	if (day_done(t, m, date))
		return 0; /* the gateway saw that day whole after all */
	obj = cJSON_CreateObject();
	if (!obj)
		return -ENOMEM;
	local_date(day->at_ms - 1, false, datestr, sizeof(datestr));
	cJSON_AddNumberToObject(obj, "seq", (double)mh_outbox_next_seq(t->outbox));
	cJSON_AddStringToObject(obj, "meter", m->cfg->id);
	cJSON_AddStringToObject(obj, "date", datestr);
	add_time(obj, "start", before->at_ms, m->table);
	add_time(obj, "end", day->at_ms, m->table);
	cum = cJSON_CreateObject();
	add_frozen(obj, cum, "import", day->import, before->import,
		day->n_import < before->n_import ? day->n_import : before->n_import);
	if (day->n_export && before->n_export)
		add_frozen(obj, cum, "export", day->export, before->export,
			day->n_export < before->n_export ? day->n_export : before->n_export);
	/* The meter's own tariff registers split the day; the gateway's periods cannot. */
	cJSON_AddObjectToObject(obj, "periods");
	cJSON_AddItemToObject(obj, "cumulative", cum);
	cJSON_AddBoolToObject(obj, "complete", true);
	cJSON_AddStringToObject(obj, "source", "meter");
	if (mh_records_nonfinite(obj)) {
		mh_log_err(STORE, "meter %s: frozen record of %s not stored: its %s is not a finite number",
			m->cfg->id, datestr, mh_records_nonfinite(obj));
		cJSON_Delete(obj);
		return -EDOM;
	}
	json = mh_records_print(obj);
	cJSON_Delete(obj);
	if (!json)
		return -ENOMEM;
	snprintf(subtopic, sizeof(subtopic), "daily/%s", m->cfg->id);
	rc = mh_db_begin(t->db, &txn);
	if (!rc) {
		rc = mh_outbox_put(t->outbox, txn, MH_RECORD_DAILY, day->at_ms, subtopic, json,
			strlen(json));
		if (!rc)
			rc = mark_day(t, txn, m, date, DAY_METER);
		int end = mh_db_end(t->db, txn, rc == 0);
		if (!rc)
			rc = end;
	}
	free(json);
	if (!rc)
		mh_log_info(STORE, "meter %s: daily freeze of %s read back from the meter", m->cfg->id,
			datestr);
	return rc;
}

void mh_tables_clock_step(struct mh_tables *t, int64_t step_ms)
{
	for (size_t i = 0; i < t->meters->n; i++) {
		struct mh_meter_table *mt = t->meters->meters[i]->table;
		/* Kept in memory; stored with the meter's next observation. */
		if (mt) {
			mh_intervals_clock_step(&mt->state, step_ms);
			mh_intervals_clock_step(&mt->committed, step_ms);
		}
	}
}

int mh_tables_read_states(struct mh_db *db,
	int (*fn)(void *ud, const char *meter, const struct mh_ival_state *st), void *ud)
{
	MDB_dbi dbi;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	char meter[512];
	int rc = mh_db_table_find(db, "intervals", &dbi), n = 0;

	if (!rc)
		rc = mh_db_read(db, &txn);
	if (rc)
		return rc;
	rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc) {
		mh_db_read_end(txn);
		return mh_db_error(rc);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct mh_ival_state s;
		if (k.mv_size >= sizeof(meter) || !decode_state(&v, &s))
			continue;
		memcpy(meter, k.mv_data, k.mv_size);
		meter[k.mv_size] = '\0';
		n++;
		if (fn(ud, meter, &s))
			break;
	}
	mdb_cursor_close(cur);
	mh_db_read_end(txn);
	return rc == 0 || rc == MDB_NOTFOUND ? n : mh_db_error(rc);
}
