//! Real processes, real signals: the `counter` example against a local
//! coordinator written here from PROTOCOL.md §4 (raw host-order ints), and the
//! misbehaviours a local coordinator or a hostile neighbour can produce.
//! After each test the process is alive where it should be and nothing is
//! left in the pipe directory.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_core::wire::ChannelNames;
use snapc_posix::fifo::{Channel, PipeDir};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const START: i32 = 0;
const CONTINUE: i32 = 4;
const TERM: i32 = 5;

struct Proc {
    child: Child,
    pid: u32,
    lines: Receiver<String>,
    pipes: tempfile::TempDir,
    store: tempfile::TempDir,
}

fn counter(env: &[(&str, &str)]) -> Proc {
    let pipes = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    // Cargo builds the examples beside the binaries for integration tests.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_snapc"))
        .with_file_name("examples")
        .join("counter");
    let mut cmd = Command::new(exe);
    cmd.args(["--run-for", "60"])
        .env("SNAPC_PIPE_DIR", pipes.path())
        .env("SNAPC_STORE", store.path())
        .env("SNAPC_TIMEOUT", "1")
        .env_remove("SNAPC_DAEMON_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("spawn counter (cargo builds examples for tests)");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("pid line");
    let pid = first
        .strip_prefix("pid=")
        .expect("first line is pid=")
        .parse()
        .unwrap();
    assert!(
        lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .starts_with("start ")
    );
    Proc {
        child,
        pid,
        lines,
        pipes,
        store,
    }
}

impl Proc {
    fn dir(&self) -> PipeDir {
        PipeDir::open(self.pipes.path()).unwrap()
    }

    fn signal(&self) {
        kill(Pid::from_raw(self.pid as i32), Signal::SIGUSR1).unwrap();
    }

    /// Opens the local side of handshake `n`.
    fn open(&self, n: u32) -> Channel {
        Channel::open_local(&self.dir(), ChannelNames { pid: self.pid, n }, soon(5000))
            .expect("the process opened its FIFOs")
    }

    fn line(&self, prefix: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn alive(&self) -> bool {
        kill(Pid::from_raw(self.pid as i32), None).is_ok()
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .count()
    }

    fn pipe_dir_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.pipes.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Waits (bounded) until the pipe directory holds exactly `expected`.
    fn expect_pipe_dir(&self, expected: &[&str]) {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let mut found = self.pipe_dir_entries();
            found.sort();
            if found == expected || Instant::now() > end {
                assert_eq!(found, expected, "pipe directory");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn ints(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn read_int(ch: &Channel) -> i32 {
    let mut b = [0u8; 4];
    ch.rx.read_exact(&mut b, soon(5000)).unwrap();
    i32::from_ne_bytes(b)
}

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

#[test]
fn checkpoint_and_continue_five_times() {
    let p = counter(&[]);
    let fds = p.fds();
    for n in 0..5 {
        let handle = 10 + n as i32;
        assert_eq!(handshake(&p, n, handle, false), CONTINUE);
        assert_eq!(
            p.line("checkpoint"),
            format!("checkpoint n={n} handle={handle} state=CONTINUE")
        );
        let saved =
            std::fs::read_to_string(p.store.path().join(handle.to_string()).join("state")).unwrap();
        assert!(
            saved
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
        p.expect_pipe_dir(&[]);
        assert!(p.alive());
        assert_eq!(p.fds(), fds, "fds leaked");
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
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
}

#[test]
fn term_ends_the_process_after_its_checkpoint() {
    let mut p = counter(&[]);
    assert_eq!(handshake(&p, 0, 1, true), TERM);
    p.line("terminating");
    let status = p.child.wait().unwrap();
    assert!(status.success());
    assert!(p.store.path().join("1/state").exists());
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
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
    assert_eq!(
        handshake(&p, 1, 2, false),
        CONTINUE,
        "the next checkpoint works"
    );
}

#[test]
fn gone_before_reading_the_response() {
    let p = counter(&[]);
    p.signal();
    let ch = p.open(0);
    ch.tx
        .write_all(&ints(&[0, 0, 0, 0, 0, 0, 1]), soon(5000))
        .unwrap();
    drop(ch);
    assert!(p.line("checkpoint n=0").contains("failed"));
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
}

#[test]
fn garbage_go_ahead_ends_the_handshake() {
    let p = counter(&[]);
    p.signal();
    let ch = p.open(0);
    ch.tx
        .write_all(&ints(&[0, 0, 0, 0, 0, 0, 1]), soon(5000))
        .unwrap();
    assert_eq!(read_int(&ch), START);
    ch.tx
        .write_all(&[0xde, 0xad, 0xbe, 0xef], soon(5000))
        .unwrap();
    assert!(p.line("checkpoint n=0").contains("failed"));
    drop(ch);
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
}

#[test]
fn a_planted_symlink_is_never_followed() {
    let p = counter(&[]);
    let victim = p.store.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let name = format!("opal_cr_prog_read.{}_0", p.pid);
    std::os::unix::fs::symlink(&victim, p.pipes.path().join(&name)).unwrap();
    p.signal();
    assert!(p.line("checkpoint n=0").contains("failed"));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    p.expect_pipe_dir(&[&name]);
    assert!(p.alive());
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
    p.expect_pipe_dir(&[&name]);
}

#[test]
fn a_regular_file_at_the_name_is_left_alone() {
    let p = counter(&[]);
    let name = format!("opal_cr_prog_write.{}_0", p.pid);
    std::fs::write(p.pipes.path().join(&name), b"not a fifo").unwrap();
    p.signal();
    assert!(p.line("checkpoint n=0").contains("failed"));
    assert_eq!(
        std::fs::read(p.pipes.path().join(&name)).unwrap(),
        b"not a fifo"
    );
    assert!(p.alive());
    assert_eq!(handshake(&p, 1, 2, false), CONTINUE);
}

#[test]
fn a_stale_fifo_from_an_earlier_run_is_reused() {
    let p = counter(&[]);
    let stale = p
        .pipes
        .path()
        .join(format!("opal_cr_prog_read.{}_0", p.pid));
    nix::unistd::mkfifo(
        &stale,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    assert_eq!(handshake(&p, 0, 1, false), CONTINUE);
    p.expect_pipe_dir(&[]);
}

#[test]
fn a_hundred_signals_during_one_checkpoint() {
    let p = counter(&[]);
    p.signal();
    let ch = p.open(0);
    ch.tx
        .write_all(&ints(&[0, 0, 0, 0, 0, 0, 1]), soon(5000))
        .unwrap();
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
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
}
