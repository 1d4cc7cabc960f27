//! C and Fortran programs on libsnapc, built only from what
//! `adapters/c/install.sh` installs (snapc.h, snapc.f90, libsnapc.a,
//! libsnapc.so, snapc.pc through pkg-config) with the system's cc, c++ and
//! gfortran, then checkpointed and restarted by the `snapc` command, and
//! the C runtime example checkpointing the Rust `counter` over real FIFOs.
//!
//! Without a C compiler (or pkg-config, or gfortran for the Fortran test)
//! the tests say so and pass; with `SNAPC_REQUIRE_CC=1` they fail instead.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the tests run: the programs built from the installed prefix,
/// and the `snapc` command and Rust `counter` of this workspace.
struct Tools {
    /// counter (C), lc_runtime, contract, contract_cc (C++), counter_static.
    bin: PathBuf,
    /// The Fortran counter, when gfortran is there.
    fortran: Option<PathBuf>,
    snapc: PathBuf,
    rust_counter: PathBuf,
    _dir: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var("SNAPC_REQUIRE_CC").is_ok_and(|v| v == "1")
}

/// Straight to stderr: the harness captures `eprintln!` of passing tests.
fn skip(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
}

fn found(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether this test binary is a release build (the others are built alike).
fn release() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.file_name()? == "release"))
        .unwrap_or(false)
}

fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Option<Tools>> = OnceLock::new();
    TOOLS.get_or_init(build).as_ref()
}

fn build() -> Option<Tools> {
    for tool in [cc().as_str(), "pkg-config"] {
        if !found(tool) {
            assert!(
                !required(),
                "SNAPC_REQUIRE_CC=1 but `{tool}` was not found (apt-get install gcc gfortran pkg-config)"
            );
            skip(&format!(
                "the C programs on libsnapc (`{tool}` not found; apt-get install gcc gfortran pkg-config)"
            ));
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let release = release();

    // The `snapc` command and the Rust counter of this workspace.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "snapc-runtime",
        "--bin",
        "snapc",
        "--example",
        "counter",
    ]);
    if release {
        build.arg("--release");
    }
    run_ok(&mut build, "building snapc and the counter example");

    // The one documented install command.
    let mut install = Command::new("bash");
    install
        .arg(Path::new(ROOT).join("install.sh"))
        .arg("--prefix")
        .arg(&prefix);
    if !release {
        install.arg("--debug");
    }
    run_ok(&mut install, "adapters/c/install.sh");
    let pc = prefix.join("lib/pkgconfig");
    let pkg = |args: &[&str]| -> Vec<String> {
        run_ok(
            Command::new("pkg-config")
                .args(args)
                .arg("snapc")
                .env("PKG_CONFIG_PATH", &pc),
            "pkg-config",
        )
        .split_whitespace()
        .map(str::to_string)
        .collect()
    };
    let flags = pkg(&["--cflags", "--libs"]);
    let examples = Path::new(ROOT).join("examples");
    let tests = Path::new(ROOT).join("tests");
    let compile = |compiler: &str, extra: &[&str], source: &Path, out: &str| {
        run_ok(
            Command::new(compiler)
                .args(extra)
                .arg(source)
                .args(&flags)
                .arg("-o")
                .arg(bin.join(out)),
            &format!("{compiler} {}", source.display()),
        );
    };
    let strict = ["-std=c11", "-Wall", "-Wextra", "-Werror"];
    compile(&cc(), &strict, &examples.join("counter.c"), "counter");
    compile(&cc(), &strict, &examples.join("lc_runtime.c"), "lc_runtime");
    compile(&cc(), &strict, &tests.join("contract.c"), "contract");
    if found("c++") {
        let cxx = ["-x", "c++", "-Wall", "-Wextra", "-Werror"];
        compile("c++", &cxx, &tests.join("contract.c"), "contract_cc");
    }
    // The static library alone, with what it needs from the system.
    let libdir = pkg(&["--variable=libdir"]).join(" ");
    run_ok(
        Command::new(cc())
            .args(strict)
            .arg(examples.join("counter.c"))
            .args(pkg(&["--cflags"]))
            .arg(Path::new(&libdir).join("libsnapc.a"))
            .args(pkg(&["--variable=native_libs"]))
            .arg("-o")
            .arg(bin.join("counter_static")),
        "static link of counter.c",
    );
    let fortran = if found("gfortran") {
        let out = bin.join("counter_f");
        run_ok(
            Command::new("gfortran")
                .arg("-J")
                .arg(&bin)
                .arg(prefix.join("include/snapc.f90"))
                .arg(examples.join("counter.f90"))
                .args(pkg(&["--libs"]))
                .arg("-o")
                .arg(&out),
            "gfortran counter.f90",
        );
        Some(out)
    } else {
        assert!(
            !required(),
            "SNAPC_REQUIRE_CC=1 but gfortran was not found (apt-get install gfortran)"
        );
        skip("the Fortran example (gfortran not found; apt-get install gfortran)");
        None
    };
    let target =
        Path::new(ROOT)
            .join("../../target")
            .join(if release { "release" } else { "debug" });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join(if release { "release" } else { "debug" }))
        .unwrap_or(target);
    Some(Tools {
        bin,
        fortran,
        snapc: target.join("snapc"),
        rust_counter: target.join("examples/counter"),
        _dir: dir,
    })
}

/// A running program with its stdout collected line by line.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    out: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn");
        Self {
            lines: snapc_test_procs::lines(child.stdout.take().unwrap()),
            child,
            out: Vec::new(),
        }
    }

    /// Waits (at most a minute) for a line that satisfies `pred`.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.out.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "line not seen; output so far: {:?}",
                self.out
            );
            if let Ok(l) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                self.out.push(l);
            }
        }
    }

    fn pid(&mut self) -> i32 {
        let l = self.wait_line(|l| l.starts_with("pid="));
        l["pid=".len()..].parse().unwrap()
    }

    /// Waits (at most two minutes) for the exit; its code and all output.
    fn finish(mut self) -> (i32, Vec<String>) {
        let within = Duration::from_secs(120);
        let code = snapc_test_procs::finish(
            &mut self.child,
            &self.lines,
            &mut self.out,
            within,
            "the program",
        );
        (code, std::mem::take(&mut self.out))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private pipe directory and store.
struct Dirs {
    pipes: tempfile::TempDir,
    store: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Self {
            pipes: tempfile::tempdir().unwrap(),
            store: tempfile::tempdir().unwrap(),
        }
    }

    /// `program args` standalone, with these directories.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("SNAPC_PIPE_DIR", self.pipes.path())
            .env("SNAPC_STORE", self.store.path())
            .env("SNAPC_TIMEOUT", "10")
            .env_remove("SNAPC_DAEMON_SOCKET")
            .env_remove("SNAPC_RESTART_DIR")
            .env_remove("SNAPC_RANK");
        c
    }
}

fn result_line(out: &[String]) -> String {
    out.iter()
        .rev()
        .find(|l| l.contains("result steps="))
        .unwrap_or_else(|| panic!("no result line in {out:?}"))
        .clone()
}

const STEPS: &str = "2000000";

#[test]
fn the_documented_contract_compiles_as_c_and_cpp_and_works() {
    let Some(t) = tools() else { return };
    let mut programs = vec![t.bin.join("contract")];
    if t.bin.join("contract_cc").exists() {
        programs.push(t.bin.join("contract_cc"));
    } else {
        assert!(
            !required(),
            "SNAPC_REQUIRE_CC=1 but c++ was not found (apt-get install g++)"
        );
        skip("the header as C++ (c++ not found)");
    }
    for program in programs {
        let d = Dirs::new();
        let mut p = Proc::spawn(d.command(&program, &[]));
        let ready = p.wait_line(|l| l.starts_with("ready pid="));
        let pid = &ready["ready pid=".len()..];
        let out = run_ok(
            Command::new(&t.snapc)
                .args(["checkpoint", "--pid", pid, "--pipe-dir"])
                .arg(d.pipes.path())
                .env("SNAPC_STORE", d.store.path()),
            "snapc checkpoint --pid",
        );
        assert!(out.contains("CONTINUE"), "{out}");
        let (code, lines) = p.finish();
        assert_eq!(code, 0, "{} failed: {lines:?}", program.display());
        assert!(lines.iter().any(|l| l == "contract ok"), "{lines:?}");
    }
}

#[test]
fn c_counter_checkpointed_by_pid_restarts_to_the_uninterrupted_result() {
    let Some(t) = tools() else { return };
    let d = Dirs::new();
    let counter = t.bin.join("counter");
    // Uninterrupted: C, its static build, and the Rust counter agree.
    let (code, out) = Proc::spawn(d.command(&counter, &["--steps", STEPS])).finish();
    assert_eq!(code, 0);
    let expected = result_line(&out);
    let (_, out) =
        Proc::spawn(d.command(&t.bin.join("counter_static"), &["--steps", STEPS])).finish();
    assert_eq!(result_line(&out), expected, "static and shared builds");
    let (_, out) = Proc::spawn(d.command(&t.rust_counter, &["--steps", STEPS])).finish();
    assert_eq!(
        result_line(&out),
        expected,
        "the C counter and the Rust counter"
    );

    // Checkpointed by `snapc checkpoint --pid` while it runs, then killed.
    let mut p = Proc::spawn(d.command(&counter, &["--steps", STEPS, "--pace-us", "2000"]));
    let pid = p.pid();
    p.wait_line(|l| l.starts_with("start steps=0"));
    std::thread::sleep(Duration::from_millis(300));
    let out = run_ok(
        Command::new(&t.snapc)
            .args(["checkpoint", "--pid", &pid.to_string(), "--pipe-dir"])
            .arg(d.pipes.path())
            .env("SNAPC_STORE", d.store.path()),
        "snapc checkpoint --pid",
    );
    assert!(out.contains("CONTINUE"), "{out}");
    p.wait_line(|l| l.starts_with("checkpoint n=0 handle=1 state=CONTINUE"));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let (code, _) = p.finish();
    assert_eq!(code, 128 + 9);

    // Restarted from the snapshot: the uninterrupted result.
    let snapshot = d.store.path().join(format!("standalone/1/pid-{pid}"));
    assert!(snapshot.join("state").exists(), "{}", snapshot.display());
    let mut c = d.command(&counter, &["--steps", STEPS]);
    c.env("SNAPC_RESTART_DIR", &snapshot);
    let (code, out) = Proc::spawn(c).finish();
    assert_eq!(code, 0, "{out:?}");
    let start: u64 = out
        .iter()
        .find_map(|l| l.strip_prefix("start steps=")?.parse().ok())
        .unwrap();
    assert!(start > 0, "restarted from the saved steps: {out:?}");
    assert_eq!(result_line(&out), expected);
}

/// The C counter turns snapc's log on with `snapc_log_init(NULL)`: with
/// `SNAPC_LOG=debug` the application's side of a handshake is on its
/// standard error, stamped and named by module.
#[test]
fn a_c_program_turns_snapc_s_log_on_as_snapc_log_says() {
    let Some(t) = tools() else { return };
    let d = Dirs::new();
    let mut cmd = d.command(
        &t.bin.join("counter"),
        &["--steps", STEPS, "--pace-us", "2000"],
    );
    cmd.env("SNAPC_LOG", "debug")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let lines = snapc_test_procs::lines(child.stdout.take().unwrap());
    let errs = snapc_test_procs::lines(child.stderr.take().unwrap());
    let mut p = Proc {
        child,
        lines,
        out: Vec::new(),
    };
    let pid = p.pid();
    p.wait_line(|l| l.starts_with("start steps=0"));
    run_ok(
        Command::new(&t.snapc)
            .args(["checkpoint", "--pid", &pid.to_string(), "--pipe-dir"])
            .arg(d.pipes.path())
            .env("SNAPC_STORE", d.store.path()),
        "snapc checkpoint --pid",
    );
    p.wait_line(|l| l.starts_with("checkpoint n=0 handle=1 state=CONTINUE"));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let _ = p.finish();
    // The pipe closed with the process: every line is in.
    let log: Vec<String> = errs.iter().collect();
    assert!(
        log.iter()
            .any(|l| l.contains(" DEBUG snapc_core::app: app: checkpoint request, answering")),
        "{log:#?}"
    );
}

/// `snapc run` of `program` (2 ranks), one checkpoint, the job stopped,
/// `snapc restart`: each rank's result equals its uninterrupted one.
fn run_checkpoint_stop_restart(t: &Tools, program: &Path, steps: &str, job: &str) {
    let run_dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let snapc = |args: &[&str]| {
        let mut c = Command::new(&t.snapc);
        c.args(args)
            .env("SNAPC_RUN_DIR", run_dir.path())
            .env_remove("SNAPC_DAEMON_SOCKET")
            .env_remove("SNAPC_RESTART_DIR")
            .env_remove("SNAPC_STORE");
        c
    };
    let expected: Vec<String> = (0..2)
        .map(|rank| {
            let d = Dirs::new();
            let mut c = d.command(program, &["--steps", steps]);
            c.env("SNAPC_RANK", rank.to_string());
            let (code, out) = Proc::spawn(c).finish();
            assert_eq!(code, 0, "{out:?}");
            format!("[{rank}] {}", result_line(&out))
        })
        .collect();
    let store_arg = store.path().display().to_string();
    let program_arg = program.display().to_string();
    let mut job_proc = Proc::spawn(snapc(&[
        "run",
        "-n",
        "2",
        "--job",
        job,
        "--store",
        &store_arg,
        "--timeout",
        "20",
        "--",
        &program_arg,
        "--steps",
        steps,
        "--pace-us",
        "2000",
    ]));
    for rank in 0..2 {
        job_proc.wait_line(|l| l.starts_with(&format!("[{rank}] start steps=0")));
    }
    let out = run_ok(
        &mut snapc(&["checkpoint", "--job", job]),
        "snapc checkpoint --job",
    );
    assert!(out.contains("checkpoint 0 complete"), "{out}");
    for rank in 0..2 {
        job_proc.wait_line(|l| l.starts_with(&format!("[{rank}] checkpoint n=0 handle=")));
    }
    let _ = run_ok(&mut snapc(&["stop", "--job", job]), "snapc stop");
    let (code, out) = job_proc.finish();
    assert_ne!(code, 0, "stopped before its end: {out:?}");
    assert!(!out.iter().any(|l| l.contains("result steps=")), "{out:?}");

    let job_store = store.path().join(job).display().to_string();
    let (code, out) = Proc::spawn(snapc(&["restart", &job_store, "--timeout", "20"])).finish();
    assert_eq!(code, 0, "{out:?}");
    for rank in 0..2 {
        let start = out
            .iter()
            .find_map(|l| {
                l.strip_prefix(&format!("[{rank}] start steps="))?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no start line for rank {rank}: {out:?}"));
        assert!(
            start > 0,
            "rank {rank} restarted from its snapshot: {out:?}"
        );
    }
    let got = snapc_test_procs::sorted(&out, |l| l.contains("result steps="));
    assert_eq!(got, expected);
}

#[test]
fn c_counter_under_snapc_run_restarts_to_the_uninterrupted_result() {
    let Some(t) = tools() else { return };
    run_checkpoint_stop_restart(t, &t.bin.join("counter"), STEPS, "c-counter");
}

#[test]
fn fortran_counter_under_snapc_run_restarts_to_the_uninterrupted_result() {
    let Some(t) = tools() else { return };
    let Some(fortran) = &t.fortran else { return };
    run_checkpoint_stop_restart(t, fortran, STEPS, "f-counter");
}

/// Rust counters a C runtime checkpoints; stdout lines collected.
fn rust_counter(t: &Tools, d: &Dirs, env: &[(&str, &str)]) -> (Proc, i32) {
    let mut c = d.command(&t.rust_counter, &["--run-for", "120"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut p = Proc::spawn(c);
    let pid = p.pid();
    p.wait_line(|l| l.starts_with("start steps="));
    (p, pid)
}

#[test]
fn c_runtime_checkpoints_rust_counters_over_fifos() {
    let Some(t) = tools() else { return };
    let d = Dirs::new();
    let (mut a, pa) = rust_counter(t, &d, &[]);
    let (mut b, pb) = rust_counter(t, &d, &[]);
    let mut rt = Command::new(t.bin.join("lc_runtime"));
    rt.arg("--pipe-dir").arg(d.pipes.path()).args([
        "--checkpoints",
        "2",
        &pa.to_string(),
        &pb.to_string(),
    ]);
    let (code, out) = Proc::spawn(rt).finish();
    assert_eq!(code, 0, "{out:?}");
    assert!(
        out.iter()
            .any(|l| l
                .starts_with("checkpoint ok seq=0 handle=1 reference=snapc_global_snapshot_1_0")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("checkpoint ok seq=1 handle=2")),
        "{out:?}"
    );
    for (p, pid) in [(&mut a, pa), (&mut b, pb)] {
        p.wait_line(|l| l == "checkpoint n=0 handle=1 state=CONTINUE");
        p.wait_line(|l| l == "checkpoint n=1 handle=2 state=CONTINUE");
        for handle in [1, 2] {
            let state = d
                .store
                .path()
                .join(format!("standalone/{handle}/pid-{pid}/state"));
            assert!(state.exists(), "{}", state.display());
        }
    }
    // Every FIFO was removed.
    let left: Vec<_> = std::fs::read_dir(d.pipes.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn c_runtime_goes_on_when_a_counter_vanishes_mid_handshake() {
    let Some(t) = tools() else { return };
    let d = Dirs::new();
    let (mut survivor, ps) = rust_counter(t, &d, &[]);
    // The victim's checkpoint hook takes 5 s: it is killed inside it.
    let (victim, pv) = rust_counter(t, &d, &[("COUNTER_CHECKPOINT_MS", "5000")]);
    let mut rt = Command::new(t.bin.join("lc_runtime"));
    rt.arg("--pipe-dir")
        .arg(d.pipes.path())
        .args(["--timeout-ms", "20000", "--checkpoints", "2"])
        .args([ps.to_string(), pv.to_string()]);
    let mut rt = Proc::spawn(rt);
    // The go-ahead (the victim's second frame) went out: it is in its hook.
    let go_ahead = format!("wrote pid={pv} len=4");
    rt.wait_line(|l| l == go_ahead);
    drop(victim); // SIGKILL, reaped
    let (code, out) = rt.finish();
    assert_eq!(code, 1, "the first checkpoint failed: {out:?}");
    let gone = format!("report pid={pv} failed: process gone during the final state");
    assert!(out.contains(&gone), "{out:?}");
    assert!(
        out.iter().any(|l| l.starts_with("checkpoint failed seq=0")),
        "{out:?}"
    );
    assert!(
        out.iter().any(|l| *l == format!("removed pid={pv}")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("checkpoint ok seq=1 handle=2")),
        "{out:?}"
    );
    // The survivor was released by the failed checkpoint and took the next.
    survivor.wait_line(|l| l.starts_with("checkpoint n=1 handle=2 state=CONTINUE"));
    assert!(
        survivor.child.try_wait().unwrap().is_none(),
        "the survivor runs on"
    );
}
