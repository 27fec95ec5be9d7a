#!/bin/sh
# A peer that stops reading (SIGSTOP: its socket fills, it answers no PING)
# is paused, then dropped after dead_after_ms, and never stalls the other
# peers; when it wakes up it reconnects and catches up.  What ee sends the
# frozen peer is bounded by the session's window (8 unacknowledged batches
# of batch_bytes), however much is written meanwhile: checked against the
# bytes the live peer fi receives, several times the bound.  Memory and
# how long the drop took are reported, not asserted: both depend on the
# machine.
. "$(dirname "$0")/lib.sh"

PING_MS=500 DEAD_MS=2000 BATCH_BYTES=32768
export PING_MS DEAD_MS BATCH_BYTES
WINDOW=8	# the session's default window (daemon/sync/session.h)
nbx_ca
nbx_node ee 1; nbx_node lv 2; nbx_node fi 3
nbx_peer ee lv; nbx_peer ee fi
nbx_peer lv ee
nbx_peer fi ee
nbx_start ee; nbx_start lv; nbx_start fi
wait_until 10 "all up" sh -c "'$BIN/nbxctl' -c '$T/ee/nbx.conf' status --json | python3 -c 'import json,sys; sys.exit(0 if all(p[\"state\"]==\"up\" for p in json.load(sys.stdin)[\"peers\"]) else 1)'"

rss() { awk '/^RssAnon/ { print $2 }' "/proc/$(cat "$T/$1/pid")/status"; }
# bytes_out NODE PEER: plaintext bytes NODE has sent PEER (status)
bytes_out() { peer_field "$1" "$2" bytes_out; }
rss0=$(rss ee)
out_lv0=$(bytes_out ee lv)
out_fi0=$(bytes_out ee fi)
kill -STOP "$(cat "$T/lv/pid")"
stopped_at=$(date +%s)
awk 'BEGIN { for (i = 0; i < 5000; i++)
	printf "{\"collection\":\"training\",\"id\":\"ee:t-%05d\",\"fields\":{\"title\":\"Module %d\",\"description\":\"Identifying victims, with a long description to fill the pipe %0400d\",\"kind\":\"module\",\"places\":%d}}\n", i, i, i, i % 30 }' >"$T/t.jsonl"
ctl ee import "$T/t.jsonl" >/dev/null || fail "import while lv is stopped"
wait_until 60 "fi keeps syncing while lv is stopped" sh -c "[ \"\$('$BIN/nbxq' -c '$T/fi/nbx.conf' count training)\" = 5000 ]"
rss1=$(rss ee)
sent_lv=$(( $(bytes_out ee lv) - out_lv0 ))
sent_fi=$(( $(bytes_out ee fi) - out_fi0 ))
bound=$((WINDOW * (BATCH_BYTES + 16384)))	# a batch closes past batch_bytes
[ "$sent_fi" -gt $((4 * bound)) ] ||
    fail "the import sent fi $sent_fi bytes, not several times the window's $bound: the case is not made"
[ "$sent_lv" -le "$bound" ] ||
    fail "ee sent the frozen lv $sent_lv bytes, more than its window allows ($bound), while fi got $sent_fi"
ok "fi got all 5000 records ($sent_fi bytes) while lv was frozen; lv was sent $sent_lv bytes, within the window ($bound)"
echo "ee's anonymous memory grew $((rss1 - rss0)) KiB meanwhile (reported, not asserted)"
wait_until 30 "ee drops the silent lv" sh -c "'$BIN/nbxctl' -c '$T/ee/nbx.conf' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if [p for p in d[\"peers\"] if p[\"id\"]==\"lv\"][0][\"state\"]!=\"up\" else 1)'"
dropped=$(( $(date +%s) - stopped_at ))
grep -q "\[lv\] disconnected: dead link" "$T/ee/nbxd.log" || fail "no dead-link log line"
ctl ee status | grep -q "^lv .*dead link" || fail "status does not show lv's last error"
ctl ee metrics >"$T/metrics"
grep -q '^nbx_peer_up{peer="lv"} 0$' "$T/metrics" || fail "metrics: lv still up: $(grep peer_up "$T/metrics")"
grep -q '^nbx_peer_up{peer="fi"} 1$' "$T/metrics" || fail "metrics: fi not up"
grep -q '^# TYPE nbx_peer_lag_changes gauge$' "$T/metrics" || fail "metrics format"
lag=$(sed -n 's/^nbx_peer_lag_changes{peer="lv"} //p' "$T/metrics")
[ "$lag" -gt 0 ] || fail "metrics: lv lag should be > 0, is '$lag'"
ok "silent lv dropped (after ${dropped}s; dead_after 2s), shown in status and metrics"

kill -CONT "$(cat "$T/lv/pid")"
wait_until 60 "lv catches up after waking" sh -c "[ \"\$('$BIN/nbxq' -c '$T/lv/nbx.conf' count training)\" = 5000 ]"
ok "lv reconnected and caught up"
