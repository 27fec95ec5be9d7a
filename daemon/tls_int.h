/*
 * tls_int.h - what the files of the TLS module share: the context,
 * connection and byte-queue structs and the calls between the files.
 * Only daemon/tls_*.c include it; daemon/tls.h is the module's interface.
 *
 *   tls_ctx.c     contexts: policy, CA, certificate, key, CRL, reload checks
 *   tls_verify.c  the nbx part of certificate verification: identity, pin
 *   tls_conn.c    a connection: handshake, read, write, shutdown, EOF
 *   tls_queue.c   the byte queues between a connection and the shell
 */
#ifndef NBX_TLS_INT_H
#define NBX_TLS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "change.h"
#include "pki.h"
#include "tls.h"

/* A context: the SSL_CTX with the policy, and this node's own id. */
struct tls_ctx {
	SSL_CTX *ssl;
	char id[NBX_ID_MAX + 1];
};

enum tls_phase {
	TLS_PH_HANDSHAKE,
	TLS_PH_OPEN,	/* handshake done, peer verified */
	TLS_PH_FAILED,	/* final; rc and err say why */
};

/*
 * A byte queue, one for each direction of a connection (tls_queue.c):
 * bytes [off, len) of p are waiting.  OpenSSL's memory BIO zeroes every
 * stretch it grows into and the shell then copied its output out again;
 * this queue only copies in, and hands its whole buffer to the shell
 * (tls_conn_take_buf).
 */
struct tls_queue {
	uint8_t *p;
	size_t off, len, cap;
	size_t hint;		/* the capacity a fresh buffer starts with */
	int eof;		/* input: the transport ended */
};

/* A connection (tls_conn.c); the verification callbacks fill why. */
struct tls_conn {
	SSL *ssl;
	struct tls_queue in, out;	/* ciphertext; the BIOs' data */
	enum tls_phase phase;
	int rc;				/* the error, once TLS_PH_FAILED */
	int is_server;
	int has_expected;
	int verified;			/* handshake completed, peer checked */
	int closed;			/* we queued close_notify */
	int peer_closed;		/* we read the peer's close_notify */
	int eof, eof_rc;		/* transport ended; tls_conn_eof's answer */
	char expected[NBX_ID_MAX + 1];
	char peer_id[NBX_ID_MAX + 1];
	uint8_t pin[PKI_PIN_LEN];	/* tls_conn_new's fixed pin */
	/* the pin the peer that a certificate names must have (NULL: none) */
	const uint8_t *(*pin_for)(void *arg, const char *peer_id);
	void *pin_arg;
	int why_rc;			/* set by tls_verify.c ... */
	char why[200];			/* ... when they refuse the peer */
	char hint[80];			/* what a refused ClientHello offered */
	char err[256];
	uint8_t *tail;			/* plaintext decrypted at EOF */
	size_t tail_len, tail_off, tail_cap;
};

/* ------------------------------------------------------------------ */
/* tls_verify.c                                                        */
/* ------------------------------------------------------------------ */

/*
 * The certificate verification callback every context installs
 * (SSL_CTX_set_verify).  OpenSSL's verdict stands for the chain; once it
 * accepts the leaf, tls__peer_check decides identity and pin, so a wrong
 * peer fails the handshake with an alert.  Returns OpenSSL's 1 or 0.
 */
int tls__verify_cb(int ok, X509_STORE_CTX *xs);

/*
 * The ClientHello callback every context installs (server side): notes in
 * the connection's hint what an old client offered, to explain the
 * refusal OpenSSL makes.  Never changes the outcome.
 */
int tls__hello_cb(SSL *s, int *alert, void *arg);

/*
 * Checks certificate `x` of the peer of `c`, whose chain is verified: its
 * node id, the expected id if any, and the pin that c->pin_for gives for
 * that id (both directions; the one place a pin is decided).  Returns 0
 * and sets c->peer_id, or -1 with the reason in c->why and the code in
 * c->why_rc.
 */
int tls__peer_check(struct tls_conn *c, X509 *x);

/* ------------------------------------------------------------------ */
/* tls_queue.c                                                         */
/* ------------------------------------------------------------------ */

/* Bytes waiting in q. */
size_t tls__queue_pending(const struct tls_queue *q);

/* Appends p[0..n) to q; 0 or -1 (out of memory, q unchanged). */
int tls__queue_put(struct tls_queue *q, const void *p, size_t n);

/*
 * Takes all that waits in q, without a copy: *buf is the queue's malloc'd
 * buffer, now the caller's, and the return its length; 0 with *buf NULL
 * if q is empty.  q starts a fresh buffer sized for as much again.
 */
size_t tls__queue_take(struct tls_queue *q, uint8_t **buf);

/* Frees q's buffer (the queue is then empty). */
void tls__queue_fini(struct tls_queue *q);

/*
 * A BIO reading from and writing to q, for SSL_set_bio (the SSL frees
 * it); q must outlive it.  NULL when out of memory.
 */
BIO *tls__queue_bio(struct tls_queue *q);

#endif
