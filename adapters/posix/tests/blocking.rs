//! The app coordinator's blocking driver (`snapc_core::app::blocking`) over
//! real FIFOs: a [`Channel`] is an `embedded-io` byte stream, and a local
//! coordinator written from docs/PROTOCOL.md §4 as raw host-order integers
//! plays the other side in a thread. Also: a local coordinator that goes
//! silent ends the handshake at the app's read deadline, not in a hang.

use snapc_core::app::blocking::{self, Host};
use snapc_core::app::{
    CheckpointFlag, CheckpointResult, Config, HostError, PrepareResult, SstoreOp, Wait, WaitFailure,
};
use snapc_core::time::{Duration as CoreDuration, Instant as CoreInstant};
use snapc_core::wire::{ChannelNames, CrState, FifoOptions, ProcessName};
use snapc_core::{AppCoordinator, IoError, Reference};
use snapc_posix::fifo::{Channel, PipeDir};
use std::thread;
use std::time::{Duration, Instant};

/// A generous bound for every wait of these tests (loaded machines).
const LONG: Duration = Duration::from_secs(30);

struct Process {
    dir: PipeDir,
    origin: Instant,
    checkpoints: u32,
    recovered: Vec<CrState>,
    to_daemon: Vec<Vec<u8>>,
}

impl Host for Process {
    type Channel = Channel;

    fn now(&mut self) -> CoreInstant {
        CoreInstant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    fn wait(&mut self, until: Option<CoreInstant>) {
        let now = self.now();
        let left = until.map_or(CoreDuration::from_millis(1), |t| t - now);
        thread::sleep(Duration::from(left).min(Duration::from_micros(200)));
    }

    fn open(&mut self, names: &ChannelNames) -> Result<Channel, IoError> {
        Channel::open_app(&self.dir, *names, Instant::now() + LONG).map_err(|e| {
            eprintln!("open: {e}");
            IoError::Failed
        })
    }

    fn prepare(&mut self) -> PrepareResult {
        PrepareResult::Ready
    }

    fn checkpoint(&mut self, _handle: u32, _options: &FifoOptions) -> CheckpointResult {
        self.checkpoints += 1;
        CheckpointResult::Continue
    }

    fn recover(&mut self, state: CrState) -> Result<(), HostError> {
        self.recovered.push(state);
        Ok(())
    }

    fn sstore(&mut self, _op: &SstoreOp) -> Result<(), HostError> {
        Ok(())
    }

    fn sstore_global(&mut self, _handle: u32) -> (Option<i32>, Option<Reference>) {
        (None, None)
    }

    fn send_to_daemon(&mut self, message: &[u8]) {
        self.to_daemon.push(message.to_vec());
    }
}

fn words(ws: &[i32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

fn int(ch: &Channel) -> i32 {
    let mut b = [0u8; 4];
    ch.rx.read_exact(&mut b, Instant::now() + LONG).unwrap();
    i32::from_ne_bytes(b)
}

/// The local coordinator's side of one handshake, as raw integers; `silent`
/// stops after the options (it keeps its ends open and says nothing more).
fn local_coordinator(dir: PipeDir, names: ChannelNames, silent: bool) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let ch = Channel::open_local(&dir, names, Instant::now() + LONG).unwrap();
        let deadline = Instant::now() + LONG;
        // Options: no flags; the sstore handle 42.
        let mut options = words(&[0, 0, 0, 0, 0, 0]);
        options.extend_from_slice(&42u32.to_ne_bytes());
        ch.tx.write_all(&options, deadline).unwrap();
        assert_eq!(int(&ch), 0, "START");
        if silent {
            // Hold the channel until the app gave up on the go-ahead.
            thread::sleep(Duration::from_millis(600));
            return;
        }
        ch.tx.write_all(&words(&[0]), deadline).unwrap();
        assert_eq!(int(&ch), 4, "final state CONTINUE");
        ch.tx.write_all(&words(&[0]), deadline).unwrap();
    })
}

fn process(dir: &PipeDir) -> Process {
    Process {
        dir: dir.clone(),
        origin: Instant::now(),
        checkpoints: 0,
        recovered: Vec::new(),
        to_daemon: Vec::new(),
    }
}

#[test]
fn blocking_handshake_over_real_fifos() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PipeDir::open(tmp.path().join("pipes")).unwrap();
    let flag: &'static CheckpointFlag = Box::leak(Box::new(CheckpointFlag::new()));
    let pid = std::process::id();
    let name = ProcessName { jobid: 7, vpid: 0 };
    let mut app = AppCoordinator::new(Config::new(pid, name, true), flag);

    // A whole handshake.
    let lc = local_coordinator(dir.clone(), ChannelNames { pid, n: 0 }, false);
    let mut host = process(&dir);
    flag.request();
    let report = blocking::run_handshake(&mut app, &mut host).unwrap();
    lc.join().unwrap();
    assert_eq!(report.error, None);
    assert_eq!((report.handle, report.state), (42, CrState::Continue));
    assert_eq!(host.checkpoints, 1);
    assert_eq!(host.recovered, [CrState::Continue]);
    // LOCAL_FINISH(CONTINUE) for the node daemon (docs/PROTOCOL.md §6).
    assert_eq!(
        host.to_daemon,
        [vec![0, 0, 0, 1, 5, 0, 0, 0, 1, 9, 0, 0, 0, 4]]
    );
    assert!(app.is_idle());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "FIFOs unlinked"
    );

    // A local coordinator that goes silent: the read deadline ends it.
    let mut config = *app.config();
    config.deadlines.read = CoreDuration::from_millis(200);
    let mut app = AppCoordinator::new(config, flag);
    let lc = local_coordinator(dir.clone(), ChannelNames { pid, n: 0 }, true);
    let mut host = process(&dir);
    let started = Instant::now();
    flag.request();
    let report = blocking::run_handshake(&mut app, &mut host).unwrap();
    let error = report.error.unwrap();
    assert_eq!(
        (error.wait, error.failure),
        (Wait::GoAhead, WaitFailure::Deadline)
    );
    assert!(started.elapsed() < LONG);
    assert_eq!(host.checkpoints, 0);
    assert!(app.is_idle());
    lc.join().unwrap();
}
