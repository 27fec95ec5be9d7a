/*
 * recon.h - range-based set reconciliation (Aljoscha Meyer, "Range-Based
 * Set Reconciliation"; the scheme of Negentropy / Nostr NIP-77), for the
 * sync protocol: two nodes find the records whose per-pair view differs
 * without sending the ones they agree on.
 *
 * Each side holds a set of items (a key hash and a view hash per record)
 * sorted by key hash.  Messages cut the key space into consecutive
 * ranges; a range carries nothing (SKIP), the sender's fingerprint of
 * its items there (FP), or the items themselves (IDS).  The receiver
 * answers a differing fingerprint with finer fingerprints or with its
 * items, and compares received items with its own, naming every key hash
 * whose items differ through the callbacks of struct recon_diff.  A
 * differing range shrinks about RECON_SPLIT-fold per round, so two sets
 * of n items settle in O(log n) rounds with traffic proportional to the
 * number of differences, not to n.
 *
 * Pure: no I/O, no clock, no state between messages (every message is
 * answered from the set alone), no allocation but the set's block sums.
 * Messages come from peers: each is validated whole before anything is
 * acted on, and the work it causes is bounded by its size and by the
 * limits below, never by n times its number of ranges.
 *
 * Wire form of a message (the payload; the caller frames it): one msgpack
 * array of 3k elements, k ranges in key order that cover the key space.
 * Range i is [lower_i, upper_i), lower_0 = 0, lower_i = upper_(i-1),
 * written as `upper, mode, data`:
 *   upper  uint (exclusive bound on kh, greater than the range's lower:
 *          bounds strictly increase from 0), or nil for +infinity; the
 *          last range's upper, and only it, is nil;
 *   mode   RECON_SKIP: data nil;
 *          RECON_FP:   data bin 16, the sender's fingerprint of its items
 *                      in the range;
 *          RECON_IDS:  data bin 24m, the sender's m items in the range,
 *                      each kh 8 bytes big-endian then vh, sorted as a set
 *                      is (below), every kh inside the range.
 * Fingerprint of a run of items: each vh read as a 128-bit little-endian
 * integer, fp = sum of vh + count * 0x9E3779B97F4A7C15F39CC0605CEDC835
 * (mod 2^128), written as 16 bytes little-endian.  Additive, so it comes
 * from prefix sums; the count term tells {x, x} from {x}.
 */
#ifndef NBX_RECON_H
#define NBX_RECON_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"

#define RECON_VH_LEN	16
/* Bytes of one item in an IDS range: kh big-endian, then vh. */
#define RECON_ITEM_WIRE	(8 + RECON_VH_LEN)

/* Ranges in one message, at most. */
#define RECON_RANGES_MAX	4096
/* Items listed in one message, all IDS ranges together, at most. */
#define RECON_IDS_MAX		65536
/* A differing range is split into this many buckets of about equal count. */
#define RECON_SPLIT		16
/* A differing range where we hold at most this many items gets our IDS. */
#define RECON_IDS_BELOW		32

/* The modes of a range. */
#define RECON_SKIP	0
#define RECON_FP	1
#define RECON_IDS	2

struct recon_item {
	uint64_t kh;			/* key hash: orders the set */
	uint8_t vh[RECON_VH_LEN];	/* view hash: the record as the pair sees it */
};

/*
 * A set: items sorted ascending by kh, then by vh (memcmp).  Equal kh with
 * different vh (a hash collision) and exact duplicates are allowed: the
 * set is a multiset.  v is borrowed; the rest is private.
 */
struct recon_set {
	const struct recon_item *v;
	size_t n;
	/* private: the sum of vh of items [0, 64b) for b = 0 .. n/64, each
	 * as two words (low, high) */
	uint64_t *blk;
};

/* What recon_reply found: callbacks, and the argument they get. */
struct recon_diff {
	/* we hold item(s) with key hash kh that the peer lacks or holds
	 * with another view: send ours */
	int (*send)(void *arg, uint64_t kh);
	/* the peer holds item(s) with key hash kh that we lack or hold
	 * differently: ask for theirs */
	int (*want)(void *arg, uint64_t kh);
	void *arg;
};

/* Sorts n items into set order (kh, then vh bytes). */
void recon_sort(struct recon_item *v, size_t n);

/*
 * Makes a set of v[0..n), which must be sorted (recon_sort) and stay
 * valid and unchanged until recon_set_fini: it is borrowed, not copied.
 * Precomputes a prefix sum per block of 64 items, so that the
 * fingerprint of any range costs O(log n + 128).  0, NBX_EINVAL (v not
 * sorted, or NULL with n > 0) or NBX_ENOMEM; on failure *s is zeroed.
 */
int recon_set_init(struct recon_set *s, const struct recon_item *v,
    size_t n);

/* Frees the block sums; a zeroed set, or one already finished, is fine. */
void recon_set_fini(struct recon_set *s);

/* 1 if the set holds an item with key hash kh (a binary search). */
int recon_set_has(const struct recon_set *s, uint64_t kh);

/*
 * The fingerprint of items v[i..j) (i <= j <= n) into fp, from the block
 * sums: at most 126 additions whatever j - i.
 */
void recon_set_fingerprint(const struct recon_set *s, size_t i, size_t j,
    uint8_t fp[RECON_VH_LEN]);

/*
 * Appends the opening message to out: the whole set as one IDS range if
 * it holds at most RECON_IDS_BELOW items, else RECON_SPLIT FP ranges of
 * about equal count (fewer where items share a kh; one IDS range again
 * if they all do, as recon_reply answers a range it cannot cut).  0, or
 * NBX_ENOMEM / NBX_ETOOBIG (out's max), with out's length as it was.
 */
int recon_initiate(const struct recon_set *s, struct nbx_buf *out);

/*
 * Answers the message msg[0..len) from the peer against our set s.
 *
 * The message is validated whole first: anything off the wire form above
 * or over a limit (k = 0 or over RECON_RANGES_MAX, over RECON_IDS_MAX
 * items, trailing bytes ...) returns NBX_EMALFORMED before any callback.
 * Then every range is answered:
 *   SKIP -> SKIP;
 *   FP   -> SKIP if our fingerprint is equal; else our IDS where we hold
 *           at most RECON_IDS_BELOW items there (or where they all share
 *           one kh, so the range cannot be cut); else RECON_SPLIT FP
 *           sub-ranges of about equal count of ours, cut only between
 *           different kh, together covering the range;
 *   IDS  -> the peer's items compared with ours in the range as
 *           multisets: d->send(kh) once for each kh where we hold an item
 *           they do not, d->want(kh) once for each kh where they hold one
 *           we do not (a changed view gets both), in kh order; -> SKIP.
 * Adjacent SKIP ranges are merged.  Where answering a range would put
 * the reply over RECON_RANGES_MAX ranges or RECON_IDS_MAX items, the
 * reply ends with one FP of ours from that range's lower bound to
 * +infinity, and the ranges from there on are not acted on (no callback
 * for their IDS lists): the rest is reconciled in the next rounds, and
 * no kh is ever named twice in an exchange.  The reply is always a valid
 * message.
 *
 * When the reply would be one SKIP over everything, nothing is appended
 * and *done is set to 1: this direction of the exchange is over.  Else
 * the reply is appended to out and *done is 0.
 *
 * d, and either callback, may be NULL.  A callback's non-zero return
 * aborts the reply and is returned.  Returns 0, NBX_EMALFORMED,
 * NBX_ENOMEM / NBX_ETOOBIG (out's max) or a callback's code; on any
 * failure out's length is as it was (nothing appended).  Work:
 * O(k (log n + 128) + items listed in the message + our items in its IDS
 * ranges); nothing is kept between calls.
 */
int recon_reply(const struct recon_set *s, const uint8_t *msg, size_t len,
    const struct recon_diff *d, struct nbx_buf *out, int *done);

#endif
