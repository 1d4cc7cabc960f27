//! `Snapc::pending` and `Snapc::progress_wait` in this test process, against
//! a real local coordinator (`snapc_runtime::direct`) over real FIFOs and the
//! real checkpoint signal. One test: the signal handler is process-wide.

use nix::sys::signal::{Signal, raise};
use snapc_core::app::{CheckpointResult, Outcome};
use snapc_core::wire::CrState;
use snapc_posix::app::{Config, Hooks, NoSignal, Snapc, Snapshot};
use snapc_posix::fifo::PipeDir;
use snapc_runtime::direct::{DirectRequest, checkpoint};
use std::path::Path;
use std::time::{Duration, Instant};

struct Saves(u32);

impl Hooks for Saves {
    fn checkpoint(&mut self, s: &Snapshot) -> CheckpointResult {
        self.0 += 1;
        match std::fs::write(s.dir.join("state"), self.0.to_string()) {
            Ok(()) => CheckpointResult::Continue,
            Err(_) => CheckpointResult::Error,
        }
    }

    fn restart(&mut self, _: &Path) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn pending_peeks_and_progress_wait_runs_the_signalled_checkpoint() {
    let pipes = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let config = Config {
        pipe_dir: Some(pipes.path().into()),
        store: store.path().into(),
        timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let mut snapc = Snapc::start(config, Saves(0)).unwrap();
    assert!(!snapc.pending());

    // Nothing comes: the wait ends at its deadline, having run nothing.
    let t = Instant::now();
    let timeout = Duration::from_millis(50);
    assert_eq!(snapc.progress_wait(timeout).unwrap_err(), NoSignal(timeout));
    assert!(t.elapsed() >= timeout);
    assert_eq!(snapc.hooks().0, 0);

    // A signal is pending until a progress point takes it; looking does not.
    raise(Signal::SIGUSR1).unwrap();
    assert!(snapc.pending());
    assert!(snapc.pending());
    // No coordinator answers: the handshake fails at its open deadline and
    // the signal is used up.
    match snapc.progress() {
        Some(Outcome::Handshake(r)) => assert!(r.error.is_some(), "{r:?}"),
        other => panic!("expected a failed handshake, got {other:?}"),
    }
    assert!(!snapc.pending());

    // The coordinator signals from another thread while this one waits:
    // the wait wakes and runs the whole checkpoint.
    let me = std::process::id();
    let dir = PipeDir::open(pipes.path()).unwrap();
    let mut req = DirectRequest::new(vec![me], dir, 7);
    req.store = Some(store.path().into());
    let lc = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        checkpoint(req)
    });
    let outcome = snapc.progress_wait(Duration::from_secs(60)).unwrap();
    match outcome {
        Some(Outcome::Handshake(r)) => {
            assert_eq!((r.handle, r.state, r.error), (7, CrState::Continue, None))
        }
        other => panic!("expected a checkpoint, got {other:?}"),
    }
    let results = lc.join().unwrap().unwrap();
    assert!(results[0].completed(), "{:?}", results[0]);
    assert_eq!(snapc.hooks().0, 1);
    assert!(!snapc.pending());
}
