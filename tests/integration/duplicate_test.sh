#!/bin/sh
# Both ends dial at once.  ee and lv reach each other only through
# flakyproxy, one link per direction ("el" carries ee's dial, "le" lv's),
# both paused: each node's dial is accepted and held there.  Once the proxy
# holds one dial from each node, both links are let go together, holding
# every chunk 1 s: a TLS handshake then takes 2 s at the client and 3 s at
# the server, so both dials, released in the same instant, complete, two
# connections for one pair.  (Neither end gives its dial up, drop_dial:
# for that the other's dial would have to finish at its server end before
# this one finishes at its client end, 1 s more than the dials are apart;
# dialrace_test covers it.)  One session per pair is kept (conn.c,
# established): the dial of the smaller id, ee's, at both ends.  Checked:
# the duplicate was seen and resolved (nbxd -v logs it), each node keeps
# ee's connection and no other, it stays up, the connection dropped ends
# with close_notify (the end that had started a session on it must not
# see a truncated stream), and writes on either side reach the other.
. "$(dirname "$0")/lib.sh"

BACKOFF_MIN_MS=300
BACKOFF_MAX_MS=300
DEAD_MS=10000
export BACKOFF_MIN_MS BACKOFF_MAX_MS DEAD_MS

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_proxy_start --route ee.lv:el:"$(port_of lv)" --route lv.ee:le:"$(port_of ee)"
nbx_peer_via ee lv "$(proxy_port ee.lv)"
nbx_peer_via lv ee "$(proxy_port lv.ee)"
proxy_ctl set el,le pause >/dev/null || fail "proxy: pause"
# debug logging: the duplicate's resolution is a debug line
nbx_start_verbose ee
nbx_start_verbose lv
# holding LINK: the proxy holds a connection's first bytes on LINK
holding() {
	proxy_ctl stats | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)[sys.argv[1]]["holding"] >= 1 else 1)' "$1"
}
wait_until 30 "the proxy holds ee's dial" holding el
wait_until 30 "the proxy holds lv's dial" holding le
proxy_ctl set el,le delay 1000 >/dev/null || fail "proxy: delay"
wait_until 30 "ee sees lv up" is_up ee lv
wait_until 30 "lv sees ee up" is_up lv ee
dup_seen() {
	grep -q -E "duplicate connection dropped|connection replaced" \
	    "$T/ee/nbxd.log" "$T/lv/nbxd.log"
}
wait_until 30 "a duplicate connection resolved (nbxd -v)" dup_seen
# lv logs ee's dial once its end of that handshake is done
kept_at_lv() { [ "$(last_link lv ee)" = from ]; }
wait_until 30 "lv up on ee's dial" kept_at_lv
ok "both dialled at once: two connections, one dropped as a duplicate"

# settled: ee's dial at both ends, up, and nothing more for 3 s
since_ee=$(peer_field ee lv since)
since_lv=$(peer_field lv ee since)
n_ee=$(link_count ee lv)
n_lv=$(link_count lv ee)
sleep 3
is_up ee lv || fail "ee: lv no longer up"
is_up lv ee || fail "lv: ee no longer up"
[ "$(last_link ee lv)" = to ] ||
    fail "ee kept lv's dial (its last connection: $(last_link ee lv)), not its own"
[ "$(last_link lv ee)" = from ] ||
    fail "lv kept its own dial (its last connection: $(last_link lv ee)), not ee's"
[ "$(link_count ee lv)" = "$n_ee" ] && [ "$(link_count lv ee)" = "$n_lv" ] ||
    fail "connections still coming: ee $n_ee -> $(link_count ee lv), lv $n_lv -> $(link_count lv ee)"
[ "$(peer_field ee lv since)" = "$since_ee" ] &&
    [ "$(peer_field lv ee since)" = "$since_lv" ] ||
    fail "a session was replaced after the duplicate was resolved"
ok "one session kept, ee's dial at both ends, stable for 3 s"
# the connection dropped was closed with close_notify: the end that had
# started a session on it saw its peer end it, not a truncated stream
if grep -h "without close_notify" "$T/ee/nbxd.log" "$T/lv/nbxd.log" >"$T/cut"; then
	fail "a duplicate was dropped without close_notify: $(head -n 2 "$T/cut")"
fi
ok "the duplicate was ended with close_notify"

writes_cross ee lv d1
ok "writes cross both ways over the kept session"
nbx_stop lv
nbx_stop ee
