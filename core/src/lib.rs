//! # snapc-core
//!
//! Checkpoint coordination as Open MPI's "snapc full" protocol speaks it,
//! for embedding: the wire encoding and the three coordinators as sans-IO
//! state machines. `no_std`, no `alloc`, no `unsafe`, no panic paths
//! (indexing, `unwrap`, `expect` and `panic!` are denied by the compiler);
//! nothing here reads a clock, touches a file descriptor or allocates. The
//! protocol itself (bytes, ordering, deadlines) is written down in this
//! repository's `docs/PROTOCOL.md`, cited in these pages as
//! "docs/PROTOCOL.md §N".
//!
//! ## Which machine runs where
//!
//! | machine | runs in | one per | speaks with |
//! |---|---|---|---|
//! | [`AppCoordinator`] | every application process | process | its local coordinator over the FIFO handshake; the global coordinator (requests) and the node daemon (LOCAL_FINISH, LOCAL_UPDATE) through the daemon's link |
//! | [`LocalCoordinator`] | the node daemon | job on a node | every local process (signal, FIFO handshake); the global coordinator (ORTED_STATE up, JOB_STATE down) |
//! | [`GlobalCoordinator`] | the launcher | job | every local coordinator; the requesting rank (OP response, FIN_ACK); the runtime (snapshots, migration, restart) |
//!
//! ```text
//!  process (rank)            node daemon                 launcher
//! +----------------+  FIFOs  +------------------+  link  +-------------------+
//! | AppCoordinator |<=======>| LocalCoordinator |<======>| GlobalCoordinator |
//! +----------------+  signal +------------------+        +-------------------+
//!         |        REQUEST_OP, through the daemon's link            ^
//!         +---------------------------------------------------------+
//! ```
//!
//! The POSIX adapter (`snapc-posix`) runs the app coordinator inside an
//! application's progress calls, over real FIFOs and a signal handler; the
//! `snapc` runtime runs the local and global coordinators in one node
//! daemon. A runtime without poll(2), or with a UART or a shared-memory ring
//! instead of FIFOs, can drive the app coordinator with
//! [`app::blocking`] over any `embedded-io` byte stream. The [`wire`]
//! module alone encodes and decodes every message, for tools and
//! conformance tests.
//!
//! ## The contract
//!
//! All three machines follow it; each machine's page lists its inputs and
//! actions.
//!
//! 1. **Time comes in.** Every input takes `now`, a [`time::Instant`] from
//!    the adapter's monotonic clock (or a virtual one).
//! 2. **Bytes in at one boundary.** A message or frame from a peer enters as
//!    `&[u8]` through exactly one method per channel, and is decoded inside:
//!    [`AppCoordinator::handle_read`] (FIFO frames) and
//!    [`handle_gc_message`](AppCoordinator::handle_gc_message);
//!    [`LocalCoordinator::handle_read`],
//!    [`handle_gc_message`](LocalCoordinator::handle_gc_message) (JOB_STATE)
//!    and [`handle_process_message`](LocalCoordinator::handle_process_message)
//!    (LOCAL_FINISH, LOCAL_UPDATE);
//!    [`GlobalCoordinator::handle_rank_message`] (REQUEST_OP) and
//!    [`handle_lc_message`](GlobalCoordinator::handle_lc_message)
//!    (ORTED_STATE). The other inputs are the results of the actions the
//!    machine asked for (a FIFO opened, a hook's result) or the runtime's
//!    own commands.
//! 3. **One result convention.** Every input returns `Result<T, InputError>`
//!    with the machine's [`app::InputError`], [`local::InputError`] or
//!    [`global::InputError`]; `T` is `()` except where the caller needs
//!    something at once (the length of the app's REQUEST_OP, the local
//!    coordinator's slot for a new process). `Ok`: the machine took the
//!    input, which may have ended a wait with an error (a malformed frame
//!    fails the handshake it was waited for; the error is in the report).
//!    `Err`: the machine did not take it (unexpected at this point,
//!    undecodable, or refused): its state is unchanged, the input is
//!    counted where the machine counts them, and where the wire has an
//!    answer for a refusal (op_state -1) that answer is queued. Ignoring an
//!    `Err` is safe. Two inputs are ticks and return nothing:
//!    `handle_timeout` and the app's `handle_progress`.
//! 4. **Owned actions out.** After every input, call `poll_action(&mut
//!    out)` until it returns `None` and carry the actions out in order. An
//!    action is an owned value: it borrows neither the machine nor anything
//!    else, so the adapter may answer it (call an input) inside its draining
//!    loop. A message to send is encoded into the caller's `out`, a
//!    [`MessageBuf`] ([`MAX_MESSAGE_LEN`] bytes, large enough for any
//!    message any machine sends), and the action gives its length; the
//!    bytes are `out[..len]` until the next `poll_action`. What an action
//!    names without carrying (the global coordinator's migration plan and
//!    restart handle, each LC's result) is read with an accessor until the
//!    next operation starts. Actions are `#[must_use]`.
//! 5. **Deadlines out.** `poll_timeout()` returns the next deadline as an
//!    `Option<Instant>`; `None` means nothing waits with a deadline. Arm a
//!    timer and call `handle_timeout(now)` at or after it; an early call
//!    does nothing. Every wait of every machine has a deadline, except
//!    those that end only by an application's or operator's choice (idle,
//!    quiesced, awaiting termination).
//! 6. **The caller's memory.** The app coordinator is one fixed-size value.
//!    The local and global coordinators keep their per-process and per-node
//!    state in storage the caller gives, sized at run time
//!    ([`local::ProcessSlot`], [`global::NodeSlot`]): a `&mut [Slot]` (as
//!    smoltcp's socket set takes), an array, or a `Vec`; nothing is
//!    allocated. Slot types are plain, `Copy`, const-constructible
//!    (`EMPTY`) and publish their `SIZE` and `ALIGN`, so a C caller can size
//!    a byte buffer for `n` of them.
//! 7. **Growth.** Enums that will gain variants (actions, outcomes, errors,
//!    failures, operation kinds) are `#[non_exhaustive]`; the wire's
//!    constants are not (the protocol fixes them).
//!
//! ## Sizes
//!
//! The 64-bit figures are checked by `core/tests/storage.rs`; the 32-bit
//! ones were measured for thumbv7em.
//!
//! | | 64-bit | 32-bit |
//! |---|---|---|
//! | `AppCoordinator` | 2,232 B | 1,912 B |
//! | `LocalCoordinator<&mut [ProcessSlot]>` | 168 B | 144 B |
//! | + per process (`ProcessSlot::SIZE`) | 264 B | 248 B |
//! | = 8 / 128 / 1,000 processes | 2,280 / 33,960 / 264,168 B | 2,128 / 31,888 / 248,144 B |
//! | `GlobalCoordinator<&[&str], &mut [NodeSlot]>` (`M` = 8) | 4,608 B | 4,328 B |
//! | + per node (`NodeSlot::SIZE`) | 2 B | 2 B |
//! | = 4 / 64 / 1,000 nodes | 4,616 / 4,736 / 6,608 B | 4,336 / 4,456 / 6,328 B |
//! | `MessageBuf` | 457 B | 457 B |
//!
//! Most of a process slot is the per-stage timings of its handshake; most
//! of the global coordinator is its action queue and the migration plan
//! (`M` moves with room for a host name each; `M` = 4 gives 3,456 B).
//!
//! ## Targets and features
//!
//! Any target with 8- and 32-bit atomic loads and stores: CI builds
//! `thumbv6m-none-eabi`, `thumbv7em-none-eabihf` and
//! `riscv32imc-unknown-none-elf`. No 64-bit atomics, no floating point.
//!
//! - `critical-section` (default): on targets without compare-and-swap
//!   (Cortex-M0, RV32IMC) the checkpoint flag's atomics go through a
//!   critical section; the final program links an implementation (of
//!   cortex-m, riscv, an RTOS, or `critical-section/std`). Other targets
//!   use native atomics.
//! - `defmt` or `log` (at most one): where the machines' logging goes;
//!   without either it compiles to nothing.
//!
//! ## Examples
//!
//! The wire: REQUEST_OP(INIT) for job 0x12340001, as Open MPI's own
//! `opal_dss` packs it (docs/PROTOCOL.md §6), and back.
//!
//! ```
//! use snapc_core::wire::{Message, OpEvent, Request, RequestOp, ToGc};
//!
//! let init = RequestOp { jobid: 0x1234_0001, request: Request::Init };
//! let mut buf = [0u8; 64];
//! let len = init.emit(&mut buf).unwrap();
//! assert_eq!(
//!     &buf[..len],
//!     &[0, 0, 0, 1, 0x08, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0, 0, 0, 1, 0x09, 0, 0, 0, 1]
//! );
//! match ToGc::parse(&buf[..len]).unwrap() {
//!     ToGc::RequestOp(r) => assert_eq!(r.request.op_event(), OpEvent::Init),
//!     other => panic!("decoded as {other:?}"),
//! }
//! // Any byte string decodes to a value or an error, never a panic.
//! assert!(ToGc::parse(&buf[..len - 1]).is_err());
//! ```
//!
//! One checkpoint handshake of an application process, the local
//! coordinator reduced to the frames it sends, every action answered in the
//! draining loop:
//!
//! ```
//! use snapc_core::app::{Action, CheckpointFlag, CheckpointResult, Config, Outcome, PrepareResult, SstoreOp};
//! use snapc_core::time::{Duration, Instant};
//! use snapc_core::wire::fifo::{self, OptionsFrame};
//! use snapc_core::wire::{CkptResponse, CrState, FifoOptions, ProcessName};
//! use snapc_core::{AppCoordinator, MessageBuf, MAX_MESSAGE_LEN};
//!
//! static FLAG: CheckpointFlag = CheckpointFlag::new();
//! let name = ProcessName { jobid: 1, vpid: 0 };
//! let mut app = AppCoordinator::new(Config::new(4242, name, true), &FLAG);
//!
//! // The scripted local coordinator: options (handle 7), go-ahead, release.
//! let options = OptionsFrame { options: FifoOptions::default(), handle: 7 }.to_bytes();
//! let mut from_lc = [&options[..], &fifo::GO_AHEAD[..], &fifo::RELEASE[..]].into_iter();
//! let mut to_lc = Vec::new();
//! let mut to_daemon = Vec::new();
//! let mut out: MessageBuf = [0; MAX_MESSAGE_LEN];
//! let mut now = Instant::from_secs(1);
//! let mut report = None;
//!
//! FLAG.request(); // the signal handler
//! app.handle_progress(now); // the application's progress point
//! while let Some(action) = app.poll_action(&mut out) {
//!     now += Duration::from_millis(1);
//!     let taken = match action {
//!         Action::OpenChannel { .. } => app.handle_opened(now),
//!         Action::Read { len, .. } => {
//!             let frame = from_lc.next().unwrap();
//!             assert_eq!(frame.len(), len);
//!             app.handle_read(now, frame)
//!         }
//!         Action::Write { bytes, .. } => {
//!             to_lc.extend_from_slice(&bytes);
//!             app.handle_write_done(now)
//!         }
//!         Action::Prepare => app.handle_prepare(now, PrepareResult::Ready),
//!         Action::Checkpoint { .. } => app.handle_checkpoint(now, CheckpointResult::Continue),
//!         Action::Recover { .. } => app.handle_recovered(now, Ok(())),
//!         Action::Sstore(SstoreOp::ReadLocation { .. } | SstoreOp::Sync { .. }) => {
//!             app.handle_sstore(now, Ok(()))
//!         }
//!         Action::Sstore(_) => Ok(()), // recorded; not answered
//!         Action::SendToDaemon { len } => {
//!             to_daemon.extend_from_slice(&out[..len]); // LOCAL_FINISH
//!             Ok(())
//!         }
//!         Action::Close { .. } => Ok(()),
//!         Action::Unlink { .. } => app.handle_teardown_done(now),
//!         Action::Outcome(Outcome::Handshake(r)) => {
//!             report = Some(r);
//!             Ok(())
//!         }
//!         _ => Ok(()),
//!     };
//!     taken.expect("each answer is one the machine waits for");
//! }
//!
//! let report = report.unwrap();
//! assert_eq!((report.handle, report.state, report.error), (7, CrState::Continue, None));
//! let mut want = fifo::response_frame(CkptResponse::Start).to_vec();
//! want.extend_from_slice(&fifo::cr_state_frame(CrState::Continue));
//! assert_eq!(to_lc, want);
//! // LOCAL_FINISH(CONTINUE), docs/PROTOCOL.md §6.
//! assert_eq!(to_daemon, [0, 0, 0, 1, 0x05, 0, 0, 0, 1, 0x09, 0, 0, 0, 4]);
//! assert!(app.is_idle() && app.poll_timeout().is_none());
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]
#![warn(missing_docs)]

// `arbitrary`'s derive names std (fuzzing and property tests only).
#[cfg(feature = "arbitrary")]
extern crate std;

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("snapc-core: enable at most one of the `defmt` and `log` features");

#[macro_use]
mod fmt;

pub mod app;
pub mod global;
pub mod local;
pub mod time;
pub mod wire;

pub use app::AppCoordinator;
pub use global::GlobalCoordinator;
pub use local::LocalCoordinator;

/// The longest global snapshot reference the machines carry, in bytes.
pub const MAX_REFERENCE_LEN: usize = 128;

/// A global snapshot reference (`snapc_global_snapshot_<jobid>_<seq>` when
/// the global coordinator names it).
pub type Reference = heapless::String<MAX_REFERENCE_LEN>;

/// The longest message any machine puts into a [`MessageBuf`]: a long
/// JOB_STATE naming [`global::MAX_MOVES`] migrating processes (73 bytes of
/// fixed fields, 12 per process). Every other message is shorter.
pub const MAX_MESSAGE_LEN: usize = 73 + 12 * global::MAX_MOVES;

/// The buffer each machine's `poll_action` encodes an outgoing message into.
/// A message action gives its length; the bytes are the buffer's first
/// `len`, valid until the next `poll_action`.
pub type MessageBuf = [u8; MAX_MESSAGE_LEN];

/// How an I/O operation the adapter carried out for a machine failed
/// (FIFO open, read or write, a signal that could not be delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IoError {
    /// End of file, EPIPE, a hang-up, ESRCH: the peer is gone.
    PeerGone,
    /// Any other error (a failed mkfifo or open, a failed check of a FIFO).
    Failed,
}

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::PeerGone => "the peer is gone",
            Self::Failed => "I/O error",
        })
    }
}

impl core::error::Error for IoError {}
