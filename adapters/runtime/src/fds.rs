//! File descriptors: the daemon's limit, and whether a job fits in it.
//!
//! The daemon raises its soft `RLIMIT_NOFILE` to the hard limit when it
//! starts (the ranks get the soft limit they would have had back, see
//! [`original`]), and refuses a job whose ranks cannot all be served within
//! the limit, naming it, rather than failing later checkpoints with
//! EMFILE.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::sync::atomic::{AtomicU64, Ordering};

static LIMIT: AtomicU64 = AtomicU64::new(0);
static ORIGINAL_SOFT: AtomicU64 = AtomicU64::new(0);
static HARD: AtomicU64 = AtomicU64::new(0);

/// Descriptors the daemon holds whatever the job's size: the standard
/// streams, listeners, inotify, locks, the store's directories, the
/// reserve, a log file, and the short-lived ones of a publication.
pub const BASE: u64 = 24;

/// Descriptors per rank: its stdout and stderr pipes, its connection, and
/// its two FIFOs during a checkpoint.
pub const PER_RANK: u64 = 5;

/// Raises the soft limit on open files to the hard limit (once); the limit
/// in force afterwards.
pub fn raise() -> u64 {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        ORIGINAL_SOFT.store(soft, Ordering::Relaxed);
        HARD.store(hard, Ordering::Relaxed);
        let now = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            hard
        } else {
            soft
        };
        LIMIT.store(now, Ordering::Relaxed);
    }
    limit()
}

/// The soft limit on open files (as raised, once [`raise`] ran).
pub fn limit() -> u64 {
    match LIMIT.load(Ordering::Relaxed) {
        0 => getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft),
        n => n,
    }
}

/// The limits before [`raise`]: (soft, hard); `None` if it did not run.
pub fn original() -> Option<(u64, u64)> {
    match ORIGINAL_SOFT.load(Ordering::Relaxed) {
        0 => None,
        soft => Some((soft, HARD.load(Ordering::Relaxed))),
    }
}

/// Descriptors a job of `nranks` ranks needs, with `controls` control
/// connections.
pub fn needed(nranks: u32, controls: usize) -> u64 {
    BASE + PER_RANK * u64::from(nranks) + controls as u64
}

/// Whether `nranks` ranks fit in the limit, with room for at least
/// `controls` control connections; else why not.
pub fn check(nranks: u32, controls: usize) -> Result<(), String> {
    let need = needed(nranks, controls);
    let limit = limit();
    if need > limit {
        return Err(format!(
            "-n {nranks} needs about {need} file descriptors, and the limit is {limit} \
             (ulimit -n; the hard limit is {}): raise it or run fewer ranks",
            HARD.load(Ordering::Relaxed).max(limit)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_that_cannot_fit_are_refused_naming_the_limit() {
        let limit = raise();
        assert!(limit >= original().map_or(0, |o| o.0));
        assert!(check(1, 4).is_ok() || limit < needed(1, 4));
        let too_many = u32::try_from(limit / PER_RANK + 1).unwrap_or(u32::MAX);
        let e = check(too_many, 4).unwrap_err();
        assert!(e.contains(&format!("the limit is {limit}")), "{e}");
    }
}
