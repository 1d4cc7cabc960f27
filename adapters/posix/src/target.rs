//! What a local coordinator can learn about a process and about the FIFOs
//! in its pipe directory, from `/proc` (Linux), without touching either:
//! its state (running, stopped, gone), whether it handles the checkpoint
//! signal and whether that signal is still pending, its command line and
//! environment, and who holds a FIFO open or locked.
//!
//! Every function answers "don't know" (`None`, or nothing found) rather
//! than failing when `/proc` cannot tell (another user's process, a
//! `hidepid` mount): callers treat that as the cautious case.

use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;

/// A process's scheduling state, as `/proc/<pid>/stat` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Alive and not stopped: running, sleeping, in disk sleep, idle (the
    /// state letter).
    Alive(char),
    /// Stopped by a signal (`T`) or by a tracer (`t`).
    Stopped,
    /// Exited, not yet reaped by its parent.
    Exited,
    /// No such process.
    Gone,
}

/// The state of `pid`.
pub fn state(pid: u32) -> State {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return State::Gone;
    };
    // The state follows the parenthesised command name, which may itself
    // hold parentheses and spaces.
    match stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
    {
        Some('T' | 't') => State::Stopped,
        Some('Z' | 'X' | 'x') => State::Exited,
        Some(c) => State::Alive(c),
        None => State::Gone,
    }
}

/// One hexadecimal signal mask line of `/proc/<pid>/status` (`SigCgt`,
/// `SigPnd`, ...).
fn status_mask(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        u64::from_str_radix(value.trim(), 16).ok()
    })
}

fn bit(signal: Signal) -> u64 {
    // Bit n-1 stands for signal n.
    1u64 << ((signal as i32 - 1).clamp(0, 63))
}

/// Whether `pid` has a handler for `signal` (`SigCgt`); `None` when it
/// cannot be told.
pub fn handles(pid: u32, signal: Signal) -> Option<bool> {
    status_mask(pid, "SigCgt").map(|m| m & bit(signal) != 0)
}

/// Whether `signal` is still pending for `pid` (sent, not yet delivered:
/// the process has not run since, or blocks it).
pub fn pending(pid: u32, signal: Signal) -> bool {
    ["SigPnd", "ShdPnd"]
        .iter()
        .any(|k| status_mask(pid, k).is_some_and(|m| m & bit(signal) != 0))
}

/// The command line of `pid`, its arguments joined by spaces (at most 100
/// characters).
pub fn command(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if text.is_empty() {
        return None;
    }
    let mut short: String = text.chars().take(100).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    Some(short)
}

/// `pid` and, when known, its command line: `pid 12 (snapc run -n 2 ...)`.
pub fn who(pid: u32) -> String {
    match command(pid) {
        Some(c) => format!("pid {pid} ({c})"),
        None => format!("pid {pid}"),
    }
}

/// The value of `name` in the environment `pid` started with.
pub fn environ_var(pid: u32, name: &str) -> Option<OsString> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    raw.split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|v| OsString::from_vec(v.to_vec()))
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// The device (`st_dev`).
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

/// The `flock` locks held on `files`: (holder pid, file). The pid is the
/// process that took the lock, as `/proc/locks` reports it.
pub fn flock_holders(files: &[FileKey]) -> Vec<(u32, FileKey)> {
    if files.is_empty() {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            // "1: FLOCK  ADVISORY  WRITE 4242 00:19:12345 0 EOF"; lines
            // with "->" are waiters, not holders.
            let mut f = line.split_whitespace().skip(1);
            if f.next()? != "FLOCK" {
                return None;
            }
            let pid: u32 = f.nth(2)?.parse().ok()?;
            let mut dev = f.next()?.split(':');
            let major = u64::from_str_radix(dev.next()?, 16).ok()?;
            let minor = u64::from_str_radix(dev.next()?, 16).ok()?;
            let ino: u64 = dev.next()?.parse().ok()?;
            files
                .iter()
                .find(|k| {
                    k.ino == ino
                        && nix::sys::stat::major(k.dev) == major
                        && nix::sys::stat::minor(k.dev) == minor
                })
                .map(|k| (pid, *k))
        })
        .collect()
}

/// Whether `pid` has one of `files` open (`None`: its fds cannot be read).
pub fn holds(pid: u32, files: &[FileKey]) -> Option<bool> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.flatten().any(|e| {
        std::fs::metadata(e.path()).is_ok_and(|m| {
            files.contains(&FileKey {
                dev: m.dev(),
                ino: m.ino(),
            })
        })
    }))
}

/// The processes of this user, other than those in `skip`, that hold one
/// of `files` open. A scan of every process's fds: for the rare case where
/// names exist that nobody should hold.
pub fn fd_holders(files: &[FileKey], skip: &[u32]) -> Vec<u32> {
    if files.is_empty() {
        return Vec::new();
    }
    let uid = nix::unistd::Uid::effective().as_raw();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = procs
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let mine = e.metadata().is_ok_and(|m| m.uid() == uid);
            (mine && !skip.contains(&pid) && holds(pid, files) == Some(true)).then_some(pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// A short description of `pid`'s state for error messages, e.g. "pid 12
/// is stopped" or "pid 12 is running (S) and handles SIGUSR1".
pub fn describe(pid: u32, signal: Signal) -> String {
    match state(pid) {
        State::Gone => format!("pid {pid} is gone"),
        State::Exited => format!("pid {pid} has exited"),
        State::Stopped => format!("pid {pid} is stopped"),
        State::Alive(c) => match handles(pid, signal) {
            Some(true) => format!("pid {pid} is running ({c}) and handles {}", signal.as_str()),
            Some(false) => format!(
                "pid {pid} is running ({c}) but does not handle {}",
                signal.as_str()
            ),
            None => format!("pid {pid} is running ({c})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_described() {
        let me = std::process::id();
        assert!(matches!(state(me), State::Alive(_)));
        assert!(command(me).is_some());
        assert!(who(me).starts_with(&format!("pid {me} (")));
        assert!(describe(me, Signal::SIGUSR1).starts_with(&format!("pid {me} is running")));
        // A pid above the kernel's limit never exists.
        assert_eq!(state(u32::MAX), State::Gone);
        assert_eq!(handles(u32::MAX, Signal::SIGUSR1), None);
        assert_eq!(
            describe(u32::MAX, Signal::SIGUSR1),
            format!("pid {} is gone", u32::MAX)
        );
    }

    #[test]
    fn a_lock_and_an_open_fd_are_found() {
        use std::os::fd::AsRawFd;
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let m = file.metadata().unwrap();
        let key = FileKey {
            dev: m.dev(),
            ino: m.ino(),
        };
        let me = std::process::id();
        assert_eq!(holds(me, &[key]), Some(true));
        assert!(fd_holders(&[key], &[me]).is_empty());
        assert!(flock_holders(&[key]).is_empty());
        #[allow(deprecated)]
        nix::fcntl::flock(
            file.as_raw_fd(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        assert_eq!(flock_holders(&[key]), vec![(me, key)]);
    }
}
