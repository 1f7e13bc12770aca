//! Bad input closes (or is refused on) only the connection that sent it: oversized, negative
//! and garbage frames, malformed handshakes, unknown opcodes (Unimplemented, then close),
//! connections that never finish the handshake, connections beyond maxClientCnxns/maxCnxns.
//! A truncated record gets MarshallingError for its xid, and (as in ZooKeeper, which decodes
//! the record only when it processes the request) its connection stays usable. A client that
//! pipelines far past globalOutstandingLimit while reading nothing, with small or with large
//! replies, still gets every reply, in order. In each case a client connected beforehand
//! completes a request afterwards.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zabd::client::{Client, Frame, Reply};
use zabd::jute::proto::{op, Code, ConnectRequest, ReplyHeader, Request, SetDataRequest};
use zabd::jute::{Jute, Reader};

use crate::support::{
    assert_works, frame, mk, peer_state, raw_connect, read_until_closed, Peer, TestServer, WAIT,
};

fn small_buffer_server() -> TestServer {
    TestServer::with(|c| c.jute_max_buffer_bytes = 4096)
}

fn reply_header(payload: &[u8]) -> ReplyHeader {
    ReplyHeader::get(&mut Reader::new(payload)).expect("a reply header")
}

fn closed(c: &mut Client) -> bool {
    c.wait_closed(Duration::from_secs(5)).expect("transport")
}

#[test]
fn a_frame_over_jute_maxbuffer_closes_only_its_connection() {
    let server = small_buffer_server();
    let mut good = server.client();
    let mut bad = server.client();
    // Only the length goes out: the server must refuse before any payload arrives.
    bad.stream().write_all(&4097i32.to_be_bytes()).unwrap();
    assert!(
        closed(&mut bad),
        "a frame over jute.maxbuffer must close the connection"
    );
    assert_works(&mut good);

    // A frame of exactly jute.maxbuffer bytes is accepted.
    mk(&mut good, "/big", b"");
    let overhead = {
        let mut body = Vec::new();
        0i32.put(&mut body); // xid
        op::SET_DATA.put(&mut body);
        SetDataRequest {
            path: "/big".into(),
            data: Some(Bytes::new()),
            version: -1,
        }
        .put(&mut body);
        body.len()
    };
    let data = vec![b'x'; 4096 - overhead];
    let stat = good.set_data("/big", &data, -1).unwrap().unwrap();
    assert_eq!(stat.data_length as usize, data.len());
    // One byte more is over.
    let mut over = server.client();
    let data = vec![b'x'; 4097 - overhead];
    let failed = over.set_data("/big", &data, -1);
    assert!(failed.is_err() || closed(&mut over), "{failed:?}");
    assert_works(&mut good);
}

#[test]
fn a_negative_length_closes_only_its_connection() {
    let server = TestServer::start();
    let mut good = server.client();
    let mut bad = server.client();
    bad.stream().write_all(&(-1i32).to_be_bytes()).unwrap();
    assert!(closed(&mut bad));
    // Before the handshake too.
    let mut raw = raw_connect(server.addr());
    raw.write_all(&i32::MIN.to_be_bytes()).unwrap();
    assert_eq!(read_until_closed(&mut raw), Vec::<u8>::new());
    assert_works(&mut good);
}

/// A well-framed request whose body is shorter than its record: ZooKeeper answers
/// MarshallingError for that xid.
#[test]
fn a_truncated_record_gets_marshalling_error() {
    let server = TestServer::start();
    let mut good = server.client();
    for (opcode, body) in [
        // getData: a path of length 100 with 3 bytes present.
        (op::GET_DATA, [&100i32.to_be_bytes()[..], b"/ab"].concat()),
        // setData: path complete, then nothing.
        (op::SET_DATA, [&2i32.to_be_bytes()[..], b"/a"].concat()),
        // create: only half the path length.
        (op::CREATE, vec![0, 0]),
        // multi: a header announcing a create, then no create.
        (
            op::MULTI,
            [&op::CREATE.to_be_bytes()[..], &[0], &(-1i32).to_be_bytes()].concat(),
        ),
    ] {
        let mut bad = server.client();
        bad.send_raw(41, opcode, &body).unwrap();
        let payload = bad
            .recv_raw_frame()
            .expect("an answer to the truncated request");
        let header = reply_header(&payload);
        assert_eq!(
            (header.xid, header.err),
            (41, Code::MarshallingError.as_i32()),
            "opcode {opcode}"
        );
        assert_works(&mut good);
    }
}

/// ZooKeeper reads a request's record only when it processes it (`request.readRequestRecord`
/// in PrepRequestProcessor / FinalRequestProcessor); a body that does not decode becomes a
/// MarshallingError reply and the connection stays open. (Only an unknown opcode closes it.)
#[test]
fn a_truncated_record_leaves_the_connection_open() {
    let server = TestServer::start();
    let mut c = server.client();
    c.send_raw(
        7,
        op::GET_DATA,
        &[&100i32.to_be_bytes()[..], b"/ab"].concat(),
    )
    .unwrap();
    let header = reply_header(&c.recv_raw_frame().unwrap());
    assert_eq!(
        (header.xid, header.err),
        (7, Code::MarshallingError.as_i32())
    );
    let after = c.exists("/", false);
    assert!(
        matches!(after, Ok(Ok(_))),
        "ZooKeeper keeps serving the connection after a MarshallingError: {after:?}"
    );
}

#[test]
fn malformed_handshakes_close() {
    let server = TestServer::start();
    let mut good = server.client();
    let valid = zabd::jute::encode_to_vec(&ConnectRequest {
        time_out: 10_000,
        passwd: Bytes::from_static(&[0; 16]),
        read_only: Some(false),
        ..ConnectRequest::default()
    });
    let mut huge_passwd = valid.clone();
    // The passwd length (after 4 + 8 + 4 + 8 bytes) claims far more than is there.
    huge_passwd[24..28].copy_from_slice(&100_000i32.to_be_bytes());
    for payload in [vec![0u8; 10], valid[..30].to_vec(), huge_passwd, vec![]] {
        let mut s = raw_connect(server.addr());
        s.write_all(&frame(&payload)).unwrap();
        assert_eq!(read_until_closed(&mut s), Vec::<u8>::new(), "{payload:?}");
        assert_works(&mut good);
    }
}

#[test]
fn garbage_first_frames_close() {
    let server = TestServer::start();
    let mut good = server.client();
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x00\x00\x05hello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
        b"\xff\xff\xff\xff",
    ];
    for bytes in garbage {
        let mut s = raw_connect(server.addr());
        s.write_all(bytes).unwrap();
        assert_eq!(read_until_closed(&mut s), Vec::<u8>::new(), "{bytes:?}");
        assert_works(&mut good);
    }
}

#[test]
fn an_unknown_opcode_gets_unimplemented_then_close() {
    let server = TestServer::start();
    let mut good = server.client();
    let mut bad = server.client();
    bad.send_raw(17, 999, b"whatever").unwrap();
    let header = reply_header(&bad.recv_raw_frame().unwrap());
    assert_eq!((header.xid, header.err), (17, Code::Unimplemented.as_i32()));
    assert!(closed(&mut bad));
    assert_works(&mut good);
}

#[test]
fn a_connection_that_never_finishes_its_handshake_is_closed() {
    let server = TestServer::with(|c| c.sessionless_cnxn_timeout_ms = 300);
    let mut good = server.client();
    let started = Instant::now();
    let mut silent = raw_connect(server.addr());
    let mut partial = raw_connect(server.addr());
    partial.write_all(&45i32.to_be_bytes()).unwrap();
    partial.write_all(&[0u8; 10]).unwrap();
    assert_eq!(read_until_closed(&mut silent), Vec::<u8>::new());
    assert_eq!(read_until_closed(&mut partial), Vec::<u8>::new());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after only {waited:?}"
    );
    assert!(waited < WAIT, "took {waited:?}");
    // A connection that did its handshake is not subject to that timeout.
    std::thread::sleep(Duration::from_millis(400));
    assert_works(&mut good);
}

#[test]
fn connections_beyond_max_client_cnxns_are_closed() {
    let server = TestServer::with(|c| c.max_client_cnxns = 3);
    let mut good = server.client();
    let _second = server.client();
    let third = server.client();
    let mut extra = raw_connect(server.addr());
    assert_eq!(
        peer_state(&mut extra, WAIT),
        Peer::Closed,
        "the fourth connection is closed"
    );
    assert!(Client::connect(server.addr(), 10_000).is_err());
    assert_works(&mut good);
    // A slot frees once a connection goes.
    drop(third);
    let deadline = Instant::now() + WAIT;
    let mut again = loop {
        if let Ok(c) = Client::connect(server.addr(), 10_000) {
            break c;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_works(&mut again);
    assert_works(&mut good);
}

#[test]
fn connections_beyond_max_cnxns_are_closed() {
    let server = TestServer::with(|c| {
        c.max_client_cnxns = 0;
        c.max_cnxns = 2;
    });
    let mut good = server.client();
    let _second = server.client();
    let mut extra = raw_connect(server.addr());
    assert_eq!(
        peer_state(&mut extra, WAIT),
        Peer::Closed,
        "the third connection is closed"
    );
    assert_works(&mut good);
}

/// 200 pipelined setData requests against globalOutstandingLimit 4, not reading for a while:
/// every reply arrives, in request order, each write applied once and in order.
#[test]
fn a_slow_reader_gets_every_pipelined_reply_in_order() {
    const REQUESTS: i32 = 200;
    let server = TestServer::with(|c| c.global_outstanding_limit = 4);
    let mut good = server.client();
    let mut slow = server.client();
    mk(&mut slow, "/slow", b"");
    let payload = vec![b'p'; 1000];
    let mut xids = Vec::new();
    for i in 0..REQUESTS {
        let xid = slow.next_xid();
        let req = Request::SetData(SetDataRequest {
            path: "/slow".into(),
            data: Some(Bytes::copy_from_slice(&payload)),
            // Each write expects the version the previous one made: any reordering fails.
            version: i,
        });
        slow.send(xid, &req).unwrap();
        xids.push(xid);
    }
    // Read nothing for a while; another session is served meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    assert_works(&mut good);
    mk(&mut good, "/other", b"");
    for (i, xid) in xids.into_iter().enumerate() {
        match slow.recv().expect("every reply arrives") {
            Frame::Reply { header, reply, .. } => {
                assert_eq!((header.xid, header.err), (xid, 0), "reply {i}");
                let Reply::Stat(stat) = reply else {
                    panic!("setData answers a stat: {reply:?}");
                };
                assert_eq!(stat.version, i as i32 + 1, "reply {i}");
            }
            other => panic!("reply {i}: unexpected {other:?}"),
        }
    }
    let stat = slow.exists("/slow", false).unwrap().unwrap();
    assert_eq!(stat.version, REQUESTS);
    assert_works(&mut good);
}

/// Replies far larger than the socket buffers (100 x 100 KB) pile up while the client reads
/// nothing; once it reads, every byte arrives, in order.
#[test]
fn a_slow_reader_of_large_replies_gets_them_all() {
    let server = TestServer::with(|c| c.global_outstanding_limit = 4);
    let mut good = server.client();
    let mut slow = server.client();
    let value: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    mk(&mut slow, "/large", &value);
    let mut xids = Vec::new();
    for _ in 0..100 {
        let xid = slow.next_xid();
        let req = Request::GetData(zabd::jute::proto::PathWatchRequest {
            path: "/large".into(),
            watch: false,
        });
        slow.send(xid, &req).unwrap();
        xids.push(xid);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_works(&mut good);
    for (i, xid) in xids.into_iter().enumerate() {
        match slow.recv().expect("every reply arrives") {
            Frame::Reply {
                header,
                reply: Reply::GetData(Some(data), _),
                ..
            } => {
                assert_eq!((header.xid, header.err), (xid, 0), "reply {i}");
                assert!(data[..] == value[..], "reply {i} altered");
            }
            other => panic!("reply {i}: unexpected {other:?}"),
        }
    }
    assert_works(&mut slow);
}
