# lib.sh - helpers for the integration tests: a throwaway regional CA made
# with `nbxctl ca`, nodes on 127.0.0.1 each with its own directory, config,
# key and certificate, real nbxd processes, and bounded waits.
#
# Source it from a test script; everything lives under $T and every nbxd
# started is stopped when the script exits.

set -eu

REPO=${NBX_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${NBX_BIN:-$REPO/build}
T=$(mktemp -d "${TMPDIR:-/tmp}/nbx-it-XXXXXX")
PIDS_FILE=$T/pids
: >"$PIDS_FILE"
# a port range per test process, so parallel runs do not collide; all
# below Linux's ephemeral range (32768-60999), where a node's outgoing
# connection could take the port a later node is about to listen on
PORT_BASE=$((20000 + ($$ % 1270) * 10))

cleanup() {
	while read -r id pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done <"$PIDS_FILE"
	sleep 0.2
	while read -r id pid; do
		kill -KILL "$pid" 2>/dev/null || true
	done <"$PIDS_FILE"
	# anything else still running on this test's files (a program started
	# through a wrapper whose pid was the one recorded): every nbxd and
	# proxy names its file under $T on its command line
	pkill -KILL -f -- "$T/" 2>/dev/null || true
	if [ "${KEEP:-}" = "" ]; then rm -rf "$T"; else echo "kept $T"; fi
}
trap cleanup EXIT
# interrupted (Ctrl-C, timeout, kill): exit, so that cleanup runs
trap 'exit 130' INT
trap 'exit 143' TERM HUP

fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/*/nbxd.log; do
		[ -f "$f" ] || continue
		echo "--- $f (last 25 lines)" >&2
		tail -n 25 "$f" >&2
	done
	if [ -s "$T/proxy.log" ]; then
		echo "--- $T/proxy.log (last 10 lines)" >&2
		tail -n 10 "$T/proxy.log" >&2
	fi
	exit 1
}

ok() { echo "ok - $*"; }

nbx_ca() {
	"$BIN/nbxctl" ca init --dir "$T/ca" >/dev/null
}

# nbx_fakelib: prints the path of libfaketime's preload library; fails
# when it is not installed.  Preload it (LD_PRELOAD, FAKETIME) rather than
# run the `faketime` program, which forks: the pid a test records must be
# nbxd's own, or nbxd outlives the test and keeps its port.
nbx_fakelib() {
	for f in /usr/lib/*/faketime/libfaketime.so.1 \
	    /usr/lib/faketime/libfaketime.so.1; do
		[ -f "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

# port_of NAME: the listen port of node NAME (given when it was made)
port_of() { cat "$T/$1/port"; }

# nbx_node NAME INDEX: directory, certificate and config for a node that
# listens on 127.0.0.1:$PORT_BASE+INDEX.  Peers are added with nbx_peer.
nbx_node() {
	name=$1
	idx=$2
	d=$T/$name
	mkdir -p "$d"
	echo $((PORT_BASE + idx)) >"$d/port"
	"$BIN/nbxctl" ca issue --dir "$T/ca" --node "$name" --out "$d/tls" \
	    >"$d/issue.out"
	sed -n 's/^spki pin: //p' "$d/issue.out" >"$d/pin"
	cat >"$d/nbx.conf" <<CONF
[node]
id = $name
data_dir = data
listen = 127.0.0.1:$(port_of "$name")
control_socket = ctl.sock
schema = $REPO/conf/schema.conf
map_size_mb = ${MAP_MB:-16}
[tls]
ca = tls/ca.crt
cert = tls/node.crt
key = tls/node.key
[sync]
ping_interval_ms = ${PING_MS:-1000}
dead_after_ms = ${DEAD_MS:-3000}
backoff_min_ms = ${BACKOFF_MIN_MS:-100}
backoff_max_ms = ${BACKOFF_MAX_MS:-1000}
batch_bytes = ${BATCH_BYTES:-262144}
${PROTO_MAX:+protocol_max = $PROTO_MAX}
CONF
}

# nbx_nodes NAME...: nbx_node for each, numbered 1, 2, ... in order
nbx_nodes() {
	_i=0
	for _n in "$@"; do
		_i=$((_i + 1))
		nbx_node "$_n" $_i
	done
}

# nbx_mesh NAME...: nbx_nodes for each, every pair peered both ways, all
# started
nbx_mesh() {
	nbx_nodes "$@"
	for _a in "$@"; do
		for _b in "$@"; do
			[ "$_a" = "$_b" ] || nbx_peer "$_a" "$_b"
		done
	done
	for _a in "$@"; do nbx_start "$_a"; done
}

# nbx_peer NAME PEER: a static peer entry in NAME's config
nbx_peer() {
	cat >>"$T/$1/nbx.conf" <<CONF
[peer $2]
address = 127.0.0.1:$(port_of "$2")
CONF
}

# nbx_peer_via NAME PEER PORT: a static peer entry in NAME's config that
# reaches PEER through 127.0.0.1:PORT (a proxy in front of PEER)
nbx_peer_via() {
	cat >>"$T/$1/nbx.conf" <<CONF
[peer $2]
address = 127.0.0.1:$3
CONF
}

# nbx_proxy_start [--route NAME:LINK:TARGET_PORT]... [--seed N]: starts
# tests/tools/flakyproxy.py (stopped by cleanup, and by itself once this
# script is gone) and waits until it listens.  proxy_port NAME then gives
# a route's port, and proxy_ctl COMMAND... drives it (see the script).
PROXY=$REPO/tests/tools/flakyproxy.py
nbx_proxy_start() {
	python3 "$PROXY" serve --parent $$ --ports-file "$T/proxy.ports" "$@" \
	    >>"$T/proxy.log" 2>&1 &
	echo "proxy $!" >>"$PIDS_FILE"
	echo $! >"$T/proxy.pid"
	i=0
	until [ -s "$T/proxy.ports" ]; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "flakyproxy did not start: $(cat "$T/proxy.log")"
		kill -0 "$(cat "$T/proxy.pid")" 2>/dev/null ||
		    fail "flakyproxy exited: $(cat "$T/proxy.log")"
		sleep 0.1
	done
}
proxy_port() { awk -v n="$1" '$1 == n { print $2 }' "$T/proxy.ports"; }
proxy_ctl() { python3 "$PROXY" ctl "$(proxy_port control)" "$@"; }

# nbx_start NAME: starts nbxd and waits until its control socket answers
# (START_TRIES tenths of a second, default 600: a safety net).  NBXD_WRAP, if set, is a
# command line nbxd runs under (split into words), one that keeps nbxd in
# its own process, as valgrind does, so that the pid recorded is nbxd's.
nbx_start() {
	d=$T/$1
	# shellcheck disable=SC2086
	${NBXD_WRAP:-} "$BIN/nbxd" -c "$d/nbx.conf" >>"$d/nbxd.log" 2>&1 &
	echo "$1 $!" >>"$PIDS_FILE"
	echo $! >"$d/pid"
	i=0
	until "$BIN/nbxctl" -c "$d/nbx.conf" status >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt "${START_TRIES:-600}" ] || fail "nbxd $1 did not start in $((${START_TRIES:-600} / 10)) s"
		kill -0 "$(cat "$d/pid")" 2>/dev/null || fail "nbxd $1 exited"
		sleep 0.1
	done
}

# nbx_stop NAME: SIGTERM and wait for a clean exit
nbx_stop() {
	pid=$(cat "$T/$1/pid")
	kill -TERM "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "nbxd $1 did not stop 30 s after SIGTERM"
		sleep 0.1
	done
}

# nbx_kill NAME: kill -9, no chance to clean up
nbx_kill() {
	kill -KILL "$(cat "$T/$1/pid")"
	sleep 0.1
}

ctl() { n=$1; shift; "$BIN/nbxctl" -c "$T/$n/nbx.conf" "$@"; }
q() { n=$1; shift; "$BIN/nbxq" -c "$T/$n/nbx.conf" "$@"; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
# SECONDS is a safety net, never what is tested, and never less than
# WAIT_MIN (60): a loaded or sanitized machine is slow, and a wait that
# succeeds returns at once anyway.  On running out it fails with what it
# waited for and what the last check said (the helpers below say on
# stderr what they saw when they are false).
wait_until() {
	secs=$1
	[ "$secs" -ge "${WAIT_MIN:-60}" ] || secs=${WAIT_MIN:-60}
	what=$2
	shift 2
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -ge $((secs * 10)) ]; then
			seen=$("$@" 2>&1 | tail -n 5) || true
			fail "timed out after ${secs}s waiting for: $what
  last check: $*
  it saw: ${seen:-(nothing printed)}"
		fi
		sleep 0.1
	done
}

# field NAME COLL ID FIELD: prints a field's value as nbxq sees it
field() {
	json=$(q "$1" get "$2" "$3" --json 2>/dev/null) || { echo; return 0; }
	printf '%s\n' "$json" |
	    python3 -c 'import json,sys; d=json.load(sys.stdin); v=d["fields"].get(sys.argv[1]); print("" if v is None else (",".join(v) if isinstance(v,list) else v))' "$4"
}

# has_field NAME COLL ID FIELD VALUE: true when it equals VALUE (when
# not, says on stderr what it is)
has_field() {
	_v=$(field "$1" "$2" "$3" "$4")
	[ "$_v" = "$5" ] && return 0
	echo "$1: $2 $3 $4 is '$_v'" >&2
	return 1
}

# count NAME COLL: records nbxq counts
count() { q "$1" count "$2"; }

# peer_field NODE PEER FIELD: a field of PEER in NODE's status ("none"
# if NODE has no such peer or field); is_up / is_down NODE PEER
peer_field() {
	ctl "$1" status --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = next((p for p in d["peers"] if p["id"] == sys.argv[1]), {})
print(p.get(sys.argv[2], "none"))' "$2" "$3"
}
is_state() {
	_s=$(peer_field "$1" "$2" state)
	[ "$_s" = "$3" ] && return 0
	echo "$1: peer $2 is $_s ($(peer_field "$1" "$2" last_error))" >&2
	return 1
}
is_up() { is_state "$1" "$2" up; }
# all_acked NODE: every peer of NODE is up and has acknowledged its log
all_acked() {
	ctl "$1" status --json | python3 -c '
import json, sys
ps = json.load(sys.stdin)["peers"]
if ps and all(p["state"] == "up" and p["lag"] == 0 for p in ps):
    sys.exit(0)
sys.exit(" ".join("%s %s lag %s" % (p["id"], p["state"], p["lag"]) for p in ps))'
}
is_down() { is_state "$1" "$2" down; }
# last_link NODE PEER: "to" or "from", NODE's last logged connection
# with PEER; link_count NODE PEER: how many NODE logged
last_link() {
	sed -n "s/.*\[$2\] connected (\([a-z]*\) .*/\1/p" "$T/$1/nbxd.log" |
	    tail -n 1
}
link_count() { grep -c "\[$2\] connected (" "$T/$1/nbxd.log"; }

# writes_cross A B ID: case A:ID written on A (audience A, B) reaches B,
# and B's change of its status reaches A
writes_cross() {
	ctl "$1" put case "$1:$3" --audience "$1,$2" pseudonym=P \
	    status=accepted >/dev/null || fail "put on $1"
	wait_until 30 "$2 gets $1's write" has_field "$2" case "$1:$3" status accepted
	ctl "$2" put case "$1:$3" status=declined >/dev/null || fail "put on $2"
	wait_until 30 "$1 gets $2's write" has_field "$1" case "$1:$3" status declined
}

# nbx_start_verbose NAME: nbx_start with nbxd -v (debug lines logged)
nbx_start_verbose() {
	printf '#!/bin/sh\np=$1\nshift\nexec "$p" -v "$@"\n' >"$T/verbose"
	chmod +x "$T/verbose"
	NBXD_WRAP=$T/verbose nbx_start "$1"
}

# digests_agree A B: `nbxctl verify` gives the same digest on A for B and
# on B for A
digests_agree() {
	_d1=$(ctl "$1" verify "$2" | cut -d' ' -f1)
	_d2=$(ctl "$2" verify "$1" | cut -d' ' -f1)
	[ -n "$_d1" ] && [ "$_d1" = "$_d2" ]
}

# erasure_nodes NODE COLL/ID pending|receipts: the nodes NODE's
# `erasures` lists for that record as still pending, or whose receipt it
# holds; comma-separated, "none" if it lists no such erasure
erasure_nodes() {
	ctl "$1" erasures --json | python3 -c '
import json, sys
want, what = sys.argv[1], sys.argv[2]
for l in sys.stdin:
    if not l.strip():
        continue
    e = json.loads(l)
    if "%s/%s" % (e.get("collection"), e.get("id")) == want:
        ns = e.get(what, [])
        print(",".join(sorted(n if what == "pending" else n["node"]
                              for n in ns)))
        break
else:
    print("none")' "$2" "$3"
}
pending_on() { erasure_nodes "$1" "$2" pending; }
confirmed_on() { erasure_nodes "$1" "$2" receipts; }

# answered_case A B C ID: A writes case A:ID for audience A, B, C; C
# answers it (status=accepted, writers = audience); waits until C has the
# case and A and B the answer
answered_case() {
	ctl "$1" put case "$1:$4" --audience "$1,$2,$3" pseudonym=P >/dev/null ||
	    fail "put on $1"
	wait_until 20 "$3 got $1:$4" has_field "$3" case "$1:$4" pseudonym P
	ctl "$3" put case "$1:$4" status=accepted >/dev/null || fail "put on $3"
	for _n in "$1" "$2"; do
		wait_until 20 "$_n got $3's answer" has_field "$_n" case "$1:$4" \
		    status accepted
	done
}

# sync_set NAME KEY VALUE: sets KEY in NAME's [sync] section (before its
# peers); takes effect when NAME (re)starts
sync_set() {
	sed -i "/^\[sync\]/a $2 = $3" "$T/$1/nbx.conf"
}
