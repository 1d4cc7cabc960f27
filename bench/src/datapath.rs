//! The snapshot data path: a checkpoint whose hooks write a large state
//! across four ranks, and the restart that reads it back, each against the
//! floor of doing the same file work directly.
//!
//! - **checkpoint**: `snapc run` (the node daemon, this executable in the
//!   `__daemon` role) runs four ranks (`__rank`) whose checkpoint hook
//!   writes its share of the state into the directory snapc gives it, in
//!   the same files as the floor; timed from the checkpoint request on the
//!   control socket until the daemon reports the snapshot published. The
//!   floor: four processes (`__writer`) that, on a signal, each create a
//!   directory, write the same files, fsync each file, the directory and
//!   its parent, and say so on a FIFO; timed from the first signal until
//!   the last says so.
//! - **restart**: `snapc restart <store>/<job>/<seq>` (the daemon checks the
//!   whole snapshot, launches four ranks whose restart hook reads its
//!   files whole) against four processes (`__reader`) that read the floor's
//!   files whole; timed from the start of the daemon, or of the readers,
//!   until the last process has read its state and said so. The files are
//!   dropped from the page cache before each round, both sides alike, so
//!   that both read from the disk as a restart after a failure does.
//!
//! Rounds alternate floor and snapc (and which goes first), and start from
//! the same state: the previous round's files removed and the file system
//! synced.

use crate::child::{Args, Proc, block_checkpoint_signal, nap, report, say};
use crate::load::{Goal, Load, Mode};
use crate::stats::Samples;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use snapc_core::app::{CheckpointResult, Outcome};
use snapc_posix::app::{Config, Hooks, Snapc, Snapshot};
use snapc_runtime::control::Client;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Ranks (and floor processes).
pub const RANKS: usize = 4;
/// Files each rank writes.
pub const FILES: usize = 4;
/// The state written in all, MiB (`SNAPC_BENCH_DATA_MIB` sets another).
pub const TOTAL_MIB: u64 = 1024;
/// Rounds of each kind run first and not counted: the first writes of a
/// run are slow for reasons of the machine, not of either side (in a
/// virtual machine, memory the guest had not used for a while is slow at
/// its first touch), and the page cache must hold both sides' files.
pub const WARMUP: usize = 2;
/// Measured rounds of each kind (after [`WARMUP`] unmeasured;
/// `SNAPC_BENCH_DATA_ROUNDS` sets another number).
pub const ROUNDS: usize = 7;
/// Each write and read, bytes.
const CHUNK: usize = 1 << 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The state written in all, bytes.
pub fn total_bytes() -> u64 {
    env_or("SNAPC_BENCH_DATA_MIB", TOTAL_MIB) << 20
}

/// Measured rounds.
pub fn rounds() -> usize {
    env_or("SNAPC_BENCH_DATA_ROUNDS", ROUNDS)
}

/// Writes `bytes` into `files` files `f0`... in `dir` (1 MiB writes of a
/// pattern), fsyncing each when `sync`.
fn write_state(dir: &Path, bytes: u64, files: usize, sync: bool) -> std::io::Result<()> {
    let per = bytes / files.max(1) as u64;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    for i in 0..files {
        let mut f = std::fs::File::create(dir.join(format!("f{i}")))?;
        let mut left = per;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        if sync {
            f.sync_all()?;
        }
    }
    Ok(())
}

/// Reads every file `f*` in `dir` whole; the bytes read.
fn read_state(dir: &Path) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('f'))
        })
        .collect();
    names.sort();
    for p in names {
        let mut f = std::fs::File::open(p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// Drops the files under `dir` from the page cache (they are synced: their
/// pages are clean), so that the next read comes from the disk.
fn evict(dir: &Path) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            evict(&p);
        } else if let Ok(f) = std::fs::File::open(&p) {
            let _ = posix_fadvise(f.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
    }
}

/// Flushes the file system holding `dir` (so that a round starts without
/// the previous one's writes still in flight).
fn sync_fs(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = nix::unistd::syncfs(f.as_fd());
    }
}

struct DataHooks {
    bytes: u64,
}

impl Hooks for DataHooks {
    fn checkpoint(&mut self, snapshot: &Snapshot) -> CheckpointResult {
        // No fsync here: snapc syncs what the hooks wrote.
        match write_state(&snapshot.dir, self.bytes, FILES, false) {
            Ok(()) => CheckpointResult::Continue,
            Err(e) => {
                eprintln!("rank checkpoint: {e}");
                CheckpointResult::Error
            }
        }
    }

    fn restart(&mut self, dir: &Path) -> Result<(), String> {
        read_state(dir).map(drop).map_err(|e| e.to_string())
    }
}

/// `__rank --bytes B --report F`: a rank of the data-path job. Its
/// checkpoint hook writes B bytes in [`FILES`] files; started to restart,
/// its restart hook reads them back, then it writes one byte to the FIFO F
/// and ends.
pub fn rank(args: &Args) -> Result<(), String> {
    // Before snapc starts any thread: the signal comes only in the naps.
    block_checkpoint_signal()?;
    let bytes: u64 = args.num("--bytes")?;
    let report_to = args.path("--report")?;
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let restarting = config.restart_dir.is_some();
    let mut snapc = Snapc::start(config, DataHooks { bytes }).map_err(|e| e.to_string())?;
    if restarting {
        return report(&report_to, b'r');
    }
    loop {
        if let Some(Outcome::Handshake(r)) = snapc.progress()
            && r.error.is_some()
        {
            eprintln!("rank: checkpoint failed: {:?}", r.error);
        }
        nap(Duration::from_millis(10));
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    SIGNALLED.store(true, Ordering::Release);
}

/// `__writer --bytes B --dir D --report F`: the floor of the checkpoint.
/// At each signal: creates `D/round-<n>/`, writes B bytes in [`FILES`]
/// files there (as the ranks' hook does), fsyncs each file, the directory
/// and `D`, then writes one byte to the FIFO F.
pub fn writer(args: &Args) -> Result<(), String> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let bytes: u64 = args.num("--bytes")?;
    let dir = args.path("--dir")?;
    let report_to = args.path("--report")?;
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { sigaction(Signal::SIGUSR1, &action) }.map_err(|e| e.to_string())?;
    block_checkpoint_signal()?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    say(b'r');
    let mut n = 0;
    loop {
        if SIGNALLED.swap(false, Ordering::AcqRel) {
            let round = dir.join(format!("round-{n}"));
            n += 1;
            let done = std::fs::create_dir(&round)
                .and_then(|()| write_state(&round, bytes, FILES, true))
                .and_then(|()| std::fs::File::open(&round)?.sync_all())
                .and_then(|()| std::fs::File::open(&dir)?.sync_all());
            if let Err(e) = done {
                eprintln!("writer: {e}");
                report(&report_to, b'e')?;
            } else {
                report(&report_to, b'c')?;
            }
        }
        nap(Duration::from_millis(10));
    }
}

/// `__reader --dir D --report F`: the floor of the restart: reads the files
/// in D whole, writes one byte to the FIFO F, ends.
pub fn reader(args: &Args) -> Result<(), String> {
    let dir = args.path("--dir")?;
    let report_to = args.path("--report")?;
    read_state(&dir).map_err(|e| e.to_string())?;
    report(&report_to, b'r')
}

/// `__daemon run <store> <job> <ranks> -- argv...` or
/// `__daemon restart <snapshot>`: `snapc run` and `snapc restart`, as the
/// `snapc` command does them (the same library calls).
pub fn daemon(args: &Args) -> Result<(), String> {
    use snapc_runtime::daemon::{RunOptions, restart_options, run};
    let a = &args.0;
    let opts = match a.first().map(String::as_str) {
        Some("run") => {
            let [store, job, n] = [1, 2, 3].map(|i| a.get(i).cloned().unwrap_or_default());
            let argv = a.get(5..).unwrap_or_default().to_vec();
            let n = n.parse().map_err(|_| "ranks")?;
            RunOptions::new(job, n, store.into(), argv)
        }
        Some("restart") => {
            restart_options(Path::new(a.get(1).ok_or("snapshot")?)).map_err(|e| e.to_string())?
        }
        _ => return Err("run or restart".into()),
    };
    match run(opts) {
        Ok(0) => Ok(()),
        Ok(s) => Err(format!("the job ended with status {s}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The FIFO the processes report on, read by the bench.
struct Reports {
    path: PathBuf,
    fd: std::os::fd::OwnedFd,
}

impl Reports {
    fn new(path: PathBuf) -> Result<Self, String> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR).map_err(|e| e.to_string())?;
        // Read-write: it never reads as closed between the writers.
        let fd = open(&path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| e.to_string())?;
        Ok(Self { path, fd })
    }

    /// Waits for `n` bytes (each one process's report); an error names a
    /// process that reported a failure, or what `gone` says (asked every
    /// 100 ms: a process that will never report).
    fn wait(
        &self,
        n: usize,
        deadline: Instant,
        mut gone: impl FnMut() -> Option<String>,
    ) -> Result<(), String> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut got = 0;
        while got < n {
            if Instant::now() >= deadline {
                return Err(format!("{got} of {n} processes reported in time"));
            }
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            if let Ok(0) = poll(&mut fds, PollTimeout::from(100u8)) {
                if let Some(why) = gone() {
                    return Err(why);
                }
                continue;
            }
            let mut b = [0u8; 16];
            if let Ok(k) = nix::unistd::read(&self.fd, &mut b[..n - got]) {
                if let Some(bad) = b[..k].iter().find(|c| **c == b'e') {
                    return Err(format!("a process reported {:?}", *bad as char));
                }
                got += k;
            }
        }
        Ok(())
    }
}

/// Why a child has ended, if it has.
fn ended(child: &mut Child, what: &str) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(format!("{what} ended ({status})")),
        _ => None,
    }
}

fn spawn_daemon(args: &[String]) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Command::new(exe)
        .arg("__daemon")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own account of the job (SNAPC_LOG=info) would fill the bench's output.
        .env(
            "SNAPC_LOG",
            std::env::var("SNAPC_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .map_err(|e| format!("starting the daemon: {e}"))
}

/// Waits (up to `limit`) for a child to end, then kills it.
fn reap(child: &mut Child, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One mode's figures (µs).
#[derive(Default)]
pub struct Figures {
    pub floor_write: Samples,
    pub snapc_write: Samples,
    pub floor_read: Samples,
    pub snapc_read: Samples,
}

/// Measures both, alternating, in a scratch directory under `base` (a
/// disk, as the figures are about storage).
pub fn run(base: &Path) -> Result<Figures, String> {
    let t = tempfile::tempdir_in(base).map_err(|e| format!("{}: {e}", base.display()))?;
    let store = t.path().join("store");
    let floor_dir = t.path().join("floor");
    let reports = Reports::new(t.path().join("reports"))?;
    let per_rank = total_bytes() / RANKS as u64;
    let bytes = per_rank.to_string();
    let report_s = reports.path.to_string_lossy().into_owned();
    let job = format!("bench-data-{}", std::process::id());
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .into_owned();
    let mut writers = Vec::new();
    for r in 0..RANKS {
        let dir = floor_dir
            .join(format!("rank-{r}"))
            .to_string_lossy()
            .into_owned();
        writers.push(Proc::start(
            "__writer",
            &["--bytes", &bytes, "--dir", &dir, "--report", &report_s],
        )?);
    }
    let mut daemon_args: Vec<String> = vec![
        "run".into(),
        store.to_string_lossy().into_owned(),
        job.clone(),
        RANKS.to_string(),
        "--".into(),
    ];
    daemon_args
        .extend([&exe, "__rank", "--bytes", &bytes, "--report", &report_s].map(str::to_string));
    let mut daemon = spawn_daemon(&daemon_args)?;
    let result = measure(
        &mut writers,
        &mut daemon,
        &job,
        &store,
        &floor_dir,
        &reports,
    );
    let _ = Client::send(&job, &json!({"op": "stop"}));
    reap(&mut daemon, Duration::from_secs(20));
    drop(writers);
    let mut figures = result?;
    restarts(&mut figures, &store, &job, &floor_dir, &reports, &exe)?;
    Ok(figures)
}

fn measure(
    writers: &mut [Proc],
    daemon: &mut Child,
    job: &str,
    store: &Path,
    floor_dir: &Path,
    reports: &Reports,
) -> Result<Figures, String> {
    let deadline = |s| Instant::now() + Duration::from_secs(s);
    // The job is checkpointable once every rank connected.
    let ready_by = deadline(60);
    loop {
        let status = Client::send(job, &json!({"op": "status"}))
            .and_then(|mut c| c.until(&["status"], deadline(10), |_| {}));
        if status.is_ok_and(|s| s["checkpointable"] == true) {
            break;
        }
        if Instant::now() > ready_by {
            return Err("the data-path job never became ready".into());
        }
        if let Some(why) = ended(daemon, "the daemon") {
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut f = Figures::default();
    let job_dir = store.join(job);
    for round in 0..WARMUP + rounds() {
        let floor = |f: &mut Figures| -> Result<(), String> {
            clean(floor_dir, &job_dir);
            let started = Instant::now();
            for w in writers.iter() {
                kill(Pid::from_raw(w.pid() as i32), Signal::SIGUSR1).map_err(|e| e.to_string())?;
            }
            reports.wait(RANKS, deadline(600), || {
                writers
                    .iter()
                    .find(|w| !w.alive())
                    .map(|w| format!("floor writer {} ended", w.pid()))
            })?;
            if std::env::var_os("SNAPC_BENCH_VERBOSE").is_some() {
                eprintln!("    floor {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
            }
            if round >= WARMUP {
                f.floor_write.push(started.elapsed());
            }
            Ok(())
        };
        let snapc = |f: &mut Figures| -> Result<(), String> {
            clean(floor_dir, &job_dir);
            let started = Instant::now();
            let fin = Client::send(job, &json!({"op": "checkpoint", "wait": true}))?.until(
                &["finished"],
                deadline(600),
                |_| {},
            )?;
            let took = started.elapsed();
            if fin["ok"] != true {
                return Err(format!("checkpoint failed: {fin}"));
            }
            if std::env::var_os("SNAPC_BENCH_VERBOSE").is_some() {
                eprintln!("    snapc {:.1} ms", took.as_secs_f64() * 1e3);
            }
            if round >= WARMUP {
                f.snapc_write.push(took);
            }
            Ok(())
        };
        if round % 2 == 0 {
            floor(&mut f)?;
            snapc(&mut f)?;
        } else {
            snapc(&mut f)?;
            floor(&mut f)?;
        }
    }
    // The snapshot the restarts read (the last round may have been the floor's).
    clean(floor_dir, &job_dir);
    let fin = Client::send(job, &json!({"op": "checkpoint", "wait": true}))?.until(
        &["finished"],
        deadline(600),
        |_| {},
    )?;
    if fin["ok"] != true {
        return Err(format!("checkpoint failed: {fin}"));
    }
    Ok(f)
}

/// Removes every round's files, both sides', and syncs the file system:
/// each round starts with nothing in flight, and the disk holds one
/// round's state at a time.
fn clean(floor_dir: &Path, job_dir: &Path) {
    let rounds = |dir: &Path, prefix: &str| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(prefix))
                    .is_some_and(|n| n.parse::<u64>().is_ok())
            })
            .map(|e| e.path())
            .collect()
    };
    for r in 0..RANKS {
        for old in rounds(&floor_dir.join(format!("rank-{r}")), "round-") {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    for old in rounds(job_dir, "") {
        let _ = std::fs::remove_dir_all(old);
    }
    sync_fs(floor_dir);
}

/// The newest snapshot in `job_dir`.
fn newest_snapshot(job_dir: &Path) -> Result<PathBuf, String> {
    std::fs::read_dir(job_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| {
            let n: u64 = e.file_name().into_string().ok()?.parse().ok()?;
            Some((n, e.path()))
        })
        .max()
        .map(|(_, p)| p)
        .ok_or_else(|| "no snapshot to restart from".into())
}

fn restarts(
    f: &mut Figures,
    store: &Path,
    job: &str,
    floor_dir: &Path,
    reports: &Reports,
    exe: &str,
) -> Result<(), String> {
    // The floor reads the very files snapc restarts from: the same bytes
    // laid out the same way on the disk.
    let snapshot = newest_snapshot(&store.join(job))?;
    let floor_data: Vec<PathBuf> = (0..RANKS)
        .map(|r| snapshot.join(format!("rank-{r}")))
        .collect();
    let deadline = |s| Instant::now() + Duration::from_secs(s);
    let report_s = reports.path.to_string_lossy().into_owned();
    for round in 0..WARMUP + rounds() {
        let floor = |f: &mut Figures| -> Result<(), String> {
            evict(floor_dir);
            evict(&snapshot);
            sync_fs(floor_dir);
            let started = Instant::now();
            let mut readers = Vec::new();
            for d in &floor_data {
                readers.push(
                    Command::new(exe)
                        .args(["__reader", "--dir"])
                        .arg(d)
                        .args(["--report", &report_s])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .spawn()
                        .map_err(|e| e.to_string())?,
                );
            }
            let done = reports.wait(RANKS, deadline(600), || {
                // One that read and reported has ended too, successfully.
                readers.iter_mut().find_map(|r| match r.try_wait() {
                    Ok(Some(st)) if !st.success() => Some(format!("a floor reader ended ({st})")),
                    _ => None,
                })
            });
            let took = started.elapsed();
            for mut r in readers {
                reap(&mut r, Duration::from_secs(10));
            }
            done?;
            if round >= WARMUP {
                f.floor_read.push(took);
            }
            Ok(())
        };
        let snapc = |f: &mut Figures| -> Result<(), String> {
            evict(floor_dir);
            evict(&snapshot);
            sync_fs(floor_dir);
            let started = Instant::now();
            let mut daemon =
                spawn_daemon(&["restart".into(), snapshot.to_string_lossy().into_owned()])?;
            let done = reports.wait(RANKS, deadline(600), || {
                ended(&mut daemon, "the restarted daemon")
            });
            let took = started.elapsed();
            reap(&mut daemon, Duration::from_secs(30));
            done?;
            if round >= WARMUP {
                f.snapc_read.push(took);
            }
            Ok(())
        };
        if round % 2 == 0 {
            floor(f)?;
            snapc(f)?;
        } else {
            snapc(f)?;
            floor(f)?;
        }
    }
    Ok(())
}

/// Runs the data-path measurements in each mode and writes their section;
/// the goals it checks.
pub fn section(md: &mut String, root: &Path, modes: &[Mode]) -> Result<Vec<Goal>, String> {
    use std::fmt::Write as _;
    let target = root.join("target");
    let _ = std::fs::create_dir_all(&target);
    let mib = total_bytes() >> 20;
    let _ = writeln!(md, "## Snapshot data path\n");
    // One round's state on the disk at a time, and room to spare for others.
    let need = total_bytes() + (2 << 30);
    let free = nix::sys::statvfs::statvfs(&target)
        .map(|v| v.blocks_available() * v.fragment_size())
        .unwrap_or(0);
    if free < need {
        let _ = writeln!(
            md,
            "Not run: the disk under target/ has {:.1} GiB free, and this section needs {:.1} GiB (one round's \
             {mib} MiB and 2 GiB to spare for the machine's other users).\n",
            free as f64 / f64::from(1u32 << 30),
            need as f64 / f64::from(1u32 << 30),
        );
        return Ok(Vec::new());
    }
    let mut runs: Vec<(Mode, Figures)> = Vec::new();
    for &mode in modes {
        let _load = match mode {
            Mode::Loaded => Some(Load::start()?),
            Mode::Quiet => None,
        };
        eprintln!("  {}", mode.name());
        runs.push((mode, run(&target)?));
    }
    let _ = writeln!(
        md,
        "A checkpoint whose hooks write {mib} MiB across {RANKS} ranks ({FILES} files each, 1 MiB writes), and the \
         restart that reads it back, each against the floor of the same file work done directly, on disk \
         (target/, {}). \n\n\
         - **checkpoint, snapc**: `snapc run` with {RANKS} ranks (the node daemon is this executable in a role, \
         calling what the `snapc` command calls); timed from the checkpoint request on the control socket until the \
         daemon reports the snapshot published: the signals and handshakes, each rank's checkpoint hook writing its \
         files into the directory snapc gives it (without fsync), snapc's sync of them, the attributes file, the \
         daemon's publication (metadata file, directory syncs, the rename to its sequence number).\n\
         - **checkpoint, floor**: {RANKS} processes signalled at once, each creating a directory, writing the same \
         files the same way, fsyncing each file, the directory and its parent, and saying so on a FIFO.\n\
         - **restart, snapc**: `snapc restart <store>/<job>/<seq>` started, it checks the whole snapshot, starts \
         {RANKS} ranks whose restart hook reads its files whole; timed until the last rank has read its state and \
         said so.\n\
         - **restart, floor**: {RANKS} processes started at once, each reading the same files (those of one rank of \
         the same snapshot: the same bytes, laid out the same way on the disk) whole and saying so.\n\n\
         Before each round the previous round's files (both sides') are removed and the file system synced; before each restart \
         round both sides' files are dropped from the page cache (`posix_fadvise(DONTNEED)` after they were synced), \
         so that both read from the disk, as a restart after a failure does. {} measured rounds of each after {WARMUP} \
         unmeasured, floor and snapc alternating (and taking turns at going first); the times are medians, the \
         ratios the median of each round's ratio (snapc's time over the floor's next to it: the disk is shared, \
         and its speed moves between rounds more than between neighbours).\n",
        crate::handshake::fs_type(&target),
        rounds(),
    );
    let _ = writeln!(
        md,
        "| run | checkpoint: floor | snapc | ratio | restart: floor | snapc | ratio |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    let ms = |x: f64| format!("{:.0} ms", x / 1000.0);
    let mut write = Vec::new();
    let mut read = Vec::new();
    for (mode, f) in &runs {
        let w = f.snapc_write.paired_ratio(&f.floor_write);
        let r = f.snapc_read.paired_ratio(&f.floor_read);
        write.push((*mode, w));
        read.push((*mode, r));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {w:.3}x | {} | {} | {r:.3}x |",
            mode.name(),
            ms(f.floor_write.p50()),
            ms(f.snapc_write.p50()),
            ms(f.floor_read.p50()),
            ms(f.snapc_read.p50()),
        );
    }
    let _ = writeln!(
        md,
        "\nGoal: snapc within 1.1 times the floor for both (see the summary). What snapc adds to the checkpoint is \
         the handshakes, one fsync each for the attributes file and the rank's directory (the hooks' files get the \
         fsync the floor gives them too), and at the daemon the metadata file, one fsync of the snapshot directory, \
         the rename and one fsync of the job directory; each file and directory is synced once, by whoever wrote \
         it. What it saves: while the hooks write, a thread of each rank starts the writeback of what they wrote so \
         far (`sync_file_range`, every 25 ms from 10 ms into the hook), so the disk works while the hooks fill the \
         page cache and the sync step waits for the rest only; the floor, writing and fsyncing one file after the \
         other, leaves the disk idle while it writes each file. That is why snapc can come out below the floor. \
         What snapc adds to the restart: the daemon's start, its check of every file of the snapshot (one `lstat` \
         each, names and kinds from the directory entries) and the ranks' start.\n"
    );
    Ok(vec![
        Goal::ratio(
            format!("checkpoint of {mib} MiB over {RANKS} ranks, snapc / floor"),
            "at most 1.1x",
            &write,
            |v| v <= 1.1,
        ),
        Goal::ratio(
            format!("restart read of {mib} MiB, snapc / floor"),
            "at most 1.1x",
            &read,
            |v| v <= 1.1,
        ),
    ])
}
