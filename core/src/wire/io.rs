//! The wire over `embedded-io` byte streams: messages encoded straight into
//! a writer, frames read exactly from a reader.
//!
//! - [`WriteSink`] is a DSS [`Sink`] over any [`embedded_io::Write`]:
//!   [`write_message`] encodes a message field by field into the writer,
//!   without a buffer of the message's size (a MIGRATE table or a 4 KiB
//!   RESTART handle on a small target). A length prefix, when the transport
//!   wants one, comes from [`Message::buffer_len`] first.
//! - [`read_frame`] reads exactly one handshake frame (or any fixed-length
//!   record) from an [`embedded_io::Read`], and [`FrameReader`] does the
//!   same a read at a time, for a driver that must not block past a
//!   deadline (it reads only when [`embedded_io::ReadReady`] says so).
//! - [`write_frame`] writes a whole frame.
//!
//! None of these panics, whatever the stream does: a writer that accepts
//! nothing is an error ([`WriteError::WriteZero`]), not the panic of
//! `Write::write_all`, and a reader that claims more bytes than it was given
//! room for is an error too.

use super::dss::{Encoder, Sink};
use super::error::EmitError;
use super::fifo::MAX_FRAME_LEN;
use super::message::Message;
use core::fmt;
use embedded_io::{Read, Write};

/// Why writing to a stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WriteError<E> {
    /// The message cannot be encoded as given (nothing was written).
    Encode(EmitError),
    /// The writer failed; part of the bytes may have been written.
    Io(E),
    /// The writer accepted no byte of a non-empty write.
    WriteZero,
}

impl<E: fmt::Debug> fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(e) => write!(f, "cannot encode: {e}"),
            Self::Io(e) => write!(f, "write failed: {e:?}"),
            Self::WriteZero => f.write_str("the writer accepted nothing"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for WriteError<E> {}

/// Why reading from a stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReadError<E> {
    /// End of file before the frame was whole: the peer is gone.
    Eof,
    /// The reader failed.
    Io(E),
    /// The reader claimed to have read more bytes than it was given room for.
    Overread,
}

impl<E: fmt::Debug> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => f.write_str("end of file inside a frame"),
            Self::Io(e) => write!(f, "read failed: {e:?}"),
            Self::Overread => f.write_str("the reader returned more bytes than asked for"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for ReadError<E> {}

/// Writes all of `bytes`, one `write` call after another.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, bytes: &[u8]) -> Result<(), WriteError<W::Error>> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match w.write(rest) {
            Ok(0) => return Err(WriteError::WriteZero),
            Ok(n) => rest = rest.get(n..).ok_or(WriteError::WriteZero)?,
            Err(e) => return Err(WriteError::Io(e)),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes, blocking as `r.read` does.
pub fn read_frame<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<(), ReadError<R::Error>> {
    let mut got = 0;
    while got < buf.len() {
        got = read_into(r, buf, got)?;
    }
    Ok(())
}

/// One `read` into `buf[got..]`; the new fill level.
fn read_into<R: Read + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
    got: usize,
) -> Result<usize, ReadError<R::Error>> {
    let room = buf.get_mut(got..).ok_or(ReadError::Overread)?;
    let asked = room.len();
    match r.read(room) {
        Ok(0) if asked > 0 => Err(ReadError::Eof),
        Ok(n) if n <= asked => Ok(got + n),
        Ok(_) => Err(ReadError::Overread),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// A DSS [`Sink`] over an [`embedded_io::Write`]: every field of a message
/// goes to the writer as it is encoded.
///
/// Unlike the buffer sinks, a failed write may leave part of a field
/// written; the stream is then unusable for this message, as with any
/// failed write. The writer's error is kept for [`write_message`] to
/// return.
#[derive(Debug)]
pub struct WriteSink<'w, W: Write + ?Sized> {
    writer: &'w mut W,
    written: usize,
    failed: Option<WriteError<W::Error>>,
}

impl<'w, W: Write + ?Sized> WriteSink<'w, W> {
    /// A sink writing to `writer`.
    pub fn new(writer: &'w mut W) -> Self {
        Self {
            writer,
            written: 0,
            failed: None,
        }
    }

    /// Bytes written so far.
    pub const fn written(&self) -> usize {
        self.written
    }

    /// The writer's failure, if a write failed.
    pub fn take_error(&mut self) -> Option<WriteError<W::Error>> {
        self.failed.take()
    }
}

impl<W: Write + ?Sized> Sink for WriteSink<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EmitError> {
        match write_frame(self.writer, bytes) {
            Ok(()) => {
                self.written = self.written.saturating_add(bytes.len());
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e);
                // Turned back into the writer's error by `write_message`.
                Err(EmitError::Invalid("the writer failed"))
            }
        }
    }
}

/// Encodes `message` straight into `writer` and returns its length. Nothing
/// is buffered; see [`WriteSink`] for what a failed write leaves.
pub fn write_message<'a, W: Write + ?Sized, M: Message<'a>>(
    writer: &mut W,
    message: &M,
) -> Result<usize, WriteError<W::Error>> {
    let mut sink = WriteSink::new(writer);
    let mut encoder = Encoder::new(&mut sink);
    let result = message.encode(&mut encoder);
    match (result, sink.take_error()) {
        (Ok(()), _) => Ok(sink.written()),
        (Err(_), Some(io)) => Err(io),
        (Err(e), None) => Err(WriteError::Encode(e)),
    }
}

/// One handshake frame read a `read` call at a time: for a driver that
/// reads only when the stream is ready and checks its deadline in between.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: [u8; MAX_FRAME_LEN],
    len: usize,
    got: usize,
}

impl FrameReader {
    /// A reader for a frame of `len` bytes (at most
    /// [`MAX_FRAME_LEN`]; a longer `len` is cut to it).
    pub const fn new(len: usize) -> Self {
        Self {
            buf: [0; MAX_FRAME_LEN],
            len: if len < MAX_FRAME_LEN {
                len
            } else {
                MAX_FRAME_LEN
            },
            got: 0,
        }
    }

    /// The frame's length.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty (zero-length).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes read so far.
    pub const fn received(&self) -> usize {
        self.got
    }

    /// One `read` call (which blocks until at least one byte comes, as
    /// `embedded_io::Read` says; call it when the stream is ready). Returns
    /// the whole frame once complete.
    pub fn read_some<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
    ) -> Result<Option<&[u8]>, ReadError<R::Error>> {
        let frame = self.buf.get_mut(..self.len).ok_or(ReadError::Overread)?;
        if self.got < frame.len() {
            self.got = read_into(r, frame, self.got)?;
        }
        Ok((self.got == frame.len()).then_some(&*frame))
    }

    /// Reads until the frame is whole, blocking as `r.read` does.
    pub fn read_all<R: Read + ?Sized>(&mut self, r: &mut R) -> Result<&[u8], ReadError<R::Error>> {
        let frame = self.buf.get_mut(..self.len).ok_or(ReadError::Overread)?;
        while self.got < frame.len() {
            self.got = read_into(r, frame, self.got)?;
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::wire::fifo::{self, OptionsFrame};
    use crate::wire::{
        CkptState, FifoOptions, FromGc, JobDetail, JobOptions, JobState, List, LocalFinish,
        ProcessName, StateCode, ToDaemon,
    };
    use crate::wire::{CrState, MigrateEntry, Request, RequestOp};
    use core::convert::Infallible;
    use embedded_io::{ErrorKind, ErrorType};

    /// A writer that takes at most `chunk` bytes a call and fails after
    /// `limit` bytes.
    struct Trickle {
        out: heapless::Vec<u8, 8192>,
        chunk: usize,
        limit: usize,
    }

    impl ErrorType for Trickle {
        type Error = ErrorKind;
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            if self.out.len() >= self.limit {
                return Err(ErrorKind::BrokenPipe);
            }
            let n = buf.len().min(self.chunk).min(self.limit - self.out.len());
            self.out.extend_from_slice(&buf[..n]).unwrap();
            Ok(n)
        }
        fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    /// A writer that accepts nothing.
    struct Full;

    impl ErrorType for Full {
        type Error = Infallible;
    }

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> Result<usize, Infallible> {
            Ok(0)
        }
        fn flush(&mut self) -> Result<(), Infallible> {
            Ok(())
        }
    }

    /// A reader that hands out one byte a call.
    struct OneByte<'a>(&'a [u8]);

    impl ErrorType for OneByte<'_> {
        type Error = Infallible;
    }

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(dst)) => {
                    *dst = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// A reader that lies about how much it read.
    struct Liar;

    impl ErrorType for Liar {
        type Error = Infallible;
    }

    impl Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            Ok(buf.len() + 1)
        }
    }

    #[test]
    fn write_message_streams_the_same_bytes_as_emit() {
        let entries = [MigrateEntry {
            vpid: 1,
            host: Some("node-b"),
            vpid_pref: -1,
            off_node: false,
        }];
        let restart = "x".repeat(4000);
        let names = [ProcessName { jobid: 9, vpid: 1 }; 3];
        fn check<'a, M: Message<'a>>(m: &M) {
            let mut w = Trickle {
                out: heapless::Vec::new(),
                chunk: 3,
                limit: usize::MAX,
            };
            let n = write_message(&mut w, m).unwrap();
            let want = emitted(m);
            assert_eq!(n, want.len());
            assert_eq!(w.out, want);
        }
        check(&RequestOp {
            jobid: 9,
            request: Request::Migrate(List::Items(&entries)),
        });
        check(&RequestOp {
            jobid: 9,
            request: Request::Restart {
                seq_num: 3,
                handle: Some(&restart),
            },
        });
        check(&FromGc::JobState(JobState {
            jobid: 9,
            state: StateCode::plain(CkptState::Running),
            detail: Some(JobDetail {
                handle: 4,
                options: JobOptions::default(),
                migrating: Some(List::Items(&names)),
            }),
        }));
        check(&ToDaemon::LocalFinish(LocalFinish {
            cr_state: CrState::Continue,
        }));
    }

    fn emitted<'a, M: Message<'a>>(m: &M) -> heapless::Vec<u8, 8192> {
        let mut v = heapless::Vec::new();
        m.emit_vec(&mut v).unwrap();
        v
    }

    #[test]
    fn write_errors_are_the_writers_or_the_encoders() {
        let m = ToDaemon::LocalFinish(LocalFinish {
            cr_state: CrState::Continue,
        });
        let mut w = Trickle {
            out: heapless::Vec::new(),
            chunk: 4,
            limit: 6,
        };
        assert_eq!(
            write_message(&mut w, &m),
            Err(WriteError::Io(ErrorKind::BrokenPipe))
        );
        assert_eq!(write_message(&mut Full, &m), Err(WriteError::WriteZero));
        let bad = RequestOp {
            jobid: 1,
            request: Request::Restart {
                seq_num: 0,
                handle: Some("nul\0inside"),
            },
        };
        let mut w = Trickle {
            out: heapless::Vec::new(),
            chunk: 64,
            limit: usize::MAX,
        };
        assert!(matches!(
            write_message(&mut w, &bad),
            Err(WriteError::Encode(EmitError::Invalid(_)))
        ));
        assert_eq!(write_frame(&mut Full, &[]), Ok(()));
    }

    #[test]
    fn frames_are_read_exactly_from_any_split() {
        let frame = OptionsFrame {
            options: FifoOptions {
                term: true,
                ..FifoOptions::default()
            },
            handle: 77,
        }
        .to_bytes();
        let mut stream = frame.clone();
        stream.extend_from_slice(&fifo::GO_AHEAD).unwrap();
        let mut r = OneByte(&stream);
        let mut buf = [0u8; OptionsFrame::LEN];
        read_frame(&mut r, &mut buf).unwrap();
        assert_eq!(&buf[..], &frame[..]);
        let mut fr = FrameReader::new(fifo::INT_FRAME_LEN);
        let mut reads = 0;
        let got = loop {
            reads += 1;
            if let Some(f) = fr.read_some(&mut r).unwrap() {
                break heapless::Vec::<u8, 4>::from_slice(f).unwrap();
            }
        };
        assert_eq!(reads, 4);
        assert_eq!(got, fifo::GO_AHEAD);
        assert_eq!(fifo::parse_go_ahead(&got), Ok(()));
        // The stream is empty now: EOF inside the next frame.
        assert_eq!(read_frame(&mut r, &mut [0u8; 4]), Err(ReadError::Eof));
        let mut fr = FrameReader::new(4);
        assert_eq!(fr.read_all(&mut &fifo::RELEASE[..]), Ok(&fifo::RELEASE[..]));
        assert_eq!(FrameReader::new(1000).len(), MAX_FRAME_LEN);
        assert_eq!(
            read_frame(&mut Liar, &mut [0u8; 4]),
            Err(ReadError::Overread)
        );
        assert_eq!(
            FrameReader::new(4).read_some(&mut Liar),
            Err(ReadError::Overread)
        );
    }
}
