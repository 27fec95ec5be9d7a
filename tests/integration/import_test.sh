#!/bin/sh
# nbxctl import and nbxq around it: bad lines are reported with their line
# number and reason and the rest goes in; a second import changes nothing;
# nbxq reads while nbxd applies a large import that grows the LMDB map;
# nbxq works on a read-only copy of a data directory.
. "$(dirname "$0")/lib.sh"

MAP_MB=1	# tiny map: the import must grow it
export MAP_MB
nbx_ca
nbx_node ee 1
nbx_start ee

cat >"$T/mixed.jsonl" <<'JSONL'
{"collection":"service","id":"ee:good-1","fields":{"name":"Good one","kind":"shelter","languages":["et","ru"]}}
{"collection":"service","id":"ee:bad-json","fields":{"name":"oops"
{"collection":"service","id":"ee:bad-field","fields":{"name":"x","colour":"red"}}
{"collection":"service","id":"ee:bad-type","fields":{"name":"x","capacity":"many"}}
{"collection":"nosuch","id":"ee:x","fields":{}}

{"collection":"service","id":"good-2","fields":{"name":"Good two","kind":"helpline","capacity":4,"open_24h":true,"languages":"lv, en"}}
{"collection":"service","id":"lv:not-ours","fields":{"name":"someone else's record"}}
{"collection":"case","id":"ee:case-1","audience":["lv"],"fields":{"pseudonym":"P-1","referral_date":"2026-11-01","legal_name":"kept local"}}
JSONL
set +e
ctl ee import "$T/mixed.jsonl" >"$T/out" 2>"$T/err"
rc=$?
set -e
[ $rc = 1 ] || fail "import with bad lines should exit 1, got $rc"
grep -q "read 8, applied 3, unchanged 0, rejected 5" "$T/out" || fail "summary: $(cat "$T/out")"
grep -q "mixed.jsonl:2: not JSON" "$T/err" || fail "line 2: $(cat "$T/err")"
grep -q "mixed.jsonl:3: service has no field 'colour'" "$T/err" || fail "line 3: $(cat "$T/err")"
grep -q "mixed.jsonl:4: service.capacity: expected an integer" "$T/err" || fail "line 4: $(cat "$T/err")"
grep -q "mixed.jsonl:5: unknown collection 'nosuch'" "$T/err" || fail "line 5: $(cat "$T/err")"
grep -q "mixed.jsonl:8: .*origin may not write" "$T/err" || fail "line 8: $(cat "$T/err")"
has_field ee service ee:good-2 languages "en,lv" || fail "set from a comma list"
has_field ee case ee:case-1 pseudonym P-1 || fail "case imported"
q ee get case ee:case-1 --meta --json | grep -q '"audience":\["ee","lv"\]' || fail "creator added to audience"
ok "bad lines reported by number and reason; good lines applied"

# writes the store refuses (another node's record) among good ones in one
# request: each refused write is taken out whole, the others land intact
awk 'BEGIN { for (i = 1; i <= 40; i++) {
	if (i % 3 == 0 || i == 1 || i == 40)
		printf "{\"collection\":\"service\",\"id\":\"lv:theirs-%d\",\"fields\":{\"name\":\"theirs%d\"}}\n", i, i
	else
		printf "{\"collection\":\"service\",\"id\":\"ee:mine-%d\",\"fields\":{\"name\":\"m%d\",\"capacity\":%d,\"languages\":[\"l%d\"]}}\n", i, i, i, i
	} }' >"$T/refused.jsonl"
set +e
ctl ee import "$T/refused.jsonl" >"$T/ref.out" 2>"$T/ref.err"
set -e
grep -q "read 40, applied 25, unchanged 0, rejected 15" "$T/ref.out" ||
    fail "refused among good: $(cat "$T/ref.out")"
for i in 1 3 21 39 40; do
	grep -q "refused.jsonl:$i: .*lv:theirs-$i.*origin may not write" "$T/ref.err" ||
	    fail "refused line $i: $(cat "$T/ref.err")"
done
for i in 2 4 5 20 22 38; do
	has_field ee service "ee:mine-$i" name "m$i" &&
	    has_field ee service "ee:mine-$i" capacity "$i" &&
	    has_field ee service "ee:mine-$i" languages "l$i" ||
	    fail "ee:mine-$i: $(q ee get service "ee:mine-$i" 2>&1)"
done
[ "$(q ee count service --where name~theirs)" = 0 ] || fail "a refused write landed"
ok "writes the store refuses are taken out whole; the others land intact"

set +e
ctl ee import "$T/mixed.jsonl" >"$T/out2" 2>/dev/null
set -e
grep -q "applied 0, unchanged 3, rejected 5" "$T/out2" || fail "second import: $(cat "$T/out2")"
ok "importing the same file again changes nothing"

# bad lines deep in a file, where nbxctl has several requests in flight: each
# is reported with its own line number (lines that are plainly not JSON
# never reach nbxd, so the requests' line numbers shift against their
# positions; lines whose brackets close but which are not JSON reach nbxd,
# which refuses the whole request: nbxctl then checks that request's lines
# itself and sends the good ones again)
awk 'BEGIN { for (i = 1; i <= 3500; i++) {
	if (i == 1200 || i == 2900)
		print "not json at " i
	else if (i == 1700)
		printf "{\"collection\":\"service\" \"id\":\"ee:deep-%d\"}\n", i
	else if (i == 3100)
		printf "{\"collection\":\"service\",\"id\":\"ee:deep-%d\",\"fields\":{\"name\":tru}}\n", i
	else if (i == 2001 || i == 3499)
		printf "{\"collection\":\"service\",\"id\":\"ee:deep-%d\",\"fields\":{\"colour\":\"red\"}}\n", i
	else
		printf "{\"collection\":\"service\",\"id\":\"ee:deep-%d\",\"fields\":{\"name\":\"n%d\"}}\n", i, i
	} }' >"$T/deep.jsonl"
set +e
ctl ee import "$T/deep.jsonl" >"$T/deep.out" 2>"$T/deep.err"
rc=$?
set -e
[ $rc = 1 ] || fail "deep import should exit 1, got $rc"
grep -q "read 3500, applied 3494, unchanged 0, rejected 6" "$T/deep.out" ||
    fail "deep summary: $(cat "$T/deep.out")"
for n in 1200 1700 2900 3100; do
	grep -q "deep.jsonl:$n: not JSON" "$T/deep.err" || fail "line $n: $(cat "$T/deep.err")"
done
for n in 2001 3499; do
	grep -q "deep.jsonl:$n: service has no field 'colour'" "$T/deep.err" ||
	    fail "line $n: $(cat "$T/deep.err")"
done
[ "$(wc -l <"$T/deep.err")" = 6 ] || fail "deep: $(cat "$T/deep.err")"
[ "$(q ee count service --where 'name~n')" -ge 3494 ] || fail "deep: records missing"
for n in 1699 1701 3099 3101 3500; do
	has_field ee service "ee:deep-$n" name "n$n" || fail "deep: ee:deep-$n missing"
done
ok "bad lines among 3,500 (four requests, all in flight) reported by their own numbers"

# a large import from stdin while nbxq reads
awk 'BEGIN { for (i = 0; i < 30000; i++)
	printf "{\"collection\":\"training\",\"id\":\"ee:t-%05d\",\"fields\":{\"title\":\"Training %d\",\"kind\":\"event\",\"date\":\"2026-12-%02d\",\"places\":%d}}\n", i, i, i % 28 + 1, i % 40 }' |
    ctl ee import - >"$T/big.out" &
imp=$!
reads=0; last=0
while kill -0 $imp 2>/dev/null; do
	c=$(q ee count training) || fail "nbxq failed during the import"
	[ "$c" -ge "$last" ] || fail "count went backwards: $last -> $c"
	last=$c; reads=$((reads + 1))
done
wait $imp || fail "large import: $(cat "$T/big.out")"
[ "$(q ee count training)" = 30000 ] || fail "30000 trainings"
[ "$(q ee count training --where 'date<2026-12-03')" = 2144 ] || fail "date filter: $(q ee count training --where 'date<2026-12-03')"
map=$(ctl ee status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["map_size"])')
[ "$map" -gt 1048576 ] || fail "map did not grow ($map)"
ok "nbxq read $reads times during a 30,000-line import; map grew to $map bytes"

# a read-only copy of the data directory
cp -r "$T/ee/data" "$T/ro"
rm -f "$T/ro/lock.mdb"
chmod -R a-w "$T/ro"
chmod a+rx "$T" "$T/ro"
chmod a+r "$T/ro"/*
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	RO="setpriv --reuid=65534 --regid=65534 --clear-groups"
else
	RO=""
fi
c=$($RO "$BIN/nbxq" -d "$T/ro" count training) || fail "nbxq on a read-only copy"
[ "$c" = 30000 ] || fail "read-only copy count $c"
[ ! -e "$T/ro/lock.mdb" ] || fail "nbxq wrote a lock file into the read-only copy"
chmod -R u+w "$T/ro"
ok "nbxq reads a read-only copy and writes nothing"

set +e
"$BIN/nbxq" -d "$T/nowhere" count service 2>"$T/e"; rc=$?
set -e
[ $rc = 1 ] && grep -q "nowhere" "$T/e" || fail "missing store: rc $rc, $(cat "$T/e")"
ok "missing store: clear error, exit 1"
