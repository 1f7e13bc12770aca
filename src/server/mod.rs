//! The core: ZooKeeper's request pipeline (PrepRequestProcessor → SyncRequestProcessor →
//! FinalRequestProcessor) as one sans-IO state machine, [`ZooKeeperServer`].
//!
//! It consumes [`Input`]s (decoded requests, connection events, the sync thread's persisted
//! notices) and emits [`Output`]s (replies, watch events, log appends, closes). It owns no
//! socket, file, thread, clock or random source: time comes in as milliseconds with every call,
//! so the same code runs under the I/O threads and under a deterministic simulator.
//!
//! Ordering invariants:
//! - Writes get zxids in arrival order and are applied in zxid order, each only after the sync
//!   thread reported it durable (`Input::Persisted`): nothing is acknowledged before it is on disk.
//! - Each session's replies leave in request order. A read waits behind its own session's
//!   pending writes (ZooKeeper's CommitProcessor), never behind other sessions'.
//! - Watch events are emitted when the transaction that fires them is applied, before any reply
//!   computed afterwards, so a client sees the event before any read that shows the change.

mod final_request;
pub mod four_letter;
mod pipeline;
mod prep;
pub mod stats;
#[cfg(test)]
mod tests;

pub use pipeline::ZooKeeperServer;

use crate::jute::proto::{ConnectRequest, ConnectResponse, ReplyHeader, Request, Response};
use crate::jute::txn::TxnEntry;
use crate::jute::DecodeError;
use crate::persistence::SnapshotData;
use std::net::SocketAddr;

/// A client connection, as the I/O thread names it. Never reused while the core may still
/// refer to it (the I/O thread puts a generation in the high bits).
pub type CnxnId = u64;

/// A session id (`clientId` in transaction headers).
pub type SessionId = i64;

/// Everything the outside world tells the core.
#[derive(Debug)]
pub enum Input {
    /// A client connection was accepted from `peer`.
    Accepted { cnxn: CnxnId, peer: SocketAddr },
    /// The connection's first frame: the handshake.
    Connect { cnxn: CnxnId, req: ConnectRequest },
    /// A request on a connection whose handshake was answered.
    Request {
        cnxn: CnxnId,
        xid: i32,
        req: Request,
    },
    /// A well-framed request that did not decode (unknown opcode, malformed body).
    BadRequest {
        cnxn: CnxnId,
        xid: i32,
        op: i32,
        error: DecodeError,
    },
    /// A four-letter word sent as the connection's first bytes. `disk` is filled in by the
    /// core thread for the words that report directory sizes (`dirs`, `conf`).
    FourLetter {
        cnxn: CnxnId,
        word: [u8; 4],
        disk: Option<DiskUsage>,
    },
    /// The connection closed (by the peer, an I/O error, or a close the core asked for).
    Closed { cnxn: CnxnId },
    /// Every transaction up to and including `zxid` is durable; `sync` are the log's
    /// cumulative counters at that moment (for mntr).
    Persisted { zxid: i64, sync: SyncCounters },
}

/// Bytes used by the snapshot and log directories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub data_dir_bytes: u64,
    pub log_dir_bytes: u64,
}

/// The write-ahead log's cumulative counters: fsyncs and transactions per fsync (group commit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncCounters {
    pub syncs: u64,
    pub txns: u64,
    pub fsync_us_sum: u64,
    pub fsync_us_min: u64,
    pub fsync_us_max: u64,
    pub batch_txns_min: u64,
    pub batch_txns_max: u64,
}

/// Everything the core asks the outside world to do, in the order it must happen.
#[derive(Debug)]
pub enum Output {
    /// The handshake's answer. With `close`, the session was refused: write it, then close.
    Connected {
        cnxn: CnxnId,
        resp: ConnectResponse,
        close: bool,
    },
    /// A reply (xid >= 0 or a special xid) or a watch event (xid -1).
    Reply {
        cnxn: CnxnId,
        header: ReplyHeader,
        body: Response,
    },
    /// A four-letter word's answer; the connection closes once it is written.
    Text { cnxn: CnxnId, text: String },
    /// Close the connection once what is queued for it has been written.
    Close { cnxn: CnxnId },
    /// Append these transactions to the log, in order; `Input::Persisted` answers.
    Append { entries: Vec<TxnEntry> },
    /// Write this snapshot (captured exactly at its zxid) and roll the log.
    Snapshot(Box<SnapshotData>),
    /// A learner's write for the leader (ZooKeeper's REQUEST packet): the request's opcode and
    /// body as the client sent it, with the connection's identities.
    Forward {
        session: SessionId,
        cxid: i32,
        type_: i32,
        body: bytes::Bytes,
        auth: Vec<crate::jute::data::Id>,
    },
    /// A learner asks the leader whether a session a client reconnects with is still alive
    /// (ZooKeeper's REVALIDATE); `ZooKeeperServer::on_revalidated` answers.
    Revalidate { session: SessionId, timeout_ms: i32 },
}

/// What the quorum layer tells the 4lw about this server's role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumInfo {
    /// `leader`, `follower` or `observer`.
    pub state: &'static str,
    /// Extra mntr rows (a leader's learner counts, sync counters, ...).
    pub mntr: Vec<(&'static str, String)>,
}

/// Where writes come from and when they apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Prepares writes and applies each once it is durable.
    Standalone,
    /// Prepares writes (its clients' and learners'); applies them when the quorum layer
    /// commits them (`commit_through`).
    Leader,
    /// Forwards writes to the leader; applies what the leader commits (`apply_committed`).
    Learner,
    /// Cut off from the quorum (readonlymode.enabled): serves read-only clients from the
    /// local tree; writes fail with NotReadOnly; sessions are local and never reach a log.
    ReadOnly,
}

impl Output {
    /// The connection an output is for, if any.
    pub fn cnxn(&self) -> Option<CnxnId> {
        match self {
            Output::Connected { cnxn, .. }
            | Output::Reply { cnxn, .. }
            | Output::Text { cnxn, .. }
            | Output::Close { cnxn } => Some(*cnxn),
            Output::Append { .. }
            | Output::Snapshot(_)
            | Output::Forward { .. }
            | Output::Revalidate { .. } => None,
        }
    }
}
