#!/usr/bin/env python3
"""nbxbench - the measuring parts of `make bench` (tests/bench/run.sh) that
need finer clocks than a shell loop: paced writes with per-batch lag,
byte counters over an idle minute, the heal of a partition, and RSS
sampling.  Python 3 standard library only (PostgreSQL through libpq with
ctypes); everything on 127.0.0.1 or unix sockets.  Each subcommand prints
one JSON object (its result) on stdout and its progress on stderr.

    nbxbench.py live-nbx --writer SOCK --reader SOCK --rate R --secs S
                         --first I --base C [--window W] [--timeout S]
        Writes R records/s for S s through the control socket SOCK of the
        origin (one `import` request of R/100 records due every 10 ms,
        service records I, I+1, ... of run.sh's shape; the requests are
        built before the clock starts and at most --window, default 1,
        are in flight), and polls the control
        socket of the peer (`status`, node.records) every 2 ms.  The peer
        held C records before.  A batch is committed on the origin when
        its reply arrives (nbxd replies after the LMDB commit) and visible
        on the peer when the peer's record count first reaches C plus the
        records of every batch up to it (the peer applies the origin's log
        in order).  Lag of a batch = visible on the peer - committed on
        the origin.
    nbxbench.py live-pg --writer CONNINFO --reader CONNINFO --rate R --secs S
                        --first I [--timeout S]
        The same through PostgreSQL: `SELECT bench_insert(lo, hi)` (one
        transaction) on the publisher; on the subscriber, `SELECT max(id)`
        (an index lookup; the apply worker commits in the publisher's
        commit order, so every id up to it is visible).
    nbxbench.py idle --secs S --ports P[,P...] [--ctl SOCK --peer ID]
        Bytes over the established TCP connections whose local port is one
        of the listening ports P (the server side of each connection; `ss
        -tin`: bytes_acked + bytes_received, i.e. TCP payload both ways,
        and segments), and with --ctl the plaintext bytes_in + bytes_out
        that node reports for PEER, over S seconds.
    nbxbench.py heal --proxy PORT --link LINK --expect N [--timeout S]
                     NAME=DIR ...
        Sets the flakyproxy LINK to "pass" (the heal), then polls every
        node's `status` (its control socket DIR/ctl.sock) until every peer
        is up and every node holds N records, then runs `verify` on both
        ends of every pair until all digests match.  Times from the heal.
        Also reports, from the heal until every node held N records: the
        CPU time of all the nbxd (pids in DIR/pid), the changes they
        received (`changes_in`, summed over peers), and the slowest
        `status` reply of each node (nbxd serves its control socket from
        the same event loop as its peers, so a slow reply is a busy or
        blocked loop).
    nbxbench.py rss --phase-file F --out F --parent PID NAME=PIDFILE ...
        Every 0.1 s: RssAnon (resident memory that is not a mapped file:
        heap, stacks, anonymous maps; the LMDB map is a file mapping and
        not counted) of each nbxd whose pid is in PIDFILE, kept as the peak
        per (phase, node), phase = the content of F (no sampling while F
        is missing or empty).  Rewrites --out ("phase node peak_kB" lines)
        whenever a peak grows; exits when PID is gone.
"""

import ctypes
import ctypes.util
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time

# the partition proxy of the integration tests, for its control client
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
import flakyproxy  # noqa: E402

POLL_S = 0.002          # how often the peer / subscriber is polled
QUIET_S = 0.5           # heal: a node that received nothing this long is quiet
BATCH_S = 0.010         # one write batch per 10 ms


def now():
    return time.monotonic()


def log(msg):
    sys.stderr.write("bench:   %s\n" % msg)
    sys.stderr.flush()


def args_of(argv, flags):
    """--flag value pairs (all required unless given a default in flags)
    and the remaining NAME=VALUE words."""
    opts, rest = dict(flags), []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            k = a[2:]
            if k not in flags or i + 1 >= len(argv):
                sys.exit("nbxbench: bad option %s" % a)
            opts[k] = argv[i + 1]
            i += 2
        else:
            rest.append(a)
            i += 1
    for k, v in opts.items():
        if v is None:
            sys.exit("nbxbench: --%s is required" % k)
    return opts, rest


def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


# ------------------------------------------------------------------
# nbxd's control socket: one JSON object per line each way
# ------------------------------------------------------------------

class Ctl:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.path = path
        self.buf = b""

    def call(self, req, timeout=600):
        return self.calls([req], timeout)[0]

    def calls(self, reqs, timeout=600):
        """The requests sent at once, their replies read in order: nbxd
        answers a connection's requests in turn, those that arrived
        together in one turn of its loop."""
        self.s.settimeout(timeout)
        self.s.sendall(b"".join(json.dumps(r, separators=(",", ":")).encode()
                                + b"\n" for r in reqs))
        reps = []
        while len(reps) < len(reqs):
            while b"\n" not in self.buf:
                d = self.s.recv(1 << 20)
                if not d:
                    raise ConnectionError("nbxd closed the control "
                                          "connection")
                self.buf += d
            line, self.buf = self.buf.split(b"\n", 1)
            rep = json.loads(line)
            if not rep.get("ok"):
                raise RuntimeError("nbxd: %s" % rep.get("error", rep))
            reps.append(rep)
        return reps

    def close(self):
        self.s.close()


def record(i):
    """Record i as run.sh's gen() makes it (an import line's object)."""
    return {"collection": "service", "id": "ee:svc-%07d" % i, "fields": {
        "name": "Support service number %d" % i,
        "organisation": "ee:org-%04d" % (i % 1000), "country": "ee",
        "city": "Tallinn", "kind": "shelter", "capacity": i % 50,
        "free_places": i % 7, "phone": "+372 600 %04d" % (i % 10000),
        "notes": "internal note %d" % i}}


# ------------------------------------------------------------------
# PostgreSQL through libpq (ctypes): no driver needed
# ------------------------------------------------------------------

class Pg:
    lib = None

    def __init__(self, conninfo):
        if Pg.lib is None:
            name = ctypes.util.find_library("pq") or "libpq.so.5"
            L = ctypes.CDLL(name)
            L.PQconnectdb.restype = ctypes.c_void_p
            L.PQconnectdb.argtypes = [ctypes.c_char_p]
            L.PQstatus.argtypes = [ctypes.c_void_p]
            L.PQerrorMessage.restype = ctypes.c_char_p
            L.PQerrorMessage.argtypes = [ctypes.c_void_p]
            L.PQexec.restype = ctypes.c_void_p
            L.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            L.PQresultStatus.argtypes = [ctypes.c_void_p]
            L.PQntuples.argtypes = [ctypes.c_void_p]
            L.PQgetisnull.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
            L.PQgetvalue.restype = ctypes.c_char_p
            L.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
            L.PQclear.argtypes = [ctypes.c_void_p]
            L.PQfinish.argtypes = [ctypes.c_void_p]
            Pg.lib = L
        self.c = Pg.lib.PQconnectdb(conninfo.encode())
        if Pg.lib.PQstatus(self.c) != 0:
            raise RuntimeError("libpq: %s" % Pg.lib.PQerrorMessage(self.c).decode())

    def value(self, sql):
        """Runs sql (autocommit: returns after its commit); the first
        column of the first row, or None."""
        L = Pg.lib
        r = L.PQexec(self.c, sql.encode())
        try:
            st = L.PQresultStatus(r)
            if st not in (1, 2):        # PGRES_COMMAND_OK, PGRES_TUPLES_OK
                raise RuntimeError("libpq: %s: %s" % (
                    sql, L.PQerrorMessage(self.c).decode().strip()))
            if st == 2 and L.PQntuples(r) > 0 and not L.PQgetisnull(r, 0, 0):
                return L.PQgetvalue(r, 0, 0).decode()
            return None
        finally:
            L.PQclear(r)

    def close(self):
        Pg.lib.PQfinish(self.c)


# ------------------------------------------------------------------
# 3. live replication
# ------------------------------------------------------------------

class SyncWriter:
    """A writer whose write_batch(k, lo, n) returns once batch k is
    committed: one batch in flight."""
    window = 1

    def __init__(self, write_batch):
        self.write_batch = write_batch
        self.done_t = {}

    def prepare(self, batches):
        pass

    def send(self, k, lo, n):
        self.write_batch(k, lo, n)
        self.done_t[k] = now()

    def wait_slot(self, timeout):
        return True

    def finish(self, n, timeout):
        pass


def live(writer, reached, rate, secs, timeout):
    """Paced writes with per-batch lag.  writer.prepare builds every
    batch's request before the clock starts (the writing application's
    own work is not the system's); writer.send(k, lo, n) sends records
    lo..lo+n-1 and writer.done_t[k] is when they were committed;
    reached() returns how many records (counted from the first) are
    visible on the other side.  Batch k is due at t0 + k * 10 ms; at most
    writer.window batches are in flight, and when the window is full the
    next is sent as soon as a reply frees it (no batch is skipped or
    merged), so a writer slower than the rate shows as an achieved rate
    below it.  No batch is sent after t0 + secs."""
    per = max(1, int(round(rate * BATCH_S)))
    nmax = max(1, int(secs / BATCH_S))
    cum = [per * (k + 1) for k in range(nmax)]
    sent_t, seen_t = [], [None] * nmax
    state = {"n": None, "error": None}

    def reader():
        j = 0
        try:
            while True:
                n = state["n"]
                if n is not None and j >= n:
                    return
                if state["error"] or now() > deadline:
                    return
                c = reached()
                t = now()
                while j < nmax and c >= cum[j]:
                    seen_t[j] = t
                    j += 1
                time.sleep(POLL_S)
        except Exception as e:          # reported by the main thread
            state["error"] = "reader: %s" % e

    writer.prepare([(k * per, per) for k in range(nmax)])
    t0 = now()
    deadline = t0 + secs + timeout
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        for k in range(nmax):
            due = t0 + k * BATCH_S
            if now() >= t0 + secs:
                break
            d = due - now()
            if d > 0:
                time.sleep(d)
            if state["error"]:
                break
            if not writer.wait_slot(deadline - now()):
                raise RuntimeError("no reply within %d s" % timeout)
            sent_t.append(now())
            writer.send(k, k * per, per)
        writer.finish(len(sent_t), deadline - now())
    except Exception as e:
        state["error"] = "writer: %s" % e
    n = len(sent_t)
    state["n"] = n
    th.join()
    if state["error"]:
        raise RuntimeError(state["error"])
    if n == 0 or seen_t[n - 1] is None:
        got = sum(1 for x in seen_t[:n] if x is not None)
        raise RuntimeError("only %d of %d batches became visible within "
                           "%d s" % (got, n, timeout))
    commit_t = [writer.done_t[k] for k in range(n)]
    t_end = commit_t[-1]
    lags = [(seen_t[k] - commit_t[k]) * 1000.0 for k in range(n)]
    rtts = [(commit_t[k] - sent_t[k]) * 1000.0 for k in range(n)]
    # lag over time: the median of each tenth of the run, to tell a
    # steady lag from one that grows
    tenths = []
    for q in range(10):
        part = lags[q * n // 10:(q + 1) * n // 10]
        if part:
            tenths.append(round(pct(part, 50), 1))
    return {
        "target_rate": rate, "batch": per, "batches": n,
        "records": n * per, "secs": round(t_end - t0, 3),
        "achieved_rate": round(n * per / (t_end - t0), 1),
        "behind_s": round(max(0.0, sent_t[-1] - (t0 + (n - 1) * BATCH_S)), 3),
        "lag_p50_ms": round(pct(lags, 50), 2),
        "lag_p90_ms": round(pct(lags, 90), 2),
        "lag_p99_ms": round(pct(lags, 99), 2),
        "lag_max_ms": round(max(lags), 2),
        "lag_min_ms": round(min(lags), 2),
        "lag_tenths_p50_ms": tenths,
        "commit_p50_ms": round(pct(rtts, 50), 2),
        "commit_p99_ms": round(pct(rtts, 99), 2),
        "drain_s": round(seen_t[n - 1] - t_end, 3),
    }


class CtlWriter:
    """nbxd's `import` requests, prepared as bytes beforehand and sent
    with up to `window` in flight on one control connection (nbxd answers
    a connection's requests in order); a thread reads the replies as
    they come and stamps each batch's commit."""

    def __init__(self, path, first, window):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.first, self.window = first, window
        self.slots = threading.Semaphore(window)
        self.done_t, self.reqs = {}, []
        self.error = None
        self.expect = []        # (k, n) of the requests in flight, in order
        self.lock = threading.Lock()
        self.more = threading.Condition(self.lock)
        self.th = threading.Thread(target=self.replies, daemon=True)
        self.th.start()

    def prepare(self, batches):
        # "brief" (as nbxctl import asks): counts instead of one result
        # per write
        for lo, n in batches:
            self.reqs.append(json.dumps(
                {"cmd": "import", "brief": True, "writes": [
                    record(self.first + lo + i) for i in range(n)]},
                separators=(",", ":")).encode() + b"\n")

    def replies(self):
        buf = b""
        try:
            while True:
                with self.lock:
                    while not self.expect:
                        self.more.wait()
                    k, n = self.expect[0]
                if k is None:
                    return
                while b"\n" not in buf:
                    d = self.s.recv(1 << 20)
                    if not d:
                        raise ConnectionError("nbxd closed the control "
                                              "connection")
                    buf += d
                line, buf = buf.split(b"\n", 1)
                t = now()
                rep = json.loads(line)
                applied = rep.get("applied", 0) if rep.get("ok") and \
                    not rep.get("rejected") else -1
                if applied != n:
                    raise RuntimeError("batch %d: %d of %d writes applied: "
                                       "%s" % (k, applied, n, line[:300]))
                self.done_t[k] = t
                with self.lock:
                    self.expect.pop(0)
                self.slots.release()
        except Exception as e:
            self.error = "replies: %s" % e
            for _ in range(self.window):
                self.slots.release()

    def wait_slot(self, timeout):
        ok = self.slots.acquire(timeout=max(0.0, timeout))
        if self.error:
            raise RuntimeError(self.error)
        return ok

    def send(self, k, lo, n):
        with self.lock:
            self.expect.append((k, n))
            self.more.notify()
        self.s.sendall(self.reqs[k])

    def finish(self, n, timeout):
        for _ in range(self.window):
            if not self.wait_slot(timeout):
                raise RuntimeError("no reply within the timeout")
        if len(self.done_t) != n:
            raise RuntimeError("%d of %d batches answered"
                               % (len(self.done_t), n))
        with self.lock:
            self.expect.append((None, 0))
            self.more.notify()


def cmd_live_nbx(argv):
    o, _ = args_of(argv, {"writer": None, "reader": None, "rate": None,
                          "secs": None, "first": None, "base": None,
                          "window": "1", "timeout": "300"})
    w = CtlWriter(o["writer"], int(o["first"]), int(o["window"]))
    r = Ctl(o["reader"])
    base = int(o["base"])

    def reached():
        return r.call({"cmd": "status"})["node"]["records"] - base

    out = live(w, reached, float(o["rate"]), float(o["secs"]),
               float(o["timeout"]))
    out["window"] = w.window
    print(json.dumps(out))


def cmd_live_pg(argv):
    o, _ = args_of(argv, {"writer": None, "reader": None, "rate": None,
                          "secs": None, "first": None, "timeout": "300"})
    w, r = Pg(o["writer"]), Pg(o["reader"])
    first = int(o["first"])

    def write_batch(k, lo, n):
        w.value("SELECT bench_insert(%d, %d)" % (first + lo, first + lo + n - 1))

    def reached():
        v = r.value("SELECT max(id) FROM service WHERE id >= 'ee:svc-%07d'"
                    % first)
        return 0 if v is None else int(v[len("ee:svc-"):]) - first + 1

    out = live(SyncWriter(write_batch), reached, float(o["rate"]),
               float(o["secs"]), float(o["timeout"]))
    out["window"] = 1
    print(json.dumps(out))


# ------------------------------------------------------------------
# 4. idle cost
# ------------------------------------------------------------------

def tcp_counters(ports):
    """{(local, peer): (bytes sent and acked, bytes received, segs out,
    segs in)} of the established TCP sockets whose local port is one of
    ports (`ss -tin`; the kernel's own per-connection counters)."""
    out = subprocess.run(["ss", "-tinH", "state", "established"],
                         capture_output=True, text=True, check=True).stdout
    conns, cur = {}, None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            f = line.split()
            cur = None
            if len(f) >= 4:
                local, peer = f[-2], f[-1]
                if int(local.rsplit(":", 1)[1]) in ports:
                    cur = (local, peer)
            continue
        if cur is None:
            continue
        c = {"bytes_acked": 0, "bytes_received": 0, "segs_out": 0, "segs_in": 0}
        for tok in line.split():
            k, _, v = tok.partition(":")
            if k in c and v.isdigit():
                c[k] = int(v)
        conns[cur] = (c["bytes_acked"], c["bytes_received"], c["segs_out"],
                      c["segs_in"])
        cur = None
    return conns


def plain_counters(ctl, peer):
    for p in ctl.call({"cmd": "status"})["peers"]:
        if p["id"] == peer:
            return p["bytes_in"] + p["bytes_out"], p["state"]
    raise RuntimeError("no peer %s" % peer)


def cmd_idle(argv):
    o, _ = args_of(argv, {"secs": None, "ports": None, "ctl": "",
                          "peer": ""})
    ports = {int(p) for p in o["ports"].split(",")}
    secs = float(o["secs"])
    ctl = Ctl(o["ctl"]) if o["ctl"] else None
    t0 = now()
    a = tcp_counters(ports)
    pa = plain_counters(ctl, o["peer"]) if ctl else None
    time.sleep(secs)
    b = tcp_counters(ports)
    pb = plain_counters(ctl, o["peer"]) if ctl else None
    t1 = now()
    same = sorted(a) == sorted(b)
    both = [k for k in a if k in b]
    wire = sum(b[k][0] + b[k][1] - a[k][0] - a[k][1] for k in both)
    segs = sum(b[k][2] + b[k][3] - a[k][2] - a[k][3] for k in both)
    out = {"secs": round(t1 - t0, 2), "connections": sorted(
        "%s<-%s" % k for k in b), "same_connections": same,
        "wire_bytes": wire, "segments": segs,
        "wire_per_min": round(wire * 60.0 / (t1 - t0), 1),
        "segments_per_min": round(segs * 60.0 / (t1 - t0), 1)}
    if ctl:
        out["plain_bytes"] = pb[0] - pa[0]
        out["plain_per_min"] = round((pb[0] - pa[0]) * 60.0 / (t1 - t0), 1)
        out["peer_state"] = pb[1]
    print(json.dumps(out))


# ------------------------------------------------------------------
# 6. convergence after a partition heals
# ------------------------------------------------------------------

def proxy_cmd(port, words):
    reply = flakyproxy.request(port, words)
    if reply != "ok":
        raise RuntimeError("flakyproxy: %s: %s" % (" ".join(words), reply))


def cmd_heal(argv):
    o, rest = args_of(argv, {"proxy": None, "link": None, "expect": None,
                             "timeout": "120"})
    nodes = [x.split("=", 1) for x in rest]
    ctls = {name: Ctl(os.path.join(d, "ctl.sock")) for name, d in nodes}
    pids = {}
    for name, d in nodes:
        with open(os.path.join(d, "pid")) as f:
            pids[name] = int(f.read().strip())
    names = [name for name, _ in nodes]
    expect, timeout = int(o["expect"]), float(o["timeout"])

    def cpu_s():
        tot = 0
        for pid in pids.values():
            with open("/proc/%d/stat" % pid) as f:
                fs = f.read().rsplit(")", 1)[1].split()
            tot += int(fs[11]) + int(fs[12])        # utime, stime
        return tot / os.sysconf("SC_CLK_TCK")

    in0 = sum(p["changes_in"] for n in names
              for p in ctls[n].call({"cmd": "status"})["peers"])
    cpu0 = cpu_s()
    slow = {}
    # each node watched by a thread of its own, as an operator would
    # watch each node: a round of status calls one node after another
    # takes seconds while the loops are busy, and would time its slowest
    # answers, not the heal
    first = {}              # node -> (links up, all records), seconds
    at_records = {}         # node -> its changes_in when it had them all
    # node -> (the last time its changes_in moved, changes_in then): the
    # streams go on after every node holds every record, with copies of
    # records the receiver already holds (README, Performance), so each
    # watcher goes on until its node has received nothing for QUIET_S
    quiet = {}
    seen = {n: threading.Event() for n in names}     # first[n] is known
    done = []
    lock = threading.Lock()

    def watch(n):
        t_l = t_r = t_move = last_in = None
        ctl = Ctl(ctls[n].path)     # its own: verify runs meanwhile
        while now() - t0 <= timeout:
            c0 = now()
            st = ctl.call({"cmd": "status"})
            slow[n] = max(slow.get(n, 0.0), now() - c0)
            t = now() - t0
            cin = sum(p["changes_in"] for p in st["peers"])
            if cin != last_in:
                last_in, t_move = cin, t
            if t_l is None and sum(p["state"] == "up"
                                   for p in st["peers"]) == len(names) - 1:
                t_l = t
            if t_r is None and st["node"]["records"] >= expect:
                t_r = t
                with lock:
                    at_records[n] = cin
                    done.append(n)
                    if len(done) == len(names):
                        at_records["cpu"] = cpu_s()
                        at_records["slow"] = dict(slow)
            if t_l is not None and t_r is not None:
                if not seen[n].is_set():
                    first[n] = (t_l, t_r)
                    seen[n].set()
                if t - t_move >= QUIET_S:
                    break
            time.sleep(0.01)
        ctl.close()
        first.setdefault(n, (t_l, t_r))
        quiet[n] = (t_move, last_in)
        seen[n].set()

    ths = [threading.Thread(target=watch, args=(n,)) for n in names]
    t0 = now()
    proxy_cmd(int(o["proxy"]), ["set", o["link"], "pass"])
    for th in ths:
        th.start()
    for n in names:
        seen[n].wait()
    if any(first[n][0] is None or first[n][1] is None for n in names):
        raise SystemExit("nbxbench heal: not converged within %d s (%s)" % (
            timeout, " ".join("%s: links %s, records %s" % (n, first[n][0],
                              first[n][1]) for n in names)))
    t_links = max(first[n][0] for n in names)
    t_records = max(first[n][1] for n in names)
    cpu1, slow1 = at_records["cpu"], at_records["slow"]
    in1 = sum(at_records[n] for n in names)
    # every pair, both ends: equal digests.  A round asks every node for
    # its digest with each peer (the nodes in parallel, one thread each,
    # as operators would run `nbxctl verify` on each node; a node's
    # requests sent at once: asked one after another, each waited for a
    # turn of a loop busy with the streams, ~0.1 s, and the round took
    # 0.7-1.1 s of the heal's 2.0-2.9 s); a round that
    # finds a pair apart starts over.  The time is the end of the first
    # round in which every pair agreed.
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]

    def verify_round():
        got, errs = {}, []

        def one(a):
            try:
                peers = [b for b in names if b != a]
                reps = ctls[a].calls([{"cmd": "verify", "peer": b}
                                      for b in peers])
                for b, rep in zip(peers, reps):
                    got[(a, b)] = rep["digest"]
            except Exception as e:
                errs.append("%s: %s" % (a, e))
        ths = [threading.Thread(target=one, args=(a,)) for a in names]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        if errs:
            raise RuntimeError("verify: %s" % "; ".join(errs))
        return all(got[(a, b)] == got[(b, a)] for a, b in pairs)

    rounds = 0
    while True:
        rounds += 1
        r0 = now()
        ok = verify_round()
        t = now()
        if ok:
            break
        if t - t0 > timeout:
            raise SystemExit("nbxbench heal: verify digests still differ "
                             "after %d s" % timeout)
        time.sleep(0.05)
    for th in ths:
        th.join()
    quiet_s = max(quiet[n][0] for n in names)
    in_quiet = sum(quiet[n][1] for n in names) - in0
    cpu_quiet = cpu_s() - cpu0
    # the same round again once the nodes are quiet: what a round costs
    # by itself
    time.sleep(1)
    q0 = now()
    if not verify_round():
        raise SystemExit("nbxbench heal: verify digests differ again")
    quiet = now() - q0
    recs = {n: ctls[n].call({"cmd": "status"})["node"]["records"] for n in names}
    print(json.dumps({"nodes": len(names), "links_s": round(t_links, 3),
                      "records_s": round(t_records, 3),
                      "verify_s": round(t - t0, 3),
                      "verify_round_s": round(t - r0, 3),
                      "verify_quiet_round_s": round(quiet, 3),
                      "verify_rounds": rounds, "pairs": len(pairs),
                      "cpu_s": round(cpu1 - cpu0, 2),
                      "changes_in": in1 - in0,
                      "quiet_s": round(quiet_s, 3),
                      "changes_in_quiet": in_quiet,
                      "cpu_quiet_s": round(cpu_quiet, 2),
                      "status_max_ms": {n: round(v * 1000, 1)
                                        for n, v in sorted(slow1.items())},
                      "records": recs,
                      "by_node": {n: [round(first[n][0], 3),
                                      round(first[n][1], 3)]
                                  for n in names}}))


# ------------------------------------------------------------------
# 9. reconciliation of an in-sync pair
# ------------------------------------------------------------------

def pid_cpu_s(pids):
    tot = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fs = f.read().rsplit(")", 1)[1].split()
        tot += int(fs[11]) + int(fs[12])        # utime, stime
    return tot / os.sysconf("SC_CLK_TCK")


def cmd_reconcile(argv):
    """One run of `verify PEER --repair` between two in-sync nodes: the
    seconds until it ended, the plaintext bytes both ways (the node's
    bytes_in + bytes_out for the peer, PINGs included), the records it
    exchanged and the CPU of both nbxd."""
    o, _ = args_of(argv, {"ctl": None, "peer": None, "pids": None,
                          "timeout": "600"})
    ctl = Ctl(o["ctl"])
    pids = []
    for path in o["pids"].split(","):
        with open(path) as f:
            pids.append(int(f.read().strip()))

    def peer():
        for p in ctl.call({"cmd": "peer_list"})["peers"]:
            if p["id"] == o["peer"]:
                return p
        raise SystemExit("nbxbench reconcile: no peer %s" % o["peer"])
    p0 = peer()
    cpu0 = pid_cpu_s(pids)
    t0 = now()
    rep = ctl.call({"cmd": "verify", "peer": o["peer"], "repair": True})
    if not rep.get("ok"):
        raise SystemExit("nbxbench reconcile: %s" % rep)
    while True:
        p1 = peer()
        if p1["reconcile_runs"] > rep["runs"] and not p1["reconcile_active"]:
            break
        if now() - t0 > float(o["timeout"]):
            raise SystemExit("nbxbench reconcile: no end in %s s" % o["timeout"])
        time.sleep(0.005)
    t1 = now()
    cpu1 = pid_cpu_s(pids)
    print(json.dumps({
        "n": ctl.call({"cmd": "status"})["node"]["records"],
        "secs": round(t1 - t0, 3),
        "bytes": (p1["bytes_in"] + p1["bytes_out"]) -
                 (p0["bytes_in"] + p0["bytes_out"]),
        "changes": (p1["reconcile_changes_in"] + p1["reconcile_changes_out"]) -
                   (p0["reconcile_changes_in"] + p0["reconcile_changes_out"]),
        "cpu_s": round(cpu1 - cpu0, 2)}))


# ------------------------------------------------------------------
# 7. memory
# ------------------------------------------------------------------

def rss_anon_kb(pid):
    """RssAnon of pid in kB, or None when pid is not an nbxd."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            if f.read().strip() != "nbxd":
                return None
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cmd_rss(argv):
    o, rest = args_of(argv, {"phase-file": None, "out": None,
                             "parent": None})
    nodes = [x.split("=", 1) for x in rest]
    parent = int(o["parent"])
    peak = {}
    while True:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        try:
            with open(o["phase-file"]) as f:
                phase = f.read().strip()
        except OSError:
            phase = ""
        grew = False
        for name, pidfile in nodes if phase else ():
            try:
                with open(pidfile) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            kb = rss_anon_kb(pid)
            if kb is not None and kb > peak.get((phase, name), -1):
                peak[(phase, name)] = kb
                grew = True
        if grew:
            tmp = o["out"] + ".tmp"
            with open(tmp, "w") as f:
                for (ph, name), kb in sorted(peak.items()):
                    f.write("%s %s %d\n" % (ph, name, kb))
            os.rename(tmp, o["out"])
        time.sleep(0.1)


def table(head, body):
    """Prints rows (lists of strings) as a Markdown table under head."""
    w = [max(len(r[i]) for r in body + [head]) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.ljust(x) for c, x in zip(cells, w)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in body:
        print(line(r))


def main():
    cmds = {"live-nbx": cmd_live_nbx, "live-pg": cmd_live_pg,
            "idle": cmd_idle, "heal": cmd_heal, "rss": cmd_rss,
            "reconcile": cmd_reconcile}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.stderr.write(__doc__)
        return 2
    cmds[sys.argv[1]](sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
