// SPDX-License-Identifier: MIT
/*
 * The LMDB outbox (gateway/outbox.h on gateway/db.h), each test on a fresh directory from
 * mkdtemp(): records come back from a scan in seq order with type, subtopic,
 * payload and creation time intact; acknowledgements delete (twice is
 * harmless); seq continues across close/reopen and never repeats, also when
 * every record was acknowledged; ts_close() commits what is pending,
 * while a process that dies without committing loses only its pending
 * records, also those a group commit held; acknowledgements join a held
 * group commit; the seq counter's row is written only when the newest
 * record may be gone; scan honours @after and @max; stats; past max_bytes the oldest
 * readings are dropped first, then the oldest of any type, each drop is
 * reported, and a record too large for the store is refused without taking
 * anything with it. The store must refuse, and leave byte-identical, a
 * directory holding someone else's LMDB database, a newer schema or a
 * garbage data.mdb, and must refuse a regular file as its path. Read-only
 * (meterhub-ctl), the outbox shows what was committed, forwards and back.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <setjmp.h>
#include <signal.h>
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
#include "outbox.h"

/*
 * The database and its outbox as the daemon uses them: one loop turn is
 * a commit; acknowledgements are deleted with the next commit.
 */
struct tstore {
	struct mh_db *db;
	struct mh_outbox *ob;
};

static int ts_open(const char *path, uint64_t max_bytes, struct tstore **out)
{
	struct tstore *s = calloc(1, sizeof(*s));
	int rc = s ? mh_db_open(path, max_bytes, &s->db) : -ENOMEM;

	if (!rc)
		rc = mh_outbox_open(s->db, max_bytes, &s->ob);
	if (rc) {
		if (s)
			mh_db_close(s->db);
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

static int ts_commit(struct tstore *s)
{
	return mh_outbox_flush_acks(s->ob);
}

static void ts_close(struct tstore *s)
{
	if (!s)
		return;
	ts_commit(s);
	mh_outbox_free(s->ob);
	mh_db_close(s->db);
	free(s);
}

static int ts_ack(struct tstore *s, uint64_t seq)
{
	mh_outbox_ack(s->ob, seq);
	return 0;
}

#define ts_append(s, ...) mh_outbox_append((s)->ob, __VA_ARGS__)
#define ts_scan(s, ...) mh_outbox_scan((s)->ob, __VA_ARGS__)
#define ts_stats(s, st) mh_outbox_stats((s)->ob, st)
#define ts_next_seq(s) mh_outbox_next_seq((s)->ob)
#define ts_take_drops(s, d) mh_outbox_take_drops((s)->ob, d)

#define MAX_BYTES (16ull << 20)


static int setup(void **state)
{
	return tmpdir_setup(state, "mh-test-store");
}

static int teardown(void **state)
{
	return tmpdir_teardown(state);
}

/* ---- helpers --------------------------------------------------------- */

struct copy {
	uint64_t seq;
	enum mh_record_type type;
	int64_t created_ms;
	char subtopic[64];
	size_t subtopic_len;
	char payload[128];
	size_t payload_len;
};

struct scan_result {
	struct copy rec[64];
	size_t n;
	size_t stop_after; /* return non-zero from the callback after this many; 0 never */
};

static int collect(void *ud, const struct mh_record *rec)
{
	struct scan_result *r = ud;
	struct copy *c;

	if (r->n >= sizeof(r->rec) / sizeof(r->rec[0]))
		return 1;
	c = &r->rec[r->n++];
	c->seq = rec->seq;
	c->type = rec->type;
	c->created_ms = rec->created_ms;
	c->subtopic_len = rec->subtopic_len;
	c->payload_len = rec->payload_len;
	if (rec->subtopic_len <= sizeof(c->subtopic))
		memcpy(c->subtopic, rec->subtopic, rec->subtopic_len);
	if (rec->payload_len <= sizeof(c->payload))
		memcpy(c->payload, rec->payload, rec->payload_len);
	return r->stop_after && r->n >= r->stop_after;
}

/* Scan and return the seqs seen, as "1,3,5", for compact asserts (64 records at most). */
static const char *seqs(struct tstore *s, uint64_t after, size_t max, int *count)
{
	static char buf[512];
	struct scan_result *r = calloc(1, sizeof(*r));
	size_t n = 0;

	assert_non_null(r);
	*count = ts_scan(s, after, max, collect, r);
	buf[0] = '\0';
	for (size_t i = 0; i < r->n; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%llu", i ? "," : "",
			(unsigned long long)r->rec[i].seq);
	free(r);
	return buf;
}

static void expect_seqs(struct tstore *s, uint64_t after, size_t max, const char *want)
{
	int count;
	const char *got = seqs(s, after, max, &count);
	int n = *want ? 1 : 0;

	for (const char *p = want; *p; p++)
		n += *p == ',';
	assert_string_equal(got, want);
	assert_int_equal(count, n);
}

static struct tstore *open_ok(const char *path)
{
	struct tstore *s = NULL;

	assert_int_equal(ts_open(path, MAX_BYTES, &s), 0);
	assert_non_null(s);
	return s;
}

static void append_ok(struct tstore *s, enum mh_record_type type, int64_t ms, const char *sub,
	const char *payload)
{
	assert_int_equal(ts_append(s, type, ms, sub, payload, strlen(payload)), 0);
}

/* Read a whole file into a malloc'ed buffer. */
static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static bool same_file(const char *path, const char *before, size_t before_len)
{
	size_t len;
	char *now = slurp(path, &len);
	bool same = len == before_len && !memcmp(now, before, len);

	free(now);
	return same;
}

/* Check with plain LMDB that the unnamed database holds exactly one key, @key. */
static void expect_only_key(const char *dir, const char *key, const char *val)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val k, v;
	int n = 0;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
	while (mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
		print_message("unnamed db key %d: %.*s\n", n, (int)k.mv_size, (char *)k.mv_data);
		if (n == 0) {
			assert_int_equal(k.mv_size, strlen(key));
			assert_memory_equal(k.mv_data, key, k.mv_size);
			assert_int_equal(v.mv_size, strlen(val));
			assert_memory_equal(v.mv_data, val, v.mv_size);
		}
		n++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	assert_int_equal(n, 1);
}

/* ---- records --------------------------------------------------------- */

static void test_append_commit_scan(void **state)
{
	struct tmpdir *f = *state;
	struct scan_result *r = calloc(1, sizeof(*r));
	struct tstore *s = open_ok(f->path);
	static const char binary[] = {'{', '\0', '}'};

	assert_non_null(r);
	assert_int_equal(ts_next_seq(s), 1);
	append_ok(s, MH_RECORD_READING, 1795316832000, "reading/m-0001",
		"{\"seq\":1,\"values\":{\"voltage_a_v\":230.1}}");
	assert_int_equal(ts_next_seq(s), 2);
	append_ok(s, MH_RECORD_INTERVAL, 1795317300000, "interval/m-0001", "{\"complete\":true}");
	append_ok(s, MH_RECORD_EVENT, -5, "event", "");
	assert_int_equal(ts_append(s, MH_RECORD_CMD_RESULT, 0, "cmd/result", binary, 3), 0);
	append_ok(s, MH_RECORD_DAILY, INT64_MAX, "daily/m-0101", "{}");
	assert_int_equal(ts_next_seq(s), 6);
	assert_int_equal(ts_commit(s), 0);

	assert_int_equal(ts_scan(s, 0, 100, collect, r), 5);
	assert_int_equal(r->n, 5);

	assert_int_equal(r->rec[0].seq, 1);
	assert_int_equal(r->rec[0].type, MH_RECORD_READING);
	assert_int_equal(r->rec[0].created_ms, 1795316832000);
	assert_int_equal(r->rec[0].subtopic_len, strlen("reading/m-0001"));
	assert_memory_equal(r->rec[0].subtopic, "reading/m-0001", r->rec[0].subtopic_len);
	assert_int_equal(
		r->rec[0].payload_len, strlen("{\"seq\":1,\"values\":{\"voltage_a_v\":230.1}}"));
	assert_memory_equal(r->rec[0].payload, "{\"seq\":1,\"values\":{\"voltage_a_v\":230.1}}",
		r->rec[0].payload_len);

	assert_int_equal(r->rec[1].seq, 2);
	assert_int_equal(r->rec[1].type, MH_RECORD_INTERVAL);
	assert_int_equal(r->rec[1].created_ms, 1795317300000);
	assert_int_equal(r->rec[1].subtopic_len, 15);
	assert_memory_equal(r->rec[1].subtopic, "interval/m-0001", 15);
	assert_int_equal(r->rec[1].payload_len, 17);
	assert_memory_equal(r->rec[1].payload, "{\"complete\":true}", 17);

	assert_int_equal(r->rec[2].seq, 3);
	assert_int_equal(r->rec[2].type, MH_RECORD_EVENT);
	assert_true(r->rec[2].created_ms == -5);
	assert_int_equal(r->rec[2].subtopic_len, 5);
	assert_memory_equal(r->rec[2].subtopic, "event", 5);
	assert_int_equal(r->rec[2].payload_len, 0);

	/* The payload is bytes with a length, not a C string. */
	assert_int_equal(r->rec[3].seq, 4);
	assert_int_equal(r->rec[3].type, MH_RECORD_CMD_RESULT);
	assert_int_equal(r->rec[3].created_ms, 0);
	assert_int_equal(r->rec[3].subtopic_len, 10);
	assert_memory_equal(r->rec[3].subtopic, "cmd/result", 10);
	assert_int_equal(r->rec[3].payload_len, 3);
	assert_memory_equal(r->rec[3].payload, binary, 3);

	assert_int_equal(r->rec[4].seq, 5);
	assert_int_equal(r->rec[4].type, MH_RECORD_DAILY);
	assert_true(r->rec[4].created_ms == INT64_MAX);
	assert_int_equal(r->rec[4].subtopic_len, 12);
	assert_memory_equal(r->rec[4].subtopic, "daily/m-0101", 12);
	assert_int_equal(r->rec[4].payload_len, 2);
	assert_memory_equal(r->rec[4].payload, "{}", 2);

	free(r);
	ts_close(s);
	ts_close(NULL);
}

static void test_scan_sees_only_committed(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);
	struct mh_outbox_stats st;

	append_ok(s, MH_RECORD_READING, 1, "reading/a", "1");
	assert_int_equal(ts_commit(s), 0);
	append_ok(s, MH_RECORD_READING, 2, "reading/a", "2");
	expect_seqs(s, 0, 100, "1");
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 1);
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "1,2");
	/* A commit with nothing pending is fine. */
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "1,2");
	ts_close(s);
}

static void test_ack(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);

	for (int i = 1; i <= 5; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "1,2,3,4,5");

	assert_int_equal(ts_ack(s, 2), 0);
	assert_int_equal(ts_ack(s, 4), 0);
	/* Acknowledged records are not sent again, even before their deletion is committed. */
	expect_seqs(s, 0, 100, "1,3,5");
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "1,3,5");

	/* A broker may acknowledge twice; a seq never stored is no error either. */
	assert_int_equal(ts_ack(s, 2), 0);
	assert_int_equal(ts_ack(s, 99), 0);
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "1,3,5");
	/* Acknowledged twice within one transaction. */
	assert_int_equal(ts_ack(s, 3), 0);
	assert_int_equal(ts_ack(s, 3), 0);
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "1,5");
	assert_int_equal(ts_next_seq(s), 6);
	ts_close(s);
}

static void test_seq_survives_reopen(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);

	for (int i = 1; i <= 3; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	ts_close(s);

	s = open_ok(f->path);
	assert_int_equal(ts_next_seq(s), 4);
	expect_seqs(s, 0, 100, "1,2,3");
	/* Everything acknowledged: the outbox is empty, but seq must not restart. */
	for (uint64_t seq = 1; seq <= 3; seq++)
		assert_int_equal(ts_ack(s, seq), 0);
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "");
	ts_close(s);

	s = open_ok(f->path);
	assert_int_equal(ts_next_seq(s), 4);
	append_ok(s, MH_RECORD_EVENT, 4, "event", "{}");
	/* Appended and acknowledged in one transaction, then closed. */
	assert_int_equal(ts_ack(s, 4), 0);
	ts_close(s);

	s = open_ok(f->path);
	assert_int_equal(ts_next_seq(s), 5);
	expect_seqs(s, 0, 100, "");
	append_ok(s, MH_RECORD_EVENT, 5, "event", "{}");
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 0, 100, "5");
	ts_close(s);
}

static void test_close_commits(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);

	append_ok(s, MH_RECORD_READING, 10, "reading/m-0001", "a");
	append_ok(s, MH_RECORD_READING, 20, "reading/m-0001", "b");
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_ack(s, 1), 0);
	append_ok(s, MH_RECORD_READING, 30, "reading/m-0001", "c");
	/* No commit: the header promises close commits what is pending. */
	ts_close(s);

	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "2,3");
	assert_int_equal(ts_next_seq(s), 4);
	ts_close(s);
}

/*
 * Run @work(@path, @window_ms) in a child process, which then waits for the
 * parent's SIGKILL, as a daemon dies under it or a power cut; @work returns
 * whether all it did succeeded.
 */
static void run_and_kill(const char *path, unsigned window_ms,
	bool (*work)(struct tstore *s))
{
	struct tstore *s;
	int status, fds[2];
	char verdict = '?';
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		bool good = ts_open(path, MAX_BYTES, &s) == 0;
		if (good) {
			mh_db_set_commit_window(s->db, window_ms);
			good = work(s);
		}
		verdict = good ? 'y' : 'n';
		if (write(fds[1], &verdict, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &verdict, 1), 1);
	close(fds[0]);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(verdict, 'y');
}

/* Append five records, committing after the third. */
static bool append_five_commit_three(struct tstore *s)
{
	bool good = true;

	for (int i = 1; i <= 5 && good; i++) {
		good = ts_append(s, MH_RECORD_READING, i, "reading/m-0001", "{}", 2) == 0;
		if (i == 3)
			good = good && ts_commit(s) == 0;
	}
	return good;
}

/*
 * A daemon killed between append and commit: the child process appends and
 * commits three records, appends two more and is killed without committing
 * or closing. Only the committed three survive.
 */
static void test_crash_loses_only_pending(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s;

	run_and_kill(f->path, 0, append_five_commit_three);
	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "1,2,3");
	assert_int_equal(ts_next_seq(s), 4);
	ts_close(s);
}

/* The two last records wait for their window; an acknowledgement rides along. */
static bool hold_the_last_two(struct tstore *s)
{
	bool good = append_five_commit_three(s) && mh_db_hold(s->db, 0, true) > 0;

	/* Deletions while it is held ride along: no commit of their own. */
	mh_outbox_ack(s->ob, 1);
	return good && ts_commit(s) == 0 && mh_db_held(s->db);
}

/*
 * A power cut while a group commit is held: the child commits three
 * records, then appends two more that wait for their window, and is
 * killed. The three it committed (and could have published) survive; the
 * two nobody could have seen are gone, and their seqs are taken again.
 */
static void test_crash_loses_only_the_held_turn(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s;

	run_and_kill(f->path, 2000, hold_the_last_two);
	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "1,2,3");
	assert_int_equal(ts_next_seq(s), 4);
	ts_close(s);
}

/*
 * Acknowledgements flushed while a group commit is held join it: their
 * records leave the scan at once, and the deletion is committed with the
 * group, whose records only then become visible.
 */
static void test_acks_join_a_held_turn(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);

	mh_db_set_commit_window(s->db, 200);
	for (int i = 1; i <= 3; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	append_ok(s, MH_RECORD_READING, 4, "reading/m-0001", "{}");
	assert_int_equal(mh_db_hold(s->db, 100, true), 200);
	assert_int_equal(ts_ack(s, 1), 0);
	assert_int_equal(mh_outbox_flush_acks(s->ob), 0);
	assert_true(mh_db_held(s->db));
	expect_seqs(s, 0, 100, "2,3");
	assert_int_equal(mh_outbox_acks_pending(s->ob), 1);
	assert_int_equal(mh_db_commit(s->db), 0);
	assert_int_equal(mh_outbox_acks_pending(s->ob), 0);
	expect_seqs(s, 0, 100, "2,3,4");
	ts_close(s);
	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "2,3,4");
	assert_int_equal(ts_next_seq(s), 5);
	ts_close(s);
}

/*
 * Any commit of the store takes the acknowledged deletions along, without
 * a flush of their own; deletions flushed twice into one held turn are
 * all kept out of the scan until it commits.
 */
static void test_any_commit_takes_the_acks_along(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);

	mh_db_set_commit_window(s->db, 200);
	for (int i = 1; i <= 4; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_ack(s, 1), 0);
	append_ok(s, MH_RECORD_READING, 5, "reading/m-0001", "{}");
	assert_int_equal(mh_db_commit(s->db), 0);
	assert_int_equal(mh_outbox_acks_pending(s->ob), 0);
	expect_seqs(s, 0, 100, "2,3,4,5");

	append_ok(s, MH_RECORD_READING, 6, "reading/m-0001", "{}");
	assert_true(mh_db_hold(s->db, 100, true) > 0);
	assert_int_equal(ts_ack(s, 2), 0);
	assert_int_equal(mh_outbox_flush_acks(s->ob), 0);
	assert_int_equal(ts_ack(s, 3), 0);
	assert_int_equal(mh_outbox_flush_acks(s->ob), 0);
	assert_true(mh_db_held(s->db));
	assert_int_equal(mh_outbox_acks_pending(s->ob), 2);
	expect_seqs(s, 0, 100, "4,5");
	assert_int_equal(mh_db_commit(s->db), 0);
	expect_seqs(s, 0, 100, "4,5,6");
	ts_close(s);
	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "4,5,6");
	ts_close(s);
}

/* The counter's row in the meta table, as a reader beside the daemon sees it. */
static uint64_t counter_row(const char *path)
{
	struct mh_db *db = NULL;
	uint64_t next = 0;
	char why[256];

	assert_int_equal(mh_db_open_readonly(path, &db, why, sizeof(why)), 0);
	assert_int_equal(mh_db_read_next_seq(db, &next), 0);
	mh_db_close(db);
	return next;
}

/*
 * Commits of appended records leave the meta table's page alone: the
 * newest record's key tells the counter. Only a commit that deletes the
 * newest record writes the counter's row, so seqs never restart.
 */
static void test_counter_row_only_when_needed(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);

	for (int i = 1; i <= 3; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	ts_close(s);
	assert_int_equal(counter_row(f->path), 1);

	s = open_ok(f->path);
	assert_int_equal(ts_next_seq(s), 4);
	/* Not the newest: the row stays. */
	assert_int_equal(ts_ack(s, 1), 0);
	assert_int_equal(ts_commit(s), 0);
	ts_close(s);
	assert_int_equal(counter_row(f->path), 1);

	s = open_ok(f->path);
	assert_int_equal(ts_ack(s, 2), 0);
	assert_int_equal(ts_ack(s, 3), 0);
	assert_int_equal(ts_commit(s), 0);
	ts_close(s);
	assert_int_equal(counter_row(f->path), 4);
	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "");
	assert_int_equal(ts_next_seq(s), 4);
	ts_close(s);
}

static void test_scan_after_and_max(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);
	struct scan_result *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	for (int i = 1; i <= 10; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);

	expect_seqs(s, 3, 4, "4,5,6,7");
	expect_seqs(s, 7, 100, "8,9,10");
	expect_seqs(s, 10, 100, "");
	expect_seqs(s, 1000, 100, "");
	expect_seqs(s, 0, 0, "");
	expect_seqs(s, 0, 1, "1");
	expect_seqs(s, 0, 10, "1,2,3,4,5,6,7,8,9,10");

	/* @after need not be a stored seq: acknowledged records leave holes. */
	assert_int_equal(ts_ack(s, 4), 0);
	assert_int_equal(ts_ack(s, 5), 0);
	assert_int_equal(ts_commit(s), 0);
	expect_seqs(s, 3, 2, "6,7");
	expect_seqs(s, 4, 2, "6,7");

	/* The callback stops the scan; the count includes the record it stopped on. */
	r->stop_after = 2;
	assert_int_equal(ts_scan(s, 0, 100, collect, r), 2);
	assert_int_equal(r->n, 2);
	assert_int_equal(r->rec[0].seq, 1);
	assert_int_equal(r->rec[1].seq, 2);
	free(r);
	ts_close(s);
}

static void test_stats(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);
	struct mh_outbox_stats st;

	memset(&st, 0xA5, sizeof(st));
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.oldest_seq, 0);
	assert_int_equal(st.oldest_ms, 0);
	assert_int_equal(st.max_bytes, MAX_BYTES);
	assert_true(st.used_bytes < MAX_BYTES);

	append_ok(s, MH_RECORD_READING, 1795316400000, "reading/m-0001", "{}");
	append_ok(s, MH_RECORD_READING, 1795317300000, "reading/m-0001", "{}");
	append_ok(s, MH_RECORD_READING, 1795318200000, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.oldest_seq, 1);
	assert_int_equal(st.oldest_ms, 1795316400000);
	assert_true(st.used_bytes > 0 && st.used_bytes < MAX_BYTES);

	assert_int_equal(ts_ack(s, 1), 0);
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 2);
	assert_int_equal(st.oldest_seq, 2);
	assert_int_equal(st.oldest_ms, 1795317300000);

	/*
	 * An acknowledged record stops waiting at once, its deletion pending;
	 * an append counts once committed.
	 */
	assert_int_equal(ts_ack(s, 2), 0);
	append_ok(s, MH_RECORD_READING, 1795319100000, "reading/m-0001", "{}");
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 1);
	assert_int_equal(st.oldest_seq, 3);
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 2);
	assert_int_equal(st.oldest_seq, 3);
	assert_int_equal(st.oldest_ms, 1795318200000);

	assert_int_equal(ts_ack(s, 3), 0);
	assert_int_equal(ts_ack(s, 4), 0);
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_stats(s, &st), 0);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.oldest_seq, 0);
	assert_int_equal(st.oldest_ms, 0);
	ts_close(s);
}

static void test_creates_directory(void **state)
{
	struct tmpdir *f = *state;
	struct stat st;
	struct tstore *s;

	assert_int_equal(stat(f->path, &st), -1);
	s = open_ok(f->path);
	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	ts_close(s);
}

/* ---- a full store ---------------------------------------------------- */

/* What a scan saw, by type; readings must form one run of seqs. */
struct tally {
	uint64_t n, first_reading, last_reading, other[8];
	bool gap;
};

static int count_cb(void *ud, const struct mh_record *rec)
{
	struct tally *c = ud;

	if (rec->type == MH_RECORD_READING) {
		if (c->last_reading && rec->seq != c->last_reading + 1)
			c->gap = true;
		if (!c->first_reading)
			c->first_reading = rec->seq;
		c->last_reading = rec->seq;
	} else if ((unsigned)rec->type < 8) {
		c->other[rec->type]++;
	}
	c->n++;
	return 0;
}

/*
 * Past max_bytes the store drops its oldest records to make room, readings
 * first: here three events come first and must outlive a flood of 2000
 * readings, of which only the newest survive, as one unbroken run. Every
 * drop is reported by ts_take_drops(), and seqs are never reused.
 */
static void test_full_store_drops_oldest_readings(void **state)
{
	struct tmpdir *f = *state;
	const uint64_t max = 64 << 10;
	struct tstore *s = NULL;
	struct mh_outbox_stats st;
	struct mh_outbox_drops drops;
	struct tally c = {0};
	char payload[200];
	uint64_t seq;

	memset(payload, 'r', sizeof(payload));
	assert_int_equal(ts_open(f->path, max, &s), 0);
	for (seq = 1; seq <= 3; seq++)
		append_ok(s, MH_RECORD_EVENT, (int64_t)seq, "event", "{\"type\":\"started\"}");
	assert_int_equal(ts_commit(s), 0);
	for (seq = 4; seq <= 2003; seq++) {
		assert_int_equal(ts_append(s, MH_RECORD_READING, (int64_t)seq,
					 "reading/m-0001", payload, sizeof(payload)),
			0);
		if (seq % 10 == 0)
			assert_int_equal(ts_commit(s), 0);
	}
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_next_seq(s), 2004);

	assert_true(ts_scan(s, 0, SIZE_MAX, count_cb, &c) > 0);
	assert_int_equal(ts_stats(s, &st), 0);
	print_message("kept %llu of 2003 records in %llu bytes (max %llu)\n",
		(unsigned long long)c.n, (unsigned long long)st.used_bytes,
		(unsigned long long)max);
	assert_true(st.used_bytes <= max);
	/* Some readings had to go, not all of them. */
	assert_true(c.n < 2003);
	assert_int_equal(c.other[MH_RECORD_EVENT], 3);
	assert_false(c.gap);
	assert_int_equal(c.last_reading, 2003);
	assert_true(c.first_reading > 4);
	assert_int_equal(st.records, c.n);
	assert_int_equal(st.oldest_seq, 1);

	assert_true(ts_take_drops(s, &drops));
	assert_int_equal(drops.by_type[MH_RECORD_READING], c.first_reading - 4);
	assert_int_equal(drops.by_type[MH_RECORD_EVENT], 0);
	assert_int_equal(drops.by_type[MH_RECORD_INTERVAL], 0);
	assert_int_equal(drops.first_seq, 4);
	assert_int_equal(drops.last_seq, c.first_reading - 1);
	assert_int_equal(drops.lost, 0);
	/* Taken once, they are gone. */
	assert_false(ts_take_drops(s, &drops));
	assert_int_equal(drops.by_type[MH_RECORD_READING], 0);
	ts_close(s);

	/* The seq keeps counting after a restart, however much was dropped. */
	s = open_ok(f->path);
	assert_int_equal(ts_next_seq(s), 2004);
	ts_close(s);
}

/* With no reading left to drop, the oldest record of any type goes. */
static void test_full_store_without_readings(void **state)
{
	struct tmpdir *f = *state;
	const uint64_t max = 64 << 10;
	struct tstore *s = NULL;
	struct mh_outbox_stats st;
	struct mh_outbox_drops drops;
	struct tally c = {0};
	char payload[200];
	uint64_t count;

	memset(payload, 'i', sizeof(payload));
	assert_int_equal(ts_open(f->path, max, &s), 0);
	for (uint64_t seq = 1; seq <= 1000; seq++) {
		assert_int_equal(ts_append(s, MH_RECORD_INTERVAL, (int64_t)seq,
					 "interval/m-0001", payload, sizeof(payload)),
			0);
		if (seq % 10 == 0)
			assert_int_equal(ts_commit(s), 0);
	}
	assert_int_equal(ts_stats(s, &st), 0);
	assert_true(ts_scan(s, 0, SIZE_MAX, count_cb, &c) > 0);
	count = c.other[MH_RECORD_INTERVAL];
	assert_int_equal(c.n, count);
	assert_int_equal(st.records, count);
	assert_true(st.used_bytes <= max);
	assert_true(count > 0 && count < 1000);
	/* The newest survive, in one run up to the last: the count and the ends agree. */
	assert_int_equal(st.oldest_seq, 1000 - count + 1);
	assert_true(ts_take_drops(s, &drops));
	assert_int_equal(drops.by_type[MH_RECORD_INTERVAL], 1000 - count);
	assert_int_equal(drops.by_type[MH_RECORD_READING], 0);
	assert_int_equal(drops.first_seq, 1);
	assert_int_equal(drops.last_seq, 1000 - count);
	ts_close(s);
}

/*
 * A record larger than the whole store cannot be kept: the append fails
 * with -ENOSPC, and it must not take the records already stored with it.
 */
static void test_record_larger_than_store(void **state)
{
	struct tmpdir *f = *state;
	const uint64_t max = 64 << 10;
	struct tstore *s = NULL;
	struct mh_outbox_drops drops;
	char *big = malloc(max + 1);

	assert_non_null(big);
	memset(big, 'x', max + 1);
	assert_int_equal(ts_open(f->path, max, &s), 0);
	append_ok(s, MH_RECORD_INTERVAL, 1, "interval/m-0001", "{}");
	append_ok(s, MH_RECORD_READING, 2, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	append_ok(s, MH_RECORD_READING, 3, "reading/m-0001", "{}");

	int rc = ts_append(s, MH_RECORD_EVENT, 4, "event", big, max + 1);
	free(big);
	int commit = ts_commit(s);
	int count;
	char kept[64];
	snprintf(kept, sizeof(kept), "%s", seqs(s, 0, 100, &count));
	bool dropped = ts_take_drops(s, &drops);
	ts_close(s);

	assert_int_equal(rc, -EMSGSIZE);
	assert_int_equal(commit, 0);
	assert_string_equal(kept, "1,2,3");
	/* Nothing was dropped for it, and the record itself is counted as lost. */
	assert_true(dropped);
	assert_int_equal(drops.lost, 1);
	for (size_t t = 0; t < MH_RECORD_TYPES; t++)
		assert_int_equal(drops.by_type[t], 0);
}

/* ---- directories that are not ours ----------------------------------- */

static void test_foreign_lmdb_refused(void **state)
{
	struct tmpdir *f = *state;
	char data[160];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {5, "hello"}, v = {5, "world"};
	struct tstore *s = NULL;
	size_t len;
	char *before;
	int rc;
	bool same;

	/* Someone else's database: one key in the unnamed DB, nothing else. */
	assert_int_equal(mkdir(f->path, 0750), 0);
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, f->path, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	snprintf(data, sizeof(data), "%s/data.mdb", f->path);
	before = slurp(data, &len);
	rc = ts_open(f->path, MAX_BYTES, &s);
	if (rc == 0)
		ts_close(s);
	same = same_file(data, before, len);
	print_message("ts_open on a foreign database: %d, data.mdb %s\n", rc,
		same ? "unchanged" : "MODIFIED");
	free(before);
	assert_int_equal(rc, -EILSEQ);
	assert_true(same);
	expect_only_key(f->path, "hello", "world");
}

static void test_newer_schema_refused(void **state)
{
	struct tmpdir *f = *state;
	char data[160];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t two = 2;
	MDB_val k = {6, "schema"}, v = {1, &two};
	struct tstore *s = open_ok(f->path);
	size_t len;
	char *before;
	int rc;

	append_ok(s, MH_RECORD_READING, 1, "reading/m-0001", "{}");
	ts_close(s);

	/* A later meterhub raised the schema version. */
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, f->path, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	snprintf(data, sizeof(data), "%s/data.mdb", f->path);
	before = slurp(data, &len);
	s = NULL;
	rc = ts_open(f->path, MAX_BYTES, &s);
	if (rc == 0)
		ts_close(s);
	assert_true(rc < 0);
	assert_null(s);
	assert_true(same_file(data, before, len));
	free(before);
}

static void test_regular_file_refused(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = NULL;
	FILE *fp = fopen(f->path, "w");
	size_t len;
	char *before;

	assert_non_null(fp);
	fputs("not a directory\n", fp);
	fclose(fp);
	before = slurp(f->path, &len);
	assert_int_equal(ts_open(f->path, MAX_BYTES, &s), -ENOTDIR);
	assert_null(s);
	assert_true(same_file(f->path, before, len));
	free(before);
}

static void test_garbage_data_refused(void **state)
{
	struct tmpdir *f = *state;
	char data[160];
	char garbage[16384];
	uint32_t x = 0x2545F491; /* xorshift32: "random" bytes that repeat run to run */
	struct tstore *s = NULL;
	FILE *fp;
	int rc;

	for (size_t i = 0; i < sizeof(garbage); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		garbage[i] = (char)(x >> 24);
	}
	assert_int_equal(mkdir(f->path, 0750), 0);
	snprintf(data, sizeof(data), "%s/data.mdb", f->path);
	fp = fopen(data, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(garbage, 1, sizeof(garbage), fp), sizeof(garbage));
	fclose(fp);

	rc = ts_open(f->path, MAX_BYTES, &s);
	if (rc == 0)
		ts_close(s);
	print_message("ts_open on garbage: %d\n", rc);
	assert_true(rc < 0);
	assert_null(s);
	assert_true(same_file(data, garbage, sizeof(garbage)));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* Scan back and return the seqs seen, as "10,9,8". */
static const char *back_seqs(struct mh_outbox *ob, uint64_t before, size_t max)
{
	static char buf[512];
	struct scan_result *r = calloc(1, sizeof(*r));
	size_t n = 0;
	int count;

	assert_non_null(r);
	count = mh_outbox_scan_back(ob, before, max, collect, r);
	assert_int_equal(count, (int)r->n);
	buf[0] = '\0';
	for (size_t i = 0; i < r->n; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%llu", i ? "," : "",
			(unsigned long long)r->rec[i].seq);
	free(r);
	return buf;
}

static void test_readonly_scans_both_ways(void **state)
{
	struct tmpdir *f = *state;
	struct tstore *s = open_ok(f->path);
	struct mh_outbox_stats st;
	struct mh_outbox *ob = NULL;
	struct mh_db *db = NULL;
	struct scan_result *r = calloc(1, sizeof(*r));
	char why[256];

	assert_non_null(r);
	for (int i = 1; i <= 10; i++)
		append_ok(s, i % 2 ? MH_RECORD_READING : MH_RECORD_EVENT, 1000 + i,
			i % 2 ? "reading/m-0001" : "event", "{\"x\":1}");
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_ack(s, 4), 0);
	assert_int_equal(ts_ack(s, 5), 0);
	ts_close(s);

	/* One open of an environment per process: the writer is closed first. */
	assert_int_equal(mh_db_open_readonly(f->path, &db, why, sizeof(why)), 0);
	assert_int_equal(mh_outbox_open_readonly(db, MAX_BYTES, &ob), 0);
	assert_string_equal(back_seqs(ob, UINT64_MAX, 100), "10,9,8,7,6,3,2,1");
	assert_string_equal(back_seqs(ob, 7, 2), "6,3");
	assert_string_equal(back_seqs(ob, 5, 100), "3,2,1");
	assert_string_equal(back_seqs(ob, 1, 100), "");
	assert_string_equal(back_seqs(ob, 0, 100), "");
	assert_string_equal(back_seqs(ob, 1000, 1), "10");
	assert_int_equal(mh_outbox_scan(ob, 0, 100, collect, r), 8);
	assert_int_equal(r->rec[3].seq, 6);
	assert_int_equal(r->rec[3].type, MH_RECORD_EVENT);
	assert_int_equal(r->rec[3].created_ms, 1006);
	assert_memory_equal(r->rec[3].subtopic, "event", 5);
	assert_int_equal(mh_outbox_stats(ob, &st), 0);
	assert_int_equal(st.records, 8);
	assert_int_equal(st.oldest_seq, 1);
	assert_int_equal(st.oldest_ms, 1001);
	mh_outbox_free(ob);
	mh_db_close(db);
	free(r);
}

/*
 * One turn holding deletions, appends and an append that fails: the failed
 * one is undone alone and counted once, the rest commits together.
 */
static void test_acks_and_appends_share_a_turn(void **state)
{
	struct tmpdir *f = *state;
	struct mh_outbox_drops drops;
	struct tstore *s = open_ok(f->path);
	size_t big_len = MAX_BYTES;
	char *big = malloc(big_len);

	assert_non_null(big);
	memset(big, 'x', big_len);
	for (int i = 1; i <= 3; i++)
		append_ok(s, MH_RECORD_READING, i, "reading/m-0001", "{}");
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(ts_ack(s, 1), 0);
	assert_int_equal(ts_ack(s, 2), 0);
	append_ok(s, MH_RECORD_READING, 4, "reading/m-0001", "{}");
	assert_int_equal(ts_append(s, MH_RECORD_EVENT, 5, "event", big, big_len), -EMSGSIZE);
	append_ok(s, MH_RECORD_READING, 5, "reading/m-0001", "{}");
	free(big);
	assert_int_equal(mh_outbox_acks_pending(s->ob), 2);
	assert_int_equal(ts_commit(s), 0);
	assert_int_equal(mh_outbox_acks_pending(s->ob), 0);
	expect_seqs(s, 0, 100, "3,4,5");
	assert_true(ts_take_drops(s, &drops));
	assert_int_equal(drops.lost, 1);
	ts_close(s);
	s = open_ok(f->path);
	expect_seqs(s, 0, 100, "3,4,5");
	assert_int_equal(ts_next_seq(s), 6);
	ts_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_append_commit_scan),
		T(test_scan_sees_only_committed),
		T(test_ack),
		T(test_seq_survives_reopen),
		T(test_close_commits),
		T(test_crash_loses_only_pending),
		T(test_crash_loses_only_the_held_turn),
		T(test_acks_join_a_held_turn),
		T(test_any_commit_takes_the_acks_along),
		T(test_counter_row_only_when_needed),
		T(test_scan_after_and_max),
		T(test_stats),
		T(test_creates_directory),
		T(test_full_store_drops_oldest_readings),
		T(test_full_store_without_readings),
		T(test_record_larger_than_store),
		T(test_acks_and_appends_share_a_turn),
		T(test_foreign_lmdb_refused),
		T(test_newer_schema_refused),
		T(test_regular_file_refused),
		T(test_garbage_data_refused),
		T(test_readonly_scans_both_ways),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
