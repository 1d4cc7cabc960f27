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

/// Run in each rank (or the launcher) between fork and exec
/// (async-signal-safe calls only): it dies with the daemon (SIGKILL when
/// the daemon's thread that launched it ends, checked against a daemon
/// that died before), gets the signal dispositions and the file limit it
/// would have had without the daemon; a launcher gets a process group of
/// its own.
fn rank_pre_exec(daemon: i32, nofile: Option<(u64, u64)>, launcher: bool) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() != daemon {
        return Err(std::io::Error::other("the daemon is gone"));
    }
    if launcher {
        // A signal sent to the daemon's process group (a batch system's
        // SIGUSR1, say) must not reach the launcher: mpirun forwards
        // SIGUSR1 to its ranks, which would take it for a checkpoint that
        // no coordinator runs. The daemon ends the launcher itself.
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
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
    /// Started by a launcher and not joined yet.
    Waiting,
    Running,
    Exited(i32),
    Signalled(i32),
    /// Joined through a launcher, and its process ended (its status is
    /// its launcher's to know).
    Gone,
}

impl RankState {
    pub(super) fn name(self) -> String {
        match self {
            Self::Waiting => "not joined".into(),
            Self::Running => "running".into(),
            Self::Exited(c) => format!("exited({c})"),
            Self::Signalled(s) => format!("killed({})", signal_name(s)),
            Self::Gone => "gone".into(),
        }
    }

    /// The exit status this contributes to the job's.
    pub(super) fn status(self) -> i32 {
        match self {
            Self::Waiting | Self::Running | Self::Gone => 0,
            Self::Exited(c) => c,
            Self::Signalled(s) => 128 + s,
        }
    }

    /// It has ended (a process that was started and is no more).
    pub(super) fn ended(self) -> bool {
        matches!(self, Self::Exited(_) | Self::Signalled(_) | Self::Gone)
    }

    fn of(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Self::Exited(c),
            (None, Some(s)) => Self::Signalled(s),
            (None, None) => Self::Exited(255),
        }
    }
}

pub(super) fn signal_name(s: i32) -> String {
    Signal::try_from(s).map_or_else(|_| s.to_string(), |sig| sig.as_str().to_string())
}

pub(super) struct RankProc {
    /// 0 until a rank started by a launcher joined.
    pub(super) pid: u32,
    pub(super) started: Instant,
    /// The process, when this daemon forked it (not when a launcher did).
    pub(super) child: Option<Child>,
    /// When a joined rank's process started (`/proc`): its pid is signalled
    /// only while it still names that process.
    pub(super) start_time: Option<u64>,
    pub(super) state: RankState,
    pub(super) conn: Option<u64>,
    /// It reported its pid with LOCAL_UPDATE (a restarted rank does).
    pub(super) updated: bool,
}

/// The launcher of a job whose ranks join (`snapc run --launcher`):
/// supervision follows it.
pub(super) struct LauncherProc {
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) state: RankState,
}

/// Program names taken for launchers: their ranks join the daemon
/// rather than being the program itself (`snapc run -- mpirun ...`).
pub const LAUNCHERS: [&str; 6] = ["mpirun", "mpiexec", "orterun", "prterun", "srun", "prun"];

/// Whether `program` is named as a launcher ([`LAUNCHERS`], also with a
/// suffix such as Debian's `mpirun.openmpi`).
pub fn is_launcher(program: &str) -> bool {
    let name = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    let base = name.split('.').next().unwrap_or(name);
    LAUNCHERS.contains(&base)
}

pub(super) struct OutPipe {
    /// Its rank's output (printed with a `[rank]` prefix), or the
    /// launcher's (printed as it is: it already carries the ranks'
    /// output as the launcher formats it).
    pub(super) rank: Option<u32>,
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

    /// Whether its pid still names the process that joined (a forked
    /// rank's pid is ours until we reap it).
    pub(super) fn same_process(&self) -> bool {
        self.pid != 0
            && (self.child.is_some()
                || snapc_posix::target::start_time(self.pid) == self.start_time)
    }

    /// Sends `sig` if it is still the same process.
    pub(super) fn signal(&self, sig: Signal) {
        if self.state == RankState::Running && self.same_process() {
            let _ = kill(Pid::from_raw(self.pid as i32), sig);
        }
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
    /// The program with the environment every process of the job gets:
    /// each rank (forked), or the launcher (whose ranks inherit it).
    fn command(&self, launcher: bool) -> Command {
        let argv = &self.opts.argv;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("SNAPC_JOB", &self.opts.job)
            .env("SNAPC_JOBID", self.jobid.to_string())
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
            // The ranks' own handshake deadline follows the daemon's.
            .env(
                "SNAPC_TIMEOUT",
                format!("{}", self.opts.timeout.as_secs_f64()),
            )
            .env_remove("SNAPC_SIGNAL")
            .env_remove("SNAPC_RANK")
            .env_remove("SNAPC_RESTART_DIR")
            .env_remove(snapc_posix::join::SECRET_VAR)
            .env_remove(snapc_posix::join::RESTART_SNAPSHOT_VAR);
        if let Some(cwd) = &self.opts.cwd {
            cmd.current_dir(cwd);
        }
        let daemon = i32::try_from(std::process::id()).unwrap_or(0);
        let nofile = crate::fds::original();
        // SAFETY: rank_pre_exec makes async-signal-safe calls only.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || rank_pre_exec(daemon, nofile, launcher));
        }
        cmd
    }

    /// Reads a started process's stdout and stderr.
    fn take_outputs(&mut self, child: &mut Child, rank: Option<u32>) {
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
    }

    pub(super) fn launch(&mut self) -> Result<(), RunError> {
        if self.opts.launcher {
            return self.launch_launcher();
        }
        let argv = self.opts.argv.clone();
        for rank in 0..self.opts.nranks {
            let mut cmd = self.command(false);
            cmd.env("SNAPC_RANK", rank.to_string());
            if let Some(dir) = &self.opts.restart_from {
                cmd.env("SNAPC_RESTART_DIR", dir.join(format!("rank-{rank}")));
            }
            let mut child = cmd
                .spawn()
                .map_err(io_err(format!("starting rank {rank}: {}", argv[0])))?;
            let pid = child.id();
            self.take_outputs(&mut child, Some(rank));
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
                child: Some(child),
                start_time: None,
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

    /// Starts the launcher, with the job's secret in its environment (never
    /// on its command line) and, on a restart, the snapshot each rank finds
    /// its own directory in; its N ranks are awaited.
    fn launch_launcher(&mut self) -> Result<(), RunError> {
        let mut cmd = self.command(true);
        if let Some(secret) = &self.secret {
            cmd.env(
                snapc_posix::join::SECRET_VAR,
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(secret.as_bytes()),
            );
        }
        if let Some(dir) = &self.opts.restart_from {
            cmd.env(snapc_posix::join::RESTART_SNAPSHOT_VAR, dir);
        }
        let mut child = cmd.spawn().map_err(io_err(format!(
            "starting the launcher {}",
            self.opts.argv[0]
        )))?;
        let pid = child.id();
        self.take_outputs(&mut child, None);
        self.launcher = Some(LauncherProc {
            pid,
            child,
            state: RankState::Running,
        });
        let now = Instant::now();
        self.ranks = (0..self.opts.nranks)
            .map(|_| RankProc {
                pid: 0,
                started: now,
                child: None,
                start_time: None,
                state: RankState::Waiting,
                conn: None,
                updated: false,
            })
            .collect();
        let from = match &self.opts.restart_from {
            Some(d) => format!(" from {}", d.display()),
            None => String::new(),
        };
        self.log(format!(
            "job {} (jobid {:#x}): launcher {} (pid {pid}) started{from}; its {} ranks join with the job's secret; control socket {}",
            self.opts.job,
            self.jobid,
            self.opts.argv[0],
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
        // A launcher that ended has seen its ranks end: those whose link is
        // not read as closed yet are looked at now too.
        let launcher_ended = self.poll_launcher();
        for (rank, r) in self.ranks.iter_mut().enumerate() {
            if r.state != RankState::Running {
                continue;
            }
            let ended = match r.child.as_mut() {
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => Some(RankState::of(status)),
                    _ => None,
                },
                // Joined through a launcher: not ours to reap. Its link
                // closes when it ends; then its pid is watched until it no
                // longer names that process.
                None if r.conn.is_none() || launcher_ended => {
                    let gone = matches!(
                        snapc_posix::target::state(r.pid),
                        snapc_posix::target::State::Gone | snapc_posix::target::State::Exited
                    ) || snapc_posix::target::start_time(r.pid) != r.start_time;
                    gone.then_some(RankState::Gone)
                }
                None => None,
            };
            let Some(state) = ended else {
                continue;
            };
            r.state = state;
            let name = ProcessName {
                jobid: self.jobid,
                vpid: rank as u32,
            };
            let _ = self.lc.remove_process(now, name);
            if let Some(id) = r.conn.take() {
                self.conns.remove(&id);
            }
            let pid = r.pid;
            if state == RankState::Gone {
                // The launcher decides what a rank's end means for the job.
                log::info!(target: crate::logging::TARGET,
                    "rank {rank} (pid {pid}) is gone: its link closed and its process ended");
                continue;
            }
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
        if launcher_ended {
            self.launcher_ended(stopping);
        }
    }

    /// Whether the launcher ended now (it is reaped).
    fn poll_launcher(&mut self) -> bool {
        let Some(l) = self.launcher.as_mut() else {
            return false;
        };
        if l.state != RankState::Running {
            return false;
        }
        let Ok(Some(status)) = l.child.try_wait() else {
            return false;
        };
        l.state = RankState::of(status);
        true
    }

    /// The launcher's end: the job's end, with its status. Before every
    /// rank joined it is an error saying which never did; ranks it left
    /// running are terminated. A restart's own termination of it is not
    /// an end.
    fn launcher_ended(&mut self, stopping: bool) {
        let Some((pid, state)) = self.launcher.as_ref().map(|l| (l.pid, l.state)) else {
            return;
        };
        let program = self.opts.argv[0].clone();
        if stopping {
            self.log(format!(
                "launcher {program} (pid {pid}) ended for the restart: {}",
                state.name()
            ));
            return;
        }
        if self.restarting.is_some() {
            self.restart_failed(format!(
                "the launcher {program} (pid {pid}) {} before every rank reported",
                state.name()
            ));
            return;
        }
        let waiting: Vec<u32> = (0..self.ranks.len() as u32)
            .filter(|&i| self.ranks[i as usize].state == RankState::Waiting)
            .collect();
        if !waiting.is_empty() && !self.aborting {
            let why = format!(
                "the launcher {program} (pid {pid}) {} before every rank joined: {} never joined (the job has {} ranks)",
                state.name(),
                rank_list(&waiting),
                self.opts.nranks
            );
            log::error!(target: crate::logging::TARGET, "{why}");
            self.first_failure.get_or_insert(if state.status() != 0 {
                state.status()
            } else {
                1
            });
            self.end_job("the launcher exited", None);
            return;
        }
        self.log(format!("launcher {program} (pid {pid}) {}", state.name()));
        if !self.running().is_empty() {
            self.end_job("the launcher exited with ranks left", None);
        }
    }

    /// Sends `sig` to every rank still running (and to the launcher); SIGTERM
    /// goes with SIGCONT, so that a stopped rank gets it too.
    pub(super) fn terminate_ranks(&self, sig: Signal) {
        for r in &self.ranks {
            r.signal(sig);
            if sig == Signal::SIGTERM {
                r.signal(Signal::SIGCONT);
            }
        }
        if let Some(l) = self
            .launcher
            .as_ref()
            .filter(|l| l.state == RankState::Running)
        {
            let pid = Pid::from_raw(l.pid as i32);
            let _ = kill(pid, sig);
            if sig == Signal::SIGTERM {
                let _ = kill(pid, Signal::SIGCONT);
            }
        }
    }

    /// The ranks still running.
    pub(super) fn running(&self) -> Vec<u32> {
        (0..self.ranks.len() as u32)
            .filter(|&i| self.ranks[i as usize].state == RankState::Running)
            .collect()
    }

    /// Whether the launcher still runs.
    pub(super) fn launcher_running(&self) -> bool {
        self.launcher
            .as_ref()
            .is_some_and(|l| l.state == RankState::Running)
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
        let running = !self.running().is_empty() || self.launcher_running();
        let grace = self.opts.grace;
        self.ending = Some(Ending {
            requested: requested.filter(|_| running),
            kill_at: Instant::now() + grace,
            killed: false,
        });
        if !running {
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
        let launcher = self.launcher_running();
        if !running.is_empty() || launcher {
            let mut whom = Vec::new();
            if launcher {
                whom.push("the launcher".to_string());
            }
            if !running.is_empty() {
                whom.push(rank_list(&running));
            }
            self.log(format!("{why}: SIGKILL to {}", whom.join(" and ")));
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
        let line = match o.rank {
            Some(rank) => format!("[{rank}] {text}\n"),
            None => format!("{text}\n"),
        };
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

#[cfg(test)]
mod tests {
    use super::is_launcher;

    #[test]
    fn launchers_are_known_by_name() {
        for p in [
            "mpirun",
            "/usr/bin/mpirun",
            "mpirun.openmpi",
            "mpiexec.hydra",
            "srun",
            "orterun",
            "prterun",
        ] {
            assert!(is_launcher(p), "{p}");
        }
        for p in ["./heat", "mpirun-wrapper", "/opt/srunner", "counter"] {
            assert!(!is_launcher(p), "{p}");
        }
    }
}
