//! End-to-end tests of the node runtime with real processes: `snapc run`
//! (daemon + launcher), `snapc checkpoint --job`, `status`, `restart`,
//! `quiesce`, `--interval`, application-initiated checkpoints, the faults of
//! the issue, and `snapc demo`. Each test has its own run directory and
//! store, and checks that no socket, FIFO or staging directory is left.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const SNAPC: &str = env!("CARGO_BIN_EXE_snapc");

struct Env {
    run: tempfile::TempDir,
    store: tempfile::TempDir,
}

struct Job {
    name: String,
    child: Child,
    lines: Receiver<String>,
    out: Vec<String>,
}

impl Env {
    fn new() -> Self {
        Self {
            run: tempfile::tempdir().unwrap(),
            store: tempfile::tempdir().unwrap(),
        }
    }

    fn snapc(&self) -> Command {
        let mut c = Command::new(SNAPC);
        c.env("SNAPC_RUN_DIR", self.run.path())
            .env_remove("SNAPC_DAEMON_SOCKET")
            .env_remove("SNAPC_RESTART_DIR")
            .env_remove("SNAPC_STORE");
        c
    }

    fn spawn(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Job {
        let mut c = self.snapc();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn snapc");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Job {
            name: name.into(),
            child,
            lines,
            out: Vec::new(),
        }
    }

    /// `snapc run -n N --job NAME --store STORE [extra] -- counter ARGS`.
    fn run(
        &self,
        name: &str,
        n: u32,
        extra: &[&str],
        counter: &[&str],
        env: &[(&str, &str)],
    ) -> Job {
        let exe = common::counter_exe();
        let n = n.to_string();
        let store = self.store.path().display().to_string();
        let exe = exe.display().to_string();
        let mut args = vec!["run", "-n", &n, "--job", name, "--store", &store];
        args.extend_from_slice(extra);
        args.push("--");
        args.push(&exe);
        args.extend_from_slice(counter);
        self.spawn(name, &args, env)
    }

    /// Runs a `snapc` command; its exit code, stdout JSON lines and stderr.
    fn cmd(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        let out = self.snapc().args(args).output().unwrap();
        let json = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (
            out.status.code().unwrap_or(-1),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    }

    fn status(&self, job: &str) -> Option<Value> {
        self.cmd(&["status", "--job", job, "--json"])
            .1
            .into_iter()
            .next()
    }

    /// Waits until every rank of `job` connected.
    fn ready(&self, job: &Job) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self
                .status(&job.name)
                .filter(|s| s["checkpointable"] == true)
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "job {} never became ready",
                job.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `snapc checkpoint --job J --wait --json [extra]`: exit code and the last event.
    fn checkpoint(&self, job: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["checkpoint", "--job", job, "--json"];
        args.extend_from_slice(extra);
        let (code, events, _) = self.cmd(&args);
        (code, events.last().cloned().unwrap_or(Value::Null))
    }

    fn job_root(&self, job: &str) -> PathBuf {
        self.store.path().join(job)
    }

    fn snapshots(&self, job: &str) -> Vec<u32> {
        snapc_posix::snapstore::complete_snapshots(&self.job_root(job))
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// Nothing left: no entry in the run directory, no FIFO or staging
    /// directory in the store.
    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.run.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left in the run directory: {left:?}");
        assert_no_leftovers(self.store.path());
    }
}

fn assert_no_leftovers(dir: &Path) {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !t.is_fifo() && !t.is_socket(),
            "left: {}",
            e.path().display()
        );
        assert!(
            !name.starts_with(".staging-"),
            "left: {}",
            e.path().display()
        );
        if t.is_dir() {
            assert_no_leftovers(&e.path());
        }
    }
}

impl Job {
    fn finish(mut self, within: Duration) -> (i32, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
                    self.out.push(l);
                }
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                return (code, self.out);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("job {} did not end; output: {:?}", self.name, self.out);
            }
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.out.push(l);
            }
        }
    }
}

fn results(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("] result "))
        .cloned()
        .collect();
    v.sort();
    v
}

fn pid_of(status: &Value, rank: usize) -> i32 {
    status["ranks"][rank]["pid"].as_i64().unwrap() as i32
}

fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// Steps and pace for a job of about `secs` seconds.
const PACE: &str = "2000";
fn steps_for(secs: f64) -> String {
    ((secs * 500.0) as u64 * 2000).to_string()
}

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
        let (code, fin) = env.checkpoint("basic", &["--wait"]);
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
    let meta = snapc_posix::snapstore::read_metadata(&env.job_root("basic").join("1")).unwrap();
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
    let job = env.run("q", 2, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    env.ready(&job);
    let (code, _, text) = env.cmd(&["quiesce", "start", "--job", "q"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(env.status("q").unwrap()["quiesced"], true);
    let (code, fin) = env.checkpoint("q", &["--wait"]);
    assert_ne!(code, 0, "a checkpoint while quiesced is refused: {fin}");
    assert_eq!(fin["event"], "error");
    let (code, _, text) = env.cmd(&["quiesce", "end", "--job", "q"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(env.status("q").unwrap()["quiesced"], false);
    let (code, fin) = env.checkpoint("q", &["--wait"]);
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
        &["--steps", &steps, "--pace-us", PACE],
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
        &[
            "--steps",
            &steps,
            "--pace-us",
            PACE,
            "--request-checkpoint-at",
            "100000",
        ],
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
        &["--steps", &steps, "--pace-us", PACE],
        &[("COUNTER_STALL", "150")],
    );
    env.ready(&job);
    let (code, started) = env.checkpoint("busy", &[]);
    assert_eq!(code, 0, "{started}");
    assert_eq!(started["event"], "started");
    let t = Instant::now();
    let (code, second) = env.checkpoint("busy", &["--wait"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_ne!(code, 0);
    assert_eq!(second["event"], "error");
    assert!(
        second["message"].as_str().unwrap().contains("in progress"),
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
        &["--steps", &steps, "--pace-us", PACE],
        &[("COUNTER_STALL", "150")],
    );
    let status = env.ready(&job);
    let (code, fin) = env.checkpoint("kill", &["--wait"]);
    assert_eq!(code, 0, "{fin}");
    // The second checkpoint is stalled in prepare when rank 1 dies.
    let waiter = env.spawn(
        "kill",
        &["checkpoint", "--job", "kill", "--wait", "--json"],
        &[],
    );
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
    let job = env.run("full", 2, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
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
    let (code, fin) = env.checkpoint("full", &["--wait"]);
    assert_ne!(code, 0);
    assert_eq!(fin["ok"], false, "{fin}");
    let err = fin["error"].as_str().unwrap();
    assert!(
        err.contains("snapshot store") && err.contains("Not a directory"),
        "{err}"
    );
    assert!(env.snapshots("full").is_empty());
    std::fs::remove_file(&staging).unwrap();
    std::fs::create_dir(&staging).unwrap();
    let (code, fin) = env.checkpoint("full", &["--wait"]);
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
fn daemon_killed_mid_checkpoint_leaves_ranks_running_and_snapshots_intact() {
    let env = Env::new();
    let steps = steps_for(2.5);
    let job = env.run(
        "dk",
        2,
        &[],
        &["--steps", &steps, "--pace-us", PACE],
        &[("COUNTER_STALL", "150"), ("SNAPC_TIMEOUT", "1")],
    );
    let status = env.ready(&job);
    let (code, fin) = env.checkpoint("dk", &["--wait"]);
    assert_eq!(code, 0, "{fin}");
    let (code, _) = env.checkpoint("dk", &[]);
    assert_eq!(code, 0);
    std::thread::sleep(Duration::from_millis(100));
    let daemon = status["daemon_pid"].as_i64().unwrap() as i32;
    kill(daemon, nix::sys::signal::Signal::SIGKILL);
    let (code, _) = job.finish(Duration::from_secs(10));
    assert_eq!(code, 137);
    let ranks = [pid_of(&status, 0), pid_of(&status, 1)];
    std::thread::sleep(Duration::from_millis(300));
    for pid in ranks {
        assert!(alive(pid), "rank pid {pid} died with its daemon");
    }
    // They carry on to their end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ranks.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "ranks did not finish");
        std::thread::sleep(Duration::from_millis(50));
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

fn alive(pid: i32) -> bool {
    // A zombie counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X')
    })
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
