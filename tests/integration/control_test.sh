#!/bin/sh
# The control socket: created mode 0600; a client of another uid is
# closed without an answer and the refusal is logged (SO_PEERCRED), even
# when the file mode would let it in; malformed requests (not JSON, not an
# object, no "cmd", an unknown or ill-typed command, a 20 MiB line) each get
# an error reply — the oversized line an error and then the close — and the
# daemon keeps serving nbxctl and its peers.  The raw client is python3's
# socket module.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1
nbx_node lv 2
nbx_peer ee lv
nbx_peer lv ee
nbx_start ee
nbx_start lv
SOCK=$T/ee/ctl.sock
# the system python: uid 65534 must be able to run it (not a pyenv shim
# under /root), and it starts faster
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
LOG=$T/ee/nbxd.log

# raw MODE [ARG]: one connection to ee's control socket (see RAW below);
# prints what came back
RAW='
import socket, sys, threading
sock, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sock)
if mode == "line":
    # one request line, one reply line
    s.sendall(sys.argv[3].encode("utf-8", "surrogateescape") + b"\n")
    f = s.makefile("rb")
    sys.stdout.write(f.readline().decode("utf-8", "replace"))
elif mode == "bytes":
    # a request given as a Python bytes literal (for bytes that are not
    # text), one reply line
    s.sendall(eval(sys.argv[3]) + b"\n")
    f = s.makefile("rb")
    sys.stdout.write(f.readline().decode("utf-8", "replace"))
elif mode == "big":
    # a line of 20 MiB, sent while a thread collects every reply until the
    # server closes; prints the replies and "EOF"
    got = []
    def reader():
        # a close with our bytes still unread shows as a reset on a Unix
        # socket: after the data that came before it
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                b = b""
            if not b:
                got.append(b"EOF\n")
                return
            got.append(b)
    t = threading.Thread(target=reader)
    t.start()
    line = b"{\"cmd\":\"status\",\"pad\":\"" + b"a" * (20 << 20) + b"\"}\n"
    try:
        s.sendall(line)
    except (BrokenPipeError, ConnectionResetError):
        pass
    t.join(20)
    sys.stdout.write(b"".join(got).decode("utf-8", "replace"))
elif mode == "silent":
    # a request, then everything the server sends until it closes: must be
    # nothing; prints "EOF after N bytes" (or "TIMEOUT")
    try:
        s.sendall(b"{\"cmd\":\"status\"}\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    n = 0
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            n += len(b)
    except ConnectionResetError:
        pass
    except socket.timeout:
        print("TIMEOUT after %d bytes" % n)
        sys.exit(0)
    print("EOF after %d bytes" % n)
'
raw() { "$PY" -c "$RAW" "$SOCK" "$@"; }

peer_up() {
	ctl "$1" peer list --json | grep -q "^{\"id\":\"$2\",.*\"state\":\"up\""
}
wait_until 10 "ee-lv session" peer_up ee lv

# --- mode 0600 ---------------------------------------------------------------
[ -S "$SOCK" ] || fail "no control socket at $SOCK"
mode=$(stat -c %a "$SOCK")
[ "$mode" = 600 ] || fail "control socket mode is $mode, want 600"
ok "control socket is mode 0600 ($(stat -c '%U:%G' "$SOCK"))"

# --- a client of another uid ------------------------------------------------
if ! command -v setpriv >/dev/null 2>&1; then
	echo "skipped: setpriv is missing (util-linux), cannot connect as another uid"
elif [ "$(id -u)" != 0 ]; then
	echo "skipped: not root, cannot connect as another uid"
else
	# let uid 65534 reach and open the socket: only SO_PEERCRED stands
	chmod 711 "$T" "$T/ee"
	chmod 666 "$SOCK"
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	if ! as_nobody "$PY" -c 'import os, sys; os.stat(sys.argv[1])' "$SOCK" 2>/dev/null; then
		echo "skipped: uid 65534 cannot run $PY or reach $SOCK (is TMPDIR private?)"
	else
		r0=$(grep -c "control: refused a client of another user" "$LOG" || true)
		out=$(as_nobody "$PY" -c "$RAW" "$SOCK" silent 2>&1) ||
		    fail "client as uid 65534 could not connect: $out"
		[ "$out" = "EOF after 0 bytes" ] || fail "client of another uid: $out (want the connection closed with no answer)"
		refusal_logged() { [ "$(grep -c 'control: refused a client of another user' "$LOG")" -gt "$r0" ]; }
		wait_until 5 "refusal logged" refusal_logged
		ok "client of uid 65534 closed without an answer, refusal logged"
	fi
	chmod 600 "$SOCK"
	chmod 700 "$T" "$T/ee"
fi

# --- malformed requests, all on one connection -------------------------------
# each reply must be a JSON object with ok=false and an error text matching
# the expected pattern
CHECK='
import json, sys
want = sys.argv[1]
lines = sys.stdin.read().splitlines()
if len(lines) != 1:
    sys.exit("want one reply line, got %r" % lines)
r = json.loads(lines[0])
if not isinstance(r, dict) or r.get("ok") is not False or want not in r.get("error", ""):
    sys.exit("reply %r does not say ok=false with %r" % (lines[0], want))
'
bad_line() {	# REQUEST EXPECTED_ERROR_TEXT
	reply=$(raw line "$1") || fail "no reply to $1"
	printf '%s\n' "$reply" | "$PY" -c "$CHECK" "$2" || fail "request '$1'"
}
bad_bytes() {	# PYTHON_BYTES_LITERAL EXPECTED_ERROR_TEXT
	reply=$(raw bytes "$1") || fail "no reply to $1"
	printf '%s\n' "$reply" | "$PY" -c "$CHECK" "$2" || fail "request $1"
}
bad_line 'this is not JSON at all' "request is not JSON"
bad_line '{"cmd":"status"' "request is not JSON"
bad_line '[1,2,3]' 'must be an object with a "cmd" string'
bad_line '"status"' "request is not JSON"
bad_line '42' "request is not JSON"
bad_line '{"command":"status"}' 'must be an object with a "cmd" string'
bad_line '{"cmd":42}' 'must be an object with a "cmd" string'
bad_line '{"cmd":null}' 'must be an object with a "cmd" string'
bad_line '{"cmd":"frobnicate"}' "unknown command 'frobnicate'"
bad_line '{"cmd":""}' "unknown command ''"
bad_line '{"cmd":"put"}' 'a write needs "collection" and "id" strings'
bad_line '{"cmd":"put","collection":5,"id":[],"fields":"x"}' 'a write needs "collection" and "id" strings'
bad_line '{"cmd":"peer_add","id":["lt"],"address":{}}' "is not a node id"
bad_line '{"cmd":"peer_add","id":"lt","address":"127.0.0.1:1","pin":"not hex"}' "pin must be 64 hex digits"
bad_line '{"cmd":"peer_remove"}' 'peer_remove needs "id"'
bad_line '{"cmd":"verify","peer":12}' "verify needs a peer id"
bad_line '{"cmd":"import","writes":5}' 'import needs "writes"'
bad_bytes 'b"[" * 100000' "maximum parsing depth"
bad_bytes 'b"{\"cmd\":\"\xff\xfe\"}"' "unable to decode byte"
bad_bytes 'b"{\"cmd\":\"st\x00atus\"}"' "control character"
bad_line '{"cmd":"status\u0000x"}' "is not allowed"
ok "malformed requests each get an error reply"

# the same garbage on one connection, then a good request on it
out=$("$PY" -c '
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
reqs = [b"garbage", b"[]", b"{}", b"{\"cmd\":\"nope\"}", b"\xff\xff", b"{\"cmd\":\"status\"}"]
s.sendall(b"\n".join(reqs) + b"\n")
f = s.makefile("rb")
replies = [json.loads(f.readline()) for _ in reqs]
print(" ".join(str(r["ok"]) for r in replies))
' "$SOCK") || fail "pipelined requests: $out"
[ "$out" = "False False False False False True" ] || fail "pipelined requests: $out"
ok "after five bad requests the same connection still answers a good one"

# --- large requests (parsed on the thread pool) keep their order ------------
# big (> 64 KiB) and small requests interleaved on one connection: each
# reply in request order, a big line that is not JSON answered in its turn;
# then clients that send big requests and vanish before the answer
out=$("$PY" -c '
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
pad = "p" * (300 << 10)
reqs = [json.dumps({"cmd": "status", "pad": pad}).encode(),
        b"{\"cmd\":\"nope\"}",
        b"{\"cmd\":\"status\",\"pad\":\"" + b"q" * (200 << 10),
        json.dumps({"cmd": "verify", "peer": "lv", "pad": pad}).encode(),
        b"{\"cmd\":\"status\"}"] * 3
s.sendall(b"\n".join(reqs) + b"\n")
f = s.makefile("rb")
out = []
for _ in reqs:
    r = json.loads(f.readline())
    out.append("%s:%s" % (r["ok"], "digest" in r and "V" or "node" in r and "S"
               or r.get("error", "")[:18]))
print(" ".join(out))
for _ in range(5):
    v = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    v.connect(sys.argv[1])
    v.sendall(json.dumps({"cmd": "status", "pad": pad}).encode() * 2 + b"\n")
    v.close()
' "$SOCK") || fail "large requests: $out"
want="True:S False:unknown command 'n False:request is not JSO True:V True:S"
[ "$out" = "$want $want $want" ] || fail "large requests: $out (want $want x3)"
kill -0 "$(cat "$T/ee/pid")" || fail "nbxd died after clients left mid-parse"
ctl ee status >/dev/null || fail "nbxctl status fails after clients left mid-parse"
ok "large requests parsed off the loop are answered in order; clients leaving mid-parse are harmless"

# --- an oversized line: an error reply, then the close ----------------------
start=$(date +%s)
out=$(raw big) || fail "oversized line client failed: $out"
n_replies=$(printf '%s\n' "$out" | grep -c '^{' || true)
[ "$n_replies" = 1 ] || fail "20 MiB line: want exactly one reply, got: $(printf '%s' "$out" | cut -c1-300)"
printf '%s\n' "$out" | head -n 1 | "$PY" -c "$CHECK" "request line longer than" ||
    fail "20 MiB line: reply $(printf '%s' "$out" | head -c 300)"
[ "$(printf '%s\n' "$out" | tail -n 1)" = EOF ] || fail "20 MiB line: the connection was not closed"
ok "20 MiB line: one error reply, then the connection is closed (in $(( $(date +%s) - start ))s)"

# --- the daemon keeps serving -------------------------------------------------
kill -0 "$(cat "$T/ee/pid")" || fail "nbxd died"
ctl ee status >/dev/null || fail "nbxctl status fails after the garbage"
ctl lv put service lv:after name="After the garbage" kind=helpline >/dev/null
wait_until 10 "lv's record reaches ee" has_field ee service lv:after name "After the garbage"
ctl ee put service ee:after name="Still writing" kind=shelter >/dev/null
wait_until 10 "ee's record reaches lv" has_field lv service ee:after name "Still writing"
grep -q "disconnected" "$LOG" && fail "the ee-lv session dropped during the control tests"
[ "$(count ee service)" = 2 ] || fail "ee holds $(count ee service) services, want 2: a malformed request wrote something"
ok "nbxd keeps serving: nbxctl works, lv still syncs both ways"

# --- requests and settings that must fail closed -----------------------------
bad=""
# a pin that is not a string is a malformed request, not "no pin": taking
# it as no pin would add the peer with a weaker identity check than asked
reply=$(raw line '{"cmd":"peer_add","id":"lt","address":"127.0.0.1:1","pin":7}')
if ! printf '%s\n' "$reply" | "$PY" -c "$CHECK" "pin" 2>/dev/null; then
	bad="$bad; peer_add with \"pin\":7 answered $reply$(ctl ee peer list | grep '^lt ' | sed 's/^/ and lists /')"
	ctl ee peer remove lt >/dev/null 2>&1 || true
fi
# a control_socket path that names a file which is not a socket: nbxd must
# refuse to start, not delete the file (a typo here would take the store)
nbx_node lt 4
echo "precious" >"$T/lt/precious"
sed -i 's|^control_socket = .*|control_socket = precious|' "$T/lt/nbx.conf"
set +e
timeout 2 "$BIN/nbxd" -c "$T/lt/nbx.conf" >"$T/lt/nbxd.log" 2>&1
rc=$?
set -e
if [ "$(cat "$T/lt/precious" 2>/dev/null)" != precious ]; then
	bad="$bad; nbxd (exit $rc) deleted the regular file named as its control_socket (to bind its socket there)"
elif [ $rc = 0 ] || [ $rc = 124 ]; then
	bad="$bad; nbxd ran with a control_socket that names a regular file"
else
	ok "control_socket naming a regular file: nbxd refuses to start, file kept ($(head -n 1 "$T/lt/nbxd.log" | cut -d' ' -f3-))"
fi
[ -z "$bad" ] || fail "control socket${bad}"
