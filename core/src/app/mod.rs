//! The app coordinator: the part of the protocol that lives inside every
//! application process (docs/PROTOCOL.md §3, §4, §5).
//!
//! - [`CheckpointFlag`]: the lock-free flag the checkpoint signal's handler sets.
//! - [`AppCoordinator`]: the sans-IO state machine that acts on it at the
//!   application's progress point, runs the FIFO handshake with the local
//!   coordinator, drives the application's hooks and sstore, tears the
//!   channel down, and carries the application's requests to the global
//!   coordinator.
//!
//! Where this machine does better than Open MPI (docs/PROTOCOL.md §7), each with
//! its tests in `app/tests.rs`:
//! - every wait has a deadline: `deadline_at_each_wait`,
//!   `stall_deadline_reports_error`, `early_sync_deadline`,
//!   `fin_ack_deadline_and_malformed_answer`, `leader_checkpoint_deadlines`;
//! - a peer that goes away ends the handshake cleanly:
//!   `peer_vanishing_at_each_step`, `peer_gone_while_quiesced_recovers_the_application`;
//! - a failed read of the options ends the handshake as an error instead of
//!   checkpointing with garbage: `malformed_options_end_the_handshake`;
//! - a response other than START ends the handshake: `null_without_a_checkpointer`,
//!   `in_progress_while_awaiting_termination`;
//! - the teardown is one attempt with a deadline, never a loop:
//!   `deadline_at_each_wait` (its `Teardown` case);
//! - the signal handler's side is lock-free and never logs:
//!   [`CheckpointFlag`], `request_take_finish`, `handler_races_with_take_on_other_threads`;
//! - a missing sequence number or reference is -1 or `"Unknown"`, not a
//!   crash: `leader_checkpoint_missing_seq_and_reference`;
//! - each stage's duration is reported: `checkpoint_and_continue_exact_bytes`.
//!
//! Short reads and writes, EINTR and the FIFOs' checks (the rest of §7) are
//! the adapter's: it reports a whole frame, [`IoError::PeerGone`] or
//! [`IoError::Failed`]. [`blocking`] is such an adapter for any
//! `embedded-io` byte stream.

pub mod blocking;
mod flag;
mod types;

#[cfg(test)]
mod tests;

pub use flag::{CheckpointFlag, FlagRequest};
pub use types::{
    Action, AppDeadlines, AppError, CheckpointResult, Config, CrsName, FrameKind, HandshakeReport,
    HostError, InputError, Outcome, PrepareResult, RequestReport, SstoreOp, Stages,
    UNKNOWN_REFERENCE, UNKNOWN_SEQ, Wait, WaitFailure,
};

use crate::time::{Duration, Instant};
use crate::wire::dss::{Encoder, Sink};
use crate::wire::fifo::{self, INT_FRAME_LEN};
use crate::wire::{
    ChannelNames, CkptResponse, CrState, EmitError, FifoOptions, FromGc, LocalFinish, LocalUpdate,
    Message, OpEvent, OpResponse, OptionsFrame, Request, RequestOp, ToDaemon,
};
use crate::{IoError, MAX_REFERENCE_LEN, MessageBuf, Reference};
use heapless::Deque;

/// How many actions the machine queues. No input queues more than four;
/// the adapter drains the queue after each input.
const MAX_QUEUED_ACTIONS: usize = 8;

/// A queued output: an action as it is handed out, or a message still to
/// encode into the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Queued {
    Action(Action),
    ToDaemon(ToDaemon),
}

/// Where the handshake side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Opening,
    ReadOptions,
    WriteResponse,
    ReadGoAhead,
    Locating,
    Preparing,
    Stalled,
    WriteRunning,
    Quiesced,
    EarlySync,
    Checkpointing,
    Syncing,
    WriteFinal,
    AwaitRelease,
    Recovering,
    TearingDown,
    AwaitTermination,
}

/// The current handshake's facts.
#[derive(Debug, Clone, Copy)]
struct Handshake {
    response: CkptResponse,
    options: Option<FifoOptions>,
    handle: u32,
    /// The state to report and send (CONTINUE, TERM, RESTART, ERROR).
    state: CrState,
    /// What the checkpointer returned (CONTINUE until it runs).
    ckpt_state: CrState,
    /// START was written: the local coordinator counts this process in.
    started: bool,
    /// The prepare succeeded: the application must be recovered.
    prepared: bool,
    /// The checkpoint in progress is a QUIESCE_CHECKPOINT.
    quiesce_ckpt: bool,
    restart_pid: Option<u32>,
    stall_deadline: Option<Instant>,
    error: Option<AppError>,
    stages: Stages,
    began: Instant,
    stage_start: Instant,
    /// The process is to be terminated after this teardown.
    terminate_after: bool,
}

impl Handshake {
    fn new(response: CkptResponse, now: Instant, signal: Option<Duration>) -> Self {
        Self {
            response,
            options: None,
            handle: 0,
            state: CrState::None,
            ckpt_state: CrState::Continue,
            started: false,
            prepared: false,
            quiesce_ckpt: false,
            restart_pid: None,
            stall_deadline: None,
            error: None,
            stages: Stages {
                signal,
                ..Stages::default()
            },
            began: now,
            stage_start: now,
            terminate_after: false,
        }
    }

    fn opts(&self) -> FifoOptions {
        self.options.unwrap_or_default()
    }

    /// All of the job migrates, but not this process.
    fn skip(&self) -> bool {
        let o = self.opts();
        o.all_migrating && !o.migrating
    }

    /// This process moves in a migration of the job.
    fn migration_target(&self) -> bool {
        let o = self.opts();
        o.all_migrating && o.migrating
    }

    fn fail(&mut self, wait: Wait, failure: WaitFailure) {
        if self.error.is_none() {
            self.error = Some(AppError { wait, failure });
        }
        self.state = CrState::Error;
    }

    /// The state the application recovers with: processes that stay put
    /// during a migration recover as if restarting.
    fn recover_state(&self) -> CrState {
        if self.skip() {
            CrState::Restart
        } else {
            self.ckpt_state
        }
    }
}

/// Where the request side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqPhase {
    None,
    FinAck,
    /// A leader waits for its own handshake (CHECKPOINT, MIGRATE).
    OwnHandshake,
    /// Every rank waits to be quiesced (QUIESCE_START).
    Quiesce,
    /// The handshake side runs the quiesce checkpoint or the quiesce end.
    Local,
    OpResponse,
    Global,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    phase: ReqPhase,
    op: OpEvent,
    start: Instant,
    deadline: Option<Instant>,
    /// An error carried to the end (the leader's own handshake failed).
    error: Option<AppError>,
    /// The OP response, when it came while the leader still waited for its
    /// own handshake: the global coordinator ends the operation (and
    /// answers) as soon as every local coordinator recovered, which can be
    /// before this process's recover hook and teardown are done.
    answer: Option<OpResponse>,
}

impl Req {
    const NONE: Self = Self {
        phase: ReqPhase::None,
        op: OpEvent::None,
        start: Instant::ZERO,
        deadline: None,
        error: None,
        answer: None,
    };
}

/// The app coordinator: one per application process.
///
/// It follows the crate's contract ([`crate`], "The contract"); what is
/// particular to it:
///
/// **Inputs** (each takes `now`):
/// - [`handle_progress`](Self::handle_progress) (a tick, no result): the
///   application's progress point. Takes a request from the
///   [`CheckpointFlag`] and starts a handshake, or resumes a stalled prepare.
/// - FIFO results: [`handle_opened`](Self::handle_opened),
///   [`handle_read`](Self::handle_read) (the exact bytes of the frame asked
///   for, decoded here), [`handle_write_done`](Self::handle_write_done),
///   [`handle_io_error`](Self::handle_io_error) (peer gone or other error).
/// - Hook results: [`handle_prepare`](Self::handle_prepare),
///   [`handle_checkpoint`](Self::handle_checkpoint),
///   [`handle_recovered`](Self::handle_recovered).
/// - sstore answers: [`handle_sstore`](Self::handle_sstore),
///   [`handle_sstore_global`](Self::handle_sstore_global).
/// - [`handle_teardown_done`](Self::handle_teardown_done) once the teardown's
///   actions (finish message, close, unlink) are carried out.
/// - [`handle_gc_message`](Self::handle_gc_message): the bytes of a message
///   from the global coordinator (OP response, FIN_ACK). An OP response that
///   comes while a leader still waits for its own handshake is kept until
///   that handshake ends (the global coordinator may finish first); one that
///   comes before the handshake started ends the request at once (a
///   refusal). [`handle_gc_gone`](Self::handle_gc_gone) when that link is
///   lost.
/// - [`request`](Self::request): an application request (INIT, FIN,
///   CHECKPOINT, RESTART, MIGRATE, QUIESCE_*). It writes the REQUEST_OP to
///   send to the global coordinator, if this rank sends one, into the
///   caller's buffer and returns its length ([`request_into`](Self::request_into)
///   writes it into any [`Sink`], such as a writer through
///   [`wire::io`](crate::wire::io)).
/// - [`handle_timeout`](Self::handle_timeout) (a tick) when the instant from
///   [`poll_timeout`](Self::poll_timeout) has come.
///
/// **Outputs**: [`Action`]s from [`poll_action`](Self::poll_action). Each
/// names the input that answers it; the handshake side has at most one
/// answered action outstanding, the request side at most one more (an
/// sstore read of the global sequence number), and they are answered by
/// different inputs. An adapter may answer an action (call a hook, say)
/// from inside its draining loop: the answer's actions join the queue.
///
/// **Errors**: every wait has a deadline ([`AppDeadlines`]). When it passes,
/// or the local coordinator sends a malformed frame, or goes away, the
/// handshake ends with an error in its [`HandshakeReport`]: a prepared
/// application is still recovered, the FIFOs are still closed and
/// unlinked, the next names are defined and the machine is idle again. The
/// only unbounded states are idle, quiesced (the application decides when
/// the quiesce ends) and awaiting termination.
///
/// **Storage**: none but itself: `size_of::<AppCoordinator>()` is 2,232
/// bytes on 64-bit targets (checked by a test), 1,912 on 32-bit ones;
/// nothing is allocated.
#[derive(Debug)]
pub struct AppCoordinator<'f> {
    flag: &'f CheckpointFlag,
    config: Config,
    /// The handshake number the next definition of names uses.
    counter: u32,
    names: ChannelNames,
    phase: Phase,
    deadline: Option<Instant>,
    hs: Handshake,
    /// The process waits to be terminated (after the current handshake).
    terminating: bool,
    req: Req,
    /// The last snapshot handle seen, for the global sequence number.
    last_handle: u32,
    actions: Deque<Queued, MAX_QUEUED_ACTIONS>,
    unexpected: u32,
}

impl<'f> AppCoordinator<'f> {
    /// A coordinator for the process `config` describes, taking requests
    /// from `flag`. Defines the first names (handshake 0).
    #[must_use]
    pub fn new(config: Config, flag: &'f CheckpointFlag) -> Self {
        let mut s = Self {
            flag,
            config,
            counter: 0,
            names: ChannelNames {
                pid: config.pid,
                n: 0,
            },
            phase: Phase::Idle,
            deadline: None,
            hs: Handshake::new(CkptResponse::Start, Instant::ZERO, None),
            terminating: false,
            req: Req::NONE,
            last_handle: 0,
            actions: Deque::new(),
            unexpected: 0,
        };
        s.define_names();
        s
    }

    /// The configuration (its pid changes after a restart).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The names of the current (or next) handshake.
    pub fn names(&self) -> ChannelNames {
        self.names
    }

    /// Whether nothing runs: no handshake, no request.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Idle && self.req.phase == ReqPhase::None
    }

    /// Whether a handshake runs (quiesced included).
    pub fn is_checkpointing(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::AwaitTermination)
    }

    /// Whether a prepare-only handshake holds the process quiesced.
    pub fn is_quiesced(&self) -> bool {
        self.phase == Phase::Quiesced
    }

    /// Whether the process waits to be terminated.
    pub fn is_terminating(&self) -> bool {
        self.terminating
    }

    /// Inputs ignored because the machine did not wait for them.
    pub fn unexpected_inputs(&self) -> u32 {
        self.unexpected
    }

    /// The next action to carry out, `None` when there is nothing to do.
    /// A message to send is encoded into `out`
    /// ([`Action::SendToDaemon`] gives its length).
    #[must_use = "the actions must be carried out"]
    pub fn poll_action(&mut self, out: &mut MessageBuf) -> Option<Action> {
        loop {
            match self.actions.pop_front()? {
                Queued::Action(a) => return Some(a),
                Queued::ToDaemon(m) => match m.emit(out) {
                    Ok(len) => return Some(Action::SendToDaemon { len }),
                    // MAX_MESSAGE_LEN holds every ToDaemon message; not reached.
                    Err(_) => {
                        self.unexpected_input();
                    }
                },
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due; `None`
    /// while nothing waits with a deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deadline, self.req_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- inputs: progress, FIFO ----

    /// The application's progress point: acts on a pending checkpoint
    /// request, or resumes a stalled prepare.
    pub fn handle_progress(&mut self, now: Instant) {
        if self.phase == Phase::Stalled {
            debug!("app: resuming the stalled prepare");
            self.push(Action::Prepare);
            self.enter(Phase::Preparing, now, self.config.deadlines.host);
            return;
        }
        let Some(at) = self.flag.take() else {
            return;
        };
        let response = match self.phase {
            Phase::Idle if self.config.checkpointer => CkptResponse::Start,
            Phase::Idle => CkptResponse::Null,
            // The previous checkpoint ended with this process to be
            // terminated: the checkpoint is still this process's business.
            Phase::AwaitTermination => CkptResponse::InProgress,
            _ => {
                // The flag is only taken while idle; a running handshake
                // keeps it, so this is an adapter sharing one flag twice.
                warn!("app: checkpoint request taken during a handshake; ignored");
                self.unexpected = self.unexpected.saturating_add(1);
                return;
            }
        };
        debug!("app: checkpoint request, answering {}", response.name());
        let signal = at.map(|t| now.saturating_duration_since(t));
        self.hs = Handshake::new(response, now, signal);
        self.push(Action::OpenChannel { names: self.names });
        self.enter(Phase::Opening, now, self.config.deadlines.open);
    }

    /// Both FIFOs are open.
    pub fn handle_opened(&mut self, now: Instant) -> Result<(), InputError> {
        self.expect(Phase::Opening)?;
        let len = OptionsFrame::frame_len(self.config.debug);
        self.push(Action::Read {
            frame: FrameKind::Options,
            len,
        });
        self.enter(Phase::ReadOptions, now, self.config.deadlines.read);
        Ok(())
    }

    /// The bytes of the frame the last [`Action::Read`] asked for. A
    /// malformed frame is taken: it ends the handshake with
    /// [`WaitFailure::Malformed`].
    pub fn handle_read(&mut self, now: Instant, bytes: &[u8]) -> Result<(), InputError> {
        match self.phase {
            Phase::ReadOptions => match OptionsFrame::parse(bytes, self.config.debug) {
                Ok(frame) => {
                    self.hs.options = Some(frame.options);
                    self.hs.handle = frame.handle;
                    let bytes = fifo::response_frame(self.hs.response);
                    self.push(Action::Write {
                        frame: FrameKind::Response,
                        bytes,
                    });
                    self.enter(Phase::WriteResponse, now, self.config.deadlines.write);
                }
                Err(e) => self.abort(now, Wait::Options, WaitFailure::Malformed(e)),
            },
            Phase::ReadGoAhead => match fifo::parse_go_ahead(bytes) {
                Ok(()) => self.go_ahead(now),
                Err(e) => self.abort(now, Wait::GoAhead, WaitFailure::Malformed(e)),
            },
            Phase::AwaitRelease => match fifo::parse_release(bytes) {
                Ok(_) => {
                    self.hs.stages.release_wait = Some(now - self.hs.stage_start);
                    self.recover_or_teardown(now);
                }
                Err(e) => self.abort(now, Wait::Release, WaitFailure::Malformed(e)),
            },
            _ => return Err(self.unexpected_input()),
        }
        Ok(())
    }

    /// The last [`Action::Write`] is written, whole.
    pub fn handle_write_done(&mut self, now: Instant) -> Result<(), InputError> {
        match self.phase {
            Phase::WriteResponse => {
                if self.hs.response != CkptResponse::Start {
                    self.hs.stages.handshake = Some(now - self.hs.began);
                    self.teardown(now);
                    return Ok(());
                }
                self.hs.started = true;
                self.push(Action::Read {
                    frame: FrameKind::GoAhead,
                    len: INT_FRAME_LEN,
                });
                self.enter(Phase::ReadGoAhead, now, self.config.deadlines.read);
            }
            Phase::WriteRunning => {
                debug!("app: prepared only; quiesced, channel kept");
                self.phase = Phase::Quiesced;
                self.deadline = None;
                self.push(Action::Outcome(Outcome::Quiesced {
                    names: self.names,
                    handle: self.hs.handle,
                    stages: self.hs.stages,
                }));
                if self.req.phase == ReqPhase::Quiesce {
                    self.finish_request(now, None, false, false, UNKNOWN_SEQ, "");
                }
            }
            Phase::WriteFinal => {
                if self.hs.migration_target() && self.hs.error.is_none() {
                    // The runtime terminates this process; the local
                    // coordinator learns its end from the migration.
                    self.hs.terminate_after = true;
                    self.teardown(now);
                    return Ok(());
                }
                self.push(Action::Read {
                    frame: FrameKind::Release,
                    len: INT_FRAME_LEN,
                });
                self.hs.stage_start = now;
                self.enter(Phase::AwaitRelease, now, self.config.deadlines.release);
            }
            _ => return Err(self.unexpected_input()),
        }
        Ok(())
    }

    /// A FIFO operation failed, or the local coordinator went away.
    pub fn handle_io_error(&mut self, now: Instant, error: IoError) -> Result<(), InputError> {
        let wait = match self.phase {
            Phase::Opening => Wait::Open,
            Phase::ReadOptions => Wait::Options,
            Phase::WriteResponse => Wait::Response,
            Phase::ReadGoAhead => Wait::GoAhead,
            Phase::Stalled => Wait::Stall,
            Phase::WriteRunning => Wait::Running,
            Phase::Quiesced => Wait::Quiesced,
            Phase::WriteFinal => Wait::FinalState,
            Phase::AwaitRelease => Wait::Release,
            _ => return Err(self.unexpected_input()),
        };
        let failure = match error {
            IoError::PeerGone => WaitFailure::PeerGone,
            IoError::Failed => WaitFailure::Io,
        };
        self.abort(now, wait, failure);
        Ok(())
    }

    // ---- inputs: hooks and sstore ----

    /// The prepare hook's result.
    pub fn handle_prepare(
        &mut self,
        now: Instant,
        result: PrepareResult,
    ) -> Result<(), InputError> {
        self.expect(Phase::Preparing)?;
        match result {
            PrepareResult::Ready => {
                self.hs.stages.prepare = Some(now - self.hs.stage_start);
                self.hs.prepared = true;
                if self.hs.opts().inc_prep_only {
                    self.hs.state = CrState::Running;
                    self.push(Action::Write {
                        frame: FrameKind::Running,
                        bytes: fifo::cr_state_frame(CrState::Running),
                    });
                    self.enter(Phase::WriteRunning, now, self.config.deadlines.write);
                } else {
                    self.begin_checkpoint(now);
                }
            }
            PrepareResult::NotNow => {
                debug!("app: prepare said not now; stalled until a later progress point");
                let limit = *self
                    .hs
                    .stall_deadline
                    .get_or_insert(now + self.config.deadlines.stall);
                self.phase = Phase::Stalled;
                self.deadline = Some(limit);
            }
            PrepareResult::Failed => {
                self.hs.stages.prepare = Some(now - self.hs.stage_start);
                self.local_failure(now, Wait::Prepare, WaitFailure::Failed);
            }
        }
        Ok(())
    }

    /// The checkpointer's result.
    pub fn handle_checkpoint(
        &mut self,
        now: Instant,
        result: CheckpointResult,
    ) -> Result<(), InputError> {
        self.expect(Phase::Checkpointing)?;
        self.hs.stages.checkpoint = Some(now - self.hs.stage_start);
        match result {
            CheckpointResult::Continue | CheckpointResult::Term => {
                let state = if result == CheckpointResult::Term {
                    CrState::Term
                } else {
                    CrState::Continue
                };
                self.hs.state = state;
                self.hs.ckpt_state = state;
                self.after_checkpoint(now, true);
            }
            CheckpointResult::Restart { pid } => {
                debug!("app: restarted as pid {}", pid);
                self.hs.state = CrState::Restart;
                self.hs.ckpt_state = CrState::Restart;
                self.hs.restart_pid = Some(pid);
                self.hs.quiesce_ckpt = false;
                self.push(Action::Recover {
                    state: CrState::Restart,
                });
                self.hs.stage_start = now;
                self.enter(Phase::Recovering, now, self.config.deadlines.host);
            }
            CheckpointResult::Error => {
                self.hs.ckpt_state = CrState::Error;
                self.local_failure(now, Wait::Checkpoint, WaitFailure::Failed);
            }
        }
        Ok(())
    }

    /// The recover hook returned.
    pub fn handle_recovered(
        &mut self,
        now: Instant,
        result: Result<(), HostError>,
    ) -> Result<(), InputError> {
        self.expect(Phase::Recovering)?;
        self.hs.stages.recover = Some(now - self.hs.stage_start);
        if result.is_err() {
            self.hs.fail(Wait::Recover, WaitFailure::Failed);
        }
        self.teardown(now);
        Ok(())
    }

    /// The answer to [`SstoreOp::ReadLocation`] (`Err` also for a missing
    /// location) or [`SstoreOp::Sync`].
    pub fn handle_sstore(
        &mut self,
        now: Instant,
        result: Result<(), HostError>,
    ) -> Result<(), InputError> {
        let wait = match self.phase {
            Phase::Locating => Wait::Location,
            Phase::EarlySync => Wait::EarlySync,
            Phase::Syncing => Wait::Sync,
            _ => return Err(self.unexpected_input()),
        };
        if wait != Wait::Location {
            self.hs.stages.sync = Some(now - self.hs.stage_start);
        }
        if result.is_err() {
            self.local_failure(now, wait, WaitFailure::Failed);
            return Ok(());
        }
        match wait {
            Wait::Location => {
                self.push(Action::Prepare);
                self.hs.stage_start = now;
                self.enter(Phase::Preparing, now, self.config.deadlines.host);
            }
            Wait::EarlySync => {
                self.push(Action::Checkpoint {
                    handle: self.hs.handle,
                    options: self.hs.opts(),
                });
                self.hs.stage_start = now;
                self.enter(Phase::Checkpointing, now, self.config.deadlines.host);
            }
            _ => self.checkpoint_done(now),
        }
        Ok(())
    }

    /// The answer to [`SstoreOp::ReadGlobal`]: the global sequence number
    /// and snapshot reference, each possibly missing (reported as -1 and
    /// `"Unknown"`).
    pub fn handle_sstore_global(
        &mut self,
        now: Instant,
        seq: Option<i32>,
        reference: Option<&str>,
    ) -> Result<(), InputError> {
        if self.req.phase != ReqPhase::Global {
            return Err(self.unexpected_input());
        }
        let reference = match reference {
            Some(r) if r.len() <= MAX_REFERENCE_LEN => r,
            Some(_) => {
                warn!("app: global snapshot reference too long; reported as Unknown");
                UNKNOWN_REFERENCE
            }
            None => UNKNOWN_REFERENCE,
        };
        let error = self.req.error;
        self.finish_request(
            now,
            error,
            false,
            false,
            seq.unwrap_or(UNKNOWN_SEQ),
            reference,
        );
        Ok(())
    }

    /// The teardown's actions (finish message, close, unlink) are done.
    pub fn handle_teardown_done(&mut self, now: Instant) -> Result<(), InputError> {
        self.expect(Phase::TearingDown)?;
        self.end_handshake(now);
        Ok(())
    }

    /// The connection to the global coordinator (through the node daemon)
    /// is gone: a request waiting for its answer ends now with
    /// [`WaitFailure::PeerGone`] instead of at its deadline. A running
    /// handshake is the local coordinator's business and goes on.
    pub fn handle_gc_gone(&mut self, now: Instant) -> Result<(), InputError> {
        match self.req.phase {
            ReqPhase::FinAck
            | ReqPhase::OpResponse
            | ReqPhase::OwnHandshake
            | ReqPhase::Quiesce => {
                let error = Some(AppError {
                    wait: self.req_wait(),
                    failure: WaitFailure::PeerGone,
                });
                self.finish_request(now, error, false, false, UNKNOWN_SEQ, "");
                Ok(())
            }
            _ => Err(self.unexpected_input()),
        }
    }

    /// The bytes of a message from the global coordinator (tag SNAPC_FULL),
    /// decoded here. Malformed bytes a request waits for end it with
    /// [`WaitFailure::Malformed`]; otherwise they are refused with
    /// [`InputError::Decode`].
    pub fn handle_gc_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), InputError> {
        let waiting = matches!(self.req.phase, ReqPhase::FinAck | ReqPhase::OpResponse);
        match FromGc::parse(bytes) {
            Err(e) if waiting => {
                let wait = self.req_wait();
                let error = Some(AppError {
                    wait,
                    failure: WaitFailure::Malformed(e),
                });
                self.finish_request(now, error, false, false, UNKNOWN_SEQ, "");
            }
            Err(e) => {
                self.unexpected_input();
                return Err(InputError::Decode(e));
            }
            Ok(FromGc::FinAck) if self.req.phase == ReqPhase::FinAck => {
                self.finish_request(now, None, false, false, UNKNOWN_SEQ, "");
            }
            Ok(FromGc::OpResponse(r))
                if self.req.phase == ReqPhase::OpResponse && r.op_event == self.req.op =>
            {
                self.op_response(now, r);
            }
            Ok(FromGc::OpResponse(r))
                if self.req.phase == ReqPhase::OwnHandshake && r.op_event == self.req.op =>
            {
                if self.is_checkpointing() {
                    // The operation ended at the global coordinator while
                    // this handshake still recovers or tears down: keep the
                    // answer for the handshake's end.
                    self.req.answer = Some(r);
                } else {
                    // Answered before this process's handshake started: the
                    // request was refused (or the operation failed without
                    // it); no handshake follows.
                    self.op_response(now, r);
                }
            }
            _ => return Err(self.unexpected_input()),
        }
        Ok(())
    }

    /// Deadlines: call when [`poll_timeout`](Self::poll_timeout)'s instant has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline = None;
            self.handshake_timeout(now);
        }
        if self.req_deadline().is_some_and(|d| now >= d) {
            let wait = self.req_wait();
            let error = Some(self.req.error.unwrap_or(AppError {
                wait,
                failure: WaitFailure::Deadline,
            }));
            self.finish_request(now, error, false, false, UNKNOWN_SEQ, "");
        }
    }

    // ---- input: application requests ----

    /// An application request. Writes the REQUEST_OP this rank sends to the
    /// global coordinator into `out` and returns its length (0: this rank
    /// sends nothing). The request ends with an [`Outcome::Request`]: at
    /// once for INIT, for a non-leader's FIN, CHECKPOINT, MIGRATE and
    /// RESTART; after FIN_ACK for the leader's FIN; after the leader's own
    /// handshake and the OP response (and sstore's sequence number for a
    /// checkpoint) for CHECKPOINT and MIGRATE; once quiesced for
    /// QUIESCE_START; after the local checkpoint for QUIESCE_CHECKPOINT;
    /// after the teardown for QUIESCE_END. A leader's RESTART awaits
    /// termination.
    pub fn request(
        &mut self,
        now: Instant,
        request: Request<'_>,
        out: &mut [u8],
    ) -> Result<usize, InputError> {
        self.request_with(now, request, |m| m.emit(out))
    }

    /// [`request`](Self::request), writing the REQUEST_OP into `sink`
    /// instead of a slice: a writer through [`wire::io::WriteSink`](crate::wire::io::WriteSink)
    /// sends a MIGRATE table or a long RESTART handle without a buffer of
    /// its size. Returns the length written (0: this rank sends nothing).
    /// On a sink error the request is refused, but bytes may have been
    /// written.
    pub fn request_into<S: Sink>(
        &mut self,
        now: Instant,
        request: Request<'_>,
        sink: &mut S,
    ) -> Result<usize, InputError> {
        self.request_with(now, request, |m| {
            let mut counted = Encoder::new(Counted {
                inner: &mut *sink,
                len: 0,
            });
            m.encode(&mut counted)?;
            Ok(counted.into_inner().len)
        })
    }

    fn request_with(
        &mut self,
        now: Instant,
        request: Request<'_>,
        emit: impl FnOnce(&RequestOp<'_>) -> Result<usize, EmitError>,
    ) -> Result<usize, InputError> {
        let op = request.op_event();
        let refused = match op {
            OpEvent::None | OpEvent::FinAck => Some(InputError::Unsupported(op)),
            _ if self.req.phase != ReqPhase::None => Some(InputError::Busy(self.req.op)),
            _ if self.terminating => Some(InputError::Terminating),
            OpEvent::QuiesceCheckpoint | OpEvent::QuiesceEnd if self.phase != Phase::Quiesced => {
                Some(InputError::NotQuiesced)
            }
            OpEvent::QuiesceStart if self.phase == Phase::Quiesced => {
                Some(InputError::AlreadyQuiesced)
            }
            _ => None,
        };
        if let Some(e) = refused {
            return Err(e);
        }
        let sent = if self.config.leader {
            let message = RequestOp {
                jobid: self.config.name.jobid,
                request,
            };
            emit(&message).map_err(InputError::Encode)?
        } else {
            0
        };
        debug!("app: request {} ({} bytes to send)", op.name(), sent);
        self.req = Req {
            phase: ReqPhase::None,
            op,
            start: now,
            deadline: None,
            error: None,
            answer: None,
        };
        let d = self.config.deadlines;
        let leader = self.config.leader;
        match op {
            OpEvent::Fin if leader => self.wait_request(ReqPhase::FinAck, now + d.fin_ack),
            OpEvent::Checkpoint | OpEvent::Migrate if leader => {
                self.wait_request(ReqPhase::OwnHandshake, now + d.own_handshake);
            }
            OpEvent::Restart if leader => {
                self.finish_request(now, None, false, true, UNKNOWN_SEQ, "");
                self.await_termination();
            }
            OpEvent::QuiesceStart => self.wait_request(ReqPhase::Quiesce, now + d.own_handshake),
            OpEvent::QuiesceCheckpoint => {
                self.req.phase = ReqPhase::Local;
                self.hs.quiesce_ckpt = true;
                self.begin_checkpoint(now);
            }
            OpEvent::QuiesceEnd => {
                self.req.phase = ReqPhase::Local;
                self.push(Action::Sstore(SstoreOp::SetCrsName {
                    handle: self.hs.handle,
                    name: CrsName::EmptyIfNone,
                }));
                self.hs.state = CrState::Continue;
                self.hs.ckpt_state = CrState::Continue;
                self.write_final(now);
            }
            _ => self.finish_request(now, None, false, false, UNKNOWN_SEQ, ""),
        }
        Ok(sent)
    }

    // ---- the handshake's steps ----

    fn go_ahead(&mut self, now: Instant) {
        self.hs.stages.handshake = Some(now - self.hs.began);
        let handle = self.hs.handle;
        self.last_handle = handle;
        self.push(Action::Sstore(SstoreOp::Register { handle }));
        if self.hs.skip() {
            self.push(Action::Sstore(SstoreOp::SetSkip { handle }));
        }
        self.push(Action::Sstore(SstoreOp::ReadLocation { handle }));
        self.enter(Phase::Locating, now, self.config.deadlines.host);
    }

    fn begin_checkpoint(&mut self, now: Instant) {
        let handle = self.hs.handle;
        if self.hs.skip() && !self.hs.quiesce_ckpt {
            debug!("app: the job migrates but this process stays: no checkpoint");
            self.hs.state = CrState::Continue;
            self.hs.ckpt_state = CrState::Continue;
            return self.after_checkpoint(now, false);
        }
        self.push(Action::Sstore(SstoreOp::SetSessionDir { handle }));
        self.hs.stage_start = now;
        if self.hs.opts().stop {
            // The checkpointer stops the process: sync before it does.
            self.push(Action::Sstore(SstoreOp::SetCrsName {
                handle,
                name: CrsName::Component,
            }));
            self.push(Action::Sstore(SstoreOp::Sync { handle }));
            self.enter(Phase::EarlySync, now, self.config.deadlines.host);
        } else {
            self.push(Action::Checkpoint {
                handle,
                options: self.hs.opts(),
            });
            self.enter(Phase::Checkpointing, now, self.config.deadlines.host);
        }
    }

    fn after_checkpoint(&mut self, now: Instant, checkpointed: bool) {
        if checkpointed && self.hs.opts().stop {
            return self.checkpoint_done(now);
        }
        let handle = self.hs.handle;
        if checkpointed {
            self.push(Action::Sstore(SstoreOp::SetCrsName {
                handle,
                name: CrsName::Component,
            }));
        }
        self.push(Action::Sstore(SstoreOp::Sync { handle }));
        self.hs.stage_start = now;
        self.enter(Phase::Syncing, now, self.config.deadlines.host);
    }

    fn checkpoint_done(&mut self, now: Instant) {
        if self.hs.quiesce_ckpt {
            self.quiesce_checkpoint_done(now);
        } else {
            self.write_final(now);
        }
    }

    fn quiesce_checkpoint_done(&mut self, now: Instant) {
        self.hs.quiesce_ckpt = false;
        self.phase = Phase::Quiesced;
        self.deadline = None;
        let error = self.hs.error.take();
        // The quiesced channel goes on; its final state is set at quiesce end.
        self.hs.state = CrState::Running;
        if self.req.phase != ReqPhase::Local {
            return;
        }
        if error.is_some() {
            return self.finish_request(now, error, false, false, UNKNOWN_SEQ, "");
        }
        self.push(Action::Sstore(SstoreOp::ReadGlobal {
            handle: self.hs.handle,
        }));
        self.wait_request(ReqPhase::Global, now + self.config.deadlines.host);
    }

    fn write_final(&mut self, now: Instant) {
        self.push(Action::Write {
            frame: FrameKind::FinalState,
            bytes: fifo::cr_state_frame(self.hs.state),
        });
        self.enter(Phase::WriteFinal, now, self.config.deadlines.write);
    }

    fn recover_or_teardown(&mut self, now: Instant) {
        if self.hs.prepared {
            self.push(Action::Recover {
                state: self.hs.recover_state(),
            });
            self.hs.stage_start = now;
            self.enter(Phase::Recovering, now, self.config.deadlines.host);
        } else {
            self.teardown(now);
        }
    }

    /// A failure on the channel: nothing more can be said on it.
    fn abort(&mut self, now: Instant, wait: Wait, failure: WaitFailure) {
        warn!("app: handshake aborted");
        self.hs.fail(wait, failure);
        self.hs.quiesce_ckpt = false;
        self.recover_or_teardown(now);
    }

    /// A failure in this process: the channel still works, so the local
    /// coordinator is told ERROR as the final state.
    fn local_failure(&mut self, now: Instant, wait: Wait, failure: WaitFailure) {
        warn!("app: checkpoint failed in this process");
        self.hs.fail(wait, failure);
        if self.hs.quiesce_ckpt {
            return self.quiesce_checkpoint_done(now);
        }
        self.write_final(now);
    }

    fn handshake_timeout(&mut self, now: Instant) {
        let d = WaitFailure::Deadline;
        match self.phase {
            Phase::Opening => self.abort(now, Wait::Open, d),
            Phase::ReadOptions => self.abort(now, Wait::Options, d),
            Phase::WriteResponse => self.abort(now, Wait::Response, d),
            Phase::ReadGoAhead => self.abort(now, Wait::GoAhead, d),
            Phase::WriteRunning => self.abort(now, Wait::Running, d),
            Phase::WriteFinal => self.abort(now, Wait::FinalState, d),
            Phase::AwaitRelease => self.abort(now, Wait::Release, d),
            Phase::Locating => self.local_failure(now, Wait::Location, d),
            Phase::Preparing => self.local_failure(now, Wait::Prepare, d),
            Phase::Stalled => self.local_failure(now, Wait::Stall, d),
            Phase::EarlySync => self.local_failure(now, Wait::EarlySync, d),
            Phase::Checkpointing => self.local_failure(now, Wait::Checkpoint, d),
            Phase::Syncing => self.local_failure(now, Wait::Sync, d),
            Phase::Recovering => {
                self.hs.fail(Wait::Recover, d);
                self.teardown(now);
            }
            Phase::TearingDown => {
                self.hs.fail(Wait::Teardown, d);
                self.end_handshake(now);
            }
            Phase::Idle | Phase::Quiesced | Phase::AwaitTermination => {}
        }
    }

    /// Step 7: the finish message, close, unlink.
    fn teardown(&mut self, now: Instant) {
        let hs = &mut self.hs;
        let ok = hs.error.is_none();
        if ok && (hs.opts().term || hs.state == CrState::Term) {
            hs.terminate_after = true;
        }
        if !ok {
            hs.terminate_after = false;
        }
        let message = if let Some(pid) = hs.restart_pid {
            Some(ToDaemon::LocalUpdate(LocalUpdate {
                name: self.config.name,
                pid: i32::try_from(pid).unwrap_or(i32::MAX),
                debug: self
                    .config
                    .debug
                    .then_some(hs.opts().debugger.is_some_and(|d| d.attach)),
            }))
        } else if !hs.started || (ok && hs.migration_target()) {
            None
        } else {
            Some(ToDaemon::LocalFinish(LocalFinish { cr_state: hs.state }))
        };
        hs.stage_start = now;
        if let Some(m) = message {
            self.queue(Queued::ToDaemon(m));
        }
        self.push(Action::Close { names: self.names });
        self.push(Action::Unlink { names: self.names });
        self.enter(Phase::TearingDown, now, self.config.deadlines.host);
    }

    /// The handshake is over: next names, flags cleared, report.
    fn end_handshake(&mut self, now: Instant) {
        let mut hs = self.hs;
        hs.stages.teardown = Some(now - hs.stage_start);
        let report = HandshakeReport {
            names: self.names,
            response: hs.response,
            options: hs.options,
            handle: hs.handle,
            state: hs.state,
            error: hs.error,
            stages: hs.stages,
        };
        if let Some(pid) = hs.restart_pid {
            self.config.pid = pid;
            self.counter = 0;
        }
        self.define_names();
        self.flag.finish();
        self.hs = Handshake::new(CkptResponse::Start, now, None);
        self.phase = Phase::Idle;
        self.deadline = None;
        self.push(Action::Outcome(Outcome::Handshake(report)));
        if hs.terminate_after {
            self.await_termination();
        } else if self.terminating {
            self.phase = Phase::AwaitTermination;
        }
        self.request_after_handshake(now, &report, hs.terminate_after);
    }

    fn await_termination(&mut self) {
        if !self.terminating {
            self.terminating = true;
            self.push(Action::AwaitTermination);
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::AwaitTermination;
        }
    }

    // ---- the request side ----

    fn request_after_handshake(&mut self, now: Instant, report: &HandshakeReport, term: bool) {
        let restarted = report.state == CrState::Restart;
        let error = report.error.or_else(|| {
            (report.response != CkptResponse::Start).then_some(AppError {
                wait: Wait::OwnHandshake,
                failure: WaitFailure::NotReached,
            })
        });
        match self.req.phase {
            ReqPhase::OwnHandshake if restarted || term => {
                self.finish_request(now, error, restarted, term, UNKNOWN_SEQ, "");
            }
            ReqPhase::OwnHandshake => {
                // The global coordinator answers in any case; wait for it so
                // that its answer cannot be taken for a later request's.
                self.req.error = error;
                if let Some(r) = self.req.answer.take() {
                    return self.op_response(now, r);
                }
                self.wait_request(
                    ReqPhase::OpResponse,
                    now + self.config.deadlines.op_response,
                );
            }
            ReqPhase::Quiesce => {
                let error = error.or(Some(AppError {
                    wait: Wait::OwnHandshake,
                    failure: WaitFailure::NotReached,
                }));
                self.finish_request(now, error, restarted, term, UNKNOWN_SEQ, "");
            }
            ReqPhase::Local => {
                self.finish_request(now, error, restarted, term, UNKNOWN_SEQ, "");
            }
            ReqPhase::None | ReqPhase::FinAck | ReqPhase::OpResponse | ReqPhase::Global => {}
        }
    }

    fn op_response(&mut self, now: Instant, r: OpResponse) {
        let state = r.op_state.unwrap_or(OpResponse::DONE);
        let error = self.req.error.or_else(|| {
            (state != OpResponse::DONE).then_some(AppError {
                wait: Wait::OpResponse,
                failure: WaitFailure::Rejected(state),
            })
        });
        if r.op_event == OpEvent::Checkpoint && error.is_none() {
            self.push(Action::Sstore(SstoreOp::ReadGlobal {
                handle: self.last_handle,
            }));
            self.wait_request(ReqPhase::Global, now + self.config.deadlines.host);
            return;
        }
        self.finish_request(now, error, false, false, UNKNOWN_SEQ, "");
    }

    fn wait_request(&mut self, phase: ReqPhase, deadline: Instant) {
        self.req.phase = phase;
        self.req.deadline = Some(deadline);
    }

    /// The request side's deadline; waiting for one's own handshake is
    /// bounded only until the handshake starts (then its own steps are).
    fn req_deadline(&self) -> Option<Instant> {
        match self.req.phase {
            ReqPhase::OwnHandshake | ReqPhase::Quiesce if self.is_checkpointing() => None,
            ReqPhase::None | ReqPhase::Local => None,
            _ => self.req.deadline,
        }
    }

    fn req_wait(&self) -> Wait {
        match self.req.phase {
            ReqPhase::FinAck => Wait::FinAck,
            ReqPhase::OpResponse => Wait::OpResponse,
            ReqPhase::Global => Wait::Global,
            _ => Wait::OwnHandshake,
        }
    }

    fn finish_request(
        &mut self,
        now: Instant,
        error: Option<AppError>,
        restarted: bool,
        terminating: bool,
        seq_num: i32,
        reference: &str,
    ) {
        let mut r = Reference::new();
        // Callers pass at most MAX_REFERENCE_LEN bytes.
        let _ = r.push_str(reference);
        let report = RequestReport {
            op: self.req.op,
            error,
            restarted,
            terminating,
            seq_num,
            reference: r,
            elapsed: now - self.req.start,
        };
        self.req = Req::NONE;
        self.push(Action::Outcome(Outcome::Request(report)));
    }

    // ---- helpers ----

    fn define_names(&mut self) {
        self.names = ChannelNames {
            pid: self.config.pid,
            n: self.counter,
        };
        // Names print the counter as a C int.
        self.counter = if self.counter >= i32::MAX as u32 {
            0
        } else {
            self.counter + 1
        };
    }

    fn enter(&mut self, phase: Phase, now: Instant, wait: Duration) {
        self.phase = phase;
        self.deadline = Some(now + wait);
    }

    fn expect(&mut self, phase: Phase) -> Result<(), InputError> {
        if self.phase == phase {
            Ok(())
        } else {
            Err(self.unexpected_input())
        }
    }

    /// Counts an input not taken; returns the error to give back.
    fn unexpected_input(&mut self) -> InputError {
        debug!("app: unexpected input ignored");
        self.unexpected = self.unexpected.saturating_add(1);
        InputError::Unexpected
    }

    fn push(&mut self, action: Action) {
        self.queue(Queued::Action(action));
    }

    fn queue(&mut self, out: Queued) {
        if self.actions.push_back(out).is_err() {
            // The adapter did not drain the queue after an input.
            warn!("app: action queue full; action dropped");
            self.unexpected = self.unexpected.saturating_add(1);
        }
    }
}

/// A sink that counts what it passes on, for [`AppCoordinator::request_into`].
struct Counted<'s, S: Sink> {
    inner: &'s mut S,
    len: usize,
}

impl<S: Sink> Sink for Counted<'_, S> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        self.inner.put(bytes)?;
        self.len = self.len.saturating_add(bytes.len());
        Ok(())
    }
}
