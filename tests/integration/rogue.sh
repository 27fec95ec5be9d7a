# rogue.sh - helpers for the tests that drive tests/rogue/nbx-rogue, a
# rogue peer with a genuine certificate.  Source it after lib.sh.  The
# helpers parse nbxctl/nbxq JSON with sed rather than python3, which is
# too slow to start for checks repeated dozens of times per test.

[ -x "$BIN/nbx-rogue" ] || fail "$BIN/nbx-rogue is not built (make $BIN/nbx-rogue)"

# Sanitizer builds run several times slower and keep freed memory in
# ASan's quarantine: time and memory bounds are relaxed for them.
IS_ASAN=0
if grep -q -a __asan_init "$BIN/nbxd" 2>/dev/null; then IS_ASAN=1; fi
RESP_S=1
[ $IS_ASAN = 0 ] || RESP_S=3

# A check of a bug that is known and not fixed yet: reported, and fatal
# only with NBX_STRICT=1.  Once nbxd is fixed, turn the call into `fail`.
known_bug() {
	[ "${NBX_STRICT:-}" != 1 ] || fail "$*"
	echo "KNOWN BUG (set NBX_STRICT=1 to fail on it): $*"
}

# rogue_identity ID TARGET SLOT: a certificate for ID from the test CA,
# and a [peer ID] entry in TARGET's config at a port nobody listens on
# (TARGET's dials fail; the rogue comes in on its own).  Before nbx_start.
rogue_identity() {
	"$BIN/nbxctl" ca issue --dir "$T/ca" --node "$1" --out "$T/$1" >/dev/null
	cat >>"$T/$2/nbx.conf" <<CONF
[peer $1]
address = 127.0.0.1:$((PORT_BASE + $3))
CONF
	ROGUE_ID=$1
	ROGUE_TARGET=$2
}

# rogue ARGS...: runs the rogue against ROGUE_TARGET; ARGS are its options
# then --script NAME [ARG...]
rogue() {
	timeout 40 "$BIN/nbx-rogue" --ca "$T/$ROGUE_ID/ca.crt" \
	    --cert "$T/$ROGUE_ID/node.crt" --key "$T/$ROGUE_ID/node.key" \
	    --connect "127.0.0.1:$(port_of "$ROGUE_TARGET")" \
	    --expect "$ROGUE_TARGET" "$@"
}

# rogue_bg ARGS...: the same in the background; its pid in RPID, and
# cleanup stops it if the test ends first
rogue_bg() {
	timeout 40 "$BIN/nbx-rogue" --ca "$T/$ROGUE_ID/ca.crt" \
	    --cert "$T/$ROGUE_ID/node.crt" --key "$T/$ROGUE_ID/node.key" \
	    --connect "127.0.0.1:$(port_of "$ROGUE_TARGET")" \
	    --expect "$ROGUE_TARGET" "$@" &
	RPID=$!
	echo "rogue $RPID" >>"$PIDS_FILE"
}

# jget JSON KEY: the value of KEY in a flat JSON object (strings keep
# their quotes)
jget() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p"
}

# node_json NAME: the "node" object of `nbxctl status --json`
node_json() { ctl "$1" status --json | grep -o '"node":{[^}]*}'; }

# peer_json NAME PEER: PEER's object in NAME's `nbxctl status --json`
peer_json() { ctl "$1" status --json | grep -o "{\"id\":\"$2\",[^}]*}"; }

# node_stat NAME: "seq records quarantined"
node_stat() {
	j=$(node_json "$1")
	echo "$(jget "$j" seq) $(jget "$j" records) $(jget "$j" quarantined)"
}

# session NAME PEER: "state since" of PEER as NAME sees it
session() {
	j=$(peer_json "$1" "$2")
	echo "$(jget "$j" state) $(jget "$j" since)"
}

# has_str NAME COLL ID FIELD VALUE: nbxq shows the string field = VALUE
has_str() {
	q "$1" get "$2" "$3" --json 2>/dev/null | grep -qF "\"$4\":\"$5\""
}

# responsive NAME WHY: NAME answers `nbxctl status` within a second
# (RESP_S seconds under ASan)
responsive() {
	timeout $RESP_S "$BIN/nbxctl" -c "$T/$1/nbx.conf" status >/dev/null ||
	    fail "$1 did not answer status within $RESP_S s ($2)"
}

# rss_kb NAME: resident memory of NAME's nbxd
rss_kb() {
	sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB$/\1/p' \
	    "/proc/$(cat "$T/$1/pid")/status"
}
