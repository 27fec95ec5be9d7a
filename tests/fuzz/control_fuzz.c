/*
 * control_fuzz.c - libFuzzer harness for the write path of the control
 * socket, as far as it can run without a whole node.
 *
 * The line reader of daemon/control.c (handle_line) is static and the
 * dispatcher (node__control) needs a running node, so this harness
 * repeats their few steps on the input: split it into lines at '\n',
 * trim trailing '\r' and ' ', json_loadb, require an object with a "cmd"
 * string, and for put, delete and erase build the write with
 * write_batch_build and apply it with STORE_ATOMIC, as do_write does; for
 * import, append every element of "writes" to one batch and apply the
 * buildable ones together.  Errors become ctl_error replies, which are serialised as the
 * server would.  Anything else gets the "unknown command" reply.
 *
 * Applying writes changes the store, so each input runs on a store of
 * its own (a fresh copy of the seeded one, made by fz_store_fresh) and
 * replays exactly.  Besides the sanitizers: every request gets a reply
 * (ctl_error and json_pack return NULL for text that is not UTF-8, and
 * the server then sends nothing), every refused import write gets its
 * result, a refused atomic batch names a rejected change or is a store
 * failure, and an applied put can be read back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#include "control.h"

#define CONTROL_LINES_MAX	8

/* What the server would send back: one line of JSON.  Consumes reply. */
static void
control_reply(json_t *reply)
{
	char *s;

	fz_check(reply != NULL, "a reply");
	s = json_dumps(reply, JSON_COMPACT);
	fz_check(s != NULL, "reply serialises");
	free(s);
	json_decref(reply);
}

/* Applies b atomically as do_write does; returns the reply. */
static json_t *
control_apply(struct store *st, const struct write_batch *b)
{
	struct store_outcome *out = calloc(b->n ? b->n : 1, sizeof(*out));
	struct store_rtxn *t;
	struct crdt_record r;
	json_t *reply = NULL;
	int rc, rejected = 0;

	fz_check(out != NULL, "calloc");
	rc = store_apply(st, fz_policy(), b->chs, b->n, (struct nbx_str){ 0 },
	    NULL, FZ_NOW_MS, STORE_ATOMIC, out);
	for (size_t i = 0; i < b->n; i++)
		rejected |= out[i].status == STORE_REJECTED;
	if (rc == 0)
		fz_store_dirty();
	if (rc != 0) {
		fz_check(rejected || rc == NBX_ESTORE || rc == NBX_EMAPFULL ||
		    rc == NBX_ENOMEM, "a refused batch names a change");
		reply = ctl_error(rc, "apply: %s", store_last_error(st));
	} else {
		fz_check(!rejected, "an atomic batch applied whole");
		reply = json_pack("{s:b, s:s}", "ok", 1, "id", b->id);
		if (b->n > 0) {
			fz_check(store_rtxn_begin(st, &t) == 0, "rtxn");
			rc = store_record_get(t, b->chs[0].coll, b->chs[0].id, &r);
			fz_check(rc == 0, "an applied write reads back");
			crdt_record_fini(&r);
			store_rtxn_end(t);
		}
	}
	free(out);
	return reply;
}

static json_t *
control_write(struct store *st, json_t *req, enum write_op op)
{
	struct write_batch b;
	char err[1024];
	json_t *reply;
	int rc;

	err[0] = 0;
	memset(&b, 0, sizeof(b));
	rc = write_batch_build(&b, op, fz_policy(), st, FZ_SELF, req, err,
	    sizeof(err));
	if (rc != 0) {
		fz_check(memchr(err, 0, sizeof(err)) != NULL, "err terminated");
		reply = ctl_error(rc, "%s", err);
	} else {
		reply = control_apply(st, &b);
	}
	write_batch_fini(&b);
	return reply;
}

/*
 * import: every write appended to one batch, as do_import does; a write
 * that cannot be built leaves the earlier ones as they were; the batch
 * is applied together.
 */
static json_t *
control_import(struct store *st, json_t *req)
{
	json_t *writes = json_object_get(req, "writes"), *w;
	struct write_batch all;
	char err[1024];
	size_t nw, i;

	if (!json_is_array(writes))
		return ctl_error(NBX_EINVAL, "import needs \"writes\": [...]");
	nw = json_array_size(writes);
	if (nw > 64)
		nw = 64;	/* bounded work per input */
	memset(&all, 0, sizeof(all));
	for (i = 0; i < nw; i++) {
		size_t before = all.n;

		w = json_array_get(writes, i);
		if (!json_is_object(w) || write_batch_build(&all, WRITE_PUT,
		    fz_policy(), st, FZ_SELF, w, err, sizeof(err)) != 0) {
			/* do_import answers each refused write with its message,
			   scrubbed to valid UTF-8 as the daemon does */
			json_t *r;

			fz_check(all.n == before, "a refused write leaves the "
			    "batch as it was");
			ctl_utf8_scrub(err);
			r = json_pack("{s:b, s:s}", "ok", 0, "error",
			    json_is_object(w) ? err : "line is not a JSON object");

			fz_check(r != NULL, "an import result for every write");
			json_decref(r);
		}
	}
	all.id = "import";
	json_decref(control_apply(st, &all));
	write_batch_fini(&all);
	return json_pack("{s:b}", "ok", 1);
}

static void
control_line(const char *line, size_t n)
{
	json_error_t je;
	json_t *req;
	const char *cmd;

	while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
		n--;
	if (n == 0)
		return;
	req = json_loadb(line, n, 0, &je);
	if (req == NULL) {
		control_reply(ctl_error(NBX_EMALFORMED, "request is not JSON: "
		    "%s (column %d)", je.text, je.column));
		return;
	}
	if (!json_is_object(req) ||
	    !json_is_string(json_object_get(req, "cmd"))) {
		control_reply(ctl_error(NBX_EINVAL,
		    "request must be an object with a \"cmd\" string"));
		json_decref(req);
		return;
	}
	cmd = json_string_value(json_object_get(req, "cmd"));
	if (!strcmp(cmd, "put"))
		control_reply(control_write(fz_store(), req, WRITE_PUT));
	else if (!strcmp(cmd, "delete"))
		control_reply(control_write(fz_store(), req, WRITE_DELETE));
	else if (!strcmp(cmd, "erase"))
		control_reply(control_write(fz_store(), req, WRITE_ERASE));
	else if (!strcmp(cmd, "import"))
		control_reply(control_import(fz_store(), req));
	else
		control_reply(ctl_error(NBX_EINVAL, "unknown command '%s'",
		    cmd));
	json_decref(req);
}

int nbx_fuzz_control(const uint8_t *data, size_t size);

int
nbx_fuzz_control(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *nl;
	size_t n = size;
	int lines = 0;

	fz_store_fresh();
	while (n > 0 && lines++ < CONTROL_LINES_MAX) {
		/*
		 * The server waits for the newline; here a last line without
		 * one is handled too, so that the fuzzer need not learn it.
		 */
		if ((nl = memchr(p, '\n', n)) == NULL)
			nl = p + n;
		control_line(p, (size_t)(nl - p));
		n -= nl < p + n ? (size_t)(nl - p) + 1 : n;
		p = nl + 1;
	}
	return 0;
}

NBX_FUZZ_MAIN(nbx_fuzz_control, (void)fz_store())
