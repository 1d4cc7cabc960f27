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
//! | `J.lock` | held (`flock`) by the job's daemon for its whole life |
//!
//! The daemon removes them all when it exits. A daemon killed with SIGKILL
//! cannot: the next command that looks the job up finds the lock free (the
//! kernel released it with the process) and removes them
//! ([`remove_stale`]). Only a free lock makes a job's files stale: a
//! connection that fails for any other reason (a daemon too busy to
//! accept, a client out of file descriptors) removes nothing.
//!
//! Control protocol: the client sends one JSON object on one line; the daemon
//! answers with JSON lines, each with an `"event"`:
//! - `{"op":"status"}` → one `{"event":"status", ...}` (docs/cli-json.md);
//! - `{"op":"checkpoint","term":B,"stop":B,"wait":B}` → `{"event":"started",
//!   "op":"checkpoint","job":J,"seq":S,"handle":H,"dir":P}`, then with
//!   `wait` `{"event":"progress","done":D,"total":N}` per rank and
//!   `{"event":"finished","ok":B,"seq":S,"reference":R,"dir":P,"error":E,...}`;
//! - `{"op":"quiesce_start"}`, `{"op":"quiesce_end"}` → `started`, then
//!   `finished`;
//! - `{"op":"resume"}` → `{"event":"finished","op":"resume","ok":true,
//!   "resumed":[ranks]}` (SIGCONT to the stopped ranks);
//! - `{"op":"interval","seconds":S}` → `{"event":"finished","op":"interval",
//!   "ok":true,"interval_s":S|null,"previous_s":P|null}` (0: no interval);
//! - `{"op":"stop","force":B}` → when the daemon exits, `{"event":"finished",
//!   "op":"stop","ok":true,"status":X,"killed":B,"ranks":[...]}` (the ranks
//!   get SIGCONT and SIGTERM, SIGKILL after the grace period or at once
//!   with `force`);
//! - `{"op":"abort"}` → `{"event":"aborted","op":O,"handle":H}` once the
//!   operation in progress ended (its own waiters get its `finished`, not
//!   ok), or an error when there is none to abort;
//! - a refused request → `{"event":"error","message":M}` (a second
//!   checkpoint while one runs gets this at once).
//!
//! A request is one JSON object; its fields are checked strictly (an
//! unknown field, or a field of the wrong type, is an error, never a
//! default).
//!
//! The daemon accepts control connections from its own user only
//! (SO_PEERCRED).

use serde_json::Value;
use snapc_posix::store::{FileLock, PrivateDir};
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
    PrivateDir::open(&path, true)
        .map(|d| d.path().to_path_buf())
        .map_err(|e| format!("run directory: {e}"))
}

/// A job name fit for the run directory and the store (one plain path
/// component), or why not.
pub fn check_job_name(job: &str) -> Result<(), String> {
    job_name_error(job).map_or(Ok(()), Err)
}

/// The lock of job `job` in `run_dir` (created when `create`), if no
/// live daemon holds it.
pub fn try_lock(run_dir: &Path, job: &str, create: bool) -> Result<Option<FileLock>, String> {
    check_job_name(job)?;
    PrivateDir::open(run_dir, false)
        .and_then(|d| d.try_lock_file(&format!("{job}.lock"), create))
        .map_err(|e| e.to_string())
}

/// The longest job name.
pub const MAX_JOB_NAME: usize = 64;

/// Why `name` cannot name a job, if it cannot: a single path component of
/// letters, digits, `-`, `_` and `.`, not starting with `.`, at most
/// [`MAX_JOB_NAME`] bytes.
pub fn job_name_error(name: &str) -> Option<String> {
    if name.len() > MAX_JOB_NAME {
        return Some(format!(
            "job name {:?}... is {} bytes long; the limit is {MAX_JOB_NAME}",
            name.chars().take(16).collect::<String>(),
            name.len()
        ));
    }
    if name == snapc_posix::app::STANDALONE_DIR {
        return Some(format!(
            "job name {name:?} is reserved: the store keeps the snapshots of `snapc checkpoint --pid` there"
        ));
    }
    (!crate::snapstore::valid_job_name(name)).then(|| {
        format!("job name {name:?}: use letters, digits, '-', '_' and '.', not starting with '.'")
    })
}

/// The longest path a Unix socket can be bound or connected to (sun_path
/// holds 108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The paths of job `job` in `run_dir`.
#[derive(Debug, Clone)]
pub struct JobPaths {
    /// The control socket.
    pub ctl: PathBuf,
    /// The ranks' socket.
    pub sock: PathBuf,
    /// The pipe directory.
    pub pipes: PathBuf,
    /// The daemon's lock.
    pub lock: PathBuf,
}

impl JobPaths {
    /// The paths of `job` in `run_dir`.
    pub fn new(run_dir: &Path, job: &str) -> Self {
        Self {
            ctl: run_dir.join(format!("{job}.ctl")),
            sock: run_dir.join(format!("{job}.sock")),
            pipes: run_dir.join(format!("{job}.pipes")),
            lock: run_dir.join(format!("{job}.lock")),
        }
    }

    /// An error when the socket paths are too long for a Unix socket.
    pub fn check(&self) -> Result<(), String> {
        for p in [&self.ctl, &self.sock] {
            let len = p.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(format!(
                    "the socket path {} is {len} bytes long, over the {MAX_SOCKET_PATH} a Unix \
                     socket allows: use a shorter job name or run directory (SNAPC_RUN_DIR)",
                    p.display()
                ));
            }
        }
        Ok(())
    }

    /// Removes all three (the pipe directory only with what a dead job
    /// left: FIFOs, nothing else).
    /// The lock file is the daemon's (or [`remove_stale`]'s) to remove.
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

/// Removes the files of a job whose daemon is gone (its lock is free);
/// true if there were any. A lock that is held, or cannot be checked,
/// removes nothing.
pub fn remove_stale(run_dir: &Path, job: &str) -> bool {
    let paths = JobPaths::new(run_dir, job);
    let found = || {
        [&paths.ctl, &paths.sock, &paths.pipes]
            .iter()
            .any(|p| p.symlink_metadata().is_ok())
    };
    match try_lock(run_dir, job, false) {
        Ok(Some(_lock)) => {
            let found = found();
            paths.remove();
            // Unlinked while held: a daemon starting now locks a new file.
            let _ = std::fs::remove_file(&paths.lock);
            found
        }
        // No lock file: nothing runs (a daemon takes it before anything
        // else); whatever is there was left by an older snapc.
        Ok(None) if paths.lock.symlink_metadata().is_err() => {
            let found = found();
            if found {
                paths.remove();
            }
            found
        }
        Ok(None) => false,
        Err(e) => {
            log::warn!("job {job}: cannot tell whether its daemon runs: {e}");
            false
        }
    }
}

/// The jobs whose daemon runs (stale entries are removed on the way).
pub fn jobs() -> Result<Vec<String>, String> {
    let dir = run_dir()?;
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".ctl")
                .or_else(|| name.strip_suffix(".lock"))
                .map(str::to_string)
        })
        .filter(|job| crate::snapstore::valid_job_name(job))
        .collect();
    names.sort();
    names.dedup();
    let jobs = names
        .into_iter()
        .filter(|job| !remove_stale(&dir, job) && JobPaths::new(&dir, job).ctl.exists())
        .collect();
    Ok(jobs)
}

/// Why no job could be picked: a usage error (the command line names none
/// of several, or a name that cannot be a job's) or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickError {
    /// The command line is wrong.
    Usage(String),
    /// No such job, or the run directory is unusable.
    Failed(String),
}

impl std::fmt::Display for PickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

/// The running job whose daemon is `pid`, if any.
pub fn job_of_daemon(pid: u32) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    jobs().ok()?.into_iter().find(|job| {
        Client::send(job, &serde_json::json!({"op": "status"}))
            .and_then(|mut c| c.until(&["status"], deadline, |_| {}))
            .is_ok_and(|v| v.get("daemon_pid").and_then(Value::as_u64) == Some(u64::from(pid)))
    })
}

/// The job to talk to: `job` if given (and a valid name), else the only one
/// running.
pub fn pick_job(job: Option<&str>) -> Result<String, PickError> {
    if let Some(j) = job {
        return match job_name_error(j) {
            Some(e) => Err(PickError::Usage(e)),
            None => Ok(j.to_string()),
        };
    }
    let jobs = jobs().map_err(PickError::Failed)?;
    match jobs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(PickError::Failed(
            "no job is running (start one with `snapc run`)".into(),
        )),
        many => Err(PickError::Usage(format!(
            "several jobs are running ({}); name one with --job",
            many.join(", ")
        ))),
    }
}

/// "no job named X (running: a, b)".
fn no_such_job(job: &str) -> String {
    match jobs() {
        Ok(running) if running.is_empty() => format!("no job named {job} (no job is running)"),
        Ok(running) => format!("no job named {job} (running: {})", running.join(", ")),
        Err(_) => format!("no job named {job}"),
    }
}

/// How long a client waits for a named job's control socket to appear
/// before it says there is no such job.
pub const JOB_START_WAIT: Duration = Duration::from_secs(2);

/// A control connection.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to job `job`'s daemon and sends `request`.
    pub fn send(job: &str, request: &Value) -> Result<Self, String> {
        check_job_name(job)?;
        let dir = run_dir()?;
        let paths = JobPaths::new(&dir, job);
        paths.check()?;
        // A job started a moment ago (`snapc run ... &` and the next
        // command at once) may not listen yet.
        let appear_by = Instant::now() + JOB_START_WAIT;
        let mut stream = loop {
            let e = match UnixStream::connect(&paths.ctl) {
                Ok(s) => break s,
                Err(e) => e,
            };
            let refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
            let missing = e.kind() == std::io::ErrorKind::NotFound;
            // Refused by a socket whose daemon is gone: stale.
            if (refused || !missing) && remove_stale(&dir, job) {
                return Err(format!(
                    "job {job}: its daemon is gone (removed its stale sockets)"
                ));
            }
            // Not there yet, or bound and not listening yet.
            if (missing || refused) && Instant::now() < appear_by {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            return Err(if missing && remove_stale(&dir, job) {
                format!("job {job}: its daemon is gone (removed its stale sockets)")
            } else if missing {
                no_such_job(job)
            } else {
                format!("job {job}: {}: {e}", paths.ctl.display())
            });
        };
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut line = request.to_string();
        line.push('\n');
        if let Err(e) = stream.write_all(line.as_bytes()) {
            // A daemon that had to turn the connection away (out of
            // descriptors) wrote why before closing: that is the answer.
            let mut client = Self {
                reader: BufReader::new(stream),
            };
            let said = client.next(Instant::now() + Duration::from_secs(1));
            if let Ok(Some(v)) = said {
                if let Some(m) = v.get("message").and_then(Value::as_str) {
                    return Err(format!("job {job}: {m}"));
                }
            }
            return Err(format!("job {job}: sending the request: {e}"));
        }
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
