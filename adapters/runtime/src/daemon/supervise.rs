//! Launching the ranks, their output, reaping and terminating them; the
//! daemon's own stop signals.

use super::*;

/// How many stop signals (SIGINT, SIGTERM, SIGHUP) arrived, and the last one.
pub(super) static STOPS: AtomicU32 = AtomicU32::new(0);
pub(super) static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop(sig: nix::libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::Relaxed);
    STOPS.fetch_add(1, Ordering::Relaxed);
}

/// The job is being ended: its ranks were sent SIGCONT and SIGTERM, and get
/// SIGKILL at `kill_at` (at once on a second request).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ending {
    /// The job's exit status when it was ended on request (a signal or
    /// `snapc stop`) rather than by a failed rank.
    pub(super) requested: Option<i32>,
    pub(super) kill_at: Instant,
    pub(super) killed: bool,
}

/// Signals the daemon ignores: the checkpoint signal (a user or a batch
/// system may send it to the whole process group), the others it does not
/// use whose default would end it, SIGXFSZ (a write past the file size
/// limit then fails instead), and the terminal's stop-on-output signals
/// (a daemon in the background keeps coordinating).
pub(super) const IGNORED: [Signal; 10] = [
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGXFSZ,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

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
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in IGNORED {
        // SAFETY: SIG_IGN runs no code.
        if let Err(e) = unsafe { sigaction(sig, &ignore) } {
            log::warn!("cannot ignore {sig}: {e}");
        }
    }
}

/// Run in each rank between fork and exec (async-signal-safe calls only):
/// the rank dies with the daemon (SIGKILL when the daemon's thread that
/// launched it ends, checked against a daemon that died before), gets the
/// signal dispositions and the file limit it would have had without the
/// daemon.
fn rank_pre_exec(daemon: i32, nofile: Option<(u64, u64)>) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() != daemon {
        return Err(std::io::Error::other("the daemon is gone"));
    }
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in IGNORED {
        // SAFETY: restoring the default disposition runs no code.
        let _ = unsafe { sigaction(sig, &default) };
    }
    if let Some((soft, hard)) = nofile {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard);
    }
    Ok(())
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
    pub(super) started: Instant,
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
    /// Bytes read and not printed yet (an unfinished line).
    pub(super) buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    pub(super) scanned: usize,
}

/// The longest line a rank's output is printed in; a longer one is split
/// there, so that output without newlines costs bounded memory.
pub(super) const MAX_LINE: usize = 64 * 1024;

impl RankProc {
    /// Alive but stopped (SIGSTOP, `checkpoint --stop`, a debugger).
    pub(super) fn stopped(&self) -> bool {
        self.state == RankState::Running && snapc_posix::lcio::is_stopped(self.pid)
    }

    /// Its state as `status` shows it.
    pub(super) fn state_name(&self) -> String {
        if self.stopped() {
            "stopped".into()
        } else {
            self.state.name()
        }
    }
}

/// "rank 3", "ranks 0, 2, 5-9": ranks named compactly.
pub fn rank_list(ranks: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&first) = ranks.get(i) {
        let mut last = first;
        while ranks.get(i + 1) == Some(&(last + 1)) {
            last += 1;
            i += 1;
        }
        parts.push(match last - first {
            0 => first.to_string(),
            1 => format!("{first}, {last}"),
            _ => format!("{first}-{last}"),
        });
        i += 1;
    }
    match ranks {
        [_] => format!("rank {}", parts.join(", ")),
        _ => format!("ranks {}", parts.join(", ")),
    }
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
                // Long enough for every rank's handshake under this
                // daemon's deadlines: a rank never gives up on a release
                // that is still to come.
                .env(
                    "SNAPC_RELEASE_TIMEOUT",
                    snapc_posix::lcio::release_wait(self.lc.config())
                        .as_secs_f64()
                        .to_string(),
                )
                .env_remove("SNAPC_SIGNAL")
                .env_remove("SNAPC_RESTART_DIR");
            if let Some(dir) = &self.opts.restart_from {
                cmd.env("SNAPC_RESTART_DIR", dir.join(format!("rank-{rank}")));
            }
            if let Some(cwd) = &self.opts.cwd {
                cmd.current_dir(cwd);
            }
            // The ranks' own handshake deadline follows the daemon's.
            cmd.env(
                "SNAPC_TIMEOUT",
                format!("{}", self.opts.timeout.as_secs_f64()),
            );
            let daemon = i32::try_from(std::process::id()).unwrap_or(0);
            let nofile = crate::fds::original();
            // SAFETY: rank_pre_exec makes async-signal-safe calls only.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || rank_pre_exec(daemon, nofile));
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
                        scanned: 0,
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
                started: Instant::now(),
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
            log::info!(target: crate::logging::TARGET, "rank {rank} (pid {pid}) {}", state.name());
            if state.status() != 0 && died.is_none() && !self.aborting && !stopping {
                died = Some(rank);
                self.first_failure.get_or_insert(state.status());
            }
        }
        if let Some(rank) = died
            && !self.aborting
        {
            self.end_job(&format!("rank {rank} failed"), None);
        }
    }

    /// Sends `sig` to every rank still running; SIGTERM goes with SIGCONT,
    /// so that a stopped rank gets it too.
    pub(super) fn terminate_ranks(&self, sig: Signal) {
        for r in &self.ranks {
            if r.state == RankState::Running {
                let pid = Pid::from_raw(r.pid as i32);
                let _ = kill(pid, sig);
                if sig == Signal::SIGTERM {
                    let _ = kill(pid, Signal::SIGCONT);
                }
            }
        }
    }

    /// The ranks still running.
    pub(super) fn running(&self) -> Vec<u32> {
        (0..self.ranks.len() as u32)
            .filter(|&i| self.ranks[i as usize].state == RankState::Running)
            .collect()
    }

    /// Ends the job as mpirun does: SIGCONT and SIGTERM to every rank,
    /// SIGKILL to those still running after the grace period. `requested`
    /// is the job's exit status when a user asked for the end; a second
    /// request while the job is ending kills the ranks at once.
    pub(super) fn end_job(&mut self, why: &str, requested: Option<i32>) {
        if self.ending.is_some() {
            if requested.is_some() {
                self.kill_remaining(&format!("{why} again"));
            }
            return;
        }
        self.aborting = true;
        if let Some(r) = self.restarting.take() {
            self.restart_outcome = Some(RestartOutcome {
                seq: Some(r.seq),
                dir: Some(r.dir),
                error: Some(format!("{why}: the job ended")),
                started: r.started,
            });
            let _ = self.gc.handle_restart_done(self.io.now(), false);
        }
        let running = self.running();
        let grace = self.opts.grace;
        self.ending = Some(Ending {
            requested: requested.filter(|_| !running.is_empty()),
            kill_at: Instant::now() + grace,
            killed: false,
        });
        if running.is_empty() {
            return;
        }
        self.log(format!(
            "{why}: terminating the job (SIGTERM; SIGKILL after {:.1} s)",
            grace.as_secs_f64()
        ));
        self.terminate_ranks(Signal::SIGTERM);
    }

    /// SIGKILL to the ranks still running.
    pub(super) fn kill_remaining(&mut self, why: &str) {
        let running = self.running();
        if let Some(e) = self.ending.as_mut() {
            e.killed = true;
        }
        if !running.is_empty() {
            self.log(format!("{why}: SIGKILL to {}", rank_list(&running)));
            self.terminate_ranks(Signal::SIGKILL);
        }
    }

    /// Acts on stop signals, and kills the ranks that outlive the grace period.
    pub(super) fn ending_tick(&mut self, stops_seen: &mut u32) {
        let stops = STOPS.load(Ordering::Relaxed);
        while *stops_seen < stops {
            *stops_seen += 1;
            let sig = STOP_SIGNAL.load(Ordering::Relaxed);
            self.end_job(&format!("{} received", signal_name(sig)), Some(128 + sig));
        }
        if let Some(e) = self.ending
            && !e.killed
            && Instant::now() >= e.kill_at
        {
            let grace = self.opts.grace.as_secs_f64();
            self.kill_remaining(&format!("still running {grace:.1} s after SIGTERM"));
        }
    }
}

/// Prints the whole lines of `o` with its rank's prefix (and splits a line
/// longer than [`MAX_LINE`]). Each byte is scanned once; the printed part
/// is removed from the buffer once per call. The printing never blocks
/// ([`crate::out`]): a stalled reader costs dropped lines, counted.
pub(super) fn print_lines(o: &mut OutPipe) {
    let mut start = 0;
    loop {
        let newline = o
            .buf
            .get(o.scanned..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map(|p| o.scanned + p);
        let end = match newline {
            Some(e) if e - start <= MAX_LINE => e,
            _ if o.buf.len() - start >= MAX_LINE => start + MAX_LINE,
            _ => break,
        };
        let text = String::from_utf8_lossy(o.buf.get(start..end).unwrap_or_default());
        let line = format!("[{}] {text}\n", o.rank);
        if o.stderr {
            crate::out::err_bytes(line.as_bytes());
        } else {
            crate::out::out_bytes(line.as_bytes());
        }
        start = if o.buf.get(end) == Some(&b'\n') {
            end + 1
        } else {
            end
        };
        o.scanned = start;
    }
    o.buf.drain(..start);
    o.scanned = o.buf.len();
}
