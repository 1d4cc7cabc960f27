//! The job's side of a job: its global coordinator, the control socket and
//! its clients, the snapshot store, intervals, status, the launcher, and
//! the view of every rank that the node agents report. It speaks to the
//! agents only in [`msg`] frames, one queue per node: [`Daemon`] hands them
//! over in one process, [`super::net`] over TCP.

use super::msg::{self, Down, DownCtl, Up, UpCtl};
use super::*;

/// A rank as the coordinator knows it from its node's agent.
#[derive(Debug, Clone)]
pub(super) struct RankView {
    pub(super) pid: u32,
    /// The node (agent index) it runs on, once known.
    pub(super) node: Option<usize>,
    pub(super) state: RankState,
    pub(super) connected: bool,
    pub(super) stopped: bool,
    pub(super) updated: bool,
    pub(super) started: Instant,
}

impl RankView {
    /// A rank about to start on node `node`.
    pub(super) fn new_on(node: usize) -> Self {
        Self::new(Some(node))
    }

    fn new(node: Option<usize>) -> Self {
        Self {
            pid: 0,
            node,
            state: RankState::Waiting,
            connected: false,
            stopped: false,
            updated: false,
            started: Instant::now(),
        }
    }

    /// Alive but stopped.
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped && self.state == RankState::Running
    }
}

/// One node of the job, as the coordinator sees its agent.
pub(super) struct NodeView {
    pub(super) name: String,
    /// Frames for its agent.
    pub(super) outbox: VecDeque<Vec<u8>>,
    /// Its agent is set up (sockets bound).
    pub(super) ready: bool,
    /// Its agent is lost, and why.
    pub(super) lost: Option<String>,
    /// Its agent's pid on its node, and where it connected from.
    pub(super) agent_pid: Option<u32>,
    pub(super) peer: Option<String>,
}

/// Every rank's node, for the global coordinator's migration rules.
#[derive(Debug, Clone)]
pub(super) struct Hosts(pub(super) Vec<String>);

impl Placement for Hosts {
    fn host_of(&self, vpid: u32) -> Option<&str> {
        self.0.get(vpid as usize).map(String::as_str)
    }
}

/// The job's global coordinator, one LC per node.
pub(super) type Gc = GlobalCoordinator<Hosts, Vec<NodeSlot>>;

pub(super) struct Coordinator {
    pub(super) opts: RunOptions,
    /// Coordinator and agent in one process (`snapc run` on one node).
    pub(super) embedded: bool,
    pub(super) jobid: u32,
    pub(super) paths: JobPaths,
    pub(super) store: JobStore,
    pub(super) gc: Gc,
    pub(super) origin: Instant,
    pub(super) ranks: Vec<RankView>,
    pub(super) nodes: Vec<NodeView>,
    /// Placement changed: the global coordinator's copy is refreshed.
    pub(super) hosts_changed: bool,
    /// The launcher, when the ranks join (`--launcher`).
    pub(super) launcher: Option<LauncherProc>,
    /// The node agents' processes (a Slurm step, or local processes).
    pub(super) agents: Vec<LauncherProc>,
    /// The job's secret: in the launcher's and the agents' environment,
    /// never on a command line, in a snapshot or in a log.
    pub(super) secret: Option<snapc_posix::join::Secret>,
    pub(super) outs: Outputs,
    pub(super) ctl_listener: UnixListener,
    pub(super) conns: sockets::Conns,
    /// Every agent is set up and the ranks were launched.
    pub(super) launched: bool,
    pub(super) initialized: bool,
    pub(super) op: Option<Op>,
    pub(super) runtime_quiesce_end: bool,
    pub(super) quiesced: bool,
    pub(super) last_result: Option<Value>,
    pub(super) next_interval: Option<Instant>,
    pub(super) aborting: bool,
    pub(super) ending: Option<Ending>,
    /// Control connections waiting for the job's end (`snapc stop`).
    pub(super) stop_waiters: Vec<u64>,
    /// Requests that wait for the ranks to connect.
    pub(super) pending: Vec<(u64, GcCommand, bool)>,
    /// Why the last interval checkpoint was skipped (said once per reason).
    pub(super) interval_skip: Option<String>,
    /// Ranks that never connected were reported.
    pub(super) unconnected_reported: bool,
    /// The status of the rank whose failure ended the job.
    pub(super) first_failure: Option<i32>,
    pub(super) all_gone_at: Option<Instant>,
    pub(super) euid: u32,
    pub(super) restarting: Option<Restarting>,
    pub(super) restart_outcome: Option<RestartOutcome>,
    /// `--checkpoint-on`: signals seen, a checkpoint owed, the job's end
    /// after it.
    pub(super) signals_seen: u32,
    pub(super) signal_checkpoint: bool,
    /// The handle of `--checkpoint-on`'s checkpoint, once started.
    pub(super) signal_op: Option<u32>,
    pub(super) ended_by_checkpoint: bool,
    /// Warnings a peer can cause, each kept to a few lines per window.
    pub(super) warnings: crate::logging::Warnings,
    /// A descriptor given up to accept (and close) a connection when the
    /// daemon runs out of descriptors.
    pub(super) reserve: Option<File>,
    /// The listener rests until then after running out of descriptors.
    pub(super) accept_rest_until: Option<Instant>,
    /// The TCP side of a multi-node job.
    pub(super) hub: Option<net::Hub>,
}

impl Coordinator {
    /// The coordinator of `opts`, its control socket `ctl_listener`, over
    /// `nodes` (names).
    pub(super) fn new(
        opts: RunOptions,
        paths: JobPaths,
        ctl_listener: UnixListener,
        nodes: Vec<String>,
        embedded: bool,
    ) -> Result<Self, RunError> {
        ctl_listener
            .set_nonblocking(true)
            .map_err(io_err("control socket"))?;
        let store = JobStore::open(&opts.store, &opts.job)
            .map_err(|e| RunError::Invalid(format!("snapshot store: {e}")))?;
        let jobid = ((std::process::id() & 0x7fff) << 16) | 1;
        let lc_bound = snapc_posix::lcio::release_wait(&snapc_posix::lcio::local_config(
            opts.timeout,
            opts.checkpoint_timeout,
        ));
        let mut deadlines = GlobalDeadlines::default();
        if !embedded {
            // Across nodes a report that never comes (an agent that hangs
            // without its link breaking) is bounded by the agents' own
            // bound on a handshake, then the heartbeat's.
            let bound = CoreDuration::from(lc_bound.saturating_add(opts.node_timeout));
            deadlines.lc_report = deadlines.lc_report.min(bound);
        }
        let host = if embedded {
            "localhost".to_string()
        } else {
            String::new()
        };
        let gc = GlobalCoordinator::new(
            GcConfig {
                jobid,
                nranks: opts.nranks,
                deadlines,
            },
            Hosts(vec![host; opts.nranks as usize]),
            vec![NodeSlot::EMPTY; nodes.len()],
        );
        let secret = if opts.launcher || !embedded {
            Some(admission::new_secret().map_err(RunError::Invalid)?)
        } else {
            None
        };
        let nodes = nodes
            .into_iter()
            .map(|name| NodeView {
                name,
                outbox: VecDeque::new(),
                ready: false,
                lost: None,
                agent_pid: None,
                peer: None,
            })
            .collect();
        Ok(Self {
            next_interval: opts.interval.map(|i| Instant::now() + i),
            ranks: (0..opts.nranks).map(|_| RankView::new(None)).collect(),
            opts,
            embedded,
            jobid,
            paths,
            store,
            gc,
            origin: Instant::now(),
            nodes,
            hosts_changed: false,
            launcher: None,
            agents: Vec::new(),
            secret,
            outs: Outputs::default(),
            ctl_listener,
            conns: sockets::Conns::default(),
            launched: false,
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
            signals_seen: 0,
            signal_checkpoint: false,
            signal_op: None,
            ended_by_checkpoint: false,
            warnings: Default::default(),
            reserve: File::open("/dev/null").ok(),
            accept_rest_until: None,
            hub: None,
        })
    }

    /// A line of the daemon's account of the job (log target `snapc`).
    pub(super) fn log(&self, msg: impl std::fmt::Display) {
        log::info!(target: crate::logging::TARGET, "{msg}");
    }

    /// The coordinators' clock.
    pub(super) fn now(&self) -> snapc_core::time::Instant {
        snapc_posix::lcio::to_core(self.origin, Instant::now())
    }

    /// Node `node`'s name.
    pub(super) fn node_name(&self, node: usize) -> &str {
        self.nodes.get(node).map_or("?", |n| n.name.as_str())
    }

    /// What node agent `index` is told when it joins.
    pub(super) fn setup_for(&self, index: usize) -> msg::Setup {
        msg::Setup {
            job: self.opts.job.clone(),
            jobid: self.jobid,
            nranks: self.opts.nranks,
            index,
            node: self.node_name(index).to_string(),
            launcher: self.opts.launcher,
            store: self.opts.store.clone(),
            staging: self.store.staging().to_path_buf(),
            timeout_s: self.opts.timeout.as_secs_f64(),
            checkpoint_timeout_s: self.opts.checkpoint_timeout.as_secs_f64(),
            node_timeout_s: self.opts.node_timeout.as_secs_f64(),
        }
    }

    /// The ranks node `index` starts: a block of them, as Slurm's block
    /// distribution places them (the first nodes get one more when they
    /// do not divide evenly); none when a launcher starts them.
    pub(super) fn ranks_of(&self, index: usize) -> Vec<u32> {
        if self.opts.launcher {
            return Vec::new();
        }
        let n = self.opts.nranks as usize;
        let l = self.nodes.len().max(1);
        let (base, extra) = (n / l, n % l);
        let start = index * base + index.min(extra);
        let count = base + usize::from(index < extra);
        (start..start + count).map(|r| r as u32).collect()
    }

    /// What node agent `index` starts.
    pub(super) fn launch_for(&self, index: usize) -> msg::Launch {
        msg::Launch {
            ranks: self.ranks_of(index),
            argv: self.opts.argv.clone(),
            cwd: self.opts.cwd.clone(),
            restart_from: self.opts.restart_from.clone(),
            launcher: self.opts.launcher,
        }
    }

    /// Queues a message for node `node`'s agent (nothing for a lost one).
    pub(super) fn send_to(&mut self, node: usize, m: Down) {
        if let Some(n) = self.nodes.get_mut(node).filter(|n| n.lost.is_none()) {
            n.outbox.push_back(m.encode());
        }
    }

    /// Queues a message for every agent.
    pub(super) fn broadcast(&mut self, m: Down) {
        let frame = m.encode();
        for n in self.nodes.iter_mut().filter(|n| n.lost.is_none()) {
            n.outbox.push_back(frame.clone());
        }
    }

    /// Starts the job: the launcher (when the ranks join), and each node's
    /// share of the ranks. Every agent is set up.
    ///
    /// The one-process daemon starts its agent's first launch itself (its
    /// errors are the command's); every other launch goes as a message.
    pub(super) fn launch(&mut self, initial: bool) -> Result<(), RunError> {
        self.launched = true;
        for r in self.ranks.iter_mut() {
            *r = RankView::new(None);
        }
        if !self.opts.launcher {
            for index in 0..self.nodes.len() {
                for rank in self.ranks_of(index) {
                    if let Some(r) = self.ranks.get_mut(rank as usize) {
                        r.node = Some(index);
                    }
                }
            }
            self.hosts_changed = true;
        } else {
            self.launch_launcher()?;
        }
        for index in 0..self.nodes.len() {
            let l = self.launch_for(index);
            if !(self.embedded && initial) {
                self.send_to(index, Down::Ctl(DownCtl::Launch(l)));
            }
        }
        let from = match &self.opts.restart_from {
            Some(d) => format!(" from {}", d.display()),
            None => String::new(),
        };
        let across = if self.embedded {
            String::new()
        } else {
            format!(" on {} nodes", self.nodes.len())
        };
        if self.opts.launcher {
            let pid = self.launcher.as_ref().map_or(0, |l| l.pid);
            self.log(format!(
                "job {} (jobid {:#x}): launcher {} (pid {pid}) started{from}{across}; its {} ranks join with the job's secret; control socket {}",
                self.opts.job,
                self.jobid,
                self.opts.argv[0],
                self.opts.nranks,
                self.paths.ctl.display()
            ));
        } else {
            self.log(format!(
                "job {} (jobid {:#x}): {} ranks started{from}{across}; control socket {}",
                self.opts.job,
                self.jobid,
                self.opts.nranks,
                self.paths.ctl.display()
            ));
        }
        Ok(())
    }

    /// The ranks' socket and pipe directory as a launcher's ranks find
    /// them: this process's agent's, or each node's (`{node}` in the
    /// path, which a rank replaces with its node's name).
    fn rank_paths(&self) -> (std::ffi::OsString, std::ffi::OsString) {
        match &self.hub {
            Some(hub) => (
                hub.agent_paths.sock.clone().into_os_string(),
                hub.agent_paths.pipes.clone().into_os_string(),
            ),
            None => (
                self.paths.sock.clone().into_os_string(),
                self.paths.pipes.clone().into_os_string(),
            ),
        }
    }

    /// Starts the launcher, with the job's secret in its environment (never
    /// on its command line) and, on a restart, the snapshot each rank finds
    /// its own directory in; its N ranks are awaited.
    fn launch_launcher(&mut self) -> Result<(), RunError> {
        let (socket, pipes) = self.rank_paths();
        let env = JobEnv {
            job: &self.opts.job,
            jobid: self.jobid,
            nranks: self.opts.nranks,
            socket: &socket,
            pipes: &pipes,
            store: &self.opts.store,
            staging: self.store.staging(),
            timeout: self.opts.timeout,
            checkpoint_timeout: self.opts.checkpoint_timeout,
        };
        let mut cmd = env.command(&self.opts.argv, self.opts.cwd.as_ref(), true);
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
        self.outs.take(&mut child, None);
        self.launcher = Some(LauncherProc {
            pid,
            child,
            state: RankState::Running,
        });
        Ok(())
    }

    /// A frame from node `node`'s agent.
    pub(super) fn deliver(&mut self, node: usize, frame: &[u8]) {
        let m = match Up::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                let name = self.node_name(node).to_string();
                self.warnings
                    .warn("node-frame", format_args!("node {name}: {e}"));
                return;
            }
        };
        let now = self.now();
        match m {
            Up::OrtedState(bytes) => {
                if let Err(e) = self.gc.handle_lc_message(now, node, &bytes) {
                    log::warn!("ORTED_STATE refused: {e}");
                }
            }
            Up::RankRequest { vpid, bytes } => {
                // Only from the node the rank runs on.
                let here = self.ranks.get(vpid as usize).and_then(|r| r.node) == Some(node);
                if !here {
                    let name = self.node_name(node).to_string();
                    self.warnings.warn(
                        "rank-message",
                        format_args!("node {name}: a request for rank {vpid}, which is not there"),
                    );
                } else if let Some(why) = self.migration_refused().filter(|_| {
                    matches!(
                        RequestOp::parse(&bytes),
                        Ok(RequestOp {
                            request: Request::Migrate(_),
                            ..
                        })
                    )
                }) {
                    self.log(format!("rank {vpid}: MIGRATE refused: {why}"));
                    self.answer_refused(vpid, OpEvent::Migrate);
                } else if let Err(e) = self.gc.handle_rank_message(now, vpid, &bytes) {
                    self.warnings.warn(
                        "rank-message",
                        format_args!("rank {vpid}: request refused: {e}"),
                    );
                }
            }
            Up::Ctl(UpCtl::Rank(info)) => self.on_rank(node, info),
            Up::Ctl(UpCtl::Join {
                conn,
                vpid,
                pid,
                rejoin,
            }) => self.on_join(node, conn, vpid, pid, rejoin),
            Up::Ctl(UpCtl::Result(r)) => self.on_result(r),
            Up::Ctl(UpCtl::Ready { node: name, pid }) => {
                if let Some(n) = self.nodes.get_mut(node) {
                    if n.name != name {
                        log::warn!("node {}: its agent says it runs on {name}", n.name);
                    }
                    n.ready = true;
                    n.agent_pid = Some(pid);
                }
            }
            Up::Ctl(UpCtl::Failed { why }) => {
                if self.restarting.is_some() {
                    self.restart_failed(format!("relaunching the job: {why}"));
                    return;
                }
                let name = self.node_name(node).to_string();
                log::error!(target: crate::logging::TARGET, "node {name}: {why}");
                self.first_failure.get_or_insert(1);
                self.end_job(&format!("node {name} could not start its ranks"), None);
            }
        }
    }

    /// Answers rank `vpid`'s request -1 (op_state FAILED).
    fn answer_refused(&mut self, vpid: u32, op_event: OpEvent) {
        let failure = FromGc::OpResponse(OpResponse {
            op_event,
            op_state: Some(OpResponse::FAILED),
        });
        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
        if let Ok(n) = failure.emit(&mut buf) {
            self.send_rank(vpid, Tag::SnapcFull, &buf[..n]);
        }
    }

    /// A rank's state from its node's agent.
    fn on_rank(&mut self, node: usize, info: msg::RankInfo) {
        let stopping = matches!(
            self.restarting,
            Some(Restarting {
                step: RestartStep::Stopping { .. },
                ..
            })
        );
        let Some(r) = self.ranks.get_mut(info.vpid as usize) else {
            return;
        };
        // A report about the process a restart replaced, or from the node
        // a rank moved away from.
        let replaced = r.pid != 0 && info.pid != r.pid && !r.state.ended();
        let moved = r.node.is_some_and(|n| n != node);
        if (replaced || moved) && info.state.ended() {
            return;
        }
        let was = r.state;
        if r.node != Some(node) {
            r.node = Some(node);
            self.hosts_changed = true;
        }
        r.pid = info.pid;
        r.state = info.state;
        r.connected = info.connected;
        r.stopped = info.stopped;
        r.updated = info.updated;
        if r.connected {
            self.maybe_init();
        }
        let migrating = self
            .op
            .as_ref()
            .and_then(|o| o.migration.as_ref())
            .is_some_and(|m| m.in_flight(info.vpid));
        if was == RankState::Running && info.state.ended() && !migrating {
            let status = info.state.status();
            if info.state != RankState::Gone
                && status != 0
                && !self.aborting
                && !stopping
                && self.first_failure.is_none()
            {
                self.first_failure = Some(status);
                self.end_job(&format!("rank {} failed", info.vpid), None);
            }
        }
    }

    /// Refreshes the global coordinator's placement when it changed.
    pub(super) fn sync_hosts(&mut self) {
        if !std::mem::take(&mut self.hosts_changed) || self.embedded {
            return;
        }
        let names: Vec<String> = self
            .ranks
            .iter()
            .map(|r| {
                r.node
                    .and_then(|n| self.nodes.get(n))
                    .map_or(String::new(), |n| n.name.clone())
            })
            .collect();
        self.gc.placement_mut().0 = names;
    }

    /// Node `node`'s agent is lost (its link closed or went silent):
    /// an operation in progress fails naming it, its ranks are lost, and
    /// the job ends.
    pub(super) fn node_lost(&mut self, node: usize, why: String) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.lost.is_some() {
            return;
        }
        n.lost = Some(why.clone());
        n.outbox.clear();
        let name = n.name.clone();
        let ending = self.ending.is_some() || self.aborting;
        if ending {
            self.log(format!("node {name}: agent gone ({why})"));
        } else {
            log::error!(target: crate::logging::TARGET, "node {name}: agent lost: {why}");
        }
        for r in self.ranks.iter_mut().filter(|r| r.node == Some(node)) {
            if !r.state.ended() {
                r.state = RankState::Lost;
            }
        }
        if let Some(op) = self.op.as_mut() {
            op.error
                .get_or_insert_with(|| format!("node {name}: agent lost ({why})"));
            // It will not report: its ERROR, on its behalf.
            self.answer_for_lc(node, CkptState::Error);
        }
        if !ending {
            self.first_failure.get_or_insert(1);
            self.end_job(&format!("node {name} lost"), None);
        }
    }

    /// Sends `sig` to every rank still running (SIGTERM with SIGCONT) and
    /// to the launcher.
    pub(super) fn terminate_ranks(&mut self, sig: Signal) {
        self.broadcast(Down::Ctl(DownCtl::Signal {
            sig: sig as i32,
            only_stopped: false,
        }));
        if let Some(l) = self.launcher.as_ref() {
            l.signal(sig);
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
            let now = self.now();
            let _ = self.gc.handle_restart_done(now, false);
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

    /// Acts on stop signals and checkpoint signals, and kills the ranks
    /// that outlive the grace period.
    pub(super) fn ending_tick(&mut self, stops_seen: &mut u32) {
        let stops = STOPS.load(Ordering::Relaxed);
        while *stops_seen < stops {
            *stops_seen += 1;
            let sig = STOP_SIGNAL.load(Ordering::Relaxed);
            self.end_job(&format!("{} received", signal_name(sig)), Some(128 + sig));
        }
        self.checkpoint_signal_tick();
        if let Some(e) = self.ending
            && !e.killed
            && Instant::now() >= e.kill_at
        {
            let grace = self.opts.grace.as_secs_f64();
            self.kill_remaining(&format!("still running {grace:.1} s after SIGTERM"));
        }
    }

    /// Reaps the launcher and the agents' processes.
    pub(super) fn reap(&mut self) {
        let stopping = matches!(
            self.restarting,
            Some(Restarting {
                step: RestartStep::Stopping { .. },
                ..
            })
        );
        if self.launcher.as_mut().is_some_and(LauncherProc::poll) {
            self.launcher_ended(stopping);
        }
        let mut ended = Vec::new();
        for (i, a) in self.agents.iter_mut().enumerate() {
            if a.poll() {
                ended.push((i, a.pid, a.state));
            }
        }
        for (i, pid, state) in ended {
            let nodes: Vec<usize> = if self.agents.len() == self.nodes.len() {
                vec![i]
            } else {
                (0..self.nodes.len()).collect()
            };
            for node in nodes {
                let still = self.nodes.get(node).is_some_and(|n| n.lost.is_none());
                if still {
                    self.node_lost(
                        node,
                        format!("the agents' process (pid {pid}) {}", state.name()),
                    );
                }
            }
        }
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

    /// Whether the job is over: no rank, launcher or restart left, output
    /// read (`outputs_open` says whether some is still open), the
    /// operation in progress given [`EXIT_GRACE`] to end.
    pub(super) fn finished(&mut self, outputs_open: bool) -> bool {
        if !self.launched {
            return false;
        }
        if self.restarting.is_some()
            || self.launcher_running()
            || self.ranks.iter().any(|r| r.state == RankState::Running)
        {
            return false;
        }
        let since = *self.all_gone_at.get_or_insert_with(Instant::now);
        let outputs_open = outputs_open && since.elapsed() < Duration::from_millis(500);
        let busy = self.gc.is_busy() && since.elapsed() < EXIT_GRACE;
        !(outputs_open || busy)
    }

    /// The job's exit status.
    pub(super) fn status_code(&self) -> i32 {
        if self.ended_by_checkpoint {
            return EXIT_CHECKPOINTED;
        }
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

    /// Time passed: the machine's deadlines.
    pub(super) fn timeouts(&mut self) {
        let now = self.now();
        if self.gc.poll_timeout().is_some_and(|d| d <= now) {
            self.gc.handle_timeout(now);
        }
    }

    /// The longest the loop may sleep for this side.
    pub(super) fn cap(&mut self, mut cap: Duration) -> Duration {
        let now = self.now();
        if let Some(t) = self.gc.poll_timeout() {
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
        if let Some(t) = self.accept_rest_until.filter(|t| Instant::now() < *t) {
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
        if let Some(hub) = &self.hub {
            cap = cap.min(hub.cap());
        }
        cap
    }

    /// At the end: the waiters are told, the store and the sockets closed.
    pub(super) fn shutdown(&mut self) {
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
        self.warnings.close();
        self.store.close();
        self.paths.remove();
    }

    /// Tells those who asked for the job's end (`snapc stop`) that it ended.
    pub(super) fn answer_stop(&mut self, status: i32) {
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

    /// Once every rank is connected: the job's INIT, on rank 0's behalf.
    pub(super) fn maybe_init(&mut self) {
        if self.initialized || self.ranks.iter().any(|r| !r.connected) {
            return;
        }
        self.initialized = true;
        let init = RequestOp {
            jobid: self.jobid,
            request: Request::Init,
        };
        // Rank 0's INIT, sent for the job once every rank is there.
        let mut buf: MessageBuf = [0; MAX_MESSAGE_LEN];
        let now = self.now();
        let taken = init
            .emit(&mut buf)
            .map_err(|e| e.to_string())
            .and_then(|n| {
                self.gc
                    .handle_rank_message(now, 0, &buf[..n])
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = taken {
            log::warn!("INIT: {e}");
        }
        let how = if self.opts.launcher {
            "joined"
        } else {
            "connected"
        };
        self.log(format!("all {} ranks {how}", self.opts.nranks));
    }
}
