#!/bin/sh
# make bench: the same replication workloads through nbx and through
# PostgreSQL 15 logical replication, in one run, on this machine, printed
# as one table.  POSIX sh.  A benchmark, not a test: it reports and checks
# that the data arrived, it does not pass or fail on speed.
#
#   nbx         two real nbxd (ee -> lv) over mutually authenticated TLS 1.3
#               on 127.0.0.1 (tests/integration/lib.sh: a CA from `nbxctl
#               ca`, one directory, config and certificate per node)
#   PostgreSQL  two clusters (publisher -> subscriber) on 127.0.0.1, TLS 1.3
#               with client certificates (tests/bench/pg.sh), run twice:
#               the subscription's synchronous_commit off (its default) and
#               on
#
# Workloads (N records; ~255 bytes of JSON each: the key, the 8 region
# fields of nbx's `service` collection and the local-only `notes`):
#   1.  initial sync of N records into an empty peer / subscriber
#   2a. catch-up of a backlog of N inserts: the peer / subscriber is stopped,
#       N new records are written on the origin, then it is started
#   2b. catch-up of a backlog of N updates (free_places of N records)
#   5.  local ingest: `nbxctl import` of the N records (1,000 per
#       transaction) / one PostgreSQL COPY of the same rows
#   5b. local ingest with 1,000 rows per transaction on both sides
#
# Sizes: BENCH_RECORDS="N [N...]" (default 100000); BENCH_FULL=1 adds
# 1000000.  KEEP=1 keeps the temporary directory.  Everything runs under
# one mktemp directory; the nodes and clusters are stopped and the
# directory removed on exit, also on failure or Ctrl-C.
NBX_REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$NBX_REPO/tests/integration/lib.sh"
. "$NBX_REPO/tests/bench/pg.sh"

# lib.sh's EXIT trap removes $T; the clusters must be stopped first.
trap 'pg_cleanup; cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SIZES=${BENCH_RECORDS:-100000}
if [ "${BENCH_FULL:-}" = 1 ] && [ -z "${BENCH_RECORDS:-}" ]; then
	SIZES="100000 1000000"
fi
MAP_MB=4096	# the LMDB map; it grows on demand anyway
export MAP_MB

now() { date +%s.%N; }
say() { echo "bench: $*" >&2; }
# started WHAT T0: notes how long the start-up part of a catch-up took
started() { awk -v w="$1" -v a="$2" -v b="$(now)" 'BEGIN {
	printf "bench:   (%s answered after %.2f s)\n", w, b - a }' >&2; }

# poll DESCRIPTION COMMAND...: runs COMMAND every 0.1 s until it succeeds;
# fails the run (with the nbxd and PostgreSQL logs) after $TIMEOUT s.
poll() {
	what=$1
	shift
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt $((TIMEOUT * 10)) ] || pg_fail "timed out after ${TIMEOUT}s: $what"
		sleep 0.1
	done
}

# result WORKLOAD COLUMN T0 T1: one measurement, to $T/results
result() {
	awk -v n="$N" -v k="$1" -v c="$2" -v a="$3" -v b="$4" 'BEGIN {
	    printf "%d %s %s %.3f\n", n, k, c, b - a;
	    printf "bench: N=%d %-11s %-6s %7.2f s %9.0f records/s\n", n, k, c,
	        b - a, n / (b - a) > "/dev/stderr" }' >>"$T/results"
}

# ------------------------------------------------------------------
# The data: record i of N, the same values on both sides
# ------------------------------------------------------------------

# gen json|csv FROM COUNT: records FROM .. FROM+COUNT-1 as nbx import
# lines or as CSV rows of the PostgreSQL table (id, the 8 fields, notes)
gen() {
	awk -v fmt="$1" -v lo="$2" -v n="$3" 'BEGIN {
	    for (i = lo; i < lo + n; i++) {
		id = sprintf("ee:svc-%07d", i)
		name = "Support service number " i
		org = sprintf("ee:org-%04d", i % 1000)
		phone = sprintf("+372 600 %04d", i % 10000)
		if (fmt == "json")
		    printf "{\"collection\":\"service\",\"id\":\"%s\",\"fields\":" \
			"{\"name\":\"%s\",\"organisation\":\"%s\",\"country\":\"ee\"," \
			"\"city\":\"Tallinn\",\"kind\":\"shelter\",\"capacity\":%d," \
			"\"free_places\":%d,\"phone\":\"%s\",\"notes\":\"internal note %d\"}}\n",
			id, name, org, i % 50, i % 7, phone, i
		else
		    printf "%s,%s,%s,ee,Tallinn,shelter,%d,%d,%s,internal note %d\n",
			id, name, org, i % 50, i % 7, phone, i
	    } }'
}

make_data() {
	gen json 0 "$N" >"$T/records.jsonl"		# 1, 5: the N records
	gen json "$N" "$N" >"$T/backlog.jsonl"	# 2a: N more
	# 2b: N updates, free_places of record i becomes i % 7 + 1
	awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
	    printf "{\"collection\":\"service\",\"id\":\"ee:svc-%07d\"," \
		"\"fields\":{\"free_places\":%d}}\n", i, i % 7 + 1 }' \
	    >"$T/updates.jsonl"
	gen csv 0 "$N" >"$T/records.csv"
	REC_SIZE="$(($(wc -c <"$T/records.jsonl") / N)) B as JSON, $(($(wc -c <"$T/records.csv") / N)) B as CSV"
	pg_scripts
}

# ------------------------------------------------------------------
# nbx
# ------------------------------------------------------------------

# status fields, without starting a JSON parser per poll (names are
# unique in `nbxctl status --json`; "seq" is the node's own)
stat_of() { ctl "$1" status --json | grep -o "\"$2\":[0-9]*" | head -n 1 | cut -d: -f2; }
nbx_has() { [ "$(stat_of "$1" records)" -ge "$2" ]; }
# ee's view of lv: lv acknowledged (after its commit) ee's log up to $1
lv_acked() { [ "$(stat_of ee acked_seq)" -ge "$1" ]; }

nbx_pass() {
	rm -rf "$T/ee" "$T/lv"
	nbx_node ee 1
	nbx_node lv 2
	nbx_peer ee lv
	nbx_peer lv ee
	nbx_start ee

	# 5. local ingest: nbxctl import of the N records into ee (lv not
	# running).  nbxctl sends 1,000 lines per request, each applied in
	# one LMDB transaction committed with fsync, so 5 and 5b are the same
	# measurement on the nbx side.
	sync
	t0=$(now)
	ctl ee import "$T/records.jsonl" >"$T/import.out" 2>"$T/import.err" ||
	    fail "import: $(cat "$T/import.out" "$T/import.err")"
	t1=$(now)
	grep -q "applied $N, unchanged 0, rejected 0" "$T/import.out" ||
	    fail "import: $(cat "$T/import.out")"
	result ingest nbx "$t0" "$t1"
	result ingest_txn nbx "$t0" "$t1"

	# 1. initial sync: start lv (empty) and time until it has N records
	# (`nbxctl status --json` node.records, committed in LMDB)
	sync
	t0=$(now)
	nbx_start lv
	poll "nbx initial sync" nbx_has lv "$N"
	t1=$(now)
	result sync nbx "$t0" "$t1"
	poll "lv acknowledges all of ee's log" lv_acked "$(stat_of ee seq)"

	# 2a. catch-up of N inserts: lv stopped, N new records imported on
	# ee, lv started; time until lv has 2N records
	nbx_stop lv
	ctl ee import "$T/backlog.jsonl" >"$T/import.out" 2>&1 ||
	    fail "backlog import: $(cat "$T/import.out")"
	sync
	t0=$(now)
	nbx_start lv
	started lv "$t0"
	poll "nbx catch-up of $N inserts" nbx_has lv $((2 * N))
	t1=$(now)
	result catchup_ins nbx "$t0" "$t1"
	poll "lv acknowledges all of ee's log" lv_acked "$(stat_of ee seq)"

	# 2b. catch-up of N updates: the same with N updates (one field
	# each); time until lv has acknowledged ee's whole log, i.e. committed
	# every update (an update adds no record, so records cannot tell)
	nbx_stop lv
	ctl ee import "$T/updates.jsonl" >"$T/import.out" 2>&1 ||
	    fail "update import: $(cat "$T/import.out")"
	grep -q "applied $N, unchanged 0" "$T/import.out" ||
	    fail "update import: $(cat "$T/import.out")"
	target=$(stat_of ee seq)
	sync
	t0=$(now)
	nbx_start lv
	started lv "$t0"
	poll "nbx catch-up of $N updates" lv_acked "$target"
	t1=$(now)
	result catchup_upd nbx "$t0" "$t1"

	# untimed checks on lv: every record, every update, no notes
	[ "$(q lv count service)" = $((2 * N)) ] || fail "lv: $(q lv count service) records"
	[ "$(q lv count service --where notes~internal)" = 0 ] || fail "notes reached lv"
	bad=$(q lv list service --fields free_places --format csv | awk -F, -v n="$N" '
	    NR > 1 { i = substr($1, 8) + 0	# (CSV lines end in CR LF)
		     if ($2 + 0 != (i < n ? i % 7 + 1 : i % 7)) bad++ }
	    END { print bad + 0 }')
	[ "$bad" = 0 ] || fail "lv: $bad records with a wrong free_places"
	NBX_SIZE=$(du -sh "$T/ee/data" "$T/lv/data" | awk '{ printf "%s%s %s", s, $2 ~ /ee/ ? "ee" : "lv", $1; s = ", " }')
	nbx_stop lv
	nbx_stop ee
}

# ------------------------------------------------------------------
# The run
# ------------------------------------------------------------------

RUN_T0=$(now)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)	# other work on the machine skews results
pg_install
: >"$T/results"

# machine facts, and how fast this disk makes a small synchronous write
# (both systems fsync at every commit, so it bounds the catch-up rates)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
t0=$(now)
dd if=/dev/zero of="$T/dsync.test" bs=8k count=200 oflag=dsync 2>/dev/null
t1=$(now)
rm -f "$T/dsync.test"
FSYNC=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 200 / (b - a) }')
FS=$(df -PT "$T" | awk 'NR == 2 { print $2 }')
REV=${NBX_REV:-$(git -C "$NBX_REPO" describe --always --dirty 2>/dev/null || echo unknown)}

nbx_ca
PG_READY=""
for N in $SIZES; do
	TIMEOUT=$((120 + N / 250))
	say "N=$N: making the data"
	make_data
	say "N=$N: nbx"
	nbx_pass
	if [ -z "$PG_READY" ]; then
		say "setting up PostgreSQL"
		pg_setup
		PG_READY=1
	fi
	for mode in off on; do
		say "N=$N: PostgreSQL, subscription synchronous_commit = $mode"
		pg_round "$mode"
	done
	rm -f "$T"/*.jsonl "$T"/*.csv "$T"/*.sql
done
RUN_T1=$(now)
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------
# The table
# ------------------------------------------------------------------
python3 - "$T/results" <<PY
import sys
rows = [
    ("sync",        "1.  initial sync into an empty peer"),
    ("catchup_ins", "2a. catch-up: backlog of N inserts"),
    ("catchup_upd", "2b. catch-up: backlog of N updates"),
    ("ingest",      "5.  local ingest: import / one COPY"),
    ("ingest_txn",  "5b. local ingest, 1,000 rows per txn"),
]
res = {}
for line in open(sys.argv[1]):
    n, k, c, s = line.split()
    res[(int(n), k, c)] = float(s)
sizes = sorted({k[0] for k in res})

def cell(n, k, c):
    s = res.get((n, k, c))
    return "-" if s is None else f"{s:7.2f} s {n / s:9,.0f}/s"

def ratio(n, k):
    x = res.get((n, k, "nbx"))
    on = res.get((n, k, "pg_on"))
    off = res.get((n, k, "pg_off"))
    if x is None or on is None or off is None:
        return "-"
    return f"{on / x:5.2f} ({off / x:.2f})"

print()
print("machine: $(nproc) cores, $CPU, $MEM RAM, Linux $(uname -r)")
print("load average (1, 5, 15 min): $LOAD0 at the start, $LOAD1 at the end")
print("storage: $FS under $T; about $FSYNC synchronous 8 KiB writes/s (dd oflag=dsync)")
print("versions: nbx $REV; $("$PGBIN/postgres" --version); $(openssl version | cut -d' ' -f1-2)")
print("records: key + 8 region fields + local-only notes ($REC_SIZE); "
      "origin ee / publisher -> peer lv / subscriber, both on 127.0.0.1")
print()
head = ["workload", "nbx", "PostgreSQL (sync_commit off)",
        "PostgreSQL (sync_commit on)", "ratio nbx/PG"]
body = []
for n in sizes:
    for k, label in rows:
        body.append([label.replace(" N ", f" {n:,} ") + ("" if len(sizes) == 1
                     else f" [N = {n:,}]"), cell(n, k, "nbx"),
                     cell(n, k, "pg_off"), cell(n, k, "pg_on"), ratio(n, k)])
w = [max(len(r[i]) for r in body + [head]) for i in range(len(head))]
line = lambda cells: "| " + " | ".join(c.ljust(x) for c, x in zip(cells, w)) + " |"
print(line(head))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in body:
    print(line(r))
print(f"(N = {', '.join(f'{n:,}' for n in sizes)}; seconds and records/s)")
PY
cat <<EOF
ratio: records/s of nbx / records/s of PostgreSQL with synchronous_commit on
  (the same durability as nbx), in parentheses against off; > 1: nbx faster.
durability: nbx commits every batch (import: 1,000 records; sync: one
  received batch of <= 256 KiB) in an LMDB transaction with fsync before it
  is acknowledged.  PostgreSQL: fsync = on; local ingest sessions and the
  subscription's apply worker run with the synchronous_commit of the column
  (off: commits are visible at once and flushed by the WAL writer within
  ~0.6 s; a subscriber crash loses no data, it re-fetches from the
  publisher's slot).  The origin's own writes (publisher, ee) are untimed
  in 2a/2b and commit durably.
timing: 1 from the start of lv / CREATE SUBSCRIPTION until N records are
  visible there; 2a/2b from the start of the stopped lv / subscriber
  process (daemon and server start-up, connection, TLS included) until
  2N records are visible (2a); 2b until the last update is visible on the
  subscriber (PostgreSQL applies in commit order) / lv has acknowledged
  ee's whole log (nbx acknowledges after commit).  The clock is polled
  every 0.1 s.  Data checked afterwards: every record and update arrived,
  no notes left the origin.  5 and 5b are one nbx run: nbxctl import
  always sends 1,000 lines per transaction.
TLS: nbx TLS 1.3 with mutual certificates (nbxctl ca); PostgreSQL
  replication connection $PG_TLS, sslmode=verify-full.
sizes with 2N records: nbx data directories (LMDB: records, change log,
  disclosure log) $NBX_SIZE; PostgreSQL table + index (no WAL) $PG_SIZE.
EOF
awk -v a="$RUN_T0" -v b="$RUN_T1" 'BEGIN { printf "wall time of the whole run: %.0f s\n", b - a }'
