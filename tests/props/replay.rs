//! Log replay gives the core's tree. Random sessions and writes (every create mode, ephemerals,
//! containers, TTL nodes, setACL, multis, closeSession, expiry, container cleanup) run through
//! `ZooKeeperServer`; the transactions it appends are written with `TxnLogWriter` (rolled at
//! each snapshot the core hands over, and at random), read back with `TxnLogReader`, and
//! applied to fresh trees with `DataTree::process_txn`. Then the data directory as a whole (the
//! core's snapshots written as the snapshot thread writes them, plus the log) is restored with
//! `FileTxnSnapLog::restore`. Every way must give the core's own tree: same digest, same full
//! dump (paths, data, ACLs, stats, children), same indexes.

use crate::generators::{pick, small};
use crate::harness::{dump, indexes, Harness, TempDir};
use bytes::Bytes;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::collections::BTreeMap;
use zabd::config::Config;
use zabd::jute::data::{perms, Acl};
use zabd::jute::proto::{
    op, CheckVersionRequest, CreateRequest, CreateTtlRequest, DeleteRequest, Request,
    SetAclRequest, SetDataRequest,
};
use zabd::jute::txn::{TxnBody, TxnEntry};
use zabd::persistence::{FileTxnSnapLog, TxnLogOptions, TxnLogReader, TxnLogWriter};
use zabd::server::Input;
use zabd::tree::DataTree;

#[derive(Clone, Debug)]
pub enum ROp {
    /// A request on session 0 or 1.
    Write(u8, Request),
    /// The session's client closes it.
    Close(u8),
    /// The session's connection drops and the session expires.
    Expire(u8),
    /// Time passes (container and TTL cleanup).
    Tick(i64),
    /// Start a log file here.
    Roll,
}

fn path(g: &mut Gen) -> String {
    let depth = small(g, 2) + 1;
    (0..depth)
        .map(|_| format!("/{}", pick(g, &["a", "b", "c"])))
        .collect()
}

fn data(g: &mut Gen) -> Option<Bytes> {
    if u8::arbitrary(g) % 5 == 0 {
        None
    } else {
        Some(Bytes::from(
            Vec::<u8>::arbitrary(g)
                .into_iter()
                .take(6)
                .collect::<Vec<u8>>(),
        ))
    }
}

fn acl(g: &mut Gen) -> Vec<Acl> {
    match u8::arbitrary(g) % 3 {
        0 => Acl::read_unsafe(),
        1 => vec![Acl::new(perms::ALL, "ip", "127.0.0.1")],
        _ => Acl::open_unsafe(),
    }
}

fn version(g: &mut Gen) -> i32 {
    if u8::arbitrary(g) % 3 == 0 {
        i32::from(u8::arbitrary(g) % 2)
    } else {
        -1
    }
}

fn create(g: &mut Gen) -> Request {
    let path = path(g);
    let data = data(g);
    match u8::arbitrary(g) % 8 {
        m @ 0..=3 => Request::Create(
            pick(g, &[op::CREATE, op::CREATE2]),
            CreateRequest {
                path,
                data,
                acl: Acl::open_unsafe(),
                flags: i32::from(m),
            },
        ),
        4 | 5 => Request::Create(
            op::CREATE_CONTAINER,
            CreateRequest {
                path,
                data,
                acl: Acl::open_unsafe(),
                flags: 4,
            },
        ),
        _ => Request::CreateTtl(CreateTtlRequest {
            path,
            data,
            acl: Acl::open_unsafe(),
            flags: 5,
            ttl: i64::from(u8::arbitrary(g) % 4 + 1) * 500,
        }),
    }
}

fn write(g: &mut Gen, in_multi: bool) -> Request {
    match u8::arbitrary(g) % if in_multi { 4 } else { 5 } {
        0 => create(g),
        1 => Request::Delete(DeleteRequest {
            path: path(g),
            version: version(g),
        }),
        2 => Request::SetData(SetDataRequest {
            path: path(g),
            data: data(g),
            version: version(g),
        }),
        3 if in_multi => Request::Check(CheckVersionRequest {
            path: path(g),
            version: version(g),
        }),
        3 => Request::SetAcl(SetAclRequest {
            path: path(g),
            acl: acl(g),
            version: version(g),
        }),
        _ => {
            let n = small(g, 3) + 1;
            Request::Multi((0..n).map(|_| write(g, true)).collect())
        }
    }
}

impl Arbitrary for ROp {
    fn arbitrary(g: &mut Gen) -> ROp {
        let session = u8::arbitrary(g) % 2;
        match u8::arbitrary(g) % 20 {
            0 => ROp::Close(session),
            1 => ROp::Expire(session),
            2 => ROp::Tick(i64::from(u8::arbitrary(g)) * 20),
            3 => ROp::Roll,
            _ => ROp::Write(session, write(g, false)),
        }
    }
}

/// The core after `ops`, and where each log file starts (by index into the log).
fn run(ops: &[ROp], config: &Config) -> (Harness, Vec<usize>) {
    let mut h = Harness::new(config);
    let mut cnxns = [1u64, 2];
    let mut next_cnxn = 3;
    h.connect(1);
    h.connect(2);
    let mut rolls = Vec::new();
    for o in ops {
        match o {
            ROp::Write(s, req) => {
                h.call(cnxns[usize::from(*s)], req.clone());
            }
            ROp::Close(s) => {
                h.call(cnxns[usize::from(*s)], Request::CloseSession);
                h.step(Input::Closed {
                    cnxn: cnxns[usize::from(*s)],
                });
                cnxns[usize::from(*s)] = next_cnxn;
                h.connect(next_cnxn);
                next_cnxn += 1;
            }
            ROp::Expire(s) => {
                h.step(Input::Closed {
                    cnxn: cnxns[usize::from(*s)],
                });
                // The other session stays alive: its client pings (the timeout is 30 s).
                let other = cnxns[1 - usize::from(*s)];
                h.send(other, Request::Ping);
                h.tick(20_000);
                h.send(other, Request::Ping);
                h.tick(15_000);
                h.sync();
                cnxns[usize::from(*s)] = next_cnxn;
                h.connect(next_cnxn);
                next_cnxn += 1;
            }
            ROp::Tick(ms) => {
                for cnxn in cnxns {
                    h.send(cnxn, Request::Ping);
                }
                h.tick(*ms);
                h.sync();
            }
            ROp::Roll => rolls.push(h.log.len()),
        }
    }
    h.sync();
    (h, rolls)
}

fn apply_all(entries: &[TxnEntry], extended: bool) -> DataTree {
    let mut tree = DataTree::new();
    tree.set_extended_types(extended);
    for e in entries {
        let mut events = Vec::new();
        tree.process_txn(&e.header, &e.body, &|_, _| true, &mut events);
    }
    tree
}

fn same_tree(what: &str, a: &DataTree, b: &DataTree) -> Result<(), String> {
    if a.digest() != b.digest() {
        return Err(format!("{what}: digest {} != {}", a.digest(), b.digest()));
    }
    let (da, db) = (dump(a), dump(b));
    if da != db {
        let first = da.iter().zip(&db).find(|(x, y)| x != y);
        return Err(format!(
            "{what}: dumps differ ({} vs {} nodes); first difference {first:?}",
            da.len(),
            db.len()
        ));
    }
    if indexes(a) != indexes(b) {
        return Err(format!(
            "{what}: indexes differ: {:?} vs {:?}",
            indexes(a),
            indexes(b)
        ));
    }
    Ok(())
}

pub fn replays(ops: &[ROp]) -> Result<(), String> {
    let config = Config {
        extended_types_enabled: true,
        container_check_interval_ms: 1000,
        snap_count: 6,
        ..Config::default()
    };
    let (h, rolls) = run(ops, &config);
    let core_tree = h.server.tree();

    // The log through the writer and the reader.
    let dir = TempDir::new("replay");
    let log_config = Config {
        data_dir: dir.path().to_path_buf(),
        ..config.clone()
    };
    let db = FileTxnSnapLog::open(&log_config).map_err(|e| e.to_string())?;
    // As the server does on a fresh directory: restore writes snapshot.0 (without one, logs
    // alone are refused).
    db.restore(true).map_err(|e| e.to_string())?;
    let options = TxnLogOptions {
        prealloc_size_bytes: 4096,
        size_limit_bytes: None,
        force_sync: false,
    };
    let mut writer = TxnLogWriter::open(&db.log_dir, options).map_err(|e| e.to_string())?;
    let mut snapshots = h.snapshots.iter().peekable();
    for (i, e) in h.log.iter().enumerate() {
        // The sync thread rolls the log when a snapshot is handed over.
        while let Some(s) = snapshots.peek() {
            if e.header.zxid <= s.zxid {
                break;
            }
            writer.roll().map_err(|e| e.to_string())?;
            snapshots.next();
        }
        if rolls.contains(&i) {
            writer.roll().map_err(|e| e.to_string())?;
        }
        writer.append_one(e).map_err(|e| e.to_string())?;
    }
    writer.sync().map_err(|e| e.to_string())?;
    drop(writer);
    let (read, torn) = TxnLogReader::open(&db.log_dir, 0)
        .map_err(|e| e.to_string())?
        .read_all()
        .map_err(|e| e.to_string())?;
    if torn.is_some() {
        return Err(format!("a torn tail in a log written whole: {torn:?}"));
    }
    let read: Vec<TxnEntry> = read.into_iter().map(|t| t.entry).collect();
    if read != h.log {
        return Err(format!(
            "the log read back differs: {} transactions written, {} read",
            h.log.len(),
            read.len()
        ));
    }

    // Both ways of applying the transactions give the core's tree.
    same_tree("applied as logged", &apply_all(&h.log, true), core_tree)?;
    same_tree("applied as read back", &apply_all(&read, true), core_tree)?;

    // The data directory: the core's snapshots plus the log.
    for s in &h.snapshots {
        s.write(&db.snap_dir).map_err(|e| e.to_string())?;
    }
    let restored = db.restore(true).map_err(|e| e.to_string())?;
    same_tree("restored", &restored.tree, core_tree)?;
    let mut live: BTreeMap<i64, i32> = BTreeMap::new();
    for e in &h.log {
        match &e.body {
            TxnBody::CreateSession(s) => {
                live.insert(e.header.client_id, s.time_out);
            }
            TxnBody::CloseSession(_) => {
                live.remove(&e.header.client_id);
            }
            _ => {}
        }
    }
    let restored_sessions: BTreeMap<i64, i32> = restored.sessions.into_iter().collect();
    if restored_sessions != live {
        return Err(format!(
            "restored sessions {restored_sessions:?}, live {live:?}"
        ));
    }
    Ok(())
}

#[test]
fn log_replay_gives_the_same_tree() {
    fn prop(ops: Vec<ROp>) -> TestResult {
        match replays(&ops) {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(e),
        }
    }
    QuickCheck::new()
        .tests(120)
        .rng(Gen::new(50))
        .quickcheck(prop as fn(Vec<ROp>) -> TestResult);
}
