//! Sessions: the negotiated timeout is clamped to [minSessionTimeout, maxSessionTimeout]
//! (2 and 20 ticks by default); a silent session expires, taking its ephemerals with it and
//! firing watches; a session re-attaches from a new connection with its id and password (the
//! old connection is closed, the ephemerals stay); a wrong password gets the all-zero
//! ConnectResponse and a close; a client that has seen a later zxid than the server is refused;
//! closeSession deletes the session's ephemerals.

use std::time::{Duration, Instant};

use bytes::Bytes;
use zabd::client::{is_session_expired, Client};
use zabd::jute::proto::{create_mode, event_type as ev, ConnectRequest};

use crate::support::{
    assert_works, frame, mk, next_event, open, peer_state, raw_connect, read_until_closed, Peer,
    TestServer, WAIT,
};
use std::io::Write;

fn handshake(session_id: i64, passwd: &[u8], timeout_ms: i32) -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: timeout_ms,
        session_id,
        passwd: Bytes::copy_from_slice(passwd),
        read_only: Some(false),
    }
}

#[test]
fn negotiated_timeout_is_clamped_to_2_and_20_ticks() {
    let server = TestServer::with(|c| c.tick_time_ms = 100);
    for (asked, got) in [
        (1, 200),
        (199, 200),
        (200, 200),
        (1234, 1234),
        (2000, 2000),
        (100_000, 2000),
    ] {
        let c = server.client_with_timeout(asked);
        assert_eq!(c.negotiated_timeout_ms(), got, "asked for {asked}");
    }
    drop(server);

    let server = TestServer::with(|c| {
        c.tick_time_ms = 100;
        c.min_session_timeout_ms = Some(500);
        c.max_session_timeout_ms = Some(800);
    });
    for (asked, got) in [(100, 500), (600, 600), (30_000, 800)] {
        let c = server.client_with_timeout(asked);
        assert_eq!(
            c.negotiated_timeout_ms(),
            got,
            "asked for {asked} with min 500 max 800"
        );
    }
}

#[test]
fn an_old_handshake_without_the_read_only_byte_gets_an_answer_without_it() {
    let server = TestServer::start();
    let req = ConnectRequest {
        read_only: None,
        ..handshake(0, &[0; 16], 10_000)
    };
    let mut c = Client::connect_with(server.addr(), &req, WAIT).unwrap();
    let resp = c.connect_response().clone();
    assert_eq!(resp.read_only, None);
    assert_eq!((resp.protocol_version, resp.time_out), (0, 10_000));
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.passwd.len(), 16);
    assert_works(&mut c);
    let c2 = server.client();
    assert_eq!(c2.connect_response().read_only, Some(false));
    assert_ne!(c2.session_id(), resp.session_id);
}

/// tickTime 100 ms: a session asking for 200 ms that then says nothing expires within a few
/// ticks; its ephemerals go and a watcher sees NodeDeleted.
#[test]
fn a_silent_session_expires_and_its_ephemerals_go() {
    let server = TestServer::with(|c| c.tick_time_ms = 100);
    let mut watcher = server.client_with_timeout(2000);
    let mut silent = server.client_with_timeout(200);
    assert_eq!(silent.negotiated_timeout_ms(), 200);
    silent
        .create("/eph", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    silent
        .create("/eph2", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    watcher.exists("/eph", true).unwrap().unwrap();
    let quiet_since = Instant::now();

    // The watcher keeps its own session alive with pings while it waits.
    let deadline = quiet_since + Duration::from_secs(10);
    let event = loop {
        if let Some((_, e)) = next_event(&mut watcher, Duration::from_millis(200)) {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "the silent session never expired"
        );
        watcher.ping().unwrap().unwrap();
    };
    let waited = quiet_since.elapsed();
    assert_eq!(
        (event.type_, event.path.as_str()),
        (ev::NODE_DELETED, "/eph")
    );
    assert!(
        waited >= Duration::from_millis(100),
        "expired after only {waited:?}"
    );
    assert!(watcher.exists("/eph", false).unwrap().is_err());
    assert!(watcher.exists("/eph2", false).unwrap().is_err());
    // The expired session's connection is closed, and the session cannot be re-attached.
    assert!(silent.wait_closed(Duration::from_secs(5)).unwrap());
    let err = Client::reconnect(server.addr(), silent.session_id(), silent.passwd(), 200)
        .err()
        .expect("an expired session is refused");
    assert!(is_session_expired(&err), "{err}");
}

#[test]
fn an_active_session_does_not_expire() {
    let server = TestServer::with(|c| c.tick_time_ms = 100);
    let mut c = server.client_with_timeout(1000);
    c.create("/alive", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        c.ping().unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let stat = c.exists("/alive", false).unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, c.session_id());
}

#[test]
fn a_session_reattaches_from_a_new_connection() {
    let server = TestServer::start();
    let mut first = server.client();
    let mut other = server.client();
    first
        .create("/mine", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    let (id, passwd) = (first.session_id(), first.passwd().to_vec());

    let mut second = Client::reconnect(server.addr(), id, &passwd, 10_000).unwrap();
    assert_eq!(second.session_id(), id);
    assert_eq!(second.passwd(), &passwd[..]);
    assert_eq!(second.negotiated_timeout_ms(), 10_000);
    // The old connection is closed; the session and its ephemerals live on.
    assert!(first.wait_closed(Duration::from_secs(5)).unwrap());
    let stat = second.exists("/mine", false).unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, id);
    assert_eq!(
        second.get_ephemerals("/").unwrap(),
        Ok(vec!["/mine".to_owned()])
    );
    second
        .create("/mine2", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    assert_eq!(
        other
            .exists("/mine2", false)
            .unwrap()
            .unwrap()
            .ephemeral_owner,
        id
    );
}

#[test]
fn a_wrong_password_gets_the_zero_response_and_a_close() {
    let server = TestServer::start();
    let mut owner = server.client();
    let id = owner.session_id();
    let mut wrong = owner.passwd().to_vec();
    wrong[0] ^= 0xff;
    for (session, passwd) in [(id, wrong), (id ^ 0x5555, owner.passwd().to_vec())] {
        let mut c = Client::connect_with(server.addr(), &handshake(session, &passwd, 10_000), WAIT)
            .expect("the server answers the handshake");
        let resp = c.connect_response().clone();
        assert_eq!(
            (resp.protocol_version, resp.time_out, resp.session_id),
            (0, 0, 0)
        );
        assert_eq!(&resp.passwd[..], &[0u8; 16][..]);
        assert!(
            c.wait_closed(Duration::from_secs(5)).unwrap(),
            "refused connections close"
        );
    }
    // The real owner is unaffected.
    assert_works(&mut owner);
    assert_eq!(owner.session_id(), id);
}

#[test]
fn a_client_ahead_of_the_server_is_refused_without_an_answer() {
    let server = TestServer::start();
    let mut good = server.client();
    let mut s = raw_connect(server.addr());
    let req = ConnectRequest {
        last_zxid_seen: 1 << 40,
        ..handshake(0, &[0; 16], 10_000)
    };
    s.write_all(&frame(&zabd::jute::encode_to_vec(&req)))
        .unwrap();
    assert_eq!(
        read_until_closed(&mut s),
        Vec::<u8>::new(),
        "no ConnectResponse at all"
    );
    assert_eq!(peer_state(&mut s, Duration::from_millis(100)), Peer::Closed);
    // A client that has seen exactly the server's zxid is fine.
    let seen = good.last_zxid().max(1);
    mk(&mut good, "/z", b"");
    let req = ConnectRequest {
        last_zxid_seen: seen,
        ..handshake(0, &[0; 16], 10_000)
    };
    let mut c = Client::connect_with(server.addr(), &req, WAIT).unwrap();
    assert!(c.session_id() != 0);
    assert_works(&mut c);
}

#[test]
fn close_session_deletes_ephemerals_and_closes_the_connection() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut watcher = server.client();
    mk(&mut c, "/cs", b"");
    c.create("/cs/e1", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    c.create("/cs/e2", b"", &open(), create_mode::EPHEMERAL_SEQUENTIAL)
        .unwrap()
        .unwrap();
    watcher.exists("/cs/e1", true).unwrap().unwrap();
    let (id, passwd) = (c.session_id(), c.passwd().to_vec());
    assert_eq!(c.close().unwrap(), Ok(()));
    assert!(c.wait_closed(Duration::from_secs(5)).unwrap());
    let (_, event) = next_event(&mut watcher, Duration::from_secs(5)).expect("NodeDeleted");
    assert_eq!(
        (event.type_, event.path.as_str()),
        (ev::NODE_DELETED, "/cs/e1")
    );
    assert_eq!(watcher.get_children("/cs", false).unwrap(), Ok(vec![]));
    // The persistent parent stays; the session is gone for good.
    assert!(watcher.exists("/cs", false).unwrap().is_ok());
    let err = Client::reconnect(server.addr(), id, &passwd, 10_000)
        .err()
        .expect("closed");
    assert!(is_session_expired(&err), "{err}");
}
