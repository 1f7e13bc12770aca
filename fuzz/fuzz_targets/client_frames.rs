//! The client port's byte stream, decoded as the `zabd-client` thread decodes it
//! (`threads/client.rs`, `decode_next`): the input is everything one connection sends.
//!
//! - The first four bytes may spell a four-letter word; then nothing more is read.
//! - Otherwise the stream is cut into frames with `jute::frame::decode_frame` and
//!   jute.maxbuffer (ZooKeeper's default, 0xfffff); a bad length ends the connection.
//! - The first frame is the handshake (`ConnectRequest`, trailing bytes ignored).
//! - Every later frame is a `RequestHeader` (8 bytes; fewer ends the connection) and a body
//!   decoded with `Request::decode(type, body)`, for every opcode: multi, multiRead and
//!   setWatches2 included.
//!
//! Checked: nothing panics; every decoded request re-encodes (`Request::put`) to bytes that
//! decode to the same value, under the same opcode, and that re-encode identically; every
//! handshake does the same through `ConnectRequest`; no single allocation made while decoding
//! a frame is larger than a fixed multiple of the frame (lengths read from the input are
//! bounded by it).
#![no_main]

#[path = "common/alloc.rs"]
mod alloc;

use libfuzzer_sys::fuzz_target;
use zabd::jute::frame::{decode_frame, four_letter_word, FOUR_LETTER_WORDS};
use zabd::jute::proto::{ConnectRequest, Request, RequestHeader};
use zabd::jute::{decode_exact, encode_to_vec, Jute, Reader};

/// ZooKeeper's default jute.maxbuffer, what zabd's client thread frames with.
const MAX_FRAME_BYTES: usize = 0xfffff;
const HEADER_BYTES: usize = 8;

fuzz_target!(|data: &[u8]| {
    if let Some(word) = four_letter_word(data) {
        assert!(FOUR_LETTER_WORDS.iter().any(|w| **w == word));
        assert_eq!(&word[..], &data[..4]);
        return;
    }
    let mut rest = data;
    let mut handshake_done = false;
    loop {
        let (range, used) = match decode_frame(rest, MAX_FRAME_BYTES) {
            Ok(Some(found)) => found,
            // Incomplete, or a length the client thread refuses: the connection ends.
            Ok(None) | Err(_) => return,
        };
        assert!(used <= rest.len() && range.end == used && range.start == 4);
        let payload = &rest[range];
        rest = &rest[used..];
        if !handshake_done {
            let decoded = alloc::bounded(payload.len(), || {
                ConnectRequest::get(&mut Reader::new(payload))
            });
            let Ok(req) = decoded else { return };
            let bytes = encode_to_vec(&req);
            let again = decode_exact::<ConnectRequest>(&bytes).expect("re-encoded handshake");
            assert_eq!(again, req);
            handshake_done = true;
            continue;
        }
        if payload.len() < HEADER_BYTES {
            return;
        }
        let header = RequestHeader::get(&mut Reader::new(&payload[..HEADER_BYTES]))
            .expect("8 bytes are a request header");
        let body = &payload[HEADER_BYTES..];
        let decoded = alloc::bounded(body.len(), || Request::decode(header.type_, body));
        if let Ok(req) = decoded {
            check_round_trip(header.type_, &req);
        }
    }
});

fn check_round_trip(type_: i32, req: &Request) {
    assert_eq!(
        req.op_code(),
        type_,
        "the opcode survives decoding: {req:?}"
    );
    let mut bytes = Vec::new();
    req.put(&mut bytes);
    let again = Request::decode(type_, &bytes)
        .unwrap_or_else(|e| panic!("re-encoded {req:?} does not decode: {e}"));
    assert_eq!(&again, req, "decode(put(req)) != req");
    let mut bytes2 = Vec::new();
    again.put(&mut bytes2);
    assert_eq!(bytes2, bytes, "encoding is not stable");
}
