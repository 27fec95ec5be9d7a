/*
 * rogue.h - a rogue peer for the integration tests (nbx-rogue.c): one
 * connection to a node, made with a real certificate through the
 * project's own TLS module, over which scripts (rogue_scripts.c) send
 * crafted traffic.  Everything the rogue sees is printed, one line per
 * event, each starting with "rogue: ".
 *
 * Every wait is bounded: rogue_conn_open gives up after ROGUE_SETUP_MS,
 * the scripts wait for the node at most r->wait_ms, and a send that
 * makes no progress for 3 s counts as the node gone.
 */
#ifndef NBX_ROGUE_H
#define NBX_ROGUE_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"
#include "tls.h"

#define ROGUE_IO_CHUNK	(64u << 10)
#define ROGUE_SETUP_MS	5000	/* connect + handshake + the node's HELLO */
#define ROGUE_EPOCH	4242	/* the log epoch the rogue claims */

struct rogue {
	/* settings, from the command line */
	const char *ca, *cert, *key, *host, *expect;
	unsigned port;
	uint64_t wait_ms;	/* how long to wait for the node */
	uint64_t drift_ms;	/* the node's max_clock_drift_ms */
	uint64_t linger_ms;	/* stay connected after the script */
	struct tls_ctx *ctx;
	const char *self;	/* our id, from our certificate */

	/* the connection */
	int fd;
	struct tls_conn *tls;
	struct nbx_buf in;	/* plaintext received, not yet framed */
	int closed;		/* the connection ended (the node's doing) */
	uint64_t peer_epoch;
	int got_hello;
	uint64_t want_ack;	/* rogue_send_batch waits for this ACK */

	/* counts over the connection */
	uint64_t frames_sent, frames_recv, pongs, acks, last_ack, errors;
	uint64_t changes_recv;
	int quiet_pong;		/* don't print each PONG (floods) */
};

/* Output and time.  rogue_show's result is one of 8 rotating buffers. */
void rogue_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t rogue_now_ms(void);		/* wall clock */
uint64_t rogue_mono_ms(void);		/* for timeouts */
void rogue_sleep_ms(unsigned ms);
const char *rogue_show(struct nbx_str s);	/* printable copy */
const char *rogue_value_str(const struct nbx_value *v);	/* static buffer */

/*
 * Connects to r->host:r->port, completes the TLS handshake expecting the
 * node to be r->expect, and waits for the node's HELLO (the node checks
 * our certificate after we finish, so its HELLO is what says it accepted
 * us).  Returns 0, or -1 with the reason printed.
 */
int rogue_conn_open(struct rogue *r);
/* Sends close_notify unless the connection ended, and closes it. */
void rogue_conn_close(struct rogue *r);

/*
 * Waits up to timeout_ms for bytes from the node and handles every whole
 * frame (HELLO, ACK, ERROR ... are printed; CHANGES are printed change by
 * change and ACKed; PINGs are answered).  Returns 1 if something was
 * read, 0 on timeout, -1 once the connection has ended.
 */
int rogue_pump(struct rogue *r, int timeout_ms);
/*
 * Pumps until pred(r) holds, the connection ends, or timeout_ms passes
 * (pred NULL: just for timeout_ms).  Returns whether pred holds.
 */
int rogue_wait_for(struct rogue *r, int (*pred)(struct rogue *),
    uint64_t timeout_ms);
int rogue_is_closed(struct rogue *r);

/* Encrypts and sends n bytes of plaintext; a failure marks it closed. */
void rogue_send_plain(struct rogue *r, const void *p, size_t n);
/* Sends the whole frames in b (counted as `frames`), then empties b. */
void rogue_send_frames(struct rogue *r, struct nbx_buf *b, unsigned frames);
/* Sends what TLS has queued for the node. */
void rogue_flush(struct rogue *r);

/* Frames and changes. */
void rogue_be32(uint8_t *p, uint32_t v);
/* Appends a frame whose body is any bytes at all. */
void rogue_put_raw_frame(struct nbx_buf *b, const void *body, size_t len);
/* Sends HELLO as r->self, and SUBSCRIBE from 0 if `subscribe`. */
void rogue_send_hello(struct rogue *r, int subscribe);
/* A FIELD change with a string value; the strings are borrowed. */
struct change rogue_field(const char *coll, const char *id,
    const char *field, const char *val, uint64_t hlc, const char *origin);
/* An audience version over the NULL-terminated ids (sorted, unique). */
void rogue_set_aud(struct nbx_audience *a, uint64_t hlc, const char *origin,
    const char *const *ids);
/*
 * Sends one CHANGES frame (epoch ROGUE_EPOCH, upto `upto`) of chs[0..n),
 * each printed with its label, and waits for its ACK.  Returns 1 if the
 * ACK came.
 */
int rogue_send_batch(struct rogue *r, const struct change *chs, size_t n,
    uint64_t upto, const char *const *labels);

/* The variants of the "wrongtypes" script, NULL-terminated. */
extern const char *const rogue_wrongtype_variants[];

/*
 * Runs script `name` with its arguments on the open connection.  Returns
 * 0 if it ran (whatever the node did), 2 if the name or arguments are
 * wrong.
 */
int rogue_script(struct rogue *r, const char *name, char **args, int nargs);

#endif
