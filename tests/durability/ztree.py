#!/usr/bin/env python3
"""Tree building, dumping and comparing for tests/durability/migration.sh (kazoo 2.11).

  ztree.py build   HOST:PORT               the test tree under /mig (no ephemerals)
  ztree.py hold    HOST:PORT NAME STATUS   a session owning ephemerals /mig/eph-NAME and
                                           /mig/ephseq-NAME-<n>; appends its state changes to
                                           the STATUS file (JSON lines) until killed
  ztree.py dump    HOST:PORT OUT.json      every znode: data digest, ACL, stat
  ztree.py compare BEFORE.json AFTER.json  PASS/FAIL per znode and a diff of what differs
  ztree.py after   HOST:PORT BEFORE.json   writes that must continue the history (versions),
                                           ACLs enforced, container and TTL clean-up
  ztree.py probe   HOST:PORT OUT.json      sequential creates and a versioned set, recorded
  ztree.py probecmp REF.json GOT.json LABEL  the probes gave the same names and versions
  ztree.py vanish  HOST:PORT PATH MIN_S MAX_S  PATH must exist now and vanish between MIN_S
                                           and MAX_S seconds from now (session expiry)
  ztree.py session HOST:PORT STATUS...     each holder reconnected with its own session
Every command prints PASS/FAIL lines and ends with "N passed, N failed"; every wait is bounded.
"""

import base64
import difflib
import hashlib
import json
import logging
import os
import struct
import sys
import time
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.serialization import int_struct, read_string, write_string
from kazoo.protocol.states import KazooState, ZnodeStat
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

OP_TIMEOUT = 20.0
ROOT = "/mig"
USER, PASSWORD = "migrator", "s3cret"
AUTH = [("digest", f"{USER}:{PASSWORD}")]
TTL_MS = 1500
STAT_FIELDS = [
    "czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
    "ephemeralOwner", "dataLength", "numChildren", "pzxid",
]

PASSED = 0
FAILED = 0


def check(ok, what, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"PASS {what}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL {what}{': ' + detail if detail else ''}", flush=True)
    return ok


def finish():
    print(f"{PASSED} passed, {FAILED} failed", flush=True)
    sys.exit(1 if FAILED else 0)


def connect(hosts, timeout_s=10.0, **kw):
    c = KazooClient(
        hosts=hosts,
        timeout=timeout_s,
        auth_data=AUTH,
        connection_retry=dict(max_tries=-1, delay=0.1, backoff=1.5, max_delay=0.5),
        command_retry=dict(max_tries=3, delay=0.2, max_delay=1),
        **kw,
    )
    c.start(timeout=30)
    return c


# -- raw requests kazoo has no API for --------------------------------------------------------


def _acl_bytes(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b.extend(int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id))
    return bytes(b)


def _create_body(path, data, acl, flags):
    b = bytearray(write_string(path))
    b.extend(int_struct.pack(-1) if data is None else int_struct.pack(len(data)) + data)
    b.extend(_acl_bytes(acl))
    b.extend(int_struct.pack(flags))
    return bytes(b)


def _read_path(buf, off):
    path, off = read_string(buf, off)
    return path


class RawCreate(namedtuple("RawCreate", "path data acl flags")):
    type = 1

    def __bool__(self):
        return True

    def serialize(self):
        return _create_body(self.path, self.data, self.acl, self.flags)

    @classmethod
    def deserialize(cls, buf, off):
        return _read_path(buf, off)


class CreateContainer(namedtuple("CreateContainer", "path data acl flags")):
    type = 19

    def __bool__(self):
        return True

    def serialize(self):
        return _create_body(self.path, self.data, self.acl, self.flags)

    @classmethod
    def deserialize(cls, buf, off):
        return _read_path(buf, off)


class CreateTTL(namedtuple("CreateTTL", "path data acl flags ttl")):
    type = 21

    def __bool__(self):
        return True

    def serialize(self):
        return _create_body(self.path, self.data, self.acl, self.flags) + struct.pack("!q", self.ttl)

    @classmethod
    def deserialize(cls, buf, off):
        return _read_path(buf, off)


def raw(c, req):
    ar = c.handler.async_result()
    c._call(req, ar)
    return ar.get(timeout=OP_TIMEOUT)


# -- build --------------------------------------------------------------------------------------


def secret_acl():
    return [make_digest_acl(USER, PASSWORD, all=True)]


def cmd_build(hosts):
    c = connect(hosts)
    r = ROOT
    c.create(r, b"migration root")
    # Data of several sizes, text and binary; null data (raw create).
    c.create(r + "/sizes")
    c.create(r + "/sizes/empty", b"")
    c.create(r + "/sizes/one", b"1")
    c.create(r + "/sizes/text", ("caf\u00e9 \u2603 " * 20).encode())
    c.create(r + "/sizes/4k", os.urandom(4000))
    c.create(r + "/sizes/100k", os.urandom(100_000))
    c.create(r + "/sizes/1m", bytes(i % 251 for i in range(1_000_000)))
    raw(c, RawCreate(r + "/sizes/null", None, OPEN_ACL_UNSAFE, 0))
    # Sequential nodes, with a delete in between so that cversion != the number of children.
    c.create(r + "/seq")
    names = [c.create(r + "/seq/item-", b"s%d" % i, sequence=True) for i in range(5)]
    c.delete(names[1])
    c.create(r + "/seq/plain", b"p")
    c.create(r + "/seq/item-", b"s5", sequence=True)
    # ACLs: a digest-only node, a node readable by anyone but writable by the digest user, and a
    # setACL (aversion 1).
    c.create(r + "/secret", b"classified", acl=secret_acl())
    c.create(r + "/secret/inner", b"inner", acl=secret_acl())
    c.create(r + "/mixed", b"m", acl=[make_acl("world", "anyone", read=True)] + secret_acl())
    c.create(r + "/acl-changed", b"a")
    c.set_acls(r + "/acl-changed", [make_acl("world", "anyone", read=True, write=True, create=True, delete=True)] + secret_acl())
    # Versions: setData three times, then a set with the right version.
    c.create(r + "/versioned", b"v0")
    for i in range(1, 4):
        c.set(r + "/versioned", b"v%d" % i)
    c.set(r + "/versioned", b"v4", version=3)
    # Nested nodes; a deleted node (pzxid and cversion move).
    c.create(r + "/a/b/c/d", b"deep", makepath=True)
    c.create(r + "/a/b/gone", b"x")
    c.delete(r + "/a/b/gone")
    # A container with a child (a childless container is removed by the container manager),
    # and an empty container that never had children (never removed).
    raw(c, CreateContainer(r + "/container", b"box", OPEN_ACL_UNSAFE, 4))
    c.create(r + "/container/child", b"c")
    raw(c, CreateContainer(r + "/container-fresh", b"", OPEN_ACL_UNSAFE, 4))
    # A TTL node kept by its child (a TTL node is removed only once childless and expired).
    raw(c, CreateTTL(r + "/ttl", b"t", OPEN_ACL_UNSAFE, 5, TTL_MS))
    c.create(r + "/ttl/keep", b"k")
    # A quota, as zkCli's setquota makes one: the server keeps the stats node's data up to date
    # (outside any transaction) and recomputes it at load.
    c.create(r + "/quota/a", b"0123456789", makepath=True)
    c.create(r + "/quota/b/c", b"x" * 33, makepath=True)
    q = "/zookeeper/quota" + r + "/quota"
    c.ensure_path(q)
    c.create(q + "/zookeeper_limits", b"count=10,bytes=1000")
    c.create(q + "/zookeeper_stats", b"count=0,bytes=0")
    c.create(r + "/quota/d", b"12345")
    # A multi: two creates and a set under one zxid.
    t = c.transaction()
    t.create(r + "/multi", b"m")
    t.create(r + "/multi/one", b"1")
    t.set_data(r + "/versioned", b"v5", version=4)
    check(all(x is not False and not isinstance(x, Exception) for x in t.commit()), "multi committed")
    check(True, f"tree built on {hosts}")
    c.stop()
    c.close()
    finish()


# -- hold -----------------------------------------------------------------------------------


def cmd_hold(hosts, name, status_path, timeout_ms, max_s):
    """Owns ephemerals; reports every state change; exits after max_s (never hangs)."""

    def status(**kw):
        kw["t"] = time.time()
        with open(status_path, "a") as f:
            f.write(json.dumps(kw) + "\n")

    c = KazooClient(
        hosts=hosts,
        timeout=timeout_ms / 1000.0,
        auth_data=AUTH,
        connection_retry=dict(max_tries=-1, delay=0.1, backoff=1.2, max_delay=0.3),
    )
    c.add_listener(lambda state: status(state=str(state), session=hex(c.client_id[0]) if c.client_id else None))
    c.start(timeout=30)
    sid, passwd = c.client_id
    c.create(f"{ROOT}/eph-{name}", name.encode(), ephemeral=True)
    seq = c.create(f"{ROOT}/ephseq-{name}-", b"es", ephemeral=True, sequence=True)
    status(state="READY", session=hex(sid), passwd=base64.b64encode(passwd).decode(),
           timeout=c._session_timeout, seq=seq)
    deadline = time.time() + max_s
    while time.time() < deadline:
        time.sleep(0.2)
        if os.path.exists(status_path + ".stop"):
            c.stop()
            c.close()
            status(state="CLOSED")
            return
    status(state="GAVE-UP")


# -- dump -----------------------------------------------------------------------------------


def stat_dict(s):
    return {
        "czxid": s.czxid, "mzxid": s.mzxid, "ctime": s.ctime, "mtime": s.mtime,
        "version": s.version, "cversion": s.cversion, "aversion": s.aversion,
        "ephemeralOwner": s.ephemeralOwner, "dataLength": s.dataLength,
        "numChildren": s.numChildren, "pzxid": s.pzxid,
    }


def dump_tree(c):
    out = {}
    stack = ["/"]
    while stack:
        p = stack.pop()
        data, stat = c.get(p)
        acls, _ = c.get_acls(p)
        children = sorted(c.get_children(p))
        if data is None:
            summary = None
        else:
            summary = {
                "len": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "head": data[:24].decode("latin-1"),
            }
        out[p] = {
            "data": summary,
            "acl": sorted([a.perms, a.id.scheme, a.id.id] for a in acls),
            "stat": stat_dict(stat),
            "children": children,
        }
        base = "" if p == "/" else p
        stack.extend(f"{base}/{ch}" for ch in reversed(children))
    return out


def cmd_dump(hosts, out_path):
    c = connect(hosts)
    tree = dump_tree(c)
    c.stop()
    c.close()
    with open(out_path, "w") as f:
        json.dump(tree, f, indent=1, sort_keys=True)
        f.write("\n")
    check(len(tree) > 30, f"dumped {len(tree)} znodes from {hosts} to {out_path}")
    finish()


# -- compare --------------------------------------------------------------------------------


def cmd_compare(before_path, after_path, label):
    before = json.load(open(before_path))
    after = json.load(open(after_path))
    for p in sorted(set(before) | set(after)):
        b, a = before.get(p), after.get(p)
        if b is None or a is None:
            check(False, f"{label} {p}", "only before" if a is None else "only after")
            continue
        diffs = []
        if b["data"] != a["data"]:
            diffs.append(f"data {b['data'] and b['data']['len']}B -> {a['data'] and a['data']['len']}B")
        if b["acl"] != a["acl"]:
            diffs.append(f"acl {b['acl']} -> {a['acl']}")
        for k in STAT_FIELDS:
            if b["stat"][k] != a["stat"][k]:
                diffs.append(f"{k} {b['stat'][k]} -> {a['stat'][k]}")
        if b["children"] != a["children"]:
            diffs.append(f"children {b['children']} -> {a['children']}")
        check(not diffs, f"{label} {p} (data, ACL, stat)", "; ".join(diffs))
    if before != after:
        # One line per znode, so that the diff shows whole nodes side by side.
        def lines(tree):
            return [f"{p} {json.dumps(tree[p], sort_keys=True)}" for p in sorted(tree)]

        text_b, text_a = lines(before), lines(after)
        diff = list(difflib.unified_diff(text_b, text_a, before_path, after_path, lineterm="", n=1))
        print("---- normalized tree diff (first 120 lines) ----")
        print("\n".join(diff[:120]))
    finish()


# -- after ----------------------------------------------------------------------------------


def wait_until(cond, timeout_s, step=0.25):
    deadline = time.time() + timeout_s
    while True:
        v = cond()
        if v or time.time() >= deadline:
            return v
        time.sleep(step)


def cmd_after(hosts, before_path):
    before = json.load(open(before_path))
    c = connect(hosts)
    r = ROOT
    # Versions continue: the version read before the move is the one that works.
    v = before[r + "/versioned"]["stat"]["version"]
    st = c.set(r + "/versioned", b"after", version=v)
    check(st.version == v + 1, f"setData with version {v} succeeds", str(st))
    # ACLs still enforced: without auth the secret is NoAuth.
    anon = KazooClient(hosts=hosts, timeout=10.0)
    anon.start(timeout=30)
    try:
        anon.get(r + "/secret")
        check(False, "digest ACL enforced for an unauthenticated session")
    except Exception as e:  # NoAuthError
        check(type(e).__name__ == "NoAuthError", "digest ACL enforced for an unauthenticated session", repr(e))
    anon.stop()
    anon.close()
    # The container is still a container: emptied, the container manager removes it.
    c.delete(r + "/container/child")
    gone = wait_until(lambda: c.exists(r + "/container") is None, 15)
    check(gone, "emptied container removed by the container manager")
    check(c.exists(r + "/container-fresh") is not None, "a container that never had children stays")
    # The TTL node is still a TTL node: childless and past its TTL, it is removed.
    c.delete(r + "/ttl/keep")
    gone = wait_until(lambda: c.exists(r + "/ttl") is None, 15)
    check(gone, f"childless TTL node removed after its TTL ({TTL_MS} ms)")
    c.stop()
    c.close()
    finish()


# -- probe ----------------------------------------------------------------------------------


def cmd_probe(hosts, out_path):
    """Writes whose outcome depends on the persisted state (sequence numbers come from the
    parent's cversion history); the same probe on the old server restarted on a copy of the
    directory must give the same answers."""
    c = connect(hosts)
    r = ROOT
    res = {
        "seq": c.create(r + "/seq/item-", b"probe", sequence=True),
        "seq-container": c.create(r + "/container-fresh/probe-", b"probe", sequence=True),
    }
    res["seq-stat"] = {k: v for k, v in stat_dict(c.exists(r + "/seq")).items() if k in ("cversion", "numChildren")}
    c.stop()
    c.close()
    with open(out_path, "w") as f:
        json.dump(res, f, sort_keys=True)
    check(True, f"probe on {hosts}: {res}")
    finish()


def cmd_probecmp(ref_path, got_path, label):
    ref = json.load(open(ref_path))
    got = json.load(open(got_path))
    for k in sorted(ref):
        check(ref[k] == got.get(k), f"{label}: probe {k} gives what the original server gives ({ref[k]})", f"got {got.get(k)}")
    finish()


# -- vanish / session -----------------------------------------------------------------------


def cmd_vanish(hosts, path, min_s, max_s, started_at=None):
    """started_at: the epoch time taken before the server started, so that a slow start of
    this watcher (a loaded machine) cannot make the session look short-lived."""
    c = connect(hosts)
    t0 = started_at if started_at is not None else time.time()
    check(c.exists(path) is not None, f"{path} exists after the move")
    gone = wait_until(lambda: c.exists(path) is None, max_s, step=0.1)
    took = time.time() - t0
    check(bool(gone), f"{path} vanishes (its session expires, no client reconnects)", f"still there after {took:.1f}s")
    if gone:
        check(took >= min_s, f"{path} lasted {took:.1f}s, at least {min_s:.1f}s (the session's timeout restarts at load)", f"gone after {took:.1f}s")
    c.stop()
    c.close()
    finish()


def read_status(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except FileNotFoundError:
        return []


def cmd_session(hosts, status_path, name, wait_s):
    """The holder reconnected to the new server with its own session, and its ephemerals live."""
    first = next((s for s in read_status(status_path) if s.get("state") == "READY"), None)
    if not check(first is not None, f"holder {name} was ready"):
        finish()

    def reconnected():
        states = [s.get("state") for s in read_status(status_path)]
        after = states[states.index("READY") + 1:]
        return "SUSPENDED" in after and after[-1] == "CONNECTED" and "LOST" not in after

    ok = wait_until(reconnected, wait_s)
    states = [s.get("state") for s in read_status(status_path)]
    check(bool(ok) and "LOST" not in states, f"holder {name} reconnected without losing its session", f"states {states}")
    c = connect(hosts)
    try:
        _, stat = c.get(f"{ROOT}/eph-{name}")
        check(hex(stat.ephemeralOwner) == first["session"], f"{ROOT}/eph-{name} still owned by {first['session']}")
    except NoNodeError:
        check(False, f"{ROOT}/eph-{name} exists after the move")
    c.stop()
    c.close()
    finish()


def main():
    logging.basicConfig(level=logging.ERROR)
    a = sys.argv[1:]
    if not a:
        print(__doc__)
        sys.exit(2)
    cmd = a[0]
    if cmd == "build":
        cmd_build(a[1])
    elif cmd == "hold":
        cmd_hold(a[1], a[2], a[3], int(a[4]), float(a[5]))
    elif cmd == "dump":
        cmd_dump(a[1], a[2])
    elif cmd == "compare":
        cmd_compare(a[1], a[2], a[3] if len(a) > 3 else "znode")
    elif cmd == "after":
        cmd_after(a[1], a[2])
    elif cmd == "probe":
        cmd_probe(a[1], a[2])
    elif cmd == "probecmp":
        cmd_probecmp(a[1], a[2], a[3])
    elif cmd == "vanish":
        cmd_vanish(a[1], a[2], float(a[3]), float(a[4]), float(a[5]) if len(a) > 5 else None)
    elif cmd == "session":
        cmd_session(a[1], a[2], a[3], float(a[4]))
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
