//! The core driven without threads or sockets, as src/server/tests.rs does, through the public
//! API only: inputs in, outputs collected; the log is "synced" whenever the test says so.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zabd::config::Config;
use zabd::jute::data::Acl;
use zabd::jute::proto::{ConnectRequest, ReplyHeader, Request, Response};
use zabd::jute::txn::TxnEntry;
use zabd::persistence::SnapshotData;
use zabd::server::{Input, Output, ZooKeeperServer};
use zabd::tree::DataTree;

pub const T0: i64 = 1_700_000_000_000;

pub struct Harness {
    pub server: ZooKeeperServer,
    pub now_ms: i64,
    /// Every transaction the core appended, in order.
    pub log: Vec<TxnEntry>,
    synced: usize,
    /// The snapshots the core handed over, in order.
    pub snapshots: Vec<SnapshotData>,
    /// Replies and events not yet taken, per connection.
    replies: BTreeMap<u64, Vec<(ReplyHeader, Response)>>,
    next_xid: i32,
    /// The session each connection's handshake was answered with.
    pub sessions: BTreeMap<u64, i64>,
}

impl Harness {
    pub fn new(config: &Config) -> Harness {
        Harness {
            server: ZooKeeperServer::new(config, T0),
            now_ms: T0,
            log: Vec::new(),
            synced: 0,
            snapshots: Vec::new(),
            replies: BTreeMap::new(),
            next_xid: 1,
            sessions: BTreeMap::new(),
        }
    }

    pub fn step(&mut self, input: Input) {
        let mut out = Vec::new();
        self.server.step(self.now_ms, input, &mut out);
        self.collect(out);
    }

    pub fn tick(&mut self, advance_ms: i64) {
        self.now_ms += advance_ms;
        let mut out = Vec::new();
        self.server.tick(self.now_ms, &mut out);
        self.collect(out);
    }

    fn collect(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Append { entries } => self.log.extend(entries),
                Output::Snapshot(s) => self.snapshots.push(*s),
                Output::Reply { cnxn, header, body } => {
                    self.replies.entry(cnxn).or_default().push((header, body))
                }
                Output::Connected { cnxn, resp, .. } => {
                    let header = ReplyHeader {
                        xid: 0,
                        zxid: 0,
                        err: 0,
                    };
                    let body = Response::Count(i32::from(resp.time_out > 0));
                    self.replies.entry(cnxn).or_default().push((header, body));
                    self.sessions.insert(cnxn, resp.session_id);
                }
                Output::Text { .. } | Output::Close { .. } => {}
                Output::Forward { .. } | Output::Revalidate { .. } => {
                    panic!("a standalone server forwards nothing")
                }
            }
        }
    }

    /// Reports everything appended so far durable.
    pub fn sync(&mut self) {
        if self.synced == self.log.len() {
            return;
        }
        self.synced = self.log.len();
        let zxid = self.log.last().expect("appended").header.zxid;
        self.step(Input::Persisted {
            zxid,
            sync: Default::default(),
        });
    }

    /// A new connection `cnxn` with a new session.
    pub fn connect(&mut self, cnxn: u64) {
        self.step(Input::Accepted {
            cnxn,
            peer: "127.0.0.1:5000".parse().unwrap(),
        });
        let req = ConnectRequest {
            time_out: 30_000,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
            ..ConnectRequest::default()
        };
        self.step(Input::Connect { cnxn, req });
        self.sync();
        self.replies.remove(&cnxn);
    }

    /// Sends a request, syncs, and returns its reply.
    pub fn call(&mut self, cnxn: u64, req: Request) -> (ReplyHeader, Response) {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.step(Input::Request { cnxn, xid, req });
        self.sync();
        let replies = self.replies.entry(cnxn).or_default();
        let at = replies
            .iter()
            .position(|(h, _)| h.xid == xid)
            .unwrap_or_else(|| panic!("no reply to xid {xid}"));
        let reply = replies.remove(at);
        replies.retain(|(h, _)| h.xid > xid);
        reply
    }

    /// Sends a request without waiting for it.
    pub fn send(&mut self, cnxn: u64, req: Request) {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.step(Input::Request { cnxn, xid, req });
    }
}

/// A node as a full dump shows it: path, data, ACL list, persisted stat, children.
pub type NodeDump = (
    String,
    Option<Bytes>,
    Vec<Acl>,
    zabd::jute::data::StatPersisted,
    Vec<String>,
);

/// Every node, depth-first, with everything that defines it.
pub fn dump(tree: &DataTree) -> Vec<NodeDump> {
    let mut nodes = Vec::new();
    tree.for_each_depth_first(|p, n| {
        let path = if p.is_empty() {
            "/".to_owned()
        } else {
            p.to_owned()
        };
        nodes.push((
            path,
            n.data.clone(),
            tree.acl(n).to_vec(),
            n.stat.clone(),
            n.children.iter().map(|c| c.to_string()).collect(),
        ));
    });
    nodes
}

/// Ephemerals by session, containers, TTL nodes, node count, last processed zxid.
pub type Indexes = (
    Vec<(i64, Vec<String>)>,
    Vec<String>,
    Vec<String>,
    usize,
    i64,
);

/// The tree's indexes, which a dump does not show. A session whose last ephemeral was deleted
/// keeps an empty entry until it closes, as in ZooKeeper, and loses it across a restart (also
/// as in ZooKeeper: a snapshot has no such list), so empty entries are left out.
pub fn indexes(tree: &DataTree) -> Indexes {
    let ephemerals = tree
        .ephemerals_by_session()
        .filter(|(_, paths)| !paths.is_empty())
        .map(|(s, paths)| (s, paths.into_iter().map(str::to_owned).collect()))
        .collect();
    (
        ephemerals,
        tree.containers(),
        tree.ttls(),
        tree.node_count(),
        tree.last_processed_zxid(),
    )
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("zabd-props-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
