// SPDX-License-Identifier: MIT
#include "yamldoc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mh_yamldoc_init(struct mh_yamldoc *y, mh_config_error_fn on_error, void *ud)
{
	memset(y, 0, sizeof(*y));
	y->on_error = on_error;
	y->ud = ud;
}

static void report(struct mh_yamldoc *y, const char *file, unsigned line, unsigned col,
	const char *path, const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static void report(struct mh_yamldoc *y, const char *file, unsigned line, unsigned col,
	const char *path, const char *fmt, va_list ap)
{
	char msg[512], out[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (path && *path)
		snprintf(out, sizeof(out), "%s:%u:%u: %s: %s", file, line, col, path, msg);
	else
		snprintf(out, sizeof(out), "%s:%u:%u: %s", file, line, col, msg);
	y->errors++;
	if (y->on_error)
		y->on_error(y->ud, out);
	else
		fprintf(stderr, "%s\n", out);
}

void mh_yamldoc_error(struct mh_yamldoc *y, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(y, y->file, (unsigned)node->start_mark.line + 1,
		(unsigned)node->start_mark.column + 1, y->path, fmt, ap);
	va_end(ap);
}

void mh_yamldoc_error_at(struct mh_yamldoc *y, const struct mh_pos *pos, const char *path,
	const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(y, pos->file, pos->line, pos->col, path, fmt, ap);
	va_end(ap);
}

/* An error with no node to stand at (the parser's own, an empty file). */
__attribute__((format(printf, 4, 5))) static void error_at_mark(struct mh_yamldoc *y,
	unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(y, y->file, line, col, NULL, fmt, ap);
	va_end(ap);
}

/* ---- key path -------------------------------------------------------- */

static size_t path_append(struct mh_yamldoc *y, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static size_t path_append(struct mh_yamldoc *y, const char *fmt, ...)
{
	size_t saved = y->path_len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(y->path + saved, sizeof(y->path) - saved, fmt, ap);
	va_end(ap);
	/* A path too long for the buffer is cut, never overrun: it only labels messages. */
	if (n > 0)
		y->path_len = saved + (size_t)n < sizeof(y->path) ? saved + (size_t)n
								  : sizeof(y->path) - 1;
	return saved;
}

size_t mh_yamldoc_path_push_key(struct mh_yamldoc *y, const char *key)
{
	return path_append(y, "%s%s", y->path_len ? "." : "", key);
}

size_t mh_yamldoc_path_push_index(struct mh_yamldoc *y, size_t i)
{
	return path_append(y, "[%zu]", i);
}

void mh_yamldoc_path_pop(struct mh_yamldoc *y, size_t saved)
{
	y->path_len = saved;
	y->path[saved] = '\0';
}

/* ---- nodes ----------------------------------------------------------- */

struct mh_pos mh_yamldoc_pos(const struct mh_yamldoc *y, const yaml_node_t *node)
{
	return (struct mh_pos){
		.file = y->file,
		.line = (unsigned)node->start_mark.line + 1,
		.col = (unsigned)node->start_mark.column + 1,
	};
}

const char *mh_yamldoc_kind(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

static bool is_null(const yaml_node_t *node)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	const char *s = mh_yamldoc_scalar(node);

	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(s, nulls[i]))
			return true;
	return false;
}

bool mh_yamldoc_expect_scalar(struct mh_yamldoc *y, const yaml_node_t *node, const char *what)
{
	if (node->type == YAML_SCALAR_NODE && !is_null(node))
		return true;
	mh_yamldoc_error(y, node, "expected %s, found %s", what,
		node->type == YAML_SCALAR_NODE ? "nothing" : mh_yamldoc_kind(node));
	return false;
}

yaml_node_t *mh_yamldoc_root(struct mh_yamldoc *y)
{
	return yaml_document_get_root_node(&y->doc);
}

yaml_node_t *mh_yamldoc_node(struct mh_yamldoc *y, int index)
{
	return yaml_document_get_node(&y->doc, index);
}

/* ---- documents ------------------------------------------------------- */

static void parser_error(struct mh_yamldoc *y, const yaml_parser_t *parser)
{
	error_at_mark(y, (unsigned)parser->problem_mark.line + 1,
		(unsigned)parser->problem_mark.column + 1, "YAML syntax error: %s%s%s",
		parser->problem ? parser->problem : "malformed document",
		parser->context ? " " : "", parser->context ? parser->context : "");
}

int mh_yamldoc_load(struct mh_yamldoc *y, const char *file, const unsigned char *text,
	size_t len)
{
	yaml_parser_t parser;
	int rc = 0;

	mh_yamldoc_unload(y);
	y->file = file;
	mh_yamldoc_path_pop(y, 0);
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, text, len);
	if (!yaml_parser_load(&parser, &y->doc)) {
		rc = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
		if (rc == -EINVAL)
			parser_error(y, &parser);
	} else if (!mh_yamldoc_root(y)) {
		yaml_document_delete(&y->doc);
		error_at_mark(y, 1, 1, "the file is empty");
		rc = -EINVAL;
	} else {
		y->loaded = true;
	}
	yaml_parser_delete(&parser);
	return rc;
}

void mh_yamldoc_unload(struct mh_yamldoc *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	y->loaded = false;
}
