//! Scripted scenarios on the simulator's world: a fixed topology, the
//! operations a test calls one by one, scripted devices (every answer and
//! every delay chosen by the test, none drawn from the PRNG), and the
//! world's recorder on: every byte string per channel, as sent, next to the
//! trace hash. The world's checkers run as in a seed's run; a violation
//! fails the scenario at its next step.
//!
//! Hooks run deferred (the app coordinator's own hook deadlines bound
//! them), so a hook that never answers is a wait the machine ends, not a
//! hung process.
//!
//! ```
//! use snapc_sim::script::{Scripted, Topology};
//! use snapc_sim::core::wire::Request;
//!
//! let mut w = Scripted::new(Topology::default(), |_, _, _| {});
//! w.request(0, Request::Checkpoint).unwrap();
//! w.run_until("checkpoint", |w| w.idle() && w.last_request(0).is_some());
//! assert_eq!(w.last_request(0).unwrap().error, None);
//! assert_eq!(w.sent("gc->lc0").len(), 2); // RUNNING, then ESTABLISHED
//! ```

use crate::devices::{
    Answer, Application, Devices, Link, PipeDevice, Route, Runtime, RuntimeOp, SignalDevice, Step,
    Storage, StorageCall,
};
use crate::rng::Rng;
use crate::scenario::Mutation;
use crate::world::record::Recorder;
use crate::world::{Gc, Lc, Setup, Violation, World};
use snapc_core::app::{self, AppCoordinator, CheckpointResult, PrepareResult};
use snapc_core::global;
use snapc_core::local;
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{ProcessName, Request};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Steps one `run_until` may take before the scenario fails.
const MAX_STEPS: usize = 200_000;
/// Virtual time one `run_until` may take before the scenario fails.
const MAX_RUN: Duration = Duration::from_secs(48 * 3600);

/// The fixed shape of a scripted world: ranks placed by blocks (ranks
/// `0..per_node` on node 0, and so on), pids from `first_pid` in rank
/// order, nodes named `node<n>`.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    /// The job's id.
    pub jobid: u32,
    /// Nodes, one local coordinator each.
    pub nodes: usize,
    /// Ranks per node.
    pub per_node: usize,
    /// Process slots of each local coordinator.
    pub slots: usize,
    /// The pid of rank 0's first process.
    pub first_pid: u32,
}

impl Default for Topology {
    /// Job 0x12340001: two nodes of three ranks, four slots each, pids
    /// 1000 to 1005.
    fn default() -> Self {
        Self {
            jobid: 0x1234_0001,
            nodes: 2,
            per_node: 3,
            slots: 4,
            first_pid: 1000,
        }
    }
}

impl Topology {
    /// Ranks in the job.
    pub fn ranks(&self) -> usize {
        self.nodes * self.per_node
    }
}

/// A host call a script leaves unanswered (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// sstore: where the snapshot goes.
    Location,
    /// The prepare hook.
    Prepare,
    /// The checkpointer.
    Checkpoint,
    /// sstore: sync.
    Sync,
    /// The recover hook.
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
    /// Where the process vanishes (once): just before this step.
    pub kill_at: Option<Step>,
    /// From the signal to the progress point.
    pub progress_delay: Duration,
    /// From a prepare that said "not now" to the next progress point.
    pub not_now_delay: Duration,
    /// How long each hook and sstore call takes.
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
            progress_delay: Duration::from_millis(1),
            not_now_delay: Duration::from_secs(1),
            hook_time: Duration::from_millis(10),
            never_stops: false,
        }
    }
}

/// What the scripted devices answer; the test may change it between steps.
#[derive(Debug)]
pub struct Controls {
    /// Each rank's script.
    pub ranks: Vec<Script>,
    /// What the runtime answers to a migration or a restart.
    pub runtime_ok: bool,
    /// Whether the runtime answers migrations at all.
    pub runtime_answers: bool,
    /// How many more JOB_STATEs reach each local coordinator (`None`: all);
    /// later ones are lost.
    pub job_states_to_lcs: Option<usize>,
    passed_to_lc: BTreeMap<usize, usize>,
    /// Every answer of the global coordinator to a rank is lost.
    pub mute_to_ranks: bool,
    /// Every delay of the transport (messages, FIFO writes, signals).
    pub latency: Duration,
    /// How long the runtime takes to stop a process.
    pub stop_time: Duration,
    /// How long the runtime takes to carry out a migration or restart.
    pub runtime_time: Duration,
}

impl Controls {
    /// From now on, `n` more JOB_STATEs reach each local coordinator.
    pub fn lose_job_states_after(&mut self, n: Option<usize>) {
        self.job_states_to_lcs = n;
        self.passed_to_lc.clear();
    }
}

/// The devices of a scripted world: each answers from the shared controls.
#[derive(Clone)]
struct ScriptedDevices(Arc<Mutex<Controls>>);

impl ScriptedDevices {
    fn c(&self) -> MutexGuard<'_, Controls> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hook<T>(&self, v: usize, hook: Hook, answer: T) -> Answer<T> {
        let mut c = self.c();
        let s = &mut c.ranks[v];
        if s.hang == Some(hook) {
            s.hang = None;
            return Answer::Never;
        }
        Answer::After(s.hook_time, answer)
    }
}

impl Link for ScriptedDevices {
    fn deliveries(&mut self, _: &mut Rng, route: Route) -> Vec<Duration> {
        let mut c = self.c();
        let latency = c.latency;
        match route {
            Route::GcToRank(_) if c.mute_to_ranks => return Vec::new(),
            Route::GcToLc(lc) => {
                if let Some(n) = c.job_states_to_lcs {
                    let passed = c.passed_to_lc.entry(lc).or_default();
                    if *passed >= n {
                        return Vec::new();
                    }
                    *passed += 1;
                }
            }
            _ => {}
        }
        vec![latency]
    }
}

impl PipeDevice for ScriptedDevices {
    fn parts(&mut self, _: &mut Rng, len: usize) -> Vec<(Duration, usize)> {
        vec![(self.c().latency, len)]
    }
}

impl SignalDevice for ScriptedDevices {
    fn deliveries(&mut self, _: &mut Rng) -> Vec<Duration> {
        vec![self.c().latency]
    }
}

impl Application for ScriptedDevices {
    fn progress_delay(&mut self, _: &mut Rng, v: usize) -> Duration {
        self.c().ranks[v].progress_delay
    }
    fn not_now_delay(&mut self, _: &mut Rng, v: usize) -> Duration {
        self.c().ranks[v].not_now_delay
    }
    fn prepare(&mut self, _: &mut Rng, v: usize) -> Answer<PrepareResult> {
        let r = self.c().ranks[v].prepare.pop_front();
        self.hook(v, Hook::Prepare, r.unwrap_or(PrepareResult::Ready))
    }
    fn checkpoint(&mut self, _: &mut Rng, v: usize) -> Answer<CheckpointResult> {
        let r = self.c().ranks[v].checkpoint.pop_front();
        self.hook(v, Hook::Checkpoint, r.unwrap_or(CheckpointResult::Continue))
    }
    fn recover(&mut self, _: &mut Rng, v: usize) -> Answer<bool> {
        self.hook(v, Hook::Recover, true)
    }
    fn crashes(&mut self, _: &mut Rng, v: usize, step: Step) -> bool {
        let mut c = self.c();
        let s = &mut c.ranks[v];
        if s.kill_at == Some(step) {
            s.kill_at = None;
            return true;
        }
        false
    }
}

impl Storage for ScriptedDevices {
    fn call(&mut self, _: &mut Rng, v: usize, call: StorageCall) -> Answer<bool> {
        let hook = match call {
            StorageCall::Location => Hook::Location,
            StorageCall::Sync => Hook::Sync,
        };
        self.hook(v, hook, true)
    }
}

impl Runtime for ScriptedDevices {
    fn stopped(&mut self, _: &mut Rng, v: usize) -> Answer<()> {
        let c = self.c();
        match c.ranks.get(v) {
            Some(s) if !s.never_stops => Answer::After(c.stop_time, ()),
            _ => Answer::Never,
        }
    }
    fn done(&mut self, _: &mut Rng, op: RuntimeOp) -> Answer<bool> {
        let c = self.c();
        if op == RuntimeOp::Migrate && !c.runtime_answers {
            return Answer::Never;
        }
        Answer::After(c.runtime_time, c.runtime_ok)
    }
    fn terminates(&mut self, _: &mut Rng, _: usize) -> Answer<()> {
        // The scenario ends processes itself (`respawn`, `kill`).
        Answer::Never
    }
}

/// A world driven by hand.
pub struct Scripted {
    w: World,
    controls: Arc<Mutex<Controls>>,
    topology: Topology,
}

impl Scripted {
    /// The job of `topology`, every rank in its LC's table, INIT sent by
    /// every rank (rank 0's goes out) and taken. `setup` sets each rank's
    /// application configuration and script.
    pub fn new(topology: Topology, setup: impl Fn(usize, &mut app::Config, &mut Script)) -> Self {
        let n = topology.ranks();
        let mut scripts = vec![Script::default(); n];
        let mut configs = Vec::with_capacity(n);
        for (v, script) in scripts.iter_mut().enumerate() {
            let name = ProcessName {
                jobid: topology.jobid,
                vpid: v as u32,
            };
            let mut config = app::Config::new(0, name, v == 0);
            setup(v, &mut config, script);
            configs.push(config);
        }
        let controls = Arc::new(Mutex::new(Controls {
            ranks: scripts,
            runtime_ok: true,
            runtime_answers: true,
            job_states_to_lcs: None,
            passed_to_lc: BTreeMap::new(),
            mute_to_ranks: false,
            latency: Duration::ZERO,
            stop_time: Duration::from_millis(5),
            runtime_time: Duration::from_secs(1),
        }));
        let d = ScriptedDevices(controls.clone());
        let devices = Devices {
            net: Box::new(d.clone()),
            local: Box::new(d.clone()),
            pipe: Box::new(d.clone()),
            signal: Box::new(d.clone()),
            app: Box::new(d.clone()),
            disk: Box::new(d.clone()),
            runtime: Box::new(d),
        };
        let setup = Setup {
            jobid: topology.jobid,
            nodes: topology.nodes,
            placement: (0..n).map(|v| v / topology.per_node).collect(),
            slots: topology.slots,
            first_pid: topology.first_pid,
            blocking_hooks: false,
            mutation: Mutation::None,
            trace: false,
            record: true,
        };
        let w = World::new(setup, devices, Rng::new(0), |v, c| *c = configs[v]);
        let mut s = Self {
            w,
            controls,
            topology,
        };
        for v in 0..n {
            s.request(v, Request::Init).expect("INIT is taken");
        }
        s.run_until("INIT", |s| s.idle());
        assert!(
            s.gc().is_checkpointable(),
            "INIT did not make the job checkpointable"
        );
        s
    }

    /// The topology.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    // ---- the operations ----

    /// An application request on rank `v`; the REQUEST_OP, if any, goes to
    /// the GC. Its length.
    pub fn request(&mut self, v: usize, request: Request<'_>) -> Result<usize, app::InputError> {
        let r = self.w.app_request(v, request);
        self.assert_clean("request");
        r
    }

    /// The runtime's own command to the GC.
    pub fn command(&mut self, c: global::Command) -> Result<(), global::InputError> {
        let r = self.w.command(c);
        self.assert_clean("command");
        r
    }

    /// Rank `v`'s process vanishes: its FIFO ends close, it never answers
    /// again (it stays in its LC's table).
    pub fn kill(&mut self, v: usize) {
        self.w.kill(v);
    }

    /// The runtime takes rank `v`'s process out of its LC's table.
    pub fn remove_from_job(&mut self, v: usize) {
        self.w.remove_from_lc(v);
    }

    /// The runtime replaces rank `v`'s process by a new one with `pid` on
    /// `node` (the old one ends).
    pub fn respawn(&mut self, v: usize, node: usize, pid: u32) {
        self.w.respawn(v, node, pid);
    }

    /// The scripted devices' controls.
    pub fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- time ----

    /// Runs until `done` holds, checked whenever nothing is due at the
    /// current time, jumping the clock to the next event otherwise. Fails
    /// loudly on a violation, after the step and time bounds, or if
    /// nothing is left to happen.
    pub fn run_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let start = self.w.now();
        for _ in 0..MAX_STEPS {
            self.assert_clean(what);
            let spent = self.w.now().saturating_duration_since(start);
            assert!(
                spent < MAX_RUN,
                "{what}: no end after {spent:?} of virtual time"
            );
            match self.w.next_event_at() {
                Some(at) if at <= self.w.now() => {
                    self.w.deliver_next();
                }
                next => {
                    if done(self) {
                        return;
                    }
                    match next {
                        Some(at) => self.w.set_now(at),
                        None => panic!("{what}: nothing left to happen and not done"),
                    }
                }
            }
        }
        panic!("{what}: no end after {MAX_STEPS} steps");
    }

    /// Delivers everything due at the current time.
    pub fn settle(&mut self) {
        while self.w.next_event_at().is_some_and(|at| at <= self.w.now()) {
            self.w.deliver_next();
        }
        self.assert_clean("settle");
    }

    /// Moves the clock on by `d`, delivering what comes due meanwhile.
    pub fn advance(&mut self, d: Duration) {
        let end = self.w.now() + d;
        while let Some(at) = self.w.next_event_at().filter(|&at| at <= end) {
            self.w.set_now(self.w.now().max(at));
            self.w.deliver_next();
        }
        self.w.set_now(end);
        self.assert_clean("advance");
    }

    fn assert_clean(&self, what: &str) {
        let v = self.violations();
        assert!(v.is_empty(), "{what}: invariants broken: {v:#?}");
    }

    // ---- what is seen ----

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.w.now()
    }

    /// Nothing runs anywhere: GC without an operation, every live LC idle,
    /// every live app idle (or awaiting termination), nothing in flight.
    pub fn idle(&self) -> bool {
        self.w.settled()
            && self.w.lcs_in(local::Phase::Idle)
            && (0..self.topology.ranks()).all(|v| {
                let r = self.w.rank(v);
                !r.alive || r.app.is_idle() || r.terminating
            })
    }

    /// Like `idle`, but with the job quiesced.
    pub fn quiesced(&self) -> bool {
        self.w.settled() && self.gc().is_quiesced() && self.w.lcs_in(local::Phase::Quiesced)
    }

    /// Broken invariants so far.
    pub fn violations(&self) -> &[Violation] {
        self.w.violations()
    }

    /// The trace's hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.w.trace_hash()
    }

    /// Every byte string and report recorded.
    pub fn record(&self) -> &Recorder {
        self.w.recorder().expect("a scripted world records")
    }

    /// Every byte string sent on `chan`, in order.
    pub fn sent(&self, chan: &str) -> Vec<Vec<u8>> {
        self.record().sent(chan)
    }

    /// Rank `v`'s request reports.
    pub fn requests(&self, v: usize) -> Vec<app::RequestReport> {
        self.record().requests(v)
    }

    /// Rank `v`'s last request report.
    pub fn last_request(&self, v: usize) -> Option<app::RequestReport> {
        self.requests(v).last().cloned()
    }

    /// Rank `v`'s handshake reports.
    pub fn handshakes(&self, v: usize) -> Vec<app::HandshakeReport> {
        self.record().handshakes(v)
    }

    /// Rank `v`'s app coordinator (its current process's).
    pub fn app(&self, v: usize) -> &AppCoordinator<'static> {
        &self.w.rank(v).app
    }

    /// Rank `v`'s process awaits its termination.
    pub fn awaiting_termination(&self, v: usize) -> bool {
        self.w.rank(v).terminating
    }

    /// The node rank `v` runs on.
    pub fn node_of(&self, v: usize) -> usize {
        self.w.rank(v).node
    }

    /// The pid of rank `v`'s process.
    pub fn pid_of(&self, v: usize) -> u32 {
        self.w.rank(v).pid
    }

    /// The process name of rank `v`.
    pub fn name_of(&self, v: usize) -> ProcessName {
        self.w.name_of(v)
    }

    /// The global coordinator.
    pub fn gc(&self) -> &Gc {
        self.w.gc()
    }

    /// Node `n`'s local coordinator.
    pub fn lc(&self, n: usize) -> &Lc {
        self.w.lc(n)
    }

    /// The established snapshots as the runtime recorded them in sstore:
    /// handle -> (seq, reference).
    pub fn established(&self) -> &BTreeMap<u32, (u32, String)> {
        self.w.sstore()
    }
}
