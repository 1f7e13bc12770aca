//! The leader (ZooKeeper's `Leader` and its `LearnerHandler`s) as a sans-IO state machine.
//!
//! Discovery: learners register (FOLLOWERINFO/OBSERVERINFO with their acceptedEpoch); once a
//! quorum of voters (the leader included) has, the new epoch is max(acceptedEpoch) + 1, made
//! durable as acceptedEpoch before any LEADERINFO. A quorum of ACKEPOCHs (answers of -1 do not
//! count) makes it the current epoch, durably. Synchronization: each learner gets DIFF, TRUNC
//! or SNAP ([`sync_decision`](super::sync_decision)), the committed transactions after its
//! position, the outstanding proposals, and NEWLEADER, all queued at once; from then on it is
//! forwarded every proposal. A quorum of ACK(NEWLEADER) establishes the leader: UPTODATE to
//! the learners whose current connection acknowledged. Broadcast: a proposal commits when a
//! quorum has logged it (the leader's own ACK is its own durable log), strictly in zxid order.
//!
//! ACKs belong to a connection: when a learner's link closes, its ACKs of outstanding
//! proposals are forgotten (spec: KeepAcksAcrossReconnect).

use super::buggify::Site;
use super::packets;
use super::replica::{more_recent, EpochKind, LinkId, PeerOutput, Replica};
use super::sync_decision::{decide, SyncOp, SyncPlan};
use super::{epoch_of, Sid};
use crate::jute::proto::op;
use crate::jute::quorum::{packet, QuorumPacket};
use crate::jute::txn::TxnEntry;
use crate::server::Mode;
use log::{info, warn};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Learner links a leader accepts (voters and observers; a few extra for reconnects).
pub const LEARNERS_MAX: usize = 1024;

/// Forwarded syncs waiting for a commit, per leader.
pub const PENDING_SYNCS_MAX: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HandlerState {
    /// Connected; FOLLOWERINFO not yet seen.
    AwaitInfo,
    /// LEADERINFO sent (or waiting for the epoch), ACKEPOCH not yet seen.
    AwaitAckEpoch,
    /// ACKEPOCH seen; synced when the epoch is current.
    AwaitSync { last_zxid: i64 },
    /// Sync queued, in the forwarding set; ACK(NEWLEADER) not yet seen.
    Synced,
    /// ACK(NEWLEADER) seen on this connection.
    NewLeaderAcked,
    /// UPTODATE sent.
    Broadcast,
}

/// ZooKeeper's `LearnerHandler`: one learner connection.
#[derive(Debug)]
struct LearnerHandler {
    sid: Option<Sid>,
    observer: bool,
    state: HandlerState,
    /// Nothing heard by then: the learner is not synced (and dropped).
    deadline_ms: i64,
}

impl LearnerHandler {
    fn forwarding(&self) -> bool {
        matches!(
            self.state,
            HandlerState::Synced | HandlerState::NewLeaderAcked | HandlerState::Broadcast
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Collecting FOLLOWERINFOs to choose the epoch.
    Discovery,
    /// The epoch is chosen; acceptedEpoch being written.
    PersistingAccepted,
    /// LEADERINFO sent; collecting ACKEPOCHs.
    AwaitEpochAcks,
    /// A quorum acked the epoch; currentEpoch being written.
    PersistingCurrent,
    /// Learners syncing; waiting for a quorum of ACK(NEWLEADER).
    Synchronization,
    Broadcast,
}

/// Why a leader steps down.
pub type Leave = String;

pub struct Leader {
    pub phase: Phase,
    pub epoch: i64,
    learners: BTreeMap<LinkId, LearnerHandler>,
    /// acceptedEpoch of every registered server, this one included.
    connecting: BTreeMap<Sid, i64>,
    /// Voters whose ACKEPOCH counts.
    electing: BTreeSet<Sid>,
    /// Voters that acknowledged NEWLEADER (durable promises: they count after a disconnect).
    new_leader_acks: BTreeSet<Sid>,
    /// ACKs of outstanding proposals, by zxid.
    acks: BTreeMap<i64, BTreeSet<Sid>>,
    /// Learner syncs answered once this zxid commits.
    pending_syncs: VecDeque<(LinkId, i64)>,
    /// Establishment must happen by then (initLimit).
    establish_by_ms: i64,
    next_ping_ms: i64,
    started_ms: i64,
    /// The last committed zxid.
    last_committed: i64,
}

impl Leader {
    /// `Leader.lead`, first steps: everything this server logged is the starting history.
    pub fn start(now_ms: i64, r: &mut Replica) -> Leader {
        let tail_end = r.tail.back().map(|e| e.header.zxid);
        if let Some(end) = tail_end {
            r.apply_tail_through(now_ms, end);
        }
        let mut connecting = BTreeMap::new();
        connecting.insert(r.me(), r.accepted_epoch_promised);
        info!(
            "LEADING: accepted epoch {}, current epoch {}, last zxid 0x{:x}",
            r.accepted_epoch, r.current_epoch, r.last_logged
        );
        Leader {
            phase: Phase::Discovery,
            epoch: -1,
            learners: BTreeMap::new(),
            connecting,
            electing: BTreeSet::new(),
            new_leader_acks: BTreeSet::new(),
            acks: BTreeMap::new(),
            pending_syncs: VecDeque::new(),
            establish_by_ms: now_ms + r.settings.init_limit_ms(),
            next_ping_ms: now_ms + r.settings.tick_ms / 2,
            started_ms: now_ms,
            last_committed: r.zk.tree().last_processed_zxid(),
        }
    }

    pub fn is_established(&self) -> bool {
        self.phase == Phase::Broadcast
    }

    /// Learners in the forwarding set: (followers, observers) and how many are synced.
    pub fn learner_counts(&self) -> (usize, usize, usize) {
        let followers = self
            .learners
            .values()
            .filter(|h| !h.observer && h.sid.is_some())
            .count();
        let observers = self.learners.values().filter(|h| h.observer).count();
        let synced = self
            .learners
            .values()
            .filter(|h| !h.observer && h.state == HandlerState::Broadcast)
            .count();
        (followers, observers, synced)
    }

    pub fn pending_sync_count(&self) -> usize {
        self.learners
            .values()
            .filter(|h| {
                matches!(
                    h.state,
                    HandlerState::AwaitSync { .. }
                        | HandlerState::Synced
                        | HandlerState::NewLeaderAcked
                )
            })
            .count()
    }

    pub fn next_tick_ms(&self) -> i64 {
        let establish = if self.is_established() {
            i64::MAX
        } else {
            self.establish_by_ms
        };
        establish.min(self.next_ping_ms)
    }

    fn send(link: LinkId, packet: QuorumPacket, out: &mut Vec<PeerOutput>) {
        out.push(PeerOutput::Send { link, packet });
    }

    pub fn on_link_up(
        &mut self,
        now_ms: i64,
        link: LinkId,
        r: &Replica,
        out: &mut Vec<PeerOutput>,
    ) {
        if self.learners.len() >= LEARNERS_MAX {
            warn!("too many learner connections; refusing one");
            out.push(PeerOutput::CloseLink { link });
            return;
        }
        self.learners.insert(
            link,
            LearnerHandler {
                sid: None,
                observer: false,
                state: HandlerState::AwaitInfo,
                deadline_ms: now_ms + r.settings.init_limit_ms(),
            },
        );
    }

    /// A learner's connection is gone: its ACKs of outstanding proposals go with it.
    pub fn on_link_closed(&mut self, link: LinkId) {
        let Some(h) = self.learners.remove(&link) else {
            return;
        };
        if let Some(sid) = h.sid {
            if !self.learners.values().any(|o| o.sid == Some(sid)) {
                for acks in self.acks.values_mut() {
                    acks.remove(&sid);
                }
            }
            info!("learner {sid} disconnected");
        }
        self.pending_syncs.retain(|(l, _)| *l != link);
    }

    fn drop_learner(&mut self, link: LinkId, why: &str, out: &mut Vec<PeerOutput>) {
        warn!("closing learner link {link:x}: {why}");
        out.push(PeerOutput::CloseLink { link });
        self.on_link_closed(link);
    }

    pub fn on_packet(
        &mut self,
        now_ms: i64,
        link: LinkId,
        p: QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        let Some(h) = self.learners.get_mut(&link) else {
            return Ok(());
        };
        h.deadline_ms = now_ms
            + if h.state == HandlerState::Broadcast {
                r.settings.sync_limit_ms()
            } else {
                r.settings.init_limit_ms()
            };
        let state = h.state;
        let result = match (state, p.type_) {
            (HandlerState::AwaitInfo, packet::FOLLOWERINFO | packet::OBSERVERINFO) => {
                self.on_follower_info(link, &p, r, out)
            }
            (HandlerState::AwaitAckEpoch, packet::ACKEPOCH) => self.on_ack_epoch(link, &p, r, out),
            (_, packet::ACK) if state != HandlerState::AwaitInfo => {
                return self.on_ack(now_ms, link, p.zxid, r, out)
            }
            (_, packet::PING) if state != HandlerState::AwaitInfo => {
                match packets::parse_ping_touches(&p) {
                    Ok(touches) => {
                        for (session, timeout_ms) in touches {
                            r.zk.touch_session(session, timeout_ms, now_ms);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            (HandlerState::Broadcast, packet::REQUEST) => self.on_request(now_ms, link, &p, r, out),
            (HandlerState::Broadcast, packet::REVALIDATE) => match packets::parse_revalidate(&p) {
                Ok((session, timeout_ms)) => {
                    let owner = self.learners.get(&link).and_then(|h| h.sid).unwrap_or(-1);
                    let valid = r.zk.revalidate(session, timeout_ms, owner, now_ms);
                    Self::send(link, packets::revalidate_answer(session, valid), out);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            (state, type_) => Err(format!("unexpected packet type {type_} in state {state:?}")),
        };
        if let Err(why) = result {
            self.drop_learner(link, &why, out);
        }
        Ok(())
    }

    /// `LearnerHandler`: FOLLOWERINFO/OBSERVERINFO. Joins the epoch choice if it is open.
    fn on_follower_info(
        &mut self,
        link: LinkId,
        p: &QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), String> {
        let info = packets::parse_learner_info(p).map_err(|e| e.to_string())?;
        let sid = info.serverid;
        let observer = p.type_ == packet::OBSERVERINFO;
        let verifier = &r.settings.verifier;
        if !verifier.is_member(sid) || sid == r.me() || verifier.is_voter(sid) == observer {
            return Err(format!(
                "server {sid} is not a {} of this ensemble",
                if observer { "observer" } else { "voter" }
            ));
        }
        // A reconnecting learner replaces its older connection.
        let older: Vec<LinkId> = self
            .learners
            .iter()
            .filter(|(l, h)| **l != link && h.sid == Some(sid))
            .map(|(l, _)| *l)
            .collect();
        for l in older {
            self.drop_learner(l, "replaced by a newer connection", out);
        }
        let h = self.learners.get_mut(&link).expect("caller checked");
        h.sid = Some(sid);
        h.observer = observer;
        h.state = HandlerState::AwaitAckEpoch;
        let accepted = epoch_of(p.zxid);
        if self.phase == Phase::Discovery {
            self.connecting.insert(sid, accepted);
            self.maybe_choose_epoch(r, out);
        } else if matches!(self.phase, Phase::PersistingAccepted) {
            // LEADERINFO goes out when the epoch is durable.
        } else {
            Self::send(link, packets::leader_info(self.epoch), out);
        }
        Ok(())
    }

    /// A truncation of an earlier role finished reloading the tree: the epoch choice waited.
    pub fn on_reloaded(&mut self, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        self.last_committed = r.zk.tree().last_processed_zxid();
        if self.phase == Phase::Discovery {
            self.maybe_choose_epoch(r, out);
        }
    }

    /// `getEpochToPropose`: a quorum of voters registered.
    fn maybe_choose_epoch(&mut self, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        let voters: Vec<Sid> = self
            .connecting
            .keys()
            .copied()
            .filter(|s| r.settings.verifier.is_voter(*s))
            .collect();
        if !r.is_quorum(voters.iter()) || r.reloads_pending > 0 {
            return;
        }
        let max = self.connecting.values().copied().max().unwrap_or(0);
        self.epoch = max + 1;
        self.phase = Phase::PersistingAccepted;
        info!("new epoch {} (registered: {:?})", self.epoch, voters);
        r.persist_epoch(EpochKind::Accepted, self.epoch, out);
    }

    /// ACKEPOCH: counts towards the quorum unless it is -1; a learner more recent than the
    /// leader is refused while the epoch is not yet settled.
    fn on_ack_epoch(
        &mut self,
        link: LinkId,
        p: &QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), String> {
        let current = packets::parse_ack_epoch(p).map_err(|e| e.to_string())?;
        let h = self.learners.get_mut(&link).expect("caller checked");
        let sid = h.sid.expect("registered");
        let observer = h.observer;
        let settled = matches!(self.phase, Phase::Synchronization | Phase::Broadcast);
        if let Some(epoch) = current {
            if !settled && more_recent(epoch, p.zxid, r.current_epoch, r.last_logged) {
                return Err(format!(
                    "follower {sid} is ahead of the leader: epoch {epoch}, zxid 0x{:x}",
                    p.zxid
                ));
            }
        }
        h.state = HandlerState::AwaitSync { last_zxid: p.zxid };
        if current.is_some() && !observer {
            self.electing.insert(sid);
        }
        match self.phase {
            Phase::AwaitEpochAcks => self.maybe_epoch_quorum(r, out),
            Phase::Synchronization | Phase::Broadcast => self.sync_learner(link, r, out),
            _ => {}
        }
        Ok(())
    }

    fn maybe_epoch_quorum(&mut self, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        let mut electing = self.electing.clone();
        electing.insert(r.me());
        if !r.is_quorum(electing.iter()) {
            return;
        }
        self.phase = Phase::PersistingCurrent;
        r.persist_epoch(EpochKind::Current, self.epoch, out);
    }

    /// The epoch files are durable.
    pub fn on_epoch_written(
        &mut self,
        which: EpochKind,
        epoch: i64,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) {
        if epoch != self.epoch {
            return;
        }
        match (which, self.phase) {
            (EpochKind::Accepted, Phase::PersistingAccepted) => {
                self.phase = Phase::AwaitEpochAcks;
                let waiting: Vec<LinkId> = self
                    .learners
                    .iter()
                    .filter(|(_, h)| h.state == HandlerState::AwaitAckEpoch)
                    .map(|(l, _)| *l)
                    .collect();
                for link in waiting {
                    Self::send(link, packets::leader_info(self.epoch), out);
                }
                self.maybe_epoch_quorum(r, out);
            }
            (EpochKind::Current, Phase::PersistingCurrent) => {
                self.phase = Phase::Synchronization;
                self.new_leader_acks.insert(r.me());
                let waiting: Vec<LinkId> = self
                    .learners
                    .iter()
                    .filter(|(_, h)| matches!(h.state, HandlerState::AwaitSync { .. }))
                    .map(|(l, _)| *l)
                    .collect();
                for link in waiting {
                    self.sync_learner(link, r, out);
                }
                self.maybe_establish(r, out);
            }
            _ => {}
        }
    }

    /// The last processed zxid a learner syncs to (spec: LastProcessed).
    fn last_processed(&self, r: &Replica) -> i64 {
        let applied = r.zk.tree().last_processed_zxid();
        if self.is_established() && epoch_of(applied) < self.epoch {
            self.epoch << 32
        } else {
            applied
        }
    }

    /// `LearnerHandler.syncFollower` plus `startForwarding`: everything queued at once.
    fn sync_learner(&mut self, link: LinkId, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        let Some(h) = self.learners.get_mut(&link) else {
            return;
        };
        let HandlerState::AwaitSync { last_zxid: peer } = h.state else {
            return;
        };
        let observer = h.observer;
        let sid = h.sid.unwrap_or(-1);
        let window: Vec<i64> = r.zk.committed_log().iter().map(|e| e.header.zxid).collect();
        let lp = self.last_processed(r);
        let mut plan = decide(peer, lp, &window);
        if matches!(plan.op, SyncOp::Diff(_)) && r.buggify.fire(Site::SnapInsteadOfDiff) {
            // A DIFF means the learner's log is a prefix of ours: a SNAP is always legal too.
            plan = SyncPlan {
                op: SyncOp::Snap,
                from: window.len(),
                cur: lp,
            };
        }
        let mut packets_out = Vec::new();
        match plan.op {
            SyncOp::Diff(z) => {
                r.counters.diff += 1;
                packets_out.push(packets::bare(packet::DIFF, z));
            }
            SyncOp::Trunc(z) => {
                r.counters.trunc += 1;
                packets_out.push(packets::bare(packet::TRUNC, z));
            }
            SyncOp::Snap => {
                r.counters.snap += 1;
                let (zxid, bytes) = r.zk.snapshot_bytes();
                let mut p = packets::bare(packet::SNAP, zxid);
                p.data = Some(bytes::Bytes::from(bytes));
                packets_out.push(p);
            }
        }
        info!(
            "syncing learner {sid} (at 0x{peer:x}) by {:?}: leader at 0x{lp:x}",
            plan.op
        );
        for e in r.zk.committed_log().iter().skip(plan.from) {
            packets_out.push(packets::txn_packet(packet::PROPOSAL, e));
            packets_out.push(packets::bare(packet::COMMIT, e.header.zxid));
        }
        if !observer {
            for e in r.zk.pending_entries().filter(|e| e.header.zxid > plan.cur) {
                packets_out.push(packets::txn_packet(packet::PROPOSAL, e));
            }
        }
        packets_out.push(packets::bare(packet::NEWLEADER, self.epoch << 32));
        for p in packets_out {
            Self::send(link, p, out);
        }
        if let Some(h) = self.learners.get_mut(&link) {
            h.state = HandlerState::Synced;
        }
    }

    /// ACK: of NEWLEADER (counter 0) or of a proposal.
    fn on_ack(
        &mut self,
        now_ms: i64,
        link: LinkId,
        zxid: i64,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        let h = self.learners.get_mut(&link).expect("caller checked");
        let Some(sid) = h.sid else {
            return Ok(());
        };
        if zxid == self.epoch << 32 {
            if h.state == HandlerState::Synced {
                h.state = HandlerState::NewLeaderAcked;
                if !h.observer {
                    self.new_leader_acks.insert(sid);
                }
                if self.is_established() {
                    self.send_uptodate(link, r, out);
                } else {
                    self.maybe_establish(r, out);
                }
            }
            // Otherwise the ACK of UPTODATE, which ZooKeeper ignores too.
            return Ok(());
        }
        if h.observer || !h.forwarding() {
            return Ok(());
        }
        log::debug!("ACK 0x{zxid:x} from {sid} on link {link:x}");
        if let Some(acks) = self.acks.get_mut(&zxid) {
            acks.insert(sid);
            self.try_to_commit(now_ms, r, out);
        }
        Ok(())
    }

    fn send_uptodate(&mut self, link: LinkId, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        if let Some(h) = self.learners.get_mut(&link) {
            h.state = HandlerState::Broadcast;
            Self::send(link, packets::bare(packet::UPTODATE, -1), out);
            if r.buggify.fire(Site::CloseLinkAfterSync) {
                // A connection may break at any time; right after a sync is the rare one.
                self.drop_learner(link, "buggify: closed right after the sync", out);
            }
        }
    }

    /// A quorum acknowledged NEWLEADER: the leader's log is the committed history.
    fn maybe_establish(&mut self, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        if self.phase != Phase::Synchronization || !r.is_quorum(self.new_leader_acks.iter()) {
            return;
        }
        self.phase = Phase::Broadcast;
        let now_ms = r.now_ms;
        r.zk.set_mode(Mode::Leader, now_ms);
        r.zk.start_epoch(self.epoch);
        info!(
            "established in epoch {} with {:?}, {} ms after the election",
            self.epoch,
            self.new_leader_acks,
            now_ms - self.started_ms
        );
        let ready: Vec<LinkId> = self
            .learners
            .iter()
            .filter(|(_, h)| h.state == HandlerState::NewLeaderAcked)
            .map(|(l, _)| *l)
            .collect();
        for link in ready {
            self.send_uptodate(link, r, out);
        }
    }

    /// The pipeline prepared transactions: propose them to the followers.
    pub fn propose(&mut self, entries: &[TxnEntry], r: &Replica, out: &mut Vec<PeerOutput>) {
        let followers: Vec<LinkId> = self
            .learners
            .iter()
            .filter(|(_, h)| h.forwarding() && !h.observer)
            .map(|(l, _)| *l)
            .collect();
        for e in entries {
            let mut acks = BTreeSet::new();
            if r.durable >= e.header.zxid {
                acks.insert(r.me());
            }
            self.acks.insert(e.header.zxid, acks);
            let p = packets::txn_packet(packet::PROPOSAL, e);
            for &link in &followers {
                Self::send(link, p.clone(), out);
            }
        }
    }

    /// The leader's own log is durable up to `r.durable`: its own ACKs.
    pub fn on_persisted(&mut self, now_ms: i64, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        let me = r.me();
        for (_, acks) in self.acks.range_mut(..=r.durable) {
            acks.insert(me);
        }
        self.try_to_commit(now_ms, r, out);
    }

    /// `Leader.tryToCommit`: only the next outstanding proposal, once a quorum logged it.
    fn try_to_commit(&mut self, now_ms: i64, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        if !self.is_established() {
            return;
        }
        while let Some((&zxid, acks)) = self.acks.first_key_value() {
            // Negative control for the simulator's checkers (Cargo.toml): any one ACK commits.
            let bug = cfg!(feature = "bug-commit-on-first-ack") && !acks.is_empty();
            if !r.is_quorum(acks.iter()) && !bug {
                break;
            }
            log::debug!("committing 0x{zxid:x} with ACKs from {acks:?}");
            self.acks.remove(&zxid);
            let entry =
                r.zk.pending_entries()
                    .next()
                    .filter(|e| e.header.zxid == zxid)
                    .cloned();
            let Some(entry) = entry else {
                unreachable!(
                    "outstanding proposal 0x{zxid:x} is the pipeline's next pending entry"
                );
            };
            for (&link, h) in &self.learners {
                if !h.forwarding() {
                    continue;
                }
                if h.observer {
                    Self::send(link, packets::txn_packet(packet::INFORM, &entry), out);
                } else {
                    Self::send(link, packets::bare(packet::COMMIT, zxid), out);
                }
            }
            r.zk.commit_through(zxid, &mut r.scratch);
            self.last_committed = zxid;
            let _ = now_ms;
            while self.pending_syncs.front().is_some_and(|(_, z)| *z <= zxid) {
                let (link, _) = self.pending_syncs.pop_front().expect("front exists");
                Self::send(link, packets::bare(packet::SYNC, zxid), out);
            }
        }
    }

    /// REQUEST: a learner's client write (or sync).
    fn on_request(
        &mut self,
        now_ms: i64,
        link: LinkId,
        p: &QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), String> {
        let f = packets::parse_request(p).map_err(|e| e.to_string())?;
        if f.type_ == op::SYNC {
            // Answered once every proposal made so far is committed (Leader.processSync).
            match self.acks.last_key_value() {
                None => Self::send(link, packets::bare(packet::SYNC, self.last_committed), out),
                Some((&z, _)) => {
                    if self.pending_syncs.len() >= PENDING_SYNCS_MAX {
                        return Err("too many pending syncs".to_owned());
                    }
                    self.pending_syncs.push_back((link, z));
                }
            }
            return Ok(());
        }
        let owner = self.learners.get(&link).and_then(|h| h.sid).unwrap_or(-1);
        r.zk.submit_forwarded(
            now_ms,
            owner,
            f.session,
            f.cxid,
            f.type_,
            &f.body,
            &f.auth,
            &mut r.scratch,
        );
        Ok(())
    }

    /// Pings learners every half tick; steps down without a synced quorum.
    pub fn on_tick(
        &mut self,
        now_ms: i64,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        if !self.is_established() && now_ms >= self.establish_by_ms {
            return Err(format!(
                "no quorum within initLimit in phase {:?} (registered {:?}, epoch acks {:?}, NEWLEADER acks {:?})",
                self.phase,
                self.connecting.keys().collect::<Vec<_>>(),
                self.electing,
                self.new_leader_acks
            ));
        }
        if now_ms < self.next_ping_ms {
            return Ok(());
        }
        self.next_ping_ms = now_ms + (r.settings.tick_ms / 2).max(1);
        let expired: Vec<LinkId> = self
            .learners
            .iter()
            .filter(|(_, h)| h.deadline_ms <= now_ms)
            .map(|(l, _)| *l)
            .collect();
        for link in expired {
            self.drop_learner(link, "no answer within the sync limit", out);
        }
        for (&link, h) in &self.learners {
            if h.forwarding() {
                Self::send(link, packets::bare(packet::PING, self.last_committed), out);
            }
        }
        if self.is_established() {
            let mut synced: BTreeSet<Sid> = self
                .learners
                .values()
                .filter(|h| h.forwarding() && !h.observer)
                .filter_map(|h| h.sid)
                .collect();
            synced.insert(r.me());
            if !r.is_quorum(synced.iter()) {
                return Err(format!(
                    "Not sufficient followers synced, only synced with sids: {synced:?}"
                ));
            }
        }
        Ok(())
    }

    /// Uncommitted proposals when stepping down (they stay in the log).
    pub fn step_down(&mut self) {
        self.acks.clear();
        self.pending_syncs.clear();
    }
}
