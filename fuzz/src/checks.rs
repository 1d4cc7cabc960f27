//! The checks behind every fuzz target, shared with the corpus replay test
//! (`tests/fuzz_corpus.rs` in the workspace), so a stored input is checked the
//! same way on stable Rust as under libFuzzer on nightly.
//!
//! Each function panics (the fuzzer's crash) when a property fails.

use arbitrary::{Arbitrary, Unstructured};
use snapc_core::wire::{
    ChannelNames, CkptState, CrState, Debugger, FifoName, FifoOptions, FromGc, JobDetail,
    JobOptions, JobState, List, LocalFinish, LocalUpdate, MAX_HOST_LEN, Message, MigrateEntry,
    OpEvent, OpResponse, OptionsFrame, OrtedState, ProcessName, Request, RequestOp, StateCode,
    ToDaemon, ToGc, fifo,
};

/// Whatever `M` accepts must re-encode to exactly the input: the decoders are
/// strict, so a lossy or lenient parse shows up here.
pub fn parse_is_exact<'a, M: Message<'a>>(data: &'a [u8]) -> bool {
    match M::parse(data) {
        Ok(m) => {
            let mut out = vec![0u8; m.buffer_len()];
            let n = m.emit(&mut out).expect("an accepted message encodes");
            assert_eq!(&out[..n], data, "re-encoding differs from the input");
            true
        }
        Err(e) => {
            assert!(
                e.offset <= data.len(),
                "error offset {} beyond input {}",
                e.offset,
                data.len()
            );
            false
        }
    }
}

/// Target `decode_to_gc`.
pub fn decode_to_gc(data: &[u8]) {
    parse_is_exact::<ToGc<'_>>(data);
}

/// Target `decode_from_gc`.
pub fn decode_from_gc(data: &[u8]) {
    parse_is_exact::<FromGc<'_>>(data);
}

/// Target `decode_to_daemon`.
pub fn decode_to_daemon(data: &[u8]) {
    parse_is_exact::<ToDaemon>(data);
}

/// Target `fifo_frames`: every handshake frame decoder on the same bytes.
pub fn fifo_frames(data: &[u8]) {
    for debug in [false, true] {
        if let Ok(frame) = OptionsFrame::parse(data, debug) {
            assert_eq!(OptionsFrame::parse(&frame.to_bytes(), debug), Ok(frame));
        }
    }
    if let Ok(r) = fifo::parse_response(data) {
        assert_eq!(fifo::response_frame(r), data);
    }
    if let Ok(s) = fifo::parse_cr_state(data) {
        assert_eq!(fifo::cr_state_frame(s), data);
    }
    if fifo::parse_go_ahead(data).is_ok() {
        assert_eq!(fifo::GO_AHEAD, data);
    }
    if let Ok(v) = fifo::parse_release(data) {
        assert_eq!(v.to_ne_bytes(), data);
    }
}

/// Target `fifo_name`: accepted names print back to the same file name.
pub fn fifo_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = FifoName::parse(text) {
        let base = text.rsplit('/').next().unwrap_or(text);
        assert_eq!(name.file_name().as_str(), base);
    }
}

/// JOB_STATE's long form: handle, the four options, migrating processes.
pub type LongForm = (u32, [bool; 4], Option<Vec<(u32, u32)>>);

/// A message described by owned values, built by the fuzzer.
#[derive(Debug, Arbitrary)]
pub enum Described {
    /// REQUEST_OP.
    Request {
        jobid: u32,
        event: u8,
        seq: i32,
        handle: Option<String>,
        entries: Vec<(i32, Option<String>, i32, bool)>,
    },
    /// ORTED_STATE.
    Orted {
        quick: bool,
        state: u8,
        notify: bool,
    },
    /// OP response.
    Response { event: u8, state: i32 },
    /// FIN_ACK.
    FinAck,
    /// JOB_STATE.
    Job {
        jobid: u32,
        state: u8,
        notify: bool,
        long: Option<LongForm>,
    },
    /// LOCAL_FINISH.
    Finish(u8),
    /// LOCAL_UPDATE.
    Update {
        jobid: u32,
        vpid: u32,
        pid: i32,
        debug: Option<bool>,
    },
}

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

/// Strings the protocol can carry: no NUL, within the field's limit.
fn carryable(s: &Option<String>, max: usize) -> Option<&str> {
    s.as_deref().map(|s| {
        let s = s.split('\0').next().unwrap_or("");
        let mut end = s.len().min(max - 1);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    })
}

/// Encodes `m`, decodes it back on its channel, and checks the value, the
/// length, and that every strict prefix is rejected.
fn round_trip_one<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(
    m: &M,
    buf: &'a mut Vec<u8>,
    optional_tail: usize,
) {
    let len = m.buffer_len();
    buf.resize(len, 0);
    assert_eq!(m.emit(buf), Ok(len));
    let buf: &'a [u8] = buf;
    assert_eq!(M::parse(buf).as_ref(), Ok(m), "decode(encode(m)) != m");
    for cut in 0..len {
        if M::parse(&buf[..cut]).is_ok() {
            assert_eq!(cut, len - optional_tail, "a prefix of {cut} bytes parsed");
        }
    }
}

/// Target `roundtrip_messages`: structure-aware encode then decode.
pub fn round_trip(d: &Described) {
    let mut buf = Vec::new();
    match d {
        Described::Request {
            jobid,
            event,
            seq,
            handle,
            entries,
        } => {
            let entries: Vec<MigrateEntry<'_>> = entries
                .iter()
                .map(|(vpid, host, vpid_pref, off_node)| MigrateEntry {
                    vpid: *vpid,
                    host: carryable(host, MAX_HOST_LEN),
                    vpid_pref: *vpid_pref,
                    off_node: *off_node,
                })
                .collect();
            let request = match pick(OpEvent::ALL, *event) {
                OpEvent::Restart => Request::Restart {
                    seq_num: *seq,
                    handle: carryable(handle, 4096),
                },
                OpEvent::Migrate => Request::Migrate(List::Items(&entries)),
                e => Request::without_args(e).expect("argument-less event"),
            };
            round_trip_one(
                &ToGc::RequestOp(RequestOp {
                    jobid: *jobid,
                    request,
                }),
                &mut buf,
                0,
            );
        }
        Described::Orted {
            quick,
            state,
            notify,
        } => {
            let state = StateCode {
                state: pick(CkptState::ALL, *state),
                notify: *notify,
            };
            round_trip_one(
                &ToGc::OrtedState(OrtedState {
                    quick: *quick,
                    state,
                }),
                &mut buf,
                0,
            );
        }
        Described::Response { event, state } => {
            let op_event = pick(OpEvent::ALL, *event);
            let m = if op_event == OpEvent::FinAck {
                FromGc::FinAck
            } else {
                FromGc::OpResponse(OpResponse {
                    op_event,
                    op_state: op_event.carries_op_state().then_some(*state),
                })
            };
            round_trip_one(&m, &mut buf, 0);
        }
        Described::FinAck => round_trip_one(&FromGc::FinAck, &mut buf, 0),
        Described::Job {
            jobid,
            state,
            notify,
            long,
        } => {
            let procs: Vec<ProcessName> = long
                .as_ref()
                .and_then(|l| l.2.as_ref())
                .map(|p| {
                    p.iter()
                        .map(|&(jobid, vpid)| ProcessName { jobid, vpid })
                        .collect()
                })
                .unwrap_or_default();
            let detail =
                long.as_ref().map(
                    |(handle, [term, stop, prep, recover], migrating)| JobDetail {
                        handle: *handle,
                        options: JobOptions {
                            term: *term,
                            stop: *stop,
                            inc_prep_only: *prep,
                            inc_recover_only: *recover,
                        },
                        migrating: migrating.as_ref().map(|_| List::Items(&procs)),
                    },
                );
            let state = StateCode {
                state: pick(CkptState::ALL, *state),
                notify: *notify,
            };
            round_trip_one(
                &FromGc::JobState(JobState {
                    jobid: *jobid,
                    state,
                    detail,
                }),
                &mut buf,
                0,
            );
        }
        Described::Finish(s) => {
            let m = ToDaemon::LocalFinish(LocalFinish {
                cr_state: pick(CrState::ALL, *s),
            });
            round_trip_one(&m, &mut buf, 0);
        }
        Described::Update {
            jobid,
            vpid,
            pid,
            debug,
        } => {
            let m = ToDaemon::LocalUpdate(LocalUpdate {
                name: ProcessName {
                    jobid: *jobid,
                    vpid: *vpid,
                },
                pid: *pid,
                debug: *debug,
            });
            // Without its optional debug flag the message is whole (6 bytes shorter).
            round_trip_one(&m, &mut buf, if debug.is_some() { 6 } else { 0 });
        }
    }
}

/// FIFO options frames and names described by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct DescribedFrames {
    words: [bool; 8],
    debug: bool,
    handle: u32,
    pid: u32,
    n: u32,
}

/// Target `roundtrip_frames`: options frames and FIFO names, encode then decode.
pub fn round_trip_frames(d: &DescribedFrames) {
    let w = d.words;
    let frame = OptionsFrame {
        options: FifoOptions {
            all_migrating: w[0],
            migrating: w[1],
            term: w[2],
            stop: w[3],
            inc_prep_only: w[4],
            inc_recover_only: w[5],
            debugger: d.debug.then_some(Debugger {
                attach: w[6],
                detach: w[7],
            }),
        },
        handle: d.handle,
    };
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), frame.buffer_len());
    assert_eq!(OptionsFrame::parse(&bytes, d.debug), Ok(frame));
    assert!(OptionsFrame::parse(&bytes, !d.debug).is_err());
    // Names exist for C int pids above 0 and counters from 0.
    let names = ChannelNames {
        pid: d.pid % i32::MAX as u32 + 1,
        n: d.n % (i32::MAX as u32 + 1),
    };
    for name in [names.prog_read(), names.prog_write()] {
        assert_eq!(FifoName::parse(&name.file_name()), Ok(name));
    }
}

/// Runs the named target's check on one input, as libFuzzer would.
/// Returns false for an unknown target name.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "decode_to_gc" => decode_to_gc(data),
        "decode_from_gc" => decode_from_gc(data),
        "decode_to_daemon" => decode_to_daemon(data),
        "fifo_frames" => fifo_frames(data),
        "fifo_name" => fifo_name(data),
        "roundtrip_messages" => {
            if let Ok(d) = Described::arbitrary_take_rest(Unstructured::new(data)) {
                round_trip(&d);
            }
        }
        "roundtrip_frames" => {
            if let Ok(d) = DescribedFrames::arbitrary_take_rest(Unstructured::new(data)) {
                round_trip_frames(&d);
            }
        }
        "app_machine" => {
            if let Ok(s) = AppScenario::arbitrary_take_rest(Unstructured::new(data)) {
                app_machine(&s);
            }
        }
        _ => return false,
    }
    true
}

/// Every target `run` knows.
pub const TARGETS: &[&str] = &[
    "decode_to_gc",
    "decode_from_gc",
    "decode_to_daemon",
    "fifo_frames",
    "fifo_name",
    "roundtrip_messages",
    "roundtrip_frames",
    "app_machine",
];

// ---- state machines ----

use snapc_core::app::{
    Action as AppAction, AppConfig, AppCoordinator, CheckpointFlag, CheckpointResult, Frame,
    HostFailure, IoFailure, PrepareResult,
};
use snapc_core::time::{Duration, Instant};

/// One input to the app coordinator, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub enum AppInput {
    /// The signal handler sets the flag.
    Signal,
    /// The application's progress point.
    Progress,
    /// The FIFOs opened.
    Opened,
    /// A well-formed frame of the kind asked for, carrying `value`.
    Frame(i32, bool),
    /// Arbitrary bytes as the frame asked for.
    Bytes(Vec<u8>),
    /// A write finished.
    WriteDone,
    /// An I/O failure (peer gone, or other).
    IoError(bool),
    /// The prepare hook answered.
    Prepare(u8),
    /// The checkpointer answered.
    Checkpoint(u8, u32),
    /// The recover hook answered.
    Recovered(bool),
    /// An sstore operation answered.
    Sstore(bool),
    /// The global sequence number and reference.
    SstoreGlobal(Option<i32>, Option<String>),
    /// The teardown is done.
    TeardownDone,
    /// Bytes from the global coordinator.
    Gc(Vec<u8>),
    /// A well-formed answer from the global coordinator.
    GcAnswer(u8, i32),
    /// An application request.
    Request(u8, i32, Vec<(i32, Option<String>, i32, bool)>),
    /// Time passes (microseconds), then the timer fires if due.
    Advance(u32),
}

/// The app coordinator's configuration, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct AppScenario {
    leader: bool,
    checkpointer: bool,
    debug: bool,
    inputs: Vec<AppInput>,
}

/// Checks one action the machine asked for: bytes it writes decode.
fn check_app_action(action: &AppAction, debug: bool) {
    match action {
        AppAction::Write { frame, bytes } => match frame {
            Frame::Response => {
                fifo::parse_response(bytes).expect("the response frame decodes");
            }
            Frame::Running | Frame::FinalState => {
                fifo::parse_cr_state(bytes).expect("the state frame decodes");
            }
            other => panic!("the app coordinator writes a {other:?} frame"),
        },
        AppAction::Read { frame, len } => {
            let expected = match frame {
                Frame::Options => OptionsFrame::frame_len(debug),
                Frame::GoAhead | Frame::Release => fifo::INT_FRAME_LEN,
                other => panic!("the app coordinator reads a {other:?} frame"),
            };
            assert_eq!(*len, expected, "read length for {frame:?}");
        }
        AppAction::SendToDaemon(m) => {
            let mut buf = [0u8; 64];
            let n = m.emit(&mut buf).expect("the daemon message encodes");
            assert_eq!(ToDaemon::parse(&buf[..n]).as_ref(), Ok(m));
        }
        _ => {}
    }
}

/// Target `app_machine`: arbitrary inputs in any order. Checks: no panic;
/// every frame written and message sent decodes; every read has the frame's
/// length; a due deadline is acted on (after `handle_timeout(now)` no
/// deadline at or before `now` remains); the machine never waits without a
/// deadline outside the states allowed to (idle, quiesced, awaiting
/// termination).
pub fn app_machine(s: &AppScenario) {
    let flag = &CheckpointFlag::new();
    let mut config = AppConfig::new(
        4242,
        ProcessName {
            jobid: 7,
            vpid: u32::from(!s.leader),
        },
        s.leader,
    );
    config.checkpointer = s.checkpointer;
    config.debug = s.debug;
    let mut m = AppCoordinator::new(config, flag);
    let mut now = Instant::from_secs(1);
    let mut asked: Option<AppAction> = None;
    for input in s.inputs.iter().take(400) {
        match input {
            AppInput::Signal => {
                let _ = flag.request_at(now);
            }
            AppInput::Progress => m.handle_progress(now),
            AppInput::Opened => m.handle_opened(now),
            AppInput::Frame(value, flag_words) => {
                let bytes: Vec<u8> = match &asked {
                    Some(AppAction::Read {
                        frame: Frame::Options,
                        ..
                    }) => OptionsFrame {
                        options: FifoOptions {
                            all_migrating: *flag_words && value & 1 != 0,
                            migrating: value & 2 != 0,
                            term: value & 4 != 0,
                            stop: value & 8 != 0,
                            inc_prep_only: value & 16 != 0,
                            inc_recover_only: value & 32 != 0,
                            debugger: s.debug.then_some(Debugger {
                                attach: value & 64 != 0,
                                detach: false,
                            }),
                        },
                        handle: (*value as u32) >> 8,
                    }
                    .to_bytes()
                    .to_vec(),
                    _ => value.to_ne_bytes().to_vec(),
                };
                m.handle_read(now, &bytes);
            }
            AppInput::Bytes(b) => m.handle_read(now, b),
            AppInput::WriteDone => m.handle_write_done(now),
            AppInput::IoError(gone) => m.handle_io_error(
                now,
                if *gone {
                    IoFailure::PeerGone
                } else {
                    IoFailure::Failed
                },
            ),
            AppInput::Prepare(p) => {
                let r = [
                    PrepareResult::Ready,
                    PrepareResult::NotNow,
                    PrepareResult::Failed,
                ];
                m.handle_prepare(now, pick(&r, *p));
            }
            AppInput::Checkpoint(c, pid) => {
                let r = [
                    CheckpointResult::Continue,
                    CheckpointResult::Restart { pid: *pid },
                    CheckpointResult::Term,
                    CheckpointResult::Error,
                ];
                m.handle_checkpoint(now, pick(&r, *c));
            }
            AppInput::Recovered(ok) => {
                m.handle_recovered(now, if *ok { Ok(()) } else { Err(HostFailure) })
            }
            AppInput::Sstore(ok) => {
                m.handle_sstore(now, if *ok { Ok(()) } else { Err(HostFailure) })
            }
            AppInput::SstoreGlobal(seq, reference) => {
                m.handle_sstore_global(now, *seq, reference.as_deref())
            }
            AppInput::TeardownDone => m.handle_teardown_done(now),
            AppInput::Gc(bytes) => m.handle_gc(now, bytes),
            AppInput::GcAnswer(event, state) => {
                let op_event = pick(OpEvent::ALL, *event);
                let msg = if op_event == OpEvent::FinAck {
                    FromGc::FinAck
                } else {
                    FromGc::OpResponse(OpResponse {
                        op_event,
                        op_state: op_event.carries_op_state().then_some(*state),
                    })
                };
                let mut buf = [0u8; 64];
                let n = msg.emit(&mut buf).expect("encodes");
                m.handle_gc(now, &buf[..n]);
            }
            AppInput::Request(event, seq, entries) => {
                let entries: Vec<MigrateEntry<'_>> = entries
                    .iter()
                    .map(|(vpid, host, vpid_pref, off_node)| MigrateEntry {
                        vpid: *vpid,
                        host: carryable(host, MAX_HOST_LEN),
                        vpid_pref: *vpid_pref,
                        off_node: *off_node,
                    })
                    .collect();
                let request = match pick(OpEvent::ALL, *event) {
                    OpEvent::Restart => Request::Restart {
                        seq_num: *seq,
                        handle: Some("snap"),
                    },
                    OpEvent::Migrate => Request::Migrate(List::Items(&entries)),
                    e => Request::without_args(e).expect("argument-less event"),
                };
                let mut out = [0u8; 1 << 14];
                if let Ok(n) = m.request(now, request, &mut out)
                    && n > 0
                {
                    let sent = ToGc::parse(&out[..n]).expect("the request decodes");
                    assert!(matches!(sent, ToGc::RequestOp(r) if r.request == request));
                }
            }
            AppInput::Advance(us) => {
                now += Duration::from_micros(u64::from(*us));
                if m.poll_timeout().is_some_and(|d| d <= now) {
                    m.handle_timeout(now);
                    assert!(
                        m.poll_timeout().is_none_or(|d| d > now),
                        "a due deadline survived handle_timeout"
                    );
                }
            }
        }
        while let Some(action) = m.poll_action() {
            check_app_action(&action, s.debug);
            if matches!(
                action,
                AppAction::Read { .. } | AppAction::Write { .. } | AppAction::OpenChannel { .. }
            ) {
                asked = Some(action);
            }
        }
        let unbounded_ok = m.is_idle() || m.is_quiesced() || m.is_terminating();
        assert!(
            unbounded_ok || m.poll_timeout().is_some(),
            "waiting with no deadline after {input:?}"
        );
    }
}
