/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Work carried between threads. A struct mh_fifo is a plain FIFO of
 * intrusive nodes (no lock: the owner holds one). A struct mh_queue is a
 * locked FIFO: results and broker events from other threads to the loop,
 * which it wakes through a uv_async_t; the loop then drains everything at
 * once, so wake-ups coalesce. There is no push-to-front: urgent work goes
 * into a FIFO of its own, so two urgent jobs never swap.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct mh_queue_node {
	struct mh_queue_node *next;
};

struct mh_fifo {
	struct mh_queue_node *head, *tail;
	size_t len;
};

/* Append @node. */
void mh_fifo_push(struct mh_fifo *f, struct mh_queue_node *node);

/* Take the first node; NULL when empty. */
struct mh_queue_node *mh_fifo_pop(struct mh_fifo *f);

/* Take every node at once, in order (a NULL-terminated list); NULL when empty. */
struct mh_queue_node *mh_fifo_take_all(struct mh_fifo *f);

struct mh_queue {
	uv_mutex_t lock;
	struct mh_fifo fifo;
	uv_async_t *wake; /* sent on every push; owned by the caller */
};

/* Initialise @q, waking @wake on every push. Returns 0 or -errno. */
int mh_queue_init(struct mh_queue *q, uv_async_t *wake);

/* Release @q's lock; the queue must be empty. */
void mh_queue_deinit(struct mh_queue *q);

/* Append @node and wake the consumer. Safe from any thread. */
void mh_queue_push(struct mh_queue *q, struct mh_queue_node *node);

/* Take every queued node at once, in order; NULL when empty. */
struct mh_queue_node *mh_queue_take_all(struct mh_queue *q);
