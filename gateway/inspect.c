// SPDX-License-Identifier: MIT
#include "inspect.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "outbox.h"
#include "tables.h"

/* A chunk of a walk: at most this many records, or about this many bytes, per transaction. */
#define CHUNK_RECORDS 1024
#define CHUNK_BYTES (1u << 20)

struct mh_inspect {
	struct mh_db *db;
	struct mh_outbox *outbox;
	char *path;
};

static const char *const kind_names[MH_INSPECT_KINDS] = {
	[MH_INSPECT_READING] = "reading",
	[MH_INSPECT_INTERVAL] = "interval",
	[MH_INSPECT_DAILY] = "daily",
	[MH_INSPECT_MONTHLY] = "monthly",
	[MH_INSPECT_EVENT] = "event",
	[MH_INSPECT_CMD_RESULT] = "cmd_result",
	[MH_INSPECT_OTHER] = "other",
};

/* The subtopic of a meter's records of @kind, before "/<meter>"; NULL for events and results. */
static const char *const kind_topics[MH_INSPECT_KINDS] = {
	[MH_INSPECT_READING] = "reading",
	[MH_INSPECT_INTERVAL] = "interval",
	[MH_INSPECT_DAILY] = "daily",
	[MH_INSPECT_MONTHLY] = "monthly",
};

const char *mh_inspect_kind_name(enum mh_inspect_kind kind)
{
	return (unsigned)kind < MH_INSPECT_KINDS ? kind_names[kind] : "other";
}

int mh_inspect_kind_parse(const char *name)
{
	for (int k = 0; k < MH_INSPECT_OTHER; k++)
		if (!strcmp(name, kind_names[k]))
			return k;
	return -EINVAL;
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && !memcmp(s, prefix, n);
}

/* Daily and monthly freezes share a record type; their topics tell them apart. */
static enum mh_inspect_kind classify(const struct mh_record *rec)
{
	switch (rec->type) {
	case MH_RECORD_READING:
		return MH_INSPECT_READING;
	case MH_RECORD_INTERVAL:
		return MH_INSPECT_INTERVAL;
	case MH_RECORD_DAILY:
		return has_prefix(rec->subtopic, rec->subtopic_len, "monthly/") ? MH_INSPECT_MONTHLY
										: MH_INSPECT_DAILY;
	case MH_RECORD_EVENT:
		return MH_INSPECT_EVENT;
	case MH_RECORD_CMD_RESULT:
		return MH_INSPECT_CMD_RESULT;
	default:
		return MH_INSPECT_OTHER;
	}
}

/* The meter a record's topic names ("reading/m-1": "m-1"), or NULL when its topic names none. */
static const char *topic_meter(enum mh_inspect_kind kind, const char *sub, size_t len,
	size_t *meter_len)
{
	const char *t = (unsigned)kind < MH_INSPECT_KINDS ? kind_topics[kind] : NULL;
	size_t n = t ? strlen(t) : 0;

	if (!t || len <= n + 1 || memcmp(sub, t, n) || sub[n] != '/')
		return NULL;
	*meter_len = len - n - 1;
	return sub + n + 1;
}

/* ---- holding signals off during a transaction ----------------------------- */

static void hold_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGTSTP);
	sigprocmask(SIG_BLOCK, &set, old);
}

/* A signal that came meanwhile is delivered now, with no transaction open. */
static void release_signals(const sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
}

/* ---- open --------------------------------------------------------------- */

int mh_inspect_open(const char *path, uint64_t max_bytes, struct mh_inspect **out, char *why,
	size_t why_len)
{
	struct mh_inspect *in = calloc(1, sizeof(*in));
	int rc;

	if (!in)
		return -ENOMEM;
	in->path = strdup(path);
	rc = in->path ? mh_db_open_readonly(path, &in->db, why, why_len) : -ENOMEM;
	if (!rc) {
		rc = mh_outbox_open_readonly(in->db, max_bytes, &in->outbox);
		if (rc == -ENOENT)
			snprintf(why, why_len, "%s holds a meterhub store without an outbox", path);
		else if (rc)
			snprintf(why, why_len, "%s: cannot read the outbox: %s", path,
				strerror(-rc));
	}
	if (rc) {
		mh_inspect_free(in);
		return rc;
	}
	*out = in;
	return 0;
}

void mh_inspect_free(struct mh_inspect *in)
{
	if (!in)
		return;
	mh_outbox_free(in->outbox);
	mh_db_close(in->db);
	free(in->path);
	free(in);
}

/* ---- walking the records ------------------------------------------------- */

struct entry {
	uint64_t seq;
	enum mh_inspect_kind kind;
	int64_t created_ms;
	size_t subtopic, payload, payload_len; /* offsets into the chunk's text */
};

struct chunk {
	const struct mh_inspect_filter *f;
	uint64_t end;  /* the last seq of the walk */
	uint64_t last; /* the last seq visited */
	struct entry *v;
	size_t n, cap;
	char *text;
	size_t len, text_cap;
	int rc;
};

static int text_add(struct chunk *c, const char *s, size_t n, size_t *at)
{
	if (c->len + n + 1 > c->text_cap) {
		size_t cap = c->text_cap ? c->text_cap : CHUNK_BYTES;
		char *t;
		while (cap < c->len + n + 1)
			cap *= 2;
		t = realloc(c->text, cap);
		if (!t)
			return -ENOMEM;
		c->text = t;
		c->text_cap = cap;
	}
	*at = c->len;
	memcpy(c->text + c->len, s, n);
	c->text[c->len + n] = '\0';
	c->len += n + 1;
	return 0;
}

/* Whether @rec may match @f before its payload is read: kind, and the meter its topic names. */
static bool may_match(const struct mh_inspect_filter *f, enum mh_inspect_kind kind,
	const struct mh_record *rec)
{
	const char *meter;
	size_t len;

	if (f->kind >= 0 && kind != (enum mh_inspect_kind)f->kind)
		return false;
	if (!f->meter)
		return true;
	meter = topic_meter(kind, rec->subtopic, rec->subtopic_len, &len);
	if (meter)
		return len == strlen(f->meter) && !memcmp(meter, f->meter, len);
	/* Events and command results name their meter in the payload: looked at later. */
	return kind == MH_INSPECT_EVENT || kind == MH_INSPECT_CMD_RESULT;
}

/* Inside the read transaction: copy, nothing more. */
static int chunk_copy(void *ud, const struct mh_record *rec)
{
	struct chunk *c = ud;
	enum mh_inspect_kind kind = classify(rec);
	struct entry *e;

	if (rec->seq > c->end) {
		c->last = c->end;
		return 1;
	}
	c->last = rec->seq;
	if (!may_match(c->f, kind, rec))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		e = realloc(c->v, cap * sizeof(*e));
		if (!e) {
			c->rc = -ENOMEM;
			return 1;
		}
		c->v = e;
		c->cap = cap;
	}
	e = &c->v[c->n];
	*e = (struct entry){ .seq = rec->seq, .kind = kind, .created_ms = rec->created_ms,
		.payload_len = rec->payload_len };
	if (text_add(c, rec->subtopic, rec->subtopic_len, &e->subtopic) < 0 ||
		text_add(c, rec->payload, rec->payload_len, &e->payload) < 0) {
		c->rc = -ENOMEM;
		return 1;
	}
	c->n++;
	return c->len >= CHUNK_BYTES;
}

/* Events and command results: whether the payload's "meter" is the one asked for. */
static bool payload_meter_is(const char *payload, size_t len, const char *meter)
{
	cJSON *obj = cJSON_ParseWithLength(payload, len);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "meter");
	bool same = cJSON_IsString(m) && !strcmp(m->valuestring, meter);

	cJSON_Delete(obj);
	return same;
}

static int note_newest(void *ud, const struct mh_record *rec)
{
	*(uint64_t *)ud = rec->seq;
	return 1;
}

int mh_inspect_each(struct mh_inspect *in, const struct mh_inspect_filter *f,
	int (*fn)(void *ud, const struct mh_inspect_record *rec), void *ud)
{
	struct chunk c = { .f = f };
	uint64_t after = f->from ? f->from - 1 : 0, newest = 0;
	sigset_t old;
	int rc, n;

	hold_signals(&old);
	rc = mh_outbox_scan_back(in->outbox, UINT64_MAX, 1, note_newest, &newest);
	release_signals(&old);
	if (rc < 0)
		return rc;
	c.end = f->to && f->to < newest ? f->to : newest;
	for (rc = 0; rc == 0 && after < c.end; after = c.last) {
		c.n = c.len = 0;
		c.last = after;
		hold_signals(&old);
		n = mh_outbox_scan(in->outbox, after, CHUNK_RECORDS, chunk_copy, &c);
		release_signals(&old);
		if (n < 0 || c.rc < 0) {
			rc = n < 0 ? n : c.rc;
			break;
		}
		for (size_t i = 0; rc == 0 && i < c.n; i++) {
			const struct entry *e = &c.v[i];
			struct mh_inspect_record r = {
				.seq = e->seq,
				.kind = e->kind,
				.created_ms = e->created_ms,
				.subtopic = c.text + e->subtopic,
				.payload = c.text + e->payload,
				.payload_len = e->payload_len,
			};
			size_t len;
			bool by_topic = topic_meter(r.kind, r.subtopic, strlen(r.subtopic), &len);
			if (f->meter && !by_topic &&
				!payload_meter_is(r.payload, r.payload_len, f->meter))
				continue;
			rc = fn(ud, &r);
		}
		if (n == 0 || c.last == after)
			break; /* nothing left: the rest was acknowledged meanwhile */
	}
	free(c.v);
	free(c.text);
	return rc;
}

/* ---- status -------------------------------------------------------------- */

/* Meters by id: an array in the order met, and an open-addressing index into it. */
struct meters {
	struct mh_inspect_meter *v;
	size_t n, cap;
	size_t *slots; /* index + 1; 0 is empty */
	size_t n_slots;
	int rc;
};

static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

static int meters_rehash(struct meters *ms, size_t n_slots)
{
	size_t *slots = calloc(n_slots, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < ms->n; i++) {
		size_t j = hash(ms->v[i].id, strlen(ms->v[i].id)) & (n_slots - 1);
		while (slots[j])
			j = (j + 1) & (n_slots - 1);
		slots[j] = i + 1;
	}
	free(ms->slots);
	ms->slots = slots;
	ms->n_slots = n_slots;
	return 0;
}

/* The meter @id (@len bytes), added when new. NULL when out of memory. */
static struct mh_inspect_meter *meters_get(struct meters *ms, const char *id, size_t len)
{
	size_t j;

	if (ms->n_slots) {
		for (j = hash(id, len) & (ms->n_slots - 1); ms->slots[j];
			j = (j + 1) & (ms->n_slots - 1)) {
			struct mh_inspect_meter *m = &ms->v[ms->slots[j] - 1];
			if (!strncmp(m->id, id, len) && m->id[len] == '\0')
				return m;
		}
	}
	if (ms->n == ms->cap) {
		size_t cap = ms->cap ? ms->cap * 2 : 64;
		struct mh_inspect_meter *v = realloc(ms->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		ms->v = v;
		ms->cap = cap;
	}
	struct mh_inspect_meter *m = &ms->v[ms->n];
	*m = (struct mh_inspect_meter){ .id = strndup(id, len) };
	if (!m->id)
		return NULL;
	ms->n++;
	/* Kept at most half full. */
	if (ms->n * 2 > ms->n_slots) {
		if (meters_rehash(ms, ms->n_slots ? ms->n_slots * 2 : 128) < 0) {
			free(m->id);
			ms->n--;
			return NULL;
		}
	} else {
		for (j = hash(id, len) & (ms->n_slots - 1); ms->slots[j];
			j = (j + 1) & (ms->n_slots - 1))
			;
		ms->slots[j] = ms->n;
	}
	return m;
}

struct status_walk {
	struct mh_inspect_status *st;
	struct meters meters;
};

/*
 * Inside the read transaction, newest record first. Only a reading of a
 * meter whose newest good reading is not known yet is parsed, so a long
 * backlog costs a look at each record's header and little more.
 */
static int status_visit(void *ud, const struct mh_record *rec)
{
	struct status_walk *w = ud;
	struct mh_inspect_status *st = w->st;
	enum mh_inspect_kind kind = classify(rec);
	struct mh_inspect_meter *m;
	const char *id;
	size_t len;

	if (!st->newest_seq)
		st->newest_seq = rec->seq;
	st->oldest_seq = rec->seq;
	st->oldest_ms = rec->created_ms;
	st->backlog++;
	st->by_kind[kind]++;
	if (kind != MH_INSPECT_READING)
		return 0;
	id = topic_meter(kind, rec->subtopic, rec->subtopic_len, &len);
	if (!id)
		return 0;
	m = meters_get(&w->meters, id, len);
	if (!m) {
		w->meters.rc = -ENOMEM;
		return 1;
	}
	if (m->reading_ms && m->bus)
		return 0;
	cJSON *obj = cJSON_ParseWithLength(rec->payload, rec->payload_len);
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(obj, "quality");
	const cJSON *bus = cJSON_GetObjectItemCaseSensitive(obj, "bus");
	if (!m->bus && cJSON_IsString(bus))
		m->bus = strdup(bus->valuestring);
	if (!m->reading_ms && cJSON_IsString(q) && !strcmp(q->valuestring, "good"))
		m->reading_ms = rec->created_ms;
	cJSON_Delete(obj);
	return 0;
}

static int state_visit(void *ud, const char *meter, const struct mh_ival_state *s)
{
	struct status_walk *w = ud;
	struct mh_inspect_meter *m = meters_get(&w->meters, meter, strlen(meter));

	if (!m) {
		w->meters.rc = -ENOMEM;
		return 1;
	}
	if (s->has_base)
		m->builder_ms = s->base_ms;
	return 0;
}

static int by_id(const void *a, const void *b)
{
	return strcmp(((const struct mh_inspect_meter *)a)->id,
		((const struct mh_inspect_meter *)b)->id);
}

static struct mh_inspect_bus *bus_get(struct mh_inspect_status *st, const char *name)
{
	struct mh_inspect_bus *v;

	for (size_t i = 0; i < st->n_buses; i++)
		if (!strcmp(st->buses[i].name, name))
			return &st->buses[i];
	v = realloc(st->buses, (st->n_buses + 1) * sizeof(*v));
	if (!v)
		return NULL;
	st->buses = v;
	v = &st->buses[st->n_buses];
	*v = (struct mh_inspect_bus){ .name = strdup(name) };
	if (!v->name)
		return NULL;
	st->n_buses++;
	return v;
}

/* Each bus: the newest last good reading of its meters. */
static int fill_buses(struct mh_inspect_status *st)
{
	for (size_t i = 0; i < st->n_meters; i++) {
		const struct mh_inspect_meter *m = &st->meters[i];
		struct mh_inspect_bus *b;
		int64_t t = m->reading_ms > m->builder_ms ? m->reading_ms : m->builder_ms;

		if (!m->bus)
			continue;
		b = bus_get(st, m->bus);
		if (!b)
			return -ENOMEM;
		if (t > b->last_good_ms) {
			b->last_good_ms = t;
			b->meter = m->id;
			b->from_builder = m->builder_ms > m->reading_ms;
		}
	}
	return 0;
}

int mh_inspect_status(struct mh_inspect *in, const struct mh_config *cfg,
	struct mh_inspect_status *st)
{
	struct status_walk w = { .st = st };
	struct mh_outbox_stats os;
	struct mh_db_usage usage;
	uint64_t next = 1;
	size_t configured = 0;
	sigset_t old;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	st->held = mh_db_holder(in->path, &st->pid);
	if (st->held == -ENOENT)
		st->held = 0; /* no lock file: no daemon ever had it */

	/* The configured meters and buses first, in the configuration's order. */
	for (size_t b = 0; cfg && !rc && b < cfg->n_buses; b++) {
		const struct mh_bus_config *bus = &cfg->buses[b];
		struct mh_inspect_bus *sb = bus_get(st, bus->name);
		if (!sb)
			rc = -ENOMEM;
		else
			sb->configured = true;
		for (size_t i = 0; !rc && i < bus->n_meters; i++) {
			struct mh_inspect_meter *m = meters_get(&w.meters, bus->meters[i].id,
				strlen(bus->meters[i].id));
			if (!m || !(m->bus = strdup(bus->name)))
				rc = -ENOMEM;
			else
				m->configured = true;
		}
	}
	configured = w.meters.n;

	if (!rc) {
		hold_signals(&old);
		rc = mh_outbox_scan_back(in->outbox, UINT64_MAX, SIZE_MAX, status_visit, &w);
		if (rc >= 0) {
			int s = mh_tables_read_states(in->db, state_visit, &w);
			rc = s == -ENOENT ? 0 : s;
		}
		if (rc >= 0)
			rc = mh_outbox_stats(in->outbox, &os);
		release_signals(&old);
	}
	if (rc >= 0)
		rc = w.meters.rc;
	if (rc >= 0)
		rc = mh_db_read_next_seq(in->db, &next);
	if (rc >= 0)
		rc = mh_db_usage(in->db, &usage);

	st->meters = w.meters.v;
	st->n_meters = w.meters.n;
	free(w.meters.slots);
	if (rc < 0)
		return rc;

	st->used_bytes = os.used_bytes;
	st->max_bytes = os.max_bytes;
	st->map_bytes = usage.map_bytes;
	st->map_used_bytes = usage.used_bytes;
	/* A seq still stored is never given again, whatever the counter says (so the daemon). */
	st->next_seq = st->newest_seq >= next ? st->newest_seq + 1 : next;
	/* Meters the configuration does not name (any more), by id after the configured ones. */
	qsort(st->meters + configured, st->n_meters - configured, sizeof(*st->meters), by_id);
	return fill_buses(st);
}

void mh_inspect_status_deinit(struct mh_inspect_status *st)
{
	for (size_t i = 0; i < st->n_meters; i++) {
		free(st->meters[i].id);
		free(st->meters[i].bus);
	}
	for (size_t i = 0; i < st->n_buses; i++)
		free(st->buses[i].name);
	free(st->meters);
	free(st->buses);
	memset(st, 0, sizeof(*st));
}
