#!/bin/sh
# Spoofed changes from an authenticated peer.  The rogue rg, a configured
# peer of ee, sends one batch against records of lv (a genuine peer of ee)
# and of its own (tests/rogue/nbx-rogue.c, script "spoof"):
#   - lv:s1 name (writers = origin) written by rg             -> writer
#   - AUDIENCE of lv:case-1 widened to [ee, lv, rg] by rg     -> writer
#   - rg:case-9 pseudonym under an audience without ee        -> audience
#   - rg:s1 address, a share = local field                    -> local
#   - lv:case-1 status (writers = audience) by rg, not in the
#     case's audience, under a claimed audience holding rg    -> writer
#   - genuine: rg:s1 name; rg:case-2 audience [rg, ee] and pseudonym
#   - lv:s1 name claiming origin = lv (a forged origin)
# Each refused change is quarantined with its reason, the genuine changes
# of the same batch apply, the session stays up, the refused values are
# nowhere on ee (nbxq, and a grep of its data directory for canaries), and
# nothing of lv's case reaches rg, before or after.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rogue.sh"

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_peer ee lv
nbx_peer lv ee
rogue_identity rg ee 9
# rg is a direct peer, not a relay: only changes it made itself count
echo "relay = no" >>"$T/ee/nbx.conf"
nbx_start ee
nbx_start lv

ctl lv put service lv:s1 name="Riga shelter" kind=shelter >/dev/null
ctl lv put case lv:case-1 --audience lv,ee pseudonym=K-lv-1 status=referred \
    legal_name=LOCAL-CANARY-lv >/dev/null
wait_until 10 "lv's case reaches ee" has_str ee case lv:case-1 pseudonym K-lv-1
wait_until 10 "lv's service reaches ee" has_str ee service lv:s1 name "Riga shelter"

# The rogue stays connected after its batch, so that it also sees what ee
# streams to it afterwards: lv writes its case again meanwhile.
rogue_bg --linger 3000 --script spoof lv >"$T/spoof.out" 2>&1
wait_until 10 "the rogue's batch is ACKed" grep -q "recv ACK seq=1\$" "$T/spoof.out"
ctl lv put case lv:case-1 pseudonym=LEAK-CANARY-lv-2 >/dev/null
wait_until 10 "lv's new pseudonym reaches ee" has_str ee case lv:case-1 pseudonym LEAK-CANARY-lv-2
wait $RPID || fail "the rogue failed: $(tail -n 5 "$T/spoof.out")"
grep -E "send change|ACK|summary" "$T/spoof.out"
grep -q "closed_by_node=no" "$T/spoof.out" || fail "ee closed the rogue's session"
if grep -q '\[rg\] session error' "$T/ee/nbxd.log"; then
	fail "ee logged a session error for rg"
fi
ok "the session stayed up and the batch was ACKed"

# quarantined ID FIELD REASON: ee quarantined rg's change of ID's FIELD
ctl ee quarantine --json >"$T/quar.json"
quarantined() {
	grep "\"peer\":\"rg\"" "$T/quar.json" | grep "\"id\":\"$1\"" |
	    grep "\"field\":\"$2\"" | grep -q "\"reason\":\"$3\""
}
quarantined lv:s1 name "origin may not write this field" ||
    fail "rg's write of lv:s1 name not quarantined: $(cat "$T/quar.json")"
quarantined lv:case-1 "" "origin may not write this field" ||
    fail "rg's AUDIENCE of lv:case-1 not quarantined: $(cat "$T/quar.json")"
quarantined rg:case-9 pseudonym "audience missing or without this node" ||
    fail "scoped value without ee not quarantined: $(cat "$T/quar.json")"
quarantined rg:s1 address "field is local and may not arrive from a peer" ||
    fail "local field not quarantined: $(cat "$T/quar.json")"
ok "writer, audience-widening, audience and local changes quarantined with their reasons"
# rg carried a widened audience of its own making: refused, since only the
# record's creator sets audiences
if quarantined lv:case-1 status "audience missing or without this node"; then
	ok "rg's write of lv:case-1 status (not in its audience) quarantined"
else
	fail "rg, not in lv:case-1's audience, wrote its writers=audience field 'status' by claiming an audience that holds rg: $(q ee get case lv:case-1 --meta | grep status); $(cat "$T/quar.json")"
fi

# each refusal is in ee's log, where an operator looks
unlogged=
for id in lv:s1 lv:case-1 rg:case-9 rg:s1; do
	grep -i quarantin "$T/ee/nbxd.log" | grep -q "$id" ||
	    unlogged="$unlogged $id"
done
if [ -n "$unlogged" ]; then
	fail "ee's log says nothing of the changes of$unlogged it quarantined"
else
	ok "every quarantined change is in ee's log"
fi

# the genuine changes of the same batch applied
has_str ee service rg:s1 name "rogue genuine service" ||
    fail "genuine rg:s1 name not applied"
has_str ee case rg:case-2 pseudonym K-rogue-2 ||
    fail "genuine rg:case-2 pseudonym not applied"
q ee get case rg:case-2 --meta | grep -q 'audience \["ee","rg"\]' ||
    fail "rg:case-2's audience: $(q ee get case rg:case-2 --meta)"
ok "genuine changes in the same batch applied"

# the refused values are nowhere on ee (or on lv)
if q ee get case rg:case-9 --json >/dev/null 2>&1; then
	fail "rg:case-9 exists on ee: $(q ee get case rg:case-9 --json)"
fi
if q ee get service rg:s1 --json | grep -q address; then
	fail "rg:s1 address on ee"
fi
has_str ee service lv:s1 name CANARY-SPOOF-writer && fail "lv:s1 name spoofed"
for n in ee lv; do
	if grep -r -l -a CANARY-SPOOF "$T/$n/data"; then
		fail "a refused value is in $n's data directory"
	fi
done
ok "no refused value in nbxq or in the data directories"

# nothing of lv's case ever reached rg; its local field stays on lv
if grep -r -a -l LOCAL-CANARY-lv "$T/ee/data" "$T/spoof.out"; then
	fail "lv's local field left lv"
fi
leaked=$(grep -E 'recv change .* case/lv:case-1 field=(pseudonym|legal_name)' "$T/spoof.out" || true)
if [ -n "$leaked" ]; then
	fail "an audience value of lv:case-1 reached rg, which was never in its audience: $leaked"
else
	ok "no value of lv's case reached rg"
fi
for n in ee lv; do
	if q "$n" get case lv:case-1 --meta | grep -q '"rg"'; then
		fail "lv:case-1's audience on $n holds rg: $(q "$n" get case lv:case-1 --meta | tr '\n' ' ')"
	fi
done

# A change claiming origin = lv for lv's own record: the certificate says
# rg, and rg is configured relay = no, so only rg's own changes count.
# (From a peer trusted to relay, a forged origin cannot be told from a
# relayed change: no field of a change authenticates its origin.)
if has_str ee service lv:s1 name FORGED-ORIGIN-name; then
	fail "ee applied lv:s1 name = FORGED-ORIGIN-name sent by rg (relay = no) with origin = lv"
fi
grep "\"id\":\"lv:s1\"" "$T/quar.json" | grep '"origin":"lv"' |
    grep -q '"reason":"peer protocol or identity violation"' ||
    fail "the forged-origin change is not quarantined: $(cat "$T/quar.json")"
ok "a change with a forged origin from a non-relay peer was refused"
