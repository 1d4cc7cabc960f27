//! The fuzz oracle of the runtime entry points (snapc_ac_*, snapc_lc_*,
//! snapc_gc_*, snapc_request_encode, snapc_fifo_name): a [`Scenario`] is
//! any sequence of calls with arbitrary arguments and bytes (NULL and
//! misaligned pointers, buffers too small, storage at any offset, forged
//! slots, handles of the wrong kind) and of "pumps" that wire the three
//! machines together so that whole handshakes run. [`run`] checks: no
//! crash, every status is one the ABI names, every action's lengths fit its
//! buffers, every text is NUL-terminated, no byte outside the storage or
//! buffer given is written (guard bytes around each).
//!
//! The cargo-fuzz target `capi_runtime` (fuzz/) compiles this module with
//! the rest of `runtime` from source; the unit test below replays its
//! stored inputs (fuzz/corpus/capi_runtime) on stable Rust.
#![allow(clippy::undocumented_unsafe_blocks, missing_docs)]

use super::ac::*;
use super::gc::*;
use super::lc::*;
use super::*;
use arbitrary::Arbitrary;
use core::ffi::c_char;
use std::collections::VecDeque;
use std::ptr::{null, null_mut};

const GUARD: usize = 64;
const CANARY: u8 = 0xa5;

#[derive(Arbitrary, Debug)]
pub enum SlotRef {
    Seen(u8),
    Raw(u32, u32),
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    Advance(u32),
    Pump,
    AcSignal,
    AcProgress,
    AcOpened,
    AcRead(Vec<u8>),
    AcWriteDone,
    AcIoError(i32),
    AcPrepared(i32),
    AcCheckpointed(i32, u32),
    AcRecovered(i32),
    AcSstoreDone(i32),
    AcSstoreGlobal(i32, i32, Option<Vec<u8>>),
    AcTeardownDone,
    AcGcGone,
    AcGcMessage(Vec<u8>),
    AcTimeout,
    AcRequest {
        op: i32,
        seq: i32,
        handle: Option<Vec<u8>>,
        entries: Vec<(i32, Option<Vec<u8>>, i32, i32)>,
        out_len: u16,
    },
    AcPoll(u16),
    LcAdd(u32, u32, u32),
    LcRemove(u32, u32),
    LcUpdatePid(u32, u32, u32),
    LcGcMessage(Vec<u8>),
    LcProcessMessage(u32, Vec<u8>),
    LcFifosExist(SlotRef),
    LcOpened(SlotRef),
    LcWritten(SlotRef),
    LcRead(SlotRef, Vec<u8>),
    LcStopped(SlotRef),
    LcIoError(SlotRef, i32),
    LcTimeout,
    LcPoll(u16),
    GcRankMessage(u32, Vec<u8>),
    GcLcMessage(u8, Vec<u8>),
    GcCommand(i32, i32, i32),
    GcMigrationDone(i32),
    GcRestartDone(i32),
    GcTimeout,
    GcPoll(u16),
    GcSetHost(u8, Vec<u8>),
    GcPlaceRank(u32, u8),
    GcQueries(u8),
    WrongKind(u8),
    Encode(i32, i32, u16),
    FifoName(i32, u32, u32, u8),
    NullEverything,
}

#[derive(Arbitrary, Debug)]
pub struct Scenario {
    n_procs: u8,
    n_nodes: u8,
    n_ranks: u8,
    offsets: [u8; 3],
    ac_pid: u32,
    ops: Vec<Op>,
}

/// Storage with guard bytes on both sides, placed at an arbitrary offset.
struct Guarded {
    buf: Vec<u8>,
    start: usize,
    size: usize,
}

impl Guarded {
    fn new(size: usize, offset: u8) -> Self {
        let start = GUARD + usize::from(offset % 16);
        Self {
            buf: vec![CANARY; start + size + GUARD],
            start,
            size,
        }
    }

    fn ptr(&mut self) -> *mut u8 {
        self.buf[self.start..].as_mut_ptr()
    }

    fn check(&self) {
        assert!(
            self.buf[..self.start].iter().all(|&b| b == CANARY),
            "write before the storage"
        );
        assert!(
            self.buf[self.start + self.size..]
                .iter()
                .all(|&b| b == CANARY),
            "write past the storage"
        );
    }
}

fn known(status: i32) {
    assert!(
        (-15..=0).contains(&status),
        "status {status} is not a snapc_status"
    );
}

fn nul_terminated(text: &[c_char]) {
    assert!(text.contains(&0), "text without its NUL");
}

struct World {
    now: u64,
    ac: *mut snapc_ac,
    lc: *mut snapc_lc,
    gc: *mut snapc_gc,
    ac_pid: u32,
    slots: Vec<snapc_slot>,
    msg: Vec<u8>,
    lc_to_ac: VecDeque<u8>,
    ac_to_lc: VecDeque<u8>,
    ac_wants: Option<usize>,
    lc_wants: Option<(snapc_slot, usize)>,
    /// What the pumps saw, for the unit tests.
    seen: Seen,
}

/// What a run's pumps saw complete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Snapshots the global coordinator established.
    pub established: u32,
    /// Handshakes the app coordinator ended without an error.
    pub handshakes_ok: u32,
    /// Process reports of the local coordinator with a success.
    pub reports_ok: u32,
}

impl World {
    fn buf(&mut self, len: u16) -> (*mut u8, usize) {
        let len = usize::from(len).min(self.msg.len());
        (self.msg.as_mut_ptr(), len)
    }

    fn slot(&self, r: &SlotRef) -> snapc_slot {
        match r {
            SlotRef::Seen(i) if !self.slots.is_empty() => {
                self.slots[usize::from(*i) % self.slots.len()]
            }
            SlotRef::Seen(_) => snapc_slot::default(),
            SlotRef::Raw(index, generation) => snapc_slot {
                index: *index,
                generation: *generation,
            },
        }
    }

    /// The next action of a machine (`poll`: its `snapc_*_poll_action`)
    /// with a message buffer of `len` bytes at most.
    unsafe fn next<H, A>(
        &mut self,
        handle: *mut H,
        len: u16,
        poll: unsafe extern "C" fn(*mut H, *mut A, *mut u8, usize) -> c_int,
    ) -> Option<A> {
        let mut a = core::mem::MaybeUninit::<A>::uninit();
        let (out, out_len) = self.buf(len);
        let r = unsafe { poll(handle, a.as_mut_ptr(), out, out_len) };
        known(r.min(0));
        assert!(r <= 1);
        (r == 1).then(|| unsafe { a.assume_init() })
    }

    unsafe fn poll_ac(&mut self, len: u16, answer: bool) -> bool {
        let Some(a) = (unsafe { self.next(self.ac, len, snapc_ac_poll_action) }) else {
            return false;
        };
        assert!(a.len <= SNAPC_MAX_MESSAGE_LEN);
        nul_terminated(&a.outcome.checkpoint.error.text);
        nul_terminated(&a.outcome.request.reference);
        if a.kind == snapc_ac_action_kind::SNAPC_AC_OUTCOME as i32
            && a.outcome.kind == snapc_outcome_kind::SNAPC_OUTCOME_HANDSHAKE as i32
            && a.outcome.checkpoint.ok == 1
        {
            self.seen.handshakes_ok += 1;
        }
        if !answer {
            return true;
        }
        let now = self.now;
        let ac = self.ac;
        use snapc_ac_action_kind::*;
        let r = unsafe {
            match a.kind {
                k if k == SNAPC_AC_OPEN_CHANNEL as i32 => snapc_ac_opened(ac, now),
                k if k == SNAPC_AC_READ as i32 => {
                    assert!(a.len <= SNAPC_MAX_FRAME_LEN);
                    self.ac_wants = Some(a.len);
                    0
                }
                k if k == SNAPC_AC_WRITE as i32 => {
                    assert!(a.len <= 4);
                    self.ac_to_lc.extend(&a.bytes[..a.len]);
                    snapc_ac_write_done(ac, now)
                }
                k if k == SNAPC_AC_PREPARE as i32 => snapc_ac_prepared(ac, now, 0),
                k if k == SNAPC_AC_CHECKPOINT as i32 => snapc_ac_checkpointed(ac, now, 0, 0),
                k if k == SNAPC_AC_RECOVER as i32 => snapc_ac_recovered(ac, now, 1),
                k if k == SNAPC_AC_SSTORE as i32 => match a.sstore {
                    3 | 6 => snapc_ac_sstore_done(ac, now, 1),
                    7 => snapc_ac_sstore_global(ac, now, 1, 0, b"ref".as_ptr(), 3),
                    _ => 0,
                },
                k if k == SNAPC_AC_SEND_TO_DAEMON as i32 => {
                    snapc_lc_process_message(self.lc, now, self.ac_pid, self.msg.as_ptr(), a.len)
                }
                k if k == SNAPC_AC_UNLINK as i32 => snapc_ac_teardown_done(ac, now),
                _ => 0,
            }
        };
        known(r);
        true
    }

    unsafe fn poll_lc(&mut self, len: u16, answer: bool) -> bool {
        let Some(a) = (unsafe { self.next(self.lc, len, snapc_lc_poll_action) }) else {
            return false;
        };
        assert!(a.len <= SNAPC_MAX_MESSAGE_LEN);
        nul_terminated(&a.report.text);
        if a.kind == snapc_lc_action_kind::SNAPC_LC_REPORT as i32 && a.report.ok == 1 {
            self.seen.reports_ok += 1;
        }
        if self.slots.len() < 64 {
            self.slots.push(a.slot);
        }
        if !answer {
            return true;
        }
        let now = self.now;
        let lc = self.lc;
        use snapc_lc_action_kind::*;
        let r = unsafe {
            match a.kind {
                k if k == SNAPC_LC_SIGNAL as i32 => {
                    if a.pid == self.ac_pid {
                        let r = snapc_ac_signal(self.ac, now);
                        assert!((0..=2).contains(&r) || r == -1, "{r}");
                    }
                    0
                }
                k if k == SNAPC_LC_WATCH_FIFOS as i32 => snapc_lc_fifos_exist(lc, now, a.slot),
                k if k == SNAPC_LC_OPEN_FIFOS as i32 => snapc_lc_opened(lc, now, a.slot),
                k if k == SNAPC_LC_WRITE as i32 => {
                    assert!(a.len <= SNAPC_MAX_FRAME_LEN);
                    self.lc_to_ac.extend(&a.bytes[..a.len]);
                    snapc_lc_written(lc, now, a.slot)
                }
                k if k == SNAPC_LC_READ as i32 => {
                    assert!(a.len <= SNAPC_MAX_FRAME_LEN);
                    self.lc_wants = Some((a.slot, a.len));
                    0
                }
                k if k == SNAPC_LC_WAIT_STOPPED as i32 => snapc_lc_stopped(lc, now, a.slot),
                k if k == SNAPC_LC_SEND_TO_GC as i32 => {
                    snapc_gc_lc_message(self.gc, now, 0, self.msg.as_ptr(), a.len)
                }
                _ => 0,
            }
        };
        known(r);
        true
    }

    unsafe fn poll_gc(&mut self, len: u16, answer: bool) -> bool {
        let Some(a) = (unsafe { self.next(self.gc, len, snapc_gc_poll_action) }) else {
            return false;
        };
        assert!(a.len <= SNAPC_MAX_MESSAGE_LEN);
        nul_terminated(&a.reference);
        nul_terminated(&a.report.reference);
        if a.kind == snapc_gc_action_kind::SNAPC_GC_ESTABLISHED as i32 {
            self.seen.established += 1;
        }
        if !answer {
            return true;
        }
        let now = self.now;
        use snapc_gc_action_kind::*;
        let r = unsafe {
            match a.kind {
                k if k == SNAPC_GC_SEND_TO_LCS as i32 => {
                    snapc_lc_gc_message(self.lc, now, self.msg.as_ptr(), a.len)
                }
                k if k == SNAPC_GC_SEND_TO_RANK as i32 => {
                    snapc_ac_gc_message(self.ac, now, self.msg.as_ptr(), a.len)
                }
                k if k == SNAPC_GC_MIGRATE as i32 => snapc_gc_migration_done(self.gc, now, 1),
                k if k == SNAPC_GC_RESTART as i32 => snapc_gc_restart_done(self.gc, now, 1),
                _ => 0,
            }
        };
        known(r);
        true
    }

    /// Carries every action out, answering as a healthy world would.
    unsafe fn pump(&mut self) {
        for _ in 0..256 {
            let mut any = false;
            unsafe {
                any |= self.poll_gc(u16::MAX, true);
                any |= self.poll_lc(u16::MAX, true);
                any |= self.poll_ac(u16::MAX, true);
                known(snapc_ac_progress(self.ac, self.now));
            }
            if let Some(len) = self.ac_wants
                && self.lc_to_ac.len() >= len
            {
                let bytes: Vec<u8> = self.lc_to_ac.drain(..len).collect();
                self.ac_wants = None;
                known(unsafe { snapc_ac_read(self.ac, self.now, bytes.as_ptr(), bytes.len()) });
                any = true;
            }
            if let Some((slot, len)) = self.lc_wants
                && self.ac_to_lc.len() >= len
            {
                let bytes: Vec<u8> = self.ac_to_lc.drain(..len).collect();
                self.lc_wants = None;
                known(unsafe {
                    snapc_lc_read(self.lc, self.now, slot, bytes.as_ptr(), bytes.len())
                });
                any = true;
            }
            self.now += 100;
            if !any {
                break;
            }
        }
    }
}

fn opt(v: &Option<Vec<u8>>) -> (*const u8, usize) {
    match v {
        Some(b) => (b.as_ptr(), b.len()),
        None => (null(), 0),
    }
}

/// Runs one scenario; panics on a broken invariant.
pub fn run(s: &Scenario) -> Seen {
    let n_procs = usize::from(s.n_procs % 9);
    let n_nodes = usize::from(s.n_nodes % 5);
    let n_ranks = u32::from(s.n_ranks % 9);
    let mut ac_mem = Guarded::new(snapc_ac_storage_size(), s.offsets[0]);
    let mut lc_mem = Guarded::new(snapc_lc_storage_size(n_procs), s.offsets[1]);
    let mut gc_mem = Guarded::new(snapc_gc_storage_size(n_nodes, n_ranks), s.offsets[2]);
    let ac_pid = s.ac_pid % 100 + 1;
    let mut w = unsafe {
        let mut acc = core::mem::MaybeUninit::uninit();
        snapc_ac_config_default(acc.as_mut_ptr(), ac_pid, snapc_name { jobid: 1, vpid: 0 });
        let mut acc = acc.assume_init();
        acc.deadlines = snapc_ac_deadlines {
            open_us: 1000,
            read_us: 1000,
            write_us: 1000,
            stall_us: 1000,
            host_us: 1000,
            release_us: 5000,
            own_handshake_us: 5000,
            op_response_us: 9000,
            fin_ack_us: 9000,
        };
        let mut ac = null_mut();
        assert_eq!(snapc_ac_init(ac_mem.ptr(), ac_mem.size, &acc, &mut ac), 0);
        let mut lc = null_mut();
        assert_eq!(
            snapc_lc_init(lc_mem.ptr(), lc_mem.size, n_procs, null(), &mut lc),
            0
        );
        let mut gcc = core::mem::MaybeUninit::uninit();
        snapc_gc_config_default(gcc.as_mut_ptr(), 1, n_ranks);
        let mut gc = null_mut();
        assert_eq!(
            snapc_gc_init(gc_mem.ptr(), gc_mem.size, n_nodes, gcc.as_ptr(), &mut gc),
            0
        );
        if n_procs > 0 {
            known(snapc_lc_add_process(
                lc,
                snapc_name { jobid: 1, vpid: 0 },
                ac_pid,
                null_mut(),
            ));
        }
        World {
            now: 1,
            ac,
            lc,
            gc,
            ac_pid,
            slots: Vec::new(),
            msg: vec![0; SNAPC_MAX_MESSAGE_LEN],
            lc_to_ac: VecDeque::new(),
            ac_to_lc: VecDeque::new(),
            ac_wants: None,
            lc_wants: None,
            seen: Seen::default(),
        }
    };
    for op in s.ops.iter().take(200) {
        let now = w.now;
        let (ac, lc, gc) = (w.ac, w.lc, w.gc);
        let r: i32 = unsafe {
            match op {
                Op::Advance(us) => {
                    w.now = w.now.saturating_add(u64::from(*us) * 10);
                    0
                }
                Op::Pump => {
                    w.pump();
                    0
                }
                Op::AcSignal => {
                    let r = snapc_ac_signal(ac, now);
                    assert!((0..=2).contains(&r), "{r}");
                    assert!(snapc_ac_pending(ac) == 1 || r == 2);
                    0
                }
                Op::AcProgress => snapc_ac_progress(ac, now),
                Op::AcOpened => snapc_ac_opened(ac, now),
                Op::AcRead(b) => snapc_ac_read(ac, now, b.as_ptr(), b.len()),
                Op::AcWriteDone => snapc_ac_write_done(ac, now),
                Op::AcIoError(e) => snapc_ac_io_error(ac, now, *e),
                Op::AcPrepared(r) => snapc_ac_prepared(ac, now, *r),
                Op::AcCheckpointed(r, pid) => snapc_ac_checkpointed(ac, now, *r, *pid),
                Op::AcRecovered(ok) => snapc_ac_recovered(ac, now, *ok),
                Op::AcSstoreDone(ok) => snapc_ac_sstore_done(ac, now, *ok),
                Op::AcSstoreGlobal(has, seq, reference) => {
                    let (p, l) = opt(reference);
                    snapc_ac_sstore_global(ac, now, *has, *seq, p, l)
                }
                Op::AcTeardownDone => snapc_ac_teardown_done(ac, now),
                Op::AcGcGone => snapc_ac_gc_gone(ac, now),
                Op::AcGcMessage(b) => snapc_ac_gc_message(ac, now, b.as_ptr(), b.len()),
                Op::AcTimeout => snapc_ac_timeout(ac, now),
                Op::AcRequest {
                    op,
                    seq,
                    handle,
                    entries,
                    out_len,
                } => {
                    let table: Vec<snapc_migrate_entry> = entries
                        .iter()
                        .map(|(vpid, host, pref, off)| {
                            let (p, l) = opt(host);
                            snapc_migrate_entry {
                                vpid: *vpid,
                                host: p,
                                host_len: l,
                                vpid_pref: *pref,
                                off_node: *off,
                            }
                        })
                        .collect();
                    let (h, hl) = opt(handle);
                    let req = snapc_request {
                        op: *op,
                        seq_num: *seq,
                        handle: h,
                        handle_len: hl,
                        entries: if table.is_empty() {
                            null()
                        } else {
                            table.as_ptr()
                        },
                        n_entries: table.len(),
                    };
                    let mut out = vec![CANARY; usize::from(*out_len) + GUARD];
                    let mut written = 0usize;
                    let r = snapc_ac_request(
                        ac,
                        now,
                        &req,
                        out.as_mut_ptr(),
                        usize::from(*out_len),
                        &mut written,
                    );
                    if r == 0 {
                        assert!(written <= usize::from(*out_len));
                    }
                    assert!(out[usize::from(*out_len)..].iter().all(|&b| b == CANARY));
                    let mut len = 0usize;
                    let r2 = snapc_request_encode(
                        1,
                        &req,
                        out.as_mut_ptr(),
                        usize::from(*out_len),
                        &mut len,
                    );
                    known(r2);
                    assert!(out[usize::from(*out_len)..].iter().all(|&b| b == CANARY));
                    r
                }
                Op::AcPoll(len) => {
                    w.poll_ac(*len, false);
                    0
                }
                Op::LcAdd(j, v, pid) => {
                    let mut slot = snapc_slot::default();
                    snapc_lc_add_process(
                        lc,
                        snapc_name {
                            jobid: *j % 3,
                            vpid: *v % 10,
                        },
                        *pid % 200,
                        &mut slot,
                    )
                }
                Op::LcRemove(j, v) => snapc_lc_remove_process(
                    lc,
                    now,
                    snapc_name {
                        jobid: *j % 3,
                        vpid: *v % 10,
                    },
                ),
                Op::LcUpdatePid(j, v, pid) => snapc_lc_update_pid(
                    lc,
                    now,
                    snapc_name {
                        jobid: *j % 3,
                        vpid: *v % 10,
                    },
                    *pid % 200,
                    null_mut(),
                ),
                Op::LcGcMessage(b) => snapc_lc_gc_message(lc, now, b.as_ptr(), b.len()),
                Op::LcProcessMessage(pid, b) => {
                    snapc_lc_process_message(lc, now, *pid, b.as_ptr(), b.len())
                }
                Op::LcFifosExist(s) => snapc_lc_fifos_exist(lc, now, w.slot(s)),
                Op::LcOpened(s) => snapc_lc_opened(lc, now, w.slot(s)),
                Op::LcWritten(s) => snapc_lc_written(lc, now, w.slot(s)),
                Op::LcRead(s, b) => snapc_lc_read(lc, now, w.slot(s), b.as_ptr(), b.len()),
                Op::LcStopped(s) => snapc_lc_stopped(lc, now, w.slot(s)),
                Op::LcIoError(s, e) => snapc_lc_io_error(lc, now, w.slot(s), *e),
                Op::LcTimeout => snapc_lc_timeout(lc, now),
                Op::LcPoll(len) => {
                    w.poll_lc(*len, false);
                    0
                }
                Op::GcRankMessage(v, b) => {
                    snapc_gc_rank_message(gc, now, *v % 10, b.as_ptr(), b.len())
                }
                Op::GcLcMessage(i, b) => {
                    snapc_gc_lc_message(gc, now, usize::from(*i % 6), b.as_ptr(), b.len())
                }
                Op::GcCommand(c, t, st) => snapc_gc_command(gc, now, *c, *t, *st),
                Op::GcMigrationDone(ok) => snapc_gc_migration_done(gc, now, *ok),
                Op::GcRestartDone(ok) => snapc_gc_restart_done(gc, now, *ok),
                Op::GcTimeout => snapc_gc_timeout(gc, now),
                Op::GcPoll(len) => {
                    w.poll_gc(*len, false);
                    0
                }
                Op::GcSetHost(node, host) => {
                    snapc_gc_set_host(gc, usize::from(*node % 6), host.as_ptr(), host.len())
                }
                Op::GcPlaceRank(v, node) => {
                    snapc_gc_place_rank(gc, *v % 10, usize::from(*node % 6))
                }
                Op::GcQueries(i) => {
                    let i = usize::from(*i % 8);
                    known(snapc_gc_state(gc).min(0));
                    let _ = snapc_gc_lc_result(gc, i);
                    let mut mv = core::mem::MaybeUninit::<snapc_gc_move>::uninit();
                    if snapc_gc_migration_move(gc, i, mv.as_mut_ptr()) == 1 {
                        nul_terminated(&mv.assume_init().host);
                    }
                    let mut text = [CANARY as c_char; 40];
                    let len = 1 + i * 4;
                    let r = snapc_gc_restart_handle(gc, text.as_mut_ptr(), len);
                    known(r.min(0));
                    assert!(text[len..].iter().all(|&b| b == CANARY as c_char));
                    let r = snapc_lc_last_error(lc, text.as_mut_ptr(), len);
                    known(r.min(0));
                    assert!(text[len..].iter().all(|&b| b == CANARY as c_char));
                    let r = snapc_gc_last_error(gc, text.as_mut_ptr(), len);
                    known(r.min(0));
                    let r = snapc_ac_last_error(ac, text.as_mut_ptr(), len);
                    known(r.min(0));
                    assert!(text[len..].iter().all(|&b| b == CANARY as c_char));
                    let mut t = 0u64;
                    known(snapc_ac_poll_timeout(ac, &mut t).min(0));
                    known(snapc_lc_poll_timeout(lc, &mut t).min(0));
                    known(snapc_gc_poll_timeout(gc, &mut t).min(0));
                    let mut seq = 0u32;
                    known(snapc_gc_next_seq(gc, &mut seq).min(0));
                    known(snapc_lc_phase(lc).min(0));
                    known(snapc_ac_state(ac).min(0));
                    0
                }
                Op::WrongKind(k) => {
                    // A handle of one kind given to another kind's calls.
                    let (a, l, g) = match k % 3 {
                        0 => (
                            lc.cast::<snapc_ac>(),
                            gc.cast::<snapc_lc>(),
                            ac.cast::<snapc_gc>(),
                        ),
                        1 => (gc.cast(), ac.cast(), lc.cast()),
                        _ => (
                            ac.cast::<u8>().wrapping_add(1).cast(),
                            lc.cast::<u8>().wrapping_add(1).cast(),
                            gc.cast::<u8>().wrapping_add(1).cast(),
                        ),
                    };
                    assert_eq!(snapc_ac_progress(a, now), -1);
                    assert_eq!(snapc_lc_timeout(l, now), -1);
                    assert_eq!(snapc_gc_timeout(g, now), -1);
                    0
                }
                Op::Encode(op, seq, len) => {
                    let req = snapc_request {
                        op: *op,
                        seq_num: *seq,
                        handle: b"h".as_ptr(),
                        handle_len: 1,
                        entries: null(),
                        n_entries: 0,
                    };
                    let mut out = vec![CANARY; usize::from(*len) + GUARD];
                    let mut n = 0;
                    let r =
                        snapc_request_encode(1, &req, out.as_mut_ptr(), usize::from(*len), &mut n);
                    assert!(out[usize::from(*len)..].iter().all(|&b| b == CANARY));
                    r
                }
                Op::FifoName(kind, pid, n, len) => {
                    let mut out = [CANARY as c_char; 300];
                    let len = usize::from(*len);
                    let r = snapc_fifo_name(*kind, *pid, *n, out.as_mut_ptr(), len);
                    assert!(out[len..].iter().all(|&b| b == CANARY as c_char));
                    if r == 0 {
                        nul_terminated(&out[..len]);
                    }
                    r
                }
                Op::NullEverything => {
                    assert_eq!(snapc_ac_progress(null_mut(), now), -1);
                    assert_eq!(
                        snapc_lc_poll_action(lc, null_mut(), w.msg.as_mut_ptr(), w.msg.len()),
                        -1
                    );
                    assert_eq!(
                        snapc_gc_poll_action(gc, null_mut(), w.msg.as_mut_ptr(), w.msg.len()),
                        -1
                    );
                    assert_eq!(snapc_lc_read(lc, now, snapc_slot::default(), null(), 4), -1);
                    assert_eq!(snapc_ac_read(ac, now, null(), 1), -1);
                    assert_eq!(snapc_gc_rank_message(gc, now, 0, null(), 2), -1);
                    assert_eq!(snapc_lc_init(null_mut(), 0, 1, null(), null_mut()), -1);
                    assert_eq!(snapc_fifo_name(0, 1, 1, null_mut(), 10), -1);
                    let mut a = core::mem::MaybeUninit::<snapc_lc_action>::uninit();
                    assert_eq!(
                        snapc_lc_poll_action(lc, a.as_mut_ptr(), w.msg.as_mut_ptr(), 10),
                        -2
                    );
                    0
                }
            }
        };
        known(r.min(0));
    }
    unsafe { w.pump() };
    ac_mem.check();
    lc_mem.check();
    gc_mem.check();
    unsafe {
        assert_eq!(snapc_ac_fini(w.ac), 0);
        assert_eq!(snapc_lc_fini(w.lc), 0);
        assert_eq!(snapc_gc_fini(w.gc), 0);
        assert_eq!(
            snapc_lc_timeout(w.lc, 0),
            -1,
            "a finished handle is refused"
        );
    }
    w.seen
}

#[cfg(test)]
mod tests {
    use super::{Op, Scenario, Seen};
    use arbitrary::{Arbitrary, Unstructured};
    use std::path::Path;

    /// INIT, then the runtime's checkpoint, then pumps: the three machines,
    /// through the C entry points alone, complete one checkpoint of one
    /// process (each frame and message crossing as bytes).
    #[test]
    fn a_pumped_checkpoint_goes_through_all_three_machines() {
        let mut init = vec![0u8; 64];
        let mut len = 0;
        let req = super::snapc_request {
            op: 1,
            seq_num: 0,
            handle: core::ptr::null(),
            handle_len: 0,
            entries: core::ptr::null(),
            n_entries: 0,
        };
        assert_eq!(
            unsafe { super::snapc_request_encode(1, &req, init.as_mut_ptr(), 64, &mut len) },
            0
        );
        init.truncate(len);
        let scenario = |ops| Scenario {
            n_procs: 1,
            n_nodes: 1,
            n_ranks: 1,
            offsets: [1, 2, 3],
            ac_pid: 41,
            ops,
        };
        let seen = super::run(&scenario(vec![
            Op::GcRankMessage(0, init.clone()),
            Op::GcCommand(0, 0, 0),
            Op::Pump,
            Op::GcCommand(0, 0, 0),
            Op::Pump,
        ]));
        assert_eq!(
            seen,
            Seen {
                established: 2,
                handshakes_ok: 2,
                reports_ok: 2
            }
        );
        // Without INIT the job is not checkpointable: nothing runs.
        let seen = super::run(&scenario(vec![Op::GcCommand(0, 0, 0), Op::Pump]));
        assert_eq!(seen, Seen::default());
    }

    #[test]
    fn stored_fuzz_inputs_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/capi_runtime");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            // As libfuzzer-sys decodes a typed input.
            let s = Scenario::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
            super::run(&s);
            n += 1;
        }
        assert!(n > 0, "no stored inputs in {}", dir.display());
    }
}
