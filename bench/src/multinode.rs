//! Jobs across nodes: the checkpoint time of 1, 2 and 3 nodes x 2 ranks on
//! the Slurm test cluster (tests/cluster/, skipped without root and Slurm),
//! and the coordinator's cost per node with many node agents on this
//! machine (`snapc run --local-nodes N`, one rank each).
//!
//! Both run the real `snapc` and `counter` executables (built here with
//! `cargo build --release`), checkpointed through `snapc checkpoint`; the
//! time is the coordinator's own (`duration_ms` of the result: JOB_STATE
//! RUNNING out to the operation's end, the snapshot published), the
//! coordinator's CPU time from `/proc/<pid>/schedstat` over the rounds.

use crate::stats::{Samples, us};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Measured checkpoints per job (after one unmeasured).
pub const ROUNDS: usize = 15;
/// Node agents of the scale run.
pub const AGENTS: [u32; 3] = [4, 16, 64];

/// `snapc` and `counter` of this build (release when the bench is).
fn executables() -> Result<(PathBuf, PathBuf), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = me.parent().ok_or("no directory")?.to_path_buf();
    let release = dir.ends_with("release");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "snapc-runtime",
        "--bins",
        "--examples",
    ]);
    if release {
        cmd.arg("--release");
    }
    let ok = cmd.status().map_err(|e| e.to_string())?.success();
    if !ok {
        return Err("building snapc and the counter failed".into());
    }
    Ok((dir.join("snapc"), dir.join("examples").join("counter")))
}

/// A job under test, its run directory and store.
struct Job {
    child: Child,
    snapc: PathBuf,
    run: PathBuf,
    name: String,
}

impl Job {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.snapc);
        c.env("SNAPC_RUN_DIR", &self.run)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn status(&self) -> Option<Value> {
        let out = self
            .command()
            .args(["status", "--job", &self.name, "--json"])
            .output()
            .ok()?;
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .filter(|v| v["ok"] == true)
    }

    fn ready(&self, within: Duration) -> Result<Value, String> {
        let until = Instant::now() + within;
        loop {
            if let Some(s) = self.status().filter(|s| s["checkpointable"] == true) {
                return Ok(s);
            }
            if Instant::now() > until {
                return Err(format!("job {} never became ready", self.name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One checkpoint: the coordinator's duration.
    fn checkpoint(&self) -> Result<Duration, String> {
        let out = self
            .command()
            .args([
                "checkpoint",
                "--job",
                &self.name,
                "--json",
                "--timeout",
                "300",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        if v["ok"] != true {
            return Err(format!("checkpoint of {}: {v}", self.name));
        }
        let ms = v["duration_ms"].as_f64().ok_or("no duration")?;
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }

    fn stop(mut self) {
        let _ = self
            .command()
            .args(["stop", "--job", &self.name, "--force"])
            .stdout(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Nanoseconds process `pid` ran (user and system), from schedstat.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Checkpoints `job` [`ROUNDS`] times (after one unmeasured): the
/// durations and the coordinator's CPU time over them.
fn rounds(job: &Job, pid: u32) -> Result<(Samples, Duration), String> {
    job.checkpoint()?;
    let mut s = Samples::default();
    let before = cpu_ns(pid);
    for _ in 0..ROUNDS {
        s.push(job.checkpoint()?);
    }
    let cpu = Duration::from_nanos(cpu_ns(pid).saturating_sub(before));
    Ok((s, cpu))
}

/// The counter, long enough for every round, with a safe point (a slice
/// of work) every `pace_us`: the signal waits for the next one.
fn counter_args(counter: &Path, pace_us: u32) -> Vec<String> {
    [
        counter.display().to_string(),
        "--steps".into(),
        "4000000000".into(),
        "--pace-us".into(),
        pace_us.to_string(),
    ]
    .to_vec()
}

pub fn section(md: &mut String) -> Result<(), String> {
    let (snapc, counter) = executables()?;
    let _ = writeln!(md, "## Across nodes\n");
    slurm(md, &snapc, &counter)?;
    scale(md, &snapc, &counter)
}

/// 1, 2 and 3 nodes x 2 ranks on the Slurm test cluster, one run.
fn slurm(md: &mut String, snapc: &Path, counter: &Path) -> Result<(), String> {
    let Some(c) = snapc_test_cluster::Cluster::up(3) else {
        let _ = writeln!(
            md,
            "Checkpoint time on 1 to 3 nodes: skipped (the Slurm test cluster needs root and Slurm; \
             tests/cluster/README.md).\n"
        );
        return Ok(());
    };
    let store = c.work_dir().join("bench-store");
    let run = c.work_dir().join("bench-run");
    let mut rows = Vec::new();
    for nodes in 1..=3u32 {
        eprintln!("  {nodes} node(s) x 2 ranks on Slurm");
        let name = format!("bench{nodes}");
        let mut cmd = c.command("salloc");
        cmd.args([
            &format!("-N{nodes}"),
            "-w",
            &format!("node[1-{nodes}]"),
            "--ntasks-per-node=2",
        ])
        .arg(snapc)
        .args([
            "run",
            "-n",
            &(2 * nodes).to_string(),
            "--job",
            &name,
            "--store",
        ])
        .arg(&store)
        .arg("--")
        .args(counter_args(counter, 2000))
        .env("SNAPC_RUN_DIR", &run)
        .env("SNAPC_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("salloc: {e}"))?;
        let job = Job {
            child,
            snapc: snapc.to_path_buf(),
            run: run.clone(),
            name,
        };
        let status = job.ready(Duration::from_secs(120))?;
        let pid = status["daemon_pid"].as_u64().unwrap_or(0) as u32;
        let measured = rounds(&job, pid);
        job.stop();
        let (s, _) = measured?;
        rows.push((nodes, s));
    }
    let _ = writeln!(
        md,
        "Checkpoint time of a job of 1, 2 and 3 nodes x 2 ranks on the Slurm test cluster \
         (tests/cluster/: each node a network, UTS and mount namespace on one machine, so the \
         nodes share its 2 cores and file system): `salloc -N K --ntasks-per-node=2 snapc run \
         -n 2K -- counter` (a safe point every 2 ms), the coordinator in the login \
         namespace and an agent on each node over TCP; {ROUNDS} checkpoints each after one \
         unmeasured, the coordinator's duration (JOB_STATE RUNNING out to the snapshot \
         published).\n"
    );
    let _ = writeln!(
        md,
        "| nodes x ranks | p50 | p90 | max |\n|---|---:|---:|---:|"
    );
    for (n, s) in &rows {
        let _ = writeln!(
            md,
            "| {n} x 2 | {} | {} | {} |",
            us(s.p50()),
            us(s.pct(90.0)),
            us(s.pct(100.0))
        );
    }
    let _ = writeln!(md);
    Ok(())
}

/// Many node agents on this machine, one rank each: the coordinator's
/// CPU time and the checkpoint's duration per node.
fn scale(md: &mut String, snapc: &Path, counter: &Path) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &n in &AGENTS {
        eprintln!("  {n} local node agents");
        let run = scratch.path().join(format!("run{n}"));
        let store = scratch.path().join("store");
        let name = format!("scale{n}");
        let mut cmd = Command::new(snapc);
        cmd.env("SNAPC_RUN_DIR", &run)
            .env("SNAPC_LOG", "warn")
            .args(["run", "-n", &n.to_string(), "--job", &name, "--store"])
            .arg(&store)
            .args(["--local-nodes", &n.to_string(), "--connect-timeout", "120"])
            .arg("--")
            .args(counter_args(counter, 5000))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("snapc run: {e}"))?;
        let job = Job {
            child,
            snapc: snapc.to_path_buf(),
            run,
            name,
        };
        let status = job.ready(Duration::from_secs(180))?;
        let pid = status["daemon_pid"].as_u64().unwrap_or(0) as u32;
        let measured = rounds(&job, pid);
        job.stop();
        let (s, cpu) = measured?;
        rows.push((n, s, cpu));
    }
    let _ = writeln!(
        md,
        "The coordinator's cost per node: `snapc run --local-nodes N -n N -- counter` on this \
         machine (N `snapc node` agents, one rank each with a safe point every 5 ms, every \
         process on the same 2 cores), \
         {ROUNDS} checkpoints after one unmeasured. CPU is the coordinator's own (user and \
         system, `/proc/<pid>/schedstat`) over the rounds, per checkpoint and per node; the \
         duration is the coordinator's, and it includes every agent's and rank's work.\n"
    );
    let _ = writeln!(
        md,
        "| nodes | checkpoint p50 | p90 | p50 per node | coordinator CPU per checkpoint | per node |\n|---:|---:|---:|---:|---:|---:|"
    );
    for (n, s, cpu) in &rows {
        let per_ckpt = cpu.as_secs_f64() * 1e6 / ROUNDS as f64;
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} | {} | {} |",
            us(s.p50()),
            us(s.pct(90.0)),
            us(s.p50() / f64::from(*n)),
            us(per_ckpt),
            us(per_ckpt / f64::from(*n)),
        );
    }
    let _ = writeln!(md);
    Ok(())
}
