//! What a follower's synchronization does to the data directory (ZooKeeper's TRUNC and SNAP,
//! the epoch files, the committed-log window), checked by restoring afterwards: the restore
//! must give exactly the tree the history on disk describes.

use super::database::{restore_snapshot_bytes, FileLog, FileTxnSnapLog, SnapshotData};
use super::epoch::{read_epoch, write_epoch, EpochFile};
use super::test_dir::TempDir;
use super::{find_snapshots, list_log_files, snapshot_file_name, RestoreError, COMMIT_LOG_COUNT};
use crate::config::Config;
use crate::jute::data::{perms, Acl, Stat};
use crate::jute::proto::op;
use crate::jute::txn::{
    CloseSessionTxn, CreateSessionTxn, CreateTxn, DeleteTxn, SetDataTxn, TxnBody, TxnEntry,
    TxnHeader,
};
use crate::threads::TxnLogWriter as _;
use crate::tree::DataTree;
use bytes::Bytes;
use std::collections::BTreeMap;

fn config(dir: &TempDir) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        pre_alloc_size_bytes: 4096,
        ..Config::default()
    }
}

/// Every node's path, data, stat and ACL, for comparing trees exactly.
type Dump = Vec<(String, Option<Bytes>, Stat, Vec<Acl>)>;

fn dump(tree: &DataTree) -> Dump {
    let mut out = Vec::new();
    tree.for_each_depth_first(|p, n| {
        out.push((
            p.to_owned(),
            n.data.clone(),
            tree.stat_of(n),
            tree.acl(n).to_vec(),
        ))
    });
    out
}

/// A history built in memory: the live tree and sessions, and the transactions to log.
struct History {
    tree: DataTree,
    sessions: BTreeMap<i64, i32>,
    zxid: i64,
}

impl History {
    fn new() -> History {
        History {
            tree: DataTree::new(),
            sessions: BTreeMap::new(),
            zxid: 0,
        }
    }

    /// Applies `body` as the next transaction (or as `zxid`, when given) and returns it.
    fn apply_at(&mut self, zxid: i64, client_id: i64, mut body: TxnBody) -> TxnEntry {
        assert!(zxid > self.zxid);
        self.zxid = zxid;
        // Log the explicit new parent cversion, as prep does.
        if let TxnBody::Create(_, c) = &mut body {
            let parent = crate::tree::path::parent(&c.path);
            c.parent_cversion = self.tree.node(parent).map_or(0, |p| p.stat.cversion) + 1;
        }
        match &body {
            TxnBody::CreateSession(s) => {
                self.sessions.insert(client_id, s.time_out);
            }
            TxnBody::CloseSession(_) => {
                self.sessions.remove(&client_id);
            }
            _ => {}
        }
        let header = TxnHeader {
            client_id,
            cxid: 0,
            zxid,
            time: 1_700_000_000_000 + zxid,
            type_: body.type_code(),
        };
        self.tree
            .process_txn(&header, &body, &|_, _| false, &mut Vec::new());
        TxnEntry {
            header,
            body,
            digest: None,
        }
    }

    fn apply(&mut self, client_id: i64, body: TxnBody) -> TxnEntry {
        self.apply_at(self.zxid + 1, client_id, body)
    }

    fn sessions(&self) -> Vec<(i64, i32)> {
        self.sessions.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn snapshot(&self) -> SnapshotData {
        SnapshotData::capture(&self.tree, &self.sessions())
    }
}

fn create(path: &str, data: &[u8]) -> TxnBody {
    create_with(path, data, Acl::open_unsafe(), false)
}

fn create_with(path: &str, data: &[u8], acl: Vec<Acl>, ephemeral: bool) -> TxnBody {
    TxnBody::Create(
        op::CREATE,
        CreateTxn {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            acl,
            ephemeral,
            parent_cversion: -1,
        },
    )
}

fn set(path: &str, data: &[u8], version: i32) -> TxnBody {
    TxnBody::SetData(SetDataTxn {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        version,
    })
}

/// A few hundred nodes: nested ones, ephemerals of two sessions, nodes with their own ACLs,
/// null data, deletions and updates.
fn populate(h: &mut History, entries: &mut Vec<TxnEntry>) {
    const SESSION_A: i64 = 0x100_0000_0001;
    const SESSION_B: i64 = 0x100_0000_0002;
    let digest_acl = vec![
        Acl::new(perms::ALL, "digest", "user:smGaoVKd/cQkjm7b88GyorAUz20="),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    let ip_acl = vec![Acl::new(perms::READ | perms::WRITE, "ip", "127.0.0.1")];
    for (session, timeout) in [(SESSION_A, 30_000), (SESSION_B, 4_000)] {
        let body = TxnBody::CreateSession(CreateSessionTxn { time_out: timeout });
        entries.push(h.apply(session, body));
    }
    for a in 0..20 {
        let acl = match a % 3 {
            0 => Acl::open_unsafe(),
            1 => digest_acl.clone(),
            _ => ip_acl.clone(),
        };
        entries.push(h.apply(0, create_with(&format!("/a{a:02}"), b"top", acl, false)));
        for b in 0..12 {
            let path = format!("/a{a:02}/b{b:02}");
            entries.push(h.apply(0, create(&path, format!("{a}.{b}").as_bytes())));
        }
        let owner = if a % 2 == 0 { SESSION_A } else { SESSION_B };
        let eph = create_with(&format!("/a{a:02}/eph"), b"e", Acl::open_unsafe(), true);
        entries.push(h.apply(owner, eph));
    }
    entries.push(h.apply(
        0,
        TxnBody::Create(
            op::CREATE,
            CreateTxn {
                path: "/null".into(),
                data: None,
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            },
        ),
    ));
    for a in 0..20 {
        entries.push(h.apply(0, set(&format!("/a{a:02}/b03"), b"changed", 0)));
        let delete = TxnBody::Delete(DeleteTxn {
            path: format!("/a{a:02}/b07"),
        });
        entries.push(h.apply(0, delete));
    }
}

fn log_entries(log: &mut FileLog, entries: &[TxnEntry]) {
    log.append(entries).unwrap();
    log.sync().unwrap();
}

fn restore(db: &FileTxnSnapLog) -> super::Restored {
    match db.restore(false) {
        Ok(r) => r,
        Err(e) => panic!("restore failed: {e}"),
    }
}

fn log_starts(db: &FileTxnSnapLog) -> Vec<i64> {
    list_log_files(&db.log_dir)
        .unwrap()
        .into_iter()
        .map(|(z, _)| z)
        .collect()
}

fn snapshot_zxids(db: &FileTxnSnapLog) -> Vec<i64> {
    find_snapshots(&db.snap_dir)
        .unwrap()
        .into_iter()
        .map(|(z, _)| z)
        .collect()
}

// ---- snapshot bytes ----

/// A snapshot's bytes for the network are the bytes of its file, and load back to the same
/// tree (nodes, data, stats, ACLs, ephemerals, digest), sessions and zxid.
#[test]
fn snapshot_bytes_round_trip_and_match_the_file() {
    let mut h = History::new();
    let mut entries = Vec::new();
    populate(&mut h, &mut entries);
    assert!(h.tree.node_count() > 250, "{}", h.tree.node_count());
    let snap = h.snapshot();
    assert_eq!(snap.zxid(), h.zxid);
    let bytes = snap.to_bytes();

    let dir = TempDir::new("snap-bytes");
    let path = snap.write(dir.path()).unwrap();
    assert_eq!(path, dir.path().join(snapshot_file_name(h.zxid)));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the same bytes as the file"
    );

    let (tree, sessions) = restore_snapshot_bytes(&bytes, super::DEFAULT_MAX_BUFFER_BYTES, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tree.last_processed_zxid(), h.zxid);
    assert_eq!(dump(&tree), dump(&h.tree));
    assert_eq!(tree.digest(), h.tree.digest());
    assert_eq!(tree.node_count(), h.tree.node_count());
    assert_eq!(sessions, h.sessions());
    for session in [0x100_0000_0001, 0x100_0000_0002] {
        assert_eq!(tree.ephemerals(session), h.tree.ephemerals(session));
        assert_eq!(tree.ephemerals(session).len(), 10);
    }

    let parsed = SnapshotData::from_bytes(&bytes, super::DEFAULT_MAX_BUFFER_BYTES).unwrap();
    assert_eq!(parsed.zxid(), h.zxid);
    assert_eq!(parsed.to_bytes(), bytes);

    // Damage is detected, never loaded.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    assert!(restore_snapshot_bytes(&damaged, super::DEFAULT_MAX_BUFFER_BYTES, false).is_err());
    assert!(SnapshotData::from_bytes(&damaged, super::DEFAULT_MAX_BUFFER_BYTES).is_err());
    assert!(restore_snapshot_bytes(&bytes[..bytes.len() - 1], 1 << 20, false).is_err());
    // A limit below the largest buffer refuses it.
    assert!(restore_snapshot_bytes(&bytes, 4, false).is_err());
}

// ---- truncation ----

/// TRUNC: after `truncate_to(z)` the directory restores to the tree at z, whichever file
/// z's record is in, with the snapshots above z gone; the live writer then appends any zxid
/// above z into a new file, and a restore sees them.
#[test]
fn truncate_then_restore_gives_the_tree_at_that_zxid() {
    let dir = TempDir::new("truncate");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    let restored = restore(&db);
    let mut log = FileLog::new(&db, &config, restored.tree.last_processed_zxid()).unwrap();
    let mut h = History::new();
    let mut dumps = BTreeMap::new();
    // 60 transactions over three log files, with snapshots at 20 and 40 (the log rolls at
    // each, as the server does).
    for i in 1..=60 {
        let entry = h.apply(0, truncation_txn(i));
        log_entries(&mut log, &[entry]);
        dumps.insert(i, dump(&h.tree));
        if i == 20 || i == 40 {
            h.snapshot().write(&db.snap_dir).unwrap();
            log.roll().unwrap();
        }
    }
    assert_eq!(log.last_appended_zxid(), 60);
    assert_eq!(log_starts(&db), vec![1, 21, 41]);
    assert_eq!(snapshot_zxids(&db), vec![40, 20, 0]);

    // Into the middle file, below the newest snapshot.
    log.truncate_to(33).unwrap();
    assert_eq!(log.last_appended_zxid(), 33);
    assert_eq!(log_starts(&db), vec![1, 21]);
    assert_eq!(
        snapshot_zxids(&db),
        vec![20, 0],
        "snapshot 40 held txns after 33"
    );
    let r = restore(&db);
    assert_eq!(r.snapshot_zxid, 20);
    assert_eq!(r.tree.last_processed_zxid(), 33);
    assert_eq!(dump(&r.tree), dumps[&33]);

    // The next append starts a new file; any zxid above 33 (here the next epoch's first).
    let mut branch = h_at(33);
    let next = (1i64 << 32) | 1;
    let entry = branch.apply_at(next, 0, create("/epoch1", b"new"));
    // As a follower does: epoch 1's history is taken (NEWLEADER) before it is restorable.
    log.write_epoch(EpochFile::Accepted, 1).unwrap();
    log_entries(&mut log, std::slice::from_ref(&entry));
    log.write_epoch(EpochFile::Current, 1).unwrap();
    assert_eq!(log.last_appended_zxid(), next);
    assert_eq!(log_starts(&db), vec![1, 21, next]);
    let r = restore(&db);
    assert_eq!(r.tree.last_processed_zxid(), next);
    assert_eq!(dump(&r.tree), dump(&branch.tree));
    assert_eq!(r.recent_txns.last(), Some(&entry));

    // Exactly at a snapshot, and into the first file.
    log.truncate_to(20).unwrap();
    assert_eq!(log_starts(&db), vec![1]);
    assert_eq!(snapshot_zxids(&db), vec![20, 0]);
    let r = restore(&db);
    assert_eq!((r.snapshot_zxid, r.txns_replayed), (20, 0));
    assert_eq!(dump(&r.tree), dumps[&20]);
    log.truncate_to(7).unwrap();
    assert_eq!(snapshot_zxids(&db), vec![0]);
    let r = restore(&db);
    assert_eq!(r.tree.last_processed_zxid(), 7);
    assert_eq!(dump(&r.tree), dumps[&7]);
    let entry = h_at(7).apply(0, create("/after7", b""));
    log_entries(&mut log, &[entry]);
    let r = restore(&db);
    assert_eq!(r.tree.last_processed_zxid(), 8);
    assert!(r.tree.node("/after7").is_some());
    assert!(r.tree.node("/n8").is_none());
}

/// The truncation test's transaction `i`.
fn truncation_txn(i: i64) -> TxnBody {
    if i % 4 == 0 {
        set("/n1", format!("v{i}").as_bytes(), -1)
    } else {
        create(&format!("/n{i}"), b"x")
    }
}

/// The truncation test's history up to `zxid`.
fn h_at(zxid: i64) -> History {
    let mut h = History::new();
    for i in 1..=zxid {
        h.apply(0, truncation_txn(i));
    }
    h
}

/// A truncation point that is no logged zxid (here, past the end of epoch 1's transactions)
/// keeps the last one below it; one above the log changes nothing; one below every snapshot
/// is refused and changes nothing.
#[test]
fn truncate_edge_cases() {
    let dir = TempDir::new("truncate-edges");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    restore(&db);
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    log.write_epoch(EpochFile::Accepted, 2).unwrap();
    log.write_epoch(EpochFile::Current, 2).unwrap();
    let mut h = History::new();
    for zxid in [
        1 << 32 | 1,
        1 << 32 | 2,
        1 << 32 | 3,
        2 << 32 | 1,
        2 << 32 | 2,
    ] {
        let entry = h.apply_at(zxid, 0, create(&format!("/n{zxid:x}"), b""));
        log_entries(&mut log, &[entry]);
    }
    log.truncate_to(2 << 32 | 20).unwrap();
    assert_eq!(log.last_appended_zxid(), 2 << 32 | 2);
    assert_eq!(restore(&db).tree.last_processed_zxid(), 2 << 32 | 2);

    log.truncate_to(1 << 32 | 5).unwrap();
    assert_eq!(log.last_appended_zxid(), 1 << 32 | 3);
    let r = restore(&db);
    assert_eq!(r.tree.last_processed_zxid(), 1 << 32 | 3);
    assert!(r.tree.node("/n200000001").is_none());
    assert!(r.tree.node("/n100000003").is_some());

    // Only snapshots above the point: refused, nothing touched.
    SnapshotData::capture(&r.tree, &r.sessions)
        .write(&db.snap_dir)
        .unwrap();
    std::fs::remove_file(db.snap_dir.join(snapshot_file_name(0))).unwrap();
    let err = db.truncate_to(1 << 32).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("every snapshot is newer"), "{err}");
    assert_eq!(snapshot_zxids(&db), vec![(1 << 32) | 3]);
    assert_eq!(log_starts(&db), vec![(1 << 32) | 1]);
    assert_eq!(restore(&db).tree.last_processed_zxid(), (1 << 32) | 3);
}

// ---- installing a leader's snapshot ----

/// SNAP: a follower whose log holds a history partly unknown to the leader (its last two
/// transactions) installs the leader's snapshot; the directory then restores to exactly that
/// snapshot's tree (the older log file stays, ending before it), appends above it go to a new
/// file, and a restore replays them on top.
#[test]
fn install_snapshot_then_restore_then_append_then_restore() {
    let dir = TempDir::new("install");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    restore(&db);
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    // The follower's own history: 1..=12, then a snapshot at 12 and two more (divergent).
    let mut follower = History::new();
    for i in 1..=12 {
        let entry = follower.apply(0, create(&format!("/old{i}"), b"old"));
        log_entries(&mut log, &[entry]);
    }
    follower.snapshot().write(&db.snap_dir).unwrap();
    log.roll().unwrap();
    for i in 13..=14 {
        let entry = follower.apply(0, create(&format!("/old{i}"), b"diverged"));
        log_entries(&mut log, &[entry]);
    }
    assert_eq!(log_starts(&db), vec![1, 13]);

    // The leader's tree: a different history, whose zxid is above everything the follower
    // logged, in the same epoch: the follower's log ends before the snapshot.
    let mut leader = History::new();
    let mut entries = Vec::new();
    populate(&mut leader, &mut entries);
    assert!(leader.zxid > 14);
    let bytes = leader.snapshot().to_bytes();
    let snap = SnapshotData::from_bytes(&bytes, db.max_buffer_bytes).unwrap();
    let s = snap.zxid();
    log.install_snapshot(&snap).unwrap();
    assert_eq!(log.last_appended_zxid(), s);
    assert_eq!(snapshot_zxids(&db), vec![s, 12, 0]);
    assert_eq!(
        log_starts(&db),
        vec![1, 13],
        "older log files stay, ending before it"
    );

    let r = restore(&db);
    assert_eq!((r.snapshot_zxid, r.txns_replayed), (s, 0));
    assert_eq!(r.tree.last_processed_zxid(), s);
    assert_eq!(dump(&r.tree), dump(&leader.tree));
    assert_eq!(r.sessions, leader.sessions());
    let (from_bytes, _) = restore_snapshot_bytes(&bytes, db.max_buffer_bytes, false).unwrap();
    assert_eq!(dump(&from_bytes), dump(&r.tree));

    // The leader's next proposals, above the snapshot.
    let paths = leader.tree.ephemerals(0x100_0000_0001);
    let next = vec![
        leader.apply(0, set("/a00", b"after-snap", 0)),
        leader.apply(
            0x100_0000_0001,
            TxnBody::CloseSession(Some(CloseSessionTxn {
                paths_to_delete: paths,
            })),
        ),
    ];
    log_entries(&mut log, &next);
    assert_eq!(log_starts(&db), vec![1, 13, s + 1]);
    let r = restore(&db);
    assert_eq!(r.tree.last_processed_zxid(), s + 2);
    assert_eq!(dump(&r.tree), dump(&leader.tree));
    assert_eq!(r.sessions, leader.sessions());
    assert_eq!(r.recent_txns, next);
}

/// SNAP onto a follower that logged past the snapshot's zxid: what it logged above is removed
/// (with the snapshots above), so the restore does not replay it over the leader's tree.
#[test]
fn install_snapshot_below_the_log_end_removes_what_follows() {
    let dir = TempDir::new("install-below");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    restore(&db);
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    let mut follower = History::new();
    let batch: Vec<_> = (1..=450)
        .map(|i| follower.apply(0, create(&format!("/f{i}"), b"")))
        .collect();
    log_entries(&mut log, &batch);
    follower.snapshot().write(&db.snap_dir).unwrap();
    log.roll().unwrap();
    let batch: Vec<_> = (451..=500)
        .map(|i| follower.apply(0, create(&format!("/f{i}"), b"")))
        .collect();
    log_entries(&mut log, &batch);
    let mut leader = History::new();
    let mut entries = Vec::new();
    populate(&mut leader, &mut entries);
    let s = leader.zxid;
    assert!(s < 450);
    log.install_snapshot(&leader.snapshot()).unwrap();
    assert_eq!(snapshot_zxids(&db), vec![s, 0]);
    assert_eq!(log_starts(&db), vec![1]);
    let r = restore(&db);
    assert_eq!((r.snapshot_zxid, r.txns_replayed), (s, 0));
    assert_eq!(dump(&r.tree), dump(&leader.tree));
    assert!(r.tree.node("/f500").is_none());

    // The next epoch's first proposal.
    log.write_epoch(EpochFile::Accepted, 1).unwrap();
    log.write_epoch(EpochFile::Current, 1).unwrap();
    let entry = leader.apply_at(1 << 32 | 1, 0, create("/e1", b""));
    log_entries(&mut log, &[entry]);
    let r = restore(&db);
    assert_eq!(dump(&r.tree), dump(&leader.tree));
}

// ---- the committed-log window ----

#[test]
fn recent_txns_are_the_last_replayed_in_zxid_order() {
    let dir = TempDir::new("recent");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    restore(&db);
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    let mut h = History::new();
    let all: Vec<_> = (1..=COMMIT_LOG_COUNT + 123)
        .map(|i| h.apply(0, create(&format!("/r{i}"), b"")))
        .collect();
    // Over two log files.
    log_entries(&mut log, &all[..300]);
    log.roll().unwrap();
    log_entries(&mut log, &all[300..]);
    let r = restore(&db);
    assert_eq!(r.txns_replayed, all.len());
    assert_eq!(r.recent_txns.len(), COMMIT_LOG_COUNT);
    assert_eq!(r.recent_txns, all[all.len() - COMMIT_LOG_COUNT..]);

    // Only what the log replays after the snapshot, as ZooKeeper's loadDataBase fills it.
    h.snapshot().write(&db.snap_dir).unwrap();
    let entry = h.apply(0, create("/last", b""));
    log_entries(&mut log, std::slice::from_ref(&entry));
    assert_eq!(restore(&db).recent_txns, vec![entry]);
}

// ---- epochs ----

#[test]
fn epochs_are_created_from_the_last_zxid_and_then_read() {
    let dir = TempDir::new("epochs");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    let r = restore(&db);
    assert_eq!((r.accepted_epoch, r.current_epoch), (0, 0));
    assert_eq!(
        read_epoch(&db.snap_dir, EpochFile::Current).unwrap(),
        Some(0)
    );
    assert_eq!(
        read_epoch(&db.snap_dir, EpochFile::Accepted).unwrap(),
        Some(0)
    );

    // A log in epoch 3 and no epoch files (a standalone ZooKeeper's directory, or one from
    // before the files existed): both become 3.
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    let mut h = History::new();
    let entry = h.apply_at(3 << 32 | 1, 0, create("/e3", b""));
    log_entries(&mut log, &[entry]);
    for which in [EpochFile::Accepted, EpochFile::Current] {
        std::fs::remove_file(which.path(&db.snap_dir)).unwrap();
    }
    let r = restore(&db);
    assert_eq!((r.accepted_epoch, r.current_epoch), (3, 3));
    assert_eq!(
        std::fs::read(db.snap_dir.join("currentEpoch")).unwrap(),
        b"3"
    );

    // Written by the sync thread, read at the next restore.
    log.write_epoch(EpochFile::Accepted, 5).unwrap();
    log.write_epoch(EpochFile::Current, 4).unwrap();
    let r = restore(&db);
    assert_eq!((r.accepted_epoch, r.current_epoch), (5, 4));
}

/// A learner that crashed between its NEWLEADER log writes and its currentEpoch write leaves
/// a log newer than currentEpoch. With the `updatingEpoch` marker (written first, as
/// ZooKeeper 3.4 does, and as a 3.4 data directory may still hold it) the restore takes the
/// last zxid's epoch; without it the restore stops.
#[test]
fn the_updating_epoch_marker_restores_a_torn_newleader() {
    let dir = TempDir::new("epochs-marker");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    restore(&db);
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    let marker = db.snap_dir.join("updatingEpoch");

    // The sync thread's NEWLEADER order: marker, the synced history, currentEpoch.
    log.write_epoch(EpochFile::Accepted, 4).unwrap();
    log.mark_updating_epoch().unwrap();
    assert!(marker.exists());
    log.write_epoch(EpochFile::Accepted, 4).unwrap();
    assert!(
        marker.exists(),
        "only currentEpoch ends the NEWLEADER writes"
    );
    let mut h = History::new();
    let entry = h.apply_at(3 << 32 | 1, 0, create("/e3", b""));
    log_entries(&mut log, &[entry]);
    // The crash: currentEpoch still 1.
    write_epoch(&db.snap_dir, EpochFile::Current, 1).unwrap();
    let r = restore(&db);
    assert_eq!((r.accepted_epoch, r.current_epoch), (4, 3));
    assert_eq!(
        std::fs::read(db.snap_dir.join("currentEpoch")).unwrap(),
        b"3"
    );
    assert!(!marker.exists(), "the restore removes the marker");

    // A torn currentEpoch.tmp (the crash fell inside the epoch write): the marker decides.
    write_epoch(&db.snap_dir, EpochFile::Current, 1).unwrap();
    std::fs::write(&marker, b"").unwrap();
    std::fs::write(EpochFile::Current.tmp_path(&db.snap_dir), b"").unwrap();
    assert_eq!(restore(&db).current_epoch, 3);
    assert!(!marker.exists());

    // Without the marker the same directory does not load.
    write_epoch(&db.snap_dir, EpochFile::Current, 1).unwrap();
    match db.restore(false) {
        Ok(_) => panic!("restored without the marker"),
        Err(e) => assert!(e.to_string().contains("older than the last zxid"), "{e}"),
    }

    // A stale marker (the crash fell before the history was durable) changes nothing.
    write_epoch(&db.snap_dir, EpochFile::Current, 3).unwrap();
    std::fs::write(&marker, b"").unwrap();
    let r = restore(&db);
    assert_eq!((r.accepted_epoch, r.current_epoch), (4, 3));
    assert!(!marker.exists());

    // Writing currentEpoch ends the NEWLEADER writes: the marker goes.
    log.mark_updating_epoch().unwrap();
    log.write_epoch(EpochFile::Current, 4).unwrap();
    assert!(!marker.exists());
    assert_eq!(restore(&db).current_epoch, 4);
}

#[test]
fn inconsistent_epochs_stop_the_restore() {
    let dir = TempDir::new("epochs-bad");
    let config = config(&dir);
    let db = FileTxnSnapLog::open(&config).unwrap();
    restore(&db);
    let mut log = FileLog::new(&db, &config, 0).unwrap();
    let mut h = History::new();
    let entry = h.apply_at(2 << 32 | 1, 0, create("/e2", b""));
    log_entries(&mut log, &[entry]);
    let error = |db: &FileTxnSnapLog| match db.restore(false) {
        Ok(_) => panic!("restored"),
        Err(e) => e,
    };

    // currentEpoch 1 under a log in epoch 2: the history was not taken in that epoch's
    // NEWLEADER, unless a crash interrupted the rename of currentEpoch.tmp.
    write_epoch(&db.snap_dir, EpochFile::Current, 1).unwrap();
    write_epoch(&db.snap_dir, EpochFile::Accepted, 2).unwrap();
    let e = error(&db);
    assert!(matches!(e, RestoreError::Epoch(_)), "{e}");
    assert!(e.to_string().contains("current epoch"), "{e}");
    std::fs::write(EpochFile::Current.tmp_path(&db.snap_dir), b"2").unwrap();
    let r = restore(&db);
    assert_eq!((r.accepted_epoch, r.current_epoch), (2, 2));
    assert_eq!(
        read_epoch(&db.snap_dir, EpochFile::Current).unwrap(),
        Some(2)
    );

    // acceptedEpoch below currentEpoch.
    write_epoch(&db.snap_dir, EpochFile::Accepted, 1).unwrap();
    let e = error(&db);
    assert!(e.to_string().contains("accepted epoch"), "{e}");

    // A malformed file names itself.
    std::fs::write(db.snap_dir.join("acceptedEpoch"), b"two").unwrap();
    let e = error(&db);
    assert!(e.to_string().contains("acceptedEpoch"), "{e}");
}
