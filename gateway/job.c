// SPDX-License-Identifier: MIT
#include "job.h"

#include <stdlib.h>
#include <string.h>

const char *mh_quality_name(enum mh_quality q)
{
	switch (q) {
	case MH_QUALITY_GOOD:
		return "good";
	case MH_QUALITY_TIMEOUT:
		return "timeout";
	default:
		return "error";
	}
}

struct mh_job *mh_job_new_read(struct mh_meter *meter, size_t slot, size_t n_values,
	mh_job_done_fn done, void *ud)
{
	/* One block: the job, then the values, then the flags. */
	struct mh_job *job = calloc(1, sizeof(*job) + n_values * (sizeof(double) + sizeof(bool)));

	if (!job)
		return NULL;
	job->kind = MH_JOB_READ;
	job->meter = meter;
	job->slot = slot;
	job->done = done;
	job->ud = ud;
	job->reading.n_values = n_values;
	job->reading.values = (double *)(job + 1);
	job->reading.valid = (bool *)(job->reading.values + n_values);
	return job;
}

struct mh_job *mh_job_new(enum mh_job_kind kind, struct mh_meter *meter, size_t slot,
	mh_job_done_fn done, void *ud)
{
	struct mh_job *job = mh_job_new_read(meter, slot, 0, done, ud);

	if (job)
		job->kind = kind;
	return job;
}

void mh_job_free(struct mh_job *job)
{
	free(job);
}

void mh_reading_clear(struct mh_reading *r)
{
	memset(r->valid, 0, r->n_values * sizeof(bool));
	r->quality = MH_QUALITY_GOOD;
	r->error[0] = '\0';
}
