//! The wire layer: DSS buffers, coordinator messages, FIFO frames and names
//! (docs/PROTOCOL.md §2, §4, §5, §6).
//!
//! Shape, after smoltcp's `wire`: each message is a plain value with `parse`
//! (borrowing strings from the input), `encode` into any [`Sink`], and the
//! derived `buffer_len` / `emit` / `emit_vec` of the [`Message`] trait, so the
//! encoded length and the encoded bytes come from one description.

#[cfg(feature = "arbitrary")]
pub mod arb;
pub mod consts;
pub mod dss;
mod error;
pub mod fifo;
pub mod io;
pub mod list;
pub mod message;
pub mod names;

pub use consts::{
    CkptResponse, CkptState, CrState, DssType, FullCmd, OpEvent, RequestStatus, SnapcCmd,
};
pub use dss::{Encoder, Reader, Sink};
pub use error::{DecodeError, EmitError, ErrorKind};
pub use fifo::{Debugger, FifoOptions, OptionsFrame};
pub use list::List;
pub use message::{
    FromGc, JobDetail, JobOptions, JobState, LocalFinish, LocalUpdate, Message, MigrateEntry,
    OpResponse, OrtedState, ProcessName, Request, RequestOp, StateCode, ToDaemon, ToGc,
};
pub use names::{ChannelNames, FifoKind, FifoName};

/// The longest host name the protocol carries, including its NUL
/// (Open MPI's `OPAL_MAX_PROCESSOR_NAME`).
pub const MAX_HOST_LEN: usize = 256;
