/*
 * frame_test.c - the sync protocol's framing and message codec: round
 * trips of every message, incomplete input told apart from invalid, the
 * length cap decided from the prefix alone, and hostile bodies refused.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "change.h"
#include "frame.h"
#include "nbx_err.h"

static struct nbx_buf buf;

static void
setup(void)
{
	nbx_buf_init(&buf, FRAME_HDR + FRAME_BODY_MAX);
}

static void
teardown(void)
{
	nbx_buf_fini(&buf);
}

TestSuite(frame, .init = setup, .fini = teardown);

/* Splits the single frame in buf and decodes it. */
static int
decode_one(struct frame_msg *m)
{
	const uint8_t *body;
	size_t blen, used;

	cr_assert_eq(frame_split(buf.p, buf.len, FRAME_BODY_MAX, &body, &blen,
	    &used), 0);
	cr_assert_eq(used, buf.len);
	return frame_decode(body, blen, m);
}

/* Decodes a raw body given as bytes. */
static int
decode_raw(const void *p, size_t n)
{
	struct frame_msg m;

	return frame_decode(p, n, &m);
}

static struct change
sample_change(int i)
{
	static char ids[8][32];
	struct change c;

	memset(&c, 0, sizeof(c));
	snprintf(ids[i % 8], sizeof(ids[0]), "ee:%d", i);
	c.kind = CHANGE_FIELD;
	c.coll = nbx_str_c("t");
	c.id = nbx_str_c(ids[i % 8]);
	c.field = nbx_str_c("name");
	c.val.t = NBX_V_STR;
	c.val.s = nbx_str_c("Shelter");
	c.hlc = 0x0001000000000001ull + (uint64_t)i;
	c.origin = nbx_str_c("ee");
	return c;
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

Test(frame, hello_round_trip)
{
	struct frame_msg m;

	cr_assert_eq(frame_put_hello(&buf, 1, nbx_str_c("ee"),
	    0xfedcba9876543210ull), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_HELLO);
	cr_assert_eq(m.version, 1);
	cr_assert(nbx_str_eq(m.node, nbx_str_c("ee")));
	cr_assert_eq(m.epoch, 0xfedcba9876543210ull);
}

Test(frame, subscribe_ack_ping_pong_round_trip)
{
	struct frame_msg m;

	cr_assert_eq(frame_put_subscribe(&buf, 77, UINT64_MAX), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_SUBSCRIBE);
	cr_assert_eq(m.epoch, 77);
	cr_assert_eq(m.seq, UINT64_MAX);

	buf.len = 0;
	cr_assert_eq(frame_put_ack(&buf, 0), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_ACK);
	cr_assert_eq(m.seq, 0);

	buf.len = 0;
	cr_assert_eq(frame_put_ping(&buf, 300), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_PING);
	cr_assert_eq(m.nonce, 300);

	buf.len = 0;
	cr_assert_eq(frame_put_pong(&buf, 1ull << 40), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_PONG);
	cr_assert_eq(m.nonce, 1ull << 40);
}

Test(frame, erase_receipt_and_error_round_trip)
{
	struct frame_msg m;
	char big[FRAME_TEXT_MAX + 100];

	cr_assert_eq(frame_put_erase_receipt(&buf, nbx_str_c("case"),
	    nbx_str_c("ee:8f3a"), 12345, nbx_str_c("lv")), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_ERASE_RECEIPT);
	cr_assert(nbx_str_eq(m.coll, nbx_str_c("case")));
	cr_assert(nbx_str_eq(m.id, nbx_str_c("ee:8f3a")));
	cr_assert_eq(m.hlc, 12345);
	cr_assert(nbx_str_eq(m.origin, nbx_str_c("lv")));

	buf.len = 0;
	cr_assert_eq(frame_put_error(&buf, NBX_EPEER, "go away"), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_ERROR);
	cr_assert_eq(m.code, NBX_EPEER);
	cr_assert(nbx_str_eq(m.text, nbx_str_c("go away")));

	/* a long message is cut, not refused */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	buf.len = 0;
	cr_assert_eq(frame_put_error(&buf, -1, big), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.text.n, FRAME_TEXT_MAX);
}

Test(frame, changes_round_trip)
{
	struct frame_batch fb;
	struct frame_msg m;
	struct change in[5], out;
	const uint8_t *p;
	size_t off = 0, len, used;
	int n = 0, rc;

	cr_assert_eq(frame_changes_begin(&buf, 424242, &fb), 0);
	for (int i = 0; i < 5; i++) {
		in[i] = sample_change(i);
		cr_assert_eq(frame_changes_add(&buf, &fb, &in[i]), 0);
	}
	cr_assert_eq(frame_changes_finish(&buf, &fb, 99), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.type, FRAME_CHANGES);
	cr_assert_eq(m.epoch, 424242);
	cr_assert_eq(m.seq, 99);
	cr_assert_eq(m.nchanges, 5);
	while ((rc = frame_changes_next(&m, &off, &p, &len)) == 1) {
		cr_assert_eq(change_decode(p, len, &out, &used), 0);
		cr_assert_eq(used, len);
		cr_assert(change_eq(&out, &in[n]), "change %d", n);
		n++;
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(n, 5);
}

Test(frame, empty_changes_batch)
{
	struct frame_batch fb;
	struct frame_msg m;
	const uint8_t *p;
	size_t off = 0, len;

	cr_assert_eq(frame_changes_begin(&buf, 0, &fb), 0);
	cr_assert_eq(frame_changes_finish(&buf, &fb, 7), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.nchanges, 0);
	cr_assert_eq(m.seq, 7);
	cr_assert_eq(frame_changes_next(&m, &off, &p, &len), 0);
}

Test(frame, batch_rollback_and_raw_add)
{
	struct frame_batch fb, save;
	struct frame_msg m;
	struct nbx_buf enc;
	struct change c = sample_change(1);
	size_t mark;

	nbx_buf_init(&enc, 1024);
	cr_assert_eq(change_encode(&c, &enc), 0);
	cr_assert_eq(frame_changes_begin(&buf, 5, &fb), 0);
	cr_assert_eq(frame_changes_add_raw(&buf, &fb, enc.p, enc.len), 0);
	save = fb;
	mark = buf.len;
	cr_assert_eq(frame_changes_add(&buf, &fb, &c), 0);
	cr_assert_eq(frame_changes_add(&buf, &fb, &c), 0);
	fb = save;
	buf.len = mark;
	cr_assert_eq(frame_changes_size(&buf, &fb), buf.len - FRAME_HDR);
	cr_assert_eq(frame_changes_finish(&buf, &fb, 3), 0);
	cr_assert_eq(decode_one(&m), 0);
	cr_assert_eq(m.nchanges, 1);
	nbx_buf_fini(&enc);
}

Test(frame, batch_refuses_more_than_the_cap)
{
	struct frame_batch fb;
	static const uint8_t tiny[] = { 0x90 };

	cr_assert_eq(frame_changes_begin(&buf, 1, &fb), 0);
	for (int i = 0; i < FRAME_CHANGES_MAX; i++)
		cr_assert_eq(frame_changes_add_raw(&buf, &fb, tiny, 1), 0);
	cr_assert_eq(frame_changes_add_raw(&buf, &fb, tiny, 1), NBX_ETOOBIG);
	cr_assert_eq(fb.n, FRAME_CHANGES_MAX);
}

Test(frame, encoders_leave_a_full_buffer_unchanged)
{
	struct nbx_buf small;

	nbx_buf_init(&small, 10);
	cr_assert_eq(frame_put_ack(&small, 1), 0);
	cr_assert_eq(small.len, 7);
	cr_assert_eq(frame_put_hello(&small, 1, nbx_str_c("ee"), 1),
	    NBX_ETOOBIG);
	cr_assert_eq(small.len, 7);
	nbx_buf_fini(&small);
}

Test(frame, invalid_change_is_refused_by_add)
{
	struct frame_batch fb;
	struct change c = sample_change(0);
	size_t len;

	c.origin = nbx_str_c("");
	cr_assert_eq(frame_changes_begin(&buf, 1, &fb), 0);
	len = buf.len;
	cr_assert_eq(frame_changes_add(&buf, &fb, &c), NBX_EINVAL);
	cr_assert_eq(buf.len, len);
	cr_assert_eq(fb.n, 0);
}

/* ------------------------------------------------------------------ */
/* Splitting                                                           */
/* ------------------------------------------------------------------ */

Test(frame, every_truncation_is_incomplete)
{
	struct frame_batch fb;
	struct change c = sample_change(3);
	const uint8_t *body;
	size_t blen, used, first;

	cr_assert_eq(frame_put_hello(&buf, 1, nbx_str_c("lv"), 9), 0);
	first = buf.len;
	cr_assert_eq(frame_changes_begin(&buf, 9, &fb), 0);
	cr_assert_eq(frame_changes_add(&buf, &fb, &c), 0);
	cr_assert_eq(frame_changes_finish(&buf, &fb, 1), 0);
	for (size_t n = 0; n < first; n++) {
		cr_assert_eq(frame_split(buf.p, n, FRAME_BODY_MAX, &body,
		    &blen, &used), NBX_EAGAIN, "cut at %zu", n);
		cr_assert_null(body);
		cr_assert_eq(used, 0);
	}
	for (size_t n = first; n < buf.len; n++) {
		cr_assert_eq(frame_split(buf.p + first, n - first,
		    FRAME_BODY_MAX, &body, &blen, &used), NBX_EAGAIN);
		/* the first frame is complete whatever follows */
		cr_assert_eq(frame_split(buf.p, n, FRAME_BODY_MAX, &body,
		    &blen, &used), 0);
		cr_assert_eq(used, first);
	}
}

Test(frame, length_over_cap_is_refused_from_the_prefix)
{
	static const uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
	static const uint8_t just[4] = { 0x01, 0x00, 0x00, 0x01 };
	static const uint8_t at[4] = { 0x01, 0x00, 0x00, 0x00 };
	const uint8_t *body;
	size_t blen, used;

	cr_assert_eq(frame_split(huge, 4, FRAME_BODY_MAX, &body, &blen,
	    &used), NBX_ETOOBIG);
	cr_assert_eq(frame_split(just, 4, FRAME_BODY_MAX, &body, &blen,
	    &used), NBX_ETOOBIG);
	cr_assert_eq(frame_split(at, 4, FRAME_BODY_MAX, &body, &blen,
	    &used), NBX_EAGAIN, "16 MiB exactly is allowed");
	cr_assert_eq(frame_split(huge, 3, FRAME_BODY_MAX, &body, &blen,
	    &used), NBX_EAGAIN, "three bytes decide nothing");
}

/* ------------------------------------------------------------------ */
/* Hostile bodies                                                      */
/* ------------------------------------------------------------------ */

Test(frame, garbage_bodies_are_malformed)
{
	static const struct {
		const char *what;
		const char *b;
		size_t n;
	} cases[] = {
#define C(what, lit) { what, lit, sizeof(lit) - 1 }
		C("empty", ""),
		C("never-used byte", "\xc1"),
		C("not an array", "\x06"),
		C("empty array", "\x90"),
		C("a map", "\x81\x01\x02"),
		C("type 0", "\x92\x00\x01"),
		C("type 9", "\x92\x09\x01"),
		C("negative type", "\x92\xff\x01"),
		C("string type", "\x92\xa1" "6\x01"),
		C("PING short", "\x91\x06"),
		C("PING long", "\x93\x06\x01\x02"),
		C("PING string nonce", "\x92\x06\xa1x"),
		C("ACK negative", "\x92\x04\xff"),
		C("ACK negative int8", "\x92\x04\xd0\x80"),
		C("ACK float", "\x92\x04\xca\x00\x00\x00\x00"),
		C("SUBSCRIBE arity", "\x92\x02\x01"),
		C("HELLO short", "\x93\x01\x01\xa2" "ee"),
		C("HELLO empty id", "\x94\x01\x01\xa0\x01"),
		C("HELLO int id", "\x94\x01\x01\x05\x01"),
		C("HELLO id 33 bytes", "\x94\x01\x01\xd9\x21"
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x01"),
		C("ERROR string code", "\x93\x08\xa1x\xa1y"),
		C("ERROR int text", "\x93\x08\x01\x01"),
		C("RECEIPT empty coll", "\x95\x05\xa0\xa4" "ee:1\x01\xa2" "ee"),
		C("CHANGES batch not array", "\x94\x03\x01\x02\x03"),
		C("CHANGES element not array", "\x94\x03\x01\x02\x91\x05"),
		C("CHANGES count over elements", "\x94\x03\x01\x02\x92\x90"),
		C("trailing byte", "\x92\x06\x01\x00"),
		C("second object", "\x92\x06\x01\x92\x06\x01"),
		C("cut short", "\x92\x06"),
		C("too deep", "\x94\x03\x01\x02\x91\x91\x91\x91\x90"),
#undef C
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_raw(cases[i].b, cases[i].n),
		    NBX_EMALFORMED, "%s", cases[i].what);
	cr_assert_eq(decode_raw("\x92\x06\x01", 3), 0, "control case");
}

Test(frame, declared_count_beyond_the_bytes_is_refused)
{
	/* [3, 1, 2, array32 of 4G] in 9 bytes */
	static const uint8_t lie[] = { 0x94, 0x03, 0x01, 0x02, 0xdd, 0xff,
	    0xff, 0xff, 0xff };
	/* array16 of 60000 with three elements present */
	static const uint8_t lie16[] = { 0x94, 0x03, 0x01, 0x02, 0xdc, 0xea,
	    0x60, 0x90, 0x90, 0x90 };
	struct frame_msg m;

	cr_assert_eq(frame_decode(lie, sizeof(lie), &m), NBX_EMALFORMED);
	cr_assert_eq(frame_decode(lie16, sizeof(lie16), &m), NBX_EMALFORMED);
	cr_assert_eq(m.type, 0, "out is zeroed on error");
}

Test(frame, more_changes_than_the_cap_are_refused)
{
	size_t n = FRAME_CHANGES_MAX + 1, len = 9 + n;
	uint8_t *b = malloc(len);

	cr_assert_not_null(b);
	memcpy(b, "\x94\x03\x01\x02\xdd", 5);
	b[5] = (uint8_t)(n >> 24);
	b[6] = (uint8_t)(n >> 16);
	b[7] = (uint8_t)(n >> 8);
	b[8] = (uint8_t)n;
	memset(b + 9, 0x90, n);
	cr_assert_eq(decode_raw(b, len), NBX_EMALFORMED);
	/* exactly the cap is a valid frame (of empty, undecodable changes) */
	n--;
	b[8] = (uint8_t)n;
	b[7] = (uint8_t)(n >> 8);
	b[6] = (uint8_t)(n >> 16);
	cr_assert_eq(decode_raw(b, len - 1), 0);
	free(b);
}

/*
 * frame_decode_lazy leaves the elements to the caller, but a count the
 * bytes cannot back is refused before anyone sizes an array by it.
 */
Test(frame, lazy_decode_refuses_a_count_the_bytes_cannot_hold)
{
	/* CHANGES announcing 1000 changes in 20 bytes */
	uint8_t b[9 + 20];
	struct frame_msg m;

	memcpy(b, "\x94\x03\x01\x02\xdd\x00\x00\x03\xe8", 9);
	memset(b + 9, 0x90, 20);
	cr_assert_eq(frame_decode_lazy(b, sizeof(b), &m), NBX_EMALFORMED);
	/* two empty arrays pass the scan, but are no changes */
	cr_assert_eq(frame_decode(b, 9 + 2, &m), NBX_EMALFORMED);
	b[7] = 0;
	b[8] = 2;
	cr_assert_eq(frame_decode(b, 9 + 2, &m), 0);
	cr_assert_eq(frame_decode_lazy(b, 9 + 2, &m), NBX_EMALFORMED);
	/* room for two of the smallest changes: left to the caller */
	cr_assert_eq(frame_decode_lazy(b, 9 + 19, &m), NBX_EMALFORMED);
	cr_assert_eq(frame_decode_lazy(b, 9 + 20, &m), 0);
	cr_assert_eq(m.nchanges, 2);
	cr_assert_eq(m.changes_len, 20);
}

Test(frame, body_over_the_cap_is_too_big)
{
	struct frame_msg m;
	static const uint8_t b[1] = { 0x90 };

	cr_assert_eq(frame_decode(b, (size_t)FRAME_BODY_MAX + 1, &m),
	    NBX_ETOOBIG);
}

Test(frame, wide_integer_forms_are_accepted)
{
	/* ACK with seq as uint64 and as a non-negative int32 */
	static const uint8_t a[] = { 0x92, 0x04, 0xcf, 0, 0, 0, 0, 0, 0, 1,
	    0 };
	static const uint8_t b[] = { 0x92, 0x04, 0xd2, 0, 0, 1, 0 };
	/* ERROR with a negative code in int8 and in negative fixint */
	static const uint8_t e1[] = { 0x93, 0x08, 0xd0, 0x80, 0xa0 };
	static const uint8_t e2[] = { 0x93, 0x08, 0xe9, 0xa0 };
	/* CHANGES with a fixarray batch */
	static const uint8_t c[] = { 0x94, 0x03, 0x01, 0x02, 0x91, 0x90 };
	struct frame_msg m;

	cr_assert_eq(frame_decode(a, sizeof(a), &m), 0);
	cr_assert_eq(m.seq, 256);
	cr_assert_eq(frame_decode(b, sizeof(b), &m), 0);
	cr_assert_eq(m.seq, 256);
	cr_assert_eq(frame_decode(e1, sizeof(e1), &m), 0);
	cr_assert_eq(m.code, -128);
	cr_assert_eq(frame_decode(e2, sizeof(e2), &m), 0);
	cr_assert_eq(m.code, -23);
	cr_assert_eq(frame_decode(c, sizeof(c), &m), 0);
	cr_assert_eq(m.nchanges, 1);
}

Test(frame, hello_may_grow_in_later_versions)
{
	/* [1, 2, "ee", 5, {"x": [1]}]: extra elements are skipped */
	static const uint8_t h[] = { 0x95, 0x01, 0x02, 0xa2, 'e', 'e', 0x05,
	    0x81, 0xa1, 'x', 0x91, 0x01 };
	struct frame_msg m;

	cr_assert_eq(frame_decode(h, sizeof(h), &m), 0);
	cr_assert_eq(m.version, 2);
	cr_assert_eq(m.epoch, 5);
}

/*
 * Random bodies, and random mutations of valid frames: nothing crashes,
 * and the answer is 0 or NBX_EMALFORMED.  Run under ASan this is the
 * decoder's memory-safety check.
 */
Test(frame, random_bodies_never_crash)
{
	unsigned seed = 20240611;
	uint8_t b[256];
	struct frame_msg m;
	struct frame_batch fb;
	struct change c = sample_change(2);

	printf("seed %u\n", seed);
	srand(seed);
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(rand() % (int)sizeof(b));
		int rc;

		for (size_t j = 0; j < n; j++)
			b[j] = (uint8_t)rand();
		rc = frame_decode(b, n, &m);
		cr_assert(rc == 0 || rc == NBX_EMALFORMED, "rc %d", rc);
	}
	cr_assert_eq(frame_changes_begin(&buf, 1, &fb), 0);
	cr_assert_eq(frame_changes_add(&buf, &fb, &c), 0);
	cr_assert_eq(frame_changes_finish(&buf, &fb, 1), 0);
	for (int i = 0; i < 20000; i++) {
		size_t n = buf.len - FRAME_HDR;
		int rc;

		memcpy(b, buf.p + FRAME_HDR, n);
		b[rand() % (int)n] = (uint8_t)rand();
		if (rand() % 4 == 0)
			n = (size_t)(rand() % (int)n);
		rc = frame_decode(b, n, &m);
		cr_assert(rc == 0 || rc == NBX_EMALFORMED, "rc %d", rc);
	}
}
