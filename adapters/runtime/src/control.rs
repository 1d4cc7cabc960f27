//! Where a node daemon's sockets live, and the client side of its control
//! socket.
//!
//! The run directory (`$SNAPC_RUN_DIR`, else `$XDG_RUNTIME_DIR/snapc-run`,
//! else `snapc-run-<uid>` in the temporary directory; private, 0700, checked
//! like the pipe directory) holds, for each running job `J`:
//!
//! | path | what |
//! |---|---|
//! | `J.ctl` | the control socket (`snapc checkpoint / status / quiesce`) |
//! | `J.sock` | the ranks' socket (framed DSS messages, [`snapc_posix::link`]) |
//! | `J.pipes/` | the job's pipe directory (handshake FIFOs) |
//!
//! The daemon removes all three when it exits. A daemon killed with SIGKILL
//! cannot: the next command that looks the job up finds nobody listening
//! and removes them ([`remove_stale`]).
//!
//! Control protocol: the client sends one JSON object on one line; the daemon
//! answers with JSON lines, each with an `"event"`:
//! - `{"op":"status"}` → one `{"event":"status", ...}`;
//! - `{"op":"checkpoint","term":B,"stop":B,"wait":B}` → `{"event":"started",
//!   "seq":S,"handle":H}`, then with `wait` `{"event":"progress","done":D,
//!   "total":N}` per rank and `{"event":"finished","ok":B,"seq":S,
//!   "reference":R,"dir":P,"error":E,...}`;
//! - `{"op":"quiesce_start"}`, `{"op":"quiesce_end"}` → `started`, then
//!   `finished`;
//! - a refused request → `{"event":"error","message":M}` (a second
//!   checkpoint while one runs gets this at once).
//!
//! The daemon accepts control connections from its own user only
//! (SO_PEERCRED).

use serde_json::Value;
use snapc_posix::fifo::PipeDir;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The run directory (created 0700 and checked).
pub fn run_dir() -> Result<PathBuf, String> {
    let path = std::env::var_os("SNAPC_RUN_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|p| p.join("snapc-run"))
        })
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("snapc-run-{}", nix::unistd::Uid::effective()))
        });
    PipeDir::open(&path)
        .map(|d| d.path().to_path_buf())
        .map_err(|e| e.to_string())
}

/// The paths of job `job` in `run_dir`.
#[derive(Debug, Clone)]
pub struct JobPaths {
    /// The control socket.
    pub ctl: PathBuf,
    /// The ranks' socket.
    pub sock: PathBuf,
    /// The pipe directory.
    pub pipes: PathBuf,
}

impl JobPaths {
    /// The paths of `job` in `run_dir`.
    pub fn new(run_dir: &Path, job: &str) -> Self {
        Self {
            ctl: run_dir.join(format!("{job}.ctl")),
            sock: run_dir.join(format!("{job}.sock")),
            pipes: run_dir.join(format!("{job}.pipes")),
        }
    }

    /// Removes all three (the pipe directory only with what a dead job
    /// left: FIFOs, nothing else).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.ctl);
        let _ = std::fs::remove_file(&self.sock);
        if let Ok(entries) = std::fs::read_dir(&self.pipes) {
            for e in entries.flatten() {
                snapc_posix::fifo::remove_stale(&e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pipes);
    }
}

/// Whether a daemon listens on `ctl`.
fn listening(ctl: &Path) -> bool {
    UnixStream::connect(ctl).is_ok()
}

/// Removes the files of a job whose daemon is gone; true if it did.
pub fn remove_stale(run_dir: &Path, job: &str) -> bool {
    let paths = JobPaths::new(run_dir, job);
    if paths.ctl.exists() && !listening(&paths.ctl) {
        paths.remove();
        return true;
    }
    false
}

/// The jobs whose daemon runs (stale entries are removed on the way).
pub fn jobs() -> Result<Vec<String>, String> {
    let dir = run_dir()?;
    let mut jobs: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".ctl")
                .map(str::to_string)
        })
        .filter(|job| !remove_stale(&dir, job))
        .collect();
    jobs.sort();
    Ok(jobs)
}

/// The job to talk to: `job` if given, else the only one running.
pub fn pick_job(job: Option<&str>) -> Result<String, String> {
    if let Some(j) = job {
        return Ok(j.to_string());
    }
    let jobs = jobs()?;
    match jobs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("no job is running (start one with `snapc run`)".into()),
        many => Err(format!(
            "several jobs are running ({}); name one with --job",
            many.join(", ")
        )),
    }
}

/// A control connection.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to job `job`'s daemon and sends `request`.
    pub fn send(job: &str, request: &Value) -> Result<Self, String> {
        let dir = run_dir()?;
        let paths = JobPaths::new(&dir, job);
        let mut stream = UnixStream::connect(&paths.ctl).map_err(|e| {
            if remove_stale(&dir, job) {
                format!("job {job}: its daemon is gone (removed its stale sockets)")
            } else {
                format!("job {job}: {}: {e}", paths.ctl.display())
            }
        })?;
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut line = request.to_string();
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("job {job}: sending the request: {e}"))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// The next event, waiting until `deadline`; `Ok(None)` when the daemon
    /// closed the connection.
    pub fn next(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for the daemon".into());
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| format!("malformed answer from the daemon: {e}")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err("timed out waiting for the daemon".into())
            }
            Err(e) => Err(format!("reading from the daemon: {e}")),
        }
    }

    /// Events until one whose `"event"` is in `last` (returned with the
    /// ones before it), the daemon closes, or `deadline`.
    pub fn until(
        &mut self,
        last: &[&str],
        deadline: Instant,
        mut each: impl FnMut(&Value),
    ) -> Result<Value, String> {
        loop {
            match self.next(deadline)? {
                None => return Err("the daemon closed the connection".into()),
                Some(v) => {
                    each(&v);
                    let ev = v.get("event").and_then(Value::as_str).unwrap_or("");
                    if last.contains(&ev) || ev == "error" {
                        return Ok(v);
                    }
                }
            }
        }
    }
}
