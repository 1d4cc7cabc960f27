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

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use snapc_core::local::{Action, LocalCoordinator, Outcome, ProcessResult, SlotId, Timings};
use snapc_core::time::Instant as CoreInstant;
use snapc_core::wire::{
    CkptState, CrState, JobDetail, JobOptions, JobState, ProcessName, StateCode,
};
use snapc_posix::fifo::PipeDir;
use snapc_posix::lcio::FifoIo;
pub use snapc_posix::lcio::RESIGNAL;
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
            pipe_dir,
            signal: Signal::SIGUSR1,
            handle,
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
    lc: Box<LocalCoordinator<MAX_PROCESSES>>,
    io: FifoIo,
    req: DirectRequest,
    results: HashMap<u32, DirectResult>,
    done: bool,
}

impl Driver {
    fn now(&self) -> CoreInstant {
        self.io.now()
    }

    fn drain(&mut self) {
        while let Some(action) = self.lc.poll_action() {
            match self.io.execute(&mut self.lc, action) {
                Some(Action::SendToGc(orted)) => self.global_verdict(orted.state.state),
                Some(Action::Report(r)) => self.record(&r),
                _ => {}
            }
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
        let n = self.io.names_of(r.slot).map(|names| names.n);
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

    /// Waits for pending reads or a name appearing in the pipe directory
    /// (at most until the next tick the FIFO side asks for, or the machine's
    /// next deadline) and feeds what arrived.
    fn wait(&mut self) {
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
    let config = snapc_posix::lcio::local_config(req.timeout);
    let io = FifoIo::new(
        req.pipe_dir.clone(),
        req.signal,
        req.timeout,
        Instant::now(),
    );
    let mut driver = Driver {
        lc: Box::new(LocalCoordinator::new(config)),
        io,
        req,
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
            })
        })
        .collect())
}
