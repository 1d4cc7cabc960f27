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
    /// Decode and encode protocol messages (Open MPI DSS buffers and FIFO frames).
    #[command(subcommand)]
    Wire(WireCommand),
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

/// Runs the command line; the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
