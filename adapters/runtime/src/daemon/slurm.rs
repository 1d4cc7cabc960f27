//! Where a job runs and how its node agents start: inside a Slurm
//! allocation (`salloc`, `sbatch`) the coordinator reads the nodes from
//! the allocation and starts one agent on each with `srun --overlap` (the
//! user's own launcher step shares the nodes with it); `--local-nodes N`
//! starts N agents on this machine instead (a multi-node job on one
//! machine, for trying it out and for tests). An agent is `snapc node`:
//! it connects to the coordinator, proves the job's secret (from its
//! environment, never its command line), and runs its node's side.

use super::msg::{Down, DownCtl};
use super::*;

/// Where the job's ranks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nodes {
    /// On this node, coordinator and agent in one process.
    One,
    /// On N agents started on this machine (`local0`..).
    Local(u32),
    /// On these nodes of the Slurm allocation, an agent each.
    Slurm(Vec<String>),
}

impl Nodes {
    /// The nodes of the Slurm allocation this runs in (`SLURM_JOB_ID` and
    /// `SLURM_JOB_NODELIST` set), expanded with `scontrol show hostnames`;
    /// `None` outside one.
    pub fn from_slurm() -> Result<Option<Self>, String> {
        let in_job = std::env::var_os("SLURM_JOB_ID").is_some_and(|v| !v.is_empty());
        let list = std::env::var("SLURM_JOB_NODELIST")
            .or_else(|_| std::env::var("SLURM_NODELIST"))
            .ok()
            .filter(|l| !l.is_empty());
        let (true, Some(list)) = (in_job, list) else {
            return Ok(None);
        };
        let out = Command::new("scontrol")
            .args(["show", "hostnames", &list])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("scontrol show hostnames {list}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scontrol show hostnames {list}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            return Err(format!("the allocation's node list {list} names no node"));
        }
        Ok(Some(Self::Slurm(names)))
    }
}

/// The run directory of the node agents: `SNAPC_RUN_DIR`, else
/// `snapc-run-<uid>` in the temporary directory (a node may have no
/// `XDG_RUNTIME_DIR`). Each node's paths carry its name: the nodes may
/// share a file system.
fn agent_run_dir() -> PathBuf {
    std::env::var_os("SNAPC_RUN_DIR")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("snapc-run-{}", nix::unistd::Uid::effective()))
        })
}

/// The name the agents reach this coordinator by: `SNAPC_COORDINATOR_HOST`,
/// else the Slurm node this runs on (a batch script), else the host name.
fn coordinator_host() -> String {
    std::env::var("SNAPC_COORDINATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::env::var("SLURMD_NODENAME")
                .ok()
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into())
        })
}

/// Listens for the agents and starts them.
pub(super) fn start_agents(c: &mut Coordinator) -> Result<(), RunError> {
    let secret = c
        .secret
        .clone()
        .ok_or_else(|| RunError::Invalid("a multi-node job needs its secret".into()))?;
    let (bind, host) = match &c.opts.nodes {
        Nodes::Local(_) => ("127.0.0.1:0".to_string(), "127.0.0.1".to_string()),
        _ => ("0.0.0.0:0".to_string(), coordinator_host()),
    };
    let run_dir = agent_run_dir();
    let hub = net::Hub::bind(
        &bind,
        &host,
        secret.clone(),
        c.nodes.len(),
        c.opts.connect_timeout,
        run_dir.clone(),
        &c.opts.job,
    )?;
    // Every node's socket path must fit a Unix socket address.
    for n in &c.nodes {
        JobPaths::new(&run_dir, &format!("{}.{}", c.opts.job, n.name))
            .check()
            .map_err(RunError::Usage)?;
    }
    let exe = std::env::current_exe().map_err(io_err("finding the snapc executable"))?;
    let addr = hub.advertised.clone();
    c.hub = Some(hub);
    let agent_args = |node: Option<&str>| {
        let mut v: Vec<std::ffi::OsString> = vec![
            exe.clone().into(),
            "node".into(),
            "--coordinator".into(),
            addr.clone().into(),
            "--job".into(),
            c.opts.job.clone().into(),
            "--run-dir".into(),
            run_dir.clone().into(),
            "--connect-timeout".into(),
            c.opts.connect_timeout.as_secs_f64().to_string().into(),
        ];
        if let Some(n) = node {
            v.extend(["--node".into(), n.into()]);
        }
        v
    };
    let secret_os =
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(secret.as_bytes()).to_owned();
    let mut commands: Vec<Command> = Vec::new();
    match &c.opts.nodes {
        Nodes::Local(n) => {
            for i in 0..*n {
                let args = agent_args(Some(&format!("local{i}")));
                let mut cmd = Command::new(&args[0]);
                cmd.args(&args[1..]);
                commands.push(cmd);
            }
        }
        Nodes::Slurm(names) => {
            let n = names.len().to_string();
            let mut cmd = Command::new("srun");
            // -n as well: inside an allocation SLURM_NTASKS would win over
            // --ntasks-per-node; --overlap lets the user's own step share
            // the nodes; --export=ALL carries the secret whatever the
            // job's --export.
            cmd.args([
                "--nodes",
                &n,
                "--ntasks",
                &n,
                "--ntasks-per-node=1",
                "--overlap",
                "--export=ALL",
                "--kill-on-bad-exit=0",
                "--job-name=snapc-agents",
                "--nodelist",
                &names.join(","),
            ])
            .args(agent_args(None));
            commands.push(cmd);
        }
        Nodes::One => {}
    }
    for mut cmd in commands {
        cmd.env(snapc_posix::join::SECRET_VAR, &secret_os)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let daemon = i32::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: async-signal-safe calls only.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                if nix::unistd::getppid().as_raw() != daemon {
                    return Err(std::io::Error::other("the coordinator is gone"));
                }
                // A batch signal to the coordinator's group is not theirs.
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
                let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
                for sig in supervise::IGNORED {
                    // SAFETY: restoring the default disposition runs no code.
                    let _ = sigaction(sig, &default);
                }
                Ok(())
            });
        }
        let what = format!("{:?}", cmd.get_program());
        let mut child = cmd
            .spawn()
            .map_err(io_err(format!("starting the node agents ({what})")))?;
        c.outs.take(&mut child, None);
        c.agents.push(LauncherProc {
            pid: child.id(),
            child,
            state: RankState::Running,
        });
    }
    c.log(format!(
        "job {}: starting node agents on {} ({} nodes), coordinator at {addr}",
        c.opts.job,
        c.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        c.nodes.len()
    ));
    Ok(())
}

impl Coordinator {
    /// At the job's end: the agents are told, given a moment to end their
    /// ranks and exit, then ended.
    pub(super) fn stop_agents(&mut self) {
        if self.embedded {
            return;
        }
        self.broadcast(Down::Ctl(DownCtl::Shutdown));
        self.flush_nodes();
        if let Some(hub) = self.hub.as_mut() {
            hub.drain_links(Duration::from_secs(2));
        }
        let until = Instant::now() + Duration::from_secs(5);
        let mut termed = false;
        loop {
            for a in self.agents.iter_mut() {
                a.poll();
            }
            if self.agents.iter().all(|a| a.state != RankState::Running) {
                break;
            }
            if Instant::now() >= until {
                if termed {
                    for a in &self.agents {
                        if a.state == RankState::Running {
                            let _ = kill(Pid::from_raw(a.pid as i32), Signal::SIGKILL);
                        }
                    }
                    for a in self.agents.iter_mut() {
                        let _ = a.child.wait();
                    }
                    break;
                }
                // srun ends its step on the first SIGTERM... and its
                // tasks with a second.
                for a in &self.agents {
                    a.signal(Signal::SIGTERM);
                    a.signal(Signal::SIGTERM);
                }
                termed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // What they printed last.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.outs.is_empty() && Instant::now() < deadline {
            let mut closed = Vec::new();
            let mut fds: Vec<PollFd> = self
                .outs
                .pipes
                .iter()
                .map(|o| PollFd::new(o.file.as_fd(), PollFlags::POLLIN))
                .collect();
            let ready: Vec<usize> = match poll(&mut fds, PollTimeout::from(50u16)) {
                Ok(n) if n > 0 => fds
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(i, _)| i)
                    .collect(),
                _ => Vec::new(),
            };
            drop(fds);
            for i in ready {
                if !self.outs.ready(i) {
                    closed.push(i);
                }
            }
            self.outs.close(closed);
        }
    }
}

impl net::Hub {
    /// Writes what is queued to every agent, for up to `within`.
    pub(super) fn drain_links(&mut self, within: Duration) {
        for l in self.links_mut() {
            l.drain(within);
        }
    }
}

/// `snapc node`: a node agent of a multi-node job, started by its
/// coordinator (with `srun`, or as a local process).
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// The coordinator's `host:port`.
    pub coordinator: String,
    /// The job's name.
    pub job: String,
    /// This node's name (default: `SNAPC_NODE`, `SLURMD_NODENAME`, the host name).
    pub node: Option<String>,
    /// The run directory (the coordinator's choice).
    pub run_dir: Option<PathBuf>,
    /// How long to try to reach the coordinator.
    pub connect_timeout: Duration,
}

/// Runs a node agent to the job's end; its exit status.
pub fn node_main(args: NodeArgs) -> Result<i32, RunError> {
    if let Some(e) = crate::control::job_name_error(&args.job) {
        return Err(RunError::Usage(e));
    }
    let node = args.node.clone().unwrap_or_else(snapc_posix::node::name);
    crate::logging::set_job(&format!("{}@{node}", args.job));
    install_stop_handlers(None);
    crate::fds::raise();
    let secret = std::env::var_os(snapc_posix::join::SECRET_VAR)
        .and_then(|v| {
            snapc_posix::join::Secret::new(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::as_bytes(&v).to_vec(),
            )
        })
        .ok_or_else(|| {
            RunError::Usage(format!(
                "a node agent needs the job's secret in {} (its coordinator sets it)",
                snapc_posix::join::SECRET_VAR
            ))
        })?;
    let mut uplink = net::Uplink::connect(&args.coordinator, &node, &secret, args.connect_timeout)
        .map_err(RunError::Invalid)?;
    let first = uplink
        .first(args.connect_timeout)
        .map_err(RunError::Invalid)?;
    let setup = match msg::Down::decode(&first) {
        Ok(Down::Ctl(DownCtl::Setup(s))) => s,
        Ok(other) => {
            return Err(RunError::Invalid(format!(
                "the coordinator's first message is not the job's setup: {other:?}"
            )));
        }
        Err(e) => return Err(RunError::Invalid(format!("from the coordinator: {e}"))),
    };
    if let Ok(t) = Duration::try_from_secs_f64(setup.node_timeout_s) {
        uplink.set_timeout(t);
    }
    let run_dir = match args.run_dir {
        Some(d) => snapc_posix::store::PrivateDir::open(&d, true)
            .map(|d| d.path().to_path_buf())
            .map_err(|e| RunError::Invalid(format!("run directory: {e}")))?,
        None => crate::control::run_dir().map_err(RunError::Invalid)?,
    };
    let name = format!("{}.{node}", args.job);
    let paths = JobPaths::new(&run_dir, &name);
    paths.check().map_err(RunError::Usage)?;
    let lock = crate::control::try_lock(&run_dir, &name, true)
        .map_err(RunError::Invalid)?
        .ok_or_else(|| {
            RunError::Invalid(format!(
                "node {node} of job {} already has an agent ({})",
                args.job,
                paths.lock.display()
            ))
        })?;
    paths.remove();
    let mut agent = Agent::new(setup, paths.clone(), Some(secret), true)?;
    agent.ready();
    crate::out::start_background();
    let mut daemon = Daemon {
        coord: None,
        agent: Some(agent),
        uplink: Some(uplink),
    };
    daemon.pump();
    let status = daemon.run_loop();
    let lost = daemon.uplink.as_ref().and_then(|u| u.lost.clone());
    daemon.shutdown();
    let _ = std::fs::remove_file(&paths.lock);
    drop(lock);
    crate::out::drain(OUTPUT_DRAIN);
    Ok(if lost.is_some() { 1 } else { status })
}
