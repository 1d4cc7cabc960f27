//! The `snapc` command as its users type it: jobs that can always be ended
//! (signals, `snapc stop`, `snapc resume` after `checkpoint --stop`),
//! `snapc interval`, a program that never links snapc, exit statuses, and
//! one JSON document for every `--json`.

mod common;

use common::jobs::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A rank that ignores SIGTERM (the ignored disposition survives `exec`).
const DEAF: &str = "trap '' TERM; echo up >&2; exec sleep 60";

fn deaf_job(env: &Env, name: &str, extra: &[&str]) -> Job {
    let store = env.store.path().display().to_string();
    let mut args = vec!["run", "-n", "2", "--job", name, "--store", &store];
    args.extend_from_slice(extra);
    args.extend(["--", "sh", "-c", DEAF]);
    env.spawn(name, &args, &[])
}

/// Waits until the job's status satisfies `pred`.
fn wait_status(env: &Env, job: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = env.status(job).filter(|s| pred(s)) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job}: never {what}: {:?}",
            env.status(job)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn daemon_pid(status: &Value) -> i32 {
    status["daemon_pid"].as_i64().unwrap() as i32
}

#[test]
fn checkpoint_stop_leaves_a_stopped_job_that_refuses_checkpoints_until_resumed() {
    let env = Env::new();
    let steps = steps_for(3.0);
    let job = env.run("st", 2, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    env.ready(&job);
    let (code, fin) = env.checkpoint("st", &["--stop"]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(fin["seq"], 0, "{fin}");
    let status = env.status("st").unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
    for r in 0..2 {
        assert_eq!(status["ranks"][r]["state"], "stopped", "{status}");
    }
    let (_, _, text) = env.cmd(&["status", "--job", "st"]);
    assert!(text.contains("stopped"), "{text}");
    // Refused at once, naming the ranks and the way out.
    let (code, refused) = env.checkpoint("st", &[]);
    assert_eq!(code, 1, "{refused}");
    let why = refused["error"].as_str().unwrap();
    assert!(
        why.contains("ranks 0, 1 stopped") && why.contains("snapc resume --job st"),
        "{why}"
    );
    let (code, resumed) = env.json(&["resume", "--job", "st", "--json"]);
    assert_eq!(code, 0, "{resumed}");
    assert_eq!(resumed["ok"], true);
    assert_eq!(resumed["resumed"], serde_json::json!([0, 1]), "{resumed}");
    let (code, _, text) = env.cmd(&["resume", "--job", "st"]);
    assert_eq!(code, 0);
    assert!(text.contains("no rank was stopped"), "{text}");
    wait_status(&env, "st", "running again", |s| s["state"] == "running");
    let (code, fin) = env.checkpoint("st", &[]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(fin["seq"], 1, "{fin}");
    let (code, out) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(results(&out).len(), 2, "{out:?}");
    env.assert_clean();
}

#[test]
fn a_stopped_job_ends_on_sigterm_within_the_grace_period() {
    let env = Env::new();
    let steps = steps_for(20.0);
    let job = env.run(
        "term",
        2,
        &["--grace", "30"],
        &["--steps", &steps, "--pace-us", PACE],
        &[],
    );
    env.ready(&job);
    let (code, fin) = env.checkpoint("term", &["--stop"]);
    assert_eq!(code, 0, "{fin}");
    let status = wait_status(&env, "term", "stopped", |s| s["state"] == "stopped");
    let log = Arc::clone(&job.err);
    kill(daemon_pid(&status), Signal::SIGTERM);
    // Well within the 30 s grace: the stopped ranks got SIGCONT with their SIGTERM.
    let (code, _) = job.finish(Duration::from_secs(25));
    assert_eq!(
        code,
        128 + 15,
        "a job ended by SIGTERM exits as if killed by it"
    );
    let log = log.lock().unwrap().clone();
    for r in 0..2 {
        let pid = pid_of(&status, r);
        assert!(
            log.iter().any(|l| l.ends_with(&format!(
                "snapc::daemon: rank {r} (pid {pid}) killed(SIGTERM)"
            ))),
            "{log:?}"
        );
    }
    assert!(!log.iter().any(|l| l.contains("SIGKILL to")), "{log:?}");
    assert_eq!(env.snapshots("term"), vec![0]);
    env.assert_clean();
}

#[test]
fn ranks_that_ignore_sigterm_are_killed_after_the_grace_period() {
    let env = Env::new();
    let job = deaf_job(&env, "deaf", &["--grace", "1"]);
    let status = wait_status(&env, "deaf", "started", |s| {
        s["ranks"].as_array().is_some_and(|r| r.len() == 2)
    });
    wait_log(&job.err, Duration::from_secs(10), |l| l == "[1] up");
    wait_log(&job.err, Duration::from_secs(10), |l| l == "[0] up");
    kill(daemon_pid(&status), Signal::SIGTERM);
    let log = Arc::clone(&job.err);
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 143);
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l.contains("still running 1.0 s after SIGTERM: SIGKILL to ranks 0, 1")),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.ends_with("killed(SIGKILL)")),
        "{log:?}"
    );
    env.assert_clean();
}

#[test]
fn a_second_ctrl_c_kills_at_once() {
    let env = Env::new();
    let job = deaf_job(&env, "cc", &["--grace", "600"]);
    let status = wait_status(&env, "cc", "started", |s| {
        s["ranks"].as_array().is_some_and(|r| r.len() == 2)
    });
    wait_log(&job.err, Duration::from_secs(10), |l| l == "[1] up");
    wait_log(&job.err, Duration::from_secs(10), |l| l == "[0] up");
    kill(daemon_pid(&status), Signal::SIGINT);
    wait_log(&job.err, Duration::from_secs(10), |l| {
        l.contains("SIGINT received: terminating the job")
    });
    let ending = env.status("cc").unwrap();
    assert_eq!(ending["state"], "ending", "{ending}");
    kill(daemon_pid(&status), Signal::SIGINT);
    let log = Arc::clone(&job.err);
    // Long before the 600 s grace.
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 130);
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| l.contains("SIGINT received again: SIGKILL to ranks 0, 1")),
        "{log:?}"
    );
    env.assert_clean();
}

#[test]
fn snapc_stop_ends_a_job_without_a_checkpoint() {
    let env = Env::new();
    let steps = steps_for(20.0);
    let job = env.run(
        "stp",
        3,
        &["--grace", "30"],
        &["--steps", &steps, "--pace-us", PACE],
        &[],
    );
    env.ready(&job);
    let (code, _, text) = env.cmd(&["stop", "--job", "stp"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("job stp ended (status 143)"), "{text}");
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 143);
    assert!(env.snapshots("stp").is_empty());
    // --force: SIGKILL at once, to ranks that would never end on SIGTERM.
    let job = deaf_job(&env, "stf", &["--grace", "600"]);
    wait_log(&job.err, Duration::from_secs(10), |l| l == "[1] up");
    wait_log(&job.err, Duration::from_secs(10), |l| l == "[0] up");
    let (code, done) = env.json(&["stop", "--job", "stf", "--force", "--json"]);
    assert_eq!(code, 0, "{done}");
    assert_eq!(done["ok"], true);
    assert_eq!(done["killed"], true, "{done}");
    assert_eq!(done["status"], 143, "{done}");
    assert_eq!(done["ranks"][0]["state"], "killed(SIGKILL)", "{done}");
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 143);
    env.assert_clean();
}

#[test]
fn interval_changes_a_running_job_s_checkpoint_interval() {
    let env = Env::new();
    let steps = steps_for(20.0);
    let job = env.run("iv", 2, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    env.ready(&job);
    let (code, set) = env.json(&["interval", "--job", "iv", "0.2", "--json"]);
    assert_eq!(code, 0, "{set}");
    assert_eq!(set["interval_s"], 0.2, "{set}");
    assert_eq!(set["previous_s"], Value::Null, "{set}");
    wait_status(&env, "iv", "checkpointed twice", |s| {
        s["last_snapshot"]["seq"].as_u64().is_some_and(|n| n >= 1)
    });
    let (code, _, text) = env.cmd(&["interval", "--job", "iv", "0"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("no interval checkpoints (was: 0.2 s)"),
        "{text}"
    );
    // None starts after that: once the last one ended, the count stays.
    let idle = wait_status(&env, "iv", "idle", |s| s["in_progress"].is_null());
    let taken = env.snapshots("iv").len();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(env.snapshots("iv").len(), taken, "{idle}");
    assert_eq!(env.status("iv").unwrap()["interval_s"], Value::Null);
    let (code, _, _) = env.cmd(&["stop", "--job", "iv"]);
    assert_eq!(code, 0);
    job.finish(Duration::from_secs(30));
    env.assert_clean();
}

#[test]
fn a_program_that_never_links_snapc_is_named() {
    let env = Env::new();
    let store = env.store.path().display().to_string();
    let job = env.spawn(
        "nl",
        &[
            "run",
            "-n",
            "2",
            "--job",
            "nl",
            "--store",
            &store,
            "--connect-timeout",
            "1",
            "--interval",
            "0.2",
            "--grace",
            "30",
            "--",
            "sleep",
            "60",
        ],
        &[],
    );
    let status = wait_status(&env, "nl", "reported", |s| s["state"] == "unconnected");
    assert_eq!(status["ranks"][0]["connected"], false, "{status}");
    let why = status["not_checkpointable"].as_str().unwrap();
    assert!(
        why.contains("ranks 0, 1 never connected") && why.contains("linked with snapc"),
        "{why}"
    );
    let (code, refused) = env.checkpoint("nl", &[]);
    assert_eq!(code, 1, "{refused}");
    let err = refused["error"].as_str().unwrap();
    assert!(
        err.contains("ranks 0, 1 never connected") && err.contains("linked with snapc"),
        "{err}"
    );
    let log = wait_log(&job.err, Duration::from_secs(10), |l| {
        l.contains("interval checkpoint skipped: ranks 0, 1 never connected")
    });
    assert!(
        log.iter()
            .any(|l| l.contains("snapc::daemon: ranks 0, 1 never connected to the daemon")),
        "{log:?}"
    );
    let (code, _, text) = env.cmd(&["stop", "--job", "nl"]);
    assert_eq!(code, 0, "{text}");
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 143);
    env.assert_clean();
}

/// Checks that `snapc ARGS` exits with `code` and says `what` (in its
/// message, or in the JSON document's `error` with `--json`).
fn expect(env: &Env, args: &[&str], code: i32, what: &str) {
    let (got, _, text) = env.cmd(args);
    assert_eq!(got, code, "snapc {args:?}: {text}");
    assert!(text.contains(what), "snapc {args:?}: {text}");
    let mut with_json = args.to_vec();
    if !with_json.contains(&"--") && !matches!(args.first(), Some(&"run" | &"restart" | &"demo")) {
        with_json.push("--json");
        let (got, doc) = env.json(&with_json);
        assert_eq!(got, code, "snapc {with_json:?}: {doc}");
        assert_eq!(doc["ok"], false, "{doc}");
        assert!(doc["error"].as_str().unwrap().contains(what), "{doc}");
        assert_eq!(doc["usage"] == true, code == 2, "{doc}");
    }
}

#[test]
fn usage_errors_exit_2_and_failures_1() {
    let env = Env::new();
    let long = "j".repeat(70);
    expect(
        &env,
        &["checkpoint", "--timeout=-1"],
        2,
        "--timeout must be a positive number",
    );
    expect(
        &env,
        &["checkpoint", "--job", "../x"],
        2,
        "job name \"../x\"",
    );
    expect(
        &env,
        &["status", "--job", &long],
        2,
        "is 70 bytes long; the limit is 64",
    );
    expect(&env, &["checkpoint", "--bogus"], 2, "--bogus");
    expect(&env, &["interval", "--job", "j", "--", "-1"], 2, "-1");
    expect(
        &env,
        &["run", "-n", "0", "--", "true"],
        2,
        "-n must be between 1 and 256",
    );
    expect(
        &env,
        &["run", "-n", "300", "--", "true"],
        2,
        "the most ranks one daemon runs",
    );
    expect(
        &env,
        &["run", "-n", "1", "--keep", "0", "--", "true"],
        2,
        "--keep",
    );
    expect(
        &env,
        &["run", "-n", "1", "--job", &long, "--", "true"],
        2,
        "70 bytes long",
    );
    expect(
        &env,
        &["demo", "-n", "300"],
        2,
        "one daemon runs at most 256",
    );
    expect(
        &env,
        &["run", "-n", "1", "--grace", "1e19", "--", "true"],
        2,
        "--grace must be a positive number of seconds, at most",
    );
    expect(&env, &["checkpoint"], 1, "no job is running");
    expect(
        &env,
        &["resume", "--job", "nosuch"],
        1,
        "no job named nosuch (no job is running)",
    );
    expect(
        &env,
        &["restart", "/nonexistent/job"],
        1,
        "No such file or directory",
    );
    // A socket path over the 107 bytes a Unix socket allows.
    let deep = env.run.path().join("d".repeat(90));
    std::fs::create_dir(&deep).unwrap();
    let (code, _, text) = env.cmd_env(
        &["run", "-n", "1", "--job", "a-job-name", "--", "true"],
        &[("SNAPC_RUN_DIR", deep.as_os_str())],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("a Unix socket allows"), "{text}");
    std::fs::remove_dir(&deep).unwrap();
    // With jobs running, an unknown one is named with those that run.
    let steps = steps_for(20.0);
    let a = env.run("a1", 1, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    let b = env.run("b2", 1, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    env.ready(&a);
    env.ready(&b);
    expect(
        &env,
        &["status", "--job", "nosuch"],
        1,
        "no job named nosuch (running: a1, b2)",
    );
    expect(
        &env,
        &["checkpoint"],
        2,
        "several jobs are running (a1, b2); name one with --job",
    );
    for j in ["a1", "b2"] {
        let (code, _, _) = env.cmd(&["stop", "--job", j]);
        assert_eq!(code, 0);
    }
    a.finish(Duration::from_secs(30));
    b.finish(Duration::from_secs(30));
    env.assert_clean();
}

#[test]
fn the_demo_says_why_it_failed() {
    let env = Env::new();
    let (code, _, text) = env.cmd(&["demo", "--steps", "2000"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("the job ended before") && text.contains("--steps 2000"),
        "{text}"
    );
    env.assert_clean();
}

#[test]
fn every_json_output_is_one_document() {
    let env = Env::new();
    // No job: an empty list.
    let (code, doc) = env.json(&["status", "--json"]);
    assert_eq!((code, doc), (0, serde_json::json!([])));
    let steps = steps_for(20.0);
    let one = env.run("one", 2, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    let two = env.run("two", 1, &[], &["--steps", &steps, "--pace-us", PACE], &[]);
    env.ready(&one);
    env.ready(&two);
    let (code, all) = env.json(&["status", "--json"]);
    assert_eq!(code, 0, "{all}");
    let jobs: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["one", "two"]);
    let (code, s) = env.json(&["status", "--job", "one", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        (s["ok"].clone(), s["state"].clone()),
        (true.into(), "running".into())
    );
    // Every command, answered and refused.
    let cases: &[(&[&str], i32)] = &[
        (&["checkpoint", "--job", "one", "--json"], 0),
        (&["checkpoint", "--job", "one", "--no-wait", "--json"], 0),
        (&["quiesce", "start", "--job", "one", "--json"], 0),
        (&["checkpoint", "--job", "one", "--json"], 1),
        (&["quiesce", "end", "--job", "one", "--json"], 0),
        (&["quiesce", "end", "--job", "one", "--json"], 1),
        (&["resume", "--job", "one", "--json"], 0),
        (&["interval", "--job", "one", "5", "--json"], 0),
        (&["checkpoint", "--json"], 2),
        (&["status", "--job", "three", "--json"], 1),
        (&["stop", "--job", "two", "--json"], 0),
        (&["stop", "--job", "one", "--json"], 0),
        (&["status", "--json"], 0),
    ];
    for (args, want) in cases {
        // The one started without waiting may still run.
        if args.contains(&"quiesce") {
            wait_status(&env, "one", "idle", |s| s["in_progress"].is_null());
        }
        let (code, doc) = env.json(args);
        assert_eq!(code, *want, "snapc {args:?}: {doc}");
        if doc.is_object() {
            assert_eq!(doc["ok"] == true, *want == 0, "snapc {args:?}: {doc}");
            assert!(doc.get("event").is_none(), "{doc}");
        }
        if *want != 0 {
            assert!(doc["error"].is_string(), "snapc {args:?}: {doc}");
        }
    }
    one.finish(Duration::from_secs(30));
    two.finish(Duration::from_secs(30));
    env.assert_clean();
}

#[test]
fn prep_only_reports_no_snapshot() {
    let p = common::counter(&[]);
    let run = |json: bool| {
        let mut c = std::process::Command::new(SNAPC);
        c.args(["checkpoint", "--pid", &p.pid.to_string(), "--prep-only"])
            .env("SNAPC_PIPE_DIR", &p.pipes)
            .env("SNAPC_STORE", &p.store);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let text = run(false);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{out}");
    assert!(
        out.contains("no snapshot") && !out.contains("snapshot /"),
        "{out}"
    );
    let doc: Value = serde_json::from_slice(&run(true).stdout).unwrap();
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["processes"][0]["state"], "RUNNING", "{doc}");
    assert_eq!(doc["processes"][0]["snapshot"], Value::Null, "{doc}");
    assert!(p.alive());
}

/// `mkdir -p` with mode 0700 (the store refuses what others could write).
fn private_dirs(path: &std::path::Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .unwrap();
}

#[test]
fn a_job_with_a_numeric_name_restarts_from_its_directory() {
    let env = Env::new();
    let steps = steps_for(1.5);
    let job = env.run(
        "123456",
        2,
        &[],
        &["--steps", &steps, "--pace-us", PACE],
        &[],
    );
    env.ready(&job);
    let (code, fin) = env.checkpoint("123456", &[]);
    assert_eq!(code, 0, "{fin}");
    let (code, first) = job.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{first:?}");
    let root = env.job_root("123456").display().to_string();
    let (code, again) = env
        .spawn("123456", &["restart", &root], &[])
        .finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{again:?}");
    for r in 0..2 {
        let s = starts(&again, r);
        assert!(s.len() == 1 && s[0] > 0, "rank {r} resumed: {again:?}");
    }
    assert_eq!(results(&again), results(&first));
    env.assert_clean();
}

#[test]
fn standalone_snapshots_have_their_own_subtree_and_handles_never_run_out() {
    let p = common::counter(&[]);
    // A job named like a handle, and the last handle taken.
    private_dirs(&p.store.join("123456/0"));
    private_dirs(&p.store.join("standalone/4294967295"));
    let checkpoint = |extra: &[&str]| {
        let out = std::process::Command::new(SNAPC)
            .args(["checkpoint", "--pid", &p.pid.to_string(), "--json"])
            .args(extra)
            .env("SNAPC_PIPE_DIR", &p.pipes)
            .env("SNAPC_STORE", &p.store)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), doc)
    };
    for want in [1u32, 2] {
        let (code, doc) = checkpoint(&[]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["handle"], want, "{doc}");
        let dir = p.store.join(format!("standalone/{want}/pid-{}", p.pid));
        assert_eq!(doc["processes"][0]["snapshot"], dir.display().to_string());
        assert!(p.snapshot(want).join("state").is_file(), "{doc}");
    }
    // Neither overwrote the other, and the job's directory is untouched.
    assert!(p.snapshot(1).join("state").is_file());
    assert!(
        !p.store
            .join("123456/0/pid-".to_string() + &p.pid.to_string())
            .exists()
    );
    assert_eq!(
        std::fs::read_dir(p.store.join("123456/0")).unwrap().count(),
        0
    );
    let (code, doc) = checkpoint(&["--handle", "1"]);
    assert_eq!(code, 1, "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("handle 1 is taken"),
        "{doc}"
    );
    // No job can take the subtree's name.
    let env = Env::new();
    let (code, _, text) = env.cmd(&["run", "-n", "1", "--job", "standalone", "--", "true"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("is reserved"), "{text}");
    assert!(p.alive());
}

#[test]
fn list_shows_complete_and_incomplete_snapshots() {
    let env = Env::new();
    let steps = steps_for(20.0);
    let job = env.run(
        "ls",
        2,
        &[],
        &["--steps", &steps, "--pace-us", PACE],
        &[("COUNTER_STALL", "1500")],
    );
    env.ready(&job);
    for seq in 0..2 {
        let (code, fin) = env.checkpoint("ls", &[]);
        assert_eq!((code, fin["seq"].as_u64()), (0, Some(seq)), "{fin}");
    }
    // One in progress (its prepare stalls), in the daemon's staging directory.
    let (code, started) = env.checkpoint("ls", &["--no-wait"]);
    assert_eq!(code, 0, "{started}");
    let store = env.store.path().display().to_string();
    let (code, doc) = env.json(&["list", &store, "--json"]);
    assert_eq!(code, 0, "{doc}");
    let snaps = doc["jobs"][0]["snapshots"].as_array().unwrap().clone();
    assert_eq!(snaps.len(), 3, "{doc}");
    assert_eq!(snaps[2]["status"], "in progress", "{doc}");
    assert_eq!(snaps[2]["complete"], false, "{doc}");
    let (code, _, _) = env.cmd(&["stop", "--job", "ls"]);
    assert_eq!(code, 0);
    job.finish(Duration::from_secs(30));
    // An incomplete snapshot (no metadata), and one with a rank too many.
    let root = env.job_root("ls");
    private_dirs(&root.join("5/rank-0"));
    private_dirs(&root.join("1/rank-2"));
    let (code, doc) = env.json(&["list", &root.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["ok"], true);
    let snaps = doc["jobs"][0]["snapshots"].as_array().unwrap().clone();
    let seqs: Vec<u64> = snaps.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 5], "{doc}");
    assert_eq!(snaps[0]["status"], "complete", "{doc}");
    assert_eq!(snaps[0]["complete"], true);
    assert_eq!(snaps[0]["ranks"], 2);
    assert!(snaps[0]["bytes"].as_u64().unwrap() > 0);
    assert!(snaps[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(
        snaps[0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("snapc_global_snapshot_")
    );
    assert_eq!(snaps[1]["complete"], false);
    assert!(
        snaps[1]["status"]
            .as_str()
            .unwrap()
            .contains("not in the metadata rank-2"),
        "{doc}"
    );
    assert_eq!(snaps[2]["status"], "incomplete (no snapshot.json)", "{doc}");
    let (code, _, text) = env.cmd(&["list", &store]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("job ls (") && text.contains("3 snapshots"),
        "{text}"
    );
    assert!(
        text.contains(" complete ") && text.contains(" incomplete "),
        "{text}"
    );
    // Restart checks the rank directories against the metadata.
    let one = root.join("1").display().to_string();
    let (code, _, text) = env.cmd(&["restart", &one]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("the metadata names 2 ranks, 3 rank directories are there"),
        "{text}"
    );
    env.assert_clean();
}

#[test]
fn a_run_without_checkpoints_leaves_no_job_directory() {
    let env = Env::new();
    let store = env.store.path().display().to_string();
    let job = env.spawn(
        "none",
        &[
            "run", "-n", "2", "--job", "none", "--store", &store, "--", "true",
        ],
        &[],
    );
    let (code, _) = job.finish(Duration::from_secs(30));
    assert_eq!(code, 0);
    assert!(!env.job_root("none").exists());
    env.assert_clean();
}

#[test]
fn a_checkpoint_asked_for_as_the_job_starts_waits_for_its_ranks() {
    let env = Env::new();
    let store = env.store.path().display().to_string();
    let counter = common::counter_exe().display().to_string();
    let steps = steps_for(20.0);
    // The ranks link snapc only half a second after they start.
    let program = format!("sleep 0.5; exec {counter} --steps {steps} --pace-us {PACE}");
    let job = env.spawn(
        "slow",
        &[
            "run", "-n", "2", "--job", "slow", "--store", &store, "--", "sh", "-c", &program,
        ],
        &[],
    );
    // At once: the daemon may not even listen yet.
    let (code, fin) = env.checkpoint("slow", &[]);
    assert_eq!(code, 0, "{fin}");
    assert_eq!(fin["seq"], 0, "{fin}");
    let (code, _, text) = env.cmd(&["stop", "--job", "slow"]);
    assert_eq!(code, 0, "{text}");
    job.finish(Duration::from_secs(30));
    assert_eq!(env.snapshots("slow"), vec![0]);
    env.assert_clean();
}

#[test]
fn a_rank_stopped_during_a_checkpoint_is_named_with_its_state() {
    let env = Env::new();
    let steps = steps_for(20.0);
    let job = env.run(
        "halt",
        2,
        &[],
        &["--steps", &steps, "--pace-us", PACE],
        &[("COUNTER_STALL", "1000")],
    );
    let status = env.ready(&job);
    let (code, started) = env.checkpoint("halt", &["--no-wait"]);
    assert_eq!(code, 0, "{started}");
    kill(pid_of(&status, 1), Signal::SIGSTOP);
    let done = wait_status(&env, "halt", "done with the checkpoint", |s| {
        s["in_progress"].is_null() && !s["last_result"].is_null()
    });
    let fin = &done["last_result"];
    assert_eq!(fin["ok"], false, "{fin}");
    let err = fin["error"].as_str().unwrap();
    assert!(err.contains("rank 1") && err.contains("stopped"), "{err}");
    assert_eq!(done["state"], "stopped", "{done}");
    let (code, _, text) = env.cmd(&["resume", "--job", "halt"]);
    assert_eq!(code, 0, "{text}");
    let (code, _, text) = env.cmd(&["stop", "--job", "halt"]);
    assert_eq!(code, 0, "{text}");
    job.finish(Duration::from_secs(30));
    assert!(env.snapshots("halt").is_empty());
    env.assert_clean();
}
