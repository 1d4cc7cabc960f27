//! The checkpoint-request flag a POSIX signal handler (or an interrupt
//! handler) may set (docs/PROTOCOL.md, "Signal").
//!
//! The atomics come from `portable-atomic`: native instructions wherever the
//! target has compare-and-swap (every POSIX target, Cortex-M3 and up,
//! RISC-V with the A extension), a critical section where it has not
//! (Cortex-M0/M0+, RV32IMC). Only 8- and 32-bit atomics are used.

use crate::time::Instant;
use portable_atomic::{AtomicU8, AtomicU32, Ordering};

const IDLE: u8 = 0;
/// A handler won the request and is writing its timestamp.
const SETTING: u8 = 1;
const REQUESTED: u8 = 2;
/// A checkpoint runs in this process (set by [`CheckpointFlag::take`]).
const RUNNING: u8 = 3;

/// What [`CheckpointFlag::request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FlagRequest {
    /// The request is recorded; the next progress point acts on it.
    Requested,
    /// A request was already pending; the two are one.
    AlreadyRequested,
    /// A checkpoint is running in this process: the request is counted as
    /// ignored ([`CheckpointFlag::ignored`]) and not acted on.
    AlreadyCheckpointing,
}

/// The checkpoint-request flag: set by the signal handler, taken at the
/// application's progress point by [`AppCoordinator`](super::AppCoordinator).
///
/// Lock-free and async-signal-safe on targets with compare-and-swap:
/// [`request`](Self::request) and [`request_at`](Self::request_at) are a
/// compare-and-swap and plain atomic stores (no lock, no allocation, no
/// logging), so a POSIX signal handler may call them; they never block, even
/// when the handler interrupts the coordinator while it takes a request. On
/// targets without compare-and-swap each operation is a short critical
/// section (with the `critical-section` feature), which an interrupt
/// handler may enter as long as the implementation masks interrupts (the
/// single-core implementations do). Put the flag in a `static`
/// (`CheckpointFlag::new` is `const`) and lend it to the coordinator.
///
/// States: idle, requested, running. The coordinator's progress point moves
/// requested to running in
/// one step, so a request can never slip in between "seen" and "running";
/// while running, requests are counted as ignored. The coordinator returns
/// the flag to idle when its handshake is torn down.
#[derive(Debug)]
pub struct CheckpointFlag {
    state: AtomicU8,
    ignored: AtomicU32,
    /// Timestamp of the pending request in microseconds (`u64::MAX`: none),
    /// split in two halves so that only 32-bit atomics are needed.
    at_lo: AtomicU32,
    at_hi: AtomicU32,
}

impl Default for CheckpointFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckpointFlag {
    /// An idle flag.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            ignored: AtomicU32::new(0),
            at_lo: AtomicU32::new(u32::MAX),
            at_hi: AtomicU32::new(u32::MAX),
        }
    }

    /// Records a checkpoint request without a timestamp. Async-signal-safe.
    pub fn request(&self) -> FlagRequest {
        self.record(u64::MAX)
    }

    /// Records a checkpoint request made at `now` (a handler may read the
    /// clock with `clock_gettime`, which is async-signal-safe); the
    /// coordinator reports the time from here to the progress point.
    /// Async-signal-safe.
    pub fn request_at(&self, now: Instant) -> FlagRequest {
        self.record(now.as_micros())
    }

    fn record(&self, at: u64) -> FlagRequest {
        match self
            .state
            .compare_exchange(IDLE, SETTING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.at_lo.store(at as u32, Ordering::Relaxed);
                self.at_hi.store((at >> 32) as u32, Ordering::Relaxed);
                self.state.store(REQUESTED, Ordering::Release);
                FlagRequest::Requested
            }
            Err(RUNNING) => {
                // A CAS loop: lock-free, and saturating so it never wraps.
                let _ = self
                    .ignored
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_add(1))
                    });
                FlagRequest::AlreadyCheckpointing
            }
            Err(_) => FlagRequest::AlreadyRequested,
        }
    }

    /// Takes a pending request, marking a checkpoint as running. Returns
    /// `None` if no request is pending, else the request's timestamp if it
    /// had one. Called by the coordinator at the progress point.
    pub(crate) fn take(&self) -> Option<Option<Instant>> {
        self.state
            .compare_exchange(REQUESTED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let lo = u64::from(self.at_lo.load(Ordering::Relaxed));
        let hi = u64::from(self.at_hi.load(Ordering::Relaxed));
        let at = (hi << 32) | lo;
        Some((at != u64::MAX).then_some(Instant::from_micros(at)))
    }

    /// Ends the running checkpoint: the flag is idle again.
    pub(crate) fn finish(&self) {
        let _ = self
            .state
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether a request waits for the next progress point.
    pub fn is_requested(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), SETTING | REQUESTED)
    }

    /// Whether a checkpoint is running in this process.
    pub fn is_checkpointing(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// How many requests arrived while a checkpoint was running (saturating).
    pub fn ignored(&self) -> u32 {
        self.ignored.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_take_finish() {
        static FLAG: CheckpointFlag = CheckpointFlag::new();
        assert_eq!(FLAG.take(), None);
        assert_eq!(FLAG.request(), FlagRequest::Requested);
        assert!(FLAG.is_requested());
        assert_eq!(FLAG.request(), FlagRequest::AlreadyRequested);
        assert_eq!(FLAG.take(), Some(None));
        assert!(FLAG.is_checkpointing());
        assert_eq!(FLAG.request(), FlagRequest::AlreadyCheckpointing);
        assert_eq!(FLAG.request(), FlagRequest::AlreadyCheckpointing);
        assert_eq!(FLAG.ignored(), 2);
        assert_eq!(FLAG.take(), None);
        FLAG.finish();
        assert!(!FLAG.is_checkpointing());
        let at = Instant::from_micros(0x1_2345_6789);
        assert_eq!(FLAG.request_at(at), FlagRequest::Requested);
        assert_eq!(FLAG.take(), Some(Some(at)));
        FLAG.finish();
        assert_eq!(FLAG.request(), FlagRequest::Requested);
        assert_eq!(FLAG.take(), Some(None));
    }

    #[test]
    fn ignored_counter_saturates() {
        let flag = CheckpointFlag::new();
        flag.request();
        flag.take();
        flag.ignored.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(flag.request(), FlagRequest::AlreadyCheckpointing);
        assert_eq!(flag.ignored(), u32::MAX);
    }

    #[test]
    fn handler_races_with_take_on_other_threads() {
        extern crate std;
        static FLAG: CheckpointFlag = CheckpointFlag::new();
        let setter = std::thread::spawn(|| {
            for i in 0..10_000u64 {
                FLAG.request_at(Instant::from_micros(i));
            }
        });
        let mut taken = 0;
        for _ in 0..10_000 {
            if let Some(at) = FLAG.take() {
                // A taken request always carries a complete timestamp.
                assert!(at.is_some_and(|t| t.as_micros() < 10_000));
                taken += 1;
                FLAG.finish();
            }
        }
        setter.join().unwrap();
        if FLAG.take().is_some() {
            taken += 1;
        }
        assert!(taken >= 1);
    }
}
