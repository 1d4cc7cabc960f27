//! The `snapc` command line.

use crate::json::{self, Channel};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::process::ExitCode;

/// Exit status for malformed input (a buffer or JSON that does not decode).
pub const EXIT_BAD_INPUT: u8 = 2;

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
    /// the ranks' worst status.
    Run(RunArgs),
    /// Checkpoint a running job through its daemon (--job), or, with --pid,
    /// processes that no daemon manages: signal them, run their handshakes
    /// concurrently, print one result per pid. Exits 0 only if every process
    /// completed.
    Checkpoint(CheckpointArgs),
    /// Show the running jobs: ranks, pids, state, last snapshot, checkpoint
    /// in progress.
    Status(StatusArgs),
    /// Relaunch a job from a complete snapshot: `<store>/<job>` (the latest)
    /// or `<store>/<job>/<seq>`.
    Restart(RestartArgs),
    /// Quiesce a running job (prepare only, held) or end its quiesce.
    Quiesce(QuiesceArgs),
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
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Number of ranks.
    #[arg(short = 'n', value_name = "N")]
    n: u32,
    /// The job's name (default: job-<daemon pid>).
    #[arg(long, value_name = "NAME")]
    job: Option<String>,
    /// The snapshot store (default: SNAPC_STORE, else snapc-store-<uid> in the temp dir).
    #[arg(long, value_name = "DIR")]
    store: Option<std::path::PathBuf>,
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
    /// Keep the K latest complete snapshots, remove older ones.
    #[arg(long, value_name = "K")]
    keep: Option<usize>,
    /// Deadline of each wait on a rank's FIFOs, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    timeout: f64,
}

impl DaemonArgs {
    /// Sets the interval, timeout and keep count of `opts`.
    fn apply(&self, opts: &mut crate::daemon::RunOptions) -> Result<(), String> {
        opts.interval = self
            .interval
            .map(|v| seconds(v, "--interval"))
            .transpose()?;
        opts.timeout = seconds(self.timeout, "--timeout")?;
        opts.keep = self.keep;
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The job (default: every running job).
    #[arg(long, value_name = "J")]
    job: Option<String>,
    /// JSON (one object per job).
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
    /// Print the daemon's answer as JSON.
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
    /// With a job: wait until the checkpoint ends, print its sequence number and reference.
    #[arg(long)]
    wait: bool,
    /// Terminate the processes after their checkpoint.
    #[arg(long)]
    term: bool,
    /// Stop (SIGSTOP) the processes after their checkpoint.
    #[arg(long)]
    stop: bool,
    /// Only prepare the processes (quiesce them), hold them for --hold
    /// seconds, then let them go on.
    #[arg(long, conflicts_with_all = ["term", "stop"])]
    prep_only: bool,
    /// With --prep-only: how long to hold the processes quiesced, in seconds.
    #[arg(long, default_value_t = 0.0, value_name = "S", requires = "prep_only")]
    hold: f64,
    /// Deadline of each wait on a process, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    timeout: f64,
    /// The processes' pipe directory (default: as the processes compute it).
    #[arg(long, value_name = "D")]
    pipe_dir: Option<std::path::PathBuf>,
    /// The checkpoint signal, by name or number (default SNAPC_SIGNAL, else SIGUSR1).
    #[arg(long, value_name = "SIG")]
    signal: Option<String>,
    /// The snapshot handle (default: one above the highest in the standalone store).
    #[arg(long, value_name = "H")]
    handle: Option<u32>,
    /// JSON instead of text (one object per process, or per daemon event).
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

fn bad_input(msg: impl std::fmt::Display) -> ExitCode {
    crate::errln!("snapc: {msg}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn print_line(line: &str) -> ExitCode {
    // A closed stdout (e.g. `| head`) is a quiet exit (crate::out).
    crate::outln!("{line}");
    ExitCode::SUCCESS
}

fn wire(cmd: WireCommand) -> ExitCode {
    match cmd {
        WireCommand::Decode {
            channel,
            pretty,
            hex,
        } => {
            let text = match hex.map_or_else(read_stdin, Ok) {
                Ok(t) => t,
                Err(e) => return bad_input(e),
            };
            let bytes = match parse_hex(&text) {
                Ok(b) => b,
                Err(e) => return bad_input(e),
            };
            match json::decode(channel, &bytes) {
                Ok(v) if pretty => {
                    print_line(&serde_json::to_string_pretty(&v).unwrap_or_default())
                }
                Ok(v) => print_line(&v.to_string()),
                Err(e) => bad_input(format_args!("malformed buffer: {e}")),
            }
        }
        WireCommand::Encode { channel } => {
            let text = match read_stdin() {
                Ok(t) => t,
                Err(e) => return bad_input(e),
            };
            let value: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => return bad_input(format_args!("invalid JSON: {e}")),
            };
            match json::encode(channel, &value) {
                Ok(bytes) => print_line(&to_hex(&bytes)),
                Err(e) => bad_input(e),
            }
        }
    }
}

fn ms(d: Option<snapc_core::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_micros() as f64 / 1000.0)
}

/// A number of seconds from the command line.
fn seconds(v: f64, what: &str) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{what} must be a positive number of seconds"))
}

fn run(args: RunArgs) -> ExitCode {
    let store = match args.store {
        Some(s) => s,
        None => match snapc_posix::app::Config::from_env() {
            Ok(c) => c.store,
            Err(e) => return bad_input(e),
        },
    };
    let mut opts = crate::daemon::RunOptions {
        nranks: args.n,
        job: args
            .job
            .unwrap_or_else(|| format!("job-{}", std::process::id())),
        store: absolute(store),
        interval: None,
        keep: None,
        argv: args.program,
        cwd: None,
        restart_from: None,
        timeout: std::time::Duration::ZERO,
    };
    if let Err(e) = args.daemon.apply(&mut opts) {
        return bad_input(e);
    }
    exit_with(crate::daemon::run(opts))
}

fn absolute(p: std::path::PathBuf) -> std::path::PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

fn exit_with(r: Result<i32, crate::daemon::RunError>) -> ExitCode {
    match r {
        Ok(status) => ExitCode::from(u8::try_from(status).unwrap_or(255)),
        Err(e) => {
            crate::errln!("snapc: {e}");
            ExitCode::FAILURE
        }
    }
}

pub use crate::daemon::restart_options;

fn restart(args: RestartArgs) -> ExitCode {
    let mut opts = match restart_options(&args.path) {
        Ok(o) => o,
        Err(e) => return bad_input(e),
    };
    if let Err(e) = args.daemon.apply(&mut opts) {
        return bad_input(e);
    }
    exit_with(crate::daemon::run(opts))
}

fn status(args: StatusArgs) -> ExitCode {
    use crate::control::{Client, jobs};
    let names = match args.job {
        Some(j) => vec![j],
        None => match jobs() {
            Ok(j) => j,
            Err(e) => return bad_input(e),
        },
    };
    if names.is_empty() && !args.json {
        crate::outln!("no job is running");
    }
    let mut code = ExitCode::SUCCESS;
    for job in names {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let answer = Client::send(&job, &serde_json::json!({"op": "status"}))
            .and_then(|mut c| c.until(&["status"], deadline, |_| {}));
        match answer {
            Ok(v) if args.json => crate::outln!("{v}"),
            Ok(v) => print_status(&v),
            Err(e) => {
                crate::errln!("snapc: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

fn print_status(v: &serde_json::Value) {
    use serde_json::Value;
    let s = |k: &str| {
        v.get(k).map_or(String::new(), |x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    crate::outln!(
        "job {} (jobid {}, daemon pid {}): {} ranks, store {}",
        s("job"),
        s("jobid"),
        s("daemon_pid"),
        s("nranks"),
        s("store")
    );
    for r in v
        .get("ranks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        crate::outln!(
            "  rank {} pid {} {}{}",
            r["rank"],
            r["pid"],
            r["state"].as_str().unwrap_or("?"),
            if r["connected"].as_bool() == Some(true) {
                ""
            } else {
                " (not connected)"
            }
        );
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
    if v.get("quiesced").and_then(Value::as_bool) == Some(true) {
        crate::outln!("  quiesced");
    }
}

/// Sends `request` to the job's daemon and follows it to its end; the final
/// event.
fn follow(
    job: Option<&str>,
    request: serde_json::Value,
    wait: bool,
    json_out: bool,
    timeout: std::time::Duration,
) -> Result<serde_json::Value, String> {
    use std::io::IsTerminal;
    let job = crate::control::pick_job(job)?;
    let mut client = crate::control::Client::send(&job, &request)?;
    let deadline = std::time::Instant::now() + timeout;
    let tty = std::io::stderr().is_terminal() && !json_out;
    let last: &[&str] = if wait { &["finished"] } else { &["started"] };
    let v = client.until(last, deadline, |ev| {
        if json_out {
            crate::outln!("{ev}");
        } else if tty && ev["event"] == "progress" {
            crate::errp!("\r  ranks done {}/{}", ev["done"], ev["total"]);
        }
    })?;
    if tty && wait {
        crate::errln!();
    }
    Ok(v)
}

fn daemon_checkpoint(args: &CheckpointArgs) -> ExitCode {
    let timeout = match seconds(args.timeout.max(600.0), "--timeout") {
        Ok(t) => t,
        Err(e) => return bad_input(e),
    };
    let req = serde_json::json!({
        "op": "checkpoint", "term": args.term, "stop": args.stop, "wait": args.wait,
    });
    match follow(args.job.as_deref(), req, args.wait, args.json, timeout) {
        Ok(v) => match v["event"].as_str() {
            Some("error") => {
                if !args.json {
                    crate::errln!("snapc: {}", v["message"].as_str().unwrap_or("refused"));
                }
                ExitCode::FAILURE
            }
            Some("finished") if v["ok"] == true => {
                if !args.json {
                    crate::outln!(
                        "checkpoint {} complete: {} ({})",
                        v["seq"],
                        v["reference"].as_str().unwrap_or("?"),
                        v["dir"].as_str().unwrap_or("?")
                    );
                }
                ExitCode::SUCCESS
            }
            Some("finished") => {
                if !args.json {
                    crate::errln!(
                        "snapc: checkpoint failed: {}",
                        v["error"].as_str().unwrap_or("unknown error")
                    );
                }
                ExitCode::FAILURE
            }
            _ => {
                if !args.json {
                    crate::outln!("checkpoint started (handle {})", v["handle"]);
                }
                ExitCode::SUCCESS
            }
        },
        Err(e) => bad_input(e),
    }
}

fn quiesce(args: QuiesceArgs) -> ExitCode {
    let timeout = match seconds(args.timeout, "--timeout") {
        Ok(t) => t,
        Err(e) => return bad_input(e),
    };
    let op = if args.what == "start" {
        "quiesce_start"
    } else {
        "quiesce_end"
    };
    let req = serde_json::json!({"op": op, "wait": true});
    match follow(args.job.as_deref(), req, true, args.json, timeout) {
        Ok(v) if v["event"] == "finished" && v["ok"] == true => {
            if !args.json {
                crate::outln!("quiesce {}: done", args.what);
            }
            ExitCode::SUCCESS
        }
        Ok(v) => {
            if !args.json {
                let why = v["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .unwrap_or("failed");
                crate::errln!("snapc: quiesce {}: {why}", args.what);
            }
            ExitCode::FAILURE
        }
        Err(e) => bad_input(e),
    }
}

fn checkpoint(args: CheckpointArgs) -> ExitCode {
    if args.pids.is_empty() {
        return daemon_checkpoint(&args);
    }
    use crate::direct::{DirectRequest, checkpoint};
    use snapc_posix::app::Config;
    use snapc_posix::fifo::PipeDir;
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let signal = match args
        .signal
        .as_deref()
        .map(snapc_posix::signal::parse_signal)
        .transpose()
    {
        Ok(s) => s.unwrap_or(config.signal),
        Err(e) => return bad_input(e),
    };
    let Some(timeout) = std::time::Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
    else {
        return bad_input("--timeout must be a positive number of seconds");
    };
    let pipe_dir = match args
        .pipe_dir
        .or(config.pipe_dir)
        .map_or_else(PipeDir::from_env, PipeDir::open)
    {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    let handle = args.handle.unwrap_or_else(|| next_handle(&config.store));
    let Some(hold) = std::time::Duration::try_from_secs_f64(args.hold).ok() else {
        return bad_input("--hold must be a non-negative number of seconds");
    };
    let request = DirectRequest {
        pids: args.pids,
        term: args.term,
        stop: args.stop,
        prep_only: args.prep_only,
        hold,
        timeout,
        pipe_dir,
        signal,
        handle,
    };
    let results = match checkpoint(request) {
        Ok(r) => r,
        Err(e) => return bad_input(e),
    };
    let mut all = true;
    for r in &results {
        all &= r.completed();
        let t = r.timings;
        let snapshot = snapc_posix::app::standalone_snapshot_dir(&config.store, handle, r.pid);
        if args.json {
            let v = serde_json::json!({
                "pid": r.pid,
                "completed": r.completed(),
                "state": r.state.map(|s| s.name()),
                "error": r.error,
                "n": r.n,
                "handle": handle,
                "snapshot": (r.completed() && !args.prep_only).then(|| snapshot.display().to_string()),
                "timings_ms": {
                    "fifos": ms(t.fifos), "open": ms(t.open), "options": ms(t.options),
                    "response": ms(t.response), "go_ahead": ms(t.go_ahead),
                    "final_state": ms(t.final_state), "stop": ms(t.stop),
                    "total": ms(Some(t.total)),
                },
            });
            crate::outln!("{v}");
        } else {
            let state = r.state.map_or("-", |s| s.name());
            let total = ms(Some(t.total)).unwrap_or_default();
            match &r.error {
                None => crate::outln!(
                    "pid {}: {state} in {total:.3} ms (handshake {}), snapshot {}",
                    r.pid,
                    r.n.unwrap_or_default(),
                    snapshot.display()
                ),
                Some(e) => crate::outln!("pid {}: failed after {total:.3} ms: {e}", r.pid),
            }
        }
    }
    if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One above the highest numeric snapshot directory in the standalone store.
fn next_handle(store: &std::path::Path) -> u32 {
    std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map_or(1, |h| h.saturating_add(1))
}

/// Runs the command line; the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Checkpoint(args) => checkpoint(args),
        Command::Run(args) => run(args),
        Command::Status(args) => status(args),
        Command::Restart(args) => restart(args),
        Command::Quiesce(args) => quiesce(args),
        Command::Demo(args) => crate::demo::main(args.store, args.ranks, args.steps),
        Command::Counter { args } => crate::counter::main_with_args(args),
        Command::Wire(cmd) => wire(cmd),
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
