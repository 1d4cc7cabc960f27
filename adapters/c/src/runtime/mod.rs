//! The runtime API: snapc-core's three machines for C runtimes.
//!
//! Each machine lives in storage the caller owns and sizes
//! (`snapc_*_storage_size`, then `snapc_*_init` into it); nothing here
//! allocates, calls back or reads a clock. Bytes come in through one call
//! per channel, the caller's time (microseconds of a monotonic clock) comes
//! in with every input, actions go out through `snapc_*_poll_action` (a
//! message's bytes into the caller's buffer of at least
//! `SNAPC_MAX_MESSAGE_LEN` bytes) and the next deadline through
//! `snapc_*_poll_timeout`. Every call returns a status: `SNAPC_OK` (0), a
//! count, or a negative `snapc_status`; `snapc_*_last_error` formats the
//! machine's reason for the last refused input into a caller's buffer.
//!
//! Every pointer is checked (NULL, alignment, the handle's kind), every
//! length is explicit, and every entry point runs under `catch_unwind`: a
//! panic (none is expected: snapc-core has no panic path) never unwinds
//! into C; it makes the handle unusable (`SNAPC_E_PANIC`, then
//! `SNAPC_E_INVAL`). A machine's storage must stay where it was
//! initialised (the machine points into it) and be used by one thread at a
//! time; `snapc_ac_signal` is the exception, safe in a signal handler.
//!
//! This module depends on snapc-core and `std` only, so that the fuzz
//! workspace can compile it as it is.

pub mod ac;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod gc;
mod handle;
pub mod lc;

use core::ffi::{c_char, c_int};
use core::fmt::Write as _;
use core::ptr::NonNull;
use snapc_core::app::{
    AppError, HandshakeReport, Outcome, RequestReport, Stages, Wait, WaitFailure,
};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{
    ChannelNames, FifoKind, FifoName, FifoOptions, Message, MigrateEntry, OpEvent, Request,
    RequestOp,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The version of this ABI: it changes whenever a declaration of snapc.h
/// changes incompatibly. Compare with `snapc_abi_version()` at run time.
pub const SNAPC_ABI_VERSION: u32 = 1;

/// The longest message any machine writes into the caller's buffer: the
/// buffer given to `snapc_*_poll_action` must have at least this many bytes.
pub const SNAPC_MAX_MESSAGE_LEN: usize = 457;

/// The longest FIFO frame (the options frame with the debugger fields).
pub const SNAPC_MAX_FRAME_LEN: usize = 36;

/// The longest global snapshot reference, without its NUL.
pub const SNAPC_MAX_REFERENCE_LEN: usize = 128;

/// The longest restart handle the global coordinator keeps, without its NUL.
pub const SNAPC_MAX_RESTART_HANDLE_LEN: usize = 256;

/// The longest host name, without its NUL.
pub const SNAPC_MAX_HOST_NAME_LEN: usize = 255;

/// The longest FIFO file name, without its NUL.
pub const SNAPC_MAX_FIFO_NAME_LEN: usize = 40;

/// The most entries a MIGRATE request carries here.
pub const SNAPC_MAX_MIGRATE_ENTRIES: usize = 32;

const _: () = {
    assert!(SNAPC_MAX_MESSAGE_LEN == snapc_core::MAX_MESSAGE_LEN);
    assert!(SNAPC_MAX_FRAME_LEN == snapc_core::wire::fifo::MAX_FRAME_LEN);
    assert!(SNAPC_MAX_REFERENCE_LEN == snapc_core::MAX_REFERENCE_LEN);
    assert!(SNAPC_MAX_RESTART_HANDLE_LEN == snapc_core::global::MAX_RESTART_HANDLE_LEN);
    assert!(SNAPC_MAX_HOST_NAME_LEN == snapc_core::global::MAX_HOST_NAME_LEN);
    assert!(SNAPC_MAX_FIFO_NAME_LEN == snapc_core::wire::names::MAX_FILE_NAME_LEN);
    assert!(SNAPC_MAX_MIGRATE_ENTRIES == snapc_core::global::MAX_MOVES);
};

/// What a call returns: `SNAPC_OK` or a negative error.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_status {
    /// Done.
    SNAPC_OK = 0,
    /// A NULL, misaligned or uninitialised pointer, a handle of another
    /// kind, a value out of range, text that is not UTF-8.
    SNAPC_E_INVAL = -1,
    /// The storage or the output buffer is too small.
    SNAPC_E_NOSPACE = -2,
    /// The machine does not wait for this input now.
    SNAPC_E_UNEXPECTED = -3,
    /// Bytes that do not decode as the message the channel carries.
    SNAPC_E_DECODE = -4,
    /// A slot id of an earlier process, pid or handshake of that slot.
    SNAPC_E_STALE = -5,
    /// A slot index outside the storage.
    SNAPC_E_NO_SLOT = -6,
    /// Every slot holds a process.
    SNAPC_E_FULL = -7,
    /// The process name or pid is already in the table.
    SNAPC_E_DUPLICATE = -8,
    /// No such process, rank or local coordinator.
    SNAPC_E_UNKNOWN = -9,
    /// Another request or operation runs, or a call on this handle is
    /// already running (a call from inside a hook).
    SNAPC_E_BUSY = -10,
    /// Refused for another reason (`snapc_*_last_error` says which).
    SNAPC_E_REFUSED = -11,
    /// The wait ended at its deadline.
    SNAPC_E_TIMEOUT = -12,
    /// The process runs standalone: no coordinator to ask.
    SNAPC_E_NO_COORDINATOR = -13,
    /// The operation ran and failed (`snapc_last_error` says why).
    SNAPC_E_FAILED = -14,
    /// An internal error was caught; the handle is unusable.
    SNAPC_E_PANIC = -15,
}

pub(crate) const OK: c_int = snapc_status::SNAPC_OK as c_int;
pub(crate) const E_INVAL: c_int = snapc_status::SNAPC_E_INVAL as c_int;
pub(crate) const E_NOSPACE: c_int = snapc_status::SNAPC_E_NOSPACE as c_int;
pub(crate) const E_PANIC: c_int = snapc_status::SNAPC_E_PANIC as c_int;

/// A static description of a status code (never NULL).
#[unsafe(no_mangle)]
pub extern "C" fn snapc_strerror(status: c_int) -> *const c_char {
    use snapc_status::*;
    let text: &'static core::ffi::CStr = match status {
        x if x == SNAPC_OK as c_int => c"success",
        x if x == SNAPC_E_INVAL as c_int => c"invalid argument",
        x if x == SNAPC_E_NOSPACE as c_int => c"storage or buffer too small",
        x if x == SNAPC_E_UNEXPECTED as c_int => c"the machine does not wait for this input",
        x if x == SNAPC_E_DECODE as c_int => c"bytes that do not decode",
        x if x == SNAPC_E_STALE as c_int => c"stale slot id",
        x if x == SNAPC_E_NO_SLOT as c_int => c"no such slot",
        x if x == SNAPC_E_FULL as c_int => c"the process table is full",
        x if x == SNAPC_E_DUPLICATE as c_int => c"the process name or pid is already in the table",
        x if x == SNAPC_E_UNKNOWN as c_int => c"no such process, rank or local coordinator",
        x if x == SNAPC_E_BUSY as c_int => c"busy",
        x if x == SNAPC_E_REFUSED as c_int => c"refused",
        x if x == SNAPC_E_TIMEOUT as c_int => c"deadline passed",
        x if x == SNAPC_E_NO_COORDINATOR as c_int => c"no coordinator: the process runs standalone",
        x if x == SNAPC_E_FAILED as c_int => c"the operation failed",
        x if x == SNAPC_E_PANIC as c_int => c"internal error; the handle is unusable",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// The ABI version the library was built with (`SNAPC_ABI_VERSION` of its header).
#[unsafe(no_mangle)]
pub extern "C" fn snapc_abi_version() -> u32 {
    SNAPC_ABI_VERSION
}

// ---------------------------------------------------------------- values --

/// A process's name: job id and rank.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct snapc_name {
    /// The job.
    pub jobid: u32,
    /// The rank (vpid).
    pub vpid: u32,
}

/// The FIFO pair of one handshake: `opal_cr_prog_read.<pid>_<n>` and
/// `opal_cr_prog_write.<pid>_<n>` (`snapc_fifo_name`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct snapc_names {
    /// The application process's pid.
    pub pid: u32,
    /// The handshake counter.
    pub n: u32,
}

impl From<ChannelNames> for snapc_names {
    fn from(n: ChannelNames) -> Self {
        Self { pid: n.pid, n: n.n }
    }
}

/// Which FIFO of a pair.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_fifo {
    /// `opal_cr_prog_read`: the application reads it.
    SNAPC_FIFO_PROG_READ = 0,
    /// `opal_cr_prog_write`: the application writes it.
    SNAPC_FIFO_PROG_WRITE = 1,
}

/// The checkpoint options a process gets in the options frame (flags: 0 or 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct snapc_fifo_options {
    /// The whole job migrates.
    pub all_migrating: c_int,
    /// This process moves.
    pub migrating: c_int,
    /// Terminate after the checkpoint.
    pub term: c_int,
    /// Stop after the checkpoint.
    pub stop: c_int,
    /// Prepare only (quiesce start).
    pub inc_prep_only: c_int,
    /// Recover only (quiesce end).
    pub inc_recover_only: c_int,
    /// The frame carries the debugger fields.
    pub has_debugger: c_int,
    /// Attach a debugger before the checkpoint.
    pub attach_debugger: c_int,
    /// Detach it afterwards.
    pub detach_debugger: c_int,
}

impl From<FifoOptions> for snapc_fifo_options {
    fn from(o: FifoOptions) -> Self {
        let d = o.debugger;
        Self {
            all_migrating: o.all_migrating.into(),
            migrating: o.migrating.into(),
            term: o.term.into(),
            stop: o.stop.into(),
            inc_prep_only: o.inc_prep_only.into(),
            inc_recover_only: o.inc_recover_only.into(),
            has_debugger: d.is_some().into(),
            attach_debugger: d.is_some_and(|d| d.attach).into(),
            detach_debugger: d.is_some_and(|d| d.detach).into(),
        }
    }
}

/// What an application asks of its global coordinator (the op_event codes of
/// the wire).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_op {
    /// NONE.
    SNAPC_OP_NONE = 0,
    /// The job is checkpointable.
    SNAPC_OP_INIT = 1,
    /// The job is finishing.
    SNAPC_OP_FIN = 2,
    /// FIN acknowledged (not a request).
    SNAPC_OP_FIN_ACK = 3,
    /// Checkpoint the job.
    SNAPC_OP_CHECKPOINT = 4,
    /// Restart the job from a snapshot.
    SNAPC_OP_RESTART = 5,
    /// Migrate ranks.
    SNAPC_OP_MIGRATE = 6,
    /// Quiesce the job.
    SNAPC_OP_QUIESCE_START = 7,
    /// Checkpoint the quiesced job.
    SNAPC_OP_QUIESCE_CHECKPOINT = 8,
    /// End the quiesce.
    SNAPC_OP_QUIESCE_END = 9,
}

/// One migration preference of a MIGRATE request.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_migrate_entry {
    /// The rank the preference is about.
    pub vpid: i32,
    /// The preferred host (`host_len` bytes, UTF-8); NULL: any host.
    pub host: *const u8,
    /// Its length in bytes.
    pub host_len: usize,
    /// The peer rank to move next to (-1: none).
    pub vpid_pref: i32,
    /// Whether the rank must leave its node (0 or 1).
    pub off_node: c_int,
}

/// An application request with its arguments.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_request {
    /// The request (`snapc_op`).
    pub op: c_int,
    /// RESTART: the snapshot's sequence number.
    pub seq_num: i32,
    /// RESTART: the snapshot's handle (`handle_len` bytes, UTF-8); NULL: none.
    pub handle: *const u8,
    /// Its length in bytes.
    pub handle_len: usize,
    /// MIGRATE: the preferences (`n_entries` of them, at most
    /// `SNAPC_MAX_MIGRATE_ENTRIES`).
    pub entries: *const snapc_migrate_entry,
    /// How many.
    pub n_entries: usize,
}

/// Stage durations in microseconds; -1 for a stage that did not run.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct snapc_stages {
    /// From the signal to the progress point.
    pub signal_us: i64,
    /// From the progress point to the go-ahead.
    pub handshake_us: i64,
    /// The prepare hook, stalls included.
    pub prepare_us: i64,
    /// The checkpoint hook.
    pub checkpoint_us: i64,
    /// The snapshot's sync.
    pub sync_us: i64,
    /// From the final state to the release.
    pub release_wait_us: i64,
    /// The recover hook.
    pub recover_us: i64,
    /// Closing and removing the FIFOs.
    pub teardown_us: i64,
}

pub(crate) fn us(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl From<Stages> for snapc_stages {
    fn from(s: Stages) -> Self {
        Self {
            signal_us: us(s.signal),
            handshake_us: us(s.handshake),
            prepare_us: us(s.prepare),
            checkpoint_us: us(s.checkpoint),
            sync_us: us(s.sync),
            release_wait_us: us(s.release_wait),
            recover_us: us(s.recover),
            teardown_us: us(s.teardown),
        }
    }
}

/// What an application process was waiting for when something went wrong.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_wait {
    /// Nothing went wrong.
    SNAPC_WAIT_NONE = 0,
    /// Creating and opening the FIFOs.
    SNAPC_WAIT_OPEN = 1,
    /// Reading the options.
    SNAPC_WAIT_OPTIONS = 2,
    /// Writing the response.
    SNAPC_WAIT_RESPONSE = 3,
    /// Reading the go-ahead.
    SNAPC_WAIT_GO_AHEAD = 4,
    /// Reading the snapshot location.
    SNAPC_WAIT_LOCATION = 5,
    /// The prepare hook.
    SNAPC_WAIT_PREPARE = 6,
    /// A stalled prepare.
    SNAPC_WAIT_STALL = 7,
    /// Writing RUNNING.
    SNAPC_WAIT_RUNNING = 8,
    /// Quiesced.
    SNAPC_WAIT_QUIESCED = 9,
    /// The sync before a `stop` checkpoint.
    SNAPC_WAIT_EARLY_SYNC = 10,
    /// The checkpoint hook.
    SNAPC_WAIT_CHECKPOINT = 11,
    /// The sync.
    SNAPC_WAIT_SYNC = 12,
    /// Writing the final state.
    SNAPC_WAIT_FINAL_STATE = 13,
    /// Reading the release.
    SNAPC_WAIT_RELEASE = 14,
    /// The recover hook.
    SNAPC_WAIT_RECOVER = 15,
    /// The teardown.
    SNAPC_WAIT_TEARDOWN = 16,
    /// A leader's own handshake after its request.
    SNAPC_WAIT_OWN_HANDSHAKE = 17,
    /// The global coordinator's answer.
    SNAPC_WAIT_OP_RESPONSE = 18,
    /// FIN_ACK.
    SNAPC_WAIT_FIN_ACK = 19,
    /// The global sequence number and reference.
    SNAPC_WAIT_GLOBAL = 20,
    /// A wait this header does not name yet.
    SNAPC_WAIT_OTHER = 99,
}

/// How a wait ended badly.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_failure {
    /// Nothing went wrong.
    SNAPC_FAILURE_NONE = 0,
    /// The deadline passed.
    SNAPC_FAILURE_DEADLINE = 1,
    /// The peer went away.
    SNAPC_FAILURE_PEER_GONE = 2,
    /// Another I/O error.
    SNAPC_FAILURE_IO = 3,
    /// The peer sent something malformed.
    SNAPC_FAILURE_MALFORMED = 4,
    /// A hook or the snapshot store reported a failure.
    SNAPC_FAILURE_FAILED = 5,
    /// The global coordinator answered with a failed op_state (`detail`).
    SNAPC_FAILURE_REJECTED = 6,
    /// The handshake ended before the point the request waited for.
    SNAPC_FAILURE_NOT_REACHED = 7,
    /// A failure this header does not name yet.
    SNAPC_FAILURE_OTHER = 99,
}

/// An error of an application process's handshake or request.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_error_info {
    /// What was awaited (`snapc_wait`; `SNAPC_WAIT_NONE`: no error).
    pub wait: c_int,
    /// What went wrong (`snapc_failure`).
    pub failure: c_int,
    /// The op_state of `SNAPC_FAILURE_REJECTED`, else 0.
    pub detail: i32,
    /// The error in words, NUL-terminated ("" for none).
    pub text: [c_char; 128],
}

impl Default for snapc_error_info {
    fn default() -> Self {
        Self {
            wait: 0,
            failure: 0,
            detail: 0,
            text: [0; 128],
        }
    }
}

impl From<Option<AppError>> for snapc_error_info {
    fn from(e: Option<AppError>) -> Self {
        let mut info = Self::default();
        let Some(e) = e else {
            return info;
        };
        use snapc_failure::*;
        use snapc_wait::*;
        info.wait = match e.wait {
            Wait::Open => SNAPC_WAIT_OPEN,
            Wait::Options => SNAPC_WAIT_OPTIONS,
            Wait::Response => SNAPC_WAIT_RESPONSE,
            Wait::GoAhead => SNAPC_WAIT_GO_AHEAD,
            Wait::Location => SNAPC_WAIT_LOCATION,
            Wait::Prepare => SNAPC_WAIT_PREPARE,
            Wait::Stall => SNAPC_WAIT_STALL,
            Wait::Running => SNAPC_WAIT_RUNNING,
            Wait::Quiesced => SNAPC_WAIT_QUIESCED,
            Wait::EarlySync => SNAPC_WAIT_EARLY_SYNC,
            Wait::Checkpoint => SNAPC_WAIT_CHECKPOINT,
            Wait::Sync => SNAPC_WAIT_SYNC,
            Wait::FinalState => SNAPC_WAIT_FINAL_STATE,
            Wait::Release => SNAPC_WAIT_RELEASE,
            Wait::Recover => SNAPC_WAIT_RECOVER,
            Wait::Teardown => SNAPC_WAIT_TEARDOWN,
            Wait::OwnHandshake => SNAPC_WAIT_OWN_HANDSHAKE,
            Wait::OpResponse => SNAPC_WAIT_OP_RESPONSE,
            Wait::FinAck => SNAPC_WAIT_FIN_ACK,
            Wait::Global => SNAPC_WAIT_GLOBAL,
            _ => SNAPC_WAIT_OTHER,
        } as c_int;
        info.failure = match e.failure {
            WaitFailure::Deadline => SNAPC_FAILURE_DEADLINE,
            WaitFailure::PeerGone => SNAPC_FAILURE_PEER_GONE,
            WaitFailure::Io => SNAPC_FAILURE_IO,
            WaitFailure::Malformed(_) => SNAPC_FAILURE_MALFORMED,
            WaitFailure::Failed => SNAPC_FAILURE_FAILED,
            WaitFailure::Rejected(s) => {
                info.detail = s;
                SNAPC_FAILURE_REJECTED
            }
            WaitFailure::NotReached => SNAPC_FAILURE_NOT_REACHED,
            _ => SNAPC_FAILURE_OTHER,
        } as c_int;
        write_text(&mut info.text, format_args!("{e}"));
        info
    }
}

/// How one handshake of an application process ended (or reached quiesce).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_checkpoint_info {
    /// `SNAPC_OUTCOME_HANDSHAKE` or `SNAPC_OUTCOME_QUIESCED`.
    pub kind: c_int,
    /// The handshake's FIFO names (`names.n` is its number).
    pub names: snapc_names,
    /// What the process answered (`snapc_response`).
    pub response: c_int,
    /// Whether the options were read.
    pub has_options: c_int,
    /// The options, once read.
    pub options: snapc_fifo_options,
    /// The snapshot handle (0: none).
    pub handle: u32,
    /// The final state (`snapc_cr_state`): CONTINUE, TERM, RESTART or ERROR;
    /// NONE when the answer was not START; RUNNING when quiesced.
    pub state: c_int,
    /// 1 when the handshake ended without an error.
    pub ok: c_int,
    /// The error, if any.
    pub error: snapc_error_info,
    /// The stages' durations.
    pub stages: snapc_stages,
}

/// How an application request ended.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_request_info {
    /// The request (`snapc_op`).
    pub op: c_int,
    /// 1 when it succeeded.
    pub ok: c_int,
    /// The error, if any.
    pub error: snapc_error_info,
    /// This process is a restarted copy.
    pub restarted: c_int,
    /// This process is to be terminated.
    pub terminating: c_int,
    /// The global sequence number (-1: none).
    pub seq_num: i32,
    /// The global snapshot reference, NUL-terminated ("Unknown" when the
    /// store has none; empty when the request carries none).
    pub reference: [c_char; 129],
    /// From the request to its end, in microseconds.
    pub elapsed_us: u64,
}

/// Which report a `snapc_outcome` carries.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_outcome_kind {
    /// None.
    SNAPC_OUTCOME_NONE = 0,
    /// A handshake ended: `checkpoint`.
    SNAPC_OUTCOME_HANDSHAKE = 1,
    /// A prepare-only handshake quiesced the process: `checkpoint`.
    SNAPC_OUTCOME_QUIESCED = 2,
    /// A request ended: `request`.
    SNAPC_OUTCOME_REQUEST = 3,
}

/// A report of the app coordinator.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_outcome {
    /// `snapc_outcome_kind`.
    pub kind: c_int,
    /// For HANDSHAKE and QUIESCED.
    pub checkpoint: snapc_checkpoint_info,
    /// For REQUEST.
    pub request: snapc_request_info,
}

impl Default for snapc_checkpoint_info {
    fn default() -> Self {
        Self {
            kind: 0,
            names: snapc_names::default(),
            response: 0,
            has_options: 0,
            options: snapc_fifo_options::default(),
            handle: 0,
            state: 0,
            ok: 0,
            error: snapc_error_info::default(),
            stages: Stages::default().into(),
        }
    }
}

impl Default for snapc_request_info {
    fn default() -> Self {
        Self {
            op: 0,
            ok: 0,
            error: snapc_error_info::default(),
            restarted: 0,
            terminating: 0,
            seq_num: -1,
            reference: [0; 129],
            elapsed_us: 0,
        }
    }
}

impl From<&HandshakeReport> for snapc_checkpoint_info {
    fn from(r: &HandshakeReport) -> Self {
        Self {
            kind: snapc_outcome_kind::SNAPC_OUTCOME_HANDSHAKE as c_int,
            names: r.names.into(),
            response: r.response.code(),
            has_options: r.options.is_some().into(),
            options: r.options.map(Into::into).unwrap_or_default(),
            handle: r.handle,
            state: r.state.code(),
            ok: r.error.is_none().into(),
            error: r.error.into(),
            stages: r.stages.into(),
        }
    }
}

impl From<&RequestReport> for snapc_request_info {
    fn from(r: &RequestReport) -> Self {
        let mut info = Self {
            op: r.op.code(),
            ok: r.error.is_none().into(),
            error: r.error.into(),
            restarted: r.restarted.into(),
            terminating: r.terminating.into(),
            seq_num: r.seq_num,
            reference: [0; 129],
            elapsed_us: r.elapsed.as_micros(),
        };
        write_text(&mut info.reference, format_args!("{}", r.reference));
        info
    }
}

/// The C form of an outcome; `None` for a kind this ABI does not carry.
pub(crate) fn outcome_info(o: &Outcome) -> snapc_outcome {
    let mut out = snapc_outcome {
        kind: 0,
        checkpoint: snapc_checkpoint_info::default(),
        request: snapc_request_info::default(),
    };
    match o {
        Outcome::Handshake(r) => {
            out.kind = snapc_outcome_kind::SNAPC_OUTCOME_HANDSHAKE as c_int;
            out.checkpoint = r.into();
        }
        Outcome::Quiesced {
            names,
            handle,
            stages,
        } => {
            out.kind = snapc_outcome_kind::SNAPC_OUTCOME_QUIESCED as c_int;
            out.checkpoint = snapc_checkpoint_info {
                kind: out.kind,
                names: (*names).into(),
                handle: *handle,
                state: snapc_core::wire::CrState::Running.code(),
                ok: 1,
                stages: (*stages).into(),
                ..snapc_checkpoint_info::default()
            };
        }
        Outcome::Request(r) => {
            out.kind = snapc_outcome_kind::SNAPC_OUTCOME_REQUEST as c_int;
            out.request = r.into();
        }
        _ => {}
    }
    out
}

/// Checkpoint/restart states of a process (`cr_state` on the wire).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_cr_state {
    /// No state.
    SNAPC_CR_NONE = 0,
    /// Checkpointing.
    SNAPC_CR_CHECKPOINT = 1,
    /// Before restart.
    SNAPC_CR_RESTART_PRE = 2,
    /// A restarted copy.
    SNAPC_CR_RESTART = 3,
    /// Continues after its checkpoint.
    SNAPC_CR_CONTINUE = 4,
    /// Terminates after its checkpoint.
    SNAPC_CR_TERM = 5,
    /// Prepared only.
    SNAPC_CR_RUNNING = 6,
    /// Failed.
    SNAPC_CR_ERROR = 7,
}

/// A process's answer to the options (`response` on the wire).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_response {
    /// The checkpoint starts.
    SNAPC_RESPONSE_START = 0,
    /// One is already running in the process.
    SNAPC_RESPONSE_IN_PROGRESS = 1,
    /// The process cannot be checkpointed.
    SNAPC_RESPONSE_NULL = 2,
    /// An error prevents the checkpoint.
    SNAPC_RESPONSE_ERROR = 3,
}

/// Coordinator states (`ckpt_state` of ORTED_STATE and JOB_STATE).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_ckpt_state {
    /// Failed.
    SNAPC_CKPT_ERROR = 0,
    /// Nothing running.
    SNAPC_CKPT_NONE = 1,
    /// Requested.
    SNAPC_CKPT_REQUEST = 2,
    /// Pending.
    SNAPC_CKPT_PENDING = 3,
    /// Running.
    SNAPC_CKPT_RUNNING = 4,
    /// Prepared (quiesced).
    SNAPC_CKPT_INC_PREPED = 5,
    /// Stopped.
    SNAPC_CKPT_STOPPED = 6,
    /// Finished locally.
    SNAPC_CKPT_FINISHED_LOCAL = 7,
    /// Migrating.
    SNAPC_CKPT_MIGRATING = 8,
    /// Established.
    SNAPC_CKPT_ESTABLISHED = 9,
    /// Recovered.
    SNAPC_CKPT_RECOVERED = 10,
    /// No checkpoint taken.
    SNAPC_CKPT_NO_CKPT = 11,
    /// No restart.
    SNAPC_CKPT_NO_RESTART = 12,
}

/// How an I/O operation the caller carried out failed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_io_error {
    /// End of file, EPIPE, a hang-up, ESRCH: the peer is gone.
    SNAPC_IO_PEER_GONE = 0,
    /// Any other error.
    SNAPC_IO_FAILED = 1,
}

pub(crate) fn io_error(code: c_int) -> Option<snapc_core::IoError> {
    match code {
        0 => Some(snapc_core::IoError::PeerGone),
        1 => Some(snapc_core::IoError::Failed),
        _ => None,
    }
}

// --------------------------------------------------------------- helpers --

/// Writes `args` into `buf` as NUL-terminated text, cut at a character
/// boundary when it does not fit. Returns the full length (without NUL).
pub(crate) fn write_text(buf: &mut [c_char], args: core::fmt::Arguments<'_>) -> usize {
    struct W<'a> {
        buf: &'a mut [c_char],
        at: usize,
        full: usize,
    }
    impl core::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.full += s.len();
            let room = self.buf.len().saturating_sub(1).saturating_sub(self.at);
            let mut take = s.len().min(room);
            while take > 0 && !s.is_char_boundary(take) {
                take -= 1;
            }
            if let Some(dst) = self.buf.get_mut(self.at..self.at + take) {
                for (d, b) in dst.iter_mut().zip(s.bytes()) {
                    *d = b as c_char;
                }
                self.at += take;
            }
            if take < s.len() {
                // Nothing more fits: later pieces only count.
                self.at = self.buf.len().saturating_sub(1);
            }
            Ok(())
        }
    }
    let mut w = W {
        buf,
        at: 0,
        full: 0,
    };
    let _ = w.write_fmt(args);
    let at = w.at;
    let full = w.full;
    if let Some(nul) = w.buf.get_mut(at) {
        *nul = 0;
    }
    full
}

/// The caller's bytes: `len` bytes at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
/// `ptr` must be valid for `len` bytes if it is not NULL.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() || len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the caller's promise, checked for NULL and size above.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// The caller's UTF-8 text; `Ok(None)` for NULL.
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize) -> Result<Option<&'a str>, c_int> {
    if ptr.is_null() {
        return if len == 0 { Ok(None) } else { Err(E_INVAL) };
    }
    // SAFETY: the caller's promise.
    let b = unsafe { bytes(ptr, len) }.ok_or(E_INVAL)?;
    core::str::from_utf8(b).map(Some).map_err(|_| E_INVAL)
}

/// The caller's message buffer, when it has room for any message.
///
/// # Safety
/// `out` must be valid for `out_len` bytes if it is not NULL.
pub(crate) unsafe fn message_buf<'a>(
    out: *mut u8,
    out_len: usize,
) -> Result<&'a mut snapc_core::MessageBuf, c_int> {
    if out.is_null() {
        return Err(E_INVAL);
    }
    if out_len < SNAPC_MAX_MESSAGE_LEN {
        return Err(E_NOSPACE);
    }
    // SAFETY: `out` has at least MAX_MESSAGE_LEN bytes (the caller's
    // promise for `out_len`); a byte array has alignment 1.
    Ok(unsafe { &mut *out.cast::<snapc_core::MessageBuf>() })
}

pub(crate) fn instant(us: u64) -> Instant {
    Instant::from_micros(us)
}

/// Writes `value` through `out` when it is a valid pointer.
///
/// # Safety
/// `out` must be NULL or valid for writes of a `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) -> c_int {
    if out.is_null() || !out.is_aligned() {
        return E_INVAL;
    }
    // SAFETY: checked above; the caller's promise for the rest.
    unsafe { out.write(value) };
    OK
}

/// The flags that are on, or-ed together (a machine's state as bits).
pub(crate) fn bits<const N: usize>(flags: [(bool, c_int); N]) -> c_int {
    flags
        .into_iter()
        .filter(|&(on, _)| on)
        .fold(0, |bits, (_, flag)| bits | flag)
}

/// Runs `f` so that no panic unwinds into C.
pub(crate) fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(E_PANIC)
}

/// A slice in the caller's storage that a machine keeps (its storage type).
pub(crate) struct Raw<T> {
    ptr: NonNull<T>,
    len: usize,
}

impl<T> AsRef<[T]> for Raw<T> {
    fn as_ref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised elements of the
        // caller's storage, which outlives the machine (the ABI's rule).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> AsMut<[T]> for Raw<T> {
    fn as_mut(&mut self) -> &mut [T] {
        // SAFETY: as `as_ref`; the machine is the only user of its storage.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// Where a machine's parts go in the caller's storage: a header, then
/// arrays, each aligned.
pub(crate) struct Layout {
    /// Alignment of the whole (the largest part's).
    pub align: usize,
    /// Offsets of the arrays after the header, from the aligned start.
    pub offsets: [usize; 3],
    /// Bytes from the aligned start to the end.
    pub size: usize,
}

impl Layout {
    /// The layout of a header `H` and up to three arrays of
    /// `(element size, element alignment, count)`; `None` on overflow.
    pub fn of<H>(arrays: &[(usize, usize, usize)]) -> Option<Self> {
        let mut align = core::mem::align_of::<H>();
        let mut at = core::mem::size_of::<H>();
        let mut offsets = [0; 3];
        for (i, &(size, a, n)) in arrays.iter().enumerate() {
            align = align.max(a);
            at = at.checked_next_multiple_of(a)?;
            *offsets.get_mut(i)? = at;
            at = at.checked_add(size.checked_mul(n)?)?;
        }
        Some(Self {
            align,
            offsets,
            size: at,
        })
    }

    /// The storage a caller must give: room to align the start, then the parts.
    pub fn storage_size(&self) -> usize {
        self.size.checked_add(self.align - 1).unwrap_or(0)
    }

    /// The aligned start inside `storage` of `size` bytes, if it fits.
    pub fn place(&self, storage: *mut u8, size: usize) -> Result<*mut u8, c_int> {
        if storage.is_null() {
            return Err(E_INVAL);
        }
        let pad = storage.align_offset(self.align);
        if pad == usize::MAX || size < pad || size - pad < self.size {
            return Err(E_NOSPACE);
        }
        Ok(storage.wrapping_add(pad))
    }
}

/// The file name of one FIFO of handshake `n` of process `pid`, into `buf`
/// (`len` bytes; `SNAPC_MAX_FIFO_NAME_LEN + 1` is always enough) with its
/// NUL. `fifo`: `snapc_fifo`.
///
/// # Safety
/// `buf` must be valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_fifo_name(
    fifo: c_int,
    pid: u32,
    n: u32,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        let kind = match fifo {
            0 => FifoKind::ProgRead,
            1 => FifoKind::ProgWrite,
            _ => return E_INVAL,
        };
        if buf.is_null() || len > isize::MAX as usize {
            return E_INVAL;
        }
        let name = FifoName { kind, pid, n }.file_name();
        if name.len() >= len {
            return E_NOSPACE;
        }
        // SAFETY: the caller's promise for `len` bytes.
        let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
        write_text(out, format_args!("{name}"));
        OK
    })
}

/// Reads a C request into the core's form; the migrate entries go into `entries`.
///
/// # Safety
/// The request's pointers must be valid for their lengths.
pub(crate) unsafe fn request<'a>(
    req: &snapc_request,
    entries: &'a mut [MigrateEntry<'a>; SNAPC_MAX_MIGRATE_ENTRIES],
) -> Result<Request<'a>, c_int> {
    let op = OpEvent::from_code(req.op).ok_or(E_INVAL)?;
    Ok(match op {
        OpEvent::Restart => Request::Restart {
            seq_num: req.seq_num,
            // SAFETY: the caller's promise.
            handle: unsafe { text(req.handle, req.handle_len) }?,
        },
        OpEvent::Migrate => {
            if req.n_entries > SNAPC_MAX_MIGRATE_ENTRIES
                || (req.n_entries > 0 && (req.entries.is_null() || !req.entries.is_aligned()))
            {
                return Err(E_INVAL);
            }
            let given: &[snapc_migrate_entry] = if req.n_entries == 0 {
                &[]
            } else {
                // SAFETY: the caller's promise, checked for NULL, alignment
                // and count above.
                unsafe { core::slice::from_raw_parts(req.entries, req.n_entries) }
            };
            for (slot, e) in entries.iter_mut().zip(given) {
                *slot = MigrateEntry {
                    vpid: e.vpid,
                    // SAFETY: the caller's promise.
                    host: unsafe { text(e.host, e.host_len) }?,
                    vpid_pref: e.vpid_pref,
                    off_node: e.off_node != 0,
                };
            }
            Request::Migrate(snapc_core::wire::List::Items(
                entries.get(..given.len()).ok_or(E_INVAL)?,
            ))
        }
        other => Request::without_args(other).ok_or(E_INVAL)?,
    })
}

/// An empty migrate entry, to fill.
pub(crate) const NO_ENTRY: MigrateEntry<'static> = MigrateEntry {
    vpid: 0,
    host: None,
    vpid_pref: -1,
    off_node: false,
};

/// Encodes REQUEST_OP(`req`) for job `jobid` into `out` (`out_len` bytes)
/// and stores its length in `len`: what a rank sends its global
/// coordinator (a runtime's own INIT, say).
///
/// # Safety
/// `req` must point at a request whose pointers are valid for their
/// lengths; `out` must be valid for `out_len` bytes; `len` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_encode(
    jobid: u32,
    req: *const snapc_request,
    out: *mut u8,
    out_len: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        if req.is_null() || !req.is_aligned() || out.is_null() || len.is_null() {
            return E_INVAL;
        }
        if out_len > isize::MAX as usize {
            return E_INVAL;
        }
        let mut entries = [NO_ENTRY; SNAPC_MAX_MIGRATE_ENTRIES];
        // SAFETY: checked for NULL and alignment; the caller's promise.
        let request = match unsafe { request(&*req, &mut entries) } {
            Ok(r) => r,
            Err(e) => return e,
        };
        // SAFETY: the caller's promise for `out_len` bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(out, out_len) };
        match (RequestOp { jobid, request }).emit(buf) {
            // SAFETY: `len` checked for NULL; the caller's promise.
            Ok(n) => unsafe { put(len, n) },
            Err(_) => E_NOSPACE,
        }
    })
}

/// What a checkpoint hook returns.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_result {
    /// Checkpointed; the process continues.
    SNAPC_CONTINUE = 0,
    /// Checkpointed; the process is to terminate.
    SNAPC_TERM = 1,
    /// The checkpoint failed.
    SNAPC_ERROR = 2,
    /// This is a restarted copy of the process (its pid is the new one).
    SNAPC_RESTART = 3,
}

/// The core's checkpoint result for a `snapc_result` code.
pub(crate) fn checkpoint_result(
    code: c_int,
    restart_pid: u32,
) -> Option<snapc_core::app::CheckpointResult> {
    use snapc_core::app::CheckpointResult;
    Some(match code {
        0 => CheckpointResult::Continue,
        1 => CheckpointResult::Term,
        2 => CheckpointResult::Error,
        3 => CheckpointResult::Restart { pid: restart_pid },
        _ => return None,
    })
}
