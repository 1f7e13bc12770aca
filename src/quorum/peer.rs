//! [`QuorumPeer`]: one ensemble member as a sans-IO state machine (ZooKeeper's `QuorumPeer`
//! main loop). It owns the election, the current role (looking, leading, following,
//! observing) and the request pipeline, routes every input to them, and turns what they ask
//! for into [`PeerOutput`]s. Time comes in with every call; nothing here blocks or does I/O,
//! so the simulator can run several peers in one thread exactly as the threads run one.
//!
//! Clients are served only by an established leader and by learners after UPTODATE; leaving a
//! role closes every client and learner connection and starts a new election.

use super::buggify::{Buggify, Fired, Site};
use super::election::{ElectionOutput, ElectionTimers, FastLeaderElection};
use super::leader::Leader;
use super::learner::{Learner, Phase as LearnerPhase};
use super::packets;
use super::replica::{
    DiskDone, EpochKind, LinkId, PeerOutput, PeerSettings, Replica, SyncCounters, OUTBOUND_LINK_BIT,
};
use super::{ServerState, Sid};
use crate::config::Config;
use crate::jute::quorum::{Notification, QuorumPacket};
use crate::jute::txn::TxnEntry;
use crate::server::{Input, Mode, Output, QuorumInfo, ZooKeeperServer};
use crate::tree::DataTree;
use bytes::Bytes;
use log::{info, warn};
use std::net::SocketAddr;

/// Everything the outside world tells a peer.
#[derive(Debug)]
pub enum PeerInput {
    /// From the client thread, or the sync thread's `Input::Persisted`.
    Client(Input),
    Disk(DiskDone),
    Election {
        from: Sid,
        notification: Notification,
    },
    LinkUp {
        link: LinkId,
        peer: SocketAddr,
    },
    Packet {
        link: LinkId,
        packet: QuorumPacket,
    },
    LinkClosed {
        link: LinkId,
    },
}

pub enum Role {
    Looking { since_ms: i64 },
    Leading(Box<Leader>),
    Following(Box<Learner>),
    Observing(Box<Learner>),
}

/// What a peer starts from: its durable state.
pub struct PeerStart {
    pub tree: DataTree,
    pub sessions: Vec<(i64, i32)>,
    pub recent_txns: Vec<TxnEntry>,
    pub accepted_epoch: i64,
    pub current_epoch: i64,
}

pub struct QuorumPeer {
    r: Replica,
    election: FastLeaderElection,
    role: Role,
    next_link: u64,
    /// How long the last election took.
    election_time_ms: i64,
}

const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

impl QuorumPeer {
    pub fn new(config: &Config, now_ms: i64, start: PeerStart) -> Result<QuorumPeer, String> {
        let settings = peer_settings(config)?;
        let mut zk = ZooKeeperServer::restore(config, now_ms, start.tree, &start.sessions);
        zk.set_mode(Mode::Learner, now_ms);
        zk.keep_committed_log(settings.commit_log_count, start.recent_txns);
        let last = zk.tree().last_processed_zxid();
        let election = FastLeaderElection::new(
            settings.me,
            settings.verifier.clone(),
            ElectionTimers::default(),
            Bytes::new(),
        );
        Ok(QuorumPeer {
            r: Replica {
                settings,
                zk,
                accepted_epoch: start.accepted_epoch,
                accepted_epoch_promised: start.accepted_epoch,
                current_epoch: start.current_epoch,
                tail: Default::default(),
                last_logged: last,
                durable: last,
                scratch: Vec::new(),
                counters: SyncCounters::default(),
                reloads_pending: 0,
                now_ms,
                buggify: Buggify::off(),
            },
            election,
            role: Role::Looking { since_ms: now_ms },
            next_link: 0,
            election_time_ms: 0,
        })
    }

    pub fn me(&self) -> Sid {
        self.r.me()
    }

    pub fn state(&self) -> ServerState {
        match self.role {
            Role::Looking { .. } => ServerState::Looking,
            Role::Leading(_) => ServerState::Leading,
            Role::Following(_) => ServerState::Following,
            Role::Observing(_) => ServerState::Observing,
        }
    }

    /// True while a read-only server answers read-only clients.
    fn read_only_active(&self) -> bool {
        matches!(self.role, Role::Looking { .. }) && self.r.zk.mode() == Mode::ReadOnly
    }

    /// True when clients are served.
    pub fn is_serving(&self) -> bool {
        match &self.role {
            Role::Looking { .. } => false,
            Role::Leading(l) => l.is_established(),
            Role::Following(l) | Role::Observing(l) => l.phase == LearnerPhase::Broadcast,
        }
    }

    /// The spec's `zabState` (spec/Zab.tla) of this peer, for trace validation. Phases that
    /// only wait for a disk write belong to the phase the write completes.
    pub fn zab_state(&self) -> &'static str {
        use crate::quorum::leader::Phase as L;
        match &self.role {
            Role::Looking { .. } => "ELECTION",
            Role::Leading(l) => match l.phase {
                L::Discovery | L::PersistingAccepted | L::AwaitEpochAcks => "DISCOVERY",
                L::PersistingCurrent | L::Synchronization => "SYNCHRONIZATION",
                L::Broadcast => "BROADCAST",
            },
            Role::Following(l) | Role::Observing(l) => match l.phase {
                LearnerPhase::Connecting | LearnerPhase::AwaitLeaderInfo => "DISCOVERY",
                LearnerPhase::Broadcast => "BROADCAST",
                _ => "SYNCHRONIZATION",
            },
        }
    }

    pub fn tree(&self) -> &DataTree {
        self.r.zk.tree()
    }

    pub fn current_epoch(&self) -> i64 {
        self.r.current_epoch
    }

    pub fn accepted_epoch(&self) -> i64 {
        self.r.accepted_epoch
    }

    pub fn last_logged_zxid(&self) -> i64 {
        self.r.last_logged
    }

    /// Turns the fault sites on (the simulator); a small committed-log window is decided now.
    pub fn set_buggify(&mut self, mut buggify: Buggify) {
        if buggify.fire(Site::SmallCommitLog) {
            let keep = buggify.range(1, 20) as usize;
            let recent: Vec<TxnEntry> = self.r.zk.committed_log().iter().cloned().collect();
            self.r.settings.commit_log_count = keep;
            self.r.zk.keep_committed_log(keep, recent);
        }
        self.r.buggify = buggify;
    }

    /// Times each fault site fired in this server's life.
    pub fn buggify_fired(&self) -> Fired {
        self.r.buggify.fired()
    }

    pub fn sync_counters(&self) -> SyncCounters {
        self.r.counters
    }

    /// Starts the first election.
    pub fn start(&mut self, now_ms: i64, out: &mut Vec<PeerOutput>) {
        self.r.now_ms = now_ms;
        self.look_for_leader(now_ms, out);
    }

    fn look_for_leader(&mut self, now_ms: i64, out: &mut Vec<PeerOutput>) {
        self.role = Role::Looking { since_ms: now_ms };
        if self.r.settings.read_only_enabled {
            // Cut off from a quorum: read-only clients may still read (ReadOnlyZooKeeperServer).
            self.r.zk.set_mode(Mode::ReadOnly, now_ms);
        }
        let mut eout = Vec::new();
        self.election
            .look_for_leader(now_ms, self.r.last_logged, self.r.current_epoch, &mut eout);
        self.election_outputs(now_ms, eout, out);
    }

    pub fn step(&mut self, now_ms: i64, input: PeerInput, out: &mut Vec<PeerOutput>) {
        self.r.now_ms = self.r.now_ms.max(now_ms);
        let was_serving = self.is_serving();
        let result = match input {
            PeerInput::Client(input) => {
                self.on_client(now_ms, input, out);
                Ok(())
            }
            PeerInput::Disk(done) => self.on_disk_done(now_ms, done, out),
            PeerInput::Election { from, notification } => {
                let mut eout = Vec::new();
                self.election
                    .on_notification(now_ms, from, &notification, &mut eout);
                self.election_outputs(now_ms, eout, out);
                Ok(())
            }
            PeerInput::LinkUp { link, .. } => {
                self.on_link_up(now_ms, link, out);
                Ok(())
            }
            PeerInput::Packet { link, packet } => self.on_packet(now_ms, link, packet, out),
            PeerInput::LinkClosed { link } => self.on_link_closed(now_ms, link),
        };
        if !was_serving && self.is_serving() {
            // Established, or synced (ZooKeeper does this at the same two points).
            self.election.update_vote_epoch(self.r.current_epoch);
        }
        self.after(now_ms, result, out);
    }

    /// Timers: the election's, the role's, the pipeline's.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<PeerOutput>) {
        self.r.now_ms = self.r.now_ms.max(now_ms);
        if self.election.next_timeout_ms() <= now_ms {
            let mut eout = Vec::new();
            self.election.on_timeout(now_ms, &mut eout);
            self.election_outputs(now_ms, eout, out);
        }
        let result = match &mut self.role {
            Role::Looking { .. } => Ok(()),
            Role::Leading(l) => l.on_tick(now_ms, &mut self.r, out),
            Role::Following(l) | Role::Observing(l) => l.on_tick(now_ms, &self.r, out),
        };
        if self.is_serving() && self.r.zk.next_tick_ms() <= now_ms {
            self.r.zk.tick(now_ms, &mut self.r.scratch);
        }
        self.after(now_ms, result, out);
    }

    pub fn next_tick_ms(&self) -> i64 {
        let role = match &self.role {
            Role::Looking { .. } => i64::MAX,
            Role::Leading(l) => l.next_tick_ms(),
            Role::Following(l) | Role::Observing(l) => l.next_tick_ms(),
        };
        let zk = if self.is_serving() {
            self.r.zk.next_tick_ms()
        } else {
            i64::MAX
        };
        self.election.next_timeout_ms().min(role).min(zk)
    }

    /// Routes the pipeline's outputs, and leaves the role on a fatal error.
    fn after(&mut self, now_ms: i64, result: Result<(), String>, out: &mut Vec<PeerOutput>) {
        self.drain_pipeline(out);
        if let Err(why) = result {
            self.leave_role(now_ms, &why, out);
            self.drain_pipeline(out);
        }
    }

    fn election_outputs(
        &mut self,
        now_ms: i64,
        eout: Vec<ElectionOutput>,
        out: &mut Vec<PeerOutput>,
    ) {
        for o in eout {
            match o {
                ElectionOutput::Send { to, notification } => {
                    // Lost, as a broken election connection loses it: the election resends.
                    if !self.r.buggify.fire(Site::DropNotification) {
                        out.push(PeerOutput::Election { to, notification })
                    }
                }
                ElectionOutput::Elected { vote, state } => {
                    if matches!(self.role, Role::Looking { .. }) {
                        self.become_role(now_ms, vote.leader, state, out);
                    }
                }
            }
        }
    }

    fn become_role(
        &mut self,
        now_ms: i64,
        leader: Sid,
        state: ServerState,
        out: &mut Vec<PeerOutput>,
    ) {
        let since = match self.role {
            Role::Looking { since_ms } => since_ms,
            _ => now_ms,
        };
        self.election_time_ms = now_ms - since;
        info!(
            "election done in {} ms: {:?}, leader {leader}",
            self.election_time_ms, state
        );
        if self.r.zk.mode() == Mode::ReadOnly {
            self.r.zk.close_all(&mut self.r.scratch);
            self.r.zk.set_mode(Mode::Learner, now_ms);
        }
        match state {
            ServerState::Leading => {
                let leader = Leader::start(now_ms, &mut self.r);
                self.role = Role::Leading(Box::new(leader));
            }
            ServerState::Following | ServerState::Observing => {
                // Each role's learner numbers its connection attempts below the next 256.
                self.next_link += 1;
                let link = OUTBOUND_LINK_BIT | (self.next_link << 8);
                let observer = state == ServerState::Observing;
                let mut learner = Learner::new(leader, observer, link);
                let started = learner.start(now_ms, &self.r, out);
                self.role = if observer {
                    Role::Observing(Box::new(learner))
                } else {
                    Role::Following(Box::new(learner))
                };
                if let Err(why) = started {
                    self.leave_role(now_ms, &why, out);
                }
            }
            ServerState::Looking => {}
        }
    }

    /// Back to LOOKING: every connection closes; durable state stays.
    fn leave_role(&mut self, now_ms: i64, why: &str, out: &mut Vec<PeerOutput>) {
        warn!("leaving {:?}: {why}", self.state());
        match std::mem::replace(&mut self.role, Role::Looking { since_ms: now_ms }) {
            Role::Leading(mut l) => {
                l.step_down();
                out.push(PeerOutput::CloseAllLinks);
                // Prepared but uncommitted proposals stay in the log: the next leader decides.
                let pending = self.r.zk.take_pending();
                self.r.tail.extend(pending);
            }
            Role::Following(l) | Role::Observing(l) => {
                out.push(PeerOutput::CloseLink { link: l.link })
            }
            Role::Looking { .. } => {}
        }
        self.r.zk.close_all(&mut self.r.scratch);
        self.r.zk.set_mode(Mode::Learner, now_ms);
        self.r.zk.set_quorum_info(None);
        self.look_for_leader(now_ms, out);
    }

    fn on_client(&mut self, now_ms: i64, input: Input, out: &mut Vec<PeerOutput>) {
        match input {
            Input::Persisted { zxid, sync } => {
                self.r.durable = self.r.durable.max(zxid);
                self.r
                    .zk
                    .step(now_ms, Input::Persisted { zxid, sync }, &mut self.r.scratch);
                match &mut self.role {
                    Role::Leading(l) => l.on_persisted(now_ms, &mut self.r, out),
                    Role::Following(l) | Role::Observing(l) => l.on_persisted(&mut self.r, out),
                    Role::Looking { .. } => {}
                }
            }
            Input::Accepted { .. } | Input::Closed { .. } => {
                self.r.zk.step(now_ms, input, &mut self.r.scratch)
            }
            Input::FourLetter { cnxn, word, .. }
                if !self.is_serving() && !self.read_only_active() && &word != b"ruok" =>
            {
                out.push(PeerOutput::Server(Output::Text {
                    cnxn,
                    text: NOT_SERVING.to_owned(),
                }));
            }
            Input::FourLetter { .. } => {
                let info = self.quorum_info();
                self.r.zk.set_quorum_info(info);
                self.r.zk.step(now_ms, input, &mut self.r.scratch)
            }
            Input::Connect { cnxn, .. }
            | Input::Request { cnxn, .. }
            | Input::BadRequest { cnxn, .. }
                if !self.is_serving() && !self.read_only_active() =>
            {
                out.push(PeerOutput::Server(Output::Close { cnxn }));
            }
            other => self.r.zk.step(now_ms, other, &mut self.r.scratch),
        }
    }

    fn quorum_info(&self) -> Option<QuorumInfo> {
        let c = self.r.counters;
        let mut mntr = vec![
            ("zk_election_time", self.election_time_ms.to_string()),
            ("zk_current_epoch", self.r.current_epoch.to_string()),
            ("zk_accepted_epoch", self.r.accepted_epoch.to_string()),
        ];
        let state = match &self.role {
            Role::Leading(l) => {
                let (followers, observers, synced) = l.learner_counts();
                mntr.extend([
                    ("zk_learners", (followers + observers).to_string()),
                    ("zk_followers", followers.to_string()),
                    ("zk_synced_followers", synced.to_string()),
                    ("zk_synced_non_voting_followers", "0".to_owned()),
                    ("zk_synced_observers", observers.to_string()),
                    ("zk_pending_syncs", l.pending_sync_count().to_string()),
                    ("zk_diff_count", c.diff.to_string()),
                    ("zk_snap_count", c.snap.to_string()),
                    ("zk_trunc_count", c.trunc.to_string()),
                ]);
                "leader"
            }
            Role::Following(_) => "follower",
            Role::Observing(_) => "observer",
            Role::Looking { .. } => return None,
        };
        Some(QuorumInfo { state, mntr })
    }

    fn on_disk_done(
        &mut self,
        now_ms: i64,
        done: DiskDone,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), String> {
        // The epochs in memory follow the disk, never run ahead of it.
        if let DiskDone::EpochWritten { which, epoch } = done {
            match which {
                EpochKind::Accepted => self.r.accepted_epoch = epoch,
                EpochKind::Current => self.r.current_epoch = epoch,
            }
        }
        if let DiskDone::Truncated {
            restored: Some(_), ..
        } = &done
        {
            self.r.reloads_pending = self.r.reloads_pending.saturating_sub(1);
        }
        let own_truncation = matches!(&self.role,
            Role::Following(l) | Role::Observing(l) if l.awaiting_reload());
        match &mut self.role {
            Role::Leading(l) => {
                if let DiskDone::EpochWritten { which, epoch } = done {
                    l.on_epoch_written(which, epoch, &mut self.r, out);
                    return Ok(());
                }
            }
            Role::Following(l) | Role::Observing(l)
                if own_truncation || !matches!(done, DiskDone::Truncated { .. }) =>
            {
                return l.on_disk_done(done, now_ms, &mut self.r, out);
            }
            _ => {}
        }
        {
            {
                if let DiskDone::Truncated {
                    restored: Some(restored),
                    ..
                } = done
                {
                    // A truncation an earlier role asked for: the tree must follow the log.
                    // (No role gets past discovery while one is pending.)
                    self.r
                        .zk
                        .install_tree(restored.tree, &restored.sessions, now_ms);
                    // Proposals logged after the truncation (a later sync) stay logged.
                    let reloaded = self.r.zk.tree().last_processed_zxid();
                    self.r.last_logged = self
                        .r
                        .tail
                        .back()
                        .map_or(reloaded, |e| e.header.zxid.max(reloaded));
                    // Discovery waited for the reload: let it go on.
                    match &mut self.role {
                        Role::Leading(l) => l.on_reloaded(&mut self.r, out),
                        Role::Following(l) | Role::Observing(l) => l.on_persisted(&mut self.r, out),
                        Role::Looking { .. } => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn on_link_up(&mut self, now_ms: i64, link: LinkId, out: &mut Vec<PeerOutput>) {
        match &mut self.role {
            Role::Leading(l) if link & OUTBOUND_LINK_BIT == 0 => {
                l.on_link_up(now_ms, link, &self.r, out)
            }
            Role::Following(l) | Role::Observing(l) if link == l.link => {
                l.on_link_up(now_ms, link, &self.r, out)
            }
            _ => out.push(PeerOutput::CloseLink { link }),
        }
    }

    fn on_link_closed(&mut self, now_ms: i64, link: LinkId) -> Result<(), String> {
        match &mut self.role {
            Role::Leading(l) => {
                l.on_link_closed(link);
                Ok(())
            }
            Role::Following(l) | Role::Observing(l) => l.on_link_closed(now_ms, link, &self.r),
            Role::Looking { .. } => Ok(()),
        }
    }

    fn on_packet(
        &mut self,
        now_ms: i64,
        link: LinkId,
        p: QuorumPacket,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), String> {
        let was_serving = self.is_serving();
        let result = match &mut self.role {
            Role::Leading(l) => l.on_packet(now_ms, link, p, &mut self.r, out),
            Role::Following(l) | Role::Observing(l) => {
                l.on_packet(now_ms, link, p, &mut self.r, out)
            }
            Role::Looking { .. } => Ok(()),
        };
        if !was_serving && self.is_serving() {
            let info = self.quorum_info();
            self.r.zk.set_quorum_info(info);
        }
        result
    }

    /// Sends the pipeline's outputs on: appends to the log (and, leading, as proposals),
    /// forwarded requests to the leader, the rest to the client thread.
    fn drain_pipeline(&mut self, out: &mut Vec<PeerOutput>) {
        let outputs = std::mem::take(&mut self.r.scratch);
        for o in outputs {
            match o {
                Output::Append { entries } => {
                    if let Role::Leading(l) = &mut self.role {
                        l.propose(&entries, &self.r, out);
                    }
                    self.r.log(entries, out);
                }
                Output::Forward {
                    session,
                    cxid,
                    type_,
                    body,
                    auth,
                } => {
                    if let Role::Following(l) | Role::Observing(l) = &self.role {
                        let f = packets::Forwarded {
                            session,
                            cxid,
                            type_,
                            body,
                            auth,
                        };
                        out.push(PeerOutput::Send {
                            link: l.link,
                            packet: packets::request(&f),
                        });
                    }
                }
                Output::Revalidate {
                    session,
                    timeout_ms,
                } => {
                    if let Role::Following(l) | Role::Observing(l) = &self.role {
                        out.push(PeerOutput::Send {
                            link: l.link,
                            packet: packets::revalidate(session, timeout_ms),
                        });
                    }
                }
                other => out.push(PeerOutput::Server(other)),
            }
        }
    }
}

/// The ensemble settings of `config`.
pub fn peer_settings(config: &Config) -> Result<PeerSettings, String> {
    use crate::config::PeerType;
    let me = config.my_id.ok_or("no myid")? as Sid;
    let mut voters = Vec::new();
    let mut observers = Vec::new();
    let mut quorum_addrs = std::collections::BTreeMap::new();
    for (id, line) in &config.servers {
        let sid = *id as Sid;
        match line.peer_type {
            PeerType::Participant => voters.push(sid),
            PeerType::Observer => observers.push(sid),
        }
        let text = if line.host.contains(':') && !line.host.starts_with('[') {
            format!("[{}]:{}", line.host, line.quorum_port)
        } else {
            format!("{}:{}", line.host, line.quorum_port)
        };
        if let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(&text)
            .ok()
            .and_then(|mut a| a.next())
        {
            quorum_addrs.insert(sid, addr);
        }
    }
    let observer = observers.contains(&me);
    Ok(PeerSettings {
        me,
        tick_ms: config.tick_time_ms as i64,
        init_limit_ticks: config.init_limit_ticks as i64,
        sync_limit_ticks: config.sync_limit_ticks as i64,
        verifier: super::verifier::QuorumMaj::new(voters, observers),
        quorum_addrs,
        observer,
        read_only_enabled: config.read_only_mode_enabled,
        commit_log_count: crate::persistence::COMMIT_LOG_COUNT,
        jute_max_buffer_bytes: config.jute_max_buffer_bytes,
    })
}
