#!/bin/sh
# Clocks.  Part 1: an authenticated rogue peer sends changes stamped in the
# future (drift bound + 100 ms, one day ahead, hlc UINT64_MAX) and one at
# the counter's maximum: the future ones are quarantined with reason
# "clock drift beyond bound", the node's HLC does not jump, the session
# stays up (every batch is ACKed) and genuine later changes still apply,
# here and at the next node.  Part 2 (needs libfaketime): a node whose
# wall clock is 10 minutes behind converges both ways once its drift
# bound allows it, and a write it makes after receiving one wins on both
# nodes, because receiving advanced its HLC; with the default bound it
# quarantines what a correct clock sends.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rogue.sh"

# --- libfaketime, installed if missing (part 2 is skipped without it) ---
FAKELIB=
find_fakelib() { FAKELIB=$(nbx_fakelib); }
if [ "${NBX_NO_FAKETIME:-}" = 1 ]; then
	NOFAKE_WHY="NBX_NO_FAKETIME=1"
elif ! find_fakelib && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	{ timeout 60 apt-get install -y -q faketime ||
	    { timeout 60 apt-get update -q &&
	    timeout 60 apt-get install -y -q faketime; }; } \
	    >"$T/apt.log" 2>&1 || true
	find_fakelib || true
fi
# libfaketime deadlocks at start in ASan-instrumented programs whose
# allocator reads the clock (FAKEASAN turns that off); probe it anyway
FAKEASAN=verify_asan_link_order=0:allocator_release_to_os_interval_ms=-1
if [ -n "$FAKELIB" ] && ! LD_PRELOAD=$FAKELIB FAKETIME=-1h \
    ASAN_OPTIONS=$FAKEASAN timeout 3 "$BIN/nbxctl" --help \
    >/dev/null 2>&1; then
	FAKELIB=
	NOFAKE_WHY="libfaketime cannot be preloaded into $BIN/nbxctl (an ASan build deadlocks at start)"
fi

# Certificates are made an hour in the past when libfaketime is there, so
# that the node whose clock is 10 minutes behind does not find them (and
# the CA, backdated by only 5 minutes) "not yet valid".
if [ -n "$FAKELIB" ]; then
	REALBIN=$BIN
	mkdir -p "$T/fakebin"
	cat >"$T/fakebin/nbxctl" <<SH
#!/bin/sh
LD_PRELOAD=$FAKELIB FAKETIME=-1h FAKETIME_DONT_FAKE_MONOTONIC=1 \\
ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}$FAKEASAN \\
    exec "$REALBIN/nbxctl" "\$@"
SH
	chmod +x "$T/fakebin/nbxctl"
	BIN=$T/fakebin
fi
nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_node se 4
nbx_node no 5
BIN=${REALBIN:-$BIN}
nbx_peer ee lv
nbx_peer lv ee
rogue_identity rg ee 9

# --- part 1: future-stamped changes from an authenticated peer ---------
nbx_start ee
nbx_start lv
wait_until 10 "lv connected to ee" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' status --json | grep -q '\"id\":\"lv\",[^}]*\"state\":\"up\"'"
rogue --script clock >"$T/clock.out" 2>&1 || {
	cat "$T/clock.out" >&2
	fail "the rogue did not run"
}
cat "$T/clock.out" | grep -E "send change|ACK|summary"
for s in 1 2 3; do
	grep -q "recv ACK seq=$s\$" "$T/clock.out" ||
	    fail "no ACK for batch $s: the session did not stay up"
done
grep -q "closed_by_node=no" "$T/clock.out" || fail "ee closed the session"
if grep -q '\[rg\] session error' "$T/ee/nbxd.log"; then
	fail "ee logged a session error for rg"
fi
ok "session stayed up: every batch ACKed after its commit"

ctl ee quarantine --json >"$T/quar.json"
for f in city phone email; do
	grep "\"id\":\"rg:clock-1\"" "$T/quar.json" | grep "\"field\":\"$f\"" |
	    grep "\"peer\":\"rg\"" |
	    grep -q '"reason":"clock drift beyond bound"' ||
	    fail "$f not quarantined for drift: $(cat "$T/quar.json")"
done
[ "$(grep -c . "$T/quar.json")" = 3 ] ||
    fail "expected 3 quarantine entries: $(cat "$T/quar.json")"
ok "drift bound + 100 ms, one day ahead and UINT64_MAX quarantined: clock drift beyond bound"

hlc=$(jget "$(node_json ee)" hlc | tr -d '"')
hlc_s=$(date -u -d "$hlc" +%s)
now_s=$(date -u +%s)
[ "$hlc_s" -le $((now_s + 1)) ] && [ "$hlc_s" -ge $((now_s - 3600)) ] ||
    fail "ee's HLC jumped: $hlc (now $(date -u +%FT%TZ))"
ok "ee's HLC did not jump: $hlc"

wait_until 5 "genuine later change applied" has_str ee service rg:clock-1 name "clock genuine 2"
q ee get service rg:clock-1 --json | grep -q '"capacity":7' ||
    fail "the counter-at-max change (ms = now) was not applied"
# a day ahead and UINT64_MAX are never applied; the one 100 ms past the
# bound was held back and is applied once ee's clock reaches it
if q ee get service rg:clock-1 --json | grep -E -q '"(phone|email)"'; then
	fail "a future-stamped value was applied: $(q ee get service rg:clock-1 --json)"
fi
wait_until 10 "the slightly-ahead city applied once its time came" \
    has_str ee service rg:clock-1 city CANARY-CLOCK-drift
wait_until 10 "the genuine changes reach lv" has_str lv service rg:clock-1 name "clock genuine 2"
# ee holds the slightly-ahead changes aside (permitted values, applied once
# its clock catches up) but never relays them; lv has none of them
if grep -r -l -a -e CANARY-CLOCK-day -e CANARY-CLOCK-max "$T/lv/data"; then
	fail "a far-future value reached lv's disk"
fi
ok "genuine changes before and after applied and relayed; future values nowhere on disk"

# A local write after the rogue's counter-at-max stamp still moves forward
ctl ee put service ee:after-clock name="after the rogue" kind=legal_aid >/dev/null
wait_until 10 "ee's write reaches lv" has_str lv service ee:after-clock name "after the rogue"
hlc=$(jget "$(node_json ee)" hlc | tr -d '"')
[ "$(date -u -d "$hlc" +%s)" -le $(( $(date -u +%s) + 1 )) ] ||
    fail "ee's HLC after a local write: $hlc"
ok "local writes after it still sync, HLC $hlc"

# --- part 2: a node whose wall clock is behind --------------------------
if [ -z "$FAKELIB" ]; then
	echo "skipped: faketime not available: ${NOFAKE_WHY:-apt-get install faketime failed}; part 2 not run"
	exit 0
fi

# start_slow NAME OFFSET: nbxd under libfaketime (the pid is nbxd's own)
start_slow() {
	d=$T/$1
	LD_PRELOAD=$FAKELIB FAKETIME=$2 FAKETIME_DONT_FAKE_MONOTONIC=1 \
	    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}$FAKEASAN \
	    "$BIN/nbxd" -c "$d/nbx.conf" >>"$d/nbxd.log" 2>&1 &
	echo "$1 $!" >>"$PIDS_FILE"
	echo $! >"$d/pid"
	wait_until 10 "nbxd $1 (clock $2) starts" \
	    "$BIN/nbxctl" -c "$d/nbx.conf" status
}

# meta_time NAME COLL ID FIELD: the time part of the field's version
meta_time() {
	q "$1" get "$2" "$3" --meta | sed -n "s/^  $4 .*\[\([^ ]*\) by .*/\1/p"
}

# se's clock is 10 minutes behind; its bound (15 min) lets it take in
# what fi, whose clock is right, sends.
echo "max_clock_drift_ms = 900000" >>"$T/se/nbx.conf"
nbx_peer fi se
nbx_peer se fi
nbx_start fi
start_slow se -10m
wait_until 10 "fi and se connected" sh -c \
    "'$BIN/nbxctl' -c '$T/fi/nbx.conf' status --json | grep -q '\"id\":\"se\",[^}]*\"state\":\"up\"'"
started=$(jget "$(node_json se)" started | tr -d '"')
[ $(( $(date -u +%s) - $(date -u -d "$started" +%s) )) -ge 500 ] ||
    fail "se's clock is not behind: it says it started at $started"

# se's own first write is stamped with its slow clock, and fi takes it
ctl se put service se:s1 name="from the slow node" kind=shelter >/dev/null
wait_until 10 "se's write reaches fi" has_str fi service se:s1 name "from the slow node"
t=$(meta_time fi service se:s1 name)
[ $(( $(date -u +%s) - $(date -u -d "$t" +%s) )) -ge 500 ] ||
    fail "se's write is not stamped behind: $t"
ok "the slow node's own write, stamped $t (10 min behind), applied on fi"

# fi writes a case; once se has it, se overwrites status (writers =
# audience): se's wall clock is 10 minutes older than fi's stamp, but its
# HLC advanced on receipt, so se's write is the later one on both nodes.
ctl fi put case fi:c1 --audience fi,se pseudonym=K-1 status=referred >/dev/null
wait_until 10 "fi's case reaches se" has_str se case fi:c1 status referred
ctl se put case fi:c1 status=accepted >/dev/null
has_str se case fi:c1 status accepted ||
    fail "se's overwrite lost on se itself: $(q se get case fi:c1 --meta)"
wait_until 10 "se's overwrite wins on fi" has_str fi case fi:c1 status accepted
ok "se's causal overwrite wins on both ($(meta_time fi case fi:c1 status) vs fi's $(meta_time fi case fi:c1 pseudonym))"
# and fi's next write, with its right clock, wins again on both
ctl fi put case fi:c1 status=in_progress >/dev/null
wait_until 10 "fi's later write wins on se" has_str se case fi:c1 status in_progress
has_str fi case fi:c1 status in_progress || fail "fi lost its own later write"
[ "$(jget "$(node_json se)" quarantined)" = 0 ] ||
    fail "se quarantined something: $(ctl se quarantine --json)"
ok "two-way convergence with a clock 10 min behind (no quarantine)"

# With the default bound (500 ms), the slow node refuses what fi sends: the
# changes are quarantined, the session and the cursor go on.
nbx_peer fi no
nbx_peer no fi
kill -HUP "$(cat "$T/fi/pid")"
start_slow no -10m
wait_until 10 "fi and no connected" sh -c \
    "'$BIN/nbxctl' -c '$T/fi/nbx.conf' status --json | grep -q '\"id\":\"no\",[^}]*\"state\":\"up\"'"
ctl fi put service fi:s2 name="from the right clock" kind=helpline >/dev/null
wait_until 10 "no quarantines fi's change" sh -c \
    "'$BIN/nbxctl' -c '$T/no/nbx.conf' quarantine --json | grep '\"id\":\"fi:s2\"' | grep -q '\"reason\":\"clock drift beyond bound\"'"
has_str no service fi:s2 name "from the right clock" &&
    fail "no applied a change 10 min ahead of its clock"
ok "with the default bound, the slow node quarantines fi's changes (clock drift beyond bound)"

# wait_until_quiet SECONDS CMD...: like wait_until, but returns 1 instead
# of failing the test
wait_until_quiet() {
	_n=$(($1 * 10)); shift
	while [ $_n -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		_n=$((_n - 1)); sleep 0.1
	done
	return 1
}

# Its clock is put right (restart without libfaketime).
nbx_stop no
nbx_start no
wait_until 10 "fi and no reconnected" sh -c \
    "'$BIN/nbxctl' -c '$T/fi/nbx.conf' status --json | grep -q '\"id\":\"no\",[^}]*\"state\":\"up\"'"
# the change was held back besides its quarantine entry, and is applied
# once the clocks agree
if wait_until_quiet 15 has_str no service fi:s2 name "from the right clock"; then
	ok "after its clock was fixed, no applied the change it had held back"
else
	fail "a change quarantined for clock drift is lost for good: fixing the clock does not bring fi:s2 to no"
fi
