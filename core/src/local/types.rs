//! The local coordinator's configuration, slot handles, actions, results and
//! errors.

use crate::time::Duration;
use crate::wire::fifo::FrameBytes;
use crate::wire::{
    ChannelNames, CkptResponse, CkptState, CrState, Debugger, DecodeError, ErrorKind, ProcessName,
};
use core::fmt;

/// How long each wait of the local coordinator may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LocalDeadlines {
    /// From the signal until both FIFO names exist (Open MPI's
    /// `snapc_full_max_wait_time`, 20 s).
    pub fifos: Duration,
    /// Opening both FIFOs once they exist.
    pub open: Duration,
    /// Each write: options, go-ahead, release.
    pub write: Duration,
    /// Reading the response (step 2) after the options are written.
    pub response: Duration,
    /// Reading the final state (steps 4 and 5) after the go-ahead, or after
    /// quiesce end began: it covers the application's prepare and checkpoint.
    pub final_state: Duration,
    /// With the `stop` option, from the final state until the process has
    /// stopped.
    pub stop: Duration,
    /// After reporting, until the global coordinator's verdict (JOB_STATE
    /// ESTABLISHED, INC_PREPED or ERROR).
    pub verdict: Duration,
    /// Quiesced (prepare-only done, channels open), until quiesce end or
    /// the global coordinator's ERROR.
    pub quiesced: Duration,
}

impl Default for LocalDeadlines {
    /// 20 s for the FIFOs, the opening, each write and the response (Open
    /// MPI's wait limit); an hour for the final state and the quiesced job;
    /// a minute for the stop; 75 minutes for the verdict, longer than the
    /// global coordinator's default wait for every LC's report plus its wait
    /// for the runtime (65 + 5 minutes), so that the LC never gives up on a
    /// verdict that is still to come (docs/PROTOCOL.md §9).
    fn default() -> Self {
        Self {
            fifos: Duration::from_secs(20),
            open: Duration::from_secs(20),
            write: Duration::from_secs(20),
            response: Duration::from_secs(20),
            final_state: Duration::from_secs(3600),
            stop: Duration::from_secs(60),
            verdict: Duration::from_secs(4500),
            quiesced: Duration::from_secs(3600),
        }
    }
}

/// The local coordinator's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Every deadline.
    pub deadlines: LocalDeadlines,
    /// `Some` when both sides are built with checkpoint debugging: the
    /// options frame then carries these two debugger words.
    pub debugger: Option<Debugger>,
}

/// A process-table slot, as actions name it and inputs give it back.
///
/// The generation changes when the slot gets a new process, a new pid or a
/// new handshake, so an input meant for an earlier one is recognised as
/// stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotId {
    pub(super) index: u32,
    pub(super) generation: u32,
}

impl SlotId {
    /// A slot id from its parts, as a caller that keeps ids in its own form
    /// (a C runtime) gives them back. An id the machine did not hand out is
    /// refused by the input it is given to ([`InputError::NoSuchSlot`],
    /// [`InputError::Stale`]).
    pub const fn from_parts(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }

    /// The slot's index in the caller's storage.
    pub const fn index(self) -> usize {
        self.index as usize
    }

    /// The slot's generation.
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

/// A step of the handshake, for failures and timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stage {
    /// Signalled, waiting for both FIFO names to exist.
    Fifos,
    /// Opening the FIFOs.
    Open,
    /// Writing the options and handle (step 1).
    Options,
    /// Reading the response (step 2).
    Response,
    /// Writing the go-ahead (step 3).
    GoAhead,
    /// Reading the final state (steps 4 and 5).
    FinalState,
    /// Waiting for the process to stop (`stop` option).
    Stop,
    /// Writing the release (step 6).
    Release,
}

impl Stage {
    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fifos => "fifos",
            Self::Open => "open",
            Self::Options => "options",
            Self::Response => "response",
            Self::GoAhead => "go-ahead",
            Self::FinalState => "final state",
            Self::Stop => "stop",
            Self::Release => "release",
        }
    }
}

/// Why a process failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProcessFailure {
    /// The stage's deadline passed.
    Timeout(Stage),
    /// The process went away (EOF, EPIPE, an I/O error, the signal could not
    /// be delivered, it exited instead of stopping).
    PeerGone(Stage),
    /// The process answered other than START.
    Refused(CkptResponse),
    /// A frame could not be decoded (unknown code, short read).
    Malformed {
        /// The frame's stage.
        stage: Stage,
        /// What was wrong.
        kind: ErrorKind,
    },
    /// A known state that does not fit this point (RESTART, NONE, RUNNING
    /// after a checkpoint, CONTINUE after prepare-only, ...).
    UnexpectedState(CrState),
    /// Quiesce end found no open channel for this process.
    NotQuiesced,
    /// The process was removed from the table during its handshake.
    Removed,
    /// The process reported a new pid (LOCAL_UPDATE) during its handshake.
    Restarted,
    /// The global coordinator ended the checkpoint with ERROR during the
    /// handshake.
    Aborted,
}

impl fmt::Display for ProcessFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(s) => write!(f, "deadline passed waiting for the {}", s.name()),
            Self::PeerGone(s) => write!(f, "process gone during the {}", s.name()),
            Self::Refused(r) => write!(f, "process answered {}", r.name()),
            Self::Malformed { stage, kind } => {
                write!(f, "malformed {} frame: {:?}", stage.name(), kind)
            }
            Self::UnexpectedState(s) => write!(f, "unexpected state {}", s.name()),
            Self::NotQuiesced => f.write_str("no quiesced channel to end"),
            Self::Removed => f.write_str("process removed during its handshake"),
            Self::Restarted => f.write_str("process restarted during its handshake"),
            Self::Aborted => f.write_str("checkpoint aborted by the global coordinator"),
        }
    }
}

/// How one process's handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProcessOutcome {
    /// The state it sent: RUNNING after prepare-only, CONTINUE or TERM after
    /// a checkpoint (success), or ERROR.
    State(CrState),
    /// It failed.
    Failed(ProcessFailure),
}

/// How long each stage took; `None` for a stage not reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timings {
    /// Signal until both FIFO names exist.
    pub fifos: Option<Duration>,
    /// Opening the FIFOs.
    pub open: Option<Duration>,
    /// Writing the options.
    pub options: Option<Duration>,
    /// Options written until the response.
    pub response: Option<Duration>,
    /// Writing the go-ahead.
    pub go_ahead: Option<Duration>,
    /// Go-ahead written (or quiesce end begun) until the final state: the
    /// application's prepare and checkpoint.
    pub final_state: Option<Duration>,
    /// Final state until the process stopped.
    pub stop: Option<Duration>,
    /// The whole handshake, until the result.
    pub total: Duration,
}

impl Timings {
    /// No stage reached.
    pub const EMPTY: Self = Self {
        fifos: None,
        open: None,
        options: None,
        response: None,
        go_ahead: None,
        final_state: None,
        stop: None,
        total: Duration::ZERO,
    };
}

/// One process's result for one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProcessResult {
    /// The slot (with the generation of this handshake).
    pub slot: SlotId,
    /// The process.
    pub name: ProcessName,
    /// Its pid.
    pub pid: u32,
    /// The handshake counter of the FIFO names used.
    pub n: u32,
    /// How it ended.
    pub outcome: ProcessOutcome,
    /// Per-stage durations.
    pub timings: Timings,
}

/// What the adapter carries out. Each action that waits for something names
/// the input that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "every action must be carried out (or answered) for the machine to go on"]
#[non_exhaustive]
pub enum Action {
    /// Send the checkpoint signal (SIGUSR1 by default) to `pid`. If it
    /// cannot be delivered, answer [`handle_io_error`].
    ///
    /// [`handle_io_error`]: super::LocalCoordinator::handle_io_error
    Signal {
        /// The slot.
        slot: SlotId,
        /// The process.
        pid: u32,
    },
    /// Watch until both FIFO names exist in the pipe directory; answer
    /// [`handle_fifos_exist`](super::LocalCoordinator::handle_fifos_exist).
    WatchFifos {
        /// The slot.
        slot: SlotId,
        /// The names.
        names: ChannelNames,
    },
    /// Open `prog_read` write-only and `prog_write` read-only; answer
    /// [`handle_opened`](super::LocalCoordinator::handle_opened).
    OpenFifos {
        /// The slot.
        slot: SlotId,
        /// The names.
        names: ChannelNames,
    },
    /// Write all of `bytes` to the slot's `prog_read`; answer
    /// [`handle_written`](super::LocalCoordinator::handle_written).
    Write {
        /// The slot.
        slot: SlotId,
        /// The whole frame.
        bytes: FrameBytes,
    },
    /// Read exactly `len` bytes from the slot's `prog_write`; answer
    /// [`handle_read`](super::LocalCoordinator::handle_read) with them.
    Read {
        /// The slot.
        slot: SlotId,
        /// The frame's length.
        len: usize,
    },
    /// Wait until `pid` has stopped; answer
    /// [`handle_stopped`](super::LocalCoordinator::handle_stopped).
    WaitStopped {
        /// The slot.
        slot: SlotId,
        /// The process.
        pid: u32,
    },
    /// Abandon whatever is pending for this slot (watch, open, read, write,
    /// stop wait) and close its FIFO ends if they are open. Answers nothing.
    Close {
        /// The slot, with the generation to close.
        slot: SlotId,
    },
    /// Send the first `len` bytes of the buffer given to
    /// [`poll_action`](super::LocalCoordinator::poll_action) to the global
    /// coordinator: ORTED_STATE (quick form).
    SendToGc {
        /// The message's length.
        len: usize,
    },
    /// A process's result for this phase (for logs and statistics).
    Report(ProcessResult),
}

/// Why the machine did not take an input (see the crate's contract,
/// "Inputs"). Nothing changed but the count of
/// [`unexpected_inputs`](super::LocalCoordinator::unexpected_inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InputError {
    /// Bytes that do not decode as the message the channel carries.
    Decode(DecodeError),
    /// The slot index is outside the storage.
    NoSuchSlot,
    /// The slot has moved on (another process, pid or handshake).
    Stale,
    /// The slot is not waiting for this input.
    Unexpected,
    /// Every slot holds a process (or still has actions to hand out).
    Full,
    /// The name or the pid is already in the table.
    Duplicate,
    /// No process has that name.
    UnknownProcess,
    /// A pid must be between 1 and `i32::MAX`.
    BadPid,
    /// A JOB_STATE RUNNING without the long form's handle and options.
    MissingDetail,
    /// A JOB_STATE whose state does not fit what the machine is doing.
    DoesNotFit {
        /// The state received.
        state: CkptState,
        /// What the machine was doing.
        phase: Phase,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "undecodable message: {e}"),
            Self::NoSuchSlot => f.write_str("no such slot"),
            Self::Stale => f.write_str("input for an earlier process or handshake of this slot"),
            Self::Unexpected => f.write_str("the slot does not wait for this input"),
            Self::Full => f.write_str("the process table is full"),
            Self::Duplicate => f.write_str("the process name or pid is already in the table"),
            Self::UnknownProcess => f.write_str("no such process in the table"),
            Self::BadPid => f.write_str("a pid must be between 1 and i32::MAX"),
            Self::MissingDetail => f.write_str("JOB_STATE RUNNING without handle and options"),
            Self::DoesNotFit { state, phase } => {
                write!(f, "JOB_STATE {} does not fit {:?}", state.name(), phase)
            }
        }
    }
}

impl core::error::Error for InputError {}

/// What the machine is doing, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// No checkpoint.
    Idle,
    /// Handshakes run; the report goes out when every process has a result.
    Handshake(Mode),
    /// Reported this state; waiting for the global coordinator's verdict.
    AwaitVerdict(CkptState),
    /// The job is quiesced: channels stay open until quiesce end.
    Quiesced,
    /// Writing the releases; RECOVERED (or ERROR after a deadline) follows.
    Releasing,
}

/// Which handshake a phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// The whole handshake, ending with CONTINUE or TERM.
    Checkpoint,
    /// Prepare only (quiesce start), ending with RUNNING.
    PrepareOnly,
    /// Quiesce end: read the final state on the channels kept open.
    RecoverOnly,
}

impl Mode {
    /// The state a local coordinator reports when every process succeeded.
    pub const fn success(self) -> CkptState {
        match self {
            Self::PrepareOnly => CkptState::IncPreped,
            Self::Checkpoint | Self::RecoverOnly => CkptState::FinishedLocal,
        }
    }
}

/// A process in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProcessInfo {
    /// Its slot.
    pub slot: SlotId,
    /// Its name.
    pub name: ProcessName,
    /// Its pid.
    pub pid: u32,
    /// The handshake counter its next (or current) FIFO names use.
    pub n: u32,
}

impl ProcessInfo {
    /// The FIFO names of its next (or current) handshake.
    pub const fn names(&self) -> ChannelNames {
        ChannelNames {
            pid: self.pid,
            n: self.n,
        }
    }
}
