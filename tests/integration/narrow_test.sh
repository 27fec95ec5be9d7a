#!/bin/sh
# verify agrees again after an audience is narrowed.  A mesh
# ee, lv, fi; fi answers ee's case (writers = audience), then ee narrows
# the audience to ee, lv.  The merged state itself diverged: ee re-stamped
# fi's answer with the new audience, and lv refused that copy (fi is not
# in the audience it came under) and kept the old one.  Now fi's answer
# keeps the audience it was written under on every node, so ee and lv
# hold the same register and their digests agree; fi purges.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_mesh ee lv fi
answered_case ee lv fi c1
wait_until 20 "ee and lv agree before the narrowing" digests_agree ee lv

ctl ee put case ee:c1 --audience ee,lv >/dev/null
# a write after the narrowing, in ee's log after it: once lv has it,
# lv has taken (or refused) everything ee sent of the narrowing
ctl ee put case ee:c1 pseudonym=P2 >/dev/null
wait_until 20 "lv got the write after the narrowing" has_field lv case ee:c1 pseudonym P2
wait_until 20 "fi purged c1" sh -c \
    "! '$BIN/nbxq' -c '$T/fi/nbx.conf' get case ee:c1 --json | grep -q accepted"
ctl lv quarantine --json | grep -q '"id":"ee:c1"' &&
    fail "lv refused part of c1: $(ctl lv quarantine --json)"
has_field lv case ee:c1 status accepted || fail "lv lost fi's answer"
has_field ee case ee:c1 status accepted || fail "ee lost fi's answer"
digests_agree ee lv ||
    fail "digests differ: ee $(q ee get case ee:c1 --meta --json) lv $(q lv get case ee:c1 --meta --json)"
ok "narrowed to ee,lv: nothing refused, fi's answer kept, verify agrees"

for n in ee lv fi; do nbx_stop $n; done
for n in ee lv fi; do nbx_start $n; done
wait_until 20 "ee and lv are up" is_up ee lv
digests_agree ee lv || fail "digests differ after restarts"
ok "still agree after restarts"
