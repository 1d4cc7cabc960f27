//! The Unix-socket link between a rank and its node daemon.
//!
//! The payloads are the DSS messages of docs/PROTOCOL.md §5, byte for byte; the
//! transport is ours (Open MPI used its runtime's messaging). Each frame is a
//! big-endian `u32` length (of what follows), a tag byte saying which
//! coordinator the message is for or from, and the payload:
//!
//! ```text
//! | len: u32 BE | tag: u8 | payload: len - 1 bytes |
//! ```
//!
//! Tags 1 and 2 carry Open MPI's messages; tag 3 is snapc's own, a rank
//! joining a daemon that did not start it ([`crate::join`]).
//!
//! Frames over [`MAX_FRAME`] bytes are refused rather than buffered.

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest frame accepted (length field value).
pub const MAX_FRAME: usize = 1 << 20;

/// Which coordinator a message is for or from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// The node daemon (local coordinator): LOCAL_FINISH, LOCAL_UPDATE.
    Snapc = 1,
    /// The global coordinator: REQUEST_OP, its answers, FIN_ACK.
    SnapcFull = 2,
    /// A rank joining its daemon and the daemon's answer (snapc's own,
    /// [`crate::join`]).
    Join = 3,
}

impl Tag {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Snapc),
            2 => Some(Self::SnapcFull),
            3 => Some(Self::Join),
            _ => None,
        }
    }
}

/// What went wrong on the link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Connecting, reading or writing failed.
    #[error("daemon socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon closed the connection.
    #[error("daemon socket: the daemon closed the connection")]
    Closed,
    /// A deadline passed.
    #[error("daemon socket: timed out after {0:?}")]
    Timeout(Duration),
    /// A frame that is not ours.
    #[error("daemon socket: malformed frame: {0}")]
    Malformed(String),
    /// The daemon refused this process as a rank of its job
    /// ([`crate::join`]), and why.
    #[error("daemon socket: refused: {0}")]
    Refused(String),
}

/// Encodes one frame.
pub fn encode_frame(tag: Tag, payload: &[u8]) -> Result<Vec<u8>, LinkError> {
    let len = payload.len() + 1;
    if len > MAX_FRAME {
        return Err(LinkError::Malformed(format!(
            "payload of {} bytes exceeds the frame limit",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(tag as u8);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits a byte stream into frames.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Adds bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived; an error for a frame that
    /// cannot be ours (the stream is then unusable).
    pub fn next_frame(&mut self) -> Option<Result<(Tag, Vec<u8>), LinkError>> {
        let header: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > MAX_FRAME {
            return Some(Err(LinkError::Malformed(format!("frame length {len}"))));
        }
        let frame = self.buf.get(4..4 + len)?;
        let tag = frame[0];
        let payload = frame[1..].to_vec();
        self.buf.drain(..4 + len);
        Some(
            Tag::from_byte(tag)
                .map(|t| (t, payload))
                .ok_or_else(|| LinkError::Malformed(format!("tag {tag}"))),
        )
    }
}

/// A connected rank-to-daemon link.
#[derive(Debug)]
pub struct DaemonLink {
    stream: UnixStream,
    reader: FrameReader,
}

fn wait(stream: &UnixStream, events: PollFlags, deadline: Instant) -> Result<bool, LinkError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(stream.as_fd(), events)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => {}
            Ok(_) => return Ok(true),
            // A signal (the checkpoint signal, say) wakes the wait: the caller decides.
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(LinkError::Io(e.into())),
        }
    }
}

impl DaemonLink {
    /// Connects to the daemon's socket.
    pub fn connect(path: &Path) -> Result<Self, LinkError> {
        let stream = UnixStream::connect(path)?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            reader: FrameReader::default(),
        })
    }

    /// Sends one message before `deadline`.
    pub fn send(&mut self, tag: Tag, payload: &[u8], deadline: Instant) -> Result<(), LinkError> {
        let frame = encode_frame(tag, payload)?;
        let started = Instant::now();
        let mut done = 0;
        while done < frame.len() {
            match self.stream.write(&frame[done..]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !wait(&self.stream, PollFlags::POLLOUT, deadline)?
                        && Instant::now() >= deadline
                    {
                        return Err(LinkError::Timeout(started.elapsed()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return Err(LinkError::Closed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next message, waiting until `deadline` at most; `Ok(None)` when
    /// the deadline passed or a signal interrupted the wait.
    pub fn recv(&mut self, deadline: Instant) -> Result<Option<(Tag, Vec<u8>)>, LinkError> {
        loop {
            if let Some(frame) = self.reader.next_frame() {
                return frame.map(Some);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => self.reader.push(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !wait(&self.stream, PollFlags::POLLIN, deadline)? {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A thread watching a link for the daemon closing it ([`DaemonLink::on_close`]);
/// stopped when dropped.
#[derive(Debug)]
pub struct CloseWatch {
    stop: Option<std::os::fd::OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CloseWatch {
    fn drop(&mut self) {
        // Closing the write end wakes the thread (POLLHUP on the read end).
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl DaemonLink {
    /// Runs `then` on a thread of its own as soon as the daemon closes the
    /// link (or it fails), however busy the application is elsewhere.
    /// Reading the link stays the caller's: the thread only polls a
    /// duplicate of it for the hang-up.
    pub fn on_close(&self, then: impl FnOnce() + Send + 'static) -> Result<CloseWatch, LinkError> {
        let link = self.stream.try_clone()?;
        let (stop_rx, stop_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| LinkError::Io(e.into()))?;
        let thread = std::thread::Builder::new()
            .name("snapc-link".into())
            .spawn(move || {
                loop {
                    let mut fds = [
                        // Nothing asked: the hang-up is reported anyway
                        // (a closed Unix stream peer shuts both ways).
                        PollFd::new(link.as_fd(), PollFlags::empty()),
                        PollFd::new(stop_rx.as_fd(), PollFlags::POLLIN),
                    ];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Err(Errno::EINTR) => continue,
                        Err(_) => return,
                        Ok(_) => {}
                    }
                    let fired = |fd: &PollFd<'_>| fd.any() != Some(false);
                    if fired(&fds[1]) {
                        return;
                    }
                    if fired(&fds[0]) {
                        then();
                        return;
                    }
                }
            })?;
        Ok(CloseWatch {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_watch_fires_when_the_daemon_closes_and_stops_when_dropped() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let link = DaemonLink::connect(&path).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let watch = link.on_close(move || tx.send(()).unwrap()).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "open");
        drop(peer);
        rx.recv_timeout(Duration::from_secs(10)).expect("fired");
        drop(watch);
        let link = DaemonLink::connect(&path).unwrap();
        let (_peer, _) = listener.accept().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        drop(link.on_close(move || tx.send(()).unwrap()).unwrap());
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "stopped"
        );
    }

    #[test]
    fn frames_split_across_reads_and_bad_frames_are_refused() {
        let a = encode_frame(Tag::Snapc, &[1, 2, 3]).unwrap();
        let b = encode_frame(Tag::SnapcFull, &[]).unwrap();
        let stream: Vec<u8> = a.iter().chain(&b).copied().collect();
        let mut r = FrameReader::default();
        for byte in &stream {
            r.push(std::slice::from_ref(byte));
        }
        assert_eq!(
            r.next_frame().unwrap().unwrap(),
            (Tag::Snapc, vec![1, 2, 3])
        );
        assert_eq!(r.next_frame().unwrap().unwrap(), (Tag::SnapcFull, vec![]));
        assert!(r.next_frame().is_none());
        let mut r = FrameReader::default();
        r.push(&[0, 0, 0, 2, 9, 0]);
        assert!(r.next_frame().unwrap().is_err(), "unknown tag");
        let mut r = FrameReader::default();
        r.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.next_frame().unwrap().is_err(), "oversized");
        let mut r = FrameReader::default();
        r.push(&[0, 0, 0, 0]);
        assert!(r.next_frame().unwrap().is_err(), "empty");
    }

    #[test]
    fn send_recv_and_close() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut link = DaemonLink::connect(&path).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let soon = || Instant::now() + Duration::from_secs(5);
        link.send(Tag::SnapcFull, &[8, 9], soon()).unwrap();
        let mut got = [0u8; 7];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, [0, 0, 0, 3, 2, 8, 9]);
        assert!(
            link.recv(Instant::now() + Duration::from_millis(20))
                .unwrap()
                .is_none(),
            "deadline"
        );
        peer.write_all(&encode_frame(Tag::SnapcFull, &[7]).unwrap())
            .unwrap();
        assert_eq!(link.recv(soon()).unwrap(), Some((Tag::SnapcFull, vec![7])));
        drop(peer);
        assert!(matches!(link.recv(soon()), Err(LinkError::Closed)));
    }
}
