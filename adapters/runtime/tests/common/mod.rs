//! Shared by the real-process tests: the `counter` example under test and a
//! few helpers around it.
#![allow(dead_code)] // each test file uses its own part

pub mod jobs;
pub mod mpi;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_core::wire::ChannelNames;
use snapc_posix::fifo::{Channel, PipeDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub const START: i32 = 0;
pub const CONTINUE: i32 = 4;
pub const TERM: i32 = 5;

pub struct Proc {
    pub child: Child,
    pub pid: u32,
    lines: Receiver<String>,
    pub pipes: PathBuf,
    pub store: PathBuf,
    /// Open fds once started: a handshake must leave exactly these.
    pub baseline_fds: usize,
    /// The `start steps=<n>` line (n > 0 after a restart).
    pub start: String,
    /// Directories this process owns (removed with it).
    _dirs: Option<(tempfile::TempDir, tempfile::TempDir)>,
}

/// The example binary, rebuilt once per test run so that a filtered
/// `cargo test --test handshake` (which does not build examples) never runs a
/// stale one.
pub fn counter_exe() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let snapc = Path::new(env!("CARGO_BIN_EXE_snapc"));
            let release = snapc.parent().is_some_and(|d| d.ends_with("release"));
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "snapc-runtime",
                "--example",
                "counter",
            ]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .expect("run cargo to build the counter example");
            assert!(status.success(), "building the counter example failed");
            std::path::Path::new(env!("CARGO_BIN_EXE_snapc"))
                .with_file_name("examples")
                .join("counter")
        })
        .clone()
}

/// A counter with its own pipe directory and store.
pub fn counter(env: &[(&str, &str)]) -> Proc {
    let pipes = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut p = counter_in(pipes.path(), store.path(), env);
    p._dirs = Some((pipes, store));
    p
}

/// A counter using `pipes` and `store`, which it shares with others.
pub fn counter_in(pipes: &Path, store: &Path, env: &[(&str, &str)]) -> Proc {
    // Cargo builds the examples beside the binaries for integration tests.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_snapc"))
        .with_file_name("examples")
        .join("counter");
    let mut cmd = Command::new(exe);
    cmd.args(["--run-for", "60"])
        .env("SNAPC_PIPE_DIR", pipes)
        .env("SNAPC_STORE", store)
        .env("SNAPC_TIMEOUT", "1")
        .env_remove("SNAPC_DAEMON_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("spawn counter (cargo builds examples for tests)");
    let lines = snapc_test_procs::lines(child.stdout.take().unwrap());
    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("pid line");
    let pid = first
        .strip_prefix("pid=")
        .expect("first line is pid=")
        .parse()
        .unwrap();
    let start = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(start.starts_with("start "), "{start}");
    let mut p = Proc {
        child,
        pid,
        lines,
        pipes: pipes.to_owned(),
        store: store.to_owned(),
        baseline_fds: 0,
        start,
        _dirs: None,
    };
    p.baseline_fds = p.fds();
    p
}

impl Proc {
    pub fn dir(&self) -> PipeDir {
        PipeDir::open(&self.pipes).unwrap()
    }

    pub fn signal(&self) {
        kill(Pid::from_raw(self.pid as i32), Signal::SIGUSR1).unwrap();
    }

    /// Opens the local side of handshake `n`.
    pub fn open(&self, n: u32) -> Channel {
        Channel::open_local(&self.dir(), ChannelNames { pid: self.pid, n }, soon(5000))
            .expect("the process opened its FIFOs")
    }

    pub fn line(&self, prefix: &str) -> String {
        snapc_test_procs::line_starting(&self.lines, prefix, Duration::from_secs(10))
    }

    /// A line, if one comes within `within` (None: the process said nothing).
    pub fn try_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    pub fn snapshot(&self, handle: u32) -> std::path::PathBuf {
        snapc_posix::app::standalone_snapshot_dir(&self.store, handle, self.pid)
    }

    pub fn alive(&self) -> bool {
        kill(Pid::from_raw(self.pid as i32), None).is_ok()
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .count()
    }

    pub fn pipe_dir_entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.pipes)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// The process is alive, its pipe directory holds exactly `expected`, and
    /// it has the fds it started with (waiting, bounded, for it to finish its
    /// teardown, which follows the release).
    pub fn expect_clean(&self, expected: &[&str]) {
        self.expect_pipe_dir(expected);
        let end = Instant::now() + Duration::from_secs(5);
        while self.fds() != self.baseline_fds && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(self.alive(), "the process died");
        assert_eq!(self.fds(), self.baseline_fds, "fds leaked");
    }

    /// Waits (bounded) until the pipe directory holds exactly `expected`.
    pub fn expect_pipe_dir(&self, expected: &[&str]) {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let mut found = self.pipe_dir_entries();
            found.sort();
            if found == expected || Instant::now() > end {
                assert_eq!(found, expected, "pipe directory");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `result ...` line of an uninterrupted counter of `steps` steps run
/// alone as rank `rank`.
pub fn counter_result(rank: u32, steps: &str) -> String {
    let out = Command::new(counter_exe())
        .args(["--steps", steps, "--pace-us", "0"])
        .env("SNAPC_RANK", rank.to_string())
        .env_remove("SNAPC_DAEMON_SOCKET")
        .env_remove("SNAPC_JOB_SECRET")
        .env_remove("SNAPC_RESTART_DIR")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap()
        .to_string()
}

/// The step a counter saved in `snapshot`: the first word of its state file.
pub fn saved_steps(snapshot: &Path) -> u64 {
    std::fs::read_to_string(snapshot.join("state"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

pub fn ints(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

pub fn read_int(ch: &Channel) -> i32 {
    let mut b = [0u8; 4];
    ch.rx.read_exact(&mut b, soon(5000)).unwrap();
    i32::from_ne_bytes(b)
}
