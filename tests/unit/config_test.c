/*
 * config_test.c - the node configuration (daemon/conf/config.c): the shipped
 * example, defaults and relative paths, every kind of mistake reported as
 * "FILE:LINE: message", and the host:port and pin parsers.
 *
 * Run from the repository root: the example is conf/nbx.conf.example.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "nbx_err.h"

#define EXAMPLE	"conf/nbx.conf.example"

/* The smallest valid configuration; lines 1-7. */
#define BASE	"[node]\nid = ee\ndata_dir = data\n" \
		"[tls]\nca = ca.crt\ncert = ee.crt\nkey = ee.key\n"

static char dir[64];
static char path[128];

static void
mk_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/nbx-config-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/nbx.conf", dir);
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void
rm_dir(void)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void
write_conf(const char *text)
{
	FILE *fp = fopen(path, "w");

	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* Loads `text` from dir/nbx.conf; expects NBX_ECONFIG and "PATH:LINE: msg". */
static void
expect_error(const char *text, int line, const char *msg)
{
	struct nbx_config c;
	char err[512], want[512];
	int rc;

	write_conf(text);
	memset(&c, 0xA5, sizeof(c));
	rc = config_load(path, &c, err, sizeof(err));
	cr_assert_eq(rc, NBX_ECONFIG, "rc %d for:\n%s", rc, text);
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	cr_assert_str_eq(err, want);
	/* Left cleared. */
	cr_assert_null(c.peers);
	cr_assert_eq(c.npeers, 0);
	cr_assert_str_empty(c.id);
}

/* Line of the first line of the example that equals `s`. */
static int
example_line(const char *s)
{
	FILE *fp = fopen(EXAMPLE, "r");
	char buf[512];
	int n = 0;

	cr_assert_not_null(fp);
	while (fgets(buf, sizeof(buf), fp)) {
		n++;
		buf[strcspn(buf, "\n")] = '\0';
		if (strcmp(buf, s) == 0) {
			fclose(fp);
			return n;
		}
	}
	fclose(fp);
	cr_assert_fail("%s not in the example", s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The shipped example                                                */
/* ------------------------------------------------------------------ */

Test(example, loads_with_every_key)
{
	static const uint8_t pin_head[4] = { 0x3b, 0x5c, 0x7e, 0x91 };
	struct nbx_config c;
	char err[512];

	cr_assert_eq(config_load(EXAMPLE, &c, err, sizeof(err)), 0, "%s",
	    err);
	cr_assert_str_eq(c.id, "ee");
	cr_assert_str_eq(c.data_dir, "/var/lib/nbx");
	cr_assert_str_eq(c.listen_host, "0.0.0.0");
	cr_assert_eq(c.listen_port, 7400);
	cr_assert_str_eq(c.control_socket, "/run/nbx/nbxd.sock");
	cr_assert_str_eq(c.schema, "/etc/nbx/schema.conf");
	cr_assert_eq(c.map_size, (uint64_t)64 << 20);
	cr_assert_str_eq(c.tls_ca, "/etc/nbx/ca.crt");
	cr_assert_str_eq(c.tls_cert, "/etc/nbx/node.crt");
	cr_assert_str_eq(c.tls_key, "/etc/nbx/node.key");
	cr_assert_str_empty(c.tls_crl);
	cr_assert_eq(c.max_clock_drift_ms, 500);
	cr_assert_eq(c.ping_interval_ms, 15000);
	cr_assert_eq(c.dead_after_ms, 45000);
	cr_assert_eq(c.backoff_min_ms, 200);
	cr_assert_eq(c.backoff_max_ms, 30000);
	cr_assert_eq(c.batch_bytes, 1048576);
	cr_assert_eq(c.window, 8);

	cr_assert_eq(c.npeers, 2);
	cr_assert_str_eq(c.peers[0].id, "lv");
	cr_assert_str_eq(c.peers[0].host, "10.1.2.3");
	cr_assert_eq(c.peers[0].port, 7400);
	cr_assert_eq(c.peers[0].has_pin, 0);
	cr_assert_eq(c.peers[0].line, example_line("[peer lv]"));
	cr_assert_str_eq(c.peers[1].id, "lt");
	cr_assert_str_eq(c.peers[1].host, "nbx.lt.example.org");
	cr_assert_eq(c.peers[1].port, 7400);
	cr_assert_eq(c.peers[1].has_pin, 1);
	cr_assert_arr_eq(c.peers[1].pin, pin_head, 4);
	cr_assert_eq(c.peers[1].pin[31], 0xea);
	cr_assert_eq(c.peers[1].line, example_line("[peer lt]"));
	config_fini(&c);
	cr_assert_null(c.peers);
	cr_assert_eq(c.npeers, 0);
	config_fini(&c);
}

/* ------------------------------------------------------------------ */
/* Defaults and paths                                                 */
/* ------------------------------------------------------------------ */

TestSuite(config, .init = mk_dir, .fini = rm_dir);

Test(config, defaults_and_relative_paths)
{
	struct nbx_config c;
	char err[512], want[256];

	write_conf("[node]\nid = ee\ndata_dir = data\n"
	    "[tls]\nca = ca.crt\ncert = /etc/nbx/ee.crt\nkey = ../k/ee.key\n"
	    "crl =\n");
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	snprintf(want, sizeof(want), "%s/data", dir);
	cr_assert_str_eq(c.data_dir, want);
	snprintf(want, sizeof(want), "%s/data/nbxd.sock", dir);
	cr_assert_str_eq(c.control_socket, want);
	snprintf(want, sizeof(want), "%s/schema.conf", dir);
	cr_assert_str_eq(c.schema, want);
	snprintf(want, sizeof(want), "%s/ca.crt", dir);
	cr_assert_str_eq(c.tls_ca, want);
	cr_assert_str_eq(c.tls_cert, "/etc/nbx/ee.crt");
	snprintf(want, sizeof(want), "%s/../k/ee.key", dir);
	cr_assert_str_eq(c.tls_key, want);
	cr_assert_str_empty(c.tls_crl);
	cr_assert_str_eq(c.listen_host, "127.0.0.1");
	cr_assert_eq(c.listen_port, 7400);
	cr_assert_eq(c.map_size, (uint64_t)64 << 20);
	cr_assert_eq(c.max_clock_drift_ms, 500);
	cr_assert_eq(c.ping_interval_ms, 15000);
	cr_assert_eq(c.dead_after_ms, 45000);
	cr_assert_eq(c.backoff_min_ms, 200);
	cr_assert_eq(c.backoff_max_ms, 30000);
	cr_assert_eq(c.batch_bytes, 1048576);
	cr_assert_eq(c.window, 8);
	cr_assert_eq(c.npeers, 0);
	cr_assert_null(c.peers);
	config_fini(&c);
}

Test(config, explicit_values)
{
	struct nbx_config c;
	char err[512], want[256];

	write_conf("[node]\nid = ee-tallinn-1\ndata_dir = /srv/nbx\n"
	    "listen = [::]:7401\ncontrol_socket = run/nbxd.sock\n"
	    "schema = ../shared/schema.conf\nmap_size_mb = 1024\n"
	    "[sync]\nmax_clock_drift_ms = 250\nping_interval_ms = 1000\n"
	    "dead_after_ms = 3000\nbackoff_min_ms = 50\nbackoff_max_ms = 50\n"
	    "batch_bytes = 1024\nwindow = 1024\n"
	    "[tls]\nca = ca.crt\ncert = ee.crt\nkey = ee.key\ncrl = ca.crl\n"
	    "[peer lv]\naddress = [2001:db8::1]:7400\n"
	    "pin = 000102030405060708090A0B0C0D0E0F"
	    "101112131415161718191a1b1c1d1e1f\n");
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.id, "ee-tallinn-1");
	cr_assert_str_eq(c.data_dir, "/srv/nbx");
	cr_assert_str_eq(c.listen_host, "::");
	cr_assert_eq(c.listen_port, 7401);
	snprintf(want, sizeof(want), "%s/run/nbxd.sock", dir);
	cr_assert_str_eq(c.control_socket, want);
	snprintf(want, sizeof(want), "%s/../shared/schema.conf", dir);
	cr_assert_str_eq(c.schema, want);
	snprintf(want, sizeof(want), "%s/ca.crl", dir);
	cr_assert_str_eq(c.tls_crl, want);
	cr_assert_eq(c.map_size, (uint64_t)1024 << 20);
	cr_assert_eq(c.max_clock_drift_ms, 250);
	cr_assert_eq(c.ping_interval_ms, 1000);
	cr_assert_eq(c.dead_after_ms, 3000);
	cr_assert_eq(c.backoff_min_ms, 50);
	cr_assert_eq(c.backoff_max_ms, 50);
	cr_assert_eq(c.batch_bytes, 1024);
	cr_assert_eq(c.window, 1024);
	cr_assert_eq(c.npeers, 1);
	cr_assert_str_eq(c.peers[0].host, "2001:db8::1");
	cr_assert_eq(c.peers[0].has_pin, 1);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(c.peers[0].pin[i], i);
	cr_assert_eq(c.peers[0].line, 21);
	config_fini(&c);
}

/* The configuration block of DESIGN.md, inline comments and all. */
Test(config, design_example)
{
	struct nbx_config c;
	char err[512];

	write_conf(
	    "[node]\n"
	    "id = ee                         ; 1-32 of [a-z0-9-], equals the "
	    "certificate identity\n"
	    "data_dir = /var/lib/nbx\n"
	    "listen = 0.0.0.0:7400\n"
	    "control_socket = /run/nbx/nbxd.sock\n"
	    "schema = /etc/nbx/schema.conf\n"
	    "[tls]\n"
	    "ca = /etc/nbx/ca.crt\n"
	    "cert = /etc/nbx/node.crt\n"
	    "key = /etc/nbx/node.key\n"
	    "crl =                           ; optional; fail closed when set\n"
	    "[sync]\n"
	    "max_clock_drift_ms = 500\n"
	    "[peer lv]                       ; static peers; more can be added "
	    "with nbxctl\n"
	    "address = 10.1.2.3:7400\n"
	    "pin =                           ; optional SPKI SHA-256\n");
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.id, "ee");
	cr_assert_str_empty(c.tls_crl);
	cr_assert_eq(c.npeers, 1);
	cr_assert_str_eq(c.peers[0].id, "lv");
	cr_assert_eq(c.peers[0].line, 14);
	cr_assert_eq(c.peers[0].has_pin, 0);
	config_fini(&c);
}

/* A config named without a directory resolves against the cwd. */
Test(config, path_without_directory)
{
	struct nbx_config c;
	char err[512];

	write_conf(BASE);
	cr_assert_eq(chdir(dir), 0);
	cr_assert_eq(config_load("nbx.conf", &c, err, sizeof(err)), 0, "%s",
	    err);
	cr_assert_str_eq(c.data_dir, "data");
	cr_assert_str_eq(c.schema, "schema.conf");
	cr_assert_str_eq(c.tls_ca, "ca.crt");
	cr_assert_str_eq(c.control_socket, "data/nbxd.sock");
	config_fini(&c);
	cr_assert_eq(config_load("./nbx.conf", &c, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_str_eq(c.data_dir, "./data");
	config_fini(&c);
}

Test(config, missing_file)
{
	struct nbx_config c;
	char err[512], want[256];

	snprintf(want, sizeof(want), "%s: cannot open: No such file or "
	    "directory", path);
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), NBX_EIO);
	cr_assert_str_eq(err, want);
	cr_assert_null(c.peers);
}

/* ------------------------------------------------------------------ */
/* Mistakes                                                           */
/* ------------------------------------------------------------------ */

Test(config, unknown_section_and_keys)
{
	expect_error(BASE "[peers]\n", 8, "unknown section [peers] (expected "
	    "node, tls, sync or peer ID)");
	expect_error("[node]\nid = ee\nlisten_port = 1\n", 3,
	    "[node]: unknown key 'listen_port'");
	expect_error(BASE "[sync]\nwindows = 3\n", 9,
	    "[sync]: unknown key 'windows'");
	expect_error(BASE "[peer lv]\naddress = a:1\nport = 1\n", 10,
	    "[peer lv]: unknown key 'port' (expected address, pin or relay)");
	/* A key of another section is unknown here. */
	expect_error("[tls]\nid = ee\n", 2, "[tls]: unknown key 'id'");
	expect_error("id = ee\n" BASE, 1, "key 'id' outside any section");
}

Test(config, bad_node_id)
{
	expect_error("[node]\nid = EE\n", 2,
	    "[node]: bad node id 'EE' (1-32 of a-z, 0-9, -)");
	expect_error("[node]\nid = a23456789012345678901234567890123\n", 2,
	    "[node]: bad node id 'a23456789012345678901234567890123' (1-32 "
	    "of a-z, 0-9, -)");
	expect_error("[node]\nid =\n", 2, "[node]: 'id' is empty");
}

Test(config, missing_required_keys)
{
	expect_error("[node]\ndata_dir = d\n[tls]\nca = a\ncert = c\n"
	    "key = k\n", 1, "missing required key 'id' in [node]");
	expect_error("[tls]\nca = a\ncert = c\nkey = k\n[node]\nid = ee\n",
	    5, "missing required key 'data_dir' in [node]");
	/* No [tls] at all: reported at the end of the file. */
	expect_error("[node]\nid = ee\ndata_dir = d\n\n", 4,
	    "missing required key 'ca' in [tls]");
	expect_error("[node]\nid = ee\ndata_dir = d\n[tls]\nca = a\n"
	    "cert = c\n", 4, "missing required key 'key' in [tls]");
	expect_error("", 1, "missing required key 'id' in [node]");
}

Test(config, peer_mistakes)
{
	expect_error(BASE "[peer ee]\naddress = h:1\n", 8,
	    "[peer ee]: a peer cannot have this node's own id");
	/* Also when [node] comes after the peer. */
	expect_error("[peer ee]\naddress = h:1\n" BASE, 1,
	    "[peer ee]: a peer cannot have this node's own id");
	expect_error(BASE "[peer lv]\naddress = a:1\n[peer lv]\n"
	    "address = b:1\n", 10, "duplicate peer 'lv' (first on line 8)");
	expect_error(BASE "[peer lv]\npin =\n[sync]\n", 8,
	    "[peer lv]: missing required key 'address'");
	expect_error(BASE "[peer lv]\n", 8,
	    "[peer lv]: missing required key 'address'");
	expect_error(BASE "[peer LV]\n", 8, "[peer LV]: bad peer id 'LV' "
	    "(expected [peer ID], ID 1-32 of a-z, 0-9, -)");
	expect_error(BASE "[peer]\n", 8, "[peer]: bad peer id '' (expected "
	    "[peer ID], ID 1-32 of a-z, 0-9, -)");
	expect_error(BASE "[peerlv]\n", 8, "unknown section [peerlv] "
	    "(expected node, tls, sync or peer ID)");
	expect_error(BASE "[peer lv]\naddress = a:1\naddress = b:2\n", 10,
	    "[peer lv]: duplicate key 'address' (first on line 9)");
}

Test(config, bad_addresses_and_ports)
{
	expect_error(BASE "[peer lv]\naddress = 10.0.0.1:70000\n", 9,
	    "[peer lv]: bad address '10.0.0.1:70000' (expected host:port or "
	    "[ipv6]:port, port 1-65535)");
	expect_error(BASE "[peer lv]\naddress = 10.0.0.1\n", 9,
	    "[peer lv]: bad address '10.0.0.1' (expected host:port or "
	    "[ipv6]:port, port 1-65535)");
	expect_error("[node]\nid = ee\nlisten = 0.0.0.0:0\n", 3,
	    "[node]: bad listen address '0.0.0.0:0' (expected host:port or "
	    "[ipv6]:port, port 1-65535)");
	expect_error("[node]\nid = ee\nlisten = ::1:7400\n", 3,
	    "[node]: bad listen address '::1:7400' (expected host:port or "
	    "[ipv6]:port, port 1-65535)");
}

Test(config, bad_pin)
{
	expect_error(BASE "[peer lv]\naddress = a:1\npin = abcd\n", 10,
	    "[peer lv]: bad pin (expected the SPKI SHA-256 as 64 hex digits, "
	    "colons allowed)");
}

Test(config, control_socket_must_fit_sun_path)
{
	char text[512], msg[512], dd[128];

	snprintf(text, sizeof(text), "[node]\nid = ee\ndata_dir = d\n"
	    "control_socket = /%0*d\n", 107, 0);
	expect_error(text, 4, "[node]: control_socket path is too long (a "
	    "Unix socket path must be under 108 bytes)");
	/* 107 bytes fit. */
	snprintf(text, sizeof(text), "[node]\nid = ee\ndata_dir = d\n"
	    "control_socket = /%0*d\n[tls]\nca = a\ncert = c\nkey = k\n",
	    106, 0);
	write_conf(text);
	{
		struct nbx_config c;
		char err[512];

		cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s",
		    err);
		cr_assert_eq(strlen(c.control_socket), 107);
		config_fini(&c);
	}
	/* The default, <data_dir>/nbxd.sock, is checked too. */
	snprintf(dd, sizeof(dd), "/%0*d", 99, 0);
	snprintf(text, sizeof(text), "[node]\nid = ee\ndata_dir = %s\n"
	    "[tls]\nca = a\ncert = c\nkey = k\n", dd);
	snprintf(msg, sizeof(msg), "[node]: the default control socket "
	    "'%s/nbxd.sock' is too long for a Unix socket (max 107 bytes); "
	    "set 'control_socket'", dd);
	expect_error(text, 1, msg);
}

Test(config, numbers)
{
	expect_error(BASE "[sync]\nwindow = 0\n", 9,
	    "[sync]: window must be a number from 1 to 1024, not '0'");
	expect_error(BASE "[sync]\nbatch_bytes = 64k\n", 9,
	    "[sync]: batch_bytes must be a number from 1024 to 16777216, not "
	    "'64k'");
	expect_error(BASE "[sync]\nmax_clock_drift_ms = -5\n", 9,
	    "[sync]: max_clock_drift_ms must be a number from 1 to 3600000, "
	    "not '-5'");
	expect_error("[node]\nmap_size_mb = 99999999999999999999999\n", 2,
	    "[node]: map_size_mb must be a number from 1 to 1048576, not "
	    "'99999999999999999999999'");
	expect_error(BASE "[sync]\nping_interval_ms = 50000\n", 9,
	    "[sync]: dead_after_ms (45000) must be greater than "
	    "ping_interval_ms (50000)");
	expect_error(BASE "[sync]\ndead_after_ms = 15000\n", 9,
	    "[sync]: dead_after_ms (15000) must be greater than "
	    "ping_interval_ms (15000)");
	expect_error(BASE "[sync]\nbackoff_max_ms = 100\n", 9,
	    "[sync]: backoff_min_ms (200) is greater than backoff_max_ms "
	    "(100)");
}

Test(config, duplicates_and_layout)
{
	expect_error("[node]\nid = ee\nid = lv\n", 3,
	    "[node]: duplicate key 'id' (first on line 2)");
	expect_error(BASE "[node]\n", 8,
	    "duplicate section [node] (first on line 1)");
	expect_error("[node]\nid = ee\n  data_dir = x\n", 3,
	    "[node]: 'id' does not continue onto another line (is the line "
	    "indented by mistake?)");
	expect_error("[node]\ndata_dir =\n", 2, "[node]: 'data_dir' is empty");
	expect_error("[node\n", 1, "section header without a closing ']'");
}

/* ------------------------------------------------------------------ */
/* config_parse_hostport, config_parse_pin                            */
/* ------------------------------------------------------------------ */

Test(hostport, good)
{
	static const struct {
		const char *in, *host;
		uint16_t port;
	} ok[] = {
		{ "10.1.2.3:7400", "10.1.2.3", 7400 },
		{ "0.0.0.0:1", "0.0.0.0", 1 },
		{ "[::1]:7400", "::1", 7400 },
		{ "[::]:65535", "::", 65535 },
		{ "[2001:db8::7]:443", "2001:db8::7", 443 },
		{ "[::ffff:10.0.0.1]:80", "::ffff:10.0.0.1", 80 },
		{ "localhost:7400", "localhost", 7400 },
		{ "nbx.lv.example.org:8080", "nbx.lv.example.org", 8080 },
		{ "node-2.Example.COM:22", "node-2.Example.COM", 22 },
	};
	char host[256];
	uint16_t port;

	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		cr_assert_eq(config_parse_hostport(ok[i].in, host,
		    sizeof(host), &port), 0, "%s", ok[i].in);
		cr_assert_str_eq(host, ok[i].host);
		cr_assert_eq(port, ok[i].port, "%s", ok[i].in);
	}
}

Test(hostport, bad)
{
	static const char *bad[] = { "", ":7400", "host", "host:",
	    "host:0", "host:65536", "host:99999", "host:123456", "host:-1",
	    "host:+80", "host:80x", "host: 80", "::1:7400", "[::1]7400",
	    "[::1]", "[::1:7400", "[]:7400", "[zz::1]:7400", "[10.0.0.1]:80",
	    "1.2.3:7400", "256.1.1.1:7400", "1.2.3.4.5:80", "-host:80",
	    "host-:80", "ho_st:80", "a..b:80", ".a:80", "a.:80",
	    "h st:80" };
	char host[256];
	uint16_t port = 99;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		strcpy(host, "junk");
		cr_assert_eq(config_parse_hostport(bad[i], host, sizeof(host),
		    &port), NBX_EINVAL, "'%s'", bad[i]);
		cr_assert_str_empty(host, "'%s'", bad[i]);
		cr_assert_eq(port, 0);
	}
}

Test(hostport, host_buffer_too_small)
{
	char host[9];
	uint16_t port;

	cr_assert_eq(config_parse_hostport("localhost:1", host, sizeof(host),
	    &port), NBX_EINVAL);
	cr_assert_eq(config_parse_hostport("localhos:1", host, sizeof(host),
	    &port), 0);
	cr_assert_str_eq(host, "localhos");
}

Test(pin, with_and_without_colons)
{
	static const char *plain =
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea";
	static const char *colons =
	    "3B:5C:7E:91:A0:14:2F:6D:88:C4:0E:53:B7:29:FA:61:"
	    "04:9D:E2:37:8A:C5:1B:F0:66:2E:93:D8:47:0C:B5:EA";
	uint8_t a[32], b[32];

	cr_assert_eq(config_parse_pin(plain, a), 0);
	cr_assert_eq(config_parse_pin(colons, b), 0);
	cr_assert_arr_eq(a, b, 32);
	cr_assert_eq(a[0], 0x3b);
	cr_assert_eq(a[1], 0x5c);
	cr_assert_eq(a[31], 0xea);
}

Test(pin, bad)
{
	static const char *bad[] = {
	    "",
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5e",
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5eaa",
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5eaab",
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5eg",
	    ":3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea",
	    "3b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea:",
	    "3:b5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea",
	    "3b::5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea",
	    "3b 5c7e91a0142f6d88c40e53b729fa61049de2378ac51bf0662e93d8470cb5ea",
	};
	uint8_t out[32];

	memset(out, 0x77, sizeof(out));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		cr_assert_eq(config_parse_pin(bad[i], out), NBX_EINVAL, "'%s'",
		    bad[i]);
		for (int k = 0; k < 32; k++)
			cr_assert_eq(out[k], 0x77);
	}
}

Test(config, peer_relay_flag, .init = mk_dir, .fini = rm_dir)
{
	struct nbx_config c;
	char err[512];

	write_conf(BASE "[peer lv]\naddress = 127.0.0.1:1\nrelay = no\n"
	    "[peer fi]\naddress = 127.0.0.1:2\n");
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.peers[0].no_relay, 1);
	cr_assert_eq(c.peers[1].no_relay, 0, "relay defaults to yes");
	config_fini(&c);
	write_conf(BASE "[peer lv]\naddress = 127.0.0.1:1\nrelay = maybe\n");
	cr_assert_eq(config_load(path, &c, err, sizeof(err)), NBX_ECONFIG);
	cr_assert(strstr(err, ":10: [peer lv]: relay must be yes or no, not "
	    "'maybe'"), "%s", err);
}
