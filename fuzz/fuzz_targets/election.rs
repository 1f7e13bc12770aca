//! Fast leader election (`quorum::election::FastLeaderElection`), several servers in one
//! process with the fuzzer as the network: the input is a schedule. Byte 0 picks the ensemble
//! (3 or 5 voters, with or without an observer); then each step delivers, duplicates or drops a
//! message in flight (in any order), lets time pass on one server (resends, finalize), starts a
//! new round on one server (with a chosen last zxid and epoch), or injects a notification
//! with arbitrary fields claiming to come from a member (a peer with a stale or odd view; the
//! election port only takes connections from configured server ids).
//!
//! Checked: nothing panics; a server's round (logical clock) never goes back, except to join
//! an established leader's round (as ZooKeeper does); messages go to
//! other members only; a decision names a voter as leader, the server leads exactly when it
//! names itself and observes exactly when it is an observer, and ends its looking. Split
//! decisions are not checked: with messages delayed beyond finalizeWait, fast leader election
//! may elect different leaders (ZooKeeper relies on the epochs of ZAB's discovery for safety).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use zabd::jute::quorum::Notification;
use zabd::quorum::election::{ElectionOutput, ElectionTimers, FastLeaderElection};
use zabd::quorum::verifier::QuorumMaj;
use zabd::quorum::{ServerState, Sid};

const STEPS_MAX: usize = 2000;
const IN_FLIGHT_MAX: usize = 256;

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn i64(&mut self) -> i64 {
        // Small values mostly, so that votes compare interestingly; sometimes extremes.
        match self.u8() {
            0xff => i64::MAX,
            0xfe => i64::MIN,
            0xfd => -1,
            b => i64::from(b % 8),
        }
    }
}

struct Server {
    fle: FastLeaderElection,
    clock: i64,
    observer: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data, pos: 0 };
    let shape = input.u8();
    let voters: Vec<Sid> = if shape & 1 == 0 {
        vec![1, 2, 3]
    } else {
        vec![1, 2, 3, 4, 5]
    };
    let observers: Vec<Sid> = if shape & 2 == 0 { vec![] } else { vec![9] };
    let verifier = QuorumMaj::new(voters.iter().copied(), observers.iter().copied());
    let members: Vec<Sid> = verifier.members().collect();
    let config = Bytes::from_static(b"server.1=a:1:2\nversion=0");
    let mut servers: BTreeMap<Sid, Server> = members
        .iter()
        .map(|&s| {
            let fle = FastLeaderElection::new(
                s,
                verifier.clone(),
                ElectionTimers::default(),
                config.clone(),
            );
            (
                s,
                Server {
                    fle,
                    clock: 0,
                    observer: observers.contains(&s),
                },
            )
        })
        .collect();
    let mut now_ms = 0i64;
    let mut in_flight: Vec<(Sid, Sid, Notification)> = Vec::new();

    let handle = |from: Sid,
                  outs: Vec<ElectionOutput>,
                  servers: &mut BTreeMap<Sid, Server>,
                  in_flight: &mut Vec<(Sid, Sid, Notification)>| {
        let s = servers.get_mut(&from).unwrap();
        let clock = s.fle.logical_clock();
        // The round only moves forward, except when a server joins an established leader: it
        // takes that ensemble's round (FastLeaderElection.receivedFollowingNotification).
        let joined = outs.iter().any(
            |o| matches!(o, ElectionOutput::Elected { vote, .. } if vote.election_epoch == clock),
        );
        assert!(
            clock >= s.clock || joined,
            "server {from}: round went back from {} to {clock}",
            s.clock
        );
        s.clock = clock;
        for o in outs {
            match o {
                ElectionOutput::Send { to, notification } => {
                    assert_ne!(to, from, "server {from} sent to itself");
                    assert!(
                        members.contains(&to),
                        "server {from} sent to non-member {to}"
                    );
                    if in_flight.len() < IN_FLIGHT_MAX {
                        in_flight.push((from, to, notification));
                    }
                }
                ElectionOutput::Elected { vote, state } => {
                    assert!(
                        verifier.is_voter(vote.leader),
                        "server {from} elected non-voter {}",
                        vote.leader
                    );
                    assert_eq!(
                        state == ServerState::Leading,
                        vote.leader == from,
                        "server {from}: {state:?} for leader {}",
                        vote.leader
                    );
                    assert_eq!(
                        state == ServerState::Observing,
                        s.observer,
                        "server {from}: {state:?}"
                    );
                    assert_eq!(vote.state, state);
                    assert!(!s.fle.is_looking(), "server {from} decided and still looks");
                }
            }
        }
    };

    for &s in &members {
        let mut out = Vec::new();
        let zxid = input.i64() << 32 | input.i64();
        servers
            .get_mut(&s)
            .unwrap()
            .fle
            .look_for_leader(now_ms, zxid, zxid >> 32, &mut out);
        handle(s, out, &mut servers, &mut in_flight);
    }
    let mut steps = 0;
    while input.more() && steps < STEPS_MAX {
        steps += 1;
        let op = input.u8();
        match op % 8 {
            // Deliver (most often), keeping a copy when bit 4 is set (a duplicate).
            0..=3 => {
                if in_flight.is_empty() {
                    continue;
                }
                let i = usize::from(input.u8()) % in_flight.len();
                let (from, to, n) = if op & 0x10 != 0 {
                    in_flight[i].clone()
                } else {
                    in_flight.remove(i)
                };
                let mut out = Vec::new();
                servers
                    .get_mut(&to)
                    .unwrap()
                    .fle
                    .on_notification(now_ms, from, &n, &mut out);
                handle(to, out, &mut servers, &mut in_flight);
            }
            4 => {
                if !in_flight.is_empty() {
                    let i = usize::from(input.u8()) % in_flight.len();
                    in_flight.remove(i);
                }
            }
            5 => {
                now_ms += i64::from(input.u8()) * 10;
                let s = members[usize::from(input.u8()) % members.len()];
                let mut out = Vec::new();
                servers
                    .get_mut(&s)
                    .unwrap()
                    .fle
                    .on_timeout(now_ms, &mut out);
                handle(s, out, &mut servers, &mut in_flight);
            }
            6 => {
                let s = members[usize::from(input.u8()) % members.len()];
                let zxid = input.i64() << 32 | input.i64();
                let mut out = Vec::new();
                servers.get_mut(&s).unwrap().fle.look_for_leader(
                    now_ms,
                    zxid,
                    input.i64(),
                    &mut out,
                );
                handle(s, out, &mut servers, &mut in_flight);
            }
            _ => {
                let from = members[usize::from(input.u8()) % members.len()];
                let to = members[usize::from(input.u8()) % members.len()];
                if from == to {
                    continue;
                }
                let n = Notification {
                    state: i32::from(input.u8() % 5),
                    leader: if input.u8().is_multiple_of(4) {
                        input.i64()
                    } else {
                        members[usize::from(input.u8()) % members.len()]
                    },
                    zxid: input.i64() << 32 | input.i64(),
                    // Any round, i64::MAX included (finding H2, fixed: the next round
                    // saturates instead of overflowing).
                    election_epoch: input.i64(),
                    peer_epoch: input.i64(),
                    version: 2,
                    config: config.clone(),
                };
                let mut out = Vec::new();
                servers
                    .get_mut(&to)
                    .unwrap()
                    .fle
                    .on_notification(now_ms, from, &n, &mut out);
                handle(to, out, &mut servers, &mut in_flight);
            }
        }
    }
});
