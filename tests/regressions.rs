//! Reproducers of the defects found by fuzzing and by the limits review (issue 4). Each test
//! states what ZooKeeper (or zabd's own documented invariant) requires. Every finding is fixed
//! (F1, F2, F3, F4, H1, H2) and its reproducers run with the rest of `cargo test` as regression
//! tests; a reproducer of a finding still open would be `#[ignore]`d until its fix.
//! fuzz/README.md ("Findings") describes each one and the commit that fixed it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zabd::client::Client;
use zabd::config::Config;
use zabd::jute::data::Acl;
use zabd::jute::proto::{op, Request};
use zabd::jute::txn::TxnEntry;

// ---- a per-thread allocation probe (tests run on parallel threads) ----

struct Probe;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Probe = Probe;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let value = f();
    ARMED.with(|a| a.set(false));
    (value, LARGEST.with(|l| l.get()))
}

/// What decoding `n` input bytes may allocate at most: the bytes themselves, three times over
/// for a string of invalid UTF-8 (each bad byte becomes U+FFFD), plus small change.
fn allowed(n: usize) -> usize {
    3 * n + 4096
}

/// `count` and then `count` zero bytes: a vector length that passes the "no more elements than
/// bytes left" check.
fn vector_claiming_all_that_remains(count: usize) -> Vec<u8> {
    let mut out = (count as i32).to_be_bytes().to_vec();
    out.resize(4 + count, 0);
    out
}

// ---- F1 ----

/// F1: `jute::Vec<T>::get` (src/jute/mod.rs) reserves `count * size_of::<T>()` bytes, with
/// `count` bounded only by the bytes left in the frame: each element needs at least 1 byte on
/// the wire, but an `Acl` takes 56 bytes in memory, a `String` 24. A setACL frame of 100 KB
/// makes the server allocate 5.6 MB before it finds the frame truncated; a 1 MiB frame (the
/// default jute.maxbuffer), 58 MB per request. The jute module promises that "a 4-byte frame
/// can never make the server allocate more than 4 bytes".
/// Fixed by 6d96ffe: a count the remaining bytes cannot hold at the element type's smallest
/// encoding fails before anything is reserved.
#[test]
fn f1_a_request_frame_never_allocates_a_multiple_of_its_size() {
    // setACL: path "/a", then an ACL vector whose count is every byte that follows.
    let mut body = 2i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"/a");
    body.extend(vector_claiming_all_that_remains(100_000));
    let (decoded, largest) = largest_allocation(|| Request::decode(op::SET_ACL, &body));
    assert!(decoded.is_err(), "a truncated vector does not decode");
    assert!(
        largest <= allowed(body.len()),
        "decoding a {}-byte setACL body allocated {largest} bytes at once",
        body.len()
    );
}

/// F1 in the transaction log: a closeSession record's path vector (24 bytes per `String`).
/// Fixed by 6d96ffe.
#[test]
fn f1_a_log_record_never_allocates_a_multiple_of_its_size() {
    // TxnHeader (client id, cxid, zxid, time, type closeSession) + CloseSessionTxn.
    let mut record = Vec::new();
    record.extend_from_slice(&1i64.to_be_bytes());
    record.extend_from_slice(&0i32.to_be_bytes());
    record.extend_from_slice(&5i64.to_be_bytes());
    record.extend_from_slice(&0i64.to_be_bytes());
    record.extend_from_slice(&op::CLOSE_SESSION.to_be_bytes());
    record.extend(vector_claiming_all_that_remains(100_000));
    let (decoded, largest) = largest_allocation(|| TxnEntry::from_bytes(&record));
    assert!(decoded.is_err());
    assert!(
        largest <= allowed(record.len()),
        "decoding a {}-byte log record allocated {largest} bytes at once",
        record.len()
    );
}

// ---- F2 ----

/// F2: `time_interval_ms` (src/config.rs, `&value[..value.len().saturating_sub(1)]`) slices a
/// byte before the last character; when that character takes more than one byte, the slice is
/// not on a char boundary and parsing panics instead of reporting the bad value.
#[test]
fn f2_a_purge_interval_ending_in_a_multibyte_character_is_an_error_not_a_panic() {
    for value in ["1é", "2ч", "3€", "4😀"] {
        let text = format!("dataDir=/tmp/zabd\nautopurge.purgeInterval={value}\n");
        let parsed = std::panic::catch_unwind(|| Config::parse(&text));
        match parsed {
            Ok(result) => assert!(result.is_err(), "{value:?} is not an interval"),
            Err(_) => panic!("Config::parse panicked on autopurge.purgeInterval={value}"),
        }
    }
}

// ---- F3 ----

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zabd-regressions-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn durable_config(dir: &std::path::Path, jute_max_buffer_bytes: usize, snap_count: u64) -> Config {
    Config {
        client_port: 0,
        client_port_address: Some("127.0.0.1".to_owned()),
        data_dir: dir.to_path_buf(),
        jute_max_buffer_bytes,
        snap_count,
        ..Config::default()
    }
}

fn client(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr, 30_000).expect("connect");
    c.set_io_timeout(Duration::from_secs(60)).unwrap();
    c
}

/// Writes a node of `size` bytes under jute.maxbuffer = 4 MiB (then `writes_after` small
/// nodes), restarts, and reads it back.
fn big_node_survives_a_restart(tag: &str, size: usize, snap_count: u64, writes_after: usize) {
    let dir = temp_dir(tag);
    let config = durable_config(&dir, 4 << 20, snap_count);
    let data = vec![b'z'; size];
    {
        let server = zabd::threads::run(config.clone()).expect("start");
        let mut c = client(server.local_addr());
        c.create("/big", &data, &Acl::open_unsafe(), 0)
            .unwrap()
            .unwrap();
        // More writes: a snapshot is taken after the big one when snapCount is small, and the
        // big record is not the last one in the log.
        for i in 0..writes_after {
            c.create(&format!("/after{i}"), b"", &Acl::open_unsafe(), 0)
                .unwrap()
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        server.shutdown();
    }
    let restarted = zabd::threads::run(config);
    let server = match restarted {
        Ok(server) => server,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("zabd refuses to restart on its own data directory: {e}");
        }
    };
    let mut c = client(server.local_addr());
    let got = c.get_data("/big", false).unwrap();
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let (got, _) = got.expect("an acknowledged node survives a restart");
    assert_eq!(got.map(|d| d.len()), Some(size));
}

/// F3: the log and snapshot readers cap every record at `DEFAULT_MAX_BUFFER_BYTES` (2 MiB,
/// src/persistence/mod.rs), whatever jute.maxbuffer says. With jute.maxbuffer raised (4 MiB
/// here, as operators do for large nodes), zabd accepts and acknowledges a 3 MiB create, logs
/// it, and then cannot read its own log back: the record's length is taken for damage
/// (`RecordProblem::BadLength`). When a valid record follows, the restart stops ("corrupt
/// record ... ValidRecordFollows"). ZooKeeper reads with jute.maxbuffer +
/// zookeeper.jute.maxbuffer.extrasize.
/// Fixed by 47390f6: the data directory is read with the configured jute.maxbuffer plus its
/// extra size, and a whole record above that limit stops the restart, never cut off.
#[test]
fn f3_a_node_above_2_mib_survives_a_restart_when_writes_follow_it() {
    big_node_survives_a_restart("follow", 3 << 20, 100_000, 4);
}

/// F3, worse: when the big record is the last one, the restart takes it for a torn tail and
/// cuts it off (`cut_torn_tail`, with a warning): an acknowledged write is lost.
/// Fixed by 47390f6.
#[test]
fn f3_a_node_above_2_mib_survives_a_restart_when_it_is_the_last_write() {
    big_node_survives_a_restart("last", 3 << 20, 100_000, 0);
}

/// F3 through a snapshot: the snapshot holding the big node fails to load ("unreasonable
/// length"), zabd falls back to the older snapshot and then meets the big log record.
/// Fixed by 47390f6.
#[test]
fn f3_a_node_above_2_mib_survives_a_restart_through_a_snapshot() {
    big_node_survives_a_restart("snapshot", 3 << 20, 2, 4);
}

// ---- F4 ----

/// F4: a session closed by the transaction at which a snapshot is taken comes back to life
/// after a restart. `ZooKeeperServer::apply` (src/server/pipeline.rs) calls `maybe_snapshot`,
/// which copies the session tracker, before `session_closed` removes the session; the snapshot
/// is named after the closeSession's zxid, so the restart loads the session from the snapshot
/// and never replays the closeSession that removed it. A client can then re-attach to a
/// session it closed (ZooKeeper removes the session before it applies the transaction, and
/// answers such a reconnect as expired), and the restored server keeps it until it expires.
/// Found by the props suite (`replay::log_replay_gives_the_same_tree`).
#[test]
fn f4_a_closed_session_stays_closed_across_a_restart() {
    let dir = temp_dir("closed-session");
    // snapCount 2: a snapshot after exactly every second transaction, here the closeSession.
    let config = durable_config(&dir, 0xfffff, 2);
    let (id, passwd) = {
        let server = zabd::threads::run(config.clone()).expect("start");
        let mut c = client(server.local_addr());
        let session = (c.session_id(), c.passwd().to_vec());
        c.close().unwrap().unwrap();
        let snapshot = dir.join("version-2").join("snapshot.2");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !snapshot.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            snapshot.exists(),
            "the snapshot at the closeSession was written"
        );
        server.shutdown();
        session
    };
    let server = zabd::threads::run(config).expect("restart");
    let reattached = Client::reconnect(server.local_addr(), id, &passwd, 30_000);
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    match reattached {
        Err(e) if zabd::client::is_session_expired(&e) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(c) => panic!(
            "session 0x{:x}, closed before the restart, was re-attached",
            c.session_id()
        ),
    }
}

// ---- H1 ----

/// Restores a data directory whose only snapshot holds `paths` (after the root, in order).
fn restore_snapshot_of(tag: &str, paths: &[&str]) -> Result<zabd::tree::DataTree, String> {
    use zabd::jute::data::StatPersisted;
    use zabd::persistence::{write_snapshot_file, FileTxnSnapLog, SnapNode, SnapshotContents};
    let dir = temp_dir(tag);
    let node = |path: &str| SnapNode {
        path: path.to_owned(),
        data: Some(bytes::Bytes::from_static(b"d")),
        acl: -1,
        stat: StatPersisted::default(),
    };
    let contents = SnapshotContents {
        nodes: std::iter::once("/")
            .chain(paths.iter().copied())
            .map(node)
            .collect(),
        last_processed_zxid: Some(0),
        ..SnapshotContents::default()
    };
    let config = durable_config(&dir, 0xfffff, 100_000);
    let db = FileTxnSnapLog::open(&config).map_err(|e| e.to_string())?;
    write_snapshot_file(&db.snap_dir, 0, &contents).map_err(|e| e.to_string())?;
    let restored = db.restore(false).map(|r| r.tree).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    restored
}

/// Every node the tree holds is reachable from the root, and every listed child exists.
fn consistent(tree: &zabd::tree::DataTree) -> Result<(), String> {
    let mut walked = 0;
    let mut dangling = Vec::new();
    tree.for_each_depth_first(|p, n| {
        walked += 1;
        for c in n.children.iter() {
            if tree.node(&format!("{p}/{c}")).is_none() {
                dangling.push(format!("{p}/{c}"));
            }
        }
    });
    if walked + 1 != tree.node_count() || !dangling.is_empty() {
        return Err(format!(
            "{} nodes held, {walked} reachable; listed but missing: {dangling:?}",
            tree.node_count() - 1
        ));
    }
    Ok(())
}

/// H1 (hardening; ZooKeeper's DataTree.deserialize has the same weakness): the snapshot
/// loader (`TreeLoader::node`, src/tree/mod.rs) trusts node paths. A path given twice replaces
/// the first node and orphans its children (they stay in the node map, counted by mntr and the
/// digest, reachable by path but listed by no parent); a path with an empty component
/// ("//a") is linked to the root as child "a", which leads to no node. zabd never writes
/// either, but a snapshot whose checksum verifies is then loaded into a tree whose child lists
/// and node map disagree, instead of being refused as "Invalid Datatree". Found by the
/// snapshot fuzz target.
/// Fixed by 27e5326: the loader refuses such a snapshot ("Invalid Datatree").
#[test]
fn h1_a_snapshot_with_a_repeated_path_is_refused_or_loads_consistently() {
    if let Ok(tree) = restore_snapshot_of("dup", &["/a", "/a/b", "/a"]) {
        consistent(&tree).unwrap();
    }
}

/// H1, the other form. Fixed by 27e5326.
#[test]
fn h1_a_snapshot_with_an_empty_path_component_is_refused_or_loads_consistently() {
    if let Ok(tree) = restore_snapshot_of("empty", &["//a"]) {
        consistent(&tree).unwrap();
    }
}

// ---- H2 ----

/// H2 (hardening): `FastLeaderElection::look_for_leader` (src/quorum/election.rs:179 at
/// 6e5f27c) does `self.logical_clock += 1`, and the round is taken from peers'
/// notifications (`on_looking_vote` adopts any larger `election_epoch`). A notification whose
/// round is i64::MAX (any peer on the election port can send one) makes the next round
/// overflow: a panic where overflow checks are on (debug and test builds: the election would
/// die), and a round wrapped to i64::MIN in release builds, so the server then ignores every
/// vote of the current round as stale. ZooKeeper's AtomicLong wraps the same way. Found by the
/// election fuzz target.
/// Fixed by 8bd1c11: the next round saturates at i64::MAX.
#[test]
fn h2_a_peers_huge_round_neither_panics_nor_sends_the_round_back() {
    use zabd::jute::quorum::{server_state, Notification};
    use zabd::quorum::election::{ElectionTimers, FastLeaderElection};
    use zabd::quorum::verifier::QuorumMaj;
    let verifier = QuorumMaj::new([1, 2, 3], []);
    let mut fle =
        FastLeaderElection::new(1, verifier, ElectionTimers::default(), bytes::Bytes::new());
    let mut out = Vec::new();
    fle.look_for_leader(0, 5, 0, &mut out);
    let hostile = Notification {
        state: server_state::LOOKING,
        leader: 2,
        zxid: 5,
        election_epoch: i64::MAX,
        peer_epoch: 0,
        version: 2,
        config: bytes::Bytes::new(),
    };
    fle.on_notification(10, 2, &hostile, &mut out);
    let before = fle.logical_clock();
    let next_round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fle.look_for_leader(20, 5, 0, &mut out);
        fle.logical_clock()
    }));
    match next_round {
        Ok(after) => assert!(
            after >= before,
            "the round went from {before} back to {after}"
        ),
        Err(_) => panic!("a peer's round of i64::MAX made look_for_leader panic"),
    }
}
