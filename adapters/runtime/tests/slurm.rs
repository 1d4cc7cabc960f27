//! Jobs across the nodes of a real Slurm (the test cluster of
//! tests/cluster/): `snapc run` inside an allocation starts an agent on
//! every node with `srun --overlap` and its ranks there; checkpoints,
//! a rank killed, a node agent killed in the middle of a checkpoint, a
//! slurmd killed under a running job, restarts in other allocations (other
//! node names), and a batch job ended by its checkpoint signal and resumed
//! by `--resume` after a requeue. Skips without root and Slurm (fails
//! instead with SNAPC_REQUIRE_SLURM=1).

mod common;

use common::jobs::*;
use nix::sys::signal::Signal;
use snapc_test_cluster::Cluster;
use std::process::Command;
use std::time::{Duration, Instant};

/// The ranks' results of an uninterrupted run of the counter on this
/// machine (pace only stretches a run: the results depend on the steps).
fn reference(env: &Env, n: u32, steps: &str) -> Vec<String> {
    let job = env.run(
        "reference",
        n,
        &["--one-node"],
        &["--steps", steps, "--pace-us", "0"],
        &[],
    );
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    results(&out)
}

/// `salloc ARGS snapc SNAPC_ARGS` from the login side, with the test's run
/// directory (on the file system the nodes share).
fn salloc(
    c: &Cluster,
    env: &Env,
    name: &str,
    salloc: &[&str],
    snapc: &[String],
    vars: &[(&str, &str)],
) -> Job {
    let mut cmd = c.command("salloc");
    cmd.envs(vars.iter().copied())
        .args(salloc)
        .arg(SNAPC)
        .args(snapc)
        .env("SNAPC_RUN_DIR", env.run.path())
        .env_remove("SNAPC_STORE")
        .env_remove("SNAPC_DAEMON_SOCKET");
    Env::spawn_cmd(name, cmd)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every rank of the job is on the node Slurm's block distribution gives.
fn assert_placed(status: &serde_json::Value, nodes: &[&str], per_node: usize) {
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(status["nodes"][i]["node"], *node, "{status}");
        assert_eq!(status["nodes"][i]["agent"], "up", "{status}");
        for k in 0..per_node {
            let r = i * per_node + k;
            assert_eq!(status["ranks"][r]["node"], *node, "{status}");
        }
    }
}

/// The main story on a real Slurm: a job of 3 nodes x 2 ranks in one
/// allocation, checkpointed 3 times, a rank killed; restarted in another
/// allocation (node4-6) from the latest snapshot with the results of an
/// uninterrupted run. Then the failures: a node agent killed in the middle
/// of a checkpoint (the checkpoint fails naming the node, nothing is
/// published, the job ends) and a slurmd killed under a running job (the
/// job ends with Slurm's NODE_FAIL); each restarts elsewhere.
#[test]
fn a_three_node_job_survives_checkpoints_a_rank_kill_lost_nodes_and_restarts_in_other_allocations()
{
    let Some(c) = Cluster::up(6) else { return };
    let env = Env::new();
    let steps = steps_for(14.0);
    let want = reference(&env, 6, &steps);
    assert_eq!(want.len(), 6, "{want:?}");
    let exe = common::counter_exe().display().to_string();
    let store = env.store.path().display().to_string();
    let run = |job: &str, extra: &[&str]| -> Vec<String> {
        let mut v = strings(&["run", "-n", "6", "--job", job, "--store", &store]);
        v.extend(strings(extra));
        v.extend(strings(&["--", &exe, "--steps", &steps, "--pace-us", PACE]));
        v
    };
    let first = ["-N3", "-w", "node[1-3]", "--ntasks-per-node=2"];
    let other = ["-N3", "-w", "node[4-6]", "--ntasks-per-node=2"];

    // 1. Checkpoints and a rank killed.
    let job = salloc(&c, &env, "across", &first, &run("across", &[]), &[]);
    let status = env.ready(&job);
    assert_placed(&status, &["node1", "node2", "node3"], 2);
    for seq in 0..3 {
        let (code, fin) = env.checkpoint("across", &["--timeout", "120"]);
        assert_eq!(code, 0, "{fin}");
        assert_eq!(fin["seq"], seq, "{fin}");
    }
    kill(pid_of(&status, 4), Signal::SIGKILL);
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_eq!(code, 128 + 9, "the killed rank's status: {out:?}");
    assert_eq!(env.snapshots("across"), vec![0, 1, 2]);

    // 2. Restarted in another allocation: other node names, each rank
    // from its own directory of the latest snapshot.
    let root = env.job_root("across").display().to_string();
    let job = salloc(
        &c,
        &env,
        "across",
        &other,
        &strings(&["restart", &root]),
        &[],
    );
    let status = env.ready(&job);
    assert_placed(&status, &["node4", "node5", "node6"], 2);
    let (code, out) = job.finish(Duration::from_secs(180));
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(results(&out), want, "{out:?}");
    for r in 0..6 {
        let s = starts(&out, r);
        assert!(
            s.len() == 1 && s[0] > 0,
            "rank {r} from its snapshot: {out:?}"
        );
    }

    // 3. A node agent killed during a checkpoint.
    // Every rank holds its checkpoint open for two seconds.
    let job = salloc(
        &c,
        &env,
        "agent",
        &first,
        &run("agent", &[]),
        &[("COUNTER_CHECKPOINT_MS", "2000")],
    );
    let status = env.ready(&job);
    let (code, fin) = env.checkpoint("agent", &["--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let slow_job = job;
    let agent = status["nodes"][1]["agent_pid"].as_i64().unwrap() as i32;
    let (code, started) = env.checkpoint("agent", &["--no-wait"]);
    assert_eq!(code, 0, "{started}");
    kill(agent, Signal::SIGKILL);
    let log = wait_log(&slow_job.err, Duration::from_secs(60), |l| {
        l.contains("failed") && l.contains("node node2")
    });
    assert!(
        log.iter().any(|l| l.contains("agent lost")),
        "the node is named lost: {log:?}"
    );
    let (code, out) = slow_job.finish(Duration::from_secs(120));
    assert_eq!(code, 1, "{out:?}");
    assert_eq!(env.snapshots("agent"), vec![0], "nothing published");

    // 4. A slurmd killed under a running job (a long one: Slurm takes
    // 15 to 20 s to declare the node down): Slurm ends the job
    // (NODE_FAIL) and its steps; the job's latest snapshot restarts on
    // other nodes, each rank from where it was.
    let long = steps_for(600.0);
    let mut args = strings(&["run", "-n", "6", "--job", "nodefail", "--store", &store]);
    args.extend(strings(&["--", &exe, "--steps", &long, "--pace-us", PACE]));
    let job = salloc(&c, &env, "nodefail", &first, &args, &[]);
    env.ready(&job);
    let (code, fin) = env.checkpoint("nodefail", &["--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let killed = Instant::now();
    c.kill_slurmd("node3");
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_ne!(code, 0, "{out:?}");
    eprintln!(
        "slurmd of node3 killed: the job ended {:.1} s later",
        killed.elapsed().as_secs_f64()
    );
    c.start_slurmd("node3");
    assert_eq!(env.snapshots("nodefail"), vec![0]);
    let root = env.job_root("nodefail").display().to_string();
    let job = salloc(
        &c,
        &env,
        "nodefail",
        &other,
        &strings(&["restart", &root]),
        &[],
    );
    let status = env.ready(&job);
    assert_placed(&status, &["node4", "node5", "node6"], 2);
    let (code, fin) = env.checkpoint("nodefail", &["--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(fin["seq"], 1, "{fin}");
    let (code, _, text) = env.cmd(&["stop", "--job", "nodefail"]);
    assert_eq!(code, 0, "{text}");
    let (_, out) = job.finish(Duration::from_secs(60));
    for r in 0..6 {
        let s = starts(&out, r);
        assert!(
            s.len() == 1 && s[0] > 0,
            "rank {r} from its snapshot: {out:?}"
        );
    }
}

/// A batch job (`exec snapc run --resume --checkpoint-on USR1 ...`):
/// `scancel -b --signal=USR1` (what `sbatch --signal=B:USR1@T` sends
/// before the time limit) takes a checkpoint and ends the job with status
/// 75; requeued, the same script resumes from that snapshot and ends with
/// the results of an uninterrupted run.
#[test]
fn a_batch_job_ended_by_its_checkpoint_signal_resumes_after_a_requeue() {
    let Some(c) = Cluster::up(3) else { return };
    let env = Env::new();
    let steps = steps_for(10.0);
    let want = reference(&env, 6, &steps);
    let exe = common::counter_exe().display().to_string();
    let script = format!(
        "#!/bin/bash\nexec {SNAPC} run -n 6 --job batch --store {} --resume --checkpoint-on USR1 -- {exe} --steps {steps} --pace-us {PACE}\n",
        env.store.path().display()
    );
    let work = c.work_dir();
    let out_file = work.join("batch.out");
    let id = c.sbatch(
        &[
            "-N3",
            "--ntasks-per-node=2",
            "--requeue",
            "--open-mode=append",
            "-o",
            out_file.to_str().unwrap(),
            &format!("--export=ALL,SNAPC_RUN_DIR={}", env.run.path().display()),
        ],
        &script,
    );
    let ready = || {
        env.status("batch")
            .is_some_and(|s| s["checkpointable"] == true)
    };
    wait_for("the batch job ready", Duration::from_secs(60), ready);
    let (code, fin) = env.checkpoint("batch", &["--timeout", "120"]);
    assert_eq!(code, 0, "from outside the job: {fin}");
    let out = c.command("scancel");
    let mut out = out;
    let status = out
        .args(["-b", "--signal=USR1", &id.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let state = c.wait_job(id, Duration::from_secs(120));
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert_eq!(state, "FAILED", "exit status 75 is no success: {text}");
    assert_eq!(env.snapshots("batch"), vec![0, 1], "{text}");
    let exit = Command::new("scontrol")
        .env("SLURM_CONF", c.dir().join("etc/slurm/slurm.conf"))
        .args(["show", "job", "-o", &id.to_string()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&exit.stdout);
    assert!(shown.contains("ExitCode=75:0"), "{shown}");
    // Requeued: the same script, --resume starts from snapshot 1.
    let requeue = c
        .command("scontrol")
        .args(["requeue", &id.to_string()])
        .status()
        .unwrap();
    assert!(requeue.success());
    // Pending again at once, then running and done.
    std::thread::sleep(Duration::from_secs(1));
    let state = c.wait_job(id, Duration::from_secs(180));
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    assert_eq!(state, "COMPLETED", "{text}");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // The first run printed where it stopped; the last line of each rank
    // is the whole job's.
    assert_eq!(final_results(&lines), want, "{text}");
    for r in 0..6 {
        let s = starts(&lines, r);
        assert_eq!(s.len(), 2, "rank {r}: two runs: {text}");
        assert!(s[0] == 0 && s[1] > 0, "rank {r} resumed: {text}");
    }
}

/// `rank -> text` of `srun --label` lines (`R: text`) starting with
/// `prefix`, the prefix removed; the last one of each rank.
fn labelled(lines: &[String], prefix: &str) -> std::collections::BTreeMap<u32, String> {
    lines
        .iter()
        .filter_map(|l| {
            let (rank, text) = l.split_once(": ")?;
            let rank = rank.trim().parse().ok()?;
            Some((rank, text.strip_prefix(prefix)?.to_string()))
        })
        .collect()
}

/// The MPI heat stencil (adapters/runtime/mpi/heat.c, on libsnapc) across
/// 3 nodes x 2 ranks through `srun --mpi=pmix`: each rank joins its own
/// node's agent; 3 checkpoints, each with every rank at one iteration; a
/// rank killed (srun ends the step, and the job); restarted through srun
/// in another allocation (node4-6) from the latest snapshot, every rank at
/// that iteration, with the result of an uninterrupted run.
#[test]
fn the_mpi_stencil_through_srun_pmix_across_three_nodes_checkpoints_and_restarts_elsewhere() {
    let Some(c) = Cluster::up(6) else { return };
    let Some((heat, _)) = common::mpi::heat("the heat stencil across nodes") else {
        return;
    };
    let heat = heat.display().to_string();
    // Open MPI 4.1.4 may crash in MPI_Init on a fresh cluster's first
    // launches (tests/cluster/README.md): a launch to settle it.
    if let Some(hello) = c.mpi_hello() {
        let hello = hello.display().to_string();
        c.srun_mpi(&["-N3", "--ntasks-per-node=2", "--mpi=pmix", &hello])
            .expect_success("mpi_hello");
    }
    // Each iteration exchanges halos over TCP between the nodes (veths on
    // this machine's 2 cores); ranks that yield while they wait make it
    // about 5 ms an iteration (spinning ones, 50).
    let iters = "2500";
    let yielding = "OMPI_MCA_mpi_yield_when_idle";
    let out = c.srun_mpi(&[
        "-N3",
        "-w",
        "node[4-6]",
        &format!("--export=ALL,{yielding}=1"),
        "--ntasks-per-node=2",
        "--mpi=pmix",
        "--label",
        &heat,
        "--iters",
        iters,
    ]);
    out.expect_success("the reference run");
    let lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    let expected = labelled(&lines, "result ")
        .remove(&0)
        .unwrap_or_else(|| panic!("no result: {out:?}"));

    let env = Env::new();
    let store = env.store.path().display().to_string();
    let args = strings(&[
        "run",
        "-n",
        "6",
        "--job",
        "mheat",
        "--store",
        &store,
        "--",
        "srun",
        "--mpi=pmix",
        "--label",
        &heat,
        "--iters",
        iters,
    ]);
    let first = ["-N3", "-w", "node[1-3]", "--ntasks-per-node=2"];
    let job = salloc(
        &c,
        &env,
        "mheat",
        &first,
        &args,
        &[("HEAT_PACE_US", "1000"), (yielding, "1")],
    );
    let status = env.ready(&job);
    for (i, node) in ["node1", "node2", "node3"].iter().enumerate() {
        assert_eq!(status["nodes"][i]["node"], *node, "{status}");
        assert_eq!(
            status["nodes"][i]["ranks"],
            serde_json::json!([2 * i, 2 * i + 1]),
            "srun's block placement, each rank joined on its node: {status}"
        );
    }
    let mut previous = 0;
    for seq in 0..3u64 {
        std::thread::sleep(Duration::from_millis(300));
        let (code, fin) = env.checkpoint("mheat", &["--timeout", "120"]);
        assert_eq!(code, 0, "{fin}");
        assert_eq!(fin["seq"], seq, "{fin}");
        let dir = env.job_root("mheat").join(seq.to_string());
        previous = common::mpi::snapshot_iteration(&dir, 6, seq, previous);
    }
    kill(pid_of(&status, 3), Signal::SIGKILL);
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_ne!(code, 0, "{out:?}");
    assert!(
        labelled(&out, "result ").is_empty(),
        "the job ended before the kill: raise its iterations ({out:?})"
    );

    let root = env.job_root("mheat").display().to_string();
    let other = ["-N3", "-w", "node[4-6]", "--ntasks-per-node=2"];
    let job = salloc(
        &c,
        &env,
        "mheat",
        &other,
        &strings(&["restart", &root]),
        &[("HEAT_PACE_US", "0"), (yielding, "1")],
    );
    let (code, out) = job.finish(Duration::from_secs(180));
    assert_eq!(code, 0, "{out:?}");
    let starts = labelled(&out, "start iter=");
    assert_eq!(starts.len(), 6, "{out:?}");
    assert!(
        starts.values().all(|s| *s == previous.to_string()),
        "every rank resumed at iteration {previous}: {starts:?}"
    );
    assert_eq!(
        labelled(&out, "result ").get(&0),
        Some(&expected),
        "{out:?}"
    );
}
