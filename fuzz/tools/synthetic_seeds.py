#!/usr/bin/env python3
"""Writes the seeds no capture provides: client_frames requests that the captured clients
never sent (ping, check, multiRead, setWatches, setWatches2, checkWatches, sasl, reconfig,
an old 44-byte handshake, a reattach), core_ops programs, quorum messages, zoo.cfg texts, and
the txn_log/snapshot seeds (the ZooKeeper 3.8 fixtures plus files a zabd run wrote).

usage: synthetic_seeds.py <fuzz dir> [<zabd dataDir/version-2 with logs and snapshots>]
"""
import os
import struct
import sys

FUZZ = sys.argv[1]
ZABD_DATA = sys.argv[2] if len(sys.argv) > 2 else None
REPO = os.path.dirname(os.path.abspath(FUZZ))


def out(target, name, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- jute ----
def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def boolean(v):
    return b"\x01" if v else b"\x00"


def buf(b):
    return i32(-1) if b is None else i32(len(b)) + b


def s(text):
    return buf(text.encode())


def vec(items):
    return i32(len(items)) + b"".join(items)


def acl(perms, scheme, ident):
    return i32(perms) + s(scheme) + s(ident)


OPEN = [acl(31, "world", "anyone")]


def frame(payload):
    return i32(len(payload)) + payload


def handshake(session=0, passwd=b"\0" * 16, read_only=True, timeout=30000, last_zxid=0):
    body = i32(0) + i64(last_zxid) + i32(timeout) + i64(session) + buf(passwd)
    if read_only:
        body += boolean(False)
    return frame(body)


def req(xid, op, body=b""):
    return frame(i32(xid) + i32(op) + body)


def multi_header(t, done=False, err=-1):
    return i32(t) + boolean(done) + i32(err)


# ---- client_frames ----
def client_frames():
    hs = handshake()
    out("client_frames", "synthetic-old-handshake-ping",
        handshake(read_only=False) + req(-2, 11) + req(1, 3, s("/") + boolean(False)))
    out("client_frames", "synthetic-reattach",
        handshake(session=0x1000000000001, passwd=bytes(range(16)), last_zxid=7) + req(-2, 11))
    reads = (
        req(1, 13, s("/a") + i32(-1))  # check outside a multi
        + req(2, 22, multi_header(4) + s("/a") + boolean(True)
              + multi_header(8) + s("/") + boolean(False) + multi_header(-1, True))
        + req(3, 17, s("/a") + i32(3))  # checkWatches
        + req(4, 18, s("/a") + i32(5))  # removeWatches
        + req(5, 102, buf(b"token"))  # sasl
        + req(6, 16, s("server.1=a:1:2") + s("") + s("") + i64(-1))  # reconfig
        + req(7, 106, s("/a") + i32(1))  # addWatch recursive
        + req(8, 107)  # whoAmI
        + req(9, 104, s("/"))  # getAllChildrenNumber
        + req(10, 103, s("/"))  # getEphemerals
    )
    out("client_frames", "synthetic-reads", hs + reads)
    watches = vec([s("/a"), s("/b")])
    set_watches = i64(5) + watches + vec([s("/c")]) + vec([])
    set_watches2 = set_watches + vec([s("/p")]) + vec([s("/r")])
    out("client_frames", "synthetic-setwatches",
        hs + req(-8, 101, set_watches) + req(-8, 105, set_watches2))
    create = s("/m") + buf(b"d") + vec(OPEN) + i32(0)
    ttl = s("/t") + buf(None) + vec(OPEN) + i32(5) + i64(1000)
    multi = (multi_header(1) + create + multi_header(15) + create
             + multi_header(21) + ttl + multi_header(19) + s("/c") + buf(b"") + vec(OPEN) + i32(4)
             + multi_header(5) + s("/m") + buf(b"x") + i32(-1)
             + multi_header(13) + s("/m") + i32(0)
             + multi_header(2) + s("/m") + i32(-1) + multi_header(-1, True))
    out("client_frames", "synthetic-multi",
        hs + req(1, 14, multi) + req(2, 21, ttl) + req(3, -11))
    out("client_frames", "synthetic-auth-acl",
        hs + req(-4, 100, i32(0) + s("digest") + buf(b"alice:secret"))
        + req(1, 1, s("/s") + buf(b"x") + vec([acl(31, "auth", "")]) + i32(1))
        + req(2, 7, s("/s") + vec([acl(1, "ip", "10.0.0.0/8"), acl(16, "digest", "u:h")]) + i32(-1))
        + req(3, 6, s("/s")))


# ---- core_ops ----
NAMES = "abc"


def path_byte(path):
    comps = path.strip("/").split("/")
    digits = 0
    for c in reversed(comps):
        digits = digits * 3 + NAMES.index(c)
    return (len(comps) - 1) + 3 * digits


def data_byte(n):
    """A byte whose data is n bytes long (n <= 6)."""
    return 8 + n + 1


HOLD = 0x80


def connect(timeout_byte=60):
    return bytes([0, 1, timeout_byte])


def create(p, mode=0, kind=0, acl_byte=0, data=2, pick=0, hold=False):
    code = 2 | (HOLD if hold else 0)
    return bytes([code, pick, path_byte(p), data_byte(data), acl_byte, mode | (kind << 3)])


def delete(p, pick=0, hold=False):
    return bytes([4 | (HOLD if hold else 0), pick, path_byte(p), 0])


def set_data(p, pick=0, hold=False):
    return bytes([5 | (HOLD if hold else 0), pick, path_byte(p), data_byte(3), 0])


def core_ops():
    prog = bytes([1]) + connect() + create("/a") + create("/a/b") + set_data("/a/b")
    prog += bytes([11, 0, 0, path_byte("/a/b"), 0])  # getData with watch
    prog += delete("/a/b")
    prog += bytes([7, 0, 3,  # a multi of four: create, create, setData, check
                   0, path_byte("/b"), data_byte(1), 0, 0,
                   0, path_byte("/b/c"), data_byte(1), 0, 0,
                   2, path_byte("/b"), data_byte(2), 0,
                   3, path_byte("/b"), 0xa1])
    prog += bytes([8, 0])  # closeSession
    out("core_ops", "basic", prog)

    prog = bytes([0]) + connect(8) + create("/a") + create("/a/b", mode=1)
    prog += bytes([9, 255]) * 4  # time passes: the session expires
    out("core_ops", "ephemeral-expiry", prog)

    prog = bytes([0]) + connect() + connect()
    prog += create("/a", hold=True) + create("/a/b", mode=1, hold=True)
    prog += delete("/a/b", hold=True) + create("/a/c", mode=3, pick=1, hold=True)
    prog += bytes([8 | HOLD, 1])  # closeSession, held
    prog += bytes([14, 2]) + bytes([14, 255])
    out("core_ops", "held-writes", prog)

    prog = bytes([1]) + connect()
    prog += create("/c", kind=2) + create("/c/a") + delete("/c/a")
    prog += create("/b", mode=5, kind=3) + bytes([20])  # TTL node, ttl byte
    prog += bytes([9, 8]) * 3
    out("core_ops", "container-ttl", prog)

    prog = bytes([0]) + connect() + connect()
    prog += bytes([13, 0, 0])  # addauth alice on the first session
    prog += create("/a", acl_byte=5) + create("/b", acl_byte=4)
    prog += bytes([11, 1, 0, path_byte("/a"), 0])  # second session reads /a
    prog += bytes([6, 1, path_byte("/a"), 0, 0xff])  # setACL
    prog += bytes([11, 1, 4, path_byte("/b")])  # getACL
    out("core_ops", "acl-auth", prog)

    prog = bytes([0]) + connect() + connect()
    prog += bytes([12, 1, 0, path_byte("/a"), 1])  # addWatch recursive
    prog += create("/a") + create("/a/b") + create("/a/b/c") + delete("/a/b/c")
    prog += bytes([12, 1, 3, 2, 2, path_byte("/a"), 0, path_byte("/b"), 4])  # setWatches2
    prog += bytes([12, 1, 1, path_byte("/a"), 5])  # removeWatches
    prog += bytes([15, 1, 1, 1]) + bytes([15, 1, 2, 1])  # 4lw wchp, wchc
    out("core_ops", "watches", prog)

    prog = bytes([0]) + connect() + create("/a", mode=2) + create("/a", mode=2)
    prog += create("/a/b", mode=3) + bytes([10, 0])  # close the connection
    prog += bytes([1, 0, 1, 1])  # reconnect the session
    prog += bytes([1, 0, 1, 1])  # and again: it moves
    prog += bytes([1, 0, 0, 1])  # with a wrong password
    prog += bytes([15, 0, 0])  # a malformed request
    out("core_ops", "sequential-reconnect", prog)


# ---- quorum ----
def quorum():
    packet = i32(2) + i64(0x100000005) + buf(b"txn") + vec([s("digest") + s("u:h")])
    out("quorum", "proposal", b"\x00" + packet)
    out("quorum", "ack", b"\x00" + i32(3) + i64(7) + buf(None) + vec([]))
    out("quorum", "learner-info", b"\x01" + i64(2) + i32(0x10000) + i64(-1))
    note = i32(0) + i64(3) + i64(0x200000009) + i64(4) + i64(2)
    cfg = b"server.1=127.0.0.1:2888:3888:participant\nversion=0"
    out("quorum", "notification-v2", b"\x02" + note + i32(2) + buf(cfg))
    out("quorum", "notification-40", b"\x02" + note)
    out("quorum", "notification-28", b"\x02" + note[:28])
    out("quorum", "hello-v1", b"\x03" + i64(-65536) + i64(2) + buf(b"127.0.0.1:3888"))
    out("quorum", "hello-v2", b"\x03" + i64(-65535) + i64(3) + buf(b"10.0.0.1:3888|10.0.0.2:3888"))


# ---- config ----
def config():
    out("config", "zoo.cfg", b"""# The number of milliseconds of each tick
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
maxClientCnxns=60
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
4lw.commands.whitelist=srvr, ruok, mntr
admin.enableServer=false
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
""")
    out("config", "ensemble.cfg", b"""tickTime=2000
dataDir=/data
dataLogDir=/datalog
clientPort=2181
server.1=zoo1:2888:3888;2181
server.2=zoo2:2888:3888:participant;0.0.0.0:2181
server.3=[2001:db8::3]:2888:3888:observer
peerType=participant
standaloneEnabled=false
reconfigEnabled=true
""")
    out("config", "everything.cfg", b"""tickTime = 500
dataDir : /tmp/z
clientPortAddress=127.0.0.1
clientPort 0
minSessionTimeout=1000
maxSessionTimeout=-1
globalOutstandingLimit=1000
jute.maxbuffer=4194304
zookeeper.snapCount=1
autopurge.purgeInterval=2h
extendedTypesEnabled=true
readonlymode.enabled=false
DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
enforceQuota=true
skipACL=no
forceSync=yes
preAllocSize=64
fsync.warningthresholdms=100
znode.container.checkIntervalMs=1000
znode.container.maxPerMinute=100
nio.sessionlessCnxnTimeout=5000
maxCnxns=0
key\\ with\\ spaces=a\\tb\\u00e9 \\
   continued
! a bang comment
""")
    out("config", "with-overrides", b"dataDir=/d\nclientPort=2181\n\x00-Dzookeeper.snapCount=10\n"
        b"-DjuteMaxBuffer=1\n-Dzookeeper.4lw.commands.whitelist=*\n/etc/zoo.cfg\n")


# ---- txn_log and snapshot ----
def strip_padding(data, keep=16):
    end = len(data.rstrip(b"\0"))
    return data[: min(len(data), end + keep)]


def persistence():
    fixtures = os.path.join(REPO, "tests", "fixtures", "zk38")
    logs, snaps = [], []
    for root, _, files in os.walk(fixtures):
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, fixtures).replace("/", "_")
            if f.startswith("log."):
                logs.append(("zk38-" + rel, strip_padding(open(p, "rb").read())))
            elif f.startswith("snapshot."):
                snaps.append(("zk38-" + rel, open(p, "rb").read()))
    if ZABD_DATA:
        names = sorted(os.listdir(ZABD_DATA))
        picked_logs = [n for n in names if n.startswith("log.")][:3]
        picked_snaps = [n for n in names if n.startswith("snapshot.")][:3]
        for n in picked_logs:
            data = strip_padding(open(os.path.join(ZABD_DATA, n), "rb").read())
            if len(data) <= 8192:
                logs.append(("zabd-" + n, data))
        for n in picked_snaps:
            data = open(os.path.join(ZABD_DATA, n), "rb").read()
            if len(data) <= 8192:
                snaps.append(("zabd-" + n, data))
    for name, data in logs:
        out("txn_log", name, b"\x00" + data)
        out("txn_log", name + "-fixsum", b"\x01" + data)
    if logs:
        name, data = logs[0]
        out("txn_log", name + "-split", b"\x03" + struct.pack(">H", len(data) // 2) + data)
    for name, data in snaps:
        out("snapshot", name, b"\x00" + data)
        out("snapshot", name + "-fixsum", b"\x03" + data)


client_frames()
core_ops()
quorum()
config()
persistence()
