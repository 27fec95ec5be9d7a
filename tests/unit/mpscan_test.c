/*
 * mpscan_test.c - the msgpack validator on its own: the size of every
 * type's encoding, each limit exactly at and one past its cap, hostile
 * headers, and a differential property test against msgpack-c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <msgpack.h>

#include "mpscan.h"
#include "nbx_err.h"
#include "testlib.h"

static const struct mpscan_limits wide = {
	.max_depth = 16,
	.max_str = 1u << 20,
	.max_count = 1u << 20,
	.max_objects = 1u << 20,
	.max_size = 16u << 20,
};

/* Scans an exact-size heap copy, so that asan sees any over-read. */
static int
scan(const void *p, size_t n, const struct mpscan_limits *lim, size_t *size)
{
	void *copy = malloc(n ? n : 1);
	int r;

	cr_assert_not_null(copy);
	if (n)
		memcpy(copy, p, n);
	r = mpscan_object(copy, n, lim, size);
	free(copy);
	return r;
}

#define B(...)	((const uint8_t[]){ __VA_ARGS__ })

struct sized {
	const char *what;
	const uint8_t *p;
	size_t n;
};

#define S(w, ...) { w, B(__VA_ARGS__), sizeof(B(__VA_ARGS__)) }

static const struct sized types[] = {
	S("pos fixint 0", 0x00), S("pos fixint 127", 0x7f),
	S("neg fixint -32", 0xe0), S("neg fixint -1", 0xff),
	S("nil", 0xc0), S("false", 0xc2), S("true", 0xc3),
	S("uint8", 0xcc, 0xff), S("uint16", 0xcd, 1, 2),
	S("uint32", 0xce, 1, 2, 3, 4),
	S("uint64", 0xcf, 1, 2, 3, 4, 5, 6, 7, 8),
	S("int8", 0xd0, 0x80), S("int16", 0xd1, 1, 2),
	S("int32", 0xd2, 1, 2, 3, 4),
	S("int64", 0xd3, 1, 2, 3, 4, 5, 6, 7, 8),
	S("float32", 0xca, 0x3f, 0x80, 0, 0),
	S("float64", 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0),
	S("fixstr 0", 0xa0), S("fixstr 3", 0xa3, 'a', 'b', 'c'),
	S("fixstr 31", 0xbf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
	    31),
	S("str8", 0xd9, 3, 'a', 'b', 'c'),
	S("str16", 0xda, 0, 3, 'a', 'b', 'c'),
	S("str32", 0xdb, 0, 0, 0, 3, 'a', 'b', 'c'),
	S("bin8", 0xc4, 3, 1, 2, 3), S("bin16", 0xc5, 0, 3, 1, 2, 3),
	S("bin32", 0xc6, 0, 0, 0, 3, 1, 2, 3),
	S("fixext1", 0xd4, 7, 1), S("fixext2", 0xd5, 7, 1, 2),
	S("fixext4", 0xd6, 7, 1, 2, 3, 4),
	S("fixext8", 0xd7, 7, 1, 2, 3, 4, 5, 6, 7, 8),
	S("fixext16", 0xd8, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
	    14, 15, 16),
	S("ext8", 0xc7, 3, 7, 1, 2, 3), S("ext16", 0xc8, 0, 3, 7, 1, 2, 3),
	S("ext32", 0xc9, 0, 0, 0, 3, 7, 1, 2, 3),
	S("ext8 empty", 0xc7, 0, 7),
	S("fixarray 0", 0x90), S("fixmap 0", 0x80),
	S("fixarray 2", 0x92, 0x01, 0xc0),
	S("fixmap 2", 0x82, 0x01, 0x02, 0xa1, 'k', 0x90),
	S("array16", 0xdc, 0, 2, 0x01, 0x02),
	S("array32", 0xdd, 0, 0, 0, 2, 0x01, 0x02),
	S("map16", 0xde, 0, 1, 0x01, 0x02),
	S("map32", 0xdf, 0, 0, 0, 1, 0x01, 0x02),
	S("nested", 0x93, 0x91, 0x90, 0x81, 0xa0, 0x92, 0xc0, 0xc3, 0x05),
};

Test(mpscan, every_type_size_prefix_and_trailing)
{
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		const struct sized *s = &types[t];
		uint8_t buf[64];
		size_t size = 99;

		cr_assert_eq(scan(s->p, s->n, &wide, &size), 0, "%s", s->what);
		cr_assert_eq(size, s->n, "%s: size %zu", s->what, size);
		for (size_t k = 0; k < s->n; k++) {
			cr_assert_eq(scan(s->p, k, &wide, &size), NBX_EAGAIN,
			    "%s: prefix %zu", s->what, k);
			cr_assert_eq(size, 0);
		}
		/* Trailing bytes, even invalid ones, are not looked at. */
		memcpy(buf, s->p, s->n);
		memset(buf + s->n, 0xc1, 4);
		cr_assert_eq(scan(buf, s->n + 4, &wide, &size), 0);
		cr_assert_eq(size, s->n, "%s with trailing bytes", s->what);
	}
}

Test(mpscan, never_used_byte)
{
	size_t size;

	cr_assert_eq(scan(B(0xc1), 1, &wide, &size), NBX_EMALFORMED);
	cr_assert_eq(scan(B(0x92, 0x01, 0xc1), 3, &wide, &size),
	    NBX_EMALFORMED);
	cr_assert_eq(scan(B(0x81, 0xc1, 0x01), 3, &wide, &size),
	    NBX_EMALFORMED);
	cr_assert_eq(size, 0);
}

Test(mpscan, bad_arguments)
{
	size_t size = 7;

	cr_assert_eq(mpscan_object(NULL, 0, &wide, &size), NBX_EAGAIN);
	cr_assert_eq(mpscan_object(NULL, 1, &wide, &size), NBX_EINVAL);
	cr_assert_eq(mpscan_object(B(0xc0), 1, NULL, &size), NBX_EINVAL);
	cr_assert_eq(mpscan_object(B(0xc0), 1, &wide, NULL), NBX_EINVAL);
}

static int
nested(size_t arrays, int empty_last, uint32_t max_depth, size_t *size)
{
	uint8_t buf[200];
	struct mpscan_limits lim = wide;
	size_t n = 0;

	lim.max_depth = max_depth;
	for (size_t i = 0; i < arrays; i++)
		buf[n++] = (empty_last && i == arrays - 1) ? 0x90 : 0x91;
	if (!empty_last)
		buf[n++] = 0xc0;
	return scan(buf, n, &lim, size);
}

Test(mpscan, depth_at_and_past_cap)
{
	size_t size;

	cr_assert_eq(nested(3, 0, 3, &size), 0);
	cr_assert_eq(size, 4);
	cr_assert_eq(nested(4, 0, 3, &size), NBX_EDEPTH);
	/* An empty container is as deep as a full one. */
	cr_assert_eq(nested(3, 1, 3, &size), 0);
	cr_assert_eq(nested(4, 1, 3, &size), NBX_EDEPTH);
	/* Depth 0: scalars only. */
	cr_assert_eq(scan(B(0xc0), 1, &(struct mpscan_limits){ .max_depth = 0,
	    .max_objects = 1, .max_size = 1 }, &size), 0);
	cr_assert_eq(nested(1, 1, 0, &size), NBX_EDEPTH);
	/* Deep nesting is refused on the header, before the rest arrives. */
	cr_assert_eq(nested(100, 0, 4, &size), NBX_EDEPTH);
	/* The stack is fixed: caps above it act as MPSCAN_DEPTH_LIMIT. */
	cr_assert_eq(nested(MPSCAN_DEPTH_LIMIT, 0, 1000, &size), 0);
	cr_assert_eq(nested(MPSCAN_DEPTH_LIMIT + 1, 0, 1000, &size),
	    NBX_EDEPTH);
}

Test(mpscan, depth_counts_open_containers_only)
{
	/* [[1], [2], [3]] is depth 2 however many siblings it has. */
	const uint8_t *p = B(0x93, 0x91, 0x01, 0x91, 0x02, 0x91, 0x03);
	struct mpscan_limits lim = wide;
	size_t size;

	lim.max_depth = 2;
	cr_assert_eq(scan(p, 7, &lim, &size), 0);
	cr_assert_eq(size, 7);
	lim.max_depth = 1;
	cr_assert_eq(scan(p, 7, &lim, &size), NBX_EDEPTH);
}

Test(mpscan, str_bin_ext_cap)
{
	struct mpscan_limits lim = wide;
	size_t size;

	lim.max_str = 3;
	cr_assert_eq(scan(B(0xa3, 'a', 'b', 'c'), 4, &lim, &size), 0);
	cr_assert_eq(scan(B(0xa4, 'a', 'b', 'c', 'd'), 5, &lim, &size),
	    NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xc4, 4), 2, &lim, &size), NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xc7, 4, 1), 3, &lim, &size), NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xd6, 1), 2, &lim, &size), NBX_ETOOBIG);
	lim.max_str = 16;
	cr_assert_eq(scan(B(0xd8, 1), 2, &lim, &size), NBX_EAGAIN);
	lim.max_str = 15;
	cr_assert_eq(scan(B(0xd8, 1), 2, &lim, &size), NBX_ETOOBIG);
}

Test(mpscan, count_and_object_caps)
{
	struct mpscan_limits lim = wide;
	size_t size;

	lim.max_count = 2;
	cr_assert_eq(scan(B(0x92, 1, 2), 3, &lim, &size), 0);
	cr_assert_eq(scan(B(0x93), 1, &lim, &size), NBX_ETOOBIG);
	/* Maps count pairs. */
	cr_assert_eq(scan(B(0x82, 1, 2, 3, 4), 5, &lim, &size), 0);
	cr_assert_eq(scan(B(0x83), 1, &lim, &size), NBX_ETOOBIG);

	lim = wide;
	lim.max_objects = 3;		/* [1, 2] and {1: 2} are 3 objects */
	cr_assert_eq(scan(B(0x92, 1, 2), 3, &lim, &size), 0);
	cr_assert_eq(scan(B(0x81, 1, 2), 3, &lim, &size), 0);
	cr_assert_eq(scan(B(0x93), 1, &lim, &size), NBX_ETOOBIG);
	cr_assert_eq(scan(B(0x92, 0x91), 2, &lim, &size), NBX_ETOOBIG);
}

Test(mpscan, size_cap_refuses_what_cannot_fit)
{
	struct mpscan_limits lim = wide;
	size_t size;

	/* [1, 2] is 3 bytes. */
	lim.max_size = 3;
	cr_assert_eq(scan(B(0x92, 1, 2), 3, &lim, &size), 0);
	lim.max_size = 2;
	cr_assert_eq(scan(B(0x92), 1, &lim, &size), NBX_ETOOBIG);
	/* A string that cannot fit, refused before its bytes come. */
	lim.max_size = 5;
	cr_assert_eq(scan(B(0xa5, 'a'), 2, &lim, &size), NBX_ETOOBIG);
	lim.max_size = 6;
	cr_assert_eq(scan(B(0xa5, 'a'), 2, &lim, &size), NBX_EAGAIN);
	/* Elements still owed by outer containers count too. */
	lim.max_size = 4;
	cr_assert_eq(scan(B(0x92, 0xa2), 2, &lim, &size), NBX_ETOOBIG);
	lim.max_size = 5;
	cr_assert_eq(scan(B(0x92, 0xa2), 2, &lim, &size), NBX_EAGAIN);
	lim.max_size = 0;
	cr_assert_eq(scan(B(0xc0), 1, &lim, &size), NBX_ETOOBIG);
}

Test(mpscan, hostile_headers)
{
	size_t size;
	struct mpscan_limits exact = wide;

	cr_assert_eq(scan(B(0xdd, 0xff, 0xff, 0xff, 0xff), 5, &wide, &size),
	    NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xdf, 0xff, 0xff, 0xff, 0xff), 5, &wide, &size),
	    NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xdb, 0xff, 0xff, 0xff, 0xff), 5, &wide, &size),
	    NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xc6, 0xff, 0xff, 0xff, 0xff), 5, &wide, &size),
	    NBX_ETOOBIG);
	cr_assert_eq(scan(B(0xc9, 0xff, 0xff, 0xff, 0xff, 1), 6, &wide,
	    &size), NBX_ETOOBIG);
	/*
	 * 65535 elements fit the wide caps, so with nothing after the header
	 * this is a prefix; once the caller says the object ends here
	 * (max_size = len, as for a frame body) it can never fit.
	 */
	cr_assert_eq(scan(B(0xdc, 0xff, 0xff), 3, &wide, &size), NBX_EAGAIN);
	exact.max_size = 3;
	cr_assert_eq(scan(B(0xdc, 0xff, 0xff), 3, &exact, &size),
	    NBX_ETOOBIG);
	/* A map of 2^30 pairs: 2n objects, no wrap anywhere. */
	exact = wide;
	exact.max_count = UINT32_MAX;
	exact.max_objects = UINT32_MAX;
	exact.max_size = SIZE_MAX;
	cr_assert_eq(scan(B(0xdf, 0x40, 0, 0, 0), 5, &exact, &size),
	    NBX_EAGAIN);
	exact.max_size = 1u << 30;
	cr_assert_eq(scan(B(0xdf, 0x40, 0, 0, 0), 5, &exact, &size),
	    NBX_ETOOBIG);
}

/* ------------------------------------------------------------------ */
/* Property: mpscan agrees with msgpack-c on random objects.           */
/* ------------------------------------------------------------------ */

static uint64_t rng;

static uint32_t
rnd(uint32_t n)
{
	return (uint32_t)(test_xorshift(&rng) % n);
}

static void
gen(msgpack_packer *pk, int depth)
{
	static const char junk[300];

	switch (rnd(depth < 4 ? 12 : 10)) {
	case 0: msgpack_pack_nil(pk); break;
	case 1: msgpack_pack_true(pk); break;
	case 2: msgpack_pack_uint64(pk, rng >> rnd(64)); break;
	case 3: msgpack_pack_int64(pk, -(int64_t)(rng >> (1 + rnd(63))));
		break;
	case 4: msgpack_pack_float(pk, 1.5f); break;
	case 5: msgpack_pack_double(pk, 2.5); break;
	case 6: {
		size_t n = rnd(300);
		msgpack_pack_str_with_body(pk, junk, n);
		break;
	}
	case 7: {
		size_t n = rnd(300);
		msgpack_pack_bin_with_body(pk, junk, n);
		break;
	}
	case 8: {
		size_t n = rnd(3) ? (size_t)1 << rnd(5) : rnd(300);
		msgpack_pack_ext_with_body(pk, junk, n, 5);
		break;
	}
	case 9: msgpack_pack_int64(pk, (int64_t)rnd(200) - 100); break;
	case 10: {
		uint32_t n = rnd(3) ? rnd(6) : rnd(40);
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++)
			gen(pk, depth + 1);
		break;
	}
	default: {
		uint32_t n = rnd(5);
		msgpack_pack_map(pk, n);
		for (uint32_t i = 0; i < 2 * n; i++)
			gen(pk, depth + 1);
		break;
	}
	}
}

Test(mpscan, property_agrees_with_msgpack_c)
{
	uint64_t seed = 0x6e6278u;	/* fixed: failures reproduce */
	msgpack_sbuffer sb;
	msgpack_packer pk;

	printf("seed: mpscan property 0x%llx, 2000 objects\n",
	    (unsigned long long)seed);
	rng = seed;
	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < 2000; i++) {
		msgpack_unpacked up;
		size_t size, off = 0;

		msgpack_sbuffer_clear(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		gen(&pk, 0);
		cr_assert_eq(scan(sb.data, sb.size, &wide, &size), 0,
		    "object %d", i);
		cr_assert_eq(size, sb.size, "object %d", i);
		msgpack_unpacked_init(&up);
		cr_assert_eq(msgpack_unpack_next(&up, sb.data, sb.size, &off),
		    MSGPACK_UNPACK_SUCCESS);
		cr_assert_eq(off, size);
		msgpack_unpacked_destroy(&up);
		/* A handful of prefixes per object; every one is short. */
		for (int j = 0; j < 8; j++) {
			size_t k = rnd((uint32_t)sb.size);
			cr_assert_eq(scan(sb.data, k, &wide, &size),
			    NBX_EAGAIN, "object %d prefix %zu", i, k);
		}
	}
	msgpack_sbuffer_destroy(&sb);
}

Test(mpscan, property_random_bytes_never_disagree)
{
	uint64_t seed = 0x5ca11u;
	struct mpscan_limits lim = {
		.max_depth = 8, .max_str = 64, .max_count = 16,
		.max_objects = 256, .max_size = 256,
	};

	printf("seed: mpscan random bytes 0x%llx, 200000 inputs\n",
	    (unsigned long long)seed);
	rng = seed;
	for (int i = 0; i < 200000; i++) {
		uint8_t buf[32];
		size_t n = 1 + rnd(sizeof(buf)), size, off = 0;
		msgpack_unpacked up;
		int r;

		for (size_t j = 0; j < n; j++)
			buf[j] = (uint8_t)(rnd(2) ? 0x80 + rnd(0x80) :
			    rnd(0x100));
		r = scan(buf, n, &lim, &size);
		cr_assert(r == 0 || r == NBX_EAGAIN || r == NBX_EMALFORMED ||
		    r == NBX_ETOOBIG || r == NBX_EDEPTH);
		if (r != 0)
			continue;
		/* Only validated bytes reach msgpack-c. */
		msgpack_unpacked_init(&up);
		cr_assert_eq(msgpack_unpack_next(&up, (const char *)buf, n,
		    &off), MSGPACK_UNPACK_SUCCESS, "input %d", i);
		cr_assert_eq(off, size, "input %d: %zu vs %zu", i, off, size);
		msgpack_unpacked_destroy(&up);
	}
}
