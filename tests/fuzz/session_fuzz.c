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
 *
 * Errors are expected (most inputs are a protocol violation); what must
 * hold: no sanitizer report, a fatal error is sticky, and what the
 * session sends is well-formed frames that never carry a share = local
 * field, nor an audience-scoped value under an audience without "lv".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "frame.h"
#include "session.h"

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
			if (f->share == SHARE_AUDIENCE)
				fz_check(nbx_audience_has(&c.aud, peer),
				    "an audience value went to a node outside "
				    "its audience");
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
	struct nbx_buf first;
	uint64_t now = FZ_NOW_MS;
	size_t k = 0;
	int rc, rc2;

	fz_store_tick();
	fz_check(sync_session_new(fz_store(), fz_policy(), FZ_PEER, &o, &s) == 0,
	    "session_new");
	fz_check(sync_session_start(s, now) == 0, "session_start");
	session_drain(s);

	if (size >= 2)
		k = ((size_t)data[size - 1] << 8 | data[size - 2]) % (size + 1);
	nbx_buf_init(&first, FRAME_HDR + FRAME_BODY_MAX);
	fz_check(frame_put_hello(&first, SYNC_PROTO_VERSION, NBX_STR(FZ_PEER),
	    FZ_PEER_EPOCH) == 0 && nbx_buf_append(&first, data, k) == 0,
	    "first feed");
	rc = sync_session_feed(s, first.p, first.len, now);
	nbx_buf_fini(&first);
	session_drain(s);
	if (rc == 0) {
		rc = sync_session_feed(s, data + k, size - k, now + 1);
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
		rc2 = sync_session_feed(s, data, size, now + 3);
		fz_check(rc2 == rc, "fatal error is sticky");
		fz_check(sync_session_tick(s, now + 4) == rc, "sticky on tick");
		fz_check(sync_session_error(s)[0] != 0, "error has a reason");
		session_drain(s);
	}
	sync_session_free(s);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_atexit();
	(void)fz_store();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_session(data, size);
}
#endif
