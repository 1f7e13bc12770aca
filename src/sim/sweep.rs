//! The seeded fault sweep: one run per seed, every checker on.
//!
//! A run, all in virtual time: the ensemble forms; for `fault_phase_ms` simulated clients
//! ([`Workload`]) issue operations while a nemesis crashes and restarts nodes (a majority may
//! be down at times), partitions them (one node, the leader, or a random split), breaks
//! leader-learner links and slows disks; then everything is restarted and healed, the
//! ensemble must serve again (liveness) and converge, the clients' answers are checked against
//! every tree, and finally every session must expire with its ephemerals. A run stops at the
//! first violation. Everything is a function of the seed: `SIM_SEED=<n>` reruns one.
//!
//! With [`SweepOptions::client_checks`] (the sweep's default; not the regression seeds'), a few
//! more clients share one register znode, and the run also checks what they saw: its history
//! is linearizable (reads sequentially consistent), sessions never go back, watch events come
//! before the data ([`super::workload`]).
//!
//! Protocol errors (spec: NoProtocolError) are the warnings the core logs when it drops a
//! connection for an impossible packet; a capturing logger ([`install_log_capture`]) keeps the
//! last log lines of the running seed, per thread, for the report.

use super::checker::{CheckStats, Violation};
use super::workload::{Workload, WorkloadParams, WorkloadStats};
use super::{Sim, SimRng};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

/// Virtual time between two rounds of the clients and the nemesis.
pub const ROUND_MS: i64 = 5;

/// A run stops (and is reported) past this many simulator steps.
pub const STEPS_MAX: u64 = 3_000_000;

/// Log lines kept for a failing seed's report.
pub const LOG_LINES_MAX: usize = 300;

/// How long the healed ensemble has to serve again.
pub const RECOVERY_LIMIT_MS: i64 = 30_000;

/// An open finding in the core. A violation that matches one is reported
/// ([`SeedReport::known`]) but neither stops nor fails the run, unless the sweep is strict
/// (`SIM_STRICT=1`). Each has an ignored regression test in tests/sim_sweep.rs.
pub struct KnownIssue {
    pub property: &'static str,
    pub contains: &'static str,
    pub what: &'static str,
}

/// Fixed since: a learner TRUNCed below its applied tree got NEWLEADER before the disk
/// answered with the reloaded tree and gave up its role (it now waits for the reload; seeds
/// 10, 27, 95 and 97 are its regression test).
pub const KNOWN_ISSUES: &[KnownIssue] = &[];

fn known_issue(v: &Violation) -> bool {
    KNOWN_ISSUES
        .iter()
        .any(|k| k.property == v.property && v.message.contains(k.contains))
}

/// How a sweep judges what it finds.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// Known issues fail the run too (`SIM_STRICT=1`).
    pub strict: bool,
    /// Properties not checked (`SIM_SKIP=CommittedOnQuorum,NoProtocolError`): to see which
    /// other checker catches a negative control.
    pub skip: Vec<String>,
    /// One-way and bridge partitions and lost or duplicated election notifications too
    /// (`SIM_NETWORK_FAULTS=1`). Off, a seed runs as it always did (its regression tests).
    pub network_faults: bool,
    /// The register clients and their checks (Linearizable, SessionOrder, WatchBeforeData)
    /// run too. On in the sweep (`SIM_CLIENT_CHECKS=0` turns them off); off by default, so
    /// that the regression seeds replay the runs they were found in: the extra traffic
    /// changes every later network delay.
    pub client_checks: bool,
    /// Percent of seeds run with buggify on (`SIM_BUGGIFY=<percent>`, default
    /// [`BUGGIFY_PERCENT`] from the environment, 0 in `SweepOptions::default()`).
    pub buggify_percent: u64,
}

/// The sweep's default share of buggified seeds.
pub const BUGGIFY_PERCENT: u64 = 25;

/// Whether `seed` runs buggified: its own draw, so the other seeds run as before.
pub fn buggified(seed: u64, percent: u64) -> bool {
    SimRng::new(seed ^ 0x00b0_661f_7e5e).chance(percent)
}

impl SweepOptions {
    pub fn from_env() -> SweepOptions {
        SweepOptions {
            strict: std::env::var("SIM_STRICT").is_ok_and(|v| v != "0"),
            skip: std::env::var("SIM_SKIP")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default(),
            network_faults: std::env::var("SIM_NETWORK_FAULTS").is_ok_and(|v| v != "0"),
            client_checks: std::env::var("SIM_CLIENT_CHECKS").map_or(true, |v| v != "0"),
            buggify_percent: std::env::var("SIM_BUGGIFY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(BUGGIFY_PERCENT),
        }
    }
}

/// A seed's shape: cluster, network, disk, clients, faults.
#[derive(Clone, Debug)]
pub struct SeedParams {
    pub voters: usize,
    pub observers: usize,
    pub max_delay_ms: i64,
    pub fsync_ms: (i64, i64),
    pub clients: usize,
    pub op_gap_ms: (i64, i64),
    pub fault_gap_ms: (i64, i64),
    pub fault_phase_ms: i64,
    pub max_session_timeout_ms: u64,
    /// Register clients, when the sweep runs them ([`SweepOptions::client_checks`]).
    pub register_clients: usize,
    pub register_gap_ms: (i64, i64),
}

impl SeedParams {
    pub fn for_seed(seed: u64) -> SeedParams {
        let mut rng = SimRng::new(seed ^ 0x009a_7a3e_7e75);
        let (voters, observers) = match rng.range(0, 9) {
            0..=5 => (3, 0),
            6..=7 => (5, 0),
            _ => (3, 1),
        };
        SeedParams {
            voters,
            observers,
            max_delay_ms: rng.range(1, 10),
            fsync_ms: (1, rng.range(2, 12)),
            clients: rng.range(3, 6) as usize,
            op_gap_ms: (5, rng.range(20, 120)),
            fault_gap_ms: (200, rng.range(800, 3_000)),
            fault_phase_ms: 40_000,
            max_session_timeout_ms: 6_000,
            // Drawn last: the draws above stay what they were.
            register_clients: rng.range(2, 3) as usize,
            register_gap_ms: (20, rng.range(100, 300)),
        }
    }
}

/// What one seed did and found.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub params: SeedParams,
    pub violations: Vec<Violation>,
    /// Violations that match a [`KNOWN_ISSUES`] entry.
    pub known: Vec<Violation>,
    /// A panic inside the run (in the core or the simulator).
    pub panic: Option<String>,
    pub steps: u64,
    pub virtual_ms: i64,
    pub faults: u64,
    pub check: CheckStats,
    pub workload: WorkloadStats,
    pub trace: Vec<String>,
    pub log_tail: Vec<String>,
    pub real_ms: u128,
    /// With buggify on: times each core fault site fired, and torn NEWLEADER crashes.
    pub buggify: Option<(crate::quorum::buggify::Fired, u64)>,
}

impl SeedReport {
    pub fn failed(&self) -> bool {
        !self.violations.is_empty() || self.panic.is_some()
    }

    /// The first problem, in one line.
    pub fn headline(&self) -> String {
        match (&self.panic, self.violations.first()) {
            (Some(p), _) => format!("seed {}: panic: {p}", self.seed),
            (None, Some(v)) => format!("seed {}: {v}", self.seed),
            (None, None) => format!("seed {}: ok", self.seed),
        }
    }

    /// The full report: parameters, violations, the trace and the last log lines.
    pub fn render(&self, trace_lines: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.headline());
        let _ = writeln!(
            s,
            "  params: {:?}\n  steps {}, virtual {} ms, faults {}, real {} ms",
            self.params, self.steps, self.virtual_ms, self.faults, self.real_ms
        );
        let _ = writeln!(
            s,
            "  checker: {:?}\n  clients: {:?}",
            self.check, self.workload
        );
        if let Some((fired, torn)) = &self.buggify {
            let _ = writeln!(
                s,
                "  buggify on: sites fired {fired:?} (quorum::buggify::Site::ALL order), \
                 torn NEWLEADER writes {torn}"
            );
        }
        for v in &self.violations {
            let _ = writeln!(s, "  - {v}");
        }
        for v in &self.known {
            let _ = writeln!(s, "  - known issue: {v}");
        }
        let skip = self.trace.len().saturating_sub(trace_lines);
        let _ = writeln!(s, "  trace (last {} events):", self.trace.len() - skip);
        for t in &self.trace[skip..] {
            let _ = writeln!(s, "    {t}");
        }
        let skip = self.log_tail.len().saturating_sub(trace_lines);
        let _ = writeln!(s, "  log (last {} lines):", self.log_tail.len() - skip);
        for l in &self.log_tail[skip..] {
            let _ = writeln!(s, "    {l}");
        }
        let _ = writeln!(
            s,
            "  rerun: SIM_SEED={} cargo test --release --test sim_sweep",
            self.seed
        );
        s
    }
}

// ----- log capture -----

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static CONTEXT: Cell<(i64, usize)> = const { Cell::new((0, 0)) };
    static LINES: RefCell<VecDeque<String>> = const { RefCell::new(VecDeque::new()) };
    static PROTOCOL_ERRORS_SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Warnings that name a protocol error (spec/README.md design choice 14).
const PROTOCOL_ERRORS: [&str; 7] = [
    "unexpected packet type",
    "is not for the next",
    "does not follow",
    "is not of epoch",
    "NEWLEADER before the truncated log",
    "too many proposals",
    "bad snapshot",
];

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info && CAPTURING.with(Cell::get)
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = r.args().to_string();
        if r.target() == "zabd::sim" {
            // The checker's and the nemesis's own notes carry their time already.
            return push_line(text);
        }
        let (now_ms, node) = CONTEXT.with(Cell::get);
        let sid = node + 1;
        if r.level() <= log::Level::Warn && PROTOCOL_ERRORS.iter().any(|p| text.contains(p)) {
            PROTOCOL_ERRORS_SEEN.with(|e| {
                let mut e = e.borrow_mut();
                if e.len() < 8 {
                    e.push(format!("s{sid}: {text}"));
                }
            });
        }
        push_line(format!("t={now_ms:>6} s{sid} {:5} {text}", r.level()));
    }

    fn flush(&self) {}
}

fn push_line(line: String) {
    LINES.with(|l| {
        let mut l = l.borrow_mut();
        if l.len() >= LOG_LINES_MAX {
            l.pop_front();
        }
        l.push_back(line);
    });
}

static CAPTURE: Capture = Capture;

/// Routes the `log` crate to the per-thread capture (once per process; a no-op when another
/// logger is already installed, which then sees the lines instead).
pub fn install_log_capture() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// The simulator says which node runs, and when, before each step (for log lines).
pub fn set_log_context(now_ms: i64, node: usize) {
    CONTEXT.with(|c| c.set((now_ms, node)));
}

fn take_protocol_errors() -> Vec<String> {
    PROTOCOL_ERRORS_SEEN.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

// ----- the nemesis -----

#[derive(Clone, Copy, Debug)]
enum Action {
    Restart(usize),
    /// Heal the partition of this generation (a newer one stays).
    Heal(u64),
    FsyncNormal(usize),
}

struct Nemesis {
    rng: SimRng,
    scheduled: BTreeMap<(i64, u64), Action>,
    seq: u64,
    partition_gen: u64,
    next_fault_ms: i64,
    faults: u64,
    network_faults: bool,
}

impl Nemesis {
    fn schedule(&mut self, at_ms: i64, a: Action) {
        self.seq += 1;
        self.scheduled.insert((at_ms, self.seq), a);
    }

    fn run_due(&mut self, sim: &mut Sim) {
        while let Some((&(at, _), _)) = self.scheduled.first_key_value() {
            if at > sim.now_ms {
                return;
            }
            let (_, a) = self.scheduled.pop_first().expect("checked");
            match a {
                Action::Restart(n) if !sim.is_up(n) => sim.start(n),
                Action::Restart(_) => {}
                Action::Heal(g) if g == self.partition_gen => {
                    sim.note("nemesis: heal partitions");
                    sim.heal();
                }
                Action::Heal(_) => {}
                Action::FsyncNormal(n) => sim.nodes[n].fsync_extra_ms = 0,
            }
        }
    }

    fn partition(&mut self, sim: &mut Sim, groups: &[usize], what: &str) {
        sim.heal();
        self.partition_gen += 1;
        let n = sim.nodes.len();
        for &a in groups {
            for b in 0..n {
                if !groups.contains(&b) {
                    sim.partition(a, b);
                }
            }
        }
        let sids: Vec<usize> = groups.iter().map(|g| g + 1).collect();
        sim.note(format_args!(
            "nemesis: partition ({what}): s{sids:?} | the rest"
        ));
        let heal = sim.now_ms + self.rng.range(200, 5_000);
        self.schedule(heal, Action::Heal(self.partition_gen));
    }

    fn inject(&mut self, sim: &mut Sim) {
        self.faults += 1;
        let n = sim.nodes.len();
        let up: Vec<usize> = (0..n).filter(|&i| sim.is_up(i)).collect();
        let leader = sim.leader();
        let pick =
            |rng: &mut SimRng, from: &[usize]| from[rng.range(0, from.len() as i64 - 1) as usize];
        match self.rng.range(0, 99) {
            0..=29 if up.len() > 1 => {
                // Crash a node, or the leader; it restarts later.
                let victim = match leader {
                    Some(l) if self.rng.chance(40) => l,
                    _ => pick(&mut self.rng, &up),
                };
                sim.note(format_args!("nemesis: crash s{}", victim + 1));
                sim.crash(victim);
                let at = sim.now_ms + self.rng.range(50, 6_000);
                self.schedule(at, Action::Restart(victim));
            }
            30..=34 if !up.is_empty() => {
                let victim = pick(&mut self.rng, &up);
                sim.note(format_args!("nemesis: kill -9 and restart s{}", victim + 1));
                sim.crash(victim);
                sim.start(victim);
            }
            35..=46 => {
                let victim = self.rng.range(0, n as i64 - 1) as usize;
                self.partition(sim, &[victim], "isolate a node");
            }
            47..=58 => {
                if let Some(l) = leader {
                    self.partition(sim, &[l], "isolate the leader");
                }
            }
            59..=66 => {
                let mut nodes: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    let j = self.rng.range(0, i as i64) as usize;
                    nodes.swap(i, j);
                }
                let k = self.rng.range(1, (n / 2) as i64) as usize;
                self.partition(sim, &nodes[..k], "split");
            }
            67..=81 if up.len() > 1 => {
                let a = leader.unwrap_or_else(|| pick(&mut self.rng, &up));
                let others: Vec<usize> = up.iter().copied().filter(|&x| x != a).collect();
                let b = pick(&mut self.rng, &others);
                sim.note(format_args!(
                    "nemesis: break links s{} <-> s{}",
                    a + 1,
                    b + 1
                ));
                sim.break_links(a, b);
            }
            82..=93 => {
                let victim = self.rng.range(0, n as i64 - 1) as usize;
                let extra = self.rng.range(20, 800);
                sim.note(format_args!(
                    "nemesis: slow fsync on s{}: +{extra} ms",
                    victim + 1
                ));
                sim.nodes[victim].fsync_extra_ms = extra;
                let at = sim.now_ms + self.rng.range(500, 5_000);
                self.schedule(at, Action::FsyncNormal(victim));
            }
            _ => {
                sim.note("nemesis: heal partitions");
                self.partition_gen += 1;
                sim.heal();
            }
        }
        if self.network_faults && self.rng.chance(35) {
            if self.rng.chance(50) {
                self.one_way(sim, leader);
            } else {
                self.bridge(sim);
            }
        }
    }

    /// Two halves that cannot reach each other, and one node (the bridge) that reaches both.
    fn bridge(&mut self, sim: &mut Sim) {
        let n = sim.nodes.len();
        let mut nodes: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.range(0, i as i64) as usize;
            nodes.swap(i, j);
        }
        let (bridge, rest) = (nodes[0], &nodes[1..]);
        let (a, b) = rest.split_at(rest.len() / 2);
        sim.heal();
        self.partition_gen += 1;
        for &x in a {
            for &y in b {
                sim.partition(x, y);
            }
        }
        let one = |g: &[usize]| g.iter().map(|x| x + 1).collect::<Vec<_>>();
        sim.note(format_args!(
            "nemesis: bridge partition: s{:?} | s{:?}, s{} reaches both",
            one(a),
            one(b),
            bridge + 1
        ));
        let heal = sim.now_ms + self.rng.range(200, 5_000);
        self.schedule(heal, Action::Heal(self.partition_gen));
    }

    /// Everything one node (the leader, half the time) sends waits until healed.
    fn one_way(&mut self, sim: &mut Sim, leader: Option<usize>) {
        let n = sim.nodes.len();
        let from = match leader {
            Some(l) if self.rng.chance(50) => l,
            _ => self.rng.range(0, n as i64 - 1) as usize,
        };
        for to in (0..n).filter(|&t| t != from) {
            sim.stall(from, to);
        }
        self.partition_gen += 1;
        sim.note(format_args!(
            "nemesis: one-way partition: what s{} sends waits",
            from + 1
        ));
        let heal = sim.now_ms + self.rng.range(200, 5_000);
        self.schedule(heal, Action::Heal(self.partition_gen));
    }
}

// ----- one run -----

struct Run {
    sim: Sim,
    wl: Workload,
    nem: Nemesis,
    opts: SweepOptions,
    violations: Vec<Violation>,
    known: Vec<Violation>,
}

impl Run {
    /// One round: the network and disks, then the clients; false once something is found.
    fn round(&mut self) -> bool {
        self.sim.run_for(ROUND_MS);
        self.wl.step(&mut self.sim);
        self.collect()
    }

    fn collect(&mut self) -> bool {
        let (now_ms, step) = (self.sim.now_ms, self.sim.steps);
        let mut found: Vec<Violation> = take_protocol_errors()
            .into_iter()
            .map(|message| Violation {
                property: "NoProtocolError",
                message,
                now_ms,
                step,
            })
            .collect();
        if let Some(c) = self.sim.checker.as_mut() {
            found.append(&mut c.violations);
        }
        found.append(&mut self.wl.violations);
        if self.sim.steps > STEPS_MAX {
            found.push(Violation {
                property: "StepBudget",
                message: format!("more than {STEPS_MAX} steps"),
                now_ms,
                step,
            });
        }
        for v in found {
            if self.opts.skip.iter().any(|s| s == v.property) {
                continue;
            }
            if !self.opts.strict && known_issue(&v) {
                if self.known.len() < 8 {
                    self.known.push(v);
                }
            } else {
                self.violations.push(v);
            }
        }
        self.violations.is_empty()
    }

    fn fail(&mut self, property: &'static str, message: String) {
        self.violations.push(Violation {
            property,
            message,
            now_ms: self.sim.now_ms,
            step: self.sim.steps,
        });
    }

    fn all_serving(&self) -> bool {
        (0..self.sim.nodes.len()).all(|i| self.sim.serving(i))
    }

    fn converged(&self) -> bool {
        let zxids: Vec<i64> = self
            .sim
            .nodes
            .iter()
            .filter_map(|n| n.peer.as_ref().map(|p| p.tree().last_processed_zxid()))
            .collect();
        zxids.len() == self.sim.nodes.len() && zxids.iter().all(|&z| z == zxids[0])
    }

    /// Rounds until `done` or `limit_ms` passes; false on a violation or the limit.
    fn until(&mut self, limit_ms: i64, done: impl Fn(&Run) -> bool) -> Option<bool> {
        let deadline = self.sim.now_ms + limit_ms;
        while self.sim.now_ms < deadline {
            if !self.round() {
                return None;
            }
            if done(self) {
                return Some(true);
            }
        }
        Some(false)
    }

    fn go(&mut self, p: &SeedParams) {
        let Some(formed) = self.until(20_000, |r| r.all_serving()) else {
            return;
        };
        if !formed {
            return self.fail("Liveness", "the ensemble did not form within 20 s".into());
        }
        let fault_end = self.sim.now_ms + p.fault_phase_ms;
        self.nem.next_fault_ms = self.sim.now_ms + 1_000;
        while self.sim.now_ms < fault_end {
            if !self.round() {
                return;
            }
            self.nem.run_due(&mut self.sim);
            if self.wl.setup_done() && self.sim.now_ms >= self.nem.next_fault_ms {
                self.nem.inject(&mut self.sim);
                let gap = self.nem.rng.range(p.fault_gap_ms.0, p.fault_gap_ms.1);
                self.nem.next_fault_ms = self.sim.now_ms + gap;
            }
        }
        // Heal everything; the ensemble must serve again.
        self.sim.note("nemesis: stop; heal and restart everything");
        self.nem.scheduled.clear();
        self.sim.heal();
        for n in 0..self.sim.nodes.len() {
            self.sim.nodes[n].fsync_extra_ms = 0;
            if !self.sim.is_up(n) {
                self.sim.start(n);
            }
        }
        let Some(serving) = self.until(RECOVERY_LIMIT_MS, |r| r.all_serving()) else {
            return;
        };
        if !serving {
            let states: Vec<_> = (0..self.sim.nodes.len())
                .map(|i| (self.sim.state(i), self.sim.serving(i)))
                .collect();
            let msg =
                format!("not every node serves {RECOVERY_LIMIT_MS} ms after healing: {states:?}");
            return self.fail("Liveness", msg);
        }
        // Clients keep going a little, then drain.
        if self.until(2_000, |_| false).is_none() {
            return;
        }
        self.wl.issuing = false;
        if self.until(8_000, |r| r.wl.outstanding() == 0).is_none() {
            return;
        }
        let Some(converged) = self.until(5_000, |r| r.all_serving() && r.converged()) else {
            return;
        };
        if !converged {
            return self.fail("Liveness", "the healed ensemble does not converge".into());
        }
        let found = self.wl.check_trees(&self.sim, false);
        self.violations.extend(found);
        self.wl.check_register(&self.sim);
        if !self.collect() {
            return;
        }
        // Every client goes away; every session must expire, with its ephemerals.
        self.wl.active = false;
        let wait = p.max_session_timeout_ms as i64 + 4_000;
        if self.until(wait, |_| false).is_none() {
            return;
        }
        if self.until(5_000, |r| r.all_serving() && r.converged()) != Some(true) {
            if self.violations.is_empty() {
                self.fail(
                    "Liveness",
                    "the ensemble does not converge after expiry".into(),
                );
            }
            return;
        }
        let found = self.wl.check_trees(&self.sim, true);
        self.violations.extend(found);
        if let Some(mut c) = self.sim.checker.take() {
            c.check_end(&self.sim);
            self.sim.checker = Some(c);
        }
        self.collect();
    }
}

/// Runs one seed with every checker on.
pub fn run_seed(seed: u64, opts: &SweepOptions) -> SeedReport {
    let started = std::time::Instant::now();
    let params = SeedParams::for_seed(seed);
    CAPTURING.with(|c| c.set(true));
    LINES.with(|l| l.borrow_mut().clear());
    take_protocol_errors();
    let p = params.clone();
    let opts = opts.clone();
    let client_checks = opts.client_checks;
    let result = std::panic::catch_unwind(move || {
        let max_timeout = p.max_session_timeout_ms;
        let mut sim = Sim::with_config(seed, p.voters, p.observers, |c| {
            c.max_session_timeout_ms = Some(max_timeout);
        });
        sim.max_delay_ms = p.max_delay_ms;
        sim.fsync_ms = p.fsync_ms;
        if opts.network_faults {
            sim.election_drop_percent = 5;
            sim.election_dup_percent = 5;
        }
        if buggified(seed, opts.buggify_percent) {
            sim.enable_buggify(seed);
        }
        sim.enable_checker();
        let wl = Workload::new(
            seed,
            &sim,
            WorkloadParams {
                clients: p.clients,
                op_gap_ms: p.op_gap_ms,
                session_timeout_ms: max_timeout as i32,
                register_clients: if client_checks { p.register_clients } else { 0 },
                register_gap_ms: p.register_gap_ms,
            },
        );
        let mut run = Run {
            sim,
            wl,
            nem: Nemesis {
                rng: SimRng::new(seed ^ 0x0e5e_5155),
                scheduled: BTreeMap::new(),
                seq: 0,
                partition_gen: 0,
                next_fault_ms: i64::MAX,
                faults: 0,
                network_faults: opts.network_faults,
            },
            opts,
            violations: Vec::new(),
            known: Vec::new(),
        };
        run.go(&p);
        run
    });
    CAPTURING.with(|c| c.set(false));
    let log_tail: Vec<String> = LINES.with(|l| l.borrow_mut().drain(..).collect());
    let real_ms = started.elapsed().as_millis();
    match result {
        Ok(run) => {
            let c = run.sim.checker.as_ref().expect("enabled");
            SeedReport {
                seed,
                params,
                violations: run.violations,
                known: run.known,
                panic: None,
                steps: run.sim.steps,
                virtual_ms: run.sim.now_ms - 1_000_000,
                faults: run.nem.faults,
                check: c.stats.clone(),
                workload: run.wl.stats.clone(),
                trace: c.trace().cloned().collect(),
                log_tail,
                real_ms,
                buggify: run.sim.buggify_fired(),
            }
        }
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            SeedReport {
                seed,
                params,
                violations: Vec::new(),
                known: Vec::new(),
                panic: Some(msg),
                steps: 0,
                virtual_ms: 0,
                faults: 0,
                check: CheckStats::default(),
                workload: WorkloadStats::default(),
                trace: Vec::new(),
                log_tail,
                real_ms,
                buggify: None,
            }
        }
    }
}

/// Runs `seeds` on `threads` threads (each seed alone is deterministic); reports in seed
/// order.
pub fn run_seeds(seeds: &[u64], threads: usize, opts: &SweepOptions) -> Vec<SeedReport> {
    let threads = threads.clamp(1, 64);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut reports: Vec<SeedReport> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else {
                            return mine;
                        };
                        mine.push(run_seed(seed, opts));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("sweep worker"))
            .collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}
