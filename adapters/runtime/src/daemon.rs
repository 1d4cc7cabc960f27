//! The node daemon and launcher (`snapc run`, `snapc restart`): one process
//! holding the job's local coordinator and its global coordinator, launching
//! and supervising the ranks.
//!
//! One thread and one `poll` loop over: the ranks' socket and each rank's
//! connection (framed DSS messages, [`snapc_posix::link`]), the control socket and
//! its clients ([`crate::control`]), each rank's stdout and stderr (printed
//! with a `[rank]` prefix), and every handshake FIFO being read
//! ([`snapc_posix::lcio::FifoIo`]). The loop wakes at least every
//! [`SUPERVISE_TICK`] to reap ranks, and every millisecond while FIFO names
//! or stops are awaited.
//!
//! The local coordinator (LC) and the global coordinator (GC) only talk
//! through encoded messages, as if on two nodes: the LC's ORTED_STATE is
//! encoded, queued, decoded and handed to the GC as LC 0; the GC's JOB_STATE
//! likewise to the LC.
//!
//! Connections on the ranks' socket are identified with SO_PEERCRED: only a
//! process of this user whose pid is a rank this daemon launched (and not yet
//! connected) is accepted; its messages are taken as that rank's, whatever
//! they claim. The control socket accepts this user's processes.
//!
//! The job is checkpointable once every rank connected (the daemon then
//! sends the GC the job's INIT on rank 0's behalf; a rank may also send it).
//! A rank that dies (a signal or a non-zero exit) ends the job as mpirun
//! does: the others get SIGTERM, a checkpoint in progress fails, and the
//! daemon exits once every rank is reaped, with the failed rank's status
//! (128 + signal for a signal; the ranks it terminated because of it do not
//! count). Otherwise the job's status is the ranks' worst (highest).
//!
//! A rank's RESTART request (the GC's Restart action) relaunches the job in
//! place from the named snapshot of the store: the ranks are terminated
//! (not counted as failures), started again with `SNAPC_RESTART_DIR`, and
//! the GC is told once each reported its new pid (LOCAL_UPDATE). A snapshot
//! that is missing, incomplete or not the one the handle names fails the
//! restart before anything is touched, and the job goes on.

use crate::control::JobPaths;
use crate::snapstore::{self, JobStore};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Pid;
use serde_json::{Value, json};
use snapc_core::global::{
    self, Command as GcCommand, Config as GcConfig, GlobalCoordinator, OpKind, Placement, Report,
    Snapshot,
};
use snapc_core::local::{self, LocalCoordinator, Outcome, ProcessResult};
use snapc_core::time::Duration as CoreDuration;
use snapc_core::wire::{
    CkptState, CrState, FromGc, JobOptions, Message, OpEvent, OpResponse, OrtedState, ProcessName,
    Request, RequestOp, StateCode, ToDaemon, ToGc,
};
use snapc_posix::fifo::PipeDir;
use snapc_posix::lcio::FifoIo;
use snapc_posix::link::{FrameReader, Tag, encode_frame};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most ranks one daemon runs.
pub const MAX_RANKS: usize = 256;

/// The longest the loop sleeps while ranks run (reaping is polled).
pub const SUPERVISE_TICK: Duration = Duration::from_millis(20);

/// How long the daemon waits, once every rank is gone, for an operation in
/// progress to end before it exits anyway.
const EXIT_GRACE: Duration = Duration::from_secs(5);

type Gc = GlobalCoordinator<OneNode, 1, 8>;

/// Every rank on this node.
#[derive(Debug, Clone, Copy)]
struct OneNode(u32);

impl Placement for OneNode {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        (vpid < self.0).then_some("localhost")
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Number of ranks.
    pub nranks: u32,
    /// The job's name (run-directory and store entries).
    pub job: String,
    /// The snapshot store (`<store>/<job>/<seq>/`).
    pub store: PathBuf,
    /// Take a checkpoint this often.
    pub interval: Option<Duration>,
    /// Keep this many complete snapshots.
    pub keep: Option<usize>,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The ranks' working directory (default: ours).
    pub cwd: Option<PathBuf>,
    /// A complete snapshot to restart every rank from.
    pub restart_from: Option<PathBuf>,
    /// The deadline of each wait on a rank's FIFOs (signal to names, open,
    /// each write, the response).
    pub timeout: Duration,
}

/// Why the job could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Something is wrong with the request.
    #[error("{0}")]
    Invalid(String),
    /// A system operation failed.
    #[error("{what}: {error}")]
    Io {
        /// What was attempted.
        what: String,
        /// The error.
        error: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |error| RunError::Io { what, error }
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: nix::libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::Relaxed);
}

fn install_stop_handlers() {
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
enum RankState {
    Running,
    Exited(i32),
    Signalled(i32),
}

impl RankState {
    fn name(self) -> String {
        match self {
            Self::Running => "running".into(),
            Self::Exited(c) => format!("exited({c})"),
            Self::Signalled(s) => format!("killed({})", signal_name(s)),
        }
    }

    /// The exit status this contributes to the job's.
    fn status(self) -> i32 {
        match self {
            Self::Running => 0,
            Self::Exited(c) => c,
            Self::Signalled(s) => 128 + s,
        }
    }
}

fn signal_name(s: i32) -> String {
    Signal::try_from(s).map_or_else(|_| s.to_string(), |sig| sig.as_str().to_string())
}

struct RankProc {
    pid: u32,
    child: Child,
    state: RankState,
    conn: Option<u64>,
    /// It reported its pid with LOCAL_UPDATE (a restarted rank does).
    updated: bool,
}

struct OutPipe {
    rank: u32,
    stderr: bool,
    file: File,
    buf: Vec<u8>,
}

enum ConnKind {
    Rank(u32),
    Control,
}

struct Conn {
    stream: UnixStream,
    kind: ConnKind,
    frames: FrameReader,
    line: Vec<u8>,
}

/// Messages between the LC and the GC, encoded.
enum Wire {
    ToGc(Vec<u8>),
    ToLc(Vec<u8>),
}

/// A GC action without borrows.
enum GcOut {
    Job {
        bytes: Vec<u8>,
        state: CkptState,
        detail: Option<(u32, JobOptions)>,
    },
    ToRank(u32, FromGc<'static>),
    Established(Snapshot),
    Migrate,
    Restart {
        seq_num: i32,
        handle: String,
    },
    Finished(Report<1>),
}

/// How far an application-initiated restart went.
#[derive(Debug, Clone, Copy)]
enum RestartStep {
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
struct Restarting {
    seq: u32,
    dir: PathBuf,
    step: RestartStep,
    started: Instant,
}

/// How a restart ended, for the GC's report of it.
struct RestartOutcome {
    seq: Option<u32>,
    dir: Option<PathBuf>,
    error: Option<String>,
    started: Instant,
}

/// How long the old ranks get to end after SIGTERM, then after SIGKILL.
const RESTART_TERM_GRACE: Duration = Duration::from_secs(2);
const RESTART_KILL_GRACE: Duration = Duration::from_secs(5);

/// The operation the daemon follows.
struct Op {
    kind: &'static str,
    handle: u32,
    gc_seq: Option<u32>,
    started: Instant,
    results: BTreeMap<u32, ProcessResult>,
    waiters: Vec<u64>,
    /// The store refused the snapshot: the LC was not started, the daemon
    /// answers for it.
    lc_skipped: bool,
    error: Option<String>,
    published: Option<(u32, PathBuf, String, u64)>,
}

struct Daemon {
    opts: RunOptions,
    jobid: u32,
    paths: JobPaths,
    store: JobStore,
    lc: Box<LocalCoordinator<MAX_RANKS>>,
    gc: Box<Gc>,
    io: FifoIo,
    wire: VecDeque<Wire>,
    ranks: Vec<RankProc>,
    outs: Vec<OutPipe>,
    rank_listener: UnixListener,
    ctl_listener: UnixListener,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    initialized: bool,
    op: Option<Op>,
    runtime_quiesce_end: bool,
    quiesced: bool,
    last_result: Option<Value>,
    next_interval: Option<Instant>,
    aborting: bool,
    /// The status of the rank whose failure ended the job.
    first_failure: Option<i32>,
    all_gone_at: Option<Instant>,
    euid: u32,
    restarting: Option<Restarting>,
    restart_outcome: Option<RestartOutcome>,
}

fn emit<'a, M: Message<'a>>(m: &M) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    match m.emit(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(e) => {
            log::error!("encoding failed: {e}");
            buf.clear();
        }
    }
    buf
}

fn ms(d: CoreDuration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn opt_ms(d: Option<CoreDuration>) -> Option<f64> {
    d.map(ms)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn timings_json(t: &local::Timings) -> Value {
    json!({
        "fifos": opt_ms(t.fifos), "open": opt_ms(t.open), "options": opt_ms(t.options),
        "response": opt_ms(t.response), "go_ahead": opt_ms(t.go_ahead),
        "final_state": opt_ms(t.final_state), "stop": opt_ms(t.stop), "total": ms(t.total),
    })
}

fn outcome_name(o: Outcome) -> String {
    match o {
        Outcome::State(s) => s.name().to_string(),
        Outcome::Failed(f) => format!("failed: {f}"),
    }
}

/// Runs the job to its end; the job's exit status (the ranks' worst).
pub fn run(opts: RunOptions) -> Result<i32, RunError> {
    if opts.nranks == 0 || opts.nranks as usize > MAX_RANKS {
        return Err(RunError::Invalid(format!(
            "-n must be between 1 and {MAX_RANKS}"
        )));
    }
    if !snapstore::valid_job_name(&opts.job) {
        return Err(RunError::Invalid(format!(
            "job name {:?}: use letters, digits, '-', '_' and '.', not starting with '.'",
            opts.job
        )));
    }
    if opts.argv.is_empty() {
        return Err(RunError::Invalid("no program to run".into()));
    }
    let run_dir = crate::control::run_dir().map_err(RunError::Invalid)?;
    crate::control::remove_stale(&run_dir, &opts.job);
    let paths = JobPaths::new(&run_dir, &opts.job);
    if paths.ctl.exists() {
        return Err(RunError::Invalid(format!(
            "job {} is already running (its control socket is {})",
            opts.job,
            paths.ctl.display()
        )));
    }
    let _ = std::fs::remove_file(&paths.sock);
    let ctl_listener = UnixListener::bind(&paths.ctl)
        .map_err(io_err(format!("binding {}", paths.ctl.display())))?;
    let mut daemon = match Daemon::new(opts, paths.clone(), ctl_listener) {
        Ok(d) => d,
        Err(e) => {
            paths.remove();
            return Err(e);
        }
    };
    install_stop_handlers();
    let status = daemon.run_loop();
    daemon.shutdown();
    Ok(status)
}

/// The options to relaunch the snapshot at `path` (`<store>/<job>[/<seq>]`).
pub fn restart_options(path: &std::path::Path) -> Result<RunOptions, String> {
    use crate::snapstore;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = if path.join(snapstore::METADATA).is_file() {
        path
    } else if path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.parse::<u32>().is_ok())
    {
        return Err(format!(
            "{}: not a complete snapshot (no {})",
            path.display(),
            snapstore::METADATA
        ));
    } else {
        snapstore::latest(&path)
            .map(|(_, d)| d)
            .ok_or_else(|| format!("{}: no complete snapshot", path.display()))?
    };
    let meta = snapstore::read_metadata(&dir)?;
    let job_root = dir
        .parent()
        .ok_or_else(|| format!("{}: no job directory", dir.display()))?;
    let job = job_root
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no job name", job_root.display()))?
        .to_string();
    let store = job_root
        .parent()
        .ok_or_else(|| format!("{}: no store", job_root.display()))?
        .to_path_buf();
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
    for r in 0..nranks {
        let d = dir.join(format!("rank-{r}"));
        if !d.is_dir() {
            return Err(format!("{}: missing", d.display()));
        }
    }
    Ok(RunOptions {
        nranks,
        job,
        store,
        interval: None,
        keep: None,
        argv,
        cwd: meta
            .get("cwd")
            .and_then(serde_json::Value::as_str)
            .map(std::path::PathBuf::from)
            .filter(|p| p.is_dir()),
        restart_from: Some(dir),
        timeout: std::time::Duration::from_secs(10),
    })
}

impl Daemon {
    fn new(
        opts: RunOptions,
        paths: JobPaths,
        ctl_listener: UnixListener,
    ) -> Result<Self, RunError> {
        ctl_listener
            .set_nonblocking(true)
            .map_err(io_err("control socket"))?;
        let rank_listener = UnixListener::bind(&paths.sock)
            .map_err(io_err(format!("binding {}", paths.sock.display())))?;
        rank_listener
            .set_nonblocking(true)
            .map_err(io_err("rank socket"))?;
        let pipe_dir = PipeDir::open(&paths.pipes).map_err(|e| RunError::Invalid(e.to_string()))?;
        let store = JobStore::open(&opts.store, &opts.job).map_err(io_err(format!(
            "snapshot store {}",
            opts.store.join(&opts.job).display()
        )))?;
        let jobid = ((std::process::id() & 0x7fff) << 16) | 1;
        let config = snapc_posix::lcio::local_config(opts.timeout);
        let gc = GlobalCoordinator::new(
            GcConfig {
                jobid,
                nranks: opts.nranks,
                deadlines: global::Deadlines::default(),
            },
            OneNode(opts.nranks),
        );
        let io = FifoIo::new(pipe_dir, Signal::SIGUSR1, opts.timeout, Instant::now());
        let mut d = Self {
            next_interval: opts.interval.map(|i| Instant::now() + i),
            opts,
            jobid,
            paths,
            store,
            lc: Box::new(LocalCoordinator::new(config)),
            gc: Box::new(gc),
            io,
            wire: VecDeque::new(),
            ranks: Vec::new(),
            outs: Vec::new(),
            rank_listener,
            ctl_listener,
            conns: HashMap::new(),
            next_conn: 0,
            initialized: false,
            op: None,
            runtime_quiesce_end: false,
            quiesced: false,
            last_result: None,
            aborting: false,
            first_failure: None,
            all_gone_at: None,
            euid: nix::unistd::Uid::effective().as_raw(),
            restarting: None,
            restart_outcome: None,
        };
        if let Err(e) = d.launch() {
            d.terminate_ranks(Signal::SIGKILL);
            for r in &mut d.ranks {
                let _ = r.child.wait();
            }
            d.store.close();
            return Err(e);
        }
        Ok(d)
    }

    fn log(&self, msg: impl std::fmt::Display) {
        crate::errln!("[snapc] {msg}");
    }

    fn launch(&mut self) -> Result<(), RunError> {
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

    // ----- the loop -----

    fn run_loop(&mut self) -> i32 {
        let mut stop_seen = false;
        loop {
            if STOP_REQUESTED.load(Ordering::Relaxed) && !stop_seen {
                stop_seen = true;
                self.log("stop requested: terminating the ranks");
                self.aborting = true;
                self.terminate_ranks(Signal::SIGTERM);
            }
            self.reap();
            self.restart_tick();
            self.pump();
            self.io.tick(&mut self.lc);
            self.pump();
            self.interval_tick();
            if self.finished() {
                break;
            }
            self.wait();
            let now = self.io.now();
            if self.lc.poll_timeout().is_some_and(|d| d <= now) {
                self.lc.handle_timeout(now);
            }
            if self.gc.poll_timeout().is_some_and(|d| d <= now) {
                self.gc.handle_timeout(now);
            }
        }
        self.drain_outputs();
        // The rank whose failure ended the job, not the ones terminated because of it.
        self.first_failure.unwrap_or_else(|| {
            self.ranks
                .iter()
                .map(|r| r.state.status())
                .max()
                .unwrap_or(0)
        })
    }

    fn finished(&mut self) -> bool {
        if self.restarting.is_some() || self.ranks.iter().any(|r| r.state == RankState::Running) {
            return false;
        }
        let since = *self.all_gone_at.get_or_insert_with(Instant::now);
        let outputs_open = !self.outs.is_empty() && since.elapsed() < Duration::from_millis(500);
        let busy = self.gc.is_busy() && since.elapsed() < EXIT_GRACE;
        !(outputs_open || busy)
    }

    fn wait(&mut self) {
        #[derive(Clone, Copy)]
        enum Src {
            RankListener,
            CtlListener,
            Conn(u64),
            Out(usize),
            Fifo(local::SlotId),
            Names,
        }
        let now = self.io.now();
        let mut cap = SUPERVISE_TICK;
        if let Some(tick) = self.io.tick_within() {
            cap = cap.min(tick);
        }
        for t in [self.lc.poll_timeout(), self.gc.poll_timeout()]
            .into_iter()
            .flatten()
        {
            cap = cap.min(Duration::from(t.saturating_duration_since(now)));
        }
        if let Some(next) = self.next_interval {
            cap = cap.min(next.saturating_duration_since(Instant::now()));
        }
        if let Some(r) = &self.restarting {
            let at = match r.step {
                RestartStep::Stopping {
                    kill_at,
                    killed: false,
                    ..
                } => kill_at,
                RestartStep::Stopping { give_up_at, .. } => give_up_at,
                RestartStep::Starting { deadline } => deadline,
            };
            cap = cap.min(at.saturating_duration_since(Instant::now()));
        }
        let ready: Vec<Src> = {
            let mut srcs = vec![Src::RankListener, Src::CtlListener];
            let mut fds = vec![
                PollFd::new(self.rank_listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.ctl_listener.as_fd(), PollFlags::POLLIN),
            ];
            for (id, c) in &self.conns {
                srcs.push(Src::Conn(*id));
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
            }
            for (i, o) in self.outs.iter().enumerate() {
                srcs.push(Src::Out(i));
                fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
            }
            let reads = self.io.read_fds();
            for (slot, fd) in &reads {
                srcs.push(Src::Fifo(*slot));
                fds.push(PollFd::new(*fd, PollFlags::POLLIN));
            }
            // A name appeared: only a wakeup, the loop's next tick scans.
            if let Some(fd) = self.io.notify_fd() {
                srcs.push(Src::Names);
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let ms = u16::try_from(cap.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => srcs
                    .iter()
                    .zip(fds.iter())
                    .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(s, _)| *s)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut closed_outs = Vec::new();
        for src in ready {
            match src {
                Src::RankListener => self.accept_ranks(),
                Src::CtlListener => self.accept_controls(),
                Src::Conn(id) => self.conn_ready(id),
                Src::Out(i) => {
                    if !self.out_ready(i) {
                        closed_outs.push(i);
                    }
                }
                Src::Fifo(slot) => self.io.read_ready(&mut self.lc, slot),
                Src::Names => {}
            }
        }
        closed_outs.sort_unstable();
        for i in closed_outs.into_iter().rev() {
            let mut o = self.outs.remove(i);
            if !o.buf.is_empty() {
                o.buf.push(b'\n');
                print_lines(&mut o);
            }
        }
        self.io.fail_orphan_reads(&mut self.lc);
    }

    /// Reads a rank's output; false at its end.
    fn out_ready(&mut self, i: usize) -> bool {
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

    fn drain_outputs(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.outs.is_empty() && Instant::now() < deadline {
            self.wait();
        }
    }

    /// Reaps ranks that ended.
    fn reap(&mut self) {
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

    fn terminate_ranks(&self, sig: Signal) {
        for r in &self.ranks {
            if r.state == RankState::Running {
                let _ = kill(Pid::from_raw(r.pid as i32), sig);
            }
        }
    }

    // ----- application-initiated restart -----

    /// The GC's Restart action (a rank asked for it): relaunches the job
    /// from snapshot `seq_num` of the store if it is complete and `handle`
    /// is its reference; otherwise the restart fails and the job goes on.
    fn begin_restart(&mut self, seq_num: i32, handle: &str) {
        let started = Instant::now();
        let plan = self.resolve_restart(seq_num, handle);
        let (seq, opts) = match plan {
            Ok(p) => p,
            Err(e) => {
                self.log(format!(
                    "restart refused: {e}; the job goes on with its current ranks"
                ));
                self.restart_outcome = Some(RestartOutcome {
                    seq: u32::try_from(seq_num).ok(),
                    dir: None,
                    error: Some(e),
                    started,
                });
                let _ = self.gc.handle_restart_done(self.io.now(), false);
                return;
            }
        };
        let dir = opts.restart_from.clone().unwrap_or_default();
        self.log(format!(
            "restart from snapshot {seq} ({}) requested: terminating the ranks",
            dir.display()
        ));
        self.opts.argv = opts.argv;
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
    fn resolve_restart(&self, seq_num: i32, handle: &str) -> Result<(u32, RunOptions), String> {
        let seq = u32::try_from(seq_num)
            .map_err(|_| format!("sequence number {seq_num} names no snapshot"))?;
        let dir = self.store.root().join(seq.to_string());
        if !dir.is_dir() {
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
    fn restart_tick(&mut self) {
        let Some(r) = self.restarting.clone() else {
            return;
        };
        let now = Instant::now();
        let running = |d: &Self| d.ranks.iter().any(|p| p.state == RankState::Running);
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
                    .find(|(_, p)| p.state != RankState::Running && !p.updated)
                {
                    let why = format!("rank {rank} {} before it reported", p.state.name());
                    self.restart_failed(why);
                } else if self.ranks.iter().all(|p| p.updated) {
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
                    let _ = self.gc.handle_restart_done(self.io.now(), true);
                    self.pump();
                } else if now >= deadline {
                    let missing: Vec<usize> = (0..self.ranks.len())
                        .filter(|&i| !self.ranks[i].updated)
                        .collect();
                    self.restart_failed(format!(
                        "ranks {missing:?} did not report their pid within {:?}",
                        self.opts.timeout
                    ));
                }
            }
        }
    }

    /// Every old rank is gone: the new ones start from the snapshot.
    fn relaunch(&mut self) {
        self.ranks.clear();
        match self.launch() {
            Ok(()) => {
                if let Some(r) = self.restarting.as_mut() {
                    r.step = RestartStep::Starting {
                        deadline: Instant::now() + self.opts.timeout,
                    };
                }
            }
            Err(e) => self.restart_failed(format!("relaunching the job: {e}")),
        }
    }

    /// A restart that could not be carried through: the old ranks are gone,
    /// so the job ends.
    fn restart_failed(&mut self, why: String) {
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
        let _ = self.gc.handle_restart_done(self.io.now(), false);
    }

    /// The GC's report of a restart: logged, and kept as the last result.
    fn finish_restart(&mut self, r: &Report<1>) {
        let o = self.restart_outcome.take().unwrap_or(RestartOutcome {
            seq: r.seq.and_then(|s| u32::try_from(s).ok()),
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

    // ----- LC and GC -----

    /// Carries out every action of both machines and delivers the messages
    /// between them until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(a) = self.lc.poll_action() {
                moved = true;
                match self.io.execute(&mut self.lc, a) {
                    Some(local::Action::SendToGc(o)) => {
                        self.wire.push_back(Wire::ToGc(emit(&ToGc::OrtedState(o))));
                    }
                    Some(local::Action::Report(r)) => self.on_report(r),
                    _ => {}
                }
            }
            while let Some(out) = self.poll_gc() {
                moved = true;
                self.on_gc(out);
            }
            if let Some(msg) = self.wire.pop_front() {
                moved = true;
                self.deliver(msg);
            }
            if !moved {
                break;
            }
        }
    }

    fn poll_gc(&mut self) -> Option<GcOut> {
        Some(match self.gc.poll_action()? {
            global::Action::JobState(js) => GcOut::Job {
                bytes: emit(&FromGc::JobState(js)),
                state: js.state.state,
                detail: js.detail.map(|d| (d.handle, d.options)),
            },
            global::Action::ToRank { vpid, msg } => GcOut::ToRank(vpid, msg),
            global::Action::Established(s) => GcOut::Established(s),
            global::Action::Migrate { .. } => GcOut::Migrate,
            global::Action::Restart { seq_num, handle } => GcOut::Restart {
                seq_num,
                handle: handle.to_string(),
            },
            global::Action::Finished(r) => GcOut::Finished(r),
        })
    }

    fn deliver(&mut self, msg: Wire) {
        let now = self.io.now();
        match msg {
            Wire::ToGc(bytes) => match ToGc::parse(&bytes) {
                Ok(ToGc::OrtedState(o)) => {
                    if let Err(e) = self.gc.handle_orted_state(now, 0, o) {
                        log::warn!("ORTED_STATE refused: {e}");
                    }
                }
                other => log::error!("LC to GC: unexpected {other:?}"),
            },
            Wire::ToLc(bytes) => match FromGc::parse(&bytes) {
                Ok(FromGc::JobState(js)) => {
                    if let Err(e) = self.lc.handle_job_state(now, &js) {
                        log::warn!("JOB_STATE ignored: {e}");
                    }
                }
                other => log::error!("GC to LC: unexpected {other:?}"),
            },
        }
    }

    fn answer_for_lc(&mut self, state: CkptState) {
        let o = OrtedState {
            quick: true,
            state: StateCode::plain(state),
        };
        self.wire.push_back(Wire::ToGc(emit(&ToGc::OrtedState(o))));
    }

    fn on_gc(&mut self, out: GcOut) {
        let now = self.io.now();
        match out {
            GcOut::Job {
                bytes,
                state,
                detail,
            } => {
                if let (CkptState::Running, Some((handle, options))) = (state, detail) {
                    let kind = if options.inc_recover_only {
                        "quiesce_end"
                    } else if options.inc_prep_only {
                        "quiesce_start"
                    } else {
                        "checkpoint"
                    };
                    let mut op = Op {
                        kind,
                        handle,
                        gc_seq: None,
                        started: Instant::now(),
                        results: BTreeMap::new(),
                        waiters: Vec::new(),
                        lc_skipped: false,
                        error: None,
                        published: None,
                    };
                    if let Some(prev) = self.op.take() {
                        op.waiters = prev.waiters;
                    }
                    if kind == "checkpoint"
                        && let Err(e) = self.store.prepare(handle)
                    {
                        self.log(format!("checkpoint refused: {e}"));
                        op.error = Some(e);
                        op.lc_skipped = true;
                        self.op = Some(op);
                        self.answer_for_lc(CkptState::Error);
                        return;
                    }
                    self.op = Some(op);
                    if options.inc_recover_only && self.runtime_quiesce_end {
                        // The ranks end their quiesce when they see this (snapc_posix::app).
                        self.send_all_ranks(Tag::Snapc, &bytes);
                    }
                } else if self.op.as_ref().is_some_and(|o| o.lc_skipped) {
                    self.answer_for_lc(CkptState::Recovered);
                    return;
                }
                self.wire.push_back(Wire::ToLc(bytes));
            }
            GcOut::ToRank(vpid, mut msg) => {
                let failed = self
                    .op
                    .as_ref()
                    .is_some_and(|o| o.error.is_some() || o.published.is_none());
                if let FromGc::OpResponse(OpResponse {
                    op_event: OpEvent::Checkpoint,
                    op_state: Some(0),
                }) = msg
                    && failed
                {
                    msg = FromGc::OpResponse(OpResponse {
                        op_event: OpEvent::Checkpoint,
                        op_state: Some(OpResponse::FAILED),
                    });
                }
                let bytes = emit(&msg);
                self.send_rank(vpid, Tag::SnapcFull, &bytes);
            }
            GcOut::Established(s) => self.establish(&s),
            GcOut::Migrate => {
                self.log("migration is not supported on one node: refused");
                let _ = self.gc.handle_migration_done(now, false);
            }
            GcOut::Restart { seq_num, handle } => self.begin_restart(seq_num, &handle),
            GcOut::Finished(r) => self.finish(&r),
        }
    }

    fn on_report(&mut self, r: ProcessResult) {
        let total = self.opts.nranks;
        let Some(op) = self.op.as_mut() else {
            return;
        };
        op.results.insert(r.name.vpid, r);
        let done = op.results.len();
        let ev = json!({"event": "progress", "done": done, "total": total});
        let waiters = op.waiters.clone();
        for id in waiters {
            self.send_control(id, &ev);
        }
    }

    fn establish(&mut self, s: &Snapshot) {
        let seq = self.store.seq(s.seq);
        let nranks = self.opts.nranks;
        let Some(op) = self.op.as_mut() else {
            self.log(format!(
                "snapshot {} (handle {}) not recorded: no checkpoint was followed",
                s.seq, s.handle
            ));
            return;
        };
        op.gc_seq = Some(s.seq);
        let complete = (0..nranks).all(|r| {
            op.results.get(&r).is_some_and(|p| {
                matches!(p.outcome, Outcome::State(CrState::Continue | CrState::Term))
            })
        });
        if !complete {
            op.error = Some(format!(
                "snapshot {seq}: only {} of {nranks} ranks took part",
                op.results.len()
            ));
            return;
        }
        let staged = self.store.staging().join(s.handle.to_string());
        let mut total = 0;
        let ranks: Vec<Value> = op
            .results
            .values()
            .map(|p| {
                let bytes = snapstore::tree_size(&staged.join(format!("rank-{}", p.name.vpid)));
                total += bytes;
                json!({
                    "rank": p.name.vpid, "pid": p.pid, "state": outcome_name(p.outcome),
                    "dir": format!("rank-{}", p.name.vpid), "bytes": bytes,
                    "handshake": p.n, "timings_ms": timings_json(&p.timings),
                })
            })
            .collect();
        let meta = json!({
            "job": self.opts.job, "jobid": self.jobid, "seq": seq, "gc_seq": s.seq,
            "handle": s.handle, "reference": s.reference.as_str(), "nranks": nranks,
            "argv": self.opts.argv,
            "cwd": self.opts.cwd.clone().or_else(|| std::env::current_dir().ok()),
            "created_unix_ms": unix_ms(),
            "duration_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            "bytes": total, "ranks": ranks,
        });
        match self.store.publish(s.handle, seq, &meta) {
            Ok(dir) => {
                self.store
                    .record_global(s.handle, seq, s.reference.as_str());
                op.published = Some((seq, dir, s.reference.as_str().to_string(), total));
            }
            Err(e) => {
                crate::errln!("[snapc] checkpoint failed: {e}");
                op.error = Some(e);
            }
        }
    }

    fn finish(&mut self, r: &Report<1>) {
        if matches!(r.kind, OpKind::Restart) {
            self.finish_restart(r);
            return;
        }
        let Some(op) = self.op.take() else {
            return;
        };
        let kind = op.kind;
        let checkpoint = matches!(r.kind, OpKind::Checkpoint);
        let ok = r.ok && op.error.is_none() && (!checkpoint || op.published.is_some());
        // Why a rank could not write its snapshot is in its own log; a full
        // store is worth saying here (before the discard frees space).
        let full = (checkpoint && !ok).then(|| self.store.full()).flatten();
        if checkpoint && !ok {
            self.store.discard(op.handle);
        }
        match r.kind {
            OpKind::QuiesceStart if ok => self.quiesced = true,
            OpKind::QuiesceEnd => {
                self.quiesced = false;
                self.runtime_quiesce_end = false;
            }
            _ => {}
        }
        let error = if ok {
            None
        } else {
            let mut why: Vec<String> = op
                .results
                .values()
                .filter_map(|p| match p.outcome {
                    Outcome::State(CrState::Continue | CrState::Term | CrState::Running) => None,
                    o => Some(format!("rank {}: {}", p.name.vpid, outcome_name(o))),
                })
                .collect();
            if let Some(e) = &op.error {
                why.insert(0, e.clone());
            }
            if let Some(f) = full.filter(|_| op.error.is_none()) {
                why.push(f);
            }
            if why.is_empty() {
                why.push(match r.failure {
                    Some(f) => format!("{f:?}"),
                    None => "failed".into(),
                });
            }
            Some(why.join("; "))
        };
        let seq = op.published.as_ref().map(|p| p.0).or(r
            .seq
            .and_then(|s| u32::try_from(s).ok())
            .map(|s| self.store.seq(s)));
        let ev = json!({
            "event": "finished", "op": kind, "ok": ok, "seq": seq,
            "reference": op.published.as_ref().map(|p| p.2.clone()),
            "dir": op.published.as_ref().map(|p| p.1.display().to_string()),
            "bytes": op.published.as_ref().map(|p| p.3),
            "handle": op.handle, "error": error,
            "duration_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            "ranks": op.results.values().map(|p| json!({
                "rank": p.name.vpid, "pid": p.pid, "state": outcome_name(p.outcome),
                "timings_ms": timings_json(&p.timings),
            })).collect::<Vec<_>>(),
        });
        match (&error, &op.published) {
            (None, Some((seq, dir, _, bytes))) => self.log(format!(
                "checkpoint {seq}: complete in {:.1} ms, {bytes} bytes, {}",
                op.started.elapsed().as_secs_f64() * 1000.0,
                dir.display()
            )),
            (None, None) => self.log(format!("{kind}: done")),
            (Some(e), _) => self.log(format!("{kind} failed: {e}")),
        }
        for id in &op.waiters {
            self.send_control(*id, &ev);
            self.conns.remove(id);
        }
        if ok
            && checkpoint
            && let Some(k) = self.opts.keep
        {
            let removed = self.store.prune(k);
            if !removed.is_empty() {
                self.log(format!("pruned snapshots {removed:?} (--keep {k})"));
            }
        }
        self.last_result = Some(ev);
    }

    fn interval_tick(&mut self) {
        let (Some(next), Some(every)) = (self.next_interval, self.opts.interval) else {
            return;
        };
        if Instant::now() < next {
            return;
        }
        self.next_interval = Some(Instant::now() + every);
        if self.ready().is_ok() && !self.gc.is_busy() && !self.quiesced {
            if let Err(e) = self.start(GcCommand::Checkpoint {
                term: false,
                stop: false,
            }) {
                self.log(format!("interval checkpoint: {e}"));
            }
        }
    }

    /// Whether the job can take a checkpoint now.
    fn ready(&self) -> Result<(), String> {
        if self.aborting {
            return Err("the job is ending".into());
        }
        if let Some(r) = &self.restarting {
            return Err(format!("the job is restarting from snapshot {}", r.seq));
        }
        for (rank, r) in self.ranks.iter().enumerate() {
            if r.state != RankState::Running {
                return Err(format!(
                    "rank {rank} has {}: the job cannot be checkpointed",
                    r.state.name()
                ));
            }
        }
        if !self.initialized {
            return Err("not every rank has started yet".into());
        }
        Ok(())
    }

    /// Gives the GC a command; the handle of the operation it started.
    fn start(&mut self, cmd: GcCommand) -> Result<(u32, Option<u32>), String> {
        let next = self.gc.next_seq();
        if let Err(e) = self.gc.handle_command(self.io.now(), cmd) {
            let busy = match &self.op {
                Some(op) => format!(
                    "a {} is in progress (handle {}, {}/{} ranks done)",
                    op.kind,
                    op.handle,
                    op.results.len(),
                    self.opts.nranks
                ),
                None if self.quiesced => "the job is quiesced".into(),
                None => e.to_string(),
            };
            return Err(match e {
                global::InputError::Busy => busy,
                other => other.to_string(),
            });
        }
        self.pump();
        let handle = self.op.as_ref().map_or(0, |o| o.handle);
        let seq = match cmd {
            GcCommand::Checkpoint { .. } => next.map(|s| self.store.seq(s)),
            _ => None,
        };
        Ok((handle, seq))
    }

    // ----- sockets -----

    fn peer(&self, stream: &UnixStream) -> Option<(u32, u32)> {
        match getsockopt(stream, PeerCredentials) {
            Ok(c) => Some((u32::try_from(c.pid()).unwrap_or(0), c.uid())),
            Err(e) => {
                log::warn!("SO_PEERCRED: {e}");
                None
            }
        }
    }

    fn add_conn(&mut self, stream: UnixStream, kind: ConnKind) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        self.conns.insert(
            id,
            Conn {
                stream,
                kind,
                frames: FrameReader::default(),
                line: Vec::new(),
            },
        );
        id
    }

    fn accept_ranks(&mut self) {
        while let Ok((stream, _)) = self.rank_listener.accept() {
            let _ = stream.set_nonblocking(false);
            let Some((pid, uid)) = self.peer(&stream) else {
                continue;
            };
            let rank = self
                .ranks
                .iter()
                .position(|r| r.pid == pid && r.state == RankState::Running && r.conn.is_none());
            match rank {
                Some(rank) if uid == self.euid => {
                    let id = self.add_conn(stream, ConnKind::Rank(rank as u32));
                    if let Some(r) = self.ranks.get_mut(rank) {
                        r.conn = Some(id);
                    }
                    self.maybe_init();
                }
                _ => self.log(format!(
                    "refused a connection from pid {pid} (uid {uid}): not a rank of job {}",
                    self.opts.job
                )),
            }
        }
    }

    fn maybe_init(&mut self) {
        if self.initialized || self.ranks.iter().any(|r| r.conn.is_none()) {
            return;
        }
        self.initialized = true;
        let init = RequestOp {
            jobid: self.jobid,
            request: Request::Init,
        };
        if let Err(e) = self.gc.handle_request(self.io.now(), 0, &init) {
            log::warn!("INIT: {e}");
        }
        self.log(format!("all {} ranks connected", self.opts.nranks));
    }

    fn accept_controls(&mut self) {
        while let Ok((stream, _)) = self.ctl_listener.accept() {
            let _ = stream.set_nonblocking(false);
            match self.peer(&stream) {
                Some((_, uid)) if uid == self.euid => {
                    self.add_conn(stream, ConnKind::Control);
                }
                Some((pid, uid)) => self.log(format!(
                    "refused a control connection from pid {pid} (uid {uid})"
                )),
                None => {}
            }
        }
    }

    fn conn_ready(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        let n = match c.stream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                self.drop_conn(id);
                return;
            }
            Ok(n) => n,
        };
        match c.kind {
            ConnKind::Rank(rank) => {
                c.frames.push(&chunk[..n]);
                let mut frames = Vec::new();
                let mut bad = false;
                while let Some(f) = c.frames.next_frame() {
                    match f {
                        Ok(f) => frames.push(f),
                        Err(e) => {
                            log::warn!("rank {rank}: {e}");
                            bad = true;
                            break;
                        }
                    }
                }
                for (tag, payload) in frames {
                    self.rank_message(rank, tag, &payload);
                }
                if bad {
                    self.drop_conn(id);
                }
            }
            ConnKind::Control => {
                c.line.extend_from_slice(&chunk[..n]);
                if let Some(pos) = c.line.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = c.line.drain(..=pos).collect();
                    self.control(id, &line);
                } else if c.line.len() > 65536 {
                    self.drop_conn(id);
                }
            }
        }
    }

    fn drop_conn(&mut self, id: u64) {
        if let Some(Conn {
            kind: ConnKind::Rank(rank),
            ..
        }) = self.conns.remove(&id)
            && let Some(r) = self.ranks.get_mut(rank as usize)
            && r.conn == Some(id)
        {
            r.conn = None;
        }
        if let Some(op) = self.op.as_mut() {
            op.waiters.retain(|w| *w != id);
        }
    }

    fn rank_message(&mut self, rank: u32, tag: Tag, payload: &[u8]) {
        let now = self.io.now();
        let Some(pid) = self.ranks.get(rank as usize).map(|r| r.pid) else {
            return;
        };
        match tag {
            Tag::Snapc => match ToDaemon::parse(payload) {
                Ok(ToDaemon::LocalFinish(f)) => self.lc.handle_local_finish(now, pid, &f),
                Ok(ToDaemon::LocalUpdate(u)) => {
                    let own = u.name.vpid == rank
                        && u.name.jobid == self.jobid
                        && u32::try_from(u.pid).is_ok_and(|p| p == pid);
                    if !own {
                        self.log(format!(
                            "rank {rank}: LOCAL_UPDATE for {}.{} pid {} refused",
                            u.name.jobid, u.name.vpid, u.pid
                        ));
                    } else if let Err(e) = self.lc.handle_local_update(now, &u) {
                        log::warn!("rank {rank}: LOCAL_UPDATE: {e}");
                    } else if let Some(r) = self.ranks.get_mut(rank as usize) {
                        r.updated = true;
                    }
                }
                Err(e) => log::warn!("rank {rank}: {e}"),
            },
            Tag::SnapcFull => {
                if let Err(e) = self.gc.handle_request_bytes(now, rank, payload) {
                    self.log(format!("rank {rank}: request refused: {e}"));
                }
            }
        }
        self.pump();
    }

    fn send_rank(&mut self, vpid: u32, tag: Tag, payload: &[u8]) {
        let Some(id) = self.ranks.get(vpid as usize).and_then(|r| r.conn) else {
            log::warn!("rank {vpid} is not connected: message dropped");
            return;
        };
        let ok = match (encode_frame(tag, payload), self.conns.get_mut(&id)) {
            (Ok(frame), Some(c)) => c.stream.write_all(&frame).is_ok(),
            _ => false,
        };
        if !ok {
            self.drop_conn(id);
        }
    }

    fn send_all_ranks(&mut self, tag: Tag, payload: &[u8]) {
        for vpid in 0..self.opts.nranks {
            self.send_rank(vpid, tag, payload);
        }
    }

    fn send_control(&mut self, id: u64, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        let ok = self
            .conns
            .get_mut(&id)
            .is_some_and(|c| c.stream.write_all(line.as_bytes()).is_ok());
        if !ok {
            self.drop_conn(id);
        }
    }

    fn control(&mut self, id: u64, line: &[u8]) {
        let req: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                self.control_error(id, format!("malformed request: {e}"));
                return;
            }
        };
        let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
        let wait = flag("wait");
        let cmd = match req.get("op").and_then(Value::as_str) {
            Some("status") => {
                let s = self.status();
                self.send_control(id, &s);
                self.conns.remove(&id);
                return;
            }
            Some("checkpoint") => GcCommand::Checkpoint {
                term: flag("term"),
                stop: flag("stop"),
            },
            Some("quiesce_start") => GcCommand::QuiesceStart,
            Some("quiesce_end") => GcCommand::QuiesceEnd,
            other => {
                self.control_error(id, format!("unknown request {other:?}"));
                return;
            }
        };
        if let Err(e) = self.ready() {
            self.control_error(id, e);
            return;
        }
        if matches!(cmd, GcCommand::QuiesceEnd) {
            self.runtime_quiesce_end = true;
        }
        match self.start(cmd) {
            Ok((handle, seq)) => {
                self.send_control(
                    id,
                    &json!({"event": "started", "seq": seq, "handle": handle}),
                );
                match self.op.as_mut() {
                    Some(op) if wait => op.waiters.push(id),
                    _ => {
                        // Ended at once (or no wait): the last result, if it is this one.
                        if wait && let Some(r) = self.last_result.clone() {
                            self.send_control(id, &r);
                        }
                        self.conns.remove(&id);
                    }
                }
            }
            Err(e) => {
                if matches!(cmd, GcCommand::QuiesceEnd) {
                    self.runtime_quiesce_end = false;
                }
                self.control_error(id, e);
            }
        }
    }

    fn control_error(&mut self, id: u64, message: String) {
        self.send_control(id, &json!({"event": "error", "message": message}));
        self.conns.remove(&id);
    }

    fn status(&self) -> Value {
        let latest = snapstore::latest(self.store.root());
        json!({
            "event": "status",
            "job": self.opts.job,
            "jobid": self.jobid,
            "daemon_pid": std::process::id(),
            "nranks": self.opts.nranks,
            "store": self.store.root(),
            "ranks": self.ranks.iter().enumerate().map(|(i, r)| json!({
                "rank": i, "pid": r.pid, "state": r.state.name(), "connected": r.conn.is_some(),
            })).collect::<Vec<_>>(),
            "checkpointable": self.ready().is_ok(),
            "quiesced": self.quiesced,
            "in_progress": self.op.as_ref().map(|op| json!({
                "op": op.kind, "handle": op.handle,
                "done": op.results.len(), "total": self.opts.nranks,
                "elapsed_ms": op.started.elapsed().as_secs_f64() * 1000.0,
            })),
            "last_snapshot": latest.map(|(seq, dir)| json!({"seq": seq, "dir": dir})),
            "last_result": self.last_result,
            "restarting": self.restarting.as_ref().map(|r| json!({
                "seq": r.seq, "dir": r.dir,
                "step": match r.step {
                    RestartStep::Stopping { .. } => "stopping",
                    RestartStep::Starting { .. } => "starting",
                },
                "elapsed_ms": r.started.elapsed().as_secs_f64() * 1000.0,
            })),
            "interval_s": self.opts.interval.map(|d| d.as_secs_f64()),
        })
    }

    fn shutdown(&mut self) {
        let waiters: Vec<u64> = self
            .op
            .as_ref()
            .map(|o| o.waiters.clone())
            .unwrap_or_default();
        for id in waiters {
            self.control_error(id, "the job ended before the operation finished".into());
        }
        self.conns.clear();
        // Anything a rank left in the pipe directory.
        if let Ok(entries) = std::fs::read_dir(self.io.pipe_dir().path()) {
            for e in entries.flatten() {
                snapc_posix::fifo::remove_stale(&e.path());
            }
        }
        self.store.close();
        self.paths.remove();
    }
}

/// Prints the whole lines of `o` with its rank's prefix.
fn print_lines(o: &mut OutPipe) {
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
