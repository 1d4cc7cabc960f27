//! The FIFO side of a [`LocalCoordinator`]: carries out its actions against
//! real FIFOs and signals, without blocking the caller's event loop except
//! for the short bounded opens and writes of one frame.
//!
//! Shared by `snapc checkpoint --pid` (`snapc_runtime::direct`) and the node daemon
//! (`snapc_runtime::daemon`); each owns the machine and the poll loop, and hands
//! this the FIFO actions. Reads are registered and completed from the
//! caller's `poll` ([`FifoIo::read_fds`], [`FifoIo::read_ready`]); the FIFO
//! names and stopped processes are checked at each [`FifoIo::tick`].
//!
//! The caller ticks when [`FifoIo::notify_fd`] (an inotify watch of the pipe
//! directory, while names are awaited) is readable, and at the latest after
//! [`FifoIo::tick_within`]: names are seen as soon as they are created rather
//! than at the next millisecond tick. Where inotify is not available the
//! tick interval stays [`WATCH_TICK`].
//!
//! The names used are the highest complete pair the process created after
//! the signal: a process ignores the signal while it still finishes its
//! previous handshake, so while the names have not appeared the signal is
//! repeated every [`RESIGNAL`]; a process handles at most one request at a
//! time, so a repeated signal never starts a second handshake.

use crate::fifo::{Channel, FifoError, PipeDir};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_core::local::{Action, IoError, LocalConfig, LocalCoordinator, SlotId};
use snapc_core::time::{Duration as CoreDuration, Instant as CoreInstant};
use snapc_core::wire::{ChannelNames, FifoKind, FifoName};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the signal is repeated while a process's FIFOs have not appeared.
pub const RESIGNAL: Duration = Duration::from_millis(50);

/// The local coordinator's configuration with every wait on a process's
/// FIFOs (the names, opening, each write, the response) and on its stop
/// bounded by `timeout`; the final state and the verdict keep their defaults.
pub fn local_config(timeout: Duration) -> LocalConfig {
    let t = CoreDuration::from(timeout);
    let mut config = LocalConfig::default();
    config.deadlines.fifos = t;
    config.deadlines.open = t;
    config.deadlines.write = t;
    config.deadlines.response = t;
    config.deadlines.stop = t;
    config
}

/// How often names and stopped processes are checked when nothing wakes the
/// caller sooner (stops always; names without inotify).
pub const WATCH_TICK: Duration = Duration::from_millis(1);

struct Pending {
    len: usize,
    buf: Vec<u8>,
}

/// The real-world half of a local coordinator.
pub struct FifoIo {
    pipe_dir: PipeDir,
    signal: Signal,
    /// The longest a single open or write may block.
    timeout: Duration,
    origin: Instant,
    channels: HashMap<SlotId, Channel>,
    /// The names each slot's process actually created.
    names: HashMap<SlotId, ChannelNames>,
    /// Slots waiting for their FIFO names: pid and when it was last signalled.
    watches: HashMap<SlotId, (u32, Instant)>,
    stops: HashMap<SlotId, u32>,
    reads: HashMap<SlotId, Pending>,
    /// Creations and renames in the pipe directory, if inotify is available.
    notify: Option<Arc<Inotify>>,
    /// The directory must be scanned at the next tick even without a
    /// notification (a watch just began: its names may exist already).
    rescan: bool,
}

/// The inotify watch of the last pipe directory used, shared by every
/// [`FifoIo`] of the process. Closing an inotify instance costs milliseconds
/// (the kernel waits for a grace period before it frees the group), which a
/// direct checkpoint would otherwise pay on every call; one instance is kept
/// for the process's life instead, and replaced when another directory (or
/// a new directory at the same path) is watched.
static DIR_WATCH: Mutex<Option<(DirId, Arc<Inotify>)>> = Mutex::new(None);

/// A directory's path and inode.
type DirId = (PathBuf, u64, u64);

/// An inotify watch for names appearing in `dir`, or `None` where inotify
/// cannot be had (the caller then ticks every [`WATCH_TICK`]). Two
/// coordinators watching the same directory at once share it: one may
/// consume the other's wakeup, which then sees the names at its next tick
/// (at the latest when it repeats the signal).
fn watch_dir(dir: &PipeDir) -> Option<Arc<Inotify>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.path()).ok()?;
    let id: DirId = (dir.path().to_path_buf(), meta.dev(), meta.ino());
    let mut cached = DIR_WATCH.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((cached_id, inotify)) = cached.as_ref()
        && *cached_id == id
    {
        return Some(Arc::clone(inotify));
    }
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| log::debug!("inotify: {e}; names are polled"))
        .ok()?;
    inotify
        .add_watch(
            dir.path(),
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR,
        )
        .map_err(|e| {
            log::debug!(
                "inotify watch {}: {e}; names are polled",
                dir.path().display()
            )
        })
        .ok()?;
    let inotify = Arc::new(inotify);
    *cached = Some((id, Arc::clone(&inotify)));
    Some(inotify)
}

impl FifoIo {
    /// FIFOs in `pipe_dir`, `signal` as the checkpoint signal, each open or
    /// write bounded by `timeout`; the machine's clock counts from `origin`.
    pub fn new(pipe_dir: PipeDir, signal: Signal, timeout: Duration, origin: Instant) -> Self {
        Self {
            notify: watch_dir(&pipe_dir),
            rescan: false,
            pipe_dir,
            signal,
            timeout,
            origin,
            channels: HashMap::new(),
            names: HashMap::new(),
            watches: HashMap::new(),
            stops: HashMap::new(),
            reads: HashMap::new(),
        }
    }

    /// The pipe directory.
    pub fn pipe_dir(&self) -> &PipeDir {
        &self.pipe_dir
    }

    /// The machine's time now.
    pub fn now(&self) -> CoreInstant {
        to_core(self.origin, Instant::now())
    }

    /// Wall-clock deadline of the machine's next timeout, capped at `cap` from now.
    pub fn deadline<const N: usize>(&self, lc: &LocalCoordinator<N>, cap: Duration) -> Instant {
        let now = self.now();
        let left = lc
            .poll_timeout()
            .map_or(CoreDuration::MAX, |d| d.saturating_duration_since(now));
        Instant::now() + Duration::from(left).min(cap)
    }

    /// The names slot `slot`'s process created for its current handshake.
    pub fn names_of(&self, slot: SlotId) -> Option<ChannelNames> {
        self.names.get(&slot).copied()
    }

    /// Whether names or stops are being watched (the caller should tick often).
    pub fn busy(&self) -> bool {
        !self.watches.is_empty() || !self.stops.is_empty()
    }

    /// The longest the caller may wait before the next [`tick`](Self::tick)
    /// (besides waking when [`notify_fd`](Self::notify_fd) is readable), or
    /// `None` when nothing is watched. With inotify, names need a tick only
    /// to repeat a signal; stopped processes are always polled.
    pub fn tick_within(&self) -> Option<Duration> {
        if !self.stops.is_empty() || (!self.watches.is_empty() && self.notify.is_none()) {
            return Some(WATCH_TICK);
        }
        self.watches
            .values()
            .map(|(_, signalled)| RESIGNAL.saturating_sub(signalled.elapsed()))
            .min()
    }

    /// While names are awaited, the fd that becomes readable when a name
    /// appears in the pipe directory: poll it for input, then tick.
    pub fn notify_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.notify, self.watches.is_empty()) {
            (Some(n), false) => Some(n.as_fd()),
            _ => None,
        }
    }

    /// Whether any FIFO is open.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Carries out `action`; returns it when it is not FIFO work
    /// ([`Action::SendToGc`], [`Action::Report`]) for the caller.
    pub fn execute<const N: usize>(
        &mut self,
        lc: &mut LocalCoordinator<N>,
        action: Action,
    ) -> Option<Action> {
        let now = self.now();
        match action {
            Action::Signal { slot, pid } => {
                if let Err(e) = kill(Pid::from_raw(pid as i32), self.signal) {
                    log::warn!("signal pid {pid}: {e}");
                    let _ = lc.handle_io_error(now, slot, IoError::Failed);
                }
            }
            Action::WatchFifos { slot, names } => {
                self.watches.insert(slot, (names.pid, Instant::now()));
                self.rescan = true;
            }
            Action::OpenFifos { slot, .. } => {
                let Some(names) = self.names.get(&slot).copied() else {
                    let _ = lc.handle_io_error(now, slot, IoError::Failed);
                    return None;
                };
                let deadline = self.deadline(lc, self.timeout);
                match Channel::open_local(&self.pipe_dir, names, deadline) {
                    Ok(ch) => {
                        self.channels.insert(slot, ch);
                        let _ = lc.handle_opened(self.now(), slot);
                    }
                    Err(e) => self.io_failed(lc, slot, &e),
                }
            }
            Action::Write { slot, bytes } => {
                let deadline = self.deadline(lc, self.timeout);
                let result = match self.channels.get(&slot) {
                    Some(ch) => ch.tx.write_all(&bytes, deadline),
                    None => Err(FifoError::PeerGone {
                        path: PathBuf::new(),
                    }),
                };
                match result {
                    Ok(()) => {
                        let _ = lc.handle_written(self.now(), slot);
                    }
                    Err(e) => self.io_failed(lc, slot, &e),
                }
            }
            Action::Read { slot, len } => {
                self.reads.insert(
                    slot,
                    Pending {
                        len,
                        buf: Vec::with_capacity(len),
                    },
                );
            }
            Action::WaitStopped { slot, pid } => {
                // The runtime stops the process; the machine waits for it.
                if let Err(e) = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP) {
                    log::warn!("stop pid {pid}: {e}");
                }
                self.stops.insert(slot, pid);
            }
            Action::Close { slot } => {
                self.channels.remove(&slot);
                self.watches.remove(&slot);
                self.reads.remove(&slot);
                self.stops.remove(&slot);
            }
            other @ (Action::SendToGc(_) | Action::Report(_)) => return Some(other),
        }
        None
    }

    fn io_failed<const N: usize>(
        &mut self,
        lc: &mut LocalCoordinator<N>,
        slot: SlotId,
        e: &FifoError,
    ) {
        log::debug!("slot {}: {e}", slot.index());
        let now = self.now();
        match e {
            FifoError::Timeout { .. } => {
                lc.handle_timeout(lc.poll_timeout().map_or(now, |d| d.max(now)));
            }
            FifoError::PeerGone { .. } => {
                let _ = lc.handle_io_error(now, slot, IoError::Eof);
            }
            _ => {
                let _ = lc.handle_io_error(now, slot, IoError::Failed);
            }
        }
    }

    /// Checks watched names (one scan of the pipe directory) and stopped
    /// processes, and repeats signals that were not taken yet.
    ///
    /// With inotify the directory is scanned only when something was
    /// created in it, a watch just began, or a signal is due to be repeated
    /// (so a notification another coordinator consumed delays the names by
    /// at most [`RESIGNAL`]); without it, at every tick.
    pub fn tick<const N: usize>(&mut self, lc: &mut LocalCoordinator<N>) {
        let mut scan = std::mem::take(&mut self.rescan) || self.notify.is_none();
        if let Some(n) = &self.notify {
            // Consumed before the scan: a name created after it leaves the
            // fd readable for the caller's next poll.
            while matches!(n.read_events(), Ok(events) if !events.is_empty()) {
                scan = true;
            }
        }
        scan = scan
            || self
                .watches
                .values()
                .any(|(_, signalled)| signalled.elapsed() >= RESIGNAL);
        if !self.watches.is_empty() && scan {
            let pairs = complete_pairs(&self.pipe_dir);
            let watches: Vec<(SlotId, u32, Instant)> = self
                .watches
                .iter()
                .map(|(s, (p, t))| (*s, *p, *t))
                .collect();
            for (slot, pid, signalled) in watches {
                if let Some(&n) = pairs.get(&pid) {
                    self.watches.remove(&slot);
                    self.names.insert(slot, ChannelNames { pid, n });
                    let _ = lc.handle_fifos_exist(self.now(), slot);
                } else if signalled.elapsed() >= RESIGNAL {
                    let _ = kill(Pid::from_raw(pid as i32), self.signal);
                    self.watches.insert(slot, (pid, Instant::now()));
                }
            }
        }
        let stops: Vec<(SlotId, u32)> = self.stops.iter().map(|(s, p)| (*s, *p)).collect();
        for (slot, pid) in stops {
            if is_stopped(pid) {
                self.stops.remove(&slot);
                let _ = lc.handle_stopped(self.now(), slot);
            }
        }
    }

    /// The fds of pending reads, to poll for input.
    pub fn read_fds(&self) -> Vec<(SlotId, BorrowedFd<'_>)> {
        self.reads
            .keys()
            .filter_map(|slot| self.channels.get(slot).map(|ch| (*slot, ch.rx.fd())))
            .collect()
    }

    /// Ends reads whose channel is gone: they cannot complete.
    pub fn fail_orphan_reads<const N: usize>(&mut self, lc: &mut LocalCoordinator<N>) {
        let orphans: Vec<SlotId> = self
            .reads
            .keys()
            .filter(|s| !self.channels.contains_key(s))
            .copied()
            .collect();
        for slot in orphans {
            self.reads.remove(&slot);
            let _ = lc.handle_io_error(self.now(), slot, IoError::Failed);
        }
    }

    /// Reads what arrived for `slot` and feeds the frame once it is whole.
    pub fn read_ready<const N: usize>(&mut self, lc: &mut LocalCoordinator<N>, slot: SlotId) {
        let (Some(ch), Some(p)) = (self.channels.get(&slot), self.reads.get_mut(&slot)) else {
            return;
        };
        let mut chunk = [0u8; 64];
        let want = p.len.saturating_sub(p.buf.len()).min(chunk.len());
        match ch.rx.read_available(&mut chunk[..want]) {
            Ok(n) => p.buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                self.reads.remove(&slot);
                self.io_failed(lc, slot, &e);
                return;
            }
        }
        if p.buf.len() >= p.len {
            let bytes = std::mem::take(&mut p.buf);
            self.reads.remove(&slot);
            let _ = lc.handle_read(self.now(), slot, &bytes);
        }
    }
}

/// The machine's instant of `t`, counting from `origin`.
pub fn to_core(origin: Instant, t: Instant) -> CoreInstant {
    CoreInstant::from_micros(
        u64::try_from(t.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX),
    )
}

/// For each pid, the highest `n` for which both FIFOs exist.
fn complete_pairs(dir: &PipeDir) -> HashMap<u32, u32> {
    let mut reads: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut writes: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Ok(f) = FifoName::parse(name) {
            match f.kind {
                FifoKind::ProgRead => reads.entry(f.pid).or_default().push(f.n),
                FifoKind::ProgWrite => writes.entry(f.pid).or_default().push(f.n),
            }
        }
    }
    reads
        .into_iter()
        .filter_map(|(pid, ns)| {
            let w = writes.get(&pid)?;
            ns.into_iter()
                .filter(|n| w.contains(n))
                .max()
                .map(|n| (pid, n))
        })
        .collect()
}

/// Whether `pid` is stopped (state T or t in /proc).
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the parenthesised command name.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c == 'T' || c == 't')
    })
}
