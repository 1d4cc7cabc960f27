//! Direct checkpoints of running processes that no daemon manages
//! (`snapc checkpoint --pid`), as Open MPI's `opal-checkpoint` and DMTCP's
//! `dmtcp_command` do: this process plays the local coordinator for the
//! given pids, and a one-node global coordinator that accepts the snapshot
//! when every process reported.
//!
//! One thread, one `poll` loop over every pending FIFO read; the handshakes
//! run concurrently.
//!
//! A direct checkpoint does not know how many handshakes a process already
//! had, so it takes the counter from the FIFO names the process creates after
//! the signal (the highest complete pair for that pid).
//!
//! A process ignores the signal while it still finishes its previous
//! handshake (its teardown follows the release), so while the names have not
//! appeared the signal is sent again every [`RESIGNAL`]; a process handles at
//! most one request at a time, so a repeated signal never starts a second
//! handshake.

use crate::fifo::{Channel, FifoError, PipeDir};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_core::local::{
    Action, IoError, LocalConfig, LocalCoordinator, Outcome, ProcessResult, SlotId, Timings,
};
use snapc_core::time::{Duration as CoreDuration, Instant as CoreInstant};
use snapc_core::wire::{
    ChannelNames, CkptState, CrState, FifoName, JobDetail, JobOptions, JobState, ProcessName,
    StateCode,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the signal is repeated while a process's FIFOs have not appeared.
pub const RESIGNAL: Duration = Duration::from_millis(50);

/// The most processes one direct checkpoint handles.
pub const MAX_PROCESSES: usize = 256;

/// What to checkpoint and how.
#[derive(Debug, Clone)]
pub struct DirectRequest {
    /// The processes.
    pub pids: Vec<u32>,
    /// Terminate them after the checkpoint.
    pub term: bool,
    /// Stop them (SIGSTOP) after the checkpoint.
    pub stop: bool,
    /// Only prepare them (quiesce), hold them for `hold`, then let them go.
    pub prep_only: bool,
    /// How long to hold prepared processes (with `prep_only`).
    pub hold: Duration,
    /// The deadline of each wait on a process.
    pub timeout: Duration,
    /// The processes' pipe directory.
    pub pipe_dir: PipeDir,
    /// The checkpoint signal.
    pub signal: Signal,
    /// The sstore handle to give the snapshot.
    pub handle: u32,
}

/// How one process's checkpoint ended.
#[derive(Debug, Clone)]
pub struct DirectResult {
    /// The process.
    pub pid: u32,
    /// The handshake counter its FIFO names carried.
    pub n: Option<u32>,
    /// Its final state, when it got that far.
    pub state: Option<CrState>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long each stage took.
    pub timings: Timings,
}

impl DirectResult {
    /// Whether the process completed: CONTINUE or TERM, or RUNNING (prepared) for a prepare-only request.
    pub fn completed(&self) -> bool {
        self.error.is_none()
            && matches!(
                self.state,
                Some(CrState::Continue | CrState::Term | CrState::Running)
            )
    }
}

/// Why the checkpoint could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// Too many pids, or the same one twice.
    #[error("cannot checkpoint pid {pid}: {reason}")]
    Table {
        /// The pid.
        pid: u32,
        /// Why.
        reason: String,
    },
}

struct Pending {
    len: usize,
    buf: Vec<u8>,
}

struct Driver {
    lc: Box<LocalCoordinator<MAX_PROCESSES>>,
    req: DirectRequest,
    origin: Instant,
    channels: HashMap<SlotId, Channel>,
    /// The names each slot's process actually created.
    names: HashMap<SlotId, ChannelNames>,
    /// Slots waiting for their FIFO names: pid and when it was last signalled.
    watches: HashMap<SlotId, (u32, Instant)>,
    stops: HashMap<SlotId, u32>,
    reads: HashMap<SlotId, Pending>,
    results: HashMap<u32, DirectResult>,
    done: bool,
}

fn core_duration(d: Duration) -> CoreDuration {
    CoreDuration::from(d)
}

impl Driver {
    fn now(&self) -> CoreInstant {
        CoreInstant::from_micros(
            u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX),
        )
    }

    /// Wall-clock deadline of the machine's next timeout, capped at `cap` from now.
    fn deadline(&self, cap: Duration) -> Instant {
        let now = self.now();
        let left = self
            .lc
            .poll_timeout()
            .map_or(CoreDuration::MAX, |d| d.saturating_duration_since(now));
        Instant::now() + Duration::from(left).min(cap)
    }

    fn execute(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::Signal { slot, pid } => {
                if let Err(e) = kill(Pid::from_raw(pid as i32), self.req.signal) {
                    log::warn!("signal pid {pid}: {e}");
                    let _ = self.lc.handle_io_error(now, slot, IoError::Failed);
                }
            }
            Action::WatchFifos { slot, names } => {
                self.watches.insert(slot, (names.pid, Instant::now()));
            }
            Action::OpenFifos { slot, .. } => {
                let Some(names) = self.names.get(&slot).copied() else {
                    let _ = self.lc.handle_io_error(now, slot, IoError::Failed);
                    return;
                };
                match Channel::open_local(
                    &self.req.pipe_dir,
                    names,
                    self.deadline(self.req.timeout),
                ) {
                    Ok(ch) => {
                        self.channels.insert(slot, ch);
                        let _ = self.lc.handle_opened(self.now(), slot);
                    }
                    Err(e) => self.io_failed(slot, &e),
                }
            }
            Action::Write { slot, bytes } => {
                let result = match self.channels.get(&slot) {
                    Some(ch) => ch.tx.write_all(&bytes, self.deadline(self.req.timeout)),
                    None => Err(FifoError::PeerGone {
                        path: PathBuf::new(),
                    }),
                };
                match result {
                    Ok(()) => {
                        let _ = self.lc.handle_written(self.now(), slot);
                    }
                    Err(e) => self.io_failed(slot, &e),
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
            Action::SendToGc(orted) => self.global_verdict(orted.state.state),
            Action::Report(r) => self.record(&r),
        }
    }

    /// The one-node global coordinator: accept the snapshot when the node
    /// finished, release on error, stop when the node recovered.
    fn global_verdict(&mut self, state: CkptState) {
        let verdict = match state {
            CkptState::FinishedLocal => CkptState::Established,
            CkptState::IncPreped => {
                // Quiesced: hold them, then end by closing the channels; each
                // process notices at its next progress point and recovers.
                let job = JobState {
                    jobid: 0,
                    state: StateCode::plain(state),
                    detail: None,
                };
                let _ = self.lc.handle_job_state(self.now(), &job);
                std::thread::sleep(self.req.hold);
                self.done = true;
                return;
            }
            CkptState::Recovered => {
                self.done = true;
                return;
            }
            _ => CkptState::Error,
        };
        let job = JobState {
            jobid: 0,
            state: StateCode::plain(verdict),
            detail: None,
        };
        if let Err(e) = self.lc.handle_job_state(self.now(), &job) {
            log::warn!("verdict {verdict} not taken: {e:?}");
            self.done = true;
        }
    }

    fn record(&mut self, r: &ProcessResult) {
        let expected = |s: CrState| match self.req.prep_only {
            true => s == CrState::Running,
            false => matches!(s, CrState::Continue | CrState::Term),
        };
        let (state, error) = match r.outcome {
            Outcome::State(s) if expected(s) => (Some(s), None),
            Outcome::State(s) => (Some(s), Some(format!("process reported {s}"))),
            Outcome::Failed(f) => (None, Some(f.to_string())),
        };
        let n = self.names.get(&r.slot).map(|names| names.n);
        self.results.insert(
            r.pid,
            DirectResult {
                pid: r.pid,
                n,
                state,
                error,
                timings: r.timings,
            },
        );
    }

    fn io_failed(&mut self, slot: SlotId, e: &FifoError) {
        log::debug!("slot {}: {e}", slot.index());
        let now = self.now();
        match e {
            FifoError::Timeout { .. } => self
                .lc
                .handle_timeout(self.lc.poll_timeout().map_or(now, |d| d.max(now))),
            FifoError::PeerGone { .. } => {
                let _ = self.lc.handle_io_error(now, slot, IoError::Eof);
            }
            _ => {
                let _ = self.lc.handle_io_error(now, slot, IoError::Failed);
            }
        }
    }

    /// Checks watched names and stopped processes.
    fn tick(&mut self) {
        let watches: Vec<(SlotId, u32, Instant)> = self
            .watches
            .iter()
            .map(|(s, (p, t))| (*s, *p, *t))
            .collect();
        for (slot, pid, signalled) in watches {
            if let Some(n) = highest_pair(&self.req.pipe_dir, pid) {
                self.watches.remove(&slot);
                self.names.insert(slot, ChannelNames { pid, n });
                let _ = self.lc.handle_fifos_exist(self.now(), slot);
            } else if signalled.elapsed() >= RESIGNAL {
                let _ = kill(Pid::from_raw(pid as i32), self.req.signal);
                self.watches.insert(slot, (pid, Instant::now()));
            }
        }
        let stops: Vec<(SlotId, u32)> = self.stops.iter().map(|(s, p)| (*s, *p)).collect();
        for (slot, pid) in stops {
            if is_stopped(pid) {
                self.stops.remove(&slot);
                let _ = self.lc.handle_stopped(self.now(), slot);
            }
        }
    }

    /// Waits for pending reads (or a short tick while watches or stop waits
    /// are pending, or the machine's next deadline) and feeds what arrived.
    fn wait(&mut self) {
        let busy = !self.watches.is_empty() || !self.stops.is_empty();
        let cap = if busy {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        let until = self.deadline(cap);
        let slots: Vec<SlotId> = self.reads.keys().copied().collect();
        let ready: Vec<SlotId> = {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            let mut order = Vec::new();
            for slot in &slots {
                if let Some(ch) = self.channels.get(slot) {
                    fds.push(PollFd::new(ch.rx.fd(), PollFlags::POLLIN));
                    order.push(*slot);
                }
            }
            let ms = until.saturating_duration_since(Instant::now()).as_millis();
            let timeout = PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX));
            match poll(&mut fds, timeout) {
                Ok(n) if n > 0 => order
                    .into_iter()
                    .zip(fds.iter())
                    .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(slot, _)| slot)
                    .collect(),
                _ => Vec::new(),
            }
        };
        for slot in ready {
            self.read_ready(slot);
        }
        // Reads whose channel is gone cannot complete.
        for slot in slots {
            if !self.channels.contains_key(&slot) && self.reads.remove(&slot).is_some() {
                let _ = self.lc.handle_io_error(self.now(), slot, IoError::Failed);
            }
        }
    }

    fn read_ready(&mut self, slot: SlotId) {
        let (Some(ch), Some(p)) = (self.channels.get(&slot), self.reads.get_mut(&slot)) else {
            return;
        };
        let mut chunk = [0u8; 64];
        let want = p.len - p.buf.len();
        match ch.rx.read_available(&mut chunk[..want]) {
            Ok(n) => p.buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                self.reads.remove(&slot);
                self.io_failed(slot, &e);
                return;
            }
        }
        if p.buf.len() == p.len {
            let bytes = std::mem::take(&mut p.buf);
            self.reads.remove(&slot);
            let _ = self.lc.handle_read(self.now(), slot, &bytes);
        }
    }
}

/// The highest `n` for which both FIFOs of `pid` exist.
fn highest_pair(dir: &PipeDir, pid: u32) -> Option<u32> {
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Ok(f) = FifoName::parse(name)
            && f.pid == pid
        {
            match f.kind {
                snapc_core::wire::FifoKind::ProgRead => reads.push(f.n),
                snapc_core::wire::FifoKind::ProgWrite => writes.push(f.n),
            }
        }
    }
    reads.into_iter().filter(|n| writes.contains(n)).max()
}

/// Whether `pid` is stopped (state T or t in /proc).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the parenthesised command name.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c == 'T' || c == 't')
    })
}

/// Checkpoints every process of `req` concurrently; one result per pid, in the order given.
pub fn checkpoint(req: DirectRequest) -> Result<Vec<DirectResult>, DirectError> {
    let mut config = LocalConfig::default();
    let t = core_duration(req.timeout);
    config.deadlines.fifos = t;
    config.deadlines.open = t;
    config.deadlines.write = t;
    config.deadlines.response = t;
    config.deadlines.stop = t;
    let mut driver = Driver {
        lc: Box::new(LocalCoordinator::new(config)),
        req,
        origin: Instant::now(),
        channels: HashMap::new(),
        names: HashMap::new(),
        watches: HashMap::new(),
        stops: HashMap::new(),
        reads: HashMap::new(),
        results: HashMap::new(),
        done: false,
    };
    for (rank, &pid) in driver.req.pids.iter().enumerate() {
        let name = ProcessName {
            jobid: 0,
            vpid: rank as u32,
        };
        driver
            .lc
            .add_process(name, pid)
            .map_err(|e| DirectError::Table {
                pid,
                reason: e.to_string(),
            })?;
    }
    let job = JobState {
        jobid: 0,
        state: StateCode::plain(CkptState::Running),
        detail: Some(JobDetail {
            handle: driver.req.handle,
            options: JobOptions {
                term: driver.req.term,
                stop: driver.req.stop,
                inc_prep_only: driver.req.prep_only,
                inc_recover_only: false,
            },
            migrating: None,
        }),
    };
    let now = driver.now();
    if let Err(e) = driver.lc.handle_job_state(now, &job) {
        log::error!("could not start the checkpoint: {e:?}");
    }
    // Bounded: every wait in the machine has a deadline, and the machine
    // reports RECOVERED (or a refused verdict ends the loop) after the last.
    while !driver.done {
        while let Some(action) = driver.lc.poll_action() {
            driver.execute(action);
        }
        if driver.done {
            break;
        }
        driver.tick();
        // What the tick fed in may have produced actions: carry them out before waiting.
        while let Some(action) = driver.lc.poll_action() {
            driver.execute(action);
        }
        if driver.done {
            break;
        }
        driver.wait();
        let now = driver.now();
        if driver.lc.poll_timeout().is_some_and(|d| d <= now) {
            driver.lc.handle_timeout(now);
        }
    }
    Ok(driver
        .req
        .pids
        .iter()
        .map(|&pid| {
            driver.results.remove(&pid).unwrap_or(DirectResult {
                pid,
                n: None,
                state: None,
                error: Some("no result".into()),
                timings: Timings::default(),
            })
        })
        .collect())
}
