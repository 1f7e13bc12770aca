//! A deterministic simulator: several [`QuorumPeer`]s — the production core, not a model of
//! it — in one thread, over a simulated network and disk, driven by a virtual clock and a
//! seeded random source. Every run is a function of its seed.
//!
//! - Network: election notifications and quorum links with a random delay; each link is FIFO
//!   (TCP); a crashed or partitioned node's links close on both sides.
//! - Disk: appends and disk commands become durable together at a simulated fsync; a crash
//!   loses everything not yet durable, or (a torn fsync, [`Sim::crash_torn`]) all but a
//!   prefix of it.
//! - Clients: tests feed client inputs to a node and read the outputs it produced.
//! - Faults: crashes and restarts, symmetric partitions, one-way partitions (what one node
//!   sends to another waits, as in TCP buffers, until healed or the link closes), broken
//!   quorum links, slow fsyncs, and lost or duplicated election notifications (FLE resends
//!   them); with [`Sim::enable_buggify`], the core's fault sites ([`crate::quorum::buggify`])
//!   and crashes in the middle of a learner's NEWLEADER writes. Messages on a quorum link
//!   are never dropped or duplicated (it is TCP); links break instead.
//! - Checkers ([`checker`]), when enabled, run after every step; [`workload`] drives
//!   simulated clients and [`sweep`] runs seeded fault schedules with both.

use crate::config::{Config, PeerType, ServerLine};
use crate::jute::quorum::QuorumPacket;
use crate::jute::txn::{TxnBody, TxnEntry};
use crate::quorum::buggify::{Buggify, Fired, SITES};
use crate::quorum::peer::{PeerInput, PeerStart, QuorumPeer};
use crate::quorum::replica::{DiskCommand, DiskDone, EpochKind, LinkId, PeerOutput};
use crate::quorum::{ServerState, Sid};
use crate::server::{CnxnId, Input, Output, SyncCounters};
use crate::tree::DataTree;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

pub mod checker;
pub mod sweep;
pub mod trace;
pub mod workload;

/// Packets a one-way partition holds per directed pair; beyond, the link is reset (TCP would
/// have given up long before).
pub const HELD_PACKETS_MAX: usize = 100_000;

/// Ticks at one virtual instant before the simulator calls it a livelock.
pub const TICKS_PER_INSTANT_MAX: u32 = 10_000;

/// Picks delays and faults: deterministic per seed ([`crate::rng`]).
#[derive(Clone, Debug)]
pub struct SimRng(crate::rng::XorShift64Star);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(crate::rng::XorShift64Star::seeded(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What a node's disk holds durably, and what waits for the next fsync.
#[derive(Default)]
pub struct SimDisk {
    /// Every durable transaction, in zxid order (the simulator keeps no snapshots, except a
    /// learner's installed SNAP, kept as `base`).
    pub log: Vec<TxnEntry>,
    pub base: Option<(i64, Vec<u8>)>,
    pub accepted_epoch: i64,
    pub current_epoch: i64,
    /// ZooKeeper's `updatingEpoch` marker file: set while a learner's NEWLEADER writes move
    /// the log past currentEpoch's epoch.
    pub updating_epoch: bool,
    pending: Vec<DiskOp>,
    fsync_scheduled: bool,
}

enum DiskOp {
    Append(Vec<TxnEntry>),
    Cmd(DiskCommand),
    /// A learner's SNAP, as the snapshot-file bytes the leader sent.
    Snapshot {
        zxid: i64,
        bytes: Vec<u8>,
    },
}

impl SimDisk {
    fn last_zxid(&self) -> i64 {
        self.log
            .last()
            .map(|e| e.header.zxid)
            .or(self.base.as_ref().map(|b| b.0))
            .unwrap_or(0)
    }

    /// What `persistence::FileTxnSnapLog::restore` does with the epochs (ZooKeeper's
    /// QuorumPeer.loadDataBase): a currentEpoch older than the last zxid's epoch is taken from
    /// the epoch of the last zxid when the `updatingEpoch` marker says a NEWLEADER was being
    /// written, and stops the server otherwise; the marker is then gone.
    fn check_epochs_at_load(&mut self, node: usize, last_zxid: i64) {
        let zxid_epoch = crate::quorum::epoch_of(last_zxid);
        if zxid_epoch > self.current_epoch {
            assert!(
                self.updating_epoch,
                "s{} cannot restart: the current epoch, {}, is older than the last zxid, \
                 0x{last_zxid:x}, and no updatingEpoch marker says why",
                node + 1,
                self.current_epoch
            );
            self.current_epoch = zxid_epoch;
        }
        self.updating_epoch = false;
        assert!(
            self.accepted_epoch >= self.current_epoch,
            "s{} cannot restart: the accepted epoch, {}, is less than the current epoch, {}",
            node + 1,
            self.accepted_epoch,
            self.current_epoch
        );
    }

    /// The tree and sessions the durable state gives (a restart's load).
    pub fn load(&self, up_to: i64) -> (DataTree, Vec<(i64, i32)>) {
        let (mut tree, sessions) = match &self.base {
            Some((zxid, bytes)) => {
                let (tree, sessions) =
                    crate::persistence::restore_snapshot_bytes(bytes, usize::MAX, false)
                        .expect("the simulator's own snapshot decodes");
                assert_eq!(tree.last_processed_zxid(), *zxid, "snapshot at its zxid");
                (tree, sessions)
            }
            None => (DataTree::new(), Vec::new()),
        };
        let mut sessions: BTreeMap<i64, i32> = sessions.into_iter().collect();
        for e in self.log.iter().filter(|e| e.header.zxid <= up_to) {
            if e.header.zxid <= tree.last_processed_zxid() {
                continue;
            }
            match &e.body {
                TxnBody::CreateSession(s) => {
                    sessions.insert(e.header.client_id, s.time_out);
                }
                TxnBody::CloseSession(_) => {
                    sessions.remove(&e.header.client_id);
                }
                _ => {}
            }
            let mut events = Vec::new();
            tree.process_txn(&e.header, &e.body, &|_, _| false, &mut events);
        }
        (tree, sessions.into_iter().collect())
    }
}

pub struct SimNode {
    pub peer: Option<QuorumPeer>,
    pub disk: SimDisk,
    pub config: Config,
    incarnation: u64,
    /// This node's link id → (remote node, remote link id).
    links: BTreeMap<LinkId, (usize, LinkId)>,
    next_inbound: u64,
    /// Client-facing outputs, for tests to read.
    pub client_out: Vec<Output>,
    /// Added to every fsync of this node (a slow disk).
    pub fsync_extra_ms: i64,
}

enum Event {
    Deliver {
        node: usize,
        inc: u64,
        /// The sending node, for packets on quorum links.
        from: Option<usize>,
        input: PeerInput,
    },
    Fsync {
        node: usize,
        inc: u64,
    },
    /// A restart after a crash the simulator chose itself (a torn NEWLEADER write).
    Restart {
        node: usize,
        inc: u64,
    },
}

/// The simulator's own fault decisions when buggify is on; a separate random source, so a
/// run with buggify off draws exactly what it drew before buggify existed.
struct SimBuggify {
    seed: u64,
    rng: SimRng,
    /// Times each core site fired, in servers that have crashed since.
    fired_gone: Fired,
    torn_newleader_crashes: u64,
}

/// Percent of a learner's NEWLEADER fsyncs that a buggified run tears with a crash.
const TORN_NEWLEADER_PERCENT: u64 = 20;

pub struct Sim {
    pub now_ms: i64,
    pub rng: SimRng,
    pub nodes: Vec<SimNode>,
    queue: BTreeMap<(i64, u64), Event>,
    seq: u64,
    /// Last delivery time per directed link, so each link stays FIFO.
    link_clock: BTreeMap<(usize, LinkId), i64>,
    /// Pairs of nodes that cannot talk.
    cut: BTreeSet<(usize, usize)>,
    /// Directed pairs (from, to) whose packets wait: a one-way partition.
    stalled: BTreeSet<(usize, usize)>,
    /// Packets held by a one-way partition, in the order they were due.
    held: BTreeMap<(usize, usize), Vec<Event>>,
    /// Election notifications lost or sent twice, in percent (0: no draws from `rng`).
    pub election_drop_percent: u64,
    pub election_dup_percent: u64,
    pub max_delay_ms: i64,
    pub fsync_ms: (i64, i64),
    /// Every step taken, for a failing seed's report.
    pub steps: u64,
    /// Safety checkers run after every step, when set.
    pub checker: Option<Box<checker::Checker>>,
    /// Records the run as spec actions, when set ([`trace`]).
    pub tracer: Option<Box<trace::Tracer>>,
    /// Disk writes are durable at the end of the step that issued them.
    pub sync_disk: bool,
    /// A closed link loses the packets in flight on it (a reset, not a FIN).
    pub reset_on_close: bool,
    buggify: Option<SimBuggify>,
}

pub fn sim_config(n_voters: usize, n_observers: usize, me: usize) -> Config {
    let mut c = Config {
        tick_time_ms: 100,
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
        standalone_enabled: false,
        ..Config::default()
    };
    for i in 0..n_voters + n_observers {
        let id = (i + 1) as u64;
        c.servers.insert(
            id,
            ServerLine {
                id,
                host: "127.0.0.1".into(),
                quorum_port: 20000 + id as u16,
                election_port: 30000 + id as u16,
                peer_type: if i < n_voters {
                    PeerType::Participant
                } else {
                    PeerType::Observer
                },
                client_addr: None,
                client_port: None,
            },
        );
    }
    c.my_id = Some((me + 1) as u64);
    c
}

impl Sim {
    pub fn new(seed: u64, n_voters: usize, n_observers: usize) -> Sim {
        Sim::with_config(seed, n_voters, n_observers, |_| {})
    }

    /// A simulation whose nodes' configurations `tune` adjusts first.
    pub fn with_config(
        seed: u64,
        n_voters: usize,
        n_observers: usize,
        tune: impl Fn(&mut Config),
    ) -> Sim {
        let nodes = (0..n_voters + n_observers)
            .map(|i| SimNode {
                peer: None,
                disk: SimDisk::default(),
                config: {
                    let mut c = sim_config(n_voters, n_observers, i);
                    tune(&mut c);
                    c
                },
                incarnation: 0,
                links: BTreeMap::new(),
                next_inbound: 0,
                client_out: Vec::new(),
                fsync_extra_ms: 0,
            })
            .collect();
        let mut sim = Sim {
            now_ms: 1_000_000,
            rng: SimRng::new(seed),
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            link_clock: BTreeMap::new(),
            cut: BTreeSet::new(),
            stalled: BTreeSet::new(),
            held: BTreeMap::new(),
            election_drop_percent: 0,
            election_dup_percent: 0,
            max_delay_ms: 5,
            fsync_ms: (1, 4),
            steps: 0,
            checker: None,
            tracer: None,
            sync_disk: false,
            reset_on_close: false,
            buggify: None,
        };
        for i in 0..sim.nodes.len() {
            sim.start(i);
        }
        sim
    }

    /// Starts (or restarts) a node from its durable state.
    pub fn start(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        let (tree, sessions) = n.disk.load(i64::MAX);
        n.disk
            .check_epochs_at_load(node, tree.last_processed_zxid());
        let recent: Vec<TxnEntry> = n.disk.log.iter().rev().take(500).rev().cloned().collect();
        let start = PeerStart {
            tree,
            sessions,
            recent_txns: recent,
            accepted_epoch: n.disk.accepted_epoch,
            current_epoch: n.disk.current_epoch,
        };
        let mut peer = QuorumPeer::new(&n.config, self.now_ms, start).expect("valid sim config");
        if let Some(b) = &self.buggify {
            let seed = b.seed ^ ((node as u64) << 48) ^ n.incarnation.wrapping_mul(0x1000_0001);
            peer.set_buggify(Buggify::seeded(seed));
        }
        let mut out = Vec::new();
        peer.start(self.now_ms, &mut out);
        n.peer = Some(peer);
        self.chk_started(node);
        self.trc_started(node);
        self.route(node, out);
        self.chk_after_step(node);
        self.settle_disk(node);
    }

    /// Kills a node: volatile state and undurable writes are lost; its links close.
    pub fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if let (Some(peer), Some(b)) = (&n.peer, &mut self.buggify) {
            for (total, k) in b.fired_gone.iter_mut().zip(peer.buggify_fired()) {
                *total += k;
            }
        }
        n.peer = None;
        n.incarnation += 1;
        n.disk.pending.clear();
        n.disk.fsync_scheduled = false;
        let links: Vec<LinkId> = n.links.keys().copied().collect();
        for link in links {
            self.close_link(node, link);
        }
        self.chk_crashed(node);
        self.trc_crashed(node);
    }

    /// True while the node runs.
    pub fn is_up(&self, node: usize) -> bool {
        self.nodes[node].peer.is_some()
    }

    /// Changes whenever the node crashes or restarts (its client connections are gone).
    pub fn incarnation(&self, node: usize) -> u64 {
        self.nodes[node].incarnation
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(&mut self, node: usize) {
        for other in 0..self.nodes.len() {
            if other != node {
                self.partition(node, other);
            }
        }
    }

    /// Breaks every quorum link between `a` and `b` (both ends see it close); they may
    /// reconnect at once.
    pub fn break_links(&mut self, a: usize, b: usize) {
        self.trc_link_fault(a, b);
        let links: Vec<LinkId> = self.nodes[a]
            .links
            .iter()
            .filter(|(_, (r, _))| *r == b)
            .map(|(l, _)| *l)
            .collect();
        for link in links {
            self.close_link(a, link);
        }
    }

    pub fn partition(&mut self, a: usize, b: usize) {
        self.trc_link_fault(a, b);
        self.cut.insert((a.min(b), a.max(b)));
        let links: Vec<(LinkId, usize)> = self.nodes[a]
            .links
            .iter()
            .filter(|(_, (r, _))| *r == b)
            .map(|(l, (r, _))| (*l, *r))
            .collect();
        for (link, _) in links {
            self.close_link(a, link);
        }
    }

    /// Heals every partition; packets a one-way partition held arrive now, in order.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.stalled.clear();
        let at = self.now_ms + 1;
        for (_, events) in std::mem::take(&mut self.held) {
            for ev in events {
                self.push(at, ev);
            }
        }
    }

    /// What `from` sends to `to` waits (quorum packets) or is lost (election notifications)
    /// until `heal`; `to` still reaches `from`.
    pub fn stall(&mut self, from: usize, to: usize) {
        self.stalled.insert((from, to));
    }

    fn can_talk(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
            && self.nodes[a].peer.is_some()
            && self.nodes[b].peer.is_some()
    }

    fn push(&mut self, at_ms: i64, ev: Event) {
        self.seq += 1;
        self.queue.insert((at_ms, self.seq), ev);
    }

    fn deliver(&mut self, node: usize, delay_ms: i64, input: PeerInput) {
        let inc = self.nodes[node].incarnation;
        let ev = Event::Deliver {
            node,
            inc,
            from: None,
            input,
        };
        self.push(self.now_ms + delay_ms, ev);
    }

    fn delay(&mut self) -> i64 {
        self.rng.range(1, self.max_delay_ms.max(1))
    }

    /// Feeds a client input to a node now.
    pub fn client(&mut self, node: usize, input: Input) {
        self.step_node(node, None, PeerInput::Client(input));
    }

    fn step_node(&mut self, node: usize, from: Option<usize>, input: PeerInput) {
        let now = self.now_ms;
        if self.nodes[node].peer.is_none() {
            return;
        }
        self.chk_before_step(node, from, &input);
        self.trc_before_step(node, from, &input);
        let Some(peer) = self.nodes[node].peer.as_mut() else {
            return;
        };
        sweep::set_log_context(now, node);
        let mut out = Vec::new();
        peer.step(now, input, &mut out);
        self.steps += 1;
        self.route(node, out);
        self.chk_after_step(node);
        self.settle_disk(node);
        self.trc_after_step(node);
    }

    /// With `sync_disk`, what the step wrote becomes durable now, inside the step.
    fn settle_disk(&mut self, node: usize) {
        if self.sync_disk
            && self.nodes[node].peer.is_some()
            && !self.nodes[node].disk.pending.is_empty()
        {
            self.fsync(node);
        }
    }

    fn route(&mut self, node: usize, out: Vec<PeerOutput>) {
        for o in out {
            match o {
                PeerOutput::Server(Output::Append { entries }) => {
                    self.chk_appended(node, &entries);
                    self.trc_appended(node, entries.len());
                    self.nodes[node].disk.pending.push(DiskOp::Append(entries));
                    self.schedule_fsync(node);
                }
                PeerOutput::Disk(DiskCommand::InstallSnapshot { zxid, bytes }) => {
                    let bytes = bytes.to_vec();
                    self.chk_installing(node, zxid);
                    self.nodes[node]
                        .disk
                        .pending
                        .push(DiskOp::Snapshot { zxid, bytes });
                    self.schedule_fsync(node);
                }
                PeerOutput::Server(Output::Snapshot(_)) => {}
                PeerOutput::Server(other) => self.nodes[node].client_out.push(other),
                PeerOutput::Disk(cmd) => {
                    self.nodes[node].disk.pending.push(DiskOp::Cmd(cmd));
                    self.schedule_fsync(node);
                }
                PeerOutput::Election { to, notification } => {
                    let to = (to - 1) as usize;
                    if to < self.nodes.len()
                        && self.can_talk(node, to)
                        && !self.stalled.contains(&(node, to))
                    {
                        let lost = self.election_drop_percent > 0
                            && self.rng.chance(self.election_drop_percent);
                        let twice = self.election_dup_percent > 0
                            && self.rng.chance(self.election_dup_percent);
                        let from = (node + 1) as Sid;
                        if twice {
                            let d = self.delay();
                            let notification = notification.clone();
                            self.deliver(to, d, PeerInput::Election { from, notification });
                        }
                        if !lost {
                            let d = self.delay();
                            self.deliver(to, d, PeerInput::Election { from, notification });
                        }
                    }
                }
                PeerOutput::Connect { link, addr } => self.connect(node, link, addr),
                PeerOutput::Send { link, packet } => {
                    if let Some(&(remote, rlink)) = self.nodes[node].links.get(&link) {
                        let at = (self.now_ms + self.delay())
                            .max(*self.link_clock.get(&(node, link)).unwrap_or(&0));
                        self.link_clock.insert((node, link), at);
                        let inc = self.nodes[remote].incarnation;
                        self.chk_sent(node, remote, &packet);
                        self.trc_sent(node, remote, &packet);
                        let input = PeerInput::Packet {
                            link: rlink,
                            packet,
                        };
                        self.push(
                            at,
                            Event::Deliver {
                                node: remote,
                                inc,
                                from: Some(node),
                                input,
                            },
                        );
                    }
                }
                PeerOutput::CloseLink { link } => {
                    self.chk_link_dropped(node, Some(link));
                    self.trc_link_closed_by(node, link);
                    self.close_link(node, link)
                }
                PeerOutput::CloseAllLinks => {
                    self.chk_link_dropped(node, None);
                    self.trc_all_links_closed_by(node);
                    let links: Vec<LinkId> = self.nodes[node].links.keys().copied().collect();
                    for link in links {
                        self.close_link(node, link);
                    }
                }
            }
        }
    }

    fn connect(&mut self, node: usize, link: LinkId, addr: SocketAddr) {
        let target = self
            .nodes
            .iter()
            .position(|n| {
                n.config
                    .my_server()
                    .is_some_and(|s| s.quorum_port == addr.port())
            })
            .filter(|&t| self.can_talk(node, t));
        let Some(target) = target else {
            let d = self.delay();
            self.deliver(node, d, PeerInput::LinkClosed { link });
            return;
        };
        let t = &mut self.nodes[target];
        t.next_inbound += 1;
        let inbound = t.next_inbound;
        t.links.insert(inbound, (node, link));
        self.nodes[node].links.insert(link, (target, inbound));
        let d = self.delay();
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        self.link_clock.insert((node, link), self.now_ms + d);
        self.link_clock.insert((target, inbound), self.now_ms + d);
        self.deliver(node, d, PeerInput::LinkUp { link, peer });
        self.deliver(
            target,
            d,
            PeerInput::LinkUp {
                link: inbound,
                peer,
            },
        );
    }

    /// Both ends learn that the link is gone (after what was already in flight).
    fn close_link(&mut self, node: usize, link: LinkId) {
        let Some((remote, rlink)) = self.nodes[node].links.remove(&link) else {
            return;
        };
        self.nodes[remote].links.remove(&rlink);
        // What a one-way partition held on this link dies with it.
        let on_link = |ev: &Event| match ev {
            Event::Deliver {
                node: to,
                from: Some(from),
                input: PeerInput::Packet { link: l, .. },
                ..
            } => {
                (*to, *from, *l) == (remote, node, rlink)
                    || (*to, *from, *l) == (node, remote, link)
            }
            _ => false,
        };
        for events in self.held.values_mut() {
            events.retain(|ev| !on_link(ev));
        }
        if self.reset_on_close {
            self.queue.retain(|_, ev| match ev {
                Event::Deliver {
                    node: to,
                    from: Some(from),
                    input: PeerInput::Packet { link: l, .. },
                    ..
                } => {
                    !((*to, *from, *l) == (remote, node, rlink)
                        || (*to, *from, *l) == (node, remote, link))
                }
                _ => true,
            });
        }
        for (n, l) in [(node, link), (remote, rlink)] {
            let at = (self.now_ms + 1).max(*self.link_clock.get(&(n, l)).unwrap_or(&0));
            let inc = self.nodes[n].incarnation;
            self.push(
                at,
                Event::Deliver {
                    node: n,
                    inc,
                    from: None,
                    input: PeerInput::LinkClosed { link: l },
                },
            );
            self.link_clock.remove(&(n, l));
        }
    }

    fn schedule_fsync(&mut self, node: usize) {
        if self.sync_disk || self.nodes[node].disk.fsync_scheduled {
            return;
        }
        self.nodes[node].disk.fsync_scheduled = true;
        let d = self.rng.range(self.fsync_ms.0, self.fsync_ms.1) + self.nodes[node].fsync_extra_ms;
        let inc = self.nodes[node].incarnation;
        self.push(self.now_ms + d, Event::Fsync { node, inc });
    }

    /// Everything pending becomes durable, in order; the core hears about it in order. A
    /// buggified run sometimes tears a batch that holds a currentEpoch write instead.
    fn fsync(&mut self, node: usize) {
        self.nodes[node].disk.fsync_scheduled = false;
        if let Some(keep) = self.torn_epoch_write(node) {
            self.note(format_args!(
                "buggify: s{} crashes with {keep} of its pending disk ops durable, \
                 before its currentEpoch write",
                node + 1
            ));
            self.crash_torn(node, keep);
            let b = self.buggify.as_mut().expect("torn only when buggified");
            b.torn_newleader_crashes += 1;
            let at = self.now_ms + b.rng.range(50, 3_000);
            let inc = self.nodes[node].incarnation;
            self.push(at, Event::Restart { node, inc });
            return;
        }
        let ops = std::mem::take(&mut self.nodes[node].disk.pending);
        let mut notices = Vec::new();
        for op in ops {
            self.make_durable(node, op, &mut notices);
        }
        let zxid = self.nodes[node].disk.last_zxid();
        notices.push(PeerInput::Client(Input::Persisted {
            zxid,
            sync: SyncCounters::default(),
        }));
        for n in notices {
            self.step_node(node, None, n);
        }
    }

    /// Kills a node in the middle of an fsync: the first `durable_ops` pending disk ops (in
    /// order: appends, epoch writes, truncations, snapshots) survive, the rest are lost. The
    /// sync thread runs them in that order, so a crash can leave any prefix durable.
    pub fn crash_torn(&mut self, node: usize, durable_ops: usize) {
        let ops = std::mem::take(&mut self.nodes[node].disk.pending);
        let mut ignored = Vec::new();
        for op in ops.into_iter().take(durable_ops) {
            self.make_durable(node, op, &mut ignored);
        }
        self.crash(node);
    }

    /// The kinds of the node's pending disk ops, in order (for tests that pick a tear).
    pub fn pending_ops(&self, node: usize) -> Vec<&'static str> {
        self.nodes[node]
            .disk
            .pending
            .iter()
            .map(|op| match op {
                DiskOp::Append(_) => "append",
                DiskOp::Snapshot { .. } => "snapshot",
                DiskOp::Cmd(DiskCommand::Truncate { .. }) => "truncate",
                DiskOp::Cmd(DiskCommand::InstallSnapshot { .. }) => "snapshot",
                DiskOp::Cmd(DiskCommand::WriteEpoch {
                    which: EpochKind::Accepted,
                    ..
                }) => "acceptedEpoch",
                DiskOp::Cmd(DiskCommand::WriteEpoch {
                    which: EpochKind::Current,
                    ..
                }) => "currentEpoch",
                DiskOp::Cmd(DiskCommand::MarkUpdatingEpoch) => "updatingEpoch",
            })
            .collect()
    }

    /// With buggify on, sometimes: how many pending ops to keep when a batch with something
    /// before its currentEpoch write is torn (at least one, never the epoch write).
    fn torn_epoch_write(&mut self, node: usize) -> Option<usize> {
        let b = self.buggify.as_mut()?;
        let at = self.nodes[node].disk.pending.iter().position(|op| {
            matches!(
                op,
                DiskOp::Cmd(DiskCommand::WriteEpoch {
                    which: EpochKind::Current,
                    ..
                })
            )
        })?;
        if at == 0 || !b.rng.chance(TORN_NEWLEADER_PERCENT) {
            return None;
        }
        Some(b.rng.range(1, at as i64) as usize)
    }

    /// Turns on the core's fault sites in every server (from the next start on) and torn
    /// NEWLEADER writes, all drawn from `seed` alone.
    pub fn enable_buggify(&mut self, seed: u64) {
        self.buggify = Some(SimBuggify {
            seed,
            rng: SimRng::new(seed ^ 0xb066_1f7e),
            fired_gone: [0; SITES],
            torn_newleader_crashes: 0,
        });
        for node in 0..self.nodes.len() {
            let inc = self.nodes[node].incarnation;
            if let Some(peer) = self.nodes[node].peer.as_mut() {
                let seed = seed ^ ((node as u64) << 48) ^ inc.wrapping_mul(0x1000_0001);
                peer.set_buggify(Buggify::seeded(seed));
            }
        }
    }

    /// Times each core fault site fired (indexed like `Site::ALL`), and the torn NEWLEADER
    /// crashes; `None` when buggify is off.
    pub fn buggify_fired(&self) -> Option<(Fired, u64)> {
        let b = self.buggify.as_ref()?;
        let mut fired = b.fired_gone;
        for peer in self.nodes.iter().filter_map(|n| n.peer.as_ref()) {
            for (total, k) in fired.iter_mut().zip(peer.buggify_fired()) {
                *total += k;
            }
        }
        Some((fired, b.torn_newleader_crashes))
    }

    /// One op becomes durable; the notices the core gets for it go to `notices`.
    fn make_durable(&mut self, node: usize, op: DiskOp, notices: &mut Vec<PeerInput>) {
        self.chk_durable(node, &op);
        let disk = &mut self.nodes[node].disk;
        match op {
            DiskOp::Snapshot { zxid, bytes } => {
                notices.push(PeerInput::Client(Input::Persisted {
                    zxid: disk.last_zxid(),
                    sync: SyncCounters::default(),
                }));
                disk.base = Some((zxid, bytes));
                disk.log.clear();
                notices.push(PeerInput::Disk(DiskDone::SnapshotInstalled { zxid }));
            }
            DiskOp::Append(entries) => {
                disk.log.extend(entries);
            }
            DiskOp::Cmd(cmd) => {
                notices.push(PeerInput::Client(Input::Persisted {
                    zxid: disk.last_zxid(),
                    sync: SyncCounters::default(),
                }));
                let done = match cmd {
                    DiskCommand::Truncate { zxid, reload } => {
                        disk.log.retain(|e| e.header.zxid <= zxid);
                        let restored = reload.then(|| {
                            let (tree, sessions) = disk.load(zxid);
                            Box::new(crate::persistence::Restored {
                                tree,
                                sessions,
                                snapshot_zxid: 0,
                                txns_replayed: 0,
                                accepted_epoch: disk.accepted_epoch,
                                current_epoch: disk.current_epoch,
                                recent_txns: Vec::new(),
                            })
                        });
                        DiskDone::Truncated { zxid, restored }
                    }
                    DiskCommand::InstallSnapshot { .. } => {
                        unreachable!("route turns snapshots into DiskOp::Snapshot")
                    }
                    DiskCommand::WriteEpoch { which, epoch } => {
                        match which {
                            EpochKind::Accepted => disk.accepted_epoch = epoch,
                            EpochKind::Current => {
                                disk.current_epoch = epoch;
                                disk.updating_epoch = false;
                            }
                        }
                        DiskDone::EpochWritten { which, epoch }
                    }
                    DiskCommand::MarkUpdatingEpoch => {
                        disk.updating_epoch = true;
                        DiskDone::UpdatingEpochMarked
                    }
                };
                notices.push(PeerInput::Disk(done));
            }
        }
    }

    /// Runs until `until_ms` of virtual time.
    pub fn run_until(&mut self, until_ms: i64) {
        let (mut last_tick_at, mut same_instant_ticks) = (i64::MIN, 0u32);
        loop {
            let next_event = self.queue.keys().next().map(|k| k.0).unwrap_or(i64::MAX);
            let (tick_node, next_tick) = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.peer.as_ref().map(|p| (i, p.next_tick_ms())))
                .min_by_key(|&(_, t)| t)
                .unwrap_or((0, i64::MAX));
            let next = next_event.min(next_tick).max(self.now_ms);
            if next > until_ms {
                self.now_ms = until_ms;
                return;
            }
            self.now_ms = next;
            if next_tick <= next_event {
                // A tick that leaves its timer in the past would spin forever here (and burn a
                // core in the real driver): report it.
                same_instant_ticks = if next == last_tick_at {
                    same_instant_ticks + 1
                } else {
                    0
                };
                last_tick_at = next;
                assert!(
                    same_instant_ticks < TICKS_PER_INSTANT_MAX,
                    "s{}'s timer stays at {next_tick} after its tick at {next} ({:?})",
                    tick_node + 1,
                    self.state(tick_node)
                );
                let now = self.now_ms;
                if self.nodes[tick_node].peer.is_some() {
                    self.trc_before_tick(tick_node);
                }
                if let Some(peer) = self.nodes[tick_node].peer.as_mut() {
                    sweep::set_log_context(now, tick_node);
                    let mut out = Vec::new();
                    peer.tick(now, &mut out);
                    self.steps += 1;
                    self.route(tick_node, out);
                    self.chk_after_step(tick_node);
                    self.settle_disk(tick_node);
                    self.trc_after_step(tick_node);
                }
                continue;
            }
            let (_, ev) = self.queue.pop_first().expect("an event is due");
            if let Event::Deliver {
                node,
                from: Some(from),
                ..
            } = &ev
            {
                if self.stalled.contains(&(*from, *node)) {
                    let pair = (*from, *node);
                    let held = self.held.entry(pair).or_default();
                    if held.len() < HELD_PACKETS_MAX {
                        held.push(ev);
                    } else if let Event::Deliver {
                        node,
                        input: PeerInput::Packet { link, .. },
                        ..
                    } = ev
                    {
                        self.close_link(node, link); // TCP would have given up: a reset
                    }
                    continue;
                }
            }
            match ev {
                Event::Deliver {
                    node,
                    inc,
                    from,
                    input,
                } => {
                    if self.nodes[node].incarnation == inc {
                        self.step_node(node, from, input);
                    }
                }
                Event::Fsync { node, inc } => {
                    if self.nodes[node].incarnation == inc {
                        self.fsync(node);
                    }
                }
                Event::Restart { node, inc } => {
                    if self.nodes[node].incarnation == inc && !self.is_up(node) {
                        self.start(node);
                    }
                }
            }
        }
    }

    pub fn run_for(&mut self, ms: i64) {
        let until = self.now_ms + ms;
        self.run_until(until);
    }

    pub fn state(&self, node: usize) -> Option<ServerState> {
        self.nodes[node].peer.as_ref().map(|p| p.state())
    }

    pub fn serving(&self, node: usize) -> bool {
        self.nodes[node]
            .peer
            .as_ref()
            .is_some_and(|p| p.is_serving())
    }

    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .find(|&i| self.state(i) == Some(ServerState::Leading) && self.serving(i))
    }

    /// Runs until every live node serves (or the time limit passes).
    pub fn run_until_serving(&mut self, limit_ms: i64) -> bool {
        let deadline = self.now_ms + limit_ms;
        while self.now_ms < deadline {
            self.run_for(10);
            let all = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].peer.is_some())
                .all(|i| self.serving(i));
            if all {
                return true;
            }
        }
        false
    }

    /// Delivers `packet` to `node` as if it came over its quorum link `k` (in link order),
    /// for fuzzing the roles with packets no correct peer sends. False without such a link.
    pub fn inject_packet(&mut self, node: usize, k: usize, packet: QuorumPacket) -> bool {
        let Some(&link) = self.nodes[node].links.keys().nth(k) else {
            return false;
        };
        self.step_node(node, None, PeerInput::Packet { link, packet });
        true
    }

    pub fn take_client_out(&mut self, node: usize) -> Vec<Output> {
        std::mem::take(&mut self.nodes[node].client_out)
    }
}

/// A client connection id for simulated clients.
pub fn sim_cnxn(node: usize, n: u64) -> CnxnId {
    ((node as u64) << 32) | n
}

#[cfg(test)]
mod tests;
