//! Open MPI's DSS encoding for non-described buffers (docs/PROTOCOL.md §6).
//!
//! Every field is one `pack` call: a big-endian `int32` count (always 1 in
//! this protocol), then a type byte for the "system" types only (`int` 0x09,
//! `pid_t` 0x0e, `bool` 0x0c, `size_t` 0x0f), then the value big-endian. A
//! string is an `int32` length including its NUL, then the bytes and the NUL;
//! the NULL string is the length 0 alone.
//!
//! [`Reader`] validates strictly and never panics; [`Encoder`] writes into any
//! [`Sink`], which is how [`Message::buffer_len`](super::Message::buffer_len)
//! and the emitters share one description of each layout.

use super::error::{DecodeError, EmitError, ErrorKind};
use super::message::ProcessName;
use core::marker::PhantomData;

/// Type byte stored before a generic `int` (stored as INT32).
pub const TYPE_INT: u8 = 0x09;
/// Type byte stored before a `pid_t` (stored as UINT32).
pub const TYPE_PID: u8 = 0x0e;
/// Type byte stored before a `bool` (stored as UINT8).
pub const TYPE_BOOL: u8 = 0x0c;
/// Type byte stored before a `size_t` (stored as UINT64).
pub const TYPE_SIZE: u8 = 0x0f;

/// How a [`Reader`] reports a malformed field.
///
/// A message is decoded first with [`Rejected`], an error that only says
/// "malformed" and costs nothing to build or move, and only when that fails
/// again with [`DecodeError`] to name the field and the offset. Both passes
/// run the same code, so they accept exactly the same inputs and decode them
/// to the same values.
pub trait Failure: Sized + sealed::Sealed {
    /// The error returned as soon as a field's fast check fails, for an
    /// error type that does not say what was wrong; `None` to find out.
    const BARE: Option<Self>;
    /// Whether fields take their fast path first (all but the tests' reader
    /// that checks the fast paths against the careful ones).
    const FAST: bool = true;
    /// The error for `field` at `offset`.
    fn new(offset: usize, field: &'static str, kind: ErrorKind) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::DecodeError {}
    impl Sealed for super::Rejected {}
    #[cfg(test)]
    impl Sealed for super::CarefulOnly {}
}

/// The careful path of every field alone, to hold the fast paths against.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CarefulOnly(pub DecodeError);

#[cfg(test)]
impl Failure for CarefulOnly {
    const BARE: Option<Self> = None;
    const FAST: bool = false;
    fn new(offset: usize, field: &'static str, kind: ErrorKind) -> Self {
        Self(DecodeError::new(offset, field, kind))
    }
}

impl Failure for DecodeError {
    const BARE: Option<Self> = None;
    #[inline]
    fn new(offset: usize, field: &'static str, kind: ErrorKind) -> Self {
        Self::new(offset, field, kind)
    }
}

/// The first pass's error: the input is malformed, the second pass says how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected;

impl Failure for Rejected {
    const BARE: Option<Self> = Some(Self);
    #[inline(always)]
    fn new(_: usize, _: &'static str, _: ErrorKind) -> Self {
        Self
    }
}

/// A strict, panic-free reader of DSS fields over a byte slice, reporting
/// errors as `E` (see [`Failure`]).
#[derive(Debug)]
pub struct Reader<'a, E = DecodeError> {
    buf: &'a [u8],
    pos: usize,
    failure: PhantomData<fn() -> E>,
}

impl<E> Clone for Reader<'_, E> {
    #[inline]
    fn clone(&self) -> Self {
        Self {
            buf: self.buf,
            pos: self.pos,
            failure: PhantomData,
        }
    }
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self::start(buf)
    }
}

impl<'a, E: Failure> Reader<'a, E> {
    /// A reader at the start of `buf`, with errors of type `E`.
    #[inline(always)]
    pub const fn start(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failure: PhantomData,
        }
    }

    /// Offset of the next byte to read.
    #[inline]
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The bytes not read yet.
    #[inline(always)]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Moves past `n` bytes that a reader over [`rest`](Self::rest) read.
    #[inline(always)]
    pub(crate) fn skip(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
    }

    /// The input from `start` up to the current position.
    #[inline]
    pub(crate) fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], E> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(E::new(
                self.pos,
                field,
                ErrorKind::Truncated {
                    needed: n,
                    available: self.remaining(),
                },
            )),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], E> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn raw_i32(&mut self, field: &'static str) -> Result<i32, E> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    #[inline]
    fn raw_u32(&mut self, field: &'static str) -> Result<u32, E> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// The count prefix of a `pack` call; this protocol always packs one value.
    #[inline]
    fn count(&mut self, field: &'static str) -> Result<(), E> {
        let at = self.pos;
        let found = self.raw_i32(field)?;
        if found != 1 {
            return Err(E::new(at, field, ErrorKind::Count { expected: 1, found }));
        }
        Ok(())
    }

    #[inline]
    fn type_byte(&mut self, expected: u8, field: &'static str) -> Result<(), E> {
        let at = self.pos;
        let [found] = self.array::<1>(field)?;
        if found != expected {
            return Err(E::new(at, field, ErrorKind::TypeByte { expected, found }));
        }
        Ok(())
    }

    /// The fast path of one field of `M` bytes: the count (1), the type
    /// byte when there is one, and `N` value bytes (`M` is `N` plus 4 or 5),
    /// all present and right. `None` leaves the reader where it was; the
    /// field's careful path then names the error.
    #[inline(always)]
    fn fast<const N: usize, const M: usize>(&mut self, type_byte: Option<u8>) -> Option<[u8; N]> {
        if !E::FAST {
            return None;
        }
        let field = self.buf.get(self.pos..)?.first_chunk::<M>()?;
        let (count, rest) = field.split_first_chunk::<4>()?;
        if u32::from_be_bytes(*count) != 1 {
            return None;
        }
        let value = match type_byte {
            Some(t) => match rest.split_first() {
                Some((&b, value)) if b == t => value,
                _ => return None,
            },
            None => rest,
        };
        let value = <[u8; N]>::try_from(value).ok()?;
        self.pos += M;
        Some(value)
    }

    /// On a failed fast check: the bare error, or the careful path's answer.
    #[inline(always)]
    fn careful<T>(&mut self, path: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        match E::BARE {
            Some(e) => Err(e),
            None => path(self),
        }
    }

    /// A `uint8` (command bytes).
    #[inline]
    pub fn uint8(&mut self, field: &'static str) -> Result<u8, E> {
        if let Some([b]) = self.fast::<1, 5>(None) {
            return Ok(b);
        }
        self.careful(|r| r.uint8_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn uint8_careful(&mut self, field: &'static str) -> Result<u8, E> {
        self.count(field)?;
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    /// A `uint32` (the sstore handle); jobids and vpids have the same layout.
    #[inline]
    pub fn uint32(&mut self, field: &'static str) -> Result<u32, E> {
        if let Some(v) = self.fast::<4, 8>(None) {
            return Ok(u32::from_be_bytes(v));
        }
        self.careful(|r| r.uint32_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn uint32_careful(&mut self, field: &'static str) -> Result<u32, E> {
        self.count(field)?;
        self.raw_u32(field)
    }

    /// A process name: jobid then vpid.
    #[inline]
    pub fn name(&mut self, field: &'static str) -> Result<ProcessName, E> {
        if let Some(v) = self.fast::<8, 12>(None) {
            let (jobid, vpid) = v.split_at(4);
            if let (Ok(jobid), Ok(vpid)) = (<[u8; 4]>::try_from(jobid), <[u8; 4]>::try_from(vpid)) {
                return Ok(ProcessName {
                    jobid: u32::from_be_bytes(jobid),
                    vpid: u32::from_be_bytes(vpid),
                });
            }
        }
        self.careful(|r| r.name_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn name_careful(&mut self, field: &'static str) -> Result<ProcessName, E> {
        self.count(field)?;
        let jobid = self.raw_u32(field)?;
        let vpid = self.raw_u32(field)?;
        Ok(ProcessName { jobid, vpid })
    }

    /// A generic `int`.
    #[inline]
    pub fn int(&mut self, field: &'static str) -> Result<i32, E> {
        if let Some(v) = self.fast::<4, 9>(Some(TYPE_INT)) {
            return Ok(i32::from_be_bytes(v));
        }
        self.careful(|r| r.int_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn int_careful(&mut self, field: &'static str) -> Result<i32, E> {
        self.count(field)?;
        self.type_byte(TYPE_INT, field)?;
        self.raw_i32(field)
    }

    /// An `int` used as a flag: 0 or 1 only, so that decoding then encoding
    /// reproduces the input.
    #[inline]
    pub fn int_flag(&mut self, field: &'static str) -> Result<bool, E> {
        let at = self.pos;
        match self.int(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(E::new(at, field, ErrorKind::InvalidFlag(v))),
        }
    }

    /// A `pid_t` (stored as UINT32, read back as the signed value it was).
    #[inline]
    pub fn pid(&mut self, field: &'static str) -> Result<i32, E> {
        if let Some(v) = self.fast::<4, 9>(Some(TYPE_PID)) {
            return Ok(i32::from_be_bytes(v));
        }
        self.careful(|r| r.pid_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn pid_careful(&mut self, field: &'static str) -> Result<i32, E> {
        self.count(field)?;
        self.type_byte(TYPE_PID, field)?;
        self.raw_i32(field)
    }

    /// A `bool`: one byte, 0 or 1.
    #[inline]
    pub fn bool(&mut self, field: &'static str) -> Result<bool, E> {
        let at = self.pos;
        match self.fast::<1, 6>(Some(TYPE_BOOL)) {
            Some([0]) => return Ok(false),
            Some([1]) => return Ok(true),
            Some(_) => self.pos = at,
            None => {}
        }
        self.careful(|r| r.bool_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn bool_careful(&mut self, field: &'static str) -> Result<bool, E> {
        self.count(field)?;
        self.type_byte(TYPE_BOOL, field)?;
        let at = self.pos;
        match self.array::<1>(field)? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(E::new(at, field, ErrorKind::InvalidBool(b))),
        }
    }

    /// A `size_t` (stored as UINT64).
    #[inline]
    pub fn size(&mut self, field: &'static str) -> Result<u64, E> {
        if let Some(v) = self.fast::<8, 13>(Some(TYPE_SIZE)) {
            return Ok(u64::from_be_bytes(v));
        }
        self.careful(|r| r.size_careful(field))
    }

    #[cold]
    #[inline(never)]
    fn size_careful(&mut self, field: &'static str) -> Result<u64, E> {
        self.count(field)?;
        self.type_byte(TYPE_SIZE, field)?;
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A string, `None` for the NULL string. `max_len` bounds the encoded
    /// length (bytes plus NUL); the string borrows from the input.
    #[inline]
    pub fn string(&mut self, field: &'static str, max_len: usize) -> Result<Option<&'a str>, E> {
        if let Some(text) = self.string_fast(max_len) {
            return Ok(text);
        }
        self.careful(|r| r.string_careful(field, max_len))
    }

    /// The fast path of a string: `Some` only for a string the careful path
    /// accepts, and then the reader is past it.
    #[inline(always)]
    fn string_fast(&mut self, max_len: usize) -> Option<Option<&'a str>> {
        if !E::FAST {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        let (count, rest) = rest.split_first_chunk::<4>()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        if u32::from_be_bytes(*count) != 1 {
            return None;
        }
        // A negative length becomes huge and fails the bound.
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 {
            self.pos += 8;
            return Some(None);
        }
        if len > max_len {
            return None;
        }
        let (&last, text) = rest.get(..len)?.split_last()?;
        if last != 0 || has_nul(text) {
            return None;
        }
        let text = core::str::from_utf8(text).ok()?;
        self.pos += 8 + len;
        Some(Some(text))
    }

    #[cold]
    #[inline(never)]
    fn string_careful(
        &mut self,
        field: &'static str,
        max_len: usize,
    ) -> Result<Option<&'a str>, E> {
        self.count(field)?;
        let at = self.pos;
        let len = self.raw_i32(field)?;
        let len = match usize::try_from(len) {
            Ok(0) => return Ok(None),
            Ok(len) => len,
            Err(_) => return Err(E::new(at, field, ErrorKind::NegativeLength(len))),
        };
        if len > max_len {
            return Err(E::new(
                at,
                field,
                ErrorKind::StringTooLong { len, max: max_len },
            ));
        }
        let start = self.pos;
        let bytes = self.take(len, field)?;
        let Some((&last, text)) = bytes.split_last() else {
            return Err(E::new(start, field, ErrorKind::NotTerminated));
        };
        if last != 0 {
            return Err(E::new(start + len - 1, field, ErrorKind::NotTerminated));
        }
        // `contains` searches a word at a time; the position only for the error.
        if text.contains(&0) {
            let i = text.iter().position(|&b| b == 0).unwrap_or_default();
            return Err(E::new(start + i, field, ErrorKind::InteriorNul));
        }
        core::str::from_utf8(text)
            .map(Some)
            .map_err(|e| E::new(start + e.valid_up_to(), field, ErrorKind::InvalidUtf8))
    }

    /// Succeeds only if every byte was read.
    #[inline]
    pub fn finish(&self) -> Result<(), E> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(E::new(
                self.pos,
                "end of message",
                ErrorKind::TrailingBytes(n),
            )),
        }
    }
}

/// Whether `bytes` holds a zero byte, a word at a time (the strings here
/// are short, where a byte loop or `memchr` costs several times more).
#[inline(always)]
fn has_nul(bytes: &[u8]) -> bool {
    /// Non-zero exactly when some byte of the word is zero.
    #[inline(always)]
    fn zero_byte(word: &[u8; 8]) -> u64 {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        let w = u64::from_ne_bytes(*word);
        w.wrapping_sub(ONES) & !w & HIGHS
    }
    let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) else {
        return bytes.contains(&0);
    };
    // Words that overlap cover every byte without a loop up to 32 bytes.
    let ends = zero_byte(first) | zero_byte(last);
    let len = bytes.len();
    if len <= 16 {
        return ends != 0;
    }
    let inner = |at: usize| {
        bytes
            .get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(1, zero_byte)
    };
    if len <= 32 {
        return (ends | inner(8) | inner(len - 16)) != 0;
    }
    if ends != 0 {
        return true;
    }
    let mut rest = bytes;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        if zero_byte(word) != 0 {
            return true;
        }
        rest = tail;
    }
    false
}

/// Where an [`Encoder`] puts bytes.
pub trait Sink {
    /// Whether the sink only measures the length and drops the bytes: the
    /// encoder then skips the checks of values that it cannot encode (an
    /// encoding into a real sink reports them).
    const MEASURES_ONLY: bool = false;

    /// Appends `bytes`, or fails without writing anything.
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError>;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    const MEASURES_ONLY: bool = S::MEASURES_ONLY;

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        (**self).put(bytes)
    }
}

/// Counts bytes instead of storing them: the encoded length of a message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counter(pub usize);

impl Sink for Counter {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(())
    }
}

/// The length a message will take, without its value checks: sizes the
/// slice [`Message::emit`](super::Message::emit) writes into, where the
/// checks are made.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Measure(pub usize);

impl Sink for Measure {
    const MEASURES_ONLY: bool = true;

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(())
    }
}

/// Writes into a caller's slice.
#[derive(Debug)]
pub struct SliceSink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> SliceSink<'b> {
    /// A sink writing from the start of `buf`.
    #[inline]
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Sink for SliceSink<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let n = bytes.len();
        // Split so that the destination's length is `n` by construction.
        match self
            .buf
            .get_mut(self.len..)
            .and_then(|rest| rest.get_mut(..n))
        {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += n;
                Ok(())
            }
            None => Err(EmitError::TooSmall {
                needed: self.len.saturating_add(n),
                available: self.buf.len(),
            }),
        }
    }
}

impl<const N: usize, L: heapless::LenType> Sink for heapless::Vec<u8, N, L> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let needed = self.len().saturating_add(bytes.len());
        self.extend_from_slice(bytes)
            .map_err(|_| EmitError::TooSmall {
                needed,
                available: N,
            })
    }
}

/// Writes DSS fields into a [`Sink`].
#[derive(Debug)]
pub struct Encoder<S> {
    sink: S,
}

impl<S: Sink> Encoder<S> {
    /// An encoder over `sink`.
    pub const fn new(sink: S) -> Self {
        Self { sink }
    }

    /// The sink back.
    pub fn into_inner(self) -> S {
        self.sink
    }

    /// One `pack` call's bytes in a single write: the count (1), the type
    /// byte for system types, the value.
    #[inline(always)]
    fn field<const N: usize>(
        &mut self,
        type_byte: Option<u8>,
        value: [u8; N],
    ) -> Result<(), EmitError> {
        let mut bytes = [0u8; 17];
        let (head, rest) = bytes.split_at_mut(4);
        head.copy_from_slice(&1i32.to_be_bytes());
        let mut len = 4;
        let rest = match (type_byte, rest.split_first_mut()) {
            (Some(t), Some((first, tail))) => {
                *first = t;
                len += 1;
                tail
            }
            _ => rest,
        };
        if let Some(dst) = rest.get_mut(..N) {
            dst.copy_from_slice(&value);
            len += N;
        }
        self.sink.put(bytes.get(..len).unwrap_or_default())
    }

    /// A `uint8`.
    #[inline(always)]
    pub fn uint8(&mut self, v: u8) -> Result<(), EmitError> {
        self.field(None, [v])
    }

    /// A `uint32` (also the layout of a jobid or vpid).
    #[inline(always)]
    pub fn uint32(&mut self, v: u32) -> Result<(), EmitError> {
        self.field(None, v.to_be_bytes())
    }

    /// A process name.
    #[inline(always)]
    pub fn name(&mut self, v: ProcessName) -> Result<(), EmitError> {
        let mut value = [0u8; 8];
        let (jobid, vpid) = value.split_at_mut(4);
        jobid.copy_from_slice(&v.jobid.to_be_bytes());
        vpid.copy_from_slice(&v.vpid.to_be_bytes());
        self.field(None, value)
    }

    /// A generic `int`.
    #[inline(always)]
    pub fn int(&mut self, v: i32) -> Result<(), EmitError> {
        self.field(Some(TYPE_INT), v.to_be_bytes())
    }

    /// A `pid_t`.
    #[inline(always)]
    pub fn pid(&mut self, v: i32) -> Result<(), EmitError> {
        self.field(Some(TYPE_PID), v.to_be_bytes())
    }

    /// A `bool`.
    #[inline(always)]
    pub fn bool(&mut self, v: bool) -> Result<(), EmitError> {
        self.field(Some(TYPE_BOOL), [u8::from(v)])
    }

    /// A `size_t`.
    #[inline(always)]
    pub fn size(&mut self, v: u64) -> Result<(), EmitError> {
        self.field(Some(TYPE_SIZE), v.to_be_bytes())
    }

    /// A string, `None` for the NULL string. `max_len` bounds the encoded
    /// length (bytes plus NUL), as the decoder does.
    #[inline(always)]
    pub fn string(
        &mut self,
        v: Option<&str>,
        max_len: usize,
        field: &'static str,
    ) -> Result<(), EmitError> {
        let Some(s) = v else {
            return self.field(None, 0i32.to_be_bytes());
        };
        // An interior NUL or an over-long string would not decode back.
        let len = s.len() + 1;
        if !S::MEASURES_ONLY && (len > max_len || has_nul(s.as_bytes())) {
            return Err(EmitError::Invalid(field));
        }
        let len = i32::try_from(len).map_err(|_| EmitError::Invalid(field))?;
        self.field(None, len.to_be_bytes())?;
        self.sink.put(s.as_bytes())?;
        self.sink.put(&[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> heapless::Vec<u8, 256> {
        let digits: heapless::Vec<u8, 512> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| {
                let s = core::str::from_utf8(p).unwrap();
                u8::from_str_radix(s, 16).unwrap()
            })
            .collect()
    }

    #[test]
    fn reads_each_primitive() {
        let b = hex("00000001 08 00000001 12340001 00000001 09 ffffffff 00000001 0e 00000064");
        let mut r = Reader::new(&b);
        assert_eq!(r.uint8("cmd"), Ok(8));
        assert_eq!(r.uint32("jobid"), Ok(0x1234_0001));
        assert_eq!(r.int("int"), Ok(-1));
        assert_eq!(r.pid("pid"), Ok(100));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn strings_null_empty_and_bad() {
        let b = hex("00000001 00000000 00000001 00000001 00 00000001 00000003 6869 00");
        let mut r = Reader::new(&b);
        assert_eq!(r.string("s", 8), Ok(None));
        assert_eq!(r.string("s", 8), Ok(Some("")));
        assert_eq!(r.string("s", 8), Ok(Some("hi")));
        let unterminated = hex("00000001 00000002 6869");
        let e = Reader::new(&unterminated).string("s", 8).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotTerminated);
        assert_eq!(e.offset, 9);
        let interior = hex("00000001 00000003 00 69 00");
        assert_eq!(
            Reader::new(&interior).string("s", 8).unwrap_err().kind,
            ErrorKind::InteriorNul
        );
        let negative = hex("00000001 ffffffff");
        assert_eq!(
            Reader::new(&negative).string("s", 8).unwrap_err().kind,
            ErrorKind::NegativeLength(-1)
        );
        let long = hex("00000001 00000009");
        assert_eq!(
            Reader::new(&long).string("s", 8).unwrap_err().kind,
            ErrorKind::StringTooLong { len: 9, max: 8 }
        );
        let beyond = hex("00000001 00000005 6869 00");
        assert!(matches!(
            Reader::new(&beyond).string("s", 8).unwrap_err().kind,
            ErrorKind::Truncated {
                needed: 5,
                available: 3
            }
        ));
    }

    #[test]
    fn rejects_wrong_count_type_and_bool() {
        let b = hex("00000002 09 00000001");
        assert_eq!(
            Reader::new(&b).int("x").unwrap_err().kind,
            ErrorKind::Count {
                expected: 1,
                found: 2
            }
        );
        let b = hex("00000001 0e 00000001");
        let e = Reader::new(&b).int("x").unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::TypeByte {
                expected: 0x09,
                found: 0x0e
            }
        );
        assert_eq!(e.offset, 4);
        let b = hex("00000001 0c 02");
        assert_eq!(
            Reader::new(&b).bool("x").unwrap_err().kind,
            ErrorKind::InvalidBool(2)
        );
    }

    #[test]
    fn encoder_matches_reader_and_reports_too_small() {
        let mut v: heapless::Vec<u8, 64> = heapless::Vec::new();
        let mut e = Encoder::new(&mut v);
        e.bool(true).unwrap();
        e.size(3).unwrap();
        e.string(Some("a"), 8, "s").unwrap();
        assert_eq!(
            &v[..],
            &hex("00000001 0c 01 00000001 0f 0000000000000003 00000001 00000002 61 00")[..]
        );
        let mut small = [0u8; 6];
        let mut e = Encoder::new(SliceSink::new(&mut small));
        assert_eq!(
            e.int(1),
            Err(EmitError::TooSmall {
                needed: 9,
                available: 6
            })
        );
        assert_eq!(
            Encoder::new(Counter(0)).string(Some("a\0b"), 8, "s"),
            Err(EmitError::Invalid("s"))
        );
    }
}
