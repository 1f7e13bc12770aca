//! Small socket helpers shared by the I/O threads: non-blocking reads and writes that sort
//! "try again later" from real errors, a listener's accept state, and a rate limit for
//! per-connection log lines.

use bytes::{Buf, BytesMut};
use mio::net::{TcpListener, TcpStream};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a thread stops accepting after an accept error (EMFILE, ENFILE, ...): retrying at
/// once would spin, and the error names a limit that takes time to clear.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What one non-blocking read attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were appended to the buffer.
    Data(usize),
    /// Nothing more to read until the next readiness event.
    WouldBlock,
    /// The peer closed its sending side.
    Eof,
}

/// Reads once into `scratch` and appends what arrived to `buf`, so `buf` only ever grows by
/// bytes actually received (never by a length a peer claimed). `Interrupted` is retried.
pub fn read_once<R: Read>(
    stream: &mut R,
    scratch: &mut [u8],
    buf: &mut BytesMut,
) -> io::Result<ReadOutcome> {
    assert!(!scratch.is_empty());
    loop {
        return match stream.read(scratch) {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                Ok(ReadOutcome::Data(n))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(e) => Err(e),
        };
    }
}

/// Writes from the front of `buf` until it is empty or the socket would block; returns the
/// bytes written. A zero-length write is an error (the peer can take no more, ever).
pub fn write_until_blocked<W: Write>(stream: &mut W, buf: &mut BytesMut) -> io::Result<usize> {
    let mut written = 0;
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf.advance(n);
                written += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// A non-blocking listener's accept state, the same for every I/O thread: whether it may have
/// connections waiting (edge-triggered readiness), and a pause after an accept error.
#[derive(Debug)]
pub struct Acceptor {
    ready: bool,
    paused_until: Option<Instant>,
    error_log: RateLimit,
}

impl Acceptor {
    /// `ready` is true for a listener that may already have connections queued.
    pub fn new(ready: bool, log_interval: Duration) -> Acceptor {
        Acceptor {
            ready,
            paused_until: None,
            error_log: RateLimit::new(log_interval),
        }
    }

    /// The listener's readiness event arrived.
    pub fn on_readable(&mut self) {
        self.ready = true;
    }

    /// True when [`Acceptor::accept`] may find a connection now.
    pub fn wants_accept(&self, now: Instant) -> bool {
        self.ready && self.paused_until.is_none_or(|t| t <= now)
    }

    /// When a pause after an error ends, for the poll timeout.
    pub fn wakeup(&self) -> Option<Instant> {
        self.paused_until.filter(|_| self.ready)
    }

    /// Takes one connection off the listener. `None` when there is none now (readiness is
    /// cleared until the next event) or accepting failed (logged, rate-limited, naming
    /// `what`; accepting pauses for [`ACCEPT_ERROR_PAUSE`]).
    pub fn accept(
        &mut self,
        listener: &TcpListener,
        now: Instant,
        what: &str,
    ) -> Option<(TcpStream, SocketAddr)> {
        if !self.wants_accept(now) {
            return None;
        }
        self.paused_until = None;
        loop {
            return match listener.accept() {
                Ok(accepted) => Some(accepted),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    None
                }
                Err(e) => {
                    if let Some(n) = self.error_log.check(now) {
                        log::warn!("error accepting {what}: {e} ({n} more not logged)");
                    }
                    self.paused_until = Some(now + ACCEPT_ERROR_PAUSE);
                    None
                }
            };
        }
    }
}

/// Lets one log line through per interval and counts the rest, like ZooKeeper's RateLogger:
/// a flood of refused connections must not flood the log.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were suppressed since the
    /// last one; `None` when this one should be dropped.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued connection is taken; an empty queue clears readiness until the next event.
    #[test]
    fn acceptor_takes_queued_connections_then_waits_for_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let now = Instant::now();
        let mut acceptor = Acceptor::new(true, Duration::from_secs(1));
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            // The handshake completes in the kernel; poll until it is queued.
            if let Some(a) = acceptor.accept(&listener, now, "a test connection") {
                break a;
            }
            assert!(Instant::now() < deadline, "the connection never arrived");
            acceptor.on_readable();
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(accepted.0.peer_addr().unwrap(), accepted.1);
        assert!(acceptor
            .accept(&listener, now, "a test connection")
            .is_none());
        assert!(
            !acceptor.wants_accept(now),
            "readiness cleared by WouldBlock"
        );
        assert_eq!(acceptor.wakeup(), None);
        acceptor.on_readable();
        assert!(acceptor.wants_accept(now));
    }

    /// A writer that takes at most `chunk` bytes per call, then blocks after `limit` bytes.
    struct Trickle {
        taken: Vec<u8>,
        chunk: usize,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.limit {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.chunk).min(self.limit - self.taken.len());
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_stop_at_would_block_and_keep_the_rest() {
        let mut w = Trickle {
            taken: Vec::new(),
            chunk: 3,
            limit: 7,
        };
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        assert_eq!(write_until_blocked(&mut w, &mut buf).unwrap(), 7);
        assert_eq!(&buf[..], b"789");
        assert_eq!(w.taken, b"0123456");
    }

    #[test]
    fn reads_append_only_what_arrived() {
        let mut src: &[u8] = b"abc";
        let mut scratch = [0u8; 2];
        let mut buf = BytesMut::new();
        assert_eq!(
            read_once(&mut src, &mut scratch, &mut buf).unwrap(),
            ReadOutcome::Data(2)
        );
        assert_eq!(
            read_once(&mut src, &mut scratch, &mut buf).unwrap(),
            ReadOutcome::Data(1)
        );
        assert_eq!(
            read_once(&mut src, &mut scratch, &mut buf).unwrap(),
            ReadOutcome::Eof
        );
        assert_eq!(&buf[..], b"abc");
    }

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let mut limit = RateLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(limit.check(t0), Some(0));
        assert_eq!(limit.check(t0 + Duration::from_millis(10)), None);
        assert_eq!(limit.check(t0 + Duration::from_millis(20)), None);
        assert_eq!(limit.check(t0 + Duration::from_secs(2)), Some(2));
    }
}
