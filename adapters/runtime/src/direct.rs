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
//! It never joins another coordinator's handshake and signals once per
//! handshake (see [`snapc_posix::lcio`]): a process in a handshake with
//! another coordinator, or that does not handle the signal, is refused at
//! once with the reason; one that exits or stops meanwhile is reported as
//! such. A failure says which step it was waiting for, in which pipe
//! directory, and what state the process is in.
//!
//! A result names its snapshot only if it exists: where the process's own
//! environment (`SNAPC_SNAPSHOT_ROOT`, `SNAPC_STORE`) or the request's store
//! says a snapc process puts it. A process that saves elsewhere (Open MPI's
//! ranks save through their own store) gets no path but a note.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use snapc_core::local::{
    Action, LocalCoordinator, ProcessFailure as Failure, ProcessOutcome as Outcome, ProcessResult,
    ProcessSlot, SlotId, Stage, Timings,
};
use snapc_core::time::Instant as CoreInstant;
use snapc_core::wire::{
    CkptState, CrState, FromGc, JobDetail, JobOptions, JobState, Message, OrtedState, ProcessName,
    StateCode,
};
use snapc_core::{MAX_MESSAGE_LEN, MessageBuf};
use snapc_posix::fifo::PipeDir;
use snapc_posix::lcio::FifoIo;
use snapc_posix::target;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// The deadline of each protocol wait on a process.
    pub timeout: Duration,
    /// The bound of each process's own checkpoint work (go-ahead to final
    /// state).
    pub checkpoint_timeout: Duration,
    /// The processes' pipe directory.
    pub pipe_dir: PipeDir,
    /// The checkpoint signal.
    pub signal: Signal,
    /// The sstore handle to give the snapshot.
    pub handle: u32,
    /// The standalone store the processes are thought to use, when their
    /// own environment does not say (`SNAPC_STORE` of the caller).
    pub store: Option<PathBuf>,
}

impl DirectRequest {
    /// A checkpoint after which the processes continue: SIGUSR1, a 10 s
    /// deadline per wait; set the other fields as needed.
    pub fn new(pids: Vec<u32>, pipe_dir: PipeDir, handle: u32) -> Self {
        Self {
            pids,
            term: false,
            stop: false,
            prep_only: false,
            hold: Duration::ZERO,
            timeout: Duration::from_secs(10),
            checkpoint_timeout: snapc_posix::lcio::DEFAULT_CHECKPOINT_TIMEOUT,
            pipe_dir,
            signal: Signal::SIGUSR1,
            handle,
            store: None,
        }
    }
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
    /// The snapshot's directory, when the process completed and it exists.
    pub snapshot: Option<PathBuf>,
    /// Why no snapshot is named although the process completed.
    pub snapshot_note: Option<String>,
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

struct Driver {
    lc: LocalCoordinator<Vec<ProcessSlot>>,
    io: FifoIo,
    req: DirectRequest,
    results: HashMap<u32, DirectResult>,
    /// What each process says of where it saves its snapshot, read while
    /// the coordinator waits for it (before its release: `term` ends it).
    envs: HashMap<u32, ProcEnv>,
    done: bool,
}

impl Driver {
    fn now(&self) -> CoreInstant {
        self.io.now()
    }

    fn drain(&mut self) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(action) = self.lc.poll_action(&mut out) {
            match self.io.execute(&mut self.lc, action) {
                Some(Action::SendToGc { len }) => match OrtedState::parse(&out[..len]) {
                    Ok(orted) => self.global_verdict(orted.state.state),
                    Err(e) => log::error!("ORTED_STATE: {e}"),
                },
                Some(Action::Report(r)) => self.record(&r),
                _ => {}
            }
        }
    }

    /// A JOB_STATE from this one-node global coordinator, through the local
    /// coordinator's bytes boundary.
    fn job_state(&mut self, job: &JobState<'_>) -> Result<(), String> {
        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
        let n = FromGc::JobState(*job)
            .emit(&mut buf)
            .map_err(|e| e.to_string())?;
        let now = self.now();
        self.lc
            .handle_gc_message(now, &buf[..n])
            .map_err(|e| e.to_string())
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
                let _ = self.job_state(&job);
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
        if let Err(e) = self.job_state(&job) {
            log::warn!("verdict {verdict} not taken: {e}");
            self.done = true;
        }
    }

    fn record(&mut self, r: &ProcessResult) {
        let expected = |s: CrState| match self.req.prep_only {
            true => s == CrState::Running,
            false => matches!(s, CrState::Continue | CrState::Term),
        };
        let note = self.io.take_note(r.slot);
        let (state, error) = match r.outcome {
            Outcome::State(s) if expected(s) => (Some(s), None),
            Outcome::State(s) => (Some(s), Some(format!("process reported {s}"))),
            Outcome::Failed(f) => (None, Some(self.explain(r.pid, f, note))),
        };
        let n = self.io.names_of(r.slot).map(|names| names.n);
        // Looked for now: the process synced it before its final state and
        // is still alive (`term` ends it after its release).
        let (snapshot, snapshot_note) = match error {
            None if !self.req.prep_only => {
                let env = self
                    .envs
                    .remove(&r.pid)
                    .unwrap_or_else(|| ProcEnv::of(r.pid));
                match locate_snapshot(r.pid, self.req.handle, self.req.store.as_deref(), &env) {
                    Ok(p) => (Some(p), None),
                    Err(note) => (None, Some(note)),
                }
            }
            _ => (None, None),
        };
        self.results.insert(
            r.pid,
            DirectResult {
                pid: r.pid,
                n,
                state,
                error,
                timings: r.timings,
                snapshot,
                snapshot_note,
            },
        );
    }

    /// A failure in words: the step, for a deadline the pipe directory
    /// watched and the process's state, and what the FIFO side knows.
    fn explain(&self, pid: u32, f: Failure, note: Option<String>) -> String {
        let d = self.lc.config().deadlines;
        match (f, note) {
            (Failure::Timeout(stage), note) => {
                let limit = match stage {
                    Stage::Fifos => d.fifos,
                    Stage::Open => d.open,
                    Stage::Options | Stage::GoAhead | Stage::Release => d.write,
                    Stage::Response => d.response,
                    Stage::FinalState => d.final_state,
                    Stage::Stop => d.stop,
                };
                let mut text = format!(
                    "{f} ({} s, pipe directory {}); {}",
                    Duration::from(limit).as_secs_f64(),
                    self.req.pipe_dir.path().display(),
                    target::describe(pid, self.req.signal)
                );
                if let Some(n) = note {
                    text.push_str("; ");
                    text.push_str(&n);
                }
                text
            }
            (Failure::PeerGone(stage) | Failure::Malformed { stage, .. }, Some(n))
                if stage != Stage::Fifos =>
            {
                format!("{n} (during the {})", stage.name())
            }
            (_, Some(n)) => n,
            (f, None) => f.to_string(),
        }
    }

    /// Waits for pending reads or a name appearing in the pipe directory
    /// (at most until the next tick the FIFO side asks for, or the machine's
    /// next deadline) and feeds what arrived.
    fn wait(&mut self) {
        // While a process runs its checkpoint (hooks and store steps, always
        // longer than this read), read where it saves its snapshot (its
        // environment): not between its final state and its release, nor
        // while it prepares (a prepare hook may answer at once).
        if !self.req.prep_only {
            for pid in self.io.pids_at_work() {
                self.envs.entry(pid).or_insert_with(|| ProcEnv::of(pid));
            }
        }
        let cap = self.io.tick_within().unwrap_or(Duration::from_millis(100));
        let until = self.io.deadline(&self.lc, cap);
        let ready: Vec<SlotId> = {
            let reads = self.io.read_fds();
            let mut fds: Vec<PollFd<'_>> = reads
                .iter()
                .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN))
                .collect();
            // Only a wakeup: the tick that follows scans the directory.
            if let Some(fd) = self.io.notify_fd() {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let ms = until.saturating_duration_since(Instant::now()).as_millis();
            let timeout = PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX));
            match poll(&mut fds, timeout) {
                Ok(n) if n > 0 => reads
                    .iter()
                    .zip(fds.iter())
                    .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
                    .map(|((slot, _), _)| *slot)
                    .collect(),
                _ => Vec::new(),
            }
        };
        for slot in ready {
            self.io.read_ready(&mut self.lc, slot);
        }
        self.io.fail_orphan_reads(&mut self.lc);
    }
}

/// Checkpoints every process of `req` concurrently; one result per pid, in the order given.
pub fn checkpoint(req: DirectRequest) -> Result<Vec<DirectResult>, DirectError> {
    let config = snapc_posix::lcio::local_config(req.timeout, req.checkpoint_timeout);
    let io = FifoIo::new(
        req.pipe_dir.clone(),
        req.signal,
        req.timeout,
        Instant::now(),
    );
    let mut driver = Driver {
        lc: LocalCoordinator::new(config, vec![ProcessSlot::EMPTY; req.pids.len()]),
        io,
        req,
        results: HashMap::new(),
        envs: HashMap::new(),
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
    if let Err(e) = driver.job_state(&job) {
        log::error!("could not start the checkpoint: {e}");
    }
    // Bounded: every wait in the machine has a deadline, and the machine
    // reports RECOVERED (or a refused verdict ends the loop) after the last.
    while !driver.done {
        driver.drain();
        if driver.done {
            break;
        }
        driver.io.tick(&mut driver.lc);
        // What the tick fed in may have produced actions: carry them out before waiting.
        driver.drain();
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
                snapshot: None,
                snapshot_note: None,
            })
        })
        .collect())
}

/// What a process's environment says of where it saves its snapshots.
struct ProcEnv {
    /// Its `SNAPC_*` variables.
    vars: Vec<(String, std::ffi::OsString)>,
    cwd: Option<PathBuf>,
}

impl ProcEnv {
    fn of(pid: u32) -> Self {
        Self {
            vars: target::environ(pid)
                .map(|e| e.with_prefix("SNAPC_"))
                .unwrap_or_default(),
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
        }
    }

    fn var(&self, name: &str) -> Option<&std::ffi::OsString> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// The snapshot a snapc process `pid` wrote for `handle`: in `store` (the
/// caller's idea of its standalone store), else where its environment says
/// (a daemon's staging root, its own `SNAPC_STORE`); else why none is named.
fn locate_snapshot(
    pid: u32,
    handle: u32,
    store: Option<&std::path::Path>,
    env: &ProcEnv,
) -> Result<PathBuf, String> {
    let standalone =
        |s: &std::path::Path| snapc_posix::app::standalone_snapshot_dir(s, handle, pid);
    let first = store.map(standalone);
    if let Some(p) = first.as_ref().filter(|p| p.is_dir()) {
        return Ok(p.clone());
    }
    let var = |name: &str| {
        env.var(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .map(|p| match &env.cwd {
                Some(c) if p.is_relative() => c.join(p),
                _ => p,
            })
    };
    let staged = var("SNAPC_SNAPSHOT_ROOT").map(|root| {
        let rank = var("SNAPC_RANK")
            .and_then(|r| r.to_str()?.parse().ok())
            .unwrap_or(0);
        snapc_posix::sstore::staged_rank_dir(&root, handle, rank)
    });
    let own = var("SNAPC_STORE").map(|s| standalone(&s));
    if let Some(p) = staged.into_iter().chain(own).find(|p| p.is_dir()) {
        return Ok(p);
    }
    Err(match first {
        Some(p) => format!(
            "nothing at {}: the process did not say where it saved its snapshot",
            p.display()
        ),
        None => "the process did not say where it saved its snapshot".into(),
    })
}
