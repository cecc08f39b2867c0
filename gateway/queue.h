/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A locked FIFO of intrusive nodes that carries work between threads: jobs
 * from the loop to a bus thread, results and broker events from other
 * threads back to the loop. A queue that feeds the loop wakes it through a
 * uv_async_t; the loop then drains everything at once, so wake-ups coalesce.
 */

#include <stdbool.h>
#include <uv.h>

struct mh_queue_node {
	struct mh_queue_node *next;
};

struct mh_queue {
	uv_mutex_t lock;
	uv_cond_t nonempty;
	struct mh_queue_node *head, *tail;
	size_t len;
	uv_async_t *wake; /* sent on every push when set; owned by the caller */
};

/* Initialise @q; @wake may be NULL (a consumer thread waits instead). Returns 0 or -errno. */
int mh_queue_init(struct mh_queue *q, uv_async_t *wake);

/* Release @q's lock and condition; the queue must be empty. */
void mh_queue_deinit(struct mh_queue *q);

/* Append @node and wake the consumer. */
void mh_queue_push(struct mh_queue *q, struct mh_queue_node *node);

/* Put @node first, ahead of everything queued (urgent work). */
void mh_queue_push_front(struct mh_queue *q, struct mh_queue_node *node);

/* Take every queued node at once, in order; NULL when empty. */
struct mh_queue_node *mh_queue_take_all(struct mh_queue *q);

/*
 * Take the first node, waiting up to @timeout_ms (0: do not wait) while the
 * queue is empty and *@stop is false. NULL when nothing came.
 */
struct mh_queue_node *mh_queue_pop_wait(struct mh_queue *q, unsigned timeout_ms,
	const volatile bool *stop);

/* Wake every waiter (used with a stop flag). */
void mh_queue_interrupt(struct mh_queue *q);

/* Nodes queued now. */
size_t mh_queue_len(struct mh_queue *q);
