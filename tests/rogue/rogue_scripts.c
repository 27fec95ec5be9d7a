/*
 * rogue_scripts.c - what the rogue peer sends once connected (rogue.h):
 * hostile frames, changes stamped with hostile clocks, spoofed changes.
 * Each script runs on one open connection and reports what it sent and
 * what the node did; none of them fails because the node refused it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "frame.h"
#include "hlc.h"
#include "mpbuf.h"
#include "nbx_err.h"
#include "rogue.h"
#include "session.h"

/* ------------------------------------------------------------------ */
/* Scripts: hostile frames                                             */
/* ------------------------------------------------------------------ */

/* After a hostile frame: give the node time to react, and report. */
static void
await_reaction(struct rogue *r)
{
	rogue_wait_for(r, rogue_is_closed, r->wait_ms);
	if (!r->closed)
		rogue_say("node kept the connection open for %llu ms",
		    (unsigned long long)r->wait_ms);
}

static int
script_oversize(struct rogue *r)
{
	static const uint8_t prefix[4] = { 0xff, 0xff, 0xff, 0xff };
	static uint8_t zeros[ROGUE_IO_CHUNK];

	rogue_send_hello(r, 1);
	rogue_send_plain(r, prefix, sizeof(prefix));
	rogue_say("sent length prefix 0xffffffff");
	/*
	 * The node must refuse it from the prefix alone.  If it has not
	 * within a second, stream what an attacker would send next: 1 MiB
	 * of body, which the node must not be buffering.
	 */
	rogue_wait_for(r, rogue_is_closed, 1000);
	for (int i = 0; i < 16 && !r->closed; i++) {
		rogue_send_plain(r, zeros, sizeof(zeros));
		rogue_pump(r, 0);
	}
	await_reaction(r);
	return 0;
}

static int
script_truncated(struct rogue *r, int clean)
{
	uint8_t frame[FRAME_HDR + 500];

	rogue_send_hello(r, 1);
	/* a frame announcing 1000 body bytes, of which 500 are sent */
	rogue_be32(frame, 1000);
	memset(frame + FRAME_HDR, 0x90, 500);
	rogue_send_plain(r, frame, sizeof(frame));
	rogue_say("sent half a frame (504 of 1004 bytes)");
	rogue_pump(r, 100);
	if (clean) {
		tls_conn_shutdown(r->tls);
		rogue_flush(r);
		rogue_say("sent close_notify");
	}
	shutdown(r->fd, SHUT_WR);
	rogue_say("sent EOF (TCP FIN)%s", clean ? "" : " without close_notify");
	await_reaction(r);
	return 0;
}

static int
script_body(struct rogue *r, const char *what, const uint8_t *body,
    size_t len)
{
	struct nbx_buf b;

	rogue_send_hello(r, 1);
	nbx_buf_init(&b, 1 << 20);
	rogue_put_raw_frame(&b, body, len);
	rogue_send_frames(r, &b, 1);
	nbx_buf_fini(&b);
	rogue_say("sent %s (body of %zu bytes)", what, len);
	await_reaction(r);
	return 0;
}

static int
script_ddff(struct rogue *r)
{
	static const uint8_t body[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };

	return script_body(r, "dd ff ff ff ff", body, sizeof(body));
}

static int
script_deep(struct rogue *r)
{
	uint8_t body[101];

	memset(body, 0x91, 100);	/* fixarray of 1, 100 times */
	body[100] = 0x90;		/* the innermost: an empty array */
	return script_body(r, "100 nested arrays", body, sizeof(body));
}

const char *const rogue_wrongtype_variants[] = {
	"hello-version-str",	/* [1, "1", id, epoch] */
	"hello-node-int",	/* [1, 1, 7, epoch] */
	"type-str",		/* ["hello", 1, id, epoch] */
	"unknown-type",		/* [99, 1] */
	"map-body",		/* {1: 1} */
	"changes-not-array",	/* [3, epoch, 1, "changes"] */
	"change-bad-kind",	/* a change whose kind is a string */
	"ack-negative",		/* [4, -1] */
	"ping-nil",		/* [6, nil] */
	"subscribe-short",	/* [2, epoch] */
	NULL,
};

/* Builds the body of one wrongtypes variant in b; 0 or -1 if unknown. */
static int
wrongtype_body(struct rogue *r, const char *v, struct nbx_buf *b,
    int *before_hello)
{
	msgpack_packer pk;
	struct nbx_str self = nbx_str_c(r->self);

	nbx_mp_packer_init(&pk, b);
	*before_hello = 0;
	if (!strcmp(v, "hello-version-str")) {
		*before_hello = 1;
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_HELLO);
		nbx_mp_pack_str(&pk, NBX_STR("1"));
		nbx_mp_pack_str(&pk, self);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
	} else if (!strcmp(v, "hello-node-int")) {
		*before_hello = 1;
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_HELLO);
		msgpack_pack_uint8(&pk, SYNC_PROTO_VERSION);
		msgpack_pack_uint8(&pk, 7);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
	} else if (!strcmp(v, "type-str")) {
		*before_hello = 1;
		msgpack_pack_array(&pk, 4);
		nbx_mp_pack_str(&pk, NBX_STR("hello"));
		msgpack_pack_uint8(&pk, SYNC_PROTO_VERSION);
		nbx_mp_pack_str(&pk, self);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
	} else if (!strcmp(v, "unknown-type")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, 99);
		msgpack_pack_uint8(&pk, 1);
	} else if (!strcmp(v, "map-body")) {
		msgpack_pack_map(&pk, 1);
		msgpack_pack_uint8(&pk, 1);
		msgpack_pack_uint8(&pk, 1);
	} else if (!strcmp(v, "changes-not-array")) {
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_CHANGES);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
		msgpack_pack_uint8(&pk, 1);
		nbx_mp_pack_str(&pk, NBX_STR("changes"));
	} else if (!strcmp(v, "change-bad-kind")) {
		/* [3, epoch, 1, [[1, "field", "service", "x:1", ...]]] */
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint8(&pk, FRAME_CHANGES);
		msgpack_pack_uint64(&pk, ROGUE_EPOCH);
		msgpack_pack_uint8(&pk, 1);
		msgpack_pack_array(&pk, 1);
		msgpack_pack_array(&pk, 9);
		msgpack_pack_uint8(&pk, 1);
		nbx_mp_pack_str(&pk, NBX_STR("field"));
		nbx_mp_pack_str(&pk, NBX_STR("service"));
		nbx_mp_pack_str(&pk, NBX_STR("rg:wrongtypes"));
		msgpack_pack_uint64(&pk, HLC_MAKE(rogue_now_ms(), 0));
		nbx_mp_pack_str(&pk, self);
		nbx_mp_pack_str(&pk, NBX_STR("name"));
		nbx_mp_pack_str(&pk, NBX_STR("CANARY-WRONGTYPE"));
		msgpack_pack_nil(&pk);
	} else if (!strcmp(v, "ack-negative")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, FRAME_ACK);
		msgpack_pack_int8(&pk, -1);
	} else if (!strcmp(v, "ping-nil")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, FRAME_PING);
		msgpack_pack_nil(&pk);
	} else if (!strcmp(v, "subscribe-short")) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint8(&pk, FRAME_SUBSCRIBE);
		msgpack_pack_uint64(&pk, 0);
	} else {
		return -1;
	}
	return 0;
}

static int
script_wrongtype(struct rogue *r, const char *v)
{
	struct nbx_buf body, b;
	int before_hello;

	nbx_buf_init(&body, 1 << 20);
	nbx_buf_init(&b, 1 << 20);
	if (wrongtype_body(r, v, &body, &before_hello) != 0) {
		rogue_say("unknown wrongtypes variant '%s'", v);
		nbx_buf_fini(&body);
		nbx_buf_fini(&b);
		return 2;
	}
	if (!before_hello)
		rogue_send_hello(r, 1);
	rogue_put_raw_frame(&b, body.p, body.len);
	rogue_send_frames(r, &b, 1);
	rogue_say("sent wrongtypes/%s (body of %zu bytes)", v, body.len);
	nbx_buf_fini(&body);
	nbx_buf_fini(&b);
	await_reaction(r);
	return 0;
}

static int
script_trailing(struct rogue *r, const char *v)
{
	struct nbx_buf b, body;
	struct frame_batch fb;
	struct change c;
	uint8_t extra[2] = { 0xc0, 0xc0 };

	nbx_buf_init(&b, 1 << 20);
	nbx_buf_init(&body, 1 << 20);
	rogue_send_hello(r, 1);
	if (v == NULL || !strcmp(v, "ping")) {
		/* [6, 1] then two nils, all inside the announced body */
		static const uint8_t ping[] = { 0x92, 0x06, 0x01 };

		nbx_buf_append(&body, ping, sizeof(ping));
		nbx_buf_append(&body, extra, sizeof(extra));
		rogue_put_raw_frame(&b, body.p, body.len);
	} else if (!strcmp(v, "changes")) {
		/* a valid one-change CHANGES whose body goes on after it */
		c = rogue_field("service", "rg:trailing", "name",
		    "CANARY-TRAILING", HLC_MAKE(rogue_now_ms(), 0), r->self);
		frame_changes_begin(&b, ROGUE_EPOCH, &fb);
		frame_changes_add(&b, &fb, &c);
		frame_changes_finish(&b, &fb, 1);
		nbx_buf_append(&b, extra, sizeof(extra));
		rogue_be32(b.p + fb.start,
		    (uint32_t)(b.len - fb.start - FRAME_HDR));
	} else {
		rogue_say("unknown trailing variant '%s'", v);
		nbx_buf_fini(&b);
		nbx_buf_fini(&body);
		return 2;
	}
	rogue_send_frames(r, &b, 1);
	rogue_say("sent a valid %s frame with 2 trailing bytes inside its body",
	    v ? v : "ping");
	nbx_buf_fini(&b);
	nbx_buf_fini(&body);
	await_reaction(r);
	return 0;
}

/*
 * PINGs as fast as possible.  Default: read the PONGs as they come.
 * "noread": read nothing while flooding, then collect the PONGs.
 * "hold": read nothing at all, then keep the connection open for
 * --linger ms without reading or closing (a peer that makes the node
 * queue answers and then never takes them).
 */
static int
script_pingflood(struct rogue *r, unsigned long n, const char *mode)
{
	struct nbx_buf b;
	uint64_t t0 = rogue_mono_ms(), sent = 0;
	const unsigned per = 4096;
	int noread = mode != NULL && (!strcmp(mode, "noread") ||
	    !strcmp(mode, "hold"));
	int hold = mode != NULL && !strcmp(mode, "hold");

	rogue_send_hello(r, 1);
	r->quiet_pong = 1;
	nbx_buf_init(&b, 1 << 20);
	while (sent < n && !r->closed) {
		unsigned k = 0;

		for (; k < per && sent + k < n; k++)
			frame_put_ping(&b, sent + k + 1);
		rogue_send_frames(r, &b, k);
		sent += k;
		if (!noread)
			while (rogue_pump(r, 0) > 0)
				;
	}
	nbx_buf_fini(&b);
	rogue_say("sent %llu PINGs in %llu ms%s", (unsigned long long)sent,
	    (unsigned long long)(rogue_mono_ms() - t0), r->closed ?
	    " (connection closed during the flood)" : "");
	if (hold) {
		rogue_say("holding the connection for %llu ms, reading nothing",
		    (unsigned long long)r->linger_ms);
		rogue_sleep_ms((unsigned)r->linger_ms);
		r->linger_ms = 0;
		return 0;
	}
	/* collect the PONGs (or the node's verdict) */
	{
		uint64_t end = rogue_mono_ms() + r->wait_ms;

		while (!r->closed && r->pongs < sent && rogue_mono_ms() < end)
			rogue_pump(r, 100);
	}
	rogue_say("received %llu PONGs for %llu PINGs",
	    (unsigned long long)r->pongs, (unsigned long long)sent);
	return 0;
}

static int
script_garbage(struct rogue *r)
{
	uint8_t body[4092];
	uint32_t x = 0x6e627821;	/* fixed seed: the run is repeatable */

	for (size_t i = 0; i < sizeof(body); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		body[i] = (uint8_t)x;
	}
	/* not a msgpack array: a random first byte could by chance be a
	 * HELLO-looking fixarray; 0xc1 is never valid msgpack */
	body[0] = 0xc1;
	return script_body(r, "seeded random bytes", body, sizeof(body));
}

/* ------------------------------------------------------------------ */
/* Scripts: clocks                                                     */
/* ------------------------------------------------------------------ */

/*
 * On a record the rogue itself created (rg:clock-1, collection service,
 * region fields, writers = origin, so only the clock is wrong):
 *   batch 1  name = "clock genuine 1" stamped now          -> applies
 *   batch 2  city   stamped now + drift + 100 ms           -> quarantined
 *            phone  stamped one day ahead                  -> quarantined
 *            email  stamped hlc = UINT64_MAX               -> quarantined
 *            capacity = 7 stamped (now ms, counter 0xffff) -> applies
 *   batch 3  name = "clock genuine 2" stamped now (later)  -> applies
 * "+ drift + 1 ms" cannot be hit exactly across two processes (the node
 * reads its clock a few ms after ours), so the first is 100 ms past the
 * bound.  Each batch must be ACKed: quarantine keeps the session.
 */
static int
script_clock(struct rogue *r)
{
	char id[NBX_RECID_MAX + 1];
	struct change c[4];
	const char *labels[4];
	uint64_t t;

	snprintf(id, sizeof(id), "%s:clock-1", r->self);
	rogue_send_hello(r, 1);
	t = rogue_now_ms();
	c[0] = rogue_field("service", id, "name", "clock genuine 1",
	    HLC_MAKE(t, 0), r->self);
	labels[0] = "genuine";
	if (!rogue_send_batch(r, c, 1, 1, labels))
		return 0;
	rogue_sleep_ms(5);
	t = rogue_now_ms();
	c[0] = rogue_field("service", id, "city", "CANARY-CLOCK-drift",
	    HLC_MAKE(t + r->drift_ms + 100, 0), r->self);
	labels[0] = "drift bound + 100 ms";
	c[1] = rogue_field("service", id, "phone", "CANARY-CLOCK-day",
	    HLC_MAKE(t + 86400000ull, 0), r->self);
	labels[1] = "one day ahead";
	c[2] = rogue_field("service", id, "email", "CANARY-CLOCK-max",
	    UINT64_MAX, r->self);
	labels[2] = "hlc UINT64_MAX";
	c[3] = rogue_field("service", id, "capacity", "",
	    HLC_MAKE(t, 0xffff), r->self);
	c[3].val.t = NBX_V_INT;
	c[3].val.i = 7;
	labels[3] = "counter at max, ms = now";
	if (!rogue_send_batch(r, c, 4, 2, labels))
		return 0;
	rogue_sleep_ms(5);
	c[0] = rogue_field("service", id, "name", "clock genuine 2",
	    HLC_MAKE(rogue_now_ms(), 0), r->self);
	labels[0] = "genuine, later";
	rogue_send_batch(r, c, 1, 3, labels);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Scripts: spoofing                                                   */
/* ------------------------------------------------------------------ */

/*
 * One batch against records of `victim` (a genuine peer of the node) and
 * of the rogue's own, with the node itself as `node`:
 *   0 service VICTIM:s1 name, origin = rogue             -> writer
 *   1 case VICTIM:case-1 AUDIENCE [node, victim, rogue],
 *     origin = rogue (widening)                          -> writer
 *   2 case ROGUE:case-9 pseudonym under audience
 *     [rogue, victim], without the node                  -> audience
 *   3 service ROGUE:s1 address (share = local)           -> local
 *   4 case VICTIM:case-1 status (writers = audience) by the rogue,
 *     under a claimed newer audience [node, victim, rogue] -> writer
 *   5 service ROGUE:s1 name                              genuine
 *   6 case ROGUE:case-2 AUDIENCE [rogue, node]           genuine
 *   7 case ROGUE:case-2 pseudonym under that audience    genuine
 *   8 service VICTIM:s1 name, origin = VICTIM (forged)   see below
 * Change 8 claims to come from the victim itself.  The node cannot tell
 * it from a relayed change (A -> B -> C carries A's origin), so nothing
 * in the protocol refuses it; it is sent last and marked, so a test can
 * report what the node did with it.
 */
static int
script_spoof(struct rogue *r, const char *victim)
{
	static char vs1[NBX_RECID_MAX + 1], vcase[NBX_RECID_MAX + 1];
	static char rcase9[NBX_RECID_MAX + 1], rs1[NBX_RECID_MAX + 1];
	static char rcase2[NBX_RECID_MAX + 1];
	const char *node = r->expect, *self = r->self;
	const char *wide[] = { node, victim, self, NULL };
	const char *noself[] = { self, victim, NULL };
	const char *mine[] = { self, node, NULL };
	const char *labels[9];
	struct change c[9];
	uint64_t t;

	snprintf(vs1, sizeof(vs1), "%s:s1", victim);
	snprintf(vcase, sizeof(vcase), "%s:case-1", victim);
	snprintf(rcase9, sizeof(rcase9), "%s:case-9", self);
	snprintf(rs1, sizeof(rs1), "%s:s1", self);
	snprintf(rcase2, sizeof(rcase2), "%s:case-2", self);
	rogue_send_hello(r, 1);
	t = rogue_now_ms();
	c[0] = rogue_field("service", vs1, "name", "CANARY-SPOOF-writer",
	    HLC_MAKE(t, 1), self);
	labels[0] = "writer: rogue writes victim's writers=origin field";
	memset(&c[1], 0, sizeof(c[1]));
	c[1].kind = CHANGE_AUDIENCE;
	c[1].coll = NBX_STR("case");
	c[1].id = nbx_str_c(vcase);
	c[1].hlc = HLC_MAKE(t, 2);
	c[1].origin = nbx_str_c(self);
	rogue_set_aud(&c[1].aud, c[1].hlc, self, wide);
	labels[1] = "writer: rogue widens the audience of victim's case";
	c[2] = rogue_field("case", rcase9, "pseudonym", "CANARY-SPOOF-audience",
	    HLC_MAKE(t, 3), self);
	rogue_set_aud(&c[2].aud, HLC_MAKE(t, 0), self, noself);
	labels[2] = "audience: scoped value whose audience lacks the node";
	c[3] = rogue_field("service", rs1, "address", "CANARY-SPOOF-local",
	    HLC_MAKE(t, 4), self);
	labels[3] = "local: a share=local field";
	c[4] = rogue_field("case", vcase, "status", "declined", HLC_MAKE(t, 5),
	    self);
	rogue_set_aud(&c[4].aud, HLC_MAKE(t, 5), self, wide);
	labels[4] = "writer: writers=audience field under a claimed audience";
	c[5] = rogue_field("service", rs1, "name", "rogue genuine service",
	    HLC_MAKE(t, 6), self);
	labels[5] = "genuine";
	memset(&c[6], 0, sizeof(c[6]));
	c[6].kind = CHANGE_AUDIENCE;
	c[6].coll = NBX_STR("case");
	c[6].id = nbx_str_c(rcase2);
	c[6].hlc = HLC_MAKE(t, 7);
	c[6].origin = nbx_str_c(self);
	rogue_set_aud(&c[6].aud, c[6].hlc, self, mine);
	labels[6] = "genuine";
	c[7] = rogue_field("case", rcase2, "pseudonym", "K-rogue-2",
	    HLC_MAKE(t, 8), self);
	rogue_set_aud(&c[7].aud, c[6].hlc, self, mine);
	labels[7] = "genuine";
	c[8] = rogue_field("service", vs1, "name", "FORGED-ORIGIN-name",
	    HLC_MAKE(t, 9), victim);
	labels[8] = "forged origin: claims to be the victim";
	rogue_send_batch(r, c, 9, 1, labels);
	return 0;
}

/* One genuine change of the rogue's own record: a harmless baseline. */
static int
script_record(struct rogue *r, char **args, int nargs)
{
	struct change c;
	const char *label = "genuine";

	if (nargs < 4) {
		rogue_say("record needs COLL ID FIELD VALUE");
		return 2;
	}
	rogue_send_hello(r, 1);
	c = rogue_field(args[0], args[1], args[2], args[3],
	    HLC_MAKE(rogue_now_ms(), 0), r->self);
	rogue_send_batch(r, &c, 1, 1, &label);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */
/* ------------------------------------------------------------------ */

int
rogue_script(struct rogue *r, const char *name, char **args, int nargs)
{
	int rc;

	if (!strcmp(name, "hello")) {
		rogue_send_hello(r, 1);
		await_reaction(r);
		rc = 0;
	} else if (!strcmp(name, "oversize")) {
		rc = script_oversize(r);
	} else if (!strcmp(name, "truncated")) {
		rc = script_truncated(r, nargs > 0 &&
		    !strcmp(args[0], "clean"));
	} else if (!strcmp(name, "ddff")) {
		rc = script_ddff(r);
	} else if (!strcmp(name, "deep")) {
		rc = script_deep(r);
	} else if (!strcmp(name, "wrongtypes")) {
		rc = script_wrongtype(r, args[0]);
	} else if (!strcmp(name, "trailing")) {
		rc = script_trailing(r, nargs > 0 ? args[0] : NULL);
	} else if (!strcmp(name, "pingflood")) {
		rc = script_pingflood(r, nargs > 0 ? strtoul(args[0], NULL,
		    10) : 100000, nargs > 1 ? args[1] : NULL);
	} else if (!strcmp(name, "garbage-after-hello")) {
		rc = script_garbage(r);
	} else if (!strcmp(name, "clock")) {
		rc = script_clock(r);
	} else if (!strcmp(name, "spoof")) {
		rc = script_spoof(r, args[0]);
	} else if (!strcmp(name, "record")) {
		rc = script_record(r, args, nargs);
	} else {
		rogue_say("unknown script '%s'", name);
		rc = 2;
	}
	return rc;
}
