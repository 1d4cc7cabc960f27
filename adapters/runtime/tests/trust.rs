//! Trust on a shared node: what another local user (hostile or careless), a
//! crashed or stopped application, a stalled reader or a short fd limit can
//! do to a job, tried with real processes. Each test is the regression test
//! of one defect; tests that need a second local user create it when run as
//! root and say that they skip otherwise (`SNAPC_REQUIRE_ROOT=1` makes that
//! a failure).

mod common;

use common::jobs::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The second local user the tests act as.
const OTHER: &str = "snapc-test-other";

/// Prints why a test does not run, or fails when root is required.
fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("SNAPC_REQUIRE_ROOT").is_none_or(|v| v != "1"),
        "{test}: {why} (SNAPC_REQUIRE_ROOT=1)"
    );
    eprintln!("SKIP {test}: {why}");
}

/// The second local user's uid: created (once, without a home) when run as
/// root; `None` after a printed skip otherwise.
fn other_user(test: &str) -> Option<u32> {
    static CREATED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if !nix::unistd::Uid::effective().is_root() {
        skip(test, "needs root to create a second local user");
        return None;
    }
    let _once = CREATED.lock().unwrap_or_else(|p| p.into_inner());
    if nix::unistd::User::from_name(OTHER).ok().flatten().is_none() {
        let out = Command::new("useradd")
            .args(["-M", "-r", "-s", "/usr/sbin/nologin", OTHER])
            .output()
            .expect("run useradd");
        // 9: created meanwhile by another run.
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let user = nix::unistd::User::from_name(OTHER).unwrap().unwrap();
    Some(user.uid.as_raw())
}

/// Runs `args` as the second user.
fn as_other(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", OTHER, "--"])
        .args(args)
        .output()
        .expect("run runuser")
}

/// A directory anyone may create entries in (as `/tmp` is), for the second
/// user's plants.
fn shared_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every directory under `dir` (and `dir`) is 0700 and every file 0600.
fn assert_private_tree(dir: &Path) {
    let m = std::fs::symlink_metadata(dir).unwrap();
    assert!(m.is_dir(), "{}", dir.display());
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            assert_private_tree(&e.path());
        } else {
            assert!(t.is_file(), "{}", e.path().display());
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }
}

/// A short counter run (about `secs` seconds).
fn counter_args(secs: f64) -> Vec<String> {
    vec![
        "--steps".into(),
        steps_for(secs),
        "--pace-us".into(),
        PACE.into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// 1 (a): a store another user created first (as they may in /tmp) is
/// refused, naming it, its owner and mode; nothing runs and nothing is
/// written into it. The same for a standalone process's `SNAPC_STORE`.
#[test]
fn a_store_another_user_made_is_refused() {
    let test = "a_store_another_user_made_is_refused";
    let Some(_) = other_user(test) else { return };
    let shared = shared_dir();
    let me = nix::unistd::Uid::effective();
    let theirs = shared.path().join(format!("snapc-store-{me}"));
    let out = as_other(&["mkdir", "-m", "0777", theirs.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let env = Env::new();
    // The default store (snapc-store-<uid> in the temporary directory).
    let mut c = env.snapc();
    let counter = counter_args(0.5);
    c.args(["run", "-n", "1", "--job", "victim", "--"])
        .arg(common::counter_exe())
        .args(&counter)
        .env("TMPDIR", shared.path());
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(theirs.to_str().unwrap()) && err.contains(OTHER) && err.contains("0777"),
        "the refusal names the path, owner and mode: {err}"
    );
    assert!(
        !err.contains("ranks started"),
        "nothing was launched: {err}"
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    env.assert_clean();
    // A standalone process with SNAPC_STORE there writes nothing there.
    let pipes = tempfile::tempdir().unwrap();
    let p = common::counter_in(pipes.path(), &theirs, &[]);
    let pid = p.pid.to_string();
    let out = Command::new(SNAPC)
        .args(["checkpoint", "--pid", &pid, "--timeout", "5"])
        .env("SNAPC_PIPE_DIR", pipes.path())
        .env("SNAPC_STORE", &theirs)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(p.alive());
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
}

/// Writes a complete one-rank snapshot of the counter by hand:
/// `<store>/<job>/0/` with its metadata and `rank-0/state`.
fn hand_made_snapshot(store: &Path, job: &str) -> std::path::PathBuf {
    let dir = store.join(job).join("0");
    std::fs::create_dir_all(dir.join("rank-0")).unwrap();
    for d in [
        store.to_path_buf(),
        store.join(job),
        dir.clone(),
        dir.join("rank-0"),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(dir.join("rank-0/state"), b"0 0\n").unwrap();
    let meta = serde_json::json!({
        "job": job, "seq": 0, "nranks": 1, "reference": "r",
        "argv": [common::counter_exe(), "--steps", "4000"],
    });
    std::fs::write(dir.join("snapshot.json"), meta.to_string()).unwrap();
    for f in ["snapshot.json", "rank-0/state"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

/// 1 (a): `snapc restart` checks the whole snapshot (store, job, snapshot,
/// everything in it) before it runs the command line its metadata names.
#[test]
fn restart_refuses_a_snapshot_others_could_have_changed() {
    let env = Env::new();
    let store = env.store.path().join("s");
    let dir = hand_made_snapshot(&store, "r");
    let restart = |what: &str| {
        let (code, _, text) = env.cmd(&["restart", dir.to_str().unwrap()]);
        assert_eq!(code, 1, "{what}: {text}");
        assert!(text.contains("refusing to use it"), "{what}: {text}");
        assert!(!text.contains("ranks started"), "{what}: {text}");
        text
    };
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    set(&store.join("r"), 0o777).unwrap();
    restart("a job directory others may write");
    set(&store.join("r"), 0o700).unwrap();
    set(&dir.join("rank-0/state"), 0o666).unwrap();
    restart("a state file others may write");
    set(&dir.join("rank-0/state"), 0o600).unwrap();
    std::fs::rename(dir.join("snapshot.json"), store.join("meta")).unwrap();
    std::os::unix::fs::symlink(store.join("meta"), dir.join("snapshot.json")).unwrap();
    let text = restart("metadata behind a symlink");
    assert!(text.contains("symlink"), "{text}");
    std::fs::remove_file(dir.join("snapshot.json")).unwrap();
    std::fs::rename(store.join("meta"), dir.join("snapshot.json")).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        nix::unistd::chown(&dir.join("snapshot.json"), nobody, None).unwrap();
        let text = restart("metadata of another user");
        assert!(text.contains("uid 65534"), "{text}");
        nix::unistd::chown(
            &dir.join("snapshot.json"),
            Some(nix::unistd::Uid::effective()),
            None,
        )
        .unwrap();
    } else {
        skip(
            "restart_refuses_a_snapshot_others_could_have_changed (other owner)",
            "needs root to give a file to another user",
        );
    }
    // Intact, it runs.
    let (code, _, text) = env.cmd(&["restart", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("result steps=4000"), "{text}");
    env.assert_clean();
}

/// 1 (b): names planted in the store are removed or refused, never
/// followed: a symlink where the daemon probes the store leaves its target
/// alone.
#[test]
fn planted_symlinks_in_the_store_are_never_followed() {
    let env = Env::new();
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("precious");
    std::fs::write(&victim, b"mine").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let counter = counter_args(2.0);
    let job = env.run("plant", 1, &[], &strs(&counter), &[]);
    env.ready(&job);
    let staging = std::fs::read_dir(env.job_root("plant"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        .unwrap()
        .path();
    // The first checkpoint's handle is 1.
    std::fs::create_dir_all(staging.join("1/rank-0")).unwrap();
    for name in [
        "1/.probe",
        "1/rank-0/state",
        "1/rank-0/snapc-local.attrs",
        "1.global",
    ] {
        std::os::unix::fs::symlink(&victim, staging.join(name)).unwrap();
    }
    let (code, fin) = env.checkpoint("plant", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"mine");
    assert_eq!(mode(&victim), 0o600);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// 2: snapshots are private whatever the umask (here 000): directories
/// 0700 and files 0600, under the daemon and standalone.
#[test]
fn snapshots_are_private_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let store = env.store.path().join("new-store");
    let counter = counter_args(2.0);
    let mut args = env.run_args("um", 2, &[], &strs(&counter));
    args[6] = store.display().to_string();
    let mut c = env.snapc();
    c.args(&args);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let job = Env::spawn_cmd("um", c);
    env.ready(&job);
    let (code, fin) = env.checkpoint("um", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    assert_private_tree(&store);
    assert!(store.join("um/0/rank-1/state").is_file());
    // Standalone: the process runs with umask 000 too.
    let pipes = tempfile::tempdir().unwrap();
    let standalone = env.store.path().join("standalone");
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let p = common::counter_in(pipes.path(), &standalone, &[]);
    nix::sys::stat::umask(old);
    let out = Command::new(SNAPC)
        .args(["checkpoint", "--pid", &p.pid.to_string(), "--handle", "1"])
        .env("SNAPC_PIPE_DIR", pipes.path())
        .env("SNAPC_STORE", &standalone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_private_tree(&standalone);
    assert!(p.snapshot(1).join("state").is_file());
}

/// 3: a client that cannot connect for want of file descriptors leaves the
/// job's files alone: only a free daemon lock makes them stale.
#[test]
fn a_client_short_of_fds_removes_nothing() {
    // Every socket() of the client fails with EMFILE (strace injects it).
    let strace = ["-f", "-qq", "-o", "/dev/null", "-e", "trace=socket"];
    let probe = Command::new("strace")
        .args(strace)
        .args(["-e", "inject=socket:error=EMFILE", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        let why = "needs strace (with ptrace allowed) to inject EMFILE";
        assert!(
            std::env::var_os("SNAPC_REQUIRE_STRACE").is_none_or(|v| v != "1"),
            "{why} (SNAPC_REQUIRE_STRACE=1)"
        );
        eprintln!("SKIP a_client_short_of_fds_removes_nothing: {why}");
        return;
    }
    let env = Env::new();
    let counter = counter_args(3.0);
    let job = env.run("fds", 1, &[], &strs(&counter), &[]);
    env.ready(&job);
    let before: Vec<_> = std::fs::read_dir(env.run.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    for args in [["status", "--job", "fds"], ["checkpoint", "--job", "fds"]] {
        let out = Command::new("strace")
            .args(strace)
            .args(["-e", "inject=socket:error=EMFILE", SNAPC])
            .args(args)
            .env("SNAPC_RUN_DIR", env.run.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("Too many open files"),
            "EMFILE is named: {err}"
        );
    }
    let after: Vec<_> = std::fs::read_dir(env.run.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
    let (code, fin) = env.checkpoint("fds", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "the job is still reachable: {fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// 10: a snapshot numbered u32::MAX in the store does not stop later
/// checkpoints (sequence numbers are u64).
#[test]
fn sequence_numbers_do_not_run_out_at_u32_max() {
    let env = Env::new();
    let root = env.job_root("big");
    let last = root.join(u32::MAX.to_string());
    std::fs::create_dir_all(last.join("rank-0")).unwrap();
    std::fs::write(last.join("snapshot.json"), b"{}").unwrap();
    let counter = counter_args(2.0);
    let job = env.run("big", 1, &[], &strs(&counter), &[]);
    env.ready(&job);
    let (code, fin) = env.checkpoint("big", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let next = u64::from(u32::MAX) + 1;
    assert_eq!(fin["seq"], next, "{fin}");
    assert!(root.join(next.to_string()).join("snapshot.json").is_file());
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// 13: job names and restart paths are checked before they are used as
/// paths: `--job ../x` touches nothing outside the run directory, and a
/// snapshot path with `..` is refused.
#[test]
fn job_names_and_snapshot_paths_are_checked() {
    let top = tempfile::tempdir().unwrap();
    let run = top.path().join("run");
    let planted = top.path().join("x.ctl");
    std::fs::write(&planted, b"not ours to remove").unwrap();
    for args in [
        vec!["status", "--job", "../x"],
        vec!["checkpoint", "--job", "../x"],
        vec!["quiesce", "start", "--job", "../x"],
    ] {
        let out = Command::new(SNAPC)
            .args(&args)
            .env("SNAPC_RUN_DIR", &run)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains("job name \"../x\""), "{args:?}: {err}");
    }
    assert!(planted.exists());
    let env = Env::new();
    let dir = hand_made_snapshot(&env.store.path().join("s"), "p");
    let sneaky = dir.join("rank-0").join("..");
    let (code, _, text) = env.cmd(&["restart", sneaky.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("without '.' or '..'"), "{text}");
    assert!(!text.contains("ranks started"), "{text}");
}

/// 13: control requests are type-checked: a wrong type is an error, not a
/// default (`"term":"yes"` used to take a plain checkpoint).
#[test]
fn control_requests_with_wrong_types_are_refused() {
    let env = Env::new();
    let counter = counter_args(2.0);
    let job = env.run("types", 1, &[], &strs(&counter), &[]);
    env.ready(&job);
    for line in [
        r#"{"op":"checkpoint","term":"yes","wait":true}"#,
        r#"{"op":"checkpoint","wait":1}"#,
        r#"{"op":["checkpoint"]}"#,
        r#"{"op":"checkpoint","terminate":true}"#,
    ] {
        let mut s = UnixStream::connect(env.run.path().join("types.ctl")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        writeln!(s, "{line}").unwrap();
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).unwrap();
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["event"], "error", "{line}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("malformed request"),
            "{line}: {v}"
        );
    }
    let status = env.status("types").unwrap();
    assert!(status["last_result"].is_null(), "nothing ran: {status}");
    assert!(env.snapshots("types").is_empty());
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// The daemon's pid from its status.
fn daemon_pid(env: &Env, job: &str) -> i32 {
    env.status(job).unwrap()["daemon_pid"].as_i64().unwrap() as i32
}

/// Open descriptors of process `pid`.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The descriptor limit under which process `pid` can open `room` more
/// descriptors (a new descriptor takes the lowest free number, and the
/// limit bounds numbers, not how many are open).
fn limit_for_room(pid: i32, room: usize) -> usize {
    let open: std::collections::BTreeSet<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).filter(|n| !open.contains(n)).nth(room).unwrap()
}

/// 4: control connections that never finish a line, many more than the
/// daemon's descriptors, neither exhaust it nor stop it: `status` and
/// checkpoints go on, and the idle connections are dropped at their
/// deadline.
#[test]
fn idle_control_connections_do_not_wedge_the_daemon() {
    let env = Env::new();
    let counter = counter_args(10.0);
    let job = env.run("flood", 1, &[], &strs(&counter), &[]);
    env.ready(&job);
    let daemon = daemon_pid(&env, "flood");
    // Little room left: what it has open now, and a dozen more.
    let limit = open_fds(daemon) + 12;
    let out = Command::new("prlimit")
        .args([
            "--pid",
            &daemon.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let ctl = env.run.path().join("flood.ctl");
    let idle: Vec<UnixStream> = (0..400)
        .filter_map(|_| UnixStream::connect(&ctl).ok())
        .collect();
    assert!(idle.len() > 300, "{} connected", idle.len());
    let (code, _, text) = env.cmd(&["status", "--job", "flood"]);
    assert_eq!(code, 0, "{text}");
    let (code, fin) = env.checkpoint("flood", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    assert!(open_fds(daemon) <= limit, "within its limit");
    // The ones still held are dropped once their line is overdue.
    std::thread::sleep(Duration::from_secs(6));
    let still_open = idle
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut b = [0u8; 1];
            matches!((&**s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(still_open, 0, "idle connections outlived their deadline");
    drop(idle);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// 5: the checkpoint signal sent to the whole process group (and the
/// other signals the daemon does not use) does not end the daemon.
#[test]
fn stray_signals_do_not_end_the_daemon() {
    use nix::sys::signal::Signal;
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let counter = counter_args(6.0);
    let args = env.run_args("sig", 2, &["--timeout", "3"], &strs(&counter));
    let mut c = env.snapc();
    c.args(&args).process_group(0);
    let job = Env::spawn_cmd("sig", c);
    env.ready(&job);
    let daemon = daemon_pid(&env, "sig");
    let group = nix::unistd::Pid::from_raw(-daemon);
    nix::sys::signal::kill(group, Signal::SIGUSR1).unwrap();
    for sig in [
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGIO,
        Signal::SIGPROF,
    ] {
        kill(daemon, sig);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(daemon), "the daemon died of a stray signal");
    // The ranks took the stray signal as a checkpoint request nobody
    // answered; once that times out, checkpoints work.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, fin) = env.checkpoint("sig", &["--wait", "--timeout", "120"]);
        if code == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{fin}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// 5: a rank whose daemon link closes ends itself (here the "daemon" is
/// this test, and the rank is not its child process's child).
#[test]
fn a_rank_whose_daemon_link_closes_ends_itself() {
    use std::os::unix::process::ExitStatusExt;
    let t = tempfile::tempdir().unwrap();
    let sock = t.path().join("d.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let pipes = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::counter_exe())
        .args(["--run-for", "120"])
        .env("SNAPC_DAEMON_SOCKET", &sock)
        .env("SNAPC_PIPE_DIR", pipes.path())
        .env("SNAPC_STORE", store.path())
        .env_remove("SNAPC_SNAPSHOT_ROOT")
        .env_remove("SNAPC_RESTART_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (link, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "runs while linked");
    drop(link);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the rank outlived its daemon link");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

/// 6: `--timeout` and `--checkpoint-timeout` bound every wait of a
/// checkpoint: a rank hung in its checkpoint (after the go-ahead) fails it
/// at the checkpoint timeout, a stopped rank
/// fails it at once (whatever the timeout), and the other ranks are
/// released and go on.
#[test]
fn a_hung_or_stopped_rank_fails_the_checkpoint_within_bounds() {
    use nix::sys::signal::Signal;
    let env = Env::new();
    let counter = counter_args(8.0);
    let job = env.run(
        "hung",
        2,
        &["--timeout", "2", "--checkpoint-timeout", "2"],
        &strs(&counter),
        &[("COUNTER_SLOW", "1:60000")],
    );
    env.ready(&job);
    let (code, fin) = env.checkpoint("hung", &["--wait", "--timeout", "120"]);
    assert_ne!(code, 0, "{fin}");
    let err = fin["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("rank 1") && err.contains("final state"),
        "{fin}"
    );
    let status = env.status("hung").unwrap();
    assert!(status["in_progress"].is_null(), "{status}");
    assert!(env.snapshots("hung").is_empty());
    let _ = kill_job(job);
    // A rank stopped after the go-ahead (in its checkpoint hook), with a
    // timeout far beyond the test's patience.
    let counter = counter_args(8.0);
    let job = env.run(
        "stopped",
        2,
        &["--timeout", "600", "--checkpoint-timeout", "600"],
        &strs(&counter),
        &[("COUNTER_SLOW", "1:2000")],
    );
    let status = env.ready(&job);
    let rank1 = pid_of(&status, 1);
    let waiter = env.spawn(
        "stopped-waiter",
        &["checkpoint", "--job", "stopped", "--json"],
        &[],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.status("stopped").unwrap()["in_progress"]["done"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(rank1, Signal::SIGSTOP);
    let (code, out) = waiter.finish(Duration::from_secs(30));
    kill(rank1, Signal::SIGCONT);
    let fin: Value = serde_json::from_str(out.last().unwrap()).unwrap();
    assert_ne!(code, 0, "{fin}");
    let err = fin["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("rank 1") && err.contains(&format!("pid {rank1} is stopped")),
        "{fin}"
    );
    let (code, fin) = env.checkpoint("stopped", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "once it runs again: {fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// Ends a job's daemon and ranks (SIGTERM to the daemon) and waits for it.
fn kill_job(job: Job) -> i32 {
    kill(job.child.id() as i32, nix::sys::signal::Signal::SIGTERM);
    job.finish(Duration::from_secs(60)).0
}

/// 6: `snapc abort` ends a checkpoint in progress: its waiter hears it
/// failed, every rank is let go at once, nothing is published, and the
/// job is checkpointable again.
#[test]
fn abort_ends_a_checkpoint_in_progress() {
    let env = Env::new();
    let counter = counter_args(8.0);
    let job = env.run(
        "ab",
        2,
        &["--timeout", "600", "--checkpoint-timeout", "600"],
        &strs(&counter),
        &[("COUNTER_SLOW", "1:3000")],
    );
    env.ready(&job);
    let waiter = env.spawn(
        "ab-waiter",
        &["checkpoint", "--job", "ab", "--wait", "--json"],
        &[],
    );
    // Wait until rank 0 is done and rank 1 sits in its checkpoint hook.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env.status("ab").unwrap()["in_progress"]["done"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, events, text) = env.cmd(&["abort", "--job", "ab", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(events[0]["ok"], true, "{text}");
    assert_eq!(events[0]["op"], "checkpoint", "{text}");
    let (code, out) = waiter.finish(Duration::from_secs(30));
    assert_ne!(code, 0, "{out:?}");
    let fin: Value = serde_json::from_str(out.last().unwrap()).unwrap();
    assert_eq!(fin["ok"], false, "{fin}");
    assert!(fin["error"].as_str().unwrap().contains("aborted"), "{fin}");
    let status = env.status("ab").unwrap();
    assert!(status["in_progress"].is_null(), "{status}");
    assert!(env.snapshots("ab").is_empty(), "nothing published");
    let staging = std::fs::read_dir(env.job_root("ab"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_dir(&staging).unwrap().count(),
        0,
        "staging emptied"
    );
    let (code, _, text) = env.cmd(&["abort", "--job", "ab"]);
    assert_ne!(code, 0, "nothing left to abort: {text}");
    assert!(text.contains("nothing to abort"), "{text}");
    let (code, fin) = env.checkpoint("ab", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    env.assert_clean();
}

/// The arguments of `snapc run -n N --job NAME --store STORE [extra] --
/// sh -c SCRIPT ARGS...`.
fn run_sh(
    env: &Env,
    job: &str,
    n: u32,
    extra: &[&str],
    script: &str,
    args: &[&str],
) -> Vec<String> {
    let program: Vec<&str> = ["sh", "-c", script]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    env.run_program_args(job, n, extra, &program)
}

/// 7: a reader that stalls (`snapc run ... | sleep 600`) costs dropped,
/// counted and reported output, never coordination.
#[test]
fn a_stalled_output_reader_costs_output_not_coordination() {
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    let steps = steps_for(15.0);
    // Each rank floods its stdout (50 MB) while it computes and checkpoints.
    let args = run_sh(
        &env,
        "stall",
        2,
        &[],
        "yes 'a line of rank output' | head -c 50000000 & exec \"$0\" \"$@\"",
        &[&exe, "--steps", &steps, "--pace-us", PACE],
    );
    let mut c = env.snapc();
    c.args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Its stdout is never read; its log is.
    let _stalled = child.stdout.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&log);
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env
        .status("stall")
        .is_none_or(|s| s["checkpointable"] != true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..2 {
        let (code, fin) = env.checkpoint("stall", &["--wait", "--timeout", "120"]);
        assert_eq!(code, 0, "{fin}");
    }
    // The flood outruns the unread pipe sooner or later: output is dropped
    // (counted) while the job and its checkpoints go on.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = env.status("stall").unwrap();
        if status["output_dropped_bytes"]["stdout"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, fin) = env.checkpoint("stall", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(std::time::Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    wait_log(&log, Duration::from_secs(5), |l| {
        l.contains("output dropped because its reader lagged")
    });
    env.assert_clean();
}

/// 9: output without newlines is printed in lines of at most 64 KiB
/// (bounded memory, each byte scanned once), and none of it is lost.
#[test]
fn output_without_newlines_is_split_at_a_cap() {
    let env = Env::new();
    let total = 20_000_000usize;
    let script = format!("head -c {total} /dev/zero | tr '\\0' x");
    let args = run_sh(&env, "nl", 1, &[], &script, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = env.spawn("nl", &args, &[]);
    let (code, out) = job.finish(Duration::from_secs(120));
    assert_eq!(code, 0);
    let mut seen = 0;
    for l in &out {
        let body = l
            .strip_prefix("[0] ")
            .unwrap_or_else(|| panic!("{}", &l[..40.min(l.len())]));
        assert!(body.len() <= 64 * 1024, "a line of {} bytes", body.len());
        assert!(body.bytes().all(|b| b == b'x'));
        seen += body.len();
    }
    assert_eq!(seen, total);
    env.assert_clean();
}

/// 8: a job that cannot fit in the file limit is refused, naming the
/// limit; a low soft limit is raised to the hard one (the ranks keep
/// theirs); EMFILE met during a checkpoint is named in its error.
#[test]
fn file_descriptor_limits_are_raised_checked_and_named() {
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    let snapc_in = |limit: &str, args: &[String]| {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!("ulimit {limit} && exec \"$0\" \"$@\""),
            SNAPC,
        ])
        .args(args)
        .env("SNAPC_RUN_DIR", env.run.path())
        .env_remove("SNAPC_STORE");
        c
    };
    let counter = counter_args(3.0);
    let args = env.run_args("fd20", 20, &[], &strs(&counter));
    let out = snapc_in("-n 64", &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("the limit is 64"), "{err}");
    assert!(!err.contains("ranks started"), "{err}");
    // Soft 64, hard higher: raised for the daemon, 64 again for the ranks.
    let args = env.run_args("fd12", 12, &[], &strs(&counter));
    let job = Env::spawn_cmd("fd12", snapc_in("-Sn 64", &args));
    let status = env.ready(&job);
    let (code, fin) = env.checkpoint("fd12", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", pid_of(&status, 0))).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some("64"), "{line}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    // Out of descriptors during a checkpoint: the error says so. The job
    // runs long enough to outlast both checkpoints on a loaded machine.
    let counter = counter_args(15.0);
    let job = env.run("emfile", 2, &["--timeout", "2"], &strs(&counter), &[]);
    env.ready(&job);
    let daemon = daemon_pid(&env, "emfile");
    let prlimit = |n: usize| {
        let out = Command::new("prlimit")
            .args(["--pid", &daemon.to_string(), &format!("--nofile={n}:")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    // No room even for the control connection: turned away, saying why.
    prlimit(limit_for_room(daemon, 0));
    let (code, fin) = env.checkpoint("emfile", &["--wait", "--timeout", "120"]);
    assert_ne!(code, 0, "{fin}");
    assert!(
        fin.to_string()
            .contains("out of file descriptors (Too many open files"),
        "the refusal names EMFILE: {fin}"
    );
    // Room for the control connection, none for the checkpoint's work
    // (or, if the daemon holds one more descriptor than counted, the
    // connection is turned away as above: EMFILE is named either way).
    prlimit(limit_for_room(daemon, 1));
    let (code, fin) = env.checkpoint("emfile", &["--wait", "--timeout", "120"]);
    assert_ne!(code, 0, "{fin}");
    assert!(
        fin.to_string().contains("Too many open files"),
        "EMFILE is named: {fin}"
    );
    prlimit(4096);
    let (code, fin) = env.checkpoint("emfile", &["--wait", "--timeout", "120"]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    let _ = exe;
    env.assert_clean();
}

/// 12: durations too large for a deadline are refused before anything
/// happens (no panic, no socket left, no request sent).
#[test]
fn huge_durations_are_refused_up_front() {
    let env = Env::new();
    let exe = common::counter_exe().display().to_string();
    let (code, _, text) = env.cmd(&[
        "run",
        "-n",
        "1",
        "--interval",
        "1e19",
        "--job",
        "big",
        "--",
        &exe,
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--interval must be"), "{text}");
    assert_eq!(
        std::fs::read_dir(env.run.path()).unwrap().count(),
        0,
        "nothing bound"
    );
    let counter = counter_args(3.0);
    let job = env.run("dur", 1, &[], &strs(&counter), &[]);
    env.ready(&job);
    for args in [
        vec!["checkpoint", "--job", "dur", "--timeout", "1e19"],
        vec!["quiesce", "start", "--job", "dur", "--timeout", "1e19"],
        vec!["checkpoint", "--job", "dur", "--timeout", "inf"],
    ] {
        let (code, _, text) = env.cmd(&args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains("--timeout must be"), "{args:?}: {text}");
    }
    let status = env.status("dur").unwrap();
    assert!(
        status["last_result"].is_null() && !status["quiesced"].as_bool().unwrap(),
        "{status}"
    );
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    // A rank with SNAPC_TIMEOUT too large says so and starts nothing.
    let out = Command::new(&exe)
        .env("SNAPC_TIMEOUT", "1e19")
        .env_remove("SNAPC_DAEMON_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("SNAPC_TIMEOUT"));
    env.assert_clean();
}

/// 13: a peer cannot flood the daemon's log: a warning it can cause at
/// will is logged a few times per window, and the rest is counted.
#[test]
fn a_peer_cannot_flood_the_log() {
    let env = Env::new();
    let counter = counter_args(3.0);
    let job = env.run("noisy", 1, &[], &strs(&counter), &[]);
    let log = std::sync::Arc::clone(&job.err);
    env.ready(&job);
    let sock = env.run.path().join("noisy.sock");
    for _ in 0..300 {
        if let Ok(mut s) = UnixStream::connect(&sock) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        }
    }
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    let lines = log.lock().unwrap().clone();
    let refused = lines
        .iter()
        .filter(|l| l.contains("refused a connection from pid"))
        .count();
    assert!((1..=10).contains(&refused), "{refused} lines: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("more refused warnings were not logged")),
        "{lines:?}"
    );
    env.assert_clean();
}

/// The children of process `pid` (from /proc).
fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// The kill loop: 50 rounds of a small job taking interval checkpoints
/// (and pruning) all the time, its daemon or one of its ranks killed
/// (SIGKILL) at a random moment. After each round no rank survives its
/// daemon; after all of them every numbered snapshot is complete and
/// restarts, and nothing is left in the run, pipe or staging directories.
/// `SNAPC_KILL_LOOP_SEED` replays a run (its seed is printed).
#[test]
fn kill_loop_leaves_complete_snapshots_and_nothing_behind() {
    use nix::sys::signal::Signal;
    let seed: u64 = std::env::var("SNAPC_KILL_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill loop seed {seed} (SNAPC_KILL_LOOP_SEED={seed} replays it)");
    let mut x = seed;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let env = Env::new();
    let steps = steps_for(1.5);
    let counter = ["--steps", steps.as_str(), "--pace-us", PACE];
    let extra = ["--interval", "0.03", "--keep", "2", "--timeout", "2"];
    let (mut daemon_kills, mut rank_kills) = (0, 0);
    for round in 0..50 {
        let job = env.run("kl", 2, &extra, &counter, &[]);
        let daemon = job.child.id() as i32;
        std::thread::sleep(Duration::from_millis(20 + rand(230)));
        let ranks = children_of(daemon);
        let kill_daemon = ranks.is_empty() || rand(2) == 0;
        if kill_daemon {
            daemon_kills += 1;
            kill(daemon, Signal::SIGKILL);
        } else {
            rank_kills += 1;
            let victim = ranks[rand(ranks.len() as u64) as usize];
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL);
        }
        let (code, _) = job.finish(Duration::from_secs(60));
        assert!(
            !kill_daemon || code == 137,
            "round {round}: the daemon ended with {code}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ranks.iter().any(|p| alive(*p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round} (seed {seed}): a rank outlived its daemon"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    eprintln!("kill loop: {daemon_kills} daemons and {rank_kills} ranks killed");
    // The last daemon's files go with the next command that looks.
    let (code, _, text) = env.cmd(&["status"]);
    assert_eq!(code, 0, "{text}");
    let root = env.job_root("kl");
    let numbered: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| snapc_runtime::snapstore::seq_of(&e.file_name().to_string_lossy()).is_some())
        .map(|e| e.path())
        .collect();
    assert!(
        !numbered.is_empty(),
        "no snapshot in 50 rounds (seed {seed})"
    );
    for dir in &numbered {
        assert!(
            dir.join("snapshot.json").is_file(),
            "{} is numbered but incomplete (seed {seed})",
            dir.display()
        );
    }
    for dir in &numbered {
        let job = env.spawn("kl", &["restart", dir.to_str().unwrap()], &[]);
        let (code, out) = job.finish(Duration::from_secs(60));
        assert_eq!(code, 0, "restart {}: {out:?}", dir.display());
        assert_eq!(results(&out).len(), 2, "{out:?}");
    }
    env.assert_clean();
}
