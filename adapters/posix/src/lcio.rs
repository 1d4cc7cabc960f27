//! The FIFO side of a [`LocalCoordinator`]: carries out its actions against
//! real FIFOs and signals, without blocking the caller's event loop except
//! for the short bounded opens and writes of one frame.
//!
//! Shared by `snapc checkpoint --pid` (`snapc_runtime::direct`) and the node daemon
//! (`snapc_runtime::daemon`); each owns the machine and the poll loop, and hands
//! this the FIFO actions. Reads are registered and completed from the
//! caller's `poll` ([`FifoIo::read_fds`], [`FifoIo::read_ready`]); signals,
//! FIFO names, the processes' state and stopped processes are dealt with at
//! each [`FifoIo::tick`].
//!
//! The caller ticks when [`FifoIo::notify_fd`] (an inotify watch of the pipe
//! directory, while names are awaited) is readable, and at the latest after
//! [`FifoIo::tick_within`]: names are seen as soon as they are created or
//! removed rather than at the next millisecond tick. The names in the
//! directory are kept from the watch's events ([`crate::pipenames`]), so a
//! tick costs one `read` and looks only at the processes whose names
//! changed, however many processes there are. Where inotify is not
//! available the directory is read at each tick, every [`WATCH_TICK`].
//!
//! One handshake at a time (ARCHITECTURE.md, "One handshake at a time"):
//!
//! - Before it signals a process, the coordinator looks for FIFO names of
//!   that process. None: it signals. Names held by another coordinator
//!   (its lock on `prog_write`, or the FIFO open in another process): it
//!   refuses at once, naming them and the holder, and signals nothing.
//!   Names only the process itself holds (a handshake that is ending, or
//!   one whose coordinator went away): the signal waits until they are
//!   gone. Names nobody holds or locks, twice [`STALE_GRACE`] apart: stale,
//!   removed (only this user's FIFOs), then the signal goes.
//! - A target that does not exist, has exited, is stopped or has no handler
//!   for the signal is refused without a signal (a signal with no handler
//!   would kill it); one that exits or is stopped while it is awaited fails
//!   at once ([`LIVENESS`]). Each failure leaves a note ([`FifoIo::take_note`]).
//! - After the signal, only names created after it are used: a complete
//!   pair whose inodes did not exist at the signal and whose change time is
//!   not earlier than it. Opening them claims the handshake
//!   ([`Channel::open_local_checked`]); another coordinator's claim fails
//!   this one before anything is written.
//! - One signal per handshake. It is repeated only when it waited for an
//!   earlier handshake's names to go (the process may have dropped it while
//!   finishing that one: snapc's keep it, others may not), and only while
//!   the process still has no names at all, is alive, not stopped, handles
//!   the signal and has no delivery of it pending: after
//!   [`RESIGNAL_AFTER`], then four and sixteen times that
//!   ([`RESIGNAL_MAX`] repeats).

use crate::fifo::{Channel, FifoError, FileKey, PipeDir, file_key};
use crate::pipenames::{NameWatch, Names, scan};
use crate::target::{self, State};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_core::IoError;
use snapc_core::local::{Action, Config as LocalConfig, LocalCoordinator, ProcessStorage, SlotId};
use snapc_core::time::{Duration as CoreDuration, Instant as CoreInstant};
use snapc_core::wire::{ChannelNames, FifoKind, FifoName};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long after a signal that waited for an earlier handshake's names a
/// process with no FIFO names, alive, running and handling the signal, may
/// be signalled again (then four and sixteen times that).
pub const RESIGNAL_AFTER: Duration = Duration::from_millis(250);

/// The most times one handshake's signal is repeated.
pub const RESIGNAL_MAX: u32 = 3;

/// How long names nobody holds must stay so before they count as stale.
pub const STALE_GRACE: Duration = Duration::from_millis(100);

/// How often a waiting signal is reconsidered (names held by someone may
/// change hands without an inotify event).
pub const DEFER_CHECK: Duration = Duration::from_millis(50);

/// How often awaited processes are checked for having exited or stopped.
pub const LIVENESS: Duration = Duration::from_millis(200);

/// The default bound of a process's own checkpoint work: from the go-ahead
/// to its final state (its prepare, its checkpoint hook writing the
/// snapshot, and its store steps). Snapshots of large jobs take minutes; a
/// protocol step takes milliseconds, so the two have separate bounds.
pub const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The local coordinator's configuration with every wait on a process
/// bounded: its FIFOs (the names, opening, each write, the response) and its
/// stop by `timeout`, its final state after the go-ahead (the application's
/// own prepare and checkpoint) by `checkpoint_timeout`. The verdict and the
/// quiesced wait keep their defaults (the global coordinator answers the
/// verdict; a quiesce lasts as long as its user wants).
pub fn local_config(timeout: Duration, checkpoint_timeout: Duration) -> LocalConfig {
    let t = CoreDuration::from(timeout);
    let mut config = LocalConfig::default();
    config.deadlines.fifos = t;
    config.deadlines.open = t;
    config.deadlines.write = t;
    config.deadlines.response = t;
    config.deadlines.final_state = CoreDuration::from(checkpoint_timeout);
    config.deadlines.stop = t;
    config
}

/// The longest a process may wait for its release under a one-node
/// coordinator with `config`, from its final state: its slowest peer's
/// whole handshake (every wait of it), then the release's write. A runtime
/// hands this to its processes (`SNAPC_RELEASE_TIMEOUT`) so that they never
/// give up on a release that is still to come.
pub fn release_wait(config: &LocalConfig) -> Duration {
    let d = config.deadlines;
    let total = [
        d.fifos,
        d.open,
        d.write,
        d.response,
        d.write,
        d.final_state,
        d.stop,
        d.write,
    ]
    .into_iter()
    .fold(CoreDuration::ZERO, CoreDuration::saturating_add);
    Duration::from(total)
}

/// How often names and stopped processes are checked when nothing wakes the
/// caller sooner (stops always; names without inotify).
pub const WATCH_TICK: Duration = Duration::from_millis(1);

struct Pending {
    len: usize,
    buf: Vec<u8>,
}

/// A process whose FIFO names are awaited.
struct Watch {
    pid: u32,
    stage: WatchStage,
}

enum WatchStage {
    /// The signal is to be sent at the next tick, after the checks.
    Pending,
    /// Names of another handshake of the process exist that only it holds:
    /// the signal waits until they are gone.
    Deferred {
        /// Since when nobody (not even the process) has held them.
        unheld_since: Option<Instant>,
        next_check: Instant,
    },
    /// Signalled; names created after the signal are awaited.
    Signalled(Signalled),
}

struct Signalled {
    /// The coarse wall clock read before the names were brought up to date
    /// for the signal: names changed earlier are not this handshake's.
    wall: (i64, i64),
    /// The process's FIFOs that existed at the signal.
    before: Vec<FileKey>,
    /// The signal waited for an earlier handshake's names to go: the
    /// process may have dropped it while finishing that one, so it may be
    /// repeated.
    may_be_missed: bool,
    resignals: u32,
    next_resignal: Instant,
    /// While names that are not this handshake's exist: when to look at
    /// them again (another coordinator may claim them).
    next_check: Option<Instant>,
}

impl Watch {
    /// When this watch needs a tick even without a name appearing.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        match &self.stage {
            WatchStage::Pending => Some(now),
            WatchStage::Deferred { next_check, .. } => Some(*next_check),
            WatchStage::Signalled(s) => {
                let resignal =
                    (s.may_be_missed && s.resignals < RESIGNAL_MAX).then_some(s.next_resignal);
                [resignal, s.next_check].into_iter().flatten().min()
            }
        }
    }
}

/// What to do about a signal that waits.
enum Verdict {
    Signal,
    Defer { note: String, unheld: bool },
    Fail(IoError, String),
}

/// The real-world half of a local coordinator.
pub struct FifoIo {
    pipe_dir: PipeDir,
    signal: Signal,
    /// The longest a single open or write may block.
    timeout: Duration,
    origin: Instant,
    channels: HashMap<SlotId, Channel>,
    /// The names each slot's process created for its current handshake.
    names: HashMap<SlotId, ChannelNames>,
    /// The identities of those names (`prog_read`, `prog_write`).
    accepted: HashMap<SlotId, [FileKey; 2]>,
    /// The process of each slot with a handshake.
    pids: HashMap<SlotId, u32>,
    watches: HashMap<SlotId, Watch>,
    stops: HashMap<SlotId, u32>,
    reads: HashMap<SlotId, Pending>,
    /// Reads begun in each slot's handshake (the response, then the final
    /// state).
    reads_begun: HashMap<SlotId, u8>,
    /// Why a slot failed or waits, beyond what the machine can say.
    notes: HashMap<SlotId, String>,
    /// The FIFO names in the pipe directory, kept from inotify's reports
    /// (`None`: inotify is not available, the directory is read at each tick).
    watch: Option<NameWatch>,
    /// Without a watch: the names as the last tick read them.
    scanned: Names,
    next_liveness: Instant,
}

impl FifoIo {
    /// FIFOs in `pipe_dir`, `signal` as the checkpoint signal, each open or
    /// write bounded by `timeout`; the machine's clock counts from `origin`.
    pub fn new(pipe_dir: PipeDir, signal: Signal, timeout: Duration, origin: Instant) -> Self {
        Self {
            watch: NameWatch::take(&pipe_dir),
            scanned: Names::new(),
            pipe_dir,
            signal,
            timeout,
            origin,
            channels: HashMap::new(),
            names: HashMap::new(),
            accepted: HashMap::new(),
            pids: HashMap::new(),
            watches: HashMap::new(),
            stops: HashMap::new(),
            reads: HashMap::new(),
            reads_begun: HashMap::new(),
            notes: HashMap::new(),
            next_liveness: Instant::now() + LIVENESS,
        }
    }

    /// The pipe directory.
    pub fn pipe_dir(&self) -> &PipeDir {
        &self.pipe_dir
    }

    /// The checkpoint signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The machine's time now.
    pub fn now(&self) -> CoreInstant {
        to_core(self.origin, Instant::now())
    }

    /// Wall-clock deadline of the machine's next timeout, capped at `cap` from now.
    pub fn deadline<S: ProcessStorage>(&self, lc: &LocalCoordinator<S>, cap: Duration) -> Instant {
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

    /// Why `slot` failed, or what its signal waits for, when this side
    /// knows more than the machine: a refusal (another handshake in
    /// progress, a process that does not handle the signal), a process that
    /// exited or stopped, a handshake another coordinator took first.
    pub fn note(&self, slot: SlotId) -> Option<&str> {
        self.notes.get(&slot).map(String::as_str)
    }

    /// [`note`](Self::note), removed.
    pub fn take_note(&mut self, slot: SlotId) -> Option<String> {
        self.notes.remove(&slot)
    }

    /// Whether names or stops are being watched (the caller should tick often).
    pub fn busy(&self) -> bool {
        !self.watches.is_empty() || !self.stops.is_empty()
    }

    /// The longest the caller may wait before the next [`tick`](Self::tick)
    /// (besides waking when [`notify_fd`](Self::notify_fd) is readable), or
    /// `None` when nothing is watched. With inotify, names need a tick only
    /// for a signal that waits or may be repeated; stopped processes are
    /// always polled, and awaited processes checked every [`LIVENESS`].
    pub fn tick_within(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut due: Option<Instant> = None;
        let mut at = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        if !self.stops.is_empty() || (!self.watches.is_empty() && self.watch.is_none()) {
            at(now + WATCH_TICK);
        }
        for w in self.watches.values() {
            if let Some(t) = w.next_due(now) {
                at(t);
            }
        }
        if !self.watches.is_empty() || !self.reads.is_empty() {
            at(self.next_liveness);
        }
        due.map(|t| t.saturating_duration_since(now))
    }

    /// While names are awaited, the fd that becomes readable when a name
    /// appears in or leaves the pipe directory: poll it for input, then tick.
    pub fn notify_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.watch, self.watches.is_empty()) {
            (Some(w), false) => Some(w.fd()),
            _ => None,
        }
    }

    /// Whether any FIFO is open.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Carries out `action`; returns it when it is not FIFO work
    /// ([`Action::SendToGc`], whose bytes are in the caller's buffer,
    /// [`Action::Report`]) for the caller.
    pub fn execute<S: ProcessStorage>(
        &mut self,
        lc: &mut LocalCoordinator<S>,
        action: Action,
    ) -> Option<Action> {
        let now = self.now();
        match action {
            Action::Signal { slot, pid } => {
                // Sent at the next tick, after the checks (the names of
                // every process signalled at once brought up to date once).
                // The first look at whether it is still alive comes a
                // while after the signal, not in its way.
                self.next_liveness = self.next_liveness.max(Instant::now() + LIVENESS);
                self.notes.remove(&slot);
                self.pids.insert(slot, pid);
                self.watches.insert(
                    slot,
                    Watch {
                        pid,
                        stage: WatchStage::Pending,
                    },
                );
            }
            Action::WatchFifos { slot, names } => {
                self.pids.insert(slot, names.pid);
                self.watches.entry(slot).or_insert(Watch {
                    pid: names.pid,
                    stage: WatchStage::Pending,
                });
            }
            Action::OpenFifos { slot, .. } => {
                let Some(names) = self.names.get(&slot).copied() else {
                    let _ = lc.handle_io_error(now, slot, IoError::Failed);
                    return None;
                };
                let deadline = self.deadline(lc, self.timeout);
                let expect = self.accepted.get(&slot).copied();
                match Channel::open_local_checked(&self.pipe_dir, names, deadline, expect) {
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
                let begun = self.reads_begun.entry(slot).or_default();
                *begun = begun.saturating_add(1);
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
                // The names are the process's to remove, unless it is gone.
                // One that still holds its end of the channel is not (the
                // usual case, as it reads its release): /proc is read only
                // when it closed it.
                if let (Some(ch), Some(pid)) = (self.channels.remove(&slot), self.pids.get(&slot))
                    && ch.peer_closed()
                    && matches!(target::state(*pid), State::Gone | State::Exited)
                {
                    ch.remove_names();
                }
                self.watches.remove(&slot);
                self.reads.remove(&slot);
                self.reads_begun.remove(&slot);
                self.stops.remove(&slot);
                self.accepted.remove(&slot);
                self.pids.remove(&slot);
            }
            other => return Some(other),
        }
        None
    }

    fn io_failed<S: ProcessStorage>(
        &mut self,
        lc: &mut LocalCoordinator<S>,
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
                let _ = lc.handle_io_error(now, slot, IoError::PeerGone);
            }
            FifoError::Claimed { path, key } => {
                let me = std::process::id();
                let holder = target::flock_holders(&[*key])
                    .into_iter()
                    .map(|(pid, _)| pid)
                    .find(|&pid| pid != me)
                    .map_or_else(|| "another coordinator".to_string(), target::who);
                let handshake = self
                    .names
                    .get(&slot)
                    .map_or_else(String::new, |n| format!(" {} of pid {}", n.n, n.pid));
                self.notes.insert(
                    slot,
                    format!(
                        "{holder} took handshake{handshake} first ({}); nothing was written",
                        path.display()
                    ),
                );
                let _ = lc.handle_io_error(now, slot, IoError::Failed);
            }
            _ => {
                self.notes.insert(slot, e.to_string());
                let _ = lc.handle_io_error(now, slot, IoError::Failed);
            }
        }
    }

    /// Ends `slot` now: `note` says why.
    fn fail<S: ProcessStorage>(
        &mut self,
        lc: &mut LocalCoordinator<S>,
        slot: SlotId,
        error: IoError,
        note: String,
    ) {
        log::debug!("slot {}: {note}", slot.index());
        self.notes.insert(slot, note);
        self.watches.remove(&slot);
        self.reads.remove(&slot);
        let _ = lc.handle_io_error(self.now(), slot, error);
    }

    /// Sends waiting signals, checks watched names, awaited processes and
    /// stopped processes.
    ///
    /// With inotify the names are brought up to date from the events that
    /// came since the last tick (one `read`), and only the processes whose
    /// names changed, or whose watch is due (a signal to send, or that
    /// waits or may be repeated, names that are not this handshake's), are
    /// looked at; without it, the directory is read and every watch looked
    /// at, at every tick.
    pub fn tick<S: ProcessStorage>(&mut self, lc: &mut LocalCoordinator<S>) {
        let now = Instant::now();
        // Read before the names are brought up to date: a name changed after
        // this instant was changed after that too.
        let wall = coarse_wall();
        let changed = self.refresh_names();
        if !self.watches.is_empty() {
            let slots: Vec<(SlotId, bool)> = self
                .watches
                .iter()
                .filter_map(|(slot, w)| {
                    let touched = changed.as_ref().is_none_or(|c| c.contains(&w.pid));
                    let due = w.next_due(now).is_some_and(|t| t <= now);
                    (touched || due).then_some((*slot, touched))
                })
                .collect();
            for (slot, touched) in slots {
                self.advance(lc, slot, wall, now, touched);
            }
        }
        if now >= self.next_liveness {
            self.next_liveness = now + LIVENESS;
            self.check_liveness(lc);
        }
        let stops: Vec<(SlotId, u32)> = self.stops.iter().map(|(s, p)| (*s, *p)).collect();
        for (slot, pid) in stops {
            if is_stopped(pid) {
                self.stops.remove(&slot);
                let _ = lc.handle_stopped(self.now(), slot);
            }
        }
    }

    /// Brings the names in the pipe directory up to date: the pids whose
    /// names changed since the last tick, or `None` when any may have (the
    /// directory was read).
    fn refresh_names(&mut self) -> Option<Vec<u32>> {
        let result = match &mut self.watch {
            Some(w) => match w.refresh(&self.pipe_dir) {
                Ok(c) if !c.rescanned => return Some(c.pids),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            None if self.watches.is_empty() => return Some(Vec::new()),
            None => scan(&self.pipe_dir).map(|names| self.scanned = names),
        };
        if self.watch.as_ref().is_some_and(NameWatch::is_dead) {
            log::debug!(
                "{}: the watch ended; names are polled",
                self.pipe_dir.path().display()
            );
            self.watch = None;
        }
        if let Err(e) = result {
            // EMFILE, say: without it, only "deadline passed waiting for
            // the fifos" would be known.
            self.scanned.clear();
            let e = format!("scanning {}: {e}", self.pipe_dir.path().display());
            let slots: Vec<SlotId> = self.watches.keys().copied().collect();
            for slot in slots {
                if self.notes.get(&slot) != Some(&e) {
                    log::warn!("slot {}: {e}", slot.index());
                    self.notes.insert(slot, e.clone());
                }
            }
        }
        None
    }

    /// The FIFO names of `pid` in the pipe directory, as of the last tick.
    fn names_of_pid(&self, pid: u32) -> Vec<FifoName> {
        let names = match self.watch.as_ref().and_then(NameWatch::names) {
            Some(names) => names,
            None => &self.scanned,
        };
        names.get(&pid).cloned().unwrap_or_default()
    }

    /// Moves one watch on, given the names found in the pipe directory.
    fn advance<S: ProcessStorage>(
        &mut self,
        lc: &mut LocalCoordinator<S>,
        slot: SlotId,
        wall: (i64, i64),
        now: Instant,
        touched: bool,
    ) {
        let Some(w) = self.watches.get(&slot) else {
            return;
        };
        let pid = w.pid;
        let names = self.names_of_pid(pid);
        let names = names.as_slice();
        let deferred = matches!(w.stage, WatchStage::Deferred { .. });
        let unheld_since = match &w.stage {
            WatchStage::Pending => None,
            WatchStage::Deferred {
                next_check,
                unheld_since,
            } => {
                // Looked at again when its names change (they went, most
                // likely: what the signal waits for), else at its next
                // check (their holders change without a sign).
                if *next_check > now && !touched {
                    return;
                }
                *unheld_since
            }
            WatchStage::Signalled(_) => return self.await_names(lc, slot, pid, names, now),
        };
        match self.before_signal(pid, names, unheld_since, now) {
            Verdict::Fail(error, note) => self.fail(lc, slot, error, note),
            Verdict::Defer { note, unheld } => {
                self.notes.insert(slot, note);
                if let Some(w) = self.watches.get_mut(&slot) {
                    w.stage = WatchStage::Deferred {
                        unheld_since: unheld.then(|| unheld_since.unwrap_or(now)),
                        next_check: now + DEFER_CHECK,
                    };
                }
            }
            Verdict::Signal => self.send_signal(lc, slot, pid, names, wall, now, deferred),
        }
    }

    /// The checks before a signal (see the module's documentation).
    fn before_signal(
        &self,
        pid: u32,
        names: &[FifoName],
        unheld_since: Option<Instant>,
        now: Instant,
    ) -> Verdict {
        let sig = self.signal.as_str();
        let status = target::brief(pid);
        match status.state {
            State::Gone => {
                return Verdict::Fail(IoError::PeerGone, format!("pid {pid} does not exist"));
            }
            State::Exited => {
                return Verdict::Fail(IoError::PeerGone, format!("pid {pid} has exited"));
            }
            State::Stopped => {
                return Verdict::Fail(
                    IoError::Failed,
                    format!("pid {pid} is stopped; not signalled (continue it first)"),
                );
            }
            State::Alive(_) => {}
        }
        if status.handles(self.signal) == Some(false) {
            return Verdict::Fail(
                IoError::Failed,
                format!("pid {pid} does not handle {sig}: not a snapc process"),
            );
        }
        let files: Vec<(FifoName, PathBuf, FileKey, bool)> = names
            .iter()
            .filter_map(|n| {
                let path = self.pipe_dir.fifo_path(*n);
                file_key(&path).map(|(key, _, fifo)| (*n, path, key, fifo))
            })
            .collect();
        if files.is_empty() {
            return Verdict::Signal;
        }
        let keys: Vec<FileKey> = files.iter().map(|f| f.2).collect();
        let listing = self.listing(files.iter().map(|f| f.0));
        let me = std::process::id();
        let locks = target::flock_holders(&keys);
        // A coordinator's claim is its lock on prog_write; the process
        // itself only ever locks prog_read.
        let claim = locks.iter().find(|(holder, key)| {
            *holder != pid
                && files
                    .iter()
                    .any(|f| f.2 == *key && f.0.kind == FifoKind::ProgWrite)
        });
        let holder = claim
            .map(|(h, _)| *h)
            .or_else(|| target::fd_holders(&keys, &[pid, me]).first().copied());
        // The holder scans match by inode: a name unlinked meanwhile may have
        // given its inode to someone else's file. A holder counts only if
        // every name still is the file that was looked up.
        let unchanged = || {
            files
                .iter()
                .all(|f| file_key(&f.1).is_some_and(|(k, _, _)| k == f.2))
        };
        if holder.is_some() && !unchanged() {
            return Verdict::Defer {
                note: format!("the names of pid {pid} changed while they were checked ({listing})"),
                unheld: false,
            };
        }
        if let Some(h) = holder {
            return Verdict::Fail(
                IoError::Failed,
                format!(
                    "another handshake with pid {pid} is in progress ({listing}, held by {}); not signalled",
                    target::who(h)
                ),
            );
        }
        let live = locks.iter().any(|(h, _)| *h == pid);
        if live || target::holds(pid, &keys) != Some(false) {
            return Verdict::Defer {
                note: format!(
                    "pid {pid} is still in another handshake ({listing}) with no coordinator: the signal waits until its names are gone"
                ),
                unheld: false,
            };
        }
        if unheld_since.is_some_and(|t| now.saturating_duration_since(t) >= STALE_GRACE) {
            for f in &files {
                crate::fifo::remove_stale(&f.1);
            }
            if let Some(left) = files.iter().find(|f| f.1.symlink_metadata().is_ok()) {
                return Verdict::Fail(
                    IoError::Failed,
                    format!(
                        "{} is in the way ({}); not signalled",
                        left.1.display(),
                        if left.3 {
                            "a FIFO that cannot be removed"
                        } else {
                            "not a FIFO"
                        }
                    ),
                );
            }
            log::debug!("removed stale FIFOs of pid {pid}: {listing}");
            return Verdict::Signal;
        }
        Verdict::Defer {
            note: format!("stale FIFOs of pid {pid} ({listing}) are in the way"),
            unheld: true,
        }
    }

    /// Signals `pid`, whose names at the last tick were `names` (those that
    /// still exist are not this handshake's); `after_wait`: the signal
    /// waited for an earlier handshake's names to go.
    #[allow(clippy::too_many_arguments)]
    fn send_signal<S: ProcessStorage>(
        &mut self,
        lc: &mut LocalCoordinator<S>,
        slot: SlotId,
        pid: u32,
        names: &[FifoName],
        wall: (i64, i64),
        now: Instant,
        after_wait: bool,
    ) {
        let before: Vec<FileKey> = names
            .iter()
            .filter_map(|n| file_key(&self.pipe_dir.fifo_path(*n)).map(|(k, _, _)| k))
            .collect();
        match kill(Pid::from_raw(pid as i32), self.signal) {
            Ok(()) => {
                self.notes.remove(&slot);
                if let Some(w) = self.watches.get_mut(&slot) {
                    w.stage = WatchStage::Signalled(Signalled {
                        wall,
                        before,
                        may_be_missed: after_wait,
                        resignals: 0,
                        next_resignal: now + RESIGNAL_AFTER,
                        next_check: None,
                    });
                }
            }
            Err(nix::errno::Errno::ESRCH) => self.fail(
                lc,
                slot,
                IoError::PeerGone,
                format!("pid {pid} does not exist"),
            ),
            Err(e) => self.fail(
                lc,
                slot,
                IoError::Failed,
                format!("signal {} to pid {pid}: {e}", self.signal.as_str()),
            ),
        }
    }

    /// Signalled: takes the names created after the signal, notices another
    /// coordinator's claim on other names, repeats the signal if due.
    fn await_names<S: ProcessStorage>(
        &mut self,
        lc: &mut LocalCoordinator<S>,
        slot: SlotId,
        pid: u32,
        names: &[FifoName],
        now: Instant,
    ) {
        let Some(Watch {
            stage: WatchStage::Signalled(s),
            ..
        }) = self.watches.get(&slot)
        else {
            return;
        };
        if let Some((n, keys)) = self.newest_pair(pid, names, s) {
            self.watches.remove(&slot);
            self.notes.remove(&slot);
            self.names.insert(slot, ChannelNames { pid, n });
            self.accepted.insert(slot, keys);
            let _ = lc.handle_fifos_exist(self.now(), slot);
            return;
        }
        let fresh = |n: &FifoName| {
            file_key(&self.pipe_dir.fifo_path(*n))
                .is_some_and(|(key, ctime, _)| !s.before.contains(&key) && ctime >= s.wall)
        };
        // Only new names: a pair being created; the next name wakes us.
        if names.iter().all(fresh) && !names.is_empty() {
            return;
        }
        if !names.is_empty() {
            if s.next_check.is_some_and(|t| t > now) {
                return;
            }
            // Names that are not this handshake's: another coordinator's,
            // started about when this one was. Its claim ends this one.
            let files: Vec<(PathBuf, FileKey)> = names
                .iter()
                .filter(|n| n.kind == FifoKind::ProgWrite)
                .filter_map(|n| {
                    let path = self.pipe_dir.fifo_path(*n);
                    file_key(&path).map(|(k, _, _)| (path, k))
                })
                .collect();
            let keys: Vec<FileKey> = files.iter().map(|f| f.1).collect();
            // Matched by inode: the lock counts only if its name still is
            // that file (an unlinked name's inode may be someone else's now).
            if let Some((holder, _)) = target::flock_holders(&keys).into_iter().find(|(h, key)| {
                *h != pid
                    && files.iter().any(|(path, k)| {
                        k == key && file_key(path).is_some_and(|(now, _, _)| now == *k)
                    })
            }) {
                let listing = self.listing(names.iter().copied());
                return self.fail(
                    lc,
                    slot,
                    IoError::Failed,
                    format!(
                        "{} started a handshake with pid {pid} at the same time and holds it ({listing}); nothing was written",
                        target::who(holder)
                    ),
                );
            }
            let note = format!(
                "names of pid {pid} that predate the signal ({}) are not this handshake's",
                self.listing(names.iter().copied())
            );
            self.notes.insert(slot, note);
            if let Some(Watch {
                stage: WatchStage::Signalled(s),
                ..
            }) = self.watches.get_mut(&slot)
            {
                s.next_check = Some(now + DEFER_CHECK);
            }
            return;
        }
        if !s.may_be_missed || s.resignals >= RESIGNAL_MAX || s.next_resignal > now {
            return;
        }
        // No names at all after a signal sent as an earlier handshake ended:
        // repeat it, only to a live, running process that handles it and
        // has taken the last one.
        let status = target::status(pid);
        let takes = matches!(status.state, State::Alive(_))
            && status.handles(self.signal) != Some(false)
            && !status.pending(self.signal);
        let resend = takes && kill(Pid::from_raw(pid as i32), self.signal).is_ok();
        if let Some(Watch {
            stage: WatchStage::Signalled(s),
            ..
        }) = self.watches.get_mut(&slot)
        {
            s.next_check = None;
            if resend {
                s.resignals += 1;
                s.next_resignal = now + RESIGNAL_AFTER * 4u32.pow(s.resignals);
                log::debug!("pid {pid}: signal repeated ({})", s.resignals);
            } else {
                s.next_resignal = now + RESIGNAL_AFTER;
            }
        }
    }

    /// The highest complete pair of `pid`'s names created after the signal
    /// `s`, with the identities of its FIFOs.
    fn newest_pair(
        &self,
        pid: u32,
        names: &[FifoName],
        s: &Signalled,
    ) -> Option<(u32, [FileKey; 2])> {
        let fresh = |kind: FifoKind, n: u32| {
            let name = FifoName { kind, pid, n };
            if !names.contains(&name) {
                return None;
            }
            let (key, ctime, fifo) = file_key(&self.pipe_dir.fifo_path(name))?;
            (fifo && !s.before.contains(&key) && ctime >= s.wall).then_some(key)
        };
        names
            .iter()
            .filter(|n| n.kind == FifoKind::ProgRead)
            .filter_map(|n| {
                let read = fresh(FifoKind::ProgRead, n.n)?;
                let write = fresh(FifoKind::ProgWrite, n.n)?;
                Some((n.n, [read, write]))
            })
            .max_by_key(|(n, _)| *n)
    }

    /// Fails awaited processes (names or an answer) that exited or stopped.
    fn check_liveness<S: ProcessStorage>(&mut self, lc: &mut LocalCoordinator<S>) {
        let awaited: Vec<(SlotId, u32)> = self
            .watches
            .iter()
            .filter(|(_, w)| !matches!(w.stage, WatchStage::Pending))
            .map(|(slot, w)| (*slot, w.pid))
            .chain(
                self.reads
                    .keys()
                    .filter_map(|slot| self.pids.get(slot).map(|pid| (*slot, *pid))),
            )
            .collect();
        for (slot, pid) in awaited {
            match target::state(pid) {
                State::Gone | State::Exited => {
                    self.fail(lc, slot, IoError::PeerGone, format!("pid {pid} has exited"))
                }
                State::Stopped => {
                    self.fail(lc, slot, IoError::Failed, format!("pid {pid} is stopped"))
                }
                State::Alive(_) => {}
            }
        }
    }

    /// `names` as `dir/name, name` for messages.
    fn listing(&self, names: impl Iterator<Item = FifoName>) -> String {
        let mut names: Vec<String> = names.map(|n| n.file_name().as_str().to_string()).collect();
        names.sort();
        format!("{} in {}", names.join(", "), self.pipe_dir.path().display())
    }

    /// The processes whose final state is awaited: they run their
    /// checkpoint hooks and store steps, the longest wait of a handshake.
    pub fn pids_at_work(&self) -> Vec<u32> {
        self.reads
            .keys()
            .filter(|slot| self.reads_begun.get(slot).is_some_and(|n| *n >= 2))
            .filter_map(|slot| self.pids.get(slot).copied())
            .collect()
    }

    /// The fds of pending reads, to poll for input.
    pub fn read_fds(&self) -> Vec<(SlotId, BorrowedFd<'_>)> {
        self.reads
            .keys()
            .filter_map(|slot| self.channels.get(slot).map(|ch| (*slot, ch.rx.fd())))
            .collect()
    }

    /// Ends reads whose channel is gone: they cannot complete.
    pub fn fail_orphan_reads<S: ProcessStorage>(&mut self, lc: &mut LocalCoordinator<S>) {
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
    pub fn read_ready<S: ProcessStorage>(&mut self, lc: &mut LocalCoordinator<S>, slot: SlotId) {
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

impl Drop for FifoIo {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            w.put_back();
        }
    }
}

/// The machine's instant of `t`, counting from `origin`.
pub fn to_core(origin: Instant, t: Instant) -> CoreInstant {
    CoreInstant::from_micros(
        u64::try_from(t.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX),
    )
}

/// The coarse wall clock, the one file change times are taken from:
/// (seconds, nanoseconds).
fn coarse_wall() -> (i64, i64) {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
        .or_else(|_| clock_gettime(ClockId::CLOCK_REALTIME))
        .map_or((0, 0), |t| (t.tv_sec(), t.tv_nsec()))
}

/// Whether `pid` is stopped (state T or t in /proc).
pub fn is_stopped(pid: u32) -> bool {
    target::state(pid) == State::Stopped
}
