//! The application API: `snapc_start`, `snapc_progress` and the rest, over
//! `snapc_posix::app::Snapc` (real FIFOs, the checkpoint signal, the node
//! daemon's link, the snapshot store). A C application checkpointed through
//! it is the same process, to every coordinator, as a Rust one.

use crate::runtime::{
    E_INVAL, E_PANIC, NO_ENTRY, OK, SNAPC_MAX_MIGRATE_ENTRIES, checkpoint_result,
    snapc_checkpoint_info, snapc_migrate_entry, snapc_request, snapc_request_info, snapc_result,
    snapc_status,
};
use core::ffi::{CStr, c_char, c_int, c_void};
use snapc_core::app::{CheckpointResult, Outcome, PrepareResult};
use snapc_core::wire::{CrState, Request};
use snapc_posix::app::{ApiError, Config, Hooks, Snapc, Snapshot};
use snapc_posix::signal::CHECKPOINT_FLAG;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// The application's hooks; any of them may be NULL (nothing to do).
/// snapc calls them from inside `snapc_progress` (and `snapc_start` for
/// `restart`), on the calling thread. A hook must return normally (no
/// `longjmp` out of it, no C++ exception through it) and must not call
/// snapc on the same handle (such a call returns `SNAPC_E_BUSY`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_hooks {
    /// Reach a state that can be saved: 0 ready; non-zero: not now (snapc
    /// asks again at a later progress point, the handshake staying open).
    pub prepare: Option<unsafe extern "C" fn(user: *mut c_void) -> c_int>,
    /// Write the state into `dir` (it exists and is empty); returns a
    /// `snapc_result`. SNAPC_CONTINUE from a checkpoint that the
    /// coordinator asked to terminate the process (`snapc checkpoint
    /// --term`) counts as SNAPC_TERM: `snapc_is_terminating` then says 1.
    pub checkpoint: Option<unsafe extern "C" fn(user: *mut c_void, dir: *const c_char) -> c_int>,
    /// After the snapshot, before running on: 0 ok, non-zero failed.
    pub recover: Option<unsafe extern "C" fn(user: *mut c_void) -> c_int>,
    /// At start-up when restarted: load the state from `dir`; 0 ok, non-zero
    /// failed (`snapc_start` then fails).
    pub restart: Option<unsafe extern "C" fn(user: *mut c_void, dir: *const c_char) -> c_int>,
}

struct CHooks {
    hooks: snapc_hooks,
    user: *mut c_void,
}

fn c_path(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

impl Hooks for CHooks {
    fn prepare(&mut self) -> PrepareResult {
        match self.hooks.prepare {
            // SAFETY: the application's hook, called as its type says.
            Some(f) if unsafe { f(self.user) } != 0 => PrepareResult::NotNow,
            _ => PrepareResult::Ready,
        }
    }

    fn checkpoint(&mut self, snapshot: &Snapshot) -> CheckpointResult {
        let Some(f) = self.hooks.checkpoint else {
            return CheckpointResult::Continue;
        };
        let Some(dir) = c_path(&snapshot.dir) else {
            return CheckpointResult::Error;
        };
        // SAFETY: the application's hook; `dir` lives until it returns.
        let code = unsafe { f(self.user, dir.as_ptr()) };
        match checkpoint_result(code, std::process::id()) {
            // The hook does not see the options: a checkpoint the
            // coordinator asked to end the process with ends it.
            Some(CheckpointResult::Continue) if snapshot.options.term => CheckpointResult::Term,
            Some(r) => r,
            None => {
                log::warn!("checkpoint hook returned {code}, not a snapc_result: an error");
                CheckpointResult::Error
            }
        }
    }

    fn recover(&mut self, _state: CrState) -> Result<(), String> {
        match self.hooks.recover {
            // SAFETY: the application's hook.
            Some(f) => match unsafe { f(self.user) } {
                0 => Ok(()),
                r => Err(format!("recover hook returned {r}")),
            },
            None => Ok(()),
        }
    }

    fn restart(&mut self, dir: &Path) -> Result<(), String> {
        let Some(f) = self.hooks.restart else {
            return Ok(());
        };
        let cdir = c_path(dir).ok_or("the restart directory contains a NUL byte")?;
        // SAFETY: the application's hook; `cdir` lives until it returns.
        match unsafe { f(self.user, cdir.as_ptr()) } {
            0 => Ok(()),
            r => Err(format!("restart hook returned {r}")),
        }
    }
}

/// snapc inside one application process (opaque).
pub struct snapc {
    /// A call on this handle runs (a hook calling back sees it set).
    busy: Cell<bool>,
    /// A panic was caught inside: the handle is unusable.
    broken: Cell<bool>,
    inner: Snapc<CHooks>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: impl std::fmt::Display) {
    let text = msg.to_string().replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The message of the last call that failed on this thread (human-readable,
/// never NULL; "" if none failed). Valid until the next failing call on
/// this thread.
#[unsafe(no_mangle)]
pub extern "C" fn snapc_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// Turns snapc's log on, on standard error: the library installs no logger
/// by itself, and a C program cannot install Rust's. `filter` in
/// env_logger's syntax (`"warn"`, `"debug"`, `"snapc_core=debug"`); NULL
/// or "": the `SNAPC_LOG` environment variable, else `RUST_LOG`, else
/// `"warn"`. Each line: a UTC timestamp, the level, the module, the
/// message; at `debug` the application's side of each handshake. Call it
/// once, before `snapc_start`. `SNAPC_OK`; `SNAPC_E_INVAL` (not UTF-8);
/// `SNAPC_E_BUSY` (a logger is already installed in this process).
///
/// # Safety
///
/// `filter` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_log_init(filter: *const c_char) -> c_int {
    let spec = if filter.is_null() {
        None
    } else {
        // SAFETY: the caller's NUL-terminated string.
        match unsafe { CStr::from_ptr(filter) }.to_str() {
            Ok(s) => Some(s.to_string()),
            Err(_) => {
                set_error("the log filter is not UTF-8");
                return E_INVAL;
            }
        }
    };
    let spec = spec
        .filter(|s| !s.trim().is_empty())
        .or_else(snapc_posix::app::log_filter_from_env)
        .unwrap_or_else(|| "warn".to_string());
    let installed = catch_unwind(|| {
        env_logger::Builder::new()
            .parse_filters(&spec)
            .format(|buf, record| {
                use std::io::Write;
                let ts = buf.timestamp_millis();
                writeln!(
                    buf,
                    "{ts} {:<5} {}: {}",
                    record.level(),
                    record.target(),
                    record.args()
                )
            })
            .try_init()
    });
    match installed {
        Ok(Ok(())) => OK,
        Ok(Err(_)) => {
            set_error("a logger is already installed in this process");
            snapc_status::SNAPC_E_BUSY as c_int
        }
        Err(_) => E_PANIC,
    }
}

/// The handle's parts while a call runs on it; `busy` is cleared on drop.
struct Entered<'a> {
    busy: &'a Cell<bool>,
    broken: &'a Cell<bool>,
    inner: &'a mut Snapc<CHooks>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.busy.set(false);
    }
}

/// Enters a call on `s`: its fields are borrowed apart, so that a hook's
/// call back (which only reads `busy`) never aliases the running one.
fn enter<'a>(s: *mut snapc) -> Result<Entered<'a>, c_int> {
    if s.is_null() || !s.is_aligned() {
        set_error("NULL or misaligned snapc handle");
        return Err(E_INVAL);
    }
    // SAFETY: a handle from `snapc_start` (the caller's promise); `busy`
    // and `broken` are only ever shared.
    let (busy, broken) = unsafe {
        (
            &*core::ptr::addr_of!((*s).busy),
            &*core::ptr::addr_of!((*s).broken),
        )
    };
    if broken.get() {
        set_error("this snapc handle had an internal error and cannot be used");
        return Err(E_PANIC);
    }
    if busy.get() {
        set_error("snapc is already running a call on this handle (a hook called back)");
        return Err(snapc_status::SNAPC_E_BUSY as c_int);
    }
    busy.set(true);
    Ok(Entered {
        busy,
        broken,
        // SAFETY: not busy: no other borrow of `inner` is live.
        inner: unsafe { &mut *core::ptr::addr_of_mut!((*s).inner) },
    })
}

/// Runs `f` on the entered handle; a panic marks it broken.
fn call(s: *mut snapc, f: impl FnOnce(&mut Snapc<CHooks>) -> c_int) -> c_int {
    let e = match enter(s) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let broken = e.broken;
    let inner = &mut *e.inner;
    match catch_unwind(AssertUnwindSafe(|| f(inner))) {
        Ok(r) => r,
        Err(_) => {
            broken.set(true);
            set_error("internal error in snapc; this handle cannot be used any more");
            E_PANIC
        }
    }
}

/// The application's configuration, set from code rather than the
/// environment (opaque).
#[derive(Debug, Default, Clone)]
pub struct snapc_config {
    vars: BTreeMap<&'static str, String>,
    chain_signal: Option<bool>,
    end_with_daemon: Option<bool>,
}

impl snapc_config {
    fn build(&self) -> Result<Config, String> {
        let mut c = Config::from_vars(|k| self.vars.get(k).cloned()).map_err(|e| e.to_string())?;
        if let Some(on) = self.chain_signal {
            c.chain_signal = on;
        }
        if let Some(on) = self.end_with_daemon {
            c.end_with_daemon = on;
        }
        Ok(c)
    }
}

fn boxed<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// A configuration with snapc's defaults, nothing read from the
/// environment. Free it with `snapc_config_free`.
#[unsafe(no_mangle)]
pub extern "C" fn snapc_config_new() -> *mut snapc_config {
    catch_unwind(|| boxed(snapc_config::default())).unwrap_or(core::ptr::null_mut())
}

/// A configuration from the `SNAPC_*` variables set now (as `snapc_start`
/// reads them); NULL with `snapc_last_error` if one is invalid.
#[unsafe(no_mangle)]
pub extern "C" fn snapc_config_from_env() -> *mut snapc_config {
    catch_unwind(|| {
        let mut c = snapc_config::default();
        for &k in Config::VARIABLES {
            if let Some(v) = std::env::var(k).ok().filter(|v| !v.is_empty()) {
                c.vars.insert(k, v);
            }
        }
        match c.build() {
            Ok(_) => boxed(c),
            Err(e) => {
                set_error(e);
                core::ptr::null_mut()
            }
        }
    })
    .unwrap_or(core::ptr::null_mut())
}

/// Sets one setting by the name of its environment variable (the README's
/// table: `"SNAPC_TIMEOUT"`, `"SNAPC_STORE"`, ...) to `value`, checked as
/// the environment's would be; `value` NULL (or "") returns it to the
/// default. `SNAPC_E_INVAL` with `snapc_last_error` for an unknown name or
/// an invalid value.
///
/// # Safety
/// `config` from `snapc_config_new`; `name` and `value` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_config_set(
    config: *mut snapc_config,
    name: *const c_char,
    value: *const c_char,
) -> c_int {
    crate::runtime::guard(|| {
        if config.is_null() || name.is_null() {
            set_error("snapc_config_set: NULL configuration or name");
            return E_INVAL;
        }
        // SAFETY: the caller's promise.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        let Some(&key) = Config::VARIABLES.iter().find(|&&k| k == name) else {
            set_error(format!(
                "{name}: not a snapc setting (one of {})",
                Config::VARIABLES.join(", ")
            ));
            return E_INVAL;
        };
        let value = if value.is_null() {
            None
        } else {
            // SAFETY: the caller's promise.
            match unsafe { CStr::from_ptr(value) }.to_str() {
                Ok("") => None,
                Ok(v) => Some(v.to_string()),
                Err(_) => {
                    set_error(format!("{key}: the value is not UTF-8"));
                    return E_INVAL;
                }
            }
        };
        if let Some(v) = &value
            && let Err(e) = Config::from_vars(|k| (k == key).then(|| v.clone()))
        {
            set_error(e);
            return E_INVAL;
        }
        // SAFETY: checked for NULL; the caller's promise.
        let c = unsafe { &mut *config };
        match value {
            Some(v) => c.vars.insert(key, v),
            None => c.vars.remove(key),
        };
        OK
    })
}

/// Chain to a handler already installed for the checkpoint signal instead
/// of refusing to start (`on`: 0 or 1; default 0).
///
/// # Safety
/// `config` from `snapc_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_config_set_chain_signal(
    config: *mut snapc_config,
    on: c_int,
) -> c_int {
    if config.is_null() {
        return E_INVAL;
    }
    // SAFETY: checked for NULL; the caller's promise.
    unsafe { (*config).chain_signal = Some(on != 0) };
    OK
}

/// End this process when its node daemon closes the link (`on`: 0 or 1;
/// default: on when `SNAPC_DAEMON_SOCKET` is set).
///
/// # Safety
/// `config` from `snapc_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_config_set_end_with_daemon(
    config: *mut snapc_config,
    on: c_int,
) -> c_int {
    if config.is_null() {
        return E_INVAL;
    }
    // SAFETY: checked for NULL; the caller's promise.
    unsafe { (*config).end_with_daemon = Some(on != 0) };
    OK
}

/// Frees a configuration (NULL is fine).
///
/// # Safety
/// `config` from `snapc_config_new` or `snapc_config_from_env`, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_config_free(config: *mut snapc_config) {
    if !config.is_null() {
        // SAFETY: the caller's promise: a box of ours, freed once.
        drop(unsafe { Box::from_raw(config) });
    }
}

fn start(
    config: Result<Config, String>,
    hooks: *const snapc_hooks,
    user: *mut c_void,
) -> *mut snapc {
    let hooks = if hooks.is_null() {
        snapc_hooks {
            prepare: None,
            checkpoint: None,
            recover: None,
            restart: None,
        }
    } else if !hooks.is_aligned() {
        set_error("snapc_start: misaligned hooks");
        return core::ptr::null_mut();
    } else {
        // SAFETY: checked for NULL and alignment; copied, so the caller's
        // struct need not outlive the call.
        unsafe { *hooks }
    };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let config = config?;
        Snapc::start(config, CHooks { hooks, user }).map_err(|e| e.to_string())
    }));
    match r {
        Ok(Ok(inner)) => boxed(snapc {
            busy: Cell::new(false),
            broken: Cell::new(false),
            inner,
        }),
        Ok(Err(e)) => {
            set_error(e);
            core::ptr::null_mut()
        }
        Err(_) => {
            set_error("internal error in snapc_start");
            core::ptr::null_mut()
        }
    }
}

/// Starts snapc in this process, configured by the `SNAPC_*` environment:
/// takes the checkpoint signal, checks the pipe directory, connects to the
/// node daemon if there is one, and runs `hooks->restart` when restarted
/// from a snapshot. `hooks` is copied (NULL: no hooks); `user` is passed to
/// each hook. NULL on error, with `snapc_last_error`. One per process.
///
/// # Safety
/// `hooks` NULL or valid; its functions callable with `user`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_start(hooks: *const snapc_hooks, user: *mut c_void) -> *mut snapc {
    let config = catch_unwind(|| Config::from_env().map_err(|e| e.to_string()))
        .unwrap_or_else(|_| Err("internal error reading the environment".into()));
    start(config, hooks, user)
}

/// `snapc_start` with a configuration set from code (`config` may be freed
/// afterwards).
///
/// # Safety
/// As `snapc_start`; `config` from `snapc_config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_start_with(
    config: *const snapc_config,
    hooks: *const snapc_hooks,
    user: *mut c_void,
) -> *mut snapc {
    if config.is_null() {
        set_error("snapc_start_with: NULL configuration");
        return core::ptr::null_mut();
    }
    // SAFETY: the caller's promise.
    let c = catch_unwind(AssertUnwindSafe(|| unsafe { &*config }.build()))
        .unwrap_or_else(|_| Err("internal error".into()));
    start(c, hooks, user)
}

/// What `snapc_progress` saw end.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_event {
    /// Nothing was pending (or nothing ended yet).
    SNAPC_EVENT_NONE = 0,
    /// A checkpoint of this process completed (`snapc_last_checkpoint`).
    SNAPC_EVENT_CHECKPOINT = 1,
    /// A checkpoint of this process failed (`snapc_last_error`,
    /// `snapc_last_checkpoint`); the application goes on.
    SNAPC_EVENT_CHECKPOINT_FAILED = 2,
    /// A quiesce began: the process is prepared and held.
    SNAPC_EVENT_QUIESCED = 3,
    /// A request ended (`snapc_last_request`).
    SNAPC_EVENT_REQUEST = 4,
}

fn event(o: Option<Outcome>) -> c_int {
    use snapc_event::*;
    (match o {
        None => SNAPC_EVENT_NONE,
        Some(Outcome::Handshake(r)) => match r.error {
            None => SNAPC_EVENT_CHECKPOINT,
            Some(e) => {
                set_error(format!("checkpoint {} failed: {e}", r.names.n));
                SNAPC_EVENT_CHECKPOINT_FAILED
            }
        },
        Some(Outcome::Quiesced { .. }) => SNAPC_EVENT_QUIESCED,
        Some(_) => SNAPC_EVENT_REQUEST,
    }) as c_int
}

/// The safe point: call it where the application's state can be saved. One
/// atomic load when nothing is pending; otherwise runs the pending
/// checkpoint (its hooks inside this call) and returns a `snapc_event`, or
/// a negative status.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_progress(s: *mut snapc) -> c_int {
    // The common case without the call's bookkeeping: an idle handle that
    // no call is running on (reads only, none of which can panic).
    if !s.is_null() && s.is_aligned() {
        // SAFETY: a handle from `snapc_start` (the caller's promise); when
        // it is not busy no `&mut` to `inner` is live.
        let idle = unsafe {
            !(*core::ptr::addr_of!((*s).busy)).get()
                && !(*core::ptr::addr_of!((*s).broken)).get()
                && (*core::ptr::addr_of!((*s).inner)).is_idle()
        };
        if idle {
            return snapc_event::SNAPC_EVENT_NONE as c_int;
        }
    }
    call(s, |inner| event(inner.progress()))
}

/// Whether a checkpoint signal has arrived and its checkpoint not started
/// yet: 1 or 0 (one atomic load; nothing is taken). Ranks that exchange
/// messages agree on it (one allreduce per iteration), then all call
/// `snapc_progress_wait`.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_pending(s: *const snapc) -> c_int {
    if s.is_null() {
        return E_INVAL;
    }
    CHECKPOINT_FLAG.is_requested().into()
}

/// Waits up to `timeout_ms` for the checkpoint signal the ranks agreed is
/// coming, then runs it as `snapc_progress` does (its `snapc_event`); at
/// once if it is already pending. `SNAPC_E_TIMEOUT` if none came.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_progress_wait(s: *mut snapc, timeout_ms: u32) -> c_int {
    call(s, |inner| {
        match inner.progress_wait(std::time::Duration::from_millis(timeout_ms.into())) {
            Ok(o) => event(o),
            Err(e) => {
                set_error(e);
                snapc_status::SNAPC_E_TIMEOUT as c_int
            }
        }
    })
}

fn request(s: *mut snapc, req: impl FnOnce() -> Result<Request<'static>, String>) -> c_int {
    call(s, |inner| {
        let req = match req() {
            Ok(r) => r,
            Err(e) => {
                set_error(e);
                return E_INVAL;
            }
        };
        run_request(inner, req)
    })
}

fn run_request(inner: &mut Snapc<CHooks>, req: Request<'_>) -> c_int {
    let op = req.op_event();
    match inner.request(req) {
        Ok(r) => match r.error {
            None => OK,
            Some(e) => {
                set_error(format!("{op} failed: {e}"));
                snapc_status::SNAPC_E_FAILED as c_int
            }
        },
        Err(ApiError::NoCoordinator) => {
            set_error(ApiError::NoCoordinator);
            snapc_status::SNAPC_E_NO_COORDINATOR as c_int
        }
        Err(e @ ApiError::Refused(snapc_core::app::InputError::Busy(_))) => {
            set_error(e);
            snapc_status::SNAPC_E_BUSY as c_int
        }
        Err(e) => {
            set_error(e);
            snapc_status::SNAPC_E_REFUSED as c_int
        }
    }
}

/// Asks the job's global coordinator for a checkpoint of the whole job
/// (through the node daemon) and returns when it ended: `SNAPC_OK`, or
/// `SNAPC_E_FAILED`, `SNAPC_E_BUSY`, `SNAPC_E_REFUSED`,
/// `SNAPC_E_NO_COORDINATOR` (standalone) with `snapc_last_error`. This
/// process's own handshake runs inside the call. Details:
/// `snapc_last_request`.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_checkpoint(s: *mut snapc) -> c_int {
    request(s, || Ok(Request::Checkpoint))
}

/// Asks for a restart of the job from snapshot `seq` whose reference is
/// `handle` (NUL-terminated); the process then awaits termination.
///
/// # Safety
/// `s` from `snapc_start`; `handle` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_restart(
    s: *mut snapc,
    seq: i32,
    handle: *const c_char,
) -> c_int {
    if handle.is_null() {
        set_error("snapc_request_restart: NULL handle");
        return E_INVAL;
    }
    // SAFETY: the caller's promise.
    let Ok(handle) = unsafe { CStr::from_ptr(handle) }.to_str() else {
        set_error("snapc_request_restart: the handle is not UTF-8");
        return E_INVAL;
    };
    call(s, |inner| {
        run_request(
            inner,
            Request::Restart {
                seq_num: seq,
                handle: Some(handle),
            },
        )
    })
}

/// Asks for a quiesce of the job: returns once this process is quiesced
/// (prepared and held: no messages in flight may be started).
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_quiesce_start(s: *mut snapc) -> c_int {
    request(s, || Ok(Request::QuiesceStart))
}

/// Asks for a snapshot of the quiesced job.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_quiesce_checkpoint(s: *mut snapc) -> c_int {
    request(s, || Ok(Request::QuiesceCheckpoint))
}

/// Ends the quiesce: returns once this process recovered.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_quiesce_end(s: *mut snapc) -> c_int {
    request(s, || Ok(Request::QuiesceEnd))
}

/// Tells the global coordinator the job is checkpointable (INIT, rank 0).
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_init(s: *mut snapc) -> c_int {
    request(s, || Ok(Request::Init))
}

/// Tells the global coordinator the job is finishing (FIN); rank 0 waits
/// for FIN_ACK.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_fin(s: *mut snapc) -> c_int {
    request(s, || Ok(Request::Fin))
}

/// Asks for a migration with `n` preferences (at most
/// `SNAPC_MAX_MIGRATE_ENTRIES`).
///
/// # Safety
/// `s` from `snapc_start`; `entries` valid for `n` entries and their hosts.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_request_migrate(
    s: *mut snapc,
    entries: *const snapc_migrate_entry,
    n: usize,
) -> c_int {
    let req = snapc_request {
        op: snapc_core::wire::OpEvent::Migrate.code(),
        seq_num: 0,
        handle: core::ptr::null(),
        handle_len: 0,
        entries,
        n_entries: n,
    };
    let mut table = [NO_ENTRY; SNAPC_MAX_MIGRATE_ENTRIES];
    // SAFETY: the caller's promise.
    let r = match unsafe { crate::runtime::request(&req, &mut table) } {
        Ok(r) => r,
        Err(e) => {
            set_error("snapc_request_migrate: invalid preferences");
            return e;
        }
    };
    call(s, |inner| run_request(inner, r))
}

/// Whether the process should now wait to be terminated (a `term`
/// checkpoint, a migration, a restart request): 1 or 0.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_is_terminating(s: *mut snapc) -> c_int {
    call(s, |inner| inner.is_terminating().into())
}

/// Whether a prepare-only checkpoint holds the process quiesced: 1 or 0.
///
/// # Safety
/// `s` from `snapc_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_is_quiesced(s: *mut snapc) -> c_int {
    call(s, |inner| inner.is_quiesced().into())
}

/// The last handshake of this process (its state, error and stage timings)
/// into `info`: returns 1, or 0 if none ended yet.
///
/// # Safety
/// `s` from `snapc_start`; `info` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_last_checkpoint(
    s: *mut snapc,
    info: *mut snapc_checkpoint_info,
) -> c_int {
    if info.is_null() || !info.is_aligned() {
        return E_INVAL;
    }
    call(s, |inner| {
        let last = inner.outcomes().iter().rev().find_map(|o| match o {
            Outcome::Handshake(_) | Outcome::Quiesced { .. } => {
                Some(crate::runtime::outcome_info(o).checkpoint)
            }
            _ => None,
        });
        match last {
            Some(c) => {
                // SAFETY: checked for NULL and alignment; the caller's promise.
                unsafe { info.write(c) };
                1
            }
            None => 0,
        }
    })
}

/// The last request of this process into `info`: returns 1, or 0 if none
/// ended yet.
///
/// # Safety
/// `s` from `snapc_start`; `info` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_last_request(s: *mut snapc, info: *mut snapc_request_info) -> c_int {
    if info.is_null() || !info.is_aligned() {
        return E_INVAL;
    }
    call(s, |inner| {
        let last = inner.outcomes().iter().rev().find_map(|o| match o {
            Outcome::Request(r) => Some(snapc_request_info::from(r)),
            _ => None,
        });
        match last {
            Some(r) => {
                // SAFETY: checked for NULL and alignment; the caller's promise.
                unsafe { info.write(r) };
                1
            }
            None => 0,
        }
    })
}

/// Stops snapc in this process: gives the checkpoint signal back and frees
/// `s` (NULL is fine). Not from inside a hook.
///
/// # Safety
/// `s` from `snapc_start`, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_stop(s: *mut snapc) {
    if s.is_null() {
        return;
    }
    // SAFETY: the caller's promise; `busy` is only ever shared.
    if unsafe { &*core::ptr::addr_of!((*s).busy) }.get() {
        set_error("snapc_stop from inside a hook: ignored");
        return;
    }
    // SAFETY: a box of ours, not busy, freed once (the caller's promise).
    let b = unsafe { Box::from_raw(s) };
    if catch_unwind(AssertUnwindSafe(|| drop(b))).is_err() {
        set_error("internal error in snapc_stop");
    }
}

// The checkpoint hook's result codes are the C enum's.
const _: () = {
    assert!(snapc_result::SNAPC_CONTINUE as i32 == 0);
    assert!(snapc_result::SNAPC_RESTART as i32 == 3);
};
