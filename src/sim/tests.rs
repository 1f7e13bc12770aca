//! Ensemble behaviour in the simulator: the production core, deterministic per seed.

use super::*;
use crate::jute::data::{perms, Acl, Id};
use crate::jute::proto::{op, ConnectRequest, CreateRequest, ReplyHeader, Request};
use bytes::Bytes;

fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// What a handshake got: the session and read-only flag it was given, or `None` when the
/// server refused it (a zero session with close, or a plain close).
type Handshake = Option<(i64, Option<bool>)>;

/// Opens connection `n` to `node` and sends a handshake for `session` (0 for a new one).
fn handshake(
    sim: &mut Sim,
    node: usize,
    n: u64,
    session: i64,
    read_only: bool,
) -> (CnxnId, Handshake) {
    let cnxn = sim_cnxn(node, n);
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    sim.client(node, Input::Accepted { cnxn, peer });
    let passwd = if session == 0 {
        Bytes::from_static(&[0; 16])
    } else {
        Bytes::copy_from_slice(&crate::session::session_password(session))
    };
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        time_out: 30_000,
        session_id: session,
        passwd,
        read_only: Some(read_only),
    };
    sim.client(node, Input::Connect { cnxn, req });
    let answer = wait_for(sim, node, 2_000, |o| match o {
        Output::Connected {
            cnxn: x,
            resp,
            close,
        } if *x == cnxn => Some((!*close).then_some((resp.session_id, resp.read_only))),
        Output::Close { cnxn: x } if *x == cnxn => Some(None),
        _ => None,
    })
    .expect("an answer to the handshake");
    (cnxn, answer)
}

/// A simulated client: one connection to one node.
struct Client {
    node: usize,
    cnxn: CnxnId,
    session: i64,
    xid: i32,
}

impl Client {
    fn connect(sim: &mut Sim, node: usize, n: u64) -> Client {
        let (cnxn, answer) = handshake(sim, node, n, 0, false);
        let (session, _) = answer.expect("session established");
        Client {
            node,
            cnxn,
            session,
            xid: 0,
        }
    }

    fn create(&mut self, sim: &mut Sim, path: &str) -> i32 {
        self.xid += 1;
        let req = Request::Create(
            op::CREATE,
            CreateRequest {
                path: path.into(),
                data: Some(Bytes::from_static(b"x")),
                acl: open_acl(),
                flags: 0,
            },
        );
        let (cnxn, xid) = (self.cnxn, self.xid);
        sim.client(self.node, Input::Request { cnxn, xid, req });
        wait_for(sim, self.node, 3_000, |o| match o {
            Output::Reply {
                cnxn: c,
                header: ReplyHeader { xid: x, err, .. },
                ..
            } if *c == cnxn && *x == xid => Some(*err),
            _ => None,
        })
        .expect("a reply")
    }
}

/// Runs the simulation until `f` matches an output of `node`.
fn wait_for<T>(
    sim: &mut Sim,
    node: usize,
    limit_ms: i64,
    mut f: impl FnMut(&Output) -> Option<T>,
) -> Option<T> {
    let deadline = sim.now_ms + limit_ms;
    let mut seen = Vec::new();
    loop {
        let outs = sim.take_client_out(node);
        let mut found = None;
        for o in outs {
            if found.is_none() {
                found = f(&o);
            }
            seen.push(o);
        }
        if found.is_some() {
            return found;
        }
        if sim.now_ms >= deadline {
            return None;
        }
        sim.run_for(5);
    }
}

fn converged(sim: &Sim, path: &str) -> bool {
    (0..sim.nodes.len()).all(|i| {
        sim.nodes[i]
            .peer
            .as_ref()
            .is_none_or(|p| p.tree().node(path).is_some())
    })
}

fn assert_one_leader(sim: &Sim) -> usize {
    let leaders: Vec<usize> = (0..sim.nodes.len())
        .filter(|&i| sim.state(i) == Some(ServerState::Leading))
        .collect();
    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
    leaders[0]
}

fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

#[test]
fn three_servers_elect_one_leader_and_serve() {
    init_log();
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => (1..=50).collect(),
    };
    for seed in seeds {
        let mut sim = Sim::new(seed, 3, 0);
        assert!(
            sim.run_until_serving(20_000),
            "seed {seed}: ensemble did not form"
        );
        let leader = assert_one_leader(&sim);
        // The highest id wins a cold start: equal epochs and zxids.
        assert_eq!(leader, 2, "seed {seed}");
        for i in 0..3 {
            if i != leader {
                assert_eq!(sim.state(i), Some(ServerState::Following));
            }
        }
    }
}

#[test]
fn writes_through_a_follower_reach_every_server() {
    let mut sim = Sim::new(7, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let follower = (0..3)
        .find(|&i| sim.state(i) == Some(ServerState::Following))
        .unwrap();
    let mut c = Client::connect(&mut sim, follower, 1);
    assert!(c.session != 0);
    assert_eq!(c.create(&mut sim, "/a"), 0);
    sim.run_for(200);
    assert!(converged(&sim, "/a"));
    // Session creation and the create are the same zxids everywhere.
    let zxids: Vec<i64> = (0..3)
        .map(|i| {
            sim.nodes[i]
                .peer
                .as_ref()
                .unwrap()
                .tree()
                .last_processed_zxid()
        })
        .collect();
    assert!(zxids.iter().all(|&z| z == zxids[0]), "{zxids:x?}");
}

#[test]
fn a_new_leader_takes_over_and_keeps_committed_writes() {
    let mut sim = Sim::new(3, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let other = (leader + 1) % 3;
    let mut c = Client::connect(&mut sim, other, 1);
    for i in 0..5 {
        assert_eq!(c.create(&mut sim, &format!("/n{i}")), 0);
    }
    sim.crash(leader);
    sim.run_for(100);
    let deadline = sim.now_ms + 30_000;
    while sim.leader().is_none() && sim.now_ms < deadline {
        sim.run_for(50);
    }
    let new_leader = sim.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    let mut c2 = Client::connect(&mut sim, survivor, 2);
    assert_eq!(c2.create(&mut sim, "/after"), 0);
    for i in 0..5 {
        assert!(sim.nodes[survivor]
            .peer
            .as_ref()
            .unwrap()
            .tree()
            .node(&format!("/n{i}"))
            .is_some());
    }
    sim.start(leader);
    assert!(sim.run_until_serving(30_000));
    sim.run_for(300);
    assert!(converged(&sim, "/after"));
    assert!(converged(&sim, "/n4"));
}

fn sync_counts(sim: &Sim) -> (u64, u64, u64) {
    let l = sim.leader().expect("a leader");
    let c = sim.nodes[l].peer.as_ref().unwrap().sync_counters();
    (c.diff, c.snap, c.trunc)
}

fn wait_leader(sim: &mut Sim, limit_ms: i64) -> usize {
    let deadline = sim.now_ms + limit_ms;
    while sim.leader().is_none() && sim.now_ms < deadline {
        sim.run_for(20);
    }
    sim.leader().expect("a leader within the limit")
}

#[test]
fn a_follower_a_little_behind_catches_up_by_diff() {
    init_log();
    let mut sim = Sim::new(11, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let f = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut c = Client::connect(&mut sim, other, 1);
    assert_eq!(c.create(&mut sim, "/before"), 0);
    sim.crash(f);
    for i in 0..10 {
        assert_eq!(c.create(&mut sim, &format!("/d{i}")), 0);
    }
    let (diff0, snap0, trunc0) = sync_counts(&sim);
    sim.start(f);
    assert!(sim.run_until_serving(20_000));
    sim.run_for(200);
    let (diff1, snap1, trunc1) = sync_counts(&sim);
    assert_eq!((diff1, snap1, trunc1), (diff0 + 1, snap0, trunc0));
    assert!(converged(&sim, "/d9"));
}

#[test]
fn an_old_leaders_uncommitted_tail_is_truncated() {
    init_log();
    let mut sim = Sim::new(5, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let mut c = Client::connect(&mut sim, leader, 1);
    assert_eq!(c.create(&mut sim, "/committed"), 0);
    sim.run_for(100);
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &f in &followers {
        sim.crash(f);
    }
    // The leader logs this write but can never commit it.
    let (cnxn, xid) = (c.cnxn, 99);
    let req = Request::Create(
        op::CREATE,
        CreateRequest {
            path: "/lost".into(),
            data: None,
            acl: open_acl(),
            flags: 0,
        },
    );
    sim.client(leader, Input::Request { cnxn, xid, req });
    sim.run_for(50);
    assert!(sim.nodes[leader]
        .disk
        .log
        .iter()
        .any(|e| matches!(&e.body, TxnBody::Create(_, t) if t.path == "/lost")));
    sim.crash(leader);
    for &f in &followers {
        sim.start(f);
    }
    let new_leader = wait_leader(&mut sim, 30_000);
    assert!(followers.contains(&new_leader));
    let (_, _, trunc0) = sync_counts(&sim);
    sim.start(leader);
    assert!(sim.run_until_serving(30_000));
    sim.run_for(200);
    let (_, _, trunc1) = sync_counts(&sim);
    assert_eq!(trunc1, trunc0 + 1, "the old leader was truncated");
    for i in 0..3 {
        let tree = sim.nodes[i].peer.as_ref().unwrap().tree();
        assert!(tree.node("/committed").is_some());
        assert!(
            tree.node("/lost").is_none(),
            "node {i} kept an uncommitted txn"
        );
        assert!(!sim.nodes[i]
            .disk
            .log
            .iter()
            .any(|e| matches!(&e.body, TxnBody::Create(_, t) if t.path == "/lost")));
    }
}

#[test]
fn an_observer_serves_reads_and_forwards_writes() {
    init_log();
    let mut sim = Sim::new(21, 3, 1);
    assert!(sim.run_until_serving(20_000));
    assert_eq!(sim.state(3), Some(ServerState::Observing));
    let mut c = Client::connect(&mut sim, 3, 1);
    assert_eq!(c.create(&mut sim, "/via-observer"), 0);
    sim.run_for(200);
    assert!(converged(&sim, "/via-observer"));
    // The observer does not count: with two voters down, no quorum remains.
    let leader = assert_one_leader(&sim);
    let voters: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    sim.crash(voters[0]);
    let mut w = Client::connect(&mut sim, leader, 2);
    assert_eq!(
        w.create(&mut sim, "/two-voters"),
        0,
        "two of three voters still commit"
    );
    sim.run_for(200);
    assert!(sim.nodes[3]
        .peer
        .as_ref()
        .unwrap()
        .tree()
        .node("/two-voters")
        .is_some());
}

#[test]
fn a_session_moves_to_another_server_with_its_ephemerals() {
    init_log();
    let mut sim = Sim::new(31, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;
    let mut c = Client::connect(&mut sim, a, 1);
    c.xid += 1;
    let req = Request::Create(
        op::CREATE,
        CreateRequest {
            path: "/eph".into(),
            data: None,
            acl: open_acl(),
            flags: 1,
        },
    );
    let (cnxn, xid) = (c.cnxn, c.xid);
    sim.client(a, Input::Request { cnxn, xid, req });
    sim.run_for(100);
    sim.crash(a);
    // Reconnect to b with the same session.
    let (_, answer) = handshake(&mut sim, b, 9, c.session, false);
    assert_eq!(answer.map(|a| a.0), Some(c.session));
    // The session's timeout is 2 s here (maxSessionTimeout = 20 ticks of 100 ms).
    sim.run_for(1_000);
    assert!(
        sim.nodes[b]
            .peer
            .as_ref()
            .unwrap()
            .tree()
            .node("/eph")
            .is_some(),
        "ephemeral kept while the session lives"
    );
    // A made-up session is refused.
    assert_eq!(handshake(&mut sim, b, 10, 0x77, false).1, None);
}

#[test]
fn expired_sessions_lose_their_ephemerals_everywhere() {
    init_log();
    let mut sim = Sim::new(41, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let a = (leader + 1) % 3;
    let mut c = Client::connect(&mut sim, a, 1);
    c.xid += 1;
    let req = Request::Create(
        op::CREATE,
        CreateRequest {
            path: "/eph".into(),
            data: None,
            acl: open_acl(),
            flags: 1,
        },
    );
    let (cnxn, xid) = (c.cnxn, c.xid);
    sim.client(a, Input::Request { cnxn, xid, req });
    sim.run_for(200);
    assert!(converged(&sim, "/eph"));
    // The client goes silent: after its timeout the leader expires it.
    sim.client(a, Input::Closed { cnxn });
    sim.run_for(35_000);
    for i in 0..3 {
        assert!(
            sim.nodes[i]
                .peer
                .as_ref()
                .unwrap()
                .tree()
                .node("/eph")
                .is_none(),
            "node {i}"
        );
    }
}

#[test]
fn without_a_quorum_writes_stop_but_read_only_clients_read() {
    init_log();
    let mut sim = Sim::with_config(51, 3, 0, |c| c.read_only_mode_enabled = true);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let survivor = (leader + 1) % 3;
    let mut c = Client::connect(&mut sim, survivor, 1);
    assert_eq!(c.create(&mut sim, "/ro"), 0);
    sim.run_for(200);
    sim.crash(leader);
    sim.crash((leader + 2) % 3);
    sim.run_for(3_000);
    assert_eq!(sim.state(survivor), Some(ServerState::Looking));
    // A read-write client is turned away.
    assert_eq!(handshake(&mut sim, survivor, 5, 0, false).1, None);
    // A read-only client reads, and its writes fail with NotReadOnly.
    let (cnxn, answer) = handshake(&mut sim, survivor, 6, 0, true);
    assert_eq!(answer.map(|a| a.1), Some(Some(true)));
    let get = Request::GetData(crate::jute::proto::PathWatchRequest {
        path: "/ro".into(),
        watch: false,
    });
    sim.client(
        survivor,
        Input::Request {
            cnxn,
            xid: 1,
            req: get,
        },
    );
    let mut ro_client = Client {
        node: survivor,
        cnxn,
        session: 0,
        xid: 1,
    };
    let got = wait_for(&mut sim, survivor, 500, |o| match o {
        Output::Reply {
            cnxn: x, header, ..
        } if *x == cnxn && header.xid == 1 => Some(header.err),
        _ => None,
    });
    assert_eq!(got, Some(0));
    assert_eq!(
        ro_client.create(&mut sim, "/nope"),
        crate::jute::proto::Code::NotReadOnly.as_i32()
    );
}

#[test]
fn requests_from_an_abandoned_connection_get_session_moved() {
    init_log();
    let mut sim = Sim::new(61, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;
    let mut old = Client::connect(&mut sim, a, 1);
    assert_eq!(old.create(&mut sim, "/first"), 0);
    // The client moves to b while its connection to a still looks alive to a.
    let (cnxn, answer) = handshake(&mut sim, b, 7, old.session, false);
    assert!(answer.is_some());
    let mut new = Client {
        node: b,
        cnxn,
        session: old.session,
        xid: 100,
    };
    assert_eq!(
        old.create(&mut sim, "/from-old"),
        crate::jute::proto::Code::SessionMoved.as_i32()
    );
    assert_eq!(new.create(&mut sim, "/from-new"), 0);
    sim.run_for(200);
    assert!(converged(&sim, "/from-new"));
    assert!(sim.nodes[b]
        .peer
        .as_ref()
        .unwrap()
        .tree()
        .node("/from-old")
        .is_none());
}

#[test]
fn seven_voters_survive_three_crashes() {
    init_log();
    let mut sim = Sim::new(71, 7, 0);
    assert!(sim.run_until_serving(30_000));
    let leader = assert_one_leader(&sim);
    let mut c = Client::connect(&mut sim, (leader + 1) % 7, 1);
    assert_eq!(c.create(&mut sim, "/seven"), 0);
    // Three of seven down, the leader among them: four still form a quorum.
    sim.crash(leader);
    sim.crash((leader + 2) % 7);
    sim.crash((leader + 3) % 7);
    let new_leader = wait_leader(&mut sim, 30_000);
    assert_ne!(new_leader, leader);
    let survivor = (leader + 4) % 7;
    let mut c2 = Client::connect(&mut sim, survivor, 2);
    assert_eq!(c2.create(&mut sim, "/after-three"), 0);
    sim.run_for(300);
    assert!(converged(&sim, "/seven"));
    assert!(converged(&sim, "/after-three"));
}

/// A one-way partition: the leader still hears its followers, but what it sends waits. The
/// followers stop hearing it, elect another leader, and after healing everyone serves under
/// the new one; the checkers see nothing wrong.
#[test]
fn a_leader_nobody_hears_is_replaced() {
    let mut sim = Sim::new(21, 3, 0);
    sim.enable_checker();
    assert!(sim.run_until_serving(20_000));
    let old = sim.leader().expect("a leader");
    for to in (0..3).filter(|&t| t != old) {
        sim.stall(old, to);
    }
    sim.run_for(5_000);
    let new = sim.leader().expect("the followers elected a leader");
    assert_ne!(new, old);
    sim.heal();
    assert!(sim.run_until_serving(20_000), "all serve after healing");
    assert_eq!(sim.leader(), Some(new));
    assert!(sim.violation().is_none(), "{:?}", sim.violation());
}

// ----- the register clients' checks (workload.rs): each must be able to fail -----

mod register_checks {
    use super::super::sweep::{run_seed, SweepOptions};
    use super::super::workload::{
        check_register_history, check_session_events, reg_value, RegEvent, SeqRegCall, SeqRegister,
    };
    use crate::check::history::{History, Op, Outcome};
    use crate::check::register::{RegCall, RegRet, Register};
    use crate::check::Verdict;

    fn init() -> SeqRegister {
        SeqRegister::new(Register::created(reg_value(0)))
    }

    /// An op of `process` from `a` to `b` ms.
    fn op(process: u64, a: u64, b: u64, call: SeqRegCall, ret: RegRet) -> Op<SeqRegCall, RegRet> {
        Op {
            process,
            invoke_ns: a * 1_000_000,
            complete_ns: Some(b * 1_000_000),
            call,
            outcome: Outcome::Ok(ret),
        }
    }

    fn write(id: u64) -> SeqRegCall {
        SeqRegCall::Reg(RegCall::Write(reg_value(id)))
    }

    fn cas(expected_version: i32, id: u64) -> SeqRegCall {
        SeqRegCall::Reg(RegCall::Cas {
            expected_version,
            value: reg_value(id),
        })
    }

    fn read(min_version: i32) -> SeqRegCall {
        SeqRegCall::LaggingRead { min_version }
    }

    fn shows(id: u64, version: i32) -> RegRet {
        RegRet::Read {
            value: Some(reg_value(id)),
            version,
        }
    }

    fn written(version: i32) -> RegRet {
        RegRet::Written { version }
    }

    fn verdict(ops: Vec<Op<SeqRegCall, RegRet>>) -> Verdict {
        check_register_history(init(), &History { ops })
    }

    #[test]
    fn a_lagging_read_of_a_state_the_register_held_is_linearizable() {
        // Client 1 reads the initial state after client 0's write completed: a follower that
        // lags may answer so (its session had seen nothing newer).
        let v = verdict(vec![
            op(0, 0, 10, write(1), written(1)),
            op(1, 20, 30, read(0), shows(0, 0)),
            op(1, 40, 50, read(0), shows(1, 1)),
            op(0, 60, 70, cas(1, 2), written(2)),
            op(1, 80, 90, read(1), shows(1, 1)),
        ]);
        assert_eq!(v, Verdict::Linearizable);
    }

    #[test]
    fn a_read_older_than_the_session_saw_is_flagged() {
        let v = verdict(vec![
            op(0, 0, 10, write(1), written(1)),
            // The session saw version 1; the read may not go back to version 0.
            op(1, 20, 30, read(1), shows(0, 0)),
        ]);
        assert!(v.is_violation(), "{v:?}");
    }

    #[test]
    fn a_read_of_a_value_never_held_is_flagged() {
        let v = verdict(vec![
            op(0, 0, 10, write(1), written(1)),
            // Version 1 held value 1, never 7.
            op(1, 20, 30, read(0), shows(7, 1)),
        ]);
        assert!(v.is_violation(), "{v:?}");
        // Nor may a read show a write that failed its version check.
        let v = verdict(vec![
            op(0, 0, 10, cas(5, 1), RegRet::BadVersion),
            op(1, 20, 30, read(0), shows(1, 1)),
        ]);
        assert!(v.is_violation(), "{v:?}");
    }

    #[test]
    fn writes_out_of_real_time_order_or_lost_are_flagged() {
        // Two acknowledged writes cannot both make version 1.
        let v = verdict(vec![
            op(0, 0, 10, write(1), written(1)),
            op(1, 20, 30, write(2), written(1)),
        ]);
        assert!(v.is_violation(), "{v:?}");
        // A version-checked write on the version an acknowledged write already replaced.
        let v = verdict(vec![
            op(0, 0, 10, write(1), written(1)),
            op(1, 20, 30, cas(0, 2), written(1)),
        ]);
        assert!(v.is_violation(), "{v:?}");
        // An unknown write may apply later, or never.
        let lost = Op {
            process: 2,
            invoke_ns: 0,
            complete_ns: None,
            call: write(9),
            outcome: Outcome::Unknown,
        };
        let v = verdict(vec![
            lost,
            op(0, 10, 20, read(0), shows(0, 0)),
            op(0, 30, 40, read(0), shows(9, 1)),
        ]);
        assert_eq!(v, Verdict::Linearizable);
    }

    fn read_ev(version: i32, watch: bool) -> RegEvent {
        RegEvent::Read { version, watch }
    }

    #[test]
    fn session_order_flags_reads_behind_what_the_session_saw() {
        use RegEvent::*;
        let found = check_session_events(&[Written { version: 3 }, read_ev(2, false)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (1, "SessionOrder"));
        // Across a reconnect of the same session too.
        let found = check_session_events(&[read_ev(5, false), ConnectionLost, read_ev(4, false)]);
        assert_eq!(found.len(), 1, "{found:?}");
        // A write's version must be newer than what the session saw.
        let found = check_session_events(&[read_ev(5, false), Written { version: 5 }]);
        assert_eq!(found.len(), 1, "{found:?}");
        // A new session promises nothing about the old one's reads.
        let found = check_session_events(&[read_ev(5, false), NewSession, read_ev(4, false)]);
        assert!(found.is_empty(), "{found:?}");
        let found = check_session_events(&[
            Written { version: 1 },
            read_ev(1, false),
            read_ev(3, false),
            Written { version: 4 },
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn watch_before_data_flags_a_change_seen_before_its_event() {
        use RegEvent::*;
        let found = check_session_events(&[read_ev(1, true), read_ev(2, false)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (1, "WatchBeforeData"));
        // The client's own write's reply may not come before the event either.
        let found = check_session_events(&[read_ev(1, true), Written { version: 2 }]);
        assert_eq!(found[0].1, "WatchBeforeData", "{found:?}");
        // With the event first, or the same version, or after the connection (and the watch)
        // went, it is fine.
        let found = check_session_events(&[
            read_ev(1, true),
            read_ev(1, false),
            Changed,
            read_ev(2, true),
            ConnectionLost,
            read_ev(3, false),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    /// The register clients run in the sweep, record a history, see watch events, and the
    /// history passes (a healthy core).
    #[test]
    fn the_sweep_runs_and_checks_the_register_clients() {
        let opts = SweepOptions {
            client_checks: true,
            ..SweepOptions::default()
        };
        let r = run_seed(3, &opts);
        assert!(!r.failed(), "{}", r.render(40));
        let w = &r.workload;
        assert!(w.register_ops > 50, "{w:?}");
        assert!(w.register_events > 0, "{w:?}");
        assert_eq!(w.register_verdict, "ok", "{w:?}");
        // Off (the regression seeds' runs), nothing of it happens.
        let r = run_seed(3, &SweepOptions::default());
        assert_eq!(r.workload.register_ops, 0);
        assert_eq!(r.workload.register_verdict, "-");
    }
}

/// A follower a whole epoch behind crashes in the middle of its NEWLEADER writes: the synced
/// history (with the newer epoch's transactions) is durable, its currentEpoch write is not.
/// The `updatingEpoch` marker, made durable first, lets it restart (as
/// `FileTxnSnapLog::restore` would), and it syncs again and serves.
#[test]
fn a_crash_between_the_newleader_log_and_epoch_writes_restarts() {
    init_log();
    let mut sim = Sim::new(5, 3, 0);
    assert!(sim.run_until_serving(20_000));
    let leader = assert_one_leader(&sim);
    let f = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut c = Client::connect(&mut sim, other, 1);
    assert_eq!(c.create(&mut sim, "/e1"), 0);
    sim.run_for(100);
    let f_epoch = sim.nodes[f].disk.current_epoch;
    // f misses a whole epoch: the old leader restarts, a new epoch commits transactions.
    sim.crash(f);
    sim.crash(leader);
    sim.start(leader);
    let new_leader = wait_leader(&mut sim, 30_000);
    let mut c = Client::connect(&mut sim, new_leader, 2);
    for i in 0..3 {
        assert_eq!(c.create(&mut sim, &format!("/e2-{i}")), 0);
    }
    // f rejoins on a slow disk, so its NEWLEADER writes wait for an fsync long enough to
    // crash in.
    sim.start(f);
    sim.nodes[f].fsync_extra_ms = 200;
    let deadline = sim.now_ms + 20_000;
    let kinds = loop {
        let kinds = sim.pending_ops(f);
        if kinds.contains(&"currentEpoch") {
            break kinds;
        }
        assert!(sim.now_ms < deadline, "f never reached NEWLEADER");
        sim.run_for(1);
    };
    let epoch_write = kinds.iter().position(|k| *k == "currentEpoch").unwrap();
    let marker = kinds.iter().position(|k| *k == "updatingEpoch");
    assert!(
        marker.is_some_and(|m| m < epoch_write),
        "the marker goes before the history: {kinds:?}"
    );
    sim.crash_torn(f, epoch_write);
    let disk = &sim.nodes[f].disk;
    let last = disk.log.last().map_or(0, |e| e.header.zxid);
    assert_eq!(disk.current_epoch, f_epoch, "the epoch write was lost");
    assert!(
        crate::quorum::epoch_of(last) > disk.current_epoch,
        "the durable log (0x{last:x}) is newer than currentEpoch {}",
        disk.current_epoch
    );
    assert!(disk.updating_epoch);
    sim.nodes[f].fsync_extra_ms = 0;
    sim.start(f);
    assert_eq!(
        sim.nodes[f].disk.current_epoch,
        crate::quorum::epoch_of(last),
        "the restart takes the epoch of the last zxid"
    );
    assert!(!sim.nodes[f].disk.updating_epoch);
    assert!(sim.run_until_serving(30_000));
    sim.run_for(300);
    assert!(converged(&sim, "/e2-2"));
}
