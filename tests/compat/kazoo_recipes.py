#!/usr/bin/env python3
"""kazoo recipes against a ZooKeeper-compatible server.

usage: kazoo_recipes.py [--label NAME] <host:port>

Runs kazoo's recipes (Lock, ReadLock/WriteLock, Semaphore, Election, Barrier,
DoubleBarrier, Queue, LockingQueue, Counter, Party, ShallowParty, DataWatch,
ChildrenWatch, TreeCache) plus a session-resume check, each with real
assertions and bounded waits.  Prints one PASS/FAIL line per check and a
closing "N passed, N failed" line; exits non-zero if any check failed.
"""
import argparse
import faulthandler
import logging
import queue
import socket
import sys
import threading
import time
import traceback
import uuid

from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, KazooState
from kazoo.exceptions import LockTimeout
from kazoo.recipe.cache import TreeCache, TreeEvent

WAIT = 20.0  # upper bound for anything that should happen "soon"
SHORT = 0.5  # how long something that must NOT happen is given to happen


class Runner:
    def __init__(self, hosts, label):
        self.hosts = hosts
        self.label = label
        self.passed = 0
        self.failed = 0
        self.clients = []
        self.base = "/recipes-%s" % uuid.uuid4().hex[:8]

    def check(self, name, ok, detail=""):
        name = "%s %s" % (self.label, name)
        if ok:
            self.passed += 1
            print("PASS %s" % name)
        else:
            self.failed += 1
            print("FAIL %s%s" % (name, (": %s" % detail) if detail != "" else ""))
        return ok

    def eq(self, name, got, want):
        return self.check(name, got == want, "got %r, expected %r" % (got, want))

    def client(self):
        c = KazooClient(hosts=self.hosts, timeout=10.0,
                        connection_retry={"max_tries": 5, "delay": 0.2, "max_delay": 1},
                        command_retry={"max_tries": 5, "delay": 0.2, "max_delay": 1})
        c.start(timeout=15)
        self.clients.append(c)
        return c

    def path(self, name):
        return "%s/%s" % (self.base, name)

    def close_all(self):
        for c in self.clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass
        self.clients = []


def thread(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def timed_acquire(lock, timeout):
    """Lock.acquire(timeout=...) raises LockTimeout instead of returning False."""
    try:
        return lock.acquire(timeout=timeout)
    except LockTimeout:
        return False


def join_all(threads, timeout=WAIT):
    deadline = time.time() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.time()))
    return not any(t.is_alive() for t in threads)


def wait_until(pred, timeout=WAIT, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


class Tracker:
    """Counts how many threads are inside a critical section at once."""

    def __init__(self):
        self.mu = threading.Lock()
        self.inside = 0
        self.max_inside = 0
        self.entries = []

    def enter(self, who):
        with self.mu:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
            self.entries.append(who)

    def leave(self):
        with self.mu:
            self.inside -= 1


# --------------------------------------------------------------------------
def t_lock_mutex(r):
    path = r.path("lock-mutex")
    tr = Tracker()
    errors = []
    acquired = []

    def worker(i):
        c = r.client()
        lock = c.Lock(path, "w%d" % i)
        for _ in range(4):
            try:
                if not lock.acquire(timeout=WAIT):
                    errors.append("w%d: acquire timed out" % i)
                    return
                acquired.append(i)
                tr.enter(i)
                time.sleep(0.02)
                tr.leave()
                lock.release()
            except Exception as e:
                errors.append("w%d: %r" % (i, e))
                return

    ok = join_all([thread(worker, i) for i in range(3)], 3 * WAIT)
    r.check("Lock: 3 clients x 4 acquisitions finished", ok and not errors, errors or "threads hung")
    r.eq("Lock: acquisitions", len(acquired), 12)
    r.eq("Lock: max holders at once", tr.max_inside, 1)
    c = r.client()
    r.eq("Lock: lock nodes cleaned up after release", c.get_children(path), [])


def t_lock_contenders(r):
    path = r.path("lock-fifo")
    ca, cb, cc, cd = r.client(), r.client(), r.client(), r.client()
    la = ca.Lock(path, "A")
    r.check("Lock: A acquires", la.acquire(timeout=WAIT))
    got = []
    locks = {"B": cb.Lock(path, "B"), "C": cc.Lock(path, "C")}

    def contend(name):
        if locks[name].acquire(timeout=3 * WAIT):
            got.append(name)

    ts = [thread(contend, "B")]
    # make B's node older than C's so the queue order is known
    wait_until(lambda: len(la.contenders()) == 2)
    ts.append(thread(contend, "C"))
    r.check("Lock: contenders() lists A, B, C in order",
            wait_until(lambda: la.contenders() == ["A", "B", "C"]), la.contenders())
    ld = cd.Lock(path, "D")
    r.eq("Lock: non-blocking acquire while held", ld.acquire(blocking=False), False)
    r.eq("Lock: timed acquire while held", timed_acquire(ld, SHORT), False)
    r.eq("Lock: contenders after failed attempts", la.contenders(), ["A", "B", "C"])
    r.eq("Lock: nobody else got it while A holds it", got, [])
    la.release()
    r.check("Lock: B gets it after A releases", wait_until(lambda: got == ["B"]), got)
    time.sleep(SHORT)
    r.eq("Lock: C still waits while B holds it", got, ["B"])
    locks["B"].release()
    r.check("Lock: C gets it after B releases", wait_until(lambda: got == ["B", "C"]), got)
    locks["C"].release()
    join_all(ts)
    r.eq("Lock: no contenders left", la.contenders(), [])


def t_lock_session_close(r):
    path = r.path("lock-session")
    ca, cb = r.client(), r.client()
    la = ca.Lock(path, "A")
    r.check("Lock: A acquires (session-close test)", la.acquire(timeout=WAIT))
    got = threading.Event()
    lb = cb.Lock(path, "B")
    t = thread(lambda: lb.acquire(timeout=3 * WAIT) and got.set())
    r.check("Lock: B waits", wait_until(lambda: len(la.contenders()) == 2) and not got.is_set())
    ca.stop()  # session closed without release: the ephemeral lock node must go
    r.check("Lock: B acquires once A's session is closed", got.wait(WAIT))
    lb.release()
    join_all([t])


def t_rwlock(r):
    path = r.path("rwlock")
    c1, c2, c3 = r.client(), r.client(), r.client()
    r1, r2 = c1.ReadLock(path, "r1"), c2.ReadLock(path, "r2")
    r.check("ReadLock: two readers hold it together", r1.acquire(timeout=WAIT) and r2.acquire(timeout=WAIT))
    w = c3.WriteLock(path, "w")
    r.eq("WriteLock: not granted while read-locked", timed_acquire(w, SHORT), False)
    r1.release()
    r2.release()
    r.check("WriteLock: granted after readers release", w.acquire(timeout=WAIT))
    r3 = c1.ReadLock(path, "r3")
    r.eq("ReadLock: not granted while write-locked", timed_acquire(r3, SHORT), False)
    w.release()
    r.check("ReadLock: granted after writer releases", r3.acquire(timeout=WAIT))
    r3.release()


def t_semaphore(r):
    path = r.path("semaphore")
    c1, c2, c3 = r.client(), r.client(), r.client()
    s1, s2, s3 = (c.Semaphore(path, "s%d" % i, max_leases=2) for i, c in enumerate((c1, c2, c3), 1))
    r.check("Semaphore: two leases granted", s1.acquire(timeout=WAIT) and s2.acquire(timeout=WAIT))
    r.eq("Semaphore: third lease refused", s3.acquire(blocking=False), False)
    r.eq("Semaphore: lease holders", sorted(s1.lease_holders()), ["s1", "s2"])
    s1.release()
    r.check("Semaphore: third lease granted after a release", s3.acquire(timeout=WAIT))
    r.eq("Semaphore: lease holders after hand-over", sorted(s1.lease_holders()), ["s2", "s3"])
    s2.release()
    s3.release()


def t_election(r):
    path = r.path("election")
    tr = Tracker()
    step_down = {i: threading.Event() for i in range(3)}
    elections = []
    errors = []

    def leader(i):
        tr.enter("e%d" % i)
        if not step_down[i].wait(3 * WAIT):
            errors.append("e%d never told to step down" % i)
        tr.leave()

    def run(i, e):
        try:
            e.run(leader, i)
        except Exception as ex:
            errors.append("e%d: %r" % (i, ex))

    ts = []
    for i in range(3):
        e = r.client().Election(path, "e%d" % i)
        elections.append(e)
        ts.append(thread(run, i, e))
        # deterministic queue order: wait until this candidate is in
        wait_until(lambda: len(elections[0].contenders()) == i + 1)
    r.check("Election: a leader is elected", wait_until(lambda: len(tr.entries) == 1), tr.entries)
    r.eq("Election: contenders (leader first)", elections[0].contenders(), ["e0", "e1", "e2"])
    r.eq("Election: first leader", tr.entries, ["e0"])
    for n, i in enumerate((0, 1), 2):
        step_down[i].set()
        r.check("Election: next leader after e%d steps down" % i, wait_until(lambda: len(tr.entries) == n),
                tr.entries)
    step_down[2].set()
    r.check("Election: all run() calls returned", join_all(ts) and not errors, errors)
    r.eq("Election: leaders in queue order", tr.entries, ["e0", "e1", "e2"])
    r.eq("Election: at most one leader at a time", tr.max_inside, 1)
    r.eq("Election: no contenders left", elections[0].contenders(), [])


def t_barrier(r):
    path = r.path("barrier")
    c1, c2, c3 = r.client(), r.client(), r.client()
    r.eq("Barrier: wait on a missing barrier passes", c1.Barrier(path).wait(timeout=WAIT), True)
    b = c1.Barrier(path)
    b.create()
    r.eq("Barrier: timed wait on a raised barrier", c2.Barrier(path).wait(timeout=SHORT), False)
    results = []
    ts = [thread(lambda c=c: results.append(c.Barrier(path).wait(timeout=3 * WAIT))) for c in (c2, c3)]
    time.sleep(SHORT)
    r.eq("Barrier: waiters blocked while raised", results, [])
    b.remove()
    r.check("Barrier: waiters released on remove", join_all(ts), "threads hung")
    r.eq("Barrier: both waits returned True", results, [True, True])


def t_double_barrier(r):
    path = r.path("double-barrier")
    n = 3
    started, entered, left = [], [], []
    mu = threading.Lock()
    go_leave = {i: threading.Event() for i in range(n)}
    clients = [r.client() for _ in range(n)]

    def member(i):
        db = clients[i].DoubleBarrier(path, n, "m%d" % i)
        with mu:
            started.append(i)
        db.enter()
        with mu:
            entered.append((i, len(started)))
        if go_leave[i].wait(3 * WAIT):
            db.leave()
            with mu:
                left.append(i)

    ts = [thread(member, 0), thread(member, 1)]
    time.sleep(2 * SHORT)
    r.eq("DoubleBarrier: nobody enters with 2 of 3 members", entered, [])
    ts.append(thread(member, 2))
    r.check("DoubleBarrier: all enter once the 3rd arrives", wait_until(lambda: len(entered) == n), entered)
    r.check("DoubleBarrier: every member entered only after all 3 started",
            all(k == n for _, k in entered), entered)
    go_leave[0].set()
    go_leave[1].set()
    time.sleep(2 * SHORT)
    r.eq("DoubleBarrier: leaving blocks until all leave", left, [])
    go_leave[2].set()
    r.check("DoubleBarrier: all leave", join_all(ts) and sorted(left) == [0, 1, 2], left)
    r.eq("DoubleBarrier: member nodes removed", clients[0].get_children(path), [])


def t_queue(r):
    path = r.path("queue")
    c1, c2 = r.client(), r.client()
    q1, q2 = c1.Queue(path), c2.Queue(path)
    for i in range(10):
        q1.put(b"item-%d" % i)
    r.eq("Queue: length", len(q2), 10)
    r.eq("Queue: FIFO across clients", [q2.get() for _ in range(10)], [b"item-%d" % i for i in range(10)])
    r.eq("Queue: get on empty queue", q2.get(), None)
    q1.put(b"low", priority=200)
    q1.put(b"mid")
    q1.put(b"high", priority=10)
    r.eq("Queue: priority order", [q2.get(), q2.get(), q2.get()], [b"high", b"mid", b"low"])


def t_locking_queue(r):
    path = r.path("locking-queue")
    c1, c2, c3 = r.client(), r.client(), r.client()
    q1, q2, q3 = c1.LockingQueue(path), c2.LockingQueue(path), c3.LockingQueue(path)
    q1.put_all([b"a", b"b", b"c"])
    r.eq("LockingQueue: length after put_all", len(q3), 3)
    r.eq("LockingQueue: get returns head", q1.get(timeout=WAIT), b"a")
    r.eq("LockingQueue: holds lock", q1.holds_lock(), True)
    r.eq("LockingQueue: second consumer skips the locked entry", q2.get(timeout=WAIT), b"b")
    r.eq("LockingQueue: release returns the entry", q1.release(), True)
    r.eq("LockingQueue: consume removes the entry", q2.consume(), True)
    r.eq("LockingQueue: length after consume", len(q3), 2)
    r.eq("LockingQueue: released entry is served again", q3.get(timeout=WAIT), b"a")
    r.eq("LockingQueue: consume", q3.consume(), True)
    q1.put(b"urgent", priority=1)
    r.eq("LockingQueue: priority entry first", q1.get(timeout=WAIT), b"urgent")
    q1.consume()
    r.eq("LockingQueue: last entry", q2.get(timeout=WAIT), b"c")
    q2.consume()
    r.eq("LockingQueue: empty", len(q1), 0)
    t0 = time.time()
    r.eq("LockingQueue: get on empty queue times out", q1.get(timeout=SHORT), None)
    r.check("LockingQueue: ...after about the timeout", time.time() - t0 < WAIT)
    got = []
    t = thread(lambda: got.append(q2.get(timeout=3 * WAIT)))
    time.sleep(SHORT)
    q1.put(b"late")
    r.check("LockingQueue: blocked get wakes up on put", join_all([t]) and got == [b"late"], got)
    q2.consume()


def t_counter(r):
    path = r.path("counter")
    errors = []

    def bump(c):
        cnt = c.Counter(path)
        try:
            for _ in range(20):
                cnt += 1
        except Exception as e:
            errors.append(repr(e))

    clients = [r.client() for _ in range(3)]
    ok = join_all([thread(bump, c) for c in clients], 3 * WAIT)
    r.check("Counter: concurrent increments finished", ok and not errors, errors or "threads hung")
    cnt = clients[0].Counter(path)
    r.eq("Counter: 3 x 20 concurrent increments", cnt.value, 60)
    cnt -= 5
    r.eq("Counter: pre/post value of a decrement", (cnt.pre_value, cnt.post_value), (60, 55))
    r.eq("Counter: value seen by another client", clients[1].Counter(path).value, 55)
    f = clients[2].Counter(path + "-float", default=0.0)
    f += 0.5
    f += 1.25
    r.eq("Counter: float counter", clients[0].Counter(path + "-float", default=0.0).value, 1.75)


def t_party(r, cls_name):
    path = r.path(cls_name.lower())
    c1, c2, c3 = r.client(), r.client(), r.client()
    parties = [getattr(c, cls_name)(path, "member-%d" % i) for i, c in enumerate((c1, c2, c3))]
    for p in parties:
        p.join()
    r.eq("%s: 3 members" % cls_name, sorted(parties[0]), ["member-0", "member-1", "member-2"])
    r.eq("%s: len" % cls_name, len(parties[1]), 3)
    parties[1].leave()
    r.eq("%s: member left" % cls_name, sorted(parties[0]), ["member-0", "member-2"])
    c3.stop()
    r.check("%s: member gone with its session" % cls_name,
            wait_until(lambda: sorted(parties[0]) == ["member-0"]), sorted(parties[0]))
    parties[0].leave()
    r.eq("%s: empty" % cls_name, len(parties[0]), 0)


def t_data_watch(r):
    path = r.path("data-watch")
    c1, c2 = r.client(), r.client()
    c1.ensure_path(r.base)
    q = queue.Queue()

    def cb(data, stat, event):
        q.put((data, stat.version if stat else None, event.type if event else None))

    c1.DataWatch(path, cb)

    def step(action):
        action()
        try:
            return q.get(timeout=WAIT)
        except queue.Empty:
            return "no callback"

    first = step(lambda: None)
    r.eq("DataWatch: initial call for missing node", first, (None, None, None))
    seen = [step(lambda: c2.create(path, b"a")),
            step(lambda: c2.set(path, b"b")),
            step(lambda: c2.set(path, b"c")),
            step(lambda: c2.delete(path)),
            step(lambda: c2.create(path, b"d"))]
    r.eq("DataWatch: callbacks follow create/set/set/delete/create", seen, [
        (b"a", 0, EventType.CREATED),
        (b"b", 1, EventType.CHANGED),
        (b"c", 2, EventType.CHANGED),
        (None, None, EventType.DELETED),
        (b"d", 0, EventType.CREATED),
    ])
    time.sleep(SHORT)
    r.check("DataWatch: no spurious callbacks", q.empty(), list(q.queue))


def t_children_watch(r):
    path = r.path("children-watch")
    c1, c2 = r.client(), r.client()
    c1.ensure_path(path)
    q = queue.Queue()
    c1.ChildrenWatch(path, lambda children: q.put(sorted(children)))

    def step(action):
        action()
        try:
            return q.get(timeout=WAIT)
        except queue.Empty:
            return "no callback"

    seen = [step(lambda: None),
            step(lambda: c2.create(path + "/x")),
            step(lambda: c2.create(path + "/y")),
            step(lambda: c2.delete(path + "/x")),
            step(lambda: c2.create(path + "/z", ephemeral=True))]
    r.eq("ChildrenWatch: callbacks follow create/create/delete/create", seen,
         [[], ["x"], ["x", "y"], ["y"], ["y", "z"]])
    c2.set(path, b"data change is not a child change")
    c2.set(path + "/y", b"nor is a grandchild's data")
    c2.stop()  # session close removes the ephemeral /z
    try:
        after_close = q.get(timeout=WAIT)
    except queue.Empty:
        after_close = "no callback"
    r.eq("ChildrenWatch: ephemeral child removed with its session", after_close, ["y"])
    time.sleep(SHORT)
    r.check("ChildrenWatch: no spurious callbacks", q.empty(), list(q.queue))


def t_tree_cache(r):
    path = r.path("tree-cache")
    c1, c2 = r.client(), r.client()
    c1.create(path + "/pre", b"p", makepath=True)
    q = queue.Queue()
    tc = TreeCache(c1, path)
    tc.listen(lambda ev: q.put(ev))
    tc.start()

    def next_events(want_n):
        out = []
        deadline = time.time() + WAIT
        while len(out) < want_n and time.time() < deadline:
            try:
                ev = q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if ev.event_type in (TreeEvent.NODE_ADDED, TreeEvent.NODE_UPDATED, TreeEvent.NODE_REMOVED,
                                 TreeEvent.INITIALIZED):
                d = ev.event_data
                out.append((ev.event_type, d.path if d else None, d.data if d else None))
        return out

    init = next_events(3)
    r.eq("TreeCache: initial load", sorted(init[:2]) + init[2:], [
        (TreeEvent.NODE_ADDED, path, b""),
        (TreeEvent.NODE_ADDED, path + "/pre", b"p"),
        (TreeEvent.INITIALIZED, None, None),
    ])
    got = []
    for action, n in ((lambda: c2.create(path + "/a", b"1"), 1),
                      (lambda: c2.set(path + "/a", b"2"), 1),
                      (lambda: c2.create(path + "/a/b", b"3"), 1),
                      (lambda: c2.set(path, b"root"), 1),
                      (lambda: c2.delete(path + "/a/b"), 1),
                      (lambda: c2.delete(path + "/a"), 1)):
        action()
        got.extend(next_events(n))
    r.eq("TreeCache: events for create/update/create/update/delete/delete", got, [
        (TreeEvent.NODE_ADDED, path + "/a", b"1"),
        (TreeEvent.NODE_UPDATED, path + "/a", b"2"),
        (TreeEvent.NODE_ADDED, path + "/a/b", b"3"),
        (TreeEvent.NODE_UPDATED, path, b"root"),
        (TreeEvent.NODE_REMOVED, path + "/a/b", b"3"),
        (TreeEvent.NODE_REMOVED, path + "/a", b"2"),
    ])
    c2.create(path + "/c", b"c")
    next_events(1)
    r.eq("TreeCache: get_children", sorted(tc.get_children(path) or []), ["c", "pre"])
    node = tc.get_data(path + "/c")
    r.eq("TreeCache: get_data", (node.data, node.stat.version) if node else None, (b"c", 0))
    tc.close()


def t_session_resume(r):
    """Drop the TCP connection under kazoo: it must reconnect and resume the
    same session (session id + password in the ConnectRequest, last zxid
    seen), keep the session's ephemerals, and work normally afterwards.
    (kazoo sends no SetWatches: on a connection loss it fires its watchers
    with a NONE event and forgets them.)"""
    path = r.path("resume")
    c1, c2 = r.client(), r.client()
    c1.ensure_path(path)
    c1.create(path + "/eph", b"", ephemeral=True)
    sid = c1.client_id[0]
    events = queue.Queue()
    c1.get(path, watch=lambda ev: events.put(("old", ev.type)))
    states = []
    c1.add_listener(lambda s: states.append(s))
    c1._connection._socket.shutdown(socket.SHUT_RDWR)  # kill the socket under kazoo's feet
    r.check("session resume: client reconnects",
            wait_until(lambda: KazooState.SUSPENDED in states and c1.state == KazooState.CONNECTED), states)
    r.eq("session resume: same session id", c1.client_id[0] == sid, True)
    r.check("session resume: no session loss", KazooState.LOST not in states, states)
    try:
        first = events.get(timeout=WAIT)
    except queue.Empty:
        first = "no callback"
    r.eq("session resume: old watcher told about the connection loss", first, ("old", EventType.NONE))
    r.check("session resume: ephemeral node survived", c2.exists(path + "/eph") is not None)
    eph = c1.exists(path + "/eph")
    r.eq("session resume: ephemeral still owned by the resumed session",
         eph.ephemeralOwner == sid if eph else None, True)
    c1.get(path, watch=lambda ev: events.put(("new", ev.type)))
    c2.set(path, b"changed after reconnect")
    try:
        second = events.get(timeout=WAIT)
    except queue.Empty:
        second = "no callback"
    r.eq("session resume: watch set after reconnect fires", second, ("new", EventType.CHANGED))
    c1.stop()
    r.check("session resume: ephemeral removed when the session closes", c2.exists(path + "/eph") is None)


TESTS = [
    ("Lock mutual exclusion", t_lock_mutex),
    ("Lock contenders/FIFO", t_lock_contenders),
    ("Lock release on session close", t_lock_session_close),
    ("ReadLock/WriteLock", t_rwlock),
    ("Semaphore", t_semaphore),
    ("Election", t_election),
    ("Barrier", t_barrier),
    ("DoubleBarrier", t_double_barrier),
    ("Queue", t_queue),
    ("LockingQueue", t_locking_queue),
    ("Counter", t_counter),
    ("Party", lambda r: t_party(r, "Party")),
    ("ShallowParty", lambda r: t_party(r, "ShallowParty")),
    ("DataWatch", t_data_watch),
    ("ChildrenWatch", t_children_watch),
    ("TreeCache", t_tree_cache),
    ("session resume", t_session_resume),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="")
    ap.add_argument("--only", default=None, help="run only tests whose name contains this")
    ap.add_argument("hosts")
    args = ap.parse_args()
    faulthandler.dump_traceback_later(280, exit=True)
    logging.basicConfig(level=logging.ERROR, format="# kazoo %(levelname)s: %(message)s")
    r = Runner(args.hosts, "[%s]" % args.label if args.label else "")
    try:
        setup = r.client()
        setup.ensure_path(r.base)
    except Exception as e:
        r.check("connect to %s" % args.hosts, False, repr(e))
        print("%d passed, %d failed" % (r.passed, r.failed))
        return 1
    for name, fn in TESTS:
        if args.only and args.only not in name:
            continue
        t0 = time.time()
        try:
            fn(r)
        except Exception as e:
            r.check("%s: ran without exception" % name, False, "%r\n%s" % (e, traceback.format_exc()))
        finally:
            r.close_all()
        print("# %s: %.1fs" % (name, time.time() - t0))
    try:
        c = r.client()
        c.delete(r.base, recursive=True)
    except Exception as e:
        print("# cleanup of %s failed: %r" % (r.base, e))
    r.close_all()
    print("%d passed, %d failed" % (r.passed, r.failed))
    return 0 if r.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
