//! The `snapc` command line.
//!
//! Exit status, the same for every subcommand: 0 when it did what was
//! asked; 1 when it failed (a checkpoint that failed, no such job, a daemon
//! that refused or did not answer in time); 2 for a usage error (a bad
//! option or value, an ambiguous job, a malformed `wire` buffer). `snapc
//! run` and `snapc restart` exit with the job's status instead once the job
//! started.
//!
//! With `--json` a command prints exactly one JSON document on standard
//! output, errors included (`{"ok": false, "error": "..."}`); the schema is
//! in docs/cli-json.md.

use crate::control::{Client, PickError};
use crate::json::{self, Channel};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit status for a usage error, and for malformed input (a buffer or JSON
/// that does not decode).
pub const EXIT_USAGE: u8 = 2;

/// Exit status for malformed input (the same as a usage error).
pub const EXIT_BAD_INPUT: u8 = EXIT_USAGE;

/// Exit status for a failure.
pub const EXIT_FAILURE: u8 = 1;

/// Checkpoint coordination for HPC jobs, wire-compatible with Open MPI's snapc full protocol.
#[derive(Debug, Parser)]
#[command(name = "snapc", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole story in one command: a 4-rank job, three checkpoints, a
    /// rank killed, a restart from the latest snapshot, the results compared
    /// with an uninterrupted run. Exits 0 only if they match.
    Demo(DemoArgs),
    /// Launch a job: a node daemon (local and global coordinator) and N
    /// ranks of PROGRAM with the SNAPC_* environment, supervised; exits with
    /// the ranks' worst status. With --launcher (implied for mpirun, srun
    /// ...) PROGRAM is started once and the N ranks it starts join. SIGINT, SIGTERM or SIGHUP end the job
    /// (SIGCONT and SIGTERM to the ranks, SIGKILL after --grace; a second
    /// one kills them at once).
    Run(RunArgs),
    /// Checkpoint a running job through its daemon (--job) and wait for the
    /// snapshot, or, with --pid, processes that no daemon manages: signal
    /// them, run their handshakes concurrently, print one result per pid.
    /// Exits 0 only if every process completed.
    Checkpoint(CheckpointArgs),
    /// Show the running jobs: state, ranks, pids, last snapshot, checkpoint
    /// in progress.
    Status(StatusArgs),
    /// Relaunch a job from a complete snapshot: `<store>/<job>` (the latest)
    /// or `<store>/<job>/<seq>`.
    Restart(RestartArgs),
    /// A node agent of a job across nodes (its coordinator, `snapc run`
    /// inside a Slurm allocation or with --local-nodes, starts one on each
    /// node); the job's secret comes in SNAPC_JOB_SECRET.
    Node(NodeArgs),
    /// Quiesce a running job (prepare only, held) or end its quiesce.
    Quiesce(QuiesceArgs),
    /// List the snapshots of a store, a job (`<store>/<job>`) or one
    /// snapshot: sequence number, time, ranks, size, complete or not,
    /// reference.
    List(ListArgs),
    /// Continue the stopped ranks of a job (after `checkpoint --stop`): SIGCONT.
    Resume(JobArgs),
    /// End a job without a checkpoint: SIGCONT and SIGTERM to its ranks,
    /// SIGKILL to those still running after the job's grace period (at
    /// once with --force). Waits until the job is gone.
    Stop(StopArgs),
    /// Change a running job's checkpoint interval (0: no more interval
    /// checkpoints); the next one is SECONDS from now.
    Interval(IntervalArgs),
    /// End the checkpoint (or quiesce) in progress: every rank is let go at
    /// once, nothing is published.
    Abort(JobArgs),
    /// The counter application (the demo's ranks run it).
    #[command(hide = true)]
    Counter {
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Decode and encode protocol messages (Open MPI DSS buffers and FIFO frames).
    #[command(subcommand)]
    Wire(WireCommand),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Keep the snapshots here (default: a temporary directory, removed).
    #[arg(long, value_name = "DIR")]
    store: Option<std::path::PathBuf>,
    /// Number of ranks.
    #[arg(short = 'n', long = "ranks", default_value_t = 4)]
    ranks: u32,
    /// Steps each rank computes.
    #[arg(long, default_value_t = 3_000_000)]
    steps: u64,
    /// The same story with an MPI program: the heat stencil built with
    /// mpicc against the installed libsnapc (pkg-config snapc), launched
    /// by mpirun; each snapshot's iteration is checked on every rank.
    #[arg(long)]
    mpi: bool,
    /// Iterations of the heat stencil (--mpi).
    #[arg(long, default_value_t = 15_000)]
    iters: u64,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Number of ranks (at most 256).
    #[arg(short = 'n', value_name = "N")]
    n: u32,
    /// The job's name (default: job-<daemon pid>).
    #[arg(long, value_name = "NAME")]
    job: Option<String>,
    /// The snapshot store (default: SNAPC_STORE, else snapc-store-<uid> in the temp dir).
    #[arg(long, value_name = "DIR")]
    store: Option<std::path::PathBuf>,
    /// PROGRAM is a launcher (`mpirun -np N ./app`, `srun ...`): it is
    /// started once, with the job's secret in its environment, and the N
    /// ranks it starts join the daemon; the job ends when it exits, with
    /// its status. Implied when PROGRAM is named mpirun, mpiexec, orterun,
    /// prterun, srun or prun.
    #[arg(long)]
    launcher: bool,
    /// Start from the job's latest complete snapshot in the store if it
    /// has one (needs --job), else from the beginning: one batch script
    /// for the first run and every requeue.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
    /// The program and its arguments.
    #[arg(required = true, allow_hyphen_values = true, last = true)]
    program: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct RestartArgs {
    /// `<store>/<job>` or `<store>/<job>/<seq>`.
    path: std::path::PathBuf,
    #[command(flatten)]
    daemon: DaemonArgs,
}

/// What `run` and `restart` both tell the daemon.
#[derive(Debug, clap::Args)]
struct DaemonArgs {
    /// Take a checkpoint every S seconds.
    #[arg(long, value_name = "S")]
    interval: Option<f64>,
    /// Keep the K latest complete snapshots, remove older ones (K >= 1).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
    /// Deadline of each protocol step with a rank (its FIFOs appearing,
    /// opening, each write, its response, a stop), in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    timeout: f64,
    /// Bound of a rank's own checkpoint work (its prepare and checkpoint
    /// hooks writing the snapshot), in seconds.
    #[arg(long, default_value_t = 1800.0, value_name = "S")]
    checkpoint_timeout: f64,
    /// When the job is ended (a signal, `snapc stop`, a failed rank): how
    /// long ranks get between SIGTERM and SIGKILL, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    grace: f64,
    /// How long ranks get to connect to the daemon before it reports those
    /// that did not (a program that does not link snapc never does), in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    connect_timeout: f64,
    /// Write the daemon's log to FILE (created 0600, appended to) instead
    /// of standard error.
    #[arg(long, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    /// On this signal (for `sbatch --signal=B:USR1@120`: before the time
    /// limit, or on preemption) take a checkpoint and end the job, with
    /// status 75 once the checkpoint is complete (else as ended by the
    /// signal). By name or number.
    #[arg(long, value_name = "SIG")]
    checkpoint_on: Option<String>,
    /// Run N node agents on this machine, as a job across N nodes would
    /// (for trying the multi-node runtime without a cluster).
    #[arg(long, value_name = "N", conflicts_with = "one_node",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    local_nodes: Option<u32>,
    /// Inside a Slurm allocation, run the job on this node alone, in one
    /// process (as outside one) rather than with an agent on every node.
    #[arg(long)]
    one_node: bool,
    /// How long a node agent may stay silent before its node counts as
    /// lost (jobs across nodes), in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    node_timeout: f64,
}

impl DaemonArgs {
    /// Sets the interval, timeouts and keep count of `opts`.
    fn apply(&self, opts: &mut crate::daemon::RunOptions) -> Result<(), Failure> {
        opts.interval = self
            .interval
            .map(|v| seconds(v, "--interval"))
            .transpose()?;
        opts.timeout = seconds(self.timeout, "--timeout")?;
        opts.checkpoint_timeout = seconds(self.checkpoint_timeout, "--checkpoint-timeout")?;
        opts.grace = seconds(self.grace, "--grace")?;
        opts.connect_timeout = seconds(self.connect_timeout, "--connect-timeout")?;
        opts.keep = self.keep.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
        opts.node_timeout = seconds(self.node_timeout, "--node-timeout")?;
        if let Some(sig) = &self.checkpoint_on {
            let sig = snapc_posix::signal::parse_signal(sig)
                .map_err(|e| Failure::usage(format_args!("--checkpoint-on: {e}")))?;
            if matches!(
                sig,
                nix::sys::signal::Signal::SIGKILL
                    | nix::sys::signal::Signal::SIGSTOP
                    | nix::sys::signal::Signal::SIGINT
                    | nix::sys::signal::Signal::SIGTERM
                    | nix::sys::signal::Signal::SIGHUP
            ) {
                return Err(Failure::usage(format!(
                    "--checkpoint-on {sig}: that signal ends the job (or cannot be caught); use SIGUSR1 or SIGUSR2"
                )));
            }
            opts.checkpoint_on = Some(sig);
        }
        opts.nodes = if let Some(n) = self.local_nodes {
            crate::daemon::Nodes::Local(n)
        } else if self.one_node {
            crate::daemon::Nodes::One
        } else {
            crate::daemon::Nodes::from_slurm()
                .map_err(Failure::failed)?
                .unwrap_or(crate::daemon::Nodes::One)
        };
        if let Some(path) = &self.log {
            crate::logging::set_file(path).map_err(Failure::usage)?;
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The coordinator's address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    coordinator: String,
    /// The job's name.
    #[arg(long, value_name = "NAME")]
    job: String,
    /// This node's name (default: SNAPC_NODE, else SLURMD_NODENAME, else the host name).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The run directory for this node's socket and pipe directory.
    #[arg(long, value_name = "DIR")]
    run_dir: Option<std::path::PathBuf>,
    /// How long to try to reach the coordinator, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    connect_timeout: f64,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The job (default: every running job).
    #[arg(long, value_name = "J")]
    job: Option<String>,
    /// JSON: the job's object with --job, else an array of them.
    #[arg(long)]
    json: bool,
}

/// A command about one running job.
#[derive(Debug, clap::Args)]
struct JobArgs {
    /// The job (default: the only one running).
    #[arg(long, value_name = "J")]
    job: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct StopArgs {
    #[command(flatten)]
    job: JobArgs,
    /// SIGKILL the ranks at once instead of after the grace period.
    #[arg(long)]
    force: bool,
    /// How long to wait for the job's end, in seconds.
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    timeout: f64,
}

#[derive(Debug, clap::Args)]
struct IntervalArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The new interval in seconds; 0 turns interval checkpoints off.
    #[arg(value_name = "SECONDS")]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// A store, `<store>/<job>` or `<store>/<job>/<seq>` (default: SNAPC_STORE,
    /// else snapc-store-<uid> in the temp dir).
    path: Option<std::path::PathBuf>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct QuiesceArgs {
    /// `start` or `end`.
    #[arg(value_parser = ["start", "end"])]
    what: String,
    /// The job (default: the only one running).
    #[arg(long, value_name = "J")]
    job: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 600.0, value_name = "S")]
    timeout: f64,
}

#[derive(Debug, clap::Args)]
struct CheckpointArgs {
    /// A process to checkpoint directly, without a daemon (repeat for several).
    #[arg(long = "pid", value_name = "PID", conflicts_with = "job")]
    pids: Vec<u32>,
    /// The job to checkpoint through its daemon (default: the only one running).
    #[arg(long, value_name = "J")]
    job: Option<String>,
    /// With a job: return once the checkpoint started, with the sequence
    /// number its snapshot will have, instead of waiting for its end.
    #[arg(long, conflicts_with = "pids")]
    no_wait: bool,
    /// Wait for the end (the default; kept for scripts).
    #[arg(long, hide = true, conflicts_with = "no_wait")]
    wait: bool,
    /// Terminate the processes after their checkpoint.
    #[arg(long)]
    term: bool,
    /// Stop (SIGSTOP) the processes after their checkpoint (`snapc resume`
    /// continues a job's ranks).
    #[arg(long)]
    stop: bool,
    /// Only prepare the processes (quiesce them), hold them for --hold
    /// seconds, then let them go on.
    #[arg(long, conflicts_with_all = ["term", "stop"], requires = "pids")]
    prep_only: bool,
    /// With --prep-only: how long to hold the processes quiesced, in seconds.
    #[arg(long, default_value_t = 0.0, value_name = "S", requires = "prep_only")]
    hold: f64,
    /// With --pid, the deadline of each wait on a process (default 10 s);
    /// with a job, how long to wait for the checkpoint's end (default 3600 s;
    /// the checkpoint itself goes on).
    #[arg(long, value_name = "S")]
    timeout: Option<f64>,
    /// With --pid, the bound of each process's own checkpoint work (its
    /// prepare and checkpoint hooks), in seconds (default 1800).
    #[arg(long, value_name = "S", requires = "pids")]
    checkpoint_timeout: Option<f64>,
    /// The processes' pipe directory (default: as the processes compute it).
    #[arg(long, value_name = "D", requires = "pids")]
    pipe_dir: Option<std::path::PathBuf>,
    /// The checkpoint signal, by name or number (default SNAPC_SIGNAL, else SIGUSR1).
    #[arg(long, value_name = "SIG", requires = "pids")]
    signal: Option<String>,
    /// The snapshot handle (default: one above the highest in the store's
    /// `standalone/`, the lowest free one after 4294967295).
    #[arg(long, value_name = "H", requires = "pids")]
    handle: Option<u32>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum WireCommand {
    /// Decode one buffer (hex; whitespace and `|` ignored) and print it as one JSON object.
    Decode {
        /// Which channel the buffer travels on.
        #[arg(long, value_enum)]
        channel: Channel,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
        /// The buffer in hex; read from standard input when absent.
        hex: Option<String>,
    },
    /// Read one JSON object on standard input and print the buffer as lowercase hex.
    Encode {
        /// Which channel the message travels on.
        #[arg(long, value_enum)]
        channel: Channel,
    },
}

/// Why a command failed: its exit status, a message, and the JSON document
/// that says it with `--json` (default `{"ok": false, "error": message}`).
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
    doc: Option<Value>,
}

impl Failure {
    fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.to_string(),
            doc: None,
        }
    }

    fn failed(message: impl std::fmt::Display) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.to_string(),
            doc: None,
        }
    }

    /// A failure the command already printed.
    fn said() -> Self {
        Self {
            code: EXIT_FAILURE,
            message: String::new(),
            doc: None,
        }
    }

    fn with_doc(mut self, doc: Value) -> Self {
        self.doc = Some(doc);
        self
    }
}

impl From<PickError> for Failure {
    fn from(e: PickError) -> Self {
        match e {
            PickError::Usage(m) => Self::usage(m),
            PickError::Failed(m) => Self::failed(m),
        }
    }
}

type Outcome = Result<(), Failure>;

/// The exit status of `outcome`; a failure is printed (on standard error,
/// or as one JSON document on standard output with `json`).
fn conclude(outcome: Outcome, json: bool) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.message.is_empty() && f.doc.is_none() => ExitCode::from(f.code),
        Err(f) => {
            if json {
                let mut doc = document(f.doc.unwrap_or_else(|| json!({})), false);
                if doc.get("error").is_none_or(Value::is_null) {
                    doc["error"] = Value::String(f.message);
                }
                if f.code == EXIT_USAGE {
                    doc["usage"] = Value::Bool(true);
                }
                crate::outln!("{doc}");
            } else {
                crate::errln!("snapc: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

/// `doc` as a command's JSON document: `"ok"` first, without the control
/// protocol's `"event"`.
fn document(doc: Value, ok: bool) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("ok".into(), Value::Bool(ok));
    if let Value::Object(m) = doc {
        out.extend(m.into_iter().filter(|(k, _)| k != "event" && k != "ok"));
    }
    Value::Object(out)
}

/// Prints `doc` as the command's JSON document ([`document`], ok).
fn print_doc(doc: Value) {
    crate::outln!("{}", document(doc, true));
}

/// Parses hex digits, ignoring ASCII whitespace and `|`.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<(usize, u8)> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| !b.is_ascii_whitespace() && *b != b'|')
        .collect();
    if let Some((at, b)) = digits.iter().find(|(_, b)| !b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid hex character {:?} at input position {at}",
            *b as char
        ));
    }
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    Ok(digits
        .chunks_exact(2)
        .map(|pair| {
            let hi = (pair[0].1 as char).to_digit(16).unwrap_or(0);
            let lo = (pair[1].1 as char).to_digit(16).unwrap_or(0);
            (hi * 16 + lo) as u8
        })
        .collect())
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("reading standard input: {e}"))?;
    Ok(s)
}

fn wire(cmd: WireCommand) -> Outcome {
    match cmd {
        WireCommand::Decode {
            channel,
            pretty,
            hex,
        } => {
            let text = hex.map_or_else(read_stdin, Ok).map_err(Failure::usage)?;
            let bytes = parse_hex(&text).map_err(Failure::usage)?;
            let v = json::decode(channel, &bytes)
                .map_err(|e| Failure::usage(format_args!("malformed buffer: {e}")))?;
            if pretty {
                crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                crate::outln!("{v}");
            }
            Ok(())
        }
        WireCommand::Encode { channel } => {
            let text = read_stdin().map_err(Failure::usage)?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format_args!("invalid JSON: {e}")))?;
            let bytes = json::encode(channel, &value).map_err(Failure::usage)?;
            crate::outln!("{}", to_hex(&bytes));
            Ok(())
        }
    }
}

fn ms(d: Option<snapc_core::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_micros() as f64 / 1000.0)
}

/// A number of seconds from the command line: positive, and at most
/// [`snapc_posix::app::MAX_SECONDS`] (a year), so that no deadline computed
/// from it can overflow.
fn seconds(v: f64, what: &str) -> Result<Duration, Failure> {
    use snapc_posix::app::MAX_SECONDS;
    if !(v > 0.0 && v <= MAX_SECONDS) {
        return Err(Failure::usage(format!(
            "{what} must be a positive number of seconds, at most {MAX_SECONDS} (a year)"
        )));
    }
    Duration::try_from_secs_f64(v).map_err(|e| Failure::usage(format!("{what}: {e}")))
}

fn run(args: RunArgs) -> ExitCode {
    let store = match args.store {
        Some(s) => s,
        None => match snapc_posix::app::Config::from_env() {
            Ok(c) => c.store,
            Err(e) => return conclude(Err(Failure::usage(e)), false),
        },
    };
    let named = args.job.is_some();
    let job = args
        .job
        .unwrap_or_else(|| format!("job-{}", std::process::id()));
    let launcher = args.launcher || crate::daemon::is_launcher(&args.program[0]);
    let mut opts = crate::daemon::RunOptions::new(job, args.n, absolute(store), args.program);
    opts.launcher = launcher;
    if let Err(e) = args.daemon.apply(&mut opts) {
        return conclude(Err(e), false);
    }
    if args.resume {
        if !named {
            return conclude(
                Err(Failure::usage(
                    "--resume needs --job: the job whose snapshots to resume from",
                )),
                false,
            );
        }
        match resume_from(&opts) {
            Ok(from) => opts.restart_from = from,
            Err(e) => return exit_with(Err(e)),
        }
    }
    exit_with(crate::daemon::run(opts))
}

/// `--resume`: the latest complete snapshot of the job in the store,
/// checked as `snapc restart` checks it, if there is one.
fn resume_from(
    opts: &crate::daemon::RunOptions,
) -> Result<Option<std::path::PathBuf>, crate::daemon::RunError> {
    let job_dir = opts.store.join(&opts.job);
    let none = crate::snapstore::complete_snapshots(&job_dir).is_empty();
    if none {
        log::info!(target: crate::logging::TARGET,
            "--resume: no complete snapshot in {}: starting from the beginning", job_dir.display());
        return Ok(None);
    }
    let found = restart_options(&job_dir)?;
    if found.nranks != opts.nranks {
        return Err(crate::daemon::RunError::Invalid(format!(
            "--resume: the latest snapshot in {} has {} ranks, this run {}",
            job_dir.display(),
            found.nranks,
            opts.nranks
        )));
    }
    if let Some(dir) = &found.restart_from {
        log::info!(target: crate::logging::TARGET, "--resume: from {}", dir.display());
    }
    Ok(found.restart_from)
}

fn node(args: NodeArgs) -> ExitCode {
    let connect_timeout = match seconds(args.connect_timeout, "--connect-timeout") {
        Ok(t) => t,
        Err(e) => return conclude(Err(e), false),
    };
    exit_with(crate::daemon::node_main(crate::daemon::NodeArgs {
        coordinator: args.coordinator,
        job: args.job,
        node: args.node,
        run_dir: args.run_dir,
        connect_timeout,
    }))
}

fn absolute(p: std::path::PathBuf) -> std::path::PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

fn exit_with(r: Result<i32, crate::daemon::RunError>) -> ExitCode {
    match r {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(255)),
        Err(crate::daemon::RunError::Usage(e)) => conclude(Err(Failure::usage(e)), false),
        Err(e) => conclude(Err(Failure::failed(e)), false),
    }
}

pub use crate::daemon::restart_options;

fn restart(args: RestartArgs) -> ExitCode {
    let mut opts = match restart_options(&args.path) {
        Ok(o) => o,
        Err(e) => return exit_with(Err(e)),
    };
    if let Err(e) = args.daemon.apply(&mut opts) {
        return conclude(Err(e), false);
    }
    exit_with(crate::daemon::run(opts))
}

/// The status of `job` from its daemon.
fn job_status(job: &str) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = Client::send(job, &json!({"op": "status"}))
        .and_then(|mut c| c.until(&["status"], deadline, |_| {}))?;
    if v["event"] == "error" {
        return Err(v["message"].as_str().unwrap_or("refused").to_string());
    }
    Ok(document(v, true))
}

fn status(args: &StatusArgs) -> Outcome {
    if let Some(job) = &args.job {
        let job = crate::control::pick_job(Some(job))?;
        let v = job_status(&job).map_err(|e| Failure::failed(e).with_doc(json!({"job": job})))?;
        if args.json {
            crate::outln!("{v}");
        } else {
            print_status(&v);
        }
        return Ok(());
    }
    let names = crate::control::jobs().map_err(Failure::failed)?;
    if names.is_empty() && !args.json {
        crate::outln!("no job is running");
    }
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for job in names {
        match job_status(&job) {
            Ok(v) if args.json => all.push(v),
            Ok(v) => print_status(&v),
            Err(e) => {
                if args.json {
                    all.push(json!({"job": job, "ok": false, "error": e}));
                } else {
                    crate::errln!("snapc: {e}");
                }
                failed.push(job);
            }
        }
    }
    if args.json {
        crate::outln!("{}", Value::Array(all));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        // Already said, job by job (in the array with --json).
        Err(Failure::said())
    }
}

fn print_status(v: &Value) {
    let multi = v
        .get("nodes")
        .and_then(Value::as_array)
        .is_some_and(|n| n.len() > 1 || !v["coordinator"].is_null());
    let s = |k: &str| {
        v.get(k).map_or(String::new(), |x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    crate::outln!(
        "job {} (jobid {}, daemon pid {}): {}, {} ranks, store {}",
        s("job"),
        s("jobid"),
        s("daemon_pid"),
        s("state"),
        s("nranks"),
        s("store")
    );
    if let Some(l) = v.get("launcher").filter(|x| !x.is_null()) {
        crate::outln!(
            "  launcher {} pid {} {}",
            l["program"].as_str().unwrap_or("?"),
            l["pid"],
            l["state"].as_str().unwrap_or("?")
        );
    }
    for r in v
        .get("ranks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let state = r["state"].as_str().unwrap_or("?");
        if r["pid"].is_null() {
            crate::outln!("  rank {} {state}", r["rank"]);
            continue;
        }
        crate::outln!(
            "  rank {} pid {} {state}{}{}",
            r["rank"],
            r["pid"],
            match r["node"].as_str() {
                Some(n) if multi => format!(" on {n}"),
                _ => String::new(),
            },
            if r["connected"].as_bool() == Some(true) {
                ""
            } else {
                " (not connected)"
            }
        );
    }
    if multi {
        for n in v
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            crate::outln!(
                "  node {}: agent {}{}",
                n["node"].as_str().unwrap_or("?"),
                n["agent"].as_str().unwrap_or("?"),
                match n["agent_pid"].as_u64() {
                    Some(p) => format!(" (pid {p})"),
                    None => String::new(),
                }
            );
        }
    }
    match v.get("last_snapshot").filter(|x| !x.is_null()) {
        Some(l) => crate::outln!(
            "  last snapshot: {} ({})",
            l["seq"],
            l["dir"].as_str().unwrap_or("")
        ),
        None => crate::outln!("  last snapshot: none"),
    }
    if let Some(p) = v.get("in_progress").filter(|x| !x.is_null()) {
        crate::outln!(
            "  in progress: {} (handle {}), {}/{} ranks done",
            p["op"].as_str().unwrap_or("?"),
            p["handle"],
            p["done"],
            p["total"]
        );
    }
    if let Some(i) = v.get("interval_s").and_then(Value::as_f64) {
        crate::outln!("  checkpoint every {i} s");
    }
    if let Some(why) = v.get("not_checkpointable").and_then(Value::as_str) {
        crate::outln!("  cannot checkpoint now: {why}");
    }
}

/// Sends `request` to the job's daemon and follows it until one of the
/// events in `last` (or an error): that event. Progress goes to a terminal.
fn follow(
    job: &str,
    request: &Value,
    last: &[&str],
    timeout: Duration,
    quiet: bool,
) -> Result<Value, Failure> {
    use std::io::IsTerminal;
    let mut client = Client::send(job, request).map_err(Failure::failed)?;
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
    let tty = std::io::stderr().is_terminal() && !quiet;
    let mut progressed = false;
    let v = client.until(last, deadline, |ev| {
        if tty && ev["event"] == "progress" {
            progressed = true;
            crate::errp!("\r  ranks done {}/{}", ev["done"], ev["total"]);
        }
    });
    if progressed {
        crate::errln!();
    }
    let v = v.map_err(|e| {
        let e = if e.starts_with("timed out") {
            format!(
                "{e} (after {:.0} s; what was asked goes on: `snapc status --job {job}`)",
                timeout.as_secs_f64()
            )
        } else {
            e
        };
        Failure::failed(format!("job {job}: {e}")).with_doc(json!({"job": job}))
    })?;
    if v["event"] == "error" {
        let msg = v["message"].as_str().unwrap_or("refused").to_string();
        return Err(Failure::failed(format!("job {job}: {msg}"))
            .with_doc(json!({"job": job, "error": msg})));
    }
    Ok(v)
}

fn daemon_checkpoint(args: &CheckpointArgs) -> Outcome {
    let timeout = seconds(args.timeout.unwrap_or(3600.0), "--timeout")?;
    let job = crate::control::pick_job(args.job.as_deref())?;
    daemon_checkpoint_of(args, job, !args.no_wait, timeout)
}

/// A checkpoint of `job` through its daemon, waiting for its end (at most
/// `timeout`) or not.
fn daemon_checkpoint_of(
    args: &CheckpointArgs,
    job: String,
    wait: bool,
    timeout: Duration,
) -> Outcome {
    let req = json!({
        "op": "checkpoint", "term": args.term, "stop": args.stop, "wait": wait,
    });
    let last: &[&str] = if wait { &["finished"] } else { &["started"] };
    let mut v = follow(&job, &req, last, timeout, args.json)?;
    v["job"] = Value::String(job.clone());
    if v["event"] == "started" {
        if args.json {
            print_doc(v);
        } else {
            crate::outln!(
                "checkpoint {} of job {job} started (handle {}); its snapshot will be {}",
                v["seq"],
                v["handle"],
                v["dir"].as_str().unwrap_or("?")
            );
        }
        return Ok(());
    }
    if v["ok"] != true {
        let why = v["error"].as_str().unwrap_or("unknown error").to_string();
        return Err(Failure::failed(format!("checkpoint failed: {why}")).with_doc(v));
    }
    if args.json {
        print_doc(v);
    } else {
        crate::outln!(
            "checkpoint {} complete: {} ({})",
            v["seq"],
            v["reference"].as_str().unwrap_or("?"),
            v["dir"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

fn quiesce(args: &QuiesceArgs) -> Outcome {
    let timeout = seconds(args.timeout, "--timeout")?;
    let job = crate::control::pick_job(args.job.as_deref())?;
    let op = if args.what == "start" {
        "quiesce_start"
    } else {
        "quiesce_end"
    };
    let mut v = follow(
        &job,
        &json!({"op": op, "wait": true}),
        &["finished"],
        timeout,
        args.json,
    )?;
    v["job"] = Value::String(job);
    if v["ok"] != true {
        let why = v["error"].as_str().unwrap_or("failed").to_string();
        return Err(Failure::failed(format!("quiesce {}: {why}", args.what)).with_doc(v));
    }
    if args.json {
        print_doc(v);
    } else {
        crate::outln!("quiesce {}: done", args.what);
    }
    Ok(())
}

fn list(args: &ListArgs) -> Outcome {
    let path = match &args.path {
        Some(p) => p.clone(),
        None => {
            snapc_posix::app::Config::from_env()
                .map_err(Failure::usage)?
                .store
        }
    };
    let v = crate::list::list(&absolute(path)).map_err(Failure::failed)?;
    if args.json {
        print_doc(v);
    } else {
        crate::list::print(&v);
    }
    Ok(())
}

fn resume(args: &JobArgs) -> Outcome {
    let job = crate::control::pick_job(args.job.as_deref())?;
    let v = follow(
        &job,
        &json!({"op": "resume"}),
        &["finished"],
        Duration::from_secs(60),
        true,
    )?;
    if args.json {
        print_doc(v);
    } else {
        let resumed: Vec<u32> = v["resumed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_u64().and_then(|r| u32::try_from(r).ok()))
            .collect();
        if resumed.is_empty() {
            crate::outln!("job {job}: no rank was stopped");
        } else {
            crate::outln!("job {job}: {} resumed", crate::daemon::rank_list(&resumed));
        }
    }
    Ok(())
}

fn stop(args: &StopArgs) -> Outcome {
    let timeout = seconds(args.timeout, "--timeout")?;
    let job = crate::control::pick_job(args.job.job.as_deref())?;
    let v = follow(
        &job,
        &json!({"op": "stop", "force": args.force}),
        &["finished"],
        timeout,
        true,
    )?;
    if args.job.json {
        print_doc(v);
    } else {
        crate::outln!(
            "job {job} ended{} (status {})",
            if v["killed"] == true {
                ", ranks killed"
            } else {
                ""
            },
            v["status"]
        );
    }
    Ok(())
}

fn interval(args: &IntervalArgs) -> Outcome {
    if !(args.seconds.is_finite() && args.seconds >= 0.0) {
        return Err(Failure::usage(format!(
            "interval {}: give a number of seconds (0: none)",
            args.seconds
        )));
    }
    if args.seconds > 0.0 {
        seconds(args.seconds, "the interval")?;
    }
    let job = crate::control::pick_job(args.job.job.as_deref())?;
    let v = follow(
        &job,
        &json!({"op": "interval", "seconds": args.seconds}),
        &["finished"],
        Duration::from_secs(60),
        true,
    )?;
    if args.job.json {
        print_doc(v);
    } else {
        let was = v["previous_s"]
            .as_f64()
            .map_or("none".into(), |p| format!("{p} s"));
        match v["interval_s"].as_f64() {
            Some(i) => crate::outln!("job {job}: a checkpoint every {i} s (was: {was})"),
            None => crate::outln!("job {job}: no interval checkpoints (was: {was})"),
        }
    }
    Ok(())
}

fn abort(args: &JobArgs) -> Outcome {
    let job = crate::control::pick_job(args.job.as_deref())?;
    let mut v = follow(
        &job,
        &json!({"op": "abort"}),
        &["aborted"],
        Duration::from_secs(60),
        true,
    )?;
    v["job"] = Value::String(job.clone());
    if args.json {
        print_doc(v);
    } else {
        crate::outln!(
            "job {job}: {} (handle {}) aborted",
            v["op"].as_str().unwrap_or("operation"),
            v["handle"]
        );
    }
    Ok(())
}

fn checkpoint(args: CheckpointArgs) -> Outcome {
    if args.pids.is_empty() {
        return daemon_checkpoint(&args);
    }
    use crate::direct::{DirectRequest, checkpoint};
    use snapc_posix::app::{Config, STANDALONE_DIR};
    use snapc_posix::fifo::PipeDir;
    use snapc_posix::store::PrivateDir;
    let config = Config::from_env().map_err(Failure::usage)?;
    let signal = args
        .signal
        .as_deref()
        .map(snapc_posix::signal::parse_signal)
        .transpose()
        .map_err(Failure::usage)?
        .unwrap_or(config.signal);
    let timeout = seconds(args.timeout.unwrap_or(10.0), "--timeout")?;
    // The pid of a `snapc run` daemon (what `ompi-checkpoint` users pass:
    // mpirun's) means its job; the daemon does not handle the signal, which
    // would kill it.
    if let Some(outcome) = daemon_pids(&args, signal) {
        return outcome;
    }
    let pipe_dir = args
        .pipe_dir
        .or(config.pipe_dir)
        .map_or_else(PipeDir::from_env, PipeDir::open)
        .map_err(Failure::failed)?;
    let handle = reserve_handle(&config.store, args.handle)?;
    let hold = if args.hold == 0.0 {
        Duration::ZERO
    } else {
        seconds(args.hold, "--hold")?
    };
    let request = DirectRequest {
        pids: args.pids,
        term: args.term,
        stop: args.stop,
        prep_only: args.prep_only,
        hold,
        timeout,
        checkpoint_timeout: match args.checkpoint_timeout {
            Some(s) => seconds(s, "--checkpoint-timeout")?,
            None => snapc_posix::lcio::DEFAULT_CHECKPOINT_TIMEOUT,
        },
        pipe_dir,
        signal,
        handle,
        store: Some(config.store.clone()),
    };
    let results = checkpoint(request);
    // A handle no process wrote into is free again.
    if let Ok(dir) = PrivateDir::open(config.store.join(STANDALONE_DIR), false) {
        let _ = dir.remove_empty_dir(&handle.to_string());
    }
    let results = results.map_err(Failure::usage)?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for r in &results {
        let t = r.timings;
        if let Some(e) = &r.error {
            errors.push(format!("pid {}: {e}", r.pid));
        }
        if args.json {
            docs.push(json!({
                "pid": r.pid,
                "completed": r.completed(),
                "state": r.state.map(|s| s.name()),
                "error": r.error,
                "n": r.n,
                "snapshot": r.snapshot.as_ref().map(|p| p.display().to_string()),
                "snapshot_note": r.snapshot_note,
                "timings_ms": {
                    "fifos": ms(t.fifos), "open": ms(t.open), "options": ms(t.options),
                    "response": ms(t.response), "go_ahead": ms(t.go_ahead),
                    "final_state": ms(t.final_state), "stop": ms(t.stop),
                    "total": ms(Some(t.total)),
                },
            }));
            continue;
        }
        let state = r.state.map_or("-", |s| s.name());
        let total = ms(Some(t.total)).unwrap_or_default();
        match (&r.error, &r.snapshot, &r.snapshot_note) {
            (None, Some(snapshot), _) => crate::outln!(
                "pid {}: {state} in {total:.3} ms (handshake {}), snapshot {}",
                r.pid,
                r.n.unwrap_or_default(),
                snapshot.display()
            ),
            (None, None, Some(note)) => crate::outln!(
                "pid {}: {state} in {total:.3} ms (handshake {}), no snapshot path: {note}",
                r.pid,
                r.n.unwrap_or_default(),
            ),
            (None, None, None) => crate::outln!(
                "pid {}: {state} in {total:.3} ms (handshake {}), prepared and released, no snapshot",
                r.pid,
                r.n.unwrap_or_default(),
            ),
            (Some(e), _, _) => crate::outln!("pid {}: failed after {total:.3} ms: {e}", r.pid),
        }
    }
    let doc = json!({"handle": handle, "processes": docs});
    if errors.is_empty() {
        if args.json {
            print_doc(doc);
        }
        return Ok(());
    }
    let message = format!(
        "{} of {} processes failed: {}",
        errors.len(),
        results.len(),
        errors.join("; ")
    );
    Err(Failure::failed(message).with_doc(doc))
}

/// `--pid` naming `snapc run` daemons: alone, its job is checkpointed
/// through its control socket (waiting for the end, as a direct checkpoint
/// does); among other pids, a usage error. `None`: no daemon among them.
fn daemon_pids(args: &CheckpointArgs, signal: nix::sys::signal::Signal) -> Option<Outcome> {
    // A daemon does not handle the checkpoint signal: only those are asked.
    let daemons: Vec<(u32, String)> = args
        .pids
        .iter()
        .filter(|&&pid| snapc_posix::target::handles(pid, signal) == Some(false))
        .filter_map(|&pid| Some((pid, crate::control::job_of_daemon(pid)?)))
        .collect();
    match (daemons.as_slice(), args.pids.len()) {
        ([], _) => None,
        ([(_, job)], 1) => Some(daemon_checkpoint_of(
            args,
            job.clone(),
            true,
            Duration::from_secs(3600),
        )),
        ([(pid, job), ..], _) => Some(Err(Failure::usage(format!(
            "pid {pid} is the snapc run daemon of job {job}: checkpoint it alone (or with --job {job})"
        )))),
    }
}

/// Takes a snapshot handle in `<store>/standalone/` by creating its
/// directory (so that two checkpoints never share one): `wanted`, which
/// must be free, or one above the highest there, or, once 4294967295 is
/// taken, the lowest free one.
fn reserve_handle(store: &std::path::Path, wanted: Option<u32>) -> Result<u32, Failure> {
    use snapc_posix::app::STANDALONE_DIR;
    use snapc_posix::store::PrivateDir;
    let dir = PrivateDir::open(store, true)
        .and_then(|s| s.open_sub(STANDALONE_DIR, true))
        .map_err(|e| Failure::failed(format!("snapshot store: {e}")))?;
    let take = |h: u32| match dir.create_sub(&h.to_string()) {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => Ok(false),
        Err(e) => Err(Failure::failed(format!("snapshot store: {e}"))),
    };
    if let Some(h) = wanted {
        if h == 0 {
            return Err(Failure::usage(
                "--handle 0 means no snapshot: give 1 or more",
            ));
        }
        return match take(h)? {
            true => Ok(h),
            false => Err(Failure::failed(format!(
                "handle {h} is taken: {} exists",
                dir.path().join(h.to_string()).display()
            ))),
        };
    }
    let mut used: Vec<u32> = dir
        .entries()
        .map_err(|e| Failure::failed(format!("snapshot store: {e}")))?
        .iter()
        .filter_map(|(n, _)| n.parse::<u32>().ok())
        .collect();
    used.sort_unstable();
    let above = used.last().map_or(Some(1), |h| h.checked_add(1));
    // Past the top: the gaps, lowest first.
    let gaps = (1..=u32::MAX).filter(|h| used.binary_search(h).is_err());
    let upward = above.map(|h| h..=u32::MAX).into_iter().flatten();
    for h in upward.chain(gaps).take(1000) {
        if take(h)? {
            return Ok(h);
        }
    }
    Err(Failure::failed(format!(
        "no free snapshot handle in {}",
        dir.path().display()
    )))
}

/// A command-line error: clap's own exit (help, version, usage text), or,
/// when `--json` was asked for, the usage error as one JSON document.
fn parse_error(e: &clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    let json = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || shown {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("usage error");
    let message = first.strip_prefix("error: ").unwrap_or(first).trim();
    conclude(Err(Failure::usage(message)), true)
}

/// Runs the command line; the process's exit status.
pub fn main() -> ExitCode {
    crate::logging::init();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => return parse_error(&e, &argv),
    };
    match cli.command {
        Command::Checkpoint(args) => {
            let json = args.json;
            conclude(checkpoint(args), json)
        }
        Command::Run(args) => run(args),
        Command::Status(args) => conclude(status(&args), args.json),
        Command::Restart(args) => restart(args),
        Command::Node(args) => node(args),
        Command::Quiesce(args) => conclude(quiesce(&args), args.json),
        Command::List(args) => conclude(list(&args), args.json),
        Command::Resume(args) => conclude(resume(&args), args.json),
        Command::Stop(args) => conclude(stop(&args), args.job.json),
        Command::Interval(args) => conclude(interval(&args), args.job.json),
        Command::Abort(args) => conclude(abort(&args), args.json),
        Command::Demo(args) if args.mpi => {
            crate::mpi_demo::main(args.store, args.ranks, args.iters)
        }
        Command::Demo(args) => crate::demo::main(args.store, args.ranks, args.steps),
        Command::Counter { args } => crate::counter::main_with_args(args),
        Command::Wire(cmd) => conclude(wire(cmd), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ignores_separators_and_rejects_junk() {
        assert_eq!(parse_hex("00 0a | FF\n"), Ok(vec![0, 10, 255]));
        assert!(parse_hex("0g").is_err());
        assert!(parse_hex("abc").is_err());
        assert_eq!(to_hex(&[0, 171]), "00ab");
    }
}
