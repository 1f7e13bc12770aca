//! ACLs as ZooKeeper enforces them: the world, digest (user:base64(sha1(user:password))), ip
//! (exact and CIDR) and auth schemes, the super user of DigestAuthenticationProvider.superDigest,
//! NoAuth for each operation type (exists needs READ since ZOOKEEPER-2590, in 3.8 and 3.9;
//! sync needs nothing; deleting needs DELETE on the parent only), and the two
//! CVE fixes: CVE-2019-0201 (getACL masks digests without ADMIN and needs READ or ADMIN) and
//! CVE-2024-23944 (watch events, recursive ones included, only reach sessions that may READ the
//! node).

use std::time::Duration;

use zabd::client::{Client, Reply};
use zabd::jute::data::{perms, Acl};
use zabd::jute::proto::{
    add_watch_mode, create_mode, event_type as ev, CheckVersionRequest, Code, MultiResult,
    PathRequest, PathWatchRequest, Request,
};

use crate::support::{digest_id, drain_events, mk, next_event, open, TestServer};

fn world(p: i32) -> Vec<Acl> {
    vec![Acl::new(p, "world", "anyone")]
}

fn alice_only() -> Vec<Acl> {
    vec![Acl::new(
        perms::ALL,
        "digest",
        &digest_id("alice", "secret"),
    )]
}

fn authed(server: &TestServer, user_password: &str) -> Client {
    let mut c = server.client();
    c.add_auth("digest", user_password.as_bytes())
        .unwrap()
        .unwrap();
    c
}

fn code<T: std::fmt::Debug>(r: std::io::Result<Result<T, Code>>) -> Code {
    match r.expect("transport") {
        Ok(_) => Code::Ok,
        Err(code) => code,
    }
}

fn multi_check(c: &mut Client, path: &str) -> Vec<MultiResult> {
    let req = Request::Multi(vec![Request::Check(CheckVersionRequest {
        path: path.into(),
        version: -1,
    })]);
    match c.call(req).unwrap().1 {
        Reply::Multi(r) => r,
        other => panic!("{other:?}"),
    }
}

fn multi_read(c: &mut Client, path: &str) -> Vec<MultiResult> {
    let req = Request::MultiRead(vec![
        Request::GetData(PathWatchRequest {
            path: path.into(),
            watch: false,
        }),
        Request::GetChildren(PathWatchRequest {
            path: path.into(),
            watch: false,
        }),
    ]);
    match c.call(req).unwrap().1 {
        Reply::Multi(r) => r,
        other => panic!("{other:?}"),
    }
}

/// For each permission, a node granting everything else: exactly the operations that need
/// the missing permission get NoAuth.
#[test]
fn each_operation_needs_its_permission() {
    let server = TestServer::start();
    let mut admin = server.client();
    let mut c = server.client();
    let no = Code::NoAuth;
    let ok = Code::Ok;
    for (missing, name) in [
        (perms::READ, "read"),
        (perms::WRITE, "write"),
        (perms::CREATE, "create"),
        (perms::DELETE, "delete"),
        (perms::ADMIN, "admin"),
    ] {
        let node = format!("/no-{name}");
        // Children made while everything was allowed, then the ACL narrowed.
        mk(&mut admin, &node, b"d");
        mk(&mut admin, &format!("{node}/kid"), b"");
        admin
            .set_acl(&node, &world(perms::ALL & !missing), -1)
            .unwrap()
            .unwrap();
        let expect = |needs: i32| if needs & missing != 0 { no } else { ok };

        assert_eq!(
            code(c.get_data(&node, false)),
            expect(perms::READ),
            "getData {name}"
        );
        assert_eq!(
            code(c.get_children(&node, false)),
            expect(perms::READ),
            "getChildren {name}"
        );
        assert_eq!(
            code(c.get_children2(&node, false)),
            expect(perms::READ),
            "getChildren2 {name}"
        );
        assert_eq!(
            code(c.get_all_children_number(&node)),
            expect(perms::READ),
            "getAllChildrenNumber {name}"
        );
        let in_multi = |r: Vec<MultiResult>| match r.first() {
            Some(MultiResult::Error(code)) => *code,
            Some(_) => Code::Ok,
            None => panic!("no result"),
        };
        assert_eq!(
            in_multi(multi_check(&mut c, &node)),
            expect(perms::READ),
            "check {name}"
        );
        let reads = multi_read(&mut c, &node);
        let want = if missing == perms::READ {
            vec![MultiResult::Error(no), MultiResult::Error(no)]
        } else {
            vec![
                MultiResult::GetData(
                    Some(bytes::Bytes::from_static(b"d")),
                    c.exists(&node, false).unwrap().unwrap(),
                ),
                MultiResult::GetChildren(vec!["kid".into()]),
            ]
        };
        assert_eq!(reads, want, "multiRead {name}");
        // getACL needs READ or ADMIN: either is enough.
        assert_eq!(code(c.get_acl(&node)), ok, "getACL {name}");
        // exists needs READ on an existing node (ZOOKEEPER-2590).
        assert_eq!(
            code(c.exists(&node, false)),
            expect(perms::READ),
            "exists {name}"
        );
        assert_eq!(
            code(c.set_data(&node, b"x", -1)),
            expect(perms::WRITE),
            "setData {name}"
        );
        assert_eq!(
            code(c.create(&format!("{node}/new"), b"", &open(), 0)),
            expect(perms::CREATE),
            "create {name}"
        );
        assert_eq!(
            code(c.delete(&format!("{node}/kid"), -1)),
            expect(perms::DELETE),
            "delete {name}"
        );
        assert_eq!(
            code(c.set_acl(&node, &world(perms::ALL & !missing), -1)),
            expect(perms::ADMIN),
            "setACL {name}"
        );
    }
    // A node that grants nothing: getACL and exists are NoAuth, sync answers.
    mk(&mut admin, "/nothing", b"");
    admin.set_acl("/nothing", &world(0), -1).unwrap().unwrap();
    assert_eq!(code(c.get_acl("/nothing")), no);
    assert_eq!(code(c.exists("/nothing", false)), no);
    assert_eq!(code(c.exists("/nothing", true)), no);
    assert_eq!(
        code(c.remove_watches("/nothing", zabd::jute::proto::watcher_type::ANY)),
        Code::NoWatcher,
        "a refused exists leaves no watch"
    );
    assert_eq!(code(c.sync("/nothing")), ok);
    // Deleting a node needs DELETE on its parent only, not any permission on the node.
    assert_eq!(code(c.delete("/nothing", -1)), ok);
}

#[test]
fn digest_acl_admits_only_the_right_password() {
    let server = TestServer::start();
    let mut alice = authed(&server, "alice:secret");
    alice
        .create("/vault", b"gold", &alice_only(), 0)
        .unwrap()
        .unwrap();
    let mut stranger = server.client();
    assert_eq!(code(stranger.get_data("/vault", false)), Code::NoAuth);
    // Digest auth never fails, but a wrong password is another identity.
    let mut wrong = authed(&server, "alice:guess");
    assert_eq!(code(wrong.get_data("/vault", false)), Code::NoAuth);
    assert_eq!(code(wrong.set_data("/vault", b"", -1)), Code::NoAuth);
    let mut again = authed(&server, "alice:secret");
    assert_eq!(
        again
            .get_data("/vault", false)
            .unwrap()
            .unwrap()
            .0
            .as_deref(),
        Some(&b"gold"[..])
    );
    again.set_data("/vault", b"silver", -1).unwrap().unwrap();
    assert_eq!(
        alice.get_acl("/vault").unwrap().unwrap().0,
        alice_only(),
        "the admin sees the real digest"
    );
    // Auth added after connecting applies to later requests on the same session.
    stranger
        .add_auth("digest", b"alice:secret")
        .unwrap()
        .unwrap();
    assert_eq!(code(stranger.get_data("/vault", false)), Code::Ok);
}

#[test]
fn ip_acls_match_exact_addresses_and_cidrs() {
    let server = TestServer::start();
    let mut admin = server.client();
    let mut c = server.client();
    for (id, allowed) in [
        ("127.0.0.1", true),
        ("127.0.0.1/32", true),
        ("127.0.0.0/8", true),
        ("0.0.0.0/0", true),
        ("127.0.0.2", false),
        ("10.0.0.0/8", false),
        ("192.168.1.0/24", false),
    ] {
        let path = format!("/ip-{}", id.replace(['/', '.'], "_"));
        admin.create(&path, b"", &open(), 0).unwrap().unwrap();
        admin
            .set_acl(&path, &[Acl::new(perms::ALL, "ip", id)], -1)
            .unwrap()
            .unwrap();
        let want = if allowed { Code::Ok } else { Code::NoAuth };
        assert_eq!(code(c.get_data(&path, false)), want, "ip:{id}");
        assert_eq!(code(c.set_data(&path, b"x", -1)), want, "ip:{id}");
    }
}

#[test]
fn the_auth_scheme_needs_an_authenticated_identity() {
    let server = TestServer::start();
    let creator_all = vec![Acl::new(perms::ALL, "auth", "")];
    let mut c = server.client();
    // ip identities do not count as authenticated.
    assert_eq!(
        code(c.create("/mine", b"", &creator_all, 0)),
        Code::InvalidAcl
    );
    assert_eq!(code(c.exists("/mine", false)), Code::NoNode);
    mk(&mut c, "/other", b"");
    assert_eq!(
        code(c.set_acl("/other", &creator_all, -1)),
        Code::InvalidAcl
    );

    c.add_auth("digest", b"bob:pw").unwrap().unwrap();
    c.add_auth("digest", b"carol:pw").unwrap().unwrap();
    c.create("/mine", b"", &creator_all, 0).unwrap().unwrap();
    let (acl, _) = c.get_acl("/mine").unwrap().unwrap();
    assert_eq!(
        acl,
        vec![
            Acl::new(perms::ALL, "digest", &digest_id("bob", "pw")),
            Acl::new(perms::ALL, "digest", &digest_id("carol", "pw")),
        ],
        "auth expands to every digest identity of the session"
    );
    let mut carol = authed(&server, "carol:pw");
    assert_eq!(code(carol.get_data("/mine", false)), Code::Ok);
    let mut nobody = server.client();
    assert_eq!(code(nobody.get_data("/mine", false)), Code::NoAuth);
}

#[test]
fn the_super_digest_user_may_do_anything() {
    let super_digest = digest_id("super", "hunter2");
    let server = TestServer::with(|c| c.super_digest = Some(super_digest.clone()));
    let mut alice = authed(&server, "alice:secret");
    alice
        .create("/locked", b"x", &alice_only(), 0)
        .unwrap()
        .unwrap();
    mk(&mut alice, "/locked/kid", b"");
    alice
        .set_acl(
            "/locked",
            &[Acl::new(
                perms::READ,
                "digest",
                &digest_id("alice", "secret"),
            )],
            -1,
        )
        .unwrap()
        .unwrap();

    let mut not_super = authed(&server, "super:wrong");
    assert_eq!(code(not_super.get_data("/locked", false)), Code::NoAuth);

    let mut root = authed(&server, "super:hunter2");
    let infos: Vec<(String, String)> = root
        .who_am_i()
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|i| (i.auth_scheme, i.user))
        .collect();
    assert_eq!(
        infos,
        vec![
            ("ip".into(), "127.0.0.1".into()),
            ("super".into(), String::new()),
            ("digest".into(), "super".into()),
        ]
    );
    assert_eq!(code(root.get_data("/locked", false)), Code::Ok);
    assert_eq!(code(root.set_data("/locked", b"y", -1)), Code::Ok);
    assert_eq!(code(root.create("/locked/new", b"", &open(), 0)), Code::Ok);
    assert_eq!(code(root.delete("/locked/kid", -1)), Code::Ok);
    // With ADMIN-less ACLs, super still sees the real digest and may change the ACL.
    let (acl, _) = root.get_acl("/locked").unwrap().unwrap();
    assert_eq!(acl[0].id.id, digest_id("alice", "secret"));
    assert_eq!(code(root.set_acl("/locked", &open(), -1)), Code::Ok);
    assert_eq!(code(not_super.get_data("/locked", false)), Code::Ok);
}

/// CVE-2019-0201: without ADMIN, getACL shows digest ids as `user:x`; without READ or ADMIN it
/// is NoAuth.
#[test]
fn cve_2019_0201_get_acl_hides_digests_without_admin() {
    let server = TestServer::start();
    let mut alice = authed(&server, "alice:secret");
    let alice_digest = digest_id("alice", "secret");
    let readable = vec![
        Acl::new(perms::ALL, "digest", &alice_digest),
        Acl::new(perms::READ, "world", "anyone"),
    ];
    alice.create("/shown", b"", &readable, 0).unwrap().unwrap();
    let writable = vec![
        Acl::new(perms::ALL, "digest", &alice_digest),
        Acl::new(
            perms::WRITE | perms::CREATE | perms::DELETE,
            "world",
            "anyone",
        ),
    ];
    alice.create("/hidden", b"", &writable, 0).unwrap().unwrap();

    let mut anon = server.client();
    let (acl, stat) = anon.get_acl("/shown").unwrap().unwrap();
    assert_eq!(
        acl,
        vec![
            Acl::new(perms::ALL, "digest", "alice:x"),
            Acl::new(perms::READ, "world", "anyone"),
        ]
    );
    assert_eq!(stat.aversion, 0);
    assert_eq!(anon.get_acl("/hidden").unwrap(), Err(Code::NoAuth));
    // ADMIN shows the real thing.
    assert_eq!(alice.get_acl("/shown").unwrap().unwrap().0, readable);
    assert_eq!(alice.get_acl("/hidden").unwrap().unwrap().0, writable);
    // On the wire too, no part of the hash leaves the server.
    let (h, reply) = anon
        .call(Request::GetAcl(PathRequest {
            path: "/shown".into(),
        }))
        .unwrap();
    assert_eq!(h.err, 0);
    let Reply::GetAcl(acl, _) = reply else {
        panic!("{reply:?}");
    };
    assert!(
        acl.iter().all(|a| !a.id.id.contains(&alice_digest[6..])),
        "hash leaked: {acl:?}"
    );
}

/// CVE-2024-23944: a persistent recursive watch on a parent does not deliver events about a
/// child the watcher may not READ (nor do exists watches on such a node).
#[test]
fn cve_2024_23944_recursive_watch_skips_unreadable_children() {
    let server = TestServer::start();
    let mut alice = authed(&server, "alice:secret");
    mk(&mut alice, "/w", b"");
    let mut watcher = server.client();
    watcher
        .add_watch("/w", add_watch_mode::PERSISTENT_RECURSIVE)
        .unwrap()
        .unwrap();
    // A plain exists watch on a node that will be born unreadable.
    assert_eq!(
        watcher.exists("/w/secret2", true).unwrap(),
        Err(Code::NoNode)
    );

    mk(&mut alice, "/w/open", b"");
    alice
        .create("/w/secret", b"s", &alice_only(), 0)
        .unwrap()
        .unwrap();
    alice.set_data("/w/secret", b"t", -1).unwrap().unwrap();
    alice
        .create("/w/secret2", b"", &alice_only(), create_mode::PERSISTENT)
        .unwrap()
        .unwrap();
    alice.delete("/w/secret", -1).unwrap().unwrap();
    alice.set_data("/w/open", b"o", -1).unwrap().unwrap();
    // A fence: once this event is in, every earlier event has been delivered or dropped.
    mk(&mut alice, "/w/fence", b"");
    let mut got = Vec::new();
    while !got.iter().any(|(_, p): &(i32, String)| p == "/w/fence") {
        let (_, e) = next_event(&mut watcher, Duration::from_secs(5)).expect("the fence event");
        got.push((e.type_, e.path));
    }
    assert_eq!(
        got,
        vec![
            (ev::NODE_CREATED, "/w/open".to_owned()),
            (ev::NODE_DATA_CHANGED, "/w/open".to_owned()),
            (ev::NODE_CREATED, "/w/fence".to_owned()),
        ],
        "no event about /w/secret or /w/secret2 may reach a session without READ"
    );
    // The same watcher with alice's credentials sees them.
    watcher
        .add_auth("digest", b"alice:secret")
        .unwrap()
        .unwrap();
    alice.set_data("/w/secret2", b"now", -1).unwrap().unwrap();
    let (_, e) = next_event(&mut watcher, Duration::from_secs(5)).expect("readable now");
    assert_eq!(
        (e.type_, e.path.as_str()),
        (ev::NODE_DATA_CHANGED, "/w/secret2")
    );
    assert!(drain_events(&mut watcher).is_empty());
}
