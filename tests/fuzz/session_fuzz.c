/*
 * session_fuzz.c - libFuzzer harness for the sync session (daemon/
 * session.h) as a peer sees it: arbitrary bytes after a valid HELLO.
 *
 * One store per process (node "ee", seeded with records of each
 * collection, local and audience-scoped fields included) and the regional
 * schema.  Per input: a fresh session with peer "lv", started; then the
 * bytes HELLO(lv) + input[0..k) and input[k..n) fed in two calls, k taken
 * from the input's last two bytes, so frames cut across calls are
 * exercised; then a pump and a tick, the output drained after each step.
 * FZ_SELF_EPOCH in the input stands for this store's (random) log epoch.
 *
 * Errors are expected (most inputs are a protocol violation); what must
 * hold: no sanitizer report, a fatal error is sticky, and what the
 * session sends is well-formed frames that never carry a share = local
 * field, nor an audience-scoped value under an audience without "lv",
 * nor one of a record whose audience here does not hold "lv"; and the
 * peer cannot change the audience or state of this node's own records
 * (only their creator may, and this node makes no write meanwhile).
 *
 * Inputs that got past HELLO may have written to the store (applied,
 * quarantined, acked, disclosed), so the next input gets a freshly seeded
 * store (fz_store_fresh); NBX_FUZZ_SHARED_STORE=1 keeps one instead.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "frame.h"
#include "session.h"

/*
 * An audience-scoped value may go to the peer only while the record's
 * audience here holds it.  Only the creator sets a record's audience, and
 * the peer cannot take itself out of its own records' audience, so
 * nothing in the input can make this check stale between the send and
 * the drain.
 */
static void
session_check_record_audience(const struct change *c)
{
	struct store_rtxn *t;
	struct crdt_record r;

	fz_check(store_rtxn_begin(fz_store(), &t) == 0, "rtxn");
	fz_check(store_record_get(t, c->coll, c->id, &r) == 0,
	    "a sent record exists");
	fz_check(nbx_audience_has(&r.aud, NBX_STR(FZ_PEER)),
	    "an audience value went to a node outside the record's audience");
	crdt_record_fini(&r);
	store_rtxn_end(t);
}

/* Checks every frame of out[0..n): the egress rules, as the peer sees them. */
static void
session_check_output(const uint8_t *out, size_t n)
{
	const struct policy *pol = fz_policy();
	struct nbx_str peer = NBX_STR(FZ_PEER);
	const uint8_t *body, *p;
	size_t blen, used, off, len, cused;
	struct frame_msg m;
	struct change c;

	while (n > 0) {
		fz_check(frame_split(out, n, FRAME_BODY_MAX, &body, &blen,
		    &used) == 0, "output is whole frames");
		fz_check(frame_decode(body, blen, &m) == 0,
		    "output frames decode");
		off = 0;
		while (m.type == FRAME_CHANGES &&
		    frame_changes_next(&m, &off, &p, &len) == 1) {
			const struct pol_coll *pc;
			const struct pol_field *f;

			fz_check(change_decode(p, len, &c, &cused) == 0 &&
			    cused == len, "sent change decodes");
			if (c.kind != CHANGE_FIELD && c.kind != CHANGE_ELEM)
				continue;
			pc = policy_coll(pol, c.coll);
			fz_check(pc != NULL, "sent collection is known");
			f = policy_field(pc, c.field);
			fz_check(f != NULL, "sent field is known");
			fz_check(f->share != SHARE_LOCAL,
			    "a share = local field left the node");
			if (f->share == SHARE_AUDIENCE) {
				fz_check(nbx_audience_has(&c.aud, peer),
				    "an audience value went to a node outside "
				    "the audience it was written under");
				session_check_record_audience(&c);
			}
		}
		out += used;
		n -= used;
	}
}

static void
session_drain(struct sync_session *s)
{
	const uint8_t *p;
	size_t n = sync_session_pending(s, &p);

	if (n > 0) {
		session_check_output(p, n);
		sync_session_consume(s, n);
	}
	fz_check(sync_session_pending(s, &p) == 0, "drained");
}

/*
 * The versions of this node's own records that only this node may write:
 * the audience and the live/deleted state (writers: the creator).  No
 * local write happens during an input, so a peer can change them only by
 * forging this node's origin.  Erasure is open to any origin.
 */
static const char *const session_own[] = {
	"ee:case-1", "ee:case-2", "ee:shelter-1", "ee:org-1", "ee:tr-1",
};
static const char *const session_own_coll[] = {
	"case", "case", "service", "organisation", "training",
};

struct session_own_ver {
	int erased;
	uint64_t aud_hlc, state_hlc;
};

static void
session_own_read(struct session_own_ver *v)
{
	struct store_rtxn *t;
	struct crdt_record r;

	fz_check(store_rtxn_begin(fz_store(), &t) == 0, "rtxn");
	for (size_t i = 0; i < sizeof(session_own) / sizeof(session_own[0]);
	    i++) {
		memset(&v[i], 0, sizeof(v[i]));
		if (store_record_get(t, nbx_str_c(session_own_coll[i]),
		    nbx_str_c(session_own[i]), &r) == 0) {
			v[i].erased = r.erased;
			v[i].aud_hlc = r.aud.hlc;
			v[i].state_hlc = r.state_ver.hlc;
		}
		crdt_record_fini(&r);
	}
	store_rtxn_end(t);
}

static void
session_own_check(const struct session_own_ver *before)
{
	struct session_own_ver after[sizeof(session_own) /
	    sizeof(session_own[0])];

	session_own_read(after);
	for (size_t i = 0; i < sizeof(session_own) / sizeof(session_own[0]);
	    i++) {
		if (after[i].erased)
			continue;
		fz_check(after[i].aud_hlc == before[i].aud_hlc,
		    "a peer changed the audience of this node's own record");
		fz_check(after[i].state_hlc == before[i].state_hlc,
		    "a peer changed the state of this node's own record");
	}
}

/* Replaces FZ_SELF_EPOCH, encoded as msgpack uint64, with `epoch`. */
static void
session_patch_epoch(uint8_t *p, size_t n, uint64_t epoch)
{
	uint8_t magic[9];

	magic[0] = 0xcf;
	for (int i = 0; i < 8; i++)
		magic[1 + i] = (uint8_t)(FZ_SELF_EPOCH >> (56 - 8 * i));
	for (size_t i = 0; i + sizeof(magic) <= n; i++) {
		if (p[i] != 0xcf || memcmp(p + i, magic, sizeof(magic)) != 0)
			continue;
		for (int k = 0; k < 8; k++)
			p[i + 1 + k] = (uint8_t)(epoch >> (56 - 8 * k));
		i += sizeof(magic) - 1;
	}
}

int nbx_fuzz_session(const uint8_t *data, size_t size);

int
nbx_fuzz_session(const uint8_t *data, size_t size)
{
	struct sync_opts o = {
		.batch_bytes = 4096,
		.window = 2,
		.scan_max = 256,
	};
	struct sync_session *s = NULL;
	struct session_own_ver own[sizeof(session_own) / sizeof(session_own[0])];
	struct store_meta meta;
	struct nbx_buf first;
	static const uint8_t schema[FRAME_SCHEMA_LEN];
	const struct frame_hello hello = { 1, 2, NBX_STR(FZ_PEER),
	    FZ_PEER_EPOCH, schema, 0 };
	uint8_t *in;
	uint64_t now = FZ_NOW_MS;
	size_t k = 0;
	int rc, rc2;

	fz_store_fresh();
	fz_check(sync_session_new(fz_store(), fz_policy(), FZ_PEER, &o, &s) == 0,
	    "session_new");
	fz_check(sync_session_start(s, now) == 0, "session_start");
	session_drain(s);
	session_own_read(own);

	if (size >= 2)
		k = ((size_t)data[size - 1] << 8 | data[size - 2]) % (size + 1);
	in = (uint8_t *)fz_text(data, size);
	fz_check(store_meta_get(fz_store(), &meta) == 0, "meta");
	session_patch_epoch(in, size, meta.epoch);
	nbx_buf_init(&first, FRAME_HDR + FRAME_BODY_MAX);
	/* the peer speaks version 2: reconciliation frames are reachable */
	fz_check(frame_put_hello2(&first, &hello) == 0 &&
	    nbx_buf_append(&first, in, k) == 0, "first feed");
	rc = sync_session_feed(s, first.p, first.len, now);
	nbx_buf_fini(&first);
	session_drain(s);
	if (rc == 0) {
		rc = sync_session_feed(s, in + k, size - k, now + 1);
		session_drain(s);
	}
	if (rc == 0) {
		fz_check(sync_session_stats(s)->established, "HELLO took");
		rc = sync_session_pump(s, now + 2);
		session_drain(s);
	}
	if (rc == 0) {
		rc = sync_session_tick(s, now + 6000);	/* past the ping time */
		session_drain(s);
	}
	if (rc != 0) {
		/* fatal errors are sticky and have a reason */
		rc2 = sync_session_feed(s, in, size, now + 3);
		fz_check(rc2 == rc, "fatal error is sticky");
		fz_check(sync_session_tick(s, now + 4) == rc, "sticky on tick");
		fz_check(sync_session_error(s)[0] != 0, "error has a reason");
		session_drain(s);
	}
	session_own_check(own);
	/* anything past HELLO may have written: acked, applied, disclosed */
	if (sync_session_stats(s)->frames_in > 1)
		fz_store_dirty();
	sync_session_free(s);
	free(in);
	return 0;
}

NBX_FUZZ_MAIN(nbx_fuzz_session, (void)fz_store())
