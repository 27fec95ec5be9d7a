#!/bin/sh
# Crash consistency in loops.  ee writes (nbxctl import of new records),
# lv receives from ee directly and through fi, which relays (a triangle).
# Round after round, kill -9 hits at a random point (seeded: NBX_SEED
# replays the choices):
#   import   ee killed while its import runs; the same import, run again,
#            applies exactly the lines that were not committed and reports
#            the others "unchanged"
#   live     lv killed while ee's import is pushed to it live
#   catchup  lv killed while it catches up from ee and fi
#   sender   ee killed while it streams its log to lv (fi down)
#   relay    fi killed while it relays ee's records to lv (ee down)
#   both     ee and lv killed while ee imports and lv receives
# After a final restart of everything the three converge: every record on
# every node, identical listings, equal `nbxctl verify` digests for each
# pair, an empty quarantine, and each change applied exactly once: every
# record was written once by ee only, so lv's and fi's change counters
# (status node.seq) must equal ee's, which must equal the records times the
# changes one record makes.
#
# CRASH_ROUNDS (default 6, one of each kind) and CRASH_RECORDS (new records
# per round, default 2000) scale it.
. "$(dirname "$0")/lib.sh"

ROUNDS=${CRASH_ROUNDS:-6}
M=${CRASH_RECORDS:-2000}
# small batches: many commits (and cursor writes) per catch-up to land in
BATCH_BYTES=${BATCH_BYTES:-16384}
export BATCH_BYTES
SEED=${NBX_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "seed: $SEED (replay the choices with NBX_SEED=$SEED)"
RNG=$((SEED % 2147483648))
# rnd N: R = a seeded pseudo-random integer in [0, N)
rnd() {
	RNG=$(((RNG * 1103515245 + 12345) % 2147483648))
	R=$(((RNG / 65536) % $1))
}
# rsleep MS: sleeps a seeded random 0..MS-1 milliseconds
rsleep() {
	rnd "$1"
	sleep "$((R / 1000)).$(printf '%03d' $((R % 1000)))"
}

# records of one round: new ids only, so each (record, field) is written
# exactly once by ee over the whole test
gen() {
	awk -v n="$M" -v r="$1" 'BEGIN {
	    split("shelter helpline medical psychological social legal_aid education employment", k, " ")
	    for (i = 0; i < n; i++)
		printf "{\"collection\":\"service\",\"id\":\"ee:r%02d-%05d\",\"fields\":{\"name\":\"Service %d of round %d\",\"kind\":\"%s\",\"country\":\"ee\",\"city\":\"Tartu %d\",\"capacity\":%d,\"free_places\":%d,\"open_24h\":%s,\"languages\":[\"et\",\"ru\",\"r%d\"]}}\n",
		    r, i, i, r, k[i % 8 + 1], i % 97, (i * r) % 500, i % 50, (i % 2 ? "true" : "false"), r }' >"$2"
}

ms() { echo $(($(date +%s%N) / 1000000)); }
cnt() { q "$1" count service 2>/dev/null || echo 0; }
# recs NODE: records as the running node reports them (cheaper than nbxq,
# so polls are fine-grained); 0 while it does not answer
recs() {
	"$BIN/nbxctl" -c "$T/$1/nbx.conf" status --json 2>/dev/null |
	    sed -n 's/^{"node":{[^}]*"records":\([0-9]*\).*/\1/p' | grep . || echo 0
}
nodeseq() {
	ctl "$1" status --json |
	    python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["seq"])'
}
up() { kill -0 "$(cat "$T/$1/pid")" 2>/dev/null; }
# wait_count NODE N: until NODE holds at least N services (60 s at most)
wait_count() {
	w0=$(date +%s)
	while [ "$(recs "$1")" -lt "$2" ]; do
		[ $(($(date +%s) - w0)) -lt 60 ] ||
		    fail "$1 never reached $2 records (has $(cnt "$1"))"
		sleep 0.01
	done
}
kill9() {
	up "$1" && nbx_kill "$1"
	KILLS=$((KILLS + 1))
	echo "  kill -9 $1 ($2; ee $(cnt ee), lv $(cnt lv), fi $(cnt fi) records)"
}
# took T0: an import of M lines that started at T0 (ms) just ended; DUR
# is the shortest seen, to aim kills inside imports
took() {
	t=$(($(ms) - $1))
	[ "$t" -ge "$DUR" ] || DUR=$t
	[ "$DUR" -gt 0 ] || DUR=1
}
# import_bg FILE: starts ee's import in the background (pid in IMP)
import_bg() {
	timeout 120 "$BIN/nbxctl" -c "$T/ee/nbx.conf" import "$1" \
	    >"$T/imp.out" 2>"$T/imp.err" &
	IMP=$!
	IMP_T0=$(ms)
}
# import_wait: its exit status in IRC
import_wait() {
	IRC=0
	wait "$IMP" || IRC=$?
}
# import_ok FILE: a full import that must succeed with nothing rejected
import_ok() {
	t0=$(ms)
	ctl ee import "$1" >"$T/imp.out" 2>"$T/imp.err" ||
	    fail "import $1: $(cat "$T/imp.out" "$T/imp.err")"
	took "$t0"
	grep -q "read $M, applied $M, unchanged 0, rejected 0" "$T/imp.out" ||
	    fail "import summary: $(cat "$T/imp.out")"
}
# reimport FILE BASE: after a crash during the import of FILE, with BASE
# records on ee before it: the lines committed before the crash come back
# unchanged, the others are applied, once; a third run changes nothing
reimport() {
	k=$(($(cnt ee) - $2))
	ctl ee import "$1" >"$T/re.out" 2>"$T/re.err" ||
	    fail "re-import: $(cat "$T/re.out" "$T/re.err")"
	grep -q "read $M, applied $((M - k)), unchanged $k, rejected 0" "$T/re.out" ||
	    fail "re-import after a crash with $k of $M lines committed: $(cat "$T/re.out")"
	ctl ee import "$1" >"$T/re.out" 2>"$T/re.err" ||
	    fail "third import: $(cat "$T/re.out" "$T/re.err")"
	grep -q "read $M, applied 0, unchanged $M, rejected 0" "$T/re.out" ||
	    fail "third import: $(cat "$T/re.out")"
	echo "  re-import: $k lines unchanged (committed before the crash), $((M - k)) applied"
}
# rtarget BASE: a random record count to kill at, in the first three
# quarters of [BASE, BASE + M) (the polls that watch it take a while)
rtarget() {
	rnd $((M * 3 / 4 + 1))
	TGT=$(($1 + R))
}

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_peer ee lv; nbx_peer ee fi
nbx_peer lv ee; nbx_peer lv fi
nbx_peer fi ee; nbx_peer fi lv
nbx_start ee; nbx_start lv; nbx_start fi

START=$(date +%s)
# how many changes one record of this shape makes (fields + record state)
gen 0 "$T/round0.jsonl"
head -n 1 "$T/round0.jsonl" >"$T/one.jsonl"
ctl ee import "$T/one.jsonl" >/dev/null || fail "probe import"
PER=$(nodeseq ee)
[ "$PER" -ge 9 ] || fail "one record of 9 fields made only $PER changes"
# round 0, no kill: how long an import of M lines takes with this build,
# so that kills during an import can land anywhere in it
sed 1d "$T/round0.jsonl" >"$T/rest.jsonl"
t0=$(ms)
ctl ee import "$T/rest.jsonl" >/dev/null || fail "round 0 import"
DUR=$(($(ms) - t0))
took "$t0"
TOTAL=$M
echo "round 0: $M records imported in ${DUR} ms"
KILLS=0

# the round kinds, in a seeded order (cycled when ROUNDS > 6)
set -- import live catchup sender relay both
order=""
while [ $# -gt 0 ]; do
	rnd $#
	i=0
	for k in "$@"; do
		[ $i = "$R" ] && pick=$k
		i=$((i + 1))
	done
	order="$order $pick"
	rest=""
	for k in "$@"; do [ "$k" = "$pick" ] || rest="$rest $k"; done
	# shellcheck disable=SC2086
	set -- $rest
done
echo "round kinds:$order"

r=0
while [ $r -lt "$ROUNDS" ]; do
	r=$((r + 1))
	# shellcheck disable=SC2086
	set -- $order
	shift $(((r - 1) % 6))
	kind=$1
	F=$T/round$r.jsonl
	gen "$r" "$F"
	for n in ee lv fi; do up $n || nbx_start $n; done
	base=$TOTAL
	echo "round $r: $kind ($M records, ee has $base) at $(($(date +%s) - START))s; imports take ${DUR} ms"
	case $kind in
	import)
		import_bg "$F"
		rsleep "$DUR"
		kill9 ee "$R ms into its import"
		import_wait
		[ $IRC = 0 ] || [ $IRC = 1 ] ||
		    fail "import client exited $IRC when ee died: $(cat "$T/imp.err")"
		nbx_start ee
		reimport "$F" "$base"
		;;
	live)
		import_bg "$F"
		rtarget "$base"
		wait_count lv "$TGT"
		kill9 lv "receiving live"
		import_wait
		took "$IMP_T0"
		[ $IRC = 0 ] || fail "ee's import failed when lv died: $(cat "$T/imp.out" "$T/imp.err")"
		grep -q "applied $M, unchanged 0, rejected 0" "$T/imp.out" ||
		    fail "import summary: $(cat "$T/imp.out")"
		nbx_start lv
		;;
	catchup)
		nbx_kill lv
		import_ok "$F"
		nbx_start lv
		rtarget "$base"
		wait_count lv "$TGT"
		kill9 lv "catching up from ee and fi"
		nbx_start lv
		;;
	sender)
		nbx_kill lv
		nbx_kill fi
		import_ok "$F"
		nbx_start lv
		rtarget "$base"
		wait_count lv "$TGT"
		kill9 ee "streaming to lv"
		nbx_start ee
		nbx_start fi
		;;
	relay)
		nbx_kill lv
		import_ok "$F"
		wait_count fi $((base + M))
		nbx_kill ee
		nbx_start lv
		rtarget "$base"
		wait_count lv "$TGT"
		kill9 fi "relaying to lv"
		nbx_start fi
		nbx_start ee
		;;
	both)
		import_bg "$F"
		rsleep "$DUR"
		t1=$R
		nbx_kill lv
		rsleep 100
		nbx_kill ee
		KILLS=$((KILLS + 1))
		kill9 lv "$t1 ms into ee's import, then ee $R ms later"
		import_wait
		[ $IRC = 0 ] || [ $IRC = 1 ] ||
		    fail "import client exited $IRC when ee died: $(cat "$T/imp.err")"
		nbx_start ee
		nbx_start lv
		reimport "$F" "$base"
		;;
	esac
	TOTAL=$((TOTAL + M))
	[ "$(cnt ee)" = $TOTAL ] || fail "ee holds $(cnt ee) records, expected $TOTAL"
done
[ $KILLS -ge 6 ] || fail "only $KILLS kill points"
ok "$ROUNDS rounds, $KILLS kill -9 at random points (seed $SEED) in $(($(date +%s) - START))s"

# the final restart of everything, then convergence
for n in ee lv fi; do up $n && nbx_kill $n; done
nbx_start ee; nbx_start lv; nbx_start fi
for n in ee lv fi; do wait_count $n $TOTAL; done
digests_agree() {
	a=$("$BIN/nbxctl" -c "$T/$1/nbx.conf" verify "$2" | cut -d' ' -f1)
	b=$("$BIN/nbxctl" -c "$T/$2/nbx.conf" verify "$1" | cut -d' ' -f1)
	[ -n "$a" ] && [ "$a" = "$b" ]
}
for p in "ee lv" "ee fi" "lv fi"; do
	# shellcheck disable=SC2086
	wait_until 60 "verify digests of $p agree" digests_agree $p
done
for n in ee lv fi; do
	[ "$(cnt $n)" = $TOTAL ] || fail "$n holds $(cnt $n) records, expected $TOTAL"
done
echo "converged at $(($(date +%s) - START))s"
ok "converged: $TOTAL records on each node, verify digests equal for each pair"

q ee list service --format csv >"$T/ee.csv"
for n in lv fi; do
	q $n list service --format csv >"$T/$n.csv"
	cmp -s "$T/ee.csv" "$T/$n.csv" || fail "listings of ee and $n differ"
done
ok "identical listings"

ee_seq=$(nodeseq ee)
[ "$ee_seq" = $((TOTAL * PER)) ] ||
    fail "ee made $ee_seq changes for $TOTAL records of $PER changes: a re-import applied something twice"
for n in lv fi; do
	s=$(nodeseq $n)
	[ "$s" = "$ee_seq" ] ||
	    fail "$n applied $s changes, ee made $ee_seq: something applied twice or lost"
done
for n in ee lv fi; do
	qn=$(ctl $n status --json |
	    python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["quarantined"])')
	[ "$qn" = 0 ] || fail "$n quarantined $qn changes: $(ctl $n quarantine)"
done
ok "each of the $ee_seq changes applied exactly once on every node; quarantines empty"

# a clean stop; no sanitizer report in any log (asan builds)
for n in ee lv fi; do nbx_stop $n; done
grep -l "Sanitizer\|runtime error" "$T"/*/nbxd.log >&2 && fail "sanitizer reports"
ok "clean shutdown"
