//! The log of the `snapc` command and its node daemon.
//!
//! `snapc` installs `env_logger` behind the `log` facade that `snapc-core`
//! (with its `log` feature), `snapc-posix` and this crate log through:
//!
//! - levels per module from `SNAPC_LOG`, else `RUST_LOG`, in `env_logger`'s
//!   syntax (`debug`, `snapc::daemon=warn,snapc_core=debug`, ...); by
//!   default [`DEFAULT_FILTER`]: warnings and errors of everything, and
//!   the daemon's own account of the job (target `snapc::daemon`) at
//!   `info`;
//! - each line: a UTC timestamp (milliseconds), the level, the job's name
//!   once the daemon knows it, the module, the message;
//! - on standard error, through [`crate::out`] (so a stalled terminal or
//!   pipe never blocks the daemon), or in the file given by `--log`
//!   (created 0600, appended to, never through a symlink).
//!
//! The daemon's own lines use the target `snapc::daemon`. The ranks' output is not
//! log: it stays program output, `[rank] line` on the daemon's stdout and
//! stderr. [`Limiter`] keeps a peer from flooding the log with one warning.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The filter when neither `SNAPC_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "warn,snapc::daemon=info";

/// The daemon's own log target (a filter names a target by prefix: this
/// one is no prefix of a crate's modules).
pub const TARGET: &str = "snapc::daemon";

static JOB: OnceLock<String> = OnceLock::new();
static FILE: OnceLock<Mutex<File>> = OnceLock::new();

/// Where log lines go: the `--log` file once set, else standard error.
struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.get() {
            Some(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                // A full disk loses log lines, never the job.
                let _ = f.write_all(buf);
            }
            None => crate::out::err_bytes(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The filter in force: `SNAPC_LOG`, else `RUST_LOG`, else [`DEFAULT_FILTER`].
pub fn filter_spec() -> String {
    snapc_posix::app::log_filter_from_env().unwrap_or_else(|| DEFAULT_FILTER.to_string())
}

/// Installs the logger (once; later calls do nothing).
pub fn init() {
    let spec = filter_spec();
    let _ = env_logger::Builder::new()
        .parse_filters(&spec)
        .format(|buf, record| {
            let ts = buf.timestamp_millis();
            let level = record.level();
            let target = record.target();
            match JOB.get() {
                Some(job) => writeln!(buf, "{ts} {level:<5} [{job}] {target}: {}", record.args()),
                None => writeln!(buf, "{ts} {level:<5} {target}: {}", record.args()),
            }
        })
        .target(env_logger::Target::Pipe(Box::new(Sink)))
        .try_init();
}

/// Names the job on every line from now on.
pub fn set_job(job: &str) {
    let _ = JOB.set(job.to_string());
}

/// Sends the log to `path` from now on: created 0600 if missing, appended
/// to, refused if it is a symlink or not this user's regular file.
pub fn set_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("--log {}: {e}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("--log {}: {e}", path.display()))?;
    if !meta.is_file() || meta.uid() != nix::unistd::Uid::effective().as_raw() {
        return Err(format!(
            "--log {}: not a regular file of this user",
            path.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "--log {}: mode {:04o} lets others write to it",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    FILE.set(Mutex::new(f))
        .map_err(|_| "the log file is already set".to_string())
}

/// Keeps one kind of warning that a peer can trigger at will to a few
/// lines per window: the first [`Limiter::BURST`] of each window are
/// logged, the rest counted and mentioned with the next line logged.
#[derive(Debug, Clone)]
pub struct Limiter {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Limiter {
    /// Lines logged per window.
    pub const BURST: u32 = 5;
    /// The window.
    pub const WINDOW: Duration = Duration::from_secs(10);

    /// A limiter with nothing logged yet.
    pub const fn new() -> Self {
        Self {
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// Whether this occurrence is to be logged, with the number of lines
    /// suppressed since the last one that was.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= Self::WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < Self::BURST {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// The lines suppressed since the last one logged (counted as told).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }

    /// Logs `msg` at `level` if allowed, noting what was suppressed.
    pub fn log(&mut self, level: log::Level, msg: std::fmt::Arguments<'_>) {
        if let Some(n) = self.allow(Instant::now()) {
            if n > 0 {
                log::log!(target: TARGET, level, "{msg} ({n} similar lines suppressed)");
            } else {
                log::log!(target: TARGET, level, "{msg}");
            }
        }
    }
}

/// Warnings a peer can trigger at will, each kind (its key) kept to a few
/// lines per window by a [`Limiter`] of its own.
#[derive(Debug, Default)]
pub struct Warnings(std::collections::BTreeMap<&'static str, Limiter>);

impl Warnings {
    /// Logs a warning of kind `key`, if its limiter lets it through.
    pub fn warn(&mut self, key: &'static str, msg: std::fmt::Arguments<'_>) {
        self.0.entry(key).or_default().log(log::Level::Warn, msg);
    }

    /// At the end: says how many of each kind were not logged.
    pub fn close(&mut self) {
        for (key, l) in &mut self.0 {
            let n = l.take_suppressed();
            if n > 0 {
                log::warn!(target: TARGET, "{n} more {key} warnings were not logged");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limiter_lets_a_burst_through_per_window() {
        let mut l = Limiter::new();
        let t = Instant::now();
        let allowed = (0..100).filter(|_| l.allow(t).is_some()).count();
        assert_eq!(allowed, Limiter::BURST as usize);
        assert_eq!(l.allow(t + Limiter::WINDOW), Some(95));
        assert_eq!(l.allow(t + Limiter::WINDOW), Some(0));
    }
}
