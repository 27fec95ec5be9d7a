/*
 * change_test.c - the change codec: round trips of every kind at the caps,
 * encoder refusals, every truncation and every one-byte corruption of real
 * encodings, hostile headers under a memory check, and a replay of the
 * fuzz corpus (tests run from the repo root).  The wire format item by
 * item is in change_wire_test.c.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "change.h"
#include "hlc.h"
#include "nbx_err.h"

#define CORPUS_DIR	"tests/fuzz/corpus/change_fuzz"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------ */
/* Fixtures                                                           */
/* ------------------------------------------------------------------ */

static char big[NBX_STR_MAX + 2];		/* 'v' * (max + 1) */
static char ids[NBX_AUD_MAX + 1][NBX_RECID_MAX + 2];	/* 'a'+i repeated */

static void
fill(void)
{
	memset(big, 'v', sizeof(big));
	for (int i = 0; i <= NBX_AUD_MAX; i++)
		memset(ids[i], 'a' + i, sizeof(ids[i]));
}

static struct nbx_str
sl(const char *p, size_t n)
{
	return (struct nbx_str){ p, (uint32_t)n };
}

/* An ordinary change of kind k. */
static struct change
base(enum change_kind k)
{
	struct change c;

	memset(&c, 0, sizeof(c));
	c.kind = k;
	c.coll = NBX_STR("case");
	c.id = NBX_STR("ee:8f3a");
	c.hlc = HLC_MAKE(1700000000000ull, 5);
	c.origin = NBX_STR("ee");
	switch (k) {
	case CHANGE_FIELD:
		c.field = NBX_STR("status");
		c.val = (struct nbx_value){ .t = NBX_V_STR,
		    .s = NBX_STR("accepted") };
		c.aud.hlc = HLC_MAKE(1690000000000ull, 1);
		c.aud.origin = NBX_STR("ee");
		c.aud.n = 2;
		c.aud.ids[0] = NBX_STR("ee");
		c.aud.ids[1] = NBX_STR("lv");
		break;
	case CHANGE_ELEM:
		c.field = NBX_STR("languages");
		c.elem = NBX_STR("et");
		c.val = (struct nbx_value){ .t = NBX_V_BOOL, .i = 1 };
		break;
	case CHANGE_STATE:
		c.val = (struct nbx_value){ .t = NBX_V_INT, .i = REC_DELETED };
		break;
	case CHANGE_AUDIENCE:
		c.aud.hlc = c.hlc;
		c.aud.origin = c.origin;
		c.aud.n = 3;
		c.aud.ids[0] = NBX_STR("ee");
		c.aud.ids[1] = NBX_STR("lt");
		c.aud.ids[2] = NBX_STR("lv");
		break;
	case CHANGE_ERASE:
		break;
	case CHANGE_RECEIPT:
		c.field = NBX_STR("erase");
		c.elem = NBX_STR("lv");
		c.val = (struct nbx_value){ .t = NBX_V_INT, .i = RECEIPT_DONE };
		break;
	}
	return c;
}

/* Every string at its cap, a full audience, the greatest hlc. */
static struct change
maxed(enum change_kind k)
{
	struct change c = base(k);

	c.coll = sl(ids[0], NBX_NAME_MAX);
	c.id = sl(ids[1], NBX_RECID_MAX);
	c.origin = sl(ids[2], NBX_ID_MAX);
	c.hlc = UINT64_MAX;
	if (k == CHANGE_FIELD || k == CHANGE_ELEM)
		c.field = sl(ids[3], NBX_NAME_MAX);
	if (k == CHANGE_ELEM)
		c.elem = sl(big, NBX_STR_MAX);
	if (k == CHANGE_RECEIPT) {
		c.field = sl(ids[3], NBX_NAME_MAX);
		c.elem = sl(ids[5], NBX_ID_MAX);
	}
	if (k == CHANGE_FIELD)
		c.val = (struct nbx_value){ .t = NBX_V_STR,
		    .s = sl(big, NBX_STR_MAX) };
	if (k == CHANGE_FIELD || k == CHANGE_ELEM || k == CHANGE_AUDIENCE) {
		c.aud.hlc = k == CHANGE_AUDIENCE ? c.hlc : UINT64_MAX - 1;
		c.aud.origin = k == CHANGE_AUDIENCE ? c.origin :
		    sl(ids[4], NBX_ID_MAX);
		c.aud.n = NBX_AUD_MAX;
		for (int i = 0; i < NBX_AUD_MAX; i++)
			c.aud.ids[i] = sl(ids[i], NBX_ID_MAX);
	}
	return c;
}

static void
encode(const struct change *c, uint8_t **p, size_t *n)
{
	struct nbx_buf b;

	nbx_buf_init(&b, 1u << 20);
	cr_assert_eq(change_encode(c, &b), 0);
	cr_assert_leq(b.len, NBX_CHANGE_MAX);
	*p = b.p;
	*n = b.len;
}

static int
inside(struct nbx_str s, const uint8_t *p, size_t n)
{
	return s.n == 0 || ((const uint8_t *)s.p >= p &&
	    (const uint8_t *)s.p + s.n <= p + n);
}

/*
 * Whatever decode says about p[0..n) must be coherent: on success the
 * change re-encodes and decodes to itself with borrowed strings inside
 * the input; on failure a known code, *c zeroed, *used 0.
 */
static void
check_outcome(const uint8_t *p, size_t n, int r, const struct change *c,
    size_t used)
{
	static const struct change zero;
	struct change d;
	uint8_t *q;
	size_t m, used2;

	if (r != 0) {
		cr_assert(r == NBX_EAGAIN || r == NBX_ETOOBIG ||
		    r == NBX_EMALFORMED || r == NBX_EDEPTH, "rc %d", r);
		cr_assert_eq(memcmp(c, &zero, sizeof(zero)), 0);
		cr_assert_eq(used, 0);
		return;
	}
	cr_assert(used >= 1 && used <= n);
	cr_assert(inside(c->coll, p, used) && inside(c->id, p, used) &&
	    inside(c->field, p, used) && inside(c->elem, p, used) &&
	    inside(c->origin, p, used) && inside(c->val.s, p, used));
	encode(c, &q, &m);
	cr_assert_eq(change_decode(q, m, &d, &used2), 0);
	cr_assert_eq(used2, m);
	cr_assert(change_eq(c, &d));
	free(q);
}

/*
 * Decodes an exact-size heap copy, so that asan sees any over-read, and
 * checks the outcome.  The copy is freed: *c's strings dangle afterwards.
 */
static int
decode_copy(const uint8_t *p, size_t n, struct change *c, size_t *used)
{
	uint8_t *copy = malloc(n ? n : 1);
	int r;

	cr_assert_not_null(copy);
	memcpy(copy, p, n);
	memset(c, 0xa5, sizeof(*c));
	*used = 12345;
	r = change_decode(copy, n, c, used);
	check_outcome(copy, n, r, c, *used);
	free(copy);
	return r;
}

static void
roundtrip(const struct change *c)
{
	struct change d, e;
	uint8_t *p, *q;
	size_t n, m, used;

	encode(c, &p, &n);
	cr_assert_eq(decode_copy(p, n, &d, &used), 0);
	cr_assert_eq(change_decode(p, n, &d, &used), 0);
	cr_assert_eq(used, n);
	cr_assert(change_eq(c, &d), "kind %d", c->kind);
	/* msgpack-c does not copy strings: they point into the input. */
	cr_assert(inside(d.coll, p, n) && inside(d.id, p, n) &&
	    inside(d.origin, p, n) && inside(d.val.s, p, n) &&
	    inside(d.elem, p, n) && inside(d.aud.origin, p, n));
	for (uint32_t i = 0; i < d.aud.n; i++)
		cr_assert(inside(d.aud.ids[i], p, n));
	/* The encoder's output is canonical: re-encoding gives it back. */
	encode(&d, &q, &m);
	cr_assert_eq(m, n);
	cr_assert_eq(memcmp(p, q, n), 0);
	cr_assert_eq(change_decode(q, m, &e, &used), 0);
	free(p);
	free(q);
}

/* ------------------------------------------------------------------ */
/* Round trips                                                        */
/* ------------------------------------------------------------------ */

Test(change, roundtrip_every_kind, .init = fill)
{
	for (int k = CHANGE_FIELD; k <= CHANGE_RECEIPT; k++) {
		struct change c = base((enum change_kind)k);
		roundtrip(&c);
		c = maxed((enum change_kind)k);
		roundtrip(&c);
	}
}

Test(change, roundtrip_every_value, .init = fill)
{
	static const int64_t ints[] = { 0, 1, -1, 127, 128, -32, -33, 255,
	    256, 65535, 65536, -32768, -32769, INT32_MAX, INT32_MIN,
	    (int64_t)UINT32_MAX + 1, INT64_MAX, INT64_MIN };
	struct change c = base(CHANGE_FIELD);

	c.val = (struct nbx_value){ .t = NBX_V_NIL };
	roundtrip(&c);
	for (int b = 0; b <= 1; b++) {
		c.val = (struct nbx_value){ .t = NBX_V_BOOL, .i = b };
		roundtrip(&c);
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		c.val = (struct nbx_value){ .t = NBX_V_INT, .i = ints[i] };
		roundtrip(&c);
	}
	/* str lengths at each msgpack header boundary, and the cap */
	static const uint32_t lens[] = { 0, 1, 31, 32, 255, 256, 65535,
	    NBX_STR_MAX };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		c.val = (struct nbx_value){ .t = NBX_V_STR,
		    .s = sl(big, lens[i]) };
		roundtrip(&c);
	}
	/* a value without an audience; a removed set element; empty elem */
	memset(&c.aud, 0, sizeof(c.aud));
	roundtrip(&c);
	c = base(CHANGE_ELEM);
	c.val.i = 0;
	c.elem = sl(NULL, 0);
	roundtrip(&c);
	c = base(CHANGE_STATE);
	c.val.i = REC_LIVE;
	roundtrip(&c);
	c = base(CHANGE_AUDIENCE);
	c.aud.n = 0;
	roundtrip(&c);
	c = base(CHANGE_ERASE);
	c.hlc = 0;
	roundtrip(&c);
}

Test(change, audience_kind_takes_version_from_change, .init = fill)
{
	struct change c = base(CHANGE_AUDIENCE), d;
	uint8_t *p;
	size_t n, used;

	encode(&c, &p, &n);
	cr_assert_eq(change_decode(p, n, &d, &used), 0);
	cr_assert_eq(d.aud.hlc, c.hlc);
	cr_assert(nbx_str_eq(d.aud.origin, c.origin));
	cr_assert_eq(d.aud.n, 3);
	free(p);
}

Test(change, trailing_bytes_are_not_consumed, .init = fill)
{
	for (int k = CHANGE_FIELD; k <= CHANGE_RECEIPT; k++) {
		struct change c = base((enum change_kind)k), d;
		uint8_t *p, *q;
		size_t n, used;

		encode(&c, &p, &n);
		q = malloc(n + 7);
		memcpy(q, p, n);
		memcpy(q + n, "\xc1\xdd\xff\xff\xff\xff\x00", 7);
		cr_assert_eq(change_decode(q, n + 7, &d, &used), 0);
		cr_assert_eq(used, n);
		cr_assert(change_eq(&c, &d));
		free(p);
		free(q);
	}
}

/* ------------------------------------------------------------------ */
/* Encoder refusals                                                   */
/* ------------------------------------------------------------------ */

static void
refused(const struct change *c, const char *what)
{
	struct nbx_buf b;

	nbx_buf_init(&b, 1u << 20);
	cr_assert_eq(nbx_buf_append(&b, "abc", 3), 0);
	cr_assert_eq(change_encode(c, &b), NBX_EINVAL, "%s", what);
	cr_assert_eq(b.len, 3, "%s: output not restored", what);
	cr_assert_eq(memcmp(b.p, "abc", 3), 0);
	nbx_buf_fini(&b);
}

Test(change, encode_refuses_over_cap_fields, .init = fill)
{
	struct change c;

#define REFUSE(kind, stmt) do { c = maxed(kind); stmt; refused(&c, #stmt); \
	} while (0)
	REFUSE(CHANGE_FIELD, c.kind = 0);
	REFUSE(CHANGE_FIELD, c.kind = 7);
	REFUSE(CHANGE_RECEIPT, c.elem.n = 0);
	REFUSE(CHANGE_RECEIPT, c.elem.n = NBX_ID_MAX + 1);
	REFUSE(CHANGE_RECEIPT, c.val.t = NBX_V_STR);
	REFUSE(CHANGE_FIELD, c.coll.n = 0);
	REFUSE(CHANGE_FIELD, c.coll.n = NBX_NAME_MAX + 1);
	REFUSE(CHANGE_ERASE, c.coll.n = NBX_NAME_MAX + 1);
	REFUSE(CHANGE_FIELD, c.id.n = 0);
	REFUSE(CHANGE_FIELD, c.id.n = NBX_RECID_MAX + 1);
	REFUSE(CHANGE_FIELD, c.origin.n = 0);
	REFUSE(CHANGE_FIELD, c.origin.n = NBX_ID_MAX + 1);
	REFUSE(CHANGE_FIELD, c.field.n = 0);
	REFUSE(CHANGE_FIELD, c.field.n = NBX_NAME_MAX + 1);
	REFUSE(CHANGE_ELEM, c.field.n = 0);
	REFUSE(CHANGE_ELEM, c.field.n = NBX_NAME_MAX + 1);
	REFUSE(CHANGE_ELEM, c.elem.n = NBX_STR_MAX + 1);
	REFUSE(CHANGE_FIELD, c.val.s.n = NBX_STR_MAX + 1);
	REFUSE(CHANGE_FIELD, c.aud.n = NBX_AUD_MAX + 1);
	REFUSE(CHANGE_AUDIENCE, c.aud.n = NBX_AUD_MAX + 1);
	REFUSE(CHANGE_FIELD, c.aud.ids[5].n = 0);
	REFUSE(CHANGE_FIELD, c.aud.ids[5].n = NBX_ID_MAX + 1);
	REFUSE(CHANGE_AUDIENCE, c.aud.ids[0].n = NBX_ID_MAX + 1);
	REFUSE(CHANGE_FIELD, c.aud.origin.n = NBX_ID_MAX + 1);
	/* unsorted and duplicate audience ids */
	REFUSE(CHANGE_FIELD, c.aud.ids[3] = c.aud.ids[2]);
	REFUSE(CHANGE_AUDIENCE, c.aud.ids[0] = c.aud.ids[9]);
	/* members the kind does not use must be empty */
	REFUSE(CHANGE_FIELD, c.elem = NBX_STR("x"));
	REFUSE(CHANGE_STATE, c.field = NBX_STR("x"));
	REFUSE(CHANGE_STATE, c.aud.n = 1; c.aud.ids[0] = NBX_STR("ee"));
	REFUSE(CHANGE_ERASE, c.val.t = NBX_V_INT);
	REFUSE(CHANGE_ERASE, c.aud.hlc = 1);
	REFUSE(CHANGE_AUDIENCE, c.val.t = NBX_V_BOOL);
	REFUSE(CHANGE_AUDIENCE, c.elem = NBX_STR("x"));
	/* value type per kind */
	REFUSE(CHANGE_ELEM, c.val.t = NBX_V_INT);
	REFUSE(CHANGE_ELEM, c.val.t = NBX_V_NIL);
	REFUSE(CHANGE_STATE, c.val.t = NBX_V_BOOL);
	REFUSE(CHANGE_ELEM, c.val.i = 2);
	REFUSE(CHANGE_FIELD, c.val.t = (enum nbx_vtype)9);
	/* an AUDIENCE change's audience is stamped with its own version */
	REFUSE(CHANGE_AUDIENCE, c.aud.hlc = 1);
	REFUSE(CHANGE_AUDIENCE, c.aud.origin = NBX_STR("lv"));
	/* a length without bytes */
	REFUSE(CHANGE_FIELD, c.coll.p = NULL);
#undef REFUSE
	cr_assert_eq(change_encode(NULL, NULL), NBX_EINVAL);
}

Test(change, encode_restores_output_when_buffer_full, .init = fill)
{
	struct change c = maxed(CHANGE_FIELD);
	struct nbx_buf b;

	nbx_buf_init(&b, 1000);
	cr_assert_eq(nbx_buf_append(&b, "xy", 2), 0);
	cr_assert_eq(change_encode(&c, &b), NBX_ETOOBIG);
	cr_assert_eq(b.len, 2);
	c = base(CHANGE_ERASE);
	cr_assert_eq(change_encode(&c, &b), 0);
	cr_assert_gt(b.len, 2);
	nbx_buf_fini(&b);
}

/* ------------------------------------------------------------------ */
/* Truncation and corruption                                          */
/* ------------------------------------------------------------------ */

/*
 * Every proper prefix is NBX_EAGAIN.  Small encodings are decoded from an
 * exact-size copy each time; for the 64 KiB ones that is done near the
 * structure and at intervals, and every other prefix is decoded in place.
 */
static void
all_prefixes(const uint8_t *p, size_t n)
{
	struct change d;
	size_t used;

	for (size_t k = 0; k < n; k++) {
		int exact = n < 4096 || k < 512 || n - k < 512 ||
		    k % 1021 == 0;

		if (exact)
			cr_assert_eq(decode_copy(p, k, &d, &used), NBX_EAGAIN,
			    "prefix %zu of %zu", k, n);
		else
			cr_assert_eq(change_decode(p, k, &d, &used),
			    NBX_EAGAIN, "prefix %zu of %zu", k, n);
	}
}

Test(change, every_truncation_is_eagain, .init = fill)
{
	for (int k = CHANGE_FIELD; k <= CHANGE_RECEIPT; k++) {
		struct change c[2] = { base((enum change_kind)k),
		    maxed((enum change_kind)k) };

		for (int j = 0; j < 2; j++) {
			uint8_t *p;
			size_t n;

			encode(&c[j], &p, &n);
			all_prefixes(p, n);
			free(p);
		}
	}
}

/*
 * Sets each byte in [from, to) of an exact-size copy to every other value
 * (all 255 when `all`, else a set that hits every type and length class)
 * and checks each outcome.
 */
static void
corrupt_range(const uint8_t *p, size_t n, size_t from, size_t to, int all)
{
	static const uint8_t some[] = { 0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90,
	    0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc6, 0xc9, 0xcc,
	    0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde,
	    0xdf, 0xe0, 0xfe, 0xff };
	uint8_t *q = malloc(n);
	struct change d;
	size_t used;

	memcpy(q, p, n);
	for (size_t i = from; i < to && i < n; i++) {
		size_t nv = all ? 256 : sizeof(some) + 2;

		for (size_t j = 0; j < nv; j++) {
			uint8_t v = all ? (uint8_t)j : j < sizeof(some) ?
			    some[j] : (uint8_t)(p[i] ^ (j == sizeof(some) ?
			    0x01 : 0x10));
			int r;

			if (v == p[i])
				continue;
			q[i] = v;
			r = change_decode(q, n, &d, &used);
			check_outcome(q, n, r, &d, used);
		}
		q[i] = p[i];
	}
	free(q);
}

Test(change, every_single_byte_corruption, .init = fill)
{
	for (int k = CHANGE_FIELD; k <= CHANGE_RECEIPT; k++) {
		struct change c = base((enum change_kind)k);
		uint8_t *p;
		size_t n;

		/* every value at every position */
		encode(&c, &p, &n);
		corrupt_range(p, n, 0, n, 1);
		free(p);
		/* names at their caps, full audience: every position */
		c = maxed((enum change_kind)k);
		if (c.elem.n > 300)
			c.elem.n = 300;
		if (c.val.s.n > 300)
			c.val.s.n = 300;
		encode(&c, &p, &n);
		corrupt_range(p, n, 0, n, 0);
		free(p);

		/*
		 * 64 KiB values: the rest of the structure is as above, so
		 * the outer header, the str32 header and the bytes around
		 * it, a sample of the payload, and the end.
		 */
		c = maxed((enum change_kind)k);
		encode(&c, &p, &n);
		if (n > 4096) {
			const uint8_t *h = memmem(p, n, "\xdb\x00\x01\x00\x00",
			    5);
			size_t at;

			cr_assert_not_null(h);
			at = (size_t)(h - p);
			corrupt_range(p, n, 0, 1, 1);
			corrupt_range(p, n, at - 2, at + 8, 1);
			corrupt_range(p, n, n / 2, n / 2 + 2, 0);
			corrupt_range(p, n, n - 40, n, 0);
		}
		free(p);
	}
}

/* ------------------------------------------------------------------ */
/* Hostile input                                                      */
/* ------------------------------------------------------------------ */

struct hostile {
	const char *what;
	uint8_t b[128];
	size_t n;
	int want;
};

static struct hostile hostile[16];
static size_t nhostile;

static void
add_hostile(const char *what, const void *b, size_t n, int want)
{
	struct hostile *h = &hostile[nhostile++];

	h->what = what;
	memcpy(h->b, b, n);
	h->n = n;
	h->want = want;
}

static void
fill_hostile(void)
{
	uint8_t deep[100];

	fill();
	nhostile = 0;
	add_hostile("array32 of 4G", "\xdd\xff\xff\xff\xff", 5, NBX_ETOOBIG);
	add_hostile("array16 of 65535, nothing after", "\xdc\xff\xff", 3,
	    NBX_ETOOBIG);
	memset(deep, 0x91, sizeof(deep));
	add_hostile("100 nested arrays", deep, sizeof(deep), NBX_EDEPTH);
	add_hostile("str32 of 4 GiB", "\xdb\xff\xff\xff\xff", 5, NBX_ETOOBIG);
	add_hostile("bin32 of 4 GiB", "\xc6\xff\xff\xff\xff", 5, NBX_ETOOBIG);
	add_hostile("map32 of 4G pairs", "\xdf\xff\xff\xff\xff", 5,
	    NBX_ETOOBIG);
	add_hostile("ext32 of 4 GiB", "\xc9\xff\xff\xff\xff\x01", 6,
	    NBX_ETOOBIG);
	add_hostile("str32 inside a change", "\x96\x01\x05\xdb\xff\xff\xff\xff",
	    8, NBX_ETOOBIG);
	add_hostile("map16 inside a change", "\x96\x01\x05\xde\xff\xff", 6,
	    NBX_ETOOBIG);
	add_hostile("array16 of 17 ids", "\x97\x01\x04\xa1x\xa1y\x01\xa1z"
	    "\xdc\x00\x11", 13, NBX_ETOOBIG);
	add_hostile("never-used byte", "\xc1", 1, NBX_EMALFORMED);
	add_hostile("not an array", "\xc0", 1, NBX_EMALFORMED);
	add_hostile("array of no kind's arity", "\xdd\x00\x00\x00\x10", 5,
	    NBX_EMALFORMED);
}

#ifdef UNDER_ASAN
/* The asan runtime's allocation hooks, declared here for gcc and clang. */
int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t),
    void (*free_hook)(const volatile void *));

static volatile int tracking;
static volatile size_t alloc_bytes;

static void
on_malloc(const volatile void *p, size_t n)
{
	(void)p;
	if (tracking)
		alloc_bytes += n;
}

static void
on_free(const volatile void *p)
{
	(void)p;
}
#endif

/* Decodes each hostile input; returns the index of a failure, or -1. */
static int
run_hostile(void)
{
	for (size_t i = 0; i < nhostile; i++) {
		struct change d;
		size_t used;

		if (change_decode(hostile[i].b, hostile[i].n, &d, &used) !=
		    hostile[i].want || used != 0)
			return (int)i;
	}
	return -1;
}

/*
 * A decoder that trusted a declared count would ask for gigabytes (and
 * msgpack-c does, for whatever it is handed).  Under asan the allocation
 * hooks total what decode allocates; without it a child process decodes
 * under an address-space limit 64 MiB above its current size, after
 * proving that the limit refuses a 128 MiB allocation.  The time it
 * takes is reported, not asserted: it depends on the machine (and on
 * asan).
 */
Test(change, hostile_input_small_memory, .init = fill_hostile)
{
	struct timespec t0, t1;
	int bad;

	clock_gettime(CLOCK_MONOTONIC, &t0);
#ifdef UNDER_ASAN
	cr_assert_gt(__sanitizer_install_malloc_and_free_hooks(on_malloc,
	    on_free), 0);
	tracking = 1;
	bad = run_hostile();
	tracking = 0;
	cr_assert_eq(bad, -1, "%s", bad >= 0 ? hostile[bad].what : "");
	cr_assert_lt(alloc_bytes, 64 * 1024, "decode allocated %zu bytes",
	    (size_t)alloc_bytes);
#else
	pid_t pid = fork();
	int st;

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		FILE *f = fopen("/proc/self/statm", "r");
		unsigned long pages = 0;
		struct rlimit rl;
		void *m;

		if (f == NULL || fscanf(f, "%lu", &pages) != 1)
			_exit(90);
		fclose(f);
		rl.rlim_cur = rl.rlim_max = pages * (unsigned long)
		    sysconf(_SC_PAGESIZE) + (64ul << 20);
		if (setrlimit(RLIMIT_AS, &rl) != 0)
			_exit(91);
		if ((m = malloc(128ul << 20)) != NULL)
			_exit(92);	/* the limit would not catch anything */
		bad = run_hostile();
		_exit(bad < 0 ? 0 : 100 + bad);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "child died (signal %d)", WTERMSIG(st));
	bad = WEXITSTATUS(st) - 100;
	cr_assert_eq(WEXITSTATUS(st), 0, "exit %d %s", WEXITSTATUS(st),
	    bad >= 0 && (size_t)bad < nhostile ? hostile[bad].what : "");
#endif
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("%zu hostile inputs decoded in %ld ms", nhostile,
	    (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec -
	    t0.tv_nsec) / 1000000));
}

Test(change, hostile_codes, .init = fill_hostile)
{
	for (size_t i = 0; i < nhostile; i++) {
		struct change d;
		size_t used;

		cr_assert_eq(decode_copy(hostile[i].b, hostile[i].n, &d,
		    &used), hostile[i].want, "%s", hostile[i].what);
	}
}

Test(change, total_size_cap, .init = fill)
{
	/* [1, 2, str16 65535 (present), str16 65535]: past NBX_CHANGE_MAX */
	size_t n = 1 + 2 + 3 + 65535 + 3;
	uint8_t *p = malloc(n);
	struct change d;
	size_t used;

	memcpy(p, "\x9a\x01\x02\xda\xff\xff", 6);
	memset(p + 6, 'x', 65535);
	memcpy(p + 6 + 65535, "\xda\xff\xff", 3);
	cr_assert_eq(decode_copy(p, n, &d, &used), NBX_ETOOBIG);
	free(p);
}

Test(change, noncanonical_forms_decode_alike, .init = fill)
{
	struct change c = base(CHANGE_ERASE), d;
	uint8_t wide[64], *p;
	size_t n, used, o = 0;

	encode(&c, &p, &n);
	/* array16 header, uint8 version, int8 kind, then the same tail */
	memcpy(wide, "\xdc\x00\x06\xcc\x01\xd0\x05", 7);
	o = 7;
	memcpy(wide + o, p + 3, n - 3);
	o += n - 3;
	cr_assert_eq(decode_copy(wide, o, &d, &used), 0);
	cr_assert_eq(change_decode(wide, o, &d, &used), 0);
	cr_assert_eq(used, o);
	cr_assert(change_eq(&c, &d));
	all_prefixes(wide, o);
	free(p);
}

Test(change, null_arguments)
{
	struct change d;
	size_t used;

	cr_assert_eq(change_decode("\x90", 1, NULL, &used), NBX_EINVAL);
	cr_assert_eq(change_decode("\x90", 1, &d, NULL), NBX_EINVAL);
	cr_assert_eq(change_decode(NULL, 3, &d, &used), NBX_EINVAL);
	cr_assert_eq(change_decode(NULL, 0, &d, &used), NBX_EAGAIN);
}

/* ------------------------------------------------------------------ */
/* Fuzz corpus replay                                                 */
/* ------------------------------------------------------------------ */

Test(change, fuzz_corpus_replays_cleanly)
{
	DIR *dir = opendir(CORPUS_DIR);
	struct dirent *de;
	size_t files = 0, ok = 0;

	cr_assert_not_null(dir, "%s missing (run tests from the repo root)",
	    CORPUS_DIR);
	while ((de = readdir(dir)) != NULL) {
		char path[512];
		uint8_t *p;
		FILE *f;
		long n;
		struct change d;
		size_t used;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, de->d_name);
		cr_assert_not_null(f = fopen(path, "rb"), "%s", path);
		fseek(f, 0, SEEK_END);
		n = ftell(f);
		rewind(f);
		cr_assert(n >= 0 && n <= 1 << 20, "%s", path);
		p = malloc(n ? (size_t)n : 1);
		cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
		fclose(f);
		if (decode_copy(p, (size_t)n, &d, &used) == 0)
			ok++;
		free(p);
		files++;
	}
	closedir(dir);
	cr_assert_geq(files, 10, "only %zu corpus files", files);
	cr_assert_geq(ok, 5, "only %zu corpus files decode", ok);
}

/*
 * nbx_str_eq compares up to 16 bytes in overlapping loads: for every
 * length up to 40 (either side of each load width), equal bytes are
 * equal and one byte changed anywhere is not.  The strings sit at odd
 * offsets of separate buffers, so neither a shared pointer nor alignment
 * answers for the compare.
 */
Test(change, str_eq_sees_every_byte_at_every_length)
{
	char a[64], b[64];

	for (uint32_t n = 1; n <= 40; n++) {
		for (uint32_t i = 0; i < 64; i++)
			a[i] = b[i] = (char)('a' + (i * 7 + n) % 26);
		struct nbx_str x = { a + 3, n }, y = { b + 3, n };

		cr_assert(nbx_str_eq(x, y), "n %u: equal", n);
		for (uint32_t i = 0; i < n; i++) {
			b[3 + i] ^= 0x20;
			cr_assert(!nbx_str_eq(x, y), "n %u: byte %u differs",
			    n, i);
			b[3 + i] ^= 0x20;
		}
		/* bytes past the end do not count */
		b[3 + n] ^= 0x20;
		cr_assert(nbx_str_eq(x, y), "n %u: past the end", n);
		b[3 + n] ^= 0x20;
	}
}
