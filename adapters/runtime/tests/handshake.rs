//! Real processes, real signals: the `counter` example against a local
//! coordinator written here from docs/PROTOCOL.md §4 (raw host-order ints), and the
//! misbehaviours a local coordinator or a hostile neighbour can produce.
//! After each test the process is alive where it should be and nothing is
//! left in the pipe directory.

mod common;
use snapc_posix::app::{ATTRIBUTES_FILE, parse_attributes};

use common::*;
use std::time::Duration;

/// One complete handshake, byte for byte: options (all_migrating, migrating,
/// term, stop, prep_only, recover_only) and handle; response; go-ahead; final
/// state; release.
fn handshake(p: &Proc, n: u32, handle: i32, term: bool) -> i32 {
    p.signal();
    let ch = p.open(n);
    ch.tx
        .write_all(&ints(&[0, 0, i32::from(term), 0, 0, 0, handle]), soon(5000))
        .unwrap();
    assert_eq!(read_int(&ch), START, "response");
    ch.tx.write_all(&ints(&[START]), soon(5000)).unwrap();
    let state = read_int(&ch);
    ch.tx.write_all(&ints(&[0]), soon(5000)).unwrap();
    state
}

/// Signals `p` and sends the options of handshake `n` (handle 1, nothing
/// set): the channel, with the process's response still unread.
fn options_sent(p: &Proc, n: u32) -> snapc_posix::fifo::Channel {
    p.signal();
    let ch = p.open(n);
    ch.tx
        .write_all(&ints(&[0, 0, 0, 0, 0, 0, 1]), soon(5000))
        .unwrap();
    ch
}

#[test]
fn checkpoint_and_continue_five_times() {
    let p = counter(&[]);
    for n in 0..5 {
        let handle = 10 + n as i32;
        assert_eq!(handshake(&p, n, handle, false), CONTINUE);
        assert_eq!(
            p.line("checkpoint"),
            format!("checkpoint n={n} handle={handle} state=CONTINUE")
        );
        assert!(saved_steps(&p.snapshot(handle as u32)) > 0);
        p.expect_clean(&[]);
    }
}

#[test]
fn stall_then_resume_without_a_second_handshake() {
    let p = counter(&[("COUNTER_STALL", "3")]);
    assert_eq!(handshake(&p, 0, 1, false), CONTINUE);
    assert_eq!(
        p.line("checkpoint"),
        "checkpoint n=0 handle=1 state=CONTINUE"
    );
    p.expect_clean(&[]);
}

#[test]
fn term_ends_the_process_after_its_checkpoint() {
    let mut p = counter(&[]);
    assert_eq!(handshake(&p, 0, 1, true), TERM);
    p.line("terminating");
    let status = p.child.wait().unwrap();
    assert!(status.success());
    assert!(p.snapshot(1).join("state").exists());
    // The attributes set during the checkpoint all reach the file at the sync step.
    let text = std::fs::read_to_string(p.snapshot(1).join(ATTRIBUTES_FILE)).unwrap();
    let attrs = parse_attributes(&text);
    assert_eq!(attrs["synced"], "true", "{attrs:?}");
    assert_eq!(attrs["crs"], "snapc-hooks", "{attrs:?}");
    assert!(!attrs["session_dir"].is_empty(), "{attrs:?}");
    p.expect_pipe_dir(&[]);
}

#[test]
fn half_the_options_then_gone() {
    let p = counter(&[]);
    p.signal();
    let ch = p.open(0);
    ch.tx.write_all(&ints(&[0, 0, 0]), soon(5000)).unwrap();
    drop(ch);
    assert!(p.line("checkpoint n=0").contains("failed"));
    p.expect_clean(&[]);
    assert_eq!(
        handshake(&p, 1, 2, false),
        CONTINUE,
        "the next checkpoint works"
    );
}

#[test]
fn gone_before_reading_the_response() {
    let p = counter(&[]);
    let ch = options_sent(&p, 0);
    drop(ch);
    assert!(p.line("checkpoint n=0").contains("failed"));
    p.expect_clean(&[]);
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
}

#[test]
fn garbage_go_ahead_ends_the_handshake() {
    let p = counter(&[]);
    let ch = options_sent(&p, 0);
    assert_eq!(read_int(&ch), START);
    ch.tx
        .write_all(&[0xde, 0xad, 0xbe, 0xef], soon(5000))
        .unwrap();
    assert!(p.line("checkpoint n=0").contains("failed"));
    drop(ch);
    p.expect_clean(&[]);
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
}

#[test]
fn a_planted_symlink_is_never_followed() {
    let p = counter(&[]);
    let victim = p.store.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let name = format!("opal_cr_prog_read.{}_0", p.pid);
    std::os::unix::fs::symlink(&victim, p.pipes.join(&name)).unwrap();
    p.signal();
    assert!(p.line("checkpoint n=0").contains("failed"));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    p.expect_clean(&[&name]);
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
    p.expect_pipe_dir(&[&name]);
}

#[test]
fn a_regular_file_at_the_name_is_left_alone() {
    let p = counter(&[]);
    let name = format!("opal_cr_prog_write.{}_0", p.pid);
    std::fs::write(p.pipes.join(&name), b"not a fifo").unwrap();
    p.signal();
    assert!(p.line("checkpoint n=0").contains("failed"));
    assert_eq!(std::fs::read(p.pipes.join(&name)).unwrap(), b"not a fifo");
    assert!(p.alive());
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
}

#[test]
fn a_stale_fifo_from_an_earlier_run_is_reused() {
    let p = counter(&[]);
    let stale = p.pipes.join(format!("opal_cr_prog_read.{}_0", p.pid));
    nix::unistd::mkfifo(
        &stale,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    assert_eq!(handshake(&p, 0, 1, false), CONTINUE);
    p.expect_clean(&[]);
}

#[test]
fn a_hundred_signals_during_one_checkpoint() {
    let p = counter(&[]);
    let ch = options_sent(&p, 0);
    assert_eq!(read_int(&ch), START);
    for _ in 0..100 {
        p.signal();
    }
    ch.tx.write_all(&ints(&[START]), soon(5000)).unwrap();
    assert_eq!(read_int(&ch), CONTINUE);
    ch.tx.write_all(&ints(&[0]), soon(5000)).unwrap();
    drop(ch);
    assert_eq!(
        p.line("checkpoint"),
        "checkpoint n=0 handle=1 state=CONTINUE"
    );
    // No second handshake starts from the signals that came during the first.
    std::thread::sleep(Duration::from_millis(200));
    p.expect_clean(&[]);
}

#[test]
fn restart_resumes_from_the_snapshot() {
    let mut first = counter(&[]);
    assert_eq!(handshake(&first, 0, 1, false), CONTINUE);
    first.line("checkpoint n=0 handle=1 state=CONTINUE");
    let snapshot = first.snapshot(1);
    let saved = saved_steps(&snapshot);
    assert!(saved > 0);
    let store = first.store.clone();
    let pipes = first.pipes.clone();
    // The process is lost; a new one starts from its snapshot.
    let restart = snapshot.to_string_lossy().into_owned();
    let second = counter_in(&pipes, &store, &[("SNAPC_RESTART_DIR", &restart)]);
    // Its directories stay (they belong to `first`); its process goes.
    first.child.kill().unwrap();
    assert_eq!(second.start, format!("start steps={saved}"));
    assert_eq!(
        handshake(&second, 0, 2, false),
        CONTINUE,
        "counter 0 again for the new pid"
    );
    let resumed = saved_steps(&second.snapshot(2));
    assert!(resumed > saved, "resumed at {resumed}, saved {saved}");
    second.expect_clean(&[]);
}

#[test]
fn a_broken_snapshot_stops_the_restart_with_an_error() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("state"), b"garbage").unwrap();
    let exe = counter_exe();
    let out = std::process::Command::new(exe)
        .args(["--run-for", "1"])
        .env("SNAPC_PIPE_DIR", t.path().join("pipes"))
        .env("SNAPC_RESTART_DIR", t.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed state file"));
}
