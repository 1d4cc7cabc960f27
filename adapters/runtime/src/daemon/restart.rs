//! Restarts: the options to relaunch a snapshot (`snapc restart`), and a
//! running job relaunched in place from one of its snapshots (a rank's
//! RESTART request).

use super::*;

/// How far an application-initiated restart went.
#[derive(Debug, Clone, Copy)]
pub(super) enum RestartStep {
    /// The old ranks were sent SIGTERM; SIGKILL at `kill_at`; the restart
    /// fails if they are not all reaped by `give_up_at`.
    Stopping {
        kill_at: Instant,
        killed: bool,
        give_up_at: Instant,
    },
    /// The new ranks run: each must connect and report its pid
    /// (LOCAL_UPDATE) by `deadline`.
    Starting { deadline: Instant },
}

/// A restart of the running job from one of its snapshots (the GC's
/// Restart action, from a rank's REQUEST_OP RESTART).
#[derive(Debug, Clone)]
pub(super) struct Restarting {
    pub(super) seq: u64,
    pub(super) dir: PathBuf,
    pub(super) step: RestartStep,
    pub(super) started: Instant,
}

/// How a restart ended, for the GC's report of it.
pub(super) struct RestartOutcome {
    pub(super) seq: Option<u64>,
    pub(super) dir: Option<PathBuf>,
    pub(super) error: Option<String>,
    pub(super) started: Instant,
}

/// How long the old ranks get to end after SIGTERM, then after SIGKILL.
pub(super) const RESTART_TERM_GRACE: Duration = Duration::from_secs(2);
pub(super) const RESTART_KILL_GRACE: Duration = Duration::from_secs(5);

/// The options to relaunch the snapshot at `path` (`<store>/<job>[/<seq>]`).
///
/// Before anything of the snapshot's metadata is used (it names the
/// program to run), the whole snapshot is checked: the store, the job
/// directory, the snapshot and everything in it must be this user's and
/// writable by nobody else, and are reached without following symlinks.
pub fn restart_options(path: &std::path::Path) -> Result<RunOptions, RunError> {
    use std::path::Component;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(RunError::Usage(format!(
            "{}: name the snapshot without '.' or '..' components",
            path.display()
        )));
    }
    checked_restart_options(&path).map_err(RunError::Invalid)
}

/// [`restart_options`] of an absolute path without `.` or `..`.
fn checked_restart_options(path: &std::path::Path) -> Result<RunOptions, String> {
    use crate::snapstore::{self, METADATA};
    use snapc_posix::store::PrivateDir;
    let name = |p: &std::path::Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{}: not <store>/<job>[/<seq>]", path.display()))
    };
    let last = name(path)?;
    // Told apart by content, not by name (a job may be named 123456): a
    // snapshot has its metadata or rank directories, a job directory
    // neither.
    let here = PrivateDir::open(path, false).map_err(|e| {
        format!(
            "{}: no such snapshot or job directory ({e})",
            path.display()
        )
    })?;
    let given_seq =
        (here.is_file(METADATA) || !snapstore::ranks_in(&here).is_empty()).then_some(last);
    let job_path = match given_seq {
        Some(_) => path.parent().unwrap_or(path).to_path_buf(),
        None => path.to_path_buf(),
    };
    let job = name(&job_path)?;
    let standalone = job_path
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == snapc_posix::app::STANDALONE_DIR);
    if job == snapc_posix::app::STANDALONE_DIR || standalone {
        return Err(format!(
            "{}: a standalone snapshot (checkpoint --pid): its process restarts from it \
             (SNAPC_RESTART_DIR=<snapshot>/pid-<pid>), not `snapc restart`",
            path.display()
        ));
    }
    if !snapstore::valid_job_name(&job) {
        return Err(format!(
            "{}: {job:?} is not a job directory of a snapshot store",
            job_path.display()
        ));
    }
    let store_path = job_path
        .parent()
        .ok_or_else(|| format!("{}: no store", job_path.display()))?
        .to_path_buf();
    let e = |e: snapc_posix::store::DirError| e.to_string();
    let job_dir = PrivateDir::open(&store_path, false)
        .and_then(|s| s.open_sub(&job, false))
        .map_err(e)?;
    let seq_name = match given_seq {
        Some(last) => last,
        None => snapstore::complete_in(&job_dir)
            .pop()
            .map(|(_, n)| n)
            .ok_or_else(|| format!("{}: no complete snapshot", path.display()))?,
    };
    let dir = job_dir.open_sub(&seq_name, false).map_err(e)?;
    if dir.stat(METADATA).ok().flatten().is_none() {
        return Err(format!(
            "{}: not a complete snapshot (no {METADATA})",
            dir.path().display()
        ));
    }
    dir.check_tree().map_err(e)?;
    let meta = snapstore::metadata_in(&dir)?;
    let nranks = meta
        .get("nranks")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("the metadata has no rank count")?;
    let argv: Vec<String> = meta
        .get("argv")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if argv.is_empty() {
        return Err("the metadata has no program".into());
    }
    if let Some(why) = snapstore::rank_dirs_mismatch(&dir, u64::from(nranks)) {
        return Err(format!("{}: {why}", dir.path().display()));
    }
    let mut opts = RunOptions::new(job, nranks, store_path, argv);
    // Ranks that joined through a launcher rejoin through it.
    opts.launcher = meta
        .get("launcher")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    opts.cwd = meta
        .get("cwd")
        .and_then(serde_json::Value::as_str)
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_dir());
    opts.restart_from = Some(dir.path().to_path_buf());
    Ok(opts)
}

impl Coordinator {
    /// The GC's Restart action (a rank asked for it): relaunches the job
    /// from snapshot `seq_num` of the store if it is complete and `handle`
    /// is its reference; otherwise the restart fails and the job goes on.
    pub(super) fn begin_restart(&mut self, seq_num: i32, handle: &str) {
        let started = Instant::now();
        let plan = self.resolve_restart(seq_num, handle);
        let (seq, opts) = match plan {
            Ok(p) => p,
            Err(e) => {
                self.log(format!(
                    "restart refused: {e}; the job goes on with its current ranks"
                ));
                self.restart_outcome = Some(RestartOutcome {
                    seq: u64::try_from(seq_num).ok(),
                    dir: None,
                    error: Some(e),
                    started,
                });
                let now = self.now();
                let _ = self.gc.handle_restart_done(now, false);
                return;
            }
        };
        let dir = opts.restart_from.clone().unwrap_or_default();
        self.log(format!(
            "restart from snapshot {seq} ({}) requested: terminating the ranks",
            dir.display()
        ));
        self.opts.argv = opts.argv;
        self.opts.launcher = opts.launcher;
        self.opts.cwd = opts.cwd;
        self.opts.restart_from = opts.restart_from;
        let now = Instant::now();
        self.restarting = Some(Restarting {
            seq,
            dir,
            step: RestartStep::Stopping {
                kill_at: now + RESTART_TERM_GRACE,
                killed: false,
                give_up_at: now + RESTART_TERM_GRACE + RESTART_KILL_GRACE,
            },
            started,
        });
        self.terminate_ranks(Signal::SIGTERM);
    }

    /// The complete snapshot that `seq_num` names in this job's store, and
    /// the options to relaunch it.
    pub(super) fn resolve_restart(
        &self,
        seq_num: i32,
        handle: &str,
    ) -> Result<(u64, RunOptions), String> {
        let seq = u64::try_from(seq_num)
            .map_err(|_| format!("sequence number {seq_num} names no snapshot"))?;
        let dir = self.store.root().join(seq.to_string());
        if !self.store.root_dir().is_dir(&seq.to_string()) {
            return Err(format!(
                "snapshot {seq} of job {}: {} does not exist",
                self.opts.job,
                dir.display()
            ));
        }
        let opts = restart_options(&dir).map_err(|e| format!("snapshot {seq}: {e}"))?;
        if opts.nranks != self.opts.nranks {
            return Err(format!(
                "snapshot {seq} has {} ranks, the job {}",
                opts.nranks, self.opts.nranks
            ));
        }
        let meta = snapstore::read_metadata(&dir)?;
        let reference = meta.get("reference").and_then(Value::as_str).unwrap_or("");
        if reference != handle {
            return Err(format!(
                "snapshot {seq}: the request names {handle:?}, the snapshot is {reference:?}"
            ));
        }
        Ok((seq, opts))
    }

    /// Moves a restart on: relaunches once the old ranks are reaped,
    /// reports to the GC once every new rank reported its pid, and fails it
    /// at its deadlines.
    pub(super) fn restart_tick(&mut self) {
        let Some(r) = self.restarting.clone() else {
            return;
        };
        let now = Instant::now();
        let running = |d: &Self| {
            d.launcher_running() || d.ranks.iter().any(|p| p.state == RankState::Running)
        };
        match r.step {
            RestartStep::Stopping {
                kill_at,
                killed,
                give_up_at,
            } => {
                if !running(self) {
                    self.relaunch();
                } else if now >= give_up_at {
                    self.restart_failed("the old ranks did not end after SIGKILL".into());
                } else if now >= kill_at && !killed {
                    self.log("restart: ranks still running after SIGTERM: SIGKILL");
                    self.terminate_ranks(Signal::SIGKILL);
                    if let Some(Restarting {
                        step: RestartStep::Stopping { killed, .. },
                        ..
                    }) = self.restarting.as_mut()
                    {
                        *killed = true;
                    }
                }
            }
            RestartStep::Starting { deadline } => {
                if let Some((rank, p)) = self
                    .ranks
                    .iter()
                    .enumerate()
                    .find(|(_, p)| p.state.ended() && !p.updated)
                {
                    let why = format!("rank {rank} {} before it reported", p.state.name());
                    self.restart_failed(why);
                } else if self.ranks.iter().all(|p| p.updated) {
                    let now = self.now();
                    self.restarting = None;
                    self.log(format!(
                        "restart from snapshot {}: every rank runs again ({:.1} ms)",
                        r.seq,
                        r.started.elapsed().as_secs_f64() * 1000.0
                    ));
                    self.restart_outcome = Some(RestartOutcome {
                        seq: Some(r.seq),
                        dir: Some(r.dir),
                        error: None,
                        started: r.started,
                    });
                    let _ = self.gc.handle_restart_done(now, true);
                    self.pump();
                } else if now >= deadline {
                    let missing: Vec<u32> = (0..self.ranks.len() as u32)
                        .filter(|&i| !self.ranks[i as usize].updated)
                        .collect();
                    self.restart_failed(format!(
                        "{} did not report their pid in time",
                        rank_list(&missing)
                    ));
                }
            }
        }
    }

    /// Every old rank is gone: the new ones start from the snapshot.
    pub(super) fn relaunch(&mut self) {
        // A launcher starts its ranks in its own time (mpirun takes a second).
        let within = if self.opts.launcher {
            self.opts.timeout.max(self.opts.connect_timeout)
        } else {
            self.opts.timeout
        };
        match self.launch(false) {
            Ok(()) => {
                if let Some(r) = self.restarting.as_mut() {
                    r.step = RestartStep::Starting {
                        deadline: Instant::now() + within,
                    };
                }
            }
            Err(e) => self.restart_failed(format!("relaunching the job: {e}")),
        }
    }

    /// A restart that could not be carried through: the old ranks are gone,
    /// so the job ends.
    pub(super) fn restart_failed(&mut self, why: String) {
        let Some(r) = self.restarting.take() else {
            return;
        };
        self.log(format!(
            "restart from snapshot {} failed: {why}; ending the job",
            r.seq
        ));
        self.aborting = true;
        self.first_failure.get_or_insert(1);
        self.terminate_ranks(Signal::SIGKILL);
        self.restart_outcome = Some(RestartOutcome {
            seq: Some(r.seq),
            dir: Some(r.dir),
            error: Some(why),
            started: r.started,
        });
        let now = self.now();
        let _ = self.gc.handle_restart_done(now, false);
    }

    /// The GC's report of a restart: logged, and kept as the last result.
    pub(super) fn finish_restart(&mut self, r: &Report) {
        let o = self.restart_outcome.take().unwrap_or(RestartOutcome {
            seq: r.seq.and_then(|s| u64::try_from(s).ok()),
            dir: None,
            error: Some(match r.failure {
                Some(f) => format!("{f:?}"),
                None => "failed".into(),
            }),
            started: Instant::now(),
        });
        let ok = r.ok && o.error.is_none();
        if !ok && o.error.is_none() {
            self.log(format!("restart failed: {:?}", r.failure));
        }
        self.last_result = Some(json!({
            "event": "finished", "op": "restart", "ok": ok, "seq": o.seq,
            "dir": o.dir.map(|d| d.display().to_string()),
            "error": o.error,
            "duration_ms": o.started.elapsed().as_secs_f64() * 1000.0,
        }));
    }
}
