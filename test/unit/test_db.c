// SPDX-License-Identifier: MIT
/*
 * The database layer (gateway/db.h), each test on a fresh directory: one
 * process per store (a second open is refused and names the holder); the
 * map is reserved on disk when the store opens; a map a 32-bit board cannot
 * address is refused; a unit of work that is undone takes its own writes
 * and seqs with it and nothing else; seqs survive a reopen; commit watchers
 * hear every commit.
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
#include <sys/stat.h>
#include <sys/wait.h>
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

	/* A process that opens the store and dies without closing it. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mh_db *child = NULL;
		_exit(mh_db_open(f->path, DATA_BYTES, &child) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_second_open_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_is_reserved, setup, teardown),
		cmocka_unit_test(test_map_size_on_32_bit),
		cmocka_unit_test_setup_teardown(test_undone_unit_takes_only_itself, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchers_hear_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_last_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_that_is_a_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
