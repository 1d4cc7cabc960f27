//! The global coordinator (GC): one per job, in the launcher
//! (docs/PROTOCOL.md §1, §5, §8).
//!
//! It accepts the ranks' requests (REQUEST_OP), the runtime's own commands
//! and the local coordinators' (LC) states (ORTED_STATE), and answers with
//! JOB_STATE to every LC, OP responses and FIN_ACK to the requesting rank,
//! and actions for the runtime (record a snapshot, migrate, restart,
//! operation finished). See [`GlobalCoordinator`] for the contract.

pub mod migrate;
#[cfg(test)]
mod tests;

pub use migrate::{
    Destination, HostName, MAX_HOST_NAME_LEN, MigrateError, MigrationPlan, Move, Placement,
};

use crate::time::{Duration, Instant};
use crate::wire::{
    CkptState, DecodeError, FromGc, JobDetail, JobOptions, JobState, List, Message, OpEvent,
    OpResponse, OrtedState, ProcessName, Reader, Request, RequestOp, StateCode,
};
use crate::{MessageBuf, Reference};
use core::fmt::{self, Write as _};

/// The largest MIGRATE capacity `M` a global coordinator may have: its
/// JOB_STATE naming `M` migrating processes must fit a
/// [`MessageBuf`].
pub const MAX_MOVES: usize = 32;

/// The longest snapshot handle a RESTART request may name, in bytes.
pub const MAX_RESTART_HANDLE_LEN: usize = 256;

/// Actions that may wait to be polled. One input queues at most seven
/// (deadlines that end an operation with a FIN waiting, then a refusal), so
/// draining after every input never loses one.
const MAX_QUEUED_ACTIONS: usize = 8;

/// How long each wait of the global coordinator may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GlobalDeadlines {
    /// Each LC's report in each step of an operation: its checkpoint result
    /// after JOB_STATE RUNNING, its RECOVERED after ESTABLISHED or ERROR.
    pub lc_report: Duration,
    /// A FIN waiting for a running operation to end. When it passes, FIN
    /// fails (no FIN_ACK is ever sent while an operation runs).
    pub fin: Duration,
    /// The runtime's report that a migration or a restart is done.
    pub runtime: Duration,
}

impl Default for GlobalDeadlines {
    /// The waits nest (docs/PROTOCOL.md §9): 65
    /// minutes per LC step, longer than the LC's own bound on a handshake
    /// (its 20 s waits and the hour for the final state, plus the minute for
    /// `stop`), so that an LC reports a slow process as failed before the GC
    /// gives up on the LC; five minutes for the runtime; 140 minutes for
    /// FIN, longer than a whole operation (two LC steps and the runtime).
    /// The app coordinator's defaults wait longer still for the OP response
    /// and FIN_ACK (150 minutes), and the LC longer for the verdict
    /// (75 minutes: one LC step and the runtime).
    fn default() -> Self {
        Self {
            lc_report: Duration::from_secs(3900),
            fin: Duration::from_secs(8400),
            runtime: Duration::from_secs(300),
        }
    }
}

/// The job a global coordinator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// The job id, carried in every JOB_STATE and checked in every request.
    pub jobid: u32,
    /// Number of ranks; requests from other vpids are refused.
    pub nranks: u32,
    /// The deadlines.
    pub deadlines: GlobalDeadlines,
}

/// Who asked for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Requester {
    /// A rank (its vpid), which gets the OP response or FIN_ACK.
    Rank(u32),
    /// The runtime itself (the `snapc` CLI); it learns the outcome from
    /// [`Action::Finished`].
    Runtime,
}

/// The kinds of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum OpKind {
    /// A checkpoint of the whole job.
    Checkpoint,
    /// A migration (a checkpoint of the job, then the runtime moves ranks).
    Migrate,
    /// A restart, carried out by the runtime.
    Restart,
    /// Quiesce start: a checkpoint phase that stops after prepare.
    QuiesceStart,
    /// A snapshot while quiesced, without a handshake.
    QuiesceCheckpoint,
    /// Quiesce end: the ranks' final states and release.
    QuiesceEnd,
    /// FIN: the job finishes once no operation runs.
    Fin,
}

/// The runtime's own commands (from the `snapc` CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Command {
    /// Checkpoint the job with these options.
    Checkpoint {
        /// Terminate the job after the checkpoint.
        term: bool,
        /// Stop the processes after the checkpoint.
        stop: bool,
    },
    /// Quiesce the job.
    QuiesceStart,
    /// End the quiesce.
    QuiesceEnd,
}

/// An established global snapshot, for the runtime to record in sstore
/// (global sequence number and reference attributes) before the requester
/// is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The sequence number (from 0, only increasing).
    pub seq: u32,
    /// The sstore handle (from 1).
    pub handle: u32,
    /// The global snapshot reference.
    pub reference: Reference,
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum OperationFailure {
    /// LC `lc` reported `state` where another was expected (ERROR, or a
    /// mixture of finished and prepared).
    Lc {
        /// The LC's index.
        lc: usize,
        /// What it reported.
        state: CkptState,
    },
    /// LC `lc` missed its deadline.
    LcTimeout {
        /// The LC's index.
        lc: usize,
    },
    /// The runtime reported a failed migration or restart.
    Runtime,
    /// The runtime did not report in time.
    RuntimeTimeout,
    /// FIN's wait for the running operation passed its deadline.
    FinTimeout,
}

/// The outcome of an operation that started. Each LC's result is read
/// with [`GlobalCoordinator::lc_results`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What ran.
    pub kind: OpKind,
    /// Who asked.
    pub requester: Requester,
    /// Whether it succeeded.
    pub ok: bool,
    /// The snapshot's sequence number (checkpoints, migrations, quiesce
    /// checkpoints; the requested one for a restart).
    pub seq: Option<i64>,
    /// The sstore handle; 0 for none.
    pub handle: u32,
    /// The global snapshot reference, when a sequence number was assigned.
    pub reference: Option<Reference>,
    /// The first failure, if any.
    pub failure: Option<OperationFailure>,
    /// When it started.
    pub started: Instant,
    /// How long it took.
    pub duration: Duration,
}

/// What the global coordinator asks its adapter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "every action must be carried out (or answered) for the machine to go on"]
#[non_exhaustive]
pub enum Action {
    /// Send the first `len` bytes of the buffer given to
    /// [`poll_action`](GlobalCoordinator::poll_action) to every LC: a
    /// JOB_STATE, the long form (RUNNING, with the handle, options and
    /// migrating processes) to start a step, the quick form for
    /// ESTABLISHED, INC_PREPED and ERROR.
    SendToLcs {
        /// The message's length.
        len: usize,
    },
    /// Send the first `len` bytes of the buffer given to
    /// [`poll_action`](GlobalCoordinator::poll_action) to rank `vpid` of the
    /// job: an OP response or FIN_ACK.
    SendToRank {
        /// The rank.
        vpid: u32,
        /// The message's length.
        len: usize,
    },
    /// Record this snapshot (sstore attributes) now: the requester's OP
    /// response follows.
    Established(Snapshot),
    /// Carry out this migration: the job's snapshot `seq` / `handle` is
    /// complete; move the ranks of the plan
    /// ([`migration_plan`](GlobalCoordinator::migration_plan)), restart
    /// them from it, update the placement, then report with
    /// [`handle_migration_done`](GlobalCoordinator::handle_migration_done).
    Migrate {
        /// The snapshot's sequence number.
        seq: u32,
        /// Its sstore handle.
        handle: u32,
    },
    /// Restart the job from the snapshot named by sequence number `seq_num`
    /// and the handle [`restart_handle`](GlobalCoordinator::restart_handle),
    /// both as requested, then report with
    /// [`handle_restart_done`](GlobalCoordinator::handle_restart_done).
    Restart {
        /// The snapshot's sequence number, as requested.
        seq_num: i32,
    },
    /// An operation ended.
    Finished(Report),
}

/// Why an input was refused (see the crate's contract, "Inputs"). Where the
/// wire allows it, the requesting rank has been answered too (op_state -1
/// for CHECKPOINT and MIGRATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InputError {
    /// Bytes that do not decode as the message the channel carries
    /// (REQUEST_OP from a rank, ORTED_STATE from an LC).
    Decode(DecodeError),
    /// A request for another job.
    WrongJob(u32),
    /// A sender vpid that is not a rank of the job.
    UnknownRank(u32),
    /// An LC index beyond the storage.
    UnknownLc(usize),
    /// A checkpoint before INIT.
    NotInitialized,
    /// A request after FIN was acknowledged.
    Finishing,
    /// An operation (or a quiesce) is running.
    Busy,
    /// A FIN is already waiting.
    FinPending,
    /// QUIESCE_CHECKPOINT or QUIESCE_END while not quiesced.
    NotQuiesced,
    /// An op_event a rank does not send (NONE, FIN_ACK).
    Unexpected(OpEvent),
    /// A RESTART without a handle, with a negative sequence number, or with
    /// a handle longer than [`MAX_RESTART_HANDLE_LEN`].
    BadRestart,
    /// The sequence numbers or sstore handles are used up.
    Exhausted,
    /// The migration table was refused.
    Migrate(MigrateError),
    /// A runtime report while nothing waits for it.
    NotWaiting,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "undecodable request: {e}"),
            Self::WrongJob(j) => write!(f, "request for job {j}"),
            Self::UnknownRank(v) => write!(f, "rank {v} is not in the job"),
            Self::UnknownLc(i) => write!(f, "no local coordinator {i}"),
            Self::NotInitialized => f.write_str("the job has not sent INIT"),
            Self::Finishing => f.write_str("the job is finishing"),
            Self::Busy => f.write_str("an operation is running"),
            Self::FinPending => f.write_str("a FIN is already waiting"),
            Self::NotQuiesced => f.write_str("the job is not quiesced"),
            Self::Unexpected(e) => write!(f, "unexpected request {e}"),
            Self::BadRestart => f.write_str("invalid restart request"),
            Self::Exhausted => f.write_str("sequence numbers or handles used up"),
            Self::Migrate(e) => write!(f, "migration refused: {e}"),
            Self::NotWaiting => f.write_str("no operation waits for the runtime"),
        }
    }
}

impl From<MigrateError> for InputError {
    fn from(e: MigrateError) -> Self {
        Self::Migrate(e)
    }
}

/// A queued action; messages are encoded when polled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    JobRunning {
        handle: u32,
        options: JobOptions,
        migrating: bool,
    },
    JobQuick(CkptState),
    ToRank {
        vpid: u32,
        msg: FromGc<'static>,
    },
    /// An action without a message, as it is handed out.
    Action(Action),
}

/// The step a running operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// JOB_STATE RUNNING sent; waiting for each LC's result.
    Collecting,
    /// The migration's snapshot is complete; waiting for the runtime.
    Migrating,
    /// ESTABLISHED or ERROR sent; waiting for each LC's RECOVERED.
    Recovering {
        /// Whether the operation succeeded so far.
        ok: bool,
    },
    /// The restart action is out; waiting for the runtime.
    Restarting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    kind: OpKind,
    requester: Requester,
    started: Instant,
    seq: Option<u32>,
    restart_seq: i32,
    handle: u32,
    reference: Option<Reference>,
    options: JobOptions,
    step: Step,
    deadline: Instant,
    failure: Option<OperationFailure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quiesce {
    handle: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FinWait {
    vpid: u32,
    started: Instant,
    deadline: Instant,
}

/// One local coordinator's place in a [`GlobalCoordinator`]'s storage: its
/// report in the current step and its result for the operation.
///
/// The caller owns the storage, one slot per node (LC) of the job, and
/// chooses its length at run time, as for
/// [`ProcessSlot`](crate::local::ProcessSlot): [`NodeSlot::SIZE`] bytes
/// each (8), aligned to [`NodeSlot::ALIGN`];
/// [`GlobalCoordinator::new`] empties every slot it is given; storage built
/// from raw bytes must first have [`NodeSlot::EMPTY`] written into each
/// element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSlot {
    /// This step's report.
    report: Option<CkptState>,
    /// The result for the operation's report.
    result: CkptState,
}

/// What a [`GlobalCoordinator`]'s storage can be: anything that lends a
/// slice of [`NodeSlot`]s (`&mut [NodeSlot]`, `[NodeSlot; N]`,
/// `Vec<NodeSlot>`, `Box<[NodeSlot]>`).
pub trait NodeStorage: AsRef<[NodeSlot]> + AsMut<[NodeSlot]> {}

impl<T: AsRef<[NodeSlot]> + AsMut<[NodeSlot]> + ?Sized> NodeStorage for T {}

impl Default for NodeSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl NodeSlot {
    /// An empty slot.
    pub const EMPTY: Self = Self {
        report: None,
        result: CkptState::None,
    };

    /// The size of one slot in bytes: storage for `n` nodes is
    /// `n * NodeSlot::SIZE` bytes.
    pub const SIZE: usize = core::mem::size_of::<Self>();

    /// The alignment storage must have.
    pub const ALIGN: usize = core::mem::align_of::<Self>();

    /// An empty slot (as [`EMPTY`](Self::EMPTY)).
    pub const fn new() -> Self {
        Self::EMPTY
    }
}

/// The global coordinator of one job over as many local coordinators
/// (indices `0..`) as its storage has [`NodeSlot`]s, accepting MIGRATE
/// tables of at most `M` entries naming at most `M` ranks (`M` at most
/// [`MAX_MOVES`]); `P` says which host each rank runs on.
///
/// It follows the crate's contract ([`crate`], "The contract"); what is
/// particular to it:
///
/// **Storage**: `S` is the caller's, any [`NodeStorage`] (a `&mut
/// [NodeSlot]`, an array, a `Vec`), one slot
/// per node, its length chosen at run time. The crate's front page
/// ("Sizes") gives the bytes each size takes. Nothing is allocated.
///
/// **Inputs**, each with the current time `now` (any monotonic clock;
/// nothing here reads one):
/// - [`handle_rank_message`](Self::handle_rank_message): the bytes of a
///   REQUEST_OP from rank `vpid`;
/// - [`handle_lc_message`](Self::handle_lc_message): the bytes of an
///   ORTED_STATE from LC `lc`;
/// - [`handle_command`](Self::handle_command): the runtime's own commands;
/// - [`handle_migration_done`](Self::handle_migration_done),
///   [`handle_restart_done`](Self::handle_restart_done): the runtime's reports;
/// - [`handle_timeout`](Self::handle_timeout) (a tick): time passed; call it
///   at (or after) [`poll_timeout`](Self::poll_timeout).
///
/// Every input first applies the deadlines that passed by `now`, so a report
/// that arrives late counts as missed.
///
/// **Outputs**: [`Action`]s from [`poll_action`](Self::poll_action), in
/// order (the order matters: a snapshot is [`Action::Established`] before
/// the requester's OP response goes out). At most eight actions wait; one
/// input adds at most seven, so draining after every input loses none (an
/// action that does not fit is dropped and logged). What an action names
/// but does not carry stays readable until the next operation starts: the
/// [`migration_plan`](Self::migration_plan), the
/// [`restart_handle`](Self::restart_handle) and each LC's result
/// ([`lc_results`](Self::lc_results)).
///
/// **Operations** (docs/PROTOCOL.md §8):
///
/// - INIT makes the job checkpointable; CHECKPOINT, MIGRATE and quiesce
///   before it are refused (op_state -1 where the wire carries one).
/// - CHECKPOINT (or [`Command::Checkpoint`]) takes the next sequence number
///   (from 0), the next sstore handle (from 1) and the reference, sends the
///   long JOB_STATE RUNNING, collects each LC's result, sends the quick
///   ESTABLISHED if all are FINISHED_LOCAL else ERROR, collects RECOVERED,
///   then ends: [`Action::Established`] only on success, op_state 0 or -1 to
///   the requesting rank, [`Action::Finished`]. An LC that misses a deadline
///   counts as ERROR. A failed checkpoint uses up its sequence number.
/// - QUIESCE_START is that with `inc_prep_only` and a handle but no sequence
///   number; when all LCs are INC_PREPED the quick INC_PREPED goes out and
///   the job is quiesced. QUIESCE_CHECKPOINT while quiesced takes a sequence
///   number and reference for the quiesce's handle at once (no LC step, no
///   answer on the wire). QUIESCE_END sends RUNNING with `inc_recover_only`
///   and the quiesce's handle, then runs like a checkpoint without a
///   snapshot; the GC never answers QUIESCE_* on the wire.
/// - MIGRATE validates the table (the rules are in [`migrate`]),
///   then runs a checkpoint with the moving ranks in the JOB_STATE; once all
///   LCs finished it gives [`Action::Migrate`] and waits for the runtime,
///   then releases the LCs (ESTABLISHED, or ERROR if the migration failed)
///   and answers op_state 0 or -1.
/// - RESTART gives [`Action::Restart`] and waits for the runtime's report.
/// - Another CHECKPOINT or MIGRATE while an operation runs (or the job is
///   quiesced) is answered -1 at once; other requests are refused.
/// - FIN is acknowledged (FIN_ACK) once no operation runs and the job is
///   not quiesced; if its deadline passes first it fails without FIN_ACK.
///   After FIN_ACK the job takes no more operations.
///
#[derive(Debug)]
pub struct GlobalCoordinator<P, S, const M: usize = 8> {
    config: Config,
    placement: P,
    nodes: S,
    initialized: bool,
    finishing: bool,
    next_seq: Option<u32>,
    next_handle: Option<u32>,
    op: Option<Op>,
    quiesce: Option<Quiesce>,
    fin: Option<FinWait>,
    plan: MigrationPlan<M>,
    migrating: heapless::Vec<ProcessName, M>,
    restart_handle: heapless::String<MAX_RESTART_HANDLE_LEN>,
    queue: heapless::Deque<Out, MAX_QUEUED_ACTIONS>,
}

impl<P, S, const M: usize> GlobalCoordinator<P, S, M>
where
    P: Placement,
    S: NodeStorage,
{
    /// A coordinator for the job of `config`, its ranks placed by
    /// `placement`, with one LC per slot of `nodes` (every slot is emptied).
    #[must_use]
    pub fn new(config: Config, placement: P, mut nodes: S) -> Self {
        const {
            assert!(
                M <= MAX_MOVES,
                "a JOB_STATE naming M migrating processes must fit a MessageBuf"
            )
        };
        nodes.as_mut().fill(NodeSlot::EMPTY);
        Self {
            config,
            placement,
            nodes,
            initialized: false,
            finishing: false,
            next_seq: Some(0),
            next_handle: Some(1),
            op: None,
            quiesce: None,
            fin: None,
            plan: MigrationPlan::new(),
            migrating: heapless::Vec::new(),
            restart_handle: heapless::String::new(),
            queue: heapless::Deque::new(),
        }
    }

    /// The storage back (the coordinator's state is dropped with it).
    pub fn into_storage(self) -> S {
        self.nodes
    }

    /// How many LCs the job has: the storage's length.
    pub fn lc_count(&self) -> usize {
        self.nodes.as_ref().len()
    }

    /// Each LC's result in the current or last operation, by index: its
    /// checkpoint-step state (FINISHED_LOCAL, INC_PREPED, ERROR), ERROR if it
    /// missed a deadline or failed to recover; NONE where the LCs took no
    /// part (restart) or before the first operation.
    pub fn lc_results(&self) -> impl Iterator<Item = CkptState> + '_ {
        self.nodes.as_ref().iter().map(|n| n.result)
    }

    /// The handle of the current (or last) RESTART, as requested.
    pub fn restart_handle(&self) -> &str {
        &self.restart_handle
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the ranks run.
    pub fn placement(&self) -> &P {
        &self.placement
    }

    /// Where the ranks run, for the runtime to update (after a migration).
    pub fn placement_mut(&mut self) -> &mut P {
        &mut self.placement
    }

    /// Whether INIT was received (and FIN not yet acknowledged).
    pub fn is_checkpointable(&self) -> bool {
        self.initialized && !self.finishing
    }

    /// Whether an operation runs (a quiesced job has none running).
    pub fn is_busy(&self) -> bool {
        self.op.is_some()
    }

    /// Whether the job is quiesced.
    pub fn is_quiesced(&self) -> bool {
        self.quiesce.is_some()
    }

    /// Whether FIN was acknowledged.
    pub fn is_finished(&self) -> bool {
        self.finishing
    }

    /// The sequence number the next snapshot gets.
    pub fn next_seq(&self) -> Option<u32> {
        self.next_seq
    }

    /// The plan of the current (or last) migration.
    pub fn migration_plan(&self) -> &MigrationPlan<M> {
        &self.plan
    }

    /// The global snapshot reference for sequence number `seq`.
    pub fn reference(&self, seq: u32) -> Reference {
        let mut r = Reference::new();
        // 22 + 10 + 1 + 10 bytes at most: always fits.
        if write!(r, "snapc_global_snapshot_{}_{}", self.config.jobid, seq).is_err() {
            warn!("global: reference for seq {} truncated", seq);
        }
        r
    }

    // ----- outputs -----

    /// The next action to carry out, `None` when there is nothing to do. A
    /// message to send is encoded into `out` ([`Action::SendToLcs`] and
    /// [`Action::SendToRank`] give its length).
    #[must_use = "the actions must be carried out"]
    pub fn poll_action(&mut self, out: &mut MessageBuf) -> Option<Action> {
        while let Some(queued) = self.queue.pop_front() {
            let jobid = self.config.jobid;
            let encoded = match queued {
                Out::JobRunning {
                    handle,
                    options,
                    migrating,
                } => JobState {
                    jobid,
                    state: StateCode::plain(CkptState::Running),
                    detail: Some(JobDetail {
                        handle,
                        options,
                        migrating: migrating.then_some(List::Items(&self.migrating)),
                    }),
                }
                .emit(out)
                .map(|len| Action::SendToLcs { len }),
                Out::JobQuick(state) => JobState {
                    jobid,
                    state: StateCode::plain(state),
                    detail: None,
                }
                .emit(out)
                .map(|len| Action::SendToLcs { len }),
                Out::ToRank { vpid, msg } => {
                    msg.emit(out).map(|len| Action::SendToRank { vpid, len })
                }
                Out::Action(a) => Ok(a),
            };
            match encoded {
                Ok(action) => return Some(action),
                // M <= MAX_MOVES makes every message fit; not reached.
                Err(_) => warn!("global: a message could not be encoded"),
            }
        }
        None
    }

    /// The next deadline; `None` while nothing waits with one.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let op = self.op.as_ref().map(|op| op.deadline);
        let fin = self.fin.map(|f| f.deadline);
        match (op, fin) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- inputs -----

    /// Time passed: ends the waits whose deadline is `now` or earlier.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    /// The bytes of a REQUEST_OP from rank `from` (tag SNAPC_FULL), decoded
    /// here. Undecodable bytes are refused; if their op_event can still be
    /// read and carries an op_state, the rank is answered -1.
    pub fn handle_rank_message(
        &mut self,
        now: Instant,
        from: u32,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        match RequestOp::parse(bytes) {
            Ok(req) => self.request(now, from, &req),
            Err(e) => {
                self.expire(now);
                warn!("global: undecodable request from rank {}", from);
                let mut r = Reader::new(bytes);
                let event = r
                    .uint8("command")
                    .and_then(|_| r.uint32("jobid"))
                    .and_then(|_| r.int("op_event"))
                    .ok()
                    .and_then(OpEvent::from_code);
                if let Some(event) = event {
                    self.answer_failed(Requester::Rank(from), event);
                }
                Err(InputError::Decode(e))
            }
        }
    }

    fn request(&mut self, now: Instant, from: u32, req: &RequestOp<'_>) -> Result<(), InputError> {
        self.expire(now);
        let event = req.request.op_event();
        let who = Requester::Rank(from);
        debug!("global: request {} from rank {}", event.code(), from);
        if from >= self.config.nranks {
            return self.refuse(who, event, InputError::UnknownRank(from));
        }
        if req.jobid != self.config.jobid {
            return self.refuse(who, event, InputError::WrongJob(req.jobid));
        }
        match req.request {
            Request::Init => {
                self.initialized = true;
                Ok(())
            }
            Request::Fin => self.fin(now, from),
            Request::Checkpoint => self.start_checkpoint(now, who, JobOptions::default()),
            Request::Migrate(entries) => self.start_migration(now, who, entries),
            Request::Restart { seq_num, handle } => self.start_restart(now, who, seq_num, handle),
            Request::QuiesceStart => self.start_quiesce(now, who),
            Request::QuiesceCheckpoint => self.quiesce_checkpoint(now, who),
            Request::QuiesceEnd => self.end_quiesce(now, who),
            Request::None | Request::FinAck => {
                self.refuse(who, event, InputError::Unexpected(event))
            }
        }
    }

    /// The runtime's own command.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Result<(), InputError> {
        self.expire(now);
        let who = Requester::Runtime;
        match command {
            Command::Checkpoint { term, stop } => self.start_checkpoint(
                now,
                who,
                JobOptions {
                    term,
                    stop,
                    ..JobOptions::default()
                },
            ),
            Command::QuiesceStart => self.start_quiesce(now, who),
            Command::QuiesceEnd => self.end_quiesce(now, who),
        }
    }

    /// The bytes of an ORTED_STATE from LC `lc` (either form, either state
    /// encoding), decoded here.
    ///
    /// While collecting results, FINISHED_LOCAL, INC_PREPED, ERROR, NO_CKPT
    /// and NO_RESTART are results (the last three failures); while
    /// recovering, RECOVERED, ERROR, NO_CKPT and NO_RESTART are. Other
    /// states (progress, or a late report of an earlier step) and a second
    /// result from the same LC are taken and ignored.
    pub fn handle_lc_message(
        &mut self,
        now: Instant,
        lc: usize,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        self.expire(now);
        if lc >= self.lc_count() {
            return Err(InputError::UnknownLc(lc));
        }
        let msg = OrtedState::parse(bytes).map_err(|e| {
            warn!("global: undecodable message from LC {}", lc);
            InputError::Decode(e)
        })?;
        let state = msg.state.state;
        let Some(op) = self.op.as_ref() else {
            trace!("global: state {} from LC {} while idle", state.code(), lc);
            return Ok(());
        };
        let is_result = match op.step {
            Step::Collecting => matches!(
                state,
                CkptState::FinishedLocal
                    | CkptState::IncPreped
                    | CkptState::Error
                    | CkptState::NoCkpt
                    | CkptState::NoRestart
            ),
            Step::Recovering { .. } => matches!(
                state,
                CkptState::Recovered | CkptState::Error | CkptState::NoCkpt | CkptState::NoRestart
            ),
            Step::Migrating | Step::Restarting => false,
        };
        if !is_result {
            trace!("global: state {} from LC {} ignored", state.code(), lc);
            return Ok(());
        }
        debug!(
            "global: LC {} reported {} ({} us into the operation)",
            lc,
            state.code(),
            now.saturating_duration_since(op.started).as_micros()
        );
        match self.nodes.as_mut().get_mut(lc).map(|n| &mut n.report) {
            Some(slot @ None) => *slot = Some(state),
            Some(Some(_)) => {
                warn!("global: second report from LC {} ignored", lc);
                return Ok(());
            }
            None => return Err(InputError::UnknownLc(lc)),
        }
        self.progress(now);
        Ok(())
    }

    /// The runtime's report that the migration it was given is done.
    pub fn handle_migration_done(&mut self, now: Instant, ok: bool) -> Result<(), InputError> {
        self.runtime_report(now, Step::Migrating, ok)?;
        self.release(now, ok);
        Ok(())
    }

    /// The runtime's report that the restart it was given is done.
    pub fn handle_restart_done(&mut self, now: Instant, ok: bool) -> Result<(), InputError> {
        self.runtime_report(now, Step::Restarting, ok)?;
        self.finish(now, ok);
        Ok(())
    }

    /// Takes the runtime's report if the operation waits for it in `step`.
    fn runtime_report(&mut self, now: Instant, step: Step, ok: bool) -> Result<(), InputError> {
        self.expire(now);
        match self.op.as_mut() {
            Some(op) if op.step == step => {
                if !ok {
                    op.failure.get_or_insert(OperationFailure::Runtime);
                }
                Ok(())
            }
            _ => Err(InputError::NotWaiting),
        }
    }

    // ----- requests -----

    fn fin(&mut self, now: Instant, from: u32) -> Result<(), InputError> {
        if self.fin.is_some() {
            return Err(InputError::FinPending);
        }
        self.fin = Some(FinWait {
            vpid: from,
            started: now,
            deadline: now + self.config.deadlines.fin,
        });
        self.maybe_fin_ack(now);
        Ok(())
    }

    /// Refuses when a new operation may not start now.
    fn check_can_start(&self) -> Result<(), InputError> {
        if self.finishing {
            Err(InputError::Finishing)
        } else if !self.initialized {
            Err(InputError::NotInitialized)
        } else if self.op.is_some() || self.quiesce.is_some() {
            Err(InputError::Busy)
        } else {
            Ok(())
        }
    }

    fn take_seq(&mut self) -> Result<u32, InputError> {
        let seq = self.next_seq.ok_or(InputError::Exhausted)?;
        self.next_seq = seq.checked_add(1);
        Ok(seq)
    }

    fn take_handle(&mut self) -> Result<u32, InputError> {
        let handle = self.next_handle.ok_or(InputError::Exhausted)?;
        self.next_handle = handle.checked_add(1);
        Ok(handle)
    }

    /// Takes a sequence number and a handle, or neither.
    fn take_seq_and_handle(&mut self) -> Result<(u32, u32), InputError> {
        if self.next_seq.is_none() || self.next_handle.is_none() {
            return Err(InputError::Exhausted);
        }
        Ok((self.take_seq()?, self.take_handle()?))
    }

    fn start_checkpoint(
        &mut self,
        now: Instant,
        who: Requester,
        options: JobOptions,
    ) -> Result<(), InputError> {
        let event = OpEvent::Checkpoint;
        if let Err(e) = self.check_can_start() {
            return self.refuse(who, event, e);
        }
        let (seq, handle) = match self.take_seq_and_handle() {
            Ok(v) => v,
            Err(e) => return self.refuse(who, event, e),
        };
        self.begin(
            now,
            OpKind::Checkpoint,
            who,
            Some(seq),
            handle,
            options,
            false,
        );
        Ok(())
    }

    fn start_migration(
        &mut self,
        now: Instant,
        who: Requester,
        entries: List<'_, crate::wire::MigrateEntry<'_>>,
    ) -> Result<(), InputError> {
        let event = OpEvent::Migrate;
        if let Err(e) = self.check_can_start() {
            return self.refuse(who, event, e);
        }
        if let Err(e) = migrate::plan(entries, self.config.nranks, &self.placement, &mut self.plan)
        {
            warn!("global: migration refused");
            return self.refuse(who, event, e.into());
        }
        let (seq, handle) = match self.take_seq_and_handle() {
            Ok(v) => v,
            Err(e) => return self.refuse(who, event, e),
        };
        self.migrating.clear();
        for m in self.plan.moves() {
            // The plan holds at most M moves, like `migrating`.
            if self
                .migrating
                .push(ProcessName {
                    jobid: self.config.jobid,
                    vpid: m.vpid,
                })
                .is_err()
            {
                warn!("global: migrating list full");
            }
        }
        self.begin(
            now,
            OpKind::Migrate,
            who,
            Some(seq),
            handle,
            JobOptions::default(),
            true,
        );
        Ok(())
    }

    fn start_restart(
        &mut self,
        now: Instant,
        who: Requester,
        seq_num: i32,
        handle: Option<&str>,
    ) -> Result<(), InputError> {
        let event = OpEvent::Restart;
        if self.op.is_some() || self.quiesce.is_some() {
            return self.refuse(who, event, InputError::Busy);
        }
        if self.finishing {
            return self.refuse(who, event, InputError::Finishing);
        }
        let handle = match handle {
            Some(h) if !h.is_empty() && seq_num >= 0 => h,
            _ => return self.refuse(who, event, InputError::BadRestart),
        };
        self.restart_handle.clear();
        if self.restart_handle.push_str(handle).is_err() {
            self.restart_handle.clear();
            return self.refuse(who, event, InputError::BadRestart);
        }
        self.reset_nodes();
        let mut op = Op::new(OpKind::Restart, who, now, Step::Restarting);
        op.restart_seq = seq_num;
        op.deadline = now + self.config.deadlines.runtime;
        self.op = Some(op);
        self.act(Action::Restart { seq_num });
        Ok(())
    }

    fn start_quiesce(&mut self, now: Instant, who: Requester) -> Result<(), InputError> {
        let event = OpEvent::QuiesceStart;
        if let Err(e) = self.check_can_start() {
            return self.refuse(who, event, e);
        }
        let handle = match self.take_handle() {
            Ok(h) => h,
            Err(e) => return self.refuse(who, event, e),
        };
        let options = JobOptions {
            inc_prep_only: true,
            ..JobOptions::default()
        };
        self.begin(now, OpKind::QuiesceStart, who, None, handle, options, false);
        Ok(())
    }

    fn quiesce_checkpoint(&mut self, now: Instant, who: Requester) -> Result<(), InputError> {
        let event = OpEvent::QuiesceCheckpoint;
        let Some(q) = self.quiesce else {
            return self.refuse(who, event, InputError::NotQuiesced);
        };
        if self.op.is_some() {
            return self.refuse(who, event, InputError::Busy);
        }
        let seq = match self.take_seq() {
            Ok(s) => s,
            Err(e) => return self.refuse(who, event, e),
        };
        let reference = self.reference(seq);
        self.act(Action::Established(Snapshot {
            seq,
            handle: q.handle,
            reference: reference.clone(),
        }));
        self.act(Action::Finished(Report {
            kind: OpKind::QuiesceCheckpoint,
            requester: who,
            ok: true,
            seq: Some(i64::from(seq)),
            handle: q.handle,
            reference: Some(reference),
            failure: None,
            started: now,
            duration: Duration::ZERO,
        }));
        Ok(())
    }

    fn end_quiesce(&mut self, now: Instant, who: Requester) -> Result<(), InputError> {
        let event = OpEvent::QuiesceEnd;
        if self.op.is_some() {
            return self.refuse(who, event, InputError::Busy);
        }
        let Some(q) = self.quiesce.take() else {
            return self.refuse(who, event, InputError::NotQuiesced);
        };
        let options = JobOptions {
            inc_recover_only: true,
            ..JobOptions::default()
        };
        self.begin(now, OpKind::QuiesceEnd, who, None, q.handle, options, false);
        Ok(())
    }

    /// Answers -1 where the wire carries an op_state, and returns `e`.
    fn refuse(&mut self, who: Requester, event: OpEvent, e: InputError) -> Result<(), InputError> {
        debug!("global: request {} refused", event.code());
        self.answer_failed(who, event);
        Err(e)
    }

    fn answer_failed(&mut self, who: Requester, event: OpEvent) {
        if let Requester::Rank(vpid) = who {
            if event.carries_op_state() {
                self.push(Out::ToRank {
                    vpid,
                    msg: FromGc::OpResponse(OpResponse {
                        op_event: event,
                        op_state: Some(OpResponse::FAILED),
                    }),
                });
            }
        }
    }

    // ----- the choreography -----

    /// Step 1: JOB_STATE RUNNING (long form) to every LC.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        now: Instant,
        kind: OpKind,
        who: Requester,
        seq: Option<u32>,
        handle: u32,
        options: JobOptions,
        migrating: bool,
    ) {
        self.reset_nodes();
        let mut op = Op::new(kind, who, now, Step::Collecting);
        op.seq = seq;
        op.reference = seq.map(|s| self.reference(s));
        op.handle = handle;
        op.options = options;
        op.deadline = now + self.config.deadlines.lc_report;
        debug!("global: operation starts, handle {}", handle);
        self.op = Some(op);
        self.push(Out::JobRunning {
            handle,
            options,
            migrating,
        });
        self.progress(now);
    }

    /// Moves on when every LC has reported in this step.
    fn progress(&mut self, now: Instant) {
        let Some(op) = self.op.as_ref() else {
            return;
        };
        if self.nodes.as_ref().iter().any(|n| n.report.is_none()) {
            return;
        }
        match op.step {
            Step::Collecting => self.decide(now),
            Step::Recovering { ok } => self.recovered(now, ok),
            Step::Migrating | Step::Restarting => {}
        }
    }

    /// Step 3: every LC has a result (or missed its deadline).
    fn decide(&mut self, now: Instant) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        let expected = if op.options.inc_prep_only {
            CkptState::IncPreped
        } else {
            CkptState::FinishedLocal
        };
        for (lc, node) in self.nodes.as_mut().iter_mut().enumerate() {
            let state = node.report.unwrap_or(CkptState::Error);
            node.result = state;
            if state != expected && op.failure.is_none() {
                op.failure = Some(OperationFailure::Lc { lc, state });
            }
        }
        let ok = op.failure.is_none();
        if ok && op.options.inc_prep_only {
            self.push(Out::JobQuick(CkptState::IncPreped));
            if let Some(op) = self.op.as_ref() {
                self.quiesce = Some(Quiesce { handle: op.handle });
            }
            self.finish(now, true);
        } else if ok && op.kind == OpKind::Migrate {
            op.step = Step::Migrating;
            op.deadline = now + self.config.deadlines.runtime;
            let (seq, handle) = (op.seq.unwrap_or(0), op.handle);
            self.act(Action::Migrate { seq, handle });
        } else {
            self.release(now, ok);
        }
    }

    /// Step 4: ESTABLISHED or ERROR to every LC; collect RECOVERED.
    fn release(&mut self, now: Instant, ok: bool) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        op.step = Step::Recovering { ok };
        for node in self.nodes.as_mut() {
            node.report = None;
        }
        op.deadline = now + self.config.deadlines.lc_report;
        self.push(Out::JobQuick(if ok {
            CkptState::Established
        } else {
            CkptState::Error
        }));
        self.progress(now);
    }

    /// Step 5: every LC recovered (or missed its deadline).
    fn recovered(&mut self, now: Instant, ok: bool) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        let mut all = true;
        for (lc, node) in self.nodes.as_mut().iter_mut().enumerate() {
            let state = node.report.unwrap_or(CkptState::Error);
            if state != CkptState::Recovered {
                all = false;
                node.result = CkptState::Error;
                op.failure.get_or_insert(OperationFailure::Lc { lc, state });
            }
        }
        self.finish(now, ok && all);
    }

    /// Ends the running operation: snapshot, answer, report, then a waiting FIN.
    fn finish(&mut self, now: Instant, ok: bool) {
        let Some(op) = self.op.take() else {
            return;
        };
        if ok {
            if let (Some(seq), Some(reference)) = (op.seq, op.reference.clone()) {
                self.act(Action::Established(Snapshot {
                    seq,
                    handle: op.handle,
                    reference,
                }));
            }
        }
        let event = match op.kind {
            OpKind::Checkpoint => Some(OpEvent::Checkpoint),
            OpKind::Migrate => Some(OpEvent::Migrate),
            _ => None,
        };
        if let (Requester::Rank(vpid), Some(op_event)) = (op.requester, event) {
            self.push(Out::ToRank {
                vpid,
                msg: FromGc::OpResponse(OpResponse {
                    op_event,
                    op_state: Some(if ok {
                        OpResponse::DONE
                    } else {
                        OpResponse::FAILED
                    }),
                }),
            });
        }
        let seq = match op.kind {
            OpKind::Restart => Some(i64::from(op.restart_seq)),
            _ => op.seq.map(i64::from),
        };
        debug!("global: operation ends, ok {}", ok);
        self.act(Action::Finished(Report {
            kind: op.kind,
            requester: op.requester,
            ok,
            seq,
            handle: op.handle,
            reference: op.reference,
            failure: op.failure,
            started: op.started,
            duration: now - op.started,
        }));
        self.maybe_fin_ack(now);
    }

    /// FIN_ACK once nothing runs.
    fn maybe_fin_ack(&mut self, now: Instant) {
        let Some(fin) = self.fin else {
            return;
        };
        if self.op.is_some() || self.quiesce.is_some() {
            return;
        }
        self.fin = None;
        self.finishing = true;
        self.push(Out::ToRank {
            vpid: fin.vpid,
            msg: FromGc::FinAck,
        });
        self.act(Action::Finished(fin_report(fin, now, true)));
    }

    /// Applies every deadline that passed by `now`.
    fn expire(&mut self, now: Instant) {
        // Each round moves an operation one step on (collect, migrate,
        // recover, end), so four rounds end any chain of zero deadlines.
        for _ in 0..4 {
            let Some(op) = self.op.as_mut() else {
                break;
            };
            if op.deadline > now {
                break;
            }
            match op.step {
                Step::Collecting | Step::Recovering { .. } => {
                    for (lc, node) in self.nodes.as_mut().iter_mut().enumerate() {
                        if node.report.is_none() {
                            warn!("global: LC {} missed its deadline", lc);
                            op.failure.get_or_insert(OperationFailure::LcTimeout { lc });
                            node.report = Some(CkptState::Error);
                        }
                    }
                    self.progress(now);
                }
                Step::Migrating => {
                    warn!("global: no migration report in time");
                    op.failure.get_or_insert(OperationFailure::RuntimeTimeout);
                    self.release(now, false);
                }
                Step::Restarting => {
                    warn!("global: no restart report in time");
                    op.failure.get_or_insert(OperationFailure::RuntimeTimeout);
                    self.finish(now, false);
                }
            }
        }
        if let Some(fin) = self.fin {
            if fin.deadline <= now {
                warn!("global: FIN waited too long");
                self.fin = None;
                self.act(Action::Finished(fin_report(fin, now, false)));
            }
        }
    }

    /// A new operation: no LC has reported or has a result yet.
    fn reset_nodes(&mut self) {
        self.nodes.as_mut().fill(NodeSlot::EMPTY);
    }

    fn push(&mut self, out: Out) {
        if self.queue.push_back(out).is_err() {
            warn!("global: action queue full, action dropped");
        }
    }

    /// Queues an action that carries no message.
    fn act(&mut self, action: Action) {
        self.push(Out::Action(action));
    }
}

impl Op {
    fn new(kind: OpKind, requester: Requester, now: Instant, step: Step) -> Self {
        Self {
            kind,
            requester,
            started: now,
            seq: None,
            restart_seq: 0,
            handle: 0,
            reference: None,
            options: JobOptions::default(),
            step,
            deadline: now,
            failure: None,
        }
    }
}

fn fin_report(fin: FinWait, now: Instant, ok: bool) -> Report {
    Report {
        kind: OpKind::Fin,
        requester: Requester::Rank(fin.vpid),
        ok,
        seq: None,
        handle: 0,
        reference: None,
        failure: (!ok).then_some(OperationFailure::FinTimeout),
        started: fin.started,
        duration: now - fin.started,
    }
}
