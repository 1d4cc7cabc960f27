//! Jobs launched by Open MPI's `mpirun` under `snapc run`: the ranks join
//! the daemon with the job's secret and their `OMPI_COMM_WORLD_RANK`, are
//! checkpointed, and restart through `mpirun` from the latest snapshot.
//!
//! They need `mpirun` (Debian's `openmpi-bin`); without it they say they
//! skip, and fail with `SNAPC_REQUIRE_OMPI=1` (set by `.ci/run`).

mod common;

use common::jobs::{Env, PACE, kill, steps_for, wait_log};
use common::mpi::{mpirun, tagged};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::time::Duration;

/// What an uninterrupted counter of each rank `0..n` ends with.
fn reference(n: u32, steps: &str) -> BTreeMap<u32, String> {
    (0..n)
        .map(|r| {
            let out = std::process::Command::new(common::counter_exe())
                .args(["--steps", steps, "--pace-us", "0"])
                .env("SNAPC_RANK", r.to_string())
                .env_remove("SNAPC_DAEMON_SOCKET")
                .env_remove("SNAPC_JOB_SECRET")
                .env_remove("SNAPC_RESTART_DIR")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let result = text
                .lines()
                .find_map(|l| l.strip_prefix("result "))
                .unwrap()
                .to_string();
            (r, result)
        })
        .collect()
}

#[test]
fn the_counter_through_mpirun_is_checkpointed_killed_and_restarted_through_mpirun() {
    let Some(mut program) = mpirun("counter through mpirun") else {
        return;
    };
    let env = Env::new();
    let steps = steps_for(6.0);
    let exe = common::counter_exe().display().to_string();
    program.extend(["-np", "4", &exe, "--steps", &steps, "--pace-us", PACE].map(String::from));
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
    let Some(mut program) = mpirun("mpirun with fewer ranks") else {
        return;
    };
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    program.extend(["-np", "2", &exe, "--steps", "2000"].map(String::from));
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
