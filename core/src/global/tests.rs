//! The global coordinator driven by fake local coordinators, a fake leader
//! rank and a fake runtime, on a virtual clock.

extern crate std;

use super::*;
use crate::MAX_MESSAGE_LEN;
use crate::wire::{MigrateEntry, OpEvent};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

const JOB: u32 = 0x1234_0001;
/// Six ranks, two per host.
const HOSTS: &[&str] = &["n0", "n0", "n1", "n1", "n2", "n2"];

type Gc = GlobalCoordinator<&'static [&'static str], [NodeSlot; 3], 8>;

/// The typed inputs of the tests, through the machine's bytes boundary.
trait ThroughBytes {
    fn handle_request(
        &mut self,
        now: Instant,
        from: u32,
        req: &RequestOp<'_>,
    ) -> Result<(), InputError>;
    fn handle_orted_state(
        &mut self,
        now: Instant,
        lc: usize,
        msg: OrtedState,
    ) -> Result<(), InputError>;
}

impl<S: NodeStorage, const M: usize> ThroughBytes
    for GlobalCoordinator<&'static [&'static str], S, M>
{
    fn handle_request(
        &mut self,
        now: Instant,
        from: u32,
        req: &RequestOp<'_>,
    ) -> Result<(), InputError> {
        self.handle_rank_message(now, from, &bytes(req))
    }

    fn handle_orted_state(
        &mut self,
        now: Instant,
        lc: usize,
        msg: OrtedState,
    ) -> Result<(), InputError> {
        self.handle_lc_message(now, lc, &bytes(&msg))
    }
}

/// A message's bytes, as a peer sends them.
fn bytes<'a, M: Message<'a>>(m: &M) -> Vec<u8> {
    let mut v = vec![0u8; m.buffer_len()];
    let n = m.emit(&mut v).unwrap();
    v.truncate(n);
    v
}

/// The bytes of the next action, which must be a message to the LCs.
fn next_to_lcs<S: NodeStorage, const M: usize>(
    gc: &mut GlobalCoordinator<&'static [&'static str], S, M>,
) -> Vec<u8> {
    let mut out = [0u8; MAX_MESSAGE_LEN];
    match gc.poll_action(&mut out) {
        Some(Action::SendToLcs { len }) => out[..len].to_vec(),
        other => panic!("{other:?}"),
    }
}

fn lc_states(gc: &Gc) -> Vec<CkptState> {
    gc.lc_results().collect()
}

fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn deadlines() -> GlobalDeadlines {
    GlobalDeadlines {
        lc_report: Duration::from_secs(10),
        fin: Duration::from_secs(30),
        runtime: Duration::from_secs(20),
    }
}

fn gc_with(deadlines: GlobalDeadlines) -> Gc {
    GlobalCoordinator::new(
        Config {
            jobid: JOB,
            nranks: 6,
            deadlines,
        },
        HOSTS,
        [NodeSlot::EMPTY; 3],
    )
}

fn gc() -> Gc {
    gc_with(deadlines())
}

fn req(request: Request<'_>) -> RequestOp<'_> {
    RequestOp {
        jobid: JOB,
        request,
    }
}

fn reference(seq: u32) -> Reference {
    let mut r = Reference::new();
    write!(r, "snapc_global_snapshot_{JOB}_{seq}").unwrap();
    r
}

/// An action, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Running {
        handle: u32,
        options: JobOptions,
        migrating: Option<Vec<u32>>,
    },
    Quick(CkptState),
    Rank(u32, FromGc<'static>),
    Established(Snapshot),
    Migrate {
        seq: u32,
        handle: u32,
        moves: Vec<Move>,
    },
    Restart(i32, String),
    Finished(Report),
}

fn drain(gc: &mut Gc) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut out = [0u8; MAX_MESSAGE_LEN];
    while let Some(action) = gc.poll_action(&mut out) {
        seen.push(match action {
            Action::SendToLcs { len } => {
                let Ok(FromGc::JobState(js)) = FromGc::parse(&out[..len]) else {
                    panic!("not a JOB_STATE: {:?}", &out[..len]);
                };
                assert_eq!(js.jobid, JOB);
                assert!(!js.state.notify);
                match js.detail {
                    Some(d) => {
                        assert_eq!(js.state.state, CkptState::Running);
                        Seen::Running {
                            handle: d.handle,
                            options: d.options,
                            migrating: d.migrating.map(|l| {
                                l.iter()
                                    .map(|p| {
                                        assert_eq!(p.jobid, JOB);
                                        p.vpid
                                    })
                                    .collect()
                            }),
                        }
                    }
                    None => Seen::Quick(js.state.state),
                }
            }
            Action::SendToRank { vpid, len } => Seen::Rank(vpid, owned(&out[..len])),
            Action::Established(s) => Seen::Established(s),
            Action::Migrate { seq, handle } => Seen::Migrate {
                seq,
                handle,
                moves: gc.migration_plan().moves().to_vec(),
            },
            Action::Restart { seq_num } => Seen::Restart(seq_num, gc.restart_handle().to_string()),
            Action::Finished(r) => Seen::Finished(r),
        });
    }
    seen
}

/// A message to a rank, decoded; it borrows nothing.
fn owned(bytes: &[u8]) -> FromGc<'static> {
    match FromGc::parse(bytes) {
        Ok(FromGc::OpResponse(r)) => FromGc::OpResponse(r),
        Ok(FromGc::FinAck) => FromGc::FinAck,
        other => panic!("not a message to a rank: {other:?}"),
    }
}

fn orted(state: CkptState) -> OrtedState {
    OrtedState {
        quick: true,
        state: StateCode::plain(state),
    }
}

/// Rank `from` asks for `r` at `now`.
fn request<S: NodeStorage, const M: usize>(
    gc: &mut GlobalCoordinator<&'static [&'static str], S, M>,
    now: Instant,
    from: u32,
    r: Request<'_>,
) -> Result<(), InputError> {
    gc.handle_request(now, from, &req(r))
}

/// Rank `from` asks for `r` at `now`, which the coordinator takes.
fn ask<S: NodeStorage, const M: usize>(
    gc: &mut GlobalCoordinator<&'static [&'static str], S, M>,
    now: Instant,
    from: u32,
    r: Request<'_>,
) {
    request(gc, now, from, r).unwrap();
}

/// LC `lc` reports `state` at `now`.
fn report<S: NodeStorage, const M: usize>(
    gc: &mut GlobalCoordinator<&'static [&'static str], S, M>,
    now: Instant,
    lc: usize,
    state: CkptState,
) {
    gc.handle_orted_state(now, lc, orted(state)).unwrap();
}

/// Each LC reports its state at `now`, in LC order.
fn reports(gc: &mut Gc, now: Instant, states: [CkptState; 3]) {
    for (lc, state) in states.into_iter().enumerate() {
        report(gc, now, lc, state);
    }
}

/// Every LC reports `state` at `now`.
fn all_report(gc: &mut Gc, now: Instant, state: CkptState) {
    reports(gc, now, [state; 3]);
}

fn op_response(event: OpEvent, state: i32) -> FromGc<'static> {
    FromGc::OpResponse(OpResponse {
        op_event: event,
        op_state: Some(state),
    })
}

fn running(handle: u32) -> Seen {
    running_with(handle, JobOptions::default())
}

/// JOB_STATE RUNNING with these options, no process migrating.
fn running_with(handle: u32, options: JobOptions) -> Seen {
    Seen::Running {
        handle,
        options,
        migrating: None,
    }
}

/// JOB_STATE RUNNING of a migration of these ranks.
fn running_migrating(handle: u32, vpids: Vec<u32>) -> Seen {
    Seen::Running {
        handle,
        options: JobOptions::default(),
        migrating: Some(vpids),
    }
}

/// Snapshot `seq` with its sstore handle, as the GC names it.
fn established(seq: u32, handle: u32) -> Seen {
    Seen::Established(Snapshot {
        seq,
        handle,
        reference: reference(seq),
    })
}

fn finished(seen: &[Seen]) -> &Report {
    match seen.last() {
        Some(Seen::Finished(r)) => r,
        other => panic!("expected a report last, got {other:?}"),
    }
}

fn init(gc: &mut Gc) {
    ask(gc, t(0), 0, Request::Init);
    assert_eq!(drain(gc), vec![]);
    assert!(gc.is_checkpointable());
}

/// A coordinator past INIT.
fn initialized() -> Gc {
    let mut gc = gc();
    init(&mut gc);
    gc
}

/// A coordinator past INIT in the checkpoint rank 0 asked for at 1 s, its
/// JOB_STATE RUNNING sent.
fn checkpointing() -> Gc {
    let mut gc = initialized();
    ask(&mut gc, t(1), 0, Request::Checkpoint);
    drain(&mut gc);
    gc
}

/// A whole successful checkpoint asked by rank 0, started at `start`.
fn checkpoint_ok(gc: &mut Gc, start: u64, seq: u32, handle: u32) {
    ask(gc, t(start), 0, Request::Checkpoint);
    assert_eq!(drain(gc), vec![running(handle)]);
    all_report(gc, t(start + 1), CkptState::FinishedLocal);
    assert_eq!(drain(gc), vec![Seen::Quick(CkptState::Established)]);
    all_report(gc, t(start + 2), CkptState::Recovered);
    let seen = drain(gc);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], established(seq, handle));
    assert_eq!(seen[1], Seen::Rank(0, op_response(OpEvent::Checkpoint, 0)));
    let r = finished(&seen);
    assert!(r.ok);
    assert_eq!(r.seq, Some(i64::from(seq)));
    assert_eq!(r.handle, handle);
    assert_eq!(lc_states(gc), [CkptState::FinishedLocal; 3]);
    assert_eq!(r.duration, Duration::from_secs(2));
    assert_eq!(gc.poll_timeout(), None);
}

#[test]
fn init_then_checkpoint_with_three_lcs() {
    let mut gc = initialized();
    ask(&mut gc, t(1), 0, Request::Checkpoint);
    // The exact bytes of the long JOB_STATE RUNNING (docs/PROTOCOL.md §5, §6).
    let bytes = next_to_lcs(&mut gc);
    let bool_false = [0, 0, 0, 1, 0x0c, 0];
    let mut expected = vec![0, 0, 0, 1, 1, 0, 0, 0, 1, 0x12, 0x34, 0, 1];
    expected.extend([0, 0, 0, 1, 9, 0, 0, 0, 4]); // RUNNING
    expected.extend([0, 0, 0, 1, 0, 0, 0, 1]); // handle 1
    for _ in 0..5 {
        expected.extend(bool_false); // term, stop, prep, recover, migrating
    }
    assert_eq!(&bytes[..], &expected[..]);
    assert_eq!(gc.poll_action(&mut [0; MAX_MESSAGE_LEN]), None);
    assert_eq!(gc.poll_timeout(), Some(t(11)));

    // Two LCs finished: nothing yet.
    report(&mut gc, t(2), 0, CkptState::FinishedLocal);
    // The long form and the notification encoding are accepted too.
    gc.handle_orted_state(
        t(2),
        2,
        OrtedState {
            quick: false,
            state: StateCode {
                state: CkptState::FinishedLocal,
                notify: true,
            },
        },
    )
    .unwrap();
    assert_eq!(drain(&mut gc), vec![]);
    report(&mut gc, t(3), 1, CkptState::FinishedLocal);
    let bytes = next_to_lcs(&mut gc);
    let quick = [
        0, 0, 0, 1, 2, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 1, 9, 0, 0, 0, 9,
    ];
    assert_eq!(&bytes[..], &quick[..]);
    assert_eq!(gc.poll_timeout(), Some(t(13)));

    all_report(&mut gc, t(4), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(
        seen[..2],
        [
            established(0, 1),
            Seen::Rank(0, op_response(OpEvent::Checkpoint, 0)),
        ]
    );
    let r = finished(&seen);
    assert_eq!(
        (r.kind, r.requester, r.ok, r.failure),
        (OpKind::Checkpoint, Requester::Rank(0), true, None)
    );
    assert_eq!(r.reference, Some(reference(0)));
    assert_eq!((r.started, r.duration), (t(1), Duration::from_secs(3)));
    assert_eq!(
        gc.reference(0).as_str(),
        "snapc_global_snapshot_305397761_0"
    );
    assert!(!gc.is_busy());
}

#[test]
fn five_checkpoints_in_a_row() {
    let mut gc = initialized();
    for i in 0..5u32 {
        checkpoint_ok(&mut gc, u64::from(i) * 10, i, i + 1);
    }
    assert_eq!(gc.next_seq(), Some(5));
}

#[test]
fn an_lc_error_fails_the_checkpoint_without_a_snapshot() {
    let mut gc = initialized();
    ask(&mut gc, t(1), 0, Request::Checkpoint);
    assert_eq!(drain(&mut gc), vec![running(1)]);
    reports(
        &mut gc,
        t(2),
        [
            CkptState::FinishedLocal,
            CkptState::Error,
            CkptState::FinishedLocal,
        ],
    );
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Error)]);
    all_report(&mut gc, t(3), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 2, "no Established: {seen:?}");
    assert_eq!(seen[0], Seen::Rank(0, op_response(OpEvent::Checkpoint, -1)));
    let r = finished(&seen);
    assert!(!r.ok);
    assert_eq!(
        r.failure,
        Some(OperationFailure::Lc {
            lc: 1,
            state: CkptState::Error
        })
    );
    assert_eq!(
        lc_states(&gc),
        [
            CkptState::FinishedLocal,
            CkptState::Error,
            CkptState::FinishedLocal
        ]
    );
    // The failed checkpoint used up seq 0; the next one is 1, handle 2.
    checkpoint_ok(&mut gc, 10, 1, 2);
}

#[test]
fn a_silent_lc_fails_at_its_deadline_and_the_next_checkpoint_works() {
    let mut gc = checkpointing();
    report(&mut gc, t(2), 0, CkptState::FinishedLocal);
    report(&mut gc, t(2), 1, CkptState::FinishedLocal);
    assert_eq!(gc.poll_timeout(), Some(t(11)));
    gc.handle_timeout(t(10));
    assert_eq!(drain(&mut gc), vec![]);
    gc.handle_timeout(t(11));
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Error)]);
    // LC 2's late result is not a RECOVERED: ignored.
    report(&mut gc, t(12), 2, CkptState::FinishedLocal);
    all_report(&mut gc, t(12), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen[0], Seen::Rank(0, op_response(OpEvent::Checkpoint, -1)));
    let r = finished(&seen);
    assert_eq!(r.failure, Some(OperationFailure::LcTimeout { lc: 2 }));
    assert_eq!(lc_states(&gc)[2], CkptState::Error);
    checkpoint_ok(&mut gc, 20, 1, 2);
}

#[test]
fn a_report_after_the_deadline_counts_as_missed() {
    let mut gc = checkpointing();
    report(&mut gc, t(2), 0, CkptState::FinishedLocal);
    report(&mut gc, t(2), 1, CkptState::FinishedLocal);
    // No handle_timeout call: the late report itself applies the deadline.
    report(&mut gc, t(11), 2, CkptState::FinishedLocal);
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Error)]);
    // Silent in the recovery step too.
    gc.handle_timeout(t(21));
    let seen = drain(&mut gc);
    assert_eq!(seen[0], Seen::Rank(0, op_response(OpEvent::Checkpoint, -1)));
    assert!(finished(&seen).failure.is_some());
    assert_eq!(lc_states(&gc), [CkptState::Error; 3]);
    assert_eq!(gc.poll_timeout(), None);
}

#[test]
fn recovery_failure_fails_the_checkpoint() {
    let mut gc = initialized();
    ask(&mut gc, t(1), 0, Request::Checkpoint);
    all_report(&mut gc, t(2), CkptState::FinishedLocal);
    drain(&mut gc);
    reports(
        &mut gc,
        t(3),
        [CkptState::Recovered, CkptState::Error, CkptState::Recovered],
    );
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 2, "no Established: {seen:?}");
    assert_eq!(seen[0], Seen::Rank(0, op_response(OpEvent::Checkpoint, -1)));
}

#[test]
fn checkpoint_before_init_is_refused() {
    let mut gc = gc();
    assert_eq!(
        request(&mut gc, t(0), 0, Request::Checkpoint),
        Err(InputError::NotInitialized)
    );
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(0, op_response(OpEvent::Checkpoint, -1))]
    );
    assert_eq!(
        gc.handle_command(
            t(0),
            Command::Checkpoint {
                term: false,
                stop: false
            }
        ),
        Err(InputError::NotInitialized)
    );
    assert_eq!(
        request(&mut gc, t(0), 0, Request::QuiesceStart),
        Err(InputError::NotInitialized)
    );
    assert_eq!(drain(&mut gc), vec![]);
    init(&mut gc);
    checkpoint_ok(&mut gc, 1, 0, 1);
}

#[test]
fn a_second_checkpoint_while_one_runs_is_answered_at_once() {
    let mut gc = checkpointing();
    assert_eq!(
        request(&mut gc, t(2), 3, Request::Checkpoint),
        Err(InputError::Busy)
    );
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(3, op_response(OpEvent::Checkpoint, -1))]
    );
    let migrate = [MigrateEntry {
        vpid: 0,
        host: Some("n2"),
        vpid_pref: 0,
        off_node: false,
    }];
    assert_eq!(
        request(&mut gc, t(2), 0, Request::Migrate(List::Items(&migrate))),
        Err(InputError::Busy)
    );
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(0, op_response(OpEvent::Migrate, -1))]
    );
    assert_eq!(
        gc.handle_command(t(2), Command::QuiesceStart),
        Err(InputError::Busy)
    );
    assert_eq!(drain(&mut gc), vec![]);
    // The first one goes on unharmed.
    all_report(&mut gc, t(3), CkptState::FinishedLocal);
    all_report(&mut gc, t(3), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert!(seen.contains(&Seen::Rank(0, op_response(OpEvent::Checkpoint, 0))));
    assert!(finished(&seen).ok);
}

#[test]
fn fin_waits_for_the_running_checkpoint() {
    let mut gc = checkpointing();
    ask(&mut gc, t(2), 0, Request::Fin);
    assert_eq!(drain(&mut gc), vec![]);
    assert_eq!(
        request(&mut gc, t(2), 0, Request::Fin),
        Err(InputError::FinPending)
    );
    all_report(&mut gc, t(3), CkptState::FinishedLocal);
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Established)]);
    all_report(&mut gc, t(4), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[1], Seen::Rank(0, op_response(OpEvent::Checkpoint, 0)));
    assert!(matches!(&seen[2], Seen::Finished(r) if r.kind == OpKind::Checkpoint));
    assert_eq!(seen[3], Seen::Rank(0, FromGc::FinAck));
    let r = finished(&seen);
    assert_eq!((r.kind, r.ok), (OpKind::Fin, true));
    assert_eq!(r.duration, Duration::from_secs(2));
    assert!(gc.is_finished());
    assert_eq!(
        request(&mut gc, t(5), 0, Request::Checkpoint),
        Err(InputError::Finishing)
    );
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(0, op_response(OpEvent::Checkpoint, -1))]
    );
}

#[test]
fn fin_when_idle_is_acknowledged_at_once() {
    let mut gc = initialized();
    ask(&mut gc, t(1), 0, Request::Fin);
    let seen = drain(&mut gc);
    assert_eq!(seen[0], Seen::Rank(0, FromGc::FinAck));
    assert!(finished(&seen).ok);
    assert_eq!(gc.poll_timeout(), None);
}

#[test]
fn fin_deadline_passes_without_fin_ack() {
    let mut gc = gc_with(GlobalDeadlines {
        fin: Duration::from_secs(5),
        ..deadlines()
    });
    init(&mut gc);
    ask(&mut gc, t(1), 0, Request::Checkpoint);
    drain(&mut gc);
    ask(&mut gc, t(2), 0, Request::Fin);
    assert_eq!(gc.poll_timeout(), Some(t(7)));
    gc.handle_timeout(t(7));
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 1);
    let r = finished(&seen);
    assert_eq!(
        (r.kind, r.ok, r.failure),
        (OpKind::Fin, false, Some(OperationFailure::FinTimeout))
    );
    assert_eq!(gc.poll_timeout(), Some(t(11)));
    // The checkpoint ends later: no FIN_ACK follows.
    all_report(&mut gc, t(8), CkptState::FinishedLocal);
    all_report(&mut gc, t(9), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert!(!seen.contains(&Seen::Rank(0, FromGc::FinAck)), "{seen:?}");
    assert!(!gc.is_finished());
    // A new FIN is answered now that nothing runs.
    ask(&mut gc, t(10), 0, Request::Fin);
    assert_eq!(drain(&mut gc)[0], Seen::Rank(0, FromGc::FinAck));
}

#[test]
fn quiesce_start_checkpoint_end() {
    let mut gc = initialized();
    ask(&mut gc, t(1), 0, Request::QuiesceStart);
    assert_eq!(
        drain(&mut gc),
        vec![running_with(
            1,
            JobOptions {
                inc_prep_only: true,
                ..JobOptions::default()
            }
        )]
    );
    all_report(&mut gc, t(2), CkptState::IncPreped);
    let seen = drain(&mut gc);
    assert_eq!(seen[0], Seen::Quick(CkptState::IncPreped));
    let r = finished(&seen);
    assert_eq!(
        (r.kind, r.ok, r.seq, r.handle),
        (OpKind::QuiesceStart, true, None, 1)
    );
    assert_eq!(seen.len(), 2, "no answer on the wire: {seen:?}");
    assert!(gc.is_quiesced());
    assert_eq!(gc.poll_timeout(), None);

    // Quiesced: a checkpoint is refused, a quiesce checkpoint is immediate.
    assert_eq!(
        request(&mut gc, t(3), 0, Request::Checkpoint),
        Err(InputError::Busy)
    );
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(0, op_response(OpEvent::Checkpoint, -1))]
    );
    ask(&mut gc, t(3), 0, Request::QuiesceCheckpoint);
    let seen = drain(&mut gc);
    assert_eq!(seen[0], established(0, 1));
    assert_eq!(seen.len(), 2);
    assert_eq!(finished(&seen).kind, OpKind::QuiesceCheckpoint);

    ask(&mut gc, t(4), 0, Request::QuiesceEnd);
    assert_eq!(
        drain(&mut gc),
        vec![running_with(
            1,
            JobOptions {
                inc_recover_only: true,
                ..JobOptions::default()
            }
        )]
    );
    assert!(!gc.is_quiesced());
    all_report(&mut gc, t(5), CkptState::FinishedLocal);
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Established)]);
    all_report(&mut gc, t(6), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 1, "no snapshot, no answer: {seen:?}");
    assert_eq!(
        (finished(&seen).kind, finished(&seen).ok),
        (OpKind::QuiesceEnd, true)
    );
    // Back to normal: seq 1, handle 2.
    checkpoint_ok(&mut gc, 10, 1, 2);
}

#[test]
fn quiesce_requests_out_of_order_are_refused() {
    let mut gc = initialized();
    assert_eq!(
        request(&mut gc, t(1), 0, Request::QuiesceCheckpoint),
        Err(InputError::NotQuiesced)
    );
    assert_eq!(
        gc.handle_command(t(1), Command::QuiesceEnd),
        Err(InputError::NotQuiesced)
    );
    assert_eq!(drain(&mut gc), vec![]);
}

#[test]
fn failed_quiesce_start_releases_and_is_not_quiesced() {
    let mut gc = initialized();
    gc.handle_command(t(1), Command::QuiesceStart).unwrap();
    drain(&mut gc);
    reports(
        &mut gc,
        t(2),
        [
            CkptState::IncPreped,
            CkptState::FinishedLocal,
            CkptState::IncPreped,
        ],
    );
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Error)]);
    all_report(&mut gc, t(3), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 1);
    assert!(!finished(&seen).ok);
    assert!(!gc.is_quiesced());
}

#[test]
fn restart_becomes_an_action_for_the_runtime() {
    let mut gc = initialized();
    let handle = "snapc_global_snapshot_305397761_3";
    gc.handle_request(
        t(1),
        0,
        &req(Request::Restart {
            seq_num: 3,
            handle: Some(handle),
        }),
    )
    .unwrap();
    assert_eq!(drain(&mut gc), vec![Seen::Restart(3, handle.to_string())]);
    assert_eq!(gc.poll_timeout(), Some(t(21)));
    assert_eq!(
        request(&mut gc, t(2), 0, Request::Checkpoint),
        Err(InputError::Busy)
    );
    drain(&mut gc);
    assert_eq!(
        gc.handle_migration_done(t(2), true),
        Err(InputError::NotWaiting)
    );
    gc.handle_restart_done(t(3), true).unwrap();
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 1);
    let r = finished(&seen);
    assert_eq!((r.kind, r.ok, r.seq), (OpKind::Restart, true, Some(3)));

    // Bad requests, and a runtime that never reports.
    for bad in [
        Request::Restart {
            seq_num: 1,
            handle: None,
        },
        Request::Restart {
            seq_num: -1,
            handle: Some("x"),
        },
    ] {
        assert_eq!(request(&mut gc, t(4), 0, bad), Err(InputError::BadRestart));
    }
    gc.handle_request(
        t(5),
        0,
        &req(Request::Restart {
            seq_num: 0,
            handle: Some("h"),
        }),
    )
    .unwrap();
    drain(&mut gc);
    gc.handle_timeout(t(25));
    let seen = drain(&mut gc);
    assert_eq!(
        finished(&seen).failure,
        Some(OperationFailure::RuntimeTimeout)
    );
    assert_eq!(
        gc.handle_restart_done(t(26), true),
        Err(InputError::NotWaiting)
    );
}

fn entry(vpid: i32, host: Option<&str>, vpid_pref: i32, off_node: bool) -> MigrateEntry<'_> {
    MigrateEntry {
        vpid,
        host,
        vpid_pref,
        off_node,
    }
}

#[test]
fn migrate_runs_a_checkpoint_then_the_runtime_moves() {
    let mut gc = initialized();
    // Rank 0 to n2; rank 1 stays (its own host); rank 2 anywhere.
    let table = [
        entry(0, Some("n2"), 0, false),
        entry(1, Some("n0"), 1, false),
        entry(2, None, -1, false),
    ];
    ask(&mut gc, t(1), 0, Request::Migrate(List::Items(&table)));
    assert_eq!(drain(&mut gc), vec![running_migrating(1, vec![0, 2])]);
    all_report(&mut gc, t(2), CkptState::FinishedLocal);
    let moves = vec![
        Move {
            vpid: 0,
            dest: Destination::Host(HostName::try_from("n2").unwrap()),
        },
        Move {
            vpid: 2,
            dest: Destination::Anywhere,
        },
    ];
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Migrate {
            seq: 0,
            handle: 1,
            moves,
        }]
    );
    assert_eq!(gc.poll_timeout(), Some(t(22)));
    gc.handle_migration_done(t(3), true).unwrap();
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Established)]);
    all_report(&mut gc, t(4), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(
        seen[..2],
        [
            established(0, 1),
            Seen::Rank(0, op_response(OpEvent::Migrate, 0)),
        ]
    );
    assert_eq!(finished(&seen).kind, OpKind::Migrate);
}

#[test]
fn a_failed_migration_releases_with_error() {
    let mut gc = initialized();
    let table = [entry(4, None, 4, true)];
    ask(&mut gc, t(1), 4, Request::Migrate(List::Items(&table)));
    drain(&mut gc);
    all_report(&mut gc, t(2), CkptState::FinishedLocal);
    drain(&mut gc);
    gc.handle_migration_done(t(3), false).unwrap();
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Error)]);
    all_report(&mut gc, t(4), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen[0], Seen::Rank(4, op_response(OpEvent::Migrate, -1)));
    assert_eq!(finished(&seen).failure, Some(OperationFailure::Runtime));

    // And a runtime that never reports.
    ask(&mut gc, t(10), 4, Request::Migrate(List::Items(&table)));
    all_report(&mut gc, t(11), CkptState::FinishedLocal);
    drain(&mut gc);
    gc.handle_timeout(t(31));
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Error)]);
    all_report(&mut gc, t(32), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen[0], Seen::Rank(4, op_response(OpEvent::Migrate, -1)));
    assert_eq!(
        finished(&seen).failure,
        Some(OperationFailure::RuntimeTimeout)
    );
}

/// Validates a table against `HOSTS`; the moves as (vpid, destination).
fn plan_of(table: &[MigrateEntry<'_>]) -> Result<Vec<(u32, Destination)>, MigrateError> {
    let mut plan: MigrationPlan<8> = MigrationPlan::new();
    let r = migrate::plan(List::Items(table), 6, &HOSTS, &mut plan);
    let moves = plan
        .moves()
        .iter()
        .map(|m| (m.vpid, m.dest.clone()))
        .collect();
    r.map(|()| moves)
        .inspect_err(|_| assert!(plan.moves().is_empty()))
}

fn host(h: &str) -> Destination {
    Destination::Host(HostName::try_from(h).unwrap())
}

#[test]
fn migration_rules_for_the_own_rank() {
    use Destination::*;
    // Same host, not off node: do not move (and so nothing to do).
    assert_eq!(
        plan_of(&[entry(0, Some("n0"), 0, false)]),
        Err(MigrateError::NothingToMove)
    );
    // Same host with off_node: an error.
    assert_eq!(
        plan_of(&[entry(0, Some("n0"), 0, true)]),
        Err(MigrateError::OffNodeOntoHome { vpid: 0 })
    );
    // No host (NULL or empty): anywhere, or off this node.
    assert_eq!(
        plan_of(&[entry(0, None, 0, false)]),
        Ok(vec![(0, Anywhere)])
    );
    assert_eq!(
        plan_of(&[entry(0, Some(""), -1, false)]),
        Ok(vec![(0, Anywhere)])
    );
    assert_eq!(plan_of(&[entry(0, None, 0, true)]), Ok(vec![(0, OffNode)]));
    // Another host: move there, with or without off_node.
    assert_eq!(
        plan_of(&[entry(0, Some("n1"), 0, false)]),
        Ok(vec![(0, host("n1"))])
    );
    assert_eq!(
        plan_of(&[entry(0, Some("n9"), 0, true)]),
        Ok(vec![(0, host("n9"))])
    );
}

#[test]
fn migration_rules_for_a_peer() {
    use Destination::*;
    // Rank 0 (on n0) about rank 2 (on n1).
    // Home host or no host, not off node: the peer comes to the requester.
    assert_eq!(
        plan_of(&[entry(0, Some("n0"), 2, false)]),
        Ok(vec![(2, host("n0"))])
    );
    assert_eq!(
        plan_of(&[entry(0, None, 2, false)]),
        Ok(vec![(2, host("n0"))])
    );
    // ... and stays if it is there already (rank 1 is on n0).
    assert_eq!(
        plan_of(&[entry(0, None, 1, false)]),
        Err(MigrateError::NothingToMove)
    );
    // Home host with off_node: an error.
    assert_eq!(
        plan_of(&[entry(0, Some("n0"), 2, true)]),
        Err(MigrateError::OffNodeOntoHome { vpid: 0 })
    );
    // No host, off node: the requester leaves its node, the peer with it.
    assert_eq!(
        plan_of(&[entry(0, None, 2, true)]),
        Ok(vec![(0, OffNode), (2, With(0))])
    );
    // Another host: both go there (the peer on it already stays).
    assert_eq!(
        plan_of(&[entry(0, Some("n2"), 2, false)]),
        Ok(vec![(0, host("n2")), (2, host("n2"))])
    );
    assert_eq!(
        plan_of(&[entry(0, Some("n1"), 2, true)]),
        Ok(vec![(0, host("n1"))])
    );
    // "With" follows the leader's named host.
    assert_eq!(
        plan_of(&[entry(0, None, 2, true), entry(0, Some("n2"), 0, false)]),
        Ok(vec![(0, host("n2")), (2, host("n2"))])
    );
}

#[test]
fn migration_conflicts_and_bad_tables_fail() {
    // Rank 2 wants n2; rank 0 wants rank 2 next to it on n0.
    assert_eq!(
        plan_of(&[entry(2, Some("n2"), 2, false), entry(0, None, 2, false)]),
        Err(MigrateError::Conflict { vpid: 2 })
    );
    // Rank 1 stays; rank 0 takes it along to n1.
    assert_eq!(
        plan_of(&[
            entry(1, Some("n0"), 1, false),
            entry(0, Some("n1"), 1, false)
        ]),
        Err(MigrateError::Conflict { vpid: 1 })
    );
    // Two different hosts for one rank.
    assert_eq!(
        plan_of(&[
            entry(3, Some("n0"), 3, false),
            entry(3, Some("n2"), 3, false)
        ]),
        Err(MigrateError::Conflict { vpid: 3 })
    );
    // Off node, and a stay for the same rank.
    assert_eq!(
        plan_of(&[entry(3, None, 3, true), entry(3, Some("n1"), 3, false)]),
        Err(MigrateError::Conflict { vpid: 3 })
    );
    // Moving with a peer that another entry names elsewhere than with it.
    assert_eq!(
        plan_of(&[entry(0, None, 2, true), entry(4, Some("n2"), 2, false)]),
        Err(MigrateError::Conflict { vpid: 2 })
    );
    // Compatible wishes merge: anywhere + off node + a host.
    assert_eq!(
        plan_of(&[
            entry(3, None, 3, false),
            entry(3, None, 3, true),
            entry(3, Some("n0"), 3, false),
        ]),
        Ok(vec![(3, host("n0"))])
    );
    assert_eq!(plan_of(&[]), Err(MigrateError::Empty));
    assert_eq!(
        plan_of(&[entry(6, None, 6, false)]),
        Err(MigrateError::UnknownRank(6))
    );
    assert_eq!(
        plan_of(&[entry(0, None, 7, false)]),
        Err(MigrateError::UnknownRank(7))
    );
    assert_eq!(
        plan_of(&[entry(-2, None, 0, false)]),
        Err(MigrateError::UnknownRank(-2))
    );
    assert_eq!(
        plan_of(&[entry(0, None, 0, false); 9]),
        Err(MigrateError::TooManyEntries)
    );
    let long = "h".repeat(MAX_HOST_NAME_LEN + 1);
    assert_eq!(
        plan_of(&[entry(0, Some(&long), 0, false)]),
        Err(MigrateError::HostTooLong)
    );
    // A placement that does not know a rank.
    let short: &[&str] = &["n0"];
    let mut plan: MigrationPlan<8> = MigrationPlan::new();
    assert_eq!(
        migrate::plan(
            List::Items(&[entry(0, None, 1, false)]),
            2,
            &short,
            &mut plan
        ),
        Err(MigrateError::UnknownHost(1))
    );
}

#[test]
fn a_refused_migration_is_answered_and_uses_no_sequence_number() {
    let mut gc = initialized();
    let table = [entry(2, Some("n2"), 2, false), entry(0, None, 2, false)];
    assert_eq!(
        request(&mut gc, t(1), 0, Request::Migrate(List::Items(&table))),
        Err(InputError::Migrate(MigrateError::Conflict { vpid: 2 }))
    );
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(0, op_response(OpEvent::Migrate, -1))]
    );
    assert!(!gc.is_busy());
    checkpoint_ok(&mut gc, 2, 0, 1);
}

#[test]
fn migrate_request_from_bytes() {
    let mut gc = initialized();
    let table = [entry(5, Some("n0"), 5, true)];
    let mut bytes: heapless::Vec<u8, 256> = heapless::Vec::new();
    req(Request::Migrate(List::Items(&table)))
        .emit_vec(&mut bytes)
        .unwrap();
    gc.handle_rank_message(t(1), 5, &bytes).unwrap();
    assert_eq!(drain(&mut gc), vec![running_migrating(1, vec![5])]);
    assert_eq!(gc.migration_plan().destination(5), Some(&host("n0")));
}

#[test]
fn the_runtime_checkpoints_with_options() {
    let mut gc = initialized();
    gc.handle_command(
        t(1),
        Command::Checkpoint {
            term: true,
            stop: false,
        },
    )
    .unwrap();
    assert_eq!(
        drain(&mut gc),
        vec![running_with(
            1,
            JobOptions {
                term: true,
                ..JobOptions::default()
            }
        )]
    );
    all_report(&mut gc, t(2), CkptState::FinishedLocal);
    drain(&mut gc);
    all_report(&mut gc, t(3), CkptState::Recovered);
    let seen = drain(&mut gc);
    assert_eq!(seen.len(), 2, "no rank answer: {seen:?}");
    assert!(matches!(
        seen[0],
        Seen::Established(Snapshot {
            seq: 0,
            handle: 1,
            ..
        })
    ));
    let r = finished(&seen);
    assert_eq!((r.requester, r.ok), (Requester::Runtime, true));
}

#[test]
fn requests_from_bytes_and_bad_input() {
    let mut gc = gc();
    // docs/PROTOCOL.md §6's worked example: REQUEST_OP(INIT) for job 0x12340001.
    let init = [
        0, 0, 0, 1, 8, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 1, 9, 0, 0, 0, 1,
    ];
    gc.handle_rank_message(t(0), 0, &init).unwrap();
    assert!(gc.is_checkpointable());
    // A CHECKPOINT with a trailing byte: refused, and answered -1.
    let mut bad = [
        0, 0, 0, 1, 8, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 1, 9, 0, 0, 0, 4, 0,
    ];
    assert!(matches!(
        gc.handle_rank_message(t(1), 0, &bad),
        Err(InputError::Decode(_))
    ));
    assert_eq!(
        drain(&mut gc),
        vec![Seen::Rank(0, op_response(OpEvent::Checkpoint, -1))]
    );
    // An unknown op_event: refused without an answer.
    bad[21] = 42;
    assert!(gc.handle_rank_message(t(1), 0, &bad).is_err());
    assert!(gc.handle_rank_message(t(1), 0, &[]).is_err());
    assert_eq!(drain(&mut gc), vec![]);
    // Another job, an unknown rank, an unexpected event, an unknown LC.
    assert_eq!(
        gc.handle_request(
            t(1),
            0,
            &RequestOp {
                jobid: 7,
                request: Request::Checkpoint
            }
        ),
        Err(InputError::WrongJob(7))
    );
    assert_eq!(
        request(&mut gc, t(1), 6, Request::Checkpoint),
        Err(InputError::UnknownRank(6))
    );
    assert_eq!(
        drain(&mut gc),
        vec![
            Seen::Rank(0, op_response(OpEvent::Checkpoint, -1)),
            Seen::Rank(6, op_response(OpEvent::Checkpoint, -1)),
        ]
    );
    assert_eq!(
        request(&mut gc, t(1), 0, Request::FinAck),
        Err(InputError::Unexpected(OpEvent::FinAck))
    );
    assert_eq!(
        gc.handle_orted_state(t(1), 3, orted(CkptState::FinishedLocal)),
        Err(InputError::UnknownLc(3))
    );
    // A state while idle is ignored; the machine still works.
    report(&mut gc, t(1), 0, CkptState::FinishedLocal);
    assert_eq!(drain(&mut gc), vec![]);
    checkpoint_ok(&mut gc, 2, 0, 1);
}

#[test]
fn duplicate_and_progress_reports_are_ignored() {
    let mut gc = checkpointing();
    report(&mut gc, t(2), 0, CkptState::Running);
    report(&mut gc, t(2), 0, CkptState::FinishedLocal);
    report(&mut gc, t(2), 0, CkptState::Error);
    report(&mut gc, t(2), 1, CkptState::Recovered);
    assert_eq!(drain(&mut gc), vec![]);
    report(&mut gc, t(2), 1, CkptState::FinishedLocal);
    report(&mut gc, t(2), 2, CkptState::FinishedLocal);
    assert_eq!(drain(&mut gc), vec![Seen::Quick(CkptState::Established)]);
}

#[test]
fn zero_lcs_and_zero_deadlines_do_not_hang() {
    let mut gc: GlobalCoordinator<&'static [&'static str], [NodeSlot; 0], 2> =
        GlobalCoordinator::new(
            Config {
                jobid: JOB,
                nranks: 6,
                deadlines: GlobalDeadlines {
                    lc_report: Duration::ZERO,
                    fin: Duration::ZERO,
                    runtime: Duration::ZERO,
                },
            },
            HOSTS,
            [],
        );
    ask(&mut gc, t(0), 0, Request::Init);
    ask(&mut gc, t(1), 0, Request::Checkpoint);
    let mut n = 0;
    let mut answered = false;
    let mut out = [0; MAX_MESSAGE_LEN];
    while let Some(a) = gc.poll_action(&mut out) {
        n += 1;
        if let Action::SendToRank { len, .. } = a {
            answered = owned(&out[..len]) == op_response(OpEvent::Checkpoint, 0);
        }
    }
    assert!(answered);
    assert_eq!(n, 5);
    assert_eq!(gc.poll_timeout(), None);
}

#[test]
fn storage_is_emptied_and_sized_by_the_caller() {
    let mut nodes = [NodeSlot::EMPTY; 2];
    let config = Config {
        jobid: JOB,
        nranks: 6,
        deadlines: deadlines(),
    };
    {
        let mut gc: GlobalCoordinator<_, _> = GlobalCoordinator::new(config, HOSTS, &mut nodes[..]);
        assert_eq!(gc.lc_count(), 2);
        ask(&mut gc, t(0), 0, Request::Init);
        ask(&mut gc, t(1), 0, Request::Checkpoint);
        report(&mut gc, t(2), 0, CkptState::Error);
        assert_eq!(
            gc.handle_orted_state(t(2), 2, orted(CkptState::Error)),
            Err(InputError::UnknownLc(2))
        );
        assert!(matches!(
            gc.handle_lc_message(t(2), 1, &[0, 0, 0, 1, 9]),
            Err(InputError::Decode(_))
        ));
    }
    assert_ne!(nodes, [NodeSlot::EMPTY; 2]);
    // Reused storage starts empty.
    let gc: GlobalCoordinator<_, _> = GlobalCoordinator::new(config, HOSTS, &mut nodes[..]);
    assert!(gc.lc_results().all(|s| s == CkptState::None));
    drop(gc);
    assert_eq!(nodes, [NodeSlot::EMPTY; 2]);
}

/// Harness finding: with the old defaults (120 s per LC step) the GC gave
/// up on any checkpoint longer than two minutes while the LC and the app
/// still waited (an hour) for it. The defaults now nest: each party's wait
/// outlasts the bound of the party it waits for.
#[test]
fn default_deadlines_nest() {
    use crate::app::AppDeadlines;
    use crate::local::LocalDeadlines;
    let gc = GlobalDeadlines::default();
    let lc = LocalDeadlines::default();
    let app = AppDeadlines::default();
    // The LC's longest handshake, from the signal to the result.
    let handshake = [
        lc.fifos,
        lc.open,
        lc.write,
        lc.response,
        lc.write,
        lc.final_state,
        lc.stop,
    ]
    .iter()
    .fold(Duration::ZERO, |a, d| a.saturating_add(*d));
    assert!(gc.lc_report > handshake);
    // The LC waits for the verdict longer than the GC takes to give one.
    assert!(lc.verdict >= gc.lc_report.saturating_add(gc.runtime));
    // The app waits for the release longer than the LC waits for the verdict.
    assert!(app.release > lc.verdict.saturating_add(lc.write));
    // A whole operation: collect, runtime, recover.
    let op = gc
        .lc_report
        .saturating_add(gc.runtime)
        .saturating_add(gc.lc_report);
    assert!(app.op_response > op);
    assert!(gc.fin > op);
    assert!(app.fin_ack > gc.fin);
    // Its prepare and checkpoint fit in the LC's wait for the final state.
    assert!(lc.final_state >= app.host);
}
