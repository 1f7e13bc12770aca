//! Small socket helpers shared by the I/O threads: non-blocking reads and writes that sort
//! "try again later" from real errors, and a rate limit for per-connection log lines.

use bytes::{Buf, BytesMut};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

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
