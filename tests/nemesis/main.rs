//! Jepsen-style fault injection on the real binaries: an ensemble of 3 or 5 servers on
//! 127.0.0.1 (zabd, or Apache ZooKeeper with `ENSEMBLE_IMPL=zookeeper`), peers talking through
//! the harness's proxy so that links can be cut; a seeded nemesis kills (-9) and restarts,
//! pauses (SIGSTOP/SIGCONT) and partitions servers while client threads run four workloads
//! (CAS register, unique ids, FIFO queue, fenced lock); afterwards everything is healed, final
//! state read, and every history checked with `zabd::check`. A summary table is printed.
//!
//! Env: `NEMESIS_SECS` (fault time per test, default 20), `NEMESIS_SERVERS` (comma list of
//! ensemble sizes to run, default "3,5"), `NEMESIS_SEED` (the nemesis schedule; printed),
//! `NEMESIS_FAULTS` (comma list of kinds, default all: kill9,pause,isolate-leader,split,bridge,one-way).

#[path = "../ensemble/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use harness::{Ensemble, Mode};
use zabd::check::history::{History, Op, Outcome};
use zabd::check::linearizable::{self, Verdict};
use zabd::check::lock::Increment;
use zabd::check::queue::{QueueCall, QueueRet};
use zabd::check::register::{RegCall, RegRet, Register};
use zabd::check::{lock, queue, unique_ids};
use zabd::client::Client;
use zabd::jute::data::Acl;
use zabd::jute::proto::{
    create_mode, CheckVersionRequest, Code, MultiResult, Request, SetDataRequest,
};

/// Client sessions of the register, ids and queue workloads.
const SESSION_MS: i32 = 4_000;
/// The lock workload's sessions: shorter, because a lock node left by a session whose
/// connection was lost blocks every other client until that session expires.
const LOCK_SESSION_MS: i32 = 2_000;
/// Each blocking wait of a workload client; a lost reply becomes an Unknown outcome.
const IO_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Threads per workload.
const THREADS_PER_WORKLOAD: u64 = 2;
/// The linearizability search's budget for the register history.
const LIN_MAX_STEPS: u64 = 5_000_000;
const DEFAULT_SECS: u64 = 20;
/// Transport failures tolerated while reading the final state after healing.
const FINAL_RECONNECTS: u32 = 20;
/// Upper bound accepted for NEMESIS_SECS is unlimited (soak), but the default stays short.
const FAULT_HOLD_MS: (u64, u64) = (800, 3_000);
const QUIET_MS: (u64, u64) = (800, 2_000);

/// One ensemble at a time: two concurrent runs would starve each other on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn nemesis_3_servers() {
    run_if_selected(3);
}

#[test]
fn nemesis_5_servers() {
    run_if_selected(5);
}

fn run_if_selected(servers: usize) {
    let selected = std::env::var("NEMESIS_SERVERS").unwrap_or_else(|_| "3,5".into());
    if !selected.split(',').any(|s| s.trim() == servers.to_string()) {
        eprintln!("nemesis: {servers} servers not in NEMESIS_SERVERS={selected}; skipped");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let secs = env_u64("NEMESIS_SECS").unwrap_or(DEFAULT_SECS);
    let seed = env_u64("NEMESIS_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id())
    });
    let faults = std::env::var("NEMESIS_FAULTS").unwrap_or_default();
    let kinds: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|k| faults.is_empty() || faults.split(',').any(|f| f.trim() == k.name()))
        .collect();
    assert!(
        !kinds.is_empty(),
        "NEMESIS_FAULTS={faults} names no known fault kind"
    );
    eprintln!(
        "nemesis: {servers} servers, NEMESIS_SEED={seed}, NEMESIS_SECS={secs}, faults {:?}",
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    let report = run(servers, secs, seed, &kinds);
    eprintln!("{}", report.table);
    assert!(
        report.anomalies.is_empty(),
        "nemesis found {} anomalies (NEMESIS_SEED={seed}, {servers} servers), first ones:\n{}",
        report.anomalies.len(),
        report.anomalies[..report.anomalies.len().min(20)].join("\n")
    );
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

// ---------- randomness and time ----------

/// splitmix64: the nemesis schedule and the workloads' choices, from the seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

#[derive(Clone)]
struct Clock(Instant);

impl Clock {
    fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

// ---------- faults ----------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill9,
    Pause,
    IsolateLeader,
    Split,
    Bridge,
    OneWay,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::Kill9,
        Fault::Pause,
        Fault::IsolateLeader,
        Fault::Split,
        Fault::Bridge,
        Fault::OneWay,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill9",
            Fault::Pause => "pause",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Split => "split",
            Fault::Bridge => "bridge",
            Fault::OneWay => "one-way",
        }
    }
}

/// Injects one fault, holds it, heals it. Returns a one-line description.
fn inject(ens: &mut Ensemble, rng: &mut Rng, kind: Fault) -> String {
    let n = ens.len();
    let hold = Duration::from_millis(rng.between(FAULT_HOLD_MS));
    let victim = rng.below(n as u64) as usize;
    match kind {
        Fault::Kill9 => {
            ens.kill9(victim);
            std::thread::sleep(hold);
            ens.start(victim);
            format!("kill -9 server {} and restart", victim + 1)
        }
        Fault::Pause => {
            ens.sigstop(victim);
            std::thread::sleep(hold);
            ens.sigcont(victim);
            format!("SIGSTOP server {} then SIGCONT", victim + 1)
        }
        Fault::IsolateLeader => {
            let leader = ens
                .modes()
                .iter()
                .position(|m| matches!(m, Mode::Leader))
                .unwrap_or(victim);
            let rest: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
            ens.partition(&[vec![leader], rest]);
            std::thread::sleep(hold);
            let during = modes_line(ens);
            ens.heal_all();
            format!(
                "isolate leader {} (modes before healing: {during})",
                leader + 1
            )
        }
        Fault::Split => {
            let mut order: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut order);
            let minority = 1 + rng.below((n / 2) as u64) as usize;
            let (a, b) = order.split_at(minority);
            ens.partition(&[a.to_vec(), b.to_vec()]);
            std::thread::sleep(hold);
            ens.heal_all();
            format!("split {:?} | {:?}", one_based(a), one_based(b))
        }
        Fault::OneWay => {
            // Half the time the leader: its followers stop hearing it while it still hears
            // them (the case that took ZooKeeper's leader a syncLimit to notice).
            let leader = ens.modes().iter().position(|m| matches!(m, Mode::Leader));
            let from = match leader {
                Some(l) if rng.below(2) == 0 => l,
                _ => victim,
            };
            for to in (0..n).filter(|&t| t != from) {
                ens.stall(from, to, true);
            }
            std::thread::sleep(hold);
            let during = modes_line(ens);
            ens.heal_all();
            format!(
                "stall everything server {} sends (modes before healing: {during})",
                from + 1
            )
        }
        Fault::Bridge => {
            // Two halves that only one server (the bridge) can reach both of.
            let mut order: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut order);
            let bridge = order[0];
            let half = (n - 1) / 2;
            let (a, b) = order[1..].split_at(half);
            for &i in a {
                for &j in b {
                    ens.cut(i, j);
                    ens.cut(j, i);
                }
            }
            std::thread::sleep(hold);
            ens.heal_all();
            format!(
                "bridge {} between {:?} and {:?}",
                bridge + 1,
                one_based(a),
                one_based(b)
            )
        }
    }
}

/// Each server's mode, for the log: shows that a partition did what it meant to.
fn modes_line(ens: &mut Ensemble) -> String {
    let modes: Vec<String> = ens
        .modes()
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}={m:?}", i + 1))
        .collect();
    modes.join(" ")
}

fn one_based(v: &[usize]) -> Vec<usize> {
    v.iter().map(|i| i + 1).collect()
}

// ---------- client connections ----------

/// A workload thread's connection: a session on one server, moved on to the next server (a
/// new session) whenever a call fails at the transport.
struct Conn {
    addrs: Vec<SocketAddr>,
    next: usize,
    session_ms: i32,
    client: Option<Client>,
}

impl Conn {
    fn new(addrs: Vec<SocketAddr>, first: usize) -> Conn {
        Conn {
            addrs,
            next: first,
            session_ms: SESSION_MS,
            client: None,
        }
    }

    /// The current client, or a new session on the next server that accepts one (one pass
    /// over the servers at most); `None` when none did.
    fn get(&mut self) -> Option<&mut Client> {
        if self.client.is_none() {
            for _ in 0..self.addrs.len() {
                let addr = self.addrs[self.next % self.addrs.len()];
                self.next += 1;
                if let Ok(c) = harness::connect(addr, self.session_ms, IO_TIMEOUT) {
                    self.client = Some(c);
                    break;
                }
            }
        }
        self.client.as_mut()
    }

    fn lost(&mut self) {
        self.client = None;
    }
}

struct Ctx {
    addrs: Vec<SocketAddr>,
    clock: Clock,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    fn backoff(&self) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn record<C, R>(
    h: &mut History<C, R>,
    p: u64,
    invoke_ns: u64,
    call: C,
    outcome: Outcome<R>,
    clock: &Clock,
) {
    let complete_ns = (!matches!(outcome, Outcome::Unknown)).then(|| clock.ns());
    h.push(Op {
        process: p,
        invoke_ns,
        complete_ns,
        call,
        outcome,
    });
}

// ---------- workloads ----------

/// CAS register on /reg: read (not recorded: ZooKeeper reads may be stale), then setData with
/// the version read (or, 1 in 8, version -1); the writes' outcomes are checked for
/// linearizability.
fn register_worker(ctx: &Ctx, p: u64, rng: &mut Rng) -> History<RegCall, RegRet> {
    let mut h = History::new();
    let mut conn = Conn::new(ctx.addrs.clone(), p as usize);
    let mut n = 0u64;
    while ctx.running() {
        let Some(c) = conn.get() else {
            ctx.backoff();
            continue;
        };
        let version = match c.get_data("/reg", false) {
            Ok(Ok((_, stat))) => stat.version,
            Ok(Err(_)) => {
                ctx.backoff();
                continue;
            }
            Err(_) => {
                conn.lost();
                continue;
            }
        };
        n += 1;
        let value = format!("{p}-{n}").into_bytes();
        let (call, expected) = if rng.below(8) == 0 {
            (RegCall::Write(value.clone()), -1)
        } else {
            (
                RegCall::Cas {
                    expected_version: version,
                    value: value.clone(),
                },
                version,
            )
        };
        let t0 = ctx.clock.ns();
        let outcome = match c.set_data("/reg", &value, expected) {
            Ok(Ok(stat)) => Outcome::Ok(RegRet::Written {
                version: stat.version,
            }),
            Ok(Err(Code::BadVersion)) => Outcome::Ok(RegRet::BadVersion),
            Ok(Err(_)) => Outcome::Fail,
            Err(_) => {
                conn.lost();
                Outcome::Unknown
            }
        };
        record(&mut h, p, t0, call, outcome, &ctx.clock);
        std::thread::sleep(Duration::from_millis(5));
    }
    h
}

/// Unique ids: create /ids/id- (persistent sequential); the id is the 10-digit suffix.
fn ids_worker(ctx: &Ctx, p: u64) -> History<(), u64> {
    let mut h = History::new();
    let mut conn = Conn::new(ctx.addrs.clone(), p as usize);
    while ctx.running() {
        let Some(c) = conn.get() else {
            ctx.backoff();
            continue;
        };
        let t0 = ctx.clock.ns();
        let outcome = match c.create(
            "/ids/id-",
            b"",
            &Acl::open_unsafe(),
            create_mode::PERSISTENT_SEQUENTIAL,
        ) {
            Ok(Ok(path)) => match seq_of(&path) {
                Some(id) => Outcome::Ok(id),
                None => panic!("sequential create answered {path:?}"),
            },
            Ok(Err(_)) => Outcome::Fail,
            Err(_) => {
                conn.lost();
                Outcome::Unknown
            }
        };
        record(&mut h, p, t0, (), outcome, &ctx.clock);
        std::thread::sleep(Duration::from_millis(5));
    }
    h
}

fn seq_of(path: &str) -> Option<u64> {
    let digits = path.get(path.len().checked_sub(10)?..)?;
    digits.parse().ok()
}

/// One dequeue attempt on `c`: the lowest child that it manages to read and delete. Recorded
/// in `h` unless nothing was tried; returns false on a transport failure.
fn dequeue_once(
    c: &mut Client,
    h: &mut History<QueueCall, QueueRet>,
    p: u64,
    clock: &Clock,
) -> bool {
    let t0 = clock.ns();
    let mut children = match c.get_children("/queue", false) {
        Ok(Ok(ch)) => ch,
        Ok(Err(_)) => {
            record(h, p, t0, QueueCall::Dequeue, Outcome::Fail, clock);
            return true;
        }
        Err(_) => return false,
    };
    children.sort_by_key(|name| seq_of(name));
    // Bounded: a few of the lowest children, then give up this attempt.
    for name in children.iter().take(5) {
        let Some(seq) = seq_of(name) else { continue };
        let path = format!("/queue/{name}");
        let payload = match c.get_data(&path, false) {
            Ok(Ok((Some(d), _))) => match std::str::from_utf8(&d).ok().and_then(|s| s.parse().ok())
            {
                Some(v) => v,
                None => panic!("queue node {path} holds {d:?}"),
            },
            Ok(Ok((None, _))) | Ok(Err(Code::NoNode)) => continue,
            Ok(Err(code)) => return end_attempt(h, p, t0, &path, code, clock),
            Err(_) => return false,
        };
        match c.delete(&path, -1) {
            Ok(Ok(())) => {
                let ret = QueueRet::Dequeued { seq, payload };
                record(h, p, t0, QueueCall::Dequeue, Outcome::Ok(ret), clock);
                return true;
            }
            // Only a child someone else took may be skipped: any other refusal leaves it
            // in place, and moving on to a higher one would break FIFO order on our side.
            Ok(Err(Code::NoNode)) => continue,
            Ok(Err(code)) => return end_attempt(h, p, t0, &path, code, clock),
            Err(_) => {
                let call = QueueCall::TryDequeue { seq, payload };
                record(h, p, t0, call, Outcome::Unknown, clock);
                return false;
            }
        }
    }
    let outcome = if children.is_empty() {
        Outcome::Ok(QueueRet::Empty)
    } else {
        Outcome::Fail
    };
    record(h, p, t0, QueueCall::Dequeue, outcome, clock);
    true
}

/// Ends a dequeue attempt that got a definite refusal (not applied) on `path`.
fn end_attempt(
    h: &mut History<QueueCall, QueueRet>,
    p: u64,
    t0: u64,
    path: &str,
    code: Code,
    clock: &Clock,
) -> bool {
    eprintln!("nemesis: queue: {path} refused with {code:?}; this dequeue attempt ends");
    record(h, p, t0, QueueCall::Dequeue, Outcome::Fail, clock);
    true
}

fn queue_worker(ctx: &Ctx, p: u64, rng: &mut Rng) -> History<QueueCall, QueueRet> {
    let mut h = History::new();
    let mut conn = Conn::new(ctx.addrs.clone(), p as usize);
    let mut n = 0u64;
    while ctx.running() {
        let Some(c) = conn.get() else {
            ctx.backoff();
            continue;
        };
        if rng.below(10) < 6 {
            n += 1;
            let payload = (p << 32) | n;
            let t0 = ctx.clock.ns();
            let data = payload.to_string();
            let outcome = match c.create(
                "/queue/q-",
                data.as_bytes(),
                &Acl::open_unsafe(),
                create_mode::PERSISTENT_SEQUENTIAL,
            ) {
                Ok(Ok(path)) => Outcome::Ok(QueueRet::Enqueued {
                    seq: seq_of(&path).unwrap_or(0),
                }),
                Ok(Err(_)) => Outcome::Fail,
                Err(_) => {
                    conn.lost();
                    Outcome::Unknown
                }
            };
            record(
                &mut h,
                p,
                t0,
                QueueCall::Enqueue { payload },
                outcome,
                &ctx.clock,
            );
        } else if !dequeue_once(c, &mut h, p, &ctx.clock) {
            conn.lost();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h
}

/// Fenced lock: take an ephemeral sequential /lock/l-, wait (bounded) until it is the lowest,
/// then one fenced increment of /counter, then release.
fn lock_worker(ctx: &Ctx, p: u64) -> History<Increment, ()> {
    let mut h = History::new();
    let mut conn = Conn::new(ctx.addrs.clone(), p as usize);
    conn.session_ms = LOCK_SESSION_MS;
    while ctx.running() {
        let Some(c) = conn.get() else {
            ctx.backoff();
            continue;
        };
        if !lock_round(ctx, c, p, &mut h) {
            conn.lost();
        }
    }
    h
}

/// Returns false on a transport failure (the session is then abandoned: its lock node goes
/// when the session expires).
fn lock_round(ctx: &Ctx, c: &mut Client, p: u64, h: &mut History<Increment, ()>) -> bool {
    let mine = match c.create(
        "/lock/l-",
        b"",
        &Acl::open_unsafe(),
        create_mode::EPHEMERAL_SEQUENTIAL,
    ) {
        Ok(Ok(path)) => path,
        Ok(Err(_)) => {
            ctx.backoff();
            return true;
        }
        Err(_) => return false,
    };
    let my_name = mine.trim_start_matches("/lock/").to_owned();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if !ctx.running() || Instant::now() > deadline {
            return c.delete(&mine, -1).is_ok();
        }
        let children = match c.get_children("/lock", false) {
            Ok(Ok(ch)) => ch,
            Ok(Err(_)) => return true,
            Err(_) => return false,
        };
        let lowest = children.iter().min_by_key(|n| seq_of(n));
        if lowest == Some(&my_name) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let read_value = match c.get_data("/counter", false) {
        Ok(Ok((d, _))) => counter_value(d.as_deref()),
        Ok(Err(_)) => return true,
        Err(_) => return false,
    };
    let data = format!("{}:{p}", read_value + 1);
    // The write is unconditional (version -1): only the check of our own lock node fences it,
    // so two holders at once would both succeed from one read value, which the chain check
    // flags. The read cannot be stale: this session saw our node lowest, so it has applied the
    // previous holder's delete and, before it, that holder's increment.
    let ops = vec![
        Request::Check(CheckVersionRequest {
            path: mine.clone(),
            version: 0,
        }),
        Request::SetData(SetDataRequest {
            path: "/counter".into(),
            data: Some(bytes::Bytes::from(data.into_bytes())),
            version: -1,
        }),
    ];
    let t0 = ctx.clock.ns();
    let result = c.multi(ops);
    let outcome = match &result {
        Ok(Ok(results)) if !results.iter().any(|r| matches!(r, MultiResult::Error(_))) => {
            Outcome::Ok(())
        }
        Ok(_) => Outcome::Fail,
        Err(_) => Outcome::Unknown,
    };
    let transport_ok = result.is_ok();
    record(h, p, t0, Increment { read_value }, outcome, &ctx.clock);
    transport_ok && c.delete(&mine, -1).is_ok()
}

fn counter_value(d: Option<&[u8]>) -> u64 {
    let s = std::str::from_utf8(d.unwrap_or(b"0")).unwrap_or("0");
    let v = s.split(':').next().unwrap_or("0");
    v.parse().unwrap_or_else(|_| panic!("/counter holds {s:?}"))
}

// ---------- the run ----------

struct Report {
    table: String,
    anomalies: Vec<String>,
}

enum Hist {
    Register(History<RegCall, RegRet>),
    Ids(History<(), u64>),
    Queue(History<QueueCall, QueueRet>),
    Lock(History<Increment, ()>),
}

fn run(servers: usize, secs: u64, seed: u64, kinds: &[Fault]) -> Report {
    let mut ens = Ensemble::builder(servers).proxied(true).start();
    let leader = ens.wait_leader(Duration::from_secs(60));
    {
        let mut c = ens.client(leader);
        for (path, data) in [
            ("/reg", "0"),
            ("/ids", ""),
            ("/queue", ""),
            ("/lock", ""),
            ("/counter", "0"),
        ] {
            let r = c.create(
                path,
                data.as_bytes(),
                &Acl::open_unsafe(),
                create_mode::PERSISTENT,
            );
            assert!(matches!(r, Ok(Ok(_))), "create {path}: {r:?}");
        }
    }
    let addrs: Vec<SocketAddr> = (0..servers).map(|i| ens.client_addr(i)).collect();
    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng(seed);
    let mut workers: Vec<JoinHandle<Hist>> = Vec::new();
    for w in 0..4u64 {
        for t in 0..THREADS_PER_WORKLOAD {
            let p = w * 100 + t;
            let ctx = Ctx {
                addrs: addrs.clone(),
                clock: clock.clone(),
                stop: stop.clone(),
            };
            let mut wrng = Rng(rng.next());
            let handle = std::thread::Builder::new()
                .name(format!("workload-{p}"))
                .spawn(move || match w {
                    0 => Hist::Register(register_worker(&ctx, p, &mut wrng)),
                    1 => Hist::Ids(ids_worker(&ctx, p)),
                    2 => Hist::Queue(queue_worker(&ctx, p, &mut wrng)),
                    _ => Hist::Lock(lock_worker(&ctx, p)),
                })
                .expect("spawn a workload thread");
            workers.push(handle);
        }
    }

    // The nemesis: faults one at a time, each held a bounded time then healed.
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut injected: BTreeMap<Fault, u32> = BTreeMap::new();
    std::thread::sleep(Duration::from_millis(rng.between(QUIET_MS)));
    while Instant::now() < deadline {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let desc = inject(&mut ens, &mut rng, kind);
        eprintln!("nemesis: t={:.1}s {desc}", clock.ns() as f64 / 1e9);
        *injected.entry(kind).or_default() += 1;
        std::thread::sleep(Duration::from_millis(rng.between(QUIET_MS)));
    }

    // Heal everything, stop the clients, wait for the ensemble, read the final state.
    ens.heal_all();
    for i in 0..servers {
        if !ens.is_running(i) {
            ens.start(i);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut reg = History::new();
    let mut ids = History::new();
    let mut q = History::new();
    let mut lk = History::new();
    for w in workers {
        match w.join().expect("a workload thread panicked") {
            Hist::Register(h) => reg.ops.extend(h.ops),
            Hist::Ids(h) => ids.ops.extend(h.ops),
            Hist::Queue(h) => q.ops.extend(h.ops),
            Hist::Lock(h) => lk.ops.extend(h.ops),
        }
    }
    let leader = ens.wait_all_serving(Duration::from_secs(90));
    let mut anomalies = Vec::new();
    // The final reads: every call after a sync, through a connection that moves to another
    // server on a transport error (bounded); the reconnects are reported in the table.
    let mut fin = Conn::new(addrs.clone(), leader);
    fin.session_ms = 10_000;
    let mut reconnects = 0u32;
    let t0 = clock.ns();
    let mut final_reg = None;
    let mut final_counter = None;
    while reconnects <= FINAL_RECONNECTS && (final_reg.is_none() || final_counter.is_none()) {
        let Some(c) = fin.get() else {
            reconnects += 1;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let reads = (
            c.sync("/"),
            c.get_data("/reg", false),
            c.get_data("/counter", false),
        );
        match reads {
            (Ok(Ok(_)), Ok(Ok((d, stat))), Ok(Ok((counter, _)))) => {
                final_reg = Some(RegRet::Read {
                    value: Some(d.map(|b| b.to_vec()).unwrap_or_default()),
                    version: stat.version,
                });
                final_counter = Some(counter_value(counter.as_deref()));
            }
            _ => {
                fin.lost();
                reconnects += 1;
            }
        }
    }
    match final_reg {
        Some(ret) => record(&mut reg, 999, t0, RegCall::Read, Outcome::Ok(ret), &clock),
        None => anomalies.push("the final read of /reg failed".into()),
    }
    let final_counter = final_counter.unwrap_or(0);
    // Drain the queue (bounded by what is there plus a margin).
    let mut remaining: Vec<u64> = Vec::new();
    let before = q.ops.len();
    let mut drained_all = false;
    for _ in 0..100_000 {
        if reconnects > FINAL_RECONNECTS {
            break;
        }
        let Some(c) = fin.get() else {
            reconnects += 1;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        // A sync first, so that a follower's "empty" is not a stale one.
        if !matches!(c.sync("/queue"), Ok(Ok(_))) || !dequeue_once(c, &mut q, 998, &clock) {
            fin.lost();
            reconnects += 1;
            continue;
        }
        if matches!(
            q.ops.last().map(|o| &o.outcome),
            Some(Outcome::Ok(QueueRet::Empty))
        ) {
            drained_all = true;
            break;
        }
    }
    if !drained_all {
        anomalies.push(format!(
            "the final drain did not finish ({reconnects} reconnects): the queue's lost-enqueue \
             count below is not meaningful"
        ));
        if let Some(c) = fin.get() {
            if let Ok(Ok(left)) = c.get_children("/queue", false) {
                for name in left {
                    if let Ok(Ok((Some(d), _))) = c.get_data(&format!("/queue/{name}"), false) {
                        remaining.extend(
                            std::str::from_utf8(&d)
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok()),
                        );
                    }
                }
            }
        }
    }
    let drained = q.ops.len() - before;

    // Check.
    let mut table = String::new();
    let impl_name = format!("{:?}", ens.imp());
    let _ = writeln!(
        table,
        "nemesis summary: {impl_name}, {servers} servers, NEMESIS_SEED={seed}, {secs} s of faults"
    );
    let _ = writeln!(
        table,
        "{:<10} {:>7} {:>7} {:>8}  verdict",
        "workload", "ok", "fail", "unknown"
    );
    let row = |table: &mut String, name: &str, counts: (usize, usize, usize), verdict: &str| {
        let _ = writeln!(
            table,
            "{name:<10} {:>7} {:>7} {:>8}  {verdict}",
            counts.0, counts.1, counts.2
        );
    };
    let started = Instant::now();
    let verdict = linearizable::check(Register::created(b"0".to_vec()), &reg, LIN_MAX_STEPS);
    let reg_verdict = match &verdict {
        Verdict::Linearizable => "linearizable".to_owned(),
        Verdict::NotLinearizable { explanation } => {
            anomalies.push(format!("register: {explanation}"));
            "NOT LINEARIZABLE".to_owned()
        }
        Verdict::Unknown { reason } => format!("unknown ({reason})"),
    };
    let reg_verdict = format!("{reg_verdict} [{} ms]", started.elapsed().as_millis());
    row(&mut table, "register", reg.counts(), &reg_verdict);
    let mut verdict_of = |name: &str, found: Vec<String>| {
        let v = if found.is_empty() {
            "ok".to_owned()
        } else {
            format!("{} ANOMALIES", found.len())
        };
        anomalies.extend(found.into_iter().map(|a| format!("{name}: {a}")));
        v
    };
    let v = verdict_of("ids", unique_ids::check(&ids));
    row(&mut table, "ids", ids.counts(), &v);
    let v = verdict_of("queue", queue::check(&q, &remaining));
    row(
        &mut table,
        "queue",
        q.counts(),
        &format!("{v} (drained {drained}, {} left)", remaining.len()),
    );
    let v = verdict_of("lock", lock::check(&lk, 0, final_counter));
    row(
        &mut table,
        "lock",
        lk.counts(),
        &format!("{v} (counter {final_counter})"),
    );
    let faults: Vec<String> = injected
        .iter()
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    let _ = writeln!(
        table,
        "faults: {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(" ")
        }
    );
    let _ = writeln!(table, "final reads: {reconnects} reconnects after healing");
    let _ = writeln!(table, "anomalies: {}", anomalies.len());
    for a in anomalies.iter().take(20) {
        let _ = writeln!(table, "  {a}");
    }
    Report { table, anomalies }
}
