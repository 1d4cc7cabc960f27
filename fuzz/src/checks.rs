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
        "local_machine" => {
            if let Ok(s) = LocalScenario::arbitrary_take_rest(Unstructured::new(data)) {
                local_machine(&s);
            }
        }
        "global_machine" => {
            if let Ok(s) = GlobalScenario::arbitrary_take_rest(Unstructured::new(data)) {
                global_machine(&s);
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
    "local_machine",
    "global_machine",
];

// ---- state machines ----

use snapc_core::app::{
    Action as AppAction, AppCoordinator, CheckpointFlag, CheckpointResult, Config as AppConfig,
    FrameKind as Frame, HostError, InputError as AppInputError, PrepareResult,
};
use snapc_core::time::{Duration, Instant};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};

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
fn check_app_action(action: &AppAction, debug: bool, out: &MessageBuf) {
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
        AppAction::SendToDaemon { len } => {
            let m = ToDaemon::parse(&out[..*len]).expect("the daemon message decodes");
            let mut again = [0u8; 64];
            let n = m.emit(&mut again).expect("the daemon message encodes");
            assert_eq!(&again[..n], &out[..*len], "the daemon message round trip");
        }
        _ => {}
    }
}

/// Target `app_machine`: arbitrary inputs in any order. Checks: no panic;
/// every frame written and message sent decodes; every read has the frame's
/// length; a due deadline is acted on (after `handle_timeout(now)` no
/// deadline at or before `now` remains); the machine never waits without a
/// deadline outside the states allowed to (idle, quiesced, awaiting
/// termination); an input the machine does not take is counted, once, and
/// queues nothing.
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
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    for input in s.inputs.iter().take(400) {
        let before = m.unexpected_inputs();
        let taken: Result<(), AppInputError> = match input {
            AppInput::Signal => {
                let _ = flag.request_at(now);
                Ok(())
            }
            AppInput::Progress => {
                m.handle_progress(now);
                Ok(())
            }
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
                m.handle_read(now, &bytes)
            }
            AppInput::Bytes(b) => m.handle_read(now, b),
            AppInput::WriteDone => m.handle_write_done(now),
            AppInput::IoError(gone) => m.handle_io_error(
                now,
                if *gone {
                    IoError::PeerGone
                } else {
                    IoError::Failed
                },
            ),
            AppInput::Prepare(p) => {
                let r = [
                    PrepareResult::Ready,
                    PrepareResult::NotNow,
                    PrepareResult::Failed,
                ];
                m.handle_prepare(now, pick(&r, *p))
            }
            AppInput::Checkpoint(c, pid) => {
                let r = [
                    CheckpointResult::Continue,
                    CheckpointResult::Restart { pid: *pid },
                    CheckpointResult::Term,
                    CheckpointResult::Error,
                ];
                m.handle_checkpoint(now, pick(&r, *c))
            }
            AppInput::Recovered(ok) => {
                m.handle_recovered(now, if *ok { Ok(()) } else { Err(HostError) })
            }
            AppInput::Sstore(ok) => m.handle_sstore(now, if *ok { Ok(()) } else { Err(HostError) }),
            AppInput::SstoreGlobal(seq, reference) => {
                m.handle_sstore_global(now, *seq, reference.as_deref())
            }
            AppInput::TeardownDone => m.handle_teardown_done(now),
            AppInput::Gc(bytes) => m.handle_gc_message(now, bytes),
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
                m.handle_gc_message(now, &buf[..n])
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
                // A refused request is not an input the machine ignores.
                Ok(())
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
                Ok(())
            }
        };
        if let Err(e) = taken {
            assert_eq!(
                m.unexpected_inputs(),
                before.saturating_add(1),
                "{input:?} refused with {e:?} but not counted once"
            );
            assert!(
                m.poll_action(&mut out).is_none(),
                "{input:?} refused with {e:?} yet queued an action"
            );
        }
        while let Some(action) = m.poll_action(&mut out) {
            check_app_action(&action, s.debug, &out);
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

// ---- the local coordinator ----

use snapc_core::local::{
    Action as LcAction, Config as LocalConfig, LocalCoordinator, LocalDeadlines, Mode as LcMode,
    Phase as LcPhase, ProcessOutcome as LcOutcome, ProcessSlot, ProcessStorage, SlotId,
};
use snapc_core::wire::{ChannelNames as LcNames, CkptResponse};

/// Process slots of the fuzzed local coordinator.
const LC_SLOTS: usize = 4;
/// The job the local coordinator's processes belong to.
const LC_JOB: u32 = 7;

/// One input to the local coordinator, chosen by the fuzzer. A slot byte
/// below 0xC0 names the slot index's newest generation, from 0xC0 up an
/// earlier (maybe stale) one.
#[derive(Debug, Arbitrary)]
pub enum LocalInput {
    /// `add_process(vpid, pid)` (pid 0 is refused).
    Add(u8, u8),
    /// `remove_process(vpid)`.
    Remove(u8),
    /// `update_pid(vpid, pid)`, any pid.
    UpdatePid(u8, u32),
    /// LOCAL_UPDATE, through its encoding.
    LocalUpdate(u8, i32, Option<bool>),
    /// LOCAL_FINISH from a pid, through its encoding.
    LocalFinish(u8, u8),
    /// A JOB_STATE RUNNING (long form), through its encoding.
    Running {
        /// The sstore handle.
        handle: u32,
        /// term, stop, inc_prep_only, inc_recover_only.
        options: [bool; 4],
        /// The migrating processes' vpids.
        migrating: Option<Vec<u8>>,
    },
    /// A quick JOB_STATE with any state.
    Quick(u8, bool),
    /// A quick verdict: ESTABLISHED, INC_PREPED or ERROR.
    Verdict(u8),
    /// Raw bytes from the global coordinator.
    JobBytes(Vec<u8>),
    /// `handle_fifos_exist`.
    FifosExist(u8),
    /// `handle_opened`.
    Opened(u8),
    /// `handle_written`.
    Written(u8),
    /// `handle_read` with a 4-byte frame (value selector).
    Read(u8, u8),
    /// `handle_read` with raw bytes.
    ReadBytes(u8, Vec<u8>),
    /// `handle_stopped`.
    Stopped(u8),
    /// `handle_io_error` (EOF or other).
    IoError(u8, bool),
    /// The right answer to whatever the slot index waits for.
    Answer(u8),
    /// The right answer for every slot that waits.
    AnswerAll(bool),
    /// Time passes (microseconds), then the timer fires if due.
    Advance(u32),
}

/// The local coordinator's configuration and inputs, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct LocalScenario {
    debugger: Option<(bool, bool)>,
    /// Each deadline in milliseconds; `None` for the defaults.
    deadlines: Option<[u16; 8]>,
    /// Processes in the table at the start (vpids 0.., pids 100..).
    procs: u8,
    inputs: Vec<LocalInput>,
}

/// What a slot was asked to do and has not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Watch,
    Open,
    Write,
    Read,
    Stop,
}

/// The harness's view of one slot.
#[derive(Debug, Default, Clone)]
struct LcSlotModel {
    id: Option<SlotId>,
    name: Option<ProcessName>,
    pid: u32,
    /// The handshake counter the next signalled handshake uses.
    n: u32,
    asked: Option<(SlotId, Asked)>,
    /// Opened and not closed since.
    open: bool,
    /// Opened: the next write is the options frame.
    options_due: bool,
    /// The options went out: the next read is the response.
    response_next: bool,
    /// START was read: the next write is the go-ahead.
    go_ahead_due: bool,
}

/// The phase the harness started with a JOB_STATE RUNNING.
#[derive(Debug)]
struct LcPhaseModel {
    mode: LcMode,
    handle: u32,
    options: JobOptions,
    migrating: Option<Vec<ProcessName>>,
    /// Processes of the phase without a result yet.
    pending: Vec<ProcessName>,
    /// Whether every result so far is a success for the mode.
    all_ok: bool,
    /// Whether the phase's report (or an abort's RECOVERED) went out.
    reported: bool,
}

#[derive(Debug)]
struct LcModel {
    slots: [LcSlotModel; LC_SLOTS],
    history: Vec<SlotId>,
    phase: Option<LcPhaseModel>,
    debugger: Option<Debugger>,
}

fn next_counter(n: u32) -> u32 {
    if n >= i32::MAX as u32 { 0 } else { n + 1 }
}

impl LcModel {
    fn pick(&self, b: u8) -> Option<SlotId> {
        if b < 0xC0 {
            self.slots[usize::from(b) % LC_SLOTS].id
        } else if self.history.is_empty() {
            None
        } else {
            Some(self.history[usize::from(b) % self.history.len()])
        }
    }

    fn seen(&mut self, id: SlotId) {
        let s = &mut self.slots[id.index()];
        if s.id != Some(id) {
            s.id = Some(id);
            if self.history.len() < 32 {
                self.history.push(id);
            }
        }
    }

    /// A process now has this slot, with counter 0.
    fn placed(&mut self, id: SlotId, name: ProcessName, pid: u32) {
        self.seen(id);
        let s = &mut self.slots[id.index()];
        s.name = Some(name);
        s.pid = pid;
        s.n = 0;
    }

    fn index_of(&self, name: ProcessName) -> Option<usize> {
        self.slots.iter().position(|s| s.name == Some(name))
    }

    /// An input for `id` returned `ok`: it must be accepted exactly when it
    /// answers the action outstanding for that slot.
    fn answered(&mut self, id: SlotId, kind: Asked, ok: bool, what: &str) {
        let s = &mut self.slots[id.index()];
        let fits = s.asked == Some((id, kind));
        assert_eq!(
            ok, fits,
            "{what} for {id:?} accepted: {ok}, outstanding: {:?}",
            s.asked
        );
        if ok {
            s.asked = None;
        }
    }

    /// Checks one action; `phase` is the machine's phase when it is polled,
    /// `out` the buffer it was polled with.
    fn action(&mut self, action: &LcAction, phase: LcPhase, out: &MessageBuf) {
        let asks = |s: &mut LcSlotModel, slot: SlotId, kind: Asked| {
            assert!(
                s.asked.is_none(),
                "{kind:?} for {slot:?} while {:?} is outstanding",
                s.asked
            );
            assert!(s.name.is_some(), "{kind:?} for an empty slot {slot:?}");
            s.asked = Some((slot, kind));
        };
        match action {
            LcAction::Signal { slot, pid } => {
                self.seen(*slot);
                let s = &self.slots[slot.index()];
                assert!(
                    s.name.is_some() && s.pid == *pid,
                    "signal to pid {pid}: {s:?}"
                );
                assert!(!s.open, "signal for {slot:?} with its channel open");
            }
            LcAction::WatchFifos { slot, names } | LcAction::OpenFifos { slot, names } => {
                self.seen(*slot);
                let s = &mut self.slots[slot.index()];
                let expected = LcNames { pid: s.pid, n: s.n };
                assert_eq!(*names, expected, "FIFO names of {slot:?}");
                let kind = if matches!(action, LcAction::WatchFifos { .. }) {
                    Asked::Watch
                } else {
                    Asked::Open
                };
                asks(s, *slot, kind);
            }
            LcAction::Write { slot, bytes } => {
                self.seen(*slot);
                let debugger = self.debugger;
                let phase_model = self.phase.as_ref();
                let s = &mut self.slots[slot.index()];
                assert!(s.open, "write to the closed channel of {slot:?}");
                if core::mem::take(&mut s.options_due) {
                    let frame = OptionsFrame::parse(bytes, debugger.is_some())
                        .expect("the options frame decodes");
                    let p = phase_model.expect("options outside a phase");
                    let name = s.name.expect("a process");
                    let o = frame.options;
                    assert_eq!(frame.handle, p.handle, "options frame handle");
                    assert_eq!(o.debugger, debugger, "debugger words");
                    assert_eq!(
                        (o.term, o.stop, o.inc_prep_only, o.inc_recover_only),
                        (
                            p.options.term,
                            p.options.stop,
                            p.options.inc_prep_only,
                            p.options.inc_recover_only
                        ),
                        "options frame flags"
                    );
                    assert_eq!(o.all_migrating, p.migrating.is_some(), "all_migrating");
                    let moving = p.migrating.as_ref().is_some_and(|l| l.contains(&name));
                    assert_eq!(o.migrating, moving, "migrating flag of {name:?}");
                    s.response_next = true;
                } else if core::mem::take(&mut s.go_ahead_due) {
                    fifo::parse_go_ahead(bytes).expect("the go-ahead decodes");
                } else {
                    let v = fifo::parse_release(bytes).expect("the release decodes");
                    assert_eq!(v, 0, "release value");
                    assert_eq!(
                        phase,
                        LcPhase::Releasing,
                        "release written outside releasing"
                    );
                }
                asks(s, *slot, Asked::Write);
            }
            LcAction::Read { slot, len } => {
                self.seen(*slot);
                assert_eq!(*len, fifo::INT_FRAME_LEN, "read length");
                let s = &mut self.slots[slot.index()];
                assert!(s.open, "read from the closed channel of {slot:?}");
                assert!(
                    !s.options_due && !s.go_ahead_due,
                    "read before the due write"
                );
                asks(s, *slot, Asked::Read);
            }
            LcAction::WaitStopped { slot, pid } => {
                self.seen(*slot);
                let s = &mut self.slots[slot.index()];
                assert_eq!(s.pid, *pid, "stop wait pid");
                asks(s, *slot, Asked::Stop);
            }
            LcAction::Close { slot } => {
                let s = &mut self.slots[slot.index()];
                if s.id == Some(*slot) {
                    s.n = next_counter(s.n);
                }
                s.asked = None;
                s.open = false;
                s.options_due = false;
                s.response_next = false;
                s.go_ahead_due = false;
            }
            LcAction::SendToGc { len } => {
                let bytes = &out[..*len];
                let o = &OrtedState::parse(bytes).expect("ORTED_STATE decodes");
                let mut buf = [0u8; 16];
                let n = o.emit(&mut buf).expect("ORTED_STATE encodes");
                assert_eq!(&buf[..n], bytes, "ORTED_STATE round trip");
                assert!(o.quick && !o.state.notify, "ORTED_STATE form {o:?}");
                let p = self.phase.as_mut().expect("ORTED_STATE before any phase");
                assert!(
                    p.pending.is_empty(),
                    "ORTED_STATE {:?} while {:?} have no result",
                    o.state.state,
                    p.pending
                );
                let state = o.state.state;
                if core::mem::replace(&mut p.reported, true) {
                    assert!(
                        matches!(state, CkptState::Recovered | CkptState::Error),
                        "second ORTED_STATE of a phase is {state:?}"
                    );
                } else if state != CkptState::Recovered {
                    let expected = if p.all_ok {
                        p.mode.success()
                    } else {
                        CkptState::Error
                    };
                    assert_eq!(state, expected, "the phase's report");
                }
            }
            LcAction::Report(r) => {
                let p = self.phase.as_mut().expect("a result outside any phase");
                let at = p
                    .pending
                    .iter()
                    .position(|&n| n == r.name)
                    .unwrap_or_else(|| panic!("result for {:?} not pending: {r:?}", r.name));
                p.pending.swap_remove(at);
                let ok = match (p.mode, r.outcome) {
                    (LcMode::PrepareOnly, LcOutcome::State(CrState::Running)) => true,
                    (
                        LcMode::Checkpoint | LcMode::RecoverOnly,
                        LcOutcome::State(CrState::Continue | CrState::Term),
                    ) => true,
                    (_, LcOutcome::State(s)) => {
                        assert_eq!(s, CrState::Error, "a result state that does not fit");
                        false
                    }
                    (_, LcOutcome::Failed(_)) => false,
                };
                p.all_ok &= ok;
            }
            other => panic!("an action the model does not know: {other:?}"),
        }
    }
}

/// Encodes a JOB_STATE and hands its bytes to the machine.
fn lc_job_state<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    js: &JobState<'_>,
) {
    let msg = FromGc::JobState(*js);
    let mut buf = vec![0u8; msg.buffer_len()];
    let n = msg.emit(&mut buf).expect("JOB_STATE encodes");
    assert_eq!(FromGc::parse(&buf[..n]), Ok(msg), "JOB_STATE round trip");
    lc_job_state_bytes(m, model, now, &buf[..n]);
}

/// Hands bytes from the global coordinator to the machine, which decodes
/// them: bytes that are not a JOB_STATE are refused as undecodable.
fn lc_job_state_bytes<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    bytes: &[u8],
) {
    let before = m.phase();
    let result = m.handle_gc_message(now, bytes);
    let Ok(j) = JobState::parse(bytes) else {
        assert!(
            matches!(result, Err(snapc_core::local::InputError::Decode(_))),
            "undecodable JOB_STATE taken: {result:?}"
        );
        return;
    };
    let (Ok(()), CkptState::Running, Some(d)) = (result, j.state.state, j.detail) else {
        return;
    };
    let o = d.options;
    let mode = if o.inc_recover_only {
        LcMode::RecoverOnly
    } else if o.inc_prep_only {
        LcMode::PrepareOnly
    } else {
        LcMode::Checkpoint
    };
    assert!(
        before == LcPhase::Idle || mode == LcMode::RecoverOnly,
        "RUNNING {mode:?} accepted in {before:?}"
    );
    model.phase = Some(LcPhaseModel {
        mode,
        handle: d.handle,
        options: o,
        migrating: d.migrating.map(|l| l.iter().collect()),
        pending: model.slots.iter().filter_map(|s| s.name).collect(),
        all_ok: true,
        reported: false,
    });
}

/// The final state a process sends in the model's phase.
fn lc_good_final(model: &LcModel, b: u8) -> CrState {
    match model.phase.as_ref().map(|p| p.mode) {
        Some(LcMode::PrepareOnly) => CrState::Running,
        _ if b & 1 == 0 => CrState::Continue,
        _ => CrState::Term,
    }
}

/// Answers slot `id`'s outstanding action as a healthy process would.
fn lc_answer<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    id: SlotId,
    kind: Asked,
    b: u8,
) {
    match kind {
        Asked::Watch => {
            let r = m.handle_fifos_exist(now, id);
            model.answered(id, kind, r.is_ok(), "fifos exist");
        }
        Asked::Open => {
            let r = m.handle_opened(now, id);
            model.answered(id, kind, r.is_ok(), "opened");
            if r.is_ok() {
                let s = &mut model.slots[id.index()];
                s.open = true;
                s.options_due = true;
            }
        }
        Asked::Write => {
            let r = m.handle_written(now, id);
            model.answered(id, kind, r.is_ok(), "written");
        }
        Asked::Read => {
            let frame = if model.slots[id.index()].response_next {
                fifo::response_frame(CkptResponse::Start)
            } else {
                fifo::cr_state_frame(lc_good_final(model, b))
            };
            lc_read(m, model, now, id, &frame);
        }
        Asked::Stop => {
            let r = m.handle_stopped(now, id);
            model.answered(id, kind, r.is_ok(), "stopped");
        }
    }
}

fn lc_read<S: ProcessStorage>(
    m: &mut LocalCoordinator<S>,
    model: &mut LcModel,
    now: Instant,
    id: SlotId,
    bytes: &[u8],
) {
    let r = m.handle_read(now, id, bytes);
    model.answered(id, Asked::Read, r.is_ok(), "read");
    if r.is_ok() {
        let s = &mut model.slots[id.index()];
        if core::mem::take(&mut s.response_next)
            && fifo::parse_response(bytes) == Ok(CkptResponse::Start)
        {
            s.go_ahead_due = true;
        }
    }
}

fn lc_name(vpid: u8) -> ProcessName {
    ProcessName {
        jobid: LC_JOB,
        vpid: u32::from(vpid % 6),
    }
}

/// Target `local_machine`: the local coordinator driven by arbitrary inputs.
/// Checks: no panic; an input for a slot is accepted exactly when it answers
/// the slot's outstanding action, and a slot never has two outstanding;
/// FIFO names carry the slot's pid and counter (0 after a new pid, one up
/// after each closed handshake); the options frame decodes and carries the
/// phase's handle, options, debugger words and migrating flags; the
/// go-ahead follows START and the release is written only to an open
/// channel while releasing; reads are 4 bytes; every ORTED_STATE encodes
/// and decodes back equal, goes out only once every process of the phase
/// has its result, and the phase's report is the lowest result; every
/// process of the phase gets exactly one result; a due deadline is acted on;
/// the machine never waits (a phase running, an action outstanding) without
/// a deadline; no channel stays open when idle.
pub fn local_machine(s: &LocalScenario) {
    let mut config = LocalConfig {
        debugger: s
            .debugger
            .map(|(attach, detach)| Debugger { attach, detach }),
        ..LocalConfig::default()
    };
    if let Some(d) = s.deadlines {
        let ms = |i: usize| Duration::from_millis(u64::from(d[i]));
        config.deadlines = LocalDeadlines {
            fifos: ms(0),
            open: ms(1),
            write: ms(2),
            response: ms(3),
            final_state: ms(4),
            stop: ms(5),
            verdict: ms(6),
            quiesced: ms(7),
        };
    }
    let zero_deadline = s.deadlines.is_some_and(|d| d.contains(&0));
    let mut m = LocalCoordinator::new(config, [ProcessSlot::EMPTY; LC_SLOTS]);
    let mut model = LcModel {
        slots: Default::default(),
        history: Vec::new(),
        phase: None,
        debugger: config.debugger,
    };
    let mut now = Instant::from_secs(1);
    for vpid in 0..s.procs % 5 {
        let name = lc_name(vpid);
        let pid = 100 + u32::from(vpid);
        let id = m
            .add_process(name, pid)
            .expect("room for the first processes");
        model.placed(id, name, pid);
    }
    for input in s.inputs.iter().take(400) {
        match input {
            LocalInput::Add(vpid, pid) => {
                let name = lc_name(*vpid);
                if let Ok(id) = m.add_process(name, u32::from(*pid)) {
                    assert!(model.index_of(name).is_none(), "{name:?} added twice");
                    model.placed(id, name, u32::from(*pid));
                }
            }
            LocalInput::Remove(vpid) => {
                let name = lc_name(*vpid);
                let r = m.remove_process(now, name);
                assert_eq!(r.is_ok(), model.index_of(name).is_some(), "remove {name:?}");
                if let Some(i) = model.index_of(name) {
                    model.slots[i].name = None;
                }
            }
            LocalInput::UpdatePid(vpid, pid) => {
                let name = lc_name(*vpid);
                if let Ok(id) = m.update_pid(now, name, *pid) {
                    model.placed(id, name, *pid);
                }
            }
            LocalInput::LocalUpdate(vpid, pid, debug) => {
                let msg = ToDaemon::LocalUpdate(LocalUpdate {
                    name: lc_name(*vpid),
                    pid: *pid,
                    debug: *debug,
                });
                let mut buf = [0u8; 64];
                let n = msg.emit(&mut buf).expect("LOCAL_UPDATE encodes");
                let sender = u32::try_from(*pid).unwrap_or(1);
                if m.handle_process_message(now, sender, &buf[..n]).is_ok()
                    && let Ok(ToDaemon::LocalUpdate(u)) = ToDaemon::parse(&buf[..n])
                {
                    let info = m.process(u.name).expect("the updated process");
                    assert_eq!((info.pid, info.n), (u.pid as u32, 0), "after LOCAL_UPDATE");
                    model.placed(info.slot, u.name, u.pid as u32);
                }
            }
            LocalInput::LocalFinish(pid, state) => {
                let f = ToDaemon::LocalFinish(LocalFinish {
                    cr_state: pick(CrState::ALL, *state),
                });
                let mut buf = [0u8; 64];
                let n = f.emit(&mut buf).expect("LOCAL_FINISH encodes");
                m.handle_process_message(now, 100 + u32::from(*pid % 8), &buf[..n])
                    .expect("LOCAL_FINISH is always taken");
            }
            LocalInput::Running {
                handle,
                options: [term, stop, prep, recover],
                migrating,
            } => {
                let procs: Vec<ProcessName> =
                    migrating.iter().flatten().map(|&v| lc_name(v)).collect();
                let js = JobState {
                    jobid: LC_JOB,
                    state: StateCode::plain(CkptState::Running),
                    detail: Some(JobDetail {
                        handle: *handle,
                        options: JobOptions {
                            term: *term,
                            stop: *stop,
                            inc_prep_only: *prep,
                            inc_recover_only: *recover,
                        },
                        migrating: migrating.as_ref().map(|_| List::Items(&procs)),
                    }),
                };
                lc_job_state(&mut m, &mut model, now, &js);
            }
            LocalInput::Quick(state, notify) => {
                let js = JobState {
                    jobid: LC_JOB,
                    state: StateCode {
                        state: pick(CkptState::ALL, *state),
                        notify: *notify,
                    },
                    detail: None,
                };
                lc_job_state(&mut m, &mut model, now, &js);
            }
            LocalInput::Verdict(v) => {
                let state = pick(
                    &[
                        CkptState::Established,
                        CkptState::IncPreped,
                        CkptState::Error,
                    ],
                    *v,
                );
                let js = JobState {
                    jobid: LC_JOB,
                    state: StateCode::plain(state),
                    detail: None,
                };
                lc_job_state(&mut m, &mut model, now, &js);
            }
            LocalInput::JobBytes(bytes) => lc_job_state_bytes(&mut m, &mut model, now, bytes),
            LocalInput::FifosExist(b) => {
                if let Some(id) = model.pick(*b) {
                    let r = m.handle_fifos_exist(now, id);
                    model.answered(id, Asked::Watch, r.is_ok(), "fifos exist");
                }
            }
            LocalInput::Opened(b) => {
                if let Some(id) = model.pick(*b) {
                    lc_answer(&mut m, &mut model, now, id, Asked::Open, 0);
                }
            }
            LocalInput::Written(b) => {
                if let Some(id) = model.pick(*b) {
                    lc_answer(&mut m, &mut model, now, id, Asked::Write, 0);
                }
            }
            LocalInput::Read(b, v) => {
                if let Some(id) = model.pick(*b) {
                    if *v < 0x80 {
                        lc_answer(&mut m, &mut model, now, id, Asked::Read, *v);
                    } else {
                        let code = i32::from(*v % 11) - 1;
                        lc_read(&mut m, &mut model, now, id, &code.to_ne_bytes());
                    }
                }
            }
            LocalInput::ReadBytes(b, bytes) => {
                if let Some(id) = model.pick(*b) {
                    lc_read(&mut m, &mut model, now, id, bytes);
                }
            }
            LocalInput::Stopped(b) => {
                if let Some(id) = model.pick(*b) {
                    lc_answer(&mut m, &mut model, now, id, Asked::Stop, 0);
                }
            }
            LocalInput::IoError(b, eof) => {
                if let Some(id) = model.pick(*b) {
                    let e = if *eof {
                        IoError::PeerGone
                    } else {
                        IoError::Failed
                    };
                    let r = m.handle_io_error(now, id, e);
                    let s = &mut model.slots[id.index()];
                    if s.asked.is_some_and(|(a, _)| a == id) {
                        assert!(r.is_ok(), "I/O error for the outstanding action refused");
                    }
                    if r.is_ok() {
                        s.asked = None;
                    }
                }
            }
            LocalInput::Answer(b) => {
                let i = usize::from(*b) % LC_SLOTS;
                if let Some((id, kind)) = model.slots[i].asked {
                    lc_answer(&mut m, &mut model, now, id, kind, *b);
                }
            }
            LocalInput::AnswerAll(b) => {
                for i in 0..LC_SLOTS {
                    if let Some((id, kind)) = model.slots[i].asked {
                        lc_answer(&mut m, &mut model, now, id, kind, u8::from(*b));
                        lc_drain(&mut m, &mut model);
                    }
                }
            }
            LocalInput::Advance(us) => {
                now += Duration::from_micros(u64::from(*us));
                // A zero deadline set by handle_timeout is due at once: the
                // adapter calls it again; with none, one call must do.
                let rounds = if zero_deadline { 4 } else { 1 };
                for _ in 0..rounds {
                    if m.poll_timeout().is_some_and(|d| d <= now) {
                        m.handle_timeout(now);
                        lc_drain(&mut m, &mut model);
                    }
                }
                assert!(
                    m.poll_timeout().is_none_or(|d| d > now),
                    "a due deadline survived handle_timeout"
                );
            }
        }
        lc_drain(&mut m, &mut model);
        let waiting = model.slots.iter().any(|s| s.asked.is_some());
        assert!(
            !(waiting || m.phase() != LcPhase::Idle) || m.poll_timeout().is_some(),
            "waiting with no deadline in {:?} after {input:?}",
            m.phase()
        );
        if m.phase() == LcPhase::Idle {
            assert!(
                model.slots.iter().all(|s| !s.open),
                "a channel stays open while idle after {input:?}"
            );
        }
        assert_eq!(
            m.len(),
            model.slots.iter().filter(|s| s.name.is_some()).count(),
            "process count"
        );
    }
}

fn lc_drain<S: ProcessStorage>(m: &mut LocalCoordinator<S>, model: &mut LcModel) {
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    while let Some(action) = m.poll_action(&mut out) {
        model.action(&action, m.phase(), &out);
    }
}

// ---- the global coordinator ----

use snapc_core::global::{
    Action as GcAction, Command, Config as GcConfig, GlobalCoordinator,
    GlobalDeadlines as GcDeadlines, InputError as GcInputError, NodeSlot, OpKind, Requester,
    Snapshot,
};

/// Local coordinators of the fuzzed global coordinator.
const GC_LCS: usize = 3;
/// Migration capacity of the fuzzed global coordinator.
const GC_MOVES: usize = 4;
/// The fuzzed job.
const GC_JOB: u32 = 9;
/// Where ranks 0..4 run (rank 4, if the job has it, has no known host).
const GC_PLACEMENT: [&str; 4] = ["alpha", "alpha", "beta", "gamma"];
/// Host preferences a MIGRATE entry may name.
const GC_HOSTS: [Option<&str>; 6] = [
    None,
    Some(""),
    Some("alpha"),
    Some("beta"),
    Some("gamma"),
    Some("delta"),
];

type Gc = GlobalCoordinator<[&'static str; 4], [NodeSlot; GC_LCS], GC_MOVES>;

/// A REQUEST_OP from rank `from`, through the machine's bytes boundary.
fn gc_request(
    m: &mut Gc,
    now: Instant,
    from: u32,
    req: &RequestOp<'_>,
) -> Result<(), GcInputError> {
    let mut buf = vec![0u8; req.buffer_len()];
    let n = req.emit(&mut buf).expect("the request encodes");
    m.handle_rank_message(now, from, &buf[..n])
}

/// An ORTED_STATE from LC `lc`, through the machine's bytes boundary.
fn gc_orted(m: &mut Gc, now: Instant, lc: usize, msg: OrtedState) -> Result<(), GcInputError> {
    let mut buf = [0u8; 16];
    let n = msg.emit(&mut buf).expect("ORTED_STATE encodes");
    m.handle_lc_message(now, lc, &buf[..n])
}

/// One input to the global coordinator, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub enum GlobalInput {
    /// A well-formed REQUEST_OP from a rank.
    Request {
        /// The sender's vpid.
        from: u8,
        /// The op_event.
        event: u8,
        /// RESTART's sequence number.
        seq: i32,
        /// RESTART's handle.
        handle: Option<String>,
        /// MIGRATE's entries: vpid, host choice, vpid_pref, off_node.
        entries: Vec<(i8, u8, i8, bool)>,
        /// Whether it names another job.
        other_job: bool,
        /// Whether it is encoded as the `ToGc` channel (the same bytes).
        as_bytes: bool,
    },
    /// Raw REQUEST_OP bytes from a rank.
    RequestBytes(u8, Vec<u8>),
    /// ORTED_STATE from an LC (index up to `L`, one past the last), any state.
    Orted {
        /// The LC.
        lc: u8,
        /// The state.
        state: u8,
        /// Notification encoding.
        notify: bool,
        /// Quick form.
        quick: bool,
    },
    /// The state the GC waits for, from LC `lc`.
    Expected(u8),
    /// The state the GC waits for, from every LC.
    AllExpected,
    /// A runtime command.
    Command(u8, bool, bool),
    /// The runtime's migration report.
    MigrationDone(bool),
    /// The runtime's restart report.
    RestartDone(bool),
    /// Time passes (microseconds), then the timer fires if due.
    Advance(u32),
}

/// The global coordinator's configuration and inputs, chosen by the fuzzer.
#[derive(Debug, Arbitrary)]
pub struct GlobalScenario {
    /// Ranks in the job: 1 to 5.
    nranks: u8,
    /// LC report, FIN and runtime deadlines in milliseconds; `None` for the defaults.
    deadlines: Option<[u16; 3]>,
    /// Whether the first input is INIT from rank 0.
    init: bool,
    inputs: Vec<GlobalInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GcStep {
    Collect,
    Migrating,
    Recover,
    Restarting,
}

/// The operation the harness saw start.
#[derive(Debug)]
struct GcOp {
    kind: OpKind,
    requester: Requester,
    step: GcStep,
    /// Each LC's first result fed while collecting.
    collect: [Option<CkptState>; GC_LCS],
    /// Each LC's first result fed while recovering.
    recover: [Option<CkptState>; GC_LCS],
    migration_ok: Option<bool>,
    established: Option<Snapshot>,
    /// An input arrived with a deadline already due: the machine applied it
    /// first, so the harness no longer knows which reports counted.
    blind: bool,
}

impl GcOp {
    fn all_collected(&self, state: CkptState) -> bool {
        self.collect.iter().all(|&s| s == Some(state))
    }

    fn all_recovered(&self) -> bool {
        self.recover
            .iter()
            .all(|&s| s == Some(CkptState::Recovered))
    }
}

#[derive(Debug, Default)]
struct GcModel {
    op: Option<GcOp>,
    quiesced: Option<u32>,
    /// FINs accepted and not yet ended (a new one may be accepted in the
    /// input whose start ends the old one by its deadline).
    fins: Vec<u32>,
    fin_acked: bool,
    max_handle: u32,
    last_established: Option<u32>,
    last_report_seq: Option<i64>,
    quiesce_checkpoint: Option<Snapshot>,
    /// The vpid of the rank whose request is the current input.
    from: Option<u32>,
    /// Who the current input comes from, if it may start an operation.
    requester: Option<Requester>,
}

impl GcModel {
    /// The state LC reports would carry if all went well.
    fn expected(&self) -> CkptState {
        match &self.op {
            Some(op) if op.step == GcStep::Recover => CkptState::Recovered,
            Some(op) if op.kind == OpKind::QuiesceStart => CkptState::IncPreped,
            _ => CkptState::FinishedLocal,
        }
    }

    /// LC `lc` reported `state` (the harness's side of the bookkeeping).
    fn reported(&mut self, lc: usize, state: CkptState) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        if lc >= GC_LCS {
            return;
        }
        let slot = match op.step {
            GcStep::Collect
                if matches!(
                    state,
                    CkptState::FinishedLocal
                        | CkptState::IncPreped
                        | CkptState::Error
                        | CkptState::NoCkpt
                        | CkptState::NoRestart
                ) =>
            {
                &mut op.collect[lc]
            }
            GcStep::Recover
                if matches!(
                    state,
                    CkptState::Recovered
                        | CkptState::Error
                        | CkptState::NoCkpt
                        | CkptState::NoRestart
                ) =>
            {
                &mut op.recover[lc]
            }
            _ => return,
        };
        slot.get_or_insert(state);
    }

    fn start(&mut self, kind: OpKind, step: GcStep) {
        assert!(
            self.op.is_none(),
            "{kind:?} starts while {:?} runs",
            self.op
        );
        assert!(!self.fin_acked, "{kind:?} starts after FIN_ACK");
        let requester = self
            .requester
            .unwrap_or_else(|| panic!("{kind:?} started by an input that cannot start one"));
        self.op = Some(GcOp {
            kind,
            requester,
            step,
            collect: [None; GC_LCS],
            recover: [None; GC_LCS],
            migration_ok: None,
            established: None,
            blind: false,
        });
    }

    /// Checks one action; `out` is the buffer it was polled with, `m` the
    /// machine (for what an action names but does not carry).
    fn action(&mut self, action: &GcAction, out: &MessageBuf, m: &Gc, nranks: u32) {
        let reference = |seq: u32| format!("snapc_global_snapshot_{GC_JOB}_{seq}");
        match action {
            GcAction::SendToLcs { len } => {
                let bytes = &out[..*len];
                let Ok(FromGc::JobState(js)) = FromGc::parse(bytes) else {
                    panic!("to the LCs, not a JOB_STATE: {bytes:02x?}");
                };
                let js = &js;
                let mut buf = vec![0u8; bytes.len()];
                let n = FromGc::JobState(*js)
                    .emit(&mut buf)
                    .expect("JOB_STATE encodes");
                assert_eq!(&buf[..n], bytes, "JOB_STATE round trip");
                assert_eq!(js.jobid, GC_JOB, "JOB_STATE jobid");
                assert!(!js.state.notify, "JOB_STATE in the notification encoding");
                let state = js.state.state;
                match (state, js.detail) {
                    (CkptState::Running, Some(d)) => {
                        let o = d.options;
                        assert!(!o.term || !o.inc_prep_only, "RUNNING options {o:?}");
                        let kind = if let Some(list) = d.migrating {
                            assert!(!list.is_empty(), "a migration moving nobody");
                            for p in list.iter() {
                                assert!(p.jobid == GC_JOB && p.vpid < nranks, "migrating {p:?}");
                            }
                            OpKind::Migrate
                        } else if o.inc_prep_only {
                            OpKind::QuiesceStart
                        } else if o.inc_recover_only {
                            OpKind::QuiesceEnd
                        } else {
                            OpKind::Checkpoint
                        };
                        if kind == OpKind::QuiesceEnd {
                            assert_eq!(
                                self.quiesced.take(),
                                Some(d.handle),
                                "quiesce end with handle {}",
                                d.handle
                            );
                        } else {
                            assert!(self.quiesced.is_none(), "{kind:?} while quiesced");
                            assert!(
                                d.handle > self.max_handle,
                                "handle {} after {}",
                                d.handle,
                                self.max_handle
                            );
                            self.max_handle = d.handle;
                        }
                        self.start(kind, GcStep::Collect);
                    }
                    (_, Some(_)) => panic!("long JOB_STATE {state:?}"),
                    (CkptState::IncPreped, None) => {
                        let op = self.op.as_ref().expect("INC_PREPED with no operation");
                        assert!(
                            op.kind == OpKind::QuiesceStart && op.step == GcStep::Collect,
                            "INC_PREPED in {op:?}"
                        );
                        assert!(
                            op.blind || op.all_collected(CkptState::IncPreped),
                            "INC_PREPED without every LC prepared: {op:?}"
                        );
                        self.quiesced = Some(self.max_handle);
                    }
                    (CkptState::Established | CkptState::Error, None) => {
                        let op = self.op.as_mut().expect("a verdict with no operation");
                        assert!(
                            matches!(op.step, GcStep::Collect | GcStep::Migrating),
                            "verdict {state:?} in {op:?}"
                        );
                        if state == CkptState::Established {
                            assert!(
                                op.blind || op.all_collected(CkptState::FinishedLocal),
                                "ESTABLISHED without every LC finished: {op:?}"
                            );
                            if op.kind == OpKind::Migrate {
                                assert_eq!(op.migration_ok, Some(true), "ESTABLISHED {op:?}");
                            }
                        }
                        op.step = GcStep::Recover;
                    }
                    (_, None) => panic!("quick JOB_STATE {state:?}"),
                }
            }
            GcAction::SendToRank { vpid, len } => {
                let bytes = &out[..*len];
                let msg = &FromGc::parse(bytes).expect("the answer decodes");
                let mut buf = [0u8; 32];
                let n = msg.emit(&mut buf).expect("the answer encodes");
                assert_eq!(&buf[..n], bytes, "answer round trip");
                match msg {
                    FromGc::FinAck => {
                        assert!(self.op.is_none(), "FIN_ACK while {:?} runs", self.op);
                        assert!(self.quiesced.is_none(), "FIN_ACK while quiesced");
                        assert_eq!(self.fins.pop(), Some(*vpid), "FIN_ACK to {vpid}");
                        self.fin_acked = true;
                    }
                    FromGc::OpResponse(r) => {
                        assert!(r.op_event.carries_op_state(), "answer {r:?}");
                        match r.op_state {
                            Some(OpResponse::DONE) => {
                                let op = self.op.as_ref().expect("op_state 0 with no operation");
                                assert_eq!(op.requester, Requester::Rank(*vpid), "op_state 0");
                                assert!(
                                    op.established.is_some(),
                                    "op_state 0 without a snapshot: {op:?}"
                                );
                                assert!(
                                    op.blind
                                        || (op.all_collected(CkptState::FinishedLocal)
                                            && op.all_recovered()),
                                    "op_state 0 though not every LC finished: {op:?}"
                                );
                            }
                            Some(OpResponse::FAILED) => {
                                let allowed = self.from == Some(*vpid)
                                    || self
                                        .op
                                        .as_ref()
                                        .is_some_and(|op| op.requester == Requester::Rank(*vpid));
                                assert!(allowed, "op_state -1 to rank {vpid}");
                            }
                            other => panic!("op_state {other:?}"),
                        }
                    }
                    FromGc::JobState(_) => panic!("JOB_STATE to a rank"),
                }
            }
            GcAction::Established(s) => {
                assert!(!self.fin_acked, "a snapshot after FIN_ACK");
                assert_eq!(s.reference.as_str(), reference(s.seq), "reference");
                assert!(
                    self.last_established.is_none_or(|last| s.seq > last),
                    "snapshot seq {} after {:?}",
                    s.seq,
                    self.last_established
                );
                self.last_established = Some(s.seq);
                match self.op.as_mut() {
                    Some(op) => {
                        assert!(
                            matches!(op.kind, OpKind::Checkpoint | OpKind::Migrate)
                                && op.step == GcStep::Recover,
                            "snapshot in {op:?}"
                        );
                        assert!(
                            op.blind
                                || (op.all_collected(CkptState::FinishedLocal)
                                    && op.all_recovered()),
                            "snapshot though not every LC finished and recovered: {op:?}"
                        );
                        if op.kind == OpKind::Migrate {
                            assert_eq!(op.migration_ok, Some(true), "snapshot of {op:?}");
                        }
                        assert!(op.established.replace(s.clone()).is_none(), "two snapshots");
                    }
                    None => {
                        assert_eq!(self.quiesced, Some(s.handle), "quiesce checkpoint");
                        self.quiesce_checkpoint = Some(s.clone());
                    }
                }
            }
            GcAction::Migrate { seq, handle } => {
                let plan = m.migration_plan();
                let op = self.op.as_mut().expect("migrate with no operation");
                assert!(
                    op.kind == OpKind::Migrate && op.step == GcStep::Collect,
                    "migrate in {op:?}"
                );
                assert!(
                    op.blind || op.all_collected(CkptState::FinishedLocal),
                    "migrate without every LC finished: {op:?}"
                );
                assert!(!plan.moves().is_empty(), "an empty plan");
                assert!(
                    *handle <= self.max_handle && *seq < u32::MAX,
                    "migrate {seq} {handle}"
                );
                op.step = GcStep::Migrating;
            }
            GcAction::Restart { seq_num } => {
                let handle = m.restart_handle();
                assert!(
                    *seq_num >= 0 && !handle.is_empty(),
                    "restart {seq_num} {handle:?}"
                );
                assert!(self.quiesced.is_none(), "restart while quiesced");
                self.start(OpKind::Restart, GcStep::Restarting);
            }
            GcAction::Finished(r) => {
                assert!(!r.ok || r.failure.is_none(), "ok with a failure: {r:?}");
                if matches!(
                    r.kind,
                    OpKind::Checkpoint | OpKind::Migrate | OpKind::QuiesceCheckpoint
                ) {
                    let seq = r.seq.expect("a snapshot operation without seq");
                    assert!(
                        self.last_report_seq.is_none_or(|last| seq > last),
                        "report seq {seq} after {:?}",
                        self.last_report_seq
                    );
                    self.last_report_seq = Some(seq);
                    let expected = u32::try_from(seq).map(reference).ok();
                    assert_eq!(
                        r.reference.as_deref(),
                        expected.as_deref(),
                        "report reference"
                    );
                }
                match r.kind {
                    OpKind::Fin => {
                        if r.ok {
                            assert!(self.fin_acked, "FIN ended without FIN_ACK");
                        } else {
                            assert!(!self.fins.is_empty(), "FIN failed unasked");
                            self.fins.remove(0);
                        }
                    }
                    OpKind::QuiesceCheckpoint => {
                        let s = self.quiesce_checkpoint.take().expect("its snapshot");
                        assert!(r.ok && r.seq == Some(i64::from(s.seq)), "{r:?}");
                    }
                    kind => {
                        let op = self.op.take().expect("an end with no operation");
                        assert_eq!((kind, r.requester), (op.kind, op.requester), "report");
                        match &op.established {
                            Some(s) => {
                                assert!(r.ok, "a failed operation had a snapshot: {op:?}");
                                assert_eq!(r.seq, Some(i64::from(s.seq)), "report seq");
                                assert_eq!(r.handle, s.handle, "report handle");
                            }
                            None => assert!(
                                !r.ok || !matches!(kind, OpKind::Checkpoint | OpKind::Migrate),
                                "a successful {kind:?} without a snapshot"
                            ),
                        }
                        if r.ok && !op.blind {
                            let ok = match kind {
                                OpKind::QuiesceStart => op.all_collected(CkptState::IncPreped),
                                OpKind::Restart => true,
                                _ => {
                                    op.all_collected(CkptState::FinishedLocal) && op.all_recovered()
                                }
                            };
                            assert!(ok, "{kind:?} succeeded with {op:?}");
                        }
                        if r.ok && kind != OpKind::Restart {
                            let want = if kind == OpKind::QuiesceStart {
                                CkptState::IncPreped
                            } else {
                                CkptState::FinishedLocal
                            };
                            assert!(m.lc_results().all(|s| s == want), "{r:?}");
                        }
                    }
                }
            }
            other => panic!("an action the model does not know: {other:?}"),
        }
    }
}

fn gc_drain(m: &mut Gc, model: &mut GcModel, nranks: u32) {
    let mut n = 0;
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    while let Some(action) = m.poll_action(&mut out) {
        model.action(&action, &out, m, nranks);
        n += 1;
    }
    assert!(
        n <= 7,
        "{n} actions from one input: the queue may have dropped one"
    );
}

/// Target `global_machine`: the global coordinator driven by arbitrary
/// inputs. Checks: no panic; every JOB_STATE and answer encodes and decodes
/// back equal; operations never overlap and none starts after FIN_ACK;
/// handles and sequence numbers only increase, references match them;
/// RUNNING, INC_PREPED, ESTABLISHED/ERROR, migrate and restart come only in
/// their step; ESTABLISHED, a snapshot and op_state 0 only for an operation
/// in which every LC reported FINISHED_LOCAL (and RECOVERED, and the
/// migration succeeded); FIN_ACK never while an operation runs or the job
/// is quiesced; reports agree with what happened; at most seven actions per
/// input; a due deadline is acted on; a running operation always has a
/// deadline; the machine's accessors agree with the harness's view.
pub fn global_machine(s: &GlobalScenario) {
    let nranks = u32::from(s.nranks % 5) + 1;
    let mut deadlines = GcDeadlines::default();
    if let Some([lc, fin, runtime]) = s.deadlines {
        deadlines = GcDeadlines {
            lc_report: Duration::from_millis(u64::from(lc)),
            fin: Duration::from_millis(u64::from(fin)),
            runtime: Duration::from_millis(u64::from(runtime)),
        };
    }
    let config = GcConfig {
        jobid: GC_JOB,
        nranks,
        deadlines,
    };
    let zero_deadline = s.deadlines.is_some_and(|d| d.contains(&0));
    let mut m = Gc::new(config, GC_PLACEMENT, [NodeSlot::EMPTY; GC_LCS]);
    let mut model = GcModel::default();
    let mut now = Instant::from_secs(1);
    if s.init {
        let init = RequestOp {
            jobid: GC_JOB,
            request: Request::Init,
        };
        gc_request(&mut m, now, 0, &init).expect("INIT accepted");
    }
    for input in s.inputs.iter().take(300) {
        let due = m.poll_timeout().is_some_and(|d| d <= now);
        if due
            && !matches!(input, GlobalInput::Advance(_))
            && let Some(op) = model.op.as_mut()
        {
            op.blind = true;
        }
        model.from = None;
        model.requester = None;
        match input {
            GlobalInput::Request {
                from,
                event,
                seq,
                handle,
                entries,
                other_job,
                as_bytes,
            } => {
                let from = u32::from(*from % 7);
                let entries: Vec<MigrateEntry<'_>> = entries
                    .iter()
                    .map(|&(vpid, host, pref, off_node)| MigrateEntry {
                        vpid: i32::from(vpid),
                        host: pick(&GC_HOSTS, host),
                        vpid_pref: i32::from(pref),
                        off_node,
                    })
                    .collect();
                let request = match pick(OpEvent::ALL, *event) {
                    OpEvent::Restart => Request::Restart {
                        seq_num: *seq,
                        handle: carryable(handle, 300),
                    },
                    OpEvent::Migrate => Request::Migrate(List::Items(&entries)),
                    e => Request::without_args(e).expect("argument-less event"),
                };
                let req = RequestOp {
                    jobid: if *other_job { GC_JOB + 1 } else { GC_JOB },
                    request,
                };
                model.from = Some(from);
                model.requester = Some(Requester::Rank(from));
                let r = if *as_bytes {
                    // Encoded as the ToGc channel does: the same bytes.
                    let msg = ToGc::RequestOp(req);
                    let mut buf = vec![0u8; msg.buffer_len()];
                    let n = msg.emit(&mut buf).expect("the request encodes");
                    m.handle_rank_message(now, from, &buf[..n])
                } else {
                    gc_request(&mut m, now, from, &req)
                };
                if r.is_ok() && request == Request::Fin {
                    model.fins.push(from);
                }
            }
            GlobalInput::RequestBytes(from, bytes) => {
                let from = u32::from(*from % 7);
                model.from = Some(from);
                model.requester = Some(Requester::Rank(from));
                let fin = matches!(
                    RequestOp::parse(bytes),
                    Ok(RequestOp {
                        request: Request::Fin,
                        ..
                    })
                );
                if m.handle_rank_message(now, from, bytes).is_ok() && fin {
                    model.fins.push(from);
                }
            }
            GlobalInput::Orted {
                lc,
                state,
                notify,
                quick,
            } => {
                let lc = usize::from(*lc) % (GC_LCS + 1);
                let msg = OrtedState {
                    quick: *quick,
                    state: StateCode {
                        state: pick(CkptState::ALL, *state),
                        notify: *notify,
                    },
                };
                let mut buf = [0u8; 16];
                let n = ToGc::OrtedState(msg).emit(&mut buf).expect("encodes");
                let Ok(ToGc::OrtedState(decoded)) = ToGc::parse(&buf[..n]) else {
                    panic!("ORTED_STATE does not decode");
                };
                assert_eq!(decoded, msg);
                let r = gc_orted(&mut m, now, lc, decoded);
                assert_eq!(r.is_err(), lc >= GC_LCS, "ORTED_STATE from LC {lc}: {r:?}");
                model.reported(lc, msg.state.state);
            }
            GlobalInput::Expected(lc) => {
                let lc = usize::from(*lc) % GC_LCS;
                let state = model.expected();
                gc_orted(
                    &mut m,
                    now,
                    lc,
                    OrtedState {
                        quick: true,
                        state: StateCode::plain(state),
                    },
                )
                .expect("an LC's report is taken");
                model.reported(lc, state);
            }
            GlobalInput::AllExpected => {
                for lc in 0..GC_LCS {
                    let state = model.expected();
                    gc_orted(
                        &mut m,
                        now,
                        lc,
                        OrtedState {
                            quick: true,
                            state: StateCode::plain(state),
                        },
                    )
                    .expect("an LC's report is taken");
                    model.reported(lc, state);
                    gc_drain(&mut m, &mut model, nranks);
                }
            }
            GlobalInput::Command(c, term, stop) => {
                model.requester = Some(Requester::Runtime);
                let command = match c % 3 {
                    0 => Command::Checkpoint {
                        term: *term,
                        stop: *stop,
                    },
                    1 => Command::QuiesceStart,
                    _ => Command::QuiesceEnd,
                };
                let _ = m.handle_command(now, command);
            }
            GlobalInput::MigrationDone(ok) => {
                let waiting = model
                    .op
                    .as_ref()
                    .is_some_and(|op| op.step == GcStep::Migrating);
                let r = m.handle_migration_done(now, *ok);
                if !due {
                    assert_eq!(r.is_ok(), waiting, "migration report: {r:?}");
                }
                if r.is_ok()
                    && let Some(op) = model.op.as_mut()
                {
                    op.migration_ok = Some(*ok);
                }
            }
            GlobalInput::RestartDone(ok) => {
                let waiting = model
                    .op
                    .as_ref()
                    .is_some_and(|op| op.step == GcStep::Restarting);
                let r = m.handle_restart_done(now, *ok);
                if !due {
                    assert_eq!(r.is_ok(), waiting, "restart report: {r:?}");
                }
            }
            GlobalInput::Advance(us) => {
                now += Duration::from_micros(u64::from(*us));
                // A zero deadline set by handle_timeout is due at once: the
                // adapter calls it again; with none, one call must do.
                let rounds = if zero_deadline { 4 } else { 1 };
                for _ in 0..rounds {
                    if m.poll_timeout().is_some_and(|d| d <= now) {
                        m.handle_timeout(now);
                        gc_drain(&mut m, &mut model, nranks);
                    }
                }
                assert!(
                    m.poll_timeout().is_none_or(|d| d > now),
                    "a due deadline survived handle_timeout"
                );
            }
        }
        gc_drain(&mut m, &mut model, nranks);
        assert!(
            !m.is_busy() || m.poll_timeout().is_some(),
            "an operation runs with no deadline after {input:?}"
        );
        assert!(model.fins.len() <= 1, "two FINs waiting: {:?}", model.fins);
        assert!(
            model.fins.is_empty() || m.poll_timeout().is_some(),
            "FIN waits with no deadline after {input:?}"
        );
        assert_eq!(m.is_busy(), model.op.is_some(), "busy after {input:?}");
        assert_eq!(
            m.is_quiesced(),
            model.quiesced.is_some(),
            "quiesced after {input:?}"
        );
        assert_eq!(m.is_finished(), model.fin_acked, "finished after {input:?}");
    }
}
