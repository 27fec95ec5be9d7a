#!/bin/sh
# Partitions and flaky links.  PART_NODES nodes (3-5, default 4) in a full
# mesh, every connection through tests/tools/flakyproxy.py (one link per
# pair), all writing at once while the proxy cycles through its modes:
# delay, slice (1..7-byte pieces: frames and TLS records split mid-frame),
# reset (RST mid-stream, mid-handshake), cut, hang (a black hole), a 2|N-2
# partition and a random mode per link.  Seeded: NBX_SEED replays the
# choices.
#
# Each node n writes
#   service n:ctr      a counter only n writes (capacity = free_places =
#                      step), last write = PART_STEPS
#   service n:sJ-I     chunks of new records imported every third step,
#                      each chunk imported again three steps later with a
#                      new free_places (an overlapping import)
#   case ee:shared     the same record's status, return_date and
#                      receiving_organisation (writers = audience; audience
#                      = every node): every node writes them at every step
# Then the links heal and every pair must agree (`nbxctl verify` digests),
# with every record on every node, each single-writer record at its
# writer's last value, the shared case's fields at the same version
# everywhere (each the last write of the node that won it), counters never
# seen going backwards on any node while the links flapped, and no change
# quarantined (no false rejection) anywhere.  The last step of every
# writer happens while the network is cut, partitioned or a black hole, so
# that only healing can bring it across.
#
# PART_NODES, PART_STEPS (default 24), PART_CHUNK (records per chunk,
# default 40) and PART_PHASE_MS (time per proxy mode, default 1200) scale it.
. "$(dirname "$0")/lib.sh"

NN=${PART_NODES:-4}
STEPS=${PART_STEPS:-24}
CHUNK=${PART_CHUNK:-40}
PHASE_MS=${PART_PHASE_MS:-1200}
[ "$NN" -ge 3 ] && [ "$NN" -le 5 ] || fail "PART_NODES must be 3..5"
SEED=${NBX_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "seed: $SEED (replay the choices with NBX_SEED=$SEED)"
RNG=$((SEED % 2147483648))
rnd() {
	RNG=$(((RNG * 1103515245 + 12345) % 2147483648))
	R=$(((RNG / 65536) % $1))
}
msleep() { sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"; }
ms() { echo $(($(date +%s%N) / 1000000)); }

NODES=$(echo ee lv fi lt se | cut -d' ' -f1-"$NN")
STATUSES="referred accepted declined in_progress returned closed"
idx_of() { i=0; for x in $NODES; do [ "$x" = "$1" ] && echo $i; i=$((i + 1)); done; }
nth() { echo "$2" | tr ' ' '\n' | sed -n "$(($1 + 1))p"; }
# link names: "a-b" with a before b in NODES
LINKS=""
for a in $NODES; do
	for b in $NODES; do
		[ "$(idx_of "$a")" -lt "$(idx_of "$b")" ] && LINKS="$LINKS $a-$b"
	done
done
link_of() {
	if [ "$(idx_of "$1")" -lt "$(idx_of "$2")" ]; then echo "$1-$2"; else echo "$2-$1"; fi
}

# small batches and quick liveness checks: more frames, more reconnects
BATCH_BYTES=${BATCH_BYTES:-8192}
PING_MS=${PING_MS:-500}
DEAD_MS=${DEAD_MS:-2000}
export BATCH_BYTES PING_MS DEAD_MS

nbx_ca
routes=""
# shellcheck disable=SC2086
nbx_nodes $NODES
for a in $NODES; do
	for b in $NODES; do
		[ "$a" = "$b" ] && continue
		routes="$routes --route $a.$b:$(link_of "$a" "$b"):$(port_of "$b")"
	done
done
# shellcheck disable=SC2086
nbx_proxy_start --seed "$SEED" $routes
for a in $NODES; do
	for b in $NODES; do
		[ "$a" = "$b" ] || nbx_peer_via "$a" "$b" "$(proxy_port "$a.$b")"
	done
done
for n in $NODES; do nbx_start "$n"; done

AUD=$(echo $NODES | tr ' ' ',')
ctl ee put case ee:shared --audience "$AUD" pseudonym=P-shared \
    status=referred >/dev/null || fail "shared case"
all_up() {
	for n in $NODES; do
		[ "$("$BIN/nbxctl" -c "$T/$n/nbx.conf" status --json |
		    grep -o '"state":"up"' | wc -l)" = $((NN - 1)) ] || return 1
	done
}
wait_until 20 "the mesh is up through the proxy" all_up
wait_until 20 "the shared case everywhere" sh -c "for n in $NODES; do
    '$BIN/nbxq' -c '$T/'\$n/nbx.conf get case ee:shared >/dev/null || exit 1; done"
ok "$NN nodes meshed through flakyproxy ($(echo $LINKS | wc -w) links)"

# chunk J of node N: CHUNK records N:sJ-I with free_places = V
chunk() {
	awk -v n="$1" -v j="$2" -v v="$3" -v c="$CHUNK" 'BEGIN {
	    for (i = 0; i < c; i++)
		printf "{\"collection\":\"service\",\"id\":\"%s:s%02d-%03d\",\"fields\":{\"name\":\"Chunk %d record %d of %s\",\"kind\":\"shelter\",\"city\":\"City %d\",\"capacity\":%d,\"free_places\":%d,\"languages\":[\"en\",\"%s\"]}}\n",
		    n, j, i, j, i, n, i, j, v, n }'
}

writer() {
	n=$1
	me=$(idx_of "$n")
	wrng=$((RNG + me * 7919))
	j=0
	while [ $j -lt "$STEPS" ]; do
		j=$((j + 1))
		if [ $j = "$STEPS" ]; then
			# the last writes happen while the links are down
			touch "$T/$n.wready"
			k=0
			until [ -e "$T/final" ]; do
				[ -d "$T" ] || exit 1
				k=$((k + 1))
				[ $k -lt 2400 ] || { echo "no final phase" >>"$T/$n.werr"; exit 1; }
				sleep 0.05
			done
		fi
		ctl "$n" put service "$n:ctr" kind=helpline capacity=$j \
		    free_places=$j >/dev/null 2>>"$T/$n.werr" ||
		    { echo "put ctr step $j" >>"$T/$n.werr"; exit 1; }
		# the shared case: status takes values others write too (a put
		# of the value a node already holds changes nothing there);
		# receiving_organisation and return_date are unique per write
		st=$(nth $(((j + me) % 6)) "$STATUSES")
		rd=$(printf '%04d-%02d-%02d' $((2030 + j / 28)) $((me + 1)) $((j % 28 + 1)))
		ctl "$n" put case ee:shared status="$st" return_date="$rd" \
		    receiving_organisation="$n-step-$j" >/dev/null 2>>"$T/$n.werr" ||
		    { echo "put shared step $j" >>"$T/$n.werr"; exit 1; }
		if [ $((j % 3)) = 0 ]; then
			chunk "$n" $j $j >"$T/$n.chunk"
			[ $j -gt 3 ] && chunk "$n" $((j - 3)) $j >>"$T/$n.chunk"
			ctl "$n" import "$T/$n.chunk" >"$T/$n.imp" 2>>"$T/$n.werr" ||
			    { echo "import step $j: $(cat "$T/$n.imp")" >>"$T/$n.werr"; exit 1; }
		fi
		wrng=$(((wrng * 1103515245 + 12345) % 2147483648))
		msleep $(((wrng / 65536) % 250))
	done
	touch "$T/$n.wdone"
}

# counters seen so far on each node must never go backwards
check_monotonic() {
	for n in $NODES; do
		q "$n" list service --where kind=helpline --fields capacity \
		    --format csv 2>/dev/null | sed 1d | tr -d '"\r' >"$T/$n.ctr.now" || continue
		touch "$T/$n.ctr.seen"
		awk -F, -v node="$n" 'NR == FNR { seen[$1] = $2; next }
		    ($1 in seen) && $2 + 0 < seen[$1] + 0 {
			printf "%s saw %s go back from %s to %s\n", node, $1, seen[$1], $2; bad = 1 }
		    END { exit bad }' "$T/$n.ctr.seen" "$T/$n.ctr.now" >>"$T/monotonic.err" ||
		    fail "a counter went backwards: $(cat "$T/monotonic.err")"
		mv "$T/$n.ctr.now" "$T/$n.ctr.seen"
	done
}

pctl() { proxy_ctl "$@" >/dev/null || fail "proxy_ctl $*"; }

# mark NODE: NODE writes a new record MARK (service NODE:markK, capacity K)
MK=0
MARKS=""
mark() {
	MK=$((MK + 1))
	MARK=$1:mark$MK
	ctl "$1" put service "$MARK" kind=legal_aid capacity=$MK >/dev/null ||
	    fail "put $MARK"
	MARKS="$MARKS $MARK"
}
# everywhere_has MARK: every node holds record MARK
everywhere_has() {
	for n in $NODES; do q "$n" get service "$1" >/dev/null 2>&1 || return 1; done
}

# the partition phase: two random nodes apart from the rest; a record
# written on one side reaches its own side only
partition() {
	rnd "$NN"; a=$(nth "$R" "$NODES")
	rnd $((NN - 1)); b=$(echo "$NODES" | tr ' ' '\n' | grep -vx "$a" | sed -n "$((R + 1))p")
	rest=$(echo "$NODES" | tr ' ' '\n' | grep -vx "$a" | grep -vx "$b" | tr '\n' ' ')
	cross=""
	for x in $a $b; do
		for y in $rest; do cross="$cross,$(link_of "$x" "$y")"; done
	done
	pctl set all pass
	pctl set "${cross#,}" cut
	echo "  partition {$a $b} | {$rest}"
	mark "$a"
	wait_until 20 "$a's mark reached $b inside the partition" \
	    sh -c "'$BIN/nbxq' -c '$T/$b/nbx.conf' get service $MARK"
	msleep 300
	for y in $rest; do
		if q "$y" get service "$MARK" >/dev/null 2>&1; then
			fail "$a's write crossed the partition to $y"
		fi
	done
}

# one mode for one phase: pass, delay, slice, reset, cut, hang, partition
# or mixed (a random mode per link)
phase() {
	case $1 in
	delay) rnd 300; pctl set all delay $((50 + R)); echo "  delay $((50 + R)) ms" ;;
	partition) partition ;;
	mixed)
		desc=""
		for l in $LINKS; do
			rnd 6
			lm=$(nth "$R" "pass delay slice reset cut hang")
			if [ "$lm" = delay ]; then pctl set "$l" delay 200; else pctl set "$l" "$lm"; fi
			desc="$desc $l:$lm"
		done
		echo "  mixed:$desc"
		;;
	*) pctl set all "$1"; echo "  $1" ;;
	esac
	case $1 in
	partition) ;;
	hang) msleep $((DEAD_MS + 800)) ;;	# long enough to be found dead
	*) msleep "$PHASE_MS" ;;
	esac
	check_monotonic
}

# slice first on a quiet network: fresh connections whose TLS handshakes
# and frames all arrive in 1..7-byte pieces must still carry a write
pctl set all cut
msleep 300
pctl set all slice
t0=$(ms)
mark ee
wait_until 30 "a write crossed links that slice every byte" everywhere_has "$MARK"
pctl set all pass
ok "reconnected and replicated through 1..7-byte slices in $(($(ms) - t0)) ms"

START=$(ms)
WPIDS=""
for n in $NODES; do
	writer "$n" &
	WPIDS="$WPIDS $!"
	echo "writer-$n $!" >>"$PIDS_FILE"	# cleanup stops it too
done
# every mode at least once in a seeded order, then random ones until
# every writer is done
set -- delay slice reset cut hang partition mixed
order=""
while [ $# -gt 0 ]; do
	rnd $#
	pick=$(echo "$@" | tr ' ' '\n' | sed -n "$((R + 1))p")
	order="$order $pick"
	# shellcheck disable=SC2046
	set -- $(echo "$@" | tr ' ' '\n' | grep -vx "$pick")
done
echo "modes:$order"
for m in $order; do phase "$m"; done
# writers_at SUFFIX: true once every writer has touched $T/NODE.SUFFIX
writers_at() {
	for n in $NODES; do
		[ -s "$T/$n.werr" ] && fail "writer $n: $(cat "$T/$n.werr")"
		[ -e "$T/$n.$1" ] || return 1
	done
}
until writers_at wready; do
	[ $(($(ms) - START)) -lt 120000 ] || fail "writers still running after 120 s"
	rnd 8
	phase "$(nth "$R" "pass delay slice reset cut hang partition mixed")"
done
# the last step of every writer (counter, shared case, an import) while
# the network is cut, partitioned or a black hole: only healing can
# bring those writes across
rnd 3
final=$(nth "$R" "cut hang partition")
echo "  final writes under: $final"
case $final in
partition) partition ;;
*) pctl set all "$final" ;;
esac
touch "$T/final"
for p in $WPIDS; do wait "$p" || true; done
writers_at wdone || fail "a writer did not finish"
msleep 500
pctl set all pass
stats=$(proxy_ctl stats)
echo "proxy: $stats" >"$T/proxy.stats"
ok "writes and link chaos done in $(($(ms) - START)) ms"

# heal: every pair converges
pair_ok() {
	da=$("$BIN/nbxctl" -c "$T/$1/nbx.conf" verify "$2" | cut -d' ' -f1)
	db=$("$BIN/nbxctl" -c "$T/$2/nbx.conf" verify "$1" | cut -d' ' -f1)
	[ -n "$da" ] && [ "$da" = "$db" ]
}
all_pairs_ok() {
	for a in $NODES; do
		for b in $NODES; do
			[ "$(idx_of "$a")" -lt "$(idx_of "$b")" ] || continue
			pair_ok "$a" "$b" || return 1
		done
	done
}
HEAL=$(ms)
wait_until 60 "every pair's verify digests agree after healing" all_pairs_ok
ok "healed: verify digests agree for every pair after $(($(ms) - HEAL)) ms"

# the expected single-writer state: counters at STEPS, chunk J at
# free_places J + 3 if it was imported again, else J; the marks
CH=$((STEPS / 3))
for n in $NODES; do
	echo "$n:ctr,$STEPS,$STEPS"
	awk -v n="$n" -v ch="$CH" -v c="$CHUNK" 'BEGIN {
	    for (k = 1; k <= ch; k++) for (i = 0; i < c; i++)
		printf "%s:s%02d-%03d,%d,%d\n", n, 3 * k, i, 3 * k, (k < ch ? 3 * k + 3 : 3 * k) }'
done >"$T/expect.unsorted"
for m in $MARKS; do echo "$m,${m##*:mark},"; done >>"$T/expect.unsorted"
LC_ALL=C sort "$T/expect.unsorted" >"$T/expect.csv"
want=$(wc -l <"$T/expect.csv")
for n in $NODES; do
	c=$(count "$n" service)
	[ "$c" = "$want" ] || fail "$n holds $c services, expected $want"
	q "$n" list service --fields capacity,free_places --format csv | sed 1d |
	    tr -d '"\r' | LC_ALL=C sort >"$T/$n.got.csv"
	cmp -s "$T/expect.csv" "$T/$n.got.csv" ||
	    fail "$n: single-writer records not at their last write: $(diff "$T/expect.csv" "$T/$n.got.csv" | head -n 10)"
done
ok "every node: $want services, each at its writer's last write"

# the shared case: the same winner (value, hlc, origin) of each field
# everywhere; for the fields written with a new value each time, the
# winner is the winning node's last write
first=""
for n in $NODES; do
	q "$n" get case ee:shared --meta --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
f, m = d["fields"], d["meta"]
for k in ("status", "receiving_organisation", "return_date"):
    print(k, f[k], m[k]["origin"], m[k]["hlc"])' >"$T/$n.shared" ||
	    fail "$n: shared case unreadable"
	[ -n "$first" ] || first=$n
	cmp -s "$T/$first.shared" "$T/$n.shared" ||
	    fail "shared case differs: $first: $(cat "$T/$first.shared"), $n: $(cat "$T/$n.shared")"
done
ro=$(awk '$1 == "receiving_organisation" { print $2 }' "$T/$first.shared")
ro_origin=$(awk '$1 == "receiving_organisation" { print $3 }' "$T/$first.shared")
[ "$ro" = "$ro_origin-step-$STEPS" ] ||
    fail "shared receiving_organisation '$ro' is not $ro_origin's last write"
rd=$(awk '$1 == "return_date" { print $2 }' "$T/$first.shared")
rd_origin=$(awk '$1 == "return_date" { print $3 }' "$T/$first.shared")
[ "$rd" = "$(printf '%04d-%02d-%02d' $((2030 + STEPS / 28)) $(($(idx_of "$rd_origin") + 1)) $((STEPS % 28 + 1)))" ] ||
    fail "shared return_date '$rd' is not $rd_origin's last write"
ok "shared case converged: $(awk '{ printf "%s%s=%s (%s)", sep, $1, $2, $3; sep = ", " }' "$T/$first.shared")"

for n in $NODES; do
	qn=$(ctl "$n" status --json |
	    python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["quarantined"])')
	[ "$qn" = 0 ] || fail "$n quarantined $qn changes: $(ctl "$n" quarantine)"
done
ok "no quarantined change on any node"

# the proxy did break things: slices, resets, refusals, drops
python3 - "$T/proxy.stats" <<'PY' || fail "the proxy did not exercise every mode: $(cat "$T/proxy.stats")"
import json, sys
s = json.loads(open(sys.argv[1]).read().split(" ", 1)[1])
tot = {k: sum(l[k] for l in s.values()) for k in
       ("slices", "resets", "refused", "dropped_bytes", "delayed_chunks", "bytes")}
print("proxy totals: " + ", ".join("%s %d" % kv for kv in sorted(tot.items())))
sys.exit(0 if tot["slices"] > 0 and tot["resets"] > 0 and tot["delayed_chunks"] > 0 else 1)
PY

# a clean stop; no sanitizer report in any log (asan builds)
for n in $NODES; do nbx_stop "$n"; done
grep -l "Sanitizer\|runtime error" "$T"/*/nbxd.log >&2 && fail "sanitizer reports"
ok "clean shutdown"
