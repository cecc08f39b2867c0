// SPDX-License-Identifier: MIT
#include "window.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define DAY_MS 86400000LL

/* @n decimal digits at @p as a number, or -1 when any is not a digit. */
static int digits(const char *p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to @y-@m-@d of the proleptic Gregorian calendar (H. Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD" at @p. */
static int parse_date(const char *p, int *y, int *m, int *d)
{
	*y = digits(p, 4);
	*m = p[4] == '-' ? digits(p + 5, 2) : -1;
	*d = p[7] == '-' ? digits(p + 8, 2) : -1;
	if (*y < 1970 || *m < 1 || *m > 12 || *d < 1 || *d > days_in_month(*y, *m))
		return -EINVAL;
	return 0;
}

int mh_rfc3339_parse(const char *text, struct mh_rfc3339 *t)
{
	int y, mo, d, h, mi, sec, off = 0, frac_ms = 0;
	const char *p;

	memset(t, 0, sizeof(*t));
	/* Each test reads a byte only when the ones before it were not the NUL. */
	y = digits(text, 4);
	mo = y >= 0 && text[4] == '-' ? digits(text + 5, 2) : -1;
	d = mo >= 0 && text[7] == '-' ? digits(text + 8, 2) : -1;
	if (d < 0 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
		return -EINVAL;
	/* RFC 3339 section 5.6: full-date "T" full-time, where "t" and "z" are allowed too. */
	if ((text[10] != 'T' && text[10] != 't') || (h = digits(text + 11, 2)) < 0 ||
		text[13] != ':' || (mi = digits(text + 14, 2)) < 0 || text[16] != ':' ||
		(sec = digits(text + 17, 2)) < 0)
		return -EINVAL;
	/* A leap second (:60) is refused: no time here has need of one. */
	if (h > 23 || mi > 59 || sec > 59)
		return -EINVAL;
	p = text + 19;
	if (*p == '.') {
		int scale = 100, n = 0;

		/* Milliseconds; further digits are allowed and dropped. */
		for (p++; *p >= '0' && *p <= '9'; p++, n++) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
		}
		if (!n)
			return -EINVAL;
	}
	if ((*p == 'Z' || *p == 'z') && !p[1]) {
		off = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh = digits(p + 1, 2), om = digits(p + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -EINVAL;
		off = (oh * 60 + om) * (*p == '-' ? -1 : 1);
	} else {
		return -EINVAL;
	}
	/* 08:00+08:00 is 00:00Z: the offset is what local time is ahead of UTC. */
	t->ms = days_from_civil(y, mo, d) * DAY_MS + ((int64_t)h * 3600 + mi * 60 + sec) * 1000 +
		frac_ms - (int64_t)off * 60000;
	t->offset_min = off;
	t->year = y, t->month = mo, t->day = d;
	return 0;
}

int mh_window_edge_parse(const char *text, struct mh_window_edge *e)
{
	struct mh_rfc3339 t;
	int y, mo, d;

	memset(e, 0, sizeof(*e));
	if (strlen(text) < 10 || parse_date(text, &y, &mo, &d) < 0)
		return -EINVAL;
	if (!text[10]) {
		e->is_date = true;
		e->year = y, e->month = mo, e->day = d;
		return 0;
	}
	if (mh_rfc3339_parse(text, &t) < 0)
		return -EINVAL;
	e->ms = t.ms;
	e->offset_min = t.offset_min;
	e->year = t.year, e->month = t.month, e->day = t.day;
	return 0;
}

bool mh_window_edge_ordered(const struct mh_window_edge *from, const struct mh_window_edge *to)
{
	if (!from->is_date && !to->is_date)
		return from->ms <= to->ms;
	/* A time's date as written is its date at its own offset. */
	return days_from_civil(from->year, from->month, from->day) <=
	       days_from_civil(to->year, to->month, to->day);
}

int mh_window_edge_resolve(const struct mh_window_edge *e, bool end, int64_t *ms)
{
	struct tm tm = { 0 };
	time_t t;

	if (!e->is_date) {
		*ms = e->ms;
		return 0;
	}
	tm.tm_year = e->year - 1900;
	tm.tm_mon = e->month - 1;
	tm.tm_mday = e->day + (end ? 1 : 0);
	tm.tm_isdst = -1; /* mktime() finds whether summer time applies that day */
	errno = 0;
	t = mktime(&tm);
	if (t == (time_t)-1 && errno)
		return -EINVAL;
	*ms = (int64_t)t * 1000;
	return 0;
}
