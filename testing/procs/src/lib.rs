//! What the real-process tests of snapc-runtime and libsnapc share: a
//! child's output read line by line by a thread, waiting (bounded) for a
//! line, waiting (bounded) for the exit.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The lines of `output` (a child's stdout or stderr) as a thread reads
/// them; the thread ends at end of file or when the receiver is dropped.
pub fn lines(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `lines` that starts with `prefix` (the others are
/// skipped); panics when none comes within `within`.
pub fn line_starting(lines: &Receiver<String>, prefix: &str, within: Duration) -> String {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line starting {prefix:?}"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

/// Waits (at most `within`) for `child` to exit, appending its `lines` to
/// `out` meanwhile and after; its exit code, 128 + the signal's number when
/// a signal ended it. When it does not end in time it is killed and the
/// test fails naming `what`.
pub fn finish(
    child: &mut Child,
    lines: &Receiver<String>,
    out: &mut Vec<String>,
    within: Duration,
    what: &str,
) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // What the reader thread has not handed over yet.
            while let Ok(l) = lines.recv_timeout(Duration::from_millis(300)) {
                out.push(l);
            }
            return status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end; output: {out:?}");
        }
        while let Ok(l) = lines.recv_timeout(Duration::from_millis(20)) {
            out.push(l);
        }
    }
}

/// The lines that satisfy `pred`, sorted (ranks print in any order).
pub fn sorted(lines: &[String], pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().filter(|l| pred(l)).cloned().collect();
    v.sort();
    v
}
