//! `snapc-bench`: measures snapc side by side with its references in one run
//! and writes BENCHMARKS.md at the workspace root.
//!
//! ```text
//! cargo run --release -p snapc-bench
//! ```
//!
//! Sections: the codec against Open MPI's `opal_dss` (built from
//! conformance/ompi_bench.c against Debian's libopen-pal); the idle cost of
//! `progress()`; one no-op checkpoint through real FIFOs against the floor
//! of the system work it needs ([`handshake`], pipes on tmpfs and on disk);
//! coordination time for 1 to 128 processes and the simulator's cost
//! ([`scale`]); the size of the machines and the resident size of an
//! application with and without snapc ([`memory`]); libsnapc's sizes and
//! its safe point called from C ([`capi`]); jobs across nodes: the
//! checkpoint time of 1 to 3 nodes on the Slurm test cluster and the
//! coordinator's cost per node with many local agents ([`multinode`]).
//! Timings are medians of
//! batches or percentiles of rounds; ratios compare figures taken in this
//! one run.
//!
//! The processes the bench measures are this executable run again in a role
//! ([`child`]). `--only codec,idle,handshake,scale,multinode,memory,capi` runs some sections
//! and prints them without writing BENCHMARKS.md.

mod capi;
mod child;
mod codec;
mod datapath;
mod handshake;
mod load;
mod memory;
mod multinode;
mod scale;
mod stats;

use load::{Goal, Mode};
use snapc_core::app::{AppCoordinator, CheckpointResult};
use snapc_core::global::{GlobalCoordinator, NodeSlot};
use snapc_core::local::{LocalCoordinator, ProcessSlot};
use snapc_posix::app::{Config, Hooks, Snapc, Snapshot};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

struct Idle;

impl Hooks for Idle {
    fn checkpoint(&mut self, _: &Snapshot) -> CheckpointResult {
        CheckpointResult::Continue
    }

    fn restart(&mut self, _: &Path) -> Result<(), String> {
        Ok(())
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

fn main() -> std::process::ExitCode {
    // snapc's warnings (SNAPC_LOG for more) in the bench and its children.
    snapc_runtime::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = child::dispatch(&args) {
        return code;
    }
    // `--only a,b` runs only those sections and prints them without writing
    // BENCHMARKS.md (for working on one section).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_string).collect());
    let want = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    // `--quiet-only`: no loaded runs (for working on one section).
    let modes: &[Mode] = if args.iter().any(|a| a == "--quiet-only") {
        &[Mode::Quiet]
    } else if args.iter().any(|a| a == "--loaded-only") {
        &[Mode::Loaded]
    } else {
        &[Mode::Quiet, Mode::Loaded]
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Without `..`: a snapshot path is named without it.
    let root = root.canonicalize().unwrap_or(root);
    let scratch = tempfile::tempdir().expect("temporary directory");
    let load_before = load::loadavg();
    let started = std::time::Instant::now();
    let mut goals: Vec<Goal> = Vec::new();
    let mut md = String::new();

    if want("codec") {
        // ---- codec ----
        eprintln!("codec...");
        let rows = match codec::run(scratch.path()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("snapc-bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        md.push_str(&codec::section(&rows));
        // The same measurement beside the load, for the summary.
        let worst = smallest_codec_ratio(&rows);
        let mut values: Vec<(Mode, f64)> = worst.map(|w| (Mode::Quiet, w)).into_iter().collect();
        if modes.contains(&Mode::Loaded) {
            eprintln!("codec, loaded...");
            let loaded = load::Load::start().and_then(|_load| codec::run(scratch.path()));
            match loaded.map(|rows| smallest_codec_ratio(&rows)) {
                Ok(Some(w)) => {
                    let _ = writeln!(md, "Loaded run: smallest ratio {w:.0}x.\n");
                    values.push((Mode::Loaded, w));
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("snapc-bench: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        if !values.is_empty() {
            goals.push(Goal::ratio(
                "codec, smallest ratio to opal_dss over every message",
                "at least 20x",
                &values,
                |v| v >= 20.0,
            ));
        }
    }
    if want("idle") {
        // ---- idle cost ----
        eprintln!("progress()...");
        let config = Config {
            pipe_dir: Some(scratch.path().join("pipes")),
            store: scratch.path().join("store"),
            ..Config::default()
        };
        let mut snapc = Snapc::start(config, Idle).expect("start snapc");
        let progress_ns = codec::median_ns(9, 20_000_000, || {
            // Consumed as an application's `if let Some(..)` does: only whether
            // something happened. (Moving the whole `Option<Outcome>` through
            // `black_box` costs about 20 ns of copying that real callers do not pay.)
            black_box(black_box(&mut snapc).progress().is_none());
        });
        drop(snapc);
        let flag = AtomicU8::new(0);
        let load_ns = codec::median_ns(9, 20_000_000, || {
            black_box(black_box(&flag).load(Ordering::Acquire));
        });
        let verdict = if progress_ns < 5.0 { "met" } else { "missed" };
        goals.push(Goal {
            figure: "`progress()` with nothing pending".into(),
            goal: "under 5 ns".into(),
            quiet: Some((format!("{progress_ns:.2} ns"), progress_ns < 5.0)),
            loaded: None,
            agreement: None,
        });
        let _ = writeln!(md, "## Idle cost: `progress()` with nothing pending\n");
        let _ = writeln!(
            md,
            "| call | ns per call |\n|---|---:|\n| `Snapc::progress()`, no request pending | {progress_ns:.2} |\n| a bare atomic load, for scale | {load_ns:.2} |\n\nGoal: under 5 ns ({verdict}).\n"
        );
    }
    if want("handshake") {
        eprintln!("handshake...");
        match handshake::section(&mut md, &root, modes) {
            Ok(g) => goals.extend(g),
            Err(e) => {
                eprintln!("snapc-bench: handshake: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if want("scale") {
        eprintln!("scale...");
        match scale::section(&mut md, modes) {
            Ok(g) => goals.extend(g),
            Err(e) => {
                eprintln!("snapc-bench: scale: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if want("datapath") {
        eprintln!("data path...");
        match datapath::section(&mut md, &root, modes) {
            Ok(g) => goals.extend(g),
            Err(e) => {
                eprintln!("snapc-bench: data path: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if want("multinode") {
        eprintln!("multinode...");
        if let Err(e) = multinode::section(&mut md) {
            eprintln!("snapc-bench: multinode: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    if want("memory") {
        // ---- memory ----
        use std::mem::size_of;
        let _ = writeln!(md, "## Memory\n");
        type Lc = LocalCoordinator<&'static mut [ProcessSlot]>;
        type Gc<const M: usize> =
            GlobalCoordinator<&'static [&'static str], &'static mut [NodeSlot], M>;
        let lc = |n: usize| size_of::<Lc>() + n * ProcessSlot::SIZE;
        let gc = |nodes: usize| size_of::<Gc<8>>() + nodes * NodeSlot::SIZE;
        let _ = writeln!(
            md,
            "snapc-core allocates nothing: each machine is one value of fixed size plus, for the \
             local and global coordinators, the caller's storage for as many processes or nodes \
             as the caller chooses (x86_64).\n\n| machine | bytes |\n|---|---:|\n\
         | `AppCoordinator` (one per process) | {} |\n\
         | `LocalCoordinator`, 8 processes | {} |\n| `LocalCoordinator`, 128 processes | {} |\n\
         | `LocalCoordinator`, 1,000 processes | {} |\n\
         | `GlobalCoordinator` (M = 8), 4 nodes | {} |\n| `GlobalCoordinator` (M = 8), 64 nodes | {} |\n",
            size_of::<AppCoordinator<'static>>(),
            lc(8),
            lc(128),
            lc(1000),
            gc(4),
            gc(64),
        );

        if let Err(e) = memory::section(&mut md) {
            eprintln!("snapc-bench: memory: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    if want("capi") {
        eprintln!("libsnapc...");
        if let Err(e) = capi::section(&mut md, &root, scratch.path()) {
            eprintln!("snapc-bench: capi: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let md = header(&goals, load_before, load::loadavg(), started.elapsed()) + &md;
    if only.is_some() || modes.len() == 1 {
        print!("{md}");
        return std::process::ExitCode::SUCCESS;
    }
    let path = root.join("BENCHMARKS.md");
    if let Err(e) = std::fs::write(&path, &md) {
        eprintln!("snapc-bench: writing {}: {e}", path.display());
        return std::process::ExitCode::FAILURE;
    }
    print!("{md}");
    eprintln!("wrote {}", path.display());
    std::process::ExitCode::SUCCESS
}

/// The page's beginning: how it was made, the machine and its load, and the
/// summary of every goal.
fn header(goals: &[Goal], before: [f64; 3], after: [f64; 3], took: std::time::Duration) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# snapc benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo run --release -p snapc-bench` (do not edit by hand). Machine: {}. Every figure below \
         comes from one run of that command; ratios compare figures of the same run. Timings are medians of batches \
         or percentiles of rounds, as each section says. The machine is shared, so absolute numbers move between \
         runs; the ratios are what to read.\n",
        machine()
    );
    let _ = writeln!(
        md,
        "The handshake, scale and data-path sections run twice: **quiet** (the machine as it is) and **loaded** \
         (beside a CPU-bound load the bench starts itself: one busy process per core, at the bench's own priority, \
         for the whole of that run). A ratio holds under load when the loaded run's is within {:.0}% of the quiet \
         run's. Load average (1, 5, 15 min) when the run began: {:.2}, {:.2}, {:.2}; when it ended: {:.2}, {:.2}, \
         {:.2}{}.\n",
        load::AGREEMENT * 100.0,
        before[0],
        before[1],
        before[2],
        after[0],
        after[1],
        after[2],
        if before[0] > 1.5 {
            " (above 1.5 at the start: the \"quiet\" run shared the machine with other work)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "To run it: `cargo run --release -p snapc-bench` (it writes this file; this run took {:.1} minutes). \
         `-- --only codec,idle,handshake,scale,datapath,memory` runs some sections and prints them instead, \
         `-- --quiet-only` (or `--loaded-only`) runs one of the two; `SNAPC_BENCH_ROUNDS`, `SNAPC_BENCH_SIZES`, \
         `SNAPC_BENCH_DATA_MIB` and `SNAPC_BENCH_DATA_ROUNDS` shrink the handshake rounds, the scale sizes and \
         the data path for a quick look. The data path writes {} GiB per round on the disk under target/.\n",
        took.as_secs_f64() / 60.0,
        datapath::total_bytes() >> 30
    );
    let _ = writeln!(md, "## Summary\n\n{}", load::summary(goals));
    md
}

/// The smallest of the codec rows' ratios to opal_dss (`None` without
/// Open MPI's figures).
fn smallest_codec_ratio(rows: &[codec::Row]) -> Option<f64> {
    rows.iter()
        .filter_map(|r| {
            let (p, u) = r.ompi?;
            Some((p / r.encode_ns).min(u / r.decode_ns))
        })
        .reduce(f64::min)
}
