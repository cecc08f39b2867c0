/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * One YAML document at a time, parsed with libyaml and walked by the schema:
 * positions (FILE:LINE:COL), the key path being walked ("buses[0].baud"),
 * and error lines in the form every config error takes. The error count
 * spans every document loaded through the same struct, so the built-in
 * profiles and the user's file add up to one verdict.
 *
 * (Not "yaml.h": config/ is on the include path, and <yaml.h> is libyaml's.)
 */

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "config.h"

/* A configuration is a few kilobytes; a file this large is some other file. */
#define MH_YAMLDOC_MAX_BYTES (4u << 20)
/*
 * The schema is six levels deep. libyaml (0.2.5) has no depth limit of its
 * own and grows slower than linearly with depth, so deeper nesting is
 * refused before the document is built.
 */
#define MH_YAMLDOC_MAX_DEPTH 64
/* Errors printed for one load; the rest are counted in one last line. */
#define MH_YAMLDOC_MAX_ERRORS 50
/* Characters of a value quoted in a message, so the reason after it always fits. */
#define MH_YAMLDOC_EXCERPT_CHARS 60
/* Room for an excerpt: each character may take four bytes (\xNN or UTF-8), then "...". */
#define MH_YAMLDOC_EXCERPT_SIZE (4 * MH_YAMLDOC_EXCERPT_CHARS + 4)

struct mh_yamldoc {
	yaml_document_t doc;
	bool loaded;      /* doc holds a document */
	const char *file; /* name in messages; the caller keeps it alive */
	char path[256];   /* key path of the node being walked */
	size_t path_len;
	unsigned errors; /* every error so far, across documents, shown or not */
	mh_config_error_fn on_error;
	void *ud;
	/* The last few excerpts, so one message can quote two values. */
	char shown[4][MH_YAMLDOC_EXCERPT_SIZE];
	unsigned next_shown;
};

/* Prepare @y; errors go to @on_error (stderr when NULL). */
void mh_yamldoc_init(struct mh_yamldoc *y, mh_config_error_fn on_error, void *ud);

/*
 * Parse @len bytes of @text, named @file in messages (the string must live
 * as long as the positions taken from it). Returns 0 with the document
 * held, -EINVAL when it is not one YAML document of sane size and depth
 * (the error is reported), or -ENOMEM.
 */
int mh_yamldoc_load(struct mh_yamldoc *y, const char *file, const unsigned char *text,
	size_t len);

/* Release the document held, if any. */
void mh_yamldoc_unload(struct mh_yamldoc *y);

/* The top node of the held document. */
yaml_node_t *mh_yamldoc_root(struct mh_yamldoc *y);

/* The node @index of a pair or a list, as libyaml numbers them. */
yaml_node_t *mh_yamldoc_node(struct mh_yamldoc *y, int index);

/* The value of the first @key of mapping @node, or NULL (also when @node is not a mapping). */
yaml_node_t *mh_yamldoc_map_value(struct mh_yamldoc *y, const yaml_node_t *node, const char *key);

/* Report "FILE:LINE:COL: key.path: what" at @node under the current key path. */
__attribute__((format(printf, 3, 4))) void mh_yamldoc_error(struct mh_yamldoc *y,
	const yaml_node_t *node, const char *fmt, ...);

/* Report an error found after parsing, at a remembered position and key path. */
__attribute__((format(printf, 4, 5))) void mh_yamldoc_error_at(struct mh_yamldoc *y,
	const struct mh_pos *pos, const char *path, const char *fmt, ...);

/*
 * Report, when errors were left unprinted, one line "FILE: ... N more
 * errors not shown". Call once, after the last document.
 */
void mh_yamldoc_finish(struct mh_yamldoc *y);

/*
 * @s as a message quotes it: at most MH_YAMLDOC_EXCERPT_CHARS characters,
 * then "..."; control characters escaped (\n, \t, \xNN) so an error
 * stays one line. Writes a NUL-terminated string of at most
 * MH_YAMLDOC_EXCERPT_SIZE bytes into @buf and returns @buf.
 */
char *mh_yamldoc_excerpt(char buf[MH_YAMLDOC_EXCERPT_SIZE], const char *s);

/* mh_yamldoc_excerpt() into one of @y's buffers; valid for the next three calls. */
const char *mh_yamldoc_show(struct mh_yamldoc *y, const char *s);

/* Append ".@key" (or "[@i]") to the key path; returns what mh_yamldoc_path_pop() restores. */
size_t mh_yamldoc_path_push_key(struct mh_yamldoc *y, const char *key);
size_t mh_yamldoc_path_push_index(struct mh_yamldoc *y, size_t i);
void mh_yamldoc_path_pop(struct mh_yamldoc *y, size_t saved);

/* Where @node starts, 1-based, in the held document. */
struct mh_pos mh_yamldoc_pos(const struct mh_yamldoc *y, const yaml_node_t *node);

/* A scalar node's text. */
static inline const char *mh_yamldoc_scalar(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

/* Entries of a list node. */
static inline size_t mh_yamldoc_seq_len(const yaml_node_t *node)
{
	return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
}

/* "a mapping", "a list" or "a scalar", for messages. */
const char *mh_yamldoc_kind(const yaml_node_t *node);

/*
 * Whether @node is a scalar with a value that can be used as a C string;
 * otherwise reports "expected @what, found ..." (or the NUL character in
 * it) and returns false.
 */
bool mh_yamldoc_expect_scalar(struct mh_yamldoc *y, const yaml_node_t *node, const char *what);
