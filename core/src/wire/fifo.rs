//! The frames of the FIFO handshake between an app coordinator and its local
//! coordinator (docs/PROTOCOL.md §4).
//!
//! Every field is a 4-byte C `int` (the sstore handle a `uint32`) in the
//! host's byte order: both ends run on the same node. Booleans are written 0
//! or 1 and read as "non-zero is true", as the protocol says.
//!
//! | step | direction | frame |
//! |---|---|---|
//! | 1 | LC to AC | [`OptionsFrame`] |
//! | 2 | AC to LC | [`response_frame`] / [`parse_response`] |
//! | 3 | LC to AC | [`GO_AHEAD`] / [`parse_go_ahead`] |
//! | 4, 5 | AC to LC | [`cr_state_frame`] / [`parse_cr_state`] |
//! | 6 | LC to AC | [`RELEASE`] / [`parse_release`] |

use super::consts::{CkptResponse, CrState};
use super::error::{DecodeError, EmitError, ErrorKind};

/// Length of every single-`int` frame.
pub const INT_FRAME_LEN: usize = 4;

/// The longest frame of the handshake: the options frame with the debugger
/// words.
pub const MAX_FRAME_LEN: usize = OptionsFrame::DEBUG_LEN;

/// The bytes of one frame, owned: what a local coordinator writes (the
/// options frame, the go-ahead, the release).
pub type FrameBytes = heapless::Vec<u8, MAX_FRAME_LEN>;

/// The debugger fields, present only when both sides are built with checkpoint debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Debugger {
    /// Attach a debugger before the checkpoint.
    pub attach: bool,
    /// Detach it afterwards.
    pub detach: bool,
}

/// The checkpoint options the local coordinator hands one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FifoOptions {
    /// The whole job is migrating.
    pub all_migrating: bool,
    /// This process is a migration target (it moves).
    pub migrating: bool,
    /// Terminate after the checkpoint.
    pub term: bool,
    /// Stop after the checkpoint.
    pub stop: bool,
    /// Prepare only (quiesce start).
    pub inc_prep_only: bool,
    /// Recover only (quiesce end).
    pub inc_recover_only: bool,
    /// The debugger fields, when the build carries them.
    pub debugger: Option<Debugger>,
}

impl FifoOptions {
    /// The options from the frame's eight words in order (the debugger's
    /// two last), the debugger's carried when `debug`.
    pub(crate) fn from_words(words: [bool; 8], debug: bool) -> Self {
        let [
            all_migrating,
            migrating,
            term,
            stop,
            inc_prep_only,
            inc_recover_only,
            attach,
            detach,
        ] = words;
        Self {
            all_migrating,
            migrating,
            term,
            stop,
            inc_prep_only,
            inc_recover_only,
            debugger: debug.then_some(Debugger { attach, detach }),
        }
    }
}

/// Step 1: the options followed by the sstore handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OptionsFrame {
    /// The options.
    pub options: FifoOptions,
    /// The sstore handle of the snapshot (0: none).
    pub handle: u32,
}

/// Field names in frame order, for error messages.
const OPTION_FIELDS: [&str; 8] = [
    "all_migrating",
    "migrating",
    "term",
    "stop",
    "inc_prep_only",
    "inc_recover_only",
    "attach_debugger",
    "detach_debugger",
];

impl OptionsFrame {
    /// Length without the debugger fields.
    pub const LEN: usize = 7 * INT_FRAME_LEN;
    /// Length with the debugger fields.
    pub const DEBUG_LEN: usize = 9 * INT_FRAME_LEN;

    /// The frame length for a build with or without checkpoint debugging.
    pub const fn frame_len(debug: bool) -> usize {
        if debug { Self::DEBUG_LEN } else { Self::LEN }
    }

    /// This frame's encoded length.
    pub const fn buffer_len(&self) -> usize {
        Self::frame_len(self.options.debugger.is_some())
    }

    /// Decodes a frame of exactly [`frame_len`](Self::frame_len)`(debug)` bytes.
    pub fn parse(bytes: &[u8], debug: bool) -> Result<Self, DecodeError> {
        let expected = Self::frame_len(debug);
        if bytes.len() != expected {
            return Err(DecodeError::new(
                0,
                "options frame",
                ErrorKind::Length {
                    expected,
                    found: bytes.len(),
                },
            ));
        }
        let mut flags = [false; 8];
        let mut words = bytes.chunks_exact(INT_FRAME_LEN);
        for flag in flags.iter_mut().take(expected / INT_FRAME_LEN - 1) {
            *flag = words.next().and_then(ne_i32).is_some_and(|v| v != 0);
        }
        let handle = words.next().and_then(ne_i32).unwrap_or_default() as u32;
        Ok(Self {
            options: FifoOptions::from_words(flags, debug),
            handle,
        })
    }

    /// Writes the frame at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let bytes = self.to_bytes();
        let available = buf.len();
        let dst = buf.get_mut(..bytes.len()).ok_or(EmitError::TooSmall {
            needed: bytes.len(),
            available,
        })?;
        dst.copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> FrameBytes {
        let o = self.options;
        let flags = [
            o.all_migrating,
            o.migrating,
            o.term,
            o.stop,
            o.inc_prep_only,
            o.inc_recover_only,
        ];
        let debugger = o.debugger.map(|d| [d.attach, d.detach]);
        let mut out = FrameBytes::new();
        // The capacity is the longest frame's: no word is ever left out.
        let words = flags
            .into_iter()
            .chain(debugger.into_iter().flatten())
            .map(i32::from)
            .chain(core::iter::once(self.handle as i32));
        for w in words {
            let _ = out.extend_from_slice(&w.to_ne_bytes());
        }
        out
    }

    /// The field names in frame order (for tools that print frames).
    pub const fn field_names() -> &'static [&'static str] {
        &OPTION_FIELDS
    }
}

fn ne_i32(bytes: &[u8]) -> Option<i32> {
    bytes.try_into().ok().map(i32::from_ne_bytes)
}

fn int_frame(bytes: &[u8], field: &'static str) -> Result<i32, DecodeError> {
    ne_i32(bytes).ok_or_else(|| {
        DecodeError::new(
            0,
            field,
            ErrorKind::Length {
                expected: INT_FRAME_LEN,
                found: bytes.len(),
            },
        )
    })
}

/// Step 2: the app coordinator's answer.
pub const fn response_frame(response: CkptResponse) -> [u8; 4] {
    response.code().to_ne_bytes()
}

/// An int frame holding one of an enum's wire codes.
fn code_frame<T>(
    bytes: &[u8],
    field: &'static str,
    from_code: fn(i32) -> Option<T>,
    unknown: fn(i32) -> ErrorKind,
) -> Result<T, DecodeError> {
    let v = int_frame(bytes, field)?;
    from_code(v).ok_or_else(|| DecodeError::new(0, field, unknown(v)))
}

/// Decodes step 2.
pub fn parse_response(bytes: &[u8]) -> Result<CkptResponse, DecodeError> {
    code_frame(
        bytes,
        "response",
        CkptResponse::from_code,
        ErrorKind::UnknownResponse,
    )
}

/// Step 3: the go-ahead, START echoed back.
pub const GO_AHEAD: [u8; 4] = response_frame(CkptResponse::Start);

/// Decodes step 3: anything but START is an error.
pub fn parse_go_ahead(bytes: &[u8]) -> Result<(), DecodeError> {
    match int_frame(bytes, "go-ahead")? {
        0 => Ok(()),
        v => Err(DecodeError::new(0, "go-ahead", ErrorKind::BadGoAhead(v))),
    }
}

/// Steps 4 and 5: a process state (RUNNING after prepare-only, else the final state).
pub const fn cr_state_frame(state: CrState) -> [u8; 4] {
    state.code().to_ne_bytes()
}

/// Decodes steps 4 and 5.
pub fn parse_cr_state(bytes: &[u8]) -> Result<CrState, DecodeError> {
    code_frame(
        bytes,
        "cr_state",
        CrState::from_code,
        ErrorKind::UnknownCrState,
    )
}

/// Step 6: the release.
pub const RELEASE: [u8; 4] = 0i32.to_ne_bytes();

/// Decodes step 6; returns the value the local coordinator sent (0 in practice;
/// any value releases the process, as in Open MPI).
pub fn parse_release(bytes: &[u8]) -> Result<i32, DecodeError> {
    int_frame(bytes, "release")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_with_and_without_debugger() {
        let frame = OptionsFrame {
            options: FifoOptions {
                term: true,
                inc_prep_only: true,
                ..Default::default()
            },
            handle: 0xdead_beef,
        };
        let bytes = frame.to_bytes();
        assert_eq!(bytes.len(), OptionsFrame::LEN);
        assert_eq!(OptionsFrame::parse(&bytes, false), Ok(frame));
        assert!(OptionsFrame::parse(&bytes, true).is_err());
        let debug = OptionsFrame {
            options: FifoOptions {
                debugger: Some(Debugger {
                    attach: true,
                    detach: false,
                }),
                ..frame.options
            },
            ..frame
        };
        let bytes = debug.to_bytes();
        assert_eq!(bytes.len(), OptionsFrame::DEBUG_LEN);
        assert_eq!(OptionsFrame::parse(&bytes, true), Ok(debug));
        // Word 7 is attach_debugger; the handle comes last.
        assert_eq!(bytes[24..28], 1i32.to_ne_bytes());
        assert_eq!(bytes[32..36], 0xdead_beefu32.to_ne_bytes());
    }

    #[test]
    fn non_zero_option_words_are_true() {
        let mut bytes = [0u8; OptionsFrame::LEN];
        bytes[8..12].copy_from_slice(&7i32.to_ne_bytes());
        assert!(OptionsFrame::parse(&bytes, false).unwrap().options.term);
    }

    #[test]
    fn int_frames() {
        assert_eq!(
            parse_response(&response_frame(CkptResponse::Null)),
            Ok(CkptResponse::Null)
        );
        assert_eq!(
            parse_response(&9i32.to_ne_bytes()).unwrap_err().kind,
            ErrorKind::UnknownResponse(9)
        );
        assert_eq!(parse_go_ahead(&GO_AHEAD), Ok(()));
        assert_eq!(
            parse_go_ahead(&3i32.to_ne_bytes()).unwrap_err().kind,
            ErrorKind::BadGoAhead(3)
        );
        assert_eq!(
            parse_cr_state(&cr_state_frame(CrState::Running)),
            Ok(CrState::Running)
        );
        assert_eq!(parse_release(&RELEASE), Ok(0));
        assert!(matches!(
            parse_release(&[0, 0]).unwrap_err().kind,
            ErrorKind::Length { .. }
        ));
        let mut small = [0u8; 3];
        assert!(OptionsFrame::default().emit(&mut small).is_err());
    }
}
