//! xorshift64*: the crate's one small deterministic random source, for the simulator, the
//! core's buggify sites and the load generator. Fast and reproducible from a seed; not for
//! anything an attacker may guess.

#[derive(Clone, Debug)]
pub struct XorShift64Star(u64);

impl XorShift64Star {
    /// Spreads `seed` over the state (nearby seeds give unrelated streams).
    pub fn seeded(seed: u64) -> XorShift64Star {
        XorShift64Star(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Starts from `state` as given (made odd: a zero state would stay zero).
    pub fn from_state(state: u64) -> XorShift64Star {
        XorShift64Star(state | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
