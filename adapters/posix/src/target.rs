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

/// A `/proc` file, read into a buffer its usual size fits in: open, one
/// `read`, close. `/proc` reports no size (so no `stat` first), and it
/// produces a small file whole at the first read: a read that does not
/// fill the buffer has it all; one that does is followed by more (a
/// coordinator reads one per process per checkpoint).
fn read_proc(path: &str, size: usize) -> Option<Vec<u8>> {
    use nix::fcntl::{OFlag, open};
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let mut buf = vec![0u8; size.max(64)];
    let mut len = 0;
    while let Some(rest) = buf.get_mut(len..) {
        match nix::unistd::read(&fd, rest) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    break;
                }
                buf.resize(buf.len() * 2, 0);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    Some(buf)
}

/// The fields of `/proc/<pid>/stat` after the command name (which may
/// itself hold parentheses and spaces): the state is the first.
fn stat_fields(stat: &[u8]) -> Option<impl Iterator<Item = &str>> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    Some(rest.split_ascii_whitespace())
}

fn state_of(letter: Option<char>) -> State {
    match letter {
        Some('T' | 't') => State::Stopped,
        Some('Z' | 'X' | 'x') => State::Exited,
        Some(c) => State::Alive(c),
        None => State::Gone,
    }
}

/// The state of `pid`.
pub fn state(pid: u32) -> State {
    let Some(stat) = read_proc(&format!("/proc/{pid}/stat"), 1024) else {
        return State::Gone;
    };
    state_of(stat_fields(&stat).and_then(|mut f| f.next()?.chars().next()))
}

/// When `pid` started, in clock ticks since boot (`/proc/<pid>/stat`'s
/// 22nd field): with the pid, it names one process, so that a pid used
/// again by another process is told apart.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = read_proc(&format!("/proc/{pid}/stat"), 1024)?;
    let stat = String::from_utf8_lossy(&stat);
    // Fields after the command name: state is the 3rd field, start time
    // the 22nd.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What `/proc/<pid>/status` says of a process's state and signals, read
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Its state.
    pub state: State,
    /// Signals with a handler (`SigCgt`), if known.
    caught: Option<u64>,
    /// Signals pending for it or its threads (`SigPnd | ShdPnd`), when
    /// read ([`status`]; [`brief`] does not).
    pending: Option<u64>,
}

impl Status {
    /// Whether it has a handler for `signal`; `None` when it cannot be told.
    pub fn handles(&self, signal: Signal) -> Option<bool> {
        self.caught.map(|m| m & bit(signal) != 0)
    }

    /// Whether `signal` was sent and not yet delivered (it has not run
    /// since, or blocks it); false when not known ([`brief`]).
    pub fn pending(&self, signal: Signal) -> bool {
        self.pending.is_some_and(|p| p & bit(signal) != 0)
    }
}

/// The state of `pid` and the signals it handles, from `/proc/<pid>/stat`
/// (half the cost of `status`; its handled signals are those up to 31,
/// every signal a [`Signal`] names); pending signals are not known.
pub fn brief(pid: u32) -> Status {
    let gone = Status {
        state: State::Gone,
        caught: None,
        pending: None,
    };
    let Some(stat) = read_proc(&format!("/proc/{pid}/stat"), 1024) else {
        return gone;
    };
    let Some(mut fields) = stat_fields(&stat) else {
        return gone;
    };
    // Field 34 of the file (the 32nd after the name): caught signals, in decimal.
    Status {
        state: state_of(fields.next().and_then(|f| f.chars().next())),
        caught: fields.nth(30).and_then(|v| v.parse().ok()),
        pending: None,
    }
}

/// The status of `pid` (state [`State::Gone`] when there is none).
pub fn status(pid: u32) -> Status {
    let Some(text) = read_proc(&format!("/proc/{pid}/status"), 4096) else {
        return Status {
            state: State::Gone,
            caught: None,
            pending: None,
        };
    };
    let text = String::from_utf8_lossy(&text);
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    let mask = |key: &str| field(key).and_then(|v| u64::from_str_radix(v, 16).ok());
    Status {
        state: state_of(field("State").and_then(|v| v.chars().next())),
        caught: mask("SigCgt"),
        pending: Some(mask("SigPnd").unwrap_or(0) | mask("ShdPnd").unwrap_or(0)),
    }
}

fn bit(signal: Signal) -> u64 {
    // Bit n-1 stands for signal n.
    1u64 << ((signal as i32 - 1).clamp(0, 63))
}

/// Whether `pid` has a handler for `signal` (`SigCgt`); `None` when it
/// cannot be told.
pub fn handles(pid: u32, signal: Signal) -> Option<bool> {
    status(pid).handles(signal)
}

/// The command line of `pid`, its arguments joined by spaces (at most 100
/// characters).
pub fn command(pid: u32) -> Option<String> {
    let raw = read_proc(&format!("/proc/{pid}/cmdline"), 1024)?;
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

/// The environment `pid` started with (`None`: it cannot be read).
pub fn environ(pid: u32) -> Option<Environ> {
    read_proc(&format!("/proc/{pid}/environ"), 4096).map(Environ)
}

/// A process's environment, as `/proc/<pid>/environ` holds it.
#[derive(Debug, Clone)]
pub struct Environ(Vec<u8>);

impl Environ {
    /// The variables whose names start with `prefix` (one pass over the
    /// environment), as (name, value).
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, OsString)> {
        let mut out = Vec::new();
        let mut rest = self.0.as_slice();
        while !rest.is_empty() {
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let (entry, next) = rest.split_at(end);
            rest = next.get(1..).unwrap_or_default();
            let Some(tail) = entry.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let Some(eq) = tail.iter().position(|b| *b == b'=') else {
                continue;
            };
            let (name, value) = entry.split_at(prefix.len() + eq);
            if let Ok(name) = std::str::from_utf8(name) {
                out.push((name.to_string(), OsString::from_vec(value[1..].to_vec())));
            }
        }
        out
    }

    /// The value of `name`, if set.
    pub fn var(&self, name: &str) -> Option<OsString> {
        let prefix = format!("{name}=");
        self.0
            .split(|b| *b == 0)
            .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
            .map(|v| OsString::from_vec(v.to_vec()))
    }
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
    let st = status(pid);
    match st.state {
        State::Gone => format!("pid {pid} is gone"),
        State::Exited => format!("pid {pid} has exited"),
        State::Stopped => format!("pid {pid} is stopped"),
        State::Alive(c) => match st.handles(signal) {
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
        let env = environ(me).unwrap();
        assert_eq!(env.var("PATH"), std::env::var_os("PATH"));
        assert_eq!(env.var("SNAPC_NO_SUCH_VARIABLE"), None);
        let path = env.with_prefix("PAT");
        assert!(
            path.iter()
                .any(|(n, v)| n == "PATH" && Some(v) == std::env::var_os("PATH").as_ref())
        );
        assert!(path.iter().all(|(n, _)| n.starts_with("PAT")));
        assert!(who(me).starts_with(&format!("pid {me} (")));
        assert!(describe(me, Signal::SIGUSR1).starts_with(&format!("pid {me} is running")));
        // A pid above the kernel's limit never exists.
        assert_eq!(state(u32::MAX), State::Gone);
        assert_eq!(status(u32::MAX).state, State::Gone);
        assert!(matches!(status(me).state, State::Alive(_)));
        assert_eq!(brief(u32::MAX).state, State::Gone);
        // The two readings agree on what this process handles.
        let (full, short) = (status(me), brief(me));
        assert!(matches!(short.state, State::Alive(_)));
        for sig in Signal::iterator() {
            assert_eq!(short.handles(sig), full.handles(sig), "{sig}");
        }
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
