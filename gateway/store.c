// SPDX-License-Identifier: MIT
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#define SCHEMA_VERSION 1
#define RECORD_FORMAT 1
#define HEADER_LEN 12 /* format, type, subtopic length (2), created ms (8) */

static const char MAGIC[] = "meterhub-outbox";

struct mh_store {
	MDB_env *env;
	MDB_dbi outbox, meta;
	MDB_txn *txn; /* the pending write transaction, or NULL */
	uint64_t next_seq;
	uint64_t committed_next_seq;
	uint64_t max_bytes;
	struct mh_store_drops pending_drops;   /* in the open transaction */
	struct mh_store_drops committed_drops; /* not yet taken */
	unsigned appends_pending;
	char *path;
};

/* The one place LMDB's codes become negative errnos. */
static int lmdb_error(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return -ENOSPC;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_INVALID:
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_VERSION_MISMATCH:
		return -EILSEQ;
	case MDB_READERS_FULL:
		return -EAGAIN;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *val)
{
	MDB_val k = { strlen(key), (void *)key };
	return mdb_get(txn, dbi, &k, val);
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *data, size_t len)
{
	MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)data };
	return mdb_put(txn, dbi, &k, &v, 0);
}

/*
 * Before creating anything: a database whose main table holds anything but
 * our two tables is someone else's. Refuse it rather than write into it.
 * Returns 0, a negative errno, or a positive LMDB code.
 */
static int refuse_foreign(struct mh_store *s, MDB_txn *txn)
{
	MDB_dbi main_dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);

	if (!rc)
		rc = mdb_cursor_open(txn, main_dbi, &cur);
	if (rc)
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if ((k.mv_size == 6 && !memcmp(k.mv_data, "outbox", 6)) ||
			(k.mv_size == 4 && !memcmp(k.mv_data, "meta", 4)))
			continue;
		mdb_cursor_close(cur);
		mh_log_err(STORE, "%s holds an LMDB database that is not a meterhub store; "
				  "refusing to touch it",
			s->path);
		return -EILSEQ;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Check the meta table of a store we opened, or write it for a new one. A
 * store without our magic is refused.
 */
static int check_schema(struct mh_store *s, MDB_txn *txn)
{
	MDB_val v;
	MDB_stat st;
	int rc = meta_get(txn, s->meta, "magic", &v);

	if (rc == MDB_NOTFOUND) {
		rc = mdb_stat(txn, s->outbox, &st);
		if (rc)
			return lmdb_error(rc);
		if (st.ms_entries > 0) {
			mh_log_err(STORE, "%s holds records but no meterhub magic; refusing to touch it",
				s->path);
			return -EILSEQ;
		}
		uint8_t ver = SCHEMA_VERSION;
		rc = meta_put(txn, s->meta, "magic", MAGIC, sizeof(MAGIC) - 1);
		if (!rc)
			rc = meta_put(txn, s->meta, "schema", &ver, 1);
		return lmdb_error(rc);
	}
	if (rc)
		return lmdb_error(rc);
	if (v.mv_size != sizeof(MAGIC) - 1 || memcmp(v.mv_data, MAGIC, v.mv_size)) {
		mh_log_err(STORE, "%s is not a meterhub store; refusing to touch it", s->path);
		return -EILSEQ;
	}
	rc = meta_get(txn, s->meta, "schema", &v);
	if (rc || v.mv_size != 1) {
		mh_log_err(STORE, "%s: store has no schema version", s->path);
		return -EILSEQ;
	}
	if (*(uint8_t *)v.mv_data != SCHEMA_VERSION) {
		mh_log_err(STORE, "%s: store schema %u, this meterhub reads %u; refusing to touch it",
			s->path, *(uint8_t *)v.mv_data, SCHEMA_VERSION);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

/* The next seq is one past the highest ever given, whether or not it is still stored. */
static int recover_next_seq(struct mh_store *s, MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t next = 1;
	int rc;

	if (meta_get(txn, s->meta, "next_seq", &v) == 0 && v.mv_size == 8)
		next = get_be64(v.mv_data);
	rc = mdb_cursor_open(txn, s->outbox, &cur);
	if (rc)
		return lmdb_error(rc);
	if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8) {
		uint64_t last = get_be64(k.mv_data);
		if (last + 1 > next)
			next = last + 1;
	}
	mdb_cursor_close(cur);
	s->next_seq = s->committed_next_seq = next;
	return 0;
}

int mh_store_open(const char *path, uint64_t max_bytes, struct mh_store **out)
{
	struct mh_store *s = calloc(1, sizeof(*s));
	MDB_txn *txn = NULL;
	struct stat st;
	int rc, dead;

	if (!s)
		return -ENOMEM;
	s->path = strdup(path);
	s->max_bytes = max_bytes;
	if (!s->path) {
		rc = -ENOMEM;
		goto fail;
	}
	if (mkdir(path, 0750) < 0 && errno != EEXIST) {
		rc = -errno;
		mh_log_err(STORE, "cannot create %s: %s", path, strerror(errno));
		goto fail;
	}
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = -ENOTDIR;
		mh_log_err(STORE, "%s is not a directory; store.path must name one", path);
		goto fail;
	}

	rc = lmdb_error(mdb_env_create(&s->env));
	if (rc)
		goto fail;
	mdb_env_set_maxdbs(s->env, 4);
	/* Headroom above max_bytes for LMDB's own pages and the transaction in progress. */
	mdb_env_set_mapsize(s->env, (size_t)(max_bytes + max_bytes / 4 + (4u << 20)));
	rc = mdb_env_open(s->env, path, MDB_NOTLS, 0640);
	if (rc) {
		mh_log_err(STORE, "cannot open the store in %s: %s", path, mdb_strerror(rc));
		rc = lmdb_error(rc);
		goto fail;
	}
	/* Readers left by a killed process would pin pages forever. */
	mdb_reader_check(s->env, &dead);
	if (dead)
		mh_log_notice(STORE, "cleared %d stale reader slots", dead);

	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (!rc)
		rc = refuse_foreign(s, txn);
	if (rc < 0)
		goto fail;
	if (!rc)
		rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &s->outbox);
	if (!rc)
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
	if (rc) {
		mh_log_err(STORE, "cannot open the store's tables in %s: %s", path,
			mdb_strerror(rc));
		rc = lmdb_error(rc);
		goto fail;
	}
	rc = check_schema(s, txn);
	if (!rc)
		rc = recover_next_seq(s, txn);
	if (rc)
		goto fail;
	rc = lmdb_error(mdb_txn_commit(txn));
	txn = NULL;
	if (rc)
		goto fail;
	mh_log_info(STORE, "store %s open, next seq %llu", path, (unsigned long long)s->next_seq);
	*out = s;
	return 0;

fail:
	if (txn)
		mdb_txn_abort(txn);
	if (s->env)
		mdb_env_close(s->env);
	free(s->path);
	free(s);
	return rc;
}

void mh_store_close(struct mh_store *store)
{
	if (!store)
		return;
	mh_store_commit(store);
	mdb_env_close(store->env);
	free(store->path);
	free(store);
}

uint64_t mh_store_next_seq(const struct mh_store *store)
{
	return store->next_seq;
}

static int begin(struct mh_store *s)
{
	if (s->txn)
		return 0;
	return lmdb_error(mdb_txn_begin(s->env, NULL, 0, &s->txn));
}

/* A failed put poisons the transaction; everything pending since the last commit goes. */
static int abort_pending(struct mh_store *s, int rc)
{
	mdb_txn_abort(s->txn);
	s->txn = NULL;
	s->next_seq = s->committed_next_seq;
	memset(&s->pending_drops, 0, sizeof(s->pending_drops));
	/* The appends of this transaction are gone; say so, they are never silent. */
	s->committed_drops.lost += s->appends_pending + 1;
	mh_log_err(STORE, "write failed, %u pending records discarded: %s",
		s->appends_pending, mdb_strerror(rc));
	s->appends_pending = 0;
	return lmdb_error(rc);
}

/* Bytes the records take: the pages of the outbox tree, as this transaction sees them. */
static uint64_t used_bytes(struct mh_store *s, MDB_txn *txn)
{
	MDB_stat st;

	if (mdb_stat(txn, s->outbox, &st))
		return 0;
	return (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
	       st.ms_psize;
}

static void note_drop(struct mh_store *s, uint64_t seq, unsigned type)
{
	struct mh_store_drops *d = &s->pending_drops;

	if (type < sizeof(d->by_type) / sizeof(d->by_type[0]))
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
 * -ENOSPC when the record cannot fit even in an empty store, or a positive
 * LMDB code (the transaction is then unusable).
 */
static int make_room(struct mh_store *s, size_t needed)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	/* A record that could not fit even beside a few others is refused before anything goes. */
	if (needed > s->max_bytes / 2)
		return -ENOSPC;
	if (used_bytes(s, s->txn) + needed <= s->max_bytes)
		return 0;
	rc = mdb_cursor_open(s->txn, s->outbox, &cur);
	if (rc)
		return rc;
	for (int pass = 0; pass < 2; pass++) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			const uint8_t *p = v.mv_data;
			unsigned type = v.mv_size > 1 ? p[1] : 0;
			if (pass == 0 && type != MH_RECORD_READING)
				continue;
			note_drop(s, k.mv_size == 8 ? get_be64(k.mv_data) : 0, type);
			rc = mdb_cursor_del(cur, 0);
			if (rc)
				break;
			if (used_bytes(s, s->txn) + needed <= s->max_bytes) {
				mdb_cursor_close(cur);
				return 0;
			}
		}
		if (rc != MDB_NOTFOUND) {
			mdb_cursor_close(cur);
			return rc;
		}
	}
	mdb_cursor_close(cur);
	/* Nothing is left to drop: the store is smaller than one record. */
	return used_bytes(s, s->txn) + needed <= s->max_bytes ? 0 : -ENOSPC;
}

int mh_store_append(struct mh_store *store, enum mh_record_type type, int64_t created_ms,
	const char *subtopic, const char *payload, size_t payload_len)
{
	size_t sub_len = strlen(subtopic);
	uint8_t key[8];
	MDB_val k = { sizeof(key), key }, v;
	int rc;

	if (sub_len > UINT16_MAX)
		return -EINVAL;
	rc = begin(store);
	if (rc)
		return rc;
	put_be64(key, store->next_seq);
	v.mv_size = HEADER_LEN + sub_len + payload_len;
	rc = make_room(store, v.mv_size + 64);
	if (rc == -ENOSPC) {
		mh_log_err(STORE, "a %zu-byte record is larger than half of store.max_bytes; not stored",
			v.mv_size);
		return rc;
	}
	if (rc)
		return abort_pending(store, rc);
	rc = mdb_put(store->txn, store->outbox, &k, &v, MDB_APPEND | MDB_RESERVE);
	if (rc)
		return abort_pending(store, rc);
	uint8_t *p = v.mv_data;
	p[0] = RECORD_FORMAT;
	p[1] = (uint8_t)type;
	p[2] = (uint8_t)(sub_len >> 8);
	p[3] = (uint8_t)sub_len;
	put_be64(p + 4, (uint64_t)created_ms);
	memcpy(p + HEADER_LEN, subtopic, sub_len);
	memcpy(p + HEADER_LEN + sub_len, payload, payload_len);
	store->next_seq++;
	store->appends_pending++;
	return 0;
}

int mh_store_ack(struct mh_store *store, uint64_t seq)
{
	uint8_t key[8];
	MDB_val k = { sizeof(key), key };
	int rc = begin(store);

	if (rc)
		return rc;
	put_be64(key, seq);
	rc = mdb_del(store->txn, store->outbox, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return 0; /* a duplicate acknowledgement */
	if (rc)
		return abort_pending(store, rc);
	return 0;
}

int mh_store_commit(struct mh_store *store)
{
	uint8_t next[8];
	int rc;

	if (!store->txn)
		return 0;
	if (store->next_seq != store->committed_next_seq) {
		put_be64(next, store->next_seq);
		rc = meta_put(store->txn, store->meta, "next_seq", next, sizeof(next));
		if (rc)
			return abort_pending(store, rc);
	}
	/*
	 * Only new records need the fsync. A transaction of acknowledgements
	 * alone is committed without it: a power cut can undo such deletions,
	 * which re-sends those records (a duplicate), never loses one.
	 */
	bool sync = store->appends_pending > 0;
	if (!sync)
		mdb_env_set_flags(store->env, MDB_NOSYNC, 1);
	rc = mdb_txn_commit(store->txn);
	if (!sync)
		mdb_env_set_flags(store->env, MDB_NOSYNC, 0);
	store->txn = NULL;
	if (rc) {
		store->next_seq = store->committed_next_seq;
		store->committed_drops.lost += store->appends_pending;
		store->appends_pending = 0;
		memset(&store->pending_drops, 0, sizeof(store->pending_drops));
		mh_log_err(STORE, "commit failed, pending records discarded: %s", mdb_strerror(rc));
		return lmdb_error(rc);
	}
	store->committed_next_seq = store->next_seq;
	store->appends_pending = 0;
	struct mh_store_drops *d = &store->committed_drops, *p = &store->pending_drops;
	for (size_t i = 0; i < sizeof(d->by_type) / sizeof(d->by_type[0]); i++)
		d->by_type[i] += p->by_type[i];
	if (p->first_seq && (!d->first_seq || p->first_seq < d->first_seq))
		d->first_seq = p->first_seq;
	if (p->last_seq > d->last_seq)
		d->last_seq = p->last_seq;
	memset(p, 0, sizeof(*p));
	return 0;
}

bool mh_store_take_drops(struct mh_store *store, struct mh_store_drops *out)
{
	static const struct mh_store_drops none;

	*out = store->committed_drops;
	store->committed_drops = none;
	return memcmp(out, &none, sizeof(none)) != 0;
}

static int decode_record(const MDB_val *k, const MDB_val *v, struct mh_record *rec)
{
	const uint8_t *p = v->mv_data;
	size_t sub_len;

	if (k->mv_size != 8 || v->mv_size < HEADER_LEN || p[0] != RECORD_FORMAT)
		return -EILSEQ;
	sub_len = (size_t)p[2] << 8 | p[3];
	if (HEADER_LEN + sub_len > v->mv_size)
		return -EILSEQ;
	rec->seq = get_be64(k->mv_data);
	rec->type = p[1];
	rec->created_ms = (int64_t)get_be64(p + 4);
	rec->subtopic = (const char *)p + HEADER_LEN;
	rec->subtopic_len = sub_len;
	rec->payload = (const char *)p + HEADER_LEN + sub_len;
	rec->payload_len = v->mv_size - HEADER_LEN - sub_len;
	return 0;
}

int mh_store_scan(struct mh_store *store, uint64_t after, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	uint8_t key[8];
	MDB_val k = { sizeof(key), key }, v;
	int rc, n = 0;

	rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return lmdb_error(rc);
	rc = mdb_cursor_open(txn, store->outbox, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return lmdb_error(rc);
	}
	put_be64(key, after + 1);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && (size_t)n < max;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct mh_record rec;
		if (decode_record(&k, &v, &rec) < 0) {
			mh_log_err(STORE, "skipping a malformed record");
			continue;
		}
		n++;
		if (fn(ud, &rec))
			break;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return n;
}

int mh_store_stats(struct mh_store *store, struct mh_store_stats *st)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_stat ms;
	MDB_val k, v;
	int rc;

	memset(st, 0, sizeof(*st));
	st->max_bytes = store->max_bytes;
	rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return lmdb_error(rc);
	rc = mdb_stat(txn, store->outbox, &ms);
	if (!rc)
		rc = mdb_cursor_open(txn, store->outbox, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return lmdb_error(rc);
	}
	st->records = ms.ms_entries;
	if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) {
		struct mh_record rec;
		if (decode_record(&k, &v, &rec) == 0) {
			st->oldest_seq = rec.seq;
			st->oldest_ms = rec.created_ms;
		}
	}
	mdb_cursor_close(cur);
	st->used_bytes = used_bytes(store, txn);
	mdb_txn_abort(txn);
	return 0;
}
