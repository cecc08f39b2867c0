// SPDX-License-Identifier: MIT
#include "outbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define RECORD_FORMAT 1
#define HEADER_LEN 12 /* format, type, subtopic length (2), created ms (8) */
/* What LMDB adds to a record: node header and key, rounded up. */
#define RECORD_OVERHEAD 64

/* A sorted set of seqs. */
struct seqset {
	uint64_t *v;
	size_t n, cap;
};

struct mh_outbox {
	struct mh_db *db;
	MDB_dbi table;
	uint64_t max_bytes;
	struct mh_outbox_drops unit;  /* made by the unit of work in progress */
	struct mh_outbox_drops turn;  /* kept in this turn, not yet committed */
	struct mh_outbox_drops drops; /* committed, not yet taken */
	uint64_t appended_in_turn;
	struct seqset acks;      /* acknowledged, deletion not yet written */
	struct seqset acks_turn; /* deletion written in this turn, not yet committed */
};

const char *mh_record_type_name(enum mh_record_type type)
{
	static const char *const names[MH_RECORD_TYPES] = {
		[MH_RECORD_READING] = "reading",
		[MH_RECORD_INTERVAL] = "interval",
		[MH_RECORD_DAILY] = "daily",
		[MH_RECORD_EVENT] = "event",
		[MH_RECORD_CMD_RESULT] = "cmd/result",
	};

	return (unsigned)type < MH_RECORD_TYPES && names[type] ? names[type] : "unknown";
}

/* ---- seq sets -------------------------------------------------------- */

static size_t seqset_lower(const struct seqset *s, uint64_t seq)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->v[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool seqset_has(const struct seqset *s, uint64_t seq)
{
	size_t i = seqset_lower(s, seq);
	return i < s->n && s->v[i] == seq;
}

static int seqset_add(struct seqset *s, uint64_t seq)
{
	size_t i = s->n && s->v[s->n - 1] < seq ? s->n : seqset_lower(s, seq);

	if (i < s->n && s->v[i] == seq)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof(*s->v));
	s->v[i] = seq;
	s->n++;
	return 0;
}

/* ---- records --------------------------------------------------------- */

static int decode_record(const MDB_val *k, const MDB_val *v, struct mh_record *rec)
{
	const uint8_t *p = v->mv_data;
	size_t sub_len;

	if (k->mv_size != 8 || v->mv_size < HEADER_LEN || p[0] != RECORD_FORMAT)
		return -EILSEQ;
	sub_len = (size_t)p[2] << 8 | p[3];
	if (HEADER_LEN + sub_len > v->mv_size)
		return -EILSEQ;
	rec->seq = mh_db_get_be64(k->mv_data);
	rec->type = p[1];
	rec->created_ms = (int64_t)mh_db_get_be64(p + 4);
	rec->subtopic = (const char *)p + HEADER_LEN;
	rec->subtopic_len = sub_len;
	rec->payload = (const char *)p + HEADER_LEN + sub_len;
	rec->payload_len = v->mv_size - HEADER_LEN - sub_len;
	return 0;
}

static void drops_add(struct mh_outbox_drops *to, const struct mh_outbox_drops *from)
{
	for (size_t i = 0; i < MH_RECORD_TYPES; i++)
		to->by_type[i] += from->by_type[i];
	if (from->first_seq && (!to->first_seq || from->first_seq < to->first_seq))
		to->first_seq = from->first_seq;
	if (from->last_seq > to->last_seq)
		to->last_seq = from->last_seq;
	to->lost += from->lost;
}

static uint64_t drops_total(const struct mh_outbox_drops *d)
{
	uint64_t n = 0;

	for (size_t i = 0; i < MH_RECORD_TYPES; i++)
		n += d->by_type[i];
	return n;
}

static void before_commit(void *ud);

/* The database's turn ended: what it held is now committed, or gone. */
static void on_commit(void *ud, int rc)
{
	struct mh_outbox *ob = ud;

	if (rc == 0) {
		drops_add(&ob->drops, &ob->turn);
		ob->acks_turn.n = 0;
	} else {
		/* The records of the turn never reached the disk: say so, they are never silent. */
		ob->drops.lost += ob->appended_in_turn;
		if (ob->appended_in_turn)
			mh_log_err(STORE, "%llu records of this turn were lost with the commit",
				(unsigned long long)ob->appended_in_turn);
		/* Their deletion did not happen either; it is written again next time. */
		for (size_t i = 0; i < ob->acks_turn.n; i++)
			if (seqset_add(&ob->acks, ob->acks_turn.v[i]) < 0)
				break; /* without memory: a duplicate after the next reconnect */
		ob->acks_turn.n = 0;
	}
	memset(&ob->turn, 0, sizeof(ob->turn));
	ob->appended_in_turn = 0;
}

int mh_outbox_open(struct mh_db *db, uint64_t max_bytes, struct mh_outbox **out)
{
	struct mh_outbox *ob = calloc(1, sizeof(*ob));
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if (!ob)
		return -ENOMEM;
	ob->db = db;
	ob->max_bytes = max_bytes;
	rc = mh_db_table(db, "outbox", &ob->table);
	if (!rc)
		rc = mh_db_watch(db, on_commit, ob);
	if (!rc) {
		mh_db_before_commit(db, before_commit, ob);
		rc = mh_db_read(db, &txn);
	}
	if (!rc)
		mh_db_seq_keyed(db);
	if (rc) {
		free(ob);
		return rc;
	}
	/* A seq still stored is never given again, whatever the counter says. */
	if (mdb_cursor_open(txn, ob->table, &cur) == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
			mh_db_seq_floor(db, mh_db_get_be64(k.mv_data) + 1);
		mdb_cursor_close(cur);
	}
	mh_db_read_end(txn);
	*out = ob;
	return 0;
}

void mh_outbox_free(struct mh_outbox *ob)
{
	if (!ob)
		return;
	mh_db_before_commit(ob->db, NULL, NULL);
	free(ob->acks.v);
	free(ob->acks_turn.v);
	free(ob);
}

uint64_t mh_outbox_next_seq(const struct mh_outbox *ob)
{
	return mh_db_seq_peek(ob->db);
}

static void note_drop(struct mh_outbox_drops *d, uint64_t seq, unsigned type)
{
	if (type < MH_RECORD_TYPES)
		d->by_type[type]++;
	if (!d->first_seq || seq < d->first_seq)
		d->first_seq = seq;
	if (seq > d->last_seq)
		d->last_seq = seq;
}

/*
 * Delete the oldest records until @needed more bytes fit under max_bytes:
 * readings first, since the head-end can live with a gap in a curve but not
 * with a lost interval total, daily freeze or command result. Returns 0,
 * -EMSGSIZE when the record cannot fit even in an empty outbox, or -errno.
 */
static int make_room(struct mh_outbox *ob, MDB_txn *txn, size_t needed)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	/* A record that could not fit even beside a few others is refused before anything goes. */
	if (needed > ob->max_bytes / 2)
		return -EMSGSIZE;
	if (mh_db_table_bytes(txn, ob->table) + needed <= ob->max_bytes)
		return 0;
	rc = mdb_cursor_open(txn, ob->table, &cur);
	if (rc)
		return mh_db_error(rc);
	for (int pass = 0; pass < 2; pass++) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			const uint8_t *p = v.mv_data;
			unsigned type = v.mv_size > 1 ? p[1] : 0;
			if (pass == 0 && type != MH_RECORD_READING)
				continue;
			note_drop(&ob->unit, k.mv_size == 8 ? mh_db_get_be64(k.mv_data) : 0, type);
			rc = mdb_cursor_del(cur, 0);
			if (rc)
				break;
			if (mh_db_table_bytes(txn, ob->table) + needed <= ob->max_bytes) {
				mdb_cursor_close(cur);
				return 0;
			}
		}
		if (rc != MDB_NOTFOUND) {
			mdb_cursor_close(cur);
			return mh_db_error(rc);
		}
	}
	mdb_cursor_close(cur);
	return mh_db_table_bytes(txn, ob->table) + needed <= ob->max_bytes ? 0 : -ENOSPC;
}

int mh_outbox_put(struct mh_outbox *ob, MDB_txn *txn, enum mh_record_type type,
	int64_t created_ms, const char *subtopic, const char *payload, size_t payload_len)
{
	size_t sub_len = strlen(subtopic);
	uint8_t key[8];
	MDB_val k = { sizeof(key), key }, v;
	int rc;

	if (sub_len > UINT16_MAX)
		return -EINVAL;
	v.mv_size = HEADER_LEN + sub_len + payload_len;
	rc = make_room(ob, txn, v.mv_size + RECORD_OVERHEAD);
	if (rc == -EMSGSIZE)
		mh_log_err(STORE, "a %zu-byte record is larger than half of store.max_bytes; not stored",
			v.mv_size);
	if (rc)
		return rc;
	mh_db_put_be64(key, mh_outbox_next_seq(ob));
	rc = mdb_put(txn, ob->table, &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc) {
		mh_log_err(STORE, "cannot store a %s record: %s", mh_record_type_name(type),
			mdb_strerror(rc));
		return mh_db_error(rc);
	}
	uint8_t *p = v.mv_data;
	p[0] = RECORD_FORMAT;
	p[1] = (uint8_t)type;
	p[2] = (uint8_t)(sub_len >> 8);
	p[3] = (uint8_t)sub_len;
	mh_db_put_be64(p + 4, (uint64_t)created_ms);
	memcpy(p + HEADER_LEN, subtopic, sub_len);
	memcpy(p + HEADER_LEN + sub_len, payload, payload_len);
	mh_db_seq_take(ob->db);
	ob->appended_in_turn++;
	return 0;
}

int mh_outbox_append(struct mh_outbox *ob, enum mh_record_type type, int64_t created_ms,
	const char *subtopic, const char *payload, size_t payload_len)
{
	MDB_txn *txn;
	uint64_t appended = ob->appended_in_turn;
	int rc = mh_db_begin(ob->db, &txn);

	memset(&ob->unit, 0, sizeof(ob->unit));
	if (!rc) {
		rc = mh_outbox_put(ob, txn, type, created_ms, subtopic, payload, payload_len);
		int end = mh_db_end(ob->db, txn, rc == 0);
		if (!rc)
			rc = end;
	}
	if (rc) {
		/* Undone with its unit: neither the record nor the drops it made happened. */
		ob->appended_in_turn = appended;
		memset(&ob->unit, 0, sizeof(ob->unit));
		ob->drops.lost++;
		return rc;
	}
	drops_add(&ob->turn, &ob->unit);
	memset(&ob->unit, 0, sizeof(ob->unit));
	return 0;
}

bool mh_outbox_take_drops(struct mh_outbox *ob, struct mh_outbox_drops *out)
{
	*out = ob->drops;
	memset(&ob->drops, 0, sizeof(ob->drops));
	return drops_total(out) > 0 || out->lost > 0;
}

void mh_outbox_ack(struct mh_outbox *ob, uint64_t seq)
{
	/* Without memory the deletion is forgotten: a duplicate after a reconnect, not a loss. */
	if (seqset_add(&ob->acks, seq) < 0)
		mh_log_warn(STORE, "out of memory: seq %llu will be sent again",
			(unsigned long long)seq);
}

size_t mh_outbox_acks_pending(const struct mh_outbox *ob)
{
	return ob->acks.n + ob->acks_turn.n;
}

/*
 * Write the deletions of the acknowledged records into the turn, in one
 * unit of work. Those that fail stay acknowledged for the next time.
 */
static int write_acks(struct mh_outbox *ob)
{
	MDB_txn *txn = NULL;
	uint8_t key[8];
	MDB_val k = { sizeof(key), key };
	int rc;

	if (!ob->acks.n)
		return 0;
	rc = mh_db_begin(ob->db, &txn);
	for (size_t i = 0; rc == 0 && i < ob->acks.n; i++) {
		mh_db_put_be64(key, ob->acks.v[i]);
		rc = mdb_del(txn, ob->table, &k, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0; /* a duplicate acknowledgement */
		rc = mh_db_error(rc);
	}
	if (txn) {
		int end = mh_db_end(ob->db, txn, rc == 0);
		if (!rc)
			rc = end;
	}
	if (rc) {
		mh_log_warn(STORE, "cannot delete %zu acknowledged records yet: %s", ob->acks.n,
			strerror(-rc));
		return rc;
	}
	/* The newest record gone: only the counter's row still knows its seq. */
	if (ob->acks.v[ob->acks.n - 1] + 1 >= mh_db_seq_peek(ob->db))
		mh_db_seq_save(ob->db);
	/* The written deletions wait for the commit; the set starts empty. */
	if (!ob->acks_turn.n) {
		struct seqset t = ob->acks_turn;
		ob->acks_turn = ob->acks;
		ob->acks = t;
	} else {
		for (size_t i = 0; i < ob->acks.n; i++)
			if (seqset_add(&ob->acks_turn, ob->acks.v[i]) < 0)
				break; /* without memory: a duplicate after the next reconnect */
	}
	ob->acks.n = 0;
	return 0;
}

/* Any commit takes the deletions acknowledged so far along. */
static void before_commit(void *ud)
{
	write_acks(ud);
}

int mh_outbox_flush_acks(struct mh_outbox *ob)
{
	int rc = write_acks(ob);
	/*
	 * Deletions join a group commit that is being held (db.h): they need no
	 * commit of their own, and losing them to a power cut only means the
	 * records are sent again.
	 */
	int crc = mh_db_held(ob->db) ? 0 : mh_db_commit(ob->db);
	return rc ? rc : crc;
}

static bool acked(const struct mh_outbox *ob, uint64_t seq)
{
	return seqset_has(&ob->acks, seq) || seqset_has(&ob->acks_turn, seq);
}

/*
 * Call @fn for up to @max committed records not acknowledged, in seq order
 * from the first past @from (@back: in reverse from the last before @from).
 * Returns how many, or a negative errno.
 */
static int scan(struct mh_outbox *ob, uint64_t from, bool back, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	uint8_t key[8];
	MDB_val k = { sizeof(key), key }, v;
	MDB_cursor_op step = back ? MDB_PREV : MDB_NEXT;
	int rc, n = 0;

	rc = mh_db_read(ob->db, &txn);
	if (rc)
		return rc;
	rc = mdb_cursor_open(txn, ob->table, &cur);
	if (rc) {
		mh_db_read_end(txn);
		return mh_db_error(rc);
	}
	/*
	 * Forward: the first key past @from. Back: the first at or past it,
	 * then one back; past the end, the last.
	 */
	mh_db_put_be64(key, back ? from : from + 1);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (back && rc == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
	else if (back && rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	for (; rc == 0 && (size_t)n < max; rc = mdb_cursor_get(cur, &k, &v, step)) {
		struct mh_record rec;
		if (decode_record(&k, &v, &rec) < 0) {
			mh_log_err(STORE, "skipping a malformed record");
			continue;
		}
		if ((back && rec.seq >= from) || acked(ob, rec.seq))
			continue;
		n++;
		if (fn(ud, &rec))
			break;
	}
	mdb_cursor_close(cur);
	mh_db_read_end(txn);
	return n;
}

int mh_outbox_scan(struct mh_outbox *ob, uint64_t after, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud)
{
	return scan(ob, after, false, max, fn, ud);
}

int mh_outbox_stats(struct mh_outbox *ob, struct mh_outbox_stats *st)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_stat ms;
	MDB_val k, v;
	int rc;

	memset(st, 0, sizeof(*st));
	st->max_bytes = ob->max_bytes;
	rc = mh_db_read(ob->db, &txn);
	if (rc)
		return rc;
	rc = mdb_stat(txn, ob->table, &ms);
	if (!rc)
		rc = mdb_cursor_open(txn, ob->table, &cur);
	if (rc) {
		mh_db_read_end(txn);
		return mh_db_error(rc);
	}
	st->records = ms.ms_entries;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct mh_record rec;
		if (decode_record(&k, &v, &rec) < 0)
			continue;
		/* The oldest record still waiting, not one already acknowledged. */
		if (acked(ob, rec.seq))
			continue;
		st->oldest_seq = rec.seq;
		st->oldest_ms = rec.created_ms;
		break;
	}
	mdb_cursor_close(cur);
	st->records -= st->records < mh_outbox_acks_pending(ob) ? st->records
								 : mh_outbox_acks_pending(ob);
	st->used_bytes = mh_db_table_bytes(txn, ob->table);
	mh_db_read_end(txn);
	return 0;
}

int mh_outbox_open_readonly(struct mh_db *db, uint64_t max_bytes, struct mh_outbox **out)
{
	struct mh_outbox *ob = calloc(1, sizeof(*ob));
	int rc;

	if (!ob)
		return -ENOMEM;
	ob->db = db;
	ob->max_bytes = max_bytes;
	rc = mh_db_table_find(db, "outbox", &ob->table);
	if (rc) {
		free(ob);
		return rc;
	}
	*out = ob;
	return 0;
}

int mh_outbox_scan_back(struct mh_outbox *ob, uint64_t before, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud)
{
	return before ? scan(ob, before, true, max, fn, ud) : 0;
}
