#!/bin/sh
# Storage limitation: `case` has retain_days = 730 in the regional schema.
# Cases written now are erased by their creating node once the nodes run
# 800 days later (the clock is moved with libfaketime, a real LD_PRELOAD time
# shift of the whole process), everywhere they were sent, with receipts;
# records of collections without retention stay.
. "$(dirname "$0")/lib.sh"

FAKELIB=$(nbx_fakelib) || fail "libfaketime is not installed (tools/install-deps.sh installs faketime)"
nbx_ca
nbx_node ee 1; nbx_node lv 2
nbx_peer ee lv; nbx_peer lv ee
nbx_start ee; nbx_start lv
ctl ee put case ee:old --audience ee,lv pseudonym=OLD-CASE status=referred >/dev/null
ctl ee put service ee:svc name="Stays" kind=shelter >/dev/null
ctl lv put case lv:mine --audience lv,ee pseudonym=LV-CASE >/dev/null
wait_until 10 "lv has ee's case" has_field lv case ee:old pseudonym OLD-CASE
wait_until 10 "ee has lv's case" has_field ee case lv:mine pseudonym LV-CASE
wait_until 10 "lv has ee's service" has_field lv service ee:svc name Stays
wait_until 10 "ee's changes acknowledged by lv" all_acked ee
wait_until 10 "lv's changes acknowledged by ee" all_acked lv
nbx_stop ee; nbx_stop lv

# 800 days later (both nodes, so their clocks agree); libuv's timers keep
# the real monotonic clock
FAKETIME_DONT_FAKE_MONOTONIC=1
# (an ASan build deadlocks under libfaketime unless its allocator leaves
# the clock alone: allocator_release_to_os_interval_ms=-1)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:allocator_release_to_os_interval_ms=-1"
export FAKETIME_DONT_FAKE_MONOTONIC ASAN_OPTIONS
real_bin=$BIN
mkdir -p "$T/fakebin"
# preloaded, not through the faketime program, so that the pid nbx_start
# records is nbxd's own (see nbx_fakelib)
printf '#!/bin/sh\nLD_PRELOAD=%s FAKETIME=+800d exec "%s/nbxd" "$@"\n' \
    "$FAKELIB" "$real_bin" >"$T/fakebin/nbxd"
chmod +x "$T/fakebin/nbxd"
BIN_SAVE=$BIN; BIN=$T/fakebin
cp "$BIN_SAVE/nbxctl" "$BIN_SAVE/nbxq" "$T/fakebin/" 2>/dev/null || true
nbx_start ee; nbx_start lv
BIN=$BIN_SAVE

wait_until 20 "ee's retention erased its old case" grep -q "retention: erased 1 case" "$T/ee/nbxd.log"
wait_until 20 "lv's retention erased its own old case" grep -q "retention: erased 1 case" "$T/lv/nbxd.log"
wait_until 20 "the erasure reached lv" sh -c "! '$BIN/nbxq' -c '$T/lv/nbx.conf' get case ee:old >/dev/null 2>&1"
wait_until 20 "lv's case erased on ee too" sh -c "! '$BIN/nbxq' -c '$T/ee/nbx.conf' get case lv:mine >/dev/null 2>&1"
wait_until 20 "receipts complete" sh -c "'$BIN/nbxctl' -c '$T/ee/nbx.conf' erasures --json | grep 'ee:old' | grep -q '\"pending\":\[\]'"
has_field lv service ee:svc name Stays || fail "a service (no retain_days) was erased"
ok "cases past retain_days erased on every node by their creators, with receipts; services kept"
