//! Length-prefixed framing on the client port, and four-letter-word detection.
//!
//! A frame is `int32 length` + `length` bytes. The length is checked against the limit
//! (jute.maxbuffer) before the caller reserves any memory for the payload.

use std::fmt;

/// The length prefix's size.
pub const LEN_BYTES: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A negative length prefix.
    Negative(i32),
    /// A length above jute.maxbuffer ("Len error" in ZooKeeper's log).
    TooLarge { length: usize, max: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Negative(n) => write!(f, "Len error: negative frame length {n}"),
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "Len error: frame length {length} exceeds jute.maxbuffer {max}"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Looks for one complete frame at the start of `buf`. Returns the payload's byte range and
/// the bytes the frame takes, `Ok(None)` while incomplete.
pub fn decode_frame(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(std::ops::Range<usize>, usize)>, FrameError> {
    let Some(length) = peek_length(buf, max_len)? else {
        return Ok(None);
    };
    let total = LEN_BYTES + length;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((LEN_BYTES..total, total)))
}

/// The validated length prefix, once four bytes are present.
pub fn peek_length(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < LEN_BYTES {
        return Ok(None);
    }
    let n = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if n < 0 {
        return Err(FrameError::Negative(n));
    }
    let length = n as usize;
    if length > max_len {
        return Err(FrameError::TooLarge {
            length,
            max: max_len,
        });
    }
    Ok(Some(length))
}

/// The four-letter words ZooKeeper 3.8 answers on the client port.
pub const FOUR_LETTER_WORDS: [&[u8; 4]; 18] = [
    b"conf", b"cons", b"crst", b"dump", b"envi", b"ruok", b"srst", b"srvr", b"stat", b"wchs",
    b"wchc", b"wchp", b"dirs", b"mntr", b"isro", b"hash", b"gtmk", b"stmk",
];

/// If the first four bytes of a new connection spell a four-letter word, returns it. A real
/// handshake starts with its length (44 or 45), which never collides with these ASCII codes.
pub fn four_letter_word(first: &[u8]) -> Option<[u8; 4]> {
    let word: [u8; 4] = first.get(..4)?.try_into().ok()?;
    FOUR_LETTER_WORDS
        .iter()
        .any(|w| **w == word)
        .then_some(word)
}

/// Prepends the length to `payload` (the write side of [`decode_frame`]).
pub fn frame_len_prefix(payload_len: usize) -> [u8; 4] {
    i32::try_from(payload_len)
        .expect("frame fits in i32")
        .to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_only_when_complete() {
        let mut buf = 3i32.to_be_bytes().to_vec();
        assert_eq!(decode_frame(&buf, 10).unwrap(), None);
        buf.extend_from_slice(b"abc");
        assert_eq!(decode_frame(&buf, 10).unwrap(), Some((4..7, 7)));
    }

    #[test]
    fn bad_lengths_are_refused_before_the_payload_arrives() {
        assert_eq!(
            decode_frame(&(-5i32).to_be_bytes(), 10),
            Err(FrameError::Negative(-5))
        );
        assert_eq!(
            decode_frame(&11i32.to_be_bytes(), 10),
            Err(FrameError::TooLarge {
                length: 11,
                max: 10
            })
        );
    }

    #[test]
    fn four_letter_words_are_detected() {
        assert_eq!(four_letter_word(b"ruok"), Some(*b"ruok"));
        assert_eq!(four_letter_word(&44i32.to_be_bytes()), None);
        assert_eq!(four_letter_word(b"ru"), None);
    }
}
