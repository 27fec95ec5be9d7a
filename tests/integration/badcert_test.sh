#!/bin/sh
# Transport security: every bad client is refused at the handshake, the
# refusal is logged with its reason, nothing is written, and the node keeps
# serving its good peers.  Rogue clients are `openssl s_client` (a real
# TLS stack that is not ours) and real nbxd nodes with bad certificates.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_peer ee lv
nbx_peer lv ee
nbx_start ee
EE=127.0.0.1:$(port_of ee)
LOG=$T/ee/nbxd.log

# rogue CLIENT_ARGS...: a TLS client that sends garbage after connecting
rogue() {
	printf 'not a frame at all, just bytes\n' |
	    timeout 5 openssl s_client -connect "$EE" -quiet -no_ign_eof \
	    -CAfile "$T/ca/ca.crt" "$@" >/dev/null 2>&1 || true
}

expect_log() {
	wait_until 5 "ee logs: $1" grep -q -- "$1" "$LOG"
}

rogue -tls1_3
expect_log "peer did not return a certificate"
ok "client without a certificate refused"

"$BIN/nbxctl" ca init --dir "$T/otherca" >/dev/null
"$BIN/nbxctl" ca issue --dir "$T/otherca" --node lv --out "$T/other" >/dev/null
rogue -cert "$T/other/node.crt" -key "$T/other/node.key"
expect_log "certificate verify failed"
ok "certificate from another CA refused"

"$BIN/nbxctl" ca issue --dir "$T/ca" --node lv --out "$T/expired" --days 1 \
    --valid-from-offset -864000 >/dev/null
rogue -cert "$T/expired/node.crt" -key "$T/expired/node.key"
expect_log "certificate has expired"
ok "expired certificate refused"

rogue -tls1_2 -cert "$T/lv/tls/node.crt" -key "$T/lv/tls/node.key"
expect_log "protocol version"
ok "TLS 1.2-only client refused"

"$BIN/nbxctl" ca issue --dir "$T/ca" --node xx --out "$T/xx" >/dev/null
rogue -cert "$T/xx/node.crt" -key "$T/xx/node.key"
expect_log "\[xx\] connection failed: refused: not a peer of this node"
ok "valid certificate of a node that is not a peer refused"

# wrong identity on the dialling side: ee expects lv at fi's address
nbx_node fi 3
nbx_peer fi ee
nbx_start fi
ctl ee peer add lv2 127.0.0.1:$(port_of fi) >/dev/null 2>&1 || true
expect_log "peer identity 'fi' does not match expected 'lv2'"
ok "dialled node with the wrong identity refused"

# a valid peer that sends a malformed frame loses only its connection
rogue -cert "$T/lv/tls/node.crt" -key "$T/lv/tls/node.key"
expect_log "\[lv\] session error"
ok "malformed frame closes that connection only"

# nothing was written by any of them
[ "$(count ee service)" = 0 ] || fail "records appeared"
ctl ee status --json | grep -q '"quarantined":0' || fail "quarantine not empty"

# and the node still serves a good peer
nbx_start lv
ctl lv put service lv:s1 name="After the attacks" kind=medical >/dev/null
wait_until 15 "good peer syncs" has_field ee service lv:s1 name "After the attacks"
ok "node keeps serving good peers"
