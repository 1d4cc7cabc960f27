//! The test-cluster fixture: a real Slurm (slurmctld, one slurmd per node,
//! munge) on this machine, each node in a network, UTS and mount namespace of
//! its own, brought up by `tests/cluster/up.sh` and removed by `down.sh`
//! (see tests/cluster/README.md). Plain Rust, std only: the crate
//! `snapc-test-cluster`, which a test crate takes as a dev-dependency:
//!
//! ```no_run
//! let Some(c) = snapc_test_cluster::Cluster::up(3) else { return };
//! ```
//!
//! Without root or Slurm, `Cluster::up` prints why it skips and returns
//! `None`; with `SNAPC_REQUIRE_SLURM=1` it panics instead.
//!
//! One cluster at a time per machine (the bridge and subnet are global): a
//! `Cluster` holds the machine-wide lock `/run/snapc-test-cluster.lock` from
//! `up` until it is dropped, so tests in one binary, and test binaries run at
//! the same time, take turns. The lock is held by a `flock` child whose stdin
//! is a pipe from this process: if the test process dies, the pipe closes and
//! the lock is released, and the next `up` removes what was left running.
#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The machine-wide lock shared with up.sh and down.sh.
const LOCK: &str = "/run/snapc-test-cluster.lock";
/// How long `up` waits for another cluster user to finish.
const LOCK_WAIT: Duration = Duration::from_secs(900);
/// Generous deadlines: the machine is shared and may be loaded.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);
pub const DEADLINE: Duration = Duration::from_secs(120);

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Out {
    /// `None` when it was killed at its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The stdout lines, sorted (the order of tasks' output is not fixed).
    pub fn sorted_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.stdout.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// Panics with everything the command printed unless it succeeded.
    #[track_caller]
    pub fn expect_success(&self, what: &str) -> &Self {
        assert!(
            self.success(),
            "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            match self.status {
                Some(s) => format!("exited with {s}"),
                None => "killed at its deadline".to_owned(),
            },
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` (stdin closed, in a process group of its own) and kills the
/// whole group if it has not ended within `deadline`. It runs under
/// coreutils' `timeout` too, so that it ends even if this process is killed
/// before it can do so (down.sh also ends Slurm clients left talking to a
/// cluster it removes).
pub fn run(cmd: &mut Command, deadline: Duration) -> Out {
    use std::os::unix::process::CommandExt;
    let mut timed = Command::new("timeout");
    timed
        .args(["-s", "KILL", &(deadline.as_secs() + 30).to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let cmd = &mut timed;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= deadline => {
                // The group: srun, salloc and scripts leave children behind.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    // Something it started in the background may hold its output open; do
    // not wait for that forever.
    let collect = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "<output still held open by a background process>".to_owned())
    };
    Out {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

fn required() -> bool {
    std::env::var("SNAPC_REQUIRE_SLURM").is_ok_and(|v| v == "1")
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What the cluster needs that this machine lacks (empty: nothing).
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if effective_uid() != Some(0) {
        missing.push("root".to_owned());
    }
    for daemon in ["slurmctld", "slurmd", "munged"] {
        if !Path::new("/usr/sbin").join(daemon).is_file() {
            missing.push(format!("/usr/sbin/{daemon}"));
        }
    }
    for tool in [
        "srun", "sbatch", "scontrol", "nsenter", "unshare", "flock", "ip", "timeout",
    ] {
        if !on_path(tool) {
            missing.push(tool.to_owned());
        }
    }
    missing
}

/// tests/cluster/ of this repository, found from the including crate's
/// manifest dir (the workspace root or one of its members).
fn scripts_dir() -> PathBuf {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|d| d.join("tests/cluster"))
        .find(|d| d.join("up.sh").is_file())
        .unwrap_or_else(|| panic!("tests/cluster/up.sh not found above {}", start.display()))
}

/// A running test cluster; removed (down.sh) when dropped.
pub struct Cluster {
    dir: PathBuf,
    scripts: PathBuf,
    nodes: Vec<String>,
    /// The `flock` process holding the machine-wide lock; it lets go when
    /// its stdin closes.
    lock: Child,
}

impl Cluster {
    /// Brings up a fresh cluster of `nodes` nodes (node1..nodeN), or says
    /// why it cannot and returns `None` (panics if SNAPC_REQUIRE_SLURM=1).
    /// Waits for any other user of the cluster to finish first.
    pub fn up(nodes: usize) -> Option<Cluster> {
        let missing = missing();
        if !missing.is_empty() {
            let why = format!(
                "needs root and slurm (missing: {}; apt-get install slurmctld slurmd slurm-client munge libpmix-dev openmpi-bin libopenmpi-dev)",
                missing.join(", ")
            );
            assert!(
                !required(),
                "SNAPC_REQUIRE_SLURM=1 but the test cluster {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let scripts = scripts_dir();
        let dir = PathBuf::from(
            std::env::var("CLUSTER_DIR").unwrap_or_else(|_| "/tmp/snapc-cluster".to_owned()),
        );
        let lock = take_lock();
        let out = run(
            Command::new(scripts.join("up.sh"))
                .arg("--fresh")
                .env("NODES", nodes.to_string())
                .env("CLUSTER_DIR", &dir)
                .env("SNAPC_CLUSTER_LOCK_HELD", "1"),
            SCRIPT_DEADLINE,
        );
        let cluster = Cluster {
            dir,
            scripts,
            nodes: (1..=nodes).map(|i| format!("node{i}")).collect(),
            lock,
        };
        out.expect_success("tests/cluster/up.sh");
        // A fresh shared directory for the test's programs and outputs.
        let work = cluster.work_dir();
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("create the cluster's work dir");
        Some(cluster)
    }

    /// node1..nodeN.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The cluster dir: config (etc/slurm), logs (log/), spool, state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A directory on the file system every node shares, emptied at `up`;
    /// Slurm commands from `command` run there.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// `program` set up to talk to this cluster from the root namespace (the
    /// "login node"): SLURM_CONF set, run in the work dir.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", self.dir.join("etc/slurm/slurm.conf"))
            .current_dir(self.work_dir());
        cmd
    }

    /// `srun ARGS...` from the root namespace, with `DEADLINE`.
    pub fn srun(&self, args: &[&str]) -> Out {
        run(self.command("srun").args(args), DEADLINE)
    }

    /// `srun ARGS...` for an MPI program whose ranks print nothing before
    /// `MPI_Init` returns. Debian's Open MPI 4.1.4 now and then (about one
    /// 6- or 8-rank launch in 50 to 100 here) has a rank die of SIGSEGV
    /// inside `MPI_Init`: a NULL call from a TCP BTL event callback, seen in
    /// a core dump (tests/cluster/README.md). A launch that failed that way,
    /// with no output at all, is started once more, and says so.
    pub fn srun_mpi(&self, args: &[&str]) -> Out {
        let first = self.srun(args);
        if first.success() || !crashed_in_mpi_init(&first) {
            return first;
        }
        eprintln!(
            "MPI launch: a rank crashed inside MPI_Init (Open MPI's TCP BTL), starting it once more:\n{}",
            first.stderr
        );
        self.srun(args)
    }

    /// Writes `script` to the work dir and submits it with `sbatch ARGS`;
    /// returns the job id. Its output goes to `slurm-<id>.out` in the work
    /// dir unless ARGS say otherwise.
    pub fn sbatch(&self, args: &[&str], script: &str) -> u32 {
        let n = std::fs::read_dir(self.work_dir()).map_or(0, |d| d.count());
        let path = self.work_dir().join(format!("job-{n}.sh"));
        std::fs::write(&path, script).expect("write the batch script");
        let out = run(
            self.command("sbatch")
                .arg("--parsable")
                .args(args)
                .arg(&path),
            DEADLINE,
        );
        out.expect_success("sbatch");
        let id = out.stdout.trim().split(';').next().unwrap_or("");
        id.parse()
            .unwrap_or_else(|_| panic!("sbatch printed {:?}, not a job id", out.stdout))
    }

    /// The job's state (RUNNING, COMPLETED, NODE_FAIL, ...), `None` when
    /// Slurm does not know the job.
    pub fn job_state(&self, job: u32) -> Option<String> {
        let out = run(
            self.command("scontrol")
                .args(["show", "job", "-o", &job.to_string()]),
            DEADLINE,
        );
        let state = out
            .stdout
            .split_whitespace()
            .find_map(|f| f.strip_prefix("JobState="))?;
        Some(state.to_owned())
    }

    /// Waits until the job has ended and returns its final state. Polls
    /// (every 100 ms) rather than `sbatch --wait`, which polls every 2 s, then
    /// every 8.
    pub fn wait_job(&self, job: u32, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let state = self.job_state(job);
            match state.as_deref() {
                Some("PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED")
                | Some("REQUEUED" | "REQUEUE_HOLD" | "RESIZING" | "SIGNALING" | "STAGE_OUT") => {}
                Some(done) => return done.to_owned(),
                None => panic!("job {job} unknown to Slurm"),
            }
            assert!(
                start.elapsed() < deadline,
                "job {job} still {state:?} after {deadline:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `sh -c CMD` inside NODE's namespaces (its hostname and network), as
    /// root, outside any job. NODE may also be "head" (slurmctld's).
    pub fn run_on(&self, node: &str, cmd: &str) -> Out {
        run(
            &mut self.node_sh(&["exec", node, "sh", "-c", cmd]),
            DEADLINE,
        )
    }

    /// SIGKILLs NODE's slurmd (the job tasks on it live on, orphaned).
    pub fn kill_slurmd(&self, node: &str) {
        run(&mut self.node_sh(&["kill-slurmd", node]), DEADLINE).expect_success("kill-slurmd");
    }

    /// Starts NODE's slurmd again after `kill_slurmd`.
    pub fn start_slurmd(&self, node: &str) {
        run(&mut self.node_sh(&["start-slurmd", node]), DEADLINE).expect_success("start-slurmd");
    }

    fn node_sh(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.scripts.join("node.sh"));
        cmd.args(args).env("CLUSTER_DIR", &self.dir);
        cmd
    }

    /// Builds C source `src` with `mpicc` into the work dir and returns the
    /// program's path, or `None` (printing why) without mpicc, unless
    /// SNAPC_REQUIRE_OMPI=1 or SNAPC_REQUIRE_SLURM=1 ask for it.
    pub fn mpicc(&self, src: &Path) -> Option<PathBuf> {
        if !on_path("mpicc") {
            let needed = required() || std::env::var("SNAPC_REQUIRE_OMPI").is_ok_and(|v| v == "1");
            assert!(
                !needed,
                "mpicc is missing (apt-get install openmpi-bin libopenmpi-dev libpmix-dev)"
            );
            eprintln!(
                "skipped: needs mpicc (apt-get install openmpi-bin libopenmpi-dev libpmix-dev)"
            );
            return None;
        }
        let stem = src.file_stem().expect("a source file name");
        let exe = self.work_dir().join(stem);
        run(
            Command::new("mpicc").args(["-O2", "-o"]).arg(&exe).arg(src),
            DEADLINE,
        )
        .expect_success("mpicc");
        Some(exe)
    }

    /// The tiny MPI program of tests/cluster/mpi_hello.c: each rank prints
    /// `rank R of N on HOST: from R-1, sum S` after a ring exchange and an
    /// allreduce.
    pub fn mpi_hello(&self) -> Option<PathBuf> {
        self.mpicc(&self.scripts.join("mpi_hello.c"))
    }

    /// Takes the cluster down now (also done on drop).
    pub fn down(self) {}
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = run(
            Command::new(self.scripts.join("down.sh"))
                .env("CLUSTER_DIR", &self.dir)
                .env("SNAPC_CLUSTER_LOCK_HELD", "1"),
            SCRIPT_DEADLINE,
        );
        // Closing its stdin ends the holder and releases the lock.
        drop(self.lock.stdin.take());
        let _ = self.lock.wait();
        if !out.success() && !thread::panicking() {
            out.expect_success("tests/cluster/down.sh");
        }
    }
}

/// A rank died of SIGSEGV before any rank printed anything.
fn crashed_in_mpi_init(out: &Out) -> bool {
    out.stdout.trim().is_empty()
        && out.stderr.contains("*** Process received signal ***")
        && out.stderr.contains("Segmentation fault")
}

/// Waits for the machine-wide cluster lock; it is held by the returned child
/// until its stdin closes.
fn take_lock() -> Child {
    let mut holder = Command::new("flock")
        .args(["-w", &LOCK_WAIT.as_secs().to_string(), "-o", LOCK])
        .args(["sh", "-c", "echo locked && exec cat >/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start flock");
    let mut line = String::new();
    let mut stdout = BufReader::new(holder.stdout.take().expect("piped stdout"));
    let _ = stdout.read_line(&mut line);
    assert_eq!(
        line.trim(),
        "locked",
        "no test cluster lock ({LOCK}) within {LOCK_WAIT:?}: another user kept it"
    );
    holder
}
