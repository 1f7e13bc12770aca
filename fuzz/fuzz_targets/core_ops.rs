//! The core, `server::ZooKeeperServer`, driven without threads or sockets (as
//! src/server/tests.rs does): the input is a program of operations on a handful of
//! connections, with paths from a small alphabet.
//!
//! Byte 0 picks settings (extended types, quota enforcement, skipACL). Then each operation is
//! one opcode byte and its argument bytes; bit 7 of the opcode byte of a write means "do not
//! report it durable yet", so writes pile up behind the log and later ones are prepared against
//! outstanding changes (the hardest part of the pipeline). Operations: connect a new session,
//! reconnect a known one (right or wrong password), create (every mode, create/create2/
//! createContainer/createTTL), delete, setData, setACL, multi, reads (getData, exists,
//! getChildren(2), getACL, getAllChildrenNumber, getEphemerals, multiRead, sync, check) with
//! watches, addWatch/removeWatches/checkWatches/setWatches, addauth, closeSession, closing a
//! connection, the passing of time (session expiry, container and TTL cleanup through
//! `tick`), persisting part of the log, malformed requests and four-letter words.
//!
//! Checked after every operation, through the public API:
//! - the data tree's structure (common/invariants.rs: every node's parent exists and lists it,
//!   numChildren is the children list's length, no node unreachable from the root, the
//!   incremental digest, the ephemeral/container/TTL indexes);
//! - every ephemeral node's owner is a live session: its createSession was applied and its
//!   closeSession was not (a pending closeSession leaves it live);
//! - a node's cversion never decreases while the node exists (same czxid);
//! - on each connection, replies carry strictly increasing xids;
//! - once everything is durable: no transaction is pending, and every request on a connection
//!   still open has been answered.
//!
//! Quorum packets and election notifications are not driven here: there is no ensemble yet.
#![no_main]

#[path = "common/invariants.rs"]
mod invariants;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use zabd::config::{Config, FourLetterWhitelist};
use zabd::jute::data::{perms, Acl};
use zabd::jute::proto::{
    op, AddWatchRequest, AuthPacket, CheckVersionRequest, ConnectRequest, CreateRequest,
    CreateTtlRequest, DeleteRequest, PathRequest, PathWatchRequest, Request, SetAclRequest,
    SetDataRequest, SetWatches2, WatchesRequest,
};
use zabd::jute::txn::{TxnBody, TxnEntry};
use zabd::jute::DecodeError;
use zabd::server::{Input, Output, ZooKeeperServer};
use zabd::tree::acl::digest;
use zabd::tree::EphemeralType;

const T0: i64 = 1_700_000_000_000;
const OPS_MAX: usize = 400;

/// Reads operation arguments; zeros once the input is used up.
struct Bytes0<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes0<'_> {
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[usize::from(self.u8()) % items.len()]
    }
}

const NAMES: [&str; 3] = ["a", "b", "c"];
const ODD_PATHS: [&str; 14] = [
    "/",
    "/zookeeper",
    "/zookeeper/quota",
    "/zookeeper/config",
    "/zookeeper/quota/a",
    "/zookeeper/quota/a/zookeeper_limits",
    "/zookeeper/quota/a/zookeeper_stats",
    "/a/",
    "//a",
    "/a/./b",
    "/a/..",
    "a",
    "",
    "/a\u{0}b",
];

fn path(b: &mut Bytes0<'_>) -> String {
    let x = b.u8();
    if x >= 0xf0 {
        return ODD_PATHS[usize::from(x) % ODD_PATHS.len()].to_owned();
    }
    let depth = usize::from(x % 3) + 1;
    let mut digits = x / 3;
    let mut p = String::new();
    for _ in 0..depth {
        p.push('/');
        p.push_str(NAMES[usize::from(digits % 3)]);
        digits /= 3;
    }
    p
}

fn data(b: &mut Bytes0<'_>) -> Option<Bytes> {
    let x = b.u8();
    match x % 8 {
        0 => None,
        n => Some(Bytes::from(vec![x; usize::from(n - 1)])),
    }
}

fn version(b: &mut Bytes0<'_>) -> i32 {
    let x = b.u8();
    if x < 0xa0 {
        -1
    } else {
        i32::from(x % 4)
    }
}

const USERS: [&str; 2] = ["alice:secret", "bob:hunter2"];

fn acl(b: &mut Bytes0<'_>) -> Vec<Acl> {
    match b.u8() % 8 {
        0..=2 => Acl::open_unsafe(),
        3 => Acl::read_unsafe(),
        4 => vec![Acl::new(perms::ALL, "auth", "")],
        5 => vec![Acl::new(perms::ALL, "digest", &digest(USERS[0]))],
        6 => vec![Acl::new(perms::READ | perms::CREATE, "world", "anyone")],
        _ => vec![
            Acl::new(perms::ALL, "ip", "127.0.0.1"),
            Acl::new(perms::READ, "world", "anyone"),
        ],
    }
}

fn create(b: &mut Bytes0<'_>) -> Request {
    let path = path(b);
    let data = data(b);
    let acl = acl(b);
    let x = b.u8();
    let flags = i32::from(x % 8);
    match (x >> 3) % 4 {
        0 => Request::Create(
            op::CREATE,
            CreateRequest {
                path,
                data,
                acl,
                flags,
            },
        ),
        1 => Request::Create(
            op::CREATE2,
            CreateRequest {
                path,
                data,
                acl,
                flags,
            },
        ),
        2 => Request::Create(
            op::CREATE_CONTAINER,
            CreateRequest {
                path,
                data,
                acl,
                flags: 4,
            },
        ),
        _ => Request::CreateTtl(CreateTtlRequest {
            path,
            data,
            acl,
            flags: if flags % 2 == 0 { 5 } else { 6 },
            ttl: i64::from(b.u8()) * 100 - 100,
        }),
    }
}

fn multi_sub(b: &mut Bytes0<'_>) -> Request {
    match b.u8() % 4 {
        0 => create(b),
        1 => Request::Delete(DeleteRequest {
            path: path(b),
            version: version(b),
        }),
        2 => Request::SetData(SetDataRequest {
            path: path(b),
            data: data(b),
            version: version(b),
        }),
        _ => Request::Check(CheckVersionRequest {
            path: path(b),
            version: version(b),
        }),
    }
}

fn read_request(b: &mut Bytes0<'_>) -> Request {
    let pw = |b: &mut Bytes0<'_>| PathWatchRequest {
        path: path(b),
        watch: b.u8().is_multiple_of(2),
    };
    match b.u8() % 11 {
        0 => Request::GetData(pw(b)),
        1 => Request::Exists(pw(b)),
        2 => Request::GetChildren(pw(b)),
        3 => Request::GetChildren2(pw(b)),
        4 => Request::GetAcl(PathRequest { path: path(b) }),
        5 => Request::GetAllChildrenNumber(PathRequest { path: path(b) }),
        6 => Request::GetEphemerals(PathRequest { path: path(b) }),
        7 => Request::Sync(PathRequest { path: path(b) }),
        8 => Request::Check(CheckVersionRequest {
            path: path(b),
            version: version(b),
        }),
        9 => Request::WhoAmI,
        _ => {
            let n = b.u8() % 3 + 1;
            let ops = (0..n)
                .map(|_| {
                    if b.u8().is_multiple_of(2) {
                        Request::GetData(pw(b))
                    } else {
                        Request::GetChildren(pw(b))
                    }
                })
                .collect();
            Request::MultiRead(ops)
        }
    }
}

fn watch_request(b: &mut Bytes0<'_>) -> Request {
    match b.u8() % 4 {
        0 => Request::AddWatch(AddWatchRequest {
            path: path(b),
            mode: i32::from(b.u8() % 3),
        }),
        1 => Request::RemoveWatches(WatchesRequest {
            path: path(b),
            type_: i32::from(b.u8() % 6),
        }),
        2 => Request::CheckWatches(WatchesRequest {
            path: path(b),
            type_: i32::from(b.u8() % 6),
        }),
        _ => {
            let mut w = SetWatches2 {
                relative_zxid: i64::from(b.u8()),
                ..SetWatches2::default()
            };
            for _ in 0..b.u8() % 4 {
                let p = path(b);
                match b.u8() % 5 {
                    0 => w.data_watches.push(p),
                    1 => w.exist_watches.push(p),
                    2 => w.child_watches.push(p),
                    3 => w.persistent_watches.push(p),
                    _ => w.persistent_recursive_watches.push(p),
                }
            }
            Request::SetWatches2(w)
        }
    }
}

#[derive(Default)]
struct Cnxn {
    session: Option<i64>,
    next_xid: i32,
    /// Requests sent and not answered.
    waiting: BTreeSet<i32>,
    last_reply_xid: i32,
}

struct Sim {
    server: ZooKeeperServer,
    now_ms: i64,
    next_cnxn: u64,
    cnxns: BTreeMap<u64, Cnxn>,
    /// Appended and not yet reported durable.
    unsynced: Vec<TxnEntry>,
    /// Sessions whose createSession was applied, and those whose closeSession was.
    created: BTreeSet<i64>,
    closed: BTreeSet<i64>,
    /// (session, password) of every session handed out.
    known: Vec<(i64, Bytes)>,
    /// (path, czxid) -> the last cversion seen.
    cversions: HashMap<(String, i64), i32>,
}

impl Sim {
    fn new(config: &Config) -> Sim {
        Sim {
            server: ZooKeeperServer::new(config, T0),
            now_ms: T0,
            next_cnxn: 1,
            cnxns: BTreeMap::new(),
            unsynced: Vec::new(),
            created: BTreeSet::new(),
            closed: BTreeSet::new(),
            known: Vec::new(),
            cversions: HashMap::new(),
        }
    }

    fn step(&mut self, input: Input) {
        let mut out = Vec::new();
        self.server.step(self.now_ms, input, &mut out);
        self.absorb(out);
    }

    fn tick(&mut self, advance_ms: i64) {
        self.now_ms += advance_ms;
        let mut out = Vec::new();
        self.server.tick(self.now_ms, &mut out);
        self.absorb(out);
    }

    /// Plays the client thread's part: remembers appends, checks replies, and reports the
    /// connections the core asked to close as closed.
    fn absorb(&mut self, out: Vec<Output>) {
        let mut closes = Vec::new();
        for o in out {
            match o {
                Output::Append { entries } => {
                    let last = self.unsynced.last().map(|e| e.header.zxid);
                    for e in &entries {
                        if let Some(last) = last {
                            assert!(e.header.zxid > last, "zxids appended out of order");
                        }
                    }
                    self.unsynced.extend(entries);
                }
                Output::Snapshot(_) => {}
                Output::Connected { cnxn, resp, close } => {
                    if close {
                        closes.push(cnxn);
                    } else if let Some(c) = self.cnxns.get_mut(&cnxn) {
                        c.session = Some(resp.session_id);
                        if !self.known.iter().any(|(s, _)| *s == resp.session_id) {
                            self.known.push((resp.session_id, resp.passwd.clone()));
                        }
                    }
                }
                Output::Reply { cnxn, header, .. } => {
                    if let Some(c) = self.cnxns.get_mut(&cnxn) {
                        if header.xid >= 0 {
                            assert!(
                                header.xid > c.last_reply_xid,
                                "connection {cnxn}: reply to xid {} after xid {}",
                                header.xid,
                                c.last_reply_xid
                            );
                            c.last_reply_xid = header.xid;
                            assert!(
                                c.waiting.remove(&header.xid),
                                "connection {cnxn}: reply to xid {} never asked",
                                header.xid
                            );
                        }
                    }
                }
                Output::Text { cnxn, .. } | Output::Close { cnxn } => closes.push(cnxn),
                Output::Forward { .. } | Output::Revalidate { .. } => {
                    panic!("a standalone server forwards nothing")
                }
            }
        }
        for cnxn in closes {
            if self.cnxns.remove(&cnxn).is_some() {
                self.step(Input::Closed { cnxn });
            }
        }
    }

    /// Reports every transaction up to `count` of the unsynced ones durable.
    fn persist(&mut self, count: usize) {
        let count = count.min(self.unsynced.len());
        if count == 0 {
            return;
        }
        let done: Vec<TxnEntry> = self.unsynced.drain(..count).collect();
        for e in &done {
            match e.body {
                TxnBody::CreateSession(_) => {
                    self.created.insert(e.header.client_id);
                }
                TxnBody::CloseSession(_) => {
                    self.closed.insert(e.header.client_id);
                }
                _ => {}
            }
        }
        let zxid = done.last().unwrap().header.zxid;
        self.step(Input::Persisted {
            zxid,
            sync: Default::default(),
        });
    }

    fn persist_all(&mut self) {
        while !self.unsynced.is_empty() {
            self.persist(self.unsynced.len());
        }
    }

    fn accept(&mut self, b: &mut Bytes0<'_>) -> u64 {
        let cnxn = self.next_cnxn;
        self.next_cnxn += 1;
        let peer = if b.u8().is_multiple_of(4) {
            "10.1.2.3:4000"
        } else {
            "127.0.0.1:5000"
        };
        self.cnxns.insert(
            cnxn,
            Cnxn {
                next_xid: 1,
                ..Cnxn::default()
            },
        );
        self.step(Input::Accepted {
            cnxn,
            peer: peer.parse().unwrap(),
        });
        cnxn
    }

    /// A connection with an established session, chosen by the next byte.
    fn session_cnxn(&mut self, b: &mut Bytes0<'_>) -> Option<u64> {
        let ready: Vec<u64> = self
            .cnxns
            .iter()
            .filter(|(_, c)| c.session.is_some())
            .map(|(id, _)| *id)
            .collect();
        if ready.is_empty() {
            b.u8();
            return None;
        }
        Some(*b.pick(&ready))
    }

    fn request(&mut self, cnxn: u64, req: Request) {
        let Some(c) = self.cnxns.get_mut(&cnxn) else {
            return;
        };
        let xid = c.next_xid;
        c.next_xid += 1;
        c.waiting.insert(xid);
        self.step(Input::Request { cnxn, xid, req });
    }

    fn check(&mut self) {
        let nodes = invariants::check_tree(self.server.tree(), true);
        let extended = self.server.tree().extended_types();
        let mut alive = BTreeSet::new();
        for (path, n) in &nodes {
            let owner = n.stat.ephemeral_owner;
            if EphemeralType::of(owner, extended) == EphemeralType::Normal {
                assert!(
                    self.created.contains(&owner) && !self.closed.contains(&owner),
                    "ephemeral {path} owned by 0x{owner:x}, which is not a live session"
                );
            }
            let cversion = self.server.tree().stat(path).unwrap().cversion;
            let id = (path.clone(), n.stat.czxid);
            if let Some(&before) = self.cversions.get(&id) {
                assert!(
                    cversion >= before,
                    "{path}: cversion went from {before} to {cversion}"
                );
            }
            self.cversions.insert(id.clone(), cversion);
            alive.insert(id);
        }
        self.cversions.retain(|id, _| alive.contains(id));
        if self.unsynced.is_empty() {
            assert_eq!(
                self.server.pending_count(),
                0,
                "transactions pending with none unsynced"
            );
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut b = Bytes0 {
        data: input,
        pos: 0,
    };
    let settings = b.u8();
    let config = Config {
        four_letter_whitelist: FourLetterWhitelist::All,
        extended_types_enabled: settings & 1 != 0,
        enforce_quota: settings & 2 != 0,
        skip_acl: settings & 0x1c == 0x1c,
        container_check_interval_ms: 1000,
        snap_count: 16,
        ..Config::default()
    };
    let mut sim = Sim::new(&config);
    let mut ops = 0;
    while b.more() && ops < OPS_MAX {
        ops += 1;
        let code = b.u8();
        let hold = code & 0x80 != 0;
        let mut wrote = false;
        match code & 0x0f {
            0 => {
                let cnxn = sim.accept(&mut b);
                let time_out = i32::from(b.u8()) * 500;
                let req = ConnectRequest {
                    time_out,
                    passwd: Bytes::from_static(&[0; 16]),
                    read_only: Some(false),
                    ..ConnectRequest::default()
                };
                sim.step(Input::Connect { cnxn, req });
                wrote = true;
            }
            1 => {
                if sim.known.is_empty() {
                    continue;
                }
                let (session_id, passwd) = b.pick(&sim.known).clone();
                let wrong = b.u8().is_multiple_of(4);
                let cnxn = sim.accept(&mut b);
                let req = ConnectRequest {
                    time_out: 30_000,
                    session_id,
                    passwd: if wrong {
                        Bytes::from_static(&[1; 16])
                    } else {
                        passwd
                    },
                    read_only: Some(false),
                    ..ConnectRequest::default()
                };
                sim.step(Input::Connect { cnxn, req });
            }
            2..=7 => {
                let Some(cnxn) = sim.session_cnxn(&mut b) else {
                    continue;
                };
                let req = match code & 0x0f {
                    2 | 3 => create(&mut b),
                    4 => Request::Delete(DeleteRequest {
                        path: path(&mut b),
                        version: version(&mut b),
                    }),
                    5 => Request::SetData(SetDataRequest {
                        path: path(&mut b),
                        data: data(&mut b),
                        version: version(&mut b),
                    }),
                    6 => Request::SetAcl(SetAclRequest {
                        path: path(&mut b),
                        acl: acl(&mut b),
                        version: version(&mut b),
                    }),
                    _ => {
                        let n = b.u8() % 4 + 1;
                        Request::Multi((0..n).map(|_| multi_sub(&mut b)).collect())
                    }
                };
                sim.request(cnxn, req);
                wrote = true;
            }
            8 => {
                let Some(cnxn) = sim.session_cnxn(&mut b) else {
                    continue;
                };
                sim.request(cnxn, Request::CloseSession);
                wrote = true;
            }
            9 => {
                let advance = i64::from(b.u8()) * 250;
                sim.tick(advance);
                wrote = true;
            }
            10 => {
                let ids: Vec<u64> = sim.cnxns.keys().copied().collect();
                if ids.is_empty() {
                    continue;
                }
                let cnxn = *b.pick(&ids);
                sim.cnxns.remove(&cnxn);
                sim.step(Input::Closed { cnxn });
            }
            11 => {
                let Some(cnxn) = sim.session_cnxn(&mut b) else {
                    continue;
                };
                let req = read_request(&mut b);
                sim.request(cnxn, req);
            }
            12 => {
                let Some(cnxn) = sim.session_cnxn(&mut b) else {
                    continue;
                };
                let req = watch_request(&mut b);
                sim.request(cnxn, req);
            }
            13 => {
                let Some(cnxn) = sim.session_cnxn(&mut b) else {
                    continue;
                };
                let x = b.u8();
                let auth = match x % 4 {
                    0 | 1 => USERS[usize::from(x % 2)].as_bytes().to_vec(),
                    2 => b"alice:wrong".to_vec(),
                    _ => Vec::new(),
                };
                let scheme = if x % 8 == 7 { "nosuch" } else { "digest" };
                // Auth uses its own xid (-4) and is answered at once.
                let req = Request::Auth(AuthPacket {
                    type_: 0,
                    scheme: scheme.into(),
                    auth: auth.into(),
                });
                sim.step(Input::Request { cnxn, xid: -4, req });
            }
            14 => {
                let n = usize::from(b.u8());
                sim.persist(n);
            }
            _ => {
                if b.u8().is_multiple_of(2) {
                    let Some(cnxn) = sim.session_cnxn(&mut b) else {
                        continue;
                    };
                    let xid = sim.cnxns[&cnxn].next_xid;
                    sim.cnxns.get_mut(&cnxn).unwrap().next_xid += 1;
                    sim.cnxns.get_mut(&cnxn).unwrap().waiting.insert(xid);
                    let error = DecodeError::UnknownOpcode(99);
                    sim.step(Input::BadRequest {
                        cnxn,
                        xid,
                        op: 99,
                        error,
                    });
                } else {
                    let words = [
                        "dump", "wchp", "wchc", "wchs", "cons", "mntr", "stat", "srvr", "conf",
                    ];
                    let word: [u8; 4] = b.pick(&words).as_bytes().try_into().unwrap();
                    let cnxn = sim.accept(&mut b);
                    sim.step(Input::FourLetter {
                        cnxn,
                        word,
                        disk: None,
                    });
                }
            }
        }
        if wrote && !hold {
            sim.persist_all();
        }
        sim.check();
    }
    sim.persist_all();
    sim.check();
    for (id, c) in &sim.cnxns {
        assert!(
            c.waiting.is_empty(),
            "connection {id}: requests {:?} never answered",
            c.waiting
        );
    }
});
