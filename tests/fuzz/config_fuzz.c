/*
 * config_fuzz.c - libFuzzer harness for the node configuration parser
 * (config_load, daemon/conf/config.h) on arbitrary text.
 *
 * config_load reads a file, so each input is written to nbx.conf in the
 * process's scratch directory under /dev/shm (or /tmp), which is removed
 * at exit.  The error buffer's size comes from the input and sits on the
 * heap, so a message written past it is caught.  A configuration that
 * loads must hold what config.h promises: a valid id, absolute resolved
 * paths, a socket path that fits, numbers in their ranges, the sync
 * relations, and peers with valid, unique ids other than this node's.
 *
 * The first line of the input is also given to config_parse_hostport
 * (with a host buffer sized from the input) and config_parse_pin.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"

#include "config.h"

static void
config_write(const char *path, const uint8_t *data, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t off = 0;

	fz_check(fd >= 0, "open the scratch config");
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);

		fz_check(w > 0, "write the scratch config");
		off += (size_t)w;
	}
	close(fd);
}

static void
config_check(const struct nbx_config *c)
{
	fz_check(nbx_node_id_valid(nbx_str_c(c->id)), "id");
	fz_check(c->data_dir[0] == '/' && c->schema[0] == '/' &&
	    c->tls_ca[0] == '/' && c->tls_cert[0] == '/' &&
	    c->tls_key[0] == '/', "paths resolved");
	fz_check(c->tls_crl[0] == 0 || c->tls_crl[0] == '/', "crl path");
	fz_check(c->control_socket[0] == '/' &&
	    strlen(c->control_socket) < sizeof(c->control_socket),
	    "control socket fits");
	fz_check(c->listen_port >= 1 && c->listen_host[0] != 0, "listen");
	fz_check(c->map_size >= (1u << 20), "map size");
	fz_check(c->max_clock_drift_ms >= 1 && c->ping_interval_ms >= 100 &&
	    c->dead_after_ms > c->ping_interval_ms &&
	    c->backoff_min_ms <= c->backoff_max_ms, "sync relations");
	fz_check(c->batch_bytes >= 1024 && c->batch_bytes <= (16u << 20) &&
	    c->window >= 1 && c->window <= 1024, "sync ranges");
	fz_check(c->npeers == 0 || c->peers != NULL, "peers");
	for (size_t i = 0; i < c->npeers; i++) {
		const struct nbx_peer_conf *p = &c->peers[i];

		fz_check(nbx_node_id_valid(nbx_str_c(p->id)), "peer id");
		fz_check(strcmp(p->id, c->id) != 0, "peer is not self");
		fz_check(p->port >= 1 && p->host[0] != 0, "peer address");
		for (size_t j = 0; j < i; j++)
			fz_check(strcmp(p->id, c->peers[j].id) != 0,
			    "peer ids unique");
	}
}

static void
config_parsers(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	char *line = fz_text(data, nl ? (size_t)(nl - data) : size);
	size_t hostlen = 1 + size % 300;
	char *host = malloc(hostlen);
	uint8_t pin[32], before[32];
	uint16_t port = 1;

	fz_check(host != NULL, "malloc");
	if (config_parse_hostport(line, host, hostlen, &port) == 0)
		fz_check(port >= 1 && strlen(host) < hostlen && host[0] != 0,
		    "hostport result");
	else
		fz_check(port == 0 && host[0] == 0, "hostport cleared");
	memset(pin, 0xa5, sizeof(pin));
	memcpy(before, pin, sizeof(pin));
	if (config_parse_pin(line, pin) != 0)
		fz_check(memcmp(pin, before, sizeof(pin)) == 0,
		    "pin untouched on error");
	free(host);
	free(line);
}

int nbx_fuzz_config(const uint8_t *data, size_t size);

int
nbx_fuzz_config(const uint8_t *data, size_t size)
{
	struct nbx_config c;
	char path[128];
	size_t errlen = size % 2 ? 1 + size % 48 : 512;
	char *err = malloc(errlen);
	int rc;

	fz_check(err != NULL, "malloc");
	snprintf(path, sizeof(path), "%s/nbx.conf", fz_scratch());
	config_write(path, data, size);
	rc = config_load(path, &c, err, errlen);
	if (rc != 0) {
		static const struct nbx_config zero;

		fz_check(rc == NBX_ECONFIG || rc == NBX_ENOMEM, "load code");
		fz_check(memchr(err, 0, errlen) != NULL, "err terminated");
		fz_check(memcmp(&c, &zero, sizeof(c)) == 0, "cleared on error");
	} else {
		config_check(&c);
	}
	config_fini(&c);
	config_fini(&c);
	free(err);
	config_parsers(data, size);
	return 0;
}

NBX_FUZZ_MAIN(nbx_fuzz_config, (void)fz_scratch())
