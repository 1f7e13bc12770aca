//! The replicated ensemble (ZooKeeper's `server/quorum`), as sans-IO state machines: inputs
//! in (messages, time), outputs out (messages to send, decisions). Nothing here owns a
//! socket, a clock or a thread, so the deterministic simulator can run many servers at once.
//!
//! - [`election`]: fast leader election;
//! - [`peer`]: one ensemble member, routing inputs to its election and its role;
//! - [`leader`] and [`learner`]: ZAB's discovery, synchronization and broadcast;
//! - [`sync_decision`]: DIFF, TRUNC or SNAP; [`packets`]: the packet bodies;
//! - [`verifier`]: majority quorums; [`buggify`]: the simulator's fault sites. spec/ describes the protocol they implement.

pub mod buggify;
pub mod election;
pub mod leader;
pub mod learner;
pub mod packets;
pub mod peer;
pub mod replica;
pub mod sync_decision;
pub mod verifier;

/// A server id (`myid`).
pub type Sid = i64;

/// `QuorumPeer.ServerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerState {
    Looking,
    Following,
    Leading,
    Observing,
}

impl ServerState {
    /// The ordinal election notifications carry.
    pub fn wire(self) -> i32 {
        use crate::jute::quorum::server_state as s;
        match self {
            ServerState::Looking => s::LOOKING,
            ServerState::Following => s::FOLLOWING,
            ServerState::Leading => s::LEADING,
            ServerState::Observing => s::OBSERVING,
        }
    }

    pub fn from_wire(state: i32) -> Option<ServerState> {
        use crate::jute::quorum::server_state as s;
        Some(match state {
            s::LOOKING => ServerState::Looking,
            s::FOLLOWING => ServerState::Following,
            s::LEADING => ServerState::Leading,
            s::OBSERVING => ServerState::Observing,
            _ => return None,
        })
    }
}

/// The epoch part of a zxid.
pub fn epoch_of(zxid: i64) -> i64 {
    zxid >> 32
}
