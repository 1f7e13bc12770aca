//! The `zabd-election` thread: ZooKeeper's QuorumCnxManager as one mio readiness loop. It
//! carries FastLeaderElection notifications between the core, which runs the election
//! ([`crate::quorum::election`], sans-IO), and the other servers' election ports. It decodes
//! notifications and nothing more: what they mean is the core's business.
//!
//! Wire format (QuorumCnxManager's): whoever opens a connection first sends a hello
//! ([`ElectionHello`]: protocol version, its sid, its election address `host:port`; a bare
//! non-negative sid, as servers before 3.5 send, is accepted too). Then both directions carry
//! messages framed as `int32 length` + [`Notification`] bytes, the length in
//! 1..=[`ELECTION_MESSAGE_MAX_BYTES`].
//!
//! Invariants:
//! - Between two servers only a connection opened by the larger sid carries notifications.
//!   To reach a larger sid a server connects, sends its hello and closes (a "ping"); the larger
//!   server turns the smaller one's connection away, drops any connection it believes it still
//!   has to it (the smaller one evidently has none) and connects back. A second connection
//!   from the same larger sid replaces the first.
//! - At most one notification per peer waits to be written (ZooKeeper's `SEND_CAPACITY` of 1):
//!   a newer one replaces it. A new connection resends the last notification written when
//!   nothing newer waits, as ZooKeeper's SendWorker does: the old connection may have lost it.
//! - Notifications to this server never touch a socket: they come back as received events.
//! - The thread never blocks on a channel. A received notification the core's channel has no
//!   room for is parked, and its peer's connection is not read until it goes through, so
//!   received notifications are never dropped. [`ElectionHandle::send`] never blocks either:
//!   when the command channel is full the notification goes to a shared slot that keeps the
//!   newest per peer, and sequence numbers let the thread keep the newest whichever way each
//!   one came. Nothing is dropped for lack of room.
//! - Everything is bounded: hello addresses (2 KB), frames, connections still owing their
//!   hello ([`HELLO_CNXNS_MAX`]), one outbound attempt per peer at a time with a doubling
//!   backoff, deadlines on connecting and on the hello. Bad input closes only its connection,
//!   with a log line.
//!
//! Departures from ZooKeeper:
//! - A hello from a sid not in `peers` is refused. ZooKeeper keeps a connection from any larger
//!   sid and only fails to connect back to unknown smaller ones; it also gives observers made-up
//!   negative sids, so here observers must be listed in `peers` to connect.
//! - Connecting back uses the configured address of the sid, not the address in its hello.
//! - A frame that does not decode as a notification closes its connection (ZooKeeper's
//!   election logs it and reads on).
//! - Reconnecting is paced by a per-peer backoff ([`ElectionTimeouts`]) instead of happening
//!   on every `toSend` and `connectAll`.

use crate::jute::quorum::{
    ElectionHello, Notification, ELECTION_MESSAGE_MAX_BYTES, ELECTION_PROTOCOL_V1,
};
use crate::net::{read_once, write_until_blocked, Acceptor, RateLimit, ReadOutcome};
use crate::quorum::Sid;
use bytes::{Buf, BufMut, BytesMut};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Notifications in flight from the core to this thread before [`ElectionHandle::send`] falls
/// back to the newest-per-peer slot.
pub const COMMAND_CHANNEL_CAPACITY: usize = 256;

/// Accepted connections that have not sent their hello yet; more are closed at once.
pub const HELLO_CNXNS_MAX: usize = 64;

/// Reserved tokens sit above every slab key.
const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// Connections accepted per loop iteration.
const ACCEPT_BATCH: usize = 16;
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// `read` calls per connection per loop iteration before the others get their turn.
const READS_PER_TURN: usize = 16;
/// Commands taken from the core per loop iteration.
const COMMANDS_PER_TURN: usize = 1024;
/// How long to wait before retrying events the core's channel had no room for.
const CHANNEL_RETRY: Duration = Duration::from_millis(1);
const EVENTS_CAPACITY: usize = 256;
const LOG_INTERVAL: Duration = Duration::from_secs(1);
const FRAME_LEN_BYTES: usize = 4;

/// What this thread hands the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionEvent {
    Notification {
        from: Sid,
        notification: Notification,
    },
}

/// The thread's deadlines and pacing.
#[derive(Clone, Debug)]
pub struct ElectionTimeouts {
    /// How long a connection may take to open (and, for a ping, to take the hello): ZooKeeper's
    /// `cnxTO`.
    pub connect_timeout: Duration,
    /// How long an accepted connection may take to send its hello (ZooKeeper's socket timeout
    /// while reading it).
    pub hello_timeout: Duration,
    /// The first wait between attempts to reach a peer, doubled per attempt up to the max and
    /// reset once a connection to it is up.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
}

impl Default for ElectionTimeouts {
    fn default() -> ElectionTimeouts {
        ElectionTimeouts {
            connect_timeout: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(2),
        }
    }
}

/// Counters the thread keeps up to date, for tests and monitoring.
#[derive(Debug, Default)]
pub struct ElectionStats {
    /// Connections carrying notifications that the peer opened (by the rule, a larger sid).
    pub inbound: AtomicU64,
    /// Connections carrying notifications that this server opened (to a smaller sid).
    pub outbound: AtomicU64,
    /// Every socket the thread holds besides the listener, including connections still
    /// opening, owing their hello, or pinging.
    pub sockets: AtomicU64,
    /// Notifications written to sockets (loopback ones are not counted).
    pub notifications_sent: AtomicU64,
    /// Notifications decoded from sockets.
    pub notifications_received: AtomicU64,
    /// Connections closed for bad input: a bad or late hello, an unknown or our own sid, a bad
    /// frame.
    pub rejected: AtomicU64,
}

/// A notification from the core, numbered so the thread can tell the newest.
struct Command {
    seq: u64,
    to: Sid,
    notification: Notification,
}

/// Where [`ElectionHandle::send`] leaves notifications when the command channel is full.
type Overflow = Mutex<BTreeMap<Sid, (u64, Notification)>>;

fn lock(overflow: &Overflow) -> MutexGuard<'_, BTreeMap<Sid, (u64, Notification)>> {
    // The map stays consistent whatever a panicking holder did: each insert is one call.
    overflow.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running election thread. Dropping it stops the thread too.
pub struct ElectionHandle {
    commands: Sender<Command>,
    overflow: Arc<Overflow>,
    next_seq: AtomicU64,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    stats: Arc<ElectionStats>,
}

impl ElectionHandle {
    /// Starts the thread on an already bound `listener` (so tests can bind port 0 and learn
    /// every address first), with ZooKeeper's default timeouts. `peers` maps the other
    /// servers' sids to their election addresses; an entry for `me` gives the address this
    /// server announces in its hello (else the listener's).
    pub fn spawn(
        me: Sid,
        listener: std::net::TcpListener,
        peers: BTreeMap<Sid, SocketAddr>,
        events: Sender<ElectionEvent>,
    ) -> io::Result<ElectionHandle> {
        ElectionHandle::spawn_with(me, listener, peers, events, ElectionTimeouts::default())
    }

    /// [`ElectionHandle::spawn`] with the given timeouts.
    pub fn spawn_with(
        me: Sid,
        listener: std::net::TcpListener,
        peers: BTreeMap<Sid, SocketAddr>,
        events: Sender<ElectionEvent>,
        timeouts: ElectionTimeouts,
    ) -> io::Result<ElectionHandle> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let announced = peers.get(&me).copied().unwrap_or(local_addr);
        let mut hello = Vec::new();
        ElectionHello {
            protocol_version: ELECTION_PROTOCOL_V1,
            sid: me,
            addresses: announced.to_string(),
        }
        .put(&mut hello);
        let now = Instant::now();
        let peers = peers
            .into_iter()
            .filter(|(sid, _)| *sid != me)
            .map(|(sid, addr)| (sid, Peer::new(addr, &timeouts, now)))
            .collect();
        let (commands_tx, commands_rx) = bounded(COMMAND_CHANNEL_CAPACITY);
        let overflow = Arc::new(Overflow::default());
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ElectionStats::default());
        let election = ElectionLoop {
            me,
            hello,
            poll,
            listener,
            acceptor: Acceptor::new(true, LOG_INTERVAL),
            conns: Slab::new(),
            peers,
            loopback: None,
            loopback_seq: 0,
            commands: commands_rx,
            overflow: overflow.clone(),
            events,
            stop: stop.clone(),
            stats: stats.clone(),
            timeouts,
            scratch: vec![0; READ_CHUNK_BYTES],
            channel_full: false,
            core_gone: false,
            reject_log: RateLimit::new(LOG_INTERVAL),
            unknown_sid_log: RateLimit::new(LOG_INTERVAL),
        };
        let thread = std::thread::Builder::new()
            .name("zabd-election".to_owned())
            .spawn(move || election.run())?;
        Ok(ElectionHandle {
            commands: commands_tx,
            overflow,
            next_seq: AtomicU64::new(1),
            waker,
            stop,
            thread: Some(thread),
            local_addr,
            stats,
        })
    }

    /// Never blocks: queues `notification` for `to` (a newer one replaces any still waiting
    /// for the same peer) and wakes the thread. A notification to this server comes back as
    /// an [`ElectionEvent`]; one to a sid missing from `peers` is dropped with a warning.
    pub fn send(&self, to: Sid, notification: Notification) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let command = Command {
            seq,
            to,
            notification,
        };
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(command)) => {
                let mut overflow = lock(&self.overflow);
                let slot = overflow.entry(to).or_insert((0, Notification::default()));
                if slot.0 < command.seq {
                    *slot = (command.seq, command.notification);
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                log::debug!("election thread gone; notification to sid {to} dropped");
                return;
            }
        }
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the election thread: {e}");
        }
    }

    /// The address the election port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &ElectionStats {
        &self.stats
    }

    /// Stops the thread and waits for it; every socket is closed when this returns.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the election thread to stop it: {e}");
        }
        if thread.join().is_err() {
            log::error!("thread zabd-election panicked");
        }
    }
}

impl Drop for ElectionHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What this thread knows of one other server.
struct Peer {
    addr: SocketAddr,
    /// The newest notification not yet written.
    queued: Option<Notification>,
    /// The highest command number taken for this peer: older ones arriving late are ignored.
    newest_seq: u64,
    /// Resent on a new connection when nothing newer is queued.
    last_sent: Option<Notification>,
    /// The connection notifications travel on.
    conn: Option<usize>,
    /// An outbound connection opening (to a smaller sid) or pinging (a larger one).
    dialing: Option<usize>,
    /// A smaller sid connected and was turned away: connect back even with nothing queued.
    call_back: bool,
    next_attempt: Instant,
    backoff: Duration,
    /// Attempts that failed since the last connection; only the first is logged as a warning.
    failures: u32,
    /// A received notification the core's channel had no room for.
    parked: Option<Notification>,
}

impl Peer {
    fn new(addr: SocketAddr, timeouts: &ElectionTimeouts, now: Instant) -> Peer {
        Peer {
            addr,
            queued: None,
            newest_seq: 0,
            last_sent: None,
            conn: None,
            dialing: None,
            call_back: false,
            next_attempt: now,
            backoff: timeouts.reconnect_backoff_min,
            failures: 0,
            parked: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Outbound, TCP connect in progress.
    Connecting,
    /// Outbound to a larger sid: write the hello, then close; the peer connects back.
    Ping,
    /// Accepted, hello not read yet.
    Hello,
    /// Carrying notifications both ways.
    Established,
}

struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    phase: Phase,
    /// The server at the other end, once known (outbound connections know it from the start).
    sid: Option<Sid>,
    /// Opened by this server.
    outbound: bool,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The socket may hold unread bytes (an edge was seen, `WouldBlock` not yet).
    readable: bool,
    /// The socket may take more bytes.
    writable: bool,
    /// Closed when still short of `Established` (or, for a ping, still open) at this instant.
    deadline: Option<Instant>,
}

/// What the front of an accepted connection's buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum HelloParse {
    Incomplete,
    Bad(String),
    Hello { sid: Sid, used: usize },
}

fn parse_hello(buf: &[u8]) -> HelloParse {
    let Some(first) = buf.first_chunk::<8>() else {
        return HelloParse::Incomplete;
    };
    let first = i64::from_be_bytes(*first);
    if first >= 0 {
        // Servers before 3.5 send their sid alone; ZooKeeper still accepts that.
        return HelloParse::Hello {
            sid: first,
            used: 8,
        };
    }
    match ElectionHello::decode(buf) {
        Ok(None) => HelloParse::Incomplete,
        Ok(Some((hello, used))) => HelloParse::Hello {
            sid: hello.sid,
            used,
        },
        Err(e) => HelloParse::Bad(format!("bad election hello: {e}")),
    }
}

/// What the front of an established connection's buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum FrameParse {
    Incomplete,
    Bad(String),
    Notification(Notification, usize),
}

fn parse_frame(buf: &[u8]) -> FrameParse {
    let Some(len) = buf.first_chunk::<FRAME_LEN_BYTES>() else {
        return FrameParse::Incomplete;
    };
    let len = i32::from_be_bytes(*len);
    let len = match usize::try_from(len) {
        Ok(len) if (1..=ELECTION_MESSAGE_MAX_BYTES).contains(&len) => len,
        _ => {
            return FrameParse::Bad(format!(
                "election message length {len} out of range 1..={ELECTION_MESSAGE_MAX_BYTES}"
            ))
        }
    };
    let Some(payload) = buf.get(FRAME_LEN_BYTES..FRAME_LEN_BYTES + len) else {
        return FrameParse::Incomplete;
    };
    match Notification::decode(payload) {
        Ok(n) => FrameParse::Notification(n, FRAME_LEN_BYTES + len),
        Err(e) => FrameParse::Bad(format!("malformed notification: {e}")),
    }
}

/// Appends one framed notification; false (and nothing appended) when it is too large.
fn put_frame(out: &mut BytesMut, notification: &Notification) -> bool {
    let start = out.len();
    out.put_i32(0);
    notification.put(out);
    let len = out.len() - start - FRAME_LEN_BYTES;
    match i32::try_from(len) {
        Ok(len32) if len <= ELECTION_MESSAGE_MAX_BYTES => {
            out[start..start + FRAME_LEN_BYTES].copy_from_slice(&len32.to_be_bytes());
            true
        }
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// How a connection ends, for the log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// Expected (a ping done, a peer gone, a replacement): debug.
    Normal,
    /// Bad input from the other side: a rate-limited warning, counted as rejected.
    Rejected,
    /// An outbound attempt that failed: counts toward the peer's backoff log.
    Failed,
}

struct ElectionLoop {
    me: Sid,
    /// This server's hello, encoded once.
    hello: Vec<u8>,
    poll: Poll,
    listener: TcpListener,
    acceptor: Acceptor,
    conns: Slab<Conn>,
    peers: BTreeMap<Sid, Peer>,
    /// The newest notification to this server not yet delivered.
    loopback: Option<Notification>,
    loopback_seq: u64,
    commands: Receiver<Command>,
    overflow: Arc<Overflow>,
    events: Sender<ElectionEvent>,
    stop: Arc<AtomicBool>,
    stats: Arc<ElectionStats>,
    timeouts: ElectionTimeouts,
    scratch: Vec<u8>,
    /// The core's channel was full this iteration.
    channel_full: bool,
    core_gone: bool,
    reject_log: RateLimit,
    unknown_sid_log: RateLimit,
}

impl ElectionLoop {
    /// Runs until told to stop or the core hangs up; every socket closes when it returns.
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.stop.load(Ordering::Acquire) && !self.core_gone {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("election thread poll failed: {e}");
                break;
            }
            for event in events.iter() {
                self.on_event(event);
            }
            self.iterate(Instant::now());
        }
        if self.core_gone {
            log::info!("the core stopped taking election events; election thread exits");
        }
        self.conns.clear();
        self.publish_stats();
    }

    fn iterate(&mut self, now: Instant) {
        self.channel_full = false;
        self.take_commands();
        self.deliver_parked();
        self.accept(now);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.service(key);
        }
        self.dial(now);
        self.expire(now);
        self.publish_stats();
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let accept_now = self.acceptor.wants_accept(now);
        let read_now = self.conns.iter().any(|(_, c)| {
            c.readable
                && match c.phase {
                    Phase::Hello => true,
                    Phase::Established => !self.paused(c),
                    Phase::Connecting | Phase::Ping => false,
                }
        });
        if accept_now || read_now || !self.commands.is_empty() {
            return Some(Duration::ZERO);
        }
        let parked = self.loopback.is_some() || self.peers.values().any(|p| p.parked.is_some());
        if parked {
            return Some(CHANNEL_RETRY);
        }
        let deadlines = self.conns.iter().filter_map(|(_, c)| c.deadline);
        let attempts = self
            .peers
            .values()
            .filter(|p| Self::wants_dial(p))
            .map(|p| p.next_attempt);
        let accept = self.acceptor.wakeup();
        deadlines
            .chain(attempts)
            .chain(accept)
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn on_event(&mut self, event: &Event) {
        match event.token() {
            LISTENER => self.acceptor.on_readable(),
            WAKER => {} // commands are taken every iteration
            Token(key) => {
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    c.readable = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    c.writable = true;
                }
            }
        }
    }

    fn publish_stats(&self) {
        let (mut inbound, mut outbound) = (0, 0);
        for key in self.peers.values().filter_map(|p| p.conn) {
            match self.conns.get(key) {
                Some(c) if c.outbound => outbound += 1,
                Some(_) => inbound += 1,
                None => {}
            }
        }
        let s = &self.stats;
        s.inbound.store(inbound, Ordering::Relaxed);
        s.outbound.store(outbound, Ordering::Relaxed);
        s.sockets.store(self.conns.len() as u64, Ordering::Relaxed);
    }

    // ---- from the core ----

    fn take_commands(&mut self) {
        for _ in 0..COMMANDS_PER_TURN {
            match self.commands.try_recv() {
                Ok(c) => self.queue(c.seq, c.to, c.notification),
                Err(TryRecvError::Empty) => break,
                // The handle is gone; its drop sets `stop` too.
                Err(TryRecvError::Disconnected) => break,
            }
        }
        let overflow = std::mem::take(&mut *lock(&self.overflow));
        for (to, (seq, notification)) in overflow {
            self.queue(seq, to, notification);
        }
    }

    /// Keeps `notification` as the one to send to `to`, unless a newer one was taken already.
    fn queue(&mut self, seq: u64, to: Sid, notification: Notification) {
        if to == self.me {
            if seq > self.loopback_seq {
                self.loopback_seq = seq;
                self.loopback = Some(notification);
            }
            return;
        }
        let Some(peer) = self.peers.get_mut(&to) else {
            if let Some(n) = self.unknown_sid_log.check(Instant::now()) {
                log::warn!("notification to unknown sid {to} dropped ({n} more not logged)");
            }
            return;
        };
        if seq > peer.newest_seq {
            peer.newest_seq = seq;
            peer.queued = Some(notification);
        }
    }

    // ---- to the core ----

    /// Hands a received notification to the core; gives it back when the channel is full, for
    /// the caller to park.
    fn deliver(&mut self, from: Sid, notification: Notification) -> Result<(), Notification> {
        let event = ElectionEvent::Notification { from, notification };
        match self.events.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(ElectionEvent::Notification { notification, .. })) => {
                self.channel_full = true;
                Err(notification)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.core_gone = true;
                Ok(())
            }
        }
    }

    fn deliver_parked(&mut self) {
        if let Some(n) = self.loopback.take() {
            self.loopback = self.deliver(self.me, n).err();
        }
        let parked: Vec<Sid> = self
            .peers
            .iter()
            .filter(|(_, p)| p.parked.is_some())
            .map(|(sid, _)| *sid)
            .collect();
        for sid in parked {
            if self.channel_full {
                return;
            }
            let Some(n) = self.peers.get_mut(&sid).and_then(|p| p.parked.take()) else {
                continue;
            };
            let still = self.deliver(sid, n).err();
            if let Some(peer) = self.peers.get_mut(&sid) {
                peer.parked = still;
            }
        }
    }

    fn paused(&self, c: &Conn) -> bool {
        c.sid
            .and_then(|sid| self.peers.get(&sid))
            .is_some_and(|p| p.parked.is_some())
    }

    // ---- accepting ----

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            let what = "an election connection";
            let Some((stream, addr)) = self.acceptor.accept(&self.listener, now, what) else {
                return;
            };
            self.admit(stream, addr, now);
        }
    }

    fn admit(&mut self, mut stream: TcpStream, addr: SocketAddr, now: Instant) {
        let hellos = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Hello)
            .count();
        if hellos >= HELLO_CNXNS_MAX {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = self.reject_log.check(now) {
                log::warn!(
                    "refusing election connection from {addr}: {hellos} connections owe their hello already ({n} more not logged)"
                );
            }
            return;
        }
        // ZooKeeper disables Nagle on election sockets: messages are small and rare.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY for {addr}: {e}");
        }
        let entry = self.conns.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(entry.key()), interest)
        {
            log::warn!("cannot register election connection from {addr}: {e}");
            return;
        }
        entry.insert(Conn {
            stream,
            addr,
            phase: Phase::Hello,
            sid: None,
            outbound: false,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            // The hello may already be waiting: look before the first edge.
            readable: true,
            writable: true,
            deadline: Some(now + self.timeouts.hello_timeout),
        });
    }

    // ---- connections ----

    fn service(&mut self, key: usize) {
        let Some(c) = self.conns.get(key) else {
            return;
        };
        match c.phase {
            Phase::Connecting => {
                if self.finish_connect(key) {
                    self.service(key);
                }
            }
            Phase::Ping => self.flush(key),
            Phase::Hello => {
                if self.read_hello(key) {
                    self.service(key);
                }
            }
            Phase::Established => {
                self.read_frames(key);
                self.flush(key);
                self.fill(key);
                self.flush(key);
            }
        }
    }

    /// Completes a non-blocking connect once the socket reported something; true when the
    /// connection moved on to its next phase.
    fn finish_connect(&mut self, key: usize) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if !c.readable && !c.writable {
            return false;
        }
        let failed = match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match c.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // A spurious edge: the connect is still under way.
                    c.readable = false;
                    c.writable = false;
                    return false;
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            let reason = format!("cannot connect: {e}");
            self.close(key, Why::Failed, &reason);
            return false;
        }
        if let Err(e) = c.stream.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY for {}: {e}", c.addr);
        }
        c.wbuf.extend_from_slice(&self.hello);
        c.writable = true;
        let Some(sid) = c.sid else {
            return false;
        };
        if sid > self.me {
            c.phase = Phase::Ping;
            return true;
        }
        c.phase = Phase::Established;
        c.deadline = None;
        if let Some(peer) = self.peers.get_mut(&sid) {
            peer.dialing = None;
        }
        self.install(key, sid);
        true
    }

    /// Reads until the hello is whole and acts on it; true when the connection became
    /// established (its remaining bytes are frames).
    fn read_hello(&mut self, key: usize) -> bool {
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.conns.get_mut(key) else {
                return false;
            };
            match parse_hello(&c.rbuf) {
                HelloParse::Incomplete => {}
                HelloParse::Bad(reason) => {
                    self.close(key, Why::Rejected, &reason);
                    return false;
                }
                HelloParse::Hello { sid, used } => {
                    c.rbuf.advance(used);
                    return self.on_hello(key, sid);
                }
            }
            if !self.read_chunk(key) {
                return false;
            }
        }
        false
    }

    /// ZooKeeper's `handleConnection`, once the hello names the sid.
    fn on_hello(&mut self, key: usize, sid: Sid) -> bool {
        if sid == self.me {
            let reason = format!("the hello claims our own sid {sid}: a configuration error?");
            self.close(key, Why::Rejected, &reason);
            return false;
        }
        let Some(peer) = self.peers.get_mut(&sid) else {
            let reason = format!("unknown sid {sid}");
            self.close(key, Why::Rejected, &reason);
            return false;
        };
        if sid < self.me {
            // Only the larger sid's connection survives: turn this one away and connect
            // back. Whatever connection we think we have, the peer has none.
            peer.call_back = true;
            peer.next_attempt = Instant::now();
            let old = peer.conn;
            self.close(key, Why::Normal, "a smaller sid connected; connecting back");
            if let Some(old) = old {
                self.close(old, Why::Normal, "the peer connected anew");
            }
            return false;
        }
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        c.phase = Phase::Established;
        c.sid = Some(sid);
        c.deadline = None;
        self.install(key, sid);
        true
    }

    /// Makes `key` the connection notifications to and from `sid` travel on.
    fn install(&mut self, key: usize, sid: Sid) {
        let Some(peer) = self.peers.get_mut(&sid) else {
            return;
        };
        let old = peer.conn.replace(key);
        if peer.failures > 0 {
            log::info!(
                "election connection to sid {sid} up after {} failed attempts",
                peer.failures
            );
        }
        peer.failures = 0;
        peer.backoff = self.timeouts.reconnect_backoff_min;
        peer.call_back = false;
        if peer.queued.is_none() {
            peer.queued = peer.last_sent.clone();
        }
        log::debug!("election connection with sid {sid} established");
        if let Some(old) = old.filter(|old| *old != key) {
            self.close(old, Why::Normal, "replaced by a newer connection");
        }
    }

    /// Decodes and delivers whole frames, reading more while the core takes them.
    fn read_frames(&mut self, key: usize) {
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.conns.get_mut(key) else {
                return;
            };
            let Some(sid) = c.sid else {
                return;
            };
            loop {
                if self.peers.get(&sid).is_none_or(|p| p.parked.is_some()) {
                    return;
                }
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                match parse_frame(&c.rbuf) {
                    FrameParse::Incomplete => break,
                    FrameParse::Bad(reason) => {
                        self.close(key, Why::Rejected, &reason);
                        return;
                    }
                    FrameParse::Notification(n, used) => {
                        c.rbuf.advance(used);
                        self.stats
                            .notifications_received
                            .fetch_add(1, Ordering::Relaxed);
                        if let Err(n) = self.deliver(sid, n) {
                            if let Some(peer) = self.peers.get_mut(&sid) {
                                peer.parked = Some(n);
                            }
                        }
                    }
                }
            }
            if !self.read_chunk(key) {
                return;
            }
        }
    }

    /// One `read` into the connection's buffer; false when there is nothing more to read now
    /// (or the connection closed).
    fn read_chunk(&mut self, key: usize) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if !c.readable {
            return false;
        }
        match read_once(&mut c.stream, &mut self.scratch, &mut c.rbuf) {
            Ok(ReadOutcome::Data(_)) => true,
            Ok(ReadOutcome::WouldBlock) => {
                c.readable = false;
                false
            }
            Ok(ReadOutcome::Eof) => {
                // Before a hello this is a probe or a peer that gave up: nothing bad was sent.
                self.close(key, Why::Normal, "closed by the peer");
                false
            }
            Err(e) => {
                let reason = format!("read error: {e}");
                self.close(key, Why::Normal, &reason);
                false
            }
        }
    }

    /// Moves the peer's queued notification into an empty write buffer.
    fn fill(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let Some(sid) = c.sid else {
            return;
        };
        if !c.wbuf.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&sid) else {
            return;
        };
        let Some(n) = peer.queued.take() else {
            return;
        };
        if put_frame(&mut c.wbuf, &n) {
            peer.last_sent = Some(n);
            self.stats
                .notifications_sent
                .fetch_add(1, Ordering::Relaxed);
        } else {
            log::error!(
                "notification to sid {sid} is over {ELECTION_MESSAGE_MAX_BYTES} bytes; dropped"
            );
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.wbuf.is_empty() || !c.writable {
            return;
        }
        if let Err(e) = write_until_blocked(&mut c.stream, &mut c.wbuf) {
            let why = if c.phase == Phase::Ping {
                Why::Failed
            } else {
                Why::Normal
            };
            let reason = format!("write error: {e}");
            self.close(key, why, &reason);
            return;
        }
        if !c.wbuf.is_empty() {
            c.writable = false;
        } else if c.phase == Phase::Ping {
            self.close(key, Why::Normal, "asked the larger sid to connect back");
        }
    }

    // ---- reaching peers ----

    fn wants_dial(peer: &Peer) -> bool {
        peer.conn.is_none() && peer.dialing.is_none() && (peer.queued.is_some() || peer.call_back)
    }

    fn dial(&mut self, now: Instant) {
        let due: Vec<Sid> = self
            .peers
            .iter()
            .filter(|(_, p)| Self::wants_dial(p) && p.next_attempt <= now)
            .map(|(sid, _)| *sid)
            .collect();
        for sid in due {
            self.start_connect(sid, now);
        }
    }

    fn start_connect(&mut self, sid: Sid, now: Instant) {
        let max = self.timeouts.reconnect_backoff_max;
        let Some(peer) = self.peers.get_mut(&sid) else {
            return;
        };
        peer.call_back = false;
        peer.next_attempt = now + peer.backoff;
        peer.backoff = (peer.backoff * 2).min(max);
        let addr = peer.addr;
        let mut stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(e) => {
                self.failed(sid, &format!("cannot connect to {addr}: {e}"));
                return;
            }
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            self.failed(sid, &format!("cannot register a connection to {addr}: {e}"));
            return;
        }
        entry.insert(Conn {
            stream,
            addr,
            phase: Phase::Connecting,
            sid: Some(sid),
            outbound: true,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            readable: false,
            writable: false,
            deadline: Some(now + self.timeouts.connect_timeout),
        });
        if let Some(peer) = self.peers.get_mut(&sid) {
            peer.dialing = Some(key);
        }
    }

    fn failed(&mut self, sid: Sid, reason: &str) {
        let Some(peer) = self.peers.get_mut(&sid) else {
            return;
        };
        peer.failures = peer.failures.saturating_add(1);
        if peer.failures == 1 {
            log::warn!("election: sid {sid}: {reason} (retrying with backoff)");
        } else {
            log::debug!("election: sid {sid}: {reason} ({} failures)", peer.failures);
        }
    }

    // ---- closing ----

    fn expire(&mut self, now: Instant) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|t| t <= now))
            .map(|(key, _)| key)
            .collect();
        for key in late {
            let Some(phase) = self.conns.get(key).map(|c| c.phase) else {
                continue;
            };
            match phase {
                Phase::Connecting | Phase::Ping => {
                    let reason = format!(
                        "no connection within {} ms",
                        self.timeouts.connect_timeout.as_millis()
                    );
                    self.close(key, Why::Failed, &reason);
                }
                Phase::Hello => {
                    let reason = format!(
                        "no hello within {} ms",
                        self.timeouts.hello_timeout.as_millis()
                    );
                    self.close(key, Why::Rejected, &reason);
                }
                Phase::Established => {}
            }
        }
    }

    /// Removes a connection, unlinking it from its peer. Dropping it closes the socket.
    fn close(&mut self, key: usize, why: Why, reason: &str) {
        let Some(mut c) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(peer) = c.sid.and_then(|sid| self.peers.get_mut(&sid)) {
            if peer.conn == Some(key) {
                peer.conn = None;
            }
            if peer.dialing == Some(key) {
                peer.dialing = None;
            }
        }
        let who = match c.sid {
            Some(sid) => format!("sid {sid} at {}", c.addr),
            None => format!("{}", c.addr),
        };
        match why {
            Why::Normal => log::debug!("election connection with {who} closed: {reason}"),
            Why::Rejected => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = self.reject_log.check(Instant::now()) {
                    log::warn!(
                        "closing election connection from {who}: {reason} ({n} more not logged)"
                    );
                }
            }
            Why::Failed => {
                if let Some(sid) = c.sid {
                    self.failed(sid, reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Election threads on 127.0.0.1 talking to each other and to raw sockets that speak the
    //! wire format by hand. Every wait is bounded by [`WAIT`].

    use super::*;
    use crate::jute::quorum::{server_state, NOTIFICATION_VERSION};
    use bytes::Bytes;
    use std::io::{Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};

    const WAIT: Duration = Duration::from_secs(10);

    fn bind() -> StdListener {
        StdListener::bind("127.0.0.1:0").unwrap()
    }

    /// An address nothing listens on yet, for a server that starts late.
    fn reserve() -> SocketAddr {
        bind().local_addr().unwrap()
    }

    /// Binds a reserved address again (a short retry in case the port is briefly busy).
    fn rebind(addr: SocketAddr) -> StdListener {
        let deadline = Instant::now() + WAIT;
        loop {
            match StdListener::bind(addr) {
                Ok(l) => return l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    fn vote(leader: Sid, epoch: i64) -> Notification {
        Notification {
            state: server_state::LOOKING,
            leader,
            zxid: (1 << 32) + epoch,
            election_epoch: epoch,
            peer_epoch: 1,
            version: NOTIFICATION_VERSION,
            config: Bytes::from_static(b"server.1=127.0.0.1:2888:3888\nversion=0"),
        }
    }

    struct Node {
        handle: ElectionHandle,
        events: Receiver<ElectionEvent>,
    }

    impl Node {
        fn start(
            me: Sid,
            listener: StdListener,
            peers: &BTreeMap<Sid, SocketAddr>,
            channel: usize,
        ) -> Node {
            let timeouts = ElectionTimeouts {
                hello_timeout: Duration::from_millis(300),
                ..ElectionTimeouts::default()
            };
            let (tx, rx) = bounded(channel);
            let handle =
                ElectionHandle::spawn_with(me, listener, peers.clone(), tx, timeouts).unwrap();
            Node { handle, events: rx }
        }

        /// The next notification, within [`WAIT`].
        fn next(&self) -> (Sid, Notification) {
            match self.events.recv_timeout(WAIT) {
                Ok(ElectionEvent::Notification { from, notification }) => (from, notification),
                Err(e) => panic!("no notification within {WAIT:?}: {e}"),
            }
        }

        /// Everything that arrives within `quiet`.
        fn drain(&self, quiet: Duration) -> Vec<(Sid, Notification)> {
            let mut got = Vec::new();
            while let Ok(ElectionEvent::Notification { from, notification }) =
                self.events.recv_timeout(quiet)
            {
                got.push((from, notification));
            }
            got
        }

        fn stat(&self, counter: fn(&ElectionStats) -> &AtomicU64) -> u64 {
            counter(self.handle.stats()).load(Ordering::Relaxed)
        }
    }

    /// Servers `sids` on 127.0.0.1, each knowing every address (its own included).
    fn ensemble(sids: &[Sid]) -> BTreeMap<Sid, Node> {
        let listeners: BTreeMap<Sid, StdListener> = sids.iter().map(|s| (*s, bind())).collect();
        let addrs: BTreeMap<Sid, SocketAddr> = listeners
            .iter()
            .map(|(s, l)| (*s, l.local_addr().unwrap()))
            .collect();
        listeners
            .into_iter()
            .map(|(s, l)| (s, Node::start(s, l, &addrs, 64)))
            .collect()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // ---- raw peers ----

    fn hello(sid: Sid, addr: &str) -> Vec<u8> {
        let mut out = Vec::new();
        ElectionHello {
            protocol_version: ELECTION_PROTOCOL_V1,
            sid,
            addresses: addr.to_owned(),
        }
        .put(&mut out);
        out
    }

    fn frame(n: &Notification) -> Vec<u8> {
        let mut out = BytesMut::new();
        assert!(put_frame(&mut out, n));
        out.to_vec()
    }

    fn raw(addr: SocketAddr) -> StdStream {
        let s = StdStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    /// A raw connection that introduced itself as `sid`.
    fn raw_as(addr: SocketAddr, sid: Sid) -> StdStream {
        let mut s = raw(addr);
        s.write_all(&hello(sid, "127.0.0.1:1")).unwrap();
        s
    }

    fn accept_within(l: &StdListener) -> StdStream {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection came");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn read_hello(s: &mut StdStream) -> ElectionHello {
        let mut head = [0u8; 20];
        s.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes(head[16..20].try_into().unwrap());
        assert!((1..=2048).contains(&len), "address length {len}");
        let mut all = head.to_vec();
        all.resize(20 + len as usize, 0);
        s.read_exact(&mut all[20..]).unwrap();
        let (hello, used) = ElectionHello::decode(&all).unwrap().unwrap();
        assert_eq!(used, all.len());
        hello
    }

    fn read_notification(s: &mut StdStream) -> Notification {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let len = i32::from_be_bytes(len);
        assert!((1..=ELECTION_MESSAGE_MAX_BYTES as i32).contains(&len));
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).unwrap();
        Notification::decode(&payload).unwrap()
    }

    /// True when the other side closed (EOF or reset) within the read timeout.
    fn closed_by_server(s: &mut StdStream) -> bool {
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    // ---- pure parts ----

    #[test]
    fn hellos_and_frames_parse_with_bounds() {
        let h = hello(3, "127.0.0.1:3888");
        let used = h.len();
        assert_eq!(parse_hello(&h), HelloParse::Hello { sid: 3, used });
        assert_eq!(parse_hello(&h[..used - 1]), HelloParse::Incomplete);
        assert_eq!(parse_hello(&h[..7]), HelloParse::Incomplete);
        // A bare sid, as servers before 3.5 send.
        let legacy = 7i64.to_be_bytes();
        assert_eq!(parse_hello(&legacy), HelloParse::Hello { sid: 7, used: 8 });
        assert!(matches!(parse_hello(&[0xff; 32]), HelloParse::Bad(_)));

        let v = vote(2, 9);
        let f = frame(&v);
        assert_eq!(parse_frame(&f), FrameParse::Notification(v, f.len()));
        assert_eq!(parse_frame(&f[..f.len() - 1]), FrameParse::Incomplete);
        assert_eq!(parse_frame(&f[..3]), FrameParse::Incomplete);
        for bad_len in [0, -1, ELECTION_MESSAGE_MAX_BYTES as i32 + 1] {
            let parsed = parse_frame(&bad_len.to_be_bytes());
            assert!(
                matches!(parsed, FrameParse::Bad(_)),
                "{bad_len}: {parsed:?}"
            );
        }
        let short = [0, 0, 0, 5, 1, 2, 3, 4, 5];
        assert!(matches!(parse_frame(&short), FrameParse::Bad(_)));
        let huge = Notification {
            config: Bytes::from(vec![b'x'; ELECTION_MESSAGE_MAX_BYTES]),
            ..vote(1, 1)
        };
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(!put_frame(&mut out, &huge));
        assert_eq!(&out[..], b"keep");
    }

    // ---- threads ----

    #[test]
    fn every_pair_delivers_with_the_right_sender_over_one_connection() {
        let sids = [1, 2, 3];
        let nodes = ensemble(&sids);
        for round in 0..2 {
            for (&from, node) in &nodes {
                for &to in &sids {
                    node.handle.send(to, vote(10 * from + to, round));
                }
            }
            for (&me, node) in &nodes {
                let mut heard = BTreeMap::new();
                while heard.len() < sids.len() {
                    let (from, n) = node.next();
                    // The leader field says who sent it to whom.
                    assert_eq!(
                        n.leader,
                        10 * from + me,
                        "sid {me} got {n:?} as from {from}"
                    );
                    assert!(n.election_epoch <= round);
                    if n.election_epoch == round {
                        heard.insert(from, n);
                    }
                }
            }
        }
        // Only the connection opened by the larger sid of each pair stays.
        for (&me, node) in &nodes {
            let larger = sids.iter().filter(|s| **s > me).count() as u64;
            let smaller = sids.iter().filter(|s| **s < me).count() as u64;
            wait_until(&format!("sid {me} keeps one connection per peer"), || {
                node.stat(|s| &s.inbound) == larger
                    && node.stat(|s| &s.outbound) == smaller
                    && node.stat(|s| &s.sockets) == larger + smaller
            });
        }
        // And it stays that way under more traffic.
        for (&from, node) in &nodes {
            for &to in &sids {
                node.handle.send(to, vote(10 * from + to, 5));
            }
        }
        for node in nodes.values() {
            let got = node.drain(Duration::from_millis(300));
            assert!(got.iter().filter(|(_, n)| n.election_epoch == 5).count() >= sids.len());
            assert_eq!(node.stat(|s| &s.sockets), 2);
            assert_eq!(node.stat(|s| &s.inbound) + node.stat(|s| &s.outbound), 2);
            assert_eq!(node.stat(|s| &s.rejected), 0);
        }
        for (_, node) in nodes {
            node.handle.shutdown();
        }
    }

    #[test]
    fn a_late_peer_gets_only_the_newest_queued_notification() {
        // Sid 2 sends to a smaller and a larger sid that are not up yet.
        let mut addrs = BTreeMap::from([(1, reserve()), (3, reserve())]);
        let l2 = bind();
        addrs.insert(2, l2.local_addr().unwrap());
        let two = Node::start(2, l2, &addrs, 64);
        for epoch in 1..=5 {
            two.handle.send(1, vote(2, epoch));
            two.handle.send(3, vote(2, epoch));
        }
        // A few refused attempts, so the backoff is exercised.
        std::thread::sleep(Duration::from_millis(300));
        let one = Node::start(1, rebind(addrs[&1]), &addrs, 64);
        let three = Node::start(3, rebind(addrs[&3]), &addrs, 64);
        for late in [&one, &three] {
            let (from, n) = late.next();
            assert_eq!((from, n.election_epoch), (2, 5));
            for (from, n) in late.drain(Duration::from_millis(300)) {
                assert_eq!(
                    (from, n.election_epoch),
                    (2, 5),
                    "only the newest, maybe resent"
                );
            }
        }
        for node in [one, two, three] {
            node.handle.shutdown();
        }
    }

    #[test]
    fn a_burst_of_sends_never_blocks_and_keeps_the_newest() {
        const SENDS: i64 = 20_000;
        let mut addrs = BTreeMap::from([(3, reserve())]);
        let l2 = bind();
        addrs.insert(2, l2.local_addr().unwrap());
        let two = Node::start(2, l2, &addrs, 64);
        let started = Instant::now();
        for epoch in 0..SENDS {
            two.handle.send(3, vote(2, epoch));
            two.handle.send(2, vote(2, epoch));
        }
        assert!(
            started.elapsed() < WAIT,
            "send blocked: {:?}",
            started.elapsed()
        );
        // Loopback keeps the newest too: what arrives only grows, and ends with the last.
        let mut last = -1;
        while last != SENDS - 1 {
            let (from, n) = two.next();
            assert_eq!(from, 2);
            assert!(n.election_epoch > last, "{} after {last}", n.election_epoch);
            last = n.election_epoch;
        }
        let three = Node::start(3, rebind(addrs[&3]), &addrs, 64);
        let (from, n) = three.next();
        assert_eq!((from, n.election_epoch), (2, SENDS - 1));
        for (_, n) in three.drain(Duration::from_millis(300)) {
            assert_eq!(n.election_epoch, SENDS - 1);
        }
        two.handle.shutdown();
        three.handle.shutdown();
    }

    #[test]
    fn self_sends_loop_back_without_a_socket() {
        let node = Node::start(1, bind(), &BTreeMap::new(), 4);
        node.handle.send(1, vote(1, 7));
        assert_eq!(node.next(), (1, vote(1, 7)));
        assert_eq!(node.stat(|s| &s.sockets), 0);
        assert_eq!(node.stat(|s| &s.notifications_sent), 0);
        // A sid nobody configured is dropped, not dialled.
        node.handle.send(42, vote(1, 8));
        node.handle.send(1, vote(1, 9));
        assert_eq!(node.next(), (1, vote(1, 9)));
        assert_eq!(node.stat(|s| &s.sockets), 0);
        node.handle.shutdown();
    }

    #[test]
    fn the_wire_follows_zookeepers_larger_sid_rule() {
        let raw1 = bind();
        let raw3 = bind();
        let l2 = bind();
        let addr2 = l2.local_addr().unwrap();
        let addrs = BTreeMap::from([
            (1, raw1.local_addr().unwrap()),
            (3, raw3.local_addr().unwrap()),
        ]);
        let two = Node::start(2, l2, &addrs, 64);

        // To a smaller sid: connect, hello, then the framed notification on that connection.
        two.handle.send(1, vote(2, 1));
        let mut to1 = accept_within(&raw1);
        let h = read_hello(&mut to1);
        assert_eq!(h.protocol_version, ELECTION_PROTOCOL_V1);
        assert_eq!(
            (h.sid, h.addresses.as_str()),
            (2, addr2.to_string().as_str())
        );
        assert_eq!(read_notification(&mut to1), vote(2, 1));

        // To a larger sid: hello, then close; the notification waits for sid 3 to connect.
        two.handle.send(3, vote(2, 3));
        let mut ping = accept_within(&raw3);
        assert_eq!(read_hello(&mut ping).sid, 2);
        assert!(closed_by_server(&mut ping));
        let mut from3 = raw_as(addr2, 3);
        assert_eq!(read_notification(&mut from3), vote(2, 3));
        wait_until("one inbound and one outbound connection", || {
            two.stat(|s| &s.inbound) == 1 && two.stat(|s| &s.outbound) == 1
        });

        // Frames from a peer reach the core with its sid.
        from3.write_all(&frame(&vote(3, 4))).unwrap();
        assert_eq!(two.next(), (3, vote(3, 4)));

        // A second connection from sid 3 replaces the first, and gets the last notification
        // again since nothing newer waits.
        let mut again3 = raw_as(addr2, 3);
        assert_eq!(read_notification(&mut again3), vote(2, 3));
        assert!(closed_by_server(&mut from3));
        again3.write_all(&frame(&vote(3, 5))).unwrap();
        assert_eq!(two.next(), (3, vote(3, 5)));

        // A smaller sid that connects is turned away, its old connection dropped, and sid 2
        // connects back (resending its last notification to it).
        let mut from1 = raw_as(addr2, 1);
        assert!(closed_by_server(&mut from1));
        assert!(closed_by_server(&mut to1));
        let mut back1 = accept_within(&raw1);
        assert_eq!(read_hello(&mut back1).sid, 2);
        assert_eq!(read_notification(&mut back1), vote(2, 1));
        back1.write_all(&frame(&vote(1, 6))).unwrap();
        assert_eq!(two.next(), (1, vote(1, 6)));
        assert_eq!(two.stat(|s| &s.rejected), 0);
        two.handle.shutdown();
    }

    #[test]
    fn bad_input_closes_only_its_connection() {
        // Sid 3 is known to server 1 (so a raw socket may speak as it) but never dialled.
        let (l1, l2) = (bind(), bind());
        let addr1 = l1.local_addr().unwrap();
        let addrs = BTreeMap::from([(1, addr1), (2, l2.local_addr().unwrap()), (3, reserve())]);
        let one = Node::start(1, l1, &addrs, 64);
        let two = Node::start(2, l2, &addrs, 64);

        let mut bad_hellos: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", vec![0xff; 64]),
            (
                "an HTTP request",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            ("an unknown sid", hello(99, "127.0.0.1:1")),
            ("our own sid", hello(1, "127.0.0.1:1")),
        ];
        let mut long = hello(3, "127.0.0.1:1");
        long.truncate(16);
        long.extend_from_slice(&5000i32.to_be_bytes());
        bad_hellos.push(("an address over 2 KB", long));
        for (what, bytes) in bad_hellos {
            let mut s = raw(addr1);
            s.write_all(&bytes).unwrap();
            assert!(closed_by_server(&mut s), "{what} was not closed");
        }
        let mut silent = raw(addr1);
        let started = Instant::now();
        assert!(closed_by_server(&mut silent), "a silent connection stayed");
        assert!(started.elapsed() >= Duration::from_millis(250));

        let over = ELECTION_MESSAGE_MAX_BYTES as i32 + 1;
        let bad_frames: [(&str, Vec<u8>); 4] = [
            ("an oversized length", over.to_be_bytes().to_vec()),
            ("an empty frame", 0i32.to_be_bytes().to_vec()),
            ("a negative length", (-7i32).to_be_bytes().to_vec()),
            ("a short notification", vec![0, 0, 0, 5, 1, 2, 3, 4, 5]),
        ];
        for (what, bytes) in bad_frames {
            let mut s = raw_as(addr1, 3);
            s.write_all(&bytes).unwrap();
            assert!(closed_by_server(&mut s), "{what} was not closed");
        }
        assert!(one.stat(|s| &s.rejected) >= 10);

        // The real servers still talk both ways.
        one.handle.send(2, vote(1, 1));
        two.handle.send(1, vote(2, 1));
        assert_eq!(two.next(), (1, vote(1, 1)));
        assert_eq!(one.next(), (2, vote(2, 1)));
        one.handle.shutdown();
        two.handle.shutdown();
    }

    #[test]
    fn connections_owing_their_hello_are_capped() {
        let one = Node::start(1, bind(), &BTreeMap::from([(2, reserve())]), 4);
        let addr = one.handle.local_addr();
        let silent: Vec<StdStream> = (0..HELLO_CNXNS_MAX).map(|_| raw(addr)).collect();
        wait_until("every silent connection is accepted", || {
            one.stat(|s| &s.sockets) == HELLO_CNXNS_MAX as u64
        });
        let mut extra = raw(addr);
        extra
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Closed at once, well before the 300 ms hello timeout.
        assert!(closed_by_server(&mut extra));
        // Once they are gone, a real hello gets through again.
        drop(silent);
        wait_until("the silent connections are gone", || {
            one.stat(|s| &s.sockets) == 0
        });
        let mut from2 = raw_as(addr, 2);
        from2.write_all(&frame(&vote(2, 1))).unwrap();
        assert_eq!(one.next(), (2, vote(2, 1)));
        one.handle.shutdown();
    }

    #[test]
    fn a_full_core_channel_pauses_reading_and_drops_nothing() {
        const FRAMES: i64 = 200;
        let addrs = BTreeMap::from([(2, reserve())]);
        let one = Node::start(1, bind(), &addrs, 1);
        let mut from2 = raw_as(one.handle.local_addr(), 2);
        let mut all = Vec::new();
        for epoch in 0..FRAMES {
            all.extend_from_slice(&frame(&vote(2, epoch)));
        }
        from2.write_all(&all).unwrap();
        // Let the thread fill the channel and park.
        std::thread::sleep(Duration::from_millis(100));
        for epoch in 0..FRAMES {
            let (from, n) = one.next();
            assert_eq!((from, n.election_epoch), (2, epoch));
        }
        assert_eq!(one.stat(|s| &s.notifications_received), FRAMES as u64);
        one.handle.shutdown();
    }

    #[test]
    fn shutdown_is_bounded_and_closes_every_socket() {
        let raw3 = bind();
        let addrs = BTreeMap::from([(2, reserve()), (3, raw3.local_addr().unwrap())]);
        let started = Instant::now();
        for round in 0..10 {
            let one = Node::start(1, bind(), &addrs, 4);
            let addr = one.handle.local_addr();
            let mut from3 = raw_as(addr, 3);
            one.handle.send(3, vote(1, round));
            assert_eq!(read_notification(&mut from3), vote(1, round));
            // Something still dialling too: sid 2 is down.
            one.handle.send(2, vote(1, round));
            if round % 2 == 0 {
                one.handle.shutdown();
            } else {
                drop(one);
            }
            assert!(closed_by_server(&mut from3));
            assert!(StdStream::connect(addr).is_err(), "the listener is closed");
        }
        assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    }
}
