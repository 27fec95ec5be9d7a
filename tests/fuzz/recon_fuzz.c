/*
 * recon_fuzz.c - libFuzzer harness for range-based set reconciliation
 * (proto/recon.h): the input is a message from a peer, answered against
 * a set of FZ_RECON_BIG items and one of FZ_RECON_SMALL (fz_recon_items).
 *
 * Checked, besides the sanitizers: only the documented codes come back;
 * a refused message has called no callback and left out as it was; an
 * accepted one names each kh at most once per callback, in kh order,
 * sends only kh the set holds, and its reply is a valid message (the
 * other set answers it without NBX_EMALFORMED) or nothing at all when
 * done; and answering the same message again gives the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "recon.h"

struct rfz_seen {
	const struct recon_set *s;
	uint64_t last_send, last_want;
	int nsend, nwant;
};

static struct recon_item rfz_big[FZ_RECON_BIG + 1];
static struct recon_item rfz_small[FZ_RECON_SMALL + 1];
static struct recon_set rfz_sets[2];

/* Both sets, made on first use and kept for the process. */
static void
rfz_ready(void)
{
	size_t n;

	if (rfz_sets[0].blk != NULL)
		return;
	n = fz_recon_items(rfz_big, FZ_RECON_BIG, 0);
	fz_check(recon_set_init(&rfz_sets[0], rfz_big, n) == 0, "big set");
	n = fz_recon_items(rfz_small, FZ_RECON_SMALL, 0);
	fz_check(recon_set_init(&rfz_sets[1], rfz_small, n) == 0,
	    "small set");
}

static int
rfz_send(void *arg, uint64_t kh)
{
	struct rfz_seen *x = arg;

	fz_check(x->nsend == 0 || kh > x->last_send, "send in kh order, once");
	fz_check(recon_set_has(x->s, kh), "send names a kh we hold");
	x->last_send = kh;
	x->nsend++;
	return 0;
}

static int
rfz_want(void *arg, uint64_t kh)
{
	struct rfz_seen *x = arg;

	fz_check(x->nwant == 0 || kh > x->last_want, "want in kh order, once");
	x->last_want = kh;
	x->nwant++;
	return 0;
}

static void
rfz_answer(const struct recon_set *s, const struct recon_set *other,
    const uint8_t *data, size_t size)
{
	struct rfz_seen seen = { .s = s };
	struct recon_diff d = { rfz_send, rfz_want, &seen };
	struct nbx_buf out, again, check;
	int done = 7, done2, rc;

	nbx_buf_init(&out, SIZE_MAX);
	fz_check(nbx_buf_append(&out, "keep", 4) == 0, "append");
	rc = recon_reply(s, data, size, &d, &out, &done);
	if (rc != 0) {
		fz_check(rc == NBX_EMALFORMED, "only NBX_EMALFORMED");
		fz_check(seen.nsend == 0 && seen.nwant == 0,
		    "no callback for a refused message");
		fz_check(out.len == 4 && memcmp(out.p, "keep", 4) == 0 &&
		    done == 0, "out as it was");
		nbx_buf_fini(&out);
		return;
	}
	fz_check(done == 0 || out.len == 4, "done appends nothing");
	nbx_buf_init(&again, SIZE_MAX);
	fz_check(recon_reply(s, data, size, NULL, &again, &done2) == 0 &&
	    done2 == done && again.len == out.len - 4 &&
	    (again.len == 0 || memcmp(again.p, out.p + 4, again.len) == 0),
	    "the same answer again");
	if (!done) {
		nbx_buf_init(&check, SIZE_MAX);
		fz_check(recon_reply(other, out.p + 4, out.len - 4, NULL,
		    &check, &done2) == 0, "the reply is a valid message");
		nbx_buf_fini(&check);
	}
	nbx_buf_fini(&again);
	nbx_buf_fini(&out);
}

int nbx_fuzz_recon(const uint8_t *data, size_t size);

int
nbx_fuzz_recon(const uint8_t *data, size_t size)
{
	rfz_ready();
	rfz_answer(&rfz_sets[0], &rfz_sets[1], data, size);
	rfz_answer(&rfz_sets[1], &rfz_sets[0], data, size);
	return 0;
}

#ifdef NBX_LIBFUZZER
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return nbx_fuzz_recon(data, size);
}
#endif
