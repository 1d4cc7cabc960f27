//! The local coordinator: the node daemon's side of the FIFO handshake
//! (docs/PROTOCOL.md §4) for the local processes of one job, and its
//! exchange with the global coordinator (§5), sequenced as
//! docs/PROTOCOL.md §8 says.
//!
//! See [`LocalCoordinator`] for what it does and the crate's front page for
//! the contract it follows.

mod types;

#[cfg(test)]
mod tests;

pub use types::{
    Action, Config, InputError, LocalDeadlines, Mode, Phase, ProcessFailure, ProcessInfo,
    ProcessOutcome, ProcessResult, SlotId, Stage, Timings,
};

use crate::time::{Duration, Instant};
use crate::wire::fifo::{self, FrameBytes, GO_AHEAD, INT_FRAME_LEN, RELEASE};
use crate::wire::{
    CkptResponse, CkptState, CrState, FifoOptions, JobOptions, JobState, LocalFinish, LocalUpdate,
    Message, OptionsFrame, OrtedState, ProcessName, StateCode, ToDaemon,
};
use crate::{IoError, MessageBuf};

/// How many ORTED_STATE messages may wait to be polled. One phase queues at
/// most two (a report, then RECOVERED); the rest is slack for an adapter that
/// feeds several inputs before polling.
const MAX_QUEUED_TO_GC: usize = 4;

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

/// A process's result for the phase, until it is handed out as a
/// [`ProcessResult`] (with the slot's timings).
#[derive(Debug, Clone, Copy)]
struct Pending {
    slot: SlotId,
    name: ProcessName,
    pid: u32,
    n: u32,
    outcome: ProcessOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    name: ProcessName,
    pid: u32,
    n: u32,
}

/// One process's place in a [`LocalCoordinator`]'s storage: the process
/// (name, pid, handshake counter), its running handshake and the results not
/// yet handed out.
///
/// The caller owns the storage, one slot per process the coordinator may
/// hold, and chooses its length at run time: a `[ProcessSlot; N]`, a
/// `&mut [ProcessSlot]` into a static or a stack array, a `Vec` or a boxed
/// slice. [`ProcessSlot::SIZE`] bytes each (264 on 64-bit targets, 248 on
/// 32-bit ones), aligned to [`ProcessSlot::ALIGN`]. A slot's content is
/// private; [`LocalCoordinator::new`] empties every slot it is given, so
/// storage may be reused. Storage built from raw bytes (a C caller's
/// buffer) must first have [`ProcessSlot::EMPTY`] written into each element.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSlot {
    proc: Option<Proc>,
    id: SlotId,
    step: Step,
    /// `None` when the step has none.
    deadline: Option<Instant>,
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
    /// A result not yet handed out; its timings are the slot's, which stay
    /// as they are until the next phase starts.
    report: Option<Pending>,
    close: Option<SlotId>,
    emit_signal: bool,
    emit_request: bool,
}

/// What a [`LocalCoordinator`]'s storage can be: anything that lends a
/// slice of [`ProcessSlot`]s (`&mut [ProcessSlot]`, `[ProcessSlot; N]`,
/// `Vec<ProcessSlot>`, `Box<[ProcessSlot]>`).
pub trait ProcessStorage: AsRef<[ProcessSlot]> + AsMut<[ProcessSlot]> {}

impl<T: AsRef<[ProcessSlot]> + AsMut<[ProcessSlot]> + ?Sized> ProcessStorage for T {}

impl Default for ProcessSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl ProcessSlot {
    /// An empty slot.
    pub const EMPTY: Self = Self {
        proc: None,
        id: SlotId {
            index: 0,
            generation: 0,
        },
        step: Step::Idle,
        deadline: None,
        in_phase: false,
        migrating: false,
        final_state: CrState::None,
        hs_n: 0,
        began: Instant::ZERO,
        stage_start: Instant::ZERO,
        timings: Timings::EMPTY,
        report: None,
        close: None,
        emit_signal: false,
        emit_request: false,
    };

    /// The size of one slot in bytes: storage for `n` processes is
    /// `n * ProcessSlot::SIZE` bytes.
    pub const SIZE: usize = core::mem::size_of::<Self>();

    /// The alignment storage must have.
    pub const ALIGN: usize = core::mem::align_of::<Self>();

    /// An empty slot (as [`EMPTY`](Self::EMPTY)).
    pub const fn new() -> Self {
        Self::EMPTY
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
    fn enter(&mut self, step: Step, now: Instant, wait: Duration) {
        // The handshake's trace, step by step (debug level).
        debug!(
            "local: pid {} handshake {}: {} at {} us",
            self.proc.map_or(0, |p| p.pid),
            self.hs_n,
            Self::stage_of(step).name(),
            now.saturating_duration_since(self.began).as_micros()
        );
        self.step = step;
        self.deadline = Some(now + wait);
        self.stage_start = now;
        self.emit_request = true;
    }

    /// The time since the current stage began, and a new stage from now.
    fn lap(&mut self, now: Instant) -> Option<Duration> {
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

/// The local coordinator of one job on one node, for as many local
/// processes as its storage has [`ProcessSlot`]s.
///
/// It follows the crate's contract ([`crate`], "The contract"); what is
/// particular to it:
///
/// **Storage**: `S` is the caller's, any [`ProcessStorage`]: a `&mut
/// [ProcessSlot]` (as smoltcp's socket set), an array, a `Vec`. Its length is the most processes the table
/// holds, chosen at run time. See [`ProcessSlot`] and the crate's front
/// page ("Sizes") for the bytes each size takes. Nothing is allocated.
///
/// **Inputs** (each takes `now`, the adapter's monotonic time):
/// - the process table: [`add_process`](Self::add_process) (returns the
///   slot), [`remove_process`](Self::remove_process),
///   [`update_pid`](Self::update_pid) (a restarted process's new pid:
///   counter back to 0);
/// - [`handle_gc_message`](Self::handle_gc_message): the bytes of a
///   JOB_STATE from the global coordinator;
/// - [`handle_process_message`](Self::handle_process_message): the bytes of
///   a message from a local process (LOCAL_UPDATE updates its pid;
///   LOCAL_FINISH is informational, logged, never required);
/// - per slot, the answers to actions:
///   [`handle_fifos_exist`](Self::handle_fifos_exist),
///   [`handle_opened`](Self::handle_opened),
///   [`handle_written`](Self::handle_written),
///   [`handle_read`](Self::handle_read) (the bytes of the frame asked for,
///   decoded here), [`handle_io_error`](Self::handle_io_error) (EOF or error:
///   the process is gone), [`handle_stopped`](Self::handle_stopped);
/// - [`handle_timeout`](Self::handle_timeout) (a tick) when the instant from
///   [`poll_timeout`](Self::poll_timeout) has come.
///
/// **Outputs**: [`Action`]s from [`poll_action`](Self::poll_action), in the
/// order given (a slot's [`Action::Close`] comes before the next
/// handshake's actions for that slot). Each slot has at most one answered
/// action outstanding (watch, open, write, read or stop wait). An input
/// that does not fit the slot's step, or names an earlier generation of the
/// slot, is refused with an [`InputError`].
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
/// is refused ([`InputError::DoesNotFit`]). Every wait has a deadline
/// ([`LocalDeadlines`]); a missed one fails that process, or ends the whole
/// phase with ERROR, and the machine is ready for the next checkpoint.
///
/// **Counters**: each process's handshake counter `n` starts at 0 and goes
/// up by one when a handshake this machine signalled ends (whatever its
/// end), as the app coordinator's does; [`update_pid`](Self::update_pid)
/// sets it back to 0.
#[derive(Debug)]
pub struct LocalCoordinator<S> {
    config: Config,
    slots: S,
    phase: Phase,
    /// Deadline of the verdict or quiesced wait.
    phase_deadline: Option<Instant>,
    /// What to report once the releases are done.
    release_report: CkptState,
    handle: u32,
    options: JobOptions,
    all_migrating: bool,
    /// Processes of the phase without a result yet.
    pending: usize,
    /// The lowest state of the phase so far.
    lowest: CkptState,
    to_gc: heapless::Deque<OrtedState, MAX_QUEUED_TO_GC>,
    unexpected: u32,
}

impl<S: ProcessStorage> LocalCoordinator<S> {
    /// An idle coordinator with an empty process table in `storage` (every
    /// slot is emptied), for at most `storage`'s length of processes.
    #[must_use]
    pub fn new(config: Config, mut storage: S) -> Self {
        for (i, slot) in storage.as_mut().iter_mut().enumerate() {
            *slot = ProcessSlot::EMPTY;
            slot.id.index = u32::try_from(i).unwrap_or(u32::MAX);
        }
        Self {
            config,
            slots: storage,
            phase: Phase::Idle,
            phase_deadline: None,
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

    /// The storage back (the coordinator's state is dropped with it).
    pub fn into_storage(self) -> S {
        self.slots
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the machine is doing.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Inputs refused because they did not fit.
    pub fn unexpected_inputs(&self) -> u32 {
        self.unexpected
    }

    /// The most processes the table can hold: the storage's length.
    pub fn capacity(&self) -> usize {
        self.slots.as_ref().len()
    }

    /// How many processes the table holds.
    pub fn len(&self) -> usize {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| s.proc.is_some())
            .count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The process named `name`.
    pub fn process(&self, name: ProcessName) -> Option<ProcessInfo> {
        self.slots.as_ref().iter().find_map(|s| {
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
    pub fn add_process(&mut self, name: ProcessName, pid: u32) -> Result<SlotId, InputError> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(InputError::BadPid);
        }
        let taken = self
            .slots
            .as_ref()
            .iter()
            .filter_map(|s| s.proc)
            .any(|p| p.name == name || p.pid == pid);
        if taken {
            return Err(InputError::Duplicate);
        }
        let slot = self
            .slots
            .as_mut()
            .iter_mut()
            .find(|s| s.is_free())
            .ok_or(InputError::Full)?;
        slot.bump_generation();
        slot.proc = Some(Proc { name, pid, n: 0 });
        slot.step = Step::Idle;
        slot.deadline = None;
        slot.in_phase = false;
        debug!(
            "local: process {}.{} pid {} added",
            name.jobid, name.vpid, pid
        );
        Ok(slot.id)
    }

    /// Removes a process. A handshake it is in ends with
    /// [`ProcessFailure::Removed`] (reported, channel closed).
    pub fn remove_process(&mut self, now: Instant, name: ProcessName) -> Result<(), InputError> {
        let i = self.find(name)?;
        self.interrupt(i, now, ProcessFailure::Removed);
        if let Some(slot) = self.slots.as_mut().get_mut(i) {
            slot.proc = None;
        }
        debug!("local: process {}.{} removed", name.jobid, name.vpid);
        self.check_phase_end(now);
        Ok(())
    }

    /// A restarted process has a new pid (LOCAL_UPDATE, or the runtime's own
    /// knowledge): its handshake counter returns to 0. A handshake it is in
    /// ends with [`ProcessFailure::Restarted`].
    pub fn update_pid(
        &mut self,
        now: Instant,
        name: ProcessName,
        pid: u32,
    ) -> Result<SlotId, InputError> {
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(InputError::BadPid);
        }
        let i = self.find(name)?;
        let clash = self
            .slots
            .as_ref()
            .iter()
            .enumerate()
            .any(|(j, s)| j != i && s.proc.is_some_and(|p| p.pid == pid));
        if clash {
            return Err(InputError::Duplicate);
        }
        self.interrupt(i, now, ProcessFailure::Restarted);
        let slot = self
            .slots
            .as_mut()
            .get_mut(i)
            .ok_or(InputError::UnknownProcess)?;
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

    /// The bytes of a message from the local process `pid` (tag SNAPC),
    /// decoded here: LOCAL_UPDATE from a restarted process updates its pid
    /// ([`update_pid`](Self::update_pid)); LOCAL_FINISH is logged only (the
    /// handshake's end is known from the FIFO; this message is never waited
    /// for).
    pub fn handle_process_message(
        &mut self,
        now: Instant,
        pid: u32,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        match ToDaemon::parse(bytes) {
            Ok(ToDaemon::LocalUpdate(update)) => self.local_update(now, &update),
            Ok(ToDaemon::LocalFinish(finish)) => {
                self.local_finish(pid, &finish);
                Ok(())
            }
            Err(e) => {
                warn!("local: undecodable message from pid {}", pid);
                self.unexpected = self.unexpected.saturating_add(1);
                Err(InputError::Decode(e))
            }
        }
    }

    fn local_update(&mut self, now: Instant, update: &LocalUpdate) -> Result<(), InputError> {
        let pid = u32::try_from(update.pid).map_err(|_| InputError::BadPid)?;
        self.update_pid(now, update.name, pid).map(|_| ())
    }

    fn local_finish(&self, pid: u32, finish: &LocalFinish) {
        let known = self
            .slots
            .as_ref()
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

    fn find(&self, name: ProcessName) -> Result<usize, InputError> {
        self.slots
            .as_ref()
            .iter()
            .position(|s| s.proc.is_some_and(|p| p.name == name))
            .ok_or(InputError::UnknownProcess)
    }

    /// Ends whatever slot `i` is doing because the table changed under it.
    fn interrupt(&mut self, i: usize, now: Instant, failure: ProcessFailure) {
        let Some(slot) = self.slots.as_ref().get(i) else {
            return;
        };
        match slot.step {
            Step::Idle => {}
            // The result is already in: only the channel is left.
            Step::Held | Step::WriteRelease => self.close(i),
            _ => self.finish(i, now, ProcessOutcome::Failed(failure), After::Close),
        }
    }

    // ---- the global coordinator ----

    /// The bytes of a message from the global coordinator (JOB_STATE,
    /// either form), decoded here.
    pub fn handle_gc_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), InputError> {
        match JobState::parse(bytes) {
            Ok(job) => self.job_state(now, &job),
            Err(e) => {
                warn!("local: undecodable message from the global coordinator");
                self.unexpected = self.unexpected.saturating_add(1);
                Err(InputError::Decode(e))
            }
        }
    }

    fn job_state(&mut self, now: Instant, job: &JobState<'_>) -> Result<(), InputError> {
        let state = job.state.state;
        let ignored = InputError::DoesNotFit {
            state,
            phase: self.phase,
        };
        let result = match (state, self.phase) {
            (
                CkptState::Running,
                Phase::Idle | Phase::Quiesced | Phase::AwaitVerdict(CkptState::IncPreped),
            ) => match job.detail {
                None => Err(InputError::MissingDetail),
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
                self.phase_deadline = Some(now + self.config.deadlines.quiesced);
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
        self.phase_deadline = None;
        self.handle = detail.handle;
        self.options = detail.options;
        self.all_migrating = detail.migrating.is_some();
        self.pending = 0;
        self.lowest = mode.success();
        let deadlines = self.config.deadlines;
        for i in 0..self.capacity() {
            let Some(slot) = self.slots.as_mut().get_mut(i) else {
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
            if slot.report.is_some() {
                warn!("local: a result not yet polled loses its timings: actions were not polled");
            }
            slot.timings = Timings::EMPTY;
            match (mode, slot.step) {
                (Mode::RecoverOnly, Step::Held) => {
                    slot.enter(Step::ReadFinal, now, deadlines.final_state);
                }
                (Mode::RecoverOnly, _) => {
                    self.finish(
                        i,
                        now,
                        ProcessOutcome::Failed(ProcessFailure::NotQuiesced),
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
                _ => self.finish(
                    i,
                    now,
                    ProcessOutcome::Failed(ProcessFailure::Aborted),
                    After::Close,
                ),
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
        for i in 0..self.capacity() {
            let running =
                self.slots.as_ref().get(i).is_some_and(|s| {
                    !matches!(s.step, Step::Idle | Step::Held | Step::WriteRelease)
                });
            if running {
                self.finish(
                    i,
                    now,
                    ProcessOutcome::Failed(ProcessFailure::Aborted),
                    After::Close,
                );
            }
        }
        self.release(now, CkptState::Recovered);
    }

    /// Releases every open channel; `report` goes to the global coordinator
    /// once all are written and closed.
    fn release(&mut self, now: Instant, report: CkptState) {
        debug!("local: releasing, then reporting {}", report.name());
        self.phase = Phase::Releasing;
        self.phase_deadline = None;
        self.release_report = report;
        self.pending = 0;
        let write = self.config.deadlines.write;
        for slot in self.slots.as_mut().iter_mut() {
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
                self.phase_deadline = Some(now + self.config.deadlines.verdict);
            }
            Phase::Releasing
                if !self
                    .slots
                    .as_ref()
                    .iter()
                    .any(|s| s.step == Step::WriteRelease) =>
            {
                self.send(self.release_report);
                self.phase = Phase::Idle;
                self.phase_deadline = None;
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
    fn finish(&mut self, i: usize, now: Instant, outcome: ProcessOutcome, then: After) {
        let mode = match self.phase {
            Phase::Handshake(mode) => mode,
            _ => Mode::Checkpoint,
        };
        let Some(slot) = self.slots.as_mut().get_mut(i) else {
            return;
        };
        let Some(proc) = slot.proc else {
            return;
        };
        slot.timings.total = now.saturating_duration_since(slot.began);
        let result = Pending {
            slot: slot.id,
            name: proc.name,
            pid: proc.pid,
            n: slot.hs_n,
            outcome,
        };
        if slot.report.replace(result).is_some() {
            warn!("local: a process result was dropped: actions were not polled");
        }
        match outcome {
            ProcessOutcome::State(s) => debug!(
                "local: pid {} handshake {}: ended with {} after {} us",
                proc.pid,
                slot.hs_n,
                s.name(),
                slot.timings.total.as_micros()
            ),
            ProcessOutcome::Failed(_) => warn!(
                "local: pid {} handshake {}: failed at the {} after {} us",
                proc.pid,
                slot.hs_n,
                slot.stage().name(),
                slot.timings.total.as_micros()
            ),
        }
        let counted = core::mem::replace(&mut slot.in_phase, false);
        match then {
            After::Hold => {
                slot.step = Step::Held;
                slot.deadline = None;
                slot.emit_request = false;
            }
            After::Close => self.close(i),
            After::Nothing => {}
        }
        if counted {
            let state = match outcome {
                ProcessOutcome::State(CrState::Continue | CrState::Term)
                    if mode != Mode::PrepareOnly =>
                {
                    CkptState::FinishedLocal
                }
                ProcessOutcome::State(CrState::Running) if mode == Mode::PrepareOnly => {
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
        let Some(slot) = self.slots.as_mut().get_mut(i) else {
            return;
        };
        if slot.step == Step::Idle {
            return;
        }
        slot.close = Some(slot.id);
        slot.step = Step::Idle;
        slot.deadline = None;
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
        let result = match self.slots.as_ref().get(i) {
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
        self.slots.as_ref().get(i).map_or(Step::Idle, |s| s.step)
    }

    /// Both FIFO names of the slot exist.
    pub fn handle_fifos_exist(&mut self, now: Instant, slot: SlotId) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let open = self.config.deadlines.open;
        match self.slots.as_mut().get_mut(i) {
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
        match self.slots.as_mut().get_mut(i) {
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
        let Some(s) = self.slots.as_mut().get_mut(i) else {
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
        let Some(s) = self.slots.as_mut().get_mut(i) else {
            return;
        };
        s.timings.response = s.lap(now);
        match fifo::parse_response(bytes) {
            Ok(CkptResponse::Start) => s.enter(Step::WriteGoAhead, now, write),
            Ok(refused) => self.finish(
                i,
                now,
                ProcessOutcome::Failed(ProcessFailure::Refused(refused)),
                After::Close,
            ),
            Err(e) => {
                let failure = ProcessFailure::Malformed {
                    stage: Stage::Response,
                    kind: e.kind,
                };
                self.finish(i, now, ProcessOutcome::Failed(failure), After::Close);
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
        let Some(s) = self.slots.as_mut().get_mut(i) else {
            return;
        };
        s.timings.final_state = s.lap(now);
        let target = target && s.migrating;
        let state = match fifo::parse_cr_state(bytes) {
            Ok(state) => state,
            Err(e) => {
                let failure = ProcessFailure::Malformed {
                    stage: Stage::FinalState,
                    kind: e.kind,
                };
                return self.finish(i, now, ProcessOutcome::Failed(failure), After::Close);
            }
        };
        // A migration target tears down after its final state without
        // waiting for the release (docs/PROTOCOL.md §4 step 5): close it.
        let then = if target { After::Close } else { After::Hold };
        match (mode, state) {
            (Mode::PrepareOnly, CrState::Running | CrState::Error) => {
                self.finish(i, now, ProcessOutcome::State(state), then)
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
            ) => self.finish(i, now, ProcessOutcome::State(state), then),
            _ => self.finish(
                i,
                now,
                ProcessOutcome::Failed(ProcessFailure::UnexpectedState(state)),
                After::Close,
            ),
        }
    }

    /// The slot's process has stopped (`stop` option).
    pub fn handle_stopped(&mut self, now: Instant, slot: SlotId) -> Result<(), InputError> {
        let i = self.slot_of(slot)?;
        let Some(s) = self.slots.as_mut().get_mut(i) else {
            return self.unexpected();
        };
        if s.step != Step::WaitStopped {
            return self.unexpected();
        }
        s.timings.stop = s.lap(now);
        let state = s.final_state;
        self.finish(i, now, ProcessOutcome::State(state), After::Hold);
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
        let Some(s) = self.slots.as_ref().get(i) else {
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
                let gone = error == IoError::PeerGone;
                debug!("local: slot {} gone (peer gone: {})", i, gone);
                self.finish(
                    i,
                    now,
                    ProcessOutcome::Failed(ProcessFailure::PeerGone(stage)),
                    After::Close,
                );
            }
        }
        self.check_phase_end(now);
        Ok(())
    }

    /// Time has come (see [`poll_timeout`](Self::poll_timeout)).
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.capacity() {
            let Some(s) = self.slots.as_ref().get(i) else {
                continue;
            };
            if s.deadline.is_none_or(|d| d > now) || s.proc.is_none() {
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
                    ProcessOutcome::Failed(ProcessFailure::Timeout(stage)),
                    After::Close,
                ),
            }
        }
        self.check_phase_end(now);
        if self.phase_deadline.is_some_and(|d| d <= now)
            && matches!(self.phase, Phase::AwaitVerdict(_) | Phase::Quiesced)
        {
            warn!("local: no verdict from the global coordinator in time; releasing");
            self.release(now, CkptState::Error);
        }
    }

    // ---- outputs ----

    /// The next action to carry out, `None` when there is nothing to do. A
    /// message to send is encoded into `out` ([`Action::SendToGc`] gives its
    /// length).
    #[must_use = "the actions must be carried out"]
    pub fn poll_action(&mut self, out: &mut MessageBuf) -> Option<Action> {
        let options = self.frame_options();
        let handle = self.handle;
        for s in self.slots.as_mut().iter_mut() {
            if let Some(r) = s.report.take() {
                return Some(Action::Report(ProcessResult {
                    slot: r.slot,
                    name: r.name,
                    pid: r.pid,
                    n: r.n,
                    outcome: r.outcome,
                    timings: s.timings,
                }));
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
                    bytes: FrameBytes::from_slice(&GO_AHEAD).unwrap_or_default(),
                },
                Step::WriteRelease => Action::Write {
                    slot,
                    bytes: FrameBytes::from_slice(&RELEASE).unwrap_or_default(),
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
        while let Some(message) = self.to_gc.pop_front() {
            match message.emit(out) {
                Ok(len) => return Some(Action::SendToGc { len }),
                // MAX_MESSAGE_LEN holds any ORTED_STATE; not reached.
                Err(_) => warn!("local: ORTED_STATE could not be encoded"),
            }
        }
        None
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

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None`
    /// while nothing waits with a deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slots = self
            .slots
            .as_ref()
            .iter()
            .filter(|s| s.proc.is_some() && !matches!(s.step, Step::Idle | Step::Held))
            .filter_map(|s| s.deadline);
        let phase = match self.phase {
            Phase::AwaitVerdict(_) | Phase::Quiesced => self.phase_deadline,
            _ => None,
        };
        slots.chain(phase).min()
    }
}
