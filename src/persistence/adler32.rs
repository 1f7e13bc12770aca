//! Adler-32 (RFC 1950), the checksum `java.util.zip.Adler32` computes: ZooKeeper uses it for
//! every transaction log record and for the snapshot seals. Written here (40 lines) rather than
//! taken as a dependency; the test vectors below pin it to Java's values.

/// The largest prime below 2^16.
const MOD_ADLER: u32 = 65_521;

/// The most bytes that can be summed before `b` could overflow a u32 (zlib's NMAX): with both
/// sums starting below MOD_ADLER, 255·n(n+1)/2 + (n+1)(MOD_ADLER−1) ≤ 2^32 − 1 holds for n = 5552.
const BLOCK_BYTES: usize = 5552;

/// A running Adler-32. `Clone` lets a reader try two interpretations of the same tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Adler32::new()
    }
}

impl Adler32 {
    pub fn new() -> Adler32 {
        Adler32 { a: 1, b: 0 }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for block in bytes.chunks(BLOCK_BYTES) {
            for &byte in block {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= MOD_ADLER;
            self.b %= MOD_ADLER;
        }
    }

    /// The checksum as Java's `Checksum.getValue()` returns it: a non-negative long.
    pub fn value(&self) -> i64 {
        i64::from((self.b << 16) | self.a)
    }
}

/// The Adler-32 of `bytes`, as a non-negative long.
pub fn adler32(bytes: &[u8]) -> i64 {
    let mut sum = Adler32::new();
    sum.update(bytes);
    sum.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"a"), 0x0062_0062);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // n zero bytes: a stays 1, b = n. A zeroed region never checksums to zero.
        assert_eq!(adler32(&[0u8; 100]), (100 << 16) | 1);
    }

    #[test]
    fn long_inputs_wrap_like_zlib() {
        // 0xff bytes are the worst case for overflow; compare against a naive modular loop.
        let data = vec![0xffu8; 3 * BLOCK_BYTES + 17];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &data {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&data), ((b << 16) | a) as i64);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut sum = Adler32::new();
        for piece in data.chunks(333) {
            sum.update(piece);
        }
        assert_eq!(sum.value(), adler32(&data));
    }
}
