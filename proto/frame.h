/*
 * frame.h - framing and message codec of the sync protocol (session.h).
 *
 * A frame is a 4-byte big-endian body length followed by the body: one
 * msgpack array whose first element is the message type.  Splitting and
 * decoding are pure and borrow from the caller's bytes (h2o style): the
 * length prefix is checked against a limit before anything is trusted or
 * allocated, "incomplete" (NBX_EAGAIN) is told apart from "invalid", and
 * a decoded message points into the body it came from.
 *
 * Encoders append one whole frame (prefix included) to an nbx_buf and
 * leave the buffer as it was on failure.
 */
#ifndef NBX_FRAME_H
#define NBX_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"

#define FRAME_HDR		4		/* length prefix bytes */
#define FRAME_BODY_MAX		(16u << 20)	/* = SYNC_FRAME_MAX */
#define FRAME_CHANGES_MAX	65536		/* changes in one CHANGES */
#define FRAME_TEXT_MAX		1024		/* ERROR message bytes */
#define FRAME_DEPTH_MAX		5	/* frame, batch, change, aud, ids */

enum frame_type {
	FRAME_HELLO = 1,	/* [1, version, node_id, log_epoch] */
	FRAME_SUBSCRIBE = 2,	/* [2, epoch, from_seq] */
	FRAME_CHANGES = 3,	/* [3, epoch, upto_seq, [change, ...]] */
	FRAME_ACK = 4,		/* [4, upto_seq] */
	FRAME_ERASE_RECEIPT = 5,/* [5, coll, id, erase_hlc, erase_origin] */
	FRAME_PING = 6,		/* [6, nonce] */
	FRAME_PONG = 7,		/* [7, nonce] */
	FRAME_ERROR = 8,	/* [8, code, message] */
	/* version 2 */
	FRAME_RECON = 9,	/* [9, run, payload]: reconciliation */
	FRAME_RECORDS = 10,	/* [10, 0, 0, [change, ...]]: whole records */
	FRAME_WANT = 11,	/* [11, key hashes]: "send me these records" */
};
#define FRAME_TYPE_MAX	FRAME_WANT
#define FRAME_WANT_MAX	65536		/* key hashes in one WANT */
#define FRAME_SCHEMA_LEN 32		/* HELLO's schema digest */

/*
 * HELLO.  Version 1 is [1, version, node_id, log_epoch]; a version-2
 * node appends [..., version_max, schema_digest, last_seq], and puts the
 * lowest version it speaks in the second element, which is all a
 * version-1 node reads (its decoder skips trailing elements): so a
 * version-1 node and a version-2 node that still speaks 1 agree on 1.
 */
struct frame_hello {
	uint64_t version_min, version_max;
	struct nbx_str node;
	uint64_t epoch;
	const uint8_t *schema;	/* FRAME_SCHEMA_LEN bytes */
	uint64_t last_seq;	/* the sender's log end when it said HELLO */
};

/*
 * A decoded message.  Only the members of its type are set; the others
 * are zero.  Strings and `changes` borrow from the decoded body.
 */
struct frame_msg {
	enum frame_type type;
	uint64_t version;	/* HELLO: the lowest version the peer speaks */
	uint64_t version_max;	/* HELLO: the highest (= version if absent) */
	const uint8_t *schema;	/* HELLO: FRAME_SCHEMA_LEN bytes, or NULL */
	uint64_t last_seq;	/* HELLO: the sender's log end (0 if absent) */
	uint64_t run;		/* RECON */
	const uint8_t *payload;	/* RECON: opaque to the codec (recon.h) */
	size_t payload_len;
	const uint8_t *khs;	/* WANT: nkhs 8-byte big-endian key hashes */
	uint32_t nkhs;
	struct nbx_str node;	/* HELLO: 1..NBX_ID_MAX bytes, not checked
				   further: the session compares it */
	uint64_t epoch;		/* HELLO, SUBSCRIBE, CHANGES */
	uint64_t seq;		/* SUBSCRIBE from, CHANGES and ACK upto */
	uint64_t nonce;		/* PING, PONG */
	int64_t code;		/* ERROR */
	struct nbx_str text;	/* ERROR: 0..FRAME_TEXT_MAX bytes */
	struct nbx_str coll, id, origin;	/* ERASE_RECEIPT */
	uint64_t hlc;		/* ERASE_RECEIPT */
	uint32_t nchanges;	/* CHANGES, RECORDS: elements in the batch */
	const uint8_t *changes;	/* CHANGES, RECORDS: back to back */
	size_t changes_len;
};

/*
 * Finds the first frame in buf[0..len).  Returns 0 with *body, *body_len
 * (borrowed from buf) and *used (prefix + body) set; NBX_EAGAIN if buf
 * holds only part of a frame; NBX_ETOOBIG if the length prefix announces
 * more than `max` body bytes, decided from the 4 prefix bytes alone.  On
 * a non-zero return the outputs are zero/NULL.
 */
int frame_split(const uint8_t *buf, size_t len, size_t max,
    const uint8_t **body, size_t *body_len, size_t *used);

/*
 * Decodes one frame body: a single msgpack array spanning exactly len
 * bytes, read by type with exact arity (HELLO may carry extra trailing
 * elements, validated by mpscan and skipped, so that a later version is
 * reported as a version mismatch rather than as garbage).  Every CHANGES
 * element is validated as one msgpack array (mpscan: depth <=
 * FRAME_DEPTH_MAX, strings <= NBX_STR_MAX, counts <= FRAME_CHANGES_MAX
 * and backed by the bytes present) and the elements must fill the rest
 * of the body; they are decoded one at a time by frame_changes_decode or
 * change_decode (see frame_changes_next).  Returns 0, NBX_ETOOBIG (len over
 * FRAME_BODY_MAX) or NBX_EMALFORMED (anything else that is off: unknown
 * type, wrong arity or item type, a count over its cap or beyond the bytes
 * present, trailing bytes); on error *out is zeroed.
 */
int frame_decode(const uint8_t *body, size_t len, struct frame_msg *out);

/*
 * frame_decode without the scan of the CHANGES elements, for callers that
 * decode every element anyway (the session applying a batch, egress
 * reading its own batch back): the same checks of the top level, and a
 * count no larger than the bytes present could hold.  The caller decodes
 * every element with frame_changes_decode and must find exactly nchanges
 * of them filling changes_len, else the frame is malformed.
 */
int frame_decode_lazy(const uint8_t *body, size_t len, struct frame_msg *out);

/*
 * Iterates the change elements of a decoded CHANGES message.  Start with
 * *off = 0.  Returns 1 with the next element's bytes in *p, *len (borrowed
 * from the body) and *off advanced, 0 after the last one, or
 * NBX_EMALFORMED if the bytes do not hold another element.
 */
int frame_changes_next(const struct frame_msg *m, size_t *off,
    const uint8_t **p, size_t *len);

/*
 * Decodes the next change of a decoded CHANGES message in place (one
 * pass; strings borrowed from the body).  Start with *off = 0.  Returns 1
 * with *c filled and *off advanced, 0 after the last one, or
 * change_decode's error for an element that is no valid change (a
 * truncated one is NBX_EMALFORMED: the body is complete).
 */
int frame_changes_decode(const struct frame_msg *m, size_t *off,
    struct change *c);

/*
 * The changes of a decoded CHANGES message as a source of changes for the
 * store (store.h, struct store_change_src): frame_src_next decodes the
 * next one in place (strings borrowed from the body) and returns 1; after
 * the nchanges-th it returns 0 if they fill the body exactly.  Fewer
 * changes than the message says, bytes after them, or an element that is
 * no valid change: NBX_EMALFORMED or change_decode's code, also kept in
 * err, with n the index of the change at fault (n == nchanges: trailing
 * bytes).  Start from { m } or frame_src_rewind.
 */
struct frame_src {
	const struct frame_msg *m;
	size_t off;
	uint32_t n;		/* changes taken */
	int err;		/* the first failure, 0 if none */
};

int frame_src_next(void *arg, struct change *c);
void frame_src_rewind(void *arg);

/* Encoders: append a whole frame to b.  0, NBX_ENOMEM or NBX_ETOOBIG. */
/* The version-1 HELLO (what a node of the previous release sends). */
int frame_put_hello(struct nbx_buf *b, uint64_t version, struct nbx_str node,
    uint64_t epoch);
/* The version-2 HELLO; h->schema must point at FRAME_SCHEMA_LEN bytes. */
int frame_put_hello2(struct nbx_buf *b, const struct frame_hello *h);
/* RECON with an opaque payload of len bytes. */
int frame_put_recon(struct nbx_buf *b, uint64_t run, const void *payload,
    size_t len);
/* WANT for khs[0..n), n <= FRAME_WANT_MAX (else NBX_EINVAL). */
int frame_put_want(struct nbx_buf *b, const uint64_t *khs, size_t n);
int frame_put_subscribe(struct nbx_buf *b, uint64_t epoch, uint64_t from);
int frame_put_ack(struct nbx_buf *b, uint64_t seq);
int frame_put_erase_receipt(struct nbx_buf *b, struct nbx_str coll,
    struct nbx_str id, uint64_t hlc, struct nbx_str origin);
int frame_put_ping(struct nbx_buf *b, uint64_t nonce);
int frame_put_pong(struct nbx_buf *b, uint64_t nonce);
/* The message is cut to FRAME_TEXT_MAX bytes. */
int frame_put_error(struct nbx_buf *b, int64_t code, const char *msg);

/*
 * A CHANGES frame built incrementally in b: begin writes the prefix and
 * header with placeholders, add appends one change, finish patches the
 * body length, upto_seq and element count.  Between begin and finish the
 * bytes after fb->start are not a valid frame yet.  To drop what a series
 * of adds wrote, save a copy of *fb and b->len before it and restore both.
 * To drop the whole frame, set b->len = fb->start.
 */
struct frame_batch {
	size_t start;		/* offset of the frame's length prefix in b */
	size_t fixed;		/* offset of the fixed-width upto and count */
	uint32_t n;		/* changes added */
};

int frame_changes_begin(struct nbx_buf *b, uint64_t epoch,
    struct frame_batch *fb);
/*
 * The same for a RECORDS frame: whole records outside the log stream,
 * shaped like CHANGES with epoch and upto 0 (frame_changes_finish with
 * upto 0), decoded into the same members.
 */
int frame_records_begin(struct nbx_buf *b, struct frame_batch *fb);
/* The i-th key hash of a decoded WANT (i < nkhs). */
uint64_t frame_want_kh(const struct frame_msg *m, uint32_t i);
/*
 * Encodes c (change_encode) into the batch.  NBX_ETOOBIG if the batch
 * already holds FRAME_CHANGES_MAX changes or b is full, NBX_EINVAL if c
 * breaks the change format; b and fb are unchanged on error.
 */
int frame_changes_add(struct nbx_buf *b, struct frame_batch *fb,
    const struct change *c);
/* Appends one change already encoded by change_encode. */
int frame_changes_add_raw(struct nbx_buf *b, struct frame_batch *fb,
    const void *enc, size_t n);
/* NBX_ETOOBIG if the body grew past FRAME_BODY_MAX; else 0. */
int frame_changes_finish(struct nbx_buf *b, struct frame_batch *fb,
    uint64_t upto);

/* Body bytes of a batch so far (what batch_bytes is compared with). */
size_t frame_changes_size(const struct nbx_buf *b,
    const struct frame_batch *fb);

#endif
