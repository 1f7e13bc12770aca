//! [`ZooKeeperServer`]: the standalone request pipeline as a sans-IO state machine.
//!
//! A write is prepared (zxid assigned, validated against outstanding changes), emitted as an
//! `Output::Append`, and applied to the tree only when `Input::Persisted` covers its zxid; only
//! then is it answered. A read runs at once unless its connection has a write in flight, in
//! which case it waits in that connection's queue (ZooKeeper's CommitProcessor rule).

use super::four_letter::{self, FourLetterContext};
use super::prep::{Outstanding, Prep, PrepSettings};
use super::stats::{CnxnStats, ServerStats};
use super::{CnxnId, DiskUsage, Input, Mode, Output, SessionId, SyncCounters};
use crate::config::Config;
use crate::jute::data::{perms, Acl, Id};
use crate::jute::proto::{
    keeper_state, op, xid, Code, ConnectRequest, ConnectResponse, MultiResult, ReplyHeader,
    Request, Response, WatcherEvent,
};
use crate::jute::txn::{TxnBody, TxnEntry, TxnHeader};
use crate::jute::DecodeError;
use crate::persistence::SnapshotCapture;
use crate::session::{session_password, SessionTracker};
use crate::tree::{acl, DataTree, ProcessTxnResult, WatchEvent};
use bytes::Bytes;
use log::{debug, info, warn};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

/// Settings the pipeline reads from [`Config`].
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub tick_ms: u64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub super_digest: Option<String>,
    pub container_check_interval_ms: i64,
    pub container_max_per_minute: u64,
    pub snap_count: u64,
    pub prep: PrepSettings,
    pub config: Config,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        let clamp = |ms: u64| i32::try_from(ms).unwrap_or(i32::MAX);
        Settings {
            tick_ms: config.tick_time_ms,
            min_session_timeout_ms: clamp(config.min_session_timeout_ms()),
            max_session_timeout_ms: clamp(config.max_session_timeout_ms()),
            super_digest: config.super_digest.clone(),
            container_check_interval_ms: config.container_check_interval_ms.max(1) as i64,
            container_max_per_minute: config.container_max_per_minute,
            snap_count: config.snap_count.max(2),
            prep: PrepSettings {
                extended_types: config.extended_types_enabled,
                enforce_quota: config.enforce_quota,
                skip_acl: config.skip_acl,
                reconfig_enabled: config.reconfig_enabled,
            },
            config: config.clone(),
        }
    }
}

/// Who is waiting for a prepared transaction.
#[derive(Debug)]
enum Origin {
    /// A client request: answer `xid` on `cnxn`.
    Client { cnxn: CnxnId, xid: i32, op: i32 },
    /// A new session: answer the handshake on `cnxn`.
    Connect {
        cnxn: CnxnId,
        timeout_ms: i32,
        read_only: Option<bool>,
    },
    /// The server itself (session expiry, container cleanup): nobody to answer.
    Server,
}

#[derive(Debug)]
struct Pending {
    entry: TxnEntry,
    origin: Origin,
    arrival_ms: i64,
}

/// What a connection's queued write waits for: its zxid when this server prepared it, its
/// cxid when the leader did (a learner learns the zxid only from the commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ticket {
    Zxid(i64),
    Forwarded(i32),
}

/// A learner's handshake waiting for the leader to revalidate its session.
#[derive(Debug)]
struct Revalidating {
    session: SessionId,
    timeout_ms: i32,
    read_only: Option<bool>,
}

/// A connection's requests waiting for an earlier write of the same connection.
#[derive(Debug)]
enum Queued {
    Write {
        ticket: Ticket,
    },
    Read {
        xid: i32,
        req: Request,
        arrival_ms: i64,
    },
    /// A request answered with an error (and, with `close`, the connection's end).
    Fail {
        xid: i32,
        code: Code,
        close: bool,
    },
}

/// One client connection as the core sees it.
#[derive(Debug)]
pub(super) struct Cnxn {
    pub peer: SocketAddr,
    pub session: Option<SessionId>,
    pub timeout_ms: i32,
    /// Authenticated identities; every connection starts with `ip:<peer address>`.
    pub auth: Vec<Id>,
    queue: VecDeque<Queued>,
    pub stats: CnxnStats,
}

impl Cnxn {
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The standalone ZooKeeper server core.
pub struct ZooKeeperServer {
    pub(super) settings: Settings,
    pub(super) tree: DataTree,
    pub(super) sessions: SessionTracker,
    outstanding: Outstanding,
    pub(super) cnxns: BTreeMap<CnxnId, Cnxn>,
    session_cnxn: HashMap<SessionId, CnxnId>,
    pending: VecDeque<Pending>,
    /// The last zxid handed out by prep.
    last_zxid: i64,
    appends: Vec<TxnEntry>,
    stats: ServerStats,
    next_container_check_ms: i64,
    /// The time of the input being processed.
    now_ms: i64,
    /// The log's counters, as of the last persisted notice.
    sync_counters: SyncCounters,
    /// Transactions applied since the last snapshot, and the count that triggers the next.
    txns_since_snapshot: u64,
    snapshot_after_txns: u64,
    /// Seeds the snapshot threshold's jitter (passed in: the core has no random source).
    jitter_state: u64,
    /// A fuzzy snapshot being copied, a bounded number of nodes per step.
    capture: Option<SnapshotCapture>,
    mode: Mode,
    /// Learner: writes sent to the leader, by (session, cxid), until their commit.
    forwarded: HashMap<(SessionId, i32), Origin>,
    /// Learner: syncs sent to the leader, answered in order by its SYNC packets.
    pending_syncs: VecDeque<(CnxnId, i32, String, i64)>,
    /// Learner: handshakes waiting for REVALIDATE.
    revalidating: BTreeMap<CnxnId, Revalidating>,
    /// Learner: sessions touched since the last PING, reported to the leader.
    touched: BTreeMap<SessionId, i32>,
    /// The last applied transactions (ZooKeeper's committedLog), for DIFF syncs; at most
    /// `committed_log_max` (0 outside an ensemble).
    committed_log: VecDeque<TxnEntry>,
    committed_log_max: usize,
    /// Learner: REQUEST outputs made while preparing, flushed with the appends.
    forwarded_out: Vec<Output>,
    /// The role the 4lw report; `None` standalone.
    quorum_info: Option<super::QuorumInfo>,
    /// Sessions a read-only server made up; they end with the mode.
    read_only_sessions: Vec<SessionId>,
    /// Leader: the server each session's client is connected to (a learner's sid, or
    /// `LOCAL_OWNER`); a request from another is refused with SessionMoved.
    session_owner: HashMap<SessionId, i64>,
}

/// `session_owner` of a session whose client is connected to the leader itself.
const LOCAL_OWNER: i64 = -1;

/// Nodes copied into a snapshot per core step: about a millisecond of work, so a snapshot of
/// millions of nodes never stalls requests for long.
const SNAPSHOT_NODES_PER_STEP: usize = 2048;

impl ZooKeeperServer {
    pub fn new(config: &Config, now_ms: i64) -> ZooKeeperServer {
        let mut tree = DataTree::new();
        tree.set_extended_types(config.extended_types_enabled);
        ZooKeeperServer::restore(config, now_ms, tree, &[])
    }

    /// A server over a tree and sessions recovered from disk. Restored sessions get a full
    /// timeout from now to reconnect, as in ZooKeeper.
    pub fn restore(
        config: &Config,
        now_ms: i64,
        tree: DataTree,
        sessions: &[(SessionId, i32)],
    ) -> ZooKeeperServer {
        let settings = Settings::from_config(config);
        let last_zxid = tree.last_processed_zxid();
        let server_id = if config.is_ensemble() {
            config.my_id.unwrap_or(0)
        } else {
            0
        };
        let mut tracker = SessionTracker::new(server_id, settings.tick_ms, now_ms);
        for &(id, timeout_ms) in sessions {
            tracker.track(id, timeout_ms, now_ms);
        }
        let mut server = ZooKeeperServer {
            sessions: tracker,
            next_container_check_ms: now_ms + settings.container_check_interval_ms,
            settings,
            tree,
            outstanding: Outstanding::default(),
            cnxns: BTreeMap::new(),
            session_cnxn: HashMap::new(),
            pending: VecDeque::new(),
            last_zxid,
            appends: Vec::new(),
            stats: ServerStats::new(now_ms),
            now_ms,
            sync_counters: SyncCounters::default(),
            txns_since_snapshot: 0,
            snapshot_after_txns: 0,
            jitter_state: (now_ms as u64) | 1,
            capture: None,
            mode: Mode::Standalone,
            forwarded: HashMap::new(),
            pending_syncs: VecDeque::new(),
            revalidating: BTreeMap::new(),
            touched: BTreeMap::new(),
            committed_log: VecDeque::new(),
            committed_log_max: 0,
            forwarded_out: Vec::new(),
            quorum_info: None,
            read_only_sessions: Vec::new(),
            session_owner: HashMap::new(),
        };
        server.roll_snapshot_threshold();
        server
    }

    /// ZooKeeper snapshots after a random count in (snapCount/2, snapCount] so that the
    /// servers of an ensemble do not all snapshot at once.
    fn roll_snapshot_threshold(&mut self) {
        // xorshift64: deterministic for a given seed, enough to spread thresholds.
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let half = self.settings.snap_count / 2;
        self.snapshot_after_txns = half + 1 + x % half.max(1);
    }

    fn maybe_snapshot(&mut self, out: &mut Vec<Output>) {
        self.txns_since_snapshot += 1;
        if self.txns_since_snapshot < self.snapshot_after_txns {
            return;
        }
        self.txns_since_snapshot = 0;
        self.roll_snapshot_threshold();
        if let Some(busy) = &self.capture {
            log::warn!(
                "Too busy to snap, skipping: still copying snapshot 0x{:x}",
                busy.zxid()
            );
            return;
        }
        let sessions: Vec<(SessionId, i32)> =
            self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
        self.capture = Some(SnapshotCapture::start(&self.tree, &sessions));
        self.advance_capture(out);
    }

    /// Copies the next slice of a snapshot in progress; hands it over when complete.
    fn advance_capture(&mut self, out: &mut Vec<Output>) {
        let Some(capture) = self.capture.as_mut() else {
            return;
        };
        if let Some(done) = capture.step(&self.tree, SNAPSHOT_NODES_PER_STEP) {
            self.capture = None;
            out.push(Output::Snapshot(Box::new(done)));
        }
    }

    /// The tree, for tests and tools.
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// Prepared transactions not yet durable.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one input; outputs are appended to `out` in the order they must happen.
    pub fn step(&mut self, now_ms: i64, input: Input, out: &mut Vec<Output>) {
        self.now_ms = self.now_ms.max(now_ms);
        self.advance_capture(out);
        match input {
            Input::Accepted { cnxn, peer } => self.on_accepted(now_ms, cnxn, peer),
            Input::Connect { cnxn, req } => self.on_connect(now_ms, cnxn, req, out),
            Input::Request { cnxn, xid, req } => self.on_request(now_ms, cnxn, xid, req, out),
            Input::BadRequest {
                cnxn,
                xid,
                op,
                error,
            } => self.on_bad_request(cnxn, xid, op, error, out),
            Input::FourLetter { cnxn, word, disk } => {
                self.on_four_letter(now_ms, cnxn, word, disk.unwrap_or_default(), out)
            }
            Input::Closed { cnxn } => self.on_closed(cnxn),
            Input::Persisted { zxid, sync } => {
                self.sync_counters = sync;
                self.on_persisted(zxid, out)
            }
        }
        self.flush_appends(out);
    }

    /// Runs timers: session expiry and the container manager.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        self.now_ms = self.now_ms.max(now_ms);
        self.advance_capture(out);
        if matches!(self.mode, Mode::Learner | Mode::ReadOnly) {
            // Only the leader expires sessions and reaps containers; learners apply its txns.
            return;
        }
        for id in self.sessions.expire(now_ms) {
            let timeout = self.sessions.get(id).map_or(0, |s| s.timeout_ms);
            info!("Expiring session 0x{id:x}, timeout of {timeout}ms exceeded");
            self.prepare_close(now_ms, id);
        }
        if now_ms >= self.next_container_check_ms {
            self.next_container_check_ms = now_ms + self.settings.container_check_interval_ms;
            self.check_containers(now_ms);
        }
        self.flush_appends(out);
    }

    /// When `tick` must next run.
    pub fn next_tick_ms(&self) -> i64 {
        if self.capture.is_some() {
            return self.now_ms;
        }
        if matches!(self.mode, Mode::Learner | Mode::ReadOnly) {
            return i64::MAX;
        }
        let expiry = self.sessions.next_expiry_ms().unwrap_or(i64::MAX);
        expiry.min(self.next_container_check_ms)
    }

    fn flush_appends(&mut self, out: &mut Vec<Output>) {
        out.append(&mut self.forwarded_out);
        if !self.appends.is_empty() {
            out.push(Output::Append {
                entries: std::mem::take(&mut self.appends),
            });
        }
    }

    fn on_accepted(&mut self, now_ms: i64, cnxn: CnxnId, peer: SocketAddr) {
        let cnxn_state = Cnxn {
            peer,
            session: None,
            timeout_ms: 0,
            auth: vec![acl::ip_id(peer.ip())],
            queue: VecDeque::new(),
            stats: CnxnStats::new(now_ms),
        };
        self.cnxns.insert(cnxn, cnxn_state);
    }

    fn on_closed(&mut self, cnxn: CnxnId) {
        let Some(c) = self.cnxns.remove(&cnxn) else {
            return;
        };
        self.tree.remove_cnxn(cnxn);
        if let Some(session) = c.session {
            if self.session_cnxn.get(&session) == Some(&cnxn) {
                self.session_cnxn.remove(&session);
            }
        }
    }

    fn on_connect(
        &mut self,
        now_ms: i64,
        cnxn: CnxnId,
        req: ConnectRequest,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.cnxns.get_mut(&cnxn) else {
            return;
        };
        // ZooKeeper counts the handshake as a packet each way.
        c.stats.packets_received += 1;
        self.stats.packets_received += 1;
        if c.session.is_some() {
            warn!("second handshake on connection from {}; closing", c.peer);
            out.push(Output::Close { cnxn });
            return;
        }
        let last = self.tree.last_processed_zxid();
        if req.last_zxid_seen > last {
            info!(
                "Refusing session(0x{:x}) request for client {} as it has seen zxid 0x{:x} our last zxid is 0x{:x} client must try another server",
                req.session_id, c.peer, req.last_zxid_seen, last
            );
            out.push(Output::Close { cnxn });
            return;
        }
        let timeout_ms = req.time_out.clamp(
            self.settings.min_session_timeout_ms,
            self.settings.max_session_timeout_ms,
        );
        if self.mode == Mode::ReadOnly {
            self.read_only_connect(now_ms, cnxn, &req, timeout_ms, out);
            return;
        }
        if req.session_id == 0 {
            self.create_session(now_ms, cnxn, timeout_ms, req.read_only);
        } else {
            self.reopen_session(now_ms, cnxn, &req, timeout_ms, out);
        }
    }

    fn create_session(
        &mut self,
        now_ms: i64,
        cnxn: CnxnId,
        timeout_ms: i32,
        read_only: Option<bool>,
    ) {
        let id = self.sessions.allocate_id();
        self.sessions.track(id, timeout_ms, now_ms);
        self.bind_session(cnxn, id, timeout_ms);
        let origin = Origin::Connect {
            cnxn,
            timeout_ms,
            read_only,
        };
        let ticket = if self.mode == Mode::Learner {
            // The leader makes the session global; its body is the timeout, as in ZooKeeper.
            let body = Bytes::copy_from_slice(&timeout_ms.to_be_bytes());
            self.forward(id, 0, op::CREATE_SESSION, body, Vec::new(), origin)
        } else {
            let (type_, body) = Prep::create_session(timeout_ms);
            if self.mode == Mode::Leader {
                self.session_owner.insert(id, LOCAL_OWNER);
            }
            Ticket::Zxid(self.submit(now_ms, id, 0, type_, body, origin))
        };
        if let Some(c) = self.cnxns.get_mut(&cnxn) {
            c.queue.push_back(Queued::Write { ticket });
        }
    }

    fn reopen_session(
        &mut self,
        now_ms: i64,
        cnxn: CnxnId,
        req: &ConnectRequest,
        timeout_ms: i32,
        out: &mut Vec<Output>,
    ) {
        let id = req.session_id;
        let password_ok = req.passwd[..] == session_password(id)[..];
        if self.mode == Mode::Learner && password_ok {
            // Only the leader knows whether the session is still alive.
            self.revalidating.insert(
                cnxn,
                Revalidating {
                    session: id,
                    timeout_ms,
                    read_only: req.read_only,
                },
            );
            out.push(Output::Revalidate {
                session: id,
                timeout_ms,
            });
            return;
        }
        let valid = password_ok && self.sessions.touch(id, timeout_ms, now_ms);
        if valid && self.mode == Mode::Leader {
            self.session_owner.insert(id, LOCAL_OWNER);
        }
        if !valid {
            self.refuse_session(cnxn, id, req.read_only, out);
            return;
        }
        if let Some(old) = self.session_cnxn.get(&id).copied() {
            if old != cnxn {
                debug!("session 0x{id:x} moved to a new connection; closing the old one");
                out.push(Output::Close { cnxn: old });
                self.on_closed(old);
            }
        }
        self.bind_session(cnxn, id, timeout_ms);
        let resp = self.connect_response(id, timeout_ms, req.read_only);
        self.send_connected(cnxn, resp, false, out);
    }

    /// ZooKeeper's answer to a reconnect with an expired or unknown session: a zero session
    /// and password, then the connection closes.
    fn refuse_session(
        &mut self,
        cnxn: CnxnId,
        session: SessionId,
        read_only: Option<bool>,
        out: &mut Vec<Output>,
    ) {
        info!("Invalid session 0x{session:x} for client, probably expired");
        let resp = ConnectResponse {
            passwd: Bytes::from_static(&[0; 16]),
            read_only: read_only.map(|_| false),
            ..ConnectResponse::default()
        };
        self.send_connected(cnxn, resp, true, out);
    }

    fn send_connected(
        &mut self,
        cnxn: CnxnId,
        resp: ConnectResponse,
        close: bool,
        out: &mut Vec<Output>,
    ) {
        if let Some(c) = self.cnxns.get_mut(&cnxn) {
            c.stats.packets_sent += 1;
            self.stats.packets_sent += 1;
        }
        out.push(Output::Connected { cnxn, resp, close });
    }

    fn bind_session(&mut self, cnxn: CnxnId, id: SessionId, timeout_ms: i32) {
        if let Some(c) = self.cnxns.get_mut(&cnxn) {
            c.session = Some(id);
            c.timeout_ms = timeout_ms;
        }
        self.session_cnxn.insert(id, cnxn);
    }

    fn connect_response(
        &self,
        id: SessionId,
        timeout_ms: i32,
        read_only: Option<bool>,
    ) -> ConnectResponse {
        ConnectResponse {
            protocol_version: 0,
            time_out: timeout_ms,
            session_id: id,
            passwd: Bytes::copy_from_slice(&session_password(id)),
            read_only: read_only.map(|_| false),
        }
    }

    /// Assigns the next zxid to a prepared transaction and queues it for the log.
    fn submit(
        &mut self,
        now_ms: i64,
        session: SessionId,
        cxid: i32,
        type_: i32,
        body: TxnBody,
        origin: Origin,
    ) -> i64 {
        self.last_zxid += 1;
        let zxid = self.last_zxid;
        let header = TxnHeader {
            client_id: session,
            cxid,
            zxid,
            time: now_ms,
            type_,
        };
        let entry = TxnEntry {
            header,
            body,
            digest: None,
        };
        self.appends.push(entry.clone());
        self.pending.push_back(Pending {
            entry,
            origin,
            arrival_ms: now_ms,
        });
        zxid
    }

    fn on_request(
        &mut self,
        now_ms: i64,
        cnxn: CnxnId,
        xid: i32,
        req: Request,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.cnxns.get_mut(&cnxn) else {
            return;
        };
        let Some(session) = c.session else {
            warn!("request before handshake from {}; closing", c.peer);
            out.push(Output::Close { cnxn });
            return;
        };
        c.stats.received(now_ms, xid, req.op_code());
        self.stats.packets_received += 1;
        let timeout_ms = c.timeout_ms;
        if !self.sessions.touch(session, timeout_ms, now_ms) {
            debug!("request on closed session 0x{session:x}; closing the connection");
            out.push(Output::Close { cnxn });
            return;
        }
        if self.mode == Mode::Learner {
            self.touched.insert(session, timeout_ms);
        }
        match req {
            // A learner's sync goes through the leader, which answers once every write it had
            // prepared before is committed here too.
            Request::Sync(r) if self.mode == Mode::Learner => {
                self.pending_syncs
                    .push_back((cnxn, xid, r.path.clone(), now_ms));
                let mut body = bytes::BytesMut::new();
                Request::Sync(r).put(&mut body);
                let origin = Origin::Server;
                let ticket =
                    self.forward(session, xid, op::SYNC, body.freeze(), Vec::new(), origin);
                self.forwarded.remove(&(session, xid));
                if let Some(c) = self.cnxns.get_mut(&cnxn) {
                    c.queue.push_back(Queued::Write { ticket });
                }
            }
            Request::Auth(packet) => self.on_auth(cnxn, xid, &packet.scheme, &packet.auth, out),
            // No SASL server: ZooKeeper answers OK with a null token.
            Request::Sasl(_) => self.reply(cnxn, xid, Code::Ok, Response::Sasl(None), now_ms, out),
            // A check outside a multi is not a valid request (ZOOKEEPER-2623: older servers
            // logged it as a transaction they could not replay).
            Request::Check(_) => self.fail(cnxn, xid, Code::Unimplemented, true, out),
            req if req.is_write() && self.mode == Mode::ReadOnly => {
                self.fail(cnxn, xid, Code::NotReadOnly, false, out)
            }
            req if req.is_write() => self.on_write(now_ms, cnxn, session, xid, req),
            req => {
                // The negative control answers a read before the connection's earlier writes.
                let busy = self.cnxns.get(&cnxn).is_some_and(|c| !c.queue.is_empty())
                    && !cfg!(feature = "bug-read-skips-queued-write");
                if busy {
                    let queued = Queued::Read {
                        xid,
                        req,
                        arrival_ms: now_ms,
                    };
                    if let Some(c) = self.cnxns.get_mut(&cnxn) {
                        c.queue.push_back(queued);
                    }
                } else {
                    self.run_read(now_ms, cnxn, xid, req, out);
                }
            }
        }
    }

    fn on_auth(
        &mut self,
        cnxn: CnxnId,
        xid: i32,
        scheme: &str,
        auth: &[u8],
        out: &mut Vec<Output>,
    ) {
        let result = acl::authenticate(scheme, auth, self.settings.super_digest.as_deref());
        let Some(c) = self.cnxns.get_mut(&cnxn) else {
            return;
        };
        let code = match result {
            Ok(ids) => {
                info!(
                    "Session 0x{:x}: auth success for scheme {scheme}",
                    c.session.unwrap_or(0)
                );
                for id in ids {
                    if !c.auth.contains(&id) {
                        c.auth.push(id);
                    }
                }
                Code::Ok
            }
            Err(code) => {
                warn!("Authentication failed for scheme: {scheme}");
                self.stats.auth_failed_count += 1;
                code
            }
        };
        // Auth is answered at once with zxid 0, outside the pipeline, as ZooKeeper does.
        let header = ReplyHeader {
            xid,
            zxid: 0,
            err: code.as_i32(),
        };
        self.send(cnxn, header, Response::Empty, out);
        if code != Code::Ok {
            out.push(Output::Close { cnxn });
        }
    }

    fn on_write(&mut self, now_ms: i64, cnxn: CnxnId, session: SessionId, xid: i32, req: Request) {
        let auth = self
            .cnxns
            .get(&cnxn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        if self.mode == Mode::Learner {
            let origin = Origin::Client {
                cnxn,
                xid,
                op: req.op_code(),
            };
            let mut body = bytes::BytesMut::new();
            req.put(&mut body);
            let ticket = self.forward(session, xid, req.op_code(), body.freeze(), auth, origin);
            if let Some(c) = self.cnxns.get_mut(&cnxn) {
                c.queue.push_back(Queued::Write { ticket });
            }
            return;
        }
        let (type_, body) = if self.owned_elsewhere(session, LOCAL_OWNER) {
            error_txn(Code::SessionMoved)
        } else {
            self.prep(now_ms, session, &auth).prepare(&req)
        };
        if matches!(req, Request::CloseSession) {
            self.sessions.set_closing(session);
        }
        let origin = Origin::Client {
            cnxn,
            xid,
            op: req.op_code(),
        };
        let ticket = Ticket::Zxid(self.submit(now_ms, session, xid, type_, body, origin));
        if let Some(c) = self.cnxns.get_mut(&cnxn) {
            c.queue.push_back(Queued::Write { ticket });
        }
    }

    fn prep<'a>(&'a mut self, now_ms: i64, session: SessionId, auth: &'a [Id]) -> Prep<'a> {
        Prep {
            tree: &self.tree,
            outstanding: &mut self.outstanding,
            sessions: &self.sessions,
            settings: &self.settings.prep,
            session_id: session,
            auth,
            zxid: self.last_zxid + 1,
            time_ms: now_ms,
        }
    }

    /// A session ends by expiry: a closeSession transaction deletes its ephemerals.
    fn prepare_close(&mut self, now_ms: i64, session: SessionId) {
        self.sessions.set_closing(session);
        let (type_, body) = self
            .prep(now_ms, session, &[])
            .prepare(&Request::CloseSession);
        self.submit(now_ms, session, 0, type_, body, Origin::Server);
    }

    fn check_containers(&mut self, now_ms: i64) {
        let per_interval = self.settings.container_max_per_minute as i64
            * self.settings.container_check_interval_ms
            / 60_000;
        let limit = per_interval.max(1) as usize;
        for path in self.tree.container_candidates(now_ms, limit) {
            let (type_, body) = self.prep(now_ms, 0, &[]).delete_container(&path);
            self.submit(now_ms, 0, 0, type_, body, Origin::Server);
        }
    }

    /// A request that did not decode: an unknown opcode gets Unimplemented and its
    /// connection closes (UnimplementedRequestProcessor); a malformed body gets
    /// MarshallingError and the connection stays, as ZooKeeper decodes bodies only when it
    /// processes them. Either way the answer keeps its place in the connection's order.
    fn on_bad_request(
        &mut self,
        cnxn: CnxnId,
        xid: i32,
        op: i32,
        error: DecodeError,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.cnxns.get(&cnxn) else {
            return;
        };
        let (code, close) = match error {
            DecodeError::UnknownOpcode(_) => (Code::Unimplemented, true),
            _ => (Code::MarshallingError, false),
        };
        warn!("request xid {xid} opcode {op} from {}: {error}", c.peer);
        self.fail(cnxn, xid, code, close, out);
    }

    /// Answers `xid` with `code` once the connection's earlier requests are answered.
    fn fail(&mut self, cnxn: CnxnId, xid: i32, code: Code, close: bool, out: &mut Vec<Output>) {
        let Some(c) = self.cnxns.get_mut(&cnxn) else {
            return;
        };
        if c.queue.is_empty() {
            self.run_fail(cnxn, xid, code, close, out);
        } else {
            c.queue.push_back(Queued::Fail { xid, code, close });
        }
    }

    fn run_fail(&mut self, cnxn: CnxnId, xid: i32, code: Code, close: bool, out: &mut Vec<Output>) {
        let arrival_ms = self.now_ms;
        self.reply(cnxn, xid, code, Response::Empty, arrival_ms, out);
        if close {
            out.push(Output::Close { cnxn });
        }
    }

    fn on_four_letter(
        &mut self,
        now_ms: i64,
        cnxn: CnxnId,
        word: [u8; 4],
        disk: DiskUsage,
        out: &mut Vec<Output>,
    ) {
        let cmd = String::from_utf8_lossy(&word).into_owned();
        let text = if self.settings.config.four_letter_whitelist.allows(&cmd) {
            info!("Processing {cmd} command");
            let ctx = FourLetterContext {
                now_ms,
                config: &self.settings.config,
                tree: &self.tree,
                sessions: &self.sessions,
                cnxns: &self.cnxns,
                stats: &self.stats,
                outstanding: self.pending.len(),
                last_zxid: self.tree.last_processed_zxid(),
                sync: self.sync_counters,
                disk,
                quorum: self.quorum_info.as_ref(),
                read_only: self.mode == Mode::ReadOnly,
            };
            let text = four_letter::run(&cmd, &ctx);
            self.after_four_letter(&cmd, now_ms);
            text
        } else {
            format!("{cmd} is not executed because it is not in the whitelist.\n")
        };
        out.push(Output::Text { cnxn, text });
    }

    /// The reset commands change state after their answer is rendered.
    fn after_four_letter(&mut self, cmd: &str, now_ms: i64) {
        match cmd {
            "srst" => self.stats.reset(),
            "crst" => self.cnxns.values_mut().for_each(|c| c.stats.reset(now_ms)),
            _ => {}
        }
    }

    /// Applies every prepared transaction the log made durable, in zxid order.
    fn on_persisted(&mut self, zxid: i64, out: &mut Vec<Output>) {
        if self.mode != Mode::Standalone {
            // In an ensemble durability is one vote; the quorum layer commits.
            return;
        }
        self.commit_through(zxid, out);
    }

    /// Applies every prepared transaction up to `zxid`, in zxid order (a leader's commit).
    pub fn commit_through(&mut self, zxid: i64, out: &mut Vec<Output>) {
        while self
            .pending
            .front()
            .is_some_and(|p| p.entry.header.zxid <= zxid)
        {
            let p = self.pending.pop_front().expect("front exists");
            self.apply(p, out);
        }
    }

    fn apply(&mut self, p: Pending, out: &mut Vec<Output>) {
        let forwarded = self.mode == Mode::Learner;
        if p.entry.header.type_ == op::CREATE_SESSION {
            // Every server knows every global session (snapshots list them; a new leader
            // expires them).
            if let TxnBody::CreateSession(t) = &p.entry.body {
                if self.sessions.get(p.entry.header.client_id).is_none() {
                    self.sessions
                        .track(p.entry.header.client_id, t.time_out, self.now_ms);
                }
            }
        }
        if self.committed_log_max > 0 {
            if self.committed_log.len() >= self.committed_log_max {
                self.committed_log.pop_front();
            }
            self.committed_log.push_back(p.entry.clone());
        }
        let header = &p.entry.header;
        let mut events = Vec::new();
        let result = {
            let cnxns = &self.cnxns;
            let skip_acl = self.settings.prep.skip_acl;
            let can_read = |c: CnxnId, acl: &[Acl]| {
                skip_acl
                    || cnxns
                        .get(&c)
                        .is_some_and(|x| acl::check(acl, perms::READ, &x.auth))
            };
            self.tree
                .process_txn(header, &p.entry.body, &can_read, &mut events)
        };
        assert_eq!(
            self.tree.last_processed_zxid(),
            header.zxid,
            "transactions apply in zxid order"
        );
        self.outstanding.applied(header.zxid);
        #[cfg(not(feature = "bug-watch-event-after-reply"))]
        self.send_events(events, out);
        if header.type_ == op::CLOSE_SESSION {
            self.session_closed(header.client_id, &p.origin, out);
        }
        // After the session effects: a snapshot named by this zxid must not list a session
        // this very transaction closed (replay starts after it and would never remove it).
        self.maybe_snapshot(out);
        match p.origin {
            Origin::Client { cnxn, xid, op } => {
                let (err, body) = write_reply(op, header.type_, &result);
                self.reply(cnxn, xid, err, body, p.arrival_ms, out);
                if op == op::CLOSE_SESSION {
                    out.push(Output::Close { cnxn });
                }
                let ticket = ticket_of(forwarded, header);
                self.write_done(cnxn, ticket, out);
            }
            Origin::Connect {
                cnxn,
                timeout_ms,
                read_only,
            } => {
                if self.cnxns.contains_key(&cnxn) {
                    let resp = self.connect_response(header.client_id, timeout_ms, read_only);
                    self.send_connected(cnxn, resp, false, out);
                    let ticket = ticket_of(forwarded, header);
                    self.write_done(cnxn, ticket, out);
                }
            }
            Origin::Server => {}
        }
        // The negative control answers the write before its watch events.
        #[cfg(feature = "bug-watch-event-after-reply")]
        self.send_events(events, out);
    }

    /// A session is gone: forget it; an expired session's connection is closed.
    fn session_closed(&mut self, session: SessionId, origin: &Origin, out: &mut Vec<Output>) {
        self.sessions.remove(session);
        self.session_owner.remove(&session);
        if let Some(cnxn) = self.session_cnxn.remove(&session) {
            if matches!(origin, Origin::Server) {
                out.push(Output::Close { cnxn });
            }
        }
    }

    pub(super) fn send_events(&mut self, events: Vec<WatchEvent>, out: &mut Vec<Output>) {
        for ev in events {
            if !self.cnxns.contains_key(&ev.cnxn) {
                continue;
            }
            let header = ReplyHeader {
                xid: xid::NOTIFICATION,
                zxid: ev.zxid,
                err: 0,
            };
            let event = WatcherEvent {
                type_: ev.type_,
                state: keeper_state::SYNC_CONNECTED,
                path: ev.path,
            };
            self.send(ev.cnxn, header, Response::Event(event), out);
        }
    }

    /// The write at the head of `cnxn`'s queue is answered: run the reads behind it, up to the
    /// next write.
    fn write_done(&mut self, cnxn: CnxnId, ticket: Ticket, out: &mut Vec<Output>) {
        let Some(c) = self.cnxns.get_mut(&cnxn) else {
            return;
        };
        match c.queue.pop_front() {
            Some(Queued::Write { ticket: head }) if head == ticket => {}
            // This server prepared the write: its order is this server's own invariant.
            other if !matches!(ticket, Ticket::Forwarded(_)) => {
                panic!("connection queue out of order: expected {ticket:?}, found {other:?}")
            }
            // The leader answered out of this connection's order (a client reusing a cxid,
            // or a leader bug): the connection's replies can no longer be in order.
            other => {
                warn!("commit for {ticket:?} does not match the connection's next write {other:?}; closing it");
                out.push(Output::Close { cnxn });
                self.on_closed(cnxn);
                return;
            }
        }
        loop {
            let Some(c) = self.cnxns.get_mut(&cnxn) else {
                return;
            };
            if matches!(c.queue.front(), None | Some(Queued::Write { .. })) {
                return;
            }
            match c.queue.pop_front() {
                Some(Queued::Read {
                    xid,
                    req,
                    arrival_ms,
                }) => self.run_read(arrival_ms, cnxn, xid, req, out),
                Some(Queued::Fail { xid, code, close }) => {
                    self.run_fail(cnxn, xid, code, close, out)
                }
                _ => unreachable!("front is a read or a failure"),
            }
        }
    }

    /// Answers a request with the tree's last zxid, as FinalRequestProcessor does.
    pub(super) fn reply(
        &mut self,
        cnxn: CnxnId,
        xid: i32,
        err: Code,
        body: Response,
        arrival_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let zxid = self.tree.last_processed_zxid();
        let header = ReplyHeader {
            xid,
            zxid,
            err: err.as_i32(),
        };
        let now_ms = self.now_ms.max(arrival_ms);
        if let Some(c) = self.cnxns.get_mut(&cnxn) {
            c.stats.replied(now_ms, arrival_ms, zxid);
        }
        self.stats.request_done(now_ms - arrival_ms);
        self.send(cnxn, header, body, out);
    }

    fn send(&mut self, cnxn: CnxnId, header: ReplyHeader, body: Response, out: &mut Vec<Output>) {
        if let Some(c) = self.cnxns.get_mut(&cnxn) {
            c.stats.packets_sent += 1;
            self.stats.packets_sent += 1;
            out.push(Output::Reply { cnxn, header, body });
        }
    }
}

impl ZooKeeperServer {
    // The ensemble's side of the pipeline: the quorum layer (src/quorum) drives these.

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Switches how writes flow. A new leader gives every session a full timeout from now, as
    /// ZooKeeper's leader does when it takes over the session tracker.
    pub fn set_mode(&mut self, mode: Mode, now_ms: i64) {
        if self.mode == Mode::ReadOnly && mode != Mode::ReadOnly {
            for id in std::mem::take(&mut self.read_only_sessions) {
                self.sessions.remove(id);
            }
        }
        self.mode = mode;
        // A new leader learns owners again as requests and revalidations arrive.
        self.session_owner.clear();
        if mode == Mode::Leader {
            let sessions: Vec<(SessionId, i32)> =
                self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
            for (id, timeout_ms) in sessions {
                self.sessions.touch(id, timeout_ms, now_ms);
            }
            self.next_container_check_ms = now_ms + self.settings.container_check_interval_ms;
        }
    }

    /// Keeps the last `max` applied transactions for DIFF syncs, starting from `recent`.
    pub fn keep_committed_log(&mut self, max: usize, recent: Vec<TxnEntry>) {
        self.committed_log_max = max;
        self.committed_log = recent.into_iter().collect();
        while self.committed_log.len() > max {
            self.committed_log.pop_front();
        }
    }

    /// The last applied transactions, oldest first.
    pub fn committed_log(&self) -> &VecDeque<TxnEntry> {
        &self.committed_log
    }

    /// The last zxid prepared (or applied, when nothing is pending).
    pub fn last_prepared_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// An established leader numbers its proposals from `(epoch, 1)`.
    pub fn start_epoch(&mut self, epoch: i64) {
        let base = epoch << 32;
        assert!(
            base > self.tree.last_processed_zxid() && self.pending.is_empty(),
            "a new epoch starts above everything applied, with nothing pending"
        );
        self.last_zxid = base;
    }

    /// Prepared transactions not yet committed, in zxid order (a leader's outstanding
    /// proposals).
    pub fn pending_entries(&self) -> impl Iterator<Item = &TxnEntry> {
        self.pending.iter().map(|p| &p.entry)
    }

    /// Gives up prepared, uncommitted transactions (a leader stepping down): they stay in the
    /// log, and the next leader decides their fate.
    pub fn take_pending(&mut self) -> Vec<TxnEntry> {
        self.outstanding = Outstanding::default();
        self.last_zxid = self.tree.last_processed_zxid();
        self.pending.drain(..).map(|p| p.entry).collect()
    }

    /// Applies a transaction this server did not prepare: a learner's commit, or a new
    /// leader's log tail. A learner answers its own client's forwarded request here.
    pub fn apply_committed(&mut self, now_ms: i64, entry: TxnEntry, out: &mut Vec<Output>) {
        self.now_ms = self.now_ms.max(now_ms);
        let key = (entry.header.client_id, entry.header.cxid);
        let origin = match self.mode {
            Mode::Learner => self.forwarded.remove(&key).unwrap_or(Origin::Server),
            _ => Origin::Server,
        };
        let arrival_ms = self.now_ms;
        if self.last_zxid < entry.header.zxid {
            self.last_zxid = entry.header.zxid;
        }
        self.apply(
            Pending {
                entry,
                origin,
                arrival_ms,
            },
            out,
        );
        self.flush_appends(out);
    }

    /// A leader prepares a learner's forwarded write (REQUEST). A body that does not decode
    /// becomes an error transaction, so the learner's client still gets its answer in order.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_forwarded(
        &mut self,
        now_ms: i64,
        owner: i64,
        session: SessionId,
        cxid: i32,
        type_: i32,
        body: &[u8],
        auth: &[Id],
        out: &mut Vec<Output>,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let (txn_type, txn) = match type_ {
            op::CREATE_SESSION => match <[u8; 4]>::try_from(body) {
                Ok(b) => {
                    let timeout_ms = i32::from_be_bytes(b);
                    self.sessions.track(session, timeout_ms, now_ms);
                    self.session_owner.insert(session, owner);
                    Prep::create_session(timeout_ms)
                }
                Err(_) => error_txn(Code::MarshallingError),
            },
            _ => match Request::decode(type_, body) {
                Ok(req) if req.is_write() => {
                    let timeout_ms = self.sessions.get(session).map(|s| s.timeout_ms);
                    if !timeout_ms.is_some_and(|t| self.sessions.touch(session, t, now_ms)) {
                        error_txn(Code::SessionExpired)
                    } else if self.owned_elsewhere(session, owner) {
                        error_txn(Code::SessionMoved)
                    } else {
                        if matches!(req, Request::CloseSession) {
                            self.sessions.set_closing(session);
                        }
                        self.prep(now_ms, session, auth).prepare(&req)
                    }
                }
                Ok(_) | Err(_) => {
                    warn!("learner forwarded an invalid request (type {type_}) for session 0x{session:x}");
                    error_txn(Code::MarshallingError)
                }
            },
        };
        self.submit(now_ms, session, cxid, txn_type, txn, Origin::Server);
        self.flush_appends(out);
    }

    /// A learner: the leader's SYNC answers the oldest forwarded sync.
    pub fn on_synced(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        self.now_ms = self.now_ms.max(now_ms);
        let Some((cnxn, xid, path, arrival_ms)) = self.pending_syncs.pop_front() else {
            warn!("SYNC from the leader with no sync pending");
            return;
        };
        if !self.cnxns.contains_key(&cnxn) {
            return;
        }
        self.reply(cnxn, xid, Code::Ok, Response::Sync(path), arrival_ms, out);
        self.write_done(cnxn, Ticket::Forwarded(xid), out);
    }

    /// A learner: the leader's answer to REVALIDATE.
    pub fn on_revalidated(
        &mut self,
        now_ms: i64,
        session: SessionId,
        valid: bool,
        out: &mut Vec<Output>,
    ) {
        self.now_ms = self.now_ms.max(now_ms);
        let waiting: Vec<CnxnId> = self
            .revalidating
            .iter()
            .filter(|(_, r)| r.session == session)
            .map(|(c, _)| *c)
            .collect();
        for cnxn in waiting {
            let Some(r) = self.revalidating.remove(&cnxn) else {
                continue;
            };
            if !self.cnxns.contains_key(&cnxn) {
                continue;
            }
            if !valid {
                self.refuse_session(cnxn, session, r.read_only, out);
                continue;
            }
            self.sessions.track(session, r.timeout_ms, now_ms);
            self.touched.insert(session, r.timeout_ms);
            if let Some(old) = self.session_cnxn.get(&session).copied() {
                if old != cnxn {
                    out.push(Output::Close { cnxn: old });
                    self.on_closed(old);
                }
            }
            self.bind_session(cnxn, session, r.timeout_ms);
            let resp = self.connect_response(session, r.timeout_ms, r.read_only);
            self.send_connected(cnxn, resp, false, out);
        }
    }

    /// A leader: a learner's REVALIDATE; the session now belongs to `owner`'s client.
    pub fn revalidate(
        &mut self,
        session: SessionId,
        timeout_ms: i32,
        owner: i64,
        now_ms: i64,
    ) -> bool {
        let valid = self.sessions.touch(session, timeout_ms, now_ms);
        if valid {
            // Requests still coming through the old server now get SessionMoved.
            self.session_owner.insert(session, owner);
        }
        valid
    }

    /// True when the session's client is connected to a server other than `owner` (ZooKeeper's
    /// SessionMovedException). A session no server claimed yet (a new leader) becomes `owner`'s.
    fn owned_elsewhere(&mut self, session: SessionId, owner: i64) -> bool {
        if self.mode != Mode::Leader {
            return false;
        }
        match self.session_owner.get(&session) {
            Some(&o) => o != owner,
            None => {
                self.session_owner.insert(session, owner);
                false
            }
        }
    }

    /// A leader: a learner's PING reported these sessions alive. Returns whether the session
    /// is alive.
    pub fn touch_session(&mut self, session: SessionId, timeout_ms: i32, now_ms: i64) -> bool {
        self.sessions.touch(session, timeout_ms, now_ms)
    }

    /// A learner: the sessions its clients used since the last call, for the next PING.
    pub fn take_touches(&mut self) -> Vec<(SessionId, i32)> {
        std::mem::take(&mut self.touched).into_iter().collect()
    }

    /// Closes every client connection (the server leaves its role); forwarded requests are
    /// forgotten, their clients will retry elsewhere.
    pub fn close_all(&mut self, out: &mut Vec<Output>) {
        let all: Vec<CnxnId> = self.cnxns.keys().copied().collect();
        for cnxn in all {
            out.push(Output::Close { cnxn });
            self.on_closed(cnxn);
        }
        self.forwarded.clear();
        self.pending_syncs.clear();
        self.revalidating.clear();
        self.touched.clear();
    }

    /// The whole tree and its sessions, for a learner's SNAP.
    pub fn snapshot_data(&self) -> crate::persistence::SnapshotData {
        let sessions: Vec<(SessionId, i32)> =
            self.sessions.iter().map(|s| (s.id, s.timeout_ms)).collect();
        crate::persistence::SnapshotData::capture(&self.tree, &sessions)
    }

    /// The tree and sessions in the snapshot file format, and the zxid they are at.
    pub fn snapshot_bytes(&self) -> (i64, Vec<u8>) {
        let snap = self.snapshot_data();
        (snap.zxid(), snap.to_bytes())
    }

    /// A learner replaces its tree with the leader's snapshot.
    pub fn install_tree(&mut self, tree: DataTree, sessions: &[(SessionId, i32)], now_ms: i64) {
        assert!(self.pending.is_empty(), "a learner prepares nothing");
        self.tree = tree;
        self.tree
            .set_extended_types(self.settings.prep.extended_types);
        self.last_zxid = self.tree.last_processed_zxid();
        self.sessions.clear();
        for &(id, timeout_ms) in sessions {
            self.sessions.track(id, timeout_ms, now_ms);
        }
        self.outstanding = Outstanding::default();
        self.committed_log.clear();
        self.capture = None;
    }

    /// What the 4lw report about the role (set by the quorum layer).
    pub fn set_quorum_info(&mut self, info: Option<super::QuorumInfo>) {
        self.quorum_info = info;
    }

    /// Client connections, for the quorum layer's 4lw numbers.
    pub fn connection_count(&self) -> usize {
        self.cnxns.len()
    }

    /// A read-only server accepts only clients that allow it, with sessions of its own.
    fn read_only_connect(
        &mut self,
        now_ms: i64,
        cnxn: CnxnId,
        req: &ConnectRequest,
        timeout_ms: i32,
        out: &mut Vec<Output>,
    ) {
        if req.read_only != Some(true) {
            info!("Refusing session request for not-read-only client");
            out.push(Output::Close { cnxn });
            return;
        }
        let id = if req.session_id != 0 && req.passwd[..] == session_password(req.session_id)[..] {
            req.session_id
        } else {
            self.sessions.allocate_id()
        };
        if self.sessions.get(id).is_none() {
            self.read_only_sessions.push(id);
        }
        self.sessions.track(id, timeout_ms, now_ms);
        self.bind_session(cnxn, id, timeout_ms);
        let mut resp = self.connect_response(id, timeout_ms, req.read_only);
        resp.read_only = Some(true);
        self.send_connected(cnxn, resp, false, out);
    }

    /// Registers a forwarded write; its commit (`apply_committed`) answers it.
    fn forward(
        &mut self,
        session: SessionId,
        cxid: i32,
        type_: i32,
        body: Bytes,
        auth: Vec<Id>,
        origin: Origin,
    ) -> Ticket {
        self.forwarded.insert((session, cxid), origin);
        self.forwarded_out.push(Output::Forward {
            session,
            cxid,
            type_,
            body,
            auth,
        });
        Ticket::Forwarded(cxid)
    }
}

fn error_txn(code: Code) -> (i32, TxnBody) {
    (
        op::ERROR,
        TxnBody::Error(crate::jute::txn::ErrorTxn { err: code.as_i32() }),
    )
}

/// The queue ticket a committed transaction answers.
fn ticket_of(forwarded: bool, header: &TxnHeader) -> Ticket {
    if forwarded {
        Ticket::Forwarded(header.cxid)
    } else {
        Ticket::Zxid(header.zxid)
    }
}

/// The reply to an applied write, from the tree's result (FinalRequestProcessor).
fn write_reply(op_code: i32, txn_type: i32, result: &ProcessTxnResult) -> (Code, Response) {
    if txn_type == op::ERROR {
        return (result.err, Response::Empty);
    }
    let body = match op_code {
        op::CREATE => Response::Create(result.path.clone()),
        op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => {
            Response::Create2(result.path.clone(), result.stat.clone().unwrap_or_default())
        }
        op::SET_DATA | op::SET_ACL | op::CHECK => {
            Response::Stat(result.stat.clone().unwrap_or_default())
        }
        op::MULTI => {
            return (
                Code::Ok,
                Response::Multi(result.multi.iter().map(multi_result).collect()),
            )
        }
        _ => Response::Empty,
    };
    (result.err, body)
}

fn multi_result(sub: &ProcessTxnResult) -> MultiResult {
    match sub.type_ {
        op::CHECK => MultiResult::Check,
        op::CREATE => MultiResult::Create(sub.path.clone()),
        op::CREATE2 | op::CREATE_TTL | op::CREATE_CONTAINER => {
            MultiResult::Create2(sub.path.clone(), sub.stat.clone().unwrap_or_default())
        }
        op::DELETE | op::DELETE_CONTAINER => MultiResult::Delete,
        op::SET_DATA => MultiResult::SetData(sub.stat.clone().unwrap_or_default()),
        _ => MultiResult::Error(sub.err),
    }
}
