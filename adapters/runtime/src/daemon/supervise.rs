//! Launching the ranks, their output, reaping and terminating them; the
//! daemon's own stop signals.

use super::*;

pub(super) static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: nix::libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

pub(super) fn install_stop_handlers() {
    let act = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        if let Err(e) = unsafe { sigaction(sig, &act) } {
            log::warn!("cannot handle {sig}: {e}");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RankState {
    Running,
    Exited(i32),
    Signalled(i32),
}

impl RankState {
    pub(super) fn name(self) -> String {
        match self {
            Self::Running => "running".into(),
            Self::Exited(c) => format!("exited({c})"),
            Self::Signalled(s) => format!("killed({})", signal_name(s)),
        }
    }

    /// The exit status this contributes to the job's.
    pub(super) fn status(self) -> i32 {
        match self {
            Self::Running => 0,
            Self::Exited(c) => c,
            Self::Signalled(s) => 128 + s,
        }
    }
}

pub(super) fn signal_name(s: i32) -> String {
    Signal::try_from(s).map_or_else(|_| s.to_string(), |sig| sig.as_str().to_string())
}

pub(super) struct RankProc {
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) state: RankState,
    pub(super) conn: Option<u64>,
    /// It reported its pid with LOCAL_UPDATE (a restarted rank does).
    pub(super) updated: bool,
}

pub(super) struct OutPipe {
    pub(super) rank: u32,
    pub(super) stderr: bool,
    pub(super) file: File,
    pub(super) buf: Vec<u8>,
}

impl Daemon {
    pub(super) fn launch(&mut self) -> Result<(), RunError> {
        let argv = self.opts.argv.clone();
        for rank in 0..self.opts.nranks {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .env("SNAPC_JOB", &self.opts.job)
                .env("SNAPC_JOBID", self.jobid.to_string())
                .env("SNAPC_RANK", rank.to_string())
                .env("SNAPC_NRANKS", self.opts.nranks.to_string())
                .env("SNAPC_DAEMON_SOCKET", &self.paths.sock)
                .env("SNAPC_PIPE_DIR", &self.paths.pipes)
                .env("SNAPC_STORE", &self.opts.store)
                .env("SNAPC_SNAPSHOT_ROOT", self.store.staging())
                .env_remove("SNAPC_SIGNAL")
                .env_remove("SNAPC_RESTART_DIR");
            if let Some(dir) = &self.opts.restart_from {
                cmd.env("SNAPC_RESTART_DIR", dir.join(format!("rank-{rank}")));
            }
            if let Some(cwd) = &self.opts.cwd {
                cmd.current_dir(cwd);
            }
            let mut child = cmd
                .spawn()
                .map_err(io_err(format!("starting rank {rank}: {}", argv[0])))?;
            let pid = child.id();
            for (pipe, stderr) in [
                (child.stdout.take().map(OwnedFd::from), false),
                (child.stderr.take().map(OwnedFd::from), true),
            ] {
                if let Some(fd) = pipe {
                    self.outs.push(OutPipe {
                        rank,
                        stderr,
                        file: File::from(fd),
                        buf: Vec::new(),
                    });
                }
            }
            let name = ProcessName {
                jobid: self.jobid,
                vpid: rank,
            };
            self.lc
                .add_process(name, pid)
                .map_err(|e| RunError::Invalid(format!("rank {rank}: {e}")))?;
            self.ranks.push(RankProc {
                pid,
                child,
                state: RankState::Running,
                conn: None,
                updated: false,
            });
        }
        let from = match &self.opts.restart_from {
            Some(d) => format!(" from {}", d.display()),
            None => String::new(),
        };
        self.log(format!(
            "job {} (jobid {:#x}): {} ranks started{from}; control socket {}",
            self.opts.job,
            self.jobid,
            self.opts.nranks,
            self.paths.ctl.display()
        ));
        Ok(())
    }

    pub(super) fn out_ready(&mut self, i: usize) -> bool {
        let Some(o) = self.outs.get_mut(i) else {
            return false;
        };
        let mut chunk = [0u8; 8192];
        match o.file.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                o.buf.extend_from_slice(&chunk[..n]);
                print_lines(o);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
            Err(_) => false,
        }
    }

    pub(super) fn drain_outputs(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.outs.is_empty() && Instant::now() < deadline {
            self.wait();
        }
    }

    /// Reaps ranks that ended.
    pub(super) fn reap(&mut self) {
        let now = self.io.now();
        let mut died = None;
        // The ranks a restart terminates do not fail the job.
        let stopping = matches!(
            self.restarting,
            Some(Restarting {
                step: RestartStep::Stopping { .. },
                ..
            })
        );
        for (rank, r) in self.ranks.iter_mut().enumerate() {
            if r.state != RankState::Running {
                continue;
            }
            let Ok(Some(status)) = r.child.try_wait() else {
                continue;
            };
            use std::os::unix::process::ExitStatusExt;
            r.state = match (status.code(), status.signal()) {
                (Some(c), _) => RankState::Exited(c),
                (None, Some(s)) => RankState::Signalled(s),
                (None, None) => RankState::Exited(255),
            };
            let name = ProcessName {
                jobid: self.jobid,
                vpid: rank as u32,
            };
            let _ = self.lc.remove_process(now, name);
            if let Some(id) = r.conn.take() {
                self.conns.remove(&id);
            }
            let state = r.state;
            let pid = r.pid;
            crate::errln!("[snapc] rank {rank} (pid {pid}) {}", state.name());
            if state.status() != 0 && died.is_none() && !self.aborting && !stopping {
                died = Some(rank);
                self.first_failure.get_or_insert(state.status());
            }
        }
        if let Some(rank) = died
            && !self.aborting
        {
            self.aborting = true;
            self.log(format!("rank {rank} failed: terminating the job"));
            self.terminate_ranks(Signal::SIGTERM);
        }
    }

    pub(super) fn terminate_ranks(&self, sig: Signal) {
        for r in &self.ranks {
            if r.state == RankState::Running {
                let _ = kill(Pid::from_raw(r.pid as i32), sig);
            }
        }
    }
}

/// Prints the whole lines of `o` with its rank's prefix.
pub(super) fn print_lines(o: &mut OutPipe) {
    while let Some(pos) = o.buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = o.buf.drain(..=pos).collect();
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\n');
        if o.stderr {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "[{}] {text}", o.rank);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[{}] {text}", o.rank);
            let _ = out.flush();
        }
    }
}
