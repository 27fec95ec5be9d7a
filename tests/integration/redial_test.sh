#!/bin/sh
# Redial on heal: once one link comes up, a node dials the other peers it
# is waiting out a long backoff for, instead of letting each wait to its
# end.  ee peers with lv (direct) and with fi (through flakyproxy, link
# "ef").  backoff_min_ms = backoff_max_ms = 600000: a link that drops is
# dialled again 5-15 minutes later (jitter x0.5-1.5).  The ef link is cut
# (both ends drop it; their status shows the minutes they will wait), let
# through again at once, and lv (stopped before) is started: a starting
# node dials at once, so the ee-lv link comes up, and ee must then bring
# fi up too.  Nothing else can bring ee-fi up before minutes have passed,
# so ee-fi up within the test's wait (a safety net of 120 s) is the rule
# at work, not a measure of speed.
. "$(dirname "$0")/lib.sh"

BACKOFF_MIN_MS=600000
BACKOFF_MAX_MS=600000
export BACKOFF_MIN_MS BACKOFF_MAX_MS

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_proxy_start --route ee.fi:ef:"$(port_of fi)" --route fi.ee:ef:"$(port_of ee)"
nbx_peer ee lv
nbx_peer lv ee
nbx_peer_via ee fi "$(proxy_port ee.fi)"
nbx_peer_via fi ee "$(proxy_port fi.ee)"
for n in ee lv fi; do nbx_start "$n"; done
wait_until 20 "ee-lv up" is_up ee lv
wait_until 20 "ee-fi up" is_up ee fi
ok "the three nodes are up"

nbx_stop lv
wait_until 30 "ee sees lv down" is_down ee lv
proxy_ctl set ef cut >/dev/null || fail "proxy: cut"
wait_until 30 "ee sees fi down" is_down ee fi
wait_until 30 "fi sees ee down" is_down fi ee
# waiting NODE PEER: NODE's status says PEER is dialled again only in
# minutes (the backoff is in force)
waiting() { r=$(peer_field "$1" "$2" redial_in_ms) && [ "$r" != None ] && [ "$r" -gt 120000 ]; }
waiting ee fi || fail "ee redials fi in $(peer_field ee fi redial_in_ms) ms, want minutes"
waiting fi ee || fail "fi redials ee in $(peer_field fi ee redial_in_ms) ms, want minutes"
ok "ef cut: ee redials fi in $(peer_field ee fi redial_in_ms) ms, fi ee in $(peer_field fi ee redial_in_ms) ms"
proxy_ctl set ef pass >/dev/null || fail "proxy: pass"
links0=$(link_count ee fi)
nbx_start lv
wait_until 30 "ee-lv up again" is_up ee lv
wait_until 120 "ee-fi up once ee-lv came up (the backoff would wait minutes)" is_up ee fi
[ "$(link_count ee fi)" -gt "$links0" ] || fail "no new connection line for fi in ee's log"
[ "$(last_link ee fi)" = to ] || fail "ee-fi came up on fi's dial, not ee's: $(last_link ee fi)"
ok "ee dialled fi as soon as ee-lv came up, minutes before its backoff ended"
