//! The local coordinator driven by a tiny fake app side (one scripted app
//! coordinator per slot) and a fake global coordinator (the test itself), on
//! a virtual clock that jumps to the next deadline when nothing else happens.

extern crate std;

use super::*;
use crate::MAX_MESSAGE_LEN;
use crate::time::Duration;
use crate::wire::{ChannelNames, Debugger, ErrorKind, JobDetail, List};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

const JOB: u32 = 0x1234_0001;

fn name(vpid: u32) -> ProcessName {
    ProcessName { jobid: JOB, vpid }
}

/// A coordinator over an array of `N` slots.
fn lc<const N: usize>(config: Config) -> LocalCoordinator<[ProcessSlot; N]> {
    LocalCoordinator::new(config, [ProcessSlot::EMPTY; N])
}

/// A message's bytes, as a peer sends them.
fn bytes<'a, M: Message<'a>>(m: &M) -> heapless::Vec<u8, MAX_MESSAGE_LEN> {
    let mut v = heapless::Vec::new();
    m.emit_vec(&mut v).unwrap();
    v
}

/// A JOB_STATE from the global coordinator, through the bytes boundary.
fn job_state<S: ProcessStorage>(
    lc: &mut LocalCoordinator<S>,
    now: Instant,
    job: &JobState<'_>,
) -> Result<(), InputError> {
    lc.handle_gc_message(now, &bytes(job))
}

/// The next action, with a throwaway buffer for messages.
fn poll<S: ProcessStorage>(lc: &mut LocalCoordinator<S>) -> Option<Action> {
    lc.poll_action(&mut [0; MAX_MESSAGE_LEN])
}

fn words(ws: &[i32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

/// Where a fake app misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Signal,
    Fifos,
    Open,
    Options,
    Response,
    GoAhead,
    Final,
    Stop,
    Release,
}

/// One scripted app coordinator.
#[derive(Debug, Default)]
struct FakeApp {
    pid: u32,
    /// The app coordinator's own handshake counter.
    n: u32,
    /// Replies to reads, in order (response, then states).
    reads: VecDeque<Vec<u8>>,
    /// Every frame the local coordinator wrote, in order.
    received: Vec<Vec<u8>>,
    /// The names the local coordinator watched, in order.
    watched: Vec<ChannelNames>,
    /// Signals received.
    signals: u32,
    /// Goes away (EOF / EPIPE / ESRCH) at this point.
    gone: Option<At>,
    /// Never answers at this point.
    silent: Option<At>,
    // Progress within the current handshake.
    in_handshake: bool,
    got_options: bool,
    got_go_ahead: bool,
    closes: u32,
    /// Went away: answers nothing any more.
    dead: bool,
}

impl FakeApp {
    fn script(&mut self, codes: &[i32]) {
        self.reads = codes.iter().map(|c| c.to_ne_bytes().to_vec()).collect();
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    FifosExist(SlotId),
    Opened(SlotId),
    Written(SlotId),
    Read(SlotId, [u8; 8], usize),
    Io(SlotId, IoError),
    Stopped(SlotId),
}

struct Harness<const N: usize> {
    lc: LocalCoordinator<[ProcessSlot; N]>,
    now: Instant,
    apps: Vec<FakeApp>,
    slots: Vec<SlotId>,
    to_gc: Vec<CkptState>,
    reports: Vec<ProcessResult>,
    actions: Vec<Action>,
    events: VecDeque<Event>,
}

const START: i32 = 0;
const IN_PROGRESS: i32 = 1;
const NULL: i32 = 2;
const CONTINUE: i32 = 4;
const TERM: i32 = 5;
const RUNNING: i32 = 6;
const ERROR: i32 = 7;
const RESTART: i32 = 3;

impl<const N: usize> Harness<N> {
    fn new(procs: usize) -> Self {
        Self::with_config(procs, Config::default())
    }

    fn with_config(procs: usize, config: Config) -> Self {
        let mut h = Self {
            lc: lc(config),
            now: Instant::from_secs(1),
            apps: Vec::new(),
            slots: Vec::new(),
            to_gc: Vec::new(),
            reports: Vec::new(),
            actions: Vec::new(),
            events: VecDeque::new(),
        };
        for i in 0..procs {
            let pid = 1000 + i as u32;
            let slot = h.lc.add_process(name(i as u32), pid).unwrap();
            assert_eq!(slot.index(), i);
            h.slots.push(slot);
            h.apps.push(FakeApp {
                pid,
                ..Default::default()
            });
        }
        h
    }

    fn app(&mut self, i: usize) -> &mut FakeApp {
        &mut self.apps[i]
    }

    /// Every app answers START then `last`.
    fn script_all(&mut self, codes: &[i32]) {
        for app in self.apps.iter_mut() {
            app.script(codes);
        }
    }

    fn job(&mut self, state: CkptState, options: JobOptions, migrating: Option<&[ProcessName]>) {
        let job = JobState {
            jobid: JOB,
            state: StateCode::plain(state),
            detail: Some(JobDetail {
                handle: 7,
                options,
                migrating: migrating.map(List::Items),
            }),
        };
        job_state(&mut self.lc, self.now, &job).unwrap();
        self.settle();
    }

    fn quick(&mut self, state: CkptState) -> Result<(), InputError> {
        let job = JobState {
            jobid: JOB,
            state: StateCode::plain(state),
            detail: None,
        };
        let r = job_state(&mut self.lc, self.now, &job);
        self.settle();
        r
    }

    fn checkpoint(&mut self, options: JobOptions) {
        self.job(CkptState::Running, options, None);
    }

    /// Carries out every action and feeds the answers back, one input at a
    /// time, until nothing is left; time does not pass beyond 1 ms per input.
    fn settle(&mut self) {
        let mut out = [0u8; MAX_MESSAGE_LEN];
        loop {
            while let Some(action) = self.lc.poll_action(&mut out) {
                self.carry_out(action, &out);
            }
            let Some(event) = self.events.pop_front() else {
                return;
            };
            self.now += Duration::from_millis(1);
            let _ = match event {
                Event::FifosExist(s) => self.lc.handle_fifos_exist(self.now, s),
                Event::Opened(s) => self.lc.handle_opened(self.now, s),
                Event::Written(s) => self.lc.handle_written(self.now, s),
                Event::Read(s, buf, len) => self.lc.handle_read(self.now, s, &buf[..len]),
                Event::Io(s, e) => self.lc.handle_io_error(self.now, s, e),
                Event::Stopped(s) => self.lc.handle_stopped(self.now, s),
            };
        }
    }

    /// Settles, then lets time jump to each deadline until none is left or
    /// `limit` is reached.
    fn run_until(&mut self, limit: Instant) {
        self.settle();
        while let Some(t) = self.lc.poll_timeout() {
            if t > limit {
                break;
            }
            self.now = self.now.max(t);
            self.lc.handle_timeout(self.now);
            self.settle();
        }
    }

    fn run(&mut self) {
        self.run_until(Instant::MAX);
    }

    fn carry_out(&mut self, action: Action, out: &[u8]) {
        self.actions.push(action.clone());
        let index = match &action {
            Action::SendToGc { len } => {
                let m = OrtedState::parse(&out[..*len]).unwrap();
                assert!(m.quick);
                assert!(!m.state.notify);
                self.to_gc.push(m.state.state);
                return;
            }
            Action::Report(r) => {
                self.reports.push(*r);
                return;
            }
            process => slot_of(process).unwrap().index(),
        };
        let app = &mut self.apps[index];
        let (slot, at) = match &action {
            Action::Signal { slot, pid } => {
                assert_eq!(*pid, app.pid);
                app.signals += 1;
                app.in_handshake = true;
                app.got_options = false;
                app.got_go_ahead = false;
                (*slot, At::Signal)
            }
            Action::WatchFifos { slot, names } => {
                app.watched.push(*names);
                (*slot, At::Fifos)
            }
            Action::OpenFifos { slot, names } => {
                assert_eq!(
                    *names,
                    ChannelNames {
                        pid: app.pid,
                        n: app.n
                    }
                );
                (*slot, At::Open)
            }
            Action::Write { slot, bytes } => {
                app.received.push(bytes.to_vec());
                let at = if !app.got_options {
                    app.got_options = true;
                    At::Options
                } else if !app.got_go_ahead {
                    app.got_go_ahead = true;
                    At::GoAhead
                } else {
                    At::Release
                };
                (*slot, at)
            }
            Action::Read { slot, .. } => {
                let at = if app.got_go_ahead {
                    At::Final
                } else {
                    At::Response
                };
                (*slot, at)
            }
            Action::WaitStopped { slot, pid } => {
                assert_eq!(*pid, app.pid);
                (*slot, At::Stop)
            }
            Action::Close { .. } => {
                // The app coordinator ends its handshake too and defines its
                // next names (it advances even when it never saw the LC).
                app.closes += 1;
                if app.in_handshake {
                    app.in_handshake = false;
                    app.n += 1;
                }
                return;
            }
            Action::SendToGc { .. } | Action::Report(_) => return,
        };
        if app.dead {
            return;
        }
        if app.gone == Some(at) {
            app.dead = true;
            let error = if at == At::Response || at == At::Final {
                IoError::PeerGone
            } else {
                IoError::Failed
            };
            self.events.push_back(Event::Io(slot, error));
            return;
        }
        if app.silent == Some(at) {
            return;
        }
        let event = match &action {
            Action::Signal { .. } => return,
            Action::WatchFifos { names, .. } => {
                // The app coordinator creates its FIFOs under its own counter.
                if app.silent == Some(At::Signal)
                    || *names
                        != (ChannelNames {
                            pid: app.pid,
                            n: app.n,
                        })
                {
                    return;
                }
                Event::FifosExist(slot)
            }
            Action::OpenFifos { .. } => Event::Opened(slot),
            Action::Write { .. } => Event::Written(slot),
            Action::Read { len, .. } => {
                assert_eq!(*len, 4);
                let Some(reply) = app.reads.pop_front() else {
                    return;
                };
                let mut buf = [0u8; 8];
                buf[..reply.len()].copy_from_slice(&reply);
                Event::Read(slot, buf, reply.len())
            }
            Action::WaitStopped { .. } => Event::Stopped(slot),
            _ => return,
        };
        self.events.push_back(event);
    }

    fn report(&self, i: usize) -> ProcessResult {
        *self
            .reports
            .iter()
            .rev()
            .find(|r| r.slot.index() == i)
            .unwrap()
    }

    fn outcome(&self, i: usize) -> ProcessOutcome {
        self.report(i).outcome
    }

    #[track_caller]
    fn assert_failed(&self, i: usize, failure: ProcessFailure) {
        assert_eq!(self.outcome(i), failed(failure));
    }

    fn take(&mut self) -> (Vec<CkptState>, Vec<ProcessResult>) {
        self.actions.clear();
        (
            core::mem::take(&mut self.to_gc),
            core::mem::take(&mut self.reports),
        )
    }
}

/// The slot of an action on a process; `None` for a report and a message
/// to the global coordinator.
fn slot_of(action: &Action) -> Option<SlotId> {
    match action {
        Action::Signal { slot, .. }
        | Action::WatchFifos { slot, .. }
        | Action::OpenFifos { slot, .. }
        | Action::Write { slot, .. }
        | Action::Read { slot, .. }
        | Action::WaitStopped { slot, .. }
        | Action::Close { slot } => Some(*slot),
        Action::Report(_) | Action::SendToGc { .. } => None,
    }
}

fn options_frame(options: [i32; 6], handle: u32) -> Vec<u8> {
    let mut w: Vec<i32> = options.to_vec();
    w.push(handle as i32);
    words(&w)
}

fn plain() -> JobOptions {
    JobOptions::default()
}

/// [`plain`] with what `set` changes.
fn with(set: impl FnOnce(&mut JobOptions)) -> JobOptions {
    let mut options = plain();
    set(&mut options);
    options
}

fn term() -> JobOptions {
    with(|o| o.term = true)
}

fn stop() -> JobOptions {
    with(|o| o.stop = true)
}

fn failed(failure: ProcessFailure) -> ProcessOutcome {
    ProcessOutcome::Failed(failure)
}

/// Quiesce start.
fn prep_only() -> JobOptions {
    with(|o| o.inc_prep_only = true)
}

/// Quiesce end.
fn recover_only() -> JobOptions {
    with(|o| o.inc_recover_only = true)
}

// ---- the whole checkpoint ----

#[test]
fn checkpoint_of_three_processes() {
    let mut h = Harness::<4>::new(3);
    h.script_all(&[START, CONTINUE]);
    h.checkpoint(plain());
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    assert_eq!(h.lc.phase(), Phase::AwaitVerdict(CkptState::FinishedLocal));
    for i in 0..3 {
        assert_eq!(h.app(i).signals, 1);
        assert_eq!(
            h.apps[i].watched,
            [ChannelNames {
                pid: 1000 + i as u32,
                n: 0
            }]
        );
        assert_eq!(h.outcome(i), ProcessOutcome::State(CrState::Continue));
        let r = h.report(i);
        assert_eq!((r.pid, r.n, r.name), (1000 + i as u32, 0, name(i as u32)));
        assert!(r.timings.fifos.is_some() && r.timings.final_state.is_some());
        assert!(r.timings.stop.is_none());
        assert!(r.timings.total >= Duration::from_millis(6));
        // Channels stay open until the verdict.
        assert_eq!(h.apps[i].closes, 0);
    }
    assert_eq!(
        h.lc.poll_timeout(),
        Some(h.now + LocalDeadlines::default().verdict)
    );
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    for i in 0..3 {
        assert_eq!(
            h.apps[i].received,
            [
                options_frame([0; 6], 7),
                GO_AHEAD.to_vec(),
                RELEASE.to_vec()
            ]
        );
        assert_eq!(h.apps[i].closes, 1);
        assert_eq!(h.lc.process(name(i as u32)).unwrap().n, 1);
    }
    assert_eq!(h.lc.phase(), Phase::Idle);
    assert_eq!(h.lc.poll_timeout(), None);
    assert_eq!(h.lc.unexpected_inputs(), 0);
}

#[test]
fn action_order_for_one_process() {
    let mut h = Harness::<1>::new(1);
    h.script_all(&[START, TERM]);
    h.checkpoint(term());
    h.quick(CkptState::Established).unwrap();
    let s = h.slots[0];
    let kinds: Vec<&str> = h
        .actions
        .iter()
        .map(|a| match a {
            Action::Signal { .. } => "signal",
            Action::WatchFifos { .. } => "watch",
            Action::OpenFifos { .. } => "open",
            Action::Write { .. } => "write",
            Action::Read { .. } => "read",
            Action::WaitStopped { .. } => "stop",
            Action::Close { .. } => "close",
            Action::SendToGc { .. } => "gc",
            Action::Report(_) => "report",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "signal", "watch", "open", "write", "read", "write", "read", "report", "gc", "write",
            "close", "gc"
        ]
    );
    // The handshake's generation is the same throughout.
    let slot = h.actions.iter().find_map(|a| match a {
        Action::Close { slot } => Some(*slot),
        _ => None,
    });
    assert_eq!(slot.unwrap().index(), s.index());
    assert_eq!(h.apps[0].received[0], options_frame([0, 0, 1, 0, 0, 0], 7));
    assert_eq!(h.outcome(0), ProcessOutcome::State(CrState::Term));
}

#[test]
fn debugger_words_in_the_options_frame() {
    let config = Config {
        debugger: Some(Debugger {
            attach: true,
            detach: false,
        }),
        ..Default::default()
    };
    let mut h = Harness::<1>::with_config(1, config);
    h.script_all(&[START, CONTINUE]);
    h.checkpoint(plain());
    assert_eq!(h.apps[0].received[0], words(&[0, 0, 0, 0, 0, 0, 1, 0, 7]));
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
}

#[test]
fn zero_processes_report_at_once() {
    let mut h = Harness::<2>::new(0);
    h.checkpoint(plain());
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    h.take();
    h.checkpoint(prep_only());
    assert_eq!(h.to_gc, [CkptState::IncPreped]);
    h.quick(CkptState::IncPreped).unwrap();
    h.job(CkptState::Running, recover_only(), None);
    assert_eq!(h.to_gc, [CkptState::IncPreped, CkptState::FinishedLocal]);
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.lc.phase(), Phase::Idle);
}

// ---- quiesce ----

#[test]
fn prepare_only_then_quiesce_end() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, RUNNING, CONTINUE]);
    let prep = prep_only();
    h.checkpoint(prep);
    assert_eq!(h.to_gc, [CkptState::IncPreped]);
    assert_eq!(h.outcome(1), ProcessOutcome::State(CrState::Running));
    h.quick(CkptState::IncPreped).unwrap();
    assert_eq!(h.lc.phase(), Phase::Quiesced);
    assert_eq!(h.to_gc, [CkptState::IncPreped]);
    assert!(h.apps.iter().all(|a| a.closes == 0));
    // A checkpoint while quiesced does not fit.
    let job = JobState {
        jobid: JOB,
        state: StateCode::plain(CkptState::Running),
        detail: Some(JobDetail {
            handle: 8,
            options: plain(),
            migrating: None,
        }),
    };
    assert!(job_state(&mut h.lc, h.now, &job).is_err());
    h.take();
    h.job(CkptState::Running, recover_only(), None);
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    assert_eq!(h.outcome(0), ProcessOutcome::State(CrState::Continue));
    // No second signal, no second options frame.
    assert_eq!(h.apps[0].signals, 1);
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    for app in &h.apps {
        assert_eq!(
            app.received,
            [
                options_frame([0, 0, 0, 0, 1, 0], 7),
                GO_AHEAD.to_vec(),
                RELEASE.to_vec()
            ]
        );
        assert_eq!(app.closes, 1);
    }
    assert_eq!(h.lc.process(name(0)).unwrap().n, 1);
}

#[test]
fn quiesce_end_without_quiesce_fails_each_process() {
    let mut h = Harness::<2>::new(2);
    h.job(CkptState::Running, recover_only(), None);
    assert_eq!(h.to_gc, [CkptState::Error]);
    h.assert_failed(0, ProcessFailure::NotQuiesced);
    assert_eq!(h.apps[0].signals, 0);
    h.quick(CkptState::Error).unwrap();
    assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered]);
    // No handshake ran: the counters did not move.
    assert_eq!(h.lc.process(name(0)).unwrap().n, 0);
}

#[test]
fn quiesce_aborted_by_the_global_coordinator_releases() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, RUNNING]);
    h.app(1).script(&[NULL]);
    h.checkpoint(prep_only());
    assert_eq!(h.to_gc, [CkptState::Error]);
    // INC_PREPED after an ERROR report does not fit.
    assert!(h.quick(CkptState::IncPreped).is_err());
    h.quick(CkptState::Error).unwrap();
    assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered]);
    assert_eq!(h.apps[0].received.last().unwrap(), &RELEASE.to_vec());
    assert_eq!(h.apps[1].received.len(), 1);
}

#[test]
fn unexpected_states_in_prepare_only_and_checkpoint() {
    let mut h = Harness::<3>::new(3);
    h.app(0).script(&[START, CONTINUE]);
    h.app(1).script(&[START, RUNNING]);
    h.app(2).script(&[START, ERROR]);
    h.checkpoint(prep_only());
    h.assert_failed(0, ProcessFailure::UnexpectedState(CrState::Continue));
    assert_eq!(h.outcome(1), ProcessOutcome::State(CrState::Running));
    assert_eq!(h.outcome(2), ProcessOutcome::State(CrState::Error));
    assert_eq!(h.to_gc, [CkptState::Error]);
    h.quick(CkptState::Error).unwrap();
    // The ERROR one waits for its release like the RUNNING one.
    assert_eq!(h.apps[1].received.len(), 3);
    assert_eq!(h.apps[2].received.len(), 3);
    assert_eq!(h.apps[0].received.len(), 2);
    h.take();
    h.app(0).script(&[START, RUNNING]);
    h.app(1).script(&[START, RESTART]);
    h.app(2).script(&[START, CONTINUE]);
    h.checkpoint(plain());
    h.assert_failed(0, ProcessFailure::UnexpectedState(CrState::Running));
    h.assert_failed(1, ProcessFailure::UnexpectedState(CrState::Restart));
    assert_eq!(h.outcome(2), ProcessOutcome::State(CrState::Continue));
    assert_eq!(h.to_gc, [CkptState::Error]);
}

// ---- options ----

#[test]
fn migration_options() {
    let mut h = Harness::<3>::new(3);
    h.script_all(&[START, CONTINUE]);
    let moving = [name(1), ProcessName { jobid: 9, vpid: 2 }];
    h.job(CkptState::Running, plain(), Some(&moving[..]));
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    assert_eq!(h.apps[0].received[0], options_frame([1, 0, 0, 0, 0, 0], 7));
    assert_eq!(h.apps[1].received[0], options_frame([1, 1, 0, 0, 0, 0], 7));
    assert_eq!(h.apps[2].received[0], options_frame([1, 0, 0, 0, 0, 0], 7));
    // The target tore down after its final state: closed, never released.
    assert_eq!(h.apps[1].closes, 1);
    assert_eq!(h.apps[0].closes, 0);
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    assert_eq!(h.apps[1].received.len(), 2);
    assert_eq!(h.apps[0].received.last().unwrap(), &RELEASE.to_vec());
    assert_eq!(h.apps[2].received.last().unwrap(), &RELEASE.to_vec());
    // An empty migrating list still marks the job as migrating.
    h.take();
    h.script_all(&[START, CONTINUE]);
    h.job(CkptState::Running, plain(), Some(&[][..]));
    assert_eq!(h.apps[0].received[3], options_frame([1, 0, 0, 0, 0, 0], 7));
}

#[test]
fn stop_waits_for_each_process_to_stop() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    let stop = stop();
    h.checkpoint(stop);
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    let waits = h
        .actions
        .iter()
        .filter(|a| matches!(a, Action::WaitStopped { .. }))
        .count();
    assert_eq!(waits, 2);
    assert!(h.report(0).timings.stop.is_some());
    assert_eq!(h.apps[0].received[0], options_frame([0, 0, 0, 1, 0, 0], 7));
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    // One process never stops: it fails at the stop deadline.
    h.take();
    h.script_all(&[START, CONTINUE]);
    h.app(1).silent = Some(At::Stop);
    h.checkpoint(stop);
    assert!(h.to_gc.is_empty());
    let t0 = h.now;
    h.run();
    h.assert_failed(1, ProcessFailure::Timeout(Stage::Stop));
    assert_eq!(h.outcome(0), ProcessOutcome::State(CrState::Continue));
    assert!(h.now >= t0 + Duration::from_secs(60));
    assert!(h.to_gc.first() == Some(&CkptState::Error));
}

// ---- refusals and malformed frames ----

#[test]
fn null_and_in_progress_answers_fail_only_their_process() {
    let mut h = Harness::<3>::new(3);
    h.app(0).script(&[NULL]);
    h.app(1).script(&[IN_PROGRESS]);
    h.app(2).script(&[START, CONTINUE]);
    h.checkpoint(plain());
    h.assert_failed(0, ProcessFailure::Refused(CkptResponse::Null));
    h.assert_failed(1, ProcessFailure::Refused(CkptResponse::InProgress));
    assert_eq!(h.outcome(2), ProcessOutcome::State(CrState::Continue));
    assert_eq!(h.to_gc, [CkptState::Error]);
    // Refused: options only, no go-ahead, closed at once.
    assert_eq!(h.apps[0].received, [options_frame([0; 6], 7)]);
    assert_eq!(h.apps[0].closes, 1);
    h.quick(CkptState::Error).unwrap();
    assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered]);
    assert_eq!(h.apps[2].received.len(), 3);
    // Every counter moved on: the next checkpoint works for all.
    h.take();
    h.script_all(&[START, CONTINUE]);
    h.checkpoint(plain());
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    assert!(h.apps.iter().all(|a| a.watched.last().unwrap().n == 1));
}

#[test]
fn an_error_response_fails_the_process() {
    let mut h = Harness::<1>::new(1);
    h.app(0).script(&[3]);
    h.checkpoint(plain());
    h.assert_failed(0, ProcessFailure::Refused(CkptResponse::Error));
    assert_eq!(h.to_gc, [CkptState::Error]);
}

#[test]
fn malformed_frames() {
    let mut h = Harness::<4>::new(4);
    h.app(0).script(&[9]);
    h.app(1).script(&[START, 42]);
    h.app(2).reads = VecDeque::from([vec![0, 0]]);
    h.app(3).reads = VecDeque::from([START.to_ne_bytes().to_vec(), vec![4, 0, 0, 0, 0]]);
    h.checkpoint(plain());
    h.assert_failed(
        0,
        ProcessFailure::Malformed {
            stage: Stage::Response,
            kind: ErrorKind::UnknownResponse(9),
        },
    );
    h.assert_failed(
        1,
        ProcessFailure::Malformed {
            stage: Stage::FinalState,
            kind: ErrorKind::UnknownCrState(42),
        },
    );
    h.assert_failed(
        2,
        ProcessFailure::Malformed {
            stage: Stage::Response,
            kind: ErrorKind::Length {
                expected: 4,
                found: 2,
            },
        },
    );
    h.assert_failed(
        3,
        ProcessFailure::Malformed {
            stage: Stage::FinalState,
            kind: ErrorKind::Length {
                expected: 4,
                found: 5,
            },
        },
    );
    assert_eq!(h.to_gc, [CkptState::Error]);
    assert!(h.apps.iter().all(|a| a.closes == 1));
    h.quick(CkptState::Error).unwrap();
    assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered]);
    // Nothing was released: every channel was closed on the bad frame.
    assert!(
        h.apps
            .iter()
            .all(|a| !a.got_go_ahead || a.received.len() == 2)
    );
}

// ---- processes that vanish ----

#[test]
fn a_process_vanishing_at_each_step() {
    let cases = [
        (At::Signal, ProcessFailure::PeerGone(Stage::Fifos)),
        (At::Fifos, ProcessFailure::PeerGone(Stage::Fifos)),
        (At::Open, ProcessFailure::PeerGone(Stage::Open)),
        (At::Options, ProcessFailure::PeerGone(Stage::Options)),
        (At::Response, ProcessFailure::PeerGone(Stage::Response)),
        (At::GoAhead, ProcessFailure::PeerGone(Stage::GoAhead)),
        (At::Final, ProcessFailure::PeerGone(Stage::FinalState)),
    ];
    for (at, failure) in cases {
        let mut h = Harness::<3>::new(3);
        h.script_all(&[START, CONTINUE]);
        h.app(1).gone = Some(at);
        h.checkpoint(plain());
        assert_eq!(h.outcome(1), ProcessOutcome::Failed(failure), "{at:?}");
        assert_eq!(
            h.outcome(0),
            ProcessOutcome::State(CrState::Continue),
            "{at:?}"
        );
        assert_eq!(
            h.outcome(2),
            ProcessOutcome::State(CrState::Continue),
            "{at:?}"
        );
        assert_eq!(h.to_gc, [CkptState::Error], "{at:?}");
        assert_eq!(h.apps[1].closes, 1, "{at:?}");
        h.quick(CkptState::Error).unwrap();
        assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered], "{at:?}");
        assert_eq!(h.apps[0].received.last().unwrap(), &RELEASE.to_vec());
        assert_eq!(h.lc.phase(), Phase::Idle);
        assert_eq!(h.lc.poll_timeout(), None);
    }
}

#[test]
fn a_process_vanishing_before_its_release() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    h.app(0).gone = Some(At::Release);
    h.checkpoint(plain());
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    h.quick(CkptState::Established).unwrap();
    // The snapshot is complete; the lost release is logged, the rest go on.
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    assert_eq!(h.apps[0].closes, 1);
    assert_eq!(h.apps[1].received.last().unwrap(), &RELEASE.to_vec());
    assert_eq!(h.reports.len(), 2);
}

#[test]
fn a_channel_lost_while_held_is_closed_without_a_second_report() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    h.checkpoint(plain());
    let s = h.report(0).slot;
    h.lc.handle_io_error(h.now, s, IoError::PeerGone).unwrap();
    h.settle();
    assert_eq!(h.apps[0].closes, 1);
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    assert_eq!(h.apps[0].received.len(), 2);
    assert_eq!(h.reports.len(), 2);
}

// ---- deadlines ----

#[test]
fn a_deadline_at_each_wait() {
    let d = LocalDeadlines::default();
    let cases = [
        (At::Signal, Stage::Fifos, d.fifos),
        (At::Fifos, Stage::Fifos, d.fifos),
        (At::Open, Stage::Open, d.open),
        (At::Options, Stage::Options, d.write),
        (At::Response, Stage::Response, d.response),
        (At::GoAhead, Stage::GoAhead, d.write),
        (At::Final, Stage::FinalState, d.final_state),
    ];
    for (at, stage, wait) in cases {
        let mut h = Harness::<3>::new(3);
        h.script_all(&[START, CONTINUE]);
        h.app(2).silent = Some(at);
        h.checkpoint(plain());
        assert!(h.to_gc.is_empty(), "{at:?}");
        let t0 = h.now;
        let due = h.lc.poll_timeout().unwrap();
        assert!(due <= t0 + wait && due + Duration::from_millis(50) >= t0 + wait);
        // Just before the deadline nothing happens.
        h.lc.handle_timeout(due - Duration::from_micros(1));
        h.settle();
        assert!(h.to_gc.is_empty(), "{at:?}");
        h.run_until(due);
        assert_eq!(
            h.outcome(2),
            failed(ProcessFailure::Timeout(stage)),
            "{at:?}"
        );
        assert_eq!(h.to_gc, [CkptState::Error], "{at:?}");
        assert_eq!(h.apps[2].closes, 1, "{at:?}");
        h.quick(CkptState::Error).unwrap();
        assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered]);
        // A late answer for the abandoned handshake is ignored.
        let s = h.report(2).slot;
        assert_eq!(h.lc.handle_written(h.now, s), Err(InputError::Unexpected));
        // The next checkpoint works.
        h.take();
        h.app(2).silent = None;
        h.script_all(&[START, CONTINUE]);
        h.checkpoint(plain());
        assert_eq!(h.to_gc, [CkptState::FinishedLocal], "{at:?}");
    }
}

#[test]
fn release_deadline() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    h.app(1).silent = Some(At::Release);
    h.checkpoint(plain());
    h.quick(CkptState::Established).unwrap();
    assert_eq!(h.lc.phase(), Phase::Releasing);
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    h.run();
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
    assert_eq!(h.lc.phase(), Phase::Idle);
    assert_eq!(h.apps[1].closes, 1);
}

#[test]
fn verdict_deadline_releases_and_reports_error() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    h.checkpoint(plain());
    let t0 = h.now;
    h.run();
    assert!(h.now >= t0 + Duration::from_secs(3600));
    assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Error]);
    assert!(
        h.apps
            .iter()
            .all(|a| a.received.last().unwrap() == &RELEASE.to_vec())
    );
    assert_eq!(h.lc.phase(), Phase::Idle);
    // The late verdict does not fit any more.
    assert!(h.quick(CkptState::Established).is_err());
    assert_eq!(h.lc.unexpected_inputs(), 1);
}

#[test]
fn quiesced_deadline_releases_and_reports_error() {
    let mut h = Harness::<1>::new(1);
    h.script_all(&[START, RUNNING]);
    h.checkpoint(prep_only());
    h.quick(CkptState::IncPreped).unwrap();
    let t0 = h.now;
    h.run();
    assert!(h.now >= t0 + Duration::from_secs(3600));
    assert_eq!(h.to_gc, [CkptState::IncPreped, CkptState::Error]);
    assert_eq!(h.lc.phase(), Phase::Idle);
}

// ---- sequences and the table ----

#[test]
fn five_checkpoints_in_a_row() {
    let mut h = Harness::<2>::new(2);
    for round in 0..5u32 {
        h.take();
        h.script_all(&[START, CONTINUE]);
        h.checkpoint(plain());
        h.quick(CkptState::Established).unwrap();
        assert_eq!(h.to_gc, [CkptState::FinishedLocal, CkptState::Recovered]);
        assert_eq!(h.report(1).n, round);
    }
    for app in &h.apps {
        let ns: Vec<u32> = app.watched.iter().map(|w| w.n).collect();
        assert_eq!(ns, [0, 1, 2, 3, 4]);
        assert_eq!(app.n, 5);
    }
    let opened: Vec<u32> = h
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::OpenFifos { names, .. } => Some(names.n),
            _ => None,
        })
        .collect();
    assert_eq!(opened, [4, 4]);
}

#[test]
fn full_table_and_bad_entries() {
    let mut lc = lc::<2>(Config::default());
    assert!(lc.is_empty());
    let a = lc.add_process(name(0), 10).unwrap();
    lc.add_process(name(1), 11).unwrap();
    assert_eq!(lc.add_process(name(2), 12), Err(InputError::Full));
    assert_eq!(lc.add_process(name(0), 13), Err(InputError::Duplicate));
    assert_eq!(lc.add_process(name(3), 11), Err(InputError::Duplicate));
    assert_eq!(lc.add_process(name(3), 0), Err(InputError::BadPid));
    assert_eq!(
        lc.add_process(name(3), i32::MAX as u32 + 1),
        Err(InputError::BadPid)
    );
    assert_eq!(
        lc.remove_process(Instant::ZERO, name(7)),
        Err(InputError::UnknownProcess)
    );
    assert_eq!(
        lc.update_pid(Instant::ZERO, name(7), 5),
        Err(InputError::UnknownProcess)
    );
    assert_eq!(
        lc.update_pid(Instant::ZERO, name(0), 11),
        Err(InputError::Duplicate)
    );
    assert_eq!(lc.len(), 2);
    lc.remove_process(Instant::ZERO, name(0)).unwrap();
    let b = lc.add_process(name(2), 12).unwrap();
    assert_eq!(b.index(), a.index());
    assert_ne!(b, a);
    assert_eq!(lc.len(), 2);
    // Inputs for the removed process are stale; out of range is refused.
    assert_eq!(lc.handle_opened(Instant::ZERO, a), Err(InputError::Stale));
    let bad = SlotId {
        index: 5,
        generation: 0,
    };
    assert_eq!(
        lc.handle_opened(Instant::ZERO, bad),
        Err(InputError::NoSuchSlot)
    );
    assert_eq!(
        lc.handle_opened(Instant::ZERO, b),
        Err(InputError::Unexpected)
    );
    assert_eq!(lc.unexpected_inputs(), 3);
    assert!(poll(&mut lc).is_none());
}

#[test]
fn local_update_resets_the_counter() {
    let mut h = Harness::<2>::new(2);
    for _ in 0..2 {
        h.script_all(&[START, CONTINUE]);
        h.checkpoint(plain());
        h.quick(CkptState::Established).unwrap();
    }
    assert_eq!(h.lc.process(name(0)).unwrap().n, 2);
    let update = LocalUpdate {
        name: name(0),
        pid: 4242,
        debug: None,
    };
    h.lc.handle_process_message(h.now, 4242, &bytes(&ToDaemon::LocalUpdate(update)))
        .unwrap();
    assert_eq!(h.lc.process(name(0)).unwrap().slot.index(), 0);
    let info = h.lc.process(name(0)).unwrap();
    assert_eq!((info.pid, info.n), (4242, 0));
    assert_eq!(info.names(), ChannelNames { pid: 4242, n: 0 });
    let bad = LocalUpdate { pid: -1, ..update };
    assert_eq!(
        h.lc.handle_process_message(h.now, 4242, &bytes(&ToDaemon::LocalUpdate(bad))),
        Err(InputError::BadPid)
    );
    assert!(matches!(
        h.lc.handle_process_message(h.now, 4242, &[0, 0, 0, 1, 9]),
        Err(InputError::Decode(_))
    ));
    // The restarted app coordinator starts again at 0.
    h.apps[0] = FakeApp {
        pid: 4242,
        ..Default::default()
    };
    h.take();
    h.script_all(&[START, CONTINUE]);
    h.checkpoint(plain());
    assert_eq!(h.to_gc, [CkptState::FinishedLocal]);
    assert_eq!(h.apps[0].watched, [ChannelNames { pid: 4242, n: 0 }]);
    assert_eq!(h.apps[1].watched.last().unwrap().n, 2);
    assert_eq!(h.report(0).pid, 4242);
}

#[test]
fn local_update_during_a_handshake_fails_it() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    h.app(0).silent = Some(At::Final);
    h.checkpoint(plain());
    let old = h.slots[0];
    let new = h.lc.update_pid(h.now, name(0), 5000).unwrap();
    assert_ne!(old, new);
    h.settle();
    h.assert_failed(0, ProcessFailure::Restarted);
    assert_eq!(h.to_gc, [CkptState::Error]);
    assert_eq!(h.lc.process(name(0)).unwrap().n, 0);
    assert_eq!(h.lc.handle_written(h.now, old), Err(InputError::Stale));
}

#[test]
fn removing_a_process_during_its_handshake() {
    let mut h = Harness::<2>::new(2);
    h.script_all(&[START, CONTINUE]);
    h.app(0).silent = Some(At::Response);
    h.checkpoint(plain());
    assert!(h.to_gc.is_empty());
    h.lc.remove_process(h.now, name(0)).unwrap();
    // The slot is not reused before its close and report are handed out.
    assert_eq!(h.lc.add_process(name(5), 77), Err(InputError::Full));
    h.settle();
    h.assert_failed(0, ProcessFailure::Removed);
    assert_eq!(h.apps[0].closes, 1);
    assert_eq!(h.to_gc, [CkptState::Error]);
    assert_eq!(h.lc.add_process(name(5), 77).unwrap().index(), 0);
    h.quick(CkptState::Error).unwrap();
    assert_eq!(h.to_gc, [CkptState::Error, CkptState::Recovered]);
}

// ---- the global coordinator's messages ----

#[test]
fn job_states_that_do_not_fit_are_ignored() {
    let mut h = Harness::<2>::new(2);
    for s in [
        CkptState::Established,
        CkptState::Error,
        CkptState::IncPreped,
        CkptState::Recovered,
        CkptState::None,
    ] {
        assert!(matches!(h.quick(s), Err(InputError::DoesNotFit { .. })));
    }
    assert_eq!(h.quick(CkptState::Running), Err(InputError::MissingDetail));
    assert!(h.actions.is_empty());
    h.script_all(&[START, CONTINUE]);
    h.app(0).silent = Some(At::Final);
    h.checkpoint(plain());
    // During the handshakes: a second RUNNING, ESTABLISHED and INC_PREPED do not fit.
    let job = JobState {
        jobid: JOB,
        state: StateCode::plain(CkptState::Running),
        detail: Some(JobDetail {
            handle: 9,
            options: plain(),
            migrating: None,
        }),
    };
    assert!(job_state(&mut h.lc, h.now, &job).is_err());
    assert!(h.quick(CkptState::Established).is_err());
    assert!(h.quick(CkptState::IncPreped).is_err());
    assert_eq!(h.lc.phase(), Phase::Handshake(Mode::Checkpoint));
    assert_eq!(h.lc.unexpected_inputs(), 9);
    // The notification encoding of a state is understood too.
    let notify = JobState {
        jobid: JOB,
        state: StateCode {
            state: CkptState::Error,
            notify: true,
        },
        detail: None,
    };
    job_state(&mut h.lc, h.now, &notify).unwrap();
    h.settle();
    // ERROR during the handshakes aborts them and releases the finished.
    h.assert_failed(0, ProcessFailure::Aborted);
    assert_eq!(h.outcome(1), ProcessOutcome::State(CrState::Continue));
    assert_eq!(h.to_gc, [CkptState::Recovered]);
    assert_eq!(h.apps[1].received.last().unwrap(), &RELEASE.to_vec());
    assert_eq!(h.apps[0].received.len(), 2);
    assert_eq!(h.lc.phase(), Phase::Idle);
}

#[test]
fn local_finish_is_informational() {
    let mut h = Harness::<1>::new(1);
    h.script_all(&[START, CONTINUE]);
    h.app(0).silent = Some(At::Final);
    h.checkpoint(plain());
    let before = h.actions.len();
    let finish = LocalFinish {
        cr_state: CrState::Continue,
    };
    let finish = bytes(&ToDaemon::LocalFinish(finish));
    h.lc.handle_process_message(h.now, 1000, &finish).unwrap();
    h.lc.handle_process_message(h.now, 99, &finish).unwrap();
    h.settle();
    assert_eq!(h.actions.len(), before);
    assert_eq!(h.lc.phase(), Phase::Handshake(Mode::Checkpoint));
    // And the handshakes never need it.
    assert_eq!(h.lc.unexpected_inputs(), 0);
}

#[test]
fn inputs_that_do_not_fit_the_step() {
    let mut h = Harness::<1>::new(1);
    h.app(0).silent = Some(At::Fifos);
    h.checkpoint(plain());
    let s = h.slots[0];
    let slot = h
        .actions
        .iter()
        .find_map(|a| match a {
            Action::WatchFifos { slot, .. } => Some(*slot),
            _ => None,
        })
        .unwrap();
    assert_eq!(slot.index(), s.index());
    assert_eq!(h.lc.handle_opened(h.now, slot), Err(InputError::Unexpected));
    assert_eq!(
        h.lc.handle_written(h.now, slot),
        Err(InputError::Unexpected)
    );
    assert_eq!(
        h.lc.handle_read(h.now, slot, &[0; 4]),
        Err(InputError::Unexpected)
    );
    assert_eq!(
        h.lc.handle_stopped(h.now, slot),
        Err(InputError::Unexpected)
    );
    // The handshake's own generation differs from the slot's at add time.
    assert_eq!(h.lc.handle_fifos_exist(h.now, s), Err(InputError::Stale));
    h.lc.handle_fifos_exist(h.now, slot).unwrap();
    assert!(matches!(poll(&mut h.lc), Some(Action::OpenFifos { .. })));
    assert_eq!(h.lc.unexpected_inputs(), 5);
}

#[test]
fn storage_is_emptied_and_indexed_by_new() {
    let mut storage = [ProcessSlot::EMPTY; 3];
    {
        let mut lc = LocalCoordinator::new(Config::default(), &mut storage[..]);
        for v in 0..3 {
            lc.add_process(name(v), 100 + v).unwrap();
        }
        assert_eq!(lc.add_process(name(9), 99), Err(InputError::Full));
    }
    // Reused: every slot is empty again, and indexed from 0.
    let mut lc = LocalCoordinator::new(Config::default(), &mut storage[..]);
    assert!(lc.is_empty());
    assert_eq!(lc.capacity(), 3);
    assert_eq!(lc.add_process(name(5), 105).unwrap().index(), 0);
    let mut none = LocalCoordinator::new(Config::default(), std::vec::Vec::<ProcessSlot>::new());
    assert_eq!(none.add_process(name(0), 100), Err(InputError::Full));
    assert_eq!(none.into_storage().len(), 0);
}

#[test]
fn counter_wraps_like_a_c_int() {
    assert_eq!(next_counter(0), 1);
    assert_eq!(next_counter(i32::MAX as u32 - 1), i32::MAX as u32);
    assert_eq!(next_counter(i32::MAX as u32), 0);
}

// ---- any input, in any order ----

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random inputs never panic, and once inputs stop, the deadlines alone
/// bring the machine back to idle with nothing left to wait for.
#[test]
fn random_inputs_never_hang_or_panic() {
    let (mut sent, mut reports) = (0u32, 0u32);
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut lc = lc::<3>(Config::default());
        let mut now = Instant::ZERO;
        let mut ids: Vec<SlotId> = Vec::new();
        let moving = [name(1)];
        for _ in 0..400 {
            now += Duration::from_millis(rng.below(5_000));
            let mut out = [0u8; MAX_MESSAGE_LEN];
            while let Some(a) = lc.poll_action(&mut out) {
                match a {
                    Action::Report(r) => {
                        reports += 1;
                        ids.push(r.slot);
                    }
                    Action::SendToGc { len } => {
                        OrtedState::parse(&out[..len]).unwrap();
                        sent += 1;
                    }
                    process => ids.extend(slot_of(&process)),
                }
            }
            let slot = if ids.is_empty() || rng.below(8) == 0 {
                SlotId {
                    index: rng.below(5) as u32,
                    generation: rng.below(4) as u32,
                }
            } else {
                ids[rng.below(ids.len() as u64) as usize]
            };
            let vpid = rng.below(4) as u32;
            let _ = match rng.below(14) {
                0 => lc
                    .add_process(name(vpid), 100 + rng.below(6) as u32)
                    .map(|_| ())
                    .map_err(|_| ()),
                1 => lc.remove_process(now, name(vpid)).map_err(|_| ()),
                2 => lc
                    .update_pid(now, name(vpid), 200 + rng.below(6) as u32)
                    .map(|_| ())
                    .map_err(|_| ()),
                3 | 4 => {
                    let state = CkptState::ALL[rng.below(13) as usize];
                    let options = JobOptions {
                        term: rng.below(2) == 0,
                        stop: rng.below(4) == 0,
                        inc_prep_only: rng.below(3) == 0,
                        inc_recover_only: rng.below(3) == 0,
                    };
                    let detail = (rng.below(4) != 0).then_some(JobDetail {
                        handle: 3,
                        options,
                        migrating: (rng.below(3) == 0).then_some(List::Items(&moving[..])),
                    });
                    let job = JobState {
                        jobid: JOB,
                        state: StateCode::plain(state),
                        detail,
                    };
                    let _ = job_state(&mut lc, now, &job);
                    Ok(())
                }
                5 => lc.handle_fifos_exist(now, slot).map_err(|_| ()),
                6 => lc.handle_opened(now, slot).map_err(|_| ()),
                7 => lc.handle_written(now, slot).map_err(|_| ()),
                8 | 9 => {
                    let len = [4, 4, 4, 0, 3, 5][rng.below(6) as usize];
                    let code = rng.below(10) as i32 - 1;
                    let mut buf = [0u8; 8];
                    buf[..4].copy_from_slice(&code.to_ne_bytes());
                    lc.handle_read(now, slot, &buf[..len]).map_err(|_| ())
                }
                10 => lc
                    .handle_io_error(now, slot, IoError::PeerGone)
                    .map_err(|_| ()),
                11 => lc.handle_stopped(now, slot).map_err(|_| ()),
                12 => {
                    let finish = ToDaemon::LocalFinish(LocalFinish {
                        cr_state: CrState::Continue,
                    });
                    lc.handle_process_message(now, 100, &bytes(&finish))
                        .map_err(|_| ())
                }
                _ => {
                    lc.handle_timeout(now);
                    Ok(())
                }
            };
        }
        // No more inputs: only time passes.
        let mut steps = 0;
        loop {
            while poll(&mut lc).is_some() {}
            let Some(t) = lc.poll_timeout() else {
                break;
            };
            now = now.max(t);
            lc.handle_timeout(now);
            steps += 1;
            assert!(steps < 100, "seed {seed}: deadlines do not converge");
        }
        assert_eq!(lc.phase(), Phase::Idle, "seed {seed}");
    }
    // The inputs did drive the machine through its phases.
    assert!(sent > 40 && reports > 100, "sent {sent}, reports {reports}");
}
