//! The simulated world: one global coordinator, one local coordinator per
//! node, the ranks, the pipes between them, the runtime, all on one virtual
//! clock and one PRNG, with the invariants of issue 6 checked as the events
//! are delivered.
//!
//! Events wait in one queue ordered by (time, insertion number); the clock
//! jumps to the next one. Each machine's `poll_timeout` is armed as a timer
//! event when it changes, and a timer that finds its machine's deadline
//! moved is ignored. Every byte string a machine emits is decoded before it
//! travels (a failure is a violation), and every delivery runs inside
//! `catch_unwind` (a panic is a violation).
//!
//! Hooks and sstore calls are synchronous, as in the POSIX adapter: while a
//! rank is inside a hook its deadlines cannot fire (the process is busy),
//! and a hook that never returns hangs the process.

use crate::devices::{Answer, Devices};
use crate::rng::Rng;
use crate::scenario::{Mutation, Op, Options, Scenario};
use crate::trace::Trace;
use snapc_core::app::{
    self, AppCoordinator, CheckpointFlag, CheckpointResult, HostError, PrepareResult, SstoreOp,
};
use snapc_core::global::{self, Destination, GlobalCoordinator, Move, NodeSlot, Placement};
use snapc_core::local::{self, LocalCoordinator, ProcessSlot, SlotId};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::fifo::{self, OptionsFrame};
use snapc_core::wire::{
    CkptState, CrState, FromGc, List, Message, MigrateEntry, OpEvent, OrtedState, ProcessName,
    Request, RequestOp, StateCode, ToDaemon, ToGc,
};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The simulated job's id.
pub const JOBID: u32 = 0x5eed_0001;
/// Capacity of a MIGRATE table.
const MIGRATE_CAP: usize = 8;
/// How long one driver step (an operation, or one phase of a quiesce) may
/// take in virtual time before it is a liveness violation. The machines'
/// own bounds are far shorter (135 minutes for a GC operation, 150 for the
/// app's waits); slow hooks (up to two hours each, several per handshake)
/// make up the rest.
const STEP_BOUND: Duration = Duration::from_secs(24 * 3600);
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
/// ranks (the room a migration or a restart has on a node).
pub fn run_scenario(sc: Scenario, rng: Rng, trace: bool) -> RunResult {
    let nodes = sc.nodes.max(1);
    let share = sc.ranks.div_ceil(nodes);
    let per_node = [8, 16, 100]
        .into_iter()
        .find(|&n| share <= n)
        .unwrap_or(share);
    World::new(sc, rng, trace, nodes, per_node).run()
}

/// Where each rank runs, for the GC.
#[derive(Debug, Clone)]
pub struct Hosts(pub Vec<String>);

impl Placement for Hosts {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        self.0.get(vpid as usize).map(String::as_str)
    }
}

fn host_name(node: usize) -> String {
    format!("node{node}")
}

fn name_of(v: usize) -> ProcessName {
    ProcessName {
        jobid: JOBID,
        vpid: v as u32,
    }
}

type Key = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Machine {
    Gc,
    Lc(usize),
    Rank(usize, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    App(usize, u32),
    Lc(usize, SlotId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Lc(usize),
    Rank(usize),
}

#[derive(Debug, Clone)]
enum Ev {
    Driver,
    Timer(Machine),
    Signal(usize, u32),
    Progress(usize, u32),
    AppOpened(usize, u32),
    AppRead(usize, u32, Vec<u8>),
    AppWriteDone(usize, u32),
    AppIoError(usize, u32),
    AppPrepare(usize, u32, PrepareResult),
    AppCheckpoint(usize, u32, CheckpointResult),
    AppRecovered(usize, u32, bool),
    AppSstore(usize, u32, bool),
    AppGlobal(usize, u32, u32),
    AppTeardownDone(usize, u32),
    ToRank(usize, Vec<u8>),
    Chunk {
        key: Key,
        to_app: bool,
        bytes: Vec<u8>,
        done: Option<Writer>,
    },
    LcFifosExist(usize, SlotId),
    LcOpened(usize, SlotId),
    LcWritten(usize, SlotId),
    LcRead(usize, SlotId, Vec<u8>),
    LcIoError(usize, SlotId, IoError),
    LcStopped(usize, SlotId),
    ToLc(usize, Vec<u8>),
    ToDaemon(usize, u32, Vec<u8>),
    ToGc(Src, Vec<u8>),
    MigrationDone(bool, bool, u32, Vec<Move>),
    RestartDone(bool, i32),
    Terminate(usize, u32),
    DaemonCrash(usize),
}

impl Ev {
    /// A compact, machine-independent digest of the event for the hash.
    fn digest(&self, t: &mut Trace) {
        let (k, a, b, bytes): (u64, u64, u64, &[u8]) = match self {
            Ev::Driver => (0, 0, 0, &[]),
            Ev::Timer(m) => match m {
                Machine::Gc => (1, 0, 0, &[]),
                Machine::Lc(l) => (1, 1, *l as u64, &[]),
                Machine::Rank(v, g) => (1, 2, ((*v as u64) << 32) | u64::from(*g), &[]),
            },
            Ev::Signal(v, g) => (2, *v as u64, u64::from(*g), &[]),
            Ev::Progress(v, g) => (3, *v as u64, u64::from(*g), &[]),
            Ev::AppOpened(v, g) => (4, *v as u64, u64::from(*g), &[]),
            Ev::AppRead(v, g, b) => (5, *v as u64, u64::from(*g), b),
            Ev::AppWriteDone(v, g) => (6, *v as u64, u64::from(*g), &[]),
            Ev::AppIoError(v, g) => (7, *v as u64, u64::from(*g), &[]),
            Ev::AppPrepare(v, g, r) => (8, *v as u64, u64::from(*g) << 8 | *r as u64, &[]),
            Ev::AppCheckpoint(v, g, r) => {
                let c = match r {
                    CheckpointResult::Continue => 0,
                    CheckpointResult::Term => 1,
                    CheckpointResult::Error => 2,
                    CheckpointResult::Restart { pid } => 3 | u64::from(*pid) << 8,
                };
                (9, *v as u64, u64::from(*g) << 40 | c, &[])
            }
            Ev::AppRecovered(v, g, ok) => (10, *v as u64, u64::from(*g) << 1 | *ok as u64, &[]),
            Ev::AppSstore(v, g, ok) => (11, *v as u64, u64::from(*g) << 1 | *ok as u64, &[]),
            Ev::AppGlobal(v, g, h) => (12, *v as u64, u64::from(*g) << 32 | u64::from(*h), &[]),
            Ev::AppTeardownDone(v, g) => (13, *v as u64, u64::from(*g), &[]),
            Ev::ToRank(v, b) => (14, *v as u64, 0, b),
            Ev::Chunk {
                key, to_app, bytes, ..
            } => (
                15,
                u64::from(key.0) << 32 | u64::from(key.1),
                *to_app as u64,
                bytes,
            ),
            Ev::LcFifosExist(l, s) => (16, *l as u64, slot_word(*s), &[]),
            Ev::LcOpened(l, s) => (17, *l as u64, slot_word(*s), &[]),
            Ev::LcWritten(l, s) => (18, *l as u64, slot_word(*s), &[]),
            Ev::LcRead(l, s, b) => (19, *l as u64, slot_word(*s), b),
            Ev::LcIoError(l, s, e) => (
                20,
                *l as u64 | (*e == IoError::PeerGone) as u64,
                slot_word(*s),
                &[],
            ),
            Ev::LcStopped(l, s) => (21, *l as u64, slot_word(*s), &[]),
            Ev::ToLc(l, b) => (22, *l as u64, 0, b),
            Ev::ToDaemon(l, p, b) => (23, *l as u64, u64::from(*p), b),
            Ev::ToGc(s, b) => (
                24,
                match s {
                    Src::Lc(l) => *l as u64,
                    Src::Rank(v) => 1 << 40 | *v as u64,
                },
                0,
                b,
            ),
            Ev::MigrationDone(ok, rep, h, m) => (
                25,
                *ok as u64 | (*rep as u64) << 1,
                u64::from(*h) << 16 | m.len() as u64,
                &[],
            ),
            Ev::RestartDone(ok, s) => (26, *ok as u64, *s as u64, &[]),
            Ev::Terminate(v, g) => (27, *v as u64, u64::from(*g), &[]),
            Ev::DaemonCrash(l) => (28, *l as u64, 0, &[]),
        };
        t.word(k);
        t.word(a);
        t.word(b);
        t.word(bytes.len() as u64);
        t.bytes(bytes);
    }
}

fn slot_word(s: SlotId) -> u64 {
    (s.index() as u64) << 32 | u64::from(s.generation())
}

struct Item {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        // A min-heap on (time, insertion order).
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Debug, Default)]
struct Pipe {
    exists: bool,
    to_app: VecDeque<u8>,
    to_lc: VecDeque<u8>,
    app_open: bool,
    lc_open: bool,
    app_read: Option<(usize, u32, usize)>,
    app_open_wait: Option<(usize, u32)>,
    lc_read: Option<(usize, SlotId, usize)>,
}

struct Rank {
    node: usize,
    pid: u32,
    incarnation: u32,
    app: AppCoordinator<'static>,
    flag: &'static CheckpointFlag,
    alive: bool,
    in_job: bool,
    terminating: bool,
    hung: bool,
    in_hook: bool,
    /// The application's state: changes whenever application code runs.
    state: u64,
    /// The prepare hook returned Ready and the recover hook has not run.
    prepared: bool,
    req: Option<OpEvent>,
    last_req: Option<app::RequestReport>,
    chan: Option<Key>,
    reading: Option<app::FrameKind>,
    handle: u32,
    /// A migration target of this handshake (all_migrating and migrating).
    target: bool,
    armed: Option<Instant>,
    busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Init,
    Op(usize, u8),
    Fin,
    Done,
}

/// The world of one run: `nodes` nodes (one LC each), up to `per_node`
/// ranks per node.
pub struct World {
    nodes: usize,
    per_node: usize,
    now: Instant,
    queue: BinaryHeap<Item>,
    seq: u64,
    rng: Rng,
    dev: Devices,
    sc: Scenario,
    gc: GlobalCoordinator<Hosts, Vec<NodeSlot>, MIGRATE_CAP>,
    gc_armed: Option<Instant>,
    lcs: Vec<LocalCoordinator<Vec<ProcessSlot>>>,
    lc_alive: Vec<bool>,
    lc_armed: Vec<Option<Instant>>,
    ranks: Vec<Rank>,
    pids: BTreeMap<u32, usize>,
    next_pid: u32,
    pipes: BTreeMap<Key, Pipe>,
    watches: BTreeMap<Key, (usize, SlotId)>,
    lc_chan: BTreeMap<(usize, usize), (SlotId, Key)>,
    busy: usize,
    /// Per LC, the last delivery time on its stream down from and up to
    /// the GC.
    stream_last: Vec<[Instant; 2]>,
    // invariant bookkeeping
    members: BTreeMap<u32, Vec<usize>>,
    finals: BTreeMap<(u32, usize), CrState>,
    content: BTreeMap<(u32, usize), u64>,
    /// handle -> (seq, reference), as the runtime records in sstore.
    sstore: BTreeMap<u32, (u32, String)>,
    /// Established snapshots a restart may use: (seq, handle, reference).
    restartable: Vec<(u32, u32, String)>,
    last_seq: Option<u32>,
    /// Handles of migrations: their snapshots hold the moving ranks only.
    migrations: BTreeSet<u32>,
    /// Migration targets awaiting the runtime: (rank, handle).
    targets: Vec<(usize, u32)>,
    quiesce_handle: Option<u32>,
    gc_running: bool,
    // the driver
    stage: Stage,
    step_deadline: Instant,
    fin_sent: bool,
    /// The incarnation of rank 0 that sent FIN.
    fin_incarnation: u32,
    // results
    trace: Trace,
    res: RunResult,
    stopped: bool,
}

impl World {
    fn new(sc: Scenario, rng: Rng, trace: bool, nodes: usize, per_node: usize) -> Self {
        let dev = Devices::new(&sc.faults);
        let nranks = sc.ranks;
        let hosts = Hosts((0..nranks).map(|v| host_name(v % nodes)).collect());
        let gc = GlobalCoordinator::new(
            global::Config {
                jobid: JOBID,
                nranks: nranks as u32,
                deadlines: global::GlobalDeadlines::default(),
            },
            hosts,
            vec![NodeSlot::EMPTY; nodes],
        );
        let lcs = (0..nodes)
            .map(|_| {
                LocalCoordinator::new(local::Config::default(), vec![ProcessSlot::EMPTY; per_node])
            })
            .collect();
        let res = RunResult {
            scenario: format!("{:?} {:?}", sc.ops, sc.faults),
            seed: sc.seed,
            nodes,
            ranks: nranks,
            ..RunResult::default()
        };
        let mut w = Self {
            nodes,
            per_node,
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
            pids: BTreeMap::new(),
            next_pid: 1000,
            pipes: BTreeMap::new(),
            watches: BTreeMap::new(),
            lc_chan: BTreeMap::new(),
            busy: 0,
            stream_last: vec![[Instant::ZERO; 2]; nodes],
            members: BTreeMap::new(),
            finals: BTreeMap::new(),
            content: BTreeMap::new(),
            sstore: BTreeMap::new(),
            restartable: Vec::new(),
            last_seq: None,
            migrations: BTreeSet::new(),
            targets: Vec::new(),
            quiesce_handle: None,
            gc_running: false,
            stage: Stage::Init,
            step_deadline: Instant::MAX,
            fin_sent: false,
            fin_incarnation: 0,
            trace: Trace::new(trace),
            res,
            stopped: false,
            sc,
        };
        for v in 0..nranks {
            let rank = w.spawn(v, v % nodes, v as u64 * 7919);
            w.ranks.push(rank);
        }
        if let Some(at) = w.sc.faults.daemon_crash_at_ms {
            let lc = w.rng.index(nodes);
            w.schedule(Duration::from_millis(at), Ev::DaemonCrash(lc));
        }
        w.schedule(Duration::ZERO, Ev::Driver);
        w
    }

    /// A new process for rank `v` on `node` (not yet in `ranks`).
    fn spawn(&mut self, v: usize, node: usize, state: u64) -> Rank {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.pids.insert(pid, v);
        let flag: &'static CheckpointFlag = Box::leak(Box::new(CheckpointFlag::new()));
        let config = app::Config::new(pid, name_of(v), v == 0);
        let in_job = self.lcs[node].add_process(name_of(v), pid).is_ok();
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
            prepared: false,
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

    // ---- the loop ----

    fn run(mut self) -> RunResult {
        while !self.stopped {
            let next = self.queue.peek().map(|i| i.at);
            match next {
                None => {
                    self.drive(true);
                    if self.queue.is_empty() {
                        break;
                    }
                    continue;
                }
                Some(at) if at > self.now => {
                    let before = self.seq;
                    self.drive(false);
                    if self.seq != before || self.stopped {
                        continue;
                    }
                    self.now = at;
                }
                Some(_) => {}
            }
            let Some(item) = self.queue.pop() else {
                continue;
            };
            self.res.events += 1;
            if self.res.events > MAX_EVENTS {
                self.violation("liveness", format!("more than {MAX_EVENTS} events"));
                break;
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
                break;
            }
        }
        self.res.sim_micros = self.now.as_micros();
        self.res.trace_hash = self.trace.hash();
        self.res.trace = self.trace.lines().to_vec();
        self.res.unexpected_inputs = u64::from(self.gc_unexpected())
            + self
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

    fn gc_unexpected(&self) -> u32 {
        0
    }

    // ---- the driver: the scenario's operations, one after the other ----

    fn settled(&self) -> bool {
        self.busy == 0
            && !self.gc.is_busy()
            && self.lcs.iter().zip(&self.lc_alive).all(|(l, alive)| {
                !alive || matches!(l.phase(), local::Phase::Idle | local::Phase::Quiesced)
            })
    }

    fn drive(&mut self, queue_empty: bool) {
        if !self.settled() {
            if self.now >= self.step_deadline {
                let what = self.stage;
                self.violation(
                    "liveness",
                    format!("{what:?} did not end within {}s", STEP_BOUND.as_secs()),
                );
                self.stopped = true;
            } else if queue_empty {
                self.violation(
                    "liveness",
                    format!(
                        "{:?}: nothing left to happen, not ended: {}",
                        self.stage,
                        self.busy_report()
                    ),
                );
                self.stopped = true;
            }
            return;
        }
        if self.stage == Stage::Done {
            self.final_checks();
            self.stopped = true;
            return;
        }
        self.step_deadline = self.now.saturating_add(STEP_BOUND);
        self.res.operations += 1;
        match self.stage {
            Stage::Init => {
                for v in 0..self.ranks.len() {
                    self.request(v, Request::Init);
                }
                self.stage = Stage::Op(0, 0);
            }
            Stage::Op(i, step) => {
                let Some(op) = self.sc.ops.get(i).copied() else {
                    self.stage = Stage::Fin;
                    self.res.operations -= 1;
                    return self.drive(queue_empty);
                };
                self.spurious_signals();
                let next = Stage::Op(i + 1, 0);
                self.stage = next;
                match op {
                    Op::Checkpoint => {
                        self.request(0, Request::Checkpoint);
                    }
                    Op::Command { term, stop } => {
                        let r = self
                            .gc
                            .handle_command(self.now, global::Command::Checkpoint { term, stop });
                        let _ = r;
                        self.after_gc();
                        if term {
                            self.stage = Stage::Done;
                        }
                    }
                    Op::Quiesce { checkpoints } => {
                        let (req, again) = match step {
                            0 => (Request::QuiesceStart, true),
                            s if s <= checkpoints => (Request::QuiesceCheckpoint, true),
                            _ => (Request::QuiesceEnd, false),
                        };
                        if again {
                            self.stage = Stage::Op(i, step + 1);
                        }
                        for v in (0..self.ranks.len()).rev() {
                            let r = &self.ranks[v];
                            let quiesced = r.app.is_quiesced();
                            if step == 0 || quiesced {
                                self.request(v, req);
                            }
                        }
                    }
                    Op::Migrate { rank } => {
                        let entries = [MigrateEntry {
                            vpid: (rank as usize % self.ranks.len()) as i32,
                            host: None,
                            vpid_pref: -1,
                            off_node: true,
                        }];
                        self.request(0, Request::Migrate(List::Items(&entries)));
                    }
                    Op::Restart => {
                        if let Some((seq, _, reference)) = self.restartable.last().cloned() {
                            let req = Request::Restart {
                                seq_num: seq as i32,
                                handle: Some(reference.as_str()),
                            };
                            self.request(0, req);
                        }
                    }
                }
            }
            Stage::Fin => {
                self.stage = Stage::Done;
                if self.rank_usable(0) {
                    self.fin_sent = self.request(0, Request::Fin);
                    self.fin_incarnation = self.ranks[0].incarnation;
                }
                self.step_deadline = self.now.saturating_add(STEP_BOUND);
                // FIN is checked once it settled.
                self.stage = Stage::Done;
                self.schedule(Duration::ZERO, Ev::Driver);
            }
            Stage::Done => {}
        }
    }

    fn busy_report(&self) -> String {
        let ranks: Vec<usize> = (0..self.ranks.len())
            .filter(|&v| self.ranks[v].busy)
            .take(5)
            .collect();
        let lcs: Vec<String> = self
            .lcs
            .iter()
            .enumerate()
            .filter(|(i, _)| self.lc_alive[*i])
            .map(|(i, l)| format!("lc{i} {:?}", l.phase()))
            .take(5)
            .collect();
        format!(
            "gc busy {}, busy ranks {ranks:?}, {lcs:?}",
            self.gc.is_busy()
        )
    }

    fn final_checks(&mut self) {
        if !self.fin_sent || self.ranks[0].incarnation != self.fin_incarnation {
            // No FIN, or its sender was replaced (migrated) meanwhile.
            return;
        }
        let r = &self.ranks[0];
        let clean_path = !self.sc.faults.lossy()
            && self.sc.faults.daemon_crash_at_ms.is_none()
            && !self.gc.is_quiesced()
            && r.alive
            && !r.hung;
        match &r.last_req {
            Some(rep)
                if rep.op == OpEvent::Fin && rep.error.is_none() && !self.gc.is_finished() =>
            {
                self.violation("fin", "FIN acknowledged but the GC is not finished".into());
            }
            Some(rep) if rep.op == OpEvent::Fin && rep.error.is_none() => {}
            other if clean_path => {
                let d = format!("FIN not acknowledged: {other:?}");
                self.violation("fin", d);
            }
            _ => {}
        }
    }

    fn rank_usable(&self, v: usize) -> bool {
        let r = &self.ranks[v];
        r.alive && !r.terminating && !r.hung
    }

    fn spurious_signals(&mut self) {
        let p = self.sc.faults.spurious;
        if p <= 0.0 {
            return;
        }
        for v in 0..self.ranks.len() {
            if self.rng.chance(p) {
                let g = self.ranks[v].incarnation;
                let d = self.rng.duration(Duration::ZERO, Duration::from_secs(600));
                self.schedule(d, Ev::Signal(v, g));
            }
        }
    }

    /// An application request on rank `v`. Whether it was taken.
    fn request(&mut self, v: usize, req: Request<'_>) -> bool {
        if !self.rank_usable(v) || self.ranks[v].in_hook {
            return false;
        }
        let mut buf = [0u8; 4096];
        let now = self.now;
        match self.ranks[v].app.request(now, req, &mut buf) {
            Ok(n) => {
                self.ranks[v].req = Some(req.op_event());
                if n > 0 {
                    let bytes = buf[..n].to_vec();
                    match RequestOp::parse(&bytes) {
                        Ok(p) if p.request == req => {}
                        other => self.violation(
                            "encoding",
                            format!("rank {v}: REQUEST_OP does not decode back: {other:?}"),
                        ),
                    }
                    self.send_net(Ev::ToGc(Src::Rank(v), bytes));
                }
                self.after_rank(v);
                true
            }
            Err(_) => false,
        }
    }

    fn send_net(&mut self, ev: Ev) {
        for d in self.dev.net.deliveries(&mut self.rng) {
            self.schedule(d, ev.clone());
        }
    }

    /// A message on an LC's stream to or from the GC (`up`: towards the
    /// GC). ORTED_STATE and JOB_STATE carry no operation id, so the
    /// protocol needs this link to be a stream, as Open MPI's OOB (TCP) and
    /// our Unix sockets are: it may lose messages (a broken connection) and
    /// delay them, but never duplicates or reorders them. Duplicating or
    /// reordering them lets a stale report of one operation count for the
    /// next (found by this simulator; see ARCHITECTURE.md).
    fn send_stream(&mut self, lc: usize, up: bool, ev: Ev) {
        let Some(d) = self.dev.net.deliveries(&mut self.rng).first().copied() else {
            return;
        };
        let last = &mut self.stream_last[lc][usize::from(up)];
        let at = self.now.saturating_add(d).max(*last);
        *last = at;
        let d = at.saturating_duration_since(self.now);
        self.schedule(d, ev);
    }

    // ---- delivery ----

    fn live(&self, v: usize, g: u32) -> bool {
        self.ranks
            .get(v)
            .is_some_and(|r| r.alive && r.incarnation == g && !r.hung)
    }

    fn deliver(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Driver => {}
            Ev::Timer(m) => self.timer(m),
            Ev::Signal(v, g) => {
                if self.live(v, g) {
                    self.ranks[v].flag.request_at(now);
                    let d = self.dev.app.progress_delay(&mut self.rng);
                    self.schedule(d, Ev::Progress(v, g));
                    self.after_rank(v);
                }
            }
            Ev::Progress(v, g) => {
                if self.live(v, g) && !self.ranks[v].in_hook {
                    self.ranks[v].app.handle_progress(now);
                    self.after_rank(v);
                }
            }
            Ev::AppOpened(v, g) => self.app_input(v, g, |a, now| a.handle_opened(now)),
            Ev::AppRead(v, g, bytes) => {
                if self.live(v, g) && self.ranks[v].reading == Some(app::FrameKind::Options) {
                    if let Ok(f) = OptionsFrame::parse(&bytes, false) {
                        self.ranks[v].handle = f.handle;
                        self.ranks[v].target = f.options.all_migrating && f.options.migrating;
                    }
                }
                self.app_input(v, g, |a, now| a.handle_read(now, &bytes));
            }
            Ev::AppWriteDone(v, g) => self.app_input(v, g, |a, now| a.handle_write_done(now)),
            Ev::AppIoError(v, g) => {
                self.app_input(v, g, |a, now| a.handle_io_error(now, IoError::PeerGone))
            }
            Ev::AppPrepare(v, g, r) => {
                if self.live(v, g) && r == PrepareResult::Ready {
                    self.ranks[v].prepared = true;
                }
                if self.live(v, g) && r == PrepareResult::NotNow {
                    // The next progress point comes later.
                    let d = self
                        .rng
                        .duration(Duration::from_millis(10), Duration::from_secs(30));
                    self.schedule(d, Ev::Progress(v, g));
                }
                self.hook_input(v, g, |a, now| a.handle_prepare(now, r));
            }
            Ev::AppCheckpoint(v, g, mut r) => {
                if self.live(v, g) {
                    let h = self.ranks[v].handle;
                    if let CheckpointResult::Restart { pid } = &mut r {
                        // A restarted copy: a new process with the snapshot's
                        // state (which is this state: nothing ran since).
                        *pid = self.next_pid;
                        self.next_pid += 1;
                    }
                    if r != CheckpointResult::Error {
                        let s = self.ranks[v].state;
                        self.content.insert((h, v), s);
                    }
                }
                self.hook_input(v, g, |a, now| a.handle_checkpoint(now, r));
            }
            Ev::AppRecovered(v, g, ok) => self.hook_input(v, g, |a, now| {
                a.handle_recovered(now, if ok { Ok(()) } else { Err(HostError) })
            }),
            Ev::AppSstore(v, g, ok) => self.hook_input(v, g, |a, now| {
                a.handle_sstore(now, if ok { Ok(()) } else { Err(HostError) })
            }),
            Ev::AppGlobal(v, g, h) => {
                let found = self.sstore.get(&h).cloned();
                self.app_input(v, g, |a, now| match &found {
                    Some((seq, r)) => a.handle_sstore_global(now, Some(*seq as i32), Some(r)),
                    None => a.handle_sstore_global(now, None, None),
                });
            }
            Ev::AppTeardownDone(v, g) => self.app_input(v, g, |a, now| a.handle_teardown_done(now)),
            Ev::ToRank(v, bytes) => {
                let g = self.ranks[v].incarnation;
                self.app_input(v, g, |a, now| a.handle_gc_message(now, &bytes));
            }
            Ev::Chunk {
                key,
                to_app,
                bytes,
                done,
            } => self.chunk(key, to_app, bytes, done),
            Ev::LcFifosExist(lc, s) => self.lc_input(lc, |l, now| l.handle_fifos_exist(now, s)),
            Ev::LcOpened(lc, s) => self.lc_input(lc, |l, now| l.handle_opened(now, s)),
            Ev::LcWritten(lc, s) => self.lc_input(lc, |l, now| l.handle_written(now, s)),
            Ev::LcRead(lc, s, b) => self.lc_input(lc, |l, now| l.handle_read(now, s, &b)),
            Ev::LcIoError(lc, s, e) => self.lc_input(lc, |l, now| l.handle_io_error(now, s, e)),
            Ev::LcStopped(lc, s) => self.lc_input(lc, |l, now| l.handle_stopped(now, s)),
            Ev::ToLc(lc, bytes) => match FromGc::parse(&bytes) {
                Ok(FromGc::JobState(js)) => {
                    if let (true, Some(d), CkptState::Running) =
                        (self.lc_alive[lc], js.detail, js.state.state)
                    {
                        // The job's ranks in this checkpoint: those in the
                        // LC's table when the LC takes the JOB_STATE.
                        let here: Vec<usize> = (0..self.ranks.len())
                            .filter(|&v| self.ranks[v].in_job && self.ranks[v].node == lc)
                            .collect();
                        let m = self.members.entry(d.handle).or_default();
                        m.extend(here);
                        m.sort_unstable();
                        m.dedup();
                    }
                    self.lc_input(lc, |l, now| l.handle_gc_message(now, &bytes))
                }
                other => self.violation("encoding", format!("to lc{lc}: {other:?}")),
            },
            Ev::ToDaemon(lc, pid, bytes) => match ToDaemon::parse(&bytes) {
                Ok(_) => self.lc_input(lc, |l, now| l.handle_process_message(now, pid, &bytes)),
                Err(e) => self.violation("encoding", format!("to daemon {lc}: {e:?}")),
            },
            Ev::ToGc(src, bytes) => {
                let r = match (src, ToGc::parse(&bytes)) {
                    (Src::Rank(v), Ok(ToGc::RequestOp(_))) => {
                        self.gc.handle_rank_message(now, v as u32, &bytes)
                    }
                    (Src::Lc(lc), Ok(ToGc::OrtedState(_))) => {
                        self.gc.handle_lc_message(now, lc, &bytes)
                    }
                    (_, other) => {
                        self.violation("encoding", format!("to gc from {src:?}: {other:?}"));
                        Ok(())
                    }
                };
                let _ = r;
                self.after_gc();
            }
            Ev::MigrationDone(ok, report, handle, moves) => {
                // On success the moving ranks restart from the snapshot on
                // their new node; on failure, where they were.
                let mut ok = ok;
                for m in moves {
                    let v = m.vpid as usize;
                    let Some(cur) = self.ranks.get(v).map(|r| r.node) else {
                        continue;
                    };
                    self.targets.retain(|t| t.0 != v);
                    let member = self.members.get(&handle).is_some_and(|m| m.contains(&v));
                    if !member || !self.lc_alive[cur] && !ok {
                        continue;
                    }
                    if ok {
                        let node = match &m.dest {
                            Destination::Host(h) => h
                                .strip_prefix("node")
                                .and_then(|n| n.parse::<usize>().ok())
                                .filter(|n| *n < self.nodes)
                                .unwrap_or((cur + 1) % self.nodes),
                            _ => (cur + 1) % self.nodes,
                        };
                        if !self.lc_alive[node] {
                            ok = false;
                            continue;
                        }
                        self.restore(v, node, handle);
                    } else {
                        self.restore(v, cur, handle);
                    }
                }
                if report {
                    let _ = self.gc.handle_migration_done(now, ok);
                    self.after_gc();
                }
            }
            Ev::RestartDone(ok, seq) => {
                let snap = self
                    .restartable
                    .iter()
                    .find(|s| s.0 as i32 == seq)
                    .map(|s| s.1);
                let ok = match snap {
                    Some(h) if ok => {
                        let members = self.members.get(&h).cloned().unwrap_or_default();
                        for v in members {
                            let node = self.ranks[v].node;
                            let node = if self.lc_alive[node] {
                                node
                            } else {
                                (0..self.nodes).find(|n| self.lc_alive[*n]).unwrap_or(node)
                            };
                            self.restore(v, node, h);
                        }
                        true
                    }
                    _ => false,
                };
                if !ok {
                    // The runtime ends the requester, which awaits its end.
                    let g = self.ranks[0].incarnation;
                    self.schedule(Duration::from_millis(100), Ev::Terminate(0, g));
                }
                let _ = self.gc.handle_restart_done(now, ok);
                self.after_gc();
            }
            Ev::Terminate(v, g) => {
                if self.ranks[v].incarnation == g && self.ranks[v].alive {
                    self.kill(v);
                    self.remove_from_lc(v);
                }
            }
            Ev::DaemonCrash(lc) => {
                if self.lc_alive[lc] {
                    self.res.crashes += 1;
                    self.lc_alive[lc] = false;
                    for (_, p) in self.pipes.iter_mut() {
                        if p.lc_read.is_some_and(|r| r.0 == lc) {
                            p.lc_read = None;
                        }
                    }
                    let keys: Vec<Key> = self
                        .lc_chan
                        .iter()
                        .filter(|((l, _), _)| *l == lc)
                        .map(|(_, (_, k))| *k)
                        .collect();
                    for k in keys {
                        if let Some(p) = self.pipes.get_mut(&k) {
                            p.lc_open = false;
                        }
                    }
                    self.lc_chan.retain(|(l, _), _| *l != lc);
                    self.watches.retain(|_, (l, _)| *l != lc);
                }
            }
        }
    }

    /// The runtime replaces rank `v` by a process restored from snapshot
    /// `handle` on `node`; its state must be the snapshot's.
    fn restore(&mut self, v: usize, node: usize, handle: u32) {
        // A node whose daemon is gone takes no process: the runtime uses
        // another.
        let here = self.ranks[v].node;
        let room = |w: &Self, n: usize| {
            w.lc_alive[n] && (w.lcs[n].len() < w.per_node || (n == here && w.ranks[v].in_job))
        };
        let nodes = self.nodes;
        let Some(node) = (0..nodes)
            .map(|i| (node + i) % nodes)
            .find(|&n| room(self, n))
        else {
            return;
        };
        let Some(&state) = self.content.get(&(handle, v)) else {
            self.violation(
                "snapshot",
                format!("rank {v}: restored from established snapshot handle {handle} that has no state for it"),
            );
            return;
        };
        self.res.crashes += 1;
        if self.ranks[v].alive {
            self.kill(v);
        }
        self.remove_from_lc(v);
        let incarnation = self.ranks[v].incarnation + 1;
        let mut r = self.spawn(v, node, state);
        r.incarnation = incarnation;
        if r.state != state {
            self.violation(
                "snapshot",
                format!("rank {v}: restarted state differs from its snapshot"),
            );
        }
        let old_busy = self.ranks[v].busy;
        self.ranks[v] = r;
        self.ranks[v].busy = old_busy;
        self.gc.placement_mut().0[v] = host_name(node);
        self.after_rank(v);
    }

    fn remove_from_lc(&mut self, v: usize) {
        let r = &mut self.ranks[v];
        if !r.in_job {
            return;
        }
        r.in_job = false;
        let node = r.node;
        if self.lc_alive[node] {
            let now = self.now;
            let _ = self.lcs[node].remove_process(now, name_of(v));
            self.after_lc(node);
        }
    }

    /// The process vanishes: its FIFO ends close; it never answers again.
    fn kill(&mut self, v: usize) {
        let r = &mut self.ranks[v];
        r.alive = false;
        r.in_hook = false;
        if let Some(k) = r.chan {
            if let Some(p) = self.pipes.get_mut(&k) {
                p.app_open = false;
                p.app_read = None;
                p.app_open_wait = None;
            }
            self.try_lc_read(k);
        }
        self.after_rank(v);
    }

    fn app_input(
        &mut self,
        v: usize,
        g: u32,
        f: impl FnOnce(&mut AppCoordinator<'static>, Instant) -> Result<(), app::InputError>,
    ) {
        if !self.live(v, g) {
            return;
        }
        // An input the machine does not take (late, after a deadline) it
        // counts; the simulation checks outcomes, not this.
        let _ = f(&mut self.ranks[v].app, self.now);
        self.after_rank(v);
    }

    fn hook_input(
        &mut self,
        v: usize,
        g: u32,
        f: impl FnOnce(&mut AppCoordinator<'static>, Instant) -> Result<(), app::InputError>,
    ) {
        if !self.live(v, g) {
            return;
        }
        self.ranks[v].in_hook = false;
        // An input the machine does not take (late, after a deadline) it
        // counts; the simulation checks outcomes, not this.
        let _ = f(&mut self.ranks[v].app, self.now);
        self.after_rank(v);
    }

    fn lc_input<E>(
        &mut self,
        lc: usize,
        f: impl FnOnce(&mut LocalCoordinator<Vec<ProcessSlot>>, Instant) -> Result<(), E>,
    ) {
        if !self.lc_alive[lc] {
            return;
        }
        let _ = f(&mut self.lcs[lc], self.now);
        self.after_lc(lc);
    }

    fn timer(&mut self, m: Machine) {
        let now = self.now;
        match m {
            Machine::Gc => {
                self.gc_armed = None;
                if self.gc.poll_timeout().is_some_and(|t| t <= now) {
                    self.gc.handle_timeout(now);
                }
                self.after_gc();
            }
            Machine::Lc(lc) => {
                self.lc_armed[lc] = None;
                if !self.lc_alive[lc] {
                    return;
                }
                if self.lcs[lc].poll_timeout().is_some_and(|t| t <= now) {
                    self.lcs[lc].handle_timeout(now);
                }
                self.after_lc(lc);
            }
            Machine::Rank(v, g) => {
                if !self.live(v, g) {
                    return;
                }
                self.ranks[v].armed = None;
                if self.ranks[v].in_hook {
                    // Busy in a hook: the deadline is seen when it returns.
                    return;
                }
                if self.ranks[v].app.poll_timeout().is_some_and(|t| t <= now) {
                    self.ranks[v].app.handle_timeout(now);
                }
                self.after_rank(v);
            }
        }
    }

    // ---- after each input: drain, arm, account ----

    fn after_rank(&mut self, v: usize) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.ranks[v].app.poll_action(&mut out) {
            if !self.ranks[v].alive {
                continue;
            }
            self.app_action(v, a, &out);
        }
        let r = &mut self.ranks[v];
        if r.alive && r.app.config().pid != r.pid {
            // A restarted copy took its new pid.
            let new = r.app.config().pid;
            r.pid = new;
            self.pids.insert(new, v);
        }
        let r = &self.ranks[v];
        // The application runs between its progress points whenever the
        // coordinator does not hold it.
        let holds = r.app.is_checkpointing() && self.sc.mutation != Mutation::RunWhilePrepared;
        if r.alive && !r.hung && !r.in_hook && !r.terminating && !holds {
            if r.prepared {
                let d = format!("rank {v}: application code ran between prepare and recover");
                self.violation("prepared", d);
                self.ranks[v].prepared = false;
            }
            let r = &mut self.ranks[v];
            r.state = r
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
        }
        let r = &self.ranks[v];
        if r.alive && !r.hung && !r.in_hook {
            let t = r.app.poll_timeout();
            if t.is_some() && t != r.armed {
                let g = r.incarnation;
                self.ranks[v].armed = t;
                let d = t.unwrap_or(self.now).saturating_duration_since(self.now);
                self.schedule(d, Ev::Timer(Machine::Rank(v, g)));
            }
        }
        let r = &self.ranks[v];
        let busy = r.alive
            && !r.terminating
            && !r.hung
            && (r.req.is_some()
                || r.in_hook
                || r.flag.is_requested()
                || !(r.app.is_idle() || r.app.is_quiesced()));
        if busy != r.busy {
            self.ranks[v].busy = busy;
            if busy {
                self.busy += 1;
            } else {
                self.busy -= 1;
            }
        }
    }

    fn after_lc(&mut self, lc: usize) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(a) = self.lcs[lc].poll_action(&mut out) {
            self.lc_action(lc, a, &out);
        }
        let t = self.lcs[lc].poll_timeout();
        if t.is_some() && t != self.lc_armed[lc] {
            self.lc_armed[lc] = t;
            let d = t.unwrap_or(self.now).saturating_duration_since(self.now);
            self.schedule(d, Ev::Timer(Machine::Lc(lc)));
        }
    }

    fn after_gc(&mut self) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(action) = self.gc.poll_action(&mut out) {
            let bytes = match action {
                global::Action::SendToLcs { len } | global::Action::SendToRank { len, .. } => {
                    out[..len].to_vec()
                }
                _ => Vec::new(),
            };
            self.gc_out(action, bytes);
        }
        let t = self.gc.poll_timeout();
        if t.is_some() && t != self.gc_armed {
            self.gc_armed = t;
            let d = t.unwrap_or(self.now).saturating_duration_since(self.now);
            self.schedule(d, Ev::Timer(Machine::Gc));
        }
    }

    fn gc_out(&mut self, action: global::Action, bytes: Vec<u8>) {
        match action {
            global::Action::SendToLcs { .. } => {
                let (state, detail) = match FromGc::parse(&bytes) {
                    Ok(FromGc::JobState(js)) => (
                        js.state.state,
                        js.detail
                            .map(|d| (d.handle, d.options, d.migrating.is_some())),
                    ),
                    other => {
                        let d = format!("JOB_STATE does not decode: {bytes:02x?}: {other:?}");
                        return self.violation("encoding", d);
                    }
                };
                if let (CkptState::Running, Some((h, o, migrating))) = (state, detail) {
                    if migrating {
                        self.migrations.insert(h);
                    }
                    // Each LC adds its processes when it takes the JOB_STATE.
                    self.members.entry(h).or_default();
                    self.gc_running = true;
                    if o.inc_prep_only {
                        self.quiesce_handle = Some(h);
                    }
                }
                for lc in 0..self.nodes {
                    self.send_stream(lc, false, Ev::ToLc(lc, bytes.clone()));
                }
            }
            global::Action::SendToRank { vpid, .. } => {
                match FromGc::parse(&bytes) {
                    Ok(FromGc::FinAck) if self.gc_running || self.gc.is_busy() => {
                        self.violation("fin", "FIN_ACK sent while a checkpoint runs".into());
                    }
                    Ok(FromGc::OpResponse(_) | FromGc::FinAck) => {}
                    other => {
                        let d = format!("GC answer does not decode: {bytes:02x?}: {other:?}");
                        self.violation("encoding", d);
                    }
                }
                if (vpid as usize) < self.ranks.len() {
                    self.send_net(Ev::ToRank(vpid as usize, bytes));
                } else {
                    self.violation("routing", format!("GC answers unknown rank {vpid}"));
                }
            }
            global::Action::Established(s) => {
                self.established(s.seq, s.handle, s.reference.as_str().to_string())
            }
            global::Action::Migrate { handle, .. } => {
                let moves = self.gc.migration_plan().moves().to_vec();
                self.migrate(handle, moves);
            }
            global::Action::Restart { seq_num } => match self.dev.runtime.done(&mut self.rng) {
                Answer::After(d, ok) => self.schedule(d, Ev::RestartDone(ok, seq_num)),
                Answer::Never => {}
            },
            global::Action::Finished(r) => self.finished(r.kind, r.ok),
            other => self.violation(
                "routing",
                format!("a GC action the world does not know: {other:?}"),
            ),
        }
    }

    /// The runtime carries out a migration (or never reports).
    fn migrate(&mut self, handle: u32, moves: Vec<Move>) {
        match self.dev.runtime.done(&mut self.rng) {
            Answer::After(d, ok) => self.schedule(d, Ev::MigrationDone(ok, true, handle, moves)),
            Answer::Never => {
                // The runtime never reports, but restarts the moving
                // ranks where they were.
                let d = Duration::from_secs(10);
                self.schedule(d, Ev::MigrationDone(false, false, handle, moves));
            }
        }
    }

    /// An operation ended at the GC.
    fn finished(&mut self, kind: global::OpKind, ok: bool) {
        if kind == global::OpKind::Migrate && !ok {
            // The runtime restarts the stranded targets in place.
            for (v, h) in std::mem::take(&mut self.targets) {
                let r = &self.ranks[v];
                if r.alive && r.terminating && r.handle == h {
                    let node = r.node;
                    self.restore(v, node, h);
                }
            }
        }
        if kind != global::OpKind::Fin {
            self.gc_running = false;
        }
        if kind == global::OpKind::QuiesceEnd {
            self.quiesce_handle = None;
        }
        if ok {
            self.res.ops_ok += 1;
        } else {
            self.res.ops_failed += 1;
        }
    }

    /// The GC established a snapshot: check it may.
    fn established(&mut self, seq: u32, h: u32, reference: String) {
        self.res.established += 1;
        if self.last_seq.is_some_and(|s| seq <= s) {
            let d = format!("sequence number {seq} after {:?}", self.last_seq);
            self.violation("sequence", d);
        }
        self.last_seq = Some(seq);
        let quiesce = self.quiesce_handle == Some(h) && self.gc.is_quiesced();
        let members = self.members.get(&h).cloned().unwrap_or_default();
        let mut missing = Vec::new();
        for &v in &members {
            let s = self.finals.get(&(h, v)).copied();
            let ok = if quiesce {
                // Quiesced: RUNNING reported; the rank may have gone on to
                // quiesce end since (the request can arrive late).
                matches!(
                    s,
                    Some(CrState::Running | CrState::Continue | CrState::Term)
                )
            } else {
                matches!(s, Some(CrState::Continue | CrState::Term))
            };
            if !ok {
                missing.push((v, s));
            }
        }
        if !missing.is_empty() {
            missing.truncate(4);
            self.violation(
                "established",
                format!("snapshot seq {seq} handle {h} established before every rank reported: {missing:?}"),
            );
        }
        if !quiesce && !self.migrations.contains(&h) {
            self.restartable.push((seq, h, reference.clone()));
        }
        self.sstore.insert(h, (seq, reference));
    }

    // ---- the app adapter ----

    fn app_action(&mut self, v: usize, a: app::Action, out: &MessageBuf) {
        use app::Action as A;
        let crash_point = matches!(
            a,
            A::OpenChannel { .. }
                | A::Read { .. }
                | A::Write { .. }
                | A::Prepare
                | A::Checkpoint { .. }
                | A::Recover { .. }
        );
        if crash_point && self.dev.app.crashes(&mut self.rng) {
            self.res.crashes += 1;
            return self.kill(v);
        }
        let g = self.ranks[v].incarnation;
        match a {
            A::OpenChannel { names } => {
                let key = (names.pid, names.n);
                self.pipes.insert(
                    key,
                    Pipe {
                        exists: true,
                        app_open: true,
                        app_open_wait: Some((v, g)),
                        ..Pipe::default()
                    },
                );
                self.ranks[v].chan = Some(key);
                if let Some((lc, slot)) = self.watches.remove(&key) {
                    self.schedule(Duration::ZERO, Ev::LcFifosExist(lc, slot));
                }
            }
            A::Read { frame, len } => {
                self.ranks[v].reading = Some(frame);
                if let Some(k) = self.ranks[v].chan {
                    if let Some(p) = self.pipes.get_mut(&k) {
                        p.app_read = Some((v, g, len));
                    }
                    self.try_app_read(k);
                }
            }
            A::Write { frame, bytes } => {
                let decoded = match frame {
                    app::FrameKind::Response => fifo::parse_response(&bytes).map(|_| ()),
                    _ => fifo::parse_cr_state(&bytes).map(|s| {
                        if matches!(frame, app::FrameKind::FinalState | app::FrameKind::Running) {
                            let h = self.ranks[v].handle;
                            self.finals.insert((h, v), s);
                        }
                    }),
                };
                if let Err(e) = decoded {
                    self.violation("encoding", format!("rank {v}: FIFO frame {frame:?}: {e:?}"));
                }
                let key = self.ranks[v].chan;
                match key.and_then(|k| self.pipes.get(&k).map(|p| (k, p.lc_open))) {
                    Some((k, true)) => {
                        self.write_parts(k, false, bytes.to_vec(), Writer::App(v, g))
                    }
                    _ => self.schedule(Duration::ZERO, Ev::AppIoError(v, g)),
                }
            }
            A::Prepare => {
                let a = self.dev.app.prepare(&mut self.rng);
                self.hook(v, a, Ev::AppPrepare);
            }
            A::Checkpoint { .. } => {
                let a = self.dev.app.checkpoint(&mut self.rng);
                self.hook(v, a, Ev::AppCheckpoint);
            }
            A::Recover { .. } => {
                self.ranks[v].prepared = false;
                let a = self.dev.app.recover(&mut self.rng);
                self.hook(v, a, Ev::AppRecovered);
            }
            A::Sstore(op) => match op {
                SstoreOp::ReadLocation { .. } | SstoreOp::Sync { .. } => {
                    let a = self.dev.disk.call(&mut self.rng);
                    self.hook(v, a, Ev::AppSstore);
                }
                SstoreOp::ReadGlobal { handle } => {
                    self.schedule(Duration::ZERO, Ev::AppGlobal(v, g, handle));
                }
                _ => {}
            },
            A::SendToDaemon { len } => {
                let bytes = out[..len].to_vec();
                if let Err(e) = ToDaemon::parse(&bytes) {
                    self.violation("encoding", format!("rank {v}: {bytes:02x?}: {e:?}"));
                }
                let node = self.ranks[v].node;
                let pid = self.ranks[v].pid;
                for d in self.dev.local.deliveries(&mut self.rng) {
                    self.schedule(d, Ev::ToDaemon(node, pid, bytes.clone()));
                }
            }
            A::Close { names } => {
                let k = (names.pid, names.n);
                if let Some(p) = self.pipes.get_mut(&k) {
                    p.app_open = false;
                    p.app_read = None;
                    p.app_open_wait = None;
                }
                self.try_lc_read(k);
            }
            A::Unlink { names } => {
                if self.sc.mutation != Mutation::SkipUnlink {
                    if let Some(p) = self.pipes.get_mut(&(names.pid, names.n)) {
                        p.exists = false;
                    }
                }
                self.ranks[v].chan = None;
                self.schedule(Duration::ZERO, Ev::AppTeardownDone(v, g));
            }
            A::AwaitTermination => {
                self.ranks[v].terminating = true;
                if self.ranks[v].target {
                    // The runtime moves it (or, if the migration fails,
                    // restarts it where it was) from its snapshot.
                    let h = self.ranks[v].handle;
                    self.targets.push((v, h));
                } else {
                    self.schedule(Duration::from_millis(100), Ev::Terminate(v, g));
                }
            }
            A::Outcome(o) => match o {
                app::Outcome::Handshake(rep) => {
                    let k = (rep.names.pid, rep.names.n);
                    if self.pipes.get(&k).is_some_and(|p| p.exists) {
                        self.violation(
                            "fifo",
                            format!(
                                "rank {v}: FIFO names {}_{} left after the handshake",
                                k.0, k.1
                            ),
                        );
                    }
                }
                app::Outcome::Request(rep) => {
                    self.ranks[v].req = None;
                    self.ranks[v].last_req = Some(rep);
                }
                app::Outcome::Quiesced { .. } => {}
                other => self.violation("routing", format!("rank {v}: unknown outcome {other:?}")),
            },
            other => self.violation("routing", format!("rank {v}: unknown action {other:?}")),
        }
    }

    fn hook<T>(&mut self, v: usize, a: Answer<T>, ev: impl FnOnce(usize, u32, T) -> Ev) {
        let g = self.ranks[v].incarnation;
        match a {
            Answer::After(d, t) => {
                self.ranks[v].in_hook = true;
                self.schedule(d, ev(v, g, t));
            }
            Answer::Never => {
                // The process hangs in the hook for good.
                self.ranks[v].hung = true;
            }
        }
    }

    // ---- the pipes ----

    fn write_parts(&mut self, key: Key, to_app: bool, bytes: Vec<u8>, w: Writer) {
        let parts = self.dev.pipe.parts(&mut self.rng, bytes.len());
        let mut at = Duration::ZERO;
        let mut off = 0;
        let n = parts.len();
        for (i, (d, len)) in parts.into_iter().enumerate() {
            at += d;
            let chunk = bytes[off..off + len].to_vec();
            off += len;
            let done = (i + 1 == n).then_some(w);
            self.schedule(
                at,
                Ev::Chunk {
                    key,
                    to_app,
                    bytes: chunk,
                    done,
                },
            );
        }
    }

    fn chunk(&mut self, key: Key, to_app: bool, bytes: Vec<u8>, done: Option<Writer>) {
        if let Some(p) = self.pipes.get_mut(&key) {
            if to_app {
                p.to_app.extend(bytes);
            } else {
                p.to_lc.extend(bytes);
            }
        }
        if to_app {
            self.try_app_read(key);
        } else {
            self.try_lc_read(key);
        }
        match done {
            Some(Writer::App(v, g)) => self.schedule(Duration::ZERO, Ev::AppWriteDone(v, g)),
            Some(Writer::Lc(lc, s)) => self.schedule(Duration::ZERO, Ev::LcWritten(lc, s)),
            None => {}
        }
    }

    fn try_app_read(&mut self, key: Key) {
        let Some(p) = self.pipes.get_mut(&key) else {
            return;
        };
        if let Some((v, g, len)) = p.app_read {
            if p.to_app.len() >= len {
                let bytes: Vec<u8> = p.to_app.drain(..len).collect();
                p.app_read = None;
                self.schedule(Duration::ZERO, Ev::AppRead(v, g, bytes));
            }
        }
    }

    fn try_lc_read(&mut self, key: Key) {
        let Some(p) = self.pipes.get_mut(&key) else {
            return;
        };
        if let Some((lc, s, len)) = p.lc_read {
            if p.to_lc.len() >= len {
                let bytes: Vec<u8> = p.to_lc.drain(..len).collect();
                p.lc_read = None;
                self.schedule(Duration::ZERO, Ev::LcRead(lc, s, bytes));
            } else if !p.app_open {
                p.lc_read = None;
                self.schedule(Duration::ZERO, Ev::LcIoError(lc, s, IoError::PeerGone));
            }
        }
    }

    // ---- the node daemon ----

    fn lc_action(&mut self, lc: usize, a: local::Action, out: &MessageBuf) {
        use local::Action as A;
        match a {
            A::Signal { slot, pid } => match self.pids.get(&pid).copied() {
                Some(v) if self.ranks[v].alive && self.ranks[v].pid == pid => {
                    let g = self.ranks[v].incarnation;
                    for d in self.dev.signal.deliveries(&mut self.rng) {
                        self.schedule(d, Ev::Signal(v, g));
                    }
                }
                _ => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
            },
            A::WatchFifos { slot, names } => {
                let key = (names.pid, names.n);
                self.lc_chan.insert((lc, slot.index()), (slot, key));
                if self.pipes.get(&key).is_some_and(|p| p.exists) {
                    self.schedule(Duration::ZERO, Ev::LcFifosExist(lc, slot));
                } else {
                    self.watches.insert(key, (lc, slot));
                }
            }
            A::OpenFifos { slot, names } => {
                let key = (names.pid, names.n);
                self.lc_chan.insert((lc, slot.index()), (slot, key));
                match self.pipes.get_mut(&key) {
                    Some(p) if p.exists && p.app_open => {
                        p.lc_open = true;
                        let opener = p.app_open_wait.take();
                        self.schedule(Duration::ZERO, Ev::LcOpened(lc, slot));
                        if let Some((v, g)) = opener {
                            self.schedule(Duration::ZERO, Ev::AppOpened(v, g));
                        }
                    }
                    _ => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
                }
            }
            A::Write { slot, bytes } => {
                let ok = if bytes.len() == OptionsFrame::LEN {
                    OptionsFrame::parse(&bytes, false).map(|_| ())
                } else {
                    fifo::parse_release(&bytes).map(|_| ())
                };
                if let Err(e) = ok {
                    self.violation("encoding", format!("lc{lc}: FIFO frame: {e:?}"));
                }
                match self.lc_chan.get(&(lc, slot.index())).copied() {
                    Some((_, key)) if self.pipes.get(&key).is_some_and(|p| p.app_open) => {
                        self.write_parts(key, true, bytes.to_vec(), Writer::Lc(lc, slot));
                    }
                    _ => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
                }
            }
            A::Read { slot, len } => match self.lc_chan.get(&(lc, slot.index())).copied() {
                Some((_, key)) => {
                    if let Some(p) = self.pipes.get_mut(&key) {
                        p.lc_read = Some((lc, slot, len));
                    }
                    self.try_lc_read(key);
                }
                None => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
            },
            A::WaitStopped { slot, .. } => match self.dev.runtime.stopped(&mut self.rng) {
                Answer::After(d, ()) => self.schedule(d, Ev::LcStopped(lc, slot)),
                Answer::Never => {}
            },
            A::Close { slot } => {
                if let Some((id, key)) = self.lc_chan.get(&(lc, slot.index())).copied() {
                    if id == slot {
                        self.lc_chan.remove(&(lc, slot.index()));
                        if self.watches.get(&key) == Some(&(lc, slot)) {
                            self.watches.remove(&key);
                        }
                        if let Some(p) = self.pipes.get_mut(&key) {
                            p.lc_open = false;
                            if p.lc_read.is_some_and(|r| r.0 == lc && r.1 == slot) {
                                p.lc_read = None;
                            }
                        }
                    }
                }
            }
            A::SendToGc { len } => {
                let mut bytes = out[..len].to_vec();
                match OrtedState::parse(&bytes) {
                    Ok(o)
                        if self.sc.mutation == Mutation::ForgeFinished
                            && o.state.state == CkptState::Error =>
                    {
                        // The adapter defect this mutation plants: a node's
                        // ERROR reported as FINISHED_LOCAL.
                        let forged = OrtedState {
                            quick: o.quick,
                            state: StateCode::plain(CkptState::FinishedLocal),
                        };
                        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
                        if let Ok(n) = forged.emit(&mut buf) {
                            bytes = buf[..n].to_vec();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.violation("encoding", format!("lc{lc}: ORTED_STATE: {e:?}")),
                }
                self.send_stream(lc, true, Ev::ToGc(Src::Lc(lc), bytes));
            }
            A::Report(_) => {}
            other => self.violation("routing", format!("lc{lc}: unknown action {other:?}")),
        }
    }
}
