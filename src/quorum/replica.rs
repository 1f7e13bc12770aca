//! What every role shares: the server's request pipeline and tree, its durable epochs, the
//! transactions it logged but has not applied, and the settings of the ensemble. The roles
//! ([`Leader`](super::leader::Leader), [`Learner`](super::learner::Learner)) borrow it.

use super::verifier::QuorumMaj;
use super::{epoch_of, Sid};
use crate::jute::quorum::QuorumPacket;
use crate::jute::txn::TxnEntry;
use crate::persistence::Restored;
use crate::server::{Output, ZooKeeperServer};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// A leader-learner connection, named by the quorum-link thread (inbound) or by the core
/// (outbound, with [`OUTBOUND_LINK_BIT`] set).
pub type LinkId = u64;

/// Marks link ids the core picked for its own connects.
pub const OUTBOUND_LINK_BIT: u64 = 1 << 62;

/// ZooKeeper's two epoch files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochKind {
    /// `acceptedEpoch`: the newest epoch this server promised to follow.
    Accepted,
    /// `currentEpoch`: the epoch whose history this server's log holds.
    Current,
}

/// Disk work besides appends, run by the sync thread in order with them.
#[derive(Debug)]
pub enum DiskCommand {
    /// Drop every logged transaction after `zxid` (TRUNC); with `reload`, answer with the
    /// tree restored from disk, because the applied tree holds truncated transactions.
    Truncate { zxid: i64, reload: bool },
    /// Replace the log with the leader's snapshot (SNAP), durably: the snapshot file's bytes.
    InstallSnapshot { zxid: i64, bytes: bytes::Bytes },
    /// Persist acceptedEpoch or currentEpoch; a written currentEpoch removes the
    /// `updatingEpoch` marker.
    WriteEpoch { which: EpochKind, epoch: i64 },
    /// Create the `updatingEpoch` marker, durably: a learner's NEWLEADER writes are about to
    /// move the log past currentEpoch's epoch, and a crash before the currentEpoch write must
    /// not leave a data directory that refuses to load.
    MarkUpdatingEpoch,
}

/// The sync thread's answer to a [`DiskCommand`]; every append queued before it is durable.
pub enum DiskDone {
    Truncated {
        zxid: i64,
        restored: Option<Box<Restored>>,
    },
    SnapshotInstalled {
        zxid: i64,
    },
    EpochWritten {
        which: EpochKind,
        epoch: i64,
    },
    UpdatingEpochMarked,
}

impl std::fmt::Debug for DiskDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskDone::Truncated { zxid, restored } => {
                write!(f, "Truncated(0x{zxid:x}, reloaded: {})", restored.is_some())
            }
            DiskDone::SnapshotInstalled { zxid } => write!(f, "SnapshotInstalled(0x{zxid:x})"),
            DiskDone::EpochWritten { which, epoch } => {
                write!(f, "EpochWritten({which:?}, {epoch})")
            }
            DiskDone::UpdatingEpochMarked => write!(f, "UpdatingEpochMarked"),
        }
    }
}

/// Everything the quorum core asks the outside world to do, in order.
#[derive(Debug)]
pub enum PeerOutput {
    /// For the client thread, or (Append, Snapshot) for the sync and snapshot threads.
    Server(Output),
    /// For the sync thread, ordered with the appends.
    Disk(DiskCommand),
    /// An election notification.
    Election {
        to: Sid,
        notification: crate::jute::quorum::Notification,
    },
    /// Close every quorum link (a leader stepping down).
    CloseAllLinks,
    /// Open a quorum link to a leader.
    Connect {
        link: LinkId,
        addr: SocketAddr,
    },
    Send {
        link: LinkId,
        packet: QuorumPacket,
    },
    CloseLink {
        link: LinkId,
    },
}

/// The ensemble's settings, from zoo.cfg.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    pub me: Sid,
    pub tick_ms: i64,
    pub init_limit_ticks: i64,
    pub sync_limit_ticks: i64,
    pub verifier: QuorumMaj,
    /// Quorum (leader-learner) port of every server.
    pub quorum_addrs: BTreeMap<Sid, SocketAddr>,
    pub observer: bool,
    pub read_only_enabled: bool,
    /// Transactions kept for DIFF syncs (ZooKeeper's commitLogCount).
    pub commit_log_count: usize,
    pub jute_max_buffer_bytes: usize,
}

impl PeerSettings {
    pub fn init_limit_ms(&self) -> i64 {
        self.tick_ms * self.init_limit_ticks
    }
    pub fn sync_limit_ms(&self) -> i64 {
        self.tick_ms * self.sync_limit_ticks
    }
}

/// A server's state that outlives roles.
pub struct Replica {
    pub settings: PeerSettings,
    pub zk: ZooKeeperServer,
    /// The durable epochs: updated only when the sync thread reports a write done, so no
    /// message or vote ever carries an epoch a crash could take back.
    pub accepted_epoch: i64,
    pub current_epoch: i64,
    /// The highest acceptedEpoch written or being written. A new epoch is judged against it,
    /// not the durable one, so a write never lands behind a higher one still pending (seed
    /// 977); it only ever bounds a leader's choice from below, so a crash taking it back is
    /// harmless.
    pub accepted_epoch_promised: i64,
    /// Logged but not applied (a learner's proposals awaiting COMMIT), in zxid order.
    pub tail: VecDeque<TxnEntry>,
    /// The highest zxid handed to the log.
    pub last_logged: i64,
    /// The highest zxid the sync thread reported durable.
    pub durable: i64,
    /// Scratch for the pipeline's outputs.
    pub scratch: Vec<Output>,
    pub counters: SyncCounters,
    /// The time of the input being processed.
    pub now_ms: i64,
    /// Truncations whose reloaded tree has not arrived yet: until then the tree is stale, so
    /// no ACKEPOCH is sent and no epoch is chosen.
    pub reloads_pending: u32,
    /// The simulator's fault sites; off in production.
    pub buggify: super::buggify::Buggify,
}

/// A leader's learner-sync counters (mntr's zk_diff_count, zk_snap_count and zabd's
/// zk_trunc_count).
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncCounters {
    pub diff: u64,
    pub snap: u64,
    pub trunc: u64,
}

impl Replica {
    pub fn me(&self) -> Sid {
        self.settings.me
    }

    /// The zxid elections and ACKEPOCH report: the last transaction in the log.
    pub fn last_logged_zxid(&self) -> i64 {
        self.last_logged
    }

    pub fn is_quorum<'a>(&self, sids: impl IntoIterator<Item = &'a Sid>) -> bool {
        self.settings.verifier.contains_quorum(sids)
    }

    /// Appends transactions to the log (through the sync thread), in order.
    pub fn log(&mut self, entries: Vec<TxnEntry>, out: &mut Vec<PeerOutput>) {
        if let Some(last) = entries.last() {
            self.last_logged = self.last_logged.max(last.header.zxid);
        }
        if !entries.is_empty() {
            out.push(PeerOutput::Server(Output::Append { entries }));
        }
    }

    /// Applies every tail entry up to `zxid` (they are committed).
    pub fn apply_tail_through(&mut self, now_ms: i64, zxid: i64) {
        while self.tail.front().is_some_and(|e| e.header.zxid <= zxid) {
            let entry = self.tail.pop_front().expect("front exists");
            if entry.header.zxid <= self.zk.tree().last_processed_zxid() {
                continue;
            }
            self.zk.apply_committed(now_ms, entry, &mut self.scratch);
        }
    }

    pub fn persist_epoch(&mut self, which: EpochKind, epoch: i64, out: &mut Vec<PeerOutput>) {
        if which == EpochKind::Accepted {
            debug_assert!(
                epoch >= self.accepted_epoch_promised,
                "acceptedEpoch goes back"
            );
            self.accepted_epoch_promised = self.accepted_epoch_promised.max(epoch);
        }
        out.push(PeerOutput::Disk(DiskCommand::WriteEpoch { which, epoch }));
    }

    pub fn epoch_of_last_logged(&self) -> i64 {
        epoch_of(self.last_logged)
    }
}

/// `currentEpoch, lastZxid` ordering (ZooKeeper's StateSummary.isMoreRecentThan).
pub fn more_recent(a_epoch: i64, a_zxid: i64, b_epoch: i64, b_zxid: i64) -> bool {
    a_epoch > b_epoch || (a_epoch == b_epoch && a_zxid > b_zxid)
}
