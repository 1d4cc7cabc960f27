//! Properties of the wire layer: emit then parse is the identity; parsing any
//! bytes never panics; whatever parses re-encodes to exactly the same bytes
//! (the decoders are strict enough to be exact); truncated and extended
//! encodings are rejected.

use proptest::prelude::*;
use snapc_core::wire::{
    CkptState, CrState, FifoName, FromGc, JobDetail, JobOptions, JobState, List, LocalFinish,
    LocalUpdate, Message, MigrateEntry, OpEvent, OpResponse, OptionsFrame, OrtedState, ProcessName,
    Request, RequestOp, StateCode, ToDaemon, ToGc,
};

/// JOB_STATE's long form: handle, the four options, migrating processes.
type LongForm = (u32, [bool; 4], Option<Vec<(u32, u32)>>);

/// Owned data from which a borrowed message is built inside each test.
#[derive(Debug, Clone)]
enum Owned {
    Request {
        jobid: u32,
        event: OpEvent,
        seq: i32,
        handle: Option<String>,
        entries: Vec<(i32, Option<String>, i32, bool)>,
    },
    Orted {
        quick: bool,
        state: StateCode,
    },
    Response {
        event: OpEvent,
        state: i32,
    },
    FinAck,
    Job {
        jobid: u32,
        state: StateCode,
        long: Option<LongForm>,
    },
    Finish(CrState),
    Update {
        jobid: u32,
        vpid: u32,
        pid: i32,
        debug: Option<bool>,
    },
}

fn text(max: usize) -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.8,
        proptest::string::string_regex(&format!("[^\\x00]{{0,{max}}}")).unwrap(),
    )
    .prop_filter("fits the field", move |s| {
        s.as_ref().is_none_or(|s| s.len() < max)
    })
}

fn state_code() -> impl Strategy<Value = StateCode> {
    (proptest::sample::select(CkptState::ALL), any::<bool>())
        .prop_map(|(state, notify)| StateCode { state, notify })
}

fn owned() -> impl Strategy<Value = Owned> {
    let entry = (any::<i32>(), text(255), any::<i32>(), any::<bool>());
    prop_oneof![
        (
            any::<u32>(),
            proptest::sample::select(OpEvent::ALL),
            any::<i32>(),
            text(200),
            proptest::collection::vec(entry, 0..6)
        )
            .prop_map(|(jobid, event, seq, handle, entries)| Owned::Request {
                jobid,
                event,
                seq,
                handle,
                entries
            }),
        (any::<bool>(), state_code()).prop_map(|(quick, state)| Owned::Orted { quick, state }),
        (
            proptest::sample::select(OpEvent::ALL)
                .prop_filter("not FIN_ACK", |e| *e != OpEvent::FinAck),
            any::<i32>()
        )
            .prop_map(|(event, state)| Owned::Response { event, state }),
        Just(Owned::FinAck),
        (
            any::<u32>(),
            state_code(),
            proptest::option::of((
                any::<u32>(),
                any::<[bool; 4]>(),
                proptest::option::of(proptest::collection::vec(any::<(u32, u32)>(), 0..8))
            ))
        )
            .prop_map(|(jobid, state, long)| Owned::Job { jobid, state, long }),
        proptest::sample::select(CrState::ALL).prop_map(Owned::Finish),
        (
            any::<u32>(),
            any::<u32>(),
            any::<i32>(),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(jobid, vpid, pid, debug)| Owned::Update {
                jobid,
                vpid,
                pid,
                debug
            }),
    ]
}

/// Encodes the message described by `o` on its channel, checks emit and
/// parse agree, and returns (channel index, bytes).
fn check_round_trip(o: &Owned) -> Result<(usize, Vec<u8>), TestCaseError> {
    fn rt<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(
        m: &M,
        buf: &'a mut Vec<u8>,
    ) -> Result<(), TestCaseError> {
        let len = m.buffer_len();
        buf.resize(len, 0xaa);
        prop_assert_eq!(m.emit(buf), Ok(len));
        let mut v: heapless::Vec<u8, 8192> = heapless::Vec::new();
        m.emit_vec(&mut v).unwrap();
        prop_assert_eq!(&v[..], &buf[..]);
        let parsed = M::parse(buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&parsed, m);
        Ok(())
    }
    let mut buf = Vec::new();
    let channel = match o {
        Owned::Request {
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
                    host: host.as_deref(),
                    vpid_pref: *vpid_pref,
                    off_node: *off_node,
                })
                .collect();
            let request = match event {
                OpEvent::Restart => Request::Restart {
                    seq_num: *seq,
                    handle: handle.as_deref(),
                },
                OpEvent::Migrate => Request::Migrate(List::Items(&entries)),
                event => Request::without_args(*event).unwrap(),
            };
            let m = RequestOp {
                jobid: *jobid,
                request,
            };
            rt(&m, &mut Vec::new())?;
            rt(&ToGc::RequestOp(m), &mut buf)?;
            0
        }
        Owned::Orted { quick, state } => {
            rt(
                &ToGc::OrtedState(OrtedState {
                    quick: *quick,
                    state: *state,
                }),
                &mut buf,
            )?;
            0
        }
        Owned::Response { event, state } => {
            let m = OpResponse {
                op_event: *event,
                op_state: event.carries_op_state().then_some(*state),
            };
            rt(&m, &mut Vec::new())?;
            rt(&FromGc::OpResponse(m), &mut buf)?;
            1
        }
        Owned::FinAck => {
            rt(&FromGc::FinAck, &mut buf)?;
            1
        }
        Owned::Job { jobid, state, long } => {
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
            let m = JobState {
                jobid: *jobid,
                state: *state,
                detail,
            };
            rt(&m, &mut Vec::new())?;
            rt(&FromGc::JobState(m), &mut buf)?;
            1
        }
        Owned::Finish(cr_state) => {
            rt(
                &LocalFinish {
                    cr_state: *cr_state,
                },
                &mut Vec::new(),
            )?;
            rt(
                &ToDaemon::LocalFinish(LocalFinish {
                    cr_state: *cr_state,
                }),
                &mut buf,
            )?;
            2
        }
        Owned::Update {
            jobid,
            vpid,
            pid,
            debug,
        } => {
            let m = LocalUpdate {
                name: ProcessName {
                    jobid: *jobid,
                    vpid: *vpid,
                },
                pid: *pid,
                debug: *debug,
            };
            rt(&m, &mut Vec::new())?;
            rt(&ToDaemon::LocalUpdate(m), &mut buf)?;
            2
        }
    };
    Ok((channel, buf))
}

/// Parses `bytes` on `channel`; if that succeeds, the message must re-encode to `bytes`.
fn parse_is_exact(channel: usize, bytes: &[u8]) -> Result<bool, TestCaseError> {
    fn exact<'a, M: Message<'a>>(bytes: &'a [u8]) -> Result<bool, TestCaseError> {
        match M::parse(bytes) {
            Ok(m) => {
                let mut out = vec![0; m.buffer_len()];
                prop_assert_eq!(m.emit(&mut out), Ok(bytes.len()));
                prop_assert_eq!(&out[..], bytes);
                Ok(true)
            }
            Err(e) => {
                prop_assert!(
                    e.offset <= bytes.len(),
                    "error offset {} beyond input {}",
                    e.offset,
                    bytes.len()
                );
                Ok(false)
            }
        }
    }
    match channel {
        0 => exact::<ToGc<'_>>(bytes),
        1 => exact::<FromGc<'_>>(bytes),
        _ => exact::<ToDaemon>(bytes),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn emit_then_parse_is_identity(o in owned()) {
        check_round_trip(&o)?;
    }

    #[test]
    fn truncated_or_extended_encodings_are_rejected(o in owned(), extra in 0u8..=255) {
        let (channel, bytes) = check_round_trip(&o)?;
        // LOCAL_UPDATE's debug flag is optional: without it the message is whole.
        let optional_tail = match o {
            Owned::Update { debug: Some(_), .. } => Some(bytes.len() - 6),
            _ => None,
        };
        for cut in 0..bytes.len() {
            let accepted = parse_is_exact(channel, &bytes[..cut])?;
            prop_assert!(!accepted || Some(cut) == optional_tail, "prefix of {} bytes accepted", cut);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(!parse_is_exact(channel, &longer)?);
    }

    #[test]
    fn mutated_encodings_never_panic_and_stay_exact(o in owned(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let (channel, mut bytes) = check_round_trip(&o)?;
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        for ch in 0..3 {
            parse_is_exact(ch, &bytes)?;
        }
        let _ = channel;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for ch in 0..3 {
            parse_is_exact(ch, &bytes)?;
        }
        let _ = OptionsFrame::parse(&bytes, false);
        let _ = OptionsFrame::parse(&bytes, true);
        let _ = snapc_core::wire::fifo::parse_response(&bytes);
        let _ = snapc_core::wire::fifo::parse_cr_state(&bytes);
        let _ = snapc_core::wire::fifo::parse_go_ahead(&bytes);
        let _ = snapc_core::wire::fifo::parse_release(&bytes);
        let _ = FifoName::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn options_frames_round_trip(words in any::<[bool; 8]>(), handle in any::<u32>(), debug in any::<bool>()) {
        use snapc_core::wire::{Debugger, FifoOptions};
        let frame = OptionsFrame {
            options: FifoOptions {
                all_migrating: words[0], migrating: words[1], term: words[2], stop: words[3],
                inc_prep_only: words[4], inc_recover_only: words[5],
                debugger: debug.then_some(Debugger { attach: words[6], detach: words[7] }),
            },
            handle,
        };
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.buffer_len());
        prop_assert_eq!(OptionsFrame::parse(&bytes, debug), Ok(frame));
    }

    #[test]
    fn fifo_names_round_trip(pid in 1u32..=i32::MAX as u32, n in 0u32..=i32::MAX as u32, read in any::<bool>()) {
        use snapc_core::wire::ChannelNames;
        let names = ChannelNames { pid, n };
        let name = if read { names.prog_read() } else { names.prog_write() };
        prop_assert_eq!(FifoName::parse(&name.file_name()), Ok(name));
    }
}

#[test]
fn emit_reports_too_small_without_writing_past_the_buffer() {
    let m = ToDaemon::LocalFinish(LocalFinish {
        cr_state: CrState::Continue,
    });
    let mut small = [0u8; 13];
    assert_eq!(
        m.emit(&mut small),
        Err(snapc_core::wire::EmitError::TooSmall {
            needed: 14,
            available: 13
        })
    );
    let mut v: heapless::Vec<u8, 13> = heapless::Vec::new();
    assert!(m.emit_vec(&mut v).is_err());
    assert!(v.is_empty());
}
