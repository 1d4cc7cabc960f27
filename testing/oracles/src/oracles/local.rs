//! The local coordinator under arbitrary inputs in any order, against a
//! model of its slots and phase.

use crate::generators::local::{LC_JOB, LC_SLOTS, LocalInput, LocalScenario};
use crate::generators::pick;
use snapc_core::local::{
    Action as LcAction, Config as LocalConfig, LocalCoordinator, LocalDeadlines, Mode as LcMode,
    Phase as LcPhase, ProcessOutcome as LcOutcome, ProcessSlot, ProcessStorage, SlotId,
};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{
    ChannelNames as LcNames, CkptResponse, CkptState, CrState, Debugger, FromGc, JobDetail,
    JobOptions, JobState, List, LocalFinish, LocalUpdate, Message, OptionsFrame, OrtedState,
    ProcessName, StateCode, ToDaemon, fifo,
};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};

/// What a slot was asked to do and has not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Watch,
    Open,
    Write,
    Read,
    Stop,
}

/// The harness's view of one slot.
#[derive(Debug, Default, Clone)]
struct LcSlotModel {
    id: Option<SlotId>,
    name: Option<ProcessName>,
    pid: u32,
    /// The handshake counter the next signalled handshake uses.
    n: u32,
    asked: Option<(SlotId, Asked)>,
    /// Opened and not closed since.
    open: bool,
    /// Opened: the next write is the options frame.
    options_due: bool,
    /// The options went out: the next read is the response.
    response_next: bool,
    /// START was read: the next write is the go-ahead.
    go_ahead_due: bool,
}

/// The phase the harness started with a JOB_STATE RUNNING.
#[derive(Debug)]
struct LcPhaseModel {
    mode: LcMode,
    handle: u32,
    options: JobOptions,
    migrating: Option<Vec<ProcessName>>,
    /// Processes of the phase without a result yet.
    pending: Vec<ProcessName>,
    /// Whether every result so far is a success for the mode.
    all_ok: bool,
    /// Whether the phase's report (or an abort's RECOVERED) went out.
    reported: bool,
}

#[derive(Debug)]
struct LcModel {
    slots: [LcSlotModel; LC_SLOTS],
    history: Vec<SlotId>,
    phase: Option<LcPhaseModel>,
    debugger: Option<Debugger>,
}

fn next_counter(n: u32) -> u32 {
    if n >= i32::MAX as u32 { 0 } else { n + 1 }
}

impl LcModel {
    fn pick(&self, b: u8) -> Option<SlotId> {
        if b < 0xC0 {
            self.slots[usize::from(b) % LC_SLOTS].id
        } else if self.history.is_empty() {
            None
        } else {
            Some(self.history[usize::from(b) % self.history.len()])
        }
    }

    fn seen(&mut self, id: SlotId) {
        let s = &mut self.slots[id.index()];
        if s.id != Some(id) {
            s.id = Some(id);
            if self.history.len() < 32 {
                self.history.push(id);
            }
        }
    }

    /// A process now has this slot, with counter 0.
    fn placed(&mut self, id: SlotId, name: ProcessName, pid: u32) {
        self.seen(id);
        let s = &mut self.slots[id.index()];
        s.name = Some(name);
        s.pid = pid;
        s.n = 0;
    }

    fn index_of(&self, name: ProcessName) -> Option<usize> {
        self.slots.iter().position(|s| s.name == Some(name))
    }

    /// An input for `id` returned `ok`: it must be accepted exactly when it
    /// answers the action outstanding for that slot.
    fn answered(&mut self, id: SlotId, kind: Asked, ok: bool, what: &str) {
        let s = &mut self.slots[id.index()];
        let fits = s.asked == Some((id, kind));
        assert_eq!(
            ok, fits,
            "{what} for {id:?} accepted: {ok}, outstanding: {:?}",
            s.asked
        );
        if ok {
            s.asked = None;
        }
    }

    /// Checks one action; `phase` is the machine's phase when it is polled,
    /// `out` the buffer it was polled with.
    fn action(&mut self, action: &LcAction, phase: LcPhase, out: &MessageBuf) {
        let asks = |s: &mut LcSlotModel, slot: SlotId, kind: Asked| {
            assert!(
                s.asked.is_none(),
                "{kind:?} for {slot:?} while {:?} is outstanding",
                s.asked
            );
            assert!(s.name.is_some(), "{kind:?} for an empty slot {slot:?}");
            s.asked = Some((slot, kind));
        };
        match action {
            LcAction::Signal { slot, pid } => {
                self.seen(*slot);
                let s = &self.slots[slot.index()];
                assert!(
                    s.name.is_some() && s.pid == *pid,
                    "signal to pid {pid}: {s:?}"
                );
                assert!(!s.open, "signal for {slot:?} with its channel open");
            }
            LcAction::WatchFifos { slot, names } | LcAction::OpenFifos { slot, names } => {
                self.seen(*slot);
                let s = &mut self.slots[slot.index()];
                let expected = LcNames { pid: s.pid, n: s.n };
                assert_eq!(*names, expected, "FIFO names of {slot:?}");
                let kind = if matches!(action, LcAction::WatchFifos { .. }) {
                    Asked::Watch
                } else {
                    Asked::Open
                };
                asks(s, *slot, kind);
            }
            LcAction::Write { slot, bytes } => {
                self.seen(*slot);
                let debugger = self.debugger;
                let phase_model = self.phase.as_ref();
                let s = &mut self.slots[slot.index()];
                assert!(s.open, "write to the closed channel of {slot:?}");
                if core::mem::take(&mut s.options_due) {
                    let frame = OptionsFrame::parse(bytes, debugger.is_some())
                        .expect("the options frame decodes");
                    let p = phase_model.expect("options outside a phase");
                    let name = s.name.expect("a process");
                    let o = frame.options;
                    assert_eq!(frame.handle, p.handle, "options frame handle");
                    assert_eq!(o.debugger, debugger, "debugger words");
                    assert_eq!(
                        (o.term, o.stop, o.inc_prep_only, o.inc_recover_only),
                        (
                            p.options.term,
                            p.options.stop,
                            p.options.inc_prep_only,
                            p.options.inc_recover_only
                        ),
                        "options frame flags"
                    );
                    assert_eq!(o.all_migrating, p.migrating.is_some(), "all_migrating");
                    let moving = p.migrating.as_ref().is_some_and(|l| l.contains(&name));
                    assert_eq!(o.migrating, moving, "migrating flag of {name:?}");
                    s.response_next = true;
                } else if core::mem::take(&mut s.go_ahead_due) {
                    fifo::parse_go_ahead(bytes).expect("the go-ahead decodes");
                } else {
                    let v = fifo::parse_release(bytes).expect("the release decodes");
                    assert_eq!(v, 0, "release value");
                    assert_eq!(
                        phase,
                        LcPhase::Releasing,
                        "release written outside releasing"
                    );
                }
                asks(s, *slot, Asked::Write);
            }
            LcAction::Read { slot, len } => {
                self.seen(*slot);
                assert_eq!(*len, fifo::INT_FRAME_LEN, "read length");
                let s = &mut self.slots[slot.index()];
                assert!(s.open, "read from the closed channel of {slot:?}");
                assert!(
                    !s.options_due && !s.go_ahead_due,
                    "read before the due write"
                );
                asks(s, *slot, Asked::Read);
            }
            LcAction::WaitStopped { slot, pid } => {
                self.seen(*slot);
                let s = &mut self.slots[slot.index()];
                assert_eq!(s.pid, *pid, "stop wait pid");
                asks(s, *slot, Asked::Stop);
            }
            LcAction::Close { slot } => {
                let s = &mut self.slots[slot.index()];
                if s.id == Some(*slot) {
                    s.n = next_counter(s.n);
                }
                s.asked = None;
                s.open = false;
                s.options_due = false;
                s.response_next = false;
                s.go_ahead_due = false;
            }
            LcAction::SendToGc { len } => {
                let bytes = &out[..*len];
                let o = &OrtedState::parse(bytes).expect("ORTED_STATE decodes");
                let mut buf = [0u8; 16];
                let n = o.emit(&mut buf).expect("ORTED_STATE encodes");
                assert_eq!(&buf[..n], bytes, "ORTED_STATE round trip");
                assert!(o.quick && !o.state.notify, "ORTED_STATE form {o:?}");
                let p = self.phase.as_mut().expect("ORTED_STATE before any phase");
                assert!(
                    p.pending.is_empty(),
                    "ORTED_STATE {:?} while {:?} have no result",
                    o.state.state,
                    p.pending
                );
                let state = o.state.state;
                if core::mem::replace(&mut p.reported, true) {
                    assert!(
                        matches!(state, CkptState::Recovered | CkptState::Error),
                        "second ORTED_STATE of a phase is {state:?}"
                    );
                } else if state != CkptState::Recovered {
                    let expected = if p.all_ok {
                        p.mode.success()
                    } else {
                        CkptState::Error
                    };
                    assert_eq!(state, expected, "the phase's report");
                }
            }
            LcAction::Report(r) => {
                let p = self.phase.as_mut().expect("a result outside any phase");
                let at = p
                    .pending
                    .iter()
                    .position(|&n| n == r.name)
                    .unwrap_or_else(|| panic!("result for {:?} not pending: {r:?}", r.name));
                p.pending.swap_remove(at);
                let ok = match (p.mode, r.outcome) {
                    (LcMode::PrepareOnly, LcOutcome::State(CrState::Running)) => true,
                    (
                        LcMode::Checkpoint | LcMode::RecoverOnly,
                        LcOutcome::State(CrState::Continue | CrState::Term),
                    ) => true,
                    (_, LcOutcome::State(s)) => {
                        assert_eq!(s, CrState::Error, "a result state that does not fit");
                        false
                    }
                    (_, LcOutcome::Failed(_)) => false,
                };
                p.all_ok &= ok;
            }
            other => panic!("an action the model does not know: {other:?}"),
        }
    }
}

/// Encodes a JOB_STATE and hands its bytes to the machine.
fn lc_job_state<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    js: &JobState<'_>,
) {
    let msg = FromGc::JobState(*js);
    let mut buf = vec![0u8; msg.buffer_len()];
    let n = msg.emit(&mut buf).expect("JOB_STATE encodes");
    assert_eq!(FromGc::parse(&buf[..n]), Ok(msg), "JOB_STATE round trip");
    lc_job_state_bytes(m, model, now, &buf[..n]);
}

/// Hands bytes from the global coordinator to the machine, which decodes
/// them: bytes that are not a JOB_STATE are refused as undecodable.
fn lc_job_state_bytes<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    bytes: &[u8],
) {
    let before = m.phase();
    let result = m.handle_gc_message(now, bytes);
    let Ok(j) = JobState::parse(bytes) else {
        assert!(
            matches!(result, Err(snapc_core::local::InputError::Decode(_))),
            "undecodable JOB_STATE taken: {result:?}"
        );
        return;
    };
    let (Ok(()), CkptState::Running, Some(d)) = (result, j.state.state, j.detail) else {
        return;
    };
    let o = d.options;
    let mode = if o.inc_recover_only {
        LcMode::RecoverOnly
    } else if o.inc_prep_only {
        LcMode::PrepareOnly
    } else {
        LcMode::Checkpoint
    };
    assert!(
        before == LcPhase::Idle || mode == LcMode::RecoverOnly,
        "RUNNING {mode:?} accepted in {before:?}"
    );
    model.phase = Some(LcPhaseModel {
        mode,
        handle: d.handle,
        options: o,
        migrating: d.migrating.map(|l| l.iter().collect()),
        pending: model.slots.iter().filter_map(|s| s.name).collect(),
        all_ok: true,
        reported: false,
    });
}

/// The final state a process sends in the model's phase.
fn lc_good_final(model: &LcModel, b: u8) -> CrState {
    match model.phase.as_ref().map(|p| p.mode) {
        Some(LcMode::PrepareOnly) => CrState::Running,
        _ if b & 1 == 0 => CrState::Continue,
        _ => CrState::Term,
    }
}

/// Answers slot `id`'s outstanding action as a healthy process would.
fn lc_answer<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    id: SlotId,
    kind: Asked,
    b: u8,
) {
    match kind {
        Asked::Watch => {
            let r = m.handle_fifos_exist(now, id);
            model.answered(id, kind, r.is_ok(), "fifos exist");
        }
        Asked::Open => {
            let r = m.handle_opened(now, id);
            model.answered(id, kind, r.is_ok(), "opened");
            if r.is_ok() {
                let s = &mut model.slots[id.index()];
                s.open = true;
                s.options_due = true;
            }
        }
        Asked::Write => {
            let r = m.handle_written(now, id);
            model.answered(id, kind, r.is_ok(), "written");
        }
        Asked::Read => {
            let frame = if model.slots[id.index()].response_next {
                fifo::response_frame(CkptResponse::Start)
            } else {
                fifo::cr_state_frame(lc_good_final(model, b))
            };
            lc_read(m, model, now, id, &frame);
        }
        Asked::Stop => {
            let r = m.handle_stopped(now, id);
            model.answered(id, kind, r.is_ok(), "stopped");
        }
    }
}

fn lc_read<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    id: SlotId,
    bytes: &[u8],
) {
    let r = m.handle_read(now, id, bytes);
    model.answered(id, Asked::Read, r.is_ok(), "read");
    if r.is_ok() {
        let s = &mut model.slots[id.index()];
        if core::mem::take(&mut s.response_next)
            && fifo::parse_response(bytes) == Ok(CkptResponse::Start)
        {
            s.go_ahead_due = true;
        }
    }
}

fn lc_name(vpid: u8) -> ProcessName {
    ProcessName {
        jobid: LC_JOB,
        vpid: u32::from(vpid % 6),
    }
}

/// Target `local_machine`: the local coordinator driven by arbitrary inputs.
/// Checks: no panic; an input for a slot is accepted exactly when it answers
/// the slot's outstanding action, and a slot never has two outstanding;
/// FIFO names carry the slot's pid and counter (0 after a new pid, one up
/// after each closed handshake); the options frame decodes and carries the
/// phase's handle, options, debugger words and migrating flags; the
/// go-ahead follows START and the release is written only to an open
/// channel while releasing; reads are 4 bytes; every ORTED_STATE encodes
/// and decodes back equal, goes out only once every process of the phase
/// has its result, and the phase's report is the lowest result; every
/// process of the phase gets exactly one result; a due deadline is acted on;
/// the machine never waits (a phase running, an action outstanding) without
/// a deadline; no channel stays open when idle.
pub fn local_machine(s: &LocalScenario) {
    let mut config = LocalConfig {
        debugger: s
            .debugger
            .map(|(attach, detach)| Debugger { attach, detach }),
        ..LocalConfig::default()
    };
    if let Some(d) = s.deadlines {
        let ms = |i: usize| Duration::from_millis(u64::from(d[i]));
        config.deadlines = LocalDeadlines {
            fifos: ms(0),
            open: ms(1),
            write: ms(2),
            response: ms(3),
            final_state: ms(4),
            stop: ms(5),
            verdict: ms(6),
            quiesced: ms(7),
        };
    }
    let zero_deadline = s.deadlines.is_some_and(|d| d.contains(&0));
    let mut m = LocalCoordinator::new(config, [ProcessSlot::EMPTY; LC_SLOTS]);
    let mut model = LcModel {
        slots: Default::default(),
        history: Vec::new(),
        phase: None,
        debugger: config.debugger,
    };
    let mut now = Instant::from_secs(1);
    for vpid in 0..s.procs % 5 {
        let name = lc_name(vpid);
        let pid = 100 + u32::from(vpid);
        let id = m
            .add_process(name, pid)
            .expect("room for the first processes");
        model.placed(id, name, pid);
    }
    for input in s.inputs.iter().take(400) {
        match input {
            LocalInput::Add(vpid, pid) => {
                let name = lc_name(*vpid);
                if let Ok(id) = m.add_process(name, u32::from(*pid)) {
                    assert!(model.index_of(name).is_none(), "{name:?} added twice");
                    model.placed(id, name, u32::from(*pid));
                }
            }
            LocalInput::Remove(vpid) => {
                let name = lc_name(*vpid);
                let r = m.remove_process(now, name);
                assert_eq!(r.is_ok(), model.index_of(name).is_some(), "remove {name:?}");
                if let Some(i) = model.index_of(name) {
                    model.slots[i].name = None;
                }
            }
            LocalInput::UpdatePid(vpid, pid) => {
                let name = lc_name(*vpid);
                if let Ok(id) = m.update_pid(now, name, *pid) {
                    model.placed(id, name, *pid);
                }
            }
            LocalInput::LocalUpdate(vpid, pid, debug) => {
                let msg = ToDaemon::LocalUpdate(LocalUpdate {
                    name: lc_name(*vpid),
                    pid: *pid,
                    debug: *debug,
                });
                let mut buf = [0u8; 64];
                let n = msg.emit(&mut buf).expect("LOCAL_UPDATE encodes");
                let sender = u32::try_from(*pid).unwrap_or(1);
                if m.handle_process_message(now, sender, &buf[..n]).is_ok()
                    && let Ok(ToDaemon::LocalUpdate(u)) = ToDaemon::parse(&buf[..n])
                {
                    let info = m.process(u.name).expect("the updated process");
                    assert_eq!((info.pid, info.n), (u.pid as u32, 0), "after LOCAL_UPDATE");
                    model.placed(info.slot, u.name, u.pid as u32);
                }
            }
            LocalInput::LocalFinish(pid, state) => {
                let f = ToDaemon::LocalFinish(LocalFinish {
                    cr_state: pick(CrState::ALL, *state),
                });
                let mut buf = [0u8; 64];
                let n = f.emit(&mut buf).expect("LOCAL_FINISH encodes");
                m.handle_process_message(now, 100 + u32::from(*pid % 8), &buf[..n])
                    .expect("LOCAL_FINISH is always taken");
            }
            LocalInput::Running {
                handle,
                options: [term, stop, prep, recover],
                migrating,
            } => {
                let procs: Vec<ProcessName> =
                    migrating.iter().flatten().map(|&v| lc_name(v)).collect();
                let js = JobState {
                    jobid: LC_JOB,
                    state: StateCode::plain(CkptState::Running),
                    detail: Some(JobDetail {
                        handle: *handle,
                        options: JobOptions {
                            term: *term,
                            stop: *stop,
                            inc_prep_only: *prep,
                            inc_recover_only: *recover,
                        },
                        migrating: migrating.as_ref().map(|_| List::Items(&procs)),
                    }),
                };
                lc_job_state(&mut m, &mut model, now, &js);
            }
            LocalInput::Quick(state, notify) => {
                let js = JobState {
                    jobid: LC_JOB,
                    state: StateCode {
                        state: pick(CkptState::ALL, *state),
                        notify: *notify,
                    },
                    detail: None,
                };
                lc_job_state(&mut m, &mut model, now, &js);
            }
            LocalInput::Verdict(v) => {
                let state = pick(
                    &[
                        CkptState::Established,
                        CkptState::IncPreped,
                        CkptState::Error,
                    ],
                    *v,
                );
                let js = JobState {
                    jobid: LC_JOB,
                    state: StateCode::plain(state),
                    detail: None,
                };
                lc_job_state(&mut m, &mut model, now, &js);
            }
            LocalInput::JobBytes(bytes) => lc_job_state_bytes(&mut m, &mut model, now, bytes),
            LocalInput::FifosExist(b) => {
                if let Some(id) = model.pick(*b) {
                    let r = m.handle_fifos_exist(now, id);
                    model.answered(id, Asked::Watch, r.is_ok(), "fifos exist");
                }
            }
            LocalInput::Opened(b) => {
                if let Some(id) = model.pick(*b) {
                    lc_answer(&mut m, &mut model, now, id, Asked::Open, 0);
                }
            }
            LocalInput::Written(b) => {
                if let Some(id) = model.pick(*b) {
                    lc_answer(&mut m, &mut model, now, id, Asked::Write, 0);
                }
            }
            LocalInput::Read(b, v) => {
                if let Some(id) = model.pick(*b) {
                    if *v < 0x80 {
                        lc_answer(&mut m, &mut model, now, id, Asked::Read, *v);
                    } else {
                        let code = i32::from(*v % 11) - 1;
                        lc_read(&mut m, &mut model, now, id, &code.to_ne_bytes());
                    }
                }
            }
            LocalInput::ReadBytes(b, bytes) => {
                if let Some(id) = model.pick(*b) {
                    lc_read(&mut m, &mut model, now, id, bytes);
                }
            }
            LocalInput::Stopped(b) => {
                if let Some(id) = model.pick(*b) {
                    lc_answer(&mut m, &mut model, now, id, Asked::Stop, 0);
                }
            }
            LocalInput::IoError(b, eof) => {
                if let Some(id) = model.pick(*b) {
                    let e = if *eof {
                        IoError::PeerGone
                    } else {
                        IoError::Failed
                    };
                    let r = m.handle_io_error(now, id, e);
                    let s = &mut model.slots[id.index()];
                    if s.asked.is_some_and(|(a, _)| a == id) {
                        assert!(r.is_ok(), "I/O error for the outstanding action refused");
                    }
                    if r.is_ok() {
                        s.asked = None;
                    }
                }
            }
            LocalInput::Answer(b) => {
                let i = usize::from(*b) % LC_SLOTS;
                if let Some((id, kind)) = model.slots[i].asked {
                    lc_answer(&mut m, &mut model, now, id, kind, *b);
                }
            }
            LocalInput::AnswerAll(b) => {
                for i in 0..LC_SLOTS {
                    if let Some((id, kind)) = model.slots[i].asked {
                        lc_answer(&mut m, &mut model, now, id, kind, u8::from(*b));
                        lc_drain(&mut m, &mut model);
                    }
                }
            }
            LocalInput::Advance(us) => {
                now += Duration::from_micros(u64::from(*us));
                // A zero deadline set by handle_timeout is due at once: the
                // adapter calls it again; with none, one call must do.
                let rounds = if zero_deadline { 4 } else { 1 };
                for _ in 0..rounds {
                    if m.poll_timeout().is_some_and(|d| d <= now) {
                        m.handle_timeout(now);
                        lc_drain(&mut m, &mut model);
                    }
                }
                assert!(
                    m.poll_timeout().is_none_or(|d| d > now),
                    "a due deadline survived handle_timeout"
                );
            }
        }
        lc_drain(&mut m, &mut model);
        let waiting = model.slots.iter().any(|s| s.asked.is_some());
        assert!(
            !(waiting || m.phase() != LcPhase::Idle) || m.poll_timeout().is_some(),
            "waiting with no deadline in {:?} after {input:?}",
            m.phase()
        );
        if m.phase() == LcPhase::Idle {
            assert!(
                model.slots.iter().all(|s| !s.open),
                "a channel stays open while idle after {input:?}"
            );
        }
        assert_eq!(
            m.len(),
            model.slots.iter().filter(|s| s.name.is_some()).count(),
            "process count"
        );
    }
}

fn lc_drain<S: ProcessStorage>(m: &mut LocalCoordinator<S>, model: &mut LcModel) {
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    while let Some(action) = m.poll_action(&mut out) {
        model.action(&action, m.phase(), &out);
    }
}
