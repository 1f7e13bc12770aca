//! Trace validation: a simulated run written as a behaviour of spec/Zab.tla.
//!
//! The [`Tracer`] watches the simulator's steps and names, for each step, the spec actions it
//! performs (`LeaderProcessACKEPOCH(i, j)`, `Crash(i)`, ...), with the state the spec keeps
//! of the servers involved as the code has it after the step: role, ZAB phase, both epochs
//! and the durable log. `spec/Trace.tla` replays these actions in TLC and requires every
//! observation to hold, so a trace TLC accepts is a behaviour of the spec.
//!
//! The mapping is a refinement: where the code takes several steps for one spec action, or
//! the spec several actions for one step, the tracer says which (see `finish_step`). Two
//! simulator settings make the run's granularity the spec's (`Sim::enable_trace` sets both):
//! disk writes are durable at the end of the step that issued them (the spec logs and ACKs
//! in one action), and a closed link loses what was in flight on it (the spec's LeaveRole
//! empties both channels). The known differences are listed in spec/README.md.

use super::Sim;
use crate::jute::quorum::{packet, QuorumPacket};
use crate::quorum::peer::PeerInput;
use crate::quorum::replica::LinkId;
use crate::quorum::ServerState;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Events kept at most: a runaway scenario fails instead of filling memory.
pub const TRACE_EVENTS_MAX: usize = 20_000;

/// The spec's view of a server's role, as the trace has told it so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Looking,
    Following(usize),
    Leading,
}

/// One server's state as the spec keeps it, read off the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub node: usize,
    pub online: bool,
    pub state: &'static str,
    pub zab: &'static str,
    pub accepted_epoch: i64,
    pub current_epoch: i64,
    /// The durable snapshot's zxid (0 without one) and the logged zxids above it.
    pub base: i64,
    pub log: Vec<i64>,
}

/// One spec action: `action(i, j)` with `i` the leader and `j` the follower of a pair
/// (`Follower...(j, i)` in the spec), or `action(i)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub action: &'static str,
    pub i: usize,
    pub j: Option<usize>,
    pub obs: Vec<Observation>,
    /// For readers: the packet or fault behind the event.
    pub note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    Packet { from: usize, type_: i32, zxid: i64 },
    Other,
}

/// What one simulator step (with the disk work it triggered) did.
struct StepFacts {
    node: usize,
    kind: StepKind,
    state_before: Option<ServerState>,
    zab_before: &'static str,
    /// Packets sent: (to, type).
    sent: Vec<(usize, i32)>,
    /// Peers whose quorum link this node closed.
    closed: Vec<usize>,
    appended: usize,
}

pub struct Tracer {
    pub events: Vec<TraceEvent>,
    roles: Vec<Role>,
    online: Vec<bool>,
    depth: u32,
    step: Option<StepFacts>,
    /// follower → leader: FOLLOWERINFO sent, not yet read. The spec's follower registers
    /// with a LEADING server; the code may connect before its leader is LEADING, so the
    /// trace sends FOLLOWERINFO when the leader reads it.
    info_in_flight: BTreeMap<usize, usize>,
    /// leader → followers whose proposal ACKs it read before it was established (the spec's
    /// learner handler reads them after startup): replayed when it is.
    early_acks: BTreeMap<usize, Vec<usize>>,
    pub overflowed: bool,
}

fn zab_of(sim: &Sim, node: usize) -> &'static str {
    sim.nodes[node]
        .peer
        .as_ref()
        .map_or("ELECTION", |p| p.zab_state())
}

fn role_name(s: Option<ServerState>) -> &'static str {
    match s {
        Some(ServerState::Leading) => "LEADING",
        Some(ServerState::Following) | Some(ServerState::Observing) => "FOLLOWING",
        _ => "LOOKING",
    }
}

pub fn observe(sim: &Sim, node: usize) -> Observation {
    let n = &sim.nodes[node];
    let base = n.disk.base.as_ref().map_or(0, |b| b.0);
    Observation {
        node,
        online: n.peer.is_some(),
        state: role_name(sim.state(node)),
        zab: zab_of(sim, node),
        accepted_epoch: n.disk.accepted_epoch,
        current_epoch: n.disk.current_epoch,
        base,
        log: n.disk.log.iter().map(|e| e.header.zxid).collect(),
    }
}

impl Tracer {
    pub fn new(nodes: usize) -> Tracer {
        Tracer {
            events: Vec::new(),
            roles: vec![Role::Looking; nodes],
            online: vec![true; nodes],
            depth: 0,
            step: None,
            info_in_flight: BTreeMap::new(),
            early_acks: BTreeMap::new(),
            overflowed: false,
        }
    }

    fn push(&mut self, action: &'static str, i: usize, j: Option<usize>, note: String) {
        if self.events.len() >= TRACE_EVENTS_MAX {
            self.overflowed = true;
            return;
        }
        self.apply(action, i, j);
        self.events.push(TraceEvent {
            action,
            i,
            j,
            obs: Vec::new(),
            note,
        });
    }

    /// The spec's LeaveRole(D) on the role view, D closed under "followers of".
    fn leave_role(&mut self, d: &[usize]) {
        let mut all: Vec<usize> = d.to_vec();
        for &s in d {
            if self.roles[s] == Role::Leading {
                all.extend((0..self.roles.len()).filter(|&f| self.roles[f] == Role::Following(s)));
            }
        }
        for s in all {
            self.roles[s] = Role::Looking;
            self.info_in_flight.remove(&s);
            self.info_in_flight.retain(|_, l| *l != s);
            self.early_acks.remove(&s);
            for acks in self.early_acks.values_mut() {
                acks.retain(|f| *f != s);
            }
        }
    }

    fn apply(&mut self, action: &'static str, i: usize, j: Option<usize>) {
        match (action, j) {
            ("ElectLeader", _) => self.roles[i] = Role::Leading,
            ("FollowerSendFOLLOWERINFO", Some(j)) => self.roles[j] = Role::Following(i),
            ("Crash", _) => {
                self.leave_role(&[i]);
                self.online[i] = false;
            }
            ("Restart", _) => self.online[i] = true,
            ("Timeout", _) => self.leave_role(&[i]),
            ("LoseMessage", Some(j)) => self.leave_role(&[j]),
            _ => {}
        }
    }

    fn observe_last(&mut self, sim: &Sim, node: usize) {
        if let Some(e) = self.events.last_mut() {
            e.obs.push(observe(sim, node));
        }
    }

    // ----- hooks, called by the simulator -----

    pub fn before_step(&mut self, sim: &Sim, node: usize, from: Option<usize>, input: &PeerInput) {
        self.depth += 1;
        if self.depth > 1 {
            return;
        }
        let kind = match (from, input) {
            (Some(from), PeerInput::Packet { packet, .. }) => StepKind::Packet {
                from,
                type_: packet.type_,
                zxid: packet.zxid,
            },
            _ => StepKind::Other,
        };
        self.step = Some(StepFacts {
            node,
            kind,
            state_before: sim.state(node),
            zab_before: zab_of(sim, node),
            sent: Vec::new(),
            closed: Vec::new(),
            appended: 0,
        });
    }

    pub fn sent(&mut self, from: usize, to: usize, p: &QuorumPacket) {
        if let Some(f) = self.step.as_mut().filter(|f| f.node == from) {
            f.sent.push((to, p.type_));
        }
    }

    pub fn appended(&mut self, node: usize, n: usize) {
        if let Some(f) = self.step.as_mut().filter(|f| f.node == node) {
            f.appended += n;
        }
    }

    pub fn link_closed_by(&mut self, node: usize, remote: usize) {
        if let Some(f) = self.step.as_mut().filter(|f| f.node == node) {
            f.closed.push(remote);
        }
    }

    pub fn after_step(&mut self, sim: &Sim, node: usize) {
        if self.depth == 0 {
            return; // a start, not a step
        }
        self.depth -= 1;
        if self.depth == 0 {
            if let Some(f) = self.step.take() {
                debug_assert_eq!(f.node, node);
                self.finish_step(sim, f);
            }
        }
    }

    pub fn crashed(&mut self, sim: &Sim, node: usize) {
        if self.online[node] {
            self.push("Crash", node, None, String::new());
            self.observe_last(sim, node);
        }
    }

    pub fn started(&mut self, sim: &Sim, node: usize) {
        if !self.online[node] {
            self.push("Restart", node, None, String::new());
            self.observe_last(sim, node);
        }
    }

    /// Links between `a` and `b` are cut from outside (a partition): the spec's
    /// LoseMessage for a leader/follower pair.
    pub fn link_fault(&mut self, a: usize, b: usize) {
        for (l, f) in [(a, b), (b, a)] {
            if self.roles[f] == Role::Following(l) {
                // Unobserved: the follower learns of it in a later step of its own.
                self.push("LoseMessage", l, Some(f), "partition".into());
            }
            if self.info_in_flight.get(&f) == Some(&l) {
                self.info_in_flight.remove(&f);
            }
        }
    }

    /// Names the spec actions of one step (see the module comment).
    fn finish_step(&mut self, sim: &Sim, f: StepFacts) {
        let n = f.node;
        let state_after = sim.state(n);
        let zab_after = zab_of(sim, n);
        let first = self.events.len();
        let leading_before = f.state_before == Some(ServerState::Leading);
        if !leading_before && state_after == Some(ServerState::Leading) {
            self.push("ElectLeader", n, None, String::new());
        }
        if let StepKind::Packet { from, type_, zxid } = f.kind {
            self.packet_action(sim, &f, from, type_, zxid);
        }
        for &(to, t) in &f.sent {
            if matches!(t, packet::DIFF | packet::TRUNC | packet::SNAP) {
                self.push("LeaderSyncFollower", n, Some(to), packet_name(t).into());
            }
            if t == packet::FOLLOWERINFO {
                self.info_in_flight.insert(n, to);
            }
        }
        if leading_before && f.zab_before == "BROADCAST" {
            for _ in 0..f.appended {
                self.push("ClientRequest", n, None, String::new());
            }
        }
        if leading_before && f.zab_before != "BROADCAST" && zab_after == "BROADCAST" {
            for j in self.early_acks.remove(&n).unwrap_or_default() {
                self.push("LeaderProcessACK", n, Some(j), "early ACK".into());
            }
        }
        for &q in &f.closed {
            if self.roles[q] == Role::Following(n) {
                self.push(
                    "LoseMessage",
                    n,
                    Some(q),
                    "the leader closed the link".into(),
                );
            }
        }
        if self.roles[n] != Role::Looking && state_after == Some(ServerState::Looking) {
            self.push("Timeout", n, None, String::new());
        }
        if self.events.len() > first {
            self.observe_last(sim, n);
        }
    }

    fn packet_action(&mut self, sim: &Sim, f: &StepFacts, from: usize, t: i32, zxid: i64) {
        let n = f.node;
        let leading = f.state_before == Some(ServerState::Leading);
        let following = self.roles[n] == Role::Following(from);
        let note = format!("{} 0x{zxid:x}", packet_name(t));
        match t {
            packet::FOLLOWERINFO if leading => {
                if self.info_in_flight.get(&from) == Some(&n) {
                    self.info_in_flight.remove(&from);
                    self.push("FollowerSendFOLLOWERINFO", n, Some(from), String::new());
                    self.observe_last(sim, from);
                }
                self.push("LeaderProcessFOLLOWERINFO", n, Some(from), note);
            }
            packet::ACKEPOCH if leading => {
                self.push("LeaderProcessACKEPOCH", n, Some(from), note);
                if f.closed.contains(&from) {
                    // "Follower is ahead of the leader": the action's own LeaveRole({j}).
                    self.leave_role(&[from]);
                }
            }
            packet::ACK if leading && zxid & 0xffff_ffff == 0 => {
                self.push("LeaderProcessACKLD", n, Some(from), note)
            }
            packet::ACK if leading && f.zab_before == "BROADCAST" => {
                self.push("LeaderProcessACK", n, Some(from), note)
            }
            packet::ACK if leading => self.early_acks.entry(n).or_default().push(from),
            _ if !following => {}
            packet::LEADERINFO => {
                self.push("FollowerProcessLEADERINFO", from, Some(n), note);
                if sim.state(n) == Some(ServerState::Looking) {
                    self.leave_role(&[n]); // the action's own LeaveRole: an older epoch
                }
            }
            packet::DIFF | packet::TRUNC | packet::SNAP => {
                self.push("FollowerProcessSyncMessage", from, Some(n), note)
            }
            packet::NEWLEADER => self.push("FollowerProcessNEWLEADER", from, Some(n), note),
            packet::UPTODATE => self.push("FollowerProcessUPTODATE", from, Some(n), note),
            packet::PROPOSAL => self.push("FollowerProcessPROPOSAL", from, Some(n), note),
            packet::COMMIT => self.push("FollowerProcessCOMMIT", from, Some(n), note),
            _ => {}
        }
    }

    /// The trace as the TLA+ module `TraceData` that spec/Trace.tla extends.
    pub fn to_tla(&self, servers: usize, commit_log_count: usize, title: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "---------------------------- MODULE TraceData ----------------------------"
        );
        let _ = writeln!(s, "\\* {title}");
        let _ = writeln!(
            s,
            "\\* Written by the simulator (src/sim/trace.rs); checked by Trace.tla."
        );
        let _ = writeln!(s, "EXTENDS Integers, Sequences");
        let _ = writeln!(s, "TraceServer == 1..{servers}");
        let _ = writeln!(s, "TraceCommitLogCount == {commit_log_count}");
        let _ = writeln!(s, "TraceLog == <<");
        for (k, e) in self.events.iter().enumerate() {
            let sep = if k + 1 == self.events.len() { "" } else { "," };
            let obs: Vec<String> = e.obs.iter().map(obs_tla).collect();
            let _ = writeln!(
                s,
                "  [a |-> \"{}\", i |-> {}, j |-> {}, obs |-> <<{}>>, note |-> \"{}\"]{sep}",
                e.action,
                e.i + 1,
                e.j.map_or(0, |j| j + 1),
                obs.join(", "),
                e.note
            );
        }
        let _ = writeln!(s, ">>");
        let _ = writeln!(
            s,
            "============================================================================="
        );
        s
    }
}

fn zxid_tla(z: i64) -> String {
    format!("<<{}, {}>>", z >> 32, z & 0xffff_ffff)
}

fn obs_tla(o: &Observation) -> String {
    let log: Vec<String> = o.log.iter().map(|&z| zxid_tla(z)).collect();
    format!(
        "[s |-> {}, online |-> {}, state |-> \"{}\", zab |-> \"{}\", ae |-> {}, ce |-> {}, base |-> {}, log |-> <<{}>>]",
        o.node + 1,
        if o.online { "TRUE" } else { "FALSE" },
        o.state,
        o.zab,
        o.accepted_epoch,
        o.current_epoch,
        zxid_tla(o.base),
        log.join(", ")
    )
}

pub fn packet_name(t: i32) -> &'static str {
    match t {
        packet::REQUEST => "REQUEST",
        packet::PROPOSAL => "PROPOSAL",
        packet::ACK => "ACK",
        packet::COMMIT => "COMMIT",
        packet::PING => "PING",
        packet::NEWLEADER => "NEWLEADER",
        packet::FOLLOWERINFO => "FOLLOWERINFO",
        packet::UPTODATE => "UPTODATE",
        packet::DIFF => "DIFF",
        packet::TRUNC => "TRUNC",
        packet::SNAP => "SNAP",
        packet::LEADERINFO => "LEADERINFO",
        packet::ACKEPOCH => "ACKEPOCH",
        _ => "OTHER",
    }
}

impl Sim {
    /// Records the run for trace validation from now on (right after construction, while
    /// every disk is empty: the spec's Init). Writes become durable within their step and
    /// a closed link loses its in-flight packets (see the module comment).
    pub fn enable_trace(&mut self) {
        self.tracer = Some(Box::new(Tracer::new(self.nodes.len())));
        self.sync_disk = true;
        self.reset_on_close = true;
    }

    fn with_tracer(&mut self, f: impl FnOnce(&mut Tracer, &Sim)) {
        if let Some(mut t) = self.tracer.take() {
            f(&mut t, self);
            self.tracer = Some(t);
        }
    }

    pub(super) fn trc_before_step(&mut self, node: usize, from: Option<usize>, input: &PeerInput) {
        self.with_tracer(|t, sim| t.before_step(sim, node, from, input));
    }

    pub(super) fn trc_before_tick(&mut self, node: usize) {
        self.with_tracer(|t, sim| {
            let closed = PeerInput::LinkClosed { link: 0 };
            t.before_step(sim, node, None, &closed)
        });
    }

    pub(super) fn trc_after_step(&mut self, node: usize) {
        self.with_tracer(|t, sim| t.after_step(sim, node));
    }

    pub(super) fn trc_sent(&mut self, from: usize, to: usize, packet: &QuorumPacket) {
        if let Some(t) = self.tracer.as_mut() {
            t.sent(from, to, packet);
        }
    }

    pub(super) fn trc_appended(&mut self, node: usize, n: usize) {
        if let Some(t) = self.tracer.as_mut() {
            t.appended(node, n);
        }
    }

    pub(super) fn trc_link_closed_by(&mut self, node: usize, link: LinkId) {
        if let Some(&(remote, _)) = self.nodes[node].links.get(&link) {
            if let Some(t) = self.tracer.as_mut() {
                t.link_closed_by(node, remote);
            }
        }
    }

    pub(super) fn trc_all_links_closed_by(&mut self, node: usize) {
        let remotes: Vec<usize> = self.nodes[node].links.values().map(|(r, _)| *r).collect();
        if let Some(t) = self.tracer.as_mut() {
            for r in remotes {
                t.link_closed_by(node, r);
            }
        }
    }

    pub(super) fn trc_crashed(&mut self, node: usize) {
        self.with_tracer(|t, sim| t.crashed(sim, node));
    }

    pub(super) fn trc_started(&mut self, node: usize) {
        self.with_tracer(|t, sim| t.started(sim, node));
    }

    pub(super) fn trc_link_fault(&mut self, a: usize, b: usize) {
        self.with_tracer(|t, _| t.link_fault(a, b));
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim_cnxn;
    use super::*;
    use crate::jute::data::{perms, Acl, Id};
    use crate::jute::proto::{op, ConnectRequest, CreateRequest, Request};
    use crate::server::Input;
    use bytes::Bytes;
    use std::net::SocketAddr;

    /// Where the sample traces live, next to the spec.
    const TRACES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/traces");

    /// Opens a session on `node` (a createSession txn) and creates `path` in it.
    fn write(sim: &mut Sim, node: usize, n: u64, path: &str) {
        let cnxn = sim_cnxn(node, n);
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("literal");
        sim.client(node, Input::Accepted { cnxn, peer });
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 30_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        };
        sim.client(node, Input::Connect { cnxn, req });
        sim.run_for(50);
        let acl = vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }];
        let create = CreateRequest {
            path: path.into(),
            data: Some(Bytes::from_static(b"v")),
            acl,
            flags: 0,
        };
        let req = Request::Create(op::CREATE, create);
        sim.client(node, Input::Request { cnxn, xid: 1, req });
        sim.run_for(50);
    }

    fn traced(seed: u64) -> Sim {
        let mut sim = Sim::new(seed, 3, 0);
        sim.enable_checker();
        sim.enable_trace();
        sim
    }

    fn leader_of(sim: &mut Sim) -> usize {
        assert!(sim.run_until_serving(20_000), "the ensemble serves");
        sim.leader().expect("a leader")
    }

    fn finish(sim: &mut Sim, name: &str, title: &str) -> Tracer {
        sim.run_for(1_000);
        assert!(sim.violation().is_none(), "{name}: {:?}", sim.violation());
        let t = sim.tracer.take().expect("tracing");
        assert!(!t.overflowed, "{name}: more than {TRACE_EVENTS_MAX} events");
        let tla = t.to_tla(sim.nodes.len(), crate::persistence::COMMIT_LOG_COUNT, title);
        bless_or_compare(name, &tla);
        *t
    }

    /// The sample traces are committed (TLC checks them in spec/run_tlc.sh): a change of the
    /// code that changes a run shows here, and ZABD_BLESS_TRACES=1 rewrites them.
    fn bless_or_compare(name: &str, tla: &str) {
        let path = format!("{TRACES_DIR}/{name}.tla");
        if std::env::var_os("ZABD_BLESS_TRACES").is_some() {
            std::fs::write(&path, tla).expect("write the trace");
        } else {
            let kept = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                kept == tla,
                "{path} differs from the run (rerun with ZABD_BLESS_TRACES=1 and check it with TLC)"
            );
        }
    }

    fn count(t: &Tracer, action: &str, note: &str) -> usize {
        t.events
            .iter()
            .filter(|e| e.action == action && e.note.starts_with(note))
            .count()
    }

    /// Election, discovery, sync and a few writes, no faults.
    #[test]
    fn trace_steady() {
        let mut sim = traced(1);
        let l = leader_of(&mut sim);
        for k in 0..3 {
            write(&mut sim, (l + k) % 3, k as u64 + 1, &format!("/k{k}"));
        }
        let t = finish(
            &mut sim,
            "steady",
            "3 servers, no faults, 3 sessions and 3 creates",
        );
        assert_eq!(count(&t, "ElectLeader", ""), 1);
        assert_eq!(count(&t, "ClientRequest", ""), 6);
    }

    fn follower_of(l: usize) -> usize {
        (0..3).find(|&n| n != l).expect("3 servers")
    }

    /// A follower crashes, misses writes and comes back: DIFF.
    #[test]
    fn trace_follower_restart() {
        let mut sim = traced(2);
        let l = leader_of(&mut sim);
        write(&mut sim, l, 1, "/a");
        let f = follower_of(l);
        sim.crash(f);
        write(&mut sim, l, 2, "/b");
        sim.run_for(300);
        sim.start(f);
        assert!(sim.run_until_serving(20_000));
        write(&mut sim, f, 3, "/c");
        let t = finish(
            &mut sim,
            "follower_restart",
            "a follower crashes, misses 2 txns, rejoins with DIFF",
        );
        assert_eq!(count(&t, "Crash", ""), 1);
        assert!(count(&t, "LeaderSyncFollower", "DIFF") >= 3);
    }

    /// A server down from the start joins an ensemble that committed txns: SNAP.
    #[test]
    fn trace_late_joiner_snap() {
        let mut sim = traced(3);
        sim.crash(2);
        let l = leader_of(&mut sim);
        write(&mut sim, l, 1, "/a");
        write(&mut sim, l, 2, "/b");
        sim.start(2);
        assert!(sim.run_until_serving(20_000));
        write(&mut sim, 2, 3, "/c");
        let t = finish(
            &mut sim,
            "late_joiner_snap",
            "s3 is down while 4 txns commit, then joins with SNAP",
        );
        assert_eq!(count(&t, "LeaderSyncFollower", "SNAP"), 1);
    }

    /// Cuts the leader off after one write and writes to it again: a txn no one else logs.
    fn isolated_leader_with_a_lost_write() -> (Sim, usize) {
        let mut sim = traced(4);
        let l = leader_of(&mut sim);
        write(&mut sim, l, 1, "/a");
        sim.isolate(l);
        write(&mut sim, l, 2, "/lost");
        (sim, l)
    }

    /// The leader is cut off and logs a txn no one else gets; the new leader commits in its
    /// epoch first, so the old leader's log ends in an older epoch than the txn above it: SNAP.
    #[test]
    fn trace_isolated_leader_snap() {
        let (mut sim, l) = isolated_leader_with_a_lost_write();
        sim.run_for(3_000);
        let l2 = sim.leader().expect("a new leader");
        assert_ne!(l2, l);
        write(&mut sim, l2, 3, "/b");
        sim.heal();
        assert!(sim.run_until_serving(20_000));
        write(&mut sim, l, 4, "/c");
        let t = finish(
            &mut sim,
            "isolated_leader_snap",
            "the leader is isolated with an uncommitted txn; SNAP after the new epoch's writes",
        );
        assert_eq!(count(&t, "LoseMessage", ""), 2);
        assert_eq!(count(&t, "FollowerProcessSyncMessage", "SNAP"), 1);
    }

    /// The same, but the old leader is back before the new epoch commits anything: its
    /// uncommitted txn is above the new leader's log, so it is truncated: TRUNC.
    #[test]
    fn trace_isolated_leader_trunc() {
        let (mut sim, l) = isolated_leader_with_a_lost_write();
        // Back before the sessions of the cut-off leader's clients expire (a txn of epoch 2).
        for _ in 0..300 {
            if sim.leader().is_some_and(|x| x != l) {
                break;
            }
            sim.run_for(10);
        }
        assert_ne!(sim.leader().expect("a new leader"), l);
        sim.heal();
        assert!(sim.run_until_serving(20_000));
        write(&mut sim, l, 3, "/b");
        let mut t = finish(
            &mut sim,
            "isolated_leader_trunc",
            "the leader is isolated with an uncommitted txn, rejoins, and the txn is TRUNCated",
        );
        assert_eq!(count(&t, "FollowerProcessSyncMessage", "TRUNC"), 1);
        corrupt_skip_trunc(&mut t);
        let title = "CORRUPTED (must be rejected): isolated_leader_trunc, but the TRUNC is ignored";
        let tla = t.to_tla(sim.nodes.len(), crate::persistence::COMMIT_LOG_COUNT, title);
        bless_or_compare("corrupt_skip_trunc", &tla);
    }

    /// The negative control of trace validation: the follower's log after TRUNC still holds
    /// the truncated txn, as if the code skipped the truncation (Bug "SkipTrunc" of the spec).
    fn corrupt_skip_trunc(t: &mut Tracer) {
        let k = t
            .events
            .iter()
            .position(|e| e.action == "FollowerProcessSyncMessage" && e.note.starts_with("TRUNC"))
            .expect("a TRUNC");
        let node = t.events[k].j.expect("a follower");
        let before = t.events[..k]
            .iter()
            .rev()
            .flat_map(|e| e.obs.iter())
            .find(|o| o.node == node)
            .expect("the follower was seen before")
            .log
            .clone();
        let obs = &mut t.events[k].obs[0];
        assert!(before.len() > obs.log.len(), "the TRUNC removed a txn");
        obs.log = before;
    }

    /// The leader crashes between writes and restarts as a follower.
    #[test]
    fn trace_leader_crash() {
        let mut sim = traced(5);
        let l = leader_of(&mut sim);
        write(&mut sim, l, 1, "/a");
        sim.crash(l);
        assert!(sim.run_until_serving(20_000));
        let l2 = sim.leader().expect("a new leader");
        write(&mut sim, l2, 2, "/b");
        sim.start(l);
        assert!(sim.run_until_serving(20_000));
        write(&mut sim, l, 3, "/c");
        let t = finish(
            &mut sim,
            "leader_crash",
            "the leader crashes; a new epoch; the old leader rejoins",
        );
        assert_eq!(count(&t, "ElectLeader", ""), 2);
    }

    /// Random crashes, restarts, partitions and writes, from a seed.
    fn random_run(seed: u64) -> Tracer {
        let mut sim = traced(seed);
        let mut rng = super::super::SimRng::new(seed ^ 0x7261_6e64);
        let mut down: Option<usize> = None;
        assert!(sim.run_until_serving(20_000));
        for round in 0..40u64 {
            let node = rng.range(0, 2) as usize;
            match rng.range(0, 9) {
                0 if down.is_none() => {
                    sim.crash(node);
                    down = Some(node);
                }
                1 => {
                    if let Some(d) = down.take() {
                        sim.start(d);
                    }
                }
                2 => sim.partition(node, (node + 1) % 3),
                3 => sim.isolate(node),
                4 => sim.heal(),
                _ => write(&mut sim, node, round + 1, &format!("/r{round}")),
            }
            let ms = rng.range(10, 800);
            sim.run_for(ms);
        }
        sim.heal();
        if let Some(d) = down {
            sim.start(d);
        }
        assert!(sim.run_until_serving(20_000));
        write(&mut sim, 0, 100, "/end");
        let title = format!("random crashes, restarts, partitions and writes (seed {seed})");
        finish(&mut sim, &format!("random_{seed}"), &title)
    }

    #[test]
    fn trace_random_runs() {
        for seed in [11, 12, 13] {
            let t = random_run(seed);
            assert!(
                count(&t, "ElectLeader", "") >= 2,
                "seed {seed}: a fault changed the leader"
            );
        }
    }

    /// A write lands while a rejoining follower syncs: its PROPOSAL reaches the follower
    /// between NEWLEADER and UPTODATE.
    #[test]
    fn trace_proposal_during_sync() {
        let mut sim = traced(6);
        // Slow links: ACK(NEWLEADER) is still in flight when the write is proposed.
        sim.max_delay_ms = 30;
        let l = leader_of(&mut sim);
        write(&mut sim, l, 1, "/a");
        let f = follower_of(l);
        sim.crash(f);
        write(&mut sim, l, 2, "/b");
        sim.start(f);
        let restarted = sim.tracer.as_ref().map_or(0, |t| t.events.len());
        let synced = |sim: &Sim| {
            sim.tracer.as_ref().is_some_and(|t| {
                t.events[restarted..]
                    .iter()
                    .any(|e| e.action == "FollowerProcessNEWLEADER" && e.j == Some(f) && e.i == l)
            })
        };
        for _ in 0..5_000 {
            if synced(&sim) {
                break;
            }
            sim.run_for(1);
        }
        assert!(synced(&sim), "the follower ACKed NEWLEADER");
        write(&mut sim, l, 3, "/c");
        assert!(sim.run_until_serving(20_000));
        let t = finish(
            &mut sim,
            "proposal_during_sync",
            "a PROPOSAL reaches a syncing follower after NEWLEADER, before UPTODATE",
        );
        let k = |a: &str| {
            let after = |e: &TraceEvent| e.action == a && e.j == Some(f) && e.i == l;
            t.events.iter().rposition(after)
        };
        let (nl, up) = (k("FollowerProcessNEWLEADER"), k("FollowerProcessUPTODATE"));
        let between = t.events[nl.expect("NEWLEADER")..up.expect("UPTODATE")]
            .iter()
            .any(|e| e.action == "FollowerProcessPROPOSAL" && e.j == Some(f));
        assert!(between, "a proposal between NEWLEADER and UPTODATE");
    }
}
