#!/bin/sh
# Erasure everywhere (GDPR art. 17): ee - lv - fi in a line, a case whose
# audience is all three reaches fi through lv.  Erased on ee, every node
# purges it and returns a receipt that finds its way back to ee through the
# relay; after `nbxctl compact` the canary is in no file of any node.  A
# node that was offline gets the erasure when it returns, and its stale
# update is refused.  The disclosure log names exactly who received what.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1; nbx_node lv 2; nbx_node fi 3; nbx_node se 4
nbx_peer ee lv; nbx_peer ee se
nbx_peer lv ee; nbx_peer lv fi
nbx_peer fi lv
nbx_peer se ee
for n in ee lv fi se; do nbx_start $n; done

CANARY="ERASECANARY-$$-c0ffee"
ctl ee put case ee:c1 --audience ee,lv,fi pseudonym="$CANARY" status=referred \
    referral_date=2026-11-01 >/dev/null
ctl ee put case ee:c2 --audience ee,lv pseudonym=second status=referred >/dev/null
ctl ee put service ee:s1 name="A region service" kind=medical >/dev/null
wait_until 15 "fi got c1 via lv" has_field fi case ee:c1 pseudonym "$CANARY"
wait_until 15 "se got s1" has_field se service ee:s1 name "A region service"
wait_until 15 "lv got c2" has_field lv case ee:c2 pseudonym second
wait_until 15 "lv got s1" has_field lv service ee:s1 name "A region service"
# se got s1, written after the cases: ee's stream to se, in log order,
# has passed them (and sent se neither)

# the disclosure log says exactly who received each record from ee
peers_of() {
	ctl ee audit --record "$1" --json |
	    python3 -c 'import json,sys; print(",".join(sorted({json.loads(l)["peer"] for l in sys.stdin if l.strip()})))'
}
[ "$(peers_of case/ee:c1)" = "lv" ] || fail "ee disclosed c1 to: $(peers_of case/ee:c1)"
[ "$(peers_of case/ee:c2)" = "lv" ] || fail "ee disclosed c2 to: $(peers_of case/ee:c2)"
[ "$(peers_of service/ee:s1)" = "lv,se" ] || fail "ee disclosed s1 to: $(peers_of service/ee:s1)"
q lv disclosures case ee:c1 --json | grep -q '"peer":"fi"' || fail "lv's log lacks its relay to fi"
ctl ee audit --peer se --json | grep -q '"id":"ee:c' && fail "audit says se got a case"
ok "audit: exactly who received each record, relays included"

# fi is cut off (lv, its only peer, is down) and accepts the case while
# isolated: a change that will arrive stale.  Then fi stops too.
nbx_stop lv
ctl fi put case ee:c1 status=accepted >/dev/null || fail "fi could not accept"
nbx_stop fi
ctl ee erase case ee:c1 >/dev/null
# fi named itself a holder of c1 (a receipt that came back through lv), so
# ee lists it pending too, though ee never sent it anything
ctl ee erasures --json | grep -q '"pending":\["fi","lv"\]' ||
    fail "fi and lv should be pending: $(ctl ee erasures --json)"
nbx_start lv
wait_until 10 "lv purged c1" sh -c "! '$BIN/nbxq' -c '$T/lv/nbx.conf' get case ee:c1 >/dev/null 2>&1"
wait_until 10 "fi still pending once lv confirmed" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' erasures --json | grep -q '\"pending\":\[\"fi\"\]'"
ok "erasure propagated; the relay's offline peer fi is listed as pending on ee from the start"

# erased ids can never be written again, locally or remotely
ctl ee put case ee:c1 pseudonym=again >/dev/null 2>&1 && fail "erased id written again"
ctl lv put case ee:c1 status=closed >/dev/null 2>&1 && fail "erased id written on lv"

nbx_start fi
wait_until 20 "fi purged c1 after returning" sh -c "! '$BIN/nbxq' -c '$T/fi/nbx.conf' get case ee:c1 >/dev/null 2>&1"
wait_until 20 "fi's receipt reached ee through lv" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' erasures --json | grep -q '\"pending\":\[\]'"
ctl ee erasures --json >"$T/er2"
for n in ee lv fi; do
	grep -q "\"node\":\"$n\"" "$T/er2" || fail "no receipt from $n: $(cat "$T/er2")"
done
ctl ee erasures | grep -q "ee:c1" || fail "erasures table"
ctl lv quarantine --json | grep '"peer":"fi"' | grep -q '"reason":"record is erased"' ||
    fail "fi's stale update was not refused: $(ctl lv quarantine --json)"
ok "receipts from ee, lv and fi (relayed), none pending; fi's stale update refused"

# the record stays erased everywhere
for n in ee lv fi se; do
	q $n get case ee:c1 --include-deleted >/dev/null 2>&1 && fail "c1 visible on $n"
done
ok "erased on every node; c2 untouched: $(field lv case ee:c2 pseudonym)"

# compaction: the canary leaves every file
for n in ee lv fi se; do ctl $n compact >/dev/null || fail "compact $n"; done
for n in ee lv fi se; do
	grep -r -a -l "$CANARY" "$T/$n/data" && fail "canary still on disk at $n"
done
[ -e "$T/ee/data/compact.tmp" ] && fail "compaction left its temporary copy"
has_field lv case ee:c2 pseudonym second || fail "compaction lost data"
ctl ee put service ee:s2 name="After compaction" kind=legal_aid >/dev/null
wait_until 10 "sync continues after compaction" has_field se service ee:s2 name "After compaction"
ok "after compact the canary is in no file under any data directory; sync goes on"

# revocation: ee drops lv from c2; lv purges and returns a revoke receipt
ctl ee put case ee:c2 --audience ee >/dev/null
wait_until 10 "lv purged c2" sh -c "! '$BIN/nbxq' -c '$T/lv/nbx.conf' get case ee:c2 --json | grep -q second"
wait_until 10 "ee has lv's revoke receipt" sh -c \
    "'$BIN/nbxq' -c '$T/ee/nbx.conf' get case ee:c2 --meta --json | grep -q '\"what\":\"revoke\",\"node\":\"lv\",\"state\":\"done\"'"
ctl ee put case ee:c2 pseudonym=third >/dev/null
# a marker written after it: ee streams its log to lv in order, so once
# the marker is on lv, the change to c2 has been sent or filtered out
ctl ee put service ee:m-revoke name="After the revocation" kind=shelter >/dev/null
wait_until 15 "the marker written after c2's change reaches lv" \
    has_field lv service ee:m-revoke name "After the revocation"
q lv get case ee:c2 --json | grep -q third && fail "lv still receives c2"
ok "revocation: lv purged, confirmed, and receives no more"
