//! Property tests (quickcheck) of zabd's codecs and of its data tree, through the public API:
//!
//! - [`codec`]: encode-then-decode is the identity for every jute record, for `Request`
//!   (through `Request::decode`), for `Response` (through the client's `decode_reply`), for
//!   `TxnEntry` and for the quorum formats; decode-then-encode reproduces any accepted input
//!   for the records with one encoding; and for every record, decoding is a normalization
//!   (what decodes re-encodes to bytes that decode to the same value).
//! - [`model`]: the data tree, driven through `ZooKeeperServer` by random create / delete /
//!   setData / multi sequences, agrees with a plain `BTreeMap` model, replies included.
//! - [`replay`]: the transactions the core logs, written with `TxnLogWriter` and read back with
//!   `TxnLogReader`, are the same transactions, and applying them (both ways) to a fresh tree
//!   gives the core's tree (digest and full dump); restoring the data directory (the core's own
//!   fuzzy snapshots plus the log) gives it too.

mod codec;
mod generators;
mod harness;
mod model;
mod replay;
