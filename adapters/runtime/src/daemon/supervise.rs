//! Processes: the daemon's own signals, the environment every process of
//! the job gets, their output, and the agent's side of them (starting its
//! ranks, reaping, signalling, noticing stops).

use super::*;
use serde::{Deserialize, Serialize};

/// How many stop signals (SIGINT, SIGTERM, SIGHUP) arrived, and the last one.
pub(super) static STOPS: AtomicU32 = AtomicU32::new(0);
pub(super) static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// How many checkpoint-on signals (`--checkpoint-on`) arrived.
pub(super) static CHECKPOINT_SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_stop(sig: nix::libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::Relaxed);
    STOPS.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn on_checkpoint_signal(_: nix::libc::c_int) {
    CHECKPOINT_SIGNALS.fetch_add(1, Ordering::Relaxed);
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

/// Handles the stop signals, ignores [`IGNORED`], and counts
/// `checkpoint_on` (`snapc run --checkpoint-on`) instead of ignoring it.
pub(super) fn install_stop_handlers(checkpoint_on: Option<Signal>) {
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
    for sig in IGNORED.into_iter().filter(|s| Some(*s) != checkpoint_on) {
        // SAFETY: SIG_IGN runs no code.
        if let Err(e) = unsafe { sigaction(sig, &ignore) } {
            log::warn!("cannot ignore {sig}: {e}");
        }
    }
    if let Some(sig) = checkpoint_on {
        let act = SigAction::new(
            SigHandler::Handler(on_checkpoint_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler only adds to an atomic.
        if let Err(e) = unsafe { sigaction(sig, &act) } {
            log::warn!("cannot handle {sig}: {e}");
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum RankState {
    /// Started by a launcher and not joined yet (or not started yet).
    Waiting,
    Running,
    Exited(i32),
    Signalled(i32),
    /// Joined through a launcher, and its process ended (its status is
    /// its launcher's to know).
    Gone,
    /// Its node's agent was lost.
    Lost,
}

impl RankState {
    pub(super) fn name(self) -> String {
        match self {
            Self::Waiting => "not joined".into(),
            Self::Running => "running".into(),
            Self::Exited(c) => format!("exited({c})"),
            Self::Signalled(s) => format!("killed({})", signal_name(s)),
            Self::Gone => "gone".into(),
            Self::Lost => "lost with its node".into(),
        }
    }

    /// The exit status this contributes to the job's.
    pub(super) fn status(self) -> i32 {
        match self {
            Self::Waiting | Self::Running | Self::Gone => 0,
            Self::Exited(c) => c,
            Self::Signalled(s) => 128 + s,
            Self::Lost => 1,
        }
    }

    /// It has ended (a process that was started and is no more).
    pub(super) fn ended(self) -> bool {
        matches!(
            self,
            Self::Exited(_) | Self::Signalled(_) | Self::Gone | Self::Lost
        )
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

/// A rank as its node's agent holds it.
pub(super) struct RankProc {
    /// 0 until a rank started by a launcher joined.
    pub(super) pid: u32,
    /// The process, when this agent forked it (not when a launcher did).
    pub(super) child: Option<Child>,
    /// When a joined rank's process started (`/proc`): its pid is signalled
    /// only while it still names that process.
    pub(super) start_time: Option<u64>,
    pub(super) state: RankState,
    pub(super) conn: Option<u64>,
    /// It reported its pid with LOCAL_UPDATE (a restarted rank does).
    pub(super) updated: bool,
    /// Found stopped at the last look.
    pub(super) stopped: bool,
}

/// A process the coordinator started and follows: the launcher of a job
/// whose ranks join (`snapc run --launcher`), or the node agents' step.
pub(super) struct LauncherProc {
    pub(super) pid: u32,
    pub(super) child: Child,
    pub(super) state: RankState,
}

impl LauncherProc {
    /// Whether it ended now (it is reaped).
    pub(super) fn poll(&mut self) -> bool {
        if self.state != RankState::Running {
            return false;
        }
        let Ok(Some(status)) = self.child.try_wait() else {
            return false;
        };
        self.state = RankState::of(status);
        true
    }

    /// Sends `sig` (SIGTERM with SIGCONT) while it runs.
    pub(super) fn signal(&self, sig: Signal) {
        if self.state == RankState::Running {
            let pid = Pid::from_raw(self.pid as i32);
            let _ = kill(pid, sig);
            if sig == Signal::SIGTERM {
                let _ = kill(pid, Signal::SIGCONT);
            }
        }
    }
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

/// The output of the processes one side started.
#[derive(Default)]
pub(super) struct Outputs {
    pub(super) pipes: Vec<OutPipe>,
}

impl Outputs {
    /// Reads a started process's stdout and stderr.
    pub(super) fn take(&mut self, child: &mut Child, rank: Option<u32>) {
        for (pipe, stderr) in [
            (child.stdout.take().map(OwnedFd::from), false),
            (child.stderr.take().map(OwnedFd::from), true),
        ] {
            if let Some(fd) = pipe {
                self.pipes.push(OutPipe {
                    rank,
                    stderr,
                    file: File::from(fd),
                    buf: Vec::new(),
                    scanned: 0,
                });
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pipes.is_empty()
    }

    /// Reads pipe `i`; false when it closed.
    pub(super) fn ready(&mut self, i: usize) -> bool {
        let Some(o) = self.pipes.get_mut(i) else {
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

    /// Removes the pipes that closed (their last line printed).
    pub(super) fn close(&mut self, mut closed: Vec<usize>) {
        closed.sort_unstable();
        closed.dedup();
        for i in closed.into_iter().rev() {
            if i >= self.pipes.len() {
                continue;
            }
            let mut o = self.pipes.remove(i);
            if !o.buf.is_empty() {
                o.buf.push(b'\n');
                print_lines(&mut o);
            }
        }
    }
}

/// The longest line a rank's output is printed in; a longer one is split
/// there, so that output without newlines costs bounded memory.
pub(super) const MAX_LINE: usize = 64 * 1024;

impl RankProc {
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

    /// Alive but stopped (SIGSTOP, `checkpoint --stop`, a debugger).
    fn is_stopped(&self) -> bool {
        self.state == RankState::Running && snapc_posix::lcio::is_stopped(self.pid)
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

/// What every process of the job finds in its environment.
pub(super) struct JobEnv<'a> {
    pub(super) job: &'a str,
    pub(super) jobid: u32,
    pub(super) nranks: u32,
    /// The node agent's socket and pipe directory; with `{node}` where a
    /// launcher's ranks on several nodes put their own node's name.
    pub(super) socket: &'a std::ffi::OsStr,
    pub(super) pipes: &'a std::ffi::OsStr,
    pub(super) store: &'a std::path::Path,
    pub(super) staging: &'a std::path::Path,
    pub(super) timeout: Duration,
    pub(super) checkpoint_timeout: Duration,
}

impl JobEnv<'_> {
    /// `argv` with this environment, for a rank (forked) or a launcher
    /// (whose ranks inherit it).
    pub(super) fn command(
        &self,
        argv: &[String],
        cwd: Option<&PathBuf>,
        launcher: bool,
    ) -> Command {
        let config = snapc_posix::lcio::local_config(self.timeout, self.checkpoint_timeout);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("SNAPC_JOB", self.job)
            .env("SNAPC_JOBID", self.jobid.to_string())
            .env("SNAPC_NRANKS", self.nranks.to_string())
            .env("SNAPC_DAEMON_SOCKET", self.socket)
            .env("SNAPC_PIPE_DIR", self.pipes)
            .env("SNAPC_STORE", self.store)
            .env("SNAPC_SNAPSHOT_ROOT", self.staging)
            // Long enough for every rank's handshake under this
            // daemon's deadlines: a rank never gives up on a release
            // that is still to come.
            .env(
                "SNAPC_RELEASE_TIMEOUT",
                snapc_posix::lcio::release_wait(&config)
                    .as_secs_f64()
                    .to_string(),
            )
            // The ranks' own handshake deadline follows the daemon's.
            .env("SNAPC_TIMEOUT", format!("{}", self.timeout.as_secs_f64()))
            .env_remove("SNAPC_SIGNAL")
            .env_remove("SNAPC_RANK")
            .env_remove("SNAPC_RESTART_DIR")
            .env_remove(snapc_posix::join::SECRET_VAR)
            .env_remove(snapc_posix::join::RESTART_SNAPSHOT_VAR);
        if let Some(cwd) = cwd {
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
}

/// How often the agent looks whether its ranks are stopped.
const STOP_SCAN: Duration = Duration::from_millis(100);

impl Agent {
    /// Starts this node's ranks (forked), or awaits those a launcher
    /// starts, from `launch`.
    /// `clear` forgets the ranks there were (a relaunch); a migration's
    /// ranks start beside them.
    pub(super) fn launch(&mut self, launch: msg::Launch, clear: bool) -> Result<(), RunError> {
        if clear {
            self.ranks.clear();
            self.launch = Some(launch.clone());
        }
        if launch.launcher {
            self.log(format!(
                "node {}: awaiting the ranks a launcher starts; ranks' socket {}",
                self.setup.node,
                self.paths.sock.display()
            ));
            return Ok(());
        }
        let argv = launch.argv.clone();
        let setup = self.setup.clone();
        let paths = self.paths.clone();
        let env = JobEnv {
            job: &setup.job,
            jobid: setup.jobid,
            nranks: setup.nranks,
            socket: paths.sock.as_os_str(),
            pipes: paths.pipes.as_os_str(),
            store: &setup.store,
            staging: &setup.staging,
            timeout: self.timeout,
            checkpoint_timeout: self.checkpoint_timeout,
        };
        for &rank in &launch.ranks {
            let mut cmd = env.command(&argv, launch.cwd.as_ref(), false);
            cmd.env("SNAPC_RANK", rank.to_string());
            if self.remote {
                cmd.env("SNAPC_NODE", &setup.node);
            }
            if let Some(dir) = &launch.restart_from {
                cmd.env("SNAPC_RESTART_DIR", dir.join(format!("rank-{rank}")));
            }
            let mut child = cmd
                .spawn()
                .map_err(io_err(format!("starting rank {rank}: {}", argv[0])))?;
            let pid = child.id();
            self.outs.take(&mut child, Some(rank));
            let name = ProcessName {
                jobid: setup.jobid,
                vpid: rank,
            };
            self.lc
                .add_process(name, pid)
                .map_err(|e| RunError::Invalid(format!("rank {rank}: {e}")))?;
            self.ranks.insert(
                rank,
                RankProc {
                    pid,
                    child: Some(child),
                    start_time: None,
                    state: RankState::Running,
                    conn: None,
                    updated: false,
                    stopped: false,
                },
            );
            self.report_rank(rank);
        }
        if self.remote {
            self.log(format!(
                "node {}: {} started{}",
                self.setup.node,
                rank_list(&launch.ranks),
                match &launch.restart_from {
                    Some(d) => format!(" from {}", d.display()),
                    None => String::new(),
                }
            ));
        }
        Ok(())
    }

    /// Reaps the ranks that ended; tells the coordinator.
    pub(super) fn reap(&mut self) {
        let now = self.io.now();
        let mut ended = Vec::new();
        for (&rank, r) in self.ranks.iter_mut() {
            if r.state != RankState::Running {
                continue;
            }
            let state = match r.child.as_mut() {
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => Some(RankState::of(status)),
                    _ => None,
                },
                // Joined through a launcher: not ours to reap. Its link
                // closes when it ends; then its pid is watched until it no
                // longer names that process.
                None if r.conn.is_none() => {
                    let gone = matches!(
                        snapc_posix::target::state(r.pid),
                        snapc_posix::target::State::Gone | snapc_posix::target::State::Exited
                    ) || snapc_posix::target::start_time(r.pid) != r.start_time;
                    gone.then_some(RankState::Gone)
                }
                None => None,
            };
            if let Some(state) = state {
                r.state = state;
                r.stopped = false;
                ended.push((rank, r.pid, r.conn.take()));
            }
        }
        for (rank, pid, conn) in ended {
            let name = ProcessName {
                jobid: self.setup.jobid,
                vpid: rank,
            };
            let _ = self.lc.remove_process(now, name);
            if let Some(id) = conn {
                self.conns.remove(&id);
            }
            if let Some(r) = self.ranks.get(&rank) {
                let what = if r.state == RankState::Gone {
                    "is gone: its link closed and its process ended".to_string()
                } else {
                    r.state.name()
                };
                log::info!(target: crate::logging::TARGET, "rank {rank} (pid {pid}) {what}");
            }
            self.report_rank(rank);
        }
    }

    /// Looks (at most every [`STOP_SCAN`]) whether running ranks stopped or
    /// continued, and says so; `now_too` looks at once.
    pub(super) fn scan_stops(&mut self, now_too: bool) {
        if !now_too && self.stops_seen_at.elapsed() < STOP_SCAN {
            return;
        }
        self.stops_seen_at = Instant::now();
        let changed: Vec<u32> = self
            .ranks
            .iter_mut()
            .filter_map(|(&rank, r)| {
                let stopped = r.is_stopped();
                (stopped != r.stopped).then(|| {
                    r.stopped = stopped;
                    rank
                })
            })
            .collect();
        for rank in changed {
            self.report_rank(rank);
        }
    }

    /// Sends `sig` to every rank still running (SIGTERM with SIGCONT, so
    /// that a stopped rank gets it too); with `only_stopped`, to those
    /// stopped.
    pub(super) fn signal_ranks(&mut self, sig: Signal, only_stopped: bool) {
        for r in self.ranks.values() {
            if only_stopped && !r.is_stopped() {
                continue;
            }
            r.signal(sig);
            if sig == Signal::SIGTERM {
                r.signal(Signal::SIGCONT);
            }
        }
        if sig == Signal::SIGCONT {
            self.scan_stops(true);
        }
    }

    /// Tells the coordinator rank `rank`'s state.
    pub(super) fn report_rank(&mut self, rank: u32) {
        let Some(r) = self.ranks.get(&rank) else {
            return;
        };
        let info = msg::RankInfo {
            vpid: rank,
            pid: r.pid,
            state: r.state,
            connected: r.conn.is_some(),
            stopped: r.stopped,
            updated: r.updated,
        };
        self.send(msg::Up::Ctl(msg::UpCtl::Rank(info)));
    }

    /// Whether a rank still runs.
    pub(super) fn any_running(&self) -> bool {
        self.ranks.values().any(|r| r.state == RankState::Running)
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
