/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The database under the gateway's tables: one LMDB environment in
 * store.path, owned by this process alone, with its space reserved on disk
 * when it opens. Only the loop thread calls these.
 *
 * Writes of one loop turn collect in one write transaction, made durable
 * by mh_db_commit() (one fsync for the turn). A turn whose writes may wait
 * (the records of readings, which nobody has seen yet) is held open with
 * mh_db_hold() and later turns join it, so that a sweep of the meters costs
 * a few commits rather than one per reading: flash wears by the page, and
 * every commit rewrites a handful of pages however little it carries.
 * Each unit of work inside a turn (a record, or a module's table row
 * together with the records it produces) runs in a child transaction from
 * mh_db_begin(): a unit that fails is undone alone and never takes the
 * rest of the turn with it.
 *
 * The seq allocator lives here, so every table that appends records to the
 * outbox shares one gateway-wide counter that never repeats.
 */

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mh_db;

/*
 * The LMDB map for @data_bytes of tables: the tables, plus headroom for
 * LMDB's own pages and the transaction in progress. Fails with -EFBIG when
 * that does not fit in @addressable bytes (a 32-bit board cannot map 4 GiB;
 * pass SIZE_MAX/2 or less). Returns 0 and *@map_bytes.
 */
int mh_db_map_size(uint64_t data_bytes, uint64_t addressable, uint64_t *map_bytes);

/*
 * Open (creating if needed) the database in directory @path, for
 * @data_bytes of tables. Refuses, leaving everything untouched:
 * a directory another process holds (-EBUSY, the holder's pid is logged),
 * a map this platform cannot address (-EFBIG), a disk that cannot reserve
 * the map (-ENOSPC), a foreign or garbage LMDB (-EILSEQ), a newer schema
 * (-EPROTONOSUPPORT), a path that is not a directory (-ENOTDIR). Returns 0
 * and *@out, or a negative errno; every refusal is logged with its reason.
 */
int mh_db_open(const char *path, uint64_t data_bytes, struct mh_db **out);

/*
 * Mark the stop clean, commit what is pending (telling no watcher: their
 * modules are freed first), release the lock, close; NULL is a no-op.
 */
void mh_db_close(struct mh_db *db);

/* Open (creating) the table @name; at start-up, before any write. Returns 0 or -errno. */
int mh_db_table(struct mh_db *db, const char *name, MDB_dbi *out);

/*
 * Begin a unit of work: a child of this turn's write transaction (begun on
 * first use). Returns 0 and *@txn, or a negative errno.
 */
int mh_db_begin(struct mh_db *db, MDB_txn **txn);

/*
 * End the unit of work @txn: keep its writes in the turn (@keep) or undo
 * them, seqs it took included. Returns 0, or a negative errno when keeping
 * failed (then it was undone).
 */
int mh_db_end(struct mh_db *db, MDB_txn *txn, bool keep);

/*
 * Take the next seq inside the unit of work in progress. Seqs increase by
 * one and are never given twice, also across restarts and undone units.
 */
uint64_t mh_db_seq_take(struct mh_db *db);

/* The seq the next mh_db_seq_take() returns. */
uint64_t mh_db_seq_peek(const struct mh_db *db);

/* Whether the turn has writes not yet committed. */
bool mh_db_pending(const struct mh_db *db);

/* Make the next commit durable even if it takes no seq (a journal entry, say). */
void mh_db_want_sync(struct mh_db *db);

/*
 * Every seq taken is the key of a record the caller keeps (the outbox),
 * and the caller raises the counter from its newest record at open
 * (mh_db_seq_floor()). From now on a commit that took seqs leaves the
 * counter's row in the meta table alone (the newest record's key tells the
 * counter), and the row is written only by a commit that may have deleted
 * that record, as mh_db_seq_save() says.
 */
void mh_db_seq_keyed(struct mh_db *db);

/* The turn may delete the caller's newest record (see mh_db_seq_keyed()). */
void mh_db_seq_save(struct mh_db *db);

/*
 * Group commits: how long (store.commit_window) the writes of a turn that
 * mh_db_hold() holds may wait for others before they are committed. 0
 * holds nothing: every turn is committed as it ends.
 */
void mh_db_set_commit_window(struct mh_db *db, unsigned window_ms);

/*
 * End a turn whose writes may wait: the records of readings, which nobody
 * can have seen (a record is published only once committed). They stay in
 * the write transaction, with whatever later turns add to it, until the
 * first of them is the commit window old: a power cut loses at most that
 * window of unseen records, never one that was published or acknowledged,
 * nor a journal entry (those commit at once with mh_db_commit(), and take
 * the held writes along). @more_soon says whether more such writes are
 * expected shortly (meters still being read); without them, waiting buys
 * nothing and the turn is due now. @now_ms is monotonic. Returns 0 when the
 * turn is to be committed now (call mh_db_commit()), else how many ms from
 * @now_ms it may still wait: the caller commits then, or earlier.
 */
int64_t mh_db_hold(struct mh_db *db, int64_t now_ms, bool more_soon);

/* Whether the turn's writes are held for a group commit (mh_db_hold()). */
bool mh_db_held(const struct mh_db *db);

/*
 * Commit the turn, writes held by mh_db_hold() included. A turn that took
 * seqs (new records nobody has seen) or asked for it is synced: data and
 * meta page reach the disk before this returns. Any other turn (deletions
 * of records the broker acknowledged) is committed with MDB_NOMETASYNC: a
 * power cut may undo it, which re-sends those records, and can never
 * corrupt the database (MDB_NOSYNC could). On failure the whole turn is
 * undone. Returns 0 or a negative errno; the watchers hear the result
 * either way.
 */
int mh_db_commit(struct mh_db *db);

/*
 * Call @fn(@ud) as every commit of a turn that has writes begins: the last
 * units of work that cost nothing to carry (deletions, which any commit can
 * take along) join it. One caller; NULL @fn removes it.
 */
void mh_db_before_commit(struct mh_db *db, void (*fn)(void *ud), void *ud);

/*
 * Call @fn(@ud, rc) after every commit of a turn that had writes, with its
 * result: a module that keeps state beside its tables confirms or undoes
 * it. Returns 0, or -ENOSPC when too many watch.
 */
int mh_db_watch(struct mh_db *db, void (*fn)(void *ud, int rc), void *ud);

/* Raise the seq counter to at least @next (a table found a higher seq at open). */
void mh_db_seq_floor(struct mh_db *db, uint64_t next);

/* Bytes the pages of @dbi take as @txn sees them. */
uint64_t mh_db_table_bytes(MDB_txn *txn, MDB_dbi dbi);

/* A read-only snapshot; end it with mh_db_read_end(). Returns 0 or -errno. */
int mh_db_read(struct mh_db *db, MDB_txn **txn);
void mh_db_read_end(MDB_txn *txn);

/* Keys are 8-byte big-endian numbers, so LMDB's byte order is seq order. */
static inline void mh_db_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t mh_db_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * Rows that are rewritten often and are mostly zero bytes (a state struct
 * with room for registers a meter lacks) are stored packed: a commit
 * rewrites every page a row lies on, so a smaller row means fewer pages
 * written. A zero byte stands for a run of zeros, its length (1 to 255) in
 * the byte after it; other bytes stand for themselves. mh_db_pack_zeros()
 * writes at most mh_db_packed_max(@len) bytes to @out and returns how many.
 * mh_db_unpack_zeros() fills exactly @want bytes of @out from @in_len bytes
 * of @in, or returns false (a malformed row, or one of another size).
 */
#define mh_db_packed_max(len) (2 * (len))
size_t mh_db_pack_zeros(const void *in, size_t len, uint8_t *out);
bool mh_db_unpack_zeros(const uint8_t *in, size_t in_len, void *out, size_t want);

/* LMDB's codes as negative errnos (the one place they are translated). */
int mh_db_error(int rc);

/* How the process that had the database before this one ended. */
enum mh_db_last_stop {
	MH_DB_NEW,     /* nobody: the store was created now */
	MH_DB_CLEAN,   /* it closed the database */
	MH_DB_UNCLEAN, /* it never did: killed, crashed, or the power went */
};
enum mh_db_last_stop mh_db_last_stop(const struct mh_db *db);

/* The directory the database lives in. */
const char *mh_db_path(const struct mh_db *db);

/* ---- reading beside the daemon (meterhub-ctl) ---------------------------- */

/*
 * Open the database in @path for reading only, beside a daemon that may be
 * writing it. Takes no meterhub.lock, creates no file or directory, writes
 * nothing into the data file and grows neither the lock file nor the map:
 * the environment is opened MDB_RDONLY with LMDB's reader table, so each
 * read transaction takes a slot in lock.mdb and gives it back, as any LMDB
 * reader does (MDB_NOLOCK would read pages the writer is reusing). Dead
 * readers' slots are cleared, so a reader killed earlier pins nothing.
 * Read with mh_db_read(), mh_db_table_find() and the functions below; the
 * write functions must not be called. Refuses: no store in @path, or one
 * a daemon is creating and has not committed to yet (-ENOENT), a path
 * that is not a directory (-ENOTDIR), a store this user may not read
 * (-EACCES: LMDB's readers need write access to lock.mdb), a foreign or
 * garbage LMDB (-EILSEQ), another schema (-EPROTONOSUPPORT).
 * Logs nothing: @why (@why_len bytes) says what was wrong. Returns 0 and
 * *@out (close with mh_db_close()), or a negative errno.
 */
int mh_db_open_readonly(const char *path, struct mh_db **out, char *why, size_t why_len);

/*
 * Find the table @name without creating it (mh_db_table() creates, which a
 * read-only database cannot). Returns 0, -ENOENT when there is none, or -errno.
 */
int mh_db_table_find(struct mh_db *db, const char *name, MDB_dbi *out);

/*
 * The seq counter's row as committed now. The writer takes at least this
 * next, and more when the outbox holds a record with a higher seq: it
 * rewrites the row only when the newest record may be deleted (see
 * mh_db_seq_save()). Returns 0 or -errno.
 */
int mh_db_read_next_seq(struct mh_db *db, uint64_t *next);

struct mh_db_usage {
	uint64_t map_bytes;  /* the size of the LMDB map */
	uint64_t used_bytes; /* its pages ever used: data, LMDB's own and free ones */
};

/* How much of the map the database uses. Returns 0 or -errno. */
int mh_db_usage(struct mh_db *db, struct mh_db_usage *out);

/*
 * Whether a meterhub holds the store in @path (its lock on meterhub.lock):
 * 1 (with *@pid, or 0 when the pid is not known), 0, or a negative errno
 * (-ENOENT: no lock file, no meterhub ever opened the store). Passive when
 * the pid in the file is a running meterhub that has the file open; else
 * it asks the lock itself with a non-blocking shared flock() on a file
 * descriptor of its own, released at once.
 */
int mh_db_holder(const char *path, long *pid);
