/*
 * config.c - reads nbx.conf into a struct nbx_config.
 *
 * The file is parsed completely and checked before the daemon acts on any
 * of it, and every mistake is reported as "FILE:LINE: what is wrong" so an
 * operator can fix it without reading code.  Only parsing happens here:
 * certificates, directories and the schema are opened by their owners.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_file.h"
#include "config.h"
#include "ini_lines.h"
#include "nbx_err.h"

enum key_kind {
	K_ID,		/* node id */
	K_PATH,		/* non-empty path, resolved */
	K_PATH_OPT,	/* path; empty means unset */
	K_SOCKET,	/* path that must fit sun_path */
	K_LISTEN,	/* host:port */
	K_U64,		/* number in [min, max] */
	K_U32,
	K_MB,		/* megabytes in [min, max], stored as bytes */
};

enum sect { S_NONE, S_NODE, S_TLS, S_SYNC, S_PEER, S_COUNT };
static const char *const sect_names[S_COUNT] =
    { "", "node", "tls", "sync", "peer" };

/* The keys of [node], [tls] and [sync], indexing keys[] below. */
enum key_index {
	KI_ID, KI_DATA_DIR, KI_LISTEN, KI_SOCKET, KI_SCHEMA, KI_MAP_SIZE,
	KI_CA, KI_CERT, KI_KEY, KI_CRL,
	KI_DRIFT, KI_PING, KI_DEAD, KI_BACKOFF_MIN, KI_BACKOFF_MAX,
	KI_BATCH, KI_WINDOW, KI_PROTO_MIN, KI_PROTO_MAX, KI_RECONCILE, NKEYS
};

struct key_def {
	enum sect sect;
	const char *name;
	enum key_kind kind;
	int required;
	size_t off;		/* into struct nbx_config */
	size_t size;		/* string fields: buffer size */
	uint64_t min, max, dflt;
};

#define STR(f)	offsetof(struct nbx_config, f), \
		sizeof(((struct nbx_config *)0)->f)
#define NUM(f)	offsetof(struct nbx_config, f), 0

static const struct key_def keys[NKEYS] = {
	[KI_ID] = { S_NODE, "id", K_ID, 1, STR(id), 0, 0, 0 },
	[KI_DATA_DIR] = { S_NODE, "data_dir", K_PATH, 1, STR(data_dir),
	    0, 0, 0 },
	[KI_LISTEN] = { S_NODE, "listen", K_LISTEN, 0, NUM(listen_port),
	    0, 0, 0 },
	[KI_SOCKET] = { S_NODE, "control_socket", K_SOCKET, 0,
	    STR(control_socket), 0, 0, 0 },
	[KI_SCHEMA] = { S_NODE, "schema", K_PATH, 0, STR(schema), 0, 0, 0 },
	[KI_MAP_SIZE] = { S_NODE, "map_size_mb", K_MB, 0, NUM(map_size),
	    1, 1 << 20, 64 },
	[KI_CA] = { S_TLS, "ca", K_PATH, 1, STR(tls_ca), 0, 0, 0 },
	[KI_CERT] = { S_TLS, "cert", K_PATH, 1, STR(tls_cert), 0, 0, 0 },
	[KI_KEY] = { S_TLS, "key", K_PATH, 1, STR(tls_key), 0, 0, 0 },
	[KI_CRL] = { S_TLS, "crl", K_PATH_OPT, 0, STR(tls_crl), 0, 0, 0 },
	[KI_DRIFT] = { S_SYNC, "max_clock_drift_ms", K_U64, 0,
	    NUM(max_clock_drift_ms), 1, 3600000, 500 },
	[KI_PING] = { S_SYNC, "ping_interval_ms", K_U64, 0,
	    NUM(ping_interval_ms), 100, 3600000, 15000 },
	[KI_DEAD] = { S_SYNC, "dead_after_ms", K_U64, 0,
	    NUM(dead_after_ms), 200, 86400000, 45000 },
	[KI_BACKOFF_MIN] = { S_SYNC, "backoff_min_ms", K_U64, 0,
	    NUM(backoff_min_ms), 1, 3600000, 200 },
	[KI_BACKOFF_MAX] = { S_SYNC, "backoff_max_ms", K_U64, 0,
	    NUM(backoff_max_ms), 1, 86400000, 30000 },
	[KI_BATCH] = { S_SYNC, "batch_bytes", K_U32, 0, NUM(batch_bytes),
	    1024, 16 << 20, 1 << 20 },
	[KI_WINDOW] = { S_SYNC, "window", K_U32, 0, NUM(window), 1, 1024, 8 },
	/* the sync protocol versions this node speaks (session.h) */
	[KI_PROTO_MIN] = { S_SYNC, "protocol_min", K_U32, 0,
	    NUM(protocol_min), 1, 2, 1 },
	[KI_PROTO_MAX] = { S_SYNC, "protocol_max", K_U32, 0,
	    NUM(protocol_max), 1, 2, 2 },
	/* 0: reconcile only on connect and on demand */
	[KI_RECONCILE] = { S_SYNC, "reconcile_interval_s", K_U64, 0,
	    NUM(reconcile_interval_s), 0, 7 * 86400, 600 },
};

struct cload {
	struct nbx_ini ini;
	struct nbx_config *c;
	char dir[PATH_MAX];		/* of the config file, "" for cwd */
	enum sect sect;
	int sect_line[S_COUNT];		/* header lines, 0 if absent */
	int key_line[NKEYS];
	struct nbx_peer_conf *peer;	/* current [peer ID] */
	int addr_line, pin_line, relay_line;	/* of the current peer */
	int nomem;
};

/* ------------------------------------------------------------------ */
/* Host, port and pin parsing                                         */
/* ------------------------------------------------------------------ */

/* 1 if s is a DNS name: dot-separated labels of 1-63 [A-Za-z0-9-]. */
static int
hostname_valid(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
		} else if ((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-') {
			if ((label == 0 && s[i] == '-') || ++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0 && s[n - 1] != '-';
}

int
config_parse_hostport(const char *s, char *host, size_t hostlen,
    uint16_t *port)
{
	unsigned char addr[16];
	char tmp[256];
	const char *colon, *h = s, *p;
	size_t hn;
	unsigned long v = 0;

	if (hostlen > 0)
		host[0] = '\0';
	*port = 0;
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return NBX_EINVAL;
		h = s + 1;
		hn = (size_t)(rb - h);
		p = rb + 2;
		if (hn == 0 || hn >= sizeof(tmp))
			return NBX_EINVAL;
		memcpy(tmp, h, hn);
		tmp[hn] = '\0';
		if (inet_pton(AF_INET6, tmp, addr) != 1)
			return NBX_EINVAL;
	} else {
		if ((colon = strchr(s, ':')) == NULL || strchr(colon + 1, ':'))
			return NBX_EINVAL;	/* IPv6 needs brackets */
		hn = (size_t)(colon - s);
		p = colon + 1;
		if (hn == 0 || hn >= sizeof(tmp))
			return NBX_EINVAL;
		memcpy(tmp, h, hn);
		tmp[hn] = '\0';
		/* All digits and dots is meant as IPv4; it must be one. */
		if (strspn(tmp, "0123456789.") == hn) {
			if (inet_pton(AF_INET, tmp, addr) != 1)
				return NBX_EINVAL;
		} else if (!hostname_valid(tmp, hn)) {
			return NBX_EINVAL;
		}
	}
	if (*p == '\0' || strspn(p, "0123456789") != strlen(p) ||
	    strlen(p) > 5)
		return NBX_EINVAL;
	v = strtoul(p, NULL, 10);
	if (v < 1 || v > 65535 || hn >= hostlen)
		return NBX_EINVAL;
	memcpy(host, tmp, hn + 1);
	*port = (uint16_t)v;
	return 0;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Colons are accepted only between two bytes, so "ab:cd:..." and "abcd..."
 * parse, and a colon splitting a byte ("a:bcd...") does not.
 */
int
config_parse_pin(const char *hex, uint8_t out[32])
{
	uint8_t tmp[32];
	size_t n = 0;
	const char *s = hex;

	while (*s) {
		int hi, lo;

		if (n > 0 && *s == ':')
			s++;
		if (n == 32 || (hi = hexval(s[0])) < 0 ||
		    (lo = hexval(s[1])) < 0)
			return NBX_EINVAL;
		tmp[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	if (n != 32)
		return NBX_EINVAL;
	memcpy(out, tmp, sizeof(tmp));
	return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                            */
/* ------------------------------------------------------------------ */

/*
 * Resolves `v` against the configuration file's directory into dst
 * (size bytes).  Returns 0, or -1 if the result does not fit.
 */
static int
path_resolve(const struct cload *L, const char *v, char *dst, size_t size)
{
	int n;

	if (v[0] == '/' || L->dir[0] == '\0')
		n = snprintf(dst, size, "%s", v);
	else if (strcmp(L->dir, "/") == 0)
		n = snprintf(dst, size, "/%s", v);
	else
		n = snprintf(dst, size, "%s/%s", L->dir, v);
	if (n < 0 || (size_t)n >= size) {
		dst[0] = '\0';
		return -1;
	}
	return 0;
}

/* Parses a decimal number without sign into *out; 1 on success. */
static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return 0;
	*out = v;
	return 1;
}

/* Sets one [node], [tls] or [sync] key described by d from value v. */
static void
key_set(struct cload *L, const struct key_def *d, const char *v)
{
	struct nbx_ini *ini = &L->ini;
	char *dst = (char *)L->c + d->off;
	const char *s = sect_names[d->sect];
	uint64_t n;

	if (*v == '\0' && d->kind != K_PATH_OPT) {
		nbx_ini_fail(ini, ini->line, "[%s]: '%s' is empty", s,
		    d->name);
		return;
	}
	switch (d->kind) {
	case K_ID:
		if (!nbx_node_id_valid(nbx_str_c(v)))
			nbx_ini_fail(ini, ini->line, "[%s]: bad node id '%s' "
			    "(1-%d of a-z, 0-9, -)", s, v, NBX_ID_MAX);
		else
			memcpy(dst, v, strlen(v) + 1);
		break;
	case K_PATH:
	case K_PATH_OPT:
	case K_SOCKET:
		if (*v == '\0')
			dst[0] = '\0';
		else if (path_resolve(L, v, dst, d->size) != 0)
			nbx_ini_fail(ini, ini->line, "[%s]: %s path is too "
			    "long (a %s must be under %zu bytes)", s, d->name,
			    d->kind == K_SOCKET ? "Unix socket path" : "path",
			    d->size);
		break;
	case K_LISTEN:
		if (config_parse_hostport(v, L->c->listen_host,
		    sizeof(L->c->listen_host), &L->c->listen_port) != 0)
			nbx_ini_fail(ini, ini->line, "[%s]: bad listen address "
			    "'%s' (expected host:port or [ipv6]:port, port "
			    "1-65535)", s, v);
		break;
	case K_U64:
	case K_U32:
	case K_MB:
		if (!parse_u64(v, &n) || n < d->min || n > d->max) {
			nbx_ini_fail(ini, ini->line, "[%s]: %s must be a "
			    "number from %llu to %llu, not '%s'", s, d->name,
			    (unsigned long long)d->min,
			    (unsigned long long)d->max, v);
			break;
		}
		if (d->kind == K_U32)
			*(uint32_t *)(void *)dst = (uint32_t)n;
		else
			*(uint64_t *)(void *)dst = d->kind == K_MB ?
			    n << 20 : n;
		break;
	}
}

static void
peer_key(struct cload *L, const char *key, const char *v)
{
	struct nbx_ini *ini = &L->ini;
	struct nbx_peer_conf *p = L->peer;
	int *seen;

	if (strcmp(key, "address") == 0)
		seen = &L->addr_line;
	else if (strcmp(key, "pin") == 0)
		seen = &L->pin_line;
	else if (strcmp(key, "relay") == 0)
		seen = &L->relay_line;
	else {
		nbx_ini_fail(ini, ini->line, "[peer %s]: unknown key '%s' "
		    "(expected address, pin or relay)", p->id, key);
		return;
	}
	if (*seen) {
		nbx_ini_fail(ini, ini->line, "[peer %s]: duplicate key '%s' "
		    "(first on line %d)", p->id, key, *seen);
		return;
	}
	*seen = ini->line;
	if (seen == &L->relay_line) {
		if (strcmp(v, "yes") == 0)
			p->no_relay = 0;
		else if (strcmp(v, "no") == 0)
			p->no_relay = 1;
		else
			nbx_ini_fail(ini, ini->line, "[peer %s]: relay must be "
			    "yes or no, not '%s'", p->id, v);
	} else if (seen == &L->addr_line) {
		if (config_parse_hostport(v, p->host, sizeof(p->host),
		    &p->port) != 0)
			nbx_ini_fail(ini, ini->line, "[peer %s]: bad address "
			    "'%s' (expected host:port or [ipv6]:port, port "
			    "1-65535)", p->id, v);
	} else if (*v != '\0') {
		if (config_parse_pin(v, p->pin) != 0)
			nbx_ini_fail(ini, ini->line, "[peer %s]: bad pin "
			    "(expected the SPKI SHA-256 as 64 hex digits, "
			    "colons allowed)", p->id);
		else
			p->has_pin = 1;
	}
}

static void
on_key(struct nbx_ini *ini, const char *sect, const char *key,
    const char *v)
{
	struct cload *L = ini->user;

	if (L->sect == S_NONE) {
		nbx_ini_fail(ini, ini->line, "key '%s' outside any section",
		    key);
		return;
	}
	if (ini->cont) {
		nbx_ini_fail(ini, ini->line, "[%s]: '%s' does not continue "
		    "onto another line (is the line indented by mistake?)",
		    sect, key);
		return;
	}
	if (L->sect == S_PEER) {
		peer_key(L, key, v);
		return;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].sect != L->sect || strcmp(keys[i].name, key) != 0)
			continue;
		if (L->key_line[i]) {
			nbx_ini_fail(ini, ini->line, "[%s]: duplicate key "
			    "'%s' (first on line %d)", sect, key,
			    L->key_line[i]);
			return;
		}
		L->key_line[i] = ini->line;
		key_set(L, &keys[i], v);
		return;
	}
	nbx_ini_fail(ini, ini->line, "[%s]: unknown key '%s'", sect, key);
}

/* Closes a [peer ID] section: its address is required. */
static void
peer_finish(struct cload *L)
{
	if (L->peer && L->addr_line == 0)
		nbx_ini_fail(&L->ini, L->peer->line, "[peer %s]: missing "
		    "required key 'address'", L->peer->id);
	L->peer = NULL;
	L->addr_line = L->pin_line = L->relay_line = 0;
}

static void
peer_begin(struct cload *L, const char *sect)
{
	struct nbx_ini *ini = &L->ini;
	struct nbx_config *c = L->c;
	struct nbx_peer_conf *np;
	const char *id = sect + 4;
	size_t n;

	while (*id == ' ' || *id == '\t')
		id++;
	n = strlen(id);
	while (n > 0 && (id[n - 1] == ' ' || id[n - 1] == '\t'))
		n--;
	if (n == 0 || !nbx_node_id_valid((struct nbx_str){ id,
	    (uint32_t)n })) {
		nbx_ini_fail(ini, ini->line, "[%s]: bad peer id '%.*s' "
		    "(expected [peer ID], ID 1-%d of a-z, 0-9, -)", sect,
		    (int)n, id, NBX_ID_MAX);
		return;
	}
	for (size_t i = 0; i < c->npeers; i++)
		if (strlen(c->peers[i].id) == n &&
		    memcmp(c->peers[i].id, id, n) == 0) {
			nbx_ini_fail(ini, ini->line, "duplicate peer '%.*s' "
			    "(first on line %d)", (int)n, id,
			    c->peers[i].line);
			return;
		}
	np = realloc(c->peers, (c->npeers + 1) * sizeof(*np));
	if (np == NULL) {
		L->nomem = 1;
		nbx_ini_fail(ini, ini->line, "out of memory");
		return;
	}
	c->peers = np;
	L->peer = &np[c->npeers++];
	memset(L->peer, 0, sizeof(*L->peer));
	memcpy(L->peer->id, id, n);
	L->peer->line = ini->line;
	L->sect = S_PEER;
}

static void
on_section(struct nbx_ini *ini, const char *sect)
{
	struct cload *L = ini->user;

	peer_finish(L);
	if (ini->err_line)
		return;
	L->sect = S_NONE;
	if (strncmp(sect, "peer", 4) == 0 &&
	    (sect[4] == '\0' || sect[4] == ' ' || sect[4] == '\t')) {
		peer_begin(L, sect);
		return;
	}
	for (int s = S_NODE; s <= S_SYNC; s++) {
		if (strcmp(sect, sect_names[s]) != 0)
			continue;
		if (L->sect_line[s]) {
			nbx_ini_fail(ini, ini->line, "duplicate section [%s] "
			    "(first on line %d)", sect, L->sect_line[s]);
			return;
		}
		L->sect_line[s] = ini->line;
		L->sect = (enum sect)s;
		return;
	}
	nbx_ini_fail(ini, ini->line, "unknown section [%s] (expected node, "
	    "tls, sync or peer ID)", sect);
}

/*
 * Checks after the whole file is read: required keys, defaults that
 * depend on other keys, and relations between keys.  `last` is the last
 * line of the file, where a missing section is reported.
 */
static void
finish(struct cload *L, int last)
{
	struct nbx_ini *ini = &L->ini;
	struct nbx_config *c = L->c;
	int n;

	for (size_t i = 0; i < NKEYS; i++) {
		const struct key_def *d = &keys[i];
		int sl = L->sect_line[d->sect];
		char *dst = (char *)c + d->off;

		if (L->key_line[i])
			continue;
		if (d->required)
			nbx_ini_fail(ini, sl ? sl : last, "missing required "
			    "key '%s' in [%s]", d->name, sect_names[d->sect]);
		if (d->kind == K_U64 || d->kind == K_MB)
			*(uint64_t *)(void *)dst = d->kind == K_MB ?
			    d->dflt << 20 : d->dflt;
		else if (d->kind == K_U32)
			*(uint32_t *)(void *)dst = (uint32_t)d->dflt;
	}
	if (ini->err_line)
		return;
	if (L->key_line[KI_LISTEN] == 0) {
		snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
		c->listen_port = 7400;
	}
	if (L->key_line[KI_SCHEMA] == 0 &&
	    path_resolve(L, "schema.conf", c->schema, sizeof(c->schema)))
		nbx_ini_fail(ini, L->sect_line[S_NODE], "[node]: default "
		    "schema path is too long; set 'schema'");
	if (L->key_line[KI_SOCKET] == 0) {
		n = snprintf(c->control_socket, sizeof(c->control_socket),
		    "%s/nbxd.sock", c->data_dir);
		if (n < 0 || (size_t)n >= sizeof(c->control_socket))
			nbx_ini_fail(ini, L->sect_line[S_NODE], "[node]: the "
			    "default control socket '%s/nbxd.sock' is too long "
			    "for a Unix socket (max %zu bytes); set "
			    "'control_socket'", c->data_dir,
			    sizeof(c->control_socket) - 1);
	}
	if (c->dead_after_ms <= c->ping_interval_ms)
		nbx_ini_fail(ini, L->key_line[KI_DEAD] ? L->key_line[KI_DEAD] :
		    L->key_line[KI_PING], "[sync]: dead_after_ms (%llu) must "
		    "be greater than ping_interval_ms (%llu)",
		    (unsigned long long)c->dead_after_ms,
		    (unsigned long long)c->ping_interval_ms);
	if (c->protocol_min > c->protocol_max)
		nbx_ini_fail(ini, L->key_line[KI_PROTO_MIN] ?
		    L->key_line[KI_PROTO_MIN] : L->key_line[KI_PROTO_MAX],
		    "[sync]: protocol_min (%u) is greater than protocol_max "
		    "(%u)", c->protocol_min, c->protocol_max);
	if (c->backoff_min_ms > c->backoff_max_ms)
		nbx_ini_fail(ini, L->key_line[KI_BACKOFF_MAX] ?
		    L->key_line[KI_BACKOFF_MAX] : L->key_line[KI_BACKOFF_MIN],
		    "[sync]: backoff_min_ms (%llu) is greater than "
		    "backoff_max_ms (%llu)",
		    (unsigned long long)c->backoff_min_ms,
		    (unsigned long long)c->backoff_max_ms);
	for (size_t i = 0; i < c->npeers; i++)
		if (strcmp(c->peers[i].id, c->id) == 0)
			nbx_ini_fail(ini, c->peers[i].line, "[peer %s]: a "
			    "peer cannot have this node's own id",
			    c->peers[i].id);
}

int
config_load(const char *path, struct nbx_config *out, char *err,
    size_t errlen)
{
	struct cload *L;
	const char *slash;
	char *text = NULL;
	size_t len;
	int rc;

	assert(path != NULL && out != NULL);
	memset(out, 0, sizeof(*out));
	if (errlen > 0)
		err[0] = '\0';
	if ((L = calloc(1, sizeof(*L))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NBX_ENOMEM;
	}
	nbx_ini_init(&L->ini, path, L);
	L->ini.on_section = on_section;
	L->ini.on_key = on_key;
	L->c = out;
	if ((slash = strrchr(path, '/')) != NULL) {
		size_t n = slash == path ? 1 : (size_t)(slash - path);

		if (n >= sizeof(L->dir)) {
			snprintf(err, errlen, "%s: path too long", path);
			rc = NBX_EIO;
			goto out;
		}
		memcpy(L->dir, path, n);
		L->dir[n] = '\0';
	}
	if ((rc = conf_file_read(path, &text, &len, err, errlen)) != 0)
		goto out;
	rc = nbx_ini_parse_buf(&L->ini, text, len);
	if (rc == 0) {
		peer_finish(L);
		finish(L, L->ini.line);
	}
	if (L->ini.err_line) {
		rc = L->nomem ? NBX_ENOMEM : NBX_ECONFIG;
		nbx_ini_message(&L->ini, err, errlen);
		goto out;
	}
	rc = 0;
out:
	if (rc != 0)
		config_fini(out);
	free(text);
	free(L);
	return rc;
}

void
config_fini(struct nbx_config *c)
{
	free(c->peers);
	memset(c, 0, sizeof(*c));
}
