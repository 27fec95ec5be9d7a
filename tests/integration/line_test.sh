#!/bin/sh
# Line topology ee - lv - fi (ee and fi do not peer): region fields reach fi
# through lv; an audience field reaches fi only when fi is in the audience,
# and relaying never widens an audience.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_peer ee lv
nbx_peer lv ee; nbx_peer lv fi
nbx_peer fi lv
nbx_start ee; nbx_start lv; nbx_start fi

ctl ee put organisation ee:o1 name="Living for Tomorrow" country=ee \
    kind=ngo troika_member=true languages=et,en >/dev/null
wait_until 15 "region record relayed to fi" has_field fi organisation ee:o1 name "Living for Tomorrow"
ok "region fields relayed ee -> lv -> fi"

ctl ee put case ee:a --audience ee,lv pseudonym=ONLY-EE-LV status=referred >/dev/null
ctl ee put case ee:b --audience ee,lv,fi pseudonym=ALL-THREE status=referred >/dev/null
wait_until 15 "fi got case b through lv" has_field fi case ee:b pseudonym ALL-THREE
has_field lv case ee:a pseudonym ONLY-EE-LV || fail "lv has case a"
# b was written after a: lv applied a first and streams its log to fi in
# order, so fi having b means a was filtered out of that stream
q fi get case ee:a >/dev/null 2>&1 && fail "case a reached fi"
grep -r -a -q ONLY-EE-LV "$T/fi/data" && fail "case a bytes under fi/data"
ok "audience fields relayed only to nodes in the audience"

# fi (in b's audience, writers = audience) answers; it flows back through lv
ctl fi put case ee:b status=accepted receiving_organisation="Fi shelter" >/dev/null
wait_until 15 "ee sees fi's answer" has_field ee case ee:b status accepted
ok "audience writer's change travels back through the relay"
