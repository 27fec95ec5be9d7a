#!/bin/sh
# pg.sh - the PostgreSQL side of `make bench`: the same workloads as the
# nbx side, through PostgreSQL 15 logical replication.  POSIX sh; sourced
# by tests/bench/run.sh after tests/integration/lib.sh (it uses $T,
# $PORT_BASE, fail) and after run.sh has set N, now, poll and result (and
# FIRST_N, LIVE_*, IDLE_SECS, BENCHPY, extra, jfield, live_say for 3, 4).
#
# What it builds, all under $T/pg and all removed at the end (pg_cleanup,
# called from run.sh's EXIT trap):
#   - a throwaway certificate authority made with the openssl CLI (for
#     PostgreSQL only; nbx certificates come from `nbxctl ca`): a server
#     certificate per cluster (SAN IP:127.0.0.1) and a client certificate
#     for the replication role `rep` (CN = rep);
#   - two clusters made with initdb, run as the postgres user when we are
#     root: "pub" (publisher) and "sub" (subscriber), listening on
#     127.0.0.1 only, on ports from the test's high range, unix sockets in
#     $T/pg/sock, ssl = on with TLS 1.3 only, wal_level = logical;
#     otherwise PostgreSQL's defaults (fsync = on, synchronous_commit = on,
#     full_page_writes = on, shared_buffers = 128MB);
#   - in database "bench" on both, table `service`: the record key, the
#     same 8 region fields as nbx's service collection, and `notes`, local
#     only: the publication's column list leaves it out, as nbx's schema
#     (share = local) keeps it on the node;
#   - the subscription connects over TCP with sslmode=verify-full and the
#     client certificate (pg_hba: hostssl ... cert), like nbx's mTLS.

PG_VERSION=15
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_VERSION/bin}
P=$T/pg
PG_PUB_PORT=$((PORT_BASE + 5))
PG_SUB_PORT=$((PORT_BASE + 6))
PG_STARTED=""

# pg_install: Debian's postgresql-15, the openssl CLI and iproute2 (`ss`,
# for the idle workload's byte counters), only if missing (idempotent:
# nothing is fetched when all are installed).
pg_install() {
	missing=""
	for p in postgresql-$PG_VERSION openssl iproute2; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		    grep -q 'install ok installed' || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "bench: installing:$missing" >&2
		sudo=""
		[ "$(id -u)" -eq 0 ] || sudo=sudo
		export DEBIAN_FRONTEND=noninteractive
		$sudo apt-get update -q
		# shellcheck disable=SC2086
		$sudo apt-get install -y -q --no-install-recommends $missing
	fi
	[ -x "$PGBIN/initdb" ] || fail "no $PGBIN/initdb after installing"
}

# pg_as CMD...: runs a server-side program (initdb, pg_ctl) as postgres
# when we are root (PostgreSQL refuses to run as root), else as ourselves.
# It runs from $P so that the postgres user can resolve its cwd.
pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$P" && runuser -u postgres -- "$@")
	else
		(cd "$P" && "$@")
	fi
}

pg_port() { if [ "$1" = pub ]; then echo "$PG_PUB_PORT"; else echo "$PG_SUB_PORT"; fi; }

# pg_sql CLUSTER SQL: one statement (or a psql backslash command) in
# database bench as the superuser over the unix socket; prints bare rows.
# PGOPTIONS from the caller's environment passes through (used to set
# synchronous_commit for a session).
pg_sql() {
	"$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$P/sock" \
	    -p "$(pg_port "$1")" -U postgres -d bench -c "$2"
}

# pg_file CLUSTER FILE: runs a psql script (each statement in its own
# transaction: autocommit).
pg_file() {
	"$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$P/sock" \
	    -p "$(pg_port "$1")" -U postgres -d bench -f "$2" >/dev/null
}

pg_start() {
	pg_as "$PGBIN/pg_ctl" -D "$P/$1" -l "$P/$1.log" -w -t 120 start \
	    >/dev/null || pg_fail "cluster $1 did not start"
}

pg_stop() {
	pg_as "$PGBIN/pg_ctl" -D "$P/$1" -m fast -w -t 120 stop >/dev/null ||
	    pg_fail "cluster $1 did not stop"
}

# pg_fail MESSAGE: shows the end of both server logs, then fails.
pg_fail() {
	for c in pub sub; do
		[ -f "$P/$c.log" ] || continue
		echo "--- $P/$c.log (last 25 lines)" >&2
		tail -n 25 "$P/$c.log" >&2
	done
	fail "$*"
}

# pg_cleanup: stops both clusters at once (immediate: nothing to keep);
# run.sh's EXIT trap calls it before lib.sh removes $T.
pg_cleanup() {
	for c in $PG_STARTED; do
		[ -f "$P/$c/postmaster.pid" ] || continue
		pg_as "$PGBIN/pg_ctl" -D "$P/$c" -m immediate -w stop \
		    >/dev/null 2>&1 || true
	done
}

# pg_certs: the PostgreSQL-only CA (ECDSA P-256), the two server
# certificates (SAN IP:127.0.0.1, so verify-full matches host=127.0.0.1)
# and the replication role's client certificate (CN = rep).
pg_certs() {
	d=$P/tls
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	    -nodes -days 2 -subj "/CN=nbx bench PostgreSQL CA" \
	    -keyout "$d/ca.key" -out "$d/ca.crt" 2>>"$P/openssl.log"
	echo "subjectAltName = IP:127.0.0.1" >"$d/server.ext"
	echo "basicConstraints = CA:FALSE" >"$d/client.ext"
	for c in pub sub rep; do
		cn=127.0.0.1 ext=server.ext
		[ "$c" != rep ] || { cn=rep; ext=client.ext; }
		openssl req -new -newkey ec \
		    -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		    -subj "/CN=$cn" -keyout "$d/$c.key" -out "$d/$c.csr" \
		    2>>"$P/openssl.log"
		openssl x509 -req -in "$d/$c.csr" -CA "$d/ca.crt" \
		    -CAkey "$d/ca.key" -CAcreateserial -days 2 \
		    -extfile "$d/$ext" -out "$d/$c.crt" 2>>"$P/openssl.log"
	done
	chmod 600 "$d"/*.key
}

# pg_cluster NAME: initdb (C collation: keys compare as bytes, as LMDB's
# do), then the settings the workload needs; the rest stays default.
pg_cluster() {
	c=$1
	pg_as "$PGBIN/initdb" -D "$P/$c" -U postgres -A trust -E UTF8 \
	    --locale=C >"$P/$c.initdb.log" 2>&1 ||
	    fail "initdb $c: $(tail -n 5 "$P/$c.initdb.log")"
	cat >>"$P/$c/postgresql.conf" <<CONF

# --- nbx bench ---
listen_addresses = '127.0.0.1'
port = $(pg_port "$c")
unix_socket_directories = '$P/sock'
ssl = on
ssl_min_protocol_version = 'TLSv1.3'
ssl_cert_file = '$P/tls/$c.crt'
ssl_key_file = '$P/tls/$c.key'
ssl_ca_file = '$P/tls/ca.crt'
wal_level = logical
CONF
	# unix socket: the superuser, trusted (the socket directory is ours);
	# TCP: only the replication role, only TLS, only with a client
	# certificate signed by our CA whose CN is the role name.
	cat >"$P/$c/pg_hba.conf" <<HBA
local   all    all                   trust
hostssl bench  rep    127.0.0.1/32   cert
HBA
}

# pg_setup: certificates, both clusters started, database, table,
# replication role and publication; helper functions on the publisher
# that write the backlogs server-side (their time is not measured).
pg_setup() {
	# lib.sh made $T mode 0700; the postgres user has to reach $T/pg
	chmod 711 "$T"
	mkdir -p "$P/sock"
	pg_certs
	[ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$P"
	for c in pub sub; do
		pg_cluster "$c"
		pg_start "$c"
		PG_STARTED="$PG_STARTED $c"
		"$PGBIN/psql" -X -q -h "$P/sock" -p "$(pg_port "$c")" \
		    -U postgres -d postgres -c "CREATE DATABASE bench" >/dev/null
		pg_sql "$c" "$(pg_table_sql)" >/dev/null
	done
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$P/sock" -p "$PG_PUB_PORT" \
	    -U postgres -d bench >/dev/null <<'SQL'
CREATE ROLE rep LOGIN REPLICATION;
GRANT SELECT ON service TO rep;
-- every column but notes: notes stays on the publisher
CREATE PUBLICATION bench_pub FOR TABLE service
    (id, name, organisation, country, city, kind, capacity, free_places, phone);
-- record i, with the same values as the JSONL records of the nbx side
CREATE FUNCTION bench_insert(lo int, hi int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO service
    SELECT 'ee:svc-' || lpad(i::text, 7, '0'), 'Support service number ' || i,
           'ee:org-' || lpad((i % 1000)::text, 4, '0'), 'ee', 'Tallinn',
           'shelter', i % 50, i % 7, '+372 600 ' || lpad((i % 10000)::text, 4, '0'),
           'internal note ' || i
    FROM generate_series(lo, hi) AS i $$;
-- the update of record i: free_places becomes i % 7 + 1 (was i % 7)
CREATE FUNCTION bench_update(lo int, hi int) RETURNS void LANGUAGE sql AS $$
    UPDATE service SET free_places = substr(id, 8)::int % 7 + 1
    WHERE id BETWEEN 'ee:svc-' || lpad(lo::text, 7, '0')
                 AND 'ee:svc-' || lpad(hi::text, 7, '0') $$;
SQL
	PG_CONNINFO="host=127.0.0.1 port=$PG_PUB_PORT dbname=bench user=rep"
	PG_CONNINFO="$PG_CONNINFO sslmode=verify-full sslrootcert=$P/tls/ca.crt"
	PG_CONNINFO="$PG_CONNINFO sslcert=$P/tls/rep.crt sslkey=$P/tls/rep.key"
}

# The table on both sides.  The checks mirror conf/schema.conf (string
# lengths, enum values, int ranges), so both systems validate what they
# store.
pg_table_sql() {
	cat <<'SQL'
CREATE TABLE service (
    id           text PRIMARY KEY,
    name         varchar(200),
    organisation varchar(128),
    country      text CHECK (country IN ('ee','lv','lt','fi','se','no','dk','is')),
    city         varchar(100),
    kind         text CHECK (kind IN ('shelter','helpline','medical','psychological',
                     'social','legal_aid','education','employment')),
    capacity     int CHECK (capacity BETWEEN 0 AND 10000),
    free_places  int CHECK (free_places BETWEEN 0 AND 10000),
    phone        varchar(40),
    notes        varchar(2000)    -- local only: not in the publication
)
SQL
}

# pg_scripts: the psql scripts of a run, from the files run.sh made:
# records.chunked.sql, the same CSV rows as COPY statements of 1,000 rows
# (one transaction each); backlog.sql and updates.sql, N inserts and N
# updates as transactions of 1,000 rows, like `nbxctl import` batches.
pg_scripts() {
	awk -v b=1000 '
	    NR % b == 1 { print "COPY service FROM STDIN WITH (FORMAT csv);" }
	    { print }
	    NR % b == 0 { print "\\." }
	    END { if (NR % b) print "\\." }' "$T/records.csv" \
	    >"$T/records.chunked.sql"
	awk -v n="$N" -v b=1000 -v f=bench_insert -v o="$N" "$PG_CHUNKS" \
	    >"$T/backlog.sql"
	awk -v n="$N" -v b=1000 -v f=bench_update -v o=0 "$PG_CHUNKS" \
	    >"$T/updates.sql"
}
PG_CHUNKS='BEGIN { for (lo = 0; lo < n; lo += b) {
	hi = lo + b - 1; if (hi > n - 1) hi = n - 1
	printf "SELECT %s(%d, %d);\n", f, o + lo, o + hi } }'

pg_count() { pg_sql "$1" "SELECT count(*) FROM service"; }
pg_has() { [ "$(pg_count "$1")" -ge "$2" ]; }
# the last update is visible (the apply worker applies transactions in
# the publisher's commit order, so then all are)
pg_last_updated() {
	[ "$(pg_sql sub "SELECT free_places FROM service WHERE id = '$LAST_ID'")" = \
	    "$(( (N - 1) % 7 + 1 ))" ]
}
pg_ready() {
	[ "$(pg_sql sub "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]
}
pg_checkpoint() {
	pg_sql pub CHECKPOINT
	pg_sql sub CHECKPOINT
	sync
}

# pg_conninfo CLUSTER: libpq connection string of the superuser over the
# unix socket (nbxbench.py's writer and reader)
pg_conninfo() { echo "host=$P/sock port=$(pg_port "$1") dbname=bench user=postgres"; }

# 3. live replication: nbxbench.py calls bench_insert(lo, hi) for
# LIVE_RATE/100 rows every 10 ms on the publisher (one transaction each,
# synchronous_commit on: committed durably, like ee's import), and polls
# max(id) on the subscriber every 2 ms (the apply worker commits in the
# publisher's order).  The subscription runs with the round's MODE.
pg_live() {
	say "N=$N: PostgreSQL live replication ($1), $LIVE_RATE rows/s for $LIVE_SECS s"
	$BENCHPY live-pg --writer "$(pg_conninfo pub)" --reader "$(pg_conninfo sub)" \
	    --rate "$LIVE_RATE" --secs "$LIVE_SECS" --first $((2 * N)) \
	    --timeout "$TIMEOUT" >"$T/live.json" 2>"$T/live.err" ||
	    pg_fail "PostgreSQL live: $(cat "$T/live.err")"
	extra live "pg_$1" "$(cat "$T/live.json")"
	live_say "$T/live.json"
	total=$(jfield "$T/live.json" records)
	[ "$(pg_count sub)" = $((2 * N + total)) ] ||
	    pg_fail "subscriber: $(pg_count sub) rows after live, want $((2 * N + total))"
}

# 4. idle cost: the subscription in sync (2b's last update visible), then
# IDLE_SECS s of nothing; the TCP payload of the replication connection
# (its server side: the walsender's socket on the publisher's port) both
# ways, from `ss -tin` as for nbx.  PostgreSQL's defaults:
# wal_receiver_status_interval 10 s, wal_sender_timeout 60 s.
pg_idle() {
	sleep 2
	say "N=$N: PostgreSQL idle for $IDLE_SECS s"
	$BENCHPY idle --secs "$IDLE_SECS" --ports "$PG_PUB_PORT" \
	    >"$T/idle.json" 2>"$T/idle.err" || pg_fail "PostgreSQL idle: $(cat "$T/idle.err")"
	extra idle pg "$(cat "$T/idle.json")"
	say "  $(cat "$T/idle.json")"
}

# pg_round MODE: every workload once, with the subscription's apply
# worker at synchronous_commit = MODE (off is PostgreSQL's default for
# subscriptions; on flushes WAL at each applied commit, like nbx's fsync
# per batch).  Local ingest sessions use the same MODE.
pg_round() {
	mode=$1
	col=pg_$mode
	LAST_ID=$(printf 'ee:svc-%07d' $((N - 1)))

	# 5b. local ingest, COPY in transactions of 1,000 rows
	pg_sql pub "TRUNCATE service"
	pg_checkpoint
	t0=$(now)
	(export PGOPTIONS="-c synchronous_commit=$mode"
	    pg_file pub "$T/records.chunked.sql")
	t1=$(now)
	[ "$(pg_count pub)" = "$N" ] || pg_fail "chunked COPY: $(pg_count pub) rows"
	result ingest_txn "$col" "$t0" "$t1"

	# 5. local ingest, one COPY of the N rows (psql \copy streams the
	# file over the socket, as nbxctl import streams its file)
	pg_sql pub "TRUNCATE service"
	pg_checkpoint
	t0=$(now)
	(export PGOPTIONS="-c synchronous_commit=$mode"
	    pg_sql pub "\\copy service FROM '$T/records.csv' WITH (FORMAT csv)")
	t1=$(now)
	[ "$(pg_count pub)" = "$N" ] || pg_fail "COPY: $(pg_count pub) rows"
	result ingest "$col" "$t0" "$t1"

	# 1. initial sync into the empty subscriber: CREATE SUBSCRIPTION
	# (copy_data = true) until the subscriber's count(*) reaches N
	pg_sql sub "TRUNCATE service"
	pg_checkpoint
	t0=$(now)
	pg_sql sub "CREATE SUBSCRIPTION bench_sub CONNECTION '$PG_CONNINFO'
	    PUBLICATION bench_pub WITH (copy_data = true,
	    synchronous_commit = '$mode')" >/dev/null 2>"$T/pg.sub.err" ||
	    pg_fail "CREATE SUBSCRIPTION: $(cat "$T/pg.sub.err")"
	poll "PostgreSQL initial sync ($mode)" pg_has sub "$N"
	t1=$(now)
	result sync "$col" "$t0" "$t1"
	# untimed: the table's sync state machine reaches 'r' (ready) before
	# the subscriber is stopped
	poll "subscription ready" pg_ready
	if [ "$mode" = off ]; then
		PG_TLS=$(pg_sql pub "SELECT s.version || ' ' || s.cipher || ', client certificate ' ||
		    coalesce(s.client_dn, 'none') FROM pg_stat_ssl s JOIN pg_stat_activity a
		    USING (pid) WHERE a.backend_type = 'walsender' LIMIT 1")
		[ -n "$PG_TLS" ] || pg_fail "the replication connection is not TLS"
	fi

	# 2a. catch-up of N inserts: subscriber stopped, N inserts on the
	# publisher (1,000 per transaction), subscriber started; timed from
	# the start until its count(*) reaches 2N
	pg_stop sub
	pg_file pub "$T/backlog.sql"
	pg_sql pub CHECKPOINT
	sync
	t0=$(now)
	pg_start sub
	started subscriber "$t0"
	poll "PostgreSQL catch-up of $N inserts ($mode)" pg_has sub $((2 * N))
	t1=$(now)
	result catchup_ins "$col" "$t0" "$t1"

	# 2b. catch-up of N updates (free_places of the first N records,
	# 1,000 per transaction), until the last update is visible
	pg_stop sub
	pg_file pub "$T/updates.sql"
	pg_sql pub CHECKPOINT
	sync
	t0=$(now)
	pg_start sub
	started subscriber "$t0"
	poll "PostgreSQL catch-up of $N updates ($mode)" pg_last_updated
	t1=$(now)
	result catchup_upd "$col" "$t0" "$t1"

	# untimed checks: every row there, every update applied, no notes
	got=$(pg_sql sub "SELECT count(*), count(*) FILTER (WHERE substr(id, 8)::int < $N
	    AND free_places = substr(id, 8)::int % 7 + 1), count(notes) FROM service")
	[ "$got" = "$((2 * N))|$N|0" ] ||
	    pg_fail "subscriber rows|updated|notes = $got, want $((2 * N))|$N|0"

	PG_SIZE="publisher $(pg_sql pub "SELECT pg_size_pretty(pg_total_relation_size('service'))")"
	PG_SIZE="$PG_SIZE, subscriber $(pg_sql sub "SELECT pg_size_pretty(pg_total_relation_size('service'))")"

	if [ "$N" = "$FIRST_N" ]; then
		[ "$mode" = on ] || pg_idle
		pg_live "$mode"
	fi

	# reset for the next round: the subscription (and its slot) goes, the
	# next round starts from empty tables again
	pg_sql sub "DROP SUBSCRIPTION bench_sub" >/dev/null 2>"$T/pg.sub.err" ||
	    pg_fail "DROP SUBSCRIPTION: $(cat "$T/pg.sub.err")"
	pg_sql sub "TRUNCATE service"
	pg_sql pub "TRUNCATE service"
	# and a restart of the subscriber: its logical replication launcher
	# starts no worker within wal_retrieve_retry_interval (5 s) of the
	# last start, which would otherwise delay the next round's sync
	pg_stop sub
	pg_start sub
}
