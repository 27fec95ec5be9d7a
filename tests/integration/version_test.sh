#!/bin/sh
# Rolling upgrades and a drifted schema.  ee speaks versions 1..2 (this
# release), lv is limited to version 1 (standing in for the previous
# release), fi speaks only 2, se has a schema with one more field.  ee
# syncs with everyone; lv and fi share no version: both ends say so
# (status, metric, log) and wait a long backoff instead of redialling;
# lv's writes still reach fi through ee.  ee shows se's schema differs.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_nodes ee lv fi se
sync_set lv protocol_max 1
sync_set fi protocol_min 2
cp "$REPO/conf/schema.conf" "$T/se.schema"
printf '\n[training.extra_note]\ntype = string\nshare = local\n' >>"$T/se.schema"
sed -i "s|^schema = .*|schema = $T/se.schema|" "$T/se/nbx.conf"
for a in ee lv fi se; do
	for b in ee lv fi se; do
		[ "$a" = "$b" ] || nbx_peer "$a" "$b"
	done
done
for n in ee lv fi se; do nbx_start "$n"; done

wait_until 30 "ee-lv up" is_up ee lv
wait_until 30 "ee-fi up" is_up ee fi
wait_until 30 "ee-se up" is_up ee se
[ "$(peer_field ee lv protocol)" = 1 ] || fail "ee-lv speaks $(peer_field ee lv protocol)"
[ "$(peer_field lv ee protocol)" = 1 ] || fail "lv-ee speaks $(peer_field lv ee protocol)"
[ "$(peer_field ee fi protocol)" = 2 ] || fail "ee-fi speaks $(peer_field ee fi protocol)"
[ "$(peer_field ee lv schema_match)" = None ] ||
    fail "a version-1 peer's schema is unknown, ee says $(peer_field ee lv schema_match)"
[ "$(peer_field ee fi schema_match)" = True ] || fail "ee-fi schema: $(peer_field ee fi schema_match)"
ok "ee speaks 1 with lv (limited to 1) and 2 with fi; fi's schema is ee's"

wait_until 30 "lv sees fi incompatible" is_state lv fi incompatible
wait_until 30 "fi sees lv incompatible" is_state fi lv incompatible
[ "$(peer_field fi lv protocol)" = None ] || fail "fi-lv protocol $(peer_field fi lv protocol)"
ctl fi metrics | grep -q '^nbx_peer_no_common_version{peer="lv"} 1' ||
    fail "fi's metric: $(ctl fi metrics | grep no_common)"
grep -q "no common protocol version" "$T/fi/nbxd.log" "$T/lv/nbxd.log" ||
    fail "no log line names the version mismatch"
ctl lv status | grep '^fi ' | grep -q incompatible || fail "lv status: $(ctl lv status)"
for pair in "lv fi" "fi lv"; do
	set -- $pair
	r=$(peer_field "$1" "$2" redial_in_ms)
	[ "$r" != None ] && [ "$r" -gt 300000 ] ||
	    fail "$1 redials $2 in $r ms: no long backoff"
done
ok "lv and fi share no version: both show incompatible, the metric and the log say so, redial in minutes"

ctl lv put service lv:s1 name="Helpline" kind=helpline >/dev/null
wait_until 30 "fi got lv's service through ee" has_field fi service lv:s1 name "Helpline"
ctl fi put service fi:s1 name="Shelter" kind=shelter >/dev/null
wait_until 30 "lv got fi's service through ee" has_field lv service fi:s1 name "Shelter"
ok "lv (version 1) and fi (version 2 only) exchange records through ee"

[ "$(peer_field ee se schema_match)" = False ] || fail "ee-se schema: $(peer_field ee se schema_match)"
[ "$(peer_field se ee schema_match)" = False ] || fail "se-ee schema: $(peer_field se ee schema_match)"
ctl ee status | grep '^se ' | grep -q DIFFERS || fail "ee status: $(ctl ee status)"
ctl ee metrics | grep -q '^nbx_peer_schema_mismatch{peer="se"} 1' ||
    fail "ee's metric: $(ctl ee metrics | grep schema)"
ok "ee and se show that their schemas differ (status, metric)"
