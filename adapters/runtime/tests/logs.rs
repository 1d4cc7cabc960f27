//! The daemon's log: levels from `SNAPC_LOG`, the handshake traced step by
//! step at debug level, warnings visible by default, `--log FILE`.

mod common;

use common::jobs::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn counter() -> Vec<String> {
    vec![
        "--steps".into(),
        steps_for(2.0),
        "--pace-us".into(),
        PACE.into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether `line` is a log line: a UTC timestamp, then the level.
fn stamped(line: &str, level: &str) -> bool {
    let mut words = line.split_whitespace();
    let ts = words.next().unwrap_or("");
    ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[4] == b'-' && words.next() == Some(level)
}

#[test]
fn debug_level_traces_each_handshake_step() {
    let env = Env::new();
    let c = counter();
    let job = env.run("trace", 1, &[], &strs(&c), &[("SNAPC_LOG", "debug")]);
    let log = std::sync::Arc::clone(&job.err);
    let status = env.ready(&job);
    let pid = pid_of(&status, 0);
    let (code, fin) = env.checkpoint("trace", &["--wait"]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    let lines = log.lock().unwrap().clone();
    let mut at = 0;
    for step in [
        "fifos",
        "open",
        "options",
        "response",
        "go-ahead",
        "final state",
        "release",
    ] {
        let want = format!("[trace] snapc_core::local: local: pid {pid} handshake 0: {step} at ");
        let found = lines
            .iter()
            .enumerate()
            .skip(at)
            .find(|(_, l)| l.contains(&want))
            .unwrap_or_else(|| panic!("no {want:?} in order in {lines:#?}"));
        assert!(stamped(found.1, "DEBUG"), "{}", found.1);
        at = found.0;
    }
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "local: pid {pid} handshake 0: ended with CONTINUE after "
        ))),
        "{lines:#?}"
    );
    env.assert_clean();
}

#[test]
fn the_default_level_shows_warnings_and_the_daemon_account_only() {
    let env = Env::new();
    let c = counter();
    let job = env.run("quiet", 1, &[], &strs(&c), &[]);
    let log = std::sync::Arc::clone(&job.err);
    env.ready(&job);
    // A process that is not a rank of the job connects to its socket.
    let sock = env.run.path().join("quiet.sock");
    drop(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    let me = std::process::id();
    wait_log(&log, Duration::from_secs(10), |l| {
        stamped(l, "WARN")
            && l.contains(&format!(
                "[quiet] snapc::daemon: refused a connection from pid {me} "
            ))
    });
    let (code, fin) = env.checkpoint("quiet", &["--wait"]);
    assert_eq!(code, 0, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    let lines = log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| stamped(l, "INFO") && l.contains("snapc::daemon: all 1 ranks connected"))
    );
    assert!(!lines.iter().any(|l| l.contains(" DEBUG ")), "{lines:#?}");
    env.assert_clean();
}

#[test]
fn log_file_gets_the_same_lines_privately() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("daemon.log");
    let path = file.display().to_string();
    let c = counter();
    let job = env.run("file", 1, &["--log", &path], &strs(&c), &[]);
    let err = std::sync::Arc::clone(&job.err);
    env.ready(&job);
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().any(
            |l| stamped(l, "INFO") && l.contains("[file] snapc::daemon: all 1 ranks connected")
        ),
        "{text}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !err.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("ranks connected")),
        "the log went to the file, not to stderr"
    );
    // A symlink at the path is refused, not followed.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let link = dir.path().join("link.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let link = link.display().to_string();
    let (code, _, text) = env.cmd(&[
        "run", "-n", "1", "--job", "l2", "--log", &link, "--", "true",
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--log"), "{text}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    env.assert_clean();
}
