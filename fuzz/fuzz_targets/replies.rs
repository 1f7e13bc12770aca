//! Server replies as zabd's client decodes them (`client::decode_reply`): the other direction
//! of the client protocol, which the bench tool and the tests rely on.
//!
//! Input: a byte choosing the request's opcode, then a reply frame's payload (ReplyHeader +
//! body).
//!
//! Checked: nothing panics; no single allocation grows beyond the payload (see
//! common/alloc.rs); a reply that decodes with err 0 re-encodes (`put_reply`) to a body that
//! decodes to the same reply.
#![no_main]

#[path = "common/alloc.rs"]
mod alloc;

use libfuzzer_sys::fuzz_target;
use zabd::client::decode_reply;
use zabd::jute::proto::{op, put_reply, ReplyHeader, Response};
use zabd::jute::{Jute, Reader};

const OPS: [i32; 30] = [
    op::CREATE,
    op::DELETE,
    op::EXISTS,
    op::GET_DATA,
    op::SET_DATA,
    op::GET_ACL,
    op::SET_ACL,
    op::GET_CHILDREN,
    op::SYNC,
    op::PING,
    op::GET_CHILDREN2,
    op::CHECK,
    op::MULTI,
    op::CREATE2,
    op::RECONFIG,
    op::CHECK_WATCHES,
    op::REMOVE_WATCHES,
    op::CREATE_CONTAINER,
    op::CREATE_TTL,
    op::MULTI_READ,
    op::AUTH,
    op::SET_WATCHES,
    op::SASL,
    op::GET_EPHEMERALS,
    op::GET_ALL_CHILDREN_NUMBER,
    op::SET_WATCHES2,
    op::ADD_WATCH,
    op::WHO_AM_I,
    op::CLOSE_SESSION,
    55,
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    let opcode = OPS[usize::from(which) % OPS.len()];
    let mut r = Reader::new(payload);
    let Ok(header) = ReplyHeader::get(&mut r) else {
        return;
    };
    let body = &payload[r.position()..];
    let decoded = alloc::bounded(body.len(), || decode_reply(opcode, &header, body));
    let Ok(reply) = decoded else { return };
    if header.err != 0 && !matches!(reply, Response::Multi(_)) {
        return;
    }
    let mut wire = Vec::new();
    put_reply(&mut wire, &header, &reply);
    let again = decode_reply(opcode, &header, &wire[16..])
        .unwrap_or_else(|e| panic!("re-encoded {reply:?} does not decode: {e}"));
    assert_eq!(again, reply);
});
