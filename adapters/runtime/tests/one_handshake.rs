//! One handshake at a time: a coordinator never joins a handshake it did not
//! start and never signals a process whose handshake is in progress; it
//! signals once per handshake; it refuses at once what it cannot
//! checkpoint, saying why; it names only snapshots that exist; and the
//! application bounds its wait for the release by its own configuration.
//!
//! Real processes: the `counter` example, shell scripts standing for
//! processes that are not snapc's (one speaks the FIFO protocol as Open
//! MPI's ranks do, with no lock), `snapc checkpoint --pid` and `snapc run`.
//! Deadlines are generous; nothing here measures speed.

mod common;

use common::jobs::{Env, Job};
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const SNAPC: &str = env!("CARGO_BIN_EXE_snapc");

fn snapc(pipes: &Path, store: &Path) -> Command {
    let mut c = Command::new(SNAPC);
    c.env("SNAPC_PIPE_DIR", pipes)
        .env("SNAPC_STORE", store)
        .env_remove("SNAPC_DAEMON_SOCKET")
        .env_remove("SNAPC_SIGNAL");
    c
}

/// `snapc checkpoint --pid PID --json [extra]` run to its end.
fn checkpoint_pid(pipes: &Path, store: &Path, pid: u32, extra: &[&str]) -> Output {
    snapc(pipes, store)
        .args(["checkpoint", "--pid", &pid.to_string(), "--json"])
        .args(extra)
        .output()
        .expect("run snapc checkpoint")
}

/// The one process's result of a single-pid `--json` checkpoint (one
/// document, `{"handle", "processes": [..]}`), with the handle.
fn result(o: &Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text} / {}", String::from_utf8_lossy(&o.stderr)));
    let procs = doc["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1, "one result: {text}");
    let mut v = procs[0].clone();
    v["handle"] = doc["handle"].clone();
    v
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap();
}

/// Waits (bounded) until `pid` has a handler for SIGUSR1 (a shell sets its
/// traps after it starts).
fn wait_for_handler(pid: u32) {
    let end = Instant::now() + Duration::from_secs(10);
    while snapc_posix::target::handles(pid, Signal::SIGUSR1) != Some(true) {
        assert!(Instant::now() < end, "pid {pid} never took SIGUSR1");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until both FIFO names of handshake `n` of `pid` exist in `dir`.
fn wait_for_names(dir: &Path, pid: u32, n: u32) -> (PathBuf, PathBuf) {
    let read = dir.join(format!("opal_cr_prog_read.{pid}_{n}"));
    let write = dir.join(format!("opal_cr_prog_write.{pid}_{n}"));
    let end = Instant::now() + Duration::from_secs(20);
    while !(read.exists() && write.exists()) {
        assert!(Instant::now() < end, "no FIFOs for handshake {n} of {pid}");
        std::thread::sleep(Duration::from_millis(5));
    }
    (read, write)
}

/// A shell script standing for a process that is not snapc's; its output
/// lines are collected.
struct Shell {
    child: Child,
    lines: Receiver<String>,
}

impl Shell {
    fn start(script: &str, env: &[(&str, &Path)]) -> Self {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run bash");
        let lines = snapc_test_procs::lines(child.stdout.take().unwrap());
        let shell = Self { child, lines };
        wait_for_handler(shell.pid());
        shell
    }

    /// A process that takes SIGUSR1 (printing `usr1` each time) and does
    /// nothing else.
    fn counting_signals() -> Self {
        Self::start("trap 'echo usr1' USR1; while :; do sleep 0.01; done", &[])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines printed so far that start with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        self.lines
            .try_iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    fn line(&self, prefix: &str) -> String {
        snapc_test_procs::line_starting(&self.lines, prefix, Duration::from_secs(20))
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Open MPI's local coordinator side of one handshake: the FIFOs opened by
/// name, no lock taken (it knows nothing of snapc's).
struct Plain {
    /// `prog_read`, written.
    tx: std::fs::File,
    /// `prog_write`, read.
    rx: std::fs::File,
}

impl Plain {
    fn open(dir: &Path, pid: u32, n: u32) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let (read, write) = wait_for_names(dir, pid, n);
        let nonblock = nix::fcntl::OFlag::O_NONBLOCK.bits();
        let tx = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nonblock)
            .open(read)
            .unwrap();
        let rx = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nonblock)
            .open(write)
            .unwrap();
        Self { tx, rx }
    }

    fn send(&mut self, values: &[i32]) {
        self.tx.write_all(&ints(values)).unwrap();
    }

    fn recv(&mut self) -> i32 {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut buf = [0u8; 4];
        let mut got = 0;
        let end = Instant::now() + Duration::from_secs(20);
        while got < 4 {
            assert!(Instant::now() < end, "no answer from the process");
            let mut fds = [PollFd::new(self.rx.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            match self.rx.read(&mut buf[got..]) {
                Ok(0) => panic!("the process closed its FIFO"),
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        i32::from_ne_bytes(buf)
    }
}

impl Plain {
    /// Signals `p` and runs its handshake 0 up to the final state
    /// (CONTINUE) with sstore handle `handle`: it then waits for its release.
    fn up_to_release(p: &Proc, handle: i32) -> Self {
        p.signal();
        let mut lc = Self::open(&p.pipes, p.pid, 0);
        lc.send(&[0, 0, 0, 0, 0, 0, handle]);
        assert_eq!(lc.recv(), START);
        lc.send(&[START]);
        assert_eq!(lc.recv(), CONTINUE);
        lc
    }
}

/// Runs handshake `n` of `p` (signalled first if `signal`) with snapc's
/// FIFO layer up to the final state (CONTINUE): it then waits for its
/// release.
fn up_to_release(p: &Proc, n: u32, handle: i32, signal: bool) -> snapc_posix::fifo::Channel {
    if signal {
        p.signal();
    }
    let ch = p.open(n);
    ch.tx
        .write_all(&ints(&[0, 0, 0, 0, 0, 0, handle]), soon(5000))
        .unwrap();
    assert_eq!(read_int(&ch), START);
    ch.tx.write_all(&ints(&[START]), soon(5000)).unwrap();
    assert_eq!(read_int(&ch), CONTINUE);
    ch
}

/// `p` is clean and its next checkpoint, its second, is an ordinary one.
fn clean_then_an_ordinary_checkpoint(p: &Proc) {
    p.expect_clean(&[]);
    let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(result(&o)["n"], 1);
}

/// Handshake 0 (handle 1) ends, then the signal kept during it runs
/// handshake 1 (handle 2) to its end, with no signal of ours.
fn the_kept_signal_runs_the_next_handshake(p: &Proc) {
    p.line("checkpoint n=0 handle=1 state=CONTINUE");
    let ch = up_to_release(p, 1, 2, false);
    ch.tx.write_all(&ints(&[0]), soon(5000)).unwrap();
    drop(ch);
    p.line("checkpoint n=1 handle=2 state=CONTINUE");
    p.expect_clean(&[]);
}

/// Sleeps long enough for a process that had bytes to read to act on them;
/// used only to show that something did NOT happen.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_second_coordinator_never_joins_a_handshake_in_progress() {
    let p = counter(&[]);
    let me = std::process::id();
    // A coordinator that takes no lock (as Open MPI's) runs handshake 0 up
    // to the final state; the process now waits for its release.
    let mut lc = Plain::up_to_release(&p, 5);

    let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &["--timeout", "20"]);
    assert_eq!(o.status.code(), Some(1));
    let v = result(&o);
    let error = error_of(&v);
    assert!(
        error.contains(&format!(
            "another handshake with pid {} is in progress",
            p.pid
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("opal_cr_prog_read.{}_0", p.pid))
            && error.contains(&format!("opal_cr_prog_write.{}_0", p.pid)),
        "the names: {error}"
    );
    assert!(
        error.contains(&format!("held by pid {me} (")),
        "the holder: {error}"
    );
    assert!(error.contains("not signalled"), "{error}");

    // Nothing was written: the process still waits for its release.
    settle();
    assert_eq!(
        p.try_line(Duration::ZERO),
        None,
        "ran on before its release"
    );
    lc.send(&[0]);
    assert_eq!(
        p.line("checkpoint"),
        "checkpoint n=0 handle=5 state=CONTINUE"
    );
    drop(lc);
    clean_then_an_ordinary_checkpoint(&p);
}

#[test]
fn a_process_in_a_handshake_is_not_signalled_again() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pipes, store) = (dirs.0.path(), dirs.1.path());
    let sh = Shell::counting_signals();
    // Its handshake's FIFOs, held open by a coordinator (this test).
    let mut held = Vec::new();
    for kind in ["read", "write"] {
        let path = pipes.join(format!("opal_cr_prog_{kind}.{}_3", sh.pid()));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        held.push(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
    }
    let o = checkpoint_pid(pipes, store, sh.pid(), &["--timeout", "20"]);
    assert_eq!(o.status.code(), Some(1));
    let error = error_of(&result(&o)).to_string();
    assert!(error.contains("in progress"), "{error}");
    assert!(
        error.contains(&format!("held by pid {} (", std::process::id())),
        "{error}"
    );
    settle();
    assert_eq!(sh.count("usr1"), 0, "signalled during a handshake");
}

#[test]
fn the_daemon_and_a_pid_checkpoint_at_the_same_rank() {
    let env = Env::new();
    let (mut job, daemon, rank) = one_rank_job(&env, "one", &[("COUNTER_CHECKPOINT_MS", "4000")]);
    let pipes = env.run.path().join("one.pipes");
    // The daemon's checkpoint: the rank's hook holds its handshake open.
    let mut first = env
        .snapc()
        .args(["checkpoint", "--job", "one", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_names(&pipes, rank, 0);
    let o = checkpoint_pid(
        &pipes,
        env.store.path(),
        rank,
        &[
            "--pipe-dir",
            &pipes.display().to_string(),
            "--timeout",
            "30",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let error = error_of(&result(&o)).to_string();
    assert!(
        error.contains(&format!("another handshake with pid {rank} is in progress")),
        "{error}"
    );
    assert!(
        error.contains(&format!("held by pid {daemon} (")) && error.contains("snapc run"),
        "names the daemon: {error}"
    );
    // Refused while the first one still runs: at once, not at a deadline.
    assert!(first.try_wait().unwrap().is_none(), "refused too late");
    let out = first.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("checkpoint 0 complete"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_out(&mut job, "[0] checkpoint n=0 handle=1 state=CONTINUE");
    // The rank goes on, and the next checkpoint is an ordinary one.
    let (code, last) = env.checkpoint("one", &["--wait"]);
    assert_eq!(code, 0, "{last}");
    wait_out(&mut job, "[0] checkpoint n=1 handle=2 state=CONTINUE");
    stop(job);
}

#[test]
fn two_pid_checkpoints_at_once() {
    let p = counter(&[("COUNTER_CHECKPOINT_MS", "2000")]);
    let spawn = |handle: &str| {
        snapc(&p.pipes, &p.store)
            .args(["checkpoint", "--pid", &p.pid.to_string(), "--json"])
            .args(["--handle", handle, "--timeout", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("7");
    let b = spawn("8");
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<&Output> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "one completes, one refuses: {:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .collect::<Vec<_>>()
    );
    let winner = result(won[0]);
    let loser = result(lost[0]);
    let error = error_of(&loser);
    assert!(
        error.contains(&format!("pid {}", p.pid))
            && (error.contains("in progress")
                || error.contains("first")
                || error.contains("at the same time")),
        "a clear refusal: {error}"
    );
    assert!(
        error.contains("snapc checkpoint"),
        "names the other coordinator: {error}"
    );
    assert_eq!(loser["snapshot"], Value::Null);
    let handle = winner["handle"].as_u64().unwrap();
    assert_eq!(
        p.line("checkpoint"),
        format!("checkpoint n=0 handle={handle} state=CONTINUE")
    );
    // Exactly one handshake ran.
    settle();
    assert_eq!(p.try_line(Duration::ZERO), None);
    clean_then_an_ordinary_checkpoint(&p);
}

#[test]
fn a_checkpoint_right_after_another_waits_for_its_names_to_go() {
    // A coordinator that leaves the names to the process (as Open MPI's)
    // released it; the process recovers for a while, its names still there.
    // The next coordinator neither joins them nor loses its signal.
    let p = counter(&[("COUNTER_RECOVER_MS", "1500")]);
    let mut lc = Plain::up_to_release(&p, 1);
    lc.send(&[0]);
    drop(lc);
    let (read, _) = wait_for_names(&p.pipes, p.pid, 0);
    let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &["--timeout", "20"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(result(&o)["n"], 1);
    assert!(!read.exists());
    p.line("checkpoint n=0 handle=1 state=CONTINUE");
    p.line("checkpoint n=1 handle=2 state=CONTINUE");
    p.expect_clean(&[]);
}

#[test]
fn a_checkpoint_during_the_previous_ones_recovery_is_not_lost() {
    // snapc's coordinator removes the names when it closes; the process is
    // still in its recover hook when the next coordinator signals it.
    let p = counter(&[("COUNTER_RECOVER_MS", "1000")]);
    for n in 0..3u32 {
        let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &["--timeout", "20"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        assert_eq!(result(&o)["n"], n);
    }
    p.line("checkpoint n=2 handle=3 state=CONTINUE");
    p.expect_clean(&[]);
}

#[test]
fn a_signal_that_lands_during_the_teardown_is_kept() {
    // The application keeps a signal that comes after its release (the
    // next handshake's), instead of losing it while it finishes.
    let p = counter(&[("COUNTER_RECOVER_MS", "1500")]);
    let ch = up_to_release(&p, 0, 1, true);
    // The application's lock on prog_read says when it has read its release.
    let app_lock = ch.tx.key();
    let end = Instant::now() + Duration::from_secs(5);
    while snapc_posix::target::flock_holders(&[app_lock]) != vec![(p.pid, app_lock)] {
        assert!(
            Instant::now() < end,
            "the application holds its handshake: {}",
            std::fs::read_to_string("/proc/locks").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    ch.tx.write_all(&ints(&[0]), soon(5000)).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !snapc_posix::target::flock_holders(&[app_lock]).is_empty() {
        assert!(Instant::now() < end, "the release was never read");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(ch);
    // In its recover hook: one signal, never repeated.
    p.signal();
    the_kept_signal_runs_the_next_handshake(&p);
}

#[test]
fn a_signal_during_the_release_wait_is_kept() {
    // The next coordinator's signal can come while the process still waits
    // for the release the last one already wrote: kept, not lost.
    let p = counter(&[]);
    let ch = up_to_release(&p, 0, 1, true);
    p.signal();
    ch.tx.write_all(&ints(&[0]), soon(5000)).unwrap();
    drop(ch);
    the_kept_signal_runs_the_next_handshake(&p);
}

#[test]
fn a_process_that_never_answers_is_signalled_once() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pipes, store) = (dirs.0.path(), dirs.1.path());
    let sh = Shell::counting_signals();
    let o = checkpoint_pid(pipes, store, sh.pid(), &["--timeout", "3"]);
    assert_eq!(o.status.code(), Some(1));
    let error = error_of(&result(&o)).to_string();
    assert!(
        error.contains("deadline passed waiting for the fifos"),
        "{error}"
    );
    assert!(error.contains(&pipes.display().to_string()), "{error}");
    assert!(error.contains("handles SIGUSR1"), "{error}");
    settle();
    // Once: nothing says it missed the signal.
    assert_eq!(sh.count("usr1"), 1);
}

#[test]
fn stale_names_are_removed_not_joined() {
    let p = counter(&[]);
    // Leftovers of an earlier process with the same pid: one pair with the
    // counter the process will use next, one with a higher counter.
    for n in [0, 7] {
        for kind in ["read", "write"] {
            let path = p.pipes.join(format!("opal_cr_prog_{kind}.{}_{n}", p.pid));
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        }
    }
    let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &["--timeout", "20"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(result(&o)["n"], 0);
    p.line("checkpoint n=0 handle=1 state=CONTINUE");
    p.expect_clean(&[]);
}

#[test]
fn a_pid_that_does_not_handle_the_signal_is_refused_and_left_alive() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id();
    let started = Instant::now();
    let o = checkpoint_pid(dirs.0.path(), dirs.1.path(), pid, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without waiting for a deadline"
    );
    assert_eq!(
        error_of(&result(&o)),
        format!("pid {pid} does not handle SIGUSR1: not a snapc process")
    );
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the process was killed"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_target_that_stops_or_exits_while_awaited_is_named_at_once() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pipes, store) = (dirs.0.path(), dirs.1.path());
    for (sig, said) in [
        (Signal::SIGSTOP, "is stopped"),
        (Signal::SIGKILL, "has exited"),
    ] {
        let sh = Shell::counting_signals();
        let pid = sh.pid();
        let mut cmd = snapc(pipes, store)
            .args(["checkpoint", "--pid", &pid.to_string(), "--json"])
            .args(["--timeout", "60"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        sh.line("usr1");
        signal(pid, sig);
        let started = Instant::now();
        let out = loop {
            if cmd.try_wait().unwrap().is_some() {
                break cmd.wait_with_output().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not noticed before the deadline"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(out.status.code(), Some(1));
        let v = result(&out);
        assert_eq!(error_of(&v), format!("pid {pid} {said}"));
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
    }
    // Stopped before the checkpoint: refused, left stopped, fine once continued.
    let p = counter(&[]);
    signal(p.pid, Signal::SIGSTOP);
    let end = Instant::now() + Duration::from_secs(10);
    while snapc_posix::target::state(p.pid) != snapc_posix::target::State::Stopped {
        assert!(Instant::now() < end, "SIGSTOP did not stop it");
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        error_of(&result(&o)),
        format!(
            "pid {} is stopped; not signalled (continue it first)",
            p.pid
        )
    );
    assert_eq!(
        snapc_posix::target::state(p.pid),
        snapc_posix::target::State::Stopped
    );
    signal(p.pid, Signal::SIGCONT);
    let o = checkpoint_pid(&p.pipes, &p.store, p.pid, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// A process that speaks the FIFO protocol as Open MPI's ranks do (no lock;
/// host-order ints; a signal during a handshake ignored; it saves through
/// its own store, so nothing appears in snapc's) and prints `checkpoint N`
/// after each.
const FOREIGN_RANK: &str = r#"
n=0; go=0; busy=0
trap '[ $busy = 1 ] || go=1' USR1
while :; do
  if [ $go = 1 ]; then
    go=0; busy=1
    r=$PIPES/opal_cr_prog_read.$$_$n; w=$PIPES/opal_cr_prog_write.$$_$n
    mkfifo -m 600 $r $w
    exec 3<>$r
    exec 4>$w
    dd bs=28 count=1 iflag=fullblock <&3 >/dev/null 2>&1
    printf '\0\0\0\0' >&4
    dd bs=4 count=1 iflag=fullblock <&3 >/dev/null 2>&1
    printf '\4\0\0\0' >&4
    dd bs=4 count=1 iflag=fullblock <&3 >/dev/null 2>&1
    exec 3>&- 4>&-
    rm -f $r $w
    echo "checkpoint $n"
    n=$((n+1)); busy=0
  fi
  sleep 0.01
done
"#;

#[test]
fn snapshot_paths_are_named_only_where_they_exist() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pipes, store) = (dirs.0.path(), dirs.1.path());
    // Not snapc's: it completes, and saved where snapc cannot tell.
    let rank = Shell::start(FOREIGN_RANK, &[("PIPES", pipes)]);
    let o = checkpoint_pid(pipes, store, rank.pid(), &["--timeout", "20"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let v = result(&o);
    assert_eq!(v["state"], "CONTINUE");
    assert_eq!(v["snapshot"], Value::Null);
    let note = v["snapshot_note"].as_str().unwrap();
    assert!(note.contains("did not say where"), "{note}");
    rank.line("checkpoint 0");
    // A snapc process with a store of its own: found where it says.
    let own = tempfile::tempdir().unwrap();
    let p = counter_in(pipes, own.path(), &[]);
    let o = checkpoint_pid(pipes, store, p.pid, &["--handle", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let v = result(&o);
    let path = p.snapshot(4);
    assert!(path.join("state").exists());
    assert_eq!(v["snapshot"], path.display().to_string());
    assert_eq!(v["snapshot_note"], Value::Null);
    // In words too.
    let o = snapc(pipes, store)
        .args([
            "checkpoint",
            "--pid",
            &rank.pid().to_string(),
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("no snapshot path: "),
        "{text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_release_wait_is_bounded_by_the_process_configuration() {
    let p = counter(&[("SNAPC_RELEASE_TIMEOUT", "1")]);
    let ch = up_to_release(&p, 0, 1, true);
    // This coordinator hangs: no release. The process gives up on its own
    // deadline, reports a failed checkpoint and runs on.
    assert_eq!(
        p.line("checkpoint n=0"),
        "checkpoint n=0 failed: Release: deadline passed"
    );
    assert!(p.alive());
    drop(ch);
    clean_then_an_ordinary_checkpoint(&p);
}

#[test]
fn the_pid_of_a_snapc_run_daemon_checkpoints_its_job() {
    let env = Env::new();
    let (mut job, daemon, _) = one_rank_job(&env, "bypid", &[]);
    let o = env
        .snapc()
        .args(["checkpoint", "--pid", &daemon.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("checkpoint 0 complete"),
        "{text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(env.snapshots("bypid"), vec![0]);
    wait_out(&mut job, "[0] checkpoint n=0 handle=1 state=CONTINUE");
    assert!(job.child.try_wait().unwrap().is_none(), "the daemon lives");
    stop(job);
}

/// `snapc run -n 1` of the counter in its own run directory, ready; its
/// daemon's pid and its rank's.
fn one_rank_job(env: &Env, name: &str, vars: &[(&str, &str)]) -> (Job, u32, u32) {
    let job = env.run(name, 1, &[], &["--run-for", "60"], vars);
    let status = env.ready(&job);
    let rank = status["ranks"][0]["pid"].as_u64().unwrap() as u32;
    let daemon = job.child.id();
    (job, daemon, rank)
}

/// Waits (bounded) for `line` in the job's output.
fn wait_out(job: &mut Job, line: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while !job.out.iter().any(|l| l == line) {
        let left = end.saturating_duration_since(Instant::now());
        match job.lines.recv_timeout(left) {
            Ok(l) => job.out.push(l),
            Err(_) => panic!("no {line:?} in {:?}", job.out),
        }
    }
}

/// Ends the job as a user would, and waits for it.
fn stop(job: Job) {
    signal(job.child.id(), Signal::SIGTERM);
    job.finish(Duration::from_secs(20));
}
