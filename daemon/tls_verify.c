/*
 * tls_verify.c - the nbx part of certificate verification, in both
 * directions: the peer's node identity and SPKI pin are checked inside
 * OpenSSL's verification, so a wrong peer fails the handshake itself;
 * and the ClientHello note that explains why an old peer was refused.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "nbx_err.h"
#include "tls_int.h"

/*
 * The nbx part of verifying a peer certificate whose chain OpenSSL has
 * accepted: identity, expected id, pin.  This is the one place a pin is
 * decided, for both directions: the pin is the one c->pin_for gives for
 * the identity just read from the certificate (a client's fixed pin for
 * the peer it dialled, a server's lookup of whoever the client turns out
 * to be).  On refusal the reason goes to c->why and -1 is returned.
 */
int
tls__peer_check(struct tls_conn *c, X509 *x)
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
int
tls__verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *s = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = s ? SSL_get_app_data(s) : NULL;

	if (c == NULL)
		return 0;
	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return ok;
	if (tls__peer_check(c, X509_STORE_CTX_get_current_cert(xs)) != 0) {
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
int
tls__hello_cb(SSL *s, int *alert, void *arg)
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
