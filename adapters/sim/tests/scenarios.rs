//! The choreography, step by step, with the exact bytes on every channel:
//! scripted scenarios on the simulator's world (`snapc_sim::script`), one
//! global coordinator, two local coordinators and three application
//! processes per node, on a virtual clock.
#![allow(clippy::needless_range_loop)]

use snapc_sim::core::app::{
    CheckpointResult, FrameKind, PrepareResult, RequestReport, Wait, WaitFailure as Failure,
};
use snapc_sim::core::global::{self, Command};
use snapc_sim::core::local::{self, Stage};
use snapc_sim::core::time::Duration;
use snapc_sim::core::wire::{CrState, List, MigrateEntry, OpEvent, Request};
use snapc_sim::devices::Step;
use snapc_sim::script::{Hook, Scripted, Topology};

type World = Scripted;

const JOBID: u32 = 0x1234_0001;
const NODES: usize = 2;
const PER_NODE: usize = 3;
const NRANKS: usize = NODES * PER_NODE;

fn pid_of(v: usize) -> u32 {
    1000 + v as u32
}

/// The job with rank `rank`'s script set by `script`.
fn world_with(rank: usize, script: impl Fn(&mut snapc_sim::script::Script)) -> World {
    world(|v, _, s| {
        if v == rank {
            script(s)
        }
    })
}

/// The job of `Topology::default()` (job 0x12340001, two nodes of three
/// ranks), each rank set up by `setup`.
fn world(
    setup: impl Fn(usize, &mut snapc_sim::core::app::Config, &mut snapc_sim::script::Script),
) -> World {
    Scripted::new(Topology::default(), setup)
}

/// Bytes from a hex string with spaces and `|` as separators.
fn h(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Host-order `int` frames.
fn ints(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|i| i.to_ne_bytes()).collect()
}

const REQ_CHECKPOINT: &str = "00000001 08 | 00000001 12340001 | 00000001 09 00000004";
const ORTED_FINISHED: &str = "00000001 04 | 00000001 09 00000007";
const ORTED_INC_PREPED: &str = "00000001 04 | 00000001 09 00000005";
const ORTED_RECOVERED: &str = "00000001 04 | 00000001 09 0000000a";
const ORTED_ERROR: &str = "00000001 04 | 00000001 09 00000000";
const JOB_ESTABLISHED: &str = "00000001 02 | 00000001 12340001 | 00000001 09 00000009";
const JOB_ERROR: &str = "00000001 02 | 00000001 12340001 | 00000001 09 00000000";
const JOB_INC_PREPED: &str = "00000001 02 | 00000001 12340001 | 00000001 09 00000005";
const OP_CHECKPOINT_DONE: &str = "00000001 08 | 00000001 09 00000004 | 00000001 09 00000000";
const OP_CHECKPOINT_FAILED: &str = "00000001 08 | 00000001 09 00000004 | 00000001 09 ffffffff";
const LOCAL_FINISH_CONTINUE: &str = "00000001 05 | 00000001 09 00000004";

/// The long JOB_STATE RUNNING for `handle` with options
/// (term, stop, inc_prep_only, inc_recover_only), not migrating.
fn job_running(handle: u32, opts: [bool; 4]) -> Vec<u8> {
    let mut s =
        format!("00000001 01 | 00000001 12340001 | 00000001 09 00000004 | 00000001 {handle:08x}");
    for o in opts {
        s.push_str(&format!(" | 00000001 0c {:02x}", u8::from(o)));
    }
    s.push_str(" | 00000001 0c 00");
    h(&s)
}

fn reference(seq: u32) -> String {
    format!("snapc_global_snapshot_{JOBID}_{seq}")
}

fn fifo(pid: u32, n: u32, dir: &str) -> String {
    format!("fifo {pid}_{n} {dir}")
}

/// The leader's CHECKPOINT, run until the job is idle again.
fn checkpoint(w: &mut World) -> RequestReport {
    let before = w.requests(0).len();
    w.request(0, Request::Checkpoint).unwrap();
    w.run_until("checkpoint", |w| w.idle() && w.requests(0).len() > before);
    w.last_request(0).unwrap()
}

/// The runtime's own checkpoint with these options, run until the job is
/// idle again.
fn runtime_checkpoint(w: &mut World, term: bool, stop: bool) {
    w.command(Command::Checkpoint { term, stop }).unwrap();
    w.run_until("the runtime's checkpoint", |w| w.idle());
}

/// The leader's MIGRATE of `table`, run until it is answered and the job
/// is idle again.
fn migrate(w: &mut World, table: &[MigrateEntry<'_>]) -> RequestReport {
    w.request(0, Request::Migrate(List::Items(table))).unwrap();
    w.run_until("migrate", |w| {
        w.idle() && w.last_request(0).is_some_and(|r| r.op == OpEvent::Migrate)
    });
    w.last_request(0).unwrap()
}

/// The request failed at the GC: op_state -1.
fn assert_rejected(r: &RequestReport, what: &str) {
    assert_eq!(
        r.error.map(|e| e.failure),
        Some(Failure::Rejected(-1)),
        "{what} {r:?}"
    );
}

fn assert_all_lc_results(w: &World, from: &[usize], state: CrState) {
    for lc in 0..NODES {
        let results = &w.record().lc_results[lc][from[lc]..];
        assert_eq!(results.len(), PER_NODE, "lc{lc}: {results:?}");
        for r in results {
            assert_eq!(
                r.outcome,
                local::ProcessOutcome::State(state),
                "lc{lc}: {r:?}"
            );
        }
    }
}

fn lc_counts(w: &World) -> Vec<usize> {
    w.record().lc_results.iter().map(Vec::len).collect()
}

#[test]
fn checkpoint_and_continue() {
    let mut w = world(|_, _, _| {});
    // INIT from rank 0 only.
    assert_eq!(
        w.sent("rank0->gc"),
        vec![h("00000001 08 | 00000001 12340001 | 00000001 09 00000001")]
    );
    assert!(w.sent("rank1->gc").is_empty());
    let counts = lc_counts(&w);
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.seq_num, 0);
    assert_eq!(r.reference.as_str(), reference(0));
    assert_eq!(w.sent("rank0->gc")[1], h(REQ_CHECKPOINT));
    for lc in 0..NODES {
        let chan = format!("gc->lc{lc}");
        assert_eq!(
            w.sent(&chan),
            vec![job_running(1, [false; 4]), h(JOB_ESTABLISHED)]
        );
        assert_eq!(
            w.sent(&format!("lc{lc}->gc")),
            vec![h(ORTED_FINISHED), h(ORTED_RECOVERED)]
        );
    }
    assert_eq!(w.sent("gc->rank0"), vec![h(OP_CHECKPOINT_DONE)]);
    for v in 0..NRANKS {
        let pid = pid_of(v);
        assert_eq!(
            w.sent(&fifo(pid, 0, "lc->app")),
            vec![ints(&[0, 0, 0, 0, 0, 0, 1]), ints(&[0]), ints(&[0])],
            "rank {v}"
        );
        assert_eq!(
            w.sent(&fifo(pid, 0, "app->lc")),
            vec![ints(&[0]), ints(&[4])],
            "rank {v}"
        );
        let node = v / PER_NODE;
        assert_eq!(
            w.sent(&format!("rank{v}->lc{node}")),
            vec![h(LOCAL_FINISH_CONTINUE)]
        );
        let hs = w.handshakes(v);
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].state, CrState::Continue);
        assert_eq!(hs[0].error, None);
        assert_eq!(hs[0].handle, 1);
        assert!(hs[0].stages.checkpoint.is_some() && hs[0].stages.release_wait.is_some());
        assert_eq!(w.record().recovered_with[v], vec![CrState::Continue]);
        assert_eq!(w.app(v).names().n, 1);
        assert_eq!(w.lc(node).process(w.name_of(v)).unwrap().n, 1);
    }
    assert_all_lc_results(&w, &counts, CrState::Continue);
    assert_eq!(w.established().get(&1), Some(&(0, reference(0))));
    let rep = w.record().gc_reports.last().unwrap();
    assert!(rep.ok && rep.kind == global::OpKind::Checkpoint && rep.seq == Some(0));
    assert!(w.record().refused.is_empty(), "{:?}", w.record().refused);
}

#[test]
fn five_in_a_row() {
    let mut w = world(|_, _, _| {});
    for k in 0..5u32 {
        let r = checkpoint(&mut w);
        assert_eq!(r.error, None, "checkpoint {k}: {r:?}");
        assert_eq!(r.seq_num, k as i32);
        assert_eq!(r.reference.as_str(), reference(k));
        assert_eq!(w.established().get(&(k + 1)), Some(&(k, reference(k))));
        for v in 0..NRANKS {
            // Handshake k used the names _k, with handle k + 1.
            assert_eq!(
                w.sent(&fifo(pid_of(v), k, "lc->app"))[0],
                ints(&[0, 0, 0, 0, 0, 0, k as i32 + 1])
            );
            assert_eq!(w.app(v).names().n, k + 1);
            let node = v / PER_NODE;
            assert_eq!(w.lc(node).process(w.name_of(v)).unwrap().n, k + 1);
        }
    }
    assert_eq!(w.sent("gc->rank0"), vec![h(OP_CHECKPOINT_DONE); 5]);
    assert!(w.record().refused.is_empty(), "{:?}", w.record().refused);
}

#[test]
fn restart_reports_local_update_and_resets_the_counter() {
    const NEW_PID: u32 = 7004;
    let mut w = world_with(4, |s| {
        s.checkpoint
            .push_back(CheckpointResult::Restart { pid: NEW_PID })
    });
    let _ = checkpoint(&mut w);
    // Rank 4 is the restarted copy: no final state, LOCAL_UPDATE with its
    // new pid, recovered as restarting.
    assert_eq!(w.sent(&fifo(pid_of(4), 0, "app->lc")), vec![ints(&[0])]);
    assert_eq!(
        w.sent("rank4->lc1"),
        vec![h(
            "00000001 04 | 00000001 12340001 00000004 | 00000001 0e 00001b5c"
        )]
    );
    assert_eq!(w.record().recovered_with[4], vec![CrState::Restart]);
    assert_eq!(w.app(4).config().pid, NEW_PID);
    assert_eq!(w.app(4).names().pid, NEW_PID);
    assert_eq!(w.app(4).names().n, 0);
    let info = w.lc(1).process(w.name_of(4)).unwrap();
    assert_eq!((info.pid, info.n), (NEW_PID, 0));
    // The LC learnt of the restart during the handshake it ran with the old pid.
    assert!(w.record().lc_results[1].iter().any(|r| r.pid == pid_of(4)
        && r.outcome == local::ProcessOutcome::Failed(local::ProcessFailure::Restarted)));
    // The next checkpoint uses the new pid's names from 0.
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(
        w.sent(&fifo(NEW_PID, 0, "app->lc")),
        vec![ints(&[0]), ints(&[4])]
    );
    assert_eq!(w.app(4).names().n, 1);
}

#[test]
fn term_terminates_every_process_after_the_checkpoint() {
    let mut w = world(|_, _, _| {});
    runtime_checkpoint(&mut w, true, false);
    for lc in 0..NODES {
        assert_eq!(
            w.sent(&format!("gc->lc{lc}"))[0],
            job_running(1, [true, false, false, false])
        );
    }
    for v in 0..NRANKS {
        assert_eq!(
            w.sent(&fifo(pid_of(v), 0, "lc->app"))[0],
            ints(&[0, 0, 1, 0, 0, 0, 1])
        );
        assert!(w.awaiting_termination(v), "rank {v}");
        assert!(w.app(v).is_terminating());
    }
    let rep = w.record().gc_reports.last().unwrap();
    assert!(rep.ok && rep.requester == global::Requester::Runtime);
    assert_eq!(w.established().get(&1), Some(&(0, reference(0))));
}

#[test]
fn stop_waits_for_every_process_to_stop() {
    let mut w = world(|_, _, _| {});
    let counts = lc_counts(&w);
    runtime_checkpoint(&mut w, false, true);
    for v in 0..NRANKS {
        assert_eq!(
            w.sent(&fifo(pid_of(v), 0, "lc->app"))[0],
            ints(&[0, 0, 0, 1, 0, 0, 1])
        );
        assert_eq!(
            w.sent(&fifo(pid_of(v), 0, "app->lc")),
            vec![ints(&[0]), ints(&[4])]
        );
    }
    assert_all_lc_results(&w, &counts, CrState::Continue);
    for lc in 0..NODES {
        for r in &w.record().lc_results[lc][counts[lc]..] {
            assert!(r.timings.stop.is_some(), "{r:?}");
        }
    }
    assert!(w.record().gc_reports.last().unwrap().ok);
}

#[test]
fn stop_without_the_process_stopping_fails_that_process_only() {
    let mut w = world(|v, _, s| s.never_stops = v == 2);
    runtime_checkpoint(&mut w, false, true);
    assert!(w.record().lc_results[0].iter().any(|r| r.pid == pid_of(2)
        && r.outcome
            == local::ProcessOutcome::Failed(local::ProcessFailure::Timeout(Stage::Stop))));
    assert!(!w.record().gc_reports.last().unwrap().ok);
    assert_eq!(w.sent("lc0->gc"), vec![h(ORTED_ERROR), h(ORTED_RECOVERED)]);
    assert_eq!(
        w.sent("lc1->gc"),
        vec![h(ORTED_FINISHED), h(ORTED_RECOVERED)]
    );
    assert_eq!(w.sent("gc->lc1")[1], h(JOB_ERROR));
    // Everyone else was released and recovered; the next checkpoint works.
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
}

fn quiesce_start(w: &mut World) {
    for v in (0..NRANKS).rev() {
        w.request(v, Request::QuiesceStart).unwrap();
    }
    w.run_until("quiesce start", |w| {
        w.quiesced()
            && (0..NRANKS).all(|v| w.app(v).is_quiesced())
            && (0..NRANKS).all(|v| {
                w.last_request(v)
                    .is_some_and(|r| r.op == OpEvent::QuiesceStart)
            })
    });
}

#[test]
fn quiesce_start_checkpoint_end() {
    let mut w = world(|_, _, _| {});
    quiesce_start(&mut w);
    assert_eq!(
        w.sent("rank0->gc")[1],
        h("00000001 08 | 00000001 12340001 | 00000001 09 00000007")
    );
    for lc in 0..NODES {
        assert_eq!(
            w.sent(&format!("gc->lc{lc}")),
            vec![
                job_running(1, [false, false, true, false]),
                h(JOB_INC_PREPED)
            ]
        );
        assert_eq!(w.sent(&format!("lc{lc}->gc")), vec![h(ORTED_INC_PREPED)]);
    }
    for v in 0..NRANKS {
        let pid = pid_of(v);
        assert_eq!(
            w.sent(&fifo(pid, 0, "app->lc")),
            vec![ints(&[0]), ints(&[6])]
        );
        assert_eq!(
            w.sent(&fifo(pid, 0, "lc->app")),
            vec![ints(&[0, 0, 0, 0, 1, 0, 1]), ints(&[0])]
        );
        assert_eq!(w.last_request(v).unwrap().error, None);
        assert_eq!(w.record().checkpoints[v], 0);
    }
    // Quiesce checkpoint: every rank checkpoints without a handshake.
    for v in (0..NRANKS).rev() {
        w.request(v, Request::QuiesceCheckpoint).unwrap();
    }
    w.run_until("quiesce checkpoint", |w| {
        w.quiesced()
            && (0..NRANKS).all(|v| {
                w.last_request(v)
                    .is_some_and(|r| r.op == OpEvent::QuiesceCheckpoint)
            })
    });
    assert_eq!(
        w.sent("rank0->gc")[2],
        h("00000001 08 | 00000001 12340001 | 00000001 09 00000008")
    );
    for v in 0..NRANKS {
        let r = w.last_request(v).unwrap();
        assert_eq!(r.error, None, "rank {v}: {r:?}");
        assert_eq!(
            (r.seq_num, r.reference.as_str()),
            (0, reference(0).as_str())
        );
        assert_eq!(w.record().checkpoints[v], 1);
        assert!(w.app(v).is_quiesced());
    }
    // No JOB_STATE for the quiesce checkpoint.
    assert_eq!(w.sent("gc->lc0").len(), 2);
    // Quiesce end: CONTINUE on the kept channel, release, recover, teardown.
    for v in (0..NRANKS).rev() {
        w.request(v, Request::QuiesceEnd).unwrap();
    }
    w.run_until("quiesce end", |w| {
        w.idle()
            && (0..NRANKS).all(|v| {
                w.last_request(v)
                    .is_some_and(|r| r.op == OpEvent::QuiesceEnd)
            })
    });
    for lc in 0..NODES {
        assert_eq!(
            w.sent(&format!("gc->lc{lc}"))[2..],
            [
                job_running(1, [false, false, false, true]),
                h(JOB_ESTABLISHED)
            ]
        );
        assert_eq!(
            w.sent(&format!("lc{lc}->gc"))[1..],
            [h(ORTED_FINISHED), h(ORTED_RECOVERED)]
        );
    }
    for v in 0..NRANKS {
        let pid = pid_of(v);
        assert_eq!(
            w.sent(&fifo(pid, 0, "app->lc")),
            vec![ints(&[0]), ints(&[6]), ints(&[4])]
        );
        assert_eq!(w.sent(&fifo(pid, 0, "lc->app"))[2..], [ints(&[0])]);
        assert_eq!(w.last_request(v).unwrap().error, None);
        assert_eq!(w.record().recovered_with[v], vec![CrState::Continue]);
        assert_eq!(w.app(v).names().n, 1);
    }
    assert!(w.sent("gc->rank0").is_empty());
    // The quiesce end records no snapshot; the next checkpoint gets seq 1.
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.seq_num, 1);
}

const MIGRATE_TABLE: [MigrateEntry<'static>; 1] = [MigrateEntry {
    vpid: 4,
    host: Some("node0"),
    vpid_pref: -1,
    off_node: false,
}];

#[test]
fn migrate_moves_the_target_and_the_job_goes_on() {
    let mut w = world(|_, _, _| {});
    let r = migrate(&mut w, &MIGRATE_TABLE);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(w.record().migrations.len(), 1);
    assert_eq!(w.record().migrations[0].2.len(), 1);
    assert_eq!(w.record().migrations[0].2[0].vpid, 4);
    // The target: all_migrating and migrating, no release, no LOCAL_FINISH.
    assert_eq!(
        w.sent(&fifo(pid_of(4), 0, "lc->app")),
        vec![ints(&[1, 1, 0, 0, 0, 0, 1]), ints(&[0])]
    );
    assert_eq!(
        w.sent(&fifo(pid_of(4), 0, "app->lc")),
        vec![ints(&[0]), ints(&[4])]
    );
    assert!(w.sent("rank4->lc1").is_empty());
    assert_eq!(w.record().checkpoints[4], 1);
    // The runtime restored it from the snapshot on node 0, its preferred
    // host: a new process there.
    assert_eq!(w.node_of(4), 0);
    let moved = w.pid_of(4);
    assert_ne!(moved, pid_of(4));
    assert_eq!(w.lc(0).process(w.name_of(4)).unwrap().pid, moved);
    assert!(w.lc(1).process(w.name_of(4)).is_none());
    // The others: skip the checkpoint, released, recover as restarting.
    for v in [0, 1, 2, 3, 5] {
        assert_eq!(
            w.sent(&fifo(pid_of(v), 0, "lc->app")),
            vec![ints(&[1, 0, 0, 0, 0, 0, 1]), ints(&[0]), ints(&[0])]
        );
        assert_eq!(w.record().checkpoints[v], 0);
        assert_eq!(w.record().recovered_with[v], vec![CrState::Restart]);
        assert!(w.record().skipped[&1].contains(&v));
    }
    assert_eq!(
        w.sent("gc->rank0"),
        vec![h(
            "00000001 08 | 00000001 09 00000006 | 00000001 09 00000000"
        )]
    );
    // The next checkpoint works, with the moved process.
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.seq_num, 1);
    assert_eq!(
        w.sent(&fifo(moved, 0, "app->lc")),
        vec![ints(&[0]), ints(&[4])]
    );
}

#[test]
fn migrate_with_conflicting_preferences_is_answered_minus_one() {
    let table = [
        MigrateEntry {
            vpid: 4,
            host: Some("node0"),
            vpid_pref: -1,
            off_node: false,
        },
        MigrateEntry {
            vpid: 4,
            host: Some("node1"),
            vpid_pref: -1,
            off_node: true,
        },
    ];
    let mut w = world(|_, _, _| {});
    let r = migrate(&mut w, &table);
    assert_rejected(&r, "");
    assert!(
        r.elapsed < Duration::from_secs(1),
        "answered at once: {r:?}"
    );
    assert_eq!(
        w.sent("gc->rank0"),
        vec![h(
            "00000001 08 | 00000001 09 00000006 | 00000001 09 ffffffff"
        )]
    );
    assert!(w.sent("gc->lc0").is_empty());
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.seq_num, 0);
}

#[test]
fn stall_then_resume() {
    let mut w = world_with(1, |s| {
        s.prepare
            .extend([PrepareResult::NotNow, PrepareResult::NotNow])
    });
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    // One handshake, three prepare calls, no extra frames.
    assert_eq!(
        w.sent(&fifo(pid_of(1), 0, "app->lc")),
        vec![ints(&[0]), ints(&[4])]
    );
    assert_eq!(w.sent("signal lc0->1001").len(), 1);
    let hs = w.handshakes(1);
    assert!(hs[0].stages.prepare.unwrap() >= Duration::from_secs(2));
}

#[test]
fn in_progress_and_null_answers() {
    // Rank 2 has no checkpointer: NULL. Rank 5 awaits termination from a
    // previous `term` checkpoint: IN_PROGRESS.
    let mut w = world(|v, c, _| c.checkpointer = v != 2);
    let r = checkpoint(&mut w);
    assert_rejected(&r, "");
    assert_eq!(w.sent(&fifo(pid_of(2), 0, "app->lc")), vec![ints(&[2])]);
    assert!(w.record().lc_results[0].iter().any(|r| r.pid == pid_of(2)
        && r.outcome
            == local::ProcessOutcome::Failed(local::ProcessFailure::Refused(
                snapc_sim::core::wire::CkptResponse::Null
            ))));
    assert_eq!(w.sent("lc0->gc"), vec![h(ORTED_ERROR), h(ORTED_RECOVERED)]);
    assert_eq!(w.sent("gc->rank0"), vec![h(OP_CHECKPOINT_FAILED)]);
    // The NULL handshake moved both counters on.
    assert_eq!(w.app(2).names().n, 1);
    assert_eq!(w.lc(0).process(w.name_of(2)).unwrap().n, 1);

    let mut w = world(|_, _, _| {});
    runtime_checkpoint(&mut w, true, false);
    // The runtime has not terminated rank 5 yet; everyone else was replaced.
    for v in 0..NRANKS {
        if v != 5 {
            w.respawn(v, v / PER_NODE, 9000 + v as u32);
        }
    }
    let r = checkpoint(&mut w);
    assert_rejected(&r, "");
    assert_eq!(w.sent(&fifo(pid_of(5), 1, "app->lc")), vec![ints(&[1])]);
    assert!(w.record().lc_results[1].iter().any(|r| r.pid == pid_of(5)
        && r.outcome
            == local::ProcessOutcome::Failed(local::ProcessFailure::Refused(
                snapc_sim::core::wire::CkptResponse::InProgress
            ))));
}

/// A process vanishes at `at`; the rest of the job goes on, its LC reports
/// the failure, the GC answers -1, and the next checkpoint works.
fn vanish(at: Option<Step>) {
    let mut w = world_with(4, |s| s.kill_at = at);
    if at.is_none() {
        w.kill(4);
    }
    let counts = lc_counts(&w);
    let r = checkpoint(&mut w);
    assert_rejected(&r, &format!("{at:?}:"));
    assert_eq!(w.sent("gc->rank0"), vec![h(OP_CHECKPOINT_FAILED)], "{at:?}");
    assert_eq!(
        w.sent("lc1->gc"),
        vec![h(ORTED_ERROR), h(ORTED_RECOVERED)],
        "{at:?}"
    );
    assert_eq!(
        w.sent("lc0->gc"),
        vec![h(ORTED_FINISHED), h(ORTED_RECOVERED)],
        "{at:?}"
    );
    let failed: Vec<_> = w.record().lc_results[1][counts[1]..]
        .iter()
        .filter(|r| matches!(r.outcome, local::ProcessOutcome::Failed(_)))
        .collect();
    assert_eq!(failed.len(), 1, "{at:?}: {failed:?}");
    assert_eq!(failed[0].pid, pid_of(4));
    // Every other process finished its handshake cleanly.
    for v in [0, 1, 2, 3, 5] {
        let hs = w.handshakes(v);
        assert_eq!(hs.len(), 1, "{at:?} rank {v}");
        assert_eq!(hs[0].error, None, "{at:?} rank {v}");
        assert_eq!(w.record().recovered_with[v], vec![CrState::Continue]);
    }
    // The runtime removes the dead process; the next checkpoint works.
    w.remove_from_job(4);
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{at:?}: {r:?}");
    assert_eq!(r.seq_num, 1);
}

#[test]
fn peer_vanishes_before_the_signal() {
    vanish(None);
}

#[test]
fn peer_vanishes_at_each_step_of_the_handshake() {
    for at in [
        Step::Open,
        Step::Read(FrameKind::Options),
        Step::Write(FrameKind::Response),
        Step::Read(FrameKind::GoAhead),
        Step::Prepare,
        Step::Checkpoint,
        Step::Write(FrameKind::FinalState),
    ] {
        vanish(Some(at));
    }
}

#[test]
fn peer_vanishes_after_its_final_state() {
    // Its result is in: the checkpoint succeeds without it.
    for at in [Step::Read(FrameKind::Release), Step::Recover] {
        let mut w = world_with(4, |s| s.kill_at = Some(at));
        let r = checkpoint(&mut w);
        assert_eq!(r.error, None, "{at:?}: {r:?}");
        w.remove_from_job(4);
        let r = checkpoint(&mut w);
        assert_eq!(r.error, None, "{at:?}: {r:?}");
    }
}

#[test]
fn fin_during_a_checkpoint_is_acknowledged_after_it() {
    let mut w = world_with(3, |s| s.hook_time = Duration::from_secs(30));
    w.command(Command::Checkpoint {
        term: false,
        stop: false,
    })
    .unwrap();
    w.advance(Duration::from_secs(5));
    assert!(w.gc().is_busy());
    w.request(0, Request::Fin).unwrap();
    assert_eq!(
        w.sent("rank0->gc")[1],
        h("00000001 08 | 00000001 12340001 | 00000001 09 00000002")
    );
    w.run_until("fin", |w| {
        w.idle() && w.last_request(0).is_some_and(|r| r.op == OpEvent::Fin)
    });
    assert_eq!(w.last_request(0).unwrap().error, None);
    assert_eq!(
        w.sent("gc->rank0"),
        vec![h("00000001 08 | 00000001 09 00000003")]
    );
    // FIN_ACK went out after the checkpoint ended, not before.
    let ack = w
        .record()
        .log
        .iter()
        .position(|r| r.chan == "gc->rank0")
        .unwrap();
    let recovered = w
        .record()
        .log
        .iter()
        .rposition(|r| r.chan == "lc1->gc")
        .unwrap();
    assert!(ack > recovered);
    assert!(w.record().log[ack].at >= w.record().log[recovered].at);
    assert!(w.record().log[ack].at >= snapc_sim::core::time::Instant::from_secs(120));
    assert!(
        w.record().gc_reports[0].ok && w.record().gc_reports[0].kind == global::OpKind::Checkpoint
    );
    assert!(w.gc().is_finished());
    assert!((0..NRANKS).all(|v| w.handshakes(v).len() == 1));
}

#[test]
fn application_checkpoint_from_the_leader_reads_seq_and_reference() {
    let mut w = world(|_, _, _| {});
    let _ = checkpoint(&mut w);
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None);
    assert_eq!(
        (r.seq_num, r.reference.as_str()),
        (1, reference(1).as_str())
    );
    assert_eq!(w.sent("rank0->gc")[2], h(REQ_CHECKPOINT));
    assert_eq!(w.sent("gc->rank0"), vec![h(OP_CHECKPOINT_DONE); 2]);
    // A non-leader's CHECKPOINT sends nothing and ends at once.
    assert_eq!(w.request(3, Request::Checkpoint).unwrap(), 0);
    w.settle();
    assert_eq!(w.last_request(3).unwrap().op, OpEvent::Checkpoint);
    assert!(!w.gc().is_busy());
}

#[test]
fn a_long_checkpoint_succeeds_with_the_default_deadlines() {
    // Twenty minutes in rank 3's checkpointer: within every default wait.
    let mut w = world_with(3, |s| s.hook_time = Duration::from_secs(400));
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
    assert!(r.elapsed >= Duration::from_secs(1200));
}

// ---- a deadline at each wait ----

#[test]
fn deadline_lc_waits_for_the_fifos() {
    // Rank 4 reaches its progress point only after the LC gave up (20 s).
    let mut w = world_with(4, |s| s.progress_delay = Duration::from_secs(30));
    let r = checkpoint(&mut w);
    assert_rejected(&r, "");
    assert!(w.record().lc_results[1].iter().any(|r| r.pid == pid_of(4)
        && r.outcome
            == local::ProcessOutcome::Failed(local::ProcessFailure::Timeout(Stage::Fifos))));
    // Its late handshake found no peer and ended at the app's open deadline.
    let hs = w.handshakes(4);
    assert_eq!(hs.len(), 1);
    assert_eq!(
        hs[0].error.map(|e| (e.wait, e.failure)),
        Some((Wait::Open, Failure::Deadline))
    );
    // Both counters moved past handshake 0; the next checkpoint works.
    assert_eq!(w.app(4).names().n, 1);
    assert_eq!(w.lc(1).process(w.name_of(4)).unwrap().n, 1);
    w.controls().ranks[4].progress_delay = Duration::from_millis(1);
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
}

fn hung(hook: Hook) -> World {
    let mut w = world_with(4, |s| s.hang = Some(hook));
    let r = checkpoint(&mut w);
    let _ = r;
    w
}

#[test]
fn deadline_app_hooks_before_the_final_state() {
    for hook in [Hook::Location, Hook::Prepare, Hook::Checkpoint, Hook::Sync] {
        let mut w = hung(hook);
        let r = w.last_request(0).unwrap();
        assert_rejected(&r, &format!("{hook:?}:"));
        let hs = w.handshakes(4);
        assert!(hs[0].error.is_some(), "{hook:?}");
        assert!(
            w.record().lc_results[1].iter().any(|r| r.pid == pid_of(4)
                && matches!(
                    r.outcome,
                    local::ProcessOutcome::Failed(_) | local::ProcessOutcome::State(CrState::Error)
                )),
            "{hook:?}"
        );
        let r = checkpoint(&mut w);
        assert_eq!(r.error, None, "{hook:?}: {r:?}");
    }
}

#[test]
fn deadline_app_recover_hook() {
    // The result was in: the checkpoint succeeds, the app reports the
    // recover deadline, and the next checkpoint works.
    let mut w = hung(Hook::Recover);
    let r = w.last_request(0).unwrap();
    assert_eq!(r.error, None, "{r:?}");
    let hs = w.handshakes(4);
    assert_eq!(
        hs[0].error.map(|e| (e.wait, e.failure)),
        Some((Wait::Recover, Failure::Deadline))
    );
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
}

#[test]
fn deadline_gc_waits_for_an_lc_and_lc_waits_for_the_verdict() {
    let mut w = world(|_, _, _| {});
    // The GC's verdict is lost: each LC releases at its deadline and
    // reports ERROR.
    w.controls().lose_job_states_after(Some(1));
    w.request(0, Request::Checkpoint).unwrap();
    w.run_until("lost verdict", |w| w.idle() && w.last_request(0).is_some());
    w.controls().lose_job_states_after(None);
    for lc in 0..NODES {
        assert_eq!(
            w.sent(&format!("lc{lc}->gc")),
            vec![h(ORTED_FINISHED), h(ORTED_ERROR)]
        );
    }
    let r = w.last_request(0).unwrap();
    assert_rejected(&r, "");
    assert!(w.established().is_empty(), "no snapshot recorded");
    for v in 0..NRANKS {
        assert_eq!(w.handshakes(v)[0].error, None);
    }
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
}

#[test]
fn deadline_gc_waits_for_the_runtime() {
    let mut w = world(|_, _, _| {});
    w.controls().runtime_answers = false;
    let r = migrate(&mut w, &MIGRATE_TABLE);
    assert_rejected(&r, "");
    assert_eq!(
        w.record().gc_reports.last().unwrap().failure,
        Some(global::OperationFailure::RuntimeTimeout)
    );
    for lc in 0..NODES {
        assert_eq!(w.sent(&format!("gc->lc{lc}"))[1], h(JOB_ERROR));
    }
}

#[test]
fn deadline_app_waits_for_the_op_response() {
    let mut w = world(|_, _, _| {});
    w.controls().mute_to_ranks = true;
    let r = checkpoint(&mut w);
    assert_eq!(
        r.error.map(|e| (e.wait, e.failure)),
        Some((Wait::OpResponse, Failure::Deadline))
    );
    w.controls().mute_to_ranks = false;
    let r = checkpoint(&mut w);
    assert_eq!(r.error, None, "{r:?}");
}

#[test]
fn deadline_fin_while_quiesced() {
    let mut w = world(|_, _, _| {});
    quiesce_start(&mut w);
    w.request(0, Request::Fin).unwrap();
    w.run_until("fin", |w| {
        w.last_request(0).is_some_and(|r| r.op == OpEvent::Fin)
    });
    let r = w.last_request(0).unwrap();
    assert_eq!(
        r.error.map(|e| (e.wait, e.failure)),
        Some((Wait::FinAck, Failure::Deadline))
    );
    assert!(w.sent("gc->rank0").is_empty());
    assert!(!w.gc().is_finished());
}
