/*
 * ca_test.c - the regional CA (tools/ca.c): file modes, refusals, and
 * certificates and CRLs checked independently with the OpenSSL API.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "nbx_err.h"

static char root[64];
static char cadir[PATH_MAX];
static char err[512];

/* Removes a directory tree made by a test (two levels deep is enough). */
static void
rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[PATH_MAX];
	struct stat st;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void
setup(void)
{
	strcpy(root, "/tmp/nbx-ca-test-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	snprintf(cadir, sizeof cadir, "%s/ca", root);
}

static void
teardown(void)
{
	rm_tree(root);
}

TestSuite(ca, .init = setup, .fini = teardown);

/* a/b in one of a few rotating buffers, so calls can be nested. */
static const char *
path(const char *a, const char *b)
{
	static char buf[8][PATH_MAX];
	static int i;
	size_t la = strlen(a), lb = strlen(b);
	char *p;

	i = (i + 1) % 8;
	p = buf[i];
	cr_assert(la + lb + 2 <= PATH_MAX);
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

static mode_t
mode_of(const char *p)
{
	struct stat st;

	cr_assert_eq(stat(p, &st), 0, "stat %s", p);
	return st.st_mode & 07777;
}

static X509 *
load_cert(const char *p)
{
	FILE *f = fopen(p, "r");
	X509 *x;

	cr_assert_not_null(f, "open %s", p);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(x, "parse %s", p);
	return x;
}

static X509_CRL *
load_crl(const char *p)
{
	FILE *f = fopen(p, "r");
	X509_CRL *c;

	cr_assert_not_null(f, "open %s", p);
	c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(c, "parse %s", p);
	return c;
}

static char *
slurp(const char *p)
{
	FILE *f = fopen(p, "r");
	char *buf = calloc(1, 1 << 16);
	size_t n;

	cr_assert_not_null(f, "open %s", p);
	n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
init_ca(void)
{
	int rc = ca_init(cadir, err, sizeof err);

	cr_assert_eq(rc, 0, "ca_init: %s", err);
}

static void
issue(const char *node, const char *out, char pin[65])
{
	int rc = ca_issue(cadir, node, out, 0, pin, err, sizeof err);

	cr_assert_eq(rc, 0, "ca_issue %s: %s", node, err);
}

/* X509_verify_cert of `x` against the CA alone, optionally with a CRL. */
static int
verify(X509 *x, X509_CRL *crl, int purpose)
{
	X509 *ca = load_cert(path(cadir, "ca.crt"));
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int rc;

	X509_STORE_add_cert(st, ca);
	if (crl) {
		X509_STORE_add_crl(st, crl);
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
	}
	cr_assert(X509_STORE_CTX_init(ctx, st, x, NULL));
	X509_STORE_CTX_set_purpose(ctx, purpose);
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK :
	    X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(ca);
	return rc;
}

static long
days_between(const ASN1_TIME *a, const ASN1_TIME *b)
{
	int d = 0, s = 0;

	cr_assert(ASN1_TIME_diff(&d, &s, a, b));
	return d;
}

Test(ca, init_creates_files_with_modes)
{
	X509 *ca;
	char cn[64];

	init_ca();
	cr_assert_eq(mode_of(cadir), 0700);
	cr_assert_eq(mode_of(path(cadir, "ca.key")), 0600);
	cr_assert_eq(access(path(cadir, "ca.crt"), R_OK), 0);
	cr_assert_eq(access(path(cadir, "index.txt"), R_OK), 0);
	ca = load_cert(path(cadir, "ca.crt"));
	X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName,
	    cn, sizeof cn);
	cr_assert_str_eq(cn, "nbx regional CA");
	cr_assert_eq(X509_check_ca(ca), 1);
	cr_assert(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
	cr_assert(X509_get_key_usage(ca) & KU_CRL_SIGN);
	cr_assert_eq(X509_get_key_usage(ca) & KU_DIGITAL_SIGNATURE, 0);
	cr_assert_eq(X509_check_issued(ca, ca), X509_V_OK);
	cr_assert_eq(X509_verify(ca, X509_get0_pubkey(ca)), 1);
	cr_assert_eq(EVP_PKEY_get_base_id(X509_get0_pubkey(ca)), EVP_PKEY_EC);
	/* Ten years, give or take leap days. */
	long d = days_between(X509_get0_notBefore(ca), X509_get0_notAfter(ca));
	cr_assert(d >= 3650 && d <= 3653, "CA lifetime %ld days", d);
	/* basicConstraints must be critical. */
	int idx = X509_get_ext_by_NID(ca, NID_basic_constraints, -1);
	cr_assert(idx >= 0);
	cr_assert(X509_EXTENSION_get_critical(X509_get_ext(ca, idx)));
	X509_free(ca);
}

Test(ca, init_twice_refuses)
{
	char *before, *after;
	int rc;

	init_ca();
	before = slurp(path(cadir, "ca.key"));
	rc = ca_init(cadir, err, sizeof err);
	cr_assert_eq(rc, NBX_EEXIST);
	cr_assert(strstr(err, "ca.key") != NULL, "err: %s", err);
	after = slurp(path(cadir, "ca.key"));
	cr_assert_str_eq(before, after);
	free(before);
	free(after);
}

Test(ca, init_into_missing_parent_fails_naming_dir)
{
	char d[PATH_MAX];

	snprintf(d, sizeof d, "%s/no/such", root);
	cr_assert_eq(ca_init(d, err, sizeof err), NBX_EIO);
	cr_assert(strstr(err, d) != NULL, "err: %s", err);
}

Test(ca, issue_validates_node_id)
{
	static const char *bad[] = {
		"", "FI", "f i", "fi_x", "fi:x", "ee/..",
		"abcdefghijklmnopqrstuvwxyz0123456",	/* 33 chars */
	};
	char pin[65] = "x";
	const char *out = path(root, "out");

	init_ca();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(ca_issue(cadir, bad[i], out, 0, pin, err,
		    sizeof err), NBX_EINVAL, "node id '%s'", bad[i]);
		cr_assert_str_eq(pin, "");
		cr_assert(strstr(err, "node id") != NULL, "err: %s", err);
	}
	cr_assert_eq(ca_issue(cadir, NULL, out, 0, pin, err, sizeof err),
	    NBX_EINVAL);
	cr_assert_neq(access(out, F_OK), 0, "nothing created on refusal");
	/* 32 characters is the limit, and it is accepted. */
	issue("abcdefghijklmnopqrstuvwxyz012345", out, pin);
}

Test(ca, issue_writes_files_with_modes)
{
	char pin[65];
	const char *out = path(root, "node-ee");
	char *a, *b;
	X509 *crt;
	EVP_PKEY *key;
	FILE *f;

	init_ca();
	issue("ee", out, pin);
	cr_assert_eq(mode_of(out), 0700);
	cr_assert_eq(mode_of(path(out, "node.key")), 0600);
	a = slurp(path(out, "ca.crt"));
	b = slurp(path(cadir, "ca.crt"));
	cr_assert_str_eq(a, b, "out/ca.crt is a copy of the CA certificate");
	free(a);
	free(b);
	crt = load_cert(path(out, "node.crt"));
	f = fopen(path(out, "node.key"), "r");
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(key);
	cr_assert_eq(X509_check_private_key(crt, key), 1);
	cr_assert_eq(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
	EVP_PKEY_free(key);
	X509_free(crt);
}

Test(ca, issue_refuses_existing_node_key)
{
	char pin[65];
	const char *out = path(root, "node-ee");
	char *before, *after;

	init_ca();
	issue("ee", out, pin);
	before = slurp(path(out, "node.key"));
	cr_assert_eq(ca_issue(cadir, "ee", out, 0, pin, err, sizeof err),
	    NBX_EEXIST);
	cr_assert(strstr(err, "node.key") != NULL, "err: %s", err);
	after = slurp(path(out, "node.key"));
	cr_assert_str_eq(before, after);
	free(before);
	free(after);
}

Test(ca, issue_without_ca_names_the_file)
{
	char pin[65];

	cr_assert_eq(ca_issue(cadir, "ee", path(root, "o"), 0, pin, err,
	    sizeof err), NBX_EIO);
	cr_assert(strstr(err, "ca.key") != NULL, "err: %s", err);
	cr_assert_neq(access(path(root, "o"), F_OK), 0);
}

Test(ca, issued_cert_verifies_and_has_identity)
{
	char pin[65], cn[64];
	const char *out = path(root, "n");
	X509 *crt;
	GENERAL_NAMES *san;
	int crit = -1, uris = 0;

	init_ca();
	issue("lv", out, pin);
	crt = load_cert(path(out, "node.crt"));
	cr_assert_eq(verify(crt, NULL, X509_PURPOSE_SSL_SERVER), X509_V_OK);
	cr_assert_eq(verify(crt, NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	cr_assert_eq(X509_check_ca(crt), 0);
	X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_commonName,
	    cn, sizeof cn);
	cr_assert_str_eq(cn, "lv");
	san = X509_get_ext_d2i(crt, NID_subject_alt_name, &crit, NULL);
	cr_assert_not_null(san);
	for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
		if (g->type != GEN_URI)
			continue;
		uris++;
		cr_assert_str_eq((const char *)ASN1_STRING_get0_data(
		    g->d.uniformResourceIdentifier), "urn:nbx:node:lv");
	}
	cr_assert_eq(uris, 1);
	GENERAL_NAMES_free(san);
	cr_assert(X509_get_key_usage(crt) & KU_DIGITAL_SIGNATURE);
	cr_assert_eq(X509_get_key_usage(crt) & KU_KEY_CERT_SIGN, 0);
	cr_assert(X509_get_extended_key_usage(crt) & XKU_SSL_SERVER);
	cr_assert(X509_get_extended_key_usage(crt) & XKU_SSL_CLIENT);
	/* Default lifetime: 825 days (plus the small backdating). */
	long d = days_between(X509_get0_notBefore(crt), X509_get0_notAfter(crt));
	cr_assert_eq(d, 825);
	cr_assert(X509_cmp_current_time(X509_get0_notBefore(crt)) < 0);
	/* A random serial of about 128 bits. */
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(crt), NULL);
	cr_assert(BN_num_bits(bn) > 64 && BN_num_bits(bn) <= 128);
	BN_free(bn);
	X509_free(crt);
}

Test(ca, serials_are_distinct_and_indexed)
{
	char pin[65], *idx;
	X509 *a, *b;

	init_ca();
	issue("ee", path(root, "a"), pin);
	issue("ee", path(root, "b"), pin);
	a = load_cert(path(root, "a/node.crt"));
	b = load_cert(path(root, "b/node.crt"));
	cr_assert_neq(ASN1_INTEGER_cmp(X509_get0_serialNumber(a),
	    X509_get0_serialNumber(b)), 0);
	idx = slurp(path(cadir, "index.txt"));
	for (X509 *x = a; x; x = x == a ? b : NULL) {
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
		char *hex = BN_bn2hex(bn), line[128];
		snprintf(line, sizeof line, "%s\tee\tvalid\t-\n", hex);
		cr_assert(strstr(idx, line) != NULL, "index lacks %s", hex);
		OPENSSL_free(hex);
		BN_free(bn);
	}
	free(idx);
	X509_free(a);
	X509_free(b);
}

Test(ca, pin_is_sha256_of_spki)
{
	char pin[65], hex[65];
	uint8_t want[32], got[32];
	unsigned char *der = NULL;
	unsigned int dlen = 0;
	X509 *crt;
	int n;

	init_ca();
	issue("fi", path(root, "n"), pin);
	crt = load_cert(path(root, "n/node.crt"));
	/* Independently: SPKI DER from the public key, digested with EVP. */
	n = i2d_PUBKEY(X509_get0_pubkey(crt), &der);
	cr_assert(n > 0);
	cr_assert(EVP_Digest(der, (size_t)n, want, &dlen, EVP_sha256(), NULL));
	cr_assert_eq(dlen, 32);
	OPENSSL_free(der);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", want[i]);
	cr_assert_str_eq(pin, hex);
	cr_assert_eq(ca_spki_pin(crt, got), 0);
	cr_assert_arr_eq(got, want, 32);
	memset(got, 0, sizeof got);
	cr_assert_eq(ca_spki_pin_file(path(root, "n/node.crt"), got), 0);
	cr_assert_arr_eq(got, want, 32);
	ca_pin_hex(got, hex);
	cr_assert_str_eq(pin, hex);
	cr_assert_eq(ca_spki_pin(NULL, got), NBX_EINVAL);
	cr_assert_eq(ca_spki_pin_file(path(root, "missing.crt"), got), NBX_EIO);
	X509_free(crt);
}

Test(ca, expired_knob_makes_expired_cert)
{
	struct ca_issue_opts o = { .days = 1, .not_before_offset_s = -10 * 86400 };
	char pin[65];
	X509 *crt;

	init_ca();
	cr_assert_eq(ca_issue_ex(cadir, "fi", path(root, "x"), &o, pin, err,
	    sizeof err), 0, "%s", err);
	crt = load_cert(path(root, "x/node.crt"));
	cr_assert_eq(verify(crt, NULL, X509_PURPOSE_SSL_CLIENT),
	    X509_V_ERR_CERT_HAS_EXPIRED);
	X509_free(crt);
}

Test(ca, issue_refuses_absurd_days)
{
	char pin[65];

	init_ca();
	cr_assert_eq(ca_issue(cadir, "fi", path(root, "x"), CA_DAYS_MAX + 1,
	    pin, err, sizeof err), NBX_EINVAL);
}

Test(ca, revoke_and_crl)
{
	char pin[65], *idx;
	const char *crlp = path(root, "ca.crl");
	X509 *ca, *good, *bad;
	X509_CRL *crl;
	X509_REVOKED *rev = NULL;

	init_ca();
	issue("ee", path(root, "good"), pin);
	issue("lv", path(root, "bad"), pin);
	cr_assert_eq(ca_revoke(cadir, path(root, "bad/node.crt"), err,
	    sizeof err), 0, "%s", err);
	idx = slurp(path(cadir, "index.txt"));
	cr_assert(strstr(idx, "\tlv\trevoked\t") != NULL, "%s", idx);
	cr_assert(strstr(idx, "\tee\tvalid\t-") != NULL, "%s", idx);
	free(idx);
	cr_assert_eq(ca_crl(cadir, crlp, 0, err, sizeof err), 0, "%s", err);
	cr_assert_eq(mode_of(crlp), 0644);

	ca = load_cert(path(cadir, "ca.crt"));
	good = load_cert(path(root, "good/node.crt"));
	bad = load_cert(path(root, "bad/node.crt"));
	crl = load_crl(crlp);
	cr_assert_eq(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	cr_assert_eq(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
	cr_assert_eq(X509_NAME_cmp(X509_CRL_get_issuer(crl),
	    X509_get_subject_name(ca)), 0);
	cr_assert_eq(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
	cr_assert_eq(X509_CRL_get0_by_cert(crl, &rev, bad), 1);
	cr_assert_eq(X509_CRL_get0_by_cert(crl, &rev, good), 0);
	cr_assert(X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl)) <= 0);
	cr_assert_eq(days_between(X509_CRL_get0_lastUpdate(crl),
	    X509_CRL_get0_nextUpdate(crl)), 7);
	cr_assert(X509_CRL_get_ext_by_NID(crl, NID_crl_number, -1) >= 0);
	cr_assert(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier,
	    -1) >= 0);
	/* And a verifier with CRL checking sees it that way. */
	cr_assert_eq(verify(bad, crl, X509_PURPOSE_SSL_CLIENT),
	    X509_V_ERR_CERT_REVOKED);
	cr_assert_eq(verify(good, crl, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
	X509_CRL_free(crl);
	X509_free(ca);
	X509_free(good);
	X509_free(bad);
}

Test(ca, revoke_twice_keeps_one_entry)
{
	char pin[65], *idx, *p;
	int n = 0;

	init_ca();
	issue("lv", path(root, "n"), pin);
	cr_assert_eq(ca_revoke(cadir, path(root, "n/node.crt"), err,
	    sizeof err), 0);
	cr_assert_eq(ca_revoke(cadir, path(root, "n/node.crt"), err,
	    sizeof err), 0);
	idx = slurp(path(cadir, "index.txt"));
	for (p = idx; (p = strstr(p, "revoked\t")) != NULL; p++)
		n++;
	cr_assert_eq(n, 1, "%s", idx);
	free(idx);
}

Test(ca, revoke_refuses_foreign_cert)
{
	char other[PATH_MAX], pin[65];

	init_ca();
	snprintf(other, sizeof other, "%s/other", root);
	cr_assert_eq(ca_init(other, err, sizeof err), 0);
	cr_assert_eq(ca_issue(other, "lv", path(root, "n"), 0, pin, err,
	    sizeof err), 0);
	cr_assert_eq(ca_revoke(cadir, path(root, "n/node.crt"), err,
	    sizeof err), NBX_EINVAL);
	cr_assert(strstr(err, "not issued by") != NULL, "err: %s", err);
	cr_assert_eq(ca_revoke(cadir, path(root, "none.crt"), err,
	    sizeof err), NBX_EIO);
	cr_assert(strstr(err, "none.crt") != NULL, "err: %s", err);
}

Test(ca, crl_numbers_increase_and_empty_crl)
{
	const char *a = path(root, "a.crl"), *b = path(root, "b.crl");
	X509_CRL *ca_, *cb;
	ASN1_INTEGER *na, *nb;

	init_ca();
	cr_assert_eq(ca_crl(cadir, a, 0, err, sizeof err), 0, "%s", err);
	cr_assert_eq(ca_crl(cadir, b, 30, err, sizeof err), 0, "%s", err);
	ca_ = load_crl(a);
	cb = load_crl(b);
	cr_assert(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(ca_)) <= 0);
	na = X509_CRL_get_ext_d2i(ca_, NID_crl_number, NULL, NULL);
	nb = X509_CRL_get_ext_d2i(cb, NID_crl_number, NULL, NULL);
	cr_assert(ASN1_INTEGER_cmp(na, nb) < 0);
	cr_assert_eq(days_between(X509_CRL_get0_lastUpdate(cb),
	    X509_CRL_get0_nextUpdate(cb)), 30);
	ASN1_INTEGER_free(na);
	ASN1_INTEGER_free(nb);
	X509_CRL_free(ca_);
	X509_CRL_free(cb);
}

Test(ca, stale_crl_knob)
{
	struct ca_crl_opts o = { .days = 1, .last_update_offset_s = -3 * 86400 };
	const char *p = path(root, "stale.crl");
	X509_CRL *crl;

	init_ca();
	cr_assert_eq(ca_crl_ex(cadir, p, &o, err, sizeof err), 0, "%s", err);
	crl = load_crl(p);
	cr_assert(X509_cmp_current_time(X509_CRL_get0_nextUpdate(crl)) < 0);
	X509_CRL_free(crl);
}

Test(ca, crl_to_unwritable_place_names_it)
{
	char p[PATH_MAX];

	init_ca();
	snprintf(p, sizeof p, "%s/no/such/dir/ca.crl", root);
	cr_assert_eq(ca_crl(cadir, p, 0, err, sizeof err), NBX_EIO);
	cr_assert(strstr(err, "no/such/dir/ca.crl") != NULL, "err: %s", err);
}

Test(ca, corrupt_index_is_reported)
{
	char pin[65];
	FILE *f;

	init_ca();
	f = fopen(path(cadir, "index.txt"), "a");
	fputs("garbage line\n", f);
	fclose(f);
	cr_assert_eq(ca_issue(cadir, "ee", path(root, "n"), 0, pin, err,
	    sizeof err), NBX_EIO);
	cr_assert(strstr(err, "index.txt:2") != NULL, "err: %s", err);
	cr_assert_neq(access(path(root, "n/node.key"), F_OK), 0,
	    "key removed when issuance failed");
}
