//! `snapc-sim`: sweeps of seeds, replays and determinism checks of the
//! deterministic simulation (see the crate's documentation).

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use snapc_sim::{FaultLevel, Mutation, Options, RunResult, run_seed};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "snapc-sim",
    about = "Deterministic simulation of snapc jobs with injected faults"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Shape {
    /// Ranks in the job (default: from the seed, 1 to 12).
    #[arg(long)]
    ranks: Option<usize>,
    /// Nodes, one local coordinator each (default: from the seed, 1 to 4).
    #[arg(long)]
    nodes: Option<usize>,
    /// Fault level: none, light (1) or heavy (2).
    #[arg(long, default_value = "none", value_parser = parse_level)]
    faults: FaultLevel,
    /// Operations per run (default: from the seed, 1 to 6).
    #[arg(long)]
    ops: Option<usize>,
    /// A defect put into the simulated adapter on purpose (tests the
    /// checker): skip-unlink, forge-finished, run-while-prepared.
    #[arg(long, default_value = "none", value_parser = parse_mutation, hide = true)]
    mutation: Mutation,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a range of seeds in parallel and checks every invariant.
    Run {
        /// Seeds, `A..B` (B excluded) or one seed.
        #[arg(long, value_parser = parse_range)]
        seeds: (u64, u64),
        #[command(flatten)]
        shape: Shape,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Run each seed twice and compare the trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Runs one seed and prints its outcome (and trace).
    Replay {
        /// The seed.
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        shape: Shape,
        /// Print every event.
        #[arg(long)]
        trace: bool,
        /// Run it twice and compare the trace hashes.
        #[arg(long)]
        check_determinism: bool,
    },
}

fn parse_level(s: &str) -> Result<FaultLevel, String> {
    FaultLevel::parse(s).ok_or_else(|| format!("unknown fault level {s:?} (none, light, heavy)"))
}

fn parse_mutation(s: &str) -> Result<Mutation, String> {
    Mutation::parse(s).ok_or_else(|| format!("unknown mutation {s:?}"))
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let num = |x: &str| x.trim().parse::<u64>().map_err(|e| format!("{x:?}: {e}"));
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b <= a {
                return Err(format!("empty range {s}"));
            }
            Ok((a, b))
        }
        None => num(s).map(|a| (a, a + 1)),
    }
}

fn options(shape: &Shape, trace: bool) -> Options {
    Options {
        ranks: shape.ranks,
        nodes: shape.nodes,
        faults: shape.faults,
        ops: shape.ops,
        mutation: shape.mutation,
        trace,
    }
}

/// The command line that replays `seed` with the same shape.
fn replay_command(seed: u64, shape: &Shape) -> String {
    let mut c = format!("snapc-sim replay --seed {seed}");
    if let Some(r) = shape.ranks {
        c += &format!(" --ranks {r}");
    }
    if let Some(n) = shape.nodes {
        c += &format!(" --nodes {n}");
    }
    if shape.faults != FaultLevel::None {
        c += &format!(" --faults {}", level_name(shape.faults));
    }
    if let Some(o) = shape.ops {
        c += &format!(" --ops {o}");
    }
    if shape.mutation != Mutation::None {
        c += &format!(" --mutation {}", shape.mutation.name());
    }
    c + " --trace"
}

fn level_name(l: FaultLevel) -> &'static str {
    match l {
        FaultLevel::None => "none",
        FaultLevel::Light => "light",
        FaultLevel::Heavy => "heavy",
    }
}

/// The log filter when neither `SNAPC_LOG` nor `RUST_LOG` is set: the
/// simulator's warnings, and the core's errors only (its warnings answer
/// the faults a simulation injects on purpose, thousands per sweep).
/// `SNAPC_LOG=snapc_core=debug snapc-sim replay --seed S` prints the
/// machines' step-by-step trace of one seed.
const DEFAULT_LOG: &str = "warn,snapc_core=error";

fn init_log() {
    let spec = ["SNAPC_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_LOG.to_string());
    let _ = env_logger::Builder::new()
        .parse_filters(&spec)
        .format_timestamp_millis()
        .try_init();
}

fn main() -> ExitCode {
    init_log();
    match Cli::parse().cmd {
        Cmd::Run {
            seeds,
            shape,
            json,
            check_determinism,
            quiet,
        } => run(seeds, &shape, json, check_determinism, quiet),
        Cmd::Replay {
            seed,
            shape,
            trace,
            check_determinism,
        } => replay(seed, &shape, trace, check_determinism),
    }
}

struct SeedOutcome {
    result: RunResult,
    nondeterministic: Option<(u64, u64)>,
}

fn run(seeds: (u64, u64), shape: &Shape, json: bool, twice: bool, quiet: bool) -> ExitCode {
    let opts = options(shape, false);
    let n = seeds.1 - seeds.0;
    let bar = if quiet || json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {elapsed} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut outcomes: Vec<SeedOutcome> = (seeds.0..seeds.1)
        .into_par_iter()
        .map(|seed| {
            let result = run_seed(seed, &opts);
            let nondeterministic = if twice {
                let again = run_seed(seed, &opts);
                (again.trace_hash != result.trace_hash)
                    .then_some((result.trace_hash, again.trace_hash))
            } else {
                None
            };
            if !result.violations.is_empty() {
                bar.set_message(format!("violation at seed {seed}"));
            }
            bar.inc(1);
            SeedOutcome {
                result,
                nondeterministic,
            }
        })
        .collect();
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    outcomes.sort_by_key(|o| o.result.seed);
    let events: u64 =
        outcomes.iter().map(|o| o.result.events).sum::<u64>() * if twice { 2 } else { 1 };
    let ops: u64 = outcomes.iter().map(|o| o.result.operations).sum();
    let ok: u64 = outcomes.iter().map(|o| o.result.ops_ok).sum();
    let failed: u64 = outcomes.iter().map(|o| o.result.ops_failed).sum();
    let established: u64 = outcomes.iter().map(|o| o.result.established).sum();
    let sim: u64 = outcomes.iter().map(|o| o.result.sim_micros).sum();
    let bad: Vec<&SeedOutcome> = outcomes
        .iter()
        .filter(|o| !o.result.violations.is_empty() || o.nondeterministic.is_some())
        .collect();
    let violations: usize = outcomes
        .iter()
        .map(|o| o.result.violations.len())
        .sum::<usize>()
        + outcomes
            .iter()
            .filter(|o| o.nondeterministic.is_some())
            .count();
    let eps = events as f64 / wall.max(1e-9);
    if json {
        let bad_json: Vec<String> = bad
            .iter()
            .map(|o| {
                format!(
                    "{{\"seed\":{},\"violations\":[{}],\"nondeterministic\":{},\"replay\":\"{}\"}}",
                    o.result.seed,
                    o.result
                        .violations
                        .iter()
                        .map(|v| format!(
                            "{{\"at_us\":{},\"kind\":\"{}\",\"detail\":{:?}}}",
                            v.at, v.kind, v.detail
                        ))
                        .collect::<Vec<_>>()
                        .join(","),
                    o.nondeterministic.is_some(),
                    replay_command(o.result.seed, shape)
                )
            })
            .collect();
        println!(
            "{{\"seeds\":{n},\"first\":{},\"operations\":{ops},\"gc_ops_ok\":{ok},\"gc_ops_failed\":{failed},\"established\":{established},\"events\":{events},\"simulated_seconds\":{:.3},\"wall_seconds\":{wall:.3},\"events_per_second\":{eps:.0},\"violations\":{violations},\"failing\":[{}]}}",
            seeds.0,
            sim as f64 / 1e6,
            bad_json.join(",")
        );
    } else {
        println!("seeds:           {n} ({}..{})", seeds.0, seeds.1);
        println!(
            "operations:      {ops} (GC operations ok {ok}, failed {failed}; snapshots established {established})"
        );
        println!("events:          {events}");
        println!("simulated time:  {:.1} h", sim as f64 / 3.6e9);
        println!("wall time:       {wall:.2} s");
        println!("events/s:        {eps:.0}");
        println!("violations:      {violations}");
        for o in bad.iter().take(10) {
            let seed = o.result.seed;
            for v in &o.result.violations {
                println!("  seed {seed}: [{}] at {} us: {}", v.kind, v.at, v.detail);
            }
            if let Some((a, b)) = o.nondeterministic {
                println!("  seed {seed}: nondeterministic trace: {a:016x} then {b:016x}");
            }
            println!("  replay: {}", replay_command(seed, shape));
        }
    }
    if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        if json {
            for o in bad.iter().take(1) {
                eprintln!(
                    "violation at seed {}; replay: {}",
                    o.result.seed,
                    replay_command(o.result.seed, shape)
                );
            }
        }
        ExitCode::FAILURE
    }
}

fn replay(seed: u64, shape: &Shape, trace: bool, twice: bool) -> ExitCode {
    let opts = options(shape, trace);
    let started = Instant::now();
    let r = run_seed(seed, &opts);
    let wall = started.elapsed().as_secs_f64();
    for l in &r.trace {
        println!("{l}");
    }
    println!("scenario: {}", r.scenario);
    // The wall time goes to stderr: stdout is identical from run to run.
    eprintln!("wall time: {wall:.3} s");
    println!(
        "seed {seed}: {} nodes, {} ranks, {} operations (GC ok {}, failed {}), {} established, {} events, {:.3} s simulated, trace {:016x}",
        r.nodes,
        r.ranks,
        r.operations,
        r.ops_ok,
        r.ops_failed,
        r.established,
        r.events,
        r.sim_micros as f64 / 1e6,
        r.trace_hash
    );
    let mut ok = r.violations.is_empty();
    for v in &r.violations {
        println!("violation [{}] at {} us: {}", v.kind, v.at, v.detail);
    }
    if twice {
        let again = run_seed(seed, &opts);
        if again.trace_hash != r.trace_hash || again.trace != r.trace {
            println!(
                "nondeterministic: {:016x} then {:016x}",
                r.trace_hash, again.trace_hash
            );
            ok = false;
        } else {
            println!("deterministic: both runs {:016x}", r.trace_hash);
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
