//! The simulation's streams of the one seeded generator
//! ([`maxwell_core::Rng`]), salted apart from the cores'.

/// One stream of random numbers.
#[derive(Debug, Clone)]
pub struct Rng(maxwell_core::Rng);

/// Mixed into every seed, so the simulation's streams are not the cores'.
const SALT: u64 = 0x5DEE_CE66_D1CE_4E5B;

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(maxwell_core::Rng::new(seed ^ SALT))
    }

    /// A generator for a sub-stream, e.g. one per (scenario, policy).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = Self::new(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.unit()
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform index in [0, n); `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A stateless hash of a few integers to [0, 1): seeded noise that does not
/// depend on the order in which it is drawn.
pub fn hash_unit(seed: u64, a: u64, b: u64) -> f64 {
    let mut r = Rng::derive(seed ^ a.rotate_left(17), b);
    r.unit()
}
