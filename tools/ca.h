/*
 * ca.h - the regional certificate authority behind `nbxctl ca ...`.
 *
 * One CA directory per region holds the CA key and certificate and the
 * record of every certificate it issued, so that a certificate can later be
 * revoked and a CRL published.  Everything is done with the OpenSSL 3 API;
 * nothing shells out to openssl(1).
 *
 * CA directory layout (mode 0700):
 *
 *   ca.key      EC P-256 private key, PKCS#8 PEM, mode 0600
 *   ca.crt      self-signed CA certificate, PEM
 *   index.txt   one line per issued certificate, tab-separated:
 *               serial (uppercase hex), node id, "valid" or "revoked",
 *               revocation time (Unix seconds, "-" while valid);
 *               lines starting with '#' are comments
 *   crlnumber   decimal number of the next CRL
 *
 * Keys are P-256 because every TLS 1.3 implementation must support
 * ecdsa_secp256r1_sha256; certificates are signed with SHA-256.
 *
 * Every function fills `err` (when errlen > 0) with a message that names
 * the file at fault, and returns 0 or a negative NBX_E* code.  Functions
 * that change the index hold an exclusive flock(2) on the CA directory, so
 * two nbxctl processes cannot lose each other's entries.
 */
#ifndef NBX_CA_H
#define NBX_CA_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#define CA_NODE_DAYS	825	/* default node certificate lifetime */
#define CA_CA_DAYS	3652	/* CA certificate lifetime: ten years */
#define CA_CRL_DAYS	7	/* default CRL lifetime */
#define CA_DAYS_MAX	36500	/* any lifetime above this is refused */
/*
 * ca_init and ca_issue backdate notBefore by this much, so that a
 * certificate made now is already valid on a peer whose clock runs a
 * little behind.
 */
#define CA_BACKDATE_S	300

/*
 * Creates the CA in `dir`: the directory itself (0700) if missing, a new
 * P-256 key in ca.key (created 0600 with O_EXCL), and a self-signed
 * certificate ca.crt: CN "nbx regional CA", basicConstraints critical
 * CA:TRUE, keyUsage critical keyCertSign+cRLSign, subjectKeyIdentifier,
 * random 128-bit serial, valid CA_CA_DAYS from now - CA_BACKDATE_S;
 * plus an empty index.txt and crlnumber.
 *
 * Returns 0; NBX_EEXIST if dir/ca.key exists (nothing is touched);
 * NBX_EIO on a file error; NBX_ETLS if OpenSSL fails; NBX_EINVAL on a bad
 * argument.  On failure the files this call created are removed.
 */
int ca_init(const char *dir, char *err, size_t errlen);

/* Test and expert knobs for ca_issue_ex. */
struct ca_issue_opts {
	unsigned days;			/* lifetime; 0 means CA_NODE_DAYS */
	long not_before_offset_s;	/* notBefore = now + this (may be
					   negative); notAfter = notBefore +
					   days */
};

/*
 * Issues a node certificate signed by the CA in `dir` and writes, in
 * `out_dir` (created 0700 if missing):
 *   node.key  new P-256 key, created O_EXCL with mode 0600 from the start
 *   node.crt  CN = node_id, SAN URI urn:nbx:node:<node_id>, keyUsage
 *             critical digitalSignature, extendedKeyUsage serverAuth +
 *             clientAuth, basicConstraints critical CA:FALSE, random
 *             128-bit serial, notBefore now - CA_BACKDATE_S, valid `days`
 *             (0 means CA_NODE_DAYS)
 *   ca.crt    a copy of the CA certificate
 * and appends the serial to dir/index.txt before any file is written, so
 * the CA never loses track of a certificate it signed.
 *
 * `node_id` must satisfy nbx_node_id_valid (1-32 of [a-z0-9-]).  On
 * success `pin_hex` receives the lowercase hex SHA-256 of the new
 * certificate's DER SubjectPublicKeyInfo (the value `peer add --pin`
 * takes) and 0 is returned.  Returns NBX_EINVAL (bad node id or days),
 * NBX_EEXIST (out_dir/node.key exists), NBX_EIO, NBX_ETLS.  On failure the
 * output files this call created are removed and pin_hex is "".
 */
int ca_issue(const char *dir, const char *node_id, const char *out_dir,
    unsigned days, char pin_hex[65], char *err, size_t errlen);

/*
 * As ca_issue, with the validity window taken from `opts` (NULL: defaults,
 * i.e. CA_NODE_DAYS from now - CA_BACKDATE_S).  Lets tests make a
 * certificate that is already expired or not yet valid.
 */
int ca_issue_ex(const char *dir, const char *node_id, const char *out_dir,
    const struct ca_issue_opts *opts, char pin_hex[65], char *err,
    size_t errlen);

/*
 * Marks the certificate in `cert_path` revoked in dir/index.txt, with the
 * current time as revocation time.  The certificate must have been signed
 * by this CA (checked with the CA public key); a certificate this CA signed
 * but that is missing from the index is added as revoked.  Revoking an
 * already revoked certificate succeeds and keeps the first revocation
 * time.  The index is rewritten atomically (temporary file + rename).
 * Returns 0, NBX_EINVAL (cert not from this CA), NBX_EIO, NBX_ETLS.
 * Takes effect for peers only through a new CRL (ca_crl).
 */
int ca_revoke(const char *dir, const char *cert_path, char *err,
    size_t errlen);

/*
 * Writes to `out_path` a v2 CRL signed by the CA listing every revoked
 * serial, with lastUpdate now - CA_BACKDATE_S, nextUpdate lastUpdate +
 * `days` (0 means CA_CRL_DAYS), a CRL number (from dir/crlnumber, then incremented) and the
 * authorityKeyIdentifier.  The file is replaced atomically, so a daemon
 * reloading it never sees half a CRL.  Nodes configured with a CRL refuse
 * all handshakes once nextUpdate has passed: publish a new one before.
 * Returns 0, NBX_EINVAL, NBX_EIO, NBX_ETLS.
 */
int ca_crl(const char *dir, const char *out_path, unsigned days, char *err,
    size_t errlen);

/* Test knobs for ca_crl_ex. */
struct ca_crl_opts {
	unsigned days;			/* 0 means CA_CRL_DAYS */
	long last_update_offset_s;	/* lastUpdate = now + this;
					   nextUpdate = lastUpdate + days */
};

/* As ca_crl, with times from `opts` (NULL: the defaults of ca_crl); lets
 * tests make a stale CRL. */
int ca_crl_ex(const char *dir, const char *out_path,
    const struct ca_crl_opts *opts, char *err, size_t errlen);

/*
 * Stores in `out` the SHA-256 of the DER encoding of the certificate's
 * SubjectPublicKeyInfo (the SPKI pin).  Returns 0, NBX_EINVAL (NULL cert
 * or no key) or NBX_ETLS.  The certificate is only borrowed.
 */
int ca_spki_pin(X509 *cert, uint8_t out[32]);

/* As ca_spki_pin, for the PEM certificate in `cert_path`; NBX_EIO if the
 * file cannot be read or parsed. */
int ca_spki_pin_file(const char *cert_path, uint8_t out[32]);

/* Writes the 64 lowercase hex digits of `pin` and a NUL to `hex`. */
void ca_pin_hex(const uint8_t pin[32], char hex[65]);

#endif
