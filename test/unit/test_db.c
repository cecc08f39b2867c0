// SPDX-License-Identifier: MIT
/*
 * The database layer (gateway/db.h), each test on a fresh directory: one
 * process per store (a second open is refused and names the holder); the
 * map is reserved on disk when the store opens; a map a 32-bit board cannot
 * address is refused; a unit of work that is undone takes its own writes
 * and seqs with it and nothing else; seqs survive a reopen; commit watchers
 * hear every commit; a turn held for a group commit waits for its window
 * at most.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

#include "db.h"

#define DATA_BYTES (8ull << 20)


static int setup(void **state)
{
	return tmpdir_setup(state, "mh-test-db");
}

static int teardown(void **state)
{
	return tmpdir_teardown(state);
}

static struct mh_db *open_ok(const char *path)
{
	struct mh_db *db = NULL;

	assert_int_equal(mh_db_open(path, DATA_BYTES, &db), 0);
	assert_non_null(db);
	return db;
}

static void put(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *val)
{
	MDB_val k = { strlen(key), (void *)key }, v = { strlen(val), (void *)val };

	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
}

static bool has(struct mh_db *db, MDB_dbi dbi, const char *key)
{
	MDB_txn *txn;
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc;

	assert_int_equal(mh_db_read(db, &txn), 0);
	rc = mdb_get(txn, dbi, &k, &v);
	mh_db_read_end(txn);
	return rc == 0;
}

static void test_second_open_is_refused(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path), *twin = NULL;
	char file[256], pid[32] = "", want[32];
	FILE *fp;

	assert_int_equal(mh_db_open(f->path, DATA_BYTES, &twin), -EBUSY);
	assert_null(twin);
	/* The lock file names the holder, for the refusal's message. */
	snprintf(file, sizeof(file), "%s/meterhub.lock", f->path);
	fp = fopen(file, "r");
	assert_non_null(fp);
	assert_non_null(fgets(pid, sizeof(pid), fp));
	fclose(fp);
	snprintf(want, sizeof(want), "%ld\n", (long)getpid());
	assert_string_equal(pid, want);
	mh_db_close(db);
	/* Released with the holder. */
	db = open_ok(f->path);
	mh_db_close(db);
	mh_db_close(NULL);
}

static void test_map_is_reserved(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path);
	char file[256];
	uint64_t map;
	struct stat st;

	assert_int_equal(mh_db_map_size(DATA_BYTES, UINT64_MAX, &map), 0);
	snprintf(file, sizeof(file), "%s/data.mdb", f->path);
	assert_int_equal(stat(file, &st), 0);
	/* Real blocks, not a sparse file: a disk filled later cannot take them. */
	assert_true((uint64_t)st.st_size >= map);
	assert_true((uint64_t)st.st_blocks * 512 >= map);
	snprintf(file, sizeof(file), "%s/lock.mdb", f->path);
	assert_int_equal(stat(file, &st), 0);
	assert_true(st.st_blocks > 0);
	mh_db_close(db);
}

static void test_map_size_on_32_bit(void **state)
{
	uint64_t map = 0;
	const uint64_t addressable32 = 2ull << 30;

	/* 4 GiB of records cannot be mapped on armhf: refused, never wrapped to 1 GiB. */
	assert_int_equal(mh_db_map_size(4ull << 30, addressable32, &map), -EFBIG);
	assert_int_equal(map, 0);
	assert_int_equal(mh_db_map_size(1ull << 30, addressable32, &map), 0);
	assert_true(map >= (1ull << 30) + (1ull << 28));
	assert_true(map <= addressable32);
	/* The same 4 GiB is fine where size_t is 64 bits. */
	assert_int_equal(mh_db_map_size(4ull << 30, 1ull << 46, &map), 0);
	assert_true(map > (4ull << 30));
}

static void test_undone_unit_takes_only_itself(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path);
	MDB_dbi dbi;
	MDB_txn *txn;

	assert_int_equal(mh_db_table(db, "t", &dbi), 0);
	assert_int_equal(mh_db_seq_peek(db), 1);

	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "a", "1");
	assert_int_equal(mh_db_seq_take(db), 1);
	assert_int_equal(mh_db_end(db, txn, true), 0);

	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "b", "2");
	assert_int_equal(mh_db_seq_take(db), 2);
	assert_int_equal(mh_db_seq_take(db), 3);
	assert_int_equal(mh_db_end(db, txn, false), 0);
	/* Its seqs went with it: nobody saw them. */
	assert_int_equal(mh_db_seq_peek(db), 2);

	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "c", "3");
	assert_int_equal(mh_db_seq_take(db), 2);
	assert_int_equal(mh_db_end(db, txn, true), 0);
	assert_true(mh_db_pending(db));
	assert_int_equal(mh_db_commit(db), 0);
	assert_false(mh_db_pending(db));

	assert_true(has(db, dbi, "a"));
	assert_false(has(db, dbi, "b"));
	assert_true(has(db, dbi, "c"));
	mh_db_close(db);

	db = open_ok(f->path);
	assert_int_equal(mh_db_seq_peek(db), 3);
	assert_int_equal(mh_db_table(db, "t", &dbi), 0);
	assert_true(has(db, dbi, "a") && has(db, dbi, "c"));
	mh_db_close(db);
}

struct heard {
	int calls, last_rc;
};

static void on_commit(void *ud, int rc)
{
	struct heard *h = ud;

	h->calls++;
	h->last_rc = rc;
}

static void test_watchers_hear_commits(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path);
	struct heard h = { 0, -1 };
	MDB_dbi dbi;
	MDB_txn *txn;

	assert_int_equal(mh_db_watch(db, on_commit, &h), 0);
	assert_int_equal(mh_db_table(db, "t", &dbi), 0);
	/* Nothing pending: no commit, nothing to hear. */
	assert_int_equal(mh_db_commit(db), 0);
	assert_int_equal(h.calls, 0);
	/* A turn without seqs (deletions) commits too, lazily. */
	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "k", "v");
	assert_int_equal(mh_db_end(db, txn, true), 0);
	assert_int_equal(mh_db_commit(db), 0);
	assert_int_equal(h.calls, 1);
	assert_int_equal(h.last_rc, 0);
	mh_db_close(db);
}

/*
 * Group commits: a held turn waits for the window measured from the first
 * hold, later turns join it without moving the deadline, and it is due at
 * once when nothing more is coming, when its window is 0 or when it must be
 * synced; until committed, no reader sees it.
 */
static void test_hold_waits_for_the_window(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path);
	struct heard h = { 0, -1 };
	MDB_dbi dbi;
	MDB_txn *txn;

	assert_int_equal(mh_db_table(db, "t", &dbi), 0);
	assert_int_equal(mh_db_watch(db, on_commit, &h), 0);
	/* Nothing written: nothing to hold. */
	mh_db_set_commit_window(db, 200);
	assert_int_equal(mh_db_hold(db, 1000, true), 0);
	assert_false(mh_db_held(db));

	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "a", "1");
	mh_db_seq_take(db);
	assert_int_equal(mh_db_end(db, txn, true), 0);
	assert_int_equal(mh_db_hold(db, 1000, true), 200);
	assert_true(mh_db_held(db));
	/* A later turn joins; the deadline stays where the first hold put it. */
	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "b", "2");
	mh_db_seq_take(db);
	assert_int_equal(mh_db_end(db, txn, true), 0);
	assert_int_equal(mh_db_hold(db, 1150, true), 50);
	assert_false(has(db, dbi, "a"));
	assert_int_equal(h.calls, 0);
	/* Past the window, it is due. */
	assert_int_equal(mh_db_hold(db, 1200, true), 0);
	assert_int_equal(mh_db_hold(db, 5000, true), 0);
	assert_int_equal(mh_db_commit(db), 0);
	assert_false(mh_db_held(db));
	assert_int_equal(h.calls, 1);
	assert_true(has(db, dbi, "a") && has(db, dbi, "b"));

	/* A fresh turn starts a fresh window; nothing more coming makes it due now. */
	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "c", "3");
	assert_int_equal(mh_db_end(db, txn, true), 0);
	assert_int_equal(mh_db_hold(db, 9000, true), 200);
	assert_int_equal(mh_db_hold(db, 9010, false), 0);
	/* An immediate commit (a journal entry, say) takes the held writes along. */
	assert_int_equal(mh_db_commit(db), 0);
	assert_true(has(db, dbi, "c"));

	/* A turn that must be synced is never held, nor is any with window 0. */
	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "d", "4");
	assert_int_equal(mh_db_end(db, txn, true), 0);
	mh_db_want_sync(db);
	assert_int_equal(mh_db_hold(db, 10000, true), 0);
	assert_false(mh_db_held(db));
	assert_int_equal(mh_db_commit(db), 0);
	mh_db_set_commit_window(db, 0);
	assert_int_equal(mh_db_begin(db, &txn), 0);
	put(txn, dbi, "e", "5");
	assert_int_equal(mh_db_end(db, txn, true), 0);
	assert_int_equal(mh_db_hold(db, 11000, true), 0);
	assert_false(mh_db_held(db));
	assert_int_equal(mh_db_commit(db), 0);
	assert_int_equal(h.calls, 4);
	mh_db_close(db);
}

/* Packed rows come back byte for byte; a malformed one is refused, never overrun. */
static void test_pack_zeros(void **state)
{
	uint8_t in[700], out[mh_db_packed_max(sizeof(in))], back[sizeof(in)];
	size_t n;

	(void)state;
	/* All zeros: runs of 255 at most. */
	memset(in, 0, sizeof(in));
	n = mh_db_pack_zeros(in, sizeof(in), out);
	assert_int_equal(n, 6);
	assert_int_equal(out[1], 255);
	assert_int_equal(out[5], 190);
	assert_true(mh_db_unpack_zeros(out, n, back, sizeof(back)));
	assert_memory_equal(back, in, sizeof(in));
	/* A sparse state: a few doubles among zeros. */
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = i % 97 == 3 ? (uint8_t)(i | 1) : 0;
	n = mh_db_pack_zeros(in, sizeof(in), out);
	assert_true(n < sizeof(in) / 4);
	memset(back, 0xaa, sizeof(back));
	assert_true(mh_db_unpack_zeros(out, n, back, sizeof(back)));
	assert_memory_equal(back, in, sizeof(in));
	/* No zeros at all, and the worst case: every other byte zero. */
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i % 255 + 1);
	assert_int_equal(mh_db_pack_zeros(in, sizeof(in), out), sizeof(in));
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = i % 2 ? 7 : 0;
	n = mh_db_pack_zeros(in, sizeof(in), out);
	assert_int_equal(n, sizeof(in) / 2 * 3);
	assert_true(mh_db_unpack_zeros(out, n, back, sizeof(back)));
	assert_memory_equal(back, in, sizeof(in));

	/* Another size, a run past the end, a run of 0, a run cut off, too few bytes. */
	assert_false(mh_db_unpack_zeros(out, n, back, sizeof(back) - 1));
	assert_false(mh_db_unpack_zeros((const uint8_t[]){ 0, 9 }, 2, back, 8));
	assert_false(mh_db_unpack_zeros((const uint8_t[]){ 1, 0, 0 }, 3, back, 8));
	assert_false(mh_db_unpack_zeros((const uint8_t[]){ 1, 0 }, 2, back, 8));
	assert_false(mh_db_unpack_zeros((const uint8_t[]){ 1, 0, 6 }, 3, back, 8));
	assert_true(mh_db_unpack_zeros((const uint8_t[]){ 1, 0, 7 }, 3, back, 8));
}

/* The store remembers whether its last user closed it: a power cut is visible at the next start. */
static void test_last_stop(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path);
	int status;
	pid_t pid;

	assert_int_equal(mh_db_last_stop(db), MH_DB_NEW);
	mh_db_close(db);
	db = open_ok(f->path);
	assert_int_equal(mh_db_last_stop(db), MH_DB_CLEAN);
	mh_db_close(db);

	/* A process that opens the store and is killed (a power cut, as far as the store knows). */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mh_db *child = NULL;
		if (mh_db_open(f->path, DATA_BYTES, &child) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	db = open_ok(f->path);
	assert_int_equal(mh_db_last_stop(db), MH_DB_UNCLEAN);
	mh_db_close(db);
	db = open_ok(f->path);
	assert_int_equal(mh_db_last_stop(db), MH_DB_CLEAN);
	mh_db_close(db);
}

static void test_path_that_is_a_file(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = NULL;
	FILE *fp = fopen(f->path, "w");

	assert_non_null(fp);
	fputs("precious", fp);
	fclose(fp);
	assert_int_equal(mh_db_open(f->path, DATA_BYTES, &db), -ENOTDIR);
	assert_null(db);
}

/* ---- read-only, beside a writer --------------------------------------- */

static off_t file_size(const char *dir, const char *name)
{
	char file[256];
	struct stat st;

	snprintf(file, sizeof(file), "%s/%s", dir, name);
	assert_int_equal(stat(file, &st), 0);
	return st.st_size;
}

static char *slurp_file(const char *dir, const char *name, size_t *len)
{
	char file[256];
	FILE *fp;
	char *buf;
	long n;

	snprintf(file, sizeof(file), "%s/%s", dir, name);
	fp = fopen(file, "rb");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* One unit of work that takes a seq and stores key "k<seq>", committed as its own turn. */
static int write_turn(struct mh_db *db, MDB_dbi dbi)
{
	char key[32];
	MDB_txn *txn;
	MDB_val k, v = { 5, "value" };
	int rc = mh_db_begin(db, &txn);

	if (rc)
		return rc;
	snprintf(key, sizeof(key), "k%llu", (unsigned long long)mh_db_seq_take(db));
	k = (MDB_val){ strlen(key), key };
	rc = mdb_put(txn, dbi, &k, &v, 0);
	rc = mh_db_end(db, txn, rc == 0);
	return rc ? rc : mh_db_commit(db);
}

static bool has_key(struct mh_db *db, MDB_dbi dbi, unsigned n)
{
	char key[32];

	snprintf(key, sizeof(key), "k%u", n);
	return has(db, dbi, key);
}

/*
 * The writer, in a child (LMDB allows one open of an environment per
 * process): a first turn, a byte to the parent, then on the parent's byte
 * @turns more, another byte, and it waits to be told to close.
 */
static pid_t start_writer(const char *path, unsigned turns, int *to_child, int *from_child)
{
	int down[2], up[2];
	pid_t pid;

	assert_int_equal(pipe(down), 0);
	assert_int_equal(pipe(up), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mh_db *db = NULL;
		MDB_dbi dbi;
		char c = 'y';
		bool bad = mh_db_open(path, DATA_BYTES, &db) != 0 ||
			   mh_db_table(db, "t", &dbi) != 0 || write_turn(db, dbi) != 0;

		close(down[1]);
		close(up[0]);
		if (write(up[1], bad ? "n" : "y", 1) != 1 || read(down[0], &c, 1) != 1)
			_exit(1);
		for (unsigned i = 0; i < turns && !bad; i++)
			bad = write_turn(db, dbi) != 0;
		/* From now on it looks like a daemon to mh_db_holder()'s passive check. */
		prctl(PR_SET_NAME, "meterhub", 0, 0, 0);
		if (write(up[1], bad ? "n" : "y", 1) != 1 || read(down[0], &c, 1) != 1)
			_exit(1);
		mh_db_close(db);
		_exit(bad ? 1 : 0);
	}
	close(down[0]);
	close(up[1]);
	*to_child = down[1];
	*from_child = up[0];
	return pid;
}

static char from_writer(int fd)
{
	char c = '?';

	assert_int_equal(read(fd, &c, 1), 1);
	return c;
}

static void test_readonly_beside_a_writer(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = NULL;
	MDB_dbi dbi, none;
	off_t lock_size, data_size;
	uint64_t next = 0;
	char why[256] = "";
	int to_child, from_child, status;
	unsigned reads = 0;
	long pid = 0;
	pid_t child = start_writer(f->path, 200, &to_child, &from_child);

	assert_int_equal(from_writer(from_child), 'y');
	lock_size = file_size(f->path, "lock.mdb");
	data_size = file_size(f->path, "data.mdb");

	assert_int_equal(mh_db_open_readonly(f->path, &db, why, sizeof(why)), 0);
	assert_int_equal(mh_db_table_find(db, "t", &dbi), 0);
	assert_int_equal(mh_db_table_find(db, "none", &none), -ENOENT);
	assert_true(has_key(db, dbi, 1));
	assert_int_equal(mh_db_read_next_seq(db, &next), 0);
	assert_int_equal(next, 2);
	/* Held, by a process not called meterhub: the lock itself says so, without a pid. */
	assert_int_equal(mh_db_holder(f->path, &pid), 1);
	assert_int_equal(pid, 0);

	/* Reads while the writer commits turn after turn: each sees a consistent prefix. */
	assert_int_equal(write(to_child, "g", 1), 1);
	for (time_t deadline = time(NULL) + 30;;) {
		MDB_txn *txn;
		uint64_t seen;

		assert_int_equal(mh_db_read_next_seq(db, &seen), 0);
		assert_true(seen >= next);
		next = seen;
		assert_int_equal(mh_db_read(db, &txn), 0);
		mh_db_read_end(txn);
		reads++;
		if (next == 202)
			break;
		assert_true(time(NULL) < deadline);
	}
	assert_int_equal(from_writer(from_child), 'y');
	for (unsigned i = 1; i <= 201; i++)
		assert_true(has_key(db, dbi, i));
	print_message("%u read-only snapshots while 200 turns were committed\n", reads);
	mh_db_close(db);
	/* Neither file grew, and the writer still holds its lock, now known by its pid. */
	assert_int_equal(file_size(f->path, "lock.mdb"), lock_size);
	assert_int_equal(file_size(f->path, "data.mdb"), data_size);
	assert_int_equal(mh_db_holder(f->path, &pid), 1);
	assert_int_equal(pid, child);

	assert_int_equal(write(to_child, "q", 1), 1);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(to_child);
	close(from_child);
	assert_int_equal(mh_db_holder(f->path, &pid), 0);
	assert_int_equal(pid, 0);
}

static void test_readonly_alone_writes_nothing(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = open_ok(f->path), *ro = NULL;
	MDB_dbi dbi;
	size_t len, lock_len, len_after;
	char *data, *after, why[256];
	off_t lock_size;
	int status;
	pid_t child;

	assert_int_equal(mh_db_table(db, "t", &dbi), 0);
	assert_int_equal(write_turn(db, dbi), 0);
	mh_db_close(db);

	/* No daemon: the reader is LMDB's first process on the lock file. */
	assert_int_equal(mh_db_open_readonly(f->path, &ro, why, sizeof(why)), 0);
	assert_int_equal(mh_db_table_find(ro, "t", &dbi), 0);
	assert_true(has_key(ro, dbi, 1));
	/* It holds no lock a daemon needs: one starts (and stops, writing) while it is open. */
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct mh_db *w = NULL;
		int rc = mh_db_open(f->path, DATA_BYTES, &w);
		mh_db_close(w);
		_exit(rc == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* From here only the reader: it reads again and closes, and nothing changes. */
	data = slurp_file(f->path, "data.mdb", &len);
	lock_size = file_size(f->path, "lock.mdb");
	free(slurp_file(f->path, "lock.mdb", &lock_len));
	assert_true(has_key(ro, dbi, 1));
	mh_db_close(ro);

	after = slurp_file(f->path, "data.mdb", &len_after);
	assert_int_equal(len_after, len);
	assert_memory_equal(after, data, len);
	assert_int_equal(file_size(f->path, "lock.mdb"), lock_size);
	free(after);
	free(data);
}

static void test_readonly_creates_nothing(void **state)
{
	struct tmpdir *f = *state;
	struct mh_db *db = NULL;
	char why[256] = "", file[256];
	struct stat st;
	long pid;
	FILE *fp;

	assert_int_equal(mh_db_open_readonly(f->path, &db, why, sizeof(why)), -ENOENT);
	assert_null(db);
	assert_non_null(strstr(why, "does not exist"));
	assert_int_equal(stat(f->path, &st), -1);
	assert_int_equal(mh_db_holder(f->path, &pid), -ENOENT);

	/* A directory without a store: refused, and left empty (LMDB would make lock.mdb). */
	assert_int_equal(mkdir(f->path, 0750), 0);
	assert_int_equal(mh_db_open_readonly(f->path, &db, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "no meterhub store"));
	snprintf(file, sizeof(file), "%s/lock.mdb", f->path);
	assert_int_equal(stat(file, &st), -1);
	snprintf(file, sizeof(file), "%s/data.mdb", f->path);
	assert_int_equal(stat(file, &st), -1);
	assert_int_equal(rmdir(f->path), 0);

	fp = fopen(f->path, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(mh_db_open_readonly(f->path, &db, why, sizeof(why)), -ENOTDIR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_second_open_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_is_reserved, setup, teardown),
		cmocka_unit_test(test_map_size_on_32_bit),
		cmocka_unit_test_setup_teardown(test_undone_unit_takes_only_itself, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchers_hear_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_waits_for_the_window, setup, teardown),
		cmocka_unit_test(test_pack_zeros),
		cmocka_unit_test_setup_teardown(test_last_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_that_is_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_beside_a_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_readonly_alone_writes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_creates_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
