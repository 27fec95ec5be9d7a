#!/bin/sh
# Redial on heal: once one link comes up, a node dials the other peers it
# is waiting out a long backoff for, instead of letting each wait to its
# end.  ee peers with lv (direct) and with fi (through flakyproxy, link
# "ef").  backoff_min_ms = backoff_max_ms = 20000: a link that drops is
# dialled again 10-30 s later (jitter x0.5-1.5).  The ef link is cut (both
# ends drop it and wait at least 10 s), let through again at once, and lv
# (stopped before) is started: a starting node dials at once, so the ee-lv
# link comes up, and ee must then bring fi up too, well within the 10 s
# that either end would otherwise wait.
. "$(dirname "$0")/lib.sh"

BACKOFF_MIN_MS=20000
BACKOFF_MAX_MS=20000
export BACKOFF_MIN_MS BACKOFF_MAX_MS
ms() { echo $(($(date +%s%N) / 1000000)); }

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
wait_until 10 "ee sees lv down" is_down ee lv
t_cut=$(ms)
proxy_ctl set ef cut >/dev/null || fail "proxy: cut"
wait_until 10 "ee sees fi down" is_down ee fi
wait_until 10 "fi sees ee down" is_down fi ee
proxy_ctl set ef pass >/dev/null || fail "proxy: pass"
sleep 1
is_down ee fi || fail "ee-fi came back within 1 s of the cut, before lv did: the backoff was not in force"
nbx_start lv
wait_until 10 "ee-lv up again" is_up ee lv
i=0
until is_up ee fi; do
	i=$((i + 1))
	[ $i -lt 200 ] || break
	sleep 0.02
done
t_up=$(ms)
is_up ee fi || fail "ee-fi still down after lv came up"
[ $((t_up - t_cut)) -lt 9000 ] ||
    fail "ee-fi came up $((t_up - t_cut)) ms after the cut: it waited out the backoff (>= 10000 ms)"
ok "ee-fi up $((t_up - t_cut)) ms after the cut, once ee-lv came up"
grep -q "\[fi\] connected" "$T/ee/nbxd.log" || fail "no connection line for fi in ee's log"

