/*
 * mpwrite_test.c - the inline msgpack writers (proto/mpwrite.h) write the
 * same bytes as msgpack-c's packer at every boundary of every form, the
 * mpread cursor reads them back, and a buffer at its max stops the writer
 * with a sticky error.
 */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <string.h>

#include "mpbuf.h"
#include "mpread.h"
#include "mpwrite.h"
#include "nbx_err.h"

/* Bytes of one item written by msgpack-c (ref) and by mpwrite (got). */
struct pair {
	struct nbx_buf ref, got;
	msgpack_packer pk;
	struct mpwrite w;
};

static void
pair_init(struct pair *p)
{
	nbx_buf_init(&p->ref, 1 << 20);
	nbx_buf_init(&p->got, 1 << 20);
	nbx_mp_packer_init(&p->pk, &p->ref);
	mpwrite_init(&p->w, &p->got);
}

static void
pair_check(struct pair *p, const char *what, long long v)
{
	cr_assert_eq(p->w.err, 0, "%s %lld: error", what, v);
	cr_assert_eq(p->got.len, p->ref.len, "%s %lld: %zu bytes, msgpack-c "
	    "%zu", what, v, p->got.len, p->ref.len);
	cr_assert(memcmp(p->got.p, p->ref.p, p->ref.len) == 0,
	    "%s %lld: bytes differ", what, v);
	nbx_buf_fini(&p->ref);
	nbx_buf_fini(&p->got);
}

/* The boundaries of every integer form, and one step either side. */
static const int64_t edges[] = { 0, 31, 32, 127, 128, 255, 256, 65535,
    65536, 4294967295LL, 4294967296LL, INT64_MAX, -1, -31, -32, -33, -127,
    -128, -129, -32767, -32768, -32769, -2147483647LL, -2147483648LL,
    -2147483649LL, INT64_MIN };

Test(mpwrite, ints_match_msgpack_c)
{
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		struct pair p;
		struct mpread r;
		int64_t back;

		pair_init(&p);
		msgpack_pack_int64(&p.pk, edges[i]);
		mpwrite_int(&p.w, edges[i]);
		r = (struct mpread){ p.got.p, p.got.len, 0 };
		cr_assert_eq(mpread_i64(&r, &back), 0);
		cr_assert_eq(back, edges[i]);
		cr_assert_eq(r.off, p.got.len);
		pair_check(&p, "int64", (long long)edges[i]);
	}
}

Test(mpwrite, uints_match_msgpack_c)
{
	const uint64_t more[] = { UINT64_MAX, (uint64_t)INT64_MAX + 1 };

	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]) + 2; i++) {
		uint64_t v = i < sizeof(edges) / sizeof(edges[0]) ?
		    (uint64_t)edges[i] : more[i - sizeof(edges) / sizeof(edges[0])];
		struct pair p;
		struct mpread r;
		uint64_t back;

		pair_init(&p);
		msgpack_pack_uint64(&p.pk, v);
		mpwrite_uint(&p.w, v);
		r = (struct mpread){ p.got.p, p.got.len, 0 };
		cr_assert_eq(mpread_u64(&r, &back), 0);
		cr_assert_eq(back, v);
		pair_check(&p, "uint64", (long long)v);
	}
}

/* Every short length, each byte different: the copy of mpwrite_str. */
Test(mpwrite, short_strings_byte_for_byte)
{
	char text[48];

	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (char)('A' + i);
	for (uint32_t n = 0; n <= 40; n++) {
		struct nbx_str s = { n ? text + 3 : NULL, n };
		struct pair p;

		pair_init(&p);
		nbx_mp_pack_str(&p.pk, s);
		mpwrite_str(&p.w, s);
		pair_check(&p, "short str", n);
	}
}

Test(mpwrite, strings_and_arrays_match_msgpack_c)
{
	static char text[70000];
	const uint32_t lens[] = { 0, 1, 31, 32, 255, 256, 65535, 65536, 69999 };

	memset(text, 'x', sizeof(text));
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct nbx_str s = { lens[i] ? text : NULL, lens[i] }, back;
		struct pair p;
		struct mpread r;
		uint32_t n;

		pair_init(&p);
		nbx_mp_pack_str(&p.pk, s);
		msgpack_pack_array(&p.pk, lens[i]);
		mpwrite_str(&p.w, s);
		mpwrite_array(&p.w, lens[i]);
		r = (struct mpread){ p.got.p, p.got.len, 0 };
		cr_assert_eq(mpread_str(&r, 0, 70000, &back), 0);
		cr_assert_eq(back.n, lens[i]);
		cr_assert_eq(mpread_array(&r, &n), 0);
		cr_assert_eq(n, lens[i]);
		cr_assert_eq(r.off, p.got.len);
		pair_check(&p, "str/array", lens[i]);
	}
}

Test(mpwrite, bins_and_raw_bytes_match_msgpack_c)
{
	static char bytes[70000];
	const uint32_t lens[] = { 0, 1, 32, 255, 256, 65535, 65536, 69999 };

	memset(bytes, 0xab, sizeof(bytes));
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct pair p;
		struct nbx_buf split;
		struct mpwrite w;
		struct mpread r;
		const uint8_t *back;
		uint32_t n;

		pair_init(&p);
		msgpack_pack_bin(&p.pk, lens[i]);
		msgpack_pack_bin_body(&p.pk, bytes, lens[i]);
		msgpack_pack_nil(&p.pk);
		mpwrite_bin(&p.w, bytes, lens[i]);
		mpwrite_raw(&p.w, "\xc0", 1);
		r = (struct mpread){ p.got.p, p.got.len, 0 };
		cr_assert_eq(mpread_bin(&r, 0, 70000, &back, &n), 0);
		cr_assert_eq(n, lens[i]);
		cr_assert(n == 0 || (back == p.got.p + p.got.len - 1 - n &&
		    memcmp(back, bytes, n) == 0));
		cr_assert(mpread_nil(&r) && r.off == p.got.len);
		/* the header alone, then the body in two pieces */
		nbx_buf_init(&split, 1 << 20);
		mpwrite_init(&w, &split);
		mpwrite_bin_head(&w, lens[i]);
		mpwrite_raw(&w, bytes, lens[i] / 2);
		mpwrite_raw(&w, bytes + lens[i] / 2, lens[i] - lens[i] / 2);
		mpwrite_nil(&w);
		cr_assert(w.err == 0 && split.len == p.got.len &&
		    memcmp(split.p, p.got.p, split.len) == 0);
		nbx_buf_fini(&split);
		/* a narrower allowed length, or one byte short, is refused */
		r = (struct mpread){ p.got.p, p.got.len - 2, 0 };
		cr_assert_eq(mpread_bin(&r, 0, 70000, &back, &n),
		    NBX_EMALFORMED);
		cr_assert_eq(r.off, 0);
		r = (struct mpread){ p.got.p, p.got.len, 0 };
		if (lens[i] > 0)
			cr_assert_eq(mpread_bin(&r, 0, lens[i] - 1, &back, &n),
			    NBX_EMALFORMED);
		cr_assert_eq(mpread_bin(&r, lens[i] + 1, 70000, &back, &n),
		    NBX_EMALFORMED);
		cr_assert_eq(r.off, 0);
		pair_check(&p, "bin", lens[i]);
	}
}

Test(mpwrite, scalars_match_msgpack_c)
{
	struct pair p;

	pair_init(&p);
	msgpack_pack_nil(&p.pk);
	msgpack_pack_true(&p.pk);
	msgpack_pack_false(&p.pk);
	mpwrite_nil(&p.w);
	mpwrite_bool(&p.w, 1);
	mpwrite_bool(&p.w, 0);
	pair_check(&p, "nil/true/false", 0);
}

Test(mpwrite, full_buffer_is_a_sticky_error)
{
	struct nbx_buf b;
	struct mpwrite w;

	nbx_buf_init(&b, 4);
	mpwrite_init(&w, &b);
	mpwrite_uint(&w, 1);
	mpwrite_str(&w, NBX_STR("abcd"));	/* 5 bytes: no room */
	cr_assert_eq(w.err, NBX_ETOOBIG);
	mpwrite_uint(&w, 2);			/* would fit, but the error sticks */
	cr_assert_eq(b.len, 1);
	cr_assert_eq(b.p[0], 1);
	nbx_buf_fini(&b);
}

Test(mpread, refuses_short_and_wrong_items_without_moving)
{
	const uint8_t cut[] = { 0xcd, 0x01 };		/* uint16, one byte */
	const uint8_t neg[] = { 0xd0, 0x80 };		/* int8 -128 */
	const uint8_t big[] = { 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff };				/* uint64 max */
	const uint8_t str[] = { 0xa5, 'a', 'b' };	/* fixstr 5, 2 bytes */
	struct mpread r;
	uint64_t u;
	int64_t i;
	struct nbx_str s;

	r = (struct mpread){ cut, sizeof(cut), 0 };
	cr_assert_eq(mpread_u64(&r, &u), NBX_EMALFORMED);
	cr_assert_eq(r.off, 0);
	r = (struct mpread){ neg, sizeof(neg), 0 };
	cr_assert_eq(mpread_u64(&r, &u), NBX_EMALFORMED);
	cr_assert_eq(r.off, 0);
	cr_assert_eq(mpread_i64(&r, &i), 0);
	cr_assert_eq(i, -128);
	r = (struct mpread){ big, sizeof(big), 0 };
	cr_assert_eq(mpread_i64(&r, &i), NBX_EMALFORMED);
	cr_assert_eq(r.off, 0);
	r = (struct mpread){ str, sizeof(str), 0 };
	cr_assert_eq(mpread_str(&r, 0, 100, &s), NBX_EMALFORMED);
	cr_assert_eq(r.off, 0);
}
