#!/bin/sh
# Erasure receipts come back through a relay.  A line
# ee - lv - lt, all online; a case whose audience is all three reaches lt
# through lv, and lt never writes to it, so lt never discloses anything of
# it to lv.  Erased on ee, lt purges and its receipt goes back to lv
# (named in the receipts lt got with the erasure) and on to ee: ee and lv
# list every node as confirmed and none pending.  Then the same with lt
# offline when ee erases.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_nodes ee lv lt
nbx_peer ee lv
nbx_peer lv ee; nbx_peer lv lt
nbx_peer lt lv
for n in ee lv lt; do nbx_start $n; done

CANARY="RELAYERASE-$$-c1"
ctl ee put case ee:c1 --audience ee,lv,lt pseudonym="$CANARY" >/dev/null
wait_until 20 "lt got c1 through lv" has_field lt case ee:c1 pseudonym "$CANARY"
q lv disclosures case ee:c1 --json | grep -q '"peer":"lt"' ||
    fail "lv's log lacks its relay to lt"
# lt sends lv back only its receipt naming it a holder (with the record):
# never to ee, which is not its peer
wait_until 20 "lt's holder receipt reached ee through lv" sh -c \
    "'$BIN/nbxq' -c '$T/ee/nbx.conf' get case ee:c1 --meta --json | grep -q '\"what\":\"erase\",\"node\":\"lt\",\"state\":\"pending\"'"
ctl lt audit --record case/ee:c1 --json | grep '"peer"' | grep -qv '"peer":"lv"' &&
    fail "lt disclosed c1 to a node other than lv"

ctl ee erase case ee:c1 >/dev/null
wait_until 20 "lt purged c1" sh -c \
    "! '$BIN/nbxq' -c '$T/lt/nbx.conf' get case ee:c1 >/dev/null 2>&1"
wait_until 20 "lt's receipt reached lv" sh -c \
    "'$BIN/nbxctl' -c '$T/lv/nbx.conf' erasures --json | grep -q '\"node\":\"lt\"'"
wait_until 20 "lt's receipt reached ee through lv" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' erasures --json | grep -q '\"node\":\"lt\"'"
for n in ee lv; do
	[ "$(confirmed_on $n case/ee:c1)" = "ee,lt,lv" ] ||
	    fail "$n: confirmed $(confirmed_on $n case/ee:c1)"
	[ "$(pending_on $n case/ee:c1)" = "" ] ||
	    fail "$n: still pending $(pending_on $n case/ee:c1)"
done
ok "line: lt's receipt came back to ee through lv; none pending on ee or lv"

# restarted, every node still agrees: nothing pending
for n in ee lv lt; do nbx_stop $n; done
for n in ee lv lt; do nbx_start $n; done
[ "$(pending_on ee case/ee:c1)" = "" ] || fail "pending after restart"
for n in ee lv lt; do
	grep -r -a -l "$CANARY" "$T/$n/data" >/dev/null 2>&1 && {
		ctl $n compact >/dev/null || fail "compact $n"
	}
done
for n in ee lv lt; do
	grep -r -a -l "$CANARY" "$T/$n/data" && fail "canary on disk at $n"
done
ok "after restarts nothing pending; after compact the canary is nowhere"

# lt is offline when ee erases: ee learns from lv that lt is pending,
# and lt's receipt comes back through lv once lt returns
ctl ee put case ee:c2 --audience ee,lv,lt pseudonym=second >/dev/null
wait_until 20 "lt got c2" has_field lt case ee:c2 pseudonym second
nbx_stop lt
ctl ee erase case ee:c2 >/dev/null
wait_until 20 "ee learns from lv that lt is pending" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' erasures --json | grep 'ee:c2' | grep -q '\"pending\":\[\"lt\"\]'"
nbx_start lt
wait_until 20 "lt purged c2" sh -c \
    "! '$BIN/nbxq' -c '$T/lt/nbx.conf' get case ee:c2 >/dev/null 2>&1"
wait_until 20 "ee has every receipt of c2" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' erasures --json | grep 'ee:c2' | grep -q '\"pending\":\[\]'"
[ "$(confirmed_on ee case/ee:c2)" = "ee,lt,lv" ] ||
    fail "ee: confirmed $(confirmed_on ee case/ee:c2)"
ok "lt offline at the erasure: pending on ee, then confirmed through lv"
