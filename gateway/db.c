// SPDX-License-Identifier: MIT
#include "db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define SCHEMA_VERSION 1
#define MAX_WATCHERS 8
/* LMDB's lock file, reserved before LMDB maps it: touching an unbacked page of a map is SIGBUS. */
#define LOCK_FILE_BYTES (64u << 10)

static const char MAGIC[] = "meterhub-outbox";

struct watcher {
	void (*fn)(void *ud, int rc);
	void *ud;
};

struct mh_db {
	MDB_env *env;
	MDB_dbi meta;
	MDB_txn *txn;   /* this turn's write transaction, or NULL */
	MDB_txn *child; /* the unit of work in progress, or NULL */
	uint64_t next_seq, committed_next_seq, unit_next_seq;
	uint64_t row_next_seq; /* what the meta table's next_seq row says */
	bool seq_keyed;        /* the outbox keeps the newest seq as a key (mh_db_seq_keyed()) */
	bool save_seq;         /* the turn may delete the newest record: write the row */
	bool want_sync;
	unsigned commit_window_ms;
	bool held;          /* the turn's writes wait for a group commit (mh_db_hold()) */
	int64_t held_since; /* since when, monotonic ms */
	enum mh_db_last_stop last_stop;
	bool ready; /* opened whole: ours to write */
	int lock_fd;
	struct watcher watchers[MAX_WATCHERS];
	size_t n_watchers;
	void (*before_commit)(void *ud); /* mh_db_before_commit() */
	void *before_commit_ud;
	char *path;
};

int mh_db_error(int rc)
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
	case MDB_BAD_TXN:
		return -EIO;
	default:
		return rc > 0 ? -rc : -EIO;
	}
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

int mh_db_map_size(uint64_t data_bytes, uint64_t addressable, uint64_t *map_bytes)
{
	/* Headroom for LMDB's branch and free-list pages and the copy-on-write of a turn. */
	uint64_t map = data_bytes + data_bytes / 4 + (4u << 20);
	long page = sysconf(_SC_PAGESIZE);

	if (page > 0)
		map = (map + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
	if (map > addressable)
		return -EFBIG;
	*map_bytes = map;
	return 0;
}

/* Bytes this process may map in one piece: a 32-bit board has 3 GiB in all. */
static uint64_t addressable_bytes(void)
{
	return sizeof(size_t) < 8 ? (2ull << 30) : (1ull << 46);
}

/*
 * One gateway per store: a second one would hand out the same seqs. The
 * lock is held for the life of the process and dies with it, SIGKILL
 * included; the file holds the holder's pid for the message.
 */
static int take_lock(struct mh_db *db)
{
	char file[4096], pid[32] = "";
	ssize_t n;
	int fd;

	snprintf(file, sizeof(file), "%s/meterhub.lock", db->path);
	fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		int rc = -errno;
		mh_log_err(STORE, "cannot create %s: %s", file, strerror(errno));
		return rc;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (rc == -EBUSY)
			mh_log_err(STORE, "store %s is in use by another meterhub (pid %s); "
					  "refusing to start a second one on it",
				db->path, *pid ? pid : "unknown");
		else
			mh_log_err(STORE, "cannot lock %s: %s", file, strerror(-rc));
		close(fd);
		return rc;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		mh_log_warn(STORE, "cannot write the pid into %s: %s", file, strerror(errno));
	db->lock_fd = fd;
	return 0;
}

/*
 * Give @file @bytes of real disk space now, so that a disk filled later
 * by someone else cannot take it. Returns 0, or -ENOSPC and friends.
 */
static int reserve(const char *file, uint64_t bytes)
{
	int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0640), rc;

	if (fd < 0)
		return -errno;
	rc = posix_fallocate(fd, 0, (off_t)bytes);
	close(fd);
	if (rc == EOPNOTSUPP || rc == EINVAL) {
		/* Some filesystems cannot reserve; the store still works, unprotected. */
		mh_log_warn(STORE, "%s: this filesystem cannot reserve space (%s); a full disk "
				   "may stop the store",
			file, strerror(rc));
		return 0;
	}
	return -rc;
}

static void log_reserve_failure(const struct mh_db *db, const char *what, uint64_t bytes, int rc)
{
	mh_log_err(STORE, "cannot reserve %.1f MiB for the %s in %s: %s", (double)bytes / 1048576.0,
		what, db->path, strerror(-rc));
}

/*
 * "running" is in the meta table from the start until a clean close: found
 * at open, the last process never closed (killed, crashed, power cut).
 */
static int mark_running(struct mh_db *db, MDB_txn *txn, enum mh_db_last_stop last)
{
	db->last_stop = last;
	return meta_put(txn, db->meta, "running", "1", 1);
}

/*
 * The meta table, open in db->meta, is a meterhub store's of this schema:
 * 0, with db->next_seq from its counter row, or a negative errno and why.
 */
static int check_meta(struct mh_db *db, MDB_txn *txn, char *why, size_t why_len)
{
	MDB_val v;
	int rc = meta_get(txn, db->meta, "magic", &v);

	if (rc || v.mv_size != sizeof(MAGIC) - 1 || memcmp(v.mv_data, MAGIC, v.mv_size)) {
		mh_explain(why, why_len, "%s is not a meterhub store", db->path);
		return -EILSEQ;
	}
	rc = meta_get(txn, db->meta, "schema", &v);
	if (rc || v.mv_size != 1) {
		mh_explain(why, why_len, "%s: store has no schema version", db->path);
		return -EILSEQ;
	}
	if (*(uint8_t *)v.mv_data != SCHEMA_VERSION) {
		mh_explain(why, why_len, "%s: store schema %u, this meterhub reads %u", db->path,
			*(uint8_t *)v.mv_data, SCHEMA_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (meta_get(txn, db->meta, "next_seq", &v) == 0 && v.mv_size == 8)
		db->next_seq = mh_db_get_be64(v.mv_data);
	return 0;
}

/*
 * A database whose main table holds named tables but no meta with our
 * magic is someone else's (or garbage): refuse it rather than write into
 * it. An empty one is new: write the magic.
 */
static int check_schema(struct mh_db *db, MDB_txn *txn)
{
	MDB_dbi main_dbi;
	MDB_stat st;
	MDB_val v;
	char why[PATH_MAX + 96];
	int rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);

	if (!rc)
		rc = mdb_stat(txn, main_dbi, &st);
	if (rc)
		return mh_db_error(rc);
	rc = mdb_dbi_open(txn, "meta", 0, &db->meta);
	if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
		if (st.ms_entries > 0) {
			mh_log_err(STORE, "%s holds an LMDB database that is not a meterhub store; "
					  "refusing to touch it",
				db->path);
			return -EILSEQ;
		}
		uint8_t ver = SCHEMA_VERSION;
		rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &db->meta);
		if (!rc)
			rc = meta_put(txn, db->meta, "magic", MAGIC, sizeof(MAGIC) - 1);
		if (!rc)
			rc = meta_put(txn, db->meta, "schema", &ver, 1);
		if (!rc)
			rc = mark_running(db, txn, MH_DB_NEW);
		return mh_db_error(rc);
	}
	if (rc)
		return mh_db_error(rc);
	rc = check_meta(db, txn, why, sizeof(why));
	if (rc) {
		mh_log_err(STORE, "%s; refusing to touch it", why);
		return rc;
	}
	db->row_next_seq = db->next_seq;
	return mh_db_error(mark_running(db, txn,
		meta_get(txn, db->meta, "running", &v) == 0 ? MH_DB_UNCLEAN : MH_DB_CLEAN));
}

static int open_env(struct mh_db *db, uint64_t map)
{
	char file[4096];
	MDB_txn *txn = NULL;
	int rc, dead;

	snprintf(file, sizeof(file), "%s/lock.mdb", db->path);
	rc = reserve(file, LOCK_FILE_BYTES);
	if (rc) {
		log_reserve_failure(db, "lock file", LOCK_FILE_BYTES, rc);
		return rc;
	}
	rc = mh_db_error(mdb_env_create(&db->env));
	if (rc)
		return rc;
	mdb_env_set_maxdbs(db->env, 16);
	mdb_env_set_mapsize(db->env, (size_t)map);
	rc = mdb_env_open(db->env, db->path, MDB_NOTLS, 0640);
	if (rc) {
		mh_log_err(STORE, "cannot open the store in %s: %s", db->path, mdb_strerror(rc));
		return mh_db_error(rc);
	}
	/* Readers left by a killed process would pin pages forever. */
	mdb_reader_check(db->env, &dead);
	if (dead)
		mh_log_notice(STORE, "cleared %d stale reader slots", dead);

	rc = mh_db_error(mdb_txn_begin(db->env, NULL, 0, &txn));
	if (!rc)
		rc = check_schema(db, txn);
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	rc = mdb_txn_commit(txn);
	if (rc) {
		mh_log_err(STORE, "cannot initialise the store in %s: %s", db->path,
			mdb_strerror(rc));
		return mh_db_error(rc);
	}
	/* Only once the database is known to be ours does its file grow. */
	snprintf(file, sizeof(file), "%s/data.mdb", db->path);
	rc = reserve(file, map);
	if (rc)
		log_reserve_failure(db, "store", map, rc);
	return rc;
}

int mh_db_open(const char *path, uint64_t data_bytes, struct mh_db **out)
{
	struct mh_db *db = calloc(1, sizeof(*db));
	uint64_t map;
	struct stat st;
	int rc;

	if (!db)
		return -ENOMEM;
	db->lock_fd = -1;
	db->next_seq = db->row_next_seq = 1;
	db->path = strdup(path);
	if (!db->path) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = mh_db_map_size(data_bytes, addressable_bytes(), &map);
	if (rc) {
		mh_log_err(STORE, "store.max_bytes %" PRIu64 " needs a %" PRIu64
				  "-byte map, more than this %zu-bit system can address",
			data_bytes, data_bytes + data_bytes / 4, sizeof(size_t) * 8);
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
	rc = take_lock(db);
	if (!rc)
		rc = open_env(db, map);
	if (rc)
		goto fail;
	db->committed_next_seq = db->next_seq;
	db->ready = true;
	*out = db;
	return 0;

fail:
	mh_db_close(db);
	return rc;
}

void mh_db_close(struct mh_db *db)
{
	if (!db)
		return;
	if (db->env) {
		MDB_txn *txn;
		MDB_val k = { 7, "running" };
		/* The stop is clean: the next start says so (a store refused at open is left alone). */
		if (db->ready && mh_db_begin(db, &txn) == 0) {
			int rc = mdb_del(txn, db->meta, &k, NULL);
			mh_db_end(db, txn, rc == 0);
		}
		/* The modules that watched commits are gone by now. */
		db->n_watchers = 0;
		db->before_commit = NULL;
		mh_db_want_sync(db);
		mh_db_commit(db);
		mdb_env_close(db->env);
	}
	if (db->lock_fd >= 0)
		close(db->lock_fd);
	free(db->path);
	free(db);
}

enum mh_db_last_stop mh_db_last_stop(const struct mh_db *db)
{
	return db->last_stop;
}

const char *mh_db_path(const struct mh_db *db)
{
	return db->path;
}

int mh_db_table(struct mh_db *db, const char *name, MDB_dbi *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(db->env, NULL, 0, &txn);

	if (rc)
		return mh_db_error(rc);
	rc = mdb_dbi_open(txn, name, MDB_CREATE, out);
	if (rc) {
		mdb_txn_abort(txn);
		mh_log_err(STORE, "cannot open table %s in %s: %s", name, db->path,
			mdb_strerror(rc));
		return mh_db_error(rc);
	}
	return mh_db_error(mdb_txn_commit(txn));
}

int mh_db_begin(struct mh_db *db, MDB_txn **txn)
{
	int rc;

	mh_require(!db->child);
	if (!db->txn) {
		rc = mdb_txn_begin(db->env, NULL, 0, &db->txn);
		if (rc) {
			db->txn = NULL;
			mh_log_err(STORE, "cannot begin a write: %s", mdb_strerror(rc));
			return mh_db_error(rc);
		}
	}
	rc = mdb_txn_begin(db->env, db->txn, 0, &db->child);
	if (rc) {
		db->child = NULL;
		mh_log_err(STORE, "cannot begin a unit of work: %s", mdb_strerror(rc));
		return mh_db_error(rc);
	}
	db->unit_next_seq = db->next_seq;
	*txn = db->child;
	return 0;
}

int mh_db_end(struct mh_db *db, MDB_txn *txn, bool keep)
{
	int rc = 0;

	mh_require(txn && txn == db->child);
	db->child = NULL;
	if (keep) {
		rc = mdb_txn_commit(txn);
		if (rc)
			mh_log_err(STORE, "a unit of work could not be kept: %s", mdb_strerror(rc));
	} else {
		mdb_txn_abort(txn);
	}
	if (!keep || rc)
		db->next_seq = db->unit_next_seq;
	return mh_db_error(rc);
}

uint64_t mh_db_seq_take(struct mh_db *db)
{
	mh_require(db->child);
	return db->next_seq++;
}

uint64_t mh_db_seq_peek(const struct mh_db *db)
{
	return db->next_seq;
}

void mh_db_seq_floor(struct mh_db *db, uint64_t next)
{
	if (next > db->next_seq)
		db->next_seq = db->committed_next_seq = next;
}

bool mh_db_pending(const struct mh_db *db)
{
	return db->txn != NULL;
}

void mh_db_want_sync(struct mh_db *db)
{
	db->want_sync = true;
}

int mh_db_watch(struct mh_db *db, void (*fn)(void *ud, int rc), void *ud)
{
	if (db->n_watchers == MAX_WATCHERS)
		return -ENOSPC;
	db->watchers[db->n_watchers++] = (struct watcher){ fn, ud };
	return 0;
}

void mh_db_seq_keyed(struct mh_db *db)
{
	db->seq_keyed = true;
}

void mh_db_seq_save(struct mh_db *db)
{
	db->save_seq = true;
}

void mh_db_set_commit_window(struct mh_db *db, unsigned window_ms)
{
	db->commit_window_ms = window_ms;
}

int64_t mh_db_hold(struct mh_db *db, int64_t now_ms, bool more_soon)
{
	int64_t due;

	if (!db->txn || !db->commit_window_ms || !more_soon || db->want_sync)
		return 0;
	if (!db->held) {
		db->held = true;
		db->held_since = now_ms;
	}
	due = db->held_since + db->commit_window_ms - now_ms;
	return due > 0 ? due : 0;
}

bool mh_db_held(const struct mh_db *db)
{
	return db->txn && db->held;
}

void mh_db_before_commit(struct mh_db *db, void (*fn)(void *ud), void *ud)
{
	db->before_commit = fn;
	db->before_commit_ud = ud;
}

int mh_db_commit(struct mh_db *db)
{
	bool sync, row;
	uint8_t next[8];
	int rc = 0;

	mh_require(!db->child);
	db->held = false;
	if (!db->txn) {
		db->save_seq = false;
		return 0;
	}
	if (db->before_commit)
		db->before_commit(db->before_commit_ud);
	sync = db->want_sync || db->next_seq != db->committed_next_seq;
	row = (db->save_seq || !db->seq_keyed) && db->row_next_seq != db->next_seq;
	db->save_seq = false;
	/*
	 * The counter's row is written only when the records cannot tell it.
	 * Once the outbox keeps the newest seq taken as its newest record's key
	 * and floors the counter from it at open (mh_db_seq_keyed()), the row
	 * is needed only when that record may be gone: the outbox says so
	 * (mh_db_seq_save()) in the turn that deletes it. A commit of appended
	 * records, the common one, thus leaves the meta table's page alone.
	 */
	if (row) {
		mh_db_put_be64(next, db->next_seq);
		rc = meta_put(db->txn, db->meta, "next_seq", next, sizeof(next));
	}
	if (rc) {
		mdb_txn_abort(db->txn);
	} else {
		if (!sync)
			mdb_env_set_flags(db->env, MDB_NOMETASYNC, 1);
		rc = mdb_txn_commit(db->txn);
		if (!sync)
			mdb_env_set_flags(db->env, MDB_NOMETASYNC, 0);
	}
	db->txn = NULL;
	db->want_sync = false;
	if (rc) {
		mh_log_err(STORE, "commit failed, this turn's writes are undone: %s",
			mdb_strerror(rc));
		db->next_seq = db->committed_next_seq;
	} else {
		db->committed_next_seq = db->next_seq;
		if (row)
			db->row_next_seq = db->next_seq;
	}
	for (size_t i = 0; i < db->n_watchers; i++)
		db->watchers[i].fn(db->watchers[i].ud, mh_db_error(rc));
	return mh_db_error(rc);
}

size_t mh_db_pack_zeros(const void *in, size_t len, uint8_t *out)
{
	const uint8_t *p = in;
	size_t n = 0;

	for (size_t i = 0; i < len;) {
		size_t run = 0;
		if (p[i]) {
			out[n++] = p[i++];
			continue;
		}
		while (i < len && !p[i] && run < 255) {
			i++;
			run++;
		}
		out[n++] = 0;
		out[n++] = (uint8_t)run;
	}
	return n;
}

bool mh_db_unpack_zeros(const uint8_t *in, size_t in_len, void *out, size_t want)
{
	uint8_t *o = out;
	size_t n = 0;

	for (size_t i = 0; i < in_len;) {
		if (in[i]) {
			if (n == want)
				return false;
			o[n++] = in[i++];
			continue;
		}
		if (i + 1 == in_len || !in[i + 1] || in[i + 1] > want - n)
			return false;
		memset(o + n, 0, in[i + 1]);
		n += in[i + 1];
		i += 2;
	}
	return n == want;
}

uint64_t mh_db_table_bytes(MDB_txn *txn, MDB_dbi dbi)
{
	MDB_stat st;

	if (mdb_stat(txn, dbi, &st))
		return 0;
	return (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) *
	       st.ms_psize;
}

int mh_db_read(struct mh_db *db, MDB_txn **txn)
{
	return mh_db_error(mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn));
}

void mh_db_read_end(MDB_txn *txn)
{
	mdb_txn_abort(txn);
}

/* ---- reading beside the daemon --------------------------------------- */

/* The read-only twin of check_schema(): the same refusals, nothing written. */
static int check_schema_readonly(struct mh_db *db, MDB_txn *txn, char *why, size_t why_len)
{
	MDB_dbi main_dbi;
	MDB_stat st;
	int rc = mdb_dbi_open(txn, "meta", 0, &db->meta);

	if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
		/* A daemon opening a new store has not committed its first transaction yet. */
		if (mdb_dbi_open(txn, NULL, 0, &main_dbi) == 0 &&
			mdb_stat(txn, main_dbi, &st) == 0 && st.ms_entries == 0) {
			mh_explain(why, why_len, "the store in %s is empty: a meterhub is creating it",
				db->path);
			return -ENOENT;
		}
		mh_explain(why, why_len, "%s holds an LMDB database that is not a meterhub store",
			db->path);
		return -EILSEQ;
	}
	if (rc) {
		mh_explain(why, why_len, "%s: %s", db->path, mdb_strerror(rc));
		return mh_db_error(rc);
	}
	return check_meta(db, txn, why, why_len);
}

/* A file of the store must be there before LMDB opens it: for lock.mdb it would create one. */
static int store_file_exists(const struct mh_db *db, const char *name, char *why, size_t why_len)
{
	char file[4096];
	struct stat st;

	snprintf(file, sizeof(file), "%s/%s", db->path, name);
	if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
		return 0;
	if (errno == EACCES) {
		mh_explain(why, why_len, "%s: %s", file, strerror(errno));
		return -EACCES;
	}
	mh_explain(why, why_len,
		"%s holds no meterhub store (no %s); has meterhub run with this store.path?",
		db->path, name);
	return -ENOENT;
}

int mh_db_open_readonly(const char *path, struct mh_db **out, char *why, size_t why_len)
{
	struct mh_db *db = calloc(1, sizeof(*db));
	MDB_txn *txn = NULL;
	struct stat st;
	int rc, dead;

	if (!db)
		return -ENOMEM;
	db->lock_fd = -1;
	db->next_seq = 1;
	db->path = strdup(path);
	if (!db->path) {
		rc = -ENOMEM;
		goto fail;
	}
	if (stat(path, &st) < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			mh_explain(why, why_len, "%s does not exist: no meterhub store there", path);
		else
			mh_explain(why, why_len, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = -ENOTDIR;
		mh_explain(why, why_len, "%s is not a directory; a store is one", path);
		goto fail;
	}
	rc = store_file_exists(db, "data.mdb", why, why_len);
	if (!rc)
		rc = store_file_exists(db, "lock.mdb", why, why_len);
	if (rc)
		goto fail;
	rc = mh_db_error(mdb_env_create(&db->env));
	if (rc)
		goto fail;
	/*
	 * The daemon's flags, read-only. No map size: LMDB takes the one the
	 * daemon recorded, and a read-only map never grows the file.
	 */
	mdb_env_set_maxdbs(db->env, 16);
	rc = mdb_env_open(db->env, path, MDB_RDONLY | MDB_NOTLS, 0640);
	if (rc) {
		if (rc == EACCES)
			mh_explain(why, why_len,
				"cannot open the store in %s: %s (LMDB's readers write their slot "
				"into lock.mdb: run as the daemon's user or root)",
				path, mdb_strerror(rc));
		else
			mh_explain(why, why_len, "cannot open the store in %s: %s", path,
				mdb_strerror(rc));
		rc = mh_db_error(rc);
		goto fail;
	}
	/* Slots of readers that died inside a transaction (SIGKILL) would pin pages forever. */
	mdb_reader_check(db->env, &dead);

	rc = mh_db_error(mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn));
	if (rc) {
		mh_explain(why, why_len, "cannot read the store in %s: %s", path, strerror(-rc));
		goto fail;
	}
	rc = check_schema_readonly(db, txn, why, why_len);
	if (rc) {
		mdb_txn_abort(txn);
		goto fail;
	}
	/* Committing a read transaction keeps the table handles it opened. */
	rc = mdb_txn_commit(txn);
	if (rc) {
		mh_explain(why, why_len, "cannot read the store in %s: %s", path, mdb_strerror(rc));
		rc = mh_db_error(rc);
		goto fail;
	}
	db->committed_next_seq = db->next_seq;
	*out = db;
	return 0;

fail:
	mh_db_close(db);
	return rc;
}

int mh_db_table_find(struct mh_db *db, const char *name, MDB_dbi *out)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);

	if (rc)
		return mh_db_error(rc);
	rc = mdb_dbi_open(txn, name, 0, out);
	if (rc) {
		mdb_txn_abort(txn);
		return rc == MDB_INCOMPATIBLE ? -EILSEQ : mh_db_error(rc);
	}
	return mh_db_error(mdb_txn_commit(txn));
}

int mh_db_read_next_seq(struct mh_db *db, uint64_t *next)
{
	MDB_txn *txn;
	MDB_val v;
	int rc = mh_db_read(db, &txn);

	if (rc)
		return rc;
	*next = 1;
	rc = meta_get(txn, db->meta, "next_seq", &v);
	if (rc == 0 && v.mv_size == 8)
		*next = mh_db_get_be64(v.mv_data);
	mh_db_read_end(txn);
	return rc == MDB_NOTFOUND ? 0 : mh_db_error(rc);
}

int mh_db_usage(struct mh_db *db, struct mh_db_usage *out)
{
	MDB_envinfo info;
	MDB_stat st;
	int rc = mdb_env_info(db->env, &info);

	if (!rc)
		rc = mdb_env_stat(db->env, &st);
	if (rc)
		return mh_db_error(rc);
	out->map_bytes = info.me_mapsize;
	out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	return 0;
}

/*
 * Whether @pid is a meterhub with @lock (dev, ino) open. Only a process
 * named meterhub counts; when its descriptors cannot be listed (another
 * user's process), the name alone decides.
 */
static bool holds_lock(long pid, const struct stat *lock)
{
	char file[64], comm[32] = "", link[sizeof(file) + 256];
	struct dirent *de;
	struct stat st;
	bool found = false;
	DIR *dir;
	FILE *f;

	snprintf(file, sizeof(file), "/proc/%ld/comm", pid);
	f = fopen(file, "re");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	if (strcmp(comm, "meterhub"))
		return false;
	snprintf(file, sizeof(file), "/proc/%ld/fd", pid);
	dir = opendir(file);
	if (!dir)
		return true;
	while (!found && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", file, de->d_name);
		found = stat(link, &st) == 0 && st.st_dev == lock->st_dev &&
			st.st_ino == lock->st_ino;
	}
	closedir(dir);
	return found;
}

int mh_db_holder(const char *path, long *pid)
{
	char file[4096], text[32] = "";
	struct stat st;
	long named = 0;
	ssize_t n;
	int fd, rc;

	*pid = 0;
	snprintf(file, sizeof(file), "%s/meterhub.lock", path);
	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	named = strtol(text, NULL, 10);
	if (named > 0 && fstat(fd, &st) == 0 && holds_lock(named, &st)) {
		close(fd);
		*pid = named;
		return 1;
	}
	/*
	 * Nobody the file names has it: ask the lock. Shared and released at
	 * once, so it never holds off another reader; a daemon starting in that
	 * very instant would refuse to (and systemd starts it again).
	 */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		flock(fd, LOCK_UN);
		rc = 0;
	} else if (errno == EWOULDBLOCK) {
		rc = 1;
	} else {
		rc = -errno;
	}
	close(fd);
	return rc;
}
