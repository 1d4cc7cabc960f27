//! `snapc demo --mpi`: the story of `snapc demo` with an MPI program
//! launched by Open MPI's `mpirun`, each step a `snapc` command as a person
//! would type it:
//!
//! 1. the heat stencil (`mpi/heat.c`, shipped inside `snapc`) is built
//!    with `mpicc` against the installed libsnapc (`pkg-config snapc`);
//! 2. an uninterrupted reference run under `mpirun` alone;
//! 3. the same job under `snapc run -- mpirun ...`: its ranks join the
//!    daemon; three `snapc checkpoint` while it runs, each snapshot's
//!    iteration read back from every rank's part (they must agree); then
//!    one rank killed with SIGKILL, and `mpirun` ends the job;
//! 4. `snapc restart <store>/<job>` through `mpirun` from the latest
//!    snapshot, run to the end;
//! 5. the final checksum compared with the reference run's.
//!
//! It needs `mpirun` and `mpicc` (Debian's `openmpi-bin` and
//! `libopenmpi-dev`) and libsnapc where `pkg-config` finds it
//! (`adapters/c/install.sh --prefix DIR`, then
//! `PKG_CONFIG_PATH=DIR/lib/pkgconfig`). Exits 0 only if the checksums
//! match and every snapshot has all its ranks at one iteration.

use crate::demo::Demo;
use snapc_posix::store::PrivateDir;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The stencil's source, as built by the demo and the tests.
pub const HEAT_C: &str = include_str!("../mpi/heat.c");

/// Microseconds the demo's ranks sleep after each iteration (the
/// restarted job runs at full speed: the result does not depend on it).
const PACE_US: &str = "200";

/// `rank -> text` of the lines `mpirun --tag-output` tagged as a rank's
/// stdout (`[1,3]<stdout>:text`) that start with `prefix`, without it; the
/// last of each rank.
pub fn tagged(lines: &[String], prefix: &str) -> BTreeMap<u32, String> {
    lines
        .iter()
        .filter_map(|l| {
            let (tag, text) = l.strip_prefix('[')?.split_once("]<stdout>:")?;
            let rank = tag.split_once(',')?.1.parse().ok()?;
            Some((rank, text.strip_prefix(prefix)?.to_string()))
        })
        .collect()
}

/// `mpirun` with the options the demo (and the tests) give it: root
/// allowed when we are root, more ranks than cores, each line tagged with
/// its rank, `ranks` ranks.
pub fn mpirun(ranks: u32) -> Vec<String> {
    let mut v = vec!["mpirun".to_string()];
    if nix::unistd::Uid::effective().is_root() {
        v.push("--allow-run-as-root".into());
    }
    v.extend(["--oversubscribe", "--tag-output", "-np"].map(String::from));
    v.push(ranks.to_string());
    v
}

fn tool_output(cmd: &mut Command, what: &str, install: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: {e} ({install})"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({install}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds the stencil in `dir` with `mpicc` and the libsnapc that
/// `pkg-config` finds (in `pkg_config_path` too, when given); the
/// program's path.
pub fn build_heat(dir: &Path, pkg_config_path: Option<&Path>) -> Result<PathBuf, String> {
    tool_output(
        Command::new("mpirun").arg("--version"),
        "mpirun",
        "apt-get install openmpi-bin",
    )?;
    let mut pkg_config = Command::new("pkg-config");
    if let Some(p) = pkg_config_path {
        pkg_config.env("PKG_CONFIG_PATH", p);
    }
    let flags = tool_output(
        pkg_config.args(["--cflags", "--libs", "snapc"]),
        "pkg-config snapc",
        "install libsnapc with adapters/c/install.sh --prefix DIR and set PKG_CONFIG_PATH=DIR/lib/pkgconfig; \
         apt-get install pkg-config",
    )?;
    let source = dir.join("heat.c");
    PrivateDir::open(dir, false)
        .and_then(|d| d.create_file("heat.c"))
        .map_err(|e| e.to_string())?
        .write_all(HEAT_C.as_bytes())
        .map_err(|e| format!("{}: {e}", source.display()))?;
    let program = dir.join("heat");
    tool_output(
        Command::new("mpicc")
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(&source)
            .args(flags.split_whitespace())
            .arg("-lm")
            .arg("-o")
            .arg(&program),
        "mpicc heat.c",
        "apt-get install libopenmpi-dev",
    )?;
    Ok(program)
}

/// The iteration each rank of a snapshot saved (`rank-<r>/iter`).
pub fn snapshot_iterations(dir: &Path, ranks: u32) -> Vec<Option<u64>> {
    (0..ranks)
        .map(|r| {
            std::fs::read_to_string(dir.join(format!("rank-{r}")).join("iter"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Runs the MPI demo; exits 0 only if it passed.
pub fn main(store: Option<PathBuf>, ranks: u32, iters: u64) -> ExitCode {
    if !(2..=64).contains(&ranks) {
        crate::errln!("snapc demo --mpi: -n {ranks}: the demo runs 2 to 64 ranks");
        return ExitCode::from(crate::cli::EXIT_USAGE);
    }
    let tmp = std::env::temp_dir().join(format!("snapc-demo-mpi-{}", std::process::id()));
    if let Err(e) = PrivateDir::open(&tmp, true) {
        crate::errln!("snapc demo --mpi: {e}");
        return ExitCode::FAILURE;
    }
    let keep_store = store.is_some();
    let store = store.unwrap_or_else(|| tmp.join("store"));
    let result = std::env::current_exe()
        .map_err(|e| format!("locating snapc: {e}"))
        .and_then(|exe| {
            let demo = Demo {
                exe,
                run_dir: tmp.join("run"),
                verbose: std::env::var_os("SNAPC_DEMO_VERBOSE").is_some(),
            };
            story(&demo, &store, &tmp, ranks, iters)
        });
    if keep_store {
        for sub in ["run", "heat", "heat.c"] {
            let p = tmp.join(sub);
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
        let _ = std::fs::remove_dir(&tmp);
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            crate::errln!("snapc demo --mpi: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn story(demo: &Demo, store: &Path, tmp: &Path, ranks: u32, iters: u64) -> Result<bool, String> {
    let job = "demo-mpi";
    crate::outln!(
        "snapc demo --mpi: {ranks} ranks of the heat stencil under mpirun, {iters} iterations"
    );
    let t0 = Instant::now();
    let heat = build_heat(tmp, None)?;
    crate::outln!(
        "  built {} with mpicc and libsnapc in {:.0} ms",
        heat.display(),
        ms(t0.elapsed())
    );
    let mut program = mpirun(ranks);
    program.extend([
        heat.display().to_string(),
        "--iters".into(),
        iters.to_string(),
    ]);

    // The reference: mpirun alone, snapc standalone in each rank.
    let t = Instant::now();
    let out = Command::new(&program[0])
        .args(&program[1..])
        .env_remove("SNAPC_DAEMON_SOCKET")
        .env_remove("SNAPC_JOB_SECRET")
        .env_remove("SNAPC_RESTART_SNAPSHOT")
        .env_remove("SNAPC_RESTART_DIR")
        .env_remove("HEAT_PACE_US")
        .output()
        .map_err(|e| format!("the reference run: {e}"))?;
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let expected = tagged(&lines, "result ").remove(&0).ok_or_else(|| {
        format!(
            "the reference run printed no result (status {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    crate::outln!("  reference run: {expected} ({:.0} ms)", ms(t.elapsed()));

    let mut args: Vec<String> = ["run", "-n", &ranks.to_string(), "--job", job, "--store"]
        .map(String::from)
        .to_vec();
    args.push(store.display().to_string());
    args.push("--".into());
    args.extend(program.iter().cloned());
    let t_start = Instant::now();
    let mut main = demo.spawn_env(&args, &[("HEAT_PACE_US", PACE_US)])?;
    let length = format!("--iters {iters}");
    let status = demo.wait_ready(job, &mut main, Duration::from_secs(60), &length)?;
    crate::outln!(
        "  started in {:.0} ms: {ranks} ranks joined through mpirun (pid {})",
        ms(t_start.elapsed()),
        status["launcher"]["pid"]
    );
    let mut ok = true;
    let mut took = Vec::new();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let fin = demo.checkpoint(job, &mut main, i, &length)?;
        let dir = PathBuf::from(fin["dir"].as_str().unwrap_or_default());
        let at = snapshot_iterations(&dir, ranks);
        let one = at
            .first()
            .copied()
            .flatten()
            .filter(|k| at.iter().all(|a| *a == Some(*k)));
        ok &= one.is_some();
        let duration = fin["duration_ms"].as_f64().unwrap_or(0.0);
        took.push(duration);
        crate::outln!(
            "  checkpoint seq {}: {} bytes in {duration:.1} ms, {} -> {}",
            fin["seq"],
            fin["bytes"],
            match one {
                Some(k) => format!("every rank at iteration {k}"),
                None => format!("ranks at DIFFERENT iterations {at:?}"),
            },
            dir.display()
        );
    }
    let victim = status["ranks"][1]["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or("no pid for rank 1")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("killing rank 1: {e}"))?;
    let (code, out) = main.finish(Instant::now() + Duration::from_secs(60))?;
    crate::outln!(
        "  rank 1 (pid {victim}) killed with SIGKILL: mpirun ended the job, status {code}{}",
        if tagged(&out, "result ").is_empty() {
            ""
        } else {
            " (it had already finished: raise --iters)"
        }
    );

    let latest = crate::snapstore::latest(&store.join(job));
    let t_restart = Instant::now();
    let restarted = demo.spawn_env(
        &["restart".to_string(), store.join(job).display().to_string()],
        &[("HEAT_PACE_US", "0")],
    )?;
    let (rcode, rout) = restarted.finish(Instant::now() + Duration::from_secs(300))?;
    let starts = tagged(&rout, "start iter=");
    crate::outln!(
        "  restarted through mpirun from {} (every rank resumed at iteration {}); ran to the end in {:.0} ms, status {rcode}",
        latest.map_or("?".into(), |(s, d)| format!("seq {s} ({})", d.display())),
        starts.values().next().map_or("?", String::as_str),
        ms(t_restart.elapsed())
    );
    let got = tagged(&rout, "result ").remove(&0);
    let same = got.as_deref() == Some(expected.as_str());
    let resumed = starts.len() == ranks as usize
        && starts
            .values()
            .all(|s| s != "0" && Some(s) == starts.values().next());
    ok &= same && resumed && rcode == 0;
    crate::outln!(
        "  result: restarted {}, reference {expected}: {}",
        got.as_deref().unwrap_or("-"),
        if same { "match" } else { "DIFFER" }
    );
    crate::outln!(
        "  checkpoints {} ms; total {:.0} ms",
        took.iter()
            .map(|d| format!("{d:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        ms(t0.elapsed())
    );
    crate::outln!(
        "snapc demo --mpi: {}",
        if ok {
            "PASS (every snapshot at one iteration; the restarted job's checksum matches the uninterrupted run)"
        } else {
            "FAIL"
        }
    );
    Ok(ok)
}
