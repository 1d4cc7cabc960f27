//! Jobs launched by Open MPI's `mpirun` under `snapc run`: the ranks join
//! the daemon with the job's secret and their `OMPI_COMM_WORLD_RANK`, are
//! checkpointed, and restart through `mpirun` from the latest snapshot.
//!
//! They need `mpirun` (Debian's `openmpi-bin`); without it they say they
//! skip, and fail with `SNAPC_REQUIRE_OMPI=1` (set by `.ci/run`).

mod common;

use common::jobs::{Env, PACE, kill, steps_for, wait_log};
use common::mpi::available;
// The options `snapc demo --mpi` gives mpirun (root allowed, more ranks
// than cores, lines tagged by rank), and its reading of tagged lines.
use nix::sys::signal::Signal;
use snapc_runtime::mpi_demo::{mpirun, tagged};
use std::collections::BTreeMap;
use std::time::Duration;

/// What an uninterrupted counter of each rank `0..n` ends with.
fn reference(n: u32, steps: &str) -> BTreeMap<u32, String> {
    (0..n)
        .map(|r| {
            let line = common::counter_result(r, steps);
            (r, line["result ".len()..].to_string())
        })
        .collect()
}

#[test]
fn the_counter_through_mpirun_is_checkpointed_killed_and_restarted_through_mpirun() {
    if !available("counter through mpirun") {
        return;
    }
    let mut program = mpirun(4);
    let env = Env::new();
    let steps = steps_for(4.0);
    let exe = common::counter_exe().display().to_string();
    program.extend([exe.as_str(), "--steps", &steps, "--pace-us", PACE].map(String::from));
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    // No --launcher: mpirun is known as one.
    let args = env.run_program_args("ompi", 4, &[], &program);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = env.spawn("ompi", &args, &[]);
    let status = env.ready(&job);
    assert_eq!(status["launcher"]["program"], "mpirun");

    let (code, fin) = env.checkpoint("ompi", &[]);
    assert_eq!(code, 0, "{fin}");
    let daemon = status["daemon_pid"].as_u64().unwrap().to_string();
    let (code, fin) = env.json(&["checkpoint", "--pid", &daemon, "--json"]);
    assert_eq!(code, 0, "{fin}");
    let (code, fin) = env.checkpoint("ompi", &[]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(env.snapshots("ompi").len(), 3);

    // One rank killed: mpirun ends the job, and the daemon with its status.
    let rank1 = status["ranks"][1]["pid"].as_i64().unwrap() as i32;
    kill(rank1, Signal::SIGKILL);
    let err = job.err.clone();
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_ne!(code, 0, "{out:?}");
    assert!(tagged(&out, "result ").is_empty(), "ended early: {out:?}");
    let log = err.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains(&format!(
            "rank 1 (pid {rank1}) is gone: its link closed and its process ended"
        ))),
        "{log:?}"
    );

    let restart = env.spawn(
        "ompi",
        &["restart", &env.job_root("ompi").display().to_string()],
        &[],
    );
    let (code, out) = restart.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    let starts = tagged(&out, "start steps=");
    assert_eq!(starts.len(), 4, "{out:?}");
    assert!(
        starts.values().all(|s| s != "0"),
        "resumed from the snapshot: {starts:?}"
    );
    assert_eq!(tagged(&out, "result "), reference(4, &steps));
    env.assert_clean();
}

#[test]
fn mpirun_starting_fewer_ranks_than_the_job_has_ends_it_with_an_error() {
    if !available("mpirun with fewer ranks") {
        return;
    }
    let mut program = mpirun(2);
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    program.extend([exe.as_str(), "--steps", "2000"].map(String::from));
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let args = env.run_program_args("short", 4, &[], &program);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = env.spawn("short", &args, &[]);
    let err = job.err.clone();
    let (code, _) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 1);
    wait_log(&err, Duration::from_secs(1), |l| {
        l.contains("the launcher mpirun (pid ")
            && l.contains("before every rank joined: ranks 2, 3 never joined (the job has 4 ranks)")
    });
    env.assert_clean();
}

/// A small pseudo-random sequence for the moments of the checkpoints; the
/// seed is printed so that a failure can be looked into.
struct Moments(u64);

impl Moments {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("checkpoint moments: seed {seed}");
        Self(seed)
    }

    /// Milliseconds in `lo..hi`.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo))
    }
}

/// The heat stencil's final line of an uninterrupted run under mpirun.
fn heat_reference(heat: &std::path::Path, iters: &str) -> String {
    let mut program = mpirun(4);
    program.extend([heat.display().to_string(), "--iters".into(), iters.into()]);
    let out = std::process::Command::new(&program[0])
        .args(&program[1..])
        .env_remove("SNAPC_DAEMON_SOCKET")
        .env_remove("SNAPC_JOB_SECRET")
        .env_remove("SNAPC_RESTART_SNAPSHOT")
        .env_remove("HEAT_PACE_US")
        .output()
        .unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    tagged(&lines, "result ")
        .remove(&0)
        .unwrap_or_else(|| panic!("no result: {lines:?}"))
}

#[test]
fn the_heat_stencil_checkpointed_at_random_moments_has_each_snapshot_at_one_iteration_and_restarts_identically()
 {
    let Some((heat, _)) = common::mpi::heat("heat stencil") else {
        return;
    };
    let iters = "20000";
    let expected = heat_reference(&heat, iters);
    let env = Env::new();
    let mut program = mpirun(4);
    program.extend([heat.display().to_string(), "--iters".into(), iters.into()]);
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let args = env.run_program_args("heat", 4, &[], &program);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = env.spawn("heat", &args, &[("HEAT_PACE_US", "150")]);
    let status = env.ready(&job);

    // Five checkpoints at random moments, so that each signal reaches the
    // ranks anywhere in an iteration (one through the daemon's pid).
    let mut moments = Moments::new();
    let daemon = status["daemon_pid"].as_u64().unwrap().to_string();
    for i in 0..5 {
        std::thread::sleep(moments.ms(10, 250));
        let (code, fin) = if i == 2 {
            env.json(&["checkpoint", "--pid", &daemon, "--json"])
        } else {
            env.checkpoint("heat", &[])
        };
        assert_eq!(code, 0, "checkpoint {i}: {fin}");
    }
    let snapshots = env.snapshots("heat");
    assert_eq!(snapshots.len(), 5, "{snapshots:?}");
    // Each rank recorded its iteration in its part: one per snapshot, and
    // later snapshots later in the computation.
    let mut previous = 0;
    for seq in &snapshots {
        let dir = env.job_root("heat").join(seq.to_string());
        previous = common::mpi::snapshot_iteration(&dir, 4, *seq, previous);
    }

    // One rank killed: mpirun ends the job.
    let rank2 = status["ranks"][2]["pid"].as_i64().unwrap() as i32;
    kill(rank2, Signal::SIGKILL);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_ne!(code, 0);
    assert!(
        tagged(&out, "result ").is_empty(),
        "the job ended before it was killed: raise its iterations ({out:?})"
    );

    // Restarted through mpirun from the latest snapshot, at full speed.
    let restart = env.spawn(
        "heat",
        &["restart", &env.job_root("heat").display().to_string()],
        &[("HEAT_PACE_US", "0")],
    );
    let (code, out) = restart.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    let starts = tagged(&out, "start iter=");
    assert_eq!(starts.len(), 4, "{out:?}");
    assert!(
        starts.values().all(|s| *s == previous.to_string()),
        "every rank resumed at iteration {previous}: {starts:?}"
    );
    assert_eq!(tagged(&out, "result ").get(&0), Some(&expected));
    env.assert_clean();
}

#[test]
fn snapc_demo_mpi_passes() {
    let Some((_, pkg_config)) = common::mpi::heat("snapc demo --mpi") else {
        return;
    };
    let env = Env::new();
    let out = env
        .snapc()
        .args(["demo", "--mpi"])
        .env("PKG_CONFIG_PATH", &pkg_config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("snapc demo --mpi: PASS"), "{text}");
    assert_eq!(text.matches("every rank at iteration").count(), 3, "{text}");
}
