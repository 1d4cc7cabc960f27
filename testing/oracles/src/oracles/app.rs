//! The app coordinator under arbitrary inputs in any order.

use crate::generators::app::{AppInput, AppScenario};
use crate::generators::{carryable, pick};
use snapc_core::app::{
    Action as AppAction, AppCoordinator, CheckpointFlag, CheckpointResult, Config as AppConfig,
    FrameKind as Frame, HostError, InputError as AppInputError, PrepareResult,
};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::{
    Debugger, FifoOptions, FromGc, List, MAX_HOST_LEN, Message, MigrateEntry, OpEvent, OpResponse,
    OptionsFrame, ProcessName, Request, ToDaemon, ToGc, fifo,
};
use snapc_core::{IoError, MAX_MESSAGE_LEN, MessageBuf};

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
