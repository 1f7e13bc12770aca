//! Shared helpers: an in-process zabd on 127.0.0.1 (a free port, its own temporary dataDir)
//! that stops when dropped, raw-socket helpers for the byte-level tests, and bounded waits.
//! Nothing here asserts ZooKeeper behaviour itself; the test modules do.

#![allow(dead_code)]

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zabd::client::Client;
use zabd::config::{Config, FourLetterWhitelist};
use zabd::jute::data::Acl;
use zabd::jute::proto::{ReplyHeader, WatcherEvent};
use zabd::threads::ServerHandle;

/// Every blocking wait in the suite is bounded by this unless a test says otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

/// The session timeout tests ask for (clamped by the server to [2, 20] ticks).
pub const SESSION_MS: i32 = 30_000;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory under `std::env::temp_dir()`, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("zabd-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test dataDir");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration every test starts from: loopback, port 0, a fresh dataDir.
pub fn base_config(dir: &TempDir) -> Config {
    Config {
        client_port: 0,
        client_port_address: Some("127.0.0.1".to_owned()),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    }
}

/// A running server; dropping it shuts it down (every socket closed) and removes its dataDir.
pub struct TestServer {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    config: Config,
    // Declared last: the directory goes after the server has stopped.
    dir: TempDir,
}

impl TestServer {
    /// A server with the default configuration (tickTime 2000, whitelist "srvr").
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// A server whose configuration `tweak` adjusts.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TempDir::new();
        let mut config = base_config(&dir);
        tweak(&mut config);
        let handle = zabd::threads::run(config.clone()).expect("start zabd");
        let addr = handle.local_addr();
        assert!(
            addr.ip().is_loopback(),
            "tests listen on loopback only: {addr}"
        );
        TestServer {
            handle: Some(handle),
            addr,
            config,
            dir,
        }
    }

    /// All four-letter words allowed.
    pub fn with_all_words() -> TestServer {
        TestServer::with(|c| c.four_letter_whitelist = FourLetterWhitelist::All)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The connection string for the zookeeper-client crate.
    pub fn cluster(&self) -> String {
        self.addr.to_string()
    }

    /// A new session through zabd's own blocking client.
    pub fn client(&self) -> Client {
        self.client_with_timeout(SESSION_MS)
    }

    pub fn client_with_timeout(&self, timeout_ms: i32) -> Client {
        let mut c = Client::connect(self.addr, timeout_ms).expect("connect to zabd");
        c.set_io_timeout(WAIT).unwrap();
        c
    }

    /// A new session through the zookeeper-client crate.
    pub async fn zk(&self) -> zookeeper_client::Client {
        bounded(zookeeper_client::Client::connect(&self.cluster()))
            .await
            .expect("zookeeper-client connects to zabd")
    }

    /// Runs a four-letter word and returns the whole answer.
    pub fn four_letter(&self, word: &str) -> String {
        four_letter(self.addr, word)
    }

    /// Stops the server now (dropping does the same).
    pub fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// Awaits `fut` for at most 30 s: no async test can hang the suite.
pub async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("an async step took more than 30 s")
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ZooDefs.Ids.OPEN_ACL_UNSAFE`.
pub fn open() -> Vec<Acl> {
    Acl::open_unsafe()
}

/// Creates a persistent node with open ACL through zabd's client, asserting success.
pub fn mk(c: &mut Client, path: &str, data: &[u8]) -> String {
    c.create(path, data, &open(), 0)
        .expect("transport")
        .unwrap_or_else(|e| panic!("create {path}: {e:?}"))
}

/// A successful round trip (exists "/"): the connection and its session work.
pub fn assert_works(c: &mut Client) {
    let stat = c.exists("/", false).expect("transport").expect("exists /");
    assert!(stat.num_children >= 1, "the root has at least /zookeeper");
}

/// Waits up to `timeout` for the next watch event on a zabd client.
pub fn next_event(c: &mut Client, timeout: Duration) -> Option<(ReplyHeader, WatcherEvent)> {
    c.wait_event(timeout)
        .expect("transport while waiting for an event")
}

/// `user:base64(sha1(user:password))`, computed independently of zabd's code.
pub fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let hash = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

// ---------- raw sockets ----------

/// A plain TCP connection to `addr` with read/write timeouts.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("tcp connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

pub fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(&frame(payload)).expect("write a frame");
}

pub fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len);
    assert!((0..16 << 20).contains(&n), "implausible frame length {n}");
    let mut payload = vec![0u8; n as usize];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

/// What the server did with a connection within the read timeout.
#[derive(Debug, PartialEq, Eq)]
pub enum Peer {
    /// EOF or reset: the server closed it.
    Closed,
    /// It sent these bytes first (the rest unread).
    Sent(Vec<u8>),
    /// Nothing within the timeout.
    Silent,
}

/// Reads once with `timeout` to see whether the server closed the connection.
pub fn peer_state(s: &mut TcpStream, timeout: Duration) -> Peer {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 512];
    let state = match s.read(&mut buf) {
        Ok(0) => Peer::Closed,
        Ok(n) => Peer::Sent(buf[..n].to_vec()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Peer::Silent
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) =>
        {
            Peer::Closed
        }
        Err(e) => panic!("unexpected read error: {e}"),
    };
    s.set_read_timeout(Some(WAIT)).unwrap();
    state
}

/// Reads until the server closes the connection (bounded by `WAIT`); the bytes read meanwhile.
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "the server never closed the connection"
        );
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return all,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server neither answered nor closed within {WAIT:?}")
            }
            Err(e) => panic!("unexpected read error: {e}"),
        }
    }
}

/// Sends a four-letter word on a new connection and returns everything until the close.
pub fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut s = raw_connect(addr);
    s.write_all(word.as_bytes()).expect("send the word");
    String::from_utf8(read_until_closed(&mut s)).expect("four-letter answers are text")
}

/// The watch events already received (in the backlog or fully buffered), with their headers,
/// oldest first; does not wait for more.
pub fn drain_events(c: &mut Client) -> Vec<(ReplyHeader, WatcherEvent)> {
    let mut out = Vec::new();
    while let Some(e) = c.wait_event(Duration::ZERO).expect("transport") {
        out.push(e);
    }
    out
}

/// (type, path) of each event, for compact assertions.
pub fn kinds(events: &[(ReplyHeader, WatcherEvent)]) -> Vec<(i32, String)> {
    events
        .iter()
        .map(|(_, e)| (e.type_, e.path.clone()))
        .collect()
}

/// The wall clock in milliseconds since the epoch, as ZooKeeper stamps ctime/mtime.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
