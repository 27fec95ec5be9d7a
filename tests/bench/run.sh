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
# and, once per run (at the first size, on the nodes / clusters that
# hold the 2N records of 1 and 2), with tests/bench/nbxbench.py:
#   3.  live replication: writes on the origin at a fixed rate (one batch
#       every 10 ms) while the peer / subscriber is connected; achieved
#       rate, and the lag of each batch from its commit on the origin
#       until it is visible on the peer (median, p99)
#   4.  idle cost: bytes per minute between two in-sync nodes / over the
#       replication connection
#   6.  convergence (nbx only): K nodes in a full mesh, split K/2 | K/2 by
#       a proxy on the cross links, 10,000 imports on each side, heal;
#       seconds until every pair's `nbxctl verify` digests match
#   7.  memory (nbx only): peak RssAnon of each nbxd during 5, 1, 2a, 2b
#   8.  scaling: the per-record cost of 1, 2 and 5 at the largest size
#       against the smallest (with more than one size), and 6 at 2, 4
#       and 8 nodes
#   9.  reconciliation of the in-sync pair (at each size): `verify lv
#       --repair` on ee; time, bytes on the wire, records exchanged, CPU
#   10. restore (at the first size): lv restored from a hot backup
#       (mdb_copy -c) after both wrote 1,000 records; seconds from its
#       start until every record is back and until the digests agree
#
# PROTO_MAX=1 runs the nodes with [sync] protocol_max = 1 (the previous
# release's protocol; 9 and 10 are left out), to compare versions.
# Sizes: BENCH_RECORDS="N [N...]" (default 100000); BENCH_FULL=1 adds
# 1000000.  BENCH_LIVE_RATE (records/s, default 50000) and
# BENCH_LIVE_SECS (default 10) set 3; BENCH_IDLE_SECS (default 60) sets
# 4; BENCH_CONVERGE_NODES (default "2 4 8") and BENCH_CONVERGE_WRITES
# (per side, default 10000) set 6.  KEEP=1 keeps the temporary directory.
# The machine's speed is probed before each pass (probe below) and
# printed with the table: on a shared host it moves between passes.
# Everything runs under one mktemp directory; the nodes, proxies and
# clusters are stopped and the directory removed on exit, also on failure
# or Ctrl-C.
NBX_REPO=$(cd "$(dirname "$0")/../.." && pwd)
export NBX_REPO		# the table scripts import tests/bench/nbxbench.py
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
FIRST_N=${SIZES%% *}	# 3, 4 and 6 run once, at this size
LIVE_RATE=${BENCH_LIVE_RATE:-50000}
LIVE_SECS=${BENCH_LIVE_SECS:-10}
IDLE_SECS=${BENCH_IDLE_SECS:-60}
CONV_NODES=${BENCH_CONVERGE_NODES:-2 4 8}
CONV_WRITES=${BENCH_CONVERGE_WRITES:-10000}
MAP_MB=4096	# the LMDB map; it grows on demand anyway
# nbxd's defaults for what lib.sh sets for tests: 1 MiB batches
BATCH_BYTES=$(sed -n 's/^batch_bytes *= *\([0-9]*\).*/\1/p' "$NBX_REPO/conf/nbx.conf.example")
export MAP_MB BATCH_BYTES
BENCHPY="python3 $NBX_REPO/tests/bench/nbxbench.py"
# the daemon's default ping interval (4 runs with it), as documented
IDLE_PING=$(sed -n 's/^ping_interval_ms *= *\([0-9]*\).*/\1/p' "$NBX_REPO/conf/nbx.conf.example")

now() { date +%s.%N; }
say() { echo "bench: $*" >&2; }
# probe LABEL: the machine's speed just before a pass, as the wall time of
# one fixed CPU task on each of two processes at once (the host is shared:
# its speed moves between passes; a pass with a larger probe ran on a
# slower machine)
probe() {
	t0=$(now)
	awk 'BEGIN { for (i = 0; i < 10000000; i++) s += i % 7 }' &
	p1=$!
	awk 'BEGIN { for (i = 0; i < 10000000; i++) s += i % 7 }'
	wait "$p1"	# not a bare wait: the rss sampler runs in the background
	awk -v l="$1" -v a="$t0" -v b="$(now)" \
	    'BEGIN { printf "%s %.2f\n", l, b - a }' >>"$T/probe"
}

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

# extra WORKLOAD COLUMN JSON: a measurement of 3, 4 or 6 (nbxbench.py's
# JSON result), to $T/extra
extra() { echo "$1 $2 $3" >>"$T/extra"; }
# jfield FILE KEY: a number from a JSON result
jfield() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# phase NAME: the workload the memory sampler (7) attributes RSS to;
# phase "" stops sampling
phase() {
	if [ -n "$1" ]; then echo "$N $1" >"$T/phase.tmp"; mv "$T/phase.tmp" "$T/phase"
	else rm -f "$T/phase"; fi
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

# gen json|csv FROM COUNT [NODE]: records FROM .. FROM+COUNT-1 as nbx
# import lines or as CSV rows of the PostgreSQL table (id, the 8 fields,
# notes); ids NODE:svc-NNNNNNN (NODE: the writing node, default ee)
gen() {
	awk -v fmt="$1" -v lo="$2" -v n="$3" -v node="${4:-ee}" 'BEGIN {
	    for (i = lo; i < lo + n; i++) {
		id = sprintf("%s:svc-%07d", node, i)
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
	phase 5
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
	phase 1
	t0=$(now)
	nbx_start lv
	poll "nbx initial sync" nbx_has lv "$N"
	t1=$(now)
	result sync nbx "$t0" "$t1"
	poll "lv acknowledges all of ee's log" lv_acked "$(stat_of ee seq)"

	# 2a. catch-up of N inserts: lv stopped, N new records imported on
	# ee, lv started; time until lv has 2N records
	nbx_stop lv
	phase ""	# the origin's backlog write is not workload 2
	ctl ee import "$T/backlog.jsonl" >"$T/import.out" 2>&1 ||
	    fail "backlog import: $(cat "$T/import.out")"
	sync
	phase 2a
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
	phase ""
	ctl ee import "$T/updates.jsonl" >"$T/import.out" 2>&1 ||
	    fail "update import: $(cat "$T/import.out")"
	grep -q "applied $N, unchanged 0" "$T/import.out" ||
	    fail "update import: $(cat "$T/import.out")"
	target=$(stat_of ee seq)
	sync
	phase 2b
	t0=$(now)
	nbx_start lv
	started lv "$t0"
	poll "nbx catch-up of $N updates" lv_acked "$target"
	t1=$(now)
	result catchup_upd nbx "$t0" "$t1"
	phase ""

	# untimed checks on lv: every record, every update, no notes
	[ "$(q lv count service)" = $((2 * N)) ] || fail "lv: $(q lv count service) records"
	[ "$(q lv count service --where notes~internal)" = 0 ] || fail "notes reached lv"
	bad=$(q lv list service --fields free_places --format csv | awk -F, -v n="$N" '
	    NR > 1 { i = substr($1, 8) + 0	# (CSV lines end in CR LF)
		     if ($2 + 0 != (i < n ? i % 7 + 1 : i % 7)) bad++ }
	    END { print bad + 0 }')
	[ "$bad" = 0 ] || fail "lv: $bad records with a wrong free_places"
	NBX_SIZE=$(du -sh "$T/ee/data" "$T/lv/data" | awk '{ printf "%s%s %s", s, $2 ~ /ee/ ? "ee" : "lv", $1; s = ", " }')
	if [ "$N" = "$FIRST_N" ]; then
		nbx_live
		nbx_idle
	fi
	nbx_reconcile
	if [ "$N" = "$FIRST_N" ]; then
		nbx_restore
	fi
	nbx_stop lv
	nbx_stop ee
}

# 9. reconciliation of an in-sync pair: ee and lv hold the same records
# (2N, and those of 3 at the first size); `nbxctl verify lv --repair` on
# ee; nbxbench.py reports the seconds until the run ended, the plaintext
# bytes both ways, the records exchanged (0: they agree) and the CPU of
# both nbxd.
nbx_reconcile() {
	[ "${PROTO_MAX:-2}" = 1 ] && return 0	# version 1 cannot
	poll "ee and lv connected and in sync" in_sync
	say "N=$N: nbx reconciliation of the in-sync pair"
	$BENCHPY reconcile --ctl "$T/ee/ctl.sock" --peer lv \
	    --pids "$T/ee/pid,$T/lv/pid" >"$T/recon.json" 2>"$T/recon.err" ||
	    fail "nbx reconcile: $(cat "$T/recon.err")"
	extra reconcile "$N" "$(cat "$T/recon.json")"
	say "  $(cat "$T/recon.json")"
}

# 10. restore: a hot backup of lv (mdb_copy -c while it runs); then lv and
# ee each import 1,000 new records and both hold all of them; lv is
# stopped, its data replaced by the backup, started again.  Timed from its
# start: every record back (lv's own later ones come only through
# reconciliation: ee's log stream leaves them out), then equal verify
# digests on both ends.
nbx_restore() {
	[ "${PROTO_MAX:-2}" = 1 ] && return 0	# version 1 cannot repair it
	want=$(( $(stat_of ee records) + 2000 ))	# in sync: both hold as many
	rm -rf "$T/lv.backup"
	mkdir "$T/lv.backup"
	mdb_copy -c "$T/lv/data" "$T/lv.backup" || fail "mdb_copy of lv"
	gen json 0 1000 lv >"$T/lv.jsonl"
	gen json 9000000 1000 ee >"$T/ee.jsonl"
	ctl lv import "$T/lv.jsonl" >"$T/import.out" 2>&1 || fail "lv import: $(cat "$T/import.out")"
	ctl ee import "$T/ee.jsonl" >"$T/import.out" 2>&1 || fail "ee import: $(cat "$T/import.out")"
	poll "ee and lv hold both imports" records_all "ee lv" "$want"
	nbx_stop lv
	rm -rf "$T/lv/data"
	mkdir "$T/lv/data"
	cp "$T/lv.backup/data.mdb" "$T/lv/data/data.mdb"
	say "N=$N: nbx restore of lv from its backup"
	t0=$(now)
	nbx_start lv
	poll "the restored lv holds every record" nbx_has lv "$want"
	t1=$(now)
	poll "the restored lv's verify digests equal ee's" digests_agree ee lv
	t2=$(now)
	extra restore "$N" "$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v r="$want" \
	    'BEGIN { printf "{\"records\": %d, \"records_s\": %.3f, \"verify_s\": %.3f}", r, b - a, c - a }')"
	say "  $(tail -n 1 "$T/extra")"
}

# 3. live replication: nbxbench.py writes LIVE_RATE records/s for
# LIVE_SECS s on ee (records 2N, 2N+1, ...: one `import` request of
# LIVE_RATE/100 records every 10 ms, built before the clock starts, one in
# flight, each committed with fsync before its reply) and polls lv's
# record count (`status` on its control socket) every 2 ms; a batch's lag
# runs from ee's reply until lv's count covers it.  lv runs the bench
# config (ping 1 s); both hold 2N records.
nbx_live() {
	say "N=$N: nbx live replication, $LIVE_RATE records/s for $LIVE_SECS s"
	$BENCHPY live-nbx --writer "$T/ee/ctl.sock" --reader "$T/lv/ctl.sock" \
	    --rate "$LIVE_RATE" --secs "$LIVE_SECS" --first $((2 * N)) \
	    --base "$(stat_of lv records)" --timeout "$TIMEOUT" \
	    >"$T/live.json" 2>"$T/live.err" || fail "nbx live: $(cat "$T/live.err")"
	extra live nbx "$(cat "$T/live.json")"
	live_say "$T/live.json"
	# untimed: lv has every record and acknowledged ee's whole log
	total=$(jfield "$T/live.json" records)
	poll "lv acknowledges all of ee's log" lv_acked "$(stat_of ee seq)"
	[ "$(q lv count service)" = $((2 * N + total)) ] ||
	    fail "lv: $(q lv count service) records after live, want $((2 * N + total))"
	[ "$(q lv count service --where notes~internal)" = 0 ] || fail "notes reached lv"
}
live_say() {
	python3 - "$1" <<'PY' >&2
import json, sys
d = json.load(open(sys.argv[1]))
print("bench:   target %(target_rate).0f/s, achieved %(achieved_rate).0f/s "
      "(%(records)d records in %(secs).2f s, writer %(behind_s).2f s behind "
      "at the end); lag median %(lag_p50_ms).1f ms, p99 %(lag_p99_ms).1f ms, "
      "max %(lag_max_ms).1f ms; origin commit median %(commit_p50_ms).1f ms"
      % d)
print("bench:   lag median per tenth of the run (ms): %s"
      % " ".join(str(x) for x in d["lag_tenths_p50_ms"]))
PY
}

# 4. idle cost: ee and lv restarted with the daemon's default liveness
# settings (ping_interval_ms, dead_after_ms; the bench config sets a 1 s
# ping for the other workloads), connected and in sync; then IDLE_SECS s
# of nothing.  Counted: the plaintext bytes_in + bytes_out ee reports for
# lv (`status`), and the TCP payload of the connection both ways from the
# kernel's counters (`ss -tin` bytes_acked + bytes_received: the TLS
# records; IP and TCP headers not included, segments counted instead).
nbx_idle() {
	nbx_stop lv
	nbx_stop ee
	for n in ee lv; do
		grep -v -e '^ping_interval_ms' -e '^dead_after_ms' "$T/$n/nbx.conf" \
		    >"$T/$n/nbx.conf.tmp"
		mv "$T/$n/nbx.conf.tmp" "$T/$n/nbx.conf"
	done
	nbx_start ee
	nbx_start lv
	poll "ee and lv connected and in sync" in_sync
	sleep 2
	say "N=$N: nbx idle for $IDLE_SECS s"
	$BENCHPY idle --secs "$IDLE_SECS" --ports "$(port_of ee),$(port_of lv)" \
	    --ctl "$T/ee/ctl.sock" --peer lv >"$T/idle.json" 2>"$T/idle.err" ||
	    fail "nbx idle: $(cat "$T/idle.err")"
	extra idle nbx "$(cat "$T/idle.json")"
	say "  $(cat "$T/idle.json")"
}
# both directions up with nothing unacknowledged
in_sync() {
	for n in ee lv; do
		ctl "$n" status --json | grep -q '"state":"up"' || return 1
		[ "$(stat_of "$n" lag)" = 0 ] || return 1
	done
}

# 6. convergence: K nodes c1..cK in a full mesh; the links between the
# halves c1..cK/2 and the rest go through tests/tools/flakyproxy.py (one
# proxy link "cross" for all of them; the links inside a half are direct).
# The mesh comes up and gets in sync on 100 records from each node (so
# that every node has a cursor with every peer, as in a network that has
# been running), the proxy cuts the cross links (RST, new connections
# refused: the nodes are not told, they retry with their backoff), each
# half imports CONV_WRITES records (spread over its nodes) and replicates
# them inside the half; then nbxbench.py heals (proxy "pass") and times,
# from the heal: every peer up again, every node holding every record
# (`status`, each node polled every 10 ms by a thread of its own), and
# every pair's `verify` digests equal
# on both ends (the end of the first round of verify calls over all pairs,
# the nodes asked in parallel, each node's calls for its peers sent at once,
# that finds them all equal).  The bench
# config's reconnect backoff (100 ms doubling to 1 s, jitter x0.5-1.5)
# applies.  Checked afterwards: every node holds exactly every record, and
# no notes of another node's records.
nbx_converge() {
	k=$1
	half=$((k / 2))
	# ports PORT_BASE+1..k: at most 8 nodes (lib.sh gives a run 10 ports)
	case $k in 2|4|6|8) ;; *) fail "BENCH_CONVERGE_NODES: 2, 4, 6 or 8 nodes, not $k" ;; esac
	per=$((CONV_WRITES / half))
	[ $((per * half)) = "$CONV_WRITES" ] ||
	    fail "BENCH_CONVERGE_WRITES: $CONV_WRITES does not split over $half nodes"
	nodes=""
	i=1
	while [ $i -le "$k" ]; do nodes="$nodes c$i"; i=$((i + 1)); done
	side() { [ "${1#c}" -le "$half" ] && echo a || echo b; }
	for n in $nodes; do rm -rf "${T:?}/$n"; nbx_node "$n" "${n#c}"; done
	routes=""
	for a in $nodes; do
		for b in $nodes; do
			[ "$a" != "$b" ] && [ "$(side "$a")" != "$(side "$b")" ] &&
			    routes="$routes --route $a.$b:cross:$(port_of "$b")"
		done
	done
	rm -f "$T/proxy.ports"
	# shellcheck disable=SC2086
	nbx_proxy_start $routes
	for a in $nodes; do
		for b in $nodes; do
			[ "$a" = "$b" ] && continue
			if [ "$(side "$a")" = "$(side "$b")" ]; then nbx_peer "$a" "$b"
			else nbx_peer_via "$a" "$b" "$(proxy_port "$a.$b")"; fi
		done
	done
	for n in $nodes; do nbx_start "$n"; done
	poll "the $k-node mesh is up" peers_up "$nodes" $((k - 1))
	pre=$((100 * k))
	for n in $nodes; do
		gen json 1000000 100 "$n" >"$T/$n.jsonl"
		ctl "$n" import "$T/$n.jsonl" >"$T/$n.import.out" 2>&1 ||
		    fail "$n import: $(cat "$T/$n.import.out")"
	done
	poll "the $k-node mesh in sync on $pre records" records_all "$nodes" "$pre"
	poll "every peer has acknowledged every log" lag_zero "$nodes" $((k - 1))
	proxy_ctl set cross cut >/dev/null || fail "proxy: cut"
	poll "the split: only the links inside each half up" peers_up "$nodes" $((half - 1))
	for n in $nodes; do
		gen json 0 "$per" "$n" >"$T/$n.jsonl"
		ctl "$n" import "$T/$n.jsonl" >"$T/$n.import.out" 2>&1 ||
		    fail "$n import: $(cat "$T/$n.import.out")"
	done
	poll "each half has its own $CONV_WRITES records" records_all "$nodes" $((pre + CONV_WRITES))
	sleep 0.5
	records_all "$nodes" $((pre + CONV_WRITES)) || fail "records crossed the split"
	say "$k nodes, split $half | $half, $CONV_WRITES records written on each side: heal"
	socks=""
	for n in $nodes; do socks="$socks $n=$T/$n"; done
	# shellcheck disable=SC2086
	$BENCHPY heal --proxy "$(proxy_port control)" --link cross \
	    --expect $((pre + 2 * CONV_WRITES)) --timeout 120 $socks \
	    >"$T/heal.json" 2>"$T/heal.err" || fail "heal ($k nodes): $(cat "$T/heal.err")"
	extra converge "$k" "$(cat "$T/heal.json")"
	say "  $(cat "$T/heal.json")"
	# links between nodes that declared each other dead (no byte for
	# dead_after_ms) during the run: a blocked or starved event loop
	extra convdead "$k" "$(cat "$T"/c[0-9]*/nbxd.log | grep -c 'dead link' || true)"
	# untimed: every node has exactly every record, the notes of none
	for n in $nodes; do
		[ "$(q "$n" count service)" = $((pre + 2 * CONV_WRITES)) ] ||
		    fail "$n: $(q "$n" count service) records after the heal"
	done
	[ "$(q c1 count service --where notes~internal)" = $((100 + per)) ] ||
	    fail "c1: notes of other nodes' records arrived"
	for n in $nodes; do nbx_stop "$n"; done
	proxy_ctl quit >/dev/null || true
	rm -rf "$T"/c[0-9]*
}
# peers_up NODES COUNT: every node of NODES has COUNT peers up
peers_up() {
	for n in $1; do
		[ "$(ctl "$n" status --json | grep -o '"state":"up"' | wc -l)" = "$2" ] || return 1
	done
}
# lag_zero NODES COUNT: every node of NODES has COUNT peers with nothing
# of its log unacknowledged
lag_zero() {
	for n in $1; do
		[ "$(ctl "$n" status --json | grep -o '"lag":0[,}]' | wc -l)" = "$2" ] || return 1
	done
}
# records_all NODES COUNT: every node of NODES holds COUNT records
records_all() {
	for n in $1; do [ "$(stat_of "$n" records)" = "$2" ] || return 1; done
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
: >"$T/extra"
# 7: RssAnon of ee and lv, every 0.1 s, attributed to the phase that
# `phase` names (cleanup stops it)
$BENCHPY rss --phase-file "$T/phase" --out "$T/rss" --parent $$ \
    ee="$T/ee/pid" lv="$T/lv/pid" 2>>"$T/rss.err" &
echo "rss $!" >>"$PIDS_FILE"
PG_READY=""
for N in $SIZES; do
	TIMEOUT=$((120 + N / 250))
	say "N=$N: making the data"
	make_data
	say "N=$N: nbx"
	probe "nbx,N=$N"
	nbx_pass
	if [ "$N" = "$FIRST_N" ]; then
		# before pg_setup: the nodes use ports PORT_BASE+1..8, the
		# clusters +5 and +6
		TIMEOUT=120
		for k in $CONV_NODES; do nbx_converge "$k"; done
		TIMEOUT=$((120 + N / 250))
	fi
	if [ -z "$PG_READY" ]; then
		say "setting up PostgreSQL"
		pg_setup
		PG_READY=1
	fi
	for mode in off on; do
		say "N=$N: PostgreSQL, subscription synchronous_commit = $mode"
		probe "PG_$mode,N=$N"
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
sys.path.insert(0, "$NBX_REPO/tests/bench")
from nbxbench import table
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
print("speed probe before each pass (two fixed CPU tasks at once, seconds; "
      "larger: a slower machine):")
print("  " + ", ".join(l.replace("_", " ").replace(",", " ") for l in
      open("$T/probe").read().splitlines()))
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
table(head, body)
print(f"(N = {', '.join(f'{n:,}' for n in sizes)}; seconds and records/s)")
PY
cat <<EOF
ratio: records/s of nbx / records/s of PostgreSQL with synchronous_commit on
  (the same durability as nbx), in parentheses against off; > 1: nbx faster.
durability: nbx commits every batch (import: 1,000 records; sync: one
  received batch of <= $BATCH_BYTES bytes) in an LMDB transaction with fsync before it
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

# 3, 4, 6, 7 and 8: the second and third tables
python3 - "$T/results" "$T/extra" "$T/rss" "$LIVE_RATE" "$LIVE_SECS" \
    "$IDLE_SECS" "$CONV_WRITES" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["NBX_REPO"] + "/tests/bench")
from nbxbench import table
results, extra, rss = sys.argv[1:4]
rate, secs, idle_secs, conv_writes = (float(x) for x in sys.argv[4:8])
ex = {}
for line in open(extra):
    k, c, j = line.split(" ", 2)
    ex[(k, c)] = json.loads(j)     # (convdead: a bare count)
res = {}
for line in open(results):
    n, k, c, s = line.split()
    res[(int(n), k, c)] = float(s)
sizes = sorted({k[0] for k in res})
peaks = {}
if os.path.exists(rss):
    for line in open(rss):
        n, ph, node, kb = line.split()
        peaks.setdefault((int(n), ph), []).append((node, int(kb)))
cols = ("nbx", "pg_off", "pg_on")

def live(c, f):
    d = ex.get(("live", c))
    return "-" if d is None else f(d)

def idle(c, f):
    d = ex.get(("idle", "nbx" if c == "nbx" else "pg"))
    return "-" if d is None or c == "pg_on" else f(d)

print()
body = [
    [f"3.  live: target {rate:,.0f}/s for {secs:g} s, achieved"] +
    [live(c, lambda d: f"{d['achieved_rate']:,.0f}/s ({d['records']:,} in {d['secs']:.1f} s)")
     for c in cols],
    ["3.  live: lag median / p99 (max)"] +
    [live(c, lambda d: f"{d['lag_p50_ms']:.1f} / {d['lag_p99_ms']:.1f} ms ({d['lag_max_ms']:.0f})")
     for c in cols],
    ["3.  live: origin commit, median / p99"] +
    [live(c, lambda d: f"{d['commit_p50_ms']:.1f} / {d['commit_p99_ms']:.1f} ms") for c in cols],
    [f"4.  idle ({idle_secs:g} s): plaintext bytes/min"] +
    [idle(c, lambda d: f"{d['plain_per_min']:,.0f}" if "plain_per_min" in d else "-")
     for c in cols],
    ["4.  idle: TCP payload bytes/min (segments)"] +
    [idle(c, lambda d: f"{d['wire_per_min']:,.0f} ({d['segments_per_min']:.0f})"
          + ("" if d["same_connections"] else " RECONNECTED")) for c in cols],
]
for n in sizes:
    for ph, label in (("5", "5 import"), ("1", "1 initial sync"),
                      ("2a", "2a inserts"), ("2b", "2b updates")):
        p = peaks.get((n, ph))
        body.append([f"7.  peak RssAnon, {label}" + ("" if len(sizes) == 1 else f" [N = {n:,}]"),
                     "-" if not p else ", ".join(f"{nd} {kb / 1024:.1f} MB" for nd, kb in sorted(p)),
                     "-", "-"])
table(["workload", "nbx", "PostgreSQL (sync_commit off)",
       "PostgreSQL (sync_commit on)"], body)

conv = sorted((int(c), d) for (k, c), d in ex.items() if k == "converge")
if conv:
    print()
    table(["6.  heal after a split", "links up", "all records everywhere",
           "all verify digests equal", "verify round", "changes received",
           "nbxd CPU", "until quiet", "slowest status", "dead links"],
          [[f"{k} nodes, {k // 2} | {k // 2}, {conv_writes:,.0f} writes per side",
            f"{d['links_s']:.2f} s", f"{d['records_s']:.2f} s", f"{d['verify_s']:.2f} s",
            f"{d['verify_round_s']:.2f} s ({d['pairs']} pairs; quiet "
            f"{d['verify_quiet_round_s']:.2f} s)",
            f"{d['changes_in']:,} ({d['changes_in'] / (k * conv_writes):.1f}/record)",
            f"{d['cpu_s']:.1f} s",
            f"{d['quiet_s']:.2f} s, {d['changes_in_quiet'] / (k * conv_writes):.1f}/record, "
            f"CPU {d['cpu_quiet_s']:.1f} s",
            f"{max(d['status_max_ms'].values()):,.0f} ms",
            str(ex.get(("convdead", str(k)), "-"))] for k, d in conv])

recon = sorted((int(c), d) for (k, c), d in ex.items() if k == "reconcile")
restore = sorted((int(c), d) for (k, c), d in ex.items() if k == "restore")
if recon or restore:
    print()
    table(["9, 10. repair", "time", "on the wire", "records exchanged",
           "nbxd CPU (both)"],
          [[f"9.  reconcile an in-sync pair of {d['n']:,} records" if "n" in d
            else f"9.  reconcile an in-sync pair [N = {n:,}]",
            f"{d['secs']:.2f} s", f"{d['bytes'] / 1024:,.1f} KiB plaintext",
            f"{d['changes']:,} changes", f"{d['cpu_s']:.2f} s"] for n, d in recon] +
          [[f"10. restore from a hot backup: {d['records']:,} records back",
            f"{d['records_s']:.2f} s (digests equal {d['verify_s']:.2f} s)",
            "-", "-", "-"] for n, d in restore])

if len(sizes) > 1:
    lo, hi = sizes[0], sizes[-1]
    def scale(k, c):
        a, b = res.get((lo, k, c)), res.get((hi, k, c))
        if a is None or b is None:
            return "-"
        return f"{a / lo * 1e6:5.1f} -> {b / hi * 1e6:5.1f} us = {b / hi / (a / lo):.2f}"
    print()
    table([f"8.  per-record cost, N = {lo:,} -> {hi:,}", "nbx",
           "PostgreSQL (sync_commit off)", "PostgreSQL (sync_commit on)"],
          [[label, scale(k, "nbx"), scale(k, "pg_off"), scale(k, "pg_on")]
           for k, label in (("sync", "1.  initial sync"), ("catchup_ins", "2a. inserts"),
                            ("catchup_upd", "2b. updates"), ("ingest", "5.  ingest"))])
PY
cat <<EOF
live (3): one write batch due every 10 ms ($LIVE_RATE/100 records; nbx: one
  \`import\` request on ee's control socket, its JSON built before the
  clock starts; PostgreSQL: bench_insert() in one transaction on the
  publisher, which makes the rows itself), one batch in flight, each
  committed durably before its reply; a batch due while the one before
  is in flight goes as soon as that reply comes, so a writer slower than
  the target shows as a lower achieved rate.  Lag of a batch:
  from its reply (committed on the origin) until it is visible on the
  peer (lv's record count, polled every 2 ms on its control socket) /
  subscriber (max(id), polled every 2 ms); median and p99 over all
  batches.  On 2N records from 1 and 2; checked: every record arrived.
idle (4): two in-sync nodes (nbx with the daemon's default ping interval,
  ${IDLE_PING:-?} ms as conf/nbx.conf.example documents it; the other
  workloads run the bench config's 1 s) / the subscription in
  sync; plaintext: bytes_in + bytes_out that ee reports for lv (nbx
  frames before TLS); TCP payload: the kernel's bytes_acked +
  bytes_received of the connection both ways (\`ss -tin\`: TLS records,
  without IP/TCP headers; the segments each add ~52 bytes of headers).
convergence (6): nbx only (PostgreSQL has no multi-master merge).  Cross
  links through tests/tools/flakyproxy.py, cut (RST, new connections
  refused) during the writes; links inside a half direct.  Times from the
  proxy's "pass": every peer up again (the nodes' reconnect backoff: bench
  config 100 ms doubling to 1 s; a link that comes up makes the others
  dial within 250 ms), every node holding all records (each node's
  \`status\` polled by a thread of its own every 10 ms; the latest node's
  first sight of each), and the
  end of the first round of \`verify\` on both ends of every pair that
  found every pair equal (every node asked for its digest with each peer,
  the nodes in parallel, each node's requests sent at once on its control
  connection, as \`nbxctl verify\` run for every peer at once would).  verify round: that round's own time, and a
  second one once the nodes are quiet.  From the heal until each node
  held every record: the changes all nodes received (status changes_in;
  per record delivered, i.e. per node x writes per side), the CPU time
  of all nbxd; until quiet: when the last change was received (no node
  received one for 0.5 s after it), the changes received and the CPU
  time from the heal until then; the slowest reply to \`status\` polled on every node
  (nbxd answers it from the loop that serves its peers: a long reply is a
  busy or blocked loop).  dead links: "dead link" disconnects in the
  nodes' logs (bench config: 3 s without a byte).
memory (7): peak RssAnon of each nbxd (heap, stacks, anonymous maps; the
  LMDB map is a file mapping and not in it), sampled every 0.1 s while
  the workload ran; ee alone during 5.
EOF
awk -v a="$RUN_T0" -v b="$RUN_T1" 'BEGIN { printf "wall time of the whole run: %.0f s\n", b - a }'
