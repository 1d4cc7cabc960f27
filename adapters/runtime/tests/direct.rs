//! `snapc checkpoint --pid`: this process as the local coordinator of
//! processes no daemon manages.

mod common;

use common::*;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn snapc_checkpoint(pipes: &std::path::Path, store: &std::path::Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapc"))
        .arg("checkpoint")
        .args(args)
        .env("SNAPC_PIPE_DIR", pipes)
        .env("SNAPC_STORE", store)
        .output()
        .expect("run snapc checkpoint")
}

fn pid_args(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .flat_map(|p| ["--pid".to_string(), p.to_string()])
        .collect()
}

/// Waits (bounded) until `pid` has a handler for SIGUSR1 (a shell sets its
/// traps after it starts).
fn wait_for_handler(pid: u32) {
    let end = Instant::now() + Duration::from_secs(10);
    while snapc_posix::target::handles(pid, nix::sys::signal::Signal::SIGUSR1) != Some(true) {
        assert!(Instant::now() < end, "pid {pid} never took SIGUSR1");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `--json` document's handle and per-process results.
fn json_results(o: &Output) -> (serde_json::Value, Vec<serde_json::Value>) {
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let procs = doc["processes"].as_array().expect("processes").clone();
    (doc["handle"].clone(), procs)
}

#[test]
fn eight_processes_at_once() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pipes, store) = (dirs.0.path(), dirs.1.path());
    let procs: Vec<Proc> = (0..8).map(|_| counter_in(pipes, store, &[])).collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    for round in 1..=2u32 {
        let mut args = pid_args(&pids);
        args.push("--json".into());
        let o = snapc_checkpoint(pipes, store, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (handle, results) = json_results(&o);
        assert_eq!(results.len(), 8);
        assert_eq!(handle, round);
        for (r, p) in results.iter().zip(&procs) {
            assert_eq!(r["pid"], p.pid);
            assert_eq!(r["state"], "CONTINUE");
            assert_eq!(
                r["n"],
                round - 1,
                "the counter comes from the names the process made"
            );
            assert!(p.snapshot(round).join("state").exists());
            p.line(&format!("checkpoint n={}", round - 1));
            assert!(p.alive());
        }
        procs[0].expect_pipe_dir(&[]);
    }
}

#[test]
fn term_ends_the_processes() {
    let mut p = counter(&[]);
    let mut args = pid_args(&[p.pid]);
    args.push("--term".into());
    let o = snapc_checkpoint(&p.pipes, &p.store, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains(": TERM in"));
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn stop_leaves_the_process_stopped_until_continued() {
    let p = counter(&[]);
    let mut args = pid_args(&[p.pid]);
    args.push("--stop".into());
    let o = snapc_checkpoint(&p.pipes, &p.store, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap();
    let state = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .trim_start()
        .chars()
        .next()
        .unwrap();
    assert!(state == 'T' || state == 't', "state {state}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.pid as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    p.line("checkpoint n=0 handle=1 state=CONTINUE");
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
}

#[test]
fn missing_and_silent_processes_fail_without_holding_up_the_others() {
    let p = counter(&[]);
    // A process that takes the signal but never makes FIFOs, one that
    // ignores it, and a pid nobody has.
    let mut silent = Command::new("bash")
        .args(["-c", "trap ':' USR1; sleep 30"])
        .spawn()
        .unwrap();
    let mut deaf = Command::new("bash")
        .args(["-c", "trap '' USR1; sleep 30"])
        .spawn()
        .unwrap();
    wait_for_handler(silent.id());
    let gone = 999_999;
    let mut args = pid_args(&[p.pid, silent.id(), deaf.id(), gone]);
    args.extend(["--timeout".into(), "0.5".into(), "--json".into()]);
    let started = Instant::now();
    let o = snapc_checkpoint(&p.pipes, &p.store, &args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the deadline"
    );
    let (_, results) = json_results(&o);
    assert_eq!(results[0]["state"], "CONTINUE");
    // The deadline names the step, the pipe directory and the process's state.
    let error = results[1]["error"].as_str().unwrap();
    assert_eq!(results[1]["completed"], false);
    assert!(
        error.contains("deadline passed waiting for the fifos"),
        "{error}"
    );
    assert!(error.contains(&p.pipes.display().to_string()), "{error}");
    assert!(
        error.contains(&format!("pid {} is running", silent.id()))
            && error.contains("handles SIGUSR1"),
        "{error}"
    );
    let error = results[2]["error"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "pid {} does not handle SIGUSR1: not a snapc process",
            deaf.id()
        )
    );
    assert_eq!(results[3]["completed"], false);
    for c in [&mut silent, &mut deaf] {
        assert!(c.try_wait().unwrap().is_none(), "left alive");
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(p.alive());
}

#[test]
fn prep_only_quiesces_holds_and_lets_go() {
    let p = counter(&[]);
    let mut args = pid_args(&[p.pid]);
    args.extend([
        "--prep-only".into(),
        "--hold".into(),
        "0.2".into(),
        "--json".into(),
    ]);
    let o = snapc_checkpoint(&p.pipes, &p.store, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let r = &json_results(&o).1[0];
    assert_eq!(r["state"], "RUNNING");
    assert_eq!(r["snapshot"], serde_json::Value::Null);
    p.line("quiesced n=0 handle=1");
    // Released by the coordinator going away: the process recovers and goes on.
    p.line("checkpoint n=0");
    p.expect_pipe_dir(&[]);
    assert!(p.alive());
    let o = snapc_checkpoint(&p.pipes, &p.store, &pid_args(&[p.pid]));
    assert!(
        o.status.success(),
        "the next checkpoint works: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    p.line("checkpoint n=1 handle=2 state=CONTINUE");
}

#[test]
fn back_to_back_checkpoints_do_not_lose_the_signal() {
    // The next command's signal can land while a process still tears down
    // the previous handshake (after its release); it must not be lost.
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pipes, store) = (dirs.0.path(), dirs.1.path());
    let procs: Vec<Proc> = (0..2).map(|_| counter_in(pipes, store, &[])).collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    for round in 1..=10u32 {
        let mut args = pid_args(&pids);
        args.extend(["--timeout".into(), "3".into()]);
        let o = snapc_checkpoint(pipes, store, &args);
        assert!(
            o.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    for p in &procs {
        p.line("checkpoint n=9 handle=10 state=CONTINUE");
    }
}
