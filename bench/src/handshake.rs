//! One complete no-op checkpoint through real FIFOs, against the floor: a
//! bare program doing only the system work a handshake cannot avoid, in the
//! same run, alternating with it.

use crate::child::{self, FRAMES, Proc};
use crate::stats::Samples;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, unlink};
use snapc_posix::fifo::PipeDir;
use snapc_runtime::direct::{self, DirectRequest};
use std::path::Path;
use std::time::{Duration, Instant};

/// Handshakes (and floor exchanges) measured per pipe directory.
pub const ROUNDS: usize = 400;
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

fn floor_round(dir: &Path, pid: u32, n: u32) -> Result<Duration, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (r, w) = child::floor_names(dir, pid, n);
    let started = Instant::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGUSR1).map_err(|e| e.to_string())?;
    let rx = child::open_spinning(&w, OFlag::O_RDONLY, deadline)?;
    let tx = child::open_spinning(&r, OFlag::O_WRONLY, deadline)?;
    let mut buf = [0u8; 28];
    for (i, len) in FRAMES.iter().enumerate() {
        if i % 2 == 0 {
            child::write_frame(&tx, &buf[..*len])?;
        } else {
            child::read_exact(&rx, &mut buf[..*len], deadline)?;
        }
    }
    unlink(&r).map_err(|e| e.to_string())?;
    unlink(&w).map_err(|e| e.to_string())?;
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
    let mut row = Row {
        place: place.into(),
        floor: Samples::default(),
        handshake: Samples::default(),
        stages: vec![Samples::default(); STAGES.len()],
    };
    for i in 0..WARMUP + ROUNDS {
        let f = floor_round(floor_dir.path(), floor.pid(), i as u32)?;
        floor.handshake_done(Instant::now() + Duration::from_secs(10))?;
        let (h, stages) = handshake_round(&pipes, app.pid(), i as u32 + 1)?;
        app.handshake_done(Instant::now() + Duration::from_secs(10))?;
        if i >= WARMUP {
            row.floor.push(f);
            row.handshake.push(h);
            for (samples, d) in row.stages.iter_mut().zip(stages) {
                samples.push(d);
            }
        }
    }
    Ok(row)
}
