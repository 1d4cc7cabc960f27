//! `snapc demo`: the whole story with real processes, driven through the
//! `snapc` command itself (each step is a `snapc` subprocess, as a person
//! would type it):
//!
//! 1. an uninterrupted reference run of an N-rank `counter --steps` job;
//! 2. the same job under `snapc run`; three `snapc checkpoint --wait` while
//!    it runs; then one rank killed with SIGKILL, which ends the job;
//! 3. `snapc restart <store>/<job>` from the latest complete snapshot, run to
//!    the end;
//! 4. each rank's final `result` line compared with the reference run.
//!
//! It prints a short report and exits 0 only if every rank's result matches.
//! Its sockets live in a private run directory and its snapshots in a
//! temporary store (unless `--store` is given), both removed at the end.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Microseconds each rank sleeps after a slice of 2 000 steps.
const PACE_US: u64 = 2_000;

pub(crate) struct Job {
    child: Child,
    lines: Receiver<String>,
    out: Vec<String>,
    /// The daemon's log (its standard error).
    log: Arc<Mutex<Vec<String>>>,
}

impl Job {
    /// Why the job ended early, from its exit status and the daemon's last
    /// log lines.
    pub(crate) fn ended(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        let tail: Vec<&str> = log
            .iter()
            .rev()
            .filter(|l| l.contains(" snapc::daemon: ") || l.starts_with("snapc:"))
            .take(3)
            .map(String::as_str)
            .collect();
        let said = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
        Some(format!(
            "status {}: {said}",
            status.code().map_or("-".into(), |c| c.to_string())
        ))
    }

    /// Collects output lines until the job exits (or `deadline`).
    pub(crate) fn finish(mut self, deadline: Instant) -> Result<(i32, Vec<String>), String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // The reader thread ends at EOF.
                    while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
                        self.out.push(l);
                    }
                    use std::os::unix::process::ExitStatusExt;
                    let code = status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                    return Ok((code, self.out));
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err("the job did not end in time".into());
            }
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.out.push(l);
            }
        }
    }
}

pub(crate) struct Demo {
    pub(crate) exe: PathBuf,
    pub(crate) run_dir: PathBuf,
    pub(crate) verbose: bool,
}

impl Demo {
    pub(crate) fn snapc(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("SNAPC_RUN_DIR", &self.run_dir)
            .env_remove("SNAPC_DAEMON_SOCKET")
            .env_remove("SNAPC_RESTART_DIR");
        c
    }

    pub(crate) fn spawn(&self, args: &[String]) -> Result<Job, String> {
        self.spawn_env(args, &[])
    }

    /// [`Demo::spawn`] with more environment.
    pub(crate) fn spawn_env(&self, args: &[String], env: &[(&str, &str)]) -> Result<Job, String> {
        let mut cmd = self.snapc();
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting snapc: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let verbose = self.verbose;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if verbose {
                    crate::errln!("{line}");
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Job {
            child,
            lines,
            out: Vec::new(),
            log,
        })
    }

    /// Runs a `snapc ... --json` command to its end; its JSON document.
    pub(crate) fn json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self
            .snapc()
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("snapc {}: {e}", args.join(" ")))
    }

    /// Waits until every rank of `job` connected (or joined), at most
    /// `within`; its status. `length` names the option that makes the
    /// job longer, should it end first.
    pub(crate) fn wait_ready(
        &self,
        job: &str,
        main: &mut Job,
        within: Duration,
        length: &str,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.status(job).filter(|s| s["checkpointable"] == true) {
                return Ok(s);
            }
            if let Some(why) = main.ended() {
                return Err(format!(
                    "the job ended before it could be checkpointed ({why}); with {length} it may be too short"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the job's ranks did not all connect within {} s: {}",
                    within.as_secs(),
                    self.status(job)
                        .and_then(|s| s["not_checkpointable"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "its daemon does not answer".into())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checkpoint `i` of `job` (`snapc checkpoint --json`): its result, or
    /// why it failed (the job's end, if it ended).
    pub(crate) fn checkpoint(
        &self,
        job: &str,
        main: &mut Job,
        i: usize,
        length: &str,
    ) -> Result<Value, String> {
        let fin = self.json(&["checkpoint", "--job", job, "--json"])?;
        if fin["ok"] == true {
            return Ok(fin);
        }
        if let Some(why) = main.ended() {
            return Err(format!(
                "the job ended before checkpoint {i} ({why}); with {length} it is too short for three checkpoints"
            ));
        }
        Err(format!(
            "checkpoint {i} failed: {}",
            fin["error"].as_str().unwrap_or("?")
        ))
    }

    pub(crate) fn status(&self, job: &str) -> Option<Value> {
        self.json(&["status", "--job", job, "--json"])
            .ok()
            .filter(|s| s["ok"] == true)
    }
}

/// `rank -> (steps, checksum)` from `[r] result steps=S checksum=C` lines.
fn results(lines: &[String]) -> BTreeMap<u32, String> {
    lines
        .iter()
        .filter_map(|l| {
            let (rank, rest) = l.strip_prefix('[')?.split_once("] ")?;
            let r = rest.strip_prefix("result ")?;
            Some((rank.parse().ok()?, r.to_string()))
        })
        .collect()
}

fn start_steps(lines: &[String]) -> BTreeMap<u32, String> {
    lines
        .iter()
        .filter_map(|l| {
            let (rank, rest) = l.strip_prefix('[')?.split_once("] ")?;
            Some((
                rank.parse().ok()?,
                rest.strip_prefix("start steps=")?.to_string(),
            ))
        })
        .collect()
}

/// Runs the demo; exits 0 only if the restarted job's results match.
pub fn main(store: Option<PathBuf>, ranks: u32, steps: u64) -> ExitCode {
    let max = crate::daemon::MAX_RANKS;
    if ranks < 2 || ranks as usize > max {
        crate::errln!(
            "snapc demo: -n {ranks}: the demo needs 2 to {max} ranks (one is killed; one daemon runs at most {max})"
        );
        return ExitCode::from(crate::cli::EXIT_USAGE);
    }
    match run(store, ranks, steps) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            crate::errln!("snapc demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(store: Option<PathBuf>, ranks: u32, steps: u64) -> Result<bool, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating snapc: {e}"))?;
    let tmp = std::env::temp_dir().join(format!("snapc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let run_dir = tmp.join("run");
    let keep_store = store.is_some();
    let store = store.unwrap_or_else(|| tmp.join("store"));
    let demo = Demo {
        exe,
        run_dir: run_dir.clone(),
        verbose: std::env::var_os("SNAPC_DEMO_VERBOSE").is_some(),
    };
    let result = story(&demo, &store, &tmp, ranks, steps);
    let _ = std::fs::remove_dir_all(&run_dir);
    if keep_store {
        let _ = std::fs::remove_dir_all(tmp.join("ref"));
        let _ = std::fs::remove_dir(&tmp);
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn story(demo: &Demo, store: &Path, tmp: &Path, ranks: u32, steps: u64) -> Result<bool, String> {
    let job = "demo";
    let program = |store: &Path, job: &str| -> Vec<String> {
        let mut v: Vec<String> = ["run", "-n", &ranks.to_string(), "--job", job, "--store"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(store.display().to_string());
        v.push("--".into());
        v.push(demo.exe.display().to_string());
        v.extend(
            [
                "counter",
                "--steps",
                &steps.to_string(),
                "--pace-us",
                &PACE_US.to_string(),
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v
    };
    crate::outln!("snapc demo: {ranks} ranks of `counter --steps {steps}`");
    let t0 = Instant::now();
    // The reference run goes alongside: the ranks mostly sleep.
    let reference = demo.spawn(&program(&tmp.join("ref"), "demo-ref"))?;
    let mut main = demo.spawn(&program(store, job))?;
    let length = format!("--steps {steps}");
    let status = demo.wait_ready(job, &mut main, Duration::from_secs(30), &length)?;
    let started = t0.elapsed();
    crate::outln!("  started in {:.0} ms", started.as_secs_f64() * 1000.0);
    let mut snapshots = Vec::new();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        let fin = demo.checkpoint(job, &mut main, i, &length)?;
        crate::outln!(
            "  checkpoint seq {}: {} bytes in {:.1} ms -> {}",
            fin["seq"],
            fin["bytes"],
            fin["duration_ms"].as_f64().unwrap_or(0.0),
            fin["dir"].as_str().unwrap_or("?")
        );
        snapshots.push(fin);
    }
    // Kill one rank: the job ends, as an MPI job does.
    let victim = status["ranks"][1]["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or("no pid for rank 1")?;
    let killed_at = t0.elapsed();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("killing rank 1: {e}"))?;
    crate::outln!("  rank 1 (pid {victim}) killed with SIGKILL");
    let (code, out) = main.finish(Instant::now() + Duration::from_secs(60))?;
    let before = results(&out);
    crate::outln!(
        "  job ended with status {code}; {} of {ranks} ranks had finished",
        before.len()
    );
    // Restart from the latest complete snapshot.
    let t_restart = Instant::now();
    let restarted = demo.spawn(&["restart".to_string(), store.join(job).display().to_string()])?;
    let (rcode, rout) = restarted.finish(Instant::now() + Duration::from_secs(120))?;
    let restart_time = t_restart.elapsed();
    let starts = start_steps(&rout);
    crate::outln!(
        "  restarted from {} (ranks resumed at steps {:?}); ran to the end in {:.0} ms, status {rcode}",
        crate::snapstore::latest(&store.join(job))
            .map_or("?".into(), |(s, d)| format!("seq {s} ({})", d.display())),
        starts.values().collect::<Vec<_>>(),
        restart_time.as_secs_f64() * 1000.0
    );
    let (refcode, refout) = reference.finish(Instant::now() + Duration::from_secs(120))?;
    let expected = results(&refout);
    let got = results(&rout);
    crate::outln!("  reference run: status {refcode}");
    let mut ok = rcode == 0 && refcode == 0 && expected.len() == ranks as usize;
    for r in 0..ranks {
        let (e, g) = (expected.get(&r), got.get(&r));
        let same = e.is_some() && e == g;
        ok &= same;
        crate::outln!(
            "  rank {r}: restarted {}  reference {}  {}",
            g.map_or("-", String::as_str),
            e.map_or("-", String::as_str),
            if same { "match" } else { "DIFFER" }
        );
    }
    let resumed = starts.values().all(|s| s != "0");
    ok &= resumed && starts.len() == ranks as usize;
    crate::outln!(
        "  stages: start {:.0} ms, checkpoints {:.0} ms, killed at {:.0} ms, restart {:.0} ms, total {:.0} ms",
        started.as_secs_f64() * 1000.0,
        snapshots
            .iter()
            .map(|s| s["duration_ms"].as_f64().unwrap_or(0.0))
            .sum::<f64>(),
        killed_at.as_secs_f64() * 1000.0,
        restart_time.as_secs_f64() * 1000.0,
        t0.elapsed().as_secs_f64() * 1000.0
    );
    crate::outln!(
        "snapc demo: {}",
        if ok {
            "PASS (the restarted job's results match the uninterrupted run)"
        } else {
            "FAIL"
        }
    );
    Ok(ok)
}
