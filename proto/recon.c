/*
 * recon.c - range-based set reconciliation (recon.h): fingerprints from
 * block prefix sums, the check of a received message, and the reply.
 *
 * A message from a peer is read twice.  The first pass (msg_check)
 * validates every range and limit without acting, so a message refused
 * half way has called no callback and appended nothing.  The second pass
 * reads the same bytes again, now known good, and answers each range.
 * Reading twice keeps a reply free of allocation: nothing parsed is kept.
 *
 * A reply that would outgrow RECON_RANGES_MAX ranges or RECON_IDS_MAX
 * items ends, as Negentropy's do past their frame size, with one FP over
 * the rest of the key space, and the ranges there are not acted on.
 * Answering each remaining range with its own FP instead would keep
 * every range of a message full of differing ranges unsplit forever,
 * both ways; cutting the reply short instead settles the key space from
 * the front, at least one range per reply, and the rest is compared in a
 * later round, once, so no kh is named twice.
 *
 * Fingerprints are 128-bit sums, computed with unsigned __int128 (gcc and
 * clang on the 64-bit targets nbx builds for).
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "mpread.h"
#include "mpwrite.h"
#include "nbx_err.h"
#include "recon.h"

#define BLOCK		64	/* items per block of prefix sums */

/* The count term of a fingerprint: 0x9E3779B97F4A7C15F39CC0605CEDC835. */
#define COUNT_K_HI	0x9E3779B97F4A7C15ull
#define COUNT_K_LO	0xF39CC0605CEDC835ull

/* A bound on kh: a value, or +infinity (the upper bound nil). */
struct bound {
	uint64_t kh;
	int inf;
};

/* One range of a message, as read (data borrowed from the message). */
struct range {
	struct bound up;
	uint64_t mode;
	const uint8_t *data;
	uint32_t len;
};

/* ------------------------------------------------------------------ */
/* Items and sets                                                      */
/* ------------------------------------------------------------------ */

static int
item_cmp(const struct recon_item *a, const struct recon_item *b)
{
	if (a->kh != b->kh)
		return a->kh < b->kh ? -1 : 1;
	return memcmp(a->vh, b->vh, RECON_VH_LEN);
}

static int
item_qcmp(const void *a, const void *b)
{
	return item_cmp(a, b);
}

void
recon_sort(struct recon_item *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), item_qcmp);
}

/* vh as a 128-bit little-endian integer. */
static unsigned __int128
vh_value(const uint8_t *vh)
{
	uint64_t lo, hi;

	memcpy(&lo, vh, 8);
	memcpy(&hi, vh + 8, 8);
	return (unsigned __int128)le64toh(hi) << 64 | le64toh(lo);
}

static unsigned __int128
blk_get(const struct recon_set *s, size_t b)
{
	return (unsigned __int128)s->blk[2 * b + 1] << 64 | s->blk[2 * b];
}

int
recon_set_init(struct recon_set *s, const struct recon_item *v, size_t n)
{
	unsigned __int128 sum = 0;
	size_t nb = n / BLOCK + 1;

	memset(s, 0, sizeof(*s));
	if (v == NULL && n > 0)
		return NBX_EINVAL;
	for (size_t i = 1; i < n; i++)
		if (item_cmp(&v[i - 1], &v[i]) > 0)
			return NBX_EINVAL;
	if (nb > SIZE_MAX / (2 * sizeof(uint64_t)))
		return NBX_ENOMEM;
	s->blk = malloc(nb * 2 * sizeof(uint64_t));
	if (s->blk == NULL)
		return NBX_ENOMEM;
	for (size_t i = 0; i <= n; i++) {
		if (i % BLOCK == 0) {
			s->blk[2 * (i / BLOCK)] = (uint64_t)sum;
			s->blk[2 * (i / BLOCK) + 1] = (uint64_t)(sum >> 64);
		}
		if (i < n)
			sum += vh_value(v[i].vh);
	}
	s->v = v;
	s->n = n;
	return 0;
}

void
recon_set_fini(struct recon_set *s)
{
	free(s->blk);
	memset(s, 0, sizeof(*s));
}

/* The sum of vh over items [0, i): a block sum and at most 63 items. */
static unsigned __int128
prefix_sum(const struct recon_set *s, size_t i)
{
	unsigned __int128 sum = blk_get(s, i / BLOCK);

	for (size_t k = i - i % BLOCK; k < i; k++)
		sum += vh_value(s->v[k].vh);
	return sum;
}

void
recon_set_fingerprint(const struct recon_set *s, size_t i, size_t j,
    uint8_t fp[RECON_VH_LEN])
{
	unsigned __int128 k = (unsigned __int128)COUNT_K_HI << 64 | COUNT_K_LO;
	unsigned __int128 f = 0;
	uint64_t lo, hi;

	if (i < j)
		f = prefix_sum(s, j) - prefix_sum(s, i) +
		    (unsigned __int128)(j - i) * k;
	lo = htole64((uint64_t)f);
	hi = htole64((uint64_t)(f >> 64));
	memcpy(fp, &lo, 8);
	memcpy(fp + 8, &hi, 8);
}

/* The index of the first item with kh >= b (n for +infinity). */
static size_t
set_lower(const struct recon_set *s, struct bound b)
{
	size_t lo = 0, hi = s->n;

	if (b.inf)
		return s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid].kh < b.kh)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int
recon_set_has(const struct recon_set *s, uint64_t kh)
{
	size_t i = set_lower(s, (struct bound){ kh, 0 });

	return i < s->n && s->v[i].kh == kh;
}

/* 1 if kh lies below the bound b. */
static int
bound_above(struct bound b, uint64_t kh)
{
	return b.inf || kh < b.kh;
}

static void
item_read(const uint8_t *p, struct recon_item *it)
{
	it->kh = mpread_be(p, 8);
	memcpy(it->vh, p + 8, RECON_VH_LEN);
}

/* ------------------------------------------------------------------ */
/* Reading a message                                                   */
/* ------------------------------------------------------------------ */

/*
 * The message's array header: its number of ranges in *k, checked
 * against RECON_RANGES_MAX before anything else is read.
 */
static int
msg_head(struct mpread *r, uint32_t *k)
{
	uint32_t n;

	if (mpread_array(r, &n) != 0 || n == 0 || n % 3 != 0 ||
	    n / 3 > RECON_RANGES_MAX)
		return NBX_EMALFORMED;
	*k = n / 3;
	return 0;
}

/*
 * One range whose lower bound is lo: its upper bound above lo, a known
 * mode and data of that mode's type and size.  Only its shape is
 * checked; msg_check checks what lies in its data.
 */
static int
msg_range(struct mpread *r, uint64_t lo, struct range *g)
{
	uint32_t max;

	memset(g, 0, sizeof(*g));
	if (mpread_nil(r))
		g->up.inf = 1;
	else if (mpread_u64(r, &g->up.kh) != 0 || g->up.kh <= lo)
		return NBX_EMALFORMED;
	if (mpread_u64(r, &g->mode) != 0)
		return NBX_EMALFORMED;
	switch (g->mode) {
	case RECON_SKIP:
		return mpread_nil(r) ? 0 : NBX_EMALFORMED;
	case RECON_FP:
		return mpread_bin(r, RECON_VH_LEN, RECON_VH_LEN, &g->data,
		    &g->len);
	case RECON_IDS:
		max = RECON_IDS_MAX * RECON_ITEM_WIRE;
		if (mpread_bin(r, 0, max, &g->data, &g->len) != 0 ||
		    g->len % RECON_ITEM_WIRE != 0)
			return NBX_EMALFORMED;
		return 0;
	}
	return NBX_EMALFORMED;
}

/*
 * The whole message, without acting on it: the array, every range, the
 * bounds strictly increasing from 0 with only the last one nil, every
 * IDS list sorted and inside its range, at most RECON_IDS_MAX items in
 * all, and no byte after the array.
 */
static int
msg_check(const uint8_t *msg, size_t len)
{
	struct mpread r = { msg, len, 0 };
	struct recon_item prev, it;
	struct range g;
	uint64_t lo = 0, ids = 0;
	uint32_t k;

	if (msg_head(&r, &k) != 0)
		return NBX_EMALFORMED;
	for (uint32_t i = 0; i < k; i++) {
		if (msg_range(&r, lo, &g) != 0 || g.up.inf != (i == k - 1))
			return NBX_EMALFORMED;
		if (g.mode == RECON_IDS) {
			uint32_t m = g.len / RECON_ITEM_WIRE;

			ids += m;
			if (ids > RECON_IDS_MAX)
				return NBX_EMALFORMED;
			for (uint32_t j = 0; j < m; j++) {
				item_read(g.data + (size_t)j * RECON_ITEM_WIRE,
				    &it);
				if (it.kh < lo || !bound_above(g.up, it.kh) ||
				    (j > 0 && item_cmp(&prev, &it) > 0))
					return NBX_EMALFORMED;
				prev = it;
			}
		}
		lo = g.up.kh;
	}
	return r.off == len ? 0 : NBX_EMALFORMED;
}

/* ------------------------------------------------------------------ */
/* Writing a message                                                   */
/* ------------------------------------------------------------------ */

/*
 * A message being written.  A SKIP range is held open (skip) rather than
 * written, so that the SKIPs after it extend it; it is written, ending
 * where the next range starts, when a range of another mode comes, and
 * at the end with upper nil.  The array header is written as array16
 * and made the shortest form at the end (msg_end).
 */
struct msg {
	struct mpwrite w;
	size_t start;		/* out's length before the message */
	uint32_t nranges;	/* ranges written */
	int skip;		/* a SKIP range is open */
	uint32_t ids;		/* items listed */
};

static void
msg_begin(struct msg *m, struct nbx_buf *out)
{
	memset(m, 0, sizeof(*m));
	m->start = out->len;
	mpwrite_init(&m->w, out);
	mpwrite_raw(&m->w, "\xdc\x00\x00", 3);
}

/*
 * 1 if `ranges` more ranges and `items` more listed items fit, with room
 * left for one more range: the FP over the rest that ends a reply that
 * is full (recon_reply).  The open SKIP, if any, is counted.
 */
static int
msg_room(const struct msg *m, size_t ranges, size_t items)
{
	size_t count = m->nranges + (m->skip ? 1 : 0);

	return count + ranges + 1 <= RECON_RANGES_MAX &&
	    items <= RECON_IDS_MAX - m->ids;
}

/* A SKIP range, merged into the open one; 0, or 1 if it does not fit. */
static int
msg_skip(struct msg *m)
{
	if (!m->skip && !msg_room(m, 1, 0))
		return 1;
	m->skip = 1;
	return 0;
}

/*
 * Starts a range [lo, up) of mode `mode`, writing the open SKIP before
 * it; the caller writes the data.
 */
static void
msg_range_begin(struct msg *m, uint64_t lo, struct bound up, int mode)
{
	if (m->skip) {
		mpwrite_uint(&m->w, lo);
		mpwrite_uint(&m->w, RECON_SKIP);
		mpwrite_nil(&m->w);
		m->nranges++;
		m->skip = 0;
	}
	if (up.inf)
		mpwrite_nil(&m->w);
	else
		mpwrite_uint(&m->w, up.kh);
	mpwrite_uint(&m->w, (uint64_t)mode);
	m->nranges++;
}

/* An FP range [lo, up) with our fingerprint of items v[i..j). */
static void
msg_fp(struct msg *m, const struct recon_set *s, uint64_t lo,
    struct bound up, size_t i, size_t j)
{
	uint8_t fp[RECON_VH_LEN];

	recon_set_fingerprint(s, i, j, fp);
	msg_range_begin(m, lo, up, RECON_FP);
	mpwrite_bin(&m->w, fp, RECON_VH_LEN);
}

/* An IDS range [lo, up) listing items v[i..j). */
static void
msg_ids(struct msg *m, const struct recon_set *s, uint64_t lo,
    struct bound up, size_t i, size_t j)
{
	uint8_t wire[RECON_ITEM_WIRE];

	msg_range_begin(m, lo, up, RECON_IDS);
	mpwrite_bin_head(&m->w, (uint32_t)((j - i) * RECON_ITEM_WIRE));
	for (size_t k = i; k < j; k++) {
		uint64_t kh = htobe64(s->v[k].kh);

		memcpy(wire, &kh, 8);
		memcpy(wire + 8, s->v[k].vh, RECON_VH_LEN);
		mpwrite_raw(&m->w, wire, sizeof(wire));
	}
	m->ids += (uint32_t)(j - i);
}

/*
 * Ends the message: writes the open SKIP and the array header's count in
 * its shortest form.  *done = 1 and nothing left appended when the
 * message is one SKIP over everything.  0 or the writer's error, with
 * out's length restored on error.
 */
static int
msg_end(struct msg *m, int *done)
{
	struct nbx_buf *b = m->w.b;
	uint32_t n3;

	if (m->nranges == 0) {		/* nothing to say: no room needed */
		b->len = m->start;
		*done = 1;
		return 0;
	}
	if (m->skip) {
		mpwrite_nil(&m->w);
		mpwrite_uint(&m->w, RECON_SKIP);
		mpwrite_nil(&m->w);
		m->nranges++;
	}
	if (m->w.err != 0) {
		b->len = m->start;
		return m->w.err;
	}
	n3 = 3 * m->nranges;	/* <= 3 * RECON_RANGES_MAX < 65536 */
	if (n3 < 16) {
		b->p[m->start] = (uint8_t)(0x90 | n3);
		memmove(b->p + m->start + 1, b->p + m->start + 3,
		    b->len - m->start - 3);
		b->len -= 2;
	} else {
		b->p[m->start + 1] = (uint8_t)(n3 >> 8);
		b->p[m->start + 2] = (uint8_t)n3;
	}
	return 0;
}

/*
 * The bounds that cut our items v[i..j) (inside [lo, up)) into
 * RECON_SPLIT buckets of about equal count: the kh of each bucket's first
 * item, skipping one not above the bound before it, so that items with
 * equal kh stay together.  Returns the number of cuts (0 when all the
 * items share one kh at lo, or there are none).
 */
static size_t
split_cuts(const struct recon_set *s, uint64_t lo, size_t i, size_t j,
    uint64_t cut[RECON_SPLIT - 1])
{
	uint64_t prev = lo;
	size_t c = j - i, nc = 0;

	for (size_t b = 1; b < RECON_SPLIT; b++) {
		uint64_t kh = s->v[i + c * b / RECON_SPLIT].kh;

		if (c * b / RECON_SPLIT == 0 || kh <= prev)
			continue;
		cut[nc++] = prev = kh;
	}
	return nc;
}

/* FP ranges over [lo, up) cut at cut[0..nc). */
static void
msg_split(struct msg *m, const struct recon_set *s, uint64_t lo,
    struct bound up, const uint64_t *cut, size_t nc)
{
	size_t i = set_lower(s, (struct bound){ lo, 0 }), j;

	for (size_t c = 0; c <= nc; c++) {
		struct bound b = c < nc ? (struct bound){ cut[c], 0 } : up;

		j = set_lower(s, b);
		msg_fp(m, s, lo, b, i, j);
		lo = b.kh;
		i = j;
	}
}

/*
 * Our answer to a range [lo, up) whose fingerprint differs, where we hold
 * v[i..j): our items if there are few, or if they all share one kh (no
 * cut can part them); else our fingerprints of RECON_SPLIT buckets.
 * More than RECON_IDS_MAX items of one kh cannot be listed either: they
 * get one FP back (two sets that differ there never settle it; 2^16
 * records on one 64-bit key hash are not expected).  0, or 1 if the
 * answer does not fit (msg_room) and nothing was written.
 */
static int
answer_differing(struct msg *m, const struct recon_set *s, uint64_t lo,
    struct bound up, size_t i, size_t j)
{
	uint64_t cut[RECON_SPLIT - 1];
	size_t c = j - i, nc = 0;

	if (c > RECON_IDS_BELOW && s->v[i].kh != s->v[j - 1].kh)
		nc = split_cuts(s, lo, i, j, cut);
	if (nc > 0) {
		if (!msg_room(m, nc + 1, 0))
			return 1;
		msg_split(m, s, lo, up, cut, nc);
	} else if (c <= RECON_IDS_MAX) {
		if (!msg_room(m, 1, c))
			return 1;
		msg_ids(m, s, lo, up, i, j);
	} else {
		if (!msg_room(m, 1, 0))
			return 1;
		msg_fp(m, s, lo, up, i, j);
	}
	return 0;
}

int
recon_initiate(const struct recon_set *s, struct nbx_buf *out)
{
	struct bound inf = { 0, 1 };
	struct msg m;
	int done = 0;

	msg_begin(&m, out);
	(void)answer_differing(&m, s, 0, inf, 0, s->n);	/* always fits */
	return msg_end(&m, &done);
}

/* ------------------------------------------------------------------ */
/* Answering                                                           */
/* ------------------------------------------------------------------ */

/* kh of the peer's: send and want of a kh are called together, in order. */
static int
diff_call(const struct recon_diff *d, uint64_t kh, int send, int want)
{
	int rc;

	if (d == NULL)
		return 0;
	if (send && d->send != NULL && (rc = d->send(d->arg, kh)) != 0)
		return rc;
	if (want && d->want != NULL && (rc = d->want(d->arg, kh)) != 0)
		return rc;
	return 0;
}

/*
 * Compares the peer's m listed items (wire form, sorted, inside the
 * range) with ours v[i..j), as multisets, one kh at a time: a merge of
 * two sorted lists, where an item only in ours marks the kh to send and
 * one only in theirs marks it wanted.
 */
static int
compare_ids(const struct recon_set *s, size_t i, size_t j,
    const uint8_t *data, uint32_t m, const struct recon_diff *d)
{
	struct recon_item t = { 0 };
	uint32_t k = 0;
	int rc;

	if (k < m)
		item_read(data, &t);
	while (i < j || k < m) {
		uint64_t kh = i == j ? t.kh : k == m ? s->v[i].kh :
		    s->v[i].kh < t.kh ? s->v[i].kh : t.kh;
		int send = 0, want = 0;

		for (;;) {
			int ours = i < j && s->v[i].kh == kh;
			int theirs = k < m && t.kh == kh;
			int c;

			if (!ours && !theirs)
				break;
			c = !theirs ? -1 : !ours ? 1 : item_cmp(&s->v[i], &t);
			if (c <= 0)
				i++;
			if (c >= 0 && ++k < m)
				item_read(data + (size_t)k * RECON_ITEM_WIRE,
				    &t);
			send |= c < 0;
			want |= c > 0;
		}
		if ((rc = diff_call(d, kh, send, want)) != 0)
			return rc;
	}
	return 0;
}

int
recon_reply(const struct recon_set *s, const uint8_t *msg, size_t len,
    const struct recon_diff *d, struct nbx_buf *out, int *done)
{
	struct mpread r = { msg, len, 0 };
	struct range g;
	struct msg m;
	uint8_t fp[RECON_VH_LEN];
	uint64_t lo = 0;
	uint32_t k;
	int rc;

	*done = 0;
	if (msg_check(msg, len) != 0)
		return NBX_EMALFORMED;
	(void)msg_head(&r, &k);
	msg_begin(&m, out);
	for (uint32_t n = 0; n < k; n++) {
		size_t i = set_lower(s, (struct bound){ lo, 0 }), j;
		int full = 0;

		(void)msg_range(&r, lo, &g);
		j = set_lower(s, g.up);
		switch (g.mode) {
		case RECON_SKIP:
			full = msg_skip(&m);
			break;
		case RECON_FP:
			recon_set_fingerprint(s, i, j, fp);
			if (memcmp(fp, g.data, RECON_VH_LEN) == 0)
				full = msg_skip(&m);
			else
				full = answer_differing(&m, s, lo, g.up, i, j);
			break;
		case RECON_IDS:
			if ((full = msg_skip(&m)) != 0)
				break;
			rc = compare_ids(s, i, j, g.data,
			    g.len / RECON_ITEM_WIRE, d);
			if (rc != 0) {
				out->len = m.start;
				return rc;
			}
			break;
		}
		if (full) {
			/* the rest, from this range on, in the next rounds */
			msg_fp(&m, s, lo, (struct bound){ 0, 1 }, i, s->n);
			break;
		}
		lo = g.up.kh;
	}
	return msg_end(&m, done);
}
