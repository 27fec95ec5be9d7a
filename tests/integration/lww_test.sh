#!/bin/sh
# Last writer wins across nodes for fields several nodes may write
# (writers = audience): ee writes a value, lv overwrites it while ee is
# away, then ee writes its original value again, later.  ee's local value
# already equals what it writes, but lv's concurrent write exists: ee's
# write must still get a new version and win on both nodes.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1; nbx_node lv 2
nbx_peer ee lv; nbx_peer lv ee
nbx_start ee; nbx_start lv
ctl ee put case ee:c --audience ee,lv pseudonym=P status=accepted >/dev/null
wait_until 10 "lv has the case" has_field lv case ee:c status accepted
nbx_stop ee
ctl lv put case ee:c status=declined >/dev/null
nbx_stop lv
nbx_start ee
sleep 0.05
out=$(ctl ee put case ee:c status=accepted --json)
echo "$out" | grep -q '"applied":1' || fail "the later write was taken as a no-op: $out"
nbx_start lv
wait_until 10 "lv has ee's later write" has_field lv case ee:c status accepted
# a marker written on lv now follows lv's earlier write in lv's log: once
# it is on ee, ee has merged that write too
ctl lv put service lv:marker name=Marker kind=shelter >/dev/null
wait_until 10 "lv's marker reaches ee" has_field ee service lv:marker name Marker
has_field ee case ee:c status accepted || fail "ee lost its later write: $(field ee case ee:c status)"
ok "the later write wins on both nodes although it repeats the earlier value"

# fields only the creator writes stay idempotent
out=$(ctl ee put case ee:c pseudonym=P --json)
echo "$out" | grep -q '"applied":0' || fail "an origin-only repeat was applied: $out"
ok "repeating an origin-only value changes nothing"
