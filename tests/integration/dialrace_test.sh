#!/bin/sh
# One end's dial hangs in its handshake while the other end's dial gets
# through.  ee's dials to lv go through flakyproxy link "el", lv's to ee
# through link "le".  With "el" a black hole (hang), ee's dial sits in
# its TLS handshake; then "le" passes and lv's dial finishes at both ends.
# ee must give its own dial up at once (conn.c, drop_dial): left to
# finish, it would be a duplicate that the rule of established() keeps
# (the smaller id's dial), dropping the session already streaming on
# lv's.  Checked: ee logs that it gave its dial up, its connection to
# the proxy is gone, both ends keep lv's dial and no other, nothing is
# resolved as a duplicate, the session stays, writes cross.  Then the
# same the other way round: lv's dial hangs, ee's gets through, lv gives
# its own up.
. "$(dirname "$0")/lib.sh"

BACKOFF_MIN_MS=300
BACKOFF_MAX_MS=300
DEAD_MS=10000
export BACKOFF_MIN_MS BACKOFF_MAX_MS DEAD_MS
# open_to PORT: TCP connections established to 127.0.0.1:PORT
open_to() { ss -Htn state established "( dport = :$1 )" | wc -l; }
gave_up() { grep -q "\[$2\] own dial given up" "$T/$1/nbxd.log"; }
is_connecting() { [ "$(peer_field "$1" "$2" state)" = connecting ]; }

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_proxy_start --route ee.lv:el:"$(port_of lv)" --route lv.ee:le:"$(port_of ee)"
nbx_peer_via ee lv "$(proxy_port ee.lv)"
nbx_peer_via lv ee "$(proxy_port lv.ee)"
proxy_ctl set el,le cut >/dev/null || fail "proxy: cut"
# debug logging: giving a dial up is a debug line
nbx_start_verbose ee
nbx_start_verbose lv
sleep 1
grep -q "connection failed" "$T/ee/nbxd.log" ||
    fail "ee did not dial lv while the links were cut"
grep -q "connection failed" "$T/lv/nbxd.log" ||
    fail "lv did not dial ee while the links were cut"

# race SLOW FAST LINK_SLOW LINK_FAST: SLOW's dial hangs, FAST's passes
race() {
	slow=$1 fast=$2
	proxy_ctl set "$3" hang >/dev/null || fail "proxy: hang"
	wait_until 10 "$slow's dial to $fast in its handshake" \
	    is_connecting "$slow" "$fast"
	sleep 0.5	# the dial is connected to the proxy, not refused
	is_connecting "$slow" "$fast" || fail "$slow's dial did not hang"
	[ "$(open_to "$(proxy_port "$slow.$fast")")" -ge 1 ] ||
	    fail "no connection from $slow to the hanging link"
	proxy_ctl set "$4" pass >/dev/null || fail "proxy: pass"
	wait_until 30 "$slow sees $fast up" is_up "$slow" "$fast"
	wait_until 30 "$fast sees $slow up" is_up "$fast" "$slow"
	wait_until 10 "$slow gives its own dial up (nbxd -v)" gave_up "$slow" "$fast"
	wait_until 10 "$slow's hanging connection closed" \
	    [ "$(open_to "$(proxy_port "$slow.$fast")")" = 0 ]
	ok "$slow's dial hung, $fast's got through: $slow gave its own up"

	since_s=$(peer_field "$slow" "$fast" since)
	since_f=$(peer_field "$fast" "$slow" since)
	n_s=$(link_count "$slow" "$fast")
	n_f=$(link_count "$fast" "$slow")
	proxy_ctl set "$3" pass >/dev/null || fail "proxy: pass"
	sleep 3
	is_up "$slow" "$fast" || fail "$slow: $fast no longer up"
	is_up "$fast" "$slow" || fail "$fast: $slow no longer up"
	[ "$(last_link "$slow" "$fast")" = from ] ||
	    fail "$slow's last connection to $fast: $(last_link "$slow" "$fast"), not $fast's dial"
	[ "$(last_link "$fast" "$slow")" = to ] ||
	    fail "$fast's last connection to $slow: $(last_link "$fast" "$slow"), not its own dial"
	[ "$(link_count "$slow" "$fast")" = "$n_s" ] &&
	    [ "$(link_count "$fast" "$slow")" = "$n_f" ] ||
	    fail "connections still coming: $slow $n_s -> $(link_count "$slow" "$fast"), $fast $n_f -> $(link_count "$fast" "$slow")"
	[ "$(peer_field "$slow" "$fast" since)" = "$since_s" ] &&
	    [ "$(peer_field "$fast" "$slow" since)" = "$since_f" ] ||
	    fail "the session was replaced"
	if grep -h -E "duplicate connection dropped|connection replaced" \
	    "$T/ee/nbxd.log" "$T/lv/nbxd.log" >"$T/dup"; then
		fail "a duplicate came up after all: $(head -n 1 "$T/dup")"
	fi
	ok "one session, $fast's dial at both ends, stable for 3 s, no duplicate"
}

race ee lv el le
writes_cross ee lv r1
ok "writes cross both ways over lv's dial"

# the other way round: the session cut, then lv's dial hangs
proxy_ctl set el,le cut >/dev/null || fail "proxy: cut"
wait_until 30 "ee sees lv down" is_down ee lv
wait_until 30 "lv sees ee down" is_down lv ee
race lv ee le el
writes_cross ee lv r2
ok "writes cross both ways over ee's dial"
nbx_stop lv
nbx_stop ee
