//! Checkers for client-visible histories: pure functions over recorded operations, no I/O and no
//! clocks. The process harness (tests/nemesis) and the simulator both record histories and hand
//! them here after a run.
//!
//! - [`linearizable`]: a Wing & Gong / Lowe search, generic over a [`linearizable::Model`].
//! - [`register`]: a znode as a versioned register (get, setData, setData with a version).
//! - [`unique_ids`], [`queue`], [`lock`]: direct checks of the sequential-id, FIFO-queue and
//!   fenced-lock recipes, linear or n log n in the history size.

pub mod history;
pub mod linearizable;
pub mod lock;
pub mod queue;
pub mod register;
pub mod unique_ids;

pub use history::{History, Op, Outcome};
pub use linearizable::{Model, Verdict};
