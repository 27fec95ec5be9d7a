#!/bin/sh
# nbxq readers and the daemon's LMDB store.  An nbxq killed with -9 in the
# middle of a read leaves its slot in the reader table, pinning the
# snapshot it was reading: nbxd must clear it (mdb_reader_check, every 2 s)
# so the store goes on reusing freed pages instead of growing with every
# overwrite — a live reader, which rightly pins its snapshot, is the
# control that shows what not clearing would cost.  And 20 nbxq loops
# running while two nodes sync 20,000 records disturb nothing: every record
# arrives, no errors, no nbxq fails, and the loops read lv while it holds
# part of them (the link, through flakyproxy, is paused after 1 MiB until
# a loop has counted the partial copy: the overlap is made, not hoped for).
# 20 reader loops load both cores, and the paused link holds ee's pings:
# give the link more slack than the 3 s default before it counts as dead
PING_MS=2000 DEAD_MS=60000
export PING_MS DEAD_MS
. "$(dirname "$0")/lib.sh"

command -v mdb_stat >/dev/null 2>&1 ||
    { echo "skipped: mdb_stat missing (Debian package lmdb-utils)"; exit 0; }

N=20000
MAP_MB=64	# no map growth on ee: growth would run a reader check itself
export MAP_MB
nbx_ca
nbx_node ee 1
MAP_MB=4	# lv's map grows while it receives and nbxq reads
nbx_node lv 2
nbx_proxy_start --route ee.lv:el:"$(port_of lv)" --route lv.ee:el:"$(port_of ee)"
nbx_peer_via ee lv "$(proxy_port ee.lv)"
nbx_peer_via lv ee "$(proxy_port lv.ee)"
nbx_start ee
DATA=$T/ee/data

# gen ROUND: N services; every round changes every record
gen() {
	awk -v n="$N" -v r="$1" 'BEGIN { for (i = 0; i < n; i++)
	printf "{\"collection\":\"service\",\"id\":\"ee:svc-%06d\",\"fields\":{\"name\":\"Service %d, round %d\",\"kind\":\"shelter\",\"country\":\"ee\",\"city\":\"Tallinn\",\"capacity\":%d,\"open_24h\":true,\"languages\":[\"et\",\"ru\",\"en\"]}}\n", i, i, r, (i + r) % 50 }'
}
round() {
	gen "$1" | ctl ee import - >"$T/import.out" 2>&1 ||
	    fail "import round $1: $(cat "$T/import.out")"
	grep -q "applied $N," "$T/import.out" || fail "import round $1: $(cat "$T/import.out")"
}
size() { stat -c %s "$DATA/data.mdb"; }
mb() { echo "$(( $1 / 1048576 )).$(( $1 % 1048576 * 10 / 1048576 )) MiB"; }

# readers: the reader table as mdb_stat prints it, one "pid txnid" a line
# (mdb_stat -r exits 1 even when it works; a single -r only lists, it does
# not clear anything itself)
readers() {
	{ mdb_stat -r "$DATA" 2>/dev/null || true; } |
	    awk 'NR > 2 && $1 ~ /^[0-9]+$/ { print $1, $3 }'
}
has_reader() { readers | grep -q "^$1 [0-9]"; }
no_reader() { ! has_reader "$1"; }

# blocked_reader NAME: an nbxq streaming the whole collection into a pipe
# nobody reads, so it blocks inside its read transaction; its pid goes to
# $T/NAME.pid and both processes to lib.sh's kill list
blocked_reader() {
	sh -c 'echo $$ >"$1"; exec "$2" -c "$3" list service --jsonl' sh \
	    "$T/$1.pid" "$BIN/nbxq" "$T/ee/nbx.conf" 2>"$T/$1.err" | sleep 60 &
	echo "sleep-$1 $!" >>"$PIDS_FILE"
	wait_until 5 "$1 started" test -s "$T/$1.pid"
	echo "$1 $(cat "$T/$1.pid")" >>"$PIDS_FILE"
	wait_until 5 "$1 holds a read transaction" has_reader "$(cat "$T/$1.pid")"
	sleep 0.3
	kill -0 "$(cat "$T/$1.pid")" || fail "$1 exited: $(cat "$T/$1.err")"
	has_reader "$(cat "$T/$1.pid")" || fail "$1 is not blocked inside its read"
}

round 0
round 1
base=$(size)
ok "ee holds $N records, data.mdb $(mb "$base")"

# --- a reader killed with -9 mid-read -----------------------------------------
blocked_reader dead
pid=$(cat "$T/dead.pid")
txn=$(readers | awk -v p="$pid" '$1 == p { print $2 }')
cleared0=$(grep -c "cleared .* reader slot" "$T/ee/nbxd.log" || true)
kill -KILL "$pid"
killed_at=$(date +%s)
# the slot outlives the process (LMDB cannot know) ...
if has_reader "$pid"; then
	echo "slot of the killed nbxq $pid (snapshot txn $txn) is still in the reader table"
else
	echo "note: nbxd cleared the slot of $pid before it could be seen"
fi
# ... until nbxd's reader check clears it
wait_until 30 "nbxd clears the dead reader's slot" no_reader "$pid"
took=$(( $(date +%s) - killed_at ))
cleared_logged() { [ "$(grep -c 'cleared .* reader slot' "$T/ee/nbxd.log")" -gt "$cleared0" ]; }
wait_until 10 "the clearing is logged" cleared_logged
ok "slot of nbxq killed mid-read cleared by nbxd within ${took}s, and logged"

# pages freed by overwrites are reused again: two rounds of overwriting
# every record leave the file about where it was
round 2; round 3
after_dead=$(size)
grow_dead=$((after_dead - base))
echo "2 overwrite rounds after the dead reader: data.mdb $(mb "$base") -> $(mb "$after_dead")"

# --- the control: a live reader pins its snapshot, the file grows -------------
blocked_reader live
before_live=$(size)
round 4
after_live=$(size)
grow_live=$((after_live - before_live))
echo "1 overwrite round while a live reader pins its snapshot: $(mb "$before_live") -> $(mb "$after_live")"
[ "$grow_live" -gt $((4 << 20)) ] ||
    fail "control: a pinned snapshot should make one round grow the file by MiBs, it grew $(mb "$grow_live"); the measurement cannot tell"
[ $((grow_dead * 3)) -lt "$grow_live" ] ||
    fail "after the dead reader, 2 rounds grew the file by $(mb "$grow_dead"), about as much as one round with a pinned snapshot ($(mb "$grow_live")): its slot still pins pages"
ok "store reuses pages after the dead reader: 2 rounds +$(mb "$grow_dead"), against +$(mb "$grow_live") for 1 round under a pinned snapshot"

# the live reader, killed in turn, is cleared as well and the growth stops
pid=$(cat "$T/live.pid")
kill -KILL "$pid"
wait_until 30 "nbxd clears the second dead reader" no_reader "$pid"
round 5
after_all=$(size)
[ $((after_all - after_live)) -lt $((grow_live / 3)) ] ||
    fail "after the second reader was cleared the file still grows: $(mb "$after_live") -> $(mb "$after_all")"
ok "second reader killed and cleared: 1 more round +$(mb $((after_all - after_live)))"

# --- 20 nbxq loops while lv receives the 20,000 records ----------------------
# The link lets 1 MiB through each way and then holds the rest: lv applies
# the first batches and keeps a partial copy until a loop has counted it;
# only then does the rest go through.
LET_THROUGH=$((1 << 20))
proxy_ctl set el pause "$LET_THROUGH" >/dev/null || fail "proxy: pause"
nbx_start lv
rm -f "$T/stop"
for k in $(seq 1 20); do
	(
		n=0
		while [ ! -e "$T/stop" ]; do
			case $((n % 4)) in
			0) "$BIN/nbxq" -c "$T/lv/nbx.conf" count service ;;
			1) "$BIN/nbxq" -c "$T/lv/nbx.conf" list service --jsonl --limit 200 ;;
			2) "$BIN/nbxq" -c "$T/lv/nbx.conf" list service --limit 50 --format csv ;;
			3) "$BIN/nbxq" -c "$T/ee/nbx.conf" get service ee:svc-000042 --json ;;
			esac >"$T/q.$k.out" 2>"$T/q.$k.err" ||
			    echo "run $n (kind $((n % 4))) exit $?: $(head -c 300 "$T/q.$k.err")" >>"$T/qfail.$k"
			[ $((n % 4)) = 0 ] && cat "$T/q.$k.out" >>"$T/qcounts.$k"
			n=$((n + 1))
			sleep 0.05	# 20 readers at once, not 20 busy CPUs
		done
		echo "$n" >"$T/qruns.$k"
	) &
	echo "nbxq-loop-$k $!" >>"$PIDS_FILE"
	echo $! >>"$T/loops"
done
partial() { [ "$1" -gt 0 ] && [ "$1" -lt "$N" ]; }
partial_on_lv() { c=$(count lv service) && partial "$c"; }
partial_seen() {
	cat "$T"/qcounts.* 2>/dev/null |
	    awk -v n="$N" '$1 > 0 && $1 < n { seen = 1 } END { exit !seen }'
}
wait_until 60 "lv holds part of the $N records (the link is held after $LET_THROUGH bytes)" partial_on_lv
held=$(count lv service)
wait_until 60 "an nbxq loop counts lv's partial copy" partial_seen
proxy_ctl set el pass >/dev/null || fail "proxy: pass"
start=$(date +%s)
all_on_lv() { [ "$(count lv service)" = "$N" ]; }
wait_until 120 "lv receives all $N records under 20 nbxq loops" all_on_lv
synced=$(( $(date +%s) - start ))
touch "$T/stop"
for p in $(cat "$T/loops"); do wait "$p" || true; done
runs=0
for k in $(seq 1 20); do
	[ -s "$T/qruns.$k" ] || fail "nbxq loop $k did not finish"
	runs=$((runs + $(cat "$T/qruns.$k")))
done
if ls "$T"/qfail.* >/dev/null 2>&1; then
	fail "nbxq failed while lv synced: $(cat "$T"/qfail.* | head -n 5)"
fi
ok "20 nbxq loops ran $runs queries, none failed; they counted lv's partial copy ($held of $N records while the link was held), then the rest took ${synced}s"

for n in ee lv; do
	# dials while the other node was not running are expected
	if grep -E " (error|warn) " "$T/$n/nbxd.log" | grep -v -E "\[(ee|lv)\] connection failed: " >"$T/$n.bad"; then
		fail "$n logged errors during the sync: $(head -n 5 "$T/$n.bad")"
	fi
	grep -q "disconnected" "$T/$n/nbxd.log" && fail "$n logged a disconnect"
done
d_ee=$(ctl ee verify lv --json | sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p')
d_lv=$(ctl lv verify ee --json | sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p')
[ -n "$d_ee" ] && [ "$d_ee" = "$d_lv" ] || fail "verify digests differ: ee $d_ee, lv $d_lv"
ok "all $N records on lv, no errors in either log, pair digests equal"
