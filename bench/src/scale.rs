//! Coordination time against the number of processes on one node, and the
//! simulator's cost per event and for the 10,000-rank job.

use crate::child::Proc;
use crate::stats::{Samples, us};
use snapc_posix::fifo::PipeDir;
use snapc_runtime::direct::{self, DirectRequest};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Processes per direct checkpoint.
pub const SIZES: [usize; 4] = [1, 8, 32, 128];
/// Measured checkpoints per size (after one unmeasured).
pub const ROUNDS: usize = 9;
/// Run-to-run spread of these timings on the bench machine: time ratios
/// within it of the goal count as meeting it.
const NOISE: f64 = 0.10;
/// Seeds of the default simulated shape timed for the cost per event.
pub const SIM_SEEDS: u64 = 300;

struct Row {
    n: usize,
    total: Samples,
}

fn one_size(n: usize, pipes: &PipeDir, store: &str, handle: &mut u32) -> Result<Row, String> {
    let pipes_s = pipes.path().to_string_lossy().into_owned();
    let mut procs = Vec::with_capacity(n);
    for _ in 0..n {
        procs.push(Proc::start(
            "__app",
            &[
                "--pipe-dir",
                &pipes_s,
                "--store",
                store,
                "--nap-us",
                "10000",
            ],
        )?);
    }
    let mut row = Row {
        n,
        total: Samples::default(),
    };
    for round in 0..=ROUNDS {
        *handle += 1;
        let mut req = DirectRequest::new(
            procs.iter().map(Proc::pid).collect(),
            pipes.clone(),
            *handle,
        );
        req.timeout = Duration::from_secs(30);
        let started = Instant::now();
        let results = direct::checkpoint(req).map_err(|e| e.to_string())?;
        let took = started.elapsed();
        if let Some(bad) = results.iter().find(|r| !r.completed()) {
            return Err(format!(
                "{n} processes: pid {} failed: {:?}",
                bad.pid, bad.error
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for p in &mut procs {
            p.handshake_done(deadline)?;
        }
        if round > 0 {
            row.total.push(took);
        }
    }
    Ok(row)
}

/// Runs the scale measurements and writes their section.
pub fn section(md: &mut String) -> Result<(), String> {
    let t = tempfile::tempdir_in("/dev/shm").map_err(|e| e.to_string())?;
    let pipes = PipeDir::open(t.path().join("pipes")).map_err(|e| e.to_string())?;
    let store = t.path().join("store").to_string_lossy().into_owned();
    let mut handle = 0;
    let mut rows = Vec::new();
    for n in SIZES {
        eprintln!("  {n} processes");
        rows.push(one_size(n, &pipes, &store, &mut handle)?);
    }
    let _ = writeln!(md, "## Scale\n");
    let _ = writeln!(
        md,
        "### Processes on one node\n\n\
         One `direct::checkpoint` of N application processes at once (the bench's app, as in the handshake section; pipes \
         and store on tmpfs), timed from the first signal until every process is released and every FIFO removed; \
         the median of {ROUNDS} after one unmeasured. The processes sleep in 10 ms `clock_nanosleep` naps between slices \
         of work of a few microseconds and the signal wakes them, so 128 of them on {} cores measure the coordination, \
         not the scheduler sharing the cores among spinning processes; they still share those cores, and the handshakes \
         of one checkpoint run concurrently.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        md,
        "| processes | total p50 | total min | total max | p50 per process | per process, relative to 1 |\n|---:|---:|---:|---:|---:|---:|"
    );
    let base = rows.first().map_or(f64::NAN, |r| r.total.p50());
    let mut worst: f64 = 0.0;
    for r in &rows {
        let per = r.total.p50() / r.n as f64;
        let rel = per / base;
        worst = worst.max(rel);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {rel:.2} |",
            r.n,
            us(r.total.p50()),
            us(r.total.pct(0.0)),
            us(r.total.pct(100.0)),
            us(per),
        );
    }
    let ratios: Vec<String> = rows
        .windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            format!(
                "{}→{} processes: {:.1}x the processes, {:.2}x the time",
                a.n,
                b.n,
                b.n as f64 / a.n as f64,
                b.total.p50() / a.total.p50()
            )
        })
        .collect();
    // Steps whose time grows more than NOISE beyond the growth in processes.
    let steep: Vec<String> = rows
        .windows(2)
        .filter(|w| {
            w[1].total.p50() / w[0].total.p50() > (1.0 + NOISE) * (w[1].n as f64 / w[0].n as f64)
        })
        .map(|w| {
            format!(
                "{}→{} ({:.2}x the time for {:.0}x the processes)",
                w[0].n,
                w[1].n,
                w[1].total.p50() / w[0].total.p50(),
                w[1].n as f64 / w[0].n as f64
            )
        })
        .collect();
    let steep = if steep.is_empty() {
        String::new()
    } else {
        format!(
            ". The step {} is steeper than linear: the fixed cost of one checkpoint (in the single process's time) \
             absorbs it so far, but it would not at larger N. Not yet explained; candidates are the coordinator's \
             work per wakeup that is linear in the processes (the poll set and pending reads rebuilt at each wait, \
             the machine's scans of its slots) and {} cores shared by the coordinator and 128 applications doing \
             their store steps at once",
            steep.join(", "),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )
    };
    let verdict = if worst <= 1.0 + NOISE {
        format!(
            "Met: the time per process stays within {:.0}% of the single process's (at most {worst:.2}x){steep}",
            NOISE * 100.0
        )
    } else {
        format!(
            "Missed: the time per process reaches {worst:.2}x the single process's, {:.2} times the {:.2}x allowed{steep}",
            worst / (1.0 + NOISE),
            1.0 + NOISE
        )
    };
    let _ = writeln!(
        md,
        "\n{}.\n\nGoal: coordination time growing no worse than linearly in the number of processes, i.e. time per \
         process not above the single process's; taken as within {:.0}% of it, the spread between runs on this \
         machine. {verdict}.\n",
        ratios.join("; "),
        NOISE * 100.0
    );

    // ---- the simulator ----
    eprintln!("  simulator");
    let opts = snapc_sim::Options::default();
    let started = Instant::now();
    let mut events = 0u64;
    let mut ranks = 0usize;
    for seed in 0..SIM_SEEDS {
        let r = snapc_sim::run_seed(seed, &opts);
        if !r.violations.is_empty() {
            return Err(format!("simulator seed {seed}: {:?}", r.violations));
        }
        events += r.events;
        ranks += r.ranks;
    }
    let sweep = started.elapsed();
    let big_opts = snapc_sim::Options {
        ranks: Some(10_000),
        nodes: Some(100),
        ops: Some(2),
        ..snapc_sim::Options::default()
    };
    let started = Instant::now();
    let big = snapc_sim::run_seed(0, &big_opts);
    let big_wall = started.elapsed();
    if !big.violations.is_empty() {
        return Err(format!("10,000-rank job: {:?}", big.violations));
    }
    let per_event = |wall: Duration, ev: u64| wall.as_secs_f64() * 1e9 / ev.max(1) as f64;
    let _ = writeln!(
        md,
        "### Simulator\n\n\
         `snapc_sim::run_seed` (the library behind `snapc-sim run`), one thread, no faults, every invariant checked at \
         every event.\n\n\
         | run | ranks | events | simulated time | wall time | wall time per event |\n|---|---:|---:|---:|---:|---:|\n\
         | seeds 0..{SIM_SEEDS}, shape from each seed | {ranks} in all | {events} | | {:.2} s | {:.0} ns |\n\
         | the 10,000-rank job (seed 0, 100 nodes, 2 operations) | {} | {} | {:.3} s | {:.2} s | {:.0} ns |\n",
        sweep.as_secs_f64(),
        per_event(sweep, events),
        big.ranks,
        big.events,
        big.sim_micros as f64 / 1e6,
        big_wall.as_secs_f64(),
        per_event(big_wall, big.events),
    );
    let _ = writeln!(
        md,
        "The 10,000-rank job's wall time per event is {:.2}x that of the small jobs.\n",
        per_event(big_wall, big.events) / per_event(sweep, events)
    );
    Ok(())
}
