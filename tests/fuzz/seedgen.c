/*
 * seedgen.c - writes the seed inputs of the fuzz harnesses, built with the
 * real encoders so that they get past the first checks:
 *
 *   change_fuzz   valid changes of every kind
 *   frame_fuzz    one frame of every message type, a stream of several,
 *                 and bare bodies (the harness also reads the whole input
 *                 as one body)
 *   session_fuzz  what "lv" may send after its HELLO: SUBSCRIBE, ACKs of
 *                 the batches the session really sends, CHANGES applied
 *                 and quarantined, PING, ERASE_RECEIPT, ERROR, cut frames
 *   schema_fuzz, config_fuzz   conf/ files and small broken variants
 *   import_fuzz   import lines for every collection, sets as arrays and
 *                 comma strings, wrong types, audiences
 *   control_fuzz  control requests: put, delete, erase, import, others
 *   record_fuzz   stored records: each record of lv's batch merged after
 *                 a state version (format 2, with int and nil versions),
 *                 and one record in format 1
 *   recon_fuzz    reconciliation messages: every message of exchanges
 *                 between the harness's sets and a peer's views of them,
 *                 an all-SKIP message and one of many FP ranges
 *
 * Usage: seedgen CORPUS_DIR (run from the repository root: it reads
 * conf/).  Every file is named seed-*; the output is the same on every
 * run.  `make fuzz-seeds` runs it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#include "crdt.h"
#include "frame.h"
#include "hlc.h"
#include "mpwrite.h"
#include "recon.h"
#include "session.h"
#include "store_int.h"

static const char *outdir;

static void
put_file(const char *harness, const char *name, const void *p, size_t n)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, harness);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/seed-%s", outdir, harness, name);
	if ((f = fopen(path, "wb")) == NULL || (n > 0 && fwrite(p, 1, n, f) !=
	    n) || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void
put_text(const char *harness, const char *name, const char *text)
{
	put_file(harness, name, text, strlen(text));
}

static char *
read_all(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (p = malloc((size_t)n + 1)) == NULL ||
	    fread(p, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	p[n] = 0;
	fclose(f);
	return p;
}

static void
ok(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "seedgen: %s: %s\n", what, nbx_strerror(rc));
		exit(1);
	}
}

/* ------------------------------------------------------------------ */
/* Changes                                                             */
/* ------------------------------------------------------------------ */

#define T_HLC(d)	HLC_MAKE(FZ_NOW_MS - 1000 + (d), 0)

static struct change
ch(enum change_kind k, const char *coll, const char *id, const char *field,
    uint64_t hlc, const char *origin)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = k;
	c.coll = nbx_str_c(coll);
	c.id = nbx_str_c(id);
	c.field = nbx_str_c(field ? field : "");
	c.hlc = hlc;
	c.origin = nbx_str_c(origin);
	return c;
}

static struct change
ch_str(const char *coll, const char *id, const char *field, const char *v,
    uint64_t hlc, const char *origin)
{
	struct change c = ch(CHANGE_FIELD, coll, id, field, hlc, origin);

	c.val.t = NBX_V_STR;
	c.val.s = nbx_str_c(v);
	return c;
}

static struct change
ch_int(const char *coll, const char *id, const char *field, enum nbx_vtype t,
    int64_t v, uint64_t hlc, const char *origin)
{
	struct change c = ch(CHANGE_FIELD, coll, id, field, hlc, origin);

	c.val.t = t;
	c.val.i = v;
	return c;
}

static struct change
ch_elem(const char *coll, const char *id, const char *field, const char *e,
    int present, uint64_t hlc, const char *origin)
{
	struct change c = ch(CHANGE_ELEM, coll, id, field, hlc, origin);

	c.elem = nbx_str_c(e);
	c.val.t = NBX_V_BOOL;
	c.val.i = present;
	return c;
}

static void
set_aud(struct nbx_audience *a, uint64_t hlc, const char *origin, int n, ...)
{
	va_list ap;

	memset(a, 0, sizeof(*a));
	a->hlc = hlc;
	a->origin = nbx_str_c(origin);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		a->ids[a->n++] = nbx_str_c(va_arg(ap, const char *));
	va_end(ap);
}

/*
 * What "lv" sends in one batch: its own service and case, a status it may
 * set on ee's case (writers = audience), a set edited, a record deleted
 * and one erased, and changes the store must quarantine (a local field, a
 * field it may not write, a clock too far ahead, an unknown collection).
 */
static size_t
lv_batch(struct change *c)
{
	size_t n = 0;
	uint64_t aud_hlc = T_HLC(1);

	c[n++] = ch_str("service", "lv:svc-9", "name", "Riga shelter",
	    T_HLC(2), "lv");
	c[n++] = ch_str("service", "lv:svc-9", "kind", "shelter", T_HLC(2),
	    "lv");
	c[n++] = ch_int("service", "lv:svc-9", "capacity", NBX_V_INT, 8,
	    T_HLC(2), "lv");
	c[n++] = ch_int("service", "lv:svc-9", "open_24h", NBX_V_BOOL, 1,
	    T_HLC(2), "lv");
	c[n++] = ch_elem("service", "lv:svc-9", "languages", "lv", 1, T_HLC(3),
	    "lv");
	c[n++] = ch_elem("service", "lv:svc-9", "languages", "ru", 0, T_HLC(3),
	    "lv");
	c[n] = ch(CHANGE_AUDIENCE, "case", "lv:case-7", NULL, aud_hlc, "lv");
	set_aud(&c[n++].aud, aud_hlc, "lv", 2, "ee", "lv");
	c[n] = ch_str("case", "lv:case-7", "pseudonym", "R-7", T_HLC(4), "lv");
	set_aud(&c[n++].aud, aud_hlc, "lv", 2, "ee", "lv");
	c[n] = ch_str("case", "lv:case-7", "referral_date", "2024-02-29",
	    T_HLC(4), "lv");
	set_aud(&c[n++].aud, aud_hlc, "lv", 2, "ee", "lv");
	c[n] = ch_str("case", "ee:case-1", "status", "accepted", T_HLC(5),
	    "lv");
	set_aud(&c[n++].aud, T_HLC(-59000), "ee", 2, "ee", "lv");
	c[n] = ch(CHANGE_STATE, "service", "lv:svc-8", NULL, T_HLC(6), "lv");
	c[n].val.t = NBX_V_INT;
	c[n++].val.i = REC_DELETED;
	c[n++] = ch(CHANGE_ERASE, "training", "lv:tr-3", NULL, T_HLC(7), "lv");
	/* refused: local field, not the creator, too far ahead, unknown */
	c[n++] = ch_str("service", "lv:svc-9", "notes", "local", T_HLC(8),
	    "lv");
	c[n++] = ch_str("service", "ee:shelter-1", "name", "taken", T_HLC(8),
	    "lv");
	c[n++] = ch_str("service", "lv:svc-9", "city", "Riga",
	    HLC_MAKE(FZ_NOW_MS + 3600000, 0), "lv");
	c[n++] = ch_str("nosuch", "lv:x", "name", "x", T_HLC(8), "lv");
	return n;
}

static void
gen_change(void)
{
	struct change c[32];
	size_t n = lv_batch(c);
	struct nbx_buf b;
	char name[32];

	for (size_t i = 0; i < n; i++) {
		nbx_buf_init(&b, NBX_CHANGE_MAX);
		ok(change_encode(&c[i], &b), "change_encode");
		snprintf(name, sizeof(name), "lv-%02zu", i);
		put_file("change_fuzz", name, b.p, b.len);
		nbx_buf_fini(&b);
	}
}

/* ------------------------------------------------------------------ */
/* Stored records                                                      */
/* ------------------------------------------------------------------ */

static void
gen_record(void)
{
	/* [1, false, [0,""], live, [100,"ee"], [0,""], [], [0,""],
	   [["city", "", 2, "Riga", [101,"ee"], [0,""], []]], []] */
	static const uint8_t format1[] = { 0x9a, 0x01, 0xc2, 0x92, 0x00,
	    0xa0, 0x00, 0x92, 0x64, 0xa2, 'e', 'e', 0x92, 0x00, 0xa0, 0x90,
	    0x92, 0x00, 0xa0, 0x91, 0x97, 0xa4, 'c', 'i', 't', 'y', 0xa0,
	    0x02, 0xa4, 'R', 'i', 'g', 'a', 0x92, 0x65, 0xa2, 'e', 'e', 0x92,
	    0x00, 0xa0, 0x90, 0x90 };
	struct change c[32], st;
	size_t n = lv_batch(c), nrec = 0;
	struct crdt_record r;
	struct nbx_buf b;
	char name[32];
	int changed;

	put_file("record_fuzz", "format1", format1, sizeof(format1));
	for (size_t i = 0; i < n; i++) {
		int first = 1;

		for (size_t j = 0; j < i; j++)
			if (change_same_record(&c[j], &c[i]))
				first = 0;
		if (!first)
			continue;
		crdt_record_init(&r, c[i].coll, c[i].id);
		st = ch(CHANGE_STATE, "", "", NULL, T_HLC(1),
		    nbx_str_eq(nbx_id_creator(c[i].id), nbx_str_c("ee")) ?
		    "ee" : "lv");
		st.val.t = NBX_V_INT;
		st.val.i = REC_LIVE;
		(void)crdt_record_merge(&r, &st, nbx_str_c("ee"), &changed);
		for (size_t j = i; j < n; j++)
			if (change_same_record(&c[j], &c[i]))
				(void)crdt_record_merge(&r, &c[j],
				    nbx_str_c("ee"), &changed);
		nbx_buf_init(&b, SIZE_MAX);
		ok(crdt_record_encode(&r, &b), "crdt_record_encode");
		snprintf(name, sizeof(name), "rec-%02zu", nrec++);
		put_file("record_fuzz", name, b.p, b.len);
		nbx_buf_fini(&b);
		crdt_record_fini(&r);
	}
}

/* ------------------------------------------------------------------ */
/* Audit entries                                                       */
/* ------------------------------------------------------------------ */

static void
gen_audit(void)
{
	/* format 2: [7, "lv", "t", "ee:1", [[1, "name", "", 5, "ee"]]] */
	static const uint8_t f2[] = { 0x95, 0x07, 0xa2, 'l', 'v', 0xa1, 't',
	    0xa4, 'e', 'e', ':', '1', 0x91, 0x95, 0x01, 0xa4, 'n', 'a', 'm',
	    'e', 0xa0, 0x05, 0xa2, 'e', 'e' };
	/* formats 3, 4: [7, "lv", "t", "ee:1", [[1, "name", 2]], 5, "ee"] */
	static const uint8_t f3[] = { 0x97, 0x07, 0xa2, 'l', 'v', 0xa1, 't',
	    0xa4, 'e', 'e', ':', '1', 0x91, 0x93, 0x01, 0xa4, 'n', 'a', 'm',
	    'e', 0x02, 0x05, 0xa2, 'e', 'e' };
	struct change c[32];
	size_t n = lv_batch(c);
	struct store *st = fz_store();
	MDB_txn *txn;
	MDB_cursor *cu;
	MDB_val k, d;
	char name[32];
	int i = 0, op = MDB_FIRST;

	put_file("audit_fuzz", "format2", f2, sizeof(f2));
	put_file("audit_fuzz", "format3", f3, sizeof(f3));
	/* the batch as the writer makes it, whole and its first change */
	ok(store_disclose(st, nbx_str_c("lv"), c, n, FZ_NOW_MS),
	    "store_disclose");
	ok(store_disclose(st, nbx_str_c("lt"), c, 1, FZ_NOW_MS),
	    "store_disclose");
	ok(mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin");
	ok(mdb_cursor_open(txn, st->dbi[DB_AUDIT], &cu), "mdb_cursor_open");
	while (mdb_cursor_get(cu, &k, &d, op) == 0) {
		op = MDB_NEXT;
		snprintf(name, sizeof(name), "batch-%d", i++);
		put_file("audit_fuzz", name, d.mv_data, d.mv_size);
	}
	mdb_cursor_close(cu);
	mdb_txn_abort(txn);
	if (i < 2) {
		fprintf(stderr, "seedgen: %d audit entries, not 2\n", i);
		exit(1);
	}
	fz_store_close();	/* the generators after start from the seeds */
}

/* ------------------------------------------------------------------ */
/* Reconciliation                                                      */
/* ------------------------------------------------------------------ */

/*
 * Every message of an exchange between a peer's view (variant 1) of a
 * set of n and the harness's own (variant 0), the peer first, as
 * recon-<name>-<i>.
 */
static void
recon_exchange(const char *name, size_t n)
{
	struct recon_item *v[2];
	struct recon_set s[2];
	struct nbx_buf m;
	char file[64];
	int done = 0, side = 0;

	for (int k = 0; k < 2; k++) {
		v[k] = calloc(n + 1, sizeof(*v[k]));
		if (v[k] == NULL)
			ok(NBX_ENOMEM, "calloc");
		ok(recon_set_init(&s[k], v[k], fz_recon_items(v[k], n, !k)),
		    "recon_set_init");
	}
	nbx_buf_init(&m, SIZE_MAX);
	ok(recon_initiate(&s[0], &m), "recon_initiate");
	for (int i = 0; !done && i < 16; i++, side = !side) {
		struct nbx_buf r;

		snprintf(file, sizeof(file), "recon-%s-%02d", name, i);
		put_file("recon_fuzz", file, m.p, m.len);
		nbx_buf_init(&r, SIZE_MAX);
		ok(recon_reply(&s[!side], m.p, m.len, NULL, &r, &done),
		    "recon_reply");
		nbx_buf_fini(&m);
		m = r;
	}
	nbx_buf_fini(&m);
	for (int k = 0; k < 2; k++) {
		recon_set_fini(&s[k]);
		free(v[k]);
	}
}

static void
gen_recon(void)
{
	static const uint8_t fp[16] = { 1 };
	struct nbx_buf b;
	struct mpwrite w;

	recon_exchange("big", FZ_RECON_BIG);
	recon_exchange("small", FZ_RECON_SMALL);
	nbx_buf_init(&b, SIZE_MAX);
	mpwrite_init(&w, &b);
	mpwrite_array(&w, 6);
	mpwrite_uint(&w, 16 * 100);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	mpwrite_nil(&w);
	mpwrite_uint(&w, RECON_SKIP);
	mpwrite_nil(&w);
	ok(w.err, "mpwrite");
	put_file("recon_fuzz", "recon-skip", b.p, b.len);
	b.len = 0;
	/* 300 differing FP ranges over the big set's kh */
	mpwrite_init(&w, &b);
	mpwrite_array(&w, 3 * 300);
	for (uint64_t i = 1; i <= 300; i++) {
		if (i < 300)
			mpwrite_uint(&w, i * 16 * FZ_RECON_BIG / 300);
		else
			mpwrite_nil(&w);
		mpwrite_uint(&w, RECON_FP);
		mpwrite_bin(&w, fp, sizeof(fp));
	}
	ok(w.err, "mpwrite");
	put_file("recon_fuzz", "recon-fp300", b.p, b.len);
	nbx_buf_fini(&b);
}

/* ------------------------------------------------------------------ */
/* Frames                                                              */
/* ------------------------------------------------------------------ */

static void
changes_frame(struct nbx_buf *b, uint64_t epoch, uint64_t upto,
    const struct change *c, size_t n)
{
	struct frame_batch fb;

	ok(frame_changes_begin(b, epoch, &fb), "changes_begin");
	for (size_t i = 0; i < n; i++)
		ok(frame_changes_add(b, &fb, &c[i]), "changes_add");
	ok(frame_changes_finish(b, &fb, upto), "changes_finish");
}

static void
put_buf(const char *harness, const char *name, struct nbx_buf *b)
{
	put_file(harness, name, b->p, b->len);
	b->len = 0;
}

static void
gen_frame(void)
{
	struct change c[32];
	size_t n = lv_batch(c);
	struct nbx_buf b;
	const char *h = "frame_fuzz";

	nbx_buf_init(&b, FRAME_HDR + FRAME_BODY_MAX);
	ok(frame_put_hello(&b, SYNC_PROTO_VERSION, NBX_STR(FZ_PEER),
	    FZ_PEER_EPOCH), "hello");
	put_buf(h, "hello", &b);
	ok(frame_put_subscribe(&b, 0x1234, 17), "subscribe");
	put_buf(h, "subscribe", &b);
	changes_frame(&b, FZ_PEER_EPOCH, 42, c, n);
	put_buf(h, "changes", &b);
	changes_frame(&b, FZ_PEER_EPOCH, 0, c, 0);
	put_buf(h, "changes-empty", &b);
	ok(frame_put_ack(&b, 42), "ack");
	put_buf(h, "ack", &b);
	ok(frame_put_erase_receipt(&b, NBX_STR("training"), NBX_STR("ee:tr-1"),
	    T_HLC(9), NBX_STR("lv")), "erase receipt");
	put_buf(h, "erase-receipt", &b);
	ok(frame_put_ping(&b, 7), "ping");
	put_buf(h, "ping", &b);
	ok(frame_put_pong(&b, UINT64_MAX), "pong");
	put_buf(h, "pong", &b);
	ok(frame_put_error(&b, NBX_EPEER, "protocol violation: go away"),
	    "error");
	put_buf(h, "error", &b);

	/* a stream, as a session reads it */
	ok(frame_put_hello(&b, SYNC_PROTO_VERSION, NBX_STR(FZ_PEER),
	    FZ_PEER_EPOCH), "hello");
	ok(frame_put_subscribe(&b, 0, 0), "subscribe");
	changes_frame(&b, FZ_PEER_EPOCH, 3, c, 3);
	ok(frame_put_ack(&b, 3), "ack");
	ok(frame_put_ping(&b, 1), "ping");
	put_buf(h, "stream", &b);

	/* version 2 */
	{
		static const uint8_t schema[FRAME_SCHEMA_LEN] = { 7 };
		const struct frame_hello h2 = { 1, 2, NBX_STR(FZ_PEER),
		    FZ_PEER_EPOCH, schema, 42 };
		const uint64_t khs[3] = { 0, 0x0123456789abcdefull,
		    UINT64_MAX };
		struct frame_batch fb;

		ok(frame_put_hello2(&b, &h2), "hello2");
		put_buf(h, "hello2", &b);
		ok(frame_put_recon(&b, 3, "\x93\xc0\x00\xc0", 4), "recon");
		put_buf(h, "recon", &b);
		ok(frame_put_want(&b, khs, 3), "want");
		put_buf(h, "want", &b);
		ok(frame_records_begin(&b, &fb), "records_begin");
		for (size_t i = 0; i < 4; i++)
			ok(frame_changes_add(&b, &fb, &c[i]), "records_add");
		ok(frame_changes_finish(&b, &fb, 0), "records_finish");
		put_buf(h, "records", &b);
	}

	/* bare bodies (no length prefix) */
	changes_frame(&b, FZ_PEER_EPOCH, 5, c + 6, 4);
	put_file(h, "body-changes", b.p + FRAME_HDR, b.len - FRAME_HDR);
	b.len = 0;
	ok(frame_put_hello(&b, 2, NBX_STR("a-very-long-node-id-0123456789ab"),
	    1), "hello");
	put_file(h, "body-hello", b.p + FRAME_HDR, b.len - FRAME_HDR);
	b.len = 0;
	ok(frame_put_error(&b, INT64_MIN, ""), "error");
	put_file(h, "body-error", b.p + FRAME_HDR, b.len - FRAME_HDR);
	b.len = 0;
	nbx_buf_fini(&b);
}

/* ------------------------------------------------------------------ */
/* Session                                                             */
/* ------------------------------------------------------------------ */

/*
 * The upto of each CHANGES batch a fresh session on the seeded store
 * sends after SUBSCRIBE from 0, with the harness's options, so that the
 * ACK seeds acknowledge real batches.
 */
static size_t
session_uptos(uint64_t *upto, size_t max)
{
	struct sync_opts o = { .batch_bytes = 4096, .window = 2,
	    .scan_max = 256 };
	struct sync_session *s;
	struct nbx_buf in;
	const uint8_t *p, *body;
	size_t n, k = 0, blen, used;
	struct frame_msg m;

	ok(sync_session_new(fz_store(), fz_policy(), FZ_PEER, &o, &s), "new");
	ok(sync_session_start(s, FZ_NOW_MS), "start");
	sync_session_consume(s, sync_session_pending(s, &p));
	nbx_buf_init(&in, 1 << 20);
	ok(frame_put_hello(&in, SYNC_PROTO_VERSION, NBX_STR(FZ_PEER),
	    FZ_PEER_EPOCH), "hello");
	ok(frame_put_subscribe(&in, 0, 0), "subscribe");
	ok(sync_session_feed(s, in.p, in.len, FZ_NOW_MS), "feed");
	n = sync_session_pending(s, &p);
	while (n > 0 && frame_split(p, n, FRAME_BODY_MAX, &body, &blen,
	    &used) == 0) {
		if (frame_decode(body, blen, &m) == 0 &&
		    m.type == FRAME_CHANGES && k < max)
			upto[k++] = m.seq;
		p += used;
		n -= used;
	}
	sync_session_free(s);
	nbx_buf_fini(&in);
	fz_teardown();
	return k;
}

static void
gen_session(void)
{
	struct change c[32];
	size_t n = lv_batch(c), nup;
	uint64_t upto[8];
	struct nbx_buf b;
	const char *h = "session_fuzz";

	nup = session_uptos(upto, 8);
	if (nup == 0) {
		fprintf(stderr, "seedgen: the session sent no CHANGES\n");
		exit(1);
	}
	nbx_buf_init(&b, FRAME_HDR + FRAME_BODY_MAX);

	ok(frame_put_subscribe(&b, 0, 0), "subscribe");
	put_buf(h, "subscribe", &b);

	ok(frame_put_subscribe(&b, 0, 0), "subscribe");
	for (size_t i = 0; i < nup; i++)
		ok(frame_put_ack(&b, upto[i]), "ack");
	ok(frame_put_ping(&b, 99), "ping");
	put_buf(h, "subscribe-ack-ping", &b);

	changes_frame(&b, FZ_PEER_EPOCH, 20, c, n);
	put_buf(h, "changes", &b);

	ok(frame_put_subscribe(&b, 0, 0), "subscribe");
	changes_frame(&b, FZ_PEER_EPOCH, 10, c, 6);
	changes_frame(&b, FZ_PEER_EPOCH, 20, c + 6, n - 6);
	ok(frame_put_ack(&b, upto[0]), "ack");
	ok(frame_put_erase_receipt(&b, NBX_STR("training"), NBX_STR("ee:tr-1"),
	    T_HLC(9), NBX_STR("lv")), "erase receipt");
	ok(frame_put_pong(&b, 1), "pong");
	put_buf(h, "subscribe-changes-ack", &b);

	ok(frame_put_ping(&b, 5), "ping");
	ok(frame_put_error(&b, NBX_EPEER, "bye"), "error");
	put_buf(h, "ping-error", &b);

	/* resuming from a position of our own log (epoch patched in) */
	ok(frame_put_subscribe(&b, FZ_SELF_EPOCH, upto[0] > 1 ? upto[0] - 1 :
	    1), "subscribe");
	put_buf(h, "subscribe-resume", &b);
	ok(frame_put_subscribe(&b, FZ_SELF_EPOCH, 1000000), "subscribe");
	put_buf(h, "subscribe-beyond-log", &b);

	/* version 2: a run of the peer's over nothing, a WANT, RECORDS */
	{
		const uint64_t khs[2] = { 1, UINT64_MAX };
		struct frame_batch fb;

		ok(frame_put_subscribe(&b, 0, 0), "subscribe");
		ok(frame_put_recon(&b, 3, "\x93\xc0\x02\xc4\x00", 5), "recon");
		ok(frame_put_want(&b, khs, 2), "want");
		ok(frame_records_begin(&b, &fb), "records_begin");
		for (size_t i = 0; i < 6; i++)
			ok(frame_changes_add(&b, &fb, &c[i]), "records_add");
		ok(frame_changes_finish(&b, &fb, 0), "records_finish");
		ok(frame_put_recon(&b, 2, "", 0), "recon end");
		put_buf(h, "subscribe-recon-want-records", &b);
	}

	/* protocol violations the session must refuse cleanly */
	ok(frame_put_hello(&b, SYNC_PROTO_VERSION, NBX_STR(FZ_PEER),
	    FZ_PEER_EPOCH), "hello");
	put_buf(h, "second-hello", &b);
	changes_frame(&b, FZ_PEER_EPOCH + 1, 5, c, 2);
	put_buf(h, "changes-wrong-epoch", &b);
	changes_frame(&b, FZ_PEER_EPOCH, 9, c, 2);
	changes_frame(&b, FZ_PEER_EPOCH, 8, c, 2);
	put_buf(h, "changes-upto-backwards", &b);
	ok(frame_put_ack(&b, 12345), "ack");
	put_buf(h, "ack-nothing", &b);
	ok(frame_put_subscribe(&b, 0, 0), "subscribe");
	ok(frame_put_subscribe(&b, 0, 0), "subscribe");
	put_buf(h, "second-subscribe", &b);
	/* a frame announcing 16 MiB + 1 */
	{
		static const uint8_t big[] = { 0x01, 0x00, 0x00, 0x01, 0x94 };

		put_file(h, "too-big", big, sizeof(big));
	}
	nbx_buf_fini(&b);
}

/* ------------------------------------------------------------------ */
/* Schema and configuration                                            */
/* ------------------------------------------------------------------ */

static const char *const schema_variants[][2] = {
	{ "small", "[t]\ndescription = test\n"
	    "[t.name]\ntype = string\nmax = 64\nshare = region\n"
	    "[t.count]\ntype = int\nmin = -5\nmax = 1000\nshare = region\n"
	    "[t.tags]\ntype = set\nmax = 4\nelem_max = 8\nvalues = a, b,\n"
	    "    c\nshare = region\n"
	    "[t.note]\ntype = string\nshare = local\n"
	    "[t.born]\ntype = date\nshare = audience\n"
	    "[t.ok]\ntype = bool\n"
	    "[t.status]\ntype = enum\nvalues = a, b, c\nshare = audience\n"
	    "writers = audience\n" },
	{ "missing-type", "[t]\n[t.x]\nshare = region\n" },
	{ "bad-share", "[t]\n[t.x]\ntype = string\nshare = everyone\n" },
	{ "writers-region", "[t]\n[t.x]\ntype = string\nshare = region\n"
	    "writers = audience\n" },
	{ "set-audience", "[t]\n[t.x]\ntype = set\nshare = audience\n" },
	{ "enum-no-values", "[t]\n[t.x]\ntype = enum\n" },
	{ "dup-section", "[t]\n[t.x]\ntype = int\n[t.x]\ntype = int\n" },
	{ "dup-value", "[t]\n[t.x]\ntype = enum\nvalues = a, a\n" },
	{ "min-gt-max", "[t]\n[t.x]\ntype = int\nmin = 5\nmax = 1\n" },
	{ "int-overflow", "[t]\n[t.x]\ntype = int\nmax = 9223372036854775808\n" },
	{ "bad-name", "[T-1]\n[T-1.x]\ntype = int\n" },
	{ "field-first", "[t.x]\ntype = int\n" },
	{ "unknown-key", "[t]\n[t.x]\ntype = int\ncolour = red\n" },
	{ "key-before-section", "type = int\n[t]\n" },
	{ "min-on-string", "[t]\n[t.x]\ntype = string\nmin = 1\n" },
	{ "elem-max-values", "[t]\n[t.x]\ntype = set\nelem_max = 1\n"
	    "values = ab\n" },
	{ "value-punct", "[t]\n[t.x]\ntype = enum\nvalues = a, [b]\n" },
	{ "utf8-values", "[t]\n[t.x]\ntype = enum\nvalues = \xc3\xa4, "
	    "\xe2\x82\xac, \xf0\x9f\x98\x80\n" },
	{ "bad-utf8-value", "[t]\n[t.x]\ntype = enum\nvalues = \xc0\xaf\n" },
	{ "comments", "; comment\n# comment\n[t] ; trailing\n[t.x]\n"
	    "type = string ; inline\nmax = 10\n" },
	{ "no-newline-end", "[t]\n[t.x]\ntype = bool" },
	{ "crlf", "[t]\r\n[t.x]\r\ntype = date\r\nshare = region\r\n" },
	{ "unterminated-section", "[t\n[t.x]\ntype = int\n" },
	{ "deep-name", "[t.x.y]\ntype = int\n" },
	{ "empty-value", "[t]\n[t.x]\ntype =\n" },
	{ "continuation", "[t]\n[t.x]\ntype = enum\nvalues = a,\n  b,\n"
	    "\tc\n  d\n" },
};

static const char *const config_variants[][2] = {
	{ "minimal", "[node]\nid = ee\ndata_dir = data\n[tls]\nca = ca.crt\n"
	    "cert = ee.crt\nkey = ee.key\n" },
	{ "full", "[node]\nid = lv-2\ndata_dir = /var/lib/nbx\n"
	    "listen = [::1]:7401\ncontrol_socket = /run/nbx/s.sock\n"
	    "schema = ../schema.conf\nmap_size_mb = 1\n"
	    "[tls]\nca = ca.crt\ncert = c.crt\nkey = k.key\ncrl = r.crl\n"
	    "[sync]\nmax_clock_drift_ms = 1\nping_interval_ms = 100\n"
	    "dead_after_ms = 101\nbackoff_min_ms = 1\nbackoff_max_ms = 1\n"
	    "batch_bytes = 1024\nwindow = 1024\n"
	    "[peer ee]\naddress = 10.0.0.1:1\n"
	    "[peer fi]\naddress = nbx.fi.example:65535\npin = "
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea\n"
	},
	{ "missing-id", "[node]\ndata_dir = d\n[tls]\nca = a\ncert = b\n"
	    "key = c\n" },
	{ "bad-id", "[node]\nid = EE_1\ndata_dir = d\n" },
	{ "bad-listen", "[node]\nid = ee\nlisten = 1.2.3:99999\n" },
	{ "v6-no-brackets", "[node]\nid = ee\nlisten = ::1:7400\n" },
	{ "bad-pin", "[peer lv]\naddress = a:1\npin = 3b:5c:7\n" },
	{ "dup-peer", "[peer lv]\naddress = a:1\n[peer lv]\naddress = b:2\n" },
	{ "peer-self", "[node]\nid = ee\ndata_dir = d\n[tls]\nca = a\n"
	    "cert = b\nkey = c\n[peer ee]\naddress = a:1\n" },
	{ "peer-no-address", "[peer lv]\npin =\n" },
	{ "dead-le-ping", "[node]\nid = ee\ndata_dir = d\n[tls]\nca = a\n"
	    "cert = b\nkey = c\n[sync]\nping_interval_ms = 5000\n"
	    "dead_after_ms = 5000\n" },
	{ "unknown-section", "[nodes]\nid = ee\n" },
	{ "dup-key", "[node]\nid = ee\nid = lv\n" },
	{ "number-range", "[sync]\nwindow = 0\nbatch_bytes = 99999999999999999999\n"
	},
	{ "socket-too-long", "[node]\nid = ee\ndata_dir = "
	    "/a/very/long/path/that/will/not/fit/into/the/sun_path/of/a/unix/"
	    "socket/because/it/is/longer/than/one/hundred/and/eight/bytes\n"
	    "[tls]\nca = a\ncert = b\nkey = c\n" },
	{ "indented", "[node]\nid = ee\n  data_dir = d\n" },
	{ "peer-v6", "[peer lt]\naddress = [2001:db8::1]:7400\n" },
};

static const char nul_config[] = "[node]\nid = ee\0\ndata_dir = d\n";

static void
gen_schema_config(void)
{
	char *t;

	t = read_all("conf/schema.conf");
	put_text("schema_fuzz", "schema.conf", t);
	free(t);
	for (size_t i = 0; i < sizeof(schema_variants) /
	    sizeof(schema_variants[0]); i++)
		put_text("schema_fuzz", schema_variants[i][0],
		    schema_variants[i][1]);
	t = read_all("conf/nbx.conf.example");
	put_text("config_fuzz", "nbx.conf.example", t);
	free(t);
	for (size_t i = 0; i < sizeof(config_variants) /
	    sizeof(config_variants[0]); i++)
		put_text("config_fuzz", config_variants[i][0],
		    config_variants[i][1]);
	put_file("config_fuzz", "nul", nul_config, sizeof(nul_config) - 1);
}

/* ------------------------------------------------------------------ */
/* Import lines and control requests                                   */
/* ------------------------------------------------------------------ */

static const char *const import_lines[][2] = {
	{ "organisation", "{\"collection\":\"organisation\",\"id\":\"org-2\","
	    "\"fields\":{\"name\":\"Riga NGO\",\"country\":\"lv\",\"kind\":"
	    "\"ngo\",\"troika_member\":false,\"website\":\"https://x.lv\","
	    "\"languages\":[\"lv\",\"ru\"],\"contact_email\":\"a@b.lv\","
	    "\"contact_phone\":\"+371\",\"internal_notes\":\"n\"}}" },
	{ "service", "{\"collection\":\"service\",\"id\":\"ee:shelter-1\","
	    "\"fields\":{\"name\":\"Tallinn shelter\",\"organisation\":"
	    "\"ee:org-1\",\"country\":\"ee\",\"city\":\"Tallinn\",\"kind\":"
	    "\"shelter\",\"languages\":\"et, en\",\"capacity\":\"12\","
	    "\"free_places\":0,\"open_24h\":\"yes\",\"accepts_children\":\"no\","
	    "\"accessible\":true,\"phone\":\"1\",\"email\":\"e\",\"address\":"
	    "\"a\",\"notes\":null}}" },
	{ "case", "{\"collection\":\"case\",\"id\":\"case-1\",\"audience\":"
	    "[\"ee\",\"lv\"],\"fields\":{\"pseudonym\":\"K-1\","
	    "\"country_of_origin\":\"ee\",\"destination_country\":\"lv\","
	    "\"referral_date\":\"2024-02-29\",\"status\":\"in_progress\","
	    "\"consent_given\":true,\"consent_date\":\"2024-03-01\","
	    "\"year_of_birth\":1990,\"accompanying_children\":2,\"language\":"
	    "\"ru\",\"needs_interpreter\":\"true\",\"needs_shelter\":1,"
	    "\"legal_name\":\"L\",\"date_of_birth\":\"1990-01-01\"}}" },
	{ "training", "{\"collection\":\"training\",\"id\":\"tr-2\",\"fields\":"
	    "{\"title\":\"T\",\"kind\":\"event\",\"date\":\"2024-06-01\","
	    "\"end_date\":\"2024-06-02\",\"places\":\"0\",\"description\":"
	    "\"\"}}" },
	{ "set-empty", "{\"collection\":\"organisation\",\"id\":\"org-1\","
	    "\"fields\":{\"languages\":[]}}" },
	{ "set-string-spaces", "{\"collection\":\"service\",\"id\":"
	    "\"shelter-1\",\"fields\":{\"languages\":\" ru ,, et,\\ten \"}}" },
	{ "set-too-many", "{\"collection\":\"service\",\"id\":\"s\",\"fields\":"
	    "{\"languages\":\"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\"}}" },
	{ "set-not-strings", "{\"collection\":\"service\",\"id\":\"s\","
	    "\"fields\":{\"languages\":[1,true,null]}}" },
	{ "wrong-types", "{\"collection\":\"service\",\"id\":\"s\",\"fields\":"
	    "{\"capacity\":\"many\",\"open_24h\":2,\"name\":7}}" },
	{ "out-of-range", "{\"collection\":\"case\",\"id\":\"c\",\"fields\":"
	    "{\"year_of_birth\":1800,\"status\":\"lost\",\"referral_date\":"
	    "\"2023-02-29\"}}" },
	{ "unknown-field", "{\"collection\":\"training\",\"id\":\"t\","
	    "\"fields\":{\"colour\":\"red\"}}" },
	{ "unknown-collection", "{\"collection\":\"victims\",\"id\":\"v\"}" },
	{ "foreign-id", "{\"collection\":\"case\",\"id\":\"lv:case-9\","
	    "\"audience\":[\"lv\"],\"fields\":{\"status\":\"accepted\"}}" },
	{ "audience-16", "{\"collection\":\"case\",\"id\":\"c16\",\"audience\":"
	    "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\","
	    "\"k\",\"l\",\"m\",\"n\",\"o\",\"p\"],\"fields\":{}}" },
	{ "audience-bad", "{\"collection\":\"case\",\"id\":\"c\",\"audience\":"
	    "[\"EE\",5]}" },
	{ "long-id", "{\"collection\":\"case\",\"id\":\"0123456789012345678901"
	    "234567890123456789012345678901234567890123456789012345678901234567"
	    "8901234567890123456789\"}" },
	{ "fields-not-object", "{\"collection\":\"case\",\"id\":\"c\","
	    "\"fields\":[1]}" },
	{ "not-object", "[\"collection\",\"case\"]" },
	{ "utf8", "{\"collection\":\"service\",\"id\":\"s\",\"fields\":{\"name\":"
	    "\"T\\u00e4\\u20ac\\ud83d\\ude00\",\"city\":\"\\u0000\"}}" },
};

static const char *const control_lines[][2] = {
	{ "put", "{\"cmd\":\"put\",\"collection\":\"service\",\"id\":"
	    "\"shelter-2\",\"fields\":{\"name\":\"N\",\"capacity\":\"3\","
	    "\"languages\":\"et,ru\"}}\n" },
	{ "put-case", "{\"cmd\":\"put\",\"collection\":\"case\",\"id\":"
	    "\"case-1\",\"audience\":[\"ee\",\"lv\",\"fi\"],\"fields\":"
	    "{\"status\":\"accepted\",\"legal_name\":\"stays here\"}}\n" },
	{ "delete", "{\"cmd\":\"delete\",\"collection\":\"service\",\"id\":"
	    "\"shelter-1\"}\n" },
	{ "erase-then-put", "{\"cmd\":\"erase\",\"collection\":\"case\","
	    "\"id\":\"ee:case-1\"}\n{\"cmd\":\"put\",\"collection\":\"case\","
	    "\"id\":\"case-1\",\"fields\":{\"pseudonym\":\"again\"}}\r\n" },
	{ "delete-foreign", "{\"cmd\":\"delete\",\"collection\":\"case\","
	    "\"id\":\"lv:case-7\"}\n" },
	{ "import", "{\"cmd\":\"import\",\"writes\":[{\"collection\":"
	    "\"training\",\"id\":\"tr-9\",\"fields\":{\"title\":\"X\"}},"
	    "{\"collection\":\"nope\",\"id\":\"x\"},7,{\"collection\":"
	    "\"organisation\",\"id\":\"org-1\",\"fields\":{\"languages\":"
	    "[\"fi\"]}}]}\n" },
	{ "status", "{\"cmd\":\"status\"}\n" },
	{ "malformed", "{\"cmd\":\"put\",\n[1,2]\n\"x\"\n{\"cmd\":5}\n  \n" },
};

static void
gen_json(void)
{
	for (size_t i = 0; i < sizeof(import_lines) / sizeof(import_lines[0]);
	    i++)
		put_text("import_fuzz", import_lines[i][0], import_lines[i][1]);
	for (size_t i = 0; i < sizeof(control_lines) /
	    sizeof(control_lines[0]); i++)
		put_text("control_fuzz", control_lines[i][0],
		    control_lines[i][1]);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: seedgen CORPUS_DIR\n");
		return 2;
	}
	outdir = argv[1];
	gen_change();
	gen_record();
	gen_audit();
	gen_recon();
	gen_frame();
	gen_session();
	gen_schema_config();
	gen_json();
	fz_teardown();
	return 0;
}
