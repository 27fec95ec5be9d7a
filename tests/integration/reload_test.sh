#!/bin/sh
# Run-time changes without restart: a peer added with `nbxctl peer add` is
# stored and dialled at once and survives a restart; SIGHUP reloads the
# config's peers; a CRL installed by reload drops a revoked peer's live
# session and refuses it from then on; a configured CRL that goes missing
# makes the reload fail closed while the node keeps running.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_start ee
nbx_start lv

# runtime peering, with the SPKI pin printed by `ca issue`
ctl ee peer add lv 127.0.0.1:$(port_of lv) --pin "$(cat "$T/lv/pin")" >/dev/null
ctl lv peer add ee 127.0.0.1:$(port_of ee) >/dev/null
wait_until 10 "runtime peers connect" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' peer list --json | grep -q '\"state\":\"up\"'"
ctl ee peer list | grep -q "SPKI pin" || fail "peer list shows the pin check"
ctl ee put service ee:s1 name=One kind=shelter >/dev/null
wait_until 10 "synced over runtime peering" has_field lv service ee:s1 name One
ok "peer add: stored, dialled at once, pinned"

# a wrong pin is refused
ctl fi peer add ee 127.0.0.1:$(port_of ee) >/dev/null 2>&1 || true
nbx_start fi
ctl fi peer add ee 127.0.0.1:$(port_of ee) >/dev/null
ctl ee peer add fi 127.0.0.1:$(port_of fi) --pin "$(cat "$T/lv/pin")" >/dev/null
wait_until 10 "pin mismatch refused" grep -q "SPKI pin mismatch\|does not match the pinned SPKI" "$T/ee/nbxd.log"
ok "wrong pin refused"
ctl ee peer remove fi >/dev/null
ctl ee peer list --json | grep -q '"id":"fi"' && fail "fi still listed"
ok "peer remove"

# runtime peers survive a restart
nbx_stop ee
nbx_start ee
wait_until 10 "lv reconnects after restart" sh -c \
    "'$BIN/nbxctl' -c '$T/ee/nbx.conf' peer list --json | grep -q '\"id\":\"lv\".*\"state\":\"up\"'"
ok "runtime peers persisted"

# SIGHUP picks up a peer written into the config file
nbx_peer ee fi
kill -HUP "$(cat "$T/ee/pid")"
wait_until 10 "ee reloaded" grep -q "reloaded" "$T/ee/nbxd.log"
ctl ee peer list --json | grep -q '"id":"fi"' || fail "config peer not loaded by SIGHUP"
ok "SIGHUP reloads peers"

# revoke lv, install the CRL, reload: lv's live session ends and stays out
"$BIN/nbxctl" ca revoke --dir "$T/ca" --cert "$T/lv/tls/node.crt" >/dev/null
"$BIN/nbxctl" ca crl --dir "$T/ca" --out "$T/ee/crl.pem" >/dev/null
sed -i 's|^\[tls\]|[tls]\ncrl = crl.pem|' "$T/ee/nbx.conf"
ctl ee reload >/dev/null || fail "reload with CRL"
wait_until 10 "revoked lv dropped" grep -q "peer no longer passes verification" "$T/ee/nbxd.log"
wait_until 10 "revoked lv refused on reconnect" grep -q "certificate revoked" "$T/ee/nbxd.log"
# s2 is written after lv's session ended; once a dial between them has
# been refused after the write, s2 could only have reached lv through a
# session the CRL let through
refused() { grep -c "certificate revoked" "$T/ee/nbxd.log" || true; }
n0=$(refused)
ctl ee put service ee:s2 name=Two kind=shelter >/dev/null
wait_until 30 "a dial between ee and the revoked lv refused after the write" \
    sh -c "[ \$(grep -c 'certificate revoked' '$T/ee/nbxd.log') -gt $n0 ]"
# ee, which holds the data, verifies lv in either role and never lets a
# session up (lv, a TLS 1.3 client, may count itself connected for the
# moment before ee's refusal reaches it)
is_up ee lv 2>/dev/null && fail "ee has a session with lv after its revocation"
has_field lv service ee:s2 name Two && fail "revoked lv still receives data"
ok "CRL reload drops and refuses a revoked peer"

# fail closed: a configured CRL that is missing makes the reload fail
rm "$T/ee/crl.pem"
ctl ee reload >/dev/null 2>&1 && fail "reload succeeded without its CRL"
ctl ee status >/dev/null || fail "node died on a failed reload"
ok "missing CRL: reload refused, node keeps running with the old settings"
