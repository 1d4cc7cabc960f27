//! Values of the wire types built from unstructured bytes (the `arbitrary`
//! feature), for fuzzing and property tests: every value built here is one
//! the protocol can carry, so it encodes, and decodes back equal.
//!
//! The layouts consume bytes in field order, one byte per enum (its index
//! modulo the number of values), so a stored fuzz input keeps meaning the
//! same value. Messages that carry lists (REQUEST_OP's MIGRATE table,
//! JOB_STATE's migrating processes) borrow their items; their owned form
//! (the items in a `Vec`) belongs to the caller.

use super::MAX_HOST_LEN;
use super::consts::{CkptResponse, CkptState, CrState, OpEvent};
use super::fifo::{Debugger, FifoOptions, OptionsFrame};
use super::message::{
    JobOptions, LocalFinish, LocalUpdate, MigrateEntry, OpResponse, OrtedState, ProcessName,
    StateCode,
};
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

impl<'a> Arbitrary<'a> for StateCode {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            state: CkptState::arbitrary(u)?,
            notify: bool::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for ProcessName {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            jobid: u32::arbitrary(u)?,
            vpid: u32::arbitrary(u)?,
        })
    }
}

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

impl<'a> Arbitrary<'a> for OrtedState {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            quick: bool::arbitrary(u)?,
            state: StateCode::arbitrary(u)?,
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

impl<'a> Arbitrary<'a> for JobOptions {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            term: bool::arbitrary(u)?,
            stop: bool::arbitrary(u)?,
            inc_prep_only: bool::arbitrary(u)?,
            inc_recover_only: bool::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for LocalFinish {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            cr_state: CrState::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for LocalUpdate {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            name: ProcessName::arbitrary(u)?,
            pid: i32::arbitrary(u)?,
            debug: Option::<bool>::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Debugger {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            attach: bool::arbitrary(u)?,
            detach: bool::arbitrary(u)?,
        })
    }
}

/// The eight words of the frame in order (the debugger's two among them),
/// then whether the debugger fields are carried.
impl<'a> Arbitrary<'a> for FifoOptions {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let [
            all_migrating,
            migrating,
            term,
            stop,
            inc_prep_only,
            inc_recover_only,
            attach,
            detach,
        ] = <[bool; 8]>::arbitrary(u)?;
        let debug = bool::arbitrary(u)?;
        Ok(Self {
            all_migrating,
            migrating,
            term,
            stop,
            inc_prep_only,
            inc_recover_only,
            debugger: debug.then_some(Debugger { attach, detach }),
        })
    }
}

impl<'a> Arbitrary<'a> for OptionsFrame {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self {
            options: FifoOptions::arbitrary(u)?,
            handle: u32::arbitrary(u)?,
        })
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
