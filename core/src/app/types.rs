//! The app coordinator's configuration, actions, reports and errors.

use crate::Reference;
use crate::time::Duration;
use crate::wire::{
    ChannelNames, CkptResponse, CrState, DecodeError, EmitError, FifoOptions, OpEvent, ProcessName,
};
use core::fmt;

/// The reference reported when sstore has none (docs/PROTOCOL.md §5). A
/// reference longer than [`MAX_REFERENCE_LEN`](crate::MAX_REFERENCE_LEN) is
/// reported as this too (and logged).
pub const UNKNOWN_REFERENCE: &str = "Unknown";

/// The sequence number reported when sstore has none (docs/PROTOCOL.md §5).
pub const UNKNOWN_SEQ: i32 = -1;

/// How long each wait may last. Every wait of the machine has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AppDeadlines {
    /// Creating and opening both FIFOs (the write end blocks until the local
    /// coordinator opens it).
    pub open: Duration,
    /// Each read of a frame from the local coordinator, except the release.
    pub read: Duration,
    /// Each write of a frame to the local coordinator.
    pub write: Duration,
    /// A stalled prepare ("not now") until the next attempt succeeds.
    pub stall: Duration,
    /// Each call the adapter carries out for the machine: the prepare,
    /// checkpoint and recover hooks, the sstore reads and syncs, the teardown.
    pub host: Duration,
    /// The release (FIFO step 6), which comes once the whole job checkpointed.
    pub release: Duration,
    /// A leader's wait for its own handshake after a CHECKPOINT or MIGRATE
    /// request, and every rank's wait to be quiesced after QUIESCE_START.
    pub own_handshake: Duration,
    /// The global coordinator's answer to CHECKPOINT or MIGRATE.
    pub op_response: Duration,
    /// FIN_ACK after FIN.
    pub fin_ack: Duration,
}

impl Default for AppDeadlines {
    /// Open MPI's 20 s for the FIFOs and each read and write; an hour for
    /// the host's calls; ten minutes for a stall and for the wait for one's
    /// own handshake. The waits that end only when the whole job's operation
    /// ends are longer than the coordinators' own bounds on it
    /// (docs/PROTOCOL.md §9): 80 minutes for the
    /// release (the local coordinator's verdict wait is 75), 150 minutes for
    /// the OP response and FIN_ACK (the global coordinator ends any
    /// operation within 135 minutes and fails a FIN after 140).
    fn default() -> Self {
        Self {
            open: Duration::from_secs(20),
            read: Duration::from_secs(20),
            write: Duration::from_secs(20),
            stall: Duration::from_secs(600),
            host: Duration::from_secs(3600),
            release: Duration::from_secs(4800),
            own_handshake: Duration::from_secs(600),
            op_response: Duration::from_secs(9000),
            fin_ack: Duration::from_secs(9000),
        }
    }
}

/// The app coordinator's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// This process's pid (part of the FIFO names).
    pub pid: u32,
    /// This process's name (job id and rank).
    pub name: ProcessName,
    /// Whether this rank sends the job's requests to the global coordinator
    /// (rank 0 for INIT and FIN, the request's leader otherwise).
    pub leader: bool,
    /// Whether the application registered a checkpointer; without one, a
    /// checkpoint request is answered NULL.
    pub checkpointer: bool,
    /// Whether both sides are built with checkpoint debugging: the options
    /// frame then carries the two debugger fields, and LOCAL_UPDATE its flag.
    pub debug: bool,
    /// The deadlines.
    pub deadlines: AppDeadlines,
}

impl Config {
    /// A configuration with default deadlines, a checkpointer, no debugging.
    pub fn new(pid: u32, name: ProcessName, leader: bool) -> Self {
        Self {
            pid,
            name,
            leader,
            checkpointer: true,
            debug: false,
            deadlines: AppDeadlines::default(),
        }
    }
}

/// Which frame a [`Action::Read`] or [`Action::Write`] carries
/// (docs/PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameKind {
    /// Step 1, read: the options and the sstore handle.
    Options,
    /// Step 2, written: the response.
    Response,
    /// Step 3, read: the go-ahead.
    GoAhead,
    /// Step 4, written: RUNNING after prepare-only.
    Running,
    /// Step 5, written: the final state.
    FinalState,
    /// Step 6, read: the release.
    Release,
}

/// How an adapter records the CRS component name in sstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CrsName {
    /// The name of the checkpointer that ran.
    Component,
    /// An empty name, unless one is already recorded (quiesce end).
    EmptyIfNone,
}

/// An operation on stable storage, for the snapshot `handle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SstoreOp {
    /// Register the handle and create the local snapshot record. No answer.
    Register {
        /// The snapshot.
        handle: u32,
    },
    /// Set the "skip this checkpoint" attribute (non-targets of a
    /// migration). No answer.
    SetSkip {
        /// The snapshot.
        handle: u32,
    },
    /// Read the local snapshot location and metadata file (keep them for
    /// the checkpoint). Answer with [`AppCoordinator::handle_sstore`](super::AppCoordinator::handle_sstore):
    /// a missing location is a failure.
    ReadLocation {
        /// The snapshot.
        handle: u32,
    },
    /// Record the session directory to recreate on restart. No answer.
    SetSessionDir {
        /// The snapshot.
        handle: u32,
    },
    /// Record the CRS component name. No answer.
    SetCrsName {
        /// The snapshot.
        handle: u32,
        /// Which name.
        name: CrsName,
    },
    /// Sync the local snapshot. Answer with
    /// [`AppCoordinator::handle_sstore`](super::AppCoordinator::handle_sstore).
    Sync {
        /// The snapshot.
        handle: u32,
    },
    /// Read the global sequence number and snapshot reference. Answer with
    /// [`AppCoordinator::handle_sstore_global`](super::AppCoordinator::handle_sstore_global).
    ReadGlobal {
        /// The snapshot.
        handle: u32,
    },
}

/// The result of the application's prepare hook (Open MPI's INC prep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PrepareResult {
    /// Prepared; the checkpoint may go on.
    Ready,
    /// "Not now" (Open MPI's `OPAL_EXISTS`): stall, and try again at a
    /// later progress point without a second handshake.
    NotNow,
    /// The prepare failed.
    Failed,
}

/// The result of the application's checkpointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CheckpointResult {
    /// Checkpointed; the process continues.
    Continue,
    /// This is a restarted copy of the process, now running as `pid`.
    Restart {
        /// The restarted process's pid.
        pid: u32,
    },
    /// Checkpointed; the process is to terminate.
    Term,
    /// The checkpoint failed.
    Error,
}

/// A host call (hook or sstore operation) that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HostError;

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the host call failed")
    }
}

impl core::error::Error for HostError {}

/// What the machine was waiting for when something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Wait {
    /// Creating and opening the FIFOs.
    Open,
    /// Reading the options (step 1).
    Options,
    /// Writing the response (step 2).
    Response,
    /// Reading the go-ahead (step 3).
    GoAhead,
    /// Reading the snapshot location from sstore.
    Location,
    /// The prepare hook.
    Prepare,
    /// A stalled prepare.
    Stall,
    /// Writing RUNNING (step 4).
    Running,
    /// The quiesced channel (the local coordinator went away meanwhile).
    Quiesced,
    /// The sync before a `stop` checkpoint.
    EarlySync,
    /// The checkpointer.
    Checkpoint,
    /// The sync after the checkpoint.
    Sync,
    /// Writing the final state (step 5).
    FinalState,
    /// Reading the release (step 6).
    Release,
    /// The recover hook.
    Recover,
    /// The teardown.
    Teardown,
    /// A leader's own handshake, or the quiesce, after its request.
    OwnHandshake,
    /// The global coordinator's answer.
    OpResponse,
    /// FIN_ACK.
    FinAck,
    /// Reading the global sequence number and reference from sstore.
    Global,
}

/// Why a wait ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WaitFailure {
    /// Its deadline passed.
    Deadline,
    /// The peer went away.
    PeerGone,
    /// Another I/O error.
    Io,
    /// The peer sent something malformed.
    Malformed(DecodeError),
    /// The host reported a failure (a hook, sstore).
    Failed,
    /// The global coordinator answered with this failed `op_state`.
    Rejected(i32),
    /// The handshake ended without reaching the point the request waited for.
    NotReached,
}

/// An error: what was awaited, and what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AppError {
    /// What the machine waited for.
    pub wait: Wait,
    /// What went wrong.
    pub failure: WaitFailure,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.wait)?;
        match self.failure {
            WaitFailure::Deadline => f.write_str("deadline passed"),
            WaitFailure::PeerGone => f.write_str("peer gone"),
            WaitFailure::Io => f.write_str("I/O error"),
            WaitFailure::Malformed(e) => write!(f, "malformed: {e}"),
            WaitFailure::Failed => f.write_str("failed"),
            WaitFailure::Rejected(s) => write!(f, "rejected with op_state {s}"),
            WaitFailure::NotReached => f.write_str("handshake ended before this point"),
        }
    }
}

impl core::error::Error for AppError {}

/// The duration of each stage of a handshake; `None` for a stage that did
/// not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stages {
    /// From the signal to the progress point (when the request carried a time).
    pub signal: Option<Duration>,
    /// From the progress point to the go-ahead (to the end of the response
    /// for another answer than START).
    pub handshake: Option<Duration>,
    /// The prepare, stalls included.
    pub prepare: Option<Duration>,
    /// The checkpointer.
    pub checkpoint: Option<Duration>,
    /// The sstore sync (before the checkpoint with `stop`).
    pub sync: Option<Duration>,
    /// From writing the final state to the release.
    pub release_wait: Option<Duration>,
    /// The recover hook.
    pub recover: Option<Duration>,
    /// The teardown.
    pub teardown: Option<Duration>,
}

/// How one handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HandshakeReport {
    /// The channel's names.
    pub names: ChannelNames,
    /// What this process answered.
    pub response: CkptResponse,
    /// The options, once read.
    pub options: Option<FifoOptions>,
    /// The sstore handle, once read (0: none).
    pub handle: u32,
    /// The final state: CONTINUE, TERM, RESTART or ERROR; NONE when the
    /// answer was not START.
    pub state: CrState,
    /// What went wrong, if anything.
    pub error: Option<AppError>,
    /// The stages' durations.
    pub stages: Stages,
}

/// How an application request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestReport {
    /// The request.
    pub op: OpEvent,
    /// What went wrong, if anything.
    pub error: Option<AppError>,
    /// This process is a restarted copy (no OP response was awaited).
    pub restarted: bool,
    /// This process is to be terminated (`term`, a migration target, or a
    /// RESTART request): no OP response was awaited.
    pub terminating: bool,
    /// The global sequence number (-1 when sstore has none or the request
    /// carries none).
    pub seq_num: i32,
    /// The global snapshot reference (`"Unknown"` when sstore has none; empty
    /// when the request carries none).
    pub reference: Reference,
    /// From the request to this report.
    pub elapsed: Duration,
}

/// What the machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Outcome {
    /// A handshake ended.
    Handshake(HandshakeReport),
    /// A prepare-only handshake reached RUNNING: the process is quiesced and
    /// the channel stays open until QUIESCE_END.
    Quiesced {
        /// The channel's names.
        names: ChannelNames,
        /// The snapshot handle.
        handle: u32,
        /// The stages so far.
        stages: Stages,
    },
    /// An application request ended.
    Request(RequestReport),
}

/// Something for the adapter to do. Each variant says which input answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use = "every action must be carried out (or answered) for the machine to go on"]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // nothing to box into without alloc; moved once per report
pub enum Action {
    /// Create both FIFOs (private directory, 0600, checked), open
    /// `prog_read` read-write, then `prog_write` write-only. Answer:
    /// `handle_opened`, or `handle_io_error`.
    OpenChannel {
        /// The names.
        names: ChannelNames,
    },
    /// Read exactly `len` bytes from `prog_read`. Answer: `handle_read` with
    /// them, or `handle_io_error`.
    Read {
        /// The frame expected.
        frame: FrameKind,
        /// Its length.
        len: usize,
    },
    /// Write exactly these bytes to `prog_write`. Answer:
    /// `handle_write_done`, or `handle_io_error`.
    Write {
        /// The frame.
        frame: FrameKind,
        /// Its bytes (host order).
        bytes: [u8; 4],
    },
    /// Call the application's prepare hook. Answer: `handle_prepare`.
    Prepare,
    /// Call the application's checkpointer (with the location read from
    /// sstore). Answer: `handle_checkpoint`.
    Checkpoint {
        /// The snapshot.
        handle: u32,
        /// The options, for `term`, `stop` and the debugger fields.
        options: FifoOptions,
    },
    /// Call the application's recover hook with this state. Answer:
    /// `handle_recovered`.
    Recover {
        /// The state to recover with.
        state: CrState,
    },
    /// An sstore operation; see [`SstoreOp`] for which ones are answered.
    Sstore(SstoreOp),
    /// Send the first `len` bytes of the buffer given to
    /// [`poll_action`](super::AppCoordinator::poll_action) to the node
    /// daemon (tag SNAPC): LOCAL_FINISH or LOCAL_UPDATE. No answer.
    SendToDaemon {
        /// The message's length.
        len: usize,
    },
    /// Close both ends of the channel (those that are open). No answer.
    Close {
        /// The names.
        names: ChannelNames,
    },
    /// Unlink both FIFOs. No answer; once the teardown's actions are done,
    /// `handle_teardown_done`.
    Unlink {
        /// The names.
        names: ChannelNames,
    },
    /// The process is to be terminated by the runtime: stop making progress
    /// and wait for it.
    AwaitTermination,
    /// A report.
    Outcome(Outcome),
}

/// Why the machine did not take an input (see the crate's contract,
/// "Inputs"). Nothing changed but the count of
/// [`unexpected_inputs`](super::AppCoordinator::unexpected_inputs), except
/// that bytes a request waited for end that request (reported in its
/// [`Outcome::Request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InputError {
    /// The machine does not wait for this input now.
    Unexpected,
    /// Bytes from the global coordinator that do not decode.
    Decode(DecodeError),
    /// NONE and FIN_ACK are not requests an application makes.
    Unsupported(OpEvent),
    /// Another request is still running.
    Busy(OpEvent),
    /// QUIESCE_CHECKPOINT and QUIESCE_END need a quiesced process.
    NotQuiesced,
    /// QUIESCE_START while already quiesced.
    AlreadyQuiesced,
    /// The process is waiting to be terminated.
    Terminating,
    /// The REQUEST_OP did not fit the caller's buffer, or cannot be encoded.
    Encode(EmitError),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unexpected => f.write_str("the app coordinator does not wait for this input"),
            Self::Decode(e) => write!(f, "undecodable message from the global coordinator: {e}"),
            Self::Unsupported(op) => write!(f, "{op} is not an application request"),
            Self::Busy(op) => write!(f, "request {op} still running"),
            Self::NotQuiesced => f.write_str("the process is not quiesced"),
            Self::AlreadyQuiesced => f.write_str("the process is already quiesced"),
            Self::Terminating => f.write_str("the process awaits termination"),
            Self::Encode(e) => write!(f, "cannot encode the request: {e}"),
        }
    }
}

impl core::error::Error for InputError {}
