#!/bin/sh
# Transport security beyond badcert_test.sh: a self-signed certificate
# that names a configured peer, a certificate that is not yet valid, and a
# CRL past its nextUpdate are all refused at the handshake, with the reason
# in the log and not one application byte exchanged — whether the rogue
# dials the node (openssl s_client) or the node dials the rogue (openssl
# s_server); a stale CRL makes reload and start-up fail closed.
# Certificate rotation with `nbxctl reload` keeps live sessions and serves
# the new certificate to new connections; a broken new certificate makes
# the reload fail, naming the file, and the node keeps the old one.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_node fi 3
nbx_peer ee lv
nbx_peer lv ee
nbx_start ee
EE=127.0.0.1:$(port_of ee)
LOG=$T/ee/nbxd.log

# probe NAME HOST:PORT CERT KEY: a TLS 1.3 client that is not ours
# (openssl s_client) presents CERT, sends a line of garbage once its side of
# the handshake is done, and writes every application byte it receives to
# $T/NAME.out (its diagnostics to $T/NAME.err).
probe() {
	printf 'not a frame, just bytes\n' |
	    timeout 5 openssl s_client -connect "$2" -quiet -tls1_3 \
	    -CAfile "$T/ca/ca.crt" -cert "$3" -key "$4" \
	    >"$T/$1.out" 2>"$T/$1.err" || true
}

# lines PATTERN: how many lines of ee's log match
lines() { grep -c -- "$1" "$LOG" || true; }

expect_log() {
	wait_until 5 "ee logs: $1" grep -q -- "$1" "$LOG"
}

# refused NAME CERT KEY REASON: the handshake is refused with REASON in the
# log; the client got no application data, ee opened no session (no
# 'connected' line, nothing reached a session) and wrote nothing.
refused() {
	c0=$(lines "connected (from")
	s0=$(lines "session error")
	probe "$1" "$EE" "$2" "$3"
	expect_log "connection failed: TLS handshake refused: $4"
	[ ! -s "$T/$1.out" ] || fail "$1: the client received $(wc -c <"$T/$1.out") application bytes"
	[ "$(lines "connected (from")" = "$c0" ] || fail "$1: ee logged a session"
	[ "$(lines "session error")" = "$s0" ] || fail "$1: the client's bytes reached a session"
	[ "$(count ee service)" = 0 ] || fail "$1: records appeared"
}

# the probe can see application data: a valid peer gets ee's HELLO at once
probe control "$EE" "$T/lv/tls/node.crt" "$T/lv/tls/node.key"
[ -s "$T/control.out" ] || fail "control probe with lv's valid certificate received no application data: $(cat "$T/control.err")"
expect_log "\[lv\] connected (from"
expect_log "\[lv\] session error"
ok "control: a valid peer certificate gets application data ($(wc -c <"$T/control.out") bytes)"

# --- a self-signed certificate whose CN names a configured peer ----------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=lv -days 30 -keyout "$T/self.key" -out "$T/self.crt" \
    >/dev/null 2>&1 || fail "openssl cannot make a self-signed certificate"
refused self "$T/self.crt" "$T/self.key" "certificate verify failed: self.signed certificate"
ok "self-signed certificate with CN=lv refused, no application byte"

# --- a certificate of the regional CA that is not valid yet --------------
"$BIN/nbxctl" ca issue --dir "$T/ca" --node lv --out "$T/future" \
    --valid-from-offset 864000 >/dev/null
refused future "$T/future/node.crt" "$T/future/node.key" "certificate verify failed: certificate is not yet valid"
ok "not-yet-valid certificate refused with its reason, no application byte"

# --- a CRL past its nextUpdate fails closed --------------------------------
# gen_crl OUT LAST NEXT: a CRL of the regional CA (revoking nothing) with
# the given lastUpdate and nextUpdate, made with the openssl CLI since
# `nbxctl ca crl` only makes current ones.  LAST and NEXT are date(1)
# expressions ("-1 hour", "+4 seconds").
mkdir -p "$T/oca"
: >"$T/oca/index.txt"
cat >"$T/oca/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $T/oca/index.txt
certificate = $T/ca/ca.crt
private_key = $T/ca/ca.key
default_md = sha256
CNF
gen_crl() {
	openssl ca -config "$T/oca/ca.cnf" -gencrl -out "$1" \
	    -crl_lastupdate "$(date -u -d "$2" +%Y%m%d%H%M%SZ)" \
	    -crl_nextupdate "$(date -u -d "$3" +%Y%m%d%H%M%SZ)" \
	    >"$T/oca/out" 2>&1 || fail "openssl ca -gencrl: $(cat "$T/oca/out")"
}

# a CRL that is current for a few more seconds: accepted, and valid peers
# pass while it is current
gen_crl "$T/ee/crl.pem" "-1 hour" "+6 seconds"
stale_at=$(( $(date +%s) + 6 ))
sed -i 's|^\[tls\]|[tls]\ncrl = crl.pem|' "$T/ee/nbx.conf"
ctl ee reload >/dev/null || fail "reload with a current CRL"
probe crl_ok "$EE" "$T/lv/tls/node.crt" "$T/lv/tls/node.key"
[ -s "$T/crl_ok.out" ] || fail "valid peer refused under a current CRL: $(tail -n 3 "$LOG")"
ok "a current CRL made by openssl is accepted and valid peers pass"

# once nextUpdate has passed, every new handshake fails, even a valid peer's
while [ "$(date +%s)" -le "$stale_at" ]; do sleep 0.2; done
refused stale_crl "$T/lv/tls/node.crt" "$T/lv/tls/node.key" "certificate verify failed: CRL has expired"
ok "stale CRL: a valid peer's new handshake is refused, no application byte"

# reloading the stale CRL fails closed, naming the file; the node runs on
set +e
ctl ee reload >"$T/reload.out" 2>&1
rc=$?
set -e
[ $rc = 1 ] || fail "reload with a stale CRL: exit $rc, want 1 ($(cat "$T/reload.out"))"
grep -q "crl.pem: stale" "$T/reload.out" || fail "reload message does not name the stale CRL: $(cat "$T/reload.out")"
ctl ee status >/dev/null || fail "ee died on a failed reload"
refused stale_crl2 "$T/lv/tls/node.crt" "$T/lv/tls/node.key" "certificate verify failed: CRL has expired"
ok "reload with the stale CRL fails closed ($(sed 's/.*: crl /crl /' "$T/reload.out"))"

# a CRL whose lastUpdate is in the future is refused too
gen_crl "$T/ee/crl.pem" "+1 day" "+8 days"
set +e
ctl ee reload >"$T/reload.out" 2>&1
rc=$?
set -e
[ $rc = 1 ] && grep -q "crl.pem: lastUpdate is in the future" "$T/reload.out" ||
    fail "reload with a CRL from the future: exit $rc: $(cat "$T/reload.out")"
ok "CRL with lastUpdate in the future refused on reload"

# nbxd does not start with a stale CRL
nbx_node ru 9
gen_crl "$T/ru/crl.pem" "-2 days" "-1 day"
sed -i 's|^\[tls\]|[tls]\ncrl = crl.pem|' "$T/ru/nbx.conf"
set +e
timeout 10 "$BIN/nbxd" -c "$T/ru/nbx.conf" >"$T/ru/nbxd.log" 2>&1
rc=$?
set -e
[ $rc != 0 ] && [ $rc != 124 ] || fail "nbxd started with a stale CRL (exit $rc)"
grep -q "crl.pem: stale" "$T/ru/nbxd.log" || fail "start-up error does not name the stale CRL: $(cat "$T/ru/nbxd.log")"
ok "nbxd refuses to start with a stale CRL (exit $rc)"

# a fresh CRL from `nbxctl ca crl` lets valid peers in again
"$BIN/nbxctl" ca crl --dir "$T/ca" --out "$T/ee/crl.pem" >/dev/null
ctl ee reload >/dev/null || fail "reload with a fresh CRL"
probe crl_fresh "$EE" "$T/lv/tls/node.crt" "$T/lv/tls/node.key"
[ -s "$T/crl_fresh.out" ] || fail "valid peer refused after a fresh CRL: $(tail -n 3 "$LOG")"
ok "a fresh CRL lets valid peers in again"

# --- the other direction: ee dials a server that is not lv ----------------
# rogue_server NAME CERT KEY: openssl s_server on lv's port (lv is not
# running yet) with CERT, for one connection from ee; everything ee sends
# after the handshake lands in $T/NAME.srv
rogue_server() {
	sleep 8 | timeout 6 openssl s_server -accept "127.0.0.1:$(port_of lv)" \
	    -tls1_3 -quiet -naccept 1 -cert "$2" -key "$3" \
	    >"$T/$1.srv" 2>"$T/$1.srv.err" &
	echo "s_server-$1 $!" >>"$PIDS_FILE"
	echo $! >"$T/$1.srv.pid"
}
server_done() { ! kill -0 "$(cat "$T/$1.srv.pid")" 2>/dev/null; }

# control: with lv's own certificate the rogue gets ee's HELLO
rogue_server srvok "$T/lv/tls/node.crt" "$T/lv/tls/node.key"
wait_until 10 "ee dials the rogue holding lv's certificate" grep -q "\[lv\] connected (to" "$LOG"
wait_until 10 "the rogue server gets its connection" test -s "$T/srvok.srv"
ok "control: a server with lv's valid certificate receives application data from ee ($(wc -c <"$T/srvok.srv") bytes)"
wait_until 10 "the first rogue server ends" server_done srvok

# server_refused NAME CERT KEY REASON: ee refuses the server, sending it
# not one application byte
server_refused() {
	pat="\[lv\] connection failed: TLS handshake refused: $4"
	n0=$(lines "$pat")
	c0=$(lines "\[lv\] connected (to")
	rogue_server "$1" "$2" "$3"
	refused_again() { [ "$(lines "$pat")" -gt "$n0" ]; }
	wait_until 10 "ee refuses the server: $4" refused_again
	wait_until 10 "the rogue server ends" server_done "$1"
	[ ! -s "$T/$1.srv" ] || fail "$1: ee sent $(wc -c <"$T/$1.srv") application bytes to a server it refused"
	[ "$(lines "\[lv\] connected (to")" = "$c0" ] || fail "$1: ee logged a session with the rogue"
}
server_refused srvself "$T/self.crt" "$T/self.key" "certificate verify failed: self.signed certificate"
ok "ee refuses a self-signed server certificate with CN=lv, sends it no application byte"
server_refused srvfuture "$T/future/node.crt" "$T/future/node.key" "certificate verify failed: certificate is not yet valid"
ok "ee refuses a not-yet-valid server certificate of lv, sends it no application byte"

# --- certificate rotation without restart ---------------------------------
LV=127.0.0.1:$(port_of lv)
# peer_up NODE PEER: NODE has an established session with PEER
peer_up() {
	ctl "$1" peer list --json | grep -q "^{\"id\":\"$2\",.*\"state\":\"up\""
}
# served_serial HOST:PORT: the serial of the certificate a node serves to a
# new connection (the client, with a valid certificate of a node that is
# not its peer, is refused after the handshake; it only looks)
"$BIN/nbxctl" ca issue --dir "$T/ca" --node xx --out "$T/xx" >/dev/null
served_serial() {
	timeout 5 openssl s_client -connect "$1" -tls1_3 -showcerts \
	    -CAfile "$T/ca/ca.crt" -cert "$T/xx/node.crt" -key "$T/xx/node.key" \
	    </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null
}
serial_of() { openssl x509 -in "$1" -noout -serial; }
lvlog=$T/lv/nbxd.log

nbx_start lv
wait_until 10 "ee-lv session" peer_up ee lv
ctl ee put service ee:r1 name=Before kind=shelter >/dev/null
wait_until 10 "ee:r1 reaches lv" has_field lv service ee:r1 name Before
old_serial=$(serial_of "$T/lv/tls/node.crt")
[ "$(served_serial "$LV")" = "$old_serial" ] || fail "lv does not serve its certificate"
old_pin=$(cat "$T/lv/pin")

"$BIN/nbxctl" ca issue --dir "$T/ca" --node lv --out "$T/lv/tls2" >"$T/lv/issue2.out"
new_pin=$(sed -n 's/^spki pin: //p' "$T/lv/issue2.out")
new_serial=$(serial_of "$T/lv/tls2/node.crt")
[ "$new_serial" != "$old_serial" ] && [ "$new_pin" != "$old_pin" ] || fail "ca issue reused a serial or key"
conn_ee=$(lines "\[lv\] connected")
disc_ee=$(lines "\[lv\] disconnected")
disc_lv=$(grep -c "\[ee\] disconnected" "$lvlog" || true)
sed -i 's|^cert = .*|cert = tls2/node.crt|; s|^key = .*|key = tls2/node.key|' "$T/lv/nbx.conf"
ctl lv reload >/dev/null || fail "reload with the rotated certificate"
[ "$(served_serial "$LV")" = "$new_serial" ] || fail "lv still serves the old certificate to new connections"
ok "rotation: new connections get the new certificate ($old_serial -> $new_serial)"

ctl lv put service lv:r2 name=AfterLv kind=medical >/dev/null
ctl ee put service ee:r3 name=AfterEe kind=legal_aid >/dev/null
wait_until 10 "lv:r2 reaches ee" has_field ee service lv:r2 name AfterLv
wait_until 10 "ee:r3 reaches lv" has_field lv service ee:r3 name AfterEe
[ "$(lines "\[lv\] disconnected")" = "$disc_ee" ] || fail "ee's session with lv ended on lv's rotation"
[ "$(grep -c "\[ee\] disconnected" "$lvlog" || true)" = "$disc_lv" ] || fail "lv's session with ee ended on rotation"
[ "$(lines "\[lv\] connected")" = "$conn_ee" ] || fail "lv reconnected to ee on rotation"
ok "rotation: the live ee-lv session continued and syncs both ways"

# a new peer pinned to the old key is refused; pinned to the new one it syncs
ctl lv peer add fi 127.0.0.1:$(port_of fi) >/dev/null
nbx_start fi
ctl fi peer add lv "$LV" --pin "$old_pin" >/dev/null
wait_until 10 "fi refuses lv's rotated key under the old pin" grep -q "SPKI pin mismatch" "$T/fi/nbxd.log"
peer_up fi lv && fail "fi accepted lv under the old pin"
ctl fi peer add lv "$LV" --pin "$new_pin" >/dev/null
wait_until 10 "fi connects with the new pin" peer_up fi lv
wait_until 10 "ee:r3 reaches fi through lv" has_field fi service ee:r3 name AfterEe
ok "rotation: a peer pinned to the new key connects, the old pin is refused"

# --- broken new certificates: reload fails, naming the file, old one kept --
# reload_fails DESCRIPTION CERT KEY TEXT: pointing lv at CERT/KEY makes
# `nbxctl reload` exit 1 with TEXT (naming the file) in its message; lv
# keeps serving the rotated certificate.  Otherwise says why in $T/why,
# puts the rotated certificate back and returns 1.
reload_fails() {
	sed -i "s|^cert = .*|cert = $2|; s|^key = .*|key = $3|" "$T/lv/nbx.conf"
	set +e
	ctl lv reload >"$T/reload.out" 2>&1
	rc=$?
	set -e
	if [ $rc != 1 ]; then
		echo "$1: reload exit $rc, want 1 ($(cat "$T/reload.out"))" >"$T/why"
	elif ! grep -q -- "$4" "$T/reload.out"; then
		echo "$1: message lacks '$4': $(cat "$T/reload.out")" >"$T/why"
	elif [ "$(served_serial "$LV")" != "$new_serial" ]; then
		echo "$1: lv no longer serves its certificate" >"$T/why"
	else
		ok "broken certificate refused by reload: $1 ($(sed 's/^[^:]*failed[^:]*: //' "$T/reload.out"))"
		return 0
	fi
	sed -i 's|^cert = .*|cert = tls2/node.crt|; s|^key = .*|key = tls2/node.key|' "$T/lv/nbx.conf"
	ctl lv reload >/dev/null 2>&1 || true
	return 1
}
mkdir -p "$T/broken"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$T/broken/other.key" 2>/dev/null
echo "this is not a certificate" >"$T/broken/garbage.crt"
"$BIN/nbxctl" ca init --dir "$T/otherca" >/dev/null
"$BIN/nbxctl" ca issue --dir "$T/otherca" --node lv --out "$T/otherlv" >/dev/null
reload_fails "key does not match" "$T/lv/tls2/node.crt" "$T/broken/other.key" \
    "key $T/broken/other.key does not match cert $T/lv/tls2/node.crt" || fail "$(cat "$T/why")"
reload_fails "missing file" "$T/broken/missing.crt" "$T/lv/tls2/node.key" \
    "cert $T/broken/missing.crt: cannot open" || fail "$(cat "$T/why")"
reload_fails "not PEM" "$T/broken/garbage.crt" "$T/lv/tls2/node.key" \
    "cert $T/broken/garbage.crt: not a PEM certificate" || fail "$(cat "$T/why")"
reload_fails "another CA" "$T/otherlv/node.crt" "$T/otherlv/node.key" \
    "cert $T/otherlv/node.crt is not signed by the CA" || fail "$(cat "$T/why")"

sed -i 's|^cert = .*|cert = tls2/node.crt|; s|^key = .*|key = tls2/node.key|' "$T/lv/nbx.conf"

# after the failed reloads, new connections still work: fi reconnects
nbx_stop fi
nbx_start fi
wait_until 10 "fi reconnects to lv (pinned)" peer_up fi lv
ctl lv put service lv:r4 name=StillOld kind=shelter >/dev/null
wait_until 10 "lv:r4 reaches fi" has_field fi service lv:r4 name StillOld
wait_until 10 "lv:r4 reaches ee" has_field ee service lv:r4 name StillOld
[ "$(lines "\[lv\] disconnected")" = "$disc_ee" ] || fail "ee's session with lv ended during the failed reloads"
ok "after failed reloads lv keeps its certificate: sessions live, new connections work"

# A certificate the peers must refuse is broken too: one that names another
# node (DESIGN.md: the node id equals the certificate identity), one that
# has expired and one not valid yet.  Loading it would end every new
# connection, so the reload must fail and keep the old certificate.
"$BIN/nbxctl" ca issue --dir "$T/ca" --node lt --out "$T/otherid" >/dev/null
"$BIN/nbxctl" ca issue --dir "$T/ca" --node lv --out "$T/lvexpired" --days 1 \
    --valid-from-offset -864000 >/dev/null
"$BIN/nbxctl" ca issue --dir "$T/ca" --node lv --out "$T/lvfuture" \
    --valid-from-offset 864000 >/dev/null
bad=""
reload_fails "names another node" "$T/otherid/node.crt" "$T/otherid/node.key" \
    "$T/otherid/node.crt" || bad="$bad; $(cat "$T/why")"
reload_fails "expired" "$T/lvexpired/node.crt" "$T/lvexpired/node.key" \
    "$T/lvexpired/node.crt" || bad="$bad; $(cat "$T/why")"
reload_fails "not yet valid" "$T/lvfuture/node.crt" "$T/lvfuture/node.key" \
    "$T/lvfuture/node.crt" || bad="$bad; $(cat "$T/why")"
# A certificate issued for a rotation must not be "not yet valid" to a
# peer whose clock is a little behind: the CA and its CRLs are back-dated
# for that, a node certificate must be too
fresh_start=$(openssl x509 -in "$T/lv/tls2/node.crt" -noout -startdate | sed 's/^notBefore=//')
if ! openssl verify -attime $(( $(date +%s) - 60 )) -CAfile "$T/ca/ca.crt" \
    "$T/lv/tls2/node.crt" >/dev/null 2>&1; then
	bad="$bad; a certificate fresh from \`nbxctl ca issue\` (notBefore $fresh_start) is not yet valid for a peer whose clock is 60 s behind"
fi
[ -z "$bad" ] || fail "certificates that peers refuse${bad}"
