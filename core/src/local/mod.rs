//! The local coordinator: the node daemon's side of the FIFO handshake
//! (PROTOCOL.md §4) for up to `N` local processes, and its exchange with the
//! global coordinator (§5), sequenced as ARCHITECTURE.md's "Coordinator
//! choreography" says.
//!
//! See [`LocalCoordinator`] for the contract.

mod types;

#[cfg(test)]
mod tests;

pub use types::{
    Action, Failure, Frame, InputError, IoError, JobStateIgnored, LocalConfig, LocalDeadlines,
    Mode, Outcome, Phase, ProcessInfo, ProcessResult, SlotId, Stage, TableError, Timings,
};

use crate::time::Instant;
use crate::wire::fifo::{self, GO_AHEAD, INT_FRAME_LEN, RELEASE};
use crate::wire::{
    CkptResponse, CkptState, CrState, FifoOptions, JobOptions, JobState, LocalFinish, LocalUpdate,
    OptionsFrame, OrtedState, ProcessName, StateCode,
};
use types::after;

/// How many ORTED_STATE messages may wait to be polled. One phase queues at
/// most two (a report, then RECOVERED); the rest is slack for an adapter that
/// feeds several inputs before polling.
const TO_GC_CAPACITY: usize = 4;

/// What a slot waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// No handshake; the channel is closed.
    Idle,
    /// Signalled; both FIFO names must appear.
    WaitFifos,
    Opening,
    WriteOptions,
    ReadResponse,
    WriteGoAhead,
    ReadFinal,
    WaitStopped,
    /// The result is in; the channel stays open for the release or for
    /// quiesce end.
    Held,
    WriteRelease,
}

/// What happens to a slot's channel once its result is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Keep it open for the release (or quiesce end).
    Hold,
    /// Close it.
    Close,
    /// There is no channel (the handshake never started).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    name: ProcessName,
    pid: u32,
    n: u32,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    proc: Option<Proc>,
    id: SlotId,
    step: Step,
    /// `Instant::MAX` when the step has none.
    deadline: Instant,
    /// Whether the current handshake counts towards the phase's report and
    /// has no result yet.
    in_phase: bool,
    /// A migration target in the current handshake.
    migrating: bool,
    /// The final state read, while waiting for the stop.
    final_state: CrState,
    /// The handshake's counter (the names it uses).
    hs_n: u32,
    began: Instant,
    stage_start: Instant,
    timings: Timings,
    // Outputs not yet polled, in poll order.
    report: Option<ProcessResult>,
    close: Option<SlotId>,
    emit_signal: bool,
    emit_request: bool,
}

impl Slot {
    fn new(index: usize) -> Self {
        Self {
            proc: None,
            id: SlotId {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                generation: 0,
            },
            step: Step::Idle,
            deadline: Instant::MAX,
            in_phase: false,
            migrating: false,
            final_state: CrState::None,
            hs_n: 0,
            began: Instant::ZERO,
            stage_start: Instant::ZERO,
            timings: Timings::default(),
            report: None,
            close: None,
            emit_signal: false,
            emit_request: false,
        }
    }

    /// Free for a new process: empty and nothing left to hand out.
    fn is_free(&self) -> bool {
        self.proc.is_none() && self.report.is_none() && self.close.is_none()
    }

    fn bump_generation(&mut self) {
        self.id.generation = self.id.generation.wrapping_add(1);
    }

    /// Moves to `step` with a deadline `wait` from now, and asks for the
    /// step's action.
    fn enter(&mut self, step: Step, now: Instant, wait: crate::time::Duration) {
        // The handshake's trace, step by step (debug level).
        debug!(
            "local: pid {} handshake {}: {} at {} us",
            self.proc.map_or(0, |p| p.pid),
            self.hs_n,
            Slot::stage_of(step).name(),
            now.saturating_duration_since(self.began).as_micros()
        );
        self.step = step;
        self.deadline = after(now, wait);
        self.stage_start = now;
        self.emit_request = true;
    }

    /// The time since the current stage began, and a new stage from now.
    fn lap(&mut self, now: Instant) -> Option<crate::time::Duration> {
        let d = now.saturating_duration_since(self.stage_start);
        self.stage_start = now;
        Some(d)
    }

    /// The stage of the step, for failures.
    fn stage(&self) -> Stage {
        Self::stage_of(self.step)
    }

    const fn stage_of(step: Step) -> Stage {
        match step {
            Step::Idle | Step::WaitFifos => Stage::Fifos,
            Step::Opening => Stage::Open,
            Step::WriteOptions => Stage::Options,
            Step::ReadResponse => Stage::Response,
            Step::WriteGoAhead => Stage::GoAhead,
            Step::ReadFinal => Stage::FinalState,
            Step::WaitStopped => Stage::Stop,
            Step::Held | Step::WriteRelease => Stage::Release,
        }
    }
}

/// The next handshake counter after `n`, as the app coordinator counts: the
/// names print it as a C `int`, so it returns to 0 after `i32::MAX`.
const fn next_counter(n: u32) -> u32 {
    if n >= i32::MAX as u32 { 0 } else { n + 1 }
}

/// The local coordinator of one job on one node, for up to `N` local
/// processes.
///
/// Sans-IO: it never touches a FIFO, a signal or a clock. The adapter feeds
/// it inputs and carries out the actions it asks for.
///
/// **Inputs** (each takes `now`, the adapter's monotonic time):
/// - the process table: [`add_process`](Self::add_process),
///   [`remove_process`](Self::remove_process),
///   [`update_pid`](Self::update_pid) /
///   [`handle_local_update`](Self::handle_local_update) (LOCAL_UPDATE after a
///   restart: new pid, counter back to 0);
/// - from the global coordinator: [`handle_job_state`](Self::handle_job_state);
/// - per slot, the answers to actions:
///   [`handle_fifos_exist`](Self::handle_fifos_exist),
///   [`handle_opened`](Self::handle_opened),
///   [`handle_written`](Self::handle_written),
///   [`handle_read`](Self::handle_read) (the bytes of the frame asked for),
///   [`handle_io_error`](Self::handle_io_error) (EOF or error: the process is
///   gone), [`handle_stopped`](Self::handle_stopped);
/// - from a process: [`handle_local_finish`](Self::handle_local_finish)
///   (informational, logged, never required);
/// - [`handle_timeout`](Self::handle_timeout) when the instant from
///   [`poll_timeout`](Self::poll_timeout) has come.
///
/// **Outputs**: after every input, call [`poll_action`](Self::poll_action)
/// until it returns `None` and carry the actions out in the order given (a
/// slot's [`Action::Close`] comes before the next handshake's actions for
/// that slot), then call [`poll_timeout`](Self::poll_timeout) and arm a
/// timer for it. Each slot has at most one answered action outstanding
/// (watch, open, write, read or stop wait). An input that does not fit the
/// slot's step, or names an earlier generation of the slot, is ignored with
/// an [`InputError`] and counted ([`unexpected_inputs`](Self::unexpected_inputs)).
///
/// **Behaviour**: a JOB_STATE RUNNING starts a phase: every process in the
/// table is signalled and runs the handshake (or, at quiesce end, has its
/// final state read on the channel kept open). A process that refuses, sends
/// a malformed frame, vanishes or misses a deadline is failed, reported and
/// closed; the others go on. When every process has a result the machine
/// sends ORTED_STATE with the lowest state (FINISHED_LOCAL, INC_PREPED or
/// ERROR; at once with no processes). JOB_STATE ESTABLISHED or ERROR then
/// releases every open channel, closes it and sends RECOVERED; INC_PREPED
/// keeps the channels open until quiesce end. A JOB_STATE that does not fit
/// is ignored with a [`JobStateIgnored`]. Every wait has a deadline
/// ([`LocalDeadlines`]); a missed one fails that process, or ends the whole
/// phase with ERROR, and the machine is ready for the next checkpoint.
///
/// **Counters**: each process's handshake counter `n` starts at 0 and goes
/// up by one when a handshake this machine signalled ends (whatever its
/// end), as the app coordinator's does; [`update_pid`](Self::update_pid)
/// sets it back to 0.
///
/// **Size**: `size_of::<LocalCoordinator<8>>()` is 3 152 bytes on x86_64
/// (checked by a test): 144 bytes plus 376 per process slot (most of it the
/// per-stage timings, kept once for the running handshake and once in a
/// result not yet polled). Nothing is allocated.
#[derive(Debug)]
pub struct LocalCoordinator<const N: usize> {
    config: LocalConfig,
    slots: [Slot; N],
    phase: Phase,
    /// Deadline of the verdict or quiesced wait; `Instant::MAX` otherwise.
    phase_deadline: Instant,
    /// What to report once the releases are done.
    release_report: CkptState,
    handle: u32,
    options: JobOptions,
    all_migrating: bool,
    /// Processes of the phase without a result yet.
    pending: usize,
    /// The lowest state of the phase so far.
    lowest: CkptState,
    to_gc: heapless::Deque<OrtedState, TO_GC_CAPACITY>,
    unexpected: u32,
}

impl<const N: usize> LocalCoordinator<N> {
    /// An idle coordinator with an empty process table.
    pub fn new(config: LocalConfig) -> Self {
        Self {
            config,
            slots: core::array::from_fn(Slot::new),
            phase: Phase::Idle,
            phase_deadline: Instant::MAX,
            release_report: CkptState::Recovered,
            handle: 0,
            options: JobOptions::default(),
            all_migrating: false,
            pending: 0,
            lowest: CkptState::FinishedLocal,
            to_gc: heapless::Deque::new(),
            unexpected: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// What the machine is doing.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Inputs ignored because they did not fit.
    pub fn unexpected_inputs(&self) -> u32 {
        self.unexpected
    }

    /// How many processes the table holds.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.proc.is_some()).count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The process named `name`.
    pub fn process(&self, name: ProcessName) -> Option<ProcessInfo> {
        self.slots.iter().find_map(|s| {
            s.proc.filter(|p| p.name == name).map(|p| ProcessInfo {
                slot: s.id,
                name: p.name,
                pid: p.pid,
                n: p.n,
            })
        })
    }

    // ---- the process table ----

    /// Adds a local process. It takes part from the next JOB_STATE RUNNING.
    pub fn add_process(&mut self, name: ProcessName, pid: u32) -> Result<SlotId, TableError> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(TableError::BadPid);
        }
        let taken = self
            .slots
            .iter()
            .filter_map(|s| s.proc)
            .any(|p| p.name == name || p.pid == pid);
        if taken {
            return Err(TableError::Duplicate);
        }
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.is_free())
            .ok_or(TableError::Full)?;
        slot.bump_generation();
        slot.proc = Some(Proc { name, pid, n: 0 });
        slot.step = Step::Idle;
        slot.deadline = Instant::MAX;
        slot.in_phase = false;
        debug!(
            "local: process {}.{} pid {} added",
            name.jobid, name.vpid, pid
        );
        Ok(slot.id)
    }

    /// Removes a process. A handshake it is in ends with
    /// [`Failure::Removed`] (reported, channel closed).
    pub fn remove_process(&mut self, now: Instant, name: ProcessName) -> Result<(), TableError> {
        let i = self.find(name)?;
        self.interrupt(i, now, Failure::Removed);
        if let Some(slot) = self.slots.get_mut(i) {
            slot.proc = None;
        }
        debug!("local: process {}.{} removed", name.jobid, name.vpid);
        self.check_phase_end(now);
        Ok(())
    }

    /// A restarted process has a new pid (LOCAL_UPDATE): its handshake
    /// counter returns to 0. A handshake it is in ends with
    /// [`Failure::Restarted`].
    pub fn update_pid(
        &mut self,
        now: Instant,
        name: ProcessName,
        pid: u32,
    ) -> Result<SlotId, TableError> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(TableError::BadPid);
        }
        let i = self.find(name)?;
        let clash = self
            .slots
            .iter()
            .enumerate()
            .any(|(j, s)| j != i && s.proc.is_some_and(|p| p.pid == pid));
        if clash {
            return Err(TableError::Duplicate);
        }
        self.interrupt(i, now, Failure::Restarted);
        let slot = self.slots.get_mut(i).ok_or(TableError::UnknownProcess)?;
        slot.bump_generation();
        slot.proc = Some(Proc { name, pid, n: 0 });
        debug!(
            "local: process {}.{} has the new pid {}",
            name.jobid, name.vpid, pid
        );
        let id = slot.id;
        self.check_phase_end(now);
        Ok(id)
    }

    /// LOCAL_UPDATE from a restarted process: [`update_pid`](Self::update_pid).
    pub fn handle_local_update(
        &mut self,
        now: Instant,
        update: &LocalUpdate,
    ) -> Result<SlotId, TableError> {
        let pid = u32::try_from(update.pid).map_err(|_| TableError::BadPid)?;
        self.update_pid(now, update.name, pid)
    }

    /// LOCAL_FINISH from process `pid`: logged only. The handshake's end is
    /// known from the FIFO; this message is never waited for.
    pub fn handle_local_finish(&mut self, now: Instant, pid: u32, finish: &LocalFinish) {
        let _ = now;
        let known = self
            .slots
            .iter()
            .any(|s| s.proc.is_some_and(|p| p.pid == pid));
        if known {
            debug!(
                "local: pid {} finished with {}",
                pid,
                finish.cr_state.name()
            );
        } else {
            debug!(
                "local: LOCAL_FINISH {} from unknown pid {}",
                finish.cr_state.name(),
                pid
            );
        }
    }

    fn find(&self, name: ProcessName) -> Result<usize, TableError> {
        self.slots
            .iter()
            .position(|s| s.proc.is_some_and(|p| p.name == name))
            .ok_or(TableError::UnknownProcess)
    }

    /// Ends whatever slot `i` is doing because the table changed under it.
    fn interrupt(&mut self, i: usize, now: Instant, failure: Failure) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        match slot.step {
            Step::Idle => {}
            // The result is already in: only the channel is left.
            Step::Held | Step::WriteRelease => self.close(i),
            _ => self.finish(i, now, Outcome::Failed(failure), After::Close),
        }
    }

    // ---- the global coordinator ----

    /// JOB_STATE from the global coordinator.
    pub fn handle_job_state(
        &mut self,
        now: Instant,
        job: &JobState<'_>,
    ) -> Result<(), JobStateIgnored> {
        let state = job.state.state;
        let ignored = JobStateIgnored::DoesNotFit {
            state,
            phase: self.phase,
        };
        let result = match (state, self.phase) {
            (
                CkptState::Running,
                Phase::Idle | Phase::Quiesced | Phase::AwaitVerdict(CkptState::IncPreped),
            ) => match job.detail {
                None => Err(JobStateIgnored::MissingDetail),
                Some(detail) => {
                    let o = detail.options;
                    let mode = if o.inc_recover_only {
                        Mode::RecoverOnly
                    } else if o.inc_prep_only {
                        Mode::PrepareOnly
                    } else {
                        Mode::Checkpoint
                    };
                    if mode != Mode::RecoverOnly && self.phase != Phase::Idle {
                        Err(ignored)
                    } else {
                        self.start(now, mode, &detail);
                        Ok(())
                    }
                }
            },
            (CkptState::IncPreped, Phase::AwaitVerdict(CkptState::IncPreped)) => {
                debug!("local: quiesced");
                self.phase = Phase::Quiesced;
                self.phase_deadline = after(now, self.config.deadlines.quiesced);
                Ok(())
            }
            (
                CkptState::Established | CkptState::Error,
                Phase::AwaitVerdict(_) | Phase::Quiesced,
            ) => {
                self.release(now, CkptState::Recovered);
                Ok(())
            }
            (CkptState::Error, Phase::Handshake(_)) => {
                warn!("local: the global coordinator ended the checkpoint during the handshakes");
                self.abort(now);
                Ok(())
            }
            _ => Err(ignored),
        };
        if result.is_err() {
            warn!("local: JOB_STATE {} ignored", state.name());
            self.unexpected = self.unexpected.saturating_add(1);
        }
        result
    }

    /// Starts a phase for every process in the table.
    fn start(&mut self, now: Instant, mode: Mode, detail: &crate::wire::JobDetail<'_>) {
        debug!("local: phase starts, handle {}", detail.handle);
        self.phase = Phase::Handshake(mode);
        self.phase_deadline = Instant::MAX;
        self.handle = detail.handle;
        self.options = detail.options;
        self.all_migrating = detail.migrating.is_some();
        self.pending = 0;
        self.lowest = mode.success();
        let deadlines = self.config.deadlines;
        for i in 0..N {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            let Some(proc) = slot.proc else {
                continue;
            };
            let migrating = detail
                .migrating
                .is_some_and(|list| list.iter().any(|p| p == proc.name));
            self.pending += 1;
            slot.in_phase = true;
            slot.migrating = migrating;
            slot.began = now;
            slot.timings = Timings::default();
            match (mode, slot.step) {
                (Mode::RecoverOnly, Step::Held) => {
                    slot.enter(Step::ReadFinal, now, deadlines.final_state);
                }
                (Mode::RecoverOnly, _) => {
                    self.finish(
                        i,
                        now,
                        Outcome::Failed(Failure::NotQuiesced),
                        After::Nothing,
                    );
                }
                (_, Step::Idle) => {
                    slot.bump_generation();
                    slot.hs_n = proc.n;
                    slot.emit_signal = true;
                    slot.enter(Step::WaitFifos, now, deadlines.fifos);
                }
                // Not reachable from an idle phase; failed rather than trusted.
                _ => self.finish(i, now, Outcome::Failed(Failure::Aborted), After::Close),
            }
        }
        self.check_phase_end(now);
    }

    /// The global coordinator's ERROR during the handshakes: every running
    /// handshake fails, then every open channel is released.
    fn abort(&mut self, now: Instant) {
        // Leave the handshake phase first, so that the last failure does not
        // send a report.
        self.phase = Phase::Releasing;
        for i in 0..N {
            let running = self
                .slots
                .get(i)
                .is_some_and(|s| !matches!(s.step, Step::Idle | Step::Held | Step::WriteRelease));
            if running {
                self.finish(i, now, Outcome::Failed(Failure::Aborted), After::Close);
            }
        }
        self.release(now, CkptState::Recovered);
    }

    /// Releases every open channel; `report` goes to the global coordinator
    /// once all are written and closed.
    fn release(&mut self, now: Instant, report: CkptState) {
        debug!("local: releasing, then reporting {}", report.name());
        self.phase = Phase::Releasing;
        self.phase_deadline = Instant::MAX;
        self.release_report = report;
        self.pending = 0;
        let write = self.config.deadlines.write;
        for slot in self.slots.iter_mut() {
            slot.in_phase = false;
            if slot.step == Step::Held {
                slot.enter(Step::WriteRelease, now, write);
            }
        }
        self.check_phase_end(now);
    }

    /// Sends the phase's report when it is complete.
    fn check_phase_end(&mut self, now: Instant) {
        match self.phase {
            Phase::Handshake(_) if self.pending == 0 => {
                let state = self.lowest;
                debug!(
                    "local: every process has a result; reporting {}",
                    state.name()
                );
                self.send(state);
                self.phase = Phase::AwaitVerdict(state);
                self.phase_deadline = after(now, self.config.deadlines.verdict);
            }
            Phase::Releasing if !self.slots.iter().any(|s| s.step == Step::WriteRelease) => {
                self.send(self.release_report);
                self.phase = Phase::Idle;
                self.phase_deadline = Instant::MAX;
            }
            _ => {}
        }
    }

    fn send(&mut self, state: CkptState) {
        let message = OrtedState {
            quick: true,
            state: StateCode::plain(state),
        };
        if self.to_gc.push_back(message).is_err() {
            warn!(
                "local: ORTED_STATE {} dropped: actions were not polled",
                state.name()
            );
        }
    }

    // ---- slot results ----

    /// Records slot `i`'s result for the phase and moves its channel on.
    fn finish(&mut self, i: usize, now: Instant, outcome: Outcome, then: After) {
        let mode = match self.phase {
            Phase::Handshake(mode) => mode,
            _ => Mode::Checkpoint,
        };
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(proc) = slot.proc else {
            return;
        };
        let mut timings = slot.timings;
        timings.total = now.saturating_duration_since(slot.began);
        let result = ProcessResult {
            slot: slot.id,
            name: proc.name,
            pid: proc.pid,
            n: slot.hs_n,
            outcome,
            timings,
        };
        if slot.report.replace(result).is_some() {
            warn!("local: a process result was dropped: actions were not polled");
        }
        match outcome {
            Outcome::State(s) => debug!(
                "local: pid {} handshake {}: ended with {} after {} us",
                proc.pid,
                slot.hs_n,
                s.name(),
                timings.total.as_micros()
            ),
            Outcome::Failed(_) => warn!(
                "local: pid {} handshake {}: failed at the {} after {} us",
                proc.pid,
                slot.hs_n,
                slot.stage().name(),
                timings.total.as_micros()
            ),
        }
        let counted = core::mem::replace(&mut slot.in_phase, false);
        match then {
            After::Hold => {
                slot.step = Step::Held;
                slot.deadline = Instant::MAX;
                slot.emit_request = false;
            }
            After::Close => self.close(i),
            After::Nothing => {}
        }
        if counted {
            let state = match outcome {
                Outcome::State(CrState::Continue | CrState::Term) if mode != Mode::PrepareOnly => {
                    CkptState::FinishedLocal
                }
                Outcome::State(CrState::Running) if mode == Mode::PrepareOnly => {
                    CkptState::IncPreped
                }
                _ => CkptState::Error,
            };
            self.lowest = self.lowest.min(state);
            self.pending = self.pending.saturating_sub(1);
        }
    }

    /// Closes slot `i`'s channel; its handshake is over, so the counter moves
    /// on as the app coordinator's does.
    fn close(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if slot.step == Step::Idle {
            return;
        }
        slot.close = Some(slot.id);
        slot.step = Step::Idle;
        slot.deadline = Instant::MAX;
        slot.emit_signal = false;
        slot.emit_request = false;
        if let Some(p) = slot.proc.as_mut() {
            p.n = next_counter(slot.hs_n);
        }
    }

    // ---- FIFO and process inputs ----

    /// The slot index of `id` if it is current.
    fn slot_of(&mut self, id: SlotId) -> Result<usize, InputError> {
        let i = id.index();
        let result = match self.slots.get(i) {
            None => Err(InputError::NoSuchSlot),
            Some(s) if s.id != id || s.proc.is_none() => Err(InputError::Stale),
            Some(_) => Ok(i),
        };
        if result.is_err() {
            self.unexpected = self.unexpected.saturating_add(1);
        }
        result
    }

    fn unexpected(&mut self) -> Result<(), InputError> {
        warn!("local: input ignored: the slot does not wait for it");
        self.unexpected = self.unexpected.saturating_add(1);
        Err(InputError::Unexpected)
    }

    fn step_of(&self, i: usize) -> Step {
        self.slots.get(i).map_or(Step::Idle, |s| s.step)
    }

    /// Both FIFO names of the slot exist.
    pub fn handle_fifos_exist(&mut self, now: Instant, slot: SlotId) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let open = self.config.deadlines.open;
        match self.slots.get_mut(i) {
            Some(s) if s.step == Step::WaitFifos => {
                s.timings.fifos = s.lap(now);
                s.enter(Step::Opening, now, open);
                Ok(())
            }
            _ => self.unexpected(),
        }
    }

    /// Both FIFOs of the slot are open.
    pub fn handle_opened(&mut self, now: Instant, slot: SlotId) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let write = self.config.deadlines.write;
        match self.slots.get_mut(i) {
            Some(s) if s.step == Step::Opening => {
                s.timings.open = s.lap(now);
                s.enter(Step::WriteOptions, now, write);
                Ok(())
            }
            _ => self.unexpected(),
        }
    }

    /// The last [`Action::Write`] of the slot is written, whole.
    pub fn handle_written(&mut self, now: Instant, slot: SlotId) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let d = self.config.deadlines;
        let Some(s) = self.slots.get_mut(i) else {
            return self.unexpected();
        };
        match s.step {
            Step::WriteOptions => {
                s.timings.options = s.lap(now);
                s.enter(Step::ReadResponse, now, d.response);
            }
            Step::WriteGoAhead => {
                s.timings.go_ahead = s.lap(now);
                s.enter(Step::ReadFinal, now, d.final_state);
            }
            Step::WriteRelease => {
                self.close(i);
                self.check_phase_end(now);
            }
            _ => return self.unexpected(),
        }
        Ok(())
    }

    /// The bytes read for the slot's last [`Action::Read`]. A length other
    /// than the one asked for is a short (or long) read: malformed.
    pub fn handle_read(
        &mut self,
        now: Instant,
        slot: SlotId,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        match self.step_of(i) {
            Step::ReadResponse => self.on_response(i, now, bytes),
            Step::ReadFinal => self.on_final_state(i, now, bytes),
            _ => return self.unexpected(),
        }
        self.check_phase_end(now);
        Ok(())
    }

    fn on_response(&mut self, i: usize, now: Instant, bytes: &[u8]) {
        let write = self.config.deadlines.write;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        s.timings.response = s.lap(now);
        match fifo::parse_response(bytes) {
            Ok(CkptResponse::Start) => s.enter(Step::WriteGoAhead, now, write),
            Ok(refused) => self.finish(
                i,
                now,
                Outcome::Failed(Failure::Refused(refused)),
                After::Close,
            ),
            Err(e) => {
                let failure = Failure::Malformed {
                    stage: Stage::Response,
                    kind: e.kind,
                };
                self.finish(i, now, Outcome::Failed(failure), After::Close);
            }
        }
    }

    fn on_final_state(&mut self, i: usize, now: Instant, bytes: &[u8]) {
        let mode = match self.phase {
            Phase::Handshake(mode) => mode,
            _ => Mode::Checkpoint,
        };
        let stop = self.options.stop;
        let stop_wait = self.config.deadlines.stop;
        let target = self.all_migrating;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        s.timings.final_state = s.lap(now);
        let target = target && s.migrating;
        let state = match fifo::parse_cr_state(bytes) {
            Ok(state) => state,
            Err(e) => {
                let failure = Failure::Malformed {
                    stage: Stage::FinalState,
                    kind: e.kind,
                };
                return self.finish(i, now, Outcome::Failed(failure), After::Close);
            }
        };
        // A migration target tears down after its final state without
        // waiting for the release (PROTOCOL.md §4 step 5): close it.
        let then = if target { After::Close } else { After::Hold };
        match (mode, state) {
            (Mode::PrepareOnly, CrState::Running | CrState::Error) => {
                self.finish(i, now, Outcome::State(state), then)
            }
            (Mode::Checkpoint | Mode::RecoverOnly, CrState::Continue | CrState::Term)
                if stop && !target =>
            {
                s.final_state = state;
                s.enter(Step::WaitStopped, now, stop_wait);
            }
            (
                Mode::Checkpoint | Mode::RecoverOnly,
                CrState::Continue | CrState::Term | CrState::Error,
            ) => self.finish(i, now, Outcome::State(state), then),
            _ => self.finish(
                i,
                now,
                Outcome::Failed(Failure::UnexpectedState(state)),
                After::Close,
            ),
        }
    }

    /// The slot's process has stopped (`stop` option).
    pub fn handle_stopped(&mut self, now: Instant, slot: SlotId) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let Some(s) = self.slots.get_mut(i) else {
            return self.unexpected();
        };
        if s.step != Step::WaitStopped {
            return self.unexpected();
        }
        s.timings.stop = s.lap(now);
        let state = s.final_state;
        self.finish(i, now, Outcome::State(state), After::Hold);
        self.check_phase_end(now);
        Ok(())
    }

    /// A FIFO operation of the slot failed, or met EOF, or the signal could
    /// not be delivered: the process is gone.
    pub fn handle_io_error(
        &mut self,
        now: Instant,
        slot: SlotId,
        error: IoError,
    ) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let Some(s) = self.slots.get(i) else {
            return self.unexpected();
        };
        let stage = s.stage();
        match s.step {
            Step::Idle => return self.unexpected(),
            Step::Held | Step::WriteRelease => {
                // The result is already in; the channel is gone.
                warn!(
                    "local: channel of pid {} lost after its result",
                    s.proc.map_or(0, |p| p.pid)
                );
                self.close(i);
            }
            _ => {
                let eof = error == IoError::Eof;
                debug!("local: slot {} gone (eof: {})", i, eof);
                self.finish(
                    i,
                    now,
                    Outcome::Failed(Failure::PeerGone(stage)),
                    After::Close,
                );
            }
        }
        self.check_phase_end(now);
        Ok(())
    }

    /// Time has come (see [`poll_timeout`](Self::poll_timeout)).
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..N {
            let Some(s) = self.slots.get(i) else {
                continue;
            };
            if s.deadline > now || s.proc.is_none() {
                continue;
            }
            let stage = s.stage();
            match s.step {
                Step::Idle | Step::Held => {}
                Step::WriteRelease => {
                    warn!(
                        "local: release of pid {} timed out",
                        s.proc.map_or(0, |p| p.pid)
                    );
                    self.close(i);
                }
                _ => self.finish(
                    i,
                    now,
                    Outcome::Failed(Failure::Timeout(stage)),
                    After::Close,
                ),
            }
        }
        self.check_phase_end(now);
        if self.phase_deadline <= now
            && matches!(self.phase, Phase::AwaitVerdict(_) | Phase::Quiesced)
        {
            warn!("local: no verdict from the global coordinator in time; releasing");
            self.release(now, CkptState::Error);
        }
    }

    // ---- outputs ----

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        let options = self.frame_options();
        let handle = self.handle;
        for s in self.slots.iter_mut() {
            if let Some(result) = s.report.take() {
                return Some(Action::Report(result));
            }
            if let Some(slot) = s.close.take() {
                return Some(Action::Close { slot });
            }
            let Some(proc) = s.proc else {
                continue;
            };
            let slot = s.id;
            if core::mem::take(&mut s.emit_signal) {
                return Some(Action::Signal {
                    slot,
                    pid: proc.pid,
                });
            }
            if !core::mem::take(&mut s.emit_request) {
                continue;
            }
            let names = crate::wire::ChannelNames {
                pid: proc.pid,
                n: s.hs_n,
            };
            let action = match s.step {
                Step::WaitFifos => Action::WatchFifos { slot, names },
                Step::Opening => Action::OpenFifos { slot, names },
                Step::WriteOptions => {
                    let frame = OptionsFrame {
                        options: FifoOptions {
                            migrating: s.migrating,
                            ..options
                        },
                        handle,
                    };
                    Action::Write {
                        slot,
                        bytes: frame.to_bytes(),
                    }
                }
                Step::WriteGoAhead => Action::Write {
                    slot,
                    bytes: Frame::from_slice(&GO_AHEAD).unwrap_or_default(),
                },
                Step::WriteRelease => Action::Write {
                    slot,
                    bytes: Frame::from_slice(&RELEASE).unwrap_or_default(),
                },
                Step::ReadResponse | Step::ReadFinal => Action::Read {
                    slot,
                    len: INT_FRAME_LEN,
                },
                Step::WaitStopped => Action::WaitStopped {
                    slot,
                    pid: proc.pid,
                },
                Step::Idle | Step::Held => continue,
            };
            return Some(action);
        }
        self.to_gc.pop_front().map(Action::SendToGc)
    }

    /// The options every process of this phase gets, less `migrating`.
    fn frame_options(&self) -> FifoOptions {
        let o = self.options;
        FifoOptions {
            all_migrating: self.all_migrating,
            migrating: false,
            term: o.term,
            stop: o.stop,
            inc_prep_only: o.inc_prep_only,
            inc_recover_only: o.inc_recover_only,
            debugger: self.config.debugger,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slots = self
            .slots
            .iter()
            .filter(|s| s.proc.is_some() && !matches!(s.step, Step::Idle | Step::Held))
            .map(|s| s.deadline);
        let phase = match self.phase {
            Phase::AwaitVerdict(_) | Phase::Quiesced => Some(self.phase_deadline),
            _ => None,
        };
        slots.chain(phase).min().filter(|&t| t != Instant::MAX)
    }
}
