//! Printing that never panics. `println!` panics when its stream is closed
//! (`snapc status | head`: EPIPE, since Rust ignores SIGPIPE); here a closed
//! stream is noted and later output to it is dropped, quietly, and the
//! command ends with its own exit status. The daemon's log and its ranks'
//! output go through here too, so a closed terminal or pipe never takes the
//! job down with it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to standard output failed (closed pipe, ...).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write(closed: &AtomicBool, w: &mut impl Write, args: std::fmt::Arguments<'_>, nl: bool) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let r = w
        .write_fmt(args)
        .and_then(|()| if nl { w.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| w.flush());
    if r.is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// One line on standard output (flushed).
pub fn line(args: std::fmt::Arguments<'_>) {
    write(&STDOUT_CLOSED, &mut std::io::stdout().lock(), args, true);
}

/// One line on standard error.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    write(&STDERR_CLOSED, &mut std::io::stderr().lock(), args, true);
}

/// Text on standard error, without a newline.
pub fn err_text(args: std::fmt::Arguments<'_>) {
    write(&STDERR_CLOSED, &mut std::io::stderr().lock(), args, false);
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
