//! One complete no-op checkpoint through real FIFOs, against the floor: a
//! bare program doing only the system work a handshake cannot avoid, in the
//! same run, alternating with it.

use crate::child::{self, FRAMES, Proc};
use crate::stats::{self, Samples};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use snapc_posix::fifo::PipeDir;
use snapc_runtime::direct::{self, DirectRequest};
use std::os::fd::AsFd;
use std::path::Path;
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
fn floor_round(dir: &Path, watch: &Inotify, pid: u32, n: u32) -> Result<Duration, String> {
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
    let rx = child::open_waiting(&w, OFlag::O_RDONLY, deadline, None)?;
    let tx = child::open_waiting(&r, OFlag::O_WRONLY, deadline, None)?;
    let mut buf = [0u8; 28];
    for (i, len) in FRAMES.iter().enumerate() {
        if i % 2 == 0 {
            child::write_frame(&tx, &buf[..*len])?;
        } else {
            child::read_exact(&rx, &mut buf[..*len], deadline)?;
        }
    }
    drop((rx, tx));
    Ok(started.elapsed())
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
        cpu: Default::default(),
        runs: [0; 4],
    };
    for i in 0..WARMUP + rounds() {
        let (t0, c0) = (stats::thread_sched(), stats::proc_sched(floor.pid()));
        let f = floor_round(floor_dir.path(), &watch, floor.pid(), i as u32)?;
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
