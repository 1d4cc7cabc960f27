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

/// Type byte stored before a generic `int` (stored as INT32).
pub const TYPE_INT: u8 = 0x09;
/// Type byte stored before a `pid_t` (stored as UINT32).
pub const TYPE_PID: u8 = 0x0e;
/// Type byte stored before a `bool` (stored as UINT8).
pub const TYPE_BOOL: u8 = 0x0c;
/// Type byte stored before a `size_t` (stored as UINT64).
pub const TYPE_SIZE: u8 = 0x0f;

/// A strict, panic-free reader of DSS fields over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
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

    /// The input from `start` up to the current position.
    pub(crate) fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(DecodeError::new(
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
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn raw_i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    #[inline]
    fn raw_u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// The count prefix of a `pack` call; this protocol always packs one value.
    #[inline]
    fn count(&mut self, field: &'static str) -> Result<(), DecodeError> {
        let at = self.pos;
        let found = self.raw_i32(field)?;
        if found != 1 {
            return Err(DecodeError::new(
                at,
                field,
                ErrorKind::Count { expected: 1, found },
            ));
        }
        Ok(())
    }

    #[inline]
    fn type_byte(&mut self, expected: u8, field: &'static str) -> Result<(), DecodeError> {
        let at = self.pos;
        let [found] = self.array::<1>(field)?;
        if found != expected {
            return Err(DecodeError::new(
                at,
                field,
                ErrorKind::TypeByte { expected, found },
            ));
        }
        Ok(())
    }

    /// The fast path of one field: the count (1), the type byte when there
    /// is one, and `N` value bytes, all present and right. `None` leaves the
    /// reader where it was; the field's careful path then names the error.
    #[inline(always)]
    fn fast<const N: usize>(&mut self, type_byte: Option<u8>) -> Option<[u8; N]> {
        let rest = self.buf.get(self.pos..)?;
        let (count, rest) = rest.split_first_chunk::<4>()?;
        if *count != [0, 0, 0, 1] {
            return None;
        }
        let (rest, head) = match type_byte {
            Some(t) => match rest.split_first() {
                Some((&b, rest)) if b == t => (rest, 5),
                _ => return None,
            },
            None => (rest, 4),
        };
        let value = rest.first_chunk::<N>()?;
        self.pos += head + N;
        Some(*value)
    }

    /// A `uint8` (command bytes).
    #[inline]
    pub fn uint8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        if let Some([b]) = self.fast::<1>(None) {
            return Ok(b);
        }
        self.uint8_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn uint8_careful(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.count(field)?;
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    /// A `uint32` (the sstore handle); jobids and vpids have the same layout.
    #[inline]
    pub fn uint32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        if let Some(v) = self.fast::<4>(None) {
            return Ok(u32::from_be_bytes(v));
        }
        self.uint32_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn uint32_careful(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.count(field)?;
        self.raw_u32(field)
    }

    /// A process name: jobid then vpid.
    #[inline]
    pub fn name(&mut self, field: &'static str) -> Result<ProcessName, DecodeError> {
        if let Some(v) = self.fast::<8>(None) {
            let (jobid, vpid) = v.split_at(4);
            if let (Ok(jobid), Ok(vpid)) = (<[u8; 4]>::try_from(jobid), <[u8; 4]>::try_from(vpid)) {
                return Ok(ProcessName {
                    jobid: u32::from_be_bytes(jobid),
                    vpid: u32::from_be_bytes(vpid),
                });
            }
        }
        self.name_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn name_careful(&mut self, field: &'static str) -> Result<ProcessName, DecodeError> {
        self.count(field)?;
        let jobid = self.raw_u32(field)?;
        let vpid = self.raw_u32(field)?;
        Ok(ProcessName { jobid, vpid })
    }

    /// A generic `int`.
    #[inline]
    pub fn int(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        if let Some(v) = self.fast::<4>(Some(TYPE_INT)) {
            return Ok(i32::from_be_bytes(v));
        }
        self.int_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn int_careful(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.count(field)?;
        self.type_byte(TYPE_INT, field)?;
        self.raw_i32(field)
    }

    /// An `int` used as a flag: 0 or 1 only, so that decoding then encoding
    /// reproduces the input.
    #[inline]
    pub fn int_flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.int(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::new(at, field, ErrorKind::InvalidFlag(v))),
        }
    }

    /// A `pid_t` (stored as UINT32, read back as the signed value it was).
    #[inline]
    pub fn pid(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        if let Some(v) = self.fast::<4>(Some(TYPE_PID)) {
            return Ok(i32::from_be_bytes(v));
        }
        self.pid_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn pid_careful(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.count(field)?;
        self.type_byte(TYPE_PID, field)?;
        self.raw_i32(field)
    }

    /// A `bool`: one byte, 0 or 1.
    #[inline]
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.fast::<1>(Some(TYPE_BOOL)) {
            Some([0]) => return Ok(false),
            Some([1]) => return Ok(true),
            Some(_) => self.pos = at,
            None => {}
        }
        self.bool_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn bool_careful(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        self.count(field)?;
        self.type_byte(TYPE_BOOL, field)?;
        let at = self.pos;
        match self.array::<1>(field)? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(DecodeError::new(at, field, ErrorKind::InvalidBool(b))),
        }
    }

    /// A `size_t` (stored as UINT64).
    #[inline]
    pub fn size(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        if let Some(v) = self.fast::<8>(Some(TYPE_SIZE)) {
            return Ok(u64::from_be_bytes(v));
        }
        self.size_careful(field)
    }

    #[cold]
    #[inline(never)]
    fn size_careful(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.count(field)?;
        self.type_byte(TYPE_SIZE, field)?;
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A string, `None` for the NULL string. `max_len` bounds the encoded
    /// length (bytes plus NUL); the string borrows from the input.
    pub fn string(
        &mut self,
        field: &'static str,
        max_len: usize,
    ) -> Result<Option<&'a str>, DecodeError> {
        self.count(field)?;
        let at = self.pos;
        let len = self.raw_i32(field)?;
        let len = match usize::try_from(len) {
            Ok(0) => return Ok(None),
            Ok(len) => len,
            Err(_) => return Err(DecodeError::new(at, field, ErrorKind::NegativeLength(len))),
        };
        if len > max_len {
            return Err(DecodeError::new(
                at,
                field,
                ErrorKind::StringTooLong { len, max: max_len },
            ));
        }
        let start = self.pos;
        let bytes = self.take(len, field)?;
        let Some((&last, text)) = bytes.split_last() else {
            return Err(DecodeError::new(start, field, ErrorKind::NotTerminated));
        };
        if last != 0 {
            return Err(DecodeError::new(
                start + len - 1,
                field,
                ErrorKind::NotTerminated,
            ));
        }
        if let Some(i) = text.iter().position(|&b| b == 0) {
            return Err(DecodeError::new(start + i, field, ErrorKind::InteriorNul));
        }
        core::str::from_utf8(text)
            .map(Some)
            .map_err(|e| DecodeError::new(start + e.valid_up_to(), field, ErrorKind::InvalidUtf8))
    }

    /// Succeeds only if every byte was read.
    #[inline]
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::new(
                self.pos,
                "end of message",
                ErrorKind::TrailingBytes(n),
            )),
        }
    }
}

/// Where an [`Encoder`] puts bytes.
pub trait Sink {
    /// Appends `bytes`, or fails without writing anything.
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError>;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        (**self).put(bytes)
    }
}

/// Counts bytes instead of storing them: the encoded length of a message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counter(pub usize);

impl Sink for Counter {
    #[inline]
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
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written so far.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        let available = self.buf.len();
        let end = self.len.saturating_add(bytes.len());
        match self.buf.get_mut(self.len..end) {
            // The length check lets the compiler drop copy_from_slice's panic.
            Some(dst) if dst.len() == bytes.len() => {
                dst.copy_from_slice(bytes);
                self.len = end;
                Ok(())
            }
            _ => Err(EmitError::TooSmall {
                needed: end,
                available,
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
    #[inline]
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
    #[inline]
    pub fn uint8(&mut self, v: u8) -> Result<(), EmitError> {
        self.field(None, [v])
    }

    /// A `uint32` (also the layout of a jobid or vpid).
    #[inline]
    pub fn uint32(&mut self, v: u32) -> Result<(), EmitError> {
        self.field(None, v.to_be_bytes())
    }

    /// A process name.
    #[inline]
    pub fn name(&mut self, v: ProcessName) -> Result<(), EmitError> {
        let mut value = [0u8; 8];
        let (jobid, vpid) = value.split_at_mut(4);
        jobid.copy_from_slice(&v.jobid.to_be_bytes());
        vpid.copy_from_slice(&v.vpid.to_be_bytes());
        self.field(None, value)
    }

    /// A generic `int`.
    #[inline]
    pub fn int(&mut self, v: i32) -> Result<(), EmitError> {
        self.field(Some(TYPE_INT), v.to_be_bytes())
    }

    /// A `pid_t`.
    #[inline]
    pub fn pid(&mut self, v: i32) -> Result<(), EmitError> {
        self.field(Some(TYPE_PID), v.to_be_bytes())
    }

    /// A `bool`.
    #[inline]
    pub fn bool(&mut self, v: bool) -> Result<(), EmitError> {
        self.field(Some(TYPE_BOOL), [u8::from(v)])
    }

    /// A `size_t`.
    #[inline]
    pub fn size(&mut self, v: u64) -> Result<(), EmitError> {
        self.field(Some(TYPE_SIZE), v.to_be_bytes())
    }

    /// A string, `None` for the NULL string. `max_len` bounds the encoded
    /// length (bytes plus NUL), as the decoder does.
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
        if s.as_bytes().contains(&0) || len > max_len {
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
