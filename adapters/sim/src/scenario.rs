//! What one seed decides: the job's shape, the operations and the faults.

use crate::rng::Rng;

/// How hard faults are injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum FaultLevel {
    /// No fault: every device is the plain one.
    #[default]
    None,
    /// Each fault kind is enabled for some seeds, at low rates.
    Light,
    /// Each fault kind is enabled for most seeds, at higher rates.
    Heavy,
}

impl FaultLevel {
    /// `none`, `light`/`1`, `heavy`/`2` (`0` is none).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" | "0" => Self::None,
            "light" | "1" => Self::Light,
            "heavy" | "2" => Self::Heavy,
            _ => return None,
        })
    }
}

/// A defect deliberately put into the simulated adapter, to show that the
/// invariants catch it (the simulator is not blind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutation {
    /// The real adapter.
    #[default]
    None,
    /// The simulated app adapter skips `Unlink`: FIFO names are left behind.
    SkipUnlink,
    /// The simulated node daemon reports ORTED_STATE ERROR as
    /// FINISHED_LOCAL: the job is released before every rank reported.
    ForgeFinished,
    /// The simulated app adapter lets the application run while a
    /// checkpoint holds it (between prepare and recover).
    RunWhilePrepared,
}

impl Mutation {
    /// By name, as `--mutation` takes it.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "skip-unlink" => Self::SkipUnlink,
            "forge-finished" => Self::ForgeFinished,
            "run-while-prepared" => Self::RunWhilePrepared,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SkipUnlink => "skip-unlink",
            Self::ForgeFinished => "forge-finished",
            Self::RunWhilePrepared => "run-while-prepared",
        }
    }
}

/// What the command line fixes; the rest comes from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Total ranks (else 1 to 12, from the seed).
    pub ranks: Option<usize>,
    /// Nodes (else 1 to 4, from the seed).
    pub nodes: Option<usize>,
    /// Fault level.
    pub faults: FaultLevel,
    /// Number of operations (else 1 to 6, from the seed).
    pub ops: Option<usize>,
    /// The injected adapter defect.
    pub mutation: Mutation,
    /// Keep the trace's lines (else only its hash).
    pub trace: bool,
}

/// The rates of each fault kind; all zero without faults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Message transport (GC with LCs and ranks): a message is lost.
    pub drop: f64,
    /// A message is delivered twice.
    pub duplicate: f64,
    /// A message is delayed by up to this many ms more (which reorders).
    pub jitter_ms: u64,
    /// A FIFO write is cut into partial writes.
    pub partial_write: f64,
    /// A FIFO peer is slow: each part of a write waits up to this many ms.
    pub slow_fifo_ms: u64,
    /// Per handshake action of a process: it crashes there.
    pub crash: f64,
    /// The node daemon of one node crashes at a random time (ms from start).
    pub daemon_crash_at_ms: Option<u64>,
    /// A signal comes as a storm of several signals.
    pub storm: f64,
    /// Per operation and rank: a spurious checkpoint signal.
    pub spurious: f64,
    /// The prepare answers "not now" (a stall).
    pub stall: f64,
    /// The prepare fails.
    pub prepare_fail: f64,
    /// The checkpointer returns ERROR.
    pub ckpt_error: f64,
    /// The checkpointer returns TERM.
    pub ckpt_term: f64,
    /// The checkpointer returns RESTART (a restarted copy with a new pid).
    pub ckpt_restart: f64,
    /// A hook is slow: up to two hours (past the hook deadline).
    pub slow_hook: f64,
    /// A hook or sstore call never answers.
    pub hang: f64,
    /// An sstore call fails.
    pub sstore_fail: f64,
    /// The runtime fails a migration or restart, or reports no stop.
    pub runtime_fail: f64,
}

impl Faults {
    /// Whether the GC's messages can be lost.
    pub fn lossy(&self) -> bool {
        self.drop > 0.0
    }

    fn pick(level: FaultLevel, nodes: usize, rng: &mut Rng) -> Self {
        let (on, scale) = match level {
            FaultLevel::None => return Self::default(),
            FaultLevel::Light => (0.3, 1.0),
            FaultLevel::Heavy => (0.7, 3.0),
        };
        let mut rate = |max: f64| -> f64 {
            if rng.chance(on) {
                (rng.range(1, 100) as f64 / 100.0) * max * scale
            } else {
                0.0
            }
        };
        let mut f = Self {
            drop: rate(0.02),
            duplicate: rate(0.05),
            jitter_ms: 0,
            partial_write: rate(0.3),
            slow_fifo_ms: 0,
            crash: rate(0.002),
            daemon_crash_at_ms: None,
            storm: rate(0.1),
            spurious: rate(0.01),
            stall: rate(0.1),
            prepare_fail: rate(0.01),
            ckpt_error: rate(0.01),
            ckpt_term: rate(0.005),
            ckpt_restart: rate(0.01),
            slow_hook: rate(0.01),
            hang: rate(0.003),
            sstore_fail: rate(0.005),
            runtime_fail: rate(0.1),
        };
        if rng.chance(on) {
            f.jitter_ms = rng.range(1, 2000);
        }
        if rng.chance(on) {
            f.slow_fifo_ms = rng.range(1, 5000);
        }
        if nodes > 0 && rng.chance(on * 0.2) {
            f.daemon_crash_at_ms = Some(rng.range(0, 4 * 3600 * 1000));
        }
        f
    }
}

/// One operation of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The leader's CHECKPOINT request.
    Checkpoint,
    /// The runtime's own checkpoint command with these options.
    Command {
        /// Terminate the job after it (only as the last operation).
        term: bool,
        /// Stop the processes after it.
        stop: bool,
    },
    /// QUIESCE_START on every rank, `checkpoints` QUIESCE_CHECKPOINTs, then
    /// QUIESCE_END.
    Quiesce {
        /// How many checkpoints while quiesced.
        checkpoints: u8,
    },
    /// The leader's MIGRATE of one rank off its node.
    Migrate {
        /// Which rank (modulo the job's size).
        rank: u32,
    },
    /// The leader's RESTART from the last established snapshot.
    Restart,
}

/// Everything one seed decides.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Ranks (round-robin over the nodes).
    pub ranks: usize,
    /// The operations, in order; FIN follows unless the last terminates.
    pub ops: Vec<Op>,
    /// The fault rates.
    pub faults: Faults,
    /// The injected adapter defect.
    pub mutation: Mutation,
}

impl Scenario {
    /// The scenario of `seed`, drawing from `rng` (the run's PRNG).
    pub fn generate(seed: u64, opts: &Options, rng: &mut Rng) -> Self {
        let nodes = opts
            .nodes
            .unwrap_or_else(|| rng.range(1, 4) as usize)
            .max(1);
        let ranks = opts
            .ranks
            .unwrap_or_else(|| rng.range(nodes as u64, (nodes * 3) as u64) as usize)
            .max(nodes);
        let n_ops = opts.ops.unwrap_or_else(|| rng.range(1, 6) as usize);
        let mut ops = Vec::with_capacity(n_ops);
        for i in 0..n_ops {
            let last = i + 1 == n_ops;
            let op = match rng.range(0, 99) {
                0..=39 => Op::Checkpoint,
                40..=49 => Op::Command {
                    term: false,
                    stop: rng.chance(0.5),
                },
                50..=64 => Op::Quiesce {
                    checkpoints: rng.range(0, 2) as u8,
                },
                65..=79 if nodes >= 2 => Op::Migrate {
                    rank: rng.range(0, ranks as u64 - 1) as u32,
                },
                80..=89 => Op::Restart,
                90..=94 if last => Op::Command {
                    term: true,
                    stop: false,
                },
                _ => Op::Checkpoint,
            };
            ops.push(op);
        }
        let faults = Faults::pick(opts.faults, nodes, rng);
        Self {
            seed,
            nodes,
            ranks,
            ops,
            faults,
            mutation: opts.mutation,
        }
    }
}
