//! One complete no-op checkpoint through real FIFOs, against the floor: a
//! bare program doing only the system work a handshake cannot avoid, in the
//! same run, alternating with it.

use crate::child::{self, FRAMES, Proc};
use crate::load::{AGREEMENT, Goal, Load, Mode};
use crate::stats::{self, Samples};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_posix::fifo::PipeDir;
use snapc_runtime::direct::{self, DirectRequest};
use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Handshakes (and floor exchanges) measured per pipe directory
/// (`SNAPC_BENCH_ROUNDS` sets another number, for working on one part).
pub const ROUNDS: usize = 400;

/// [`ROUNDS`], or `SNAPC_BENCH_ROUNDS`.
pub fn rounds() -> usize {
    std::env::var("SNAPC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}
/// Rounds run first and not counted.
pub const WARMUP: usize = 20;
/// What each child sleeps between slices of work (a signal cuts it short).
pub const NAP_US: &str = "10000";

/// The figures for one pipe directory.
pub struct Row {
    /// Where the pipes were, for humans.
    pub place: String,
    /// The floor, signal to the last frame and both names removed.
    pub floor: Samples,
    /// `direct::checkpoint` of one process, signal to release.
    pub handshake: Samples,
    /// The coordinator's own timings of each handshake, by stage (see [`STAGES`]).
    pub stages: Vec<Samples>,
    /// The floor's, by the same stages.
    pub floor_stages: Vec<Samples>,
    /// CPU time per round (µs): the floor's coordinator side and process
    /// side, snapc's coordinator and application.
    pub cpu: [Samples; 4],
    /// Times each of those was scheduled in, per round (mean).
    pub runs: [u64; 4],
}

/// The stages of a handshake as the local coordinator times them, and the
/// rest of the call (setup before the signal, release, close and removal of
/// the FIFOs after the final state).
pub const STAGES: [&str; 7] = [
    "signal until both names exist",
    "opening both FIFOs",
    "writing the options",
    "options written until the response",
    "writing the go-ahead",
    "go-ahead until the final state (hooks, store)",
    "the rest: setup, release, close, removal",
];

/// The floor's coordinator side: what snapc's local coordinator does with
/// the FIFOs and nothing else. Signals, sleeps on an inotify watch of the
/// directory (kept for the whole run, as snapc keeps its own) until both
/// names are reported, opens them as snapc does (the read end, then the
/// write end with the same backoff while the process has not opened it),
/// writes and reads the frames, each read waiting in `poll`, and closes
/// both (the process removes the names, as with snapc).
fn floor_round(
    dir: &Path,
    watch: &Inotify,
    pid: u32,
    n: u32,
) -> Result<(Duration, [Duration; 7]), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (r, w) = child::floor_names(dir, pid, n);
    let names = [r.file_name(), w.file_name()].map(|n| n.map(|n| n.to_os_string()));
    // Events of earlier rounds (removals) are not this round's.
    while let Ok(ev) = watch.read_events() {
        if ev.is_empty() {
            break;
        }
    }
    let started = Instant::now();
    let mut laps = [started; 7];
    kill(Pid::from_raw(pid as i32), Signal::SIGUSR1).map_err(|e| e.to_string())?;
    let mut seen = [false; 2];
    while !seen.iter().all(|s| *s) {
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(10_000u16)) {
            Ok(0) => return Err("floor: no names in time".into()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in watch.read_events().unwrap_or_default() {
            for (i, name) in names.iter().enumerate() {
                if ev.name.is_some() && ev.name == *name {
                    seen[i] = true;
                }
            }
        }
    }
    laps[0] = Instant::now();
    let rx = child::open_waiting(&w, OFlag::O_RDONLY, deadline, None)?;
    let tx = child::open_waiting(&r, OFlag::O_WRONLY, deadline, None)?;
    laps[1] = Instant::now();
    let mut buf = [0u8; 28];
    for (i, len) in FRAMES.iter().enumerate() {
        if i % 2 == 0 {
            child::write_frame(&tx, &buf[..*len])?;
        } else {
            child::read_exact(&rx, &mut buf[..*len], deadline)?;
        }
        if let Some(l) = laps.get_mut(i + 2) {
            *l = Instant::now();
        }
    }
    drop((rx, tx));
    let took = started.elapsed();
    let mut stages = [Duration::ZERO; 7];
    let mut prev = started;
    for (i, l) in laps.iter().take(6).enumerate() {
        stages[i] = l.saturating_duration_since(prev);
        prev = *l;
    }
    stages[6] = took.saturating_sub(prev.saturating_duration_since(started));
    Ok((took, stages))
}

fn handshake_round(
    pipes: &PipeDir,
    pid: u32,
    handle: u32,
) -> Result<(Duration, [Duration; 7]), String> {
    let req = DirectRequest::new(vec![pid], pipes.clone(), handle);
    let started = Instant::now();
    let results = direct::checkpoint(req).map_err(|e| e.to_string())?;
    let took = started.elapsed();
    match results.first() {
        Some(r) if r.completed() => {
            let t = &r.timings;
            let d =
                |x: Option<snapc_core::time::Duration>| x.map_or(Duration::ZERO, Duration::from);
            let stages = [
                d(t.fifos),
                d(t.open),
                d(t.options),
                d(t.response),
                d(t.go_ahead),
                d(t.final_state),
                took.saturating_sub(Duration::from(t.total)),
            ];
            Ok((took, stages))
        }
        Some(r) => Err(format!("handshake failed: {:?}", r.error)),
        None => Err("no result".into()),
    }
}

/// Measures both, alternating, with the pipes in `base` (the store of the
/// app's snapshots is always on tmpfs, in `store_base`).
pub fn run(place: &str, base: &Path, store_base: &Path) -> Result<Row, String> {
    let t = tempfile::tempdir_in(base).map_err(|e| format!("{}: {e}", base.display()))?;
    let store = tempfile::tempdir_in(store_base).map_err(|e| e.to_string())?;
    let pipes = PipeDir::open(t.path().join("pipes")).map_err(|e| e.to_string())?;
    let floor_dir = PipeDir::open(t.path().join("floor")).map_err(|e| e.to_string())?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (pipes_s, store_s, floor_s) = (s(pipes.path()), s(store.path()), s(floor_dir.path()));
    let mut app = Proc::start(
        "__app",
        &[
            "--pipe-dir",
            &pipes_s,
            "--store",
            &store_s,
            "--nap-us",
            NAP_US,
        ],
    )?;
    let mut floor = Proc::start("__floor", &["--dir", &floor_s, "--nap-us", NAP_US])?;
    // The coordinator side on one CPU and each process on another: every
    // frame crosses CPUs in both the floor and snapc, instead of each round
    // landing by chance on the same CPU (no wakeup across CPUs) or not,
    // which moved the medians by a factor of two between runs.
    let _pinned = Pinned::split(&[app.pid(), floor.pid()]);
    let watch = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| format!("inotify: {e}"))?;
    watch
        .add_watch(floor_dir.path(), AddWatchFlags::IN_CREATE)
        .map_err(|e| format!("inotify: {e}"))?;
    let mut row = Row {
        place: place.into(),
        floor: Samples::default(),
        handshake: Samples::default(),
        stages: vec![Samples::default(); STAGES.len()],
        floor_stages: vec![Samples::default(); STAGES.len()],
        cpu: Default::default(),
        runs: [0; 4],
    };
    for i in 0..WARMUP + rounds() {
        let (t0, c0) = (stats::thread_sched(), stats::proc_sched(floor.pid()));
        let (f, fstages) = floor_round(floor_dir.path(), &watch, floor.pid(), i as u32)?;
        let t1 = stats::thread_sched();
        floor.handshake_done(Instant::now() + Duration::from_secs(10))?;
        let (t2, c1, a0) = (
            stats::thread_sched(),
            stats::proc_sched(floor.pid()),
            stats::proc_sched(app.pid()),
        );
        let (h, stages) = handshake_round(&pipes, app.pid(), i as u32 + 1)?;
        let t3 = stats::thread_sched();
        app.handshake_done(Instant::now() + Duration::from_secs(10))?;
        let a1 = stats::proc_sched(app.pid());
        if i >= WARMUP {
            row.floor.push(f);
            row.handshake.push(h);
            for (samples, d) in row.stages.iter_mut().zip(stages) {
                samples.push(d);
            }
            for (samples, d) in row.floor_stages.iter_mut().zip(fstages) {
                samples.push(d);
            }
            for (k, d) in [t1 - t0, c1 - c0, t3 - t2, a1 - a0].into_iter().enumerate() {
                row.cpu[k].push(Duration::from_nanos(d.cpu_ns));
                row.runs[k] += d.runs;
            }
        }
    }
    for r in &mut row.runs {
        *r /= rounds().max(1) as u64;
    }
    Ok(row)
}

/// Pipe directories measured: tmpfs, and disk under the workspace's target/.
pub fn pipe_places(root: &Path) -> Vec<(String, PathBuf)> {
    let target = root.join("target");
    let _ = std::fs::create_dir_all(&target);
    vec![
        (
            format!("tmpfs (/dev/shm, {})", fs_type(Path::new("/dev/shm"))),
            PathBuf::from("/dev/shm"),
        ),
        (format!("disk (target/, {})", fs_type(&target)), target),
    ]
}

/// The type of the filesystem holding `path`, from /proc/mounts.
pub fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mnt).then(|| (mnt.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

/// Runs the handshake measurements in each mode and writes their section;
/// the goals it checks.
pub fn section(md: &mut String, root: &Path, modes: &[Mode]) -> Result<Vec<Goal>, String> {
    let mut rows: Vec<(Mode, Row)> = Vec::new();
    for &mode in modes {
        let _load = match mode {
            Mode::Loaded => Some(Load::start()?),
            Mode::Quiet => None,
        };
        for (place, base) in pipe_places(root) {
            eprintln!("  {}: pipes on {place}", mode.name());
            rows.push((mode, run(&place, &base, Path::new("/dev/shm"))?));
        }
    }
    let _ = writeln!(md, "## Handshake: one no-op checkpoint against the floor\n");
    let _ = writeln!(
        md,
        "**snapc**: `snapc_runtime::direct::checkpoint` in the bench process (the local coordinator and a one-node \
         global coordinator) checkpoints one application process (`snapc-bench __app`: `Snapc::start` with hooks that \
         save nothing, `progress()` between slices of work of a few microseconds, and naps of 10 ms that the signal \
         ends). Timed from just before the call (its setup and the checks before the signal count) until it returns: \
         the process created its FIFOs, both sides opened them, the options, response, go-ahead, final state and \
         release frames went through, the app ran its (empty) hooks and its store steps (its snapshot directory, \
         created and synced, with its attributes file), and the coordinator closed the FIFOs. The app's snapshot store \
         is on tmpfs in both rows (the variable is the pipe directory).\n\n\
         **floor**: a bare program doing the same FIFO work and nothing else, in two processes (`snapc-bench __floor` \
         and the bench). The bench signals the process, sleeps on an inotify watch of the directory (kept for the \
         whole run, as snapc keeps its own) until both names are reported, opens the read end, then the write end \
         (retrying with snapc's backoff while the process has not opened it), writes the options, reads the response, \
         writes the go-ahead, reads the final state, writes the release (each read sleeping in `poll`), and closes \
         both. The process, napping the same way, creates both FIFOs, opens the one it reads read-write and the one \
         it writes write-only once the options arrive (the same cue and retries as snapc), exchanges the same {} \
         frames ({} bytes), closes both and removes both names. No checks, no library, no store.\n\n\
         Both children nap in `ppoll` with the checkpoint signal blocked outside the naps, so a signal never lands \
         just before a nap. The coordinator sides (the bench) run on one CPU and both children on another \
         (`sched_setaffinity`), so that every frame crosses CPUs in both, as between a node's daemon and a rank; \
         left to the scheduler, some rounds ran both ends on one CPU and others not, and the medians moved by up \
         to two times between runs. {} rounds of each per directory after {} unmeasured, floor and snapc \
         alternating so that both see the same load.\n",
        child::FRAMES.len(),
        child::FRAMES.map(|b| b.to_string()).join(", "),
        rounds(),
        WARMUP,
    );
    let _ = writeln!(
        md,
        "| pipe directory | run | floor p50 | snapc p50 | p50 ratio | floor p99 | snapc p99 | p99 ratio |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (mode, r) in &rows {
        let (f50, h50, f99, h99) = (
            r.floor.p50(),
            r.handshake.p50(),
            r.floor.p99(),
            r.handshake.p99(),
        );
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2}x | {} | {} | {:.2}x |",
            r.place,
            mode.name(),
            stats::us(f50),
            stats::us(h50),
            h50 / f50,
            stats::us(f99),
            stats::us(h99),
            h99 / f99
        );
    }
    let mut goals = Vec::new();
    for (place, _) in pipe_places(root) {
        let values: Vec<(Mode, f64)> = rows
            .iter()
            .filter(|(_, r)| r.place == place)
            .map(|(m, r)| (*m, r.handshake.p50() / r.floor.p50()))
            .collect();
        goals.push(Goal::ratio(
            format!("handshake p50 / floor p50, pipes on {place}"),
            "at most 1.5x",
            &values,
            |v| v <= 1.5,
        ));
    }
    let _ = writeln!(
        md,
        "\nGoal: snapc p50 within 1.5 times the floor's, the loaded run's ratio within {:.0}% of the quiet run's \
         (see the summary).\n",
        AGREEMENT * 100.0
    );
    let _ = writeln!(
        md,
        "Where snapc's time goes: the local coordinator's own timing of each stage (`DirectResult::timings`), median \
         µs. Then what each side ran (`/proc/.../schedstat`): CPU time per round, median µs, and the times it was \
         scheduled in per round (each wakeup from a sleep is one); a side that is still working when its peer's \
         frame comes needs no wakeup for it.\n"
    );
    let _ = write!(md, "| stage (floor / snapc) |");
    for (mode, r) in &rows {
        let _ = write!(md, " {}, {} |", r.place, mode.name());
    }
    let _ = write!(md, "\n|---|");
    for _ in &rows {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    for (i, name) in STAGES.iter().enumerate() {
        let _ = write!(md, "| {name} |");
        for (_, r) in &rows {
            let _ = write!(
                md,
                " {:.0} / {:.0} |",
                r.floor_stages[i].p50(),
                r.stages[i].p50()
            );
        }
        let _ = writeln!(md);
    }
    for (i, name) in [
        "CPU: floor coordinator",
        "CPU: floor process",
        "CPU: snapc coordinator",
        "CPU: snapc application",
    ]
    .iter()
    .enumerate()
    {
        let _ = write!(md, "| {name} |");
        for (_, r) in &rows {
            let _ = write!(md, " {:.0} µs, {} runs |", r.cpu[i].p50(), r.runs[i]);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md);
    why_missed(md, &rows);
    Ok(goals)
}

/// What each stage costs snapc beyond the floor, from the first row over
/// the goal, with the work snapc does there that the floor does not.
fn why_missed(md: &mut String, rows: &[(Mode, Row)]) {
    let Some((mode, r)) = rows
        .iter()
        .find(|(_, r)| r.handshake.p50() / r.floor.p50() > 1.5)
    else {
        return;
    };
    // The work behind each stage that the floor has no counterpart for.
    const WHY: [&str; 7] = [
        "the coordinator's checks before the signal (the target's /proc entries, that it catches the signal) and \
         the application's claim of its FIFO (flock) and its checks of each name it creates",
        "fstat, owner and flock of each end",
        "the owner check of the end written to",
        "the application wakes for the options, hands them to its machine, runs its (empty) prepare hook and \
         answers; the floor's process only reads and writes. Where one side is still running when its peer's \
         frame comes it needs no wakeup (about 40 µs on this machine): the CPU rows show who slept",
        "",
        "the application's store steps: its snapshot directory created and checked level by level (mkdir, open, \
         fstat, owner), the directory listed for the hooks' files to sync, the attributes file written and \
         fsynced, the directory fsynced",
        "the release's unlink of only the checked inode (an lstat before each unlink) and the coordinator's setup",
    ];
    let total = r.handshake.p50() - r.floor.p50();
    let _ = writeln!(
        md,
        "Why the goal is missed ({}, {}): snapc's p50 is {:.0} µs above the floor's, {:.2} times the 1.5x allowed. \
         By stage, snapc's median beyond the floor's (the stage medians do not add up exactly to the totals' medians):\n",
        r.place,
        mode.name(),
        total,
        r.handshake.p50() / r.floor.p50() / 1.5
    );
    let mut extra: Vec<(usize, f64)> = (0..STAGES.len())
        .map(|i| (i, r.stages[i].p50() - r.floor_stages[i].p50()))
        .filter(|(_, d)| *d >= 5.0)
        .collect();
    extra.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (i, d) in extra {
        let why = WHY.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            md,
            "- {}: +{:.0} µs{}{}",
            STAGES[i],
            d,
            if why.is_empty() { "" } else { ": " },
            why
        );
    }
    let _ = writeln!(
        md,
        "\nEach of these is a check the trust and one-handshake issues require, or the store's durability; the \
         critical path already overlaps what can wait (the environment read while the process checkpoints, the \
         writeback of the hooks' files while they run), so what remains would need weaker checks to cut.\n"
    );
}

/// The calling thread pinned to the first CPU it may use and every thread
/// of the given processes to the next one, for the life of the value (the
/// calling thread's CPUs are restored on drop). Nothing is pinned on a
/// single CPU.
struct Pinned(Option<CpuSet>);

impl Pinned {
    fn split(pids: &[u32]) -> Self {
        let me = Pid::from_raw(0);
        let Ok(all) = sched_getaffinity(me) else {
            return Pinned(None);
        };
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|c| all.is_set(*c).unwrap_or(false))
            .collect();
        let (Some(&here), Some(&there)) = (cpus.first(), cpus.get(1)) else {
            return Pinned(None);
        };
        let one = |c: usize| {
            let mut set = CpuSet::new();
            let _ = set.set(c);
            set
        };
        for pid in pids {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten();
            for task in tasks.flatten() {
                if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                    let _ = sched_setaffinity(Pid::from_raw(tid), &one(there));
                }
            }
        }
        let _ = sched_setaffinity(me, &one(here));
        Pinned(Some(all))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(all) = &self.0 {
            let _ = sched_setaffinity(Pid::from_raw(0), all);
        }
    }
}
