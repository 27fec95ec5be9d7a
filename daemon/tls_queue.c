/*
 * tls_queue.c - the byte queues that carry a connection's ciphertext to
 * and from the shell, and the BIO through which OpenSSL reads and writes
 * them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <pthread.h>

#include "tls_int.h"

#define Q_FIRST		(16u << 10)	/* a fresh queue's first buffer */

size_t
tls__queue_pending(const struct tls_queue *q)
{
	return q->len - q->off;
}

/* Room for n more bytes at the end of q; 0 or -1 (out of memory). */
static int
q_room(struct tls_queue *q, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (q->off == q->len)
		q->off = q->len = 0;
	if (q->cap - q->len >= n)
		return 0;
	if (q->off > 0) {
		memmove(q->p, q->p + q->off, q->len - q->off);
		q->len -= q->off;
		q->off = 0;
		if (q->cap - q->len >= n)
			return 0;
	}
	cap = q->cap ? q->cap : q->hint > Q_FIRST ? q->hint : Q_FIRST;
	while (cap - q->len < n) {
		if (cap > SIZE_MAX / 2)
			return -1;
		cap *= 2;
	}
	if ((p = realloc(q->p, cap)) == NULL)
		return -1;
	q->p = p;
	q->cap = cap;
	return 0;
}

int
tls__queue_put(struct tls_queue *q, const void *p, size_t n)
{
	if (q_room(q, n) != 0)
		return -1;
	memcpy(q->p + q->len, p, n);
	q->len += n;
	return 0;
}

static int
q_bio_write(BIO *b, const char *in, size_t n, size_t *written)
{
	struct tls_queue *q = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	*written = 0;
	if (tls__queue_put(q, in, n) != 0)
		return 0;		/* no retry flag: an error */
	*written = n;
	return 1;
}

static int
q_bio_read(BIO *b, char *out, size_t cap, size_t *got)
{
	struct tls_queue *q = BIO_get_data(b);
	size_t n = tls__queue_pending(q);

	BIO_clear_retry_flags(b);
	*got = 0;
	if (n == 0) {
		if (!q->eof)
			BIO_set_retry_read(b);	/* more may come */
		return 0;			/* else: end of stream */
	}
	n = n < cap ? n : cap;
	memcpy(out, q->p + q->off, n);
	q->off += n;
	*got = n;
	return 1;
}

static long
q_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_queue *q = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)tls__queue_pending(q);
	case BIO_CTRL_EOF:
		return q->eof && tls__queue_pending(q) == 0;
	case BIO_CTRL_FLUSH:
		return 1;		/* the shell sends what is queued */
	default:
		return 0;
	}
}

static int
q_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *q_method;

static void
q_method_make(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() |
	    BIO_TYPE_SOURCE_SINK, "nbx queue");

	if (m == NULL || !BIO_meth_set_write_ex(m, q_bio_write) ||
	    !BIO_meth_set_read_ex(m, q_bio_read) ||
	    !BIO_meth_set_ctrl(m, q_bio_ctrl) ||
	    !BIO_meth_set_create(m, q_bio_create)) {
		BIO_meth_free(m);
		return;
	}
	q_method = m;
}

BIO *
tls__queue_bio(struct tls_queue *q)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	BIO *b;

	pthread_once(&once, q_method_make);
	if (q_method == NULL || (b = BIO_new(q_method)) == NULL)
		return NULL;
	BIO_set_data(b, q);
	return b;
}

size_t
tls__queue_take(struct tls_queue *q, uint8_t **buf)
{
	size_t n = tls__queue_pending(q);

	*buf = NULL;
	if (n == 0)
		return 0;
	*buf = q->p;
	/* the next buffer starts large enough for as much again: not the
	 * capacity, which doubling may have left at twice that, and which
	 * every buffer queued in libuv would then hold */
	q->hint = n + n / 8;
	q->p = NULL;
	q->off = q->len = q->cap = 0;
	return n;
}

void
tls__queue_fini(struct tls_queue *q)
{
	free(q->p);
	q->p = NULL;
	q->off = q->len = q->cap = 0;
}
