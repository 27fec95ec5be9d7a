/*
 * node_ctl.c - answers the control socket: the table of commands, and the
 * small ones (put, delete, erase, peer_add, peer_remove, reload).  Every
 * reply is one JSON object with "ok"; errors carry a message naming what
 * is wrong.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "log.h"
#include "nbx_err.h"
#include "node_int.h"
#include "writes.h"

static json_t *
ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

/* ------------------------------------------------------------------ */
/* Writes                                                              */
/* ------------------------------------------------------------------ */

static const char *
op_name(enum write_op op)
{
	return op == WRITE_PUT ? "put" : op == WRITE_DELETE ? "delete" : "erase";
}

/* 1 if the record is stored here (in any state). */
static int
record_exists(struct node *n, struct nbx_str coll, struct nbx_str id)
{
	struct store_rtxn *t;
	struct crdt_record r;
	int rc;

	if (store_rtxn_begin(n->st, &t) != 0)
		return 1;	/* let the write itself report the failure */
	rc = store_record_get(t, coll, id, &r);
	crdt_record_fini(&r);
	store_rtxn_end(t);
	return rc != NBX_ENOTFOUND;
}

/*
 * put, delete, erase: one record's changes, from the request, applied in
 * one transaction; the reply says how many changed and the last seq.
 */
static json_t *
do_write(struct node *n, json_t *req, enum write_op op)
{
	struct write_batch b;
	struct store_outcome *out = NULL;
	char err[1024];
	json_t *reply;
	size_t applied = 0, unchanged = 0;
	uint64_t seq = 0;
	int rc;

	memset(&b, 0, sizeof(b));
	rc = write_batch_build(&b, op, n->pol, n->st, n->cfg.id, req, err,
	    sizeof(err));
	if (rc != 0) {
		reply = ctl_error(rc, "%s", err);
		goto out;
	}
	if (op != WRITE_PUT && !record_exists(n, b.chs[0].coll, b.chs[0].id)) {
		reply = ctl_error(NBX_ENOTFOUND, "%s %.*s/%s: no such record",
		    op_name(op), (int)b.chs[0].coll.n, b.chs[0].coll.p, b.id);
		goto out;
	}
	if ((out = calloc(b.n ? b.n : 1, sizeof(*out))) == NULL) {
		reply = ctl_error(NBX_ENOMEM, "out of memory");
		goto out;
	}
	rc = store_apply(n->st, n->pol, b.chs, b.n, (struct nbx_str){ 0 },
	    NULL, log_now_ms(), STORE_ATOMIC, out);
	if (rc != 0) {
		for (size_t i = 0; i < b.n; i++) {
			if (out[i].status != STORE_REJECTED)
				continue;
			reply = ctl_error(out[i].err, "%s %.*s/%s%s%.*s: %s",
			    op_name(op), (int)b.chs[i].coll.n, b.chs[i].coll.p,
			    b.id, b.chs[i].field.n ? " field " : "",
			    (int)b.chs[i].field.n, b.chs[i].field.p,
			    nbx_strerror(out[i].err));
			goto out;
		}
		reply = ctl_error(rc, "%s: %s", op_name(op),
		    store_last_error(n->st));
		goto out;
	}
	for (size_t i = 0; i < b.n; i++) {
		if (out[i].status == STORE_APPLIED) {
			applied++;
			seq = out[i].seq;
		} else {
			unchanged++;
		}
	}
	reply = json_pack("{s:b, s:s, s:I, s:I, s:I}", "ok", 1, "id", b.id,
	    "applied", (json_int_t)applied, "unchanged", (json_int_t)unchanged,
	    "seq", (json_int_t)seq);
	if (applied)
		conn__pump_soon(n);
out:
	free(out);
	write_batch_fini(&b);
	return reply;
}

static json_t *
cmd_put(struct node *n, json_t *req)
{
	return do_write(n, req, WRITE_PUT);
}

static json_t *
cmd_delete(struct node *n, json_t *req)
{
	return do_write(n, req, WRITE_DELETE);
}

static json_t *
cmd_erase(struct node *n, json_t *req)
{
	return do_write(n, req, WRITE_ERASE);
}

/* ------------------------------------------------------------------ */
/* Peers                                                               */
/* ------------------------------------------------------------------ */


static json_t *
cmd_peer_add(struct node *n, json_t *req)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	const char *addr = json_string_value(json_object_get(req, "address"));
	const char *pin_hex = json_string_value(json_object_get(req, "pin"));
	struct store_peer sp;
	struct peer *p;
	char host[256];
	uint16_t port;
	int rc;

	memset(&sp, 0, sizeof(sp));
	if (json_object_get(req, "pin") && !json_is_null(json_object_get(req,
	    "pin")) && !json_is_string(json_object_get(req, "pin")))
		return ctl_error(NBX_EINVAL, "pin must be a string of 64 hex "
		    "digits");
	if (id == NULL || !nbx_node_id_valid(nbx_str_c(id)))
		return ctl_error(NBX_EINVAL, "peer id '%s' is not a node id "
		    "(1-32 of a-z, 0-9, -)", id ? id : "");
	if (strcmp(id, n->cfg.id) == 0)
		return ctl_error(NBX_EINVAL, "'%s' is this node itself", id);
	if (addr == NULL || config_parse_hostport(addr, host, sizeof(host),
	    &port) != 0)
		return ctl_error(NBX_EINVAL, "address '%s' is not HOST:PORT",
		    addr ? addr : "");
	if (pin_hex && *pin_hex && config_parse_pin(pin_hex, sp.pin) != 0)
		return ctl_error(NBX_EINVAL, "pin must be 64 hex digits (the "
		    "SPKI SHA-256 that `nbxctl ca issue` printed)");
	sp.has_pin = pin_hex && *pin_hex;
	p = node__peer_find(n, id, strlen(id));
	if (p && p->from_config)
		return ctl_error(NBX_EEXIST, "peer %s is set in %s; change it "
		    "there and reload", id, n->config_path);
	sp.id = nbx_str_c(id);
	sp.address = nbx_str_c(addr);
	if ((rc = store_peer_put(n->st, &sp)) != 0)
		return ctl_error(rc, "cannot store peer %s: %s", id,
		    store_last_error(n->st));
	if (p)
		node__peer_remove(n, p);
	p = node__peer_add(n, id, host, port, sp.has_pin ? sp.pin : NULL, 0);
	if (p == NULL)
		return ctl_error(NBX_ENOMEM, "out of memory");
	log_msg(LOG_INFO, id, "peer added at %s:%u", host, (unsigned)port);
	conn__dial(n, p);
	return ok();
}

static json_t *
cmd_peer_remove(struct node *n, json_t *req)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	struct peer *p;
	int rc;

	if (id == NULL)
		return ctl_error(NBX_EINVAL, "peer_remove needs \"id\"");
	p = node__peer_find(n, id, strlen(id));
	if (p && p->from_config)
		return ctl_error(NBX_EPERM, "peer %s is set in %s; remove it "
		    "there and reload", id, n->config_path);
	if ((rc = store_peer_del(n->st, nbx_str_c(id))) != 0 && p == NULL)
		return ctl_error(NBX_ENOTFOUND, "no peer '%s'", id);
	if (p)
		node__peer_remove(n, p);
	log_msg(LOG_INFO, id, "peer removed");
	return ok();
}

/* ------------------------------------------------------------------ */
/* Reload and the table                                                */
/* ------------------------------------------------------------------ */

static json_t *
cmd_reload(struct node *n, json_t *req)
{
	char err[1024];
	int rc;

	(void)req;
	if ((rc = node__reload(n, err, sizeof(err))) != 0)
		return ctl_error(rc, "reload failed, still running with the old "
		    "settings: %s", err);
	return ok();
}

/*
 * A command's handler gets the whole request and returns the reply
 * (never NULL), {"ok": true, ...} or ctl_error's.
 */
struct command {
	const char *name;
	json_t *(*fn)(struct node *n, json_t *req);
};

static const struct command commands[] = {
	{ "put",		cmd_put },
	{ "delete",		cmd_delete },
	{ "erase",		cmd_erase },
	{ "import",		node__cmd_import },
	{ "status",		node__cmd_status },
	{ "peer_list",		node__cmd_peer_list },
	{ "peer_add",		cmd_peer_add },
	{ "peer_remove",	cmd_peer_remove },
	{ "quarantine",		node__cmd_quarantine },
	{ "metrics",		node__cmd_metrics },
	{ "audit",		node__cmd_audit },
	{ "erasures",		node__cmd_erasures },
	{ "compact",		node__cmd_compact },
	{ "verify",		node__cmd_verify },
	{ "reload",		cmd_reload },
};

json_t *
node__control(void *arg, json_t *req)
{
	struct node *n = arg;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));

	if (n->stopping)
		return ctl_error(NBX_ECLOSED, "nbxd is shutting down");
	for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
		if (!strcmp(cmd, commands[k].name))
			return commands[k].fn(n, req);
	return ctl_error(NBX_EINVAL, "unknown command '%s'", cmd);
}
