#!/usr/bin/env python3
"""Run a zkCli.sh scenario against a reference ZooKeeper and against zabd.

usage: zkcli_scenario.py [--zkcli PATH] [--outdir DIR] <zk host:port> <zabd host:port>

Each session is one zkCli.sh JVM fed a batch of commands on stdin (zkCli 3.8
without JLine reads stdin line by line and runs every line synchronously).
Its output is normalised (zxids, times, session ids, JVM/log noise, connection
banners removed; asynchronously printed watch events moved to a separate,
ordered event list) so the two servers' outputs can be diffed exactly.  On top
of the diff, key strings are asserted on each server's output so that the check
is not only "both behave the same".

Prints one PASS/FAIL line per check and a closing "N passed, N failed" line.
"""
import argparse
import base64
import difflib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

# digest ACL id for alice:secret, as ZooKeeper's DigestAuthenticationProvider makes it
ALICE_DIGEST = base64.b64encode(hashlib.sha1(b"alice:secret").digest()).decode()
USER_DIGEST = base64.b64encode(hashlib.sha1(b"user:pass").digest()).decode()

# Markers: a "get" of a missing node prints a fixed line we can find again.
# Output between BEGIN/END of a SORT block is order-insensitive: ls -R walks
# children in whatever order the server returns them, and whoami lists the
# session's identities from a Java hash set; ZooKeeper specifies neither order.
SORT_BEGIN = "get /compat-marker/sort-begin"
SORT_END = "get /compat-marker/sort-end"

SESSION_MAIN = f"""
create /cli
create /cli/p data1
create /cli/p again
create -s /cli/seq- s
create -s /cli/seq- s
create -e /cli/eph e
create -e -s /cli/ephs- e
create -c /cli/cont
create -c /cli/cont/child x
create -t 3600000 /cli/ttl tt
create -t 3600000 -s /cli/ttls- tt
create /cli/x/y nope
create -e /cli/eph/child nope
create /cli/acl1 data world:anyone:r
getAcl /cli/acl1
set /cli/acl1 nope
ls /cli
{SORT_BEGIN}
ls -R /cli
{SORT_END}
ls -s /cli
ls /cli/missing
get /cli/p
get -s /cli/p
get /cli/missing
stat /cli/eph
stat /cli/ttl
stat /cli/cont
get -w /cli/p
set /cli/p data2
set /cli/p data2b
get /cli/p
set -v 2 /cli/p data3
set -v 2 /cli/p data4
set -s /cli/p data5
stat /cli/p
stat /cli/missing
stat -w /cli/later
create /cli/later
ls -w /cli
create /cli/w
create /cli/w2
delete /cli
delete -v 0 /cli/seq-0000000001
delete -v 5 /cli/seq-0000000002
delete /cli/seq-0000000002
delete /cli/missing
deleteall /cli/cont
ls /cli
getAcl /cli/p
setAcl /cli/p world:anyone:r
getAcl /cli/p
set /cli/p denied
get /cli/p
setAcl /cli/p world:anyone:cdrwa
setAcl -v 5 /cli/w world:anyone:cdrw
setAcl -v 0 /cli/w world:anyone:cdrw
getAcl -s /cli/w
{SORT_BEGIN}
whoami
{SORT_END}
addauth digest user:pass
{SORT_BEGIN}
whoami
{SORT_END}
create /cli/authnode secret
setAcl /cli/authnode auth::cdrwa
getAcl /cli/authnode
get /cli/authnode
create /cli/dnode secret2
setAcl /cli/dnode digest:alice:{ALICE_DIGEST}:cdrwa
get /cli/dnode
getAcl /cli/dnode
set /cli/dnode x
addWatch -m PERSISTENT_RECURSIVE /cli/r
create /cli/r
create /cli/r/a
set /cli/r/a v
create /cli/r/a/b
delete /cli/r/a/b
delete /cli/r/a
addWatch -m PERSISTENT /cli/pw
create /cli/pw
create /cli/pw/c
set /cli/pw x
delete /cli/pw/c
getEphemerals
getEphemerals /cli/ephs
getAllChildrenNumber /cli
getAllChildrenNumber /cli/missing
sync /cli
ls /zookeeper
get /zookeeper/quota
getAcl /zookeeper
quit
"""

SESSION_OTHER = f"""
ls /cli
getEphemerals
get /cli/authnode
get /cli/dnode
addauth digest alice:wrong
get /cli/dnode
addauth digest alice:secret
get /cli/dnode
getAcl /cli/dnode
delete /cli/dnode
addauth digest user:pass
get /cli/authnode
{SORT_BEGIN}
whoami
{SORT_END}
ls /cli/r
deleteall /cli
ls /cli
quit
"""

SESSIONS = [("main", SESSION_MAIN), ("other", SESSION_OTHER)]

# Strings that must appear in the normalised output of each session.
EXPECT = {
    "main": [
        "Created /cli",
        "Node already exists: /cli/p",
        # sequence number = parent's cversion, printed as %010d
        "Created /cli/seq-0000000001",
        "Created /cli/seq-0000000002",
        "Created /cli/ephs-0000000004",
        "Created /cli/ttl",
        "Created /cli/ttls-0000000007",
        "Node does not exist: /cli/x/y",
        "Ephemerals cannot have children: /cli/eph/child",
        "Insufficient permission : /cli/acl1",
        "[acl1, cont, eph, ephs-0000000004, p, seq-0000000001, seq-0000000002, ttl, ttls-0000000007]",
        "/cli/cont/child",
        "Node does not exist: /cli/missing",
        "ephemeralOwner = <session>",
        "version No is not valid : /cli/p",
        "dataVersion = 4",
        "Node not empty: /cli",
        "version No is not valid : /cli/seq-0000000002",
        "'world,'anyone\n: r",
        "Insufficient permission : /cli/p",
        "Auth scheme: User\nip: 127.0.0.1",
        "Auth scheme: User\ndigest: user\nip: 127.0.0.1",
        f"'digest,'user:{USER_DIGEST}\n: cdrwa",
        "Insufficient permission : /cli/dnode",
        "[/cli/eph, /cli/ephs-0000000004]",
        "Sync is OK",
        "[config, quota]",
    ],
    "other": [
        "[acl1, authnode, dnode, later, p, pw, r, ttl, ttls-0000000007, w, w2]",
        "[]",
        "Insufficient permission : /cli/authnode",
        "Insufficient permission : /cli/dnode",
        "secret2",
        f"'digest,'alice:{ALICE_DIGEST}\n: cdrwa",
        "secret",
        # a digest addauth with a wrong password still adds an identity
        "Auth scheme: User\ndigest: alice\ndigest: alice\ndigest: user\nip: 127.0.0.1",
        "Node does not exist: /cli",
    ],
}

# The ordered watch events each session must see (connection state events excluded).
EXPECT_EVENTS = {
    "main": [
        "type:NodeDataChanged path:/cli/p",        # get -w, then two sets: fires once
        "type:NodeCreated path:/cli/later",        # stat -w on a missing node
        "type:NodeChildrenChanged path:/cli",      # ls -w, then two creates: fires once
        "type:NodeCreated path:/cli/r",            # addWatch -m PERSISTENT_RECURSIVE
        "type:NodeCreated path:/cli/r/a",
        "type:NodeDataChanged path:/cli/r/a",
        "type:NodeCreated path:/cli/r/a/b",
        "type:NodeDeleted path:/cli/r/a/b",
        "type:NodeDeleted path:/cli/r/a",
        "type:NodeCreated path:/cli/pw",           # addWatch -m PERSISTENT
        "type:NodeChildrenChanged path:/cli/pw",
        "type:NodeDataChanged path:/cli/pw",
        "type:NodeChildrenChanged path:/cli/pw",
    ],
    "other": [],
}

NOISE_PREFIXES = (
    "SLF4J:",
    "Connecting to ",
    "Welcome to ZooKeeper!",
    "JLine support is",
    "WATCHER::",
    "ctime = ",
    "mtime = ",
    "log4j:",
)
EVENT_RE = re.compile(r"^WatchedEvent state:(\S+) type:(\S+) path:(\S+)$")
ZXID_LINE_RE = re.compile(r"^(cZxid|mZxid|pZxid) = 0x[0-9a-fA-F]+$")
OWNER_RE = re.compile(r"^ephemeralOwner = 0x([0-9a-fA-F]+)$")
LIST_RE = re.compile(r"^\[(.*)\]$")
DATE_RE = re.compile(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d [A-Z]+ \d{4}\b")
HEX_RE = re.compile(r"\b0x[0-9a-fA-F]{5,}\b")
MARK_BEGIN = "Node does not exist: /compat-marker/sort-begin"
MARK_END = "Node does not exist: /compat-marker/sort-end"


def normalise(raw):
    """Return (lines, events) of a zkCli session's combined stdout+stderr."""
    lines, events = [], []
    sort_buf = None
    for line in raw.splitlines():
        line = line.rstrip()
        if not line or line.startswith(NOISE_PREFIXES):
            continue
        m = EVENT_RE.match(line)
        if m:
            state, typ, path = m.groups()
            if typ == "None":  # connection state changes: SyncConnected/Closed
                continue
            events.append(f"type:{typ} path:{path}" + ("" if state == "SyncConnected" else f" state:{state}"))
            continue
        if ZXID_LINE_RE.match(line):
            line = line.split(" = ")[0] + " = <zxid>"
        m = OWNER_RE.match(line)
        if m and int(m.group(1), 16) != 0:
            line = "ephemeralOwner = <session>"
        m = LIST_RE.match(line)
        if m and m.group(1):
            line = "[" + ", ".join(sorted(m.group(1).split(", "))) + "]"
        line = DATE_RE.sub("<date>", line)
        line = HEX_RE.sub("<hex>", line)
        if line == MARK_BEGIN:
            sort_buf = []
            continue
        if line == MARK_END:
            lines.extend(sorted(sort_buf or []))
            sort_buf = None
            continue
        if sort_buf is not None:
            sort_buf.append(line)
        else:
            lines.append(line)
    if sort_buf is not None:
        lines.append("<missing sort-end marker>")
        lines.extend(sort_buf)
    return lines, events


_running = []  # zkCli process groups to kill if we are killed


def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _on_term(signum, frame):
    for p in _running:
        _kill_group(p)
    sys.exit(128 + signum)


def run_session(zkcli, hostport, script, timeout):
    """Run one zkCli.sh session; return (exit status or 'timeout', output, seconds).

    zkCli.sh runs java as a child (no exec), so the session gets its own
    process group and the whole group is killed on timeout."""
    env = dict(os.environ)
    # client JVM: small heap, fast start; no JLine, so stdin is read line by line
    env["CLIENT_JVMFLAGS"] = env.get("CLIENT_JVMFLAGS", "") + " -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto"
    t0 = time.time()
    p = subprocess.Popen([zkcli, "-server", hostport], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _running.append(p)
    try:
        out, _ = p.communicate(script.lstrip("\n").encode(), timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, _ = p.communicate()
        rc = "timeout"
    finally:
        _kill_group(p)  # leftovers, if any
        _running.remove(p)
    return rc, out.decode("utf-8", "replace"), time.time() - t0


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zkcli", default="/usr/share/zookeeper/bin/zkCli.sh")
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("zk")
    ap.add_argument("zabd")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    outdir = args.outdir or f"/tmp/zabd-compat-zkcli.{os.getpid()}"
    os.makedirs(outdir, exist_ok=True)
    ck = Checks()
    servers = [("zookeeper", args.zk), ("zabd", args.zabd)]

    for sname, script in SESSIONS:
        results = {}
        # Run the same session on both servers (reference first).
        for label, hp in servers:
            rc, raw, secs = run_session(args.zkcli, hp, script, args.timeout)
            lines, events = normalise(raw)
            base = os.path.join(outdir, f"{sname}.{label}")
            with open(base + ".raw", "w") as f:
                f.write(raw)
            with open(base + ".norm", "w") as f:
                f.write("\n".join(lines) + "\n--- events ---\n" + "\n".join(events) + "\n")
            print(f"# zkCli session '{sname}' on {label} ({hp}): rc={rc}, {secs:.1f}s, "
                  f"{len(lines)} lines, {len(events)} events -> {base}.norm")
            results[label] = (rc, raw, lines, events)

        for label, _ in servers:
            rc, raw, lines, events = results[label]
            text = "\n".join(lines)
            # zkCli's quit exits 1 when any command of the session failed
            ck.check(f"zkcli[{sname}] {label}: session ran to 'quit' (rc={rc})", rc in (0, 1),
                     raw[-2000:] if rc not in (0, 1) else "")
            missing = [s for s in EXPECT[sname] if s not in text]
            for s in EXPECT[sname]:
                ck.check(f"zkcli[{sname}] {label}: output has {s!r}", s not in missing)
            ck.check(f"zkcli[{sname}] {label}: watch events in order", events == EXPECT_EVENTS[sname],
                     f"got {events}, expected {EXPECT_EVENTS[sname]}")
            exc = [l for l in lines if re.search(r"Exception|^\s+at |ConnectionLoss|SessionExpired", l)]
            ck.check(f"zkcli[{sname}] {label}: no exceptions/connection loss", not exc, "; ".join(exc[:5]))

        zl, ze = results["zookeeper"][2], results["zookeeper"][3]
        bl, be = results["zabd"][2], results["zabd"][3]
        diff = list(difflib.unified_diff(zl, bl, "zookeeper", "zabd", lineterm="", n=2))
        if diff:
            with open(os.path.join(outdir, f"{sname}.diff"), "w") as f:
                f.write("\n".join(diff) + "\n")
        ck.check(f"zkcli[{sname}] normalised output identical (zookeeper vs zabd)", not diff,
                 "\n" + "\n".join(diff[:80]))
        zr, br = results["zookeeper"][0], results["zabd"][0]
        ck.check(f"zkcli[{sname}] exit status identical (zookeeper vs zabd)", zr == br,
                 f"zookeeper rc={zr}, zabd rc={br}")
        ck.check(f"zkcli[{sname}] watch events identical (zookeeper vs zabd)", ze == be,
                 f"\n  zookeeper: {ze}\n  zabd:      {be}")

    print(f"{ck.passed} passed, {ck.failed} failed")
    return 0 if ck.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
