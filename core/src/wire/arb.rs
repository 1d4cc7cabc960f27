//! Values of the wire types built from unstructured bytes (the `arbitrary`
//! feature), for fuzzing and property tests: every value built here is one
//! the protocol can carry, so it encodes, and decodes back equal.
//!
//! Plain structs derive `Arbitrary` where they are defined (their fields in
//! order); here are the values with rules: the enums (one byte each, the
//! index modulo the number of values, so a stored fuzz input keeps meaning
//! the same value), the OP response (`op_state` only where the event
//! carries one), strings (no NUL, within their field), the FIFO options
//! (the frame's eight words, then whether the debugger's two are carried)
//! and FIFO names (C `int` pids and counters). Messages that carry lists (REQUEST_OP's MIGRATE table,
//! JOB_STATE's migrating processes) borrow their items; their owned form
//! (the items in a `Vec`) belongs to the caller.

use super::MAX_HOST_LEN;
use super::consts::{CkptResponse, CkptState, CrState, OpEvent};
use super::fifo::FifoOptions;
use super::message::{MigrateEntry, OpResponse};
use super::names::ChannelNames;
use arbitrary::{Arbitrary, Result, Unstructured};

/// One of `all`, by one byte modulo its length.
fn pick<T: Copy>(u: &mut Unstructured<'_>, all: &[T]) -> Result<T> {
    let i = usize::from(u8::arbitrary(u)?);
    all.get(i % all.len().max(1))
        .copied()
        .ok_or(arbitrary::Error::EmptyChoose)
}

/// A string a field of `max` bytes (its NUL included) can carry: the text
/// up to its first NUL, cut to fit on a character boundary.
pub fn text<'a>(u: &mut Unstructured<'a>, max: usize) -> Result<&'a str> {
    let s = <&'a str>::arbitrary(u)?;
    let s = s.split('\0').next().unwrap_or("");
    let mut end = s.len().min(max.saturating_sub(1));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(s.get(..end).unwrap_or(""))
}

/// An optional [`text`].
pub fn optional_text<'a>(u: &mut Unstructured<'a>, max: usize) -> Result<Option<&'a str>> {
    Ok(if bool::arbitrary(u)? {
        Some(text(u, max)?)
    } else {
        None
    })
}

macro_rules! by_index {
    ($($t:ty),+) => {$(
        impl<'a> Arbitrary<'a> for $t {
            fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
                pick(u, Self::ALL)
            }
            fn size_hint(_: usize) -> (usize, Option<usize>) {
                (1, Some(1))
            }
        }
    )+};
}

by_index!(CkptResponse, CkptState, CrState, OpEvent);

impl<'a> Arbitrary<'a> for MigrateEntry<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            vpid: i32::arbitrary(u)?,
            host: optional_text(u, MAX_HOST_LEN)?,
            vpid_pref: i32::arbitrary(u)?,
            off_node: bool::arbitrary(u)?,
        })
    }
}

/// The event, then an outcome that is kept only where the event carries one.
impl<'a> Arbitrary<'a> for OpResponse {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let op_event = OpEvent::arbitrary(u)?;
        let state = i32::arbitrary(u)?;
        Ok(Self {
            op_event,
            op_state: op_event.carries_op_state().then_some(state),
        })
    }
}

/// The eight words of the frame in order (the debugger's two among them),
/// then whether the debugger fields are carried.
impl<'a> Arbitrary<'a> for FifoOptions {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let words = <[bool; 8]>::arbitrary(u)?;
        Ok(Self::from_words(words, bool::arbitrary(u)?))
    }
}

/// Names exist for C `int` pids above 0 and counters from 0.
impl<'a> Arbitrary<'a> for ChannelNames {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        const INT_MAX: u32 = i32::MAX as u32;
        Ok(Self {
            pid: u32::arbitrary(u)? % INT_MAX + 1,
            n: u32::arbitrary(u)? % (INT_MAX + 1),
        })
    }
}
