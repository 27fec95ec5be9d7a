/*
 * tls_conn.c - one TLS connection over in-memory queues: its handshake,
 * reads, writes, shutdown and end of input, with SSL_get_error and the
 * ERR queue translated into NBX_* codes and a reason an operator can act
 * on.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "nbx_err.h"
#include "tls_int.h"

#define TAIL_MAX	(TLS_CONN_IN_MAX + (1u << 17))

/* Marks the connection failed for good; returns rc. */
static int conn_fail(struct tls_conn *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
conn_fail(struct tls_conn *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	c->phase = TLS_PH_FAILED;
	c->rc = rc;
	return rc;
}

/*
 * Turns a failed SSL call into an NBX code and, for real failures, a
 * reason: ours from the callbacks first, then OpenSSL's, rephrased for
 * the cases an operator meets (bad certificate, old peer, alert, EOF).
 */
static int
conn_ssl_error(struct tls_conn *c, int ret)
{
	int se = SSL_get_error(c->ssl, ret), reason;
	unsigned long e, first = 0, sslerr = 0;
	const char *text;

	if (se == SSL_ERROR_WANT_READ && !c->eof)
		return NBX_EAGAIN;
	if (se == SSL_ERROR_ZERO_RETURN) {
		c->peer_closed = 1;
		return NBX_ECLOSED;
	}
	while ((e = ERR_get_error()) != 0) {
		if (first == 0)
			first = e;
		if (sslerr == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL)
			sslerr = e;
	}
	e = sslerr ? sslerr : first;
	reason = sslerr ? ERR_GET_REASON(sslerr) : 0;
	text = e ? ERR_reason_error_string(e) : NULL;
	if (text == NULL)
		text = "unknown TLS error";
	if (c->why[0])
		return conn_fail(c, c->why_rc, "%s", c->why);
	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
		return conn_fail(c, NBX_ETLS, "certificate verify failed: %s",
		    X509_verify_cert_error_string(
		    SSL_get_verify_result(c->ssl)));
	if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		return conn_fail(c, NBX_ETLS, "peer did not return a "
		    "certificate");
	if (reason == SSL_R_UNSUPPORTED_PROTOCOL ||
	    reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) {
		if (c->hint[0])
			return conn_fail(c, NBX_ETLS, "%s", c->hint);
		return conn_fail(c, NBX_ETLS, "protocol version: peer does not "
		    "speak TLS 1.3 (%s)", text);
	}
	if (reason >= SSL_AD_REASON_OFFSET)
		return conn_fail(c, NBX_ETLS, "peer sent alert: %s", text);
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
	    se == SSL_ERROR_SYSCALL || (c->eof && e == 0)) {
		if (c->phase == TLS_PH_HANDSHAKE)
			return conn_fail(c, NBX_ETLS,
			    "transport closed during the handshake");
		return conn_fail(c, NBX_ETLS, "truncated: transport closed "
		    "without close_notify");
	}
	return conn_fail(c, NBX_ETLS, "%s", text);
}

/* The pin given to tls_conn_new, whoever the peer is (it was expected). */
static const uint8_t *
pin_fixed(void *arg, const char *peer_id)
{
	struct tls_conn *c = arg;

	(void)peer_id;
	return c->pin;
}

/* tls_conn_new and tls_conn_new_lookup: a fixed `pin` or a lookup. */
static int
conn_make(struct tls_ctx *ctx, int is_server, const char *expected_peer_id,
    const uint8_t *pin, const uint8_t *(*pin_for)(void *, const char *),
    void *arg, struct tls_conn **out)
{
	struct tls_conn *c = NULL;
	BIO *rbio, *wbio;
	int rc = NBX_EINVAL;

	if (out == NULL)
		return NBX_EINVAL;
	*out = NULL;
	if (ctx == NULL || (!is_server && expected_peer_id == NULL) ||
	    (expected_peer_id &&
	    !nbx_node_id_valid(nbx_str_c(expected_peer_id))))
		return NBX_EINVAL;
	rc = NBX_ENOMEM;
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->ssl = SSL_new(ctx->ssl)) == NULL ||
	    (rbio = tls__queue_bio(&c->in)) == NULL)
		goto out;
	if ((wbio = tls__queue_bio(&c->out)) == NULL) {
		BIO_free(rbio);
		goto out;
	}
	SSL_set_bio(c->ssl, rbio, wbio);
	SSL_set_app_data(c->ssl, c);
	c->is_server = is_server != 0;
	if (expected_peer_id) {
		c->has_expected = 1;
		strcpy(c->expected, expected_peer_id);
	}
	if (pin) {
		memcpy(c->pin, pin, PKI_PIN_LEN);
		c->pin_for = pin_fixed;
		c->pin_arg = c;
	} else {
		c->pin_for = pin_for;
		c->pin_arg = arg;
	}
	if (c->is_server) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		/* Puts the ClientHello in the output buffer. */
		if ((rc = tls_conn_handshake(c)) != NBX_EAGAIN)
			goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	ERR_clear_error();
	tls_conn_free(c);
	return rc;
}

int
tls_conn_new(struct tls_ctx *ctx, int is_server,
    const char *expected_peer_id, const uint8_t *pin,
    struct tls_conn **out)
{
	return conn_make(ctx, is_server, expected_peer_id, pin, NULL, NULL,
	    out);
}

int
tls_conn_new_lookup(struct tls_ctx *ctx, int is_server,
    const char *expected_peer_id,
    const uint8_t *(*pin_for)(void *arg, const char *peer_id), void *arg,
    struct tls_conn **out)
{
	return conn_make(ctx, is_server, expected_peer_id, NULL, pin_for, arg,
	    out);
}

void
tls_conn_free(struct tls_conn *conn)
{
	if (conn == NULL)
		return;
	SSL_free(conn->ssl);	/* frees both BIOs */
	tls__queue_fini(&conn->in);
	tls__queue_fini(&conn->out);
	free(conn->tail);
	free(conn);
}

int
tls_conn_feed(struct tls_conn *c, const void *in, size_t n)
{
	if (c->phase == TLS_PH_FAILED)
		return c->rc;
	if (c->eof || (in == NULL && n > 0))
		return NBX_EINVAL;
	if (n == 0)
		return 0;
	if (n > TLS_CONN_IN_MAX || tls__queue_pending(&c->in) > TLS_CONN_IN_MAX - n)
		return NBX_ETOOBIG;
	return tls__queue_put(&c->in, in, n) != 0 ? NBX_ENOMEM : 0;
}

/* Final checks once OpenSSL reports the handshake complete. */
static int
handshake_done(struct tls_conn *c)
{
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	long v = SSL_get_verify_result(c->ssl);

	if (SSL_version(c->ssl) != TLS1_3_VERSION)
		return conn_fail(c, NBX_ETLS, "protocol version: negotiated "
		    "%s, not TLS 1.3", SSL_get_version(c->ssl));
	if (peer == NULL)
		return conn_fail(c, NBX_ETLS, "peer did not return a "
		    "certificate");
	if (v != X509_V_OK)
		return conn_fail(c, NBX_ETLS, "certificate verify failed: %s",
		    X509_verify_cert_error_string(v));
	/* Again, on the certificate the session actually holds. */
	if (tls__peer_check(c, peer) != 0)
		return conn_fail(c, c->why_rc, "%s", c->why);
	c->verified = 1;
	c->phase = TLS_PH_OPEN;
	return 0;
}

int
tls_conn_handshake(struct tls_conn *c)
{
	int r;

	if (c->phase == TLS_PH_OPEN)
		return 0;
	if (c->phase == TLS_PH_FAILED)
		return c->rc;
	if (c->closed)
		return NBX_ECLOSED;
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return handshake_done(c);
	return conn_ssl_error(c, r);
}

int
tls_conn_read(struct tls_conn *c, void *p, size_t cap, size_t *got)
{
	size_t n;

	if (got == NULL)
		return NBX_EINVAL;
	*got = 0;
	if (p == NULL || cap == 0)
		return NBX_EINVAL;
	if (c->tail_off < c->tail_len) {
		n = c->tail_len - c->tail_off;
		n = n < cap ? n : cap;
		memcpy(p, c->tail + c->tail_off, n);
		c->tail_off += n;
		*got = n;
		return 0;
	}
	if (c->phase == TLS_PH_FAILED)
		return c->rc;
	if (c->phase != TLS_PH_OPEN)
		return NBX_EINVAL;
	if (c->peer_closed)
		return NBX_ECLOSED;
	ERR_clear_error();
	if (SSL_read_ex(c->ssl, p, cap, got) == 1)
		return 0;
	*got = 0;
	return conn_ssl_error(c, 0);
}

int
tls_conn_write(struct tls_conn *c, const void *p, size_t n)
{
	size_t w = 0;

	if (c->phase == TLS_PH_FAILED)
		return c->rc;
	if (c->phase != TLS_PH_OPEN || (p == NULL && n > 0))
		return NBX_EINVAL;
	if (c->closed)
		return NBX_ECLOSED;
	if (n == 0)
		return 0;
	if (tls__queue_pending(&c->out) > TLS_CONN_OUT_MAX)
		return NBX_EAGAIN;
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, p, n, &w) == 1 && w == n)
		return 0;
	return conn_ssl_error(c, 0);
}

size_t
tls_conn_pending_out(const struct tls_conn *c)
{
	return tls__queue_pending(&c->out);
}

size_t
tls_conn_take_buf(struct tls_conn *c, uint8_t **buf)
{
	return tls__queue_take(&c->out, buf);
}

int
tls_conn_shutdown(struct tls_conn *c)
{
	int r;

	if (c->phase == TLS_PH_FAILED)
		return c->rc;
	if (c->closed)
		return 0;
	c->closed = 1;
	if (c->phase != TLS_PH_OPEN)
		return 0;
	ERR_clear_error();
	r = SSL_shutdown(c->ssl);
	if (r < 0)
		return conn_fail(c, NBX_ETLS, "cannot send close_notify: %s",
		    pki_openssl_reason());
	return 0;
}

/* Decrypts everything still buffered into c->tail, at EOF. */
static int
eof_drain(struct tls_conn *c)
{
	size_t got;
	uint8_t *t;
	int rc;

	for (;;) {
		if (c->peer_closed)
			return 0;
		if (c->tail_cap - c->tail_len < 16384) {
			if (c->tail_cap >= TAIL_MAX)
				return conn_fail(c, NBX_ETOOBIG,
				    "too much data buffered at EOF");
			t = realloc(c->tail, c->tail_cap ? 2 * c->tail_cap :
			    65536);
			if (t == NULL)
				return conn_fail(c, NBX_ENOMEM, "out of memory");
			c->tail = t;
			c->tail_cap = c->tail_cap ? 2 * c->tail_cap : 65536;
		}
		ERR_clear_error();
		if (SSL_read_ex(c->ssl, c->tail + c->tail_len,
		    c->tail_cap - c->tail_len, &got) == 1) {
			c->tail_len += got;
			continue;
		}
		rc = conn_ssl_error(c, 0);
		return rc == NBX_ECLOSED ? 0 : rc;
	}
}

int
tls_conn_eof(struct tls_conn *c)
{
	if (c->eof)
		return c->eof_rc;
	c->eof = 1;
	c->in.eof = 1;		/* an empty queue now reads as the end */
	if (c->phase == TLS_PH_HANDSHAKE && !c->closed)
		(void)tls_conn_handshake(c);
	if (c->phase == TLS_PH_HANDSHAKE)
		c->eof_rc = conn_fail(c, NBX_ETLS,
		    "transport closed during the handshake");
	else if (c->phase == TLS_PH_OPEN)
		c->eof_rc = eof_drain(c);
	else
		c->eof_rc = c->rc;
	return c->eof_rc;
}

const char *
tls_conn_peer_id(const struct tls_conn *c)
{
	return c->verified ? c->peer_id : NULL;
}

int
tls_conn_peer_pin(const struct tls_conn *c, uint8_t out[PKI_PIN_LEN])
{
	X509 *peer = c->verified ? SSL_get0_peer_certificate(c->ssl) : NULL;
	int ok = 0;

	if (peer)
		ok = pki_spki_pin(peer, out) == 0;
	return ok ? 0 : NBX_EINVAL;
}

const char *
tls_conn_error(const struct tls_conn *c)
{
	return c->err;
}
