//! The simulated world: one global coordinator, one local coordinator per
//! node, the ranks, the pipes between them, the runtime, all on one virtual
//! clock and one PRNG, with the invariants checked as the events are
//! delivered ([`crate::checkers`]).
//!
//! - [`events`]: the queue's events, ordered by (time, insertion number);
//!   the clock jumps to the next one.
//! - [`hosts`]: the three machines' adapters: each input given to its
//!   machine, each action carried out; every machine's `poll_timeout` is
//!   armed as a timer event when it changes (a timer that finds its
//!   machine's deadline moved is ignored).
//! - [`pipes`]: the FIFO model.
//! - [`runtime`]: the runtime's part: terminating, restoring, migrating
//!   and restarting processes, a daemon's crash.
//! - [`driver`]: a seed's operations, one after the other, and liveness.
//! - [`record`]: what a scripted scenario looks at: every byte string per
//!   channel, and each machine's reports.
//!
//! Every byte string a machine emits is decoded before it travels (a
//! failure is a violation), and every delivery runs inside `catch_unwind`
//! (a panic is a violation).
//!
//! Hooks and sstore calls are synchronous in a seed's run, as in the POSIX
//! adapter: while a rank is inside a hook its deadlines cannot fire (the
//! process is busy), and a hook that never returns hangs the process. A
//! scripted world may run them deferred instead (the app coordinator's own
//! hook deadlines bound them), as an adapter with asynchronous hooks does.

pub(crate) mod driver;
pub(crate) mod events;
mod hosts;
mod pipes;
pub mod record;
mod runtime;

use crate::checkers::fin::Fin;
use crate::checkers::prepared::Prepared;
use crate::checkers::snapshot::Snapshots;
use crate::devices::Devices;
use crate::rng::Rng;
use crate::scenario::{Mutation, Options, Scenario};
use crate::trace::Trace;
use driver::Driver;
use events::{Ev, Item, Key};
use pipes::Pipe;
use record::Recorder;
use snapc_core::app::{self, AppCoordinator, CheckpointFlag};
use snapc_core::global::{self, GlobalCoordinator, NodeSlot, Placement};
use snapc_core::local::{self, LocalCoordinator, ProcessSlot, SlotId};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{OpEvent, ProcessName};
use std::collections::{BTreeMap, BinaryHeap};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The simulated job's id.
pub const JOBID: u32 = 0x5eed_0001;
/// Capacity of a MIGRATE table.
pub const MIGRATE_CAP: usize = 8;
/// Events one run may deliver before it is a violation (a livelock).
const MAX_EVENTS: u64 = 20_000_000;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time, in microseconds.
    pub at: u64,
    /// Which invariant.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

/// What one seed's run produced.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Ranks.
    pub ranks: usize,
    /// Operations started (INIT and FIN included).
    pub operations: u64,
    /// GC operations that ended well / badly.
    pub ops_ok: u64,
    /// GC operations that failed.
    pub ops_failed: u64,
    /// Snapshots established.
    pub established: u64,
    /// Events delivered.
    pub events: u64,
    /// Virtual time at the end, in microseconds.
    pub sim_micros: u64,
    /// The trace's hash.
    pub trace_hash: u64,
    /// The trace's lines (with `Options::trace`).
    pub trace: Vec<String>,
    /// Broken invariants (the run stops at the first liveness failure or
    /// panic, and goes on after safety ones).
    pub violations: Vec<Violation>,
    /// Inputs the machines ignored as unexpected (a statistic).
    pub unexpected_inputs: u64,
    /// Process crashes, daemon crashes, restarts and migrations done.
    pub crashes: u64,
    /// The scenario, for humans.
    pub scenario: String,
}

/// Runs one seed.
pub fn run_seed(seed: u64, opts: &Options) -> RunResult {
    let mut rng = Rng::new(seed);
    let sc = Scenario::generate(seed, opts, &mut rng);
    run_scenario(sc, rng, opts.trace)
}

/// Runs a scenario with the PRNG that generated it. The coordinators'
/// storage is sized from the scenario: one GC slot per node, and per node
/// the next of 8, 16 or 100 process slots at or above its share of the
/// ranks (the room a migration or a restart has on a node). Ranks go round
/// robin over the nodes.
pub fn run_scenario(sc: Scenario, rng: Rng, trace: bool) -> RunResult {
    let nodes = sc.nodes.max(1);
    let share = sc.ranks.div_ceil(nodes);
    let slots = [8, 16, 100]
        .into_iter()
        .find(|&n| share <= n)
        .unwrap_or(share);
    let setup = Setup {
        jobid: JOBID,
        nodes,
        placement: (0..sc.ranks).map(|v| v % nodes).collect(),
        slots,
        first_pid: 1000,
        blocking_hooks: true,
        mutation: sc.mutation,
        trace,
        record: false,
    };
    let mut w = World::new(setup, Devices::new(&sc.faults), rng, |_, _| {});
    w.res.scenario = format!("{:?} {:?}", sc.ops, sc.faults);
    w.res.seed = sc.seed;
    if let Some(at) = sc.faults.daemon_crash_at_ms {
        let lc = w.rng.index(nodes);
        w.schedule(Duration::from_millis(at), Ev::DaemonCrash(lc));
    }
    w.schedule(Duration::ZERO, Ev::Driver);
    let mut driver = Driver::new(sc);
    while !w.stopped {
        let next = w.queue.peek().map(|i| i.at);
        match next {
            None => {
                driver.drive(&mut w, true);
                if w.queue.is_empty() {
                    break;
                }
                continue;
            }
            Some(at) if at > w.now => {
                let before = w.seq;
                driver.drive(&mut w, false);
                if w.seq != before || w.stopped {
                    continue;
                }
                w.now = at;
            }
            Some(_) => {}
        }
        w.step();
    }
    w.finish()
}

/// The fixed shape of a world and how its hosts behave.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The job's id.
    pub jobid: u32,
    /// Nodes, one local coordinator each.
    pub nodes: usize,
    /// The node of each rank.
    pub placement: Vec<usize>,
    /// Process slots of each local coordinator.
    pub slots: usize,
    /// The first pid; each new process takes the next.
    pub first_pid: u32,
    /// Hooks block their process (the POSIX adapter) rather than run
    /// deferred under the app coordinator's hook deadlines.
    pub blocking_hooks: bool,
    /// The injected adapter defect.
    pub mutation: Mutation,
    /// Keep the trace's lines.
    pub trace: bool,
    /// Keep every byte string per channel and each machine's reports.
    pub record: bool,
}

/// Where each rank runs, for the GC.
#[derive(Debug, Clone)]
pub struct Hosts(pub Vec<String>);

impl Placement for Hosts {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        self.0.get(vpid as usize).map(String::as_str)
    }
}

/// The host name of a node.
pub fn host_name(node: usize) -> String {
    format!("node{node}")
}

/// The global coordinator of a world.
pub type Gc = GlobalCoordinator<Hosts, Vec<NodeSlot>, MIGRATE_CAP>;
/// A local coordinator of a world.
pub type Lc = LocalCoordinator<Vec<ProcessSlot>>;

/// One rank's current process.
pub(crate) struct Rank {
    pub(crate) node: usize,
    pub(crate) pid: u32,
    pub(crate) incarnation: u32,
    pub(crate) app: AppCoordinator<'static>,
    pub(crate) flag: &'static CheckpointFlag,
    pub(crate) alive: bool,
    pub(crate) in_job: bool,
    pub(crate) terminating: bool,
    pub(crate) hung: bool,
    pub(crate) in_hook: bool,
    /// The application's state: changes whenever application code runs.
    pub(crate) state: u64,
    pub(crate) req: Option<OpEvent>,
    pub(crate) last_req: Option<app::RequestReport>,
    pub(crate) chan: Option<Key>,
    pub(crate) reading: Option<app::FrameKind>,
    pub(crate) handle: u32,
    /// A migration target of this handshake (all_migrating and migrating).
    pub(crate) target: bool,
    pub(crate) armed: Option<Instant>,
    pub(crate) busy: bool,
}

/// The world: `nodes` nodes (one LC each), up to `slots` ranks per node.
pub struct World {
    jobid: u32,
    nodes: usize,
    slots: usize,
    blocking_hooks: bool,
    mutation: Mutation,
    now: Instant,
    queue: BinaryHeap<Item>,
    seq: u64,
    rng: Rng,
    dev: Devices,
    gc: Gc,
    gc_armed: Option<Instant>,
    lcs: Vec<Lc>,
    lc_alive: Vec<bool>,
    lc_armed: Vec<Option<Instant>>,
    ranks: Vec<Rank>,
    /// Each rank's application configuration (its pid set per process).
    configs: Vec<app::Config>,
    pids: BTreeMap<u32, usize>,
    next_pid: u32,
    pipes: BTreeMap<Key, Pipe>,
    watches: BTreeMap<Key, (usize, SlotId)>,
    lc_chan: BTreeMap<(usize, usize), (SlotId, Key)>,
    busy: usize,
    /// Per LC, the last delivery time on its stream down from and up to
    /// the GC.
    stream_last: Vec<[Instant; 2]>,
    // the runtime's records
    /// What each checkpointer wrote: (handle, rank) -> the state.
    content: BTreeMap<(u32, usize), u64>,
    /// handle -> (seq, reference), as the runtime records in sstore.
    sstore: BTreeMap<u32, (u32, String)>,
    /// Established snapshots a restart may use: (seq, handle, reference).
    restartable: Vec<(u32, u32, String)>,
    /// Migration targets awaiting the runtime: (rank, handle).
    targets: Vec<(usize, u32)>,
    // the checkers with state
    snapshots: Snapshots,
    prepared: Prepared,
    fin: Fin,
    // results
    trace: Trace,
    record: Option<Recorder>,
    res: RunResult,
    stopped: bool,
}

impl World {
    /// A world of `setup`'s shape over `dev`, every rank started and in its
    /// local coordinator's table; `configure` sets each rank's application
    /// configuration. Nothing is scheduled yet.
    pub fn new(
        setup: Setup,
        dev: Devices,
        rng: Rng,
        configure: impl Fn(usize, &mut app::Config),
    ) -> Self {
        let Setup {
            jobid,
            nodes,
            placement,
            slots,
            first_pid,
            blocking_hooks,
            mutation,
            trace,
            record,
        } = setup;
        let nranks = placement.len();
        let hosts = Hosts(placement.iter().map(|&n| host_name(n)).collect());
        let gc = GlobalCoordinator::new(
            global::Config {
                jobid,
                nranks: nranks as u32,
                deadlines: global::GlobalDeadlines::default(),
            },
            hosts,
            vec![NodeSlot::EMPTY; nodes],
        );
        let lcs = (0..nodes)
            .map(|_| {
                LocalCoordinator::new(local::Config::default(), vec![ProcessSlot::EMPTY; slots])
            })
            .collect();
        let configs = (0..nranks)
            .map(|v| {
                let mut c = app::Config::new(0, name_of(jobid, v), v == 0);
                configure(v, &mut c);
                c
            })
            .collect();
        let res = RunResult {
            nodes,
            ranks: nranks,
            ..RunResult::default()
        };
        let mut w = Self {
            jobid,
            nodes,
            slots,
            blocking_hooks,
            mutation,
            now: Instant::from_secs(1),
            queue: BinaryHeap::new(),
            seq: 0,
            rng,
            dev,
            gc,
            gc_armed: None,
            lcs,
            lc_alive: vec![true; nodes],
            lc_armed: vec![None; nodes],
            ranks: Vec::with_capacity(nranks),
            configs,
            pids: BTreeMap::new(),
            next_pid: first_pid,
            pipes: BTreeMap::new(),
            watches: BTreeMap::new(),
            lc_chan: BTreeMap::new(),
            busy: 0,
            stream_last: vec![[Instant::ZERO; 2]; nodes],
            content: BTreeMap::new(),
            sstore: BTreeMap::new(),
            restartable: Vec::new(),
            targets: Vec::new(),
            snapshots: Snapshots::default(),
            prepared: Prepared::default(),
            fin: Fin::default(),
            trace: Trace::new(trace),
            record: record.then(|| Recorder::new(nranks, nodes)),
            res,
            stopped: false,
        };
        for (v, &node) in placement.iter().enumerate() {
            let rank = w.spawn(v, node, v as u64 * 7919, None);
            w.ranks.push(rank);
        }
        w
    }

    /// The process name of rank `v`.
    pub fn name_of(&self, v: usize) -> ProcessName {
        name_of(self.jobid, v)
    }

    /// A new process for rank `v` on `node` (not yet in `ranks`), with the
    /// next pid or `pid`.
    fn spawn(&mut self, v: usize, node: usize, state: u64, pid: Option<u32>) -> Rank {
        let pid = pid.unwrap_or_else(|| {
            let p = self.next_pid;
            self.next_pid += 1;
            p
        });
        self.pids.insert(pid, v);
        let flag: &'static CheckpointFlag = Box::leak(Box::new(CheckpointFlag::new()));
        let mut config = self.configs[v];
        config.pid = pid;
        let name = self.name_of(v);
        let in_job = self.lcs[node].add_process(name, pid).is_ok();
        if !in_job {
            self.violation(
                "runtime",
                format!("rank {v}: node {node} refused the new process"),
            );
        }
        Rank {
            node,
            pid,
            incarnation: 0,
            app: AppCoordinator::new(config, flag),
            flag,
            alive: true,
            in_job,
            terminating: false,
            hung: false,
            in_hook: false,
            state,
            req: None,
            last_req: None,
            chan: None,
            reading: None,
            handle: 0,
            target: false,
            armed: None,
            busy: false,
        }
    }

    fn schedule(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Item {
            at: self.now.saturating_add(after),
            seq: self.seq,
            ev,
        });
    }

    fn violation(&mut self, kind: &'static str, detail: String) {
        if self.res.violations.len() < 20 {
            self.res.violations.push(Violation {
                at: self.now.as_micros(),
                kind,
                detail,
            });
        }
    }

    /// Records a checker's verdict.
    fn check(&mut self, kind: &'static str, verdict: Result<(), String>) {
        if let Err(d) = verdict {
            self.violation(kind, d);
        }
    }

    /// Delivers the next event (whatever its time; the clock is the
    /// caller's). Returns false when none is queued or the run stops.
    fn step(&mut self) -> bool {
        let Some(item) = self.queue.pop() else {
            return false;
        };
        self.res.events += 1;
        if self.res.events > MAX_EVENTS {
            self.violation("liveness", format!("more than {MAX_EVENTS} events"));
            self.stopped = true;
            return false;
        }
        self.trace.word(item.at.as_micros());
        item.ev.digest(&mut self.trace);
        let now = self.now;
        self.trace
            .line(|| format!("{:>14} {:?}", now.as_micros(), item.ev));
        let r = catch_unwind(AssertUnwindSafe(|| self.deliver(item.ev)));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.violation("panic", msg);
            self.stopped = true;
            return false;
        }
        true
    }

    /// The run's result.
    fn finish(mut self) -> RunResult {
        self.res.sim_micros = self.now.as_micros();
        self.res.trace_hash = self.trace.hash();
        self.res.trace = self.trace.lines().to_vec();
        self.res.unexpected_inputs = self
            .lcs
            .iter()
            .map(|l| u64::from(l.unexpected_inputs()))
            .sum::<u64>()
            + self
                .ranks
                .iter()
                .map(|r| u64::from(r.app.unexpected_inputs()))
                .sum::<u64>();
        self.res
    }
}

fn name_of(jobid: u32, v: usize) -> ProcessName {
    ProcessName {
        jobid,
        vpid: v as u32,
    }
}

/// Stepping and looking, for scripted scenarios.
impl World {
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    pub(crate) fn set_now(&mut self, at: Instant) {
        self.now = self.now.max(at);
    }

    pub(crate) fn next_event_at(&self) -> Option<Instant> {
        self.queue.peek().map(|i| i.at)
    }

    pub(crate) fn deliver_next(&mut self) {
        if let Some(at) = self.next_event_at() {
            self.set_now(at);
            self.step();
        }
    }

    pub(crate) fn rank(&self, v: usize) -> &Rank {
        &self.ranks[v]
    }

    pub(crate) fn gc(&self) -> &Gc {
        &self.gc
    }

    pub(crate) fn lc(&self, n: usize) -> &Lc {
        &self.lcs[n]
    }

    /// Every live local coordinator is in `phase`.
    pub(crate) fn lcs_in(&self, phase: local::Phase) -> bool {
        self.lcs
            .iter()
            .zip(&self.lc_alive)
            .all(|(l, alive)| !alive || l.phase() == phase)
    }

    pub(crate) fn violations(&self) -> &[Violation] {
        &self.res.violations
    }

    pub(crate) fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    pub(crate) fn recorder(&self) -> Option<&Recorder> {
        self.record.as_ref()
    }

    pub(crate) fn sstore(&self) -> &BTreeMap<u32, (u32, String)> {
        &self.sstore
    }
}
