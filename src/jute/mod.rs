//! Jute, ZooKeeper's wire encoding, as pure code over byte slices.
//!
//! Every record of `zookeeper.jute` that zabd reads or writes lives in a submodule named after
//! its jute module: [`data`] (`org.apache.zookeeper.data`), [`proto`] (`...proto`), [`txn`]
//! (`...txn`). Encoding follows `BinaryOutputArchive`: big-endian ints and longs, one byte per
//! boolean, `int length (-1 = null) + bytes` for buffers and strings, `int count + elements`
//! for vectors, and record fields back to back in declaration order.
//!
//! Decoding never trusts a length read from the input to size an allocation: every length is
//! checked against the bytes that remain before anything is allocated, so a 4-byte frame can
//! never make the server allocate more than 4 bytes.

pub mod data;
pub mod frame;
pub mod proto;
pub mod quorum;
pub mod quorum_stream;
pub mod txn;

use bytes::{BufMut, Bytes};
use std::fmt;

/// Why a record could not be decoded. Every variant is something the outside world can do
/// wrong; none of them is a bug in zabd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The record needs more bytes than the frame holds.
    UnexpectedEof { needed: usize, remaining: usize },
    /// A length or count below -1.
    NegativeLength(i32),
    /// A length or count larger than what remains in the frame.
    LengthTooLarge { length: i32, remaining: usize },
    /// A vector count whose elements, at their smallest encoding, cannot fit in what remains.
    CountTooLarge {
        count: usize,
        element_bytes_min: usize,
        remaining: usize,
    },
    /// A boolean byte other than 0 or 1.
    BadBoolean(u8),
    /// An opcode this server does not know.
    UnknownOpcode(i32),
    /// A value outside the range the record allows (e.g. a multi header that is not done).
    BadValue(&'static str),
    /// Bytes left over after the record ended.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEof { needed, remaining } => {
                write!(
                    f,
                    "record truncated: needed {needed} bytes, {remaining} remain"
                )
            }
            DecodeError::NegativeLength(n) => write!(f, "negative length {n}"),
            DecodeError::LengthTooLarge { length, remaining } => {
                write!(
                    f,
                    "length {length} exceeds the {remaining} bytes that remain"
                )
            }
            DecodeError::CountTooLarge {
                count,
                element_bytes_min,
                remaining,
            } => write!(
                f,
                "{count} elements of at least {element_bytes_min} bytes exceed the \
                 {remaining} bytes that remain"
            ),
            DecodeError::BadBoolean(b) => write!(f, "boolean byte {b:#x} is neither 0 nor 1"),
            DecodeError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            DecodeError::BadValue(what) => write!(f, "bad value: {what}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes after the record"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over one frame's bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was consumed: ZooKeeper ignores trailing bytes in some places,
    /// but a decoder that ignores them hides framing bugs, so callers choose explicitly.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEof {
                needed: n,
                remaining: self.remaining(),
            });
        }
        let slice = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::BadBoolean(b)),
        }
    }

    /// Reads a length or count: `None` for -1 (null), an error below -1 or beyond what remains
    /// (each element of any jute type takes at least one byte).
    pub fn read_len(&mut self) -> Result<Option<usize>, DecodeError> {
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < -1 {
            return Err(DecodeError::NegativeLength(n));
        }
        let len = n as usize;
        if len > self.remaining() {
            return Err(DecodeError::LengthTooLarge {
                length: n,
                remaining: self.remaining(),
            });
        }
        Ok(Some(len))
    }

    /// A jute `buffer`; null is `None`.
    pub fn read_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.read_len()? {
            None => Ok(None),
            Some(len) => Ok(Some(self.take(len)?)),
        }
    }

    /// A jute `ustring`; null is `None`. Invalid UTF-8 is replaced as Java's `new String(bytes,
    /// UTF_8)` does, so paths that ZooKeeper would reject are rejected here too.
    pub fn read_ustring(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(self
            .read_buffer()?
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }
}

/// A type with a jute encoding: primitives, buffers, strings, vectors and records.
pub trait Jute: Sized {
    /// The fewest bytes any value of this type takes on the wire. Vector decoding uses it to
    /// refuse a count the input cannot hold before reserving memory for it. Never above the
    /// true minimum (that would reject valid input); 1 is always safe.
    const MIN_ENCODED_BYTES: usize = 1;
    fn put<B: BufMut>(&self, out: &mut B);
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

impl Jute for i32 {
    const MIN_ENCODED_BYTES: usize = 4;
    fn put<B: BufMut>(&self, out: &mut B) {
        out.put_i32(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_i32()
    }
}

impl Jute for i64 {
    const MIN_ENCODED_BYTES: usize = 8;
    fn put<B: BufMut>(&self, out: &mut B) {
        out.put_i64(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_i64()
    }
}

impl Jute for bool {
    const MIN_ENCODED_BYTES: usize = 1;
    fn put<B: BufMut>(&self, out: &mut B) {
        out.put_u8(u8::from(*self));
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_bool()
    }
}

/// A `ustring` whose null is read as the empty string (paths, schemes: ZooKeeper rejects a null
/// there anyway, and an empty path fails validation the same way).
impl Jute for String {
    const MIN_ENCODED_BYTES: usize = 4;
    fn put<B: BufMut>(&self, out: &mut B) {
        put_bytes(out, self.as_bytes());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(r.read_ustring()?.unwrap_or_default())
    }
}

/// A `buffer` whose null is read as empty.
impl Jute for Bytes {
    const MIN_ENCODED_BYTES: usize = 4;
    fn put<B: BufMut>(&self, out: &mut B) {
        put_bytes(out, self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(r.read_buffer()?
            .map(Bytes::copy_from_slice)
            .unwrap_or_default())
    }
}

/// A `buffer` where null and empty differ: znode data. The Java client sends null for
/// `create(path, null, ...)` and zkCli prints `null` when it reads it back.
impl Jute for Option<Bytes> {
    const MIN_ENCODED_BYTES: usize = 4;
    fn put<B: BufMut>(&self, out: &mut B) {
        match self {
            None => out.put_i32(-1),
            Some(b) => put_bytes(out, b),
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(r.read_buffer()?.map(Bytes::copy_from_slice))
    }
}

/// A `vector`; null is read as empty.
impl<T: Jute> Jute for Vec<T> {
    const MIN_ENCODED_BYTES: usize = 4;
    fn put<B: BufMut>(&self, out: &mut B) {
        out.put_i32(len_i32(self.len()));
        for item in self {
            item.put(out);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.read_len()?.unwrap_or(0);
        // A count the remaining bytes cannot hold fails before anything is reserved; what is
        // reserved is then at most size_of::<T>() / MIN_ENCODED_BYTES times the input (6x at
        // worst, for String; see `widest_reservation_per_input_byte` in the tests).
        let element_bytes_min = T::MIN_ENCODED_BYTES.max(1);
        if count > r.remaining() / element_bytes_min {
            return Err(DecodeError::CountTooLarge {
                count,
                element_bytes_min,
                remaining: r.remaining(),
            });
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::get(r)?);
        }
        Ok(items)
    }
}

pub fn put_bytes<B: BufMut>(out: &mut B, bytes: &[u8]) {
    out.put_i32(len_i32(bytes.len()));
    out.put_slice(bytes);
}

/// Lengths zabd writes come from data it accepted under jute.maxbuffer, far below i32::MAX.
fn len_i32(len: usize) -> i32 {
    i32::try_from(len).expect("jute length fits in i32")
}

/// Decodes a whole record from `bytes`, failing on trailing bytes.
pub fn decode_exact<T: Jute>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let value = T::get(&mut r)?;
    r.finish()?;
    Ok(value)
}

/// Encodes a record into a fresh vector.
pub fn encode_to_vec<T: Jute>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.put(&mut out);
    out
}

/// Declares a jute record: a struct whose fields are encoded in declaration order.
macro_rules! jute_record {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty),*
        }

        impl $crate::jute::Jute for $name {
            const MIN_ENCODED_BYTES: usize =
                0 $(+ <$ty as $crate::jute::Jute>::MIN_ENCODED_BYTES)*;
            fn put<B: ::bytes::BufMut>(&self, _out: &mut B) {
                $(self.$field.put(_out);)*
            }
            fn get(_r: &mut $crate::jute::Reader<'_>) -> Result<Self, $crate::jute::DecodeError> {
                Ok($name { $($field: $crate::jute::Jute::get(_r)?),* })
            }
        }
    };
}
pub(crate) use jute_record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_before_allocating() {
        // A vector claiming 2^31-1 elements in a 4-byte frame.
        let bytes = i32::MAX.to_be_bytes();
        let err = decode_exact::<Vec<String>>(&bytes).unwrap_err();
        assert!(matches!(err, DecodeError::LengthTooLarge { .. }), "{err}");
        // 100 elements claimed in 100 bytes: each `String` needs at least its 4-byte length.
        let mut bytes = 100i32.to_be_bytes().to_vec();
        bytes.resize(104, 0);
        let err = decode_exact::<Vec<String>>(&bytes).unwrap_err();
        assert_eq!(
            err,
            DecodeError::CountTooLarge {
                count: 100,
                element_bytes_min: 4,
                remaining: 100
            }
        );
        // 25 of them fit exactly.
        let mut bytes = 25i32.to_be_bytes().to_vec();
        bytes.resize(104, 0);
        assert_eq!(decode_exact::<Vec<String>>(&bytes).unwrap().len(), 25);
        let err = decode_exact::<String>(&(-2i32).to_be_bytes()).unwrap_err();
        assert_eq!(err, DecodeError::NegativeLength(-2));
    }

    /// The smallest encodings the records declare are their true smallest encodings, and no
    /// vector element type takes more than 6 bytes of memory per byte it needs on the wire, so
    /// a vector reserves at most 6 times its input.
    #[test]
    fn widest_reservation_per_input_byte() {
        use crate::jute::data::{Acl, ClientInfo, Id};
        use crate::jute::txn::Txn;
        fn check<T: Jute + Default>(name: &str) -> usize {
            assert_eq!(
                encode_to_vec(&T::default()).len(),
                T::MIN_ENCODED_BYTES,
                "{name}: the default value is the smallest encoding"
            );
            std::mem::size_of::<T>() / T::MIN_ENCODED_BYTES
        }
        let widest = [
            check::<Acl>("Acl"),
            check::<Id>("Id"),
            check::<ClientInfo>("ClientInfo"),
            check::<Txn>("Txn"),
            check::<String>("String"),
            check::<i64>("i64"),
        ]
        .into_iter()
        .max()
        .unwrap();
        assert!(widest <= 6, "{widest} bytes of memory per input byte");
    }

    #[test]
    fn null_buffer_and_empty_buffer_differ_for_data() {
        let null = encode_to_vec(&None::<Bytes>);
        assert_eq!(null, (-1i32).to_be_bytes());
        assert_eq!(decode_exact::<Option<Bytes>>(&null).unwrap(), None);
        let empty = encode_to_vec(&Some(Bytes::new()));
        assert_eq!(
            decode_exact::<Option<Bytes>>(&empty).unwrap(),
            Some(Bytes::new())
        );
        // Where null is not meaningful it reads as empty.
        assert_eq!(decode_exact::<String>(&null).unwrap(), "");
    }

    #[test]
    fn booleans_are_strict() {
        assert_eq!(
            decode_exact::<bool>(&[2]).unwrap_err(),
            DecodeError::BadBoolean(2)
        );
        assert!(decode_exact::<bool>(&[1]).unwrap());
    }

    #[test]
    fn trailing_bytes_are_reported() {
        assert_eq!(
            decode_exact::<i32>(&[0, 0, 0, 1, 9]).unwrap_err(),
            DecodeError::TrailingBytes(1)
        );
    }
}
