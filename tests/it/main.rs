//! zabd's integration tests: one binary, in-process servers on 127.0.0.1 (port 0, a temporary
//! dataDir each), driven over real sockets by the zookeeper-client crate and by zabd's own
//! blocking client. Every test stops what it starts and every wait is bounded.

mod support;

mod acl;
mod bad_input;
mod four_letter;
mod protocol;
mod rust_client;
mod sessions;
mod watches;
