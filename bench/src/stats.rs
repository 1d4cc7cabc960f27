//! Percentiles of measured durations.

use std::time::Duration;

/// Sorted samples, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e6);
    }

    /// The `p`-th percentile (nearest rank), in microseconds.
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The median, in microseconds.
    pub fn p50(&self) -> f64 {
        self.pct(50.0)
    }

    /// The 99th percentile, in microseconds.
    pub fn p99(&self) -> f64 {
        self.pct(99.0)
    }
}

/// `x` microseconds for a table: µs below 10 ms, else ms.
pub fn us(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.1} ms", x / 1000.0)
    } else {
        format!("{x:.0} µs")
    }
}
