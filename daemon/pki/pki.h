/*
 * pki.h - node identities in X.509 certificates: which node a certificate
 * names, the SHA-256 pin of its key, and OpenSSL's errors in words.  The
 * CA tools (nbxctl ca) and the daemon's TLS both decide who a certificate
 * is through this module, so they cannot disagree.
 */
#ifndef NBX_PKI_H
#define NBX_PKI_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "change.h"

#define PKI_PIN_LEN	32	/* a SHA-256 SPKI pin */

/*
 * Reads the node identity from a certificate: CN and/or SAN URIs of the
 * form urn:nbx:node:<id>.  At most one CN and at most one such URI; when
 * both are present they must be equal; the id must satisfy
 * nbx_node_id_valid.  Returns 0 and the id in `out`, or NBX_EPEER with the
 * reason in err.  The certificate is only borrowed.
 */
int pki_cert_node_id(X509 *cert, char out[NBX_ID_MAX + 1], char *err,
    size_t errlen);

/*
 * The SPKI pin of a certificate: SHA-256 of its DER SubjectPublicKeyInfo.
 * 0, NBX_EINVAL (no certificate) or NBX_ETLS.
 */
int pki_spki_pin(X509 *x, uint8_t out[PKI_PIN_LEN]);

/* The reason of the oldest queued OpenSSL error; clears the queue. */
const char *pki_openssl_reason(void);

#endif
