/*
 * config.h - the node configuration file (nbx.conf, INI).
 *
 *   [node]
 *   id = ee                  ; required; 1-32 of [a-z0-9-]
 *   data_dir = /var/lib/nbx  ; required
 *   listen = 0.0.0.0:7400    ; default 127.0.0.1:7400
 *   control_socket = ...     ; default <data_dir>/nbxd.sock
 *   schema = ...             ; default schema.conf next to this file
 *   map_size_mb = 64         ; initial LMDB map size
 *   [tls]
 *   ca = ...  cert = ...  key = ...   ; required
 *   crl =                    ; optional
 *   [sync]
 *   max_clock_drift_ms, ping_interval_ms, dead_after_ms, backoff_min_ms,
 *   backoff_max_ms, batch_bytes, window
 *   [peer lv]                ; one section per static peer
 *   address = 10.1.2.3:7400  ; required
 *   pin =                    ; optional SPKI SHA-256, 64 hex (colons allowed)
 *
 * Relative paths (data_dir, control_socket, schema, tls files) are taken
 * relative to the directory holding the configuration file.  conf/
 * nbx.conf.example documents every key, its default and its range.
 */
#ifndef NBX_CONFIG_H
#define NBX_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "change.h"

struct nbx_peer_conf {
	char id[NBX_ID_MAX + 1];
	char host[256];		/* without brackets for IPv6 */
	uint16_t port;
	uint8_t pin[32];	/* SPKI SHA-256, valid when has_pin */
	int has_pin;
	int no_relay;		/* relay = no: only its own changes accepted */
	int line;		/* line of the [peer ID] header */
};

struct nbx_config {
	char id[NBX_ID_MAX + 1];
	char data_dir[PATH_MAX];
	char listen_host[256];
	uint16_t listen_port;
	char control_socket[108];	/* fits sockaddr_un.sun_path */
	char schema[PATH_MAX];
	uint64_t map_size;		/* bytes */
	char tls_ca[PATH_MAX], tls_cert[PATH_MAX], tls_key[PATH_MAX];
	char tls_crl[PATH_MAX];		/* "" when no CRL is configured */
	uint64_t max_clock_drift_ms, ping_interval_ms, dead_after_ms;
	uint64_t backoff_min_ms, backoff_max_ms;
	uint32_t batch_bytes, window;
	uint32_t protocol_min, protocol_max;	/* sync versions spoken */
	uint64_t reconcile_interval_s;	/* 0: on connect and on demand */
	struct nbx_peer_conf *peers;	/* owned; file order */
	size_t npeers;
};

/*
 * Reads the configuration at `path` into *out, which is cleared first.
 * Returns 0 (free with config_fini), NBX_EIO if the file cannot be read,
 * NBX_ECONFIG if it is invalid or NBX_ENOMEM.  On failure writes a message
 * into err ("FILE:LINE: what is wrong", or "FILE: reason" for NBX_EIO;
 * always NUL-terminated when errlen > 0) and leaves *out cleared.
 * Only parses: no file named in the configuration is opened.
 */
int config_load(const char *path, struct nbx_config *out, char *err,
    size_t errlen);

/* Frees what config_load allocated and clears *c.  Safe to call twice. */
void config_fini(struct nbx_config *c);

/*
 * Parses "host:port": an IPv4 address, a hostname, or "[v6]:port" (host is
 * stored without the brackets).  The port is 1-65535.  Returns 0 or
 * NBX_EINVAL (also when host does not fit in hostlen); on failure host is
 * "" and *port 0.
 */
int config_parse_hostport(const char *s, char *host, size_t hostlen,
    uint16_t *port);

/*
 * Parses a SHA-256 pin: 64 hex digits, either case, optionally with a
 * colon between every two (as openssl prints fingerprints).  Returns 0, or
 * NBX_EINVAL leaving out untouched.
 */
int config_parse_pin(const char *hex, uint8_t out[32]);

#endif
