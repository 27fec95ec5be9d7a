#!/usr/bin/env python3
"""flakyproxy - a TCP proxy for the nbx integration tests that breaks links
on command.  Python 3 standard library (asyncio) only; 127.0.0.1 only.

    flakyproxy.py serve --ports-file FILE [--parent PID] [--seed N]
                        --route NAME:LINK:TARGET_PORT ...
    flakyproxy.py ctl CONTROL_PORT COMMAND...

`serve` listens on one ephemeral 127.0.0.1 port per route (NAME, e.g.
"ee.lv" for the connections ee opens to lv) and forwards to
127.0.0.1:TARGET_PORT.  Routes that share a LINK name (e.g. "ee-lv" for
both directions of a pair) share a mode.  Once listening it writes FILE
(atomically): one "NAME PORT" line per route and "control PORT".  With
--parent it exits by itself once that process is gone.

Control: one command per line on the control port, one reply line each.

    set LINKS MODE [ARG]   LINKS = all | link[,link...]; replies "ok"
        pass               forward bytes as they come
        cut                abort every connection, refuse new ones (RST)
        delay MS           hold each chunk MS milliseconds (order kept)
        slice              forward in 1..7-byte pieces with small sleeps,
                           so frames and TLS records arrive split
        reset              abort each connection after a random 0..4095
                           further bytes (mid-stream, mid-handshake)
        hang               a black hole: accept, read and drop everything;
                           connections that lost bytes are aborted when
                           the link leaves this mode
        pause [BYTES]      hold: each connection forwards at most BYTES
                           more bytes (default 0) in each direction, then
                           keeps what it reads, in order, and sends it when
                           the link leaves this mode; new connections are
                           accepted and connected, with BYTES each way
    stats                  one JSON object: per link, mode and counters;
                           "open" connections, "holding" those that hold
                           bytes back in pause
    ping                   "pong"
    quit                   stop the proxy

`ctl` sends one command and prints the reply (exit 1 on "error ...").
"""

import asyncio
import json
import os
import random
import socket
import struct
import sys

HOST = "127.0.0.1"
MODES = ("pass", "cut", "delay", "slice", "reset", "hang", "pause")


def rst(writer):
    """Close a connection abruptly: RST, not FIN."""
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class Link:
    def __init__(self, name):
        self.name = name
        self.mode = "pass"
        self.arg = 0
        self.conns = set()
        self.resumed = None           # an asyncio.Event, clear in pause
        self.stats = {"accepted": 0, "refused": 0, "resets": 0,
                      "bytes": 0, "sliced_bytes": 0, "slices": 0,
                      "delayed_chunks": 0, "dropped_bytes": 0,
                      "held": 0}


class Conn:
    def __init__(self, link, cr, cw):
        self.link = link
        self.cr, self.cw = cr, cw     # the dialling node's side
        self.ur = self.uw = None      # the target node's side
        self.budget = None            # bytes left before a reset
        self.poisoned = False         # bytes were dropped (hang)
        self.allow = [0, 0]           # bytes each way still let through
        self.waiting = 0              # directions holding bytes (pause)
        self.closed = False

    def abort(self, count=True):
        if self.closed:
            return
        self.closed = True
        if count:
            self.link.stats["resets"] += 1
        for w in (self.cw, self.uw):
            if w is not None:
                rst(w)
        self.link.conns.discard(self)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for w in (self.cw, self.uw):
            if w is not None:
                w.close()
        self.link.conns.discard(self)


class Proxy:
    def __init__(self, seed):
        self.links = {}
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()

    def link(self, name):
        if name not in self.links:
            self.links[name] = Link(name)
            self.links[name].resumed = asyncio.Event()
            self.links[name].resumed.set()
        return self.links[name]

    def arm_reset(self, c):
        c.budget = self.rng.randrange(4096)

    def set_mode(self, names, mode, arg):
        for n in names:
            lk = self.links[n]
            old = lk.mode
            lk.mode, lk.arg = mode, arg
            if mode == "pause":
                lk.resumed.set()    # wakes the holders: a new allowance
                lk.resumed.clear()
            else:
                lk.resumed.set()
            for c in list(lk.conns):
                c.allow = [arg, arg]
                if mode == "cut":
                    c.abort()
                elif old == "hang" and c.poisoned:
                    c.abort()
                elif mode == "reset":
                    self.arm_reset(c)
                else:
                    c.budget = None

    async def handle(self, link, target, cr, cw):
        lk = link
        if lk.mode == "cut":
            lk.stats["refused"] += 1
            rst(cw)
            return
        lk.stats["accepted"] += 1
        c = Conn(lk, cr, cw)
        c.allow = [lk.arg, lk.arg] if lk.mode == "pause" else [0, 0]
        lk.conns.add(c)
        if lk.mode == "reset":
            self.arm_reset(c)
        try:
            c.ur, c.uw = await asyncio.open_connection(HOST, target)
        except OSError:
            c.abort(count=False)
            return
        if c.closed:            # cut while connecting
            rst(c.uw)
            return
        # an aborted connection ends both pumps: their reads see EOF
        await asyncio.gather(self.pump(c, c.cr, c.uw, 0),
                             self.pump(c, c.ur, c.cw, 1),
                             return_exceptions=True)
        c.close()

    async def pump(self, c, r, w, way):
        """Forwards r -> w under the link's mode; a writer task keeps
        delayed chunks in order without stopping reads."""
        lk = c.link
        q = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def writer():
            try:
                while True:
                    item = await q.get()
                    if item is None:
                        if w.can_write_eof():
                            w.write_eof()
                        return
                    due, data = item
                    now = loop.time()
                    if due > now:
                        await asyncio.sleep(due - now)
                    await self.send(c, w, data, way)
            except (ConnectionError, OSError, RuntimeError):
                c.abort(count=False)

        wt = asyncio.ensure_future(writer())
        try:
            while not c.closed:
                data = await r.read(65536)
                if not data:
                    break
                if lk.mode == "hang":
                    lk.stats["dropped_bytes"] += len(data)
                    c.poisoned = True
                    continue
                due = loop.time()
                if lk.mode == "delay":
                    due += lk.arg / 1000.0
                    lk.stats["delayed_chunks"] += 1
                q.put_nowait((due, data))
        except (ConnectionError, OSError):
            c.abort(count=False)
        q.put_nowait(None)
        await wt

    async def send(self, c, w, data, way):
        lk = c.link
        while data and not c.closed:
            if lk.mode == "pause":
                if c.allow[way] <= 0:
                    # hold: this direction's reads go on into its queue
                    c.waiting += 1
                    lk.stats["held"] += 1
                    await lk.resumed.wait()
                    c.waiting -= 1
                    continue
                piece = data[:c.allow[way]]
                c.allow[way] -= len(piece)
                data = data[len(piece):]
                w.write(piece)
                lk.stats["bytes"] += len(piece)
                await w.drain()
                continue
            if lk.mode == "hang":
                lk.stats["dropped_bytes"] += len(data)
                c.poisoned = True
                return
            if lk.mode == "slice":
                n = self.rng.randint(1, 7)
            else:
                n = len(data)
            if c.budget is not None:
                if c.budget <= 0:
                    c.abort()
                    return
                n = min(n, c.budget)
                c.budget -= n
            piece, data = data[:n], data[n:]
            w.write(piece)
            lk.stats["bytes"] += len(piece)
            if lk.mode == "slice":
                lk.stats["sliced_bytes"] += len(piece)
                lk.stats["slices"] += 1
                await w.drain()
                await asyncio.sleep(self.rng.choice((0, 0, 0.0005, 0.001)))
            else:
                await w.drain()

    async def control(self, r, w):
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                reply = self.command(line.decode().split())
                w.write((reply + "\n").encode())
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    def command(self, words):
        if not words:
            return "error: empty command"
        if words[0] == "ping":
            return "pong"
        if words[0] == "quit":
            self.stop.set()
            return "ok"
        if words[0] == "stats":
            return json.dumps({n: dict(lk.stats, mode=lk.mode, arg=lk.arg,
                                       open=len(lk.conns),
                                       holding=sum(1 for c in lk.conns
                                                   if c.waiting))
                               for n, lk in sorted(self.links.items())},
                              sort_keys=True)
        if words[0] == "set" and len(words) in (3, 4):
            names = (sorted(self.links) if words[1] == "all"
                     else words[1].split(","))
            for n in names:
                if n not in self.links:
                    return "error: no link %s" % n
            mode = words[2]
            if mode not in MODES:
                return "error: no mode %s" % mode
            arg = 0
            if mode == "delay":
                if len(words) != 4 or not words[3].isdigit():
                    return "error: delay MS"
                arg = int(words[3])
            if mode == "pause" and len(words) == 4:
                if not words[3].isdigit():
                    return "error: pause [BYTES]"
                arg = int(words[3])
            self.set_mode(names, mode, arg)
            return "ok"
        return "error: unknown command %s" % " ".join(words)

    async def watch_parent(self, pid):
        while not self.stop.is_set():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                self.stop.set()
                return
            except PermissionError:
                pass
            await asyncio.sleep(0.5)


async def serve(args):
    routes, ports_file, parent, seed = [], None, None, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--route":
            name, link, port = args[i + 1].split(":")
            routes.append((name, link, int(port)))
        elif a == "--ports-file":
            ports_file = args[i + 1]
        elif a == "--parent":
            parent = int(args[i + 1])
        elif a == "--seed":
            seed = int(args[i + 1])
        else:
            sys.exit("flakyproxy: unknown option %s" % a)
        i += 2
    if not routes or not ports_file:
        sys.exit("flakyproxy: --route and --ports-file are required")
    p = Proxy(seed)
    servers, lines = [], []
    for name, link, target in routes:
        lk = p.link(link)

        def cb(cr, cw, lk=lk, target=target):
            return p.handle(lk, target, cr, cw)
        srv = await asyncio.start_server(cb, HOST, 0)
        servers.append(srv)
        lines.append("%s %d" % (name, srv.sockets[0].getsockname()[1]))
    ctl = await asyncio.start_server(p.control, HOST, 0)
    servers.append(ctl)
    lines.append("control %d" % ctl.sockets[0].getsockname()[1])
    tmp = ports_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(tmp, ports_file)
    if parent:
        asyncio.ensure_future(p.watch_parent(parent))
    await p.stop.wait()
    for s in servers:
        s.close()
    for lk in p.links.values():
        for c in list(lk.conns):
            c.abort(count=False)


def request(port, words):
    """Sends one control command; returns the proxy's one-line reply."""
    with socket.create_connection((HOST, int(port)), timeout=10) as s:
        s.sendall((" ".join(words) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            d = s.recv(65536)
            if not d:
                break
            buf += d
    return buf.decode().strip()


def ctl(port, words):
    reply = request(port, words)
    print(reply)
    return 1 if reply.startswith("error") or not reply else 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2:]))
        return 0
    if len(sys.argv) >= 4 and sys.argv[1] == "ctl":
        return ctl(sys.argv[2], sys.argv[3:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
