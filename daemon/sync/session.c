/*
 * session.c - one sync session with one peer (session.h): the protocol
 * state machine, fed bytes and drained of bytes, with time as an argument.
 *
 * Receiving: bytes are split into frames (a partial frame waits in `in`,
 * which never holds more than one frame), each frame is decoded and acted
 * on at once.  CHANGES are applied with one store_apply that also moves
 * the peer's cursor, and only then ACKed.  Sending: after the peer's
 * SUBSCRIBE, pump streams the log through egress.c in batches, at most
 * `window` of them unacknowledged and no new one while `out_max` bytes
 * wait to be drained.  The peer's own changes are left out of the stream
 * (it made them), and so are records it sent us in full (it holds them:
 * store.h, store_log_peer_has), except during a full pass owed to a peer
 * that subscribed from the start of the log (store.h: resync).  Each pump
 * makes at most sync_opts.pump_batches batches.
 *
 * Any fatal error is sticky: it is recorded with its reason, an ERROR
 * frame is queued for the peer (unless the peer ended the session), and
 * every later feed or tick returns the same code.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"
#include "frame.h"
#include "nbx_err.h"
#include "session.h"
#include "session_int.h"

_Static_assert(FRAME_BODY_MAX == SYNC_FRAME_MAX, "one frame cap");

#define DEF_BATCH_BYTES	(64u << 10)
#define DEF_WINDOW	8
#define DEF_PING_MS	15000
#define DEF_DEAD_MS	45000
#define DEF_SCAN_MAX	10000
#define DEF_OUT_MAX	((size_t)4 << 20)

#define KEEP_MAX	((size_t)1 << 20)	/* buffers above: freed when idle */
#define OUTS_KEEP	4096		/* outcome slots kept between frames */

static const char *const type_names[] = {
	"?", "HELLO", "SUBSCRIBE", "CHANGES", "ACK", "ERASE_RECEIPT", "PING",
	"PONG", "ERROR", "RECON", "RECORDS", "WANT",
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Copies peer-supplied bytes for a log line: printable ASCII only. */
static void
sanitize(char *dst, size_t dstlen, struct nbx_str s)
{
	size_t i;

	for (i = 0; i < s.n && i + 1 < dstlen; i++) {
		unsigned char ch = (unsigned char)s.p[i];

		dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	if (dstlen > 0)
		dst[i] = 0;
}

size_t
sync__pending(const struct sync_session *s)
{
	return s->out.len - s->out_off;
}

/* Accounts for a frame appended to out at offset `before` by `rc = put`. */
int
sync__queued(struct sync_session *s, size_t before, int rc, uint64_t now_ms)
{
	if (rc != 0)
		return rc;
	s->stats.frames_out++;
	s->stats.bytes_out += s->out.len - before;
	s->last_tx_ms = now_ms;
	return 0;
}

/*
 * Ends the session with `code` unless it already ended: records the
 * reason and queues an ERROR frame as `tell` says.  Returns the code the
 * session ended with.
 */
int
sync__end(struct sync_session *s, int code, enum tell tell,
    const char *fmt, ...)
{
	va_list ap;
	size_t before = s->out.len;

	if (s->fatal != 0)
		return s->fatal;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	s->fatal = code;
	if (tell != TELL_NOTHING)
		(void)sync__queued(s, before, frame_put_error(&s->out, code,
		    tell == TELL_REASON ? s->err : "internal error"),
		    s->last_tx_ms);
	return code;
}

int
sync__violation(struct sync_session *s, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sync__end(s, NBX_EPEER, TELL_REASON, "protocol violation: %s",
	    msg);
}

/* Makes room for the outcomes of n changes. */
static int
outs_reserve(struct sync_session *s, size_t n)
{
	struct store_outcome *o;
	size_t cap = s->outs_cap ? s->outs_cap : 64;

	if (n <= s->outs_cap)
		return 0;
	while (cap < n)
		cap *= 2;
	if ((o = realloc(s->outs, cap * sizeof(*o))) == NULL)
		return NBX_ENOMEM;
	s->outs = o;
	s->outs_cap = cap;
	return 0;
}

static void
outs_release(struct sync_session *s)
{
	free(s->outs);
	s->outs = NULL;
	s->outs_cap = 0;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

int
sync_session_new(struct store *st, const struct policy *pol,
    const char *peer, const struct sync_opts *o, struct sync_session **out)
{
	struct sync_session *s;

	*out = NULL;
	if (st == NULL || pol == NULL || peer == NULL ||
	    !nbx_node_id_valid(nbx_str_c(peer)))
		return NBX_EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NBX_ENOMEM;
	s->st = st;
	s->pol = pol;
	snprintf(s->peer, sizeof(s->peer), "%s", peer);
	if (o != NULL)
		s->o = *o;
	if (s->o.batch_bytes == 0)
		s->o.batch_bytes = DEF_BATCH_BYTES;
	if (s->o.window == 0)
		s->o.window = DEF_WINDOW;
	if (s->o.ping_interval_ms == 0)
		s->o.ping_interval_ms = DEF_PING_MS;
	if (s->o.dead_after_ms == 0)
		s->o.dead_after_ms = DEF_DEAD_MS;
	if (s->o.scan_max == 0)
		s->o.scan_max = DEF_SCAN_MAX;
	if (s->o.out_max == 0)
		s->o.out_max = DEF_OUT_MAX;
	if (s->o.version_min == 0)
		s->o.version_min = SYNC_PROTO_MIN;
	if (s->o.version_max == 0)
		s->o.version_max = SYNC_PROTO_MAX;
	if (s->o.version_min > s->o.version_max ||
	    s->o.version_max > SYNC_PROTO_MAX) {
		free(s);
		return NBX_EINVAL;
	}
	if ((s->inflight = calloc(s->o.window, sizeof(*s->inflight))) == NULL) {
		free(s);
		return NBX_ENOMEM;
	}
	nbx_buf_init(&s->in, FRAME_HDR + FRAME_BODY_MAX);
	/* control frames may still be queued past out_max, within reason */
	nbx_buf_init(&s->out, s->o.out_max + 2 * (FRAME_HDR + FRAME_BODY_MAX));
	sync__egress_init(&s->eg);
	sync__recon_init(s);
	*out = s;
	return 0;
}

void
sync_session_free(struct sync_session *s)
{
	if (s == NULL)
		return;
	nbx_buf_fini(&s->in);
	nbx_buf_fini(&s->out);
	sync__egress_fini(&s->eg);
	sync__recon_fini(s);
	outs_release(s);
	free(s->inflight);
	free(s);
}

/*
 * Our HELLO: the version-1 form when we speak only version 1 (as the
 * previous release did), else the version-2 form, whose second element
 * is the lowest version we speak: all a version-1 node reads.
 */
static int
put_hello(struct sync_session *s, const struct store_meta *meta)
{
	struct frame_hello h = {
		.version_min = s->o.version_min,
		.version_max = s->o.version_max,
		.node = nbx_str_c(s->self),
		.epoch = s->epoch,
		.schema = s->o.schema,
		.last_seq = meta->last_seq,
	};

	if (s->o.version_max < 2)
		return frame_put_hello(&s->out, s->o.version_min,
		    nbx_str_c(s->self), s->epoch);
	return frame_put_hello2(&s->out, &h);
}

int
sync_session_start(struct sync_session *s, uint64_t now_ms)
{
	struct store_meta meta;
	size_t before;
	int rc;

	if (s->started)
		return NBX_EINVAL;
	if ((rc = store_meta_get(s->st, &meta)) != 0 ||
	    (rc = store_cursor_get(s->st, sync__peer(s), &s->cur)) != 0)
		return rc;
	/* the cursor's peer string borrows from s->peer, which stays put */
	snprintf(s->self, sizeof(s->self), "%s", meta.node_id);
	s->epoch = meta.epoch;
	s->alive_ms = now_ms;
	s->last_tx_ms = now_ms;
	before = s->out.len;
	if ((rc = sync__queued(s, before, put_hello(s, &meta), now_ms)) != 0)
		return rc;
	before = s->out.len;
	if ((rc = sync__queued(s, before, frame_put_subscribe(&s->out, s->cur.epoch,
	    s->cur.seq), now_ms)) != 0)
		return rc;
	s->started = 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Messages received                                                   */
/* ------------------------------------------------------------------ */

static int
on_hello(struct sync_session *s, const struct frame_msg *m)
{
	char said[NBX_ID_MAX + 1];

	uint64_t lo, hi;

	if (s->got_hello)
		return sync__violation(s, "second HELLO");
	s->stats.peer_version_min = (uint32_t)(m->version < UINT32_MAX ?
	    m->version : UINT32_MAX);
	s->stats.peer_version_max = (uint32_t)(m->version_max < UINT32_MAX ?
	    m->version_max : UINT32_MAX);
	/* the highest version both speak, if any */
	lo = m->version > s->o.version_min ? m->version : s->o.version_min;
	hi = m->version_max < s->o.version_max ? m->version_max :
	    s->o.version_max;
	if (lo > hi) {
		s->stats.no_common_version = 1;
		return sync__end(s, NBX_EVERSION, TELL_REASON,
		    "no common protocol version: peer speaks %llu..%llu, "
		    "this node %u..%u", (unsigned long long)m->version,
		    (unsigned long long)m->version_max, s->o.version_min,
		    s->o.version_max);
	}
	if (!nbx_str_eq(m->node, sync__peer(s))) {
		sanitize(said, sizeof(said), m->node);
		return sync__end(s, NBX_EPEER, TELL_REASON,
		    "HELLO says '%s' but certificate says '%s'", said,
		    s->peer);
	}
	s->got_hello = 1;
	s->stats.established = 1;
	s->stats.version = (uint32_t)hi;
	s->stats.schema_match = m->schema == NULL ? -1 :
	    memcmp(m->schema, s->o.schema, SYNC_SCHEMA_LEN) == 0;
	sync__recon_hello(s, m);
	s->stats.peer_epoch = m->epoch;
	s->stats.recv_seq = s->cur.epoch == m->epoch ? s->cur.seq : 0;
	return 0;
}

/*
 * Streaming starts where the peer's cursor says, if that cursor is of our
 * current log; a cursor of another epoch restarts from 0, which
 * idempotent merge makes safe; one beyond our log's end (a restored
 * backup of ours) goes on from our end.
 */
static int
on_subscribe(struct sync_session *s, const struct frame_msg *m,
    uint64_t now_ms)
{
	struct store_meta meta;
	uint64_t from = 0;
	int rc;

	if (s->subscribed)
		return sync__violation(s, "second SUBSCRIBE");
	if ((rc = store_meta_get(s->st, &meta)) != 0)
		return sync__end(s, rc, TELL_INTERNAL, "reading meta: %s",
		    store_last_error(s->st));
	if (m->epoch == s->epoch && m->seq > 0 && m->seq <= meta.last_seq)
		from = m->seq;
	/*
	 * A cursor of our epoch beyond our log's end: this store was rolled
	 * back (a backup put in place), and the peer holds every entry our
	 * log still has, the same ones it was sent before.  Streaming goes on
	 * from our end; what the pair lacks on either side, reconciliation
	 * finds (a version-1 peer never sees our writes whose sequence
	 * numbers it already passed: nothing but version 2 repairs that).
	 */
	else if (m->epoch == s->epoch && m->seq > meta.last_seq)
		from = meta.last_seq;
	s->rc.our_last_seq = meta.last_seq;	/* catch-up ends there */
	/*
	 * From the start, the peer may be a rebuilt store that lost its own
	 * changes: they go too, until a whole pass has been acknowledged.
	 * The flag errs on the safe side: if it cannot be read or kept, the
	 * peer's own changes are sent (costing only traffic).
	 */
	if (from == 0) {
		s->resync = 1;
		(void)store_peer_resync_set(s->st, sync__peer(s), 1);
	} else if (store_peer_resync_get(s->st, sync__peer(s), &s->resync) != 0)
		s->resync = 1;
	s->send_pos = from;
	s->stats.sent_seq = from;
	s->stats.acked_seq = from;
	s->subscribed = 1;
	return sync_session_pump(s, now_ms);
}

/*
 * A received batch as the store's source of changes: the frame's changes
 * decoded one at a time, noting whether any needs a second look once the
 * batch is committed (an erasure to acknowledge).
 */
struct batch_src {
	struct frame_src f;
	struct nbx_str peer;
	int erases;
	int own_auds;		/* an audience the peer itself set */
};

static int
batch_next(void *arg, struct change *c)
{
	struct batch_src *b = arg;
	int rc = frame_src_next(&b->f, c);

	if (rc == 1 && c->kind == CHANGE_ERASE)
		b->erases = 1;
	if (rc == 1 && c->kind == CHANGE_AUDIENCE &&
	    nbx_str_eq(c->aud.origin, b->peer))
		b->own_auds = 1;
	return rc;
}

static void
batch_rewind(void *arg)
{
	struct batch_src *b = arg;

	frame_src_rewind(&b->f);
	b->erases = 0;
	b->own_auds = 0;
}

/*
 * After the commit, the batch's changes once more, for what needs the
 * change itself: each rejected one goes to on_reject, and each ERASE
 * applied from another origin is acknowledged with a receipt.  The frame
 * decoded whole before, so every change decodes again.
 */
static int
after_commit(struct sync_session *s, const struct frame_msg *m,
    int rejects, int erases, uint64_t now_ms)
{
	struct nbx_str self = nbx_str_c(s->self);
	struct frame_src f = { m, 0, 0, 0 };
	struct change c;
	int rc;

	for (uint32_t i = 0; (rejects || erases) &&
	    frame_src_next(&f, &c) == 1; i++) {
		size_t before = s->out.len;

		if (s->outs[i].status == STORE_REJECTED) {
			if (rejects)
				s->o.on_reject(s->o.reject_arg, &c,
				    s->outs[i].err);
			continue;
		}
		if (!erases || c.kind != CHANGE_ERASE ||
		    nbx_str_eq(c.origin, self))
			continue;
		if ((rc = sync__queued(s, before, frame_put_erase_receipt(&s->out,
		    c.coll, c.id, c.hlc, c.origin), now_ms)) != 0)
			return rc;
	}
	return 0;
}

/*
 * Applies a batch: one store_apply_from decodes the changes one at a
 * time and commits them and the cursor (peer epoch, upto; none for
 * RECORDS) together; a change that does not decode is a framing error
 * and nothing of the batch is written.  Rejected changes are quarantined
 * by the store and do not stop the session.  A batch of the log is ACKed
 * only after that commit.
 */
int
sync__apply(struct sync_session *s, const struct frame_msg *m,
    const struct store_cursor *cur, uint64_t now_ms)
{
	struct batch_src b = { { m, 0, 0, 0 }, sync__peer(s), 0, 0 };
	struct store_change_src src = { batch_next, batch_rewind, &b };
	size_t taken = 0, before;
	uint32_t n = m->nchanges;
	int rc, rejects = 0;

	if (outs_reserve(s, n) != 0)
		return sync__end(s, NBX_ENOMEM, TELL_INTERNAL,
		    "no memory for %u changes", n);
	rc = store_apply_from(s->st, s->pol, &src, n, sync__peer(s), cur,
	    now_ms, s->o.no_relay ? STORE_NO_RELAY : 0, s->outs, &taken);
	if (rc != 0 && b.f.err != 0 && b.f.n < n)
		return sync__end(s, NBX_EMALFORMED, TELL_REASON,
		    "change %u of a %s frame does not decode: %s", b.f.n,
		    type_names[m->type], nbx_strerror(b.f.err));
	if (rc != 0 && b.f.err != 0)
		return sync__end(s, NBX_EMALFORMED, TELL_REASON,
		    "a %s frame holds %zu bytes after its %u changes",
		    type_names[m->type], m->changes_len - b.f.off, n);
	if (rc != 0)
		return sync__end(s, rc, TELL_INTERNAL, "applying %s: %s",
		    type_names[m->type], store_last_error(s->st));
	s->stats.changes_in += taken;	/* all n: the source checked */
	for (size_t i = 0; i < taken; i++) {
		if (s->outs[i].status == STORE_APPLIED)
			s->stats.applied_in++;
		else if (s->outs[i].status == STORE_REJECTED) {
			s->stats.rejected_in++;
			rejects = s->o.on_reject != NULL;
		}
	}
	if (cur != NULL) {
		s->last_upto = cur->seq;
		s->stats.recv_seq = cur->seq;
		before = s->out.len;
		rc = sync__queued(s, before, frame_put_ack(&s->out, cur->seq),
		    now_ms);
	}
	if (rc != 0 || (rc = after_commit(s, m, rejects, b.erases,
	    now_ms)) != 0)
		return sync__end(s, rc, TELL_INTERNAL, "output queue: %s",
		    nbx_strerror(rc));
	if (b.own_auds && s->stats.version >= 2 &&
	    (rc = sync__recon_stale_audiences(s, m, s->outs)) != 0)
		return rc;
	if (s->outs_cap > OUTS_KEEP)
		outs_release(s);
	return 0;
}

/* A batch of the log stream: applied with the cursor, then ACKed. */
static int
on_changes(struct sync_session *s, const struct frame_msg *m, uint64_t now_ms)
{
	struct store_cursor cur;

	if (m->epoch != s->stats.peer_epoch)
		return sync__violation(s, "CHANGES of log epoch %llu, HELLO "
		    "said %llu", (unsigned long long)m->epoch,
		    (unsigned long long)s->stats.peer_epoch);
	if (m->seq < s->last_upto)
		return sync__violation(s, "CHANGES upto %llu after upto %llu",
		    (unsigned long long)m->seq,
		    (unsigned long long)s->last_upto);
	cur.peer = sync__peer(s);
	cur.epoch = m->epoch;
	cur.seq = m->seq;
	return sync__apply(s, m, &cur, now_ms);
}

static int
on_ack(struct sync_session *s, const struct frame_msg *m, uint64_t now_ms)
{
	uint32_t i;

	for (i = 0; i < s->ninflight; i++)
		if (s->inflight[i] == m->seq)
			break;
	if (i == s->ninflight)
		return sync__violation(s, "ACK %llu for nothing sent",
		    (unsigned long long)m->seq);
	memmove(s->inflight, s->inflight + i + 1,
	    (s->ninflight - i - 1) * sizeof(*s->inflight));
	s->ninflight -= i + 1;
	s->stats.acked_seq = m->seq;
	return sync_session_pump(s, now_ms);
}

static int
handle_frame(struct sync_session *s, const uint8_t *body, size_t len,
    uint64_t now_ms)
{
	struct frame_msg m;
	char text[FRAME_TEXT_MAX + 1];
	size_t before = s->out.len;
	int rc;

	s->stats.frames_in++;
	s->stats.last_rx_ms = now_ms;
	s->alive_ms = now_ms;
	if ((rc = frame_decode_lazy(body, len, &m)) != 0)
		return sync__end(s, rc, TELL_REASON,
		    "malformed frame of %zu bytes", len);
	/* an ERROR may come first: the peer may refuse us before HELLO */
	if (!s->got_hello && m.type != FRAME_HELLO && m.type != FRAME_ERROR)
		return sync__violation(s, "%s before HELLO", type_names[m.type]);
	switch (m.type) {
	case FRAME_HELLO:
		return on_hello(s, &m);
	case FRAME_SUBSCRIBE:
		return on_subscribe(s, &m, now_ms);
	case FRAME_CHANGES:
		return on_changes(s, &m, now_ms);
	case FRAME_ACK:
		return on_ack(s, &m, now_ms);
	case FRAME_ERASE_RECEIPT:
		/* nothing records receipts yet; they are accepted */
		return 0;
	case FRAME_PING:
		if ((rc = sync__queued(s, before, frame_put_pong(&s->out, m.nonce),
		    now_ms)) != 0)
			return sync__end(s, rc, TELL_INTERNAL,
			    "output queue: %s", nbx_strerror(rc));
		return 0;
	case FRAME_PONG:
		return 0;
	case FRAME_RECON:
	case FRAME_RECORDS:
	case FRAME_WANT:
		if (s->stats.version < 2)
			return sync__violation(s, "%s in protocol version %u",
			    type_names[m.type], s->stats.version);
		if (m.type == FRAME_RECON)
			return sync__recon_on_recon(s, &m, now_ms);
		if (m.type == FRAME_WANT)
			return sync__recon_on_want(s, &m, now_ms);
		s->stats.recon_changes_in += m.nchanges;
		return sync__apply(s, &m, NULL, now_ms);
	case FRAME_ERROR:
		sanitize(text, sizeof(text), m.text);
		if (m.code == NBX_EVERSION)
			s->stats.no_common_version = 1;
		return sync__end(s, NBX_ECLOSED, TELL_NOTHING,
		    "peer closed the session: %s (%lld)", text,
		    (long long)m.code);
	}
	return sync__end(s, NBX_EMALFORMED, TELL_REASON, "unknown message");
}

/* Bytes still missing from the partial frame in s->in. */
static size_t
in_missing(const struct sync_session *s)
{
	const uint8_t *p = s->in.p;
	size_t n;

	if (s->in.len < FRAME_HDR)
		return FRAME_HDR - s->in.len;
	n = FRAME_HDR + ((size_t)p[0] << 24 | (size_t)p[1] << 16 |
	    (size_t)p[2] << 8 | p[3]);
	return n - s->in.len;
}

static void
in_reset(struct sync_session *s)
{
	s->in.len = 0;
	if (s->in.cap > KEEP_MAX)
		nbx_buf_fini(&s->in);
}

/*
 * Frames wholly inside the caller's bytes are handled in place; only a
 * frame cut by the end of a call is copied into s->in, which is then
 * completed from the next calls' bytes, taking no more than that frame
 * needs.  s->in thus never holds more than one frame, whose size the
 * prefix check bounded.
 */
int
sync_session_feed(struct sync_session *s, const void *data, size_t n,
    uint64_t now_ms)
{
	const uint8_t *p = data, *body;
	size_t blen, used, take;
	int rc;

	if (s->fatal != 0)
		return s->fatal;
	if (!s->started)
		return NBX_EINVAL;
	s->stats.bytes_in += n;
	while (n > 0) {
		if (s->in.len == 0) {
			rc = frame_split(p, n, FRAME_BODY_MAX, &body, &blen,
			    &used);
			if (rc == NBX_EAGAIN) {
				if (nbx_buf_append(&s->in, p, n) != 0)
					return sync__end(s, NBX_ENOMEM,
					    TELL_INTERNAL, "input buffer");
				return 0;
			}
			if (rc != 0)
				return sync__end(s, rc, TELL_REASON,
				    "frame length over %u bytes",
				    SYNC_FRAME_MAX);
			p += used;
			n -= used;
		} else {
			take = in_missing(s);
			if (take > n)
				take = n;
			if (nbx_buf_append(&s->in, p, take) != 0)
				return sync__end(s, NBX_ENOMEM, TELL_INTERNAL,
				    "input buffer");
			p += take;
			n -= take;
			rc = frame_split(s->in.p, s->in.len, FRAME_BODY_MAX,
			    &body, &blen, &used);
			if (rc == NBX_EAGAIN)
				continue;
			if (rc != 0)
				return sync__end(s, rc, TELL_REASON,
				    "frame length over %u bytes",
				    SYNC_FRAME_MAX);
		}
		rc = handle_frame(s, body, blen, now_ms);
		if (s->in.len > 0)
			in_reset(s);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

static const char *
egress_reason(const struct sync_session *s, int rc)
{
	switch (rc) {
	case NBX_ETOOBIG:
		return "a record does not fit in one frame";
	case NBX_EPERM:
		return "a batch held a field that may not leave this node; "
		    "nothing was sent";
	case NBX_ENOMEM:
		return "out of memory";
	default:
		return store_last_error(s->st);
	}
}

/*
 * With nothing else pending, the finished batch becomes the output: the
 * two buffers trade their memory (each keeps its own max) instead of the
 * frame being copied, and egress builds the next batch in what was out.
 */
static void
out_take_frame(struct sync_session *s)
{
	struct nbx_buf *o = &s->out, *f = &s->eg.frame;
	uint8_t *p = o->p;
	size_t cap = o->cap;

	o->p = f->p;
	o->cap = f->cap;
	o->len = f->len;
	s->out_off = 0;
	f->p = p;
	f->cap = cap;
	f->len = 0;
}

int
sync_session_pump(struct sync_session *s, uint64_t now_ms)
{
	uint32_t scanned = 0, made = 0;
	int rc;

	s->more = 0;
	if (s->fatal != 0)
		return s->fatal;
	if (!s->subscribed)
		return 0;
	while (s->ninflight < s->o.window && sync__pending(s) < s->o.out_max) {
		if (scanned >= s->o.scan_max || (s->o.pump_batches != 0 &&
		    made >= s->o.pump_batches)) {
			s->more = 1;
			break;
		}
		struct sync_batch b = {
			.after = s->send_pos,
			.scan_max = s->o.scan_max - scanned,
			.bytes = s->o.batch_bytes,
			.omit_own = !s->resync,
		};
		size_t before = s->out.len;

		rc = sync__egress_batch(s->st, s->pol, sync__peer(s), s->epoch,
		    now_ms, &s->eg, &b);
		if (rc != 0)
			return sync__end(s, rc, TELL_INTERNAL,
			    "streaming the log: %s", egress_reason(s, rc));
		if (b.scanned == 0) {
			/* the end of the log: a full pass done once acked */
			if (s->resync && s->ninflight == 0 &&
			    store_peer_resync_set(s->st, sync__peer(s), 0) == 0)
				s->resync = 0;
			break;
		}
		scanned += b.scanned;
		/* disclosed before queued: the audit never misses a send */
		if (sync__pending(s) == 0) {
			out_take_frame(s);
			rc = sync__queued(s, 0, 0, now_ms);	/* out holds it alone */
		} else
			rc = sync__queued(s, before, nbx_buf_append(&s->out,
			    s->eg.frame.p, s->eg.frame.len), now_ms);
		if (rc != 0)
			return sync__end(s, rc, TELL_INTERNAL,
			    "output queue: %s", nbx_strerror(rc));
		made++;
		s->inflight[s->ninflight++] = b.upto;
		s->send_pos = b.upto;
		s->stats.sent_seq = b.upto;
		s->stats.changes_out += b.nchanges;
		s->stats.batches_out++;
	}
	return sync__recon_pump(s, now_ms);
}

int
sync_session_more(const struct sync_session *s)
{
	return s->fatal == 0 && s->more;
}

int
sync_session_tick(struct sync_session *s, uint64_t now_ms)
{
	uint64_t last;
	size_t before = s->out.len;
	int rc;

	if (s->fatal != 0)
		return s->fatal;
	if (!s->started)
		return 0;
	if (now_ms >= s->alive_ms &&
	    now_ms - s->alive_ms >= s->o.dead_after_ms)
		return sync__end(s, NBX_ECLOSED, TELL_REASON,
		    "nothing received for %llu ms",
		    (unsigned long long)(now_ms - s->alive_ms));
	last = s->alive_ms > s->last_tx_ms ? s->alive_ms : s->last_tx_ms;
	/*
	 * A PING when the link was idle both ways for an interval, or when
	 * we sent nothing for an interval while the peer kept us busy (a
	 * loaded node applying its batches: the peer must still hear from
	 * us before it calls us dead).  Idle, the PONGs keep the second
	 * case from firing: one PING per interval per pair.
	 */
	if (((now_ms >= last && now_ms - last >= s->o.ping_interval_ms) ||
	    (now_ms >= s->last_tx_ms &&
	    now_ms - s->last_tx_ms >= s->o.ping_interval_ms &&
	    now_ms - s->alive_ms < s->o.ping_interval_ms)) &&
	    (rc = sync__queued(s, before, frame_put_ping(&s->out, ++s->nonce),
	    now_ms)) != 0)
		return sync__end(s, rc, TELL_INTERNAL, "output queue: %s",
		    nbx_strerror(rc));
	return 0;
}

void
sync_session_heard(struct sync_session *s, uint64_t now_ms)
{
	if (s->fatal == 0 && now_ms > s->alive_ms)
		s->alive_ms = now_ms;
}

size_t
sync_session_pending(struct sync_session *s, const uint8_t **p)
{
	size_t n = sync__pending(s);

	*p = n > 0 ? s->out.p + s->out_off : NULL;
	return n;
}

void
sync_session_consume(struct sync_session *s, size_t n)
{
	size_t left = sync__pending(s);

	s->out_off += n < left ? n : left;
	if (s->out_off == s->out.len) {
		s->out.len = 0;
		s->out_off = 0;
		if (s->out.cap > KEEP_MAX)
			nbx_buf_fini(&s->out);
	} else if (s->out_off >= (64u << 10) && s->out_off >= s->out.len / 2) {
		memmove(s->out.p, s->out.p + s->out_off, sync__pending(s));
		s->out.len -= s->out_off;
		s->out_off = 0;
	}
}

void
sync_session_fail(struct sync_session *s, int code, const char *msg)
{
	size_t before = s->out.len;

	if (s->fatal != 0)
		return;
	snprintf(s->err, sizeof(s->err), "%s", msg ? msg : "closed");
	s->fatal = NBX_ECLOSED;
	(void)sync__queued(s, before, frame_put_error(&s->out, code, s->err),
	    s->last_tx_ms);
}

const struct sync_stats *
sync_session_stats(const struct sync_session *s)
{
	return &s->stats;
}

const char *
sync_session_error(const struct sync_session *s)
{
	return s->err;
}

const char *
sync_session_peer(const struct sync_session *s)
{
	return s->peer;
}
