//! The handshake's named pipes, done safely (docs/PROTOCOL.md §4 and §7).
//!
//! - The pipe directory is private: created 0700, and used only if it is a
//!   real directory (not a symlink) owned by this user and writable by nobody
//!   else.
//! - FIFOs are created 0600 and opened with `O_NOFOLLOW | O_CLOEXEC`, then
//!   checked to be FIFOs owned by this user. An existing name is reused only
//!   after that check; a symlink or foreign file is never followed, written or
//!   removed.
//! - Opens, reads and writes never block without a deadline: every fd is
//!   non-blocking and waits go through `poll`. Short transfers continue, EINTR
//!   retries, EOF and EPIPE mean the peer is gone.
//! - A [`Channel`] closes its fds when dropped, whatever ended the
//!   handshake; the application's side also unlinks the FIFOs it created,
//!   a name only while it still refers to the FIFO it created or checked.
//!   The coordinator's side leaves them to the process (they tell the next
//!   coordinator that it is still ending its handshake).
//! - One handshake, one coordinator: each side holds an advisory `flock`
//!   on the FIFO it reads, taken as soon as it has opened it. The
//!   application's lock on `prog_read` says "this handshake is live" until
//!   it has read its release ([`Channel::release_app_lock`]); the local
//!   coordinator's lock on `prog_write` is its claim on the handshake,
//!   taken before it writes anything: a second coordinator cannot take it
//!   and writes nothing ([`FifoError::Claimed`]). Neither lock changes a
//!   byte on the FIFOs, and a peer that takes none (Open MPI's) is not
//!   affected by them (ARCHITECTURE.md, "One handshake at a time").
//! - A [`Channel`] is also an `embedded-io` byte stream (`Read`,
//!   `ReadReady`, `Write`, `WriteReady`), each blocking call bounded by
//!   [`Channel::set_io_timeout`], so `snapc_core::app::blocking` and
//!   `snapc_core::wire::io` run over real FIFOs as over any other stream.

pub use crate::target::FileKey;
use nix::errno::Errno;
use nix::fcntl::{FlockArg, OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{Mode, SFlag, fstat, lstat};
use nix::unistd::{Uid, mkdir, mkfifo, unlink};
use snapc_core::wire::{ChannelNames, FifoName};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a FIFO operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FifoError {
    /// The pipe directory cannot be used.
    #[error("pipe directory {path}: {reason}")]
    PipeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A name is taken by something that is not this user's FIFO.
    #[error("{path}: {reason}; refusing to use it")]
    Unsafe {
        /// The name.
        path: PathBuf,
        /// What is there instead.
        reason: String,
    },
    /// A system call failed.
    #[error("{path}: {op}: {errno}")]
    Sys {
        /// The file.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// A deadline passed.
    #[error("{path}: timed out after {after:?} waiting to {what}")]
    Timeout {
        /// The file.
        path: PathBuf,
        /// What was awaited.
        what: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The other side closed its end (EOF or EPIPE).
    #[error("{path}: the peer closed the FIFO")]
    PeerGone {
        /// The file.
        path: PathBuf,
    },
    /// Another local coordinator holds this handshake (its lock on
    /// `prog_write`); nothing was written.
    #[error("{path}: another coordinator holds this handshake")]
    Claimed {
        /// The FIFO.
        path: PathBuf,
        /// Its identity, to find the holder.
        key: FileKey,
    },
    /// The name no longer refers to the FIFO that was checked before.
    #[error("{path}: replaced since it was found; refusing to use it")]
    Replaced {
        /// The name.
        path: PathBuf,
    },
}

/// The private directory holding the handshake FIFOs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeDir {
    path: PathBuf,
}

impl PipeDir {
    /// `SNAPC_PIPE_DIR`, else `$XDG_RUNTIME_DIR/snapc`, else `snapc-<uid>`
    /// in the temporary directory; created if missing, then checked.
    pub fn from_env() -> Result<Self, FifoError> {
        Self::open(Self::default_path(
            std::env::var_os("SNAPC_PIPE_DIR").map(PathBuf::from),
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        ))
    }

    /// The directory [`from_env`](Self::from_env) would use, given the two variables.
    pub fn default_path(pipe_dir: Option<PathBuf>, runtime_dir: Option<PathBuf>) -> PathBuf {
        pipe_dir
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| {
                runtime_dir
                    .filter(|p| p.is_absolute())
                    .map(|p| p.join("snapc"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join(format!("snapc-{}", Uid::effective())))
    }

    /// Uses `path`, creating it 0700 if it does not exist.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, FifoError> {
        let path = path.into();
        match mkdir(&path, Mode::S_IRWXU) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(FifoError::Sys {
                    path,
                    op: "mkdir",
                    errno,
                });
            }
        }
        let st = lstat(&path).map_err(|errno| FifoError::Sys {
            path: path.clone(),
            op: "lstat",
            errno,
        })?;
        let bad = |reason: String| {
            Err(FifoError::PipeDir {
                path: path.clone(),
                reason,
            })
        };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            return bad("not a directory (symlinks are not followed)".into());
        }
        if st.st_uid != Uid::effective().as_raw() {
            return bad(format!("owned by uid {}, not by this user", st.st_uid));
        }
        if st.st_mode & 0o022 != 0 {
            return bad(format!(
                "mode {:o} lets others write to it",
                st.st_mode & 0o777
            ));
        }
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the FIFO `name` lives.
    pub fn fifo_path(&self, name: FifoName) -> PathBuf {
        self.path.join(name.file_name().as_str())
    }
}

/// Identity of a FIFO this side created or checked: unlink only that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl From<FileId> for FileKey {
    fn from(id: FileId) -> Self {
        Self {
            dev: id.dev,
            ino: id.ino,
        }
    }
}

/// Identity, change time and kind of the file at `path` (not followed).
pub fn file_key(path: &Path) -> Option<(FileKey, (i64, i64), bool)> {
    let st = lstat(path).ok()?;
    let fifo = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO;
    Some((
        FileKey {
            dev: st.st_dev,
            ino: st.st_ino,
        },
        (st.st_ctime, st.st_ctime_nsec),
        fifo,
    ))
}

fn check_fifo(path: &Path, st: &nix::sys::stat::FileStat) -> Result<FileId, FifoError> {
    let unsafe_file = |reason: String| {
        Err(FifoError::Unsafe {
            path: path.to_owned(),
            reason,
        })
    };
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFIFO {
        let what = match kind {
            SFlag::S_IFLNK => "a symlink",
            SFlag::S_IFREG => "a regular file",
            SFlag::S_IFDIR => "a directory",
            _ => "not a FIFO",
        };
        return unsafe_file(what.into());
    }
    if st.st_uid != Uid::effective().as_raw() {
        return unsafe_file(format!("a FIFO owned by uid {}", st.st_uid));
    }
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Creates the FIFO at `path` (0600), or accepts an existing one after
/// checking it is this user's FIFO.
fn create_fifo(path: &Path) -> Result<(), FifoError> {
    match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => {
            let st = lstat(path).map_err(|errno| FifoError::Sys {
                path: path.to_owned(),
                op: "lstat",
                errno,
            })?;
            check_fifo(path, &st).map(drop)
        }
        Err(errno) => Err(FifoError::Sys {
            path: path.to_owned(),
            op: "mkfifo",
            errno,
        }),
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// First pause while waiting for the peer to create or open a FIFO; each
/// retry doubles it, up to [`OPEN_POLL_MAX`]. A peer that is already on its
/// way (the usual case: it was just signalled, or just saw the names) is
/// caught within microseconds; one that is not costs about ten more wakeups
/// at the start, then the same as a fixed poll.
const OPEN_POLL_MIN: Duration = Duration::from_micros(2);

/// Longest pause between two open attempts (Open MPI's local coordinator
/// polls every millisecond).
const OPEN_POLL_MAX: Duration = Duration::from_millis(1);

/// Longest wait for a cue between two open attempts. The cue comes once
/// the peer has done what the open waits for (the local coordinator opens
/// `prog_write` before it writes the options): the attempts in between only
/// guard against a peer that never gives it, and each costs the process a
/// wakeup while its coordinator serves others first.
const OPEN_CUE_MAX: Duration = Duration::from_millis(100);

/// One end of a FIFO: a checked, non-blocking, close-on-exec fd.
#[derive(Debug)]
pub struct FifoEnd {
    fd: OwnedFd,
    path: PathBuf,
    id: FileId,
}

impl FifoEnd {
    /// Opens `path` with `flags` (plus non-blocking, no-follow, close-on-exec),
    /// retrying while the peer has not opened the other end (ENXIO), and
    /// checks what was opened.
    ///
    /// Between attempts it sleeps with exponential backoff, or, given `cue`
    /// (an fd of ours that becomes readable once the peer has done what the
    /// open waits for), waits for that fd to become readable, for at most
    /// [`OPEN_CUE_MAX`] at a time.
    fn open(
        path: &Path,
        flags: OFlag,
        deadline: Instant,
        what: &'static str,
        mut cue: Option<&FifoEnd>,
    ) -> Result<Self, FifoError> {
        let flags = flags | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let started = Instant::now();
        let mut pause = OPEN_POLL_MIN;
        let fd = loop {
            match open(path, flags, Mode::empty()) {
                Ok(fd) => break fd,
                Err(Errno::EINTR) => {}
                Err(Errno::ENXIO | Errno::ENOENT) if Instant::now() < deadline => match cue {
                    Some(c) => {
                        let wait = OPEN_CUE_MAX.min(remaining(deadline));
                        // A readable cue ends the wait; the next open attempt
                        // tells what happened. Once it was readable, the
                        // retries back off instead (it stays readable).
                        if c.wait(PollFlags::POLLIN, Instant::now() + wait, what)
                            .is_ok()
                        {
                            cue = None;
                        }
                    }
                    None => {
                        std::thread::sleep(pause.min(remaining(deadline)));
                        pause = (pause * 2).min(OPEN_POLL_MAX);
                    }
                },
                Err(Errno::ENXIO | Errno::ENOENT) => {
                    return Err(FifoError::Timeout {
                        path: path.to_owned(),
                        what,
                        after: started.elapsed(),
                    });
                }
                Err(Errno::ELOOP) => {
                    return Err(FifoError::Unsafe {
                        path: path.to_owned(),
                        reason: "a symlink".into(),
                    });
                }
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: path.to_owned(),
                        op: "open",
                        errno,
                    });
                }
            }
        };
        let st = fstat(&fd).map_err(|errno| FifoError::Sys {
            path: path.to_owned(),
            op: "fstat",
            errno,
        })?;
        let id = check_fifo(path, &st)?;
        Ok(Self {
            fd,
            path: path.to_owned(),
            id,
        })
    }

    /// Waits until the fd is ready for `events` or the deadline passes.
    fn wait(
        &self,
        events: PollFlags,
        deadline: Instant,
        what: &'static str,
    ) -> Result<(), FifoError> {
        let started = Instant::now();
        loop {
            let left = remaining(deadline);
            // Round up so that a sub-millisecond remainder still waits.
            let ms = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), events)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) if left.is_zero() => {
                    return Err(FifoError::Timeout {
                        path: self.path.clone(),
                        what,
                        after: started.elapsed(),
                    });
                }
                Ok(_) => {
                    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                    if revents.intersects(events | PollFlags::POLLHUP | PollFlags::POLLERR) {
                        return Ok(());
                    }
                }
                Err(Errno::EINTR) => {}
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: self.path.clone(),
                        op: "poll",
                        errno,
                    });
                }
            }
        }
    }

    /// Reads exactly `buf.len()` bytes before `deadline`.
    pub fn read_exact(&self, buf: &mut [u8], deadline: Instant) -> Result<(), FifoError> {
        self.read_exact_from(buf, deadline, false)
    }

    /// Reads exactly `buf.len()` bytes before `deadline` from an end that
    /// never reads as closed before its bytes come (the application's
    /// `prog_read`, open read-write): the read is tried first, and waited
    /// for only when nothing is there yet.
    pub fn read_exact_eager(&self, buf: &mut [u8], deadline: Instant) -> Result<(), FifoError> {
        self.read_exact_from(buf, deadline, true)
    }

    /// Both reads: `eager` tries the read before waiting for it.
    fn read_exact_from(
        &self,
        buf: &mut [u8],
        deadline: Instant,
        eager: bool,
    ) -> Result<(), FifoError> {
        let mut done = 0;
        while done < buf.len() {
            if !eager {
                self.wait(PollFlags::POLLIN, deadline, "read")?;
            }
            match nix::unistd::read(&self.fd, &mut buf[done..]) {
                Ok(0) => {
                    return Err(FifoError::PeerGone {
                        path: self.path.clone(),
                    });
                }
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) if eager => self.wait(PollFlags::POLLIN, deadline, "read")?,
                Err(Errno::EAGAIN) => {}
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: self.path.clone(),
                        op: "read",
                        errno,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads what is available now, without waiting: `Ok(0)` when nothing
    /// is; EOF is [`FifoError::PeerGone`].
    pub fn read_available(&self, buf: &mut [u8]) -> Result<usize, FifoError> {
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Ok(0) if !buf.is_empty() => {
                    return Err(FifoError::PeerGone {
                        path: self.path.clone(),
                    });
                }
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Ok(0),
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: self.path.clone(),
                        op: "read",
                        errno,
                    });
                }
            }
        }
    }

    /// The fd, for a caller's own `poll`.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The identity of the FIFO this end is open on.
    pub fn key(&self) -> FileKey {
        self.id.into()
    }

    /// Takes an exclusive `flock` on the FIFO without waiting: `Ok(true)`
    /// taken, `Ok(false)` held by someone else. Where locks are not
    /// supported the error is returned and the caller goes on without.
    fn try_lock(&self) -> Result<bool, Errno> {
        #[allow(deprecated)] // nix's `Flock` wrapper would own the fd
        match nix::fcntl::flock(self.fd.as_raw_fd(), FlockArg::LockExclusiveNonblock) {
            Ok(()) => Ok(true),
            Err(Errno::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes all of `buf` before `deadline`. The write is tried first
    /// (a handshake's frames fit an empty FIFO), and waited for only when
    /// the FIFO is full.
    pub fn write_all(&self, buf: &[u8], deadline: Instant) -> Result<(), FifoError> {
        let mut done = 0;
        while done < buf.len() {
            match nix::unistd::write(&self.fd, &buf[done..]) {
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => self.wait(PollFlags::POLLOUT, deadline, "write")?,
                Err(Errno::EPIPE) => {
                    return Err(FifoError::PeerGone {
                        path: self.path.clone(),
                    });
                }
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: self.path.clone(),
                        op: "write",
                        errno,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Which side of the handshake a [`Channel`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The app coordinator: creates the FIFOs, reads `prog_read`, writes `prog_write`.
    App,
    /// The local coordinator: waits for the FIFOs, writes `prog_read`, reads `prog_write`.
    Local,
}

/// Both FIFOs of one handshake, from one side. Dropping it closes both fds;
/// the application's side also unlinks both names (if they still refer to
/// these FIFOs). The local coordinator's side leaves them to the process,
/// which removes them at its teardown: names that outlive the coordinator
/// tell the next one that the process is still ending that handshake
/// ([`remove_names`](Self::remove_names) for a process that is gone).
#[derive(Debug)]
pub struct Channel {
    /// What this side reads.
    pub rx: FifoEnd,
    /// What this side writes.
    pub tx: FifoEnd,
    /// The bound on each blocking `embedded-io` call.
    io_timeout: Duration,
    /// Unlink the names when dropped (the application's side).
    owner: bool,
}

/// The default bound on one blocking `embedded-io` call on a [`Channel`]:
/// Open MPI's 20 s, as for the handshake's reads and writes.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

impl Channel {
    /// The app coordinator's side: create both FIFOs, open `prog_read`
    /// read-write (so the open cannot block), then `prog_write` write-only,
    /// which succeeds once the local coordinator has opened it for reading.
    pub fn open_app(
        dir: &PipeDir,
        names: ChannelNames,
        deadline: Instant,
    ) -> Result<Self, FifoError> {
        let read_path = dir.fifo_path(names.prog_read());
        let write_path = dir.fifo_path(names.prog_write());
        let cleanup = |e: FifoError| {
            unlink_if_fifo(&read_path);
            unlink_if_fifo(&write_path);
            e
        };
        create_fifo(&read_path).map_err(cleanup)?;
        create_fifo(&write_path).map_err(cleanup)?;
        let rx = FifoEnd::open(&read_path, OFlag::O_RDWR, deadline, "open prog_read", None)
            .map_err(cleanup)?;
        // "This handshake is live" for other coordinators, until the
        // release is read; nobody else ever locks prog_read.
        match rx.try_lock() {
            Ok(true) => {}
            Ok(false) => log::debug!("{}: already locked", read_path.display()),
            Err(e) => log::debug!("{}: no lock ({e})", read_path.display()),
        }
        // The local coordinator opens prog_write for reading before it opens
        // prog_read and writes the options there: their arrival is the cue
        // to try again (they stay in the FIFO for the first read).
        let tx = FifoEnd::open(
            &write_path,
            OFlag::O_WRONLY,
            deadline,
            "for the local coordinator to open",
            Some(&rx),
        )
        .map_err(cleanup)?;
        Ok(Self {
            rx,
            tx,
            io_timeout: IO_TIMEOUT,
            owner: true,
        })
    }

    /// The local coordinator's side: wait until both names exist, open
    /// `prog_write` read-only, claim the handshake (an exclusive `flock` on
    /// it, held until the channel is dropped; [`FifoError::Claimed`] if
    /// another coordinator holds it), then open `prog_read` write-only.
    pub fn open_local(
        dir: &PipeDir,
        names: ChannelNames,
        deadline: Instant,
    ) -> Result<Self, FifoError> {
        Self::open_local_checked(dir, names, deadline, None)
    }

    /// As [`open_local`](Self::open_local), and each FIFO opened must be the
    /// one `expect` names (`prog_read`, `prog_write`), as found earlier:
    /// else [`FifoError::Replaced`].
    pub fn open_local_checked(
        dir: &PipeDir,
        names: ChannelNames,
        deadline: Instant,
        expect: Option<[FileKey; 2]>,
    ) -> Result<Self, FifoError> {
        let read_path = dir.fifo_path(names.prog_read());
        let write_path = dir.fifo_path(names.prog_write());
        let check = |end: &FifoEnd, want: Option<FileKey>| match want {
            Some(k) if end.key() != k => Err(FifoError::Replaced {
                path: end.path.clone(),
            }),
            _ => Ok(()),
        };
        let rx = FifoEnd::open(
            &write_path,
            OFlag::O_RDONLY,
            deadline,
            "for the process to create its FIFOs",
            None,
        )?;
        check(&rx, expect.map(|[_, w]| w))?;
        match rx.try_lock() {
            Ok(true) => {}
            Ok(false) => {
                return Err(FifoError::Claimed {
                    key: rx.key(),
                    path: write_path,
                });
            }
            // A file system without locks: go on unprotected, as before.
            Err(e) => log::debug!("{}: no lock ({e})", write_path.display()),
        }
        let tx = FifoEnd::open(
            &read_path,
            OFlag::O_WRONLY,
            deadline,
            "for the process to open its FIFOs",
            None,
        )?;
        check(&tx, expect.map(|[r, _]| r))?;
        Ok(Self {
            rx,
            tx,
            io_timeout: IO_TIMEOUT,
            owner: false,
        })
    }

    /// The application's side, once its release is read: other
    /// coordinators may now take its names for ending (the lock on
    /// `prog_read` goes; the fds stay until the teardown).
    pub fn release_app_lock(&self) {
        #[allow(deprecated)] // as in `FifoEnd::try_lock`
        let _ = nix::fcntl::flock(self.rx.fd.as_raw_fd(), FlockArg::Unlock);
    }

    /// Bounds each blocking `embedded-io` read or write: past it the call
    /// fails with [`FifoError::Timeout`] ([`IO_TIMEOUT`] by default).
    pub fn set_io_timeout(&mut self, timeout: Duration) {
        self.io_timeout = timeout;
    }

    fn ready(end: &FifoEnd, events: PollFlags) -> Result<bool, FifoError> {
        loop {
            let mut fds = [PollFd::new(end.fd.as_fd(), events)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(_) => {
                    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                    return Ok(revents.intersects(events | PollFlags::POLLHUP | PollFlags::POLLERR));
                }
                Err(Errno::EINTR) => {}
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: end.path.clone(),
                        op: "poll",
                        errno,
                    });
                }
            }
        }
    }
}

impl embedded_io::Error for FifoError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            Self::PeerGone { .. } => ErrorKind::BrokenPipe,
            Self::Timeout { .. } => ErrorKind::TimedOut,
            Self::Unsafe { .. } => ErrorKind::PermissionDenied,
            Self::Sys { errno, .. } => std::io::Error::from(*errno).kind().into(),
            _ => ErrorKind::Other,
        }
    }
}

impl embedded_io::ErrorType for Channel {
    type Error = FifoError;
}

impl embedded_io::Read for Channel {
    /// Blocks until bytes come (at most the I/O timeout); `Ok(0)` is EOF:
    /// the local coordinator closed its end.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, FifoError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.io_timeout;
        loop {
            self.rx.wait(PollFlags::POLLIN, deadline, "read")?;
            match self.rx.read_available(buf) {
                Ok(0) => {}
                Ok(n) => return Ok(n),
                Err(FifoError::PeerGone { .. }) => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }
}

impl embedded_io::ReadReady for Channel {
    fn read_ready(&mut self) -> Result<bool, FifoError> {
        Self::ready(&self.rx, PollFlags::POLLIN)
    }
}

impl embedded_io::Write for Channel {
    /// Writes what the FIFO takes, blocking (at most the I/O timeout) until
    /// it takes something; EPIPE is [`FifoError::PeerGone`].
    fn write(&mut self, buf: &[u8]) -> Result<usize, FifoError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.io_timeout;
        loop {
            self.tx.wait(PollFlags::POLLOUT, deadline, "write")?;
            match nix::unistd::write(&self.tx.fd, buf) {
                Ok(n) if n > 0 => return Ok(n),
                Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(Errno::EPIPE) => {
                    return Err(FifoError::PeerGone {
                        path: self.tx.path.clone(),
                    });
                }
                Err(errno) => {
                    return Err(FifoError::Sys {
                        path: self.tx.path.clone(),
                        op: "write",
                        errno,
                    });
                }
            }
        }
    }

    /// FIFOs have no buffer of ours to flush.
    fn flush(&mut self) -> Result<(), FifoError> {
        Ok(())
    }
}

impl embedded_io::WriteReady for Channel {
    fn write_ready(&mut self) -> Result<bool, FifoError> {
        Self::ready(&self.tx, PollFlags::POLLOUT)
    }
}

impl Channel {
    /// Whether the peer closed the end it writes to (this side's read end
    /// reports a hang-up): it ended its side, or it is gone.
    pub fn peer_closed(&self) -> bool {
        let mut fds = [PollFd::new(self.rx.fd.as_fd(), PollFlags::empty())];
        loop {
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(_) => {
                    return fds[0]
                        .revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
                }
                Err(Errno::EINTR) => {}
                // Cannot tell: as if it had (the caller then looks further).
                Err(_) => return true,
            }
        }
    }

    /// Unlinks both names if they still refer to these FIFOs: for a
    /// coordinator whose process is gone and cannot remove them itself.
    pub fn remove_names(&self) {
        for end in [&self.rx, &self.tx] {
            unlink_if_same(&end.path, end.id);
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.owner {
            self.remove_names();
        }
    }
}

fn unlink_if_same(path: &Path, id: FileId) {
    if let Ok(st) = lstat(path)
        && (FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }) == id
    {
        let _ = unlink(path);
    }
}

/// Removes `path` if, and only if, it is this user's FIFO (a stale one from
/// an earlier handshake, say); anything else there is left alone.
pub fn remove_stale(path: &Path) {
    unlink_if_fifo(path);
}

/// Removes `path` only if it is this user's FIFO.
fn unlink_if_fifo(path: &Path) {
    if let Ok(st) = lstat(path)
        && let Ok(id) = check_fifo(path, &st)
    {
        unlink_if_same(path, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> (tempfile::TempDir, PipeDir) {
        let t = tempfile::tempdir().unwrap();
        let d = PipeDir::open(t.path().join("pipes")).unwrap();
        (t, d)
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn pipe_dir_is_created_private_and_checked() {
        let t = tempfile::tempdir().unwrap();
        let d = PipeDir::open(t.path().join("p")).unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            PipeDir::open(&open),
            Err(FifoError::PipeDir { .. })
        ));
        let link = t.path().join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        assert!(matches!(
            PipeDir::open(&link),
            Err(FifoError::PipeDir { .. })
        ));
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            PipeDir::open(&file),
            Err(FifoError::PipeDir { .. })
        ));
    }

    #[test]
    fn default_path_order() {
        let p = PipeDir::default_path(Some("/a".into()), Some("/run/user/1".into()));
        assert_eq!(p, PathBuf::from("/a"));
        let p = PipeDir::default_path(None, Some("/run/user/1".into()));
        assert_eq!(p, PathBuf::from("/run/user/1/snapc"));
        let p = PipeDir::default_path(None, None);
        assert!(p.starts_with(std::env::temp_dir()));
    }

    #[test]
    fn both_sides_exchange_frames_and_unlink() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 4242, n: 0 };
        let d2 = d.clone();
        let lc = std::thread::spawn(move || {
            let ch = Channel::open_local(&d2, names, soon(5000)).unwrap();
            ch.tx.write_all(&[1, 2, 3, 4], soon(5000)).unwrap();
            let mut buf = [0u8; 4];
            ch.rx.read_exact(&mut buf, soon(5000)).unwrap();
            buf
        });
        let ch = Channel::open_app(&d, names, soon(5000)).unwrap();
        let mut buf = [0u8; 4];
        ch.rx.read_exact(&mut buf, soon(5000)).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        ch.tx.write_all(&[9, 8, 7, 6], soon(5000)).unwrap();
        assert_eq!(lc.join().unwrap(), [9, 8, 7, 6]);
        drop(ch);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "FIFOs left behind"
        );
    }

    #[test]
    fn app_open_times_out_and_cleans_up_without_a_peer() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 7, n: 1 };
        let err = Channel::open_app(&d, names, soon(30)).unwrap_err();
        assert!(matches!(err, FifoError::Timeout { .. }), "{err}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn local_open_times_out_when_the_process_never_creates_fifos() {
        let (_t, d) = dir();
        let err = Channel::open_local(&d, ChannelNames { pid: 7, n: 0 }, soon(20)).unwrap_err();
        assert!(matches!(err, FifoError::Timeout { .. }), "{err}");
    }

    #[test]
    fn read_times_out_and_eof_is_peer_gone() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 11, n: 0 };
        let d2 = d.clone();
        let lc = std::thread::spawn(move || Channel::open_local(&d2, names, soon(5000)).unwrap());
        let app = Channel::open_app(&d, names, soon(5000)).unwrap();
        let lc = lc.join().unwrap();
        let mut buf = [0u8; 4];
        let err = lc.rx.read_exact(&mut buf, soon(20)).unwrap_err();
        assert!(matches!(err, FifoError::Timeout { .. }), "{err}");
        // A short write, then the app goes away: the rest never comes.
        app.tx.write_all(&[1, 2], soon(1000)).unwrap();
        drop(app);
        let err = lc.rx.read_exact(&mut buf, soon(1000)).unwrap_err();
        assert!(matches!(err, FifoError::PeerGone { .. }), "{err}");
    }

    #[test]
    fn write_to_a_vanished_reader_is_peer_gone_not_sigpipe() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 12, n: 0 };
        let d2 = d.clone();
        let lc = std::thread::spawn(move || Channel::open_local(&d2, names, soon(5000)).unwrap());
        let app = Channel::open_app(&d, names, soon(5000)).unwrap();
        drop(lc.join().unwrap());
        let err = app.tx.write_all(&[0; 4], soon(1000)).unwrap_err();
        assert!(matches!(err, FifoError::PeerGone { .. }), "{err}");
    }

    #[test]
    fn foreign_files_at_a_name_are_refused_and_kept() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 13, n: 0 };
        let target = d.path().join("victim");
        std::fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, d.fifo_path(names.prog_read())).unwrap();
        let err = Channel::open_app(&d, names, soon(100)).unwrap_err();
        assert!(matches!(err, FifoError::Unsafe { .. }), "{err}");
        assert!(
            std::fs::symlink_metadata(d.fifo_path(names.prog_read())).is_ok(),
            "symlink removed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");

        let names = ChannelNames { pid: 13, n: 1 };
        std::fs::write(d.fifo_path(names.prog_write()), b"regular").unwrap();
        let err = Channel::open_app(&d, names, soon(100)).unwrap_err();
        assert!(matches!(err, FifoError::Unsafe { .. }), "{err}");
        assert_eq!(
            std::fs::read(d.fifo_path(names.prog_write())).unwrap(),
            b"regular"
        );
    }

    #[test]
    fn one_coordinator_claims_a_handshake_and_the_application_marks_it_live() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 15, n: 0 };
        let d2 = d.clone();
        let lc = std::thread::spawn(move || Channel::open_local(&d2, names, soon(5000)).unwrap());
        let app = Channel::open_app(&d, names, soon(5000)).unwrap();
        let lc = lc.join().unwrap();
        let me = std::process::id();
        // The application's lock on prog_read, the coordinator's on prog_write.
        assert_eq!(
            crate::target::flock_holders(&[app.rx.key()]),
            vec![(me, app.rx.key())]
        );
        assert_eq!(
            crate::target::flock_holders(&[lc.rx.key()]),
            vec![(me, lc.rx.key())]
        );
        // A second coordinator gets nothing, and writes nothing.
        let err = Channel::open_local(&d, names, soon(1000)).unwrap_err();
        assert!(matches!(err, FifoError::Claimed { .. }), "{err}");
        // Found earlier, replaced since: refused.
        let other = [app.tx.key(), app.rx.key()];
        let err = Channel::open_local_checked(&d, names, soon(1000), Some(other)).unwrap_err();
        assert!(matches!(err, FifoError::Replaced { .. }), "{err}");
        lc.tx.write_all(&[1, 2, 3, 4], soon(1000)).unwrap();
        let mut buf = [0u8; 4];
        app.rx.read_exact(&mut buf, soon(1000)).unwrap();
        assert_eq!(buf, [1, 2, 3, 4], "only the first coordinator's bytes");
        app.release_app_lock();
        assert!(crate::target::flock_holders(&[app.rx.key()]).is_empty());
        drop(lc);
        assert!(crate::target::flock_holders(&[app.tx.key()]).is_empty());
    }

    #[test]
    fn an_existing_fifo_of_ours_is_reused() {
        let (_t, d) = dir();
        let names = ChannelNames { pid: 14, n: 0 };
        mkfifo(
            &d.fifo_path(names.prog_read()),
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .unwrap();
        let d2 = d.clone();
        let lc = std::thread::spawn(move || Channel::open_local(&d2, names, soon(5000)));
        let app = Channel::open_app(&d, names, soon(5000)).unwrap();
        let lc = lc.join().unwrap().unwrap();
        lc.tx.write_all(&[5; 4], soon(1000)).unwrap();
        let mut buf = [0u8; 4];
        app.rx.read_exact(&mut buf, soon(1000)).unwrap();
        assert_eq!(buf, [5; 4]);
    }
}
