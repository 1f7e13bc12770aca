//! Fast leader election (ZooKeeper's `FastLeaderElection.lookForLeader` and its receiver), as a
//! sans-IO state machine. Votes are ordered by (peer epoch, zxid, server id); a server adopts
//! any better vote it hears, rebroadcasts, and decides once a quorum of voters agrees with its
//! own proposal and no better vote arrives within `finalize_wait_ms`. A server that joins late
//! learns the established leader from FOLLOWING/LEADING notifications of a quorum.
//!
//! Inputs: [`FastLeaderElection::look_for_leader`] (start a round),
//! [`FastLeaderElection::on_notification`], [`FastLeaderElection::on_timeout`]. Outputs:
//! [`ElectionOutput`]s. Time is passed in as milliseconds; nothing here blocks.

use super::verifier::QuorumMaj;
use super::{ServerState, Sid};
use crate::jute::quorum::{Notification, NOTIFICATION_VERSION};
use bytes::Bytes;
use std::collections::BTreeMap;

/// ZooKeeper's election timers.
#[derive(Clone, Debug)]
pub struct ElectionTimers {
    /// How long a server waits, once a quorum agrees, for a better vote (`finalizeWait`).
    pub finalize_wait_ms: i64,
    /// The first notification resend interval, doubled each time nothing arrives.
    pub min_notification_interval_ms: i64,
    pub max_notification_interval_ms: i64,
}

impl Default for ElectionTimers {
    fn default() -> ElectionTimers {
        ElectionTimers {
            finalize_wait_ms: 200,
            min_notification_interval_ms: 200,
            max_notification_interval_ms: 60_000,
        }
    }
}

/// A vote: who should lead, and the sender's view of its own progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vote {
    pub leader: Sid,
    pub zxid: i64,
    pub election_epoch: i64,
    pub peer_epoch: i64,
    pub state: ServerState,
}

impl Vote {
    /// `Vote.equals`: in-election votes compare everything; votes of servers already out of
    /// election compare only the leader and its epoch (ZOOKEEPER-1805).
    fn agrees_with(&self, other: &Vote) -> bool {
        if self.state == ServerState::Looking || other.state == ServerState::Looking {
            self.leader == other.leader
                && self.zxid == other.zxid
                && self.election_epoch == other.election_epoch
                && self.peer_epoch == other.peer_epoch
        } else {
            self.leader == other.leader && self.peer_epoch == other.peer_epoch
        }
    }
}

/// What the election asks the outside world to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionOutput {
    Send {
        to: Sid,
        notification: Notification,
    },
    /// The round is over: lead (when `vote.leader` is this server), follow, or observe.
    Elected {
        vote: Vote,
        state: ServerState,
    },
}

/// The proposal part of a vote: (leader, zxid, peer epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proposal {
    leader: Sid,
    zxid: i64,
    epoch: i64,
}

/// `totalOrderPredicate`: is `new` a better leader than `cur`? Observers never are.
fn better(verifier: &QuorumMaj, new: Proposal, cur: Proposal) -> bool {
    verifier.is_voter(new.leader)
        && (new.epoch > cur.epoch
            || (new.epoch == cur.epoch
                && (new.zxid > cur.zxid || (new.zxid == cur.zxid && new.leader > cur.leader))))
}

pub struct FastLeaderElection {
    me: Sid,
    verifier: QuorumMaj,
    timers: ElectionTimers,
    /// The dynamic configuration text every notification carries.
    config: Bytes,
    /// This server's own claim: itself, its last logged zxid and current epoch.
    init: Proposal,
    proposal: Proposal,
    /// The election round.
    logical_clock: i64,
    /// Votes of this round, by sender.
    recv_set: BTreeMap<Sid, Vote>,
    /// Votes of servers already following or leading, by sender.
    out_of_election: BTreeMap<Sid, Vote>,
    /// True during a round; once decided, `current` answers servers that are still looking.
    looking: bool,
    current: Option<(Vote, ServerState)>,
    finalize_at_ms: Option<i64>,
    next_notify_at_ms: i64,
    notify_interval_ms: i64,
}

impl FastLeaderElection {
    pub fn new(
        me: Sid,
        verifier: QuorumMaj,
        timers: ElectionTimers,
        config: Bytes,
    ) -> FastLeaderElection {
        assert!(
            verifier.is_member(me),
            "server {me} is not in its own configuration"
        );
        let nobody = Proposal {
            leader: i64::MIN,
            zxid: i64::MIN,
            epoch: i64::MIN,
        };
        FastLeaderElection {
            me,
            timers,
            config,
            init: nobody,
            proposal: nobody,
            logical_clock: 0,
            recv_set: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            looking: false,
            current: None,
            finalize_at_ms: None,
            next_notify_at_ms: i64::MAX,
            notify_interval_ms: 0,
            verifier,
        }
    }

    pub fn is_looking(&self) -> bool {
        self.looking
    }

    pub fn logical_clock(&self) -> i64 {
        self.logical_clock
    }

    /// Starts a round with this server's last logged zxid and current epoch.
    pub fn look_for_leader(
        &mut self,
        now_ms: i64,
        last_zxid: i64,
        current_epoch: i64,
        out: &mut Vec<ElectionOutput>,
    ) {
        // Observers propose nobody (ZooKeeper's Long.MIN_VALUE): they only adopt votes.
        self.init = if self.verifier.is_voter(self.me) {
            Proposal {
                leader: self.me,
                zxid: last_zxid,
                epoch: current_epoch,
            }
        } else {
            Proposal {
                leader: i64::MIN,
                zxid: i64::MIN,
                epoch: i64::MIN,
            }
        };
        // A peer can push the round to i64::MAX (rounds are adopted from any notification,
        // unauthenticated): it then stays there rather than wrap to i64::MIN, where every
        // vote of the ensemble's round would look stale (ZooKeeper's AtomicLong wraps).
        self.logical_clock = self.logical_clock.saturating_add(1);
        self.proposal = self.init;
        self.recv_set.clear();
        self.out_of_election.clear();
        self.looking = true;
        self.current = None;
        self.finalize_at_ms = None;
        self.notify_interval_ms = self.timers.min_notification_interval_ms;
        self.send_notifications(now_ms, out);
    }

    /// ZooKeeper's `updateElectionVote` (ZOOKEEPER-1732): once this server leads or follows
    /// in `epoch`, the vote it answers looking servers with names that epoch. Otherwise a
    /// follower that joined on an older epoch's notifications and its leader disagree, and a
    /// restarted server never sees a quorum agree (it stays LOOKING).
    pub fn update_vote_epoch(&mut self, epoch: i64) {
        if let Some((vote, _)) = self.current.as_mut() {
            vote.peer_epoch = epoch;
        }
    }

    /// The next time [`Self::on_timeout`] has work.
    pub fn next_timeout_ms(&self) -> i64 {
        if !self.looking {
            return i64::MAX;
        }
        self.finalize_at_ms
            .unwrap_or(i64::MAX)
            .min(self.next_notify_at_ms)
    }

    /// Finalizes a round whose quorum held through `finalize_wait_ms`, or resends with backoff.
    pub fn on_timeout(&mut self, now_ms: i64, out: &mut Vec<ElectionOutput>) {
        if !self.looking {
            return;
        }
        if self.finalize_at_ms.is_some_and(|t| now_ms >= t) {
            let vote = self.own_vote();
            self.decide(vote, out);
            return;
        }
        if now_ms >= self.next_notify_at_ms {
            self.notify_interval_ms =
                (self.notify_interval_ms * 2).min(self.timers.max_notification_interval_ms);
            self.send_notifications(now_ms, out);
        }
    }

    /// A notification from `from`.
    pub fn on_notification(
        &mut self,
        now_ms: i64,
        from: Sid,
        n: &Notification,
        out: &mut Vec<ElectionOutput>,
    ) {
        let Some(state) = ServerState::from_wire(n.state) else {
            return;
        };
        if !self.looking {
            // The receiver answers a looking peer with the leader it follows.
            if state == ServerState::Looking {
                if let Some((vote, my_state)) = self.current {
                    out.push(self.send(from, vote, my_state));
                }
            }
            return;
        }
        if state == ServerState::Looking && n.election_epoch < self.logical_clock {
            // A peer behind us: tell it where the round is.
            out.push(self.send(from, self.own_vote(), ServerState::Looking));
        }
        if !self.verifier.is_voter(from) || !self.verifier.is_voter(n.leader) {
            return;
        }
        self.next_notify_at_ms = now_ms + self.notify_interval_ms;
        let vote = Vote {
            leader: n.leader,
            zxid: n.zxid,
            election_epoch: n.election_epoch,
            peer_epoch: n.peer_epoch,
            state,
        };
        match state {
            ServerState::Looking => self.on_looking_vote(now_ms, from, vote, out),
            ServerState::Following | ServerState::Leading => self.on_settled_vote(from, vote, out),
            ServerState::Observing => {}
        }
    }

    fn on_looking_vote(
        &mut self,
        now_ms: i64,
        from: Sid,
        vote: Vote,
        out: &mut Vec<ElectionOutput>,
    ) {
        let theirs = Proposal {
            leader: vote.leader,
            zxid: vote.zxid,
            epoch: vote.peer_epoch,
        };
        if vote.election_epoch > self.logical_clock {
            self.logical_clock = vote.election_epoch;
            self.recv_set.clear();
            self.proposal = if better(&self.verifier, theirs, self.init) {
                theirs
            } else {
                self.init
            };
            self.send_notifications(now_ms, out);
        } else if vote.election_epoch < self.logical_clock {
            return;
        } else if better(&self.verifier, theirs, self.proposal) {
            self.proposal = theirs;
            // A better vote during finalizeWait reopens the round.
            self.finalize_at_ms = None;
            self.send_notifications(now_ms, out);
        }
        self.recv_set.insert(from, vote);
        self.check_quorum(now_ms);
    }

    /// A quorum agreeing with our proposal starts the finalize wait.
    fn check_quorum(&mut self, now_ms: i64) {
        let own = self.own_vote();
        let agreeing = self
            .recv_set
            .iter()
            .filter(|(_, v)| v.agrees_with(&own))
            .map(|(s, _)| s);
        if self.verifier.contains_quorum(agreeing) {
            if self.finalize_at_ms.is_none() {
                self.finalize_at_ms = Some(now_ms + self.timers.finalize_wait_ms);
            }
        } else {
            self.finalize_at_ms = None;
        }
    }

    /// A server already following or leading: join its leader once a quorum confirms it
    /// (`receivedFollowingNotification` / `checkLeader`).
    fn on_settled_vote(&mut self, from: Sid, vote: Vote, out: &mut Vec<ElectionOutput>) {
        if vote.election_epoch == self.logical_clock {
            self.recv_set.insert(from, vote);
            if self.confirmed(&self.recv_set, vote) {
                self.decide(vote, out);
                return;
            }
        }
        self.out_of_election.insert(from, vote);
        if self.confirmed(&self.out_of_election, vote) {
            self.logical_clock = vote.election_epoch;
            self.decide(vote, out);
        }
    }

    fn confirmed(&self, votes: &BTreeMap<Sid, Vote>, vote: Vote) -> bool {
        let agreeing = votes
            .iter()
            .filter(|(_, v)| v.agrees_with(&vote))
            .map(|(s, _)| s);
        if !self.verifier.contains_quorum(agreeing) {
            return false;
        }
        // checkLeader: the leader itself must say it leads (or be us, in this round).
        if vote.leader == self.me {
            self.logical_clock == vote.election_epoch
        } else {
            votes
                .get(&vote.leader)
                .is_some_and(|v| v.state == ServerState::Leading)
        }
    }

    fn decide(&mut self, vote: Vote, out: &mut Vec<ElectionOutput>) {
        let state = if vote.leader == self.me {
            ServerState::Leading
        } else if self.verifier.is_voter(self.me) {
            ServerState::Following
        } else {
            ServerState::Observing
        };
        let vote = Vote { state, ..vote };
        self.looking = false;
        self.finalize_at_ms = None;
        self.current = Some((vote, state));
        out.push(ElectionOutput::Elected { vote, state });
    }

    fn own_vote(&self) -> Vote {
        Vote {
            leader: self.proposal.leader,
            zxid: self.proposal.zxid,
            election_epoch: self.logical_clock,
            peer_epoch: self.proposal.epoch,
            state: ServerState::Looking,
        }
    }

    /// Sends our vote to every voter; our own copy counts at once (ZooKeeper delivers it to
    /// itself through the same queue).
    fn send_notifications(&mut self, now_ms: i64, out: &mut Vec<ElectionOutput>) {
        let own = self.own_vote();
        let peers: Vec<Sid> = self.verifier.voters().filter(|s| *s != self.me).collect();
        for to in peers {
            out.push(self.send(to, own, ServerState::Looking));
        }
        self.next_notify_at_ms = now_ms + self.notify_interval_ms;
        self.recv_set.insert(self.me, own);
        self.check_quorum(now_ms);
    }

    fn send(&self, to: Sid, vote: Vote, state: ServerState) -> ElectionOutput {
        let notification = Notification {
            state: state.wire(),
            leader: vote.leader,
            zxid: vote.zxid,
            election_epoch: vote.election_epoch,
            peer_epoch: vote.peer_epoch,
            version: NOTIFICATION_VERSION,
            config: self.config.clone(),
        };
        ElectionOutput::Send { to, notification }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A tiny deterministic network: messages delivered in FIFO order, optionally dropped for
    /// cut-off servers; time advances only when nothing is in flight.
    struct Net {
        servers: BTreeMap<Sid, FastLeaderElection>,
        queue: VecDeque<(Sid, Sid, Notification)>,
        down: Vec<Sid>,
        decided: BTreeMap<Sid, (Vote, ServerState)>,
        now_ms: i64,
    }

    impl Net {
        fn new(voters: &[Sid], observers: &[Sid]) -> Net {
            let q = QuorumMaj::new(voters.iter().copied(), observers.iter().copied());
            let servers = q
                .members()
                .map(|s| {
                    (
                        s,
                        FastLeaderElection::new(
                            s,
                            q.clone(),
                            ElectionTimers::default(),
                            Bytes::new(),
                        ),
                    )
                })
                .collect();
            Net {
                servers,
                queue: VecDeque::new(),
                down: Vec::new(),
                decided: BTreeMap::new(),
                now_ms: 0,
            }
        }

        fn route(&mut self, from: Sid, out: Vec<ElectionOutput>) {
            for o in out {
                match o {
                    ElectionOutput::Send { to, notification } => {
                        self.queue.push_back((from, to, notification))
                    }
                    ElectionOutput::Elected { vote, state } => {
                        self.decided.insert(from, (vote, state));
                    }
                }
            }
        }

        fn start(&mut self, sid: Sid, zxid: i64, epoch: i64) {
            let mut out = Vec::new();
            let now = self.now_ms;
            self.servers
                .get_mut(&sid)
                .unwrap()
                .look_for_leader(now, zxid, epoch, &mut out);
            self.route(sid, out);
        }

        /// Runs until quiet or `limit_ms` of virtual time passes.
        fn run(&mut self, limit_ms: i64) {
            let end = self.now_ms + limit_ms;
            for _ in 0..100_000 {
                if let Some((from, to, n)) = self.queue.pop_front() {
                    if self.down.contains(&from) || self.down.contains(&to) {
                        continue;
                    }
                    let mut out = Vec::new();
                    let now = self.now_ms;
                    self.servers
                        .get_mut(&to)
                        .unwrap()
                        .on_notification(now, from, &n, &mut out);
                    self.route(to, out);
                    continue;
                }
                let next = self
                    .servers
                    .iter()
                    .filter(|(s, _)| !self.down.contains(s))
                    .map(|(_, e)| e.next_timeout_ms())
                    .min()
                    .unwrap_or(i64::MAX);
                if next > end {
                    return;
                }
                self.now_ms = self.now_ms.max(next);
                let ids: Vec<Sid> = self.servers.keys().copied().collect();
                for sid in ids {
                    if self.down.contains(&sid) {
                        continue;
                    }
                    let mut out = Vec::new();
                    let now = self.now_ms;
                    self.servers
                        .get_mut(&sid)
                        .unwrap()
                        .on_timeout(now, &mut out);
                    self.route(sid, out);
                }
            }
            panic!("election did not settle");
        }
    }

    #[test]
    fn the_most_up_to_date_server_wins_and_everyone_agrees() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        net.start(1, 0x1_0000_0005, 1);
        net.start(2, 0x1_0000_0009, 1);
        net.start(3, 0x1_0000_0007, 1);
        net.run(10_000);
        assert_eq!(net.decided.len(), 3, "{:?}", net.decided);
        for (sid, (vote, state)) in &net.decided {
            assert_eq!(vote.leader, 2);
            assert_eq!(
                *state,
                if *sid == 2 {
                    ServerState::Leading
                } else {
                    ServerState::Following
                }
            );
        }
    }

    #[test]
    fn epoch_beats_zxid_and_sid_breaks_ties() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        net.start(1, 0x2_0000_0001, 2);
        net.start(2, 0x1_0000_0099, 1);
        net.start(3, 0x2_0000_0001, 2);
        net.run(10_000);
        assert!(
            net.decided.values().all(|(v, _)| v.leader == 3),
            "{:?}",
            net.decided
        );
    }

    #[test]
    fn a_minority_cannot_elect() {
        let mut net = Net::new(&[1, 2, 3, 4, 5], &[]);
        net.down = vec![3, 4, 5];
        net.start(1, 5, 0);
        net.start(2, 5, 0);
        net.run(30_000);
        assert!(net.decided.is_empty(), "{:?}", net.decided);
        assert!(net.servers[&1].is_looking());
    }

    #[test]
    fn a_late_server_joins_the_established_leader() {
        let mut net = Net::new(&[1, 2, 3], &[4]);
        net.down = vec![3];
        net.start(1, 9, 1);
        net.start(2, 5, 1);
        net.run(10_000);
        assert_eq!(net.decided[&1].1, ServerState::Leading);
        assert_eq!(net.decided[&2].1, ServerState::Following);
        // Server 3 comes back with a higher zxid than the leader had, but the ensemble is
        // established: it must follow 1, not start a new election it could win.
        net.down.clear();
        net.start(3, 50, 1);
        net.start(4, 0, 0);
        net.run(10_000);
        assert_eq!(
            net.decided[&3],
            (
                Vote {
                    state: ServerState::Following,
                    ..net.decided[&3].0
                },
                ServerState::Following
            )
        );
        assert_eq!(net.decided[&3].0.leader, 1);
        assert_eq!(net.decided[&4].0.leader, 1);
        assert_eq!(net.decided[&4].1, ServerState::Observing);
    }

    #[test]
    fn a_lagging_round_is_pulled_forward() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        // Server 1 has been through extra rounds; the others start at round 1.
        for _ in 0..3 {
            let mut out = Vec::new();
            net.servers
                .get_mut(&1)
                .unwrap()
                .look_for_leader(0, 1, 0, &mut out);
        }
        net.start(1, 1, 0);
        net.start(2, 3, 0);
        net.start(3, 2, 0);
        net.run(10_000);
        assert_eq!(net.decided.len(), 3);
        let rounds: Vec<i64> = net
            .decided
            .values()
            .map(|(v, _)| v.election_epoch)
            .collect();
        assert!(
            rounds.iter().all(|r| *r == 4),
            "everyone ends in the highest round: {rounds:?}"
        );
        assert!(net.decided.values().all(|(v, _)| v.leader == 2));
    }
}
