//! Ranks started by a launcher join the daemon (`snapc run --launcher`):
//! admission by the job's secret and the rank, refusals, supervision that
//! follows the launcher, checkpoints (also `checkpoint --pid` of the
//! daemon) and the restart through the same launcher.
//!
//! The launcher here is a shell that starts `counter` processes with
//! `SNAPC_RANK`, as any launcher does with its own variables; it needs
//! nothing installed. `tests/mpi.rs` does the same through Open MPI's
//! `mpirun`.

mod common;

use common::jobs::{Env, PACE, alive, kill, steps_for, wait_log};
use nix::sys::signal::Signal;
use snapc_posix::join::{Answer, Hello};
use snapc_posix::link::{FrameReader, Tag, encode_frame};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A shell command line starting one counter per `(rank, args)`, each in
/// the background, then waiting for them all.
fn shell_launcher(ranks: &[(&str, &str)]) -> String {
    let exe = common::counter_exe().display().to_string();
    let mut script: String = ranks
        .iter()
        .map(|(rank, args)| format!("SNAPC_RANK={rank} {exe} {args} & "))
        .collect();
    script.push_str("wait");
    script
}

/// `snapc run -n N --launcher --job NAME --store ... -- sh -c SCRIPT`.
fn run_launched(env: &Env, name: &str, n: u32, extra: &[&str], script: &str) -> common::jobs::Job {
    let mut flags = vec!["--launcher"];
    flags.extend_from_slice(extra);
    let args = env.run_program_args(name, n, &flags, &["sh", "-c", script]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.spawn(name, &args, &[])
}

/// The unprefixed `result ...` lines (the launcher's output is printed as
/// it is), sorted: each rank's checksum is seeded with its rank.
fn results(out: &[String]) -> Vec<String> {
    snapc_test_procs::sorted(out, |l| l.starts_with("result "))
}

/// What an uninterrupted run of ranks `0..n` ends with.
fn reference(n: u32, steps: &str) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|r| common::counter_result(r, steps)).collect();
    v.sort();
    v
}

/// The job's secret, as its launcher's environment holds it.
fn secret_of(launcher: u32) -> Vec<u8> {
    let environ = std::fs::read(format!("/proc/{launcher}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"SNAPC_JOB_SECRET="))
        .expect("the launcher's environment holds the secret")
        .to_vec()
}

/// Connects to the job's ranks' socket, sends `payload` as a frame of
/// `tag`, and returns the daemon's answer to it (None: it closed without one).
fn knock(env: &Env, job: &str, tag: Tag, payload: &[u8]) -> Option<Answer> {
    let mut s = UnixStream::connect(env.run.path().join(format!("{job}.sock"))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&encode_frame(tag, payload).unwrap()).unwrap();
    let mut frames = FrameReader::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = frames.next_frame() {
            let (tag, payload) = f.unwrap();
            assert_eq!(tag, Tag::Join);
            return Some(Answer::parse(&payload).unwrap());
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => frames.push(&buf[..n]),
        }
    }
}

fn refusal(a: Option<Answer>) -> String {
    match a {
        Some(Answer::Refused(why)) => why,
        other => panic!("not refused: {other:?}"),
    }
}

fn log_lines(job: &common::jobs::Job, needle: &str) -> usize {
    job.err
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn ranks_started_by_a_launcher_join_are_checkpointed_and_restart_through_it() {
    let env = Env::new();
    let steps = steps_for(4.0);
    let args = format!("--steps {steps} --pace-us {PACE}");
    let script = shell_launcher(&[("0", &args), ("1", &args)]);
    let job = run_launched(&env, "joined", 2, &[], &script);
    let status = env.ready(&job);
    let launcher = status["launcher"]["pid"].as_u64().expect("a launcher") as u32;
    assert_eq!(status["launcher"]["program"], "sh");
    for r in 0..2 {
        let pid = status["ranks"][r]["pid"].as_u64().unwrap() as u32;
        // The ranks are the launcher's children, not the daemon's.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid: u32 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ppid, launcher, "rank {r}");
    }
    let secret = secret_of(launcher);
    assert_eq!(secret.len(), 64, "32 random bytes in hexadecimal");
    // Not on the launcher's command line, nor any rank's.
    for pid in [launcher, status["ranks"][0]["pid"].as_u64().unwrap() as u32] {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            !cmdline
                .windows(secret.len())
                .any(|w| w == secret.as_slice())
        );
    }

    let (code, first) = env.checkpoint("joined", &[]);
    assert_eq!(code, 0, "{first}");
    // `checkpoint --pid` of the daemon checkpoints its job.
    let daemon = status["daemon_pid"].as_u64().unwrap().to_string();
    let (code, second) = env.json(&["checkpoint", "--pid", &daemon, "--json"]);
    assert_eq!(code, 0, "{second}");
    let snapshots = env.snapshots("joined");
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let latest = env.job_root("joined").join(snapshots[1].to_string());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(latest.join("snapshot.json")).unwrap()).unwrap();
    assert_eq!(meta["launcher"], true);
    assert_eq!(meta["argv"][0], "sh");

    // Ended by the user: the launcher and the ranks are terminated.
    let (code, _, _) = env.cmd(&["stop", "--job", "joined"]);
    assert_eq!(code, 0);
    let (status_code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(status_code, 143);
    assert!(results(&out).is_empty(), "ended before its end: {out:?}");
    // The secret is nowhere in the store, nor in the daemon's log.
    for f in walk(env.store.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "the secret is in {}",
            f.display()
        );
    }

    // Restarted through the same launcher: each rank finds its own part.
    let restart = env.spawn(
        "joined",
        &["restart", &env.job_root("joined").display().to_string()],
        &[],
    );
    let (code, out) = restart.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out:?}");
    let starts: Vec<u64> = out
        .iter()
        .filter_map(|l| l.strip_prefix("start steps=")?.parse().ok())
        .collect();
    assert_eq!(starts.len(), 2, "{out:?}");
    assert!(
        starts.iter().all(|&s| s > 0),
        "resumed, not from 0: {starts:?}"
    );
    assert_eq!(results(&out), reference(2, &steps));
    env.assert_clean();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files.extend(walk(&e.path()));
        } else if t.is_file() {
            files.push(e.path());
        }
    }
    files
}

#[test]
fn a_process_without_the_secret_is_refused_and_logged_once() {
    let env = Env::new();
    let script = shell_launcher(&[("0", "--run-for 60")]);
    let job = run_launched(&env, "guarded", 1, &[], &script);
    env.ready(&job);
    let me = std::process::id();
    let needle = format!("refused pid {me} ");

    // A hello with a wrong secret.
    let wrong = Hello {
        rank: 0,
        pid: me,
        secret: b"0123456789abcdef",
    };
    let why = refusal(knock(&env, "guarded", Tag::Join, &wrong.encode()));
    assert!(why.contains("does not hold job guarded's secret"), "{why}");
    wait_log(&job.err, Duration::from_secs(10), |l| l.contains(&needle));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log_lines(&job, &needle), 1, "logged once");

    // A rank of a job whose daemon forked it talks first, without a hello.
    let finish = [0, 0, 0, 1, 5, 0, 0, 0, 1, 9, 0, 0, 0, 4];
    let why = refusal(knock(&env, "guarded", Tag::Snapc, &finish));
    assert!(
        why.contains("is not a hello with job guarded's secret"),
        "{why}"
    );
    wait_log(&job.err, Duration::from_secs(10), |l| {
        l.contains(&needle) && l.contains("is not a hello")
    });

    // A snapc application given the socket and a wrong secret: its start
    // fails with the daemon's reason.
    let out = std::process::Command::new(common::counter_exe())
        .args(["--run-for", "5"])
        .env("SNAPC_DAEMON_SOCKET", env.run.path().join("guarded.sock"))
        .env("SNAPC_JOB_SECRET", "not-the-secret")
        .env("SNAPC_RANK", "0")
        .env_remove("SNAPC_RESTART_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused: it does not hold job guarded's secret"),
        "{err}"
    );

    // The job goes on and is checkpointed.
    let (code, fin) = env.checkpoint("guarded", &[]);
    assert_eq!(code, 0, "{fin}");
    env.cmd(&["stop", "--job", "guarded"]);
    job.finish(Duration::from_secs(60));
    env.assert_clean();
}

#[test]
fn a_rank_that_joins_twice_or_out_of_range_is_refused() {
    let env = Env::new();
    // Rank 0 twice, once too many: one of the two is refused and ends.
    let script = shell_launcher(&[
        ("0", "--run-for 60"),
        ("1", "--run-for 60"),
        ("0", "--run-for 60"),
    ]);
    let job = run_launched(&env, "twice", 2, &[], &script);
    let status = env.ready(&job);
    wait_log(&job.err, Duration::from_secs(20), |l| {
        l.contains("refused pid") && l.contains("rank 0 already joined job twice (pid ")
    });
    // The refused one said why and ended.
    wait_log(&job.err, Duration::from_secs(20), |l| {
        l.contains("counter:") && l.contains("refused: rank 0 already joined job twice")
    });

    let launcher = status["launcher"]["pid"].as_u64().unwrap() as u32;
    let secret = secret_of(launcher);
    let me = std::process::id();
    let hello = |rank| {
        Hello {
            rank,
            pid: me,
            secret: &secret,
        }
        .encode()
    };
    let why = refusal(knock(&env, "twice", Tag::Join, &hello(1)));
    let rank1 = status["ranks"][1]["pid"].as_u64().unwrap();
    assert_eq!(
        why,
        format!("rank 1 already joined job twice (pid {rank1}, running)")
    );
    let why = refusal(knock(&env, "twice", Tag::Join, &hello(2)));
    assert_eq!(
        why,
        "rank 2 is out of range: job twice has 2 ranks (0 to 1)"
    );
    // A pid that is not the caller's.
    let lie = Hello {
        rank: 0,
        pid: me + 1,
        secret: &secret,
    };
    let why = refusal(knock(&env, "twice", Tag::Join, &lie.encode()));
    assert!(why.contains("the kernel says pid"), "{why}");

    // The two that joined are the job.
    let (code, fin) = env.checkpoint("twice", &[]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(fin["ranks"].as_array().unwrap().len(), 2);
    env.cmd(&["stop", "--job", "twice"]);
    job.finish(Duration::from_secs(60));
    env.assert_clean();
}

#[test]
fn a_launcher_that_exits_before_every_rank_joined_ends_the_job_with_an_error() {
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    // Starts rank 0 only and leaves it behind.
    let script = format!("SNAPC_RANK=0 {exe} --run-for 60 & echo rank0=$!; sleep 1; exit 0");
    let job = run_launched(&env, "early", 3, &[], &script);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 1, "{out:?}");
    let rank0: i32 = out
        .iter()
        .find_map(|l| l.strip_prefix("rank0=")?.parse().ok())
        .expect("rank 0's pid");
    // Joined, it is terminated; not joined yet (a loaded machine), it
    // finds the daemon gone and ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(rank0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(rank0), "the rank left behind is ended");
    env.assert_clean();

    // A launcher that fails says so with its status.
    let job = run_launched(&env, "failed", 2, &[], "exit 3");
    let err = job.err.clone();
    let (code, _) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 3);
    let log = err.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains(
            "the launcher sh (pid ") && l.contains(") exited(3) before every rank joined: ranks 0, 1 never joined (the job has 2 ranks)")),
        "{log:?}"
    );
    env.assert_clean();
}

#[test]
fn a_joined_rank_that_dies_is_reported_by_rank_and_the_launcher_decides() {
    let env = Env::new();
    let script = shell_launcher(&[("0", "--run-for 60"), ("1", "--run-for 60")]);
    let job = run_launched(&env, "dies", 2, &[], &script);
    let status = env.ready(&job);
    let rank1 = status["ranks"][1]["pid"].as_i64().unwrap() as i32;
    kill(rank1, Signal::SIGKILL);
    wait_log(&job.err, Duration::from_secs(20), |l| {
        l.contains(&format!(
            "rank 1 (pid {rank1}) is gone: its link closed and its process ended"
        ))
    });
    // Not checkpointable without it; the shell launcher goes on.
    let (code, fin) = env.checkpoint("dies", &[]);
    assert_eq!(code, 1);
    assert!(
        fin["error"].as_str().unwrap().contains("rank 1 has gone"),
        "{fin}"
    );
    let s = env.status("dies").unwrap();
    assert_eq!(s["ranks"][1]["state"], "gone");
    assert_eq!(s["launcher"]["state"], "running");
    env.cmd(&["stop", "--job", "dies"]);
    let (code, _) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 143);
    env.assert_clean();
}

#[test]
fn a_rank_asks_for_a_restart_and_the_launcher_is_started_again_from_the_snapshot() {
    let env = Env::new();
    let steps = steps_for(3.0);
    let args = format!(
        "--steps {steps} --pace-us {PACE} --request-checkpoint-at 200000 \
         --request-restart-at 1000000 --restart-seq 0"
    );
    let script = shell_launcher(&[("0", &args), ("1", &args)]);
    let job = run_launched(&env, "again", 2, &[], &script);
    let log = job.err.clone();
    let (code, out) = job.finish(Duration::from_secs(90));
    assert_eq!(code, 0, "{out:?}");
    wait_log(&log, Duration::from_secs(5), |l| {
        l.contains("restart from snapshot 0: every rank runs again")
    });
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l.contains("launcher sh (pid ") && l.contains(") ended for the restart")),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains("failed")), "{log:?}");
    // Each rank ran twice: from 0, then from its part of snapshot 0.
    let mut starts: Vec<u64> = out
        .iter()
        .filter_map(|l| l.strip_prefix("start steps=")?.parse().ok())
        .collect();
    starts.sort_unstable();
    assert_eq!(starts.len(), 4, "{out:?}");
    assert_eq!(&starts[..2], &[0, 0]);
    assert!(starts[2] >= 200_000 || starts[3] >= 200_000, "{starts:?}");
    assert_eq!(results(&out), reference(2, &steps));
    env.assert_clean();
}

#[test]
fn a_rank_the_daemon_started_that_says_hello_anyway_is_answered() {
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    // Not a launcher: the shell is the rank, and the counter it becomes
    // has a secret from elsewhere.
    let script = format!("SNAPC_JOB_SECRET=from-elsewhere exec {exe} --run-for 60");
    let args = env.run_program_args("forked", 1, &[], &["sh", "-c", &script]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = env.spawn("forked", &args, &[]);
    let status = env.ready(&job);
    assert!(status["launcher"].is_null());
    let (code, fin) = env.checkpoint("forked", &[]);
    assert_eq!(code, 0, "{fin}");
    env.cmd(&["stop", "--job", "forked"]);
    job.finish(Duration::from_secs(60));
    env.assert_clean();
}
