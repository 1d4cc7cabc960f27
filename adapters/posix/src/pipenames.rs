//! The FIFO names in a pipe directory, as a local coordinator needs them:
//! which names each process has, known without reading the directory at
//! each wakeup.
//!
//! A [`NameWatch`] reads the directory once, then keeps its list of names
//! from inotify's reports of names created, removed or renamed (in the
//! order the kernel made the changes), so that finding a process's names
//! costs one `read` of the events that came since the last look, whatever
//! the number of processes. Where the events cannot be trusted (the
//! kernel's queue overflowed, the directory went away) the list is read
//! again from the directory; where inotify is not available there is no
//! watch and the caller reads the directory each time ([`scan`]).
//!
//! Watches are kept for the process's life and handed from one coordinator
//! to the next ([`NameWatch::take`], [`NameWatch::put_back`]): closing an
//! inotify instance costs milliseconds (the kernel waits for a grace period
//! before it frees it), which a direct checkpoint would otherwise pay at
//! each call. Each coordinator has its watch to itself while it runs, so
//! no coordinator consumes another's wakeups.

use crate::fifo::PipeDir;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use snapc_core::wire::FifoName;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// The FIFO names in a directory, by pid.
pub type Names = HashMap<u32, Vec<FifoName>>;

/// Every FIFO name in `dir`, by pid, read from the directory.
pub fn scan(dir: &PipeDir) -> std::io::Result<Names> {
    let mut found = Names::new();
    for entry in std::fs::read_dir(dir.path())?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Ok(f) = FifoName::parse(name) {
            found.entry(f.pid).or_default().push(f);
        }
    }
    Ok(found)
}

/// A directory's path and identity (device, inode).
type DirId = (PathBuf, u64, u64);

/// Watches kept between coordinators (the most kept; more are closed).
static IDLE: Mutex<Vec<NameWatch>> = Mutex::new(Vec::new());
const IDLE_MAX: usize = 4;

const EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_ONLYDIR);

/// What changed since the last [`NameWatch::refresh`].
#[derive(Debug, Default)]
pub struct Changes {
    /// The pids whose names changed (appeared or went).
    pub pids: Vec<u32>,
    /// A name appeared.
    pub arrivals: bool,
    /// Anything at all changed, or the list was read again.
    pub any: bool,
    /// The list was read again from the directory (every pid may have
    /// changed).
    pub rescanned: bool,
}

/// An inotify watch of one pipe directory and the FIFO names in it.
#[derive(Debug)]
pub struct NameWatch {
    id: DirId,
    inotify: Inotify,
    wd: WatchDescriptor,
    /// Where events are read (kept: one allocation for the watch's life).
    buf: Vec<u8>,
    /// The names as of the last refresh; `None`: to be read again from the
    /// directory.
    names: Option<Names>,
    /// The watch ended (the directory was removed): no event comes any more.
    dead: bool,
}

impl NameWatch {
    /// A watch of `dir`: one kept from an earlier coordinator if there is
    /// one, else a new one (an idle watch of another directory is moved to
    /// this one); `None` where inotify cannot be had.
    pub fn take(dir: &PipeDir) -> Option<Self> {
        let meta = std::fs::metadata(dir.path()).ok()?;
        let id: DirId = (dir.path().to_path_buf(), meta.dev(), meta.ino());
        let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = idle.iter().position(|w| w.id == id) {
            return Some(idle.swap_remove(i));
        }
        let reused = idle.pop();
        drop(idle);
        let inotify = match reused {
            Some(mut w) => {
                // Its events, up to the removal's own, are the other
                // directory's: none comes after the removal.
                let _ = w.inotify.rm_watch(w.wd);
                while matches!(nix::unistd::read(w.inotify.as_fd(), &mut w.buf), Ok(n) if n > 0) {}
                w.inotify
            }
            None => Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                .map_err(|e| log::debug!("inotify: {e}; names are polled"))
                .ok()?,
        };
        let wd = inotify
            .add_watch(dir.path(), EVENTS)
            .map_err(|e| {
                log::debug!(
                    "inotify watch {}: {e}; names are polled",
                    dir.path().display()
                )
            })
            .ok()?;
        Some(Self {
            id,
            inotify,
            wd,
            buf: vec![0; EVENT_BUF],
            names: None,
            dead: false,
        })
    }

    /// Keeps this watch for the next coordinator of the process.
    pub fn put_back(self) {
        if self.dead {
            return;
        }
        let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_MAX {
            idle.push(self);
        }
    }

    /// The fd that becomes readable when a name appears in or leaves the
    /// directory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Whether the watch ended (the directory went away): the caller reads
    /// the directory instead from now on.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Takes the events that came since the last refresh into the list of
    /// names (reading the directory again when the events cannot be
    /// trusted): afterwards [`names`](Self::names) holds every change made
    /// before this call.
    pub fn refresh(&mut self, dir: &PipeDir) -> std::io::Result<Changes> {
        let mut changes = Changes::default();
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(EVENT_BUF, 0);
        loop {
            let n = match nix::unistd::read(self.inotify.as_fd(), &mut buf) {
                Ok(n) if n > 0 => n,
                Err(nix::errno::Errno::EINTR) => continue,
                _ => break,
            };
            let mut at = 0;
            while let Some(event) = buf.get(at..n).and_then(Event::parse) {
                at += event.size;
                self.apply(&event, &mut changes);
            }
        }
        self.buf = buf;
        if self.names.is_none() {
            // Read after the watch was in place: whatever changes after the
            // read comes as events, applied in order on top of it.
            self.names = Some(scan(dir)?);
            changes.rescanned = true;
            changes.any = true;
            changes.arrivals = true;
        }
        Ok(changes)
    }

    fn apply(&mut self, e: &Event<'_>, changes: &mut Changes) {
        if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            self.names = None;
            return;
        }
        if e.mask.contains(AddWatchFlags::IN_IGNORED) {
            self.dead = true;
            self.names = None;
            return;
        }
        let Some(f) = std::str::from_utf8(e.name)
            .ok()
            .and_then(|n| FifoName::parse(n).ok())
        else {
            return;
        };
        changes.any = true;
        if !changes.pids.contains(&f.pid) {
            changes.pids.push(f.pid);
        }
        let arrived = e
            .mask
            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
        changes.arrivals |= arrived;
        let Some(names) = self.names.as_mut() else {
            return;
        };
        let list = names.entry(f.pid).or_default();
        if arrived {
            if !list.contains(&f) {
                list.push(f);
            }
        } else {
            list.retain(|x| *x != f);
            if list.is_empty() {
                names.remove(&f.pid);
            }
        }
    }

    /// The names as of the last [`refresh`](Self::refresh).
    pub fn names(&self) -> Option<&Names> {
        self.names.as_ref()
    }
}

/// Room for many events at once (each is 16 bytes and its padded name).
const EVENT_BUF: usize = 8192;

/// One `struct inotify_event` as read: mask, name (NUL padding removed),
/// and its size in the buffer.
struct Event<'a> {
    mask: AddWatchFlags,
    name: &'a [u8],
    size: usize,
}

impl<'a> Event<'a> {
    fn parse(buf: &'a [u8]) -> Option<Self> {
        let word = |i: usize| -> Option<[u8; 4]> { buf.get(i..i + 4)?.try_into().ok() };
        let mask = AddWatchFlags::from_bits_retain(u32::from_ne_bytes(word(4)?));
        let len = usize::try_from(u32::from_ne_bytes(word(12)?)).ok()?;
        let name = buf.get(16..16 + len)?;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        Some(Self {
            mask,
            name: name.get(..end)?,
            size: 16 + len,
        })
    }
}
