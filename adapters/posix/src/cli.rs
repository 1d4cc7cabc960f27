//! The `snapc` command line.

use crate::json::{self, Channel};
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
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
    /// Checkpoint running processes that no daemon manages: signal them, run
    /// their handshakes concurrently, print one result per pid. Exits 0 only
    /// if every process completed.
    Checkpoint(CheckpointArgs),
    /// Decode and encode protocol messages (Open MPI DSS buffers and FIFO frames).
    #[command(subcommand)]
    Wire(WireCommand),
}

#[derive(Debug, clap::Args)]
struct CheckpointArgs {
    /// A process to checkpoint (repeat for several).
    #[arg(long = "pid", required = true, value_name = "PID")]
    pids: Vec<u32>,
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
    /// One JSON object per process instead of text.
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
    eprintln!("snapc: {msg}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn print_line(line: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth a panic.
    match writeln!(out, "{line}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
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

fn checkpoint(args: CheckpointArgs) -> ExitCode {
    use crate::app::Config;
    use crate::direct::{DirectRequest, checkpoint};
    use crate::fifo::PipeDir;
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let signal = match args
        .signal
        .as_deref()
        .map(crate::signal::parse_signal)
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
        let snapshot = crate::app::standalone_snapshot_dir(&config.store, handle, r.pid);
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
            println!("{v}");
        } else {
            let state = r.state.map_or("-", |s| s.name());
            let total = ms(Some(t.total)).unwrap_or_default();
            match &r.error {
                None => println!(
                    "pid {}: {state} in {total:.3} ms (handshake {}), snapshot {}",
                    r.pid,
                    r.n.unwrap_or_default(),
                    snapshot.display()
                ),
                Some(e) => println!("pid {}: failed after {total:.3} ms: {e}", r.pid),
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
