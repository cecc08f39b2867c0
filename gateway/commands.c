// SPDX-License-Identifier: MIT
#include "commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "job.h"
#include "log.h"
#include "records.h"
#include "schedule.h"
#include "secret.h"

/* Gateway-wide bound on accepted commands not finished (a meter has its own, commands.queue). */
#define MAX_ACTIVE 4096
/* Backoff between attempts doubles from commands.retry_backoff up to this. */
#define BACKOFF_MAX_MS 60000
/* Ids are remembered this long past the last moment their ts could pass the skew check. */
#define ID_KEEP_MS (24LL * 3600 * 1000)
/* Unauthenticated rejections are published at most this often (a token bucket). */
#define REJECT_BURST 20
#define REJECT_PER_MIN 10
/* Room for the HMAC key. */
#define KEY_CAP 256
/* Journal rows past their keep time are deleted this often. */
#define PRUNE_MS (3600 * 1000)

/* The journal's states, as stored (never renumber). */
enum jstate {
	J_ACCEPTED = 1,
	J_RETRYING = 2,
	J_SUCCEEDED = 3,
	J_FAILED = 4,
	J_EXPIRED = 5,
	J_REJECTED = 6,
};

static const char *const state_names[] = {
	[J_ACCEPTED] = "accepted",
	[J_RETRYING] = "retrying",
	[J_SUCCEEDED] = "succeeded",
	[J_FAILED] = "failed",
	[J_EXPIRED] = "expired",
	[J_REJECTED] = "rejected",
};

/*
 * A journal row: a 28-byte header, then the command's payload exactly as
 * it arrived (parsed again on resume; one parser, no second format).
 */
#define JOURNAL_VERSION 1
#define JOURNAL_HEADER 28

/* Where an accepted command is. */
enum phase {
	PH_WAITING,   /* queued behind another command of its meter, or not started */
	PH_CONTROL,   /* the control job is on the bus */
	PH_SETTLE,    /* waiting to read the relay back */
	PH_RECALL,    /* a recall job is on the bus */
	PH_BACKOFF,   /* waiting for the next attempt */
	PH_DONE,
};

struct mh_command {
	struct mh_command *next; /* in its meter's queue */
	struct mh_commands *owner;
	struct mh_meter *meter;
	struct mh_cmd cmd;
	char *payload; /* as it arrived; the journal keeps it */
	size_t payload_len;
	uint64_t order;	     /* seq of its accepted record: arrival order across restarts */
	int64_t received_ms; /* wall */
	enum jstate state;
	enum phase phase;
	unsigned attempts;
	int64_t attempt_mono; /* when the current attempt's control frame was sent */
	bool diagnosing;      /* the recall after a refusal: is keep-power the reason? */
	struct mh_relay relay; /* last read back */
	char reason[32];
	char detail[160];
	uv_timer_t timer;
	bool timer_open;
};

struct mh_commands {
	uv_loop_t *loop;
	const struct mh_config *cfg;
	const struct mh_commands_config *cc;
	struct mh_meter_set *meters;
	struct mh_db *db;
	struct mh_outbox *outbox;
	const struct mh_clock *clock;
	int (*commit)(void *ud);
	void *commit_ud;
	MDB_dbi journal;
	uint8_t *key; /* KEY_CAP bytes of secret memory (see secret.h) */
	size_t key_len;
	int64_t (*windows)[2];
	size_t n_windows;
	/* Journaled commands not finished, loaded at open, until resumed. */
	struct mh_command **resume;
	size_t n_resume;
	bool resumed, stopping;
	double tokens; /* for unauthenticated rejections */
	int64_t tokens_mono;
	uv_timer_t prune;
	struct mh_commands_stats stats;
};

/* ---- small pieces ------------------------------------------------------ */

static void set_reason(struct mh_command *cmd, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(struct mh_command *cmd, const char *reason, const char *fmt, ...)
{
	va_list ap;

	snprintf(cmd->reason, sizeof(cmd->reason), "%s", reason ? reason : "");
	cmd->detail[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(cmd->detail, sizeof(cmd->detail), fmt, ap);
		va_end(ap);
	}
}

static struct mh_meter *find_meter(struct mh_commands *c, const char *id)
{
	return mh_meter_find(c->meters, id);
}

static bool is_modbus(const struct mh_meter *m)
{
	return m->bus_cfg->protocol == MH_PROTO_MODBUS;
}

/* Whether @m can carry out @cmd; if not, why (into @detail). */
static bool supported(const struct mh_meter *m, const struct mh_cmd *cmd, char *detail, size_t cap)
{
	enum mh_cmd_action a = cmd->action;

	if (is_modbus(m)) {
		if (!m->cfg->profile->control.present) {
			snprintf(detail, cap, "profile %s has no control section", m->cfg->profile->name);
			return false;
		}
		if (a != MH_CMD_TRIP && a != MH_CMD_RESTORE && a != MH_CMD_RECALL) {
			snprintf(detail, cap, "a Modbus meter knows trip, restore and recall only");
			return false;
		}
		if (cmd->has_block) {
			snprintf(detail, cap, "a control block is for DL/T 645 meters");
			return false;
		}
		return true;
	}
	if (a == MH_CMD_RECALL)
		return true; /* status word 3 needs no password */
	if (cmd->has_block)
		return true; /* the head-end built the whole field; the meter judges it */
	if (!m->cfg->has_control) {
		snprintf(detail, cap, "neither meter %s nor profile %s has a control section",
			m->cfg->id, m->cfg->profile->name);
		return false;
	}
	if (m->cfg->control.esam) {
		snprintf(detail, cap, "meter %s takes encrypted commands only: send the control block",
			m->cfg->id);
		return false;
	}
	return true;
}

static bool in_protect_window(const struct mh_commands *c, int64_t now)
{
	for (size_t i = 0; i < c->n_windows; i++)
		if (now >= c->windows[i][0] && now < c->windows[i][1])
			return true;
	return false;
}

/* ---- journal --------------------------------------------------------- */

static int64_t keep_until(const struct mh_commands *c, const struct mh_cmd *cmd)
{
	int64_t t = cmd->ts_ms + (int64_t)c->cc->max_skew_ms;

	return (cmd->expires_ms > t ? cmd->expires_ms : t) + ID_KEEP_MS;
}

/* Put @cmd's row (state, attempts) into the unit of work @txn. */
static int journal_put(struct mh_commands *c, MDB_txn *txn, const struct mh_cmd *parsed,
	const char *payload, size_t len, enum jstate state, unsigned attempts, uint64_t order,
	int64_t received_ms)
{
	uint8_t *row = malloc(JOURNAL_HEADER + len);
	MDB_val k = { strlen(parsed->id), (void *)parsed->id }, v = { JOURNAL_HEADER + len, row };
	int rc;

	if (!row)
		return -ENOMEM;
	memset(row, 0, JOURNAL_HEADER);
	row[0] = JOURNAL_VERSION;
	row[1] = (uint8_t)state;
	row[2] = (uint8_t)(attempts > 255 ? 255 : attempts);
	mh_db_put_be64(row + 4, order);
	mh_db_put_be64(row + 12, (uint64_t)received_ms);
	mh_db_put_be64(row + 20, (uint64_t)keep_until(c, parsed));
	memcpy(row + JOURNAL_HEADER, payload, len);
	rc = mh_db_error(mdb_put(txn, c->journal, &k, &v, 0));
	free(row);
	return rc;
}

/* Whether the journal knows @id; *@same_sig whether with this signature. */
static bool journal_has(struct mh_commands *c, const struct mh_cmd *cmd, bool *same_sig)
{
	MDB_txn *txn;
	MDB_val k = { strlen(cmd->id), (void *)cmd->id }, v;
	bool found = false;

	*same_sig = false;
	/* Inside the turn's transaction: rows of this turn count too. */
	if (mh_db_begin(c->db, &txn) < 0)
		return false;
	if (mdb_get(txn, c->journal, &k, &v) == 0 && v.mv_size >= JOURNAL_HEADER) {
		struct mh_cmd old;
		char detail[8];
		found = true;
		if (mh_cmd_parse((const char *)v.mv_data + JOURNAL_HEADER,
			    v.mv_size - JOURNAL_HEADER, &old, detail, sizeof(detail)) == MH_CMD_OK &&
			old.has_sig && cmd->has_sig)
			*same_sig = CRYPTO_memcmp(old.sig, cmd->sig, sizeof(cmd->sig)) == 0;
	}
	mh_db_end(c->db, txn, false);
	return found;
}

/* ---- results ---------------------------------------------------------- */

static void add_string_or_null(cJSON *obj, const char *name, const char *s)
{
	if (s && *s)
		cJSON_AddStringToObject(obj, name, s);
	else
		cJSON_AddNullToObject(obj, name);
}

static void add_relay(cJSON *obj, const struct mh_relay *r, bool modbus)
{
	if (r->known)
		cJSON_AddStringToObject(obj, "relay", r->open ? "open" : "closed");
	else
		cJSON_AddNullToObject(obj, "relay");
	if (r->known && r->has_commanded)
		cJSON_AddStringToObject(obj, "commanded", r->commanded_open ? "open" : "closed");
	else
		cJSON_AddNullToObject(obj, "commanded");
	if (r->known && !modbus)
		cJSON_AddBoolToObject(obj, "keep_power", r->keep_power);
	else
		cJSON_AddNullToObject(obj, "keep_power");
}

/*
 * The cmd/result record for @parsed in @state, into @txn. @cmd (may be
 * NULL for a rejection) gives attempts, relay and timings.
 */
static int put_result(struct mh_commands *c, MDB_txn *txn, const struct mh_cmd *parsed,
	const struct mh_command *cmd, enum jstate state, const char *reason, const char *detail,
	int64_t now)
{
	cJSON *obj = mh_records_begin(c->outbox);
	char ts[40], received[40];
	char *json;
	int rc;

	if (!obj)
		return -ENOMEM;
	add_string_or_null(obj, "id", parsed->id);
	add_string_or_null(obj, "meter", parsed->meter);
	add_string_or_null(obj, "action", parsed->action_known ? mh_cmd_action_name(parsed->action)
							       : parsed->action_name);
	cJSON_AddStringToObject(obj, "state", state_names[state]);
	cJSON_AddNumberToObject(obj, "attempts", cmd ? cmd->attempts : 0);
	static const struct mh_relay unknown;
	add_relay(obj, cmd ? &cmd->relay : &unknown, cmd && is_modbus(cmd->meter));
	add_string_or_null(obj, "reason", reason);
	add_string_or_null(obj, "detail", detail);
	mh_schedule_format(now, false, ts, sizeof(ts));
	cJSON_AddStringToObject(obj, "ts", ts);
	if (cmd) {
		mh_schedule_format(cmd->received_ms, false, received, sizeof(received));
		cJSON_AddStringToObject(obj, "received", received);
		cJSON_AddNumberToObject(obj, "elapsed_ms", (double)(now - cmd->received_ms));
	}
	json = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (!json)
		return -ENOMEM;
	rc = mh_outbox_put(c->outbox, txn, MH_RECORD_CMD_RESULT, now, "cmd/result", json,
		strlen(json));
	free(json);
	return rc;
}

/*
 * One unit of work: @cmd's journal row in @state and its result record.
 * Returns 0 or a negative errno (logged; the unit is undone).
 */
static int record_state(struct mh_commands *c, struct mh_command *cmd, enum jstate state)
{
	int64_t now = mh_clock_wall_ms();
	MDB_txn *txn;
	int rc = mh_db_begin(c->db, &txn);

	if (rc == 0) {
		if (!cmd->order)
			cmd->order = mh_outbox_next_seq(c->outbox);
		rc = journal_put(c, txn, &cmd->cmd, cmd->payload, cmd->payload_len, state,
			cmd->attempts, cmd->order, cmd->received_ms);
		if (rc == 0)
			rc = put_result(c, txn, &cmd->cmd, cmd, state, cmd->reason, cmd->detail, now);
		int end = mh_db_end(c->db, txn, rc == 0);
		if (rc == 0)
			rc = end;
	}
	if (rc < 0)
		mh_log_err(CMD, "command %s: state %s not stored: %s", cmd->cmd.id, state_names[state],
			strerror(-rc));
	else
		cmd->state = state;
	return rc;
}

/* ---- running a command -------------------------------------------------- */

static void start_next(struct mh_commands *c, struct mh_meter *m);
static void run(struct mh_command *cmd);

static void on_timer_closed(uv_handle_t *h)
{
	struct mh_command *cmd = h->data;

	free(cmd->payload);
	free(cmd);
}

static void free_command(struct mh_command *cmd)
{
	if (cmd->timer_open) {
		uv_close((uv_handle_t *)&cmd->timer, on_timer_closed);
		return;
	}
	free(cmd->payload);
	free(cmd);
}

/* @cmd ended in @state: record it, take it off its meter, start the next one. */
static void finish(struct mh_command *cmd, enum jstate state)
{
	struct mh_commands *c = cmd->owner;
	struct mh_meter *m = cmd->meter;

	record_state(c, cmd, state);
	cmd->phase = PH_DONE;
	if (state == J_SUCCEEDED)
		c->stats.succeeded++;
	else if (state == J_FAILED)
		c->stats.failed++;
	else if (state == J_EXPIRED)
		c->stats.expired++;
	mh_log(state == J_SUCCEEDED ? LOG_NOTICE : LOG_WARNING, MH_LOG_CMD,
		"command %s (%s on %s): %s after %u attempts%s%s", cmd->cmd.id,
		mh_cmd_action_name(cmd->cmd.action), m->cfg->id, state_names[state], cmd->attempts,
		cmd->reason[0] ? ": " : "", cmd->detail[0] ? cmd->detail : cmd->reason);
	if (m->cmd_head == cmd) {
		m->cmd_head = cmd->next;
		if (!m->cmd_head)
			m->cmd_tail = NULL;
	}
	m->cmd_waiting--;
	c->stats.active--;
	free_command(cmd);
	start_next(c, m);
}

static void on_timer(uv_timer_t *t)
{
	run(t->data);
}

static void wait_then_run(struct mh_command *cmd, enum phase phase, uint64_t ms)
{
	cmd->phase = phase;
	uv_timer_start(&cmd->timer, on_timer, ms, 0);
}

/* The attempt failed for @reason: another after the backoff, or the end. */
static void attempt_failed(struct mh_command *cmd)
{
	struct mh_commands *c = cmd->owner;
	uint64_t backoff = c->cc->retry_backoff_ms;

	if (cmd->attempts >= c->cc->max_attempts) {
		finish(cmd, J_FAILED);
		return;
	}
	for (unsigned i = 1; i < cmd->attempts && backoff < BACKOFF_MAX_MS; i++)
		backoff *= 2;
	if (backoff > BACKOFF_MAX_MS)
		backoff = BACKOFF_MAX_MS;
	record_state(c, cmd, J_RETRYING);
	wait_then_run(cmd, PH_BACKOFF, backoff);
}

static void on_job_done(struct mh_job *job);

static void submit(struct mh_command *cmd, enum mh_job_kind kind)
{
	struct mh_meter *m = cmd->meter;
	struct mh_job *job = mh_job_new(kind, m, m->slot, on_job_done, cmd);

	cmd->phase = kind == MH_JOB_RECALL ? PH_RECALL : PH_CONTROL;
	if (!job) {
		/* Try again shortly rather than lose the command (run() submits it again). */
		uv_timer_start(&cmd->timer, on_timer, 100, 0);
		return;
	}
	if (kind == MH_JOB_RECALL) {
		const struct mh_modbus_relay_config *r = &m->cfg->profile->control.relay;
		job->relay_point = (struct mh_relay_point){ r->table, r->address, r->open_when };
	} else {
		struct mh_control *ctl = &job->control;
		const struct mh_cmd *p = &cmd->cmd;
		if (is_modbus(m)) {
			const struct mh_modbus_write_config *w = p->action == MH_CMD_TRIP
				? &m->cfg->profile->control.trip
				: &m->cfg->profile->control.restore;
			ctl->how = MH_CONTROL_MODBUS;
			ctl->write.table = w->table;
			ctl->write.address = w->address;
			ctl->write.value = w->value;
		} else if (p->has_block) {
			ctl->how = MH_CONTROL_DLT645_BLOCK;
			memcpy(ctl->block, p->block, p->block_len);
			ctl->block_len = p->block_len;
		} else {
			static const enum mh_dlt645_relay_action n1[] = {
				[MH_CMD_TRIP] = MH_DLT645_RELAY_TRIP,
				[MH_CMD_RESTORE] = MH_DLT645_RELAY_CLOSE,
				[MH_CMD_KEEP_POWER] = MH_DLT645_KEEP_POWER_ON,
				[MH_CMD_CANCEL_KEEP_POWER] = MH_DLT645_KEEP_POWER_OFF,
				[MH_CMD_ALARM_ON] = MH_DLT645_ALARM_ON,
				[MH_CMD_ALARM_OFF] = MH_DLT645_ALARM_OFF,
			};
			const struct mh_dlt645_control_config *a = &m->cfg->control;
			time_t deadline = (time_t)(p->expires_ms / 1000);
			ctl->how = MH_CONTROL_DLT645;
			/* The level is written in decimal and sent as BCD (98 is 0x98). */
			ctl->dlt645.auth.level = (uint8_t)(a->level / 10 << 4 | a->level % 10);
			memcpy(ctl->dlt645.auth.password, a->password, sizeof(a->password));
			memcpy(ctl->dlt645.auth.operator_code, a->operator_code,
				sizeof(a->operator_code));
			ctl->dlt645.action = n1[p->action];
			if (p->action == MH_CMD_RESTORE && a->close == MH_CLOSE_PERMIT)
				ctl->dlt645.action = MH_DLT645_RELAY_CLOSE_PERMIT;
			/* The meter ignores the command after its deadline, in its own (local) time. */
			localtime_r(&deadline, &ctl->dlt645.deadline);
		}
	}
	mh_bus_submit(m->bus, job, true);
}

/* Whether the relay as read back is what @cmd asked for. */
static bool reached(const struct mh_command *cmd)
{
	const struct mh_relay *r = &cmd->relay;
	const struct mh_meter *m = cmd->meter;

	switch (cmd->cmd.action) {
	case MH_CMD_TRIP:
		return r->open;
	case MH_CMD_RESTORE:
		/* Close-permit: the customer closes it; the meter must have stopped holding it open. */
		if (!is_modbus(m) && !cmd->cmd.has_block && m->cfg->control.close == MH_CLOSE_PERMIT)
			return r->has_commanded ? !r->commanded_open : !r->open;
		return !r->open;
	case MH_CMD_KEEP_POWER:
		return r->keep_power;
	case MH_CMD_CANCEL_KEEP_POWER:
		return !r->keep_power;
	case MH_CMD_ALARM_ON:
		return r->alarm;
	case MH_CMD_ALARM_OFF:
		return !r->alarm;
	default:
		return true;
	}
}

/* What a failed bus job says, as a reason. */
static void job_failure(struct mh_command *cmd, const struct mh_job *job)
{
	if (job->result == -ETIMEDOUT)
		set_reason(cmd, "timeout", "%s", job->reading.error);
	else if (job->result == -ENODEV)
		set_reason(cmd, "port_unavailable", "%s", job->reading.error);
	else if (job->result == -EBADMSG)
		set_reason(cmd, "garbled_reply", "%s", job->reading.error);
	else
		set_reason(cmd, "abnormal_reply", "%s", job->reading.error);
}

static bool is_refusal(int rc)
{
	return rc == -EACCES || rc == -EPROTO || rc == -ENODATA || rc == -EREMOTEIO;
}

static void control_done(struct mh_command *cmd, const struct mh_job *job)
{
	struct mh_commands *c = cmd->owner;

	if (job->result == 0) {
		wait_then_run(cmd, PH_SETTLE, c->cc->settle_ms);
		return;
	}
	job_failure(cmd, job);
	if (is_refusal(job->result)) {
		/*
		 * A meter that refuses will refuse again, and repeating a wrong
		 * password can lock it: no retry. A refused trip on a DL/T 645
		 * meter may be keep-power: read the status to say so.
		 */
		if (cmd->cmd.action == MH_CMD_TRIP && !is_modbus(cmd->meter)) {
			cmd->diagnosing = true;
			submit(cmd, MH_JOB_RECALL);
			return;
		}
		finish(cmd, J_FAILED);
		return;
	}
	attempt_failed(cmd);
}

static void recall_done(struct mh_command *cmd, const struct mh_job *job)
{
	struct mh_commands *c = cmd->owner;
	bool recall_only = cmd->cmd.action == MH_CMD_RECALL;

	if (job->result == 0) {
		cmd->relay = job->relay;
		/* What a command did is explained: the relay watch starts from it. */
		cmd->meter->relay_seen = job->relay;
	}
	if (cmd->diagnosing) {
		cmd->diagnosing = false;
		if (job->result == 0 && job->relay.keep_power)
			set_reason(cmd, "keep_power_on",
				"the meter refused the trip: keep-power (保电) is on");
		finish(cmd, J_FAILED);
		return;
	}
	if (recall_only) {
		if (job->result == 0) {
			set_reason(cmd, NULL, NULL);
			finish(cmd, J_SUCCEEDED);
		} else {
			job_failure(cmd, job);
			attempt_failed(cmd);
		}
		return;
	}
	if (job->result == 0 && reached(cmd)) {
		set_reason(cmd, NULL, NULL);
		finish(cmd, J_SUCCEEDED);
		return;
	}
	/* A relay may move after a delay: read again within the window. */
	if (mh_clock_mono_ms() - cmd->attempt_mono + (int64_t)c->cc->settle_ms <=
		(int64_t)c->cc->confirm_within_ms) {
		wait_then_run(cmd, PH_SETTLE, c->cc->settle_ms);
		return;
	}
	if (job->result != 0) {
		job_failure(cmd, job);
	} else if (cmd->cmd.action == MH_CMD_TRIP && cmd->relay.keep_power) {
		set_reason(cmd, "keep_power_on", "the relay stayed closed: keep-power (保电) is on");
		finish(cmd, J_FAILED);
		return;
	} else {
		set_reason(cmd, "relay_did_not_move", "read back %s %u ms after the command",
			cmd->relay.open ? "open" : "closed",
			(unsigned)(mh_clock_mono_ms() - cmd->attempt_mono));
	}
	attempt_failed(cmd);
}

static void on_job_done(struct mh_job *job)
{
	struct mh_command *cmd = job->ud;

	if (job->canceled) {
		/* The gateway is stopping: the journal resumes it at the next start. */
		mh_job_free(job);
		return;
	}
	if (job->kind == MH_JOB_CONTROL)
		control_done(cmd, job);
	else
		recall_done(cmd, job);
	mh_job_free(job);
}

/* Move @cmd on from where it waits (a timer fired, or it reached the head of its queue). */
static void run(struct mh_command *cmd)
{
	struct mh_commands *c = cmd->owner;

	if (c->stopping || !cmd->meter->bus)
		return;
	switch (cmd->phase) {
	case PH_WAITING:
	case PH_BACKOFF:
		if (mh_clock_wall_ms() >= cmd->cmd.expires_ms) {
			set_reason(cmd, "expired", cmd->attempts ? "expired after %u attempts" : NULL,
				cmd->attempts);
			finish(cmd, J_EXPIRED);
			return;
		}
		cmd->attempts++;
		cmd->attempt_mono = mh_clock_mono_ms();
		submit(cmd, cmd->cmd.action == MH_CMD_RECALL ? MH_JOB_RECALL : MH_JOB_CONTROL);
		break;
	case PH_SETTLE:
		submit(cmd, MH_JOB_RECALL);
		break;
	case PH_CONTROL:
	case PH_RECALL:
		/* A job could not be made: make it now. */
		submit(cmd, cmd->phase == PH_RECALL ? MH_JOB_RECALL : MH_JOB_CONTROL);
		break;
	case PH_DONE:
		break;
	}
	c->commit(c->commit_ud);
}

static void start_next(struct mh_commands *c, struct mh_meter *m)
{
	if (m->cmd_head && m->cmd_head->phase == PH_WAITING && !c->stopping)
		run(m->cmd_head);
}

/* Queue @cmd behind its meter's others; it starts when it reaches the head. */
static void enqueue(struct mh_commands *c, struct mh_command *cmd)
{
	struct mh_meter *m = cmd->meter;

	uv_timer_init(c->loop, &cmd->timer);
	cmd->timer.data = cmd;
	cmd->timer_open = true;
	if (m->cmd_tail)
		m->cmd_tail->next = cmd;
	else
		m->cmd_head = cmd;
	m->cmd_tail = cmd;
	m->cmd_waiting++;
	c->stats.active++;
}

/* ---- arrival ------------------------------------------------------------- */

static bool may_publish_unauthenticated(struct mh_commands *c)
{
	int64_t now = mh_clock_mono_ms();

	c->tokens += (double)(now - c->tokens_mono) * REJECT_PER_MIN / 60000.0;
	c->tokens_mono = now;
	if (c->tokens > REJECT_BURST)
		c->tokens = REJECT_BURST;
	if (c->tokens < 1)
		return false;
	c->tokens -= 1;
	return true;
}

static void reject(struct mh_commands *c, const struct mh_cmd *parsed, const struct mh_inbound *in,
	enum mh_cmd_reason why, const char *detail, bool authentic)
{
	int64_t now = mh_clock_wall_ms();
	MDB_txn *txn;
	int rc;

	c->stats.rejected[why]++;
	/* Garbage from anyone must not crowd readings out of the store, nor flood the log. */
	if (!authentic && !may_publish_unauthenticated(c)) {
		c->stats.unpublished++;
		mh_log_debug(CMD, "command rejected (%s), not published: over the rate",
			mh_cmd_reason_name(why));
		return;
	}
	mh_log_warn(CMD, "command %s rejected: %s%s%s", parsed->id[0] ? parsed->id : "(no id)",
		mh_cmd_reason_name(why), detail[0] ? ": " : "", detail);
	rc = mh_db_begin(c->db, &txn);
	if (rc == 0) {
		/* An authentic id is remembered, so its replay is caught too. */
		if (authentic)
			rc = journal_put(c, txn, parsed, in->payload, in->len, J_REJECTED, 0,
				mh_outbox_next_seq(c->outbox), now);
		if (rc == 0)
			rc = put_result(c, txn, parsed, NULL, J_REJECTED, mh_cmd_reason_name(why),
				detail[0] ? detail : NULL, now);
		int end = mh_db_end(c->db, txn, rc == 0);
		if (rc == 0)
			rc = end;
	}
	if (rc < 0)
		mh_log_err(CMD, "rejection of %s not stored: %s", parsed->id, strerror(-rc));
	c->commit(c->commit_ud);
}

void mh_commands_inbound(void *ud, const struct mh_inbound *in)
{
	struct mh_commands *c = ud;
	struct mh_cmd parsed;
	struct mh_meter *m = NULL;
	char detail[160] = "";
	int64_t now = mh_clock_wall_ms();
	bool authentic = false, same_sig = false;
	enum mh_cmd_reason why;

	c->stats.received++;
	memset(&parsed, 0, sizeof(parsed));
	if (in->len > MH_CMD_MAX_PAYLOAD) {
		why = MH_CMD_TOO_LARGE;
		snprintf(detail, sizeof(detail), "%zu bytes, at most %d", in->len,
			MH_CMD_MAX_PAYLOAD);
	} else {
		why = mh_cmd_parse(in->payload, in->len, &parsed, detail, sizeof(detail));
	}
	if (why == MH_CMD_OK && in->retained) {
		why = MH_CMD_RETAINED;
		snprintf(detail, sizeof(detail), "a retained message is never executed");
	}
	if (why == MH_CMD_OK && !(parsed.has_sig && mh_cmd_sig_ok(&parsed, c->key, c->key_len))) {
		why = MH_CMD_BAD_SIGNATURE;
		snprintf(detail, sizeof(detail), parsed.has_sig ? "the signature does not match"
							       : "no signature");
	}
	if (why == MH_CMD_OK) {
		authentic = true;
		if (journal_has(c, &parsed, &same_sig)) {
			if (in->dup && same_sig) {
				/* The broker sends again what it has no PUBACK for: we have it already. */
				c->stats.redelivered++;
				mh_log_info(CMD, "command %s delivered again by the broker; already journaled",
					parsed.id);
				return;
			}
			why = MH_CMD_REPLAYED;
			snprintf(detail, sizeof(detail), "id %s was seen before", parsed.id);
		}
	}
	if (why == MH_CMD_OK && !parsed.action_known) {
		why = MH_CMD_UNKNOWN_ACTION;
		snprintf(detail, sizeof(detail), "unknown action \"%s\"", parsed.action_name);
	}
	if (why == MH_CMD_OK && !(m = find_meter(c, parsed.meter))) {
		why = MH_CMD_UNKNOWN_METER;
		snprintf(detail, sizeof(detail), "no meter %s on this gateway", parsed.meter);
	}
	if (why == MH_CMD_OK && !c->clock->set) {
		why = MH_CMD_STALE;
		snprintf(detail, sizeof(detail), "the gateway clock is not set: ts cannot be checked");
	}
	if (why == MH_CMD_OK) {
		why = mh_cmd_check_time(&parsed, now, c->cc->max_skew_ms);
		if (why == MH_CMD_STALE)
			snprintf(detail, sizeof(detail), "ts is %+.0f s from the gateway clock (max %u s)",
				(double)(parsed.ts_ms - now) / 1000.0, c->cc->max_skew_ms / 1000);
		else if (why == MH_CMD_EXPIRED)
			snprintf(detail, sizeof(detail), "expires %s is past", parsed.expires);
	}
	if (why == MH_CMD_OK && parsed.action == MH_CMD_TRIP && in_protect_window(c, now)) {
		why = MH_CMD_PROTECT_WINDOW;
		snprintf(detail, sizeof(detail), "no trip during a protect window (保电期)");
	}
	if (why == MH_CMD_OK && !supported(m, &parsed, detail, sizeof(detail)))
		why = MH_CMD_UNSUPPORTED;
	if (why == MH_CMD_OK && (m->cmd_waiting >= c->cc->queue || c->stats.active >= MAX_ACTIVE)) {
		why = MH_CMD_QUEUE_FULL;
		snprintf(detail, sizeof(detail), "%u commands wait for meter %s already",
			m->cmd_waiting, m->cfg->id);
	}
	if (why != MH_CMD_OK) {
		reject(c, &parsed, in, why, detail, authentic);
		return;
	}

	struct mh_command *cmd = calloc(1, sizeof(*cmd));
	if (cmd)
		cmd->payload = malloc(in->len);
	if (!cmd || !cmd->payload) {
		/* Unacknowledged would be better, but paho acknowledges on return: say it. */
		c->stats.journal_errors++;
		mh_log_err(CMD, "command %s lost: out of memory", parsed.id);
		if (cmd)
			free(cmd);
		return;
	}
	memcpy(cmd->payload, in->payload, in->len);
	cmd->payload_len = in->len;
	cmd->owner = c;
	cmd->meter = m;
	cmd->cmd = parsed;
	cmd->received_ms = now;
	cmd->phase = PH_WAITING;
	if (record_state(c, cmd, J_ACCEPTED) < 0) {
		c->stats.journal_errors++;
		free(cmd->payload);
		free(cmd);
		return;
	}
	/* Durable before paho sends the PUBACK, which it does when this returns. */
	if (c->commit(c->commit_ud) < 0) {
		/* Undone with the turn: never run what is not journaled. */
		c->stats.journal_errors++;
		mh_log_err(CMD, "command %s not journaled (the store failed); not carried out",
			parsed.id);
		free(cmd->payload);
		free(cmd);
		return;
	}
	c->stats.accepted++;
	mh_log_notice(CMD, "command %s accepted: %s on meter %s", parsed.id,
		mh_cmd_action_name(parsed.action), m->cfg->id);
	if (c->stopping) {
		/* Journaled: the next start runs it. */
		free(cmd->payload);
		free(cmd);
		return;
	}
	enqueue(c, cmd);
	start_next(c, m);
}

/* ---- open, resume, prune ---------------------------------------------------- */

/* Delete rows of finished commands past their keep time. */
static void prune(struct mh_commands *c)
{
	int64_t now = mh_clock_wall_ms();
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n = 0;

	if (!c->clock->set || mh_db_begin(c->db, &txn) < 0)
		return;
	if (mdb_cursor_open(txn, c->journal, &cur) == 0) {
		int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			const uint8_t *row = v.mv_data;
			if (v.mv_size >= JOURNAL_HEADER && row[1] >= J_SUCCEEDED &&
				(int64_t)mh_db_get_be64(row + 20) < now) {
				if (mdb_cursor_del(cur, 0) == 0)
					n++;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	mh_db_end(c->db, txn, n > 0);
	if (n) {
		mh_log_info(CMD, "forgot %zu finished commands past their replay window", n);
		c->commit(c->commit_ud);
	}
}

static void on_prune(uv_timer_t *t)
{
	prune(t->data);
}

static int by_order(const void *a, const void *b)
{
	const struct mh_command *x = *(struct mh_command *const *)a;
	const struct mh_command *y = *(struct mh_command *const *)b;

	return x->order < y->order ? -1 : x->order > y->order;
}

/* The unfinished commands of the journal, oldest first. */
static int load_journal(struct mh_commands *c)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mh_db_read(c->db, &txn);

	if (rc < 0)
		return rc;
	rc = mh_db_error(mdb_cursor_open(txn, c->journal, &cur));
	bool open = rc == 0;
	for (int g = open ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND; g == 0;
		g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *row = v.mv_data;
		struct mh_command *cmd, **grown;
		char detail[160];

		if (v.mv_size < JOURNAL_HEADER || row[0] != JOURNAL_VERSION ||
			(row[1] != J_ACCEPTED && row[1] != J_RETRYING))
			continue;
		cmd = calloc(1, sizeof(*cmd));
		grown = realloc(c->resume, (c->n_resume + 1) * sizeof(*grown));
		if (!cmd || !grown) {
			free(cmd);
			rc = -ENOMEM;
			break;
		}
		c->resume = grown;
		cmd->payload_len = v.mv_size - JOURNAL_HEADER;
		cmd->payload = malloc(cmd->payload_len + 1);
		if (!cmd->payload) {
			free(cmd);
			rc = -ENOMEM;
			break;
		}
		memcpy(cmd->payload, row + JOURNAL_HEADER, cmd->payload_len);
		if (mh_cmd_parse(cmd->payload, cmd->payload_len, &cmd->cmd, detail, sizeof(detail)) !=
				MH_CMD_OK ||
			!(cmd->meter = find_meter(c, cmd->cmd.meter))) {
			/* The meter left the configuration: nothing can run it. */
			mh_log_warn(CMD, "journaled command %.*s is for no configured meter; dropping it",
				(int)k.mv_size, (const char *)k.mv_data);
			free(cmd->payload);
			free(cmd);
			continue;
		}
		cmd->owner = c;
		cmd->state = row[1];
		cmd->attempts = row[2];
		cmd->order = mh_db_get_be64(row + 4);
		cmd->received_ms = (int64_t)mh_db_get_be64(row + 12);
		cmd->phase = PH_WAITING;
		c->resume[c->n_resume++] = cmd;
	}
	if (open)
		mdb_cursor_close(cur);
	mh_db_read_end(txn);
	if (c->n_resume)
		qsort(c->resume, c->n_resume, sizeof(*c->resume), by_order);
	return rc;
}

/* The key and the protect windows of @cc, in fresh memory. Returns 0 or a negative errno. */
static int load_settings(const struct mh_commands_config *cc, uint8_t **key, size_t *key_len,
	int64_t (**windows)[2], char *err, size_t err_len)
{
	int rc;

	*key = mh_secret_alloc(KEY_CAP);
	*windows = calloc(cc->n_windows + 1, sizeof(**windows));
	if (!*key || !*windows) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = mh_cmd_key_load(cc->hmac_key_file, *key, KEY_CAP, key_len, err, err_len);
	if (rc < 0) {
		mh_log_err(CMD, "%s", err);
		goto fail;
	}
	for (size_t i = 0; i < cc->n_windows; i++) {
		rc = mh_config_window_resolve(&cc->windows[i], &(*windows)[i][0], &(*windows)[i][1]);
		if (rc < 0) {
			snprintf(err, err_len,
				"protect window %s .. %s: cannot resolve it in this time zone",
				cc->windows[i].from, cc->windows[i].to);
			mh_log_err(CMD, "%s", err);
			goto fail;
		}
	}
	return 0;
fail:
	mh_secret_free(*key, KEY_CAP);
	free(*windows);
	*key = NULL;
	*windows = NULL;
	return rc;
}

int mh_commands_open(uv_loop_t *loop, const struct mh_config *cfg, struct mh_meter_set *meters,
	struct mh_db *db, struct mh_outbox *outbox, const struct mh_clock *clock,
	int (*commit)(void *ud), void *commit_ud, struct mh_commands **out)
{
	struct mh_commands *c = calloc(1, sizeof(*c));
	char err[256];
	int rc;

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->cfg = cfg;
	c->cc = &cfg->commands;
	c->meters = meters;
	c->db = db;
	c->outbox = outbox;
	c->clock = clock;
	c->commit = commit;
	c->commit_ud = commit_ud;
	c->tokens = REJECT_BURST;
	c->tokens_mono = mh_clock_mono_ms();
	rc = load_settings(&cfg->commands, &c->key, &c->key_len, &c->windows, err, sizeof(err));
	if (rc < 0)
		goto fail;
	c->n_windows = c->cc->n_windows;
	rc = mh_db_table(db, "commands", &c->journal);
	if (!rc)
		rc = load_journal(c);
	if (rc < 0) {
		mh_log_err(CMD, "cannot read the command journal: %s", strerror(-rc));
		goto fail;
	}
	uv_timer_init(loop, &c->prune);
	c->prune.data = c;
	uv_timer_start(&c->prune, on_prune, PRUNE_MS, PRUNE_MS);
	*out = c;
	return 0;

fail:
	mh_commands_free(c);
	return rc;
}

struct mh_commands_settings {
	uint8_t *key;
	size_t key_len;
	int64_t (*windows)[2];
};

int mh_commands_prepare(const struct mh_config *fresh, char *err, size_t err_len,
	struct mh_commands_settings **out)
{
	struct mh_commands_settings *st = calloc(1, sizeof(*st));
	int rc;

	snprintf(err, err_len, "%s", strerror(ENOMEM));
	if (!st)
		return -ENOMEM;
	rc = load_settings(&fresh->commands, &st->key, &st->key_len, &st->windows, err, err_len);
	if (rc < 0) {
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

void mh_commands_settings_free(struct mh_commands_settings *st)
{
	if (!st)
		return;
	mh_secret_free(st->key, KEY_CAP);
	free(st->windows);
	free(st);
}

void mh_commands_rebind(struct mh_commands *c, const struct mh_config *fresh,
	struct mh_commands_settings *st)
{
	uint8_t *key = c->key;
	int64_t(*windows)[2] = c->windows;

	c->cfg = fresh;
	c->cc = &fresh->commands;
	c->key = st->key;
	c->key_len = st->key_len;
	c->windows = st->windows;
	c->n_windows = fresh->commands.n_windows;
	st->key = key;
	st->windows = windows;
	mh_commands_settings_free(st);
}

bool mh_commands_hold(const struct mh_commands *c, const struct mh_meter *m)
{
	if (!c)
		return false;
	if (m->cmd_head)
		return true;
	for (size_t i = 0; i < c->n_resume; i++)
		if (c->resume[i]->meter == m)
			return true;
	return false;
}

void mh_commands_resume(struct mh_commands *c)
{
	if (c->resumed || c->stopping || !c->clock->set)
		return;
	c->resumed = true;
	prune(c);
	if (c->n_resume)
		mh_log_notice(CMD, "resuming %zu journaled commands", c->n_resume);
	for (size_t i = 0; i < c->n_resume; i++)
		enqueue(c, c->resume[i]);
	free(c->resume);
	c->resume = NULL;
	c->n_resume = 0;
	for (size_t i = 0; i < c->meters->n; i++)
		start_next(c, c->meters->meters[i]);
}

void mh_commands_stop(struct mh_commands *c)
{
	if (!c || c->stopping)
		return;
	c->stopping = true;
	uv_close((uv_handle_t *)&c->prune, NULL);
	for (size_t i = 0; i < c->meters->n; i++) {
		struct mh_meter *m = c->meters->meters[i];
		struct mh_command *cmd = m->cmd_head;
		while (cmd) {
			struct mh_command *next = cmd->next;
			uv_timer_stop(&cmd->timer);
			free_command(cmd);
			cmd = next;
		}
		m->cmd_head = m->cmd_tail = NULL;
		m->cmd_waiting = 0;
	}
}

void mh_commands_free(struct mh_commands *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_resume; i++) {
		free(c->resume[i]->payload);
		free(c->resume[i]);
	}
	free(c->resume);
	free(c->windows);
	mh_secret_free(c->key, KEY_CAP);
	free(c);
}

void mh_commands_stats(const struct mh_commands *c, struct mh_commands_stats *out)
{
	*out = c->stats;
}
