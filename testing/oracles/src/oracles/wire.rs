//! Oracles of the wire layer: strict decoders (whatever parses re-encodes
//! to exactly the input), and messages and frames that encode, decode back
//! equal, and whose every strict prefix and one-byte extension is refused.

use crate::generators::wire::{Described, DescribedFrames};
use snapc_core::wire::{
    FifoName, FromGc, JobDetail, JobState, List, Message, OpEvent, OptionsFrame, ProcessName,
    Request, RequestOp, ToDaemon, ToGc, fifo,
};

/// The three DSS channels, each with its own decoder (the same command byte
/// means different messages on different channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Ranks and local coordinators to the global coordinator.
    ToGc,
    /// The global coordinator to local coordinators and ranks.
    FromGc,
    /// A process to its node daemon.
    ToDaemon,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Self; 3] = [Self::ToGc, Self::FromGc, Self::ToDaemon];

    /// [`parse_is_exact`] with this channel's decoder.
    pub fn parse_is_exact(self, data: &[u8]) -> bool {
        match self {
            Self::ToGc => parse_is_exact::<ToGc<'_>>(data),
            Self::FromGc => parse_is_exact::<FromGc<'_>>(data),
            Self::ToDaemon => parse_is_exact::<ToDaemon>(data),
        }
    }
}

/// Whatever `M` accepts must re-encode to exactly the input: the decoders are
/// strict, so a lossy or lenient parse shows up here.
pub fn parse_is_exact<'a, M: Message<'a>>(data: &'a [u8]) -> bool {
    match M::parse(data) {
        Ok(m) => {
            let mut out = vec![0u8; m.buffer_len()];
            let n = m.emit(&mut out).expect("an accepted message encodes");
            assert_eq!(&out[..n], data, "re-encoding differs from the input");
            true
        }
        Err(e) => {
            assert!(
                e.offset <= data.len(),
                "error offset {} beyond input {}",
                e.offset,
                data.len()
            );
            false
        }
    }
}

/// Target `decode_to_gc`.
pub fn decode_to_gc(data: &[u8]) {
    parse_is_exact::<ToGc<'_>>(data);
}

/// Target `decode_from_gc`.
pub fn decode_from_gc(data: &[u8]) {
    parse_is_exact::<FromGc<'_>>(data);
}

/// Target `decode_to_daemon`.
pub fn decode_to_daemon(data: &[u8]) {
    parse_is_exact::<ToDaemon>(data);
}

/// Target `fifo_frames`: every handshake frame decoder on the same bytes.
pub fn fifo_frames(data: &[u8]) {
    for debug in [false, true] {
        if let Ok(frame) = OptionsFrame::parse(data, debug) {
            assert_eq!(OptionsFrame::parse(&frame.to_bytes(), debug), Ok(frame));
        }
    }
    if let Ok(r) = fifo::parse_response(data) {
        assert_eq!(fifo::response_frame(r), data);
    }
    if let Ok(s) = fifo::parse_cr_state(data) {
        assert_eq!(fifo::cr_state_frame(s), data);
    }
    if fifo::parse_go_ahead(data).is_ok() {
        assert_eq!(fifo::GO_AHEAD, data);
    }
    if let Ok(v) = fifo::parse_release(data) {
        assert_eq!(v.to_ne_bytes(), data);
    }
}

/// Target `fifo_name`: accepted names print back to the same file name.
pub fn fifo_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = FifoName::parse(text) {
        let base = text.rsplit('/').next().unwrap_or(text);
        assert_eq!(name.file_name().as_str(), base);
    }
}

/// `emit_vec` is checked for messages up to this size.
const VEC_CAPACITY: usize = 8192;

/// Encodes `m` into `buf` (with `emit`, and `emit_vec` alike), decodes it
/// back and checks the value and the length; every strict prefix is
/// refused but the one `optional_tail` bytes short (a trailing field that
/// is optional), and so is the encoding with one more byte.
fn round_trip_one<'a, M: Message<'a> + PartialEq + std::fmt::Debug>(
    m: &M,
    buf: &'a mut Vec<u8>,
    optional_tail: usize,
) {
    let len = m.buffer_len();
    buf.clear();
    buf.resize(len + 1, 0xaa);
    assert_eq!(m.emit(&mut buf[..len]), Ok(len));
    if len <= VEC_CAPACITY {
        let mut v: heapless::Vec<u8, VEC_CAPACITY> = heapless::Vec::new();
        m.emit_vec(&mut v)
            .expect("emit_vec takes a message that fits");
        assert_eq!(&v[..], &buf[..len], "emit_vec and emit differ");
    }
    let buf: &'a [u8] = buf;
    assert_eq!(
        M::parse(&buf[..len]).as_ref(),
        Ok(m),
        "decode(encode(m)) != m"
    );
    for cut in 0..len {
        if M::parse(&buf[..cut]).is_ok() {
            assert_eq!(cut, len - optional_tail, "a prefix of {cut} bytes parsed");
        }
    }
    assert!(M::parse(buf).is_err(), "one byte more parsed");
}

/// `m` round trips as its own type, and wrapped as its channel's message.
fn both<'a, M, W>(
    m: M,
    wrap: impl FnOnce(M) -> W,
    part: &'a mut Vec<u8>,
    buf: &'a mut Vec<u8>,
    optional_tail: usize,
) where
    M: Message<'a> + PartialEq + std::fmt::Debug + Copy,
    W: Message<'a> + PartialEq + std::fmt::Debug,
{
    round_trip_one(&m, part, optional_tail);
    round_trip_one(&wrap(m), buf, optional_tail);
}

/// Target `roundtrip_messages` (and the property tests): the message `d`
/// describes, encoded on its channel (and as its own type where it has
/// one), round trips as [`round_trip_one`] checks. Returns the channel and
/// the bytes on it.
pub fn round_trip(d: &Described<'_>) -> (Channel, Vec<u8>) {
    let mut buf = Vec::new();
    let mut part = Vec::new();
    let channel = match d {
        Described::Request {
            jobid,
            event,
            seq,
            handle,
            entries,
        } => {
            let request = match event {
                OpEvent::Restart => Request::Restart {
                    seq_num: *seq,
                    handle: handle.map(|h| h.0),
                },
                OpEvent::Migrate => Request::Migrate(List::Items(entries)),
                e => Request::without_args(*e).expect("argument-less event"),
            };
            let m = RequestOp {
                jobid: *jobid,
                request,
            };
            both(m, ToGc::RequestOp, &mut part, &mut buf, 0);
            Channel::ToGc
        }
        Described::Orted(m) => {
            both(*m, ToGc::OrtedState, &mut part, &mut buf, 0);
            Channel::ToGc
        }
        Described::Response(m) if m.op_event == OpEvent::FinAck => {
            round_trip_one(&FromGc::FinAck, &mut buf, 0);
            Channel::FromGc
        }
        Described::Response(m) => {
            both(*m, FromGc::OpResponse, &mut part, &mut buf, 0);
            Channel::FromGc
        }
        Described::FinAck => {
            round_trip_one(&FromGc::FinAck, &mut buf, 0);
            Channel::FromGc
        }
        Described::Job { jobid, state, long } => {
            let procs: &[ProcessName] = long
                .as_ref()
                .and_then(|l| l.2.as_deref())
                .unwrap_or_default();
            let m = JobState {
                jobid: *jobid,
                state: *state,
                detail: long.as_ref().map(|(handle, options, migrating)| JobDetail {
                    handle: *handle,
                    options: *options,
                    migrating: migrating.as_ref().map(|_| List::Items(procs)),
                }),
            };
            both(m, FromGc::JobState, &mut part, &mut buf, 0);
            Channel::FromGc
        }
        Described::Finish(m) => {
            both(*m, ToDaemon::LocalFinish, &mut part, &mut buf, 0);
            Channel::ToDaemon
        }
        Described::Update(m) => {
            // Without its optional debug flag the message is whole (6 bytes shorter).
            let tail = if m.debug.is_some() { 6 } else { 0 };
            both(*m, ToDaemon::LocalUpdate, &mut part, &mut buf, tail);
            Channel::ToDaemon
        }
    };
    buf.pop();
    (channel, buf)
}

/// Target `roundtrip_frames`: options frames and FIFO names, encode then decode.
pub fn round_trip_frames(d: &DescribedFrames) {
    let frame = d.frame;
    let debug = frame.options.debugger.is_some();
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), frame.buffer_len());
    assert_eq!(OptionsFrame::parse(&bytes, debug), Ok(frame));
    assert!(OptionsFrame::parse(&bytes, !debug).is_err());
    for name in [d.names.prog_read(), d.names.prog_write()] {
        assert_eq!(FifoName::parse(&name.file_name()), Ok(name));
    }
}
