//! Caller-owned storage sized at run time: a local coordinator for 1,000
//! processes and a global coordinator for 64 nodes, each run through a whole
//! checkpoint over the bytes boundary; the sizes the crate documents; the
//! message buffer's bound.

use snapc_core::global::{self, Config as GcConfig, GlobalDeadlines, NodeSlot};
use snapc_core::local::{self, Config as LcConfig, ProcessOutcome, ProcessSlot, SlotId};
use snapc_core::time::{Duration, Instant};
use snapc_core::wire::fifo::{self, OptionsFrame};
use snapc_core::wire::{
    CkptResponse, CkptState, CrState, FromGc, JobDetail, JobOptions, JobState, List, Message,
    OpEvent, OpResponse, OrtedState, ProcessName, Request, RequestOp, StateCode, ToGc,
};
use snapc_core::{
    AppCoordinator, GlobalCoordinator, LocalCoordinator, MAX_MESSAGE_LEN, MessageBuf,
};
use std::collections::HashMap;
use std::hint::black_box;

const JOB: u32 = 0x0501_0001;

fn name(vpid: u32) -> ProcessName {
    ProcessName { jobid: JOB, vpid }
}

fn bytes<'a, M: Message<'a>>(m: &M) -> Vec<u8> {
    let mut v = vec![0u8; m.buffer_len()];
    let n = m.emit(&mut v).unwrap();
    v.truncate(n);
    v
}

/// Where one process's side of the handshake is, in this test's fake app.
#[derive(Default)]
struct Fake {
    written: usize,
}

/// Answers every action of the local coordinator as well-behaved processes
/// would, until it has nothing left to do; returns the messages for the
/// global coordinator.
fn settle(
    lc: &mut LocalCoordinator<Vec<ProcessSlot>>,
    now: &mut Instant,
    fakes: &mut HashMap<usize, Fake>,
    results: &mut Vec<local::ProcessResult>,
) -> Vec<Vec<u8>> {
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    let mut to_gc = Vec::new();
    let mut answers: Vec<(SlotId, Answer)> = Vec::new();
    loop {
        while let Some(action) = lc.poll_action(&mut out) {
            match action {
                local::Action::Signal { .. } => {}
                local::Action::WatchFifos { slot, .. } => answers.push((slot, Answer::Exist)),
                local::Action::OpenFifos { slot, .. } => answers.push((slot, Answer::Opened)),
                local::Action::Write { slot, bytes } => {
                    let fake = fakes.entry(slot.index()).or_default();
                    match fake.written {
                        0 => assert_eq!(bytes.len(), OptionsFrame::LEN),
                        _ => assert_eq!(&bytes[..], &fifo::GO_AHEAD[..]),
                    }
                    fake.written += 1;
                    answers.push((slot, Answer::Written));
                }
                local::Action::Read { slot, len } => {
                    assert_eq!(len, fifo::INT_FRAME_LEN);
                    let fake = fakes.entry(slot.index()).or_default();
                    let frame = if fake.written < 2 {
                        fifo::response_frame(CkptResponse::Start)
                    } else {
                        fifo::cr_state_frame(CrState::Continue)
                    };
                    answers.push((slot, Answer::Read(frame)));
                }
                local::Action::Close { slot } => {
                    fakes.remove(&slot.index());
                }
                local::Action::SendToGc { len } => to_gc.push(out[..len].to_vec()),
                local::Action::Report(r) => results.push(r),
                other => panic!("unexpected {other:?}"),
            }
        }
        if answers.is_empty() {
            return to_gc;
        }
        *now += Duration::from_micros(10);
        for (slot, answer) in answers.drain(..) {
            match answer {
                Answer::Exist => lc.handle_fifos_exist(*now, slot),
                Answer::Opened => lc.handle_opened(*now, slot),
                Answer::Written => lc.handle_written(*now, slot),
                Answer::Read(frame) => lc.handle_read(*now, slot, &frame),
            }
            .unwrap();
        }
    }
}

enum Answer {
    Exist,
    Opened,
    Written,
    Read([u8; 4]),
}

#[test]
fn local_coordinator_with_storage_for_1000_processes() {
    // Chosen at run time: nothing about the type knows the number.
    let n: usize = black_box(1000);
    let mut lc = LocalCoordinator::new(LcConfig::default(), vec![ProcessSlot::EMPTY; n]);
    assert_eq!(lc.capacity(), 1000);
    for v in 0..n as u32 {
        lc.add_process(name(v), 10_000 + v).unwrap();
    }
    assert_eq!(lc.len(), 1000);
    assert_eq!(lc.add_process(name(5000), 99), Err(local::InputError::Full));

    let mut now = Instant::from_secs(1);
    let mut fakes = HashMap::new();
    let mut results = Vec::new();
    let running = FromGc::JobState(JobState {
        jobid: JOB,
        state: StateCode::plain(CkptState::Running),
        detail: Some(JobDetail {
            handle: 1,
            options: JobOptions::default(),
            migrating: None,
        }),
    });
    lc.handle_gc_message(now, &bytes(&running)).unwrap();
    let to_gc = settle(&mut lc, &mut now, &mut fakes, &mut results);
    assert_eq!(to_gc.len(), 1);
    let Ok(ToGc::OrtedState(report)) = ToGc::parse(&to_gc[0]) else {
        panic!("not an ORTED_STATE");
    };
    assert_eq!(report.state.state, CkptState::FinishedLocal);
    assert_eq!(results.len(), 1000);
    assert!(
        results
            .iter()
            .all(|r| r.outcome == ProcessOutcome::State(CrState::Continue))
    );

    let established = FromGc::JobState(JobState {
        jobid: JOB,
        state: StateCode::plain(CkptState::Established),
        detail: None,
    });
    lc.handle_gc_message(now, &bytes(&established)).unwrap();
    let to_gc = settle(&mut lc, &mut now, &mut fakes, &mut results);
    let Ok(ToGc::OrtedState(report)) = ToGc::parse(&to_gc[0]) else {
        panic!("not an ORTED_STATE");
    };
    assert_eq!(report.state.state, CkptState::Recovered);
    assert_eq!(lc.phase(), local::Phase::Idle);
    assert_eq!(lc.poll_timeout(), None);
    assert!(fakes.is_empty(), "every channel released and closed");
    // Every process's counter moved on, as its app coordinator's did.
    assert!((0..n as u32).all(|v| lc.process(name(v)).unwrap().n == 1));
    assert_eq!(lc.into_storage().len(), 1000);
}

#[test]
fn global_coordinator_with_storage_for_64_nodes() {
    let nodes: usize = black_box(64);
    let nranks = nodes as u32 * 4;
    let hosts: Vec<String> = (0..nranks).map(|v| format!("n{}", v / 4)).collect();
    let config = GcConfig {
        jobid: JOB,
        nranks,
        deadlines: GlobalDeadlines::default(),
    };
    let mut storage = vec![NodeSlot::EMPTY; nodes];
    let mut gc: GlobalCoordinator<&[String], &mut [NodeSlot]> =
        GlobalCoordinator::new(config, &hosts[..], &mut storage[..]);
    assert_eq!(gc.lc_count(), 64);
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    let now = Instant::from_secs(1);
    let request = |request| {
        bytes(&RequestOp {
            jobid: JOB,
            request,
        })
    };
    gc.handle_rank_message(now, 0, &request(Request::Init))
        .unwrap();
    assert_eq!(gc.poll_action(&mut out), None);
    gc.handle_rank_message(now, 0, &request(Request::Checkpoint))
        .unwrap();
    let Some(global::Action::SendToLcs { len }) = gc.poll_action(&mut out) else {
        panic!("JOB_STATE RUNNING first");
    };
    let Ok(FromGc::JobState(js)) = FromGc::parse(&out[..len]) else {
        panic!("not a JOB_STATE");
    };
    assert_eq!(js.state.state, CkptState::Running);

    let orted = |state| {
        bytes(&OrtedState {
            quick: true,
            state: StateCode::plain(state),
        })
    };
    for lc in 0..nodes {
        gc.handle_lc_message(now, lc, &orted(CkptState::FinishedLocal))
            .unwrap();
    }
    assert_eq!(
        gc.handle_lc_message(now, 64, &orted(CkptState::FinishedLocal)),
        Err(global::InputError::UnknownLc(64))
    );
    let Some(global::Action::SendToLcs { len }) = gc.poll_action(&mut out) else {
        panic!("the verdict");
    };
    let Ok(FromGc::JobState(js)) = FromGc::parse(&out[..len]) else {
        panic!("not a JOB_STATE");
    };
    assert_eq!(js.state.state, CkptState::Established);
    for lc in 0..nodes {
        gc.handle_lc_message(now, lc, &orted(CkptState::Recovered))
            .unwrap();
    }
    let mut established = None;
    let mut answer = None;
    let mut report = None;
    while let Some(action) = gc.poll_action(&mut out) {
        match action {
            global::Action::Established(s) => established = Some(s),
            global::Action::SendToRank { vpid: 0, len } => {
                answer = Some(out[..len].to_vec());
            }
            global::Action::Finished(r) => report = Some(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    let s = established.unwrap();
    assert_eq!((s.seq, s.handle), (0, 1));
    assert_eq!(
        answer.unwrap(),
        bytes(&FromGc::OpResponse(OpResponse {
            op_event: OpEvent::Checkpoint,
            op_state: Some(OpResponse::DONE),
        }))
    );
    assert!(report.unwrap().ok);
    assert!(gc.lc_results().all(|s| s == CkptState::FinishedLocal));
    assert_eq!(gc.lc_results().count(), 64);
    drop(gc);
    assert!(storage.iter().all(|n| *n != NodeSlot::EMPTY));
}

#[test]
fn sizes_are_as_documented() {
    use core::mem::size_of;
    type Lc = LocalCoordinator<&'static mut [ProcessSlot]>;
    type Gc<const M: usize> =
        GlobalCoordinator<&'static [&'static str], &'static mut [NodeSlot], M>;
    println!(
        "AppCoordinator {}, LocalCoordinator {} + {} per process, \
         GlobalCoordinator (M = 8) {} + {} per node, (M = 4) {}",
        size_of::<AppCoordinator<'static>>(),
        size_of::<Lc>(),
        ProcessSlot::SIZE,
        size_of::<Gc<8>>(),
        NodeSlot::SIZE,
        size_of::<Gc<4>>(),
    );
    assert_eq!(ProcessSlot::SIZE, size_of::<ProcessSlot>());
    assert_eq!(NodeSlot::SIZE, 2);
    // The figures of the crate's front page (64-bit targets).
    if cfg!(target_pointer_width = "64") {
        assert_eq!(size_of::<AppCoordinator<'static>>(), 2232);
        assert_eq!(size_of::<Lc>(), 168);
        assert_eq!(ProcessSlot::SIZE, 264);
        assert_eq!(ProcessSlot::ALIGN, 8);
        assert_eq!(size_of::<Gc<8>>(), 4608);
        assert_eq!(size_of::<Gc<4>>(), 3456);
        assert_eq!(size_of::<Lc>() + 1000 * ProcessSlot::SIZE, 264_168);
    }
}

#[test]
fn the_message_buffer_holds_the_longest_message() {
    let names: Vec<ProcessName> = (0..global::MAX_MOVES as u32).map(name).collect();
    let longest = FromGc::JobState(JobState {
        jobid: JOB,
        state: StateCode::plain(CkptState::Running),
        detail: Some(JobDetail {
            handle: u32::MAX,
            options: JobOptions::default(),
            migrating: Some(List::Items(&names)),
        }),
    });
    assert_eq!(longest.buffer_len(), MAX_MESSAGE_LEN);
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    assert_eq!(longest.emit(&mut out), Ok(MAX_MESSAGE_LEN));
}
