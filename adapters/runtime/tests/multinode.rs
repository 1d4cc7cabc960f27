//! A job across nodes without a cluster: `snapc run --local-nodes N`
//! starts N node agents on this machine (what `srun` does on a Slurm
//! allocation), each with its share of the ranks, linked to the job's
//! coordinator over authenticated TCP. Checkpoints, strangers on the
//! coordinator's port, a node agent killed in the middle of a checkpoint,
//! and a restart of the job on another number of nodes.

mod common;

use common::jobs::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The ranks' results of an uninterrupted run of the same counter (pace
/// only stretches a run, the results depend on the steps alone).
fn reference(env: &Env, n: u32, steps: &str) -> Vec<String> {
    let job = env.run(
        "reference",
        n,
        &[],
        &["--steps", steps, "--pace-us", "0"],
        &[],
    );
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    results(&out)
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_job_across_local_nodes_refuses_strangers_fails_a_checkpoint_naming_a_lost_node_and_restarts_on_fewer_nodes()
 {
    let env = Env::new();
    let steps = steps_for(12.0);
    let want = reference(&env, 6, &steps);
    assert_eq!(want.len(), 6, "{want:?}");

    let job = env.run(
        "across",
        6,
        &["--local-nodes", "3", "--node-timeout", "5"],
        &paced(&steps, &[]),
        &[("COUNTER_CHECKPOINT_MS", "600")],
    );
    let status = env.ready(&job);
    // Three agents, two ranks each, in blocks as Slurm places them.
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{status}");
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n["node"], format!("local{i}"), "{status}");
        assert_eq!(n["agent"], "up", "{status}");
        assert_eq!(
            n["ranks"],
            serde_json::json!([2 * i, 2 * i + 1]),
            "{status}"
        );
    }
    for r in 0..6 {
        assert_eq!(status["ranks"][r]["node"], format!("local{}", r / 2));
    }
    for seq in 0..2 {
        let (code, fin) = env.checkpoint("across", &["--timeout", "120"]);
        assert_eq!(code, 0, "{fin}");
        assert_eq!(fin["seq"], seq, "{fin}");
        assert_eq!(fin["ranks"].as_array().unwrap().len(), 6, "{fin}");
    }

    // Strangers on the coordinator's port: a hello without the secret,
    // twice, and an agent holding another secret. Refused, logged once for
    // the address, and the job goes on.
    let addr = status["coordinator"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = [0u8; 46];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[2..14], b"snapc-node/1");
        let mut fake = b"snapc-node/1".to_vec();
        fake.extend_from_slice(&[7; 32]);
        fake.push(6);
        fake.extend_from_slice(b"local1");
        fake.extend_from_slice(&[0; 32]);
        let mut framed = (fake.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&fake);
        s.write_all(&framed).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        assert_eq!(answer.get(2), Some(&1), "refused: {answer:?}");
        assert!(
            String::from_utf8_lossy(&answer).contains("does not prove the job's secret"),
            "{answer:?}"
        );
    }
    let mut impostor = env.snapc();
    impostor
        .args([
            "node",
            "--coordinator",
            &addr,
            "--job",
            "across",
            "--node",
            "local1",
        ])
        .env("SNAPC_JOB_SECRET", "not-the-secret");
    let out = impostor.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("refused this agent"), "{err}");
    let refusals = wait_log(&job.err, Duration::from_secs(10), |l| {
        l.contains("refused a node agent connection from 127.0.0.1")
    })
    .iter()
    .filter(|l| l.contains("refused a node agent connection"))
    .count();
    assert_eq!(refusals, 1, "logged once for the address");
    let (code, fin) = env.checkpoint("across", &["--timeout", "120"]);
    assert_eq!(code, 0, "the job goes on: {fin}");
    assert_eq!(fin["seq"], 2, "{fin}");

    // local1's agent killed while a checkpoint runs: the checkpoint fails
    // naming the node, nothing is published, the job ends (its ranks died
    // with their agent) with status 1.
    let agent = status["nodes"][1]["agent_pid"].as_i64().unwrap() as i32;
    let (code, started) = env.checkpoint("across", &["--no-wait"]);
    assert_eq!(code, 0, "{started}");
    assert_eq!(started["seq"], 3, "{started}");
    wait_for("the checkpoint under way", Duration::from_secs(30), || {
        env.status("across")
            .is_some_and(|s| !s["in_progress"].is_null())
    });
    kill(agent, nix::sys::signal::Signal::SIGKILL);
    let failed = wait_log_line(&job.err, Duration::from_secs(60), |l| {
        l.contains("checkpoint failed")
    });
    assert!(failed.contains("node local1"), "{failed}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 1, "a lost node ends the job: {out:?}");
    assert_eq!(env.snapshots("across"), vec![0, 1, 2], "nothing published");

    // Restarted from the latest snapshot on two nodes instead of three:
    // every rank finds its state by rank, and the results are those of an
    // uninterrupted run.
    let root = env.job_root("across").display().to_string();
    let again = env.spawn("across", &["restart", &root, "--local-nodes", "2"], &[]);
    let (code, out) = again.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(results(&out), want);
    for r in 0..6 {
        let s = starts(&out, r);
        assert_eq!(s.len(), 1, "rank {r}: {out:?}");
        assert!(s[0] > 0, "rank {r} restarted from its snapshot: {out:?}");
    }
    env.assert_clean();
}

/// `status` names each rank's node, in its text and its JSON. A node
/// agent that goes silent (stopped) in the middle of a checkpoint is lost
/// after --node-timeout: the checkpoint fails naming the node, and the
/// job ends (its agents go with it, the stopped one killed, its rank with
/// it; what they left in the run directory goes at the next command).
#[test]
fn status_names_each_node_and_a_silent_agent_fails_the_checkpoint_naming_it() {
    let env = Env::new();
    let steps = steps_for(30.0);
    let job = env.run(
        "names",
        2,
        &["--local-nodes", "2", "--node-timeout", "3"],
        &paced(&steps, &[]),
        &[("COUNTER_CHECKPOINT_MS", "500")],
    );
    let status = env.ready(&job);
    let text = env.cmd(&["status", "--job", "names"]).2;
    assert!(
        text.contains("rank 1 pid") && text.contains("on local1"),
        "{text}"
    );
    assert!(text.contains("node local0: agent up"), "{text}");
    assert_eq!(status["nodes"][0]["ranks"], serde_json::json!([0]));
    assert_eq!(status["nodes"][1]["ranks"], serde_json::json!([1]));
    let agent = status["nodes"][1]["agent_pid"].as_i64().unwrap() as i32;
    let rank1 = pid_of(&status, 1);
    let (code, started) = env.checkpoint("names", &["--no-wait"]);
    assert_eq!(code, 0, "{started}");
    kill(agent, nix::sys::signal::Signal::SIGSTOP);
    let failed = wait_log_line(&job.err, Duration::from_secs(60), |l| {
        l.contains("checkpoint failed")
    });
    assert!(
        failed.contains("node local1") && failed.contains("silent for"),
        "{failed}"
    );
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 1, "{out:?}");
    assert!(env.snapshots("names").is_empty());
    wait_for("the agent's rank ended", Duration::from_secs(30), || {
        !alive(rank1)
    });
    wait_for("the agent ended", Duration::from_secs(30), || !alive(agent));
    let (code, _, text) = env.cmd(&["status"]);
    assert_eq!(code, 0, "{text}");
    env.assert_clean();
}

/// MIGRATE across nodes: rank 0 asks for rank 5 (on local2) to move to its
/// own node; once every node checkpointed, rank 5 ends on local2 and
/// starts on local0 from the snapshot it just wrote, the others carry on,
/// and the job ends with the results of an uninterrupted run. A job whose
/// ranks a launcher started refuses it, saying why.
#[test]
fn a_rank_migrates_to_another_node_and_a_launcher_job_refuses_to() {
    let env = Env::new();
    let steps = steps_for(6.0);
    let want = reference(&env, 6, &steps);
    let at = (steps.parse::<u64>().unwrap() / 3).to_string();
    let job = env.run(
        "moving",
        6,
        &["--local-nodes", "3"],
        &paced(
            &steps,
            &["--request-migrate-at", &at, "--migrate-rank", "5"],
        ),
        &[],
    );
    env.ready(&job);
    let log = wait_log(&job.err, Duration::from_secs(60), |l| {
        l.contains("migrate: done") || l.contains("migrate failed")
    });
    assert!(
        log.iter().any(|l| l.contains("rank 5 local2 -> local0")),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l.contains("migrate: done")), "{log:?}");
    let status = env.status("moving").unwrap();
    assert_eq!(status["ranks"][5]["node"], "local0", "{status}");
    assert_eq!(status["nodes"][0]["ranks"], serde_json::json!([0, 1, 5]));
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    assert!(
        out.iter().any(|l| l == "[0] request migrate error=None"),
        "{out:?}"
    );
    assert_eq!(final_results(&out), want, "{out:?}");
    let s = starts(&out, 5);
    assert!(s.len() == 2 && s[0] == 0 && s[1] > 0, "{out:?}");
    assert_eq!(starts(&out, 4).len(), 1, "{out:?}");

    // Started by a launcher: refused before any checkpoint.
    let exe = common::counter_exe().display().to_string();
    let script = format!(
        "SNAPC_RANK=0 exec {exe} --steps {} --pace-us {PACE} --request-migrate-at 1000 --migrate-rank 0",
        steps_for(2.0)
    );
    let args = env.run_program_args("mpi", 1, &["--launcher"], &["sh", "-c", &script]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = env.spawn("mpi", &args, &[]);
    let err = std::sync::Arc::clone(&job.err);
    let (code, out) = job.finish(Duration::from_secs(60));
    let why = wait_log_line(&err, Duration::from_secs(5), |l| {
        l.contains("MIGRATE refused")
    });
    assert!(why.contains("is an MPI job"), "{why}");
    assert_eq!(code, 0, "{out:?}");
    assert!(
        out.iter()
            .any(|l| l.starts_with("request migrate error=Some")),
        "{out:?}"
    );
    env.assert_clean();
}
