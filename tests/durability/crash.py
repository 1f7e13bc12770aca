#!/usr/bin/env python3
"""kill -9 rounds against a real zabd process (driven by tests/durability/crash.sh).

  crash.py ZABD_BIN WORKDIR PORT ROUNDS MAX_SECONDS

Each round: start zabd on the same dataDir (snapCount 1000 and 64 KB log preallocation, so
snapshots, log rolls and file extensions happen under load), run write load from several
kazoo sessions, kill -9 zabd at a random moment, run `zabd datadir check` on what the kill
left, restart, and check:

- sets with version checks: each worker owns keys that only it writes, one set in flight per
  key. After the restart a key holds exactly the last acknowledged (version, data), or the one
  set that was in flight at the kill (a write that became durable but was never answered);
  anything else is a lost or invented write. The next set with the version read after the
  restart must succeed.
- sequential creates (several in flight): every acknowledged name exists; every child is an
  acknowledged or in-flight create; no sequence number is handed out twice, within the
  children or across all rounds; a create given up as lost never reappears.
- multis (create + versioned set of the worker's counter node): atomic (the counter's version
  equals the number of nodes its multis created) and every acknowledged one is present.

Every wait is bounded; zabd is always killed on exit. Prints PASS/FAIL lines, a summary
table, and "N passed, N failed".
"""

import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError

WORKERS = 6
KEYS_PER_WORKER = 4
SEQ_WINDOW = 3
ROOT = "/crash"
SESSION_S = 4.0

PASSED = 0
FAILED = 0
FAIL_LINES = []


def check(ok, what, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"PASS {what}", flush=True)
    else:
        FAILED += 1
        line = f"FAIL {what}{': ' + detail if detail else ''}"
        FAIL_LINES.append(line)
        print(line, flush=True)
    return ok


def log(msg):
    print(f"[crash {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the server ------------------------------------------------------------------------------


class Server:
    def __init__(self, binary, workdir, port):
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.proc = None
        self.data = os.path.join(workdir, "data")
        self.cfg = os.path.join(workdir, "zoo.cfg")
        self.log_path = os.path.join(workdir, "zabd.log")
        os.makedirs(self.data, exist_ok=True)
        with open(self.cfg, "w") as f:
            f.write(
                f"tickTime=2000\ndataDir={self.data}\nclientPort={port}\n"
                f"clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\n"
                f"snapCount=1000\npreAllocSize=64\nmaxClientCnxns=0\n"
            )

    def start(self):
        out = open(self.log_path, "ab")
        out.write(f"\n==== start at {time.time():.3f}\n".encode())
        out.flush()
        self.proc = subprocess.Popen([self.binary, self.cfg], stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        with open(os.path.join(self.workdir, "zabd.pid"), "w") as f:
            f.write(str(self.proc.pid))
        out.close()

    def wait_ready(self, timeout_s=30):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if four_letter(self.port, "ruok") == "imok":
                return True
            time.sleep(0.02)
        return False

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def mntr(self):
        out = four_letter(self.port, "mntr")
        return dict(l.split("\t", 1) for l in out.splitlines() if "\t" in l)


def four_letter(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(3)
            s.sendall(word.encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode(errors="replace").strip()
    except OSError:
        return ""


def client(port):
    c = KazooClient(hosts=f"127.0.0.1:{port}", timeout=SESSION_S,
                    connection_retry=dict(max_tries=3, delay=0.05, max_delay=0.2))
    c.start(timeout=15)
    return c


def close_quietly(clients):
    """Stops clients whose server may be dead, in parallel, bounded."""
    def stop(c):
        try:
            c.stop()
            c.close()
        except Exception:
            pass
    ts = [threading.Thread(target=stop, args=(c,), daemon=True) for c in clients]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=10)


# -- what the clients were told ------------------------------------------------------------------


class Key:
    def __init__(self, path):
        self.path = path
        self.version = 0          # acknowledged (or read after a restart)
        self.data = b""
        self.inflight = None      # (version, data) of the set whose answer never came
        self.lock = threading.Lock()


class State:
    def __init__(self):
        self.keys = {}            # path -> Key
        self.seq_acked = {}       # token -> name
        self.seq_inflight = set() # tokens sent, not answered
        self.seq_lost = set()     # tokens given up as never durable
        self.seqno_owner = {}     # sequence number -> token, over all rounds
        self.multi = {}           # worker -> {"version": int, "acked": set(n), "inflight": n or None, "next": int}
        self.seq_counter = {}     # worker -> next token counter
        self.lock = threading.Lock()
        self.round_acked = 0
        self.errors = []


def data_for(w, j, n):
    size = random.choice([8, 100, 700, 3000])
    head = f"w{w}k{j}n{n}:".encode()
    return head + os.urandom(max(0, size - len(head)))


SEQ_RE = re.compile(r"^w(\d+)-(\d+)-(\d{10})$")


def worker(w, c, st, stop):
    keys = [st.keys[f"{ROOT}/k/w{w}-{j}"] for j in range(KEYS_PER_WORKER)]
    mk = f"{ROOT}/m/w{w}"
    n = 0
    try:
        while not stop.is_set():
            n += 1
            pending = []
            for j, k in enumerate(keys):
                d = data_for(w, j, n)
                with k.lock:
                    k.inflight = (k.version + 1, d)
                    v = k.version
                pending.append(("set", k, c.set_async(k.path, d, version=v)))
            for _ in range(SEQ_WINDOW):
                with st.lock:
                    cnt = st.seq_counter[w] = st.seq_counter.get(w, 0) + 1
                    tok = f"w{w}-{cnt}"
                    st.seq_inflight.add(tok)
                # Odd workers send create2 (include_data), as the Java client does.
                pending.append(("seq", tok, c.create_async(f"{ROOT}/seq/{tok}-", b"", sequence=True, include_data=bool(w % 2))))
            m = st.multi[w]
            if m["inflight"] is None:
                mn = m["next"]
                m["next"] += 1
                m["inflight"] = mn
                t = c.transaction()
                t.create(f"{ROOT}/multi/w{w}-{mn}", b"x")
                t.set_data(mk, b"%d" % mn, version=m["version"])
                pending.append(("multi", mn, t.commit_async()))
            for kind, what, ar in pending:
                r = ar.get(timeout=10)   # raises on connection loss: the worker stops
                if kind == "set":
                    with what.lock:
                        what.version, what.data = what.inflight
                        what.inflight = None
                elif kind == "seq":
                    name = r[0] if isinstance(r, tuple) else r
                    with st.lock:
                        st.seq_inflight.discard(what)
                        st.seq_acked[what] = name.rsplit("/", 1)[1]
                else:
                    if any(isinstance(x, Exception) for x in r):
                        st.errors.append(f"multi {what} of worker {w} failed: {r}")
                        stop.set()
                        return
                    m["version"] += 1
                    m["acked"].add(what)
                    m["inflight"] = None
                with st.lock:
                    st.round_acked += 1
    except BadVersionError as e:
        st.errors.append(f"worker {w}: BadVersion on a key only it writes: {e!r}")
    except NodeExistsError as e:
        st.errors.append(f"worker {w}: NodeExists: {e!r}")
    except (KazooException, KazooTimeoutError, OSError, Exception):
        pass  # the server died: whatever was pending is in flight


# -- verification ----------------------------------------------------------------------------


def verify(c, st, rnd, stats):
    lost = present_unacked = 0
    # Versioned sets.
    bad = []
    for k in st.keys.values():
        data, zs = c.get(k.path)
        if zs.version == k.version and data == k.data:
            if k.inflight is not None:
                lost += 1
        elif k.inflight is not None and zs.version == k.inflight[0] and data == k.inflight[1]:
            present_unacked += 1
        else:
            bad.append(f"{k.path}: version {zs.version} data {data[:16]!r}, acknowledged version {k.version} data {k.data[:16]!r}"
                       + (f", in flight version {k.inflight[0]} {k.inflight[1][:16]!r}" if k.inflight else ""))
        k.version, k.data, k.inflight = zs.version, data, None
    check(not bad, f"round {rnd}: {len(st.keys)} keys hold their last acknowledged set (or the one in flight)", "; ".join(bad[:5]))
    # The next set with the version read after the restart succeeds.
    bad = []
    for k in st.keys.values():
        d = b"after-restart-%d" % rnd
        try:
            zs = c.set(k.path, d, version=k.version)
            if zs.version != k.version + 1:
                bad.append(f"{k.path}: version {zs.version} after a set on {k.version}")
            k.version, k.data = zs.version, d
        except BadVersionError:
            bad.append(f"{k.path}: BadVersion with the version read after the restart ({k.version})")
    check(not bad, f"round {rnd}: a set with the version read after the restart succeeds on every key", "; ".join(bad[:5]))

    # Sequential creates.
    children = c.get_children(f"{ROOT}/seq")
    present = {}
    seqnos = {}
    bad = []
    for name in children:
        mt = SEQ_RE.match(name)
        if not mt:
            bad.append(f"unexpected child {name}")
            continue
        tok = f"w{mt.group(1)}-{mt.group(2)}"
        seqno = int(mt.group(3))
        present[tok] = name
        if seqno in seqnos:
            bad.append(f"sequence number {seqno} given to {seqnos[seqno]} and {tok}")
        seqnos[seqno] = tok
        prev = st.seqno_owner.get(seqno)
        if prev is not None and prev != tok:
            bad.append(f"sequence number {seqno} handed out twice across restarts: {prev}, then {tok}")
    missing = [t for t, nm in st.seq_acked.items() if present.get(t) != nm]
    if missing:
        bad.append(f"{len(missing)} acknowledged sequential creates missing or renamed, e.g. " +
                   ", ".join(f"{t}->{st.seq_acked[t]} (now {present.get(t)})" for t in missing[:3]))
    for tok, name in present.items():
        if tok in st.seq_acked:
            continue
        if tok in st.seq_inflight:
            present_unacked += 1
            st.seq_inflight.discard(tok)
            st.seq_acked[tok] = name
        elif tok in st.seq_lost:
            bad.append(f"{name}: a create given up as lost in an earlier round reappeared")
        else:
            bad.append(f"{name}: never sent by any client")
    lost += len(st.seq_inflight)
    st.seq_lost |= st.seq_inflight
    st.seq_inflight = set()
    for seqno, tok in seqnos.items():
        st.seqno_owner[seqno] = tok
    check(not bad, f"round {rnd}: {len(st.seq_acked)} acknowledged sequential nodes present, {len(seqnos)} sequence numbers all distinct", "; ".join(bad[:5]))

    # Multis.
    bad = []
    mchildren = set(c.get_children(f"{ROOT}/multi"))
    for w, m in st.multi.items():
        data, zs = c.get(f"{ROOT}/m/w{w}")
        mine = {int(x.split("-")[1]) for x in mchildren if x.startswith(f"w{w}-")}
        if zs.version != len(mine):
            bad.append(f"worker {w}: counter version {zs.version} but {len(mine)} multi nodes (not atomic)")
        if not m["acked"] <= mine:
            bad.append(f"worker {w}: acknowledged multis missing: {sorted(m['acked'] - mine)[:5]}")
        if m["inflight"] is not None:
            if m["inflight"] in mine:
                present_unacked += 1
                m["acked"].add(m["inflight"])
            else:
                lost += 1
        extra = mine - m["acked"]
        if extra:
            bad.append(f"worker {w}: multi nodes never acknowledged nor in flight: {sorted(extra)[:5]}")
        m["inflight"] = None
        m["version"] = zs.version
        m["next"] = max(mine, default=-1) + 1
    check(not bad, f"round {rnd}: multis atomic and all acknowledged ones present", "; ".join(bad[:5]))
    stats["lost_unacked"] = lost
    stats["present_unacked"] = present_unacked


def setup(c, st):
    c.ensure_path(f"{ROOT}/k")
    c.ensure_path(f"{ROOT}/seq")
    c.ensure_path(f"{ROOT}/multi")
    c.ensure_path(f"{ROOT}/m")
    for w in range(WORKERS):
        for j in range(KEYS_PER_WORKER):
            p = f"{ROOT}/k/w{w}-{j}"
            c.create(p, b"")
            st.keys[p] = Key(p)
        c.create(f"{ROOT}/m/w{w}", b"")
        st.multi[w] = {"version": 0, "acked": set(), "inflight": None, "next": 0}


def datadir_check(binary, data):
    r = subprocess.run([binary, "datadir", "check", data], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout


def main():
    binary, workdir, port, rounds, max_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.CRITICAL)  # kazoo's reconnect chatter after each kill
    random.seed(int(os.environ.get("CRASH_SEED", str(int(time.time())))))
    srv = Server(binary, workdir, port)
    st = State()
    rows = []
    t_start = time.time()
    try:
        srv.start()
        if not check(srv.wait_ready(), "zabd starts on a fresh dataDir"):
            return
        c = client(port)
        setup(c, st)
        close_quietly([c])
        rnd = 0
        while rnd < rounds and time.time() - t_start < max_s:
            rnd += 1
            stats = {"round": rnd}
            st.round_acked = 0
            ph = {"t": time.time()}

            def phase(name):
                now = time.time()
                ph[name] = now - ph["t"]
                ph["t"] = now

            clients = [client(port) for _ in range(WORKERS)]
            phase("connect")
            stop = threading.Event()
            threads = [threading.Thread(target=worker, args=(w, clients[w], st, stop), daemon=True) for w in range(WORKERS)]
            for t in threads:
                t.start()
            load_s = random.uniform(0.3, 2.5)
            time.sleep(load_s)
            before = srv.mntr()
            srv.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=15)
            phase("load+kill")
            close_quietly(clients)
            phase("close")
            stats["load_s"] = load_s
            stats["acked"] = st.round_acked
            # Group commit as the sync thread saw it (mntr a moment before the kill).
            stats["txns"] = int(float(before.get("zk_sum_sync_processor_batch_size", "0") or 0))
            stats["fsyncs"] = int(float(before.get("zk_cnt_fsynctime", "0") or 0))
            for e in st.errors:
                check(False, f"round {rnd}: load", e)
            st.errors = []
            rc, out = datadir_check(binary, srv.data)
            phase("check")
            stats["check"] = {0: "clean", 1: "repairable", 3: "DAMAGED"}.get(rc, f"rc {rc}")
            if rc == 1:
                warnings = [l for l in out.splitlines() if l.startswith("WARNING")]
                stats["check"] = "; ".join(w[len("WARNING: "):][:150] for w in warnings)
            if not check(rc in (0, 1), f"round {rnd}: zabd datadir check after kill -9 exits {rc}", out[-800:]):
                break
            # Now and then, a kill -9 during start-up too.
            if rnd % 5 == 0:
                srv.start()
                time.sleep(random.uniform(0.0, 0.05))
                srv.kill9()
            t0 = time.time()
            srv.start()
            if not check(srv.wait_ready(), f"round {rnd}: zabd restarts after kill -9"):
                os.system(f"tail -20 {srv.log_path}")
                break
            stats["restart_ms"] = int((time.time() - t0) * 1000)
            phase("restart")
            c = client(port)
            try:
                verify(c, st, rnd, stats)
            finally:
                close_quietly([c])
            phase("verify")
            del ph["t"]
            log(f"round {rnd} phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in ph.items()))
            rows.append(stats)
        check(rnd >= min(rounds, 5), f"{rnd} rounds of kill -9 ran in {time.time() - t_start:.0f}s")
    finally:
        srv.kill9()
        print_table(rows)
        print(f"{PASSED} passed, {FAILED} failed", flush=True)


def print_table(rows):
    if not rows:
        return
    print()
    print(f"{'round':>5} {'load s':>6} {'acked':>6} {'txns':>6} {'fsyncs':>6} {'txn/fsync':>9} {'lost-unacked':>12} {'durable-unacked':>15} {'restart ms':>10}  datadir check")
    for r in rows:
        per = r["txns"] / r["fsyncs"] if r.get("fsyncs") else 0
        print(f"{r['round']:>5} {r['load_s']:>6.2f} {r['acked']:>6} {r['txns']:>6} {r['fsyncs']:>6} {per:>9.1f} {r.get('lost_unacked', '-'):>12} {r.get('present_unacked', '-'):>15} {r.get('restart_ms', '-'):>10}  {r['check']}")
    acked = sum(r["acked"] for r in rows)
    print(f"rounds {len(rows)}, restarts {len(rows) + len(rows) // 5} (of which {len(rows) // 5} killed during start-up), "
          f"acknowledged writes {acked}, max lost-but-unacknowledged {max(r.get('lost_unacked', 0) for r in rows)}, "
          f"max durable-but-unacknowledged {max(r.get('present_unacked', 0) for r in rows)}")


if __name__ == "__main__":
    main()
