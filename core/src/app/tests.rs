//! Transitions of the app coordinator, driven by a fake local coordinator and
//! host that answer its actions on a virtual clock.

extern crate std;

use super::*;
use crate::wire::{Debugger, MigrateEntry, ProcessName};
use crate::{IoError, MAX_MESSAGE_LEN};
use std::boxed::Box;
use std::vec;
use std::vec::Vec;

const PID: u32 = 4242;
const JOBID: u32 = 0x1234_0001;
const HANDLE: u32 = 0xdead_beef;
const TICK: Duration = Duration::from_millis(1);

fn config(leader: bool) -> Config {
    Config::new(
        PID,
        ProcessName {
            jobid: JOBID,
            vpid: if leader { 0 } else { 3 },
        },
        leader,
    )
}

fn leak_flag() -> &'static CheckpointFlag {
    Box::leak(Box::new(CheckpointFlag::new()))
}

/// Where the fake host misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Open,
    Read(FrameKind),
    Write(FrameKind),
    Location,
    Prepare,
    Checkpoint,
    Sync,
    Recover,
    Teardown,
    Global,
}

fn point_of(a: &Action) -> Option<Point> {
    Some(match a {
        Action::OpenChannel { .. } => Point::Open,
        Action::Read { frame, .. } => Point::Read(*frame),
        Action::Write { frame, .. } => Point::Write(*frame),
        Action::Prepare => Point::Prepare,
        Action::Checkpoint { .. } => Point::Checkpoint,
        Action::Recover { .. } => Point::Recover,
        Action::Sstore(SstoreOp::ReadLocation { .. }) => Point::Location,
        Action::Sstore(SstoreOp::Sync { .. }) => Point::Sync,
        Action::Sstore(SstoreOp::ReadGlobal { .. }) => Point::Global,
        Action::Unlink { .. } => Point::Teardown,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    /// Local coordinator to app.
    FromLc(Vec<u8>),
    /// App to local coordinator.
    ToLc(Vec<u8>),
}

/// The fake local coordinator and host.
struct Host {
    now: Instant,
    options: OptionsFrame,
    go_ahead: Vec<u8>,
    release: Vec<u8>,
    /// Answers of successive prepare calls (then Ready).
    prepare: Vec<PrepareResult>,
    checkpoint: CheckpointResult,
    location_ok: bool,
    sync_ok: bool,
    global: (Option<i32>, Option<&'static str>),
    /// Leave this action unanswered (a deadline test).
    silent: Option<Point>,
    /// Answer this action with "peer gone".
    gone: Option<Point>,
    /// Every action, in order.
    actions: Vec<Action>,
    /// The bytes on the FIFOs, both ways, in order.
    fifo: Vec<Wire>,
    /// Encoded messages to the node daemon.
    daemon: Vec<Vec<u8>>,
    outcomes: Vec<Outcome>,
    /// An action left unanswered.
    pending: Option<Action>,
}

impl Host {
    fn new() -> Self {
        Self {
            now: Instant::from_secs(100),
            options: OptionsFrame {
                options: FifoOptions::default(),
                handle: HANDLE,
            },
            go_ahead: fifo::GO_AHEAD.to_vec(),
            release: fifo::RELEASE.to_vec(),
            prepare: Vec::new(),
            checkpoint: CheckpointResult::Continue,
            location_ok: true,
            sync_ok: true,
            global: (Some(7), Some("ompi_global_snapshot_4242.ckpt")),
            silent: None,
            gone: None,
            actions: Vec::new(),
            fifo: Vec::new(),
            daemon: Vec::new(),
            outcomes: Vec::new(),
            pending: None,
        }
    }

    fn with_options(mut self, f: impl FnOnce(&mut FifoOptions)) -> Self {
        f(&mut self.options.options);
        self
    }

    /// Answers every action until the machine has nothing left to do. Each
    /// answer is one the machine waits for, so each is taken.
    fn drive(&mut self, app: &mut AppCoordinator<'_>) {
        let mut out = [0u8; MAX_MESSAGE_LEN];
        while let Some(action) = app.poll_action(&mut out) {
            self.actions.push(action.clone());
            self.now += TICK;
            let now = self.now;
            let point = point_of(&action);
            if point.is_some() && point == self.silent {
                self.pending = Some(action);
                continue;
            }
            if point.is_some() && point == self.gone {
                app.handle_io_error(now, IoError::PeerGone).unwrap();
                continue;
            }
            let taken = match action {
                Action::OpenChannel { .. } => app.handle_opened(now),
                Action::Read { frame, len } => {
                    let bytes = match frame {
                        FrameKind::Options => self.options.to_bytes().to_vec(),
                        FrameKind::GoAhead => self.go_ahead.clone(),
                        FrameKind::Release => self.release.clone(),
                        _ => panic!("the app never reads {frame:?}"),
                    };
                    if frame == FrameKind::Options {
                        assert_eq!(
                            len,
                            OptionsFrame::frame_len(self.options.options.debugger.is_some())
                        );
                    }
                    self.fifo.push(Wire::FromLc(bytes.clone()));
                    app.handle_read(now, &bytes)
                }
                Action::Write { bytes, .. } => {
                    self.fifo.push(Wire::ToLc(bytes.to_vec()));
                    app.handle_write_done(now)
                }
                Action::Prepare => {
                    let r = if self.prepare.is_empty() {
                        PrepareResult::Ready
                    } else {
                        self.prepare.remove(0)
                    };
                    app.handle_prepare(now, r)
                }
                Action::Checkpoint { .. } => app.handle_checkpoint(now, self.checkpoint),
                Action::Recover { .. } => app.handle_recovered(now, Ok(())),
                Action::Sstore(SstoreOp::ReadLocation { .. }) => app.handle_sstore(
                    now,
                    if self.location_ok {
                        Ok(())
                    } else {
                        Err(HostError)
                    },
                ),
                Action::Sstore(SstoreOp::Sync { .. }) => {
                    app.handle_sstore(now, if self.sync_ok { Ok(()) } else { Err(HostError) })
                }
                Action::Sstore(SstoreOp::ReadGlobal { .. }) => {
                    app.handle_sstore_global(now, self.global.0, self.global.1)
                }
                Action::Sstore(_) | Action::Close { .. } | Action::AwaitTermination => Ok(()),
                Action::SendToDaemon { len } => {
                    self.daemon.push(out[..len].to_vec());
                    Ok(())
                }
                Action::Unlink { .. } => app.handle_teardown_done(now),
                Action::Outcome(o) => {
                    self.outcomes.push(o);
                    Ok(())
                }
            };
            taken.unwrap();
        }
    }

    /// Signal and progress point, then everything until the machine waits.
    fn checkpoint(&mut self, flag: &CheckpointFlag, app: &mut AppCoordinator<'_>) {
        assert_eq!(flag.request_at(self.now), FlagRequest::Requested);
        self.now += TICK;
        app.handle_progress(self.now);
        self.drive(app);
    }

    /// Jumps to the machine's deadline and fires it.
    fn expire(&mut self, app: &mut AppCoordinator<'_>) {
        let t = app.poll_timeout().expect("a deadline is armed");
        assert!(t > self.now);
        self.now = t;
        app.handle_timeout(t);
        self.drive(app);
    }

    /// The global coordinator's OP response to `event`, then everything
    /// until the machine waits.
    fn answer(&mut self, app: &mut AppCoordinator<'_>, event: OpEvent, status: i32) {
        app.handle_gc_message(self.now, &op_response(event, status))
            .unwrap();
        self.drive(app);
    }

    fn handshakes(&self) -> Vec<HandshakeReport> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Handshake(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    fn last_handshake(&self) -> HandshakeReport {
        *self.handshakes().last().expect("a handshake ended")
    }

    fn requests(&self) -> Vec<RequestReport> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Request(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.actions.iter().filter(|a| f(a)).count()
    }

    fn sstore_ops(&self) -> Vec<SstoreOp> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Sstore(op) => Some(*op),
                _ => None,
            })
            .collect()
    }
}

fn ne(v: i32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn local_finish(state: CrState) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 5, 0, 0, 0, 1, 9];
    v.extend_from_slice(&state.code().to_be_bytes());
    v
}

fn gc_bytes(m: FromGc<'_>) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = m.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// The global coordinator's answer to `event`.
fn op_response(event: OpEvent, state: i32) -> Vec<u8> {
    gc_bytes(FromGc::OpResponse(OpResponse {
        op_event: event,
        op_state: Some(state),
    }))
}

/// A request's or handshake's error.
fn error(wait: Wait, failure: WaitFailure) -> Option<AppError> {
    Some(AppError { wait, failure })
}

/// The application asks for `request` now, which the machine takes.
fn ask(app: &mut AppCoordinator<'_>, host: &Host, request: Request<'_>) {
    app.request(host.now, request, &mut [0; 64]).unwrap();
}

/// The machine armed `limit` at one of the host's last few ticks.
fn assert_deadline(app: &AppCoordinator<'_>, now: Instant, limit: Duration) {
    let t = app.poll_timeout().expect("a deadline is armed");
    assert!(t <= now + limit, "{t} after {}", now + limit);
    assert!(
        t + Duration::from_millis(8) > now + limit,
        "{t} long before {}",
        now + limit
    );
}

fn rig(leader: bool) -> (&'static CheckpointFlag, AppCoordinator<'static>, Host) {
    let flag = leak_flag();
    (flag, AppCoordinator::new(config(leader), flag), Host::new())
}

/// After an error, the machine must be idle and the next checkpoint work.
fn assert_recovers(
    flag: &'static CheckpointFlag,
    app: &mut AppCoordinator<'static>,
    host: &mut Host,
) {
    assert!(app.is_idle(), "idle after the error");
    assert!(!flag.is_checkpointing());
    assert_eq!(app.poll_timeout(), None);
    host.silent = None;
    host.gone = None;
    let before = host.handshakes().len();
    let names = app.names();
    host.checkpoint(flag, app);
    let r = host.last_handshake();
    assert_eq!(host.handshakes().len(), before + 1);
    assert_eq!(r.names, names);
    assert_eq!(r.error, None, "the next checkpoint works");
    assert_eq!(r.state, CrState::Continue);
}

// ---- the main path ----

#[test]
fn checkpoint_and_continue_exact_bytes() {
    let (flag, mut app, mut host) = rig(false);
    assert_eq!(app.names(), ChannelNames { pid: PID, n: 0 });
    let signalled = host.now;
    host.checkpoint(flag, &mut app);

    let names = ChannelNames { pid: PID, n: 0 };
    let h = HANDLE;
    let expected = vec![
        Action::OpenChannel { names },
        Action::Read {
            frame: FrameKind::Options,
            len: 28,
        },
        Action::Write {
            frame: FrameKind::Response,
            bytes: 0i32.to_ne_bytes(),
        },
        Action::Read {
            frame: FrameKind::GoAhead,
            len: 4,
        },
        Action::Sstore(SstoreOp::Register { handle: h }),
        Action::Sstore(SstoreOp::ReadLocation { handle: h }),
        Action::Prepare,
        Action::Sstore(SstoreOp::SetSessionDir { handle: h }),
        Action::Checkpoint {
            handle: h,
            options: FifoOptions::default(),
        },
        Action::Sstore(SstoreOp::SetCrsName {
            handle: h,
            name: CrsName::Component,
        }),
        Action::Sstore(SstoreOp::Sync { handle: h }),
        Action::Write {
            frame: FrameKind::FinalState,
            bytes: 4i32.to_ne_bytes(),
        },
        Action::Read {
            frame: FrameKind::Release,
            len: 4,
        },
        Action::Recover {
            state: CrState::Continue,
        },
        Action::SendToDaemon { len: 14 },
        Action::Close { names },
        Action::Unlink { names },
    ];
    assert_eq!(host.actions[..expected.len()], expected[..]);
    assert_eq!(host.actions.len(), expected.len() + 1, "then the report");

    let mut options = vec![0u8; 24];
    options.extend_from_slice(&HANDLE.to_ne_bytes());
    assert_eq!(
        host.fifo,
        vec![
            Wire::FromLc(options),
            Wire::ToLc(ne(0)),
            Wire::FromLc(ne(0)),
            Wire::ToLc(ne(4)),
            Wire::FromLc(ne(0)),
        ]
    );
    // docs/PROTOCOL.md §6's worked example.
    assert_eq!(
        host.daemon,
        vec![vec![0, 0, 0, 1, 5, 0, 0, 0, 1, 9, 0, 0, 0, 4]]
    );

    let r = host.last_handshake();
    assert_eq!(r.names, names);
    assert_eq!(r.response, CkptResponse::Start);
    assert_eq!(r.handle, HANDLE);
    assert_eq!(r.state, CrState::Continue);
    assert_eq!(r.error, None);
    // Every stage ran, and took the host's ticks.
    let s = r.stages;
    assert_eq!(s.signal, Some(TICK));
    assert_eq!(s.handshake, Some(Duration::from_millis(4)));
    assert_eq!(s.prepare, Some(Duration::from_millis(1)));
    assert_eq!(s.checkpoint, Some(Duration::from_millis(2)));
    assert_eq!(s.sync, Some(Duration::from_millis(2)));
    assert_eq!(s.release_wait, Some(Duration::from_millis(1)));
    assert_eq!(s.recover, Some(Duration::from_millis(1)));
    assert_eq!(s.teardown, Some(Duration::from_millis(3)));
    assert!(host.now > signalled);

    assert!(app.is_idle());
    assert!(!flag.is_checkpointing());
    assert_eq!(app.names(), ChannelNames { pid: PID, n: 1 });
    assert_eq!(app.poll_timeout(), None);
    assert_eq!(app.unexpected_inputs(), 0);
}

#[test]
fn five_in_a_row_advance_the_counter() {
    let (flag, mut app, mut host) = rig(false);
    for n in 0..5 {
        assert_eq!(app.names().n, n);
        host.checkpoint(flag, &mut app);
        let r = host.last_handshake();
        assert_eq!(r.names, ChannelNames { pid: PID, n });
        assert_eq!(r.error, None);
    }
    let opened: Vec<u32> = host
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::OpenChannel { names } => Some(names.n),
            _ => None,
        })
        .collect();
    assert_eq!(opened, vec![0, 1, 2, 3, 4]);
    assert_eq!(host.daemon.len(), 5);
    assert!(
        host.daemon
            .iter()
            .all(|m| *m == local_finish(CrState::Continue))
    );
    assert_eq!(app.names().n, 5);
}

#[test]
fn debugger_fields_lengthen_the_options_frame() {
    let flag = leak_flag();
    let mut cfg = config(false);
    cfg.debug = true;
    let mut app = AppCoordinator::new(cfg, flag);
    let mut host = Host::new().with_options(|o| {
        o.debugger = Some(Debugger {
            attach: true,
            detach: false,
        })
    });
    host.checkpoint(flag, &mut app);
    assert!(host.actions.contains(&Action::Read {
        frame: FrameKind::Options,
        len: 36
    }));
    let r = host.last_handshake();
    assert_eq!(r.error, None);
    assert!(r.options.unwrap().debugger.unwrap().attach);
}

#[test]
fn no_request_no_handshake() {
    let (_flag, mut app, mut host) = rig(false);
    app.handle_progress(host.now);
    host.drive(&mut app);
    assert!(host.actions.is_empty());
    assert!(app.is_idle());
}

// ---- the flag and the answers ----

#[test]
fn null_without_a_checkpointer() {
    let flag = leak_flag();
    let mut cfg = config(false);
    cfg.checkpointer = false;
    let mut app = AppCoordinator::new(cfg, flag);
    let mut host = Host::new();
    host.checkpoint(flag, &mut app);
    let mut options = vec![0u8; 24];
    options.extend_from_slice(&HANDLE.to_ne_bytes());
    assert_eq!(host.fifo, vec![Wire::FromLc(options), Wire::ToLc(ne(2))]);
    assert!(host.daemon.is_empty(), "no LOCAL_FINISH after NULL");
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 0);
    assert_eq!(host.count(|a| matches!(a, Action::Unlink { .. })), 1);
    let r = host.last_handshake();
    assert_eq!(r.response, CkptResponse::Null);
    assert_eq!(r.state, CrState::None);
    assert_eq!(r.error, None);
    assert!(r.stages.handshake.is_some());
    assert!(app.is_idle());
    assert!(!flag.is_checkpointing());
    assert_eq!(app.names().n, 1);
}

#[test]
fn requests_during_a_checkpoint_are_counted_not_acted_on() {
    let (flag, mut app, mut host) = rig(false);
    host.silent = Some(Point::Checkpoint);
    host.checkpoint(flag, &mut app);
    assert!(flag.is_checkpointing());
    assert_eq!(flag.request(), FlagRequest::AlreadyCheckpointing);
    assert_eq!(flag.request(), FlagRequest::AlreadyCheckpointing);
    assert_eq!(flag.ignored(), 2);
    app.handle_progress(host.now);
    host.drive(&mut app);
    assert_eq!(host.count(|a| matches!(a, Action::OpenChannel { .. })), 1);
    host.silent = None;
    app.handle_checkpoint(host.now, CheckpointResult::Continue)
        .unwrap();
    host.drive(&mut app);
    assert_eq!(host.last_handshake().error, None);
    assert!(!flag.is_checkpointing());
}

#[test]
fn in_progress_while_awaiting_termination() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.term = true;
    host.checkpoint(flag, &mut app);
    assert!(app.is_terminating());
    assert_eq!(host.count(|a| matches!(a, Action::AwaitTermination)), 1);
    // The runtime has not terminated us yet; a new request comes in.
    host.checkpoint(flag, &mut app);
    let r = host.last_handshake();
    assert_eq!(r.response, CkptResponse::InProgress);
    assert_eq!(r.names.n, 1);
    assert_eq!(host.fifo.last(), Some(&Wire::ToLc(ne(1))));
    assert!(app.is_terminating());
    assert_eq!(app.names().n, 2);
    assert_eq!(host.count(|a| matches!(a, Action::AwaitTermination)), 1);
}

// ---- options ----

#[test]
fn term_reports_term_then_awaits_termination() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.term = true;
    host.checkpoint(flag, &mut app);
    assert_eq!(host.fifo[3], Wire::ToLc(ne(CrState::Continue.code())));
    assert_eq!(host.daemon, vec![local_finish(CrState::Continue)]);
    assert_eq!(host.actions.last(), Some(&Action::AwaitTermination));
    assert!(app.is_terminating());
    assert!(!app.is_checkpointing());

    // The checkpointer itself answering TERM.
    let (flag, mut app, mut host) = rig(false);
    host.checkpoint = CheckpointResult::Term;
    host.checkpoint(flag, &mut app);
    assert_eq!(host.fifo[3], Wire::ToLc(ne(5)));
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Term
    }));
    assert_eq!(host.daemon, vec![local_finish(CrState::Term)]);
    assert_eq!(host.last_handshake().state, CrState::Term);
    assert!(app.is_terminating());
    assert_eq!(
        app.request(host.now, Request::Checkpoint, &mut [0; 64]),
        Err(InputError::Terminating)
    );
}

#[test]
fn stop_syncs_before_the_checkpoint_and_not_after() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.stop = true;
    host.checkpoint(flag, &mut app);
    let h = HANDLE;
    assert_eq!(
        host.sstore_ops(),
        vec![
            SstoreOp::Register { handle: h },
            SstoreOp::ReadLocation { handle: h },
            SstoreOp::SetSessionDir { handle: h },
            SstoreOp::SetCrsName {
                handle: h,
                name: CrsName::Component
            },
            SstoreOp::Sync { handle: h },
        ]
    );
    let sync = host
        .actions
        .iter()
        .position(|a| matches!(a, Action::Sstore(SstoreOp::Sync { .. })))
        .unwrap();
    let ckpt = host
        .actions
        .iter()
        .position(|a| matches!(a, Action::Checkpoint { .. }))
        .unwrap();
    assert!(sync < ckpt);
    let r = host.last_handshake();
    assert_eq!(r.error, None);
    assert!(r.stages.sync.is_some());
    assert_eq!(host.daemon, vec![local_finish(CrState::Continue)]);
}

#[test]
fn restart_sends_local_update_and_resets_the_counter() {
    let (flag, mut app, mut host) = rig(false);
    host.checkpoint(flag, &mut app);
    host.checkpoint = CheckpointResult::Restart { pid: 777 };
    host.checkpoint(flag, &mut app);
    // No final state and no release on the old channel.
    assert_eq!(host.fifo.len(), 5 + 3);
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Restart
    }));
    let names = ChannelNames { pid: PID, n: 1 };
    let n = host.actions.len();
    assert_eq!(
        host.actions[n - 4..n - 1],
        [
            Action::SendToDaemon { len: 26 },
            Action::Close { names },
            Action::Unlink { names },
        ]
    );
    // LOCAL_UPDATE: cmd 4, name (jobid, vpid), pid as UINT32.
    assert_eq!(
        host.daemon[1],
        vec![
            0, 0, 0, 1, 4, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 3, 0, 0, 0, 1, 0x0e, 0, 0, 3,
            0x09
        ]
    );
    assert_eq!(host.last_handshake().state, CrState::Restart);
    assert_eq!(app.config().pid, 777);
    assert_eq!(app.names(), ChannelNames { pid: 777, n: 0 });
    host.checkpoint = CheckpointResult::Continue;
    host.checkpoint(flag, &mut app);
    assert_eq!(host.last_handshake().names, ChannelNames { pid: 777, n: 0 });
    assert_eq!(app.names(), ChannelNames { pid: 777, n: 1 });
}

// ---- quiesce ----

#[test]
fn quiesce_start_checkpoint_end() {
    let (flag, mut app, mut host) = rig(true);
    let mut out = [0u8; 64];
    let n = app
        .request(host.now, Request::QuiesceStart, &mut out)
        .unwrap();
    assert_eq!(
        out[..n],
        [
            0, 0, 0, 1, 8, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 1, 9, 0, 0, 0, 7
        ]
    );
    host.options.options.inc_prep_only = true;
    host.checkpoint(flag, &mut app);
    assert!(app.is_quiesced());
    assert!(flag.is_checkpointing());
    assert_eq!(host.fifo.last(), Some(&Wire::ToLc(ne(6))), "RUNNING");
    assert!(host.daemon.is_empty());
    assert_eq!(host.count(|a| matches!(a, Action::Close { .. })), 0);
    assert_eq!(host.count(|a| matches!(a, Action::Checkpoint { .. })), 0);
    assert!(matches!(
        host.outcomes[0],
        Outcome::Quiesced { handle: HANDLE, .. }
    ));
    let reqs = host.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].op, OpEvent::QuiesceStart);
    assert_eq!(reqs[0].error, None);
    assert_eq!(
        app.poll_timeout(),
        None,
        "the quiesce lasts as the application wants"
    );

    // A second quiesce start is refused; a signal is ignored.
    assert_eq!(
        app.request(host.now, Request::QuiesceStart, &mut out),
        Err(InputError::AlreadyQuiesced)
    );
    assert_eq!(flag.request(), FlagRequest::AlreadyCheckpointing);

    // QUIESCE_CHECKPOINT: a checkpoint without a handshake.
    let fifo_before = host.fifo.len();
    app.request(host.now, Request::QuiesceCheckpoint, &mut out)
        .unwrap();
    host.drive(&mut app);
    assert_eq!(host.fifo.len(), fifo_before, "nothing on the FIFO");
    assert!(app.is_quiesced());
    let reqs = host.requests();
    assert_eq!(reqs[1].op, OpEvent::QuiesceCheckpoint);
    assert_eq!(reqs[1].error, None);
    assert_eq!(reqs[1].seq_num, 7);
    assert_eq!(reqs[1].reference.as_str(), "ompi_global_snapshot_4242.ckpt");
    assert_eq!(host.count(|a| matches!(a, Action::Checkpoint { .. })), 1);

    // QUIESCE_END: CONTINUE, release, recover, teardown.
    app.request(host.now, Request::QuiesceEnd, &mut out)
        .unwrap();
    host.drive(&mut app);
    assert!(host.actions.contains(&Action::Sstore(SstoreOp::SetCrsName {
        handle: HANDLE,
        name: CrsName::EmptyIfNone
    })));
    assert_eq!(
        host.fifo[fifo_before..],
        [Wire::ToLc(ne(4)), Wire::FromLc(ne(0))]
    );
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Continue
    }));
    assert_eq!(host.daemon, vec![local_finish(CrState::Continue)]);
    let r = host.last_handshake();
    assert_eq!(r.state, CrState::Continue);
    assert_eq!(r.error, None);
    let reqs = host.requests();
    assert_eq!(reqs[2].op, OpEvent::QuiesceEnd);
    assert_eq!(reqs[2].error, None);
    assert!(app.is_idle());
    assert!(!flag.is_checkpointing());
    assert_eq!(app.names().n, 1);
}

#[test]
fn quiesce_requests_need_a_quiesced_process() {
    let (_flag, mut app, host) = rig(true);
    let mut out = [0u8; 64];
    assert_eq!(
        app.request(host.now, Request::QuiesceCheckpoint, &mut out),
        Err(InputError::NotQuiesced)
    );
    assert_eq!(
        app.request(host.now, Request::QuiesceEnd, &mut out),
        Err(InputError::NotQuiesced)
    );
    assert!(app.is_idle());
}

#[test]
fn quiesce_start_fails_when_the_handshake_is_not_prepare_only() {
    let (flag, mut app, mut host) = rig(false);
    let n = app
        .request(host.now, Request::QuiesceStart, &mut [0; 64])
        .unwrap();
    assert_eq!(n, 0, "a non-leader sends nothing");
    host.checkpoint(flag, &mut app);
    let r = &host.requests()[0];
    assert_eq!(r.error.unwrap().failure, WaitFailure::NotReached);
    assert!(app.is_idle());
}

#[test]
fn quiesce_checkpoint_failure_keeps_the_quiesce() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.inc_prep_only = true;
    host.checkpoint(flag, &mut app);
    host.checkpoint = CheckpointResult::Error;
    ask(&mut app, &host, Request::QuiesceCheckpoint);
    host.drive(&mut app);
    let r = &host.requests()[0];
    assert_eq!(r.error, error(Wait::Checkpoint, WaitFailure::Failed));
    assert!(app.is_quiesced());
    ask(&mut app, &host, Request::QuiesceEnd);
    host.drive(&mut app);
    assert_eq!(host.last_handshake().error, None);
    assert_eq!(host.daemon, vec![local_finish(CrState::Continue)]);
}

#[test]
fn restart_during_a_quiesce_checkpoint() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.inc_prep_only = true;
    host.checkpoint(flag, &mut app);
    host.checkpoint = CheckpointResult::Restart { pid: 555 };
    ask(&mut app, &host, Request::QuiesceCheckpoint);
    host.drive(&mut app);
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Restart
    }));
    let r = &host.requests()[0];
    assert_eq!(r.op, OpEvent::QuiesceCheckpoint);
    assert!(r.restarted);
    assert_eq!(r.error, None);
    assert_eq!(host.daemon.len(), 1);
    assert_eq!(host.daemon[0][4], 4, "LOCAL_UPDATE");
    assert!(app.is_idle());
    assert!(!flag.is_checkpointing());
    assert_eq!(app.names(), ChannelNames { pid: 555, n: 0 });
}

#[test]
fn peer_gone_while_quiesced_recovers_the_application() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.inc_prep_only = true;
    host.checkpoint(flag, &mut app);
    app.handle_io_error(host.now, IoError::PeerGone).unwrap();
    host.drive(&mut app);
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Continue
    }));
    let r = host.last_handshake();
    assert_eq!(r.error, error(Wait::Quiesced, WaitFailure::PeerGone));
    assert_eq!(host.daemon, vec![local_finish(CrState::Error)]);
    host.options.options.inc_prep_only = false;
    assert_recovers(flag, &mut app, &mut host);
}

// ---- migration ----

#[test]
fn migration_target_tears_down_without_finish_and_awaits_termination() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.all_migrating = true;
    host.options.options.migrating = true;
    host.checkpoint(flag, &mut app);
    assert_eq!(host.count(|a| matches!(a, Action::Checkpoint { .. })), 1);
    assert!(
        !host
            .sstore_ops()
            .contains(&SstoreOp::SetSkip { handle: HANDLE })
    );
    assert_eq!(
        host.fifo.last(),
        Some(&Wire::ToLc(ne(4))),
        "final state, no release"
    );
    assert_eq!(host.count(|a| matches!(a, Action::Recover { .. })), 0);
    assert!(host.daemon.is_empty(), "no LOCAL_FINISH");
    assert_eq!(host.count(|a| matches!(a, Action::Unlink { .. })), 1);
    assert_eq!(host.actions.last(), Some(&Action::AwaitTermination));
    assert!(app.is_terminating());
    assert!(!flag.is_checkpointing());
    assert_eq!(app.names().n, 1);
}

#[test]
fn migration_non_target_skips_the_checkpoint_and_recovers_as_restarting() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.all_migrating = true;
    host.checkpoint(flag, &mut app);
    let h = HANDLE;
    assert_eq!(
        host.sstore_ops(),
        vec![
            SstoreOp::Register { handle: h },
            SstoreOp::SetSkip { handle: h },
            SstoreOp::ReadLocation { handle: h },
            SstoreOp::Sync { handle: h },
        ]
    );
    assert_eq!(host.count(|a| matches!(a, Action::Checkpoint { .. })), 0);
    assert_eq!(host.fifo[3], Wire::ToLc(ne(4)));
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Restart
    }));
    assert_eq!(host.daemon, vec![local_finish(CrState::Continue)]);
    assert!(!app.is_terminating());
    assert!(app.is_idle());
}

// ---- stall ----

#[test]
fn stall_then_resume_without_a_second_handshake() {
    let (flag, mut app, mut host) = rig(false);
    host.prepare = vec![PrepareResult::NotNow, PrepareResult::NotNow];
    host.checkpoint(flag, &mut app);
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 1);
    let fifo = host.fifo.len();
    assert_eq!(fifo, 3, "nothing written while stalled");
    let stall_limit = app.poll_timeout().unwrap();
    assert_eq!(stall_limit, host.now + AppDeadlines::default().stall);
    // A progress point: the prepare again, still not now.
    host.now += TICK;
    app.handle_progress(host.now);
    host.drive(&mut app);
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 2);
    assert_eq!(
        app.poll_timeout(),
        Some(stall_limit),
        "the stall deadline holds"
    );
    host.now += TICK;
    app.handle_progress(host.now);
    host.drive(&mut app);
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 3);
    assert_eq!(host.count(|a| matches!(a, Action::OpenChannel { .. })), 1);
    let r = host.last_handshake();
    assert_eq!(r.error, None);
    assert_eq!(r.state, CrState::Continue);
    assert!(r.stages.prepare.unwrap() >= Duration::from_millis(3));
}

#[test]
fn stall_deadline_reports_error() {
    let (flag, mut app, mut host) = rig(false);
    host.prepare = vec![PrepareResult::NotNow];
    host.checkpoint(flag, &mut app);
    host.expire(&mut app);
    let r = host.last_handshake();
    assert_eq!(r.error, error(Wait::Stall, WaitFailure::Deadline));
    assert_eq!(host.fifo[3], Wire::ToLc(ne(7)), "ERROR as final state");
    assert_eq!(host.count(|a| matches!(a, Action::Recover { .. })), 0);
    assert_eq!(host.daemon, vec![local_finish(CrState::Error)]);
    assert_recovers(flag, &mut app, &mut host);
}

// ---- hook and sstore failures ----

#[test]
fn prepare_failure_reports_error_without_recover() {
    let (flag, mut app, mut host) = rig(false);
    host.prepare = vec![PrepareResult::Failed];
    host.checkpoint(flag, &mut app);
    assert_eq!(host.count(|a| matches!(a, Action::Checkpoint { .. })), 0);
    assert_eq!(host.fifo[3], Wire::ToLc(ne(7)));
    assert_eq!(host.count(|a| matches!(a, Action::Recover { .. })), 0);
    assert_eq!(host.daemon, vec![local_finish(CrState::Error)]);
    assert_eq!(host.last_handshake().error.unwrap().wait, Wait::Prepare);
    assert_recovers(flag, &mut app, &mut host);
}

#[test]
fn checkpoint_error_reports_error_and_recovers() {
    let (flag, mut app, mut host) = rig(false);
    host.checkpoint = CheckpointResult::Error;
    host.checkpoint(flag, &mut app);
    assert!(
        !host
            .sstore_ops()
            .contains(&SstoreOp::Sync { handle: HANDLE })
    );
    assert_eq!(host.fifo[3], Wire::ToLc(ne(7)));
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Error
    }));
    assert_eq!(host.daemon, vec![local_finish(CrState::Error)]);
    host.checkpoint = CheckpointResult::Continue;
    assert_recovers(flag, &mut app, &mut host);
}

#[test]
fn missing_location_and_failed_sync_report_error() {
    let (flag, mut app, mut host) = rig(false);
    host.location_ok = false;
    host.checkpoint(flag, &mut app);
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 0);
    assert_eq!(host.fifo[3], Wire::ToLc(ne(7)));
    assert_eq!(host.last_handshake().error.unwrap().wait, Wait::Location);
    host.location_ok = true;
    assert_recovers(flag, &mut app, &mut host);

    let (flag, mut app, mut host) = rig(false);
    host.sync_ok = false;
    host.checkpoint(flag, &mut app);
    assert_eq!(host.fifo[3], Wire::ToLc(ne(7)));
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Continue
    }));
    assert_eq!(host.last_handshake().error.unwrap().wait, Wait::Sync);
    host.sync_ok = true;
    assert_recovers(flag, &mut app, &mut host);
}

#[test]
fn recover_failure_is_reported() {
    let (flag, mut app, mut host) = rig(false);
    host.silent = Some(Point::Recover);
    host.checkpoint(flag, &mut app);
    app.handle_recovered(host.now, Err(HostError)).unwrap();
    host.drive(&mut app);
    assert_eq!(host.last_handshake().error.unwrap().wait, Wait::Recover);
    assert_eq!(host.daemon, vec![local_finish(CrState::Error)]);
    assert_recovers(flag, &mut app, &mut host);
}

// ---- peers vanishing, deadlines, malformed frames (docs/PROTOCOL.md §7) ----

/// Which wait a point is, whether START was already written, whether the
/// application was prepared.
fn fifo_points() -> Vec<(Point, Wait, bool, bool)> {
    vec![
        (Point::Open, Wait::Open, false, false),
        (Point::Read(FrameKind::Options), Wait::Options, false, false),
        (
            Point::Write(FrameKind::Response),
            Wait::Response,
            false,
            false,
        ),
        (Point::Read(FrameKind::GoAhead), Wait::GoAhead, true, false),
        (
            Point::Write(FrameKind::FinalState),
            Wait::FinalState,
            true,
            true,
        ),
        (Point::Read(FrameKind::Release), Wait::Release, true, true),
    ]
}

#[test]
fn peer_vanishing_at_each_step() {
    for (point, wait, started, prepared) in fifo_points() {
        let (flag, mut app, mut host) = rig(false);
        host.gone = Some(point);
        host.checkpoint(flag, &mut app);
        let r = host.last_handshake();
        assert_eq!(r.error, error(wait, WaitFailure::PeerGone), "{point:?}");
        assert_eq!(r.state, CrState::Error);
        assert_eq!(host.count(|a| matches!(a, Action::Close { .. })), 1);
        assert_eq!(host.count(|a| matches!(a, Action::Unlink { .. })), 1);
        let expected_finish = if started {
            vec![local_finish(CrState::Error)]
        } else {
            vec![]
        };
        assert_eq!(host.daemon, expected_finish, "{point:?}");
        assert_eq!(
            host.count(|a| matches!(a, Action::Recover { .. })),
            usize::from(prepared),
            "{point:?}"
        );
        assert_eq!(app.names().n, 1);
        assert_recovers(flag, &mut app, &mut host);
    }
}

#[test]
fn deadline_at_each_wait() {
    let mut cases = fifo_points();
    cases.extend([
        (Point::Location, Wait::Location, true, false),
        (Point::Prepare, Wait::Prepare, true, false),
        (Point::Checkpoint, Wait::Checkpoint, true, true),
        (Point::Sync, Wait::Sync, true, true),
        (Point::Recover, Wait::Recover, true, true),
        (Point::Teardown, Wait::Teardown, true, true),
    ]);
    let d = AppDeadlines::default();
    for (point, wait, started, prepared) in cases {
        let (flag, mut app, mut host) = rig(false);
        host.silent = Some(point);
        host.checkpoint(flag, &mut app);
        let limit = match point {
            Point::Open => d.open,
            Point::Read(FrameKind::Release) => d.release,
            Point::Read(_) => d.read,
            Point::Write(_) => d.write,
            _ => d.host,
        };
        assert_deadline(&app, host.now, limit);
        // Not yet.
        app.handle_timeout(app.poll_timeout().unwrap() - Duration::from_micros(1));
        assert!(
            app.poll_action(&mut [0; MAX_MESSAGE_LEN]).is_none(),
            "{point:?}"
        );
        host.expire(&mut app);
        let r = host.last_handshake();
        assert_eq!(r.error, error(wait, WaitFailure::Deadline), "{point:?}");
        assert_eq!(
            host.count(|a| matches!(a, Action::Unlink { .. })),
            1,
            "{point:?}"
        );
        assert_eq!(
            host.count(|a| matches!(a, Action::Recover { .. })),
            usize::from(prepared),
            "{point:?}"
        );
        if point == Point::Teardown {
            // The finish message went out before the teardown stalled.
            assert_eq!(host.daemon, vec![local_finish(CrState::Continue)]);
        } else if started {
            assert_eq!(host.daemon, vec![local_finish(CrState::Error)], "{point:?}");
        } else {
            assert!(host.daemon.is_empty(), "{point:?}");
        }
        // A late answer changes nothing.
        let pending = host.pending.take().unwrap();
        let unexpected = app.unexpected_inputs();
        let late = match pending {
            Action::Prepare => app.handle_prepare(host.now, PrepareResult::Ready),
            Action::Checkpoint { .. } => {
                app.handle_checkpoint(host.now, CheckpointResult::Continue)
            }
            Action::Read { .. } => app.handle_read(host.now, &ne(0)),
            Action::Write { .. } => app.handle_write_done(host.now),
            Action::OpenChannel { .. } => app.handle_opened(host.now),
            Action::Recover { .. } => app.handle_recovered(host.now, Ok(())),
            Action::Unlink { .. } => app.handle_teardown_done(host.now),
            Action::Sstore(_) => app.handle_sstore(host.now, Ok(())),
            other => panic!("{other:?}"),
        };
        assert_eq!(late, Err(InputError::Unexpected), "{point:?}");
        assert_eq!(app.unexpected_inputs(), unexpected + 1, "{point:?}");
        assert!(app.poll_action(&mut [0; MAX_MESSAGE_LEN]).is_none());
        assert_recovers(flag, &mut app, &mut host);
    }
}

#[test]
fn early_sync_deadline() {
    let (flag, mut app, mut host) = rig(false);
    host.options.options.stop = true;
    host.silent = Some(Point::Sync);
    host.checkpoint(flag, &mut app);
    host.expire(&mut app);
    assert_eq!(host.last_handshake().error.unwrap().wait, Wait::EarlySync);
    assert_eq!(host.count(|a| matches!(a, Action::Checkpoint { .. })), 0);
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Continue
    }));
    host.options.options.stop = false;
    assert_recovers(flag, &mut app, &mut host);
}

#[test]
fn malformed_options_end_the_handshake() {
    // Open MPI checkpoints with whatever it read; we end the handshake.
    let (flag, mut app, mut host) = rig(false);
    host.silent = Some(Point::Read(FrameKind::Options));
    host.checkpoint(flag, &mut app);
    app.handle_read(host.now, &[0u8; 27]).unwrap();
    host.drive(&mut app);
    let r = host.last_handshake();
    let e = r.error.unwrap();
    assert_eq!(e.wait, Wait::Options);
    assert!(matches!(e.failure, WaitFailure::Malformed(_)));
    assert_eq!(
        host.count(|a| matches!(a, Action::Write { .. })),
        0,
        "no response"
    );
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 0);
    assert!(host.daemon.is_empty());
    assert_recovers(flag, &mut app, &mut host);
}

#[test]
fn malformed_go_ahead_and_release() {
    let (flag, mut app, mut host) = rig(false);
    host.go_ahead = ne(3);
    host.checkpoint(flag, &mut app);
    let e = host.last_handshake().error.unwrap();
    assert_eq!(e.wait, Wait::GoAhead);
    assert!(matches!(e.failure, WaitFailure::Malformed(_)));
    assert_eq!(host.count(|a| matches!(a, Action::Prepare)), 0);
    assert_eq!(host.daemon, vec![local_finish(CrState::Error)]);
    host.go_ahead = ne(0);
    assert_recovers(flag, &mut app, &mut host);

    let (flag, mut app, mut host) = rig(false);
    host.release = vec![0, 0];
    host.checkpoint(flag, &mut app);
    let e = host.last_handshake().error.unwrap();
    assert_eq!(e.wait, Wait::Release);
    assert!(matches!(e.failure, WaitFailure::Malformed(_)));
    assert!(host.actions.contains(&Action::Recover {
        state: CrState::Continue
    }));
    host.release = ne(0);
    assert_recovers(flag, &mut app, &mut host);
}

#[test]
fn any_release_value_releases() {
    let (flag, mut app, mut host) = rig(false);
    host.release = ne(42);
    host.checkpoint(flag, &mut app);
    assert_eq!(host.last_handshake().error, None);
}

#[test]
fn unexpected_inputs_are_ignored() {
    let (_flag, mut app, host) = rig(false);
    let now = host.now;
    let unexpected = Err(InputError::Unexpected);
    assert_eq!(app.handle_opened(now), unexpected);
    assert_eq!(app.handle_read(now, &[1, 2, 3, 4]), unexpected);
    assert_eq!(app.handle_write_done(now), unexpected);
    assert_eq!(app.handle_io_error(now, IoError::PeerGone), unexpected);
    assert_eq!(app.handle_prepare(now, PrepareResult::Ready), unexpected);
    assert_eq!(
        app.handle_checkpoint(now, CheckpointResult::Continue),
        unexpected
    );
    assert_eq!(app.handle_recovered(now, Ok(())), unexpected);
    assert_eq!(app.handle_sstore(now, Ok(())), unexpected);
    assert_eq!(app.handle_sstore_global(now, None, None), unexpected);
    assert_eq!(app.handle_teardown_done(now), unexpected);
    assert!(matches!(
        app.handle_gc_message(now, &[0xff]),
        Err(InputError::Decode(_))
    ));
    app.handle_timeout(Instant::MAX);
    assert_eq!(app.unexpected_inputs(), 11);
    assert!(app.poll_action(&mut [0; MAX_MESSAGE_LEN]).is_none());
    assert!(app.is_idle());
}

// ---- application requests ----

#[test]
fn init_and_non_leader_requests_end_at_once() {
    let (_flag, mut app, mut host) = rig(true);
    let mut out = [0u8; 64];
    let n = app.request(host.now, Request::Init, &mut out).unwrap();
    // docs/PROTOCOL.md §6's worked example.
    assert_eq!(
        out[..n],
        [
            0, 0, 0, 1, 8, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 1, 9, 0, 0, 0, 1
        ]
    );
    host.drive(&mut app);
    assert_eq!(host.requests()[0].op, OpEvent::Init);
    assert!(app.is_idle());

    let (_flag, mut app, mut host) = rig(false);
    for req in [
        Request::Init,
        Request::Fin,
        Request::Checkpoint,
        Request::Restart {
            seq_num: 1,
            handle: Some("x"),
        },
        Request::Migrate(crate::wire::List::Items(&[])),
    ] {
        assert_eq!(app.request(host.now, req, &mut out), Ok(0));
        host.drive(&mut app);
        assert!(app.is_idle());
    }
    assert_eq!(host.requests().len(), 5);
    assert!(host.requests().iter().all(|r| r.error.is_none()));
    assert!(!app.is_terminating());
}

#[test]
fn bad_requests_are_refused() {
    let (_flag, mut app, host) = rig(true);
    let mut out = [0u8; 64];
    assert_eq!(
        app.request(host.now, Request::None, &mut out),
        Err(InputError::Unsupported(OpEvent::None))
    );
    assert_eq!(
        app.request(host.now, Request::FinAck, &mut out),
        Err(InputError::Unsupported(OpEvent::FinAck))
    );
    assert!(matches!(
        app.request(host.now, Request::Init, &mut [0u8; 4]),
        Err(InputError::Encode(_))
    ));
    app.request(host.now, Request::Fin, &mut out).unwrap();
    assert_eq!(
        app.request(host.now, Request::Checkpoint, &mut out),
        Err(InputError::Busy(OpEvent::Fin))
    );
}

#[test]
fn fin_waits_for_fin_ack() {
    let (_flag, mut app, mut host) = rig(true);
    let mut out = [0u8; 64];
    let n = app.request(host.now, Request::Fin, &mut out).unwrap();
    assert_eq!(out[n - 1], 2);
    host.drive(&mut app);
    assert!(host.requests().is_empty());
    assert_eq!(
        app.poll_timeout(),
        Some(host.now + AppDeadlines::default().fin_ack)
    );
    // An unrelated answer does not end the wait.
    assert_eq!(
        app.handle_gc_message(host.now, &op_response(OpEvent::Checkpoint, 0),),
        Err(InputError::Unexpected)
    );
    assert_eq!(app.unexpected_inputs(), 1);
    host.now += TICK;
    app.handle_gc_message(host.now, &gc_bytes(FromGc::FinAck))
        .unwrap();
    host.drive(&mut app);
    let r = &host.requests()[0];
    assert_eq!(r.op, OpEvent::Fin);
    assert_eq!(r.error, None);
    assert_eq!(r.elapsed, TICK);
    assert!(app.is_idle());
}

#[test]
fn fin_ack_deadline_and_malformed_answer() {
    let (_flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Fin);
    host.expire(&mut app);
    assert_eq!(
        host.requests()[0].error,
        error(Wait::FinAck, WaitFailure::Deadline)
    );
    assert!(app.is_idle());
    ask(&mut app, &host, Request::Fin);
    app.handle_gc_message(host.now, &[0, 0, 0, 1, 8, 0, 0, 0, 1, 9, 0, 0, 0, 99])
        .unwrap();
    host.drive(&mut app);
    let e = host.requests()[1].error.unwrap();
    assert_eq!(e.wait, Wait::FinAck);
    assert!(matches!(e.failure, WaitFailure::Malformed(_)));
    assert!(app.is_idle());
}

#[test]
fn coordinator_gone_ends_a_waiting_request_at_once() {
    let (_flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Fin);
    app.handle_gc_gone(host.now).unwrap();
    host.drive(&mut app);
    assert_eq!(
        host.requests()[0].error,
        error(Wait::FinAck, WaitFailure::PeerGone)
    );
    assert!(app.is_idle());
    // With nothing waiting, it is an unexpected input and changes nothing.
    let before = app.unexpected_inputs();
    assert_eq!(app.handle_gc_gone(host.now), Err(InputError::Unexpected));
    assert_eq!(app.unexpected_inputs(), before + 1);
    assert!(app.is_idle());
}

#[test]
fn fin_during_a_checkpoint() {
    let (flag, mut app, mut host) = rig(true);
    host.silent = Some(Point::Checkpoint);
    host.checkpoint(flag, &mut app);
    ask(&mut app, &host, Request::Fin);
    host.silent = None;
    app.handle_checkpoint(host.now, CheckpointResult::Continue)
        .unwrap();
    host.drive(&mut app);
    assert_eq!(host.last_handshake().error, None);
    assert!(host.requests().is_empty(), "FIN still waits");
    app.handle_gc_message(host.now, &gc_bytes(FromGc::FinAck))
        .unwrap();
    host.drive(&mut app);
    assert_eq!(host.requests()[0].error, None);
    assert!(app.is_idle());
}

#[test]
fn leader_checkpoint_waits_for_handshake_then_op_response() {
    let (flag, mut app, mut host) = rig(true);
    let mut out = [0u8; 64];
    let n = app
        .request(host.now, Request::Checkpoint, &mut out)
        .unwrap();
    assert_eq!(out[n - 1], 4);
    host.checkpoint(flag, &mut app);
    assert_eq!(host.last_handshake().error, None);
    assert!(host.requests().is_empty());
    assert_deadline(&app, host.now, AppDeadlines::default().op_response);
    host.answer(&mut app, OpEvent::Checkpoint, 0);
    assert_eq!(
        host.actions.last(),
        Some(&Action::Outcome(Outcome::Request(
            host.requests()[0].clone()
        )))
    );
    assert!(
        host.actions
            .contains(&Action::Sstore(SstoreOp::ReadGlobal { handle: HANDLE }))
    );
    let r = &host.requests()[0];
    assert_eq!(r.op, OpEvent::Checkpoint);
    assert_eq!(r.error, None);
    assert_eq!(r.seq_num, 7);
    assert_eq!(r.reference.as_str(), "ompi_global_snapshot_4242.ckpt");
    assert!(app.is_idle());
}

#[test]
fn leader_checkpoint_missing_seq_and_reference() {
    let (flag, mut app, mut host) = rig(true);
    host.global = (None, None);
    ask(&mut app, &host, Request::Checkpoint);
    host.checkpoint(flag, &mut app);
    host.answer(&mut app, OpEvent::Checkpoint, 0);
    let r = &host.requests()[0];
    assert_eq!(r.error, None);
    assert_eq!(r.seq_num, -1);
    assert_eq!(r.reference.as_str(), "Unknown");
}

#[test]
fn leader_checkpoint_rejected_or_failed() {
    let (flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Checkpoint);
    host.checkpoint(flag, &mut app);
    host.answer(&mut app, OpEvent::Checkpoint, -1);
    assert_eq!(
        host.requests()[0].error,
        error(Wait::OpResponse, WaitFailure::Rejected(-1))
    );
    assert!(
        !host
            .sstore_ops()
            .contains(&SstoreOp::ReadGlobal { handle: HANDLE })
    );

    // Its own handshake failed: the request fails, after the GC's answer.
    let (flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Checkpoint);
    host.gone = Some(Point::Read(FrameKind::Release));
    host.checkpoint(flag, &mut app);
    assert!(host.requests().is_empty());
    host.answer(&mut app, OpEvent::Checkpoint, -1);
    assert_eq!(host.requests()[0].error.unwrap().wait, Wait::Release);
    assert!(app.is_idle());
}

#[test]
fn leader_checkpoint_deadlines() {
    // No handshake ever comes.
    let (_flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Checkpoint);
    assert_eq!(
        app.poll_timeout(),
        Some(host.now + AppDeadlines::default().own_handshake)
    );
    host.expire(&mut app);
    assert_eq!(
        host.requests()[0].error,
        error(Wait::OwnHandshake, WaitFailure::Deadline)
    );
    assert!(app.is_idle());

    // No OP response comes.
    let (flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Checkpoint);
    host.checkpoint(flag, &mut app);
    host.expire(&mut app);
    assert_eq!(
        host.requests()[0].error,
        error(Wait::OpResponse, WaitFailure::Deadline)
    );

    // sstore never answers the global read.
    let (flag, mut app, mut host) = rig(true);
    host.silent = Some(Point::Global);
    ask(&mut app, &host, Request::Checkpoint);
    host.checkpoint(flag, &mut app);
    host.answer(&mut app, OpEvent::Checkpoint, 0);
    host.expire(&mut app);
    assert_eq!(host.requests()[0].error.unwrap().wait, Wait::Global);
    assert!(app.is_idle());
}

#[test]
fn own_handshake_deadline_is_suspended_while_the_handshake_runs() {
    let (flag, mut app, mut host) = rig(true);
    let mut cfg = *app.config();
    cfg.deadlines.own_handshake = Duration::from_millis(5);
    cfg.deadlines.host = Duration::from_secs(1);
    let mut app2 = AppCoordinator::new(cfg, flag);
    core::mem::swap(&mut app, &mut app2);
    ask(&mut app, &host, Request::Checkpoint);
    host.silent = Some(Point::Checkpoint);
    host.checkpoint(flag, &mut app);
    // The checkpoint's own deadline is the next one, not the request's.
    assert_deadline(&app, host.now, Duration::from_secs(1));
    host.silent = None;
    app.handle_checkpoint(host.now, CheckpointResult::Continue)
        .unwrap();
    host.drive(&mut app);
    assert!(host.requests().is_empty(), "waits for the OP response now");
}

#[test]
fn leader_restarted_copy_does_not_wait_for_op_response() {
    let (flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Checkpoint);
    host.checkpoint = CheckpointResult::Restart { pid: 99 };
    host.checkpoint(flag, &mut app);
    let r = &host.requests()[0];
    assert!(r.restarted);
    assert_eq!(r.error, None);
    assert!(app.is_idle());
}

#[test]
fn leader_migrate_packs_preferences_and_waits() {
    let (flag, mut app, mut host) = rig(true);
    let prefs = [
        MigrateEntry {
            vpid: 0,
            host: Some("node7"),
            vpid_pref: -1,
            off_node: false,
        },
        MigrateEntry {
            vpid: 2,
            host: None,
            vpid_pref: 0,
            off_node: true,
        },
    ];
    let mut out = [0u8; 128];
    let n = app
        .request(
            host.now,
            Request::Migrate(crate::wire::List::Items(&prefs)),
            &mut out,
        )
        .unwrap();
    let mut want = vec![0, 0, 0, 1, 8, 0, 0, 0, 1, 0x12, 0x34, 0, 1];
    let int = |v: i32| {
        let mut b = vec![0, 0, 0, 1, 9];
        b.extend_from_slice(&v.to_be_bytes());
        b
    };
    want.extend(int(6));
    want.extend(int(2));
    want.extend(int(0));
    want.extend([0, 0, 0, 1, 0, 0, 0, 6]);
    want.extend(b"node7\0");
    want.extend(int(-1));
    want.extend(int(0));
    want.extend(int(2));
    want.extend([0, 0, 0, 1, 0, 0, 0, 0]);
    want.extend(int(0));
    want.extend(int(1));
    assert_eq!(out[..n], want[..]);
    // The leader stays: a non-target of the migration.
    host.options.options.all_migrating = true;
    host.checkpoint(flag, &mut app);
    assert!(host.requests().is_empty());
    host.answer(&mut app, OpEvent::Migrate, 0);
    let r = &host.requests()[0];
    assert_eq!(r.op, OpEvent::Migrate);
    assert_eq!(r.error, None);
    assert_eq!(r.seq_num, -1);
    assert!(app.is_idle());
}

#[test]
fn leader_migrating_itself_ends_its_request_terminating() {
    let (flag, mut app, mut host) = rig(true);
    app.request(
        host.now,
        Request::Migrate(crate::wire::List::Items(&[])),
        &mut [0; 64],
    )
    .unwrap();
    host.options.options.all_migrating = true;
    host.options.options.migrating = true;
    host.checkpoint(flag, &mut app);
    let r = &host.requests()[0];
    assert!(r.terminating);
    assert_eq!(r.error, None);
    assert!(app.is_terminating());
}

#[test]
fn leader_restart_request_awaits_termination() {
    let (_flag, mut app, mut host) = rig(true);
    let mut out = [0u8; 64];
    let n = app
        .request(
            host.now,
            Request::Restart {
                seq_num: 3,
                handle: Some("snap"),
            },
            &mut out,
        )
        .unwrap();
    let mut tail = vec![0, 0, 0, 1, 9, 0, 0, 0, 5, 0, 0, 0, 1, 9, 0, 0, 0, 3];
    tail.extend([0, 0, 0, 1, 0, 0, 0, 5]);
    tail.extend(b"snap\0");
    assert_eq!(out[13..n], tail[..]);
    host.drive(&mut app);
    assert!(host.requests()[0].terminating);
    assert_eq!(host.actions.last(), Some(&Action::AwaitTermination));
    assert!(app.is_terminating());
    assert_eq!(app.poll_timeout(), None);
}

#[test]
fn size_of_the_machine() {
    // Keep the number in AppCoordinator's docs true.
    #[cfg(target_pointer_width = "64")]
    assert_eq!(core::mem::size_of::<AppCoordinator<'_>>(), 2232);
    assert!(core::mem::size_of::<AppCoordinator<'_>>() < 4096);
}

/// Harness finding: the global coordinator ends a checkpoint (and answers
/// the leader) once every local coordinator recovered, which can be before
/// the leader's own recover hook and teardown are done. The answer is kept
/// for the end of the handshake instead of being dropped (which left the
/// leader waiting for the OP response until its deadline).
#[test]
fn op_response_before_the_own_handshake_ends_is_kept() {
    let (flag, mut app, mut host) = rig(true);
    host.global = (Some(3), Some("snapc_global_snapshot_7_3"));
    host.silent = Some(Point::Recover);
    ask(&mut app, &host, Request::Checkpoint);
    host.checkpoint(flag, &mut app);
    assert!(app.is_checkpointing());
    app.handle_gc_message(host.now, &op_response(OpEvent::Checkpoint, 0))
        .unwrap();
    assert_eq!(app.unexpected_inputs(), 0);
    assert!(host.requests().is_empty());
    host.silent = None;
    app.handle_recovered(host.now, Ok(())).unwrap();
    host.drive(&mut app);
    let r = &host.requests()[0];
    assert_eq!(r.error, None);
    assert_eq!(
        (r.seq_num, r.reference.as_str()),
        (3, "snapc_global_snapshot_7_3")
    );
    assert!(app.is_idle());
}

/// Harness finding: a request the global coordinator refuses at once (a
/// conflicting MIGRATE table, a CHECKPOINT while busy) is answered -1
/// before any handshake; the leader ends the request then, instead of
/// waiting for a handshake that never comes.
#[test]
fn refusal_before_the_own_handshake_ends_the_request() {
    let (_flag, mut app, mut host) = rig(true);
    ask(&mut app, &host, Request::Checkpoint);
    host.answer(&mut app, OpEvent::Checkpoint, -1);
    assert_eq!(
        host.requests()[0].error,
        error(Wait::OpResponse, WaitFailure::Rejected(-1))
    );
    assert!(app.is_idle());
    assert_eq!(app.poll_timeout(), None);
}

#[test]
fn request_into_any_sink_writes_the_same_bytes() {
    let long = "h".repeat(3000);
    let requests = [
        Request::Init,
        Request::Restart {
            seq_num: 4,
            handle: Some(&long),
        },
    ];
    for request in requests {
        let (_flag, mut a, host) = rig(true);
        let (_flag, mut b, _) = rig(true);
        let mut out = vec![0u8; 4096];
        let n = a.request(host.now, request, &mut out).unwrap();
        let mut sink: heapless::Vec<u8, 4096> = heapless::Vec::new();
        assert_eq!(b.request_into(host.now, request, &mut sink), Ok(n));
        assert_eq!(&sink[..], &out[..n]);
    }
    // A sink that cannot take it refuses the request; nothing waits.
    let (_flag, mut app, host) = rig(true);
    let mut small: heapless::Vec<u8, 8> = heapless::Vec::new();
    assert!(matches!(
        app.request_into(host.now, Request::Checkpoint, &mut small),
        Err(InputError::Encode(_))
    ));
    assert!(app.is_idle());
}
