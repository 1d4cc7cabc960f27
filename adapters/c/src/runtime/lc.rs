//! `snapc_lc_*`: the local coordinator (the node daemon's side of the FIFO
//! handshake for one job's processes on one node) in the caller's storage.

use super::handle::{self, Header, Kind};
use super::{
    E_INVAL, E_NOSPACE, Layout, OK, Raw, guard, instant, io_error, put, snapc_name, snapc_names,
    snapc_status, write_text,
};
use core::ffi::{c_char, c_int};
use core::ptr::NonNull;
use snapc_core::local::{
    Action, Config, InputError, LocalCoordinator, LocalDeadlines, Mode, Phase, ProcessFailure,
    ProcessOutcome, ProcessSlot, SlotId, Stage,
};
use snapc_core::time::Duration;
use snapc_core::wire::{Debugger, ProcessName};

/// A local coordinator in the caller's storage (opaque).
pub struct snapc_lc {
    _opaque: [u8; 0],
}

/// A slot of the process table, as actions name it: the index in the
/// storage and its generation (which changes with each process, pid and
/// handshake, so that an answer meant for an earlier one is refused).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct snapc_slot {
    /// The index.
    pub index: u32,
    /// The generation.
    pub generation: u32,
}

impl From<SlotId> for snapc_slot {
    fn from(s: SlotId) -> Self {
        Self {
            index: u32::try_from(s.index()).unwrap_or(u32::MAX),
            generation: s.generation(),
        }
    }
}

impl From<snapc_slot> for SlotId {
    fn from(s: snapc_slot) -> Self {
        SlotId::from_parts(s.index, s.generation)
    }
}

/// The local coordinator's deadlines, in microseconds, and the debugger
/// fields of the options frame. `snapc_lc_config_default` fills it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_lc_config {
    /// From the signal until both FIFO names exist.
    pub fifos_us: u64,
    /// Opening both FIFOs.
    pub open_us: u64,
    /// Each write (options, go-ahead, release).
    pub write_us: u64,
    /// Reading the response.
    pub response_us: u64,
    /// Reading the final state (the application's prepare and checkpoint).
    pub final_state_us: u64,
    /// With `stop`, until the process has stopped.
    pub stop_us: u64,
    /// The global coordinator's verdict.
    pub verdict_us: u64,
    /// Quiesced, until quiesce end.
    pub quiesced_us: u64,
    /// 1: both sides are built with checkpoint debugging (the options
    /// frame carries the two debugger words below).
    pub debugger: c_int,
    /// Attach a debugger.
    pub attach_debugger: c_int,
    /// Detach it.
    pub detach_debugger: c_int,
}

impl From<&snapc_lc_config> for Config {
    fn from(c: &snapc_lc_config) -> Self {
        let d = Duration::from_micros;
        Config {
            deadlines: LocalDeadlines {
                fifos: d(c.fifos_us),
                open: d(c.open_us),
                write: d(c.write_us),
                response: d(c.response_us),
                final_state: d(c.final_state_us),
                stop: d(c.stop_us),
                verdict: d(c.verdict_us),
                quiesced: d(c.quiesced_us),
            },
            debugger: (c.debugger != 0).then_some(Debugger {
                attach: c.attach_debugger != 0,
                detach: c.detach_debugger != 0,
            }),
        }
    }
}

/// Fills `config` with the defaults (Open MPI's 20 s waits, an hour for the
/// final state, 75 minutes for the verdict; no debugger fields).
///
/// # Safety
/// `config` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_config_default(config: *mut snapc_lc_config) -> c_int {
    guard(|| {
        let d = LocalDeadlines::default();
        let c = snapc_lc_config {
            fifos_us: d.fifos.as_micros(),
            open_us: d.open.as_micros(),
            write_us: d.write.as_micros(),
            response_us: d.response.as_micros(),
            final_state_us: d.final_state.as_micros(),
            stop_us: d.stop.as_micros(),
            verdict_us: d.verdict.as_micros(),
            quiesced_us: d.quiesced.as_micros(),
            debugger: 0,
            attach_debugger: 0,
            detach_debugger: 0,
        };
        // SAFETY: the caller's promise; checked for NULL.
        unsafe { put(config, c) }
    })
}

/// What an action asks (`snapc_lc_action.kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_lc_action_kind {
    /// Send the checkpoint signal to `pid`; if it cannot be delivered,
    /// answer `snapc_lc_io_error`.
    SNAPC_LC_SIGNAL = 1,
    /// Watch until both FIFOs of `names` exist in the pipe directory;
    /// answer `snapc_lc_fifos_exist`.
    SNAPC_LC_WATCH_FIFOS = 2,
    /// Open `prog_read` write-only and `prog_write` read-only; answer
    /// `snapc_lc_opened`.
    SNAPC_LC_OPEN_FIFOS = 3,
    /// Write the `len` bytes of `bytes` to the slot's `prog_read`; answer
    /// `snapc_lc_written`.
    SNAPC_LC_WRITE = 4,
    /// Read exactly `len` bytes from the slot's `prog_write`; answer
    /// `snapc_lc_read`.
    SNAPC_LC_READ = 5,
    /// Wait until `pid` has stopped; answer `snapc_lc_stopped`.
    SNAPC_LC_WAIT_STOPPED = 6,
    /// Abandon whatever is pending for the slot and close its FIFO ends.
    SNAPC_LC_CLOSE = 7,
    /// Send the first `len` bytes of the message buffer to the global
    /// coordinator (ORTED_STATE).
    SNAPC_LC_SEND_TO_GC = 8,
    /// A process's result for this checkpoint: `report`.
    SNAPC_LC_REPORT = 9,
    /// An action this header does not know yet: ignore it.
    SNAPC_LC_OTHER = 99,
}

/// Why a process failed (`snapc_lc_report.failure`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_lc_failure {
    /// It did not fail.
    SNAPC_LC_FAILURE_NONE = 0,
    /// The stage's deadline passed.
    SNAPC_LC_FAILURE_TIMEOUT = 1,
    /// The process went away.
    SNAPC_LC_FAILURE_PEER_GONE = 2,
    /// It answered other than START (`detail`: its `snapc_response`).
    SNAPC_LC_FAILURE_REFUSED = 3,
    /// A frame did not decode.
    SNAPC_LC_FAILURE_MALFORMED = 4,
    /// A state that does not fit (`detail`: the `snapc_cr_state`).
    SNAPC_LC_FAILURE_UNEXPECTED_STATE = 5,
    /// Quiesce end found no open channel.
    SNAPC_LC_FAILURE_NOT_QUIESCED = 6,
    /// Removed from the table during its handshake.
    SNAPC_LC_FAILURE_REMOVED = 7,
    /// It reported a new pid during its handshake.
    SNAPC_LC_FAILURE_RESTARTED = 8,
    /// The global coordinator ended the checkpoint with ERROR.
    SNAPC_LC_FAILURE_ABORTED = 9,
    /// A failure this header does not name yet.
    SNAPC_LC_FAILURE_OTHER = 99,
}

/// A step of the handshake (`snapc_lc_report.stage`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_lc_stage {
    /// No stage.
    SNAPC_LC_STAGE_NONE = 0,
    /// Waiting for the FIFO names.
    SNAPC_LC_STAGE_FIFOS = 1,
    /// Opening the FIFOs.
    SNAPC_LC_STAGE_OPEN = 2,
    /// Writing the options.
    SNAPC_LC_STAGE_OPTIONS = 3,
    /// Reading the response.
    SNAPC_LC_STAGE_RESPONSE = 4,
    /// Writing the go-ahead.
    SNAPC_LC_STAGE_GO_AHEAD = 5,
    /// Reading the final state.
    SNAPC_LC_STAGE_FINAL_STATE = 6,
    /// Waiting for the stop.
    SNAPC_LC_STAGE_STOP = 7,
    /// Writing the release.
    SNAPC_LC_STAGE_RELEASE = 8,
}

fn stage(s: Stage) -> c_int {
    use snapc_lc_stage::*;
    (match s {
        Stage::Fifos => SNAPC_LC_STAGE_FIFOS,
        Stage::Open => SNAPC_LC_STAGE_OPEN,
        Stage::Options => SNAPC_LC_STAGE_OPTIONS,
        Stage::Response => SNAPC_LC_STAGE_RESPONSE,
        Stage::GoAhead => SNAPC_LC_STAGE_GO_AHEAD,
        Stage::FinalState => SNAPC_LC_STAGE_FINAL_STATE,
        Stage::Stop => SNAPC_LC_STAGE_STOP,
        Stage::Release => SNAPC_LC_STAGE_RELEASE,
    }) as c_int
}

/// One process's result for one checkpoint, with its stage durations in
/// microseconds (-1: not reached).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_lc_report {
    /// The slot, with this handshake's generation.
    pub slot: snapc_slot,
    /// The process.
    pub name: snapc_name,
    /// Its pid.
    pub pid: u32,
    /// The handshake counter of the FIFO names used.
    pub n: u32,
    /// 1: it completed with `state`; 0: it failed (`failure`).
    pub ok: c_int,
    /// The state it sent (`snapc_cr_state`; RUNNING, CONTINUE, TERM or ERROR).
    pub state: c_int,
    /// Why it failed (`snapc_lc_failure`).
    pub failure: c_int,
    /// The stage it failed in (`snapc_lc_stage`).
    pub stage: c_int,
    /// The response or state a REFUSED or UNEXPECTED_STATE failure names.
    pub detail: c_int,
    /// Why, in words, NUL-terminated ("" when it completed).
    pub text: [c_char; 96],
    /// Until both FIFO names existed.
    pub fifos_us: i64,
    /// Opening the FIFOs.
    pub open_us: i64,
    /// Writing the options.
    pub options_us: i64,
    /// Until the response.
    pub response_us: i64,
    /// Writing the go-ahead.
    pub go_ahead_us: i64,
    /// Until the final state (the application's prepare and checkpoint).
    pub final_state_us: i64,
    /// Until the process stopped.
    pub stop_us: i64,
    /// The whole handshake.
    pub total_us: u64,
}

/// An action of the local coordinator; the fields its kind names are set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_lc_action {
    /// `snapc_lc_action_kind`.
    pub kind: c_int,
    /// The slot (every kind but SEND_TO_GC).
    pub slot: snapc_slot,
    /// SIGNAL, WAIT_STOPPED: the process.
    pub pid: u32,
    /// WATCH_FIFOS, OPEN_FIFOS: the names.
    pub names: snapc_names,
    /// WRITE: the frame's length in `bytes`; READ: the length to read;
    /// SEND_TO_GC: the message's length in the message buffer.
    pub len: usize,
    /// WRITE: the frame.
    pub bytes: [u8; 36],
    /// REPORT: the result.
    pub report: snapc_lc_report,
}

/// The local coordinator's kind of handle.
impl Kind for snapc_lc {
    const MAGIC: u64 = 0x736e_6170_635f_6c63; // "snapc_lc"
    type Shared = ();
    type Machine = LocalCoordinator<Raw<ProcessSlot>>;
    type Error = InputError;

    fn status(e: InputError) -> c_int {
        use snapc_status::*;
        (match e {
            InputError::Decode(_) | InputError::MissingDetail => SNAPC_E_DECODE,
            InputError::NoSuchSlot => SNAPC_E_NO_SLOT,
            InputError::Stale => SNAPC_E_STALE,
            InputError::Unexpected | InputError::DoesNotFit { .. } => SNAPC_E_UNEXPECTED,
            InputError::Full => SNAPC_E_FULL,
            InputError::Duplicate => SNAPC_E_DUPLICATE,
            InputError::UnknownProcess => SNAPC_E_UNKNOWN,
            InputError::BadPid => SNAPC_E_INVAL,
            _ => SNAPC_E_REFUSED,
        }) as c_int
    }
}

type Machine = <snapc_lc as Kind>::Machine;

/// Runs `f`, which gives the machine an input that names a slot, and
/// stores that slot in `slot` (may be NULL).
///
/// # Safety
/// `slot` must be NULL or valid for a write.
unsafe fn with_slot(
    lc: *mut snapc_lc,
    slot: *mut snapc_slot,
    f: impl FnOnce(&mut Machine) -> Result<SlotId, InputError>,
) -> c_int {
    if !slot.is_null() && !slot.is_aligned() {
        return E_INVAL;
    }
    handle::with(lc, |m| {
        let id = f(m)?;
        if !slot.is_null() {
            // SAFETY: checked for NULL and alignment; the caller's promise.
            unsafe { slot.write(id.into()) };
        }
        Ok(OK)
    })
}

fn layout(n_procs: usize) -> Option<Layout> {
    Layout::of::<Header<snapc_lc>>(&[(ProcessSlot::SIZE, ProcessSlot::ALIGN, n_procs)])
}

/// The bytes of storage a local coordinator for `n_procs` processes needs
/// (any alignment: `snapc_lc_init` aligns inside it); 0 if too large.
#[unsafe(no_mangle)]
pub extern "C" fn snapc_lc_storage_size(n_procs: usize) -> usize {
    layout(n_procs).map_or(0, |l| l.storage_size())
}

/// Initialises an idle local coordinator for at most `n_procs` processes in
/// `storage` (`size` bytes, at least `snapc_lc_storage_size(n_procs)`) and
/// stores its handle in `lc`. `config` NULL: the defaults. The storage must
/// stay in place and untouched until `snapc_lc_fini`.
///
/// # Safety
/// `storage` must be valid for writes of `size` bytes; `config` NULL or
/// valid; `lc` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_init(
    storage: *mut u8,
    size: usize,
    n_procs: usize,
    config: *const snapc_lc_config,
    lc: *mut *mut snapc_lc,
) -> c_int {
    guard(|| {
        if lc.is_null() || !lc.is_aligned() || (!config.is_null() && !config.is_aligned()) {
            return E_INVAL;
        }
        let Some(l) = layout(n_procs) else {
            return E_NOSPACE;
        };
        let base = match l.place(storage, size) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let config = if config.is_null() {
            Config::default()
        } else {
            // SAFETY: checked for NULL and alignment; the caller's promise.
            Config::from(unsafe { &*config })
        };
        let slots = base.wrapping_add(l.offsets[0]).cast::<ProcessSlot>();
        for i in 0..n_procs {
            // SAFETY: the layout places `n_procs` aligned slots inside the
            // caller's `size` bytes (checked by `place`).
            unsafe { slots.add(i).write(ProcessSlot::EMPTY) };
        }
        let Some(ptr) = NonNull::new(slots) else {
            return E_INVAL;
        };
        let header = base.cast::<Header<snapc_lc>>();
        // SAFETY: `base` is aligned for the header and inside the storage.
        unsafe {
            handle::init(header, (), |_| {
                LocalCoordinator::new(config, Raw { ptr, len: n_procs })
            });
            lc.write(header.cast());
        }
        OK
    })
}

fn name(n: snapc_name) -> ProcessName {
    ProcessName {
        jobid: n.jobid,
        vpid: n.vpid,
    }
}

/// Ends the coordinator: the handle is invalid from here on and the
/// storage is the caller's again.
///
/// # Safety
/// `lc` must be a handle from `snapc_lc_init` (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_fini(lc: *mut snapc_lc) -> c_int {
    handle::fini(lc)
}

/// Adds a local process (it takes part from the next checkpoint) and
/// stores its slot in `slot` (may be NULL).
///
/// # Safety
/// `lc` a handle; `slot` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_add_process(
    lc: *mut snapc_lc,
    name: snapc_name,
    pid: u32,
    slot: *mut snapc_slot,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { with_slot(lc, slot, |m| m.add_process(self::name(name), pid)) }
}

/// Removes a process; a handshake it is in ends as failed (REMOVED).
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_remove_process(
    lc: *mut snapc_lc,
    now_us: u64,
    name: snapc_name,
) -> c_int {
    handle::input(lc, |m| m.remove_process(instant(now_us), self::name(name)))
}

/// A restarted process's new pid (its handshake counter returns to 0).
///
/// # Safety
/// `lc` a handle; `slot` NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_update_pid(
    lc: *mut snapc_lc,
    now_us: u64,
    name: snapc_name,
    pid: u32,
    slot: *mut snapc_slot,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        with_slot(lc, slot, |m| {
            m.update_pid(instant(now_us), self::name(name), pid)
        })
    }
}

/// The bytes of a message from the global coordinator (JOB_STATE).
///
/// # Safety
/// `lc` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_gc_message(
    lc: *mut snapc_lc,
    now_us: u64,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        handle::input_bytes(lc, bytes, len, |m, b| {
            m.handle_gc_message(instant(now_us), b)
        })
    }
}

/// The bytes of a message from local process `pid` (LOCAL_UPDATE, LOCAL_FINISH).
///
/// # Safety
/// `lc` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_process_message(
    lc: *mut snapc_lc,
    now_us: u64,
    pid: u32,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        handle::input_bytes(lc, bytes, len, |m, b| {
            m.handle_process_message(instant(now_us), pid, b)
        })
    }
}

/// Answer to WATCH_FIFOS: both names exist.
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_fifos_exist(
    lc: *mut snapc_lc,
    now_us: u64,
    slot: snapc_slot,
) -> c_int {
    handle::input(lc, |m| m.handle_fifos_exist(instant(now_us), slot.into()))
}

/// Answer to OPEN_FIFOS: both ends are open.
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_opened(
    lc: *mut snapc_lc,
    now_us: u64,
    slot: snapc_slot,
) -> c_int {
    handle::input(lc, |m| m.handle_opened(instant(now_us), slot.into()))
}

/// Answer to WRITE: every byte is written.
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_written(
    lc: *mut snapc_lc,
    now_us: u64,
    slot: snapc_slot,
) -> c_int {
    handle::input(lc, |m| m.handle_written(instant(now_us), slot.into()))
}

/// Answer to READ: the bytes read (a length other than the one asked for is
/// a malformed frame).
///
/// # Safety
/// `lc` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_read(
    lc: *mut snapc_lc,
    now_us: u64,
    slot: snapc_slot,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        handle::input_bytes(lc, bytes, len, |m, b| {
            m.handle_read(instant(now_us), slot.into(), b)
        })
    }
}

/// Answer to WAIT_STOPPED: the process has stopped.
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_stopped(
    lc: *mut snapc_lc,
    now_us: u64,
    slot: snapc_slot,
) -> c_int {
    handle::input(lc, |m| m.handle_stopped(instant(now_us), slot.into()))
}

/// A FIFO operation or the signal of the slot failed (`error`:
/// `snapc_io_error`; end of file is PEER_GONE).
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_io_error(
    lc: *mut snapc_lc,
    now_us: u64,
    slot: snapc_slot,
    error: c_int,
) -> c_int {
    let Some(e) = io_error(error) else {
        return E_INVAL;
    };
    handle::input(lc, |m| m.handle_io_error(instant(now_us), slot.into(), e))
}

/// Time passed: call at (or after) the instant from `snapc_lc_poll_timeout`.
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_timeout(lc: *mut snapc_lc, now_us: u64) -> c_int {
    handle::tell(lc, |m| m.handle_timeout(instant(now_us)))
}

/// The next action into `action`: returns 1, or 0 when there is none. A
/// message goes into `out` (`out_len` >= `SNAPC_MAX_MESSAGE_LEN`), valid
/// until the next call.
///
/// # Safety
/// `lc` a handle; `action` valid for a write; `out` for `out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_poll_action(
    lc: *mut snapc_lc,
    action: *mut snapc_lc_action,
    out: *mut u8,
    out_len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::poll_action(lc, action, out, out_len, |m, b| m.poll_action(b), convert) }
}

fn empty_report() -> snapc_lc_report {
    snapc_lc_report {
        slot: snapc_slot::default(),
        name: snapc_name::default(),
        pid: 0,
        n: 0,
        ok: 0,
        state: 0,
        failure: 0,
        stage: 0,
        detail: 0,
        text: [0; 96],
        fifos_us: -1,
        open_us: -1,
        options_us: -1,
        response_us: -1,
        go_ahead_us: -1,
        final_state_us: -1,
        stop_us: -1,
        total_us: 0,
    }
}

fn convert(a: Action) -> snapc_lc_action {
    use snapc_lc_action_kind::*;
    let mut out = snapc_lc_action {
        kind: 0,
        slot: snapc_slot::default(),
        pid: 0,
        names: snapc_names::default(),
        len: 0,
        bytes: [0; 36],
        report: empty_report(),
    };
    out.kind = match a {
        Action::Signal { slot, pid } => {
            (out.slot, out.pid) = (slot.into(), pid);
            SNAPC_LC_SIGNAL
        }
        Action::WatchFifos { slot, names } => {
            (out.slot, out.names) = (slot.into(), names.into());
            SNAPC_LC_WATCH_FIFOS
        }
        Action::OpenFifos { slot, names } => {
            (out.slot, out.names) = (slot.into(), names.into());
            SNAPC_LC_OPEN_FIFOS
        }
        Action::Write { slot, bytes } => {
            out.slot = slot.into();
            out.len = bytes.len();
            for (d, s) in out.bytes.iter_mut().zip(bytes.iter()) {
                *d = *s;
            }
            SNAPC_LC_WRITE
        }
        Action::Read { slot, len } => {
            (out.slot, out.len) = (slot.into(), len);
            SNAPC_LC_READ
        }
        Action::WaitStopped { slot, pid } => {
            (out.slot, out.pid) = (slot.into(), pid);
            SNAPC_LC_WAIT_STOPPED
        }
        Action::Close { slot } => {
            out.slot = slot.into();
            SNAPC_LC_CLOSE
        }
        Action::SendToGc { len } => {
            out.len = len;
            SNAPC_LC_SEND_TO_GC
        }
        Action::Report(r) => {
            out.slot = r.slot.into();
            let rep = &mut out.report;
            rep.slot = r.slot.into();
            rep.name = snapc_name {
                jobid: r.name.jobid,
                vpid: r.name.vpid,
            };
            (rep.pid, rep.n) = (r.pid, r.n);
            let t = r.timings;
            let us = super::us;
            rep.fifos_us = us(t.fifos);
            rep.open_us = us(t.open);
            rep.options_us = us(t.options);
            rep.response_us = us(t.response);
            rep.go_ahead_us = us(t.go_ahead);
            rep.final_state_us = us(t.final_state);
            rep.stop_us = us(t.stop);
            rep.total_us = t.total.as_micros();
            match r.outcome {
                ProcessOutcome::State(s) => {
                    rep.ok = 1;
                    rep.state = s.code();
                }
                ProcessOutcome::Failed(f) => {
                    use snapc_lc_failure::*;
                    rep.state = snapc_core::wire::CrState::Error.code();
                    write_text(&mut rep.text, format_args!("{f}"));
                    let (failure, st, detail) = match f {
                        ProcessFailure::Timeout(s) => (SNAPC_LC_FAILURE_TIMEOUT, stage(s), 0),
                        ProcessFailure::PeerGone(s) => (SNAPC_LC_FAILURE_PEER_GONE, stage(s), 0),
                        ProcessFailure::Refused(r) => {
                            (SNAPC_LC_FAILURE_REFUSED, stage(Stage::Response), r.code())
                        }
                        ProcessFailure::Malformed { stage: s, .. } => {
                            (SNAPC_LC_FAILURE_MALFORMED, stage(s), 0)
                        }
                        ProcessFailure::UnexpectedState(s) => (
                            SNAPC_LC_FAILURE_UNEXPECTED_STATE,
                            stage(Stage::FinalState),
                            s.code(),
                        ),
                        ProcessFailure::NotQuiesced => (SNAPC_LC_FAILURE_NOT_QUIESCED, 0, 0),
                        ProcessFailure::Removed => (SNAPC_LC_FAILURE_REMOVED, 0, 0),
                        ProcessFailure::Restarted => (SNAPC_LC_FAILURE_RESTARTED, 0, 0),
                        ProcessFailure::Aborted => (SNAPC_LC_FAILURE_ABORTED, 0, 0),
                        _ => (SNAPC_LC_FAILURE_OTHER, 0, 0),
                    };
                    (rep.failure, rep.stage, rep.detail) = (failure as c_int, st, detail);
                }
            }
            SNAPC_LC_REPORT
        }
        _ => SNAPC_LC_OTHER,
    } as c_int;
    out
}

/// The next deadline: returns 1 and stores it in `deadline_us`, or 0 when
/// nothing waits with a deadline.
///
/// # Safety
/// `lc` a handle; `deadline_us` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_poll_timeout(
    lc: *const snapc_lc,
    deadline_us: *mut u64,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::poll_timeout(lc, deadline_us, |m| m.poll_timeout()) }
}

/// What the coordinator does as a whole.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_lc_phase_kind {
    /// No checkpoint.
    SNAPC_LC_IDLE = 0,
    /// Handshakes of a checkpoint run.
    SNAPC_LC_CHECKPOINTING = 1,
    /// Handshakes of a quiesce start (prepare only) run.
    SNAPC_LC_PREPARING = 2,
    /// Quiesce end: final states are read.
    SNAPC_LC_RECOVERING = 3,
    /// Reported; waiting for the global coordinator's verdict.
    SNAPC_LC_AWAIT_VERDICT = 4,
    /// The job is quiesced.
    SNAPC_LC_QUIESCED = 5,
    /// Writing the releases.
    SNAPC_LC_RELEASING = 6,
}

/// The coordinator's phase (`snapc_lc_phase_kind`), or a negative status.
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_phase(lc: *const snapc_lc) -> c_int {
    use snapc_lc_phase_kind::*;
    handle::query(lc, |m| {
        (match m.phase() {
            Phase::Idle => SNAPC_LC_IDLE,
            Phase::Handshake(Mode::Checkpoint) => SNAPC_LC_CHECKPOINTING,
            Phase::Handshake(Mode::PrepareOnly) => SNAPC_LC_PREPARING,
            Phase::Handshake(Mode::RecoverOnly) => SNAPC_LC_RECOVERING,
            Phase::AwaitVerdict(_) => SNAPC_LC_AWAIT_VERDICT,
            Phase::Quiesced => SNAPC_LC_QUIESCED,
            Phase::Releasing => SNAPC_LC_RELEASING,
        }) as c_int
    })
}

/// How many processes the table holds (or a negative status).
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_len(lc: *const snapc_lc) -> c_int {
    handle::query(lc, |m| c_int::try_from(m.len()).unwrap_or(c_int::MAX))
}

/// Inputs refused so far (or a negative status).
///
/// # Safety
/// `lc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_unexpected_inputs(lc: *const snapc_lc) -> i64 {
    let mut n = 0;
    match handle::query(lc, |m| {
        n = m.unexpected_inputs();
        OK
    }) {
        OK => i64::from(n),
        e => i64::from(e),
    }
}

/// Why the last input was refused, NUL-terminated into `buf` (`len`
/// bytes, cut if needed; "" if none was). Returns the text's full length.
///
/// # Safety
/// `lc` a handle; `buf` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_lc_last_error(
    lc: *const snapc_lc,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::last_error(lc, buf, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_checked_and_aligned_inside() {
        let n = 3;
        let size = snapc_lc_storage_size(n);
        assert!(size >= n * ProcessSlot::SIZE);
        assert_eq!(snapc_lc_storage_size(usize::MAX), 0);
        let mut buf = vec![0u8; size + 1];
        let mut lc: *mut snapc_lc = core::ptr::null_mut();
        unsafe {
            // Too small, then misaligned on purpose (offset 1): still fits.
            assert_eq!(
                snapc_lc_init(buf.as_mut_ptr(), 10, n, core::ptr::null(), &mut lc),
                E_NOSPACE
            );
            assert_eq!(
                snapc_lc_init(buf.as_mut_ptr().add(1), size, n, core::ptr::null(), &mut lc),
                OK
            );
            assert!(!lc.is_null());
            assert_eq!(
                snapc_lc_phase(lc),
                snapc_lc_phase_kind::SNAPC_LC_IDLE as c_int
            );
            let mut slot = snapc_slot::default();
            for vpid in 0..3 {
                let name = snapc_name { jobid: 1, vpid };
                assert_eq!(snapc_lc_add_process(lc, name, 100 + vpid, &mut slot), OK);
            }
            let name = snapc_name { jobid: 1, vpid: 9 };
            assert_eq!(
                snapc_lc_add_process(lc, name, 200, &mut slot),
                snapc_status::SNAPC_E_FULL as c_int
            );
            let mut text = [0 as c_char; 64];
            assert!(snapc_lc_last_error(lc, text.as_mut_ptr(), 64) > 0);
            let text = core::ffi::CStr::from_ptr(text.as_ptr()).to_str().unwrap();
            assert!(text.contains("full"), "{text}");
            assert_eq!(snapc_lc_len(lc), 3);
            // A forged slot id is refused, not trusted.
            let forged = snapc_slot {
                index: 77,
                generation: 0,
            };
            assert_eq!(
                snapc_lc_opened(lc, 0, forged),
                snapc_status::SNAPC_E_NO_SLOT as c_int
            );
            assert_eq!(snapc_lc_fini(lc), OK);
            assert_eq!(snapc_lc_len(lc), E_INVAL, "a finished handle is refused");
            assert_eq!(snapc_lc_len(core::ptr::null()), E_INVAL);
        }
    }
}
