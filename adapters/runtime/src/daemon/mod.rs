//! The job's runtime (`snapc run`, `snapc restart`, `snapc node`): a
//! coordinator (the job's side: the global coordinator, the control
//! socket, the store, intervals, status, the launcher) and one agent per
//! node (the node's side: its local coordinator, the ranks' socket, the
//! handshake FIFOs, the ranks it starts and watches), which speak only in
//! the frames of [`msg`]: JOB_STATE, ORTED_STATE and the ranks' requests as
//! the machines encode them, the runtime's own messages as JSON.
//!
//! On one node (the default) both run in one process and one `poll` loop,
//! the frames passed through a queue. Across nodes (inside a Slurm
//! allocation, or `--local-nodes N` on one machine) the coordinator starts
//! an agent on every node (`snapc node`, with `srun --overlap`), and the
//! frames go over TCP links that prove the job's secret and authenticate
//! every frame ([`net`]); every wait on them has a deadline (the connect,
//! a heartbeat, each node's report).
//!
//! The loop wakes at least every [`SUPERVISE_TICK`] to reap ranks, and
//! every millisecond while FIFO names or stops are awaited.
//!
//! Connections on a ranks' socket are identified with SO_PEERCRED: only a
//! process of this user whose pid is a rank this agent started (and not
//! yet connected) is accepted; its messages are taken as that rank's,
//! whatever they claim. The control socket accepts this user's processes.
//!
//! With a launcher (`snapc run --launcher -- mpirun ...`) the coordinator
//! starts one process, the launcher, with a random job secret in its
//! environment; the ranks it starts, wherever they sit in its process tree
//! and on whichever node, join their node's agent by sending the secret
//! and their rank first (`admission.rs`, [`snapc_posix::join`]).
//! Supervision then follows the launcher: its exit ends the job with its
//! status (an error naming the ranks that never joined, if some did not),
//! and a joined rank whose link closes and whose process ended is reported
//! by rank.
//!
//! The job is checkpointable once every rank connected (the coordinator
//! then sends the GC the job's INIT on rank 0's behalf; a rank may also
//! send it). A rank that dies (a signal or a non-zero exit) ends the job as
//! mpirun does: the others get SIGTERM, a checkpoint in progress fails, and
//! the daemon exits once every rank is reaped, with the failed rank's
//! status (128 + signal for a signal; the ranks it terminated because of it
//! do not count). Otherwise the job's status is the ranks' worst (highest).
//! A node whose agent is lost ends the job (status 1) after failing the
//! operation in progress, naming the node.
//!
//! A rank's RESTART request (the GC's Restart action) relaunches the job in
//! place from the named snapshot of the store: the ranks are terminated
//! (not counted as failures), started again with `SNAPC_RESTART_DIR`, and
//! the GC is told once each reported its new pid (LOCAL_UPDATE). A snapshot
//! that is missing, incomplete or not the one the handle names fails the
//! restart before anything is touched, and the job goes on.
//!
//! The parts: `coordinator.rs` and `agent.rs` (the two sides),
//! `supervise.rs` (processes: environment, output, reaping),
//! `sockets.rs` (the ranks' and control connections), `admission.rs`
//! (ranks that join), `pump.rs` (the global coordinator's actions and the
//! store), `commands.rs` (control requests, intervals, batch signals),
//! `restart.rs`, `migrate.rs`, `msg.rs` (the frames between the sides),
//! `net.rs` (their TCP links), `slurm.rs` (the nodes and their agents).

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
    CkptState, FromGc, Message, OpEvent, OpResponse, OrtedState, ProcessName, Request, RequestOp,
    StateCode, ToDaemon,
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
mod agent;
mod commands;
mod coordinator;
mod migrate;
mod msg;
mod net;
mod pump;
mod restart;
mod slurm;
mod sockets;
mod supervise;

use agent::Agent;
use coordinator::{Coordinator, RankView};
use pump::Op;
pub use restart::restart_options;
use restart::{RestartOutcome, RestartStep, Restarting};
pub use slurm::{NodeArgs, Nodes, node_main};
use supervise::{
    CHECKPOINT_SIGNALS, Ending, JobEnv, LauncherProc, Outputs, RankProc, RankState, STOP_SIGNAL,
    STOPS, install_stop_handlers, signal_name,
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

/// A node's local coordinator, with a slot for every rank it may hold.
type Lc = LocalCoordinator<Vec<ProcessSlot>>;

/// The exit status of a job that `--checkpoint-on` ended after a complete
/// checkpoint (EX_TEMPFAIL: requeue it and `--resume` carries on).
pub const EXIT_CHECKPOINTED: i32 = 75;

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
    /// Where the job runs: this node, or an agent on each of several.
    pub nodes: Nodes,
    /// `--checkpoint-on`: this signal takes a checkpoint and ends the job
    /// (status [`EXIT_CHECKPOINTED`] once it is complete).
    pub checkpoint_on: Option<Signal>,
    /// How long a node agent's link may stay silent before the node counts
    /// as lost (heartbeats go every second).
    pub node_timeout: Duration,
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
            nodes: Nodes::One,
            checkpoint_on: None,
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// The default deadline of each wait on a rank's FIFOs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time between SIGTERM and SIGKILL when a job is ended.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The default time ranks get to connect before the daemon reports them.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default bound on a node agent's silence.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One process's part of the job: the coordinator, an agent, or both.
struct Daemon {
    coord: Option<Coordinator>,
    agent: Option<Agent>,
    /// A node agent's link to its coordinator.
    uplink: Option<net::Uplink>,
}

/// Checks the options every start shares.
fn check_options(opts: &RunOptions) -> Result<(), RunError> {
    let most = match &opts.nodes {
        Nodes::One => MAX_RANKS,
        Nodes::Local(n) => MAX_RANKS.saturating_mul(*n as usize),
        Nodes::Slurm(names) => MAX_RANKS.saturating_mul(names.len()),
    };
    if opts.nranks == 0 || opts.nranks as usize > most {
        return Err(RunError::Usage(format!(
            "-n must be between 1 and {most} ({MAX_RANKS} a node: the most ranks one daemon runs), not {}",
            opts.nranks
        )));
    }
    if let Some(e) = crate::control::job_name_error(&opts.job) {
        return Err(RunError::Usage(e));
    }
    if opts.argv.is_empty() {
        return Err(RunError::Usage("no program to run".into()));
    }
    Ok(())
}

/// Runs the job to its end; the job's exit status (the ranks' worst).
pub fn run(opts: RunOptions) -> Result<i32, RunError> {
    check_options(&opts)?;
    crate::fds::raise();
    let local = match opts.nodes {
        Nodes::One => opts.nranks,
        _ => 0,
    };
    crate::fds::check(local, MIN_CONTROL).map_err(RunError::Invalid)?;
    crate::logging::set_job(&opts.job);
    // Before anything that a stray signal should not end.
    install_stop_handlers(opts.checkpoint_on);
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
    let started = match &opts.nodes {
        Nodes::One => Daemon::embedded(opts, paths.clone(), ctl_listener),
        _ => Daemon::across_nodes(opts, paths.clone(), ctl_listener),
    };
    let mut daemon = match started {
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
    if let Some(c) = daemon.coord.as_mut() {
        c.answer_stop(status);
    }
    report_dropped_output();
    crate::out::drain(OUTPUT_DRAIN);
    Ok(status)
}

impl Daemon {
    /// Coordinator and agent in this process, for a job on this node.
    fn embedded(
        opts: RunOptions,
        paths: JobPaths,
        ctl_listener: UnixListener,
    ) -> Result<Self, RunError> {
        let node = snapc_posix::node::name();
        let mut coord = Coordinator::new(opts, paths.clone(), ctl_listener, vec![node], true)?;
        let setup = coord.setup_for(0);
        let mut agent = Agent::new(setup, paths, coord.secret.clone(), false)?;
        if let Some(n) = coord.nodes.first_mut() {
            n.ready = true;
            n.agent_pid = Some(std::process::id());
        }
        let launched = coord
            .launch(true)
            .and_then(|()| agent.launch(coord.launch_for(0), true));
        let mut d = Self {
            coord: Some(coord),
            agent: Some(agent),
            uplink: None,
        };
        if let Err(e) = launched {
            d.abandon();
            return Err(e);
        }
        Ok(d)
    }

    /// The coordinator of a job across nodes: it starts an agent on each.
    fn across_nodes(
        opts: RunOptions,
        paths: JobPaths,
        ctl_listener: UnixListener,
    ) -> Result<Self, RunError> {
        let names = match &opts.nodes {
            Nodes::Local(n) => (0..*n).map(|i| format!("local{i}")).collect(),
            Nodes::Slurm(names) => names.clone(),
            Nodes::One => Vec::new(),
        };
        let mut coord = Coordinator::new(opts, paths, ctl_listener, names, false)?;
        slurm::start_agents(&mut coord)?;
        Ok(Self {
            coord: Some(coord),
            agent: None,
            uplink: None,
        })
    }

    /// Ends what a start that failed had started.
    fn abandon(&mut self) {
        if let Some(a) = self.agent.as_mut() {
            a.signal_ranks(Signal::SIGKILL, false);
            for r in a.ranks.values_mut() {
                if let Some(c) = r.child.as_mut() {
                    let _ = c.wait();
                }
            }
        }
        if let Some(c) = self.coord.as_mut() {
            if let Some(l) = c.launcher.as_mut() {
                let _ = l.child.kill();
                let _ = l.child.wait();
            }
            c.store.close();
        }
    }

    fn run_loop(&mut self) -> i32 {
        let mut stops_seen = 0;
        loop {
            if let Some(c) = self.coord.as_mut() {
                c.ending_tick(&mut stops_seen);
            } else if let Some(a) = self.agent.as_mut() {
                // A node agent ended by a signal (its step cancelled) ends
                // its ranks; the coordinator sees the node go.
                let stops = STOPS.load(Ordering::Relaxed);
                if stops > stops_seen {
                    stops_seen = stops;
                    let sig = STOP_SIGNAL.load(Ordering::Relaxed);
                    a.log(format!(
                        "{} received: ending the ranks here",
                        signal_name(sig)
                    ));
                    a.shutdown = true;
                    a.signal_ranks(Signal::SIGKILL, false);
                }
            }
            self.pump();
            if let Some(a) = self.agent.as_mut() {
                a.reap();
            }
            if let Some(c) = self.coord.as_mut() {
                c.reap();
            }
            self.pump();
            if let Some(c) = self.coord.as_mut() {
                c.connect_tick();
                c.restart_tick();
                c.migration_tick();
                c.net_tick();
            }
            self.pump();
            if let Some(a) = self.agent.as_mut() {
                a.io.tick(&mut a.lc);
                a.scan_stops(false);
            }
            self.pump();
            if let Some(c) = self.coord.as_mut() {
                c.interval_tick();
            }
            self.pump();
            if self.finished() {
                break;
            }
            self.wait();
            if let Some(a) = self.agent.as_mut() {
                a.timeouts();
            }
            if let Some(c) = self.coord.as_mut() {
                c.timeouts();
            }
        }
        self.drain_outputs();
        self.coord.as_ref().map_or(0, Coordinator::status_code)
    }

    /// Carries out both sides' actions and hands the frames between them
    /// until nothing moves (one process), or queues them for the network.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(a) = self.agent.as_mut() {
                moved |= a.pump();
            }
            if let Some(c) = self.coord.as_mut() {
                moved |= c.pump();
            }
            match (self.coord.as_mut(), self.agent.as_mut()) {
                (Some(c), Some(a)) => {
                    while let Some(f) = a.outbox.pop_front() {
                        moved = true;
                        c.deliver(0, &f);
                    }
                    if let Some(n) = c.nodes.first_mut() {
                        while let Some(f) = n.outbox.pop_front() {
                            moved = true;
                            a.deliver(&f);
                        }
                    }
                }
                (Some(c), None) => c.flush_nodes(),
                (None, Some(a)) => {
                    if let Some(u) = self.uplink.as_mut() {
                        u.queue_all(&mut a.outbox);
                        if let Some(why) = u.lost.as_ref().filter(|_| !a.shutdown) {
                            // Its ranks never outlive the job's coordinator.
                            log::error!(target: crate::logging::TARGET,
                                "node {}: the coordinator is lost ({why}): ending the ranks here",
                                a.setup.node);
                            a.shutdown = true;
                            a.signal_ranks(Signal::SIGKILL, false);
                        }
                    }
                }
                (None, None) => {}
            }
            if !moved {
                break;
            }
        }
    }

    fn finished(&mut self) -> bool {
        let outs_open = self.coord.as_ref().is_some_and(|c| !c.outs.is_empty())
            || self.agent.as_ref().is_some_and(|a| !a.outs.is_empty());
        match (self.coord.as_mut(), self.agent.as_mut()) {
            (Some(c), _) => c.finished(outs_open),
            (None, Some(a)) => {
                let lost = self.uplink.as_ref().is_none_or(|u| u.lost.is_some());
                if !((a.shutdown || lost) && !a.any_running()) {
                    a.gone_at = None;
                    return false;
                }
                let since = *a.gone_at.get_or_insert_with(Instant::now);
                !(outs_open && since.elapsed() < Duration::from_millis(500))
            }
            (None, None) => true,
        }
    }

    fn wait(&mut self) {
        #[derive(Clone, Copy)]
        enum Src {
            RankListener,
            CtlListener,
            RankConn(u64),
            CtlConn(u64),
            AgentOut(usize),
            CoordOut(usize),
            Fifo(local::SlotId),
            Names,
            Net(net::Src),
            Uplink,
        }
        let mut cap = SUPERVISE_TICK;
        if let Some(a) = self.agent.as_mut() {
            cap = a.cap(cap);
        }
        if let Some(c) = self.coord.as_mut() {
            cap = c.cap(cap);
        }
        if let Some(u) = self.uplink.as_ref() {
            cap = cap.min(u.cap());
        }
        let ready: Vec<Src> = {
            let mut srcs = Vec::new();
            let mut fds = Vec::new();
            let now = Instant::now();
            if let Some(a) = self.agent.as_ref() {
                if a.accept_rest_until.is_none_or(|t| now >= t) {
                    srcs.push(Src::RankListener);
                    fds.push(PollFd::new(a.rank_listener.as_fd(), PollFlags::POLLIN));
                }
                for (id, c) in &a.conns {
                    srcs.push(Src::RankConn(*id));
                    fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
                }
                for (i, o) in a.outs.pipes.iter().enumerate() {
                    srcs.push(Src::AgentOut(i));
                    fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
                }
                for (slot, fd) in a.io.read_fds() {
                    srcs.push(Src::Fifo(slot));
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
                // A name appeared: only a wakeup, the loop's next tick scans.
                if let Some(fd) = a.io.notify_fd() {
                    srcs.push(Src::Names);
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
            }
            if let Some(c) = self.coord.as_ref() {
                if c.accept_rest_until.is_none_or(|t| now >= t) {
                    srcs.push(Src::CtlListener);
                    fds.push(PollFd::new(c.ctl_listener.as_fd(), PollFlags::POLLIN));
                }
                for (id, conn) in &c.conns {
                    srcs.push(Src::CtlConn(*id));
                    fds.push(PollFd::new(conn.stream.as_fd(), PollFlags::POLLIN));
                }
                for (i, o) in c.outs.pipes.iter().enumerate() {
                    srcs.push(Src::CoordOut(i));
                    fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
                }
                if let Some(hub) = c.hub.as_ref() {
                    for (src, fd, flags) in hub.poll_fds() {
                        srcs.push(Src::Net(src));
                        fds.push(PollFd::new(fd, flags));
                    }
                }
            }
            if let Some(u) = self.uplink.as_ref()
                && let Some((fd, flags)) = u.poll_fd()
            {
                srcs.push(Src::Uplink);
                fds.push(PollFd::new(fd, flags));
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
        let mut closed_agent = Vec::new();
        let mut closed_coord = Vec::new();
        for src in ready {
            match src {
                Src::RankListener => {
                    if let Some(a) = self.agent.as_mut() {
                        a.accept_ranks();
                    }
                }
                Src::RankConn(id) => {
                    if let Some(a) = self.agent.as_mut() {
                        a.conn_ready(id);
                    }
                }
                Src::AgentOut(i) => {
                    if let Some(a) = self.agent.as_mut()
                        && !a.outs.ready(i)
                    {
                        closed_agent.push(i);
                    }
                }
                Src::Fifo(slot) => {
                    if let Some(a) = self.agent.as_mut() {
                        a.io.read_ready(&mut a.lc, slot);
                    }
                }
                Src::Names => {}
                Src::CtlListener => {
                    if let Some(c) = self.coord.as_mut() {
                        c.accept_controls();
                    }
                }
                Src::CtlConn(id) => {
                    if let Some(c) = self.coord.as_mut() {
                        c.conn_ready(id);
                    }
                }
                Src::CoordOut(i) => {
                    if let Some(c) = self.coord.as_mut()
                        && !c.outs.ready(i)
                    {
                        closed_coord.push(i);
                    }
                }
                Src::Net(src) => {
                    if let Some(c) = self.coord.as_mut() {
                        c.net_ready(src);
                    }
                }
                Src::Uplink => {
                    if let (Some(u), Some(a)) = (self.uplink.as_mut(), self.agent.as_mut()) {
                        for frame in u.ready() {
                            a.deliver(&frame);
                        }
                    }
                }
            }
        }
        if let Some(a) = self.agent.as_mut() {
            a.outs.close(closed_agent);
            a.io.fail_orphan_reads(&mut a.lc);
        }
        if let Some(c) = self.coord.as_mut() {
            c.outs.close(closed_coord);
        }
    }

    fn drain_outputs(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let open = self.coord.as_ref().is_some_and(|c| !c.outs.is_empty())
                || self.agent.as_ref().is_some_and(|a| !a.outs.is_empty());
            if !open || Instant::now() >= deadline {
                break;
            }
            self.wait();
        }
    }

    fn shutdown(&mut self) {
        // The agent's leftovers first: the coordinator then removes the
        // job's files, the pipe directory with them.
        if let Some(a) = self.agent.as_mut() {
            a.close();
        }
        if let Some(c) = self.coord.as_mut() {
            c.shutdown();
            c.stop_agents();
        }
        if let Some(u) = self.uplink.as_mut() {
            u.close();
        }
        if let Some(a) = self.agent.as_ref()
            && self.coord.is_none()
        {
            a.paths.remove();
        }
    }
}
