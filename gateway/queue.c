// SPDX-License-Identifier: MIT
#include "queue.h"

void mh_fifo_push(struct mh_fifo *f, struct mh_queue_node *node)
{
	node->next = NULL;
	if (f->tail)
		f->tail->next = node;
	else
		f->head = node;
	f->tail = node;
	f->len++;
}

struct mh_queue_node *mh_fifo_pop(struct mh_fifo *f)
{
	struct mh_queue_node *node = f->head;

	if (!node)
		return NULL;
	f->head = node->next;
	if (!f->head)
		f->tail = NULL;
	f->len--;
	node->next = NULL;
	return node;
}

struct mh_queue_node *mh_fifo_take_all(struct mh_fifo *f)
{
	struct mh_queue_node *all = f->head;

	f->head = f->tail = NULL;
	f->len = 0;
	return all;
}

int mh_queue_init(struct mh_queue *q, uv_async_t *wake)
{
	q->fifo = (struct mh_fifo){ 0 };
	q->wake = wake;
	return uv_mutex_init(&q->lock);
}

void mh_queue_deinit(struct mh_queue *q)
{
	uv_mutex_destroy(&q->lock);
}

void mh_queue_push(struct mh_queue *q, struct mh_queue_node *node)
{
	uv_mutex_lock(&q->lock);
	mh_fifo_push(&q->fifo, node);
	uv_mutex_unlock(&q->lock);
	if (q->wake)
		uv_async_send(q->wake);
}

struct mh_queue_node *mh_queue_take_all(struct mh_queue *q)
{
	struct mh_queue_node *all;

	uv_mutex_lock(&q->lock);
	all = mh_fifo_take_all(&q->fifo);
	uv_mutex_unlock(&q->lock);
	return all;
}
