//! Jobs under `snapc run` for the real-process tests: a private run
//! directory and store per test, the `snapc` command, and helpers around
//! jobs, their output and their snapshots.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SNAPC: &str = env!("CARGO_BIN_EXE_snapc");

pub struct Env {
    pub run: tempfile::TempDir,
    pub store: tempfile::TempDir,
}

pub struct Job {
    pub name: String,
    pub child: Child,
    pub lines: Receiver<String>,
    pub out: Vec<String>,
    /// Its standard error (the daemon's log), also echoed to ours.
    pub err: Arc<Mutex<Vec<String>>>,
}

impl Env {
    pub fn new() -> Self {
        Self {
            run: tempfile::tempdir().unwrap(),
            store: tempfile::tempdir().unwrap(),
        }
    }

    pub fn snapc(&self) -> Command {
        let mut c = Command::new(SNAPC);
        c.env("SNAPC_RUN_DIR", self.run.path())
            .env_remove("SNAPC_DAEMON_SOCKET")
            .env_remove("SNAPC_RESTART_DIR")
            .env_remove("SNAPC_STORE");
        c
    }

    pub fn spawn(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Job {
        let mut c = self.snapc();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Self::spawn_cmd(name, c)
    }

    /// Starts `c` (a `snapc` command line), collecting its output.
    pub fn spawn_cmd(name: &str, mut c: Command) -> Job {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn snapc");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let err = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&err);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                sink.lock().unwrap().push(line);
            }
        });
        Job {
            name: name.into(),
            child,
            lines: snapc_test_procs::lines(stdout),
            out: Vec::new(),
            err,
        }
    }

    /// The arguments of `snapc run -n N --job NAME --store STORE [extra] -- counter ARGS`.
    pub fn run_args(&self, name: &str, n: u32, extra: &[&str], counter: &[&str]) -> Vec<String> {
        let exe = super::counter_exe().display().to_string();
        let program: Vec<&str> = std::iter::once(exe.as_str())
            .chain(counter.iter().copied())
            .collect();
        self.run_program_args(name, n, extra, &program)
    }

    /// The arguments of `snapc run -n N --job NAME --store STORE [extra] -- PROGRAM...`.
    pub fn run_program_args(
        &self,
        name: &str,
        n: u32,
        extra: &[&str],
        program: &[&str],
    ) -> Vec<String> {
        let mut args: Vec<String> = ["run", "-n", &n.to_string(), "--job", name, "--store"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.store.path().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(program.iter().map(|s| s.to_string()));
        args
    }

    /// `snapc run -n N --job NAME --store STORE [extra] -- counter ARGS`.
    pub fn run(
        &self,
        name: &str,
        n: u32,
        extra: &[&str],
        counter: &[&str],
        env: &[(&str, &str)],
    ) -> Job {
        let args = self.run_args(name, n, extra, counter);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(name, &args, env)
    }

    /// Runs a `snapc` command; its exit code, stdout JSON lines and stderr.
    pub fn cmd(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        self.cmd_env(args, &[])
    }

    /// [`Env::cmd`] with more environment.
    pub fn cmd_env(
        &self,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> (i32, Vec<Value>, String) {
        let mut c = self.snapc();
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
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

    /// Runs `snapc ARGS` (which include `--json`): its exit code and its
    /// standard output, which must be exactly one JSON document.
    pub fn json(&self, args: &[&str]) -> (i32, Value) {
        let out = self.snapc().args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let doc = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "snapc {args:?}: not one JSON document ({e}): {text:?}; stderr {:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), doc)
    }

    /// The job's status (`status --job J --json`), if its daemon answers.
    pub fn status(&self, job: &str) -> Option<Value> {
        Some(self.json(&["status", "--job", job, "--json"]).1).filter(|s| s["ok"] == true)
    }

    /// Waits until every rank of `job` connected.
    pub fn ready(&self, job: &Job) -> Value {
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

    /// `snapc checkpoint --job J --json [extra]`: exit code and the result.
    pub fn checkpoint(&self, job: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["checkpoint", "--job", job, "--json"];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// `snapc checkpoint --job J --json`, which must fail: its error.
    pub fn failed_checkpoint(&self, job: &str) -> String {
        let (code, fin) = self.checkpoint(job, &[]);
        assert_ne!(code, 0);
        assert_eq!(fin["ok"], false, "{fin}");
        fin["error"].as_str().unwrap().to_string()
    }

    pub fn job_root(&self, job: &str) -> PathBuf {
        self.store.path().join(job)
    }

    pub fn snapshots(&self, job: &str) -> Vec<u64> {
        snapc_runtime::snapstore::complete_snapshots(&self.job_root(job))
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// Nothing left: no entry in the run directory, no FIFO or staging
    /// directory in the store.
    pub fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.run.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left in the run directory: {left:?}");
        assert_no_leftovers(self.store.path());
    }
}

pub fn assert_no_leftovers(dir: &Path) {
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
    pub fn finish(mut self, within: Duration) -> (i32, Vec<String>) {
        let what = format!("job {}", self.name);
        let code =
            snapc_test_procs::finish(&mut self.child, &self.lines, &mut self.out, within, &what);
        (code, self.out)
    }
}

pub fn results(lines: &[String]) -> Vec<String> {
    snapc_test_procs::sorted(lines, |l| l.contains("] result "))
}

/// The last `result` line of each rank, sorted: a run cut short (a
/// checkpoint with term, a rank that migrated) prints where it stopped
/// before the run that finishes the job does.
pub fn final_results(lines: &[String]) -> Vec<String> {
    let mut last: std::collections::BTreeMap<&str, &String> = std::collections::BTreeMap::new();
    for l in lines {
        if let Some((rank, _)) = l.split_once("] result ") {
            last.insert(rank, l);
        }
    }
    let mut v: Vec<String> = last.into_values().cloned().collect();
    v.sort();
    v
}

pub fn pid_of(status: &Value, rank: usize) -> i32 {
    status["ranks"][rank]["pid"].as_i64().unwrap() as i32
}

pub fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// Steps and pace for a job of about `secs` seconds.
pub const PACE: &str = "2000";
pub fn steps_for(secs: f64) -> String {
    ((secs * 500.0) as u64 * 2000).to_string()
}

/// The counter's arguments for `steps` steps at [`PACE`], then `more`.
pub fn paced<'a>(steps: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--steps", steps, "--pace-us", PACE];
    args.extend_from_slice(more);
    args
}

pub fn alive(pid: i32) -> bool {
    // A zombie counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X')
    })
}

/// Waits until a line of `log` satisfies `pred`; all of it.
pub fn wait_log(
    log: &Arc<Mutex<Vec<String>>>,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let lines = log.lock().unwrap().clone();
        if lines.iter().any(|l| pred(l)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "not in the log: {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a line of `log` satisfies `pred`; the first such line.
pub fn wait_log_line(
    log: &Arc<Mutex<Vec<String>>>,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let lines = wait_log(log, within, &pred);
    lines.into_iter().find(|l| pred(l)).unwrap()
}

/// The `start steps=` of each rank's runs, in order.
pub fn starts(out: &[String], rank: u32) -> Vec<u64> {
    let prefix = format!("[{rank}] start steps=");
    out.iter()
        .filter_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .collect()
}
