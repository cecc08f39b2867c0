/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The outbox: every record the gateway produces, in the database's
 * "outbox" table under an 8-byte big-endian seq key, until the broker has
 * acknowledged it. Only the loop thread calls these.
 *
 * Appends go into the database's turn (see db.h) and become durable with
 * its commit. Acknowledgements are remembered in memory and deleted in
 * batches, each batch a unit of work of its own: a deletion that fails
 * stays remembered and is tried again, and can never undo an append.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

/* What a record is; decides its topic and, when the store is full, its fate. */
enum mh_record_type {
	MH_RECORD_READING = 1,
	MH_RECORD_INTERVAL = 2,
	MH_RECORD_DAILY = 3,
	MH_RECORD_EVENT = 4,
	MH_RECORD_CMD_RESULT = 5,
};
#define MH_RECORD_TYPES 6

/* "reading", "interval", ... */
const char *mh_record_type_name(enum mh_record_type type);

struct mh_record {
	uint64_t seq;
	enum mh_record_type type;
	int64_t created_ms;
	const char *subtopic; /* under topic_prefix, e.g. "reading/m-0001"; not NUL-terminated */
	size_t subtopic_len;
	const char *payload;
	size_t payload_len;
};

struct mh_outbox;

/*
 * The outbox of @db, holding at most @max_bytes of records: past that,
 * appending drops the oldest records to make room, readings first, every
 * other type only when no reading is left. Returns 0 and *@out, or -errno.
 */
int mh_outbox_open(struct mh_db *db, uint64_t max_bytes, struct mh_outbox **out);

/* Free (the database stays open); NULL is a no-op. */
void mh_outbox_free(struct mh_outbox *ob);

/* The seq the next append takes. */
uint64_t mh_outbox_next_seq(const struct mh_outbox *ob);

/*
 * Append a record with seq mh_outbox_next_seq() inside the unit of work
 * @txn (from mh_db_begin()), making room first. Returns 0, or -EMSGSIZE (the
 * record could not fit even in an empty outbox), -ENOSPC, -EIO; after an
 * error the caller must undo the unit.
 */
int mh_outbox_put(struct mh_outbox *ob, MDB_txn *txn, enum mh_record_type type,
	int64_t created_ms, const char *subtopic, const char *payload, size_t payload_len);

/*
 * Append a record as a unit of work of its own. A record that cannot be
 * stored is counted as lost (see mh_outbox_take_drops()). Returns 0 or -errno.
 */
int mh_outbox_append(struct mh_outbox *ob, enum mh_record_type type, int64_t created_ms,
	const char *subtopic, const char *payload, size_t payload_len);

/* Records the outbox had to give up, since the last mh_outbox_take_drops(). */
struct mh_outbox_drops {
	uint64_t by_type[MH_RECORD_TYPES]; /* committed drops to make room, by type */
	uint64_t first_seq, last_seq;      /* range of the dropped seqs */
	uint64_t lost; /* records that never made it into the store */
};

/* Move the drops into @out and reset them. Returns whether there were any. */
bool mh_outbox_take_drops(struct mh_outbox *ob, struct mh_outbox_drops *out);

/* The broker acknowledged @seq: delete it with the next mh_outbox_flush_acks(). */
void mh_outbox_ack(struct mh_outbox *ob, uint64_t seq);

/* Acknowledgements not yet committed as deletions. */
size_t mh_outbox_acks_pending(const struct mh_outbox *ob);

/*
 * Delete the acknowledged records in one unit of work, then commit the
 * database's turn, unless it is held for a group commit (mh_db_hold()):
 * then the deletions are committed with it. Acknowledgements whose deletion
 * fails stay for the next call. Returns 0 or a negative errno. Every commit
 * of the database takes the acknowledged deletions along by itself
 * (mh_db_before_commit()); this is for when none comes soon.
 */
int mh_outbox_flush_acks(struct mh_outbox *ob);

/*
 * Call @fn for up to @max committed records with seq > @after, in seq order,
 * passing over those already acknowledged. The record's memory is valid only
 * during the call. Stops early when @fn returns non-zero. Returns the number
 * visited, or a negative errno.
 */
int mh_outbox_scan(struct mh_outbox *ob, uint64_t after, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud);

struct mh_outbox_stats {
	uint64_t records;    /* records waiting for acknowledgement */
	uint64_t oldest_seq; /* 0 when empty */
	int64_t oldest_ms;   /* creation time of the oldest waiting record */
	uint64_t used_bytes; /* pages in use */
	uint64_t max_bytes;
};

/* Fill @st from committed data. Returns 0 or a negative errno. */
int mh_outbox_stats(struct mh_outbox *ob, struct mh_outbox_stats *st);

/*
 * The outbox of a database from mh_db_open_readonly(), for reading beside
 * the daemon: mh_outbox_scan(), mh_outbox_scan_back() and mh_outbox_stats()
 * see every record the store holds (acknowledgements are the daemon's, in
 * its memory, until it deletes those records); nothing else may be called.
 * Returns 0 and *@out, -ENOENT when the store has no outbox, or -errno.
 */
int mh_outbox_open_readonly(struct mh_db *db, uint64_t max_bytes, struct mh_outbox **out);

/*
 * As mh_outbox_scan(), newest first: up to @max committed records with
 * seq < @before (UINT64_MAX: from the newest), in falling seq order.
 */
int mh_outbox_scan_back(struct mh_outbox *ob, uint64_t before, size_t max,
	int (*fn)(void *ud, const struct mh_record *rec), void *ud);
