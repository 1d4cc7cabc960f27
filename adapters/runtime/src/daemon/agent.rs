//! A node's side of a job: its local coordinator, the ranks' socket and
//! each rank's connection, the handshake FIFOs, the ranks it starts
//! (their output, reaping, signals). It speaks to the coordinator only in
//! [`msg`] frames: through a queue when both run in one process (`snapc
//! run` on one node), over TCP in a node agent (`snapc node`).

use super::msg::{self, Down, DownCtl, Up, UpCtl};
use super::*;

pub(super) struct Agent {
    pub(super) setup: msg::Setup,
    /// A node agent of a multi-node job (not the one-process daemon).
    pub(super) remote: bool,
    pub(super) timeout: Duration,
    pub(super) checkpoint_timeout: Duration,
    pub(super) paths: JobPaths,
    pub(super) lc: Lc,
    pub(super) io: FifoIo,
    pub(super) ranks: BTreeMap<u32, RankProc>,
    pub(super) launch: Option<msg::Launch>,
    /// The job's secret, when its ranks join.
    pub(super) secret: Option<snapc_posix::join::Secret>,
    pub(super) outs: Outputs,
    pub(super) rank_listener: UnixListener,
    pub(super) conns: sockets::Conns,
    pub(super) euid: u32,
    pub(super) warnings: crate::logging::Warnings,
    /// A descriptor given up to accept (and close) a connection when the
    /// agent runs out of descriptors.
    pub(super) reserve: Option<File>,
    /// The listener rests until then after running out of descriptors.
    pub(super) accept_rest_until: Option<Instant>,
    pub(super) stops_seen_at: Instant,
    /// Frames for the coordinator.
    pub(super) outbox: VecDeque<Vec<u8>>,
    /// The coordinator said the job ended.
    pub(super) shutdown: bool,
    /// When the job's end found no rank running (a node agent's exit).
    pub(super) gone_at: Option<Instant>,
}

/// How many slots the local coordinator has: every rank of the job can be
/// on this node.
fn lc_slots(nranks: u32) -> usize {
    (nranks as usize).min(MAX_RANKS)
}

impl Agent {
    /// The node's side of job `setup`, its sockets at `paths`.
    pub(super) fn new(
        setup: msg::Setup,
        paths: JobPaths,
        secret: Option<snapc_posix::join::Secret>,
        remote: bool,
    ) -> Result<Self, RunError> {
        let timeout = Duration::try_from_secs_f64(setup.timeout_s)
            .map_err(|e| RunError::Invalid(format!("timeout: {e}")))?;
        let checkpoint_timeout = Duration::try_from_secs_f64(setup.checkpoint_timeout_s)
            .map_err(|e| RunError::Invalid(format!("checkpoint timeout: {e}")))?;
        let rank_listener = UnixListener::bind(&paths.sock)
            .map_err(io_err(format!("binding {}", paths.sock.display())))?;
        rank_listener
            .set_nonblocking(true)
            .map_err(io_err("rank socket"))?;
        let pipe_dir = PipeDir::open(&paths.pipes).map_err(|e| RunError::Invalid(e.to_string()))?;
        let config = snapc_posix::lcio::local_config(timeout, checkpoint_timeout);
        let io = FifoIo::new(pipe_dir, Signal::SIGUSR1, timeout, Instant::now());
        let slots = lc_slots(setup.nranks);
        Ok(Self {
            remote,
            timeout,
            checkpoint_timeout,
            paths,
            lc: LocalCoordinator::new(config, vec![ProcessSlot::EMPTY; slots]),
            io,
            ranks: BTreeMap::new(),
            launch: None,
            secret: secret.filter(|_| setup.launcher),
            outs: Outputs::default(),
            rank_listener,
            conns: sockets::Conns::default(),
            euid: nix::unistd::Uid::effective().as_raw(),
            warnings: Default::default(),
            reserve: File::open("/dev/null").ok(),
            accept_rest_until: None,
            stops_seen_at: Instant::now(),
            outbox: VecDeque::new(),
            shutdown: false,
            gone_at: None,
            setup,
        })
    }

    /// A line of the daemon's account of the job (log target `snapc`).
    pub(super) fn log(&self, msg: impl std::fmt::Display) {
        log::info!(target: crate::logging::TARGET, "{msg}");
    }

    /// Queues a message for the coordinator.
    pub(super) fn send(&mut self, m: Up) {
        self.outbox.push_back(m.encode());
    }

    /// A frame from the coordinator.
    pub(super) fn deliver(&mut self, frame: &[u8]) {
        let m = match Down::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                log::error!("from the coordinator: {e}");
                return;
            }
        };
        let now = self.io.now();
        match m {
            Down::JobState(bytes) => {
                if let Err(e) = self.lc.handle_gc_message(now, &bytes) {
                    log::warn!("JOB_STATE refused: {e}");
                }
            }
            Down::ToRank { vpid, tag, bytes } => self.send_rank(vpid, tag, &bytes),
            Down::ToAllRanks { tag, bytes } => {
                let ranks: Vec<u32> = self.ranks.keys().copied().collect();
                for vpid in ranks {
                    self.send_rank(vpid, tag, &bytes);
                }
            }
            Down::Ctl(DownCtl::Terminate { ranks }) => {
                for rank in ranks {
                    if let Some(r) = self.ranks.get(&rank) {
                        r.signal(Signal::SIGKILL);
                    }
                }
            }
            Down::Ctl(c @ (DownCtl::Launch(_) | DownCtl::Start(_))) => {
                let (l, clear) = match c {
                    DownCtl::Launch(l) => (l, true),
                    DownCtl::Start(l) => (l, false),
                    _ => return,
                };
                if let Err(e) = self.launch(l, clear) {
                    self.signal_ranks(Signal::SIGKILL, false);
                    let why = e.to_string();
                    log::error!(target: crate::logging::TARGET, "{why}");
                    self.send(Up::Ctl(UpCtl::Failed { why }));
                }
            }
            Down::Ctl(DownCtl::Admit {
                conn,
                vpid,
                refused,
            }) => self.admit(conn, vpid, refused),
            Down::Ctl(DownCtl::Signal { sig, only_stopped }) => {
                if let Ok(sig) = Signal::try_from(sig) {
                    self.signal_ranks(sig, only_stopped);
                }
            }
            Down::Ctl(DownCtl::Shutdown) => {
                self.shutdown = true;
                self.signal_ranks(Signal::SIGKILL, false);
            }
            Down::Ctl(DownCtl::Setup(_)) => {}
        }
    }

    /// Carries out the local coordinator's actions until it has none.
    pub(super) fn pump(&mut self) -> bool {
        let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
        let mut moved = false;
        while let Some(a) = self.lc.poll_action(&mut out) {
            moved = true;
            match self.io.execute(&mut self.lc, a) {
                Some(local::Action::SendToGc { len }) => {
                    // What the coordinator shows with the result: the ranks
                    // a checkpoint left stopped, or found stopped.
                    self.scan_stops(true);
                    self.send(Up::OrtedState(out[..len].to_vec()));
                }
                Some(local::Action::Report(r)) => self.on_report(r),
                _ => {}
            }
        }
        moved
    }

    /// A rank's result: to the coordinator, with what the FIFO side knows.
    fn on_report(&mut self, r: ProcessResult) {
        let note = self.io.take_note(r.slot);
        if let Some(note) = &note {
            self.log(format!("rank {}: {note}", r.name.vpid));
        }
        let (state, failed) = match r.outcome {
            ProcessOutcome::State(s) => (Some(s.name().to_string()), None),
            ProcessOutcome::Failed(f) => (None, Some(f.to_string())),
        };
        let result = msg::RankResult {
            vpid: r.name.vpid,
            pid: r.pid,
            state,
            failed,
            note,
            n: r.n,
            timings: pump::timings_json(&r.timings),
        };
        self.send(Up::Ctl(UpCtl::Result(result)));
    }

    /// Time passed: the machine's deadlines.
    pub(super) fn timeouts(&mut self) {
        let now = self.io.now();
        if self.lc.poll_timeout().is_some_and(|d| d <= now) {
            self.lc.handle_timeout(now);
        }
    }

    /// The longest the loop may sleep for this side.
    pub(super) fn cap(&mut self, mut cap: Duration) -> Duration {
        let now = self.io.now();
        if let Some(tick) = self.io.tick_within() {
            cap = cap.min(tick);
        }
        if let Some(t) = self.lc.poll_timeout() {
            cap = cap.min(Duration::from(t.saturating_duration_since(now)));
        }
        if let Some(next) = self.expire_joining() {
            cap = cap.min(next.saturating_duration_since(Instant::now()));
        }
        if let Some(t) = self.accept_rest_until.filter(|t| Instant::now() < *t) {
            cap = cap.min(t.saturating_duration_since(Instant::now()));
        }
        if self.any_running() {
            cap = cap.min(Duration::from_millis(100));
        }
        cap
    }

    /// At the end: what a rank left in the pipe directory, the sockets.
    pub(super) fn close(&mut self) {
        self.warnings.close();
        if let Ok(entries) = std::fs::read_dir(self.io.pipe_dir().path()) {
            for e in entries.flatten() {
                snapc_posix::fifo::remove_stale(&e.path());
            }
        }
        self.conns.clear();
    }
}
