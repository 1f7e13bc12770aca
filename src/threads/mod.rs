//! The I/O shell: one thread per role around the sans-IO core.
//!
//! ```text
//!             sockets                     bounded channels
//!   clients ◄────────► zabd-client ──Input──────────► zabd-core ──Vec<TxnEntry>──► zabd-sync
//!                      (mio Poll)  ◄──Vec<Output>+wake─ (Select) ◄──durable zxid── (group commit)
//! ```
//!
//! - `zabd-client` ([`client`]) owns every socket and never blocks on a channel: it parks an
//!   input the core has no room for and stops reading that connection until it goes through.
//! - `zabd-core` ([`core`]) owns the [`ZooKeeperServer`](crate::server::ZooKeeperServer), the
//!   only place state changes. It may block sending to either neighbour, because neither ever
//!   blocks on it.
//! - `zabd-sync` ([`sync`]) makes transactions durable and reports the highest durable zxid;
//!   its notices coalesce when the core is busy, so it never blocks on the core either.
//!
//! Shutdown runs downstream: the client thread is told to stop and closes every socket; its
//! input channel hangs up, which stops the core; the core's append channel hangs up, which
//! stops the sync thread.

pub mod client;
pub mod core;
pub mod election;
pub mod ensemble_disk;
pub mod peer;
pub mod quorum_link;
pub mod snap;
pub mod sync;

use crate::config::Config;
use crate::persistence::{FileLog, FileTxnSnapLog, RestoreError, Restored};
use crossbeam_channel::bounded;
use mio::net::TcpListener;
use mio::{Poll, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use self::client::{ClientLoop, Limits};
use self::core::{CoreChannels, CoreExit, CoreLoop};
pub use self::sync::TxnLogWriter;
use self::sync::{NullLog, SyncLoop, SyncStats};

/// Inputs in flight from the client thread to the core.
pub const INPUT_CHANNEL_CAPACITY: usize = 4096;
/// Output batches in flight from the core to the client thread.
pub const OUTPUT_CHANNEL_CAPACITY: usize = 256;
/// Append batches in flight from the core to the sync thread.
pub const APPEND_CHANNEL_CAPACITY: usize = 256;
/// Durable notices in flight to the core (they coalesce, so a few suffice).
pub const PERSISTED_CHANNEL_CAPACITY: usize = 16;

/// A running server. Dropping it shuts it down too.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    client_waker: Arc<Waker>,
    client: Option<JoinHandle<()>>,
    core: Option<JoinHandle<CoreExit>>,
    sync: Option<JoinHandle<()>>,
    snap: Option<JoinHandle<()>>,
    sync_stats: Arc<SyncStats>,
}

impl ServerHandle {
    /// The address the client port is bound to (the real port when clientPort was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Group-commit counters of the sync thread.
    pub fn sync_stats(&self) -> &Arc<SyncStats> {
        &self.sync_stats
    }

    /// Stops every thread and waits for them; every socket is closed when this returns.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    /// Blocks until the server stops on its own (only when the transaction log fails or a
    /// thread dies), then stops the rest. Returns why, for the binary's exit status.
    pub fn wait(mut self) -> io::Result<()> {
        let exit = self.core.take().map(JoinHandle::join);
        self.stop_all();
        match exit {
            Some(Ok(CoreExit::ClientGone)) | None => {
                Err(io::Error::other("the client thread stopped"))
            }
            Some(Ok(CoreExit::SyncGone)) => Err(io::Error::other("the transaction log failed")),
            Some(Err(_)) => Err(io::Error::other("the core thread panicked")),
        }
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.client_waker.wake() {
            log::error!("cannot wake the client thread to stop it: {e}");
        }
        // In pipeline order: each thread's exit hangs up the channel that stops the next.
        join("zabd-client", self.client.take());
        join("zabd-core", self.core.take());
        join("zabd-sync", self.sync.take());
        join("zabd-snap", self.snap.take());
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn join<T>(name: &str, handle: Option<JoinHandle<T>>) {
    if let Some(handle) = handle {
        if handle.join().is_err() {
            log::error!("thread {name} panicked");
        }
    }
}

/// Binds the client port and starts the threads, with a transaction log that keeps nothing
/// (see [`NullLog`]).
pub fn run(config: Config) -> io::Result<ServerHandle> {
    let db = FileTxnSnapLog::open(&config).map_err(restore_error)?;
    let restored = db
        .restore(config.extended_types_enabled)
        .map_err(restore_error)?;
    log::info!(
        "restored {} znodes and {} sessions: snapshot 0x{:x} plus {} logged transactions, last zxid 0x{:x}",
        restored.tree.node_count(),
        restored.sessions.len(),
        restored.snapshot_zxid,
        restored.txns_replayed,
        restored.tree.last_processed_zxid()
    );
    let log = FileLog::new(&db, &config, restored.tree.last_processed_zxid())?;
    if config.is_ensemble() {
        let log = ensemble_disk::EnsembleLog::new(log, &config);
        return start_ensemble(config, db, restored, Box::new(log));
    }
    start(config, Some((db, restored)), Box::new(log))
}

/// Starts an ensemble member: the standalone threads plus the election and quorum-link
/// threads, with a [`QuorumPeer`](crate::quorum::peer::QuorumPeer) core.
fn start_ensemble(
    config: Config,
    db: FileTxnSnapLog,
    restored: Restored,
    log: Box<dyn TxnLogWriter>,
) -> io::Result<ServerHandle> {
    use crate::quorum::peer::{PeerStart, QuorumPeer};
    let me = config
        .my_server()
        .cloned()
        .ok_or_else(|| io::Error::other("myid names no server line"))?;
    let now_ms = self::core::WallClock::default().now_ms();
    let start = PeerStart {
        tree: restored.tree,
        sessions: restored.sessions,
        recent_txns: restored.recent_txns,
        accepted_epoch: restored.accepted_epoch,
        current_epoch: restored.current_epoch,
    };
    let peer = QuorumPeer::new(&config, now_ms, start).map_err(io::Error::other)?;
    let bind = |port: u16| std::net::TcpListener::bind(server_addr(&me.host, port));
    let election_listener = bind(me.election_port)?;
    let quorum_listener = bind(me.quorum_port)?;
    let mut election_peers = std::collections::BTreeMap::new();
    for (id, line) in &config.servers {
        election_peers.insert(*id as i64, server_addr(&line.host, line.election_port));
    }
    log::info!(
        "server {} of {}: quorum port {}, election port {}",
        me.id,
        config.servers.len(),
        me.quorum_port,
        me.election_port
    );
    let ensemble = EnsembleParts {
        peer,
        election_listener,
        election_peers,
        quorum_listener,
        limits: quorum_link::LinkLimits {
            max_packet_bytes: QUORUM_PACKET_MAX_BYTES,
            max_unsent_bytes_per_link: QUORUM_UNSENT_MAX_BYTES,
            max_links: crate::quorum::leader::LEARNERS_MAX,
        },
    };
    start_core(config, Some(db), Core::Ensemble(Box::new(ensemble)), log)
}

/// A SNAP carries the whole tree in one packet: its ceiling.
pub const QUORUM_PACKET_MAX_BYTES: usize = 1 << 30;
/// Output queued for one learner before it counts as too slow (a SNAP plus the broadcast).
pub const QUORUM_UNSENT_MAX_BYTES: usize = (1 << 30) + (64 << 20);

fn server_addr(host: &str, port: u16) -> SocketAddr {
    let text = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&text)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)))
}

struct EnsembleParts {
    peer: crate::quorum::peer::QuorumPeer,
    election_listener: std::net::TcpListener,
    election_peers: std::collections::BTreeMap<i64, SocketAddr>,
    quorum_listener: std::net::TcpListener,
    limits: quorum_link::LinkLimits,
}

/// What runs on the core thread.
enum Core {
    Standalone(Option<Box<Restored>>),
    Ensemble(Box<EnsembleParts>),
}

fn restore_error(e: RestoreError) -> io::Error {
    io::Error::other(format!("cannot load the data directory: {e}"))
}

/// A server that keeps nothing on disk (tests of the protocol and of the I/O shell).
pub fn run_in_memory(config: Config) -> io::Result<ServerHandle> {
    start(config, None, Box::new(NullLog))
}

/// [`run`] with the given transaction log and an empty tree (tests, tools).
pub fn run_with_log(config: Config, log: Box<dyn TxnLogWriter>) -> io::Result<ServerHandle> {
    start(config, None, log)
}

fn start(
    config: Config,
    disk: Option<(FileTxnSnapLog, Restored)>,
    log: Box<dyn TxnLogWriter>,
) -> io::Result<ServerHandle> {
    let (db, restored) = match disk {
        Some((db, restored)) => (Some(db), Some(restored)),
        None => (None, None),
    };
    start_core(config, db, Core::Standalone(restored.map(Box::new)), log)
}

fn start_core(
    config: Config,
    db: Option<FileTxnSnapLog>,
    core: Core,
    log: Box<dyn TxnLogWriter>,
) -> io::Result<ServerHandle> {
    let addr = config
        .client_address()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr)?;
    let local_addr = listener.local_addr()?;
    let poll = Poll::new()?;
    let client_waker = Arc::new(Waker::new(poll.registry(), client::WAKER)?);

    let (input_tx, input_rx) = bounded(INPUT_CHANNEL_CAPACITY);
    let (output_tx, output_rx) = bounded(OUTPUT_CHANNEL_CAPACITY);
    let (append_tx, append_rx) = bounded(APPEND_CHANNEL_CAPACITY);
    let (persisted_tx, persisted_rx) = bounded(PERSISTED_CHANNEL_CAPACITY);
    let stop = Arc::new(AtomicBool::new(false));
    let sync_stats = Arc::new(SyncStats::default());

    let mut handle = ServerHandle {
        local_addr,
        stop: stop.clone(),
        client_waker: client_waker.clone(),
        client: None,
        core: None,
        sync: None,
        snap: None,
        sync_stats: sync_stats.clone(),
    };
    // If a spawn fails, dropping `handle` stops what already runs: the channel ends held by
    // the closure that failed to start are dropped with it, which stops its neighbours.
    let roll_log = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = bounded(APPEND_CHANNEL_CAPACITY + 2);
    let sync = SyncLoop::new(
        log,
        append_rx,
        persisted_tx,
        sync_stats.clone(),
        roll_log.clone(),
    )
    .with_disk_done(done_tx);
    let snapshots = match db {
        Some(db) => {
            let (snap_tx, snap_rx) = bounded(snap::SNAPSHOT_QUEUE_MAX);
            let snap = snap::SnapLoop::new(
                db,
                snap_rx,
                config.autopurge_snap_retain_count,
                config.autopurge_purge_interval_hours,
            );
            handle.snap = Some(spawn("zabd-snap", move || snap.run())?);
            Some(snap_tx)
        }
        None => None,
    };
    handle.sync = Some(spawn("zabd-sync", move || sync.run())?);
    match core {
        Core::Standalone(restored) => {
            let channels = CoreChannels {
                inputs: input_rx,
                persisted: persisted_rx,
                outputs: output_tx,
                client_waker,
                appends: append_tx,
                sync_stats,
                snapshots,
                roll_log,
            };
            let core_config = config.clone();
            handle.core = Some(spawn("zabd-core", move || {
                CoreLoop::new(&core_config, restored.map(|r| *r), channels).run()
            })?);
        }
        Core::Ensemble(parts) => {
            let parts = *parts;
            let (election_tx, election_rx) = bounded(INPUT_CHANNEL_CAPACITY);
            let (link_tx, link_rx) = bounded(INPUT_CHANNEL_CAPACITY);
            let me = parts.peer.me();
            let election = election::ElectionHandle::spawn(
                me,
                parts.election_listener,
                parts.election_peers,
                election_tx,
            )?;
            let links =
                quorum_link::LinkHandle::spawn(Some(parts.quorum_listener), link_tx, parts.limits)?;
            let channels = peer::PeerChannels {
                inputs: input_rx,
                persisted: persisted_rx,
                disk_done: done_rx,
                election_events: election_rx,
                link_events: link_rx,
                outputs: output_tx,
                client_waker,
                sync: append_tx,
                sync_stats,
                snapshots,
                roll_log,
                election,
                links,
            };
            let core = peer::PeerLoop::new(parts.peer, channels);
            handle.core = Some(spawn("zabd-core", move || match core.run() {
                peer::PeerExit::ClientGone => CoreExit::ClientGone,
                peer::PeerExit::SyncGone => CoreExit::SyncGone,
            })?);
        }
    }
    let limits = Limits::from_config(&config);
    let client = ClientLoop::new(poll, listener, limits, input_tx, output_rx, stop)?;
    handle.client = Some(spawn("zabd-client", move || client.run())?);
    Ok(handle)
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
}

#[cfg(test)]
mod tests {
    //! Servers started in-process on 127.0.0.1:0 and driven over real sockets. The assertions
    //! hold for any core that answers like ZooKeeper (handshake, exists("/"), ruok).

    use super::*;
    use crate::config::FourLetterWhitelist;
    use crate::jute::proto::{op, ConnectRequest, ConnectResponse, PathWatchRequest, ReplyHeader};
    use crate::jute::{decode_exact, encode_to_vec, Jute, Reader};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    fn test_config() -> Config {
        Config {
            client_port: 0,
            client_port_address: Some("127.0.0.1".to_owned()),
            tick_time_ms: 200,
            four_letter_whitelist: FourLetterWhitelist::All,
            ..Config::default()
        }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    fn send_frame(stream: &mut TcpStream, payload: &[u8]) {
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        stream.write_all(&frame).unwrap();
    }

    fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut payload = vec![0u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut payload).unwrap();
        payload
    }

    /// True when the server closed the connection (EOF or reset) within the read timeout.
    fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    fn handshake(stream: &mut TcpStream) -> ConnectResponse {
        let req = ConnectRequest {
            time_out: 30_000,
            passwd: bytes::Bytes::from(vec![0u8; 16]),
            read_only: Some(false),
            ..ConnectRequest::default()
        };
        send_frame(stream, &encode_to_vec(&req));
        decode_exact(&read_frame(stream)).unwrap()
    }

    fn exists_request(xid: i32) -> Vec<u8> {
        let mut payload = Vec::new();
        xid.put(&mut payload);
        op::EXISTS.put(&mut payload);
        PathWatchRequest {
            path: "/".into(),
            watch: false,
        }
        .put(&mut payload);
        payload
    }

    fn reply_header(payload: &[u8]) -> ReplyHeader {
        ReplyHeader::get(&mut Reader::new(payload)).unwrap()
    }

    fn session(addr: SocketAddr) -> TcpStream {
        let mut stream = connect(addr);
        let resp = handshake(&mut stream);
        assert_ne!(resp.session_id, 0);
        assert!(resp.time_out > 0);
        stream
    }

    fn round_trip(stream: &mut TcpStream, xid: i32) {
        send_frame(stream, &exists_request(xid));
        let header = reply_header(&read_frame(stream));
        assert_eq!((header.xid, header.err), (xid, 0));
    }

    #[test]
    fn handshake_and_request_round_trip() {
        let server = run_in_memory(test_config()).unwrap();
        let mut stream = session(server.local_addr());
        round_trip(&mut stream, 1);
        round_trip(&mut stream, 2);
        server.shutdown();
    }

    #[test]
    fn a_frame_over_jute_maxbuffer_closes_only_its_connection() {
        let config = Config {
            jute_max_buffer_bytes: 4096,
            ..test_config()
        };
        let server = run_in_memory(config).unwrap();
        let mut good = session(server.local_addr());
        let mut bad = session(server.local_addr());
        // Only the length goes out: the server must refuse before the payload arrives.
        bad.write_all(&4097i32.to_be_bytes()).unwrap();
        assert!(closed_by_server(&mut bad));
        round_trip(&mut good, 7);
        // Exactly at the limit is fine (the core answers or refuses; the frame is whole).
        let mut big = exists_request(8);
        big.resize(4096, 0);
        send_frame(&mut good, &big);
        assert_eq!(reply_header(&read_frame(&mut good)).xid, 8);
        server.shutdown();
    }

    #[test]
    fn negative_lengths_and_headerless_frames_close() {
        let server = run_in_memory(test_config()).unwrap();
        let mut first = connect(server.local_addr());
        first.write_all(&(-1i32).to_be_bytes()).unwrap();
        assert!(closed_by_server(&mut first));
        let mut s = session(server.local_addr());
        send_frame(&mut s, &[0, 0, 0, 1]);
        assert!(closed_by_server(&mut s));
        let mut s = session(server.local_addr());
        s.write_all(&(-5i32).to_be_bytes()).unwrap();
        assert!(closed_by_server(&mut s));
        server.shutdown();
    }

    #[test]
    fn ruok_gets_imok_then_close() {
        let server = run_in_memory(test_config()).unwrap();
        let mut stream = connect(server.local_addr());
        stream.write_all(b"ruok").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer.trim_end(), "imok");
        server.shutdown();
    }

    #[test]
    fn max_client_cnxns_is_enforced_per_ip() {
        let config = Config {
            max_client_cnxns: 2,
            ..test_config()
        };
        let server = run_in_memory(config).unwrap();
        let mut a = session(server.local_addr());
        let _b = session(server.local_addr());
        let mut refused = connect(server.local_addr());
        assert!(closed_by_server(&mut refused));
        drop(refused);
        round_trip(&mut a, 1);
        drop(a);
        // The slot frees once the server has seen the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut c = connect(server.local_addr());
            let req = encode_to_vec(&ConnectRequest {
                time_out: 30_000,
                ..Default::default()
            });
            send_frame(&mut c, &req);
            let mut len = [0u8; 4];
            if c.read_exact(&mut len).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the freed slot was never reused");
            std::thread::sleep(Duration::from_millis(20));
        }
        server.shutdown();
    }

    #[test]
    fn deep_pipelines_are_throttled_not_dropped() {
        const REQUESTS: i32 = 3000;
        let config = Config {
            global_outstanding_limit: 5,
            ..test_config()
        };
        let server = run_in_memory(config).unwrap();
        let mut stream = session(server.local_addr());
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let mut all = Vec::new();
            for xid in 1..=REQUESTS {
                let payload = exists_request(xid);
                all.extend_from_slice(&(payload.len() as i32).to_be_bytes());
                all.extend_from_slice(&payload);
            }
            writer.write_all(&all).unwrap();
        });
        for xid in 1..=REQUESTS {
            let header = reply_header(&read_frame(&mut stream));
            assert_eq!((header.xid, header.err), (xid, 0));
        }
        sender.join().unwrap();
        server.shutdown();
    }

    #[test]
    fn silent_connections_are_closed_after_the_sessionless_timeout() {
        let config = Config {
            sessionless_cnxn_timeout_ms: 200,
            ..test_config()
        };
        let server = run_in_memory(config).unwrap();
        let mut silent = connect(server.local_addr());
        let started = Instant::now();
        assert!(closed_by_server(&mut silent));
        assert!(started.elapsed() >= Duration::from_millis(150));
        // A connection that sent its handshake stays.
        let mut s = session(server.local_addr());
        std::thread::sleep(Duration::from_millis(400));
        round_trip(&mut s, 1);
        server.shutdown();
    }

    #[test]
    fn shutdown_is_fast_and_closes_every_socket() {
        let started = Instant::now();
        for _ in 0..20 {
            let server = run_in_memory(test_config()).unwrap();
            let addr = server.local_addr();
            let mut s = session(addr);
            server.shutdown();
            assert!(closed_by_server(&mut s));
            assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn dropping_the_handle_stops_the_server() {
        let server = run_in_memory(test_config()).unwrap();
        let addr = server.local_addr();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
