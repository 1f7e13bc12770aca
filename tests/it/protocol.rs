//! zabd driven by its own blocking client, for what the zookeeper-client crate cannot show:
//! reply headers and raw reply bodies (create2's stat, null vs empty data, a failed multi's
//! per-op codes, addWatch's 4-byte body), Stat field semantics, the ops that crate has no API
//! for (ping, sasl, reconfig, checkWatches/removeWatches, setWatches/setWatches2, getEphemerals,
//! whoAmI, close), per-session request ordering, container/TTL cleanup, and the error codes
//! ZooKeeper 3.9 gives odd requests (a lone check, out-of-range watcher types, bad ACLs/paths).

use std::time::Duration;

use bytes::Bytes;
use zabd::client::Reply;
use zabd::jute::data::{perms, Acl};
use zabd::jute::proto::{
    add_watch_mode, create_mode, event_type as ev, op, watcher_type, xid, AddWatchRequest,
    CheckVersionRequest, Code, CreateRequest, DeleteRequest, MultiResult, PathWatchRequest,
    ReconfigRequest, Request, SaslToken, SetDataRequest, SetWatches2, WatchesRequest,
};

use crate::support::{assert_works, drain_events, kinds, mk, next_event, now_ms, open, TestServer};

fn create(path: &str, data: Option<&[u8]>, flags: i32) -> Request {
    Request::Create(
        op::CREATE,
        CreateRequest {
            path: path.into(),
            data: data.map(Bytes::copy_from_slice),
            acl: open(),
            flags,
        },
    )
}

fn set(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        version,
    })
}

fn check(path: &str, version: i32) -> Request {
    Request::Check(CheckVersionRequest {
        path: path.into(),
        version,
    })
}

fn get_data(path: &str) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch: false,
    })
}

fn get_children(path: &str) -> Request {
    Request::GetChildren(PathWatchRequest {
        path: path.into(),
        watch: false,
    })
}

/// Stat after create, setData, child create and delete, setACL; the zxids are those of the
/// reply headers of the writes that set them.
#[test]
fn stat_fields_follow_each_write() {
    let server = TestServer::start();
    let mut c = server.client();
    let before = now_ms();
    let (path, s0) = c.create2("/s", b"abc", &open(), 0).unwrap().unwrap();
    let after = now_ms();
    let z_create = c.last_zxid();
    assert_eq!(path, "/s");
    assert_eq!(
        (s0.czxid, s0.mzxid, s0.pzxid),
        (z_create, z_create, z_create)
    );
    assert!(
        before <= s0.ctime && s0.ctime <= after,
        "ctime {} not in [{before}, {after}]",
        s0.ctime
    );
    assert_eq!(s0.mtime, s0.ctime);
    assert_eq!((s0.version, s0.cversion, s0.aversion), (0, 0, 0));
    assert_eq!(
        (s0.ephemeral_owner, s0.data_length, s0.num_children),
        (0, 3, 0)
    );
    assert_eq!(c.exists("/s", false).unwrap().unwrap(), s0);

    let s1 = c.set_data("/s", b"hello!", 0).unwrap().unwrap();
    let z_set = c.last_zxid();
    assert!(z_set > z_create);
    assert_eq!((s1.czxid, s1.mzxid, s1.pzxid), (z_create, z_set, z_create));
    assert_eq!(s1.ctime, s0.ctime);
    assert!(s1.mtime >= s0.mtime);
    assert_eq!((s1.version, s1.cversion, s1.aversion), (1, 0, 0));
    assert_eq!((s1.data_length, s1.num_children), (6, 0));

    let (_, child) = c.create2("/s/c", b"", &open(), 0).unwrap().unwrap();
    let z_child = c.last_zxid();
    assert_eq!(child.czxid, z_child);
    let s2 = c.exists("/s", false).unwrap().unwrap();
    assert_eq!((s2.czxid, s2.mzxid, s2.pzxid), (z_create, z_set, z_child));
    assert_eq!((s2.version, s2.cversion, s2.num_children), (1, 1, 1));
    assert_eq!(
        s2.mtime, s1.mtime,
        "a child create leaves the parent's mtime"
    );

    c.delete("/s/c", 0).unwrap().unwrap();
    let z_delete = c.last_zxid();
    assert!(z_delete > z_child);
    let s3 = c.exists("/s", false).unwrap().unwrap();
    assert_eq!((s3.mzxid, s3.pzxid), (z_set, z_delete));
    // Clients see cversion count deletes too (2 * creates - children).
    assert_eq!((s3.version, s3.cversion, s3.num_children), (1, 2, 0));

    let acl = vec![Acl::new(perms::ALL, "world", "anyone")];
    let s4 = c.set_acl("/s", &acl, 0).unwrap().unwrap();
    assert_eq!((s4.aversion, s4.version, s4.cversion), (1, 1, 2));
    assert_eq!(
        (s4.mzxid, s4.pzxid),
        (z_set, z_delete),
        "setACL moves no zxid"
    );
    assert_eq!(c.set_acl("/s", &acl, 0).unwrap(), Err(Code::BadVersion));

    let (_, eph) = c
        .create2("/eph", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    assert_eq!(eph.ephemeral_owner, c.session_id());
    assert_ne!(eph.ephemeral_owner, 0);
}

#[test]
fn the_root_and_zookeeper_nodes() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut children = c.get_children("/", false).unwrap().unwrap();
    children.sort();
    assert_eq!(children, vec!["zookeeper"]);
    let mut zk = c.get_children("/zookeeper", false).unwrap().unwrap();
    zk.sort();
    assert_eq!(zk, vec!["config", "quota"]);
    // "/" counts every node but itself.
    assert_eq!(c.get_all_children_number("/").unwrap(), Ok(3));
    mk(&mut c, "/a", b"");
    mk(&mut c, "/a/b", b"");
    assert_eq!(c.get_all_children_number("/").unwrap(), Ok(5));
    assert_eq!(c.get_all_children_number("/a").unwrap(), Ok(1));
    assert_eq!(c.get_all_children_number("/a/b").unwrap(), Ok(0));
    assert_eq!(c.get_all_children_number("/x").unwrap(), Err(Code::NoNode));
    assert_eq!(c.delete("/zookeeper", -1).unwrap(), Err(Code::BadArguments));
    // The config node is world-readable only.
    let (acl, _) = c.get_acl("/zookeeper/config").unwrap().unwrap();
    assert_eq!(acl, vec![Acl::new(perms::READ, "world", "anyone")]);
    assert_eq!(
        c.set_data("/zookeeper/config", b"x", -1).unwrap(),
        Err(Code::NoAuth)
    );
    assert_eq!(
        c.create("/zookeeper", b"", &open(), 0).unwrap(),
        Err(Code::NodeExists)
    );
    assert_eq!(c.delete("/", -1).unwrap(), Err(Code::BadArguments));
}

/// jute distinguishes a null buffer (length -1) from an empty one; ZooKeeper keeps the
/// difference and getData gives back what was stored.
#[test]
fn data_null_and_empty_are_kept_apart() {
    let server = TestServer::start();
    let mut c = server.client();
    let (h, _) = c.call(create("/null", None, 0)).unwrap();
    assert_eq!(h.err, 0);
    let (h, _) = c.call(create("/empty", Some(b""), 0)).unwrap();
    assert_eq!(h.err, 0);
    let (data, stat) = c.get_data("/null", false).unwrap().unwrap();
    assert_eq!((data, stat.data_length), (None, 0));
    let (data, stat) = c.get_data("/empty", false).unwrap().unwrap();
    assert_eq!((data, stat.data_length), (Some(Bytes::new()), 0));
    // setData to null and back.
    let (h, _) = c
        .call(Request::SetData(SetDataRequest {
            path: "/empty".into(),
            data: None,
            version: 0,
        }))
        .unwrap();
    assert_eq!(h.err, 0);
    let (data, stat) = c.get_data("/empty", false).unwrap().unwrap();
    assert_eq!((data, stat.version), (None, 1));
    c.set_data("/null", b"", -1).unwrap().unwrap();
    assert_eq!(
        c.get_data("/null", false).unwrap().unwrap().0,
        Some(Bytes::new())
    );
}

#[test]
fn create_variants_through_raw_opcodes() {
    let server = TestServer::start();
    let mut c = server.client();
    // createContainer (19) answers like create2.
    let req = Request::Create(
        op::CREATE_CONTAINER,
        CreateRequest {
            path: "/box".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: open(),
            flags: create_mode::CONTAINER,
        },
    );
    let (h, reply) = c.call(req).unwrap();
    assert_eq!(h.err, 0);
    let Reply::Create2(path, stat) = reply else {
        panic!("createContainer answers path and stat: {reply:?}");
    };
    assert_eq!(
        (path.as_str(), stat.ephemeral_owner, stat.data_length),
        ("/box", 0, 1)
    );
    // createTTL (21) is Unimplemented while extendedTypesEnabled is false.
    let ttl = Request::CreateTtl(zabd::jute::proto::CreateTtlRequest {
        path: "/ttl".into(),
        data: None,
        acl: open(),
        flags: create_mode::PERSISTENT_WITH_TTL,
        ttl: 60_000,
    });
    let (h, _) = c.call(ttl).unwrap();
    assert_eq!(h.err, Code::Unimplemented.as_i32());
    // A plain create with TTL flags is refused too.
    let (h, _) = c
        .call(create("/ttl2", None, create_mode::PERSISTENT_WITH_TTL))
        .unwrap();
    assert_ne!(h.err, 0);
    assert!(c.exists("/ttl2", false).unwrap().is_err());
    // A sequential create of "/p/" names the node by the counter alone.
    mk(&mut c, "/slash", b"");
    mk(&mut c, "/slash/x", b"");
    assert_eq!(
        c.create("/slash/", b"", &open(), create_mode::PERSISTENT_SEQUENTIAL)
            .unwrap(),
        Ok("/slash/0000000001".to_owned())
    );
    // Unknown flags.
    let (h, _) = c.call(create("/flags", None, 42)).unwrap();
    assert_eq!(h.err, Code::BadArguments.as_i32());
    // Bad paths.
    for bad in ["nolead", "/trailing/", "/a//b", "/dot/.", ""] {
        let (h, _) = c.call(create(bad, None, 0)).unwrap();
        assert!(
            h.err == Code::BadArguments.as_i32() || h.err == Code::NoNode.as_i32(),
            "{bad}: {}",
            h.err
        );
        assert_ne!(h.err, 0, "{bad}");
    }
    assert_works(&mut c);
}

#[test]
fn create_ttl_with_extended_types() {
    let server = TestServer::with(|c| c.extended_types_enabled = true);
    let mut c = server.client();
    for (ttl, want) in [
        (60_000, 0),
        (0, Code::BadArguments.as_i32()),
        (-5, Code::BadArguments.as_i32()),
    ] {
        let req = Request::CreateTtl(zabd::jute::proto::CreateTtlRequest {
            path: format!("/ttl{ttl}"),
            data: None,
            acl: open(),
            flags: create_mode::PERSISTENT_WITH_TTL,
            ttl,
        });
        let (h, reply) = c.call(req).unwrap();
        assert_eq!(h.err, want, "ttl {ttl}");
        if want == 0 {
            assert!(
                matches!(reply, Reply::Create2(ref p, ref s) if p == "/ttl60000" && s.ephemeral_owner == 0)
            );
        }
    }
}

/// A failed multi: ops before the failure report 0, the failing op its code, later ops
/// RuntimeInconsistency (-2); the header error is 0 and nothing is applied.
#[test]
fn failed_multi_layout_and_atomicity() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/m", b"");
    mk(&mut c, "/m/x", b"");
    let before = c.exists("/m", false).unwrap().unwrap();
    let ops = vec![
        create("/m/a", Some(b"a"), 0),
        set("/m/x", b"x", 0),
        set("/m/missing", b"", -1),
        create("/m/b", None, 0),
        Request::Delete(DeleteRequest {
            path: "/m/x".into(),
            version: -1,
        }),
    ];
    let (h, reply) = c.call(Request::Multi(ops)).unwrap();
    assert_eq!(
        h.err, 0,
        "ZooKeeper answers a failed multi with header error 0"
    );
    assert_eq!(
        reply,
        Reply::Multi(vec![
            MultiResult::Error(Code::Ok),
            MultiResult::Error(Code::Ok),
            MultiResult::Error(Code::NoNode),
            MultiResult::Error(Code::RuntimeInconsistency),
            MultiResult::Error(Code::RuntimeInconsistency),
        ])
    );
    assert!(c.exists("/m/a", false).unwrap().is_err());
    assert!(c.exists("/m/b", false).unwrap().is_err());
    let x = c.exists("/m/x", false).unwrap().unwrap();
    assert_eq!(x.version, 0);
    let after = c.exists("/m", false).unwrap().unwrap();
    assert_eq!(
        (after.cversion, after.num_children, after.pzxid),
        (before.cversion, 1, before.pzxid)
    );

    // The same ops minus the bad one succeed, each with its own result type.
    let ops = vec![
        create("/m/a", Some(b"a"), 0),
        set("/m/x", b"x", 0),
        check("/m/x", 1),
        Request::Delete(DeleteRequest {
            path: "/m/x".into(),
            version: 1,
        }),
    ];
    let (h, reply) = c.call(Request::Multi(ops)).unwrap();
    assert_eq!(h.err, 0);
    let Reply::Multi(results) = reply else {
        panic!("multi answers results: {reply:?}");
    };
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], MultiResult::Create("/m/a".into()));
    assert!(matches!(&results[1], MultiResult::SetData(s) if s.version == 1 && s.mzxid == h.zxid));
    assert_eq!(results[2], MultiResult::Check);
    assert_eq!(results[3], MultiResult::Delete);
    assert!(c.exists("/m/x", false).unwrap().is_err());
}

/// Later ops of a multi see the earlier ones (prep's outstanding changes): a node created,
/// given a child, written and removed again in one multi; two sequential creates in one multi
/// get consecutive suffixes; all of it under one zxid.
#[test]
fn multi_ops_see_the_effects_of_earlier_ops() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/chain", b"");
    let ops = vec![
        create("/chain/n", None, 0),
        create("/chain/n/c", Some(b"v0"), 0),
        set("/chain/n/c", b"v1", 0),
        check("/chain/n/c", 1),
        Request::Delete(DeleteRequest {
            path: "/chain/n/c".into(),
            version: 1,
        }),
        Request::Delete(DeleteRequest {
            path: "/chain/n".into(),
            version: 0,
        }),
        create("/chain/s-", None, create_mode::PERSISTENT_SEQUENTIAL),
        create("/chain/s-", None, create_mode::PERSISTENT_SEQUENTIAL),
    ];
    let (h, reply) = c.call(Request::Multi(ops)).unwrap();
    assert_eq!(h.err, 0);
    let Reply::Multi(results) = reply else {
        panic!("{reply:?}");
    };
    assert!(
        results.iter().all(|r| !matches!(r, MultiResult::Error(_))),
        "{results:?}"
    );
    assert_eq!(
        results[6],
        MultiResult::Create("/chain/s-0000000001".into())
    );
    assert_eq!(
        results[7],
        MultiResult::Create("/chain/s-0000000002".into())
    );
    let mut kids = c.get_children("/chain", false).unwrap().unwrap();
    kids.sort();
    assert_eq!(kids, vec!["s-0000000001", "s-0000000002"]);
    let s = c.exists("/chain/s-0000000001", false).unwrap().unwrap();
    assert_eq!(s.czxid, h.zxid, "every op of a multi has the multi's zxid");
    assert_eq!(c.exists("/chain", false).unwrap().unwrap().pzxid, h.zxid);
}

/// A read pipelined right behind the session's own write waits for it (and so sees it).
#[test]
fn a_pipelined_read_sees_the_sessions_earlier_write() {
    let server = TestServer::start();
    let mut c = server.client();
    for round in 0..20 {
        let path = format!("/pipe{round}");
        let w = c.next_xid();
        c.send(w, &create(&path, Some(b"made"), 0)).unwrap();
        let r = c.next_xid();
        c.send(r, &get_data(&path)).unwrap();
        let s = c.next_xid();
        c.send(s, &set(&path, b"changed", 0)).unwrap();
        let r2 = c.next_xid();
        c.send(r2, &get_data(&path)).unwrap();
        let mut replies = Vec::new();
        while replies.len() < 4 {
            match c.recv().unwrap() {
                zabd::client::Frame::Reply { header, reply, .. } => replies.push((header, reply)),
                other => panic!("unexpected {other:?}"),
            }
        }
        let xids: Vec<i32> = replies.iter().map(|(h, _)| h.xid).collect();
        assert_eq!(xids, vec![w, r, s, r2], "replies in request order");
        assert!(replies.iter().all(|(h, _)| h.err == 0), "{replies:?}");
        assert!(matches!(&replies[1].1, Reply::GetData(Some(d), _) if &d[..] == b"made"));
        assert!(
            matches!(&replies[3].1, Reply::GetData(Some(d), st) if &d[..] == b"changed" && st.version == 1)
        );
    }
}

#[test]
fn check_inside_a_multi() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/ck", b"");
    c.set_data("/ck", b"1", -1).unwrap().unwrap();
    for (version, want) in [(1, None), (-1, None), (0, Some(Code::BadVersion))] {
        let ops = vec![check("/ck", version), create("/ck/child", None, 0)];
        let (_, reply) = c.call(Request::Multi(ops)).unwrap();
        let Reply::Multi(results) = reply else {
            panic!("{reply:?}");
        };
        match want {
            None => {
                assert_eq!(results[0], MultiResult::Check, "version {version}");
                c.delete("/ck/child", -1).unwrap().unwrap();
            }
            Some(code) => {
                assert_eq!(
                    results,
                    vec![
                        MultiResult::Error(code),
                        MultiResult::Error(Code::RuntimeInconsistency)
                    ]
                );
                assert!(c.exists("/ck/child", false).unwrap().is_err());
            }
        }
    }
    let (_, reply) = c.call(Request::Multi(vec![check("/nope", -1)])).unwrap();
    assert_eq!(reply, Reply::Multi(vec![MultiResult::Error(Code::NoNode)]));
    // An empty multi is a valid no-op.
    let (h, reply) = c.call(Request::Multi(vec![])).unwrap();
    assert_eq!((h.err, reply), (0, Reply::Multi(vec![])));
}

/// check (13) is valid only inside a multi: since ZOOKEEPER-2623 (3.8.5, 3.9.3) ZooKeeper's
/// `Request.isValid(check)` is false, so a lone check gets Unimplemented and the connection is
/// closed, like any opcode the server does not serve.
#[test]
fn a_lone_check_is_unimplemented_then_closed() {
    let server = TestServer::start();
    let mut good = server.client();
    mk(&mut good, "/lc", b"");
    let mut c = server.client();
    let (h, _) = c.call(check("/lc", 0)).unwrap();
    assert_eq!(
        h.err,
        Code::Unimplemented.as_i32(),
        "ZooKeeper 3.9.3+ answers a check outside a multi with Unimplemented"
    );
    assert!(
        c.wait_closed(Duration::from_secs(5)).unwrap(),
        "and closes the connection"
    );
    assert_works(&mut good);
}

#[test]
fn multi_read_results_in_place() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/mr", b"v");
    mk(&mut c, "/mr/kid", b"");
    let ops = vec![
        get_data("/mr"),
        get_children("/missing"),
        get_children("/mr"),
        get_data("/mr/none"),
    ];
    let (h, reply) = c.call(Request::MultiRead(ops)).unwrap();
    assert_eq!(h.err, 0);
    let Reply::Multi(results) = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(results.len(), 4);
    assert!(
        matches!(&results[0], MultiResult::GetData(Some(d), s) if &d[..] == b"v" && s.num_children == 1)
    );
    assert_eq!(results[1], MultiResult::Error(Code::NoNode));
    assert_eq!(results[2], MultiResult::GetChildren(vec!["kid".into()]));
    assert_eq!(results[3], MultiResult::Error(Code::NoNode));
}

#[test]
fn ping_sync_sasl_and_reconfig() {
    let server = TestServer::start();
    let mut c = server.client();
    let (h, reply) = c.call(Request::Ping).unwrap();
    assert_eq!((h.xid, h.err, reply), (xid::PING, 0, Reply::Empty));
    assert_eq!(c.sync("/").unwrap(), Ok("/".to_owned()));
    mk(&mut c, "/sy", b"");
    assert_eq!(c.sync("/sy").unwrap(), Ok("/sy".to_owned()));
    // sync checks no path.
    assert_eq!(c.sync("/not/there").unwrap(), Ok("/not/there".to_owned()));
    // No SASL server: OK with a null token.
    let (h, reply) = c
        .call(Request::Sasl(SaslToken {
            token: Bytes::from_static(b"token"),
        }))
        .unwrap();
    assert_eq!((h.err, reply), (0, Reply::Sasl(None)));
    // A standalone server cannot reconfigure.
    let (h, _) = c
        .call(Request::Reconfig(ReconfigRequest {
            joining_servers: "server.2=127.0.0.1:2888:3888;2182".into(),
            leaving_servers: String::new(),
            new_members: String::new(),
            cur_config_id: -1,
        }))
        .unwrap();
    assert_eq!(h.err, Code::ReconfigDisabled.as_i32());
    assert_works(&mut c);
}

#[test]
fn delete_and_get_errors() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/del", b"");
    mk(&mut c, "/del/c", b"");
    assert_eq!(c.delete("/del", -1).unwrap(), Err(Code::NotEmpty));
    assert_eq!(c.delete("/del/c", 3).unwrap(), Err(Code::BadVersion));
    assert_eq!(c.delete("/del/none", -1).unwrap(), Err(Code::NoNode));
    assert_eq!(c.delete("/del/c", 0).unwrap(), Ok(()));
    assert_eq!(c.delete("/del", 0).unwrap(), Ok(()));
    assert_eq!(c.get_data("/del", false).unwrap(), Err(Code::NoNode));
    assert_eq!(c.exists("/del", false).unwrap(), Err(Code::NoNode));
    assert_eq!(c.get_children2("/del", false).unwrap(), Err(Code::NoNode));
    assert_eq!(c.get_acl("/del").unwrap(), Err(Code::NoNode));
    assert_eq!(c.set_data("/del", b"", -1).unwrap(), Err(Code::NoNode));
}

#[test]
fn check_and_remove_watches() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut writer = server.client();
    mk(&mut writer, "/cw", b"");
    let check_watches = |c: &mut zabd::client::Client, path: &str, ty: i32| {
        let (h, _) = c
            .call(Request::CheckWatches(WatchesRequest {
                path: path.into(),
                type_: ty,
            }))
            .unwrap();
        h.err
    };
    let no_watcher = Code::NoWatcher.as_i32();
    assert_eq!(check_watches(&mut c, "/cw", watcher_type::ANY), no_watcher);
    assert_eq!(
        c.remove_watches("/cw", watcher_type::DATA).unwrap(),
        Err(Code::NoWatcher)
    );

    c.get_data("/cw", true).unwrap().unwrap();
    assert_eq!(check_watches(&mut c, "/cw", watcher_type::DATA), 0);
    assert_eq!(check_watches(&mut c, "/cw", watcher_type::ANY), 0);
    assert_eq!(
        check_watches(&mut c, "/cw", watcher_type::CHILDREN),
        no_watcher
    );
    assert_eq!(
        c.remove_watches("/cw", watcher_type::CHILDREN).unwrap(),
        Err(Code::NoWatcher)
    );
    assert_eq!(c.remove_watches("/cw", watcher_type::DATA).unwrap(), Ok(()));
    assert_eq!(check_watches(&mut c, "/cw", watcher_type::DATA), no_watcher);
    assert_eq!(
        c.remove_watches("/cw", watcher_type::DATA).unwrap(),
        Err(Code::NoWatcher)
    );

    c.get_children("/cw", true).unwrap().unwrap();
    assert_eq!(c.remove_watches("/cw", watcher_type::ANY).unwrap(), Ok(()));
    assert_eq!(check_watches(&mut c, "/cw", watcher_type::ANY), no_watcher);

    c.add_watch("/cw", add_watch_mode::PERSISTENT)
        .unwrap()
        .unwrap();
    assert_eq!(check_watches(&mut c, "/cw", watcher_type::PERSISTENT), 0);
    assert_eq!(
        c.remove_watches("/cw", watcher_type::PERSISTENT).unwrap(),
        Ok(())
    );
    assert_eq!(
        check_watches(&mut c, "/cw", watcher_type::PERSISTENT),
        no_watcher
    );

    // Nothing removed fires any more.
    writer.set_data("/cw", b"x", -1).unwrap().unwrap();
    mk(&mut writer, "/cw/kid", b"");
    let stat = c.exists("/cw", false).unwrap().unwrap();
    assert_eq!((stat.version, stat.num_children), (1, 1));
    assert!(drain_events(&mut c).is_empty());
}

#[test]
fn add_watch_answers_a_four_byte_body() {
    let server = TestServer::start();
    let mut c = server.client();
    let (h, reply) = c
        .call(Request::AddWatch(AddWatchRequest {
            path: "/aw".into(),
            mode: add_watch_mode::PERSISTENT_RECURSIVE,
        }))
        .unwrap();
    assert_eq!((h.err, reply), (0, Reply::AddWatch));
    let mut writer = server.client();
    mk(&mut writer, "/aw", b"");
    mk(&mut writer, "/aw/a", b"");
    assert!(c.exists("/aw/a", false).unwrap().is_ok());
    assert_eq!(
        kinds(&drain_events(&mut c)),
        vec![
            (ev::NODE_CREATED, "/aw".to_owned()),
            (ev::NODE_CREATED, "/aw/a".to_owned())
        ]
    );
}

/// setWatches (a reconnecting client's watches, relative to the last zxid it saw): every
/// watch whose node changed since fires at once; the others are re-armed.
#[test]
fn set_watches_fires_missed_events_and_rearms_the_rest() {
    let server = TestServer::start();
    let mut writer = server.client();
    for p in ["/sw", "/sw/data", "/sw/deleted", "/sw/kids", "/sw/same"] {
        mk(&mut writer, p, b"");
    }
    let seen = writer.last_zxid();
    writer
        .set_data("/sw/data", b"changed", -1)
        .unwrap()
        .unwrap();
    writer.delete("/sw/deleted", -1).unwrap().unwrap();
    mk(&mut writer, "/sw/kids/k", b"");
    mk(&mut writer, "/sw/born", b"");

    let mut c = server.client();
    let req = Request::SetWatches(SetWatches2 {
        relative_zxid: seen,
        data_watches: vec!["/sw/data".into(), "/sw/deleted".into(), "/sw/same".into()],
        exist_watches: vec!["/sw/born".into(), "/sw/unborn".into()],
        child_watches: vec!["/sw/kids".into()],
        ..SetWatches2::default()
    });
    let (h, reply) = c.call(req).unwrap();
    assert_eq!((h.xid, h.err, reply), (xid::SET_WATCHES, 0, Reply::Empty));
    let events = drain_events(&mut c);
    let mut got = kinds(&events);
    got.sort();
    let mut want = vec![
        (ev::NODE_CREATED, "/sw/born".to_owned()),
        (ev::NODE_DELETED, "/sw/deleted".to_owned()),
        (ev::NODE_DATA_CHANGED, "/sw/data".to_owned()),
        (ev::NODE_CHILDREN_CHANGED, "/sw/kids".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    // Events replayed by setWatches carry no transaction: zxid -1, as in ZooKeeper.
    assert!(events.iter().all(|(h, _)| h.zxid == -1), "{events:?}");

    // The unchanged ones were re-armed.
    writer.set_data("/sw/same", b"now", -1).unwrap().unwrap();
    mk(&mut writer, "/sw/unborn", b"");
    let mut later: Vec<_> = (0..2)
        .map(|_| {
            next_event(&mut c, Duration::from_secs(5))
                .expect("re-armed watch fired")
                .1
        })
        .map(|e| (e.type_, e.path))
        .collect();
    later.sort();
    assert_eq!(
        later,
        vec![
            (ev::NODE_CREATED, "/sw/unborn".to_owned()),
            (ev::NODE_DATA_CHANGED, "/sw/same".to_owned())
        ]
    );
}

/// setWatches2 (105) also restores persistent and recursive watches, here on the same
/// session re-attached from a new connection.
#[test]
fn set_watches2_restores_persistent_watches_after_reattach() {
    let server = TestServer::start();
    let mut writer = server.client();
    mk(&mut writer, "/sw2", b"");
    let old = server.client();
    let (id, passwd) = (old.session_id(), old.passwd().to_vec());
    let seen = writer.last_zxid();
    writer.set_data("/sw2", b"missed", -1).unwrap().unwrap();

    let mut c = zabd::client::Client::reconnect(server.addr(), id, &passwd, 30_000).unwrap();
    let req = Request::SetWatches2(SetWatches2 {
        relative_zxid: seen,
        data_watches: vec!["/sw2".into()],
        persistent_watches: vec!["/sw2".into()],
        persistent_recursive_watches: vec!["/sw2".into()],
        ..SetWatches2::default()
    });
    let (h, _) = c.call(req).unwrap();
    assert_eq!(h.err, 0);
    assert_eq!(
        kinds(&drain_events(&mut c)),
        vec![(ev::NODE_DATA_CHANGED, "/sw2".to_owned())]
    );
    // Persistent on /sw2 (children changed) and recursive (the grandchild's creation).
    mk(&mut writer, "/sw2/a", b"");
    mk(&mut writer, "/sw2/a/b", b"");
    writer.set_data("/sw2", b"again", -1).unwrap().unwrap();
    c.sync("/").unwrap().unwrap();
    let got = kinds(&drain_events(&mut c));
    assert_eq!(
        got,
        vec![
            (ev::NODE_CREATED, "/sw2/a".to_owned()),
            (ev::NODE_CHILDREN_CHANGED, "/sw2".to_owned()),
            (ev::NODE_CREATED, "/sw2/a/b".to_owned()),
            (ev::NODE_DATA_CHANGED, "/sw2".to_owned()),
        ]
    );
}

#[test]
fn get_ephemerals_by_prefix() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut other = server.client();
    mk(&mut c, "/ge", b"");
    for p in ["/ge/one", "/ge/two", "/gex"] {
        c.create(p, b"", &open(), create_mode::EPHEMERAL)
            .unwrap()
            .unwrap();
    }
    other
        .create("/ge/other", b"", &open(), create_mode::EPHEMERAL)
        .unwrap()
        .unwrap();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(c.get_ephemerals("/").unwrap().unwrap()),
        vec!["/ge/one", "/ge/two", "/gex"]
    );
    // A plain string prefix, not a path prefix.
    assert_eq!(
        sorted(c.get_ephemerals("/ge").unwrap().unwrap()),
        vec!["/ge/one", "/ge/two", "/gex"]
    );
    assert_eq!(
        sorted(c.get_ephemerals("/ge/").unwrap().unwrap()),
        vec!["/ge/one", "/ge/two"]
    );
    assert_eq!(c.get_ephemerals("/zz").unwrap(), Ok(vec![]));
    assert_eq!(
        other.get_ephemerals("/").unwrap(),
        Ok(vec!["/ge/other".to_owned()])
    );
}

#[test]
fn who_am_i_and_digest_auth() {
    let server = TestServer::start();
    let mut c = server.client();
    let infos = c.who_am_i().unwrap().unwrap();
    let pairs = |infos: Vec<zabd::jute::data::ClientInfo>| {
        infos
            .into_iter()
            .map(|i| (i.auth_scheme, i.user))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(infos),
        vec![("ip".to_owned(), "127.0.0.1".to_owned())]
    );
    let (h, reply) = c
        .call(Request::Auth(zabd::jute::proto::AuthPacket {
            type_: 0,
            scheme: "digest".into(),
            auth: Bytes::from_static(b"alice:secret"),
        }))
        .unwrap();
    assert_eq!((h.xid, h.err, reply), (xid::AUTH, 0, Reply::Empty));
    // A digest never fails: a wrong password just adds another identity.
    assert_eq!(c.add_auth("digest", b"bob:whatever").unwrap(), Ok(()));
    let infos = c.who_am_i().unwrap().unwrap();
    assert_eq!(
        pairs(infos),
        vec![
            ("ip".to_owned(), "127.0.0.1".to_owned()),
            ("digest".to_owned(), "alice".to_owned()),
            ("digest".to_owned(), "bob".to_owned()),
        ]
    );
    assert_works(&mut c);
}

#[test]
fn auth_with_an_unknown_scheme_gets_auth_failed_then_close() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut other = server.client();
    let (h, _) = c
        .call(Request::Auth(zabd::jute::proto::AuthPacket {
            type_: 0,
            scheme: "kerberos-ish".into(),
            auth: Bytes::from_static(b"x"),
        }))
        .unwrap();
    assert_eq!((h.xid, h.err), (xid::AUTH, Code::AuthFailed.as_i32()));
    assert!(
        c.wait_closed(Duration::from_secs(5)).unwrap(),
        "the connection must close"
    );
    assert_works(&mut other);
}

#[test]
fn get_acl_and_set_acl_errors() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/acl", b"");
    let (acl, stat) = c.get_acl("/acl").unwrap().unwrap();
    assert_eq!((acl, stat.aversion), (open(), 0));
    // Empty, unknown scheme, malformed ids: InvalidACL.
    for bad in [
        vec![],
        vec![Acl::new(perms::ALL, "nosuch", "x")],
        vec![Acl::new(perms::ALL, "digest", "no-hash")],
        vec![Acl::new(perms::ALL, "ip", "300.0.0.1")],
        vec![Acl::new(perms::ALL, "ip", "10.0.0.0/33")],
        vec![Acl::new(perms::ALL, "world", "someone")],
    ] {
        assert_eq!(
            c.set_acl("/acl", &bad, -1).unwrap(),
            Err(Code::InvalidAcl),
            "{bad:?}"
        );
        assert_eq!(
            c.create("/acl/x", b"", &bad, 0).unwrap(),
            Err(Code::InvalidAcl),
            "{bad:?}"
        );
    }
    // Duplicates collapse.
    let dup = vec![
        Acl::new(perms::READ, "world", "anyone"),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    let stat = c.set_acl("/acl", &dup, 0).unwrap().unwrap();
    assert_eq!(stat.aversion, 1);
    assert_eq!(
        c.get_acl("/acl").unwrap().unwrap().0,
        vec![Acl::new(perms::READ, "world", "anyone")]
    );
}

/// The container manager (znode.container.checkIntervalMs, here 50 ms) deletes a container
/// once its last child is gone (never one that never had a child), and a childless TTL node
/// once its TTL has passed since its last change.
#[test]
fn containers_and_ttl_nodes_are_cleaned_up() {
    let server = TestServer::with(|c| {
        c.container_check_interval_ms = 50;
        c.extended_types_enabled = true;
    });
    let mut c = server.client();
    let container = |path: &str| {
        Request::Create(
            op::CREATE_CONTAINER,
            CreateRequest {
                path: path.into(),
                data: None,
                acl: open(),
                flags: create_mode::CONTAINER,
            },
        )
    };
    assert_eq!(c.call(container("/box")).unwrap().0.err, 0);
    assert_eq!(c.call(container("/never")).unwrap().0.err, 0);
    mk(&mut c, "/box/item", b"");
    let ttl = Request::CreateTtl(zabd::jute::proto::CreateTtlRequest {
        path: "/ttl".into(),
        data: None,
        acl: open(),
        flags: create_mode::PERSISTENT_WITH_TTL,
        ttl: 100,
    });
    assert_eq!(c.call(ttl).unwrap().0.err, 0);
    let watcher_deadline = std::time::Instant::now() + Duration::from_secs(10);
    c.exists("/box", true).unwrap().unwrap();
    c.exists("/ttl", true).unwrap().unwrap();
    // A container with a child stays.
    std::thread::sleep(Duration::from_millis(200));
    assert!(c.exists("/box", false).unwrap().is_ok());
    c.delete("/box/item", -1).unwrap().unwrap();
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let left = watcher_deadline.saturating_duration_since(std::time::Instant::now());
        let (_, e) =
            next_event(&mut c, left).expect("the container and TTL node were never removed");
        assert_eq!(e.type_, ev::NODE_DELETED, "{e:?}");
        deleted.push(e.path);
    }
    deleted.sort();
    assert_eq!(deleted, vec!["/box", "/ttl"]);
    assert!(c.exists("/box", false).unwrap().is_err());
    assert!(c.exists("/ttl", false).unwrap().is_err());
    // A container that never had a child is left alone.
    assert!(c.exists("/never", false).unwrap().is_ok());
}

/// An out-of-range watcher type or addWatch mode: ZooKeeper's `WatcherType.fromInt` and
/// `WatcherMode.fromZooDef` throw, FinalRequestProcessor turns any such exception into
/// MarshallingError, and the connection goes on.
#[test]
fn invalid_watch_types_get_marshalling_error() {
    let server = TestServer::start();
    let mut c = server.client();
    mk(&mut c, "/wt", b"");
    c.get_data("/wt", true).unwrap().unwrap();
    let watches = |path: &str, ty: i32| WatchesRequest {
        path: path.into(),
        type_: ty,
    };
    let mut codes = Vec::new();
    for req in [
        Request::CheckWatches(watches("/wt", 0)),
        Request::RemoveWatches(watches("/wt", 6)),
        Request::AddWatch(AddWatchRequest {
            path: "/wt".into(),
            mode: 2,
        }),
    ] {
        codes.push(c.call(req).unwrap().0.err);
    }
    assert_works(&mut c);
    assert_eq!(codes, vec![Code::MarshallingError.as_i32(); 3]);
}
