/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Typed bus jobs. The loop makes a job for a meter, hands it to the
 * meter's bus, and gets the same object back through the bus's completion
 * queue, filled in; it then calls job->done on the loop thread. A bus
 * thread reads only what the job carries and the slot of its meter; all
 * runtime state stays with the loop: a job carries everything the bus
 * needs (a control job its password and deadline), so the bus never looks
 * into the configuration for it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dlt645.h"
#include "modbus_regs.h"
#include "queue.h"

enum mh_job_kind {
	MH_JOB_READ,
	MH_JOB_FROZEN, /* DL/T 645: a daily freeze the meter kept, and the one before it */
	MH_JOB_CONTROL, /* a relay command: one control frame (or write), no read-back */
	MH_JOB_RECALL,  /* read the relay state back (召测) */
	MH_JOB_CLOCK,   /* DL/T 645: read the meter's clock (date, then time) */
	MH_JOB_TIME_BROADCAST, /* DL/T 645: broadcast the gateway's time (0x08, no reply) */
};

enum mh_quality {
	MH_QUALITY_GOOD,
	MH_QUALITY_TIMEOUT,
	MH_QUALITY_ERROR,
};

/* "good", "timeout" or "error". */
const char *mh_quality_name(enum mh_quality q);

/* What a read brought back: the profile's points, in profile order. */
struct mh_reading {
	int64_t read_at_ms;   /* wall clock when the first frame went out */
	unsigned duration_ms; /* first frame out to last reply in */
	unsigned frames;      /* frames sent, retries included */
	enum mh_quality quality;
	char error[160]; /* why, when quality is not good */
	size_t n_values;
	double *values;
	bool *valid;
};

/* A daily freeze a DL/T 645 meter kept (0506xxxx): when, and its registers then. */
struct mh_frozen {
	int64_t at_ms; /* the freeze time the meter gives, as local time */
	double import[5], export[5]; /* total, then T1..T4 */
	size_t n_import, n_export;   /* how many the meter gave (0: none) */
};

/* How a control job reaches the meter. */
enum mh_control_how {
	MH_CONTROL_DLT645,	/* plain 0x1C with the job's password and deadline */
	MH_CONTROL_DLT645_BLOCK, /* 0x1C with the head-end's data field, unchanged */
	MH_CONTROL_MODBUS,	/* write one coil or register */
};

struct mh_control {
	enum mh_control_how how;
	struct mh_dlt645_control dlt645; /* MH_CONTROL_DLT645 */
	uint8_t block[MH_DLT645_MAX_DATA]; /* MH_CONTROL_DLT645_BLOCK */
	size_t block_len;
	struct { /* MH_CONTROL_MODBUS */
		enum mh_modbus_table table;
		uint16_t address, value;
	} write;
};

/* Where a Modbus meter shows its relay (MH_JOB_RECALL; DL/T 645 has status word 3). */
struct mh_relay_point {
	enum mh_modbus_table table;
	uint16_t address;
	uint16_t open_when;
};

/* The relay as the meter reported it. */
struct mh_relay {
	bool known;	      /* read: open is the actual state */
	bool open;	      /* tripped */
	bool has_commanded;   /* DL/T 645 also says what it was last told */
	bool commanded_open;  /* bit 6 */
	bool keep_power;      /* bit 12 (DL/T 645 only) */
	bool alarm;	      /* bit 7 (DL/T 645 only) */
	uint16_t raw;	      /* the status word or register as read */
};

struct mh_meter;
struct mh_job;

/* Called on the loop thread when the bus is done with @job (the callee frees it). */
typedef void (*mh_job_done_fn)(struct mh_job *job);

struct mh_job {
	struct mh_queue_node node;
	enum mh_job_kind kind;
	struct mh_meter *meter; /* the loop's runtime object; the bus uses only its slot */
	size_t slot;            /* the meter's place on its bus */
	int64_t due_ms;         /* the schedule boundary a read belongs to */
	bool late;              /* a retry of the boundary's read, after the first failed */
	unsigned interval_ms;   /* MH_JOB_READ: the schedule's; a read that starts after the
				   next boundary is labelled with the boundary it is made in */
	bool canceled;          /* the bus stopped before running it */
	bool urgent;            /* submitted as priority: runs between two frames of a read */
	mh_job_done_fn done;
	void *ud;
	struct mh_reading reading; /* MH_JOB_READ; quality and error for every kind */
	int result;    /* MH_JOB_CONTROL, MH_JOB_RECALL: 0, or -ETIMEDOUT, -EBADMSG, -EACCES/-EPROTO/-ENODATA
			  (a DL/T 645 refusal, err), -EREMOTEIO (a Modbus exception), -ENODEV (the port) */
	uint8_t err;   /* DL/T 645 ERR byte or Modbus exception of a refusal */
	struct mh_control control;   /* MH_JOB_CONTROL */
	struct mh_relay_point relay_point; /* MH_JOB_RECALL, Modbus */
	struct mh_relay relay;	     /* MH_JOB_RECALL */
	/* MH_JOB_CLOCK: the meter's clock, and the wall time it was read at (mid-exchange). */
	int64_t meter_clock_ms, clock_read_at_ms;
	unsigned back;             /* MH_JOB_FROZEN: the freeze n days back, 1 = the last */
	unsigned attempt;          /* MH_JOB_FROZEN: tries of this job made before */
	struct mh_frozen frozen[2]; /* MH_JOB_FROZEN: freezes back and back + 1 */
};

/* A job of @kind that carries no point values; NULL without memory. */
struct mh_job *mh_job_new(enum mh_job_kind kind, struct mh_meter *meter, size_t slot,
	mh_job_done_fn done, void *ud);

/* A read job with room for @n_values points, zeroed; NULL without memory. */
struct mh_job *mh_job_new_read(struct mh_meter *meter, size_t slot, size_t n_values,
	mh_job_done_fn done, void *ud);

/* Free a job; NULL is a no-op. */
void mh_job_free(struct mh_job *job);

/* Forget what a read collected (it starts over). */
void mh_reading_clear(struct mh_reading *r);
