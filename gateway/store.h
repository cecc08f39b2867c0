/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The outbox: every record the gateway produces, in LMDB, under an 8-byte
 * big-endian seq key, until the broker has acknowledged it. Only the loop
 * thread calls these. Writes are grouped: appends and acknowledgements
 * collect in one write transaction that mh_store_commit() makes durable.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a record is; decides its topic and, when the store is full, its fate. */
enum mh_record_type {
	MH_RECORD_READING = 1,
	MH_RECORD_INTERVAL = 2,
	MH_RECORD_DAILY = 3,
	MH_RECORD_EVENT = 4,
	MH_RECORD_CMD_RESULT = 5,
};

struct mh_record {
	uint64_t seq;
	enum mh_record_type type;
	int64_t created_ms;
	const char *subtopic; /* under topic_prefix, e.g. "reading/m-0001"; not NUL-terminated */
	size_t subtopic_len;
	const char *payload;
	size_t payload_len;
};

struct mh_store;

/*
 * Open (creating if needed) the store in directory @path. Records may use
 * up to @max_bytes; past that, appending drops the oldest records to make
 * room: readings first, every other type only when no reading is left.
 * Refuses a directory holding a foreign, corrupt or newer-format database
 * and leaves it untouched. Returns 0 and *@out, or a negative errno.
 *
 * Durability: each mh_store_commit() that adds records is one synced LMDB
 * commit. A power cut loses at most what was appended since the last
 * commit; those records were never published nor acknowledged to anyone.
 * Commits that only delete acknowledged records skip the fsync: a power cut
 * may undo them, so those records are sent again (duplicates, not gaps).
 */
int mh_store_open(const char *path, uint64_t max_bytes, struct mh_store **out);

/* Commit what is pending and close; NULL is a no-op. */
void mh_store_close(struct mh_store *store);

/* The seq the next append will take. Never repeats, also across restarts. */
uint64_t mh_store_next_seq(const struct mh_store *store);

/*
 * Add a record with seq mh_store_next_seq() to the pending transaction.
 * Returns 0, or -ENOSPC (store full), -EIO.
 */
int mh_store_append(struct mh_store *store, enum mh_record_type type, int64_t created_ms,
	const char *subtopic, const char *payload, size_t payload_len);

/* Records the store had to give up since the last mh_store_take_drops(). */
struct mh_store_drops {
	uint64_t by_type[MH_RECORD_CMD_RESULT + 1]; /* dropped to make room, by type */
	uint64_t first_seq, last_seq;               /* range of the dropped seqs */
	uint64_t lost; /* appends that failed outright (the map filled up) */
};

/*
 * Move the committed drops into @out and reset them. Returns whether there
 * were any.
 */
bool mh_store_take_drops(struct mh_store *store, struct mh_store_drops *out);

/* Delete record @seq (acknowledged by the broker) in the pending transaction. */
int mh_store_ack(struct mh_store *store, uint64_t seq);

/* Make everything pending durable in one synced commit. Returns 0 or -errno. */
int mh_store_commit(struct mh_store *store);

/*
 * Call @fn for up to @max committed records with seq > @after, in seq order.
 * The record's memory is valid only during the call. Stops early when @fn
 * returns non-zero. Returns the number visited, or a negative errno.
 */
int mh_store_scan(struct mh_store *store, uint64_t after, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud);

struct mh_store_stats {
	uint64_t records;    /* records waiting for acknowledgement */
	uint64_t oldest_seq; /* 0 when empty */
	int64_t oldest_ms;   /* creation time of the oldest waiting record */
	uint64_t used_bytes; /* pages in use */
	uint64_t max_bytes;
};

/* Fill @st from committed data. Returns 0 or a negative errno. */
int mh_store_stats(struct mh_store *store, struct mh_store_stats *st);
