//! The events of the world's queue and their digest for the trace hash.

use crate::trace::Trace;
use snapc_core::IoError;
use snapc_core::app::{CheckpointResult, PrepareResult};
use snapc_core::global::Move;
use snapc_core::local::SlotId;
use snapc_core::time::Instant;
use std::cmp::Ordering;

/// A pair of FIFOs, by (pid, handshake counter).
pub(crate) type Key = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Machine {
    Gc,
    Lc(usize),
    Rank(usize, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    App(usize, u32),
    Lc(usize, SlotId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    Lc(usize),
    Rank(usize),
}

#[derive(Debug, Clone)]
pub(crate) enum Ev {
    Driver,
    Timer(Machine),
    Signal(usize, u32),
    Progress(usize, u32),
    AppOpened(usize, u32),
    AppRead(usize, u32, Vec<u8>),
    AppWriteDone(usize, u32),
    AppIoError(usize, u32),
    AppPrepare(usize, u32, PrepareResult),
    AppCheckpoint(usize, u32, CheckpointResult),
    AppRecovered(usize, u32, bool),
    AppSstore(usize, u32, bool),
    AppGlobal(usize, u32, u32),
    AppTeardownDone(usize, u32),
    ToRank(usize, Vec<u8>),
    Chunk {
        key: Key,
        to_app: bool,
        bytes: Vec<u8>,
        done: Option<Writer>,
    },
    LcFifosExist(usize, SlotId),
    LcOpened(usize, SlotId),
    LcWritten(usize, SlotId),
    LcRead(usize, SlotId, Vec<u8>),
    LcIoError(usize, SlotId, IoError),
    LcStopped(usize, SlotId),
    ToLc(usize, Vec<u8>),
    ToDaemon(usize, u32, Vec<u8>),
    ToGc(Src, Vec<u8>),
    MigrationDone(bool, bool, u32, Vec<Move>),
    RestartDone(bool, i32),
    Terminate(usize, u32),
    DaemonCrash(usize),
}

impl Ev {
    /// A compact, machine-independent digest of the event for the hash.
    pub(crate) fn digest(&self, t: &mut Trace) {
        let (k, a, b, bytes): (u64, u64, u64, &[u8]) = match self {
            Ev::Driver => (0, 0, 0, &[]),
            Ev::Timer(m) => match m {
                Machine::Gc => (1, 0, 0, &[]),
                Machine::Lc(l) => (1, 1, *l as u64, &[]),
                Machine::Rank(v, g) => (1, 2, ((*v as u64) << 32) | u64::from(*g), &[]),
            },
            Ev::Signal(v, g) => (2, *v as u64, u64::from(*g), &[]),
            Ev::Progress(v, g) => (3, *v as u64, u64::from(*g), &[]),
            Ev::AppOpened(v, g) => (4, *v as u64, u64::from(*g), &[]),
            Ev::AppRead(v, g, b) => (5, *v as u64, u64::from(*g), b),
            Ev::AppWriteDone(v, g) => (6, *v as u64, u64::from(*g), &[]),
            Ev::AppIoError(v, g) => (7, *v as u64, u64::from(*g), &[]),
            Ev::AppPrepare(v, g, r) => (8, *v as u64, u64::from(*g) << 8 | *r as u64, &[]),
            Ev::AppCheckpoint(v, g, r) => {
                let c = match r {
                    CheckpointResult::Continue => 0,
                    CheckpointResult::Term => 1,
                    CheckpointResult::Error => 2,
                    CheckpointResult::Restart { pid } => 3 | u64::from(*pid) << 8,
                };
                (9, *v as u64, u64::from(*g) << 40 | c, &[])
            }
            Ev::AppRecovered(v, g, ok) => (10, *v as u64, u64::from(*g) << 1 | *ok as u64, &[]),
            Ev::AppSstore(v, g, ok) => (11, *v as u64, u64::from(*g) << 1 | *ok as u64, &[]),
            Ev::AppGlobal(v, g, h) => (12, *v as u64, u64::from(*g) << 32 | u64::from(*h), &[]),
            Ev::AppTeardownDone(v, g) => (13, *v as u64, u64::from(*g), &[]),
            Ev::ToRank(v, b) => (14, *v as u64, 0, b),
            Ev::Chunk {
                key, to_app, bytes, ..
            } => (
                15,
                u64::from(key.0) << 32 | u64::from(key.1),
                *to_app as u64,
                bytes,
            ),
            Ev::LcFifosExist(l, s) => (16, *l as u64, slot_word(*s), &[]),
            Ev::LcOpened(l, s) => (17, *l as u64, slot_word(*s), &[]),
            Ev::LcWritten(l, s) => (18, *l as u64, slot_word(*s), &[]),
            Ev::LcRead(l, s, b) => (19, *l as u64, slot_word(*s), b),
            Ev::LcIoError(l, s, e) => (
                20,
                *l as u64 | (*e == IoError::PeerGone) as u64,
                slot_word(*s),
                &[],
            ),
            Ev::LcStopped(l, s) => (21, *l as u64, slot_word(*s), &[]),
            Ev::ToLc(l, b) => (22, *l as u64, 0, b),
            Ev::ToDaemon(l, p, b) => (23, *l as u64, u64::from(*p), b),
            Ev::ToGc(s, b) => (
                24,
                match s {
                    Src::Lc(l) => *l as u64,
                    Src::Rank(v) => 1 << 40 | *v as u64,
                },
                0,
                b,
            ),
            Ev::MigrationDone(ok, rep, h, m) => (
                25,
                *ok as u64 | (*rep as u64) << 1,
                u64::from(*h) << 16 | m.len() as u64,
                &[],
            ),
            Ev::RestartDone(ok, s) => (26, *ok as u64, *s as u64, &[]),
            Ev::Terminate(v, g) => (27, *v as u64, u64::from(*g), &[]),
            Ev::DaemonCrash(l) => (28, *l as u64, 0, &[]),
        };
        t.word(k);
        t.word(a);
        t.word(b);
        t.word(bytes.len() as u64);
        t.bytes(bytes);
    }
}

fn slot_word(s: SlotId) -> u64 {
    (s.index() as u64) << 32 | u64::from(s.generation())
}

pub(crate) struct Item {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        // A min-heap on (time, insertion order).
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

impl Ev {
    /// The message a transport event carries.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Ev::ToRank(_, b) | Ev::ToLc(_, b) | Ev::ToDaemon(_, _, b) | Ev::ToGc(_, b) => b,
            _ => &[],
        }
    }
}
