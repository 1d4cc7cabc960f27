//! The in-memory world: one global coordinator, `NODES` local coordinators
//! and `PER_NODE` application processes per node, wired through channels
//! that carry the real bytes, on a virtual clock.
//!
//! - FIFOs are pairs of byte queues named by (pid, n), with the open ends of
//!   each side: the app's `Write` bytes become the LC's `Read` bytes and the
//!   LC's `Write` bytes the app's `Read` bytes, as a pair of FIFOs would. As
//!   with the POSIX adapter, the app holds `prog_read` read-write, so its
//!   reads never see EOF (its deadline ends them); a write to a FIFO whose
//!   reader closed fails (EPIPE); the LC's read after the app closed its
//!   end sees EOF once the buffered bytes are read.
//! - DSS messages are encoded with `Message::emit` and decoded with `parse`
//!   on every hop (LC and GC, app and GC, app and its LC).
//! - The LC's `Signal` sets the process's `CheckpointFlag`; the process
//!   reaches its progress point after a scripted delay.
//! - Hooks and sstore are answered by per-rank scripts and a tiny sstore;
//!   the GC's `Established` feeds the global sequence number and reference.
//!
//! Every byte string is recorded per channel and decoded when it is sent; a
//! byte string that does not decode fails the test at once. Every run loop is
//! bounded by a step count and a virtual-time limit and fails loudly.

use snapc_core::app::{
    self, AppCoordinator, CheckpointFlag, CheckpointResult, HostError, PrepareResult, SstoreOp,
};
use snapc_core::global::{self, Config, GlobalCoordinator, Move, NodeSlot};
use snapc_core::local::{self, LocalCoordinator, ProcessSlot, SlotId};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::fifo::{self, OptionsFrame};
use snapc_core::wire::{
    ChannelNames, CrState, FromGc, Message, ProcessName, Request, RequestOp, ToDaemon, ToGc,
};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};
use std::collections::{BTreeMap, HashMap, VecDeque};

pub const JOBID: u32 = 0x1234_0001;
pub const NODES: usize = 2;
pub const PER_NODE: usize = 3;
pub const NRANKS: usize = NODES * PER_NODE;
/// Slots per local coordinator.
pub const SLOTS: usize = 4;

pub type Lc = LocalCoordinator<[ProcessSlot; SLOTS]>;
pub type Gc = GlobalCoordinator<[String; NRANKS], [NodeSlot; NODES], 4>;

/// Steps one run may take before the test fails.
const MAX_STEPS: usize = 200_000;
/// Virtual time one run may take before the test fails.
const MAX_RUN: Duration = Duration::from_secs(48 * 3600);

pub fn pid_of(vpid: usize) -> u32 {
    1000 + vpid as u32
}

pub fn name_of(vpid: usize) -> ProcessName {
    ProcessName {
        jobid: JOBID,
        vpid: vpid as u32,
    }
}

/// Where a process vanishes: just before it carries out this action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillAt {
    Open,
    ReadOptions,
    WriteResponse,
    ReadGoAhead,
    Prepare,
    Checkpoint,
    WriteFinal,
    ReadRelease,
    Recover,
}

/// A host call the script leaves unanswered (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Location,
    Prepare,
    Checkpoint,
    Sync,
    Recover,
}

/// How one rank's application behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// Answers of the prepare hook, in order; `Ready` once used up.
    pub prepare: VecDeque<PrepareResult>,
    /// Answers of the checkpointer, in order; `Continue` once used up.
    pub checkpoint: VecDeque<CheckpointResult>,
    /// A hook never answered (once).
    pub hang: Option<Hook>,
    /// Where the process vanishes.
    pub kill_at: Option<KillAt>,
    /// From the signal to the progress point; `None`: never reaches it.
    pub progress_delay: Option<Duration>,
    /// How long each hook takes.
    pub hook_time: Duration,
    /// The runtime never reports this process stopped (`stop`).
    pub never_stops: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            prepare: VecDeque::new(),
            checkpoint: VecDeque::new(),
            hang: None,
            kill_at: None,
            progress_delay: Some(Duration::from_millis(1)),
            hook_time: Duration::from_millis(10),
            never_stops: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppPending {
    None,
    Open,
    Read(usize),
}

pub struct Rank {
    pub node: usize,
    pub flag: &'static CheckpointFlag,
    pub app: AppCoordinator<'static>,
    pub alive: bool,
    pub awaiting_termination: bool,
    pub script: Script,
    pub outcomes: Vec<app::Outcome>,
    /// The states the recover hook was called with.
    pub recovered_with: Vec<CrState>,
    /// How many times the checkpointer was called.
    pub checkpoints: usize,
    chan: Option<ChannelNames>,
    pending: AppPending,
    progress_at: Option<Instant>,
}

impl Rank {
    pub fn requests(&self) -> Vec<app::RequestReport> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                app::Outcome::Request(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn handshakes(&self) -> Vec<app::HandshakeReport> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                app::Outcome::Handshake(r) => Some(*r),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Pair {
    exists: bool,
    to_app: VecDeque<u8>,
    to_lc: VecDeque<u8>,
    app_open: bool,
    lc_open: bool,
}

#[derive(Debug, Clone, Copy)]
enum LcPending {
    Watch(SlotId, ChannelNames),
    Read(SlotId, usize),
}

/// One recorded byte string.
#[derive(Debug, Clone)]
pub struct Rec {
    pub at: Instant,
    pub chan: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
enum Ev {
    AppOpened(usize),
    AppRead(usize, Vec<u8>),
    AppWriteDone(usize),
    AppIoError(usize, IoError),
    AppPrepare(usize, PrepareResult),
    AppCheckpoint(usize, CheckpointResult),
    AppRecovered(usize),
    AppSstore(usize),
    AppGlobal(usize, u32),
    AppTeardownDone(usize),
    AppGc(usize, Vec<u8>),
    LcFifosExist(usize, SlotId),
    LcOpened(usize, SlotId),
    LcWritten(usize, SlotId),
    LcRead(usize, SlotId, Vec<u8>),
    LcIoError(usize, SlotId, IoError),
    LcStopped(usize, SlotId),
    LcJobState(usize, Vec<u8>),
    LcDaemon(usize, u32, Vec<u8>),
    GcOrted(usize, Vec<u8>),
    GcRequest(usize, Vec<u8>),
    GcMigrationDone(bool),
    GcRestartDone(bool),
}

#[derive(Debug, Default, Clone)]
pub struct Handle {
    pub registered: Vec<usize>,
    pub skip: Vec<usize>,
    pub crs_name: Vec<usize>,
    pub synced: Vec<usize>,
}

pub struct World {
    pub now: Instant,
    pub gc: Gc,
    pub lcs: Vec<Lc>,
    pub ranks: Vec<Rank>,
    pub log: Vec<Rec>,
    /// The local coordinators' per-process results.
    pub lc_results: Vec<Vec<local::ProcessResult>>,
    /// The global coordinator's operation reports.
    pub gc_reports: Vec<global::Report>,
    /// Established snapshots: handle -> (seq, reference).
    pub global: BTreeMap<u32, (u32, String)>,
    /// Per-handle local snapshot records.
    pub handles: BTreeMap<u32, Handle>,
    /// The migrations the runtime was asked for.
    pub migrations: Vec<(u32, u32, Vec<Move>)>,
    /// The restarts the runtime was asked for.
    pub restarts: Vec<(i32, String)>,
    /// What the runtime answers to a migration or a restart.
    pub runtime_ok: bool,
    /// Whether the runtime answers migrations and restarts at all.
    pub runtime_answers: bool,
    /// How many more JOB_STATEs reach the LCs (`None`: all); later ones
    /// are lost.
    pub pass_to_lcs: Option<usize>,
    /// Drop everything the GC sends to the ranks.
    pub mute_to_ranks: bool,
    /// Inputs a machine refused (expected in some scenarios).
    pub refused: Vec<String>,
    fs: HashMap<(u32, u32), Pair>,
    lc_chan: HashMap<(usize, usize), ChannelNames>,
    lc_pending: HashMap<(usize, usize), LcPending>,
    events: VecDeque<Ev>,
    timers: Vec<(Instant, Ev)>,
    pub steps: usize,
}

impl World {
    /// The job, every rank in its LC's table, INIT sent by rank 0.
    pub fn new(setup: impl Fn(usize, &mut app::Config, &mut Script)) -> Self {
        Self::with_configs(setup, |_| {}, |_| {})
    }

    pub fn with_configs(
        setup: impl Fn(usize, &mut app::Config, &mut Script),
        lc_setup: impl Fn(&mut local::Config),
        gc_setup: impl Fn(&mut Config),
    ) -> Self {
        let mut lc_config = local::Config::default();
        lc_setup(&mut lc_config);
        let mut gc_config = Config {
            jobid: JOBID,
            nranks: NRANKS as u32,
            deadlines: global::GlobalDeadlines::default(),
        };
        gc_setup(&mut gc_config);
        let placement: [String; NRANKS] = core::array::from_fn(|v| format!("node{}", v / PER_NODE));
        let gc = Gc::new(gc_config, placement, [NodeSlot::EMPTY; NODES]);
        let mut lcs: Vec<Lc> = (0..NODES)
            .map(|_| Lc::new(lc_config, [ProcessSlot::EMPTY; SLOTS]))
            .collect();
        let mut ranks = Vec::new();
        for v in 0..NRANKS {
            let mut config = app::Config::new(pid_of(v), name_of(v), v == 0);
            let mut script = Script::default();
            setup(v, &mut config, &mut script);
            let flag: &'static CheckpointFlag = Box::leak(Box::new(CheckpointFlag::new()));
            let node = v / PER_NODE;
            lcs[node].add_process(name_of(v), config.pid).unwrap();
            ranks.push(Rank {
                node,
                flag,
                app: AppCoordinator::new(config, flag),
                alive: true,
                awaiting_termination: false,
                script,
                outcomes: Vec::new(),
                recovered_with: Vec::new(),
                checkpoints: 0,
                chan: None,
                pending: AppPending::None,
                progress_at: None,
            });
        }
        let mut w = Self {
            now: Instant::from_secs(1),
            gc,
            lcs,
            ranks,
            log: Vec::new(),
            lc_results: vec![Vec::new(); NODES],
            gc_reports: Vec::new(),
            global: BTreeMap::new(),
            handles: BTreeMap::new(),
            migrations: Vec::new(),
            restarts: Vec::new(),
            runtime_ok: true,
            runtime_answers: true,
            pass_to_lcs: None,
            mute_to_ranks: false,
            refused: Vec::new(),
            fs: HashMap::new(),
            lc_chan: HashMap::new(),
            lc_pending: HashMap::new(),
            events: VecDeque::new(),
            timers: Vec::new(),
            steps: 0,
        };
        for v in 0..NRANKS {
            w.request(v, Request::Init).unwrap();
        }
        w.run_until("INIT", |w| w.idle());
        assert!(w.gc.is_checkpointable());
        w
    }

    // ---- recording ----

    fn record(&mut self, chan: String, bytes: &[u8]) {
        self.log.push(Rec {
            at: self.now,
            chan,
            bytes: bytes.to_vec(),
        });
    }

    /// Every byte string sent on `chan`, in order.
    pub fn sent(&self, chan: &str) -> Vec<Vec<u8>> {
        self.log
            .iter()
            .filter(|r| r.chan == chan)
            .map(|r| r.bytes.clone())
            .collect()
    }

    // ---- the application's side ----

    /// An application request on rank `v`; the REQUEST_OP, if any, goes to
    /// the GC.
    pub fn request(&mut self, v: usize, request: Request<'_>) -> Result<usize, app::InputError> {
        let mut buf = [0u8; 4096];
        let now = self.now;
        let n = self.ranks[v].app.request(now, request, &mut buf)?;
        if n > 0 {
            let bytes = buf[..n].to_vec();
            let parsed = RequestOp::parse(&bytes).expect("REQUEST_OP decodes");
            assert_eq!(parsed.request, request);
            let again = ToGc::parse(&bytes).expect("REQUEST_OP decodes as ToGc");
            assert!(matches!(again, ToGc::RequestOp(_)));
            self.record(format!("rank{v}->gc"), &bytes);
            self.events.push_back(Ev::GcRequest(v, bytes));
        }
        self.drain_app(v);
        Ok(n)
    }

    /// The runtime's own command to the GC.
    pub fn command(&mut self, c: global::Command) -> Result<(), global::InputError> {
        let r = self.gc.handle_command(self.now, c);
        self.drain_gc();
        r
    }

    /// The process vanishes: its FIFO ends close, it never answers again.
    pub fn kill(&mut self, v: usize) {
        let r = &mut self.ranks[v];
        r.alive = false;
        r.pending = AppPending::None;
        r.progress_at = None;
        if let Some(names) = r.chan {
            if let Some(p) = self.fs.get_mut(&key(names)) {
                p.app_open = false;
            }
        }
    }

    /// The runtime replaces process `v` (terminated, or migrated) by a new
    /// process with `pid` on `node`.
    pub fn respawn(&mut self, v: usize, node: usize, pid: u32) {
        let old = self.ranks[v].node;
        let now = self.now;
        self.lcs[old].remove_process(now, name_of(v)).unwrap();
        self.drain_lc(old);
        self.lcs[node].add_process(name_of(v), pid).unwrap();
        let mut config = *self.ranks[v].app.config();
        config.pid = pid;
        let flag: &'static CheckpointFlag = Box::leak(Box::new(CheckpointFlag::new()));
        let r = &mut self.ranks[v];
        r.flag = flag;
        r.app = AppCoordinator::new(config, flag);
        r.node = node;
        r.alive = true;
        r.awaiting_termination = false;
        r.chan = None;
        r.pending = AppPending::None;
        r.progress_at = None;
        self.gc.placement_mut()[v] = format!("node{node}");
    }

    fn drain_app(&mut self, v: usize) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.ranks[v].app.poll_action(&mut out) {
            self.app_action(v, a, &out);
        }
    }

    fn kill_point(a: &app::Action) -> Option<KillAt> {
        use app::{Action as A, FrameKind as F};
        Some(match a {
            A::OpenChannel { .. } => KillAt::Open,
            A::Read {
                frame: F::Options, ..
            } => KillAt::ReadOptions,
            A::Write {
                frame: F::Response, ..
            } => KillAt::WriteResponse,
            A::Read {
                frame: F::GoAhead, ..
            } => KillAt::ReadGoAhead,
            A::Prepare => KillAt::Prepare,
            A::Checkpoint { .. } => KillAt::Checkpoint,
            A::Write {
                frame: F::FinalState,
                ..
            } => KillAt::WriteFinal,
            A::Read {
                frame: F::Release, ..
            } => KillAt::ReadRelease,
            A::Recover { .. } => KillAt::Recover,
            _ => return None,
        })
    }

    fn hook_answer(&mut self, v: usize, hook: Hook, ev: Ev) {
        let r = &mut self.ranks[v];
        if r.script.hang == Some(hook) {
            r.script.hang = None;
            return;
        }
        let at = self.now + r.script.hook_time;
        self.timers.push((at, ev));
    }

    fn app_action(&mut self, v: usize, a: app::Action, out: &MessageBuf) {
        use app::Action as A;
        if !self.ranks[v].alive {
            return;
        }
        if let (Some(k), Some(at)) = (self.ranks[v].script.kill_at, Self::kill_point(&a)) {
            if k == at {
                self.ranks[v].script.kill_at = None;
                self.kill(v);
                return;
            }
        }
        match a {
            A::OpenChannel { names } => {
                let p = self.fs.entry(key(names)).or_default();
                *p = Pair {
                    exists: true,
                    app_open: true,
                    ..Pair::default()
                };
                let r = &mut self.ranks[v];
                r.chan = Some(names);
                r.pending = AppPending::Open;
            }
            A::Read { len, .. } => self.ranks[v].pending = AppPending::Read(len),
            A::Write { frame, bytes } => {
                let names = self.ranks[v].chan.expect("a channel");
                // Decode the frame as its reader will.
                match frame {
                    app::FrameKind::Response => {
                        fifo::parse_response(&bytes).expect("response decodes");
                    }
                    _ => {
                        fifo::parse_cr_state(&bytes).expect("cr_state decodes");
                    }
                }
                self.record(format!("fifo {}_{} app->lc", names.pid, names.n), &bytes);
                let p = self.fs.get_mut(&key(names)).expect("pair");
                if p.lc_open {
                    p.to_lc.extend(bytes);
                    self.events.push_back(Ev::AppWriteDone(v));
                } else {
                    self.events.push_back(Ev::AppIoError(v, IoError::PeerGone));
                }
            }
            A::Prepare => {
                let r = self.ranks[v].script.prepare.pop_front();
                self.hook_answer(
                    v,
                    Hook::Prepare,
                    Ev::AppPrepare(v, r.unwrap_or(PrepareResult::Ready)),
                );
            }
            A::Checkpoint { .. } => {
                self.ranks[v].checkpoints += 1;
                let r = self.ranks[v].script.checkpoint.pop_front();
                self.hook_answer(
                    v,
                    Hook::Checkpoint,
                    Ev::AppCheckpoint(v, r.unwrap_or(CheckpointResult::Continue)),
                );
            }
            A::Recover { state } => {
                self.ranks[v].recovered_with.push(state);
                self.hook_answer(v, Hook::Recover, Ev::AppRecovered(v));
            }
            A::Sstore(op) => self.sstore(v, op),
            A::SendToDaemon { len } => {
                let bytes = out[..len].to_vec();
                ToDaemon::parse(&bytes).expect("SNAPC decodes");
                let node = self.ranks[v].node;
                self.record(format!("rank{v}->lc{node}"), &bytes);
                let pid = self.ranks[v].app.config().pid;
                self.events.push_back(Ev::LcDaemon(node, pid, bytes));
            }
            A::Close { names } => {
                if let Some(p) = self.fs.get_mut(&key(names)) {
                    p.app_open = false;
                }
                let r = &mut self.ranks[v];
                r.pending = AppPending::None;
            }
            A::Unlink { names } => {
                if let Some(p) = self.fs.get_mut(&key(names)) {
                    p.exists = false;
                }
                self.ranks[v].chan = None;
                self.events.push_back(Ev::AppTeardownDone(v));
            }
            A::AwaitTermination => self.ranks[v].awaiting_termination = true,
            A::Outcome(o) => self.ranks[v].outcomes.push(o),
            other => panic!("an action this harness does not know: {other:?}"),
        }
    }

    fn sstore(&mut self, v: usize, op: SstoreOp) {
        match op {
            SstoreOp::Register { handle } => {
                self.handles.entry(handle).or_default().registered.push(v)
            }
            SstoreOp::SetSkip { handle } => self.handles.entry(handle).or_default().skip.push(v),
            SstoreOp::SetSessionDir { .. } => {}
            SstoreOp::SetCrsName { handle, .. } => {
                self.handles.entry(handle).or_default().crs_name.push(v)
            }
            SstoreOp::ReadLocation { handle } => {
                let _ = handle;
                self.hook_answer(v, Hook::Location, Ev::AppSstore(v));
            }
            SstoreOp::Sync { handle } => {
                self.handles.entry(handle).or_default().synced.push(v);
                self.hook_answer(v, Hook::Sync, Ev::AppSstore(v));
            }
            SstoreOp::ReadGlobal { handle } => {
                self.timers.push((self.now, Ev::AppGlobal(v, handle)));
            }
        }
    }

    // ---- the local coordinators ----

    fn drain_lc(&mut self, lc: usize) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.lcs[lc].poll_action(&mut out) {
            self.lc_action(lc, a, &out);
        }
    }

    fn rank_of_pid(&self, lc: usize, pid: u32) -> Option<usize> {
        self.ranks
            .iter()
            .position(|r| r.node == lc && r.app.config().pid == pid)
    }

    fn lc_action(&mut self, lc: usize, a: local::Action, out: &MessageBuf) {
        use local::Action as A;
        match a {
            A::Signal { slot, pid } => {
                self.record(format!("signal lc{lc}->{pid}"), &[]);
                match self.rank_of_pid(lc, pid) {
                    Some(v) if self.ranks[v].alive => {
                        let r = &mut self.ranks[v];
                        r.flag.request_at(self.now);
                        if let Some(d) = r.script.progress_delay {
                            r.progress_at = Some(self.now + d);
                        }
                    }
                    _ => self
                        .events
                        .push_back(Ev::LcIoError(lc, slot, IoError::Failed)),
                }
            }
            A::WatchFifos { slot, names } => {
                self.lc_chan.insert((lc, slot.index()), names);
                self.lc_pending
                    .insert((lc, slot.index()), LcPending::Watch(slot, names));
            }
            A::OpenFifos { slot, names } => {
                self.lc_chan.insert((lc, slot.index()), names);
                match self.fs.get_mut(&key(names)) {
                    Some(p) if p.exists && p.app_open => {
                        p.lc_open = true;
                        self.events.push_back(Ev::LcOpened(lc, slot));
                    }
                    _ => self
                        .events
                        .push_back(Ev::LcIoError(lc, slot, IoError::Failed)),
                }
            }
            A::Write { slot, bytes } => {
                let names = self.lc_chan[&(lc, slot.index())];
                if bytes.len() == OptionsFrame::LEN {
                    OptionsFrame::parse(&bytes, false).expect("options decode");
                } else {
                    fifo::parse_release(&bytes).expect("int frame decodes");
                }
                self.record(format!("fifo {}_{} lc->app", names.pid, names.n), &bytes);
                let p = self.fs.get_mut(&key(names)).expect("pair");
                if p.app_open {
                    p.to_app.extend(bytes.iter().copied());
                    self.events.push_back(Ev::LcWritten(lc, slot));
                } else {
                    self.events
                        .push_back(Ev::LcIoError(lc, slot, IoError::PeerGone));
                }
            }
            A::Read { slot, len } => {
                self.lc_pending
                    .insert((lc, slot.index()), LcPending::Read(slot, len));
            }
            A::WaitStopped { slot, pid } => {
                let never = self
                    .rank_of_pid(lc, pid)
                    .is_none_or(|v| self.ranks[v].script.never_stops);
                if !never {
                    self.timers
                        .push((self.now + Duration::from_millis(5), Ev::LcStopped(lc, slot)));
                }
            }
            A::Close { slot } => {
                self.lc_pending.remove(&(lc, slot.index()));
                if let Some(names) = self.lc_chan.remove(&(lc, slot.index())) {
                    if let Some(p) = self.fs.get_mut(&key(names)) {
                        p.lc_open = false;
                    }
                }
            }
            A::SendToGc { len } => {
                let bytes = out[..len].to_vec();
                assert!(matches!(
                    ToGc::parse(&bytes).expect("ORTED_STATE decodes"),
                    ToGc::OrtedState(_)
                ));
                self.record(format!("lc{lc}->gc"), &bytes);
                self.events.push_back(Ev::GcOrted(lc, bytes));
            }
            A::Report(r) => self.lc_results[lc].push(r),
            other => panic!("an action this harness does not know: {other:?}"),
        }
    }

    // ---- the global coordinator ----

    fn drain_gc(&mut self) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.gc.poll_action(&mut out) {
            match a {
                global::Action::SendToLcs { len } => {
                    let bytes = out[..len].to_vec();
                    match FromGc::parse(&bytes).expect("JOB_STATE decodes") {
                        FromGc::JobState(_) => {}
                        other => panic!("JOB_STATE decoded as {other:?}"),
                    }
                    if self.pass_to_lcs == Some(0) {
                        continue;
                    }
                    if let Some(n) = self.pass_to_lcs.as_mut() {
                        *n -= 1;
                    }
                    for lc in 0..NODES {
                        self.log.push(Rec {
                            at: self.now,
                            chan: format!("gc->lc{lc}"),
                            bytes: bytes.clone(),
                        });
                        self.events.push_back(Ev::LcJobState(lc, bytes.clone()));
                    }
                }
                global::Action::SendToRank { vpid, len } => {
                    let bytes = out[..len].to_vec();
                    assert!(matches!(
                        FromGc::parse(&bytes).expect("GC answer decodes"),
                        FromGc::OpResponse(_) | FromGc::FinAck
                    ));
                    if self.mute_to_ranks {
                        continue;
                    }
                    self.log.push(Rec {
                        at: self.now,
                        chan: format!("gc->rank{vpid}"),
                        bytes: bytes.clone(),
                    });
                    self.events.push_back(Ev::AppGc(vpid as usize, bytes));
                }
                global::Action::Established(s) => {
                    self.global
                        .insert(s.handle, (s.seq, s.reference.as_str().to_string()));
                }
                global::Action::Migrate { seq, handle } => {
                    let moves = self.gc.migration_plan().moves().to_vec();
                    self.migrations.push((seq, handle, moves));
                    let ok = self.runtime_ok;
                    if self.runtime_answers {
                        self.timers
                            .push((self.now + Duration::from_secs(1), Ev::GcMigrationDone(ok)));
                    }
                }
                global::Action::Restart { seq_num } => {
                    let handle = self.gc.restart_handle().to_string();
                    self.restarts.push((seq_num, handle));
                    let ok = self.runtime_ok;
                    self.timers
                        .push((self.now + Duration::from_secs(1), Ev::GcRestartDone(ok)));
                }
                global::Action::Finished(r) => self.gc_reports.push(r),
                other => panic!("an action this harness does not know: {other:?}"),
            }
        }
    }

    // ---- the loop ----

    fn refuse<T, E: std::fmt::Debug>(&mut self, what: &str, r: Result<T, E>) {
        if let Err(e) = r {
            self.refused.push(format!("{what}: {e:?}"));
        }
    }

    fn deliver(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::AppOpened(v)
            | Ev::AppWriteDone(v)
            | Ev::AppRecovered(v)
            | Ev::AppSstore(v)
            | Ev::AppTeardownDone(v)
            | Ev::AppRead(v, _)
            | Ev::AppIoError(v, _)
            | Ev::AppPrepare(v, _)
            | Ev::AppCheckpoint(v, _)
            | Ev::AppGlobal(v, _)
            | Ev::AppGc(v, _)
                if !self.ranks[v].alive => {}
            Ev::AppOpened(v) => {
                let r = self.ranks[v].app.handle_opened(now);
                self.refuse("app opened", r);
                self.drain_app(v);
            }
            Ev::AppRead(v, bytes) => {
                let r = self.ranks[v].app.handle_read(now, &bytes);
                self.refuse("app read", r);
                self.drain_app(v);
            }
            Ev::AppWriteDone(v) => {
                let r = self.ranks[v].app.handle_write_done(now);
                self.refuse("app write done", r);
                self.drain_app(v);
            }
            Ev::AppIoError(v, f) => {
                let r = self.ranks[v].app.handle_io_error(now, f);
                self.refuse("app io error", r);
                self.drain_app(v);
            }
            Ev::AppPrepare(v, r) => {
                let taken = self.ranks[v].app.handle_prepare(now, r);
                self.refuse("app prepare", taken);
                if r == PrepareResult::NotNow {
                    // The next progress point comes a second later.
                    self.ranks[v].progress_at = Some(now + Duration::from_secs(1));
                }
                self.drain_app(v);
            }
            Ev::AppCheckpoint(v, r) => {
                let r = self.ranks[v].app.handle_checkpoint(now, r);
                self.refuse("app checkpoint", r);
                self.drain_app(v);
            }
            Ev::AppRecovered(v) => {
                let r = self.ranks[v]
                    .app
                    .handle_recovered(now, Ok::<(), HostError>(()));
                self.refuse("app recovered", r);
                self.drain_app(v);
            }
            Ev::AppSstore(v) => {
                let r = self.ranks[v].app.handle_sstore(now, Ok(()));
                self.refuse("app sstore", r);
                self.drain_app(v);
            }
            Ev::AppGlobal(v, handle) => {
                let g = self.global.get(&handle).cloned();
                let (seq, reference) = match &g {
                    Some((s, r)) => (Some(*s as i32), Some(r.as_str())),
                    None => (None, None),
                };
                let r = self.ranks[v].app.handle_sstore_global(now, seq, reference);
                self.refuse("app sstore global", r);
                self.drain_app(v);
            }
            Ev::AppTeardownDone(v) => {
                let r = self.ranks[v].app.handle_teardown_done(now);
                self.refuse("app teardown", r);
                self.drain_app(v);
            }
            Ev::AppGc(v, bytes) => {
                let r = self.ranks[v].app.handle_gc_message(now, &bytes);
                self.refuse("app gc message", r);
                self.drain_app(v);
            }
            Ev::LcFifosExist(lc, s) => {
                let r = self.lcs[lc].handle_fifos_exist(now, s);
                self.refuse("lc fifos", r);
                self.drain_lc(lc);
            }
            Ev::LcOpened(lc, s) => {
                // The app's blocking open of prog_write completes too.
                let r = self.lcs[lc].handle_opened(now, s);
                self.refuse("lc opened", r);
                self.drain_lc(lc);
            }
            Ev::LcWritten(lc, s) => {
                let r = self.lcs[lc].handle_written(now, s);
                self.refuse("lc written", r);
                self.drain_lc(lc);
            }
            Ev::LcRead(lc, s, bytes) => {
                let r = self.lcs[lc].handle_read(now, s, &bytes);
                self.refuse("lc read", r);
                self.drain_lc(lc);
            }
            Ev::LcIoError(lc, s, e) => {
                let r = self.lcs[lc].handle_io_error(now, s, e);
                self.refuse("lc io error", r);
                self.drain_lc(lc);
            }
            Ev::LcStopped(lc, s) => {
                let r = self.lcs[lc].handle_stopped(now, s);
                self.refuse("lc stopped", r);
                self.drain_lc(lc);
            }
            Ev::LcJobState(lc, bytes) => {
                let r = self.lcs[lc].handle_gc_message(now, &bytes);
                self.refuse(&format!("lc{lc} job state"), r);
                self.drain_lc(lc);
            }
            Ev::LcDaemon(lc, pid, bytes) => {
                let r = self.lcs[lc].handle_process_message(now, pid, &bytes);
                self.refuse("process message", r);
                self.drain_lc(lc);
            }
            Ev::GcOrted(lc, bytes) => {
                let r = self.gc.handle_lc_message(now, lc, &bytes);
                self.refuse("gc orted", r);
                self.drain_gc();
            }
            Ev::GcRequest(v, bytes) => {
                let r = self.gc.handle_rank_message(now, v as u32, &bytes);
                self.refuse("gc request", r);
                self.drain_gc();
            }
            Ev::GcMigrationDone(ok) => {
                let r = self.gc.handle_migration_done(now, ok);
                self.refuse("gc migration", r);
                self.drain_gc();
            }
            Ev::GcRestartDone(ok) => {
                let r = self.gc.handle_restart_done(now, ok);
                self.refuse("gc restart", r);
                self.drain_gc();
            }
        }
    }

    /// Turns the FIFOs' contents into the answers of pending reads, opens
    /// and watches.
    fn resolve_io(&mut self) {
        for v in 0..self.ranks.len() {
            let r = &self.ranks[v];
            if !r.alive {
                continue;
            }
            let Some(names) = r.chan else { continue };
            let Some(p) = self.fs.get_mut(&key(names)) else {
                continue;
            };
            match r.pending {
                AppPending::Open if p.lc_open => {
                    self.ranks[v].pending = AppPending::None;
                    self.events.push_back(Ev::AppOpened(v));
                }
                AppPending::Read(len) if p.to_app.len() >= len => {
                    let bytes: Vec<u8> = p.to_app.drain(..len).collect();
                    self.record(
                        format!("fifo {}_{} read by app", names.pid, names.n),
                        &bytes,
                    );
                    self.ranks[v].pending = AppPending::None;
                    self.events.push_back(Ev::AppRead(v, bytes));
                }
                _ => {}
            }
        }
        let keys: Vec<(usize, usize)> = self.lc_pending.keys().copied().collect();
        for k in keys {
            let pending = self.lc_pending[&k];
            let lc = k.0;
            match pending {
                LcPending::Watch(slot, names) => {
                    if self.fs.get(&key(names)).is_some_and(|p| p.exists) {
                        self.lc_pending.remove(&k);
                        self.events.push_back(Ev::LcFifosExist(lc, slot));
                    }
                }
                LcPending::Read(slot, len) => {
                    let Some(names) = self.lc_chan.get(&k).copied() else {
                        continue;
                    };
                    let Some(p) = self.fs.get_mut(&key(names)) else {
                        continue;
                    };
                    if p.to_lc.len() >= len {
                        let bytes: Vec<u8> = p.to_lc.drain(..len).collect();
                        self.lc_pending.remove(&k);
                        self.events.push_back(Ev::LcRead(lc, slot, bytes));
                    } else if !p.app_open {
                        self.lc_pending.remove(&k);
                        self.events
                            .push_back(Ev::LcIoError(lc, slot, IoError::PeerGone));
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let apps = self
            .ranks
            .iter()
            .filter(|r| r.alive)
            .flat_map(|r| [r.app.poll_timeout(), r.progress_at])
            .flatten();
        let lcs = self.lcs.iter().filter_map(|l| l.poll_timeout());
        let timers = self.timers.iter().map(|t| t.0);
        apps.chain(lcs)
            .chain(self.gc.poll_timeout())
            .chain(timers)
            .min()
    }

    /// Delivers everything due at `now`. Returns whether anything was.
    fn fire_due(&mut self) -> bool {
        let now = self.now;
        let mut fired = false;
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].0 <= now {
                let (_, ev) = self.timers.remove(i);
                self.events.push_back(ev);
                fired = true;
            } else {
                i += 1;
            }
        }
        for v in 0..self.ranks.len() {
            if !self.ranks[v].alive {
                continue;
            }
            if self.ranks[v].progress_at.is_some_and(|t| t <= now) {
                self.ranks[v].progress_at = None;
                self.ranks[v].app.handle_progress(now);
                self.drain_app(v);
                fired = true;
            }
            if self.ranks[v].app.poll_timeout().is_some_and(|t| t <= now) {
                self.ranks[v].app.handle_timeout(now);
                self.drain_app(v);
                fired = true;
            }
        }
        for lc in 0..self.lcs.len() {
            if self.lcs[lc].poll_timeout().is_some_and(|t| t <= now) {
                self.lcs[lc].handle_timeout(now);
                self.drain_lc(lc);
                fired = true;
            }
        }
        if self.gc.poll_timeout().is_some_and(|t| t <= now) {
            self.gc.handle_timeout(now);
            self.drain_gc();
            fired = true;
        }
        fired
    }

    /// Runs until `done` holds, jumping the clock to the next deadline when
    /// nothing else is pending. Fails loudly if it does not within the step
    /// and time bounds, or if nothing is left to happen.
    pub fn run_until(&mut self, what: &str, done: impl Fn(&World) -> bool) {
        let start = self.now;
        let mut steps = 0usize;
        loop {
            steps += 1;
            self.steps += 1;
            assert!(steps < MAX_STEPS, "{what}: no end after {steps} steps");
            assert!(
                self.now.saturating_duration_since(start) < MAX_RUN,
                "{what}: no end after {:?} of virtual time",
                self.now.saturating_duration_since(start)
            );
            if let Some(ev) = self.events.pop_front() {
                self.deliver(ev);
                self.resolve_io();
                continue;
            }
            self.resolve_io();
            if !self.events.is_empty() {
                continue;
            }
            if done(self) {
                return;
            }
            if self.fire_due() {
                continue;
            }
            match self.next_deadline() {
                Some(t) => self.now = self.now.max(t),
                None => panic!("{what}: nothing left to happen and not done"),
            }
        }
    }

    /// Runs until no event is pending at the current time (no clock jump).
    pub fn settle(&mut self) {
        for _ in 0..MAX_STEPS {
            if let Some(ev) = self.events.pop_front() {
                self.deliver(ev);
                self.resolve_io();
                continue;
            }
            self.resolve_io();
            if self.events.is_empty() && !self.fire_due() {
                return;
            }
        }
        panic!("settle: no end");
    }

    /// Moves the clock on by `d`, delivering what comes due meanwhile.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.settle();
        loop {
            match self.next_deadline() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = end;
        self.settle();
    }

    // ---- predicates ----

    /// Nothing runs anywhere: GC without an operation, every LC idle, every
    /// live app idle (or awaiting termination), nothing in flight.
    pub fn idle(&self) -> bool {
        self.events.is_empty()
            && self.timers.is_empty()
            && !self.gc.is_busy()
            && self.lcs.iter().all(|l| l.phase() == local::Phase::Idle)
            && self
                .ranks
                .iter()
                .filter(|r| r.alive)
                .all(|r| (r.app.is_idle() || r.awaiting_termination) && r.progress_at.is_none())
    }

    /// Like `idle`, but with the job quiesced.
    pub fn quiesced(&self) -> bool {
        self.events.is_empty()
            && self.timers.is_empty()
            && !self.gc.is_busy()
            && self.gc.is_quiesced()
            && self.lcs.iter().all(|l| l.phase() == local::Phase::Quiesced)
    }

    pub fn last_request(&self, v: usize) -> Option<app::RequestReport> {
        self.ranks[v].requests().last().cloned()
    }
}

fn key(names: ChannelNames) -> (u32, u32) {
    (names.pid, names.n)
}
