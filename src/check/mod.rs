//! History checkers: what clients saw, checked against what ZooKeeper promises them. Pure (no
//! I/O, no clocks), so the process harness (tests/nemesis) and the simulator share them.
//!
//! - [`linearizable`]: a Wing & Gong search (with Lowe's memoization, as in Porcupine) of a
//!   history against a sequential [`linearizable::Model`]; [`register`] is a znode as a
//!   versioned register (read, setData, setData with an expected version).
//! - [`recipes`]: the ZooKeeper recipes the harness runs: unique ids from sequential nodes, a
//!   FIFO queue, and a lock guarding a read-modify-write counter.

pub mod history;
pub mod linearizable;
pub mod recipes;
pub mod register;

pub use history::{History, Op, Outcome};
pub use linearizable::{check, Model, Verdict};
