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
//! With a launcher (`snapc run --launcher -- mpirun ...`) the daemon starts
//! one process, the launcher, with a random job secret in its environment;
//! the ranks it starts, wherever they sit in its process tree, join by
//! sending the secret and their rank first (`admission.rs`,
//! [`snapc_posix::join`]). Supervision then follows the launcher: its exit
//! ends the job with its status (an error naming the ranks that never
//! joined, if some did not), and a joined rank whose link closes and whose
//! process ended is reported by rank.
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
//!
//! The parts: `supervise.rs` (launch, output, reaping), `sockets.rs` (the
//! ranks' and control connections), `admission.rs` (ranks that join),
//! `pump.rs` (the LC and GC and the store), `commands.rs` (control
//! requests, intervals), `restart.rs`.

use crate::control::JobPaths;
use crate::snapstore::{self, JobStore};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Pid;
use serde_json::{Value, json};
use snapc_core::global::{
    self, Command as GcCommand, Config as GcConfig, GlobalCoordinator, GlobalDeadlines, NodeSlot,
    OpKind, Placement, Report, Snapshot,
};
use snapc_core::local::{self, LocalCoordinator, ProcessOutcome, ProcessResult, ProcessSlot};
use snapc_core::time::Duration as CoreDuration;
use snapc_core::wire::{
    CkptState, CrState, FromGc, Message, OpEvent, OpResponse, OrtedState, ProcessName, Request,
    RequestOp, StateCode, ToDaemon,
};
use snapc_core::{MAX_MESSAGE_LEN, MessageBuf};
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
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod admission;
mod commands;
mod pump;
mod restart;
mod sockets;
mod supervise;

use pump::{Op, Wire};
pub use restart::restart_options;
use restart::{RestartOutcome, RestartStep, Restarting};
use sockets::Conn;
use supervise::{
    Ending, LauncherProc, OutPipe, RankProc, RankState, install_stop_handlers, print_lines,
};
pub use supervise::{LAUNCHERS, is_launcher, rank_list};

/// The most ranks one daemon runs.
pub const MAX_RANKS: usize = 256;

/// The longest the loop sleeps while ranks run (reaping is polled).
pub const SUPERVISE_TICK: Duration = Duration::from_millis(20);

/// How long the daemon waits, once every rank is gone, for an operation in
/// progress to end before it exits anyway.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Control connections a job must have room for besides its ranks.
const MIN_CONTROL: usize = 4;

/// How long the daemon waits at its exit for its output to be read.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Says how much output was dropped because a reader lagged.
fn report_dropped_output() {
    let (ob, ol, eb, el) = crate::out::dropped();
    if ob + eb > 0 {
        log::warn!(
            target: crate::logging::TARGET,
            "output dropped because its reader lagged: {ob} bytes ({ol} lines) of stdout, {eb} bytes ({el} lines) of stderr"
        );
    }
}

/// The job's global coordinator: one node, this one.
type Gc = GlobalCoordinator<OneNode, [NodeSlot; 1]>;

/// The node's local coordinator, with one slot per rank of the job.
type Lc = LocalCoordinator<Vec<ProcessSlot>>;

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
    /// The bound of a rank's own checkpoint work (go-ahead to final state:
    /// its prepare and checkpoint hooks).
    pub checkpoint_timeout: Duration,
    /// How long ranks get between SIGTERM and SIGKILL when the job is ended.
    pub grace: Duration,
    /// How long ranks get to connect to the daemon before it reports them
    /// (a program that does not link snapc never does).
    pub connect_timeout: Duration,
    /// `argv` is a launcher (mpirun, srun): it is started once, and the
    /// ranks it starts join the daemon with the job's secret
    /// ([`snapc_posix::join`]); supervision follows the launcher.
    pub launcher: bool,
}

impl RunOptions {
    /// The options to run `argv` as `nranks` ranks of `job`, with the
    /// defaults of `snapc run`.
    pub fn new(job: String, nranks: u32, store: PathBuf, argv: Vec<String>) -> Self {
        Self {
            nranks,
            job,
            store,
            interval: None,
            keep: None,
            argv,
            cwd: None,
            restart_from: None,
            timeout: DEFAULT_TIMEOUT,
            checkpoint_timeout: snapc_posix::lcio::DEFAULT_CHECKPOINT_TIMEOUT,
            grace: DEFAULT_GRACE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            launcher: false,
        }
    }
}

/// The default deadline of each wait on a rank's FIFOs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time between SIGTERM and SIGKILL when a job is ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The default time ranks get to connect before the daemon reports them.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the job could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The command line is wrong (a usage error).
    #[error("{0}")]
    Usage(String),
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

struct Daemon {
    opts: RunOptions,
    jobid: u32,
    paths: JobPaths,
    store: JobStore,
    lc: Lc,
    gc: Gc,
    io: FifoIo,
    wire: VecDeque<Wire>,
    ranks: Vec<RankProc>,
    /// The launcher, when the ranks join (`--launcher`).
    launcher: Option<LauncherProc>,
    /// The job's secret, when its ranks join: in the launcher's
    /// environment, never on a command line, in a snapshot or in a log.
    secret: Option<snapc_posix::join::Secret>,
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
    ending: Option<Ending>,
    /// Control connections waiting for the job's end (`snapc stop`).
    stop_waiters: Vec<u64>,
    /// Requests that wait for the ranks to connect.
    pending: Vec<(u64, GcCommand, bool)>,
    /// Why the last interval checkpoint was skipped (said once per reason).
    interval_skip: Option<String>,
    /// Ranks that never connected were reported.
    unconnected_reported: bool,
    /// The status of the rank whose failure ended the job.
    first_failure: Option<i32>,
    all_gone_at: Option<Instant>,
    euid: u32,
    restarting: Option<Restarting>,
    restart_outcome: Option<RestartOutcome>,
    /// Warnings a peer can cause, each kept to a few lines per window.
    limits: BTreeMap<&'static str, crate::logging::Limiter>,
    /// A descriptor given up to accept (and close) a connection when the
    /// daemon runs out of descriptors.
    reserve: Option<File>,
    /// The listeners rest until then after running out of descriptors.
    accept_rest_until: Option<Instant>,
}

/// Runs the job to its end; the job's exit status (the ranks' worst).
pub fn run(opts: RunOptions) -> Result<i32, RunError> {
    if opts.nranks == 0 || opts.nranks as usize > MAX_RANKS {
        return Err(RunError::Usage(format!(
            "-n must be between 1 and {MAX_RANKS} (the most ranks one daemon runs), not {}",
            opts.nranks
        )));
    }
    if let Some(e) = crate::control::job_name_error(&opts.job) {
        return Err(RunError::Usage(e));
    }
    if opts.argv.is_empty() {
        return Err(RunError::Usage("no program to run".into()));
    }
    crate::fds::raise();
    crate::fds::check(opts.nranks, MIN_CONTROL).map_err(RunError::Invalid)?;
    crate::logging::set_job(&opts.job);
    // Before anything that a stray signal should not end.
    install_stop_handlers();
    let run_dir = crate::control::run_dir().map_err(RunError::Invalid)?;
    let paths = JobPaths::new(&run_dir, &opts.job);
    paths.check().map_err(RunError::Usage)?;
    // Held for the daemon's life: while it is, the job's files are live.
    // A client checking for a dead daemon holds it for a moment: retried
    // briefly.
    let mut lock = None;
    for _ in 0..50 {
        lock = crate::control::try_lock(&run_dir, &opts.job, true).map_err(RunError::Invalid)?;
        if lock.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(lock) = lock else {
        return Err(RunError::Invalid(format!(
            "job {} is already running (its control socket is {})",
            opts.job,
            paths.ctl.display()
        )));
    };
    // Whatever is there was left by a daemon that is gone.
    paths.remove();
    let ctl_listener = match UnixListener::bind(&paths.ctl) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&paths.lock);
            return Err(io_err(format!("binding {}", paths.ctl.display()))(e));
        }
    };
    let mut daemon = match Daemon::new(opts, paths.clone(), ctl_listener) {
        Ok(d) => d,
        Err(e) => {
            paths.remove();
            let _ = std::fs::remove_file(&paths.lock);
            return Err(e);
        }
    };
    // From here on the loop never waits for a reader of our output.
    crate::out::start_background();
    let status = daemon.run_loop();
    daemon.shutdown();
    let _ = std::fs::remove_file(&paths.lock);
    drop(lock);
    // Only now: whoever waited for the end finds the job gone.
    daemon.answer_stop(status);
    report_dropped_output();
    crate::out::drain(OUTPUT_DRAIN);
    Ok(status)
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
        let store = JobStore::open(&opts.store, &opts.job)
            .map_err(|e| RunError::Invalid(format!("snapshot store: {e}")))?;
        let jobid = ((std::process::id() & 0x7fff) << 16) | 1;
        let config = snapc_posix::lcio::local_config(opts.timeout, opts.checkpoint_timeout);
        let gc = GlobalCoordinator::new(
            GcConfig {
                jobid,
                nranks: opts.nranks,
                deadlines: GlobalDeadlines::default(),
            },
            OneNode(opts.nranks),
            [NodeSlot::EMPTY],
        );
        let io = FifoIo::new(pipe_dir, Signal::SIGUSR1, opts.timeout, Instant::now());
        let nranks = opts.nranks as usize;
        let secret = if opts.launcher {
            Some(admission::new_secret().map_err(RunError::Invalid)?)
        } else {
            None
        };
        let mut d = Self {
            next_interval: opts.interval.map(|i| Instant::now() + i),
            opts,
            jobid,
            paths,
            store,
            lc: LocalCoordinator::new(config, vec![ProcessSlot::EMPTY; nranks]),
            gc,
            io,
            wire: VecDeque::new(),
            ranks: Vec::new(),
            launcher: None,
            secret,
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
            ending: None,
            stop_waiters: Vec::new(),
            pending: Vec::new(),
            interval_skip: None,
            unconnected_reported: false,
            first_failure: None,
            all_gone_at: None,
            euid: nix::unistd::Uid::effective().as_raw(),
            restarting: None,
            restart_outcome: None,
            limits: BTreeMap::new(),
            reserve: File::open("/dev/null").ok(),
            accept_rest_until: None,
        };
        if let Err(e) = d.launch() {
            d.terminate_ranks(Signal::SIGKILL);
            for r in &mut d.ranks {
                if let Some(c) = r.child.as_mut() {
                    let _ = c.wait();
                }
            }
            if let Some(l) = d.launcher.as_mut() {
                let _ = l.child.wait();
            }
            d.store.close();
            return Err(e);
        }
        Ok(d)
    }

    /// A line of the daemon's account of the job (log target `snapc`).
    fn log(&self, msg: impl std::fmt::Display) {
        log::info!(target: crate::logging::TARGET, "{msg}");
    }

    fn run_loop(&mut self) -> i32 {
        let mut stops_seen = 0;
        loop {
            self.ending_tick(&mut stops_seen);
            self.reap();
            self.connect_tick();
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
        // The rank whose failure ended the job, not the ones terminated
        // because of it; else the end a user asked for; else the
        // launcher's, or the ranks' worst.
        self.first_failure
            .or(self.ending.and_then(|e| e.requested))
            .unwrap_or_else(|| match &self.launcher {
                Some(l) => l.state.status(),
                None => self
                    .ranks
                    .iter()
                    .map(|r| r.state.status())
                    .max()
                    .unwrap_or(0),
            })
    }

    fn finished(&mut self) -> bool {
        if self.restarting.is_some()
            || self.launcher_running()
            || self.ranks.iter().any(|r| r.state == RankState::Running)
        {
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
        if let Some(e) = self.ending.filter(|e| !e.killed) {
            cap = cap.min(e.kill_at.saturating_duration_since(Instant::now()));
        }
        if let Some(next) = self.expire_controls() {
            cap = cap.min(next.saturating_duration_since(Instant::now()));
        }
        let resting = self.accept_rest_until.is_some_and(|t| Instant::now() < t);
        if let Some(t) = self.accept_rest_until.filter(|_| resting) {
            cap = cap.min(t.saturating_duration_since(Instant::now()));
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
            let mut srcs = Vec::new();
            let mut fds = Vec::new();
            if !resting {
                srcs.extend([Src::RankListener, Src::CtlListener]);
                fds.extend([
                    PollFd::new(self.rank_listener.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.ctl_listener.as_fd(), PollFlags::POLLIN),
                ]);
            }
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

    fn shutdown(&mut self) {
        let waiters: Vec<u64> = self
            .op
            .as_ref()
            .map(|o| o.waiters.clone())
            .unwrap_or_default();
        for id in waiters {
            self.control_error(id, "the job ended before the operation finished".into());
        }
        for (id, ..) in std::mem::take(&mut self.pending) {
            self.control_error(id, "the job ended before its ranks connected".into());
        }
        for (key, l) in &mut self.limits {
            let n = l.take_suppressed();
            if n > 0 {
                log::warn!(target: crate::logging::TARGET, "{n} more {key} warnings were not logged");
            }
        }
        // Anything a rank left in the pipe directory.
        if let Ok(entries) = std::fs::read_dir(self.io.pipe_dir().path()) {
            for e in entries.flatten() {
                snapc_posix::fifo::remove_stale(&e.path());
            }
        }
        self.store.close();
        self.paths.remove();
    }

    /// Tells those who asked for the job's end (`snapc stop`) that it ended.
    fn answer_stop(&mut self, status: i32) {
        let ended = json!({
            "event": "finished", "op": "stop", "ok": true, "job": self.opts.job,
            "status": status,
            "killed": self.ending.is_some_and(|e| e.killed),
            "ranks": self.ranks.iter().enumerate().map(|(i, r)| json!({
                "rank": i, "pid": r.pid, "state": r.state.name(),
            })).collect::<Vec<_>>(),
        });
        for id in std::mem::take(&mut self.stop_waiters) {
            self.send_control(id, &ended);
        }
        self.conns.clear();
    }
}
