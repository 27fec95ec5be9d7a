/*
 * tls.c - TLS 1.3 with mutual authentication over in-memory queues.
 * OpenSSL does the protocol; this file pins down the policy (see tls.h),
 * checks the peer's node identity and SPKI pin inside certificate
 * verification, so a wrong peer fails the handshake itself, and
 * translates SSL_get_error and the ERR queue into NBX_* codes with a
 * reason an operator can act on.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>

#include "nbx_err.h"
#include "pki.h"
#include "tls.h"

#define TAIL_MAX	(TLS_CONN_IN_MAX + (1u << 17))

struct tls_ctx {
	SSL_CTX *ssl;
	char id[NBX_ID_MAX + 1];
};

enum phase {
	PH_HANDSHAKE,
	PH_OPEN,	/* handshake done, peer verified */
	PH_FAILED,	/* final; rc and err say why */
};

/*
 * A byte queue, one for each direction of a connection: bytes [off, len)
 * of p are waiting.  OpenSSL's memory BIO zeroes every stretch it grows
 * into and the shell then copied its output out again; this queue only
 * copies in, and hands its whole buffer to the shell (tls_conn_take_buf).
 */
struct tls_q {
	uint8_t *p;
	size_t off, len, cap;
	size_t hint;		/* the capacity a fresh buffer starts with */
	int eof;		/* input: the transport ended */
};

struct tls_conn {
	SSL *ssl;
	struct tls_q in, out;		/* ciphertext; the BIOs' data */
	enum phase phase;
	int rc;				/* the error, once PH_FAILED */
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
	int why_rc;			/* set by the callbacks below ... */
	char why[200];			/* ... when they refuse the peer */
	char hint[80];			/* what a refused ClientHello offered */
	char err[256];
	uint8_t *tail;			/* plaintext decrypted at EOF */
	size_t tail_len, tail_off, tail_cap;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

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
	c->phase = PH_FAILED;
	c->rc = rc;
	return rc;
}

static void
time_str(const ASN1_TIME *t, char *buf, size_t n)
{
	BIO *b = BIO_new(BIO_s_mem());
	int len = 0;

	if (b && ASN1_TIME_print(b, t))
		len = BIO_read(b, buf, (int)n - 1);
	buf[len > 0 ? len : 0] = '\0';
	BIO_free(b);
}

/* ------------------------------------------------------------------ */
/* Identity                                                            */
/* ------------------------------------------------------------------ */

/*
 * The nbx part of verifying a peer certificate whose chain OpenSSL has
 * accepted: identity, expected id, pin.  This is the one place a pin is
 * decided, for both directions: the pin is the one c->pin_for gives for
 * the identity just read from the certificate (a client's fixed pin for
 * the peer it dialled, a server's lookup of whoever the client turns out
 * to be).  On refusal the reason goes to c->why and -1 is returned.
 */
static int
peer_check(struct tls_conn *c, X509 *x)
{
	char id[NBX_ID_MAX + 1], hex[2 * PKI_PIN_LEN + 1];
	uint8_t pin[PKI_PIN_LEN];
	const uint8_t *want;

	c->why_rc = NBX_EPEER;
	if (pki_cert_node_id(x, id, c->why, sizeof c->why) != 0)
		return -1;
	if (c->has_expected && strcmp(id, c->expected) != 0) {
		snprintf(c->why, sizeof c->why,
		    "peer identity '%s' does not match expected '%s'", id,
		    c->expected);
		return -1;
	}
	want = c->pin_for ? c->pin_for(c->pin_arg, id) : NULL;
	if (want) {
		if (pki_spki_pin(x, pin) != 0) {
			snprintf(c->why, sizeof c->why,
			    "cannot compute the SPKI pin of peer '%s'", id);
			return -1;
		}
		if (CRYPTO_memcmp(pin, want, PKI_PIN_LEN) != 0) {
			nbx_hex(pin, PKI_PIN_LEN, hex);
			snprintf(c->why, sizeof c->why, "SPKI pin mismatch: "
			    "peer '%s' has key sha256 %s", id, hex);
			return -1;
		}
	}
	strcpy(c->peer_id, id);
	c->why[0] = '\0';
	return 0;
}

/*
 * Certificate verification callback.  Once OpenSSL accepts the leaf (depth
 * 0, ok), the identity and pin are checked here, so a wrong peer makes the
 * handshake fail with an alert instead of completing.
 */
static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *s = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = s ? SSL_get_app_data(s) : NULL;

	if (c == NULL)
		return 0;
	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return ok;
	if (peer_check(c, X509_STORE_CTX_get_current_cert(xs)) != 0) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static const char *
version_name(unsigned v, char *buf, size_t n)
{
	if (v >= 0x0301 && v <= 0x0303)
		snprintf(buf, n, "TLS 1.%u", (v & 0xff) - 1);
	else
		snprintf(buf, n, "%s 0x%04x", v == 0x0300 ? "SSL 3.0" : "version",
		    v);
	return buf;
}

/*
 * ClientHello callback (server side): notes the highest version a client
 * offered when it is below TLS 1.3, so the refusal that OpenSSL is about
 * to make can be explained.  It never changes the outcome.
 */
static int
hello_cb(SSL *s, int *alert, void *arg)
{
	struct tls_conn *c = SSL_get_app_data(s);
	const unsigned char *p;
	size_t n;
	unsigned v, best = 0;
	char buf[32];

	(void)alert;
	(void)arg;
	if (c == NULL)
		return SSL_CLIENT_HELLO_SUCCESS;
	if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_supported_versions, &p,
	    &n)) {
		for (size_t i = 1; n > 0 && p[0] == n - 1 && i + 1 < n; i += 2) {
			v = (unsigned)p[i] << 8 | p[i + 1];
			if ((v & 0x0f0f) != 0x0a0a && v <= TLS1_3_VERSION &&
			    v > best)	/* skips GREASE and drafts */
				best = v;
		}
	} else {
		best = SSL_client_hello_get0_legacy_version(s);
	}
	if (best != 0 && best < TLS1_3_VERSION)
		snprintf(c->hint, sizeof c->hint,
		    "protocol version: peer offered only %s",
		    version_name(best, buf, sizeof buf));
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* Contexts                                                            */
/* ------------------------------------------------------------------ */

/*
 * Reads the first PEM object from `path`, the file configured as `what`
 * ("cert", "key" or "crl"), into *out.  NBX_EIO if it cannot be opened,
 * NBX_ETLS if it does not parse; the reason, naming the file, in err.
 */
static int
pem_load(const char *what, const char *path, void **out, char *err,
    size_t errlen)
{
	FILE *f = fopen(path, "re");
	int key = what[0] == 'k', crl = what[1] == 'r';

	*out = NULL;
	if (f == NULL)
		return nbx_errf(err, errlen, NBX_EIO, "%s %s: cannot open: %s",
		    what, path, strerror(errno));
	*out = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL) :
	    crl ? (void *)PEM_read_X509_CRL(f, NULL, NULL, NULL) :
	    (void *)PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (*out == NULL)
		return nbx_errf(err, errlen, NBX_ETLS, "%s %s: not a PEM %s: %s",
		    what, path, key ? "private key" : crl ? "CRL" :
		    "certificate", pki_openssl_reason());
	return 0;
}

/* Loads every certificate in the CA file into the store and `cas`. */
static int
load_cas(X509_STORE *store, const char *path, STACK_OF(X509) *cas,
    char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	X509 *x;
	unsigned long e;

	if (f == NULL)
		return nbx_errf(err, errlen, NBX_EIO, "ca %s: cannot open: %s",
		    path, strerror(errno));
	ERR_clear_error();
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (X509_check_ca(x) < 1 || !X509_STORE_add_cert(store, x) ||
		    !sk_X509_push(cas, x)) {
			X509_free(x);
			fclose(f);
			return nbx_errf(err, errlen, NBX_ETLS, "ca %s: certificate %d "
			    "is not a usable CA certificate", path,
			    sk_X509_num(cas) + 1);
		}
	}
	fclose(f);
	e = ERR_peek_last_error();
	if (sk_X509_num(cas) == 0 || ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
		return nbx_errf(err, errlen, NBX_ETLS, "ca %s: %s", path,
		    sk_X509_num(cas) ? pki_openssl_reason() :
		    "no PEM certificate found");
	ERR_clear_error();
	return 0;
}

/* 1 if `x` is signed by one of `cas` (no time or revocation check). */
static int
signed_by(STACK_OF(X509) *cas, X509 *x)
{
	for (int i = 0; i < sk_X509_num(cas); i++) {
		X509 *ca = sk_X509_value(cas, i);

		if (X509_check_issued(ca, x) == X509_V_OK &&
		    X509_verify(x, X509_get0_pubkey(ca)) == 1)
			return 1;
	}
	ERR_clear_error();
	return 0;
}

/* Loads and vets the CRL, then turns on CRL checking; fails closed. */
static int
load_crl(X509_STORE *store, const char *path, STACK_OF(X509) *cas,
    char *err, size_t errlen)
{
	X509_CRL *crl;
	const ASN1_TIME *next;
	void *obj;
	char when[64];
	int rc, ok = 0;

	if ((rc = pem_load("crl", path, &obj, err, errlen)) != 0)
		return rc;
	crl = obj;
	rc = NBX_ETLS;
	for (int i = 0; !ok && i < sk_X509_num(cas); i++) {
		X509 *ca = sk_X509_value(cas, i);

		ok = X509_NAME_cmp(X509_CRL_get_issuer(crl),
		    X509_get_subject_name(ca)) == 0 &&
		    X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1;
	}
	ERR_clear_error();
	if (!ok) {
		nbx_errf(err, errlen, rc, "crl %s: not signed by the regional CA",
		    path);
		goto out;
	}
	if (X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl)) >= 0) {
		nbx_errf(err, errlen, rc, "crl %s: lastUpdate is in the future",
		    path);
		goto out;
	}
	if ((next = X509_CRL_get0_nextUpdate(crl)) == NULL) {
		nbx_errf(err, errlen, rc, "crl %s: has no nextUpdate", path);
		goto out;
	}
	if (X509_cmp_current_time(next) <= 0) {
		time_str(next, when, sizeof when);
		nbx_errf(err, errlen, rc, "crl %s: stale: nextUpdate %s is in the "
		    "past; publish a new CRL", path, when);
		goto out;
	}
	if (!X509_STORE_add_crl(store, crl) ||
	    !X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK)) {
		nbx_errf(err, errlen, rc, "crl %s: %s", path, pki_openssl_reason());
		goto out;
	}
	rc = 0;
out:
	X509_CRL_free(crl);
	return rc;
}

int
tls_ctx_new(const char *ca, const char *cert, const char *key,
    const char *crl, char *err, size_t errlen, struct tls_ctx **out)
{
	struct tls_ctx *t = NULL;
	STACK_OF(X509) *cas = NULL;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	void *obj;
	char why[160];
	int rc = NBX_ENOMEM;

	if (err && errlen)
		err[0] = '\0';
	if (out == NULL || ca == NULL || cert == NULL || key == NULL)
		return nbx_errf(err, errlen, NBX_EINVAL,
		    "ca, cert and key files are required");
	*out = NULL;
	ERR_clear_error();
	if ((t = calloc(1, sizeof *t)) == NULL ||
	    (cas = sk_X509_new_null()) == NULL ||
	    (t->ssl = SSL_CTX_new(TLS_method())) == NULL) {
		nbx_errf(err, errlen, rc, "out of memory");
		goto out;
	}
	rc = NBX_ETLS;
	if (!SSL_CTX_set_min_proto_version(t->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(t->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_num_tickets(t->ssl, 0)) {
		nbx_errf(err, errlen, rc, "cannot configure TLS: %s", pki_openssl_reason());
		goto out;
	}
	SSL_CTX_set_options(t->ssl, SSL_OP_NO_TICKET);
	/* Peers hold the CA; send only our own certificate. */
	SSL_CTX_set_mode(t->ssl, SSL_MODE_NO_AUTO_CHAIN);
	SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
	SSL_CTX_set_client_hello_cb(t->ssl, hello_cb, NULL);
	if ((rc = load_cas(SSL_CTX_get_cert_store(t->ssl), ca, cas, err,
	    errlen)) != 0)
		goto out;
	if ((rc = pem_load("cert", cert, &obj, err, errlen)) != 0)
		goto out;
	x = obj;
	if ((rc = pem_load("key", key, &obj, err, errlen)) != 0)
		goto out;
	pk = obj;
	rc = NBX_ETLS;
	if (!SSL_CTX_use_certificate(t->ssl, x) ||
	    !SSL_CTX_use_PrivateKey(t->ssl, pk) ||
	    !SSL_CTX_check_private_key(t->ssl)) {
		nbx_errf(err, errlen, rc, "key %s does not match cert %s: %s", key,
		    cert, pki_openssl_reason());
		goto out;
	}
	if (!signed_by(cas, x)) {
		nbx_errf(err, errlen, rc, "cert %s is not signed by the CA in %s",
		    cert, ca);
		goto out;
	}
	if (pki_cert_node_id(x, t->id, why, sizeof why) != 0) {
		nbx_errf(err, errlen, rc, "cert %s: %s", cert, why);
		goto out;
	}
	if (crl && *crl && (rc = load_crl(SSL_CTX_get_cert_store(t->ssl),
	    crl, cas, err, errlen)) != 0)
		goto out;
	*out = t;
	t = NULL;
	rc = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	X509_free(x);
	sk_X509_pop_free(cas, X509_free);
	tls_ctx_free(t);
	return rc;
}

int
tls_ctx_check_validity(const struct tls_ctx *ctx, const char *cert,
    char *err, size_t errlen)
{
	X509 *x = SSL_CTX_get0_certificate(ctx->ssl);

	if (x == NULL)
		return nbx_errf(err, errlen, NBX_ETLS, "no certificate loaded");
	if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
		return nbx_errf(err, errlen, NBX_ETLS, "cert %s is not valid "
		    "yet", cert);
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
		return nbx_errf(err, errlen, NBX_ETLS, "cert %s has expired",
		    cert);
	return 0;
}

void
tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

const char *
tls_ctx_id(const struct tls_ctx *ctx)
{
	return ctx->id;
}

int
tls_ctx_verify_peer(struct tls_ctx *ctx, const struct tls_conn *conn,
    char *err, size_t errlen)
{
	X509 *peer = conn && conn->verified ?
	    SSL_get0_peer_certificate(conn->ssl) : NULL;
	X509_STORE_CTX *xs = NULL;
	int rc = NBX_ETLS;

	if (ctx == NULL || peer == NULL)
		return nbx_errf(err, errlen, NBX_EINVAL, "no verified peer");
	if ((xs = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(xs, SSL_CTX_get_cert_store(ctx->ssl), peer,
	    SSL_get_peer_cert_chain(conn->ssl)) ||
	    !X509_STORE_CTX_set_purpose(xs, conn->is_server ?
	    X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER)) {
		nbx_errf(err, errlen, rc, "%s", pki_openssl_reason());
		goto out;
	}
	if (X509_verify_cert(xs) != 1) {
		nbx_errf(err, errlen, rc, "certificate verify failed: %s",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(xs);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

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
		if (c->phase == PH_HANDSHAKE)
			return conn_fail(c, NBX_ETLS,
			    "transport closed during the handshake");
		return conn_fail(c, NBX_ETLS, "truncated: transport closed "
		    "without close_notify");
	}
	return conn_fail(c, NBX_ETLS, "%s", text);
}

/* ------------------------------------------------------------------ */
/* The queues as BIOs                                                  */
/* ------------------------------------------------------------------ */

#define Q_FIRST		(16u << 10)	/* a fresh queue's first buffer */

static size_t
q_pending(const struct tls_q *q)
{
	return q->len - q->off;
}

/* Room for n more bytes at the end of q; 0 or -1 (out of memory). */
static int
q_room(struct tls_q *q, size_t n)
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

/* Appends p[0..n) to q; 0 or -1 (out of memory). */
static int
q_put(struct tls_q *q, const void *p, size_t n)
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
	struct tls_q *q = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	*written = 0;
	if (q_put(q, in, n) != 0)
		return 0;		/* no retry flag: an error */
	*written = n;
	return 1;
}

static int
q_bio_read(BIO *b, char *out, size_t cap, size_t *got)
{
	struct tls_q *q = BIO_get_data(b);
	size_t n = q_pending(q);

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
	struct tls_q *q = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)q_pending(q);
	case BIO_CTRL_EOF:
		return q->eof && q_pending(q) == 0;
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

/* A BIO over q (freed with the SSL that holds it), or NULL. */
static BIO *
q_bio(struct tls_q *q)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	BIO *b;

	pthread_once(&once, q_method_make);
	if (q_method == NULL || (b = BIO_new(q_method)) == NULL)
		return NULL;
	BIO_set_data(b, q);
	return b;
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
	    (rbio = q_bio(&c->in)) == NULL)
		goto out;
	if ((wbio = q_bio(&c->out)) == NULL) {
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
	free(conn->in.p);
	free(conn->out.p);
	free(conn->tail);
	free(conn);
}

int
tls_conn_feed(struct tls_conn *c, const void *in, size_t n)
{
	if (c->phase == PH_FAILED)
		return c->rc;
	if (c->eof || (in == NULL && n > 0))
		return NBX_EINVAL;
	if (n == 0)
		return 0;
	if (n > TLS_CONN_IN_MAX || q_pending(&c->in) > TLS_CONN_IN_MAX - n)
		return NBX_ETOOBIG;
	return q_put(&c->in, in, n) != 0 ? NBX_ENOMEM : 0;
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
	if (peer_check(c, peer) != 0)
		return conn_fail(c, c->why_rc, "%s", c->why);
	c->verified = 1;
	c->phase = PH_OPEN;
	return 0;
}

int
tls_conn_handshake(struct tls_conn *c)
{
	int r;

	if (c->phase == PH_OPEN)
		return 0;
	if (c->phase == PH_FAILED)
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
	if (c->phase == PH_FAILED)
		return c->rc;
	if (c->phase != PH_OPEN)
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

	if (c->phase == PH_FAILED)
		return c->rc;
	if (c->phase != PH_OPEN || (p == NULL && n > 0))
		return NBX_EINVAL;
	if (c->closed)
		return NBX_ECLOSED;
	if (n == 0)
		return 0;
	if (q_pending(&c->out) > TLS_CONN_OUT_MAX)
		return NBX_EAGAIN;
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, p, n, &w) == 1 && w == n)
		return 0;
	return conn_ssl_error(c, 0);
}

size_t
tls_conn_pending_out(const struct tls_conn *c)
{
	return q_pending(&c->out);
}

size_t
tls_conn_take_buf(struct tls_conn *c, uint8_t **buf)
{
	struct tls_q *q = &c->out;
	size_t n = q_pending(q);

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

int
tls_conn_shutdown(struct tls_conn *c)
{
	int r;

	if (c->phase == PH_FAILED)
		return c->rc;
	if (c->closed)
		return 0;
	c->closed = 1;
	if (c->phase != PH_OPEN)
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
	if (c->phase == PH_HANDSHAKE && !c->closed)
		(void)tls_conn_handshake(c);
	if (c->phase == PH_HANDSHAKE)
		c->eof_rc = conn_fail(c, NBX_ETLS,
		    "transport closed during the handshake");
	else if (c->phase == PH_OPEN)
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
