/*
 * nbxctl.c - the admin CLI of an nbx node.  The `ca` verbs work offline
 * with the OpenSSL API; every other verb is a thin client of nbxd's control
 * socket.  Exit 0 on success, 1 on a runtime failure, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "cli.h"
#include "config.h"
#include "ctlclient.h"
#include "import.h"
#include "nbx_err.h"


struct ctx {
	const char *config;	/* -c */
	const char *socket;	/* -s */
	int json;		/* --json */
	const char *verb;	/* as typed: put, delete and erase share a handler */
};

#define STR_(x)	#x
#define STR(x)	STR_(x)

/* nbxctl --help: a line for every row of verbs[] below. */
static const char MAIN_HELP[] =
    "usage: nbxctl [-c FILE] [-s SOCKET] VERB [ARGS...]\n"
    "\n"
    "Administers an nbx node.  VERB --help explains each verb.\n"
    "\n"
    "Certificates (offline):\n"
    "  ca init   --dir CA_DIR                      create the regional CA\n"
    "  ca issue  --dir CA_DIR --node ID --out DIR  node key + certificate\n"
    "  ca revoke --dir CA_DIR --cert FILE          revoke a certificate\n"
    "  ca crl    --dir CA_DIR --out FILE           write the CRL\n"
    "\n"
    "Node (through the running nbxd's control socket):\n"
    "  status                                      node and peers at a glance\n"
    "  peer add ID HOST:PORT [--pin SHA256]        add a peer (no restart)\n"
    "  peer remove ID | peer list\n"
    "  put COLL ID FIELD=VALUE... [--audience a,b] write fields of a record\n"
    "  delete COLL ID | erase COLL ID\n"
    "  import FILE.jsonl | -                       load records in bulk\n"
    "  erasures                                    erasures and their receipts\n"
    "  verify PEER [--repair]                      digest to compare with PEER's\n"
    "  compact                                     rewrite the store, purged bytes gone\n"
    "  quarantine                                  refused incoming changes\n"
    "  audit [--peer ID] [--record COLL/ID] [--since T]  disclosure log\n"
    "  metrics                                     Prometheus metrics\n"
    "  reload                                      reload certificates, CRL, peers\n"
    "\n"
    "Options:\n"
    "  -c FILE    node config (default $NBX_CONF, else /etc/nbx/nbx.conf);\n"
    "             used to find the control socket\n"
    "  -s SOCKET  control socket path (overrides the config)\n"
    "  --json     print data as JSON\n";

/* 1 if --help or -h is among the verb's arguments. */
static int
wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* ca                                                                  */
/* ------------------------------------------------------------------ */

static const char CA_HELP[] =
    "usage: nbxctl ca init   --dir CA_DIR\n"
    "       nbxctl ca issue  --dir CA_DIR --node ID --out DIR [--days N]\n"
    "       nbxctl ca revoke --dir CA_DIR --cert FILE\n"
    "       nbxctl ca crl    --dir CA_DIR --out FILE [--days N]\n"
    "\n"
    "The regional certificate authority, kept in CA_DIR (ca.key is 0600:\n"
    "keep it offline).  `issue` writes DIR/node.key (0600), DIR/node.crt\n"
    "and DIR/ca.crt, and prints the certificate's SPKI SHA-256 pin, which\n"
    "peers may set with `peer add --pin`.\n"
    "\n"
    "  --days N                 certificate lifetime (issue: 825, crl: 7)\n"
    "  --valid-from-offset SEC  shift the start of validity (negative\n"
    "                           back-dates it: for testing expiry)\n";

static int
cmd_ca(struct ctx *x, int argc, char **argv)
{
	const char *dir = NULL, *node = NULL, *out = NULL, *cert = NULL;
	unsigned days = 0;
	long offset = 0;
	int have_offset = 0;
	char err[1024], pin[65];
	int rc;

	if (argc < 1) {
		fputs(CA_HELP, stderr);
		return EXIT_USAGE;
	}
	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;

		if (v == NULL)
			return cli_usage_error("ca: %s needs a value", a);
		if (!strcmp(a, "--dir"))
			dir = v;
		else if (!strcmp(a, "--node"))
			node = v;
		else if (!strcmp(a, "--out"))
			out = v;
		else if (!strcmp(a, "--cert"))
			cert = v;
		else if (!strcmp(a, "--days")) {
			days = (unsigned)strtoul(v, &end, 10);
			if (*end || days == 0 || days > 36500)
				return cli_usage_error("ca: --days takes 1-36500, not "
				    "'%s'", v);
		} else if (!strcmp(a, "--valid-from-offset")) {
			have_offset = 1;
			offset = strtol(v, &end, 10);
			if (*end || end == v)
				return cli_usage_error("ca: --valid-from-offset takes "
				    "seconds, not '%s'", v);
		} else {
			return cli_usage_error("ca: unknown option '%s'", a);
		}
	}
	if (dir == NULL)
		return cli_usage_error("ca %s: --dir CA_DIR is required", argv[0]);
	if (!strcmp(argv[0], "init")) {
		rc = ca_init(dir, err, sizeof(err));
		if (rc == 0)
			printf("created regional CA in %s (keep %s/ca.key "
			    "offline)\n", dir, dir);
	} else if (!strcmp(argv[0], "issue")) {
		if (node == NULL || out == NULL)
			return cli_usage_error("ca issue: %s", "--node ID and --out "
			    "DIR are required");
		struct ca_issue_opts io = { days, offset };

		/* without --valid-from-offset, the CA's own back-dating holds */
		rc = have_offset ? ca_issue_ex(dir, node, out, &io, pin, err,
		    sizeof(err)) : ca_issue(dir, node, out, days, pin, err,
		    sizeof(err));
		if (rc == 0 && x->json)
			printf("{\"node\":\"%s\",\"dir\":\"%s\",\"pin\":\"%s\"}\n",
			    node, out, pin);
		else if (rc == 0)
			printf("issued %s/node.crt for node %s\nspki pin: %s\n",
			    out, node, pin);
	} else if (!strcmp(argv[0], "revoke")) {
		if (cert == NULL)
			return cli_usage_error("ca revoke: %s", "--cert FILE is "
			    "required");
		rc = ca_revoke(dir, cert, err, sizeof(err));
		if (rc == 0)
			printf("revoked %s; publish a new CRL with `nbxctl ca "
			    "crl`\n", cert);
	} else if (!strcmp(argv[0], "crl")) {
		if (out == NULL)
			return cli_usage_error("ca crl: %s", "--out FILE is required");
		rc = ca_crl(dir, out, days, err, sizeof(err));
		if (rc == 0)
			printf("wrote %s\n", out);
	} else {
		return cli_usage_error("unknown ca verb '%s'", argv[0]);
	}
	if (rc != 0) {
		fprintf(stderr, "nbxctl ca %s: %s\n", argv[0], err);
		return rc == NBX_EINVAL ? EXIT_USAGE : EXIT_RUNTIME;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Control socket                                                      */
/* ------------------------------------------------------------------ */

static int
socket_path(struct ctx *x, char *out, size_t len)
{
	struct nbx_config cfg;
	const char *conf = x->config;
	char err[1024];

	if (x->socket) {
		snprintf(out, len, "%s", x->socket);
		return 0;
	}
	if (conf == NULL)
		conf = getenv("NBX_CONF");
	if (conf == NULL)
		conf = "/etc/nbx/nbx.conf";
	memset(&cfg, 0, sizeof(cfg));
	if (config_load(conf, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "nbxctl: %s\n", err);
		return EXIT_USAGE;
	}
	snprintf(out, len, "%s", cfg.control_socket);
	config_fini(&cfg);
	return 0;
}

/*
 * Sends one request and prints errors.  Returns 0 with *reply holding an
 * "ok" reply, or the exit code.
 */
static int
call(struct ctx *x, json_t *req, json_t **reply)
{
	struct ctl_client *c;
	char path[4096], err[1024];
	int rc;

	*reply = NULL;
	if ((rc = socket_path(x, path, sizeof(path))) != 0) {
		json_decref(req);
		return rc;
	}
	if (ctl_client_open(path, &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "nbxctl: %s\n", err);
		json_decref(req);
		return EXIT_RUNTIME;
	}
	rc = ctl_client_call(c, req, reply, 0, err, sizeof(err));
	ctl_client_close(c);
	json_decref(req);
	if (rc != 0) {
		fprintf(stderr, "nbxctl: %s\n", err);
		return EXIT_RUNTIME;
	}
	if (!json_is_true(json_object_get(*reply, "ok"))) {
		const char *m = json_string_value(json_object_get(*reply,
		    "error"));
		int code = (int)json_integer_value(json_object_get(*reply,
		    "code"));

		fprintf(stderr, "nbxctl: %s\n", m ? m : "request failed");
		json_decref(*reply);
		*reply = NULL;
		/* a request the daemon found invalid is the caller's error */
		return (code == NBX_EINVAL || code == NBX_ECOLL ||
		    code == NBX_EFIELD || code == NBX_ETYPE ||
		    code == NBX_ELIMIT) ? EXIT_USAGE : EXIT_RUNTIME;
	}
	return 0;
}

static void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	if (s)
		puts(s);
	free(s);
}

static void
human_bytes(json_int_t b, char *out, size_t len)
{
	if (b < 10240)
		snprintf(out, len, "%" JSON_INTEGER_FORMAT " B", b);
	else if (b < 10 * 1024 * 1024)
		snprintf(out, len, "%" JSON_INTEGER_FORMAT " KiB", b / 1024);
	else
		snprintf(out, len, "%" JSON_INTEGER_FORMAT " MiB", b >> 20);
}

static void
print_peers(json_t *peers)
{
	size_t i;
	json_t *p;

	printf("%-12s %-12s %-24s %8s %8s %7s %9s %9s %6s %-5s %-7s  %s\n",
	    "PEER", "STATE", "SINCE", "SENT", "ACKED", "LAG", "IN", "OUT",
	    "QUAR", "PROTO", "SCHEMA", "LAST ERROR");
	json_array_foreach(peers, i, p) {
		char in[32], out[32], lag[32], proto[16];
		json_t *l = json_object_get(p, "lag");
		json_t *v = json_object_get(p, "protocol");
		json_t *sm = json_object_get(p, "schema_match");

		if (json_is_integer(v))
			snprintf(proto, sizeof(proto), "%" JSON_INTEGER_FORMAT,
			    json_integer_value(v));
		else
			snprintf(proto, sizeof(proto), "%s",
			    json_is_true(json_object_get(p,
			    "no_common_version")) ? "none" : "-");

		human_bytes(json_integer_value(json_object_get(p, "bytes_in")),
		    in, sizeof(in));
		human_bytes(json_integer_value(json_object_get(p, "bytes_out")),
		    out, sizeof(out));
		if (json_is_integer(l))
			snprintf(lag, sizeof(lag), "%" JSON_INTEGER_FORMAT,
			    json_integer_value(l));
		else
			snprintf(lag, sizeof(lag), "-");
		printf("%-12s %-12s %-24s %8" JSON_INTEGER_FORMAT " %8"
		    JSON_INTEGER_FORMAT " %7s %9s %9s %6" JSON_INTEGER_FORMAT
		    " %-5s %-7s  %s\n", ctl_str_or(p, "id", "?"),
		    ctl_str_or(p, "state", "?"), ctl_str_or(p, "since", "-"),
		    json_integer_value(json_object_get(p, "sent_seq")),
		    json_integer_value(json_object_get(p, "acked_seq")), lag,
		    in, out, json_integer_value(json_object_get(p,
		    "quarantined")), proto, json_is_boolean(sm) ?
		    (json_is_true(sm) ? "same" : "DIFFERS") : "-",
		    ctl_str_or(p, "last_error", ""));
	}
}

static const char STATUS_HELP[] =
    "usage: nbxctl status [--json]\n"
    "\n"
    "The node (id, records, last change) and each peer: up or down since\n"
    "when, how far behind it is (LAG, in changes), bytes each way, refused\n"
    "changes (QUAR), the sync protocol version the pair speaks (PROTO;\n"
    "\"none\" and state \"incompatible\" when the two share no version),\n"
    "whether the peer's schema equals this node's (SCHEMA; \"-\" for a\n"
    "version-1 peer, which does not say) and the last error.  --json adds,\n"
    "for a peer that is down, redial_in_ms: how long until it is dialled\n"
    "again, and the reconciliation counters.\n";

static int
cmd_status(struct ctx *x, int argc, char **argv)
{
	json_t *reply, *node;
	int rc;

	if (argc > 0)
		return cli_usage_error("status: unexpected '%s'", argv[0]);
	if ((rc = call(x, json_pack("{s:s}", "cmd", "status"), &reply)) != 0)
		return rc;
	if (x->json) {
		json_object_del(reply, "ok");
		print_json(reply);
	} else {
		node = json_object_get(reply, "node");
		printf("node %s  records %" JSON_INTEGER_FORMAT "  seq %"
		    JSON_INTEGER_FORMAT "  last change %s  quarantined %"
		    JSON_INTEGER_FORMAT "\nlisten %s  up since %s\n\n",
		    ctl_str_or(node, "id", "?"),
		    json_integer_value(json_object_get(node, "records")),
		    json_integer_value(json_object_get(node, "seq")),
		    ctl_str_or(node, "hlc", "-"),
		    json_integer_value(json_object_get(node, "quarantined")),
		    ctl_str_or(node, "listen", "?"), ctl_str_or(node, "started", "?"));
		print_peers(json_object_get(reply, "peers"));
	}
	json_decref(reply);
	return 0;
}

static const char PEER_HELP[] =
    "usage: nbxctl peer add ID HOST:PORT [--pin SHA256]\n"
    "       nbxctl peer remove ID\n"
    "       nbxctl peer list [--json]\n"
    "\n"
    "Peers added here are stored by nbxd and dialled at once; no restart.\n"
    "ID must equal the name in the peer's certificate.  --pin also binds\n"
    "the peer to one key (the pin `nbxctl ca issue` printed).  Peers set in\n"
    "the config file are changed there, then `nbxctl reload`.\n";

static int
cmd_peer(struct ctx *x, int argc, char **argv)
{
	json_t *reply, *req;
	int rc;

	if (argc < 1) {
		fputs(PEER_HELP, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[0], "add")) {
		const char *pin = NULL;

		if (argc != 3 && !(argc == 5 && !strcmp(argv[3], "--pin")))
			return cli_usage_error("%s", "peer add ID HOST:PORT "
			    "[--pin SHA256]");
		if (argc == 5)
			pin = argv[4];
		req = json_pack("{s:s, s:s, s:s}", "cmd", "peer_add", "id",
		    argv[1], "address", argv[2]);
		if (pin)
			json_object_set_new(req, "pin", json_string(pin));
		if ((rc = call(x, req, &reply)) != 0)
			return rc;
		printf("peer %s added; dialling %s\n", argv[1], argv[2]);
	} else if (!strcmp(argv[0], "remove")) {
		if (argc != 2)
			return cli_usage_error("%s", "peer remove ID");
		if ((rc = call(x, json_pack("{s:s, s:s}", "cmd", "peer_remove",
		    "id", argv[1]), &reply)) != 0)
			return rc;
		printf("peer %s removed\n", argv[1]);
	} else if (!strcmp(argv[0], "list")) {
		if ((rc = call(x, json_pack("{s:s}", "cmd", "peer_list"),
		    &reply)) != 0)
			return rc;
		if (x->json) {
			json_t *p;
			size_t i;

			json_array_foreach(json_object_get(reply, "peers"), i, p)
				print_json(p);
		} else {
			json_t *p;
			size_t i;

			printf("%-12s %-24s %-11s %7s  %s\n", "PEER", "ADDRESS",
			    "STATE", "LAG", "IDENTITY CHECK");
			json_array_foreach(json_object_get(reply, "peers"), i, p) {
				json_t *l = json_object_get(p, "lag");
				char lag[32] = "-";

				if (json_is_integer(l))
					snprintf(lag, sizeof(lag), "%"
					    JSON_INTEGER_FORMAT,
					    json_integer_value(l));
				printf("%-12s %-24s %-11s %7s  %s\n", ctl_str_or(p,
				    "id", "?"), ctl_str_or(p, "address", "?"),
				    ctl_str_or(p, "state", "?"), lag, ctl_str_or(p,
				    "identity", "?"));
			}
		}
	} else {
		return cli_usage_error("unknown peer verb '%s'", argv[0]);
	}
	json_decref(reply);
	return 0;
}

static const char PUT_HELP[] =
    "usage: nbxctl put COLL ID FIELD=VALUE... [--audience NODE,NODE...]\n"
    "       nbxctl delete COLL ID\n"
    "       nbxctl erase COLL ID\n"
    "\n"
    "put writes fields of a record; an ID without 'node:' gets this node's\n"
    "prefix.  Values are checked against the regional schema: integers,\n"
    "true/false, YYYY-MM-DD dates, enum values; a set is a comma-separated\n"
    "list; FIELD= clears a field.  --audience sets which nodes may hold the\n"
    "record's audience-scoped fields (only the creating node may set it).\n"
    "delete hides a record (a later put revives it); erase purges its\n"
    "values for good, everywhere it was sent.\n";

/* put, delete and erase: one request built from the command line. */
static int
cmd_write(struct ctx *x, int argc, char **argv)
{
	const char *cmd = x->verb;
	json_t *req, *fields, *reply;
	int rc;

	if (argc < 2)
		return cli_usage_error("%s: COLL and ID are required", cmd);
	req = json_pack("{s:s, s:s, s:s}", "cmd", cmd, "collection", argv[0],
	    "id", argv[1]);
	fields = json_object();
	for (int i = 2; i < argc; i++) {
		char *eq;

		if (!strcmp(argv[i], "--audience") && i + 1 < argc &&
		    !strcmp(cmd, "put")) {
			json_t *aud = json_array();
			char *s = strdup(argv[++i]), *save, *tok;

			for (tok = strtok_r(s, ", ", &save); tok;
			    tok = strtok_r(NULL, ", ", &save))
				json_array_append_new(aud, json_string(tok));
			free(s);
			json_object_set_new(req, "audience", aud);
			continue;
		}
		if (strcmp(cmd, "put") != 0 || (eq = strchr(argv[i], '=')) ==
		    NULL || eq == argv[i]) {
			json_decref(req);
			json_decref(fields);
			return cli_usage_error("%s: expected FIELD=VALUE, got '%s'",
			    cmd, argv[i]);
		}
		*eq = 0;
		json_object_set_new(fields, argv[i], json_string(eq + 1));
		*eq = '=';
	}
	json_object_set_new(req, "fields", fields);
	if ((rc = call(x, req, &reply)) != 0)
		return rc;
	if (x->json) {
		json_object_del(reply, "ok");
		print_json(reply);
	} else {
		printf("%s %s/%s: %" JSON_INTEGER_FORMAT " change(s) applied, %"
		    JSON_INTEGER_FORMAT " unchanged\n", cmd, argv[0],
		    ctl_str_or(reply, "id", argv[1]),
		    json_integer_value(json_object_get(reply, "applied")),
		    json_integer_value(json_object_get(reply, "unchanged")));
	}
	json_decref(reply);
	return 0;
}

static const char IMPORT_HELP[] =
    "usage: nbxctl import FILE.jsonl | -\n"
    "\n"
    "Loads records, one JSON object per line:\n"
    "  {\"collection\":\"service\",\"id\":\"ee:shelter-1\",\n"
    "   \"fields\":{\"name\":\"...\",\"languages\":[\"et\",\"ru\"]},\n"
    "   \"audience\":[\"ee\",\"lv\"]}\n"
    "Streams any size in bounded memory, " STR(IMPORT_BATCH) " lines per "
    "transaction.  Each\n"
    "line is applied whole or not at all; a bad line is reported with its\n"
    "number and reason and the import goes on.  Ends with a summary.\n"
    "Importing the same file again changes nothing.  Exit 0 if every line\n"
    "was accepted, 1 if any was rejected or the daemon failed.\n";

/*
 * Streams the file to nbxd (import.c): lines as they are in the file,
 * IMPORT_DEPTH requests in flight, bad lines reported by number.
 */
static int
cmd_import(struct ctx *x, int argc, char **argv)
{
	struct import_stats st = { 0, 0, 0, 0 };
	struct ctl_client *c = NULL;
	char path[4096], err[1024];
	FILE *f;
	int rc = 0;

	if (argc != 1)
		return cli_usage_error("%s", "import FILE.jsonl (or - for stdin)");
	f = strcmp(argv[0], "-") ? fopen(argv[0], "r") : stdin;
	if (f == NULL) {
		fprintf(stderr, "nbxctl import: %s: %s\n", argv[0],
		    strerror(errno));
		return EXIT_RUNTIME;
	}
	if ((rc = socket_path(x, path, sizeof(path))) != 0)
		goto out;
	if (ctl_client_open(path, &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "nbxctl: %s\n", err);
		rc = EXIT_RUNTIME;
		goto out;
	}
	if (import_stream(c, f, argv[0], isatty(2), &st) != 0) {
		rc = EXIT_RUNTIME;
		goto out;
	}
	if (x->json)
		printf("{\"read\":%lu,\"applied\":%lu,\"unchanged\":%lu,"
		    "\"rejected\":%lu}\n", st.read, st.applied, st.unchanged,
		    st.rejected);
	else
		printf("import %s: read %lu, applied %lu, unchanged %lu, "
		    "rejected %lu\n", argv[0], st.read, st.applied, st.unchanged,
		    st.rejected);
	rc = st.rejected ? EXIT_RUNTIME : 0;
out:
	ctl_client_close(c);
	if (f != stdin)
		fclose(f);
	return rc;
}

static const char QUARANTINE_HELP[] =
    "usage: nbxctl quarantine [--json]\n"
    "\n"
    "Changes refused from peers: when, from which peer, what, and why.\n";

static int
cmd_quarantine(struct ctx *x, int argc, char **argv)
{
	json_t *reply, *e;
	size_t i;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = call(x, json_pack("{s:s}", "cmd", "quarantine"), &reply)) != 0)
		return rc;
	if (!x->json)
		printf("%-24s %-8s %-30s %-16s %s\n", "TIME", "PEER", "RECORD",
		    "FIELD", "REASON");
	json_array_foreach(json_object_get(reply, "entries"), i, e) {
		if (x->json) {
			print_json(e);
			continue;
		}
		char rec[200];

		snprintf(rec, sizeof(rec), "%s/%s", ctl_str_or(e, "collection", ""),
		    ctl_str_or(e, "id", ""));
		printf("%-24s %-8s %-30s %-16s %s\n", ctl_str_or(e, "time", "-"),
		    ctl_str_or(e, "peer", "?"), rec, ctl_str_or(e, "field", "-"),
		    ctl_str_or(e, "reason", "?"));
	}
	json_decref(reply);
	return 0;
}

static const char METRICS_HELP[] =
    "usage: nbxctl metrics\n"
    "\n"
    "Prometheus text exposition: peer up, lag, bytes and changes each way,\n"
    "quarantined, records, store and map size.  Serve it with a textfile\n"
    "collector or a small wrapper.\n";

static int
cmd_metrics(struct ctx *x, int argc, char **argv)
{
	json_t *reply;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = call(x, json_pack("{s:s}", "cmd", "metrics"), &reply)) != 0)
		return rc;
	fputs(ctl_str_or(reply, "text", ""), stdout);
	json_decref(reply);
	return 0;
}

static const char AUDIT_HELP[] =
    "usage: nbxctl audit [--peer ID] [--record COLL/ID] [--since TIME] "
    "[--json]\n"
    "\n"
    "The disclosure log: which peer was sent which fields of which record,\n"
    "and when (names and versions, never values).  TIME is YYYY-MM-DD or\n"
    "YYYY-MM-DDTHH:MM:SSZ (UTC).\n";

/* YYYY-MM-DD[THH:MM[:SS]][Z] in UTC to Unix ms; -1 if malformed. */
static long long
parse_time(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL &&
	    (end = strptime(s, "%Y-%m-%dT%H:%M", &tm)) == NULL &&
	    (end = strptime(s, "%Y-%m-%d", &tm)) == NULL)
		return -1;
	if (*end == 'Z')
		end++;
	if (*end)
		return -1;
	return (long long)timegm(&tm) * 1000;
}

static int
cmd_audit(struct ctx *x, int argc, char **argv)
{
	json_t *req = json_pack("{s:s}", "cmd", "audit"), *reply, *e, *it;
	size_t i, j;
	int rc;

	for (int k = 0; k < argc; k += 2) {
		const char *v = k + 1 < argc ? argv[k + 1] : NULL;

		if (v == NULL) {
			json_decref(req);
			return cli_usage_error("audit: %s needs a value", argv[k]);
		}
		if (!strcmp(argv[k], "--peer")) {
			json_object_set_new(req, "peer", json_string(v));
		} else if (!strcmp(argv[k], "--record")) {
			json_object_set_new(req, "record", json_string(v));
		} else if (!strcmp(argv[k], "--since")) {
			long long t = parse_time(v);

			if (t < 0) {
				json_decref(req);
				return cli_usage_error("audit: --since takes YYYY-MM-DD "
				    "or YYYY-MM-DDTHH:MM:SSZ, not '%s'", v);
			}
			json_object_set_new(req, "since", json_integer(t));
		} else {
			json_decref(req);
			return cli_usage_error("audit: unknown option '%s'", argv[k]);
		}
	}
	if ((rc = call(x, req, &reply)) != 0)
		return rc;
	if (!x->json)
		printf("%-24s %-8s %-34s %s\n", "TIME", "PEER", "RECORD",
		    "FIELDS");
	json_array_foreach(json_object_get(reply, "entries"), i, e) {
		char rec[200];

		if (x->json) {
			print_json(e);
			continue;
		}
		snprintf(rec, sizeof(rec), "%s/%s", ctl_str_or(e, "collection", ""),
		    ctl_str_or(e, "id", ""));
		printf("%-24s %-8s %-34s", ctl_str_or(e, "time", "-"),
		    ctl_str_or(e, "peer", "?"), rec);
		json_array_foreach(json_object_get(e, "items"), j, it) {
			const char *k = ctl_str_or(it, "kind", "?");
			int data = !strcmp(k, "field") || !strcmp(k, "element");

			printf("%s%s%s%s", j ? "," : " ", data ? "" : "(",
			    data ? ctl_str_or(it, "field", "?") : k, data ? "" : ")");
		}
		printf("\n");
	}
	json_decref(reply);
	return 0;
}

static const char ERASURES_HELP[] =
    "usage: nbxctl erasures [--json]\n"
    "\n"
    "Every erased record this node knows: when and by whom it was erased,\n"
    "which nodes confirmed the purge (receipts) and which are still pending.\n"
    "A pending node gets the erasure whenever it reconnects; it never expires.\n";

static int
cmd_erasures(struct ctx *x, int argc, char **argv)
{
	json_t *reply, *e, *v;
	size_t i, j;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = call(x, json_pack("{s:s}", "cmd", "erasures"), &reply)) != 0)
		return rc;
	if (!x->json)
		printf("%-34s %-24s %-6s %-24s %s\n", "RECORD", "ERASED", "BY",
		    "RECEIPTS", "PENDING");
	json_array_foreach(json_object_get(reply, "erasures"), i, e) {
		char rec[200], got[256] = "", pend[256] = "";
		size_t off = 0;

		if (x->json) {
			print_json(e);
			continue;
		}
		snprintf(rec, sizeof(rec), "%s/%s", ctl_str_or(e, "collection", ""),
		    ctl_str_or(e, "id", ""));
		json_array_foreach(json_object_get(e, "receipts"), j, v)
			off += (size_t)snprintf(got + off, off < sizeof(got) ?
			    sizeof(got) - off : 0, "%s%s", j ? "," : "",
			    ctl_str_or(v, "node", "?"));
		off = 0;
		json_array_foreach(json_object_get(e, "pending"), j, v)
			off += (size_t)snprintf(pend + off, off < sizeof(pend) ?
			    sizeof(pend) - off : 0, "%s%s", j ? "," : "",
			    json_string_value(v));
		printf("%-34s %-24s %-6s %-24s %s\n", rec, ctl_str_or(e, "erased_at",
		    "-"), ctl_str_or(e, "erased_by", "?"), got, *pend ? pend : "-");
	}
	json_decref(reply);
	return 0;
}

static const char COMPACT_HELP[] =
    "usage: nbxctl compact\n"
    "\n"
    "Rewrites the node's store without free pages (LMDB MDB_CP_COMPACT) and\n"
    "swaps it in, so bytes of erased or purged values leave the disk.\n"
    "nbxd pauses for the copy; it needs free disk space for the data in\n"
    "use and refuses with a clear message when there is not enough.\n";

static int
cmd_compact(struct ctx *x, int argc, char **argv)
{
	json_t *reply;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = call(x, json_pack("{s:s}", "cmd", "compact"), &reply)) != 0)
		return rc;
	if (x->json) {
		json_object_del(reply, "ok");
		print_json(reply);
	} else {
		printf("compacted: %" JSON_INTEGER_FORMAT " -> %"
		    JSON_INTEGER_FORMAT " bytes\n",
		    json_integer_value(json_object_get(reply, "before")),
		    json_integer_value(json_object_get(reply, "after")));
	}
	json_decref(reply);
	return 0;
}

static const char VERIFY_HELP[] =
    "usage: nbxctl verify PEER [--repair [--timeout SECONDS]] [--json]\n"
    "\n"
    "Prints the digest of everything this node and PEER may both hold\n"
    "(region fields, and audience fields of records whose audience holds\n"
    "both).  Run `nbxctl verify` for this node on PEER: equal digests\n"
    "mean the two have converged.\n"
    "\n"
    "--repair first runs a reconciliation with PEER (protocol version 2):\n"
    "the two find the records whose views differ and exchange them whole,\n"
    "then the digest is printed.  It waits at most SECONDS (default 120)\n"
    "for the run to end.  Exit status 0 when it ended, 1 when PEER is not\n"
    "connected, speaks version 1, or the run did not end in time.\n";

/* The reconciliation runs of `peer` that ended, from peer_list; -1 if
   the peer is not listed or the call failed. */
static json_int_t
peer_runs(struct ctx *x, const char *peer, int *active)
{
	json_t *reply, *p;
	json_int_t runs = -1;
	size_t i;

	*active = 0;
	if (call(x, json_pack("{s:s}", "cmd", "peer_list"), &reply) != 0)
		return -1;
	json_array_foreach(json_object_get(reply, "peers"), i, p)
		if (!strcmp(ctl_str_or(p, "id", ""), peer)) {
			runs = json_integer_value(json_object_get(p,
			    "reconcile_runs"));
			*active = json_is_true(json_object_get(p,
			    "reconcile_active"));
		}
	json_decref(reply);
	return runs;
}

/* Starts a run with peer and waits until it ends; 0 or an exit code. */
static int
verify_repair(struct ctx *x, const char *peer, long timeout_s)
{
	json_t *reply;
	json_int_t before, now;
	int rc, active;

	if ((rc = call(x, json_pack("{s:s, s:s, s:b}", "cmd", "verify",
	    "peer", peer, "repair", 1), &reply)) != 0)
		return rc;
	before = json_integer_value(json_object_get(reply, "runs"));
	json_decref(reply);
	for (long i = 0; i < timeout_s * 10; i++) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };

		now = peer_runs(x, peer, &active);
		if (now < 0) {
			fprintf(stderr, "nbxctl: lost peer %s during the "
			    "reconciliation\n", peer);
			return EXIT_RUNTIME;
		}
		if (now > before && !active) {
			if (!x->json)
				printf("reconciled with %s\n", peer);
			return 0;
		}
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "nbxctl: the reconciliation with %s did not end "
	    "within %ld s (see nbxctl status)\n", peer, timeout_s);
	return EXIT_RUNTIME;
}

static int
cmd_verify(struct ctx *x, int argc, char **argv)
{
	const char *peer = NULL;
	long timeout_s = 120;
	int repair = 0, rc;
	json_t *reply;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--repair"))
			repair = 1;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			char *end;

			timeout_s = strtol(argv[++i], &end, 10);
			if (*end != 0 || timeout_s < 1 || timeout_s > 86400)
				return cli_usage_error("verify: --timeout "
				    "wants 1-86400 seconds, got '%s'", argv[i]);
		} else if (argv[i][0] == '-' || peer != NULL)
			return cli_usage_error("verify: unexpected '%s'",
			    argv[i]);
		else
			peer = argv[i];
	}
	if (peer == NULL)
		return cli_usage_error("%s", "verify PEER");
	if (repair && (rc = verify_repair(x, peer, timeout_s)) != 0)
		return rc;
	if ((rc = call(x, json_pack("{s:s, s:s}", "cmd", "verify", "peer",
	    peer), &reply)) != 0)
		return rc;
	if (x->json) {
		json_object_del(reply, "ok");
		print_json(reply);
	} else {
		printf("%s  %s<->%s  %" JSON_INTEGER_FORMAT " records, %"
		    JSON_INTEGER_FORMAT " changes\n", ctl_str_or(reply, "digest", "?"),
		    ctl_str_or(reply, "node", "?"), peer,
		    json_integer_value(json_object_get(reply, "records")),
		    json_integer_value(json_object_get(reply, "changes")));
	}
	json_decref(reply);
	return 0;
}

static const char RELOAD_HELP[] = "usage: nbxctl reload\n";

static int
cmd_reload(struct ctx *x, int argc, char **argv)
{
	json_t *reply;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = call(x, json_pack("{s:s}", "cmd", "reload"), &reply)) != 0)
		return rc;
	puts("reloaded");
	json_decref(reply);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Verbs                                                               */
/* ------------------------------------------------------------------ */

/*
 * A verb's handler gets the arguments after the verb (--json taken out)
 * and returns the exit code: 0, EXIT_RUNTIME or EXIT_USAGE.  VERB --help
 * (or -h) anywhere among them prints the row's help instead.
 */
struct verb {
	const char *name;
	int (*fn)(struct ctx *x, int argc, char **argv);
	const char *help;
};

static const struct verb verbs[] = {
	{ "ca",		cmd_ca,		CA_HELP },
	{ "status",	cmd_status,	STATUS_HELP },
	{ "peer",	cmd_peer,	PEER_HELP },
	{ "put",	cmd_write,	PUT_HELP },
	{ "delete",	cmd_write,	PUT_HELP },
	{ "erase",	cmd_write,	PUT_HELP },
	{ "import",	cmd_import,	IMPORT_HELP },
	{ "quarantine",	cmd_quarantine,	QUARANTINE_HELP },
	{ "metrics",	cmd_metrics,	METRICS_HELP },
	{ "audit",	cmd_audit,	AUDIT_HELP },
	{ "verify",	cmd_verify,	VERIFY_HELP },
	{ "compact",	cmd_compact,	COMPACT_HELP },
	{ "erasures",	cmd_erasures,	ERASURES_HELP },
	{ "reload",	cmd_reload,	RELOAD_HELP },
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctx x = { NULL, NULL, 0, NULL };
	int c, i;
	const char *verb;

	/* options before the verb; --json may also follow it */
	while ((c = getopt_long(argc, argv, "+c:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': x.config = optarg; break;
		case 's': x.socket = optarg; break;
		case 'j': x.json = 1; break;
		case 'h': fputs(MAIN_HELP, stdout); return 0;
		default: fputs(MAIN_HELP, stderr); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(MAIN_HELP, stderr);
		return EXIT_USAGE;
	}
	verb = argv[optind];
	argc -= optind + 1;
	argv += optind + 1;
	for (i = 0; i < argc; i++)
		if (!strcmp(argv[i], "--json")) {
			x.json = 1;
			memmove(&argv[i], &argv[i + 1],
			    (size_t)(argc - i - 1) * sizeof(*argv));
			argc--;
			i--;
		}
	for (size_t k = 0; k < sizeof(verbs) / sizeof(verbs[0]); k++) {
		if (strcmp(verb, verbs[k].name) != 0)
			continue;
		if (wants_help(argc, argv)) {
			fputs(verbs[k].help, stdout);
			return 0;
		}
		x.verb = verb;
		return verbs[k].fn(&x, argc, argv);
	}
	return cli_usage_error("unknown verb '%s'", verb);
}
