// SPDX-License-Identifier: MIT
#include "secret.h"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <unistd.h>

/* Whole pages, so no other data shares the dump exclusion (or the lock). */
static size_t pages(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (len + page - 1) / page * page;
}

void *mh_secret_alloc(size_t len)
{
	size_t n = pages(len ? len : 1);
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Never in a core file; without it a crash dump would carry the key. */
	if (madvise(p, n, MADV_DONTDUMP) < 0) {
		munmap(p, n);
		return NULL;
	}
	/* Not swapped out either, if the limits allow; without it still never dumped. */
	(void)mlock(p, n);
	return p;
}

void mh_secret_free(void *p, size_t len)
{
	size_t n = pages(len ? len : 1);

	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	munlock(p, n);
	munmap(p, n);
}
