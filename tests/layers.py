#!/usr/bin/env python3
"""layers.py - checks the layering of nbx's modules from the sources.

    python3 tests/layers.py [ROOT]     check the tree at ROOT (default .)
    python3 tests/layers.py --selftest show that each rule fails when broken

The Makefile compiles each module with its own and the lower modules'
include paths only, so an upward include already fails to compile; this
check says it by name, and checks what the compiler cannot:

  - every #include "x.h" of a module names a header of that module or of a
    module below it (MODULES: a module and the modules it may use);
  - the graph of includes between modules has no cycle;
  - the pure core (proto) and the sync protocol (sync) include no event
    loop, no TLS and no threads, and read no clock of their own; proto
    opens no file (its callers read files and hand it the bytes);
  - no tool includes a header of the daemon's shell.

Exit 0 when the tree keeps every rule, 1 (with one line per breach,
FILE:LINE: what) when it does not.
"""

import os
import re
import shutil
import sys
import tempfile

# module -> (folder, modules it may use); the Makefile's INC_* say the same
MODULES = {
    "proto": ("proto", []),
    "store": ("store", ["proto"]),
    "conf": ("daemon/conf", ["proto"]),
    "pki": ("daemon/pki", ["proto"]),
    "sync": ("daemon/sync", ["store", "proto"]),
    "daemon": ("daemon", ["sync", "store", "conf", "pki", "proto"]),
    "tools": ("tools", ["store", "conf", "pki", "proto"]),
}

# system headers a module must not include
FORBIDDEN_SYS = {
    "proto": ["uv.h", "openssl/", "lmdb.h", "pthread.h", "jansson.h"],
    "sync": ["uv.h", "openssl/", "pthread.h", "lmdb.h"],
    "conf": ["uv.h", "openssl/", "lmdb.h"],
    "store": ["uv.h", "openssl/ssl.h"],
    "pki": ["uv.h", "lmdb.h"],
    "tools": ["uv.h"],
}
CLOCK = re.compile(r"\b(clock_gettime|gettimeofday|uv_now|uv_hrtime)\s*\("
                   r"|\btime\s*\(\s*(NULL|0)\s*\)")
FILE_IO = re.compile(r"\b(fopen|fdopen|freopen|opendir|openat|open|creat)"
                     r"\s*\(")
NO_CLOCK = ("proto", "sync")
NO_FILE_IO = ("proto",)
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def module_of_dir(path):
    """The module whose folder holds path (the deepest match)."""
    best = None
    for name, (folder, _) in MODULES.items():
        if os.path.dirname(path) == folder:
            best = name
    return best


def strip_comments(text):
    """Text with C comments and string literals blanked, lines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append('"' + " " * (j - i - 1) + ('"' if j < n else ""))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def check(root):
    """Returns the list of breaches in the tree at root."""
    bad = []
    headers = {}            # "x.h" -> module
    files = []              # (module, path relative to root)
    for name, (folder, _) in MODULES.items():
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if not (f.endswith(".c") or f.endswith(".h")):
                continue
            rel = os.path.join(folder, f)
            files.append((name, rel))
            if f.endswith(".h"):
                if f in headers:
                    bad.append("%s: header name also in module %s: an "
                               "include of it is ambiguous"
                               % (rel, headers[f]))
                headers[f] = name
    edges = {m: set() for m in MODULES}
    for mod, rel in files:
        allowed = set(MODULES[mod][1]) | {mod}
        with open(os.path.join(root, rel), encoding="utf-8",
                  errors="replace") as fh:
            text = fh.read()
        for no, line in enumerate(text.split("\n"), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, hdr = m.groups()
            if kind == "<":
                for f in FORBIDDEN_SYS.get(mod, []):
                    if hdr == f or (f.endswith("/") and hdr.startswith(f)):
                        bad.append("%s:%d: includes <%s>, which module %s "
                                   "may not use" % (rel, no, hdr, mod))
                continue
            base = os.path.basename(hdr)
            owner = headers.get(base)
            if owner is None:
                bad.append("%s:%d: includes \"%s\", a header of no module"
                           % (rel, no, hdr))
                continue
            if owner != mod:
                edges[mod].add(owner)
            if owner not in allowed:
                what = "the daemon's shell" if owner == "daemon" else \
                    "module %s" % owner
                bad.append("%s:%d: includes \"%s\" of %s, above or beside "
                           "module %s (which may use: %s)"
                           % (rel, no, hdr, what, mod,
                              ", ".join(MODULES[mod][1]) or "nothing"))
        code = strip_comments(text).split("\n")
        for no, line in enumerate(code, 1):
            if mod in NO_CLOCK and CLOCK.search(line):
                bad.append("%s:%d: reads a clock; module %s takes the time "
                           "as an argument" % (rel, no, mod))
            if mod in NO_FILE_IO and FILE_IO.search(line):
                bad.append("%s:%d: opens a file; module %s is handed bytes "
                           "by its callers" % (rel, no, mod))
    # cycles between modules, from the includes actually written
    state = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cyc = path[path.index(n):] + [n] if n in path else [m, n]
                bad.append("modules include each other in a circle: %s"
                           % " -> ".join(cyc))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2
    for m in MODULES:
        if m not in state:
            visit(m, [m])
    return bad


def selftest():
    """Each rule, broken on purpose in a small tree, must be reported."""
    # name: (tree, what the report must say)
    cases = {
        "upward include": ({"proto/a.h": '#include "b.h"\n',
                            "store/b.h": '#include "a.h"\n'},
                           "above or beside module proto"),
        "tool includes the shell": ({"daemon/node.h": "",
                                     "tools/t.c": '#include "node.h"\n'},
                                    "the daemon's shell"),
        "cycle": ({"daemon/conf/c.h": '#include "p.h"\n',
                   "daemon/pki/p.h": '#include "c.h"\n'}, "circle"),
        "clock in proto": ({"proto/h.c": "int f(void) { return "
                            "clock_gettime(0, 0); }\n"}, "reads a clock"),
        "file in proto": ({"proto/f.c": 'void g(void) { fopen("x", "r"); }\n'},
                          "opens a file"),
        "libuv in sync": ({"daemon/sync/s.c": "#include <uv.h>\n"},
                          "<uv.h>"),
    }
    ok = True
    for name, (tree, want) in cases.items():
        d = tempfile.mkdtemp(prefix="nbx-layers-")
        try:
            for rel, text in tree.items():
                os.makedirs(os.path.join(d, os.path.dirname(rel)),
                            exist_ok=True)
                with open(os.path.join(d, rel), "w") as fh:
                    fh.write(text)
            found = check(d)
        finally:
            shutil.rmtree(d)
        said = [f for f in found if want in f]
        if said:
            print("layers selftest: %s: refused (%s)" % (name, said[0]))
        else:
            print("layers selftest: %s: NOT refused as it should be (%s)"
                  % (name, found))
            ok = False
    # and a clean tree passes: comments and strings do not count
    d = tempfile.mkdtemp(prefix="nbx-layers-")
    try:
        os.makedirs(os.path.join(d, "proto"))
        os.makedirs(os.path.join(d, "store"))
        with open(os.path.join(d, "proto/a.h"), "w") as fh:
            fh.write('/* fopen( in a comment */\nconst char *s = "time(NULL)";\n')
        with open(os.path.join(d, "store/b.c"), "w") as fh:
            fh.write('#include "a.h"\n')
        found = check(d)
    finally:
        shutil.rmtree(d)
    if found:
        print("layers selftest: a clean tree was refused: %s" % found[0])
        ok = False
    return 0 if ok else 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--selftest":
        return selftest()
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = check(root)
    for b in bad:
        print("layers: " + b)
    if bad:
        print("layers: %d breach(es) of the module layering (tests/layers.py)"
              % len(bad))
        return 1
    print("layers: %d modules, no upward include, no cycle, proto and sync "
          "free of clocks, event loop and TLS" % len(MODULES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
