/*
 * nbx-rogue.c - a rogue peer for the integration tests: it completes a
 * genuine mutual-TLS 1.3 handshake with a node as one of its configured
 * peers (a real certificate from `nbxctl ca issue`, the project's own TLS
 * module over a plain blocking TCP socket), then sends crafted traffic:
 * hostile frames, changes stamped with hostile clocks, spoofed changes.
 *
 *   nbx-rogue --ca F --cert F --key F --connect 127.0.0.1:PORT \
 *       --expect ID --script NAME [ARG...]
 *
 * It prints one line per event, each starting with "rogue: ": frames sent,
 * frames received (every received change with its value, so a test can
 * look for data that should never have reached this peer), ACKs, ERROR
 * frames, and how the connection ended; then a summary line:
 *
 *   rogue: summary script=NAME frames_sent=N acks=K last_ack=S
 *          closed_by_node=yes|no
 *
 * It exits 0 when the script ran (whatever the node did), 1 when it could
 * not connect or the handshake failed, 2 on a usage error, 3 when the
 * script cannot be run with this build (see "keyupdate").
 *
 * Everything is bounded in time: connecting and the handshake give up
 * after 5 s, every wait for the node after --wait ms (default 3000).
 *
 * This file reads the command line; rogue_io.c holds the connection and
 * rogue_scripts.c the scripts (rogue.h between them).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "hlc.h"
#include "rogue.h"

static const char USAGE[] =
    "usage: nbx-rogue --ca F --cert F --key F --connect HOST:PORT\n"
    "                 --expect ID --script NAME [ARG...]\n"
    "options: --wait MS     how long to wait for the node (3000)\n"
    "         --drift MS    the node's max_clock_drift_ms (500)\n"
    "         --linger MS   stay connected after the script (0)\n"
    "scripts:\n"
    "  hello                      HELLO + SUBSCRIBE, then wait\n"
    "  oversize                   a length prefix of 0xffffffff\n"
    "  truncated [clean]          half a frame, then EOF (no close_notify,\n"
    "                             or after close_notify with 'clean')\n"
    "  ddff                       a body dd ff ff ff ff (array32 of 2^32-1)\n"
    "  deep                       a body of 100 nested arrays\n"
    "  wrongtypes VARIANT|all     frames with items of the wrong type\n"
    "  trailing [ping|changes]    a valid frame with trailing bytes inside\n"
    "  pingflood N [noread|hold]  N PINGs as fast as possible\n"
    "  garbage-after-hello        HELLO, then a frame of random bytes\n"
    "  keyupdate                  TLS key updates (not possible: see below)\n"
    "  clock                      future-stamped changes (see the source)\n"
    "  spoof VICTIM               spoofed changes (see the source)\n"
    "  record COLL ID FIELD VALUE one genuine change of the rogue's own\n";

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

/* Runs one script on one connection.  Returns the exit status. */
static int
run_script(struct rogue *r, const char *name, char **args, int nargs)
{
	int rc;

	if (rogue_conn_open(r) != 0) {
		rogue_conn_close(r);
		return 1;
	}
	rc = rogue_script(r, name, args, nargs);
	if (r->linger_ms > 0 && !r->closed) {
		rogue_say("lingering for %llu ms",
		    (unsigned long long)r->linger_ms);
		rogue_wait_for(r, NULL, r->linger_ms);
	}
	rogue_say("summary script=%s frames_sent=%llu frames_recv=%llu "
	    "acks=%llu last_ack=%llu errors=%llu closed_by_node=%s", name,
	    (unsigned long long)r->frames_sent,
	    (unsigned long long)r->frames_recv,
	    (unsigned long long)r->acks, (unsigned long long)r->last_ack,
	    (unsigned long long)r->errors, r->closed ? "yes" : "no");
	rogue_conn_close(r);
	return rc;
}

static int
usage(const char *why)
{
	if (why)
		fprintf(stderr, "nbx-rogue: %s\n", why);
	fputs(USAGE, stderr);
	return 2;
}

int
main(int argc, char **argv)
{
	struct rogue r;
	const char *script = NULL, *colon;
	char err[512], host[64];
	int i, rc, nargs;
	char **args;

	memset(&r, 0, sizeof(r));
	r.fd = -1;
	r.wait_ms = 3000;
	r.drift_ms = HLC_DEFAULT_DRIFT_MS;
	for (i = 1; i < argc && script == NULL; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(USAGE, stdout);
			return 0;
		}
		if (v == NULL)
			return usage("an option lacks its value");
		i++;
		if (!strcmp(a, "--ca"))
			r.ca = v;
		else if (!strcmp(a, "--cert"))
			r.cert = v;
		else if (!strcmp(a, "--key"))
			r.key = v;
		else if (!strcmp(a, "--expect"))
			r.expect = v;
		else if (!strcmp(a, "--connect"))
			r.host = v;
		else if (!strcmp(a, "--wait"))
			r.wait_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--drift"))
			r.drift_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--linger"))
			r.linger_ms = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--script"))
			script = v;
		else
			return usage("unknown option");
	}
	if (!r.ca || !r.cert || !r.key || !r.expect || !r.host || !script)
		return usage("--ca, --cert, --key, --connect, --expect and "
		    "--script are required");
	if ((colon = strrchr(r.host, ':')) == NULL ||
	    (size_t)(colon - r.host) >= sizeof(host) ||
	    (r.port = (unsigned)strtoul(colon + 1, NULL, 10)) == 0 ||
	    r.port > 65535)
		return usage("--connect takes HOST:PORT");
	memcpy(host, r.host, (size_t)(colon - r.host));
	host[colon - r.host] = 0;
	r.host = host;
	args = argv + i;
	nargs = argc - i;
	if ((!strcmp(script, "wrongtypes") || !strcmp(script, "spoof")) &&
	    nargs < 1)
		return usage("this script needs an argument");
	if (!strcmp(script, "keyupdate")) {
		/*
		 * daemon/tls.h keeps the SSL object opaque and offers no key
		 * update call, so the rogue cannot ask for one through the
		 * project's TLS module.
		 */
		rogue_say("skipped: keyupdate: daemon/tls.h has no way to "
		    "send a TLS KeyUpdate");
		return 3;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((rc = tls_ctx_new(r.ca, r.cert, r.key, NULL, err, sizeof(err),
	    &r.ctx)) != 0) {
		rogue_say("TLS setup: %s", err);
		return 1;
	}
	r.self = tls_ctx_id(r.ctx);
	nbx_buf_init(&r.in, FRAME_HDR + 2 * (size_t)FRAME_BODY_MAX);
	if (!strcmp(script, "wrongtypes") && !strcmp(args[0], "all")) {
		rc = 0;
		for (int k = 0; rogue_wrongtype_variants[k] && rc == 0; k++) {
			char *one[1] = { (char *)rogue_wrongtype_variants[k] };

			rogue_say("--- wrongtypes %s", one[0]);
			rc = run_script(&r, script, one, 1);
		}
	} else {
		rc = run_script(&r, script, args, nargs);
	}
	nbx_buf_fini(&r.in);
	tls_ctx_free(r.ctx);
	return rc;
}
