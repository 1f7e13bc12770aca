//! Regression tests for the ZooKeeper CVEs that concern a server's client port, one per CVE,
//! against in-process servers on 127.0.0.1 (`zabd::threads::run_in_memory`) driven by
//! `zabd::client::Client` and raw sockets.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zabd::client::{Client, Frame};
use zabd::config::{Config, FourLetterWhitelist};
use zabd::jute::data::{perms, Acl};
use zabd::jute::proto::{
    add_watch_mode, create_mode, event_type, op, Code, CreateRequest, PathRequest,
    PathWatchRequest, Request, WatcherEvent,
};
use zabd::jute::Jute;
use zabd::threads::{run_in_memory, ServerHandle};

const WAIT: Duration = Duration::from_secs(10);

fn start(whitelist: FourLetterWhitelist) -> ServerHandle {
    run_in_memory(Config {
        client_port: 0,
        client_port_address: Some("127.0.0.1".to_owned()),
        four_letter_whitelist: whitelist,
        ..Config::default()
    })
    .expect("start zabd")
}

fn client(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr, 30_000).expect("connect");
    c.set_io_timeout(WAIT).unwrap();
    c
}

fn authed(addr: SocketAddr, user_password: &str) -> Client {
    let mut c = client(addr);
    c.add_auth("digest", user_password.as_bytes())
        .unwrap()
        .unwrap();
    c
}

/// `user:base64(sha1(user:password))`, computed here rather than with zabd's own code.
fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let hash = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// CVE-2019-0201: getACL disclosed the digest (user:hash) of every ACL entry to anyone, and
/// the hash can be brute-forced offline. Fixed ZooKeeper answers getACL only with READ or
/// ADMIN on the node (NoAuth otherwise), and without ADMIN shows each digest id as `user:x`.
#[test]
fn cve_2019_0201() {
    let server = start(FourLetterWhitelist::All);
    let addr = server.local_addr();
    let alice_id = digest_id("alice", "secret");
    let bob_id = digest_id("bob", "hunter2");
    let hash = alice_id.split_once(':').unwrap().1.to_owned();
    let mut alice = authed(addr, "alice:secret");
    let cases: [(&str, Vec<Acl>); 3] = [
        // Readable by anyone, administered by alice: masked for anyone else.
        (
            "/read",
            vec![
                Acl::new(perms::ALL, "digest", &alice_id),
                Acl::new(perms::READ, "digest", &bob_id),
                Acl::new(perms::READ, "world", "anyone"),
                Acl::new(perms::READ, "ip", "10.0.0.0/8"),
            ],
        ),
        // Neither READ nor ADMIN for anyone else: NoAuth.
        (
            "/none",
            vec![
                Acl::new(perms::ALL, "digest", &alice_id),
                Acl::new(
                    perms::WRITE | perms::CREATE | perms::DELETE,
                    "world",
                    "anyone",
                ),
            ],
        ),
        // ADMIN for anyone: the real ids (an administrator may see what it may change).
        (
            "/admin",
            vec![
                Acl::new(perms::ALL, "digest", &alice_id),
                Acl::new(perms::ADMIN, "world", "anyone"),
            ],
        ),
    ];
    for (path, acl) in &cases {
        alice
            .create(path, b"", acl, create_mode::PERSISTENT)
            .unwrap()
            .unwrap();
    }
    let mut anon = client(addr);
    let mut bob = authed(addr, "bob:hunter2");

    let (shown, stat) = anon.get_acl("/read").unwrap().unwrap();
    assert_eq!(
        shown,
        vec![
            Acl::new(perms::ALL, "digest", "alice:x"),
            Acl::new(perms::READ, "digest", "bob:x"),
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::READ, "ip", "10.0.0.0/8"),
        ],
        "without ADMIN every digest is masked, other schemes are shown"
    );
    assert_eq!(stat.aversion, 0);
    // Holding READ through one's own digest does not unmask anything either.
    assert_eq!(bob.get_acl("/read").unwrap().unwrap().0, shown);
    assert_eq!(anon.get_acl("/none").unwrap(), Err(Code::NoAuth));
    assert_eq!(bob.get_acl("/none").unwrap(), Err(Code::NoAuth));
    assert_eq!(anon.get_acl("/admin").unwrap().unwrap().0, cases[2].1);
    for (path, acl) in &cases {
        assert_eq!(
            &alice.get_acl(path).unwrap().unwrap().0,
            acl,
            "the owner sees {path}"
        );
    }
    assert_eq!(anon.get_acl("/missing").unwrap(), Err(Code::NoNode));

    // On the wire: no byte of the hash in any reply a non-administrator gets.
    for path in ["/read", "/none"] {
        let mut body = Vec::new();
        PathRequest { path: path.into() }.put(&mut body);
        anon.send_raw(77, op::GET_ACL, &body).unwrap();
        let payload = anon.recv_raw_frame().unwrap();
        let text = String::from_utf8_lossy(&payload);
        assert!(!text.contains(&hash), "{path}: the hash went out: {text:?}");
    }
    assert!(anon.get_data("/read", false).unwrap().is_ok());
}

/// Events the watcher received, up to and including one about `fence`.
fn events_until(c: &mut Client, fence: &str) -> Vec<(i32, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, WatcherEvent { type_, path, .. }) = c
            .wait_event(left)
            .unwrap()
            .unwrap_or_else(|| panic!("no event about {fence}; got {got:?}"));
        let done = path == fence;
        got.push((type_, path));
        if done {
            return got;
        }
    }
}

/// CVE-2024-23944: a persistent recursive watch (addWatch, 3.6+) delivered events about every
/// node below the watched one, whatever their ACL, disclosing the paths (and the existence) of
/// nodes the watcher may not read. Fixed ZooKeeper checks READ on the node an event is about,
/// at delivery, for every watch.
#[test]
fn cve_2024_23944() {
    let server = start(FourLetterWhitelist::All);
    let addr = server.local_addr();
    let alice_id = digest_id("alice", "secret");
    let private = vec![Acl::new(perms::ALL, "digest", &alice_id)];
    let open = Acl::open_unsafe();
    let mut alice = authed(addr, "alice:secret");
    alice.create("/w", b"", &open, 0).unwrap().unwrap();
    let mut watcher = client(addr);
    watcher
        .add_watch("/w", add_watch_mode::PERSISTENT_RECURSIVE)
        .unwrap()
        .unwrap();

    alice.create("/w/open", b"", &open, 0).unwrap().unwrap();
    // Nodes born unreadable: created, changed, deleted; nothing may reach the watcher.
    alice
        .create("/w/secret", b"s", &private, 0)
        .unwrap()
        .unwrap();
    alice.set_data("/w/secret", b"t", -1).unwrap().unwrap();
    alice
        .create("/w/open/deep", b"", &private, 0)
        .unwrap()
        .unwrap();
    alice.delete("/w/open/deep", -1).unwrap().unwrap();
    alice.delete("/w/secret", -1).unwrap().unwrap();
    alice
        .create("/w/eph", b"", &private, create_mode::EPHEMERAL_SEQUENTIAL)
        .unwrap()
        .unwrap();
    // A node that becomes unreadable: its later changes are not reported.
    alice.create("/w/later", b"", &open, 0).unwrap().unwrap();
    alice.set_acl("/w/later", &private, -1).unwrap().unwrap();
    alice.set_data("/w/later", b"x", -1).unwrap().unwrap();
    // A multi mixing both kinds: only the readable node is reported.
    let create = |path: &str, acl: &[Acl]| {
        Request::Create(
            op::CREATE,
            CreateRequest {
                path: path.into(),
                data: None,
                acl: acl.to_vec(),
                flags: 0,
            },
        )
    };
    alice
        .multi(vec![
            create("/w/m-secret", &private),
            create("/w/m-open", &open),
        ])
        .unwrap()
        .unwrap();
    alice.create("/w/fence", b"", &open, 0).unwrap().unwrap();
    let got = events_until(&mut watcher, "/w/fence");
    let created = event_type::NODE_CREATED;
    assert_eq!(
        got,
        vec![
            (created, "/w/open".to_owned()),
            (created, "/w/later".to_owned()),
            (created, "/w/m-open".to_owned()),
            (created, "/w/fence".to_owned()),
        ],
        "no event about a node the watcher may not READ"
    );
    // The session that closes takes its ephemeral with it: still nothing about it.
    let eph = alice.get_children("/w", false).unwrap().unwrap();
    assert!(eph.iter().any(|c| c.starts_with("eph")));
    alice.close().unwrap().unwrap();
    let mut alice = authed(addr, "alice:secret");
    alice.create("/w/fence2", b"", &open, 0).unwrap().unwrap();
    assert_eq!(
        events_until(&mut watcher, "/w/fence2"),
        vec![(created, "/w/fence2".to_owned())],
        "the ephemeral's deletion is not reported either"
    );
    // With alice's credentials the same watch reports the private nodes.
    watcher
        .add_auth("digest", b"alice:secret")
        .unwrap()
        .unwrap();
    alice.set_data("/w/later", b"y", -1).unwrap().unwrap();
    alice.create("/w/fence3", b"", &open, 0).unwrap().unwrap();
    assert_eq!(
        events_until(&mut watcher, "/w/fence3"),
        vec![
            (event_type::NODE_DATA_CHANGED, "/w/later".to_owned()),
            (created, "/w/fence3".to_owned()),
        ]
    );
}

/// Every line of a wchc/wchp answer that names a path (they are indented in wchc).
fn paths_in(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// CVE-2017-5637: wchp and wchc walk every watch of the server; on a server with many watches
/// anyone could make it spend its time answering them (a denial of service). Fixed ZooKeeper
/// runs four-letter words only when `4lw.commands.whitelist` names them (default: srvr only).
/// zabd: refused when not listed; with "*" they answer in full, and a server holding many
/// watches keeps serving other clients while it answers them.
#[test]
fn cve_2017_5637() {
    // Not listed (the default whitelist, and an explicit one without them): refused.
    for whitelist in [
        Config::default().four_letter_whitelist,
        FourLetterWhitelist::Only(vec!["srvr".into(), "ruok".into(), "wchs".into()]),
    ] {
        let server = start(whitelist);
        let addr = server.local_addr();
        for word in ["wchp", "wchc"] {
            assert_eq!(
                four_letter(addr, word),
                format!("{word} is not executed because it is not in the whitelist.\n")
            );
        }
        assert!(four_letter(addr, "srvr").starts_with("Zookeeper version:"));
    }

    // "*": they run, against a server holding many watches.
    let server = start(FourLetterWhitelist::All);
    let addr = server.local_addr();
    const SESSIONS: usize = 4;
    const PATHS: usize = 2000;
    let mut watchers: Vec<Client> = (0..SESSIONS).map(|_| client(addr)).collect();
    for w in &mut watchers {
        // exists with a watch on a missing node registers a data watch: pipelined.
        for i in 0..PATHS {
            let req = Request::Exists(PathWatchRequest {
                path: format!("/n{i}"),
                watch: true,
            });
            w.send(i as i32 + 1, &req).unwrap();
        }
        for _ in 0..PATHS {
            match w.recv().unwrap() {
                Frame::Reply { header, .. } => {
                    assert_eq!(header.err, Code::NoNode.as_i32())
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(
        four_letter(addr, "wchs").lines().nth(1),
        Some(format!("Total watches:{}", SESSIONS * PATHS).as_str())
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let askers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let expected: BTreeSet<String> = (0..PATHS).map(|i| format!("/n{i}")).collect();
                while !stop.load(Ordering::Relaxed) {
                    for word in ["wchp", "wchc"] {
                        let text = four_letter(addr, word);
                        assert_eq!(paths_in(&text), expected, "{word} lists every watched path");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Meanwhile an ordinary client keeps getting answers, promptly.
    let mut user = client(addr);
    user.create("/u", b"v", &Acl::open_unsafe(), 0)
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while answered.load(Ordering::Relaxed) < 20 || calls < 200 {
        let t = Instant::now();
        let (data, _) = user.get_data("/u", false).unwrap().unwrap();
        assert_eq!(data.as_deref(), Some(&b"v"[..]));
        slowest = slowest.max(t.elapsed());
        calls += 1;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the wch* answers never came"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for a in askers {
        a.join().expect("every wchp/wchc answer was complete");
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a getData took {slowest:?} while wchp/wchc were answered"
    );
    // The watches are intact: one setData on a watched path reaches every watcher.
    user.create("/n7", b"", &Acl::open_unsafe(), 0)
        .unwrap()
        .unwrap();
    for w in &mut watchers {
        let (_, e) = w.wait_event(WAIT).unwrap().expect("the watch fires");
        assert_eq!(
            (e.type_, e.path.as_str()),
            (event_type::NODE_CREATED, "/n7")
        );
    }
}
