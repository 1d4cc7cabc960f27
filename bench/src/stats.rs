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

    /// The median of `self[i] / other[i]` over rounds measured in pairs
    /// (round i of each side taken next to each other): a ratio that slow
    /// changes of the machine's load affect less than the ratio of medians.
    pub fn paired_ratio(&self, other: &Samples) -> f64 {
        let mut r = Samples(self.0.iter().zip(&other.0).map(|(a, b)| a / b).collect());
        r.0.sort_by(f64::total_cmp);
        r.p50()
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

/// What a task ran so far, from its `schedstat` file
/// (`/proc/thread-self/schedstat`, `/proc/<pid>/schedstat`): time on a CPU
/// (ns) and the times it was scheduled in (each wakeup from a sleep counts
/// one). What the task itself did, whatever else shares the cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sched {
    pub cpu_ns: u64,
    pub runs: u64,
}

impl std::ops::Sub for Sched {
    type Output = Sched;
    fn sub(self, o: Sched) -> Sched {
        Sched {
            cpu_ns: self.cpu_ns.saturating_sub(o.cpu_ns),
            runs: self.runs.saturating_sub(o.runs),
        }
    }
}

pub fn sched(path: &str) -> Sched {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut f = text.split_whitespace().map(|v| v.parse().unwrap_or(0));
    let cpu_ns = f.next().unwrap_or(0);
    let _wait = f.next();
    Sched {
        cpu_ns,
        runs: f.next().unwrap_or(0),
    }
}

/// The calling thread's [`Sched`].
pub fn thread_sched() -> Sched {
    sched("/proc/thread-self/schedstat")
}

/// Process `pid`'s main thread's [`Sched`].
pub fn proc_sched(pid: u32) -> Sched {
    sched(&format!("/proc/{pid}/schedstat"))
}
