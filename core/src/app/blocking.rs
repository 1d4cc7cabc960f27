//! A blocking driver for the app coordinator over any `embedded-io` byte
//! stream.
//!
//! **Where it fits**: a process without poll(2) (bare metal, an RTOS), or
//! one whose link to its local coordinator is a UART, a shared-memory ring
//! or a socket rather than a pair of FIFOs. The protocol is the same: the
//! stream carries the handshake's frames, options and go-ahead and release
//! one way, response and states the other (docs/PROTOCOL.md §4), byte for
//! byte. [`run_handshake`] runs one handshake at the application's progress
//! point, from the checkpoint request to its end, answering every action
//! through a [`Host`]: the host opens the stream, calls the application's
//! hooks and sstore, and passes messages on to the node daemon.
//!
//! **Deadlines**: a read waits only while the stream says nothing is ready
//! ([`embedded_io::ReadReady`]); in between, the driver reads the host's
//! clock and gives the machine its timeouts, and the host idles in
//! [`Host::wait`] (a sleep, a WFI, an RTOS wait). Every wait of the
//! handshake is therefore bounded, as with the POSIX adapter. Writes are
//! frames of at most 36 bytes and are not bounded by the driver: a stream
//! whose write can block for long must bound it itself (and fail).
//!
//! Where it does not fit: a process that must keep computing while the
//! local coordinator is slow. Use the machine directly then (the crate's
//! front page), as the POSIX adapter does, answering actions from its own
//! event loop.
//!
//! ```
//! use core::convert::Infallible;
//! use embedded_io::{ErrorType, Read, ReadReady, Write};
//! use snapc_core::app::blocking::{self, Host};
//! use snapc_core::app::{CheckpointFlag, CheckpointResult, Config, HostError, PrepareResult, SstoreOp};
//! use snapc_core::time::{Duration, Instant};
//! use snapc_core::wire::fifo::{self, OptionsFrame};
//! use snapc_core::wire::{ChannelNames, CrState, CkptResponse, FifoOptions, ProcessName};
//! use snapc_core::{AppCoordinator, IoError, Reference};
//!
//! /// A local coordinator reduced to its bytes: what it sends, and what it got.
//! struct Script<'a> {
//!     from_lc: &'a [u8],
//!     to_lc: heapless::Vec<u8, 16>,
//! }
//! impl ErrorType for Script<'_> {
//!     type Error = Infallible;
//! }
//! impl Read for Script<'_> {
//!     fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
//!         self.from_lc.read(buf)
//!     }
//! }
//! impl ReadReady for Script<'_> {
//!     fn read_ready(&mut self) -> Result<bool, Infallible> {
//!         Ok(true)
//!     }
//! }
//! impl Write for Script<'_> {
//!     fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
//!         let n = buf.len().min(self.to_lc.capacity() - self.to_lc.len());
//!         self.to_lc.extend_from_slice(&buf[..n]).unwrap();
//!         Ok(n)
//!     }
//!     fn flush(&mut self) -> Result<(), Infallible> {
//!         Ok(())
//!     }
//! }
//!
//! /// The process around the machine: a clock, the application's hooks, sstore.
//! struct Process<'a> {
//!     clock: Instant,
//!     lc: Option<Script<'a>>,
//!     sent_to_lc: heapless::Vec<u8, 16>,
//! }
//! impl<'a> Host for Process<'a> {
//!     type Channel = Script<'a>;
//!     fn now(&mut self) -> Instant {
//!         self.clock += Duration::from_millis(1);
//!         self.clock
//!     }
//!     fn wait(&mut self, _until: Option<Instant>) {}
//!     fn open(&mut self, _names: &ChannelNames) -> Result<Script<'a>, IoError> {
//!         self.lc.take().ok_or(IoError::Failed)
//!     }
//!     fn close(&mut self, _names: &ChannelNames, channel: Script<'a>) {
//!         self.sent_to_lc = channel.to_lc;
//!     }
//!     fn prepare(&mut self) -> PrepareResult {
//!         PrepareResult::Ready
//!     }
//!     fn checkpoint(&mut self, _handle: u32, _options: &FifoOptions) -> CheckpointResult {
//!         CheckpointResult::Continue
//!     }
//!     fn recover(&mut self, _state: CrState) -> Result<(), HostError> {
//!         Ok(())
//!     }
//!     fn sstore(&mut self, _op: &SstoreOp) -> Result<(), HostError> {
//!         Ok(())
//!     }
//!     fn sstore_global(&mut self, _handle: u32) -> (Option<i32>, Option<Reference>) {
//!         (None, None)
//!     }
//!     fn send_to_daemon(&mut self, _message: &[u8]) {}
//! }
//!
//! // What the local coordinator says: options (handle 7), go-ahead, release.
//! let mut from_lc = heapless::Vec::<u8, 64>::new();
//! let options = OptionsFrame { options: FifoOptions::default(), handle: 7 };
//! from_lc.extend_from_slice(&options.to_bytes()).unwrap();
//! from_lc.extend_from_slice(&fifo::GO_AHEAD).unwrap();
//! from_lc.extend_from_slice(&fifo::RELEASE).unwrap();
//!
//! static FLAG: CheckpointFlag = CheckpointFlag::new();
//! let name = ProcessName { jobid: 1, vpid: 0 };
//! let mut app = AppCoordinator::new(Config::new(4242, name, true), &FLAG);
//! let mut process = Process {
//!     clock: Instant::ZERO,
//!     lc: Some(Script { from_lc: &from_lc, to_lc: heapless::Vec::new() }),
//!     sent_to_lc: heapless::Vec::new(),
//! };
//!
//! FLAG.request(); // what the signal handler does
//! let report = blocking::run_handshake(&mut app, &mut process).unwrap();
//! assert_eq!((report.handle, report.state, report.error), (7, CrState::Continue, None));
//! // The process answered START, then CONTINUE as its final state.
//! let mut want = fifo::response_frame(CkptResponse::Start).to_vec();
//! want.extend_from_slice(&fifo::cr_state_frame(CrState::Continue));
//! assert_eq!(&process.sent_to_lc[..], &want[..]);
//! assert!(app.is_idle());
//! ```

use super::{
    Action, AppCoordinator, CheckpointResult, HandshakeReport, HostError, Outcome, PrepareResult,
    SstoreOp,
};
use crate::time::Instant;
use crate::wire::io::{FrameReader, ReadError, WriteError, write_frame};
use crate::wire::{ChannelNames, CrState, FifoOptions};
use crate::{IoError, MAX_MESSAGE_LEN, MessageBuf, Reference};
use embedded_io::{Error as _, ErrorKind, Read, ReadReady, Write};

/// What [`run_handshake`] needs from the process around the machine.
///
/// Each method answers one kind of [`Action`]; the driver calls them in the
/// order the machine asks.
pub trait Host {
    /// The byte stream to the local coordinator: reads bring its frames,
    /// writes carry this process's.
    type Channel: Read + ReadReady + Write;

    /// The current time (monotonic).
    fn now(&mut self) -> Instant;

    /// Idles until `until` (a deadline; `None`: none) or until the channel
    /// may have bytes, whichever comes first. Returning early is fine.
    fn wait(&mut self, until: Option<Instant>);

    /// Opens the channel named `names` ([`Action::OpenChannel`]): both FIFOs
    /// on POSIX, whatever the link is elsewhere.
    fn open(&mut self, names: &ChannelNames) -> Result<Self::Channel, IoError>;

    /// Closes the channel ([`Action::Close`]); dropping it is the default.
    fn close(&mut self, names: &ChannelNames, channel: Self::Channel) {
        let _ = (names, channel);
    }

    /// Removes the channel's names ([`Action::Unlink`]), where it has any.
    fn unlink(&mut self, names: &ChannelNames) {
        let _ = names;
    }

    /// The application's prepare hook ([`Action::Prepare`]).
    fn prepare(&mut self) -> PrepareResult;

    /// The application's checkpointer ([`Action::Checkpoint`]).
    fn checkpoint(&mut self, handle: u32, options: &FifoOptions) -> CheckpointResult;

    /// The application's recover hook ([`Action::Recover`]).
    fn recover(&mut self, state: CrState) -> Result<(), HostError>;

    /// An sstore operation ([`Action::Sstore`]) other than
    /// [`SstoreOp::ReadGlobal`]; the result matters for the answered ones.
    fn sstore(&mut self, op: &SstoreOp) -> Result<(), HostError>;

    /// [`SstoreOp::ReadGlobal`]: the global sequence number and reference.
    fn sstore_global(&mut self, handle: u32) -> (Option<i32>, Option<Reference>);

    /// A message for the node daemon ([`Action::SendToDaemon`]).
    fn send_to_daemon(&mut self, message: &[u8]);

    /// A report ([`Action::Outcome`]); ignored by default.
    fn report(&mut self, outcome: &Outcome) {
        let _ = outcome;
    }
}

/// Runs the handshake a checkpoint request asks for, if one is pending (or
/// resumes a stalled prepare), until the machine waits for nothing this
/// driver provides: the handshake ended, the process is quiesced, stalled
/// (its prepare said "not now": call again at a later progress point) or
/// awaits termination. Returns the report of the handshake that ended, if
/// one did.
pub fn run_handshake<H: Host>(
    app: &mut AppCoordinator<'_>,
    host: &mut H,
) -> Option<HandshakeReport> {
    let mut driver = Driver {
        channel: None,
        reading: None,
        ended: None,
        out: [0; MAX_MESSAGE_LEN],
    };
    app.handle_progress(host.now());
    loop {
        driver.drain(app, host);
        if driver.reading.is_none() {
            return driver.ended;
        }
        driver.await_frame(app, host);
    }
}

struct Driver<C> {
    channel: Option<C>,
    reading: Option<FrameReader>,
    ended: Option<HandshakeReport>,
    out: MessageBuf,
}

impl<C: Read + ReadReady + Write> Driver<C> {
    /// Carries out every queued action, answering each at once.
    fn drain<H: Host<Channel = C>>(&mut self, app: &mut AppCoordinator<'_>, host: &mut H) {
        while let Some(action) = app.poll_action(&mut self.out) {
            // An answer the machine does not take (it moved on) is counted
            // by the machine; nothing is left to do about it here.
            let _ = self.act(app, host, action);
        }
    }

    fn act<H: Host<Channel = C>>(
        &mut self,
        app: &mut AppCoordinator<'_>,
        host: &mut H,
        action: Action,
    ) -> Result<(), super::InputError> {
        match action {
            Action::OpenChannel { names } => match host.open(&names) {
                Ok(channel) => {
                    self.channel = Some(channel);
                    app.handle_opened(host.now())
                }
                Err(e) => app.handle_io_error(host.now(), e),
            },
            Action::Read { len, .. } => {
                self.reading = Some(FrameReader::new(len));
                Ok(())
            }
            Action::Write { bytes, .. } => {
                let result = match self.channel.as_mut() {
                    Some(channel) => write_frame(channel, &bytes).map_err(write_failure),
                    None => Err(IoError::Failed),
                };
                match result {
                    Ok(()) => app.handle_write_done(host.now()),
                    Err(e) => app.handle_io_error(host.now(), e),
                }
            }
            Action::Prepare => {
                let result = host.prepare();
                app.handle_prepare(host.now(), result)
            }
            Action::Checkpoint { handle, options } => {
                let result = host.checkpoint(handle, &options);
                app.handle_checkpoint(host.now(), result)
            }
            Action::Recover { state } => {
                let result = host.recover(state);
                app.handle_recovered(host.now(), result)
            }
            Action::Sstore(SstoreOp::ReadGlobal { handle }) => {
                let (seq, reference) = host.sstore_global(handle);
                app.handle_sstore_global(host.now(), seq, reference.as_deref())
            }
            Action::Sstore(op @ (SstoreOp::ReadLocation { .. } | SstoreOp::Sync { .. })) => {
                let result = host.sstore(&op);
                app.handle_sstore(host.now(), result)
            }
            Action::Sstore(op) => {
                // Not answered: the machine does not wait for these.
                let _ = host.sstore(&op);
                Ok(())
            }
            Action::SendToDaemon { len } => {
                host.send_to_daemon(self.out.get(..len).unwrap_or_default());
                Ok(())
            }
            Action::Close { names } => {
                self.reading = None;
                if let Some(channel) = self.channel.take() {
                    host.close(&names, channel);
                }
                Ok(())
            }
            Action::Unlink { names } => {
                host.unlink(&names);
                // Unlink is the teardown's last action.
                app.handle_teardown_done(host.now())
            }
            Action::AwaitTermination => Ok(()),
            Action::Outcome(outcome) => {
                if let Outcome::Handshake(report) = &outcome {
                    self.ended = Some(*report);
                }
                host.report(&outcome);
                Ok(())
            }
        }
    }

    /// Reads the pending frame as bytes become ready, giving the machine its
    /// timeouts in between; returns once the read ended one way or another.
    fn await_frame<H: Host<Channel = C>>(&mut self, app: &mut AppCoordinator<'_>, host: &mut H) {
        loop {
            let now = host.now();
            if app.poll_timeout().is_some_and(|t| t <= now) {
                self.reading = None;
                app.handle_timeout(now);
                return;
            }
            let (Some(channel), Some(reader)) = (self.channel.as_mut(), self.reading.as_mut())
            else {
                self.reading = None;
                let _ = app.handle_io_error(now, IoError::Failed);
                return;
            };
            match channel.read_ready() {
                Ok(true) => {}
                Ok(false) => {
                    host.wait(app.poll_timeout());
                    continue;
                }
                Err(e) => {
                    self.reading = None;
                    let _ = app.handle_io_error(now, io_failure(e.kind()));
                    return;
                }
            }
            match reader.read_some(channel) {
                Ok(None) => {}
                Ok(Some(frame)) => {
                    let _ = app.handle_read(host.now(), frame);
                    self.reading = None;
                    return;
                }
                Err(e) => {
                    self.reading = None;
                    let failure = match e {
                        ReadError::Eof => IoError::PeerGone,
                        ReadError::Io(e) => io_failure(e.kind()),
                        _ => IoError::Failed,
                    };
                    let _ = app.handle_io_error(now, failure);
                    return;
                }
            }
        }
    }
}

/// A stream error as the machine sees it: the peer gone, or another failure.
fn io_failure(kind: ErrorKind) -> IoError {
    match kind {
        ErrorKind::BrokenPipe
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::NotConnected => IoError::PeerGone,
        _ => IoError::Failed,
    }
}

fn write_failure<E: embedded_io::Error>(e: WriteError<E>) -> IoError {
    match e {
        WriteError::Io(e) => io_failure(e.kind()),
        // A writer that takes nothing more has no reader left.
        WriteError::WriteZero => IoError::PeerGone,
        _ => IoError::Failed,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::app::{CheckpointFlag, Config, Wait, WaitFailure};
    use crate::time::Duration;
    use crate::wire::fifo::{self, OptionsFrame};
    use crate::wire::{CkptResponse, ProcessName};
    use core::convert::Infallible;
    use embedded_io::{ErrorType, Read, ReadReady, Write};
    use std::vec::Vec;

    /// A scripted local coordinator: its bytes, and how the stream behaves
    /// once they are used up.
    struct Script {
        from_lc: Vec<u8>,
        to_lc: Vec<u8>,
        /// After the script: EOF (true) or nothing ever ready (false).
        eof: bool,
        /// Writes accept nothing.
        full: bool,
    }

    impl ErrorType for Script {
        type Error = Infallible;
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            // One byte at a time: frames arrive in pieces.
            match (self.from_lc.is_empty(), buf.first_mut()) {
                (false, Some(b)) => {
                    *b = self.from_lc.remove(0);
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    impl ReadReady for Script {
        fn read_ready(&mut self) -> Result<bool, Infallible> {
            Ok(!self.from_lc.is_empty() || self.eof)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            if self.full {
                return Ok(0);
            }
            self.to_lc.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Infallible> {
            Ok(())
        }
    }

    struct Process {
        clock: Instant,
        script: Option<Script>,
        waits: u32,
        outcomes: Vec<Outcome>,
    }

    impl Host for Process {
        type Channel = Script;
        fn now(&mut self) -> Instant {
            self.clock
        }
        fn wait(&mut self, until: Option<Instant>) {
            // Time passes only here: straight to the deadline.
            self.waits += 1;
            self.clock = until.unwrap_or(self.clock + Duration::from_secs(1));
        }
        fn open(&mut self, _names: &ChannelNames) -> Result<Script, IoError> {
            self.script.take().ok_or(IoError::Failed)
        }
        fn prepare(&mut self) -> PrepareResult {
            PrepareResult::Ready
        }
        fn checkpoint(&mut self, _handle: u32, _options: &FifoOptions) -> CheckpointResult {
            CheckpointResult::Continue
        }
        fn recover(&mut self, _state: CrState) -> Result<(), HostError> {
            Ok(())
        }
        fn sstore(&mut self, _op: &SstoreOp) -> Result<(), HostError> {
            Ok(())
        }
        fn sstore_global(&mut self, _handle: u32) -> (Option<i32>, Option<Reference>) {
            (None, None)
        }
        fn send_to_daemon(&mut self, _message: &[u8]) {}
        fn report(&mut self, outcome: &Outcome) {
            self.outcomes.push(outcome.clone());
        }
    }

    fn process(script: Option<Script>) -> Process {
        Process {
            clock: Instant::from_secs(10),
            script,
            waits: 0,
            outcomes: Vec::new(),
        }
    }

    fn options() -> Vec<u8> {
        OptionsFrame {
            options: FifoOptions::default(),
            handle: 3,
        }
        .to_bytes()
        .to_vec()
    }

    fn run(from_lc: Vec<u8>, eof: bool, full: bool) -> (HandshakeReport, Process) {
        let flag: &'static CheckpointFlag = std::boxed::Box::leak(std::boxed::Box::default());
        let name = ProcessName { jobid: 1, vpid: 2 };
        let mut app = AppCoordinator::new(Config::new(77, name, false), flag);
        let mut process = process(Some(Script {
            from_lc,
            to_lc: Vec::new(),
            eof,
            full,
        }));
        flag.request();
        let report = run_handshake(&mut app, &mut process).expect("a handshake ended");
        assert!(app.is_idle(), "the machine is idle again");
        assert!(
            matches!(process.outcomes.last(), Some(Outcome::Handshake(_))),
            "the host saw the report"
        );
        (report, process)
    }

    #[test]
    fn nothing_pending_runs_nothing() {
        let flag = CheckpointFlag::new();
        let name = ProcessName { jobid: 1, vpid: 2 };
        let mut app = AppCoordinator::new(Config::new(77, name, false), &flag);
        let mut process = process(None);
        assert_eq!(run_handshake(&mut app, &mut process), None);
        assert!(process.outcomes.is_empty());
    }

    #[test]
    fn frames_in_pieces_make_a_whole_handshake() {
        let mut from_lc = options();
        from_lc.extend_from_slice(&fifo::GO_AHEAD);
        from_lc.extend_from_slice(&fifo::RELEASE);
        let (report, _) = run(from_lc, false, false);
        assert_eq!(report.error, None);
        assert_eq!((report.handle, report.state), (3, CrState::Continue));
        assert_eq!(report.response, CkptResponse::Start);
    }

    #[test]
    fn a_silent_local_coordinator_ends_at_the_read_deadline() {
        let (report, process) = run(options(), false, false);
        let e = report.error.expect("an error");
        assert_eq!((e.wait, e.failure), (Wait::GoAhead, WaitFailure::Deadline));
        assert_eq!(process.waits, 1, "one wait, straight to the deadline");
    }

    #[test]
    fn a_vanished_local_coordinator_is_peer_gone() {
        let (report, _) = run(options(), true, false);
        let e = report.error.expect("an error");
        assert_eq!((e.wait, e.failure), (Wait::GoAhead, WaitFailure::PeerGone));
    }

    #[test]
    fn a_stream_that_takes_nothing_is_peer_gone() {
        let (report, _) = run(options(), false, true);
        let e = report.error.expect("an error");
        assert_eq!((e.wait, e.failure), (Wait::Response, WaitFailure::PeerGone));
    }

    #[test]
    fn a_channel_that_cannot_open_fails_the_open() {
        let flag = CheckpointFlag::new();
        let name = ProcessName { jobid: 1, vpid: 2 };
        let mut app = AppCoordinator::new(Config::new(77, name, false), &flag);
        let mut process = process(None);
        flag.request();
        let report = run_handshake(&mut app, &mut process).expect("a handshake ended");
        let e = report.error.expect("an error");
        assert_eq!((e.wait, e.failure), (Wait::Open, WaitFailure::Io));
    }
}
