#!/bin/sh
# A lost acknowledged write is the second-worst bug.  ee imports 20,000
# services (160,000 changes); lv is killed with SIGKILL while it holds part
# of them, restarted, and must converge: every record there, identical
# listings, and lv's change counter equal to ee's — each change applied
# exactly once (a change re-sent after the crash is a no-op and gets no
# seq).  The link runs through flakyproxy, paused after 2 MiB each way, so
# that lv is killed with some but never all of the records, on any
# machine.  (crash_test kills nodes at random points of their work.)
. "$(dirname "$0")/lib.sh"

N=${KILL9_RECORDS:-20000}
LET_THROUGH=$((2 << 20))
nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_proxy_start --route ee.lv:el:"$(port_of lv)" --route lv.ee:el:"$(port_of ee)"
nbx_peer_via ee lv "$(proxy_port ee.lv)"
nbx_peer_via lv ee "$(proxy_port lv.ee)"
nbx_start ee

awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
	printf "{\"collection\":\"service\",\"id\":\"ee:svc-%06d\",\"fields\":{\"name\":\"Service %d\",\"kind\":\"shelter\",\"country\":\"ee\",\"city\":\"Tallinn\",\"capacity\":%d,\"open_24h\":true,\"languages\":[\"et\",\"ru\",\"en\"]}}\n", i, i, i % 50 }' \
    >"$T/services.jsonl"
ctl ee import "$T/services.jsonl" >"$T/import.out" || fail "import: $(cat "$T/import.out")"
grep -q "applied $N," "$T/import.out" || fail "import summary: $(cat "$T/import.out")"
ee_seq=$(ctl ee status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["seq"])')
[ "$ee_seq" -ge $((N * 8)) ] || fail "ee seq $ee_seq < $((N * 8))"
ok "ee holds $N records ($ee_seq changes)"

proxy_ctl set el pause "$LET_THROUGH" >/dev/null || fail "proxy: pause"
nbx_start lv
partial_on_lv() { c=$(q lv count service) && [ "$c" -gt 0 ] && [ "$c" -lt "$N" ]; }
wait_until 60 "lv holds part of the records (the link is held after $LET_THROUGH bytes)" partial_on_lv
nbx_kill lv
got=$(q lv count service)
[ "$got" -gt 0 ] && [ "$got" -lt "$N" ] ||
    fail "lv was killed with $got of $N records: the case (some, not all) was not made"
ok "lv killed with -9 holding $got of $N records"

proxy_ctl set el pass >/dev/null || fail "proxy: pass"
nbx_start lv
wait_until 60 "lv converged" sh -c "[ \"\$('$BIN/nbxq' -c '$T/lv/nbx.conf' count service)\" = $N ]"
wait_until 20 "ee sees lv caught up" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"peers\"][0][\"lag\"]==0 else 1)'"
lv_seq=$(ctl lv status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["seq"])')
[ "$lv_seq" = "$ee_seq" ] || fail "lv applied $lv_seq changes, ee made $ee_seq: something applied twice or lost"
q ee list service --format csv >"$T/ee.csv"
q lv list service --format csv >"$T/lv.csv"
cmp -s "$T/ee.csv" "$T/lv.csv" || fail "listings differ after recovery"
ok "after kill -9 lv converged: $N records, $lv_seq changes each applied once"
