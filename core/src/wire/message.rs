//! The coordinator messages of docs/PROTOCOL.md §5, one type each, and the three
//! channels that carry them.
//!
//! | channel | messages |
//! |---|---|
//! | [`ToGc`] | [`RequestOp`], [`OrtedState`] |
//! | [`FromGc`] | [`OpResponse`], FIN_ACK, [`JobState`] |
//! | [`ToDaemon`] | [`LocalFinish`], [`LocalUpdate`] |
//!
//! A command byte decides the message within a channel (REQUEST_OP's command
//! 8 means a request on the way to the global coordinator and an answer on the
//! way back, hence the channels).

use super::MAX_HOST_LEN;
use super::consts::{CkptState, CrState, FullCmd, NOTIFY_BASE, OpEvent, SnapcCmd};
use super::dss::{Counter, Encoder, Failure, Measure, Reader, Rejected, Sink, SliceSink};
use super::error::{DecodeError, EmitError, ErrorKind};
use super::list::{Item, List};

/// The longest global snapshot handle accepted, including its NUL (`PATH_MAX`).
pub const MAX_HANDLE_LEN: usize = 4096;

/// A message with one DSS layout: parse, encode, and what follows from those.
pub trait Message<'a>: Sized {
    /// Decodes a whole buffer; trailing bytes are an error.
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError>;

    /// Writes the message into `e`.
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError>;

    /// The encoded length in bytes.
    #[inline]
    fn buffer_len(&self) -> usize {
        let mut e = Encoder::new(Counter(0));
        // An unencodable value is reported by `emit`; its length is moot.
        let _ = self.encode(&mut e);
        e.into_inner().0
    }

    /// Writes the message at the start of `buf`; returns the length written.
    /// On [`EmitError::TooSmall`] the buffer's content is unspecified.
    #[inline]
    fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        emit_here(self, buf)
    }

    /// Appends the message to `out`; on error `out` is left as it was.
    fn emit_vec<const N: usize>(&self, out: &mut heapless::Vec<u8, N>) -> Result<(), EmitError> {
        let needed = out.len().saturating_add(self.buffer_len());
        if needed > N {
            return Err(EmitError::TooSmall {
                needed,
                available: N,
            });
        }
        let before = out.len();
        let result = self.encode(&mut Encoder::new(&mut *out));
        if result.is_err() {
            out.truncate(before);
        }
        result
    }
}

/// A message's layout after its command byte, decoded with errors of type
/// `E`.
///
/// [`Message::parse`] decodes in two passes of this one description (see
/// [`Failure`]): first with [`Rejected`], which costs nothing to build or
/// move, and only if that fails again with [`DecodeError`] to name the field
/// and offset. A channel's parse picks the kind by its command byte first,
/// so that each kind's first pass is short and straight.
trait Decode<'a>: Sized {
    /// Everything after the command byte `cmd`; the caller rejects trailing bytes.
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E>;
}

/// Both passes over `bytes`, the first with `body` (`T`'s or one of its kinds').
#[inline(always)]
fn two_pass<'a, T: Decode<'a>>(
    bytes: &'a [u8],
    body: impl FnOnce(u8, &mut Reader<'a, Rejected>) -> Result<T, Rejected>,
) -> Result<T, DecodeError> {
    match parse_whole(bytes, body) {
        Ok(value) => Ok(value),
        Err(Rejected) => explain(bytes),
    }
}

/// [`two_pass`] in a function of its own: a channel decodes its long kinds
/// through it, so that the short ones need no registers saved.
#[inline(never)]
fn two_pass_apart<'a, T: Decode<'a>>(
    bytes: &'a [u8],
    body: impl FnOnce(u8, &mut Reader<'a, Rejected>) -> Result<T, Rejected>,
) -> Result<T, DecodeError> {
    two_pass(bytes, body)
}

/// Decodes the long, rarer part of a message in a function of its own on
/// the first pass, so that the common path stays small (no registers to
/// save, no result to merge). The part gets a reader of its own over the rest
/// of the input: a reader whose address is taken would live in memory on
/// every path, and offsets from 0 keep its bounds checks constant. The
/// second pass reads in place, so that its errors name absolute offsets.
#[inline(always)]
fn apart<'a, T, E: Failure>(
    r: &mut Reader<'a, E>,
    part: impl FnOnce(&mut Reader<'a, E>) -> Result<T, E>,
) -> Result<T, E> {
    #[inline(never)]
    fn outlined<'a, T, E: Failure>(
        rest: &'a [u8],
        part: impl FnOnce(&mut Reader<'a, E>) -> Result<T, E>,
    ) -> Result<(T, usize), E> {
        let mut r = Reader::start(rest);
        let value = part(&mut r)?;
        Ok((value, r.position()))
    }
    if E::BARE.is_none() {
        return part(r);
    }
    let (value, used) = outlined(r.rest(), part)?;
    r.skip(used);
    Ok(value)
}

/// The second pass: the same layout, with errors that say what and where.
#[cold]
#[inline(never)]
fn explain<'a, T: Decode<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    parse_whole(bytes, T::body)
}

/// The command byte when the input starts with a well-formed one; the kind's
/// own pass reads it again.
#[inline(always)]
fn peek_command(bytes: &[u8]) -> Option<u8> {
    let &[c0, c1, c2, c3, cmd] = bytes.first_chunk::<5>()?;
    (u32::from_be_bytes([c0, c1, c2, c3]) == 1).then_some(cmd)
}

/// Command bytes, for matching the byte itself.
const REQUEST_OP: u8 = FullCmd::RequestOp.code();
const JOB_STATE: u8 = FullCmd::UpdateJobState.code();
const JOB_STATE_QUICK: u8 = FullCmd::UpdateJobStateQuick.code();
const ORTED_STATE: u8 = FullCmd::UpdateOrtedState.code();
const ORTED_STATE_QUICK: u8 = FullCmd::UpdateOrtedStateQuick.code();
const LOCAL_FINISH: u8 = SnapcCmd::LocalFinish.code();
const LOCAL_UPDATE: u8 = SnapcCmd::LocalUpdate.code();

/// [`Message::emit`]: the message is measured first (a constant for most
/// messages once inlined), then written into a slice of exactly that
/// length, where the bounds checks at known offsets fold away.
#[inline(always)]
fn emit_here<'a, M: Message<'a>>(m: &M, buf: &mut [u8]) -> Result<usize, EmitError> {
    let mut measure = Encoder::new(Measure(0));
    // Whatever cannot be encoded is reported by the encoding below.
    let _ = m.encode(&mut measure);
    let len = measure.into_inner().0;
    let Some(out) = buf.get_mut(..len) else {
        return emit_too_small(m, buf);
    };
    let mut e = Encoder::new(SliceSink::new(out));
    m.encode(&mut e)?;
    Ok(e.into_inner().len())
}

/// [`emit_here`] in a function of its own: a channel emits its long, rarer
/// kinds through it, so that the short ones keep a small function.
#[inline(never)]
fn emit_apart<'a, M: Message<'a>>(m: &M, buf: &mut [u8]) -> Result<usize, EmitError> {
    emit_here(m, buf)
}

/// [`Message::emit`] into a buffer too small for the message: the error the
/// encoding meets first (a value it cannot encode before the end of the
/// buffer, else [`EmitError::TooSmall`] with the whole length).
#[cold]
#[inline(never)]
fn emit_too_small<'a, M: Message<'a>>(m: &M, buf: &mut [u8]) -> Result<usize, EmitError> {
    let available = buf.len();
    let mut e = Encoder::new(SliceSink::new(buf));
    match m.encode(&mut e) {
        Ok(()) => Ok(e.into_inner().len()),
        Err(EmitError::TooSmall { .. }) => Err(EmitError::TooSmall {
            needed: m.buffer_len(),
            available,
        }),
        Err(other) => Err(other),
    }
}

/// Reads the command byte, hands the rest to `body`, and rejects trailing bytes.
#[inline(always)]
fn parse_whole<'a, T, E: Failure>(
    bytes: &'a [u8],
    body: impl FnOnce(u8, &mut Reader<'a, E>) -> Result<T, E>,
) -> Result<T, E> {
    let mut r = Reader::start(bytes);
    let cmd = r.uint8("command")?;
    let value = body(cmd, &mut r)?;
    r.finish()?;
    Ok(value)
}

/// The error for a command byte at offset 4 (after its count).
#[inline]
fn command_error<E: Failure>(cmd: u8, known: bool) -> E {
    let kind = if known {
        ErrorKind::UnexpectedCommand(cmd)
    } else {
        ErrorKind::UnknownCommand(cmd)
    };
    E::new(4, "command", kind)
}

#[inline]
fn full_command_error<E: Failure>(cmd: u8) -> E {
    command_error(cmd, FullCmd::from_code(cmd).is_some())
}

#[inline]
fn expect_cmd<E: Failure>(cmd: u8, expected: FullCmd) -> Result<(), E> {
    if cmd == expected.code() {
        Ok(())
    } else {
        Err(full_command_error(cmd))
    }
}

#[inline]
fn op_event<E: Failure>(r: &mut Reader<'_, E>) -> Result<OpEvent, E> {
    let at = r.position();
    let code = r.int("op_event")?;
    OpEvent::from_code(code).ok_or_else(|| E::new(at, "op_event", ErrorKind::UnknownOpEvent(code)))
}

/// A process name: job id and rank (vpid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ProcessName {
    /// The job.
    pub jobid: u32,
    /// The rank within the job.
    pub vpid: u32,
}

impl<'a> Item<'a> for ProcessName {
    #[inline(always)]
    fn decode<E: Failure>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        r.name("process name")
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        e.name(*self)
    }
}

/// One migration preference of a MIGRATE request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MigrateEntry<'a> {
    /// The rank the preference is about.
    pub vpid: i32,
    /// Preferred host; `None` means any host.
    pub host: Option<&'a str>,
    /// Preferred peer rank to move next to.
    pub vpid_pref: i32,
    /// Whether the rank must leave its node.
    pub off_node: bool,
}

impl<'a> Item<'a> for MigrateEntry<'a> {
    #[inline(always)]
    fn decode<E: Failure>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        Ok(Self {
            vpid: r.int("migrate vpid")?,
            host: r.string("host preference", MAX_HOST_LEN)?,
            vpid_pref: r.int("vpid preference")?,
            off_node: r.int_flag("off_node")?,
        })
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        e.int(self.vpid)?;
        e.string(self.host, MAX_HOST_LEN, "host preference")?;
        e.int(self.vpid_pref)?;
        e.int(i32::from(self.off_node))
    }
}

/// What an application asks of the global coordinator, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request<'a> {
    /// NONE.
    None,
    /// INIT: the job is checkpointable (sent by rank 0 after a barrier).
    Init,
    /// FIN: the job is finishing; answered by FIN_ACK.
    Fin,
    /// FIN_ACK (not sent as a request by Open MPI, but carried).
    FinAck,
    /// CHECKPOINT the job.
    Checkpoint,
    /// RESTART the job from a snapshot.
    Restart {
        /// Snapshot sequence number.
        seq_num: i32,
        /// Global snapshot handle; `None` for the NULL string.
        handle: Option<&'a str>,
    },
    /// MIGRATE ranks according to the preferences.
    Migrate(List<'a, MigrateEntry<'a>>),
    /// QUIESCE_START.
    QuiesceStart,
    /// QUIESCE_CHECKPOINT.
    QuiesceCheckpoint,
    /// QUIESCE_END.
    QuiesceEnd,
}

impl Request<'_> {
    /// The request for an event that carries no arguments; `None` for
    /// RESTART and MIGRATE, which do.
    #[inline]
    pub const fn without_args(event: OpEvent) -> Option<Request<'static>> {
        Some(match event {
            OpEvent::None => Request::None,
            OpEvent::Init => Request::Init,
            OpEvent::Fin => Request::Fin,
            OpEvent::FinAck => Request::FinAck,
            OpEvent::Checkpoint => Request::Checkpoint,
            OpEvent::QuiesceStart => Request::QuiesceStart,
            OpEvent::QuiesceCheckpoint => Request::QuiesceCheckpoint,
            OpEvent::QuiesceEnd => Request::QuiesceEnd,
            OpEvent::Restart | OpEvent::Migrate => return None,
        })
    }

    /// The request's `op_event`.
    #[inline]
    pub const fn op_event(&self) -> OpEvent {
        match self {
            Self::None => OpEvent::None,
            Self::Init => OpEvent::Init,
            Self::Fin => OpEvent::Fin,
            Self::FinAck => OpEvent::FinAck,
            Self::Checkpoint => OpEvent::Checkpoint,
            Self::Restart { .. } => OpEvent::Restart,
            Self::Migrate(_) => OpEvent::Migrate,
            Self::QuiesceStart => OpEvent::QuiesceStart,
            Self::QuiesceCheckpoint => OpEvent::QuiesceCheckpoint,
            Self::QuiesceEnd => OpEvent::QuiesceEnd,
        }
    }
}

/// REQUEST_OP: an application request, from the leader rank to the global coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestOp<'a> {
    /// The requesting job.
    pub jobid: u32,
    /// The request.
    pub request: Request<'a>,
}

impl<'a> RequestOp<'a> {
    /// Whether `bytes` look like a request with arguments (RESTART,
    /// MIGRATE): the op_event's value follows the command (5 bytes), the
    /// jobid (8) and its own count and type byte (5). Only picks a path.
    #[inline(always)]
    fn has_args(bytes: &[u8]) -> bool {
        let event = bytes.get(18..).and_then(<[u8]>::first_chunk::<4>);
        matches!(event.map(|e| i32::from_be_bytes(*e)), Some(5 | 6))
    }

    /// The first pass of a request without arguments; one with arguments
    /// is left to the second pass (it is routed apart before).
    #[inline(always)]
    fn body_without_args<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        expect_cmd(cmd, FullCmd::RequestOp)?;
        Self::decode_body::<E, false>(r)
    }

    #[inline(always)]
    fn decode_body<E: Failure, const ARGS: bool>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        let jobid = r.uint32("jobid")?;
        let at = r.position();
        let request = match op_event(r)? {
            event @ (OpEvent::Restart | OpEvent::Migrate) if !ARGS => {
                return Err(E::new(
                    at,
                    "op_event",
                    ErrorKind::UnexpectedOpEvent(event.code()),
                ));
            }
            OpEvent::Restart => apart(r, |r| {
                Ok(Request::Restart {
                    seq_num: r.int("seq_num")?,
                    handle: r.string("global_handle", MAX_HANDLE_LEN)?,
                })
            })?,
            OpEvent::Migrate => apart(r, |r| {
                let at = r.position();
                let n = r.int("migrate count")?;
                let n = usize::try_from(n)
                    .map_err(|_| E::new(at, "migrate count", ErrorKind::NegativeCount(n)))?;
                Ok(Request::Migrate(List::decode(r, n)?))
            })?,
            event => Request::without_args(event).unwrap_or(Request::None),
        };
        Ok(Self { jobid, request })
    }
}

impl<'a> Decode<'a> for RequestOp<'a> {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        expect_cmd(cmd, FullCmd::RequestOp)?;
        Self::decode_body::<E, true>(r)
    }
}

impl<'a> Message<'a> for RequestOp<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if Self::has_args(bytes) {
            two_pass_apart(bytes, Self::body)
        } else {
            two_pass(bytes, Self::body_without_args)
        }
    }

    #[inline]
    fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self.request {
            Request::Restart { .. } | Request::Migrate(_) => emit_apart(self, buf),
            _ => emit_here(self, buf),
        }
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        e.uint8(FullCmd::RequestOp.code())?;
        e.uint32(self.jobid)?;
        e.int(self.request.op_event().code())?;
        match self.request {
            Request::Restart { seq_num, handle } => {
                e.int(seq_num)?;
                e.string(handle, MAX_HANDLE_LEN, "global_handle")
            }
            Request::Migrate(entries) => {
                let n = i32::try_from(entries.len())
                    .map_err(|_| EmitError::Invalid("migrate count"))?;
                e.int(n)?;
                entries.encode(e)
            }
            _ => Ok(()),
        }
    }
}

/// A job or daemon checkpoint state as carried in an `int`: plain, or in
/// the notification encoding (131072 + state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StateCode {
    /// The state.
    pub state: CkptState,
    /// Whether it was encoded as a notification.
    pub notify: bool,
}

impl StateCode {
    /// A plain state.
    pub const fn plain(state: CkptState) -> Self {
        Self {
            state,
            notify: false,
        }
    }

    /// The wire integer.
    #[inline]
    pub const fn code(self) -> i32 {
        if self.notify {
            NOTIFY_BASE + self.state.code()
        } else {
            self.state.code()
        }
    }

    /// The state for a wire integer, either encoding.
    #[inline(always)]
    pub const fn from_code(code: i32) -> Option<Self> {
        // Every plain code is below the base, so one conversion decides.
        let notify = code >= NOTIFY_BASE;
        let plain = if notify { code - NOTIFY_BASE } else { code };
        match CkptState::from_code(plain) {
            Some(state) => Some(Self { state, notify }),
            None => None,
        }
    }

    #[inline(always)]
    fn decode<E: Failure>(r: &mut Reader<'_, E>) -> Result<Self, E> {
        let at = r.position();
        let code = r.int("state")?;
        Self::from_code(code).ok_or_else(|| E::new(at, "state", ErrorKind::UnknownState(code)))
    }
}

impl From<CkptState> for StateCode {
    fn from(state: CkptState) -> Self {
        Self::plain(state)
    }
}

/// ORTED_STATE: a local coordinator's aggregated state, to the global coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OrtedState {
    /// The quick form (command 4) rather than the long one (3); same payload.
    pub quick: bool,
    /// The state.
    pub state: StateCode,
}

impl OrtedState {
    #[inline(always)]
    fn decode_body<E: Failure>(cmd: u8, r: &mut Reader<'_, E>) -> Result<Self, E> {
        let quick = match FullCmd::from_code(cmd) {
            Some(FullCmd::UpdateOrtedState) => false,
            Some(FullCmd::UpdateOrtedStateQuick) => true,
            _ => return Err(full_command_error(cmd)),
        };
        Ok(Self {
            quick,
            state: StateCode::decode(r)?,
        })
    }
}

impl<'a> Decode<'a> for OrtedState {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        Self::decode_body(cmd, r)
    }
}

impl<'a> Message<'a> for OrtedState {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        two_pass(bytes, Self::body)
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        let cmd = if self.quick {
            FullCmd::UpdateOrtedStateQuick
        } else {
            FullCmd::UpdateOrtedState
        };
        e.uint8(cmd.code())?;
        e.int(self.state.code())
    }
}

/// The OP response: the global coordinator's answer to a request.
///
/// `op_state` (0 done, -1 failed) is carried for CHECKPOINT and MIGRATE only.
/// An answer with `op_event` FIN_ACK is FIN_ACK; [`FromGc`] decodes it as
/// [`FromGc::FinAck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OpResponse {
    /// The request answered.
    pub op_event: OpEvent,
    /// Outcome, present exactly when `op_event` carries one.
    pub op_state: Option<i32>,
}

impl OpResponse {
    /// Outcome code for a completed operation.
    pub const DONE: i32 = 0;
    /// Outcome code for a failed operation.
    pub const FAILED: i32 = -1;

    /// FIN_ACK's bytes are an answer with this `op_event`.
    const FIN_ACK: Self = Self {
        op_event: OpEvent::FinAck,
        op_state: None,
    };

    #[inline(always)]
    fn decode_body<E: Failure>(r: &mut Reader<'_, E>) -> Result<Self, E> {
        let op_event = op_event(r)?;
        let op_state = if op_event.carries_op_state() {
            Some(r.int("op_state")?)
        } else {
            None
        };
        Ok(Self { op_event, op_state })
    }
}

impl<'a> Decode<'a> for OpResponse {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        expect_cmd(cmd, FullCmd::RequestOp)?;
        Self::decode_body(r)
    }
}

impl<'a> Message<'a> for OpResponse {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        two_pass(bytes, Self::body)
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        e.uint8(FullCmd::RequestOp.code())?;
        e.int(self.op_event.code())?;
        match (self.op_event.carries_op_state(), self.op_state) {
            (true, Some(state)) => e.int(state),
            (false, None) => Ok(()),
            _ => Err(EmitError::Invalid(
                "op_state is carried for CHECKPOINT and MIGRATE only",
            )),
        }
    }
}

/// The options of a checkpoint, as the global coordinator sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct JobOptions {
    /// Terminate after the checkpoint.
    pub term: bool,
    /// Stop (SIGSTOP) after the checkpoint.
    pub stop: bool,
    /// Prepare only (quiesce start).
    pub inc_prep_only: bool,
    /// Recover only (quiesce end).
    pub inc_recover_only: bool,
}

/// The long form of JOB_STATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct JobDetail<'a> {
    /// The sstore handle of the snapshot.
    pub handle: u32,
    /// The checkpoint's options.
    pub options: JobOptions,
    /// The migrating processes, when the job is migrating.
    pub migrating: Option<List<'a, ProcessName>>,
}

impl<'a> JobDetail<'a> {
    #[inline(always)]
    fn decode<E: Failure>(r: &mut Reader<'a, E>) -> Result<Self, E> {
        let handle = r.uint32("sstore handle")?;
        let options = JobOptions {
            term: r.bool("term")?,
            stop: r.bool("stop")?,
            inc_prep_only: r.bool("inc_prep_only")?,
            inc_recover_only: r.bool("inc_recover_only")?,
        };
        let migrating = if r.bool("migrating")? {
            let at = r.position();
            let n = r.size("process count")?;
            // A count beyond the address space cannot fit in the buffer either.
            let n = usize::try_from(n).map_err(|_| {
                E::new(
                    at,
                    "process count",
                    ErrorKind::Truncated {
                        needed: usize::MAX,
                        available: r.remaining(),
                    },
                )
            })?;
            Some(List::decode(r, n)?)
        } else {
            None
        };
        Ok(Self {
            handle,
            options,
            migrating,
        })
    }
}

/// JOB_STATE: the global coordinator's job state, to every local coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct JobState<'a> {
    /// The job.
    pub jobid: u32,
    /// Its checkpoint state.
    pub state: StateCode,
    /// The long form's fields; `None` for the quick form.
    pub detail: Option<JobDetail<'a>>,
}

impl<'a> JobState<'a> {
    #[inline(always)]
    fn decode_body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        let quick = match FullCmd::from_code(cmd) {
            Some(FullCmd::UpdateJobState) => false,
            Some(FullCmd::UpdateJobStateQuick) => true,
            _ => return Err(full_command_error(cmd)),
        };
        let jobid = r.uint32("jobid")?;
        let state = StateCode::decode(r)?;
        let detail = if quick {
            None
        } else {
            Some(apart(r, JobDetail::decode)?)
        };
        Ok(Self {
            jobid,
            state,
            detail,
        })
    }
}

impl<'a> Decode<'a> for JobState<'a> {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        Self::decode_body(cmd, r)
    }
}

impl<'a> Message<'a> for JobState<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        two_pass(bytes, Self::body)
    }

    #[inline]
    fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self.detail {
            Some(_) => emit_apart(self, buf),
            None => emit_here(self, buf),
        }
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        let cmd = if self.detail.is_some() {
            FullCmd::UpdateJobState
        } else {
            FullCmd::UpdateJobStateQuick
        };
        e.uint8(cmd.code())?;
        e.uint32(self.jobid)?;
        e.int(self.state.code())?;
        let Some(detail) = self.detail else {
            return Ok(());
        };
        e.uint32(detail.handle)?;
        let o = detail.options;
        for flag in [o.term, o.stop, o.inc_prep_only, o.inc_recover_only] {
            e.bool(flag)?;
        }
        e.bool(detail.migrating.is_some())?;
        if let Some(procs) = detail.migrating {
            e.size(procs.len() as u64)?;
            procs.encode(e)?;
        }
        Ok(())
    }
}

/// LOCAL_FINISH: an app coordinator ended its handshake with this state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LocalFinish {
    /// The process's final state.
    pub cr_state: CrState,
}

impl LocalFinish {
    #[inline(always)]
    fn decode_body<E: Failure>(r: &mut Reader<'_, E>) -> Result<Self, E> {
        let at = r.position();
        let code = r.int("cr_state")?;
        let cr_state = CrState::from_code(code)
            .ok_or_else(|| E::new(at, "cr_state", ErrorKind::UnknownCrState(code)))?;
        Ok(Self { cr_state })
    }
}

impl<'a> Decode<'a> for LocalFinish {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        expect_snapc_cmd(cmd, SnapcCmd::LocalFinish)?;
        Self::decode_body(r)
    }
}

impl<'a> Message<'a> for LocalFinish {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        two_pass(bytes, Self::body)
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        e.uint8(SnapcCmd::LocalFinish.code())?;
        e.int(self.cr_state.code())
    }
}

/// LOCAL_UPDATE: a restarted process reports its new pid to the node daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct LocalUpdate {
    /// The process.
    pub name: ProcessName,
    /// Its new pid.
    pub pid: i32,
    /// The checkpoint-debugging flag, carried only when both sides are built with it.
    pub debug: Option<bool>,
}

impl LocalUpdate {
    #[inline(always)]
    fn decode_body<E: Failure>(r: &mut Reader<'_, E>) -> Result<Self, E> {
        let name = r.name("process name")?;
        let pid = r.pid("pid")?;
        let debug = if r.remaining() > 0 {
            Some(r.bool("debug flag")?)
        } else {
            None
        };
        Ok(Self { name, pid, debug })
    }
}

impl<'a> Decode<'a> for LocalUpdate {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        expect_snapc_cmd(cmd, SnapcCmd::LocalUpdate)?;
        Self::decode_body(r)
    }
}

impl<'a> Message<'a> for LocalUpdate {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        two_pass(bytes, Self::body)
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        e.uint8(SnapcCmd::LocalUpdate.code())?;
        e.name(self.name)?;
        e.pid(self.pid)?;
        match self.debug {
            Some(flag) => e.bool(flag),
            None => Ok(()),
        }
    }
}

#[inline]
fn snapc_command_error<E: Failure>(cmd: u8) -> E {
    command_error(cmd, SnapcCmd::from_code(cmd).is_some())
}

#[inline]
fn expect_snapc_cmd<E: Failure>(cmd: u8, expected: SnapcCmd) -> Result<(), E> {
    if cmd == expected.code() {
        Ok(())
    } else {
        Err(snapc_command_error(cmd))
    }
}

/// What travels to the global coordinator (tag SNAPC_FULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ToGc<'a> {
    /// An application request.
    RequestOp(RequestOp<'a>),
    /// A local coordinator's state.
    OrtedState(OrtedState),
}

impl<'a> ToGc<'a> {
    #[inline(always)]
    fn request<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        RequestOp::body(cmd, r).map(Self::RequestOp)
    }

    #[inline(always)]
    fn request_without_args<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        RequestOp::body_without_args(cmd, r).map(Self::RequestOp)
    }

    #[inline(always)]
    fn orted_state<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        OrtedState::body(cmd, r).map(Self::OrtedState)
    }
}

impl<'a> Decode<'a> for ToGc<'a> {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        match FullCmd::from_code(cmd) {
            Some(FullCmd::RequestOp) => Self::request(cmd, r),
            Some(FullCmd::UpdateOrtedState | FullCmd::UpdateOrtedStateQuick) => {
                Self::orted_state(cmd, r)
            }
            _ => Err(full_command_error(cmd)),
        }
    }
}

impl<'a> Message<'a> for ToGc<'a> {
    #[inline]
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match peek_command(bytes) {
            Some(REQUEST_OP) if RequestOp::has_args(bytes) => two_pass_apart(bytes, Self::request),
            Some(REQUEST_OP) => two_pass(bytes, Self::request_without_args),
            Some(ORTED_STATE | ORTED_STATE_QUICK) => two_pass(bytes, Self::orted_state),
            _ => explain(bytes),
        }
    }

    #[inline]
    fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            Self::RequestOp(m) => m.emit(buf),
            Self::OrtedState(m) => m.emit(buf),
        }
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        match self {
            Self::RequestOp(m) => m.encode(e),
            Self::OrtedState(m) => m.encode(e),
        }
    }
}

/// What the global coordinator sends (tag SNAPC_FULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FromGc<'a> {
    /// The answer to a request (never with `op_event` FIN_ACK when decoded).
    OpResponse(OpResponse),
    /// FIN acknowledged: the application may finish.
    FinAck,
    /// A job state for the local coordinators.
    JobState(JobState<'a>),
}

impl<'a> FromGc<'a> {
    #[inline(always)]
    fn answer<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        Ok(match OpResponse::body(cmd, r)? {
            OpResponse {
                op_event: OpEvent::FinAck,
                ..
            } => Self::FinAck,
            response => Self::OpResponse(response),
        })
    }

    #[inline(always)]
    fn job_state<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        JobState::body(cmd, r).map(Self::JobState)
    }
}

impl<'a> Decode<'a> for FromGc<'a> {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        match FullCmd::from_code(cmd) {
            Some(FullCmd::RequestOp) => Self::answer(cmd, r),
            Some(FullCmd::UpdateJobState | FullCmd::UpdateJobStateQuick) => Self::job_state(cmd, r),
            _ => Err(full_command_error(cmd)),
        }
    }
}

impl<'a> Message<'a> for FromGc<'a> {
    #[inline]
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        // Answers first: they are the most frequent, and FIN_ACK the shortest.
        let cmd = peek_command(bytes);
        if cmd == Some(REQUEST_OP) {
            return two_pass(bytes, Self::answer);
        }
        match cmd {
            Some(JOB_STATE_QUICK) => two_pass(bytes, Self::job_state),
            Some(JOB_STATE) => two_pass_apart(bytes, Self::job_state),
            _ => explain(bytes),
        }
    }

    #[inline]
    fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            Self::OpResponse(m) => m.emit(buf),
            Self::FinAck => OpResponse::FIN_ACK.emit(buf),
            Self::JobState(m) => m.emit(buf),
        }
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        match self {
            Self::OpResponse(m) => m.encode(e),
            Self::FinAck => OpResponse::FIN_ACK.encode(e),
            Self::JobState(m) => m.encode(e),
        }
    }
}

/// What travels to the node daemon (tag SNAPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ToDaemon {
    /// A handshake ended.
    LocalFinish(LocalFinish),
    /// A restarted process's new pid.
    LocalUpdate(LocalUpdate),
}

impl ToDaemon {
    #[inline(always)]
    fn finish<E: Failure>(cmd: u8, r: &mut Reader<'_, E>) -> Result<Self, E> {
        LocalFinish::body(cmd, r).map(Self::LocalFinish)
    }

    #[inline(always)]
    fn update<E: Failure>(cmd: u8, r: &mut Reader<'_, E>) -> Result<Self, E> {
        LocalUpdate::body(cmd, r).map(Self::LocalUpdate)
    }
}

impl<'a> Decode<'a> for ToDaemon {
    #[inline(always)]
    fn body<E: Failure>(cmd: u8, r: &mut Reader<'a, E>) -> Result<Self, E> {
        match SnapcCmd::from_code(cmd) {
            Some(SnapcCmd::LocalFinish) => Self::finish(cmd, r),
            Some(SnapcCmd::LocalUpdate) => Self::update(cmd, r),
            _ => Err(snapc_command_error(cmd)),
        }
    }
}

impl<'a> Message<'a> for ToDaemon {
    #[inline]
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match peek_command(bytes) {
            Some(LOCAL_FINISH) => two_pass(bytes, Self::finish),
            Some(LOCAL_UPDATE) => two_pass(bytes, Self::update),
            _ => explain(bytes),
        }
    }

    #[inline]
    fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        match self {
            Self::LocalFinish(m) => m.emit(buf),
            Self::LocalUpdate(m) => m.emit(buf),
        }
    }

    #[inline(always)]
    fn encode<S: Sink>(&self, e: &mut Encoder<S>) -> Result<(), EmitError> {
        match self {
            Self::LocalFinish(m) => m.encode(e),
            Self::LocalUpdate(m) => m.encode(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dss::CarefulOnly;
    use core::fmt::Debug;

    type Buf = heapless::Vec<u8, 512>;

    const PROCS: [ProcessName; 3] = [
        ProcessName { jobid: 7, vpid: 0 },
        ProcessName { jobid: 7, vpid: 1 },
        ProcessName {
            jobid: u32::MAX,
            vpid: 0x8000_0000,
        },
    ];
    const ENTRIES: [MigrateEntry<'static>; 3] = [
        MigrateEntry {
            vpid: 0,
            host: Some("node-017"),
            vpid_pref: 1,
            off_node: false,
        },
        MigrateEntry {
            vpid: -1,
            host: None,
            vpid_pref: i32::MIN,
            off_node: true,
        },
        MigrateEntry {
            vpid: 2,
            host: Some("nœud-été"),
            vpid_pref: 0,
            off_node: false,
        },
    ];
    // Lengths around the word boundaries of the NUL search.
    const HANDLES: [&str; 9] = [
        "",
        "a",
        "seven77",
        "eight888",
        "nine99999",
        "sixteen_sixteen_",
        "seventeen_1234567",
        "thirty-two_bytes_of_handle_text!",
        "a handle of thirty-three bytes!!!",
    ];

    fn to_gc() -> impl Iterator<Item = ToGc<'static>> {
        let requests = [
            Request::None,
            Request::Init,
            Request::Fin,
            Request::FinAck,
            Request::Checkpoint,
            Request::QuiesceStart,
            Request::QuiesceCheckpoint,
            Request::QuiesceEnd,
            Request::Restart {
                seq_num: -3,
                handle: None,
            },
            Request::Migrate(List::Items(&ENTRIES)),
            Request::Migrate(List::Items(&[])),
        ]
        .into_iter()
        .chain(HANDLES.into_iter().map(|h| Request::Restart {
            seq_num: 3,
            handle: Some(h),
        }));
        requests
            .map(|request| {
                ToGc::RequestOp(RequestOp {
                    jobid: 0x1234_0001,
                    request,
                })
            })
            .chain([false, true].into_iter().map(|quick| {
                ToGc::OrtedState(OrtedState {
                    quick,
                    state: StateCode {
                        state: CkptState::FinishedLocal,
                        notify: quick,
                    },
                })
            }))
    }

    fn from_gc() -> impl Iterator<Item = FromGc<'static>> {
        let answers = OpEvent::ALL.iter().filter_map(|&op_event| {
            (op_event != OpEvent::FinAck).then_some(FromGc::OpResponse(OpResponse {
                op_event,
                op_state: op_event.carries_op_state().then_some(-1),
            }))
        });
        let detail = |migrating| {
            Some(JobDetail {
                handle: 9,
                options: JobOptions {
                    stop: true,
                    inc_recover_only: true,
                    ..JobOptions::default()
                },
                migrating,
            })
        };
        answers.chain([FromGc::FinAck]).chain(
            [None, detail(None), detail(Some(List::Items(&PROCS)))]
                .into_iter()
                .map(|detail| {
                    FromGc::JobState(JobState {
                        jobid: 5,
                        state: StateCode {
                            state: CkptState::Established,
                            notify: true,
                        },
                        detail,
                    })
                }),
        )
    }

    fn to_daemon() -> impl Iterator<Item = ToDaemon> {
        [None, Some(false), Some(true)]
            .into_iter()
            .map(|debug| {
                ToDaemon::LocalUpdate(LocalUpdate {
                    name: ProcessName { jobid: 3, vpid: 4 },
                    pid: -2,
                    debug,
                })
            })
            .chain(
                CrState::ALL
                    .iter()
                    .map(|&cr_state| ToDaemon::LocalFinish(LocalFinish { cr_state })),
            )
    }

    /// The first pass alone, the careful paths alone, and `parse`.
    fn passes<'a, T: Decode<'a> + Message<'a>>(
        bytes: &'a [u8],
    ) -> (Option<T>, Result<T, DecodeError>, Result<T, DecodeError>) {
        (
            parse_whole::<T, Rejected>(bytes, T::body).ok(),
            parse_whole::<T, CarefulOnly>(bytes, T::body).map_err(|e| e.0),
            T::parse(bytes),
        )
    }

    /// The fast paths accept exactly what the careful ones accept, with the
    /// same value, and `parse` answers as the careful paths do.
    fn agree<'a, T: Decode<'a> + Message<'a> + PartialEq + Debug>(bytes: &'a [u8]) {
        let (quick, careful, parsed) = passes::<T>(bytes);
        assert_eq!(quick.as_ref(), careful.as_ref().ok(), "{bytes:02x?}");
        assert_eq!(parsed, careful, "{bytes:02x?}");
    }

    /// `m` decodes on the first pass to itself, and every change of one
    /// byte, every prefix and an extra byte get the same answer from the
    /// fast and the careful paths.
    macro_rules! check {
        ($t:ty, $m:expr) => {{
            let m = $m;
            let mut bytes = Buf::new();
            m.emit_vec(&mut bytes).unwrap();
            let mut changed = Buf::new();
            for at in 0..bytes.len() {
                for flip in [0x01, 0x80, 0xff] {
                    changed.clone_from(&bytes);
                    changed[at] ^= flip;
                    agree::<$t>(&changed);
                }
                changed.clone_from(&bytes);
                changed[at] = 0;
                agree::<$t>(&changed);
                agree::<$t>(&bytes[..at]);
            }
            changed.clone_from(&bytes);
            changed.push(0).unwrap();
            agree::<$t>(&changed);
            let (quick, _, parsed) = passes::<$t>(&bytes);
            assert_eq!(quick.as_ref(), Some(&m), "the first pass takes {m:?}");
            assert_eq!(parsed.as_ref(), Ok(&m));
        }};
    }

    #[test]
    fn both_passes_accept_the_same_input() {
        for m in to_gc() {
            check!(ToGc<'_>, m);
            if let ToGc::RequestOp(r) = m {
                check!(RequestOp<'_>, r);
            }
            if let ToGc::OrtedState(o) = m {
                check!(OrtedState, o);
            }
        }
        for m in from_gc() {
            check!(FromGc<'_>, m);
            match m {
                FromGc::JobState(j) => check!(JobState<'_>, j),
                FromGc::OpResponse(o) => check!(OpResponse, o),
                FromGc::FinAck => {}
            }
        }
        for m in to_daemon() {
            check!(ToDaemon, m);
            match m {
                ToDaemon::LocalFinish(f) => check!(LocalFinish, f),
                ToDaemon::LocalUpdate(u) => check!(LocalUpdate, u),
            }
        }
    }

    #[test]
    fn emit_reports_what_it_met_first() {
        let invalid = ToGc::RequestOp(RequestOp {
            jobid: 1,
            request: Request::Restart {
                seq_num: 1,
                handle: Some("a\0b"),
            },
        });
        // Room up to the string: the value is reported, as it is met first.
        assert_eq!(
            invalid.emit(&mut [0; 40]),
            Err(EmitError::Invalid("global_handle"))
        );
        assert_eq!(
            invalid.emit(&mut [0; 31]),
            Err(EmitError::Invalid("global_handle"))
        );
        // No room for the fields before it: too small, with the length so far.
        assert_eq!(
            invalid.emit(&mut [0; 30]),
            Err(EmitError::TooSmall {
                needed: 31,
                available: 30
            })
        );
        let fine = ToGc::RequestOp(RequestOp {
            jobid: 1,
            request: Request::Restart {
                seq_num: 1,
                handle: Some("ab"),
            },
        });
        assert_eq!(fine.emit(&mut [0; 42]), Ok(42));
        assert_eq!(
            fine.emit(&mut [0; 41]),
            Err(EmitError::TooSmall {
                needed: 42,
                available: 41
            })
        );
    }
}
