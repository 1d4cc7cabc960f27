//! The `counter` application (the `counter` example, and `snapc counter`
//! for the demo): a small iterative computation that links snapc. It folds a
//! checksum over many steps, calls `progress()` at least every millisecond,
//! saves its state in the checkpoint hook and resumes from it on restart.
//!
//! ```text
//! counter [--run-for SECONDS | --steps N [--pace-us U]] [--request-checkpoint-at STEP]
//!         [--request-restart-at STEP [--restart-seq SEQ]]
//! ```
//!
//! `--run-for` computes for that long (default 5 s). `--steps N` is the
//! deterministic mode: exactly N steps in slices of 2 000 (sleeping
//! `--pace-us` microseconds after each slice, to stretch the run), the
//! checksum seeded with the rank, so that a run restarted from any snapshot
//! ends with the same result as an uninterrupted one.
//! `--request-checkpoint-at STEP` makes rank 0 ask its global coordinator
//! for a checkpoint (an application-initiated request) once it passed STEP.
//! `--request-migrate-at STEP --migrate-rank R` makes rank 0 ask for a
//! migration of rank R to rank 0's node (a MIGRATE entry about a peer,
//! without a host) once it passed STEP.
//! `--request-restart-at STEP` makes rank 0 ask for a restart of the job
//! from snapshot SEQ (`--restart-seq`, default the latest complete one in
//! `$SNAPC_STORE/$SNAPC_JOB`; the handle is that snapshot's reference from
//! its metadata) once it passed STEP; the rank then computes on until the
//! daemon terminates it (or to its end if the restart fails). A run that
//! was itself restarted from a snapshot (`SNAPC_RESTART_DIR`) makes neither
//! request again.
//!
//! The first line of stdout is `pid=<pid>`; each checkpoint prints a
//! `checkpoint ...` line; the last line is `result steps=<n> checksum=<x>`.
//! Configured by the `SNAPC_*` environment (see the README); standalone when
//! no daemon socket is set. `COUNTER_STALL=N` makes the prepare hook answer
//! "not now" N times per checkpoint, to exercise stalls;
//! `COUNTER_CHECKPOINT_MS=N` and `COUNTER_RECOVER_MS=N` make the checkpoint
//! and recover hooks take N ms more, to hold a handshake open.
//! `COUNTER_SLOW=RANK:MS` makes rank RANK's checkpoint hook take MS
//! milliseconds (one slow or hung rank).

use snapc_core::app::{CheckpointResult, Outcome, PrepareResult};
use snapc_core::wire::{CrState, Request};
use snapc_posix::app::{Config, Hooks, Snapc, Snapshot};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The computation's whole state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct State {
    steps: u64,
    checksum: u64,
}

impl State {
    fn step(&mut self) {
        self.steps += 1;
        self.checksum =
            self.checksum.rotate_left(5) ^ self.steps.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // Private, as the snapshot directory it goes into.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(dir.join("state"))?;
        writeln!(f, "{} {}", self.steps, self.checksum)
    }

    fn load(dir: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(dir.join("state")).map_err(|e| e.to_string())?;
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(steps)), Some(Ok(checksum))) => Ok(Self { steps, checksum }),
            _ => Err(format!("malformed state file: {text:?}")),
        }
    }
}

struct Counter {
    state: State,
    /// How long the checkpoint hook takes (`COUNTER_SLOW`).
    slow: Duration,
    stall: u32,
    stalls_left: u32,
    checkpoint_delay: Duration,
    recover_delay: Duration,
}

impl Hooks for Counter {
    fn prepare(&mut self) -> PrepareResult {
        if self.stalls_left > 0 {
            self.stalls_left -= 1;
            return PrepareResult::NotNow;
        }
        self.stalls_left = self.stall;
        PrepareResult::Ready
    }

    fn checkpoint(&mut self, snapshot: &Snapshot) -> CheckpointResult {
        std::thread::sleep(self.checkpoint_delay + self.slow);
        match self.state.save(&snapshot.dir) {
            Ok(()) if snapshot.options.term => CheckpointResult::Term,
            Ok(()) => CheckpointResult::Continue,
            Err(e) => {
                crate::errln!("counter: saving state: {e}");
                CheckpointResult::Error
            }
        }
    }

    fn recover(&mut self, _state: CrState) -> Result<(), String> {
        std::thread::sleep(self.recover_delay);
        Ok(())
    }

    fn restart(&mut self, dir: &Path) -> Result<(), String> {
        self.state = State::load(dir)?;
        Ok(())
    }
}

const SLICE: u64 = 2_000;

/// How long the counter runs.
#[derive(Debug, Clone, Copy)]
enum Mode {
    For(Duration),
    Steps { total: u64, pace: Duration },
}

fn usage() -> ExitCode {
    crate::errln!(
        "usage: counter [--run-for SECONDS | --steps N [--pace-us U]] [--request-checkpoint-at STEP] [--request-restart-at STEP [--restart-seq SEQ]] [--request-migrate-at STEP --migrate-rank R]"
    );
    ExitCode::from(2)
}

/// Runs the counter with `args` (without the program name).
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> ExitCode {
    // An application turns snapc's logs on by installing a logger: this
    // one reads SNAPC_LOG (or RUST_LOG) as the `snapc` command does.
    crate::logging::init();
    let mut args = args.into_iter();
    let mut run_for = Duration::from_secs(5);
    let mut steps: Option<u64> = None;
    let mut pace = Duration::ZERO;
    let mut request_at: Option<u64> = None;
    let mut restart_at: Option<u64> = None;
    let mut restart_seq: Option<u64> = None;
    let mut migrate_at: Option<u64> = None;
    let mut migrate_rank: Option<i32> = None;
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--run-for", Some(v)) => match v.parse::<f64>() {
                Ok(secs) if secs >= 0.0 && secs.is_finite() => {
                    run_for = Duration::from_secs_f64(secs)
                }
                _ => return usage(),
            },
            ("--steps", Some(v)) => match v.parse() {
                Ok(n) => steps = Some(n),
                Err(_) => return usage(),
            },
            ("--pace-us", Some(v)) => match v.parse() {
                Ok(us) => pace = Duration::from_micros(us),
                Err(_) => return usage(),
            },
            ("--request-checkpoint-at", Some(v)) => match v.parse() {
                Ok(n) => request_at = Some(n),
                Err(_) => return usage(),
            },
            ("--request-restart-at", Some(v)) => match v.parse() {
                Ok(n) => restart_at = Some(n),
                Err(_) => return usage(),
            },
            ("--restart-seq", Some(v)) => match v.parse() {
                Ok(n) => restart_seq = Some(n),
                Err(_) => return usage(),
            },
            ("--request-migrate-at", Some(v)) => match v.parse() {
                Ok(n) => migrate_at = Some(n),
                Err(_) => return usage(),
            },
            ("--migrate-rank", Some(v)) => match v.parse() {
                Ok(n) => migrate_rank = Some(n),
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let mode = match steps {
        Some(total) => Mode::Steps { total, pace },
        None => Mode::For(run_for),
    };
    let knob = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let stall = knob("COUNTER_STALL");
    let checkpoint_delay = Duration::from_millis(knob("COUNTER_CHECKPOINT_MS").into());
    let recover_delay = Duration::from_millis(knob("COUNTER_RECOVER_MS").into());
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            crate::errln!("counter: {e}");
            return ExitCode::from(2);
        }
    };
    let leader = config.rank == 0;
    let slow = std::env::var("COUNTER_SLOW")
        .ok()
        .and_then(|v| {
            let (rank, ms) = v.split_once(':')?;
            (rank.parse::<u32>().ok()? == config.rank).then_some(ms.parse::<u64>().ok()?)
        })
        .map_or(Duration::ZERO, Duration::from_millis);
    if config.restart_dir.is_some() {
        // The requests were this job's; a run restarted from a snapshot
        // does not make them again.
        request_at = None;
        restart_at = None;
        migrate_at = None;
    }
    let job_store = std::env::var_os("SNAPC_JOB").map(|j| config.store.join(j));
    let mut restart_requested = false;
    let seed = match mode {
        Mode::Steps { .. } => u64::from(config.rank),
        Mode::For(_) => 0,
    };
    let hooks = Counter {
        state: State {
            steps: 0,
            checksum: seed,
        },
        slow,
        stall,
        stalls_left: stall,
        checkpoint_delay,
        recover_delay,
    };
    let mut snapc = match Snapc::start(config, hooks) {
        Ok(s) => s,
        Err(e) => {
            crate::errln!("counter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "pid={}", std::process::id());
    let _ = writeln!(out, "start steps={}", snapc.hooks().state.steps);
    let _ = out.flush();
    let started = Instant::now();
    loop {
        let slice = match mode {
            Mode::For(d) if started.elapsed() < d => SLICE,
            Mode::Steps { total, .. } if snapc.hooks().state.steps < total => {
                SLICE.min(total - snapc.hooks().state.steps)
            }
            _ => break,
        };
        // A slice of work well under a millisecond between safe points.
        for _ in 0..slice {
            snapc.hooks_mut().state.step();
        }
        if let Mode::Steps { pace, .. } = mode
            && !pace.is_zero()
        {
            std::thread::sleep(pace);
        }
        if let Some(outcome) = snapc.progress() {
            report(&mut out, &outcome);
        }
        if snapc.is_terminating() && !restart_requested {
            let _ = writeln!(out, "terminating after checkpoint");
            break;
        }
        if leader && restart_at.is_some_and(|at| snapc.hooks().state.steps >= at) {
            restart_at = None;
            restart_requested = true;
            let (seq, handle) = restart_target(job_store.as_deref(), restart_seq);
            match snapc.request(Request::Restart {
                seq_num: seq,
                handle: Some(&handle),
            }) {
                Ok(r) => {
                    let _ = writeln!(
                        out,
                        "request restart seq={seq} handle={handle} error={:?} terminating={}",
                        r.error, r.terminating
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "request restart failed: {e}");
                }
            }
            let _ = out.flush();
        }
        if leader && migrate_at.is_some_and(|at| snapc.hooks().state.steps >= at) {
            migrate_at = None;
            let entries = [snapc_core::wire::MigrateEntry {
                vpid: 0,
                host: None,
                vpid_pref: migrate_rank.unwrap_or(0),
                off_node: false,
            }];
            match snapc.request(Request::Migrate(snapc_core::wire::List::Items(&entries))) {
                Ok(r) => {
                    let _ = writeln!(out, "request migrate error={:?}", r.error);
                }
                Err(e) => {
                    let _ = writeln!(out, "request migrate failed: {e}");
                }
            }
            let _ = out.flush();
        }
        if leader && request_at.is_some_and(|at| snapc.hooks().state.steps >= at) {
            request_at = None;
            match snapc.request(Request::Checkpoint) {
                Ok(r) => {
                    let _ = writeln!(
                        out,
                        "request checkpoint error={:?} seq={} reference={}",
                        r.error, r.seq_num, r.reference
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "request checkpoint failed: {e}");
                }
            }
            let _ = out.flush();
        }
    }
    let s = snapc.hooks().state;
    let _ = writeln!(out, "result steps={} checksum={:016x}", s.steps, s.checksum);
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// The snapshot to ask a restart from (`seq`, else the latest complete one
/// in `job_store`) and its reference, from its metadata ("unknown" when it
/// has none: the daemon then refuses the restart).
fn restart_target(job_store: Option<&Path>, seq: Option<u64>) -> (i32, String) {
    let seq = seq.or_else(|| job_store.and_then(crate::snapstore::latest).map(|(s, _)| s));
    let reference = match (job_store, seq) {
        (Some(root), Some(s)) => crate::snapstore::read_metadata(&root.join(s.to_string()))
            .ok()
            .and_then(|m| m.get("reference")?.as_str().map(str::to_string)),
        _ => None,
    };
    (
        seq.and_then(|s| i32::try_from(s).ok()).unwrap_or(0),
        reference.unwrap_or_else(|| "unknown".into()),
    )
}

fn report(out: &mut impl Write, outcome: &Outcome) {
    let _ = match outcome {
        Outcome::Handshake(r) => match r.error {
            None => writeln!(
                out,
                "checkpoint n={} handle={} state={}",
                r.names.n, r.handle, r.state
            ),
            Some(e) => writeln!(out, "checkpoint n={} failed: {e}", r.names.n),
        },
        Outcome::Quiesced { names, handle, .. } => {
            writeln!(out, "quiesced n={} handle={handle}", names.n)
        }
        Outcome::Request(r) => writeln!(out, "request {} error={:?}", r.op, r.error),
        other => writeln!(out, "{other:?}"),
    };
    let _ = out.flush();
}
