//! `snapc_ac_*`: the app coordinator (the protocol's part inside an
//! application process) in the caller's storage, for runtimes that move the
//! handshake's bytes themselves (no FIFOs of snapc's, no signal handler of
//! snapc's). Applications on POSIX use `snapc_start` instead.

use super::handle::{self, Header, Kind};
use super::{
    E_INVAL, NO_ENTRY, OK, SNAPC_MAX_MIGRATE_ENTRIES, bits, guard, instant, io_error, outcome_info,
    put, snapc_fifo_options, snapc_names, snapc_outcome, snapc_request, snapc_status,
};
use core::ffi::{c_char, c_int};
use snapc_core::app::{
    Action, AppCoordinator, AppDeadlines, CheckpointFlag, Config, CrsName, FlagRequest, FrameKind,
    HostError, InputError, PrepareResult, SstoreOp,
};
use snapc_core::time::Duration;
use snapc_core::wire::ProcessName;

/// An app coordinator in the caller's storage (opaque).
pub struct snapc_ac {
    _opaque: [u8; 0],
}

/// How long each wait of the app coordinator may last, in microseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_ac_deadlines {
    /// Creating and opening both FIFOs.
    pub open_us: u64,
    /// Each read of a frame, except the release.
    pub read_us: u64,
    /// Each write of a frame.
    pub write_us: u64,
    /// A stalled prepare.
    pub stall_us: u64,
    /// Each call carried out for the machine (hooks, store, teardown).
    pub host_us: u64,
    /// The release.
    pub release_us: u64,
    /// A leader's own handshake after its request; the quiesce after QUIESCE_START.
    pub own_handshake_us: u64,
    /// The global coordinator's answer.
    pub op_response_us: u64,
    /// FIN_ACK.
    pub fin_ack_us: u64,
}

/// The app coordinator's configuration. `snapc_ac_config_default` fills it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_ac_config {
    /// This process's pid (part of the FIFO names).
    pub pid: u32,
    /// This process's name.
    pub name: super::snapc_name,
    /// 1: this rank sends the job's requests (rank 0 for INIT and FIN).
    pub leader: c_int,
    /// 1: the application can be checkpointed (else it answers NULL).
    pub checkpointer: c_int,
    /// 1: both sides are built with checkpoint debugging.
    pub debug: c_int,
    /// The deadlines.
    pub deadlines: snapc_ac_deadlines,
}

/// Fills `config` for process `pid` named `name` with the default deadlines,
/// a checkpointer, no debugging; the leader is rank 0.
///
/// # Safety
/// `config` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_config_default(
    config: *mut snapc_ac_config,
    pid: u32,
    name: super::snapc_name,
) -> c_int {
    guard(|| {
        let d = AppDeadlines::default();
        let c = snapc_ac_config {
            pid,
            name,
            leader: (name.vpid == 0).into(),
            checkpointer: 1,
            debug: 0,
            deadlines: snapc_ac_deadlines {
                open_us: d.open.as_micros(),
                read_us: d.read.as_micros(),
                write_us: d.write.as_micros(),
                stall_us: d.stall.as_micros(),
                host_us: d.host.as_micros(),
                release_us: d.release.as_micros(),
                own_handshake_us: d.own_handshake.as_micros(),
                op_response_us: d.op_response.as_micros(),
                fin_ack_us: d.fin_ack.as_micros(),
            },
        };
        // SAFETY: the caller's promise; checked for NULL.
        unsafe { put(config, c) }
    })
}

impl From<&snapc_ac_config> for Config {
    fn from(c: &snapc_ac_config) -> Self {
        let d = Duration::from_micros;
        let dl = &c.deadlines;
        Config {
            pid: c.pid,
            name: ProcessName {
                jobid: c.name.jobid,
                vpid: c.name.vpid,
            },
            leader: c.leader != 0,
            checkpointer: c.checkpointer != 0,
            debug: c.debug != 0,
            deadlines: AppDeadlines {
                open: d(dl.open_us),
                read: d(dl.read_us),
                write: d(dl.write_us),
                stall: d(dl.stall_us),
                host: d(dl.host_us),
                release: d(dl.release_us),
                own_handshake: d(dl.own_handshake_us),
                op_response: d(dl.op_response_us),
                fin_ack: d(dl.fin_ack_us),
            },
        }
    }
}

/// What an action asks (`snapc_ac_action.kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_ac_action_kind {
    /// Create both FIFOs of `names` (private directory, 0600, checked), open
    /// `prog_read` read-write, then `prog_write` write-only; answer
    /// `snapc_ac_opened` or `snapc_ac_io_error`.
    SNAPC_AC_OPEN_CHANNEL = 1,
    /// Read exactly `len` bytes (frame `frame`) from `prog_read`; answer
    /// `snapc_ac_read` or `snapc_ac_io_error`.
    SNAPC_AC_READ = 2,
    /// Write the `len` bytes of `bytes` (frame `frame`) to `prog_write`;
    /// answer `snapc_ac_write_done` or `snapc_ac_io_error`.
    SNAPC_AC_WRITE = 3,
    /// Run the application's prepare; answer `snapc_ac_prepared`.
    SNAPC_AC_PREPARE = 4,
    /// Run the application's checkpoint of snapshot `handle` with
    /// `options`; answer `snapc_ac_checkpointed`.
    SNAPC_AC_CHECKPOINT = 5,
    /// Run the application's recover with `state`; answer `snapc_ac_recovered`.
    SNAPC_AC_RECOVER = 6,
    /// A store operation `sstore` (`snapc_ac_sstore_op`) on `handle`;
    /// READ_LOCATION and SYNC are answered by `snapc_ac_sstore_done`,
    /// READ_GLOBAL by `snapc_ac_sstore_global`, the others not at all.
    SNAPC_AC_SSTORE = 7,
    /// Send the first `len` bytes of the message buffer to the node daemon
    /// (LOCAL_FINISH, LOCAL_UPDATE).
    SNAPC_AC_SEND_TO_DAEMON = 8,
    /// Close both ends of the channel of `names`.
    SNAPC_AC_CLOSE = 9,
    /// Unlink both FIFOs of `names`; once the teardown's actions are done,
    /// `snapc_ac_teardown_done`.
    SNAPC_AC_UNLINK = 10,
    /// The process is to be terminated: stop making progress and wait.
    SNAPC_AC_AWAIT_TERMINATION = 11,
    /// A report: `outcome`.
    SNAPC_AC_OUTCOME = 12,
    /// An action this header does not know yet: ignore it.
    SNAPC_AC_OTHER = 99,
}

/// The FIFO frames of the handshake (`snapc_ac_action.frame`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_frame {
    /// Read: the options and handle.
    SNAPC_FRAME_OPTIONS = 1,
    /// Written: the response.
    SNAPC_FRAME_RESPONSE = 2,
    /// Read: the go-ahead.
    SNAPC_FRAME_GO_AHEAD = 3,
    /// Written: RUNNING after prepare-only.
    SNAPC_FRAME_RUNNING = 4,
    /// Written: the final state.
    SNAPC_FRAME_FINAL_STATE = 5,
    /// Read: the release.
    SNAPC_FRAME_RELEASE = 6,
}

/// Store operations (`snapc_ac_action.sstore`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_ac_sstore_op {
    /// Register the handle and create the local snapshot. No answer.
    SNAPC_SSTORE_REGISTER = 1,
    /// Mark "skip this checkpoint". No answer.
    SNAPC_SSTORE_SET_SKIP = 2,
    /// Read the snapshot's location; answer `snapc_ac_sstore_done`.
    SNAPC_SSTORE_READ_LOCATION = 3,
    /// Record the session directory. No answer.
    SNAPC_SSTORE_SET_SESSION_DIR = 4,
    /// Record the checkpointer's name (`crs_empty_if_none`: 1 for "empty
    /// unless one is recorded"). No answer.
    SNAPC_SSTORE_SET_CRS_NAME = 5,
    /// Sync the snapshot; answer `snapc_ac_sstore_done`.
    SNAPC_SSTORE_SYNC = 6,
    /// Read the global sequence number and reference; answer
    /// `snapc_ac_sstore_global`.
    SNAPC_SSTORE_READ_GLOBAL = 7,
}

/// An action of the app coordinator; the fields its kind names are set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_ac_action {
    /// `snapc_ac_action_kind`.
    pub kind: c_int,
    /// OPEN_CHANNEL, CLOSE, UNLINK: the FIFO names.
    pub names: snapc_names,
    /// READ, WRITE: the frame (`snapc_frame`).
    pub frame: c_int,
    /// READ: the length to read; WRITE: the length of `bytes`;
    /// SEND_TO_DAEMON: the message's length in the message buffer.
    pub len: usize,
    /// WRITE: the frame's bytes (host order).
    pub bytes: [u8; 4],
    /// CHECKPOINT, SSTORE: the snapshot handle.
    pub handle: u32,
    /// CHECKPOINT: the options.
    pub options: snapc_fifo_options,
    /// RECOVER: the state to recover with (`snapc_cr_state`).
    pub state: c_int,
    /// SSTORE: the operation (`snapc_ac_sstore_op`).
    pub sstore: c_int,
    /// SSTORE SET_CRS_NAME: 1 for "empty unless one is recorded".
    pub crs_empty_if_none: c_int,
    /// OUTCOME: the report.
    pub outcome: snapc_outcome,
}

/// What `snapc_ac_signal` did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_flag_request {
    /// Recorded; the next progress point acts on it.
    SNAPC_FLAG_REQUESTED = 0,
    /// One was already pending; the two are one.
    SNAPC_FLAG_ALREADY_REQUESTED = 1,
    /// A checkpoint runs: counted as ignored.
    SNAPC_FLAG_ALREADY_CHECKPOINTING = 2,
}

/// The app coordinator's answers to the host's calls (prepare).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_prepare_result {
    /// Prepared.
    SNAPC_PREPARE_READY = 0,
    /// Not now: try again at a later progress point.
    SNAPC_PREPARE_NOT_NOW = 1,
    /// Failed.
    SNAPC_PREPARE_FAILED = 2,
}

/// The app coordinator's kind of handle: its flag is the shared part (a
/// signal handler sets it during any other call).
impl Kind for snapc_ac {
    const MAGIC: u64 = 0x736e_6170_635f_6163; // "snapc_ac"
    type Shared = CheckpointFlag;
    type Machine = AppCoordinator<'static>;
    type Error = InputError;

    fn status(e: InputError) -> c_int {
        use snapc_status::*;
        (match e {
            InputError::Unexpected => SNAPC_E_UNEXPECTED,
            InputError::Decode(_) => SNAPC_E_DECODE,
            InputError::Unsupported(_) => SNAPC_E_INVAL,
            InputError::Busy(_) => SNAPC_E_BUSY,
            InputError::Encode(_) => SNAPC_E_NOSPACE,
            _ => SNAPC_E_REFUSED,
        }) as c_int
    }
}

/// The flag of a live handle (only ever shared).
fn flag<'a>(ac: *const snapc_ac) -> Option<&'a CheckpointFlag> {
    // SAFETY: a live header; the flag is never borrowed mutably.
    handle::header(ac).map(|h| unsafe { &*core::ptr::addr_of!((*h).shared) })
}

/// The bytes of storage an app coordinator needs (any alignment).
#[unsafe(no_mangle)]
pub extern "C" fn snapc_ac_storage_size() -> usize {
    core::mem::size_of::<Header<snapc_ac>>() + core::mem::align_of::<Header<snapc_ac>>() - 1
}

/// Initialises an app coordinator for `config` in `storage` (`size` bytes,
/// at least `snapc_ac_storage_size()`) and stores its handle in `ac`. The
/// storage must stay in place until `snapc_ac_fini`.
///
/// # Safety
/// `storage` valid for writes of `size` bytes; `config` valid; `ac` valid
/// for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_init(
    storage: *mut u8,
    size: usize,
    config: *const snapc_ac_config,
    ac: *mut *mut snapc_ac,
) -> c_int {
    guard(|| {
        if ac.is_null() || !ac.is_aligned() || config.is_null() || !config.is_aligned() {
            return E_INVAL;
        }
        let Some(l) = super::Layout::of::<Header<snapc_ac>>(&[]) else {
            return E_INVAL;
        };
        let base = match l.place(storage, size) {
            Ok(b) => b,
            Err(e) => return e,
        };
        // SAFETY: checked for NULL and alignment; the caller's promise.
        let config = Config::from(unsafe { &*config });
        let h = base.cast::<Header<snapc_ac>>();
        // SAFETY: `h` is aligned and inside the caller's storage, which
        // stays in place (the ABI's rule) while the machine borrows the flag.
        unsafe {
            handle::init(h, CheckpointFlag::new(), |flag| {
                AppCoordinator::new(config, flag)
            });
            ac.write(h.cast());
        }
        OK
    })
}

/// Ends the coordinator; the storage is the caller's again.
///
/// # Safety
/// `ac` a handle from `snapc_ac_init` (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_fini(ac: *mut snapc_ac) -> c_int {
    handle::fini(ac)
}

/// Records a checkpoint request made at `now_us` (the checkpoint signal
/// arrived). Async-signal-safe: call it from the signal handler. Returns a
/// `snapc_flag_request`, or `SNAPC_E_INVAL`.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_signal(ac: *const snapc_ac, now_us: u64) -> c_int {
    use snapc_flag_request::*;
    let Some(flag) = flag(ac) else {
        return E_INVAL;
    };
    // Atomics only: no lock, no allocation, no unwinding possible.
    (match flag.request_at(instant(now_us)) {
        FlagRequest::Requested => SNAPC_FLAG_REQUESTED,
        FlagRequest::AlreadyRequested => SNAPC_FLAG_ALREADY_REQUESTED,
        FlagRequest::AlreadyCheckpointing => SNAPC_FLAG_ALREADY_CHECKPOINTING,
    }) as c_int
}

/// Whether a checkpoint request waits for the next progress point (1 or 0):
/// one atomic load.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_pending(ac: *const snapc_ac) -> c_int {
    flag(ac).map_or(E_INVAL, |f| f.is_requested().into())
}

/// The application's progress point: acts on a pending request, or resumes
/// a stalled prepare.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_progress(ac: *mut snapc_ac, now_us: u64) -> c_int {
    handle::tell(ac, |m| m.handle_progress(instant(now_us)))
}

/// Answer to OPEN_CHANNEL: both FIFOs are open.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_opened(ac: *mut snapc_ac, now_us: u64) -> c_int {
    handle::input(ac, |m| m.handle_opened(instant(now_us)))
}

/// Answer to READ: the frame's bytes.
///
/// # Safety
/// `ac` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_read(
    ac: *mut snapc_ac,
    now_us: u64,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::input_bytes(ac, bytes, len, |m, b| m.handle_read(instant(now_us), b)) }
}

/// Answer to WRITE: every byte is written.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_write_done(ac: *mut snapc_ac, now_us: u64) -> c_int {
    handle::input(ac, |m| m.handle_write_done(instant(now_us)))
}

/// A FIFO operation failed (`error`: `snapc_io_error`).
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_io_error(ac: *mut snapc_ac, now_us: u64, error: c_int) -> c_int {
    let Some(e) = io_error(error) else {
        return E_INVAL;
    };
    handle::input(ac, |m| m.handle_io_error(instant(now_us), e))
}

/// Answer to PREPARE (`result`: `snapc_prepare_result`).
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_prepared(ac: *mut snapc_ac, now_us: u64, result: c_int) -> c_int {
    let r = match result {
        0 => PrepareResult::Ready,
        1 => PrepareResult::NotNow,
        2 => PrepareResult::Failed,
        _ => return E_INVAL,
    };
    handle::input(ac, |m| m.handle_prepare(instant(now_us), r))
}

/// Answer to CHECKPOINT (`result`: `snapc_result`; for SNAPC_RESTART,
/// `restart_pid` is the restarted copy's pid).
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_checkpointed(
    ac: *mut snapc_ac,
    now_us: u64,
    result: c_int,
    restart_pid: u32,
) -> c_int {
    let Some(r) = super::checkpoint_result(result, restart_pid) else {
        return E_INVAL;
    };
    handle::input(ac, |m| m.handle_checkpoint(instant(now_us), r))
}

fn host(ok: c_int) -> Result<(), HostError> {
    if ok != 0 { Ok(()) } else { Err(HostError) }
}

/// Answer to RECOVER (`ok`: 1 recovered, 0 failed).
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_recovered(ac: *mut snapc_ac, now_us: u64, ok: c_int) -> c_int {
    handle::input(ac, |m| m.handle_recovered(instant(now_us), host(ok)))
}

/// Answer to SSTORE READ_LOCATION or SYNC (`ok`: 1 done, 0 failed).
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_sstore_done(ac: *mut snapc_ac, now_us: u64, ok: c_int) -> c_int {
    handle::input(ac, |m| m.handle_sstore(instant(now_us), host(ok)))
}

/// Answer to SSTORE READ_GLOBAL: the sequence number (`has_seq` 0: none)
/// and the reference (`reference_len` bytes of UTF-8; NULL: none).
///
/// # Safety
/// `ac` a handle; `reference` valid for `reference_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_sstore_global(
    ac: *mut snapc_ac,
    now_us: u64,
    has_seq: c_int,
    seq: i32,
    reference: *const u8,
    reference_len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    let reference = match unsafe { super::text(reference, reference_len) } {
        Ok(r) => r,
        Err(e) => return e,
    };
    let seq = (has_seq != 0).then_some(seq);
    handle::input(ac, |m| {
        m.handle_sstore_global(instant(now_us), seq, reference)
    })
}

/// The teardown's actions (finish message, close, unlink) are done.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_teardown_done(ac: *mut snapc_ac, now_us: u64) -> c_int {
    handle::input(ac, |m| m.handle_teardown_done(instant(now_us)))
}

/// The link to the global coordinator (through the node daemon) is gone.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_gc_gone(ac: *mut snapc_ac, now_us: u64) -> c_int {
    handle::input(ac, |m| m.handle_gc_gone(instant(now_us)))
}

/// The bytes of a message from the global coordinator (OP response, FIN_ACK).
///
/// # Safety
/// `ac` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_gc_message(
    ac: *mut snapc_ac,
    now_us: u64,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        handle::input_bytes(ac, bytes, len, |m, b| {
            m.handle_gc_message(instant(now_us), b)
        })
    }
}

/// Time passed: call at (or after) the instant from `snapc_ac_poll_timeout`.
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_timeout(ac: *mut snapc_ac, now_us: u64) -> c_int {
    handle::tell(ac, |m| m.handle_timeout(instant(now_us)))
}

/// An application request: the REQUEST_OP this rank sends to the global
/// coordinator goes into `out` (`out_len` bytes) and its length into
/// `written` (0: this rank sends nothing). The request ends with an OUTCOME
/// action.
///
/// # Safety
/// `ac` a handle; `req` valid with its pointers; `out` valid for `out_len`
/// bytes; `written` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_request(
    ac: *mut snapc_ac,
    now_us: u64,
    req: *const snapc_request,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> c_int {
    if req.is_null()
        || !req.is_aligned()
        || out.is_null()
        || out_len > isize::MAX as usize
        || written.is_null()
        || !written.is_aligned()
    {
        return E_INVAL;
    }
    let mut entries = [NO_ENTRY; SNAPC_MAX_MIGRATE_ENTRIES];
    // SAFETY: checked for NULL and alignment; the caller's promise.
    let request = match unsafe { super::request(&*req, &mut entries) } {
        Ok(r) => r,
        Err(e) => return e,
    };
    // SAFETY: the caller's promise for `out_len` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(out, out_len) };
    handle::with(ac, |m| {
        let n = m.request(instant(now_us), request, buf)?;
        // SAFETY: checked for NULL and alignment; the caller's promise.
        unsafe { written.write(n) };
        Ok(OK)
    })
}

/// The next action into `action`: returns 1, or 0 when there is none. A
/// message goes into `out` (`out_len` >= `SNAPC_MAX_MESSAGE_LEN`).
///
/// # Safety
/// `ac` a handle; `action` valid for a write; `out` for `out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_poll_action(
    ac: *mut snapc_ac,
    action: *mut snapc_ac_action,
    out: *mut u8,
    out_len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::poll_action(ac, action, out, out_len, |m, b| m.poll_action(b), convert) }
}

fn frame(f: FrameKind) -> c_int {
    use snapc_frame::*;
    (match f {
        FrameKind::Options => SNAPC_FRAME_OPTIONS,
        FrameKind::Response => SNAPC_FRAME_RESPONSE,
        FrameKind::GoAhead => SNAPC_FRAME_GO_AHEAD,
        FrameKind::Running => SNAPC_FRAME_RUNNING,
        FrameKind::FinalState => SNAPC_FRAME_FINAL_STATE,
        FrameKind::Release => SNAPC_FRAME_RELEASE,
    }) as c_int
}

fn convert(a: Action) -> snapc_ac_action {
    use snapc_ac_action_kind::*;
    use snapc_ac_sstore_op::*;
    let mut out = snapc_ac_action {
        kind: 0,
        names: snapc_names::default(),
        frame: 0,
        len: 0,
        bytes: [0; 4],
        handle: 0,
        options: snapc_fifo_options::default(),
        state: 0,
        sstore: 0,
        crs_empty_if_none: 0,
        outcome: outcome_info(&snapc_core::app::Outcome::Quiesced {
            names: snapc_core::wire::ChannelNames { pid: 0, n: 0 },
            handle: 0,
            stages: Default::default(),
        }),
    };
    out.outcome.kind = 0;
    out.outcome.checkpoint.kind = 0;
    out.kind = match a {
        Action::OpenChannel { names } => {
            out.names = names.into();
            SNAPC_AC_OPEN_CHANNEL
        }
        Action::Read { frame: f, len } => {
            (out.frame, out.len) = (frame(f), len);
            SNAPC_AC_READ
        }
        Action::Write { frame: f, bytes } => {
            (out.frame, out.len, out.bytes) = (frame(f), bytes.len(), bytes);
            SNAPC_AC_WRITE
        }
        Action::Prepare => SNAPC_AC_PREPARE,
        Action::Checkpoint { handle, options } => {
            (out.handle, out.options) = (handle, options.into());
            SNAPC_AC_CHECKPOINT
        }
        Action::Recover { state } => {
            out.state = state.code();
            SNAPC_AC_RECOVER
        }
        Action::Sstore(op) => {
            let (code, handle) = match op {
                SstoreOp::Register { handle } => (SNAPC_SSTORE_REGISTER, handle),
                SstoreOp::SetSkip { handle } => (SNAPC_SSTORE_SET_SKIP, handle),
                SstoreOp::ReadLocation { handle } => (SNAPC_SSTORE_READ_LOCATION, handle),
                SstoreOp::SetSessionDir { handle } => (SNAPC_SSTORE_SET_SESSION_DIR, handle),
                SstoreOp::SetCrsName { handle, name } => {
                    out.crs_empty_if_none = (name == CrsName::EmptyIfNone).into();
                    (SNAPC_SSTORE_SET_CRS_NAME, handle)
                }
                SstoreOp::Sync { handle } => (SNAPC_SSTORE_SYNC, handle),
                SstoreOp::ReadGlobal { handle } => (SNAPC_SSTORE_READ_GLOBAL, handle),
            };
            (out.sstore, out.handle) = (code as c_int, handle);
            SNAPC_AC_SSTORE
        }
        Action::SendToDaemon { len } => {
            out.len = len;
            SNAPC_AC_SEND_TO_DAEMON
        }
        Action::Close { names } => {
            out.names = names.into();
            SNAPC_AC_CLOSE
        }
        Action::Unlink { names } => {
            out.names = names.into();
            SNAPC_AC_UNLINK
        }
        Action::AwaitTermination => SNAPC_AC_AWAIT_TERMINATION,
        Action::Outcome(o) => {
            out.outcome = outcome_info(&o);
            SNAPC_AC_OUTCOME
        }
        _ => SNAPC_AC_OTHER,
    } as c_int;
    out
}

/// The next deadline: returns 1 and stores it in `deadline_us`, or 0 when
/// nothing waits with a deadline.
///
/// # Safety
/// `ac` a handle; `deadline_us` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_poll_timeout(
    ac: *const snapc_ac,
    deadline_us: *mut u64,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::poll_timeout(ac, deadline_us, |m| m.poll_timeout()) }
}

/// What the app coordinator is doing (flags of `snapc_ac_state`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_ac_state_flag {
    /// No handshake, no request.
    SNAPC_AC_IDLE = 1,
    /// A handshake runs (quiesced included).
    SNAPC_AC_CHECKPOINTING = 2,
    /// A prepare-only handshake holds the process quiesced.
    SNAPC_AC_QUIESCED = 4,
    /// The process waits to be terminated.
    SNAPC_AC_TERMINATING = 8,
}

/// The machine's state as `snapc_ac_state_flag` bits (or a negative status).
///
/// # Safety
/// `ac` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_state(ac: *const snapc_ac) -> c_int {
    use snapc_ac_state_flag::*;
    handle::query(ac, |m| {
        bits([
            (m.is_idle(), SNAPC_AC_IDLE as c_int),
            (m.is_checkpointing(), SNAPC_AC_CHECKPOINTING as c_int),
            (m.is_quiesced(), SNAPC_AC_QUIESCED as c_int),
            (m.is_terminating(), SNAPC_AC_TERMINATING as c_int),
        ])
    })
}

/// The FIFO names of the current (or next) handshake, into `names`.
///
/// # Safety
/// `ac` a handle; `names` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_names(ac: *const snapc_ac, names: *mut snapc_names) -> c_int {
    // SAFETY: the caller's promise.
    handle::query(ac, |m| unsafe { put(names, m.names().into()) })
}

/// Why the last input was refused, NUL-terminated into `buf` (`len` bytes,
/// cut if needed). Returns the text's full length.
///
/// # Safety
/// `ac` a handle; `buf` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_ac_last_error(
    ac: *const snapc_ac,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::last_error(ac, buf, len) }
}
