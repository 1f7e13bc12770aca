//! The `zabd-client` thread: ZooKeeper's NIOServerCnxnFactory + NIOServerCnxn as one mio
//! readiness loop. It accepts connections (enforcing maxClientCnxns per IP and maxCnxns in
//! all), splits their bytes into frames, decodes them into [`Input`]s for the core, and writes
//! the core's [`Output`]s back.
//!
//! Flow control, never dropping anything:
//! - a connection stops being read while it has [`CNXN_OUTSTANDING_MAX`] requests at the core,
//!   or while `globalOutstandingLimit` requests are at the core in all and it has at least one
//!   of them (ZooKeeper's `shouldThrottle`: a quiet connection may still get one in);
//! - an input the core's channel has no room for waits in its connection's slot, and that
//!   connection is not read until it is delivered. This thread never blocks on a channel, so
//!   the core can always hand it outputs: that is what keeps the two from deadlocking.
//!
//! mio is edge-triggered: "not reading" is simply not calling `read`. A connection whose
//! socket may still hold bytes keeps a `readable` flag and sits on a work list until it has
//! read to `WouldBlock`, so no readiness edge is ever lost while it is paused.

use crate::config::Config;
use crate::jute::frame;
use crate::jute::proto::{
    put_reply, xid, ConnectRequest, ReplyHeader, Request, RequestHeader, Response,
};
use crate::jute::{Jute, Reader};
use crate::net::{read_once, write_until_blocked, Acceptor, RateLimit, ReadOutcome};
use crate::server::{CnxnId, Input, Output};
use bytes::{BufMut, BytesMut};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reserved tokens sit above every slab key.
pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX);

/// Requests one connection may have at the core before its reads pause. ZooKeeper has no
/// per-connection cap (only the global limit); this keeps one pipelining client from taking
/// the whole global budget while leaving room for deep pipelines (benchmarks keep 100+).
pub const CNXN_OUTSTANDING_MAX: usize = 1000;

/// Output a connection may have waiting to be written before it is closed: a client that
/// never reads must not grow the server's memory without bound.
pub const WRITE_BUFFER_MAX_BYTES: usize = 64 << 20;

/// A connection asked to close gets this long to flush its last output.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections accepted per loop iteration, so a connection storm cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// Bytes per `read` call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// `read` calls per connection per loop iteration before the others get their turn.
const READS_PER_TURN: usize = 16;

/// Output batches taken from the core per loop iteration.
const OUTPUT_BATCHES_PER_TURN: usize = 64;

/// How long to wait before retrying inputs the core's channel had no room for.
const CHANNEL_RETRY: Duration = Duration::from_millis(1);

const EVENTS_CAPACITY: usize = 1024;

/// Connection ids keep the slab key in the low 32 bits, so connections stay below this.
const CNXN_SLOTS_MAX: usize = 1 << 20;

const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The limits this thread enforces, from zoo.cfg.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_client_cnxns: usize,
    pub max_cnxns: usize,
    pub global_outstanding_limit: usize,
    pub jute_max_buffer_bytes: usize,
    /// A connection must send its handshake (or a four-letter word) within this long.
    pub handshake_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            max_client_cnxns: config.max_client_cnxns,
            max_cnxns: config.max_cnxns,
            global_outstanding_limit: config.global_outstanding_limit,
            jute_max_buffer_bytes: config.jute_max_buffer_bytes,
            handshake_timeout: Duration::from_millis(config.sessionless_cnxn_timeout_ms),
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing decoded yet: the first bytes are a handshake or a four-letter word.
    Handshake,
    /// The handshake went to the core; every frame is a request.
    Session,
    /// A four-letter word went to the core; nothing more is read.
    FourLetter,
}

struct Cnxn {
    id: CnxnId,
    stream: TcpStream,
    peer: SocketAddr,
    phase: Phase,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// An input the core's channel had no room for; sent before anything else.
    pending: Option<Input>,
    /// Requests sent to the core and not yet answered.
    outstanding: usize,
    /// The socket may hold unread bytes (an edge was seen, `WouldBlock` not yet).
    readable: bool,
    /// Close once `wbuf` is written.
    closing: bool,
    /// Listed in `ClientLoop::stalled`.
    stalled: bool,
    /// WRITABLE is part of the registered interest.
    write_interest: bool,
}

/// What decoding the front of a read buffer produced.
enum Decoded {
    /// Not a whole frame yet.
    Incomplete,
    Input(Input),
    /// A frame that cannot be split or a handshake that does not decode: close.
    Fatal(String),
}

/// The client thread: one Poll, the listener, and a slab of connections.
pub struct ClientLoop {
    poll: Poll,
    listener: TcpListener,
    acceptor: Acceptor,
    cnxns: Slab<Cnxn>,
    per_ip: HashMap<IpAddr, usize>,
    next_generation: u32,
    /// Connections with work left this iteration (unread bytes, undelivered input).
    active: Vec<CnxnId>,
    /// Connections paused by the outstanding limits, revisited when replies come back.
    stalled: Vec<CnxnId>,
    /// Connections with new output to write.
    dirty: Vec<CnxnId>,
    /// Inputs of closed connections (their last input, then `Closed`) awaiting channel room.
    backlog: VecDeque<Input>,
    handshake_timers: VecDeque<(Instant, CnxnId)>,
    linger_timers: VecDeque<(Instant, CnxnId)>,
    outstanding_total: usize,
    limits: Limits,
    inputs: Sender<Input>,
    outputs: Receiver<Vec<Output>>,
    stop: Arc<AtomicBool>,
    scratch: Vec<u8>,
    /// Set when the core's channel was full this iteration.
    channel_full: bool,
    /// More output batches wait than one iteration takes.
    more_outputs: bool,
    /// A reply lowered an outstanding count: stalled connections may read again.
    released: bool,
    core_gone: bool,
    refused_log: RateLimit,
}

impl ClientLoop {
    /// `poll` must already hold the waker (token [`WAKER`]); the listener is registered here.
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        limits: Limits,
        inputs: Sender<Input>,
        outputs: Receiver<Vec<Output>>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<ClientLoop> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(ClientLoop {
            poll,
            listener,
            acceptor: Acceptor::new(true, LOG_INTERVAL),
            cnxns: Slab::new(),
            per_ip: HashMap::new(),
            next_generation: 1,
            active: Vec::new(),
            stalled: Vec::new(),
            dirty: Vec::new(),
            backlog: VecDeque::new(),
            handshake_timers: VecDeque::new(),
            linger_timers: VecDeque::new(),
            outstanding_total: 0,
            limits,
            inputs,
            outputs,
            stop,
            scratch: vec![0; READ_CHUNK_BYTES],
            channel_full: false,
            more_outputs: false,
            released: false,
            core_gone: false,
            refused_log: RateLimit::new(LOG_INTERVAL),
        })
    }

    /// Runs until told to stop or the core goes away; every socket closes when it returns.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.stop.load(Ordering::Acquire) && !self.core_gone {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("client thread poll failed: {e}");
                return;
            }
            self.channel_full = false;
            for event in events.iter() {
                self.on_event(event);
            }
            self.iterate(Instant::now());
        }
    }

    /// One pass over everything that may have work, after the events were noted.
    fn iterate(&mut self, now: Instant) {
        self.drain_outputs();
        self.flush_dirty();
        self.flush_backlog();
        self.accept(now);
        if std::mem::take(&mut self.released) {
            self.release_stalled();
        }
        self.service_active();
        self.expire(now);
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let accept_now = self.backlog.is_empty() && self.acceptor.wants_accept(now);
        if self.more_outputs || accept_now || !self.active.is_empty() || !self.backlog.is_empty() {
            return Some(if self.channel_full {
                CHANNEL_RETRY
            } else {
                Duration::ZERO
            });
        }
        let timers = [self.handshake_timers.front(), self.linger_timers.front()];
        let next_timer = timers.into_iter().flatten().map(|(t, _)| *t).min();
        let next_accept = self.acceptor.wakeup();
        [next_timer, next_accept]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn on_event(&mut self, event: &Event) {
        match event.token() {
            LISTENER => self.acceptor.on_readable(),
            WAKER => {} // outputs are drained every iteration
            Token(key) => {
                let Some(c) = self.cnxns.get_mut(key) else {
                    return;
                };
                let id = c.id;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    c.readable = true;
                    self.active.push(id);
                }
                if event.is_writable() || event.is_write_closed() {
                    self.dirty.push(id);
                }
            }
        }
    }

    fn key(id: CnxnId) -> usize {
        (id & 0xffff_ffff) as usize
    }

    fn cnxn(&mut self, id: CnxnId) -> Option<&mut Cnxn> {
        self.cnxns.get_mut(Self::key(id)).filter(|c| c.id == id)
    }

    // ---- accepting ----

    fn accept(&mut self, now: Instant) {
        if !self.backlog.is_empty() || self.core_gone {
            // Closed connections' inputs go first: the backlog stays bounded.
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            let what = "a new connection";
            let Some((stream, peer)) = self.acceptor.accept(&self.listener, now, what) else {
                return;
            };
            self.admit(stream, peer, now);
        }
    }

    /// Registers a new connection, or closes it at once when a limit is reached (as ZooKeeper
    /// does: the client sees the connection close before any reply).
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        if let Some(why) = self.refusal(peer.ip()) {
            if let Some(n) = self.refused_log.check(now) {
                log::warn!("refusing connection from {peer}: {why} ({n} more not logged)");
            }
            return;
        }
        // ZooKeeper disables Nagle on client sockets: replies are small and latency matters.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY for {peer}: {e}");
        }
        let entry = self.cnxns.vacant_entry();
        let key = entry.key();
        let id = (u64::from(self.next_generation) << 32) | key as u64;
        self.next_generation = self.next_generation.wrapping_add(1);
        let registered = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE);
        if let Err(e) = registered {
            log::warn!("cannot register connection from {peer}: {e}");
            return;
        }
        entry.insert(Cnxn {
            id,
            stream,
            peer,
            phase: Phase::Handshake,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            pending: None,
            outstanding: 0,
            // The handshake may already be waiting: look before the first edge.
            readable: true,
            closing: false,
            stalled: false,
            write_interest: false,
        });
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.handshake_timers
            .push_back((now + self.limits.handshake_timeout, id));
        self.send_input(id, Input::Accepted { cnxn: id, peer });
        self.active.push(id);
    }

    fn refusal(&self, ip: IpAddr) -> Option<String> {
        let max = self.limits.max_cnxns;
        if max > 0 && self.cnxns.len() >= max {
            return Some(format!(
                "Too many connections {} - max is {max}",
                self.cnxns.len()
            ));
        }
        if self.cnxns.len() >= CNXN_SLOTS_MAX {
            return Some(format!(
                "Too many connections - zabd's limit is {CNXN_SLOTS_MAX}"
            ));
        }
        let per_ip = self.limits.max_client_cnxns;
        let count = self.per_ip.get(&ip).copied().unwrap_or(0);
        if per_ip > 0 && count >= per_ip {
            return Some(format!("Too many connections from {ip} - max is {per_ip}"));
        }
        None
    }

    // ---- inputs to the core ----

    /// Sends at once or parks the input in the connection's slot (which pauses its reads).
    fn send_input(&mut self, id: CnxnId, input: Input) {
        let Some(c) = self.cnxns.get(Self::key(id)).filter(|c| c.id == id) else {
            return;
        };
        assert!(
            c.pending.is_none(),
            "a parked input is sent before any other"
        );
        match self.inputs.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(input)) => {
                self.channel_full = true;
                if let Some(c) = self.cnxn(id) {
                    c.pending = Some(input);
                }
            }
            Err(TrySendError::Disconnected(_)) => self.core_gone = true,
        }
    }

    /// Delivers a parked input; true when the slot is free.
    fn deliver_pending(&mut self, id: CnxnId) -> bool {
        let Some(input) = self.cnxn(id).and_then(|c| c.pending.take()) else {
            return true;
        };
        self.send_input(id, input);
        self.cnxn(id).is_some_and(|c| c.pending.is_none())
    }

    fn flush_backlog(&mut self) {
        while let Some(input) = self.backlog.pop_front() {
            match self.inputs.try_send(input) {
                Ok(()) => {}
                Err(TrySendError::Full(input)) => {
                    self.channel_full = true;
                    self.backlog.push_front(input);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.core_gone = true;
                    return;
                }
            }
        }
    }

    // ---- reading ----

    fn service_active(&mut self) {
        let mut ids = std::mem::take(&mut self.active);
        // A connection may be listed more than once (several events): service it once.
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.service(id);
        }
    }

    /// Replies came back: paused connections get another look.
    fn release_stalled(&mut self) {
        for id in std::mem::take(&mut self.stalled) {
            if let Some(c) = self.cnxn(id) {
                c.stalled = false;
                self.active.push(id);
            }
        }
    }

    /// Moves one connection forward: deliver a parked input, decode buffered frames, read more.
    fn service(&mut self, id: CnxnId) {
        if !self.deliver_pending(id) {
            self.active.push(id);
            return;
        }
        for _ in 0..READS_PER_TURN {
            match self.decode_buffered(id) {
                Step::Done => return,
                Step::Retry => {
                    self.active.push(id);
                    return;
                }
                Step::Stalled => {
                    if let Some(c) = self.cnxn(id).filter(|c| !c.stalled) {
                        c.stalled = true;
                        self.stalled.push(id);
                    }
                    return;
                }
                Step::NeedBytes => {}
            }
            if !self.read_chunk(id) {
                return;
            }
        }
        // Budget spent with bytes possibly left: another turn next iteration.
        self.active.push(id);
    }

    /// Decodes and sends whole frames from the read buffer while the connection may.
    fn decode_buffered(&mut self, id: CnxnId) -> Step {
        loop {
            let Some(c) = self.cnxn(id) else {
                return Step::Done;
            };
            if c.closing || c.phase == Phase::FourLetter {
                return Step::Done;
            }
            if self.throttled(id) {
                return Step::Stalled;
            }
            let max_frame_bytes = self.limits.jute_max_buffer_bytes;
            let c = self.cnxn(id).expect("checked above");
            let input = match decode_front(c, max_frame_bytes) {
                Decoded::Incomplete => return Step::NeedBytes,
                Decoded::Fatal(reason) => {
                    self.close(id, Some(&reason));
                    return Step::Done;
                }
                Decoded::Input(input) => input,
            };
            // Requests are answered by exactly one reply; count them until it comes back. A
            // request that uses the notification xid (-1) is not counted: its reply could not
            // be told from a watch event, and a count that never comes down would throttle the
            // connection (and, through the global count, everyone) for good.
            let counted = match &input {
                Input::Request {
                    xid: request_xid, ..
                }
                | Input::BadRequest {
                    xid: request_xid, ..
                } => *request_xid != xid::NOTIFICATION,
                _ => false,
            };
            if counted {
                c.outstanding += 1;
                self.outstanding_total += 1;
            }
            self.send_input(id, input);
            if self.cnxn(id).is_some_and(|c| c.pending.is_some()) {
                return Step::Retry;
            }
        }
    }

    /// One `read` into the connection's buffer; false when there is nothing more to do now.
    fn read_chunk(&mut self, id: CnxnId) -> bool {
        let limit = self.limits.jute_max_buffer_bytes;
        let Some(c) = self.cnxns.get_mut(Self::key(id)).filter(|c| c.id == id) else {
            return false;
        };
        if !c.readable {
            return false;
        }
        // Room for the frame being received, now that its length passed the limit check.
        if let Ok(Some(len)) = frame::peek_length(&c.rbuf, limit) {
            c.rbuf
                .reserve((frame::LEN_BYTES + len).saturating_sub(c.rbuf.len()));
        }
        match read_once(&mut c.stream, &mut self.scratch, &mut c.rbuf) {
            Ok(ReadOutcome::Data(_)) => true,
            Ok(ReadOutcome::WouldBlock) => {
                c.readable = false;
                false
            }
            Ok(ReadOutcome::Eof) => {
                // The peer is gone: what it sent was delivered; replies would go nowhere.
                self.close(id, None);
                false
            }
            Err(e) => {
                self.close_on_error(id, "read", &e);
                false
            }
        }
    }

    fn throttled(&self, id: CnxnId) -> bool {
        let Some(c) = self.cnxns.get(Self::key(id)).filter(|c| c.id == id) else {
            return false;
        };
        c.outstanding >= CNXN_OUTSTANDING_MAX
            || (c.outstanding > 0 && self.outstanding_total >= self.limits.global_outstanding_limit)
    }

    // ---- writing ----

    fn drain_outputs(&mut self) {
        self.more_outputs = false;
        for _ in 0..OUTPUT_BATCHES_PER_TURN {
            match self.outputs.try_recv() {
                Ok(batch) => {
                    for output in batch {
                        self.apply(output);
                    }
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.core_gone = true;
                    return;
                }
            }
        }
        self.more_outputs = !self.outputs.is_empty();
    }

    /// Encodes one output into its connection's write buffer. Outputs for connections that
    /// are gone are dropped: the generation in the id tells a reused slot apart.
    fn apply(&mut self, output: Output) {
        let Some(id) = output.cnxn() else {
            log::error!("the core routed a log append to the client thread; dropped");
            return;
        };
        let Some(c) = self.cnxn(id) else {
            return;
        };
        let was_closing = c.closing;
        let mut answered = false;
        let encoded = match output {
            Output::Connected { resp, close, .. } => {
                c.closing |= close;
                put_frame(&mut c.wbuf, |out| resp.put(out))
            }
            Output::Reply { header, body, .. } => {
                // Watch events (xid -1) answer nothing; every other reply answers a request.
                if header.xid != xid::NOTIFICATION && c.outstanding > 0 {
                    c.outstanding -= 1;
                    answered = true;
                }
                put_frame(&mut c.wbuf, |out| put_reply(out, &header, &body))
            }
            Output::Text { text, .. } => {
                c.wbuf.extend_from_slice(text.as_bytes());
                c.closing = true;
                true
            }
            Output::Close { .. } => {
                c.closing = true;
                true
            }
            Output::Append { .. }
            | Output::Snapshot(_)
            | Output::Forward { .. }
            | Output::Revalidate { .. } => return,
        };
        let started_closing = c.closing && !was_closing;
        if answered {
            self.outstanding_total -= 1;
            self.released = true;
        }
        if !encoded {
            self.close(id, Some("a reply does not fit in one frame"));
            return;
        }
        if started_closing {
            // Closing is never undone, so each connection gets one linger deadline.
            self.linger_timers
                .push_back((Instant::now() + LINGER_TIMEOUT, id));
        }
        let Some(c) = self.cnxn(id) else {
            return;
        };
        if c.wbuf.len() >= WRITE_BUFFER_MAX_BYTES {
            // Try to make room now, before judging the client.
            self.flush(id);
        } else {
            self.dirty.push(id);
        }
    }

    fn flush_dirty(&mut self) {
        let mut ids = std::mem::take(&mut self.dirty);
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.flush(id);
        }
    }

    /// Writes what the socket takes, closes a finished or hopeless connection, and keeps the
    /// registered interest in step with the buffer (re-registering only on change).
    fn flush(&mut self, id: CnxnId) {
        let Some(c) = self.cnxn(id) else {
            return;
        };
        if let Err(e) = write_until_blocked(&mut c.stream, &mut c.wbuf) {
            self.close_on_error(id, "write", &e);
            return;
        }
        let c = self.cnxns.get_mut(Self::key(id)).expect("looked up above");
        if c.wbuf.len() > WRITE_BUFFER_MAX_BYTES {
            let reason = format!(
                "{} bytes of replies unread (limit {WRITE_BUFFER_MAX_BYTES}): the client is not reading",
                c.wbuf.len()
            );
            self.close(id, Some(&reason));
            return;
        }
        if c.closing && c.wbuf.is_empty() {
            self.close(id, None);
            return;
        }
        let want_write = !c.wbuf.is_empty();
        if want_write != c.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(Self::key(id));
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut c.stream, token, interest)
            {
                let reason = format!("cannot update interest: {e}");
                self.close(id, Some(&reason));
                return;
            }
            c.write_interest = want_write;
        }
    }

    // ---- closing ----

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.handshake_timers.front() {
            if at > now {
                break;
            }
            self.handshake_timers.pop_front();
            if self.cnxn(id).is_some_and(|c| c.phase == Phase::Handshake) {
                self.close(
                    id,
                    Some("no handshake within the sessionless connection timeout"),
                );
            }
        }
        while let Some(&(at, id)) = self.linger_timers.front() {
            if at > now {
                break;
            }
            self.linger_timers.pop_front();
            if self.cnxn(id).is_some() {
                self.close(id, Some("the last output was not read in time"));
            }
        }
    }

    /// A reset or a broken pipe is a client going away, not worth a warning.
    fn close_on_error(&mut self, id: CnxnId, what: &str, e: &io::Error) {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) {
            if let Some(c) = self.cnxn(id) {
                log::debug!("connection from {} gone during {what}: {e}", c.peer);
            }
            self.close(id, None);
        } else {
            let reason = format!("{what} error: {e}");
            self.close(id, Some(&reason));
        }
    }

    /// Removes a connection and tells the core, exactly once per connection: the slab slot
    /// (and with it the id) is gone afterwards. `reason` is logged when the close is abnormal.
    fn close(&mut self, id: CnxnId, reason: Option<&str>) {
        let key = Self::key(id);
        if self.cnxns.get(key).is_none_or(|c| c.id != id) {
            return;
        }
        let mut c = self.cnxns.remove(key);
        if let Some(reason) = reason {
            log::warn!("closing connection from {}: {reason}", c.peer);
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(count) = self.per_ip.get_mut(&c.peer.ip()) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&c.peer.ip());
            }
        }
        if c.outstanding > 0 {
            self.outstanding_total -= c.outstanding;
            self.released = true;
        }
        match c.pending.take() {
            // The core never heard of this connection: nothing to tell it.
            Some(Input::Accepted { .. }) => return,
            Some(input) => self.backlog.push_back(input),
            None => {}
        }
        self.backlog.push_back(Input::Closed { cnxn: id });
        self.flush_backlog();
        // Dropping `c` closes the socket.
    }
}

enum Step {
    /// Nothing more to do for this connection now (or it is gone).
    Done,
    /// The core's channel is full: try again next iteration.
    Retry,
    /// Paused by the outstanding limits until replies come back.
    Stalled,
    /// The buffer holds no whole frame: read more.
    NeedBytes,
}

/// Decodes the first thing in a connection's read buffer according to its phase, consuming
/// the bytes it used.
fn decode_front(c: &mut Cnxn, max_frame_bytes: usize) -> Decoded {
    decode_next(c.id, &mut c.phase, &mut c.rbuf, max_frame_bytes)
}

fn decode_next(
    cnxn: CnxnId,
    phase: &mut Phase,
    rbuf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Decoded {
    match *phase {
        Phase::FourLetter => return Decoded::Incomplete,
        Phase::Handshake => {
            if rbuf.len() < frame::LEN_BYTES {
                return Decoded::Incomplete;
            }
            if let Some(word) = frame::four_letter_word(rbuf) {
                *phase = Phase::FourLetter;
                rbuf.clear();
                return Decoded::Input(Input::FourLetter {
                    cnxn,
                    word,
                    disk: None,
                });
            }
        }
        Phase::Session => {}
    }
    let (range, used) = match frame::decode_frame(rbuf, max_frame_bytes) {
        Ok(Some(found)) => found,
        Ok(None) => return Decoded::Incomplete,
        Err(e) => return Decoded::Fatal(e.to_string()),
    };
    let frame = rbuf.split_to(used).freeze();
    let payload = &frame[range];
    if *phase == Phase::Session {
        return decode_request(cnxn, payload);
    }
    match decode_connect(payload) {
        Ok(req) => {
            *phase = Phase::Session;
            Decoded::Input(Input::Connect { cnxn, req })
        }
        Err(e) => Decoded::Fatal(format!("bad handshake: {e}")),
    }
}

/// ZooKeeper ignores bytes after the handshake record, so trailing bytes are not an error.
fn decode_connect(payload: &[u8]) -> Result<ConnectRequest, crate::jute::DecodeError> {
    ConnectRequest::get(&mut Reader::new(payload))
}

fn decode_request(cnxn: CnxnId, payload: &[u8]) -> Decoded {
    const HEADER_BYTES: usize = 8;
    if payload.len() < HEADER_BYTES {
        return Decoded::Fatal(format!(
            "a {}-byte frame holds no request header",
            payload.len()
        ));
    }
    let header = match RequestHeader::get(&mut Reader::new(&payload[..HEADER_BYTES])) {
        Ok(header) => header,
        Err(e) => return Decoded::Fatal(format!("bad request header: {e}")),
    };
    let body = &payload[HEADER_BYTES..];
    Decoded::Input(match Request::decode(header.type_, body) {
        Ok(req) => Input::Request {
            cnxn,
            xid: header.xid,
            req,
        },
        Err(error) => Input::BadRequest {
            cnxn,
            xid: header.xid,
            op: header.type_,
            error,
        },
    })
}

/// Appends a length-prefixed frame written by `write`; false (nothing appended) when the
/// payload does not fit a frame's i32 length.
fn put_frame(wbuf: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) -> bool {
    let start = wbuf.len();
    wbuf.put_i32(0);
    write(wbuf);
    let len = wbuf.len() - start - frame::LEN_BYTES;
    let Ok(len) = i32::try_from(len) else {
        wbuf.truncate(start);
        return false;
    };
    wbuf[start..start + frame::LEN_BYTES].copy_from_slice(&len.to_be_bytes());
    true
}

/// Encodes a reply the way [`ClientLoop`] frames it (for tests and clients).
pub fn encode_reply(header: &ReplyHeader, body: &Response) -> Vec<u8> {
    let mut out = BytesMut::new();
    let fits = put_frame(&mut out, |o| put_reply(o, header, body));
    assert!(fits);
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::encode_to_vec;
    use crate::jute::proto::{op, PathWatchRequest};
    use crate::jute::DecodeError;

    const MAX: usize = 1024;

    fn framed(payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_i32(payload.len() as i32);
        buf.put_slice(payload);
        buf
    }

    fn request_payload(xid: i32, opcode: i32) -> Vec<u8> {
        let mut payload = Vec::new();
        xid.put(&mut payload);
        opcode.put(&mut payload);
        PathWatchRequest {
            path: "/a".into(),
            watch: true,
        }
        .put(&mut payload);
        payload
    }

    #[test]
    fn first_bytes_are_a_four_letter_word_or_a_handshake() {
        let mut phase = Phase::Handshake;
        let mut buf = BytesMut::from(&b"ru"[..]);
        assert!(matches!(
            decode_next(1, &mut phase, &mut buf, MAX),
            Decoded::Incomplete
        ));
        buf.extend_from_slice(b"ok\n");
        let decoded = decode_next(1, &mut phase, &mut buf, MAX);
        assert!(
            matches!(decoded, Decoded::Input(Input::FourLetter { word, .. }) if &word == b"ruok")
        );
        assert_eq!(phase, Phase::FourLetter);
        // Nothing after a four-letter word is read.
        buf.extend_from_slice(&framed(b"xxxx"));
        assert!(matches!(
            decode_next(1, &mut phase, &mut buf, MAX),
            Decoded::Incomplete
        ));

        // An old client's 44-byte handshake (no readOnly byte) and a padded one both decode.
        let req = ConnectRequest {
            time_out: 5000,
            passwd: vec![0; 16].into(),
            ..Default::default()
        };
        let mut padded = encode_to_vec(&ConnectRequest {
            read_only: Some(true),
            ..req.clone()
        });
        padded.extend_from_slice(&[0, 0]);
        for (payload, read_only) in [(encode_to_vec(&req), None), (padded, Some(true))] {
            let mut phase = Phase::Handshake;
            let mut buf = framed(&payload);
            match decode_next(9, &mut phase, &mut buf, MAX) {
                Decoded::Input(Input::Connect { cnxn: 9, req }) => {
                    assert_eq!((req.time_out, req.read_only), (5000, read_only));
                }
                _ => panic!("handshake not decoded"),
            }
            assert_eq!(phase, Phase::Session);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_handshake_that_does_not_decode_is_fatal() {
        let mut phase = Phase::Handshake;
        let mut buf = framed(&[0u8; 10]);
        assert!(matches!(
            decode_next(1, &mut phase, &mut buf, MAX),
            Decoded::Fatal(_)
        ));
    }

    #[test]
    fn frames_are_decoded_one_at_a_time_and_only_when_whole() {
        let mut phase = Phase::Session;
        let mut buf = framed(&request_payload(1, op::GET_DATA));
        buf.extend_from_slice(&framed(&request_payload(2, 999)));
        let whole = buf.len();
        buf.truncate(whole - 1);
        match decode_next(3, &mut phase, &mut buf, MAX) {
            Decoded::Input(Input::Request {
                cnxn: 3,
                xid: 1,
                req: Request::GetData(r),
            }) => {
                assert_eq!((r.path.as_str(), r.watch), ("/a", true));
            }
            _ => panic!("request not decoded"),
        }
        let left = buf.len();
        assert!(matches!(
            decode_next(3, &mut phase, &mut buf, MAX),
            Decoded::Incomplete
        ));
        assert_eq!(buf.len(), left, "an incomplete frame is left in place");
        buf.put_u8(b'/');
        match decode_next(3, &mut phase, &mut buf, MAX) {
            Decoded::Input(Input::BadRequest {
                xid: 2,
                op: 999,
                error,
                ..
            }) => {
                assert_eq!(error, DecodeError::UnknownOpcode(999));
            }
            _ => panic!("bad request not reported"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn unsplittable_frames_are_fatal() {
        for buf in [
            framed(&[0, 0, 0, 1]),
            BytesMut::from(&(-1i32).to_be_bytes()[..]),
        ] {
            let mut phase = Phase::Session;
            let mut buf = buf;
            assert!(matches!(
                decode_next(1, &mut phase, &mut buf, MAX),
                Decoded::Fatal(_)
            ));
        }
        // Refused from the length alone, before the payload exists.
        let mut phase = Phase::Session;
        let mut buf = BytesMut::from(&(MAX as i32 + 1).to_be_bytes()[..]);
        match decode_next(1, &mut phase, &mut buf, MAX) {
            Decoded::Fatal(reason) => assert!(reason.contains("jute.maxbuffer"), "{reason}"),
            _ => panic!("oversized frame accepted"),
        }
    }

    #[test]
    fn replies_are_length_prefixed() {
        let header = ReplyHeader {
            xid: 3,
            zxid: 9,
            err: 0,
        };
        let bytes = encode_reply(&header, &Response::Count(5));
        assert_eq!(&bytes[..4], &20i32.to_be_bytes());
        assert_eq!(bytes.len(), 24);
        let mut buf = BytesMut::from(&b"x"[..]);
        assert!(put_frame(&mut buf, |out| out.put_slice(b"abc")));
        assert_eq!(&buf[..], b"x\0\0\0\x03abc");
    }
}
