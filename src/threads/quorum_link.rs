//! The `zabd-quorum` thread: the sockets between a leader and its learners (ZooKeeper's
//! `LearnerCnxAcceptor` + `LearnerHandler` socket side on the leader, `Learner.connectToLeader`
//! + `readPacket`/`writePacket` on followers and observers) as one mio readiness loop.
//!
//! It only moves [`QuorumPacket`]s: the leader and learner state machines live in the sans-IO
//! core, which drives this thread with [`LinkCommand`]s through a [`LinkHandle`] and hears
//! back through a bounded channel of [`LinkEvent`]s. On the wire, packets go back to back as
//! jute records with no length prefix, as ZooKeeper writes them
//! ([`quorum_stream`](crate::jute::quorum_stream) splits them).
//!
//! Invariants:
//! - per link, the core sees `Up`, then `Packet`s in arrival order, then one `Closed`; every
//!   link that was `Up` or that the core asked to `Connect` gets exactly one `Closed`, and no
//!   event for a link id follows its `Closed` unless the core connects that id again;
//! - this thread never blocks on the event channel: an event without room is parked in its
//!   link's slot and that link is not read until it goes through, so the core can always
//!   hand it commands (the client thread's rule, see [`client`](super::client));
//! - the packets of one `Send` leave in order and back to back, coalesced with whatever else
//!   is queued into vectored writes; large data is queued by reference, never copied;
//! - memory is bounded: a length read from a peer is checked against [`LinkLimits`] before
//!   its bytes arrive, receive buffers grow only by bytes received, a link whose unsent output
//!   passes `max_unsent_bytes_per_link` is closed, and inbound links stop at `max_links`;
//! - a malformed stream closes its link with a log line; nothing a peer sends panics.
//!
//! Departures from ZooKeeper:
//! - a SNAP packet carries the whole snapshot in its data (ZooKeeper streams the snapshot
//!   after the packet), so `max_packet_bytes` is far above jute.maxbuffer;
//! - authinfo is bounded ([`MAX_AUTHINFO_COUNT`] entries of [`MAX_AUTHINFO_STRING_BYTES`]);
//! - a learner handler's queue is bounded (ZooKeeper's `queuedPackets` is not): a learner too
//!   slow to take its packets is disconnected and resyncs, as after any disconnection;
//! - there are no socket read timeouts here: the core's ticks decide when a peer is dead
//!   (syncLimit/initLimit), and connects give up after [`CONNECT_TIMEOUT`];
//! - TCP_NODELAY is always on (ZooKeeper's `follower.nodelay` default), on both ends.

use crate::jute::quorum::QuorumPacket;
use crate::jute::quorum_stream::{
    QuorumStreamDecoder, StreamLimits, MAX_AUTHINFO_COUNT, MAX_AUTHINFO_STRING_BYTES,
};
use crate::jute::Jute;
use crate::net::{read_once, Acceptor, RateLimit, ReadOutcome};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A link's id, unique among live links.
pub type LinkId = u64;

/// Ids the core picks for outbound connects have this bit set; inbound ids assigned by the
/// thread never do.
pub const OUTBOUND_LINK_BIT: u64 = 1 << 62;

/// What the thread tells the core.
#[derive(Debug)]
pub enum LinkEvent {
    /// An inbound link was accepted, or an outbound one connected.
    Up {
        link: LinkId,
        peer: SocketAddr,
    },
    Packet {
        link: LinkId,
        packet: QuorumPacket,
    },
    /// Exactly once per link that was `Up` or asked to `Connect` (also when a connect fails).
    Closed {
        link: LinkId,
    },
}

/// What the core tells the thread.
#[derive(Debug)]
pub enum LinkCommand {
    /// One attempt, bounded by [`CONNECT_TIMEOUT`]; failure is reported as `Closed`. `link`
    /// must have [`OUTBOUND_LINK_BIT`] set and not be live.
    Connect { link: LinkId, addr: SocketAddr },
    /// Queues packets, in order and back to back. Ignored for unknown or closing links.
    Send {
        link: LinkId,
        packets: Vec<QuorumPacket>,
    },
    /// Closes after flushing what is queued, within [`LINGER_TIMEOUT`].
    Close { link: LinkId },
    /// Drops every link now (role change); each gets `Closed`.
    CloseAll,
}

/// Bounds the thread enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkLimits {
    /// Largest data buffer of one packet, in and out (SNAP packets carry whole snapshots).
    /// Clamped to `i32::MAX`, the largest jute can express.
    pub max_packet_bytes: usize,
    /// Output a link may have queued before it is closed as too slow. Must exceed the largest
    /// packet the core sends (a snapshot) plus the traffic that follows it.
    pub max_unsent_bytes_per_link: usize,
    /// Live links, inbound and outbound together; inbound connections beyond it are refused
    /// and connects beyond it fail.
    pub max_links: usize,
}

impl Default for LinkLimits {
    fn default() -> LinkLimits {
        LinkLimits {
            max_packet_bytes: 1 << 30,
            max_unsent_bytes_per_link: (1 << 30) + (256 << 20),
            max_links: 256,
        }
    }
}

/// Commands in flight to the thread; [`LinkHandle::send`] blocks while this many wait.
pub const COMMAND_CHANNEL_CAPACITY: usize = 1024;

/// How long one connect attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closed link gets to flush its output and see the peer's end.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(10);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// Bytes per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// `read` calls per link per loop iteration before the others get their turn.
const READS_PER_TURN: usize = 16;
/// Commands taken per loop iteration.
const COMMANDS_PER_TURN: usize = 256;
/// Connections accepted per loop iteration.
const ACCEPT_BATCH: usize = 16;
/// Buffers per vectored write.
const WRITE_SLICES_MAX: usize = 64;
/// Data at least this large is queued by reference instead of copied into the output buffer.
const COPY_DATA_MAX_BYTES: usize = 16 * 1024;
/// How long to wait before retrying events the core's channel had no room for.
const CHANNEL_RETRY: Duration = Duration::from_millis(1);
const EVENTS_CAPACITY: usize = 256;
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The running thread. Dropping it stops the thread too.
pub struct LinkHandle {
    commands: Sender<LinkCommand>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
}

impl LinkHandle {
    /// `listener`: the quorum port, already bound (None for a server that never leads, e.g.
    /// an observer or tests).
    pub fn spawn(
        listener: Option<std::net::TcpListener>,
        events: Sender<LinkEvent>,
        limits: LinkLimits,
    ) -> io::Result<LinkHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let listener = match listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let local_addr = listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let (commands, command_rx) = bounded(COMMAND_CHANNEL_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let link_loop = LinkLoop::new(poll, listener, limits, events, command_rx, stop.clone());
        let thread = std::thread::Builder::new()
            .name("zabd-quorum".to_owned())
            .spawn(move || link_loop.run())?;
        Ok(LinkHandle {
            commands,
            waker,
            stop,
            thread: Some(thread),
            local_addr,
        })
    }

    /// May block briefly when the command channel is full (bounded); wakes the thread.
    pub fn send(&self, cmd: LinkCommand) {
        if self.commands.send(cmd).is_err() {
            log::debug!("quorum link thread is gone; command dropped");
            return;
        }
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the quorum link thread: {e}");
        }
    }

    /// The quorum port's address (the real port when it was bound to 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops the thread and waits for it; every link's socket is closed when this returns.
    /// No `Closed` events are sent for them.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the quorum link thread panicked");
            }
        }
    }
}

/// A link's place in the slab plus its serial, so a reused slot is never mistaken for it.
type Slot = (usize, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// An outbound connect in progress.
    Connecting,
    Up,
    /// The core asked to close: writing out what is queued, reading nothing.
    Closing,
    /// Output flushed and FIN sent; reading and discarding until the peer's end, so that our
    /// close does not reset the connection while the peer still reads our last packets. The
    /// core has its `Closed` and the id is free again.
    Draining,
}

struct Link {
    id: LinkId,
    serial: u64,
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    rbuf: BytesMut,
    decoder: QuorumStreamDecoder,
    out: OutQueue,
    /// An event the core's channel had no room for; delivered before anything else.
    parked: Option<LinkEvent>,
    /// The core knows this link (it asked to connect it, or took its `Up`), so it is owed a
    /// `Closed`.
    owed_closed: bool,
    /// The socket may hold unread bytes (an edge was seen, `WouldBlock` not yet).
    readable: bool,
}

/// A link's unsent output: encoded packets, with large data buffers kept as their own
/// segments instead of being copied.
#[derive(Default)]
struct OutQueue {
    segments: VecDeque<Bytes>,
    /// Small packets encode here and join `segments` when a write is due.
    tail: BytesMut,
    bytes: usize,
}

impl OutQueue {
    fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The caller checked the lengths (see [`send_refusal`]).
    fn push(&mut self, p: &QuorumPacket) {
        self.tail.put_i32(p.type_);
        self.tail.put_i64(p.zxid);
        match &p.data {
            None => self.tail.put_i32(-1),
            Some(data) => {
                self.tail.put_i32(data.len() as i32);
                if data.len() < COPY_DATA_MAX_BYTES {
                    self.tail.put_slice(data);
                } else {
                    self.seal();
                    self.segments.push_back(data.clone());
                }
            }
        }
        p.authinfo.put(&mut self.tail);
        self.bytes += encoded_len(p);
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.segments.push_back(self.tail.split().freeze());
        }
    }

    /// Writes until empty or the socket would block.
    fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.seal();
        while !self.segments.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
            let count = self.segments.len().min(WRITE_SLICES_MAX);
            for (slice, segment) in slices.iter_mut().zip(&self.segments) {
                *slice = IoSlice::new(segment);
            }
            let n = match w.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            self.advance(n);
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let front = self
                .segments
                .front_mut()
                .expect("wrote no more than queued");
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.segments.pop_front();
        }
    }
}

/// The bytes `p` takes on the wire.
fn encoded_len(p: &QuorumPacket) -> usize {
    let data = p.data.as_ref().map_or(0, Bytes::len);
    let ids: usize = p
        .authinfo
        .iter()
        .map(|id| 8 + id.scheme.len() + id.id.len())
        .sum();
    4 + 8 + 4 + data + 4 + ids
}

/// Why the packets of a `Send` cannot go out, if they cannot: the peer would refuse them.
fn send_refusal(packets: &[QuorumPacket], max_packet_bytes: usize) -> Option<String> {
    for p in packets {
        let data_bytes = p.data.as_ref().map_or(0, Bytes::len);
        if data_bytes > max_packet_bytes {
            return Some(format!(
                "packet type {} has {data_bytes} bytes of data, above the limit {max_packet_bytes}",
                p.type_
            ));
        }
        if p.authinfo.len() > MAX_AUTHINFO_COUNT {
            return Some(format!("packet has {} authinfo entries", p.authinfo.len()));
        }
        let longest = p.authinfo.iter().map(|id| id.scheme.len().max(id.id.len()));
        if longest.max().unwrap_or(0) > MAX_AUTHINFO_STRING_BYTES {
            return Some("packet has an authinfo string above the limit".to_owned());
        }
    }
    None
}

/// What decoding a link's buffered bytes came to.
enum Step {
    /// The link is gone or has nothing more to do now.
    Done,
    /// An event waits in the link's slot.
    Parked,
    /// No whole packet buffered: read more.
    NeedBytes,
}

struct LinkLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    acceptor: Acceptor,
    links: Slab<Link>,
    /// Live links (not draining) by id.
    by_id: HashMap<LinkId, usize>,
    next_serial: u64,
    /// Links with bytes to read or decode this iteration.
    active: Vec<Slot>,
    /// Links whose parked event waits for room in the channel.
    blocked: Vec<Slot>,
    /// Links with output to write.
    dirty: Vec<Slot>,
    /// Events of links already gone (a last packet, then `Closed`), in order. While any wait
    /// here, no other event is sent, so a `Closed` is never overtaken by events of a link that
    /// reuses its id.
    backlog: VecDeque<LinkEvent>,
    connect_timers: VecDeque<(Instant, Slot)>,
    linger_timers: VecDeque<(Instant, Slot)>,
    limits: LinkLimits,
    stream_limits: StreamLimits,
    events: Sender<LinkEvent>,
    commands: Receiver<LinkCommand>,
    stop: Arc<AtomicBool>,
    scratch: Vec<u8>,
    /// More commands wait than one iteration takes.
    more_commands: bool,
    /// The core dropped its end of either channel: nothing left to do.
    core_gone: bool,
    refused_log: RateLimit,
}

impl LinkLoop {
    fn new(
        poll: Poll,
        listener: Option<TcpListener>,
        limits: LinkLimits,
        events: Sender<LinkEvent>,
        commands: Receiver<LinkCommand>,
        stop: Arc<AtomicBool>,
    ) -> LinkLoop {
        let limits = LinkLimits {
            max_packet_bytes: limits.max_packet_bytes.min(i32::MAX as usize),
            ..limits
        };
        LinkLoop {
            poll,
            acceptor: Acceptor::new(listener.is_some(), LOG_INTERVAL),
            listener,
            links: Slab::new(),
            by_id: HashMap::new(),
            next_serial: 1,
            active: Vec::new(),
            blocked: Vec::new(),
            dirty: Vec::new(),
            backlog: VecDeque::new(),
            connect_timers: VecDeque::new(),
            linger_timers: VecDeque::new(),
            stream_limits: StreamLimits::new(limits.max_packet_bytes),
            limits,
            events,
            commands,
            stop,
            scratch: vec![0; READ_CHUNK_BYTES],
            more_commands: true,
            core_gone: false,
            refused_log: RateLimit::new(LOG_INTERVAL),
        }
    }

    /// Runs until the handle stops it or the core hangs up; every socket closes when it
    /// returns.
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.stop.load(Ordering::Acquire) && !self.core_gone {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("quorum link thread poll failed: {e}");
                return;
            }
            for event in events.iter() {
                self.on_event(event);
            }
            self.iterate(Instant::now());
        }
    }

    fn iterate(&mut self, now: Instant) {
        self.drain_commands(now);
        self.flush_backlog();
        self.active.append(&mut self.blocked);
        self.accept(now);
        self.service_active();
        self.flush_dirty();
        self.expire(now);
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.more_commands || !self.active.is_empty() || self.can_accept(now) {
            return Some(Duration::ZERO);
        }
        if !self.blocked.is_empty() || !self.backlog.is_empty() {
            return Some(CHANNEL_RETRY);
        }
        let timers = [self.connect_timers.front(), self.linger_timers.front()];
        let next_timer = timers.into_iter().flatten().map(|(t, _)| *t).min();
        let next_accept = self.acceptor.wakeup();
        [next_timer, next_accept]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn on_event(&mut self, event: &Event) {
        let key = match event.token() {
            LISTENER => {
                self.acceptor.on_readable();
                return;
            }
            WAKER => {
                self.more_commands = true;
                return;
            }
            Token(key) => key,
        };
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        let slot = (key, link.serial);
        if link.state == State::Connecting {
            self.finish_connect(slot);
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            link.readable = true;
            self.active.push(slot);
        }
        if event.is_writable() || event.is_write_closed() {
            self.dirty.push(slot);
        }
    }

    fn link(&mut self, slot: Slot) -> Option<&mut Link> {
        self.links.get_mut(slot.0).filter(|l| l.serial == slot.1)
    }

    fn slot_of(&self, id: LinkId) -> Option<Slot> {
        let key = *self.by_id.get(&id)?;
        Some((key, self.links[key].serial))
    }

    // ---- commands ----

    fn drain_commands(&mut self, now: Instant) {
        self.more_commands = false;
        for _ in 0..COMMANDS_PER_TURN {
            match self.commands.try_recv() {
                Ok(cmd) => self.on_command(cmd, now),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.core_gone = true;
                    return;
                }
            }
        }
        self.more_commands = true;
    }

    fn on_command(&mut self, cmd: LinkCommand, now: Instant) {
        match cmd {
            LinkCommand::Connect { link, addr } => self.on_connect(link, addr, now),
            LinkCommand::Send { link, packets } => self.on_send(link, &packets),
            LinkCommand::Close { link } => self.on_close(link, now),
            LinkCommand::CloseAll => {
                let slots: Vec<Slot> = self
                    .by_id
                    .keys()
                    .filter_map(|&id| self.slot_of(id))
                    .collect();
                if !slots.is_empty() {
                    log::info!("closing all {} quorum links", slots.len());
                }
                for slot in slots {
                    self.remove(slot, false);
                }
            }
        }
    }

    fn on_connect(&mut self, id: LinkId, addr: SocketAddr, now: Instant) {
        if id & OUTBOUND_LINK_BIT == 0 || self.by_id.contains_key(&id) {
            // A core bug. Refusing (without a Closed: the live link with this id will get its
            // own) keeps every id naming one link; panicking would take every link down.
            log::error!("refusing to connect quorum link {id:#x}: not a free outbound id");
            return;
        }
        if self.by_id.len() >= self.limits.max_links {
            log::warn!(
                "not connecting to {addr}: {} quorum links, the limit",
                self.by_id.len()
            );
            self.backlog.push_back(LinkEvent::Closed { link: id });
            return;
        }
        let mut stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(e) => {
                log::info!("cannot connect to quorum peer {addr}: {e}");
                self.backlog.push_back(LinkEvent::Closed { link: id });
                return;
            }
        };
        let key = self.links.vacant_entry().key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            log::warn!("cannot register the connection to {addr}: {e}");
            self.backlog.push_back(LinkEvent::Closed { link: id });
            return;
        }
        let slot = self.insert(key, id, stream, addr, State::Connecting);
        self.link(slot).expect("just inserted").owed_closed = true;
        self.connect_timers.push_back((now + CONNECT_TIMEOUT, slot));
    }

    /// `key` is the slab's vacant key the stream was registered with.
    fn insert(
        &mut self,
        key: usize,
        id: LinkId,
        stream: TcpStream,
        peer: SocketAddr,
        state: State,
    ) -> Slot {
        let serial = self.next_serial;
        self.next_serial += 1;
        let inserted = self.links.insert(Link {
            id,
            serial,
            stream,
            peer,
            state,
            rbuf: BytesMut::new(),
            decoder: QuorumStreamDecoder::new(self.stream_limits),
            out: OutQueue::default(),
            parked: None,
            owed_closed: false,
            readable: state == State::Up,
        });
        assert_eq!(inserted, key, "registered under the slab's vacant key");
        self.by_id.insert(id, key);
        (key, serial)
    }

    /// A connect in progress saw an event: it either finished or failed (or the event was
    /// spurious and it goes on).
    fn finish_connect(&mut self, slot: Slot) {
        let Some(link) = self.link(slot) else {
            return;
        };
        let failure = match link.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match link.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if matches!(e.kind(), io::ErrorKind::NotConnected) => return,
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failure {
            log::info!("cannot connect to quorum peer {}: {e}", link.peer);
            self.remove(slot, false);
            return;
        }
        if let Err(e) = link.stream.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY towards {}: {e}", link.peer);
        }
        link.state = State::Up;
        link.readable = true;
        let up = LinkEvent::Up {
            link: link.id,
            peer: link.peer,
        };
        log::info!("quorum link {:#x} connected to {}", link.id, link.peer);
        self.send_event(slot, up);
        self.active.push(slot);
        self.dirty.push(slot);
    }

    fn on_send(&mut self, id: LinkId, packets: &[QuorumPacket]) {
        let Some(slot) = self.slot_of(id) else {
            log::debug!("send on unknown quorum link {id:#x} ignored");
            return;
        };
        let max_packet_bytes = self.limits.max_packet_bytes;
        let max_unsent = self.limits.max_unsent_bytes_per_link;
        let link = self.link(slot).expect("live id");
        if link.state == State::Closing {
            log::debug!("send on closing quorum link {id:#x} ignored");
            return;
        }
        if let Some(why) = send_refusal(packets, max_packet_bytes) {
            log::error!(
                "closing quorum link {id:#x} to {}: cannot send: {why}",
                link.peer
            );
            self.remove(slot, false);
            return;
        }
        for p in packets {
            link.out.push(p);
        }
        if link.out.bytes > max_unsent {
            // Make room if the socket takes it before judging the peer.
            self.flush(slot);
        } else {
            self.dirty.push(slot);
        }
    }

    fn on_close(&mut self, id: LinkId, now: Instant) {
        let Some(slot) = self.slot_of(id) else {
            log::debug!("close of unknown quorum link {id:#x} ignored");
            return;
        };
        let link = self.link(slot).expect("live id");
        match link.state {
            State::Connecting => self.remove(slot, false),
            State::Up => {
                // The core is done with this link: what it has not taken yet is moot.
                link.parked = None;
                link.state = State::Closing;
                self.linger_timers.push_back((now + LINGER_TIMEOUT, slot));
                self.dirty.push(slot);
            }
            State::Closing | State::Draining => {}
        }
    }

    // ---- events to the core ----

    /// Sends at once or parks the event in the link's slot (which pauses its reads).
    fn send_event(&mut self, slot: Slot, event: LinkEvent) {
        let is_up = matches!(event, LinkEvent::Up { .. });
        let event = if self.backlog.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => {
                    if is_up {
                        if let Some(link) = self.link(slot) {
                            link.owed_closed = true;
                        }
                    }
                    return;
                }
                Err(TrySendError::Full(event)) => event,
                Err(TrySendError::Disconnected(_)) => {
                    self.core_gone = true;
                    return;
                }
            }
        } else {
            event
        };
        if let Some(link) = self.link(slot) {
            assert!(
                link.parked.is_none(),
                "a parked event goes before any other"
            );
            link.parked = Some(event);
        }
    }

    /// Delivers a parked event; true when the slot is free.
    fn deliver_parked(&mut self, slot: Slot) -> bool {
        let Some(event) = self.link(slot).and_then(|l| l.parked.take()) else {
            return true;
        };
        self.send_event(slot, event);
        self.link(slot).is_some_and(|l| l.parked.is_none())
    }

    fn flush_backlog(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.core_gone = true;
                    return;
                }
            }
        }
    }

    // ---- accepting ----

    fn can_accept(&self, now: Instant) -> bool {
        self.backlog.is_empty() && self.acceptor.wants_accept(now)
    }

    fn accept(&mut self, now: Instant) {
        // Gone links' events go first, which also keeps the backlog bounded by the links.
        if !self.can_accept(now) {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            let what = "a quorum connection";
            let Some((stream, peer)) = self.acceptor.accept(listener, now, what) else {
                return;
            };
            self.admit(stream, peer, now);
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        if self.by_id.len() >= self.limits.max_links {
            if let Some(n) = self.refused_log.check(now) {
                log::warn!(
                    "refusing quorum connection from {peer}: {} links, the limit ({n} not logged)",
                    self.by_id.len()
                );
            }
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY for {peer}: {e}");
        }
        let key = self.links.vacant_entry().key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            log::warn!("cannot register quorum connection from {peer}: {e}");
            return;
        }
        // Inbound ids are serials: unique for the thread's life, far below OUTBOUND_LINK_BIT.
        let id = self.next_serial;
        assert!(id & OUTBOUND_LINK_BIT == 0);
        let slot = self.insert(key, id, stream, peer, State::Up);
        log::info!("quorum link {id:#x} accepted from {peer}");
        self.send_event(slot, LinkEvent::Up { link: id, peer });
        // Packets may already be waiting: look before the first edge.
        self.active.push(slot);
    }

    // ---- reading ----

    fn service_active(&mut self) {
        let mut slots = std::mem::take(&mut self.active);
        // A link may be listed more than once (several events): service it once.
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            self.service(slot);
        }
    }

    /// Moves one link forward: deliver a parked event, decode buffered packets, read more.
    fn service(&mut self, slot: Slot) {
        let Some(link) = self.link(slot) else {
            return;
        };
        match link.state {
            State::Up => {}
            State::Draining => return self.drain(slot),
            State::Connecting | State::Closing => return,
        }
        if !self.deliver_parked(slot) {
            self.blocked.push(slot);
            return;
        }
        for _ in 0..READS_PER_TURN {
            match self.decode_buffered(slot) {
                Step::Done => return,
                Step::Parked => {
                    self.blocked.push(slot);
                    return;
                }
                Step::NeedBytes => {}
            }
            if !self.read_chunk(slot) {
                return;
            }
        }
        // Budget spent with bytes possibly left: another turn next iteration.
        self.active.push(slot);
    }

    /// Sends whole packets from the read buffer to the core while there is room.
    fn decode_buffered(&mut self, slot: Slot) -> Step {
        loop {
            let Some(link) = self.link(slot) else {
                return Step::Done;
            };
            let packet = match link.decoder.next(&mut link.rbuf) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Step::NeedBytes,
                Err(e) => {
                    log::warn!("closing quorum link {:#x} to {}: {e}", link.id, link.peer);
                    self.remove(slot, true);
                    return Step::Done;
                }
            };
            let id = link.id;
            self.send_event(slot, LinkEvent::Packet { link: id, packet });
            if self.link(slot).is_some_and(|l| l.parked.is_some()) {
                return Step::Parked;
            }
        }
    }

    /// One `read` into the link's buffer; false when there is nothing more to do now.
    fn read_chunk(&mut self, slot: Slot) -> bool {
        let Some(link) = self.links.get_mut(slot.0).filter(|l| l.serial == slot.1) else {
            return false;
        };
        if !link.readable {
            return false;
        }
        match read_once(&mut link.stream, &mut self.scratch, &mut link.rbuf) {
            Ok(ReadOutcome::Data(_)) => true,
            Ok(ReadOutcome::WouldBlock) => {
                link.readable = false;
                false
            }
            Ok(ReadOutcome::Eof) => {
                if link.rbuf.is_empty() {
                    log::info!("quorum link {:#x} closed by {}", link.id, link.peer);
                } else {
                    log::warn!(
                        "quorum link {:#x} closed by {} inside a packet ({} bytes unused)",
                        link.id,
                        link.peer,
                        link.rbuf.len()
                    );
                }
                self.remove(slot, true);
                false
            }
            Err(e) => {
                log::info!("quorum link {:#x} to {} failed: {e}", link.id, link.peer);
                self.remove(slot, true);
                false
            }
        }
    }

    /// Reads and discards what a draining link's peer still sends, until its end.
    fn drain(&mut self, slot: Slot) {
        let Some(link) = self.links.get_mut(slot.0).filter(|l| l.serial == slot.1) else {
            return;
        };
        for _ in 0..READS_PER_TURN {
            match link.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.remove(slot, false);
                    return;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    link.readable = false;
                    return;
                }
                Err(_) => {
                    self.remove(slot, false);
                    return;
                }
            }
        }
        self.active.push(slot);
    }

    // ---- writing ----

    fn flush_dirty(&mut self) {
        let mut slots = std::mem::take(&mut self.dirty);
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            self.flush(slot);
        }
    }

    /// Writes what the socket takes; closes a link too slow to take its output, and finishes
    /// closing a link whose last output is out.
    fn flush(&mut self, slot: Slot) {
        let max_unsent = self.limits.max_unsent_bytes_per_link;
        let Some(link) = self.link(slot) else {
            return;
        };
        match link.state {
            State::Up | State::Closing => {
                if let Err(e) = link.out.write_to(&mut link.stream) {
                    log::info!("quorum link {:#x} to {} failed: {e}", link.id, link.peer);
                    self.remove(slot, true);
                    return;
                }
            }
            // Output queued before the connect finished counts against the limit too.
            State::Connecting => {}
            State::Draining => return,
        }
        if link.out.bytes > max_unsent {
            log::warn!(
                "closing quorum link {:#x} to {}: {} bytes unsent (limit {max_unsent}), \
                 the peer is too slow",
                link.id,
                link.peer,
                link.out.bytes
            );
            self.remove(slot, true);
            return;
        }
        if link.state == State::Closing && link.out.is_empty() {
            self.start_draining(slot);
        }
    }

    /// The last output is out: send FIN, tell the core, and wait (within the linger time) for
    /// the peer's end before dropping the socket.
    fn start_draining(&mut self, slot: Slot) {
        let link = self.link(slot).expect("caller checked");
        let id = link.id;
        if link.stream.shutdown(Shutdown::Write).is_err() {
            self.remove(slot, false);
            return;
        }
        link.state = State::Draining;
        link.readable = true;
        link.rbuf = BytesMut::new();
        let owed = std::mem::take(&mut link.owed_closed);
        self.by_id.remove(&id);
        if owed {
            self.backlog.push_back(LinkEvent::Closed { link: id });
            self.flush_backlog();
        }
        self.active.push(slot);
    }

    // ---- closing ----

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, slot)) = self.connect_timers.front() {
            if at > now {
                break;
            }
            self.connect_timers.pop_front();
            if let Some(link) = self.link(slot).filter(|l| l.state == State::Connecting) {
                log::info!(
                    "cannot connect to quorum peer {}: no answer within {CONNECT_TIMEOUT:?}",
                    link.peer
                );
                self.remove(slot, false);
            }
        }
        while let Some(&(at, slot)) = self.linger_timers.front() {
            if at > now {
                break;
            }
            self.linger_timers.pop_front();
            if let Some(link) = self.link(slot) {
                if link.state == State::Closing {
                    log::warn!(
                        "quorum link {:#x} to {}: {} bytes not taken within {LINGER_TIMEOUT:?}",
                        link.id,
                        link.peer,
                        link.out.bytes
                    );
                }
                self.remove(slot, false);
            }
        }
    }

    /// Drops a link now. The core gets its `Closed` if owed, after the link's parked packet
    /// when `deliver_parked` (the peer ended the link, so what it sent still counts; when the
    /// core ended it, it is moot).
    fn remove(&mut self, slot: Slot, deliver_parked: bool) {
        if self.link(slot).is_none() {
            return;
        }
        let mut link = self.links.remove(slot.0);
        let _ = self.poll.registry().deregister(&mut link.stream);
        if link.state == State::Draining {
            return;
        }
        self.by_id.remove(&link.id);
        match link.parked.take() {
            Some(packet @ LinkEvent::Packet { .. }) if deliver_parked => {
                self.backlog.push_back(packet);
            }
            _ => {}
        }
        if link.owed_closed {
            self.backlog.push_back(LinkEvent::Closed { link: link.id });
        }
        self.flush_backlog();
        // Dropping `link` closes the socket.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::Id;

    /// A writer that takes at most `limit` bytes, then blocks.
    struct Sink {
        taken: Vec<u8>,
        limit: usize,
        calls: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let room = self.limit - self.taken.len();
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room - n);
                self.taken.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn packet(data: Option<Vec<u8>>) -> QuorumPacket {
        QuorumPacket {
            type_: 2,
            zxid: 77,
            data: data.map(Bytes::from),
            authinfo: vec![Id::new("ip", "127.0.0.1")],
        }
    }

    #[test]
    fn queued_packets_are_encoded_as_jute_and_written_together() {
        let packets = [
            packet(None),
            packet(Some(vec![1; 10])),
            packet(Some(vec![2; COPY_DATA_MAX_BYTES * 2])),
            packet(Some(Vec::new())),
        ];
        let mut out = OutQueue::default();
        for p in &packets {
            out.push(p);
        }
        let expected: Vec<u8> = packets
            .iter()
            .flat_map(crate::jute::encode_to_vec)
            .collect();
        assert_eq!(out.bytes, expected.len());
        let mut sink = Sink {
            taken: Vec::new(),
            limit: usize::MAX,
            calls: 0,
        };
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.taken, expected);
        assert_eq!(sink.calls, 1, "one vectored write for everything");
        assert!(out.is_empty());
    }

    #[test]
    fn partial_writes_keep_the_rest_in_order() {
        let packets = [
            packet(Some(vec![3; COPY_DATA_MAX_BYTES])),
            packet(Some(vec![4; 5])),
        ];
        let mut out = OutQueue::default();
        for p in &packets {
            out.push(p);
        }
        let expected: Vec<u8> = packets
            .iter()
            .flat_map(crate::jute::encode_to_vec)
            .collect();
        let mut sink = Sink {
            taken: Vec::new(),
            limit: 7,
            calls: 0,
        };
        for step in 1.. {
            out.write_to(&mut sink).unwrap();
            if out.is_empty() {
                break;
            }
            assert_eq!(out.bytes, expected.len() - sink.taken.len());
            sink.limit = (sink.limit + 1000).min(expected.len());
            assert!(step < 100);
        }
        assert_eq!(sink.taken, expected);
    }

    #[test]
    fn packets_the_peer_would_refuse_are_not_sent() {
        assert_eq!(send_refusal(&[packet(Some(vec![0; 10]))], 10), None);
        assert!(send_refusal(&[packet(Some(vec![0; 11]))], 10).is_some());
        let mut many = packet(None);
        many.authinfo = vec![Id::default(); MAX_AUTHINFO_COUNT + 1];
        assert!(send_refusal(&[many], 10).is_some());
        let mut long = packet(None);
        long.authinfo = vec![Id::new("x", &"y".repeat(MAX_AUTHINFO_STRING_BYTES + 1))];
        assert!(send_refusal(&[long], 10).is_some());
    }
}
