//! zabd: a ZooKeeper-compatible coordination server.
//!
//! See README.md ("Architecture") for the thread diagram and each layer's invariants. In short,
//! the layers, each depending only on those above it:
//!
//! - [`jute`]: the wire codec, pure functions over byte slices.
//! - [`tree`], [`session`]: the data tree, watches, ACLs and session tracking; pure.
//! - [`server`]: the request pipeline (ZooKeeper's Prep → Sync → Final processors) as a
//!   sans-IO state machine: inputs in, outputs out, time passed in.
//! - [`quorum`]: the ensemble (fast leader election, ZAB's Leader and Learner, `QuorumPeer`),
//!   sans-IO like the pipeline; [`sim`] runs several of them deterministically.
//! - [`net`], [`threads`]: the I/O shell; mio readiness loops and channel loops, one per role.
//! - `main.rs`: the binary.

pub mod bench;
pub mod check;
pub mod client;
pub mod config;
pub mod jute;
pub mod net;
pub mod persistence;
pub mod quorum;
pub mod rng;
pub mod server;
pub mod session;
pub mod sim;
pub mod threads;
pub mod tools;
pub mod tree;
