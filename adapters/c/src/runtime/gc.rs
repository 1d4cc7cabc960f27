//! `snapc_gc_*`: the global coordinator (one per job, in the launcher) in
//! the caller's storage, with the ranks' placement (for MIGRATE) kept there
//! too.

use super::handle::{self, Header, Kind};
use super::{
    E_INVAL, E_NOSPACE, Layout, OK, Raw, bits, guard, instant, put, snapc_status, write_text,
};
use core::ffi::{c_char, c_int};
use core::ptr::NonNull;
use snapc_core::global::{
    Action, Command, Config, Destination, GlobalCoordinator, GlobalDeadlines, InputError, NodeSlot,
    OpKind, OperationFailure, Placement, Report, Requester,
};
use snapc_core::time::Duration;

/// A global coordinator in the caller's storage (opaque).
pub struct snapc_gc {
    _opaque: [u8; 0],
}

/// The job a global coordinator serves and its deadlines in microseconds.
/// `snapc_gc_config_default` fills it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_gc_config {
    /// The job id (in every JOB_STATE; checked in every request).
    pub jobid: u32,
    /// The number of ranks (requests from other vpids are refused).
    pub nranks: u32,
    /// Each local coordinator's report in each step of an operation.
    pub lc_report_us: u64,
    /// A FIN waiting for a running operation.
    pub fin_us: u64,
    /// The runtime's report that a migration or restart is done.
    pub runtime_us: u64,
}

/// Fills `config` for job `jobid` of `nranks` ranks with the default deadlines.
///
/// # Safety
/// `config` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_config_default(
    config: *mut snapc_gc_config,
    jobid: u32,
    nranks: u32,
) -> c_int {
    guard(|| {
        let d = GlobalDeadlines::default();
        let c = snapc_gc_config {
            jobid,
            nranks,
            lc_report_us: d.lc_report.as_micros(),
            fin_us: d.fin.as_micros(),
            runtime_us: d.runtime.as_micros(),
        };
        // SAFETY: the caller's promise; checked for NULL.
        unsafe { put(config, c) }
    })
}

/// The runtime's own commands (`snapc_gc_command`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_gc_command_kind {
    /// Checkpoint the job (with `term` or `stop`).
    SNAPC_GC_CHECKPOINT = 0,
    /// Quiesce the job.
    SNAPC_GC_QUIESCE_START = 1,
    /// End the quiesce.
    SNAPC_GC_QUIESCE_END = 2,
}

/// What an action asks (`snapc_gc_action.kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_gc_action_kind {
    /// Send the first `len` bytes of the message buffer to every local
    /// coordinator (JOB_STATE).
    SNAPC_GC_SEND_TO_LCS = 1,
    /// Send the first `len` bytes of the message buffer to rank `vpid` (an
    /// OP response or FIN_ACK).
    SNAPC_GC_SEND_TO_RANK = 2,
    /// Record snapshot `seq` / `handle` / `reference` now; the requester's
    /// answer follows.
    SNAPC_GC_ESTABLISHED = 3,
    /// Carry out the migration of snapshot `seq` / `handle` (the plan:
    /// `snapc_gc_migration_move`), then `snapc_gc_migration_done`.
    SNAPC_GC_MIGRATE = 4,
    /// Restart the job from snapshot `seq_num` and `snapc_gc_restart_handle`,
    /// then `snapc_gc_restart_done`.
    SNAPC_GC_RESTART = 5,
    /// An operation ended: `report`.
    SNAPC_GC_FINISHED = 6,
    /// An action this header does not know yet: ignore it.
    SNAPC_GC_OTHER = 99,
}

/// The kinds of operation (`snapc_gc_report.op`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_gc_op {
    /// A checkpoint.
    SNAPC_GC_OP_CHECKPOINT = 1,
    /// A migration.
    SNAPC_GC_OP_MIGRATE = 2,
    /// A restart.
    SNAPC_GC_OP_RESTART = 3,
    /// Quiesce start.
    SNAPC_GC_OP_QUIESCE_START = 4,
    /// A snapshot while quiesced.
    SNAPC_GC_OP_QUIESCE_CHECKPOINT = 5,
    /// Quiesce end.
    SNAPC_GC_OP_QUIESCE_END = 6,
    /// FIN.
    SNAPC_GC_OP_FIN = 7,
    /// An operation this header does not name yet.
    SNAPC_GC_OP_OTHER = 99,
}

/// Why an operation failed (`snapc_gc_report.failure`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_gc_failure {
    /// It did not fail.
    SNAPC_GC_FAILURE_NONE = 0,
    /// Local coordinator `failure_lc` reported `failure_state`.
    SNAPC_GC_FAILURE_LC = 1,
    /// Local coordinator `failure_lc` missed its deadline.
    SNAPC_GC_FAILURE_LC_TIMEOUT = 2,
    /// The runtime reported a failed migration or restart.
    SNAPC_GC_FAILURE_RUNTIME = 3,
    /// The runtime did not report in time.
    SNAPC_GC_FAILURE_RUNTIME_TIMEOUT = 4,
    /// FIN's wait passed its deadline.
    SNAPC_GC_FAILURE_FIN_TIMEOUT = 5,
    /// A failure this header does not name yet.
    SNAPC_GC_FAILURE_OTHER = 99,
}

/// How an operation ended.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_gc_report {
    /// What ran (`snapc_gc_op`).
    pub op: c_int,
    /// 1: a rank asked (`requester_vpid`); 0: the runtime did.
    pub requester_is_rank: c_int,
    /// The rank that asked.
    pub requester_vpid: u32,
    /// 1: it succeeded.
    pub ok: c_int,
    /// 1: `seq` is set.
    pub has_seq: c_int,
    /// The snapshot's sequence number.
    pub seq: i64,
    /// The sstore handle (0: none).
    pub handle: u32,
    /// The global snapshot reference, NUL-terminated ("" for none).
    pub reference: [c_char; 129],
    /// Why it failed (`snapc_gc_failure`).
    pub failure: c_int,
    /// The local coordinator a LC or LC_TIMEOUT failure names (-1: none).
    pub failure_lc: i64,
    /// The state it reported (`snapc_ckpt_state`), for a LC failure.
    pub failure_state: c_int,
    /// When it started (the caller's clock).
    pub started_us: u64,
    /// How long it took.
    pub duration_us: u64,
}

/// An action of the global coordinator; the fields its kind names are set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_gc_action {
    /// `snapc_gc_action_kind`.
    pub kind: c_int,
    /// SEND_TO_LCS, SEND_TO_RANK: the message's length in the message buffer.
    pub len: usize,
    /// SEND_TO_RANK: the rank.
    pub vpid: u32,
    /// ESTABLISHED, MIGRATE: the snapshot's sequence number.
    pub seq: u32,
    /// ESTABLISHED, MIGRATE: its sstore handle.
    pub handle: u32,
    /// RESTART: the sequence number as requested.
    pub seq_num: i32,
    /// ESTABLISHED: the reference, NUL-terminated.
    pub reference: [c_char; 129],
    /// FINISHED: the report.
    pub report: snapc_gc_report,
}

/// Where a migrating rank goes (`snapc_gc_move.dest`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_gc_destination {
    /// Anywhere the runtime chooses.
    SNAPC_GC_DEST_ANYWHERE = 0,
    /// Anywhere but its current host.
    SNAPC_GC_DEST_OFF_NODE = 1,
    /// Host `host`.
    SNAPC_GC_DEST_HOST = 2,
    /// Wherever rank `with_vpid` goes.
    SNAPC_GC_DEST_WITH = 3,
    /// A destination this header does not name yet.
    SNAPC_GC_DEST_OTHER = 99,
}

/// One rank of a migration plan.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snapc_gc_move {
    /// The rank.
    pub vpid: u32,
    /// `snapc_gc_destination`.
    pub dest: c_int,
    /// DEST_HOST: the host, NUL-terminated.
    pub host: [c_char; 256],
    /// DEST_WITH: the other rank.
    pub with_vpid: u32,
}

const UNPLACED: u32 = u32::MAX;

/// One node's host name in the caller's storage.
#[derive(Clone, Copy)]
struct Host {
    len: u16,
    bytes: [u8; 255],
}

const NO_HOST: Host = Host {
    len: 0,
    bytes: [0; 255],
};

/// Where each rank runs: its node's index, and each node's host name.
pub(crate) struct CPlacement {
    ranks: Raw<u32>,
    hosts: Raw<Host>,
}

impl Placement for CPlacement {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        let node = *self.ranks.as_ref().get(usize::try_from(vpid).ok()?)?;
        let h = self.hosts.as_ref().get(usize::try_from(node).ok()?)?;
        core::str::from_utf8(h.bytes.get(..usize::from(h.len))?).ok()
    }
}

/// The global coordinator's kind of handle.
impl Kind for snapc_gc {
    const MAGIC: u64 = 0x736e_6170_635f_6763; // "snapc_gc"
    type Shared = ();
    type Machine = GlobalCoordinator<CPlacement, Raw<NodeSlot>, 8>;
    type Error = InputError;

    fn status(e: InputError) -> c_int {
        use snapc_status::*;
        (match e {
            InputError::Decode(_) => SNAPC_E_DECODE,
            InputError::UnknownRank(_) | InputError::UnknownLc(_) => SNAPC_E_UNKNOWN,
            InputError::Busy | InputError::FinPending => SNAPC_E_BUSY,
            InputError::BadRestart => SNAPC_E_INVAL,
            InputError::NotWaiting => SNAPC_E_UNEXPECTED,
            _ => SNAPC_E_REFUSED,
        }) as c_int
    }
}

fn layout(n_nodes: usize, n_ranks: u32) -> Option<Layout> {
    Layout::of::<Header<snapc_gc>>(&[
        (NodeSlot::SIZE, NodeSlot::ALIGN, n_nodes),
        (4, 4, usize::try_from(n_ranks).ok()?),
        (
            core::mem::size_of::<Host>(),
            core::mem::align_of::<Host>(),
            n_nodes,
        ),
    ])
}

/// The bytes of storage a global coordinator over `n_nodes` local
/// coordinators and `n_ranks` ranks needs (any alignment); 0 if too large.
#[unsafe(no_mangle)]
pub extern "C" fn snapc_gc_storage_size(n_nodes: usize, n_ranks: u32) -> usize {
    layout(n_nodes, n_ranks).map_or(0, |l| l.storage_size())
}

/// Initialises a global coordinator for `config` (`config->nranks` ranks)
/// over `n_nodes` local coordinators (indices `0..n_nodes`) in `storage`
/// (`size` bytes, at least `snapc_gc_storage_size(n_nodes, nranks)`), and
/// stores its handle in `gc`. Every rank starts unplaced
/// (`snapc_gc_place_rank`): only MIGRATE needs the placement.
///
/// # Safety
/// `storage` valid for writes of `size` bytes; `config` valid; `gc` valid
/// for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_init(
    storage: *mut u8,
    size: usize,
    n_nodes: usize,
    config: *const snapc_gc_config,
    gc: *mut *mut snapc_gc,
) -> c_int {
    guard(|| {
        if gc.is_null() || !gc.is_aligned() || config.is_null() || !config.is_aligned() {
            return E_INVAL;
        }
        // SAFETY: checked for NULL and alignment; the caller's promise.
        let c = unsafe { *config };
        let Some(l) = layout(n_nodes, c.nranks) else {
            return E_NOSPACE;
        };
        let base = match l.place(storage, size) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let nodes = base.wrapping_add(l.offsets[0]).cast::<NodeSlot>();
        let ranks = base.wrapping_add(l.offsets[1]).cast::<u32>();
        let hosts = base.wrapping_add(l.offsets[2]).cast::<Host>();
        let n_ranks = c.nranks as usize;
        // SAFETY: the layout places each array, aligned, inside the
        // caller's `size` bytes (checked by `place`).
        unsafe {
            for i in 0..n_nodes {
                nodes.add(i).write(NodeSlot::EMPTY);
                hosts.add(i).write(NO_HOST);
            }
            for i in 0..n_ranks {
                ranks.add(i).write(UNPLACED);
            }
        }
        let (Some(nodes), Some(ranks), Some(hosts)) = (
            NonNull::new(nodes),
            NonNull::new(ranks),
            NonNull::new(hosts),
        ) else {
            return E_INVAL;
        };
        let config = Config {
            jobid: c.jobid,
            nranks: c.nranks,
            deadlines: GlobalDeadlines {
                lc_report: Duration::from_micros(c.lc_report_us),
                fin: Duration::from_micros(c.fin_us),
                runtime: Duration::from_micros(c.runtime_us),
            },
        };
        let placement = CPlacement {
            ranks: Raw {
                ptr: ranks,
                len: n_ranks,
            },
            hosts: Raw {
                ptr: hosts,
                len: n_nodes,
            },
        };
        let header = base.cast::<Header<snapc_gc>>();
        let nodes = Raw {
            ptr: nodes,
            len: n_nodes,
        };
        // SAFETY: `base` is aligned for the header and inside the storage.
        unsafe {
            handle::init(header, (), |_| {
                GlobalCoordinator::new(config, placement, nodes)
            });
            gc.write(header.cast());
        }
        OK
    })
}

/// Ends the coordinator; the storage is the caller's again.
///
/// # Safety
/// `gc` a handle from `snapc_gc_init` (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_fini(gc: *mut snapc_gc) -> c_int {
    handle::fini(gc)
}

/// Names the host of node `node` (`len` bytes of UTF-8, at most
/// `SNAPC_MAX_HOST_NAME_LEN`).
///
/// # Safety
/// `gc` a handle; `host` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_set_host(
    gc: *mut snapc_gc,
    node: usize,
    host: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    let name = match unsafe { super::text(host, len) } {
        Ok(Some(n)) if n.len() <= super::SNAPC_MAX_HOST_NAME_LEN => n,
        _ => return E_INVAL,
    };
    handle::with(gc, |m| {
        let Some(h) = m.placement_mut().hosts.as_mut().get_mut(node) else {
            return Ok(snapc_status::SNAPC_E_UNKNOWN as c_int);
        };
        *h = NO_HOST;
        for (d, s) in h.bytes.iter_mut().zip(name.bytes()) {
            *d = s;
        }
        h.len = u16::try_from(name.len()).unwrap_or(0);
        Ok(OK)
    })
}

/// Places rank `vpid` on node `node` (after a migration, where it moved).
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_place_rank(gc: *mut snapc_gc, vpid: u32, node: usize) -> c_int {
    handle::with(gc, |m| {
        let p = m.placement_mut();
        let (Ok(node), true) = (u32::try_from(node), node < p.hosts.as_ref().len()) else {
            return Ok(snapc_status::SNAPC_E_UNKNOWN as c_int);
        };
        match p.ranks.as_mut().get_mut(vpid as usize) {
            Some(r) => {
                *r = node;
                Ok(OK)
            }
            None => Ok(snapc_status::SNAPC_E_UNKNOWN as c_int),
        }
    })
}

/// The bytes of a REQUEST_OP from rank `vpid`.
///
/// # Safety
/// `gc` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_rank_message(
    gc: *mut snapc_gc,
    now_us: u64,
    vpid: u32,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        handle::input_bytes(gc, bytes, len, |m, b| {
            m.handle_rank_message(instant(now_us), vpid, b)
        })
    }
}

/// The bytes of an ORTED_STATE from local coordinator `lc`.
///
/// # Safety
/// `gc` a handle; `bytes` valid for `len` bytes (NULL when 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_lc_message(
    gc: *mut snapc_gc,
    now_us: u64,
    lc: usize,
    bytes: *const u8,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe {
        handle::input_bytes(gc, bytes, len, |m, b| {
            m.handle_lc_message(instant(now_us), lc, b)
        })
    }
}

/// The runtime's own command (`snapc_gc_command_kind`; `term` and `stop`
/// for a checkpoint, 0 or 1).
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_command(
    gc: *mut snapc_gc,
    now_us: u64,
    command: c_int,
    term: c_int,
    stop: c_int,
) -> c_int {
    let command = match command {
        0 => Command::Checkpoint {
            term: term != 0,
            stop: stop != 0,
        },
        1 => Command::QuiesceStart,
        2 => Command::QuiesceEnd,
        _ => return E_INVAL,
    };
    handle::input(gc, |m| m.handle_command(instant(now_us), command))
}

/// The runtime's report that the migration it was given is done (`ok`: 0 or 1).
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_migration_done(
    gc: *mut snapc_gc,
    now_us: u64,
    ok: c_int,
) -> c_int {
    handle::input(gc, |m| m.handle_migration_done(instant(now_us), ok != 0))
}

/// The runtime's report that the restart it was given is done (`ok`: 0 or 1).
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_restart_done(gc: *mut snapc_gc, now_us: u64, ok: c_int) -> c_int {
    handle::input(gc, |m| m.handle_restart_done(instant(now_us), ok != 0))
}

/// Time passed: call at (or after) the instant from `snapc_gc_poll_timeout`.
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_timeout(gc: *mut snapc_gc, now_us: u64) -> c_int {
    handle::tell(gc, |m| m.handle_timeout(instant(now_us)))
}

/// The next action into `action`: returns 1, or 0 when there is none. A
/// message goes into `out` (`out_len` >= `SNAPC_MAX_MESSAGE_LEN`).
///
/// # Safety
/// `gc` a handle; `action` valid for a write; `out` for `out_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_poll_action(
    gc: *mut snapc_gc,
    action: *mut snapc_gc_action,
    out: *mut u8,
    out_len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::poll_action(gc, action, out, out_len, |m, b| m.poll_action(b), convert) }
}

fn report(r: &Report) -> snapc_gc_report {
    use snapc_gc_failure::*;
    use snapc_gc_op::*;
    let mut out = snapc_gc_report {
        op: (match r.kind {
            OpKind::Checkpoint => SNAPC_GC_OP_CHECKPOINT,
            OpKind::Migrate => SNAPC_GC_OP_MIGRATE,
            OpKind::Restart => SNAPC_GC_OP_RESTART,
            OpKind::QuiesceStart => SNAPC_GC_OP_QUIESCE_START,
            OpKind::QuiesceCheckpoint => SNAPC_GC_OP_QUIESCE_CHECKPOINT,
            OpKind::QuiesceEnd => SNAPC_GC_OP_QUIESCE_END,
            OpKind::Fin => SNAPC_GC_OP_FIN,
            _ => SNAPC_GC_OP_OTHER,
        }) as c_int,
        requester_is_rank: 0,
        requester_vpid: 0,
        ok: r.ok.into(),
        has_seq: r.seq.is_some().into(),
        seq: r.seq.unwrap_or(-1),
        handle: r.handle,
        reference: [0; 129],
        failure: SNAPC_GC_FAILURE_NONE as c_int,
        failure_lc: -1,
        failure_state: 0,
        started_us: r.started.as_micros(),
        duration_us: r.duration.as_micros(),
    };
    if let Requester::Rank(v) = r.requester {
        (out.requester_is_rank, out.requester_vpid) = (1, v);
    }
    if let Some(reference) = &r.reference {
        write_text(&mut out.reference, format_args!("{reference}"));
    }
    let lc = |i: usize| i64::try_from(i).unwrap_or(i64::MAX);
    (out.failure, out.failure_lc, out.failure_state) = match r.failure {
        None => (SNAPC_GC_FAILURE_NONE as c_int, -1, 0),
        Some(OperationFailure::Lc { lc: i, state }) => {
            (SNAPC_GC_FAILURE_LC as c_int, lc(i), state.code())
        }
        Some(OperationFailure::LcTimeout { lc: i }) => {
            (SNAPC_GC_FAILURE_LC_TIMEOUT as c_int, lc(i), 0)
        }
        Some(OperationFailure::Runtime) => (SNAPC_GC_FAILURE_RUNTIME as c_int, -1, 0),
        Some(OperationFailure::RuntimeTimeout) => {
            (SNAPC_GC_FAILURE_RUNTIME_TIMEOUT as c_int, -1, 0)
        }
        Some(OperationFailure::FinTimeout) => (SNAPC_GC_FAILURE_FIN_TIMEOUT as c_int, -1, 0),
        Some(_) => (SNAPC_GC_FAILURE_OTHER as c_int, -1, 0),
    };
    out
}

fn convert(a: Action) -> snapc_gc_action {
    use snapc_gc_action_kind::*;
    let mut out = snapc_gc_action {
        kind: 0,
        len: 0,
        vpid: 0,
        seq: 0,
        handle: 0,
        seq_num: 0,
        reference: [0; 129],
        report: report(&Report {
            kind: OpKind::Checkpoint,
            requester: Requester::Runtime,
            ok: false,
            seq: None,
            handle: 0,
            reference: None,
            failure: None,
            started: snapc_core::time::Instant::ZERO,
            duration: Duration::ZERO,
        }),
    };
    out.report.op = 0;
    out.kind = match a {
        Action::SendToLcs { len } => {
            out.len = len;
            SNAPC_GC_SEND_TO_LCS
        }
        Action::SendToRank { vpid, len } => {
            (out.vpid, out.len) = (vpid, len);
            SNAPC_GC_SEND_TO_RANK
        }
        Action::Established(s) => {
            (out.seq, out.handle) = (s.seq, s.handle);
            write_text(&mut out.reference, format_args!("{}", s.reference));
            SNAPC_GC_ESTABLISHED
        }
        Action::Migrate { seq, handle } => {
            (out.seq, out.handle) = (seq, handle);
            SNAPC_GC_MIGRATE
        }
        Action::Restart { seq_num } => {
            out.seq_num = seq_num;
            SNAPC_GC_RESTART
        }
        Action::Finished(r) => {
            out.report = report(&r);
            SNAPC_GC_FINISHED
        }
        _ => SNAPC_GC_OTHER,
    } as c_int;
    out
}

/// The next deadline: returns 1 and stores it in `deadline_us`, or 0 when
/// nothing waits with a deadline.
///
/// # Safety
/// `gc` a handle; `deadline_us` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_poll_timeout(
    gc: *const snapc_gc,
    deadline_us: *mut u64,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::poll_timeout(gc, deadline_us, |m| m.poll_timeout()) }
}

/// What the coordinator is doing (flags of `snapc_gc_state`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum snapc_gc_state_flag {
    /// INIT was received and FIN not yet acknowledged.
    SNAPC_GC_CHECKPOINTABLE = 1,
    /// An operation runs.
    SNAPC_GC_BUSY = 2,
    /// The job is quiesced.
    SNAPC_GC_QUIESCED = 4,
    /// FIN was acknowledged.
    SNAPC_GC_FINISHED_JOB = 8,
}

/// The coordinator's state as `snapc_gc_state_flag` bits (or a negative status).
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_state(gc: *const snapc_gc) -> c_int {
    use snapc_gc_state_flag::*;
    handle::query(gc, |m| {
        bits([
            (m.is_checkpointable(), SNAPC_GC_CHECKPOINTABLE as c_int),
            (m.is_busy(), SNAPC_GC_BUSY as c_int),
            (m.is_quiesced(), SNAPC_GC_QUIESCED as c_int),
            (m.is_finished(), SNAPC_GC_FINISHED_JOB as c_int),
        ])
    })
}

/// Local coordinator `lc`'s result in the current or last operation
/// (`snapc_ckpt_state`), or a negative status.
///
/// # Safety
/// `gc` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_lc_result(gc: *const snapc_gc, lc: usize) -> c_int {
    handle::query(gc, |m| {
        m.lc_results()
            .nth(lc)
            .map_or(snapc_status::SNAPC_E_UNKNOWN as c_int, |s| s.code())
    })
}

/// The handle of the current (or last) RESTART, NUL-terminated into `buf`
/// (`len` bytes). Returns its length, or `SNAPC_E_NOSPACE`.
///
/// # Safety
/// `gc` a handle; `buf` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_restart_handle(
    gc: *const snapc_gc,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    if buf.is_null() || len > isize::MAX as usize {
        return E_INVAL;
    }
    handle::query(gc, |m| {
        let h = m.restart_handle();
        if h.len() >= len {
            return E_NOSPACE;
        }
        // SAFETY: the caller's promise for `len` bytes.
        let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
        write_text(out, format_args!("{h}"));
        c_int::try_from(h.len()).unwrap_or(c_int::MAX)
    })
}

/// Move `i` of the current (or last) migration plan into `out`: returns 1,
/// or 0 past the last move.
///
/// # Safety
/// `gc` a handle; `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_migration_move(
    gc: *const snapc_gc,
    i: usize,
    out: *mut snapc_gc_move,
) -> c_int {
    if out.is_null() || !out.is_aligned() {
        return E_INVAL;
    }
    handle::query(gc, |m| {
        use snapc_gc_destination::*;
        let Some(mv) = m.migration_plan().moves().get(i) else {
            return 0;
        };
        let mut c = snapc_gc_move {
            vpid: mv.vpid,
            dest: 0,
            host: [0; 256],
            with_vpid: 0,
        };
        c.dest = (match &mv.dest {
            Destination::Anywhere => SNAPC_GC_DEST_ANYWHERE,
            Destination::OffNode => SNAPC_GC_DEST_OFF_NODE,
            Destination::Host(h) => {
                write_text(&mut c.host, format_args!("{h}"));
                SNAPC_GC_DEST_HOST
            }
            Destination::With(v) => {
                c.with_vpid = *v;
                SNAPC_GC_DEST_WITH
            }
        }) as c_int;
        // SAFETY: checked for NULL and alignment; the caller's promise.
        unsafe { out.write(c) };
        1
    })
}

/// The sequence number the next snapshot gets, into `seq`: returns 1, or
/// 0 when they are used up.
///
/// # Safety
/// `gc` a handle; `seq` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_next_seq(gc: *const snapc_gc, seq: *mut u32) -> c_int {
    if seq.is_null() || !seq.is_aligned() {
        return E_INVAL;
    }
    handle::query(gc, |m| match m.next_seq() {
        Some(n) => {
            // SAFETY: checked for NULL and alignment; the caller's promise.
            unsafe { seq.write(n) };
            1
        }
        None => 0,
    })
}

/// Why the last input was refused, NUL-terminated into `buf` (`len` bytes,
/// cut if needed). Returns the text's full length.
///
/// # Safety
/// `gc` a handle; `buf` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn snapc_gc_last_error(
    gc: *const snapc_gc,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    // SAFETY: the caller's promise.
    unsafe { handle::last_error(gc, buf, len) }
}
