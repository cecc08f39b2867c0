// SPDX-License-Identifier: MIT
#include "queue.h"

#include <stddef.h>

int mh_queue_init(struct mh_queue *q, uv_async_t *wake)
{
	int rc;

	q->head = q->tail = NULL;
	q->len = 0;
	q->wake = wake;
	rc = uv_mutex_init(&q->lock);
	if (rc)
		return rc;
	rc = uv_cond_init(&q->nonempty);
	if (rc)
		uv_mutex_destroy(&q->lock);
	return rc;
}

void mh_queue_deinit(struct mh_queue *q)
{
	uv_cond_destroy(&q->nonempty);
	uv_mutex_destroy(&q->lock);
}

static void signal_consumer(struct mh_queue *q)
{
	uv_cond_signal(&q->nonempty);
	uv_mutex_unlock(&q->lock);
	if (q->wake)
		uv_async_send(q->wake);
}

void mh_queue_push(struct mh_queue *q, struct mh_queue_node *node)
{
	node->next = NULL;
	uv_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next = node;
	else
		q->head = node;
	q->tail = node;
	q->len++;
	signal_consumer(q);
}

void mh_queue_push_front(struct mh_queue *q, struct mh_queue_node *node)
{
	uv_mutex_lock(&q->lock);
	node->next = q->head;
	q->head = node;
	if (!q->tail)
		q->tail = node;
	q->len++;
	signal_consumer(q);
}

struct mh_queue_node *mh_queue_take_all(struct mh_queue *q)
{
	struct mh_queue_node *all;

	uv_mutex_lock(&q->lock);
	all = q->head;
	q->head = q->tail = NULL;
	q->len = 0;
	uv_mutex_unlock(&q->lock);
	return all;
}

struct mh_queue_node *mh_queue_pop_wait(struct mh_queue *q, unsigned timeout_ms,
	const volatile bool *stop)
{
	struct mh_queue_node *node;

	uv_mutex_lock(&q->lock);
	if (!q->head && timeout_ms && !*stop)
		(void)uv_cond_timedwait(&q->nonempty, &q->lock, (uint64_t)timeout_ms * 1000000u);
	node = q->head;
	if (node) {
		q->head = node->next;
		if (!q->head)
			q->tail = NULL;
		q->len--;
		node->next = NULL;
	}
	uv_mutex_unlock(&q->lock);
	return node;
}

void mh_queue_interrupt(struct mh_queue *q)
{
	uv_mutex_lock(&q->lock);
	uv_cond_broadcast(&q->nonempty);
	uv_mutex_unlock(&q->lock);
}

size_t mh_queue_len(struct mh_queue *q)
{
	size_t n;

	uv_mutex_lock(&q->lock);
	n = q->len;
	uv_mutex_unlock(&q->lock);
	return n;
}
