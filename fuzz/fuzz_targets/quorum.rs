//! The server-to-server wire formats of `jute::quorum` (QuorumPacket, LearnerInfo, the
//! FastLeaderElection notification and the election connection's hello). Only the codecs
//! exist so far (the ensemble is a later issue), so only decoding is fuzzed: the first byte
//! picks the format, the rest is the message.
//!
//! Checked: nothing panics; no single allocation grows beyond the message (see
//! common/alloc.rs); what decodes re-encodes to bytes that decode to the same value.
#![no_main]

#[path = "common/alloc.rs"]
mod alloc;

use libfuzzer_sys::fuzz_target;
use zabd::jute::quorum::{ElectionHello, LearnerInfo, Notification, QuorumPacket};
use zabd::jute::{decode_exact, encode_to_vec};

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(p) = alloc::bounded(msg.len(), || decode_exact::<QuorumPacket>(msg)) {
                assert_eq!(decode_exact::<QuorumPacket>(&encode_to_vec(&p)), Ok(p));
            }
        }
        1 => {
            if let Ok(i) = decode_exact::<LearnerInfo>(msg) {
                let bytes = encode_to_vec(&i);
                assert_eq!(bytes, msg, "LearnerInfo has one encoding");
            }
        }
        2 => {
            if let Ok(n) = alloc::bounded(msg.len(), || Notification::decode(msg)) {
                if n.version > 1 || n.config.is_empty() {
                    let mut bytes = Vec::new();
                    n.put(&mut bytes);
                    assert_eq!(Notification::decode(&bytes), Ok(n));
                }
            }
        }
        _ => {
            if let Ok(Some((hello, used))) =
                alloc::bounded(msg.len(), || ElectionHello::decode(msg))
            {
                assert!(used <= msg.len());
                let mut bytes = Vec::new();
                hello.put(&mut bytes);
                if std::str::from_utf8(&msg[20..used]).is_ok() {
                    assert_eq!(bytes, &msg[..used], "a hello has one encoding");
                }
                // Invalid UTF-8 is replaced (3 bytes per bad byte), which may push the
                // address past the 2048-byte limit: only shorter ones must read back.
                if hello.addresses.len() <= 2048 {
                    let len = bytes.len();
                    assert_eq!(ElectionHello::decode(&bytes), Ok(Some((hello, len))));
                }
            }
        }
    }
});
