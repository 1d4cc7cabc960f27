//! End-to-end tests of the node runtime with real processes: `snapc run`
//! (daemon + launcher), `snapc checkpoint --job`, `status`, `restart`,
//! `quiesce`, `--interval`, application-initiated checkpoints, the faults of
//! the issue, and `snapc demo`. Each test has its own run directory and
//! store, and checks that no socket, FIFO or staging directory is left.

mod common;

use common::jobs::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn run_checkpoint_status_restart_to_the_same_result() {
    let env = Env::new();
    let steps = steps_for(2.0);
    let counter = ["--steps", steps.as_str(), "--pace-us", PACE];
    let job = env.run("basic", 2, &[], &counter, &[]);
    let status = env.ready(&job);
    assert_eq!(status["ranks"].as_array().unwrap().len(), 2);
    let (code, _, text) = env.cmd(&["status", "--job", "basic"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("rank 1 pid") && text.contains("running"),
        "{text}"
    );
    for seq in 0..2 {
        let (code, fin) = env.checkpoint("basic", &[]);
        assert_eq!(code, 0, "{fin}");
        assert_eq!(fin["ok"], true);
        assert_eq!(fin["seq"], seq);
        assert!(
            fin["reference"]
                .as_str()
                .unwrap()
                .starts_with("snapc_global_snapshot_")
        );
    }
    let meta = snapc_runtime::snapstore::read_metadata(&env.job_root("basic").join("1")).unwrap();
    assert_eq!(meta["nranks"], 2);
    assert_eq!(meta["ranks"][1]["state"], "CONTINUE");
    assert!(meta["bytes"].as_u64().unwrap() > 0);
    let status = env.status("basic").unwrap();
    assert_eq!(status["last_snapshot"]["seq"], 1);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    let first = results(&out);
    assert_eq!(first.len(), 2, "{out:?}");
    assert!(
        out.iter().any(|l| l.starts_with("[1] checkpoint n=1")),
        "{out:?}"
    );
    // Restart from the latest (seq 1), then from seq 0 explicitly: same results.
    for path in [env.job_root("basic"), env.job_root("basic").join("0")] {
        let p = path.display().to_string();
        let job = env.spawn("basic", &["restart", &p], &[]);
        let (code, out) = job.finish(Duration::from_secs(60));
        assert_eq!(code, 0, "{out:?}");
        assert!(
            out.iter()
                .any(|l| l.starts_with("[0] start steps=") && !l.ends_with("=0")),
            "{out:?}"
        );
        assert_eq!(results(&out), first);
    }
    env.assert_clean();
}

#[test]
fn exit_status_is_the_worst_and_output_is_prefixed() {
    let env = Env::new();
    let store = env.store.path().display().to_string();
    let job = env.spawn(
        "sh",
        &[
            "run", "-n", "2", "--job", "sh", "--store", &store, "--", "sh", "-c",
            "echo hello from $SNAPC_RANK of $SNAPC_NRANKS; [ $SNAPC_RANK = 1 ] && sleep 0.3 && exit 7; exit 0",
        ],
        &[],
    );
    let (code, out) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 7, "{out:?}");
    assert!(
        out.contains(&"[0] hello from 0 of 2".to_string()),
        "{out:?}"
    );
    assert!(
        out.contains(&"[1] hello from 1 of 2".to_string()),
        "{out:?}"
    );
    env.assert_clean();
}

#[test]
fn quiesce_start_and_end_then_checkpoint() {
    let env = Env::new();
    let steps = steps_for(3.0);
    let job = env.run("q", 2, &[], &paced(&steps, &[]), &[]);
    env.ready(&job);
    let (code, _, text) = env.cmd(&["quiesce", "start", "--job", "q"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(env.status("q").unwrap()["quiesced"], true);
    let (code, fin) = env.checkpoint("q", &[]);
    assert_ne!(code, 0, "a checkpoint while quiesced is refused: {fin}");
    assert_eq!(fin["ok"], false, "{fin}");
    let (code, _, text) = env.cmd(&["quiesce", "end", "--job", "q"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(env.status("q").unwrap()["quiesced"], false);
    let (code, fin) = env.checkpoint("q", &[]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    assert!(out.iter().any(|l| l.starts_with("[1] quiesced")), "{out:?}");
    env.assert_clean();
}

#[test]
fn interval_checkpoints_and_keep() {
    let env = Env::new();
    let steps = steps_for(2.0);
    let job = env.run(
        "iv",
        2,
        &["--interval", "0.3", "--keep", "2"],
        &paced(&steps, &[]),
        &[],
    );
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    let taken = out
        .iter()
        .filter(|l| l.starts_with("[0] checkpoint n="))
        .count();
    assert!(taken >= 3, "{out:?}");
    let kept = env.snapshots("iv");
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[1] >= 2, "{kept:?}");
    env.assert_clean();
}

#[test]
fn application_initiated_checkpoint() {
    let env = Env::new();
    let steps = steps_for(1.5);
    let job = env.run(
        "app",
        3,
        &[],
        &paced(&steps, &["--request-checkpoint-at", "100000"]),
        &[],
    );
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    let line = out
        .iter()
        .find(|l| l.starts_with("[0] request checkpoint"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        line.contains("error=None seq=0 reference=snapc_global_snapshot_"),
        "{line}"
    );
    assert!(
        out.iter().any(|l| l.starts_with("[2] checkpoint n=0")),
        "{out:?}"
    );
    assert_eq!(env.snapshots("app"), vec![0]);
    env.assert_clean();
}

#[test]
fn second_checkpoint_while_one_runs_is_answered() {
    let env = Env::new();
    let steps = steps_for(3.0);
    // Each checkpoint's prepare says "not now" 150 times: about 0.3 s.
    let job = env.run(
        "busy",
        2,
        &[],
        &paced(&steps, &[]),
        &[("COUNTER_STALL", "150")],
    );
    env.ready(&job);
    let (code, started) = env.checkpoint("busy", &["--no-wait"]);
    assert_eq!(code, 0, "{started}");
    assert_eq!(started["ok"], true, "{started}");
    assert_eq!(started["seq"], 0, "{started}");
    let t = Instant::now();
    let (code, second) = env.checkpoint("busy", &[]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_ne!(code, 0);
    assert_eq!(second["ok"], false, "{second}");
    assert!(
        second["error"].as_str().unwrap().contains("in progress"),
        "{second}"
    );
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    assert_eq!(env.snapshots("busy"), vec![0], "{out:?}");
    env.assert_clean();
}

#[test]
fn rank_killed_mid_checkpoint_fails_it_and_the_job_restarts() {
    let env = Env::new();
    let steps = steps_for(3.0);
    let job = env.run(
        "kill",
        3,
        &[],
        &paced(&steps, &[]),
        &[("COUNTER_STALL", "150")],
    );
    let status = env.ready(&job);
    let (code, fin) = env.checkpoint("kill", &[]);
    assert_eq!(code, 0, "{fin}");
    // The second checkpoint is stalled in prepare when rank 1 dies.
    let waiter = env.spawn("kill", &["checkpoint", "--job", "kill", "--json"], &[]);
    std::thread::sleep(Duration::from_millis(100));
    kill(pid_of(&status, 1), nix::sys::signal::Signal::SIGKILL);
    let (code, events) = waiter.finish(Duration::from_secs(30));
    assert_ne!(code, 0);
    let fin: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(fin["ok"], false, "{fin}");
    assert!(fin["error"].as_str().unwrap().contains("rank 1"), "{fin}");
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 137, "the job's status is the killed rank's");
    assert_eq!(env.snapshots("kill"), vec![0], "no new latest snapshot");
    let root = env.job_root("kill").display().to_string();
    let job = env.spawn("kill", &["restart", &root], &[]);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(results(&out).len(), 3);
    env.assert_clean();
}

#[test]
fn unwritable_store_fails_the_checkpoint_clearly_and_the_next_one_works() {
    let env = Env::new();
    let steps = steps_for(2.0);
    let job = env.run("full", 2, &[], &paced(&steps, &[]), &[]);
    env.ready(&job);
    // The daemon's staging directory becomes a file: nothing can be written
    // there (as a full disk or a read-only store would refuse; this works as root too).
    let staging = std::fs::read_dir(env.job_root("full"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        .unwrap()
        .path();
    std::fs::remove_dir_all(&staging).unwrap();
    std::fs::write(&staging, b"not a directory").unwrap();
    let err = env.failed_checkpoint("full");
    assert!(
        err.contains("snapshot store") && err.contains("not a directory"),
        "{err}"
    );
    assert!(env.snapshots("full").is_empty());
    std::fs::remove_file(&staging).unwrap();
    std::fs::create_dir(&staging).unwrap();
    let (code, fin) = env.checkpoint("full", &[]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(
        env.snapshots("full"),
        vec![1],
        "seq 0 was used up by the failure"
    );
    let (code, _) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    env.assert_clean();
}

#[test]
fn daemon_killed_mid_checkpoint_takes_its_ranks_and_leaves_snapshots_intact() {
    let env = Env::new();
    let steps = steps_for(20.0);
    let job = env.run(
        "dk",
        2,
        &[],
        &paced(&steps, &[]),
        &[("COUNTER_STALL", "150"), ("SNAPC_TIMEOUT", "1")],
    );
    let status = env.ready(&job);
    let (code, fin) = env.checkpoint("dk", &[]);
    assert_eq!(code, 0, "{fin}");
    let (code, _) = env.checkpoint("dk", &["--no-wait"]);
    assert_eq!(code, 0);
    std::thread::sleep(Duration::from_millis(100));
    let daemon = status["daemon_pid"].as_i64().unwrap() as i32;
    kill(daemon, nix::sys::signal::Signal::SIGKILL);
    let (code, _) = job.finish(Duration::from_secs(10));
    assert_eq!(code, 137);
    // Its ranks end with it (nothing would supervise or checkpoint them).
    let ranks = [pid_of(&status, 0), pid_of(&status, 1)];
    let deadline = Instant::now() + Duration::from_secs(30);
    while ranks.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "ranks outlived their daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        env.snapshots("dk"),
        vec![0],
        "the earlier snapshot is intact and the only one"
    );
    // The dead daemon's sockets are removed by the next command that looks.
    let (code, _, text) = env.cmd(&["status"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no job is running"), "{text}");
    // Its staging directory goes when the job's next daemon starts.
    let root = env.job_root("dk").display().to_string();
    let job = env.spawn("dk", &["restart", &root], &[]);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

#[test]
fn the_demo_passes() {
    let env = Env::new();
    let out = env
        .snapc()
        .args(["demo", "--steps", "1500000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.ends_with(" match")).count(),
        4,
        "{text}"
    );
    assert_eq!(text.matches("checkpoint seq").count(), 3, "{text}");
    env.assert_clean();
}

#[test]
fn application_initiated_restart_relaunches_from_the_snapshot() {
    let env = Env::new();
    let steps = steps_for(2.0);
    let job = env.run(
        "ar",
        3,
        &[],
        &paced(
            &steps,
            &[
                "--request-checkpoint-at",
                "200000",
                "--request-restart-at",
                "1000000",
                "--restart-seq",
                "0",
            ],
        ),
        &[],
    );
    let log = Arc::clone(&job.err);
    let (code, out) = job.finish(Duration::from_secs(90));
    assert_eq!(code, 0, "{out:?}");
    // Rank 0 may be terminated before it prints that it asked.
    if let Some(line) = out.iter().find(|l| l.starts_with("[0] request restart")) {
        assert!(
            line.contains("seq=0 handle=snapc_global_snapshot_") && line.contains("error=None"),
            "{line}"
        );
    }
    let log = wait_log(&log, Duration::from_secs(5), |l| {
        l.contains("restart from snapshot 0: every rank runs again")
    });
    assert!(
        log.iter()
            .any(|l| l.contains("snapc::daemon: restart from snapshot 0 (")
                && l.ends_with(") requested: terminating the ranks")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("failed")),
        "the terminated ranks are no failure: {log:?}"
    );
    // Each rank ran twice: from 0, then from its state in snapshot 0.
    let snap = env.job_root("ar").join("0");
    for r in 0..3 {
        let state = std::fs::read_to_string(snap.join(format!("rank-{r}/state"))).unwrap();
        let saved: u64 = state.split_whitespace().next().unwrap().parse().unwrap();
        assert!(saved >= 200_000 || r != 0, "{state}");
        assert_eq!(starts(&out, r), vec![0, saved], "rank {r}: {out:?}");
        assert_eq!(
            out.iter()
                .filter(|l| l.starts_with(&format!("[{r}] pid=")))
                .count(),
            2
        );
    }
    assert_eq!(env.snapshots("ar"), vec![0]);
    // The job ended with the results of a run restarted from snapshot 0.
    let p = snap.display().to_string();
    let (code, again) = env
        .spawn("ar", &["restart", &p], &[])
        .finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{again:?}");
    assert_eq!(results(&out).len(), 3, "{out:?}");
    assert_eq!(results(&out), results(&again));
    env.assert_clean();
}

#[test]
fn application_restart_from_a_missing_or_incomplete_snapshot_fails_and_the_job_goes_on() {
    let env = Env::new();
    // Snapshot 3 was never completed (no metadata); snapshot 7 does not exist.
    std::fs::create_dir_all(env.job_root("nr").join("3/rank-0")).unwrap();
    let steps = steps_for(4.0);
    let mut first = None;
    for (seq, why) in [("3", "not a complete snapshot"), ("7", "does not exist")] {
        let job = env.run(
            "nr",
            2,
            &[],
            &paced(
                &steps,
                &["--request-restart-at", "200000", "--restart-seq", seq],
            ),
            &[],
        );
        let log = Arc::clone(&job.err);
        let status = env.ready(&job);
        let (code, out) = job.finish(Duration::from_secs(60));
        assert_eq!(code, 0, "{out:?}");
        let log = wait_log(&log, Duration::from_secs(5), |l| {
            l.contains("restart refused")
        });
        let refused = log.iter().find(|l| l.contains("restart refused")).unwrap();
        assert!(
            refused.contains(&format!("snapshot {seq}")) && refused.contains(why),
            "{refused}"
        );
        assert!(
            out.iter()
                .any(|l| l.starts_with(&format!("[0] request restart seq={seq}"))),
            "{out:?}"
        );
        // The same ranks ran to their end.
        for r in 0..2 {
            assert_eq!(starts(&out, r), vec![0], "{out:?}");
            let pid = pid_of(&status, r as usize);
            assert!(
                log.iter()
                    .any(|l| l.ends_with(&format!("snapc::daemon: rank {r} (pid {pid}) exited(0)"))),
                "{log:?}"
            );
        }
        let res = results(&out);
        assert_eq!(res.len(), 2);
        assert_eq!(*first.get_or_insert_with(|| res.clone()), res);
    }
    assert!(env.snapshots("nr").is_empty());
    std::fs::remove_dir_all(env.job_root("nr").join("3")).unwrap();
    env.assert_clean();
}

#[test]
fn closed_stdout_is_a_quiet_exit() {
    let env = Env::new();
    let steps = steps_for(2.0);
    let job = env.run("pipe", 2, &[], &paced(&steps, &[]), &[]);
    env.ready(&job);
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let store = env.job_root("pipe").display().to_string();
    let cases: [(&[&str], i32); 7] = [
        (&["status"], 0),
        (&["status", "--json"], 0),
        (&["status", "--job", "pipe"], 0),
        (&["checkpoint", "--job", "pipe"], 0),
        (&["checkpoint", "--job", "pipe", "--json"], 0),
        (
            &[
                "wire",
                "decode",
                "--channel",
                "to-daemon",
                "00000001 05 00000001 09 00000004",
            ],
            0,
        ),
        (&["--help"], 0),
    ];
    for (args, want) in cases {
        let out = env
            .snapc()
            .args(args)
            .stdout(w.try_clone().unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // Through a shell pipeline too.
    let sh = format!("{SNAPC} status | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}");
    let piped = Command::new("bash")
        .args(["-c", &sh])
        .env("SNAPC_RUN_DIR", env.run.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&piped.stdout).trim(), "0");
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("panicked"),
        "{piped:?}"
    );
    assert_eq!(env.snapshots("pipe"), vec![0, 1], "{store}");
    let (code, _) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0);
    env.assert_clean();
}

#[test]
fn foreign_connection_to_the_rank_socket_is_refused() {
    use snapc_core::wire::{Message, Request, RequestOp};
    use std::io::{Read, Write};
    let env = Env::new();
    let steps = steps_for(2.0);
    let job = env.run("pc", 2, &[], &paced(&steps, &[]), &[]);
    let log = Arc::clone(&job.err);
    let status = env.ready(&job);
    // This test process was not launched by the daemon: its REQUEST_OP
    // (a checkpoint, as rank 0 would send it) must not be acted on.
    let req = RequestOp {
        jobid: status["jobid"].as_u64().unwrap() as u32,
        request: Request::Checkpoint,
    };
    let mut buf = vec![0u8; req.buffer_len()];
    let n = req.emit(&mut buf).unwrap();
    let frame =
        snapc_posix::link::encode_frame(snapc_posix::link::Tag::SnapcFull, &buf[..n]).unwrap();
    let sock = env.run.path().join("pc.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let _ = s.write_all(&frame);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the daemon answered a foreign process: {other:?}"),
    }
    let me = std::process::id();
    wait_log(&log, Duration::from_secs(5), |l| {
        l.contains(&format!("refused a connection from pid {me} (uid "))
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = env.status("pc").unwrap();
    assert_eq!(after["checkpointable"], true, "{after}");
    assert!(
        after["in_progress"].is_null() && after["last_result"].is_null(),
        "{after}"
    );
    assert!(env.snapshots("pc").is_empty());
    for r in 0..2 {
        assert_eq!(after["ranks"][r]["state"], "running");
        assert_eq!(after["ranks"][r]["connected"], true);
    }
    // The job is served as before.
    let (code, fin) = env.checkpoint("pc", &[]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(results(&out).len(), 2);
    env.assert_clean();
}

/// A 64 KiB tmpfs, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self(dir))
    }

    /// Fills the file system, `keep` bytes aside in a file of their own
    /// (removed to free them); the filler's path.
    fn fill(&self, keep: usize) -> PathBuf {
        use std::io::Write;
        if keep > 0 {
            std::fs::write(self.0.path().join("kept"), vec![1u8; keep]).unwrap();
        }
        let path = self.0.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let page = [0u8; 4096];
        loop {
            match f.write_all(&page) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        let _ = f.sync_all();
        if keep > 0 {
            std::fs::remove_file(self.0.path().join("kept")).unwrap();
        }
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_store_fails_the_checkpoint_clearly_and_the_next_one_works() {
    let fs = match SmallFs::mount() {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "SKIPPED full_store_fails_the_checkpoint_clearly_and_the_next_one_works: cannot mount a tmpfs here ({e})"
            );
            return;
        }
    };
    let env = Env::new();
    let store = fs.0.path().display().to_string();
    let steps = steps_for(3.0);
    let exe = common::counter_exe().display().to_string();
    let job = env.spawn(
        "enospc",
        &[
            "run",
            "-n",
            "2",
            "--job",
            "enospc",
            "--store",
            &store,
            "--",
            &exe,
            "--steps",
            &steps,
            "--pace-us",
            PACE,
        ],
        &[],
    );
    let log = Arc::clone(&job.err);
    env.ready(&job);
    let root = fs.0.path().join("enospc");
    // 1. Not a byte left: the store refuses the snapshot at once.
    let filler = fs.fill(0);
    let err = env.failed_checkpoint("enospc");
    assert!(
        err.contains("snapshot store") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(snapc_runtime::snapstore::latest(&root).is_none());
    // 2. One page left: the store takes the snapshot, the ranks' writes fail.
    std::fs::remove_file(&filler).unwrap();
    let filler = fs.fill(4096);
    let err = env.failed_checkpoint("enospc");
    assert!(
        err.contains("is full") && err.contains("No space left on device"),
        "{err}"
    );
    wait_log(&log, Duration::from_secs(5), |l| {
        l.contains("No space left on device") && l.starts_with('[') && !l.starts_with("[snapc]")
    });
    assert!(
        snapc_runtime::snapstore::latest(&root).is_none(),
        "no new latest snapshot"
    );
    // 3. Space freed: the next checkpoint works.
    std::fs::remove_file(&filler).unwrap();
    let (code, fin) = env.checkpoint("enospc", &[]);
    assert_eq!(code, 0, "{fin}");
    let kept = snapc_runtime::snapstore::complete_snapshots(&root);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(fin["seq"], kept[0].0);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
    assert_no_leftovers(fs.0.path());
}
