//! Links snapc-core into a `no_std`, `no_main` program and uses its wire
//! layer and its three machines (the local and global coordinators over
//! storage on the stack), so the build fails if anything in the dependency
//! tree needs std or an allocator.
//!
//! It also proves there is no panic path: in the release build (LTO, one
//! codegen unit) the panic handler calls a function that exists nowhere, so
//! the link fails if any code reachable from `main` can still panic. Every
//! input of every machine is called with values the compiler cannot know
//! (they come from `argc`), so all of them are reachable.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use snapc_core::app::{self, CheckpointFlag};
use snapc_core::global::{self, GlobalDeadlines, NodeSlot};
use snapc_core::local::{self, ProcessSlot};
use snapc_core::time::Instant;
use snapc_core::wire::{
    CkptState, CrState, FromGc, JobDetail, JobOptions, JobState, LocalFinish, Message,
    ProcessName, Request, RequestOp, StateCode, ToDaemon,
};
use snapc_core::{
    AppCoordinator, GlobalCoordinator, LocalCoordinator, MAX_MESSAGE_LEN, MessageBuf,
};

// libc supplies the program's start-up code, memcpy and memset; nothing of std.
#[link(name = "c")]
unsafe extern "C" {}

#[cfg(debug_assertions)]
#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}

#[cfg(not(debug_assertions))]
#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    unsafe extern "C" {
        /// Defined nowhere: referenced only if a panic is reachable.
        fn snapc_core_has_a_reachable_panic_path() -> !;
    }
    unsafe { snapc_core_has_a_reachable_panic_path() }
}

/// The host's prebuilt libcore refers to the unwinding personality routine;
/// with `panic = "abort"` nothing unwinds, so it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

static FLAG: CheckpointFlag = CheckpointFlag::new();

const JOB: u32 = 0x1234_0001;

/// The C entry point: 0 when every step below holds, else the step's number.
#[unsafe(no_mangle)]
pub extern "C" fn main(argc: i32, _argv: *const *const u8) -> i32 {
    every_input(argc as u32);
    match run() {
        Ok(()) => 0,
        Err(step) => step,
    }
}

/// Calls every input of every machine with values from `x` (the program's
/// argc: 1 here), so that all of their code is linked in and checked for
/// panics. Their results do not matter.
fn every_input(x: u32) {
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    let now = Instant::from_micros(u64::from(x));
    let bytes = [x as u8; 40];
    let frame = bytes.get(..(x as usize % 40)).unwrap_or_default();
    let name = ProcessName { jobid: x, vpid: x };

    let mut app = AppCoordinator::new(app::Config::new(x, name, x % 2 == 0), &FLAG);
    app.handle_progress(now);
    let _ = app.handle_opened(now);
    let _ = app.handle_read(now, frame);
    let _ = app.handle_write_done(now);
    let _ = app.handle_io_error(now, snapc_core::IoError::PeerGone);
    let _ = app.handle_prepare(now, app::PrepareResult::Ready);
    let _ = app.handle_checkpoint(now, app::CheckpointResult::Restart { pid: x });
    let _ = app.handle_recovered(now, Err(app::HostError));
    let _ = app.handle_sstore(now, Ok(()));
    let _ = app.handle_sstore_global(now, Some(x as i32), core::str::from_utf8(frame).ok());
    let _ = app.handle_teardown_done(now);
    let _ = app.handle_gc_message(now, frame);
    let _ = app.handle_gc_gone(now);
    let _ = app.request(now, Request::Checkpoint, &mut out);
    app.handle_timeout(now);
    while app.poll_action(&mut out).is_some() {}
    let _ = app.poll_timeout();

    let mut slots = [ProcessSlot::EMPTY; 3];
    let mut lc = LocalCoordinator::new(local::Config::default(), &mut slots[..]);
    let slot = lc.add_process(name, x).ok();
    let _ = lc.update_pid(now, name, x + 1);
    let _ = lc.handle_gc_message(now, frame);
    let _ = lc.handle_process_message(now, x, frame);
    if let Some(slot) = slot {
        let _ = lc.handle_fifos_exist(now, slot);
        let _ = lc.handle_opened(now, slot);
        let _ = lc.handle_written(now, slot);
        let _ = lc.handle_read(now, slot, frame);
        let _ = lc.handle_stopped(now, slot);
        let _ = lc.handle_io_error(now, slot, snapc_core::IoError::Failed);
    }
    let _ = lc.remove_process(now, name);
    lc.handle_timeout(now);
    while lc.poll_action(&mut out).is_some() {}
    let _ = lc.poll_timeout();

    let config = global::Config {
        jobid: x,
        nranks: x,
        deadlines: GlobalDeadlines::default(),
    };
    let mut nodes = [NodeSlot::EMPTY; 2];
    let mut gc: GlobalCoordinator<_, _> =
        GlobalCoordinator::new(config, ["a", "b"], &mut nodes[..]);
    let _ = gc.handle_rank_message(now, x, frame);
    let _ = gc.handle_lc_message(now, x as usize, frame);
    let _ = gc.handle_command(now, global::Command::Checkpoint { term: x > 5, stop: false });
    let _ = gc.handle_migration_done(now, x > 2);
    let _ = gc.handle_restart_done(now, x > 3);
    gc.handle_timeout(now);
    while gc.poll_action(&mut out).is_some() {}
    let _ = gc.poll_timeout();
}

fn run() -> Result<(), i32> {
    let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
    let now = Instant::from_secs(1);

    // 1: the wire, LOCAL_FINISH(CONTINUE) there and back.
    let msg = ToDaemon::LocalFinish(LocalFinish {
        cr_state: CrState::Continue,
    });
    let n = msg.emit(&mut out).map_err(|_| 1)?;
    match out.get(..n).map(ToDaemon::parse) {
        Some(Ok(back)) if back == msg => {}
        _ => return Err(1),
    }

    // 2: the app coordinator takes a request from its flag.
    let name = ProcessName { jobid: JOB, vpid: 0 };
    let mut app = AppCoordinator::new(app::Config::new(4242, name, true), &FLAG);
    FLAG.request();
    app.handle_progress(now);
    if !matches!(app.poll_action(&mut out), Some(app::Action::OpenChannel { .. })) {
        return Err(2);
    }

    // 3: the local coordinator, two processes in storage on the stack,
    // signals both on JOB_STATE RUNNING.
    let mut slots = [ProcessSlot::EMPTY; 2];
    let mut lc = LocalCoordinator::new(local::Config::default(), &mut slots[..]);
    for v in 0..2 {
        lc.add_process(ProcessName { jobid: JOB, vpid: v }, 100 + v)
            .map_err(|_| 3)?;
    }
    let running = FromGc::JobState(JobState {
        jobid: JOB,
        state: StateCode::plain(CkptState::Running),
        detail: Some(JobDetail {
            handle: 1,
            options: JobOptions::default(),
            migrating: None,
        }),
    });
    let mut job = [0u8; 64];
    let n = running.emit(&mut job).map_err(|_| 3)?;
    lc.handle_gc_message(now, job.get(..n).ok_or(3)?)
        .map_err(|_| 3)?;
    let mut signals = 0;
    while let Some(action) = lc.poll_action(&mut out) {
        if matches!(action, local::Action::Signal { .. }) {
            signals += 1;
        }
    }
    if signals != 2 {
        return Err(3);
    }

    // 4: the global coordinator, one node, sends JOB_STATE RUNNING after
    // INIT and CHECKPOINT.
    let config = global::Config {
        jobid: JOB,
        nranks: 2,
        deadlines: GlobalDeadlines::default(),
    };
    let mut nodes = [NodeSlot::EMPTY; 1];
    let mut gc: GlobalCoordinator<_, _> =
        GlobalCoordinator::new(config, ["node0", "node0"], &mut nodes[..]);
    for request in [Request::Init, Request::Checkpoint] {
        let req = RequestOp {
            jobid: JOB,
            request,
        };
        let mut buf = [0u8; 64];
        let n = req.emit(&mut buf).map_err(|_| 4)?;
        gc.handle_rank_message(now, 0, buf.get(..n).ok_or(4)?)
            .map_err(|_| 4)?;
    }
    match gc.poll_action(&mut out) {
        Some(global::Action::SendToLcs { len }) => match out.get(..len).map(FromGc::parse) {
            Some(Ok(FromGc::JobState(js))) if js.state.state == CkptState::Running => Ok(()),
            _ => Err(4),
        },
        _ => Err(4),
    }
}
