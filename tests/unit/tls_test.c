/*
 * tls_test.c - TLS over memory BIOs (daemon/tls_*.c).  Client and
 * server run in one process; a pump moves ciphertext between them.
 * Every refusal case checks three things: the handshake fails, the
 * reason says why, and no application data crosses.  Certificates come
 * from tools/ca.c; peers the nbx API cannot make (no certificate, TLS
 * 1.2) are raw OpenSSL.
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "nbx_err.h"
#include "tls.h"

static char root[64];
static char cadir[128], otherdir[128];
static char err[512];

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* root/a/b in one of a few rotating buffers. */
static const char *
path(const char *a, const char *b)
{
	static char buf[8][PATH_MAX];
	static int i;
	char *p;

	i = (i + 1) % 8;
	p = buf[i];
	cr_assert(strlen(root) + strlen(a) + strlen(b) + 3 < PATH_MAX);
	strcpy(p, root);
	strcat(p, "/");
	strcat(p, a);
	if (*b) {
		strcat(p, "/");
		strcat(p, b);
	}
	return p;
}

/* Issues `id` from the CA in root/<ca> into root/<name>. */
static void
node(const char *ca, const char *name, const char *id,
    const struct ca_issue_opts *o)
{
	char pin[65];
	int rc = ca_issue_ex(path(ca, ""), id, path(name, ""), o, pin, err,
	    sizeof err);

	cr_assert_eq(rc, 0, "issue %s: %s", name, err);
}

static void
setup(void)
{
	strcpy(root, "/tmp/nbx-tls-test-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(cadir, sizeof cadir, "%s/ca", root);
	snprintf(otherdir, sizeof otherdir, "%s/other", root);
	cr_assert_eq(ca_init(cadir, err, sizeof err), 0, "%s", err);
	node("ca", "fi", "fi", NULL);
	node("ca", "lv", "lv", NULL);
}

static void
teardown(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* A context from root/<name>/{ca.crt,node.crt,node.key}, optional CRL. */
static struct tls_ctx *
ctx_of(const char *name, const char *crl)
{
	struct tls_ctx *t = NULL;
	char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
	int rc;

	strcpy(ca, path(name, "ca.crt"));
	strcpy(crt, path(name, "node.crt"));
	strcpy(key, path(name, "node.key"));
	rc = tls_ctx_new(ca, crt, key, crl, err, sizeof err, &t);
	cr_assert_eq(rc, 0, "ctx %s: %s", name, err);
	return t;
}

/* ------------------------------------------------------------------ */
/* Endpoints and the pump                                              */
/* ------------------------------------------------------------------ */

/* Either an nbx connection or a raw OpenSSL peer over memory BIOs. */
struct ep {
	struct tls_conn *t;
	SSL_CTX *sctx;
	SSL *s;
	BIO *rb, *wb;
	int rc;			/* last handshake result */
};

static struct ep
ep_nbx(struct tls_ctx *ctx, int server, const char *expect,
    const uint8_t *pin)
{
	struct ep e = { .rc = NBX_EAGAIN };

	cr_assert_eq(tls_conn_new(ctx, server, expect, pin, &e.t), 0);
	return e;
}

/* A raw peer: trusts `ca`, presents cert/key if given, max `maxv`. */
static struct ep
ep_raw(int server, int maxv, const char *ca, const char *crt,
    const char *key)
{
	struct ep e = { .rc = NBX_EAGAIN };

	e.sctx = SSL_CTX_new(TLS_method());
	cr_assert_not_null(e.sctx);
	SSL_CTX_set_max_proto_version(e.sctx, maxv);
	SSL_CTX_set_min_proto_version(e.sctx, TLS1_2_VERSION);
	cr_assert_eq(SSL_CTX_load_verify_file(e.sctx, ca), 1);
	SSL_CTX_set_verify(e.sctx, SSL_VERIFY_PEER, NULL);
	if (crt) {
		cr_assert_eq(SSL_CTX_use_certificate_file(e.sctx, crt,
		    SSL_FILETYPE_PEM), 1);
		cr_assert_eq(SSL_CTX_use_PrivateKey_file(e.sctx, key,
		    SSL_FILETYPE_PEM), 1);
	}
	e.s = SSL_new(e.sctx);
	e.rb = BIO_new(BIO_s_mem());
	e.wb = BIO_new(BIO_s_mem());
	SSL_set_bio(e.s, e.rb, e.wb);
	if (server)
		SSL_set_accept_state(e.s);
	else
		SSL_set_connect_state(e.s);
	return e;
}

static void
ep_free(struct ep *e)
{
	tls_conn_free(e->t);
	SSL_free(e->s);
	SSL_CTX_free(e->sctx);
	memset(e, 0, sizeof *e);
}

static int
ep_handshake(struct ep *e)
{
	int r;

	if (e->t)
		return e->rc = tls_conn_handshake(e->t);
	if (e->rc != NBX_EAGAIN)
		return e->rc;
	r = SSL_do_handshake(e->s);
	if (r == 1)
		return e->rc = 0;
	r = SSL_get_error(e->s, r);
	ERR_clear_error();
	return e->rc = r == SSL_ERROR_WANT_READ ? NBX_EAGAIN : NBX_ETLS;
}

/* Feeds n bytes of ciphertext to b. */
static void
ep_feed(struct ep *b, const uint8_t *p, size_t n)
{
	if (b->t)
		(void)tls_conn_feed(b->t, p, n);	/* fails once b failed */
	else
		cr_assert_eq(BIO_write(b->rb, p, (int)n), (int)n);
}

/* Moves all pending ciphertext from a to b in `chunk`-byte feeds. */
static size_t
ep_move(struct ep *a, struct ep *b, size_t chunk)
{
	static uint8_t buf[1 << 16];
	uint8_t *out;
	size_t total = 0, n;

	if (chunk > sizeof buf)
		chunk = sizeof buf;
	for (;;) {
		if (a->t) {
			/* all of it at once, as nbxd takes it, fed in pieces */
			if ((n = tls_conn_take_buf(a->t, &out)) == 0)
				return total;
			for (size_t off = 0; off < n; off += chunk)
				ep_feed(b, out + off,
				    n - off < chunk ? n - off : chunk);
			free(out);
		} else {
			int r = BIO_read(a->wb, buf, (int)chunk);

			if ((n = r > 0 ? (size_t)r : 0) == 0)
				return total;
			ep_feed(b, buf, n);
		}
		total += n;
	}
}

/* Runs both handshakes until no more bytes flow. */
static void
pump_handshake(struct ep *cl, struct ep *sv, size_t chunk)
{
	for (int i = 0; i < 1000; i++) {
		size_t moved;

		ep_handshake(cl);
		moved = ep_move(cl, sv, chunk);
		ep_handshake(sv);
		moved += ep_move(sv, cl, chunk);
		if (moved == 0)
			return;
	}
	cr_assert_fail("handshake did not settle");
}

/* Drains everything a connection will release right now into buf. */
static size_t
read_all(struct tls_conn *t, uint8_t *buf, size_t cap, int *last)
{
	size_t total = 0, got;
	int rc;

	while ((rc = tls_conn_read(t, buf + total, cap - total, &got)) == 0) {
		total += got;
		if (total == cap)
			break;
	}
	if (last)
		*last = rc;
	return total;
}

/* Asserts that conn released and can send no application data. */
static void
assert_sealed(struct tls_conn *t)
{
	uint8_t buf[256];
	size_t got = 7;
	int rc = tls_conn_read(t, buf, sizeof buf, &got);

	cr_assert_neq(rc, 0, "read released data");
	cr_assert_eq(got, 0);
	cr_assert_neq(tls_conn_write(t, "leak", 4), 0, "write accepted");
	cr_assert_null(tls_conn_peer_id(t));
}

/* A client and a server, each with its context. */
struct pair {
	struct tls_ctx *cctx, *sctx;
	struct ep cl, sv;
};

/* One end: files from root/<name>, optional CRL, expected peer, pin. */
struct side {
	const char *name, *crl, *expect;
	const uint8_t *pin;
};

/* Builds both ends and runs the handshake to its end, whatever it is. */
static void
pair_run(struct pair *p, struct side c, struct side s, size_t chunk)
{
	p->cctx = ctx_of(c.name, c.crl);
	p->sctx = ctx_of(s.name, s.crl);
	p->cl = ep_nbx(p->cctx, 0, c.expect, c.pin);
	p->sv = ep_nbx(p->sctx, 1, s.expect, s.pin);
	pump_handshake(&p->cl, &p->sv, chunk);
}

/* The usual pair, client fi calling server lv; asserts success. */
static void
pair_open(struct pair *p, size_t chunk)
{
	pair_run(p, (struct side){ "fi", NULL, "lv", NULL },
	    (struct side){ "lv", NULL, NULL, NULL }, chunk);
	cr_assert_eq(p->cl.rc, 0, "client: %s", tls_conn_error(p->cl.t));
	cr_assert_eq(p->sv.rc, 0, "server: %s", tls_conn_error(p->sv.t));
}

static void
pair_close(struct pair *p)
{
	ep_free(&p->cl);
	ep_free(&p->sv);
	tls_ctx_free(p->cctx);
	tls_ctx_free(p->sctx);
}

/* ------------------------------------------------------------------ */
/* Successful connections                                              */
/* ------------------------------------------------------------------ */

Test(tls, handshake_and_identities)
{
	uint8_t pin[32], want[32];
	struct pair p;

	pair_open(&p, 65536);
	cr_assert_str_eq(tls_conn_peer_id(p.cl.t), "lv");
	cr_assert_str_eq(tls_conn_peer_id(p.sv.t), "fi");
	cr_assert_str_eq(tls_ctx_id(p.cctx), "fi");
	cr_assert_str_eq(tls_ctx_id(p.sctx), "lv");
	cr_assert_str_eq(tls_conn_error(p.cl.t), "");
	cr_assert_eq(ca_spki_pin_file(path("fi", "node.crt"), want), 0);
	cr_assert_eq(tls_conn_peer_pin(p.sv.t, pin), 0);
	cr_assert_arr_eq(pin, want, 32);
	pair_close(&p);
	pair_open(&p, 1);	/* again, fed one byte at a time */
	pair_close(&p);
}

Test(tls, server_with_expected_id_and_pins)
{
	uint8_t pin_lv[32], pin_fi[32];
	struct pair p;

	cr_assert_eq(ca_spki_pin_file(path("lv", "node.crt"), pin_lv), 0);
	cr_assert_eq(ca_spki_pin_file(path("fi", "node.crt"), pin_fi), 0);
	pair_run(&p, (struct side){ "fi", NULL, "lv", pin_lv },
	    (struct side){ "lv", NULL, "fi", pin_fi }, 4096);
	cr_assert_eq(p.cl.rc, 0, "%s", tls_conn_error(p.cl.t));
	cr_assert_eq(p.sv.rc, 0, "%s", tls_conn_error(p.sv.t));
	cr_assert_str_eq(tls_conn_peer_id(p.sv.t), "fi");
	pair_close(&p);
}

static void
fill(uint8_t *b, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (uint8_t)(seed >> 16);
	}
}

Test(tls, one_mib_both_ways)
{
	const size_t n = 1u << 20;
	uint8_t *a = malloc(n), *b = malloc(n), *ra = malloc(n), *rb = malloc(n);
	size_t ga = 0, gb = 0;
	struct pair p;

	fill(a, n, 1);
	fill(b, n, 2);
	pair_open(&p, 65536);
	cr_assert_eq(tls_conn_write(p.cl.t, a, n), 0);
	cr_assert_eq(tls_conn_write(p.sv.t, b, n), 0);
	for (int i = 0; i < 10000 && (ga < n || gb < n); i++) {
		ep_move(&p.cl, &p.sv, 16384 + (size_t)i % 7);
		ep_move(&p.sv, &p.cl, 1000 + (size_t)i % 13);
		gb += read_all(p.cl.t, rb + gb, n - gb, NULL);
		ga += read_all(p.sv.t, ra + ga, n - ga, NULL);
	}
	cr_assert_eq(ga, n);
	cr_assert_eq(gb, n);
	cr_assert_arr_eq(ra, a, n);
	cr_assert_arr_eq(rb, b, n);
	pair_close(&p);
	free(a);
	free(b);
	free(ra);
	free(rb);
}

/*
 * tls_conn_take_buf hands over all pending ciphertext in a buffer the
 * caller frees; the peer reads every byte in order, and a queue given
 * away fills again.
 */
Test(tls, take_buf_gives_the_pending_bytes_away)
{
	const size_t n = 300000;
	uint8_t *a = malloc(n), *got = malloc(n), *buf;
	size_t g = 0, len;
	struct pair p;

	fill(a, n, 3);
	pair_open(&p, 65536);
	for (int round = 0; round < 3; round++) {
		size_t at = g;

		cr_assert_eq(tls_conn_write(p.cl.t, a + at, n / 3), 0);
		len = tls_conn_take_buf(p.cl.t, &buf);
		cr_assert_gt(len, n / 3, "round %d: %zu bytes", round, len);
		cr_assert_not_null(buf);
		cr_assert_eq(tls_conn_pending_out(p.cl.t), 0);
		{
			uint8_t *none = a;

			cr_assert_eq(tls_conn_take_buf(p.cl.t, &none), 0);
			cr_assert_null(none, "nothing pending, nothing given");
		}
		cr_assert_eq(tls_conn_feed(p.sv.t, buf, len), 0);
		free(buf);
		g += read_all(p.sv.t, got + g, n - g, NULL);
		cr_assert_eq(g, at + n / 3, "round %d", round);
	}
	cr_assert_arr_eq(got, a, g);
	pair_close(&p);
	free(a);
	free(got);
}

Test(tls, many_small_writes)
{
	uint8_t out[4096], in[1 << 16];
	size_t sent = 0, got = 0;
	struct pair p;
	uint32_t seed = 7;

	fill(out, sizeof out, 3);
	pair_open(&p, 65536);
	for (int i = 0; i < 5000; i++) {
		size_t k = 1 + (seed = seed * 1103515245u + 12345u) % 13;
		for (size_t j = 0; j < k; j++) {
			uint8_t byte = out[(sent + j) % sizeof out];
			cr_assert_eq(tls_conn_write(p.sv.t, &byte, 1), 0);
		}
		sent += k;
		if (i % 97 == 0) {
			ep_move(&p.sv, &p.cl, 333);
			got += read_all(p.cl.t, in + got, sizeof in - got, NULL);
		}
	}
	ep_move(&p.sv, &p.cl, 65536);
	got += read_all(p.cl.t, in + got, sizeof in - got, NULL);
	cr_assert_eq(got, sent);
	for (size_t i = 0; i < got; i++)
		cr_assert_eq(in[i], out[i % sizeof out], "byte %zu", i);
	pair_close(&p);
}

Test(tls, buffers_are_bounded)
{
	static uint8_t chunk[1 << 20];
	uint8_t *big = calloc(1, TLS_CONN_IN_MAX + 1), *out;
	struct pair p;
	int rc = 0, i;

	pair_open(&p, 65536);
	/* Output: refused, taking nothing, while the peer is not drained. */
	for (i = 0; i < 16 && (rc = tls_conn_write(p.cl.t, chunk,
	    sizeof chunk)) == 0; i++)
		;
	cr_assert_eq(rc, NBX_EAGAIN);
	cr_assert(tls_conn_pending_out(p.cl.t) > TLS_CONN_OUT_MAX);
	while (tls_conn_take_buf(p.cl.t, &out) > 0)
		free(out);
	cr_assert_eq(tls_conn_write(p.cl.t, chunk, 10), 0);
	/* Input: a feed past the cap is refused whole. */
	cr_assert_eq(tls_conn_feed(p.sv.t, big, TLS_CONN_IN_MAX + 1),
	    NBX_ETOOBIG);
	cr_assert_eq(tls_conn_feed(p.sv.t, big, TLS_CONN_IN_MAX), 0);
	cr_assert_eq(tls_conn_feed(p.sv.t, big, 1), NBX_ETOOBIG);
	pair_close(&p);
	free(big);
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */
/* ------------------------------------------------------------------ */

Test(tls, clean_close_notify)
{
	struct pair p;
	uint8_t buf[64];
	size_t got;
	int last;

	pair_open(&p, 65536);
	cr_assert_eq(tls_conn_write(p.cl.t, "bye", 3), 0);
	cr_assert_eq(tls_conn_shutdown(p.cl.t), 0);
	cr_assert_eq(tls_conn_write(p.cl.t, "x", 1), NBX_ECLOSED);
	ep_move(&p.cl, &p.sv, 65536);
	cr_assert_eq(read_all(p.sv.t, buf, sizeof buf, &last), 3);
	cr_assert_eq(last, NBX_ECLOSED);
	cr_assert_eq(tls_conn_read(p.sv.t, buf, sizeof buf, &got), NBX_ECLOSED);
	/* The server answers, then both transports end cleanly. */
	cr_assert_eq(tls_conn_shutdown(p.sv.t), 0);
	ep_move(&p.sv, &p.cl, 65536);
	cr_assert_eq(tls_conn_eof(p.sv.t), 0);
	cr_assert_eq(tls_conn_eof(p.cl.t), 0);
	cr_assert_eq(tls_conn_eof(p.cl.t), 0, "idempotent");
	pair_close(&p);
}

Test(tls, eof_processes_buffered_close_notify)
{
	struct pair p;
	uint8_t buf[64];
	int last;

	pair_open(&p, 65536);
	cr_assert_eq(tls_conn_write(p.cl.t, "tail", 4), 0);
	cr_assert_eq(tls_conn_shutdown(p.cl.t), 0);
	ep_move(&p.cl, &p.sv, 65536);
	/* Nothing read yet: EOF must still find the close_notify. */
	cr_assert_eq(tls_conn_eof(p.sv.t), 0, "%s", tls_conn_error(p.sv.t));
	cr_assert_eq(read_all(p.sv.t, buf, sizeof buf, &last), 4);
	cr_assert_eq(memcmp(buf, "tail", 4), 0);
	cr_assert_eq(last, NBX_ECLOSED);
	cr_assert_eq(tls_conn_feed(p.sv.t, "x", 1), NBX_EINVAL);
	pair_close(&p);
}

Test(tls, truncation_is_detected)
{
	struct pair p;
	uint8_t buf[256], *out;
	size_t n;
	int last;

	pair_open(&p, 65536);
	cr_assert_eq(tls_conn_write(p.cl.t, "cut", 3), 0);
	ep_move(&p.cl, &p.sv, 65536);
	cr_assert_eq(tls_conn_eof(p.sv.t), NBX_ETLS);
	cr_assert(strstr(tls_conn_error(p.sv.t), "truncated") != NULL, "%s",
	    tls_conn_error(p.sv.t));
	/* What did arrive is authentic and still delivered, then the error. */
	cr_assert_eq(read_all(p.sv.t, buf, sizeof buf, &last), 3);
	cr_assert_eq(last, NBX_ETLS);
	cr_assert_eq(tls_conn_eof(p.sv.t), NBX_ETLS);
	pair_close(&p);
	/* Cut in the middle of a record: nothing of it is released. */
	pair_open(&p, 65536);
	cr_assert_eq(tls_conn_write(p.cl.t, "0123456789", 10), 0);
	n = tls_conn_take_buf(p.cl.t, &out);
	cr_assert(n > 10);
	cr_assert_eq(tls_conn_feed(p.sv.t, out, n - 5), 0);
	free(out);
	cr_assert_eq(read_all(p.sv.t, buf, sizeof buf, NULL), 0);
	cr_assert_eq(tls_conn_eof(p.sv.t), NBX_ETLS);
	cr_assert(strstr(tls_conn_error(p.sv.t), "truncated") != NULL);
	cr_assert_eq(read_all(p.sv.t, buf, sizeof buf, NULL), 0);
	pair_close(&p);
}

Test(tls, eof_during_handshake)
{
	struct tls_ctx *s = ctx_of("lv", NULL);
	struct tls_conn *c;

	cr_assert_eq(tls_conn_new(s, 1, NULL, NULL, &c), 0);
	cr_assert_eq(tls_conn_handshake(c), NBX_EAGAIN);
	cr_assert_eq(tls_conn_eof(c), NBX_ETLS);
	cr_assert(strstr(tls_conn_error(c), "during the handshake") != NULL,
	    "%s", tls_conn_error(c));
	assert_sealed(c);
	tls_conn_free(c);
	tls_ctx_free(s);
}

/* ------------------------------------------------------------------ */
/* Refusals                                                            */
/* ------------------------------------------------------------------ */

/* Asserts the nbx side `t` failed with `rc` and a reason containing `why`. */
static void
assert_refused(struct ep *e, int rc, const char *why)
{
	cr_assert_eq(e->rc, rc, "rc %d (%s), want %d", e->rc,
	    tls_conn_error(e->t), rc);
	cr_assert(strstr(tls_conn_error(e->t), why) != NULL,
	    "reason '%s' lacks '%s'", tls_conn_error(e->t), why);
	assert_sealed(e->t);
}

/*
 * The server refused the client after the client finished: whatever the
 * client sends is never released by the server, and the client learns of
 * the refusal on its next read.
 */
static void
assert_client_data_dropped(struct ep *cl, struct ep *sv)
{
	uint8_t buf[64];
	size_t got;
	int rc;

	if (cl->t) {
		cr_assert_eq(cl->rc, 0, "the client finished first");
		cr_assert_eq(tls_conn_write(cl->t, "secret", 6), 0);
		ep_move(cl, sv, 65536);
		rc = tls_conn_read(cl->t, buf, sizeof buf, &got);
		cr_assert_eq(rc, NBX_ETLS);
		cr_assert_eq(got, 0);
		cr_assert(strstr(tls_conn_error(cl->t), "peer sent alert") != NULL,
		    "%s", tls_conn_error(cl->t));
	} else if (cl->rc == 0) {
		cr_assert_eq(SSL_write(cl->s, "secret", 6), 6);
		ep_move(cl, sv, 65536);
	}
	assert_sealed(sv->t);
}

Test(tls, refuses_client_without_certificate)
{
	struct tls_ctx *s = ctx_of("lv", NULL);
	struct ep cl = ep_raw(0, TLS1_3_VERSION, path("fi", "ca.crt"), NULL,
	    NULL);
	struct ep sv = ep_nbx(s, 1, NULL, NULL);

	pump_handshake(&cl, &sv, 65536);
	assert_refused(&sv, NBX_ETLS, "peer did not return a certificate");
	assert_client_data_dropped(&cl, &sv);
	ep_free(&cl);
	ep_free(&sv);
	tls_ctx_free(s);
}

/* Appends the file src to dst. */
static void
append_file(const char *dst, const char *src)
{
	FILE *in = fopen(src, "r"), *out = fopen(dst, "a");
	char line[256];

	cr_assert(in && out);
	while (fgets(line, sizeof line, in))
		fputs(line, out);
	fclose(in);
	fclose(out);
}

Test(tls, refuses_client_from_other_ca)
{
	struct pair p;

	cr_assert_eq(ca_init(otherdir, err, sizeof err), 0);
	node("other", "evil", "fi", NULL);
	/* The impostor trusts both CAs, so only the server can refuse. */
	append_file(path("evil", "ca.crt"), path("ca", "ca.crt"));
	pair_run(&p, (struct side){ "evil", NULL, "lv", NULL },
	    (struct side){ "lv", NULL, NULL, NULL }, 65536);
	cr_assert_eq(p.cl.rc, 0, "the impostor accepted the real server");
	assert_refused(&p.sv, NBX_ETLS, "certificate verify failed: unable "
	    "to get local issuer certificate");
	assert_client_data_dropped(&p.cl, &p.sv);
	pair_close(&p);
}

Test(tls, refuses_server_from_other_ca)
{
	struct pair p;

	cr_assert_eq(ca_init(otherdir, err, sizeof err), 0);
	node("other", "evil", "lv", NULL);
	pair_run(&p, (struct side){ "fi", NULL, "lv", NULL },
	    (struct side){ "evil", NULL, NULL, NULL }, 65536);
	assert_refused(&p.cl, NBX_ETLS, "certificate verify failed: unable "
	    "to get local issuer certificate");
	assert_refused(&p.sv, NBX_ETLS, "peer sent alert");
	pair_close(&p);
}

Test(tls, refuses_wrong_server_identity)
{
	struct pair p;

	/* Expected "fi", but the certificate says "lv". */
	pair_run(&p, (struct side){ "lv", NULL, "fi", NULL },
	    (struct side){ "lv", NULL, NULL, NULL }, 65536);
	assert_refused(&p.cl, NBX_EPEER,
	    "peer identity 'lv' does not match expected 'fi'");
	assert_refused(&p.sv, NBX_ETLS, "peer sent alert");
	pair_close(&p);
}

Test(tls, refuses_wrong_client_identity)
{
	struct pair p;

	pair_run(&p, (struct side){ "fi", NULL, "lv", NULL },
	    (struct side){ "lv", NULL, "ee", NULL }, 65536);
	assert_refused(&p.sv, NBX_EPEER,
	    "peer identity 'fi' does not match expected 'ee'");
	assert_client_data_dropped(&p.cl, &p.sv);
	pair_close(&p);
}

Test(tls, eof_after_refusal_reports_the_alert)
{
	struct pair p;

	/* The client never read the server's alert before the EOF. */
	pair_run(&p, (struct side){ "fi", NULL, "lv", NULL },
	    (struct side){ "lv", NULL, "ee", NULL }, 65536);
	cr_assert_eq(p.cl.rc, 0);
	cr_assert_eq(tls_conn_eof(p.cl.t), NBX_ETLS);
	cr_assert(strstr(tls_conn_error(p.cl.t), "peer sent alert") != NULL,
	    "%s", tls_conn_error(p.cl.t));
	pair_close(&p);
}

static const struct ca_issue_opts expired = {
	.days = 1, .not_before_offset_s = -10 * 86400
};

Test(tls, refuses_expired_server)
{
	struct pair p;

	node("ca", "old", "lv", &expired);
	pair_run(&p, (struct side){ "fi", NULL, "lv", NULL },
	    (struct side){ "old", NULL, NULL, NULL }, 65536);
	assert_refused(&p.cl, NBX_ETLS,
	    "certificate verify failed: certificate has expired");
	assert_refused(&p.sv, NBX_ETLS, "peer sent alert");
	pair_close(&p);
}

Test(tls, refuses_expired_client)
{
	struct pair p;

	node("ca", "old", "fi", &expired);
	pair_run(&p, (struct side){ "old", NULL, "lv", NULL },
	    (struct side){ "lv", NULL, NULL, NULL }, 65536);
	assert_refused(&p.sv, NBX_ETLS,
	    "certificate verify failed: certificate has expired");
	assert_client_data_dropped(&p.cl, &p.sv);
	pair_close(&p);
}

Test(tls, refuses_tls12_client)
{
	struct tls_ctx *s = ctx_of("lv", NULL);
	struct ep cl = ep_raw(0, TLS1_2_VERSION, path("fi", "ca.crt"),
	    path("fi", "node.crt"), path("fi", "node.key"));
	struct ep sv = ep_nbx(s, 1, NULL, NULL);

	pump_handshake(&cl, &sv, 65536);
	assert_refused(&sv, NBX_ETLS,
	    "protocol version: peer offered only TLS 1.2");
	cr_assert_eq(cl.rc, NBX_ETLS, "the TLS 1.2 client saw a refusal");
	ep_free(&cl);
	ep_free(&sv);
	tls_ctx_free(s);
}

Test(tls, refuses_tls12_server)
{
	struct tls_ctx *c = ctx_of("fi", NULL);
	struct ep cl = ep_nbx(c, 0, "lv", NULL);
	struct ep sv = ep_raw(1, TLS1_2_VERSION, path("lv", "ca.crt"),
	    path("lv", "node.crt"), path("lv", "node.key"));

	pump_handshake(&cl, &sv, 65536);
	assert_refused(&cl, NBX_ETLS, "protocol version");
	cr_assert_eq(sv.rc, NBX_ETLS);
	ep_free(&cl);
	ep_free(&sv);
	tls_ctx_free(c);
}

Test(tls, refuses_pin_mismatch)
{
	uint8_t pin[32];
	struct pair p;

	/* Pinned to fi's key, but the server "lv" has another. */
	cr_assert_eq(ca_spki_pin_file(path("fi", "node.crt"), pin), 0);
	pair_run(&p, (struct side){ "fi", NULL, "lv", pin },
	    (struct side){ "lv", NULL, NULL, NULL }, 65536);
	assert_refused(&p.cl, NBX_EPEER, "SPKI pin mismatch");
	assert_refused(&p.sv, NBX_ETLS, "peer sent alert");
	pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Pins looked up by the identity in the certificate                   */
/* ------------------------------------------------------------------ */

/* A peer table of one: `id` pinned to `pin`; counts the lookups. */
struct pin_table {
	const char *id;
	uint8_t pin[32];
	int calls;
	char asked[64];		/* the last id asked for */
};

static const uint8_t *
pin_lookup(void *arg, const char *peer_id)
{
	struct pin_table *pt = arg;

	pt->calls++;
	snprintf(pt->asked, sizeof pt->asked, "%s", peer_id);
	return strcmp(peer_id, pt->id) == 0 ? pt->pin : NULL;
}

/*
 * Client fi (fixed pin `cpin` for lv, or none) calls a server lv that
 * accepts any identity and looks pins up in `pt`; runs the handshake.
 */
static void
pair_lookup(struct pair *p, const uint8_t *cpin, struct pin_table *pt)
{
	p->cctx = ctx_of("fi", NULL);
	p->sctx = ctx_of("lv", NULL);
	p->cl = ep_nbx(p->cctx, 0, "lv", cpin);
	p->sv = (struct ep){ .rc = NBX_EAGAIN };
	cr_assert_eq(tls_conn_new_lookup(p->sctx, 1, NULL, pin_lookup, pt,
	    &p->sv.t), 0);
	pump_handshake(&p->cl, &p->sv, 65536);
}

Test(tls, inbound_pin_mismatch_fails_the_handshake)
{
	struct pin_table pt = { .id = "fi" };
	uint8_t buf[64];
	size_t got = 7;
	struct pair p;

	/* The server holds fi pinned to lv's key: fi's own key is wrong. */
	cr_assert_eq(ca_spki_pin_file(path("lv", "node.crt"), pt.pin), 0);
	pair_lookup(&p, NULL, &pt);
	cr_assert_geq(pt.calls, 1, "the server never asked for a pin");
	cr_assert_str_eq(pt.asked, "fi", "asked for the certificate's id");
	assert_refused(&p.sv, NBX_EPEER, "SPKI pin mismatch: peer 'fi' has "
	    "key sha256 ");
	/* the client finished first; what it sends is never released, and
	   it learns of the refusal at its next read */
	assert_client_data_dropped(&p.cl, &p.sv);
	cr_assert_neq(tls_conn_write(p.cl.t, "more", 4), 0,
	    "the refused client can still write");
	cr_assert_neq(tls_conn_read(p.cl.t, buf, sizeof buf, &got), 0);
	cr_assert_eq(got, 0);
	cr_assert_eq(tls_conn_handshake(p.sv.t), NBX_EPEER, "final");
	pair_close(&p);
}

Test(tls, inbound_pin_match_opens)
{
	struct pin_table pt = { .id = "fi" };
	uint8_t buf[64];
	int last;
	struct pair p;

	cr_assert_eq(ca_spki_pin_file(path("fi", "node.crt"), pt.pin), 0);
	pair_lookup(&p, NULL, &pt);
	cr_assert_eq(p.cl.rc, 0, "client: %s", tls_conn_error(p.cl.t));
	cr_assert_eq(p.sv.rc, 0, "server: %s", tls_conn_error(p.sv.t));
	cr_assert_str_eq(pt.asked, "fi");
	cr_assert_str_eq(tls_conn_peer_id(p.sv.t), "fi");
	cr_assert_eq(tls_conn_write(p.cl.t, "ping", 4), 0);
	ep_move(&p.cl, &p.sv, 65536);
	cr_assert_eq(read_all(p.sv.t, buf, sizeof buf, &last), 4);
	cr_assert_eq(memcmp(buf, "ping", 4), 0);
	cr_assert_eq(tls_conn_write(p.sv.t, "pong", 4), 0);
	ep_move(&p.sv, &p.cl, 65536);
	cr_assert_eq(read_all(p.cl.t, buf, sizeof buf, &last), 4);
	cr_assert_eq(memcmp(buf, "pong", 4), 0);
	pair_close(&p);
}

Test(tls, inbound_lookup_without_pin_opens)
{
	/* A peer with no pin configured (or one the caller does not know,
	   refused by the caller afterwards): only chain and identity. */
	struct pin_table pt = { .id = "ee" };
	struct pair p;

	pair_lookup(&p, NULL, &pt);
	cr_assert_eq(p.sv.rc, 0, "server: %s", tls_conn_error(p.sv.t));
	cr_assert_str_eq(pt.asked, "fi");
	cr_assert_str_eq(tls_conn_peer_id(p.sv.t), "fi");
	pair_close(&p);
}

Test(tls, inbound_lookup_never_asked_for_unverified_chain)
{
	struct pin_table pt = { .id = "fi" };
	struct pair p;

	/* fi's certificate from another CA: refused before any pin. */
	cr_assert_eq(ca_init(otherdir, err, sizeof err), 0);
	node("other", "evil", "fi", NULL);
	append_file(path("evil", "ca.crt"), path("ca", "ca.crt"));
	cr_assert_eq(ca_spki_pin_file(path("evil", "node.crt"), pt.pin), 0);
	p.cctx = ctx_of("evil", NULL);
	p.sctx = ctx_of("lv", NULL);
	p.cl = ep_nbx(p.cctx, 0, "lv", NULL);
	p.sv = (struct ep){ .rc = NBX_EAGAIN };
	cr_assert_eq(tls_conn_new_lookup(p.sctx, 1, NULL, pin_lookup, &pt,
	    &p.sv.t), 0);
	pump_handshake(&p.cl, &p.sv, 65536);
	assert_refused(&p.sv, NBX_ETLS, "certificate verify failed");
	cr_assert_eq(pt.calls, 0, "a pin was looked up for an unverified "
	    "certificate");
	assert_client_data_dropped(&p.cl, &p.sv);
	pair_close(&p);
}

Test(tls, outbound_lookup_checks_the_expected_peer)
{
	struct pin_table pt = { .id = "lv" };
	struct pair p;

	/* the client's lookup, pinned to the wrong key: refused as a fixed
	   pin is (refuses_pin_mismatch) */
	cr_assert_eq(ca_spki_pin_file(path("fi", "node.crt"), pt.pin), 0);
	p.cctx = ctx_of("fi", NULL);
	p.sctx = ctx_of("lv", NULL);
	p.cl = (struct ep){ .rc = NBX_EAGAIN };
	cr_assert_eq(tls_conn_new_lookup(p.cctx, 0, "lv", pin_lookup, &pt,
	    &p.cl.t), 0);
	p.sv = ep_nbx(p.sctx, 1, NULL, NULL);
	pump_handshake(&p.cl, &p.sv, 65536);
	cr_assert_str_eq(pt.asked, "lv");
	assert_refused(&p.cl, NBX_EPEER, "SPKI pin mismatch: peer 'lv'");
	assert_refused(&p.sv, NBX_ETLS, "peer sent alert");
	pair_close(&p);
	/* the right pin */
	cr_assert_eq(ca_spki_pin_file(path("lv", "node.crt"), pt.pin), 0);
	p.cctx = ctx_of("fi", NULL);
	p.sctx = ctx_of("lv", NULL);
	cr_assert_eq(tls_conn_new_lookup(p.cctx, 0, "lv", pin_lookup, &pt,
	    &p.cl.t), 0);
	p.cl.rc = NBX_EAGAIN;
	p.sv = ep_nbx(p.sctx, 1, NULL, NULL);
	pump_handshake(&p.cl, &p.sv, 65536);
	cr_assert_eq(p.cl.rc, 0, "client: %s", tls_conn_error(p.cl.t));
	cr_assert_eq(p.sv.rc, 0, "server: %s", tls_conn_error(p.sv.t));
	pair_close(&p);
}

Test(tls, refuses_revoked_client)
{
	char crl[PATH_MAX];
	struct pair p;

	strcpy(crl, path("ca.crl", ""));
	node("ca", "gone", "ee", NULL);
	cr_assert_eq(ca_revoke(cadir, path("gone", "node.crt"), err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(ca_crl(cadir, crl, 0, err, sizeof err), 0, "%s", err);
	/* A valid client still gets in under the CRL ... */
	pair_run(&p, (struct side){ "fi", NULL, "lv", NULL },
	    (struct side){ "lv", crl, NULL, NULL }, 65536);
	cr_assert_eq(p.sv.rc, 0, "%s", tls_conn_error(p.sv.t));
	pair_close(&p);
	/* ... the revoked one does not. */
	pair_run(&p, (struct side){ "gone", NULL, "lv", NULL },
	    (struct side){ "lv", crl, NULL, NULL }, 65536);
	assert_refused(&p.sv, NBX_ETLS,
	    "certificate verify failed: certificate revoked");
	assert_client_data_dropped(&p.cl, &p.sv);
	pair_close(&p);
}

Test(tls, refuses_revoked_server)
{
	char crl[PATH_MAX];
	struct pair p;

	strcpy(crl, path("ca.crl", ""));
	cr_assert_eq(ca_revoke(cadir, path("lv", "node.crt"), err,
	    sizeof err), 0, "%s", err);
	cr_assert_eq(ca_crl(cadir, crl, 0, err, sizeof err), 0, "%s", err);
	pair_run(&p, (struct side){ "fi", crl, "lv", NULL },
	    (struct side){ "lv", NULL, NULL, NULL }, 65536);
	assert_refused(&p.cl, NBX_ETLS,
	    "certificate verify failed: certificate revoked");
	assert_refused(&p.sv, NBX_ETLS, "peer sent alert");
	pair_close(&p);
}

/* ------------------------------------------------------------------ */
/* Contexts that must not be built                                     */
/* ------------------------------------------------------------------ */

/* tls_ctx_new for root/fi with `crl`: must fail naming `why`. */
static void
assert_ctx_refused(const char *crl, int rc, const char *why)
{
	struct tls_ctx *t = (struct tls_ctx *)1;
	char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];

	strcpy(ca, path("fi", "ca.crt"));
	strcpy(crt, path("fi", "node.crt"));
	strcpy(key, path("fi", "node.key"));
	cr_assert_eq(tls_ctx_new(ca, crt, key, crl, err, sizeof err, &t), rc,
	    "err: %s", err);
	cr_assert_null(t);
	cr_assert(strstr(err, why) != NULL, "err '%s' lacks '%s'", err, why);
}

Test(tls, configured_crl_fails_closed)
{
	struct ca_crl_opts stale = { .days = 1,
	    .last_update_offset_s = -2 * 86400 };
	char missing[PATH_MAX], old[PATH_MAX], other[PATH_MAX], junk[PATH_MAX];
	FILE *f;

	strcpy(missing, path("nope.crl", ""));
	strcpy(old, path("stale.crl", ""));
	strcpy(other, path("other.crl", ""));
	strcpy(junk, path("junk.crl", ""));
	cr_assert_eq(ca_crl_ex(cadir, old, &stale, err, sizeof err), 0);
	cr_assert_eq(ca_init(otherdir, err, sizeof err), 0);
	cr_assert_eq(ca_crl(otherdir, other, 0, err, sizeof err), 0);
	f = fopen(junk, "w");
	fputs("-----BEGIN X509 CRL-----\nnot base64 !!\n"
	    "-----END X509 CRL-----\n", f);
	fclose(f);
	assert_ctx_refused(missing, NBX_EIO, missing);
	assert_ctx_refused(old, NBX_ETLS, "stale: nextUpdate");
	assert_ctx_refused(other, NBX_ETLS, "not signed by the regional CA");
	assert_ctx_refused(junk, NBX_ETLS, "not a PEM CRL");
}

Test(tls, ctx_refuses_mismatched_files)
{
	struct tls_ctx *t = NULL;
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];

	/* Key of another node. */
	strcpy(a, path("fi", "ca.crt"));
	strcpy(b, path("fi", "node.crt"));
	strcpy(c, path("lv", "node.key"));
	cr_assert_eq(tls_ctx_new(a, b, c, NULL, err, sizeof err, &t), NBX_ETLS);
	cr_assert(strstr(err, "does not match") != NULL, "%s", err);
	/* Certificate from a CA not in the CA file. */
	cr_assert_eq(ca_init(otherdir, err, sizeof err), 0);
	node("other", "evil", "fi", NULL);
	strcpy(b, path("evil", "node.crt"));
	strcpy(c, path("evil", "node.key"));
	cr_assert_eq(tls_ctx_new(a, b, c, "", err, sizeof err, &t), NBX_ETLS);
	cr_assert(strstr(err, "not signed by the CA") != NULL, "%s", err);
	/* Missing CA file; a node certificate used as the CA. */
	strcpy(a, path("none.crt", ""));
	cr_assert_eq(tls_ctx_new(a, b, c, NULL, err, sizeof err, &t), NBX_EIO);
	cr_assert(strstr(err, "none.crt") != NULL, "%s", err);
	strcpy(a, path("fi", "node.crt"));
	cr_assert_eq(tls_ctx_new(a, b, c, NULL, err, sizeof err, &t), NBX_ETLS);
	cr_assert(strstr(err, "not a usable CA") != NULL, "%s", err);
	cr_assert_null(t);
}

Test(tls, conn_new_arguments)
{
	struct tls_ctx *t = ctx_of("fi", NULL);
	struct tls_conn *c = (struct tls_conn *)1;

	cr_assert_eq(tls_conn_new(t, 0, NULL, NULL, &c), NBX_EINVAL,
	    "a client must know whom it calls");
	cr_assert_null(c);
	cr_assert_eq(tls_conn_new(t, 0, "LV", NULL, &c), NBX_EINVAL);
	cr_assert_eq(tls_conn_new(NULL, 1, NULL, NULL, &c), NBX_EINVAL);
	cr_assert_eq(tls_conn_new(t, 0, "lv", NULL, &c), 0);
	cr_assert(tls_conn_pending_out(c) > 0, "ClientHello ready");
	assert_sealed(c);
	cr_assert_eq(tls_conn_handshake(c), NBX_EAGAIN);
	cr_assert_eq(tls_conn_peer_pin(c, (uint8_t[32]){ 0 }), NBX_EINVAL);
	tls_conn_free(c);
	tls_ctx_free(t);
}

Test(tls, garbage_from_peer)
{
	struct tls_ctx *t = ctx_of("lv", NULL);
	struct tls_conn *c;
	uint8_t junk[512];

	fill(junk, sizeof junk, 9);
	cr_assert_eq(tls_conn_new(t, 1, NULL, NULL, &c), 0);
	cr_assert_eq(tls_conn_feed(c, junk, sizeof junk), 0);
	cr_assert_eq(tls_conn_handshake(c), NBX_ETLS);
	cr_assert_neq(tls_conn_error(c)[0], '\0');
	cr_assert_eq(tls_conn_handshake(c), NBX_ETLS, "failure is final");
	cr_assert_eq(tls_conn_feed(c, junk, 1), NBX_ETLS);
	assert_sealed(c);
	tls_conn_free(c);
	tls_ctx_free(t);
}

/* ------------------------------------------------------------------ */
/* Reload and identity parsing                                         */
/* ------------------------------------------------------------------ */

Test(tls, reload_rechecks_live_peers)
{
	struct pair p;
	struct tls_ctx *fresh;
	char crl[PATH_MAX];
	uint8_t buf[16];
	size_t got;

	strcpy(crl, path("ca.crl", ""));
	pair_open(&p, 65536);
	fresh = ctx_of("lv", NULL);
	cr_assert_eq(tls_ctx_verify_peer(fresh, p.sv.t, err, sizeof err), 0,
	    "%s", err);
	tls_ctx_free(fresh);
	cr_assert_eq(ca_revoke(cadir, path("fi", "node.crt"), err,
	    sizeof err), 0);
	cr_assert_eq(ca_crl(cadir, crl, 0, err, sizeof err), 0);
	fresh = ctx_of("lv", crl);
	cr_assert_eq(tls_ctx_verify_peer(fresh, p.sv.t, err, sizeof err),
	    NBX_ETLS);
	cr_assert(strstr(err, "certificate revoked") != NULL, "%s", err);
	/* The client's view of the server is unaffected. */
	cr_assert_eq(tls_ctx_verify_peer(fresh, p.cl.t, err, sizeof err), 0,
	    "%s", err);
	tls_ctx_free(fresh);
	/* Swapping contexts out leaves live connections working. */
	tls_ctx_free(p.cctx);
	tls_ctx_free(p.sctx);
	p.cctx = p.sctx = NULL;
	cr_assert_eq(tls_conn_write(p.cl.t, "after", 5), 0);
	ep_move(&p.cl, &p.sv, 65536);
	cr_assert_eq(tls_conn_read(p.sv.t, buf, sizeof buf, &got), 0);
	cr_assert_eq(got, 5);
	cr_assert_eq(memcmp(buf, "after", 5), 0);
	pair_close(&p);
}

/* A bare certificate with the given CN and SAN URIs (NULL: none). */
static X509 *
mkcert(const char *cn, const char *cn2, const char *san)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_get_subject_name(x);
	X509V3_CTX v3;
	X509_EXTENSION *e;

	if (cn)
		X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
		    (const unsigned char *)cn, -1, -1, 0);
	if (cn2)
		X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8,
		    (const unsigned char *)cn2, -1, -1, 0);
	if (san) {
		X509V3_set_ctx(&v3, NULL, x, NULL, NULL, 0);
		e = X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, san);
		cr_assert_not_null(e);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	return x;
}

static int
id_of(const char *cn, const char *cn2, const char *san, char out[33])
{
	X509 *x = mkcert(cn, cn2, san);
	int rc = pki_cert_node_id(x, out, err, sizeof err);

	X509_free(x);
	return rc;
}

Test(tls, cert_node_id_rules)
{
	char id[33];

	cr_assert_eq(id_of("fi", NULL, NULL, id), 0);
	cr_assert_str_eq(id, "fi");
	cr_assert_eq(id_of(NULL, NULL, "URI:urn:nbx:node:lv", id), 0);
	cr_assert_str_eq(id, "lv");
	cr_assert_eq(id_of("ee", NULL, "URI:urn:nbx:node:ee,DNS:x.example",
	    id), 0);
	cr_assert_str_eq(id, "ee");
	cr_assert_eq(id_of("fi", NULL, "URI:https://x.example/,"
	    "URI:urn:nbx:node:fi", id), 0);
	cr_assert_eq(id_of("fi", NULL, "URI:urn:nbx:node:lv", id), NBX_EPEER);
	cr_assert(strstr(err, "disagree") != NULL, "%s", err);
	cr_assert_str_eq(id, "");
	cr_assert_eq(id_of(NULL, NULL, "URI:urn:nbx:node:fi,"
	    "URI:urn:nbx:node:lv", id), NBX_EPEER);
	cr_assert_eq(id_of(NULL, NULL, NULL, id), NBX_EPEER);
	cr_assert(strstr(err, "no node identity") != NULL, "%s", err);
	cr_assert_eq(id_of(NULL, NULL, "DNS:fi.example", id), NBX_EPEER);
	cr_assert_eq(id_of("FI", NULL, NULL, id), NBX_EPEER);
	cr_assert_eq(id_of("nbx regional CA", NULL, NULL, id), NBX_EPEER);
	cr_assert_eq(id_of("fi", "lv", NULL, id), NBX_EPEER);
	cr_assert(strstr(err, "more than one CN") != NULL, "%s", err);
	cr_assert_eq(id_of("fi", NULL, "URI:urn:nbx:node:", id), NBX_EPEER);
	cr_assert_eq(id_of(NULL, NULL, "URI:urn:nbx:node:fi/x", id), NBX_EPEER);
}
