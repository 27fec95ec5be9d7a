/*
 * main.c - nbxd: runs one nbx node in the foreground (systemd style), its
 * log on stderr.  Exit 0 after a clean shutdown, 1 on a runtime failure,
 * 2 on a usage or configuration error.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jarena.h"
#include "log.h"
#include "nbx_err.h"
#include "node.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: nbxd -c FILE\n"
	    "\n"
	    "Runs an nbx node in the foreground: stores records in LMDB and\n"
	    "replicates the fields policy permits to peer nodes over mutually\n"
	    "authenticated TLS 1.3.  Logs go to stderr.\n"
	    "\n"
	    "  -c FILE    node configuration (see conf/nbx.conf.example)\n"
	    "  -v         verbose (debug) logging\n"
	    "  -h, --help this help\n"
	    "\n"
	    "Signals: SIGTERM/SIGINT shut down cleanly; SIGHUP reloads the\n"
	    "certificates, the CRL and the peers from FILE.\n");
}

int
main(int argc, char **argv)
{
	const char *conf = NULL;
	struct node *n = NULL;
	uv_loop_t loop;
	char err[1024];
	int rc;

	jarena_install();	/* before jansson allocates anything */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			conf = argv[++i];
		} else if (!strcmp(argv[i], "-v")) {
			log_set_level(LOG_DEBUG);
		} else {
			fprintf(stderr, "nbxd: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (conf == NULL) {
		usage(stderr);
		return 2;
	}
	if (getenv("NBX_DEBUG"))
		log_set_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&loop);
	rc = node_new(&loop, conf, &n, err, sizeof(err));
	if (rc != 0) {
		log_msg(LOG_ERROR, NULL, "%s", err);
		uv_loop_close(&loop);
		return rc == NBX_ECONFIG || rc == NBX_ESCHEMA ? 2 : 1;
	}
	rc = node_run(n);
	node_free(n);
	uv_loop_close(&loop);
	return rc == 0 ? 0 : 1;
}
