/*
 * pki.c - node identities in X.509 certificates (pki.h): the node id a
 * certificate names, its SPKI pin, and OpenSSL's reasons in words.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "nbx_err.h"
#include "pki.h"

#define URN_PREFIX	"urn:nbx:node:"

/* The oldest queued OpenSSL error's reason; clears the queue. */
const char *
pki_openssl_reason(void)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "unknown OpenSSL error";
}

int
pki_spki_pin(X509 *x, uint8_t out[PKI_PIN_LEN])
{
	X509_PUBKEY *pk = x ? X509_get_X509_PUBKEY(x) : NULL;
	unsigned char *der = NULL;
	int n, rc = 0;

	if (pk == NULL)
		return NBX_EINVAL;
	if ((n = i2d_X509_PUBKEY(pk, &der)) <= 0)
		return NBX_ETLS;
	if (!EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL))
		rc = NBX_ETLS;
	OPENSSL_free(der);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Identity                                                            */
/* ------------------------------------------------------------------ */

static int
id_copy(const unsigned char *p, int n, char out[NBX_ID_MAX + 1])
{
	struct nbx_str s = { (const char *)p, n > 0 ? (uint32_t)n : 0 };

	if (n <= 0 || !nbx_node_id_valid(s))
		return -1;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
	return 0;
}

int
pki_cert_node_id(X509 *cert, char out[NBX_ID_MAX + 1], char *err,
    size_t errlen)
{
	X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;
	GENERAL_NAMES *gens = NULL;
	char cn[NBX_ID_MAX + 1] = "", uri[NBX_ID_MAX + 1] = "", id[NBX_ID_MAX + 1];
	unsigned char *u = NULL;
	const size_t plen = sizeof URN_PREFIX - 1;
	int i, n, crit = -1, rc = NBX_EPEER;

	out[0] = '\0';
	if (name == NULL)
		return nbx_errf(err, errlen, NBX_EINVAL, "no certificate");
	if ((i = X509_NAME_get_index_by_NID(name, NID_commonName, -1)) >= 0) {
		if (X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0) {
			nbx_errf(err, errlen, rc, "certificate has more than one CN");
			goto out;
		}
		n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(
		    X509_NAME_get_entry(name, i)));
		if (id_copy(u, n, cn) != 0) {
			nbx_errf(err, errlen, rc, "certificate CN is not a node id "
			    "(1-32 of [a-z0-9-])");
			goto out;
		}
	}
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (gens == NULL && crit != -1) {
		nbx_errf(err, errlen, rc, "certificate subjectAltName is %s",
		    crit == -2 ? "repeated" : "malformed");
		goto out;
	}
	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *p;

		if (g->type != GEN_URI)
			continue;
		p = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		n = ASN1_STRING_length(g->d.uniformResourceIdentifier);
		if (n < (int)plen || memcmp(p, URN_PREFIX, plen) != 0)
			continue;
		if (id_copy(p + plen, n - (int)plen, id) != 0) {
			nbx_errf(err, errlen, rc, "certificate SAN URI does not hold "
			    "a node id (1-32 of [a-z0-9-])");
			goto out;
		}
		if (uri[0] && strcmp(uri, id) != 0) {
			nbx_errf(err, errlen, rc, "certificate SAN names two node "
			    "ids, '%s' and '%s'", uri, id);
			goto out;
		}
		strcpy(uri, id);
	}
	if (!cn[0] && !uri[0]) {
		nbx_errf(err, errlen, rc, "certificate carries no node identity "
		    "(CN or SAN URI " URN_PREFIX "<id>)");
		goto out;
	}
	if (cn[0] && uri[0] && strcmp(cn, uri) != 0) {
		nbx_errf(err, errlen, rc, "certificate CN '%s' and SAN URI node id "
		    "'%s' disagree", cn, uri);
		goto out;
	}
	strcpy(out, cn[0] ? cn : uri);
	rc = 0;
out:
	GENERAL_NAMES_free(gens);
	OPENSSL_free(u);
	return rc;
}

