// SPDX-License-Identifier: MIT
/*
 * Secret memory (gateway/secret.h): its pages are marked for exclusion
 * from core dumps, as the kernel reports in /proc/self/smaps ("dd" in
 * VmFlags), start zeroed and hold what is written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "secret.h"

/* The VmFlags line of the mapping that holds @p, into @flags. */
static bool vm_flags(const void *p, char *flags, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[256];
	bool inside = false, found = false;

	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		/* A mapping's first line starts with its hex range "lo-hi". */
		if (strspn(line, "0123456789abcdef") && line[strspn(line, "0123456789abcdef")] == '-' &&
			sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, cap, "%.200s", line + 8);
			found = true;
		}
	}
	fclose(f);
	return found;
}

static void test_secret_pages_are_not_dumped(void **state)
{
	char flags[208];
	uint8_t *key = mh_secret_alloc(300);

	(void)state;
	assert_non_null(key);
	/* qemu-user takes madvise() and does nothing with it: nothing to see there. */
	if (getenv("MESON_EXE_WRAPPER")) {
		mh_secret_free(key, 300);
		skip();
	}
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(key[i], 0);
	memset(key, 0xA5, 300);
	assert_true(vm_flags(key, flags, sizeof(flags)));
	assert_non_null(strstr(flags, " dd"));
	mh_secret_free(key, 300);
	mh_secret_free(NULL, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_pages_are_not_dumped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
