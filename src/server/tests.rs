//! The core driven directly, without threads or sockets: every input is chosen by the test and
//! every output checked, so ordering and durability rules are tested exactly.

use super::{CnxnId, Input, Output, ZooKeeperServer};
use crate::config::{Config, FourLetterWhitelist};
use crate::jute::data::{perms, Acl, Stat};
use crate::jute::proto::{
    create_mode, event_type, op, AuthPacket, CheckVersionRequest, Code, ConnectRequest,
    CreateRequest, DeleteRequest, MultiResult, PathRequest, PathWatchRequest, ReplyHeader, Request,
    Response, SetDataRequest,
};
use crate::session::session_password;
use crate::tree::acl;
use bytes::Bytes;

const T0: i64 = 1_700_000_000_000;

struct Harness {
    server: ZooKeeperServer,
    now_ms: i64,
    /// Appended, not yet persisted.
    unsynced: Vec<i64>,
    /// The zxids of the snapshots the core asked for.
    snapshots: Vec<i64>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(Config {
            four_letter_whitelist: FourLetterWhitelist::All,
            ..Config::default()
        })
    }

    fn with_config(config: Config) -> Harness {
        Harness {
            server: ZooKeeperServer::new(&config, T0),
            now_ms: T0,
            unsynced: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.server.step(self.now_ms, input, &mut out);
        self.collect(out)
    }

    /// Keeps appends aside (they are the sync thread's business) and returns the rest.
    fn collect(&mut self, out: Vec<Output>) -> Vec<Output> {
        let mut rest = Vec::new();
        for o in out {
            match o {
                Output::Append { entries } => {
                    self.unsynced.extend(entries.iter().map(|e| e.header.zxid));
                }
                Output::Snapshot(s) => self.snapshots.push(s.zxid),
                other => rest.push(other),
            }
        }
        rest
    }

    fn sync(&mut self) -> Vec<Output> {
        let Some(&zxid) = self.unsynced.last() else {
            return Vec::new();
        };
        self.unsynced.clear();
        self.step(Input::Persisted {
            zxid,
            sync: Default::default(),
        })
    }

    fn tick(&mut self, advance_ms: i64) -> Vec<Output> {
        self.now_ms += advance_ms;
        let mut out = Vec::new();
        self.server.tick(self.now_ms, &mut out);
        self.collect(out)
    }

    /// Accepts a connection and establishes a new session; returns the session id.
    fn session(&mut self, cnxn: CnxnId) -> i64 {
        self.step(Input::Accepted {
            cnxn,
            peer: "127.0.0.1:5000".parse().unwrap(),
        });
        let req = ConnectRequest {
            time_out: 30_000,
            passwd: Bytes::from(vec![0; 16]),
            read_only: Some(false),
            ..Default::default()
        };
        assert!(
            self.step(Input::Connect { cnxn, req }).is_empty(),
            "answered only once durable"
        );
        let out = self.sync();
        match &out[..] {
            [Output::Connected {
                resp, close: false, ..
            }] => {
                assert_eq!(resp.time_out, 30_000);
                assert_eq!(resp.passwd[..], session_password(resp.session_id)[..]);
                resp.session_id
            }
            other => panic!("expected a handshake answer, got {other:?}"),
        }
    }

    fn request(&mut self, cnxn: CnxnId, xid: i32, req: Request) -> Vec<Output> {
        self.step(Input::Request { cnxn, xid, req })
    }

    /// Sends a request, syncs if needed, and returns the reply for `xid`.
    fn call(&mut self, cnxn: CnxnId, xid: i32, req: Request) -> (ReplyHeader, Response) {
        let mut out = self.request(cnxn, xid, req);
        out.extend(self.sync());
        reply_for(&out, cnxn, xid).unwrap_or_else(|| panic!("no reply for xid {xid} in {out:?}"))
    }
}

fn reply_for(out: &[Output], cnxn: CnxnId, xid: i32) -> Option<(ReplyHeader, Response)> {
    out.iter().find_map(|o| match o {
        Output::Reply {
            cnxn: c,
            header,
            body,
        } if *c == cnxn && header.xid == xid => Some((header.clone(), body.clone())),
        _ => None,
    })
}

fn events(out: &[Output], cnxn: CnxnId) -> Vec<(i32, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Reply {
                cnxn: c,
                header,
                body: Response::Event(e),
            } if *c == cnxn && header.xid == -1 => Some((e.type_, e.path.clone())),
            _ => None,
        })
        .collect()
}

fn create(path: &str, data: &[u8], flags: i32) -> Request {
    Request::Create(
        op::CREATE,
        CreateRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data)),
            acl: Acl::open_unsafe(),
            flags,
        },
    )
}

fn get(path: &str, watch: bool) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

fn stat_of(body: &Response) -> Stat {
    match body {
        Response::GetData(_, s) | Response::Stat(s) | Response::Create2(_, s) => s.clone(),
        other => panic!("no stat in {other:?}"),
    }
}

#[test]
fn writes_are_answered_only_after_they_are_durable() {
    let mut h = Harness::new();
    h.session(1);
    let out = h.request(1, 1, create("/a", b"x", create_mode::PERSISTENT));
    assert!(out.is_empty(), "no reply before the log is synced: {out:?}");
    assert_eq!(h.unsynced.len(), 1);
    let out = h.sync();
    let (header, body) = reply_for(&out, 1, 1).unwrap();
    assert_eq!(header.err, 0);
    assert_eq!(body, Response::Create("/a".into()));
    assert_eq!(header.zxid, h.server.tree().last_processed_zxid());
}

#[test]
fn a_read_waits_behind_its_own_connections_write_but_not_others() {
    let mut h = Harness::new();
    h.session(1);
    h.session(2);
    h.call(1, 1, create("/a", b"old", create_mode::PERSISTENT));
    assert!(h
        .request(
            1,
            2,
            Request::SetData(SetDataRequest {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"new")),
                version: -1
            })
        )
        .is_empty());
    // Same connection: the read must wait for the write.
    assert!(h.request(1, 3, get("/a", false)).is_empty());
    // Another connection reads the committed value at once.
    let out = h.request(2, 1, get("/a", false));
    let (_, body) = reply_for(&out, 2, 1).unwrap();
    assert!(matches!(body, Response::GetData(Some(ref d), _) if &d[..] == b"old"));
    let out = h.sync();
    let order: Vec<i32> = out
        .iter()
        .filter_map(|o| match o {
            Output::Reply {
                cnxn: 1, header, ..
            } => Some(header.xid),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![2, 3], "replies in request order");
    let (_, body) = reply_for(&out, 1, 3).unwrap();
    assert!(matches!(body, Response::GetData(Some(ref d), _) if &d[..] == b"new"));
}

#[test]
fn watch_events_leave_before_replies_that_show_the_change() {
    let mut h = Harness::new();
    h.session(1);
    h.session(2);
    h.call(1, 1, create("/w", b"0", create_mode::PERSISTENT));
    h.call(2, 1, get("/w", true));
    let set = Request::SetData(SetDataRequest {
        path: "/w".into(),
        data: Some(Bytes::from_static(b"1")),
        version: 0,
    });
    let mut out = h.request(1, 2, set);
    // Connection 2 queues a write of its own and, behind it, a read of /w: that read runs after
    // the change is applied, so the event must reach connection 2 first.
    out.extend(h.request(2, 2, create("/other", b"", create_mode::PERSISTENT)));
    out.extend(h.request(2, 3, get("/w", false)));
    out.extend(h.sync());
    let for_2: Vec<&Output> = out
        .iter()
        .filter(|o| matches!(o, Output::Reply { cnxn: 2, .. }))
        .collect();
    assert_eq!(for_2.len(), 3, "{for_2:?}");
    match for_2[0] {
        Output::Reply {
            header,
            body: Response::Event(e),
            ..
        } => {
            assert_eq!(header.xid, -1);
            assert_eq!(e.type_, event_type::NODE_DATA_CHANGED);
            assert_eq!(e.path, "/w");
            assert!(
                header.zxid > 0,
                "3.9: the event carries the zxid of its transaction"
            );
        }
        other => panic!("expected the event first, got {other:?}"),
    }
    assert!(matches!(for_2[1], Output::Reply { header, .. } if header.xid == 2));
    assert!(
        matches!(for_2[2], Output::Reply { header, body: Response::GetData(Some(d), _), .. } if header.xid == 3 && &d[..] == b"1")
    );
    // One-shot: a second change fires nothing.
    h.request(
        1,
        3,
        Request::SetData(SetDataRequest {
            path: "/w".into(),
            data: None,
            version: -1,
        }),
    );
    let out = h.sync();
    assert!(events(&out, 2).is_empty());
}

#[test]
fn sequential_names_use_the_parents_cversion() {
    let mut h = Harness::new();
    h.session(1);
    h.call(1, 1, create("/q", b"", create_mode::PERSISTENT));
    h.call(1, 2, create("/q/x", b"", create_mode::PERSISTENT));
    let (_, body) = h.call(
        1,
        3,
        create("/q/n-", b"", create_mode::PERSISTENT_SEQUENTIAL),
    );
    assert_eq!(body, Response::Create("/q/n-0000000001".into()));
    let (_, body) = h.call(
        1,
        4,
        create("/q/n-", b"", create_mode::EPHEMERAL_SEQUENTIAL),
    );
    assert_eq!(body, Response::Create("/q/n-0000000002".into()));
}

#[test]
fn pipelined_writes_validate_against_outstanding_changes() {
    let mut h = Harness::new();
    h.session(1);
    // Three writes in flight before any is durable: the second sees the first.
    h.request(1, 1, create("/p", b"", create_mode::PERSISTENT));
    h.request(1, 2, create("/p", b"", create_mode::PERSISTENT));
    h.request(1, 3, create("/p/c", b"", create_mode::PERSISTENT));
    let out = h.sync();
    assert_eq!(reply_for(&out, 1, 1).unwrap().0.err, 0);
    assert_eq!(
        reply_for(&out, 1, 2).unwrap().0.err,
        Code::NodeExists.as_i32()
    );
    assert_eq!(reply_for(&out, 1, 3).unwrap().0.err, 0);
    let (_, body) = h.call(
        1,
        4,
        Request::Exists(PathWatchRequest {
            path: "/p".into(),
            watch: false,
        }),
    );
    assert_eq!(stat_of(&body).num_children, 1);
    assert_eq!(stat_of(&body).cversion, 1);
}

#[test]
fn a_failed_multi_changes_nothing_and_reports_each_op() {
    let mut h = Harness::new();
    h.session(1);
    let multi = Request::Multi(vec![
        create("/m1", b"", create_mode::PERSISTENT),
        Request::Check(CheckVersionRequest {
            path: "/missing".into(),
            version: 0,
        }),
        create("/m2", b"", create_mode::PERSISTENT),
    ]);
    let (header, body) = h.call(1, 1, multi);
    assert_eq!(
        header.err, 0,
        "ZooKeeper reports multi errors per op, not in the header"
    );
    assert_eq!(
        body,
        Response::Multi(vec![
            MultiResult::Error(Code::Ok),
            MultiResult::Error(Code::NoNode),
            MultiResult::Error(Code::RuntimeInconsistency),
        ])
    );
    assert!(h.server.tree().node("/m1").is_none());
    // The rolled-back create left no outstanding record behind.
    let (header, _) = h.call(1, 2, create("/m1", b"", create_mode::PERSISTENT));
    assert_eq!(header.err, 0);
}

#[test]
fn expired_sessions_lose_their_ephemerals_and_connections() {
    let mut h = Harness::new();
    let sid = h.session(1);
    h.session(2);
    h.call(1, 1, create("/e", b"", create_mode::EPHEMERAL));
    h.call(
        2,
        1,
        Request::Exists(PathWatchRequest {
            path: "/e".into(),
            watch: true,
        }),
    );
    // Session 2 keeps pinging; session 1 goes silent.
    let mut out = Vec::new();
    for _ in 0..20 {
        out.extend(h.tick(2_000));
        h.request(2, -2, Request::Ping);
        out.extend(h.sync());
    }
    assert!(
        out.iter().any(|o| matches!(o, Output::Close { cnxn: 1 })),
        "expired session's connection closed"
    );
    assert!(h.server.tree().node("/e").is_none());
    assert_eq!(
        events(&out, 2),
        vec![(event_type::NODE_DELETED, "/e".to_owned())]
    );
    assert!(h.server.tree().ephemerals(sid).is_empty());
}

#[test]
fn a_session_moves_to_a_new_connection_with_its_password_only() {
    let mut h = Harness::new();
    let sid = h.session(1);
    h.step(Input::Accepted {
        cnxn: 2,
        peer: "127.0.0.1:5001".parse().unwrap(),
    });
    let bad = ConnectRequest {
        session_id: sid,
        time_out: 30_000,
        passwd: Bytes::from(vec![1; 16]),
        ..Default::default()
    };
    let out = h.step(Input::Connect { cnxn: 2, req: bad });
    assert!(
        matches!(&out[..], [Output::Connected { resp, close: true, .. }] if resp.session_id == 0 && resp.time_out == 0)
    );
    h.step(Input::Accepted {
        cnxn: 3,
        peer: "127.0.0.1:5002".parse().unwrap(),
    });
    let good = ConnectRequest {
        session_id: sid,
        time_out: 30_000,
        passwd: Bytes::copy_from_slice(&session_password(sid)),
        ..Default::default()
    };
    let out = h.step(Input::Connect { cnxn: 3, req: good });
    assert!(
        out.iter().any(|o| matches!(o, Output::Close { cnxn: 1 })),
        "old connection closed"
    );
    assert!(out.iter().any(|o| matches!(o, Output::Connected { cnxn: 3, resp, close: false } if resp.session_id == sid && resp.read_only.is_none())));
}

#[test]
fn a_client_ahead_of_the_server_is_refused() {
    let mut h = Harness::new();
    h.step(Input::Accepted {
        cnxn: 1,
        peer: "127.0.0.1:5000".parse().unwrap(),
    });
    let req = ConnectRequest {
        last_zxid_seen: 99,
        time_out: 30_000,
        passwd: Bytes::from(vec![0; 16]),
        ..Default::default()
    };
    let out = h.step(Input::Connect { cnxn: 1, req });
    assert!(matches!(&out[..], [Output::Close { cnxn: 1 }]));
}

#[test]
fn acls_protect_nodes_and_get_acl_masks_digests() {
    let mut h = Harness::new();
    h.session(1);
    h.session(2);
    let digest = acl::digest("alice:secret");
    let protected = vec![
        Acl::new(perms::ALL, "digest", &digest),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    let req = Request::Create(
        op::CREATE,
        CreateRequest {
            path: "/s".into(),
            data: None,
            acl: protected,
            flags: 0,
        },
    );
    assert_eq!(h.call(1, 1, req).0.err, 0);
    let set = |v: &'static [u8]| {
        Request::SetData(SetDataRequest {
            path: "/s".into(),
            data: Some(Bytes::from_static(v)),
            version: -1,
        })
    };
    assert_eq!(h.call(2, 1, set(b"x")).0.err, Code::NoAuth.as_i32());
    // CVE-2019-0201: without ADMIN the digest is masked.
    let (header, body) = h.call(2, 2, Request::GetAcl(PathRequest { path: "/s".into() }));
    assert_eq!(header.err, 0);
    let Response::GetAcl(shown, _) = body else {
        panic!("{body:?}")
    };
    assert_eq!(shown[0].id.id, "alice:x");
    // Authenticate: write and full ACL now allowed.
    let auth = Request::Auth(AuthPacket {
        type_: 0,
        scheme: "digest".into(),
        auth: Bytes::from_static(b"alice:secret"),
    });
    let out = h.request(2, -4, auth);
    assert_eq!(reply_for(&out, 2, -4).unwrap().0.err, 0);
    assert_eq!(h.call(2, 3, set(b"y")).0.err, 0);
    let (_, body) = h.call(2, 4, Request::GetAcl(PathRequest { path: "/s".into() }));
    let Response::GetAcl(shown, _) = body else {
        panic!()
    };
    assert_eq!(shown[0].id.id, digest);
}

#[test]
fn failed_auth_answers_and_closes() {
    let mut h = Harness::new();
    h.session(1);
    let auth = Request::Auth(AuthPacket {
        type_: 0,
        scheme: "nosuch".into(),
        auth: Bytes::new(),
    });
    let out = h.request(1, -4, auth);
    assert_eq!(
        reply_for(&out, 1, -4).unwrap().0.err,
        Code::AuthFailed.as_i32()
    );
    assert!(matches!(out.last(), Some(Output::Close { cnxn: 1 })));
}

#[test]
fn errors_map_to_zookeeper_codes() {
    let mut h = Harness::new();
    h.session(1);
    h.call(1, 1, create("/x", b"", create_mode::EPHEMERAL));
    let cases = vec![
        (create("/no/parent", b"", 0), Code::NoNode),
        (create("/x/child", b"", 0), Code::NoChildrenForEphemerals),
        (create("/x", b"", 0), Code::NodeExists),
        (create("bad", b"", 0), Code::BadArguments),
        (create("/y", b"", 9), Code::BadArguments),
        (
            create("/ttl", b"", create_mode::PERSISTENT_WITH_TTL),
            Code::Unimplemented,
        ),
        (
            Request::Delete(DeleteRequest {
                path: "/x".into(),
                version: 5,
            }),
            Code::BadVersion,
        ),
        (
            Request::Delete(DeleteRequest {
                path: "/".into(),
                version: -1,
            }),
            Code::BadArguments,
        ),
        (
            Request::Delete(DeleteRequest {
                path: "/zookeeper".into(),
                version: -1,
            }),
            Code::BadArguments,
        ),
        (get("/nope", false), Code::NoNode),
    ];
    for (i, (req, code)) in cases.into_iter().enumerate() {
        let (header, _) = h.call(1, 10 + i as i32, req.clone());
        assert_eq!(header.err, code.as_i32(), "{req:?}");
    }
}

#[test]
fn unknown_opcodes_get_unimplemented_then_close() {
    let mut h = Harness::new();
    h.session(1);
    let out = h.step(Input::BadRequest {
        cnxn: 1,
        xid: 7,
        op: 77,
        error: crate::jute::DecodeError::UnknownOpcode(77),
    });
    assert_eq!(
        reply_for(&out, 1, 7).unwrap().0.err,
        Code::Unimplemented.as_i32()
    );
    assert!(matches!(out.last(), Some(Output::Close { cnxn: 1 })));
}

#[test]
fn four_letter_words_respect_the_whitelist() {
    let mut h = Harness::with_config(Config::default());
    h.step(Input::Accepted {
        cnxn: 1,
        peer: "127.0.0.1:5000".parse().unwrap(),
    });
    let out = h.step(Input::FourLetter {
        cnxn: 1,
        word: *b"ruok",
        disk: None,
    });
    assert!(
        matches!(&out[..], [Output::Text { text, .. }] if text == "ruok is not executed because it is not in the whitelist.\n")
    );
    let out = h.step(Input::FourLetter {
        cnxn: 1,
        word: *b"srvr",
        disk: None,
    });
    assert!(
        matches!(&out[..], [Output::Text { text, .. }] if text.contains("Mode: standalone") && text.starts_with("Zookeeper version: "))
    );
    let mut h = Harness::new();
    let out = h.step(Input::FourLetter {
        cnxn: 1,
        word: *b"ruok",
        disk: None,
    });
    assert!(matches!(&out[..], [Output::Text { text, .. }] if text == "imok"));
}

#[test]
fn close_session_deletes_ephemerals_answers_and_closes() {
    let mut h = Harness::new();
    h.session(1);
    h.call(1, 1, create("/eph", b"", create_mode::EPHEMERAL));
    let mut out = h.request(1, 2, Request::CloseSession);
    out.extend(h.sync());
    assert_eq!(reply_for(&out, 1, 2).unwrap().0.err, 0);
    assert!(matches!(out.last(), Some(Output::Close { cnxn: 1 })));
    assert!(h.server.tree().node("/eph").is_none());
}

#[test]
fn a_standalone_check_is_unimplemented_and_never_logged() {
    let mut h = Harness::new();
    h.session(1);
    h.call(1, 1, create("/c", b"", create_mode::PERSISTENT));
    let logged = h.server.tree().last_processed_zxid();
    let out = h.request(
        1,
        2,
        Request::Check(CheckVersionRequest {
            path: "/c".into(),
            version: 0,
        }),
    );
    assert_eq!(
        reply_for(&out, 1, 2).unwrap().0.err,
        Code::Unimplemented.as_i32()
    );
    assert!(
        matches!(out.last(), Some(Output::Close { cnxn: 1 })),
        "ZOOKEEPER-2623: then closed"
    );
    assert!(h.unsynced.is_empty());
    assert_eq!(
        h.server.tree().last_processed_zxid(),
        logged,
        "no transaction for a lone check"
    );
}

#[test]
fn a_malformed_request_keeps_its_place_and_its_connection() {
    let mut h = Harness::new();
    h.session(1);
    assert!(h
        .request(1, 1, create("/p", b"", create_mode::PERSISTENT))
        .is_empty());
    let bad = Input::BadRequest {
        cnxn: 1,
        xid: 2,
        op: op::GET_DATA,
        error: crate::jute::DecodeError::UnexpectedEof {
            needed: 100,
            remaining: 3,
        },
    };
    assert!(
        h.step(bad).is_empty(),
        "waits behind the connection's write"
    );
    let out = h.sync();
    let xids: Vec<(i32, i32)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Reply {
                cnxn: 1, header, ..
            } => Some((header.xid, header.err)),
            _ => None,
        })
        .collect();
    assert_eq!(xids, vec![(1, 0), (2, Code::MarshallingError.as_i32())]);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Close { .. })),
        "the connection stays"
    );
}
