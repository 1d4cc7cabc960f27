//! The application API: a process links snapc, registers its hooks, and calls
//! [`Snapc::progress`] at its safe points.
//!
//! [`Snapc`] runs the core's [`AppCoordinator`] against the real world: the
//! checkpoint signal (through [`crate::signal`]), the handshake FIFOs
//! (through [`crate::fifo`]), the application's [`Hooks`], and the snapshot
//! store. A checkpoint runs inside the `progress` call that notices it, as in
//! Open MPI: the application is at a safe point there.
//!
//! Without a daemon socket the process runs standalone: the snapshot for
//! handle H goes to `$SNAPC_STORE/standalone/H/pid-<pid>/` (several
//! processes may take part in one checkpoint; the subtree keeps handles
//! apart from the jobs a daemon stores beside them), and
//! application-initiated requests answer
//! [`ApiError::NoCoordinator`].
//!
//! Under a node daemon (`snapc run`), the daemon sets `SNAPC_SNAPSHOT_ROOT`
//! (its staging directory for the job): the snapshot for handle H goes to
//! `$SNAPC_SNAPSHOT_ROOT/H/rank-<rank>/`, and once every rank completed the
//! daemon moves `H/` to `<store>/<job>/<seq>/` in one rename and writes
//! `H.global` (the sequence number and reference) for the ranks to read
//! ([`crate::sstore`]). While quiesced by the runtime, the process also
//! watches its daemon link for the runtime's quiesce end (the JOB_STATE the
//! daemon forwards with tag SNAPC).
//!
//! snapc logs through the `log` facade and installs no logger: an
//! application turns its logs on by installing one (`env_logger::init()`,
//! say, then `RUST_LOG=snapc_posix=debug,snapc_core=debug` traces every
//! handshake step). Under a node daemon, the process ends itself when the
//! daemon closes its link ([`Config::end_with_daemon`]).

use crate::fifo::{Channel, FifoError, PipeDir};
use crate::link::{DaemonLink, LinkError, Tag};
use crate::signal::{self, CHECKPOINT_FLAG, SignalError};
use crate::store::{DirError, PrivateDir};
use nix::sys::signal::Signal;
use snapc_core::app::{
    Action, AppCoordinator, CheckpointResult, Config as AppConfig, CrsName, FrameKind as Frame,
    HandshakeReport, HostError, InputError, Outcome, PrepareResult, RequestReport, SstoreOp,
};
use snapc_core::time::{Duration as CoreDuration, Instant as CoreInstant};
use snapc_core::wire::{
    CrState, FifoOptions, LocalUpdate, Message, ProcessName, Request, ToDaemon,
};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the application does at each step of a checkpoint.
pub trait Hooks {
    /// Reach a state that can be saved. `NotNow` postpones to a later
    /// progress point (the handshake stays open).
    fn prepare(&mut self) -> PrepareResult {
        PrepareResult::Ready
    }

    /// Save the state into `snapshot.dir` (which exists and is empty).
    fn checkpoint(&mut self, snapshot: &Snapshot) -> CheckpointResult;

    /// Carry on after the checkpoint; `state` is CONTINUE, TERM, RESTART
    /// (also for processes that stay put during a migration) or ERROR.
    fn recover(&mut self, state: CrState) -> Result<(), String> {
        let _ = state;
        Ok(())
    }

    /// At start-up, load the state saved in `dir` (`SNAPC_RESTART_DIR`).
    fn restart(&mut self, dir: &Path) -> Result<(), String>;
}

/// The snapshot a checkpoint writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The directory to write into.
    pub dir: PathBuf,
    /// The sstore handle.
    pub handle: u32,
    /// The checkpoint's options.
    pub options: FifoOptions,
}

/// The longest an application request's wait for the daemon goes without
/// looking at the checkpoint flag.
const SIGNAL_CHECK: Duration = Duration::from_millis(2);

/// Configuration, from code or from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pipe directory (`SNAPC_PIPE_DIR`; see [`PipeDir::from_env`] for the default).
    pub pipe_dir: Option<PathBuf>,
    /// The checkpoint signal (`SNAPC_SIGNAL`, default SIGUSR1).
    pub signal: Signal,
    /// Chain to a handler already installed for the signal instead of refusing.
    pub chain_signal: bool,
    /// The deadline of each FIFO open, read and write (`SNAPC_TIMEOUT`, seconds, default 10).
    pub timeout: Duration,
    /// The longest wait for the release once the final state is written
    /// (`SNAPC_RELEASE_TIMEOUT`, seconds); `None`: [`RELEASE_PER_TIMEOUT`]
    /// times `timeout`. A node daemon sets it for its ranks from its own
    /// deadlines.
    pub release_timeout: Option<Duration>,
    /// Where standalone snapshots go (`SNAPC_STORE`; default `snapc-store-<uid>` in the temp dir).
    pub store: PathBuf,
    /// The node daemon's socket (`SNAPC_DAEMON_SOCKET`).
    pub daemon_socket: Option<PathBuf>,
    /// The job id (`SNAPC_JOBID`, default 0).
    pub jobid: u32,
    /// This process's rank: `SNAPC_RANK`, else the launcher's
    /// (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK`, `SLURM_PROCID`, `PMI_RANK`:
    /// [`crate::join::RANK_VARS`]); default 0.
    pub rank: u32,
    /// A snapshot to restart from (`SNAPC_RESTART_DIR`; else, when
    /// `SNAPC_RESTART_SNAPSHOT` names a whole snapshot, its `rank-<rank>/`).
    pub restart_dir: Option<PathBuf>,
    /// The job's secret (`SNAPC_JOB_SECRET`): a rank that a launcher
    /// started joins its daemon with it ([`crate::join`]). A daemon that
    /// forked its ranks sets none.
    pub job_secret: Option<crate::join::Secret>,
    /// The daemon's staging directory for this job's snapshots
    /// (`SNAPC_SNAPSHOT_ROOT`); standalone snapshot paths when unset.
    pub snapshot_root: Option<PathBuf>,
    /// Deadline of an application request's answer (`SNAPC_REQUEST_TIMEOUT`,
    /// seconds; default: the app coordinator's own, which outlast a whole
    /// job checkpoint).
    pub request_timeout: Option<Duration>,
    /// End this process when its node daemon closes the link (the daemon is
    /// gone: nobody supervises or checkpoints the process any more):
    /// SIGTERM, then SIGKILL after [`END_GRACE`]. Set by [`Config::from_env`]
    /// when `SNAPC_DAEMON_SOCKET` is (a rank the daemon launched); off by
    /// default.
    pub end_with_daemon: bool,
}

/// How long a process whose daemon is gone has between SIGTERM and SIGKILL.
pub const END_GRACE: Duration = Duration::from_secs(5);

/// The longest duration the `SNAPC_*` variables take, in seconds (a year):
/// longer ones are refused rather than overflowing a deadline.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A positive number of seconds, at most [`MAX_SECONDS`].
fn positive_seconds(v: &str) -> Result<Duration, String> {
    let secs: f64 = v
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if !(secs > 0.0 && secs <= MAX_SECONDS) {
        return Err(format!(
            "must be a positive number of seconds, at most {MAX_SECONDS}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// A configuration value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pipe_dir: None,
            signal: Signal::SIGUSR1,
            chain_signal: false,
            timeout: Duration::from_secs(10),
            release_timeout: None,
            store: std::env::temp_dir()
                .join(format!("snapc-store-{}", nix::unistd::Uid::effective())),
            daemon_socket: None,
            jobid: 0,
            rank: 0,
            restart_dir: None,
            job_secret: None,
            snapshot_root: None,
            request_timeout: None,
            end_with_daemon: false,
        }
    }
}

/// The release deadline, in deadlines of one FIFO step, when
/// `SNAPC_RELEASE_TIMEOUT` is not set: a coordinator that bounds each of its
/// steps by the same timeout releases within that (its slowest process's
/// whole handshake: names, open, options, response, go-ahead, final state,
/// stop; then the release itself).
pub const RELEASE_PER_TIMEOUT: u32 = 8;

impl Config {
    /// The longest wait for the release (see [`Config::release_timeout`]).
    pub fn release_wait(&self) -> Duration {
        self.release_timeout
            .unwrap_or_else(|| self.timeout.saturating_mul(RELEASE_PER_TIMEOUT))
    }

    /// The variables [`from_vars`](Self::from_vars) reads (the launchers'
    /// rank variables among them).
    pub const VARIABLES: &[&str] = &[
        "SNAPC_PIPE_DIR",
        "SNAPC_SNAPSHOT_ROOT",
        "SNAPC_SIGNAL",
        "SNAPC_REQUEST_TIMEOUT",
        "SNAPC_TIMEOUT",
        "SNAPC_RELEASE_TIMEOUT",
        "SNAPC_STORE",
        "SNAPC_DAEMON_SOCKET",
        "SNAPC_JOBID",
        "SNAPC_RANK",
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
        "PMI_RANK",
        "SNAPC_JOB_SECRET",
        "SNAPC_RESTART_DIR",
        "SNAPC_RESTART_SNAPSHOT",
    ];

    /// The defaults, overridden by the `SNAPC_*` variables that are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// As [`from_env`](Self::from_env), with `get` standing for the environment.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        let bad = |var: &'static str, value: &str, reason: String| ConfigError {
            var,
            value: value.into(),
            reason,
        };
        // A launcher's ranks on several nodes: each its own node's
        // (crate::node).
        let node = || crate::node::name_from(&get);
        if let Some(v) = get("SNAPC_PIPE_DIR") {
            c.pipe_dir = Some(crate::node::expand(&v, &node()).into());
        }
        if let Some(v) = get("SNAPC_SNAPSHOT_ROOT") {
            c.snapshot_root = Some(v.into());
        }
        if let Some(v) = get("SNAPC_SIGNAL") {
            c.signal =
                signal::parse_signal(&v).map_err(|e| bad("SNAPC_SIGNAL", &v, e.to_string()))?;
        }
        // A positive number of seconds, at most MAX_SECONDS.
        let seconds = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
            let Some(v) = get(var) else {
                return Ok(None);
            };
            positive_seconds(&v).map(Some).map_err(|e| bad(var, &v, e))
        };
        c.request_timeout = seconds("SNAPC_REQUEST_TIMEOUT")?;
        if let Some(t) = seconds("SNAPC_TIMEOUT")? {
            c.timeout = t;
        }
        c.release_timeout = seconds("SNAPC_RELEASE_TIMEOUT")?;
        if let Some(v) = get("SNAPC_STORE") {
            c.store = v.into();
        }
        if let Some(v) = get("SNAPC_DAEMON_SOCKET") {
            c.daemon_socket = Some(crate::node::expand(&v, &node()).into());
            c.end_with_daemon = true;
        }
        if let Some(v) = get("SNAPC_JOBID") {
            c.jobid = v
                .parse()
                .map_err(|_| bad("SNAPC_JOBID", &v, "not a non-negative integer".into()))?;
        }
        let rank = crate::join::rank_from(&get)
            .map_err(|(var, v)| bad(var, &v, "not a non-negative integer".into()))?;
        if let Some((r, _)) = rank {
            c.rank = r;
        }
        if let Some(v) = get(crate::join::SECRET_VAR) {
            c.job_secret = Some(crate::join::Secret::new(v.into_bytes()).ok_or_else(|| {
                bad(
                    crate::join::SECRET_VAR,
                    "(not shown)",
                    format!("at most {} bytes", crate::join::MAX_SECRET),
                )
            })?);
            if rank.is_none() && c.daemon_socket.is_some() {
                return Err(bad(
                    "SNAPC_RANK",
                    "",
                    format!(
                        "a rank that joins its daemon needs its rank: one of {} (set by the launcher)",
                        crate::join::RANK_VARS.join(", ")
                    ),
                ));
            }
        }
        if let Some(v) = get("SNAPC_RESTART_DIR") {
            c.restart_dir = Some(v.into());
        } else if let Some(v) = get(crate::join::RESTART_SNAPSHOT_VAR) {
            // A launcher cannot give each rank its own directory.
            c.restart_dir = Some(PathBuf::from(v).join(format!("rank-{}", c.rank)));
        }
        Ok(c)
    }
}

/// Why [`Snapc::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pipe directory cannot be used.
    #[error(transparent)]
    PipeDir(#[from] FifoError),
    /// The checkpoint signal cannot be taken.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The restart hook failed.
    #[error("restart from {dir}: {reason}")]
    Restart {
        /// The snapshot.
        dir: PathBuf,
        /// The hook's error.
        reason: String,
    },
    /// The node daemon cannot be reached.
    #[error("{path}: {error}")]
    Daemon {
        /// The socket.
        path: PathBuf,
        /// What failed.
        error: LinkError,
    },
}

/// [`Snapc::progress_wait`]: no checkpoint signal came within the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no checkpoint signal within {0:?}")]
pub struct NoSignal(pub Duration);

/// Why an application request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No node daemon: requests to the global coordinator cannot be made.
    #[error("no coordinator: this process runs standalone (SNAPC_DAEMON_SOCKET is not set)")]
    NoCoordinator,
    /// The coordinator refused the request as made (busy, not quiesced...).
    #[error("request refused: {0}")]
    Refused(InputError),
    /// The machine kept the request without a deadline (a defect).
    #[error("request left pending without a deadline")]
    Stuck,
}

fn to_core(t: Instant, origin: Instant) -> CoreInstant {
    CoreInstant::from_micros(
        u64::try_from(t.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX),
    )
}

/// A snapshot's attributes (the sstore keys a handshake sets: `crs`,
/// `session_dir`, `skip`, `synced`), kept in the snapshot directory as
/// [`ATTRIBUTES_FILE`]: one `key=value` line each, sorted, backslashes and
/// newlines in values escaped as `\\` and `\n`.
pub type Attributes = std::collections::BTreeMap<String, String>;

/// The name of a snapshot's attribute file.
pub const ATTRIBUTES_FILE: &str = "snapc-local.attrs";

/// The log levels the environment asks for, for whoever installs a logger
/// (the `snapc` command, libsnapc's `snapc_log_init`): `SNAPC_LOG`, else
/// `RUST_LOG`; `None` when neither is set to something.
pub fn log_filter_from_env() -> Option<String> {
    ["SNAPC_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
}

/// The text of an attribute file.
pub fn format_attributes(attrs: &Attributes) -> String {
    let mut out = String::new();
    for (k, v) in attrs {
        out.push_str(k);
        out.push('=');
        out.push_str(&v.replace('\\', "\\\\").replace('\n', "\\n"));
        out.push('\n');
    }
    out
}

/// The attributes of an attribute file (lines without `=` are skipped).
pub fn parse_attributes(text: &str) -> Attributes {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unescape(v)))
        .collect()
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn core_duration(d: Duration) -> CoreDuration {
    CoreDuration::from(d)
}

/// snapc inside one application process.
pub struct Snapc<H: Hooks> {
    machine: AppCoordinator<'static>,
    hooks: H,
    dir: PipeDir,
    store: PathBuf,
    channel: Option<Channel>,
    /// The snapshot directory of the handshake in progress (private,
    /// reached through its descriptor).
    snapshot_dir: Option<PrivateDir>,
    /// The snapshot directory of the handshake in progress, opened (and
    /// created) while the coordinator turns the response into the
    /// go-ahead, before this process needs it (see [`Ahead`]).
    ahead: Option<Ahead>,
    /// The handle the last options frame named.
    offered: Option<u32>,
    /// The channel closed at the teardown's first step (its names went with it).
    closed_channel: bool,
    /// Starts the writeback of what the checkpoint hook writes while it runs.
    flusher: crate::flush::Flusher,
    /// The snapshot's attributes (`snapc-local.json`) set since the last
    /// write: kept here and written once, durably, by the sync step (or as
    /// they are at teardown if no sync came), instead of one durable
    /// rewrite per attribute.
    attrs: Option<Attributes>,
    /// Where `now` counts from.
    origin: Instant,
    outcomes: Vec<Outcome>,
    /// The node daemon, when there is one.
    link: Option<DaemonLink>,
    /// Deadline of one send to the daemon.
    send_timeout: Duration,
    /// The daemon's staging directory (managed snapshots), if any.
    snapshot_root: Option<PathBuf>,
    /// This process's rank.
    rank: u32,
    /// Signals the flag had ignored when the final state was written.
    ignored_at_final: Option<u32>,
    /// Ends the process when the daemon closes the link.
    _close_watch: Option<crate::link::CloseWatch>,
}

impl<H: Hooks> Snapc<H> {
    /// Takes the checkpoint signal, checks the pipe directory, and runs the
    /// restart hook when the configuration names a snapshot to restart from.
    pub fn start(config: Config, mut hooks: H) -> Result<Self, StartError> {
        let dir = match &config.pipe_dir {
            Some(p) => PipeDir::open(p.clone())?,
            None => PipeDir::from_env()?,
        };
        if let Some(restart) = &config.restart_dir {
            hooks
                .restart(restart)
                .map_err(|reason| StartError::Restart {
                    dir: restart.clone(),
                    reason,
                })?;
            log::info!("restarted from {}", restart.display());
        }
        let mut app = AppConfig::new(
            std::process::id(),
            ProcessName {
                jobid: config.jobid,
                vpid: config.rank,
            },
            config.rank == 0,
        );
        let t = core_duration(config.timeout);
        app.deadlines.open = t;
        app.deadlines.read = t;
        app.deadlines.write = t;
        // A coordinator that hangs after the final state costs this, not
        // the machine's 80 minutes; the handshake then fails and the
        // application goes on.
        app.deadlines.release = core_duration(config.release_wait());
        if let Some(r) = config.request_timeout.map(core_duration) {
            app.deadlines.own_handshake = r;
            app.deadlines.op_response = r;
            app.deadlines.fin_ack = r;
        }
        signal::install(config.signal, config.chain_signal)?;
        signal::ignore_sigpipe();
        // Connected only once the handler is in place: the daemon may signal
        // a process as soon as it connected.
        let link = match &config.daemon_socket {
            Some(path) => match Self::connect(path, &config, &app) {
                Ok(link) => Some(link),
                Err(error) => {
                    let _ = signal::uninstall();
                    return Err(StartError::Daemon {
                        path: path.clone(),
                        error,
                    });
                }
            },
            None => None,
        };
        let close_watch = match &link {
            Some(l) if config.end_with_daemon => match l.on_close(end_process) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::warn!("cannot watch the daemon link: {e}");
                    None
                }
            },
            _ => None,
        };
        Ok(Self {
            _close_watch: close_watch,
            machine: AppCoordinator::new(app, &CHECKPOINT_FLAG),
            hooks,
            dir,
            store: config.store,
            channel: None,
            snapshot_dir: None,
            ahead: None,
            offered: None,
            closed_channel: false,
            flusher: crate::flush::Flusher::default(),
            attrs: None,
            origin: Instant::now(),
            outcomes: Vec::new(),
            link,
            send_timeout: config.timeout,
            snapshot_root: config.snapshot_root,
            rank: config.rank,
            ignored_at_final: None,
        })
    }

    /// Connects to the daemon (joining it with the job's secret when a
    /// launcher started this process); a restarted process tells it its
    /// new pid.
    fn connect(path: &Path, config: &Config, app: &AppConfig) -> Result<DaemonLink, LinkError> {
        let mut link = DaemonLink::connect(path)?;
        if let Some(secret) = &config.job_secret {
            let hello = crate::join::Hello {
                rank: config.rank,
                pid: app.pid,
                secret: secret.as_bytes(),
            };
            crate::join::join(&mut link, &hello, Instant::now() + config.timeout)?;
        }
        if config.restart_dir.is_some() {
            let update = ToDaemon::LocalUpdate(LocalUpdate {
                name: app.name,
                pid: app.pid as i32,
                debug: None,
            });
            send_message(&mut link, Tag::Snapc, &update, config.timeout)?;
        }
        Ok(link)
    }

    fn now(&self) -> CoreInstant {
        to_core(Instant::now(), self.origin)
    }

    /// The wall-clock deadline of the machine's current wait.
    fn deadline(&self) -> Instant {
        let now = self.now();
        let left = self
            .machine
            .poll_timeout()
            .map_or(CoreDuration::MAX, |d| d.saturating_duration_since(now));
        Instant::now() + Duration::from(left).min(Duration::from_secs(86_400 * 365))
    }

    /// The safe point. Costs one atomic load when nothing is pending;
    /// otherwise runs the pending checkpoint (or resumes a stalled prepare)
    /// and returns how it ended, if it did.
    #[inline]
    pub fn progress(&mut self) -> Option<Outcome> {
        if self.is_idle() {
            return None;
        }
        self.progress_slow()
    }

    /// Whether [`progress`](Self::progress) has nothing to do: no signal
    /// pending, no checkpoint or request under way. One atomic load and a
    /// field read.
    #[inline]
    pub fn is_idle(&self) -> bool {
        !CHECKPOINT_FLAG.is_requested() && self.machine.is_idle()
    }

    /// Whether a checkpoint signal has arrived and its checkpoint has not
    /// started yet: one atomic load, nothing taken. Ranks that exchange
    /// messages agree on it collectively (one allreduce per iteration) and
    /// then all call [`progress_wait`](Self::progress_wait), so that none
    /// blocks in a message exchange while another is in its handshake.
    #[inline]
    pub fn pending(&self) -> bool {
        CHECKPOINT_FLAG.is_requested()
    }

    /// Waits up to `timeout` for the checkpoint signal that the ranks'
    /// agreement says is coming, then runs it as [`progress`](Self::progress)
    /// does. Runs at once when a signal is already pending or a checkpoint
    /// is under way (a stalled prepare, a quiesce). The wait is woken by the
    /// signal's handler, whichever thread the signal reaches.
    pub fn progress_wait(&mut self, timeout: Duration) -> Result<Option<Outcome>, NoSignal> {
        if !self.machine.is_idle() || signal::wait_requested(timeout) {
            return Ok(self.progress_slow());
        }
        Err(NoSignal(timeout))
    }

    #[cold]
    fn progress_slow(&mut self) -> Option<Outcome> {
        let before = self.outcomes.len();
        let now = self.now();
        if self.machine.poll_timeout().is_some_and(|d| d <= now) {
            self.machine.handle_timeout(now);
        }
        if self.machine.is_quiesced() && self.peer_gone() {
            note(self.machine.handle_io_error(now, IoError::PeerGone));
        }
        if self.machine.is_quiesced() {
            self.runtime_quiesce_end(now);
        }
        self.machine.handle_progress(now);
        self.drive();
        self.outcomes
            .get(before..)
            .and_then(|new| new.last().cloned())
    }

    /// While quiesced by the runtime: a JOB_STATE RUNNING with
    /// inc_recover_only forwarded by the daemon (tag SNAPC) is the runtime's
    /// quiesce end; the process then ends its quiesce as if it had asked
    /// (final state CONTINUE, release, recover), without sending a request
    /// (the global coordinator already runs it).
    fn runtime_quiesce_end(&mut self, now: CoreInstant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.recv(Instant::now()) {
            Ok(Some((Tag::Snapc, bytes))) => {
                let end = matches!(
                    snapc_core::wire::FromGc::parse(&bytes),
                    Ok(snapc_core::wire::FromGc::JobState(js))
                        if js.detail.is_some_and(|d| d.options.inc_recover_only)
                );
                if end {
                    let mut buf = [0u8; 64];
                    if let Err(e) = self.machine.request(now, Request::QuiesceEnd, &mut buf) {
                        log::warn!("quiesce end: {e:?}");
                    }
                }
            }
            Ok(Some((Tag::SnapcFull, bytes))) => note(self.machine.handle_gc_message(now, &bytes)),
            Ok(Some((Tag::Join, _))) => log::debug!("ignored a join frame after joining"),
            Ok(None) => {}
            Err(e) => {
                log::warn!("{e}");
                self.daemon_gone();
            }
        }
    }

    /// While quiesced nothing is read or written; a local coordinator that
    /// went away shows as an error on the write end (its reader is gone).
    fn peer_gone(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let Some(ch) = &self.channel else {
            return false;
        };
        let mut fds = [PollFd::new(ch.tx.fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
    }

    /// Every outcome so far (handshakes and requests), oldest first.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// Whether the process should now wait to be terminated (`term`, a
    /// migration target, a restart request).
    pub fn is_terminating(&self) -> bool {
        self.machine.is_terminating()
    }

    /// Whether a prepare-only checkpoint holds the process quiesced.
    pub fn is_quiesced(&self) -> bool {
        self.machine.is_quiesced()
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The hooks, mutably.
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// An application-initiated request (checkpoint, restart, migrate,
    /// quiesce, INIT, FIN) to the job's global coordinator, through the node
    /// daemon. Returns when the request ends; checkpoints the daemon asks
    /// for meanwhile (the leader's own, say) run inside this call. A
    /// standalone process has no coordinator to ask.
    pub fn request(&mut self, request: Request<'_>) -> Result<RequestReport, ApiError> {
        if self.link.is_none() {
            log::warn!("request {} refused: no coordinator", request.op_event());
            return Err(ApiError::NoCoordinator);
        }
        let before = self.outcomes.len();
        let mut buf = vec![0u8; 1 << 16];
        let n = self
            .machine
            .request(self.now(), request, &mut buf)
            .map_err(ApiError::Refused)?;
        if n > 0 {
            let sent = match self.link.as_mut() {
                Some(link) => link.send(
                    Tag::SnapcFull,
                    &buf[..n],
                    Instant::now() + self.send_timeout,
                ),
                None => Err(LinkError::Closed),
            };
            if let Err(e) = sent {
                log::warn!("request {} not delivered: {e}", request.op_event());
                self.daemon_gone();
            }
        }
        loop {
            self.drive();
            if let Some(report) = self
                .outcomes
                .get(before..)
                .into_iter()
                .flatten()
                .find_map(|o| match o {
                    Outcome::Request(r) => Some(r.clone()),
                    _ => None,
                })
            {
                return Ok(report);
            }
            if self.machine.poll_timeout().is_none() && !CHECKPOINT_FLAG.is_requested() {
                return Err(ApiError::Stuck);
            }
            self.await_daemon();
            let _ = self.progress_slow();
        }
    }

    /// Waits for a message from the daemon until the machine's next
    /// deadline, at most [`SIGNAL_CHECK`] at a time, and hands it over.
    fn await_daemon(&mut self) {
        // A signal cuts the wait short, unless it came just before the wait
        // began (or went to another thread): the flag is looked at again
        // soon after, since the coordinator signals only once.
        let deadline = self.deadline().min(Instant::now() + SIGNAL_CHECK);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        match link.recv(deadline) {
            Ok(Some((Tag::SnapcFull, bytes))) => {
                note(self.machine.handle_gc_message(self.now(), &bytes))
            }
            Ok(Some((tag @ (Tag::Snapc | Tag::Join), bytes))) => log::debug!(
                "ignored a {}-byte {tag:?} message from the daemon",
                bytes.len()
            ),
            Ok(None) => {}
            Err(e) => {
                log::warn!("{e}");
                self.daemon_gone();
            }
        }
    }

    /// The daemon went away: what waits for it fails now, and the process
    /// goes on standalone.
    fn daemon_gone(&mut self) {
        self.link = None;
        note(self.machine.handle_gc_gone(self.now()));
    }

    /// Carries out the machine's actions until it waits for something that
    /// is not synchronous here (a later progress point, or nothing).
    fn drive(&mut self) {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        while let Some(action) = self.machine.poll_action(&mut out) {
            self.execute(action, &out);
        }
    }

    fn io_failed(&mut self, e: &FifoError) {
        let now = self.now();
        log::warn!("handshake: {e}");
        match e {
            FifoError::Timeout { .. } => {
                // The FIFO layer waited until the machine's own deadline.
                let at = self.machine.poll_timeout().map_or(now, |d| d.max(now));
                self.machine.handle_timeout(at);
            }
            FifoError::PeerGone { .. } => {
                note(self.machine.handle_io_error(now, IoError::PeerGone))
            }
            _ => note(self.machine.handle_io_error(now, IoError::Failed)),
        }
    }

    fn execute(&mut self, action: Action, out: &MessageBuf) {
        match action {
            Action::OpenChannel { names } => {
                match Channel::open_app(&self.dir, names, self.deadline()) {
                    Ok(ch) => {
                        self.channel = Some(ch);
                        note(self.machine.handle_opened(self.now()));
                    }
                    Err(e) => self.io_failed(&e),
                }
            }
            Action::Read { frame, len } => {
                if frame == Frame::GoAhead {
                    // The response is written; the coordinator takes a
                    // while to answer it: time to open the snapshot's
                    // directory, which the go-ahead's first steps need.
                    self.open_ahead();
                }
                let mut buf = [0u8; 64];
                let result = match (self.channel.as_ref(), buf.get_mut(..len)) {
                    // Often there already: the options are the cue that
                    // opened the channel; the go-ahead comes while the
                    // snapshot's directory is opened ahead.
                    (Some(ch), Some(b)) => ch.rx.read_exact_eager(b, self.deadline()),
                    _ => {
                        log::error!("read of {frame:?} ({len} bytes) without an open channel");
                        note(self.machine.handle_io_error(self.now(), IoError::Failed));
                        return;
                    }
                };
                match result {
                    Ok(()) => {
                        if frame == Frame::Release {
                            self.released();
                        }
                        if frame == Frame::Options {
                            self.offered = snapc_core::wire::OptionsFrame::parse(
                                &buf[..len],
                                self.machine.config().debug,
                            )
                            .ok()
                            .map(|f| f.handle);
                        }
                        note(self.machine.handle_read(self.now(), &buf[..len]))
                    }
                    Err(e) => self.io_failed(&e),
                }
            }
            Action::Write { frame, bytes } => {
                if frame == Frame::FinalState {
                    // This handshake's coordinator sends no signal from the
                    // final state on (it reads it as soon as it is written):
                    // one that comes is the next handshake's. Counted from
                    // before the write, which wakes the coordinator.
                    self.ignored_at_final = Some(CHECKPOINT_FLAG.ignored());
                }
                let result = match self.channel.as_ref() {
                    Some(ch) => ch.tx.write_all(&bytes, self.deadline()),
                    None => {
                        log::error!("write of {frame:?} without an open channel");
                        note(self.machine.handle_io_error(self.now(), IoError::Failed));
                        return;
                    }
                };
                match result {
                    Ok(()) => note(self.machine.handle_write_done(self.now())),
                    Err(e) => self.io_failed(&e),
                }
            }
            Action::Prepare => {
                let r = self.hooks.prepare();
                note(self.machine.handle_prepare(self.now(), r));
            }
            Action::Checkpoint { handle, options } => {
                let r = match &self.snapshot_dir {
                    Some(dir) => {
                        // What the hook writes starts for the disk while it
                        // writes more (the sync step then waits for less).
                        let _early = self.flusher.begin(dir.fd());
                        self.hooks.checkpoint(&Snapshot {
                            dir: dir.path().to_path_buf(),
                            handle,
                            options,
                        })
                    }
                    None => CheckpointResult::Error,
                };
                note(self.machine.handle_checkpoint(self.now(), r));
            }
            Action::Recover { state } => {
                let r = self.hooks.recover(state).map_err(|e| {
                    log::warn!("recover hook: {e}");
                    HostError
                });
                note(self.machine.handle_recovered(self.now(), r));
            }
            Action::Sstore(op) => self.sstore(op),
            Action::SendToDaemon { len } => match self.link.as_mut() {
                Some(link) => {
                    let deadline = Instant::now() + self.send_timeout;
                    if let Err(e) = link.send(Tag::Snapc, &out[..len], deadline) {
                        // Nothing waits for this message: the teardown goes on.
                        log::warn!("message to the daemon not delivered: {e}");
                    }
                }
                None => log::debug!("standalone: {len}-byte message not sent to a daemon"),
            },
            Action::Close { .. } => {
                // Dropping the channel closes both fds and unlinks both FIFOs.
                self.closed_channel = self.channel.take().is_some();
            }
            Action::Unlink { names } => {
                // A channel removes its names as it closes; these are the
                // names of one that never opened whole.
                if self.channel.take().is_none() && !self.closed_channel {
                    for name in [names.prog_read(), names.prog_write()] {
                        crate::fifo::remove_stale(&self.dir.fifo_path(name));
                    }
                }
                self.closed_channel = false;
                self.flush_attributes();
                self.snapshot_dir = None;
                if let Some(unused) = self.ahead.take() {
                    unused.discard();
                }
                self.offered = None;
                note(self.machine.handle_teardown_done(self.now()));
                // A signal that came after the final state was for the next
                // handshake: the flag ignored it while this one ended, so it
                // is taken up now instead of being lost.
                if let Some(before) = self.ignored_at_final.take()
                    && CHECKPOINT_FLAG.ignored() != before
                {
                    CHECKPOINT_FLAG.request();
                }
            }
            Action::AwaitTermination => {
                log::info!("checkpoint done; this process is to be terminated")
            }
            Action::Outcome(outcome) => {
                log_outcome(&outcome);
                self.outcomes.push(outcome);
            }
            other => log::error!("an action this adapter does not know: {other:?}"),
        }
    }

    /// The release is read: the handshake is ending, its names may be
    /// taken for ending by other coordinators (the application's lock goes).
    fn released(&mut self) {
        if let Some(ch) = &self.channel {
            ch.release_app_lock();
        }
    }

    /// Stable storage: the daemon's staging directory
    /// (`<root>/<handle>/rank-<rank>/`) or, standalone,
    /// `<store>/standalone/<handle>/pid-<pid>/`; attributes in [`ATTRIBUTES_FILE`].
    /// Every directory is private and reached through descriptors
    /// ([`crate::store`]).
    fn sstore(&mut self, op: SstoreOp) {
        let now = self.now();
        match op {
            SstoreOp::Register { handle } => {
                self.flush_attributes();
                let dir = match self.ahead.take() {
                    Some(a) if a.handle == handle => Ok(a.dir),
                    other => {
                        if let Some(unused) = other {
                            unused.discard();
                        }
                        self.open_snapshot_dir(handle).map(|a| a.dir)
                    }
                };
                // A failure surfaces at ReadLocation, which the machine awaits.
                match dir {
                    Ok(d) => self.snapshot_dir = Some(d),
                    Err(e) => log::warn!("snapshot directory: {e}"),
                }
            }
            SstoreOp::ReadLocation { .. } => {
                let r = if self.snapshot_dir.is_some() {
                    Ok(())
                } else {
                    Err(HostError)
                };
                note(self.machine.handle_sstore(now, r));
            }
            SstoreOp::SetSkip { .. } => self.attribute("skip", "true"),
            SstoreOp::SetSessionDir { .. } => {
                let cwd = std::env::current_dir()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                self.attribute("session_dir", &cwd);
            }
            SstoreOp::SetCrsName { name, .. } => match name {
                CrsName::Component => self.attribute("crs", "snapc-hooks"),
                CrsName::EmptyIfNone => self.attribute_if_absent("crs", ""),
            },
            SstoreOp::Sync { .. } => {
                let r = self.sync_snapshot().map_err(|e| {
                    log::warn!("sync: {e}");
                    HostError
                });
                // Its time counts in the handshake's stages.
                note(self.machine.handle_sstore(self.now(), r));
            }
            SstoreOp::ReadGlobal { handle } => {
                let global = self
                    .snapshot_root
                    .as_deref()
                    .and_then(|root| crate::sstore::read_global(root, handle));
                match global {
                    Some((seq, reference)) => note(self.machine.handle_sstore_global(
                        now,
                        Some(seq),
                        Some(&reference),
                    )),
                    None => note(self.machine.handle_sstore_global(now, None, None)),
                }
            }
        }
    }

    /// Opens (creating what is missing) the directory snapshot `handle`
    /// goes to: the daemon's staging directory
    /// (`<root>/<handle>/rank-<rank>/`) or, standalone,
    /// `<store>/standalone/<handle>/pid-<pid>/`.
    fn open_snapshot_dir(&self, handle: u32) -> Result<Ahead, DirError> {
        let (parent, name) = match &self.snapshot_root {
            Some(root) => (
                crate::sstore::open_handle_dir(root, handle)?,
                format!("rank-{}", self.rank),
            ),
            None => (
                open_standalone_handle(&self.store, handle)?,
                format!("pid-{}", std::process::id()),
            ),
        };
        let dir = parent.open_sub(&name, true)?;
        Ok(Ahead {
            handle,
            dir,
            parent,
            name,
        })
    }

    /// Opens the directory of the snapshot the options offered, ahead of
    /// its registration (a failure is left for the registration to meet).
    fn open_ahead(&mut self) {
        let Some(handle) = self.offered else {
            return;
        };
        if self.ahead.as_ref().is_some_and(|a| a.handle == handle) {
            return;
        }
        if let Some(unused) = self.ahead.take() {
            unused.discard();
        }
        self.ahead = self.open_snapshot_dir(handle).ok();
    }

    fn read_attributes(&self) -> Attributes {
        self.snapshot_dir
            .as_ref()
            // A directory this handshake made holds no attributes yet.
            .filter(|d| !d.was_created())
            .and_then(|d| d.read_file(ATTRIBUTES_FILE).ok())
            .map(|t| parse_attributes(&String::from_utf8_lossy(&t)))
            .unwrap_or_default()
    }

    fn write_attributes(&self, attrs: &Attributes) -> Result<(), DirError> {
        match &self.snapshot_dir {
            Some(d) => d.write_atomically(ATTRIBUTES_FILE, format_attributes(attrs).as_bytes()),
            None => Ok(()),
        }
    }

    /// The snapshot's attributes as set so far (read from its file at the first use).
    fn attrs_mut(&mut self) -> &mut Attributes {
        if self.attrs.is_none() {
            self.attrs = Some(self.read_attributes());
        }
        self.attrs.get_or_insert_default()
    }

    fn attribute(&mut self, key: &str, value: &str) {
        if self.snapshot_dir.is_some() {
            self.attrs_mut().insert(key.into(), value.into());
        }
    }

    fn attribute_if_absent(&mut self, key: &str, value: &str) {
        if self.snapshot_dir.is_some() && !self.attrs_mut().contains_key(key) {
            self.attribute(key, value);
        }
    }

    /// Writes attributes set since the last write (a handshake that ended
    /// before its sync step leaves them as they were set).
    fn flush_attributes(&mut self) {
        if let Some(attrs) = self.attrs.take()
            && let Err(e) = self.write_attributes(&attrs)
        {
            log::warn!("snapshot attributes: {e}");
        }
    }

    fn sync_snapshot(&mut self) -> std::io::Result<()> {
        if self.snapshot_dir.is_none() {
            return Err(std::io::Error::other("no snapshot directory"));
        }
        let mut attrs = self.attrs.take().unwrap_or_else(|| self.read_attributes());
        attrs.insert("synced".into(), "true".into());
        let Some(dir) = &self.snapshot_dir else {
            return Ok(());
        };
        // What the hooks wrote, then the attributes, then the directory:
        // each made durable once. Attributes written before (a handshake
        // that ended before its sync step, into the same directory) are
        // replaced atomically instead.
        dir.sync_entries()?;
        let text = format_attributes(&attrs);
        match dir.write_new_synced(ATTRIBUTES_FILE, text.as_bytes()) {
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                dir.write_atomically(ATTRIBUTES_FILE, text.as_bytes())?
            }
            other => other?,
        }
        Ok(dir.sync()?)
    }
}

/// A snapshot's directory opened before its registration: ahead of the
/// go-ahead, while the coordinator reads the response, so that the
/// go-ahead's first steps find it ready. A handshake that ends without a
/// go-ahead removes it again if this opening created it (only the
/// process's own directory: a standalone handle's directory may be shared
/// by the other processes of the checkpoint, and stays).
struct Ahead {
    handle: u32,
    dir: PrivateDir,
    parent: PrivateDir,
    name: String,
}

impl Ahead {
    fn discard(self) {
        if self.dir.was_created()
            && let Err(e) = self.parent.remove_empty_dir(&self.name)
        {
            log::debug!("unused snapshot directory: {e}");
        }
    }
}

/// The daemon closed the link: nothing supervises or checkpoints this
/// process any more, and a rank never outlives its daemon.
fn end_process() {
    use nix::sys::signal::kill;
    let me = nix::unistd::Pid::this();
    log::error!(
        "the node daemon closed its link: ending this process (SIGTERM, SIGKILL after {END_GRACE:?})"
    );
    let _ = kill(me, Signal::SIGTERM);
    std::thread::sleep(END_GRACE);
    let _ = kill(me, Signal::SIGKILL);
}

fn send_message(
    link: &mut DaemonLink,
    tag: Tag,
    msg: &ToDaemon,
    timeout: Duration,
) -> Result<(), LinkError> {
    let mut buf = [0u8; 64];
    let n = msg
        .emit(&mut buf)
        .map_err(|e| LinkError::Malformed(e.to_string()))?;
    link.send(tag, &buf[..n], Instant::now() + timeout)
}

/// The subtree of a store that holds standalone snapshots
/// (`<store>/standalone/<handle>/pid-<pid>/`); no job may have this name.
pub const STANDALONE_DIR: &str = "standalone";

/// An answer the machine did not take (it moved on, a deadline passed
/// first): it counts it; nothing else is to be done about it here.
fn note(taken: Result<(), InputError>) {
    if let Err(e) = taken {
        log::debug!("input not taken: {e}");
    }
}

/// Where a standalone process with `pid` puts its snapshot for `handle`.
pub fn standalone_snapshot_dir(store: &Path, handle: u32, pid: u32) -> PathBuf {
    store
        .join(STANDALONE_DIR)
        .join(handle.to_string())
        .join(format!("pid-{pid}"))
}

/// Opens (creating, 0700) [`standalone_snapshot_dir`]: the store is
/// refused unless it is a private directory of this user.
pub fn open_standalone_dir(store: &Path, handle: u32, pid: u32) -> Result<PrivateDir, DirError> {
    open_standalone_handle(store, handle)?.open_sub(&format!("pid-{pid}"), true)
}

/// Opens (creating, 0700) `<store>/standalone/<handle>/`, which holds the
/// snapshots of every process of the standalone checkpoint `handle`.
fn open_standalone_handle(store: &Path, handle: u32) -> Result<PrivateDir, DirError> {
    PrivateDir::open(store, true)?
        .open_sub(STANDALONE_DIR, true)?
        .open_sub(&handle.to_string(), true)
}

fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Handshake(HandshakeReport {
            names,
            state,
            error: None,
            stages,
            ..
        }) => {
            log::info!("checkpoint {}: {} ({stages:?})", names.n, state);
        }
        Outcome::Handshake(HandshakeReport {
            names,
            error: Some(e),
            ..
        }) => {
            log::warn!("checkpoint {} failed: {e}", names.n);
        }
        Outcome::Quiesced { names, .. } => log::info!("checkpoint {}: quiesced", names.n),
        Outcome::Request(r) => log::info!("request {}: {:?}", r.op, r.error),
        other => log::info!("{other:?}"),
    }
}

impl<H: Hooks> Drop for Snapc<H> {
    fn drop(&mut self) {
        self.channel = None;
        let _ = signal::uninstall();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_vars() {
        let vars = |k: &str| match k {
            "SNAPC_SIGNAL" => Some("USR2".to_string()),
            "SNAPC_TIMEOUT" => Some("0.5".to_string()),
            "SNAPC_RANK" => Some("3".to_string()),
            "SNAPC_STORE" => Some("/s".to_string()),
            _ => None,
        };
        let c = Config::from_vars(vars).unwrap();
        assert_eq!(c.signal, Signal::SIGUSR2);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.rank, 3);
        assert_eq!(c.store, PathBuf::from("/s"));
        let bad =
            Config::from_vars(|k| (k == "SNAPC_TIMEOUT").then(|| "-1".to_string())).unwrap_err();
        assert_eq!(bad.var, "SNAPC_TIMEOUT");
        let bad = Config::from_vars(|k| (k == "SNAPC_SIGNAL").then(|| "SIGWHAT".to_string()))
            .unwrap_err();
        assert!(bad.to_string().contains("SIGWHAT"));
    }

    #[test]
    fn variables_lists_every_variable_read() {
        let read = std::cell::RefCell::new(Vec::new());
        let _ = Config::from_vars(|k| {
            read.borrow_mut().push(k.to_string());
            None
        });
        let mut read = read.into_inner();
        read.sort();
        let mut listed: Vec<String> = Config::VARIABLES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(read, listed);
    }

    #[test]
    fn the_release_wait_comes_from_the_configuration() {
        let c = Config::from_vars(|k| (k == "SNAPC_TIMEOUT").then(|| "2".to_string())).unwrap();
        assert_eq!(c.release_wait(), Duration::from_secs(16));
        let c = Config::from_vars(|k| match k {
            "SNAPC_TIMEOUT" => Some("2".to_string()),
            "SNAPC_RELEASE_TIMEOUT" => Some("0.5".to_string()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.release_wait(), Duration::from_millis(500));
        assert_eq!(Config::default().release_wait(), Duration::from_secs(80));
        let bad = Config::from_vars(|k| (k == "SNAPC_RELEASE_TIMEOUT").then(|| "0".to_string()))
            .unwrap_err();
        assert_eq!(bad.var, "SNAPC_RELEASE_TIMEOUT");
    }
}
