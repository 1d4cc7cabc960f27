//! Printing that never panics, and, for the daemon, never blocks.
//!
//! `println!` panics when its stream is closed (`snapc status | head`:
//! EPIPE, since Rust ignores SIGPIPE); here a closed stream is noted and
//! later output to it is dropped, quietly, and the command ends with its
//! own exit status.
//!
//! The daemon's event loop must never wait on a reader: `snapc run ... |
//! sleep 600`, or a terminal paused with Ctrl-S, would otherwise freeze
//! every checkpoint. After [`start_background`], standard output and
//! standard error are written by one thread each from a bounded queue
//! ([`QUEUE_BYTES`]); a line that does not fit is dropped and counted
//! ([`dropped`]), and the caller goes on at once. The ranks' output and the
//! daemon's log both go through here.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// The most bytes waiting for each stream's writer.
pub const QUEUE_BYTES: usize = 1 << 20;

/// Whether a write to standard output failed (closed pipe, ...).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer is in a write.
    busy: bool,
    dropped_bytes: u64,
    dropped_lines: u64,
}

struct Queue {
    state: Mutex<State>,
    cv: Condvar,
    closed: &'static AtomicBool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, bytes: Vec<u8>) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.lock();
        if s.bytes + bytes.len() > QUEUE_BYTES {
            s.dropped_bytes += bytes.len() as u64;
            s.dropped_lines += 1;
            return;
        }
        s.bytes += bytes.len();
        s.chunks.push_back(bytes);
        self.cv.notify_all();
    }

    fn run(&self, mut w: impl Write) {
        loop {
            let batch: Vec<Vec<u8>> = {
                let mut s = self.lock();
                while s.chunks.is_empty() {
                    s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                s.bytes = 0;
                s.busy = true;
                s.chunks.drain(..).collect()
            };
            if !self.closed.load(Ordering::Relaxed) {
                let r = batch
                    .iter()
                    .try_for_each(|b| w.write_all(b))
                    .and_then(|()| w.flush());
                if r.is_err() {
                    self.closed.store(true, Ordering::Relaxed);
                }
            }
            self.lock().busy = false;
            self.cv.notify_all();
        }
    }

    /// Waits until everything queued was written, or `deadline`.
    fn drain(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        loop {
            if s.chunks.is_empty() && !s.busy {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

static QUEUES: OnceLock<(Arc<Queue>, Arc<Queue>)> = OnceLock::new();

/// From now on, standard output and standard error are written by
/// background threads from bounded queues: the callers never block.
pub fn start_background() {
    QUEUES.get_or_init(|| {
        let out = Arc::new(Queue {
            state: Mutex::default(),
            cv: Condvar::new(),
            closed: &STDOUT_CLOSED,
        });
        let err = Arc::new(Queue {
            state: Mutex::default(),
            cv: Condvar::new(),
            closed: &STDERR_CLOSED,
        });
        for (q, stderr) in [(Arc::clone(&out), false), (Arc::clone(&err), true)] {
            let spawned = std::thread::Builder::new()
                .name(if stderr { "stderr" } else { "stdout" }.into())
                .spawn(move || {
                    if stderr {
                        q.run(std::io::stderr());
                    } else {
                        q.run(std::io::stdout());
                    }
                });
            if spawned.is_err() {
                // No thread: nothing will be written to this stream.
                if stderr {
                    &STDERR_CLOSED
                } else {
                    &STDOUT_CLOSED
                }
                .store(true, Ordering::Relaxed);
            }
        }
        (out, err)
    });
}

/// Waits (at most `within`) until the queued output was written; whether
/// it was.
pub fn drain(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    QUEUES
        .get()
        .is_none_or(|(o, e)| o.drain(deadline) & e.drain(deadline))
}

/// Bytes and lines dropped so far because a stream's reader lagged:
/// (stdout bytes, stdout lines, stderr bytes, stderr lines).
pub fn dropped() -> (u64, u64, u64, u64) {
    QUEUES.get().map_or((0, 0, 0, 0), |(o, e)| {
        let (o, e) = (o.lock(), e.lock());
        (
            o.dropped_bytes,
            o.dropped_lines,
            e.dropped_bytes,
            e.dropped_lines,
        )
    })
}

fn write(closed: &AtomicBool, w: &mut impl Write, bytes: &[u8]) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if w.write_all(bytes).and_then(|()| w.flush()).is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// Bytes on standard output: queued once [`start_background`] ran, else
/// written now.
pub fn out_bytes(bytes: &[u8]) {
    match QUEUES.get() {
        Some((q, _)) => q.push(bytes.to_vec()),
        None => write(&STDOUT_CLOSED, &mut std::io::stdout().lock(), bytes),
    }
}

/// Bytes on standard error, as [`out_bytes`].
pub fn err_bytes(bytes: &[u8]) {
    match QUEUES.get() {
        Some((_, q)) => q.push(bytes.to_vec()),
        None => write(&STDERR_CLOSED, &mut std::io::stderr().lock(), bytes),
    }
}

fn text(args: std::fmt::Arguments<'_>, nl: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = v.write_fmt(args);
    if nl {
        v.push(b'\n');
    }
    v
}

/// One line on standard output (flushed).
pub fn line(args: std::fmt::Arguments<'_>) {
    out_bytes(&text(args, true));
}

/// One line on standard error.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    err_bytes(&text(args, true));
}

/// Text on standard error, without a newline.
pub fn err_text(args: std::fmt::Arguments<'_>) {
    err_bytes(&text(args, false));
}

/// `println!` that never panics ([`crate::out`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::out::line(format_args!("")) };
    ($($t:tt)*) => { $crate::out::line(format_args!($($t)*)) };
}

/// `eprintln!` that never panics ([`crate::out`]).
#[macro_export]
macro_rules! errln {
    () => { $crate::out::err_line(format_args!("")) };
    ($($t:tt)*) => { $crate::out::err_line(format_args!($($t)*)) };
}

/// `eprint!` that never panics ([`crate::out`]).
#[macro_export]
macro_rules! errp {
    ($($t:tt)*) => { $crate::out::err_text(format_args!($($t)*)) };
}
