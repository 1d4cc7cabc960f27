//! The checkpoint signal (docs/PROTOCOL.md §3): a handler that only sets the
//! core's lock-free flag, installed with a check for handlers already there.
//!
//! Runtimes and language runtimes often own SIGUSR1 or SIGUSR2 already.
//! Installing over their handler would silently break them, so
//! [`install`] refuses, naming the signal, unless the caller asks to chain:
//! then the previous handler runs after ours, with the same arguments.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::time::{ClockId, clock_gettime};
use snapc_core::app::CheckpointFlag;
use snapc_core::time::Instant;
use std::ffi::c_int;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The process's checkpoint-request flag; signal handlers are process-wide, so it is too.
pub static CHECKPOINT_FLAG: CheckpointFlag = CheckpointFlag::new();

/// The adapter's clock: CLOCK_MONOTONIC in microseconds (async-signal-safe to read).
pub fn now() -> Instant {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Instant::ZERO, |ts| {
        let micros = (ts.tv_sec() as u64).saturating_mul(1_000_000) + ts.tv_nsec() as u64 / 1_000;
        Instant::from_micros(micros)
    })
}

/// Why the handler could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The name or number is not a signal this platform has.
    #[error("unknown signal {0:?} (use a name such as SIGUSR1 or USR1, or a number)")]
    Unknown(String),
    /// Another handler is installed and chaining was not asked for.
    #[error(
        "{0} already has a handler installed; choose another signal (SNAPC_SIGNAL) or allow chaining to it"
    )]
    Taken(Signal),
    /// snapc's handler is already installed in this process.
    #[error("the snapc checkpoint handler is already installed (on {0})")]
    AlreadyInstalled(Signal),
    /// sigaction failed.
    #[error("sigaction({0}): {1}")]
    Sys(Signal, nix::Error),
}

/// Parses a signal by name (`SIGUSR1`, `usr1`) or number (`10`).
pub fn parse_signal(text: &str) -> Result<Signal, SignalError> {
    let t = text.trim();
    if let Ok(n) = t.parse::<c_int>() {
        return Signal::try_from(n).map_err(|_| SignalError::Unknown(text.into()));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| SignalError::Unknown(text.into()))
}

/// The previous handler, for chaining: 0 none, else a function pointer.
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
/// Whether the previous handler takes (signo, info, context).
static PREVIOUS_SIGINFO: AtomicBool = AtomicBool::new(false);
/// The installed signal and the action it replaced.
static INSTALLED: Mutex<Option<(Signal, SigAction)>> = Mutex::new(None);

extern "C" fn on_signal(
    signo: c_int,
    info: *mut nix::libc::siginfo_t,
    ctx: *mut nix::libc::c_void,
) {
    // Async-signal-safe only: a clock read, atomics, one write(2) to wake a
    // waiter, and the chained call.
    let _ = CHECKPOINT_FLAG.request_at(now());
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; `fd` is the write end of
        // the wake-up pipe, which is never closed once created. A full pipe
        // (EAGAIN) already wakes the waiter.
        let _ = unsafe { nix::libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
    let prev = PREVIOUS.load(Ordering::Acquire);
    if prev != 0 {
        if PREVIOUS_SIGINFO.load(Ordering::Acquire) {
            // SAFETY: `prev` was read from the previous sigaction as an
            // SA_SIGINFO handler, so it has this signature.
            let f: extern "C" fn(c_int, *mut nix::libc::siginfo_t, *mut nix::libc::c_void) =
                unsafe { std::mem::transmute(prev) };
            f(signo, info, ctx);
        } else {
            // SAFETY: `prev` was read from the previous sigaction as a plain handler.
            let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(prev) };
            f(signo);
        }
    }
}

/// Installs the checkpoint handler on `signal`. With `chain`, a handler
/// already there keeps running after ours; without it, its presence is an
/// error. SIG_IGN and SIG_DFL are replaced.
pub fn install(signal: Signal, chain: bool) -> Result<(), SignalError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((sig, _)) = *installed {
        return Err(SignalError::AlreadyInstalled(sig));
    }
    let ours = SigAction::new(
        SigHandler::SigAction(on_signal),
        SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler only touches atomics and the monotonic clock.
    let previous = unsafe { sigaction(signal, &ours) }.map_err(|e| SignalError::Sys(signal, e))?;
    let (prev, siginfo) = match previous.handler() {
        SigHandler::SigDfl | SigHandler::SigIgn => (0, false),
        SigHandler::Handler(f) => (f as usize, false),
        SigHandler::SigAction(f) => (f as usize, true),
    };
    if prev != 0 && !chain {
        // Put theirs back before refusing.
        // SAFETY: restoring the action that was there.
        let _ = unsafe { sigaction(signal, &previous) };
        return Err(SignalError::Taken(signal));
    }
    PREVIOUS_SIGINFO.store(siginfo, Ordering::Release);
    PREVIOUS.store(prev, Ordering::Release);
    *installed = Some((signal, previous));
    Ok(())
}

/// A write to a FIFO whose reader is gone must be an EPIPE error, not the
/// end of the process: ignore SIGPIPE unless the application handles it.
/// (Rust programs start with it ignored; C hosts may not.)
pub fn ignore_sigpipe() {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no code; a handler the application set is put back.
    if let Ok(previous) = unsafe { sigaction(Signal::SIGPIPE, &ignore) }
        && !matches!(previous.handler(), SigHandler::SigDfl | SigHandler::SigIgn)
    {
        // SAFETY: restoring the application's own handler.
        let _ = unsafe { sigaction(Signal::SIGPIPE, &previous) };
    }
}

/// The write end of the wake-up pipe the handler writes a byte to (-1: none yet).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The wake-up pipe (read end, write end), created by the first waiter and
/// kept for the process's life (the handler may write to it at any time);
/// `None` if it could not be created.
static WAKE_PIPE: OnceLock<Option<(OwnedFd, OwnedFd)>> = OnceLock::new();

/// Waits until a checkpoint request is pending ([`CheckpointFlag::is_requested`])
/// or `timeout` has passed; returns whether one is pending.
///
/// The first call creates a non-blocking pipe the handler writes a byte to
/// after setting the flag, so that the wait wakes whichever thread the
/// signal was delivered to. Without one (no file descriptor left) it naps
/// 1 ms at a time.
pub fn wait_requested(timeout: Duration) -> bool {
    use nix::fcntl::OFlag;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now().checked_add(timeout);
    let pipe = WAKE_PIPE.get_or_init(|| {
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .inspect_err(|e| log::warn!("checkpoint wake-up pipe: {e}; waiting in 1 ms naps"))
            .ok()
    });
    if let Some((_, tx)) = pipe {
        // Armed before the flag is checked: a signal from here on writes a byte.
        WAKE_FD.store(tx.as_raw_fd(), Ordering::Release);
    }
    loop {
        if CHECKPOINT_FLAG.is_requested() {
            return true;
        }
        let left = deadline.map_or(Duration::from_secs(1), |d| {
            d.saturating_duration_since(std::time::Instant::now())
        });
        if left.is_zero() {
            return false;
        }
        match pipe {
            Some((rx, _)) => {
                // At most a second per poll; the loop checks the flag again.
                let ms = u16::try_from(left.as_micros().div_ceil(1000).min(1000)).unwrap_or(1000);
                let mut fds = [PollFd::new(rx.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(ms));
                let mut drain = [0u8; 64];
                while matches!(nix::unistd::read(rx, &mut drain), Ok(n) if n > 0) {}
            }
            None => std::thread::sleep(left.min(Duration::from_millis(1))),
        }
    }
}

/// Restores the action [`install`] replaced.
pub fn uninstall() -> Result<(), SignalError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((signal, previous)) = installed.take() {
        // SAFETY: restoring the action that was there before install.
        unsafe { sigaction(signal, &previous) }.map_err(|e| SignalError::Sys(signal, e))?;
        PREVIOUS.store(0, Ordering::Release);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::raise;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn parses_names_and_numbers() {
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("usr2").unwrap(), Signal::SIGUSR2);
        assert_eq!(parse_signal("10").unwrap(), Signal::try_from(10).unwrap());
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    static THEIRS: AtomicU32 = AtomicU32::new(0);
    extern "C" fn theirs(_: c_int) {
        THEIRS.fetch_add(1, Ordering::SeqCst);
    }

    /// One test owns the process-wide handler state, in sequence.
    #[test]
    fn install_refuses_a_taken_signal_unless_chaining() {
        let sig = Signal::SIGUSR2;
        // SAFETY: the test handler only increments an atomic.
        unsafe {
            sigaction(
                sig,
                &SigAction::new(
                    SigHandler::Handler(theirs),
                    SaFlags::empty(),
                    SigSet::empty(),
                ),
            )
        }
        .unwrap();
        let err = install(sig, false).unwrap_err();
        assert!(err.to_string().contains("SIGUSR2"), "{err}");
        raise(sig).unwrap();
        assert_eq!(THEIRS.load(Ordering::SeqCst), 1, "their handler was kept");
        assert!(!CHECKPOINT_FLAG.is_requested());

        install(sig, true).unwrap();
        assert!(matches!(
            install(sig, true),
            Err(SignalError::AlreadyInstalled(_))
        ));
        raise(sig).unwrap();
        assert!(CHECKPOINT_FLAG.is_requested(), "our handler set the flag");
        assert_eq!(THEIRS.load(Ordering::SeqCst), 2, "and chained to theirs");

        uninstall().unwrap();
        raise(sig).unwrap();
        assert_eq!(THEIRS.load(Ordering::SeqCst), 3, "theirs is back");
    }
}
