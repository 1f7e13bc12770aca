//! Integration tests: in-process zabd servers on 127.0.0.1, driven over real sockets.
mod support;
