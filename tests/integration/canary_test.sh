#!/bin/sh
# The worst bug this project can have is a byte reaching a node policy does
# not permit.  Three nodes: ee writes a case with a canary in a local field
# and another in an audience field whose audience is {ee, lv}.  After sync,
# neither canary is anywhere under fi's data directory, and the local one is
# nowhere under lv's — not in the records, the log, the audit or the
# quarantine.  lv does see the permitted fields.
. "$(dirname "$0")/lib.sh"

nbx_ca
for n in ee lv fi; do :; done
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_peer ee lv; nbx_peer ee fi
nbx_peer lv ee; nbx_peer lv fi
nbx_peer fi ee; nbx_peer fi lv
nbx_start ee; nbx_start lv; nbx_start fi

LOCAL_CANARY="LOCALCANARY-$$-7f3a9c"
AUD_CANARY="AUDCANARY-$$-51be02"
ctl ee put case ee:c1 --audience ee,lv pseudonym="$AUD_CANARY" \
    legal_name="$LOCAL_CANARY" case_notes="$LOCAL_CANARY notes" \
    status=referred referral_date=2026-11-20 needs_shelter=yes >/dev/null
ctl ee put service ee:s1 name="Region service" kind=shelter \
    notes="$LOCAL_CANARY" >/dev/null

wait_until 15 "lv got the case" has_field lv case ee:c1 pseudonym "$AUD_CANARY"
wait_until 15 "fi got the service" has_field fi service ee:s1 name "Region service"
has_field lv case ee:c1 status referred || fail "lv sees status"
# fi is connected to both and has caught up with both
wait_until 10 "fi caught up with lv" sh -c \
    "'$BIN/nbxctl' -c '$T/lv/nbx.conf' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(p[\"lag\"]==0 for p in d[\"peers\"]) else 1)'"
# fi got s1, written on ee after c1, from ee itself, and has acknowledged
# all of lv's log: both streams that could carry c1 to fi have passed it
q fi get case ee:c1 >/dev/null 2>&1 && fail "fi can read the case"
[ "$(field lv case ee:c1 legal_name)" = "" ] || fail "lv sees a local field"

for n in fi lv; do
	grep -r -a -l "$LOCAL_CANARY" "$T/$n/data" && fail "local canary under $n/data"
done
grep -r -a -l "$AUD_CANARY" "$T/fi/data" && fail "audience canary under fi/data"
grep -r -a -q "$AUD_CANARY" "$T/lv/data" || fail "test is blind: lv should hold the audience canary"
grep -r -a -q "$LOCAL_CANARY" "$T/ee/data" || fail "test is blind: ee should hold the local canary"
ok "no canary where policy forbids it (grep over every file of the data dirs)"

# lv, which may write status (writers = audience), accepts the case
ctl lv put case ee:c1 status=accepted >/dev/null
wait_until 10 "ee sees lv's status" has_field ee case ee:c1 status accepted
# but lv may not change the pseudonym (writers = origin)
ctl lv put case ee:c1 pseudonym=other >/dev/null 2>&1 && fail "lv changed an origin-only field"
ok "writers rules hold across nodes"

# narrowing: ee drops lv; lv purges the scoped values
ctl ee put case ee:c1 --audience ee >/dev/null
wait_until 10 "lv purged the case" sh -c "! '$BIN/nbxq' -c '$T/lv/nbx.conf' get case ee:c1 --json | grep -q '$AUD_CANARY'"
ok "removed node purged the audience fields"
