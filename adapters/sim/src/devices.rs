//! The simulated devices. Each kind is a trait with a plain implementation
//! (what a healthy machine does) and a fault-injecting decorator wrapping
//! it; [`Devices::new`] builds the plain ones and wraps only those whose
//! faults the scenario enables, so a run without faults takes the same code
//! path through the world as one with them. Each call names what it is
//! about (the rank, the route, the step), which the random devices ignore
//! and scripted ones ([`crate::script`]) answer from their script.

use crate::rng::Rng;
use crate::scenario::Faults;
use snapc_core::app::{self, CheckpointResult, FrameKind, PrepareResult};
use snapc_core::time::Duration;

/// When a device answers, if ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<T> {
    /// After this long, with this.
    After(Duration, T),
    /// Never (a hang); the machine's deadline must end the wait.
    Never,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

// ---- the message transport ----

/// Where a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A rank's REQUEST_OP to the global coordinator.
    RankToGc(usize),
    /// An answer of the global coordinator to a rank.
    GcToRank(usize),
    /// ORTED_STATE from a local coordinator.
    LcToGc(usize),
    /// JOB_STATE to a local coordinator.
    GcToLc(usize),
    /// LOCAL_FINISH or LOCAL_UPDATE from a rank to its node daemon.
    RankToLc(usize),
}

/// The transport of DSS messages between the coordinators.
pub trait Link {
    /// When each copy of one message on `route` arrives, from now: none is
    /// a loss, two a duplicate.
    fn deliveries(&mut self, rng: &mut Rng, route: Route) -> Vec<Duration>;
}

/// A healthy network: one copy, after a small latency.
#[derive(Debug, Clone, Copy)]
pub struct Network;

impl Link for Network {
    fn deliveries(&mut self, rng: &mut Rng, _: Route) -> Vec<Duration> {
        vec![rng.duration(us(20), us(500))]
    }
}

/// Losses, duplicates and extra delays (which reorder messages).
pub struct FaultyLink<L> {
    /// The decorated link.
    pub inner: L,
    /// Loss probability.
    pub drop: f64,
    /// Duplicate probability.
    pub duplicate: f64,
    /// Extra delay, up to this many ms.
    pub jitter_ms: u64,
}

impl<L: Link> Link for FaultyLink<L> {
    fn deliveries(&mut self, rng: &mut Rng, route: Route) -> Vec<Duration> {
        let mut out = self.inner.deliveries(rng, route);
        if rng.chance(self.drop) {
            return Vec::new();
        }
        if rng.chance(self.duplicate) {
            let d = out.first().copied().unwrap_or(Duration::ZERO);
            out.push(d + rng.duration(Duration::ZERO, ms(50)));
        }
        if self.jitter_ms > 0 {
            for d in &mut out {
                *d += rng.duration(Duration::ZERO, ms(self.jitter_ms));
            }
        }
        out
    }
}

// ---- FIFO writes ----

/// How one FIFO write reaches the reader.
pub trait PipeDevice {
    /// The parts of a write of `len` bytes: (delay after the previous part,
    /// bytes). The parts add up to `len`.
    fn parts(&mut self, rng: &mut Rng, len: usize) -> Vec<(Duration, usize)>;
}

/// A healthy pipe: the whole write at once.
#[derive(Debug, Clone, Copy)]
pub struct Pipe;

impl PipeDevice for Pipe {
    fn parts(&mut self, rng: &mut Rng, len: usize) -> Vec<(Duration, usize)> {
        vec![(rng.duration(us(5), us(50)), len)]
    }
}

/// Partial writes and slow peers.
pub struct FaultyPipe<P> {
    /// The decorated pipe.
    pub inner: P,
    /// Probability that a write is cut into parts.
    pub partial: f64,
    /// Each part waits up to this many ms more.
    pub slow_ms: u64,
}

impl<P: PipeDevice> PipeDevice for FaultyPipe<P> {
    fn parts(&mut self, rng: &mut Rng, len: usize) -> Vec<(Duration, usize)> {
        let mut parts = self.inner.parts(rng, len);
        if len > 1 && rng.chance(self.partial) {
            let mut rest = len;
            parts.clear();
            while rest > 0 {
                let n = rng.range(1, rest as u64) as usize;
                parts.push((rng.duration(us(1), ms(2)), n));
                rest -= n;
            }
        }
        if self.slow_ms > 0 {
            for p in &mut parts {
                p.0 += rng.duration(Duration::ZERO, ms(self.slow_ms));
            }
        }
        parts
    }
}

// ---- signals ----

/// The checkpoint signal's delivery to a process.
pub trait SignalDevice {
    /// When each copy arrives, from now.
    fn deliveries(&mut self, rng: &mut Rng) -> Vec<Duration>;
}

/// `kill(pid, SIGUSR1)`: one signal, at once.
#[derive(Debug, Clone, Copy)]
pub struct Kill;

impl SignalDevice for Kill {
    fn deliveries(&mut self, rng: &mut Rng) -> Vec<Duration> {
        vec![rng.duration(us(1), us(100))]
    }
}

/// Signal storms: several copies over a few milliseconds.
pub struct Stormy<S> {
    /// The decorated device.
    pub inner: S,
    /// Probability of a storm.
    pub storm: f64,
}

impl<S: SignalDevice> SignalDevice for Stormy<S> {
    fn deliveries(&mut self, rng: &mut Rng) -> Vec<Duration> {
        let mut out = self.inner.deliveries(rng);
        if rng.chance(self.storm) {
            for _ in 0..rng.range(1, 8) {
                out.push(rng.duration(us(1), ms(5)));
            }
        }
        out
    }
}

// ---- the application ----

/// A step of the handshake at which a process may vanish (just before it
/// carries it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating and opening its FIFOs.
    Open,
    /// Reading a frame.
    Read(FrameKind),
    /// Writing a frame.
    Write(FrameKind),
    /// The prepare hook.
    Prepare,
    /// The checkpointer.
    Checkpoint,
    /// The recover hook.
    Recover,
}

impl Step {
    /// The step an action of the app coordinator is, if any.
    pub fn of(a: &app::Action) -> Option<Self> {
        use app::Action as A;
        Some(match a {
            A::OpenChannel { .. } => Self::Open,
            A::Read { frame, .. } => Self::Read(*frame),
            A::Write { frame, .. } => Self::Write(*frame),
            A::Prepare => Self::Prepare,
            A::Checkpoint { .. } => Self::Checkpoint,
            A::Recover { .. } => Self::Recover,
            _ => return None,
        })
    }
}

/// The application behind the hooks of rank `v`.
pub trait Application {
    /// From the signal to the next progress point.
    fn progress_delay(&mut self, rng: &mut Rng, v: usize) -> Duration;
    /// From a prepare that answered "not now" to the next progress point.
    fn not_now_delay(&mut self, rng: &mut Rng, v: usize) -> Duration;
    /// The prepare hook.
    fn prepare(&mut self, rng: &mut Rng, v: usize) -> Answer<PrepareResult>;
    /// The checkpointer; a `Restart` with pid 0 lets the world pick one.
    fn checkpoint(&mut self, rng: &mut Rng, v: usize) -> Answer<CheckpointResult>;
    /// The recover hook.
    fn recover(&mut self, rng: &mut Rng, v: usize) -> Answer<bool>;
    /// Whether the process crashes before this handshake step.
    fn crashes(&mut self, rng: &mut Rng, v: usize, step: Step) -> bool;
}

/// A well-behaved application.
#[derive(Debug, Clone, Copy)]
pub struct WellBehaved;

impl Application for WellBehaved {
    fn progress_delay(&mut self, rng: &mut Rng, _: usize) -> Duration {
        rng.duration(us(100), ms(50))
    }
    fn not_now_delay(&mut self, rng: &mut Rng, _: usize) -> Duration {
        rng.duration(ms(10), Duration::from_secs(30))
    }
    fn prepare(&mut self, rng: &mut Rng, _: usize) -> Answer<PrepareResult> {
        Answer::After(rng.duration(us(100), ms(20)), PrepareResult::Ready)
    }
    fn checkpoint(&mut self, rng: &mut Rng, _: usize) -> Answer<CheckpointResult> {
        Answer::After(rng.duration(ms(1), ms(200)), CheckpointResult::Continue)
    }
    fn recover(&mut self, rng: &mut Rng, _: usize) -> Answer<bool> {
        Answer::After(rng.duration(us(100), ms(20)), true)
    }
    fn crashes(&mut self, _: &mut Rng, _: usize, _: Step) -> bool {
        false
    }
}

/// Stalls, failures, slow and hung hooks, restarts and crashes.
pub struct FaultyApplication<A> {
    /// The decorated application.
    pub inner: A,
    /// The rates.
    pub faults: Faults,
}

impl<A: Application> FaultyApplication<A> {
    fn slow<T>(&self, rng: &mut Rng, a: Answer<T>) -> Answer<T> {
        if rng.chance(self.faults.hang) {
            return Answer::Never;
        }
        match a {
            Answer::After(d, t) if rng.chance(self.faults.slow_hook) => Answer::After(
                d + rng.duration(Duration::ZERO, Duration::from_secs(7200)),
                t,
            ),
            a => a,
        }
    }
}

impl<A: Application> Application for FaultyApplication<A> {
    fn progress_delay(&mut self, rng: &mut Rng, v: usize) -> Duration {
        let d = self.inner.progress_delay(rng, v);
        if rng.chance(self.faults.slow_hook) {
            // A process busy far from its progress point: past the LC's wait.
            d + rng.duration(Duration::ZERO, Duration::from_secs(60))
        } else {
            d
        }
    }
    fn not_now_delay(&mut self, rng: &mut Rng, v: usize) -> Duration {
        self.inner.not_now_delay(rng, v)
    }
    fn prepare(&mut self, rng: &mut Rng, v: usize) -> Answer<PrepareResult> {
        let a = match self.inner.prepare(rng, v) {
            Answer::After(d, _) if rng.chance(self.faults.stall) => {
                Answer::After(d, PrepareResult::NotNow)
            }
            Answer::After(d, _) if rng.chance(self.faults.prepare_fail) => {
                Answer::After(d, PrepareResult::Failed)
            }
            a => a,
        };
        self.slow(rng, a)
    }
    fn checkpoint(&mut self, rng: &mut Rng, v: usize) -> Answer<CheckpointResult> {
        let a = match self.inner.checkpoint(rng, v) {
            Answer::After(d, _) if rng.chance(self.faults.ckpt_error) => {
                Answer::After(d, CheckpointResult::Error)
            }
            Answer::After(d, _) if rng.chance(self.faults.ckpt_term) => {
                Answer::After(d, CheckpointResult::Term)
            }
            Answer::After(d, _) if rng.chance(self.faults.ckpt_restart) => {
                Answer::After(d, CheckpointResult::Restart { pid: 0 })
            }
            a => a,
        };
        self.slow(rng, a)
    }
    fn recover(&mut self, rng: &mut Rng, v: usize) -> Answer<bool> {
        let a = self.inner.recover(rng, v);
        self.slow(rng, a)
    }
    fn crashes(&mut self, rng: &mut Rng, v: usize, step: Step) -> bool {
        self.inner.crashes(rng, v, step) || rng.chance(self.faults.crash)
    }
}

// ---- stable storage ----

/// An sstore call that the application waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageCall {
    /// Where the snapshot goes.
    Location,
    /// The snapshot made durable.
    Sync,
}

/// Stable storage (the answered sstore calls: location, sync).
pub trait Storage {
    /// One call of rank `v`.
    fn call(&mut self, rng: &mut Rng, v: usize, call: StorageCall) -> Answer<bool>;
}

/// A healthy store.
#[derive(Debug, Clone, Copy)]
pub struct Disk;

impl Storage for Disk {
    fn call(&mut self, rng: &mut Rng, _: usize, _: StorageCall) -> Answer<bool> {
        Answer::After(rng.duration(us(50), ms(30)), true)
    }
}

/// Failing, slow and hung storage calls.
pub struct FlakyDisk<S> {
    /// The decorated store.
    pub inner: S,
    /// Failure probability.
    pub fail: f64,
    /// Hang probability.
    pub hang: f64,
    /// Slow-call probability (up to two hours).
    pub slow: f64,
}

impl<S: Storage> Storage for FlakyDisk<S> {
    fn call(&mut self, rng: &mut Rng, v: usize, call: StorageCall) -> Answer<bool> {
        match self.inner.call(rng, v, call) {
            _ if rng.chance(self.hang) => Answer::Never,
            Answer::After(d, _) if rng.chance(self.fail) => Answer::After(d, false),
            Answer::After(d, ok) if rng.chance(self.slow) => Answer::After(
                d + rng.duration(Duration::ZERO, Duration::from_secs(7200)),
                ok,
            ),
            a => a,
        }
    }
}

// ---- the runtime ----

/// What the runtime is asked to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeOp {
    /// A migration.
    Migrate,
    /// A restart.
    Restart,
}

/// The runtime's part: stopping processes, terminating them, migrations,
/// restarts.
pub trait Runtime {
    /// Whether and when rank `v` reports stopped (`stop`).
    fn stopped(&mut self, rng: &mut Rng, v: usize) -> Answer<()>;
    /// Whether and when a migration or restart is reported done, and how.
    fn done(&mut self, rng: &mut Rng, op: RuntimeOp) -> Answer<bool>;
    /// Whether and when the runtime ends rank `v`, which awaits its
    /// termination.
    fn terminates(&mut self, rng: &mut Rng, v: usize) -> Answer<()>;
}

/// A healthy runtime.
#[derive(Debug, Clone, Copy)]
pub struct Launcher;

impl Runtime for Launcher {
    fn stopped(&mut self, rng: &mut Rng, _: usize) -> Answer<()> {
        Answer::After(rng.duration(ms(1), ms(20)), ())
    }
    fn done(&mut self, rng: &mut Rng, _: RuntimeOp) -> Answer<bool> {
        Answer::After(rng.duration(ms(100), Duration::from_secs(2)), true)
    }
    fn terminates(&mut self, _: &mut Rng, _: usize) -> Answer<()> {
        Answer::After(ms(100), ())
    }
}

/// A runtime that fails, or never answers.
pub struct FaultyRuntime<R> {
    /// The decorated runtime.
    pub inner: R,
    /// Probability of each misbehaviour.
    pub fail: f64,
}

impl<R: Runtime> Runtime for FaultyRuntime<R> {
    fn stopped(&mut self, rng: &mut Rng, v: usize) -> Answer<()> {
        match self.inner.stopped(rng, v) {
            _ if rng.chance(self.fail) => Answer::Never,
            a => a,
        }
    }
    fn terminates(&mut self, rng: &mut Rng, v: usize) -> Answer<()> {
        self.inner.terminates(rng, v)
    }
    fn done(&mut self, rng: &mut Rng, op: RuntimeOp) -> Answer<bool> {
        match self.inner.done(rng, op) {
            _ if rng.chance(self.fail / 2.0) => Answer::Never,
            Answer::After(d, _) if rng.chance(self.fail) => Answer::After(d, false),
            a => a,
        }
    }
}

/// Every device of a world.
pub struct Devices {
    /// GC with LCs and ranks.
    pub net: Box<dyn Link + Send>,
    /// Rank to node daemon (a local socket).
    pub local: Box<dyn Link + Send>,
    /// FIFO writes.
    pub pipe: Box<dyn PipeDevice + Send>,
    /// Signals.
    pub signal: Box<dyn SignalDevice + Send>,
    /// The application.
    pub app: Box<dyn Application + Send>,
    /// Stable storage.
    pub disk: Box<dyn Storage + Send>,
    /// The runtime.
    pub runtime: Box<dyn Runtime + Send>,
}

impl Devices {
    /// The plain devices, each wrapped in its fault decorator when the
    /// scenario enables that fault kind.
    pub fn new(f: &Faults) -> Self {
        // The plain device, or the plain device inside its decorator.
        macro_rules! device {
            ($on:expr, $plain:expr, $faulty:ident { $($field:ident: $value:expr),* $(,)? }) => {
                if $on {
                    Box::new($faulty { inner: $plain, $($field: $value),* })
                } else {
                    Box::new($plain)
                }
            };
        }
        let net: Box<dyn Link + Send> = device!(
            f.drop > 0.0 || f.duplicate > 0.0 || f.jitter_ms > 0,
            Network,
            FaultyLink {
                drop: f.drop,
                duplicate: f.duplicate,
                jitter_ms: f.jitter_ms,
            }
        );
        let pipe: Box<dyn PipeDevice + Send> = device!(
            f.partial_write > 0.0 || f.slow_fifo_ms > 0,
            Pipe,
            FaultyPipe {
                partial: f.partial_write,
                slow_ms: f.slow_fifo_ms,
            }
        );
        let signal: Box<dyn SignalDevice + Send> =
            device!(f.storm > 0.0, Kill, Stormy { storm: f.storm });
        let app_faults = f.stall
            + f.prepare_fail
            + f.ckpt_error
            + f.ckpt_term
            + f.ckpt_restart
            + f.slow_hook
            + f.hang
            + f.crash;
        let app: Box<dyn Application + Send> = device!(
            app_faults > 0.0,
            WellBehaved,
            FaultyApplication { faults: *f }
        );
        let disk: Box<dyn Storage + Send> = device!(
            f.sstore_fail + f.hang + f.slow_hook > 0.0,
            Disk,
            FlakyDisk {
                fail: f.sstore_fail,
                hang: f.hang,
                slow: f.slow_hook,
            }
        );
        let runtime: Box<dyn Runtime + Send> = device!(
            f.runtime_fail > 0.0,
            Launcher,
            FaultyRuntime {
                fail: f.runtime_fail,
            }
        );
        Self {
            net,
            local: Box::new(Network),
            pipe,
            signal,
            app,
            disk,
            runtime,
        }
    }
}
