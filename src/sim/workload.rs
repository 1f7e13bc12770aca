//! Simulated clients and the client-visible checks (ZooKeeper's guarantees as a client sees
//! them), for the seeded sweep.
//!
//! Each client holds one connection at a time, to a random node, with at most one request
//! outstanding (plus pings); when the connection goes (the node crashes, closes it, or stays
//! silent for 2/3 of the session timeout) the request's outcome is unknown and the client
//! moves on, keeping its session when the ensemble still knows it.
//!
//! Checked as replies arrive and once the ensemble is quiet:
//! - **AckedWritesKept**: every client owns a few keys and is their only writer, so each
//!   key's possible states are the acknowledged operations applied in order, each
//!   unknown-outcome operation applied or not. Every reply and every read of an owned key
//!   must fit them, and so must every node's tree at the end.
//! - **SequentialUnique**: acknowledged sequential names are unique, and all exist at the end.
//! - **MultiAtomic**: a multi's creates exist together or not at all.
//! - **EphemeralLifetime**: ephemerals of live sessions exist; those of closed or expired
//!   sessions are gone everywhere; after every session has expired, none is left.
//! - **MonotonicReads**: a client never sees a zxid lower than one it saw before (it passes
//!   the last one it saw when it reconnects, so this holds across servers).
//!
//! With `register_clients` (the default sweep; off for the regression seeds, whose runs must
//! not change), more clients share one znode, [`REG_PATH`], with setData (plain and
//! version-checked), getData (some setting a watch), a setData with a getData right behind it
//! on the connection, and moves of their session to another server, drawing from their own
//! random stream:
//! - **Linearizable**: their history, checked after the run by [`crate::check::linearizable`]
//!   against [`SeqRegister`]: writes are linearizable; a read is sequentially consistent only
//!   (a follower may answer from an older state), so it may show any state the register held
//!   since the newest one its session had seen.
//! - **SessionOrder**: within a session (across reconnects to other servers), a read never
//!   shows an older version than an earlier read or acknowledged write of the session, a
//!   write's new version is newer than all of them, and replies come in request order.
//! - **WatchBeforeData**: a client with a data watch on the znode receives its event before any
//!   reply that shows a newer version than the one the watch was set on.

use super::checker::Violation;
use super::{Sim, SimRng};
use crate::check::history::{History, Op as HOp, Outcome as HOutcome};
use crate::check::linearizable::{self, Model, Verdict};
use crate::check::register::{RegCall, RegRet, Register};
use crate::jute::data::{perms, Acl, Id};
use crate::jute::proto::{
    create_mode, event_type, op, xid, Code, ConnectRequest, CreateRequest, DeleteRequest,
    MultiResult, PathWatchRequest, ReplyHeader, Request, Response, SetDataRequest,
};
use crate::server::{CnxnId, Input, Output};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// Owned keys per client.
pub const KEYS_PER_CLIENT: usize = 3;

/// Possible states kept per owned key before it is no longer checked.
pub const POSSIBLE_STATES_MAX: usize = 32;

/// Violations kept.
pub const VIOLATIONS_MAX: usize = 8;

/// How long a handshake may take before the client tries elsewhere.
pub const CONNECT_TIMEOUT_MS: i64 = 1_000;

/// The znode the register clients share.
pub const REG_PATH: &str = "/reg";

/// The linearizability search's budget; past it the verdict is unknown (counted, not failed).
pub const LIN_STEPS_MAX: u64 = 3_000_000;

#[derive(Clone, Debug)]
pub struct WorkloadParams {
    pub clients: usize,
    /// Pause between a client's operations.
    pub op_gap_ms: (i64, i64),
    /// Requested session timeout (the servers clamp it).
    pub session_timeout_ms: i32,
    /// Clients of the shared register [`REG_PATH`] (0: none, and the run is exactly what it
    /// was before they existed).
    pub register_clients: usize,
    /// Pause between a register client's operations.
    pub register_gap_ms: (i64, i64),
}

/// What the clients did.
#[derive(Clone, Debug, Default)]
pub struct WorkloadStats {
    pub ops_sent: u64,
    pub acked_ok: u64,
    pub acked_err: u64,
    pub unknown: u64,
    pub reads: u64,
    pub connects: u64,
    pub sessions: u64,
    pub sessions_expired: u64,
    pub connections_lost: u64,
    /// Register operations recorded (sent), and those whose outcome stayed unknown.
    pub register_ops: u64,
    pub register_unknown: u64,
    /// Watch events the register clients received.
    pub register_events: u64,
    /// Times a register client moved its session to another server on purpose.
    pub register_moves: u64,
    /// Handshakes of register clients that a server closed (it is behind the client, or the
    /// session is gone).
    pub register_refused: u64,
    /// The linearizability verdict on the register history: "-" (not run), "ok",
    /// "unknown: ..." (budget) or "violation".
    pub register_verdict: String,
}

/// A key's state: absent, or (version, data id).
type KeyState = Option<(i32, u64)>;

#[derive(Clone, Debug)]
enum Op {
    Setup {
        path: String,
    },
    Create {
        key: String,
        data: u64,
    },
    Set {
        key: String,
        data: u64,
        version: i32,
    },
    Delete {
        key: String,
        version: i32,
    },
    Read {
        key: String,
    },
    CreateSeq,
    CreateEph {
        path: String,
    },
    Multi {
        a: String,
        b: String,
        fail: bool,
    },
    ReadAny {
        path: String,
        children: bool,
    },
    CloseSession,
    /// setData of the register; `version` -1 is a plain write.
    RegSet {
        data: u64,
        version: i32,
    },
    /// getData of the register; `min_version`: the newest version the session had seen.
    RegGet {
        watch: bool,
        min_version: i32,
    },
}

struct Conn {
    node: usize,
    cnxn: CnxnId,
    incarnation: u64,
    connected: bool,
    opened_ms: i64,
    last_recv_ms: i64,
    last_send_ms: i64,
}

struct Outstanding {
    xid: i32,
    op: Op,
    session: i64,
    sent_ms: i64,
}

struct SimClient {
    conn: Option<Conn>,
    session: Option<(i64, i32)>,
    last_zxid: i64,
    xid: i32,
    outstanding: Option<Outstanding>,
    /// A register client's read sent right behind its write, before that was answered.
    pipelined: Option<Outstanding>,
    next_op_ms: i64,
    reconnect_at_ms: i64,
    names: u64,
    /// What this client's session saw of the register.
    reg: SessionTracker,
}

/// What a register client does next.
enum RegChoice {
    One(Op),
    /// The write, and a read right behind it on the same connection.
    WriteThenRead(Op),
    /// Move the session to another server.
    Move,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Applied,
    NotApplied,
    Unknown,
}

struct KeyModel {
    possible: Vec<KeyState>,
    overflow: bool,
}

/// The clients, what they were told, and the checks on it.
pub struct Workload {
    rng: SimRng,
    params: WorkloadParams,
    clients: Vec<SimClient>,
    owner: BTreeMap<CnxnId, usize>,
    next_cnxn: u64,
    next_data: u64,
    keys: BTreeMap<String, KeyModel>,
    setup: Vec<String>,
    seq_names: BTreeSet<String>,
    multis: Vec<(String, String, Outcome)>,
    /// Ephemerals created: (path, session, acknowledged).
    ephemerals: Vec<(String, i64, bool)>,
    /// Sessions whose close was acknowledged.
    closed_sessions: BTreeSet<i64>,
    pub violations: Vec<Violation>,
    pub stats: WorkloadStats,
    /// New operations are issued (off while the run drains).
    pub issuing: bool,
    /// Clients keep their sessions alive and reconnect (off to let every session expire).
    pub active: bool,
    /// The register clients' own random stream (theirs never shifts the others' draws).
    reg_rng: SimRng,
    next_reg_data: u64,
    /// The register history, for the linearizability check.
    reg_history: History<SeqRegCall, RegRet>,
}

fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

fn data_bytes(id: u64) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// The bytes a register write of `id` stores (the register starts with id 0).
pub fn reg_value(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

fn data_id(data: &Option<Bytes>) -> u64 {
    match data {
        Some(b) if b.len() == 8 => u64::from_be_bytes(b[..].try_into().expect("8 bytes")),
        _ => u64::MAX,
    }
}

fn create(path: &str, data: Option<Bytes>, flags: i32) -> Request {
    Request::Create(
        op::CREATE,
        CreateRequest {
            path: path.into(),
            data,
            acl: open_acl(),
            flags,
        },
    )
}

/// What `op` does to an owned key in state `s`: the new state, the answer, and the new
/// version on success.
fn effect(s: KeyState, op: &Op) -> (KeyState, Code, Option<i32>) {
    match (op, s) {
        (Op::Create { data, .. }, None) => (Some((0, *data)), Code::Ok, Some(0)),
        (Op::Create { .. }, Some(_)) => (s, Code::NodeExists, None),
        (Op::Set { .. }, None) | (Op::Delete { .. }, None) => (s, Code::NoNode, None),
        (Op::Set { data, version, .. }, Some((v, _))) => {
            if *version == -1 || *version == v {
                (Some((v + 1, *data)), Code::Ok, Some(v + 1))
            } else {
                (s, Code::BadVersion, None)
            }
        }
        (Op::Delete { version, .. }, Some((v, _))) => {
            if *version == -1 || *version == v {
                (None, Code::Ok, None)
            } else {
                (s, Code::BadVersion, None)
            }
        }
        _ => (s, Code::Ok, None),
    }
}

impl Workload {
    pub fn new(seed: u64, sim: &Sim, params: WorkloadParams) -> Workload {
        let mut setup = vec!["/seq".to_owned(), "/eph".to_owned(), "/m".to_owned()];
        let mut keys = BTreeMap::new();
        for c in 0..params.clients {
            setup.push(format!("/c{c}"));
            for k in 0..KEYS_PER_CLIENT {
                keys.insert(
                    format!("/c{c}/k{k}"),
                    KeyModel {
                        possible: vec![None],
                        overflow: false,
                    },
                );
            }
        }
        if params.register_clients > 0 {
            setup.push(REG_PATH.to_owned());
        }
        let clients = (0..params.clients + params.register_clients)
            .map(|i| SimClient {
                conn: None,
                session: None,
                last_zxid: 0,
                xid: 0,
                outstanding: None,
                pipelined: None,
                next_op_ms: sim.now_ms,
                reconnect_at_ms: sim.now_ms + i as i64,
                names: 0,
                reg: SessionTracker::default(),
            })
            .collect();
        Workload {
            rng: SimRng::new(seed ^ 0x005e_edc1_1e47),
            params,
            clients,
            owner: BTreeMap::new(),
            next_cnxn: 1,
            next_data: 1,
            keys,
            setup,
            seq_names: BTreeSet::new(),
            multis: Vec::new(),
            ephemerals: Vec::new(),
            closed_sessions: BTreeSet::new(),
            violations: Vec::new(),
            stats: WorkloadStats::default(),
            issuing: true,
            active: true,
            reg_rng: SimRng::new(seed ^ 0x7e61_57e7),
            next_reg_data: 1,
            reg_history: History::new(),
        }
    }

    fn is_reg(&self, c: usize) -> bool {
        c >= self.params.clients
    }

    /// Client `c`'s random stream.
    fn rng_of(&mut self, c: usize) -> &mut SimRng {
        if self.is_reg(c) {
            &mut self.reg_rng
        } else {
            &mut self.rng
        }
    }

    /// Feeds what client `c` saw to its session checks.
    fn reg_observe(&mut self, sim: &Sim, c: usize, ev: RegEvent) {
        let session = self.clients[c].session.map(|s| s.0);
        if let Some((property, what)) = self.clients[c].reg.observe(&ev) {
            let msg = format!("register client {c} (session {session:x?}): {what}");
            Self::violate(&mut self.violations, sim, property, msg);
        }
    }

    fn violate(
        violations: &mut Vec<Violation>,
        sim: &Sim,
        property: &'static str,
        message: String,
    ) {
        if violations.len() < VIOLATIONS_MAX {
            violations.push(Violation {
                property,
                message,
                now_ms: sim.now_ms,
                step: sim.steps,
            });
        }
    }

    /// True once the parent nodes exist.
    pub fn setup_done(&self) -> bool {
        self.setup.is_empty()
    }

    /// Requests still waiting for an answer.
    pub fn outstanding(&self) -> usize {
        self.clients
            .iter()
            .map(|c| usize::from(c.outstanding.is_some()) + usize::from(c.pipelined.is_some()))
            .sum()
    }

    /// One round: read what the nodes answered, notice lost connections, reconnect, send.
    pub fn step(&mut self, sim: &mut Sim) {
        for node in 0..sim.nodes.len() {
            for o in sim.take_client_out(node) {
                self.on_output(sim, o);
            }
        }
        for c in 0..self.clients.len() {
            self.drive_client(sim, c);
        }
    }

    fn on_output(&mut self, sim: &mut Sim, o: Output) {
        let Some(cnxn) = o.cnxn() else {
            return;
        };
        let Some(&c) = self.owner.get(&cnxn) else {
            return;
        };
        match o {
            Output::Connected { resp, close, .. } => self.on_connected(sim, c, resp, close),
            Output::Reply { header, body, .. } => self.on_reply(sim, c, header, body),
            Output::Close { .. } => {
                let handshake = self.clients[c].conn.as_ref().is_some_and(|x| !x.connected);
                if self.is_reg(c) && handshake {
                    self.stats.register_refused += 1;
                }
                self.lose_connection(sim, c)
            }
            _ => {}
        }
    }

    fn on_connected(
        &mut self,
        sim: &mut Sim,
        c: usize,
        resp: crate::jute::proto::ConnectResponse,
        close: bool,
    ) {
        let now = sim.now_ms;
        if self.clients[c].conn.is_none() {
            return;
        }
        if close {
            // Refused: our session is gone (expired or closed).
            if let Some((s, _)) = self.clients[c].session.take() {
                self.stats.sessions_expired += 1;
                sim.note(format_args!("client {c}: session 0x{s:x} expired"));
            }
            self.lose_connection(sim, c);
            return;
        }
        let client = &mut self.clients[c];
        let conn = client.conn.as_mut().expect("checked above");
        conn.connected = true;
        conn.last_recv_ms = now;
        match client.session {
            Some((s, _)) if s != resp.session_id => {
                let msg = format!(
                    "client {c} reconnected with session 0x{s:x} and got 0x{:x}",
                    resp.session_id
                );
                Self::violate(&mut self.violations, sim, "SessionIdentity", msg);
            }
            Some(_) => {}
            None => {
                client.session = Some((resp.session_id, resp.time_out));
                self.stats.sessions += 1;
                if self.is_reg(c) {
                    self.reg_observe(sim, c, RegEvent::NewSession);
                }
            }
        }
    }

    fn on_reply(&mut self, sim: &mut Sim, c: usize, header: ReplyHeader, body: Response) {
        if header.xid == xid::NOTIFICATION {
            if let Response::Event(e) = &body {
                if self.is_reg(c) && e.path == REG_PATH && e.type_ == event_type::NODE_DATA_CHANGED
                {
                    self.stats.register_events += 1;
                    self.reg_observe(sim, c, RegEvent::Changed);
                }
            }
            return;
        }
        let now = sim.now_ms;
        let client = &mut self.clients[c];
        if let Some(conn) = client.conn.as_mut() {
            conn.last_recv_ms = now;
        }
        if header.zxid < client.last_zxid {
            let msg = format!(
                "client {c} (session {:x?}) saw zxid 0x{:x} after 0x{:x} (reply to xid {})",
                client.session.map(|s| s.0),
                header.zxid,
                client.last_zxid,
                header.xid
            );
            Self::violate(&mut self.violations, sim, "MonotonicReads", msg);
        }
        client.last_zxid = client.last_zxid.max(header.zxid);
        if header.xid == xid::PING {
            return;
        }
        let out = match client.outstanding.take_if(|o| o.xid == header.xid) {
            Some(out) => out,
            None => {
                let Some(out) = client.pipelined.take_if(|o| o.xid == header.xid) else {
                    return;
                };
                if let Some(first) = &client.outstanding {
                    // A session's requests are answered in the order it sent them.
                    let msg = format!(
                        "client {c}: the reply to xid {} came before the reply to xid {}, sent before it",
                        header.xid, first.xid
                    );
                    Self::violate(&mut self.violations, sim, "SessionOrder", msg);
                }
                out
            }
        };
        let code = Code::from_i32(header.err).unwrap_or(Code::SystemError);
        if code == Code::Ok {
            self.stats.acked_ok += 1;
        } else {
            self.stats.acked_err += 1;
        }
        self.resolve(sim, c, out, Some((code, body)));
    }

    /// An operation's answer (`None`: unknown, the connection is gone).
    fn resolve(
        &mut self,
        sim: &mut Sim,
        c: usize,
        out: Outstanding,
        answer: Option<(Code, Response)>,
    ) {
        match out.op {
            Op::Setup { path } => {
                if matches!(answer, Some((Code::Ok | Code::NodeExists, _))) {
                    self.setup.retain(|p| *p != path);
                }
            }
            Op::Create { ref key, .. } | Op::Set { ref key, .. } | Op::Delete { ref key, .. } => {
                let key = key.clone();
                self.resolve_owned(sim, c, &key, &out.op, answer);
            }
            Op::Read { key } => {
                let Some((code, body)) = answer else {
                    return;
                };
                self.stats.reads += 1;
                let seen: KeyState = match (code, body) {
                    (Code::Ok, Response::GetData(data, stat)) => {
                        Some((stat.version, data_id(&data)))
                    }
                    (Code::NoNode, _) => None,
                    _ => return,
                };
                let model = &self.keys[&key];
                if !model.overflow && !model.possible.contains(&seen) {
                    let msg = format!(
                        "client {c} reads {key} as {seen:?}; its own writes allow only {:?}",
                        model.possible
                    );
                    Self::violate(&mut self.violations, sim, "AckedWritesKept", msg);
                }
            }
            Op::CreateSeq => {
                if let Some((Code::Ok, Response::Create(name))) = answer {
                    if !self.seq_names.insert(name.clone()) {
                        let msg = format!("sequential name {name} was handed out twice");
                        Self::violate(&mut self.violations, sim, "SequentialUnique", msg);
                    }
                }
            }
            Op::CreateEph { path } => match answer {
                Some((Code::Ok, _)) => self.ephemerals.push((path, out.session, true)),
                None => self.ephemerals.push((path, out.session, false)),
                Some(_) => {}
            },
            Op::Multi { a, b, fail } => {
                let outcome = match answer {
                    None => Outcome::Unknown,
                    Some((Code::Ok, Response::Multi(results))) => {
                        if results.iter().any(|r| matches!(r, MultiResult::Error(_))) {
                            Outcome::NotApplied
                        } else {
                            Outcome::Applied
                        }
                    }
                    Some(_) => Outcome::NotApplied,
                };
                if fail && outcome == Outcome::Applied {
                    let msg = format!("multi creating {a} and {b} with a failing op succeeded");
                    Self::violate(&mut self.violations, sim, "MultiAtomic", msg);
                }
                self.multis.push((a, b, outcome));
            }
            Op::ReadAny { .. } => {
                if answer.is_some() {
                    self.stats.reads += 1;
                }
            }
            Op::RegSet { .. } | Op::RegGet { .. } => self.resolve_reg(sim, c, &out, answer),
            Op::CloseSession => {
                if let Some((Code::Ok, _)) = answer {
                    self.closed_sessions.insert(out.session);
                    let client = &mut self.clients[c];
                    if client.session.map(|s| s.0) == Some(out.session) {
                        client.session = None;
                    }
                }
            }
        }
    }

    /// Records a register operation's outcome in the history and the session checks.
    fn resolve_reg(
        &mut self,
        sim: &Sim,
        c: usize,
        out: &Outstanding,
        answer: Option<(Code, Response)>,
    ) {
        let invoke_ns = out.sent_ms as u64 * 1_000_000 + 1;
        let complete_ns = sim.now_ms as u64 * 1_000_000;
        let (call, outcome) = match (&out.op, answer) {
            (&Op::RegSet { data, version }, answer) => {
                let value = reg_value(data);
                let call = if version == -1 {
                    RegCall::Write(value)
                } else {
                    RegCall::Cas {
                        expected_version: version,
                        value,
                    }
                };
                let outcome = match answer {
                    None => HOutcome::Unknown,
                    Some((Code::Ok, Response::Stat(stat))) => {
                        self.reg_observe(
                            sim,
                            c,
                            RegEvent::Written {
                                version: stat.version,
                            },
                        );
                        HOutcome::Ok(RegRet::Written {
                            version: stat.version,
                        })
                    }
                    Some((Code::BadVersion, _)) => HOutcome::Ok(RegRet::BadVersion),
                    // Refused before it became a transaction (session expired or moved).
                    Some(_) => HOutcome::Fail,
                };
                (SeqRegCall::Reg(call), outcome)
            }
            (&Op::RegGet { watch, min_version }, answer) => {
                let outcome = match answer {
                    Some((Code::Ok, Response::GetData(data, stat))) => {
                        self.stats.reads += 1;
                        let ev = RegEvent::Read {
                            version: stat.version,
                            watch,
                        };
                        self.reg_observe(sim, c, ev);
                        HOutcome::Ok(RegRet::Read {
                            value: Some(data.map(|d| d.to_vec()).unwrap_or_default()),
                            version: stat.version,
                        })
                    }
                    // A read that failed or got lost tells nothing.
                    _ => return,
                };
                (SeqRegCall::LaggingRead { min_version }, outcome)
            }
            _ => return,
        };
        if matches!(outcome, HOutcome::Unknown) {
            self.stats.register_unknown += 1;
        }
        let complete_ns = (!matches!(outcome, HOutcome::Unknown)).then_some(complete_ns);
        self.reg_history.push(HOp {
            process: c as u64,
            invoke_ns,
            complete_ns,
            call,
            outcome,
        });
    }

    fn resolve_owned(
        &mut self,
        sim: &mut Sim,
        c: usize,
        key: &str,
        op: &Op,
        answer: Option<(Code, Response)>,
    ) {
        let model = self.keys.get_mut(key).expect("owned key");
        if model.overflow {
            return;
        }
        let mut next: Vec<KeyState> = Vec::new();
        match answer {
            None => {
                for &s in &model.possible {
                    next.push(s);
                    next.push(effect(s, op).0);
                }
            }
            Some((code, body)) => {
                if !matches!(
                    code,
                    Code::Ok | Code::NodeExists | Code::NoNode | Code::BadVersion
                ) {
                    // Refused before it became a transaction (session expired, ...).
                    return;
                }
                let version = match (&code, &body) {
                    (Code::Ok, Response::Stat(stat)) => Some(stat.version),
                    _ => None,
                };
                for &s in &model.possible {
                    let (ns, want, v) = effect(s, op);
                    let version_ok = version.is_none() || version == v;
                    if want == code && version_ok {
                        next.push(ns);
                    }
                }
                if next.is_empty() {
                    let msg = format!(
                        "client {c}: {op:?} answered {code:?} (version {version:?}), impossible from {:?}",
                        model.possible
                    );
                    Self::violate(&mut self.violations, sim, "AckedWritesKept", msg);
                    model.overflow = true;
                    return;
                }
            }
        }
        next.sort_unstable();
        next.dedup();
        if next.len() > POSSIBLE_STATES_MAX {
            model.overflow = true;
        }
        model.possible = next;
    }

    /// The connection is gone (closed by either side, or its node crashed); as the client
    /// thread does, the node hears that it closed.
    fn lose_connection(&mut self, sim: &mut Sim, c: usize) {
        let client = &mut self.clients[c];
        let Some(conn) = client.conn.take() else {
            return;
        };
        self.owner.remove(&conn.cnxn);
        self.stats.connections_lost += 1;
        if sim.is_up(conn.node) && sim.incarnation(conn.node) == conn.incarnation {
            sim.client(conn.node, Input::Closed { cnxn: conn.cnxn });
        }
        let backoff = self.rng_of(c).range(10, 200);
        if self.is_reg(c) {
            self.reg_observe(sim, c, RegEvent::ConnectionLost);
        }
        let client = &mut self.clients[c];
        client.reconnect_at_ms = sim.now_ms + backoff;
        if let Some(out) = client.outstanding.take() {
            self.stats.unknown += 1;
            self.resolve(sim, c, out, None);
        }
        if let Some(out) = self.clients[c].pipelined.take() {
            self.stats.unknown += 1;
            self.resolve(sim, c, out, None);
        }
    }

    fn drive_client(&mut self, sim: &mut Sim, c: usize) {
        let now = sim.now_ms;
        if let Some(conn) = &self.clients[c].conn {
            let gone = !sim.is_up(conn.node) || sim.incarnation(conn.node) != conn.incarnation;
            let timeout = self.clients[c].session.map_or(4_000, |s| s.1 as i64);
            let silent = if conn.connected {
                now - conn.last_recv_ms > timeout * 2 / 3
            } else {
                now - conn.opened_ms > CONNECT_TIMEOUT_MS
            };
            if gone || silent || !self.active {
                self.lose_connection(sim, c);
                return;
            }
        }
        if !self.active {
            return;
        }
        if self.clients[c].conn.is_none() {
            if now >= self.clients[c].reconnect_at_ms {
                self.connect(sim, c);
            }
            return;
        }
        let client = &self.clients[c];
        let conn = client.conn.as_ref().expect("connected");
        if !conn.connected {
            return;
        }
        let timeout = client.session.map_or(4_000, |s| s.1 as i64);
        let idle = client.outstanding.is_none() && client.pipelined.is_none();
        if idle && now >= client.next_op_ms {
            let op = if !self.setup.is_empty() {
                (c == 0).then(|| Op::Setup {
                    path: self.setup[0].clone(),
                })
            } else if self.issuing && self.is_reg(c) {
                let (op, then_read) = match self.pick_reg_op(c) {
                    RegChoice::One(op) => (Some(op), false),
                    RegChoice::WriteThenRead(op) => (Some(op), true),
                    RegChoice::Move => (None, false),
                };
                if then_read {
                    let op = op.expect("a write");
                    self.send_op(sim, c, op);
                    // Right behind it, before its answer: the read must see the write.
                    let min_version = self.clients[c].reg.floor.unwrap_or(0);
                    let read = Op::RegGet {
                        watch: false,
                        min_version,
                    };
                    self.send_op(sim, c, read);
                    return;
                }
                if op.is_none() {
                    // The session moves to another server at once, as a client does when it
                    // rebalances: the session's guarantees must hold across the move.
                    self.stats.register_moves += 1;
                    self.lose_connection(sim, c);
                    let gap = self.reg_rng.range(0, 50);
                    let client = &mut self.clients[c];
                    client.reconnect_at_ms = now;
                    client.next_op_ms = now + gap;
                    return;
                }
                op
            } else if self.issuing {
                Some(self.pick_op(c))
            } else {
                None
            };
            if let Some(op) = op {
                self.send_op(sim, c, op);
                return;
            }
        }
        let conn = self.clients[c].conn.as_ref().expect("connected");
        if now - conn.last_send_ms >= timeout / 3 {
            let (node, cnxn) = (conn.node, conn.cnxn);
            self.clients[c]
                .conn
                .as_mut()
                .expect("connected")
                .last_send_ms = now;
            sim.client(
                node,
                Input::Request {
                    cnxn,
                    xid: xid::PING,
                    req: Request::Ping,
                },
            );
        }
    }

    fn connect(&mut self, sim: &mut Sim, c: usize) {
        let node = self.rng_of(c).range(0, sim.nodes.len() as i64 - 1) as usize;
        let cnxn = (self.next_cnxn << 8) | c as u64;
        self.next_cnxn += 1;
        self.stats.connects += 1;
        let now = sim.now_ms;
        let client = &mut self.clients[c];
        client.conn = Some(Conn {
            node,
            cnxn,
            incarnation: sim.incarnation(node),
            connected: false,
            opened_ms: now,
            last_recv_ms: now,
            last_send_ms: now,
        });
        self.owner.insert(cnxn, c);
        if !sim.is_up(node) {
            return; // noticed as lost on the next round
        }
        let (session_id, passwd) = match client.session {
            Some((s, _)) => (
                s,
                Bytes::copy_from_slice(&crate::session::session_password(s)),
            ),
            None => (0, Bytes::from_static(&[0; 16])),
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: client.last_zxid,
            time_out: self.params.session_timeout_ms,
            session_id,
            passwd,
            read_only: Some(false),
        };
        let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 40_000 + c as u16));
        sim.client(node, Input::Accepted { cnxn, peer });
        if self.owner.contains_key(&cnxn) {
            sim.client(node, Input::Connect { cnxn, req });
        }
    }

    fn key(&mut self, c: usize) -> String {
        let k = self.rng.range(0, KEYS_PER_CLIENT as i64 - 1);
        format!("/c{c}/k{k}")
    }

    fn pick_op(&mut self, c: usize) -> Op {
        let roll = self.rng.range(0, 99);
        let data = self.next_data;
        self.next_data += 1;
        let key = self.key(c);
        let known = match &self.keys[&key].possible[..] {
            [s] => Some(*s),
            _ => None,
        };
        let name = self.clients[c].names;
        self.clients[c].names += 1;
        match roll {
            0..=19 => Op::Create { key, data },
            20..=44 => {
                let version = match known {
                    Some(Some((v, _))) if self.rng.chance(70) => v,
                    Some(Some((v, _))) if self.rng.chance(50) => v - 1,
                    _ => -1,
                };
                Op::Set { key, data, version }
            }
            45..=52 => {
                let version = match known {
                    Some(Some((v, _))) if self.rng.chance(50) => v,
                    _ => -1,
                };
                Op::Delete { key, version }
            }
            53..=64 => Op::Read { key },
            65..=74 => Op::CreateSeq,
            75..=82 => Op::CreateEph {
                path: format!("/eph/c{c}-{name}"),
            },
            83..=89 => Op::Multi {
                a: format!("/m/c{c}-{name}-a"),
                b: format!("/m/c{c}-{name}-b"),
                fail: self.rng.chance(30),
            },
            90..=97 => Op::ReadAny {
                path: ["/seq", "/eph", "/m"][self.rng.range(0, 2) as usize].to_owned(),
                children: self.rng.chance(50),
            },
            _ => Op::CloseSession,
        }
    }

    /// A register client's next operation: writes, version-checked writes (mostly from the
    /// version it saw last), a write with a read right behind it, reads (half of them setting
    /// a watch), or a move of the session to another server.
    fn pick_reg_op(&mut self, c: usize) -> RegChoice {
        let seen = self.clients[c].reg.floor;
        let data = self.next_reg_data;
        self.next_reg_data += 1;
        let rng = &mut self.reg_rng;
        match rng.range(0, 99) {
            0..=21 => RegChoice::One(Op::RegSet { data, version: -1 }),
            22..=45 => {
                let v = seen.unwrap_or(0);
                let version = if rng.chance(75) { v } else { (v - 1).max(0) };
                RegChoice::One(Op::RegSet { data, version })
            }
            46..=57 => RegChoice::WriteThenRead(Op::RegSet { data, version: -1 }),
            58..=93 => RegChoice::One(Op::RegGet {
                watch: rng.chance(50),
                min_version: seen.unwrap_or(0),
            }),
            _ => RegChoice::Move,
        }
    }

    fn send_op(&mut self, sim: &mut Sim, c: usize, op: Op) {
        let req = match &op {
            Op::Setup { path } if path == REG_PATH => create(
                path,
                Some(Bytes::from(reg_value(0))),
                create_mode::PERSISTENT,
            ),
            Op::Setup { path } => create(path, None, create_mode::PERSISTENT),
            Op::Create { key, data } => {
                create(key, Some(data_bytes(*data)), create_mode::PERSISTENT)
            }
            Op::Set { key, data, version } => Request::SetData(SetDataRequest {
                path: key.clone(),
                data: Some(data_bytes(*data)),
                version: *version,
            }),
            Op::Delete { key, version } => Request::Delete(DeleteRequest {
                path: key.clone(),
                version: *version,
            }),
            Op::Read { key } => Request::GetData(PathWatchRequest {
                path: key.clone(),
                watch: false,
            }),
            Op::CreateSeq => create("/seq/s-", None, create_mode::PERSISTENT_SEQUENTIAL),
            Op::CreateEph { path } => create(path, None, create_mode::EPHEMERAL),
            Op::Multi { a, b, fail } => {
                let mut ops = vec![create(a, None, 0), create(b, None, 0)];
                if *fail {
                    ops.push(Request::Delete(DeleteRequest {
                        path: "/m/absent".into(),
                        version: -1,
                    }));
                }
                Request::Multi(ops)
            }
            Op::ReadAny { path, children } => {
                let r = PathWatchRequest {
                    path: path.clone(),
                    watch: false,
                };
                if *children {
                    Request::GetChildren(r)
                } else {
                    Request::Exists(r)
                }
            }
            Op::CloseSession => Request::CloseSession,
            Op::RegSet { data, version } => Request::SetData(SetDataRequest {
                path: REG_PATH.into(),
                data: Some(Bytes::from(reg_value(*data))),
                version: *version,
            }),
            Op::RegGet { watch, .. } => Request::GetData(PathWatchRequest {
                path: REG_PATH.into(),
                watch: *watch,
            }),
        };
        // A second request in flight (a register client's read behind its write).
        let second = self.clients[c].outstanding.is_some();
        let gap = if second {
            0
        } else if self.is_reg(c) {
            let (lo, hi) = self.params.register_gap_ms;
            self.reg_rng.range(lo, hi)
        } else {
            self.rng
                .range(self.params.op_gap_ms.0, self.params.op_gap_ms.1)
        };
        if matches!(op, Op::RegSet { .. } | Op::RegGet { .. }) {
            self.stats.register_ops += 1;
        }
        let now = sim.now_ms;
        let client = &mut self.clients[c];
        client.xid += 1;
        let xid = client.xid;
        let session = client.session.map_or(0, |s| s.0);
        let conn = client.conn.as_mut().expect("connected");
        conn.last_send_ms = now;
        let (node, cnxn) = (conn.node, conn.cnxn);
        let out = Outstanding {
            xid,
            op,
            session,
            sent_ms: now,
        };
        if second {
            client.pipelined = Some(out);
        } else {
            client.next_op_ms = now + gap;
            client.outstanding = Some(out);
        }
        self.stats.ops_sent += 1;
        sim.client(node, Input::Request { cnxn, xid, req });
    }

    // ----- checks on a quiet ensemble -----

    /// Checks every serving node's tree against what the clients were told. `sessions_over`:
    /// every session has expired since (none may hold an ephemeral).
    pub fn check_trees(&mut self, sim: &Sim, sessions_over: bool) -> Vec<Violation> {
        let mut found = Vec::new();
        let mut v = |property: &'static str, message: String| {
            if found.len() < VIOLATIONS_MAX {
                found.push(Violation {
                    property,
                    message,
                    now_ms: sim.now_ms,
                    step: sim.steps,
                });
            }
        };
        let live: BTreeSet<i64> = self
            .clients
            .iter()
            .filter(|c| c.conn.as_ref().is_some_and(|x| x.connected))
            .filter_map(|c| c.session.map(|s| s.0))
            .collect();
        for node in 0..sim.nodes.len() {
            let sid = node + 1;
            let Some(peer) = sim.nodes[node].peer.as_ref().filter(|p| p.is_serving()) else {
                continue;
            };
            let tree = peer.tree();
            for (key, model) in &self.keys {
                if model.overflow {
                    continue;
                }
                let seen: KeyState = tree.node(key).map(|n| (n.stat.version, data_id(&n.data)));
                if !model.possible.contains(&seen) {
                    v(
                        "AckedWritesKept",
                        format!(
                            "s{sid} holds {key} as {seen:?}; the clients' answers allow only {:?}",
                            model.possible
                        ),
                    );
                }
            }
            for name in &self.seq_names {
                if tree.node(name).is_none() {
                    v(
                        "AckedWritesKept",
                        format!("s{sid} lacks acknowledged sequential node {name}"),
                    );
                }
            }
            for (a, b, outcome) in &self.multis {
                let (ha, hb) = (tree.node(a).is_some(), tree.node(b).is_some());
                let ok = match outcome {
                    Outcome::Applied => ha && hb,
                    Outcome::NotApplied => !ha && !hb,
                    Outcome::Unknown => ha == hb,
                };
                if !ok {
                    v(
                        "MultiAtomic",
                        format!("s{sid}: multi {a}, {b} ({outcome:?}) left {a}: {ha}, {b}: {hb}"),
                    );
                }
            }
            for (path, session, acked) in &self.ephemerals {
                let n = tree.node(path);
                if let Some(n) = n {
                    if n.stat.ephemeral_owner != *session {
                        v(
                            "EphemeralLifetime",
                            format!(
                                "s{sid}: {path} is owned by 0x{:x}, created by 0x{session:x}",
                                n.stat.ephemeral_owner
                            ),
                        );
                    }
                }
                // An acknowledged close is committed; an expiry takes a timeout to be sure.
                let dead = self.closed_sessions.contains(session) || sessions_over;
                if dead && n.is_some() {
                    v(
                        "EphemeralLifetime",
                        format!("s{sid} keeps {path} of gone session 0x{session:x}"),
                    );
                }
                if *acked && live.contains(session) && n.is_none() {
                    v(
                        "EphemeralLifetime",
                        format!("s{sid} lost {path} of live session 0x{session:x}"),
                    );
                }
            }
            if sessions_over {
                let left = tree.ephemeral_count();
                if left > 0 {
                    v(
                        "EphemeralLifetime",
                        format!("s{sid} still holds {left} ephemerals after every session expired"),
                    );
                }
            }
        }
        found
    }

    /// Checks the register history for linearizability (once, after the run drained).
    pub fn check_register(&mut self, sim: &Sim) {
        if self.params.register_clients == 0 {
            self.stats.register_verdict = "-".into();
            return;
        }
        let init = SeqRegister::new(Register::created(reg_value(0)));
        match check_register_history(init, &self.reg_history) {
            Verdict::Linearizable => self.stats.register_verdict = "ok".into(),
            Verdict::Unknown { reason } => {
                self.stats.register_verdict = format!("unknown: {reason}");
            }
            Verdict::NotLinearizable { explanation } => {
                self.stats.register_verdict = "violation".into();
                let msg = format!(
                    "the history of {REG_PATH} ({} ops) is not linearizable: {explanation}",
                    self.reg_history.ops.len()
                );
                Self::violate(&mut self.violations, sim, "Linearizable", msg);
            }
        }
    }
}

// ----- the register: model and session checks -----

/// A register call as a ZooKeeper client sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SeqRegCall {
    /// setData (plain or version-checked), linearizable.
    Reg(RegCall),
    /// getData: served by whichever server the client is connected to, which may lag behind
    /// the leader (ZooKeeper's reads are sequentially consistent, not linearizable). It may
    /// show any state the register held since it reached `min_version`, the newest version
    /// the session had seen when it sent the read.
    LaggingRead { min_version: i32 },
}

/// [`Register`] with the states it held before, for lagging reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeqRegister {
    pub now: Register,
    /// Earlier states, oldest first.
    pub past: Vec<Register>,
}

impl SeqRegister {
    pub fn new(init: Register) -> SeqRegister {
        SeqRegister {
            now: init,
            past: Vec::new(),
        }
    }
}

impl Model for SeqRegister {
    type Call = SeqRegCall;
    type Ret = RegRet;

    fn step(&self, call: &SeqRegCall, ret: Option<&RegRet>) -> Option<SeqRegister> {
        match call {
            SeqRegCall::Reg(call) => {
                let next = self.now.step(call, ret)?;
                if next == self.now {
                    return Some(self.clone());
                }
                let mut past = self.past.clone();
                past.push(self.now.clone());
                Some(SeqRegister { now: next, past })
            }
            SeqRegCall::LaggingRead { min_version } => match ret {
                None => Some(self.clone()),
                Some(RegRet::Read { value, version }) => {
                    let fits = |s: &Register| {
                        s.version >= *min_version && s.version == *version && s.value == *value
                    };
                    (fits(&self.now) || self.past.iter().rev().any(fits)).then(|| self.clone())
                }
                Some(_) => None,
            },
        }
    }

    fn is_read_only(call: &SeqRegCall) -> bool {
        matches!(
            call,
            SeqRegCall::LaggingRead { .. } | SeqRegCall::Reg(RegCall::Read)
        )
    }
}

/// The register history's verdict (the sweep's **Linearizable** check).
pub fn check_register_history(init: SeqRegister, h: &History<SeqRegCall, RegRet>) -> Verdict {
    linearizable::check(init, h, LIN_STEPS_MAX)
}

/// What one register client saw, in the order it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegEvent {
    /// A new session began (the old one expired): nothing carries over.
    NewSession,
    /// The connection went; its watches with it (the simulated client does not re-set them).
    ConnectionLost,
    /// getData answered `version`; `watch`: it set a data watch.
    Read { version: i32, watch: bool },
    /// setData succeeded with the new `version`.
    Written { version: i32 },
    /// A NodeDataChanged event for the register.
    Changed,
}

/// The **SessionOrder** and **WatchBeforeData** checks of one client, fed its events in order.
#[derive(Clone, Debug, Default)]
pub struct SessionTracker {
    /// The newest version the session read or wrote.
    pub floor: Option<i32>,
    /// A data watch is set, on this version.
    watch_on: Option<i32>,
}

impl SessionTracker {
    /// The property `ev` breaks, and how, if any.
    pub fn observe(&mut self, ev: &RegEvent) -> Option<(&'static str, String)> {
        match *ev {
            RegEvent::NewSession => {
                *self = SessionTracker::default();
                None
            }
            RegEvent::ConnectionLost | RegEvent::Changed => {
                self.watch_on = None;
                None
            }
            RegEvent::Read { version, watch } => {
                let found = self.check_watch(version).or_else(|| match self.floor {
                    Some(f) if version < f => Some((
                        "SessionOrder",
                        format!("read version {version} after the session had seen {f}"),
                    )),
                    _ => None,
                });
                self.floor = Some(self.floor.map_or(version, |f| f.max(version)));
                if watch {
                    self.watch_on = Some(version);
                }
                found
            }
            RegEvent::Written { version } => {
                let found = self.check_watch(version).or_else(|| match self.floor {
                    Some(f) if version <= f => Some((
                        "SessionOrder",
                        format!("a write made version {version} after the session had seen {f}"),
                    )),
                    _ => None,
                });
                self.floor = Some(self.floor.map_or(version, |f| f.max(version)));
                found
            }
        }
    }

    fn check_watch(&self, version: i32) -> Option<(&'static str, String)> {
        match self.watch_on {
            Some(w) if version > w => Some((
                "WatchBeforeData",
                format!("a reply shows version {version} before the event of the watch set on version {w}"),
            )),
            _ => None,
        }
    }
}

/// Runs [`SessionTracker`] over one client's events: every violation, with its event's index.
pub fn check_session_events(events: &[RegEvent]) -> Vec<(usize, &'static str, String)> {
    let mut t = SessionTracker::default();
    events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| t.observe(e).map(|(p, m)| (i, p, m)))
        .collect()
}
