// SPDX-License-Identifier: MIT
/*
 * Ingest benchmark: records/s into the outbox with group commits (one synced
 * commit per batch, as the daemon does per loop turn) against one synced
 * commit per record, measured side by side in the same run.
 *
 *   bench_ingest DIR RECORDS BATCH
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "outbox.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double ingest(const char *dir, unsigned long n, unsigned long batch)
{
	struct mh_db *db;
	struct mh_outbox *store;
	char buf[400];
	double start;

	if (mh_db_open(dir, 1ull << 30, &db) < 0 || mh_outbox_open(db, 1ull << 30, &store) < 0) {
		fprintf(stderr, "cannot open %s\n", dir);
		exit(1);
	}
	memset(buf, 'x', sizeof(buf));
	start = now_s();
	for (unsigned long i = 0; i < n; i++) {
		if (mh_outbox_append(store, MH_RECORD_READING, 0, "reading/m-0001", buf, 300) < 0)
			exit(1);
		if ((i + 1) % batch == 0)
			mh_db_commit(db);
	}
	mh_db_commit(db);
	double rate = (double)n / (now_s() - start);
	mh_outbox_free(store);
	mh_db_close(db);
	return rate;
}

int main(int argc, char **argv)
{
	char grouped[512], single[512];

	if (argc != 4) {
		fprintf(stderr, "usage: bench_ingest DIR RECORDS BATCH\n");
		return 2;
	}
	unsigned long n = strtoul(argv[2], NULL, 10), batch = strtoul(argv[3], NULL, 10);
	snprintf(grouped, sizeof(grouped), "%s/grouped", argv[1]);
	snprintf(single, sizeof(single), "%s/single", argv[1]);
	/* The per-record run is far slower; a tenth of the records says as much. */
	double per_record = ingest(single, n / 10 ? n / 10 : 1, 1);
	double group = ingest(grouped, n, batch);
	printf("ingest: 300-byte records\n");
	printf("  one commit per record:       %10.0f records/s (%lu records)\n", per_record,
		n / 10);
	printf("  one commit per %4lu records: %10.0f records/s (%lu records)\n", batch, group, n);
	printf("  ratio grouped/per-record: %.1f\n", group / per_record);
	return 0;
}
