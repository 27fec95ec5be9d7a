/*
 * change_fuzz.c - libFuzzer harness for the change codec and the msgpack
 * validator under it.
 *
 * For every input: change_decode must either fail cleanly (a known code,
 * the change zeroed, nothing consumed) or succeed with strings inside the
 * input, with the same verdict, length and change as the reference
 * decoder (change_decode_ref); a decoded change must re-encode, decode to an equal change, and
 * re-encode to the same bytes; and every proper prefix of the canonical
 * encoding must be NBX_EAGAIN.  Independently, whenever mpscan accepts the
 * input under wide limits, msgpack-c must unpack exactly as many bytes.
 * Any violation aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "fuzz_common.h"

#include "change.h"
#include "mpscan.h"
#include "nbx_err.h"

static const struct mpscan_limits change_wide = {
	.max_depth = 32,
	.max_str = 1u << 20,
	.max_count = 1u << 12,
	.max_objects = 1u << 14,
	.max_size = 1u << 24,
};

/* A violated property aborts, which libFuzzer reports as a crash. */
#define check(cond)	fz_check((cond), #cond)

static void
change_scan_vs_msgpack(const uint8_t *data, size_t size)
{
	msgpack_unpacked up;
	size_t n = 0, off = 0;
	int r = mpscan_object(data, size, &change_wide, &n);

	check(r == 0 || r == NBX_EAGAIN || r == NBX_EMALFORMED ||
	    r == NBX_ETOOBIG || r == NBX_EDEPTH);
	if (r != 0)
		return;
	check(n >= 1 && n <= size);
	msgpack_unpacked_init(&up);
	check(msgpack_unpack_next(&up, (const char *)data, size, &off) ==
	    MSGPACK_UNPACK_SUCCESS);
	check(off == n);
	msgpack_unpacked_destroy(&up);
}

int nbx_fuzz_change(const uint8_t *data, size_t size);

int
nbx_fuzz_change(const uint8_t *data, size_t size)
{
	static const struct change zero;
	struct change a, b, c;
	struct nbx_buf e1, e2;
	size_t used = 1, used2;
	int r;

	change_scan_vs_msgpack(data, size);

	r = change_decode(data, size, &a, &used);
	/*
	 * change_decode's one-pass reader and the reference decoder
	 * (mpscan + msgpack-c) must agree on every input: the same code,
	 * the same length, the same change.
	 */
	{
		struct change ref;
		size_t used_ref = 1;
		int r_ref = change_decode_ref(data, size, &ref, &used_ref);

		check(r_ref == r && used_ref == used);
		check(r != 0 || (change_eq(&a, &ref) && a.val.t == ref.val.t));
	}
	if (r != 0) {
		check(r == NBX_EAGAIN || r == NBX_EMALFORMED ||
		    r == NBX_ETOOBIG || r == NBX_EDEPTH);
		check(used == 0 && memcmp(&a, &zero, sizeof(a)) == 0);
		return 0;
	}
	check(used >= 1 && used <= size && used <= NBX_CHANGE_MAX);
	check(fz_inside(a.coll, data, used) &&
	    fz_inside(a.id, data, used) &&
	    fz_inside(a.origin, data, used) &&
	    fz_inside(a.field, data, used) &&
	    fz_inside(a.elem, data, used) &&
	    fz_inside(a.val.s, data, used) &&
	    fz_inside(a.aud.origin, data, used));
	for (uint32_t i = 0; i < a.aud.n; i++)
		check(fz_inside(a.aud.ids[i], data, used));

	nbx_buf_init(&e1, NBX_CHANGE_MAX);
	nbx_buf_init(&e2, NBX_CHANGE_MAX);
	check(change_encode(&a, &e1) == 0);
	check(change_decode(e1.p, e1.len, &b, &used2) == 0);
	check(used2 == e1.len);
	check(change_eq(&a, &b) && change_eq(&b, &a));
	check(change_encode(&b, &e2) == 0);
	check(e2.len == e1.len && memcmp(e1.p, e2.p, e1.len) == 0);

	/* A few prefixes of the canonical form; all of them when short. */
	for (size_t k = 0; k < e1.len; k++) {
		if (e1.len > 256 && k > 64 && e1.len - k > 64)
			k = e1.len - 64;
		check(change_decode(e1.p, k, &c, &used2) == NBX_EAGAIN);
	}
	nbx_buf_fini(&e1);
	nbx_buf_fini(&e2);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_change(data, size);
}
#endif

#undef check
