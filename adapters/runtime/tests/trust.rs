//! Trust on a shared node: what another local user (hostile or careless), a
//! crashed or stopped application, a stalled reader or a short fd limit can
//! do to a job, tried with real processes. Each test is the regression test
//! of one defect; tests that need a second local user create it when run as
//! root and say that they skip otherwise (`SNAPC_REQUIRE_ROOT=1` makes that
//! a failure).

mod common;

use common::jobs::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
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
    let (code, fin) = env.checkpoint("plant", &["--wait"]);
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
    let (code, fin) = env.checkpoint("um", &["--wait"]);
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
    let (code, fin) = env.checkpoint("fds", &["--wait"]);
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
    let (code, fin) = env.checkpoint("big", &["--wait"]);
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
