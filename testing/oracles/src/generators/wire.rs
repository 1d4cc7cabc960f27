//! The owned form of every coordinator message, from which the borrowed
//! wire value is built: list items in a `Vec`, strings borrowed from the
//! input. The fuzz targets and the property tests both build their
//! messages from it; its fields are the wire types themselves (their
//! `Arbitrary` comes from snapc-core's `arbitrary` feature), so a value the
//! protocol cannot carry is never built.

use arbitrary::{Arbitrary, Result, Unstructured};
use snapc_core::wire::message::MAX_HANDLE_LEN;
use snapc_core::wire::{
    ChannelNames, JobOptions, LocalFinish, LocalUpdate, MigrateEntry, OpEvent, OpResponse,
    OptionsFrame, OrtedState, ProcessName, StateCode, arb,
};

/// RESTART's snapshot handle: any text that field can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle<'a>(pub &'a str);

impl<'a> Arbitrary<'a> for Handle<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        arb::text(u, MAX_HANDLE_LEN).map(Self)
    }
}

/// JOB_STATE's long form: handle, options, migrating processes.
pub type LongForm = (u32, JobOptions, Option<Vec<ProcessName>>);

/// One message, owned.
#[derive(Debug, Clone, Arbitrary)]
pub enum Described<'a> {
    /// REQUEST_OP, any event; RESTART's and MIGRATE's arguments.
    Request {
        /// The job.
        jobid: u32,
        /// The request.
        event: OpEvent,
        /// RESTART's sequence number.
        seq: i32,
        /// RESTART's handle.
        handle: Option<Handle<'a>>,
        /// MIGRATE's table.
        entries: Vec<MigrateEntry<'a>>,
    },
    /// ORTED_STATE.
    Orted(OrtedState),
    /// The OP response (with event FIN_ACK it is FIN_ACK on the wire).
    Response(OpResponse),
    /// FIN_ACK.
    FinAck,
    /// JOB_STATE, quick or long.
    Job {
        /// The job.
        jobid: u32,
        /// Its state.
        state: StateCode,
        /// The long form.
        long: Option<LongForm>,
    },
    /// LOCAL_FINISH.
    Finish(LocalFinish),
    /// LOCAL_UPDATE.
    Update(LocalUpdate),
}

/// A FIFO options frame and a pair of FIFO names.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct DescribedFrames {
    /// The frame.
    pub frame: OptionsFrame,
    /// The names.
    pub names: ChannelNames,
}
