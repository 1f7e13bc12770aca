//! The load loop: every session on one thread and one mio `Poll`. Each session is a
//! non-blocking connection with its own read and write buffers (reused for the whole run) and
//! a FIFO of outstanding requests: ZooKeeper answers a session's requests in order, so a
//! reply is matched by comparing its xid with the oldest outstanding one.
//!
//! Requests are encoded straight into the write buffer and replies are parsed in place (only
//! the 16-byte reply header is read), so the steady state allocates nothing per request.

use super::histogram::Histogram;
use super::{OpKind, Options, OP_KINDS};
use crate::jute::frame::{decode_frame, frame_len_prefix};
use crate::jute::proto::{op, xid, Code, ConnectRequest, ConnectResponse};
use crate::jute::{decode_exact, put_bytes, Jute};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Frames above this kill the session (ZooKeeper's own limit is about 1 MiB).
const MAX_FRAME_BYTES: usize = 16 << 20;
const READ_BUF_BYTES: usize = 64 << 10;
/// Reads per readiness event before yielding to other sessions (the session is revisited
/// on the next loop turn without waiting for a new edge).
const READS_PER_TURN: usize = 16;
/// The longest a poll waits, so phase changes and progress lines are never late by more.
const POLL_MAX: Duration = Duration::from_millis(50);
/// How long outstanding requests may take to come back once the load stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closeSession replies may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// The world:anyone ALL ACL, pre-encoded: count 1, perms 31, "world", "anyone".
const OPEN_ACL: &[u8] =
    b"\x00\x00\x00\x01\x00\x00\x00\x1f\x00\x00\x00\x05world\x00\x00\x00\x06anyone";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Handshaking,
    Ready,
    Closing,
    Closed,
    Dead,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    xid: i32,
    kind: OpKind,
    /// When the request was (or, open loop, should have been) sent, ns since the run began.
    t0_ns: u64,
    /// For creates: the node's counter, so a delete can find it later.
    node: u32,
}

struct Session {
    stream: TcpStream,
    state: State,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    next_xid: i32,
    pending: VecDeque<Pending>,
    /// Counters of nodes this session created and has not deleted, oldest first.
    created: VecDeque<u32>,
    next_node: u32,
    last_send_ns: u64,
    timeout_ms: i32,
    close_xid: i32,
    /// Listed in `Engine::dirty` (has writes to flush this turn).
    dirty: bool,
}

impl Session {
    fn next_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        x
    }

    fn can_send(&self) -> bool {
        self.state == State::Ready
    }
}

/// What the load generator does, shared by all sessions.
pub struct Workload {
    /// Full paths of the pre-created nodes that get/set/exists/getChildren address.
    pub keys: Vec<String>,
    /// The parent of nodes created (and later deleted) during the run.
    pub new_parent: String,
    /// A per-run tag in created node names, so reruns under one root never collide.
    pub run_tag: u32,
    pub value: Vec<u8>,
    /// Cumulative weights in `OP_KINDS` order.
    pub cumulative: [u64; 6],
}

impl Workload {
    fn pick(&self, r: u64) -> OpKind {
        let total = self.cumulative[5];
        assert!(total > 0, "the mix has at least one weight");
        let x = r % total;
        let i = self.cumulative.iter().position(|&c| x < c).unwrap_or(5);
        OP_KINDS[i]
    }

    /// The path of node `n` created by session `s`.
    pub fn node_path(&self, out: &mut String, s: usize, n: u32) {
        out.clear();
        let _ = write!(out, "{}/{:x}-{}-{}", self.new_parent, self.run_tag, s, n);
    }
}

/// Counters of the measured window.
pub struct Stats {
    pub latency: [Histogram; 6],
    /// (error code, count), errors of completed requests; -4 also counts requests lost with
    /// a connection.
    pub errors: Vec<(i32, u64)>,
    pub completed: u64,
    pub measured_ns: u64,
    /// CPU time this process spent in the measured window, if the OS tells.
    pub cpu_ns: Option<u64>,
}

impl Stats {
    fn add_error(&mut self, code: i32, n: u64) {
        match self.errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, count)) => *count += n,
            None => self.errors.push((code, n)),
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }

    pub fn all(&self) -> Histogram {
        let mut h = Histogram::new();
        for k in &self.latency {
            h.add(k);
        }
        h
    }
}

/// The outcome of a run.
pub struct Outcome {
    pub stats: Stats,
    /// Sessions whose handshake succeeded.
    pub sessions_connected: usize,
    /// Sessions that failed to connect or died during the run, with the first few reasons.
    pub sessions_failed: usize,
    pub failures: Vec<String>,
    /// (session, node counter) of nodes created and not deleted, for the cleanup.
    pub created: Vec<(usize, Vec<u32>)>,
    /// Open loop: how late each request went out relative to its schedule (ns). mio's poll
    /// sleeps in whole milliseconds, so up to ~1 ms of lag is the generator's granularity;
    /// more means every window was full or the generator could not keep up.
    pub send_lag: Histogram,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

struct OpenLoop {
    rate_per_s: f64,
    issued: u64,
}

pub struct Engine<'a> {
    opts: &'a Options,
    work: &'a Workload,
    poll: Poll,
    events: Events,
    ready: Vec<(usize, bool, bool)>,
    sessions: Vec<Session>,
    replies: Vec<(i32, i32)>,
    /// Sessions with buffered writes or unread input, to revisit this turn.
    dirty: Vec<usize>,
    reread: Vec<usize>,
    path: String,
    rng: crate::rng::XorShift64Star,
    start: Instant,
    phase: Phase,
    measure_start_ns: u64,
    measure_end_ns: u64,
    load_start_ns: u64,
    /// Set once `run` starts: no request goes out while sessions are still connecting.
    loading: bool,
    open: Option<OpenLoop>,
    cursor: usize,
    send_lag: Histogram,
    stats: Stats,
    interval: Histogram,
    interval_ops: u64,
    interval_errors: u64,
    failures: Vec<String>,
    sessions_failed: usize,
    sessions_connected: usize,
    cpu_at_measure_start: Option<u64>,
}

impl<'a> Engine<'a> {
    pub fn new(opts: &'a Options, work: &'a Workload) -> io::Result<Engine<'a>> {
        Ok(Engine {
            opts,
            work,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            ready: Vec::with_capacity(1024),
            sessions: Vec::with_capacity(opts.sessions),
            replies: Vec::with_capacity(1024),
            dirty: Vec::with_capacity(opts.sessions),
            reread: Vec::new(),
            path: String::with_capacity(128),
            rng: crate::rng::XorShift64Star::from_state(opts.seed),
            start: Instant::now(),
            phase: Phase::Warmup,
            measure_start_ns: 0,
            measure_end_ns: 0,
            load_start_ns: 0,
            loading: false,
            open: None,
            cursor: 0,
            send_lag: Histogram::new(),
            stats: Stats {
                latency: Default::default(),
                errors: Vec::new(),
                completed: 0,
                measured_ns: 0,
                cpu_ns: None,
            },
            interval: Histogram::new(),
            interval_ops: 0,
            interval_errors: 0,
            failures: Vec::new(),
            sessions_failed: 0,
            sessions_connected: 0,
            cpu_at_measure_start: None,
        })
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn rand(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Connects every session (round-robin over the servers) and completes the handshakes.
    /// Returns how many are ready.
    pub fn connect_all(&mut self, timeout: Duration) -> io::Result<usize> {
        for i in 0..self.opts.sessions {
            let addr = self.opts.servers[i % self.opts.servers.len()];
            self.open_session(i, addr)?;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let waiting = self
                .sessions
                .iter()
                .any(|s| matches!(s.state, State::Connecting | State::Handshaking));
            if !waiting {
                break;
            }
            self.turn(POLL_MAX)?;
        }
        for i in 0..self.sessions.len() {
            if matches!(
                self.sessions[i].state,
                State::Connecting | State::Handshaking
            ) {
                self.kill(i, "connect timed out".into());
            }
        }
        Ok(self
            .sessions
            .iter()
            .filter(|s| s.state == State::Ready)
            .count())
    }

    fn open_session(&mut self, i: usize, addr: SocketAddr) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut s = Session {
            stream,
            state: State::Connecting,
            rbuf: vec![0; READ_BUF_BYTES],
            rlen: 0,
            wbuf: Vec::with_capacity(16 << 10),
            wpos: 0,
            next_xid: 1,
            pending: VecDeque::with_capacity(self.opts.window),
            created: VecDeque::new(),
            next_node: 0,
            last_send_ns: 0,
            timeout_ms: self.opts.session_timeout_ms,
            close_xid: 0,
            dirty: false,
        };
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: self.opts.session_timeout_ms,
            session_id: 0,
            passwd: bytes::Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        };
        frame(&mut s.wbuf, |out| req.put(out));
        self.sessions.push(s);
        Ok(())
    }

    /// Runs the load: warm-up, the measured window, then drains outstanding requests.
    pub fn run(&mut self) -> io::Result<()> {
        let opts = self.opts;
        let now = self.now_ns();
        self.measure_start_ns = now + secs_ns(opts.warmup_s);
        self.measure_end_ns = self.measure_start_ns + secs_ns(opts.duration_s);
        self.phase = Phase::Warmup;
        if let Some(rate) = opts.rate_per_s {
            self.open = Some(OpenLoop {
                rate_per_s: rate,
                issued: 0,
            });
        }
        self.load_start_ns = now;
        self.loading = true;
        if self.measure_start_ns == now {
            self.begin_measure(now);
        }
        for i in 0..self.sessions.len() {
            self.fill(i, now);
        }
        self.flush_dirty();
        let mut next_progress_ns = now + 1_000_000_000;
        let progress = opts.progress_enabled();
        // Hard bound: the run can never outlive its schedule by more than a minute.
        let hard_end_ns = self.measure_end_ns + 60_000_000_000;
        while self.phase != Phase::Drain {
            let now = self.now_ns();
            if now >= hard_end_ns {
                break;
            }
            self.advance_phase(now);
            if self.phase == Phase::Drain {
                break;
            }
            if self.live_sessions() == 0 {
                self.end_measure(now);
                break;
            }
            self.issue_open_loop(now);
            if now >= next_progress_ns {
                self.ping_idle(now);
                if progress {
                    self.print_progress(now);
                }
                next_progress_ns += 1_000_000_000;
            }
            self.flush_dirty();
            let wait = self.poll_wait(now, next_progress_ns);
            self.turn(wait)?;
        }
        self.drain()
    }

    fn begin_measure(&mut self, now: u64) {
        self.phase = Phase::Measure;
        // A window noticed late still lasts the full duration.
        self.measure_end_ns += now.saturating_sub(self.measure_start_ns);
        self.measure_start_ns = now;
        self.cpu_at_measure_start = process_cpu_ns();
    }

    fn end_measure(&mut self, now: u64) {
        if self.phase == Phase::Measure {
            self.stats.measured_ns = now.saturating_sub(self.measure_start_ns);
            self.stats.cpu_ns = match (self.cpu_at_measure_start, process_cpu_ns()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
        }
        self.phase = Phase::Drain;
    }

    fn advance_phase(&mut self, now: u64) {
        if self.phase == Phase::Warmup && now >= self.measure_start_ns {
            self.begin_measure(now);
        }
        if self.phase == Phase::Measure && now >= self.measure_end_ns {
            self.end_measure(now);
        }
        if self.phase == Phase::Drain {
            self.loading = false;
        }
    }

    fn live_sessions(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.state == State::Ready)
            .count()
    }

    fn poll_wait(&self, now: u64, next_progress_ns: u64) -> Duration {
        if !self.reread.is_empty() {
            return Duration::ZERO;
        }
        let mut until = next_progress_ns.min(self.measure_end_ns);
        if self.phase == Phase::Warmup {
            until = until.min(self.measure_start_ns);
        }
        if let Some(open) = &self.open {
            // The next request's scheduled time (mio rounds the wait up to whole milliseconds).
            let next_due = self.load_start_ns + (open.issued as f64 * 1e9 / open.rate_per_s) as u64;
            until = until.min(next_due);
        }
        Duration::from_nanos(until.saturating_sub(now)).min(POLL_MAX)
    }

    /// One poll and the work its events call for.
    fn turn(&mut self, wait: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        for e in self.events.iter() {
            let readable = e.is_readable() || e.is_read_closed() || e.is_error();
            ready.push((e.token().0, readable, e.is_writable()));
        }
        for i in std::mem::take(&mut self.reread) {
            ready.push((i, true, false));
        }
        for &(i, readable, writable) in &ready {
            if i >= self.sessions.len() {
                continue;
            }
            if writable {
                self.on_writable(i);
            }
            if readable {
                self.on_readable(i);
            }
        }
        self.ready = ready;
        self.flush_dirty();
        Ok(())
    }

    fn on_writable(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        if s.state == State::Connecting {
            match s.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.kill(i, format!("connect: {e}")),
            }
            match s.stream.peer_addr() {
                Ok(_) => {
                    let _ = s.stream.set_nodelay(true);
                    s.state = State::Handshaking;
                }
                // Not connected yet: a spurious wake-up.
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => return self.kill(i, format!("connect: {e}")),
            }
        }
        self.flush(i);
    }

    fn on_readable(&mut self, i: usize) {
        for _ in 0..READS_PER_TURN {
            let s = &mut self.sessions[i];
            if matches!(s.state, State::Dead | State::Closed | State::Connecting) {
                return;
            }
            if s.rlen == s.rbuf.len() {
                // A frame larger than the buffer: grow (decode_frame already bounded it).
                let grown = (s.rbuf.len() * 2).min(MAX_FRAME_BYTES + 4);
                s.rbuf.resize(grown, 0);
            }
            match s.stream.read(&mut s.rbuf[s.rlen..]) {
                Ok(0) => {
                    if s.state == State::Closing {
                        s.state = State::Closed;
                        let _ = self.poll.registry().deregister(&mut s.stream);
                        return;
                    }
                    return self.kill(i, "server closed the connection".into());
                }
                Ok(n) => {
                    s.rlen += n;
                    let now = self.now_ns();
                    self.parse(i, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.kill(i, format!("read: {e}")),
            }
        }
        // Not drained yet: edge-triggered readiness will not fire again, so come back.
        self.reread.push(i);
    }

    /// Splits the read buffer into frames and handles each.
    fn parse(&mut self, i: usize, now: u64) {
        self.replies.clear();
        let s = &mut self.sessions[i];
        let mut pos = 0;
        let mut failure = None;
        loop {
            match decode_frame(&s.rbuf[pos..s.rlen], MAX_FRAME_BYTES) {
                Ok(Some((range, total))) => {
                    let payload = &s.rbuf[pos + range.start..pos + range.end];
                    pos += total;
                    if s.state == State::Handshaking {
                        match decode_exact::<ConnectResponse>(payload) {
                            Ok(r) if r.session_id != 0 && r.time_out > 0 => {
                                s.state = State::Ready;
                                s.timeout_ms = r.time_out;
                                self.sessions_connected += 1;
                            }
                            Ok(_) => failure = Some("server refused the session".to_string()),
                            Err(e) => failure = Some(format!("bad handshake reply: {e}")),
                        }
                    } else if payload.len() < 16 {
                        failure = Some(format!(
                            "reply of {} bytes is shorter than its header",
                            payload.len()
                        ));
                    } else {
                        let xid =
                            i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                        let err = i32::from_be_bytes([
                            payload[12],
                            payload[13],
                            payload[14],
                            payload[15],
                        ]);
                        self.replies.push((xid, err));
                    }
                    if failure.is_some() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        s.rbuf.copy_within(pos..s.rlen, 0);
        s.rlen -= pos;
        if let Some(reason) = failure {
            return self.kill(i, reason);
        }
        let replies = std::mem::take(&mut self.replies);
        for &(xid, err) in &replies {
            if !self.complete(i, xid, err, now) {
                break;
            }
        }
        self.replies = replies;
        self.fill(i, now);
        self.mark_dirty(i);
    }

    /// Matches one reply with the oldest outstanding request. False if the session died.
    fn complete(&mut self, i: usize, reply_xid: i32, err: i32, now: u64) -> bool {
        if reply_xid == xid::PING || reply_xid == xid::NOTIFICATION {
            return true;
        }
        let s = &mut self.sessions[i];
        if s.state == State::Closing && reply_xid == s.close_xid {
            s.state = State::Closed;
            let _ = self.poll.registry().deregister(&mut s.stream);
            return false;
        }
        let Some(p) = s.pending.pop_front() else {
            self.kill(
                i,
                format!("reply with xid {reply_xid} but nothing outstanding"),
            );
            return false;
        };
        if p.xid != reply_xid {
            self.kill(
                i,
                format!("reply xid {reply_xid} out of order (expected {})", p.xid),
            );
            return false;
        }
        if p.kind == OpKind::Create && err == 0 {
            s.created.push_back(p.node);
        }
        let latency = now.saturating_sub(p.t0_ns);
        self.interval.record(latency);
        self.interval_ops += 1;
        if err != 0 {
            self.interval_errors += 1;
        }
        if self.phase == Phase::Measure {
            self.stats.latency[p.kind as usize].record(latency);
            self.stats.completed += 1;
            if err != 0 {
                self.stats.add_error(err, 1);
            }
            if self
                .opts
                .requests
                .is_some_and(|limit| self.stats.completed >= limit)
            {
                self.end_measure(now);
            }
        }
        true
    }

    /// Closed loop: tops the session's window up.
    fn fill(&mut self, i: usize, now: u64) {
        if !self.loading || self.open.is_some() || self.phase == Phase::Drain {
            return;
        }
        let window = self.opts.window;
        // Bounded by the window: each pass adds one request.
        for _ in 0..window {
            let s = &self.sessions[i];
            if !s.can_send() || s.pending.len() >= window {
                break;
            }
            self.issue(i, now);
        }
    }

    /// Open loop: sends every request that is due, each stamped with the time it was due.
    fn issue_open_loop(&mut self, now: u64) {
        let Some(rate) = self.open.as_ref().map(|o| o.rate_per_s) else {
            return;
        };
        let load_start_ns = self.load_start_ns;
        let elapsed = now.saturating_sub(load_start_ns);
        // Request k (from 0) is scheduled at k / rate, so floor(elapsed · rate) + 1 are due.
        let due = (elapsed as f64 * rate / 1e9) as u64 + 1;
        let n = self.sessions.len();
        let capacity: usize = self.opts.window * n;
        // At most one full set of windows per turn; anything more stays due for later turns.
        for _ in 0..capacity {
            let issued = self.open.as_ref().map_or(0, |o| o.issued);
            if issued >= due {
                return;
            }
            // With every window full the request stays due; its latency keeps counting.
            let Some(i) = self.next_with_room() else {
                return;
            };
            let t0 = load_start_ns + (issued as f64 * 1e9 / rate) as u64;
            if self.phase == Phase::Measure {
                self.send_lag.record(now.saturating_sub(t0));
            }
            self.issue(i, t0);
            if let Some(o) = self.open.as_mut() {
                o.issued += 1;
            }
        }
    }

    fn next_with_room(&mut self) -> Option<usize> {
        let n = self.sessions.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let s = &self.sessions[i];
            if s.can_send() && s.pending.len() < self.opts.window {
                self.cursor = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    /// Encodes one request of the mix into session `i`'s write buffer.
    fn issue(&mut self, i: usize, t0_ns: u64) {
        let r = self.rand();
        let mut kind = self.work.pick(r);
        let key_index = if self.work.keys.is_empty() {
            0
        } else {
            (self.rand() % self.work.keys.len() as u64) as usize
        };
        let work = self.work;
        let s = &mut self.sessions[i];
        let mut node = 0;
        if kind == OpKind::Delete {
            match s.created.pop_front() {
                Some(n) => node = n,
                // Nothing of ours to delete yet: create instead, so deletes never miss.
                None => kind = OpKind::Create,
            }
        }
        if kind == OpKind::Create {
            node = s.next_node;
            s.next_node = s.next_node.wrapping_add(1);
        }
        let xid = s.next_xid();
        let path = &mut self.path;
        match kind {
            OpKind::Create | OpKind::Delete => work.node_path(path, i, node),
            _ => {
                path.clear();
                path.push_str(&work.keys[key_index]);
            }
        }
        let value = &work.value;
        frame(&mut s.wbuf, |out| {
            xid.put(out);
            match kind {
                OpKind::Create => {
                    op::CREATE.put(out);
                    put_bytes(out, path.as_bytes());
                    put_bytes(out, value);
                    out.extend_from_slice(OPEN_ACL);
                    0i32.put(out);
                }
                OpKind::SetData => {
                    op::SET_DATA.put(out);
                    put_bytes(out, path.as_bytes());
                    put_bytes(out, value);
                    (-1i32).put(out);
                }
                OpKind::Delete => {
                    op::DELETE.put(out);
                    put_bytes(out, path.as_bytes());
                    (-1i32).put(out);
                }
                OpKind::GetData | OpKind::Exists | OpKind::GetChildren => {
                    let code = match kind {
                        OpKind::GetData => op::GET_DATA,
                        OpKind::Exists => op::EXISTS,
                        _ => op::GET_CHILDREN,
                    };
                    code.put(out);
                    put_bytes(out, path.as_bytes());
                    out.push(0);
                }
            }
        });
        s.pending.push_back(Pending {
            xid,
            kind,
            t0_ns,
            node,
        });
        s.last_send_ns = t0_ns.max(s.last_send_ns);
        self.mark_dirty(i);
    }

    /// Sessions that have sent nothing for a third of their timeout get a ping, as real
    /// clients do, so a slow open-loop rate cannot expire them.
    fn ping_idle(&mut self, now: u64) {
        for i in 0..self.sessions.len() {
            let s = &mut self.sessions[i];
            let idle_limit = u64::try_from(s.timeout_ms.max(1)).unwrap_or(1) * 1_000_000 / 3;
            if s.can_send() && now.saturating_sub(s.last_send_ns) > idle_limit {
                frame(&mut s.wbuf, |out| {
                    xid::PING.put(out);
                    op::PING.put(out);
                });
                s.last_send_ns = now;
                self.mark_dirty(i);
            }
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(i);
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            self.sessions[i].dirty = false;
            self.flush(i);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// Writes buffered requests until done or the socket is full (then a writable event
    /// resumes it).
    fn flush(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        if matches!(s.state, State::Connecting | State::Dead | State::Closed) {
            return;
        }
        // Bounded: every successful write advances wpos.
        while s.wpos < s.wbuf.len() {
            match s.stream.write(&s.wbuf[s.wpos..]) {
                Ok(0) => return self.kill(i, "connection closed while writing".into()),
                Ok(n) => s.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.kill(i, format!("write: {e}")),
            }
        }
        s.wbuf.clear();
        s.wpos = 0;
    }

    fn kill(&mut self, i: usize, reason: String) {
        let s = &mut self.sessions[i];
        if matches!(s.state, State::Dead | State::Closed) {
            return;
        }
        let was_closing = s.state == State::Closing;
        s.state = State::Dead;
        let _ = self.poll.registry().deregister(&mut s.stream);
        let lost = s.pending.len() as u64;
        s.pending.clear();
        if was_closing {
            return;
        }
        if self.phase == Phase::Measure && lost > 0 {
            self.stats.add_error(Code::ConnectionLoss.as_i32(), lost);
        }
        self.sessions_failed += 1;
        if self.failures.len() < 5 {
            self.failures.push(format!("session {i}: {reason}"));
        }
    }

    /// Waits for the outstanding requests (not measured), bounded in time.
    fn drain(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Instant::now() < deadline {
            let outstanding = self
                .sessions
                .iter()
                .any(|s| s.state == State::Ready && !s.pending.is_empty());
            if !outstanding {
                break;
            }
            self.turn(POLL_MAX)?;
        }
        Ok(())
    }

    /// Closes every session politely (closeSession), bounded in time.
    pub fn close_all(&mut self) -> io::Result<()> {
        for i in 0..self.sessions.len() {
            let s = &mut self.sessions[i];
            if s.state != State::Ready {
                continue;
            }
            let x = s.next_xid();
            s.close_xid = x;
            frame(&mut s.wbuf, |out| {
                x.put(out);
                op::CLOSE_SESSION.put(out);
            });
            s.state = State::Closing;
            self.mark_dirty(i);
        }
        self.flush_dirty();
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while Instant::now() < deadline && self.sessions.iter().any(|s| s.state == State::Closing) {
            self.turn(POLL_MAX)?;
        }
        Ok(())
    }

    fn print_progress(&mut self, now: u64) {
        let phase = match self.phase {
            Phase::Warmup => "warmup",
            Phase::Measure => "run",
            Phase::Drain => "drain",
        };
        let outstanding: usize = self.sessions.iter().map(|s| s.pending.len()).sum();
        eprintln!(
            "[{:>4}s] {:<6} ops/s={:<8} errors={:<6} p50={}us p99={}us max={}us outstanding={} sessions={}/{}",
            now / 1_000_000_000,
            phase,
            self.interval_ops,
            self.interval_errors,
            self.interval.quantile(0.5) / 1000,
            self.interval.quantile(0.99) / 1000,
            self.interval.max() / 1000,
            outstanding,
            self.live_sessions(),
            self.sessions.len(),
        );
        self.interval.clear();
        self.interval_ops = 0;
        self.interval_errors = 0;
    }

    pub fn finish(mut self) -> Outcome {
        let created = self
            .sessions
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| !s.created.is_empty())
            .map(|(i, s)| (i, std::mem::take(&mut s.created).into()))
            .collect();
        Outcome {
            stats: self.stats,
            sessions_connected: self.sessions_connected,
            sessions_failed: self.sessions_failed,
            failures: self.failures,
            created,
            send_lag: self.send_lag,
        }
    }
}

/// Appends one length-prefixed frame to `buf`.
fn frame(buf: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    payload(buf);
    let prefix = frame_len_prefix(buf.len() - start - 4);
    buf[start..start + 4].copy_from_slice(&prefix);
}

fn secs_ns(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

/// This process's CPU time (user + system), from /proc/self/schedstat where available.
fn process_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_acl_matches_the_jute_encoding() {
        let acl = crate::jute::data::Acl::open_unsafe();
        assert_eq!(crate::jute::encode_to_vec(&acl), OPEN_ACL);
    }

    #[test]
    fn frames_carry_their_length() {
        let mut buf = vec![9u8];
        frame(&mut buf, |out| out.extend_from_slice(b"abc"));
        assert_eq!(buf, [9, 0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn the_mix_picks_by_weight() {
        let work = Workload {
            keys: vec![],
            new_parent: "/p".into(),
            run_tag: 1,
            value: vec![],
            // get=3, set=1 in OP_KINDS order (create, setData, getData, exists, getChildren, delete).
            cumulative: [0, 1, 4, 4, 4, 4],
        };
        let picks: Vec<OpKind> = (0..4).map(|r| work.pick(r)).collect();
        assert_eq!(
            picks,
            [
                OpKind::SetData,
                OpKind::GetData,
                OpKind::GetData,
                OpKind::GetData
            ]
        );
        let mut path = String::new();
        work.node_path(&mut path, 3, 17);
        assert_eq!(path, "/p/1-3-17");
    }
}
