//! A small blocking ZooKeeper client on `std::net::TcpStream` and the jute codec, for
//! integration tests (including raw bad-input tests) and tools such as `zabd bench`.
//!
//! It speaks exactly one connection: no reconnects, no background pings, no watcher callbacks.
//! Replies are matched to requests by xid; watch events and replies that arrive while
//! [`Client::call`] waits for another reply are kept, in arrival order, in a bounded backlog
//! that [`Client::recv`], [`Client::events`] and [`Client::wait_event`] drain.
//!
//! Reply bodies are decoded by [`decode_reply`], which needs the request's opcode: the wire
//! carries only the xid, so the client remembers the opcode of every outstanding xid.

use crate::jute::data::{Acl, ClientInfo, Stat};
use crate::jute::frame::{decode_frame, frame_len_prefix};
use crate::jute::proto::{
    op, xid, AddWatchRequest, AuthPacket, Code, ConnectRequest, ConnectResponse, CreateRequest,
    DeleteRequest, MultiHeader, MultiResult, PathRequest, PathWatchRequest, ReplyHeader, Request,
    Response, SetAclRequest, SetDataRequest, WatcherEvent, WatchesRequest, MULTI_OPS_MAX,
};
use crate::jute::{decode_exact, DecodeError, Jute, Reader};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A decoded reply body; the server-side [`Response`] read back.
pub type Reply = Response;

/// The largest frame the client accepts: ZooKeeper's default jute.maxbuffer (1,048,575 bytes)
/// plus room for headers, with margin for servers configured above the default.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// How many frames may wait in the backlog before the client gives up on the connection: a
/// server that floods events while a test waits for one reply is a bug worth failing on.
pub const BACKLOG_MAX: usize = 1 << 16;

/// The default limit on each blocking wait (connect, one reply, one write).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The password length ZooKeeper hands out and expects.
pub const PASSWD_BYTES: usize = 16;

/// One frame received from the server after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A watch notification (xid -1).
    Event(ReplyHeader, WatcherEvent),
    /// The reply to a request this client sent; `op` is that request's opcode.
    Reply {
        header: ReplyHeader,
        op: i32,
        reply: Reply,
    },
    /// A reply whose xid this client has no record of (e.g. to bytes written through
    /// [`Client::stream`]), with its raw body.
    Unexpected(ReplyHeader, Vec<u8>),
}

/// The error inside the `io::Error` that [`Client::connect`] and [`Client::reconnect`] return
/// when the server answers the handshake with a zero timeout: the session is invalid or expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionExpired {
    pub session_id: i64,
}

impl fmt::Display for SessionExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session 0x{:x} expired or invalid", self.session_id)
    }
}

impl std::error::Error for SessionExpired {}

/// True if `err` is the [`SessionExpired`] refusal of a handshake.
pub fn is_session_expired(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<SessionExpired>())
}

/// A blocking client for one ZooKeeper connection.
pub struct Client {
    stream: TcpStream,
    /// Bytes read but not yet framed.
    rbuf: Vec<u8>,
    /// Reused to encode each outgoing frame.
    wbuf: Vec<u8>,
    next_xid: i32,
    /// (xid, opcode) of requests sent and not yet answered, in send order.
    outstanding: VecDeque<(i32, i32)>,
    /// Frames read while waiting for something else, in arrival order.
    backlog: VecDeque<Frame>,
    handshake: ConnectResponse,
    last_zxid: i64,
    io_timeout: Duration,
}

impl Client {
    /// Opens a new session with the requested timeout. The handshake carries the readOnly byte
    /// (false), as current Java clients send it.
    pub fn connect(addr: SocketAddr, session_timeout_ms: i32) -> io::Result<Client> {
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: session_timeout_ms,
            session_id: 0,
            passwd: Bytes::from_static(&[0; PASSWD_BYTES]),
            read_only: Some(false),
        };
        Client::connect_checked(addr, &req)
    }

    /// Re-attaches an existing session (as a client does after losing its connection). Fails
    /// with [`SessionExpired`] if the server no longer knows the session or the password is
    /// wrong.
    pub fn reconnect(
        addr: SocketAddr,
        session_id: i64,
        passwd: &[u8],
        timeout_ms: i32,
    ) -> io::Result<Client> {
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            time_out: timeout_ms,
            session_id,
            passwd: Bytes::copy_from_slice(passwd),
            read_only: Some(false),
        };
        Client::connect_checked(addr, &req)
    }

    fn connect_checked(addr: SocketAddr, req: &ConnectRequest) -> io::Result<Client> {
        let client = Client::connect_with(addr, req, DEFAULT_IO_TIMEOUT)?;
        // ZooKeeper answers an unknown session or a bad password with timeOut 0 and session 0.
        if client.handshake.time_out <= 0 || client.handshake.session_id == 0 {
            let expired = SessionExpired {
                session_id: req.session_id,
            };
            return Err(io::Error::new(ErrorKind::ConnectionRefused, expired));
        }
        Ok(client)
    }

    /// Sends an arbitrary handshake and returns the client whatever the server answered (see
    /// [`Client::connect_response`]); for tests of the handshake itself.
    pub fn connect_with(
        addr: SocketAddr,
        req: &ConnectRequest,
        io_timeout: Duration,
    ) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, io_timeout)?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
            next_xid: 1,
            outstanding: VecDeque::new(),
            backlog: VecDeque::new(),
            handshake: ConnectResponse::default(),
            last_zxid: 0,
            io_timeout,
        };
        client.encode_frame(|out| req.put(out));
        client.write_wbuf()?;
        let deadline = Instant::now() + io_timeout;
        let payload = client.read_frame(deadline)?.ok_or_else(timed_out)?;
        client.handshake = decode_exact::<ConnectResponse>(&payload).map_err(invalid_data)?;
        Ok(client)
    }

    pub fn session_id(&self) -> i64 {
        self.handshake.session_id
    }

    pub fn passwd(&self) -> &[u8] {
        &self.handshake.passwd
    }

    pub fn negotiated_timeout_ms(&self) -> i32 {
        self.handshake.time_out
    }

    /// The server's whole handshake answer (including whether it sent the readOnly byte).
    pub fn connect_response(&self) -> &ConnectResponse {
        &self.handshake
    }

    /// The highest zxid seen in any reply header.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// How long each blocking wait (one reply, one frame written) may take before failing
    /// with `TimedOut`.
    pub fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.io_timeout = timeout;
        Ok(())
    }

    /// Raw access for bad-input tests. Bytes written here bypass the xid bookkeeping, so their
    /// replies come back as [`Frame::Unexpected`].
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends `req` with the next xid (or the fixed xid ZooKeeper clients use for ping, auth
    /// and setWatches) and reads until its reply arrives; other frames read meanwhile are
    /// kept in the backlog.
    pub fn call(&mut self, req: Request) -> io::Result<(ReplyHeader, Reply)> {
        let xid = self.xid_for(&req);
        self.send(xid, &req)?;
        self.wait_reply(xid)
    }

    /// Sends `req` under `xid` without waiting; its reply comes from [`Client::recv`].
    pub fn send(&mut self, xid: i32, req: &Request) -> io::Result<()> {
        self.send_with(xid, req.op_code(), |out| req.put(out))
    }

    /// Sends a request header and an arbitrary body (e.g. a malformed one) under `xid`,
    /// remembering `op` to decode the reply.
    pub fn send_raw(&mut self, xid: i32, op: i32, body: &[u8]) -> io::Result<()> {
        self.send_with(xid, op, |out| out.extend_from_slice(body))
    }

    /// The next xid [`Client::call`] would use for an ordinary request; advances the counter.
    pub fn next_xid(&mut self) -> i32 {
        let xid = self.next_xid;
        // Positive xids only: negative ones are reserved for notifications, pings and auth.
        self.next_xid = if xid == i32::MAX { 1 } else { xid + 1 };
        xid
    }

    /// The next frame: from the backlog if any, else read from the connection (waiting up to
    /// the I/O timeout).
    pub fn recv(&mut self) -> io::Result<Frame> {
        if let Some(frame) = self.backlog.pop_front() {
            return Ok(frame);
        }
        let deadline = Instant::now() + self.io_timeout;
        self.read_decoded(deadline)?.ok_or_else(timed_out)
    }

    /// The next frame's raw payload, bypassing decoding and the backlog (for bad-input tests
    /// whose replies may not decode).
    pub fn recv_raw_frame(&mut self) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + self.io_timeout;
        self.read_frame(deadline)?.ok_or_else(timed_out)
    }

    /// Removes and returns the watch events in the backlog, oldest first.
    pub fn events(&mut self) -> Vec<WatcherEvent> {
        let mut events = Vec::new();
        self.backlog.retain(|frame| match frame {
            Frame::Event(_, e) => {
                events.push(e.clone());
                false
            }
            _ => true,
        });
        events
    }

    /// The oldest watch event, from the backlog or waiting up to `timeout`; `None` on timeout.
    /// Replies read meanwhile go to the backlog.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<(ReplyHeader, WatcherEvent)>> {
        if let Some(pos) = self
            .backlog
            .iter()
            .position(|f| matches!(f, Frame::Event(..)))
        {
            if let Some(Frame::Event(h, e)) = self.backlog.remove(pos) {
                return Ok(Some((h, e)));
            }
        }
        let deadline = Instant::now() + timeout;
        while let Some(frame) = self.read_decoded(deadline)? {
            match frame {
                Frame::Event(h, e) => return Ok(Some((h, e))),
                other => self.push_backlog(other)?,
            }
        }
        Ok(None)
    }

    /// Waits until the connection is closed by the server (EOF or reset), discarding frames,
    /// up to `timeout`. True if it closed.
    pub fn wait_closed(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_frame(deadline) {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(false),
                Err(e) if is_disconnect(&e) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    // ---- convenience wrappers: the outer io::Result is the transport, the inner the server ----

    pub fn create(
        &mut self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        flags: i32,
    ) -> io::Result<Result<String, Code>> {
        let req = Request::Create(op::CREATE, create_request(path, data, acl, flags));
        self.expect(req, |r| match r {
            Reply::Create(p) => Some(p),
            _ => None,
        })
    }

    pub fn create2(
        &mut self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        flags: i32,
    ) -> io::Result<Result<(String, Stat), Code>> {
        let req = Request::Create(op::CREATE2, create_request(path, data, acl, flags));
        self.expect(req, |r| match r {
            Reply::Create2(p, s) => Some((p, s)),
            _ => None,
        })
    }

    pub fn delete(&mut self, path: &str, version: i32) -> io::Result<Result<(), Code>> {
        let req = Request::Delete(DeleteRequest {
            path: path.into(),
            version,
        });
        self.expect(req, empty)
    }

    /// `Err(Code::NoNode)` when the node does not exist.
    pub fn exists(&mut self, path: &str, watch: bool) -> io::Result<Result<Stat, Code>> {
        let req = Request::Exists(PathWatchRequest {
            path: path.into(),
            watch,
        });
        self.expect(req, stat)
    }

    pub fn get_data(
        &mut self,
        path: &str,
        watch: bool,
    ) -> io::Result<Result<(Option<Bytes>, Stat), Code>> {
        let req = Request::GetData(PathWatchRequest {
            path: path.into(),
            watch,
        });
        self.expect(req, |r| match r {
            Reply::GetData(d, s) => Some((d, s)),
            _ => None,
        })
    }

    pub fn set_data(
        &mut self,
        path: &str,
        data: &[u8],
        version: i32,
    ) -> io::Result<Result<Stat, Code>> {
        let req = Request::SetData(SetDataRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            version,
        });
        self.expect(req, stat)
    }

    pub fn get_children(
        &mut self,
        path: &str,
        watch: bool,
    ) -> io::Result<Result<Vec<String>, Code>> {
        let req = Request::GetChildren(PathWatchRequest {
            path: path.into(),
            watch,
        });
        self.expect(req, |r| match r {
            Reply::Children(c) => Some(c),
            _ => None,
        })
    }

    pub fn get_children2(
        &mut self,
        path: &str,
        watch: bool,
    ) -> io::Result<Result<(Vec<String>, Stat), Code>> {
        let req = Request::GetChildren2(PathWatchRequest {
            path: path.into(),
            watch,
        });
        self.expect(req, |r| match r {
            Reply::Children2(c, s) => Some((c, s)),
            _ => None,
        })
    }

    pub fn get_acl(&mut self, path: &str) -> io::Result<Result<(Vec<Acl>, Stat), Code>> {
        let req = Request::GetAcl(PathRequest { path: path.into() });
        self.expect(req, |r| match r {
            Reply::GetAcl(a, s) => Some((a, s)),
            _ => None,
        })
    }

    pub fn set_acl(
        &mut self,
        path: &str,
        acl: &[Acl],
        version: i32,
    ) -> io::Result<Result<Stat, Code>> {
        let req = Request::SetAcl(SetAclRequest {
            path: path.into(),
            acl: acl.to_vec(),
            version,
        });
        self.expect(req, stat)
    }

    /// A write multi. ZooKeeper 3.8 answers a failed multi with header error 0 and the
    /// per-op error results, so a failure shows up inside the `Vec`, not as the `Err`.
    pub fn multi(&mut self, ops: Vec<Request>) -> io::Result<Result<Vec<MultiResult>, Code>> {
        self.expect(Request::Multi(ops), multi_results)
    }

    pub fn multi_read(&mut self, ops: Vec<Request>) -> io::Result<Result<Vec<MultiResult>, Code>> {
        self.expect(Request::MultiRead(ops), multi_results)
    }

    pub fn sync(&mut self, path: &str) -> io::Result<Result<String, Code>> {
        let req = Request::Sync(PathRequest { path: path.into() });
        self.expect(req, |r| match r {
            Reply::Sync(p) => Some(p),
            _ => None,
        })
    }

    /// Adds credentials (e.g. scheme "digest", auth "user:password"). ZooKeeper answers
    /// AuthFailed and then closes the connection for an unknown scheme.
    pub fn add_auth(&mut self, scheme: &str, auth: &[u8]) -> io::Result<Result<(), Code>> {
        let req = Request::Auth(AuthPacket {
            type_: 0,
            scheme: scheme.into(),
            auth: Bytes::copy_from_slice(auth),
        });
        self.expect(req, empty)
    }

    pub fn ping(&mut self) -> io::Result<Result<(), Code>> {
        self.expect(Request::Ping, empty)
    }

    pub fn add_watch(&mut self, path: &str, mode: i32) -> io::Result<Result<(), Code>> {
        let req = Request::AddWatch(AddWatchRequest {
            path: path.into(),
            mode,
        });
        self.expect(req, |r| {
            matches!(r, Reply::AddWatch | Reply::Empty).then_some(())
        })
    }

    pub fn remove_watches(
        &mut self,
        path: &str,
        watcher_type: i32,
    ) -> io::Result<Result<(), Code>> {
        let req = Request::RemoveWatches(WatchesRequest {
            path: path.into(),
            type_: watcher_type,
        });
        self.expect(req, empty)
    }

    pub fn get_ephemerals(&mut self, prefix: &str) -> io::Result<Result<Vec<String>, Code>> {
        let req = Request::GetEphemerals(PathRequest {
            path: prefix.into(),
        });
        self.expect(req, |r| match r {
            Reply::Paths(p) => Some(p),
            _ => None,
        })
    }

    pub fn get_all_children_number(&mut self, path: &str) -> io::Result<Result<i32, Code>> {
        let req = Request::GetAllChildrenNumber(PathRequest { path: path.into() });
        self.expect(req, |r| match r {
            Reply::Count(n) => Some(n),
            _ => None,
        })
    }

    pub fn who_am_i(&mut self) -> io::Result<Result<Vec<ClientInfo>, Code>> {
        self.expect(Request::WhoAmI, |r| match r {
            Reply::WhoAmI(infos) => Some(infos),
            _ => None,
        })
    }

    /// Closes the session (the server then closes the connection).
    pub fn close(&mut self) -> io::Result<Result<(), Code>> {
        self.expect(Request::CloseSession, empty)
    }

    // ---- internals ----

    fn xid_for(&mut self, req: &Request) -> i32 {
        match req {
            Request::Ping => xid::PING,
            Request::Auth(_) => xid::AUTH,
            Request::SetWatches(_) | Request::SetWatches2(_) => xid::SET_WATCHES,
            _ => self.next_xid(),
        }
    }

    fn expect<T>(
        &mut self,
        req: Request,
        pick: impl FnOnce(Reply) -> Option<T>,
    ) -> io::Result<Result<T, Code>> {
        let (header, reply) = self.call(req)?;
        if header.err != 0 {
            return code_from_i32(header.err)
                .map(Err)
                .ok_or_else(|| invalid_data(format!("unknown error code {}", header.err)));
        }
        match pick(reply) {
            Some(value) => Ok(Ok(value)),
            None => Err(invalid_data("reply body does not match the request")),
        }
    }

    fn send_with(&mut self, xid: i32, op: i32, body: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.outstanding.len() >= BACKLOG_MAX {
            return Err(io::Error::other("too many outstanding requests"));
        }
        self.encode_frame(|out| {
            xid.put(out);
            op.put(out);
            body(out);
        });
        self.write_wbuf()?;
        self.outstanding.push_back((xid, op));
        Ok(())
    }

    /// Encodes one length-prefixed frame into the reused write buffer.
    fn encode_frame(&mut self, payload: impl FnOnce(&mut Vec<u8>)) {
        self.wbuf.clear();
        self.wbuf.extend_from_slice(&[0; 4]);
        payload(&mut self.wbuf);
        let prefix = frame_len_prefix(self.wbuf.len() - 4);
        self.wbuf[..4].copy_from_slice(&prefix);
    }

    /// Writes the whole frame within one I/O timeout (a socket write timeout alone would
    /// apply per partial write).
    fn write_wbuf(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.io_timeout;
        let mut pos = 0;
        while pos < self.wbuf.len() {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "write timed out: the server stopped reading",
                ));
            }
            self.stream.set_write_timeout(Some(deadline - now))?;
            match self.stream.write(&self.wbuf[pos..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => pos += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn wait_reply(&mut self, want: i32) -> io::Result<(ReplyHeader, Reply)> {
        let deadline = Instant::now() + self.io_timeout;
        while let Some(frame) = self.read_decoded(deadline)? {
            match frame {
                Frame::Reply { header, reply, .. } if header.xid == want => {
                    return Ok((header, reply))
                }
                other => self.push_backlog(other)?,
            }
        }
        Err(timed_out())
    }

    fn push_backlog(&mut self, frame: Frame) -> io::Result<()> {
        if self.backlog.len() >= BACKLOG_MAX {
            return Err(io::Error::other("backlog of unread frames is full"));
        }
        self.backlog.push_back(frame);
        Ok(())
    }

    /// Reads and decodes one frame; `None` if the deadline passed first.
    fn read_decoded(&mut self, deadline: Instant) -> io::Result<Option<Frame>> {
        let Some(payload) = self.read_frame(deadline)? else {
            return Ok(None);
        };
        let mut r = Reader::new(&payload);
        let header = ReplyHeader::get(&mut r).map_err(invalid_data)?;
        let body = &payload[r.position()..];
        if header.zxid > self.last_zxid {
            self.last_zxid = header.zxid;
        }
        if header.xid == xid::NOTIFICATION {
            let event = decode_exact::<WatcherEvent>(body).map_err(invalid_data)?;
            return Ok(Some(Frame::Event(header, event)));
        }
        let Some(pos) = self.outstanding.iter().position(|&(x, _)| x == header.xid) else {
            return Ok(Some(Frame::Unexpected(header, body.to_vec())));
        };
        let (_, op) = self.outstanding.remove(pos).expect("position is in range");
        let reply = decode_reply(op, &header, body).map_err(invalid_data)?;
        Ok(Some(Frame::Reply { header, op, reply }))
    }

    /// Reads one frame's payload; `None` if the deadline passed first. A partial frame stays
    /// buffered for the next call.
    fn read_frame(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let framed = decode_frame(&self.rbuf, MAX_FRAME_BYTES).map_err(invalid_data)?;
            if let Some((range, total)) = framed {
                let payload = self.rbuf[range].to_vec();
                self.rbuf.drain(..total);
                return Ok(Some(payload));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn create_request(path: &str, data: &[u8], acl: &[Acl], flags: i32) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        acl: acl.to_vec(),
        flags,
    }
}

fn empty(reply: Reply) -> Option<()> {
    matches!(reply, Reply::Empty).then_some(())
}

fn stat(reply: Reply) -> Option<Stat> {
    match reply {
        Reply::Stat(s) => Some(s),
        _ => None,
    }
}

fn multi_results(reply: Reply) -> Option<Vec<MultiResult>> {
    match reply {
        Reply::Multi(results) => Some(results),
        _ => None,
    }
}

fn timed_out() -> io::Error {
    io::Error::new(ErrorKind::TimedOut, "no reply from the server in time")
}

fn invalid_data<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

/// True for the errors a peer closing the connection produces.
pub fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

/// The `Code` for an error number, `None` for numbers ZooKeeper does not define.
pub fn code_from_i32(n: i32) -> Option<Code> {
    Code::from_i32(n)
}

/// Decodes a reply body given the opcode of the request it answers: the client-side inverse
/// of `Response::put` / `put_reply`. An error reply without a body decodes as `Empty`; the
/// body must be consumed exactly.
pub fn decode_reply(op: i32, header: &ReplyHeader, body: &[u8]) -> Result<Reply, DecodeError> {
    if header.err != 0 && body.is_empty() {
        return Ok(Reply::Empty);
    }
    let mut r = Reader::new(body);
    let reply = decode_body(op, &mut r)?;
    r.finish()?;
    Ok(reply)
}

fn decode_body(op: i32, r: &mut Reader<'_>) -> Result<Reply, DecodeError> {
    Ok(match op {
        op::CREATE => Reply::Create(Jute::get(r)?),
        op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
            Reply::Create2(Jute::get(r)?, Jute::get(r)?)
        }
        op::DELETE
        | op::PING
        | op::CHECK_WATCHES
        | op::REMOVE_WATCHES
        | op::SET_WATCHES
        | op::SET_WATCHES2
        | op::AUTH
        | op::CLOSE_SESSION => Reply::Empty,
        // ZooKeeper answers addWatch with an ErrorResponse(0) body; tolerate none.
        op::ADD_WATCH => {
            if r.remaining() == 0 {
                Reply::Empty
            } else {
                let _err: i32 = Jute::get(r)?;
                Reply::AddWatch
            }
        }
        // A lone check (outside a multi) is answered like setData in FinalRequestProcessor.
        op::CHECK => {
            if r.remaining() == 0 {
                Reply::Empty
            } else {
                Reply::Stat(Jute::get(r)?)
            }
        }
        op::EXISTS | op::SET_DATA | op::SET_ACL => Reply::Stat(Jute::get(r)?),
        op::GET_DATA | op::RECONFIG => Reply::GetData(Jute::get(r)?, Jute::get(r)?),
        op::GET_ACL => Reply::GetAcl(Jute::get(r)?, Jute::get(r)?),
        op::GET_CHILDREN => Reply::Children(Jute::get(r)?),
        op::GET_CHILDREN2 => Reply::Children2(Jute::get(r)?, Jute::get(r)?),
        op::SYNC => Reply::Sync(Jute::get(r)?),
        op::MULTI | op::MULTI_READ => Reply::Multi(decode_multi(r)?),
        op::SASL => Reply::Sasl(Jute::get(r)?),
        op::GET_EPHEMERALS => Reply::Paths(Jute::get(r)?),
        op::GET_ALL_CHILDREN_NUMBER => Reply::Count(Jute::get(r)?),
        op::WHO_AM_I => Reply::WhoAmI(Jute::get(r)?),
        other => return Err(DecodeError::UnknownOpcode(other)),
    })
}

/// A `MultiResponse`: (MultiHeader + result record)* then a done header.
fn decode_multi(r: &mut Reader<'_>) -> Result<Vec<MultiResult>, DecodeError> {
    let mut results = Vec::new();
    loop {
        let h: MultiHeader = Jute::get(r)?;
        if h.done {
            return Ok(results);
        }
        if results.len() >= MULTI_OPS_MAX {
            return Err(DecodeError::BadValue("too many results in one multi"));
        }
        results.push(match h.type_ {
            op::CREATE => MultiResult::Create(Jute::get(r)?),
            op::CREATE2 => MultiResult::Create2(Jute::get(r)?, Jute::get(r)?),
            op::DELETE => MultiResult::Delete,
            op::SET_DATA => MultiResult::SetData(Jute::get(r)?),
            op::CHECK => MultiResult::Check,
            op::GET_DATA => MultiResult::GetData(Jute::get(r)?, Jute::get(r)?),
            op::GET_CHILDREN => MultiResult::GetChildren(Jute::get(r)?),
            op::ERROR => {
                let err: i32 = Jute::get(r)?;
                let code = code_from_i32(err)
                    .ok_or(DecodeError::BadValue("unknown error code in multi"))?;
                MultiResult::Error(code)
            }
            _ => return Err(DecodeError::BadValue("unknown result type in multi")),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::data::Id;
    use crate::jute::encode_to_vec;
    use crate::jute::proto::{put_reply, ErrorResponse};
    use std::net::TcpListener;

    fn stat(n: i64) -> Stat {
        Stat {
            czxid: n,
            mzxid: n + 1,
            ctime: 1_700_000_000_000,
            mtime: 1_700_000_000_001,
            version: 3,
            cversion: 4,
            aversion: 5,
            ephemeral_owner: 0x1234,
            data_length: 7,
            num_children: 2,
            pzxid: n + 2,
        }
    }

    /// Encodes like the server (`put_reply`), then decodes the body like the client.
    fn round_trip(op: i32, err: i32, response: &Response) -> Result<Reply, DecodeError> {
        let header = ReplyHeader {
            xid: 9,
            zxid: 100,
            err,
        };
        let mut wire = Vec::new();
        put_reply(&mut wire, &header, response);
        let mut r = Reader::new(&wire);
        let decoded_header = ReplyHeader::get(&mut r).unwrap();
        assert_eq!(decoded_header, header);
        decode_reply(op, &decoded_header, &wire[r.position()..])
    }

    fn assert_round_trips(op: i32, response: Response) {
        assert_eq!(round_trip(op, 0, &response), Ok(response), "opcode {op}");
    }

    #[test]
    fn every_single_op_reply_round_trips() {
        let acl = vec![
            Acl::new(31, "world", "anyone"),
            Acl {
                perms: 1,
                id: Id::new("ip", "10.0.0.1"),
            },
        ];
        let cases = vec![
            (op::CREATE, Response::Create("/a".into())),
            (
                op::CREATE2,
                Response::Create2("/a0000000001".into(), stat(5)),
            ),
            (
                op::CREATE_CONTAINER,
                Response::Create2("/c".into(), stat(6)),
            ),
            (op::CREATE_TTL, Response::Create2("/t".into(), stat(7))),
            (op::DELETE, Response::Empty),
            (op::EXISTS, Response::Stat(stat(8))),
            (
                op::GET_DATA,
                Response::GetData(Some(Bytes::from_static(b"hello")), stat(9)),
            ),
            (op::GET_DATA, Response::GetData(None, stat(9))),
            (op::GET_DATA, Response::GetData(Some(Bytes::new()), stat(9))),
            (op::SET_DATA, Response::Stat(stat(10))),
            (op::GET_ACL, Response::GetAcl(acl.clone(), stat(11))),
            (op::SET_ACL, Response::Stat(stat(12))),
            (
                op::GET_CHILDREN,
                Response::Children(vec!["x".into(), "y".into()]),
            ),
            (op::GET_CHILDREN, Response::Children(vec![])),
            (op::SYNC, Response::Sync("/s".into())),
            (op::PING, Response::Empty),
            (
                op::GET_CHILDREN2,
                Response::Children2(vec!["z".into()], stat(13)),
            ),
            (op::CHECK, Response::Stat(stat(14))),
            (op::CHECK, Response::Empty),
            (
                op::RECONFIG,
                Response::GetData(Some(Bytes::from_static(b"server.1=...")), stat(15)),
            ),
            (op::CHECK_WATCHES, Response::Empty),
            (op::REMOVE_WATCHES, Response::Empty),
            (op::AUTH, Response::Empty),
            (op::SET_WATCHES, Response::Empty),
            (op::SET_WATCHES2, Response::Empty),
            (op::SASL, Response::Sasl(Some(Bytes::from_static(b"token")))),
            (op::SASL, Response::Sasl(None)),
            (
                op::GET_EPHEMERALS,
                Response::Paths(vec!["/e1".into(), "/e2".into()]),
            ),
            (op::GET_ALL_CHILDREN_NUMBER, Response::Count(42)),
            (op::ADD_WATCH, Response::AddWatch),
            (op::ADD_WATCH, Response::Empty),
            (
                op::WHO_AM_I,
                Response::WhoAmI(vec![ClientInfo {
                    auth_scheme: "ip".into(),
                    user: "127.0.0.1".into(),
                }]),
            ),
            (op::CLOSE_SESSION, Response::Empty),
        ];
        for (op, response) in cases {
            assert_round_trips(op, response);
        }
    }

    #[test]
    fn add_watch_accepts_zookeepers_error_response_body() {
        let header = ReplyHeader {
            xid: 3,
            zxid: 1,
            err: 0,
        };
        let body = encode_to_vec(&ErrorResponse { err: 0 });
        assert_eq!(body.len(), 4);
        assert_eq!(
            decode_reply(op::ADD_WATCH, &header, &body),
            Ok(Reply::AddWatch)
        );
        let mut encoded = Vec::new();
        Response::AddWatch.put(&mut encoded);
        assert_eq!(encoded, body);
    }

    #[test]
    fn write_multi_results_round_trip_including_errors() {
        let ok = Response::Multi(vec![
            MultiResult::Create("/a".into()),
            MultiResult::Create2("/b".into(), stat(1)),
            MultiResult::Delete,
            MultiResult::SetData(stat(2)),
            MultiResult::Check,
        ]);
        assert_round_trips(op::MULTI, ok);
        // A failed multi: every result is an error result.
        let failed = Response::Multi(vec![
            MultiResult::Error(Code::Ok),
            MultiResult::Error(Code::NoNode),
            MultiResult::Error(Code::RuntimeInconsistency),
        ]);
        assert_round_trips(op::MULTI, failed.clone());
        // Multi results are sent even under a non-zero header error.
        assert_eq!(
            round_trip(op::MULTI, Code::NoNode.as_i32(), &failed),
            Ok(failed)
        );
        assert_round_trips(op::MULTI, Response::Multi(vec![]));
    }

    #[test]
    fn read_multi_results_round_trip() {
        let results = Response::Multi(vec![
            MultiResult::GetData(Some(Bytes::from_static(b"v")), stat(3)),
            MultiResult::GetChildren(vec!["c1".into(), "c2".into()]),
            MultiResult::Error(Code::NoNode),
            MultiResult::GetData(None, stat(4)),
        ]);
        assert_round_trips(op::MULTI_READ, results);
    }

    #[test]
    fn error_replies_without_body_decode_as_empty() {
        for op in [
            op::CREATE,
            op::GET_DATA,
            op::EXISTS,
            op::SET_DATA,
            op::GET_CHILDREN2,
            op::MULTI,
        ] {
            let got = round_trip(op, Code::NoNode.as_i32(), &Response::Stat(stat(1)));
            assert_eq!(got, Ok(Reply::Empty), "opcode {op}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let ok = ReplyHeader {
            xid: 1,
            zxid: 1,
            err: 0,
        };
        // A truncated stat.
        let body = encode_to_vec(&stat(1));
        assert!(matches!(
            decode_reply(op::EXISTS, &ok, &body[..50]),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        // Trailing bytes after a complete record.
        let mut long = body.clone();
        long.push(0);
        assert_eq!(
            decode_reply(op::EXISTS, &ok, &long),
            Err(DecodeError::TrailingBytes(1))
        );
        // A success reply missing its body.
        assert!(decode_reply(op::GET_DATA, &ok, &[]).is_err());
        assert_eq!(
            decode_reply(77, &ok, &[]),
            Err(DecodeError::UnknownOpcode(77))
        );
        // A multi with no done header, an unknown result type, an unknown error code.
        assert!(decode_reply(op::MULTI, &ok, &[]).is_err());
        let mut bad_type = Vec::new();
        MultiHeader {
            type_: 99,
            done: false,
            err: 0,
        }
        .put(&mut bad_type);
        assert!(matches!(
            decode_reply(op::MULTI, &ok, &bad_type),
            Err(DecodeError::BadValue(_))
        ));
        let mut bad_code = Vec::new();
        MultiHeader {
            type_: op::ERROR,
            done: false,
            err: -9999,
        }
        .put(&mut bad_code);
        (-9999i32).put(&mut bad_code);
        MultiHeader {
            type_: -1,
            done: true,
            err: -1,
        }
        .put(&mut bad_code);
        assert!(matches!(
            decode_reply(op::MULTI, &ok, &bad_code),
            Err(DecodeError::BadValue(_))
        ));
        // A child count far beyond the bytes present is refused before allocating.
        let huge = i32::MAX.to_be_bytes();
        assert!(decode_reply(op::GET_CHILDREN, &ok, &huge).is_err());
    }

    #[test]
    fn codes_map_back_from_numbers() {
        for code in Code::ALL {
            assert_eq!(code_from_i32(code.as_i32()), Some(code));
        }
        assert_eq!(code_from_i32(-122), None);
        assert_eq!(code_from_i32(1), None);
    }

    /// A scripted server on loopback: answers the handshake, then for one request sends a
    /// watch event, an unexpected reply and finally the real reply.
    #[test]
    fn call_queues_events_and_matches_replies_by_xid() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            let (mut s, _) = listener.accept()?;
            let connect = read_test_frame(&mut s)?;
            let req = decode_exact::<ConnectRequest>(&connect).unwrap();
            assert_eq!(req.read_only, Some(false));
            let resp = ConnectResponse {
                protocol_version: 0,
                time_out: 4000,
                session_id: 0x77,
                passwd: Bytes::from_static(&[9; 16]),
                read_only: Some(false),
            };
            write_test_frame(&mut s, &encode_to_vec(&resp))?;
            let request = read_test_frame(&mut s)?;
            let xid = i32::from_be_bytes([request[0], request[1], request[2], request[3]]);
            let event = WatcherEvent {
                type_: 3,
                state: 3,
                path: "/w".into(),
            };
            let mut frame = Vec::new();
            put_reply(
                &mut frame,
                &ReplyHeader {
                    xid: -1,
                    zxid: -1,
                    err: 0,
                },
                &Response::Event(event),
            );
            write_test_frame(&mut s, &frame)?;
            let mut frame = Vec::new();
            put_reply(
                &mut frame,
                &ReplyHeader {
                    xid: 555,
                    zxid: 5,
                    err: 0,
                },
                &Response::Empty,
            );
            write_test_frame(&mut s, &frame)?;
            let mut frame = Vec::new();
            let reply = Response::GetData(Some(Bytes::from_static(b"v")), Stat::default());
            put_reply(
                &mut frame,
                &ReplyHeader {
                    xid,
                    zxid: 6,
                    err: 0,
                },
                &reply,
            );
            write_test_frame(&mut s, &frame)?;
            Ok(request)
        });
        let mut c = Client::connect(addr, 4000).unwrap();
        assert_eq!(c.session_id(), 0x77);
        assert_eq!(c.passwd(), &[9; 16]);
        assert_eq!(c.negotiated_timeout_ms(), 4000);
        let got = c.get_data("/w", true).unwrap().unwrap();
        assert_eq!(got.0.as_deref(), Some(&b"v"[..]));
        assert_eq!(c.last_zxid(), 6);
        let request = server.join().unwrap().unwrap();
        assert_eq!(&request[4..8], &op::GET_DATA.to_be_bytes());
        // The unexpected reply stays in the backlog; the event is drained by events().
        assert_eq!(
            c.events(),
            vec![WatcherEvent {
                type_: 3,
                state: 3,
                path: "/w".into()
            }]
        );
        match c.recv().unwrap() {
            Frame::Unexpected(h, body) => {
                assert_eq!(h.xid, 555);
                assert!(body.is_empty());
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }

    #[test]
    fn expired_session_handshake_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || -> io::Result<()> {
            let (mut s, _) = listener.accept()?;
            read_test_frame(&mut s)?;
            let resp = ConnectResponse {
                passwd: Bytes::from_static(&[0; 16]),
                read_only: Some(false),
                ..ConnectResponse::default()
            };
            write_test_frame(&mut s, &encode_to_vec(&resp))
        });
        let err = Client::reconnect(addr, 0x55, &[1; 16], 4000).err().unwrap();
        assert!(is_session_expired(&err), "{err}");
        server.join().unwrap().unwrap();
    }

    fn read_test_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut payload = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut payload)?;
        Ok(payload)
    }

    fn write_test_frame(s: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
        s.write_all(&frame_len_prefix(payload.len()))?;
        s.write_all(payload)
    }
}
