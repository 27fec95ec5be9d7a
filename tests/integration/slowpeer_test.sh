#!/bin/sh
# A peer that stops reading (SIGSTOP: its socket fills, it answers no PING)
# is paused, then dropped after dead_after_ms, and never stalls the other
# peers; when it wakes up it reconnects and catches up.
. "$(dirname "$0")/lib.sh"

PING_MS=500 DEAD_MS=2000
export PING_MS DEAD_MS
nbx_ca
nbx_node ee 1; nbx_node lv 2; nbx_node fi 3
nbx_peer ee lv; nbx_peer ee fi
nbx_peer lv ee
nbx_peer fi ee
nbx_start ee; nbx_start lv; nbx_start fi
wait_until 10 "all up" sh -c "'$BIN/nbxctl' -c '$T/ee/nbx.conf' status --json | python3 -c 'import json,sys; sys.exit(0 if all(p[\"state\"]==\"up\" for p in json.load(sys.stdin)[\"peers\"]) else 1)'"

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$(cat "$T/$1/pid")/status"; }
rss0=$(rss ee)
kill -STOP "$(cat "$T/lv/pid")"
stopped_at=$(date +%s)
awk 'BEGIN { for (i = 0; i < 5000; i++)
	printf "{\"collection\":\"training\",\"id\":\"ee:t-%05d\",\"fields\":{\"title\":\"Module %d\",\"description\":\"Identifying victims, with a long description to fill the pipe %0400d\",\"kind\":\"module\",\"places\":%d}}\n", i, i, i, i % 30 }' >"$T/t.jsonl"
ctl ee import "$T/t.jsonl" >/dev/null || fail "import while lv is stopped"
wait_until 20 "fi keeps syncing while lv is stopped" sh -c "[ \"\$('$BIN/nbxq' -c '$T/fi/nbx.conf' count training)\" = 5000 ]"
rss1=$(rss ee)
# not under ASan, whose allocator keeps freed memory in quarantine
if ! grep -q -a __asan_init "$BIN/nbxd" 2>/dev/null; then
	[ $((rss1 - rss0)) -lt 65536 ] ||
	    fail "ee's memory grew by $((rss1 - rss0)) KiB with a frozen peer"
fi
ok "fi got all 5000 records while lv was frozen; ee's RSS grew $((rss1 - rss0)) KiB"
wait_until 10 "ee drops the silent lv" sh -c "'$BIN/nbxctl' -c '$T/ee/nbx.conf' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if [p for p in d[\"peers\"] if p[\"id\"]==\"lv\"][0][\"state\"]!=\"up\" else 1)'"
dropped=$(( $(date +%s) - stopped_at ))
grep -q "\[lv\] disconnected: dead link" "$T/ee/nbxd.log" || fail "no dead-link log line"
ctl ee status | grep -q "^lv .*dead link" || fail "status does not show lv's last error"
ctl ee metrics >"$T/metrics"
grep -q '^nbx_peer_up{peer="lv"} 0$' "$T/metrics" || fail "metrics: lv still up: $(grep peer_up "$T/metrics")"
grep -q '^nbx_peer_up{peer="fi"} 1$' "$T/metrics" || fail "metrics: fi not up"
grep -q '^# TYPE nbx_peer_lag_changes gauge$' "$T/metrics" || fail "metrics format"
lag=$(sed -n 's/^nbx_peer_lag_changes{peer="lv"} //p' "$T/metrics")
[ "$lag" -gt 0 ] || fail "metrics: lv lag should be > 0, is '$lag'"
[ "$dropped" -le 6 ] || fail "took ${dropped}s to notice a dead link of 2s"
ok "silent lv dropped after ${dropped}s (dead_after 2s), shown in status and metrics"

kill -CONT "$(cat "$T/lv/pid")"
wait_until 30 "lv catches up after waking" sh -c "[ \"\$('$BIN/nbxq' -c '$T/lv/nbx.conf' count training)\" = 5000 ]"
ok "lv reconnected and caught up"
