//! The global coordinator under arbitrary inputs in any order, against a
//! model of its operations.

use crate::generators::global::{
    GC_HOSTS, GC_JOB, GC_LCS, GC_MOVES, GC_PLACEMENT, GlobalInput, GlobalScenario,
};
use crate::generators::{carryable, pick};
use snapc_core::global::{
    Action as GcAction, Command, Config as GcConfig, GlobalCoordinator,
    GlobalDeadlines as GcDeadlines, InputError as GcInputError, NodeSlot, OpKind, Requester,
    Snapshot,
};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{
    CkptState, FromGc, List, Message, MigrateEntry, OpEvent, OpResponse, OrtedState, Request,
    RequestOp, StateCode, ToGc,
};
use snapc_core::{MAX_MESSAGE_LEN, MessageBuf};

type Gc = GlobalCoordinator<[&'static str; 4], [NodeSlot; GC_LCS], GC_MOVES>;

/// A REQUEST_OP from rank `from`, through the machine's bytes boundary.
fn gc_request(
    m: &mut Gc,
    now: Instant,
    from: u32,
    req: &RequestOp<'_>,
) -> Result<(), GcInputError> {
    let mut buf = vec![0u8; req.buffer_len()];
    let n = req.emit(&mut buf).expect("the request encodes");
    m.handle_rank_message(now, from, &buf[..n])
}

/// LC `lc` reports the state the model expects, which the machine takes.
fn gc_expected(m: &mut Gc, model: &mut GcModel, now: Instant, lc: usize) {
    let state = model.expected();
    let report = OrtedState {
        quick: true,
        state: StateCode::plain(state),
    };
    gc_orted(m, now, lc, report).expect("an LC's report is taken");
    model.reported(lc, state);
}

/// An ORTED_STATE from LC `lc`, through the machine's bytes boundary.
fn gc_orted(m: &mut Gc, now: Instant, lc: usize, msg: OrtedState) -> Result<(), GcInputError> {
    let mut buf = [0u8; 16];
    let n = msg.emit(&mut buf).expect("ORTED_STATE encodes");
    m.handle_lc_message(now, lc, &buf[..n])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GcStep {
    Collect,
    Migrating,
    Recover,
    Restarting,
}

/// The operation the harness saw start.
#[derive(Debug)]
struct GcOp {
    kind: OpKind,
    requester: Requester,
    step: GcStep,
    /// Each LC's first result fed while collecting.
    collect: [Option<CkptState>; GC_LCS],
    /// Each LC's first result fed while recovering.
    recover: [Option<CkptState>; GC_LCS],
    migration_ok: Option<bool>,
    established: Option<Snapshot>,
    /// An input arrived with a deadline already due: the machine applied it
    /// first, so the harness no longer knows which reports counted.
    blind: bool,
}

impl GcOp {
    fn all_collected(&self, state: CkptState) -> bool {
        self.collect.iter().all(|&s| s == Some(state))
    }

    fn all_recovered(&self) -> bool {
        self.recover
            .iter()
            .all(|&s| s == Some(CkptState::Recovered))
    }
}

#[derive(Debug, Default)]
struct GcModel {
    op: Option<GcOp>,
    quiesced: Option<u32>,
    /// FINs accepted and not yet ended (a new one may be accepted in the
    /// input whose start ends the old one by its deadline).
    fins: Vec<u32>,
    fin_acked: bool,
    max_handle: u32,
    last_established: Option<u32>,
    last_report_seq: Option<i64>,
    quiesce_checkpoint: Option<Snapshot>,
    /// The vpid of the rank whose request is the current input.
    from: Option<u32>,
    /// Who the current input comes from, if it may start an operation.
    requester: Option<Requester>,
}

impl GcModel {
    /// The state LC reports would carry if all went well.
    fn expected(&self) -> CkptState {
        match &self.op {
            Some(op) if op.step == GcStep::Recover => CkptState::Recovered,
            Some(op) if op.kind == OpKind::QuiesceStart => CkptState::IncPreped,
            _ => CkptState::FinishedLocal,
        }
    }

    /// LC `lc` reported `state` (the harness's side of the bookkeeping).
    fn reported(&mut self, lc: usize, state: CkptState) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        if lc >= GC_LCS {
            return;
        }
        let slot = match op.step {
            GcStep::Collect
                if matches!(
                    state,
                    CkptState::FinishedLocal
                        | CkptState::IncPreped
                        | CkptState::Error
                        | CkptState::NoCkpt
                        | CkptState::NoRestart
                ) =>
            {
                &mut op.collect[lc]
            }
            GcStep::Recover
                if matches!(
                    state,
                    CkptState::Recovered
                        | CkptState::Error
                        | CkptState::NoCkpt
                        | CkptState::NoRestart
                ) =>
            {
                &mut op.recover[lc]
            }
            _ => return,
        };
        slot.get_or_insert(state);
    }

    fn start(&mut self, kind: OpKind, step: GcStep) {
        assert!(
            self.op.is_none(),
            "{kind:?} starts while {:?} runs",
            self.op
        );
        assert!(!self.fin_acked, "{kind:?} starts after FIN_ACK");
        let requester = self
            .requester
            .unwrap_or_else(|| panic!("{kind:?} started by an input that cannot start one"));
        self.op = Some(GcOp {
            kind,
            requester,
            step,
            collect: [None; GC_LCS],
            recover: [None; GC_LCS],
            migration_ok: None,
            established: None,
            blind: false,
        });
    }

    /// Checks one action; `out` is the buffer it was polled with, `m` the
    /// machine (for what an action names but does not carry).
    fn action(&mut self, action: &GcAction, out: &MessageBuf, m: &Gc, nranks: u32) {
        let reference = |seq: u32| format!("snapc_global_snapshot_{GC_JOB}_{seq}");
        match action {
            GcAction::SendToLcs { len } => {
                let bytes = &out[..*len];
                let Ok(FromGc::JobState(js)) = FromGc::parse(bytes) else {
                    panic!("to the LCs, not a JOB_STATE: {bytes:02x?}");
                };
                let js = &js;
                let mut buf = vec![0u8; bytes.len()];
                let n = FromGc::JobState(*js)
                    .emit(&mut buf)
                    .expect("JOB_STATE encodes");
                assert_eq!(&buf[..n], bytes, "JOB_STATE round trip");
                assert_eq!(js.jobid, GC_JOB, "JOB_STATE jobid");
                assert!(!js.state.notify, "JOB_STATE in the notification encoding");
                let state = js.state.state;
                match (state, js.detail) {
                    (CkptState::Running, Some(d)) => {
                        let o = d.options;
                        assert!(!o.term || !o.inc_prep_only, "RUNNING options {o:?}");
                        let kind = if let Some(list) = d.migrating {
                            assert!(!list.is_empty(), "a migration moving nobody");
                            for p in list.iter() {
                                assert!(p.jobid == GC_JOB && p.vpid < nranks, "migrating {p:?}");
                            }
                            OpKind::Migrate
                        } else if o.inc_prep_only {
                            OpKind::QuiesceStart
                        } else if o.inc_recover_only {
                            OpKind::QuiesceEnd
                        } else {
                            OpKind::Checkpoint
                        };
                        if kind == OpKind::QuiesceEnd {
                            assert_eq!(
                                self.quiesced.take(),
                                Some(d.handle),
                                "quiesce end with handle {}",
                                d.handle
                            );
                        } else {
                            assert!(self.quiesced.is_none(), "{kind:?} while quiesced");
                            assert!(
                                d.handle > self.max_handle,
                                "handle {} after {}",
                                d.handle,
                                self.max_handle
                            );
                            self.max_handle = d.handle;
                        }
                        self.start(kind, GcStep::Collect);
                    }
                    (_, Some(_)) => panic!("long JOB_STATE {state:?}"),
                    (CkptState::IncPreped, None) => {
                        let op = self.op.as_ref().expect("INC_PREPED with no operation");
                        assert!(
                            op.kind == OpKind::QuiesceStart && op.step == GcStep::Collect,
                            "INC_PREPED in {op:?}"
                        );
                        assert!(
                            op.blind || op.all_collected(CkptState::IncPreped),
                            "INC_PREPED without every LC prepared: {op:?}"
                        );
                        self.quiesced = Some(self.max_handle);
                    }
                    (CkptState::Established | CkptState::Error, None) => {
                        let op = self.op.as_mut().expect("a verdict with no operation");
                        assert!(
                            matches!(op.step, GcStep::Collect | GcStep::Migrating),
                            "verdict {state:?} in {op:?}"
                        );
                        if state == CkptState::Established {
                            assert!(
                                op.blind || op.all_collected(CkptState::FinishedLocal),
                                "ESTABLISHED without every LC finished: {op:?}"
                            );
                            if op.kind == OpKind::Migrate {
                                assert_eq!(op.migration_ok, Some(true), "ESTABLISHED {op:?}");
                            }
                        }
                        op.step = GcStep::Recover;
                    }
                    (_, None) => panic!("quick JOB_STATE {state:?}"),
                }
            }
            GcAction::SendToRank { vpid, len } => {
                let bytes = &out[..*len];
                let msg = &FromGc::parse(bytes).expect("the answer decodes");
                let mut buf = [0u8; 32];
                let n = msg.emit(&mut buf).expect("the answer encodes");
                assert_eq!(&buf[..n], bytes, "answer round trip");
                match msg {
                    FromGc::FinAck => {
                        assert!(self.op.is_none(), "FIN_ACK while {:?} runs", self.op);
                        assert!(self.quiesced.is_none(), "FIN_ACK while quiesced");
                        assert_eq!(self.fins.pop(), Some(*vpid), "FIN_ACK to {vpid}");
                        self.fin_acked = true;
                    }
                    FromGc::OpResponse(r) => {
                        assert!(r.op_event.carries_op_state(), "answer {r:?}");
                        match r.op_state {
                            Some(OpResponse::DONE) => {
                                let op = self.op.as_ref().expect("op_state 0 with no operation");
                                assert_eq!(op.requester, Requester::Rank(*vpid), "op_state 0");
                                assert!(
                                    op.established.is_some(),
                                    "op_state 0 without a snapshot: {op:?}"
                                );
                                assert!(
                                    op.blind
                                        || (op.all_collected(CkptState::FinishedLocal)
                                            && op.all_recovered()),
                                    "op_state 0 though not every LC finished: {op:?}"
                                );
                            }
                            Some(OpResponse::FAILED) => {
                                let allowed = self.from == Some(*vpid)
                                    || self
                                        .op
                                        .as_ref()
                                        .is_some_and(|op| op.requester == Requester::Rank(*vpid));
                                assert!(allowed, "op_state -1 to rank {vpid}");
                            }
                            other => panic!("op_state {other:?}"),
                        }
                    }
                    FromGc::JobState(_) => panic!("JOB_STATE to a rank"),
                }
            }
            GcAction::Established(s) => {
                assert!(!self.fin_acked, "a snapshot after FIN_ACK");
                assert_eq!(s.reference.as_str(), reference(s.seq), "reference");
                assert!(
                    self.last_established.is_none_or(|last| s.seq > last),
                    "snapshot seq {} after {:?}",
                    s.seq,
                    self.last_established
                );
                self.last_established = Some(s.seq);
                match self.op.as_mut() {
                    Some(op) => {
                        assert!(
                            matches!(op.kind, OpKind::Checkpoint | OpKind::Migrate)
                                && op.step == GcStep::Recover,
                            "snapshot in {op:?}"
                        );
                        assert!(
                            op.blind
                                || (op.all_collected(CkptState::FinishedLocal)
                                    && op.all_recovered()),
                            "snapshot though not every LC finished and recovered: {op:?}"
                        );
                        if op.kind == OpKind::Migrate {
                            assert_eq!(op.migration_ok, Some(true), "snapshot of {op:?}");
                        }
                        assert!(op.established.replace(s.clone()).is_none(), "two snapshots");
                    }
                    None => {
                        assert_eq!(self.quiesced, Some(s.handle), "quiesce checkpoint");
                        self.quiesce_checkpoint = Some(s.clone());
                    }
                }
            }
            GcAction::Migrate { seq, handle } => {
                let plan = m.migration_plan();
                let op = self.op.as_mut().expect("migrate with no operation");
                assert!(
                    op.kind == OpKind::Migrate && op.step == GcStep::Collect,
                    "migrate in {op:?}"
                );
                assert!(
                    op.blind || op.all_collected(CkptState::FinishedLocal),
                    "migrate without every LC finished: {op:?}"
                );
                assert!(!plan.moves().is_empty(), "an empty plan");
                assert!(
                    *handle <= self.max_handle && *seq < u32::MAX,
                    "migrate {seq} {handle}"
                );
                op.step = GcStep::Migrating;
            }
            GcAction::Restart { seq_num } => {
                let handle = m.restart_handle();
                assert!(
                    *seq_num >= 0 && !handle.is_empty(),
                    "restart {seq_num} {handle:?}"
                );
                assert!(self.quiesced.is_none(), "restart while quiesced");
                self.start(OpKind::Restart, GcStep::Restarting);
            }
            GcAction::Finished(r) => {
                assert!(!r.ok || r.failure.is_none(), "ok with a failure: {r:?}");
                if matches!(
                    r.kind,
                    OpKind::Checkpoint | OpKind::Migrate | OpKind::QuiesceCheckpoint
                ) {
                    let seq = r.seq.expect("a snapshot operation without seq");
                    assert!(
                        self.last_report_seq.is_none_or(|last| seq > last),
                        "report seq {seq} after {:?}",
                        self.last_report_seq
                    );
                    self.last_report_seq = Some(seq);
                    let expected = u32::try_from(seq).map(reference).ok();
                    assert_eq!(
                        r.reference.as_deref(),
                        expected.as_deref(),
                        "report reference"
                    );
                }
                match r.kind {
                    OpKind::Fin => {
                        if r.ok {
                            assert!(self.fin_acked, "FIN ended without FIN_ACK");
                        } else {
                            assert!(!self.fins.is_empty(), "FIN failed unasked");
                            self.fins.remove(0);
                        }
                    }
                    OpKind::QuiesceCheckpoint => {
                        let s = self.quiesce_checkpoint.take().expect("its snapshot");
                        assert!(r.ok && r.seq == Some(i64::from(s.seq)), "{r:?}");
                    }
                    kind => {
                        let op = self.op.take().expect("an end with no operation");
                        assert_eq!((kind, r.requester), (op.kind, op.requester), "report");
                        match &op.established {
                            Some(s) => {
                                assert!(r.ok, "a failed operation had a snapshot: {op:?}");
                                assert_eq!(r.seq, Some(i64::from(s.seq)), "report seq");
                                assert_eq!(r.handle, s.handle, "report handle");
                            }
                            None => assert!(
                                !r.ok || !matches!(kind, OpKind::Checkpoint | OpKind::Migrate),
                                "a successful {kind:?} without a snapshot"
                            ),
                        }
                        if r.ok && !op.blind {
                            let ok = match kind {
                                OpKind::QuiesceStart => op.all_collected(CkptState::IncPreped),
                                OpKind::Restart => true,
                                _ => {
                                    op.all_collected(CkptState::FinishedLocal) && op.all_recovered()
                                }
                            };
                            assert!(ok, "{kind:?} succeeded with {op:?}");
                        }
                        if r.ok && kind != OpKind::Restart {
                            let want = if kind == OpKind::QuiesceStart {
                                CkptState::IncPreped
                            } else {
                                CkptState::FinishedLocal
                            };
                            assert!(m.lc_results().all(|s| s == want), "{r:?}");
                        }
                    }
                }
            }
            other => panic!("an action the model does not know: {other:?}"),
        }
    }
}

fn gc_drain(m: &mut Gc, model: &mut GcModel, nranks: u32) {
    let mut n = 0;
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    while let Some(action) = m.poll_action(&mut out) {
        model.action(&action, &out, m, nranks);
        n += 1;
    }
    assert!(
        n <= 7,
        "{n} actions from one input: the queue may have dropped one"
    );
}

/// Target `global_machine`: the global coordinator driven by arbitrary
/// inputs. Checks: no panic; every JOB_STATE and answer encodes and decodes
/// back equal; operations never overlap and none starts after FIN_ACK;
/// handles and sequence numbers only increase, references match them;
/// RUNNING, INC_PREPED, ESTABLISHED/ERROR, migrate and restart come only in
/// their step; ESTABLISHED, a snapshot and op_state 0 only for an operation
/// in which every LC reported FINISHED_LOCAL (and RECOVERED, and the
/// migration succeeded); FIN_ACK never while an operation runs or the job
/// is quiesced; reports agree with what happened; at most seven actions per
/// input; a due deadline is acted on; a running operation always has a
/// deadline; the machine's accessors agree with the harness's view.
pub fn global_machine(s: &GlobalScenario) {
    let nranks = u32::from(s.nranks % 5) + 1;
    let mut deadlines = GcDeadlines::default();
    if let Some([lc, fin, runtime]) = s.deadlines {
        deadlines = GcDeadlines {
            lc_report: Duration::from_millis(u64::from(lc)),
            fin: Duration::from_millis(u64::from(fin)),
            runtime: Duration::from_millis(u64::from(runtime)),
        };
    }
    let config = GcConfig {
        jobid: GC_JOB,
        nranks,
        deadlines,
    };
    let zero_deadline = s.deadlines.is_some_and(|d| d.contains(&0));
    let mut m = Gc::new(config, GC_PLACEMENT, [NodeSlot::EMPTY; GC_LCS]);
    let mut model = GcModel::default();
    let mut now = Instant::from_secs(1);
    if s.init {
        let init = RequestOp {
            jobid: GC_JOB,
            request: Request::Init,
        };
        gc_request(&mut m, now, 0, &init).expect("INIT accepted");
    }
    for input in s.inputs.iter().take(300) {
        let due = m.poll_timeout().is_some_and(|d| d <= now);
        if due
            && !matches!(input, GlobalInput::Advance(_))
            && let Some(op) = model.op.as_mut()
        {
            op.blind = true;
        }
        model.from = None;
        model.requester = None;
        match input {
            GlobalInput::Request {
                from,
                event,
                seq,
                handle,
                entries,
                other_job,
                as_bytes,
            } => {
                let from = u32::from(*from % 7);
                let entries: Vec<MigrateEntry<'_>> = entries
                    .iter()
                    .map(|&(vpid, host, pref, off_node)| MigrateEntry {
                        vpid: i32::from(vpid),
                        host: pick(&GC_HOSTS, host),
                        vpid_pref: i32::from(pref),
                        off_node,
                    })
                    .collect();
                let request = match pick(OpEvent::ALL, *event) {
                    OpEvent::Restart => Request::Restart {
                        seq_num: *seq,
                        handle: carryable(handle, 300),
                    },
                    OpEvent::Migrate => Request::Migrate(List::Items(&entries)),
                    e => Request::without_args(e).expect("argument-less event"),
                };
                let req = RequestOp {
                    jobid: if *other_job { GC_JOB + 1 } else { GC_JOB },
                    request,
                };
                model.from = Some(from);
                model.requester = Some(Requester::Rank(from));
                let r = if *as_bytes {
                    // Encoded as the ToGc channel does: the same bytes.
                    let msg = ToGc::RequestOp(req);
                    let mut buf = vec![0u8; msg.buffer_len()];
                    let n = msg.emit(&mut buf).expect("the request encodes");
                    m.handle_rank_message(now, from, &buf[..n])
                } else {
                    gc_request(&mut m, now, from, &req)
                };
                if r.is_ok() && request == Request::Fin {
                    model.fins.push(from);
                }
            }
            GlobalInput::RequestBytes(from, bytes) => {
                let from = u32::from(*from % 7);
                model.from = Some(from);
                model.requester = Some(Requester::Rank(from));
                let fin = matches!(
                    RequestOp::parse(bytes),
                    Ok(RequestOp {
                        request: Request::Fin,
                        ..
                    })
                );
                if m.handle_rank_message(now, from, bytes).is_ok() && fin {
                    model.fins.push(from);
                }
            }
            GlobalInput::Orted {
                lc,
                state,
                notify,
                quick,
            } => {
                let lc = usize::from(*lc) % (GC_LCS + 1);
                let msg = OrtedState {
                    quick: *quick,
                    state: StateCode {
                        state: pick(CkptState::ALL, *state),
                        notify: *notify,
                    },
                };
                let mut buf = [0u8; 16];
                let n = ToGc::OrtedState(msg).emit(&mut buf).expect("encodes");
                let Ok(ToGc::OrtedState(decoded)) = ToGc::parse(&buf[..n]) else {
                    panic!("ORTED_STATE does not decode");
                };
                assert_eq!(decoded, msg);
                let r = gc_orted(&mut m, now, lc, decoded);
                assert_eq!(r.is_err(), lc >= GC_LCS, "ORTED_STATE from LC {lc}: {r:?}");
                model.reported(lc, msg.state.state);
            }
            GlobalInput::Expected(lc) => {
                gc_expected(&mut m, &mut model, now, usize::from(*lc) % GC_LCS);
            }
            GlobalInput::AllExpected => {
                for lc in 0..GC_LCS {
                    gc_expected(&mut m, &mut model, now, lc);
                    gc_drain(&mut m, &mut model, nranks);
                }
            }
            GlobalInput::Command(c, term, stop) => {
                model.requester = Some(Requester::Runtime);
                let command = match c % 3 {
                    0 => Command::Checkpoint {
                        term: *term,
                        stop: *stop,
                    },
                    1 => Command::QuiesceStart,
                    _ => Command::QuiesceEnd,
                };
                let _ = m.handle_command(now, command);
            }
            GlobalInput::MigrationDone(ok) => {
                let waiting = model
                    .op
                    .as_ref()
                    .is_some_and(|op| op.step == GcStep::Migrating);
                let r = m.handle_migration_done(now, *ok);
                if !due {
                    assert_eq!(r.is_ok(), waiting, "migration report: {r:?}");
                }
                if r.is_ok()
                    && let Some(op) = model.op.as_mut()
                {
                    op.migration_ok = Some(*ok);
                }
            }
            GlobalInput::RestartDone(ok) => {
                let waiting = model
                    .op
                    .as_ref()
                    .is_some_and(|op| op.step == GcStep::Restarting);
                let r = m.handle_restart_done(now, *ok);
                if !due {
                    assert_eq!(r.is_ok(), waiting, "restart report: {r:?}");
                }
            }
            GlobalInput::Advance(us) => {
                now += Duration::from_micros(u64::from(*us));
                // A zero deadline set by handle_timeout is due at once: the
                // adapter calls it again; with none, one call must do.
                let rounds = if zero_deadline { 4 } else { 1 };
                for _ in 0..rounds {
                    if m.poll_timeout().is_some_and(|d| d <= now) {
                        m.handle_timeout(now);
                        gc_drain(&mut m, &mut model, nranks);
                    }
                }
                assert!(
                    m.poll_timeout().is_none_or(|d| d > now),
                    "a due deadline survived handle_timeout"
                );
            }
        }
        gc_drain(&mut m, &mut model, nranks);
        assert!(
            !m.is_busy() || m.poll_timeout().is_some(),
            "an operation runs with no deadline after {input:?}"
        );
        assert!(model.fins.len() <= 1, "two FINs waiting: {:?}", model.fins);
        assert!(
            model.fins.is_empty() || m.poll_timeout().is_some(),
            "FIN waits with no deadline after {input:?}"
        );
        assert_eq!(m.is_busy(), model.op.is_some(), "busy after {input:?}");
        assert_eq!(
            m.is_quiesced(),
            model.quiesced.is_some(),
            "quiesced after {input:?}"
        );
        assert_eq!(m.is_finished(), model.fin_acked, "finished after {input:?}");
    }
}
