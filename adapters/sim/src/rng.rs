//! The one PRNG of a run: ChaCha8 seeded from the run's `u64` seed, the
//! same stream on every machine.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snapc_core::time::Duration;

/// The run's random source. Everything random in a run comes from here,
/// drawn in event order, so a seed replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.0.random_range(lo..=hi)
        }
    }

    /// A uniform index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        self.range(0, n.saturating_sub(1) as u64) as usize
    }

    /// True with probability `p`. Draws nothing when `p` is 0, so a
    /// disabled fault costs no randomness and changes no other draw.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random::<f64>() < p
    }

    /// A duration in `lo..=hi`, in microseconds.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_micros(self.range(lo.as_micros(), hi.as_micros()))
    }
}
