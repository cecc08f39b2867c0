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

static void emit(struct mh_yamldoc *y, const char *line)
{
	if (y->on_error)
		y->on_error(y->ud, line);
	else
		fprintf(stderr, "%s\n", line);
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
	if (++y->errors > MH_YAMLDOC_MAX_ERRORS)
		return;
	emit(y, out);
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

void mh_yamldoc_finish(struct mh_yamldoc *y)
{
	char out[1024];

	if (y->errors <= MH_YAMLDOC_MAX_ERRORS)
		return;
	snprintf(out, sizeof(out), "%s: ... %u more errors not shown", y->file ? y->file : "?",
		y->errors - MH_YAMLDOC_MAX_ERRORS);
	emit(y, out);
}

/* ---- excerpts -------------------------------------------------------- */

/* Bytes in the UTF-8 sequence at @p, or 0 when it is not a well-formed one. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3
		 : (*p & 0xF8) == 0xF0 ? 4 : 0;

	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

char *mh_yamldoc_excerpt(char buf[MH_YAMLDOC_EXCERPT_SIZE], const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t out = 0;

	for (unsigned chars = 0; *p; chars++) {
		size_t n = utf8_len(p);

		if (chars == MH_YAMLDOC_EXCERPT_CHARS) {
			memcpy(buf + out, "...", 3);
			out += 3;
			break;
		}
		if (*p == '\n' || *p == '\t' || *p == '\r') {
			buf[out++] = '\\';
			buf[out++] = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
			p++;
		} else if (n == 0 || *p < 0x20 || *p == 0x7F) {
			snprintf(buf + out, 5, "\\x%02X", *p);
			out += 4;
			p++;
		} else {
			memcpy(buf + out, p, n);
			out += n;
			p += n;
		}
	}
	buf[out] = '\0';
	return buf;
}

const char *mh_yamldoc_show(struct mh_yamldoc *y, const char *s)
{
	char *buf = y->shown[y->next_shown++ % (sizeof(y->shown) / sizeof(y->shown[0]))];

	return mh_yamldoc_excerpt(buf, s);
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
	char shown[MH_YAMLDOC_EXCERPT_SIZE];

	/* A key comes from the file: it is quoted like any other value. */
	return path_append(y, "%s%s", y->path_len ? "." : "", mh_yamldoc_excerpt(shown, key));
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
	if (node->type == YAML_SCALAR_NODE && !is_null(node)) {
		/* "\0" in a quoted scalar would cut every string it reaches without a word. */
		if (strlen(mh_yamldoc_scalar(node)) == node->data.scalar.length)
			return true;
		mh_yamldoc_error(y, node, "\"%s\" is followed by a NUL character (\\0), which no "
					  "value may hold",
			mh_yamldoc_show(y, mh_yamldoc_scalar(node)));
		return false;
	}
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

yaml_node_t *mh_yamldoc_map_value(struct mh_yamldoc *y, const yaml_node_t *node, const char *key)
{
	if (node->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
		pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = mh_yamldoc_node(y, pair->key);

		if (k->type == YAML_SCALAR_NODE && !strcmp(mh_yamldoc_scalar(k), key))
			return mh_yamldoc_node(y, pair->value);
	}
	return NULL;
}

/* ---- documents ------------------------------------------------------- */

/*
 * Line and column of byte @offset, counted as libyaml counts marks: lines
 * end at \n, \r\n, \r, U+0085, U+2028 and U+2029; a column is a character,
 * not a byte; a byte order mark takes none. The bytes before @offset were
 * decoded by libyaml, so they are well-formed UTF-8.
 */
static void text_position(const unsigned char *text, size_t len, size_t offset, unsigned *line,
	unsigned *col)
{
	size_t i = 0;

	*line = *col = 1;
	if (offset > len)
		offset = len;
	if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
		i = 3;
	for (; i < offset; i++) {
		const unsigned char *p = text + i;

		if (*p == '\n' || (*p == '\r' && (i + 1 >= len || p[1] != '\n')) ||
			(*p == 0xC2 && i + 1 < len && p[1] == 0x85) ||
			(*p == 0xE2 && i + 2 < len && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))) {
			(*line)++;
			*col = 1;
			i += *p == 0xC2 ? 1 : *p == 0xE2 ? 2 : 0;
		} else if (*p != '\r' && (*p & 0xC0) != 0x80) {
			(*col)++;
		}
	}
}

static int parser_error(struct mh_yamldoc *y, const yaml_parser_t *parser,
	const unsigned char *text, size_t len)
{
	const char *hint;
	unsigned line, col;

	switch (parser->error) {
	case YAML_MEMORY_ERROR:
		return -ENOMEM;
	case YAML_READER_ERROR:
		/* The reader gives a byte offset; its marks stay at the start of the file. */
		text_position(text, len, parser->problem_offset, &line, &col);
		hint = strstr(parser->problem, "UTF-8") ? "; the file must be UTF-8" : "";
		if (parser->problem_value >= 0)
			error_at_mark(y, line, col, "invalid character: %s (0x%02X)%s",
				parser->problem, (unsigned)parser->problem_value, hint);
		else
			error_at_mark(y, line, col, "invalid character: %s%s", parser->problem, hint);
		return -EINVAL;
	default:
		error_at_mark(y, (unsigned)parser->problem_mark.line + 1,
			(unsigned)parser->problem_mark.column + 1, "YAML syntax error: %s%s%s",
			parser->problem ? parser->problem : "malformed document",
			parser->context ? " " : "", parser->context ? parser->context : "");
		return -EINVAL;
	}
}

/*
 * Run the parser over the text once, without building anything, to refuse
 * what the document loader would choke on or silently drop: nesting deeper
 * than MH_YAMLDOC_MAX_DEPTH (found at the first collection too deep, before
 * libyaml has scanned the rest) and a second document after "---".
 */
static int check_events(struct mh_yamldoc *y, const unsigned char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t event;
	unsigned depth = 0, documents = 0;
	int rc = 0;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, text, len);
	for (bool end = false; !end && !rc;) {
		if (!yaml_parser_parse(&parser, &event)) {
			rc = parser_error(y, &parser, text, len);
			break;
		}
		switch (event.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++documents > 1) {
				error_at_mark(y, (unsigned)event.start_mark.line + 1,
					(unsigned)event.start_mark.column + 1,
					"a second YAML document; a configuration is one document "
					"(remove the \"---\" or what follows it)");
				rc = -EINVAL;
			}
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > MH_YAMLDOC_MAX_DEPTH) {
				error_at_mark(y, (unsigned)event.start_mark.line + 1,
					(unsigned)event.start_mark.column + 1,
					"lists and mappings nested more than %d deep; a configuration "
					"needs a handful",
					MH_YAMLDOC_MAX_DEPTH);
				rc = -EINVAL;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		case YAML_STREAM_END_EVENT:
			end = true;
			break;
		default:
			break;
		}
		yaml_event_delete(&event);
	}
	yaml_parser_delete(&parser);
	return rc;
}

int mh_yamldoc_load(struct mh_yamldoc *y, const char *file, const unsigned char *text,
	size_t len)
{
	yaml_parser_t parser;
	int rc;

	mh_yamldoc_unload(y);
	y->file = file;
	mh_yamldoc_path_pop(y, 0);
	if (len > MH_YAMLDOC_MAX_BYTES) {
		error_at_mark(y, 1, 1,
			"the file is larger than %u MiB, far more than a configuration needs; is it "
			"the right file?",
			MH_YAMLDOC_MAX_BYTES >> 20);
		return -EINVAL;
	}
	rc = check_events(y, text, len);
	if (rc)
		return rc;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, text, len);
	if (!yaml_parser_load(&parser, &y->doc)) {
		/* What is left for the second pass: undefined aliases, memory. */
		rc = parser_error(y, &parser, text, len);
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
