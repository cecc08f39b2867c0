// SPDX-License-Identifier: MIT
#include "probe.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <uv.h>

#include "clock.h"
#include "job.h"
#include "log.h"
#include "reader.h"

/* One bus to probe, and what its meters said. */
struct bus_probe {
	const struct mh_bus_config *cfg;
	struct mh_job **jobs; /* one per meter of the bus; NULL for a meter not probed */
	size_t n_jobs;
	uv_thread_t thread;
	bool threaded;
};

/* Column widths of the table, so that its columns line up. */
struct widths {
	int id, bus, address, quality, ms, point;
};

/*
 * The process holding the lock on @device (a daemon reading that bus), from
 * /proc/locks; 0 when it cannot be told. The ports are locked with flock(),
 * which the kernel lists with the holder's pid and the device's inode.
 */
static long lock_holder(const char *device)
{
	struct stat st;
	char line[256];
	long holder = 0;
	FILE *f;

	if (stat(device, &st) < 0)
		return 0;
	f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	while (!holder && fgets(line, sizeof(line), f)) {
		char type[16];
		unsigned maj, min;
		unsigned long ino;
		long pid;

		/* "1: FLOCK  ADVISORY  WRITE 1234 00:19:5 0 EOF"; a waiter has "->" for FLOCK. */
		if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%lu", type, &pid, &maj, &min, &ino) ==
				5 &&
			!strcmp(type, "FLOCK") && pid > 0 && maj == major(st.st_dev) &&
			min == minor(st.st_dev) && ino == st.st_ino)
			holder = pid;
	}
	fclose(f);
	return holder;
}

/* Why the port could not be opened, as a reading says it: "in use by pid 12 (meterhub)". */
static void port_unavailable(const char *device, int err, char *buf, size_t len)
{
	char path[64], comm[64] = "";
	long pid;
	FILE *f;

	if (err != -EBUSY) {
		snprintf(buf, len, "port %s unavailable: %s", device, strerror(-err));
		return;
	}
	pid = lock_holder(device);
	if (!pid) {
		snprintf(buf, len, "port %s unavailable: in use by another process", device);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "re");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	snprintf(buf, len, "port %s unavailable: in use by pid %ld%s%s%s", device, pid,
		*comm ? " (" : "", comm, *comm ? ")" : "");
}

/* The job could not run: its reading says why, as the daemon's would. */
static void refuse(struct mh_job *job, const char *device, int err)
{
	struct mh_reading *r = &job->reading;

	mh_reading_clear(r);
	r->read_at_ms = mh_clock_wall_ms();
	r->quality = MH_QUALITY_ERROR;
	port_unavailable(device, err, r->error, sizeof(r->error));
}

/*
 * Read the bus's meters one after the other, in the calling thread, as the
 * daemon's bus thread does: one reader, one job per meter. A port that fails
 * under a read is opened again for the next meter.
 */
static void probe_bus(void *arg)
{
	struct bus_probe *bp = arg;
	struct mh_reader *reader = NULL;
	atomic_bool stop;
	int err = mh_reader_open(bp->cfg, &reader);

	atomic_init(&stop, false);
	for (size_t i = 0; i < bp->cfg->n_meters; i++) {
		struct mh_job *job = bp->jobs[i];

		if (!job)
			continue;
		if (!reader) {
			refuse(job, bp->cfg->device, err);
			continue;
		}
		if (mh_reader_run(reader, job, &stop) == -ENODEV) {
			mh_log_err(BUS, "%s: port %s failed (%s); opening it again", bp->cfg->name,
				bp->cfg->device, job->reading.error);
			mh_reader_free(reader);
			reader = NULL;
			err = mh_reader_open(bp->cfg, &reader);
		}
	}
	mh_reader_free(reader);
}

/* A value as the reading record publishes it (cJSON's number format). */
static void format_value(double v, char *buf, size_t len)
{
	cJSON *n = cJSON_CreateNumber(v);

	if (!n || !cJSON_PrintPreallocated(n, buf, (int)len, false))
		snprintf(buf, len, "%.17g", v);
	cJSON_Delete(n);
}

static void widen(int *w, int n)
{
	if (n > *w)
		*w = n;
}

/* One line of the table; with @w_out set, only measure it. */
static void row(const struct widths *w, struct widths *w_out, const struct mh_meter_config *m,
	const struct mh_bus_config *bus, const struct mh_reading *r, const char *point,
	const char *value)
{
	const char *quality = mh_quality_name(r->quality);
	char ms[16];

	snprintf(ms, sizeof(ms), "%u", r->duration_ms);
	if (w_out) {
		widen(&w_out->id, (int)strlen(m->id));
		widen(&w_out->bus, (int)strlen(bus->name));
		widen(&w_out->address, (int)strlen(m->address));
		widen(&w_out->quality, (int)strlen(quality));
		widen(&w_out->ms, (int)strlen(ms));
		widen(&w_out->point, (int)strlen(point));
		return;
	}
	printf("%-*s  %-*s  %-*s  %-*s  %*s  %-*s  %s\n", w->id, m->id, w->bus, bus->name,
		w->address, m->address, w->quality, quality, w->ms, ms, w->point, point, value);
}

/*
 * Every line, in configuration order: a line per point read (as published:
 * the points a failed read did get are shown too), then the error of a
 * reading that is not good.
 */
static void table(const struct bus_probe *bps, size_t n_buses, const struct widths *w,
	struct widths *w_out)
{
	char value[64];

	for (size_t b = 0; b < n_buses; b++) {
		const struct bus_probe *bp = &bps[b];

		for (size_t i = 0; i < bp->cfg->n_meters; i++) {
			const struct mh_meter_config *m = &bp->cfg->meters[i];
			const struct mh_job *job = bp->jobs[i];
			const struct mh_reading *r;

			if (!job)
				continue;
			r = &job->reading;
			for (size_t p = 0; p < r->n_values; p++) {
				if (!r->valid[p])
					continue;
				format_value(r->values[p], value, sizeof(value));
				row(w, w_out, m, bp->cfg, r, m->profile->points[p].name, value);
			}
			if (r->quality != MH_QUALITY_GOOD)
				row(w, w_out, m, bp->cfg, r, "-", r->error);
		}
	}
}

int mh_probe_run(const struct mh_config *cfg, const char *meter_id)
{
	struct bus_probe *bps = calloc(cfg->n_buses + 1, sizeof(*bps));
	size_t probed = 0, busy = 0, count[3] = { 0 };
	struct widths w = { 0 };
	int rc = 0;

	if (!bps)
		return -ENOMEM;
	for (size_t b = 0; b < cfg->n_buses && rc == 0; b++) {
		struct bus_probe *bp = &bps[b];

		bp->cfg = &cfg->buses[b];
		bp->jobs = calloc(bp->cfg->n_meters + 1, sizeof(*bp->jobs));
		if (!bp->jobs) {
			rc = -ENOMEM;
			break;
		}
		for (size_t i = 0; i < bp->cfg->n_meters; i++) {
			const struct mh_meter_config *m = &bp->cfg->meters[i];

			if (meter_id && strcmp(meter_id, m->id))
				continue;
			/* The reader looks only at the slot: no runtime object is needed. */
			bp->jobs[i] = mh_job_new_read(NULL, i, m->profile->n_points, NULL, NULL);
			if (!bp->jobs[i]) {
				rc = -ENOMEM;
				break;
			}
			bp->n_jobs++;
		}
		probed += bp->n_jobs;
		busy += bp->n_jobs > 0;
	}
	if (rc == 0 && meter_id && !probed)
		rc = -ENOENT;
	if (rc < 0)
		goto out;

	/* The buses in parallel, each read in a thread of its own; one bus in this thread. */
	for (size_t b = 0; b < cfg->n_buses; b++) {
		struct bus_probe *bp = &bps[b];

		if (!bp->n_jobs)
			continue;
		if (busy > 1 && uv_thread_create(&bp->thread, probe_bus, bp) == 0)
			bp->threaded = true;
		else
			probe_bus(bp);
	}
	for (size_t b = 0; b < cfg->n_buses; b++)
		if (bps[b].threaded)
			uv_thread_join(&bps[b].thread);

	table(bps, cfg->n_buses, NULL, &w);
	table(bps, cfg->n_buses, &w, NULL);
	for (size_t b = 0; b < cfg->n_buses; b++)
		for (size_t i = 0; i < bps[b].cfg->n_meters; i++)
			if (bps[b].jobs[i])
				count[bps[b].jobs[i]->reading.quality]++;
	printf("%zu meters: %zu good, %zu timeout, %zu error\n", probed, count[MH_QUALITY_GOOD],
		count[MH_QUALITY_TIMEOUT], count[MH_QUALITY_ERROR]);
	fflush(stdout);
	rc = (int)(probed - count[MH_QUALITY_GOOD]);

out:
	for (size_t b = 0; b < cfg->n_buses; b++) {
		if (!bps[b].jobs)
			continue;
		for (size_t i = 0; i < bps[b].cfg->n_meters; i++)
			mh_job_free(bps[b].jobs[i]);
		free(bps[b].jobs);
	}
	free(bps);
	return rc;
}
