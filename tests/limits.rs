//! ZooKeeper's limits, each where zabd enforces it, each tested from outside over real sockets
//! (in-process servers on 127.0.0.1):
//!
//! - jute.maxbuffer on frames: `threads/client.rs` (`decode_next` through
//!   `jute::frame::decode_frame`, checked on the length prefix before any payload is buffered);
//! - path rules: `tree/path.rs` (`validate`), applied per operation by `server/prep.rs` and
//!   `server/pipeline.rs` exactly where ZooKeeper applies them;
//! - requests outstanding per connection (`CNXN_OUTSTANDING_MAX`) and in all
//!   (globalOutstandingLimit): `threads/client.rs` (`throttled`), which stops reading the
//!   socket, never drops a request;
//! - connections per client address (maxClientCnxns): `threads/client.rs` (`refusal`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zabd::client::{Client, Frame, Reply};
use zabd::config::{Config, FourLetterWhitelist};
use zabd::jute::data::Acl;
use zabd::jute::proto::{create_mode, op, Code, PathWatchRequest, Request, SetDataRequest};
use zabd::jute::txn::TxnEntry;
use zabd::threads::client::CNXN_OUTSTANDING_MAX;
use zabd::threads::{run_in_memory, run_with_log, ServerHandle, TxnLogWriter};

const WAIT: Duration = Duration::from_secs(10);

fn config() -> Config {
    Config {
        client_port: 0,
        client_port_address: Some("127.0.0.1".to_owned()),
        four_letter_whitelist: FourLetterWhitelist::All,
        ..Config::default()
    }
}

fn client(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr, 30_000).expect("connect");
    c.set_io_timeout(WAIT).unwrap();
    c
}

fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// True once the server has closed `c` (EOF or reset) within a few seconds.
fn closed(c: &mut Client) -> bool {
    c.wait_closed(Duration::from_secs(5)).expect("transport")
}

fn works(c: &mut Client) {
    c.exists("/", false).expect("transport").expect("exists /");
}

// ---- jute.maxbuffer ----

/// The body of a setData request framed with its header: how many bytes of the frame are not
/// data.
fn set_data_overhead(path: &str) -> usize {
    use zabd::jute::Jute;
    let mut body = Vec::new();
    0i32.put(&mut body);
    op::SET_DATA.put(&mut body);
    SetDataRequest {
        path: path.into(),
        data: Some(Bytes::new()),
        version: -1,
    }
    .put(&mut body);
    body.len()
}

#[test]
fn jute_maxbuffer_bounds_every_frame_exactly() {
    let max = 2048;
    let server = run_in_memory(Config {
        jute_max_buffer_bytes: max,
        ..config()
    })
    .unwrap();
    let addr = server.local_addr();
    let mut good = client(addr);
    good.create("/m", b"", &Acl::open_unsafe(), 0)
        .unwrap()
        .unwrap();
    let overhead = set_data_overhead("/m");
    // A frame of exactly jute.maxbuffer bytes is a request like any other.
    let stat = good
        .set_data("/m", &vec![7; max - overhead], -1)
        .unwrap()
        .unwrap();
    assert_eq!(stat.data_length as usize, max - overhead);
    // One byte more closes the connection that sent it, and only that one.
    let mut over = client(addr);
    let _ = over.send(
        1,
        &Request::SetData(SetDataRequest {
            path: "/m".into(),
            data: Some(Bytes::from(vec![7; max - overhead + 1])),
            version: -1,
        }),
    );
    assert!(
        closed(&mut over),
        "a frame one byte over jute.maxbuffer is refused"
    );
    works(&mut good);
    // The length prefix alone is enough to refuse, before any payload is sent.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(&((max + 1) as i32).to_be_bytes()).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(raw.read(&mut buf), Ok(0) | Err(_)),
        "refused on the prefix"
    );
    // The handshake is a frame too.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    raw.write_all(&(i32::MAX).to_be_bytes()).unwrap();
    assert!(
        matches!(raw.read(&mut buf), Ok(0) | Err(_)),
        "a huge handshake is refused"
    );
    works(&mut good);
    // Nothing the server holds was changed by the refused frame.
    let (data, _) = good.get_data("/m", false).unwrap().unwrap();
    assert_eq!(data.map(|d| d.len()), Some(max - overhead));
}

// ---- path rules ----

#[test]
fn path_rules_apply_per_operation_as_in_zookeeper() {
    let server = run_in_memory(config()).unwrap();
    let mut c = client(server.local_addr());
    let open = Acl::open_unsafe();
    c.create("/p", b"", &open, 0).unwrap().unwrap();
    let bad = [
        "",
        "p",
        "/p/",
        "//p",
        "/p//q",
        "/p/.",
        "/p/..",
        "/p/./q",
        "/p/../q",
        "/p\u{0}q",
        "/p\u{1}",
        "/p\u{7f}",
        "/p\u{9f}",
        "/p\u{d7ff}\u{e000}",
        "/p\u{fff0}",
        "/p\u{1f600}",
    ];
    for path in bad {
        let create = c.create(path, b"", &open, 0).unwrap();
        // A path without '/' and a path whose parent is missing fail before validation, as
        // in ZooKeeper (NoNode when the parent part does not exist).
        assert!(
            matches!(create, Err(Code::BadArguments) | Err(Code::NoNode)),
            "create {path:?}: {create:?}"
        );
        assert!(
            matches!(c.set_data(path, b"x", -1).unwrap(), Err(Code::BadArguments)),
            "setData {path:?}"
        );
    }
    // Valid: every character ZooKeeper allows, "." inside a name, a sequential "/p/".
    for path in ["/p/a.b", "/p/..a", "/p/\u{d7ff}", "/p/\u{f900}", "/p/-_ ~"] {
        assert_eq!(
            c.create(path, b"", &open, 0).unwrap(),
            Ok(path.to_owned()),
            "{path:?}"
        );
    }
    let seq = c
        .create("/p/", b"", &open, create_mode::PERSISTENT_SEQUENTIAL)
        .unwrap()
        .unwrap();
    assert!(
        seq.starts_with("/p/") && seq.len() == "/p/".len() + 10,
        "{seq}"
    );
    // Reads do not validate: a bad path is simply not there (exists refuses NUL only).
    assert_eq!(c.get_data("/p/", false).unwrap(), Err(Code::NoNode));
    assert_eq!(c.exists("//p", false).unwrap(), Err(Code::NoNode));
    assert_eq!(c.exists("/p\u{0}", false).unwrap(), Err(Code::BadArguments));
    // delete checks only for a '/' and NUL, and refuses ZooKeeper's own nodes.
    for path in [
        "/",
        "/zookeeper",
        "/zookeeper/quota",
        "/zookeeper/config",
        "p",
        "/p\u{0}",
    ] {
        assert_eq!(
            c.delete(path, -1).unwrap(),
            Err(Code::BadArguments),
            "delete {path:?}"
        );
    }
    assert_eq!(c.delete("/p/a.b/", -1).unwrap(), Err(Code::NoNode));
    works(&mut c);
}

// ---- requests outstanding per connection ----

/// A log whose sync waits until the test opens the gate: writes stay in flight as long as the
/// test wants, without blocking the core (one append batch is all it takes).
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn set(&self, open: bool) {
        *self.0 .0.lock().unwrap() = open;
        self.0 .1.notify_all();
    }
}

struct GatedLog(Gate);

impl TxnLogWriter for GatedLog {
    fn append(&mut self, _entries: &[TxnEntry]) -> io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let (lock, cv) = &*(self.0).0;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        Ok(())
    }
}

/// The `recved=` count of the connection from `local` in `cons`.
fn received(addr: SocketAddr, local: SocketAddr) -> usize {
    let cons = four_letter(addr, "cons");
    let line = cons
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("/{local}[")))
        .unwrap_or_else(|| panic!("no line for {local} in {cons}"));
    let at = line.find("recved=").unwrap() + "recved=".len();
    line[at..].split(',').next().unwrap().parse().unwrap()
}

fn start_gated(tweak: impl FnOnce(&mut Config)) -> (ServerHandle, Gate) {
    let gate = Gate::default();
    gate.set(true);
    let mut config = config();
    tweak(&mut config);
    let handle = run_with_log(config, Box::new(GatedLog(gate.clone()))).unwrap();
    (handle, gate)
}

/// One write held by the log, then `reads` reads pipelined behind it (they wait for the write,
/// as ZooKeeper's CommitProcessor makes them): the client thread reads requests off the socket
/// until the connection has `limit` at the core, then stops; once the write is durable, every
/// request is answered, in order.
fn pipeline_behind_a_held_write(limit: usize, tweak: impl FnOnce(&mut Config)) {
    let (server, gate) = start_gated(tweak);
    let addr = server.local_addr();
    let mut c = client(addr);
    let mut other = client(addr);
    c.create("/q", b"", &Acl::open_unsafe(), 0)
        .unwrap()
        .unwrap();
    let local = c.stream().local_addr().unwrap();
    let before = received(addr, local);
    gate.set(false);
    let reads = limit + 200;
    c.send(
        1_000,
        &Request::SetData(SetDataRequest {
            path: "/q".into(),
            data: Some(Bytes::from_static(b"w")),
            version: -1,
        }),
    )
    .unwrap();
    for i in 0..reads {
        let req = Request::GetData(PathWatchRequest {
            path: "/q".into(),
            watch: false,
        });
        c.send(1_001 + i as i32, &req).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while received(addr, local) < before + limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        received(addr, local) - before,
        limit,
        "the connection may have exactly {limit} requests at the core"
    );
    if limit >= CNXN_OUTSTANDING_MAX {
        // Another connection is still served meanwhile (reads of other sessions never wait).
        works(&mut other);
    }
    gate.set(true);
    let mut expected = 1_000;
    let end = 1_001 + reads as i32;
    while expected < end {
        match c.recv().expect("every reply arrives") {
            Frame::Reply { header, reply, .. } => {
                assert_eq!(header.xid, expected, "replies leave in request order");
                assert_eq!(header.err, 0);
                if expected > 1_000 {
                    let Reply::GetData(Some(data), _) = reply else {
                        panic!("{reply:?}")
                    };
                    assert_eq!(&data[..], b"w", "a read behind a write sees it");
                }
                expected += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    works(&mut c);
}

#[test]
fn a_connection_has_at_most_cnxn_outstanding_max_requests_at_the_core() {
    pipeline_behind_a_held_write(CNXN_OUTSTANDING_MAX, |c| {
        c.global_outstanding_limit = 1 << 20
    });
}

#[test]
fn global_outstanding_limit_pauses_reading_too() {
    pipeline_behind_a_held_write(50, |c| c.global_outstanding_limit = 50);
}

// ---- connections per address ----

#[test]
fn max_client_cnxns_counts_every_connection_from_one_address() {
    let server = run_in_memory(Config {
        max_client_cnxns: 3,
        ..config()
    })
    .unwrap();
    let addr = server.local_addr();
    let mut kept: Vec<Client> = (0..3).map(|_| client(addr)).collect();
    // The fourth is closed before any reply: the handshake never gets an answer.
    let refused = Client::connect(addr, 30_000);
    assert!(
        refused.is_err(),
        "a fourth connection from one address is refused"
    );
    // Four-letter words count too.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let _ = raw.write_all(b"ruok");
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert_eq!(answer, "", "no answer on a refused connection");
    for c in &mut kept {
        works(c);
    }
    // A slot freed is a slot reused.
    let mut gone = kept.pop().unwrap();
    gone.close().unwrap().unwrap();
    drop(gone);
    let deadline = Instant::now() + WAIT;
    let mut again = loop {
        match Client::connect(addr, 30_000) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the freed slot was never reused: {e}"),
        }
    };
    works(&mut again);
}

#[test]
fn max_client_cnxns_zero_means_no_limit() {
    let server = run_in_memory(Config {
        max_client_cnxns: 0,
        ..config()
    })
    .unwrap();
    let mut all: Vec<Client> = (0..100).map(|_| client(server.local_addr())).collect();
    for c in &mut all {
        works(c);
    }
}
