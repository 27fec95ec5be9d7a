#!/bin/sh
# A rebuilt node gets its own records back.  A mesh ee, lv,
# fi; ee's case, with an answer fi wrote into it (writers = audience).  ee
# is stopped, its data directory removed, and started again: it takes the
# case back whole from its peers (its own fields and fi's), quarantines
# nothing, and its later writes reach both peers.  (That a forged version
# of ee's own is still refused: unit store_test.)
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_mesh ee lv fi
answered_case ee lv fi c1
ctl ee put service ee:s1 name="A shelter" kind=shelter >/dev/null
wait_until 20 "lv got s1" has_field lv service ee:s1 name "A shelter"
wait_until 20 "fi got s1" has_field fi service ee:s1 name "A shelter"
ok "ee's case and service everywhere, fi's answer on ee and lv"

nbx_stop ee
rm -rf "$T/ee/data"
nbx_start ee
wait_until 30 "rebuilt ee has its pseudonym back" has_field ee case ee:c1 pseudonym P
wait_until 30 "rebuilt ee has fi's answer back" has_field ee case ee:c1 status accepted
wait_until 30 "rebuilt ee has its service back" has_field ee service ee:s1 name "A shelter"
q ee get case ee:c1 --meta --json | grep -q '"fi"' ||
    fail "rebuilt ee lost c1's audience: $(q ee get case ee:c1 --meta --json)"
[ "$(ctl ee quarantine --json | grep -c '"id"')" = 0 ] ||
    fail "rebuilt ee quarantined: $(ctl ee quarantine --json)"
ok "rebuilt ee got its own case back whole (fi's answer too), nothing quarantined"

# a later write of the rebuilt ee reaches both peers, and both agree
ctl ee put case ee:c1 pseudonym=P2 >/dev/null
for n in lv fi; do
	wait_until 20 "$n got ee's write after the rebuild" has_field $n case ee:c1 pseudonym P2
	wait_until 20 "ee and $n agree" digests_agree ee $n
done
ok "rebuilt ee's later write reached lv and fi; verify digests agree"
