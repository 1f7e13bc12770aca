//! Safety checkers for the simulator, one named function per property of spec/Zab.tla (see
//! the table in spec/README.md). They run after every simulator step, incrementally, and
//! once more at the end of a run ([`Checker::check_end`]).
//!
//! What they watch, without any hook in the core:
//! - every transaction a node hands to its log (`Output::Append`): zxids name one transaction
//!   each, ever;
//! - each node's tree (`last_processed_zxid`, `digest`) after each step. The zxids a node
//!   applied are rebuilt from its log (durable and pending) and, after a SNAP, from the
//!   sender's applied sequence: that is the node's *applied* sequence;
//! - a node *delivers* its applied sequence while it serves clients (an established leader, a
//!   learner after UPTODATE). The longest delivered sequence is the *committed log*; a
//!   reference tree replays it, so a serving node's tree must have the reference's digest;
//! - ACKs that reach a leader (per link, forgotten when the link closes, as the leader does),
//!   so that a commit knows whose durable promise it counted (`committed_by`).
//!
//! | property (spec/Zab.tla) | checker |
//! | --- | --- |
//! | LeaderUniquePerEpoch | `check_leader_unique_per_epoch` (history: epoch → leader) |
//! | PrefixConsistency, TotalOrder | `check_prefix_consistency` |
//! | Integrity | `check_integrity_on_append` (a zxid names one txn), `check_integrity_proposer` (first logged by its epoch's leader), `update_applied` (a tree only applies logged txns) |
//! | LocalPrimaryOrder, GlobalPrimaryOrder | `check_primary_order` on each applied sequence |
//! | NewLeaderHasAllCommitted, PrimaryIntegrity | `check_new_leader_has_all_committed` |
//! | CommittedOnQuorum | `check_committed_on_quorum` (at each commit and each log loss) |
//! | LogZxidOrder | `check_log_zxid_order` (each fsync) |
//! | SyncNeverTruncatesCommitted | `check_sync_never_truncates_committed` (step) |
//! | FollowerPrefixOfLeaderAfterNEWLEADER | `check_follower_prefix_of_leader` (step, per pair) |
//! | CommittedLogOnlyGrows | `check_committed_log_only_grows` (step, per node) |
//! | (state machine) StateAgreement | `check_state_agreement`: tree digest = reference |
//! | acceptedEpoch ≥ currentEpoch, epochs only grow | `after_step`, `durable` |
//! | NoProtocolError | the sweep's log capture (sweep.rs) |

use super::{DiskOp, Sim};
use crate::jute::quorum::{packet, QuorumPacket};
use crate::jute::txn::TxnEntry;
use crate::quorum::peer::PeerInput;
use crate::quorum::replica::{DiskCommand, EpochKind, LinkId, OUTBOUND_LINK_BIT};
use crate::quorum::{epoch_of, ServerState};
use crate::tree::DataTree;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// Notable events kept for a failing seed's report.
pub const TRACE_MAX: usize = 400;

/// Violations kept per run (the first one matters; a few more help to understand it).
pub const VIOLATIONS_MAX: usize = 8;

/// A property that did not hold.
#[derive(Clone, Debug)]
pub struct Violation {
    pub property: &'static str,
    pub message: String,
    pub now_ms: i64,
    pub step: u64,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at t={} ms, step {}: {}",
            self.property, self.now_ms, self.step, self.message
        )
    }
}

/// What the checkers saw in a run.
#[derive(Clone, Debug, Default)]
pub struct CheckStats {
    /// Transactions in the committed log.
    pub committed: usize,
    /// Leaders established.
    pub establishments: u64,
    /// SNAPs installed in memory by learners.
    pub snap_installs: u64,
    /// Trees reloaded below what they had applied (TRUNC below the applied tree).
    pub tree_reloads: u64,
    /// Transactions removed from durable logs (TRUNC, SNAP replacing a log).
    pub durable_removals: u64,
}

struct TxnRecord {
    hash: u64,
    entry: TxnEntry,
    /// The node that logged it first (its proposer).
    origin: usize,
}

#[derive(Default)]
struct NodeView {
    /// The zxids the node's tree reflects, in order.
    applied: Vec<i64>,
    /// `applied[..delivered]` was visible to clients in this incarnation.
    delivered: usize,
    /// `applied[..verified]` equals the committed log's prefix.
    verified: usize,
    state: Option<ServerState>,
    serving: bool,
    /// The durable base snapshot (a SNAP the node installed): its zxid and transactions.
    base_zxid: Option<i64>,
    base: Vec<i64>,
    /// SNAPs installed in memory, waiting for their fsync.
    pending_bases: VecDeque<(i64, Vec<i64>)>,
    /// This step produced an InstallSnapshot of this zxid.
    installing: Option<i64>,
}

/// The history variables of the spec, and each node's view.
pub struct Checker {
    pub violations: Vec<Violation>,
    pub stats: CheckStats,
    trace: VecDeque<String>,
    nodes: Vec<NodeView>,
    voter: Vec<bool>,
    quorum: usize,
    txns: BTreeMap<i64, TxnRecord>,
    committed: Vec<i64>,
    /// The reference tree's digest after each committed transaction.
    committed_digest: Vec<i64>,
    /// Nodes (bit per node) whose durable ACK counted to commit each transaction.
    committed_by: Vec<u64>,
    ref_tree: DataTree,
    empty_digest: i64,
    /// Epoch → the node established as its leader.
    established: BTreeMap<i64, usize>,
    /// (leader, zxid) → nodes whose ACK the leader holds for an outstanding proposal.
    acks: BTreeMap<(usize, i64), u64>,
    /// (leader, epoch) → nodes that ACKed NEWLEADER.
    nl_acks: BTreeMap<(usize, i64), u64>,
    /// Follower → (leader, epoch) whose NEWLEADER it ACKed, while both stay in those roles,
    /// and the last zxid up to which the follower's history is known to be the leader's.
    synced_to: BTreeMap<usize, (usize, i64, Option<i64>)>,
    /// The learner links the leader role of a node has (leader-side id) → the learner at the
    /// other end, once a packet told.
    leader_links: BTreeMap<(usize, LinkId), Option<usize>>,
    /// SNAP packets sent in the current step: (from, to, zxid).
    snap_sends: Vec<(usize, usize, i64)>,
    /// (receiver, zxid) → the transactions the SNAP holds.
    snap_seqs: BTreeMap<(usize, i64), Vec<i64>>,
    /// Transactions first logged in the current step: (node, zxid).
    new_txns: Vec<(usize, i64)>,
    now_ms: i64,
    step: u64,
}

fn bit(node: usize) -> u64 {
    1u64 << node
}

fn txn_hash(e: &TxnEntry) -> u64 {
    // FNV-1a: deterministic, and enough to tell two transactions apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in e.to_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn zx(z: i64) -> String {
    format!("0x{z:x}")
}

impl Checker {
    fn new(sim: &Sim) -> Checker {
        assert!(sim.nodes.len() <= 64, "committed_by is a 64-bit mask");
        let voter: Vec<bool> = sim
            .nodes
            .iter()
            .map(|n| {
                n.config
                    .my_server()
                    .is_some_and(|s| s.peer_type == crate::config::PeerType::Participant)
            })
            .collect();
        let voters = voter.iter().filter(|v| **v).count();
        let ref_tree = DataTree::new();
        let empty_digest = ref_tree.digest();
        Checker {
            violations: Vec::new(),
            stats: CheckStats::default(),
            trace: VecDeque::new(),
            nodes: sim.nodes.iter().map(|_| NodeView::default()).collect(),
            voter,
            quorum: voters / 2 + 1,
            txns: BTreeMap::new(),
            committed: Vec::new(),
            committed_digest: Vec::new(),
            committed_by: Vec::new(),
            ref_tree,
            empty_digest,
            established: BTreeMap::new(),
            acks: BTreeMap::new(),
            nl_acks: BTreeMap::new(),
            synced_to: BTreeMap::new(),
            leader_links: BTreeMap::new(),
            snap_sends: Vec::new(),
            snap_seqs: BTreeMap::new(),
            new_txns: Vec::new(),
            now_ms: sim.now_ms,
            step: sim.steps,
        }
    }

    /// The committed log: zxids of every transaction some node delivered, in order.
    pub fn committed(&self) -> &[i64] {
        &self.committed
    }

    /// The notable events of the run so far, oldest first.
    pub fn trace(&self) -> impl Iterator<Item = &String> {
        self.trace.iter()
    }

    /// Records a notable event for the report (faults, role changes, syncs).
    pub fn note(&mut self, now_ms: i64, what: impl fmt::Display) {
        if self.trace.len() >= TRACE_MAX {
            self.trace.pop_front();
        }
        let line = format!("t={now_ms:>6} {what}");
        // Into the log too: a panicking run keeps its log lines, not the checker.
        log::info!(target: "zabd::sim", "{line}");
        self.trace.push_back(line);
    }

    fn violate(&mut self, property: &'static str, message: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            let (now_ms, step) = (self.now_ms, self.step);
            self.note(now_ms, format_args!("VIOLATION {property}: {message}"));
            self.violations.push(Violation {
                property,
                message,
                now_ms,
                step,
            });
        }
    }

    fn at(&mut self, sim: &Sim) {
        self.now_ms = sim.now_ms;
        self.step = sim.steps;
    }

    fn committed_index(&self, zxid: i64) -> Option<usize> {
        self.committed.binary_search(&zxid).ok()
    }

    fn durable_has(&self, sim: &Sim, node: usize, zxid: i64) -> bool {
        self.nodes[node].base.binary_search(&zxid).is_ok()
            || sim.nodes[node]
                .disk
                .log
                .binary_search_by_key(&zxid, |e| e.header.zxid)
                .is_ok()
    }

    fn durable_holders(&self, sim: &Sim, zxid: i64, except: Option<usize>) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.voter[n] && Some(n) != except && self.durable_has(sim, n, zxid))
            .collect()
    }

    /// The zxids in `(lo, hi]` that `node`'s log holds once its pending disk work is done.
    fn log_view_range(sim: &Sim, node: usize, lo: i64, hi: i64) -> Vec<i64> {
        let disk = &sim.nodes[node].disk;
        let start = disk.log.partition_point(|e| e.header.zxid <= lo);
        let mut zs: Vec<i64> = disk.log[start..]
            .iter()
            .map(|e| e.header.zxid)
            .take_while(|&z| z <= hi)
            .collect();
        for op in &disk.pending {
            match op {
                DiskOp::Append(es) => zs.extend(
                    es.iter()
                        .map(|e| e.header.zxid)
                        .filter(|&z| z > lo && z <= hi),
                ),
                DiskOp::Cmd(DiskCommand::Truncate { zxid, .. }) => zs.retain(|&z| z <= *zxid),
                DiskOp::Snapshot { .. } => zs.clear(),
                DiskOp::Cmd(_) => {}
            }
        }
        zs.sort_unstable();
        zs.dedup();
        zs
    }

    fn reset_view(&mut self, sim: &Sim, node: usize) {
        let sid = node + 1;
        let disk = &sim.nodes[node].disk;
        let v = &mut self.nodes[node];
        let base_zxid = disk.base.as_ref().map(|b| b.0);
        let known_base = v.base_zxid;
        v.applied = v.base.clone();
        let last = v.applied.last().copied().unwrap_or(0);
        v.applied
            .extend(disk.log.iter().map(|e| e.header.zxid).filter(|&z| z > last));
        v.delivered = 0;
        v.verified = 0;
        v.state = None;
        v.serving = false;
        v.pending_bases.clear();
        v.installing = None;
        if base_zxid != known_base {
            let msg = format!(
                "s{sid}'s base snapshot is at {base_zxid:x?}, the checker knows it at {known_base:x?}"
            );
            self.violate("CheckerConsistency", msg);
        }
    }

    // ----- properties checked as the run goes -----

    /// Integrity (zxid form): a zxid names one transaction, whoever logs it.
    fn check_integrity_on_append(&mut self, node: usize, e: &TxnEntry) {
        let sid = node + 1;
        let z = e.header.zxid;
        let hash = txn_hash(e);
        match self.txns.get(&z) {
            Some(r) if r.hash != hash => {
                let msg = format!(
                    "s{sid} logged txn {} that differs from the one s{} logged first ({:?} vs {:?})",
                    zx(z),
                    r.origin + 1,
                    e.header,
                    r.entry.header
                );
                self.violate("Integrity", msg);
            }
            Some(_) => {}
            None => {
                self.txns.insert(
                    z,
                    TxnRecord {
                        hash,
                        entry: e.clone(),
                        origin: node,
                    },
                );
                self.new_txns.push((node, z));
            }
        }
    }

    /// Integrity: a transaction is first logged by the established leader of its epoch
    /// (every other log copies a proposal).
    fn check_integrity_proposer(&mut self) {
        for (node, z) in std::mem::take(&mut self.new_txns) {
            let sid = node + 1;
            let epoch = epoch_of(z);
            match self.established.get(&epoch) {
                Some(&l) if l == node => {}
                other => {
                    let msg = format!(
                        "txn {} was first logged by s{sid}, but epoch {epoch}'s established leader is s{}",
                        zx(z),
                        other.map_or(0, |l| l + 1)
                    );
                    self.violate("Integrity", msg);
                }
            }
        }
    }

    /// LogZxidOrder: every durable log is in strictly increasing zxid order.
    fn check_log_zxid_order(&mut self, sim: &Sim, node: usize, entries: &[TxnEntry]) {
        let sid = node + 1;
        let mut last = sim.nodes[node].disk.last_zxid();
        for e in entries {
            let z = e.header.zxid;
            if z <= last {
                let msg = format!("s{sid} makes txn {} durable after {}", zx(z), zx(last));
                self.violate("LogZxidOrder", msg);
            }
            last = z;
        }
    }

    /// LocalPrimaryOrder and GlobalPrimaryOrder on a node's applied sequence: zxids
    /// increase; inside an epoch they are consecutive; an epoch's first one is (e, 1).
    fn check_primary_order(&mut self, node: usize, prev: i64, next: &[i64]) {
        let sid = node + 1;
        let mut prev = prev;
        for &z in next {
            let ok = if z <= prev {
                false
            } else if epoch_of(z) == epoch_of(prev) {
                z == prev + 1
            } else {
                z & 0xffff_ffff == 1
            };
            if !ok {
                let property = if z <= prev {
                    "GlobalPrimaryOrder"
                } else {
                    "LocalPrimaryOrder"
                };
                let msg = format!(
                    "s{sid} applied txn {} right after {} (a gap or a step back)",
                    zx(z),
                    zx(prev)
                );
                self.violate(property, msg);
                return;
            }
            prev = z;
        }
    }

    /// PrefixConsistency and TotalOrder: what a serving node delivers agrees with the
    /// committed log, and what it delivers beyond extends it; every delivery is a prefix of one
    /// sequence, so any two nodes deliver common transactions in the same order. The global
    /// log only grows by construction (CommittedLogOnlyGrows, global form).
    fn check_prefix_consistency(&mut self, sim: &Sim, node: usize) {
        let sid = node + 1;
        let from = self.nodes[node].verified;
        let todo: Vec<i64> = self.nodes[node].applied[from..].to_vec();
        for (k, &z) in todo.iter().enumerate() {
            let i = from + k;
            match self.committed.get(i) {
                Some(&c) if c == z => {}
                Some(&c) => {
                    let msg = format!(
                        "s{sid} delivers txn {} at position {i}, where the committed log has {} (committed log ends at {})",
                        zx(z),
                        zx(c),
                        zx(self.committed.last().copied().unwrap_or(0))
                    );
                    self.violate("PrefixConsistency", msg);
                    self.nodes[node].verified = i;
                    return;
                }
                None => {
                    if !self.commit(sim, node, z) {
                        self.nodes[node].verified = i;
                        return;
                    }
                }
            }
        }
        self.nodes[node].verified = self.nodes[node].applied.len();
    }

    /// A transaction joins the committed log: the reference tree applies it.
    fn commit(&mut self, sim: &Sim, node: usize, z: i64) -> bool {
        let sid = node + 1;
        let Some(rec) = self.txns.get(&z) else {
            let msg = format!("s{sid} delivers txn {} that no log ever held", zx(z));
            self.violate("Integrity", msg);
            return false;
        };
        let mut events = Vec::new();
        self.ref_tree.process_txn(
            &rec.entry.header,
            &rec.entry.body,
            &|_, _| false,
            &mut events,
        );
        self.committed.push(z);
        self.committed_digest.push(self.ref_tree.digest());
        let mut by = self.acks.remove(&(node, z)).unwrap_or(0);
        if self.durable_has(sim, node, z) {
            by |= bit(node);
        }
        self.committed_by.push(by);
        self.stats.committed = self.committed.len();
        self.check_committed_on_quorum(sim, z, None);
        true
    }

    /// CommittedOnQuorum: a committed transaction is durable on a quorum of voters
    /// (`except`: a node whose copy is going away).
    fn check_committed_on_quorum(&mut self, sim: &Sim, z: i64, except: Option<usize>) {
        let holders = self.durable_holders(sim, z, except);
        if holders.len() < self.quorum {
            let msg = format!(
                "committed txn {} is durable only on {:?} (quorum {})",
                zx(z),
                holders
                    .iter()
                    .map(|n| format!("s{}", n + 1))
                    .collect::<Vec<_>>(),
                self.quorum
            );
            self.violate("CommittedOnQuorum", msg);
        }
    }

    /// The tree a serving node shows is the reference tree at the same zxid.
    fn check_state_agreement(&mut self, node: usize, digest: i64, tree_zxid: i64) {
        let sid = node + 1;
        let n = self.nodes[node].applied.len();
        if n > self.committed.len() || self.nodes[node].verified < n {
            return; // already reported
        }
        let expected = if n == 0 {
            self.empty_digest
        } else {
            self.committed_digest[n - 1]
        };
        if digest != expected {
            let msg = format!(
                "s{sid}'s tree at {} has digest {digest:x}, the committed log gives {expected:x}",
                zx(tree_zxid)
            );
            self.violate("StateAgreement", msg);
        }
    }

    /// A leader is established: its whole history is committed, by its NEWLEADER ackers.
    fn on_established(&mut self, node: usize, epoch: i64) {
        let sid = node + 1;
        self.stats.establishments += 1;
        let (now_ms, len) = (self.now_ms, self.nodes[node].applied.len());
        self.note(
            now_ms,
            format_args!(
                "s{sid} established as leader of epoch {epoch} at {}",
                zx(self.nodes[node].applied.last().copied().unwrap_or(0))
            ),
        );
        self.check_leader_unique_per_epoch(node, epoch);
        self.check_new_leader_has_all_committed(node, epoch);
        let ackers = self.nl_acks.get(&(node, epoch)).copied().unwrap_or(0) | bit(node);
        let n = len.min(self.committed_by.len());
        for by in &mut self.committed_by[..n] {
            *by |= ackers;
        }
    }

    /// LeaderUniquePerEpoch: at most one leader is ever established in an epoch.
    fn check_leader_unique_per_epoch(&mut self, node: usize, epoch: i64) {
        let sid = node + 1;
        match self.established.get(&epoch) {
            Some(&other) => {
                let msg = format!(
                    "s{sid} is established in epoch {epoch}, which s{} led already",
                    other + 1
                );
                self.violate("LeaderUniquePerEpoch", msg);
            }
            None => {
                self.established.insert(epoch, node);
            }
        }
    }

    /// NewLeaderHasAllCommitted (and PrimaryIntegrity): an established leader holds every
    /// transaction committed in an older epoch. (What it holds is already checked to be a
    /// committed prefix.)
    fn check_new_leader_has_all_committed(&mut self, node: usize, epoch: i64) {
        let sid = node + 1;
        let len = self.nodes[node].applied.len();
        let older = self.committed.partition_point(|&z| epoch_of(z) < epoch);
        if len < older {
            let msg = format!(
                "s{sid} leads epoch {epoch} without committed txn {} (it has {} of {older})",
                zx(self.committed[len]),
                len
            );
            self.violate("NewLeaderHasAllCommitted", msg);
        }
    }

    /// SyncNeverTruncatesCommitted (and CommittedOnQuorum) when a durable log loses `removed`:
    /// no node drops a committed transaction whose commit counted its ACK.
    fn check_sync_never_truncates_committed(
        &mut self,
        sim: &Sim,
        node: usize,
        removed: &[i64],
        why: &str,
    ) {
        let sid = node + 1;
        if removed.is_empty() {
            return;
        }
        self.stats.durable_removals += removed.len() as u64;
        let now_ms = self.now_ms;
        self.note(
            now_ms,
            format_args!(
                "s{sid} {why}: {} txns leave its log ({}..={})",
                removed.len(),
                zx(removed[0]),
                zx(removed[removed.len() - 1])
            ),
        );
        for &z in removed {
            let Some(i) = self.committed_index(z) else {
                continue;
            };
            if self.committed_by[i] & bit(node) != 0 {
                let msg = format!(
                    "s{sid} {why} and loses committed txn {}, whose commit counted its ACK",
                    zx(z)
                );
                self.violate("SyncNeverTruncatesCommitted", msg);
            }
            self.check_committed_on_quorum(sim, z, Some(node));
        }
    }

    /// CommittedLogOnlyGrows (per node): a live node's delivered prefix never shrinks.
    fn check_committed_log_only_grows(&mut self, node: usize, new_applied: &[i64], why: &str) {
        let sid = node + 1;
        let v = &self.nodes[node];
        let d = v.delivered;
        if d == 0 {
            return;
        }
        if new_applied.len() < d || new_applied[..d] != v.applied[..d] {
            let keep = new_applied
                .iter()
                .zip(&v.applied[..d])
                .take_while(|(a, b)| a == b)
                .count();
            let msg = format!(
                "s{sid} {why}: its delivered prefix up to {} shrinks to {}",
                zx(v.applied[d - 1]),
                zx(if keep == 0 { 0 } else { v.applied[keep - 1] })
            );
            self.violate("CommittedLogOnlyGrows", msg);
        }
    }

    // ----- hooks -----

    fn before_step(&mut self, sim: &Sim, node: usize, from: Option<usize>, input: &PeerInput) {
        if sim.state(node) != Some(ServerState::Leading) {
            return;
        }
        match input {
            PeerInput::LinkUp { link, .. } if link & OUTBOUND_LINK_BIT == 0 => {
                self.leader_links.insert((node, *link), None);
            }
            PeerInput::Packet { link, packet } => {
                // A packet on a link the leader no longer has (closed, or from an earlier
                // leadership) is ignored by it; so here.
                let (Some(s), Some(sender)) = (from, self.leader_links.get_mut(&(node, *link)))
                else {
                    return;
                };
                *sender = Some(s);
                if packet.type_ != packet::ACK {
                    return;
                }
                let z = packet.zxid;
                if z & 0xffff_ffff == 0 {
                    *self.nl_acks.entry((node, epoch_of(z))).or_default() |= bit(s);
                    if sim.state(s) == Some(ServerState::Following) {
                        self.synced_to.insert(s, (node, epoch_of(z), None));
                    }
                } else if self.committed_index(z).is_none() {
                    *self.acks.entry((node, z)).or_default() |= bit(s);
                }
            }
            PeerInput::LinkClosed { link } => self.forget_link(node, *link),
            _ => {}
        }
    }

    /// A learner's link to `leader` closed: unless the learner has another link, the leader
    /// forgets its ACKs of outstanding proposals.
    fn forget_link(&mut self, leader: usize, link: LinkId) {
        if let Some(Some(s)) = self.leader_links.remove(&(leader, link)) {
            let other = self
                .leader_links
                .range((leader, 0)..=(leader, LinkId::MAX))
                .any(|(_, x)| *x == Some(s));
            if !other {
                for (_, acks) in self.acks.range_mut((leader, i64::MIN)..=(leader, i64::MAX)) {
                    *acks &= !bit(s);
                }
            }
        }
    }

    fn forget_leader(&mut self, leader: usize) {
        self.acks.retain(|(l, _), _| *l != leader);
        self.leader_links.retain(|(l, _), _| *l != leader);
    }

    fn after_step(&mut self, sim: &Sim, node: usize) {
        let sid = node + 1;
        let Some(peer) = sim.nodes[node].peer.as_ref() else {
            return;
        };
        let state = peer.state();
        let serving = peer.is_serving();
        let epoch = peer.current_epoch();
        let tree_zxid = peer.tree().last_processed_zxid();
        if peer.accepted_epoch() < peer.current_epoch() {
            let msg = format!(
                "s{sid}: acceptedEpoch {} < currentEpoch {}",
                peer.accepted_epoch(),
                peer.current_epoch()
            );
            self.violate("EpochOrder", msg);
        }
        self.update_applied(sim, node, tree_zxid);
        if serving {
            self.check_prefix_consistency(sim, node);
            self.check_state_agreement(node, peer.tree().digest(), tree_zxid);
            let v = &mut self.nodes[node];
            v.delivered = v.delivered.max(v.applied.len().min(v.verified));
        }
        let v = &self.nodes[node];
        let was = (v.state, v.serving);
        if state == ServerState::Leading && serving && was != (Some(state), true) {
            self.on_established(node, epoch);
        }
        self.check_integrity_proposer();
        for (from, to, z) in std::mem::take(&mut self.snap_sends) {
            let seq = &self.nodes[from].applied;
            let k = seq.partition_point(|&x| x <= z);
            let reaches = (k == 0 && z == 0) || (k > 0 && seq[k - 1] == z);
            let snap = seq[..k].to_vec();
            if !reaches {
                let msg = format!(
                    "s{} sends a SNAP at {} its applied sequence does not reach",
                    from + 1,
                    zx(z)
                );
                self.violate("CheckerConsistency", msg);
            }
            self.snap_seqs.insert((to, z), snap);
        }
        if was != (Some(state), serving) {
            if was.0 == Some(ServerState::Leading) && state != ServerState::Leading {
                self.forget_leader(node);
            }
            let now_ms = self.now_ms;
            self.note(
                now_ms,
                format_args!(
                    "s{sid}: {:?}{} epoch {epoch} tree {}",
                    state,
                    if serving { " serving" } else { "" },
                    zx(tree_zxid)
                ),
            );
        }
        let v = &mut self.nodes[node];
        v.state = Some(state);
        v.serving = serving;
        self.check_follower_prefix_of_leader(sim, node);
    }

    /// A node's history as the spec has it: its base snapshot's transactions, then its log
    /// (durable and pending).
    fn history(&self, sim: &Sim, node: usize) -> Vec<i64> {
        let v = &self.nodes[node];
        let mut h = v
            .pending_bases
            .back()
            .map_or_else(|| v.base.clone(), |(_, seq)| seq.clone());
        let last = h.last().copied().unwrap_or(0);
        h.extend(Self::log_view_range(sim, node, last, i64::MAX));
        h
    }

    /// FollowerPrefixOfLeaderAfterNEWLEADER: once a follower's ACK of NEWLEADER reached its
    /// leader, and while the follower follows and the leader leads in that epoch, the
    /// follower's history is a prefix of the leader's.
    /// Checked when either of the pair steps; histories do not shrink while both keep their
    /// roles, so after a full comparison only what lies beyond the agreed prefix is compared.
    fn check_follower_prefix_of_leader(&mut self, sim: &Sim, stepped: usize) {
        let in_role = |n: usize, state: ServerState, epoch: i64| {
            sim.nodes[n]
                .peer
                .as_ref()
                .is_some_and(|p| p.state() == state && p.current_epoch() == epoch)
        };
        self.synced_to.retain(|&f, &mut (l, e, _)| {
            in_role(f, ServerState::Following, e) && in_role(l, ServerState::Leading, e)
        });
        let pairs: Vec<(usize, usize, i64, Option<i64>)> = self
            .synced_to
            .iter()
            .filter(|(&f, &(l, _, _))| stepped == f || stepped == l)
            .map(|(&f, &(l, e, agreed))| (f, l, e, agreed))
            .collect();
        for (f, l, e, agreed) in pairs {
            let (hf, hl) = match agreed {
                None => (self.history(sim, f), self.history(sim, l)),
                Some(z) => (
                    Self::log_view_range(sim, f, z, i64::MAX),
                    Self::log_view_range(sim, l, z, i64::MAX),
                ),
            };
            if hf.len() <= hl.len() && hf[..] == hl[..hf.len()] {
                let agreed = hf.last().copied().or(agreed).unwrap_or(0);
                self.synced_to.insert(f, (l, e, Some(agreed)));
                continue;
            }
            let diverge = hf.iter().zip(&hl).take_while(|(a, b)| a == b).count();
            let msg = format!(
                "s{} follows s{} in epoch {e} after NEWLEADER, but its history (after {}: {} \
                 txns, {} at position {diverge}) is not a prefix of the leader's ({} txns, {} \
                 there)",
                f + 1,
                l + 1,
                zx(agreed.unwrap_or(0)),
                hf.len(),
                hf.get(diverge).map_or("end".into(), |&z| zx(z)),
                hl.len(),
                hl.get(diverge).map_or("end".into(), |&z| zx(z)),
            );
            self.violate("FollowerPrefixOfLeaderAfterNEWLEADER", msg);
            self.synced_to.remove(&f);
        }
    }

    /// Follows the node's tree: a SNAP installed, a reload below what it applied, or newly
    /// applied transactions from its log.
    fn update_applied(&mut self, sim: &Sim, node: usize, tree_zxid: i64) {
        let sid = node + 1;
        if let Some(z) = self.nodes[node].installing.take() {
            match self.snap_seqs.remove(&(node, z)) {
                Some(seq) => {
                    self.check_committed_log_only_grows(node, &seq, "installs a SNAP");
                    self.stats.snap_installs += 1;
                    let now_ms = self.now_ms;
                    self.note(now_ms, format_args!("s{sid} installs SNAP {}", zx(z)));
                    let v = &mut self.nodes[node];
                    v.pending_bases.push_back((z, seq.clone()));
                    v.verified = v.verified.min(
                        seq.iter()
                            .zip(&v.applied)
                            .take_while(|(a, b)| a == b)
                            .count(),
                    );
                    v.delivered = v.delivered.min(v.verified);
                    v.applied = seq;
                }
                None => {
                    let msg = format!("s{sid} installs SNAP {} it never received", zx(z));
                    self.violate("CheckerConsistency", msg);
                }
            }
        }
        let last = self.nodes[node].applied.last().copied().unwrap_or(0);
        if tree_zxid < last {
            let v = &self.nodes[node];
            let keep = v.applied.partition_point(|&z| z <= tree_zxid);
            let kept = v.applied[..keep].to_vec();
            self.check_committed_log_only_grows(node, &kept, "reloads its tree");
            self.stats.tree_reloads += 1;
            let now_ms = self.now_ms;
            self.note(
                now_ms,
                format_args!("s{sid} reloads its tree: {} -> {}", zx(last), zx(tree_zxid)),
            );
            let v = &mut self.nodes[node];
            v.applied.truncate(keep);
            v.verified = v.verified.min(keep);
            v.delivered = v.delivered.min(keep);
        } else if tree_zxid > last {
            let zs = Self::log_view_range(sim, node, last, tree_zxid);
            self.check_primary_order(node, last, &zs);
            self.nodes[node].applied.extend(zs);
        }
        let last = self.nodes[node].applied.last().copied().unwrap_or(0);
        if last != tree_zxid {
            let msg = format!(
                "s{sid}'s tree is at {} but its log explains only up to {}",
                zx(tree_zxid),
                zx(last)
            );
            self.violate("Integrity", msg);
            // Follow the tree so one fault is reported once.
            let v = &mut self.nodes[node];
            let keep = v.applied.partition_point(|&z| z <= tree_zxid);
            v.applied.truncate(keep);
            v.verified = v.verified.min(keep);
            v.delivered = v.delivered.min(keep);
        }
    }

    fn durable(&mut self, sim: &Sim, node: usize, op: &DiskOp) {
        let sid = node + 1;
        let disk = &sim.nodes[node].disk;
        match op {
            DiskOp::Append(entries) => self.check_log_zxid_order(sim, node, entries),
            DiskOp::Cmd(DiskCommand::Truncate { zxid, .. }) => {
                let removed: Vec<i64> = disk
                    .log
                    .iter()
                    .map(|e| e.header.zxid)
                    .filter(|z| z > zxid)
                    .collect();
                self.check_sync_never_truncates_committed(sim, node, &removed, "truncates (TRUNC)");
            }
            DiskOp::Cmd(DiskCommand::WriteEpoch { which, epoch }) => {
                let before = match which {
                    EpochKind::Accepted => disk.accepted_epoch,
                    EpochKind::Current => disk.current_epoch,
                };
                if *epoch < before {
                    let msg = format!("s{sid} writes {which:?} epoch {epoch} over {before}");
                    self.violate("EpochsOnlyGrow", msg);
                }
            }
            DiskOp::Cmd(DiskCommand::InstallSnapshot { .. } | DiskCommand::MarkUpdatingEpoch) => {}
            DiskOp::Snapshot { zxid, .. } => {
                let seq = match self.nodes[node].pending_bases.pop_front() {
                    Some((z, seq)) if z == *zxid => seq,
                    other => {
                        let msg = format!(
                            "s{sid} makes SNAP {} durable; the checker expected {:x?}",
                            zx(*zxid),
                            other.map(|o| o.0)
                        );
                        self.violate("CheckerConsistency", msg);
                        return;
                    }
                };
                let old = &self.nodes[node].base;
                let removed: Vec<i64> = old
                    .iter()
                    .copied()
                    .chain(disk.log.iter().map(|e| e.header.zxid))
                    .filter(|z| seq.binary_search(z).is_err())
                    .collect();
                self.nodes[node].base = seq;
                self.nodes[node].base_zxid = Some(*zxid);
                self.check_sync_never_truncates_committed(
                    sim,
                    node,
                    &removed,
                    "installs SNAP on disk",
                );
            }
        }
    }

    /// The end of a run: everything again, in full.
    pub fn check_end(&mut self, sim: &Sim) {
        self.at(sim);
        for node in 0..self.nodes.len() {
            let sid = node + 1;
            let log: Vec<i64> = sim.nodes[node]
                .disk
                .log
                .iter()
                .map(|e| e.header.zxid)
                .collect();
            if log.windows(2).any(|w| w[0] >= w[1]) {
                self.violate("LogZxidOrder", format!("s{sid}'s durable log is unordered"));
            }
            let v = &self.nodes[node];
            let d = v.delivered;
            if d > self.committed.len() || v.applied[..d] != self.committed[..d] {
                let msg = format!("s{sid}'s delivered sequence is not a committed prefix");
                self.violate("PrefixConsistency", msg);
            }
        }
        for z in self.committed.clone() {
            self.check_committed_on_quorum(sim, z, None);
        }
    }
}

impl Sim {
    /// Turns the checkers on (right after construction: they follow from the durable state).
    pub fn enable_checker(&mut self) {
        let mut c = Checker::new(self);
        for node in 0..self.nodes.len() {
            c.reset_view(self, node);
        }
        self.checker = Some(Box::new(c));
    }

    /// The first violation found so far, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.checker.as_ref().and_then(|c| c.violations.first())
    }

    /// Adds an event to the checker's trace (faults injected by a driver).
    pub fn note(&mut self, what: impl fmt::Display) {
        let now_ms = self.now_ms;
        if let Some(c) = self.checker.as_mut() {
            c.note(now_ms, what);
        }
    }

    fn with_checker(&mut self, f: impl FnOnce(&mut Checker, &Sim)) {
        if let Some(mut c) = self.checker.take() {
            c.at(self);
            f(&mut c, self);
            self.checker = Some(c);
        }
    }

    pub(super) fn chk_started(&mut self, node: usize) {
        let sid = node + 1;
        self.with_checker(|c, sim| {
            c.note(sim.now_ms, format_args!("s{sid} starts"));
            c.reset_view(sim, node);
        });
    }

    pub(super) fn chk_crashed(&mut self, node: usize) {
        let sid = node + 1;
        self.with_checker(|c, sim| {
            c.note(sim.now_ms, format_args!("s{sid} crashes"));
            c.reset_view(sim, node);
            c.forget_leader(node);
            c.snap_seqs.retain(|(to, _), _| *to != node);
        });
    }

    pub(super) fn chk_before_step(&mut self, node: usize, from: Option<usize>, input: &PeerInput) {
        self.with_checker(|c, sim| c.before_step(sim, node, from, input));
    }

    pub(super) fn chk_after_step(&mut self, node: usize) {
        self.with_checker(|c, sim| c.after_step(sim, node));
    }

    pub(super) fn chk_appended(&mut self, node: usize, entries: &[TxnEntry]) {
        self.with_checker(|c, _| {
            for e in entries {
                c.check_integrity_on_append(node, e);
            }
        });
    }

    pub(super) fn chk_installing(&mut self, node: usize, zxid: i64) {
        self.with_checker(|c, _| c.nodes[node].installing = Some(zxid));
    }

    pub(super) fn chk_sent(&mut self, from: usize, to: usize, packet: &QuorumPacket) {
        if packet.type_ == packet::SNAP {
            self.with_checker(|c, _| c.snap_sends.push((from, to, packet.zxid)));
        }
    }

    pub(super) fn chk_link_dropped(&mut self, node: usize, link: Option<LinkId>) {
        self.with_checker(|c, _| match link {
            Some(l) => c.forget_link(node, l),
            None => c.forget_leader(node),
        });
    }

    pub(super) fn chk_durable(&mut self, node: usize, op: &DiskOp) {
        self.with_checker(|c, sim| c.durable(sim, node, op));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::proto::ConnectRequest;
    use crate::server::Input;

    /// A three-server ensemble that committed one transaction (a session).
    fn ensemble_with_a_commit(seed: u64) -> Sim {
        let mut sim = Sim::new(seed, 3, 0);
        sim.enable_checker();
        assert!(sim.run_until_serving(20_000));
        let cnxn = super::super::sim_cnxn(0, 1);
        let peer = "127.0.0.1:5000".parse().expect("literal");
        sim.client(0, Input::Accepted { cnxn, peer });
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: 30_000,
            session_id: 0,
            passwd: bytes::Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        };
        sim.client(0, Input::Connect { cnxn, req });
        sim.run_for(500);
        let c = sim.checker.as_ref().expect("enabled");
        assert!(!c.committed().is_empty(), "the session was committed");
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        sim
    }

    #[test]
    fn a_healthy_commit_passes_every_check() {
        let mut sim = ensemble_with_a_commit(1);
        let mut c = sim.checker.take().expect("enabled");
        c.check_end(&sim);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.stats.establishments, 1);
    }

    #[test]
    fn losing_a_committed_txn_from_two_logs_is_caught() {
        let mut sim = ensemble_with_a_commit(2);
        // Two disks drop everything (as a TRUNC to 0 would): the txn is on one log only.
        for node in [0, 1] {
            sim.nodes[node]
                .disk
                .pending
                .push(DiskOp::Cmd(DiskCommand::Truncate {
                    zxid: 0,
                    reload: false,
                }));
            sim.schedule_fsync(node);
        }
        sim.run_for(50);
        let c = sim.checker.as_ref().expect("enabled");
        let caught: Vec<&str> = c.violations.iter().map(|v| v.property).collect();
        assert!(caught.contains(&"CommittedOnQuorum"), "{caught:?}");
        assert!(
            caught.contains(&"SyncNeverTruncatesCommitted"),
            "{caught:?}"
        );
    }
}
