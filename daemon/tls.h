/*
 * tls.h - mutually authenticated TLS 1.3 between nodes, sans I/O.
 *
 * A tls_conn never touches a socket: the shell feeds it the ciphertext it
 * received (tls_conn_feed) and drains the ciphertext it must send
 * (tls_conn_pending_out / tls_conn_take_buf).  Two connections can thus
 * run a whole handshake and exchange in memory, in one test process.
 *
 * Policy (DESIGN.md, "Transport security"), enforced here and not
 * configurable: TLS 1.3 only; both sides present a certificate and verify
 * the other's (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) against
 * the regional CA file alone, never the system store; the peer's node id
 * (certificate CN, or SAN URI urn:nbx:node:<id>; both must agree when both
 * are present) must equal the expected id exactly; an optional SHA-256 pin
 * of the peer's SubjectPublicKeyInfo must match; a configured CRL is
 * checked for every peer and fails closed.  Session tickets and resumption
 * are off, so every connection verifies a certificate against the current
 * CA and CRL.  No application data is released in either direction before
 * the peer's certificate, identity and pin are checked.
 *
 * Driving a connection (what the libuv shell does):
 *
 *   on bytes from the socket:  tls_conn_feed, then tls_conn_handshake
 *                              until it returns 0, then tls_conn_read
 *                              until NBX_EAGAIN;
 *   after EVERY tls_conn_* call: if tls_conn_pending_out() > 0, take the
 *                              bytes and write them to the socket (TLS 1.3
 *                              produces output from reads too: key update
 *                              replies, alerts);
 *   on socket EOF:             tls_conn_eof, then tls_conn_read until it
 *                              stops returning data;
 *   on any error:              send what is pending (it may be the alert
 *                              that tells the peer why), then close.
 *
 * Error codes: NBX_ETLS for TLS failures (certificate verification,
 * protocol, alerts from the peer, truncation), NBX_EPEER when the chain
 * verified but the identity or pin is wrong.  tls_conn_error() gives the
 * reason in words, with OpenSSL's own text where it has one.
 */
#ifndef NBX_TLS_H
#define NBX_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "change.h"
#include "pki.h"

/* Received ciphertext buffered and not yet processed; feeds beyond it fail. */
#define TLS_CONN_IN_MAX		(4u << 20)
/*
 * Ciphertext queued for sending past which tls_conn_write refuses new data
 * (NBX_EAGAIN): the shell's signal that the peer is slow.
 */
#define TLS_CONN_OUT_MAX	(4u << 20)

struct tls_ctx;
struct tls_conn;

/*
 * Builds a context from PEM files: `ca` (the regional CA certificate; more
 * than one may be concatenated during a CA rollover), this node's `cert`
 * and `key`, and an optional `crl` (NULL or "" for none).  Checks, so that
 * a misconfiguration fails here rather than in every handshake: the key
 * matches the certificate; the certificate is signed by a CA in `ca`; the
 * certificate carries a valid node identity (tls_ctx_id).  When a CRL is
 * configured it must exist, parse, be signed by a CA in `ca`, and be
 * current (lastUpdate not in the future, nextUpdate present and not in
 * the past); it is then checked in every handshake (X509_V_FLAG_CRL_CHECK),
 * so a peer certificate it revokes fails, and once its nextUpdate passes
 * every handshake fails until a fresh CRL is loaded.  The file holds one
 * CRL, from the CA that issues the peers; with a CRL configured, a peer
 * whose issuer has no CRL loaded fails too.
 *
 * Returns 0 and *out, or NBX_EINVAL / NBX_EIO / NBX_ETLS / NBX_ENOMEM with
 * a message naming the file at fault in `err`.  The caller owns *out.
 *
 * Reloading (`nbxctl reload`): build a new context; if that fails keep the
 * old one and report the error; if it succeeds, give the new one to new
 * connections and tls_ctx_free the old one.  Connections hold their own
 * reference to the underlying SSL_CTX, so they keep working on the old
 * configuration; use tls_ctx_verify_peer to find those whose peer the new
 * CA or CRL no longer accepts, and close them.
 */
int tls_ctx_new(const char *ca, const char *cert, const char *key,
    const char *crl, char *err, size_t errlen, struct tls_ctx **out);

/* Drops the caller's reference; NULL is a no-op.  Live connections made
 * from it stay valid. */
void tls_ctx_free(struct tls_ctx *ctx);

/*
 * Checks that this node's own certificate is valid now (a node serving an
 * expired or not-yet-valid certificate is refused by every peer).  `cert`
 * names the file in the message.  0 or NBX_ETLS.
 */
int tls_ctx_check_validity(const struct tls_ctx *ctx, const char *cert,
    char *err, size_t errlen);

/* This node's identity as read from its certificate; valid while ctx is. */
const char *tls_ctx_id(const struct tls_ctx *ctx);

/*
 * Checks the verified peer certificate of an established `conn` against
 * the CA, CRL and current time of `ctx` (typically a freshly reloaded
 * one).  Returns 0 if it still passes, NBX_EINVAL if conn has no verified
 * peer, NBX_ETLS with the reason in err otherwise.
 */
int tls_ctx_verify_peer(struct tls_ctx *ctx, const struct tls_conn *conn,
    char *err, size_t errlen);

/*
 * Starts a connection using `ctx` as server or client.  `expected_peer_id`
 * is the node id the peer's certificate must carry; required for a
 * client, optional for a server (NULL: any valid identity under the CA is
 * accepted, and tls_conn_peer_id tells which).  `pin`: NULL or 32 bytes,
 * the SHA-256 of the peer's DER SubjectPublicKeyInfo (pki_spki_pin),
 * required of whichever peer connects.  Both are copied.  Returns 0 and
 * *out (owned by the caller), NBX_EINVAL (bad argument or invalid expected
 * id) or NBX_ENOMEM.  A client has its ClientHello ready in the output
 * buffer on return.
 */
int tls_conn_new(struct tls_ctx *ctx, int is_server,
    const char *expected_peer_id, const uint8_t *pin,
    struct tls_conn **out);

/*
 * As tls_conn_new, but the pin is looked up by the identity the peer's
 * certificate carries, during certificate verification: a server that
 * accepts any identity learns who the peer is only there, and a wrong
 * pin must fail the handshake itself, before any application data.  The
 * same check serves a client (its lookup is asked for expected_peer_id,
 * once the certificate carries it).
 *
 * pin_for(arg, peer_id) is called inside tls_conn_handshake (possibly
 * more than once per handshake) with the peer's verified node id; it
 * returns the PKI_PIN_LEN-byte pin configured for that peer, which must
 * stay valid until it returns, or NULL when that peer has no pin (an
 * identity the caller does not know at all is the caller's to refuse once
 * tls_conn_peer_id names it).  A mismatch fails the handshake with
 * NBX_EPEER and "SPKI pin mismatch: peer '<id>' has key sha256 <hex>".
 * `pin_for` may be NULL (no pin); `arg` is the caller's and must outlive
 * the connection's handshake.
 */
int tls_conn_new_lookup(struct tls_ctx *ctx, int is_server,
    const char *expected_peer_id,
    const uint8_t *(*pin_for)(void *arg, const char *peer_id), void *arg,
    struct tls_conn **out);

/* Frees the connection; sends nothing (call tls_conn_shutdown first for a
 * clean close).  NULL is a no-op. */
void tls_conn_free(struct tls_conn *conn);

/*
 * Hands `n` bytes of ciphertext received from the peer to the connection.
 * Returns 0 (all taken), NBX_ETOOBIG if that would put more than
 * TLS_CONN_IN_MAX bytes of unprocessed input in the buffer (nothing is
 * taken; read first, or stop reading the socket), NBX_EINVAL after
 * tls_conn_eof, the connection's error if it has failed, or NBX_ENOMEM.
 */
int tls_conn_feed(struct tls_conn *conn, const void *in, size_t n);

/*
 * Advances the handshake with the input fed so far.  Returns 0 once it is
 * complete and the peer's certificate chain, identity and pin are all
 * verified (and on every later call); NBX_EAGAIN if more input is needed;
 * NBX_ETLS or NBX_EPEER on failure, which is final: every later call
 * returns the same code, and tls_conn_error tells why.
 *
 * In TLS 1.3 a client finishes before the server has checked the client
 * certificate; if the server then refuses it, the client learns it from
 * its next tls_conn_read (NBX_ETLS, "peer sent alert: ...").  The server
 * never releases data from a client it refused.
 */
int tls_conn_handshake(struct tls_conn *conn);

/*
 * Decrypts application data into p[0..cap).  Returns 0 with *got > 0;
 * NBX_EAGAIN when no complete record is buffered; NBX_ECLOSED once the
 * peer's close_notify has been read (clean end of its data); NBX_EINVAL
 * before the handshake is complete (nothing is released before the peer
 * is verified); NBX_ETLS / NBX_EPEER on failure (final).  *got is 0 on
 * every non-zero return.
 */
int tls_conn_read(struct tls_conn *conn, void *p, size_t cap, size_t *got);

/*
 * Encrypts all `n` bytes into the output buffer; they are then sent by
 * draining it.  Returns 0; NBX_EINVAL before the handshake is complete
 * (not one byte of application data goes out before the peer is
 * verified); NBX_ECLOSED after tls_conn_shutdown; NBX_EAGAIN, taking
 * nothing, while more than TLS_CONN_OUT_MAX bytes wait to be drained (one
 * accepted write may go past that bound); the connection's error if it has
 * failed.
 */
int tls_conn_write(struct tls_conn *conn, const void *p, size_t n);

/* Bytes of ciphertext waiting to be sent to the peer. */
size_t tls_conn_pending_out(const struct tls_conn *conn);

/*
 * Takes all the pending ciphertext at once, without a copy: *buf is a
 * malloc'd buffer the caller now owns (free it once sent), and the
 * return its length; 0 with *buf NULL if nothing is pending.
 */
size_t tls_conn_take_buf(struct tls_conn *conn, uint8_t **buf);

/*
 * Queues close_notify: after draining it, the peer sees a clean end of
 * data.  Later writes fail with NBX_ECLOSED; reading continues until the
 * peer's own close_notify.  Before the handshake completes there is
 * nothing to close cleanly: it only marks the connection closed.  Returns
 * 0, or the connection's error if it has failed.
 */
int tls_conn_shutdown(struct tls_conn *conn);

/*
 * Tells the connection that the transport reached end of file, and says
 * how the peer ended: 0 if it had sent close_notify (a clean close: every
 * byte it wrote was delivered); NBX_ETLS if not (truncation: the stream
 * was cut, maybe by an attacker, and the tail of the data may be missing;
 * tls_conn_error says "truncated ..."); or the connection's earlier
 * error.  Input fed before the EOF is processed first; its application
 * data, if any, is still returned by tls_conn_read, after which read
 * returns NBX_ECLOSED (clean) or the error.  Calling it again returns the
 * same value.
 */
int tls_conn_eof(struct tls_conn *conn);

/*
 * The verified node id of the peer, or NULL before the handshake is
 * complete.  Valid until tls_conn_free.
 */
const char *tls_conn_peer_id(const struct tls_conn *conn);

/*
 * Stores the SPKI pin (SHA-256 of the DER SubjectPublicKeyInfo) of the
 * verified peer certificate in `out`, for display and tests; pins are
 * enforced during the handshake (tls_conn_new, tls_conn_new_lookup), not
 * with this.  Returns 0, or NBX_EINVAL before the handshake is complete.
 */
int tls_conn_peer_pin(const struct tls_conn *conn, uint8_t out[PKI_PIN_LEN]);

/* Why the connection failed ("" if it has not); valid until tls_conn_free. */
const char *tls_conn_error(const struct tls_conn *conn);

#endif
