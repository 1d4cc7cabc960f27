//! The FIFO model, the one of the tree: a pair of named pipes per
//! handshake, by (pid, counter), with the open ends of each side and the
//! bytes in flight each way, as the POSIX adapter sees them.
//!
//! - The application creates both names and holds `prog_read` open
//!   read-write, so its reads never see EOF (its deadline ends them); its
//!   open of `prog_write` completes when the coordinator opens its end.
//! - A write reaches the reader in parts ([`crate::devices::PipeDevice`]:
//!   whole, or cut into partial writes by a slow peer); a write to a pipe
//!   whose reader closed fails (EPIPE: the writer's `IoError`).
//! - The coordinator's read after the application closed its end sees EOF
//!   (`PeerGone`) once the buffered bytes are read.
//! - The coordinator watches for the names; they appear when the
//!   application creates them and go when it unlinks them.

use super::World;
use super::events::{Ev, Key, Writer};
use snapc_core::IoError;
use snapc_core::local::SlotId;
use snapc_core::time::Duration;
use std::collections::VecDeque;

/// One pair of FIFOs.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    /// The names exist in the pipe directory.
    pub(crate) exists: bool,
    to_app: VecDeque<u8>,
    to_lc: VecDeque<u8>,
    /// The application holds its ends open.
    pub(crate) app_open: bool,
    /// The coordinator holds its ends open.
    pub(crate) lc_open: bool,
    app_read: Option<(usize, u32, usize)>,
    app_open_wait: Option<(usize, u32)>,
    pub(crate) lc_read: Option<(usize, SlotId, usize)>,
}

impl World {
    // ---- the application's side ----

    /// Rank `v` (incarnation `g`) creates and opens the pair `key`.
    pub(crate) fn app_creates_fifos(&mut self, v: usize, g: u32, key: Key) {
        self.pipes.insert(
            key,
            Pipe {
                exists: true,
                app_open: true,
                app_open_wait: Some((v, g)),
                ..Pipe::default()
            },
        );
        if let Some((lc, slot)) = self.watches.remove(&key) {
            self.schedule(Duration::ZERO, Ev::LcFifosExist(lc, slot));
        }
    }

    /// Rank `v` waits for `len` bytes on `key`.
    pub(crate) fn app_reads(&mut self, v: usize, g: u32, key: Key, len: usize) {
        if let Some(p) = self.pipes.get_mut(&key) {
            p.app_read = Some((v, g, len));
        }
        self.try_app_read(key);
    }

    /// Rank `v` writes a frame on `key`; fails at once if the coordinator's
    /// end is not open.
    pub(crate) fn app_writes(&mut self, v: usize, g: u32, key: Option<Key>, bytes: &[u8]) {
        match key.and_then(|k| self.pipes.get(&k).map(|p| (k, p.lc_open))) {
            Some((k, true)) => self.write_parts(k, false, bytes.to_vec(), Writer::App(v, g)),
            _ => self.schedule(Duration::ZERO, Ev::AppIoError(v, g)),
        }
    }

    /// The application's ends of `key` close (a close, or the process
    /// died): the coordinator's pending read sees what is left, then EOF.
    pub(crate) fn app_closes(&mut self, key: Key) {
        if let Some(p) = self.pipes.get_mut(&key) {
            p.app_open = false;
            p.app_read = None;
            p.app_open_wait = None;
        }
        self.try_lc_read(key);
    }

    /// The application removes the names of `key`.
    pub(crate) fn app_unlinks(&mut self, key: Key) {
        if let Some(p) = self.pipes.get_mut(&key) {
            p.exists = false;
        }
    }

    /// Whether the names of `key` exist.
    pub(crate) fn fifos_exist(&self, key: Key) -> bool {
        self.pipes.get(&key).is_some_and(|p| p.exists)
    }

    // ---- the coordinator's side ----

    /// LC `lc`'s slot waits for the names of `key`.
    pub(crate) fn lc_watches(&mut self, lc: usize, slot: SlotId, key: Key) {
        if self.fifos_exist(key) {
            self.schedule(Duration::ZERO, Ev::LcFifosExist(lc, slot));
        } else {
            self.watches.insert(key, (lc, slot));
        }
    }

    /// LC `lc`'s slot opens `key`: only names that exist with the
    /// application's ends open; the application's open completes too.
    pub(crate) fn lc_opens(&mut self, lc: usize, slot: SlotId, key: Key) {
        match self.pipes.get_mut(&key) {
            Some(p) if p.exists && p.app_open => {
                p.lc_open = true;
                let opener = p.app_open_wait.take();
                self.schedule(Duration::ZERO, Ev::LcOpened(lc, slot));
                if let Some((v, g)) = opener {
                    self.schedule(Duration::ZERO, Ev::AppOpened(v, g));
                }
            }
            _ => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
        }
    }

    /// LC `lc`'s slot writes on `key`; fails if the application's end is
    /// closed.
    pub(crate) fn lc_writes(&mut self, lc: usize, slot: SlotId, key: Option<Key>, bytes: &[u8]) {
        match key {
            Some(key) if self.pipes.get(&key).is_some_and(|p| p.app_open) => {
                self.write_parts(key, true, bytes.to_vec(), Writer::Lc(lc, slot));
            }
            _ => self.schedule(Duration::ZERO, Ev::LcIoError(lc, slot, IoError::Failed)),
        }
    }

    /// LC `lc`'s slot waits for `len` bytes on `key`.
    pub(crate) fn lc_reads(&mut self, lc: usize, slot: SlotId, key: Key, len: usize) {
        if let Some(p) = self.pipes.get_mut(&key) {
            p.lc_read = Some((lc, slot, len));
        }
        self.try_lc_read(key);
    }

    /// LC `lc`'s slot closes `key` (and stops watching for it).
    pub(crate) fn lc_closes(&mut self, lc: usize, slot: SlotId, key: Key) {
        if self.watches.get(&key) == Some(&(lc, slot)) {
            self.watches.remove(&key);
        }
        if let Some(p) = self.pipes.get_mut(&key) {
            p.lc_open = false;
            if p.lc_read.is_some_and(|r| r.0 == lc && r.1 == slot) {
                p.lc_read = None;
            }
        }
    }

    /// The node daemon of `lc` died: its reads, ends and watches go.
    pub(crate) fn lc_vanishes(&mut self, lc: usize) {
        for (_, p) in self.pipes.iter_mut() {
            if p.lc_read.is_some_and(|r| r.0 == lc) {
                p.lc_read = None;
            }
        }
        let keys: Vec<Key> = self
            .lc_chan
            .iter()
            .filter(|((l, _), _)| *l == lc)
            .map(|(_, (_, k))| *k)
            .collect();
        for k in keys {
            if let Some(p) = self.pipes.get_mut(&k) {
                p.lc_open = false;
            }
        }
        self.lc_chan.retain(|(l, _), _| *l != lc);
        self.watches.retain(|_, (l, _)| *l != lc);
    }

    // ---- bytes in flight ----

    fn write_parts(&mut self, key: Key, to_app: bool, bytes: Vec<u8>, w: Writer) {
        let parts = self.dev.pipe.parts(&mut self.rng, bytes.len());
        let mut at = Duration::ZERO;
        let mut off = 0;
        let n = parts.len();
        for (i, (d, len)) in parts.into_iter().enumerate() {
            at += d;
            let chunk = bytes[off..off + len].to_vec();
            off += len;
            let done = (i + 1 == n).then_some(w);
            self.schedule(
                at,
                Ev::Chunk {
                    key,
                    to_app,
                    bytes: chunk,
                    done,
                },
            );
        }
    }

    /// A part of a write arrives.
    pub(crate) fn chunk(&mut self, key: Key, to_app: bool, bytes: Vec<u8>, done: Option<Writer>) {
        if let Some(p) = self.pipes.get_mut(&key) {
            if to_app {
                p.to_app.extend(bytes);
            } else {
                p.to_lc.extend(bytes);
            }
        }
        if to_app {
            self.try_app_read(key);
        } else {
            self.try_lc_read(key);
        }
        match done {
            Some(Writer::App(v, g)) => self.schedule(Duration::ZERO, Ev::AppWriteDone(v, g)),
            Some(Writer::Lc(lc, s)) => self.schedule(Duration::ZERO, Ev::LcWritten(lc, s)),
            None => {}
        }
    }

    fn try_app_read(&mut self, key: Key) {
        let Some(p) = self.pipes.get_mut(&key) else {
            return;
        };
        if let Some((v, g, len)) = p.app_read {
            if p.to_app.len() >= len {
                let bytes: Vec<u8> = p.to_app.drain(..len).collect();
                p.app_read = None;
                self.schedule(Duration::ZERO, Ev::AppRead(v, g, bytes));
            }
        }
    }

    fn try_lc_read(&mut self, key: Key) {
        let Some(p) = self.pipes.get_mut(&key) else {
            return;
        };
        if let Some((lc, s, len)) = p.lc_read {
            if p.to_lc.len() >= len {
                let bytes: Vec<u8> = p.to_lc.drain(..len).collect();
                p.lc_read = None;
                self.schedule(Duration::ZERO, Ev::LcRead(lc, s, bytes));
            } else if !p.app_open {
                p.lc_read = None;
                self.schedule(Duration::ZERO, Ev::LcIoError(lc, s, IoError::PeerGone));
            }
        }
    }
}
