//! A follower or observer (ZooKeeper's `Learner`, `Follower`, `Observer`) as a sans-IO state
//! machine: it connects to the elected leader, registers (FOLLOWERINFO/OBSERVERINFO), accepts
//! the new epoch (LEADERINFO → ACKEPOCH), synchronizes (DIFF/TRUNC/SNAP, then NEWLEADER and
//! UPTODATE) and then logs, acknowledges and applies the leader's broadcast.
//!
//! Rules it keeps (spec/README.md, "Design choices"):
//! - acceptedEpoch is durable before ACKEPOCH, which carries the durable last logged zxid;
//! - a SNAP is held in memory and replaces the log only at NEWLEADER; TRUNC is durable at once;
//! - at NEWLEADER: the synced history (snapshot, queued proposals) is durable, then
//!   currentEpoch, and only then ACK(NEWLEADER), then ACKs for the proposals; when the
//!   history's last epoch is newer than currentEpoch, the `updatingEpoch` marker is made
//!   durable first, so a crash between the two writes leaves a loadable data directory;
//! - the sync point and the COMMITs seen during sync are applied only at UPTODATE;
//! - proposals are consecutive, COMMIT is for the next logged transaction; anything else is a
//!   protocol error that ends the role.

use super::buggify::Site;
use super::packets;
use super::replica::{
    DiskCommand, DiskDone, EpochKind, LinkId, PeerOutput, Replica, OUTBOUND_LINK_BIT,
};
use super::{epoch_of, Sid};
use crate::jute::quorum::{packet, QuorumPacket};
use crate::jute::txn::TxnEntry;
use crate::server::Mode;
use crate::tree::DataTree;
use log::{info, warn};

/// A SNAP's tree, its sessions and the file bytes, until NEWLEADER makes them durable.
type HeldSnapshot = (DataTree, Vec<(i64, i32)>, bytes::Bytes);

/// Connection attempts to the leader before going back to the election (ZooKeeper: 5).
pub const CONNECT_ATTEMPTS_MAX: u32 = 5;

/// Proposals a learner holds in memory during a sync; a leader sending more is broken.
pub const SYNC_QUEUE_MAX: usize = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    /// FOLLOWERINFO sent.
    AwaitLeaderInfo,
    /// acceptedEpoch being written, or the log not yet durable up to its last zxid.
    AwaitAckEpoch,
    /// ACKEPOCH sent; DIFF/TRUNC/SNAP and the sync's proposals arrive.
    Syncing,
    /// NEWLEADER seen: the synced history and currentEpoch are being made durable.
    NewLeaderPersisting,
    /// ACK(NEWLEADER) sent; waiting for UPTODATE.
    AwaitUpToDate,
    Broadcast,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncMode {
    None,
    Diff,
    Trunc,
    Snap,
}

/// Why a learner gives up its role (back to the election).
pub type Leave = String;

pub struct Learner {
    pub leader: Sid,
    pub observer: bool,
    pub link: LinkId,
    pub phase: Phase,
    attempts: u32,
    retry_at_ms: Option<i64>,
    /// The leader is presumed dead when nothing arrives by then.
    deadline_ms: i64,
    new_epoch: i64,
    mode: SyncMode,
    /// A SNAP's tree, sessions and file bytes, held until NEWLEADER.
    snapshot: Option<HeldSnapshot>,
    /// Proposals received during the sync, logged at NEWLEADER.
    queued: Vec<TxnEntry>,
    /// Everything up to here is committed (sync point and COMMITs seen before UPTODATE).
    committed_through: i64,
    /// ACKs for logged proposals may go out (after ACK(NEWLEADER)).
    can_ack: bool,
    acked_through: i64,
    /// The zxid of the NEWLEADER being acknowledged.
    new_leader_zxid: i64,
    /// A TRUNC below the applied tree: a reload from disk is on its way.
    awaiting_reload: bool,
    /// The last zxid logged before NEWLEADER's currentEpoch write: durable once it is done.
    epoch_barrier: i64,
    /// acceptedEpoch is being written for LEADERINFO: ACKEPOCH waits for it.
    accepted_write_pending: bool,
    /// The ACKEPOCH answer: our currentEpoch when we accepted the new epoch now, or -1 when
    /// it was accepted before (that answer does not count).
    ack_epoch_counts: bool,
    /// NEWLEADER seen while a truncation's reload is still on its way.
    deferred_new_leader: Option<i64>,
}

impl Learner {
    pub fn new(leader: Sid, observer: bool, link: LinkId) -> Learner {
        assert!(link & OUTBOUND_LINK_BIT != 0, "learners connect out");
        Learner {
            leader,
            observer,
            link,
            phase: Phase::Connecting,
            attempts: 0,
            retry_at_ms: None,
            deadline_ms: i64::MAX,
            new_epoch: -1,
            mode: SyncMode::None,
            snapshot: None,
            queued: Vec::new(),
            committed_through: i64::MIN,
            can_ack: false,
            acked_through: i64::MIN,
            new_leader_zxid: 0,
            awaiting_reload: false,
            epoch_barrier: i64::MIN,
            accepted_write_pending: false,
            ack_epoch_counts: false,
            deferred_new_leader: None,
        }
    }

    /// A truncation this learner asked for is reloading the tree.
    pub fn awaiting_reload(&self) -> bool {
        self.awaiting_reload
    }

    /// `Learner.connectToLeader`: the first attempt.
    pub fn start(
        &mut self,
        now_ms: i64,
        r: &Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        self.connect(now_ms, r, out)
    }

    fn connect(
        &mut self,
        now_ms: i64,
        r: &Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        let Some(&addr) = r.settings.quorum_addrs.get(&self.leader) else {
            return Err(format!("leader {} has no quorum address", self.leader));
        };
        self.attempts += 1;
        self.retry_at_ms = None;
        // A connect and registration must finish within initLimit.
        self.deadline_ms = now_ms + r.settings.init_limit_ms().max(1000);
        out.push(PeerOutput::Connect {
            link: self.link,
            addr,
        });
        Ok(())
    }

    /// The next time `on_tick` has work: the retry, when one waits (the deadline is set anew
    /// when it connects).
    pub fn next_tick_ms(&self) -> i64 {
        self.retry_at_ms.unwrap_or(self.deadline_ms)
    }

    pub fn on_tick(
        &mut self,
        now_ms: i64,
        r: &Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        if let Some(at) = self.retry_at_ms {
            if now_ms >= at {
                return self.connect(now_ms, r, out);
            }
            return Ok(());
        }
        if now_ms >= self.deadline_ms {
            return Err(format!(
                "no word from leader {} in phase {:?}",
                self.leader, self.phase
            ));
        }
        Ok(())
    }

    pub fn on_link_up(
        &mut self,
        now_ms: i64,
        link: LinkId,
        r: &Replica,
        out: &mut Vec<PeerOutput>,
    ) {
        if link != self.link || self.phase != Phase::Connecting {
            return;
        }
        let info = packets::learner_info(self.observer, r.me(), r.accepted_epoch_promised);
        self.send(info, out);
        self.phase = Phase::AwaitLeaderInfo;
        self.deadline_ms = now_ms + r.settings.init_limit_ms();
    }

    pub fn on_link_closed(&mut self, now_ms: i64, link: LinkId, r: &Replica) -> Result<(), Leave> {
        if link != self.link {
            return Ok(());
        }
        let registering = matches!(self.phase, Phase::Connecting | Phase::AwaitLeaderInfo);
        if registering && self.attempts < CONNECT_ATTEMPTS_MAX {
            // The leader may not listen yet (it finishes its election a little later): retry
            // on a fresh link, as ZooKeeper retries once a second.
            self.retry_at_ms = Some(now_ms + r.settings.tick_ms.clamp(100, 1000));
            self.phase = Phase::Connecting;
            self.link += 1;
            return Ok(());
        }
        Err(format!("connection to leader {} closed", self.leader))
    }

    fn send(&self, packet: QuorumPacket, out: &mut Vec<PeerOutput>) {
        out.push(PeerOutput::Send {
            link: self.link,
            packet,
        });
    }

    /// A packet from the leader.
    pub fn on_packet(
        &mut self,
        now_ms: i64,
        link: LinkId,
        p: QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        if link != self.link {
            return Ok(());
        }
        self.deadline_ms = now_ms
            + if self.phase == Phase::Broadcast {
                r.settings.sync_limit_ms()
            } else {
                r.settings.init_limit_ms()
            };
        match (self.phase, p.type_) {
            (Phase::AwaitLeaderInfo, packet::LEADERINFO) => self.on_leader_info(&p, r, out),
            (Phase::Syncing, packet::DIFF) if self.mode == SyncMode::None => {
                self.on_diff(p.zxid, r)
            }
            (Phase::Syncing, packet::TRUNC) if self.mode == SyncMode::None => {
                self.on_trunc(p.zxid, r, out)
            }
            (Phase::Syncing, packet::SNAP) if self.mode == SyncMode::None => self.on_snap(&p, r),
            (Phase::Syncing, packet::PROPOSAL) if self.mode != SyncMode::None => {
                self.on_sync_proposal(&p, r)
            }
            (
                Phase::Syncing | Phase::NewLeaderPersisting | Phase::AwaitUpToDate,
                packet::COMMIT,
            ) if self.mode != SyncMode::None => self.on_sync_commit(p.zxid, r),
            (Phase::Syncing, packet::NEWLEADER) if self.mode != SyncMode::None => {
                self.on_new_leader(now_ms, p.zxid, r, out)
            }
            (
                Phase::NewLeaderPersisting | Phase::AwaitUpToDate | Phase::Broadcast,
                packet::PROPOSAL,
            ) if !self.observer => self.on_proposal(&p, r, out),
            (Phase::AwaitUpToDate, packet::UPTODATE) => {
                self.on_uptodate(now_ms, r);
                Ok(())
            }
            (Phase::Broadcast, packet::COMMIT) if !self.observer => {
                self.on_commit(now_ms, p.zxid, r)
            }
            (
                Phase::NewLeaderPersisting | Phase::AwaitUpToDate | Phase::Broadcast,
                packet::INFORM,
            ) if self.observer => self.on_inform(now_ms, &p, r, out),
            (_, packet::PING) if self.phase != Phase::Connecting => {
                // ACKs a buggified send_acks held back go now at the latest.
                self.send_acks(r, out);
                let touches = r.zk.take_touches();
                self.send(packets::ping_reply(p.zxid, &touches), out);
                Ok(())
            }
            (Phase::Broadcast, packet::SYNC) => {
                r.zk.on_synced(now_ms, &mut r.scratch);
                Ok(())
            }
            (Phase::Broadcast, packet::REVALIDATE) => {
                let (session, valid) =
                    packets::parse_revalidate_answer(&p).map_err(|e| e.to_string())?;
                r.zk.on_revalidated(now_ms, session, valid, &mut r.scratch);
                Ok(())
            }
            (phase, type_) => Err(format!(
                "unexpected packet type {type_} (zxid 0x{:x}) from the leader in phase {phase:?}",
                p.zxid
            )),
        }
    }

    /// `Learner.registerWithLeader`, second half: accept the new epoch.
    fn on_leader_info(
        &mut self,
        p: &QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        let epoch = packets::check_leader_info(p).map_err(|e| e.to_string())?;
        if epoch < r.accepted_epoch_promised {
            return Err(format!(
                "leader's epoch {epoch} is below our accepted epoch {}",
                r.accepted_epoch_promised
            ));
        }
        self.new_epoch = epoch;
        self.phase = Phase::AwaitAckEpoch;
        // Already accepted: answer -1 (it does not count towards the leader's quorum).
        self.ack_epoch_counts = epoch > r.accepted_epoch_promised;
        if self.ack_epoch_counts {
            // ACKEPOCH goes when the write is done (on_disk_done).
            self.accepted_write_pending = true;
            r.persist_epoch(EpochKind::Accepted, epoch, out);
            return Ok(());
        }
        self.maybe_ack_epoch(r, out);
        Ok(())
    }

    /// ACKEPOCH carries the durable last logged zxid and follows the durable acceptedEpoch.
    fn maybe_ack_epoch(&mut self, r: &Replica, out: &mut Vec<PeerOutput>) {
        if self.phase != Phase::AwaitAckEpoch
            || self.accepted_write_pending
            || r.reloads_pending > 0
            || r.durable < r.last_logged
        {
            return;
        }
        let current = self.ack_epoch_counts.then_some(r.current_epoch);
        self.send(packets::ack_epoch(r.last_logged, current), out);
        self.phase = Phase::Syncing;
    }

    fn on_diff(&mut self, zxid: i64, r: &mut Replica) -> Result<(), Leave> {
        info!("Getting a diff from the leader 0x{zxid:x}");
        self.mode = SyncMode::Diff;
        // The whole log is the sync point: it is a prefix of the leader's history.
        self.committed_through = r.last_logged;
        Ok(())
    }

    fn on_trunc(
        &mut self,
        zxid: i64,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        warn!("Truncating log to get in sync with the leader 0x{zxid:x}");
        if cfg!(feature = "bug-skip-trunc") {
            return self.on_diff(zxid, r); // negative control (Cargo.toml): keep the log
        }
        self.mode = SyncMode::Trunc;
        let reload = zxid < r.zk.tree().last_processed_zxid();
        r.tail.retain(|e| e.header.zxid <= zxid);
        r.last_logged = if reload {
            // Settled when the reloaded tree arrives.
            zxid
        } else {
            r.tail
                .back()
                .map_or(r.zk.tree().last_processed_zxid(), |e| e.header.zxid)
        };
        r.durable = r.durable.min(r.last_logged);
        self.awaiting_reload = reload;
        if reload {
            r.reloads_pending += 1;
        }
        out.push(PeerOutput::Disk(DiskCommand::Truncate { zxid, reload }));
        self.committed_through = r.last_logged;
        Ok(())
    }

    fn on_snap(&mut self, p: &QuorumPacket, r: &mut Replica) -> Result<(), Leave> {
        info!("Getting a snapshot from leader 0x{:x}", p.zxid);
        let bytes = p.data.clone().unwrap_or_default();
        let (tree, sessions) = crate::persistence::restore_snapshot_bytes(
            &bytes,
            r.settings.jute_max_buffer_bytes,
            r.zk.tree().extended_types(),
        )
        .map_err(|e| format!("bad snapshot from the leader: {e}"))?;
        self.mode = SyncMode::Snap;
        self.committed_through = tree.last_processed_zxid();
        self.snapshot = Some((tree, sessions, bytes));
        Ok(())
    }

    fn on_sync_proposal(&mut self, p: &QuorumPacket, r: &Replica) -> Result<(), Leave> {
        let entry = packets::parse_txn(p).map_err(|e| e.to_string())?;
        if self.queued.len() >= SYNC_QUEUE_MAX {
            return Err("too many proposals in one sync".to_owned());
        }
        let last = match self.queued.last() {
            Some(last) => last.header.zxid,
            None => self.sync_last_zxid_before_queue(r),
        };
        check_consecutive(last, entry.header.zxid)?;
        self.queued.push(entry);
        Ok(())
    }

    /// A COMMIT during the sync marks the next queued proposal committed.
    fn on_sync_commit(&mut self, zxid: i64, r: &Replica) -> Result<(), Leave> {
        let next = if self.phase == Phase::Syncing {
            self.queued
                .iter()
                .map(|e| e.header.zxid)
                .find(|&z| z > self.committed_through)
        } else {
            r.tail
                .iter()
                .map(|e| e.header.zxid)
                .find(|&z| z > self.committed_through)
        };
        if next != Some(zxid) {
            return Err(format!(
                "COMMIT 0x{zxid:x} during sync is not for the next proposal ({next:x?})"
            ));
        }
        self.committed_through = zxid;
        Ok(())
    }

    /// NEWLEADER: make the synced history durable, then currentEpoch; ACK when both are done.
    fn on_new_leader(
        &mut self,
        now_ms: i64,
        zxid: i64,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        if epoch_of(zxid) != self.new_epoch {
            return Err(format!(
                "NEWLEADER 0x{zxid:x} is not of epoch {}",
                self.new_epoch
            ));
        }
        if self.awaiting_reload {
            // The reload from disk is on its way (DiskDone::Truncated): continue from there.
            self.deferred_new_leader = Some(zxid);
            return Ok(());
        }
        let base = self.sync_last_zxid_before_queue(r);
        if let Some(first) = self.queued.first() {
            if first.header.zxid <= base {
                return Err(format!(
                    "sync proposal 0x{:x} does not follow the sync point 0x{base:x}",
                    first.header.zxid
                ));
            }
        }
        let synced_last = self.queued.last().map_or(base, |e| e.header.zxid);
        if epoch_of(synced_last) > r.current_epoch {
            // The log is about to hold an epoch newer than currentEpoch: the marker lets a
            // restart after a crash before the currentEpoch write load it.
            out.push(PeerOutput::Disk(DiskCommand::MarkUpdatingEpoch));
        }
        if let Some((tree, sessions, bytes)) = self.snapshot.take() {
            let zxid = tree.last_processed_zxid();
            out.push(PeerOutput::Disk(DiskCommand::InstallSnapshot {
                zxid,
                bytes,
            }));
            r.zk.install_tree(tree, &sessions, now_ms);
            r.tail.clear();
            r.last_logged = r.zk.tree().last_processed_zxid();
            r.durable = r.last_logged;
        }
        // ACKs after ACK(NEWLEADER) cover the proposals of this sync, not an older tail.
        self.acked_through = r.last_logged;
        let queued = std::mem::take(&mut self.queued);
        r.tail.extend(queued.iter().cloned());
        r.log(queued, out);
        self.epoch_barrier = r.last_logged;
        r.persist_epoch(EpochKind::Current, self.new_epoch, out);
        self.new_leader_zxid = zxid;
        self.phase = Phase::NewLeaderPersisting;
        Ok(())
    }

    fn sync_last_zxid_before_queue(&self, r: &Replica) -> i64 {
        match &self.snapshot {
            Some((tree, _, _)) => tree.last_processed_zxid(),
            None => r.last_logged,
        }
    }

    /// A proposal after NEWLEADER: log it; its ACK goes once it is durable.
    fn on_proposal(
        &mut self,
        p: &QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        let entry = packets::parse_txn(p).map_err(|e| e.to_string())?;
        check_consecutive(r.last_logged, entry.header.zxid)?;
        log::debug!("PROPOSAL 0x{:x} logged", entry.header.zxid);
        r.tail.push_back(entry.clone());
        r.log(vec![entry], out);
        if cfg!(feature = "bug-ack-before-fsync") {
            self.send_acks(r, out); // negative control (Cargo.toml): ACK before the fsync
        }
        Ok(())
    }

    /// A COMMIT in broadcast: strictly the next logged transaction.
    fn on_commit(&mut self, now_ms: i64, zxid: i64, r: &mut Replica) -> Result<(), Leave> {
        match r.tail.front() {
            Some(e) if e.header.zxid == zxid => {
                r.apply_tail_through(now_ms, zxid);
                Ok(())
            }
            other => Err(format!(
                "COMMIT 0x{zxid:x} is not for the next logged transaction {:x?}",
                other.map(|e| e.header.zxid)
            )),
        }
    }

    /// An observer's INFORM: a committed transaction to log and apply.
    fn on_inform(
        &mut self,
        now_ms: i64,
        p: &QuorumPacket,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        let entry = packets::parse_txn(p).map_err(|e| e.to_string())?;
        check_consecutive(r.last_logged, entry.header.zxid)?;
        let zxid = entry.header.zxid;
        r.tail.push_back(entry.clone());
        r.log(vec![entry], out);
        if self.phase == Phase::Broadcast {
            r.apply_tail_through(now_ms, zxid);
        } else {
            self.committed_through = zxid;
        }
        Ok(())
    }

    /// UPTODATE: apply everything committed so far and start serving.
    fn on_uptodate(&mut self, now_ms: i64, r: &mut Replica) {
        r.apply_tail_through(now_ms, self.committed_through);
        r.zk.set_mode(Mode::Learner, now_ms);
        self.phase = Phase::Broadcast;
        info!(
            "synced with leader {} in epoch {}: serving at 0x{:x}",
            self.leader,
            self.new_epoch,
            r.zk.tree().last_processed_zxid()
        );
    }

    /// The log is durable up to `r.durable`: ACK what may be acknowledged.
    pub fn on_persisted(&mut self, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        self.maybe_ack_epoch(r, out);
        self.send_acks(r, out);
    }

    fn send_acks(&mut self, r: &mut Replica, out: &mut Vec<PeerOutput>) {
        if !self.can_ack || self.observer {
            return;
        }
        let durable = if cfg!(feature = "bug-ack-before-fsync") {
            r.last_logged
        } else {
            r.durable
        };
        let acked = self.acked_through;
        let zxids: Vec<i64> = r
            .tail
            .iter()
            .map(|e| e.header.zxid)
            .filter(|&z| z > acked && z <= durable)
            .collect();
        for z in zxids {
            log::debug!("ACK 0x{z:x}");
            self.send(packets::bare(packet::ACK, z), out);
            self.acked_through = z;
            if r.buggify.fire(Site::SplitAcks) {
                // Late ACKs are legal: the rest go at the next fsync or PING.
                break;
            }
        }
    }

    pub fn on_disk_done(
        &mut self,
        done: DiskDone,
        now_ms: i64,
        r: &mut Replica,
        out: &mut Vec<PeerOutput>,
    ) -> Result<(), Leave> {
        match done {
            DiskDone::EpochWritten {
                which: EpochKind::Accepted,
                epoch,
            } if epoch == self.new_epoch && self.accepted_write_pending => {
                self.accepted_write_pending = false;
                self.maybe_ack_epoch(r, out);
            }
            DiskDone::EpochWritten {
                which: EpochKind::Current,
                epoch,
            } if self.phase == Phase::NewLeaderPersisting && epoch == self.new_epoch => {
                // Everything logged before the epoch write is durable too.
                r.durable = r.durable.max(self.epoch_barrier);
                self.send(packets::bare(packet::ACK, self.new_leader_zxid), out);
                self.phase = Phase::AwaitUpToDate;
                self.can_ack = true;
                self.send_acks(r, out);
            }
            DiskDone::Truncated { restored, .. } => {
                if let Some(restored) = restored {
                    r.zk.install_tree(restored.tree, &restored.sessions, now_ms);
                    let reloaded = r.zk.tree().last_processed_zxid();
                    // Proposals logged after the truncation (a later sync) stay logged.
                    r.last_logged = r
                        .tail
                        .back()
                        .map_or(reloaded, |e| e.header.zxid.max(reloaded));
                    r.durable = reloaded;
                    if self.mode == SyncMode::Trunc {
                        // COMMITs read while the reload was on its way (seed 2530) stay seen:
                        // only an earlier sync point moves up to the reloaded tree.
                        self.committed_through = self.committed_through.max(reloaded);
                    }
                }
                self.awaiting_reload = false;
                if let Some(zxid) = self.deferred_new_leader.take() {
                    self.on_new_leader(now_ms, zxid, r, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Proposals of one epoch are numbered consecutively; a new epoch starts at counter 1.
fn check_consecutive(last: i64, next: i64) -> Result<(), Leave> {
    let ok = if epoch_of(next) == epoch_of(last) {
        next == last + 1
    } else {
        epoch_of(next) > epoch_of(last) && next & 0xffff_ffff == 1
    };
    if ok {
        Ok(())
    } else {
        Err(format!("proposal 0x{next:x} does not follow 0x{last:x}"))
    }
}
