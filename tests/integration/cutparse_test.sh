#!/bin/sh
# A large import sent on its own is cut in two and its halves parsed at
# once (daemon/jsplit.h, control.c).  Checked on a real nbxd: a 1,000-write
# import, sent alone, is cut (nbxd -v says so) and answered with every
# write's outcome in order, refused writes in both halves at their own
# places, and the records are all there; a line that is not JSON in
# either half gets, sent alone (cut, then parsed whole), exactly the reply
# it gets when it is queued behind another request (never cut); the
# connection and the daemon keep serving.
. "$(dirname "$0")/lib.sh"

nbx_ca
nbx_node ee 1
nbx_start_verbose ee
SOCK=$T/ee/ctl.sock
LOG=$T/ee/nbxd.log

out=$(python3 - "$SOCK" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rb")

def send(*lines):
    s.sendall(b"".join(l + b"\n" for l in lines))
    return [json.loads(f.readline()) for _ in lines]

def write(i):
    return {"collection": "service", "id": "ee:cut-%04d" % i, "fields": {
        "name": "Service %d" % i, "capacity": i % 50,
        "notes": "quote \" comma , bracket ] brace } %d" % i}}

def fail(msg):
    print("FAIL " + msg)
    sys.exit(0)

# 1. one import alone: outcomes in order, refusals in both halves
ws = [write(i) for i in range(1000)]
ws[300] = 7
ws[700]["fields"]["colour"] = "red"
line = json.dumps({"cmd": "import", "writes": ws}).encode()
if len(line) < 64 << 10:
    fail("the import is only %d bytes" % len(line))
res = send(line)[0]["results"]
if len(res) != 1000:
    fail("%d results" % len(res))
for i, r in enumerate(res):
    if i == 300:
        if r["ok"] or "not a JSON object" not in r["error"]:
            fail("write 300: %s" % r)
    elif i == 700:
        if r["ok"] or "colour" not in r["error"]:
            fail("write 700: %s" % r)
    elif not r["ok"] or r["id"] != "ee:cut-%04d" % i or r["applied"] < 1:
        fail("write %d: %s" % (i, r))

# 2. not JSON in the second half, then in the first: sent alone (cut,
# refused, parsed whole) the same reply as queued behind a request
pad = json.dumps({"cmd": "status", "pad": "p" * (100 << 10)}).encode()
base = json.dumps({"cmd": "import", "writes": [write(2000 + i)
                   for i in range(1000)]}).encode()
for at in (len(base) * 3 // 4, len(base) // 4):
    k = base.index(b'"name"', at)
    bad = base[:k] + b"name" + base[k + 6:]   # a bare word, not JSON
    alone = send(bad)[0]
    queued = send(pad, bad)[1]
    if alone != queued or alone["ok"] or "not JSON" not in alone["error"]:
        fail("bad line at %d: alone %s, queued %s" % (k, alone, queued))
print("ok", send(b'{"cmd":"status"}')[0]["node"]["records"])
PY
) || fail "client: $out"
[ "$out" = "ok 998" ] || fail "cut imports: $out"
ok "a 1,000-write import sent alone: every outcome in order, refusals in both halves"
ok "a line not JSON in either half: the same reply cut or not"

# The counts follow from the order the client keeps, not from timing: a
# request is cut when it reaches an empty queue (control.c, cut), and the
# client sends each request "alone" only after it has read the previous
# reply, which nbxd writes after taking that request off the queue.  So
# the first import and both bad lines sent alone are cut, and both bad
# lines' halves are refused and parsed whole.  A bad line queued behind
# the pad may be cut as well, if the pad is answered before its last
# bytes arrive; hence "at least".
n=$(grep -c "parsed in two halves at once" "$LOG")
[ "$n" -ge 3 ] || fail "nbxd cut $n requests, want at least 3"
n=$(grep -c "are not JSON: parsed whole" "$LOG")
[ "$n" -ge 2 ] || fail "nbxd parsed $n refused halves whole, want at least 2"
ok "nbxd cut the requests that came alone, and parsed refused halves whole"

[ "$(q ee count service)" = 998 ] || fail "records: $(q ee count service)"
[ "$(q ee get service ee:cut-0999 | grep -c 'Service 999')" = 1 ] ||
	fail "the last write is not there"
ctl ee status >/dev/null || fail "nbxctl status after the cut imports"
ok "the records are all there; nbxd keeps serving"
