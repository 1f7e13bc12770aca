//! Splitting a leader-learner byte stream into [`QuorumPacket`]s as the bytes arrive.
//!
//! ZooKeeper writes quorum packets back to back with `BinaryOutputArchive.writeRecord` and no
//! length prefix, so where a packet ends is only known by walking its fields:
//!
//! ```text
//! i32 type | i64 zxid | i32 data length (-1 = null) + bytes
//!          | i32 authinfo count (-1 = null) + count × (ustring scheme, ustring id)
//! ```
//!
//! [`scan`] walks those fields over the bytes received so far without copying anything. It
//! says how many bytes the packet takes once they are all there, or how many bytes must be
//! present before another scan can get further, so a caller receiving a large packet in many
//! small reads rescans only when the next field boundary has arrived, not after every read.
//! Every length is checked against [`StreamLimits`] the moment its four bytes arrive, long
//! before the bytes it announces, and nothing here allocates from an announced length.

use super::data::Id;
use super::quorum::QuorumPacket;
use super::{DecodeError, Jute, Reader};
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::ops::Range;

/// `type` + `zxid` + the data length.
const FIXED_BYTES: usize = 4 + 8 + 4;
const LEN_BYTES: usize = 4;

/// Authinfo entries one packet may carry. ZooKeeper learners forward a client session's
/// identities in REQUEST packets; sessions hold a handful.
pub const MAX_AUTHINFO_COUNT: usize = 1024;
/// Bytes of one authinfo scheme or id.
pub const MAX_AUTHINFO_STRING_BYTES: usize = 4096;

/// What one packet may announce. Checked before the announced bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Largest `data` buffer. zabd ships whole snapshots in SNAP packets, so this is large.
    pub max_data_bytes: usize,
    pub max_authinfo_count: usize,
    pub max_string_bytes: usize,
}

impl StreamLimits {
    /// The given data limit with the default authinfo bounds.
    pub fn new(max_data_bytes: usize) -> StreamLimits {
        StreamLimits {
            max_data_bytes,
            max_authinfo_count: MAX_AUTHINFO_COUNT,
            max_string_bytes: MAX_AUTHINFO_STRING_BYTES,
        }
    }
}

/// Why a stream cannot hold a quorum packet at this point. The stream is beyond repair after
/// any of these: there is no way to find the start of the next packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// A length or count below -1.
    NegativeLength { field: &'static str, length: i32 },
    /// A length or count above its limit.
    TooLarge {
        field: &'static str,
        length: usize,
        max: usize,
    },
    /// The fields scanned but did not decode (cannot happen after a successful scan; kept so
    /// that a disagreement between the two walks closes a link instead of panicking).
    Malformed(DecodeError),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::NegativeLength { field, length } => {
                write!(f, "quorum packet {field} has negative length {length}")
            }
            StreamError::TooLarge { field, length, max } => {
                write!(
                    f,
                    "quorum packet {field} length {length} exceeds the limit {max}"
                )
            }
            StreamError::Malformed(e) => write!(f, "quorum packet does not decode: {e}"),
        }
    }
}

impl std::error::Error for StreamError {}

/// What the bytes received so far hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scan {
    /// No whole packet yet: scanning again is pointless before the buffer holds at least
    /// `needed_bytes` (counted from the packet's first byte).
    Incomplete { needed_bytes: usize },
    /// A whole packet takes the first `packet_bytes`; `data` is where its data buffer sits
    /// (`None` when null).
    Complete {
        packet_bytes: usize,
        data: Option<Range<usize>>,
    },
}

/// A decoded packet, or how many bytes to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Packet {
        packet: QuorumPacket,
        consumed: usize,
    },
    NeedMore {
        needed_bytes: usize,
    },
}

/// Walks the packet at the start of `buf`. The work is proportional to the number of fields
/// (at most `3 + 2 × max_authinfo_count` lengths), never to the data's size.
pub fn scan(buf: &[u8], limits: &StreamLimits) -> Result<Scan, StreamError> {
    let incomplete = |needed_bytes| Ok(Scan::Incomplete { needed_bytes });
    if buf.len() < FIXED_BYTES {
        return incomplete(FIXED_BYTES);
    }
    let data_len = length_at(buf, FIXED_BYTES - LEN_BYTES, "data", limits.max_data_bytes)?;
    let data = data_len.map(|len| FIXED_BYTES..FIXED_BYTES + len);
    let mut pos = FIXED_BYTES + data_len.unwrap_or(0);
    if buf.len() < pos + LEN_BYTES {
        return incomplete(pos + LEN_BYTES);
    }
    let count = length_at(buf, pos, "authinfo count", limits.max_authinfo_count)?;
    pos += LEN_BYTES;
    // Each Id is two ustrings, scheme then id; a string is walked past only once all of its
    // bytes are here, so the next length read is always inside `buf`.
    for _ in 0..count.unwrap_or(0) * 2 {
        if buf.len() < pos + LEN_BYTES {
            return incomplete(pos + LEN_BYTES);
        }
        let len = length_at(buf, pos, "authinfo string", limits.max_string_bytes)?;
        pos += LEN_BYTES + len.unwrap_or(0);
        if buf.len() < pos {
            return incomplete(pos);
        }
    }
    Ok(Scan::Complete {
        packet_bytes: pos,
        data,
    })
}

/// Reads and checks the length whose four bytes start at `pos` (the caller made sure they are
/// in `buf`).
fn length_at(
    buf: &[u8],
    pos: usize,
    field: &'static str,
    max: usize,
) -> Result<Option<usize>, StreamError> {
    let b = &buf[pos..pos + LEN_BYTES];
    let length = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match length {
        -1 => Ok(None),
        n if n < -1 => Err(StreamError::NegativeLength { field, length: n }),
        n => {
            let len = n as usize;
            if len > max {
                return Err(StreamError::TooLarge {
                    field,
                    length: len,
                    max,
                });
            }
            Ok(Some(len))
        }
    }
}

/// Decodes the packet at the start of `buf`, copying its data.
pub fn decode(buf: &[u8], limits: &StreamLimits) -> Result<Decoded, StreamError> {
    match scan(buf, limits)? {
        Scan::Incomplete { needed_bytes } => Ok(Decoded::NeedMore { needed_bytes }),
        Scan::Complete { packet_bytes, .. } => {
            let mut r = Reader::new(&buf[..packet_bytes]);
            let packet = QuorumPacket::get(&mut r).map_err(StreamError::Malformed)?;
            r.finish().map_err(StreamError::Malformed)?;
            Ok(Decoded::Packet {
                packet,
                consumed: packet_bytes,
            })
        }
    }
}

/// Data at least this large is shared with the receive buffer rather than copied. Smaller data
/// is copied so that a small packet the core keeps does not pin a whole read buffer.
pub const SHARE_DATA_MIN_BYTES: usize = 64 * 1024;

/// Builds a packet from exactly its bytes. Large data (a SNAP packet's is a whole snapshot)
/// is shared with `frame` instead of copied.
fn build(frame: Bytes, data: Option<Range<usize>>) -> Result<QuorumPacket, StreamError> {
    let mut r = Reader::new(&frame);
    let type_ = r.read_i32().map_err(StreamError::Malformed)?;
    let zxid = r.read_i64().map_err(StreamError::Malformed)?;
    let data_len = r
        .read_buffer()
        .map_err(StreamError::Malformed)?
        .map(<[u8]>::len);
    if data_len != data.as_ref().map(Range::len) {
        return Err(StreamError::Malformed(DecodeError::BadValue(
            "data length changed between scans",
        )));
    }
    let authinfo = Vec::<Id>::get(&mut r).map_err(StreamError::Malformed)?;
    r.finish().map_err(StreamError::Malformed)?;
    Ok(QuorumPacket {
        type_,
        zxid,
        data: data.map(|range| {
            if range.len() >= SHARE_DATA_MIN_BYTES {
                frame.slice(range)
            } else {
                Bytes::copy_from_slice(&frame[range])
            }
        }),
        authinfo,
    })
}

/// Takes whole packets off the front of a receive buffer, remembering how many bytes the next
/// scan needs so that a packet arriving in many reads is scanned a bounded number of times.
#[derive(Debug)]
pub struct QuorumStreamDecoder {
    limits: StreamLimits,
    needed_bytes: usize,
}

impl QuorumStreamDecoder {
    pub fn new(limits: StreamLimits) -> QuorumStreamDecoder {
        QuorumStreamDecoder {
            limits,
            needed_bytes: 0,
        }
    }

    /// The bytes the buffer must hold before [`next`](Self::next) can find a packet.
    pub fn needed_bytes(&self) -> usize {
        self.needed_bytes
    }

    /// Removes and returns the packet at the front of `buf`, or `Ok(None)` when it is not all
    /// there yet. After an error the stream is unusable.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<QuorumPacket>, StreamError> {
        if buf.len() < self.needed_bytes {
            return Ok(None);
        }
        match scan(buf, &self.limits)? {
            Scan::Incomplete { needed_bytes } => {
                debug_assert!(needed_bytes > buf.len());
                self.needed_bytes = needed_bytes;
                Ok(None)
            }
            Scan::Complete { packet_bytes, data } => {
                self.needed_bytes = 0;
                let frame = buf.split_to(packet_bytes).freeze();
                build(frame, data).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::quorum::packet;
    use crate::jute::{decode_exact, encode_to_vec};
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    const LIMITS: StreamLimits = StreamLimits {
        max_data_bytes: 1 << 20,
        max_authinfo_count: MAX_AUTHINFO_COUNT,
        max_string_bytes: MAX_AUTHINFO_STRING_BYTES,
    };

    fn sample() -> QuorumPacket {
        QuorumPacket {
            type_: packet::REQUEST,
            zxid: 0x1_0000_0007,
            data: Some(Bytes::from_static(b"payload")),
            authinfo: vec![Id::new("digest", "alice:xyz"), Id::new("ip", "127.0.0.1")],
        }
    }

    fn drain(decoder: &mut QuorumStreamDecoder, buf: &mut BytesMut) -> Vec<QuorumPacket> {
        let mut out = Vec::new();
        while let Some(p) = decoder.next(buf).unwrap() {
            out.push(p);
        }
        out
    }

    #[test]
    fn packets_are_found_only_when_whole() {
        let bytes = encode_to_vec(&sample());
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut], &LIMITS).unwrap() {
                Decoded::NeedMore { needed_bytes } => {
                    assert!(needed_bytes > cut && needed_bytes <= bytes.len(), "{cut}")
                }
                Decoded::Packet { .. } => panic!("a {cut}-byte prefix decoded"),
            }
        }
        assert_eq!(
            decode(&bytes, &LIMITS).unwrap(),
            Decoded::Packet {
                packet: sample(),
                consumed: bytes.len()
            }
        );
    }

    #[test]
    fn null_and_empty_data_differ_and_null_authinfo_is_empty() {
        for data in [None, Some(Bytes::new())] {
            let p = QuorumPacket {
                type_: packet::PING,
                data,
                ..QuorumPacket::default()
            };
            let mut buf = BytesMut::from(&encode_to_vec(&p)[..]);
            let got = QuorumStreamDecoder::new(LIMITS).next(&mut buf).unwrap();
            assert_eq!(got, Some(p));
            assert!(buf.is_empty());
        }
        let mut bytes = encode_to_vec(&QuorumPacket::default());
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&(-1i32).to_be_bytes());
        let got = decode(&bytes, &LIMITS).unwrap();
        assert!(matches!(got, Decoded::Packet { packet, .. } if packet.authinfo.is_empty()));
    }

    #[test]
    fn lengths_are_refused_as_soon_as_they_arrive() {
        // Type, zxid and a data length of 2^31-1: refused with 16 bytes in hand.
        let mut head = encode_to_vec(&QuorumPacket::default())[..12].to_vec();
        head.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            scan(&head, &LIMITS),
            Err(StreamError::TooLarge {
                field: "data",
                length: i32::MAX as usize,
                max: LIMITS.max_data_bytes
            })
        );
        head[12..].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            scan(&head, &LIMITS),
            Err(StreamError::NegativeLength { length: -2, .. })
        ));
        let mut bytes = encode_to_vec(&sample());
        // The authinfo count sits after 12 + 4 + 7 bytes.
        bytes.truncate(23);
        bytes.extend_from_slice(&(MAX_AUTHINFO_COUNT as i32 + 1).to_be_bytes());
        assert!(matches!(
            scan(&bytes, &LIMITS),
            Err(StreamError::TooLarge {
                field: "authinfo count",
                ..
            })
        ));
        bytes.truncate(23);
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&(MAX_AUTHINFO_STRING_BYTES as i32 + 1).to_be_bytes());
        assert!(matches!(
            scan(&bytes, &LIMITS),
            Err(StreamError::TooLarge {
                field: "authinfo string",
                ..
            })
        ));
        bytes.truncate(27);
        bytes.extend_from_slice(&(-7i32).to_be_bytes());
        assert!(matches!(
            scan(&bytes, &LIMITS),
            Err(StreamError::NegativeLength { length: -7, .. })
        ));
    }

    #[test]
    fn a_large_packet_in_small_reads_is_scanned_once_per_field() {
        let p = QuorumPacket {
            type_: packet::SNAP,
            data: Some(Bytes::from(vec![7u8; 1 << 20])),
            ..sample()
        };
        let bytes = encode_to_vec(&p);
        let mut decoder = QuorumStreamDecoder::new(LIMITS);
        let mut buf = BytesMut::new();
        let mut scans = 0;
        for chunk in bytes.chunks(100) {
            buf.extend_from_slice(chunk);
            if buf.len() >= decoder.needed_bytes() {
                scans += 1;
            }
            if let Some(got) = decoder.next(&mut buf).unwrap() {
                assert_eq!(got, p);
                assert!(buf.is_empty());
            }
        }
        // Header, data, then the authinfo fields: a few scans, not one per read.
        assert!(scans <= 10, "{scans} scans");
    }

    #[test]
    fn one_byte_at_a_time_and_back_to_back() {
        let packets = [sample(), QuorumPacket::default(), sample()];
        let bytes: Vec<u8> = packets.iter().flat_map(encode_to_vec).collect();
        let mut decoder = QuorumStreamDecoder::new(LIMITS);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[b]);
            got.extend(drain(&mut decoder, &mut buf));
        }
        assert_eq!(got, packets);
    }

    #[derive(Clone, Debug)]
    struct ArbPacket(QuorumPacket);

    impl Arbitrary for ArbPacket {
        fn arbitrary(g: &mut Gen) -> ArbPacket {
            let data = match u8::arbitrary(g) % 4 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(Bytes::from(Vec::<u8>::arbitrary(g))),
            };
            let count = usize::arbitrary(g) % 4;
            let authinfo = (0..count)
                .map(|_| Id {
                    scheme: String::arbitrary(g),
                    id: String::arbitrary(g),
                })
                .collect();
            ArbPacket(QuorumPacket {
                type_: i32::arbitrary(g),
                zxid: i64::arbitrary(g),
                data,
                authinfo,
            })
        }
    }

    #[test]
    fn any_packets_split_anywhere_decode_to_themselves() {
        fn prop(packets: Vec<ArbPacket>, cuts: Vec<usize>) -> bool {
            let packets: Vec<QuorumPacket> = packets.into_iter().map(|p| p.0).collect();
            let bytes: Vec<u8> = packets.iter().flat_map(encode_to_vec).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut decoder = QuorumStreamDecoder::new(LIMITS);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for cut in cuts {
                buf.extend_from_slice(&bytes[from..cut]);
                from = cut;
                got.extend(drain(&mut decoder, &mut buf));
            }
            got == packets && buf.is_empty()
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(Vec<ArbPacket>, Vec<usize>) -> bool);
    }

    /// Random bytes almost always fail at the first length; damaged real packets reach the
    /// later fields.
    #[test]
    fn damaged_packets_never_panic_and_agree_with_the_record_decoder() {
        fn prop(p: ArbPacket, flips: Vec<(usize, u8)>, cut: usize) -> bool {
            let mut bytes = encode_to_vec(&p.0);
            let n = bytes.len();
            for (at, value) in flips {
                bytes[at % n] = value;
            }
            bytes.truncate(n - cut % 4);
            let mut buf = BytesMut::from(&bytes[..]);
            let mut decoder = QuorumStreamDecoder::new(LIMITS);
            match decoder.next(&mut buf) {
                Ok(Some(got)) => {
                    let used = bytes.len() - buf.len();
                    decode_exact::<QuorumPacket>(&bytes[..used]) == Ok(got)
                }
                Ok(None) => decoder.needed_bytes() > bytes.len(),
                Err(_) => true,
            }
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(ArbPacket, Vec<(usize, u8)>, usize) -> bool);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_with_the_record_decoder() {
        fn prop(bytes: Vec<u8>, small_limits: bool) -> bool {
            let limits = if small_limits {
                StreamLimits {
                    max_data_bytes: 8,
                    max_authinfo_count: 2,
                    max_string_bytes: 3,
                }
            } else {
                LIMITS
            };
            let mut buf = BytesMut::from(&bytes[..]);
            let mut decoder = QuorumStreamDecoder::new(limits);
            match decoder.next(&mut buf) {
                Ok(Some(p)) => {
                    // The record decoder reads the same packet from the same bytes.
                    let used = bytes.len() - buf.len();
                    decode_exact::<QuorumPacket>(&bytes[..used]) == Ok(p)
                }
                Ok(None) => decoder.needed_bytes() > bytes.len(),
                Err(_) => true,
            }
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, bool) -> bool);
    }
}
