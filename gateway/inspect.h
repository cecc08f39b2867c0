/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A read-only view of a gateway's store, for meterhub-ctl: the records in
 * the outbox, what they add up to, the interval builders' state and
 * whether a daemon holds the store. It opens beside a running daemon and
 * never takes its lock or writes (see mh_db_open_readonly()).
 *
 * Every read is one short LMDB read transaction whose records are copied
 * out before anything is printed, so a slow reader of the output never
 * holds a snapshot the daemon would have to grow around; SIGINT, SIGTERM,
 * SIGHUP, SIGQUIT and SIGTSTP are held off while a transaction lasts, so a
 * reader stopped or killed from the keyboard never leaves one open.
 *
 * What it cannot know: a record the broker acknowledged is deleted, so the
 * outbox shows only what is still waiting (sent or not).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* What a record is, as an operator names it: the outbox's types, daily and monthly apart. */
enum mh_inspect_kind {
	MH_INSPECT_READING,
	MH_INSPECT_INTERVAL,
	MH_INSPECT_DAILY,
	MH_INSPECT_MONTHLY,
	MH_INSPECT_EVENT,
	MH_INSPECT_CMD_RESULT,
	MH_INSPECT_OTHER, /* a type this version does not know */
};
#define MH_INSPECT_KINDS 7

/* "reading", "interval", "daily", "monthly", "event", "cmd_result" or "other". */
const char *mh_inspect_kind_name(enum mh_inspect_kind kind);

/* The kind named @name (not "other"), or -EINVAL. */
int mh_inspect_kind_parse(const char *name);

struct mh_inspect;

/*
 * Open the store in @path for reading; @max_bytes is store.max_bytes (0
 * when not known). Refuses as mh_db_open_readonly() does, and -ENOENT for
 * a store without an outbox. Returns 0 and *@out, or a negative errno with
 * the reason in @why.
 */
int mh_inspect_open(const char *path, uint64_t max_bytes, struct mh_inspect **out, char *why,
	size_t why_len);

/* Close; NULL is a no-op. */
void mh_inspect_free(struct mh_inspect *in);

/* One record as stored; the strings are NUL-terminated and live during the callback. */
struct mh_inspect_record {
	uint64_t seq;
	enum mh_inspect_kind kind;
	int64_t created_ms;
	const char *subtopic; /* under topic_prefix: "reading/m-0001", "event", ... */
	const char *payload;  /* the JSON published */
	size_t payload_len;
};

struct mh_inspect_filter {
	uint64_t from, to;  /* seqs, inclusive; 0: no bound */
	int kind;           /* an enum mh_inspect_kind, or -1 for all */
	const char *meter;  /* NULL for all; events and results without "meter" never match */
};

/*
 * Call @fn for each record that matches @f, in seq order: the records
 * stored when the walk began that are still there when it reaches them
 * (it reads a chunk at a time; records appended after it began are left
 * for the next walk). Returns 0, the first non-zero value of @fn, or a
 * negative errno.
 */
int mh_inspect_each(struct mh_inspect *in, const struct mh_inspect_filter *f,
	int (*fn)(void *ud, const struct mh_inspect_record *rec), void *ud);

/* What the store says of one meter's last good reading. */
struct mh_inspect_meter {
	char *id;
	char *bus;          /* NULL when neither the config nor a reading says */
	int64_t reading_ms; /* read time of its newest good reading in the outbox; 0: none */
	int64_t builder_ms; /* its interval builder's last good boundary read; 0: none */
	bool configured;    /* in the configuration given */
};

struct mh_inspect_bus {
	char *name;
	int64_t last_good_ms;  /* 0: none known */
	const char *meter;     /* whose reading that was */
	bool from_builder;     /* known from the interval builder, not from a reading record */
	bool configured;
};

struct mh_inspect_status {
	int held;  /* 1: a meterhub holds the store, 0: none, < 0: cannot tell (-errno) */
	long pid;  /* the holder, 0 when not known */
	uint64_t backlog;                        /* records waiting */
	uint64_t by_kind[MH_INSPECT_KINDS];
	uint64_t oldest_seq, newest_seq;         /* 0 when empty */
	int64_t oldest_ms;                       /* when the oldest was stored */
	uint64_t used_bytes;                     /* the outbox's pages */
	uint64_t max_bytes;                      /* store.max_bytes; 0 when not known */
	uint64_t map_bytes, map_used_bytes;      /* the LMDB map and how much of it was ever used */
	uint64_t next_seq;                       /* the seq the daemon takes next */
	struct mh_inspect_meter *meters;         /* configured ones first, in config order */
	size_t n_meters;
	struct mh_inspect_bus *buses;            /* configured ones first, in config order */
	size_t n_buses;
};

/*
 * Fill @st: counts and ages from one read of the outbox, newest first; each
 * meter's last good reading from its newest good reading record there and
 * from its interval builder's state, whichever is newer; buses (from @cfg,
 * or when it is NULL from the readings' "bus") the newest of their meters.
 * Returns 0 or a negative errno; release @st with mh_inspect_status_deinit().
 */
int mh_inspect_status(struct mh_inspect *in, const struct mh_config *cfg,
	struct mh_inspect_status *st);

void mh_inspect_status_deinit(struct mh_inspect_status *st);
