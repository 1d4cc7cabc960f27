use core::fmt;

/// What was wrong with a buffer, without the position (see [`DecodeError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorKind {
    /// The buffer ends before the field does.
    Truncated {
        /// Bytes the field needs from its start.
        needed: usize,
        /// Bytes left in the buffer.
        available: usize,
    },
    /// A DSS value count other than the one the message carries.
    Count {
        /// The count the message expects.
        expected: i32,
        /// The count found.
        found: i32,
    },
    /// A DSS type byte other than the one the field is stored with.
    TypeByte {
        /// The expected type code.
        expected: u8,
        /// The type code found.
        found: u8,
    },
    /// A string length that is negative.
    NegativeLength(i32),
    /// A string longer than the field allows (length includes the NUL).
    StringTooLong {
        /// Encoded length found.
        len: usize,
        /// The field's maximum.
        max: usize,
    },
    /// A string whose last byte is not NUL.
    NotTerminated,
    /// A string with a NUL before its end.
    InteriorNul,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// A boolean byte other than 0 or 1.
    InvalidBool(u8),
    /// An `int` flag other than 0 or 1.
    InvalidFlag(i32),
    /// A negative element count.
    NegativeCount(i32),
    /// A command byte the protocol does not define.
    UnknownCommand(u8),
    /// A command the protocol defines, but not on this channel.
    UnexpectedCommand(u8),
    /// An `op_event` the protocol does not define.
    UnknownOpEvent(i32),
    /// An `op_event` that cannot appear in this message.
    UnexpectedOpEvent(i32),
    /// A job or daemon checkpoint state the protocol does not define.
    UnknownState(i32),
    /// A `cr_state` the protocol does not define.
    UnknownCrState(i32),
    /// A checkpoint-request response the protocol does not define.
    UnknownResponse(i32),
    /// A go-ahead other than START (0).
    BadGoAhead(i32),
    /// Bytes after the end of the message.
    TrailingBytes(usize),
    /// A frame or name of the wrong length.
    Length {
        /// The expected length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// A FIFO name that does not have the protocol's shape.
    BadName,
    /// A decimal number that is missing, not canonical, or out of range.
    BadNumber,
}

/// A decoding failure: which field, where, and what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecodeError {
    /// Byte offset in the input where the field (or the offending part) starts.
    pub offset: usize,
    /// The field being decoded, as named in docs/PROTOCOL.md.
    pub field: &'static str,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl DecodeError {
    pub(crate) const fn new(offset: usize, field: &'static str, kind: ErrorKind) -> Self {
        Self {
            offset,
            field,
            kind,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} left")
            }
            Self::Count { expected, found } => write!(f, "count {found}, expected {expected}"),
            Self::TypeByte { expected, found } => {
                write!(f, "type byte {found:#04x}, expected {expected:#04x}")
            }
            Self::NegativeLength(n) => write!(f, "negative string length {n}"),
            Self::StringTooLong { len, max } => {
                write!(f, "string length {len} exceeds the maximum {max}")
            }
            Self::NotTerminated => f.write_str("string not NUL-terminated"),
            Self::InteriorNul => f.write_str("string contains a NUL before its end"),
            Self::InvalidUtf8 => f.write_str("string is not UTF-8"),
            Self::InvalidBool(b) => write!(f, "bool byte {b}, expected 0 or 1"),
            Self::InvalidFlag(v) => write!(f, "flag {v}, expected 0 or 1"),
            Self::NegativeCount(n) => write!(f, "negative element count {n}"),
            Self::UnknownCommand(c) => write!(f, "unknown command {c}"),
            Self::UnexpectedCommand(c) => write!(f, "command {c} is not carried on this channel"),
            Self::UnknownOpEvent(e) => write!(f, "unknown op_event {e}"),
            Self::UnexpectedOpEvent(e) => write!(f, "op_event {e} cannot appear here"),
            Self::UnknownState(s) => write!(f, "unknown checkpoint state {s}"),
            Self::UnknownCrState(s) => write!(f, "unknown cr_state {s}"),
            Self::UnknownResponse(r) => write!(f, "unknown checkpoint response {r}"),
            Self::BadGoAhead(v) => write!(f, "go-ahead {v}, expected 0 (START)"),
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes after the message"),
            Self::Length { expected, found } => {
                write!(f, "length {found}, expected {expected}")
            }
            Self::BadName => f.write_str("not a snapc FIFO name"),
            Self::BadNumber => f.write_str("not a canonical decimal number in range"),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: {}", self.field, self.offset, self.kind)
    }
}

impl core::error::Error for DecodeError {}

/// An encoding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EmitError {
    /// The output buffer cannot hold the message.
    TooSmall {
        /// Bytes the whole message needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The value cannot be encoded as given (the message names the field).
    Invalid(&'static str),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooSmall { needed, available } => {
                write!(f, "buffer too small: needs {needed} bytes, has {available}")
            }
            Self::Invalid(what) => write!(f, "cannot encode: {what}"),
        }
    }
}

impl core::error::Error for EmitError {}
