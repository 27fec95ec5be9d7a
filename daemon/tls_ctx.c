/*
 * tls_ctx.c - TLS contexts: the policy every connection gets (TLS 1.3
 * only, mutual verification, no tickets), the CA, certificate, key and
 * CRL loaded and vetted, and the checks a reload makes of live peers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "nbx_err.h"
#include "tls_int.h"

/* An ASN.1 time as text, for messages ("" if it cannot be printed). */
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
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls__verify_cb);
	SSL_CTX_set_client_hello_cb(t->ssl, tls__hello_cb, NULL);
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
